---@meta concur
-- Lua Language Server definitions for concur (completion and type checks in
-- editors); not loaded at run time. Point LuaLS at this folder: in
-- .luarc.json, "workspace.library": ["<this folder>"] (after luarocks
-- install, `luarocks --lua-version=5.4 show concur` names the rock's
-- folder, which holds library/). `make lint` checks that every public name
-- of concur has a definition here (tools/luals_check.lua).

---------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------

---@alias concur.ErrorKind
---| "task"      # a task raised an error (its value in `value`)
---| "timeout"   # a wait's timeout passed, or a task overran its own
---| "cancelled" # the future was cancelled
---| "broken"    # a worker process died while running the task
---| "closed"    # use after close or shutdown
---| "transfer"  # a value cannot cross to another state or process
---| "argument"  # a bad argument
---| "network"   # fetching: the transfer failed
---| "http"      # fetching: raise_for_status on a status >= 400
---| "robots"    # fetching: robots.txt disallows the URL
---| "limit"     # a size or memory cap was hit

--- Every error concur raises: a table whose metatable is concur.Error.
--- `tostring(err)` gives the message and then the traceback.
---@class concur.Error
---@field kind concur.ErrorKind
---@field message string
---@field value any        the value a task raised (kind "task")
---@field traceback? string the worker's traceback
---@field url? string
---@field status? integer
---@field code? integer
---@field interrupt? string
local Error = {}

--- Whether v is a concur.Error (of that kind, when given).
---@param v any
---@param kind? concur.ErrorKind
---@return boolean
function Error.is(v, kind) end

--- A new error object.
---@param kind concur.ErrorKind
---@param message string
---@param fields? table more fields (value, url, status, code)
---@return concur.Error
function Error.new(kind, message, fields) end

--- The known kinds, in order.
---@type concur.ErrorKind[]
Error.kinds = {}

---------------------------------------------------------------------------
-- Futures
---------------------------------------------------------------------------

---@alias concur.FutureState "pending"|"running"|"finished"|"failed"|"cancelled"

--- The result of a task, to come.
---@class concur.Future
local Future = {}

--- The task's return values; raises kind "task", "timeout" (the task keeps
--- running) or "cancelled".
---@param timeout? number seconds
---@return any ...
function Future:result(timeout) end

--- nil, or the error object the task failed with (waits like result).
---@param timeout? number seconds
---@return concur.Error?
function Future:error(timeout) end

---@return boolean done finished, failed or cancelled
function Future:done() end

---@return boolean
function Future:running() end

---@return boolean
function Future:cancelled() end

---@return concur.FutureState
function Future:state() end

--- Cancels the task: a pending one is dropped, a running one interrupted
--- (a ProcessPool task's worker is killed). false once it has finished.
---@return boolean
function Future:cancel() end

--- fn(f) runs once, in this state: at once if f is done, else when this
--- state next waits (result, wait, as_completed, poll).
---@param fn fun(f: concur.Future)
function Future:on_done(fn) end

--- cqueues' pollable protocol: a descriptor readable once f is done, so
--- cqueues.poll(f) waits for f inside a controller.
---@return integer fd
function Future:pollfd() end

--- cqueues' pollable protocol: "r".
---@return string
function Future:events() end

--- cqueues' pollable protocol: 0 once f is done, else nil.
---@return number?
function Future:timeout() end

--- A coroutine task of this state's scheduler (concur.async); it has the
--- Future interface.
---@class concur.Task
local Task = {}

--- The task's return values (in a task: suspends it until they come;
--- elsewhere: runs the scheduler until then); raises the task's error,
--- kind "cancelled" or "timeout".
---@param timeout? number seconds
---@return any ...
function Task:result(timeout) end

--- nil, or the error object the task failed with (waits like result).
---@param timeout? number seconds
---@return concur.Error?
function Task:error(timeout) end

---@return boolean done finished, failed or cancelled
function Task:done() end

---@return boolean
function Task:running() end

---@return boolean
function Task:cancelled() end

---@return concur.FutureState
function Task:state() end

--- Raises kind "cancelled" inside the task at its suspension point (a task
--- not started never runs); false once it has ended.
---@return boolean
function Task:cancel() end

--- fn(t) runs once, in this state, after the task ends.
---@param fn fun(t: concur.Task)
function Task:on_done(fn) end

