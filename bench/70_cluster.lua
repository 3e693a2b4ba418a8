-- concur.cluster against Celery (Redis broker and backend) and RQ, all on
-- the same redis-server (appendonly yes, Redis' default fsync every second)
-- in this run, with 2 worker nodes (one worker each); then the chaos run:
-- tasks through 4 nodes while a random one is killed every half second and
-- restarted, and Redis itself is killed once (appendfsync always). Each
-- chaos task sleeps 2 ms, then records its effect (a line in a file).
-- The peers run through bench/cluster_peers.py, as their users run them.
local concur = require "concur"
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/?.lua;" .. here .. "/../spec/?.lua;" .. package.path
local benchlib = require "benchlib"
local redis = require "helpers.redis"
local nodes = require "helpers.cluster"
local cluster = require "concur.cluster"
local now = concur.monotonic

local N = tonumber(os.getenv("BENCH_N")) or 20000
local RT = tonumber(os.getenv("BENCH_RT")) or 2000
local CHAOS_N = tonumber(os.getenv("BENCH_CHAOS_N")) or 10000
local PY = "/usr/bin/python3"   -- Debian's, with python3-celery and python3-rq

local function peers(args)
  local out = benchlib.sh(("env -u LD_PRELOAD %s %s/cluster_peers.py %s 2>/dev/null")
    :format(PY, here, args))
  local v = {}
  for k, x in out:gmatch("([%w_]+) ([%d%.e%-]+)") do v[k] = tonumber(x) end
  return v
end

-- CPU seconds a process has used (utime + stime).
local function cputime(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  local fields = {}
  for x in s:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

local function noop(x) return x end

-- concur: N tasks submitted then every result, RT round trips, a map.
local function speed(srv, kind, queue)
  local ns = {}
  for i = 1, 2 do ns[i] = nodes.node(srv.url, { queue = queue, workers = 1, kind = kind }) end
  local pool <close> = cluster.Pool { redis = srv.url, queue = queue, key = nodes.KEY }
  pool:map(noop, { 1, 2, 3, 4 })
  local r = {}
  local cpu0 = cputime(srv.pid)
  r.tasks = benchlib.best(2, function()
    local fs, t0 = {}, now()
    for i = 1, N do fs[i] = pool:submit(noop, i) end
    for i = 1, N do fs[i]:result() end
    return now() - t0
  end)
  r.redis_us = (cputime(srv.pid) - cpu0) / (2 * N) * 1e6   -- Redis CPU per task
  r.rt = benchlib.best(3, function()
    local t0 = now()
    for i = 1, RT do pool:submit(noop, i):result() end
    return (now() - t0) / RT
  end)
  local items = {}
  for i = 1, 10 * N do items[i] = i end
  r.map = benchlib.best(2, function()
    local t0 = now()
    assert(#pool:map(noop, items) == #items)
    return now() - t0
  end)
  pool:close()
  for _, n in ipairs(ns) do n:stop() end
  return r
end

-- The chaos run for concur (as cluster_peers.py's for the peers).
local function chaos()
  local srv = redis.start()          -- appendfsync always
  local effects = os.tmpname()
  local q = "chaos"
  local pool = cluster.Pool { redis = srv.url, queue = q, key = nodes.KEY, visibility = 1,
                              max_retries = 1000 }
  local ns = {}
  for i = 1, 4 do ns[i] = nodes.node(srv.url, { queue = q, workers = 1, kind = "process" }) end
  local t0 = now()
  local fs = {}
  for i = 1, CHAOS_N do
    fs[i] = pool:submit(function(x, path)
      require("concur").sleep(0.002)     -- (as the peers' tasks: so kills find work)
      local f = assert(io.open(path, "a"))
      f:write(x, "\n")
      f:close()
      return 2 * x
    end, i, effects)
  end
  local kills, redis_killed, pending = 0, false, fs
  while #pending > 0 do
    pending = select(2, concur.wait(pending, { timeout = 0.5 }))
    if #pending > 0 then
      local k = math.random(#ns)
      ns[k]:kill()
      kills = kills + 1
      if not redis_killed and #pending < CHAOS_N * 2 // 3 then
        srv:kill()
        srv:restart()
        redis_killed = true
      end
      ns[k] = nodes.node(srv.url, { queue = q, workers = 1, kind = "process" })
    end
  end
  local secs = now() - t0
  local done, failed = 0, 0
  for i = 1, CHAOS_N do
    local ok, v = pcall(fs[i].result, fs[i], 0)
    if ok and v == 2 * i then done = done + 1 else failed = failed + 1 end
  end
  local seen = {}
  for line in io.lines(effects) do
    local i = tonumber(line)
    seen[i] = (seen[i] or 0) + 1
  end
  local missing, twice = 0, 0
  for i = 1, CHAOS_N do
    if not seen[i] then missing = missing + 1 elseif seen[i] > 1 then twice = twice + 1 end
  end
  local dup = pool:stats().duplicates
  pool:close()
  for _, n in ipairs(ns) do n:stop() end
  srv:close()
  os.remove(effects)
  return { tasks = CHAOS_N, done = done, failed = failed, lost = 0, effects_missing = missing,
           ran_twice = twice, kills = kills, redis_killed = redis_killed and 1 or 0,
           seconds = secs, duplicates = dup }
end

-- speed -------------------------------------------------------------------------
local srv = redis.start { fsync = "everysec" }
local cp = speed(srv, "process", "speed-p")
local ct = speed(srv, "thread", "speed-t")
local py = peers(("speed celery %s 2000 200"):format(srv.url))
for k, v in pairs(peers(("speed rq %s 500 50"):format(srv.url))) do py[k] = v end
for k, v in pairs(peers(("speed rqsimple %s 1000 100"):format(srv.url))) do py[k] = v end
srv:close()

-- the round trip when every write is fsynced before Redis answers
local strict = redis.start()
local cs = (function()
  local n1 = nodes.node(strict.url, { queue = "s", workers = 1, kind = "process" })
  local pool <close> = cluster.Pool { redis = strict.url, queue = "s", key = nodes.KEY }
  pool:submit(noop, 1):result()
  local t0 = now()
  for i = 1, 500 do pool:submit(noop, i):result() end
  local rt = (now() - t0) / 500
  pool:close()
  n1:stop()
  return rt
end)()
strict:close()

local function rate(n, s) return s and n / s end
local function fmt(x) return x and ("%12.0f"):format(x) or "         n/a" end
local function us(x) return x and ("%12.0f"):format(x * 1e6) or "         n/a" end
local function ratio(a, b) return (a and b) and ("%9.1fx"):format(a / b) or "       n/a" end
print(("concur.cluster, 2 worker nodes of 1 worker, on one redis-server (appendonly, fsync"
  .. " every second); %d CPUs, load average %.2f: the machine is shared, so compare the"
  .. " ratios"):format(concur.cpu_count(), benchlib.loadavg() or 0))
print(("%-44s %12s %12s %12s %12s"):format("", "tasks/s", "round trip us", "vs Celery",
  "vs RQ"))
local celery, rqf = py.celery_tasks_s, py.rq_tasks_s
for _, row in ipairs {
  { "concur, process nodes: submit+result", rate(N, cp.tasks), cp.rt },
  { "concur, thread nodes: submit+result", rate(N, ct.tasks), ct.rt },
  { "Celery 5.2 (prefork, concurrency 1)", celery, py.celery_rt_us and py.celery_rt_us / 1e6 },
  { "RQ 1.13 (default forking worker)", rqf, py.rq_rt_us and py.rq_rt_us / 1e6 },
  { "RQ 1.13 (SimpleWorker, no fork)", py.rqsimple_tasks_s,
    py.rqsimple_rt_us and py.rqsimple_rt_us / 1e6 },
} do
  print(("%-44s %s %s %s %s"):format(row[1], fmt(row[2]), us(row[3]), ratio(row[2], celery),
    ratio(row[2], rqf)))
end
print(("concur map of %d items (chunks): %.0f items/s on process nodes, %.0f on thread nodes")
  :format(10 * N, 10 * N / cp.map, 10 * N / ct.map))
print(("concur round trip with appendfsync always (process nodes): %.0f us"):format(cs * 1e6))
print(("Redis CPU per task (submit, take, result, acknowledge): %.1f us on process nodes,"
  .. " %.1f us on thread nodes: one Redis core carries about %.0f tasks/s"):format(cp.redis_us,
  ct.redis_us, 1e6 / math.min(cp.redis_us, ct.redis_us)))

-- chaos -----------------------------------------------------------------------------
local ch = { concur = chaos() }
-- the peers take 2,000 tasks: at their pace under the same kills (each kill
-- restarts a Python worker) 10,000 would take many minutes
local PEER_N = tonumber(os.getenv("BENCH_CHAOS_PEER_N")) or 2000
for _, sys_ in ipairs { { "celery", PEER_N }, { "rq", PEER_N } } do
  local v = peers(("chaos %s %d"):format(sys_[1], sys_[2]))
  local t = {}
  for k, x in pairs(v) do t[k:gsub("^" .. sys_[1] .. "_chaos_", "")] = x end
  ch[sys_[1]] = t
end
print()
print("chaos: 4 worker nodes, one killed (SIGKILL) every 0.5 s and restarted, Redis killed once"
  .. " (appendfsync always); lost: never done; no effect: never ran")
print(("%-8s %7s %7s %7s %7s %9s %9s %7s %9s"):format("", "tasks", "done", "failed", "lost",
  "no effect", "ran twice", "kills", "seconds"))
for _, name in ipairs { "concur", "celery", "rq" } do
  local t = ch[name]
  if t.tasks then
    print(("%-8s %7d %7d %7d %7d %9d %9d %7d %9.1f"):format(name, t.tasks, t.done or 0,
      t.failed or 0, t.lost or 0, t.effects_missing or 0, t.ran_twice or 0, t.kills or 0,
      t.seconds or 0))
  else
    print(("%-8s (did not run: is %s installed?)"):format(name, name))
  end
end
print(("concur dropped %d duplicate results (tasks that ran twice resolve their future once)")
  :format(ch.concur.duplicates))
