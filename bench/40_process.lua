-- ProcessPool against Python's multiprocessing.Pool and ProcessPoolExecutor,
-- all on 2 worker processes, measured in this run on this machine.
local concur = require "concur"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local benchlib = require "benchlib"
local best, sh = benchlib.best, benchlib.sh
local now = concur.monotonic

local N = tonumber(os.getenv("BENCH_N")) or 20000
local RT = tonumber(os.getenv("BENCH_RT")) or 5000
local WORKERS = 2



-- concur --------------------------------------------------------------------
local pool <close> = concur.ProcessPool(WORKERS)
local function noop(x) return x end
pool:map(noop, { 1, 2, 3, 4 })   -- warm: workers started, function loaded

local rt_s = best(3, function()
  local t0 = now()
  for i = 1, RT do pool:submit(noop, i):result() end
  return (now() - t0) / RT
end)

local submit_s = benchlib.submit_time(pool, noop, N)
local map_s = benchlib.map_time(pool, noop, N)

local LIMIT = tonumber(os.getenv("BENCH_PRIMES")) or 2000000
local CHUNKS = 8    -- of equal cost (benchlib.cpu_time), so the work balances on 2 workers
local function cpu(workers)
  return benchlib.cpu_time(concur.ProcessPool, workers, LIMIT, CHUNKS)
end
local cpu1, cpu2 = cpu(1), cpu(2)

-- Python ----------------------------------------------------------------------
local py = sh(([[python3 - <<'PY' 2>&1
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import Pool
N, RT, LIMIT, CHUNKS = %d, %d, %d // 4, %d
def noop(x): return x
def best(k, fn): return min(fn() for _ in range(k))
def count_primes(c):
    hi, part, parts = c
    n_ = 0
    for block in range((part - 1) * 1000, hi + 1, 1000 * parts):
        for n in range(max(block, 2), min(block + 999, hi) + 1):
            p = True
            d = 2
            while d * d <= n:
                if n %% d == 0: p = False; break
                d += 1
            if p: n_ += 1
    return n_
chunks = [(LIMIT, k, CHUNKS) for k in range(1, CHUNKS + 1)]
if __name__ == "__main__":
    with ProcessPoolExecutor(2) as ex:
        list(ex.map(noop, range(4)))
        def rt():
            t0 = time.perf_counter()
            for i in range(RT): ex.submit(noop, i).result()
            return (time.perf_counter() - t0) / RT
        def sub():
            t0 = time.perf_counter(); fs = [ex.submit(noop, i) for i in range(N)]
            for f in fs: f.result()
            return time.perf_counter() - t0
        def mp():
            t0 = time.perf_counter(); list(ex.map(noop, range(N))); return time.perf_counter() - t0
        print("ppe_rt", best(3, rt)); print("ppe_submit", best(3, sub)); print("ppe_map", best(3, mp))
    with Pool(2) as pool:
        pool.map(noop, range(4))
        def rt():
            t0 = time.perf_counter()
            for i in range(RT): pool.apply_async(noop, (i,)).get()
            return (time.perf_counter() - t0) / RT
        def sub():
            t0 = time.perf_counter(); fs = [pool.apply_async(noop, (i,)) for i in range(N)]
            for f in fs: f.get()
            return time.perf_counter() - t0
        def mp():
            t0 = time.perf_counter(); pool.map(noop, range(N)); return time.perf_counter() - t0
        print("mp_rt", best(3, rt)); print("mp_submit", best(3, sub)); print("mp_map", best(3, mp))
    for w in (1, 2):
        with Pool(w) as pool:
            t0 = time.perf_counter(); sum(pool.map(count_primes, chunks, chunksize=1))
            print("cpu%%d" %% w, time.perf_counter() - t0)
PY]]):format(N, RT, LIMIT, CHUNKS))
local pyv = {}
for k, v in py:gmatch("([%w_]+) ([%d%.e%-]+)") do pyv[k] = tonumber(v) end

-- report ------------------------------------------------------------------------
local function rate(s) return s and N / s end
local function fmt(x) return x and ("%12.0f"):format(x) or "         n/a" end
local function us(x) return x and ("%12.1f"):format(x * 1e6) or "         n/a" end
local function ratio(a, b) return (a and b) and ("%8.2fx"):format(a / b) or "      n/a" end
print(("ProcessPool, %d workers, %d tasks, %d CPUs (load average %.2f: other processes"
  .. " share the CPUs, which caps the speed-ups)"):format(WORKERS, N, concur.cpu_count(), benchlib.loadavg()))
print(("%-34s %12s %12s %12s %9s %9s"):format("", "concur", "mp.Pool", "PPExecutor",
  "vs Pool", "vs PPE"))
print(("%-34s %s %s %s %s %s"):format("round trip of one task (us)", us(rt_s),
  us(pyv.mp_rt), us(pyv.ppe_rt), ratio(pyv.mp_rt, rt_s), ratio(pyv.ppe_rt, rt_s)))
print(("%-34s %s %s %s %s %s"):format("submit+result (tasks/s)", fmt(rate(submit_s)),
  fmt(rate(pyv.mp_submit)), fmt(rate(pyv.ppe_submit)),
  ratio(rate(submit_s), rate(pyv.mp_submit)), ratio(rate(submit_s), rate(pyv.ppe_submit))))
print(("%-34s %s %s %s %s %s"):format("map, default chunks (items/s)", fmt(rate(map_s)),
  fmt(rate(pyv.mp_map)), fmt(rate(pyv.ppe_map)),
  ratio(rate(map_s), rate(pyv.mp_map)), ratio(rate(map_s), rate(pyv.ppe_map))))
print(("%-34s %11.2fx %11.2fx"):format("CPU-bound speed-up, 1 -> 2 workers", cpu1 / cpu2,
  (pyv.cpu1 and pyv.cpu2) and pyv.cpu1 / pyv.cpu2 or 0/0))
print(("(primes to %d in %d tasks of equal cost, every %dth block of 1000 numbers each, so the"
  .. " work balances; concur %.2f s on 1 worker, %.2f s on 2; Python's multiprocessing.Pool:"
  .. " primes to %d)"):format(LIMIT, CHUNKS, CHUNKS, cpu1, cpu2, LIMIT // 4))
