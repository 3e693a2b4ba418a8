-- concur.cluster: the executor, shared state and crawl frontier on Redis.
-- Every spec here talks to a real redis-server on a free port of 127.0.0.1
-- (spec/helpers/redis.lua), with worker nodes as separate processes.
local concur = require "concur"
local core = require "concur.core"
local helpers = require "helpers"
local redis = require "helpers.redis"
local sync = require "helpers.sync"
local nodes = require "helpers.cluster"
local httpserver = require "helpers.httpserver"
local cluster = require "concur.cluster"

local KEY = nodes.KEY
local function fetch_client(opts) return require("concur.fetch").Client(opts) end
local nq = 0
local function newqueue()   -- each spec its own queue
  nq = nq + 1
  return "q" .. nq
end

-- The Redis key of a queue's part (csrc/core/clusterkeys.h).
local function qkey(queue, part)
  return ("concur:{%s}:%s"):format(queue, part)
end

describe("cluster", function()
  local srv

  setup(function()
    srv = redis.start()
  end)

  teardown(function()
    nodes.cleanup()
    if srv then srv:close() end
  end)

  describe("connection (core.redis)", function()
    it("runs commands, pipelines and scripts", function()
      local r <close> = core.redis(srv.url)
      assert.equal("OK", r:call("SET", "conn:a", "b"))
      assert.equal("b", r:call("GET", "conn:a"))
      assert.equal(false, r:call("GET", "conn:missing"))
      local rs = r:pipeline({ { "DEL", "conn:n" }, { "INCR", "conn:n" }, { "INCRBY", "conn:n", 41 },
                              { "RPUSH", "conn:l", "x", "y" }, { "LRANGE", "conn:l", 0, -1 },
                              { "NOSUCHCOMMAND" } })
      assert.same({ 1, 42, 2, { "x", "y" } }, { rs[2], rs[3], rs[4], rs[5] })
      assert.matches("unknown command", rs[6].err)
      local src = "return { KEYS[1], ARGV[1], redis.call('INCR', KEYS[1]) }"
      assert.same({ "conn:s", "hi", 1 }, r:eval(src, { "conn:s" }, { "hi" }))
      r:call("SCRIPT", "FLUSH")        -- the server forgets it: loaded again
      assert.same({ "conn:s", "hi", 2 }, r:eval(src, { "conn:s" }, { "hi" }))
    end)

    it("refuses what is not a redis:// URL with kind argument", function()
      for _, url in ipairs { "http://127.0.0.1:1/", "redis://", "redis://h:1/x",
                             "redis://h:1/0?x=1", "not a url" } do
        helpers.raises("argument", "Redis URL", core.redis, url)
      end
      helpers.raises("argument", "unknown option", core.redis, srv.url, { tmeout = 1 })
      local r <close> = core.redis(srv.url)
      helpers.raises("argument", "strings or numbers", r.call, r, "SET", "k", {})
    end)

    it("raises kind network when Redis stays unreachable past the timeout", function()
      local dead = redis.start()
      dead:close()                       -- nothing listens on its port now
      local r <close> = core.redis(dead.url, { timeout = 0.3 })
      local t0 = concur.monotonic()
      local err = helpers.raises("network", "not reachable", r.call, r, "PING")
      assert.matches("127.0.0.1:" .. dead.port, err.message)
      assert.is_true(concur.monotonic() - t0 >= 0.3)
    end)

    it("selects the database of the URL", function()
      local r0 <close> = core.redis(srv.url)
      local r3 <close> = core.redis((srv.url:gsub("/0$", "/3")))
      r3:call("SET", "conn:db", "three")
      assert.equal(false, r0:call("GET", "conn:db"))
      assert.equal("three", r3:call("GET", "conn:db"))
    end)

    it("authenticates with the user and password of the URL", function()
      local acl = redis.start { user = "alice", password = "s3cret" }
      local pw = redis.start { password = "only-a-password" }
      finally(function() acl:close(); pw:close() end)
      local a <close> = core.redis(acl.url)
      assert.equal("PONG", a:call("PING"))
      assert.equal("alice", a:call("ACL", "WHOAMI"))
      local p <close> = core.redis(pw.url)
      assert.equal("PONG", p:call("PING"))
      local bad <close> = core.redis((acl.url:gsub("s3cret", "wrong")), { timeout = 5 })
      local t0 = concur.monotonic()
      helpers.raises("network", "WRONGPASS", bad.call, bad, "PING")
      assert.is_true(concur.monotonic() - t0 < 5)   -- refused at once, not retried
      local none <close> = core.redis((pw.url:gsub(":only%-a%-password@", "")), { timeout = 5 })
      helpers.raises("network", "NOAUTH", none.call, none, "SET", "k", "v")
    end)

    it("reconnects after Redis restarts, and keeps what it acknowledged", function()
      local own = redis.start()
      finally(function() own:close() end)
      local r <close> = core.redis(own.url)
      assert.equal(1, r:call("RPUSH", "conn:kept", "x"))
      own:stop()
      local calling = concur.Event()
      local t = concur.spawn(function(url, ev)
        local c <close> = require("concur.core").redis(url, { timeout = 60 })
        ev:set()
        return c:call("RPUSH", "conn:kept", "y")   -- waits for the restart
      end, own.url, calling)
      calling:wait()
      own:restart()
      assert.same({ true, 2 }, { t:join(60) })
      assert.same({ "x", "y" }, r:call("LRANGE", "conn:kept", 0, -1))
      own:kill()                                   -- even SIGKILL loses nothing
      own:restart()
      assert.same({ "x", "y" }, r:call("LRANGE", "conn:kept", 0, -1))
    end)

    it("is interrupted when the task waiting on it is cancelled", function()
      local pool <close> = concur.ThreadPool(1)
      local f = pool:submit(function(url)
        local c <close> = require("concur.core").redis(url)
        return c:call("BLPOP", "conn:never", 0)
      end, srv.url)
      local r <close> = core.redis(srv.url)
      sync.wait_until(function()
        return r:call("CLIENT", "LIST"):find("cmd=blpop", 1, true) ~= nil
      end)
      assert.is_true(f:cancel())
      helpers.raises("cancelled", nil, f.result, f, 10)
      assert.equal(1, pool:submit(function() return 1 end):result(10))
    end)

    it("raises kind closed after close", function()
      local r = core.redis(srv.url)
      r:close()
      helpers.raises("closed", nil, r.call, r, "PING")
      r:close()                          -- again: nothing
    end)
  end)

  describe("signed frames (core.cluster_key)", function()
    local key = core.cluster_key(KEY)
    local function f(x) return x * 2, string.format("%d!", x) end

    it("seal and open values, functions included", function()
      local s = key:seal("q", "T", 42, 1.5, "client", f, { 1, { 2 }, k = "v" }, "x")
      local t, id, num, name, fn, tbl, x = key:open("q", s)
      assert.same({ "T", 42, 1.5, "client" }, { t, id, num, name })
      assert.same({ 10, "5!" }, { fn(5) })
      assert.same({ 1, { 2 }, k = "v" }, tbl)
      assert.equal("x", x)
    end)

    it("refuse a frame that does not verify: changed, moved, cut, or another key's", function()
      local s = key:seal("q", "T", 1, 0, "c", f)
      for i = 1, #s do   -- every byte, the tag's too
        local bad = s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1)
        assert.is_false(key:open("q", bad))
      end
      assert.is_false(key:open("other", s))
      assert.is_false(key:open("q", s:sub(1, -2)))
      assert.is_false(key:open("q", ""))
      assert.is_false(core.cluster_key(("z"):rep(32)):open("q", s))
    end)

    it("carry functions to another process tree (another bytecode key)", function()
      local r <close> = core.redis(srv.url)
      r:call("SET", "frame:f", key:seal("q", "T", 7, 0, "", f, 21))
      local ok, code, out = helpers.run_lua(([[
        local core = require "concur.core"
        local r = core.redis(%q)
        local key = core.cluster_key(%q)
        local _, id, _, _, fn, x = key:open("q", r:call("GET", "frame:f"))
        print(id, fn(x))
      ]]):format(srv.url, KEY))
      assert(ok, ("exit %s: %s"):format(code, out))
      assert.equal("7\t42\t21!\n", out)
    end)

    it("need a key of at least 16 bytes (kind argument)", function()
      helpers.raises("argument", "at least 16 bytes", core.cluster_key, "short")
      helpers.raises("argument", nil, core.cluster_key, nil)
    end)

    it("refuse objects that live in one machine (kind transfer)", function()
      helpers.raises("transfer", "cannot cross to another machine",
        key.seal, key, "q", "Q", 1, 0, "", { concur.Queue() })
      helpers.raises("transfer", "coroutine", key.seal, key, "q", "Q", 1, 0, "",
        coroutine.create(print))
    end)
  end)
  describe("Pool and worker nodes", function()
    local q, node, pool

    setup(function()
      q = newqueue()
      node = nodes.node(srv.url, { queue = q, workers = 2 })
      pool = cluster.Pool { redis = srv.url, queue = q, key = KEY }
    end)

    teardown(function()
      if pool then pool:close() end
      if node then node:stop() end
    end)

    it("runs a task on a node and brings its results back", function()
      local f = pool:submit(function(a, b) return a + b, nil, { a, b }, concur.thread_name() end, 2, 3)
      local sum, none, t, where = f:result(30)
      assert.same({ 5, nil, { 2, 3 } }, { sum, none, t })
      assert.matches("^node", where)          -- a thread of the node's pool
      assert.is_true(f:done())
      local g = pool:submit { function(x) return function() return x * 2 end end, args = { 21 } }
      assert.equal(42, g:result(30)())
    end)

    it("fails a future with the task's error and the node's traceback", function()
      local err = helpers.raises("task", "boom", function()
        return pool:submit(function() error("boom") end):result(30)
      end)
      assert.matches("boom", err.value)
      assert.matches("traceback", err.traceback)
      -- as a task of the local executors fails, whatever it raises
      local local_pool <close> = concur.ThreadPool(1)
      local function raise_limit() error(require("concur").Error.new("limit", "too big")) end
      local mine = local_pool:submit(raise_limit):error(30)
      local theirs = pool:submit(raise_limit):error(30)
      assert.same({ mine.kind, mine.message }, { theirs.kind, theirs.message })
    end)

    it("has the executors' map, imap and imap_unordered (the shared Lua)", function()
      for name, fn in pairs(concur._executor) do assert.equal(fn, pool[name]) end
      local items = {}
      for i = 1, 100 do items[i] = i end
      local out = pool:map(function(x) return x * x end, items, { chunksize = 7 })
      for i = 1, 100 do assert.equal(i * i, out[i]) end
      local seen = {}
      for i, v in pool:imap(function(x) return -x end, { 1, 2, 3 }) do seen[#seen + 1] = { i, v } end
      assert.same({ { 1, -1 }, { 2, -2 }, { 3, -3 } }, seen)
      local sum = 0
      for _, v in pool:imap_unordered(function(x) return x end, items) do sum = sum + v end
      assert.equal(5050, sum)
      assert.same({ 2, 12 }, pool:starmap(function(a, b) return a * b end, { { 1, 2 }, { 3, 4 } }))
      assert.same({ 11, 22 }, pool:map(function(a, b) return a + b end, { 1, 2 }, { 10, 20 }))
    end)

    -- (#notsan: ThreadSanitizer delivers no signal to a pure-Lua loop)
    it("stops a task that overruns its timeout, on the node #notsan", function()
      local f = pool:submit { function() while true do end end, timeout = 0.2 }
      helpers.raises("timeout", nil, f.result, f, 30)
      assert.equal("ok", pool:submit(function() return "ok" end):result(30))
    end)

    it("refuses objects that live in one machine, and bad arguments", function()
      helpers.raises("transfer", "cannot cross to another machine",
        pool.submit, pool, function(l) return l end, concur.Lock())
      helpers.raises("argument", nil, pool.submit, pool, 42)
      helpers.raises("transfer", "belongs to the state", concur.Queue().put, concur.Queue(), pool)
    end)

    it("reports the queue in stats()", function()
      pool:map(function(x) return x end, { 1, 2, 3 })
      local st = pool:stats()
      assert.equal(1, st.nodes)
      assert.equal(2, st.workers)
      assert.equal(0, st.pending)
      assert.is_true(st.completed >= 3)
      assert.equal(2, pool:workers())
    end)
  end)

  describe("Pool", function()
    it("needs a key (kind argument), checks its options and its URL", function()
      local old = os.getenv("CONCUR_CLUSTER_KEY")
      assert.is_nil(old)
      helpers.raises("argument", "shared key", cluster.Pool, { redis = srv.url })
      helpers.raises("argument", "shared key", cluster.serve, { redis = srv.url })
      helpers.raises("argument", "at least 16 bytes", cluster.Pool, { redis = srv.url, key = "short" })
      helpers.raises("argument", "unknown option 'visibilty'", cluster.Pool,
        { redis = srv.url, key = KEY, visibilty = 3 })
      helpers.raises("argument", "'redis'", cluster.Pool, { key = KEY })
      helpers.raises("argument", "Redis URL", cluster.Pool, { redis = "http://x/", key = KEY })
      helpers.raises("argument", "max_retries", cluster.Pool,
        { redis = srv.url, key = KEY, max_retries = 1.5 })
      helpers.raises("argument", "'kind'", cluster.serve, { redis = srv.url, key = KEY, kind = "x" })
    end)

    it("takes the key from CONCUR_CLUSTER_KEY", function()
      local script = os.tmpname()
      finally(function() os.remove(script) end)
      local fh = assert(io.open(script, "w"))
      fh:write(([[
        local p = require("concur.cluster").Pool { redis = %q, queue = "envkey" }
        p:close()
        print("made")
      ]]):format(srv.url))
      fh:close()
      local function run(env)
        local p = assert(io.popen(("%s LUA_PATH=%q LUA_CPATH=%q %s %s 2>&1"):format(env,
          package.path, package.cpath, os.getenv("CONCUR_LUA") or "lua5.4", script)))
        local out = p:read("a")
        p:close()
        return out
      end
      assert.matches("shared key", run("env -u CONCUR_CLUSTER_KEY"), 1, true)
      assert.equal("made\n", run("CONCUR_CLUSTER_KEY=" .. KEY))
    end)

    it("raises kind network when Redis stays unreachable", function()
      local dead = redis.start()
      dead:close()
      helpers.raises("network", "127.0.0.1:" .. dead.port, cluster.Pool,
        { redis = dead.url, key = KEY, timeout = 0.2 })
    end)

    it("fails pending futures with kind network when Redis stays away past the timeout", function()
      local own = redis.start()
      finally(function() own:close() end)
      local q = newqueue()
      local p <close> = cluster.Pool { redis = own.url, queue = q, key = KEY, timeout = 0.5 }
      local r <close> = core.redis(own.url)
      local f = p:submit(function() return 1 end)    -- no node: it waits in the stream
      sync.wait_until(function() return r:call("XLEN", qkey(q, "tasks")) == 1 end)
      own:stop()
      helpers.raises("network", "not reachable", f.result, f, 30)   -- waiting for its result
      local g = p:submit(function() return 2 end)
      helpers.raises("network", "cannot send", g.result, g, 30)     -- never sent
    end)

    it("submits many tasks per round trip", function()
      local q = newqueue()
      local p <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY }
      local r <close> = core.redis(srv.url)
      local function reads()   -- the read events Redis served, all clients
        return tonumber(r:call("INFO", "stats"):match("total_reads_processed:(%d+)"))
      end
      local before, polls = reads(), 0
      -- Redis holds writes until every task is submitted: however slow the
      -- submitting thread (a sanitizer build), the sender finds them all queued.
      r:call("CLIENT", "PAUSE", "60000", "WRITE")
      for i = 1, 2000 do p:submit(function(x) return x end, i) end
      r:call("CLIENT", "UNPAUSE")
      sync.wait_until(function()
        polls = polls + 1
        return r:call("XLEN", qkey(q, "tasks")) == 2000
      end)
      local n = reads() - before - polls - 1
      p:shutdown { wait = false, cancel_pending = true }   -- before any assertion: no node
      -- 2,000 XADDs (no node takes them) came in a few reads, not 2,000
      assert.is_true(n < 200, "reads " .. n)
    end)

    it("close waits for the pending futures; shutdown can cancel them", function()
      local q = newqueue()
      local p = cluster.Pool { redis = srv.url, queue = q, key = KEY }
      local fs = {}
      for i = 1, 5 do fs[i] = p:submit(function(x) return x end, i) end
      p:shutdown { wait = false, cancel_pending = true }   -- no node: all pending
      for i = 1, 5 do helpers.raises("cancelled", nil, fs[i].result, fs[i], 5) end
      helpers.raises("closed", nil, p.submit, p, print)
      p:close()
      assert.equal(5, p:stats().cancelled)
      -- the cancelled tasks left the stream: a node that comes finds nothing
      local r <close> = core.redis(srv.url)
      assert.equal(0, r:call("XLEN", qkey(q, "tasks")))
    end)
  end)
  describe("across machines", function()
    local lua = os.getenv("CONCUR_LUA") or "lua5.4"

    -- Waits (in Redis) until a task pushed something on 'list'.
    local function await(r, list)
      local got = r:pipeline({ { "BLPOP", list, 60 } }, 70)[1]
      assert(got, "nothing came on " .. list)
      return got[2]
    end

    it("cancel() interrupts a task running on a node, thread or process #notsan", function()
      for _, kind in ipairs { "thread", "process" } do
        local q = newqueue()
        local node = nodes.node(srv.url, { queue = q, workers = 1, kind = kind })
        local pool <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY }
        local r <close> = core.redis(srv.url)
        local f = pool:submit(function(url, list)
          require("concur.core").redis(url):call("RPUSH", list, "running")
          while true do end
        end, srv.url, "started:" .. q)
        await(r, "started:" .. q)
        assert.is_true(f:cancel())
        helpers.raises("cancelled", nil, f.result, f, 0)
        -- the node's one worker is free again (a spinning one never would be)
        assert.equal("free", pool:submit(function() return "free" end):result(30))
        assert.equal(1, node:stop().cancelled)
      end
    end)

    it("refuses a forged, tampered or moved frame pushed into the stream; never runs it", function()
      local q = newqueue()
      local node = nodes.node(srv.url, { queue = q, workers = 1 })
      local pool <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY }
      local r <close> = core.redis(srv.url)
      local tasks = qkey(q, "tasks")
      local path = os.tmpname()
      os.remove(path)
      local function evil(file)   -- what the intruder wants run: it leaves a file
        local fh = assert(io.open(file, "w"))
        fh:write("ran")
        fh:close()
        return "ran"
      end
      local mine, other = core.cluster_key(KEY), core.cluster_key(("x"):rep(32))
      local good = mine:seal(tasks, "T", 2, -1, "intruder", evil, path .. "2")
      local at = #good // 2
      finally(function() for k = 1, 3 do os.remove(path .. k) end end)
      r:call("XADD", tasks, "*", "t", other:seal(tasks, "T", 1, -1, "intruder", evil, path .. "1"))
      r:call("XADD", tasks, "*", "t", good:sub(1, at - 1) .. string.char(good:byte(at) ~ 0x20)
                                     .. good:sub(at + 1))
      r:call("XADD", tasks, "*", "t", mine:seal(qkey("elsewhere", "tasks"), "T", 3, -1,
                                                 "intruder", evil, path .. "3"))
      r:call("XADD", tasks, "*", "x", "not a frame at all")
      -- a real task after them: the node dealt with those before it ran this
      assert.equal(7, pool:submit(function() return 7 end):result(30))
      assert.equal(4, pool:stats().forged)
      for k = 1, 3 do assert.is_nil(io.open(path .. k), "a forged task ran") end
      sync.wait_until(function() return r:call("XLEN", tasks) == 0 end)   -- acknowledged, deleted
      assert.equal(0, r:call("XPENDING", tasks, "workers")[1])
      assert.equal(4, node:stop().forged)
    end)

    it("runs again elsewhere the task of a node that vanished; its future resolves once", function()
      local q = newqueue()
      local pool <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY, visibility = 1 }
      local r <close> = core.redis(srv.url)
      local a = nodes.node(srv.url, { queue = q, workers = 1 })
      local f = pool:submit(function(url, list)
        local c = require("concur.core").redis(url, { timeout = 120 })
        local me = io.open("/proc/self/stat"):read("n")
        c:call("RPUSH", list, me)
        c:call("BLPOP", list .. ":go", 0)
        return me
      end, srv.url, "runs:" .. q)
      assert.equal(a.pid, tonumber(await(r, "runs:" .. q)))
      a:kill()                        -- SIGKILL: gone mid-task, as a machine
      local b = nodes.node(srv.url, { queue = q, workers = 1 })
      assert.equal(b.pid, tonumber(await(r, "runs:" .. q)))   -- after the visibility
      r:call("RPUSH", "runs:" .. q .. ":go", "go")
      assert.equal(b.pid, f:result(30))
      local st = pool:stats()
      assert.same({ 1, 0, 0 }, { st.completed, st.failed, st.duplicates })
      assert.equal(1, b:stop().reclaimed)
    end)

    it("fails with kind broken a task whose nodes died max_retries times", function()
      local q = newqueue()
      local pool <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY,
                                         visibility = 1, max_retries = 2 }
      local ns, bypid = {}, {}
      for i = 1, 3 do
        ns[i] = nodes.node(srv.url, { queue = q, workers = 1 })
        bypid[ns[i].pid] = ns[i]
      end
      local f = pool:submit(function(url, list)
        local me = io.open("/proc/self/stat"):read("n")
        require("concur.core").redis(url):call("RPUSH", list, me)
        os.execute("kill -9 " .. me)    -- the machine dies while it runs the task
        require("concur").sleep(60)
      end, srv.url, "deaths:" .. q)
      helpers.raises("broken", "died 2 times", f.result, f, 60)
      local r <close> = core.redis(srv.url)
      local pids = r:call("LRANGE", "deaths:" .. q, 0, -1)
      assert.equal(2, #pids)             -- it ran twice, and was not run a third time
      for _, pid in ipairs(pids) do
        local n = bypid[tonumber(pid)]
        assert.is_false((n.process:join(30)))
        assert.equal(-9, n.process.exitcode)
        bypid[tonumber(pid)] = nil
      end
      local last = select(2, next(bypid))
      assert.equal(1, last:stop().broken)   -- the third node failed it
    end)

    it("on SIGTERM a node finishes its running task, then leaves the queue", function()
      local q = newqueue()
      local node = nodes.node(srv.url, { queue = q, workers = 1, kind = "process" })
      local pool <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY }
      local r <close> = core.redis(srv.url)
      local f = pool:submit(function(url, list)
        local c = require("concur.core").redis(url, { timeout = 120 })
        c:call("RPUSH", list, "running")
        c:call("BLPOP", list .. ":go", 0)
        return "finished"
      end, srv.url, "term:" .. q)
      await(r, "term:" .. q)
      node.process:kill(15)
      r:call("RPUSH", "term:" .. q .. ":go", "go")
      assert.equal("finished", f:result(30))
      local ok, st = node.process:join(30)
      assert.is_true(ok)
      assert.equal(1, st.completed)
      assert.same({}, r:call("XINFO", "CONSUMERS", qkey(q, "tasks"), "workers"))
      assert.equal(0, r:call("HLEN", qkey(q, "nodes")))
    end)

    it("survives dropped connections: every future resolves, once", function()
      local q = newqueue()
      local node = nodes.node(srv.url, { queue = q, workers = 2 })
      local pool <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY, visibility = 2 }
      local r <close> = core.redis(srv.url)
      local fs = {}
      for i = 1, 500 do
        fs[i] = pool:submit(function(x) require("concur").sleep(0.001) return x end, i)
        if i % 100 == 0 then     -- every client's connection, the node's too
          r:call("CLIENT", "KILL", "TYPE", "normal")
          r:call("CLIENT", "KILL", "TYPE", "pubsub")
        end
      end
      for i = 1, 500 do assert.equal(i, fs[i]:result(60)) end
      assert.equal(500, pool:stats().completed)
      node:stop()
    end)

    it("the concur-worker command serves a queue until SIGTERM", function()
      local q = newqueue()
      local p = assert(io.popen(("CONCUR_CLUSTER_KEY=%s LUA_PATH=%q LUA_CPATH=%q exec %s "
        .. "bin/concur-worker --redis %s --queue %s --workers 1 --kind thread 2>&1")
        :format(KEY, package.path, package.cpath, lua, srv.url, q)))
      local line = p:read("l") or ""
      local pid = line:match("%(pid (%d+)%)")
      assert(pid, "concur-worker did not start: " .. line)
      assert.matches("serving queue " .. q .. " with 1 thread workers", line, 1, true)
      local pool <close> = cluster.Pool { redis = srv.url, queue = q, key = KEY }
      assert.equal(6, pool:submit(function(x) return x * 2 end, 3):result(30))
      os.execute("kill -TERM " .. pid)
      local rest = p:read("a")
      assert.is_true((p:close()))
      assert.matches("stopped: 1 taken, 1 completed", rest, 1, true)
    end)

    it("the concur-worker command refuses to start without a key or a URL", function()
      for _, case in ipairs {
        { "env -u CONCUR_CLUSTER_KEY", "--redis " .. srv.url, "shared key" },
        { "CONCUR_CLUSTER_KEY=" .. KEY, "", "--redis URL is required" },
        { "CONCUR_CLUSTER_KEY=" .. KEY, "--redis " .. srv.url .. " --wrkers 2", "unknown argument" },
      } do
        local p = assert(io.popen(("%s LUA_PATH=%q LUA_CPATH=%q %s bin/concur-worker %s 2>&1")
          :format(case[1], package.path, package.cpath, lua, case[2])))
        local out = p:read("a")
        local _, _, code = p:close()
        assert.equal(2, code)
        assert.matches(case[3], out, 1, true)
      end
    end)
  end)
  describe("RateLimiter", function()
    it("holds the rate for two processes together: 20/s within 2%", function()
      local name = newqueue()
      -- each process has six callers: the twelve hold slots reserved 0.6 s
      -- ahead, so a slow round trip or a stalled thread (a sanitizer, a
      -- loaded machine) loses none
      local function run(url, n, rlname)
        local c = require "concur"
        local ts = {}
        for k = 1, 6 do
          ts[k] = c.spawn(function(u, m, nm)
            local rl = require("concur.cluster").RateLimiter { redis = u, name = nm, rate = 20 }
            local times = {}
            for i = 1, m do
              rl:acquire()
              times[i] = require("concur").monotonic()
            end
            return times
          end, url, n, rlname)
        end
        local all = {}
        for _, t in ipairs(ts) do
          local _, times = t:join()
          for _, x in ipairs(times) do all[#all + 1] = x end
        end
        return all
      end
      local N = 10      -- 2 x 6 x 10 = 120 acquisitions: 6 s at 20/s
      local a = concur.Process(run, srv.url, N, name)
      local b = concur.Process(run, srv.url, N, name)
      local all = {}
      for _, p in ipairs { a, b } do
        local ok, times = p:join(60)
        assert(ok, tostring(times))
        for _, t in ipairs(times) do all[#all + 1] = t end
      end
      assert.equal(120, #all)
      table.sort(all)
      -- the rate is the slope of the count over time (least squares: one
      -- late wake-up, at either end, moves it little)
      local n, st, si, stt, sti = #all, 0, 0, 0, 0
      for i, t in ipairs(all) do
        t = t - all[1]
        st, si, stt, sti = st + t, si + i, stt + t * t, sti + t * i
      end
      local rate = (n * sti - st * si) / (n * stt - st * st)
      assert(math.abs(rate - 20) / 20 <= 0.02, ("achieved %.3f per second"):format(rate))
    end)

    it("try_acquire takes a free slot only; acquire(timeout) gives up at once", function()
      local rl = cluster.RateLimiter { redis = srv.url, name = newqueue(), rate = 1, per = 10,
                                       burst = 2 }
      assert.is_true(rl:try_acquire())
      assert.is_true(rl:try_acquire())     -- the burst
      assert.is_false(rl:try_acquire())
      local t0 = concur.monotonic()
      assert.is_false(rl:acquire(1))       -- its slot is 10 s away: false now
      assert.is_true(concur.monotonic() - t0 < 1)
      assert.is_false(rl:acquire(-1))      -- negative: don't wait
      assert.is_true(rl:delay() > 9)
      assert.same({ 1, 10, 2 }, { rl:rate() })
    end)

    it("gives back the slot of an acquire that was cancelled while it waited", function()
      local name = newqueue()
      local rl = cluster.RateLimiter { redis = srv.url, name = name, rate = 1, per = 5 }
      assert.is_true(rl:acquire())
      local pool <close> = concur.ThreadPool(1)
      local f = pool:submit(function(url, n)
        return require("concur.cluster").RateLimiter { redis = url, name = n, rate = 1, per = 5 }
          :acquire()
      end, srv.url, name)
      sync.wait_until(function() return rl:delay() > 6 end)   -- it holds the next slot
      f:cancel()
      helpers.raises("cancelled", nil, f.result, f, 10)
      assert.is_true(rl:delay() <= 5)      -- and gave it back
    end)

    it("checks its options (kind argument)", function()
      helpers.raises("argument", "'rate'", cluster.RateLimiter, { redis = srv.url, name = "x" })
      helpers.raises("argument", "'name'", cluster.RateLimiter, { redis = srv.url, rate = 1 })
      helpers.raises("argument", "'burst'", cluster.RateLimiter,
        { redis = srv.url, name = "x", rate = 1, burst = 0 })
      helpers.raises("argument", "unknown option", cluster.RateLimiter,
        { redis = srv.url, name = "x", rate = 1, rps = 1 })
    end)
  end)

  describe("Queue", function()
    local function newq(opts)
      opts = opts or {}
      opts.redis, opts.name, opts.key = srv.url, opts.name or newqueue(), KEY
      return cluster.Queue(opts), opts.name
    end

    it("puts and gets any values in order; size, try_get, a timeout", function()
      local q <close> = newq()
      q:put(1)
      q:put { a = { 2 } }
      q:put(function(x) return x * 3 end)
      assert.equal(3, q:size())
      assert.equal(1, q:get())
      assert.same({ a = { 2 } }, q:get(1))
      assert.equal(9, q:get()(3))
      assert.equal(0, q:size())
      assert.is_false(q:try_get())
      helpers.raises("timeout", nil, q.get, q, 0.1)
      helpers.raises("timeout", nil, q.get, q, -1)
    end)

    it("is shared by processes and machines alike", function()
      local q <close>, name = newq()
      local p = concur.Process(function(url, n, key)
        local q2 = require("concur.cluster").Queue { redis = url, name = n, key = key }
        for i = 1, 100 do q2:put(i) end
      end, srv.url, name, KEY)
      local sum = 0
      for _ = 1, 100 do sum = sum + q:get(30) end
      assert.equal(5050, sum)
      assert.is_true(p:join(30))
    end)

    it("close: puts are refused, getters drain it, then get raises kind closed", function()
      local q <close>, name = newq()
      local waiting = concur.spawn(function(url, n, key)
        local q2 = require("concur.cluster").Queue { redis = url, name = n, key = key }
        local got = {}
        for v in q2:items() do got[#got + 1] = v end
        return got
      end, srv.url, name, KEY)
      q:put("a")
      q:put("b")
      q:close()
      assert.is_true(q:closed())
      helpers.raises("closed", nil, q.put, q, "c")
      local ok, got = waiting:join(30)      -- took what was there, then ended
      assert.is_true(ok)
      assert.same({ "a", "b" }, got)
      helpers.raises("closed", nil, q.get, q)
      helpers.raises("closed", nil, q.try_get, q)
      -- a getter blocked when the queue closes wakes up
      local q3 <close>, name3 = newq()
      local blocked = concur.spawn(function(url, n, key)
        local q4 = require("concur.cluster").Queue { redis = url, name = n, key = key }
        local okk, err = pcall(q4.get, q4, 60)
        return okk, err.kind
      end, srv.url, name3, KEY)
      local r <close> = core.redis(srv.url)
      sync.wait_until(function()
        return r:call("CLIENT", "LIST"):find("cmd=xreadgroup", 1, true) ~= nil
      end)
      q3:close()
      assert.same({ true, false, "closed" }, { blocked:join(30) })
    end)

    it("gives another getter the item of a getter that died holding it", function()
      local q <close>, name = newq { visibility = 0.3 }
      q:put("kept")
      local r <close> = core.redis(srv.url)   -- a getter takes it, and dies
      local taken = r:call("XREADGROUP", "GROUP", "getters", "dead", "COUNT", 1, "STREAMS",
                           qkey(name, "items"), ">")
      assert.equal(1, #taken[1][2])
      assert.is_false(q:try_get())          -- it is that getter's, for now
      assert.equal("kept", q:get(30))       -- after the visibility, it is ours
    end)

    it("drops an item that does not verify, and counts it", function()
      local q <close>, name = newq()
      local stream = qkey(name, "items")
      local r <close> = core.redis(srv.url)
      r:call("XADD", stream, "*", "v", core.cluster_key(("y"):rep(32)):seal(stream, "Q", 0, 0, "", "forged"))
      r:call("XADD", stream, "*", "v", "not a frame")
      q:put("real")
      assert.equal("real", q:get(10))
      assert.equal(2, q:forged())
      assert.equal(0, q:size())
    end)
  end)

  describe("Map", function()
    local function newmap()
      local name = newqueue()
      return cluster.Map { redis = srv.url, name = name, key = KEY }, name
    end

    it("has the API of concur.Map", function()
      local m <close> = newmap()
      m:set("s", "str")
      m:set(7, { 1, 2 })
      m:set(true, function() return "fn" end)
      assert.same({ "str", { 1, 2 }, "fn" }, { m:get("s"), m:get(7), m:get(true)() })
      assert.is_nil(m:get("missing"))
      assert.is_true(m:has(7))
      assert.is_false(m:has(8))
      assert.equal(3, m:len())
      local keys = m:keys()
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      assert.same({ 7, "s", true }, keys)
      local seen = {}
      for k, v in m:pairs() do seen[k] = type(v) end
      assert.same({ s = "string", [7] = "table", [true] = "function" }, seen)
      local again = {}
      for k, v in pairs(m) do again[k] = type(v) end     -- as concur.Map: pairs(m), #m
      assert.same(seen, again)
      assert.equal(3, #m)
      assert.equal("str", m:setdefault("s", "other"))
      assert.equal("new", m:setdefault("n", "new"))
      assert.is_true(m:delete("n"))
      assert.is_false(m:delete("n"))
      m:set("s", nil)
      assert.is_false(m:has("s"))
      m:clear()
      assert.equal(0, m:len())
      helpers.raises("argument", "key must be", m.get, m, 1.5)
      helpers.raises("argument", "key must be", m.set, m, {}, 1)
    end)

    it("incr and update are atomic across processes", function()
      local m <close>, name = newmap()
      local function bump(url, n, key)
        local m2 = require("concur.cluster").Map { redis = url, name = n, key = key }
        for _ = 1, 100 do m2:incr("n") end
        for _ = 1, 50 do m2:update("list", function(l) l = l or {} l[#l + 1] = 1 return l end) end
      end
      local ps = { concur.Process(bump, srv.url, name, KEY), concur.Process(bump, srv.url, name, KEY) }
      bump(srv.url, name, KEY)
      for _, p in ipairs(ps) do assert.is_true(p:join(60)) end
      assert.equal(300, m:get("n"))
      assert.equal(150, #m:get("list"))
      assert.equal(305, m:incr("n", 5))
      helpers.raises("argument", "not a number", m.incr, m, "list")
    end)

    it("reads a forged or moved value as missing, and counts it", function()
      local m <close>, name = newmap()
      m:set("a", 1)
      m:set("b", 2)
      local r <close> = core.redis(srv.url)
      local hash = qkey(name, "map")
      r:call("HSET", hash, "sb", r:call("HGET", hash, "sa"))   -- a's value under b
      r:call("HSET", hash, "sc", core.cluster_key(("z"):rep(32)):seal(hash .. "\0sc", "M", 0, 0, "", 3))
      assert.equal(1, m:get("a"))
      assert.is_nil(m:get("b"))
      assert.is_nil(m:get("c"))
      assert.equal(2, m:forged())
    end)
  end)

  describe("fetch across machines", function()
    local web

    setup(function() web = httpserver.start() end)
    teardown(function() if web then web:stop() end end)

    it("limits: clients in two processes keep one per-host rate together", function()
      web:reset()
      local prefix = newqueue()
      local function run(url, base, who, pfx, ev)
        local fetch = require "concur.fetch"
        local limits = require("concur.cluster").limits { redis = url, prefix = pfx }
        local c <close> = fetch.Client { rate = 20, per_host = 4, limits = limits }
        local urls = {}
        for i = 1, 40 do urls[i] = base .. "/bytes/10?who=" .. who .. "&i=" .. i end
        ev:wait()
        for _, r in ipairs(c:get_all(urls)) do assert(r.status == 200, tostring(r.message)) end
        return limits:failures()
      end
      local go = concur.Event()
      local a = concur.Process(run, srv.url, web.base, "a", prefix, go)
      local b = concur.Process(run, srv.url, web.base, "b", prefix, go)
      go:set()
      assert.same({ true, 0 }, { a:join(60) })
      assert.same({ true, 0 }, { b:join(60) })
      local ts = httpserver.times(web:log("^/bytes"))
      assert.equal(80, #ts)
      -- together at the one rate: each alone would take 20/s, 40/s the two
      -- (the slope of the server's arrival times: a stall of the test server
      -- bunches a few arrivals, so no window is checked here, and the rate
      -- gets 10%)
      local rate = httpserver.rate(ts)
      assert(rate <= 20 * 1.1, "rate " .. rate)
      helpers.raises("argument", "limits", fetch_client, { limits = {} })
      helpers.raises("argument", "needs a rate", fetch_client,
        { limits = cluster.limits { redis = srv.url } })
    end)

    it("frontier: two crawlers in two processes fetch each page once", function()
      web:reset()
      local name = newqueue()
      local function crawl(url, start, fname, key, ev)
        local fetch = require "concur.fetch"
        local frontier = require("concur.cluster").frontier { redis = url, name = fname, key = key }
        ev:wait()
        return fetch.Crawler { start = { start }, frontier = frontier }:run().pages
      end
      local go = concur.Event()
      local start = web:url("/gen/100/20/0")      -- 100 pages, 20 ms each
      local a = concur.Process(crawl, srv.url, start, name, KEY, go)
      local b = concur.Process(crawl, srv.url, start, name, KEY, go)
      go:set()
      local oka, pa = a:join(120)
      local okb, pb = b:join(120)
      assert(oka and okb, tostring(pa) .. " " .. tostring(pb))
      local count = {}
      for _, r in ipairs(web:log("^/gen/")) do count[r.path] = (count[r.path] or 0) + 1 end
      local pages = 0
      for path, n in pairs(count) do
        pages = pages + 1
        assert(n == 1, path .. " fetched " .. n .. " times")
      end
      assert.equal(100, pages)
      assert.equal(100, pa + pb)
      assert.is_true(pa > 0 and pb > 0)        -- one crawl, shared
    end)

    it("frontier: push, pop, done, seen; a dead crawler's entries come back", function()
      local name = newqueue()
      local fr <close> = cluster.frontier { redis = srv.url, name = name, key = KEY,
                                            visibility = 0.3 }
      local base = web.base
      assert.same({ 3, 1 }, { fr:push { { url = base .. "/a", depth = 1, hops = 0 },
        { url = base .. "/b", depth = 0, hops = 0 }, { url = base .. "/c", depth = 2, hops = 1 },
        { url = base .. "/a", depth = 0, hops = 0 } } })
      assert.is_true(fr:seen(base .. "/a"))
      assert.is_false(fr:seen(base .. "/z"))
      assert.equal(3, fr:size())
      local got = fr:pop(2)
      assert.same({ base .. "/b", base .. "/a" }, { got[1].url, got[2].url })   -- least deep
      assert.same({ 0, 0, base }, { got[1].depth, got[1].hops, got[1].host })
      fr:done(got[1].url)
      local st = fr:stats()
      assert.same({ 1, 1, 3 }, { st.queued, st.inflight, st.seen })
      -- /a was taken and never done: its crawler is gone; it comes back
      local other <close> = cluster.frontier { redis = srv.url, name = name, key = KEY,
                                               visibility = 0.3 }
      local back = {}
      sync.wait_until(function()
        for _, e in ipairs(other:pop(5, {}, 5)) do
          back[#back + 1] = e.url
          other:done(e.url)
        end
        return #back == 2
      end)
      table.sort(back)
      assert.same({ base .. "/a", base .. "/c" }, back)
      -- per host: at most per_host less what is in flight there
      fr:push { { url = base .. "/d" }, { url = base .. "/e" } }
      assert.equal(1, #fr:pop(5, { [base] = 1 }, 2))
    end)

    it("frontier: an entry that does not verify is dropped and counted", function()
      local name = newqueue()
      local fr <close> = cluster.frontier { redis = srv.url, name = name, key = KEY }
      local r <close> = core.redis(srv.url)
      local queue = qkey(name, "frontier")
      local bad = web.base .. "/evil"
      r:call("ZADD", queue, 0, web.base .. "\0" .. bad .. "\0" ..
        core.cluster_key(("w"):rep(32)):seal(queue, "U", 0, 0, "", { url = bad, depth = 0, hops = 0 }))
      fr:push { { url = web.base .. "/good" } }
      local got = fr:pop(5)
      assert.equal(1, #got)
      assert.equal(web.base .. "/good", got[1].url)
      assert.equal(1, fr:stats().forged)
    end)
  end)

  describe("chaos", function()
    it("10,000 tasks through 4 nodes, one killed every half second, Redis killed once", function()
      -- (Redis is killed a third of the way through the submissions and a
      -- node half way, whatever the speed: then a node every half second
      -- while tasks are pending)
      local own = redis.start()          -- its own server: it is killed mid-run
      local dir = os.tmpname()
      finally(function()
        own:close()
        os.remove(dir)
      end)
      local N = helpers.size(10000, 1000)
      local q = newqueue()
      local pool <close> = cluster.Pool { redis = own.url, queue = q, key = KEY,
                                         visibility = 1, max_retries = 1000 }
      local ns = {}
      for i = 1, 4 do ns[i] = nodes.node(own.url, { queue = q, workers = 2 }) end
      local fs, resolved = {}, 0
      for i = 1, N do
        fs[i] = pool:submit(function(x, file)   -- its effect: a line in a file
          require("concur").sleep(0.002)        -- (so the kills find work)
          local fh = assert(io.open(file, "a"))
          fh:write(x, "\n")
          fh:close()
          return x * 2
        end, i, dir)
        fs[i]:on_done(function() resolved = resolved + 1 end)
        if i == N // 3 then              -- Redis itself dies (SIGKILL), mid-run
          own:kill()
          own:restart()
        elseif i == N // 2 then          -- and a node
          ns[1]:kill()
          ns[1] = nodes.node(own.url, { queue = q, workers = 2 })
        end
      end
      local pending = fs
      while #pending > 0 do
        pending = select(2, concur.wait(pending, { timeout = 0.5 }))
        if #pending > 0 then             -- every half second, a machine vanishes
          local k = math.random(#ns)
          ns[k]:kill()
          ns[k] = nodes.node(own.url, { queue = q, workers = 2 })
        end
      end
      for i = 1, N do assert.equal(2 * i, fs[i]:result(0)) end
      concur.poll()
      assert.equal(N, resolved)          -- each future resolved exactly once
      local st = pool:stats()
      assert.same({ N, 0, 0, 0 }, { st.completed, st.failed, st.cancelled, st.pending })
      local seen = {}
      for line in io.lines(dir) do seen[tonumber(line)] = true end
      for i = 1, N do assert(seen[i], "the effect of task " .. i .. " is missing") end
      for _, n in ipairs(ns) do n:stop() end
    end)
  end)
end)
