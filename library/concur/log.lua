---@meta concur.log
-- Lua Language Server definitions for concur.log (see library/concur.lua).

---@alias concur.log.Level "debug"|"info"|"warn"|"error"

---@alias concur.log.Sink fun(level: concur.log.Level, message: string, thread: string)

--- Levelled logging; calling it logs at info: concur.log(...).
---@class concur.log
---@overload fun(...: any)
local log = {}

---@param ... any joined by tabs, as print does
function log.debug(...) end

---@param ... any
function log.info(...) end

---@param ... any
function log.warn(...) end

---@param ... any
function log.error(...) end

--- Reads or sets the process-wide threshold; returns the level before.
---@param level? concur.log.Level
---@return concur.log.Level
function log.level(level) end

--- Sets this state's sink (nil: stderr); returns the sink before.
---@param fn? concur.log.Sink
---@return concur.log.Sink?
function log.sink(fn) end

--- A sink for a LuaLogging logger.
---@param logger table a LuaLogging logger
---@return concur.log.Sink
function log.lualogging(logger) end

--- The default sink: the formatted line to stderr, in one write.
---@type concur.log.Sink
function log.stderr(level, message, thread) end

--- The line the default sink writes, with its newline.
---@param level concur.log.Level
---@param message string
---@param thread string
---@return string
function log.format(level, message, thread) end

return log
