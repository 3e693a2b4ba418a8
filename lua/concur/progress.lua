--- concur.progress: the progress display of map, imap, imap_unordered,
-- get_all (their `progress = true`) and of anything else that counts work.
--
--     local progress = require "concur.progress"
--     local bar = progress.new { label = "crawl", total = nil }
--     for ... do bar:update(pages, errors, total_known_so_far) end
--     bar:finish()
--
-- On a terminal (stderr is a tty) it redraws one line in place, at most
-- ten times a second: the label, a bar and the percentage when the total
-- is known, the count, the rate, the time left (ETA) and the errors:
--
--     map [########------------]  4021/10000  40%  8.1k/s  ETA 0:01  2 errors
--
-- Elsewhere (a pipe, a file, a CI log) it draws nothing while it runs and
-- `finish` writes one summary line:
--
--     map: 10000/10000 in 1.2 s (8.1k/s), 2 errors
--
-- The `progress` option of map, imap, imap_unordered and get_all takes
-- true (this display, labelled with the call's name), a function
-- fn(done, total, errors) called as work completes, or an object with
-- update and finish methods, such as one made by `progress.new`.
-- @module concur.progress

local core = require "concur.core"
local Error = core.Error
local monotonic = core.monotonic
local type, floor, min = type, math.floor, math.min

local M = {}

local Progress = {}
Progress.__index = Progress

local function badarg(n, fname, msg)
  error(Error.new("argument", ("bad argument #%d to '%s' (%s)"):format(n, fname, msg)), 3)
end

local NEW_OPTS = { label = true, total = true, stream = true, tty = true,
                   interval = true, clock = true, width = true }

--- A new progress display.
-- @tparam[opt] table opts
--  `label` (string, default "progress"),
--  `total` (the number of items, or nil when not known),
--  `stream` (default io.stderr),
--  `tty` (draw in place; default: whether stderr is a terminal, when
--  `stream` is stderr, else false),
--  `interval` (seconds between redraws, default 0.1),
--  `width` (of the bar, default 20),
--  `clock` (a function returning seconds, default concur.monotonic)
-- @return a Progress: `update`, `add`, `finish`; fields `done`, `errors`,
--  `total`, `label`
function M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then badarg(1, "new", "table expected, got " .. type(opts)) end
  for k in pairs(opts) do
    if not NEW_OPTS[k] then badarg(1, "new", "unknown option '" .. tostring(k) .. "'") end
  end
  local total = opts.total
  if total ~= nil and (math.type(total) ~= "integer" or total < 0) then
    badarg(1, "new", "total must be a non-negative integer or nil")
  end
  local stream = opts.stream or io.stderr
  local tty = opts.tty
  if tty == nil then tty = stream == io.stderr and core.isatty(2) end
  local clock = opts.clock or monotonic
  local self = setmetatable({
    label = tostring(opts.label or "progress"), total = total, done = 0, errors = 0,
    stream = stream, tty = tty and true or false, interval = opts.interval or 0.1,
    width = opts.width or 20, clock = clock, started = clock(), drawn = nil,
    finished = false,
  }, Progress)
  return self
end

-- 1234 -> "1234", 81234 -> "81.2k", 1234567 -> "1.23M"
local function human(x)
  if x < 10000 then return ("%.0f"):format(x) end
  if x < 1e6 then return ("%.1fk"):format(x / 1e3) end
  if x < 1e9 then return ("%.2fM"):format(x / 1e6) end
  return ("%.2fG"):format(x / 1e9)
end

-- 75 -> "1:15", 4000 -> "1:06:40"
local function clock_text(s)
  s = floor(s + 0.5)
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s % 3600 // 60, s % 60) end
  return ("%d:%02d"):format(s // 60, s % 60)
end

local function errors_text(n)
  if n == 0 then return "" end
  return n == 1 and "1 error" or ("%d errors"):format(n)
end

--- The line a terminal shows for the current counts (without "\r").
function Progress:line()
  local elapsed = self.clock() - self.started
  local rate = elapsed > 0 and self.done / elapsed or 0
  local parts = { self.label }
  local total = self.total
  if total then
    local frac = total > 0 and min(1, self.done / total) or 1
    local fill = floor(frac * self.width + 0.5)
    parts[#parts + 1] = "[" .. ("#"):rep(fill) .. ("-"):rep(self.width - fill) .. "]"
    parts[#parts + 1] = ("%d/%d"):format(self.done, total)
    parts[#parts + 1] = ("%3d%%"):format(floor(frac * 100))
  else
    parts[#parts + 1] = ("%d"):format(self.done)
  end
  parts[#parts + 1] = human(rate) .. "/s"
  if total and self.done < total and rate > 0 then
    parts[#parts + 1] = "ETA " .. clock_text((total - self.done) / rate)
  end
  local e = errors_text(self.errors)
  if e ~= "" then parts[#parts + 1] = e end
  return table.concat(parts, "  ")
end

--- The summary line `finish` writes where there is no terminal.
function Progress:summary()
  local elapsed = self.clock() - self.started
  local rate = elapsed > 0 and self.done / elapsed or 0
  local s = ("%s: %d%s in %.1f s (%s/s)"):format(self.label, self.done,
    self.total and "/" .. self.total or "", elapsed, human(rate))
  local e = errors_text(self.errors)
  return e == "" and s or s .. ", " .. e
end

local function draw(self, now)
  self.drawn = now
  self.stream:write("\r", self:line(), "\27[K")
  self.stream:flush()
end

--- Sets the counts and redraws, at most once per `interval`.
-- @tparam integer done the items done so far (failed ones included)
-- @tparam[opt] integer errors the items that failed so far
-- @tparam[opt] integer total a new total (the work grew, or became known)
function Progress:update(done, errors, total)
  if type(done) ~= "number" then badarg(1, "update", "number expected, got " .. type(done)) end
  self.done = done
  if errors ~= nil then self.errors = errors end
  if total ~= nil then self.total = total end
  if self.tty and not self.finished then
    local now = self.clock()
    if self.drawn == nil or now - self.drawn >= self.interval then draw(self, now) end
  end
end

--- Adds to the counts (and redraws as `update` does).
-- @tparam[opt] integer n items done (default 1)
-- @tparam[opt] integer errors of them, how many failed (default 0)
function Progress:add(n, errors)
  return self:update(self.done + (n or 1), self.errors + (errors or 0))
end

--- Ends the display: on a terminal, the final counts and a newline; else
-- the summary line. Only the first call writes.
function Progress:finish()
  if self.finished then return end
  if self.tty then
    draw(self, self.clock())
    self.stream:write("\n")
  else
    self.stream:write(self:summary(), "\n")
  end
  self.stream:flush()
  self.finished = true
end

-- The reporter behind a `progress` option: nil (none), a Progress for
-- true, the object itself when it has update and finish, or one that calls
-- a function fn(done, total, errors) on each update. `live` is true when
-- the reporter wants counts while work runs, not only as results arrive.
function M.option(opt, label, total, fname)
  if opt == nil or opt == false then return nil end
  if opt == true then
    local p = M.new { label = label, total = total }
    return { live = p.tty, update = function(_, ...) p:update(...) end,
             finish = function() p:finish() end }
  end
  if type(opt) == "function" then
    return { live = false, update = function(_, done, errors, t) opt(done, t or total, errors or 0) end,
             finish = function() end }
  end
  if type(opt) == "table" and type(opt.update) == "function" and type(opt.finish) == "function" then
    return { live = true, update = function(_, ...) opt:update(...) end,
             finish = function() opt:finish() end }
  end
  error(Error.new("argument", ("bad option 'progress' to '%s' (true, a function or an object "
    .. "with update and finish expected, got %s)"):format(fname or label, type(opt))), 3)
end

M.Progress = Progress
return M
