local helpers = require "helpers"
local concur = require "concur"

describe("concur.spawn", function()
  it("runs a function and join returns true and its results", function()
    local t = concur.spawn(function(a, b) return a * b, "x" end, 6, 7)
    assert.same({ true, 42, "x" }, { t:join() })
  end)

  it("joins false and the error object when the function fails", function()
    local ok, err = concur.spawn(function() error("oops") end):join()
    assert.is_false(ok)
    assert.equal("task", err.kind)
    assert.matches("oops", err.message)
    assert.matches("traceback", err.traceback)
  end)

  it("raises kind timeout when join times out", function()
    local t = concur.spawn(function() concur.sleep(0.2) return 1 end)
    helpers.raises("timeout", "join", t.join, t, 0.01)
    assert.is_true(t:alive())
    assert.same({ true, 1 }, { t:join() })
    assert.is_false(t:alive())
  end)

  it("names threads, and thread_name tells the running one", function()
    local t = concur.spawn { function() return concur.thread_name() end, name = "w1" }
    assert.equal("w1", t.name)
    assert.same({ true, "w1" }, { t:join() })
    assert.equal("main", concur.thread_name())
    assert.matches("^thread%-%d+$", concur.spawn(function() end).name)
  end)

  it("passes args in the table form", function()
    local t = concur.spawn { function(a, b) return a - b end, args = { 10, 3 } }
    assert.same({ true, 7 }, { t:join() })
  end)

  it("cancels a running thread #notsan", function()
    local started = concur.Event()
    local t = concur.spawn(function(ev) ev:set() while true do end end, started)
    started:wait()
    assert.is_true(t:alive())
    assert.is_true(t:cancel())
    local ok, err = t:join(5)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
  end)

  it("runs threads in parallel", function()
    -- two threads each wait for the other's signal through shared futures:
    -- only possible if both run at once
    local p <close> = concur.ThreadPool(2)
    local a = p:submit(function() concur.sleep(0.05) return "a" end)
    local t1 = concur.spawn(function(f) return f:result() end, a)
    local t2 = concur.spawn(function(f) return f:result() end, a)
    assert.same({ true, "a" }, { t1:join() })
    assert.same({ true, "a" }, { t2:join() })
  end)

  it("checks its arguments", function()
    helpers.raises("argument", "function expected", concur.spawn, 1)
    helpers.raises("argument", "unknown option 'nam'", concur.spawn, { function() end, nam = "x" })
    helpers.raises("transfer", "coroutine", concur.spawn, function() end, coroutine.create(print))
    helpers.raises("argument", "option 'daemon' must be a boolean", concur.spawn,
      { function() end, daemon = "yes" })
  end)

  it("carries hundreds of arguments and results, and refuses what a stack cannot take", function()
    local ok, _, out = helpers.run_lua([[
      local concur = require "concur"
      local t = {}
      for i = 1, 400 do t[i] = i end
      local th = concur.spawn(function(...) return ... end, table.unpack(t))
      print("join", select("#", th:join()))
      local big = concur.spawn(function()
        local r = {}
        for i = 1, 999980 do r[i] = i end
        return table.unpack(r)
      end)
      local ok, err = big:join()
      print("huge", ok, err.kind)
    ]], 60)
    assert.is_true(ok, out)
    assert.matches("join\t401\n", out)
    assert.matches("huge\tfalse\tlimit", out)
  end)

  describe("at interpreter exit", function()
    it("joins non-daemon threads", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        concur.spawn(function() concur.sleep(0.2) concur.log("worker done") end)
        print("main done")
      ]], 20)
      assert.is_true(ok, out)
      assert.matches("main done", out)
      assert.matches("%[thread%-%d+%] worker done", out)
    end)

    it("cancels daemon threads", function()
      local ok, code, out = helpers.run_lua([[
        local concur = require "concur"
        concur.spawn { function() while true do end end, daemon = true }
        concur.spawn { function() concur.sleep(3600) end, daemon = true }
        print("main done")
      ]], 20)
      assert.is_true(ok, out)
      assert.equal(0, code)
      assert.matches("main done", out)
    end)
  end)
