--- Lesson 4: executors.
--
-- ThreadPool with map and submit, ProcessPool,
-- errors from tasks, timeouts, the executors compared (also with
-- asyncio-style coroutine tasks), and a real batch job: a day of web server
-- logs analysed file by file.
--
--     bin/lua examples/04_executors.lua      (CONCUR_QUICK=1: small sizes)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/lib/?.lua;" .. package.path

local concur = require "concur"
local lesson = require "lesson"

local size, secs, ratio = lesson.size, lesson.secs, lesson.ratio
local count_primes = lesson.count_primes
local Error = concur.Error

lesson.title("Lesson 4: executors")

---------------------------------------------------------------------------
lesson.section("ThreadPool: map and submit")
---------------------------------------------------------------------------
local pool <close> = concur.ThreadPool{ workers = math.max(2, concur.cpu_count()), name = "pool" }
-- map: a function over an array, results in order (like Python's map).
local limits = { 10000, 20000, 30000, 40000, 50000 }
local counts = pool:map(function(n) return count_primes(n) end, limits)
for i, n in ipairs(limits) do
  print(("  primes up to %6d: %d"):format(n, counts[i]))
end
-- submit: one call, one Future; collect results as they complete.
local futures = {}
for i, wait in ipairs { 0.2, 0.05, 0.1 } do
  futures[i] = pool:submit(function(k, w)
    concur.sleep(w)
    return ("task %d slept %.2f s on %s"):format(k, w, concur.thread_name())
  end, i, wait)
end
for f in concur.as_completed(futures) do print("  as completed: " .. f:result()) end
-- imap: lazy and in order; imap_unordered: in completion order. Both take
-- a progress callback.
local got = {}
for i, v in pool:imap_unordered(function(x) concur.sleep(0.01 * (6 - x)); return x * 10 end,
    { 1, 2, 3, 4, 5 }, { chunksize = 1 }) do
  got[#got + 1] = ("%d->%d"):format(i, v)
end
print("  imap_unordered (index->result, in completion order): " .. table.concat(got, " "))
-- on_done: a callback that runs in this state once the future is done.
local f = pool:submit(function() return 6 * 7 end)
f:on_done(function(done) print("  on_done callback: the answer is " .. done:result()) end)
concur.wait({ f })

---------------------------------------------------------------------------
lesson.section("ProcessPool")
---------------------------------------------------------------------------
do
  local ppool <close> = concur.ProcessPool{ workers = 2 }
  local pids = ppool:map(function() return concur.thread_name() end, { 1, 2, 3, 4 })
  print("  ProcessPool workers ran: " .. table.concat(pids, ", "))
  local r = ppool:submit(function(n) return count_primes(n) end, 50000):result()
  print(("  ProcessPool:submit: primes up to 50000: %d"):format(r))
end

---------------------------------------------------------------------------
lesson.section("Errors from tasks")
---------------------------------------------------------------------------
-- A failing task fails its future: error() returns the error object,
-- result() raises it. Its kind is "task"; value is what the task raised;
-- traceback is the worker's.
local bad = pool:submit(function(x) return 10 // x end, 0)
local err = bad:error()
print(("  10 // 0 in a task: kind %q, message %q"):format(err.kind, err.message))
print("  worker traceback, first lines:")
for line in (err.traceback or ""):gmatch("[^\n]+") do
  print("    " .. line)
  if line:match("in function <") then break end
end
local ok, raised = pcall(bad.result, bad)
print(("  result() raised: %s, concur.Error.is(err, \"task\") = %s"):format(
  tostring(not ok), tostring(Error.is(raised, "task"))))
-- Any value can be raised; it arrives as err.value.
local tagged = pool:submit(function() error({ code = 404, what = "no such page" }) end):error()
print(("  error({...}) in a task: err.value.code = %d, err.value.what = %q"):format(
  tagged.value.code, tagged.value.what))
-- map raises the first failure, saying which item it was; the other items
-- are not lost, just not returned.
local okm, merr = pcall(pool.map, pool, function(x)
  if x == 3 then error("item 3 is bad", 0) end
  return x
end, { 1, 2, 3, 4 })
print(("  map over 1..4 with a bad item 3: ok=%s, %q (err.index = %d)"):format(tostring(okm),
  merr.message, merr.index))
-- To keep going past failures, errors = "return" puts each failed item's
-- error object in its place: one call for the whole batch.
local squares = pool:map(function(x)
  if x == 3 then error("item 3 is bad", 0) end
  return x * x
end, { 1, 2, 3, 4 }, { errors = "return" })
for i, r in ipairs(squares) do
  print(("    item %d: %s"):format(i, concur.Error.is(r) and ("failed: " .. r.message) or ("ok: " .. r)))
end

---------------------------------------------------------------------------
lesson.section("Timeouts")
---------------------------------------------------------------------------
-- result(timeout) stops waiting, not the task.
local slow = pool:submit(function() concur.sleep(0.3); return "finished anyway" end)
local okt, terr = pcall(slow.result, slow, 0.05)
print(("  result(0.05) on a 0.3 s task: ok=%s, kind %q; the task %s"):format(
  tostring(okt), terr.kind, slow:result()))
-- A task deadline stops the task itself, even a busy loop.
local t0 = concur.monotonic()
local runaway = pool:submit{ function() while true do end end, timeout = 0.2 }
local rerr = runaway:error()
print(("  submit{fn, timeout = 0.2} on an endless loop: kind %q after %.2f s (%s)"):format(
  rerr.kind, concur.monotonic() - t0, rerr.message))
-- wait with a timeout: what is done and what is still pending; cancel the rest.
local batch = {}
for i = 1, 6 do
  batch[i] = pool:submit(function(k) concur.sleep(0.05 * k); return k end, i)
end
local done, pending = concur.wait(batch, { timeout = 0.12 })
local cancelled = 0
for _, p in ipairs(pending) do
  if p:cancel() then cancelled = cancelled + 1 end
end
print(("  wait(timeout = 0.12) on tasks of 0.05..0.30 s: %d done, %d pending, %d cancelled"):format(
  #done, #pending, cancelled))
-- map with a timeout for the whole call.
local okmap, maperr = pcall(pool.map, pool, function(s) concur.sleep(s); return s end,
  { 0.01, 0.3, 0.01 }, { timeout = 0.1, chunksize = 1 })
print(("  map{timeout = 0.1} with a 0.3 s item: ok=%s, kind %q"):format(
  tostring(okmap), maperr.kind))

---------------------------------------------------------------------------
lesson.section("The executors compared")
---------------------------------------------------------------------------
-- The same work on: a plain loop, ThreadPools of 1, 2 and 8 workers.
local NCPU, CPUN = 8, size(800000, 120000)
local NIO, IOWAIT = size(32, 16), size(0.05, 0.02)
local function cpu_item(i) return count_primes(CPUN, i, NCPU) end
local function io_item() concur.sleep(IOWAIT); return true end
local function items(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end
local function on_pool(workers, fn, n)
  local p <close> = concur.ThreadPool(workers)
  return p:map(fn, items(n), { chunksize = 1 })
end
local rows, base_cpu, base_io = {}, nil, nil
local function row(label, run_cpu, run_io)
  local c = lesson.time(run_cpu)
  local o = lesson.time(run_io)
  base_cpu, base_io = base_cpu or c, base_io or o
  rows[#rows + 1] = { label, secs(c), ratio(base_cpu, c), secs(o), ratio(base_io, o) }
end
local _, _, others = lesson.measure_processes(function()   -- its pools close inside
  row("plain loop", function() for i = 1, NCPU do cpu_item(i) end end,
    function() for i = 1, NIO do io_item(i) end end)
  for _, w in ipairs { 1, 2, 8 } do
    row(("ThreadPool(%d)"):format(w), function() on_pool(w, cpu_item, NCPU) end,
      function() on_pool(w, io_item, NIO) end)
  end
  row("ProcessPool(2)", function()
    local p <close> = concur.ProcessPool{ workers = 2 }
    p:map(cpu_item, items(NCPU), { chunksize = 1 })
  end, function()
    local p <close> = concur.ProcessPool{ workers = 2 }
    p:map(io_item, items(NIO), { chunksize = 1 })
  end)
end)
lesson.table({ "executor", ("CPU: primes to %d"):format(CPUN), "speed-up",
  ("I/O: %d x %.2f s"):format(NIO, IOWAIT), "speed-up" }, rows)
print(("  CPU-bound work stops gaining at the %d CPUs; I/O-bound work gains with every worker.")
  :format(concur.cpu_count()))
lesson.load_note(others)

---------------------------------------------------------------------------
lesson.section("Executors compared with asyncio-style tasks")
---------------------------------------------------------------------------
-- concur.run, concur.async and concur.await run coroutine tasks on ONE
-- thread, as Python's asyncio does. A task runs until it waits; concur's
-- waits (sleep, await, a future's result, a Queue) then suspend only that
-- task, and the others run. Waiting costs no thread, so a thousand waits
-- are as quick as one; but a task computing holds the thread, so CPU-bound
-- work still goes to a pool, whose futures a task awaits.
local NWAIT, WAIT = size(400, 100), 0.01
local trows = {}
local function trow(work, how, fn)
  trows[#trows + 1] = { work, how, secs(lesson.time(fn)) }
end
trow(("I/O: %d waits of %.2f s"):format(NWAIT, WAIT), "ThreadPool(8), map", function()
  local p <close> = concur.ThreadPool(8)
  p:map(function() concur.sleep(WAIT) end, items(NWAIT), { chunksize = 1 })
end)
trow("", ("%d tasks on 1 thread"):format(NWAIT), function()
  concur.run(function()
    for _ = 1, NWAIT do concur.async(concur.sleep, WAIT) end
  end)
end)
trow(("CPU: %d chunks of primes"):format(NCPU), "plain loop", function()
  for i = 1, NCPU do cpu_item(i) end
end)
trow("", "tasks awaiting ThreadPool(2)", function()
  local p <close> = concur.ThreadPool(2)
  concur.run(function()
    local ts = {}
    for i = 1, NCPU do
      ts[i] = concur.async(function() return concur.await(p:submit(cpu_item, i)) end)
    end
    for i = 1, NCPU do concur.await(ts[i]) end
  end)
end)
lesson.table({ "work", "executor", "time" }, trows)
print("  tasks: many waits on one thread; pools: work on every CPU; a task awaits a pool's future.")

---------------------------------------------------------------------------
lesson.section("A real batch job: analysing web server logs")
---------------------------------------------------------------------------
-- One task per log file: the pool first writes the files (a day of access
-- logs, one per hour, made up from a fixed seed), then parses them: status
-- codes, bytes, the busiest pages and the response-time percentiles. The
-- main state merges the per-file summaries as they complete.
local NFILES, NLINES = size(24, 8), size(6000, 1500)
local dir = os.tmpname()
os.remove(dir)
assert(os.execute(("mkdir -p %q"):format(dir)))
local paths = {}
for h = 1, NFILES do paths[h] = ("%s/access-%02d.log"):format(dir, h - 1) end

local function write_log(path, hour, nlines)
  local pages = { "/", "/about", "/blog", "/blog/lua-threads", "/blog/gil", "/docs",
    "/docs/api", "/docs/queue", "/download", "/search?q=lua", "/login", "/static/app.js" }
  local statuses = { 200, 200, 200, 200, 200, 200, 200, 304, 404, 500 }
  local seed = hour * 7919 + 1
  local function rand(n)                       -- a small LCG: same logs every run
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n + 1
  end
  local fh = assert(io.open(path, "w"))
  for i = 1, nlines do
    local ip = ("10.0.%d.%d"):format(rand(255) - 1, rand(255) - 1)
    local page = pages[rand(#pages) // rand(2)] or pages[1]
    fh:write(('%s - - [24/Nov/2026:%02d:%02d:%02d +0000] "GET %s HTTP/1.1" %d %d %.3f\n'):format(
      ip, hour, (i * 60) // nlines, i % 60, page, statuses[rand(#statuses)],
      rand(50000) + 200, rand(900) / 1000))
  end
  fh:close()
  return nlines
end

local function analyse(path)
  local s = { lines = 0, bytes = 0, status = {}, pages = {}, times = {} }
  for line in io.lines(path) do
    local page, status, bytes, t = line:match('"GET (%S+) [^"]*" (%d+) (%d+) ([%d.]+)$')
    if page then
      s.lines = s.lines + 1
      s.bytes = s.bytes + tonumber(bytes)
      s.status[status] = (s.status[status] or 0) + 1
      s.pages[page] = (s.pages[page] or 0) + 1
      s.times[#s.times + 1] = tonumber(t)
    end
  end
  table.sort(s.times)
  local n = #s.times
  s.p50, s.p95, s.worst = s.times[(n + 1) // 2], s.times[math.ceil(n * 0.95)], s.times[n]
  s.times = nil                                -- summaries only travel back
  return s
end

local gen_time = lesson.time(function()
  local writes = {}
  for h, path in ipairs(paths) do writes[h] = pool:submit(write_log, path, h - 1, NLINES) end
  concur.wait(writes)
  for _, fu in ipairs(writes) do fu:result() end   -- raises if a file could not be written
end)
print(("  the pool wrote %d log files of %d lines in %s"):format(NFILES, NLINES, secs(gen_time)))

local seq_time, _, others_seq, seq = lesson.measure(function()
  local out = {}
  for i, path in ipairs(paths) do out[i] = analyse(path) end
  return out
end)
local marks, next_mark = {}, 0
local pool_time, _, others_pool, results = lesson.measure(function()
  local out = {}
  for i, r in pool:imap_unordered(analyse, paths, {
      chunksize = 1,
      progress = function(n, total)
        if n >= next_mark or n == total then
          marks[#marks + 1] = n .. "/" .. total
          next_mark = n + math.max(1, total // 4)
        end
      end }) do
    out[i] = r
  end
  return out
end)
print("  progress of the pool run: " .. table.concat(marks, " "))

local total = { lines = 0, bytes = 0, status = {}, pages = {} }
local same, p95 = true, 0
for i, r in ipairs(results) do
  same = same and r.lines == seq[i].lines and r.bytes == seq[i].bytes
  total.lines, total.bytes = total.lines + r.lines, total.bytes + r.bytes
  for k, v in pairs(r.status) do total.status[k] = (total.status[k] or 0) + v end
  for k, v in pairs(r.pages) do total.pages[k] = (total.pages[k] or 0) + v end
  p95 = math.max(p95, r.p95)
end
local pages = {}
for page, hits in pairs(total.pages) do pages[#pages + 1] = { page, hits } end
table.sort(pages, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
local top = {}
for i = 1, math.min(5, #pages) do
  top[i] = { pages[i][1], pages[i][2], ("%.1f%%"):format(100 * pages[i][2] / total.lines) }
end
lesson.table({ "busiest pages", "hits", "share" }, top)
local codes = {}
for code, n in pairs(total.status) do codes[#codes + 1] = code .. ": " .. n end
table.sort(codes)
print(("  %d requests, %.1f MB sent; status %s; worst hourly p95 %.3f s"):format(
  total.lines, total.bytes / 1e6, table.concat(codes, ", "), p95))
print("  the pool and the plain loop agree on every file: " .. tostring(same))
lesson.table({ ("analyse %d files"):format(NFILES), "time", "speed-up" }, {
  { "plain loop", secs(seq_time), ratio(seq_time, seq_time) },
  { ("ThreadPool(%d), imap_unordered"):format(pool:workers()), secs(pool_time),
    ratio(seq_time, pool_time) },
})
lesson.load_note(others_seq and others_pool and math.max(others_seq, others_pool))
for _, path in ipairs(paths) do os.remove(path) end
os.remove(dir)
local st = pool:stats()
print(("  pool stats: %d workers, %d completed, %d failed, %d cancelled"):format(
  st.workers, st.completed, st.failed, st.cancelled))
