local helpers = require "helpers"
local concur = require "concur"

describe("ThreadPool", function()
  local pool
  before_each(function() pool = concur.ThreadPool(2) end)
  after_each(function() pool:close() end)

  describe("submit", function()
    it("runs a function with its arguments and returns every result", function()
      local f = pool:submit(function(a, b) return a + b, a * b, nil, "x" end, 3, 4)
      assert.same({ 7, 12, nil, "x" }, table.pack(f:result(), nil).n and { f:result() })
      assert.equal(4, select("#", f:result()))
    end)

    it("runs tasks in parallel on different workers", function()
      local fs = {}
      for i = 1, 20 do fs[i] = pool:submit(function() return concur.thread_name() end) end
      local names = {}
      for _, f in ipairs(fs) do names[f:result()] = true end
      for name in pairs(names) do assert.matches("^ThreadPool%-%d+_%d$", name) end
    end)

    it("accepts the table form with args and a timeout", function()
      local f = pool:submit { function(a, b) return a .. b end, args = { "x", "y" }, timeout = 5 }
      assert.equal("xy", f:result())
    end)

    it("lets tasks require modules from the submitter's package.path", function()
      local file = os.tmpname()          -- e.g. /tmp/lua_AbC123
      local dir, name = file:match("^(.*)/([^/]+)$")
      local f = assert(io.open(file .. ".lua", "w"))
      f:write("return { answer = function() return 42 end }")
      f:close()
      local saved = package.path
      package.path = dir .. "/?.lua;" .. package.path
      local p2 = concur.ThreadPool(1)
      package.path = saved
      local r = p2:submit(function(m) return require(m).answer() end, name):result()
      p2:close()
      os.remove(file .. ".lua")
      os.remove(file)
      assert.equal(42, r)
    end)

    it("lets a task use concur itself: a pool and a thread inside a task", function()
      local f = pool:submit(function()
        local c = require "concur"
        local inner <close> = c.ThreadPool(1)
        local a = inner:submit(function(x) return x * 2 end, 21):result()
        local ok, b = c.spawn(function() return "spawned" end):join()
        return a, ok, b
      end)
      assert.same({ 42, true, "spawned" }, { f:result() })
    end)

    it("raises kind argument for a non-function task", function()
      helpers.raises("argument", "function expected, got number", pool.submit, pool, 42)
      helpers.raises("argument", "unknown option 'bogus'", pool.submit, pool,
        { function() end, bogus = 1 })
      helpers.raises("argument", "timeout", pool.submit, pool, { function() end, timeout = -1 })
    end)

    it("raises kind transfer naming the argument that cannot be sent", function()
      local err = helpers.raises("transfer", "coroutine", pool.submit, pool,
        function() end, 1, { cb = coroutine.create(print) })
      assert.matches("args%[2%]%.cb", err.message)
    end)
  end)

  describe("many values", function()
    -- run in a child process: a stack overflow would kill it, not the suite
    it("carries hundreds of arguments, initargs and results", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local t = {}
        for i = 1, 300 do t[i] = i end
        local pool <close> = concur.ThreadPool { workers = 1, initargs = t,
          initializer = function(...) N = select("#", ...) end }
        print("args", pool:submit(function(...) return select("#", ...) end, table.unpack(t)):result())
        print("init", pool:submit(function() return N end):result())
        print("results", select("#", pool:submit(function(n) return table.unpack({}, 1, n) end, 700):result()))
        local f = pool:submit { function(...) return select("#", ...) end, args = t }
        print("table form", f:result())
        local co = pool:submit(function(n)
          local args = {}
          for i = 1, n do args[i] = i end
          local r = table.pack(coroutine.resume(coroutine.create(function(...) return ... end),
                                                table.unpack(args)))
          return r.n
        end, 5000)
        print("resume", co:result())
      ]], 60)
      assert.is_true(ok, out)
      assert.matches("args\t300\n", out)
      assert.matches("init\t300\n", out)
      assert.matches("results\t700\n", out)
      assert.matches("table form\t300\n", out)
      assert.matches("resume\t5001\n", out)
    end)

    it("fails a task with more results than a stack can take with kind limit, and goes on", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool <close> = concur.ThreadPool(1)
        local f = pool:submit(function()
          local t = {}
          for i = 1, 999980 do t[i] = i end
          return table.unpack(t)
        end)
        local ok, err = pcall(f.result, f)
        print("huge", ok, err.kind, err.message)
        print("after", pool:submit(function() return "fine" end):result())
      ]], 60)
      assert.is_true(ok, out)
      assert.matches("huge\tfalse\tlimit\t[^\n]*too many values", out)
      assert.matches("after\tfine", out)
    end)

    it("refuses more arguments than a stack can take with kind limit", function()
      local t = {}
      for i = 1, 1000001 do t[i] = i end
      helpers.raises("limit", "too many values in option 'args'", pool.submit, pool,
        { function() end, args = t })
      helpers.raises("limit", "too many values in option 'initargs'", concur.ThreadPool,
        { workers = 1, initializer = function() end, initargs = t })
    end)
  end)

  describe("task errors", function()
    it("fail the future with kind task, the value and the worker's traceback", function()
      local f = pool:submit(function() local function inner() error("boom") end inner() end)
      local err = helpers.raises("task", "boom", f.result, f)
      assert.matches("boom", err.value)
      assert.matches("traceback", err.traceback)
      assert.matches("inner", err.traceback)
      assert.matches("boom", tostring(err))
    end)

    it("keep non-string error values", function()
      local f = pool:submit(function() error({ code = 7 }) end)
      local err = helpers.error_of(f.result, f)
      assert.same({ code = 7 }, err.value)
    end)

    it("turn error values that cannot be sent into strings", function()
      local f = pool:submit(function() error(coroutine.create(print)) end)
      local err = helpers.error_of(f.result, f)
      assert.equal("task", err.kind)
      assert.matches("^thread:", err.value)
    end)

    it("report results that cannot be sent", function()
      local f = pool:submit(function() return coroutine.create(print) end)
      local err = helpers.error_of(f.result, f)
      assert.equal("transfer", err.kind)
      assert.matches("results%[1%]", err.message)
    end)

    it("leave the worker usable", function()
      pool:submit(function() error("x") end):error()
      assert.equal(1, pool:submit(function() return 1 end):result())
    end)
  end)

  describe("cancellation and timeouts", function()
    it("drops a pending task", function()
      local p1 <close> = concur.ThreadPool(1)
      local blocker = p1:submit(function() concur.sleep(0.3) end)
      local f = p1:submit(function() return "never" end)
      assert.is_true(f:cancel())
      assert.is_true(f:cancelled())
      assert.is_true(f:done())
      helpers.raises("cancelled", nil, f.result, f)
      blocker:result()
      assert.equal(1, p1:stats().cancelled)
    end)

    it("stops a running CPU loop within 100 ms and reuses the worker #notsan", function()
      local p1 <close> = concur.ThreadPool(1)
      local started = concur.Event()
      local f = p1:submit(function(ev) ev:set() while true do end end, started)
      started:wait()
      assert.is_true(f:running())
      local t0 = concur.monotonic()
      assert.is_true(f:cancel())
      helpers.raises("cancelled", nil, f.result, f)
      assert.is_true(concur.monotonic() - t0 < helpers.prompt(0.1))
      assert.equal("again", p1:submit(function() return "again" end):result())
    end)

    it("stops a task that catches the cancellation with pcall #notsan", function()
      local p1 <close> = concur.ThreadPool(1)
      local started = concur.Event()
      local f = p1:submit(function(ev)
        ev:set()
        while true do pcall(function() while true do end end) end
      end, started)
      started:wait()
      f:cancel()
      helpers.raises("cancelled", nil, f.result, f, 5)
    end)

    it("stops a loop inside a coroutine the task made #notsan", function()
      local p1 <close> = concur.ThreadPool(1)
      local started = concur.Event()
      local f = p1:submit(function(ev)
        local co = coroutine.wrap(function() ev:set() while true do end end)
        while true do pcall(co) end
      end, started)
      started:wait()
      f:cancel()
      helpers.raises("cancelled", nil, f.result, f, 5)
      assert.equal("ok", p1:submit(function()
        return coroutine.wrap(function() coroutine.yield("ok") end)()
      end):result())
    end)

    it("wakes a task blocked in a concur wait", function()
      local p1 <close> = concur.ThreadPool(1)
      local started = concur.Event()
      local f = p1:submit(function(ev) ev:set() concur.sleep(60) end, started)
      started:wait()
      local t0 = concur.monotonic()
      f:cancel()
      helpers.raises("cancelled", nil, f.result, f, 5)
      assert.is_true(concur.monotonic() - t0 < helpers.prompt(0.1))
    end)

    it("fails a task past its deadline with kind timeout #notsan", function()
      local p1 <close> = concur.ThreadPool(1)
      local t0 = concur.monotonic()
      local f = p1:submit { function() while true do end end, timeout = 0.05 }
      helpers.raises("timeout", nil, f.result, f, 5)
      assert.is_true(concur.monotonic() - t0 < helpers.prompt(0.15))
      assert.equal(2, p1:submit(function() return 2 end):result())
      local g = p1:submit { function() concur.sleep(60) end, timeout = 0.05 }
      helpers.raises("timeout", nil, g.result, g, 5)
    end)

    it("returns false when cancelling a finished task", function()
      local f = pool:submit(function() return 1 end)
      f:result()
      assert.is_false(f:cancel())
      assert.is_false(f:cancelled())
    end)

    -- Lua runs no hook inside a finalizer or a debug hook, so a task looping
    -- there cannot be stopped: its worker is left behind after a grace.
    it("leaves behind a worker whose task is stuck in a finalizer past its deadline", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool = concur.ThreadPool(1)
        local f = pool:submit { function()
          setmetatable({}, { __gc = function() while true do end end })
          collectgarbage()
        end, timeout = 0.1 }
        local fok, err = pcall(f.result, f)
        print("stuck", fok, err.kind, err.message)
        print("next", pool:submit(function() return concur.thread_name() end):result())
        pool:close()
        print("closed")
      ]], 30)
      assert.is_true(ok, out)
      assert.matches("stuck\tfalse\ttimeout\ttask stuck: [^\n]*left behind", out)
      assert.matches("next\tThreadPool%-0_1\n", out)   -- a new worker took its place
      assert.matches("closed", out)
    end)

    it("leaves behind a worker whose cancelled task is stuck in a debug hook", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool = concur.ThreadPool(1)
        local started = concur.Event()
        local f = pool:submit(function(ev)
          debug.sethook(function() ev:set() while true do end end, "", 1)
          for _ = 1, 10 do end
        end, started)
        started:wait()
        print("cancel", f:cancel())
        local fok, err = pcall(f.result, f)
        print("stuck", fok, err.kind)
        print("next", pool:submit(function() return "fine" end):result())
        pool:close()
        print("closed")
      ]], 30)
      assert.is_true(ok, out)
      assert.matches("cancel\ttrue", out)
      assert.matches("stuck\tfalse\ttimeout", out)
      assert.matches("next\tfine", out)
      assert.matches("closed", out)
    end)

    it("lets a worker left behind end by itself, its state closed by its own thread", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local function threads()
          local f = io.open("/proc/self/status")
          local s = f:read("a")
          f:close()
          return tonumber(s:match("Threads:%s*(%d+)"))
        end
        concur.spawn(function() end):join()   -- (a sanitizer starts its own thread)
        local before = threads()
        local release, left, closed = concur.Event(), concur.Event(), concur.Event()
        do
          local pool = concur.ThreadPool(1)
          local f = pool:submit { function(r, l, c)
            KEEP = setmetatable({}, { __gc = function() c:set() end })  -- at its state's close
            setmetatable({}, { __gc = function()
              while not r:is_set() do end
              l:set()
            end })
            collectgarbage()
            while true do end      -- stopped at its deadline, once out of the finalizer
          end, args = { release, left, closed }, timeout = 0.1 }
          print("stuck", pcall(f.result, f))
          pool:close()
          print("closed the pool")
        end
        collectgarbage()          -- the pool's proxy is gone: the stuck thread holds it
        release:set()
        left:wait()
        print("state closed", closed:wait(20))
        local deadline = concur.monotonic() + 20
        while threads() > before and concur.monotonic() < deadline do concur.sleep(0.01) end
        print("threads", threads() - before)
      ]], 60)
      assert.is_true(ok, out)
      assert.matches("stuck\tfalse", out)
      assert.matches("closed the pool", out)
      assert.matches("state closed\ttrue", out)
      assert.matches("threads\t0", out)
    end)
  end)

  describe("map", function()
    it("returns results in order", function()
      local items = {}
      for i = 1, 1000 do items[i] = i end
      local r = pool:map(function(x) return x * x end, items)
      assert.equal(1000, #r)
      for i = 1, 1000 do assert.equal(i * i, r[i]) end
    end)

    it("keeps nil results in their places and reads a proxy array through its metamethods", function()
      for _, cs in ipairs { 1, 3, 100 } do
        local r = pool:map(function(x) if x % 2 == 0 then return nil end return x end,
          { 1, 2, 3, 4, 5, 6, 7 }, { chunksize = cs })
        for i = 1, 7 do assert.equal(i % 2 == 1 and i or nil, r[i]) end
        local proxy = setmetatable({}, { __index = function(_, i) return i * 10 end,
                                         __len = function() return 5 end })
        assert.same({ 11, 21, 31, 41, 51 }, pool:map(function(x) return x + 1 end, proxy,
          { chunksize = cs }))
      end
    end)

    it("keeps a table shared by several items shared, within a chunk", function()
      local t = { 1, { 2 } }
      local r = pool:map(function(x) return x end, { t, t, 5, t }, { chunksize = 4 })
      assert.same({ 1, { 2 } }, r[1])
      assert.equal(5, r[3])
      assert.equal(r[1], r[2])
      assert.equal(r[1], r[4])
    end)

    it("honours chunksize and reports progress", function()
      local seen = {}
      local r = pool:map(function(x) return -x end, { 1, 2, 3, 4, 5 },
        { chunksize = 2, progress = function(done, total) seen[#seen + 1] = done .. "/" .. total end })
      assert.same({ -1, -2, -3, -4, -5 }, r)
      assert.same({ "2/5", "4/5", "5/5" }, seen)
    end)

    it("raises the first task error", function()
      local err = helpers.raises("task", "bad 3", pool.map, pool, function(x)
        if x >= 3 then error("bad " .. x) end
        return x
      end, { 1, 2, 3, 4, 5 }, { chunksize = 1 })
      assert.matches("bad 3", err.value)
    end)

    it("raises kind timeout when the whole call overruns, and stops its tasks", function()
      helpers.raises("timeout", "map timed out", pool.map, pool,
        function() concur.sleep(5) end, { 1, 2 }, { timeout = 0.05 })
      local t0 = concur.monotonic()
      pool:close()       -- nothing left running: returns at once
      assert.is_true(concur.monotonic() - t0 < 1)
    end)

    it("checks its arguments", function()
      helpers.raises("argument", "function expected", pool.map, pool, 1, {})
      helpers.raises("argument", "array expected", pool.map, pool, print, 1)
      helpers.raises("argument", "unknown option 'chunk'", pool.map, pool, print, {}, { chunk = 1 })
      helpers.raises("argument", "chunksize", pool.map, pool, print, {}, { chunksize = 0 })
    end)
  end)

  describe("imap", function()
    it("yields index and result in order, from an array", function()
      local out = {}
      for i, v in pool:imap(function(x) return x + 100 end, { 1, 2, 3, 4, 5, 6, 7 }) do
        out[#out + 1] = i .. "=" .. v
      end
      assert.same({ "1=101", "2=102", "3=103", "4=104", "5=105", "6=106", "7=107" }, out)
    end)

    it("pulls lazily from an iterator", function()
      local pulled = 0
      local function gen()
        if pulled >= 1000 then return nil end
        pulled = pulled + 1
        return pulled
      end
      local iter = pool:imap(function(x) return x end, gen)
      local i, v = iter()
      assert.same({ 1, 1 }, { i, v })
      assert.is_true(pulled < 1000)
      local n = 1
      for _ in iter do n = n + 1 end
      assert.equal(1000, n)
    end)

    it("raises a task error at the failing item", function()
      local iter = pool:imap(function(x) if x == 2 then error("two") end return x end, { 1, 2, 3 },
        { chunksize = 1 })
      assert.equal(1, select(2, iter()))
      helpers.raises("task", "two", iter)
    end)
  end)

  describe("imap_unordered", function()
    it("yields every index once, in completion order", function()
      local seen, n = {}, 0
      for i, v in pool:imap_unordered(function(x)
        if x == 1 then concur.sleep(0.05) end
        return x * 2
      end, { 1, 2, 3, 4 }, { chunksize = 1 }) do
        assert.equal(i * 2, v)
        assert.is_nil(seen[i])
        seen[i] = true
        n = n + 1
      end
      assert.equal(4, n)
    end)
  end)

  describe("construction", function()
    it("defaults to one worker per CPU", function()
      local p <close> = concur.ThreadPool()
      assert.equal(concur.cpu_count(), p:stats().workers)
    end)

    it("rejects bad worker counts and options", function()
      helpers.raises("argument", "between 1 and", concur.ThreadPool, 0)
      helpers.raises("argument", "between 1 and", concur.ThreadPool, -3)
      helpers.raises("argument", "integer or table", concur.ThreadPool, "4")
      helpers.raises("argument", "unknown option 'worker'", concur.ThreadPool, { worker = 2 })
      helpers.raises("argument", "initializer", concur.ThreadPool, { initializer = 1 })
    end)

    it("runs the initializer once in every worker, with initargs", function()
      local p <close> = concur.ThreadPool { workers = 2, name = "ini",
        initializer = function(tag) _G.TAG = tag .. ":" .. concur.thread_name() end,
        initargs = { "ready" } }
      local tags = {}
      for _ = 1, 20 do tags[p:submit(function() return _G.TAG end):result()] = true end
      for tag in pairs(tags) do assert.matches("^ready:ini_%d$", tag) end
    end)

    it("marks the pool broken when the initializer fails", function()
      local p <close> = concur.ThreadPool { workers = 1,
        initializer = function() error("no config") end }
      -- the submit races the initializer: it fails either at submit (the
      -- pool already broke) or at result (the queued task is failed)
      local ok, f = pcall(p.submit, p, function() return 1 end)
      local err = ok and helpers.error_of(f.result, f, 5) or f
      assert.equal("broken", err.kind)
      assert.matches("no config", err.message)
      helpers.raises("broken", "no config", p.submit, p, function() end)
    end)

    it("blocks submit while max_pending tasks wait", function()
      local p <close> = concur.ThreadPool { workers = 1, max_pending = 1 }
      local started = concur.Event()
      local first = p:submit(function(ev) ev:set() concur.sleep(0.1) return 1 end, started)
      started:wait()        -- taken off the queue
      p:submit(function() return 2 end)       -- fills the queue
      p:submit(function() return 3 end)       -- waits for the first to finish
      assert.is_true(first:done())
    end)
  end)

  describe("shutdown", function()
    it("raises kind closed on submit after shutdown", function()
      pool:shutdown()
      helpers.raises("closed", "shut down", pool.submit, pool, print)
    end)

    it("requires booleans for wait and cancel_pending", function()
      helpers.raises("argument", "option 'wait' must be a boolean, got string",
        pool.shutdown, pool, { wait = "x" })
      helpers.raises("argument", "option 'cancel_pending' must be a boolean, got number",
        pool.shutdown, pool, { cancel_pending = 1 })
      assert.equal(1, pool:submit(function() return 1 end):result())   -- still open
      pool:shutdown { wait = true, cancel_pending = false }
    end)

    it("finishes queued work by default", function()
      local p = concur.ThreadPool(1)
      local fs = {}
      for i = 1, 10 do fs[i] = p:submit(function(x) return x end, i) end
      p:shutdown { wait = true }
      for i = 1, 10 do assert.equal(i, fs[i]:result()) end
    end)

    it("cancels pending work when asked", function()
      local p = concur.ThreadPool(1)
      local started = concur.Event()
      local first = p:submit(function(ev) ev:set() concur.sleep(0.05) end, started)
      started:wait()        -- taken off the queue
      local rest = {}
      for i = 1, 5 do rest[i] = p:submit(function() end) end
      p:shutdown { cancel_pending = true }
      first:result()
      for i = 1, 5 do assert.is_true(rest[i]:cancelled()) end
      assert.equal(5, p:stats().cancelled)
    end)

    it("is called by <close>", function()
      local f
      do
        local p <close> = concur.ThreadPool(1)
        f = p:submit(function() concur.sleep(0.02) return "done" end)
      end
      assert.is_true(f:done())
    end)

    it("counts work in stats", function()
      pool:submit(function() end):result()
      pool:submit(function() error("x") end):error()
      local s = pool:stats()
      assert.same({ workers = 2, pending = 0, running = 0, completed = 1, failed = 1, cancelled = 0 }, s)
    end)

    it("leaks no threads over 1,000 pools", function()
      collectgarbage()
      local before = helpers.thread_count()
      for _ = 1, helpers.size(1000, 100) do   -- a leak shows as +100 threads
        local p <close> = concur.ThreadPool(1)   -- luacheck: ignore 211
      end
      local p <close> = concur.ThreadPool(1)   -- reaps what is over
      p:close()
      assert.is_true(helpers.thread_count() <= before + 1)
    end)

    it("does not wait for the threads its tasks started: interpreter exit joins them", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool = concur.ThreadPool(1)
        local go = concur.Event()
        pool:submit(function(g)
          concur.spawn(function(gg) gg:wait() io.write("thread done\n") end, g)
        end, go):result()
        pool:close()
        io.write("pool closed\n")
        go:set()                  -- only now can the thread end: exit waits for it
      ]], 20)
      assert.is_true(ok, out)
      assert.matches("pool closed\nthread done", out)
    end)

    it("does not wait for the daemon threads its tasks started: exit cancels them", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool = concur.ThreadPool(1)
        pool:submit(function()
          concur.spawn { function() while true do concur.sleep(0.01) end end, daemon = true }
          concur.spawn { function() concur.Event():wait() end, daemon = true }
        end):result()
        pool:close()
        print("pool closed")
      ]], 20)
      assert.is_true(ok, out)
      assert.matches("pool closed", out)
    end)

    it("stays bounded at exit with a task stuck in a finalizer", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool = concur.ThreadPool(1)
        local started = concur.Event()
        pool:submit(function(ev)
          setmetatable({}, { __gc = function() ev:set() while true do end end })
          collectgarbage()
        end, started)
        started:wait()
        print("exiting")
      ]], 20)
      assert.is_true(ok, out)
      assert.matches("exiting", out)
    end)

    it("never hangs at exit with running and queued tasks, or a dropped pool #notsan", function()
      local ok, code, out = helpers.run_lua([[
        local concur = require "concur"
        local p = concur.ThreadPool(2)
        for i = 1, 10 do p:submit(function() while true do end end) end
        local dropped = concur.ThreadPool(1)
        dropped:submit(function() concur.sleep(60) end)
        dropped = nil
        collectgarbage()
        print("exiting")
      ]], 20)
      assert.is_true(ok, out)
      assert.equal(0, code)
      assert.matches("exiting", out)
    end)
  end)

  describe("under load", function()
    it("delivers each of 1,000,000 trivial tasks exactly once #stress", function()
      local p <close> = concur.ThreadPool(2)
      local function id(x) return x end
      local total, count = 0, 0
      for base = 0, 999999, 20000 do
        local fs = {}
        for i = 1, 20000 do fs[i] = p:submit(id, base + i) end
        for i = 1, 20000 do
          local v = fs[i]:result()
          assert(v == base + i)
          total = total + v
          count = count + 1
        end
      end
      assert.equal(1000000, count)
      assert.equal(1000000 * 1000001 // 2, total)
    end)
  end)
end)
