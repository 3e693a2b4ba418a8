local helpers = require "helpers"
local concur = require "concur"

describe("Future", function()
  local pool
  before_each(function() pool = concur.ThreadPool(2) end)
  after_each(function() pool:close() end)

  local function slow(s, v) return pool:submit(function(t, x) concur.sleep(t) return x end, s, v) end

  describe("result", function()
    it("raises kind timeout and lets the task go on", function()
      local f = slow(0.2, "late")
      helpers.raises("timeout", "timed out", f.result, f, 0.01)
      assert.equal("late", f:result())
    end)

    it("can be asked again, with the same values", function()
      local f = pool:submit(function() return { 1, 2 }, "b" end)
      local a1, b1 = f:result()
      local a2, b2 = f:result()
      assert.same(a1, a2)
      assert.equal(b1, b2)
    end)

    it("takes a negative timeout as 'do not wait', and rejects NaN or non-numbers", function()
      local gate = concur.Event()
      local f = pool:submit(function(ev) ev:wait() return "late" end, gate)
      helpers.raises("timeout", "timed out", f.result, f, -1)
      helpers.raises("timeout", "timed out", f.error, f, -1)
      helpers.raises("argument", "NaN", f.result, f, 0 / 0)
      helpers.raises("argument", "number expected", f.result, f, "soon")
      gate:set()
      assert.equal("late", f:result())
      assert.equal("late", f:result(-1))
    end)
  end)

  describe("error", function()
    it("returns nil for a success and the error object for a failure", function()
      assert.is_nil(pool:submit(function() return 1 end):error())
      local err = pool:submit(function() error("bad", 0) end):error()
      assert.is_true(concur.Error.is(err, "task"))
      assert.equal("bad", err.value)
    end)
  end)

  describe("state", function()
    it("goes pending, running, done", function()
      local p1 <close> = concur.ThreadPool(1)
      local a = p1:submit(function() concur.sleep(0.05) end)
      local b = p1:submit(function() end)
      assert.is_false(b:done())
      assert.is_false(b:running())
      a:result()
      b:result()
      assert.is_true(b:done())
      assert.is_false(b:running())
      assert.is_false(b:cancelled())
      assert.equal("finished", b:state())
    end)
  end)

  describe("on_done", function()
    it("runs at once when the future is already done", function()
      local f = pool:submit(function() return 5 end)
      f:result()
      local got
      f:on_done(function(x) got = x:result() end)
      assert.equal(5, got)
    end)

    it("runs later, in this state, when it next waits", function()
      local f = slow(0.02, "v")
      local calls = {}
      f:on_done(function(x) calls[#calls + 1] = x:result() end)
      f:on_done(function() calls[#calls + 1] = "second" end)
      assert.same({}, calls)
      f:result()
      assert.same({ "v", "second" }, calls)
      assert.equal(0, concur.poll())   -- each runs once
    end)

    it("runs from poll", function()
      local f = pool:submit(function() return 1 end)
      local ran = false
      f:on_done(function() ran = true end)
      concur.wait({ f })
      assert.is_true(ran)
    end)

    it("rejects a non-function", function()
      local f = pool:submit(function() end)
      helpers.raises("argument", "function expected", f.on_done, f, 1)
    end)

    -- Futures held pending on an Event, so callbacks are added before
    -- they are done (released in any case when the spec ends).
    local function held(n, fn)
      local go, fs = concur.Event(), {}
      finally(function() go:set() end)
      for i = 1, n do
        fs[i] = pool:submit(function(e, task) e:wait() return task() end, go,
                            fn or function() return true end)
      end
      return go, table.unpack(fs)
    end

    -- Captures what concur.log writes in this state.
    local function capture(fn)
      local lines = {}
      local old = concur.log.sink(function(level, msg) lines[#lines + 1] = level .. ": " .. msg end)
      local ok, err = pcall(fn)
      concur.log.sink(old)
      assert(ok, err)
      return lines
    end

    it("runs each callback once, in order, when one of them waits", function()
      local go, f1, f2 = held(2)
      local calls = {}
      f1:on_done(function()
        calls[#calls + 1] = "f1 first, waiting"
        calls[#calls + 1] = pool:submit(function() return "inner" end):result()
        local done = concur.wait({ pool:submit(function() end) })
        calls[#calls + 1] = #done
      end)
      f1:on_done(function() calls[#calls + 1] = "f1 second" end)
      f2:on_done(function() calls[#calls + 1] = "f2" end)
      go:set()
      concur.wait({ f1, f2 })
      assert.same({ "f1 first, waiting", "inner", 1, "f1 second", "f2" }, calls)
      assert.equal(0, concur.poll())
      pool:submit(function() end):result()
      assert.equal(5, #calls)
    end)

    it("reports a raising callback and still runs the others", function()
      local go, f = held(1)
      local calls = {}
      f:on_done(function() calls[#calls + 1] = 1 end)
      f:on_done(function() error("callback boom") end)
      f:on_done(function() calls[#calls + 1] = 3 end)
      local lines = capture(function()
        go:set()
        assert.is_true(f:result())
      end)
      assert.same({ 1, 3 }, calls)
      assert.equal(1, #lines)
      assert.matches("^error: on_done callback for concur.Future.*callback boom", lines[1])
      assert.matches("stack traceback", lines[1])
    end)

    it("reports a raising callback on a done future instead of raising", function()
      local f = pool:submit(function() return 1 end)
      f:result()
      local after
      local lines = capture(function()
        f:on_done(function() error("late boom") end)
        f:on_done(function() after = true end)
      end)
      assert.is_true(after)
      assert.equal(1, #lines)
      assert.matches("late boom", lines[1])
    end)

    it("writes a callback's error to stderr by default", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local pool <close> = concur.ThreadPool(1)
        local f = pool:submit(function() return 1 end)
        f:result()
        f:on_done(function() error("stderr boom") end)
        print("on_done returned")
      ]], 20)
      assert.is_true(ok, out)
      assert.matches("%[main%] error: on_done callback for concur%.Future.-stderr boom", out)
      assert.matches("on_done returned", out)
    end)

    it("runs a callback added by a callback right after it, once", function()
      local go, f = held(1)
      local done = pool:submit(function() return "done" end)
      done:result()
      local calls = {}
      f:on_done(function()
        done:on_done(function() calls[#calls + 1] = "added" end)
        calls[#calls + 1] = "adder"
      end)
      f:on_done(function() calls[#calls + 1] = "next" end)
      go:set()
      f:result()
      assert.same({ "adder", "next", "added" }, calls)
    end)

    it("runs when result raises because the future failed while it waited", function()
      local go, f = held(1, function() error("task failed") end)
      local ran
      f:on_done(function(x) ran = x:state() end)
      go:set()
      local err = helpers.error_of(f.result, f)
      assert.equal("task", err.kind)
      assert.equal("failed", ran)
    end)

    it("runs when result raises because the future was cancelled while it waited", function()
      local p1, go = concur.ThreadPool(1), concur.Event()
      finally(function() go:set() p1:close() end)
      local blocker = p1:submit(function(e) e:wait() end, go)
      local f = p1:submit(function() return "never" end)
      local ran
      f:on_done(function(x) ran = x:state() end)
      local canceller = concur.spawn(function(fut) return fut:cancel() end, f)
      helpers.raises("cancelled", nil, f.result, f)
      assert.equal("cancelled", ran)
      assert.same({ true, true }, { canceller:join() })
      go:set()
      blocker:result()
    end)

    it("runs when as_completed raises its timeout", function()
      local go_g, g = held(1)
      local go_f, f = held(1)
      local ran = false
      g:on_done(function() ran = true end)
      go_g:set()
      -- g is done once another thread saw it done (no callback runs there)
      assert.is_true(concur.spawn(function(fut) return fut:result() end, g):join())
      assert.is_false(ran)
      helpers.raises("timeout", "as_completed", concur.as_completed({ f }, 0))
      assert.is_true(ran)
      go_f:set()
      f:result()
    end)
  end)

  describe("concur.wait", function()
    it("waits for all by default", function()
      local fs = { slow(0.02, 1), slow(0.01, 2), pool:submit(function() return 3 end) }
      local done, pending = concur.wait(fs)
      assert.equal(3, #done)
      assert.equal(0, #pending)
    end)

    it("returns at the first completion", function()
      local p <close> = concur.ThreadPool(2)
      local long = p:submit(function() concur.sleep(5) end)
      local quick = p:submit(function() return 1 end)
      local done, pending = concur.wait({ long, quick }, { return_when = "first" })
      assert.same({ quick }, done)
      assert.same({ long }, pending)
      long:cancel()
    end)

    it("returns at the first error", function()
      local p <close> = concur.ThreadPool(2)
      local long = p:submit(function() concur.sleep(5) end)
      local bad = p:submit(function() error("x") end)
      local done, pending = concur.wait({ long, bad }, { return_when = "first_error" })
      assert.same({ bad }, done)
      assert.same({ long }, pending)
      long:cancel()
    end)

    it("returns what is done when the timeout passes", function()
      local long = slow(5, 1)
      local done, pending = concur.wait({ long }, { timeout = 0.02 })
      assert.same({}, done)
      assert.same({ long }, pending)
      long:cancel()
    end)

    it("checks its arguments", function()
      helpers.raises("argument", "table of futures", concur.wait, 1)
      helpers.raises("argument", "not a future", concur.wait, { 1 })
      helpers.raises("argument", "return_when", concur.wait, {}, { return_when = "any" })
      helpers.raises("argument", "unknown option 'time'", concur.wait, {}, { time = 1 })
    end)
  end)

  describe("concur.as_completed", function()
    it("yields futures in completion order", function()
      local p <close> = concur.ThreadPool(3)
      local a = p:submit(function() concur.sleep(0.2) return "a" end)
      local b = p:submit(function() concur.sleep(0.1) return "b" end)
      local c = p:submit(function() return "c" end)
      local order = {}
      for f in concur.as_completed({ a, b, c }) do order[#order + 1] = f:result() end
      assert.same({ "c", "b", "a" }, order)
    end)

    it("raises kind timeout when the deadline passes", function()
      local long = slow(5, 1)
      local iter = concur.as_completed({ long }, 0.02)
      helpers.raises("timeout", "as_completed", iter)
      long:cancel()
    end)
  end)

  describe("many futures completing while a wait is set up", function()
    -- Futures still running come first in the list and futures done long
    -- ago after them, so the running ones complete while the done ones are
    -- being added to the wait: a completion lost there left the wait
    -- asleep until its timeout with every future done.
    -- (ThreadSanitizer reports the race whenever the two overlap: a few
    -- rounds are enough there; valgrind runs one thread at a time)
    local rounds = helpers.valgrind and 2 or os.getenv("CONCUR_SANITIZER") and 5 or 20
    local nrun, ndone = helpers.size(2000, 200), helpers.size(20000, 2000)
    local done_long_ago
    local runner

    setup(function()
      runner = concur.ThreadPool(2)
      local p <close> = concur.ThreadPool(1)
      done_long_ago = {}
      for i = 1, ndone do done_long_ago[i] = p:submit(function(x) return x end, i) end
      concur.wait(done_long_ago)
    end)
    teardown(function() runner:close() end)

    local function racing_futures()
      local go = concur.Event()
      local fs = {}
      for i = 1, nrun do fs[i] = runner:submit(function(e) e:wait() return true end, go) end
      table.move(done_long_ago, 1, ndone, nrun + 1, fs)
      go:set()
      return fs
    end

    it("as_completed yields every one without waiting for its timeout", function()
      for round = 1, rounds do
        local fs, n = racing_futures(), 0
        local ok, err = pcall(function()
          for _ in concur.as_completed(fs, 5) do n = n + 1 end
        end)
        assert(ok, ("round %d: %d of %d futures yielded: %s"):format(round, n, #fs,
          tostring(err)))
        assert.equal(#fs, n)
      end
    end)

    it("wait returns them all done before its timeout", function()
      -- a lost completion shows as a wait that lasts its whole timeout
      -- (it then finds every future done): a round takes milliseconds
      for round = 1, rounds do
        local fs = racing_futures()
        local t0 = concur.monotonic()
        local done, pending = concur.wait(fs, { timeout = 20 })
        assert(concur.monotonic() - t0 < 20, ("round %d: the wait ran out its timeout")
          :format(round))
        assert.equal(0, #pending)
        assert.equal(#fs, #done)
      end
    end)

    it("imap_unordered yields every item without waiting for its timeout", function()
      local items = {}
      for i = 1, nrun * 2 do items[i] = i end
      for _ = 1, 3 do
        local seen, n = {}, 0
        for i, v in runner:imap_unordered(function(x) return -x end, items,
                                          { chunksize = 1, timeout = 30 }) do
          assert.equal(-i, v)
          assert.is_nil(seen[i])
          seen[i], n = true, n + 1
        end
        assert.equal(#items, n)
      end
    end)
  end)

  describe("crossing states", function()
    it("can be waited on from another thread", function()
      local f = slow(0.02, "shared")
      local ok, v = concur.spawn(function(fut) return fut:result() end, f):join()
      assert.is_true(ok)
      assert.equal("shared", v)
    end)
  end)
end)
