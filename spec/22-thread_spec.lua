local helpers = require "helpers"
local concur = require "concur"

describe("concur.spawn", function()
  it("runs a function and join returns true and its results", function()
    local t = concur.spawn(function(a, b) return a * b, "x" end, 6, 7)
    assert.same({ true, 42, "x" }, { t:join() })
  end)

  it("joins false and the error object when the function fails", function()
    local ok, err = concur.spawn(function() error("oops") end):join()
    assert.is_false(ok)
    assert.equal("task", err.kind)
    assert.matches("oops", err.message)
    assert.matches("traceback", err.traceback)
  end)

  it("raises kind timeout when join times out", function()
    local t = concur.spawn(function() concur.sleep(0.2) return 1 end)
    helpers.raises("timeout", "join", t.join, t, 0.01)
    assert.is_true(t:alive())
    assert.same({ true, 1 }, { t:join() })
    assert.is_false(t:alive())
  end)

  it("names threads, and thread_name tells the running one", function()
    local t = concur.spawn { function() return concur.thread_name() end, name = "w1" }
    assert.equal("w1", t.name)
    assert.same({ true, "w1" }, { t:join() })
    assert.equal("main", concur.thread_name())
    assert.matches("^thread%-%d+$", concur.spawn(function() end).name)
  end)

  it("passes args in the table form", function()
    local t = concur.spawn { function(a, b) return a - b end, args = { 10, 3 } }
    assert.same({ true, 7 }, { t:join() })
  end)

  it("cancels a running thread #notsan", function()
    local started = concur.Event()
    local t = concur.spawn(function(ev) ev:set() while true do end end, started)
    started:wait()
    assert.is_true(t:alive())
    assert.is_true(t:cancel())
    local ok, err = t:join(5)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
  end)

  it("runs threads in parallel", function()
    -- two threads each wait for the other's signal through shared futures:
    -- only possible if both run at once
    local p <close> = concur.ThreadPool(2)
    local a = p:submit(function() concur.sleep(0.05) return "a" end)
    local t1 = concur.spawn(function(f) return f:result() end, a)
    local t2 = concur.spawn(function(f) return f:result() end, a)
    assert.same({ true, "a" }, { t1:join() })
    assert.same({ true, "a" }, { t2:join() })
  end)

  it("checks its arguments", function()
    helpers.raises("argument", "function expected", concur.spawn, 1)
    helpers.raises("argument", "unknown option 'nam'", concur.spawn, { function() end, nam = "x" })
    helpers.raises("transfer", "coroutine", concur.spawn, function() end, coroutine.create(print))
  end)

  describe("at interpreter exit", function()
    it("joins non-daemon threads", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        concur.spawn(function() concur.sleep(0.2) concur.log("worker done") end)
        print("main done")
      ]], 20)
      assert.is_true(ok, out)
      assert.matches("main done", out)
      assert.matches("%[thread%-%d+%] worker done", out)
    end)

    it("cancels daemon threads", function()
      local ok, code, out = helpers.run_lua([[
        local concur = require "concur"
        concur.spawn { function() while true do end end, daemon = true }
        concur.spawn { function() concur.sleep(3600) end, daemon = true }
        print("main done")
      ]], 20)
      assert.is_true(ok, out)
      assert.equal(0, code)
      assert.matches("main done", out)
    end)
  end)
end)

describe("concur basics", function()
  it("has a version", function()
    assert.matches("^concur %d+%.%d+%.%d+$", concur._VERSION)
  end)

  it("counts CPUs", function()
    assert.is_true(math.type(concur.cpu_count()) == "integer" and concur.cpu_count() >= 1)
  end)

  it("has a monotonic clock and sleep", function()
    local t0 = concur.monotonic()
    concur.sleep(0.02)
    assert.is_true(concur.monotonic() - t0 >= 0.02)
    helpers.raises("argument", "non-negative", concur.sleep, -1)
  end)

  it("logs lines that never interleave", function()
    local ok, _, out = helpers.run_lua([[
      local concur = require "concur"
      local p <close> = concur.ThreadPool(2)
      p:map(function(i) for k = 1, 50 do concur.log(("line %d.%d %s"):format(i, k, ("x"):rep(200))) end end,
            { 1, 2, 3, 4 }, { chunksize = 1 })
    ]], 20)
    assert.is_true(ok, out)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      assert.matches("^%[pool%-%d%] line %d%.%d+ x+$", line)
      n = n + 1
    end
    assert.equal(200, n)
  end)
end)

describe("concur.Error", function()
  it("tests kinds", function()
    local err = helpers.error_of(concur.sleep, "x")
    assert.is_true(concur.Error.is(err))
    assert.is_true(concur.Error.is(err, "argument"))
    assert.is_false(concur.Error.is(err, "timeout"))
    assert.is_false(concur.Error.is("a string"))
  end)

  it("formats like luaL_argerror", function()
    local p <close> = concur.ThreadPool(1)
    local err = helpers.error_of(function() return p:submit(42) end)
    assert.equal("bad argument #1 to 'submit' (function expected, got number)", err.message)
  end)

  it("prints the message, then the traceback", function()
    local err = concur.Error.new("task", "it failed", { traceback = "stack traceback:\n\tx" })
    assert.equal("it failed\nstack traceback:\n\tx", tostring(err))
    helpers.raises("argument", "unknown error kind", concur.Error.new, "nope", "m")
  end)

  it("stays a concur.Error when sent to another state", function()
    local t = concur.spawn(function()
      local ok, err = pcall(function() return concur.Queue(-1) end)
      return ok, err
    end)
    local ok, tok, err = t:join(10)
    assert.is_true(ok)
    assert.is_false(tok)
    assert.equal(getmetatable(concur.Error.new("argument", "x")), getmetatable(err))
    assert.is_true(concur.Error.is(err, "argument"))
    assert.truthy(tostring(err):find("maxsize", 1, true))
    local q = concur.Queue()
    q:put({ e = concur.Error.new("limit", "too big") })
    local back = select(2, concur.spawn(function(qq) return qq:get() end, q):join(10))
    assert.equal("too big", tostring(back.e))
  end)
end)
