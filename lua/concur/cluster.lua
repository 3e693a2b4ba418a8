--- concur.cluster: the same executor across machines, and state shared by
-- them, on Redis.
--
-- A `cluster.Pool` has the executor interface of `concur.ThreadPool`
-- (submit, map, imap, imap_unordered, starmap, shutdown, close, stats);
-- its tasks go to a Redis stream, and worker nodes (`cluster.serve`, or the
-- `concur-worker` command) on any number of machines run them. Every frame
-- in Redis (a task, a result, a queue item, a map value) is signed with the
-- cluster's shared key (HMAC-SHA256); a frame that does not verify is
-- dropped and counted, never decoded. Delivery is at least once (a task
-- whose node dies runs again elsewhere after `visibility` seconds); each
-- future resolves exactly once.
--
--     local cluster = require "concur.cluster"
--     local pool <close> = cluster.Pool{ redis = "redis://127.0.0.1:6379/0", key = secret }
--     print(pool:submit(function(a, b) return a + b end, 2, 3):result())   --> 5
--
-- The mechanism is C (csrc/core/redis.c, clusterframe.c, clusterpool.c,
-- clusternode.c); this file reads the options, and builds the shared
-- objects (RateLimiter, Queue, Map, limits, frontier) on Redis commands
-- and scripts.
-- @module concur.cluster

local concur = require "concur"
local core = require "concur.core"

local Error = core.Error
local type, pairs, tostring, error = type, pairs, tostring, error
local mtype = math.type

local M = { _VERSION = core._VERSION }

local function raise(kind, fmt, ...)
  error(Error.new(kind, fmt:format(...)), 3)
end

-- Checks an options table (a table whose names are all known).
local function checkopts(opts, allowed, fname)
  if type(opts) ~= "table" then
    raise("argument", "bad argument #1 to '%s' (table expected, got %s)", fname, type(opts))
  end
  for k in pairs(opts) do
    if not allowed[k] then
      raise("argument", "bad argument #1 to '%s' (unknown option '%s')", fname, tostring(k))
    end
  end
  return opts
end

local function optnum(opts, name, default, fname, min, integer)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or not (v >= min) or (integer and mtype(v) ~= "integer") then  -- luacheck: ignore 581 (NaN)
    raise("argument", "bad argument #1 to '%s' (option '%s' must be a%s number >= %s)",
          fname, name, integer and "n integer" or "", tostring(min))
  end
  return v
end

local function optstr(opts, name, default, fname)
  local v = opts[name]
  if v == nil then v = default end
  if type(v) ~= "string" or v == "" or #v > 200 then
    raise("argument", "bad argument #1 to '%s' (option '%s' must be a non-empty string%s)",
          fname, name, default == nil and " (it is required)" or "")
  end
  return v
end

-- The shared key: the option, or CONCUR_CLUSTER_KEY.
local function getkey(opts, fname)
  local key = opts.key
  if key == nil then key = os.getenv("CONCUR_CLUSTER_KEY") end
  if key == nil or key == "" then
    raise("argument", "%s needs the cluster's shared key: option 'key' or CONCUR_CLUSTER_KEY",
          fname)
  end
  if type(key) ~= "string" or #key < 16 then
    raise("argument", "bad argument #1 to '%s' (the shared key must be a string of at least"
          .. " 16 bytes; make one with: openssl rand -hex 32)", fname)
  end
  return key
end

M._getkey = getkey

---------------------------------------------------------------------------
-- The executor
---------------------------------------------------------------------------

local POOL_OPTS = { redis = true, queue = true, key = true, visibility = true,
  max_retries = true, result_ttl = true, timeout = true }

