local helpers = require "helpers"
local sync = require "helpers.sync"
local concur = require "concur"

local raises = helpers.raises

-- Checks the limiter's promise on sorted times: no window [t_i, t_j] holds
-- more than burst + rate * (t_j - t_i) / per + 1 acquisitions.
local function assert_windows(times, rate, per, burst)
  table.sort(times)
  for i = 1, #times do
    for j = i + 1, #times do
      local allowed = burst + rate * (times[j] - times[i]) / per + 1
      if j - i + 1 > allowed then
        error(("window %d..%d (%.4f s) holds %d > %.2f"):format(i, j,
          times[j] - times[i], j - i + 1, allowed))
      end
    end
  end
end

describe("RateLimiter", function()

  describe("construction", function()
    it("raises kind argument without a rate", function()
      raises("argument", "'rate' is required", concur.RateLimiter, { per = 1 })
    end)

    it("raises kind argument for a rate that is not positive", function()
      raises("argument", "'rate' must be a positive number", concur.RateLimiter, { rate = 0 })
      raises("argument", "'rate' must be a positive number", concur.RateLimiter, { rate = -1 })
    end)

    it("raises kind argument for a burst below 1", function()
      raises("argument", "'burst' must be at least 1", concur.RateLimiter,
        { rate = 1, burst = 0.5 })
    end)

    it("raises kind argument for an unknown option", function()
      raises("argument", "unknown option 'rps'", concur.RateLimiter, { rate = 1, rps = 2 })
    end)

    it("raises kind argument for a non-number option", function()
      raises("argument", "'per' must be a number", concur.RateLimiter, { rate = 1, per = "1s" })
    end)

    it("accepts positional rate, per and burst", function()
      assert.same({ 5, 2, 3 }, { concur.RateLimiter(5, 2, 3):rate() })
    end)

    it("defaults per and burst to 1", function()
      assert.same({ 2, 1, 1 }, { concur.RateLimiter { rate = 2 }:rate() })
    end)
  end)

  describe("try_acquire", function()
    it("lets a burst through at once, then refuses", function()
      local rl = concur.RateLimiter { rate = 1, per = 60, burst = 3 }
      for _ = 1, 3 do assert.is_true(rl:try_acquire()) end
      assert.is_false(rl:try_acquire())
    end)
  end)

  describe("acquire", function()
    it("returns false at once when its slot would come after the timeout", function()
      local rl = concur.RateLimiter { rate = 1, per = 60 }
      assert.is_true(rl:acquire())
      local t0 = concur.monotonic()
      assert.is_false(rl:acquire(0.5))
      assert.is_true(concur.monotonic() - t0 < helpers.prompt(0.1))
    end)

    it("reserves nothing when it returns false", function()
      local rl = concur.RateLimiter { rate = 20 }
      assert.is_true(rl:acquire())
      assert.is_false(rl:acquire(0))
      local t0 = concur.monotonic()
      assert.is_true(rl:acquire(1))
      assert.is_true(concur.monotonic() - t0 < helpers.prompt(0.08))   -- the next slot, not a later one
    end)

    it("never blocks with timeout 0", function()
      local rl = concur.RateLimiter { rate = 1, per = 60 }
      assert.is_true(rl:acquire(0))
      local t0 = concur.monotonic()
      assert.is_false(rl:acquire(0))
      assert.is_true(concur.monotonic() - t0 < helpers.prompt(0.05))
    end)

    it("takes a negative timeout as 'do not wait'", function()
      local rl = concur.RateLimiter { rate = 1, per = 3600 }
      assert.is_true(rl:acquire(-0.5))
      assert.is_false(rl:acquire(-0.5))
      raises("argument", "timeout is NaN", rl.acquire, rl, 0 / 0)
    end)

    it("achieves the rate within 1% over 100 acquisitions", function()
      local rate = 100   -- a 1 s run: 1% leaves 10 ms for the last wake-up
      local rl = concur.RateLimiter { rate = rate, per = 1 }
      local first, last
      for i = 1, 100 do
        rl:acquire()
        local now = concur.monotonic()
        if i == 1 then first = now end
        last = now
      end
      -- never ahead of the schedule; behind it by no more than 1% of the
      -- run (10 ms: the last wake-up's lateness, scaled under the checkers)
      local late = (last - first) - 99 / rate
      assert.is_true(late > -1e-3, ("achieved %.2f per second"):format(99 / (last - first)))
      assert.is_true(late < helpers.prompt(0.01), ("achieved %.2f per second"):format(99 / (last - first)))
    end)

    it("keeps every window within burst + rate * w / per + 1", function()
      local rate, per, burst = 100, 1, 4
      local rl = concur.RateLimiter { rate = rate, per = per, burst = burst }
      local times = {}
      for i = 1, 60 do
        rl:acquire()
        times[i] = concur.monotonic()
      end
      assert_windows(times, rate, per, burst)
    end)

    it("is shared by threads: the limit holds across them", function()
      -- 20 ms between slots: a thread that wakes late shifts its time
      -- stamp, and the bound's +1 absorbs one such late wake-up
      local rate, per, burst = 50, 1, 2
      local rl, out = concur.RateLimiter { rate = rate, per = per, burst = burst }, concur.Queue()
      sync.join_all(sync.spawn_n(4, function(_, r, o)
        local c = require "concur"
        for _ = 1, 10 do
          r:acquire()
          o:put(c.monotonic())
        end
      end, rl, out))
      local times = {}
      for _ = 1, 40 do times[#times + 1] = out:get(0) end
      assert_windows(times, rate, per, burst)
      table.sort(times)
      assert.is_true(times[40] - times[1] >= (40 - burst) / rate * per - 0.005)
    end)

    it("serves callers in the order they came", function()
      local rl, out = concur.RateLimiter { rate = 2 }, concur.Queue()
      rl:acquire()
      local t0 = concur.monotonic()
      local t = concur.spawn(function(r, o) r:acquire(); o:put("thread") end, rl, out)
      -- the schedule ends 0.5 s after t0 until the thread reserves its slot,
      -- and at least 1 s after t0 once it has (1.5 s would need a thread
      -- that took 0.75 s to start)
      sync.wait_until(function() return concur.monotonic() + rl:delay() > t0 + 0.75 end)
      assert.is_true(rl:acquire(5))
      out:put("main")
      t:join(10)
      assert.equal("thread", out:get(0))
      assert.equal("main", out:get(0))
    end)

    it("tells the delay a caller would wait now", function()
      local rl = concur.RateLimiter { rate = 1, per = 10 }
      assert.equal(0, rl:delay())
      rl:acquire()
      assert.is_true(rl:delay() > 9 and rl:delay() <= 10)
    end)

    it("gives back the slot of a task cancelled while it waits", function()
      local rl = concur.RateLimiter { rate = 1, per = 10 }   -- a slot per 10 s
      rl:acquire()                                           -- next: in 10 s
      local pool <close> = concur.ThreadPool(1)
      local f = pool:submit(function(r) return r:acquire() end, rl)
      -- its reservation shows as the delay growing by one interval
      local deadline = concur.monotonic() + 10
      while rl:delay() < 15 and concur.monotonic() < deadline do end
      assert.is_true(rl:delay() > 15, "the task did not reserve its slot")
      f:cancel()
      assert.equal("cancelled", select(2, pcall(f.result, f, 10)).kind)
      local d = rl:delay()
      assert.is_true(d <= 10, tostring(d))   -- back to the slot after the first
    end)

    it("keeps a cancelled waiter's slot when a later one was reserved", function()
      local rl = concur.RateLimiter { rate = 1, per = 10 }
      rl:acquire()
      local pool <close> = concur.ThreadPool(2)
      local f = pool:submit(function(r) return r:acquire() end, rl)
      local deadline = concur.monotonic() + 10
      while rl:delay() < 15 and concur.monotonic() < deadline do end
      local g = pool:submit(function(r) return r:acquire() end, rl)
      while rl:delay() < 25 and concur.monotonic() < deadline do end
      assert.is_true(rl:delay() > 25, "the tasks did not reserve their slots")
      f:cancel()
      pcall(f.result, f, 10)
      assert.is_true(rl:delay() > 25)   -- g keeps its place; the gap stays
      g:cancel()
      pcall(g.result, g, 10)
      assert.is_true(rl:delay() > 15 and rl:delay() <= 20)   -- g's was the last
    end)
  end)
end)
