-- concur.testing: the busted assertions for concur's errors.
require "concur.testing"
local concur = require "concur"
local testing = require "concur.testing"

-- The message of the assertion failure fn raises (it must raise one).
local function failure(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "the assertion passed")
  return type(err) == "table" and tostring(err.message) or tostring(err)
end

describe("concur.testing", function()
  local pool, q
  setup(function()
    pool = concur.ThreadPool(1)
    q = concur.Queue()
  end)
  teardown(function() pool:close() end)

  local function timeout() return q:get(0.01) end
  local function task_boom() return pool:submit(function() error("boom") end):result() end

  describe("assert.raises_kind", function()
    it("passes when the call raises a concur.Error of that kind", function()
      assert.raises_kind("timeout", timeout)
      assert.raises_kind("task", task_boom)
      assert.raises_kind("argument", function() concur.sleep(0 / 0) end)
    end)

    it("checks the message contains the text, when given", function()
      assert.raises_kind("task", task_boom, "boom")
      assert.matches('Expected a concur.Error of kind task with a message containing "bang"',
        failure(assert.raises_kind, "task", task_boom, "bang"))
    end)

    it("fails on another kind, a plain error, or no error, saying what came", function()
      assert.matches('Got: concur.Error kind "timeout": get timed out',
        failure(assert.raises_kind, "closed", timeout))
      assert.matches("Got: %(string%) '[^']*: plain'",
        failure(assert.raises_kind, "timeout", function() error("plain") end))
      assert.matches("Got: no error", failure(assert.raises_kind, "timeout", function() end))
    end)

    it("negated, passes unless that kind is raised", function()
      assert.no.raises_kind("closed", timeout)
      assert.no.raises_kind("timeout", function() end)
      assert.matches("Expected no concur.Error of kind timeout",
        failure(assert.no.raises_kind, "timeout", timeout))
    end)

    it("checks its own arguments", function()
      assert.matches("bad argument #1", failure(assert.raises_kind, timeout))
      assert.matches("bad argument #2", failure(assert.raises_kind, "timeout", 1))
    end)
  end)

  describe("assert.error_kind", function()
    it("tests a value, such as a future's error", function()
      local f = pool:submit(function() error("x") end)
      assert.error_kind("task", f:error())
      assert.is_not.error_kind("timeout", f:error())
      assert.matches("Got: %(nil%)", failure(assert.error_kind, "task", nil))
    end)
  end)

  describe("assert.has_error", function()
    it("compares a concur.Error's message without its location or traceback", function()
      assert.has_error(timeout, "get timed out")
      assert.has_error(task_boom, "boom")
      assert.error(task_boom, "boom")
      assert.errors(task_boom, "boom")
      assert.has_error(function() concur.sleep(0 / 0) end,
        "bad argument #1 to 'sleep' (seconds is NaN)")
    end)

    it("fails on another message, showing both", function()
      local msg = failure(assert.has_error, task_boom, "bang")
      assert.matches("Caught:\n%(string%) 'boom'", msg)
      assert.matches("Expected:\n%(string%) 'bang'", msg)
    end)

    it("compares a table with the value a task raised", function()
      assert.has_error(function()
        return pool:submit(function() error({ code = 404 }) end):result()
      end, { code = 404 })
      failure(assert.has_error, function()
        return pool:submit(function() error({ code = 404 }) end):result()
      end, { code = 500 })
    end)

    it("still passes on any error without an expected one, and negates", function()
      assert.has_error(timeout)
      assert.has_no.error(function() end)
      failure(assert.has_no.error, timeout)
    end)

    it("keeps luassert's behaviour for other errors", function()
      assert.has_error(function() error("plain") end, "plain")
      assert.has_error(function() error({ 1, 2 }) end, { 1, 2 })
      assert.has_error(function() error(42) end, 42)
      failure(assert.has_error, function() error("plain") end, "other")
    end)
  end)

  describe("assert.error_matches", function()
    it("matches a concur.Error's message", function()
      assert.error_matches(timeout, "^get timed")
      assert.error_matches(task_boom, "^boom$")
      assert.matches_error(task_boom, "bo+m")
      assert.error_matches(task_boom, "boom", 1, true)
      failure(assert.error_matches, timeout, "closed")
    end)

    it("keeps luassert's behaviour for other errors", function()
      assert.error_matches(function() error("plain text") end, "^plain")
      failure(assert.error_matches, function() end, ".")
    end)
  end)

  describe("testing.error_of", function()
    it("returns the concur.Error a call raises", function()
      local err = testing.error_of(concur.sleep, 0 / 0)
      assert.equal("argument", err.kind)
    end)

    it("raises when the call succeeds or raises something else", function()
      assert.has_error(function() testing.error_of(function() end) end,
        "expected a concur.Error, but the call succeeded")
      assert.error_matches(function() testing.error_of(error, "x") end, "got: x")
    end)
  end)
end)

describe("the README's example spec", function()
  -- #nosan: busted runs in a plain interpreter, with the release build
  it("passes under busted #nosan", function()
    local root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
    if root:sub(1, 1) ~= "/" then
      local pwd = assert(io.popen(("cd %q && pwd"):format(root)))
      root = pwd:read("l")
      pwd:close()
    end
    local f = assert(io.open(root .. "/README.md"))
    local readme = f:read("a")
    f:close()
    local code = readme:match("## Testing with busted.-```lua\n(.-)```")
    assert.truthy(code, "no example spec in the README")
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute(("mkdir -p %q/spec"):format(dir)))
    local out = assert(io.open(dir .. "/spec/jobs_spec.lua", "w"))
    out:write(code)
    out:close()
    -- outside the checkout (no .busted there), with this build on the paths
    local function abs(path) return (path:gsub("%./", root .. "/")) .. ";;" end
    local p = assert(io.popen(("cd %q && LUA_PATH_5_4=%q LUA_CPATH_5_4=%q timeout -s KILL 60 %s 2>&1")
      :format(dir, abs(package.path), abs(package.cpath), "busted --lua=lua5.4 -o plainTerminal spec")))
    local result = p:read("a")
    p:close()
    os.execute(("rm -rf %q"):format(dir))
    assert.matches("3 successes / 0 failures / 0 errors / 0 pending", result)
  end)
end)