--- A pool whose tasks run on the worker nodes of a queue.
-- @tparam table opts `redis` (URL, required: redis://[user:pass@]host:port/db),
--  `queue` ("default"), `key` (the shared secret, at least 16 bytes; or
--  CONCUR_CLUSTER_KEY), `visibility` (30: seconds before the task of a node
--  gone silent is handed to another), `max_retries` (2: a task whose nodes
--  died this often fails with kind "broken"), `result_ttl` (3600: seconds a
--  result waits in Redis for its pool), `timeout` (30: seconds Redis may be
--  unreachable before calls fail with kind "network"). `visibility` and
--  `max_retries` belong to the queue: the pool records them in Redis, where
--  the nodes read them.
-- @return a Pool: `submit(fn, ...)` or `submit{fn, args =, timeout =}`,
--  `map`, `imap`, `imap_unordered`, `starmap`, `shutdown`, `close`,
--  `stats`, `workers`; closable with `<close>`
function M.Pool(opts)
  checkopts(opts, POOL_OPTS, "Pool")
  return core.cluster_pool {
    redis = optstr(opts, "redis", nil, "Pool"),
    queue = optstr(opts, "queue", "default", "Pool"),
    key = getkey(opts, "Pool"),
    visibility = optnum(opts, "visibility", 30, "Pool", 0.05),
    max_retries = optnum(opts, "max_retries", 2, "Pool", 0, true),
    result_ttl = optnum(opts, "result_ttl", 3600, "Pool", 1),
    timeout = optnum(opts, "timeout", 30, "Pool", 0),
  }
end

-- map, imap, imap_unordered (and what else the executors share) come from
-- the executors' Lua layer, as for ThreadPool and ProcessPool.
do
  local P = core.methods("concur.cluster.Pool")
  for name, fn in pairs(concur._executor) do P[name] = fn end
end

local SERVE_OPTS = { redis = true, queue = true, key = true, workers = true, kind = true,
  prefetch = true, timeout = true, name = true, ready = true, initializer = true,
  initargs = true, max_tasks_per_child = true, memory_limit = true }

--- Runs a worker node until SIGTERM or SIGINT: takes the queue's tasks,
-- runs them on a local ProcessPool (or ThreadPool) of `workers`, stores
-- their results. On the signal it takes no more tasks, finishes those it
-- took, and returns.
-- @tparam table opts `redis`, `queue`, `key` (as for Pool), `workers`
--  (concur.cpu_count()), `kind` ("process" or "thread"), `prefetch`
--  (tasks taken beyond `workers`, default 3 per worker: a node keeps its
--  workers busy while it fetches more), `timeout` (30),
--  `name` (the node's name; default host:pid:random), `ready` (fn(name),
--  called once the node is serving), and for the local pool
--  `initializer`, `initargs`, `max_tasks_per_child`, `memory_limit`
-- @return a table of counts: name, taken, completed, failed, forged,
--  reclaimed, broken, cancelled
function M.serve(opts)
  checkopts(opts, SERVE_OPTS, "serve")
  local kind = opts.kind or "process"
  if kind ~= "process" and kind ~= "thread" then
    raise("argument", "bad argument #1 to 'serve' (option 'kind' must be 'process' or 'thread')")
  end
  local workers = optnum(opts, "workers", concur.cpu_count(), "serve", 1, true)
  local o = {
    redis = optstr(opts, "redis", nil, "serve"),
    queue = optstr(opts, "queue", "default", "serve"),
    key = getkey(opts, "serve"),
    workers = workers,
    prefetch = optnum(opts, "prefetch", 3 * workers, "serve", 0, true),
    timeout = optnum(opts, "timeout", 30, "serve", 0),
    name = opts.name ~= nil and optstr(opts, "name", nil, "serve") or nil,
    ready = opts.ready,
  }
  if o.ready ~= nil and type(o.ready) ~= "function" then
    raise("argument", "bad argument #1 to 'serve' (option 'ready' must be a function)")
  end
  local pool
  if kind == "process" then
    pool = concur.ProcessPool { workers = workers, initializer = opts.initializer,
      initargs = opts.initargs, max_tasks_per_child = opts.max_tasks_per_child,
      memory_limit = opts.memory_limit }
  else
    if opts.max_tasks_per_child or opts.memory_limit then
      raise("argument", "bad argument #1 to 'serve' (max_tasks_per_child and memory_limit"
            .. " need kind = 'process')")
    end
    pool = concur.ThreadPool { workers = workers, name = "node",
      initializer = opts.initializer, initargs = opts.initargs }
  end
  local ok, res = pcall(core.cluster_serve, pool, o)
  pool:close()
  if not ok then error(res, 0) end
  return res
end

---------------------------------------------------------------------------
-- Shared state
---------------------------------------------------------------------------

-- The options every shared object takes, and its connection.
local function connect(opts, fname)
  local url = optstr(opts, "redis", nil, fname)
  local timeout = optnum(opts, "timeout", 30, fname, 0)
  return core.redis(url, { timeout = timeout }), url, timeout
end

-- A key of object 'name' of a kind: "concur:{name}:part" (one hash slot).
local function keyof(name, part)
  return ("concur:{%s}:%s"):format(name, part)
end

local function checktimeout(t, fname, argn)
  if t == nil then return nil end
  if type(t) ~= "number" or t ~= t then
    raise("argument", "bad argument #%d to '%s' (number expected, got %s)", argn, fname,
          type(t))
  end
  return t < 0 and 0 or t      -- a negative timeout: don't wait
end

-- RateLimiter ---------------------------------------------------------------

local RL_OPTS = { redis = true, name = true, rate = true, per = true, burst = true,
  timeout = true }

--- A rate limiter shared through Redis by every process that names it:
-- `rate` acquisitions per `per` seconds, at most `burst` at once, on the
-- server's clock (GCRA as a Redis script: one round trip per acquire).
-- @tparam table opts `redis` (URL), `name` (required), `rate` (required),
--  `per` (1), `burst` (1), `timeout` (30: seconds Redis may be unreachable)
-- @return a RateLimiter: `acquire([timeout])` (waits for its slot; false
--  at once when the slot would come after the timeout), `try_acquire()`,
--  `delay()`, `rate()`, `close()`
function M.RateLimiter(opts)
  checkopts(opts, RL_OPTS, "RateLimiter")
  local rate = optnum(opts, "rate", nil, "RateLimiter", 0)
  if rate == nil or rate <= 0 then
    raise("argument", "bad argument #1 to 'RateLimiter' (option 'rate' must be a positive number)")
  end
  return core.cluster_ratelimiter {
    redis = optstr(opts, "redis", nil, "RateLimiter"),
    name = optstr(opts, "name", nil, "RateLimiter"),
    rate = rate,
    per = optnum(opts, "per", 1, "RateLimiter", 0),
    burst = optnum(opts, "burst", 1, "RateLimiter", 1),
    timeout = optnum(opts, "timeout", 30, "RateLimiter", 0),
  }
end

-- Queue ---------------------------------------------------------------------

-- put: refused once the queue is closed; counts the items.
local QPUT = [=[
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('XADD', KEYS[1], '*', 'v', ARGV[1])
redis.call('INCR', KEYS[3])
return 1
]=]

-- A getter's next entry without waiting: one a dead getter left (idle for
-- the visibility), else a new one. A close mark is passed on (deleted, and
-- put back at the end, for the next getter). Else: 'closed' once the queue
-- is closed and no getter holds an item, or 'empty'.
local QTAKE = [=[
local items, group, me = KEYS[1], 'getters', ARGV[1]
local r = redis.call('XAUTOCLAIM', items, group, me, ARGV[2], '0-0', 'COUNT', 1)
local e = r[2][1]
if not e then
  r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', 1, 'STREAMS', items, '>')
  e = r and r[1][2][1]
end
if e and e[2][1] == 'c' then
  redis.call('XACK', items, group, e[1])
  redis.call('XDEL', items, e[1])
  redis.call('XADD', items, '*', 'c', '1')
  e = nil
end
if e then return { 'e', e[1], e[2] } end
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('XPENDING', items, group)[1] == 0 then
  return { 'closed' }
end
return { 'empty' }
]=]

