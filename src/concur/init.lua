--- concur: threads, pools, futures, queues and locks for Lua 5.4.
-- The C core (`concur.core`) does the mechanism; this file adds what reads
-- better in Lua: map/imap over a pool, waiting on many futures, on_done
-- callbacks and progress lines.
-- @module concur

local core = require "concur.core"

local concur = {
  _VERSION = core._VERSION,
  Error = core.Error,
  cpu_count = core.cpu_count,
  monotonic = core.monotonic,
  sleep = core.sleep,
  spawn = core.spawn,
  thread_name = core.thread_name,
  log = core.log,
  ThreadPool = core.ThreadPool,
}

local Error = core.Error
local monotonic = core.monotonic
local type, pairs, ipairs, error, pcall = type, pairs, ipairs, error, pcall
local tmove, mmax, mmin, mceil = table.move, math.max, math.min, math.ceil

local function raise(kind, fmt, ...)
  error(Error.new(kind, fmt:format(...)), 2)
end

-- Checks an options table: a table (or nil) whose names are all known.
local function checkopts(opts, allowed, fname, argn)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    raise("argument", "bad argument #%d to '%s' (table expected, got %s)",
          argn, fname, type(opts))
  end
  for k in pairs(opts) do
    if not allowed[k] then
      raise("argument", "bad argument #%d to '%s' (unknown option '%s')",
            argn, fname, tostring(k))
    end
  end
  return opts
end

local function checktimeout(t, fname, argn)
  if t ~= nil and (type(t) ~= "number" or not (t >= 0)) then  -- luacheck: ignore 581 (NaN)
    raise("argument", "bad argument #%d to '%s' (timeout must be a non-negative number)",
          argn, fname)
  end
  return t and monotonic() + t
end

---------------------------------------------------------------------------
-- Futures: on_done callbacks run in this state, when it next waits.
---------------------------------------------------------------------------

local F = core.methods("concur.Future")
local callbacks, ncallbacks = {}, 0

