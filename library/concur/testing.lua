---@meta concur.testing
-- Lua Language Server definitions for concur.testing (see library/concur.lua).
-- Requiring it adds to luassert's assert (busted's):
--   assert.raises_kind(kind, fn [, text])    assert.no.raises_kind(kind, fn)
--   assert.error_kind(kind, value)           assert.is_not.error_kind(kind, value)
-- and makes assert.has_error / assert.error_matches work on concur.Error.

---@class concur.testinglib
local testing = {}

--- The concur.Error fn(...) raises; raises when it succeeds or raises
--- anything else.
---@param fn function
---@param ... any
---@return concur.Error
function testing.error_of(fn, ...) end

return testing