-- Done with an entry: acknowledged, deleted, and an item no more.
local QDONE = [=[
if redis.call('XACK', KEYS[1], 'getters', ARGV[1]) == 1 and ARGV[2] == 'v' then
  redis.call('DECR', KEYS[3])
end
redis.call('XDEL', KEYS[1], ARGV[1])
if ARGV[2] == 'c' then redis.call('XADD', KEYS[1], '*', 'c', '1') end
if ARGV[2] == 'forged' then redis.call('INCR', KEYS[4]) end
return 1
]=]

local QCLOSE = [=[
if redis.call('SET', KEYS[2], '1', 'NX') then redis.call('XADD', KEYS[1], '*', 'c', '1') end
return 1
]=]

local Q = {}
Q.__index = Q
Q.__name = "concur.cluster.Queue"

local Q_OPTS = { redis = true, name = true, key = true, timeout = true, visibility = true }

-- Makes the object's stream and the group its getters share.
local function mkgroup(conn, stream, group)
  local r = conn:call("XGROUP", "CREATE", stream, group, "0", "MKSTREAM")
  if type(r) == "table" and not r.err:find("BUSYGROUP", 1, true) then
    raise("network", "Redis refused to make the stream %s: %s", stream, r.err)
  end
end

local function newid()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(8) or tostring(os.time() + os.clock())
  if f then f:close() end
  return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- A FIFO queue in Redis, shared by every process that names it (a Redis
-- stream and a consumer group): items are any transferable values, signed
-- with the cluster's key. An item a getter took is acknowledged once it is
-- decoded; one whose getter died before that goes to another getter after
-- `visibility` seconds, so nothing put is lost (an item may, rarely, be
-- got twice).
-- @tparam table opts `redis`, `name` (required), `key` (or
--  CONCUR_CLUSTER_KEY), `visibility` (30), `timeout` (30)
-- @return a Queue: `put`, `get`, `try_get`, `size`, `close`, `items`
function M.Queue(opts)
  checkopts(opts, Q_OPTS, "Queue")
  local name = optstr(opts, "name", nil, "Queue")
  local key = core.cluster_key(getkey(opts, "Queue"))
  local vis = optnum(opts, "visibility", 30, "Queue", 0.01)
  local conn = connect(opts, "Queue")
  local q = setmetatable({ conn = conn, key = key, stream = keyof(name, "items"),
    closedkey = keyof(name, "closed"), countkey = keyof(name, "count"),
    forgedkey = keyof(name, "forged"), me = newid(), vis = ("%d"):format(vis * 1000) }, Q)
  mkgroup(conn, q.stream, "getters")
  return q
