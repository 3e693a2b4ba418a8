-- Python parity: the checks of CPython 3.13's own suites (lock_tests,
-- test_queue, test_concurrent_futures, _test_multiprocessing) that concur
-- used to fail, ported to concur's API. Each `it` names the CPython test it
-- follows; where concur's contract goes further than Python (a negative
-- timeout on a Lock or a Queue), the check says so.
local helpers = require "helpers"
local concur = helpers.concur
local raises = helpers.raises

-- A thread that holds 'obj' (acquired with 'take') until released; returns
-- the release function once the thread holds it.
local function held_elsewhere(obj, take, give)
  local holding, done = concur.Event(), concur.Event()
  local t = concur.spawn(function(o, h, d, tk, gv)
    assert(o[tk](o))
    h:set()
    d:wait()
    o[gv](o)
  end, obj, holding, done, take, give)
  assert(holding:wait(10))
  return function()
    done:set()
    assert(t:join(10))
  end
end

describe("Python parity", function()
  local pool
  setup(function() pool = concur.ThreadPool(2) end)
  teardown(function() pool:close() end)

  describe("a negative timeout means 'don't wait'", function()
    -- lock_tests.EventTests.test_timeout: wait(0.0) is False while unset,
    -- True once set; the same with the negative timeout of a passed deadline
    it("Event:wait (lock_tests.EventTests.test_timeout)", function()
      local evt = concur.Event()
      local deadline = concur.monotonic() - 1
      assert.is_false(evt:wait(0.0))
      assert.is_false(evt:wait(deadline - concur.monotonic()))
      evt:set()
      assert.is_true(evt:wait(0.0))
      assert.is_true(evt:wait(deadline - concur.monotonic()))
    end)

    it("Condition:wait and wait_for (lock_tests.ConditionTests.test_timeout)", function()
      local cond = concur.Condition()
      assert.is_true(cond:acquire())
      assert.is_false(cond:wait(-1))
      assert.equal(false, cond:wait_for(function() return false end, -1))
      assert.equal("ready", cond:wait_for(function() return "ready" end, -0.5))
      cond:release()
    end)

    it("Semaphore and BoundedSemaphore acquire (lock_tests.BaseSemaphoreTests.test_acquire_timeout)", function()
      for _, sem in ipairs { concur.Semaphore(1), concur.BoundedSemaphore(1) } do
        assert.is_true(sem:acquire(-1))
        assert.is_false(sem:acquire(-1))
        sem:release()
        assert.equal(1, sem:value())
      end
    end)

    it("Lock and RLock acquire: true when free, false at once when held (concur goes further)", function()
      -- Python's Lock raises ValueError for a negative timeout other than -1
      -- (which waits for ever); concur's contract: every negative one is no wait
      for _, lock in ipairs { concur.Lock(), concur.RLock() } do
        local release = held_elsewhere(lock, "acquire", "release")
        assert.is_false(lock:acquire(-1))
        assert.is_false(lock:acquire(-100))
        release()
        assert.is_true(lock:acquire(-1))
        lock:release()
      end
    end)

    it("Queue get and put (test_queue: concur goes further)", function()
      -- test_queue.test_negative_timeout_raises_exception expects ValueError;
      -- concur's contract: a negative timeout is a wait that does not block
      local q = concur.Queue(1)
      raises("timeout", "get timed out", q.get, q, -1)
      q:put(1, -1)
      raises("timeout", "put timed out", q.put, q, 2, -1)
      assert.equal(1, q:get(-1))
    end)

    it("Future result and error (test_concurrent_futures FutureTests.test_result_with_timeout)", function()
      local gate = concur.Event()
      local f = pool:submit(function(g) g:wait() return 42 end, gate)
      raises("timeout", "timed out", f.result, f, -1)
      raises("timeout", "timed out", f.error, f, -1)
      gate:set()
      assert.equal(42, f:result())
      assert.equal(42, f:result(-1))
      assert.is_nil(f:error(-1))
    end)

    it("concur.wait and as_completed (WaitTests, AsCompletedTests.test_zero_timeout)", function()
      local gate = concur.Event()
      local done_f = pool:submit(function() return 1 end)
      done_f:result()
      local slow = pool:submit(function(g) g:wait() end, gate)
      local done, pending = concur.wait({ done_f, slow }, { timeout = -1 })
      assert.same({ done_f }, done)
      assert.same({ slow }, pending)
      local seen = {}
      local ok, err = pcall(function()
        for f in concur.as_completed({ done_f, slow }, -1) do seen[#seen + 1] = f end
      end)
      assert.is_false(ok)
      assert.equal("timeout", err.kind)
      assert.same({ done_f }, seen)
      gate:set()
      slow:result()
    end)

    it("Thread and Process join (lock_tests / _test_multiprocessing join(timeout))", function()
      local gate = concur.Event()
      local t = concur.spawn(function(g) g:wait() return "t" end, gate)
      raises("timeout", "timed out", t.join, t, -1)
      local p = concur.Process(function(g) g:wait() return "p" end, gate)
      raises("timeout", "still running", p.join, p, -1)
      gate:set()
      assert.same({ true, "t" }, { t:join() })
      assert.same({ true, "p" }, { p:join() })
      assert.same({ true, "t" }, { t:join(-1) })
    end)

    it("Barrier wait breaks the barrier at once (lock_tests.BarrierTests.test_timeout)", function()
      local b = concur.Barrier(2)
      raises("timeout", "timed out", b.wait, b, -1)
      assert.is_true(b:broken())
    end)

    it("RateLimiter acquire", function()
      local rl = concur.RateLimiter { rate = 1, per = 3600 }
      assert.is_true(rl:acquire(-1))
      assert.is_false(rl:acquire(-1))
    end)

    it("concur.sleep returns at once (Python's time.sleep raises: concur chose 'no wait')", function()
      concur.sleep(-1)
      concur.sleep(-math.huge)
      raises("argument", "NaN", concur.sleep, 0 / 0)
    end)

    it("map, imap and imap_unordered with a passed deadline (ExecutorTest.test_map_timeout)", function()
      local gate = concur.Event()
      for _, m in ipairs { "map", "imap", "imap_unordered" } do
        raises("timeout", "timed out", function()
          local r = pool[m](pool, function(g) g:wait() end, { gate }, { timeout = -1 })
          if type(r) == "function" then r() end
        end)
      end
      gate:set()
    end)

    it("still raises kind argument for NaN and non-numbers", function()
      local evt = concur.Event()
      raises("argument", "NaN", evt.wait, evt, 0 / 0)
      raises("argument", "number expected", evt.wait, evt, "soon")
      raises("argument", "NaN", concur.wait, {}, { timeout = 0 / 0 })
    end)
  end)

  describe("Queue(0) and Queue(-1) are unbounded", function()
    -- test_queue.BaseQueueTestMixin: a maxsize <= 0 is an infinite queue
    it("takes any number of items without blocking (test_queue.BaseQueueTestMixin.test_queue_unbounded)", function()
      for _, maxsize in ipairs { 0, -1, -100 } do
        local q = concur.Queue(maxsize)
        for i = 1, 1000 do q:put(i, 0) end
        assert.is_false(q:full())
        assert.equal(1000, q:size())
        for i = 1, 1000 do assert.equal(i, q:get(0)) end
        assert.is_true(q:empty())
      end
    end)
  end)

  describe("a future listed twice counts once", function()
    it("as_completed (test_concurrent_futures.AsCompletedTests.test_duplicate_futures)", function()
      local gate = concur.Event()
      local f = pool:submit(function(g) g:wait() return "x" end, gate)
      gate:set()
      local completed = {}
      for c in concur.as_completed({ f, f, f }) do completed[#completed + 1] = c end
      assert.equal(1, #completed)
      assert.equal(f, completed[1])
    end)

    it("wait (test_concurrent_futures.WaitTests)", function()
      local f = pool:submit(function() return 1 end)
      local g = pool:submit(function() return 2 end)
      local done, pending = concur.wait({ f, g, f, g, f })
      assert.equal(2, #done)
      assert.equal(0, #pending)
      local gate = concur.Event()
      local h = pool:submit(function(e) e:wait() end, gate)
      done, pending = concur.wait({ h, h }, { timeout = 0 })
      assert.same({}, done)
      assert.same({ h }, pending)
      gate:set()
      done = concur.wait({ h, h, f })
      assert.equal(2, #done)
    end)
  end)

  describe("unique worker names", function()
    -- every worker of a pool is busy at once (a barrier of all of them), so
    -- each name is seen
    local function names(p, n)
      local b = concur.Barrier(n)
      local fs, out = {}, {}
      for i = 1, n do
        fs[i] = p:submit(function(bar) bar:wait(10) return concur.thread_name() end, b)
      end
      for i = 1, n do out[fs[i]:result()] = true end
      return out
    end

    it("pools without a name (test_concurrent_futures.ThreadPoolExecutorTest.test_thread_names_default)", function()
      local a <close> = concur.ThreadPool(5)
      local b <close> = concur.ThreadPool(5)
      local na, nb = names(a, 5), names(b, 5)
      local prefixes = {}
      for _, set in ipairs { na, nb } do
        local count = 0
        for name in pairs(set) do
          assert.matches("^ThreadPool%-%d+_[0-4]$", name)
          prefixes[name:match("^(.*)_")] = true
          count = count + 1
        end
        assert.equal(5, count)
      end
      for name in pairs(na) do assert.is_nil(nb[name]) end
      local np = 0
      for _ in pairs(prefixes) do np = np + 1 end
      assert.equal(2, np)
    end)

    it("a named pool (test_concurrent_futures.ThreadPoolExecutorTest.test_thread_names_assigned)", function()
      local p <close> = concur.ThreadPool { workers = 5, name = "SpecialPool" }
      local count = 0
      for name in pairs(names(p, 5)) do
        assert.matches("^SpecialPool_[0-4]$", name)
        count = count + 1
      end
      assert.equal(5, count)
    end)
  end)

  describe("a task that raises a concur.Error keeps its kind", function()
    local function bad_factorial() return require("concur.bigint").factorial(-1) end
    local function limit_error()
      error(require("concur").Error.new("limit", "too big", { code = 7 }))
    end

    local function check(err, kind)
      assert.is_true(concur.Error.is(err, kind), tostring(err and err.kind))
      local first, rest = tostring(err):match("^([^\n]*)\n(.*)$")
      assert.is_truthy(first)
      assert.is_nil(first:find("stack traceback", 1, true))
      assert.matches("^stack traceback:", rest)
    end

    it("on a ThreadPool and a ProcessPool", function()
      local pp <close> = concur.ProcessPool(1)
      for _, p in ipairs { pool, pp } do
        local err = p:submit(bad_factorial):error()
        check(err, "argument")
        assert.matches("^bad argument #1 to 'factorial'", err.message)
        err = p:submit(limit_error):error()
        check(err, "limit")
        assert.equal(7, err.code)
        assert.equal("too big", err.message)
        raises("limit", "too big", function() return p:submit(limit_error):result() end)
        err = p:submit(function() error("plain") end):error()
        check(err, "task")
        assert.matches("plain$", err.value)
      end
    end)

    it("in a thread and a Process (join)", function()
      local ok, err = concur.spawn(bad_factorial):join()
      assert.is_false(ok)
      check(err, "argument")
      ok, err = concur.Process(limit_error):join()
      assert.is_false(ok)
      check(err, "limit")
      assert.equal(7, err.code)
    end)

    it("a concur wait's own error raised inside a task", function()
      local err = pool:submit(function() return require("concur").Queue():get(0) end):error()
      check(err, "timeout")
      assert.is_nil(err.interrupt)
    end)
  end)

  describe("Process.exitcode (_test_multiprocessing)", function()
    it("is nil while it runs, 0 once it returned (_TestProcess.test_process)", function()
      local gate = concur.Event()
      local p = concur.Process(function(g) g:wait() return "done" end, gate)
      assert.is_nil(p.exitcode)
      gate:set()
      assert.same({ true, "done" }, { p:join() })
      assert.equal(0, p.exitcode)
    end)

    it("is 1 when the function raised", function()
      local p = concur.Process(function() error("ignore this") end)
      local ok, err = p:join()
      assert.is_false(ok)
      assert.matches("ignore this", err.message)
      assert.equal(1, p.exitcode)
    end)

    it("is the os.exit code; join is true for os.exit(0) (_TestSubclassingProcess.test_sys_exit)", function()
      local cases = {
        { function() os.exit(true) end, 0, true },
        { function() os.exit(false) end, 1, false },
        { function() os.exit(8) end, 8, false },
        { function() os.exit() end, 0, true },
        { function() os.exit(0) end, 0, true },
      }
      for _, c in ipairs(cases) do
        local p = concur.Process(c[1])
        local ok, err = p:join()
        assert.equal(c[3], ok)
        assert.equal(c[2], p.exitcode)
        if not ok then
          assert.equal("broken", err.kind)
          assert.matches("^process %d+ exited with status " .. c[2] .. "$", err.message)
        end
      end
    end)

    it("is -signal when killed (_TestProcess.test_terminate)", function()
      local gate = concur.Event()
      local p = concur.Process(function(g) g:wait() end, gate)
      assert.is_true(p:kill())
      local ok, err = p:join()
      assert.is_false(ok)
      assert.equal(-15, p.exitcode)
      assert.equal("broken", err.kind)
      assert.matches("killed by signal 15", err.message)
    end)

    it("says killed, not 'pool is broken', when killed right after start (_TestProcess.test_many_processes)", function()
      local N = 5
      local procs = {}
      for i = 1, N do procs[i] = concur.Process(function() return 1 end) end
      for i = 1, N do assert.same({ true, 1 }, { procs[i]:join() }) end
      for i = 1, N do assert.equal(0, procs[i].exitcode) end
      local gate = concur.Event()
      for i = 1, N do procs[i] = concur.Process(function(g) g:wait() end, gate) end
      for i = 1, N do procs[i]:kill() end
      for i = 1, N do
        local ok, err = procs[i]:join()
        assert.is_false(ok)
        assert.equal(-15, procs[i].exitcode)
        assert.is_nil(err.message:find("pool is broken", 1, true))
        assert.matches("^process %d+ killed by signal 15", err.message)
      end
    end)
  end)

  describe("Barrier action and default timeout (lock_tests.BarrierTests)", function()
    local N = 5
    -- run_threads: N threads run f(i), the main thread joins them
    local function run_threads(f, ...)
      local ts = {}
      for i = 1, N do ts[i] = concur.spawn(f, i, ...) end
      local out = {}
      for i = 1, N do out[i] = table.pack(ts[i]:join(30)) end
      return out
    end

    it("runs the action once per cycle, before any party goes on (test_action)", function()
      local results = concur.Value(0)
      local barrier = concur.Barrier(N, { action = function() results:add(1) end })
      local out = run_threads(function(_, b, r)
        b:wait()
        local seen = r:get()
        b:wait()   -- a second cycle
        return seen, r:get()
      end, barrier, results)
      for i = 1, N do
        assert.is_true(out[i][1], tostring(out[i][2]))
        assert.equal(1, out[i][2])
        assert.equal(2, out[i][3])
      end
    end)

    it("an action that raises breaks the barrier: its error for the last party, broken for the others", function()
      local barrier = concur.Barrier(N, { action = function() error({ my = "error" }) end })
      local out = run_threads(function(_, b)
        local ok, err = pcall(b.wait, b)
        if ok then return "passed" end
        if type(err) == "table" and err.my then return "MyError" end
        return err.kind
      end, barrier)
      local count = {}
      for i = 1, N do count[out[i][2]] = (count[out[i][2]] or 0) + 1 end
      assert.equal(1, count.MyError)
      assert.equal(N - 1, count.broken)
      assert.is_true(barrier:broken())
      barrier:reset()
      assert.is_false(barrier:broken())
    end)

    it("the barrier's own timeout applies when wait has none (test_default_timeout)", function()
      local timeout = 0.1
      local barrier = concur.Barrier(2, { timeout = timeout })
      local start = concur.monotonic()
      local t = concur.spawn(function(b)
        local ok, err = pcall(b.wait, b)
        return ok, err.kind
      end, barrier)
      assert.same({ true, false, "timeout" }, { t:join(30) })
      assert.is_true(concur.monotonic() - start >= timeout)
      assert.is_true(barrier:broken())
      -- a timeout given to wait still wins
      local b2 = concur.Barrier(1, { timeout = 0 })
      assert.equal(0, b2:wait(5))
    end)

    it("works between processes, the action copied into the last party", function()
      local hits = concur.Value(0)
      local barrier = concur.Barrier(3, { action = function() hits:add(1) end })
      local ps = {}
      for i = 1, 2 do
        ps[i] = concur.Process(function(b, h) b:wait() return h:get() end, barrier, hits)
      end
      barrier:wait()
      local seen = hits:get()
      for i = 1, 2 do assert.same({ true, 1 }, { ps[i]:join() }) end
      assert.equal(1, seen)
    end)

    it("refuses bad options", function()
      raises("argument", "option 'action' must be a function", concur.Barrier, 2, { action = 1 })
      raises("argument", "option 'timeout' must be a number", concur.Barrier, 2, { timeout = "1" })
      raises("argument", "unknown option 'actions'", concur.Barrier, 2, { actions = print })
      raises("transfer", "coroutine", concur.Barrier, 2, {
        action = (function(co) return function() return co end end)(coroutine.create(print)) })
    end)
  end)

  describe("map over several arrays, and starmap", function()
    for _, kind in ipairs { "ThreadPool", "ProcessPool" } do
      describe(kind, function()
        local p
        setup(function() p = concur[kind](2) end)
        teardown(function() p:close() end)

        it("zips the arrays, the shortest wins (ExecutorTest.test_map)", function()
          local xs, ys = {}, {}
          for i = 0, 9 do xs[#xs + 1], ys[#ys + 1] = i, i end
          ys[#ys + 1] = 99   -- one longer: ignored
          local expect = {}
          for i = 0, 9 do expect[#expect + 1] = math.tointeger(i ^ i) end
          assert.same(expect, p:map(function(a, b) return math.tointeger(a ^ b) end, xs, ys))
          assert.same({ 3, 5 }, p:map(function(a, b, c) return a + b + c end,
                                      { 1, 1 }, { 1, 2, 3 }, { 1, 2 }, { chunksize = 1 }))
          local got = {}
          for i, v in p:imap(function(a, b) return a .. b end, { "a", "b" }, { "x", "y", "z" }) do
            got[i] = v
          end
          assert.same({ "ax", "by" }, got)
        end)

        it("starmap (_test_multiprocessing._TestPool.test_starmap)", function()
          local mul = function(a, b) return a * b end
          local tuples, expect = {}, {}
          for i = 0, 9 do
            tuples[#tuples + 1] = { i, 9 - i }
            expect[#expect + 1] = i * (9 - i)
          end
          assert.same(expect, p:starmap(mul, tuples))
          tuples, expect = {}, {}
          for i = 0, 99 do
            tuples[#tuples + 1] = { i, 99 - i }
            expect[#expect + 1] = i * (99 - i)
          end
          assert.same(expect, p:starmap(mul, tuples, { chunksize = 20 }))
          assert.same({ "nil,2", "1,nil" }, p:starmap(function(a, b)
            return tostring(a) .. "," .. tostring(b) end, { { n = 2, nil, 2 }, { 1, n = 2 } }))
          raises("argument", "not a table of arguments", p.starmap, p, mul, { 1, 2 })
        end)

        it("imap raises at the failing item, after the results before it (ExecutorTest.test_map_exception)", function()
          -- executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
          local it = p:imap(function(a, b) return { a // b, a % b } end, { 1, 1, 1, 1 }, { 2, 3, 0, 5 })
          assert.same({ 0, 1 }, select(2, it()))
          assert.same({ 0, 1 }, select(2, it()))
          local err = raises("task", "divide by zero", it)
          assert.equal(3, err.index)
        end)
      end)
    end
  end)

  describe("map says which item failed, or returns errors in place", function()
    it("names the failing item's index and value, in its message and fields", function()
      local items = { "a", "b", "bad", "c", "bad" }
      local err = raises("task", "boom", pool.map, pool, function(x)
        if x == "bad" then error("boom") end
        return x
      end, items, { chunksize = 2 })
      assert.equal(3, err.index)
      assert.equal("bad", err.item)
      assert.matches('boom %(map item 3: "bad"%)\n', tostring(err))
      assert.matches("^[^\n]+\nstack traceback:", tostring(err))
      local long = ("x"):rep(1000) .. "\n"
      err = raises("task", "no", pool.map, pool, function() error("no", 0) end, { long })
      assert.equal("no (map item 1: \"" .. ("x"):rep(37) .. "...\")", err.message)
      err = raises("task", "sum", pool.map, pool, function() error("sum", 0) end, { 1 }, { "two" })
      assert.equal('sum (map item 1: 1, "two")', err.message)
    end)

    it("errors = 'return' puts each failed item's error in its place", function()
      for _, cs in ipairs { 1, 3, 100 } do
        local r = pool:map(function(x)
          if x % 3 == 0 then error({ code = x }) end
          if x == 5 then error(concur.Error.new("argument", "five")) end
          return x * 10
        end, { 1, 2, 3, 4, 5, 6, 7 }, { errors = "return", chunksize = cs })
        assert.equal(7, #r)
        assert.same({ 10, 20, 40, 70 }, { r[1], r[2], r[4], r[7] })
        assert.is_true(concur.Error.is(r[3], "task"))
        assert.same({ code = 3 }, r[3].value)
        assert.truthy(r[3].traceback)
        assert.is_true(concur.Error.is(r[5], "argument"))
        assert.equal("five", r[5].message)
        assert.is_true(concur.Error.is(r[6], "task"))
      end
    end)

    it("errors = 'return' in imap, imap_unordered and starmap, and a ProcessPool", function()
      local got = {}
      for i, v in pool:imap(function(x) if x == 2 then error("two") end return x end,
                            { 1, 2, 3 }, { errors = "return" }) do
        got[i] = concur.Error.is(v) and v.kind or v
      end
      assert.same({ 1, "task", 3 }, got)
      got = {}
      for i, v in pool:imap_unordered(function(x) if x == 2 then error("two") end return x end,
                                      { 1, 2, 3 }, { errors = "return" }) do
        got[i] = concur.Error.is(v) and v.kind or v
      end
      assert.same({ 1, "task", 3 }, got)
      local r = pool:starmap(function(a, b) return a // b end, { { 4, 2 }, { 1, 0 } }, { errors = "return" })
      assert.equal(2, r[1])
      assert.is_true(concur.Error.is(r[2], "task"))
      local pp <close> = concur.ProcessPool(1)
      r = pp:map(function(x) if x == 1 then error("one") end return x end, { 0, 1, 2 }, { errors = "return" })
      assert.equal(0, r[1])
      assert.is_true(concur.Error.is(r[2], "task"))
      assert.equal(2, r[3])
    end)

    it("still stops a cancelled map: an interrupt is never an item's error #notsan", function()
      local started = concur.Event()
      local f = pool:submit(function(ev)
        return require("concur.core").mapchunk(function()
          ev:set()
          while true do end
        end, { 1 }, nil, false, "return")
      end, started)
      assert.is_true(started:wait(10))
      f:cancel()
      raises("cancelled", nil, f.result, f)
    end)

    it("rejects an unknown errors option", function()
      raises("argument", "errors must be 'raise' or 'return'", pool.map, pool,
             function() end, { 1 }, { errors = "ignore" })
    end)
  end)

  describe("imap over an iterator that raises (_test_multiprocessing test_imap_handle_iterable_exception)", function()
    -- exception_throwing_generator(total, when): raises at 'when' (-1: at once)
    local function gen(total, when)
      local i = -1
      return function()
        if when == -1 then error("Somebody said when", 0) end
        i = i + 1
        if i == when then error("Somebody said when", 0) end
        if i < total then return i end
      end
    end
    local function sqr(x) return x * x end

    for _, kind in ipairs { "ThreadPool", "ProcessPool" } do
      it("imap, on a " .. kind, function()
        local p <close> = concur[kind](2)
        local it = p:imap(sqr, gen(1, -1), { chunksize = 1 })
        assert.has_error(it, "Somebody said when")
        it = p:imap(sqr, gen(1, -1), { chunksize = 1 })   -- again: reentrant
        assert.has_error(it, "Somebody said when")
        it = p:imap(sqr, gen(10, 3), { chunksize = 1 })
        for i = 0, 2 do assert.equal(i * i, select(2, it())) end
        assert.has_error(it, "Somebody said when")
        -- seen at the start of the problematic chunk's results
        it = p:imap(sqr, gen(20, 7), { chunksize = 2 })
        for i = 0, 5 do assert.equal(i * i, select(2, it())) end
        assert.has_error(it, "Somebody said when")
        it = p:imap(sqr, gen(20, 7), { chunksize = 4 })
        for i = 0, 3 do assert.equal(i * i, select(2, it())) end
        assert.has_error(it, "Somebody said when")
      end)

      it("imap_unordered, on a " .. kind, function()
        local p <close> = concur[kind](2)
        local it = p:imap_unordered(sqr, gen(1, -1), { chunksize = 1 })
        assert.has_error(it, "Somebody said when")
        for _, case in ipairs { { 10, 3, 1 }, { 20, 7, 2 } } do
          it = p:imap_unordered(sqr, gen(case[1], case[2]), { chunksize = case[3] })
          local expected = {}
          for i = 0, case[1] - 1 do expected[i * i] = true end
          local seen = 0
          assert.has_error(function()
            for _ = 1, case[1] do
              local _, v = it()
              assert.is_true(expected[v])
              expected[v] = nil
              seen = seen + 1
            end
          end, "Somebody said when")
          assert.is_true(seen <= case[2])
        end
      end)
    end

    it("hands out the results that came before a timeout (ExecutorTest.test_map_timeout)", function()
      local gate = concur.Event()
      local results = {}
      local err = raises("timeout", "timed out", function()
        for _, v in pool:imap(function(x, g) if x == 6 then g:wait() end return x end,
                              { 0, 0, 6 }, { gate, gate, gate }, { timeout = 2, chunksize = 1 }) do
          results[#results + 1] = v
        end
      end)
      gate:set()
      assert.same({ 0, 0 }, results)
      assert.is_nil(err.interrupt)
    end)
  end)

  describe("an error in a thread nobody joins (test_threading.ExceptHookTests)", function()
    it("is written to stderr, with the thread's name and the traceback (test_excepthook)", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        concur.spawn { function() error("fail in thread") end, name = "Thread-1" }
        local j = concur.spawn(function() error("joined: never reported") end)
        assert(not j:join())
        concur.spawn(function() return "fine" end)
        concur.spawn { function() require("concur").sleep(100) end, daemon = true }
      ]], 60)
      assert.is_true(ok, out)
      assert.matches("Exception in thread Thread%-1:\n[^\n]*fail in thread\nstack traceback:", out)
      assert.is_nil(out:find("never reported", 1, true))
      assert.is_nil(out:find("cancelled", 1, true))   -- the daemon, cancelled at exit
      local n = 0
      for _ in out:gmatch("Exception in thread") do n = n + 1 end
      assert.equal(1, n)
    end)

    it("goes to concur.excepthook(err, thread) when set (test_custom_excepthook)", function()
      local seen = {}
      local saved = concur.excepthook
      finally(function() concur.excepthook = saved end)
      concur.excepthook = function(err, thread)
        seen[#seen + 1] = { name = thread.name, kind = err.kind, message = err.message }
      end
      do
        local _ <close> = concur.spawn { function() error({ code = 5 }) end, name = "hooked" }
      end                       -- waited for; its error not taken
      collectgarbage()
      collectgarbage()
      assert.equal(1, #seen)
      assert.equal("hooked", seen[1].name)
      assert.equal("task", seen[1].kind)
    end)

    it("of a thread collected while it still runs: reported once it has ended", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        concur.excepthook = function(err, thread)
          io.stderr:write("hook: ", thread.name, ": ", err.message, "\n")
        end
        local go = concur.Event()
        concur.spawn { function(ev) ev:wait() error("late", 0) end, args = { go }, name = "late" }
        collectgarbage() collectgarbage()      -- dropped while it waits
        go:set()                               -- then it fails
      ]], 60)
      assert.is_true(ok, out)
      assert.matches("hook: late: late\n", out)
    end)

    it("is not reported when a join took it", function()
      local seen = 0
      local saved = concur.excepthook
      finally(function() concur.excepthook = saved end)
      concur.excepthook = function() seen = seen + 1 end
      do
        local t <close> = concur.spawn(function() error("taken") end)
        assert.is_false((t:join()))
      end
      collectgarbage()
      collectgarbage()
      assert.equal(0, seen)
    end)
  end)

  describe("<close> on every closable object", function()
    it("closes a Queue", function()
      local outer
      do
        local q <close> = concur.Queue()
        q:put(1)
        outer = q
      end
      assert.is_true(outer:closed())
      assert.equal(1, outer:get())
      raises("closed", "closed", outer.get, outer)
    end)

    it("waits for a Thread and a Process, leaving their results to join", function()
      local gate = concur.Event()
      local t, p
      do
        local th <close> = concur.spawn(function(g) g:wait() return "t" end, gate)
        local pr <close> = concur.Process(function(g) g:wait() return "p" end, gate)
        t, p = th, pr
        gate:set()
      end
      assert.is_false(t:alive())
      assert.is_false(p:alive())
      assert.same({ true, "t" }, { t:join(0) })
      assert.same({ true, "p" }, { p:join(0) })
    end)

    it("releases this variable's reference of the sync objects, values and rate limiters", function()
      local kept = {}
      local makers = {
        Lock = function() return concur.Lock() end,
        RLock = function() return concur.RLock() end,
        Condition = function() return concur.Condition() end,
        Event = function() return concur.Event() end,
        Semaphore = function() return concur.Semaphore(1) end,
        BoundedSemaphore = function() return concur.BoundedSemaphore(1) end,
        Barrier = function() return concur.Barrier(1) end,
        Value = function() return concur.Value(1) end,
        RateLimiter = function() return concur.RateLimiter { rate = 1 } end,
      }
      for name, make in pairs(makers) do
        local ok, err = pcall(function()
          local x <close> = make()
          kept[name] = x
        end)
        assert.is_true(ok, name .. ": " .. tostring(err))
      end
      local ev = kept.Event
      raises("closed", "closed", ev.set, ev)
    end)

    it("keeps an object alive for the others that hold it", function()
      local ev = concur.Event()
      local t = concur.spawn(function(e) e:wait() return "woken" end, ev)
      do
        local mine <close> = ev   -- the same proxy: closed below
        mine:set()
      end
      assert.same({ true, "woken" }, { t:join(10) })
    end)

    it("closes a fetch Client", function()
      local fetch = require "concur.fetch"
      local kept
      do
        local c <close> = fetch.Client {}
        kept = c
        assert.is_false(c:closed())
      end
      assert.is_true(kept:closed())
    end)

    it("closes pools and futures", function()
      local f
      do
        local p <close> = concur.ThreadPool(1)
        local ff <close> = p:submit(function() return 5 end)
        f = ff
        assert.equal(5, ff:result())
      end
      raises("closed", "closed", f.result, f)
    end)
  end)
end)
