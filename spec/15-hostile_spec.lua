-- Hostile calls across every part of concur: metamethods called directly
-- with foreign values, forged metatables, values that must not cross.
-- What could crash runs in a child process (helpers.run_lua), so that a
-- regression fails the spec instead of killing the suite.
local helpers = require "helpers"
local concur = helpers.concur

-- Makes one object of every class concur registers, then calls every
-- metamethod of every concur metatable (found in the registry) with
-- foreign values as argument 1, and with a real object of the class as
-- argument 1 and a foreign value as argument 2. Each call must return or
-- raise a concur.Error: never crash, never raise a plain Lua error.
local WALK = [[
local concur = require "concur"
local core = require "concur.core"
local fetch = require "concur.fetch"
local bigint = require "concur.bigint"

local tp = concur.ThreadPool(1)
local pp = concur.ProcessPool(1)
local fut = tp:submit(function() return 1 end)
fut:result()
local th = concur.spawn(function() end)
th:join()
local pr = concur.Process(function() end)
pr:join()
local lock, q = concur.Lock(), concur.Queue()
q:put(1)
q:get()
local instances = {
  ["concur.ThreadPool"] = tp, ["concur.ProcessPool"] = pp, ["concur.Future"] = fut,
  ["concur.Thread"] = th, ["concur.Process"] = pr, ["concur.Lock"] = lock,
  ["concur.Queue"] = q, ["concur.RLock"] = concur.RLock(),
  ["concur.Condition"] = concur.Condition(), ["concur.Event"] = concur.Event(),
  ["concur.Semaphore"] = concur.Semaphore(1),
  ["concur.BoundedSemaphore"] = concur.BoundedSemaphore(1),
  ["concur.Barrier"] = concur.Barrier(1), ["concur.Value"] = concur.Value(0),
  ["concur.RateLimiter"] = concur.RateLimiter { rate = 1 },
  ["concur.Guard"] = concur.Lock():guard(),
  ["concur.waitset"] = core.waitset({ fut }),
  ["concur.fetch.Client"] = fetch.Client {},
  ["concur.fetch.Response"] = core.fetch.response { status = 200, url = "http://x/" },
  ["concur.bigint"] = bigint(5),
  ["concur.Error"] = concur.Error.new("task", "x"),
}

local required = { "concur.Error", "concur.Future", "concur.waitset", "concur.ThreadPool",
  "concur.Thread", "concur.Guard", "concur.Lock", "concur.RLock", "concur.Condition",
  "concur.Event", "concur.Semaphore", "concur.BoundedSemaphore", "concur.Barrier",
  "concur.Value", "concur.Queue", "concur.QueueSlot", "concur.RateLimiter", "concur.bigint",
  "concur.fetch.Client", "concur.fetch.Batch", "concur.fetch.Response",
  "concur.ProcessPool", "concur.Process", "concur.scratch", "concur.tracker",
  "concur.sentinel" }

local mts, names = {}, {}
for k, v in pairs(debug.getregistry()) do
  if type(k) == "string" and k:match("^concur") and type(v) == "table" then
    mts[k] = v
    names[#names + 1] = k
  end
end
table.sort(names)
for _, name in ipairs(required) do
  if not mts[name] then print("MISSING " .. name) end
end

local function check(name, key, what, ok, err)
  if not ok and not concur.Error.is(err) then
    print(("PLAIN ERROR %s.%s(%s): %s"):format(name, key, what, tostring(err)))
  end
end

local calls = 0
for _, name in ipairs(names) do
  local mt = mts[name]
  local other = name == "concur.Lock" and q or lock
  local foreign = { { "nil", nil }, { "number", 42 }, { "table", {} }, { "string", "s" },
    { "io.stdout", io.stdout }, { "other", other }, { "disguised", setmetatable({}, mt) },
    { "function", print } }
  local keys = {}
  for k, v in pairs(mt) do
    if type(k) == "string" and k:match("^__") and type(v) == "function" then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local fn = mt[key]
    for _, x in ipairs(foreign) do
      io.write(name, " ", key, " ", x[1], "\n")
      io.flush()
      check(name, key, x[1], pcall(fn, x[2], x[2]))
      calls = calls + 1
      local inst = instances[name]
      if inst ~= nil and key ~= "__gc" and key ~= "__close" then
        check(name, key, "self, " .. x[1], pcall(fn, inst, x[2]))
        check(name, key, x[1] .. ", self", pcall(fn, x[2], inst))
        calls = calls + 2
      end
    end
  end
end
instances["concur.Guard"]:release()
print("WALKED " .. #names .. " metatables, " .. calls .. " calls")
tp:close()
pp:close()
]]

describe("hostile calls", function()
  describe("metamethods", function()
    it("check argument 1 in every metatable concur registers, as Lua's libraries do", function()
      local ok, code, out = helpers.run_lua(WALK, 120)
      assert.is_true(ok, ("exit %s; last lines:\n%s"):format(tostring(code), out:sub(-600)))
      assert.not_matches("MISSING", out)
      assert.not_matches("PLAIN ERROR", out)
      local nmt, ncalls = out:match("WALKED (%d+) metatables, (%d+) calls")
      assert.truthy(nmt, out:sub(-600))
      assert.is_true(tonumber(nmt) >= 26)
      assert.is_true(tonumber(ncalls) > 500)
    end)

    it("raise kind argument naming the class when argument 1 is foreign", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local lock = concur.Lock()
        local mt = getmetatable(lock)
        local function show(what, ok, err)
          print(what, ok, ok and tostring(err) or err.kind, not ok and err.message or "")
        end
        show("tostring", pcall(mt.__tostring, {}))
        show("gc", pcall(mt.__gc, concur.Queue()))
        show("poolgc", pcall(getmetatable(concur.ThreadPool(1)).__gc, 1))
        show("eq", pcall(mt.__eq, lock, concur.Queue()))
        print("lock", lock:acquire(0))
      ]], 30)
      assert.is_true(ok, out)
      assert.matches("tostring\tfalse\targument\tbad argument #1 to '[^']*' " ..
                     "%(concur.Lock expected, got table%)", out)
      assert.matches("gc\tfalse\targument\t[^\n]*concur.Lock expected, got concur.Queue", out)
      assert.matches("poolgc\tfalse\targument\t[^\n]*concur.ThreadPool expected, got number", out)
      assert.matches("eq\ttrue\tfalse", out)
      assert.matches("lock\ttrue", out)   -- the lock still works
    end)
  end)

  describe("the codec", function()
    it("refuses a foreign userdata whose metatable copies concur's fields, with kind transfer", function()
      local ok, _, out = helpers.run_lua([[
        local concur = require "concur"
        local bigint = require "concur.bigint"
        local pool <close> = concur.ThreadPool(1)
        local lockmt = getmetatable(concur.Lock())
        local fmt = getmetatable(io.stdout)
        -- a script copies every field of concur's metatables into FILE*'s
        for k, v in pairs(lockmt) do if fmt[k] == nil then fmt[k] = v end end
        for k, v in pairs(getmetatable(bigint(1))) do if fmt[k] == nil then fmt[k] = v end end
        local ok, err = pcall(pool.submit, pool, function(x) return x end, io.stdout)
        print("forged", ok, err.kind, err.message)
        -- and through the debug library: a FILE* given a proxy's metatable
        local f = io.tmpfile()
        debug.setmetatable(f, lockmt)
        ok, err = pcall(pool.submit, pool, function(x) return x end, f)
        print("debug", ok, err.kind)
        print("after", pool:submit(function() return "fine" end):result())
      ]], 60)
      assert.is_true(ok, out)
      assert.matches("forged\tfalse\ttransfer\tcannot transfer a userdata %(FILE%*%) %(at args%[1%]%)", out)
      assert.matches("debug\tfalse\ttransfer", out)
      assert.matches("after\tfine", out)
    end)

    it("names concur's objects that stay in their state, and what to do", function()
      local pool <close> = concur.ThreadPool(1)
      local err = helpers.raises("transfer", "cannot transfer a concur.ThreadPool (at args[1])",
        pool.submit, pool, function() end, pool)
      assert.matches("submit from there", err.message)
      local th = concur.spawn(function() end)
      err = helpers.raises("transfer", "cannot transfer a concur.Thread (at args[2].t)",
        pool.submit, pool, function() end, 1, { t = th })
      assert.matches("join it there", err.message)
      th:join()
      local lock = concur.Lock()
      local g <close> = lock:guard()
      helpers.raises("transfer", "cannot transfer a concur.Guard", concur.spawn, function() end, g)
      helpers.raises("transfer", "cannot transfer a userdata (FILE*)", concur.spawn,
        function() end, io.stdout)
    end)
  end)
end)
