--- bench/60_bigint.lua: concur.bigint next to Python's int, measured in one run.
--
--   bin/lua bench/60_bigint.lua [quick]
--
-- Rows: factorial of 10^5 and 10^6 (one thread, and split over two),
-- against math.factorial; decimal text of 10^5! against str(); the batch
-- "factorials of 1..5000 with their digit counts" sequentially, on a
-- 2-worker ThreadPool and (when concur has it) a 2-worker ProcessPool,
-- against Python doing the same sequentially and on multiprocessing.Pool(2).
-- Then, concur alone: 10^7! on one and two threads, and the decimal text of
-- 10^6!. Each figure is the best of a few runs; "vs Python" is Python's time
-- over concur's (higher is better for concur).
local concur = require "concur"
local bigint = require "concur.bigint"

local QUICK = arg and arg[1] == "quick"
local RUNS = QUICK and 1 or 3
local BATCH = 5000

local now = concur.monotonic

-- best wall time of RUNS calls of fn
local function best (fn, runs)
  local b = math.huge
  for _ = 1, runs or RUNS do
    local t0 = now()
    fn()
    b = math.min(b, now() - t0)
  end
  return b
end

-- Python's figures, from one python3 process: "name seconds" lines.
local PY = [[
import math, sys, time
from multiprocessing import Pool
sys.set_int_max_str_digits(0)
runs, batch = int(sys.argv[1]), int(sys.argv[2])
def best(f, r=runs):
    b = float("inf")
    for _ in range(r):
        t0 = time.perf_counter(); f(); b = min(b, time.perf_counter() - t0)
    return b
def digits(n):
    return len(str(math.factorial(n)))
if __name__ == "__main__":
    print("fac5", best(lambda: math.factorial(10**5)))
    print("fac6", best(lambda: math.factorial(10**6), 1))
    f5 = math.factorial(10**5)
    print("str5", best(lambda: str(f5)))
    print("batch_seq", best(lambda: [digits(n) for n in range(1, batch + 1)]))
    with Pool(2) as pool:
        pool.map(digits, range(1, 50))
        print("batch_pool", best(lambda: pool.map(digits, range(1, batch + 1), chunksize=25)))
    sys.stdout.flush()
]]

local function python ()
  local f = io.open("/tmp/concur_bench_bigint.py", "w")
  if not f then return {} end
  f:write(PY)
  f:close()
  local p = io.popen(("python3 /tmp/concur_bench_bigint.py %d %d 2>/dev/null")
                     :format(RUNS, BATCH))
  local out = p and p:read("a") or ""
  if p then p:close() end
  os.remove("/tmp/concur_bench_bigint.py")
  local r = {}
  for k, v in out:gmatch("(%S+) (%S+)") do r[k] = tonumber(v) end
  return r
end

-- the batch task: n! and its exact digit count
local function digits (n)
  return require("concur.bigint").factorial(n):digits()
end

local function batch_items ()
  local t = {}
  for n = 1, BATCH do t[n] = n end
  return t
end

local function check_batch (res)
  assert(#res == BATCH and res[1000] == 2568 and res[BATCH] == 16326, "wrong batch")
end

-- other threads running or ready to run now (Linux), to flag a busy machine:
-- the split paths use only CPUs that are idle, and pools share the CPUs
local function others_running ()
  local f = io.open("/proc/stat")
  if not f then return 0 end
  local n = tonumber(f:read("a"):match("procs_running (%d+)")) or 1
  f:close()
  return n - 1
end

local rows = {}
local function row (name, t, py, note)
  rows[#rows + 1] = { name, t, py, note }
end

local busy_at_start = others_running()
io.stderr:write("measuring Python ...\n")
local py = python()
io.stderr:write("measuring concur ...\n")

local t1 = best(function () bigint.factorial(10^5) end)
local t2 = best(function () bigint.factorial(10^5, { threads = 2 }) end)
row("factorial(10^5)", t1, py.fac5, "1 thread")
row("factorial(10^5)", t2, py.fac5, "threads = 2")
t1 = best(function () bigint.factorial(10^6) end)
t2 = best(function () bigint.factorial(10^6, { threads = 2 }) end)
row("factorial(10^6)", t1, py.fac6, "1 thread")
row("factorial(10^6)", t2, py.fac6, "threads = 2")

local f5 = bigint.factorial(10^5)
row("tostring(10^5!)", best(function () tostring(f5) end), py.str5, "456,574 digits")

local items = batch_items()
local seq = best(function ()
  local res = {}
  for i = 1, BATCH do res[i] = digits(i) end
  check_batch(res)
end)
row("batch 1..5000: n!, digits", seq, py.batch_seq, "sequential")
do
  local pool <close> = concur.ThreadPool(2)
  pool:map(digits, { 1, 2, 3, 4 })   -- workers started and warm
  local t = best(function () check_batch(pool:map(digits, items, { chunksize = 25 })) end)
  row("batch 1..5000: n!, digits", t, py.batch_pool,
      ("ThreadPool(2), %.2fx sequential"):format(seq / t))
end
do
  local pool <close> = concur.ProcessPool{ workers = 2 }
  pool:map(digits, { 1, 2, 3, 4 })
  local t = best(function () check_batch(pool:map(digits, items, { chunksize = 25 })) end)
  row("batch 1..5000: n!, digits", t, py.batch_pool,
      ("ProcessPool(2), %.2fx sequential"):format(seq / t))
end

if not QUICK then
  t1 = best(function () bigint.factorial(10^7) end, 1)
  t2 = best(function () bigint.factorial(10^7, { threads = 2 }) end, 1)
  row("factorial(10^7)", t1, nil, "1 thread")
  row("factorial(10^7)", t2, nil, ("threads = 2, %.2fx 1 thread"):format(t1 / t2))
  local f6 = bigint.factorial(10^6)
  row("tostring(10^6!)", best(function () tostring(f6) end), nil,
      "5,565,709 digits, on the idle CPUs")
end

local function fmt (t) return t and ("%10.4f s"):format(t) or ("%12s"):format("-") end
print(("concur.bigint vs Python %s, %d CPUs, best of %d")
      :format(py.fac5 and "(python3)" or "(python3 missing)", concur.cpu_count(), RUNS))
print(("%-28s %12s %12s %10s  %s"):format("", "concur", "Python", "vs Python", ""))
local busy = math.max(busy_at_start, others_running())
if busy > 0 then
  print(("note: %d other thread(s) were running: the multi-threaded rows "
         .. "are held back"):format(busy))
end
for _, r in ipairs(rows) do
  local name, t, p, note = r[1], r[2], r[3], r[4]
  local ratio = (t and p) and ("%9.1fx"):format(p / t) or ("%10s"):format("-")
  print(("%-28s %s %s %s  %s"):format(name, fmt(t), fmt(p), ratio, note or ""))
end