end

--- q:put(v [, timeout]): adds v (raises kind "closed" once the queue is
-- closed; the timeout bounds the wait for Redis)
function Q:put(v, timeout)
  local frame = self.key:seal(self.stream, "Q", 0, 0, "", v)
  local ok = self.conn:eval(QPUT, { self.stream, self.closedkey, self.countkey }, { frame },
                            checktimeout(timeout, "put", 2))
  if ok ~= 1 then raise("closed", "cannot put to a closed queue") end
end

-- Handles a taken entry { id, fields }: returns true, v for an item; false
-- for a frame that did not verify (dropped and counted) or a close mark.
local function take(self, id, fields)
  local f = {}
  for i = 1, #(fields or {}), 2 do f[fields[i]] = fields[i + 1] end
  if f.c then
    self.conn:eval(QDONE, { self.stream, self.closedkey, self.countkey, self.forgedkey }, { id, "c" })
    return false
  end
  local r = f.v and table.pack(self.key:open(self.stream, f.v)) or { false }
  if not r[1] or r[1] ~= "Q" then
    self.conn:eval(QDONE, { self.stream, self.closedkey, self.countkey, self.forgedkey }, { id, "forged" })
    return false
  end
  self.conn:eval(QDONE, { self.stream, self.closedkey, self.countkey, self.forgedkey }, { id, "v" })
  return true, r[5]
end

local function get(self, deadline)
  while true do
    local r = self.conn:eval(QTAKE, { self.stream, self.closedkey }, { self.me, self.vis })
    if r[1] == "e" then
      local ok, v = take(self, r[2], r[3])
      if ok then return true, v end
    elseif r[1] == "closed" then
      raise("closed", "the queue is closed and drained")
    else
      local left = deadline and deadline - concur.monotonic()
      if left and left <= 0 then return false end
      local block = math.max(1, math.floor((left or 5) * 1000))
      local got = self.conn:pipeline({ { "XREADGROUP", "GROUP", "getters", self.me, "COUNT", 1,
        "BLOCK", math.min(block, 5000), "STREAMS", self.stream, ">" } }, 10 + block / 1000)[1]
      if got and got.err then raise("network", "Redis: %s", got.err) end
      if got then
        local ok, v = take(self, got[1][2][1][1], got[1][2][1][2])
        if ok then return true, v end
      end
    end
  end
end

--- q:get([timeout]) --> v: waits for an item; raises kind "timeout" when
-- none came in time, "closed" once the queue is closed and drained
function Q:get(timeout)
  timeout = checktimeout(timeout, "get", 1)
  local ok, v = get(self, timeout and concur.monotonic() + timeout)
  if not ok then raise("timeout", "queue get timed out after %s s", tostring(timeout)) end
  return v
end

--- q:try_get() --> true, v | false when empty; raises "closed" once the
-- queue is closed and drained
function Q:try_get()
  return get(self, concur.monotonic())
end

--- q:items() --> iterator over the items, until the queue is closed and
-- drained
function Q:items()
  return function()
    local ok, got, v = pcall(get, self, nil)
    if ok and got then return v end
    if Error.is(got, "closed") then return nil end
    error(got, 0)
  end
