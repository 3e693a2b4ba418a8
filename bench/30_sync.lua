--- bench/30_sync.lua: queues and locks, next to Python's and next to the
-- machine's physical limits, measured in one run.
--
--   bin/lua bench/30_sync.lua [items] [pairs]
--
-- Rows: one producer -> one consumer through a Queue (small integers;
-- unbounded, then maxsize 1000), between two threads against Python's
-- queue.Queue with two threading.Threads, and between two processes (this
-- one puts, a concur.Process gets) against multiprocessing.Queue the same
-- way; Lock acquire+release pairs from Lua, uncontended and contended by two
-- threads (each does half the pairs), against threading.Lock from Python.
-- Each figure is the best of three runs; the ratio is concur / Python
-- (higher is better for concur). Then the physical limits (bench/physical.c,
-- compiled here): a futex wake-up round trip between two threads and a
-- socketpair round trip between two processes.
local concur = require "concur"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local benchlib = require "benchlib"

local ITEMS = tonumber(arg and arg[1]) or 1000000
local PAIRS = tonumber(arg and arg[2]) or 10000000
local CPAIRS = PAIRS // 5            -- contended: slower, so fewer
local PY_MP_ITEMS = ITEMS // 10      -- multiprocessing.Queue: far slower
local RUNS = 3
local DIR = arg[0]:match("^(.*)/") or "."

