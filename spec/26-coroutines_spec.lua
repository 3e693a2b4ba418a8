-- Coroutine tasks in one state (concur.run, async, await) and the state's
-- completion fd (concur.pollfd, concur.poll).
local helpers = require "helpers"
local concur = require "concur"
local httpserver = require "helpers.httpserver"

-- Whether fd is readable now: one turn of a luv loop (no wait) with a poll
-- handle on it, so the kernel answers, not concur.
local uv = require "luv"
local function readable(fd)
  local p = uv.new_poll(fd)
  local got = false
  p:start("r", function() got = true; p:stop() end)
  uv.run("nowait")
  p:stop()
  p:close()
  uv.run("nowait")
  return got
end

describe("coroutines", function()
  local pool
  before_each(function() pool = concur.ThreadPool(2) end)
  after_each(function() pool:close() end)

  describe("pollfd and poll", function()
    it("the fd turns readable when a future with a callback completes, and poll drains it", function()
      concur.poll()
      local fd = concur.pollfd()
      assert.equal(fd, concur.pollfd())   -- one per state
      assert.is_false(readable(fd))
      local gate = concur.Event()
      local f = pool:submit(function(ev) ev:wait() return 7 end, gate)
      local got
      f:on_done(function(x) got = x:result() end)
      assert.is_false(readable(fd))
      gate:set()
      concur.wait({ f })               -- runs the callback too
      assert.equal(7, got)
      local gate2 = concur.Event()
      local g = pool:submit(function(ev) ev:wait() return 8 end, gate2)
      g:on_done(function(x) got = x:result() end)
      gate2:set()
      local w = concur.Event()
      -- completes without this state waiting: only the fd tells
      while not g:done() do w:wait(0.001) end
      assert.is_true(readable(fd))
      assert.equal(1, concur.poll())
      assert.equal(8, got)
      assert.is_false(readable(fd))
    end)

    it("coalesces many completions into one readable state", function()
      local n = 0
      local fs = {}
      local gate = concur.Event()
      for i = 1, 200 do
        fs[i] = pool:submit(function(ev, x) ev:wait() return x end, gate, i)
        fs[i]:on_done(function() n = n + 1 end)
      end
      gate:set()
      for i = 1, 200 do while not fs[i]:done() do concur.Event():wait(0.001) end end
      assert.is_true(readable(concur.pollfd()))
      assert.equal(200, concur.poll())
      assert.equal(200, n)
      assert.is_false(readable(concur.pollfd()))
    end)

    it("turns readable when a task becomes runnable, and poll runs it", function()
      local ran = false
      local t = concur.async(function() ran = true return 1 end)
      assert.is_true(readable(concur.pollfd()))
      assert.is_false(ran)
      concur.poll()
      assert.is_true(ran)
      assert.is_true(t:done())
      assert.is_false(readable(concur.pollfd()))
    end)
  end)

  describe("run and await", function()
    it("runs fn as a task and returns its results", function()
      assert.same({ 1, "two" }, { concur.run(function(a) return a, "two" end, 1) })
    end)

    it("awaits pool futures and tasks without blocking the other tasks", function()
      local order = {}
      local r = concur.run(function()
        local gate = concur.Event()
        local f = pool:submit(function(ev) ev:wait() return "pool" end, gate)
        local a = concur.async(function()
          local v = concur.await(f)
          order[#order + 1] = "a:" .. v
          return v
        end)
        local b = concur.async(function()
          order[#order + 1] = "b"
          gate:set()
          return "b"
        end)
        return concur.await(a) .. "+" .. b:result()
      end)
      assert.equal("pool+b", r)
      assert.same({ "b", "a:pool" }, order)
    end)

    it("interleaves sleeping tasks on one thread", function()
      local order = {}
      concur.run(function()
        for i, d in ipairs { 0.03, 0.01, 0.02 } do
          concur.async(function() concur.sleep(d) order[#order + 1] = i end)
        end
      end)
      assert.same({ 2, 3, 1 }, order)
    end)

    it("gives Future:result a timeout in a task (kind timeout), and a negative one", function()
      concur.run(function()
        local gate = concur.Event()
        local f = pool:submit(function(ev) ev:wait() return 1 end, gate)
        helpers.raises("timeout", "timed out", f.result, f, 0.01)
        helpers.raises("timeout", "timed out", concur.await, f, -1)
        gate:set()
        assert.equal(1, f:result())
      end)
    end)

    it("raises a task's error from await, with its kind", function()
      local err = concur.run(function()
        local t = concur.async(function() error({ code = 7 }) end)
        return t:error()
      end)
      assert.equal("task", err.kind)
      assert.equal(7, err.value.code)
      local e = helpers.error_of(concur.run, function()
        local f = pool:submit(function() error(concur.Error.new("network", "down")) end)
        return concur.await(f)
      end)
      assert.equal("network", e.kind)
    end)

    it("rejects await of a non-future (kind argument)", function()
      helpers.raises("argument", "Future or Task expected, got number", concur.await, 42)
      helpers.raises("argument", "Future or Task expected", concur.await, {})
      concur.run(function()
        helpers.raises("argument", "Future or Task expected, got nil", concur.await, nil)
      end)
    end)

    it("fails a task that yields a foreign value, instead of hanging", function()
      local t
      concur.run(function()
        t = concur.async(function() coroutine.yield("for someone else") end)
        local e = t:error()
        assert.equal("task", e.kind)
        assert.matches("yielded \"for someone else\"", e.message)
      end)
      assert.equal("failed", t:state())
    end)

    it("lets a task use its own coroutines (their waits block, their yields stay theirs)", function()
      local r = concur.run(function()
        local gen = coroutine.wrap(function()
          for i = 1, 3 do coroutine.yield(i) end
        end)
        return gen() + gen() + gen()
      end)
      assert.equal(6, r)
    end)

    it("runs async outside a scheduler at the next wait for the task", function()
      local t = concur.async(function(x) concur.sleep(0.001) return x * 2 end, 21)
      assert.is_false(t:done())
      assert.equal(42, concur.await(t))
      assert.equal(42, t:result())
    end)

    it("is await(async(fn)) when called from a task", function()
      assert.equal(3, concur.run(function()
        return concur.run(function() return 3 end)
      end))
    end)
  end)

  describe("Task", function()
    it("has the Future interface", function()
      concur.run(function()
        local t = concur.async(function() concur.sleep(0.01) return "v" end)
        assert.is_false(t:done())
        assert.equal("pending", t:state())
        concur.sleep(0)
        assert.is_true(t:running())
        local seen
        t:on_done(function(x) seen = x end)
        assert.equal("v", t:result())
        assert.is_true(t:done())
        assert.is_false(t:cancelled())
        assert.is_false(t:cancel())
        concur.sleep(0)
        assert.equal(t, seen)
      end)
    end)

    it("cancel raises kind cancelled at the suspension point; the task may clean up", function()
      local cleaned = false
      concur.run(function()
        local t = concur.async(function()
          local ok, e = pcall(concur.sleep, 10)
          cleaned = not ok and concur.Error.is(e, "cancelled")
          error(e, 0)
        end)
        concur.sleep(0.01)
        local t0 = concur.monotonic()
        assert.is_true(t:cancel())
        helpers.raises("cancelled", nil, t.result, t)
        assert.is_true(t:cancelled())
        assert.is_true(concur.monotonic() - t0 < helpers.prompt(1))
      end)
      assert.is_true(cleaned)
    end)

    it("cancels a task waiting on a future (the future is left alone) and one not started", function()
      concur.run(function()
        local gate = concur.Event()
        local f = pool:submit(function(ev) ev:wait() return 1 end, gate)
        local t = concur.async(concur.await, f)
        local never = concur.async(function() error("must not run") end)
        assert.is_true(never:cancel())
        concur.sleep(0)
        assert.is_true(t:cancel())
        helpers.raises("cancelled", nil, concur.await, t)
        assert.is_true(never:cancelled())
        assert.is_false(f:done())
        gate:set()
        assert.equal(1, f:result())
      end)
    end)

    it("reports a failed task nobody awaited when run ends", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        concur.run(function()
          concur.async(function() error("lost error") end)
          local t = concur.async(function() error("taken error") end)
          t:error()
        end)
        print("after run")
      ]])
      assert.is_true(ok)
      assert.matches("never retrieved.-lost error", out)
      assert.not_matches("taken error", out)
      assert.matches("after run", out)
    end)
  end)

  describe("waits in tasks suspend only the task", function()
    it("Queue get/put, Event wait, Lock and Semaphore acquire", function()
      local log = {}
      concur.run(function()
        local q = concur.Queue { maxsize = 1 }
        local ev = concur.Event()
        local lock = concur.Lock()
        local sem = concur.Semaphore(1)
        lock:acquire()
        sem:acquire()
        local consumer = concur.async(function()
          for _ = 1, 3 do
            local v = q:get()
            log[#log + 1] = "got " .. v
          end
        end)
        local producer = concur.async(function()
          for i = 1, 3 do q:put(i) end
          log[#log + 1] = "put all"
        end)
        local waiter = concur.async(function()
          assert.is_true(ev:wait())
          assert.is_true(lock:acquire())
          assert.is_true(sem:acquire())
          log[#log + 1] = "acquired"
        end)
        concur.await(consumer)
        concur.await(producer)
        ev:set()
        lock:release()
        sem:release()
        concur.await(waiter)
        assert.is_false(ev:wait(-1) == false)
        assert.is_false(lock:acquire(0.01))   -- held by the waiter: times out
        helpers.raises("timeout", nil, q.get, q, 0.01)
      end)
      table.sort(log)
      assert.same({ "acquired", "got 1", "got 2", "got 3", "put all" }, log)
    end)

    it("concur.wait and as_completed take Futures and Tasks", function()
      concur.run(function()
        local gate = concur.Event()
        local f = pool:submit(function(ev) ev:wait() return "f" end, gate)
        local t = concur.async(function() concur.sleep(0.01) return "t" end)
        local done, pending = concur.wait({ f, t }, { return_when = "first" })
        assert.same({ t }, done)
        assert.same({ f }, pending)
        local order = {}
        local opener = concur.async(function() gate:set() end)
        for x in concur.as_completed({ f, t, opener }) do order[#order + 1] = x end
        assert.equal(3, #order)
        done = concur.wait({ f, t }, { timeout = 1 })
        assert.equal(2, #done)
        local slow = concur.async(concur.sleep, 5)
        helpers.raises("timeout", "timed out", function()
          for _ in concur.as_completed({ slow }, 0.01) do end
        end)
        slow:cancel()
      end)
    end)

    it("sleep(0) lets the other ready tasks run", function()
      local order = {}
      concur.run(function()
        concur.async(function() order[#order + 1] = "other" end)
        order[#order + 1] = "before"
        concur.sleep(0)
        order[#order + 1] = "after"
      end)
      assert.same({ "before", "other", "after" }, order)
    end)
  end)

  describe("fetch", function()
    local srv
    setup(function() srv = httpserver.start() end)
    teardown(function() srv:stop() end)

    it("1,000 tasks each awaiting a fetch of a local page all complete, from one state", function()
      local fetch = require "concur.fetch"
      local client <close> = fetch.Client { concurrency = 32, per_host = 32 }
      local n = helpers.size(1000, 100)
      local threads = helpers.thread_count()
      local ok, statuses = 0, {}
      concur.run(function()
        for i = 1, n do
          concur.async(function()
            local resp = concur.await(client:get(srv:url("/bytes/64?i=" .. i)))
            statuses[resp.status] = (statuses[resp.status] or 0) + 1
            if #resp.body == 64 then ok = ok + 1 end
          end)
        end
      end)
      assert.equal(n, ok)
      assert.same({ [200] = n }, statuses)
      -- the tasks ran on this thread: only the client's engine was added
      assert.is_true(helpers.thread_count() <= threads + 1)
    end)
  end)
end)
