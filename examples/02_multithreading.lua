--- Lesson 2: multithreading in practice.
--
-- A thread-safe counter with a Lock, producer-consumer with a Queue,
-- Event-based signalling, per-thread state, daemon threads, Condition
-- variables, a performance comparison and common patterns.
--
--     bin/lua examples/02_multithreading.lua      (CONCUR_QUICK=1: small sizes)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/lib/?.lua;" .. package.path

local concur = require "concur"
local lesson = require "lesson"

local size, secs, ratio = lesson.size, lesson.secs, lesson.ratio
local log = concur.log

lesson.title("Lesson 2: multithreading in practice")

---------------------------------------------------------------------------
lesson.section("A thread-safe counter with a Lock")
---------------------------------------------------------------------------
-- A bank account shared by reference: its balance is a concur.Value, and a
-- Lock makes "check the balance, then withdraw" one step.
local balance, lock = concur.Value(1000), concur.Lock()
local function withdraw_many(bal, lk, amount, times)
  local done = 0
  for _ = 1, times do
    local _ <close> = lk:guard()
    if bal:get() >= amount then
      bal:set(bal:get() - amount)
      done = done + 1
    end
  end
  return done
end
local WTHREADS, WTIMES = 4, size(400, 100)
local ts = {}
for i = 1, WTHREADS do
  ts[i] = concur.spawn{ withdraw_many, args = { balance, lock, 3, WTIMES }, name = "teller-" .. i }
end
local withdrawn = 0
for i = 1, WTHREADS do
  local _, n = ts[i]:join()
  withdrawn = withdrawn + n
end
print(("%d tellers withdrew 3 x %d times from 1000: balance %d (never negative), 1000 - 3 x %d = %d")
  :format(WTHREADS, withdrawn, balance:get(), withdrawn, 1000 - 3 * withdrawn))
-- An RLock may be taken again by the thread that holds it (re-entrant code).
local rlock = concur.RLock()
local function nested(lk, depth)
  local _ <close> = lk:guard()
  if depth > 0 then return nested(lk, depth - 1) end
  return "reached depth 0 holding the RLock 4 times"
end
print(select(2, concur.spawn(nested, rlock, 3):join()))

---------------------------------------------------------------------------
lesson.section("Producer-consumer with a Queue")
---------------------------------------------------------------------------
-- Two producers put work into a bounded queue (put blocks while it is
-- full); three consumers take items until the queue is closed and drained.
local NITEMS = size(20, 8)
local work = concur.Queue{ maxsize = 4 }
local function producer(q, first, count)
  for i = first, first + count - 1 do q:put(i) end
  log("produced " .. count .. " items")
end
local function consumer(q)
  local n, sum = 0, 0
  for item in q:items() do           -- ends when the queue is closed and empty
    concur.sleep(0.005)              -- some work per item
    n, sum = n + 1, sum + item
  end
  log(("consumed %d items, sum %d"):format(n, sum))
  return n, sum
end
local producers, consumers = {}, {}
for i = 1, 2 do
  producers[i] = concur.spawn{ producer, args = { work, (i - 1) * NITEMS + 1, NITEMS },
    name = "producer-" .. i }
end
for i = 1, 3 do consumers[i] = concur.spawn{ consumer, args = { work }, name = "consumer-" .. i } end
for i = 1, 2 do producers[i]:join() end
work:close()                         -- no more items: consumers finish the rest
local total, sum = 0, 0
for i = 1, 3 do
  local _, n, s = consumers[i]:join()
  total, sum = total + n, sum + s
end
local want = (2 * NITEMS) * (2 * NITEMS + 1) // 2
print(("%d items consumed (of %d), sum %d (expected %d)"):format(total, 2 * NITEMS, sum, want))

---------------------------------------------------------------------------
lesson.section("Event-based signalling")
---------------------------------------------------------------------------
-- Workers get ready, then wait for the starting gun; a stop Event ends a
-- worker that polls in a loop.
local start, stop = concur.Event(), concur.Event()
local t0 = concur.monotonic()
local runners = {}
for i = 1, 3 do
  runners[i] = concur.spawn{ function(go, t)
    go:wait()
    return concur.monotonic() - t
  end, args = { start, t0 }, name = "runner-" .. i }
end
local poller = concur.spawn{ function(st)
  local ticks = 0
  while not st:wait(0.02) do ticks = ticks + 1 end   -- wait returns true once set
  return ticks
end, args = { stop }, name = "poller" }
concur.sleep(0.1)
print(("start set after %.3f s"):format(concur.monotonic() - t0))
start:set()
for i = 1, 3 do
  local _, at = runners[i]:join()
  print(("  runner-%d started at %.3f s"):format(i, at))
