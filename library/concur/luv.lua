---@meta concur.luv
-- Lua Language Server definitions for concur.luv (see library/concur.lua).

--- Runs concur's on_done callbacks and tasks from a luv loop.
---@class concur.luv
local luv = {}

--- A luv poll handle on concur.pollfd().
---@class concur.luv.Handle
local Handle = {}

--- Detaches concur from the loop (idempotent).
function Handle:close() end

---@return boolean
function Handle:active() end

--- Watches concur.pollfd() from the loop of `uv` (default: require "luv").
---@param uv? table the luv module
---@return concur.luv.Handle
function luv.attach(uv) end

return luv