--- cqueues' pollable protocol: a descriptor readable once the task is done.
---@return integer fd
function Task:pollfd() end

---@return string
function Task:events() end

---@return number?
function Task:timeout() end

---------------------------------------------------------------------------
-- Executors
---------------------------------------------------------------------------

---@class concur.TaskSpec
---@field [1] function the task
---@field args? any[] its arguments
---@field timeout? number seconds: a running task that overruns it is stopped

---@class concur.Progress.Reporter
---@field update fun(self: any, done: integer, errors?: integer, total?: integer)
---@field finish fun(self: any)

---@alias concur.ProgressOption
---| boolean                                             # true: the concur.progress display
---| fun(done: integer, total: integer?, errors: integer) # called as chunks complete
---| concur.Progress.Reporter                            # an object with update and finish

---@class concur.MapOptions
---@field timeout? number seconds for the whole call (negative: don't wait)
---@field chunksize? integer items per task (default: about 4 chunks per worker)
---@field progress? concur.ProgressOption
---@field errors? "raise"|"return" raise the first item's error (default), or put each failed item's error in its place

---@class concur.PoolStats
---@field workers integer
---@field pending integer
---@field running integer
---@field completed integer
---@field failed integer
---@field cancelled integer

--- The interface ThreadPool and ProcessPool share.
---@class concur.Executor
local Executor = {}

--- Runs fn(...) on a worker; `submit{ fn, args = {...}, timeout = s }`
--- gives the task a deadline.
---@param fn function|concur.TaskSpec
---@param ... any
---@return concur.Future
function Executor:submit(fn, ...) end

--- The results (the first value of each call), in order; raises the first
--- task error (its message and fields `index`, `item` say which item), or
--- with errors = "return" puts each failed item's error in its place.
--- Several arrays (then the options) call fn with one item of each, zipped:
--- the shortest wins.
---@generic T, R
---@param fn fun(item: T, ...): R
---@param items T[]
---@param ... any[]|concur.MapOptions more arrays, then the options
---@return (R|concur.Error)[]
function Executor:map(fn, items, ...) end

--- fn(table.unpack(t)) for each table of arguments t (its field n counts
--- them when present), as Python's starmap; options as map's.
---@generic R
---@param fn fun(...): R
---@param argtables any[][]
---@param opts? concur.MapOptions
---@return (R|concur.Error)[]
function Executor:starmap(fn, argtables, opts) end

--- An iterator over (index, result), in order, lazy; items may be an
--- iterator function (one that raises: the results before, then its error).
--- Several sources are zipped, as map's.
---@generic T, R
---@param fn fun(item: T, ...): R
---@param items T[]|fun(): T?
---@param ... any[]|function|concur.MapOptions more sources, then the options
---@return fun(): integer?, R
function Executor:imap(fn, items, ...) end

--- As imap, in completion order.
---@generic T, R
---@param fn fun(item: T, ...): R
---@param items T[]|fun(): T?
---@param ... any[]|function|concur.MapOptions more sources, then the options
---@return fun(): integer?, R
function Executor:imap_unordered(fn, items, ...) end

--- No more submissions; waits for the running tasks unless wait = false.
---@param opts? { wait?: boolean, cancel_pending?: boolean }
function Executor:shutdown(opts) end

--- shutdown{ wait = true }; `<close>` and `__gc` call it.
function Executor:close() end

---@return concur.PoolStats
function Executor:stats() end

--- The number of workers.
---@return integer
function Executor:workers() end

---@class concur.ThreadPool: concur.Executor
local ThreadPool = {}

---@class concur.ProcessPool: concur.Executor
local ProcessPool = {}

--- The worker processes' pids.
---@return integer[]
function ProcessPool:pids() end

---@class concur.ThreadPoolOptions
---@field workers? integer default concur.cpu_count()
---@field name? string the workers' name prefix
---@field initializer? function runs in each worker first
---@field initargs? any[]
---@field max_pending? integer submit waits for room beyond this

---@class concur.ProcessPoolOptions
---@field workers? integer default concur.cpu_count()
---@field initializer? function
---@field initargs? any[]
---@field max_tasks_per_child? integer
---@field task_timeout? number seconds
---@field memory_limit? integer bytes of a worker's Lua heap (at least 1 MiB)

---------------------------------------------------------------------------
-- Threads and processes
---------------------------------------------------------------------------

---@class concur.Thread
---@field name string
local Thread = {}

--- true and the results, or false and the error; raises kind "timeout".
---@param timeout? number
---@return boolean ok
---@return any ...
function Thread:join(timeout) end

---@return boolean
function Thread:alive() end

--- Interrupts the thread at its next Lua instruction check.
function Thread:cancel() end

---@class concur.SpawnSpec
---@field [1] function
---@field args? any[]
---@field name? string
---@field daemon? boolean cancelled (not joined) at interpreter exit

---@class concur.Process
---@field pid integer
---@field exitcode integer? nil while it runs
local Process = {}

--- true and the results, or false and the error; raises kind "timeout".
---@param timeout? number
---@return boolean ok
---@return any ...
function Process:join(timeout) end

---@return boolean
function Process:alive() end

--- Sends the signal; whether it was sent.
---@param signal? integer default SIGTERM
---@return boolean
function Process:kill(signal) end

---------------------------------------------------------------------------
-- Synchronisation
---------------------------------------------------------------------------

--- A to-be-closed holder: `local _ <close> = lock:guard()`.
---@class concur.Guard
local Guard = {}

--- Releases now (closing it later does nothing).
function Guard:release() end

---@class concur.Lock
local Lock = {}

--- true when acquired (and "owner died" when its holder process died);
--- false at the timeout. acquire(false) does not block.
---@param timeout? number|boolean
---@return boolean acquired
---@return "owner died"?
function Lock:acquire(timeout) end

function Lock:release() end

---@return boolean
function Lock:locked() end

---@return concur.Guard
function Lock:guard() end

---@class concur.RLock
local RLock = {}

---@param timeout? number|boolean
---@return boolean acquired
---@return "owner died"?
function RLock:acquire(timeout) end

function RLock:release() end

---@return boolean
function RLock:locked() end

---@return concur.Guard
function RLock:guard() end

---@class concur.Condition
local Condition = {}

---@param timeout? number|boolean
---@return boolean
function Condition:acquire(timeout) end

function Condition:release() end

--- Waits for a notify (the lock held); false at the timeout.
---@param timeout? number
---@return boolean
function Condition:wait(timeout) end

--- Waits until pred() is true; returns its last value.
---@param pred fun(): any
---@param timeout? number
---@return any
function Condition:wait_for(pred, timeout) end

---@param n? integer default 1
function Condition:notify(n) end

function Condition:notify_all() end

---@return concur.Guard
function Condition:guard() end

---@class concur.Event
local Event = {}

function Event:set() end

function Event:clear() end

---@return boolean
function Event:is_set() end

--- true once set; false at the timeout.
---@param timeout? number
---@return boolean
function Event:wait(timeout) end

---@class concur.Semaphore
local Semaphore = {}

---@param timeout? number|boolean
---@return boolean
function Semaphore:acquire(timeout) end

---@param n? integer default 1
function Semaphore:release(n) end

---@return integer
function Semaphore:value() end

---@return boolean
function Semaphore:is_bounded() end

---@return concur.Guard
function Semaphore:guard() end

--- A Semaphore whose release beyond its initial value raises kind "argument".
---@class concur.BoundedSemaphore: concur.Semaphore
local BoundedSemaphore = {}

---@param timeout? number|boolean
---@return boolean
function BoundedSemaphore:acquire(timeout) end

---@param n? integer
function BoundedSemaphore:release(n) end

---@return integer
function BoundedSemaphore:value() end

---@return boolean
function BoundedSemaphore:is_bounded() end

---@return concur.Guard
function BoundedSemaphore:guard() end

---@class concur.Barrier
local Barrier = {}

--- Waits for all parties; returns this party's index (0 .. parties-1);
--- raises kind "broken".
---@param timeout? number
---@return integer
function Barrier:wait(timeout) end

function Barrier:abort() end

function Barrier:reset() end

---@return integer
function Barrier:parties() end

---@return integer
function Barrier:n_waiting() end

---@return boolean
function Barrier:broken() end

--- An atomic shared number.
---@class concur.Value
local Value = {}

---@return number
function Value:get() end

---@param x number
function Value:set(x) end

--- Adds atomically; returns the new value.
---@param d number
---@return number
function Value:add(d) end

--- Sets new when the value is old; whether it did.
---@param old number
---@param new number
---@return boolean
function Value:cas(old, new) end

---@class concur.QueueOptions
---@field maxsize? integer 0: unbounded
---@field order? "fifo"|"lifo"|"priority"

---@class concur.Queue
local Queue = {}

--- Raises kind "timeout" or "closed".
---@param v any
---@param timeout? number
function Queue:put(v, timeout) end

--- Raises kind "timeout", or "closed" once closed and empty.
---@param timeout? number
---@return any
function Queue:get(timeout) end

---@param v any
---@return boolean
function Queue:try_put(v) end

---@return boolean ok
---@return any v
function Queue:try_get() end

---@return integer
function Queue:size() end

---@return boolean
function Queue:empty() end

---@return boolean
function Queue:full() end

function Queue:close() end

---@return boolean
function Queue:closed() end

--- for v in q:items() do ... end: ends when closed and drained.
---@return fun(): any
function Queue:items() end

function Queue:task_done() end

---@param timeout? number
---@return boolean
function Queue:join(timeout) end

---@class concur.RateLimiter
local RateLimiter = {}

--- Waits for a slot; false at once when it would come after the timeout.
---@param timeout? number
---@return boolean
function RateLimiter:acquire(timeout) end

---@return boolean
function RateLimiter:try_acquire() end

--- Seconds until a slot is free.
---@return number
function RateLimiter:delay() end

---@return number rate
---@return number per
---@return number burst
function RateLimiter:rate() end

---@alias concur.MapKey string|integer|boolean

--- A dictionary shared by reference (threads, pool tasks, processes): keys
--- strings, integers or booleans; values anything transferable (copies).
--- Each operation on one key is atomic; `#m` is its length and `pairs(m)`
--- iterates a snapshot.
---@class concur.Map
local Map = {}

--- k's value, or nil.
---@param k concur.MapKey
---@return any
function Map:get(k) end

--- k's value is now v (a copy); nil deletes k.
---@param k concur.MapKey
---@param v any
function Map:set(k, v) end

--- Whether k was there.
---@param k concur.MapKey
---@return boolean
function Map:delete(k) end

---@param k concur.MapKey
---@return boolean
function Map:has(k) end

--- Adds d (default 1) to k's number atomically (absent: 0); the new number.
---@param k concur.MapKey
---@param d? number
---@return number
function Map:incr(k, d) end

--- fn(old) -> new (nil deletes), written atomically: fn runs with nothing
--- held, again when another write to k came meanwhile.
---@param k concur.MapKey
---@param fn fun(old: any): any
---@return any new
function Map:update(k, fn) end

--- Sets k to v when absent; the value k has.
---@param k concur.MapKey
---@param v any
---@return any
function Map:setdefault(k, v) end

---@return integer
function Map:len() end

--- The keys, at one moment.
---@return concur.MapKey[]
function Map:keys() end

--- An iterator over (key, value), at one moment.
---@return fun(): concur.MapKey?, any
function Map:pairs() end

function Map:clear() end

--- A fixed-size shared array of numbers: `a[i]` and `a[i] = v` (1 .. #a).
---@class concur.Array
---@field [integer] number
local Array = {}

--- Adds d to a[i] atomically; the new value.
---@param i integer
---@param d number
---@return number
function Array:add(i, d) end

--- Sets a[i] to new when it equals old; whether it did.
---@param i integer
---@param old number
---@param new number
---@return boolean
function Array:cas(i, old, new) end

--- The elements, as a Lua array.
---@return number[]
function Array:totable() end

---@return integer
function Array:len() end

---@return "int"|"float"
function Array:type() end

---------------------------------------------------------------------------
-- The module
---------------------------------------------------------------------------

---@class concurlib
local concur = {}

---@type string "concur x.y.z"
concur._VERSION = ""

concur.Error = Error

---@type concur.log
concur.log = require("concur.log")

---@return integer
function concur.cpu_count() end

--- Seconds on a monotonic clock.
---@return number
function concur.monotonic() end

--- Blocks this thread only; a cancelled task wakes. In a coroutine task it
--- suspends only the task (0: lets the other ready tasks run).
---@param seconds number
function concur.sleep(seconds) end

--- "main", a thread's name, or a worker's name.
---@return string
function concur.thread_name() end

--- Runs fn(...) on a new thread. An error of a thread nobody joins goes to
--- concur.excepthook.
---@param fn function|concur.SpawnSpec
---@param ... any
---@return concur.Thread
function concur.spawn(fn, ...) end

--- Called with the error of a thread nobody joined (when its Thread is
--- collected after it ended, or at exit); the default writes "Exception in
--- thread NAME:" and the error to stderr. Replace it to handle them.
---@param err concur.Error
---@param thread concur.Thread
function concur.excepthook(err, thread) end

--- Runs what is due in this state: on_done callbacks of futures that are
--- done, and the scheduler's timers and ready tasks; drains concur.pollfd().
---@return integer ran the number of callbacks run
function concur.poll() end

--- A descriptor readable while this state has callbacks, tasks or timers
--- due (watch it from an event loop and call concur.poll()).
---@return integer fd
function concur.pollfd() end

--- Runs fn(...) as a task of this state's coroutine scheduler, until fn and
--- every task have finished; fn's results, or raises its error. In a task:
--- await(async(fn, ...)).
---@param fn function
---@param ... any
---@return any ...
function concur.run(fn, ...) end

--- Starts fn(...) as a task of this state's scheduler. Outside a running
--- scheduler the task runs when the state next runs its loop (run, poll,
--- an attached luv or cqueues loop, or a wait for the task).
---@param fn function
---@param ... any
---@return concur.Task
function concur.async(fn, ...) end

--- x's results: in a task, suspends only the task; elsewhere blocks like
--- x:result(). Raises kind "argument" when x is neither a Future nor a Task.
---@param x concur.Future|concur.Task
---@param timeout? number seconds
---@return any ...
function concur.await(x, timeout) end

--- Waits for futures.
---@param futures (concur.Future|concur.Task)[]
---@param opts? { timeout?: number, return_when?: "all"|"first"|"first_error" }
---@return (concur.Future|concur.Task)[] done
---@return (concur.Future|concur.Task)[] pending
function concur.wait(futures, opts) end

--- An iterator over the futures in completion order; raises kind "timeout".
---@param futures (concur.Future|concur.Task)[]
---@param timeout? number
---@return fun(): (concur.Future|concur.Task)?
function concur.as_completed(futures, timeout) end

---@param workers_or_opts? integer|concur.ThreadPoolOptions
---@return concur.ThreadPool
function concur.ThreadPool(workers_or_opts) end

---@param workers_or_opts? integer|concur.ProcessPoolOptions
---@return concur.ProcessPool
function concur.ProcessPool(workers_or_opts) end

--- Runs fn(...) in a new OS process, at once.
---@param fn function
---@param ... any
---@return concur.Process
function concur.Process(fn, ...) end

---@return concur.Lock
function concur.Lock() end

---@return concur.RLock
function concur.RLock() end

---@param lock? concur.Lock|concur.RLock
---@return concur.Condition
function concur.Condition(lock) end

---@return concur.Event
function concur.Event() end

---@param n? integer default 1
---@return concur.Semaphore
function concur.Semaphore(n) end

---@param n? integer default 1
---@return concur.BoundedSemaphore
function concur.BoundedSemaphore(n) end

--- A barrier for `parties`; `action` is called (a copy of it) by the last
--- party to arrive, before the others go on; `timeout` is wait's default.
---@param parties integer
---@param opts? { action?: fun(), timeout?: number }
---@return concur.Barrier
function concur.Barrier(parties, opts) end

---@param x? number default 0
---@return concur.Value
function concur.Value(x) end

---@param opts? concur.QueueOptions
---@return concur.Queue
function concur.Queue(opts) end

---@param opts { rate: number, per?: number, burst?: integer }
---@return concur.RateLimiter
function concur.RateLimiter(opts) end

--- A dictionary shared by reference between threads, tasks and processes.
---@return concur.Map
function concur.Map() end

--- n shared numbers, all 0 or `init` (a number, or an array of at most n).
---@param n integer
---@param type "int"|"float"
---@param init? number|number[]
---@return concur.Array
function concur.Array(n, type, init) end

return concur
