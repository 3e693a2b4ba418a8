local helpers = require "helpers"
local concur = require "concur"

-- Runs a Lua snippet in a fresh interpreter with this checkout's paths and
-- the given environment prefix; returns ok, stdout, stderr.
local function run(code, env)
  local script, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local lua = os.getenv("CONCUR_LUA") or "lua5.4"
  local ok = os.execute(("%s LUA_PATH=%q LUA_CPATH=%q timeout -s KILL 30 %s %s >%s 2>%s")
    :format(env or "", package.path, package.cpath, lua, script, out, err))
  local function slurp(p)
    local h = assert(io.open(p))
    local s = h:read("a")
    h:close()
    os.remove(p)
    return s
  end
  os.remove(script)
  return ok, slurp(out), slurp(err)
end

-- Collects what reaches this state's sink while fn runs.
local function captured(fn)
  local got = {}
  local old = concur.log.sink(function(level, message, thread)
    got[#got + 1] = { level, message, thread }
  end)
  local ok, err = pcall(fn)
  concur.log.sink(old)
  assert(ok, err)
  return got
end

describe("concur.log", function()
  it("writes an info line tagged with the thread's name to stderr, not stdout", function()
    local ok, out, err = run([[
      local concur = require "concur"
      print("printed")
      concur.log("one", 2, nil, true)
      local t = concur.spawn { function() concur.log("from w1") end, name = "w1" }
      t:join()
    ]])
    assert.is_true(ok, err)
    assert.equal("printed\n", out)
    assert.equal("[main] one\t2\tnil\ttrue\n[w1] from w1\n", err)
  end)

  it("names the level on the lines that are not info", function()
    local ok, _, err = run([[
      local log = require("concur").log
      log.level("debug")
      log.debug("d") log.info("i") log.warn("w") log.error("e")
    ]])
    assert.is_true(ok, err)
    assert.equal("[main] debug: d\n[main] i\n[main] warn: w\n[main] error: e\n", err)
  end)

  it("drops the lines below the level, info by default", function()
    assert.equal("info", concur.log.level())
    local got = captured(function()
      concur.log.debug("hidden")
      concur.log("shown")
      assert.equal("info", concur.log.level("warn"))
      concur.log.info("hidden too")
      concur.log.warn("careful")
      concur.log.level("info")
    end)
    assert.same({ { "info", "shown", "main" }, { "warn", "careful", "main" } }, got)
  end)

  it("has one level for every thread of the process", function()
    local ok, _, err = run([[
      local concur = require "concur"
      concur.log.level("debug")
      local pool <close> = concur.ThreadPool { workers = 1, name = "p" }
      pool:submit(function() concur.log.debug("seen in a worker") end):result()
      concur.log.level("error")
      pool:submit(function() concur.log.warn("not seen") end):result()
    ]])
    assert.is_true(ok, err)
    assert.equal("[p_0] debug: seen in a worker\n", err)
  end)

  it("starts at CONCUR_LOG_LEVEL, in worker processes too", function()
    local ok, _, err = run([[
      local concur = require "concur"
      concur.log("not seen")
      concur.log.warn("seen")
      local pp <close> = concur.ProcessPool(1)
      pp:submit(function() concur.log("not seen either") concur.log.error("from a process") end):result()
    ]], "CONCUR_LOG_LEVEL=warn")
    assert.is_true(ok, err)
    assert.matches("^%[main%] warn: seen\n%[process%-%d+%] error: from a process\n$", err)
  end)

  it("crosses to threads and processes by name, as an upvalue", function()
    local ok, _, err = run([[
      local concur = require "concur"
      local log = concur.log
      local pool <close> = concur.ThreadPool { workers = 1, name = "t" }
      pool:submit(function() log.warn("thread") log("thread info") end):result()
      local pp <close> = concur.ProcessPool(1)
      pp:submit(function(l) l.warn("process") end, log):result()
    ]])
    assert.is_true(ok, err)
    assert.matches("^%[t_0%] warn: thread\n%[t_0%] thread info\n%[process%-%d+%] warn: process\n$", err)
  end)

  it("gives lines to this state's sink, and back to stderr after sink(nil)", function()
    local ok, _, err = run([[
      local concur = require "concur"
      local seen = {}
      local function sink(level, msg, thread) seen[#seen + 1] = level .. "|" .. msg .. "|" .. thread end
      assert(concur.log.sink(sink) == nil)
      concur.log.warn("to the sink")
      local t = concur.spawn { function() concur.log("a thread keeps stderr") end, name = "w" }
      t:join()
      concur.log.sink(nil)
      concur.log("to stderr")
      io.stderr:write(table.concat(seen, ","), "\n")
    ]])
    assert.is_true(ok, err)
    assert.equal("[w] a thread keeps stderr\n[main] to stderr\nwarn|to the sink|main\n", err)
  end)

  it("writes the line and the sink's error to stderr when the sink fails", function()
    local ok, _, err = run([[
      local concur = require "concur"
      concur.log.sink(function() error("sink broke") end)
      concur.log.warn("kept")
    ]])
    assert.is_true(ok, err)
    assert.matches("^%[main%] error: log sink failed: [^\n]*sink broke\n%[main%] warn: kept\n$", err)
  end)

  it("checks its arguments", function()
    helpers.raises("argument", "'debug', 'info', 'warn' or 'error' expected, got loud",
      concur.log.level, "loud")
    helpers.raises("argument", "function or nil expected, got number", concur.log.sink, 1)
    helpers.raises("argument", "a LuaLogging logger expected", concur.log.lualogging, "x")
    assert.equal("info", concur.log.level())
  end)

  it("never interleaves lines from many threads and processes", function()
    local ok, _, err = run([[
      local concur = require "concur"
      local line = ("x"):rep(300)
      local pool <close> = concur.ThreadPool(3)
      local pp <close> = concur.ProcessPool(2)
      local fs = {}
      for i = 1, 3 do fs[#fs + 1] = pool:submit(function() for k = 1, 200 do concur.log(i, k, line) end end) end
      for i = 4, 5 do fs[#fs + 1] = pp:submit(function() for k = 1, 200 do concur.log(i, k, line) end end) end
      for _, f in ipairs(fs) do f:result() end
    ]])
    assert.is_true(ok, err)
    local n = 0
    for l in err:gmatch("[^\n]*\n") do
      assert.matches("^%[[%w_-]+%] %d\t%d+\tx+\n$", l)
      assert.equal(300, #l:match("x+"))
      n = n + 1
    end
    assert.equal(1000, n)
  end)

  describe("with LuaLogging", function()
    -- LuaLogging is plain Lua; Debian's lua-logging installs it for Lua 5.1
    -- and 5.2 only, and it runs on 5.4 from there too.
    local logging
    setup(function()
      local ok, m = pcall(require, "logging")
      for _, v in ipairs { "5.3", "5.2", "5.1" } do
        if ok then break end
        local saved = package.path
        package.path = "/usr/share/lua/" .. v .. "/?.lua;" .. package.path
        ok, m = pcall(require, "logging")
        package.path = saved
      end
      logging = ok and m or nil
    end)

    it("sends each line to the logger's method of its level, tagged", function()
      if not logging then pending("needs LuaLogging (lua-logging)") return end
      local got = {}
      local logger = logging.new(function(_, level, msg) got[#got + 1] = level .. " " .. msg return true end)
      logger:setLevel(logging.DEBUG)
      got = {}   -- LuaLogging logs its own level change
      local old = concur.log.sink(concur.log.lualogging(logger))
      concur.log.level("debug")
      concur.log.debug("d 100%")
      concur.log("i")
      concur.log.warn("w")
      concur.log.error("e")
      concur.log.level("info")
      concur.log.sink(old)
      assert.same({ "DEBUG [main] d 100%", "INFO [main] i", "WARN [main] w", "ERROR [main] e" }, got)
    end)

    it("lets the logger's own level filter as well", function()
      if not logging then pending("needs LuaLogging (lua-logging)") return end
      local got = {}
      local logger = logging.new(function(_, level, msg) got[#got + 1] = level .. " " .. msg return true end)
      logger:setLevel(logging.ERROR)
      got = {}
      local old = concur.log.sink(concur.log.lualogging(logger))
      concur.log.warn("dropped by LuaLogging")
      concur.log.error("kept")
      concur.log.sink(old)
      assert.same({ "ERROR [main] kept" }, got)
    end)
  end)
end)
