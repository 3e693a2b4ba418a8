---@meta concur.progress
-- Lua Language Server definitions for concur.progress (see library/concur.lua).

---@class concur.progress.Options
---@field label? string ("progress")
---@field total? integer nil while not known
---@field stream? file* (io.stderr)
---@field tty? boolean draw in place (default: stderr is a terminal)
---@field interval? number seconds between redraws (0.1)
---@field width? integer of the bar (20)
---@field clock? fun(): number (concur.monotonic)

--- A progress display: redrawn in place on a terminal, a summary line at
--- the end elsewhere.
---@class concur.Progress
---@field label string
---@field done integer
---@field errors integer
---@field total integer?
---@field tty boolean
local Progress = {}

--- Sets the counts; redraws at most once per interval.
---@param done integer
---@param errors? integer
---@param total? integer
function Progress:update(done, errors, total) end

--- Adds to the counts.
---@param n? integer (1)
---@param errors? integer (0)
function Progress:add(n, errors) end

--- The final line on a terminal, else the summary line; once.
function Progress:finish() end

--- The line a terminal shows now.
---@return string
function Progress:line() end

--- The summary line.
---@return string
function Progress:summary() end

---@class concur.progresslib
local progress = {}

---@type concur.Progress
progress.Progress = Progress

---@param opts? concur.progress.Options
---@return concur.Progress
function progress.new(opts) end

--- The reporter behind a `progress` option (nil when off).
---@param opt concur.ProgressOption?
---@param label string
---@param total? integer
---@param fname? string
---@return concur.Progress.Reporter?
function progress.option(opt, label, total, fname) end

return progress