end)

describe("concur basics", function()
  it("has a version", function()
    assert.matches("^concur %d+%.%d+%.%d+$", concur._VERSION)
  end)

  it("counts CPUs", function()
    assert.is_true(math.type(concur.cpu_count()) == "integer" and concur.cpu_count() >= 1)
  end)

  it("has a monotonic clock and sleep", function()
    local t0 = concur.monotonic()
    concur.sleep(0.02)
    assert.is_true(concur.monotonic() - t0 >= 0.02)
    concur.sleep(-1)   -- returns at once: a negative time is no wait
    helpers.raises("argument", "NaN", concur.sleep, 0 / 0)
  end)

  describe("a timeout of a century or more", function()
    -- The main thread (which runs no task, so its waits sleep in one go)
    -- blocks in each kind of wait in turn with a timeout far beyond any
    -- clock, which once overflowed the conversion to a timespec: the wait
    -- then spun at full speed. A helper thread watches the process's CPU
    -- time over a short window, then releases the wait; every wait must
    -- end by what it waits for, never by its timeout. A wait that nothing
    -- can end (a sleep) ends with the process, killed.
    local watcher = [[
      local concur = require "concur"
      local function watch(announce, steps)
        for _, step in ipairs(steps) do
          announce:acquire()
          local c0 = os.clock()
          concur.sleep(0.2)
          print(("%s cpu %.3f"):format(step[1], os.clock() - c0))
          io.stdout:flush()
          if step[2] then step[2]()
          else os.execute("kill -KILL " .. io.open("/proc/self/stat"):read("n")) end
        end
      end
    ]]
    local KILLED = 128 + 9

    local function check_cpu(out, n)
      local seen = 0
      for name, cpu in out:gmatch("(%S+) cpu (%S+)") do
        seen = seen + 1
        assert(tonumber(cpu) < 0.05, ("%s spun while it waited: %s"):format(name, out))
      end
      assert.equal(n, seen)
    end

    it("is no timeout for every wait, and none of them spins", function()
      local _, code, out = helpers.run_lua(watcher .. [[
        local HUGE = 1e19
        local pool <close> = concur.ThreadPool(3)
        local q, full, joined = concur.Queue(), concur.Queue(1), concur.Queue()
        full:put(0)
        joined:put(0)
        local lock, sem, ev = concur.Lock(), concur.Semaphore(0), concur.Event()
        local cond, flag, bar = concur.Condition(), concur.Value(0), concur.Barrier(2)
        local go = { concur.Event(), concur.Event(), concur.Event(), concur.Event() }
        local function task(e) e:wait() return "task" end
        local fut = { pool:submit { task, args = { go[1] }, timeout = HUGE },
                      pool:submit(task, go[2]), pool:submit(task, go[3]) }
        local t = concur.spawn(task, go[4])
        lock:acquire()
        local steps = {
          { "get", function() q:put("got") end, function() return q:get(HUGE) end },
          { "put", function() full:get() end, function() full:put(1, HUGE) return "put" end },
          { "join", function() joined:get() joined:task_done() end,
            function() return joined:join(HUGE) end },
          { "lock", function() lock:release() end, function() return lock:acquire(HUGE) end },
          { "sem", function() sem:release() end, function() return sem:acquire(HUGE) end },
          { "event", function() ev:set() end, function() return ev:wait(HUGE) end },
          { "cond", function()
              local _ <close> = cond:guard()
              flag:set(1)
              cond:notify_all()
            end, function()
              local _ <close> = cond:guard()
              return cond:wait_for(function() return flag:get() == 1 end, HUGE)
            end },
          { "barrier", function() bar:wait() end, function() return bar:wait(HUGE) end },
          { "result", function() go[1]:set() end, function() return fut[1]:result(HUGE) end },
          { "wait", function() go[2]:set() end, function()
              return #concur.wait({ fut[2] }, { timeout = HUGE })
            end },
          { "as_completed", function() go[3]:set() end, function()
              for f in concur.as_completed({ fut[3] }, math.huge) do return f:result() end
            end },
          { "thread", function() go[4]:set() end, function() return select(2, t:join(HUGE)) end },
          { "sleep", nil, function() concur.sleep(HUGE) end },
        }
        local announce = concur.Semaphore(0)
        local watch_steps = {}
        for i, step in ipairs(steps) do watch_steps[i] = { step[1], step[2] } end
        concur.spawn { watch, args = { announce, watch_steps }, daemon = true }
        for _, step in ipairs(steps) do
          announce:release()
          print(step[1], pcall(step[3]))
        end
      ]], 60)
      assert.equal(KILLED, code, out)
      check_cpu(out, 13)
      for name, v in pairs { get = "got", put = "put", join = "true", lock = "true",
          sem = "true", event = "true", cond = "true", barrier = "[01]", result = "task",
          wait = "1", as_completed = "task", thread = "task" } do
        assert.matches("\n" .. name .. "\ttrue\t" .. v .. "\n", out)
      end
    end)

    it("lets a rate limiter of one token in 1e20 s wait for ever, idle", function()
      local _, code, out = helpers.run_lua(watcher .. [[
        local rl = concur.RateLimiter { rate = 1e-20 }
        assert(rl:acquire())                  -- the first token is free
        assert(rl:acquire(1) == false)        -- the next one is far beyond 1 s
        local announce = concur.Semaphore(0)
        concur.spawn { watch, args = { announce, { { "ratelimit" } } }, daemon = true }
        announce:release()
        rl:acquire()
        print("acquired")
      ]], 60)
      assert.equal(KILLED, code, out)
      check_cpu(out, 1)
      assert.not_matches("acquired", out)
    end)
  end)

  it("logs lines that never interleave", function()
    local ok, _, out = helpers.run_lua([[
      local concur = require "concur"
      local p <close> = concur.ThreadPool(2)
      p:map(function(i) for k = 1, 50 do concur.log(("line %d.%d %s"):format(i, k, ("x"):rep(200))) end end,
            { 1, 2, 3, 4 }, { chunksize = 1 })
    ]], 20)
    assert.is_true(ok, out)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      assert.matches("^%[ThreadPool%-%d+_%d%] line %d%.%d+ x+$", line)
      n = n + 1
    end
    assert.equal(200, n)
  end)
end)

