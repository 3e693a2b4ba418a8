--- concur.task: this state's event loop: on_done callbacks, the completion
-- fd and the coroutine scheduler (`concur.run`, `concur.async`,
-- `concur.await`). The `concur` module gives these their public names.
--
-- Everything that can wake this state comes through one descriptor, the
-- state's hub (csrc/hub.c): a future that completes with a callback or a
-- task waiting on it queues a token there; a task made runnable from
-- outside the loop signals it; the timer under it is armed for the next
-- sleeper. `concur.poll()` takes what is queued and runs what it woke, so
-- an event loop that calls poll whenever `concur.pollfd()` is readable runs
-- concur's callbacks and tasks; `concur.run` does the same itself, and
-- sleeps on the descriptor when nothing can run.
--
-- A task is a coroutine resumed only from the ready queue. It suspends by
-- yielding the private value SUSPEND, after it registered what wakes it (a
-- token, a timer, a completion callback of another task) together with a
-- function that undoes that registration (t.undo), so that cancel can take
-- it off whatever it waits on. Anything else yielded to the scheduler is a
-- yield meant for some other scheduler: the task fails.
--
-- Queues, Events, Locks and Semaphores live in memory shared between
-- processes, where no descriptor of this state can be reached by a
-- release; a task waiting on one tries it without blocking and sleeps on
-- the loop's timer between tries, from 1 ms doubling up to POLL_MAX.
-- @module concur.task

local core = require "concur.core"

local hub = core.hub
local Error = core.Error
local monotonic = core.monotonic
local cocreate, coresume, costatus = coroutine.create, coroutine.resume, coroutine.status
local corunning, coyield, coclose = coroutine.running, coroutine.yield, coroutine.close
local type, select, error, pcall, xpcall = type, select, error, pcall, xpcall
local tpack, tunpack, tsort = table.pack, table.unpack, table.sort
local mmax, mmin = math.max, math.min

local M = {}

local POLL_MIN, POLL_MAX = 0.001, 0.02   -- seconds between tries (see above)

local function raise(kind, fmt, ...)
  error(Error.new(kind, fmt:format(...)), 3)
end

local function checktimeout(t, fname, argn)
  if t ~= nil and (type(t) ~= "number" or t ~= t) then
    error(Error.new("argument", ("bad argument #%d to '%s' (timeout must be a number%s)")
          :format(argn, fname, type(t) == "number" and ", not NaN" or "")), 3)
  end
  if t == nil or t == math.huge then return nil end
  return monotonic() + mmax(t, 0)
end

---------------------------------------------------------------------------
-- Tokens: a watch of a future on the hub, and what it wakes.
---------------------------------------------------------------------------

local watchers = {}     -- token -> function or waiting Task, until taken
local schedule_task     -- schedule(t), defined with the tasks
local nwatch = 0
local lasttoken = 0
local tokbuf = {}

-- Watches future f: fn() runs (from take) once it completed. Returns an
-- undo function, or nil when f is done already (fn is then never called).
local function watch(f, fn)
  lasttoken = lasttoken + 1
  local token = lasttoken
  local node = hub.watch(f, token)
  if not node then return nil end
  watchers[token] = fn
  nwatch = nwatch + 1
  return function()
    if watchers[token] then
      watchers[token] = nil
      nwatch = nwatch - 1
      hub.unwatch(node)
    end
  end
end

-- Runs the watchers of the futures completed since the last take, in the
-- order the watches were made.
local function take()
  local n = hub.take(tokbuf)
  if n == 0 then return end
  if n > 1 then tsort(tokbuf) end
  for i = 1, n do
    local token = tokbuf[i]
    tokbuf[i] = nil
    local w = watchers[token]
    if w then
      watchers[token] = nil
      nwatch = nwatch - 1
      if type(w) == "function" then w() else schedule_task(w) end
    end
  end
end

---------------------------------------------------------------------------
-- on_done callbacks: a queue of (future, fn), run one at a time.
---------------------------------------------------------------------------

