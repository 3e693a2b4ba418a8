-- concur inside real event loops: luv (concur.luv) and cqueues
-- (concur.cqueues, and the pollable protocol of Future and Task).
local helpers = require "helpers"
local concur = require "concur"
local uv = require "luv"
local cqueues = require "cqueues"

describe("event loops", function()
  local pool
  before_each(function() pool = concur.ThreadPool(2) end)
  after_each(function() pool:close() end)

  describe("luv", function()
    local bridge = require "concur.luv"

    it("runs on_done callbacks and tasks from the loop, and close detaches", function()
      local h = bridge.attach()
      assert.is_true(h:active())
      local inloop, got, task_got = false, nil, nil
      local gate = concur.Event()
      local f = pool:submit(function(ev) ev:wait() return "from pool" end, gate)
      f:on_done(function(x)
        assert.is_true(inloop)
        got = x:result()
      end)
      local start = uv.new_timer()
      start:start(1, 0, function()
        start:close()
        gate:set()
        concur.async(function()
          concur.sleep(0.01)                    -- the hub's timer, from the loop
          task_got = concur.await(f) .. " via task"
          h:close()                             -- the loop has nothing left: ends
        end)
      end)
      inloop = true
      uv.run()
      inloop = false
      assert.equal("from pool", got)
      assert.equal("from pool via task", task_got)
      assert.is_false(h:active())
      h:close()                                 -- idempotent
    end)

    it("keeps a 1 ms timer firing while 10,000 futures complete with callbacks run from the loop "
      .. "#nosan #novalgrind", function()
      local n = helpers.size(10000, 1000)
      local h = bridge.attach()
      local submitted, completed, outside = 0, 0, 0
      local inloop = false
      local last, gaps, ticks, worst = nil, 0, 0, 0
      local timer, feeder = uv.new_timer(), uv.new_check()
      local function cb() if inloop then completed = completed + 1 else outside = outside + 1 end end
      timer:start(1, 1, function()
        local now = uv.hrtime()
        if last then
          local gap = (now - last) / 1e6
          if gap > 20 then gaps = gaps + 1 end
          if gap > worst then worst = gap end
        end
        last, ticks = now, ticks + 1
        if completed == n then
          timer:close()
          feeder:close()
          h:close()
        end
      end)
      feeder:start(function()       -- submits in slices, between loop turns
        for _ = 1, 100 do
          if submitted == n then return end
          submitted = submitted + 1
          pool:submit(function(x) return x end, submitted):on_done(cb)
        end
      end)
      inloop = true
      uv.run()
      inloop = false
      assert.equal(n, completed)
      assert.equal(0, outside)
      assert.is_true(ticks > 10)
      -- no gap over 20 ms; a loaded machine may preempt the process once or
      -- twice, never for long
      assert.is_true(gaps <= 2 and worst < 200,
        ("%d gaps over 20 ms in %d ticks, worst %.1f ms"):format(gaps, ticks, worst))
    end)

    it("uses no CPU while idle with concur attached #nosan #novalgrind", function()
      local h = bridge.attach()
      local woke = false
      concur.async(function() concur.sleep(0.5) woke = true end)
      local stop = uv.new_timer()
      local cpu0 = os.clock()
      stop:start(1000, 0, function()
        stop:close()
        h:close()
      end)
      uv.run()
      local cpu = os.clock() - cpu0
      assert.is_true(woke)
      assert.is_true(cpu < 0.1, ("%.3f s of CPU in an idle second"):format(cpu))
    end)

    it("rejects what is not the luv module (kind argument)", function()
      helpers.raises("argument", "luv module expected", bridge.attach, 42)
    end)
  end)

  describe("cqueues", function()
    local cqb = require "concur.cqueues"

    it("cqueues.poll(f) returns when f completes", function()
      local cq = cqueues.new()
      local gate = concur.Event()
      local f = pool:submit(function(ev) ev:wait() return 5 end, gate)
      local set_at, returned_at
      cq:wrap(function()
        local r = cqueues.poll(f)
        returned_at = concur.monotonic()
        assert.equal(f, r)
        assert.is_true(f:done())
      end)
      cq:wrap(function()
        cqueues.sleep(0.02)
        set_at = concur.monotonic()
        gate:set()
      end)
      assert(cq:loop())
      assert.is_true(returned_at >= set_at)
      assert.equal(5, f:result())
      assert.equal(0, f:timeout())
      assert.equal("r", f:events())
    end)

    it("1,000 coroutines each awaiting a concur future all resume", function()
      local n = helpers.size(1000, 200)
      local cq = cqueues.new()
      local gate = concur.Event()
      local sum, resumed = 0, 0
      for i = 1, n do
        cq:wrap(function()
          local f = pool:submit(function(ev, x) ev:wait() return x end, gate, i)
          cqueues.poll(f)
          sum = sum + f:result()
          resumed = resumed + 1
        end)
      end
      cq:wrap(function()
        cqueues.sleep(0.01)
        gate:set()
      end)
      assert(cq:loop())
      assert.equal(n, resumed)
      assert.equal(n * (n + 1) // 2, sum)
    end)

    it("attach runs on_done callbacks and tasks from the controller; a Task is pollable", function()
      local cq = cqueues.new()
      local h = cqb.attach(cq)
      local got, t
      cq:wrap(function()
        local f = pool:submit(function() return "cb" end)
        f:on_done(function(x) got = x:result() end)
        t = concur.async(function()
          concur.sleep(0.01)
          return concur.await(f) .. " and task"
        end)
        cqueues.poll(t)
        assert.is_true(t:done())
        h:close()
      end)
      assert(cq:loop())
      assert.equal("cb", got)
      assert.equal("cb and task", t:result())
      assert.is_false(h:active())
    end)

    it("rejects what is not a controller (kind argument)", function()
      helpers.raises("argument", "controller expected", cqb.attach, {})
    end)
  end)
end)
