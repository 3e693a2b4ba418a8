---@meta concur.cqueues
-- Lua Language Server definitions for concur.cqueues (see library/concur.lua).

--- Runs concur's on_done callbacks and tasks from a cqueues controller.
---@class concur.cqueues
local cqb = {}

--- The coroutine that polls concur.pollfd() in a controller.
---@class concur.cqueues.Handle
local Handle = {}

--- Detaches concur from the controller (idempotent).
function Handle:close() end

---@return boolean
function Handle:active() end

--- Wraps a coroutine in `controller` that runs concur.poll() whenever
--- concur.pollfd() is readable.
---@param controller table a cqueues controller (cqueues.new())
---@return concur.cqueues.Handle
function cqb.attach(controller) end

return cqb