describe("concur.Error", function()
  it("tests kinds", function()
    local err = helpers.error_of(concur.sleep, "x")
    assert.is_true(concur.Error.is(err))
    assert.is_true(concur.Error.is(err, "argument"))
    assert.is_false(concur.Error.is(err, "timeout"))
    assert.is_false(concur.Error.is("a string"))
  end)

  it("formats like luaL_argerror", function()
    local p <close> = concur.ThreadPool(1)
    local err = helpers.error_of(function() return p:submit(42) end)
    assert.equal("bad argument #1 to 'submit' (function expected, got number)", err.message)
  end)

  it("prints the message, then the traceback", function()
    local err = concur.Error.new("task", "it failed", { traceback = "stack traceback:\n\tx" })
    assert.equal("it failed\nstack traceback:\n\tx", tostring(err))
    helpers.raises("argument", "unknown error kind", concur.Error.new, "nope", "m")
  end)

  it("stays a concur.Error when sent to another state", function()
    local t = concur.spawn(function()
      local ok, err = pcall(function() return concur.Queue { maxsize = 1.5 } end)
      return ok, err
    end)
    local ok, tok, err = t:join(10)
    assert.is_true(ok)
    assert.is_false(tok)
    assert.equal(getmetatable(concur.Error.new("argument", "x")), getmetatable(err))
    assert.is_true(concur.Error.is(err, "argument"))
    assert.truthy(tostring(err):find("maxsize", 1, true))
    local q = concur.Queue()
    q:put({ e = concur.Error.new("limit", "too big") })
    local back = select(2, concur.spawn(function(qq) return qq:get() end, q):join(10))
    assert.equal("too big", tostring(back.e))
  end)
end)
