--- concur.testing: busted (luassert) assertions for code that uses concur.
--
-- Requiring it registers, on luassert's `assert` (busted's own):
--
--     require "concur.testing"
--     assert.raises_kind("timeout", function() q:get(0.01) end)
--     assert.raises_kind("task", function() f:result() end, "boom")  -- message has "boom"
--     assert.no.raises_kind("closed", fn)     -- fn raises no error of kind "closed"
--     assert.error_kind("cancelled", f:error())
--     assert.has_error(function() f:result() end, "boom")
--     assert.error_matches(function() q:get(0.01) end, "timed out")
--
-- `has_error` and `error_matches` (and their other names: `error`,
-- `errors`, `error_match`, `matches_error`, `match_error`) also work on
-- concur.Error objects: a message is compared without its "file:line: "
-- prefix, as luassert does for string errors, and without the traceback
-- that `tostring(err)` adds; a table expected by has_error is compared with
-- the value a task raised (err.value, kind "task") or else with the error
-- object. Other errors behave as luassert has them. A concur.Error in a
-- failure message shows its kind and message.
--
-- Load it from a spec file, or for every spec from `.busted`:
-- `helper = "concur.testing"` (a module name is required by busted).
-- concur does not depend on busted: this module needs luassert only when
-- it is required.
-- @module concur.testing

local concur = require "concur"
local luassert = require "luassert"
local util = require "luassert.util"
local astate = require "luassert.state"
local say = require "say"

local Error = concur.Error
local type, tostring, pcall = type, tostring, pcall

local M = {}

-- luassert's "bad argument" message.
local function s_badarg(n, fname, expected, got)
  return say("assertion.internal.badargtype", { n, fname, expected, got })
end

-- A concur.Error's message as luassert compares a string error: without
-- the "file:line: " where it was raised.
local function message_of(err)
  return (tostring(err.message):gsub("^.-:%d+: ", "", 1))
end

--- Calls fn(...) and returns the concur.Error it raises; raises (a plain
-- assertion error) when it succeeds or raises anything else.
-- @tparam function fn
-- @return the concur.Error
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected a concur.Error, but the call succeeded", 2) end
  if not Error.is(err) then error("expected a concur.Error, got: " .. tostring(err), 2) end
  return err
end

local function describe(v)
  if Error.is(v) then
    return ("concur.Error kind %q: %s"):format(tostring(v.kind), tostring(v.message))
  end
  return astate.format_argument(v) or tostring(v)
end

-- assert.raises_kind(kind, fn [, text]): fn raises a concur.Error of that
-- kind, whose message contains text (plain) when it is given.
local function raises_kind(_, args, level)
  level = (level or 1) + 1
  local kind, fn, text = args[1], args[2], args[3]
  assert(type(kind) == "string",
    s_badarg(1, "raises_kind", "string (the kind)", type(kind)), level)
  assert(util.callable(fn), s_badarg(2, "raises_kind", "function", type(fn)), level)
  assert(text == nil or type(text) == "string",
    s_badarg(3, "raises_kind", "string", type(text)), level)
  local ok, err = pcall(fn)
  args.n = 3
  args.nofmt = { true, true, true }
  args[1] = kind .. (text and (" with a message containing %q"):format(text) or "")
  args[2] = ok and "no error" or describe(err)
  args[3] = nil
  if ok or not Error.is(err, kind) then return false end
  return text == nil or tostring(err.message):find(text, 1, true) ~= nil
end

-- assert.error_kind(kind, value): value is a concur.Error of that kind.
local function error_kind(_, args, level)
  level = (level or 1) + 1
  local kind, value = args[1], args[2]
  assert(type(kind) == "string",
    s_badarg(1, "error_kind", "string (the kind)", type(kind)), level)
  args.n = 2
  args.nofmt = { true, true }
  args[2] = describe(value)
  return Error.is(value, kind)
end

