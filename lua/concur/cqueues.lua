--- concur.cqueues: runs this state's on_done callbacks and concur tasks
-- from a cqueues controller.
--
--     local cqueues = require "cqueues"
--     local cqb = require "concur.cqueues"
--     local cq = cqueues.new()
--     local handle = cqb.attach(cq)
--     cq:wrap(function()
--       local f = pool:submit(work)
--       cqueues.poll(f)              -- this coroutine waits; the rest run
--       print(f:result())
--       handle:close()
--     end)
--     assert(cq:loop())
--
-- attach wraps one coroutine in the controller that waits (cqueues.poll)
-- on `concur.pollfd()` and calls `concur.poll()` whenever it is readable;
-- it ends when the handle is closed. Futures and Tasks are pollable
-- themselves (`pollfd`, `events`, `timeout`), so `cqueues.poll(f)` waits
-- for one without any attach; attach is what runs on_done callbacks and
-- concur tasks. A concur task must not call cqueues' own waits (they
-- would yield to concur's scheduler, which fails the task).
-- @module concur.cqueues

local concur = require "concur"

local M = {}

local Handle = { __name = "concur.cqueues.Handle" }
Handle.__index = Handle

--- handle:close(): detaches concur from the controller (its coroutine
-- ends at its next turn); idempotent.
function Handle:close()
  if not self.closed then
    self.closed = true
    self.cond:signal()
  end
end
Handle.__close = Handle.close

--- handle:active() --> whether it is attached
function Handle:active()
  return not self.closed
end

-- The state's descriptor as a cqueues pollable.
local fdpollable = {
  pollfd = function() return concur.pollfd() end,
  events = function() return "r" end,
}

--- cqb.attach(controller) --> handle: runs concur's callbacks and tasks
-- from `controller` (a cqueues controller, cqueues.new()).
function M.attach(cq)
  local cqueues = require "cqueues"
  if not cqueues.type or cqueues.type(cq) ~= "controller" then
    error(concur.Error.new("argument", ("bad argument #1 to 'attach' (cqueues"
      .. " controller expected, got %s)"):format(type(cq))), 2)
  end
  local h = setmetatable({ closed = false, cond = require("cqueues.condition").new() }, Handle)
  cq:wrap(function()
    concur.poll()
    while not h.closed do
      cqueues.poll(fdpollable, h.cond)
      if h.closed then break end
      concur.poll()
    end
  end)
  return h
end

return M