--- Runs the on_done callbacks of futures that are done.
-- @treturn integer the number of callbacks run
function concur.poll()
  if ncallbacks == 0 then return 0 end
  local ready = {}
  for f in pairs(callbacks) do
    if f:done() then ready[#ready + 1] = f end
  end
  local ran = 0
  for _, f in ipairs(ready) do
    local list = callbacks[f]
    callbacks[f] = nil
    ncallbacks = ncallbacks - 1
    for _, fn in ipairs(list) do
      local ok, err = pcall(fn, f)
      if not ok then
        io.stderr:write("concur: on_done callback failed: ", tostring(err), "\n")
      end
      ran = ran + 1
    end
  end
  return ran
end
local poll = concur.poll

--- f:on_done(fn): fn(f) runs once, at once if f is done, else when this
-- state next waits (result, wait, as_completed, poll).
function F.on_done(f, fn)
  if type(fn) ~= "function" then
    raise("argument", "bad argument #1 to 'on_done' (function expected, got %s)", type(fn))
  end
  if f:done() then fn(f); return end
  local list = callbacks[f]
  if not list then
    list = {}
    callbacks[f] = list
    ncallbacks = ncallbacks + 1
  end
  list[#list + 1] = fn
end

local function after(...) poll(); return ... end
for _, name in ipairs { "result", "error" } do
  local c = F[name]
  F[name] = function(f, timeout)
    if ncallbacks == 0 then return c(f, timeout) end
    poll()
    return after(c(f, timeout))
  end
end

local RETURN_WHEN = { all = true, first = true, first_error = true }
local WAIT_OPTS = { timeout = true, return_when = true }

local function checkfutures(fs, fname)
  if type(fs) ~= "table" then
    raise("argument", "bad argument #1 to '%s' (table of futures expected, got %s)",
          fname, type(fs))
  end
end

--- concur.wait(futures [, {timeout = s, return_when = "all"|"first"|"first_error"}])
-- @return done, pending (arrays of futures)
function concur.wait(fs, opts)
  checkfutures(fs, "wait")
  opts = checkopts(opts, WAIT_OPTS, "wait", 2)
  local rw = opts.return_when or "all"
  if not RETURN_WHEN[rw] then
    raise("argument", "bad argument #2 to 'wait' (return_when must be 'all', 'first' or 'first_error')")
  end
  local deadline = checktimeout(opts.timeout, "wait", 2)
  poll()
  local ws = core.waitset(fs)
  local isdone = {}
  while true do
    local i = ws:next(deadline)
    if not i then break end
    isdone[i] = true
    if rw == "first" then break end
    if rw == "first_error" and fs[i]:state() == "failed" then break end
  end
  local done, pending = {}, {}
  for i, f in ipairs(fs) do
    if isdone[i] or f:done() then done[#done + 1] = f
    else pending[#pending + 1] = f end
  end
  poll()
  return done, pending
end

--- concur.as_completed(futures [, timeout]): iterator over the futures in
-- the order they complete; raises kind "timeout" when the deadline passes.
function concur.as_completed(fs, timeout)
  checkfutures(fs, "as_completed")
  local deadline = checktimeout(timeout, "as_completed", 2)
  local ws = core.waitset(fs)
  return function()
    local i = ws:next(deadline)
    if i == nil then raise("timeout", "as_completed timed out after %g s", timeout) end
    if i == false then return nil end
    poll()
    return fs[i]
  end
end

---------------------------------------------------------------------------
-- Executors: map, imap, imap_unordered over submit.
---------------------------------------------------------------------------

-- A progress reporter: true draws a line on stderr (when it is a terminal),
-- a function is called as fn(done, total).
local function progress(opt, label)
  if opt == nil or opt == false then return nil end
  if type(opt) == "function" then return opt end
  if opt ~= true then
    raise("argument", "option 'progress' must be true or a function")
  end
  if not core.isatty(2) then return nil end
  return function(done, total)
    local width = 30
    local filled = total > 0 and math.floor(width * done / total) or width
    io.stderr:write(("\r%s [%s%s] %d/%s"):format(label, ("#"):rep(filled),
      (" "):rep(width - filled), done, total or "?"))
    if done == total then io.stderr:write("\n") end
  end
end

local function autochunk(n, workers)
  return mmax(1, mceil(n / (workers * 4)))
end

-- A source of items: an array or an iterator function; returns a function
-- giving the next item and whether there was one.
local function source(items, fname)
  if type(items) == "table" then
    local i, n = 0, #items
    return function()
      if i >= n then return false end
      i = i + 1
      return true, items[i]
    end, n
  elseif type(items) == "function" then
    return function()
      local v = items()
      if v == nil then return false end
      return true, v
    end, nil
  end
  raise("argument", "bad argument #2 to '%s' (array or iterator expected, got %s)",
        fname, type(items))
end

local function checkfn(fn, fname)
  if type(fn) ~= "function" then
    raise("argument", "bad argument #1 to '%s' (function expected, got %s)",
          fname, type(fn))
  end
end

local MAP_OPTS = { timeout = true, chunksize = true, progress = true }

local function checkchunk(cs, fname)
  if cs ~= nil and (math.type(cs) ~= "integer" or cs < 1) then
    raise("argument", "bad argument #3 to '%s' (chunksize must be a positive integer)", fname)
  end
end

local mapchunk = core.mapchunk

local function cancel_from(futs, k)
  for j = k, #futs do futs[j]:cancel() end
end

-- Waits for a chunk's results; turns a timeout of the wait into the call's.
local function chunkresult(f, deadline, fname, timeout)
  local ok, res = pcall(f.result, f, deadline and mmax(0, deadline - monotonic()))
  if ok then return res end
  if Error.is(res, "timeout") and res.interrupt == nil and deadline
     and monotonic() >= deadline then
    raise("timeout", "%s timed out after %g s", fname, timeout)
  end
  error(res, 0)
end

--- pool:map(fn, items [, {timeout, chunksize, progress}]) --> results
-- (ThreadPool and ProcessPool)
-- @function pool:map
local function map(pool, fn, items, opts)
  checkfn(fn, "map")
  if type(items) ~= "table" then
    raise("argument", "bad argument #2 to 'map' (array expected, got %s)", type(items))
  end
  opts = checkopts(opts, MAP_OPTS, "map", 3)
  checkchunk(opts.chunksize, "map")
  local deadline = checktimeout(opts.timeout, "map", 3)
  local n = #items
  local cs = opts.chunksize or autochunk(n, pool:workers())
  local report = progress(opts.progress, "map")
  local futs = {}
  for s = 1, n, cs do
    futs[#futs + 1] = pool:submit(mapchunk, fn, tmove(items, s, mmin(s + cs - 1, n), 1, {}))
  end
  local out, done = {}, 0
  for k, f in ipairs(futs) do
    local ok, res = pcall(chunkresult, f, deadline, "map", opts.timeout)
    if not ok then cancel_from(futs, k); error(res, 0) end   -- k itself on a timeout
    local s = (k - 1) * cs + 1
    local cnt = mmin(cs, n - s + 1)
    tmove(res, 1, cnt, s, out)
    done = done + cnt
    if report then report(done, n) end
  end
  if report and n == 0 then report(0, 0) end
  return out
end

-- The engine of imap and imap_unordered: keeps up to 'window' chunks in
-- flight, taken lazily from the source.
local function feeder(pool, fn, items, opts, fname)
  checkfn(fn, fname)
  opts = checkopts(opts, MAP_OPTS, fname, 3)
  checkchunk(opts.chunksize, fname)
  local deadline = checktimeout(opts.timeout, fname, 3)
  local nextitem, n = source(items, fname)
  local workers = pool:workers()
  local cs = opts.chunksize or (n and autochunk(n, workers) or 1)
  local window = workers * 2
  local st = { inflight = {}, index = 0, exhausted = false, done = 0, total = n,
               deadline = deadline, timeout = opts.timeout,
               report = progress(opts.progress, fname) }
  function st.refill()
    local inflight = st.inflight
    while #inflight < window and not st.exhausted do
      local chunk, c = {}, 0
      while c < cs do
        local more, v = nextitem()
        if not more then st.exhausted = true; break end
        c = c + 1
        chunk[c] = v
      end
      if c == 0 then break end
      inflight[#inflight + 1] = { f = pool:submit(mapchunk, fn, chunk),
                                  start = st.index + 1, count = c }
      st.index = st.index + c
    end
  end
  function st.fail(err)
    for _, c in ipairs(st.inflight) do c.f:cancel() end
    st.inflight = {}
    st.exhausted = true
    error(err, 0)
  end
  function st.take(c)
    local ok, res = pcall(chunkresult, c.f, st.deadline, fname, st.timeout)
    if not ok then c.f:cancel(); st.fail(res) end
    st.done = st.done + c.count
    if st.report then st.report(st.done, st.total) end
    return res
  end
  st.refill()
  return st
end

-- An iterator over (index, result) pairs, chunk by chunk; 'pick' chooses
-- the next chunk from those in flight (nil when there are none).
local function chunk_iterator(st, pick)
  local res, pos, chunk = nil, 0, nil
  return function()
    if chunk == nil or pos >= chunk.count then
      chunk = pick(st.inflight)
      if chunk == nil then return nil end
      res = st.take(chunk)
      pos = 0
      st.refill()
    end
    pos = pos + 1
    return chunk.start + pos - 1, res[pos]
  end
end

--- pool:imap(fn, items [, opts]) --> iterator (index, result) in order, lazy
-- @function pool:imap
local function imap(pool, fn, items, opts)
  return chunk_iterator(feeder(pool, fn, items, opts, "imap"), function(inflight)
    return table.remove(inflight, 1)
  end)
end

--- pool:imap_unordered(fn, items [, opts]) --> iterator (index, result) in
-- completion order
-- @function pool:imap_unordered
local function imap_unordered(pool, fn, items, opts)
  local st = feeder(pool, fn, items, opts, "imap_unordered")
  return chunk_iterator(st, function(inflight)
    if #inflight == 0 then return nil end
    local fs = {}
    for i, c in ipairs(inflight) do fs[i] = c.f end
    local k = core.waitset(fs):next(st.deadline)
    if k == nil then
      st.fail(Error.new("timeout", ("imap_unordered timed out after %g s"):format(st.timeout)))
    end
    return table.remove(inflight, k)
  end)
end

local P = core.methods("concur.ThreadPool")
P.map, P.imap, P.imap_unordered = map, imap, imap_unordered
concur._executor = { map = map, imap = imap, imap_unordered = imap_unordered }
if core.ProcessPool then
  local PP = core.methods("concur.ProcessPool")
  PP.map, PP.imap, PP.imap_unordered = map, imap, imap_unordered
end

---------------------------------------------------------------------------
-- Synchronisation objects, process pools and the rest come from the core.
---------------------------------------------------------------------------

for _, name in ipairs { "Lock", "RLock", "Condition", "Event", "Semaphore",
    "BoundedSemaphore", "Barrier", "Value", "Queue", "RateLimiter",
    "ProcessPool", "Process" } do
  concur[name] = core[name]
end

for _, part in ipairs { "concur.sync", "concur.process" } do
  local ok, extend = pcall(require, part)
  if ok and type(extend) == "function" then extend(concur, core) end
end

return concur
