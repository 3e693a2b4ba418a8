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
  thread_name = core.thread_name,
  log = require "concur.log",
  ThreadPool = core.ThreadPool,
}

local Error = core.Error
local monotonic = core.monotonic
local type, pairs, ipairs, error, pcall = type, pairs, ipairs, error, pcall
local mmax, mmin, mceil = math.max, math.min, math.ceil

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

-- A timeout (seconds, or nil: none) as an absolute deadline. A negative
-- timeout is a deadline already passed: the wait does not block (as
-- Python's negative timeouts), so `x:wait(deadline - now)` never raises.
local function checktimeout(t, fname, argn)
  if t ~= nil and (type(t) ~= "number" or t ~= t) then
    raise("argument", "bad argument #%d to '%s' (timeout must be a number%s)",
          argn, fname, type(t) == "number" and ", not NaN" or "")
  end
  if t == nil or t == math.huge then return nil end
  return monotonic() + mmax(t, 0)
end

---------------------------------------------------------------------------
-- Futures: on_done callbacks run in this state, when it next waits.
---------------------------------------------------------------------------

local F = core.methods("concur.Future")
local task = require "concur.task"
local poll = task.callbacks   -- the waits below run the callbacks only

--- Runs what is due in this state: the on_done callbacks of futures that
-- are done (in the order they were added), the timers and the ready tasks
-- of the coroutine scheduler; drains `concur.pollfd()`. A callback that
-- raises is reported on stderr (through concur.log) and the others still
-- run; a callback may wait itself.
-- @treturn integer the number of callbacks run
-- @function poll
concur.poll = task.poll

--- concur.pollfd() --> a descriptor that is readable while this state has
-- on_done callbacks, tasks or timers due; `concur.poll()` runs them.
-- Watch it for reading from an event loop (concur.luv and concur.cqueues
-- do), as one fd of a poll(2) set, or with cqueues.poll.
-- @function pollfd
concur.pollfd = task.pollfd

--- f:on_done(fn): fn(f) runs once, in this state: at once if f is done
-- (right after the running callback, when called from one), else when this
-- state next waits (result, error, wait, as_completed, poll), also when
-- that wait raises. Callbacks run one at a time, in the order they were
-- added; one that raises is reported on stderr (through concur.log) and
-- never propagates. A future with a callback waiting makes
-- `concur.pollfd()` readable when it completes.
function F.on_done(f, fn)
  if type(fn) ~= "function" then
    raise("argument", "bad argument #1 to 'on_done' (function expected, got %s)", type(fn))
  end
  task.future_on_done(f, fn)
end

-- result and error run the callbacks before they wait and after, also when
-- they raise (the future failed, was cancelled, or the wait timed out).
-- In a task they suspend only the task.
local function after(ok, ...)
  poll()
  if not ok then error((...), 0) end
  return ...
end
local intask, quiet = task.current, task.quiet
for _, name in ipairs { "result", "error" } do
  local c = F[name]
  F[name] = function(f, timeout)
    local t = intask()
    if t then   -- the loop runs the callbacks; its deadline passed: C raises
      task.future_wait(t, f, timeout, name)
      return c(f, f:done() and 0 or -1)
    elseif quiet() then
      return c(f, timeout)
    end
    poll()
    return after(pcall(c, f, timeout))
  end
end

-- cqueues' pollable protocol: a bell per future (a descriptor of its own,
-- readable once the future is done), kept while the future's proxy lives.
local bells = setmetatable({}, { __mode = "k" })

--- f:pollfd() --> a descriptor readable once f is done: with f:events()
-- and f:timeout(), cqueues' pollable protocol, so cqueues.poll(f) waits
-- for f inside a cqueues controller (and uv.new_poll(f:pollfd()) in luv).
function F.pollfd(f)
  local b = bells[f]
  if not b then
    b = core.hub.bell(f)
    bells[f] = b
  end
  return b:fd()
end

