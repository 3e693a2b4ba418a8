--- Lesson 1: processes and threads.
--
-- Creating a thread (and, where the build has it, a process), sequential
-- vs concurrent runs, CPU-bound vs I/O-bound work, a race condition shown
-- and then fixed with a Lock, and why Lua threads run Lua code in parallel
-- (Python's threads take turns under the GIL).
--
--     bin/lua examples/01_processes_and_threads.lua      (CONCUR_QUICK=1: small sizes)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/lib/?.lua;" .. package.path

local concur = require "concur"
local lesson = require "lesson"

local size, secs, ratio = lesson.size, lesson.secs, lesson.ratio
local count_primes = lesson.count_primes

lesson.title("Lesson 1: processes and threads")

---------------------------------------------------------------------------
lesson.section("Creating a thread and a process")
---------------------------------------------------------------------------
-- A thread runs a Lua function in its own lua_State on its own OS thread;
-- the function and its arguments are copied there, its results copied back.
local function greet(who)
  concur.log("hello, " .. who .. ", from thread " .. concur.thread_name())
  return #who, "done"
end
local t = concur.spawn{ greet, args = { "world" }, name = "greeter" }
local ok, n, word = t:join()
print(("main (%s) joined thread %q: ok=%s, results %s, %s"):format(
  concur.thread_name(), t.name, tostring(ok), tostring(n), tostring(word)))
-- A thread that fails hands its error to join, with the worker's traceback.
local bad = concur.spawn(function() error("something went wrong") end)
local ok2, err = bad:join()
print(("a failing thread: join -> %s, kind %q, message %q"):format(
  tostring(ok2), err.kind, tostring(err.message)))

local p = concur.Process(function() return concur.thread_name() end)
local pok, pname = p:join()
print(("process %d joined: ok=%s, result %s"):format(p.pid, tostring(pok), tostring(pname)))

---------------------------------------------------------------------------
lesson.section("Sequential vs concurrent")
---------------------------------------------------------------------------
-- Five "downloads" that each wait 0.2 s (concur.sleep stands in for I/O).
local NIO, WAIT = size(5, 4), size(0.2, 0.1)
local function download(i, wait)
  concur.sleep(wait)
  return i
end
local seq_io = lesson.time(function()
  for i = 1, NIO do download(i, WAIT) end
end)
local conc_io = lesson.time(function()
  local ts = {}
  for i = 1, NIO do ts[i] = concur.spawn(download, i, WAIT) end
  for i = 1, NIO do ts[i]:join() end
end)
print(("%d waits of %.1f s: one after another %s, all at once on %d threads %s"):format(
  NIO, WAIT, secs(seq_io), NIO, secs(conc_io)))

---------------------------------------------------------------------------
lesson.section("CPU-bound vs I/O-bound work")
---------------------------------------------------------------------------
-- I/O-bound work waits, so threads overlap the waits: the speed-up is about
-- the number of threads. CPU-bound work needs cores: the speed-up is at
-- most the number of CPUs.
local LIMIT = size(1500000, 200000)
local NCPU = 2
local function cpu_sequential()
  return count_primes(LIMIT)
end
local function cpu_threads()
  local a = concur.spawn(count_primes, LIMIT, 1, 2)   -- half the blocks
  local b = concur.spawn(count_primes, LIMIT, 2, 2)   -- the other half
  local _, x = a:join()
  local _, y = b:join()
  return x + y
end
local seq_cpu, _, others1, p1 = lesson.measure(cpu_sequential)
local thr_cpu, _, others2, p2 = lesson.measure(cpu_threads)
assert(p1 == p2)
print(("primes up to %d: %d (both ways)"):format(LIMIT, p1))
lesson.table({ "work", "sequential", "threads", "speed-up" }, {
  { ("I/O-bound (%d x sleep %.1f s)"):format(NIO, WAIT), secs(seq_io), secs(conc_io),
    ratio(seq_io, conc_io) },
  { ("CPU-bound (primes, %d threads)"):format(NCPU), secs(seq_cpu), secs(thr_cpu),
    ratio(seq_cpu, thr_cpu) },
})
lesson.load_note(others1 and others2 and math.max(others1, others2))

---------------------------------------------------------------------------
lesson.section("A race condition, and its fix with a Lock")
---------------------------------------------------------------------------
-- counter:set(counter:get() + 1) is a read-modify-write in two steps: two
-- threads can read the same value and both write value + 1, so one of the
-- increments is lost.
local NTHREADS = 4
local function unsafe_increment(counter, times)
  for _ = 1, times do
    counter:set(counter:get() + 1)      -- not atomic: get, then set
  end
end
local function locked_increment(counter, times, lock)
  for _ = 1, times do
    local _ <close> = lock:guard()      -- held until the end of this iteration
    counter:set(counter:get() + 1)
  end
end
local function run(fn, times, ...)
  local counter = concur.Value(0)
  local ts = {}
  local elapsed = lesson.time(function(...)
    for i = 1, NTHREADS do ts[i] = concur.spawn(fn, counter, times, ...) end
    for i = 1, NTHREADS do assert(ts[i]:join()) end
  end, ...)
  return counter:get(), elapsed
end

-- Enough iterations that the threads overlap (retried bigger if a busy
-- machine happened to run them one after another).
local times, got, race_time = size(200000, 50000), nil, nil
for _ = 1, 4 do
  got, race_time = run(unsafe_increment, times)
  if got < NTHREADS * times then break end
  times = times * 2
end
local expected = NTHREADS * times
print(("without a lock: %d threads x %d increments = %d expected, got %d: lost %d updates")
  :format(NTHREADS, times, expected, got, expected - got))
local fixed, lock_time = run(locked_increment, times, concur.Lock())
print(("with a Lock:    %d threads x %d increments = %d expected, got %d: %s")
  :format(NTHREADS, times, expected, fixed, fixed == expected and "exact" or "WRONG"))
local atomic, add_time = run(function(counter, count)
  for _ = 1, count do counter:add(1) end       -- one atomic step
end, times)
print(("with Value:add: %d threads x %d increments = %d expected, got %d: %s")
  :format(NTHREADS, times, expected, atomic, atomic == expected and "exact" or "WRONG"))
lesson.table({ "counter", "result", "time" }, {
  { "get/set, no lock", got, secs(race_time) },
  { "get/set under a Lock", fixed, secs(lock_time) },
  { "Value:add (atomic)", atomic, secs(add_time) },
})

---------------------------------------------------------------------------
lesson.section("No GIL: Lua threads run Lua code in parallel")
---------------------------------------------------------------------------
-- Python's threads share one interpreter behind the global interpreter
-- lock, so CPU-bound Python code on 2 threads takes as long as on 1.
-- Each concur thread has its own lua_State, so the same Lua code runs on
-- every core at once. os.clock() counts the CPU time of all threads: CPU
-- time / wall time is how many cores were busy.
local WORK = size(2000000, 250000)
local rows = {}
local base
for _, k in ipairs { 1, 2, concur.cpu_count() > 2 and concur.cpu_count() or nil } do
  local wall, cores, others = lesson.measure(function()
    local ts = {}
    for i = 1, k do ts[i] = concur.spawn(count_primes, WORK, i, k) end
    for i = 1, k do ts[i]:join() end
  end)
  base = base or wall
  rows[#rows + 1] = { ("%d thread%s"):format(k, k > 1 and "s" or ""), secs(wall),
    ("%.2f"):format(cores), others and ("%.2f"):format(others) or "?", ratio(base, wall) }
end
lesson.table({ "primes up to " .. WORK, "wall time", "cores busy (this)", "cores busy (others)",
  "speed-up" }, rows)
print(("The speed-up of 2 threads is bounded by the %d CPUs less what other processes use at the"
  .. " time;\nunder a GIL (Python threads) it would stay near 1.00x whatever the CPUs."):format(
  concur.cpu_count()))