-- A callback is queued once its future is done (in the order the
-- callbacks were added, among those found done together) and leaves the
-- queue before it runs, so each runs exactly once; one that raises is
-- reported, never lost or propagated. A callback that waits itself polls
-- again, which then only queues (the drain under way runs it next).
local rf, rfn, rhead, rtail = {}, {}, 1, 0
local draining = false
local drained = setmetatable({}, { __close = function() draining = false end })
local byfuture = {}     -- future -> its callbacks, while it is not done

local function queue_callback(f, fn)
  rtail = rtail + 1
  rf[rtail], rfn[rtail] = f, fn
end

local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

-- Reports a callback's error on stderr (as Python's futures log it),
-- through concur.log, so a sink set with concur.log.sink gets it.
local function report_callback(f, err)
  local ok = pcall(function()
    require("concur.log").error(("on_done callback for %s failed: %s")
                               :format(tostring(f), tostring(err)))
  end)
  if not ok then
    io.stderr:write("concur: on_done callback failed: ", tostring(err), "\n")
  end
end

-- Runs the queued callbacks, first in, first out; the number run (0 when
-- a drain is under way already). NOTE: the flag is reset by a to-be-closed
-- value, so also when the drain is cut short (a task stopped in a callback
-- has its coroutine closed).
local function drain()
  if draining or rhead > rtail then return 0 end
  draining = true
  local _ <close> = drained
  local ran = 0
  while rhead <= rtail do
    local f, fn = rf[rhead], rfn[rhead]
    rf[rhead], rfn[rhead] = nil, nil
    rhead = rhead + 1
    local ok, err = xpcall(fn, traceback, f)
    if not ok then report_callback(f, err) end
    ran = ran + 1
  end
  rhead, rtail = 1, 0
  return ran
end

-- Runs the callbacks whose futures are done; not the tasks. What the
-- blocking waits (result, wait, as_completed) call before and after.
local function callbacks()
  if nwatch == 0 and rhead > rtail then return 0 end
  take()
  return drain()
end
M.callbacks = callbacks
--- Whether no callback can be due (no watch, none queued).
function M.quiet() return nwatch == 0 and rhead > rtail end