end

--- q:size() --> items put and not taken yet (a hint)
function Q:size()
  return tonumber(self.conn:call("GET", self.countkey)) or 0
end

--- q:close(): no more puts; getters blocked on it wake, and get raises
-- kind "closed" once the items left are taken
function Q:close()
  self.conn:eval(QCLOSE, { self.stream, self.closedkey }, {})
end

--- q:closed() --> boolean
function Q:closed()
  return self.conn:call("EXISTS", self.closedkey) == 1
end

--- q:forged() --> frames dropped because they did not verify
function Q:forged()
  return tonumber(self.conn:call("GET", self.forgedkey)) or 0
end

-- Map -----------------------------------------------------------------------

local MP = {}
MP.__index = MP
MP.__name = "concur.cluster.Map"

local MAP_OPTS = { redis = true, name = true, key = true, timeout = true }

-- A key as a hash field: "s<string>", "i<integer>", "b0"/"b1".
local function field(k, fname)
  local t = type(k)
  if t == "string" then return "s" .. k end
  if t == "boolean" then return k and "b1" or "b0" end
  if t == "number" then
    local i = math.tointeger(k)
    if i then return "i" .. i end
  end
  raise("argument", "bad argument #1 to '%s' (key must be a string, integer or boolean, got %s)",
        fname, t == "number" and "a float" or t)
end

local function unfield(f)
  local t, rest = f:sub(1, 1), f:sub(2)
  if t == "s" then return rest end
  if t == "i" then return math.tointeger(tonumber(rest)) end
  if t == "b" then return rest == "1" end
end

--- A dictionary in Redis, shared by every process that names it (a hash
-- whose values are signed frames; a value that does not verify reads as
-- missing, and is counted). The API of concur.Map.
-- @tparam table opts `redis`, `name` (required), `key` (or
--  CONCUR_CLUSTER_KEY), `timeout` (30)
-- @return a Map: `get`, `set`, `delete`, `has`, `incr`, `update`,
--  `setdefault`, `len`, `keys`, `pairs`, `clear`
function M.Map(opts)
  checkopts(opts, MAP_OPTS, "Map")
  local name = optstr(opts, "name", nil, "Map")
  local key = core.cluster_key(getkey(opts, "Map"))
  local conn = connect(opts, "Map")
  return setmetatable({ conn = conn, key = key, hash = keyof(name, "map"),
    forgedkey = keyof(name, "forged") }, MP)
end

-- The value of a field's frame (nil, false for one that does not verify).
local function value(self, f, frame)
  if not frame then return nil end
  local r = table.pack(self.key:open(self.hash .. "\0" .. f, frame))
  if not r[1] or r[1] ~= "M" then
    self.conn:call("INCR", self.forgedkey)
    return nil, false
  end
  return r[5]
end

local function seal(self, f, v)
  return self.key:seal(self.hash .. "\0" .. f, "M", 0, 0, "", v)
end

--- m:get(k) --> the value, or nil
function MP:get(k)
  local f = field(k, "get")
  return (value(self, f, self.conn:call("HGET", self.hash, f)))
end

--- m:set(k, v): v nil deletes
function MP:set(k, v)
  local f = field(k, "set")
  if v == nil then self.conn:call("HDEL", self.hash, f)
  else self.conn:call("HSET", self.hash, f, seal(self, f, v)) end
end

--- m:delete(k) --> true if k was there
function MP:delete(k)
  return self.conn:call("HDEL", self.hash, field(k, "delete")) == 1
end

--- m:has(k) --> boolean
function MP:has(k)
  return self.conn:call("HEXISTS", self.hash, field(k, "has")) == 1
end

--- m:update(k, fn) --> the new value: fn(old) -> new, atomically (fn runs
-- here; when another writer changed the map meanwhile it runs again)
function MP:update(k, fn)
  if type(fn) ~= "function" then
    raise("argument", "bad argument #2 to 'update' (function expected, got %s)", type(fn))
  end
  local f = field(k, "update")
  while true do
    local r = self.conn:pipeline({ { "WATCH", self.hash }, { "HGET", self.hash, f } })
    local ok, new = pcall(fn, (value(self, f, r[2])))
    if not ok then
      self.conn:call("UNWATCH")
      error(new, 0)
    end
    local cmd = new == nil and { "HDEL", self.hash, f } or { "HSET", self.hash, f, seal(self, f, new) }
    local done = self.conn:pipeline({ { "MULTI" }, cmd, { "EXEC" } })[3]
    if done then return new end              -- nil: another writer came first
  end
