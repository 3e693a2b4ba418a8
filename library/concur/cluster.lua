---@meta concur.cluster
-- Lua Language Server definitions for concur.cluster (see library/concur.lua).

--- The executor interface across machines: tasks run on the worker nodes
--- of a Redis queue. A future stays pending until its result arrives;
--- cancel() deletes a task no node took, or interrupts it where it runs.
---@class concur.cluster.Pool: concur.Executor
local Pool = {}

---@class concur.cluster.PoolStats: concur.PoolStats
---@field nodes integer nodes serving the queue now
---@field queued integer tasks no node took yet
---@field forged integer frames dropped because their signature did not verify
---@field duplicates integer results of tasks that ran twice, dropped

--- Counts of the queue (workers, running, nodes, queued, forged) and of
--- this pool's futures.
---@return concur.cluster.PoolStats
function Pool:stats() end

---@class concur.cluster.PoolOptions
---@field redis string redis://[user:password@]host[:port][/db]
---@field queue? string default "default"
---@field key? string the shared secret (>= 16 bytes); default CONCUR_CLUSTER_KEY
---@field visibility? number seconds before a silent node's task goes to another (30)
---@field max_retries? integer node deaths before a task fails with kind "broken" (2)
---@field result_ttl? number seconds a result waits in Redis (3600)
---@field timeout? number seconds Redis may be unreachable (30)

---@class concur.cluster.ServeOptions
---@field redis string
---@field queue? string
---@field key? string
---@field workers? integer the local pool's (concur.cpu_count())
---@field kind? "process"|"thread"
---@field prefetch? integer tasks taken beyond the workers (3 per worker)
---@field timeout? number
---@field name? string the node's name (host:pid:random)
---@field ready? fun(name: string) called once the node serves
---@field initializer? function
---@field initargs? any[]
---@field max_tasks_per_child? integer
---@field memory_limit? integer

---@class concur.cluster.NodeCounts
---@field name string
---@field taken integer
---@field completed integer
---@field failed integer
---@field forged integer
---@field reclaimed integer tasks taken over from nodes gone silent
---@field broken integer tasks failed after max_retries node deaths
---@field cancelled integer running tasks cancelled by their pools

--- A rate limiter shared through Redis by every process that names it.
---@class concur.cluster.RateLimiter
local RateLimiter = {}

--- true once the caller's slot has come (it waits for it); false at once,
--- reserving nothing, when that slot would come after the timeout.
---@param timeout? number
---@return boolean
function RateLimiter:acquire(timeout) end

--- true if a slot was free now (and it took it).
---@return boolean
function RateLimiter:try_acquire() end

--- Seconds a caller would wait for its slot now (0: none).
---@return number
function RateLimiter:delay() end

---@return number rate
---@return number per
---@return number burst
function RateLimiter:rate() end

--- Drops this object's connection (the limiter stays in Redis).
function RateLimiter:close() end

---@class concur.cluster.RateLimiterOptions
---@field redis string
---@field name string
---@field rate number
---@field per? number 1
---@field burst? number 1
---@field timeout? number 30

--- A FIFO queue in Redis shared by every process that names it; items are
--- signed with the cluster's key; delivery is at least once.
---@class concur.cluster.Queue
local Queue = {}

--- Adds v; raises kind "closed" once the queue is closed.
---@param v any
---@param timeout? number
function Queue:put(v, timeout) end

--- Waits for an item; raises kind "timeout", or "closed" once the queue is
--- closed and drained.
---@param timeout? number
---@return any
function Queue:get(timeout) end

--- true, v | false when empty; raises "closed" once closed and drained.
---@return boolean ok
---@return any v
function Queue:try_get() end

--- Iterates until the queue is closed and drained.
---@return fun(): any
function Queue:items() end

--- Items put and not taken yet (a hint).
---@return integer
function Queue:size() end

--- No more puts, for everyone; getters drain it, then raise "closed".
function Queue:close() end

---@return boolean
function Queue:closed() end

--- Frames dropped because they did not verify.
---@return integer
function Queue:forged() end

--- Drops this object's connection and key (the queue stays); `<close>`.
function Queue:release() end

---@class concur.cluster.QueueOptions
---@field redis string
---@field name string
---@field key? string
---@field visibility? number seconds before a dead getter's item goes to another (30)
---@field timeout? number

--- A dictionary in Redis shared by every process that names it (the API of
--- concur.Map); values are signed with the cluster's key.
---@class concur.cluster.Map
local Map = {}

---@alias concur.cluster.MapKey string|integer|boolean

---@param k concur.cluster.MapKey
---@return any
function Map:get(k) end

