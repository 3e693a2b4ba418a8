local helpers = require "helpers"
local concur = require "concur"
local core = require "concur.core"

-- copies values through the byte format, as processes will
local function roundtrip(...)
  return core.decode(core.encode(...))
end

-- copies values into a thread's state and back
local function through_thread(...)
  local t = concur.spawn(function(...) return ... end, ...)
  return select(2, t:join())
end

describe("the value codec", function()
  describe("numbers", function()
    it("keeps integers integers, at the extremes too", function()
      local a, b, c, d = roundtrip(math.mininteger, math.maxinteger, 0, (1 << 53) + 1)
      assert.equal(math.mininteger, a); assert.equal("integer", math.type(a))
      assert.equal(math.maxinteger, b); assert.equal("integer", math.type(b))
      assert.equal("integer", math.type(c))
      assert.equal((1 << 53) + 1, d)
    end)

    it("keeps floats bit for bit: -0.0, inf, NaN, 1.0", function()
      local nz, inf, ninf, nan, one = through_thread(-0.0, math.huge, -math.huge, 0/0, 1.0)
      assert.equal("float", math.type(nz))
      assert.equal(string.pack("<d", -0.0), string.pack("<d", nz))
      assert.equal(math.huge, inf)
      assert.equal(-math.huge, ninf)
      assert.is_true(nan ~= nan)
      assert.equal("float", math.type(one))
    end)
  end)

  describe("strings", function()
    it("are binary-safe", function()
      local s = "a\0b\255\r\n" .. string.rep("x", 100000)
      assert.equal(s, (roundtrip(s)))
      assert.equal(s, (through_thread(s)))
    end)
  end)

  describe("tables", function()
    it("copy nested tables with every key type", function()
      local t = { 1, 2, nil, 4, x = { y = { z = "deep" } }, [true] = "yes", [2.5] = "f" }
      local c = roundtrip(t)
      assert.same(t, c)
      assert.are_not.equal(t, c)
    end)

    it("keep shared sub-tables shared", function()
      local shared = { n = 1 }
      local c = through_thread({ a = shared, b = shared })
      assert.equal(c.a, c.b)
    end)

    it("keep cycles", function()
      local t = { name = "root" }
      t.self = t
      t.child = { parent = t }
      local c = roundtrip(t)
      assert.equal(c, c.self)
      assert.equal(c, c.child.parent)
    end)

    it("keep identity across several values of one message", function()
      local shared = {}
      local a, b = through_thread(shared, shared)
      assert.equal(a, b)
    end)

    it("refuse nesting deeper than the bound, without crashing", function()
      local t = {}
      local cur = t
      for _ = 1, 10000 do cur.next = {}; cur = cur.next end
      local err = helpers.raises("limit", "nested", core.encode, t)
      assert.matches("value%[1%]%.next%.next", err.message)
      assert.is_true(#err.message < 200)
    end)
  end)

  describe("functions", function()
    it("copy Lua functions with their upvalues", function()
      local base, mult = 10, 3
      local f = function(x) return base + x * mult end
      local g = roundtrip(f)
      assert.equal(16, g(2))
    end)

    it("run right in a worker that has seen more distinct code than its cache keeps", function()
      local pool <close> = concur.ThreadPool(1)
      local fs = {}
      for i = 1, 1100 do   -- each a different chunk: a new cache entry
        fs[i] = pool:submit(assert(load("return " .. i .. " * 2")))
      end
      for i = 1, 1100 do assert.equal(i * 2, fs[i]:result(10)) end
      assert.equal(6, pool:submit(assert(load("return 3 * 2"))):result(10))
    end)

    it("bind _ENV to the receiver's globals", function()
      local t = concur.spawn(function() return type(string), _G == _ENV, rawget(_G, "describe") end)
      local ok, ty, same, d = t:join()
      assert.is_true(ok)
      assert.equal("table", ty)
      assert.is_true(same)
      assert.is_nil(d)   -- busted's globals do not leak into the thread
    end)

    it("keep upvalues shared between two closures shared", function()
      local n = 0
      local function inc() n = n + 1; return n end
      local function get() return n end
      local t = concur.spawn(function(i, g) i(); i(); return g() end, inc, get)
      assert.same({ true, 2 }, { t:join() })
      assert.equal(0, n)   -- a copy: the sender's upvalue is untouched
    end)

    it("copy recursive local functions", function()
      local function fact(k) if k <= 1 then return 1 end return k * fact(k - 1) end
      assert.equal(3628800, (roundtrip(fact))(10))
    end)

    it("find C functions of the standard libraries by name", function()
      local fmt, mx = through_thread(string.format, math.max)
      assert.equal(string.format, fmt)
      assert.equal(math.max, mx)
      local t = concur.spawn(function(f) return f("%d-%s", 7, "x") end, string.format)
      assert.same({ true, "7-x" }, { t:join() })
    end)

    it("prefer the standard libraries' names to a script's own module holding the same function", function()
      -- modules only this state has, each holding standard functions: whatever
      -- the order of package.loaded, the names sent are the standard ones
      for i = 1, 40 do
        package.loaded["local_mod_" .. i] = { fmt = string.format, mx = math.max, str = string }
      end
      local ok, err = pcall(function()
        -- the module first: names are built again once package.loaded changed
        local t = concur.spawn(function(s, f, m) return f("%d-%s", 7, "x"), m(1, 9), s.rep("a", 2) end,
                               string, string.format, math.max)
        return { t:join() }
      end)
      for i = 1, 40 do package.loaded["local_mod_" .. i] = nil end
      assert.is_true(ok, tostring(err))
      assert.same({ true, "7-x", 9, "aa" }, err)
    end)

    it("name the module and the path of a C function the receiver cannot find", function()
      local w = coroutine.wrap(function() end)   -- a C closure, found only in this module
      package.loaded["only_in_this_state"] = { w = w }
      local t = concur.spawn(function() return w end)
      local ok, err = t:join()
      package.loaded["only_in_this_state"] = nil
      assert.is_false(ok)
      assert.equal("transfer", err.kind)
      for _, text in ipairs { "cannot receive the C function only_in_this_state.w",
          "(at fn<upvalue w>)", "module 'only_in_this_state' not found" } do
        assert.truthy(err.message:find(text, 1, true), err.message)
      end
    end)

    it("refuse C functions that no loaded module exports", function()
      local co = coroutine.wrap(function() end)   -- a C closure, in no module
      helpers.raises("transfer", "C function", core.encode, co)
    end)
  end)

  describe("values that cannot be sent", function()
    it("name the path of a coroutine", function()
      local err = helpers.raises("transfer", "coroutine", concur.spawn,
        function() end, 1, { cb = coroutine.create(print) })
      assert.matches("args%[2%]%.cb", err.message)
    end)

    it("name the path of a foreign userdata", function()
      local err = helpers.raises("transfer", "userdata", core.encode, { f = io.stdout })
      assert.matches("value%[1%]%.f", err.message)
    end)

    it("name upvalues", function()
      local co = coroutine.create(print)
      local f = function() return co end
      local err = helpers.raises("transfer", "coroutine", core.encode, f)
      assert.matches("upvalue co", err.message)
    end)

    it("leave the sender usable after a failure", function()
      pcall(core.encode, { coroutine.create(print) })
      assert.same({ 1, { 2 } }, { roundtrip(1, { 2 }) })
    end)
  end)

  describe("the decoder", function()
    it("rejects truncated messages with a transfer error", function()
      local msg = core.encode({ a = { 1, 2, 3 }, s = "hello", f = function() return 1 end })
      for cut = 0, #msg - 1 do
        local ok, err = pcall(core.decode, msg:sub(1, cut))
        if not ok then
          assert.equal("transfer", err.kind)
        end
      end
    end)

    it("rejects random bytes without crashing", function()
      math.randomseed(42)
      local bad = 0
      for _ = 1, 3000 do
        local n = math.random(1, 40)
        local bytes = {}
        for i = 1, n do bytes[i] = string.char(math.random(0, 255)) end
        local ok, err = pcall(core.decode, table.concat(bytes))
        if not ok then
          assert.equal("transfer", err.kind)
          bad = bad + 1
        end
      end
      assert.is_true(bad > 2000)
    end)

    it("refuses bytecode whose check does not verify", function()
      local msg = core.encode(function() return 42 end)
      -- flip one byte of the hash (right after the 'F' tag)
      local forged = msg:sub(1, 1) .. string.char((msg:byte(2) + 1) % 256) .. msg:sub(3)
      helpers.raises("transfer", "bytecode check failed", core.decode, forged)
    end)

    it("refuses object references in a plain message", function()
      helpers.raises("transfer", "bad object index", core.decode, "o\0")
    end)
  end)
end)
