-- concur.ProcessPool and concur.Process: tasks in separate OS processes.
local helpers = require "helpers"
local concur = helpers.concur
local raises = helpers.raises

--- The calling process's id (works in a worker process as well).
local function getpid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end

--- Has process 'pid' ended (reaped, or a zombie waiting for its parent)?
local function gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return true end
  local s = f:read("a")
  f:close()
  return s:match("^%d+ %b() (%a)") == "Z"
end

--- Is 'pid' a zombie or a live process?
local function exists(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f ~= nil
end

--- Makes sure both workers of a two-worker pool are ready, then (unless
-- 'idle') keeps one of them busy until the returned Event is set.
-- Returns both pids, the busy one's pid, that Event and its future.
local function occupy_one(pool, idle)
  local meet = concur.Barrier(2)
  local f1 = pool:submit(function(b) b:wait(30) return getpid() end, meet)
  local f2 = pool:submit(function(b) b:wait(30) return getpid() end, meet)
  local a, b = f1:result(30), f2:result(30)
  assert.not_equal(a, b)
  if idle then return a, b end
  local where, release = concur.Queue(), concur.Event()
  local busy = pool:submit(function(at, go)
    at:put(getpid())
    assert(go:wait(60))
    return "released"
  end, where, release)
  return a, b, where:get(30), release, busy
end

describe("ProcessPool", function()
  describe("results", function()
    it("returns a task's results from another process", function()
      local pool <close> = concur.ProcessPool(2)
      local f = pool:submit(function(a, b) return a + b, "x", nil, { t = { 1 } } end, 1, 2)
      local a, b, c, d = f:result(10)
      assert.equal(3, a)
      assert.equal("x", b)
      assert.is_nil(c)
      assert.same({ t = { 1 } }, d)
    end)

    it("runs tasks in processes other than the submitter", function()
      local pool <close> = concur.ProcessPool(1)
      local pid = pool:submit(getpid):result(10)
      assert.not_equal(getpid(), pid)
      assert.same({ pid }, pool:pids())
    end)

    it("gives workers the submitter's package.path", function()
      local pool <close> = concur.ProcessPool(1)
      assert.equal(package.path, pool:submit(function() return package.path end):result(10))
    end)

    it("sends bigints both ways as values", function()
      local bigint = require "concur.bigint"
      local pool <close> = concur.ProcessPool(1)
      local r = pool:submit(function(b) return b * 2 end, bigint(10) ^ 30):result(10)
      assert.equal("2" .. ("0"):rep(30), tostring(r))
    end)

    it("can be used from a ThreadPool task", function()
      local tp <close> = concur.ThreadPool(1)
      local f = tp:submit(function()
        local c = require "concur"
        local pool <close> = c.ProcessPool(1)
        return pool:submit(function(x) return x + 1 end, 41):result(10)
      end)
      assert.equal(42, f:result(30))
    end)

    it("accepts submit{ fn, args = {...} }", function()
      local pool <close> = concur.ProcessPool(1)
      assert.equal(6, pool:submit{ function(a, b, c) return a * b * c end, args = { 1, 2, 3 } }
        :result(10))
    end)

    it("maps in order, with chunks", function()
      local pool <close> = concur.ProcessPool(2)
      local items = {}
      for i = 1, 1000 do items[i] = i end
      local out = pool:map(function(x) return x * x end, items)
      assert.equal(1000, #out)
      assert.equal(250000, out[500])
    end)

    it("iterates with imap and imap_unordered", function()
      local pool <close> = concur.ProcessPool(2)
      local sum, n = 0, 0
      for i, v in pool:imap(function(x) return -x end, { 1, 2, 3 }) do
        assert.equal(-i, v)
        n = n + 1
      end
      for _, v in pool:imap_unordered(function(x) return x end, { 1, 2, 3 }) do sum = sum + v end
      assert.equal(3, n)
      assert.equal(6, sum)
    end)

    it("works with concur.wait and as_completed", function()
      local pool <close> = concur.ProcessPool(2)
      local fs = {}
      for i = 1, 6 do fs[i] = pool:submit(function(x) return x end, i) end
      local done = concur.wait(fs, { timeout = 20 })
      assert.equal(6, #done)
      local n = 0
      for _ in concur.as_completed(fs, 20) do n = n + 1 end
      assert.equal(6, n)
    end)

    it("counts what it ran in stats", function()
      local pool <close> = concur.ProcessPool(2)
      pool:submit(function() return 1 end):result(10)
      local g = pool:submit(function() error("x") end)
      pcall(g.result, g, 10)
      local st = pool:stats()
      assert.equal(2, st.workers)
      assert.equal(1, st.completed)
      assert.equal(1, st.failed)
      assert.equal(0, st.running)
    end)
  end)

  describe("errors", function()
    it("fails a raising task with kind 'task', its value and traceback", function()
      local pool <close> = concur.ProcessPool(1)
      local f = pool:submit(function() error({ code = 7 }) end)
      local err = raises("task", nil, f.result, f, 10)
      assert.same({ code = 7 }, err.value)
      assert.is_string(err.traceback)
    end)

    it("keeps the message of a string error", function()
      local pool <close> = concur.ProcessPool(1)
      local f = pool:submit(function() error("boom") end)
      raises("task", "boom", f.result, f, 10)
    end)

    it("refuses a Future passed to a task with kind 'transfer'", function()
      local tp <close> = concur.ThreadPool(1)
      local pool <close> = concur.ProcessPool(1)
      raises("transfer", "concur.Future (in the task) cannot be sent to another process",
        pool.submit, pool, function(x) return x end, tp:submit(function() end))
    end)

    it("refuses an in-process object hidden in a table", function()
      local tp <close> = concur.ThreadPool(1)
      local fut = tp:submit(function() return 1 end)
      local pool <close> = concur.ProcessPool(1)
      raises("transfer", "concur.Future", pool.submit, pool, function(t) return t end,
        { deep = { concur.Lock(), fut } })
    end)

    it("fails a task that returns an in-process object with kind 'transfer'", function()
      local pool <close> = concur.ProcessPool(1)
      local f = pool:submit(function()
        return require("concur").ThreadPool(1):submit(function() end)
      end)
      raises("transfer", "concur.Future (in the task's results)", f.result, f, 10)
    end)

    it("checks its options", function()
      raises("argument", "bogus", concur.ProcessPool, { bogus = 1 })
      raises("argument", "workers", concur.ProcessPool, { workers = 0 })
      raises("argument", "memory_limit", concur.ProcessPool, { memory_limit = -1 })
      raises("argument", "task_timeout", concur.ProcessPool, { task_timeout = "x" })
      raises("argument", "max_tasks_per_child", concur.ProcessPool, { max_tasks_per_child = 1.5 })
      raises("argument", "initializer", concur.ProcessPool, { initializer = 1 })
      raises("argument", nil, concur.ProcessPool, "x")
    end)

    it("refuses a memory_limit too small to start a worker, and prints nothing", function()
      raises("argument", "memory_limit", concur.ProcessPool, { memory_limit = 1 })
      raises("argument", "at least 1 MiB", concur.ProcessPool, { memory_limit = 1024 })
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        print("tiny", pcall(concur.ProcessPool, { memory_limit = 1 }))
        local pool <close> = concur.ProcessPool{ workers = 1, memory_limit = 2^20 }
        local f = pool:submit(function()
          local t = {}
          for i = 1, 1e8 do t[i] = i .. "" end
        end)
        local ok, err = pcall(f.result, f, 30)
        print("task", ok, err.kind)
        print("next", pool:submit(function() return "fine" end):result(30))
      ]], 60)
      assert.is_true(ok, out)
      assert.falsy(out:find("PANIC", 1, true), out)
      assert.truthy(out:find("tiny\tfalse", 1, true), out)
      assert.truthy(out:find("task\tfalse\tlimit", 1, true), out)
      assert.truthy(out:find("next\tfine", 1, true), out)
    end)

    it("says that descriptors ran out, with kind 'limit', and works once there are some", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local fetch = require "concur.fetch"
        local files = {}
        while true do
          local f = io.open("/dev/null")
          if not f then break end
          files[#files + 1] = f
        end
        local tries = { pool = function() return concur.ProcessPool(1) end,
          process = function() return concur.Process(function() end) end,
          queue = concur.Queue, client = function() return fetch.Client{} end }
        for _, what in ipairs{ "pool", "process", "queue", "client" } do
          local ok, err = pcall(tries[what])
          print(what, ok, err.kind, err.message)
        end
        for i = 1, 8 do files[#files]:close() files[#files] = nil end
        local p <close> = concur.ProcessPool(1)
        print("then", concur.Queue() ~= nil, p:submit(function() return "ran" end):result(30))
      ]], 60, nil, "ulimit -n 64")
      assert.is_true(ok, out)
      for _, what in ipairs{ "pool", "process", "queue", "client" } do
        assert.truthy(out:find(what .. "\tfalse\tlimit\t[^\n]*no free file descriptors %(at most 64 open"),
          out)
      end
      assert.falsy(out:find("out of memory", 1, true), out)
      assert.truthy(out:find("then\ttrue\tran", 1, true), out)
    end)

    it("checks submit's arguments", function()
      local pool <close> = concur.ProcessPool(1)
      raises("argument", nil, pool.submit, pool, 42)
      raises("argument", "timeout", pool.submit, pool, { function() end, timeout = -1 })
    end)

    it("carries hundreds of values, and fails a task with more than a stack can take", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local t = {}
        for i = 1, 300 do t[i] = i end
        local pool <close> = concur.ProcessPool { workers = 1, initargs = t,
          initializer = function(...) N = select("#", ...) end }
        print("args", pool:submit(function(...) return select("#", ...) end, table.unpack(t)):result())
        print("init", pool:submit(function() return N end):result())
        print("results", select("#", pool:submit(function(n) return table.unpack({}, 1, n) end, 700):result()))
        local f = pool:submit(function()
          local r = {}
          for i = 1, 999980 do r[i] = i end
          return table.unpack(r)
        end)
        local ok, err = pcall(f.result, f, 30)
        print("huge", ok, err.kind)
        print("after", pool:submit(function() return "fine" end):result(30))
        local p = concur.Process(function(...) return select("#", ...) end, table.unpack(t))
        print("process", p:join(30))
      ]], 90)
      assert.is_true(ok, out)
      assert.matches("args\t300\n", out)
      assert.matches("init\t300\n", out)
      assert.matches("results\t700\n", out)
      assert.matches("huge\tfalse\tlimit\n", out)
      assert.matches("after\tfine\n", out)
      assert.matches("process\ttrue\t300\n", out)
    end)
  end)

  describe("fault isolation", function()
    it("fails only the task whose worker exits, with kind 'broken'", function()
      local pool <close> = concur.ProcessPool(2)
      local others = {}
      for i = 1, 4 do others[i] = pool:submit(function(x) return x end, i) end
      local f = pool:submit(function() os.exit(3) end)
      raises("broken", "exited with status 3", f.result, f, 20)
      for i = 1, 4 do assert.equal(i, others[i]:result(20)) end
      assert.equal(5, pool:submit(function() return 5 end):result(20))
    end)

    it("reports a segfault with its signal #nosan", function()
      local pool <close> = concur.ProcessPool(2)
      local f = pool:submit(function()
        os.execute("kill -11 " .. getpid())
        while true do end
      end)
      local other = pool:submit(function() return "ok" end)
      raises("broken", "killed by signal 11", f.result, f, 20)
      assert.equal("ok", other:result(20))
    end)

    it("reports a worker killed with SIGKILL", function()
      local pool <close> = concur.ProcessPool(1)
      local f = pool:submit(function()
        os.execute("kill -9 " .. getpid())
        while true do end
      end)
      raises("broken", "killed by signal 9", f.result, f, 20)
      assert.equal(2, pool:submit(function() return 2 end):result(20))
    end)

    it("replaces a dead worker", function()
      local pool <close> = concur.ProcessPool(1)
      local pid1 = pool:submit(getpid):result(20)
      local g = pool:submit(function() os.exit(1) end)
      pcall(g.result, g, 20)
      local pid2 = pool:submit(getpid):result(20)
      assert.not_equal(pid1, pid2)
      assert.is_false(exists(pid1))
    end)

    it("kills a task over task_timeout and goes on", function()
      local pool <close> = concur.ProcessPool{ workers = 1, task_timeout = 0.2 }
      local f = pool:submit(function() while true do end end)
      raises("timeout", "timeout", f.result, f, 20)
      assert.equal(1, pool:submit(function() return 1 end):result(20))
    end)

    it("kills a task over its own submit timeout", function()
      local pool <close> = concur.ProcessPool(1)
      local f = pool:submit{ function() while true do end end, timeout = 0.1 }
      raises("timeout", nil, f.result, f, 20)
    end)

    it("kills a running task on cancel, and replaces its worker", function()
      local pool <close> = concur.ProcessPool(1)
      local pid = pool:submit(getpid):result(20)
      local started = concur.Event()
      local f = pool:submit(function(ev) ev:set() while true do end end, started)
      assert.is_true(started:wait(20))
      assert.is_true(f:running())
      assert.is_true(f:cancel())
      raises("cancelled", nil, f.result, f, 20)
      assert.is_true(f:cancelled())
      assert.not_equal(pid, pool:submit(getpid):result(20))
      assert.is_false(exists(pid))
    end)

    it("cancels a pending task without touching the worker", function()
      local pool <close> = concur.ProcessPool(1)
      local slow = pool:submit(function() concur.sleep(0.2) return 1 end)
      local f = pool:submit(function() return 2 end)
      assert.is_true(f:cancel())
      assert.equal(1, slow:result(20))
      assert.is_true(f:cancelled())
    end)

    it("fails a task over memory_limit with kind 'limit', and goes on", function()
      local pool <close> = concur.ProcessPool{ workers = 1, memory_limit = 2^26 }
      local f = pool:submit(function()
        local t = {}
        for i = 1, 1e9 do t[i] = ("x"):rep(64) .. i end
        return #t
      end)
      raises("limit", nil, f.result, f, 60)
      assert.equal(3, pool:submit(function() return 3 end):result(20))
    end)

    it("recycles workers after max_tasks_per_child", function()
      local pool <close> = concur.ProcessPool{ workers = 1, max_tasks_per_child = 2 }
      local pids, distinct = {}, {}
      for i = 1, 6 do pids[i] = pool:submit(getpid):result(20) end
      for _, p in ipairs(pids) do distinct[p] = (distinct[p] or 0) + 1 end
      local n = 0
      for _, c in pairs(distinct) do
        n = n + 1
        assert.equal(2, c)
      end
      assert.equal(3, n)
    end)

    it("runs a task whose worker died before it started on another worker", function()
      local pool <close> = concur.ProcessPool(2)
      local a, b, busy, release, busyf = occupy_one(pool)
      local idle = a == busy and b or a
      assert.is_true(os.execute("kill -STOP " .. idle))
      -- the task goes to the stopped worker (the only idle one), which can
      -- neither read it nor say it started it; then that worker dies
      local f = pool:submit(function(x) return x * 2 end, 21)
      assert.is_true(os.execute("kill -KILL " .. idle))
      assert.equal(42, f:result(20))
      release:set()
      assert.equal("released", busyf:result(20))
      local st = pool:stats()
      assert.equal(0, st.failed)
      assert.is_false(exists(idle))
    end)

    it("fails none of the tasks submitted right after an idle worker is killed", function()
      local pool <close> = concur.ProcessPool(2)
      for _ = 1, 3 do
        local a = occupy_one(pool, true)
        assert.is_true(os.execute("kill -KILL " .. a))
        local fs = {}
        for i = 1, 40 do fs[i] = pool:submit(function(x) return x end, i) end
        for i = 1, 40 do assert.equal(i, fs[i]:result(20)) end
      end
      assert.equal(0, pool:stats().failed)
    end)

    it("runs each task once, whether handed straight to an idle worker or queued", function()
      -- round trips go straight to an idle worker; a burst fills both
      -- workers and queues the rest; then both kinds interleave
      local pool = concur.ProcessPool(2)
      local sum, want = 0, 0
      for round = 1, 3 do
        for i = 1, 100 do
          sum = sum + pool:submit(function(x) return x end, i):result(20)
          want = want + i
        end
        local fs = {}
        for i = 1, 50 do
          fs[i] = pool:submit(function(x) return -x end, i)
          if i % 10 == 0 then sum = sum + pool:submit(function(x) return x end, round):result(20) end
        end
        for i = 1, 50 do sum = sum + fs[i]:result(20) end
        want = want + 5 * round - 50 * 51 // 2
      end
      assert.equal(want, sum)
      local st = pool:stats()
      assert.equal(3 * 155, st.completed)
      assert.equal(0, st.failed)
      pool:close()
      raises("closed", nil, pool.submit, pool, function() end)
    end)

    it("fails only the task its worker had started when it died", function()
      local pool <close> = concur.ProcessPool(1)
      local started = concur.Event()
      local f = pool:submit(function(ev) ev:set() while true do end end, started)
      local after = {}
      for i = 1, 3 do after[i] = pool:submit(function(x) return x end, i) end
      assert.is_true(started:wait(20))
      assert.is_true(os.execute("kill -KILL " .. pool:pids()[1]))
      raises("broken", "killed by signal 9", f.result, f, 20)
      for i = 1, 3 do assert.equal(i, after[i]:result(20)) end
    end)
  end)

  describe("a stopped worker", function()
    it("holds up only its own task: others run, cancel, timeouts and close work", function()
      local guard <close> = concur.ThreadPool(1)
      local victim, closed = concur.Queue(), concur.Event()
      -- should close() hang, the guard kills the stopped worker after a
      -- minute, so that this spec fails instead of hanging
      local watch = guard:submit(function(pids, done)
        local pid = pids:get(120)
        if done:wait(60) then return "closed" end
        os.execute("kill -KILL " .. pid)
        return "had to kill " .. pid
      end, victim, closed)
      local pool = concur.ProcessPool(2)
      local a, b, busy, release, busyf = occupy_one(pool)
      local stopped = a == busy and b or a
      assert.is_true(os.execute("kill -STOP " .. stopped))
      victim:put(stopped)
      -- far more than a socket buffer holds, to the stopped worker (the only
      -- idle one): the supervisor must not wait for it to read
      local big = ("x"):rep(16 * 1024 * 1024)
      local stuck = pool:submit(function(s) return #s end, big)
      release:set()
      assert.equal("released", busyf:result(20))
      for i = 1, 5 do assert.equal(i, pool:submit(function(x) return x end, i):result(20)) end
      local slow = pool:submit{ function() while true do end end, timeout = 0.2 }
      raises("timeout", "exceeded its timeout", slow.result, slow, 20)
      assert.equal(6, pool:submit(function() return 6 end):result(20))
      assert.is_false(stuck:done())
      assert.is_true(stuck:cancel())
      raises("cancelled", nil, stuck.result, stuck, 20)
      pool:close()
      closed:set()
      assert.equal("closed", watch:result(120))
      assert.is_false(exists(stopped))
    end)

    it("gets a large task delivered once it continues", function()
      local pool <close> = concur.ProcessPool(2)
      local a, b, busy, release, busyf = occupy_one(pool)
      local stopped = a == busy and b or a
      assert.is_true(os.execute("kill -STOP " .. stopped))
      local big = ("y"):rep(16 * 1024 * 1024)
      local f = pool:submit(function(s) return #s, s:sub(-3) end, big)
      release:set()
      assert.equal("released", busyf:result(20))
      assert.is_false(f:done())
      assert.is_true(os.execute("kill -CONT " .. stopped))
      assert.same({ #big, "yyy" }, { f:result(60) })
    end)
  end)

  describe("initializer", function()
    it("runs once in every worker, replacements included", function()
      local pool <close> = concur.ProcessPool{ workers = 2, max_tasks_per_child = 1,
        initializer = function(tag) _G.TAG = tag; _G.INITS = (_G.INITS or 0) + 1 end,
        initargs = { "ready" } }
      local fs = {}
      for i = 1, 6 do fs[i] = pool:submit(function() return _G.TAG, _G.INITS end) end
      for i = 1, 6 do
        local tag, inits = fs[i]:result(20)
        assert.equal("ready", tag)
        assert.equal(1, inits)
      end
    end)

    it("marks the pool broken when it raises", function()
      local pool <close> = concur.ProcessPool{ workers = 2,
        initializer = function() error("no database") end }
      local ok, err = pcall(function() return pool:submit(function() return 1 end):result(20) end)
      assert.is_false(ok)
      assert.equal("broken", err.kind)
      assert.truthy(err.message:find("no database", 1, true))
      raises("broken", "no database", pool.submit, pool, function() end)
    end)

    it("marks the pool broken when workers die while starting", function()
      local pool <close> = concur.ProcessPool{ workers = 1, initializer = function() os.exit(5) end }
      local f = pool:submit(function() return 1 end)
      raises("broken", "exited with status 5", f.result, f, 20)
      raises("broken", "could not start", pool.submit, pool, function() end)
    end)

    it("refuses in-process objects in initargs", function()
      local tp <close> = concur.ThreadPool(1)
      raises("transfer", "concur.Future (in the initializer)", concur.ProcessPool,
        { workers = 1, initializer = function() end, initargs = { tp:submit(function() end) } })
    end)
  end)

  describe("shutdown", function()
    it("refuses submissions after shutdown with kind 'closed'", function()
      local pool = concur.ProcessPool(1)
      pool:shutdown()
      raises("closed", nil, pool.submit, pool, function() end)
    end)

    it("requires booleans for wait and cancel_pending", function()
      local pool <close> = concur.ProcessPool(1)
      raises("argument", "option 'wait' must be a boolean", pool.shutdown, pool, { wait = 0 })
      raises("argument", "option 'cancel_pending' must be a boolean", pool.shutdown, pool,
        { cancel_pending = "yes" })
      assert.equal(1, pool:submit(function() return 1 end):result(30))   -- still open
    end)

    it("finishes the queue on shutdown{ wait = true }", function()
      local pool = concur.ProcessPool(1)
      local fs = {}
      for i = 1, 5 do fs[i] = pool:submit(function(x) return x end, i) end
      pool:shutdown{ wait = true }
      for i = 1, 5 do assert.equal(i, fs[i]:result(0)) end
    end)

    it("cancels the queue on shutdown{ cancel_pending = true }", function()
      local pool = concur.ProcessPool(1)
      local started = concur.Event()
      local first = pool:submit(function(ev) ev:set() concur.sleep(0.1) return 1 end, started)
      assert.is_true(started:wait(20))
      local rest = {}
      for i = 1, 5 do rest[i] = pool:submit(function() return 2 end) end
      pool:shutdown{ cancel_pending = true }
      assert.equal(1, first:result(20))
      for i = 1, 5 do assert.is_true(rest[i]:cancelled()) end
    end)

    it("ends when the last queued task is cancelled after shutdown", function()
      local pool = concur.ProcessPool(1)
      local first = pool:submit(function() concur.sleep(0.1) return 1 end)
      local last = pool:submit(function() return 2 end)
      pool:shutdown{ wait = false }
      assert.is_true(last:cancel())
      pool:shutdown{ wait = true }
      assert.equal(1, first:result(0))
      assert.is_true(last:cancelled())
    end)

    it("leaves no zombie or orphan after close", function()
      local pool = concur.ProcessPool{ workers = 3, max_tasks_per_child = 1 }
      local pids = {}
      for i = 1, 6 do pids[i] = pool:submit(getpid):result(20) end
      for _, pid in ipairs(pool:pids()) do pids[#pids + 1] = pid end
      pool:close()
      for _, pid in ipairs(pids) do assert.is_false(exists(pid)) end
    end)

    it("ends its workers when the interpreter exits without closing it", function()
      local ok, code, out = helpers.run_lua([[
        local concur = require "concur"
        local pool = concur.ProcessPool(2)
        pool:submit(function() return 1 end):result(10)
        local busy = pool:submit(function() while true do end end)
        io.write(table.concat(pool:pids(), " "), "\n")
      ]], 30)
      assert.is_true(ok, out)
      assert.equal(0, code)
      for pid in out:gmatch("%d+") do assert.is_false(exists(tonumber(pid)), out) end
    end)

    it("ends its workers when the parent is killed", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool = concur.ProcessPool(2)
        pool:submit(function() return 1 end):result(10)
        pool:submit(function() while true do end end)
        io.write(table.concat(pool:pids(), " "), "\n")
        io.stdout:flush()
        os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n"))
      ]], 30)
      assert.is_false(ok)
      local deadline = concur.monotonic() + 10
      for pid in out:gmatch("(%d+)[ \n]") do
        pid = tonumber(pid)
        -- an orphan is reaped by init, not by us: wait for it to go
        while not gone(pid) and concur.monotonic() < deadline do concur.sleep(0.01) end
        assert.is_true(gone(pid), out)
      end
    end)
  end)

  describe("the interpreter that runs the workers", function()
    -- The interpreter running these specs (a sanitized one under make check).
    local function interpreter()
      local p = os.getenv("CONCUR_LUA")
      if p then return p end
      local f = io.popen("command -v lua5.4")
      p = f:read("l")
      f:close()
      return p
    end

    --- Runs 'code' with copies of the interpreter named names[1], ... in a
    -- new directory DIR (names[1] runs it), PATH set to 'path' and
    -- CONCUR_LUA to 'clua' (unset when nil; DIR in both stands for the
    -- directory); returns its output.
    local function run_as(names, path, clua, code)
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute(("mkdir %q"):format(dir)))
      for _, name in ipairs(names) do
        assert(os.execute(("cp %q %q"):format(interpreter(), dir .. "/" .. name)))
      end
      local script = dir .. "/script.lua"
      local f = assert(io.open(script, "w"))
      f:write(code)
      f:close()
      clua = clua and clua:gsub("DIR", dir)
      local p = io.popen(("timeout -s KILL 60 env -u CONCUR_LUA %s PATH=%q LUA_PATH=%q "
        .. "LUA_CPATH=%q %q %q 2>&1"):format(clua and ("CONCUR_LUA=%q"):format(clua) or "",
        (path:gsub("DIR", dir)), package.path, package.cpath, dir .. "/" .. names[1], script))
      local out = p:read("a")
      p:close()
      os.execute(("rm -rf %q"):format(dir))
      return out
    end

    local TRY = [[
      local concur = require "concur"
      local ok, pool = pcall(concur.ProcessPool, 1)
      if not ok then
        print("pool", pool.kind, pool.message)
      else
        print("pool", pool:submit(function() return 6 * 7 end):result(30))
        pool:close()
      end
      local ok2, p = pcall(concur.Process, function() return "child" end)
      if not ok2 then print("process", p.kind) else print("process", select(2, p:join(30))) end
    ]]

    it("is the running one when that is a Lua interpreter not called lua5.4", function()
      local out = run_as({ "lua" }, "/nonexistent", nil, TRY)
      assert.truthy(out:find("pool\t42", 1, true), out)
      assert.truthy(out:find("process\tchild", 1, true), out)
    end)

    it("is lua5.4, then lua, on PATH when the running program is not one", function()
      local out = run_as({ "host", "lua5.4" }, "DIR", nil, TRY)
      assert.truthy(out:find("pool\t42", 1, true), out)
      out = run_as({ "host", "lua" }, "/nonexistent:DIR", nil, TRY)
      assert.truthy(out:find("pool\t42", 1, true), out)
      assert.truthy(out:find("process\tchild", 1, true), out)
    end)

    it("is CONCUR_LUA when set", function()
      local out = run_as({ "host" }, "/nonexistent", "DIR/host", TRY)
      assert.truthy(out:find("pool\t42", 1, true), out)
      out = run_as({ "host" }, "/nonexistent", "/nonexistent/lua", TRY)
      assert.truthy(out:find("pool\targument\tCONCUR_LUA is '/nonexistent/lua', which is "
        .. "not an executable file", 1, true), out)
    end)

    it("asks for CONCUR_LUA, with kind 'argument', when there is none to find", function()
      local out = run_as({ "host" }, "/nonexistent", nil, TRY)
      assert.truthy(out:find("pool\targument\tno Lua interpreter to run worker processes",
        1, true), out)
      assert.truthy(out:find("set CONCUR_LUA to the path of a Lua 5.4 interpreter", 1, true), out)
      assert.truthy(out:find("process\targument", 1, true), out)
    end)
  end)

  describe("fork safety", function()
    it("starts processes while a ThreadPool hammers allocations and locks", function()
      local tp <close> = concur.ThreadPool(4)
      local stop, lock = concur.Event(), concur.Lock()
      local counter = concur.Value(0)
      local hammers = {}
      for i = 1, 4 do
        hammers[i] = tp:submit(function()
          local n = 0
          while not stop:is_set() do
            local t = {}
            for j = 1, 100 do t[j] = ("v"):rep(j % 7) .. j end
            local _ <close> = lock:guard()
            n = n + #t - 100
            counter:add(1)
            n = n + 1
          end
          return n
        end)
      end
      for round = 1, 8 do
        local pool <close> = concur.ProcessPool(2)
        local out = pool:map(function(x) return x + 1 end, { round, round })
        assert.same({ round + 1, round + 1 }, out)
      end
      stop:set()
      for i = 1, 4 do assert.is_true(hammers[i]:result(20) > 0) end
    end)
  end)
end)