---@param k concur.cluster.MapKey
---@param v any nil deletes
function Map:set(k, v) end

---@param k concur.cluster.MapKey
---@return boolean was_there
function Map:delete(k) end

---@param k concur.cluster.MapKey
---@return boolean
function Map:has(k) end

--- Atomically adds d (1) to the number at k (missing: 0); the new value.
---@param k concur.cluster.MapKey
---@param d? number
---@return number
function Map:incr(k, d) end

--- Atomically replaces the value by fn(old) (fn runs here, again if another
--- writer came first); the new value.
---@param k concur.cluster.MapKey
---@param fn fun(old: any): any
---@return any
function Map:update(k, fn) end

--- The value of k, set to v first if k was missing.
---@param k concur.cluster.MapKey
---@param v any
---@return any
function Map:setdefault(k, v) end

---@return integer
function Map:len() end

---@return concur.cluster.MapKey[]
function Map:keys() end

--- A snapshot: for k, v in m:pairs() do ... end
---@return fun(): concur.cluster.MapKey?, any
function Map:pairs() end

function Map:clear() end

--- Values dropped because they did not verify.
---@return integer
function Map:forged() end

--- Drops this object's connection and key (the map stays); `<close>`.
function Map:release() end

--- The same as release.
function Map:close() end

---@class concur.cluster.MapOptions
---@field redis string
---@field name string
---@field key? string
---@field timeout? number

--- Per-host rates shared by fetch.Clients on many machines (the `limits`
--- option of fetch.Client).
---@class concur.cluster.Limits
local Limits = {}

--- Reservations Redis did not answer in time (the clients kept their own
--- rates meanwhile).
---@return integer
function Limits:failures() end

---@class concur.cluster.LimitsOptions
---@field redis string
---@field prefix? string "fetch"
---@field timeout? number seconds a reservation may wait for Redis (2)

--- A crawl frontier in Redis for fetch.Crawler's `frontier` option: one
--- queue and one seen-set for crawlers on many machines.
---@class concur.cluster.Frontier
local Frontier = {}

---@param entries { url: string, depth?: integer, hops?: integer }[]
---@return integer added
---@return integer duplicates
function Frontier:push(entries) end

--- At most n entries, least deep first, at most per_host from a host less
--- what inflight says is in flight there; waits while other crawlers hold
--- entries and none is queued ({}: the crawl is over).
---@param n integer
---@param inflight? table<string, integer>
---@param per_host? integer
---@return { url: string, depth: integer, hops: integer, host: string }[]
function Frontier:pop(n, inflight, per_host) end

---@param url string
function Frontier:done(url) end

---@param url string
---@return boolean
function Frontier:seen(url) end

---@return integer
function Frontier:size() end

---@return { queued: integer, inflight: integer, seen: integer, seen_bytes: integer, journal_bytes: integer, forged: integer }
function Frontier:stats() end

---@return table?
function Frontier:load() end

---@param t table
function Frontier:save(t) end

--- Drops this object's connection (the frontier stays in Redis).
function Frontier:close() end

---@class concur.cluster.FrontierOptions
---@field redis string
---@field name string
---@field key? string
---@field visibility? number seconds before a silent crawler's entries go back (300)
---@field timeout? number
---@field id? string names the counters this crawler saves, to resume them

local cluster = {}

cluster._VERSION = "concur 0.2.0"

--- A pool whose tasks run on the worker nodes of a queue.
---@param opts concur.cluster.PoolOptions
---@return concur.cluster.Pool
function cluster.Pool(opts) end

--- Runs a worker node until SIGTERM or SIGINT; returns its counts.
---@param opts concur.cluster.ServeOptions
---@return concur.cluster.NodeCounts
function cluster.serve(opts) end

--- A rate limiter shared through Redis (GCRA on the server's clock).
---@param opts concur.cluster.RateLimiterOptions
---@return concur.cluster.RateLimiter
function cluster.RateLimiter(opts) end

--- A FIFO queue in Redis.
---@param opts concur.cluster.QueueOptions
---@return concur.cluster.Queue
function cluster.Queue(opts) end

--- A dictionary in Redis.
---@param opts concur.cluster.MapOptions
---@return concur.cluster.Map
function cluster.Map(opts) end

--- Per-host rates shared through Redis, for fetch.Client{ limits = ... }.
---@param opts concur.cluster.LimitsOptions
---@return concur.cluster.Limits
function cluster.limits(opts) end

--- A crawl frontier in Redis, for fetch.Crawler{ frontier = ... }.
---@param opts concur.cluster.FrontierOptions
---@return concur.cluster.Frontier
function cluster.frontier(opts) end

return cluster
