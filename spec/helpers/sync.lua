--- Helpers for the synchronisation specs (30-sync, 31-queue, 32-ratelimit).
local concur = require "concur"

local M = {}

--- Waits until pred() is true, checking every millisecond; fails after
-- 'limit' seconds (default 10). For states that no event announces (a
-- thread now blocked in a barrier): a predicate, never a fixed sleep.
function M.wait_until(pred, limit)
  local deadline = concur.monotonic() + (limit or 10)
  while not pred() do
    assert(concur.monotonic() < deadline, "condition not reached in time")
    concur.sleep(0.001)
  end
end

--- Spawns n threads running fn(i, ...); returns them.
function M.spawn_n(n, fn, ...)
  local ts = {}
  for i = 1, n do ts[i] = concur.spawn(fn, i, ...) end
  return ts
end

--- Joins every thread; returns an array of the first result of each and
-- fails with the thread's error if one failed.
function M.join_all(ts)
  local out = {}
  for i, t in ipairs(ts) do
    local ok, v = t:join(30)
    if not ok then
      error("thread " .. i .. " failed: " .. tostring(type(v) == "table" and v.message or v), 2)
    end
    out[i] = v
  end
  return out
end

--- Runs fn in a thread under pcall and returns the error's kind and
-- message (or "ok" and its first result): errors inside a thread cross as
-- plain tables.
function M.error_in_thread(fn, ...)
  local t = concur.spawn(function(f, ...)
    local ok, err = pcall(f, ...)
    if ok then return "ok", err end
    if type(err) == "table" then return err.kind, err.message end
    return "lua", tostring(err)
  end, fn, ...)
  local _, kind, msg = t:join(30)
  return kind, msg
end

return M