--- f:events() --> "r" (cqueues' pollable protocol)
function F.events() return "r" end

--- f:timeout() --> 0 once f is done, else nil (cqueues' pollable protocol)
function F.timeout(f)
  return f:done() and 0 or nil
end

--- concur.run(fn, ...) --> fn's results: runs fn(...) as a task of a
-- coroutine scheduler in this state, until fn and every task have
-- finished. See concur.task.
-- @function run
concur.run = task.run
--- concur.async(fn, ...) --> Task
-- @function async
concur.async = task.async
--- concur.await(x [, timeout]) --> x's results
-- @function await
concur.await = task.await

--- concur.sleep(seconds): in a task, suspends only the task; elsewhere
-- blocks this thread.
-- @function sleep
concur.sleep = task.sleep

local RETURN_WHEN = { all = true, first = true, first_error = true }
local WAIT_OPTS = { timeout = true, return_when = true }

-- The futures of fs, each once (the first time it is listed), as Python's
-- wait and as_completed take a set.
-- The second result: whether a Task is listed.
local is_task = task.is_task
local function checkfutures(fs, fname)
  if type(fs) ~= "table" then
    raise("argument", "bad argument #1 to '%s' (table of futures expected, got %s)",
          fname, type(fs))
  end
  local seen, unique, n, tasks = {}, {}, 0, false
  for i = 1, #fs do
    local f = fs[i]
    local t = type(f)
    if is_task(f) then tasks = true; t = "userdata" end
    if t ~= "userdata" or not seen[f] then   -- anything else: waitset says
      if t == "userdata" then seen[f] = true end
      n = n + 1
      unique[n] = f
    end
  end
  if tasks then   -- the rest must be futures: checked here, as waitset would
    for i = 1, n do
      local f = unique[i]
      if not is_task(f) and (type(f) ~= "userdata" or not pcall(F.done, f)) then
        raise("argument", "bad argument #1 to '%s' (item %d is not a future)", fname, i)
      end
    end
  end
  return unique, tasks
end

--- concur.wait(futures [, {timeout = s, return_when = "all"|"first"|"first_error"}])
-- @return done, pending (arrays of futures)
function concur.wait(fs, opts)
  local tasks
  fs, tasks = checkfutures(fs, "wait")
  opts = checkopts(opts, WAIT_OPTS, "wait", 2)
  local rw = opts.return_when or "all"
  if not RETURN_WHEN[rw] then
    raise("argument", "bad argument #2 to 'wait' (return_when must be 'all', 'first' or 'first_error')")
  end
  local deadline = checktimeout(opts.timeout, "wait", 2)
  poll()
  if tasks or intask() then
    local done, pending = task.wait(fs, rw, deadline)
    poll()
    return done, pending
  end
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
  local tasks
  fs, tasks = checkfutures(fs, "as_completed")
  local deadline = checktimeout(timeout, "as_completed", 2)
  if tasks or intask() then return task.as_completed(fs, deadline, timeout) end
  local ws = core.waitset(fs)
  return function()
    local i = ws:next(deadline)
    if i == nil then
      poll()
      raise("timeout", "as_completed timed out after %g s", timeout)
    end
    if i == false then return nil end
    poll()
    return fs[i]
  end
end

---------------------------------------------------------------------------
-- Executors: map, imap, imap_unordered over submit.
---------------------------------------------------------------------------

-- The reporter of a `progress` option (concur.progress); with a live one
-- (the display on a terminal, or a progress object), the workers count
-- the items they finish in a shared Value, read while the caller waits.
local progress_option = require("concur.progress").option
local TICK = 0.1   -- seconds between reads of the count while waiting

-- Waits until f is done (or the deadline), updating the reporter from the
-- live count every TICK seconds.
local function tick_until(f, deadline, report, counter)
  while not f:done() do
    local t = monotonic() + TICK
    if deadline and deadline < t then t = deadline end
    core.waitset({ f }):next(t)
    report:update(counter:get())
    if deadline and monotonic() >= deadline then return end
  end
end

local function autochunk(n, workers)
  return mmax(1, mceil(n / (workers * 4)))
end

-- A source of items: an array or an iterator function; returns a function
-- giving the next item and whether there was one, and the count when known.
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

local MAP_OPTS = { timeout = true, chunksize = true, progress = true, errors = true }
local ERRORS = { raise = true, ["return"] = true }

-- The arguments after fn of map, imap and imap_unordered: one or more
-- sources, then maybe an options table (a table without array items: so
-- an empty array in last place reads as no options). Several sources are
-- zipped, the shortest wins, into tables of arguments. Returns the items
-- (one array or iterator), whether they are tables of arguments, the
-- options, and the argument number of the options.
local function mapargs(fname, ...)
  local nargs = select("#", ...)
  local args = { ... }
  local opts
  if nargs >= 2 and (args[nargs] == nil
      or (type(args[nargs]) == "table" and rawlen(args[nargs]) == 0)) then
    opts = args[nargs]
    nargs = nargs - 1
  end
  local optn = nargs + 2
  opts = checkopts(opts, MAP_OPTS, fname, optn)
  if opts.errors ~= nil and not ERRORS[opts.errors] then
    raise("argument", "bad argument #%d to '%s' (errors must be 'raise' or 'return')",
          optn, fname)
  end
  if nargs <= 1 then return args[1], false, opts, optn end
  local nexts, arrays, n = {}, true, math.huge
  for k = 1, nargs do
    local nx, cnt = source(args[k], fname)
    nexts[k] = nx
    if cnt then n = mmin(n, cnt) else arrays = false end
  end
  if arrays then   -- zip the arrays at once
    local zipped = {}
    for i = 1, n do
      local t = { n = nargs }
      for k = 1, nargs do t[k] = args[k][i] end
      zipped[i] = t
    end
    return zipped, true, opts, optn
  end
  local done = false
  return function()   -- zip lazily, as imap takes its items
    if done then return nil end
    local t = { n = nargs }
    for k = 1, nargs do
      local more, v = nexts[k]()
      if not more then done = true; return nil end
      t[k] = v
    end
    return t
  end, true, opts, optn
end

local function checkchunk(cs, fname, argn)
  if cs ~= nil and (math.type(cs) ~= "integer" or cs < 1) then
    raise("argument", "bad argument #%d to '%s' (chunksize must be a positive integer)",
          argn, fname)
  end
end

local mapchunk, slice, newarray = core.mapchunk, core.slice, core.array

local function cancel_from(futs, k)
  for j = k, #futs do futs[j]:cancel() end
end

-- Waits for a chunk's results (the results; or, when an item raised, the
-- results before it, its index in the chunk and its error); turns a
-- timeout of the wait into the call's.
local function chunkresult(f, deadline, fname, timeout)
  local ok, res, bad, err = pcall(f.result, f, deadline and mmax(0, deadline - monotonic()))
  if ok then return res, bad, err end
  if Error.is(res, "timeout") and res.interrupt == nil and deadline
     and monotonic() >= deadline then
    raise("timeout", "%s timed out after %g s", fname, timeout)
  end
  error(res, 0)
end

-- A short, one-line form of a value, for messages.
local function short(v)
  if type(v) == "string" then
    local s = v:gsub("%c", "?")
    if #s > 40 then s = s:sub(1, 37) .. "..." end
    return '"' .. s .. '"'
  elseif type(v) == "number" or type(v) == "boolean" or v == nil then
    return tostring(v)
  end
  return type(v)
end

-- The error of item 'index' (its value 'item'), which failed: it says
-- which item failed, in its message and in fields 'index' and 'item'.
local function itemerror(err, fname, index, item, star)
  if not Error.is(err) then return err end
  local what
  if star and type(item) == "table" then
    local parts = {}
    for k = 1, mmin(item.n or #item, 4) do parts[k] = short(item[k]) end
    if (item.n or #item) > 4 then parts[5] = "..." end
    what = table.concat(parts, ", ")
  else
    what = short(item)
  end
  err.index, err.item = index, item
  err.message = ("%s (%s item %d: %s)"):format(tostring(err.message), fname, index, what)
  return err
end

-- map and starmap over an array of items (of tables of arguments, with
-- 'star').
local function map_items(pool, fname, fn, items, star, opts, optn)
  checkchunk(opts.chunksize, fname, optn)
  local deadline = checktimeout(opts.timeout, fname, optn)
  local errors = opts.errors or "raise"
  local n = #items
  local cs = opts.chunksize or autochunk(n, pool:workers())
  local report = progress_option(opts.progress, fname, n, fname)
  local counter = report and report.live and core.Value(0) or nil
  local futs = {}
  for s = 1, n, cs do
    futs[#futs + 1] = pool:submit(mapchunk, fn, slice(items, s, mmin(s + cs - 1, n)),
                                  counter, star, errors)
  end
  local out, done, nerr = newarray(n), 0, 0
  for k, f in ipairs(futs) do
    if counter then tick_until(f, deadline, report, counter) end
    local s = (k - 1) * cs + 1
    local ok, res, bad, err = pcall(chunkresult, f, deadline, fname, opts.timeout)
    if ok and bad then
      ok, res = false, itemerror(err, fname, s + bad - 1, items[s + bad - 1], star)
    end
    if not ok then
      cancel_from(futs, k)   -- k itself on a timeout
      if report then
        report:update(counter and counter:get() or done, nerr + 1)
        report:finish()
      end
      error(res, 0)
    end
    local cnt = mmin(cs, n - s + 1)
    slice(res, 1, cnt, out, s)
    done = done + cnt
    if errors == "return" then
      for i = s, s + cnt - 1 do
        if Error.is(out[i]) then nerr = nerr + 1 end
      end
    end
    if report then report:update(counter and mmax(done, counter:get()) or done, nerr) end
  end
  if report then
    if n == 0 then report:update(0, 0) end
    report:finish()
  end
  return out
end

--- pool:map(fn, items [, ...] [, {timeout, chunksize, progress, errors}])
-- --> results (ThreadPool and ProcessPool). Several arrays of items call
-- fn with one item of each (zipped, the shortest wins). With errors =
-- "raise" (the default) the first item that raises (in order) fails the
-- call, its error saying which item it was (in its message, and in fields
-- `index` and `item`); with errors = "return" the error object of each
-- failed item takes its place among the results.
-- @function pool:map
local function map(pool, fn, ...)
  checkfn(fn, "map")
  local items, star, opts, optn = mapargs("map", ...)
  if type(items) ~= "table" then
    raise("argument", "bad argument #2 to 'map' (array expected, got %s)", type(items))
  end
  return map_items(pool, "map", fn, items, star, opts, optn)
end

--- pool:starmap(fn, argtables [, opts]) --> results of fn(table.unpack(t))
-- for each table of arguments t (its field `n`, when it has one, counts
-- them), as Python's starmap; options as map's.
-- @function pool:starmap
local function starmap(pool, fn, tuples, opts)
  checkfn(fn, "starmap")
  if type(tuples) ~= "table" then
    raise("argument", "bad argument #2 to 'starmap' (array of argument tables expected, got %s)",
          type(tuples))
  end
  for i = 1, #tuples do
    if type(tuples[i]) ~= "table" then
      raise("argument", "bad argument #2 to 'starmap' (item %d is a %s, not a table of arguments)",
            i, type(tuples[i]))
    end
  end
  opts = checkopts(opts, MAP_OPTS, "starmap", 3)
  if opts.errors ~= nil and not ERRORS[opts.errors] then
    raise("argument", "bad argument #3 to 'starmap' (errors must be 'raise' or 'return')")
  end
  return map_items(pool, "starmap", fn, tuples, true, opts, 3)
end

-- The engine of imap and imap_unordered: keeps up to 'window' chunks in
-- flight, taken lazily from the source. An error of the source (an
-- iterator that raises) ends the feeding: the chunks in flight are still
-- handed out, then the error is raised (the items of the chunk being
-- gathered when it came are dropped, as Python's imap does).
local function feeder(pool, fn, fname, ...)
  checkfn(fn, fname)
  local items, star, opts, optn = mapargs(fname, ...)
  checkchunk(opts.chunksize, fname, optn)
  local deadline = checktimeout(opts.timeout, fname, optn)
  local nextitem, n = source(items, fname)
  local workers = pool:workers()
  local cs = opts.chunksize or (n and autochunk(n, workers) or 1)
  local window = workers * 2
  local errors = opts.errors or "raise"
  local st = { inflight = {}, index = 0, exhausted = false, done = 0, total = n,
               deadline = deadline, timeout = opts.timeout, nerr = 0,
               report = progress_option(opts.progress, fname, n, fname) }
  st.counter = st.report and st.report.live and core.Value(0) or nil
  function st.refill()
    local inflight = st.inflight
    while #inflight < window and not st.exhausted do
      local chunk, c = {}, 0
      while c < cs do
        local ok, more, v = pcall(nextitem)
        if not ok then   -- the source raised: kept for after the chunks in flight
          st.exhausted, st.srcerr, c = true, { more }, 0
          break
        end
        if not more then st.exhausted = true; break end
        c = c + 1
        chunk[c] = v
      end
      if c == 0 then break end
      inflight[#inflight + 1] = { f = pool:submit(mapchunk, fn, chunk, st.counter, star, errors),
                                  start = st.index + 1, count = c, items = chunk }
      st.index = st.index + c
    end
  end
  function st.finish(nerr)
    if st.report and not st.finished then
      st.finished = true
      st.report:update(st.counter and mmax(st.done, st.counter:get()) or st.done, nerr)
      st.report:finish()
    end
  end
  function st.fail(err)
    for _, c in ipairs(st.inflight) do c.f:cancel() end
    st.inflight = {}
    st.exhausted = true
    st.finish(st.nerr + 1)
    error(err, 0)
  end
  -- The results of chunk c, and (when an item raised) how many come before
  -- it and its error.
  function st.take(c)
    if st.counter then tick_until(c.f, st.deadline, st.report, st.counter) end
    local ok, res, bad, err = pcall(chunkresult, c.f, st.deadline, fname, st.timeout)
    if not ok then c.f:cancel(); st.fail(res) end
    if bad then
      return res, bad - 1, itemerror(err, fname, c.start + bad - 1, c.items[bad], star)
    end
    st.done = st.done + c.count
    if errors == "return" then
      for i = 1, c.count do
        if Error.is(res[i]) then st.nerr = st.nerr + 1 end
      end
    end
    if st.report then
      st.report:update(st.counter and mmax(st.done, st.counter:get()) or st.done, st.nerr)
    end
    return res, c.count
  end
  st.refill()
  return st
end

-- An iterator over (index, result) pairs, chunk by chunk; 'pick' chooses
-- the next chunk from those in flight (nil when there are none). An item
-- that raised ends it once the results before it are handed out.
local function chunk_iterator(st, pick)
  local res, pos, count, chunk, err = nil, 0, 0, nil, nil
  return function()
    if chunk == nil or pos >= count then
      if err then st.fail(err) end
      chunk = pick(st.inflight)
      if chunk == nil then
        if st.srcerr then
          local e = st.srcerr[1]
          st.srcerr = nil
          st.fail(e)
        end
        st.finish(st.nerr)
        return nil
      end
      res, count, err = st.take(chunk)
      pos = 0
      if err and count == 0 then st.fail(err) end
      if not err then st.refill() end
    end
    pos = pos + 1
    return chunk.start + pos - 1, res[pos]
  end
end

--- pool:imap(fn, items [, ...] [, opts]) --> iterator (index, result) in
-- order, lazy; items may be arrays or iterator functions (several are
-- zipped, as map's); options as map's.
-- @function pool:imap
local function imap(pool, fn, ...)
  return chunk_iterator(feeder(pool, fn, "imap", ...), function(inflight)
    return table.remove(inflight, 1)
  end)
end

--- pool:imap_unordered(fn, items [, ...] [, opts]) --> iterator (index,
-- result) in completion order
-- @function pool:imap_unordered
local function imap_unordered(pool, fn, ...)
  local st = feeder(pool, fn, "imap_unordered", ...)
  return chunk_iterator(st, function(inflight)
    if #inflight == 0 then return nil end
    local fs = {}
    for i, c in ipairs(inflight) do fs[i] = c.f end
    local ws = core.waitset(fs)
    local k
    if st.counter then   -- read the live count while waiting
      repeat
        local t = monotonic() + TICK
        if st.deadline and st.deadline < t then t = st.deadline end
        k = ws:next(t)
        if k == nil then st.report:update(st.counter:get()) end
      until k ~= nil or (st.deadline and monotonic() >= st.deadline)
    else
      k = ws:next(st.deadline)
    end
    if k == nil then
      st.fail(Error.new("timeout", ("imap_unordered timed out after %g s"):format(st.timeout)))
    end
    return table.remove(inflight, k)
  end)
end

local P = core.methods("concur.ThreadPool")
P.map, P.imap, P.imap_unordered, P.starmap = map, imap, imap_unordered, starmap
concur._executor = { map = map, imap = imap, imap_unordered = imap_unordered,
                     starmap = starmap }
local PP = core.methods("concur.ProcessPool")
PP.map, PP.imap, PP.imap_unordered, PP.starmap = map, imap, imap_unordered, starmap

---------------------------------------------------------------------------
-- Errors of threads nobody joins (Python's threading.excepthook).
---------------------------------------------------------------------------

-- A thread's error is taken by a join that returns it. One that nobody
-- took is reported, through concur.excepthook, when the Thread object is
-- collected after the thread ended; when the thread still runs then, once
-- it has ended (noticed at the next spawn); and at interpreter exit for
-- the threads not reported yet (a non-daemon thread is waited for first, as
-- exit does anyway; a daemon one still running is cancelled, unreported;
-- in a worker's state, one still running is left to run on, unreported).
-- Each thread has a record holding a second Thread object of its own (the
-- caller's is closed once collected), kept until its outcome is settled.
local T = core.methods("concur.Thread")
local tjoin, talive = T.join, T.alive
local records = {}                                 -- record -> true, unsettled
local byproxy = setmetatable({}, { __mode = "k" }) -- caller's Thread -> watch
local orphans = {}                                 -- collected while running

--- The default `concur.excepthook`: writes "Exception in thread NAME:"
-- and then the error (its message and traceback) to stderr, in one write.
-- @param err the thread's error object
-- @param thread the Thread
local function excepthook(err, thread)
  core.log_write(("Exception in thread %s:\n%s\n"):format(thread.name, tostring(err)))
end
concur.excepthook = excepthook

-- Settles the record of an ended thread: reports its error, unless a join
-- took it or it was cancelled.
local function report(rec)
  if records[rec] == nil then return end
  records[rec] = nil
  local ok, done, err = pcall(tjoin, rec.h, 0)
  if not ok or done or Error.is(err, "cancelled") then return end
  local hook = concur.excepthook
  if type(hook) ~= "function" then hook = excepthook end
  local hok, herr = pcall(hook, err, rec.h)
  if not hok then
    io.stderr:write("concur: excepthook failed: ", tostring(herr), "\n")
  end
end

local function report_orphans()
  local j = 0
  for i = 1, #orphans do
    local rec = orphans[i]
    orphans[i] = nil
    if talive(rec.h) then
      j = j + 1
      orphans[j] = rec
    else
      report(rec)
    end
  end
end

-- Collected with the caller's Thread (the value of an ephemeron entry).
local WATCH = { __gc = function(s)
  local rec = s.rec
  if records[rec] == nil then return end
  local ok, alive = pcall(talive, rec.h)
  if not ok then return end
  if alive then orphans[#orphans + 1] = rec else report(rec) end
end }

-- At interpreter exit. NOTE: made anew at each spawn (the older ones are
-- superseded), so it is finalized before every Thread object made so far.
-- In a worker's state (a task's, a thread's), threads still running are
-- left to run on (they outlive that state): only ended ones are reported.
local EXIT = { __gc = function(s)
  if s.superseded then return end
  local main = core.thread_name() == "main"
  for rec in pairs(records) do
    local h = rec.h
    local ok, alive = pcall(talive, h)
    if ok and not (alive and (h.daemon or not main)) then
      if alive then pcall(tjoin, h) end     -- as exit waits for it anyway
      report(rec)
    end
  end
end }

local function settle(t, ...)
  local w = byproxy[t]
  if w then records[w.rec] = nil end
  return ...
end

--- t:join([timeout]) --> true, results... | false, err. The error a join
-- returns is taken: concur.excepthook never reports it.
function T.join(t, timeout)
  return settle(t, tjoin(t, timeout))
end

--- concur.spawn(fn, ...) or spawn{ fn, args = {...}, name = s, daemon =
-- false } --> Thread. An error of a thread nobody joins goes to
-- concur.excepthook(err, thread) (default: written to stderr).
function concur.spawn(...)
  if orphans[1] then report_orphans() end
  local t = core.spawn(...)
  local rec = { h = core.thread_handle(t) }
  records[rec] = true
  byproxy[t] = setmetatable({ rec = rec }, WATCH)
  if concur._atexit then concur._atexit.superseded = true end
  concur._atexit = setmetatable({}, EXIT)
  return t
end

---------------------------------------------------------------------------
-- Synchronisation objects, process pools and the rest come from the core.
---------------------------------------------------------------------------

for _, name in ipairs { "Lock", "RLock", "Condition", "Event", "Semaphore",
    "BoundedSemaphore", "Barrier", "Value", "Queue", "RateLimiter", "Map", "Array",
    "ProcessPool", "Process" } do
  concur[name] = core[name]
end

return concur