describe("Process", function()
  it("runs a function in another process and joins its results", function()
    local p = concur.Process(function(a, b) return a .. b, 42 end, "x", "y")
    assert.is_number(p.pid)
    assert.not_equal(getpid(), p.pid)
    local ok, s, n = p:join(20)
    assert.is_true(ok)
    assert.equal("xy", s)
    assert.equal(42, n)
    assert.equal(0, p.exitcode)
    assert.is_false(p:alive())
  end)

  it("returns false and the error of a failing function", function()
    local p = concur.Process(function() error("bad") end)
    local ok, err = p:join(20)
    assert.is_false(ok)
    assert.equal("task", err.kind)
    assert.truthy(err.message:find("bad", 1, true))
  end)

  it("raises kind 'timeout' when join times out, and can be killed", function()
    local p = concur.Process(function() while true do end end)
    assert.is_true(p:alive())
    assert.is_nil(p.exitcode)
    raises("timeout", nil, p.join, p, 0.05)
    assert.is_true(p:kill())
    local ok, err = p:join(20)
    assert.is_false(ok)
    assert.equal("broken", err.kind)
    assert.equal(-15, p.exitcode)
    assert.is_false(p:kill())
  end)

  it("kills with a given signal", function()
    local p = concur.Process(function() while true do end end)
    p:kill(9)
    p:join(20)
    assert.equal(-9, p.exitcode)
  end)

  it("reports os.exit's status as its exitcode", function()
    local p = concur.Process(function() os.exit(7) end)
    local ok, err = p:join(20)
    assert.is_false(ok)
    assert.truthy(err.message:find("status 7", 1, true))
    assert.equal(7, p.exitcode)
  end)

  it("is joined when the interpreter exits", function()
    local tmp = os.tmpname()
    local ok, _, out = helpers.run_lua(([[
      local concur = require "concur"
      concur.Process(function(path)
        concur.sleep(0.2)
        local f = io.open(path, "w")
        f:write("done")
        f:close()
      end, %q)
    ]]):format(tmp), 30)
    assert.is_true(ok, out)
    local f = io.open(tmp)
    local s = f:read("a")
    f:close()
    os.remove(tmp)
    assert.equal("done", s)
  end)

  it("refuses a Future with kind 'transfer'", function()
    local tp <close> = concur.ThreadPool(1)
    raises("transfer", "cannot be sent to another process", concur.Process,
      function(c) return c end, tp:submit(function() end))
  end)
end)