end

--- m:incr(k [, d]) --> the new value (k missing counts as 0), atomically
function MP:incr(k, d)
  d = d or 1
  if type(d) ~= "number" then
    raise("argument", "bad argument #2 to 'incr' (number expected, got %s)", type(d))
  end
  return self:update(k, function(old)
    if old ~= nil and type(old) ~= "number" then
      raise("argument", "incr: the value of %s is not a number", tostring(k))
    end
    return (old or 0) + d
  end)
end

--- m:setdefault(k, v) --> the value of k, set to v first if k was missing
function MP:setdefault(k, v)
  local f = field(k, "setdefault")
  local r = self.conn:pipeline({ { "HSETNX", self.hash, f, seal(self, f, v) },
                                 { "HGET", self.hash, f } })
  return (value(self, f, r[2]))
end

--- m:len() --> number of keys
function MP:len()
  return self.conn:call("HLEN", self.hash)
end

--- m:keys() --> array of the keys (a snapshot)
function MP:keys()
  local out = {}
  for i, f in ipairs(self.conn:call("HKEYS", self.hash)) do out[i] = unfield(f) end
  return out
end

--- m:pairs() --> iterator over a snapshot: for k, v in m:pairs() do ... end
function MP:pairs()
  local all, i = self.conn:call("HGETALL", self.hash), -1
  return function()
    while true do
      i = i + 2
      local f = all[i]
      if f == nil then return nil end
      local v, good = value(self, f, all[i + 1])
      if good ~= false then return unfield(f), v end
    end
  end
end

MP.__len = function(self) return self:len() end             -- #m
MP.__pairs = function(self) return self:pairs() end         -- pairs(m)

--- m:clear()
function MP:clear()
  self.conn:call("DEL", self.hash)
end

--- m:forged() --> values dropped because they did not verify
function MP:forged()
  return tonumber(self.conn:call("GET", self.forgedkey)) or 0
end

--- q:release(): drops this object's connection and forgets its key (the
-- queue stays in Redis for the others); `<close>` calls it. (q:close()
-- closes the queue itself, for everyone.)
function Q:release()
  self.conn:close()
  self.key:close()
end
Q.__close = Q.release

--- m:release(): drops this object's connection and forgets its key (the
-- map stays in Redis for the others); also m:close() and `<close>`.
MP.release = Q.release
MP.close = Q.release
MP.__close = Q.release

-- frontier ------------------------------------------------------------------

-- push: each entry is new when its URL's fingerprint joins the seen-set;
-- a new one joins the queue, least deep first (then first come). ARGV:
-- per entry its depth, URL, and "host\0url\0frame" (the queue's member).
local FPUSH = [=[
local added, dups = 0, 0
for i = 1, #ARGV, 3 do
  if redis.call('SADD', KEYS[1], string.sub(redis.sha1hex(ARGV[i + 1]), 1, 16)) == 1 then
    local seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[2], tonumber(ARGV[i]) * 1e10 + seq, ARGV[i + 2])
    added = added + 1
  else
    dups = dups + 1
  end
end
if added > 0 then      -- crawlers waiting for work wake up
  redis.call('LPUSH', KEYS[4], 1)
  redis.call('LTRIM', KEYS[4], 0, 63)
end
return { added, dups }
]=]