-- Adds fn to future f's callbacks.
function M.future_on_done(f, fn)
  local list = byfuture[f]
  if list then
    list[#list + 1] = fn
    return
  end
  list = { fn }
  local undo = watch(f, function()
    byfuture[f] = nil
    for i = 1, #list do queue_callback(f, list[i]) end
  end)
  if undo then
    byfuture[f] = list
  else
    queue_callback(f, fn)
    drain()
  end
end

---------------------------------------------------------------------------
-- Timers: a binary heap of { when, seq, fn }, cancelled lazily.
---------------------------------------------------------------------------

local heap, nheap, tseq = {}, 0, 0
local armed = nil        -- the deadline the hub's timer is armed for

local function before(a, b)
  return a.when < b.when or (a.when == b.when and a.seq < b.seq)
end

local function heap_push(e)
  nheap = nheap + 1
  local i = nheap
  heap[i] = e
  while i > 1 do
    local p = i // 2
    if not before(heap[i], heap[p]) then break end
    heap[i], heap[p] = heap[p], heap[i]
    i = p
  end
end

local function heap_pop()
  local top = heap[1]
  heap[1] = heap[nheap]
  heap[nheap] = nil
  nheap = nheap - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= nheap and before(heap[l], heap[m]) then m = l end
    if r <= nheap and before(heap[r], heap[m]) then m = r end
    if m == i then break end
    heap[i], heap[m] = heap[m], heap[i]
    i = m
  end
  return top
end

-- fn() runs at the absolute monotonic time 'when'; returns an undo.
local function at(when, fn)
  tseq = tseq + 1
  local e = { when = when, seq = tseq, fn = fn }
  heap_push(e)
  if armed == nil or when < armed then
    armed = when
    hub.timer(when)
  end
  return function() e.fn = nil end
end

-- Runs the timers that are due; re-arms the hub's timer for the next one
-- (which also clears its readability).
local function run_timers()
  if nheap == 0 and armed == nil then return end
  local now = monotonic()
  while nheap > 0 and (heap[1].fn == nil or heap[1].when <= now) do
    local e = heap_pop()
    local fn = e.fn
    if fn then
      e.fn = nil
      fn()
    end
  end
  local nxt = nheap > 0 and heap[1].when or nil
  if nxt ~= armed or (armed and armed <= now) then
    armed = nxt
    hub.timer(nxt)
  end
end

---------------------------------------------------------------------------
-- Tasks.
---------------------------------------------------------------------------

local SUSPEND = setmetatable({}, { __name = "concur.SUSPEND" })
local CANCEL = setmetatable({}, { __name = "concur.CANCEL" })

local Task = { __name = "concur.Task" }
Task.__index = Task

local bycoro = setmetatable({}, { __mode = "k" })   -- coroutine -> task
local ready, qhead, qtail = {}, 1, 0                -- tasks to resume
local current = nil                                 -- the task running now
local live = 0                                      -- tasks not done
local unretrieved = setmetatable({}, { __mode = "k" })
local looping = 0                                   -- run/drive loops active
local installed = false

-- Queues task t to be resumed with the values given.
local function schedule(t, ...)
  t.rv = select("#", ...) > 0 and tpack(...) or nil
  t.queued = true
  qtail = qtail + 1
  ready[qtail] = t
  if looping == 0 and qtail == qhead then hub.signal() end
end

schedule_task = schedule

--- The running task (nil outside tasks).
function M.current()
  local co = corunning()
  return bycoro[co]
end
local function intask()
  return bycoro[corunning()]
end

-- An unawaited failure, written to stderr through concur.log.
local function report_task(t)
  if t.reported then return end
  t.reported = true
  unretrieved[t] = nil
  local msg = ("Task exception was never retrieved: %s\n%s"):format(
    tostring(t), tostring(t.err))
  local ok = pcall(function() require("concur.log").error(msg) end)
  if not ok then io.stderr:write("concur: ", msg, "\n") end
end

Task.__gc = function(t)
  if t.st == "failed" and not t.retrieved and not t.reported then report_task(t) end
end

-- t ends: state "finished" (values in res), "failed" or "cancelled" (err).
local function finish(t, state, res, err)
  t.st, t.res, t.err = state, res, err
  t.co, t.undo, t.rv = nil, nil, nil
  live = live - 1
  if state == "failed" then unretrieved[t] = true end
  local cbs = t.cbs
  t.cbs = nil
  if cbs then
    for i = 1, #cbs do
      local fn = cbs[i]
      if fn then fn() end
    end
  end
  local ods = t.ondone
  t.ondone = nil
  if ods then
    for i = 1, #ods do queue_callback(t, ods[i]) end
  end
  if t.bell then t.bell:ring() end
end

-- The error object of a task that raised e (with the traceback tb).
local function taskerror(e, tb)
  if Error.is(e) then
    if e.traceback == nil then e.traceback = tb end
    return e
  end
  local err = Error.new("task", tostring(e))
  err.value, err.traceback = e, tb
  return err
end

local UNWATCH = {}      -- t.undo of a task waiting on one watch (t.wnode)

-- Takes t off what it waits on.
local function undo(t)
  local u = t.undo
  t.undo = nil
  if u == UNWATCH then
    local token = t.wtoken
    if watchers[token] == t then
      watchers[token] = nil
      nwatch = nwatch - 1
      hub.unwatch(t.wnode)
    end
    t.wnode, t.wtoken = nil, nil
  elseif u then
    u()
  end
end

-- What a resume of t came to: it ended (returned or raised: the stack of a
-- coroutine that raised is kept, so its traceback is read there), or it
-- suspended, or it yielded something foreign.
local function settle(t, co, ok, ...)
  if costatus(co) == "dead" then
    if ok then return finish(t, "finished", tpack(...)) end
    local e = taskerror((...), debug.traceback(co))
    coclose(co)   -- closes its pending to-be-closed variables
    return finish(t, Error.is(e, "cancelled") and "cancelled" or "failed", nil, e)
  end
  local y = ...
  if y == SUSPEND and select("#", ...) == 1 then return end
  local what = select("#", ...) >= 1 and (type(y) == "string" and ("%q"):format(y)
                                          or tostring(y)) or "nothing"
  coclose(co)
  undo(t)
  finish(t, "failed", nil, Error.new("task", ("task yielded %s to concur's scheduler: a"
    .. " coroutine.yield meant for another scheduler (only concur's waits may"
    .. " suspend a task)"):format(what)))
end

-- Resumes t once.
local function step_task(t)
  local rv = t.rv
  t.rv = nil
  local prev = current
  current = t
  if t.st == "pending" then t.st = "running" end
  local co = t.co
  if rv then settle(t, co, coresume(co, tunpack(rv, 1, rv.n)))
  else settle(t, co, coresume(co)) end
  current = prev
end

-- Suspends the running task t until something schedules it; the values it
-- was scheduled with. 'undo' takes it off what it waits on (for cancel).
-- Raises kind "cancelled" when t was cancelled.
local function suspend(t, u)
  t.undo = u
  if t.cancelreq then
    t.cancelreq = nil
    undo(t)
    error(Error.new("cancelled", "the task was cancelled"), 0)
  end
  local r = coyield(SUSPEND)
  t.undo = nil
  if r == CANCEL or t.cancelreq then
    t.cancelreq = nil
    error(Error.new("cancelled", "the task was cancelled"), 0)
  end
end

-- Runs the ready tasks, as many as were queued when it began (those they
-- wake run at the next pass). Returns how many ran.
local function run_ready()
  local last, ran = qtail, 0
  while qhead <= last do
    local t = ready[qhead]
    ready[qhead] = nil
    qhead = qhead + 1
    t.queued = nil
    if t.co then
      step_task(t)
      ran = ran + 1
    end
  end
  if qhead > qtail then qhead, qtail = 1, 0 end
  return ran
end

-- One pass of the loop: completions, timers, callbacks, ready tasks, and
-- the callbacks they queued. Returns the number of callbacks run.
local function step()
  take()
  run_timers()
  local ran = drain()
  if qhead <= qtail then
    run_ready()
    take()
    ran = ran + drain()
  end
  return ran
end

-- Is there anything at all the loop could do without waiting?
local function busy()
  return qhead <= qtail or rhead <= rtail
end

-- Runs the loop until done() is true, sleeping on the hub when nothing is
-- ready (until its next timer, or deadline: then returns false).
local function drive(done, deadline)
  looping = looping + 1
  local ok, res = pcall(function()
    while true do
      step()
      if done() then return true end
      if not busy() then
        if deadline and monotonic() >= deadline then return false end
        local wake = armed
        if deadline and (wake == nil or deadline < wake) then wake = deadline end
        hub.wait(wake)
      end
    end
  end)
  looping = looping - 1
  if not ok then error(res, 0) end
  return res
end

local function install_waits() end   -- defined below

-- Makes a task of fn(...) and queues it.
local function spawn(fn, ...)
  if not installed then install_waits() end
  tseq = tseq + 1
  local t = setmetatable({ st = "pending", seq = tseq }, Task)
  t.co = cocreate(fn)
  bycoro[t.co] = t
  live = live + 1
  schedule(t, ...)       -- the first resume passes the arguments
  return t
end

--- concur.async(fn, ...) --> Task: starts fn(...) as a task of this state's
-- scheduler. In a task, or in a callback run by the loop, it runs when the
-- running task next suspends. Elsewhere it runs when this state next runs
-- its loop: `concur.run`, `concur.poll()` (which an attached luv or
-- cqueues loop calls), or a wait for the task (`await(t)`, `t:result()`),
-- which runs the loop until the task is done.
function M.async(fn, ...)
  if type(fn) ~= "function" then
    raise("argument", "bad argument #1 to 'async' (function expected, got %s)", type(fn))
  end
  return spawn(fn, ...)
end

-- Registers fn() to run when x (a Future or a Task) completes; returns an
-- undo, or nil when x is done already.
local function on_complete(x, fn)
  if getmetatable(x) == Task then
    if x.cbs == nil then
      if x.st ~= "pending" and x.st ~= "running" then return nil end
      x.cbs = {}
    end
    local cbs = x.cbs
    local i = #cbs + 1
    cbs[i] = fn
    return function() cbs[i] = false end
  end
  return watch(x, fn)
end

-- Suspends task t until x completes or the deadline passes: true, or false
-- at the deadline.
local function await_in(t, x, deadline)
  local fired = false
  local unw, untimer
  unw = on_complete(x, function()
    fired = true
    if untimer then untimer() end
    schedule(t)
  end)
  if not unw then return true end
  if deadline then
    untimer = at(deadline, function()
      unw()
      schedule(t)
    end)
  end
  suspend(t, function()
    unw()
    if untimer then untimer() end
  end)
  return fired
end

-- Sleeps task t until the absolute time 'when'.
local function sleep_in(t, when)
  local untimer = at(when, function() schedule(t) end)
  suspend(t, untimer)
end

--- Sleeps: in a task, suspends it for s seconds (0: lets the other ready
-- tasks run first); elsewhere blocks this thread (concur.sleep).
local sleep = core.sleep
function M.sleep(s)
  local t = intask()
  if not t then
    sleep(s)   -- not a tail call: its argument errors name 'sleep'
    return
  end
  if type(s) ~= "number" or s ~= s then
    raise("argument", "bad argument #1 to 'sleep' (number expected, got %s)",
          s ~= s and "NaN" or type(s))
  end
  if s <= 0 then
    schedule(t)
    suspend(t, nil)
    return
  end
  sleep_in(t, monotonic() + s)
end

---------------------------------------------------------------------------
-- The Task object: the Future interface.
---------------------------------------------------------------------------

local function checktask(t, fname)
  if getmetatable(t) ~= Task then
    error(Error.new("argument", ("bad argument #1 to '%s' (Task expected, got %s)")
          :format(fname, type(t))), 3)
  end
end

-- Waits until task t is done (or the deadline): true when it is.
local function wait_task(t, deadline)
  if t.st ~= "pending" and t.st ~= "running" then return true end
  local me = intask()
  if me == t then
    error(Error.new("argument", "a task cannot wait for itself"), 3)
  end
  if me then return await_in(me, t, deadline) end
  return drive(function() return t.st ~= "pending" and t.st ~= "running" end,
               deadline)
end

local function task_outcome(t)
  t.retrieved = true
  unretrieved[t] = nil
  if t.st == "finished" then return tunpack(t.res, 1, t.res.n) end
  error(t.err, 0)
end

--- t:result([timeout]) --> the task's results; raises its error (kind
-- "cancelled" when it was cancelled), or "timeout".
function Task.result(t, timeout)
  checktask(t, "result")
  local deadline = checktimeout(timeout, "result", 2)
  if not wait_task(t, deadline) then
    raise("timeout", "waiting for the task timed out")
  end
  return task_outcome(t)
