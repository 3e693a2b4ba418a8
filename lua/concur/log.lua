--- concur.log: levelled logging, each line tagged with its thread's name.
--
--     local concur = require "concur"
--     concur.log("working on", n)            -- info, as print would write it
--     concur.log.warn("disk almost full")    -- also debug, info, error
--     concur.log.level("debug")              -- the threshold, process-wide
--     concur.log.sink(function(level, message, thread) ... end)
--
-- A line is `[thread] message` at info and `[thread] level: message` at
-- the other levels, the arguments joined by tabs as print joins them. By
-- default it goes to stderr, with one write under a process-wide mutex,
-- so lines from many threads never interleave (stdout is flushed first,
-- so a line keeps its place among printed ones).
--
-- The level is one threshold for every thread of the process (`debug`,
-- `info`, `warn`, `error`; info to begin with, or CONCUR_LOG_LEVEL from
-- the environment; worker processes start with that too). A sink belongs
-- to the Lua state that sets it: set it in a pool's initializer to
-- route the workers' lines as well.
--
-- LuaLogging users plug their logger in (concur does not depend on it):
--
--     local logger = require("logging.console")()
--     concur.log.sink(concur.log.lualogging(logger))
--
-- `concur.log` is also the module "concur.log", so it crosses to threads,
-- tasks and processes by name, as an upvalue or an argument.
-- @module concur.log

local core = require "concur.core"
local Error = core.Error
local thread_name, log_level, log_write = core.thread_name, core.log_level, core.log_write
local select, tostring, type, concat = select, tostring, type, table.concat

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }
local NAMES = { "debug", "info", "warn", "error" }

local log = {}
local sink   -- this state's sink; nil: stderr

local function message(...)
  local n = select("#", ...)
  if n == 1 then return tostring((...)) end
  local parts = { ... }
  for i = 1, n do parts[i] = tostring(parts[i]) end
  return concat(parts, "\t", 1, n)
end

--- The line the default sink writes (with its newline).
-- @tparam string level "debug", "info", "warn" or "error"
-- @tparam string msg the message
-- @tparam string thread the thread's name
-- @treturn string
function log.format(level, msg, thread)
  if level == "info" then return "[" .. thread .. "] " .. msg .. "\n" end
  return "[" .. thread .. "] " .. level .. ": " .. msg .. "\n"
end
local format = log.format

--- The default sink: writes the formatted line to stderr, in one piece.
function log.stderr(level, msg, thread)
  log_write(format(level, msg, thread))
end

local function emit(lv, ...)
  if lv < log_level() then return end
  local msg, thread = message(...), thread_name()
  if sink == nil then return log_write(format(NAMES[lv], msg, thread)) end
  local ok, err = pcall(sink, NAMES[lv], msg, thread)
  if not ok then
    log_write(format("error", "log sink failed: " .. tostring(err), thread))
    log_write(format(NAMES[lv], msg, thread))
  end
end

--- Logs at level debug.
function log.debug(...) return emit(1, ...) end
--- Logs at level info (as `concur.log(...)` does).
function log.info(...) return emit(2, ...) end
--- Logs at level warn.
function log.warn(...) return emit(3, ...) end
--- Logs at level error.
function log.error(...) return emit(4, ...) end

local function badarg(n, fname, msg)
  error(Error.new("argument", ("bad argument #%d to '%s' (%s)"):format(n, fname, msg)), 3)
end

--- Reads or sets the threshold, for every thread of the process.
-- @tparam[opt] string level "debug", "info", "warn" or "error": lines
--  below it are dropped
-- @treturn string the level before the call
function log.level(level)
  if level == nil then return NAMES[log_level()] end
  local n = LEVELS[level]
  if not n then badarg(1, "level", "'debug', 'info', 'warn' or 'error' expected, got " .. tostring(level)) end
  return NAMES[log_level(n)]
end

--- Sets this state's sink: fn(level, message, thread) receives every line
-- at or above the level; nil restores the default (stderr). An error in
-- the sink is written to stderr with the line.
-- @tparam[opt] function fn
-- @treturn function|nil the sink before the call
function log.sink(fn)
  if fn ~= nil and type(fn) ~= "function" then
    badarg(1, "sink", "function or nil expected, got " .. type(fn))
  end
  local old = sink
  sink = fn
  return old
end

--- A sink for a LuaLogging logger: each line goes to logger:debug, info,
-- warn or error as "[thread] message" (LuaLogging's own level applies too).
-- @param logger a LuaLogging logger (e.g. `require("logging.console")()`)
-- @treturn function a sink for `log.sink`
function log.lualogging(logger)
  if type(logger) ~= "table" or type(logger.info) ~= "function" then
    badarg(1, "lualogging", "a LuaLogging logger expected, got " .. type(logger))
  end
  return function(level, msg, thread)
    logger[level](logger, "[" .. thread .. "] " .. msg)
  end
end

return setmetatable(log, {
  --- concur.log(...): logs at level info.
  __call = function(_, ...) return emit(2, ...) end,
})
