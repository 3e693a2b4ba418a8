local helpers = require "helpers"
local sync = require "helpers.sync"
local concur = require "concur"

local raises = helpers.raises

describe("synchronisation", function()

  describe("Lock", function()
    it("starts unlocked and is held after acquire", function()
      local l = concur.Lock()
      assert.is_false(l:locked())
      assert.is_true(l:acquire())
      assert.is_true(l:locked())
      l:release()
      assert.is_false(l:locked())
    end)

    it("is not reentrant: a second acquire with timeout 0 fails at once", function()
      local l = concur.Lock()
      l:acquire()
      local t0 = concur.monotonic()
      assert.is_false(l:acquire(0))
      assert.is_true(concur.monotonic() - t0 < 0.05)
    end)

    it("returns false when the timeout passes", function()
      local l = concur.Lock()
      l:acquire()
      local t0 = concur.monotonic()
      assert.is_false(l:acquire(0.05))
      assert.is_true(concur.monotonic() - t0 >= 0.045)
    end)

    it("raises kind argument when released unlocked", function()
      raises("argument", "release of an unlocked lock", concur.Lock().release, concur.Lock())
    end)

    it("raises kind argument for a negative timeout", function()
      local l = concur.Lock()
      raises("argument", "timeout must be a non-negative number", l.acquire, l, -1)
    end)

    it("raises kind argument for a non-number timeout", function()
      local l = concur.Lock()
      raises("argument", "number expected, got string", l.acquire, l, "soon")
    end)

    it("raises kind argument when called on another object", function()
      raises("argument", "concur.Lock expected, got concur.Event",
        concur.Lock().acquire, concur.Event())
    end)

    it("may be released by another thread (as Python's Lock)", function()
      local l = concur.Lock()
      l:acquire()
      local t = concur.spawn(function(lk) lk:release() end, l)
      assert.is_true((t:join(10)))
      assert.is_true(l:acquire(5))
    end)

    it("is shared by reference: threads see the same lock", function()
      local l = concur.Lock()
      l:acquire()
      local t = concur.spawn(function(lk) return lk:locked(), lk:acquire(0) end, l)
      local _, locked, got = t:join(10)
      assert.is_true(locked)
      assert.is_false(got)
    end)

    it("compares equal to another proxy of the same lock", function()
      local l = concur.Lock()
      local q = concur.Queue()
      q:put(l)
      local l2 = q:get()
      assert.equal(l, l2)
      assert.not_equal(l, concur.Lock())
    end)

    it("makes a read-modify-write from 4 threads exact", function()
      local l, v = concur.Lock(), concur.Value(0)
      sync.join_all(sync.spawn_n(4, function(_, lk, val)
        for _ = 1, 5000 do
          lk:acquire()
          val:set(val:get() + 1)
          lk:release()
        end
      end, l, v))
      assert.equal(20000, v:get())
    end)

    describe("guard", function()
      it("holds the lock in its scope and releases it at the end", function()
        local l = concur.Lock()
        do
          local _ <close> = l:guard()
          assert.is_true(l:locked())
        end
        assert.is_false(l:locked())
      end)

      it("releases the lock when the scope is left by an error", function()
        local l = concur.Lock()
        local ok = pcall(function()
          local _ <close> = l:guard()
          error("boom")
        end)
        assert.is_false(ok)
        assert.is_false(l:locked())
      end)

      it("releases once even when closed twice", function()
        local l = concur.Lock()
        local g = l:guard()
        getmetatable(g).__close(g)
        l:acquire()
        getmetatable(g).__close(g)
        assert.is_true(l:locked())
      end)
    end)
  end)

  describe("RLock", function()
    it("may be acquired again by its owner", function()
      local r = concur.RLock()
      assert.is_true(r:acquire())
      assert.is_true(r:acquire())
      assert.is_true(r:acquire(0))
      r:release()
      r:release()
      assert.is_true(r:locked())
      r:release()
      assert.is_false(r:locked())
    end)

    it("blocks other threads while owned", function()
      local r = concur.RLock()
      r:acquire()
      local t = concur.spawn(function(rl) return rl:acquire(0) end, r)
      local _, got = t:join(10)
      assert.is_false(got)
      r:release()
    end)

    it("raises kind argument when released by a thread that does not own it", function()
      local r = concur.RLock()
      r:acquire()
      local kind, msg = sync.error_in_thread(function(rl) rl:release() end, r)
      assert.equal("argument", kind)
      assert.matches("not owned by this thread", msg)
      assert.is_true(r:locked())
      r:release()
    end)

    it("raises kind argument when released unlocked", function()
      local r = concur.RLock()
      raises("argument", "not owned", r.release, r)
    end)

    it("has a guard that nests", function()
      local r = concur.RLock()
      do
        local _ <close> = r:guard()
        do
          local _ <close> = r:guard()
        end
        assert.is_true(r:locked())
      end
      assert.is_false(r:locked())
    end)
  end)

  describe("Condition", function()
    it("raises kind argument when waiting without the lock", function()
      local c = concur.Condition()
      raises("argument", "un-acquired lock", c.wait, c)
    end)

    it("raises kind argument when notifying without the lock", function()
      local c = concur.Condition()
      raises("argument", "un-acquired lock", c.notify, c)
    end)

    it("raises kind argument for a lock of the wrong type", function()
      raises("argument", "concur.Lock or concur.RLock expected", concur.Condition, {})
    end)

    it("returns false from wait when the timeout passes, holding the lock again", function()
      local lock = concur.Lock()
      local c = concur.Condition(lock)
      local _ <close> = c:guard()
      assert.is_false(c:wait(0.02))
      assert.is_true(lock:locked())
    end)

    it("wakes a waiting thread on notify", function()
      local c, v = concur.Condition(), concur.Value(0)
      local t = concur.spawn(function(cond, val)
        local _ <close> = cond:guard()
        return cond:wait_for(function() return val:get() == 1 end, 10)
      end, c, v)
      do
        local _ <close> = c:guard()
        v:set(1)
        c:notify()
      end
      local _, res = t:join(10)
      assert.is_true(res)
    end)

    it("returns the predicate's value from wait_for", function()
      local c = concur.Condition()
      local _ <close> = c:guard()
      assert.equal("yes", c:wait_for(function() return "yes" end))
    end)

    it("returns false from wait_for when the timeout passes first", function()
      local c = concur.Condition()
      local _ <close> = c:guard()
      local calls = 0
      local t0 = concur.monotonic()
      assert.is_false(c:wait_for(function() calls = calls + 1 return nil end, 0.05))
      assert.is_true(concur.monotonic() - t0 >= 0.045)
      assert.is_true(calls >= 2)
    end)

    it("keeps waiting in wait_for through wake-ups that leave the predicate false", function()
      local lock = concur.Lock()
      local c, ready = concur.Condition(lock), concur.Condition(lock)
      local v, waiting = concur.Value(0), concur.Value(0)
      local t = concur.spawn(function(cond, rdy, val, w)
        local _ <close> = cond:guard()
        w:set(1)
        rdy:notify_all()
        return cond:wait_for(function() return val:get() >= 3 end, 10), val:get()
      end, c, ready, v, waiting)
      do
        local _ <close> = ready:guard()
        ready:wait_for(function() return waiting:get() == 1 end, 10)
      end
      for _ = 1, 3 do   -- three wake-ups; only the last makes it true
        local _ <close> = c:guard()
        v:add(1)
        c:notify_all()
      end
      local _, res, seen = t:join(10)
      assert.is_true(res)
      assert.equal(3, seen)
    end)

    it("wakes exactly n waiters on notify(n), the rest on notify_all", function()
      local lock = concur.Lock()
      local c, ready = concur.Condition(lock), concur.Condition(lock)
      local waiting, out = concur.Value(0), concur.Queue()
      local ts = sync.spawn_n(4, function(i, cond, rdy, w, q)
        local _ <close> = cond:guard()
        w:add(1)
        rdy:notify_all()
        assert(cond:wait(10))
        q:put(i)
      end, c, ready, waiting, out)
      do
        local _ <close> = ready:guard()
        ready:wait_for(function() return waiting:get() == 4 end, 10)
        c:notify(2)
      end
      out:get(10)
      out:get(10)
      assert.is_false(out:try_get())
      raises("timeout", "get timed out", out.get, out, 0.1)
      do
        local _ <close> = c:guard()
        c:notify_all()
      end
      sync.join_all(ts)
      assert.equal(2, out:size())
    end)

    it("releases every level of an RLock while waiting and restores them", function()
      local r = concur.RLock()
      local c = concur.Condition(r)
      r:acquire()
      r:acquire()
      local t = concur.spawn(function(cond)
        local _ <close> = cond:guard()   -- possible only if wait released both levels
        cond:notify()
        return true
      end, c)
      assert.is_true(c:wait(10))
      assert.is_true((t:join(10)))
      r:release()
      assert.is_true(r:locked())   -- the second level came back
      r:release()
      assert.is_false(r:locked())
    end)

    it("raises kind argument for a negative notify count", function()
      local c = concur.Condition()
      local _ <close> = c:guard()
      raises("argument", "must be non-negative", c.notify, c, -1)
    end)
  end)

  describe("Event", function()
    it("is set, cleared and tested", function()
      local e = concur.Event()
      assert.is_false(e:is_set())
      e:set()
      assert.is_true(e:is_set())
      e:clear()
      assert.is_false(e:is_set())
    end)

    it("returns false from wait(0) when not set, without blocking", function()
      local e = concur.Event()
      local t0 = concur.monotonic()
      assert.is_false(e:wait(0))
      assert.is_true(concur.monotonic() - t0 < 0.05)
    end)

    it("returns at once when already set", function()
      local e = concur.Event()
      e:set()
      assert.is_true(e:wait())
    end)

    it("wakes every waiting thread when set", function()
      local e, started, n = concur.Event(), concur.Semaphore(0), 4
      local ts = sync.spawn_n(n, function(_, ev, st)
        st:release()
        return ev:wait(10)
      end, e, started)
      for _ = 1, n do assert.is_true(started:acquire(10)) end
      e:set()
      for _, r in ipairs(sync.join_all(ts)) do assert.is_true(r) end
    end)

    it("returns false when the timeout passes", function()
      assert.is_false(concur.Event():wait(0.02))
    end)
  end)

  describe("Semaphore", function()
    it("holds 1 token by default", function()
      local s = concur.Semaphore()
      assert.is_true(s:acquire())
      assert.is_false(s:acquire(0))
      s:release()
      assert.is_true(s:acquire(0))
    end)

    it("counts tokens and releases several at once", function()
      local s = concur.Semaphore(0)
      s:release(3)
      assert.equal(3, s:value())
      for _ = 1, 3 do assert.is_true(s:acquire(0)) end
      assert.is_false(s:acquire(0))
    end)

    it("raises kind argument for a negative initial value", function()
      raises("argument", "initial value must be >= 0", concur.Semaphore, -1)
    end)

    it("raises kind argument for release(0)", function()
      local s = concur.Semaphore()
      raises("argument", "must be at least 1", s.release, s, 0)
    end)

    it("never lets more than n threads in at once", function()
      local s, inside, peak = concur.Semaphore(2), concur.Value(0), concur.Value(0)
      sync.join_all(sync.spawn_n(6, function(_, sem, ins, pk)
        for _ = 1, 200 do
          local _ <close> = sem:guard()
          local now = ins:add(1)
          local p = pk:get()
          while now > p and not pk:cas(p, now) do p = pk:get() end
          ins:add(-1)
        end
      end, s, inside, peak))
      assert.is_true(peak:get() <= 2)
      assert.equal(2, s:value())
    end)

    it("wakes a thread blocked in acquire on release", function()
      local s, started = concur.Semaphore(0), concur.Event()
      local t = concur.spawn(function(sem, st)
        st:set()
        return sem:acquire(10)
      end, s, started)
      assert.is_true(started:wait(10))
      s:release()
      local _, got = t:join(10)
      assert.is_true(got)
    end)
  end)

  describe("BoundedSemaphore", function()
    it("raises kind argument when released above its initial value", function()
      local s = concur.BoundedSemaphore(2)
      s:acquire()
      s:release()
      raises("argument", "semaphore released too many times", s.release, s)
    end)

    it("raises kind argument when release(n) would pass the bound", function()
      local s = concur.BoundedSemaphore(2)
      s:acquire()
      raises("argument", "released too many times", s.release, s, 2)
      assert.equal(1, s:value())
    end)

    it("is bounded, a Semaphore is not", function()
      assert.is_true(concur.BoundedSemaphore(1):is_bounded())
      assert.is_false(concur.Semaphore(1):is_bounded())
    end)
  end)

  describe("Barrier", function()
    it("raises kind argument for fewer than one party", function()
      raises("argument", "parties must be at least 1", concur.Barrier, 0)
    end)

    it("releases n threads together with indices 0 .. n-1", function()
      local b = concur.Barrier(4)
      local ts = sync.spawn_n(3, function(_, bar) return bar:wait(10) end, b)
      local mine = b:wait(10)
      local seen = { [mine] = true }
      for _, idx in ipairs(sync.join_all(ts)) do
        assert.is_nil(seen[idx])
        seen[idx] = true
      end
      for i = 0, 3 do assert.is_true(seen[i]) end
    end)

    it("can be used for several rounds", function()
      local b = concur.Barrier(2)
      local t = concur.spawn(function(bar)
        for _ = 1, 50 do bar:wait(10) end
        return true
      end, b)
      for _ = 1, 50 do b:wait(10) end
      assert.is_true((t:join(10)))
    end)

    it("wakes every waiter with kind broken on abort", function()
      local b = concur.Barrier(4)
      local ts = sync.spawn_n(3, function(_, bar)
        local ok, err = pcall(bar.wait, bar, 10)
        return ok and "passed" or err.kind
      end, b)
      sync.wait_until(function() return b:n_waiting() == 3 end)
      b:abort()
      for _, kind in ipairs(sync.join_all(ts)) do assert.equal("broken", kind) end
      assert.is_true(b:broken())
    end)

    it("raises kind broken at once while broken", function()
      local b = concur.Barrier(2)
      b:abort()
      raises("broken", "barrier is broken", b.wait, b)
    end)

    it("works again after reset", function()
      local b = concur.Barrier(1)
      b:abort()
      b:reset()
      assert.is_false(b:broken())
      assert.equal(0, b:wait())
    end)

    it("raises kind timeout on timeout and breaks the barrier for the others", function()
      local b = concur.Barrier(2)
      raises("timeout", "barrier wait timed out", b.wait, b, 0.02)
      assert.is_true(b:broken())
      raises("broken", nil, b.wait, b, 1)
    end)

    it("tells its parties", function()
      assert.equal(3, concur.Barrier(3):parties())
    end)
  end)

  describe("Value", function()
    it("keeps an integer an integer", function()
      local v = concur.Value(41)
      assert.equal(42, v:add(1))
      assert.equal("integer", math.type(v:get()))
    end)

    it("keeps a float a float", function()
      local v = concur.Value(1.0)
      v:add(1)
      assert.equal("float", math.type(v:get()))
      assert.equal(2.0, v:get())
    end)

    it("turns into a float when a float is added, as Lua does", function()
      local v = concur.Value(1)
      assert.equal(1.5, v:add(0.5))
    end)

    it("starts at integer 0 by default", function()
      assert.equal("integer", math.type(concur.Value():get()))
    end)

    it("sets and compares-and-swaps", function()
      local v = concur.Value(1)
      v:set(5)
      assert.is_false(v:cas(4, 6))
      assert.equal(5, v:get())
      assert.is_true(v:cas(5, 6))
      assert.equal(6, v:get())
    end)

    it("compares integers and floats by value in cas", function()
      local v = concur.Value(2)
      assert.is_true(v:cas(2.0, 3))
      assert.is_false(v:cas(3.5, 4))
    end)

    it("raises kind argument for a non-number", function()
      raises("argument", "number expected, got string", concur.Value, "1")
      local v = concur.Value()
      raises("argument", "number expected, got no value", v.add, v)
    end)

    it("loses no add under contention: 4 threads x 250000 add(1)", function()
      local v = concur.Value(0)
      sync.join_all(sync.spawn_n(4, function(_, val)
        for _ = 1, 250000 do val:add(1) end
      end, v))
      assert.equal(1000000, v:get())
      assert.equal("integer", math.type(v:get()))
    end)
  end)

  describe("objects in a ThreadPool", function()
    it("reach tasks by reference", function()
      local pool <close> = concur.ThreadPool(2)
      local e, v = concur.Event(), concur.Value(0)
      local fs = {}
      for i = 1, 8 do fs[i] = pool:submit(function(ev, val) val:add(1); ev:set() end, e, v) end
      for _, f in ipairs(fs) do f:result(10) end
      assert.is_true(e:is_set())
      assert.equal(8, v:get())
    end)

    it("wake a task blocked in Lock:acquire when it is cancelled", function()
      local pool <close> = concur.ThreadPool(1)
      local l, started = concur.Lock(), concur.Event()
      l:acquire()
      local f = pool:submit(function(lk, st) st:set(); lk:acquire() end, l, started)
      assert.is_true(started:wait(10))
      assert.is_true(f:cancel())
      raises("cancelled", nil, f.result, f, 10)
      l:release()
      assert.is_true(l:acquire(0))   -- the cancelled task never took it
    end)

    it("wake a task blocked in Condition:wait when it is cancelled, lock released", function()
      local pool <close> = concur.ThreadPool(1)
      local c, started = concur.Condition(concur.Lock()), concur.Event()
      local f = pool:submit(function(cond, st)
        local _ <close> = cond:guard()
        st:set()
        cond:wait()
      end, c, started)
      assert.is_true(started:wait(10))
      assert.is_true(f:cancel())
      raises("cancelled", nil, f.result, f, 10)
      assert.is_true(c:acquire(5))   -- the guard gave the lock back
      c:release()
    end)

    it("wake a task blocked in a wait when it is cancelled", function()
      local pool <close> = concur.ThreadPool(1)
      local e, started = concur.Event(), concur.Event()
      local f = pool:submit(function(ev, st) st:set(); ev:wait() end, e, started)
      assert.is_true(started:wait(10))
      assert.is_true(f:cancel())
      raises("cancelled", nil, f.result, f, 10)
    end)
  end)
end)
