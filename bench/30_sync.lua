--- bench/30_sync.lua: queues and locks, next to Python's, measured in one run.
--
--   bin/lua bench/30_sync.lua [items] [pairs]
--
-- Rows: one producer thread -> one consumer thread through a Queue (small
-- integers; unbounded, then maxsize 1000), against Python's queue.Queue
-- with two threading.Threads; and uncontended Lock acquire+release pairs
-- from Lua, against threading.Lock from Python. Each figure is the best of
-- three runs; the ratio is concur / Python (higher is better for concur).
local concur = require "concur"

local ITEMS = tonumber(arg and arg[1]) or 1000000
local PAIRS = tonumber(arg and arg[2]) or 10000000
local RUNS = 3

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

local function lock_rate()
  local l = concur.Lock()
  local t0 = concur.monotonic()
  for _ = 1, PAIRS do
    l:acquire()
    l:release()
  end
  return PAIRS / (concur.monotonic() - t0)
end

local function best(fn, ...)
  local b = 0
  for _ = 1, RUNS do b = math.max(b, fn(...)) end
  return b
end

-- Python's figures, from one python3 process; nil when python3 is missing.
local PY = [[
import queue, threading, time, sys
items, pairs, runs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def qrate(maxsize):
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
def lrate():
    l = threading.Lock()
    a, r = l.acquire, l.release
    t0 = time.perf_counter()
    for _ in range(pairs):
        a(); r()
    return pairs / (time.perf_counter() - t0)
print(max(qrate(0) for _ in range(runs)), max(qrate(1000) for _ in range(runs)),
      max(lrate() for _ in range(runs)))
]]

local function python()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(PY)
  f:close()
  local p = io.popen(("python3 %s %d %d %d 2>/dev/null"):format(path, ITEMS, PAIRS, RUNS))
  local out = p:read("a")
  p:close()
  os.remove(path)
  local a, b, c = out:match("(%S+)%s+(%S+)%s+(%S+)")
  return tonumber(a), tonumber(b), tonumber(c)
end

local rows = {
  { ("Queue, 1 producer -> 1 consumer thread, %d ints (items/s)"):format(ITEMS),
    best(queue_rate, 0) },
  { "Queue{maxsize = 1000}, same (items/s)", best(queue_rate, 1000) },
  { "Lock acquire+release, uncontended (pairs/s)", best(lock_rate) },
}
local pq, pqb, pl = python()
rows[1][3], rows[2][3], rows[3][3] = pq, pqb, pl

local function fmt(x) return x and ("%13.0f"):format(x) or ("%13s"):format("n/a") end
print(("%-60s %13s %13s %7s"):format("benchmark (best of " .. RUNS .. ")", "concur",
  "Python 3", "ratio"))
for _, r in ipairs(rows) do
  print(("%-60s %s %s %7s"):format(r[1], fmt(r[2]), fmt(r[3]),
    r[3] and ("%.2fx"):format(r[2] / r[3]) or "n/a"))
end
