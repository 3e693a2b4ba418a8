local helpers = require "helpers"
local concur = require "concur"
local progress = require "concur.progress"

-- A stream that keeps what is written, and a clock the spec moves.
local function fake()
  local out = { text = "" }
  function out.write(self, ...)
    for _, s in ipairs { ... } do self.text = self.text .. s end
    return self
  end
  function out.flush() end
  local t = { now = 100 }
  return out, t, function() return t.now end
end

-- The lines drawn in place: the text between "\r" and "\27[K".
local function draws(text)
  local t = {}
  for l in text:gmatch("\r([^\r]-)\27%[K") do t[#t + 1] = l end
  return t
end

-- A progress object that records every update and the finishes.
local function recorder()
  local r = { updates = {}, finished = 0 }
  function r.update(self, done, errors, total)
    self.updates[#self.updates + 1] = { done, errors, total }
  end
  function r.finish(self) self.finished = self.finished + 1 end
  return r
end

describe("concur.progress", function()
  describe("on a terminal", function()
    it("draws the label, bar, count, percentage, rate, ETA and errors", function()
      local out, t, clock = fake()
      local p = progress.new { label = "map", total = 1000, stream = out, tty = true, clock = clock }
      t.now = t.now + 2
      p:update(400, 3)
      assert.same({ "map  [########------------]  400/1000   40%  200/s  ETA 0:03  3 errors" }, draws(out.text))
    end)

    it("redraws at most once per interval, whatever the updates", function()
      local out, t, clock = fake()
      local p = progress.new { label = "x", total = 100, stream = out, tty = true, clock = clock }
      for i = 1, 50 do p:update(i) end
      assert.equal(1, #draws(out.text))
      t.now = t.now + 0.0625   -- (binary fractions: exact sums)
      for i = 51, 60 do p:update(i) end
      assert.equal(1, #draws(out.text))
      t.now = t.now + 0.0625
      p:update(61)
      assert.equal(2, #draws(out.text))
      assert.matches("61/100", draws(out.text)[2])
    end)

    it("shows a count and rate without a total, and takes a total later", function()
      local out, t, clock = fake()
      local p = progress.new { label = "crawl", stream = out, tty = true, clock = clock }
      t.now = t.now + 1
      p:add(12000)
      assert.same({ "crawl  12000  12.0k/s" }, draws(out.text))
      t.now = t.now + 1
      p:update(12000, 0, 24000)
      assert.equal("crawl  [##########----------]  12000/24000   50%  6000/s  ETA 0:02", draws(out.text)[2])
    end)

    it("ends with the final counts and a newline, once", function()
      local out, t, clock = fake()
      local p = progress.new { label = "map", total = 10, stream = out, tty = true, clock = clock }
      p:update(5)
      t.now = t.now + 0.01
      p:update(10)
      p:finish()
      p:finish()
      local d = draws(out.text)
      assert.equal(2, #d)
      assert.matches("10/10  100%%", d[2])
      assert.matches("\n$", out.text)
      assert.equal(1, select(2, out.text:gsub("\n", "")))
    end)
  end)

  describe("elsewhere", function()
    it("draws nothing while it runs, and one summary line at the end", function()
      local out, t, clock = fake()
      local p = progress.new { label = "get_all", total = 40, stream = out, tty = false, clock = clock }
      for i = 1, 40 do p:update(i, i // 20) end
      assert.equal("", out.text)
      t.now = t.now + 2
      p:finish()
      assert.equal("get_all: 40/40 in 2.0 s (20/s), 2 errors\n", out.text)
    end)

    it("is not a terminal when the stream is not stderr, unless told", function()
      local out = fake()
      assert.is_false(progress.new { stream = out }.tty)
    end)
  end)

  it("checks its arguments", function()
    helpers.raises("argument", "unknown option 'totl'", progress.new, { totl = 1 })
    helpers.raises("argument", "total must be a non-negative integer", progress.new, { total = -1 })
    helpers.raises("argument", "table expected", progress.new, 5)
    helpers.raises("argument", "number expected", function() progress.new { tty = false }:update("x") end)
  end)
end)

describe("the progress option", function()
  local pool
  setup(function() pool = concur.ThreadPool(2) end)
  teardown(function() pool:close() end)

  local items = {}
  for i = 1, 100 do items[i] = i end

  it("gives map's counts and total to a progress object, and finishes it once", function()
    local r = recorder()
    local out = pool:map(function(x) return x + 1 end, items, { chunksize = 30, progress = r })
    assert.equal(101, out[100])
    assert.equal(1, r.finished)
    assert.same({ 100, 0 }, { r.updates[#r.updates][1], r.updates[#r.updates][2] })
    for i = 2, #r.updates do assert.is_true(r.updates[i][1] >= r.updates[i - 1][1]) end
  end)

  -- Item k waits for a token that the progress object gives only when it
  -- sees a count it had not seen: with counts only per chunk, item 2 would
  -- never get one (and the map fails after 10 s). Each item takes 50 ms, so
  -- its worker adds it to the count (every 20 ms at most) before the next.
  local function counts_items(p, n)
    local tokens = concur.Queue()
    tokens:put(true)
    local seen = {}
    local obj = {
      update = function(_, done)
        if not seen[done] then
          seen[done] = true
          if done > 0 then tokens:put(true) end
        end
      end,
      finish = function() end }
    local xs = {}
    for i = 1, n do xs[i] = i end
    local out = p:map(function(x)
      assert(tokens:get(10), "no token")
      concur.sleep(0.05)
      return x
    end, xs, { chunksize = n, progress = obj })
    assert.equal(n, #out)
    for k = 1, n do assert.is_true(seen[k], "count " .. k .. " not seen") end
  end

  it("counts map's items as the workers finish them, not per chunk", function()
    counts_items(pool, 5)
  end)

  it("counts the items of a ProcessPool's map too", function()
    local pp <close> = concur.ProcessPool(1)
    counts_items(pp, 4)
  end)

  it("gives imap and imap_unordered's counts, and finishes at the end", function()
    local r = recorder()
    local n = 0
    for _ in pool:imap(function(x) return x end, items, { chunksize = 7, progress = r }) do n = n + 1 end
    assert.equal(100, n)
    assert.equal(1, r.finished)
    assert.equal(100, r.updates[#r.updates][1])
    local r2 = recorder()
    for _ in pool:imap_unordered(function(x) return x end, items, { progress = r2 }) do end
    assert.equal(1, r2.finished)
    assert.equal(100, r2.updates[#r2.updates][1])
  end)

  it("counts the error and finishes when map fails", function()
    local r = recorder()
    helpers.raises("task", "bad 5", pool.map, pool, function(x)
      if x == 5 then error("bad 5") end
      return x
    end, items, { chunksize = 1, progress = r })
    assert.equal(1, r.finished)
    assert.equal(1, r.updates[#r.updates][2])
  end)

  it("calls a function with done, total and errors as chunks complete", function()
    local seen = {}
    pool:map(function(x) return x end, { 1, 2, 3, 4, 5 }, { chunksize = 2,
      progress = function(done, total, errors) seen[#seen + 1] = ("%d/%d/%d"):format(done, total, errors) end })
    assert.same({ "2/5/0", "4/5/0", "5/5/0" }, seen)
  end)

  it("gives get_all's counts and failures, and finishes it", function()
    local srv = require("helpers.httpserver").start()
    local fetch = require "concur.fetch"
    local client <close> = fetch.Client()
    local r = recorder()
    local rs = client:get_all({ srv:url("/bytes/1"), srv:url("/drop"), srv:url("/bytes/2") },
      { retries = 0, progress = r })
    srv:stop()
    assert.equal(3, #rs)
    assert.equal(1, r.finished)
    assert.same({ 3, 1 }, { r.updates[#r.updates][1], r.updates[#r.updates][2] })
  end)

  it("refuses anything else", function()
    helpers.raises("argument", "bad option 'progress' to 'map'", pool.map, pool, print, items, { progress = 3 })
    helpers.raises("argument", "bad option 'progress' to 'imap'", pool.imap, pool, print, items, { progress = {} })
    local client <close> = require("concur.fetch").Client()
    helpers.raises("argument", "bad option 'progress' to 'get_all'", client.get_all, client,
      { "http://127.0.0.1:1/" }, { progress = "yes" })
  end)

  it("writes a summary line on stderr when it is not a terminal", function()
    local ok, _, out = helpers.run_lua([[
      local concur = require "concur"
      local pool <close> = concur.ThreadPool(2)
      local xs = {}
      for i = 1, 1000 do xs[i] = i end
      pool:map(function(x) return x end, xs, { progress = true })
      for _ in pool:imap(function(x) return x end, xs, { progress = true }) do end
    ]], 30)
    assert.is_true(ok, out)
    assert.matches("^map: 1000/1000 in [%d.]+ s %([%d.kMG]+/s%)\nimap: 1000/1000 in [%d.]+ s %([%d.kMG]+/s%)\n$", out)
  end)

  it("redraws in place on a terminal, ending at 100% #notsan", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local concur = require "concur"
      local pool <close> = concur.ThreadPool(2)
      local xs = {}
      for i = 1, 40 do xs[i] = i end
      pool:map(function(x) concur.sleep(0.01) return x end, xs, { progress = true })
    ]])
    f:close()
    -- script(1) runs the interpreter on a pseudo-terminal
    local p = assert(io.popen(("LUA_PATH=%q LUA_CPATH=%q timeout -s KILL 30 script -qfec %q /dev/null")
      :format(package.path, package.cpath, (os.getenv("CONCUR_LUA") or "lua5.4") .. " " .. script)))
    local out = p:read("a")
    p:close()
    os.remove(script)
    local d = draws(out)
    assert.is_true(#d >= 1, out)
    assert.matches("^map  %[#+%]  40/40  100%%  [%d.kMG]+/s$", d[#d])
    assert.matches("\27%[K\r?\n$", out)
  end)
end)
