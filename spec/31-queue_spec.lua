local helpers = require "helpers"
local sync = require "helpers.sync"
local concur = require "concur"

local raises = helpers.raises

local function drain(q)
  local out = {}
  while true do
    local ok, v = q:try_get()
    if not ok then return out end
    out[#out + 1] = v
  end
end

describe("Queue", function()

  describe("construction", function()
    it("is unbounded FIFO by default", function()
      local q = concur.Queue()
      for i = 1, 100 do q:put(i) end
      assert.is_false(q:full())
      assert.equal(100, q:size())
    end)

    it("takes maxsize as its only argument", function()
      local q = concur.Queue(1)
      q:put(1)
      assert.is_true(q:full())
    end)

    it("raises kind argument for an unknown option", function()
      raises("argument", "unknown option 'bogus'", concur.Queue, { bogus = 1 })
    end)

    it("raises kind argument for an unknown order", function()
      raises("argument", "order must be 'fifo', 'lifo' or 'priority'", concur.Queue,
        { order = "random" })
    end)

    it("takes a maxsize of 0 or less as unbounded, as Python", function()
      for _, q in ipairs { concur.Queue(0), concur.Queue(-1), concur.Queue { maxsize = -5 } } do
        for i = 1, 100 do assert.is_true(q:try_put(i)) end
        assert.is_false(q:full())
        assert.equal(100, q:size())
      end
    end)

    it("raises kind argument for a non-integer maxsize", function()
      raises("argument", "maxsize must be an integer", concur.Queue, { maxsize = 1.5 })
    end)
  end)

  describe("order", function()
    it("gives items first in, first out", function()
      local q = concur.Queue { order = "fifo" }
      for i = 1, 5 do q:put(i) end
      assert.same({ 1, 2, 3, 4, 5 }, drain(q))
    end)

    it("gives items last in, first out", function()
      local q = concur.Queue { order = "lifo" }
      for i = 1, 5 do q:put(i) end
      assert.same({ 5, 4, 3, 2, 1 }, drain(q))
    end)

    it("gives the lowest priority number first", function()
      local q = concur.Queue { order = "priority" }
      for _, p in ipairs { 5, 1, 4, 2, 3, -1.5 } do q:put(p) end
      assert.same({ -1.5, 1, 2, 3, 4, 5 }, drain(q))
    end)

    it("orders tables by their priority field, FIFO among equals", function()
      local q = concur.Queue { order = "priority" }
      local input = { { 2, "a" }, { 1, "b" }, { 2, "c" }, { 1, "d" }, { 2, "e" }, { 1, "f" } }
      for _, p in ipairs(input) do q:put { priority = p[1], name = p[2] } end
      local names = {}
      for _, v in ipairs(drain(q)) do names[#names + 1] = v.name end
      assert.same({ "b", "d", "f", "a", "c", "e" }, names)
    end)

    it("stays stable among equals across many items", function()
      local q = concur.Queue { order = "priority" }
      for i = 1, 1000 do q:put { priority = i % 3, seq = i } end
      local last = { [0] = 0, [1] = 0, [2] = 0 }
      local prev = -1
      for _, v in ipairs(drain(q)) do
        assert.is_true(v.priority >= prev)
        assert.is_true(v.seq > last[v.priority])
        prev, last[v.priority] = v.priority, v.seq
      end
    end)

    it("keeps LIFO order in a bounded queue", function()
      local q = concur.Queue { maxsize = 3, order = "lifo" }
      for i = 1, 3 do q:put(i) end
      assert.is_false(q:try_put(4))
      assert.equal(3, q:get())
      q:put(5)
      assert.same({ 5, 2, 1 }, drain(q))
    end)

    it("keeps every order while the store grows and shrinks", function()
      for _, order in ipairs { "fifo", "lifo", "priority" } do
        local q = concur.Queue { order = order }
        local expect = {}
        for round = 1, 3 do   -- fill to 5000, drain to 100, interleaved
          for i = 1, 5000 do q:put(round * 10000 + i) end
          for _ = 1, 4900 do
            local v = q:get(0)
            expect[#expect + 1] = v
          end
        end
        for _, v in ipairs(drain(q)) do expect[#expect + 1] = v end
        assert.equal(15000, #expect)
        if order ~= "lifo" then   -- each round puts larger numbers
          for i = 2, #expect do assert(expect[i] > expect[i - 1], order) end
        end
        local seen = {}
        for _, v in ipairs(expect) do seen[v] = true end
        for round = 1, 3 do
          for i = 1, 5000 do assert(seen[round * 10000 + i], order) end
        end
      end
    end)

    it("raises kind argument for an item without a priority", function()
      local q = concur.Queue { order = "priority" }
      raises("argument", "number or table with a numeric field 'priority' expected, got string",
        q.put, q, "x")
      raises("argument", "got table", q.put, q, { priority = "high" })
    end)

    it("raises kind argument for a NaN priority", function()
      local q = concur.Queue { order = "priority" }
      raises("argument", "priority is NaN", q.put, q, 0 / 0)
    end)
  end)

  describe("values", function()
    it("crosses by copy, keeping integers, floats and nested tables", function()
      local q = concur.Queue()
      local t = { 1, 2.0, "s\0b", true, { x = { y = "z" } } }
      q:put(t)
      local got = q:get()
      assert.same(t, got)
      assert.equal("integer", math.type(got[1]))
      assert.equal("float", math.type(got[2]))
      assert.are_not.equal(t, got)
    end)

    it("carries false and nil", function()
      local q = concur.Queue()
      q:put(false)
      q:put(nil)
      assert.is_false(q:get())
      assert.is_nil(q:get())
      assert.is_true(q:empty())
    end)

    it("carries shared objects by reference", function()
      local q, l = concur.Queue(), concur.Lock()
      q:put { lock = l }
      local got = q:get().lock
      got:acquire()
      assert.is_true(l:locked())
    end)

    it("outlives the thread that made it and filled it", function()
      local t = concur.spawn(function()
        local c = require "concur"
        local q = c.Queue()
        for i = 1, 3 do q:put({ i }) end
        return q
      end)
      local _, q = t:join(10)
      collectgarbage()
      assert.same({ { 1 }, { 2 }, { 3 } }, drain(q))
    end)

    it("carries queues inside queues", function()
      local outer, inner = concur.Queue(), concur.Queue()
      outer:put(inner)
      outer:get():put("through the inner one")
      assert.equal("through the inner one", inner:get(0))
    end)

    it("raises kind transfer for a coroutine and keeps the queue empty", function()
      local q = concur.Queue()
      raises("transfer", nil, q.put, q, coroutine.create(print))
      assert.is_true(q:empty())
    end)

    it("raises kind argument when put has no value", function()
      local q = concur.Queue()
      raises("argument", "value expected", q.put, q)
    end)

    describe("an item one consumer cannot decode", function()
      -- A module table travels by name; this one exists only in this state,
      -- so a thread cannot decode an item that holds it, and this state can.
      local NAME = "concur_spec_module_only_here"
      local mod = { priority = 1 }
      setup(function() package.loaded[NAME] = mod end)
      teardown(function() package.loaded[NAME] = nil end)

      local function failing_get(q)
        local ok, got, kind, msg = concur.spawn(function(qq)
          local gok, err = pcall(qq.get, qq)
          return gok, err.kind, err.message
        end, q):join(10)
        assert.is_true(ok)
        assert.is_false(got)
        assert.equal("transfer", kind, msg)
        assert.matches("module", msg, 1, true)
        return msg
      end

      for _, case in ipairs {
        { order = "fifo", puts = { mod, { priority = 2, v = "after" } } },
        { order = "lifo", puts = { { priority = 2, v = "before" }, mod } },
        { order = "priority", puts = { { priority = 2, v = "after" }, mod } },
      } do
        it("stays in its place for the others (" .. case.order .. ")", function()
          local q = concur.Queue { order = case.order }
          for _, v in ipairs(case.puts) do q:put(v) end
          local msg = failing_get(q)
          assert.equal(2, q:size())
          assert.matches("the item stays in the queue", msg, 1, true)
          assert.equal(mod, q:get(0))          -- the very module, by name
          assert.equal(2, q:get(0).priority)   -- then the other item
          assert.is_true(q:empty())
        end)
      end

      it("stays for try_get, items() and a closed queue too", function()
        local q = concur.Queue()
        q:put(mod)
        q:close()
        local ok, err = concur.spawn(function(qq)
          local r = {}
          r[1] = select(2, pcall(qq.try_get, qq)).kind
          r[2] = select(2, pcall(function() for _ in qq:items() do end end)).kind
          return r
        end, q):join(10)
        assert.is_true(ok, err)
        assert.same({ "transfer", "transfer" }, err)
        assert.equal(1, q:size())
        assert.equal(mod, q:get())
        raises("closed", nil, q.get, q)
      end)

      it("keeps put order when an item is put back among later ones", function()
        local q = concur.Queue()
        q:put(mod)
        for i = 1, 100 do q:put(i) end
        failing_get(q)
        local got = { q:get(0) }
        for i = 1, 100 do got[i + 1] = q:get(0) end
        assert.equal(mod, got[1])
        for i = 1, 100 do assert.equal(i, got[i + 1]) end
      end)
    end)
  end)

  describe("timeouts", function()
    it("raises kind timeout from get when nothing comes", function()
      local q = concur.Queue()
      local t0 = concur.monotonic()
      raises("timeout", "get timed out", q.get, q, 0.05)
      assert.is_true(concur.monotonic() - t0 >= 0.045)
    end)

    it("never blocks in get(0)", function()
      local q = concur.Queue()
      local t0 = concur.monotonic()
      raises("timeout", "get timed out", q.get, q, 0)
      assert.is_true(concur.monotonic() - t0 < helpers.prompt(0.05))
    end)

    it("raises kind timeout from put on a full queue", function()
      local q = concur.Queue(1)
      q:put(1)
      raises("timeout", "put timed out", q.put, q, 2, 0.02)
      assert.equal(1, q:size())
    end)

    it("takes a negative timeout as 'do not wait'", function()
      local q = concur.Queue(1)
      raises("timeout", "get timed out", q.get, q, -1)
      q:put("a", -1)
      raises("timeout", "put timed out", q.put, q, "b", -1)
      assert.equal("a", q:get(-1))
      raises("argument", "timeout is NaN", q.get, q, 0 / 0)
    end)
  end)

  describe("try_put and try_get", function()
    it("returns false from try_get on an empty queue", function()
      assert.is_false(concur.Queue():try_get())
    end)

    it("returns true and the value from try_get", function()
      local q = concur.Queue()
      q:put("v")
      local ok, v = q:try_get()
      assert.is_true(ok)
      assert.equal("v", v)
    end)

    it("returns false from try_put on a full queue", function()
      local q = concur.Queue(2)
      assert.is_true(q:try_put(1))
      assert.is_true(q:try_put(2))
      assert.is_false(q:try_put(3))
      assert.same({ 1, 2 }, drain(q))
    end)
  end)

  describe("bounded", function()
    it("blocks put until a get makes room", function()
      local q = concur.Queue(1)
      q:put(0)
      local t = concur.spawn(function(qq)
        for i = 1, 100 do qq:put(i, 10) end
        return true
      end, q)
      local got = {}
      for i = 0, 100 do got[#got + 1] = q:get(10); assert.equal(i, got[#got]) end
      assert.is_true((t:join(10)))
      assert.is_true(q:size() <= 1)
    end)
  end)

  describe("close", function()
    it("raises kind closed from put after close", function()
      local q = concur.Queue()
      q:close()
      raises("closed", "queue is closed", q.put, q, 1)
      raises("closed", "queue is closed", q.try_put, q, 1)
      assert.is_true(q:closed())
    end)

    it("lets get drain what remains, then raises kind closed", function()
      local q = concur.Queue()
      q:put(1)
      q:put(2)
      q:close()
      assert.equal(1, q:get())
      assert.equal(2, q:get())
      raises("closed", "queue is closed", q.get, q)
      raises("closed", "queue is closed", q.try_get, q)
    end)

    it("wakes every thread blocked in get", function()
      local q, started = concur.Queue(), concur.Semaphore(0)
      local ts = sync.spawn_n(3, function(_, qq, st)
        st:release()
        local ok, err = pcall(qq.get, qq, 30)
        return ok and "got" or err.kind
      end, q, started)
      for _ = 1, 3 do assert.is_true(started:acquire(10)) end
      q:close()
      for _, kind in ipairs(sync.join_all(ts)) do assert.equal("closed", kind) end
    end)

    it("wakes every thread blocked in put", function()
      local q, started = concur.Queue(1), concur.Semaphore(0)
      q:put(0)
      local ts = sync.spawn_n(2, function(i, qq, st)
        st:release()
        local ok, err = pcall(qq.put, qq, i, 30)
        return ok and "put" or err.kind
      end, q, started)
      for _ = 1, 2 do assert.is_true(started:acquire(10)) end
      q:close()
      for _, kind in ipairs(sync.join_all(ts)) do assert.equal("closed", kind) end
      assert.equal(0, q:get())
    end)

    it("ends items() once closed and drained", function()
      local q = concur.Queue()
      local t = concur.spawn(function(qq)
        for i = 1, 1000 do qq:put(i) end
        qq:close()
      end, q)
      local n, sum = 0, 0
      for v in q:items() do n, sum = n + 1, sum + v end
      t:join(10)
      assert.equal(1000, n)
      assert.equal(500500, sum)
    end)
  end)

  describe("task_done and join", function()
    it("returns true from join at once when nothing was put", function()
      assert.is_true(concur.Queue():join(0))
    end)

    it("returns false from join while items are unfinished", function()
      local q = concur.Queue()
      q:put(1)
      q:get()
      assert.is_false(q:join(0.02))
      q:task_done()
      assert.is_true(q:join(0))
    end)

    it("returns from join once workers marked every item done", function()
      local q, results = concur.Queue(), concur.Queue()
      local ts = sync.spawn_n(2, function(_, qq, rr)
        for v in qq:items() do
          rr:put(v * v)
          qq:task_done()
        end
      end, q, results)
      for i = 1, 200 do q:put(i) end
      assert.is_true(q:join(30))
      assert.equal(200, results:size())
      q:close()
      sync.join_all(ts)
    end)

    it("raises kind argument when task_done is called too often", function()
      local q = concur.Queue()
      raises("argument", "task_done() called too many times", q.task_done, q)
    end)
  end)

  describe("in a ThreadPool", function()
    it("wakes a task blocked in get when it is cancelled", function()
      local pool <close> = concur.ThreadPool(1)
      local q, started = concur.Queue(), concur.Event()
      local f = pool:submit(function(qq, st) st:set(); return qq:get() end, q, started)
      assert.is_true(started:wait(10))
      assert.is_true(f:cancel())
      raises("cancelled", nil, f.result, f, 10)
      q:put("still here")
      assert.equal("still here", q:get(0))
    end)

    it("feeds tasks that share the queue by reference", function()
      local pool <close> = concur.ThreadPool(2)
      local q = concur.Queue()
      local fs = {}
      for i = 1, 10 do fs[i] = pool:submit(function(qq, k) qq:put(k * 2) end, q, i) end
      for _, f in ipairs(fs) do f:result(10) end
      local sum = 0
      for _ = 1, 10 do sum = sum + q:get(0) end
      assert.equal(110, sum)
    end)
  end)

  describe("under contention", function()
    it("delivers every item exactly once: 4 producers, 3 consumers", function()
      local q, out = concur.Queue(64), concur.Queue()
      local consumers = sync.spawn_n(3, function(_, qq, oo)
        local n, sum = 0, 0
        for v in qq:items() do n, sum = n + 1, sum + v end
        oo:put { n = n, sum = sum }
      end, q, out)
      sync.join_all(sync.spawn_n(4, function(i, qq)
        for k = 1, 5000 do qq:put(i * 100000 + k) end
      end, q))
      q:close()
      sync.join_all(consumers)
      local n, sum = 0, 0
      for _ = 1, 3 do
        local r = out:get(10)
        n, sum = n + r.n, sum + r.sum
      end
      local want = 0
      for i = 1, 4 do want = want + i * 100000 * 5000 + 5000 * 5001 // 2 end
      assert.equal(20000, n)
      assert.equal(want, sum)
    end)

    it("keeps FIFO order between one producer and one consumer", function()
      local q = concur.Queue()
      local t = concur.spawn(function(qq)
        for i = 1, 20000 do qq:put(i) end
        qq:close()
      end, q)
      local expect = 1
      for v in q:items() do
        assert(v == expect)
        expect = expect + 1
      end
      t:join(10)
      assert.equal(20001, expect)
    end)
  end)
end)