end

--- t:error([timeout]) --> nil, or the task's error object.
function Task.error(t, timeout)
  checktask(t, "error")
  local deadline = checktimeout(timeout, "error", 2)
  if not wait_task(t, deadline) then
    raise("timeout", "waiting for the task timed out")
  end
  t.retrieved = true
  unretrieved[t] = nil
  return t.err
end

--- t:done() --> true once finished, failed or cancelled
function Task.done(t)
  checktask(t, "done")
  return t.st ~= "pending" and t.st ~= "running"
end

--- t:running() --> true once started and not done
function Task.running(t)
  checktask(t, "running")
  return t.st == "running"
end

--- t:cancelled() --> true when it was cancelled
function Task.cancelled(t)
  checktask(t, "cancelled")
  return t.st == "cancelled"
end

--- t:state() --> "pending" | "running" | "finished" | "failed" | "cancelled"
function Task.state(t)
  checktask(t, "state")
  return t.st
end

--- t:cancel() --> true unless the task is done. A task not started yet
-- never runs; a suspended one gets kind "cancelled" raised at its
-- suspension point (it may catch it and go on); the running task cancelling
-- itself gets it at its next suspension.
function Task.cancel(t)
  checktask(t, "cancel")
  if t.st ~= "pending" and t.st ~= "running" then return false end
  if t.st == "pending" then
    coclose(t.co)
    finish(t, "cancelled", nil, Error.new("cancelled", "the task was cancelled"))
    return true
  end
  if current == t or t.undo == nil or t.queued then
    t.cancelreq = true       -- running, or already woken: at its next suspension
    return true
  end
  undo(t)
  schedule(t, CANCEL)
  return true
