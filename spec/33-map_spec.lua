-- concur.Map: a dictionary shared by reference between threads, pool tasks
-- and processes; and the core under it, alone (a C program, no Lua).
local helpers = require "helpers"
local concur = helpers.concur
local raises = helpers.raises

describe("concur.Map", function()
  describe("in one state", function()
    it("gets, sets, deletes and tells whether a key is there", function()
      local m = concur.Map()
      assert.is_nil(m:get("a"))
      assert.is_false(m:has("a"))
      m:set("a", 1)
      m:set(2, "two")
      m:set(true, { nested = { 1, 2, 3 } })
      assert.equal(1, m:get("a"))
      assert.equal("two", m:get(2))
      assert.same({ nested = { 1, 2, 3 } }, m:get(true))
      assert.is_true(m:has("a"))
      assert.equal(3, m:len())
      assert.equal(3, #m)
      assert.is_true(m:delete("a"))
      assert.is_false(m:delete("a"))
      assert.is_nil(m:get("a"))
      m:set(2, nil)   -- nil deletes
      assert.is_false(m:has(2))
      assert.equal(1, #m)
    end)

    it("keeps values exactly: integers, floats, strings with zeros, tables, functions", function()
      local m = concur.Map()
      local long = ("x\0y"):rep(1000)
      m:set("i", math.maxinteger)
      m:set("f", 0.1)
      m:set("nz", -0.0)
      m:set("s", long)
      m:set("short", "")
      m:set("fn", function(x) return x + 1 end)
      m:set("t", { 1, "two", { three = 3 } })
      assert.equal(math.maxinteger, m:get("i"))
      assert.equal("integer", math.type(m:get("i")))
      assert.equal(0.1, m:get("f"))
      assert.equal(string.pack("<d", -0.0), string.pack("<d", m:get("nz")))
      assert.equal(long, m:get("s"))
      assert.equal("", m:get("short"))
      assert.equal(6, m:get("fn")(5))
      assert.same({ 1, "two", { three = 3 } }, m:get("t"))
    end)

    it("replaces a value of any size by one of any other", function()
      local m = concur.Map()
      local sizes = { 1, 10, 60, 61, 62, 63, 64, 65, 100, 5000, 3, 70, 0 }
      for _, n in ipairs(sizes) do
        local v = ("v"):rep(n)
        m:set("k", v)
        assert.equal(v, m:get("k"))
      end
      m:set("k", { big = ("b"):rep(10000) })
      m:set("k", 7)
      assert.equal(7, m:get("k"))
      assert.equal(1, m:len())
    end)

    it("takes a float key with an integer value as that integer, as a table does", function()
      local m = concur.Map()
      m:set(3.0, "three")
      assert.equal("three", m:get(3))
      assert.same({ 3 }, m:keys())
      assert.equal("integer", math.type(m:keys()[1]))
    end)

    it("keeps keys of different types apart", function()
      local m = concur.Map()
      m:set(1, "int")
      m:set("1", "string")
      m:set(true, "bool")
      m:set("true", "string true")
      assert.equal("int", m:get(1))
      assert.equal("string", m:get("1"))
      assert.equal("bool", m:get(true))
      assert.equal("string true", m:get("true"))
      assert.equal(4, #m)
    end)

    it("holds many keys, through growth and deletions", function()
      local m = concur.Map()
      for i = 1, 5000 do m:set(i, i * 2) end
      for i = 1, 5000, 2 do assert.is_true(m:delete(i)) end
      assert.equal(2500, #m)
      for i = 1, 5000 do
        if i % 2 == 0 then assert.equal(i * 2, m:get(i)) else assert.is_nil(m:get(i)) end
      end
      for i = 1, 5000, 2 do m:set(i, -i) end
      assert.equal(5000, #m)
      assert.equal(-4999, m:get(4999))
    end)

    it("incr adds atomically, from 0 when absent; integers stay integers", function()
      local m = concur.Map()
      assert.equal(1, m:incr("n"))
      assert.equal(11, m:incr("n", 10))
      assert.equal("integer", math.type(m:get("n")))
      assert.equal(11.5, m:incr("n", 0.5))
      assert.equal(-2, m:incr("neg", -2))
      assert.equal(math.mininteger, m:incr("wrap", math.maxinteger) and m:incr("wrap", 1) and m:get("wrap"))
    end)

    it("incr on a value that is not a number raises kind argument and changes nothing", function()
      local m = concur.Map()
      m:set("s", "text")
      m:set("t", { 1 })
      raises("argument", "not a number", m.incr, m, "s")
      raises("argument", "not a number", m.incr, m, "t", 1)
      raises("argument", "number expected", m.incr, m, "n", "1")
      assert.equal("text", m:get("s"))
      assert.same({ 1 }, m:get("t"))
      assert.is_false(m:has("n"))
    end)

    it("update runs fn(old) and writes its result; nil deletes", function()
      local m = concur.Map()
      assert.same({ 1 }, m:update("list", function(old)
        assert.is_nil(old)
        return { 1 }
      end))
      m:update("list", function(old) old[#old + 1] = 2 return old end)
      assert.same({ 1, 2 }, m:get("list"))
      assert.is_nil(m:update("list", function() return nil end))
      assert.is_false(m:has("list"))
      assert.is_nil(m:update("never", function() return nil end))
      assert.equal(0, #m)
    end)

    it("update leaves the key as it was when fn raises", function()
      local m = concur.Map()
      m:set("k", "kept")
      assert.has_error(function() m:update("k", function() error("no", 0) end) end, "no")
      assert.equal("kept", m:get("k"))
      raises("argument", "function expected", m.update, m, "k", 5)
    end)

    it("setdefault sets only an absent key and returns the value there", function()
      local m = concur.Map()
      assert.equal("first", m:setdefault("k", "first"))
      assert.equal("first", m:setdefault("k", "second"))
      assert.same({ a = 1 }, m:setdefault("t", { a = 1 }))
      assert.same({ a = 1 }, m:setdefault("t", { b = 2 }))
      raises("argument", "value expected", m.setdefault, m, "x")
    end)

    it("keys and pairs are snapshots", function()
      local m = concur.Map()
      for i = 1, 100 do m:set("k" .. i, i) end
      local keys = m:keys()
      assert.equal(100, #keys)
      local seen, sum = {}, 0
      for k, v in m:pairs() do
        m:set("k" .. v, -1)          -- writes during the loop are not seen
        m:set("new" .. v, v)
        seen[k] = true
        sum = sum + v
      end
      assert.equal(5050, sum)
      for _, k in ipairs(keys) do assert.is_true(seen[k]) end
      local n = 0
      for _ in pairs(m) do n = n + 1 end   -- __pairs
      assert.equal(200, n)
    end)

    it("clear removes every key", function()
      local m = concur.Map()
      for i = 1, 300 do m:set(i, i) end
      m:clear()
      assert.equal(0, #m)
      assert.same({}, m:keys())
      m:set(1, "again")
      assert.equal("again", m:get(1))
    end)

    it("gives its memory back", function()
      collectgarbage()
      local before = require("concur.core")._shm_used()
      do
        local m = concur.Map()
        for i = 1, 2000 do m:set(i, ("v"):rep(i % 200)) end
        for i = 1, 500 do m:delete(i) end
        m:set("obj", { q = concur.Queue() })
      end
      collectgarbage()
      collectgarbage()
      assert.equal(before, require("concur.core")._shm_used())
    end)
  end)

  describe("bad input", function()
    it("raises kind argument for a key that is not a string, integer or boolean, and changes nothing", function()
      local m = concur.Map()
      m:set("k", 1)
      for _, bad in ipairs { 1.5, 0 / 0, math.huge, {}, function() end, concur.Lock() } do
        raises("argument", "key must be a string, an integer or a boolean", m.set, m, bad, 1)
        raises("argument", "key must be", m.get, m, bad)
        raises("argument", "key must be", m.incr, m, bad)
        raises("argument", "key must be", m.update, m, bad, function() return 1 end)
        raises("argument", "key must be", m.setdefault, m, bad, 1)
        raises("argument", "key must be", m.delete, m, bad)
        raises("argument", "key must be", m.has, m, bad)
      end
      raises("argument", "key must be", m.get, m, nil)
      assert.same({ "k" }, m:keys())
      assert.equal(1, m:get("k"))
    end)

    it("raises kind transfer for a value that cannot cross, and changes nothing", function()
      local m = concur.Map()
      m:set("k", "old")
      local co = coroutine.create(function() end)
      raises("transfer", "coroutine", m.set, m, "k", co)
      raises("transfer", "coroutine", m.set, m, "k", { inner = co })
      raises("transfer", "coroutine", m.update, m, "k", function() return co end)
      assert.equal("old", m:get("k"))
    end)

    it("raises kind argument for a bad self and kind closed after <close>", function()
      local m = concur.Map()
      raises("argument", "concur.Map expected", m.get, {}, "k")
      local kept
      do
        local mm <close> = concur.Map()
        kept = mm
      end
      raises("closed", "closed", kept.get, kept, "k")
    end)
  end)

  describe("between threads", function()
    it("is one map for every thread: the trap of upvalue copies, and its fix", function()
      local pool <close> = concur.ThreadPool(4)
      local count, seen = 0, {}
      pool:map(function(u) count = count + 1; seen[u] = true end, { "a", "b", "c" })
      assert.equal(0, count)          -- the tasks changed their own copies
      assert.same({}, seen)
      local m = concur.Map()
      pool:map(function(u) m:incr("count"); m:set(u, true) end, { "a", "b", "c" })
      assert.equal(3, m:get("count"))
      assert.is_true(m:get("a") and m:get("b") and m:get("c"))
    end)

    it("loses no incr and no update from 4 threads", function()
      local pool <close> = concur.ThreadPool(4)
      local m = concur.Map()
      local n = helpers.size(2000, 200)
      pool:map(function(i)
        m:incr("hits")
        m:incr("key" .. (i % 7))
        m:update("list", function(old) old = old or {}; old[#old + 1] = i; return old end)
      end, (function() local t = {} for i = 1, n do t[i] = i end return t end)(), { chunksize = 10 })
      assert.equal(n, m:get("hits"))
      local total = 0
      for k = 0, 6 do total = total + m:get("key" .. k) end
      assert.equal(n, total)
      local list = m:get("list")
      assert.equal(n, #list)
      table.sort(list)
      for i = 1, n do assert.equal(i, list[i]) end
    end)

    it("setdefault gives every thread the one value that won", function()
      local pool <close> = concur.ThreadPool(4)
      local m = concur.Map()
      local got = pool:map(function(i) return m:setdefault("winner", i) end,
                           { 1, 2, 3, 4, 5, 6, 7, 8 }, { chunksize = 1 })
      for _, v in ipairs(got) do assert.equal(m:get("winner"), v) end
    end)

    it("holds shared objects by reference", function()
      local m = concur.Map()
      local q = concur.Queue()
      m:set("q", q)
      local t = concur.spawn(function(mm) mm:get("q"):put("through the map") end, m)
      assert.is_true(t:join(10))
      assert.equal("through the map", q:get(0))
    end)
  end)

  describe("between processes", function()
    it("is one map for every process of the tree", function()
      local pp <close> = concur.ProcessPool(2)
      local m = concur.Map()
      m:set("from parent", { 1, 2 })
      local n = 200
      local items = {}
      for i = 1, n do items[i] = i end
      pp:map(function(i)
        m:incr("hits")
        m:update("sum", function(old) return (old or 0) + i end)
        if i == 1 then m:set("child saw", m:get("from parent")) end
      end, items, { chunksize = 5 })
      assert.equal(n, m:get("hits"))
      assert.equal(n * (n + 1) // 2, m:get("sum"))
      assert.same({ 1, 2 }, m:get("child saw"))
      local p = concur.Process(function(mm) return mm:len(), mm:keys() end, m)
      local ok, len, keys = p:join()
      assert.is_true(ok)
      assert.equal(#m, len)
      assert.equal(#m, #keys)
    end)

    it("refuses a value holding an in-process object once shared", function()
      local pool <close> = concur.ThreadPool(1)
      local fut = pool:submit(function() return 1 end)
      local m = concur.Map()
      m:set("f", fut)                   -- kept by pointer while in one process
      assert.equal(1, m:get("f"):result())
      raises("transfer", "Map holding an object that cannot leave", concur.Process,
             function(mm) return mm:len() end, m)
      m:delete("f")
      local p = concur.Process(function(mm) return mm:len() end, m)
      assert.same({ true, 0 }, { p:join() })
      raises("transfer", "shared with another process", m.set, m, "g", fut)
      assert.is_false(m:has("g"))
    end)
  end)

  describe("the core alone", function()
    it("works without Lua (a C program over csrc/core/map.c) #nosan", function()
      local out = os.tmpname()
      local cc = ("cc -O1 -g -Wall -Wextra -pthread -Icsrc/core -o %s spec/helpers/map_core.c "
        .. "csrc/core/map.c csrc/core/shbuf.c csrc/core/shobj.c csrc/core/arena.c "
        .. "csrc/core/holdings.c csrc/core/wire.c csrc/core/sync.c csrc/core/wait.c csrc/core/sys.c 2>&1"):format(out)
      local p = io.popen(cc)
      local msg = p:read("a")
      assert.is_true(p:close(), msg)
      p = io.popen(out .. " 2>&1")
      msg = p:read("a")
      local ok = p:close()
      os.remove(out)
      assert.is_true(ok, msg)
      assert.matches("map core: ok", msg)
    end)
  end)
end)
