-- ThreadPool against Python's ThreadPoolExecutor and luv's work queue, all
-- on 2 workers, measured in this run on this machine.
local concur = require "concur"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local benchlib = require "benchlib"
local sh = benchlib.sh

local N = tonumber(os.getenv("BENCH_N")) or 100000
local WORKERS = 2



local la = benchlib.loadavg()   -- before this benchmark adds its own load

-- concur --------------------------------------------------------------------
local pool <close> = concur.ThreadPool(WORKERS)
local function noop(x) return x end

local submit_s = benchlib.submit_time(pool, noop, N)
local map_s = benchlib.map_time(pool, noop, N)

local LIMIT = tonumber(os.getenv("BENCH_PRIMES")) or 2000000
local function cpu(workers) return benchlib.cpu_time(concur.ThreadPool, workers, LIMIT, 8) end
local cpu1, cpu2 = cpu(1), cpu(2)

-- Python ----------------------------------------------------------------------
local py = sh(([[python3 - <<'PY'
import time
from concurrent.futures import ThreadPoolExecutor
N = %d
def noop(x): return x
def best(k, fn): return min(fn() for _ in range(k))
with ThreadPoolExecutor(2) as ex:
    def sub():
        t0 = time.perf_counter(); fs = [ex.submit(noop, i) for i in range(N)]
        for f in fs: f.result()
        return time.perf_counter() - t0
    def mp():
        t0 = time.perf_counter(); list(ex.map(noop, range(N))); return time.perf_counter() - t0
    print("submit", best(3, sub)); print("map", best(3, mp))
def count_primes(hi, part, parts):
    c = 0
    for block in range((part - 1) * 1000, hi + 1, 1000 * parts):
        for n in range(max(block, 2), min(block + 999, hi) + 1):
            p = True
            d = 2
            while d * d <= n:
                if n %% d == 0: p = False; break
                d += 1
            if p: c += 1
    return c
LIMIT = %d // 4
chunks = [(LIMIT, k, 8) for k in range(1, 9)]
for w in (1, 2):
    with ThreadPoolExecutor(w) as ex:
        t0 = time.perf_counter(); sum(ex.map(lambda c: count_primes(*c), chunks))
        print("cpu%%d" %% w, time.perf_counter() - t0)
PY]]):format(N, LIMIT))
local pyv = {}
for k, v in py:gmatch("(%w+) ([%d%.e%-]+)") do pyv[k] = tonumber(v) end

-- luv's work queue ------------------------------------------------------------
local luv = sh(([[UV_THREADPOOL_SIZE=2 lua5.4 - <<'LUA' 2>/dev/null
local ok, uv = pcall(require, "luv")
if not ok then print("none") return end
local N = %d
local done = 0
local work = uv.new_work(function(x) return x end, function() done = done + 1 end)
local t0 = uv.hrtime()
for i = 1, N do work:queue(i) end
uv.run()
assert(done == N)
print("submit", (uv.hrtime() - t0) / 1e9)
LUA]]):format(N))
local luvs = tonumber(luv:match("submit%s+([%d%.e%-]+)"))

-- report ------------------------------------------------------------------------
local function rate(s) return s and N / s end
local function fmt(x) return x and ("%12.0f"):format(x) or "         n/a" end
local function ratio(a, b) return (a and b) and ("%8.2fx"):format(a / b) or "      n/a" end
print(("ThreadPool, %d workers, %d tasks, %d CPUs"):format(WORKERS, N, concur.cpu_count()))
if la and la > 0.5 then
  print(("note: load average %.2f: other work shares the CPUs, so speed-ups are understated"):format(la))
end
print(("%-34s %12s %12s %12s %9s %9s"):format("", "concur", "Python", "luv", "vs Py", "vs luv"))
print(("%-34s %s %s %s %s %s"):format("submit+result (tasks/s)", fmt(rate(submit_s)),
  fmt(rate(pyv.submit)), fmt(rate(luvs)), ratio(rate(submit_s), rate(pyv.submit)),
  ratio(rate(submit_s), rate(luvs))))
print(("%-34s %s %s %12s %s"):format("map (items/s)", fmt(rate(map_s)), fmt(rate(pyv.map)),
  "", ratio(rate(map_s), rate(pyv.map))))
print(("%-34s %12.2fx %11.2fx"):format("CPU-bound speed-up, 1 -> 2 workers", cpu1 / cpu2,
  (pyv.cpu1 and pyv.cpu2) and pyv.cpu1 / pyv.cpu2 or 0/0))
print(("(primes to %d in 8 tasks of equal cost, every 8th block of 1000 numbers each, so the"
  .. " work balances; concur %.2f s on 1 worker, %.2f s on 2; Python: primes to %d)")
  :format(LIMIT, cpu1, cpu2, LIMIT // 4))
