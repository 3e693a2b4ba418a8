--- Worker nodes for the cluster specs: each a separate process (a
-- concur.Process running cluster.serve), a stand-in for a machine.
--
-- `cluster.node(url, opts)` starts one and returns once it serves: a handle
-- with `pid`, `kill(signal)` (SIGKILL by default: the machine vanishes),
-- `stop()` (SIGTERM, then its counts once it has left). `cluster.cleanup()`
-- kills whatever node a failed spec left running (an interpreter joins its
-- processes when it exits, so a stray node would hang the suite).
local concur = require "concur"

local M = {}
M.KEY = ("0123456789abcdef"):rep(2)
local started = setmetatable({}, { __mode = "k" })

local Node = {}
Node.__index = Node

--- Starts a node serving opts.queue (kind "thread" and 2 workers unless
-- said) on the Redis at url; waits until it is in the queue's group.
function M.node(url, opts)
  opts = opts or {}
  local ready = concur.Event()
  local p = concur.Process(function(url_, key, o, ev)
    local cluster = require "concur.cluster"
    o.redis, o.key = url_, key
    o.ready = function() ev:set() end
    return cluster.serve(o)
  end, url, opts.key or M.KEY, {
    queue = opts.queue, workers = opts.workers or 2, kind = opts.kind or "thread",
    prefetch = opts.prefetch, timeout = opts.timeout, name = opts.name }, ready)
  local self = setmetatable({ process = p, pid = p.pid }, Node)
  started[self] = true
  -- NOTE: a node that cannot start ends; its join tells why
  while not ready:wait(0.05) do
    if not p:alive() then
      local _, err = p:join()
      error("the node did not start: " .. tostring(type(err) == "table" and err.message or err))
    end
  end
  return self
end

--- Sends a signal (default 9: the node vanishes as a machine would) and
-- waits until the process is gone.
function Node:kill(sig)
  self.process:kill(sig or 9)
  return self.process:join(60)
end

--- SIGTERM: the node finishes its tasks and leaves; returns its counts.
function Node:stop()
  self.process:kill(15)
  local done, ok, res = pcall(self.process.join, self.process, 60)
  if not done then                 -- still running: it is killed, and fails
    self:kill()
    error("the node did not stop on SIGTERM", 2)
  end
  assert(ok, "the node failed: " .. tostring(type(res) == "table" and res.message or res))
  return res
end

--- Kills every node still running.
function M.cleanup()
  for n in pairs(started) do
    if n.process:alive() then n:kill() end
    started[n] = nil
  end
end

function Node:alive()
  return self.process:alive()
end

return M