-- Items per second through q from a producer thread to a consumer thread.
local function queue_rate(maxsize)
  local q = concur.Queue { maxsize = maxsize }
  local go = concur.Event()
  local consumer = concur.spawn(function(qq, n, ev)
    local c = require "concur"
    ev:wait()
    local t0 = c.monotonic()
    local sum = 0
    for _ = 1, n do sum = sum + qq:get() end
    return c.monotonic() - t0, sum
  end, q, ITEMS, go)
  local producer = concur.spawn(function(qq, n, ev)
    ev:wait()
    for i = 1, n do qq:put(i) end
  end, q, ITEMS, go)
  go:set()
  assert(producer:join())
  local _, dt, sum = consumer:join()
  assert(sum == ITEMS * (ITEMS + 1) // 2, "items lost")
  return ITEMS / dt
end

-- Items per second through q from this process to a consumer process.
local function process_queue_rate(maxsize)
  local q = concur.Queue { maxsize = maxsize }
  local ready = concur.Event()
  local consumer = concur.Process(function(qq, n, ev)
    local sum = 0
    ev:set()
    for _ = 1, n do sum = sum + qq:get() end
    return sum
  end, q, ITEMS, ready)
  ready:wait()
  local t0 = concur.monotonic()
  for i = 1, ITEMS do q:put(i) end
  local ok, sum = consumer:join()
  local dt = concur.monotonic() - t0
  assert(ok and sum == ITEMS * (ITEMS + 1) // 2, "items lost")
  return ITEMS / dt
end

local function lock_rate()
  local l = concur.Lock()
  local t0 = concur.monotonic()
  for _ = 1, PAIRS do
    l:acquire()
    l:release()
  end
  return PAIRS / (concur.monotonic() - t0)
end

-- Pairs per second, both threads together, on one Lock.
local function contended_lock_rate()
  local l = concur.Lock()
  local go = concur.Event()
  local function body(lk, n, ev)
    ev:wait()
    for _ = 1, n do
      lk:acquire()
      lk:release()
    end
  end
  local a = concur.spawn(body, l, CPAIRS // 2, go)
  local b = concur.spawn(body, l, CPAIRS // 2, go)
  local t0 = concur.monotonic()
  go:set()
  assert(a:join())
  assert(b:join())
  return CPAIRS / (concur.monotonic() - t0)
end

local function best(fn, ...)
  local b = 0
  for _ = 1, RUNS do b = math.max(b, fn(...)) end
  return b
end

-- Python's figures, from one python3 process; nil when python3 is missing.
local PY = [[
import multiprocessing, queue, threading, time, sys
def qrate(items, maxsize):
    q = queue.Queue(maxsize)
    def produce():
        for i in range(items): q.put(i)
    t = threading.Thread(target=produce)
    t0 = time.perf_counter()
    t.start()
    get = q.get
    for _ in range(items): get()
    dt = time.perf_counter() - t0
    t.join()
    return items / dt
def consume(q, n):
    get = q.get
    for _ in range(n): get()
def mprate(items, maxsize):
    q = multiprocessing.Queue(maxsize)
    p = multiprocessing.Process(target=consume, args=(q, items))
    p.start()
    q.put(-1); time.sleep(0.2)           # the consumer is running
    t0 = time.perf_counter()
    put = q.put
    for i in range(items - 1): put(i)
    p.join()
    return items / (time.perf_counter() - t0)
def lrate(pairs):
    l = threading.Lock()
    a, r = l.acquire, l.release
    t0 = time.perf_counter()
    for _ in range(pairs):
        a(); r()
    return pairs / (time.perf_counter() - t0)
def clrate(pairs):
    l = threading.Lock()
    def body():
        a, r = l.acquire, l.release
        for _ in range(pairs // 2):
            a(); r()
    ts = [threading.Thread(target=body) for _ in range(2)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    return pairs / (time.perf_counter() - t0)
if __name__ == "__main__":
    items, mpitems, pairs, cpairs, runs = map(int, sys.argv[1:6])
    print(max(qrate(items, 0) for _ in range(runs)), max(qrate(items, 1000) for _ in range(runs)),
          max(mprate(mpitems, 0) for _ in range(runs)), max(mprate(mpitems, 1000) for _ in range(runs)),
          max(lrate(pairs) for _ in range(runs)), max(clrate(cpairs) for _ in range(runs)))
]]

local function python()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(PY)
  f:close()
  local out = benchlib.sh(("python3 %s %d %d %d %d %d 2>/dev/null"):format(path, ITEMS,
    PY_MP_ITEMS, PAIRS, CPAIRS, RUNS))
  os.remove(path)
  local v = {}
  for x in out:gmatch("%S+") do v[#v + 1] = tonumber(x) end
  return v
end

-- Seconds per round trip from bench/physical.c, or nil without a compiler.
local physical_bin
local function physical(what, n)
  if physical_bin == nil then
    local bin = os.tmpname()
    physical_bin = os.execute(("cc -O2 -pthread -o %s %s/physical.c 2>/dev/null"):format(bin, DIR))
      and bin or false
  end
  if not physical_bin then return nil end
  return tonumber(benchlib.sh(("%s %s %d"):format(physical_bin, what, n)))
end

local rows = {
  { ("Queue, thread -> thread, %d ints (items/s)"):format(ITEMS), best(queue_rate, 0) },
  { "Queue{maxsize = 1000}, thread -> thread (items/s)", best(queue_rate, 1000) },
  { "Queue, process -> process (items/s)", best(process_queue_rate, 0) },
  { "Queue{maxsize = 1000}, process -> process (items/s)", best(process_queue_rate, 1000) },
  { "Lock acquire+release, uncontended (pairs/s)", best(lock_rate) },
  { "Lock acquire+release, 2 threads contending (pairs/s)", best(contended_lock_rate) },
}
local py = python()
for i, r in ipairs(rows) do r[3] = py[i] end
local futex_rt, pipe_rt = physical("futex", 200000), physical("pipe", 100000)

local function fmt(x) return x and ("%13.0f"):format(x) or ("%13s"):format("n/a") end
print(("%-60s %13s %13s %7s"):format("benchmark (best of " .. RUNS .. ")", "concur",
  "Python 3", "ratio"))
for _, r in ipairs(rows) do
  print(("%-60s %s %s %7s"):format(r[1], fmt(r[2]), fmt(r[3]),
    r[3] and ("%.2fx"):format(r[2] / r[3]) or "n/a"))
end
print(("(Python: queue.Queue and threading.Thread; multiprocessing.Queue with %d items,"
  .. " the parent putting, a multiprocessing.Process getting)"):format(PY_MP_ITEMS))
local function limit(name, s)
  print(("%-60s %s"):format(name, s and ("%10.2f us = %9.0f/s"):format(s * 1e6, 1 / s) or "n/a"))
end
print("physical limits on this machine (bench/physical.c, best of 3):")
limit("  futex wake-up round trip, thread <-> thread", futex_rt)
limit("  socketpair 1-byte round trip, process <-> process", pipe_rt)
if physical_bin then os.remove(physical_bin) end
