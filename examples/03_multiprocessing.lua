--- Lesson 3: multiprocessing.
--
-- Processes, IPC through a Queue, shared Values, a CPU-bound speed-up, a
-- process pool with map, the initializer pattern, and processes and
-- threads compared.
--
--     bin/lua examples/03_multiprocessing.lua      (CONCUR_QUICK=1: small sizes)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/lib/?.lua;" .. package.path

local concur = require "concur"
local lesson = require "lesson"

local size, secs, ratio = lesson.size, lesson.secs, lesson.ratio
local count_primes = lesson.count_primes
local log = concur.log

-- The items 1..n, for map.
local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

lesson.title("Lesson 3: multiprocessing")

---------------------------------------------------------------------------
lesson.section("Creating processes")
---------------------------------------------------------------------------
-- concur.Process(fn, ...) starts fn(...) at once in a new OS process, with
-- a Lua state of its own: fn and its arguments are copied there (as they
-- are to a thread), and join copies its results back. concur.log prints
-- one whole line at a time, tagged with the process's name, so the lines
-- of several processes never mix.
local function work(job, steps)
  log(("working on %s (%d steps)"):format(job, steps))
  local sum = 0
  for i = 1, steps do sum = sum + i end
  return sum, concur.thread_name()
end
local procs = {}
for i = 1, 3 do procs[i] = concur.Process(work, "job " .. i, i * 1000000) end
for _, p in ipairs(procs) do
  local ok, sum, name = p:join()
  print(("process %d joined: ok=%s, sum %d, it called itself %q, exit code %d"):format(
    p.pid, tostring(ok), sum, name, p.exitcode))
end

-- A process has its own memory: what it changes in its copy of an
-- argument, or in its globals, never reaches the parent.
local config = { mode = "the parent's", hits = 0 }
_G.setting = "set by the parent"
local _, mode, hits, setting = concur.Process(function(cfg)
  cfg.mode, cfg.hits = "the child's", cfg.hits + 1
  return cfg.mode, cfg.hits, tostring(_G.setting)
end, config):join()
print(("in the child:  mode is %s, hits %d, the parent's global is %s"):format(mode, hits, setting))
print(("in the parent: mode is %s, hits %d: the child changed a copy"):format(config.mode, config.hits))

-- How processes end: an error is reported by join (exitcode 1, as in
-- Python); os.exit, a crash or a kill end the process (exitcode: the
-- status, or minus the signal; os.exit(0) joins true).
local failing = concur.Process(function() error("bad input", 0) end)
local ok, err = failing:join()
print(("an error:   join -> %s, kind %q, message %q, exit code %d"):format(tostring(ok),
  err.kind, err.message, failing.exitcode))
local exiting = concur.Process(function() os.exit(3) end)
ok, err = exiting:join()
print(("os.exit(3): join -> %s, kind %q, exit code %d"):format(tostring(ok), err.kind,
  exiting.exitcode))
local runaway = concur.Process(function() while true do end end)
local waited = pcall(runaway.join, runaway, 0.1)
runaway:kill()
ok, err = runaway:join()
print(("an endless loop: join(0.1) -> %s, then kill(): join -> %s, kind %q, exit code %d"):format(
  waited and "joined" or "timeout", tostring(ok), err.kind, runaway.exitcode))

---------------------------------------------------------------------------
lesson.section("IPC through a Queue")
---------------------------------------------------------------------------
-- Processes share no memory, but concur's queues, locks, events and values
-- cross to them by reference, as they do to threads: a Queue passed to a
-- Process is the same queue on both sides. Here the parent puts jobs on
-- one queue; worker processes take them until it is closed and drained,
-- put each result on another, and a last "done" message (a sentinel).
local NJOBS, BLOCK, NWORKERS = size(40, 12), size(10000, 2000), 3
local count_block = lesson.count_primes_between   -- primes in lo..hi
local function queue_worker(jobs, results, block)
  local handled = 0
  for job in jobs:items() do                    -- ends when jobs is closed and empty
    local lo = (job - 1) * block
    results:put{ job = job, count = count_block(lo, lo + block - 1) }
    handled = handled + 1
  end
  log(("handled %d job%s"):format(handled, handled == 1 and "" or "s"))
  results:put{ done = true, worker = concur.thread_name(), handled = handled }