-- luassert's has_error, where a concur.Error compares as its message (or,
-- against a table, as the value a task raised).
local function has_error(state, args, level)
  level = (level or 1) + 1
  local retargs = util.shallowcopy(args)
  local fn, expected, failure = args[1], args[2], args[3]
  assert(util.callable(fn), s_badarg(1, "error", "function or callable object", type(fn)), level)
  local ok, actual = pcall(fn)
  if type(actual) == "string" then actual = actual:gsub("^.-:%d+: ", "", 1) end
  if not ok and Error.is(actual) then
    if type(expected) == "table" and not Error.is(expected) then
      if actual.kind == "task" and type(actual.value) == "table" then actual = actual.value end
    elseif expected ~= nil then
      actual = message_of(actual)
    end
  end
  retargs[1] = actual
  args.nofmt = { ok, expected == nil }
  args.n = 2
  args[1] = ok and "(no error)" or actual
  args[2] = expected == nil and "(error)" or expected
  if failure ~= nil then state.failure_message = failure end
  if ok or expected == nil then return not ok, retargs end
  if type(expected) == "string" then
    if util.hastostring(actual) then actual = tostring(actual) end
    if type(actual) == "string" then return expected == actual, retargs end
  elseif type(expected) == "number" and type(actual) == "string" then
    return tostring(expected) == tostring(tonumber(actual)), retargs
  end
  if type(expected) == "table" and type(actual) == "table" then
    return (util.deepcompare(expected, actual, true)), retargs
  end
  return expected == actual, retargs
end

-- luassert's error_matches, where a concur.Error matches as its message.
local function error_matches(state, args, level)
  level = (level or 1) + 1
  local retargs = util.shallowcopy(args)
  local fn, pattern = args[1], args[2]
  assert(args.n > 1, say("assertion.internal.argtolittle", { "error_matches", 2, tostring(args.n) }), level)
  assert(util.callable(fn), s_badarg(1, "error_matches", "function or callable object", type(fn)), level)
  assert(pattern == nil or type(pattern) == "string",
    s_badarg(2, "error_matches", "string", type(pattern)), level)
  local failure
  for i = 3, args.n do
    if args[i] and type(args[i]) ~= "boolean" and not tonumber(args[i]) then
      failure = util.tremove(args, i)
      break
    end
  end
  local init, plain = args[3], args[4]
  local ok, actual = pcall(fn)
  if type(actual) == "string" then actual = actual:gsub("^.-:%d+: ", "", 1) end
  if not ok and Error.is(actual) then actual = message_of(actual) end
  retargs[1] = actual
  args.nofmt = { ok, false }
  args.n = 2
  args[1] = ok and "(no error)" or actual
  args[2] = pattern
  if failure ~= nil then state.failure_message = failure end
  if ok then return false, retargs end
  if actual == nil and pattern == nil then return true, {} end
  if util.hastostring(actual) or type(actual) == "number" or type(actual) == "boolean" then
    actual = tostring(actual)
    retargs[1] = actual
  end
  if type(actual) ~= "string" then return false, retargs end
  if plain then return actual:find(pattern, init, true) ~= nil, { pattern } end
  local found = { actual:match(pattern, init) }
  if found[1] ~= nil then return true, found end
  return false, retargs
end

say:set("assertion.raises_kind.positive", "Expected a concur.Error of kind %s.\nGot: %s")
say:set("assertion.raises_kind.negative", "Expected no concur.Error of kind %s.\nGot: %s")
say:set("assertion.error_kind.positive", "Expected a concur.Error of kind %s.\nGot: %s")
say:set("assertion.error_kind.negative", "Expected anything but a concur.Error of kind %s.\nGot: %s")

luassert:register("assertion", "raises_kind", raises_kind,
  "assertion.raises_kind.positive", "assertion.raises_kind.negative")
luassert:register("assertion", "error_kind", error_kind,
  "assertion.error_kind.positive", "assertion.error_kind.negative")
for _, name in ipairs { "error", "errors" } do
  luassert:register("assertion", name, has_error, "assertion.error.positive", "assertion.error.negative")
end
for _, name in ipairs { "error_matches", "error_match", "matches_error", "match_error" } do
  luassert:register("assertion", name, error_matches, "assertion.error.positive", "assertion.error.negative")
end

-- A concur.Error in a failure message shows its kind and message.
luassert:add_formatter(function(v)
  if Error.is(v) then return describe(v) end
end)

return M
