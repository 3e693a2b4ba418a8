--- concur.luv: runs this state's on_done callbacks and concur tasks from a
-- luv (libuv) event loop, so a program built on luv never blocks its loop
-- on concur.
--
--     local uv = require "luv"
--     local bridge = require "concur.luv"
--     local handle = bridge.attach()          -- on luv's loop
--     pool:submit(work):on_done(function(f) print(f:result()) end)
--     concur.async(function() ... concur.await(client:get(url)) ... end)
--     uv.run()                                -- until handle:close()
--
-- The handle is a luv poll handle on `concur.pollfd()`: it calls
-- `concur.poll()` whenever the descriptor is readable (a future with a
-- callback or a waiting task completed, a task became runnable, a task's
-- timer is due), and costs nothing while it is not. Like any active
-- handle it keeps `uv.run()` going until it is closed.
-- @module concur.luv

local concur = require "concur"

local M = {}

local Handle = { __name = "concur.luv.Handle" }
Handle.__index = Handle

--- handle:close(): detaches concur from the loop (idempotent); `__close`
-- and `__gc` call it.
function Handle:close()
  local p = self.poll
  if p then
    self.poll = nil
    p:stop()
    if not p:is_closing() then p:close() end
  end
end
Handle.__close = Handle.close
Handle.__gc = Handle.close

--- handle:active() --> whether it is attached
function Handle:active()
  return self.poll ~= nil
end

--- bridge.attach([uv]) --> handle: watches `concur.pollfd()` from the loop
-- of `uv` (the luv module, or luvit's `uv`; default `require "luv"`).
-- Callbacks and tasks then run from that loop.
function M.attach(uv)
  if uv == nil then uv = require "luv" end
  if type(uv) ~= "table" or type(uv.new_poll) ~= "function" then
    error(concur.Error.new("argument", ("bad argument #1 to 'attach' (the luv module"
      .. " expected, got %s)"):format(type(uv))), 2)
  end
  local p = assert(uv.new_poll(concur.pollfd()))
  local h = setmetatable({ poll = p }, Handle)
  p:start("r", function() concur.poll() end)
  return h
end

return M