-- pop: entries a crawler took and did not finish within the visibility go
-- back to the queue; then up to n, least deep first, at most per_host from
-- a host (less what ARGV says is in flight there); they wait in 'inflight'.
-- Returns how many entries crawlers hold now, then the entries.
local FPOP = [=[
local queue, inflight = KEYS[1], KEYS[2]
local n, perhost, vis = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local held = redis.call('HGETALL', inflight)
for i = 1, #held, 2 do
  local due, score, member = string.match(held[i + 1], '^([^|]*)|([^|]*)|(.*)$')
  if tonumber(due) < now then
    redis.call('ZADD', queue, score, member)
    redis.call('HDEL', inflight, held[i])
  end
end
local count = {}
for i = 4, #ARGV, 2 do count[ARGV[i]] = tonumber(ARGV[i + 1]) end
local out, taken = {}, {}
local cand = redis.call('ZRANGE', queue, 0, n * 8 + 63, 'WITHSCORES')
for i = 1, #cand, 2 do
  if #out >= n then break end
  local m = cand[i]
  local z = string.find(m, '\0', 1, true)
  local host = string.sub(m, 1, z - 1)
  local c = count[host] or 0
  if perhost < 0 or c < perhost then
    count[host] = c + 1
    local url = string.sub(m, z + 1, string.find(m, '\0', z + 1, true) - 1)
    out[#out + 1] = m
    taken[#taken + 1] = m
    redis.call('HSET', inflight, url, string.format('%.3f', now + vis) .. '|' .. cand[i + 1] .. '|' .. m)
  end
end
if #taken > 0 then redis.call('ZREM', queue, unpack(taken)) end
table.insert(out, 1, redis.call('HLEN', inflight))
return out
]=]

local FSEEN = [=[
return redis.call('SISMEMBER', KEYS[1], string.sub(redis.sha1hex(ARGV[1]), 1, 16))
]=]

local FR = {}
FR.__index = FR
FR.__name = "concur.cluster.Frontier"

local FR_OPTS = { redis = true, name = true, key = true, timeout = true, visibility = true,
  id = true }

--- A crawl frontier in Redis, for fetch.Crawler's `frontier` option:
-- crawlers on many machines that name the same one crawl one site
-- together: one queue (least deep first), one seen-set (fingerprints of
-- canonical URLs), so each page is fetched once. An entry a crawler took
-- and did not finish within `visibility` seconds (it died) goes back to
-- the queue. Entries are signed with the cluster's key: an injected URL
-- that does not verify is dropped and counted.
-- @tparam table opts `redis`, `name` (required), `key` (or
--  CONCUR_CLUSTER_KEY), `visibility` (300), `timeout` (30), `id` (names the
--  counters this crawler saves, to resume them; default: none kept)
-- @return a frontier: push, pop, done, seen, size, stats, load, save,
--  close (the interface of fetch.Frontier)
function M.frontier(opts)
  checkopts(opts, FR_OPTS, "frontier")
  local name = optstr(opts, "name", nil, "frontier")
  local key = core.cluster_key(getkey(opts, "frontier"))
  local vis = optnum(opts, "visibility", 300, "frontier", 0.01)
  local id = opts.id ~= nil and optstr(opts, "id", nil, "frontier") or nil
  local conn, _, timeout = connect(opts, "frontier")
  return setmetatable({ conn = conn, conn_timeout = timeout, key = key, vis = ("%.3f"):format(vis),
    seenkey = keyof(name, "seen"), queue = keyof(name, "frontier"),
    inflightkey = keyof(name, "inflight"), seqkey = keyof(name, "seq"),
    forgedkey = keyof(name, "forged"), wakekey = keyof(name, "wake"),
    savedkey = id and keyof(name, "saved:" .. id) }, FR)
end

local function urlarg(u, fname)
  if type(u) ~= "string" or not (u:find("^https?://")) then
    raise("argument", "bad argument #1 to '%s' (a canonical http(s) URL expected)", fname)
  end
  return u
end

--- fr:push(entries) --> added, duplicates: entries { url, depth, hops }
function FR:push(entries)
  if type(entries) ~= "table" then
    raise("argument", "bad argument #1 to 'push' (table expected, got %s)", type(entries))
  end
  local args = {}
  for i, e in ipairs(entries) do
    local u = urlarg(type(e) == "table" and e.url, "push")
    local depth, hops = e.depth or 0, e.hops or 0
    if mtype(depth) ~= "integer" or depth < 0 or mtype(hops) ~= "integer" or hops < 0 then
      raise("argument", "bad argument #1 to 'push' (entries[%d]: depth and hops must be"
            .. " non-negative integers)", i)
    end
    local host = u:match("^(%a+://[^/?#]*)")
    args[#args + 1] = depth
    args[#args + 1] = u
    args[#args + 1] = host .. "\0" .. u .. "\0" ..
      self.key:seal(self.queue, "U", 0, 0, "", { url = u, depth = depth, hops = hops })
  end
  if #args == 0 then return 0, 0 end
  local r = self.conn:eval(FPUSH, { self.seenkey, self.queue, self.seqkey, self.wakekey }, args)
  return r[1], r[2]
end

--- fr:pop(n [, inflight, per_host]) --> array of { url, depth, hops, host }.
-- When the queue is empty, nothing of this crawler is in flight, and other
-- crawlers hold entries (whose pages may bring more), it waits for them:
-- an empty array means the whole crawl is over.
function FR:pop(n, inflight, per_host)
  if mtype(n) ~= "integer" or n < 0 then
    raise("argument", "bad argument #1 to 'pop' (a non-negative integer expected)")
  end
  if n == 0 then return {} end
  local args = { n, per_host or -1, self.vis }
  local mine = false
  if inflight ~= nil then
    for host, c in pairs(inflight) do
      args[#args + 1] = host
      args[#args + 1] = c
      mine = mine or c > 0
    end
  end
  while true do
    local r = self.conn:eval(FPOP, { self.queue, self.inflightkey }, args)
    local out = {}
    for i = 2, #r do
      local m = r[i]
      local host, u, frame = m:match("^([^%z]*)%z([^%z]*)%z(.*)$")
      local o = frame and table.pack(self.key:open(self.queue, frame)) or { false }
      local e = o[1] == "U" and type(o[5]) == "table" and o[5]
      if e and e.url == u then
        out[#out + 1] = { url = e.url, depth = e.depth, hops = e.hops, host = host }
      else                         -- forged: dropped, counted
        self.conn:pipeline({ { "HDEL", self.inflightkey, u or "" }, { "INCR", self.forgedkey } })
      end
    end
    if #out > 0 or mine or r[1] == 0 then return out end
    -- others are at work: their pages may bring more (a push or a done
    -- wakes this wait; a second at most, to look again)
    self.conn:pipeline({ { "BLPOP", self.wakekey, 1 } }, 10 + self.conn_timeout)
  end
end

--- fr:done(url): a popped entry is finished
function FR:done(u)
  self.conn:pipeline({ { "HDEL", self.inflightkey, urlarg(u, "done") },
    { "LPUSH", self.wakekey, 1 }, { "LTRIM", self.wakekey, 0, 63 } })
end

--- fr:seen(url) --> boolean
function FR:seen(u)
  return self.conn:eval(FSEEN, { self.seenkey }, { urlarg(u, "seen") }) == 1
end

--- fr:size() --> entries queued
function FR:size()
  return self.conn:call("ZCARD", self.queue)
end

--- fr:stats() --> { queued, inflight, seen, seen_bytes, journal_bytes, forged }
function FR:stats()
  local r = self.conn:pipeline({ { "ZCARD", self.queue }, { "HLEN", self.inflightkey },
    { "SCARD", self.seenkey }, { "GET", self.forgedkey } })
  return { queued = r[1], inflight = r[2], seen = r[3], seen_bytes = 16 * r[3],
    journal_bytes = 0, forged = tonumber(r[4]) or 0 }
end

--- fr:save(t): the crawler's counters (kept under the frontier's `id`)
function FR:save(t)
  if self.savedkey then
    self.conn:call("SET", self.savedkey, self.key:seal(self.savedkey, "S", 0, 0, "", t))
  end
end

--- fr:load() --> the counters last saved under the frontier's `id`, or nil
function FR:load()
  if not self.savedkey then return nil end
  local frame = self.conn:call("GET", self.savedkey)
  if not frame then return nil end
  local r = table.pack(self.key:open(self.savedkey, frame))
  return r[1] == "S" and r[5] or nil
end

--- fr:close(): drops this object's connection (the frontier stays in Redis)
function FR:close()
  self.conn:close()
  self.key:close()
end
FR.__close = FR.close

-- limits --------------------------------------------------------------------

local LIMITS_OPTS = { redis = true, prefix = true, timeout = true }

--- Per-host rates shared by fetch.Clients on many machines: give the same
-- limits (the same Redis and prefix) to `fetch.Client{ rate = r, limits =
-- ... }` in each process, and all those clients together start requests to
-- a host at r per second (the politeness promise for the whole cluster).
-- Each request's start is reserved on the host's limiter in Redis (GCRA,
-- one round trip, on the client's engine thread). When Redis does not
-- answer within `timeout`, the clients keep their own rates for a few
-- seconds, then ask again.
-- @tparam table opts `redis`, `prefix` ("fetch"), `timeout` (2)
-- @return limits for fetch.Client's `limits` option; `failures()` counts
--  the reservations Redis did not answer
function M.limits(opts)
  checkopts(opts, LIMITS_OPTS, "limits")
  return core.cluster_limits {
    redis = optstr(opts, "redis", nil, "limits"),
    prefix = optstr(opts, "prefix", "fetch", "limits"),
    timeout = optnum(opts, "timeout", 2, "limits", 0),
  }
end

return M
