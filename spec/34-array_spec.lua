-- concur.Array: a fixed-size array of numbers shared by reference between
-- threads, pool tasks and processes (Python's multiprocessing.Array).
local helpers = require "helpers"
local concur = helpers.concur
local raises = helpers.raises

describe("concur.Array", function()
  describe("in one state", function()
    it("makes n zeros of its type, or fills them from init", function()
      local a = concur.Array(3, "int")
      assert.equal(3, #a)
      assert.same({ 0, 0, 0 }, a:totable())
      assert.equal("integer", math.type(a[1]))
      local f = concur.Array(2, "float", 1.5)
      assert.same({ 1.5, 1.5 }, f:totable())
      assert.equal("float", math.type(concur.Array(1, "float")[1]))
      assert.same({ 1, 2, 0, 0 }, concur.Array(4, "int", { 1, 2 }):totable())
      assert.same({ 7, 7 }, concur.Array(2, "int", 7.0):totable())
      assert.equal(0, #concur.Array(0, "int"))
      assert.equal("int", a:type())
      assert.equal("float", f:type())
    end)

    it("reads and writes a[i], 1-based", function()
      local a = concur.Array(5, "int")
      for i = 1, 5 do a[i] = i * i end
      assert.same({ 1, 4, 9, 16, 25 }, a:totable())
      assert.equal(16, a[4])
      a[2.0] = 3.0            -- integral floats are integers
      assert.equal(3, a[2])
      assert.equal("integer", math.type(a[2]))
      local f = concur.Array(2, "float")
      f[1] = 3                -- an integer in a float array is a float
      assert.equal("float", math.type(f[1]))
      assert.equal(3.0, f[1])
      f[2] = -0.25
      assert.equal(-0.25, f[2])
    end)

    it("adds atomically and returns the new value; ints wrap as Lua's", function()
      local a = concur.Array(2, "int", { math.maxinteger, 5 })
      assert.equal(math.mininteger, a:add(1, 1))
      assert.equal(2, a:add(2, -3))
      local f = concur.Array(1, "float")
      assert.equal(0.5, f:add(1, 0.5))
      assert.equal(1.5, f:add(1, 1))
    end)

    it("compares and swaps by value", function()
      local a = concur.Array(1, "int", 10)
      assert.is_false(a:cas(1, 11, 20))
      assert.equal(10, a[1])
      assert.is_true(a:cas(1, 10, 20))
      assert.equal(20, a[1])
      assert.is_false(a:cas(1, 20.5, 30))   -- never equal to an int
      local f = concur.Array(1, "float", 0.0)
      assert.is_true(f:cas(1, -0.0, 1.0))  -- 0.0 == -0.0
      assert.is_false(f:cas(1, 0 / 0, 2.0))
      assert.equal(1.0, f[1])
    end)

    it("works when concur.core is opened again in the same state", function()
      local saved = package.loaded["concur.core"]
      package.loaded["concur.core"] = nil
      local ok, core2 = pcall(require, "concur.core")
      package.loaded["concur.core"] = saved
      assert.is_true(ok, tostring(core2))
      local a = core2.Array(2, "int", { 4, 5 })
      assert.equal(5, a[2])
      assert.equal(9, a:add(1, 5))
    end)

    it("still finds its methods by name", function()
      local a = concur.Array(1, "int")
      assert.is_function(a.add)
      assert.is_nil(a.nothing)
    end)
  end)

  describe("bad input: kind argument, nothing changed", function()
    it("an index out of range or not an integer", function()
      local a = concur.Array(3, "int", { 1, 2, 3 })
      for _, i in ipairs { 0, 4, -1, math.maxinteger, 1.5 } do
        raises("argument", nil, function() return a[i] end)
        raises("argument", nil, function() a[i] = 9 end)
        raises("argument", nil, a.add, a, i, 1)
        raises("argument", nil, a.cas, a, i, 1, 9)
      end
      raises("argument", "out of range (1..3)", function() return a[4] end)
      raises("argument", "index must be an integer", a.add, a, "1", 1)
      assert.same({ 1, 2, 3 }, a:totable())
    end)

    it("a value that is not a number, or not an integer in an int array", function()
      local a = concur.Array(2, "int", { 1, 2 })
      raises("argument", "number expected", function() a[1] = "7" end)
      raises("argument", "number expected", function() a[1] = nil end)
      raises("argument", "no integer representation", function() a[1] = 1.5 end)
      raises("argument", "no integer representation", a.add, a, 1, 0.5)
      raises("argument", "number expected", a.cas, a, 1, "1", 2)
      raises("argument", "number expected", a.cas, a, 1, 1, {})
      assert.same({ 1, 2 }, a:totable())
      local f = concur.Array(1, "float")
      raises("argument", "number expected", function() f[1] = true end)
      assert.same({ 0.0 }, f:totable())
    end)

    it("bad sizes, types and initial values", function()
      raises("argument", "size must be", concur.Array, -1, "int")
      raises("argument", "size must be", concur.Array, 1 << 40, "int")
      raises("argument", "type must be 'int' or 'float'", concur.Array, 3, "double")
      raises("argument", "type must be 'int' or 'float'", concur.Array, 3)
      raises("argument", "3 initial values for 2 elements", concur.Array, 2, "int", { 1, 2, 3 })
      raises("argument", "init[2] is not a number", concur.Array, 2, "int", { 1, "x" })
      raises("argument", "init[1] is not an integer", concur.Array, 2, "int", { 0.5 })
      raises("argument", "no integer representation", concur.Array, 2, "int", 0.5)
      raises("argument", "number or table expected", concur.Array, 2, "int", "0")
    end)
  end)

  describe("shared", function()
    it("between threads: no add lost", function()
      local pool <close> = concur.ThreadPool(4)
      local a = concur.Array(4, "int")
      local f = concur.Array(1, "float")
      local items = {}
      for i = 1, helpers.size(4000, 400) do items[i] = i end
      pool:map(function(i) a:add(i % 4 + 1, 1) f:add(1, 0.5) end, items, { chunksize = 10 })
      local t = a:totable()
      assert.equal(#items, t[1] + t[2] + t[3] + t[4])
      assert.equal(#items / 2, f[1])
    end)

    it("between processes: one array for the whole tree", function()
      local pp <close> = concur.ProcessPool(2)
      local a = concur.Array(10, "int")
      pp:map(function(i) a[i] = i * 10 a:add(10, 1) end, { 1, 2, 3, 4, 5, 6, 7, 8, 9 })
      assert.same({ 10, 20, 30, 40, 50, 60, 70, 80, 90, 9 }, a:totable())
      local p = concur.Process(function(arr) return arr:cas(1, 10, -1), #arr end, a)
      assert.same({ true, true, 10 }, { p:join() })
      assert.equal(-1, a[1])
    end)
  end)
end)
