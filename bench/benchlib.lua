--- Helpers shared by the benchmarks (bench/NN_*.lua).
local M = {}

--- The best (smallest) of 'times' measurements fn() returns.
function M.best(times, fn)
  local b = math.huge
  for _ = 1, times do b = math.min(b, fn()) end
  return b
end

--- The output of a shell command.
function M.sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

--- The 1-minute load average, or nil.
function M.loadavg()
  local f = io.open("/proc/loadavg")
  local v = f and tonumber(f:read("a"):match("^(%S+)"))
  if f then f:close() end
  return v
end

--- CPU-bound work (the lessons' own, examples/lib/lesson.lua, so both
-- measure the same work): count_primes(hi, part, parts) is the number of
-- primes up to hi in the part-th of every 'parts' blocks of 1000 numbers, so
-- parts 1..parts cost about the same.
M.count_primes = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./")
  .. "../examples/lib/lesson.lua").count_primes

--- Seconds (best of 3) for n pool:submit(fn, i) and their results.
function M.submit_time(pool, fn, n)
  local monotonic = require("concur").monotonic
  return M.best(3, function()
    local fs = {}
    local t0 = monotonic()
    for i = 1, n do fs[i] = pool:submit(fn, i) end
    for i = 1, n do fs[i]:result() end
    return monotonic() - t0
  end)
end

--- Seconds (best of 3) for pool:map(fn, {1..n}).
function M.map_time(pool, fn, n)
  local monotonic = require("concur").monotonic
  local items = {}
  for i = 1, n do items[i] = i end
  return M.best(3, function()
    local t0 = monotonic()
    local out = pool:map(fn, items)
    assert(#out == n)
    return monotonic() - t0
  end)
end

--- Seconds (best of 2) that a pool made by new_pool(workers) takes to count
-- the primes up to 'limit' split into 'nchunks' tasks of equal cost (each
-- takes every nchunks-th block of 1000 numbers, so the work balances: with
-- nchunks a multiple of the workers, none waits for another's last task).
function M.cpu_time(new_pool, workers, limit, nchunks)
  local monotonic = require("concur").monotonic
  local p <close> = new_pool(workers)
  return M.best(2, function()
    local t0 = monotonic()
    local fs = {}
    for k = 1, nchunks do fs[#fs + 1] = p:submit(M.count_primes, limit, k, nchunks) end
    local total = 0
    for _, f in ipairs(fs) do total = total + f:result() end
    assert(total > 0)
    return monotonic() - t0
  end)
end

return M
