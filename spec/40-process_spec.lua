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

    it("checks submit's arguments", function()
      local pool <close> = concur.ProcessPool(1)
      raises("argument", nil, pool.submit, pool, 42)
      raises("argument", "timeout", pool.submit, pool, { function() end, timeout = -1 })
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