end

--- t:on_done(fn): fn(t) runs once, in this state, after the task ends (at
-- once, as a Future's, when it has ended already).
function Task.on_done(t, fn)
  checktask(t, "on_done")
  if type(fn) ~= "function" then
    raise("argument", "bad argument #1 to 'on_done' (function expected, got %s)", type(fn))
  end
  if t.st ~= "pending" and t.st ~= "running" then
    queue_callback(t, fn)
    drain()
    return
  end
  local ods = t.ondone or {}
  t.ondone = ods
  ods[#ods + 1] = fn
end

--- t:pollfd() --> a descriptor readable once the task is done (cqueues'
-- pollable protocol: cqueues.poll(t) waits for it; the task itself runs
-- when this state's loop runs, e.g. attached with concur.cqueues).
function Task.pollfd(t)
  checktask(t, "pollfd")
  if not t.bell then
    t.bell = hub.bell()
    if t.st ~= "pending" and t.st ~= "running" then t.bell:ring() end
  end
  return t.bell:fd()
end

--- t:events() --> "r"
function Task.events() return "r" end

--- t:timeout() --> 0 when done (cqueues.poll returns at once), else nil
function Task.timeout(t)
  return (t.st ~= "pending" and t.st ~= "running") and 0 or nil
end

function Task.__tostring(t)
  return ("concur.Task %d (%s)"):format(t.seq, t.st)
end

M.Task = Task
function M.is_task(x) return getmetatable(x) == Task end

---------------------------------------------------------------------------
-- Futures in tasks, await, run.
---------------------------------------------------------------------------

local F = core.methods("concur.Future")
local fresult, ferror = F.result, F.error
M.raw_result, M.raw_error = fresult, ferror

-- In task t: waits for future f (or the deadline) without blocking the
-- thread; then the C result/error sees it done (or raises the timeout).
function M.future_wait(t, f, timeout, fname)
  if timeout == nil then   -- the common case: one watch, no closure
    lasttoken = lasttoken + 1
    local token = lasttoken
    local node = hub.watch(f, token)
    if not node then return end
    watchers[token] = t
    nwatch = nwatch + 1
    t.wnode, t.wtoken = node, token
    suspend(t, UNWATCH)
    return
  end
  local deadline = checktimeout(timeout, fname, 2)
  if not f:done() then await_in(t, f, deadline) end
end

local future_mt   -- the metatable of Futures, once one was seen

--- concur.await(x [, timeout]) --> x's results (x a Future, a Task, or a
-- fetch future). In a task it suspends only that task; elsewhere it
-- blocks as x:result() does (for a Task: runs the loop until it is done).
-- Raises x's error, kind "timeout", or kind "argument" for anything else.
function M.await(x, timeout)
  local mt = getmetatable(x)
  if mt == Task then return x:result(timeout) end
  if mt ~= nil and mt == future_mt then return x:result(timeout) end
  if type(x) ~= "userdata" or not pcall(F.done, x) then
    local what = type(x)
    if what == "table" or what == "userdata" then
      what = type(mt) == "table" and rawget(mt, "__name") or what
    end
    raise("argument", "bad argument #1 to 'await' (Future or Task expected, got %s)",
          tostring(what))
  end
  future_mt = mt
  return x:result(timeout)
end

-- Reports the failed tasks nobody took the error of.
local function report_unretrieved()
  local list = {}
  for t in pairs(unretrieved) do
    if not t.retrieved and not t.reported then list[#list + 1] = t end
  end
  tsort(list, function(a, b) return (a.seq or 0) < (b.seq or 0) end)
  for _, t in ipairs(list) do report_task(t) end
end

--- concur.run(fn, ...) --> fn's results: runs fn(...) as a task of this
-- state's scheduler, and the loop until fn and every task have finished;
-- raises fn's error. Called from a task, it is await(async(fn, ...)).
-- A failed task nobody awaited is reported on stderr when run ends.
function M.run(fn, ...)
  if type(fn) ~= "function" then
    raise("argument", "bad argument #1 to 'run' (function expected, got %s)", type(fn))
  end
  local t = spawn(fn, ...)
  if intask() then return t:result() end
  t.retrieved = true
  drive(function() return live == 0 end)
  report_unretrieved()
  return task_outcome(t)
end

--- Runs what is due in this state: the on_done callbacks of futures (and
-- tasks) that are done, timers, and the tasks ready to run; drains
-- `pollfd()`. Returns the number of callbacks run.
function M.poll()
  if looping > 0 or current then return callbacks() end
  local n = step()
  if qhead <= qtail then hub.signal() end   -- more to run: stay readable
  return n
end

--- The descriptor readable while this state has callbacks, tasks or
-- timers due (an epoll set; poll it for reading).
function M.pollfd()
  return hub.fd()
end

--- Seconds until the loop's next timer (nil: none), for event loops that
-- want it (the descriptor becomes readable then anyway).
function M.timeout()
  if busy() then return 0 end
  if armed == nil then return nil end
  return mmax(0, armed - monotonic())
end

---------------------------------------------------------------------------
-- concur.wait and as_completed over Futures and Tasks, in tasks (or, with
-- Tasks listed, outside them: running the loop).
---------------------------------------------------------------------------

local function isdone(x)
  if getmetatable(x) == Task then return x.st ~= "pending" and x.st ~= "running" end
  return x:done()
end

local function failed(x)
  if getmetatable(x) == Task then return x.st == "failed" end
  return x:state() == "failed"
end

--- wait(fs, rw, deadline) --> done, pending: concur.wait for a list that
-- may hold Tasks (fs: checked, each once).
function M.wait(fs, rw, deadline)
  local t = intask()
  local function satisfied()
    local ndone = 0
    for i = 1, #fs do
      local x = fs[i]
      if isdone(x) then
        ndone = ndone + 1
        if rw == "first" or (rw == "first_error" and failed(x)) then return true end
      end
    end
    return ndone == #fs
  end
  if not satisfied() then
    local undos, woken = {}, false
    local function wake()
      if not woken and satisfied() then
        woken = true
        if t then schedule(t) end
      end
    end
    for i = 1, #fs do
      local u = on_complete(fs[i], wake)
      if u then undos[#undos + 1] = u end
    end
    local function undo_all()
      for i = 1, #undos do undos[i]() end
    end
    if t then
      local untimer
      if deadline then untimer = at(deadline, function() woken = true; schedule(t) end) end
      suspend(t, function() undo_all(); if untimer then untimer() end end)
      if untimer then untimer() end
    else
      drive(function() return woken end, deadline)
    end
    undo_all()
  end
  local done, pending = {}, {}
  for i = 1, #fs do
    local x = fs[i]
    if isdone(x) then done[#done + 1] = x else pending[#pending + 1] = x end
  end
  return done, pending
end

--- as_completed(fs, deadline, timeout) --> iterator, for a list that may
-- hold Tasks, or in a task.
function M.as_completed(fs, deadline, timeout)
  local q, qh, qt = {}, 1, 0
  local waiter = nil          -- the task suspended in the iterator, if any
  local undos = {}
  local left = #fs
  for i = 1, #fs do
    local x = fs[i]
    local u = on_complete(x, function()
      qt = qt + 1
      q[qt] = x
      if waiter then
        local w = waiter
        waiter = nil
        schedule(w)
      end
    end)
    if u then undos[#undos + 1] = u
    else
      qt = qt + 1
      q[qt] = x
    end
  end
  return function()
    if left == 0 then return nil end
    if qh > qt then
      local t = intask()
      if t then
        local untimer
        if deadline then
          untimer = at(deadline, function() waiter = nil; schedule(t) end)
        end
        waiter = t
        suspend(t, function() waiter = nil; if untimer then untimer() end end)
        if untimer then untimer() end
      else
        drive(function() return qh <= qt end, deadline)
      end
      if qh > qt then
        for i = 1, #undos do undos[i]() end
        callbacks()
        raise("timeout", "as_completed timed out after %g s", timeout)
      end
    end
    local x = q[qh]
    q[qh] = nil
    qh = qh + 1
    left = left - 1
    callbacks()
    return x
  end
end

---------------------------------------------------------------------------
-- Waits of the shared objects, in tasks: tried, then retried from timers.
---------------------------------------------------------------------------

-- In task t: calls try(...) -> done, results... until done or the
-- deadline; at the deadline returns last(...) (the object's own call that
-- does not wait, which gives its timeout result or error).
local function retry(t, deadline, try, last, ...)
  local delay = POLL_MIN
  while true do
    local r = tpack(try(...))
    if r[1] then return tunpack(r, 2, r.n) end
    local now = monotonic()
    if deadline and now >= deadline then return last(...) end
    local wake = now + delay
    if deadline and deadline < wake then wake = deadline end
    sleep_in(t, wake)
    delay = mmin(delay * 2, POLL_MAX)
  end
end

-- Wraps method 'name' of class 'cls' so that in a task it retries 'try'.
local function wrap_wait(cls, name, targ, make_try)
  local m = core.methods(cls)
  local c = m[name]
  local try, last = make_try(c)
  m[name] = function(o, ...)
    local t = intask()
    if not t then return c(o, ...) end
    local args = tpack(o, ...)
    local timeout = args[targ]
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
      return c(o, ...)       -- let the object raise its argument error
    end
    local deadline = timeout and timeout ~= math.huge and monotonic() + mmax(timeout, 0) or nil
    args[targ] = -1
    return retry(t, deadline, try, last, tunpack(args, 1, mmax(args.n, targ)))
  end
end

-- A boolean wait (acquire, Event:wait): done when it returned true.
local function boolwait(c)
  return function(...)
    local r = tpack(c(...))
    return r[1] == true, tunpack(r, 1, r.n)
  end, c
end

-- A wait that raises "timeout" when it cannot: done unless it did.
local function raisingwait(c)
  return function(...)
    local r = tpack(pcall(c, ...))
    if r[1] then return true, tunpack(r, 2, r.n) end
    if Error.is(r[2], "timeout") then return false end
    error(r[2], 0)
  end, c
end

install_waits = function()
  installed = true
  wrap_wait("concur.Queue", "get", 2, raisingwait)
  wrap_wait("concur.Queue", "put", 3, raisingwait)
  wrap_wait("concur.Event", "wait", 2, boolwait)
  wrap_wait("concur.Lock", "acquire", 2, boolwait)
  wrap_wait("concur.Semaphore", "acquire", 2, boolwait)
  wrap_wait("concur.BoundedSemaphore", "acquire", 2, boolwait)
end

return M