end
local ipc_start = concur.monotonic()
local jobs, results = concur.Queue{ maxsize = 8 }, concur.Queue()
local workers = {}
for i = 1, NWORKERS do workers[i] = concur.Process(queue_worker, jobs, results, BLOCK) end
for job = 1, NJOBS do jobs:put(job) end         -- blocks while 8 are waiting
jobs:close()                                    -- no more jobs
local received, total, finished, by_worker = 0, 0, 0, {}
while finished < NWORKERS do                    -- until every worker has said it is done
  local msg = results:get()
  if msg.done then
    finished = finished + 1
    by_worker[#by_worker + 1] = { msg.worker, msg.handled }
  else
    received, total = received + 1, total + msg.count
  end
end
for i = 1, NWORKERS do assert(workers[i]:join()) end
local ipc_time = concur.monotonic() - ipc_start
table.sort(by_worker, function(a, b) return a[1] < b[1] end)
lesson.table({ "worker process", "jobs handled" }, by_worker)
local want = count_primes(NJOBS * BLOCK - 1)
print(("%d results received through the queue from %d processes (%d jobs sent) in %s"):format(
  received, NWORKERS, NJOBS, secs(ipc_time)))
print(("sum of the counts: %d; primes below %d, counted here: %d"):format(total, NJOBS * BLOCK, want))

---------------------------------------------------------------------------
lesson.section("Shared Values")
---------------------------------------------------------------------------
-- A concur.Value is one number that every process holding it sees. As in
-- lesson 1, counter:set(counter:get() + 1) is two steps, so processes
-- running at the same time on different CPUs lose updates; a Lock shared
-- by the processes makes the two steps one, and Value:add is one atomic
-- step to begin with.
local NPROCS = 4
local function unsafe_increment(counter, times)
  for _ = 1, times do counter:set(counter:get() + 1) end     -- get, then set
end
local function locked_increment(counter, times, lock)
  for _ = 1, times do
    local _ <close> = lock:guard()                           -- held for this iteration
    counter:set(counter:get() + 1)
  end
end
local function atomic_increment(counter, times)
  for _ = 1, times do counter:add(1) end
end
local function run(fn, times, ...)
  local counter = concur.Value(0)
  local elapsed = lesson.time(function(...)
    local ps = {}
    for i = 1, NPROCS do ps[i] = concur.Process(fn, counter, times, ...) end
    for i = 1, NPROCS do assert(ps[i]:join()) end
  end, ...)
  return counter:get(), elapsed
end
-- Enough iterations that the processes overlap (retried bigger if a busy
-- machine happened to run them one after another).
local times, got, race_time = size(200000, 50000), nil, nil
for _ = 1, 4 do
  got, race_time = run(unsafe_increment, times)
  if got < NPROCS * times then break end
  times = times * 2
end
local expected = NPROCS * times
print(("without a lock: %d processes x %d increments = %d expected, got %d: lost %d updates")
  :format(NPROCS, times, expected, got, expected - got))
local fixed, lock_time = run(locked_increment, times, concur.Lock())
print(("with a Lock:    %d processes x %d increments = %d expected, got %d: %s")
  :format(NPROCS, times, expected, fixed, fixed == expected and "exact" or "WRONG"))
local atomic, add_time = run(atomic_increment, times)
print(("with Value:add: %d processes x %d increments = %d expected, got %d: %s")
  :format(NPROCS, times, expected, atomic, atomic == expected and "exact" or "WRONG"))
lesson.table({ "shared counter", "result", "time" }, {
  { "get/set, no lock", got, secs(race_time) },
  { "get/set under a Lock", fixed, secs(lock_time) },
  { "Value:add (atomic)", atomic, secs(add_time) },
})

---------------------------------------------------------------------------
lesson.section("A CPU-bound speed-up")
---------------------------------------------------------------------------
-- Counting primes, all in this process and then split over k processes
-- (each counts its share of the blocks and returns the count). The CPU
-- time of the processes counts once they are joined.
local LIMIT = size(2000000, 300000)
local seq_time, seq_cores, others, seq_count = lesson.measure_processes(count_primes, LIMIT)
local rows = { { "this process alone", secs(seq_time), ("%.2f"):format(seq_cores),
  ratio(seq_time, seq_time) } }
for _, k in ipairs { 2, concur.cpu_count() > 2 and concur.cpu_count() or nil } do
  local wall, cores, others_k, count = lesson.measure_processes(function()
    local ps = {}
    for i = 1, k do ps[i] = concur.Process(count_primes, LIMIT, i, k) end
    local sum = 0
    for i = 1, k do sum = sum + select(2, assert(ps[i]:join())) end
    return sum
  end)
  assert(count == seq_count)
  others = math.max(others or 0, others_k or 0)
  rows[#rows + 1] = { ("%d processes"):format(k), secs(wall), ("%.2f"):format(cores),
    ratio(seq_time, wall) }
end
print(("primes up to %d: %d (every way)"):format(LIMIT, seq_count))
lesson.table({ "counting primes", "wall time", "cores busy", "speed-up" }, rows)
lesson.load_note(others)

---------------------------------------------------------------------------
lesson.section("A process pool with map")
---------------------------------------------------------------------------
-- A ProcessPool starts its worker processes once and feeds them tasks:
-- map sends the items in chunks, runs fn on each in the workers and
-- returns the results in order.
local ppool <close> = concur.ProcessPool{ workers = 2 }
local squares = ppool:map(function(x) return x * x end, range(10))
print("squares of 1..10: " .. table.concat(squares, " "))
-- The prime count of section 4 as 16 items, on a pool started, used and
-- closed in the measured time (closed, so its workers' CPU time counts).
local NPARTS = 16
local map_time, map_cores, others_map, counts = lesson.measure_processes(function()
  local pool <close> = concur.ProcessPool{ workers = 2 }
  return pool:map(function(i) return count_primes(LIMIT, i, NPARTS) end, range(NPARTS),
    { chunksize = 1 })
end)
local sum = 0
for _, c in ipairs(counts) do sum = sum + c end
assert(sum == seq_count)
lesson.table({ ("primes up to %d: %d"):format(LIMIT, sum), "wall time", "cores busy", "speed-up" }, {
  { "this process alone (section 4)", secs(seq_time), ("%.2f"):format(seq_cores),
    ratio(seq_time, seq_time) },
  { ("ProcessPool(2):map, %d items"):format(NPARTS), secs(map_time), ("%.2f"):format(map_cores),
    ratio(seq_time, map_time) },
})
lesson.load_note(others_map)

-- Many tiny items: chunksize decides how many travel to a worker at once;
-- each chunk costs a round trip between processes.
local NTINY = size(4000, 1000)
local tiny = range(NTINY)
local chunk_rows, base = {}, nil
for _, chunk in ipairs { 1, 10, 100, "default" } do
  local t = lesson.time(ppool.map, ppool, function(x) return x + 1 end, tiny,
    { chunksize = chunk ~= "default" and chunk or nil })
  base = base or t
  chunk_rows[#chunk_rows + 1] = { chunk, secs(t), ("%.1f"):format(t / NTINY * 1e6),
    ratio(base, t) }
end
lesson.table({ ("map over %d tiny items: chunksize"):format(NTINY), "time", "per item (us)",
  "speed-up" }, chunk_rows)

---------------------------------------------------------------------------
lesson.section("The initializer pattern")
---------------------------------------------------------------------------
-- Some tasks need state that is costly to set up: a connection, a model,
-- a table. Built inside every task, it is rebuilt for each one; built by
-- the pool's initializer, it is built once per worker process and kept in
-- that worker's globals for all the tasks it runs.
local SIEVE, NLOOKUPS = size(3000000, 600000), size(12, 6)
local function build_table(n, builds)           -- the costly part: a prime sieve
  builds:add(1)                                 -- a shared Value: counts every build
  local composite = {}
  for i = 2, math.floor(math.sqrt(n)) do
    if not composite[i] then
      for j = i * i, n, i do composite[j] = true end
    end
  end
  return composite
end
local function primes_in(composite, lo, hi)     -- the cheap part: lookups
  local count = 0
  for n = math.max(lo, 2), hi do
    if not composite[n] then count = count + 1 end
  end
  return count
end
local function slice(i, n, parts)               -- the i-th of `parts` ranges of 1..n
  return (i - 1) * n // parts + 1, i * n // parts
end
local function per_task(i, builds)              -- builds the table itself, every time
  local lo, hi = slice(i, SIEVE, NLOOKUPS)
  return primes_in(build_table(SIEVE, builds), lo, hi), concur.thread_name()
end
local function init_worker(n, builds)           -- runs once in each new worker
  local t0 = concur.monotonic()
  _G.composite = build_table(n, builds)
  log(("initializer: built the table in %.3f s"):format(concur.monotonic() - t0))
end
local function with_init(i)                     -- uses this worker's table
  local lo, hi = slice(i, SIEVE, NLOOKUPS)
  return primes_in(_G.composite, lo, hi), concur.thread_name()
end
-- Runs the lookups on a fresh ProcessPool(2), started and closed in the
-- measured time; returns the total count, the tables built and how many
-- tasks each worker ran.
local function lookups(fn, builds, opts)
  opts.workers = 2
  local pool <close> = concur.ProcessPool(opts)
  local fs, count, tasks = {}, 0, {}
  for i = 1, NLOOKUPS do fs[i] = pool:submit(fn, i, builds) end
  for i = 1, NLOOKUPS do
    local c, name = fs[i]:result()
    count, tasks[name] = count + c, (tasks[name] or 0) + 1
  end
  pool:close()                                  -- every worker has started and ended
  return count, builds:get(), tasks
end
local plain_builds, init_builds = concur.Value(0), concur.Value(0)
local plain_time, plain_count, plain_built = lesson.time(lookups, per_task, plain_builds, {})
local init_time, init_count, init_built, init_tasks = lesson.time(lookups, with_init, init_builds,
  { initializer = init_worker, initargs = { SIEVE, init_builds } })
assert(plain_count == init_count)
local shown = {}
for name, n in pairs(init_tasks) do shown[#shown + 1] = ("%s ran %d"):format(name, n) end
table.sort(shown)
print(("%d lookups in a table of primes up to %d: %d primes, the same both ways"):format(
  NLOOKUPS, SIEVE, init_count))
print("tasks with the initializer: " .. table.concat(shown, ", "))
lesson.table({ "ProcessPool(2), " .. NLOOKUPS .. " tasks", "tables built", "time", "speed-up" }, {
  { "each task builds the table", plain_built, secs(plain_time), ratio(plain_time, plain_time) },
  { "the initializer builds it", init_built, secs(init_time), ratio(plain_time, init_time) },
})

---------------------------------------------------------------------------
lesson.section("Processes vs threads compared")
---------------------------------------------------------------------------
-- In Python, CPU-bound code needs processes: its threads take turns under
-- the GIL. concur's threads run Lua in parallel already (lesson 1), so
-- here processes and threads are compared on what they cost, and on what
-- only processes give: isolation.
local tpool <close> = concur.ThreadPool{ workers = 2, name = "thread" }
local NSTART, NTRIP, NBIG = size(20, 8), size(500, 200), size(20, 8)
local function per(n, scale, digits)            -- time per run, in s, ms or us
  return function(t) return ("%." .. (digits or 1) .. "f"):format(t / n * scale) end
end
local function compare(label, fmt, run_threads, run_procs)
  local t = lesson.time(run_threads)
  local p = lesson.time(run_procs)
  return { label, fmt(t), fmt(p), ("%.1fx"):format(p / t) }
end
local function round_trips(pool, n)
  for i = 1, n do assert(pool:submit(function(x) return x end, i):result() == i) end
end
local big = ("x"):rep(1024 * 1024)
local function send_big(pool, n)
  for _ = 1, n do assert(pool:submit(function(s) return #s end, big):result() == #big) end
end
local NCMP = size(16, 8)
local function cpu_part(i) return count_primes(LIMIT, i, NCMP) end
local function cpu_map(Pool)                     -- a fresh pool, closed: its CPU counts
  local pool <close> = Pool{ workers = 2 }
  return pool:map(cpu_part, range(NCMP), { chunksize = 1 })
end
local cmp_rows = {
  compare(("start and join one, ms (x %d)"):format(NSTART), per(NSTART, 1e3),
    function() for _ = 1, NSTART do concur.spawn(function() return 1 end):join() end end,
    function() for _ = 1, NSTART do concur.Process(function() return 1 end):join() end end),
  compare(("a tiny task's round trip, us (x %d)"):format(NTRIP), per(NTRIP, 1e6),
    function() round_trips(tpool, NTRIP) end, function() round_trips(ppool, NTRIP) end),
  compare(("a 1 MB argument's round trip, ms (x %d)"):format(NBIG), per(NBIG, 1e3),
    function() send_big(tpool, NBIG) end, function() send_big(ppool, NBIG) end),
}
local _, _, cpu_others = lesson.measure_processes(function()
  cmp_rows[#cmp_rows + 1] = compare(("primes to %d in %d parts, s"):format(LIMIT, NCMP), per(1, 1, 3),
    function() cpu_map(concur.ThreadPool) end, function() cpu_map(concur.ProcessPool) end)
end)
lesson.table({ "2 workers", "threads", "processes", "processes / threads" }, cmp_rows)
lesson.load_note(cpu_others)
print("A process costs more to start than a thread (a new OS process). Values are copied by the")
print("same codec to both, then reach a process through a socket; CPU-bound work runs alike on both.")

-- What only processes give: a crash, os.exit or runaway memory ends one
-- worker, not the program; the pool replaces it and goes on. (In a thread,
-- os.exit would end this whole program.)
local guarded <close> = concur.ProcessPool{ workers = 1, memory_limit = 64 * 1024 * 1024 }
local exit_err = guarded:submit(function() os.exit(3) end):error()
print(("a ProcessPool task calls os.exit(3): kind %q (%s)"):format(exit_err.kind, exit_err.message))
local mem_err = guarded:submit(function()
  local t = {}
  for i = 1, 1e9 do t[i] = ("x"):rep(100) .. i end
  return #t
end):error()
print(("a task over memory_limit = 64 MB: kind %q"):format(mem_err.kind))
print(("the pool goes on: the next task returns %s"):format(
  guarded:submit(function() return "ok from " .. concur.thread_name() end):result()))
lesson.table({ "", "threads (spawn, ThreadPool)", "processes (Process, ProcessPool)" }, {
  { "Lua code in parallel", "yes (no GIL)", "yes" },
  { "memory", "a state each, in one process", "an OS process each" },
  { "shared objects", "Queue, Lock, Value, ...", "the same, by reference" },
  { "a crash or os.exit", "ends the program", "fails one task (\"broken\")" },
  { "memory_limit", "no", "per worker" },
})
print("Use threads by default; use processes for isolation: code that may crash or run away,")
print("C libraries that are not thread-safe, or a memory cap per task.")
