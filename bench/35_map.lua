--- bench/35_map.lua: concur.Map against Python's Manager().dict() and a
-- plain Lua table behind a concur Lock, measured in one run.
--
--   bin/lua bench/35_map.lua [iterations per worker]
--
-- The work: each iteration does three operations on a map of 1,000 string
-- keys: set(k, i), get(k), incr("hits") (Python: d[k] = i, d[k], and
-- d["hits"] = d["hits"] + 1, two round trips and not atomic: it favours
-- Python). Rows, in operations per second (best of three):
--   Map, 2 threads        two concur.spawn threads on one Map
--   Map, 1 thread         the same from the main thread alone
--   Map, 2 processes      two concur.Process on one Map (shared memory)
--   table + Lock          one thread, a Lua table, lock:acquire/release
--                         around each operation (a table cannot be shared
--                         between threads: this is the single-state cost)
--   Manager().dict()      two multiprocessing.Process on one Manager dict
local concur = require "concur"

local N = tonumber(arg and arg[1]) or tonumber(os.getenv("BENCH_N")) or 200000
local PYN = math.max(1000, N // 20)   -- Python is far slower: fewer iterations
local KEYS = 1000
local RUNS = 3

local keys = {}
for i = 1, KEYS do keys[i] = "key" .. i end

-- The loop every concur worker runs: n iterations, three operations each.
local function work(m, ks, n, nkeys)
  for i = 1, n do
    local k = ks[i % nkeys + 1]
    m:set(k, i)
    m:get(k)
    m:incr("hits")
  end
end

local function best(fn)
  local b = 0
  for _ = 1, RUNS do b = math.max(b, fn()) end
  return b
end

-- Ops/s of 'workers' started by start(fn, ...) (spawn or Process) on one
-- Map, all released at once by an Event.
local function map_rate(start, workers)
  return best(function()
    local m = concur.Map()
    local go = concur.Event()
    local ws = {}
    for w = 1, workers do
      ws[w] = start(function(mm, ks, n, nk, ev, fn)
        ev:wait()
        fn(mm, ks, n, nk)
      end, m, keys, N, KEYS, go, work)
    end
    local t0 = concur.monotonic()
    go:set()
    for w = 1, workers do assert(ws[w]:join()) end
    local dt = concur.monotonic() - t0
    assert(m:get("hits") == N * workers, "an incr was lost")
    return 3 * N * workers / dt
  end)
end

local function map_rate_main()
  return best(function()
    local m = concur.Map()
    local t0 = concur.monotonic()
    work(m, keys, N, KEYS)
    local dt = concur.monotonic() - t0
    assert(m:get("hits") == N)
    return 3 * N / dt
  end)
end

local function table_rate()
  return best(function()
    local t, lock = {}, concur.Lock()
    local t0 = concur.monotonic()
    for i = 1, N do
      local k = keys[i % KEYS + 1]
      lock:acquire() t[k] = i lock:release()
      lock:acquire() local _ = t[k] lock:release()
      lock:acquire() t.hits = (t.hits or 0) + 1 lock:release()
    end
    local dt = concur.monotonic() - t0
    assert(t.hits == N)
    return 3 * N / dt
  end)
end

local PY = [[
import multiprocessing as mp, time, sys
N, KEYS, RUNS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
keys = ["key%d" % i for i in range(1, KEYS + 1)]
def work(d, ev):
    ev.wait()
    for i in range(N):
        k = keys[i % KEYS]
        d[k] = i
        d[k]
        d["hits"] = d["hits"] + 1
def rate(mgr):
    d, ev = mgr.dict(), mgr.Event()
    d["hits"] = 0
    ps = [mp.Process(target=work, args=(d, ev)) for _ in range(2)]
    for p in ps: p.start()
    t0 = time.perf_counter()
    ev.set()
    for p in ps: p.join()
    return 3 * N * 2 / (time.perf_counter() - t0)
if __name__ == "__main__":
    with mp.Manager() as mgr:
        print(max(rate(mgr) for _ in range(RUNS)))
]]

local function python_rate()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(PY)
  f:close()
  local p = io.popen(("python3 %s %d %d %d 2>/dev/null"):format(path, PYN, KEYS, RUNS))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return tonumber(out:match("^%s*([%d.e+]+)"))
end

local function fmt(x)
  if not x then return "n/a" end
  if x >= 1e6 then return ("%.2fM"):format(x / 1e6) end
  return ("%.0fk"):format(x / 1e3)
end

local m2 = map_rate(concur.spawn, 2)
local m1 = map_rate_main()
local mp2 = map_rate(concur.Process, 2)
local tl = table_rate()
local py = python_rate()

print(("concur.Map, %d iterations x 3 operations per worker (%d keys); Python %d per worker")
  :format(N, KEYS, PYN))
print(("%-34s %12s"):format("", "ops/s"))
print(("%-34s %12s"):format("Map, 2 threads", fmt(m2)))
print(("%-34s %12s"):format("Map, 1 thread", fmt(m1)))
print(("%-34s %12s"):format("Map, 2 processes", fmt(mp2)))
print(("%-34s %12s"):format("Lua table + concur.Lock, 1 thread", fmt(tl)))
print(("%-34s %12s"):format("Python Manager().dict(), 2 procs", fmt(py)))
if py then
  print(("Map 2 threads / Manager dict: %.1fx (aim >= 5x); Map 2 processes / Manager dict: %.1fx")
    :format(m2 / py, mp2 / py))
end
print(("Map 2 threads / table + Lock: %.2fx (aim >= 1/3, i.e. within 3x)"):format(m2 / tl))
local load = io.open("/proc/loadavg")
if load then
  print("load average: " .. load:read("l"):match("^(%S+)"))
  load:close()
end
