-- Synchronisation objects and queues shared between processes (shared
-- memory, process-shared robust mutexes), through Process and ProcessPool.
local helpers = require "helpers"
-- luacheck: ignore 431 311 (tasks take the objects they share as arguments; q = nil lets it be collected)
local concur = helpers.concur
local raises = helpers.raises
local core = require "concur.core"

describe("shared across processes", function()
  describe("Lock and Value", function()
    it("protects a read-modify-write done by several processes", function()
      local lock, v = concur.Lock(), concur.Value(0)
      local function work(lock, v, n)
        for _ = 1, n do
          local _ <close> = lock:guard()
          v:set(v:get() + 1)
        end
        return true
      end
      local ps = { concur.Process(work, lock, v, 2000), concur.Process(work, lock, v, 2000) }
      work(lock, v, 2000)
      for _, p in ipairs(ps) do assert.same({ true, true }, { p:join(30) }) end
      assert.equal(6000, v:get())
      assert.is_false(lock:locked())
    end)

    it("adds atomically from a pool of processes", function()
      local v = concur.Value(0)
      local pool <close> = concur.ProcessPool(2)
      local fs = {}
      for i = 1, 4 do
        fs[i] = pool:submit(function(v) for _ = 1, 5000 do v:add(1) end end, v)
      end
      for _, f in ipairs(fs) do f:result(30) end
      assert.equal(20000, v:get())
      v:add(0.5)
      assert.equal(20000.5, pool:submit(function(v) return v:get() end, v):result(30))
    end)

    it("reaches every worker's initializer, replacements included", function()
      local started = concur.Value(0)
      local pool <close> = concur.ProcessPool { workers = 2, max_tasks_per_child = 1,
        initializer = function(v) v:add(1) end, initargs = { started } }
      local fs = {}
      for i = 1, 4 do fs[i] = pool:submit(function(x) return x end, i) end
      for i = 1, 4 do assert.equal(i, fs[i]:result(30)) end
      pool:shutdown()
      -- one initializer per worker process: the first two, and one for each
      -- replacement of a worker recycled after its task (at least 2 more)
      assert.is_true(started:get() >= 4, tostring(started:get()))
    end)

    it("comes back as the same object", function()
      local lock, q = concur.Lock(), concur.Queue()
      local pool <close> = concur.ProcessPool(1)
      local l2, q2 = pool:submit(function(a, b) return a, b end, lock, q):result(30)
      assert.is_true(l2 == lock)
      assert.is_true(q2 == q)
      assert.is_false(l2 == concur.Lock())
      l2:acquire()
      assert.is_true(lock:locked())
      lock:release()
    end)

    it("lets an object made in a worker live on in the parent", function()
      local pool <close> = concur.ProcessPool(1)
      local v, q = pool:submit(function()
        local c = require "concur"
        local q = c.Queue()
        q:put("from the worker")
        return c.Value(41), q
      end):result(30)
      assert.equal(42, v:add(1))
      assert.equal("from the worker", q:get(5))
    end)
  end)

  describe("a process that dies holding a Lock", function()
    it("hands the lock to the next acquirer, saying its owner died", function()
      local lock, held = concur.Lock(), concur.Event()
      local p = concur.Process(function(lock, held)
        lock:acquire()
        held:set()
        os.exit(3)           -- dies holding it
      end, lock, held)
      assert.is_true(held:wait(20))
      p:join(20)
      assert.equal(3, p.exitcode)
      assert.is_true(lock:locked())
      local ok, why = lock:acquire(20)
      assert.is_true(ok)
      assert.equal("owner died", why)
      assert.is_true(lock:locked())
      lock:release()
      assert.same({ true }, { lock:acquire(0) })
      lock:release()
    end)

    it("wakes a waiter that is already blocked when the holder is killed", function()
      local lock, held = concur.Lock(), concur.Event()
      local p = concur.Process(function(lock, held)
        lock:acquire()
        held:set()
        while true do end
      end, lock, held)
      assert.is_true(held:wait(20))
      local t = concur.spawn(function(lock) return lock:acquire(30) end, lock)
      p:kill(9)
      p:join(20)
      local ok, acquired, why = t:join(30)
      assert.is_true(ok)
      assert.is_true(acquired)
      assert.equal("owner died", why)
    end)

    it("does the same for an RLock, with a fresh count", function()
      local r, held = concur.RLock(), concur.Event()
      local p = concur.Process(function(r, held)
        r:acquire(); r:acquire()
        held:set()
        os.exit(0)
      end, r, held)
      assert.is_true(held:wait(20))
      p:join(20)
      local ok, why = r:acquire(20)
      assert.is_true(ok)
      assert.equal("owner died", why)
      r:release()
      assert.is_false(r:locked())
    end)

    it("never takes over a lock its own process holds", function()
      local lock = concur.Lock()
      lock:acquire()
      assert.is_false(lock:acquire(0.1))
      lock:release()
    end)
  end)

  describe("Condition", function()
    it("waits in one process for a notify from another", function()
      local cond, items, waiting = concur.Condition(), concur.Value(0), concur.Semaphore(0)
      local p = concur.Process(function(cond, items, waiting)
        local _ <close> = cond:guard()
        waiting:release()
        local ok = cond:wait_for(function() return items:get() >= 3 end, 30)
        return ok, items:get()
      end, cond, items, waiting)
      assert.is_true(waiting:acquire(20))
      for _ = 1, 3 do
        local _ <close> = cond:guard()   -- the child waits: the lock is free
        items:add(1)
        cond:notify()
      end
      assert.same({ true, true, 3 }, { p:join(30) })
    end)

    it("wakes exactly the n oldest waiters, across processes", function()
      local cond, ready, woken = concur.Condition(concur.Lock()), concur.Semaphore(0), concur.Queue()
      local function waiter(cond, ready, woken, i)
        cond:acquire()
        ready:release()
        local ok = cond:wait(30)
        cond:release()
        woken:put(ok and i)
      end
      local ps = {}
      for i = 1, 3 do
        ps[i] = concur.Process(waiter, cond, ready, woken, i)
        assert.is_true(ready:acquire(20))   -- each queued before the next
      end
      do local _ <close> = cond:guard(); cond:notify(2) end
      local got = { woken:get(30), woken:get(30) }
      table.sort(got)
      assert.same({ 1, 2 }, got)
      assert.is_false(woken:try_get())   -- the third still waits
      do local _ <close> = cond:guard(); cond:notify_all() end
      assert.equal(3, woken:get(30))
      for _, p in ipairs(ps) do p:join(30) end
    end)

    it("passes over a waiter whose process was killed", function()
      local cond, ready, woken = concur.Condition(), concur.Semaphore(0), concur.Queue()
      local victim = concur.Process(function(cond, ready)
        cond:acquire()
        ready:release()
        cond:wait()
      end, cond, ready)
      assert.is_true(ready:acquire(20))
      victim:kill(9)
      victim:join(20)
      local p = concur.Process(function(cond, ready, woken)
        cond:acquire()
        ready:release()
        woken:put(cond:wait(30))
        cond:release()
      end, cond, ready, woken)
      assert.is_true(ready:acquire(20))
      do local _ <close> = cond:guard(); cond:notify(1) end   -- not to the dead one
      assert.is_true(woken:get(30))
      p:join(30)
    end)
  end)

  describe("Event, Semaphore, Barrier", function()
    it("signals between processes", function()
      local go, done = concur.Event(), concur.Event()
      local p = concur.Process(function(go, done)
        assert(go:wait(30))
        done:set()
        return "woken"
      end, go, done)
      assert.is_false(done:wait(0.05))
      go:set()
      assert.is_true(done:wait(30))
      assert.same({ true, "woken" }, { p:join(30) })
    end)

    it("keeps working after a waiting process is killed", function()
      local ev, waiting = concur.Event(), concur.Semaphore(0)
      local victim = concur.Process(function(ev, waiting)
        waiting:release()
        ev:wait()
      end, ev, waiting)
      assert.is_true(waiting:acquire(20))
      victim:kill(9)
      victim:join(20)
      local p = concur.Process(function(ev, waiting)
        waiting:release()
        return ev:wait(30)
      end, ev, waiting)
      assert.is_true(waiting:acquire(20))
      ev:set()
      assert.same({ true, true }, { p:join(30) })
    end)

    it("bounds how many processes work at once with a Semaphore", function()
      local sem, inside, most = concur.Semaphore(1), concur.Value(0), concur.Value(0)
      local pool <close> = concur.ProcessPool(2)
      local fs = {}
      for i = 1, 6 do
        fs[i] = pool:submit(function(sem, inside, most)
          local _ <close> = sem:guard()
          local n = inside:add(1)
          if n > most:get() then most:set(n) end
          for _ = 1, 20000 do end
          inside:add(-1)
        end, sem, inside, most)
      end
      for _, f in ipairs(fs) do f:result(30) end
      assert.equal(1, most:get())
      assert.equal(1, sem:value())
    end)

    it("meets at a Barrier across processes", function()
      local b = concur.Barrier(3)
      local function arrive(b) return b:wait(30) end
      local p1, p2 = concur.Process(arrive, b), concur.Process(arrive, b)
      local mine = b:wait(30)
      local _, i1 = p1:join(30)
      local _, i2 = p2:join(30)
      local seen = { [mine] = true, [i1] = true, [i2] = true }
      assert.is_true(seen[0] and seen[1] and seen[2])
    end)
  end)

  describe("Queue", function()
    it("carries any transferable value between processes, in order", function()
      local q = concur.Queue()
      local p = concur.Process(function(q)
        local bigint = require "concur.bigint"
        for i = 1, 500 do
          q:put({ i = i, s = ("x"):rep(i), f = i / 4, nested = { i } })
        end
        q:put(bigint.factorial(50))
        q:put(function(a) return a * 2 end)
        q:close()
      end, q)
      for i = 1, 500 do
        local t = q:get(30)
        assert.equal(i, t.i)
        assert.equal(i, #t.s)
        assert.equal(i / 4, t.f)
        assert.equal(i, t.nested[1])
      end
      assert.equal(tostring(require("concur.bigint").factorial(50)), tostring(q:get(30)))
      assert.equal(42, q:get(30)(21))
      raises("closed", "closed", q.get, q, 30)
      p:join(30)
    end)

    it("feeds a pool of processes and collects the results", function()
      local jobs, results = concur.Queue(10), concur.Queue()
      local pool <close> = concur.ProcessPool(2)
      local fs = {}
      for w = 1, 2 do
        fs[w] = pool:submit(function(jobs, results)
          local n = 0
          for job in jobs:items() do
            results:put(job * job)
            jobs:task_done()
            n = n + 1
          end
          return n
        end, jobs, results)
      end
      for i = 1, 200 do jobs:put(i) end   -- bounded: blocks while the workers lag
      jobs:join(30)
      jobs:close()
      local n = fs[1]:result(30) + fs[2]:result(30)
      assert.equal(200, n)
      local sum = 0
      for _ = 1, 200 do sum = sum + results:get(5) end
      assert.equal(200 * 201 * 401 / 6, sum)
    end)

    it("keeps priority order across processes", function()
      local q = concur.Queue { order = "priority" }
      concur.Process(function(q)
        for _, p in ipairs { 5, 1, 4, 2, 3 } do q:put({ priority = p, v = p }) end
      end, q):join(30)
      for i = 1, 5 do assert.equal(i, q:get(5).v) end
    end)

    it("passes shared objects inside items", function()
      local q, lock = concur.Queue(), concur.Lock()
      local pool <close> = concur.ProcessPool(1)
      q:put({ lock = lock, inner = concur.Queue() })
      local f = pool:submit(function(q)
        local t = q:get(5)
        t.lock:acquire()
        t.inner:put("hello")
        return t.inner
      end, q)
      local inner = f:result(30)
      assert.is_true(lock:locked())
      assert.equal("hello", inner:get(5))
    end)

    it("cannot be sent to a process while it holds an in-process object", function()
      local q = concur.Queue()
      local tp <close> = concur.ThreadPool(1)
      local fut = tp:submit(function() return 1 end)
      q:put({ fut = fut })
      raises("transfer", "a Queue holding an object that cannot leave this process",
        concur.Process, function(q) return q:get() end, q)
      assert.equal(1, q:get(0).fut:result(10))   -- nothing was lost
      assert.same({ true, "empty now" }, { concur.Process(function(q)
        return q:size() == 0 and "empty now"
      end, q):join(30) })
    end)

    it("refuses in-process objects once it is shared with a process", function()
      local q, inner = concur.Queue(), concur.Queue()
      local tp <close> = concur.ThreadPool(1)
      local fut = tp:submit(function() return 1 end)
      concur.Process(function(q) q:put("hi") end, q):join(30)
      raises("transfer", "shared with another process", q.put, q, { fut })
      inner:put(fut)
      raises("transfer", "shared with another process", q.put, q, inner)
      assert.equal(1, inner:get(0):result(10))
      q:put(inner)                     -- an empty inner queue crosses, and is
      raises("transfer", "shared with another process", inner.put, inner, fut)
      assert.equal("hi", q:get(0))
      assert.equal(inner, q:get(0))
    end)

    it("stays usable when a process blocked in get is killed", function()
      local q, waiting = concur.Queue(), concur.Semaphore(0)
      local victim = concur.Process(function(q, waiting)
        waiting:release()
        return q:get()
      end, q, waiting)
      assert.is_true(waiting:acquire(20))
      victim:kill(9)
      victim:join(20)
      local p = concur.Process(function(q) return q:get(30) end, q)
      q:put("for the living")
      assert.same({ true, "for the living" }, { p:join(30) })
    end)

    describe("crossing to a process for the first time", function()
      -- Until then a FIFO queue keeps its items in this process; the first
      -- crossing moves them to shared memory, threads inside it included.
      it("moves every item in order, objects and large ones too", function()
        local q, lock = concur.Queue(), concur.Lock()
        for i = 1, 600 do
          if i % 3 == 0 then q:put(("s"):rep(i))
          elseif i % 3 == 1 then q:put(i)
          else q:put({ i = i, lock = lock }) end
        end
        assert.equal(600, q:size())
        local p = concur.Process(function(q)
          local bad = {}
          for i = 1, 600 do
            local v = q:get(5)
            local ok
            if i % 3 == 0 then ok = v == ("s"):rep(i)
            elseif i % 3 == 1 then ok = v == i
            else ok = v.i == i and v.lock:acquire(5) and v.lock:release() == nil end
            if not ok then bad[#bad + 1] = i end
          end
          return #bad, q:size()
        end, q)
        assert.same({ true, 0, 0 }, { p:join(30) })
        assert.is_false(lock:locked())
      end)

      it("wakes a thread asleep in get, which then takes the process's item", function()
        local q, started = concur.Queue(), concur.Event()
        local t = concur.spawn(function(q, started)
          started:set()
          return q:get(30)
        end, q, started)
        assert.is_true(started:wait(10))
        concur.Process(function(q) q:put("from the process") end, q):join(30)
        assert.same({ true, "from the process" }, { t:join(30) })
      end)

      it("wakes a thread asleep in put on a full queue", function()
        local q, started = concur.Queue(2), concur.Event()
        q:put(1)
        q:put(2)
        local t = concur.spawn(function(q, started)
          started:set()
          q:put(3, 30)
          return "put"
        end, q, started)
        assert.is_true(started:wait(10))
        local p = concur.Process(function(q) return q:get(30), q:get(30), q:get(30) end, q)
        assert.same({ true, 1, 2, 3 }, { p:join(30) })
        assert.same({ true, "put" }, { t:join(30) })
      end)

      it("keeps its closed state and what remains to drain", function()
        local q = concur.Queue()
        q:put("a")
        q:put("b")
        q:close()
        local p = concur.Process(function(q)
          local a, b = q:get(5), q:get(5)
          local ok, err = pcall(q.get, q, 5)
          return a, b, ok, err.kind, q:closed()
        end, q)
        assert.same({ true, "a", "b", false, "closed", true }, { p:join(30) })
        raises("closed", "closed", q.put, q, "c")
      end)

      it("keeps the count of unfinished items, with a thread asleep in join", function()
        local q, started = concur.Queue(), concur.Event()
        for i = 1, 3 do q:put(i) end
        local joiner = concur.spawn(function(q, started)
          started:set()
          return q:join(30)
        end, q, started)
        assert.is_true(started:wait(10))
        assert.is_false(q:join(0))
        local p = concur.Process(function(q)
          local sum = 0
          for _ = 1, 3 do
            sum = sum + q:get(5)
            q:task_done()
          end
          local ok, err = pcall(q.task_done, q)
          return sum, ok, err.kind
        end, q)
        assert.same({ true, 6, false, "argument" }, { p:join(30) })
        assert.same({ true, true }, { joiner:join(30) })
        assert.is_true(q:join(0))
      end)

      it("puts back in its place an item a thread failed to decode meanwhile", function()
        -- the thread's decode of a module it lacks runs while the queue
        -- crosses: its loader waits for the crossing, then fails
        local NAME = "concur_spec_module_only_here"
        local mod = {}
        package.loaded[NAME] = mod
        local q, decoding, crossed = concur.Queue(), concur.Event(), concur.Event()
        q:put(mod)
        q:put("after")
        local t = concur.spawn(function(q, decoding, crossed, name)
          package.preload[name] = function()
            decoding:set()
            crossed:wait(30)
            error("not in this thread")
          end
          local ok, err = pcall(q.get, q, 30)
          return ok, err.kind, err.message
        end, q, decoding, crossed, NAME)
        assert.is_true(decoding:wait(10))
        local go = concur.Event()
        local p = concur.Process(function(q, go)
          go:wait(30)
          local ok, err = pcall(q.get, q, 5)   -- the module is not here either
          return q:size(), ok, err.kind
        end, q, go)
        crossed:set()
        local joined, got, kind, msg = t:join(30)
        assert.is_true(joined)
        assert.is_false(got)
        assert.equal("transfer", kind, msg)
        assert.matches("the item stays in the queue", msg, 1, true)
        go:set()
        assert.same({ true, 2, false, "transfer" }, { p:join(30) })
        assert.equal(mod, q:get(0))   -- first, in its place
        assert.equal("after", q:get(0))
        package.loaded[NAME] = nil
      end)

      it("delivers every item once while threads put and get as it crosses", function()
        local q, results, halfway = concur.Queue(100), concur.Queue(), concur.Semaphore(0)
        local N = 20000
        local function producer(q, from, n, halfway)
          for i = from, from + n - 1 do
            q:put(i, 30)
            if i == from + n // 2 then halfway:release() end
          end
        end
        local function consumer(q, results)
          local sum, n = 0, 0
          for v in q:items() do sum, n = sum + v, n + 1 end
          results:put({ sum, n })
        end
        local ps = { concur.spawn(producer, q, 1, N, halfway),
                     concur.spawn(producer, q, N + 1, N, halfway) }
        local cs = { concur.spawn(consumer, q, results), concur.spawn(consumer, q, results) }
        assert.is_true(halfway:acquire(30))
        assert.is_true(halfway:acquire(30))
        local p = concur.Process(consumer, q, results)   -- crosses now
        for _, t in ipairs(ps) do assert.is_true(t:join(60)) end
        q:close()
        for _, t in ipairs(cs) do assert.is_true(t:join(60)) end
        assert.is_true(p:join(60))
        local sum, n = 0, 0
        for _ = 1, 3 do
          local r = results:get(5)
          sum, n = sum + r[1], n + r[2]
        end
        assert.equal(2 * N, n)
        assert.equal(2 * N * (2 * N + 1) // 2, sum)
      end)

      it("can hold itself when it crosses", function()
        local q = concur.Queue()
        q:put(q)
        q:put("x")
        local p = concur.Process(function(q)
          local inner = q:get(5)
          return inner == q, q:get(5), q:size()
        end, q)
        assert.same({ true, true, "x", 0 }, { p:join(30) })
      end)
    end)

    it("gives its shared memory back once drained and dropped", function()
      collectgarbage()
      collectgarbage()
      local before = core._shm_used()
      local q = concur.Queue()
      local big = ("y"):rep(200000)
      concur.Process(function(q, big)
        for _ = 1, 20 do q:put(big) end
      end, q, big):join(30)
      assert.is_true(core._shm_used() >= before + 20 * 200000)
      for _ = 1, 20 do assert.equal(200000, #q:get(5)) end
      q = nil
      collectgarbage()
      collectgarbage()
      assert.equal(before, core._shm_used())
    end)
  end)

  describe("RateLimiter", function()
    it("holds the rate for all processes together", function()
      local rl = concur.RateLimiter { rate = 50, burst = 1 }
      local times = concur.Queue()
      local function take(rl, times, n)
        local c = require "concur"
        for _ = 1, n do
          rl:acquire()
          times:put(c.monotonic())
        end
      end
      local t0 = concur.monotonic()
      local ps = { concur.Process(take, rl, times, 10), concur.Process(take, rl, times, 10) }
      for _, p in ipairs(ps) do p:join(30) end
      local t = {}
      for i = 1, 20 do t[i] = times:get(5) end
      table.sort(t)
      -- 20 starts at 50/s with no burst: the i-th start comes no earlier
      -- than i - 1 intervals after t0, whichever process made it
      for i = 1, 20 do assert.is_true(t[i] >= t0 + (i - 1) * 0.02 - 1e-6) end
    end)
  end)

  describe("what cannot cross", function()
    it("refuses a Future or a pool, with kind 'transfer'", function()
      local tp <close> = concur.ThreadPool(1)
      raises("transfer", "concur.Future (in the task) cannot be sent to another process",
        concur.Process, function(f) return f end, tp:submit(function() end))
      local err = raises("transfer", "cannot transfer a concur.ThreadPool (at args[1])",
        concur.Process, function(p) return p end, tp)
      assert.matches("submit from there", err.message)
    end)

    it("has every process agree on which objects are equal", function()
      local a, b = concur.Event(), concur.Event()
      local ok, s, d = concur.Process(function(x, y, z) return x == y, x == z end, a, a, b):join(30)
      assert.is_true(ok)
      assert.is_true(s)
      assert.is_false(d)
    end)
  end)

  describe("processes that die without letting go", function()
    it("give back what they held: os.exit, SIGKILL, a task-timeout kill, a killed idle worker", function()
      collectgarbage()
      collectgarbage()
      local before = core._shm_used()
      do
        local q, held = concur.Queue(), concur.Semaphore(0)
        q:put(("q"):rep(1024 * 1024))
        local p = concur.Process(function(_q, held) held:release() os.exit(3) end, q, held)
        assert.is_false(p:join(30))
        p = concur.Process(function(_q, held) held:release() while true do end end, q, held)
        assert.is_true(held:acquire(30))
        p:kill(9)
        p:join(30)
        local pool <close> = concur.ProcessPool{ workers = 1, task_timeout = 0.5 }
        local f = pool:submit(function(_q, held) held:release() while true do end end, q, held)
        raises("timeout", nil, f.result, f, 30)
        -- an idle worker that keeps the queue in a global, then is killed
        pool:submit(function(q) _G.KEEP = q end, q):result(30)
        assert.is_true(os.execute("kill -KILL " .. pool:pids()[1]))
        assert.equal(1, pool:submit(function() return 1 end):result(30))
        pool:close()
        assert.equal(1024 * 1024, #q:get(0))
      end
      collectgarbage()
      collectgarbage()
      assert.equal(before, core._shm_used())
    end)

    it("never fill a small shared memory, however many die holding a big queue", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local core = require "concur.core"
        local base
        for round = 1, 40 do
          local q, held = concur.Queue(), concur.Semaphore(0)
          q:put(("z"):rep(1024 * 1024))
          local p = concur.Process(function(q, held, kill)
            held:release()
            if kill then while true do end end
            os.exit(0)
          end, q, held, round % 2 == 0)
          assert(held:acquire(30))
          if round % 2 == 0 then p:kill(9) end
          p:join(30)
          q, held = nil, nil
          collectgarbage()
          collectgarbage()
          base = base or core._shm_used()
          assert(core._shm_used() == base, "round " .. round .. ": " .. core._shm_used())
        end
        print("rounds done")
      ]], 120, { CONCUR_SHMSIZE = 8 * 1024 * 1024 })
      assert.is_true(ok, out)
      assert.truthy(out:find("rounds done", 1, true), out)
    end)
  end)

  describe("a smaller address space (ulimit -v)", function()
    it("still has shared memory, and says how big when it is full #nosan", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local lock, ev = concur.Lock(), concur.Event()
        assert(lock:acquire(0))
        ev:set()
        local q = concur.Queue()
        concur.Process(function() end, q):join(30)   -- shared: in the arena
        local n, err = 0, nil
        while n < 10000 do
          local ok, e = pcall(q.put, q, ("x"):rep(1024 * 1024))
          if not ok then err = e break end
          n = n + 1
        end
        print("full", n > 4, err and err.kind, err and err.message)
        local p = concur.Process(function(q) return #q:get(5) end, q)
        print("child", p:join(30))
      ]], 60, nil, "ulimit -v 400000")
      assert.is_true(ok, out)
      assert.truthy(out:find("full\ttrue\tlimit\tcannot put the item: shared memory is full", 1, true), out)
      assert.truthy(out:find("set CONCUR_SHMSIZE", 1, true), out)
      assert.truthy(out:find("child\ttrue\t1048576", 1, true), out)
    end)
  end)

  it("reports a full shared memory as kind 'limit', and recovers when drained", function()
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write([[
      local concur = require "concur"
      local q = concur.Queue()
      concur.Process(function() end, q):join(30)   -- shared: in the arena
      local big = ("z"):rep(512 * 1024)
      local n, err = 0, nil
      while n < 100 do
        local ok, e = pcall(q.put, q, big)
        if not ok then err = e break end
        n = n + 1
      end
      local locks, lok, lerr = {}, true, nil   -- then fill what is left
      while lok and #locks < 1000000 do
        lok, lerr = pcall(concur.Lock)
        locks[#locks + 1] = lok and lerr or nil
      end
      print("full", err and err.kind, n, lok, lerr and lerr.kind, lerr and lerr.message)
      for _ = 1, n do assert(#q:get(0) == #big) end
      locks = nil
      collectgarbage()
      q:put(big)
      print("again", q:size(), concur.Lock():acquire())
    ]])
    f:close()
    local lua = os.getenv("CONCUR_LUA") or "lua5.4"
    local p = io.popen(("CONCUR_SHMSIZE=%d LUA_PATH=%q LUA_CPATH=%q timeout -s KILL 30 %s %s 2>&1")
      :format(4 * 1024 * 1024, package.path, package.cpath, lua, tmp))
    local out = p:read("a")
    p:close()
    os.remove(tmp)
    local kind, n, lok, lkind, lmsg = out:match("full\t(%w+)\t(%d+)\t(%w+)\t(%w+)\t([^\n]*)")
    assert.equal("limit", kind, out)
    assert.is_true(tonumber(n) >= 4 and tonumber(n) < 8, out)   -- 4 MB of 512 KB items
    assert.equal("false", lok)
    assert.equal("limit", lkind)
    assert.truthy(lmsg:find("shared memory is full", 1, true), lmsg)
    assert.truthy(out:find("again\t1\ttrue", 1, false), out)
  end)

  it("keeps working when processes are killed at random in the middle of it all #stress", function()
    local q, lock, v = concur.Queue(), concur.Lock(), concur.Value(0)
    for round = 1, 12 do
      local started = concur.Event()
      local p = concur.Process(function(q, lock, v, started)
        local item = ("x"):rep(100 + 37 * (v:get() % 7))   -- blocks, not inline
        started:set()
        while true do
          q:put(item)
          q:get()
          local _ <close> = lock:guard()
          v:add(1)
        end
      end, q, lock, v, started)
      assert.is_true(started:wait(20))
      local target = v:get() + 50 + (round * 7919) % 400   -- somewhere in its loop
      local deadline = concur.monotonic() + 20
      while v:get() < target and concur.monotonic() < deadline do end
      p:kill(9)
      p:join(20)
      -- whatever it held or was doing, the parent goes on
      assert.is_true(lock:acquire(10))
      lock:release()
      q:put("probe")
      repeat local got = q:get(10) until got == "probe"
      assert.equal(0, q:size())
    end
    assert.is_true(v:get() > 12 * 50)
  end)

  it("leaves nothing of the shared memory behind after these objects go", function()
    collectgarbage()
    collectgarbage()
    local before = core._shm_used()
    do
      local objs = { concur.Lock(), concur.RLock(), concur.Event(), concur.Semaphore(2),
        concur.BoundedSemaphore(1), concur.Barrier(2), concur.Value(1), concur.Queue(),
        concur.RateLimiter(10) }
      objs[8]:put(objs)                 -- a queue holding itself and the others
      objs[8]:get()
      concur.Process(function(t) return #t end, objs):join(30)
    end
    collectgarbage()
    collectgarbage()
    assert.equal(before, core._shm_used())
  end)
end)
