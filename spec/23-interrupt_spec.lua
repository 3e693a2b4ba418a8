-- Ctrl-C in the standalone interpreter: a script blocked in a concur wait
-- gets "interrupted!" at the first SIGINT, and runs its cleanup.
--
-- Each case runs in its own lua5.4 process, which says "ready <pid>" just
-- before it blocks; the spec then sends SIGINT to that pid (it never
-- sleeps to wait for the child). The child must end with the
-- interpreter's "interrupted!" error, after its <close> handler and its
-- finalizers ran. Children that hang are killed after a bound, so a
-- regression fails the spec instead of hanging the suite.
local helpers = require "helpers"

-- What every child does: a to-be-closed cleanup (which also releases
-- what keeps other threads busy, so that exit, which joins them, ends),
-- a finalizer, and ready() just before it blocks.
local PRELUDE = [[
local concur = require "concur"
local release = {}
local cleanup <close> = setmetatable({}, { __close = function()
  for _, fn in ipairs(release) do fn() end
  io.stdout:write("cleanup ran\n")
  io.stdout:flush()
end })
local finalized = setmetatable({}, { __gc = function()
  io.stdout:write("finalizer ran\n")
  io.stdout:flush()
end })
local function ready()
  local f = io.open("/proc/self/stat")
  io.stdout:write("ready ", f:read("n"), "\n")
  f:close()
  io.stdout:flush()
end
]]

-- name -> the child's body: it sets up, calls ready(), then blocks for ever.
local CASES = {
  ["Queue:get"] = [[
    local q = concur.Queue()
    ready()
    q:get()
  ]],
  ["Queue:put on a full queue"] = [[
    local q = concur.Queue(1)
    q:put(1)
    ready()
    q:put(2)
  ]],
  ["Queue:join"] = [[
    local q = concur.Queue()
    q:put(1)
    ready()
    q:join()
  ]],
  ["Future:result"] = [[
    local pool = concur.ThreadPool(1)
    local ev = concur.Event()
    release[1] = function() ev:set() end
    local f = pool:submit(function(e) e:wait() end, ev)
    ready()
    f:result()
  ]],
  ["concur.wait"] = [[
    local pool = concur.ThreadPool(1)
    local ev = concur.Event()
    release[1] = function() ev:set() end
    local f = pool:submit(function(e) e:wait() end, ev)
    ready()
    concur.wait({ f })
  ]],
  ["concur.as_completed"] = [[
    local pool = concur.ThreadPool(1)
    local ev = concur.Event()
    release[1] = function() ev:set() end
    local f = pool:submit(function(e) e:wait() end, ev)
    ready()
    for _ in concur.as_completed({ f }) do end
  ]],
  ["ThreadPool:submit with max_pending reached"] = [[
    local pool = concur.ThreadPool { workers = 1, max_pending = 1 }
    local ev = concur.Event()
    release[1] = function() ev:set() end
    pool:submit(function(e) e:wait() end, ev)
    pool:submit(function() end)
    ready()
    pool:submit(function() end)
  ]],
  ["ThreadPool:close waiting for a running task"] = [[
    local pool = concur.ThreadPool(1)
    local ev = concur.Event()
    release[1] = function() ev:set() end
    pool:submit(function(e) e:wait() end, ev)
    ready()
    pool:close()
  ]],
  ["ProcessPool:close waiting for a running task"] = [[
    local pool = concur.ProcessPool(1)
    local ev = concur.Event()
    release[1] = function() ev:set() end
    pool:submit(function(e) e:wait() end, ev)
    ready()
    pool:close()
  ]],
  ["concur.sleep"] = [[
    ready()
    concur.sleep(3600)
  ]],
  ["Lock:acquire"] = [[
    local l = concur.Lock()
    l:acquire()
    ready()
    l:acquire()
  ]],
  ["Lock:guard"] = [[
    local l = concur.Lock()
    l:acquire()
    ready()
    local _ <close> = l:guard()
  ]],
  ["RLock:acquire"] = [[
    local l, held, stop = concur.RLock(), concur.Event(), concur.Event()
    release[1] = function() stop:set() end
    local t = concur.spawn(function(rl, h, s) rl:acquire() h:set() s:wait() end, l, held, stop)
    held:wait()
    ready()
    l:acquire()
  ]],
  ["Condition:wait"] = [[
    local c = concur.Condition()
    local _ <close> = c:guard()
    ready()
    c:wait()
  ]],
  ["Event:wait"] = [[
    local ev = concur.Event()
    ready()
    ev:wait()
  ]],
  ["Semaphore:acquire"] = [[
    local s = concur.Semaphore(0)
    ready()
    s:acquire()
  ]],
  ["Barrier:wait"] = [[
    local b = concur.Barrier(2)
    ready()
    b:wait()
  ]],
  ["RateLimiter:acquire"] = [[
    local rl = concur.RateLimiter { rate = 1, per = 3600 }
    rl:acquire()
    ready()
    rl:acquire()
  ]],
  ["Thread:join"] = [[
    local ev = concur.Event()
    release[1] = function() ev:set() end
    local t = concur.spawn(function(e) e:wait() end, ev)
    ready()
    t:join()
  ]],
  ["Process:join"] = [[
    local ev = concur.Event()
    release[1] = function() ev:set() end
    local p = concur.Process(function(e) e:wait() end, ev)
    ready()
    p:join()
  ]],
  ["a wait inside a coroutine"] = [[
    local q = concur.Queue()
    coroutine.wrap(function()
      ready()
      q:get()
    end)()
  ]],
}

describe("Ctrl-C", function()
  local names, children = {}, {}

  setup(function()   -- all children start at once: their start-ups overlap
    for name in pairs(CASES) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      children[name] = helpers.start_lua(PRELUDE .. CASES[name], 60)
    end
  end)

  teardown(function()   -- a child a failed spec left running
    for _, h in pairs(children) do
      if h.pipe then pcall(h.finish, h) end
    end
  end)

  for _, name in ipairs((function()
    local list = {}
    for n in pairs(CASES) do list[#list + 1] = n end
    table.sort(list)
    return list
  end)()) do
    it("interrupts " .. name .. " in the main state, and the cleanup runs", function()
      local h = children[name]
      local pid
      repeat
        local line = h:line()
        pid = line and line:match("^ready (%d+)$")
      until pid or not line
      assert(pid, "the child never got ready: " .. table.concat(h.out, "\n"))
      os.execute("kill -INT " .. pid)
      local code, out = h:finish()
      h.pipe = nil
      assert.equal(1, code, out)
      assert.matches("interrupted!", out, 1, true)
      assert.matches("cleanup ran", out, 1, true)
      assert.matches("finalizer ran", out, 1, true)
    end)
  end
end)