end
stop:set()
local _, ticks = poller:join()
print(("poller saw the stop Event after %d ticks of 20 ms"):format(ticks))

---------------------------------------------------------------------------
lesson.section("Per-thread state")
---------------------------------------------------------------------------
-- Python needs threading.local(); here every thread and pool worker has its
-- own lua_State, so its globals are its own. A pool's initializer sets up
-- per-worker state once (a connection, a cache); tasks then use it.
local pool = concur.ThreadPool{ workers = 3, name = "worker",
  initializer = function(tag) _G.calls, _G.tag = 0, tag end, initargs = { "cache" } }
local futs = {}
for i = 1, size(30, 12) do
  futs[i] = pool:submit(function(x)
    _G.calls = _G.calls + 1           -- this worker's own global
    concur.sleep(0.002)
    return concur.thread_name(), _G.calls, x * x
  end, i)
end
local per_worker = {}
for _, f in ipairs(futs) do
  local name, calls = f:result()
  per_worker[name] = math.max(per_worker[name] or 0, calls)
end
local rows = {}
for name, calls in pairs(per_worker) do rows[#rows + 1] = { name, calls } end
table.sort(rows, function(a, b) return a[1] < b[1] end)
lesson.table({ "worker", "its own _G.calls" }, rows)
_G.calls = "main's own"
print("main's _G.calls is still " .. _G.calls .. "; worker globals never leak between states")
pool:close()

---------------------------------------------------------------------------
lesson.section("Daemon threads")
---------------------------------------------------------------------------
-- A daemon thread runs in the background and is cancelled when the
-- interpreter exits; non-daemon threads are joined at exit. Any thread
-- can be cancelled: it stops at its next Lua instruction check or wait.
local beats = concur.Value(0)
local heartbeat = concur.spawn{ function(count)
  while true do
    local n = count:add(1)
    if n <= 3 then log("heartbeat " .. n .. (n == 3 and " (quiet from now on)" or "")) end
    concur.sleep(0.1)
  end
end, args = { beats }, daemon = true, name = "heartbeat" }
concur.sleep(0.25)
print("heartbeat alive: " .. tostring(heartbeat:alive()) .. " (left running: cancelled at exit)")
local spinner = concur.spawn{ function() while true do end end, name = "spinner" }
concur.sleep(0.05)
spinner:cancel()
local ok, err = spinner:join(2)
print(("a busy loop cancelled: join -> %s, kind %q"):format(tostring(ok), err.kind))

---------------------------------------------------------------------------
lesson.section("Condition variables")
---------------------------------------------------------------------------
-- A Condition pairs a lock with wait/notify: waiters sleep until another
-- thread changes the state and notifies. Here workers check in one by one
-- and the main thread waits until all have.
local cond, arrived = concur.Condition(), concur.Value(0)
local NWORK = 4
local checkers = {}
for i = 1, NWORK do
  checkers[i] = concur.spawn{ function(c, a, k)
    concur.sleep(0.02 * k)
    local _ <close> = c:guard()
    a:add(1)
    log(("checked in (%d of %d)"):format(a:get(), NWORK))
    c:notify_all()
  end, args = { cond, arrived, i }, name = "worker-" .. i }
end
do
  local _ <close> = cond:guard()
  local all = cond:wait_for(function() return arrived:get() == NWORK end, 5)
  print(("main: wait_for saw all %d workers: %s"):format(NWORK, tostring(all)))
end
for i = 1, NWORK do checkers[i]:join() end

---------------------------------------------------------------------------
lesson.section("Performance comparison")
---------------------------------------------------------------------------
-- I/O-bound tasks (sleeps) and CPU-bound tasks (prime counting), run one
-- after another, one thread per task, and on a ThreadPool.
local NIO, IOWAIT = size(40, 16), size(0.05, 0.02)
local NCPU, CPUN = size(8, 4), size(800000, 150000)
local count_primes = lesson.count_primes
local function io_task() concur.sleep(IOWAIT) end
local function cpu_task(i) return count_primes(CPUN, i, NCPU) end
local function sequential(fn, n) for i = 1, n do fn(i) end end
local function thread_per_task(fn, n)
  local th = {}
  for i = 1, n do th[i] = concur.spawn(fn, i) end
  for i = 1, n do assert(th[i]:join()) end
end
local function on_pool(fn, n, workers)
  local p <close> = concur.ThreadPool(workers)
  local items = {}
  for i = 1, n do items[i] = i end
  p:map(fn, items, { chunksize = 1 })
end
local results = {}
local function compare(label, fn, n, workers)
  local s = lesson.time(sequential, fn, n)
  local t = lesson.time(thread_per_task, fn, n)
  local p = lesson.time(on_pool, fn, n, workers)
  results[#results + 1] = { label, secs(s), secs(t), ratio(s, t),
    secs(p) .. " (" .. workers .. " workers)", ratio(s, p) }
end
compare(("I/O: %d x sleep %.2f s"):format(NIO, IOWAIT), io_task, NIO, 8)
local _, _, others = lesson.measure(compare, ("CPU: primes to %d in %d parts"):format(CPUN, NCPU),
  cpu_task, NCPU, concur.cpu_count())
lesson.table({ "tasks", "sequential", "thread per task", "speed-up", "ThreadPool", "speed-up" }, results)
print("I/O-bound work scales with the number of threads (a pool of 8 runs 8 waits at a time);")
print("CPU-bound work scales with the idle CPUs, and a pool sized to them does as well as more threads.")
lesson.load_note(others)
-- Starting a thread costs a new lua_State; a pool pays that once per worker.
local NTINY = size(2000, 500)
local tiny = function(x) return x + 1 end
local spawn_time = lesson.time(thread_per_task, tiny, NTINY)
local pool_time = lesson.time(function()
  local p <close> = concur.ThreadPool(concur.cpu_count())
  local fs = {}
  for i = 1, NTINY do fs[i] = p:submit(tiny, i) end
  concur.wait(fs)
end)
lesson.table({ ("%d tiny tasks"):format(NTINY), "time", "per task" }, {
  { "a thread per task", secs(spawn_time), ("%.1f us"):format(spawn_time / NTINY * 1e6) },
  { "ThreadPool:submit", secs(pool_time), ("%.1f us"):format(pool_time / NTINY * 1e6) },
})
print(("a pool is %s faster than a thread per task for tiny tasks"):format(ratio(spawn_time, pool_time)))

---------------------------------------------------------------------------
lesson.section("Common patterns")
---------------------------------------------------------------------------
-- (a) Fan-out / fan-in: map a function over items on a pool, in order.
do
  local p <close> = concur.ThreadPool(4)
  local squares = p:map(function(x) return x * x end, { 1, 2, 3, 4, 5, 6, 7, 8 })
  print("fan-out/fan-in: squares " .. table.concat(squares, " "))
end
-- (b) A pipeline: stage threads joined by queues; closing a queue ends the
-- next stage once it has drained it.
do
  local q1, q2 = concur.Queue(), concur.Queue()
  local parse = concur.spawn{ function(inq, outq)
    for line in inq:items() do outq:put(#line) end
    outq:close()
  end, args = { q1, q2 }, name = "parse" }
  local total_ = concur.spawn{ function(inq)
    local acc = 0
    for n in inq:items() do acc = acc + n end
    return acc
  end, args = { q2 }, name = "sum" }
  for _, line in ipairs { "alpha", "beta", "gamma", "delta" } do q1:put(line) end
  q1:close()
  parse:join()
  print("pipeline: total length of the lines " .. select(2, total_:join()))
end
-- (c) Limit concurrency with a Semaphore: at most 2 inside at once.
do
  local sem, inside, most = concur.Semaphore(2), concur.Value(0), concur.Value(0)
  local th = {}
  for i = 1, 6 do
    th[i] = concur.spawn(function(s, cur, mx)
      local _ <close> = s:guard()
      local now = cur:add(1)
      repeat local m = mx:get() until now <= m or mx:cas(m, now)
      concur.sleep(0.02)
      cur:add(-1)
    end, sem, inside, most)
  end
  for i = 1, 6 do th[i]:join() end
  print(("semaphore: 6 threads, at most %d inside at once (limit 2)"):format(most:get()))
end
-- (d) Phases with a Barrier: nobody starts phase 2 before all finish phase 1.
do
  local barrier, order = concur.Barrier(3), concur.Queue()
  local th = {}
  for i = 1, 3 do
    th[i] = concur.spawn(function(b, q, k)
      concur.sleep(0.01 * k)
      q:put("phase 1 by " .. k)
      b:wait()
      q:put("phase 2 by " .. k)
    end, barrier, order, i)
  end
  for i = 1, 3 do th[i]:join() end
  order:close()
  local seen = {}
  for v in order:items() do seen[#seen + 1] = v:match("^phase (%d)") end
  print("barrier: phases in order " .. table.concat(seen, " "))
end
print()
print(("done; the daemon heartbeat has beaten %d times and is cancelled as the interpreter exits")
  :format(beats:get()))
