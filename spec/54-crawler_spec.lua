-- fetch.Crawler against a generated site on 127.0.0.1 full of traps: the
-- exact pages fetched are read from the server's log. And fetch.Frontier,
-- its journal, and resuming after stop(), Ctrl-C and kill -9.
local helpers = require "helpers"
local httpserver = require "helpers.httpserver"
local sync = require "helpers.sync"
local concur = require "concur"
local fetch = require "concur.fetch"

local raises = helpers.raises

-- A site in the test server's /s/ space. Links are written as a page would
-- write them; the server's log shows what the crawler asked for.
local HTML = { { "Content-Type", "text/html; charset=utf-8" } }

local function page(title, links, head)
  local out = { "<!doctype html><html><head><title>", title, "</title>", head or "",
    "</head><body><h1>", title, "</h1>" }
  for _, l in ipairs(links) do
    out[#out + 1] = ('<p><a href="%s"%s>link</a></p>'):format(l[1],
      l[2] and (' rel="%s"'):format(l[2]) or "")
  end
  out[#out + 1] = "</body></html>"
  return { status = 200, headers = HTML, body = table.concat(out) }
end

local function redirect(code, to)
  return { status = code, headers = { { "Location", to } }, body = "" }
end

local BUSY = "/flaky/busy?fail=1&status=503&retry_after=1"

local function trap_site(port)
  local host = "127.0.0.1:" .. port
  return {
    ["/s/"] = page("home", {
      { "a/b" }, { "./a/./b" }, { "/s/a/../a/b" },                 -- one page, three spellings
      { "/s/%7euser" }, { "/s/~user" },                             -- %7e is ~
      { "HTTP://" .. host .. "/s/" }, { "#top" },                   -- this page again
      { "http://127.0.0.2:" .. port .. "/s/other" },                -- other hosts
      { "http://localhost:" .. port .. "/s/" },
      { "/s/private/secret" },                                      -- robots.txt says no
      { "/s/noindex" }, { "/s/nofollow" }, { "/s/relnofollow", "nofollow" },
      { "/s/r1" }, { "/s/loop1" }, { "/s/r-to-ab" },                -- redirects
      { "/s/missing" },                                             -- 404
      { BUSY:gsub("&", "&amp;") },                                  -- 503 + Retry-After
      { "/cal/1" },                                                 -- endless calendar
      { "/s/broken" }, { "mailto:shop@example.org" },
    }),
    ["/s/a/b"] = page("a b", { { "/s/" }, { "../~user" } }),
    ["/s/~user"] = page("user", { { "a/b" } }),
    ["/s/noindex"] = page("noindex", { { "/s/from-noindex" } },
      '<meta name="robots" content="noindex">'),
    ["/s/from-noindex"] = page("from noindex", {}),
    ["/s/nofollow"] = page("nofollow", { { "/s/only-nofollow" } },
      '<meta name="robots" content="nofollow">'),
    ["/s/only-nofollow"] = page("only from nofollow", {}),
    ["/s/relnofollow"] = page("rel nofollow", {}),
    ["/s/private/secret"] = page("secret", {}),
    ["/s/r1"] = redirect(302, "/s/r2"),
    ["/s/r2"] = redirect(307, "final"),
    ["/s/final"] = page("final", {}),
    ["/s/loop1"] = redirect(302, "/s/loop2"),
    ["/s/loop2"] = redirect(302, "/s/loop1"),
    ["/s/r-to-ab"] = redirect(301, "http://" .. host .. "/s/a/b"),
    ["/s/broken"] = { status = 200, headers = HTML, body =
      "<html><body><div><p>unclosed <b><a href='/s/from-broken'>x</div><table><tr><td>cell" },
    ["/s/from-broken"] = page("from broken", {}),
  }
end

-- what a crawl of the trap site from /s/ with max_depth = 4 fetches
local EXPECTED = {
  ["/robots.txt"] = 1, ["/s/"] = 1, ["/s/a/b"] = 1, ["/s/~user"] = 1,
  ["/s/noindex"] = 1, ["/s/from-noindex"] = 1, ["/s/nofollow"] = 1,
  ["/s/r1"] = 1, ["/s/r2"] = 1, ["/s/final"] = 1, ["/s/loop1"] = 1, ["/s/loop2"] = 1,
  ["/s/r-to-ab"] = 1, ["/s/missing"] = 1, [BUSY] = 2,   -- a 503, then its retry
  ["/cal/1"] = 1, ["/cal/2"] = 1, ["/cal/3"] = 1, ["/cal/4"] = 1,
  ["/s/broken"] = 1, ["/s/from-broken"] = 1,
}

local function counts(log)
  local c = {}
  for _, e in ipairs(log) do c[e.path] = (c[e.path] or 0) + 1 end
  return c
end

local ROBOTS = "User-agent: *\nDisallow: /s/private\nCrawl-delay: 0.02\n"

local function client_opts()
  return { per_host = 4, retries = 2, backoff = 0.01, max_backoff = 5 }
end

-- A frontier in plain Lua, with the interface the crawler documents: any
-- object with these methods can stand in for fetch.Frontier.
local function lua_frontier()
  local queue, seen, saved = {}, {}, nil
  local f = {}
  function f.push(_, entries)
    local added, dups = 0, 0
    for _, e in ipairs(entries) do
      if seen[e.url] then dups = dups + 1
      else
        seen[e.url] = true
        added = added + 1
        queue[#queue + 1] = { url = e.url, depth = e.depth, hops = e.hops,
          host = e.url:match("^%a+://[^/]+") }
      end
    end
    return added, dups
  end
  function f.pop(_, n, inflight, per_host)
    local out, rest, took = {}, {}, {}
    table.sort(queue, function(a, b) return a.depth < b.depth end)
    for _, e in ipairs(queue) do
      local busy = inflight and (inflight[e.host] or 0) + (took[e.host] or 0) >= per_host
      if #out < n and not busy then
        out[#out + 1] = e
        took[e.host] = (took[e.host] or 0) + 1
      else rest[#rest + 1] = e end
    end
    queue = rest
    return out
  end
  function f.done() end
  function f.seen(_, u) return seen[u] == true end
  function f.size() return #queue end
  function f.stats()
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    return { queued = #queue, inflight = 0, seen = n, seen_bytes = 0 }
  end
  function f.load() return saved end
  function f.save(_, t) saved = t end
  function f.close() end
  return f
end

describe("fetch.Crawler", function()
  local srv

  setup(function()
    srv = httpserver.start()
    srv:robots(ROBOTS)
    srv:site(trap_site(srv.port))
  end)

  teardown(function()
    srv:robots(nil)
    srv:stop()
  end)

  before_each(function() srv:reset() end)

  describe("on a site full of traps", function()
    local items, stats, log

    setup(function()
      srv:reset()
      local crawler = fetch.Crawler{ start = { srv:url("/s/") }, max_depth = 4,
        client = client_opts() }
      items = {}
      for item, resp in crawler:items() do
        items[#items + 1] = item
        assert.is_true(fetch.is_response(resp))
      end
      stats = crawler:stats()
      log = srv:log()
    end)

    it("fetches exactly the pages it should, each once", function()
      assert.same(EXPECTED, counts(log))
    end)

    it("fetches robots.txt first", function()
      assert.equal("/robots.txt", log[1].path)
    end)

    it("keeps to robots.txt's Crawl-delay", function()
      local ts = {}
      for i = 2, #log do ts[#ts + 1] = log[i].t end
      table.sort(ts)
      assert.is_true(httpserver.rate(ts) < 50 * 1.1, "rate " .. httpserver.rate(ts))
    end)

    it("counts pages, items, errors and redirects", function()
      assert.equal(15, stats.pages)          -- responses that are not redirects
      assert.equal(13, stats.items)          -- 2xx HTML pages but the noindex one
      assert.equal(13, #items)
      assert.equal(1, stats.errors)          -- the 404
      assert.equal(5, stats.redirects)       -- r1, r2, loop1, loop2, r-to-ab
      assert.equal(21, stats.seen)
      assert.equal(0, stats.queued)
    end)

    it("says why URLs were skipped", function()
      assert.same({ robots = 1, depth = 1, offsite = 2, duplicate = 10, nofollow = 2,
        noindex = 1 }, stats.skipped)
    end)

    it("reads pages in C as it does in Lua, here or on workers: the same pages, items and counts", function()
      -- an allow function takes the Lua reading (a Document per page)
      srv:reset()
      local prefix = srv:url("/")
      local crawler = fetch.Crawler{ start = { srv:url("/s/") }, max_depth = 4,
        client = client_opts(),
        allow = function(u) return u:sub(1, #prefix) == prefix end }
      local lua_items = {}
      for item in crawler:items() do lua_items[#lua_items + 1] = item end
      local lua_stats = crawler:stats()
      assert.same(EXPECTED, counts(srv:log()))
      assert.same(stats, lua_stats)
      local function key(list)
        local out = {}
        for i, it in ipairs(list) do out[i] = it.url .. " " .. it.status .. " " .. tostring(it.title) end
        table.sort(out)
        return out
      end
      assert.same(key(items), key(lua_items))
      -- scanned on pool workers, the links pushed here: the same again
      srv:reset()
      crawler = fetch.Crawler{ start = { srv:url("/s/") }, max_depth = 4,
        client = client_opts(), workers = 2 }
      local pool_items = {}
      for item in crawler:items() do pool_items[#pool_items + 1] = item end
      assert.same(EXPECTED, counts(srv:log()))
      assert.same(stats, crawler:stats())
      assert.same(key(items), key(pool_items))
    end)

    it("gives url, status and title as the default item", function()
      local by = {}
      for _, it in ipairs(items) do by[it.url] = it end
      assert.same({ url = srv:url("/s/"), status = 200, title = "home" }, by[srv:url("/s/")])
      assert.equal("final", by[srv:url("/s/final")].title)
      assert.is_nil(by[srv:url("/s/noindex")])
      assert.is_not_nil(by[srv:url("/s/broken")])
    end)
  end)

  describe("options", function()
    it("stops at max_pages", function()
      local c = fetch.Crawler{ start = { srv:url("/gen/500/0/0") }, max_pages = 7,
        client = { per_host = 4 } }
      local n = 0
      for _ in c:items() do n = n + 1 end
      assert.equal(7, n)
      assert.equal(7, c:stats().pages)
      assert.equal(7, #srv:log("^/gen"))
    end)

    it("goes breadth-first: no page deeper than one not yet fetched", function()
      local c = fetch.Crawler{ start = { srv:url("/gen/156/0/0") },
        client = { per_host = 1, concurrency = 1 } }
      c:run()
      local depth_of = function(path)
        local n, d = tonumber(path:match("(%d+)$")), 0
        while n > 0 do n, d = (n - 1) // 5, d + 1 end
        return d
      end
      local last = 0
      for _, e in ipairs(srv:log("^/gen")) do
        local d = depth_of(e.path)
        assert.is_true(d >= last, ("depth %d after depth %d"):format(d, last))
        last = d
      end
      assert.equal(156, #srv:log("^/gen"))
    end)

    it("follows only what allow allows", function()
      local c = fetch.Crawler{ start = { srv:url("/gen/31/0/0") }, client = { per_host = 4 },
        allow = function(u) return not u:match("/[12]%d$") end }   -- no 10-29
      c:run()
      assert.equal(31 - 20, #srv:log("^/gen"))
      assert.equal(20, c:stats().skipped.offsite)
    end)

    it("takes allow as host or host:port strings", function()
      local c = fetch.Crawler{ start = { srv:url("/s/") }, max_depth = 1,
        allow = { "127.0.0.2" }, client = client_opts() }
      c:run()
      assert.same({ ["/robots.txt"] = 1, ["/s/"] = 1 }, counts(srv:log()))
      srv:reset()
      c = fetch.Crawler{ start = { srv:url("/gen/6/0/0") }, allow = "127.0.0.1:" .. srv.port }
      c:run()
      assert.equal(6, #srv:log("^/gen"))
    end)

    it("uses what parse returns: the items and the URLs to follow", function()
      local c = fetch.Crawler{ start = { srv:url("/gen/50/0/0") },
        parse = function(resp, doc)
          local n = tonumber(resp.url:match("(%d+)$"))
          local urls = {}
          for _, a in ipairs(doc:find_all("a")) do
            local href = a:attr("href")
            if tonumber(href) and tonumber(href) % 2 == 1 then urls[#urls + 1] = href end
          end
          return { n = n, title = doc:title() }, urls
        end }
      local got = {}
      for item in c:items() do got[#got + 1] = item.n end
      table.sort(got)
      -- odd children of odd pages: 0 -> 1 3 5; 1 -> 7 9; 3 -> 17 19; ...
      assert.same({ 0, 1, 3, 5, 7, 9, 17, 19, 27, 29, 37, 39, 47, 49 }, got)
    end)

    it("parses on a ThreadPool when workers > 0, with the same result", function()
      local c = fetch.Crawler{ start = { srv:url("/s/") }, max_depth = 4, workers = 2,
        client = client_opts() }
      local n = 0
      for _ in c:items() do n = n + 1 end
      assert.equal(13, n)
      assert.same(EXPECTED, counts(srv:log()))
      assert.equal(10, c:stats().skipped.duplicate)
    end)

    it("runs parse on the workers", function()
      local c = fetch.Crawler{ start = { srv:url("/gen/20/0/0") }, workers = 2,
        parse = function(_, doc)
          return { by = require("concur").thread_name(), title = doc:title() }, nil
        end }
      local names = {}
      for item in c:items() do names[item.by] = true end
      assert.is_nil(names.main)
      assert.is_not_nil(next(names))
    end)

    it("ignores meta robots, rel=nofollow and robots.txt with robots = false", function()
      local c = fetch.Crawler{ start = { srv:url("/s/") }, max_depth = 2, robots = false,
        client = client_opts() }
      c:run()
      local got = counts(srv:log())
      assert.is_nil(got["/robots.txt"])
      assert.equal(1, got["/s/private/secret"])
      assert.equal(1, got["/s/relnofollow"])
      assert.equal(1, got["/s/only-nofollow"])
    end)

    it("calls on_item from run and returns the stats", function()
      local urls = {}
      local st = fetch.Crawler{ start = { srv:url("/gen/6/0/0") } }:run{
        on_item = function(item, resp) urls[#urls + 1] = item.url .. " " .. resp.status end }
      assert.equal(6, #urls)
      assert.equal(6, st.pages)
      assert.equal(6, st.items)
    end)

    it("takes any object with the frontier's methods", function()
      local c = fetch.Crawler{ start = { srv:url("/s/") }, max_depth = 4,
        client = client_opts(), frontier = lua_frontier() }
      c:run()
      assert.same(EXPECTED, counts(srv:log()))
      assert.equal(13, c:stats().items)
    end)

    it("uses a Client it is given", function()
      local client <close> = fetch.Client{ robots = true, per_host = 2 }
      local c = fetch.Crawler{ start = { srv:url("/gen/10/0/0") }, client = client }
      c:run()
      assert.equal(10, #srv:log("^/gen"))
      assert.is_false(client:closed())
      assert.is_true(client:stats().requests >= 11)
    end)

    it("shows the shared progress display", function()
      local calls = {}
      fetch.Crawler{ start = { srv:url("/gen/8/0/0") },
        progress = function(done, _, errors) calls[#calls + 1] = { done, errors } end }:run()
      assert.same({ 8, 0 }, calls[#calls])
    end)

    it("refuses bad options with kind argument", function()
      raises("argument", "option 'start'", function() fetch.Crawler{} end)
      raises("argument", "start[1]", function() fetch.Crawler{ start = { "ftp://x/" } } end)
      raises("argument", "unknown option 'depth'", function()
        fetch.Crawler{ start = { srv:url("/") }, depth = 1 }
      end)
      raises("argument", "option 'max_depth'", function()
        fetch.Crawler{ start = { srv:url("/") }, max_depth = -1 }
      end)
      raises("argument", "option 'parse'", function()
        fetch.Crawler{ start = { srv:url("/") }, parse = 1 }
      end)
      raises("argument", "option 'allow'", function()
        fetch.Crawler{ start = { srv:url("/") }, allow = { 1 } }
      end)
      raises("argument", "no method 'pop'", function()
        fetch.Crawler{ start = { srv:url("/") }, frontier = { push = print } }
      end)
      raises("argument", "table expected", function() fetch.Crawler("x") end)
    end)

    it("raises what parse raises, and ends the crawl", function()
      local c = fetch.Crawler{ start = { srv:url("/gen/6/0/0") },
        parse = function() error("parse failed") end }
      local ok, err = pcall(function() for _ in c:items() do end end)
      assert.is_false(ok)
      assert.matches("parse failed", tostring(err))
      raises("closed", "over", function() c:items() end)
    end)
  end)

  describe("stop and resume", function()
    local dir

    before_each(function()
      dir = helpers.tmpdir and helpers.tmpdir() or os.tmpname()
      os.remove(dir)
    end)

    after_each(function()
      os.remove(dir)
      os.remove(dir .. ".tmp")
    end)

    it("stop() lets what is in flight finish, and a resume goes on from there", function()
      local first = {}
      local c = fetch.Crawler{ start = { srv:url("/gen/60/0/0") }, state = dir,
        client = { per_host = 2 } }
      for item in c:items() do
        first[#first + 1] = item.url
        if #first == 10 then c:stop() end
      end
      local log1 = counts(srv:log("^/gen"))
      assert.is_true(#first >= 10 and #first < 60)
      local n1 = 0
      for p, k in pairs(log1) do n1 = n1 + 1; assert.equal(1, k, p) end
      assert.equal(#first, n1)   -- what was in flight finished and came out
      srv:reset()
      local c2 = fetch.Crawler{ start = { srv:url("/gen/60/0/0") }, state = dir,
        client = { per_host = 2 } }
      local second = 0
      for _ in c2:items() do second = second + 1 end
      local log2 = counts(srv:log("^/gen"))
      for p in pairs(log2) do assert.is_nil(log1[p], p .. " fetched again") end
      assert.equal(60, n1 + second)
      assert.equal(60, c2:stats().pages)    -- the counters went on
      assert.equal(60, c2:stats().items)
    end)

    it("does nothing more when the crawl was over", function()
      fetch.Crawler{ start = { srv:url("/gen/6/0/0") }, state = dir }:run()
      srv:reset()
      local st = fetch.Crawler{ start = { srv:url("/gen/6/0/0") }, state = dir }:run()
      assert.equal(0, #srv:log("^/gen"))
      assert.equal(6, st.pages)
    end)

    it("resumes where max_pages stopped it", function()
      fetch.Crawler{ start = { srv:url("/gen/40/0/0") }, state = dir, max_pages = 15 }:run()
      assert.equal(15, #srv:log("^/gen"))
      srv:reset()
      local st = fetch.Crawler{ start = { srv:url("/gen/40/0/0") }, state = dir }:run()
      assert.equal(25, #srv:log("^/gen"))
      assert.equal(40, st.pages)
    end)

    -- A crawling process is killed (-9 or Ctrl-C) after a random number of
    -- pages were logged; a second process resumes from the journal.
    local CHILD = [[
      local fetch = require "concur.fetch"
      local c = fetch.Crawler{ start = { %q }, state = %q, client = { per_host = 4 },
        frontier = %s }
      for item in c:items() do
        io.stdout:write("DONE ", item.url, "\n")
        io.stdout:flush()
      end
      print("FINISHED")
    ]]

    local function child_cmd(code)
      local tmp = os.tmpname()
      local f = assert(io.open(tmp, "w"))
      f:write(code)
      f:close()
      local lua = os.getenv("CONCUR_LUA") or "lua5.4"
      return ("LUA_PATH=%q LUA_CPATH=%q exec %s %s 2>&1"):format(package.path, package.cpath,
        lua, tmp), tmp
    end

    local function killed_then_resumed(signal, frontier)
      local T = 400
      local start = srv:url("/gen/" .. T .. "/2/0")
      local code = CHILD:format(start, dir, frontier and frontier:format(dir) or "nil")
      if frontier then   -- the frontier's state, not the crawler's
        code = code:gsub('state = "[^"]*", ', "", 1)
      end
      local seed = os.time()
      math.randomseed(seed)
      -- a compacting journal is first rewritten after about 150 pages
      local at = frontier and math.random(200, 350) or math.random(20, 250)
      local cmd, script = child_cmd(code)
      local function inode()
        local h = io.popen("stat -c %i " .. dir .. " 2>/dev/null")
        local i = h:read("a")
        h:close()
        return i
      end
      local p = io.popen("echo $$; " .. cmd, "r")
      local pid = tonumber(p:read("l"))
      sync.wait_until(function() return inode() ~= "" end, 60)
      local first_inode = inode()
      sync.wait_until(function() return #srv:log("^/gen") >= at end, 60)
      os.execute(("kill -%s %d"):format(signal, pid))
      if frontier then   -- it was compacted (renamed over) before the kill
        assert.are_not.equal(first_inode, inode())
      end
      local out1 = p:read("a")
      p:close()
      local log1 = counts(srv:log("^/gen"))
      local done1 = {}
      for u in out1:gmatch("DONE (%S+)") do done1[u:match("/gen/.*$")] = true end
      assert.not_matches("FINISHED", out1, 1, true)
      if signal == "INT" then   -- the wait ended with the interpreter's error
        assert.matches("interrupted!", out1, 1, true)
      end
      srv:reset()
      local p2 = io.popen(cmd, "r")
      local out2 = p2:read("a")
      p2:close()
      os.remove(script)
      local log2 = counts(srv:log("^/gen"))
      assert.matches("FINISHED", out2, 1, true)
      local msg = (" (seed %d, killed after %d pages)"):format(seed, at)
      local all, again = 0, 0
      for path, k in pairs(log1) do assert.equal(1, k, path .. msg) end
      for path, k in pairs(log2) do
        assert.equal(1, k, path .. msg)
        assert.is_nil(done1[path], path .. " was done, and fetched again" .. msg)
        if log1[path] then again = again + 1 end
      end
      for i = 0, T - 1 do
        local path = ("/gen/%d/2/%d"):format(T, i)
        assert.is_truthy(log1[path] or log2[path], path .. " never fetched" .. msg)
        all = all + 1
      end
      assert.equal(T, all)
      assert.is_true(again <= 8, again .. " pages fetched again" .. msg)   -- those in flight
      return again
    end

    it("resumes after kill -9 without refetching done pages or losing queued ones", function()
      killed_then_resumed("KILL")
    end)

    it("resumes after Ctrl-C", function()
      killed_then_resumed("INT")
    end)

    it("resumes after kill -9 of a crawl whose journal was compacted", function()
      killed_then_resumed("KILL", 'fetch.Frontier{ state = %q, compact_at = 4096 }')
    end)
  end)
end)

describe("the crawler's stream of completions", function()
  local srv

  setup(function() srv = httpserver.start() end)
  teardown(function() srv:stop() end)

  it("reports requests and watched futures as each completes", function()
    local core = require "concur.core"
    local client <close> = fetch.Client{ retries = 0 }
    local pool <close> = concur.ThreadPool(1)
    local s = core.fetch.stream(client)
    local gate = concur.Event()
    local f = pool:submit(function(e) e:wait(); return 42 end, gate)
    local watched = s:watch(f)
    local req = s:get(srv:url("/bytes/2"))
    assert.equal(2, s:pending())
    local slot, ok, v = s:next(10)   -- the future waits for the gate
    assert.same({ req, true, "xx" }, { slot, ok, v.body })
    gate:set()
    assert.equal(watched, s:next(10))
    assert.equal(42, f:result())
    assert.is_nil(s:next(10))        -- nothing in flight
    local bad = s:get(srv:url("/drop"))
    slot, ok, v = s:next(10)
    assert.same({ bad, false, "network" }, { slot, ok, v.kind })
    s:close()
    raises("closed", "freed", function() s:next() end)
  end)
end)

describe("fetch.Frontier", function()
  local path

  before_each(function()
    path = os.tmpname()
    os.remove(path)
  end)

  after_each(function()
    os.remove(path)
    os.remove(path .. ".tmp")
  end)

  local function E(u, d, h) return { url = u, depth = d or 0, hops = h or 0 } end

  it("adds an entry once, however often it is pushed", function()
    local f = fetch.Frontier()
    assert.same({ 2, 1 }, { f:push{ E"http://a/1", E"http://a/2", E"http://a/1" } })
    assert.same({ 0, 2 }, { f:push{ E"http://a/1", E"http://a/2" } })
    assert.is_true(f:seen("http://a/1"))
    assert.is_false(f:seen("http://a/3"))
    assert.equal(2, f:size())
  end)

  it("gives the least deep entries first, host after host", function()
    local f = fetch.Frontier()
    f:push{ E("http://a/deep", 2), E("http://a/top", 0), E("http://b/x", 1),
            E("http://a/mid", 1), E("http://b/y", 0) }
    local got = {}
    for _, e in ipairs(f:pop(10)) do got[#got + 1] = e.url end
    assert.same({ "http://a/top", "http://b/y", "http://a/mid", "http://b/x", "http://a/deep" }, got)
  end)

  it("gives each host at most per_host less what it has in flight", function()
    local f = fetch.Frontier()
    f:push{ E"http://a/1", E"http://b:8080/1", E"http://a/2", E"http://a/3",
            E"http://b:8080/2", E"http://b:8080/3" }
    local es = f:pop(10, { ["http://a"] = 2, ["http://b:8080"] = 1 }, 2)
    assert.equal(1, #es)
    assert.same({ url = "http://b:8080/1", depth = 0, hops = 0, host = "http://b:8080" }, es[1])
    es = f:pop(10, {}, 2)
    assert.same({ "http://a/1", "http://b:8080/2", "http://a/2", "http://b:8080/3" },
      { es[1].url, es[2].url, es[3].url, es[4].url })
    assert.equal(1, f:size())
    assert.equal(0, #f:pop(0))
  end)

  it("keeps at most 16 bytes per seen URL", function()
    local f = fetch.Frontier()
    local batch = {}
    for i = 1, 200000 do
      batch[#batch + 1] = E("http://h/" .. i)
      if #batch == 1000 then f:push(batch); batch = {} end
    end
    local st = f:stats()
    assert.equal(200000, st.seen)
    assert.is_true(st.seen_bytes / st.seen <= 16, st.seen_bytes / st.seen .. " bytes per URL")
  end)

  it("replays its journal: queued and in flight come back, done ones stay done", function()
    local f = fetch.Frontier{ state = path }
    f:push{ E"http://a/1", E("http://a/2", 1, 2), E"http://a/3" }
    local es = f:pop(2)
    f:done(es[1].url)
    f:save({ pages = 1, skipped = { robots = 2 } })
    f:close()
    local g = fetch.Frontier{ state = path }
    assert.equal(2, g:size())
    assert.is_true(g:seen(es[1].url))
    assert.same({ pages = 1, skipped = { robots = 2 } }, g:load())
    local back = {}
    for _, e in ipairs(g:pop(10)) do back[e.url] = e end
    assert.is_nil(back[es[1].url])
    assert.same(E("http://a/2", 1, 2), { url = back["http://a/2"].url,
      depth = back["http://a/2"].depth, hops = back["http://a/2"].hops })
    g:close()
  end)

  it("ignores a torn last record", function()
    local f = fetch.Frontier{ state = path }
    f:push{ E"http://a/1", E"http://a/2" }
    f:close()
    local size = #assert(io.open(path, "rb")):read("a")
    for _, tail in ipairs{ "\20\0\0\0\1\2", "\5\0\0\0\0\0\0\0Qxxxx", ("\255"):rep(40) } do
      local h = assert(io.open(path, "ab"))
      h:write(tail)
      h:close()
      local g = fetch.Frontier{ state = path }
      assert.equal(2, g:size())
      g:push{ E"http://a/3" }
      g:close()
      local k = fetch.Frontier{ state = path }
      assert.equal(3, k:size())
      assert.is_true(k:seen("http://a/3"))
      k:close()
      -- back to two entries for the next tail
      local data = assert(io.open(path, "rb")):read("a")
      assert.is_true(#data > size)
      h = assert(io.open(path, "wb"))
      h:write(data:sub(1, size))
      h:close()
    end
  end)

  it("compacts its journal when it grows, losing nothing", function()
    local f = fetch.Frontier{ state = path, compact_at = 2048 }
    for i = 1, 500 do
      f:push{ E("http://a/" .. i) }
      local e = f:pop(1)[1]
      f:done(e.url)
    end
    f:push{ E"http://a/left" }
    local st = f:stats()
    assert.is_true(st.journal_bytes < 500 * 40, st.journal_bytes .. " bytes")
    f:close()
    local g = fetch.Frontier{ state = path }
    assert.equal(1, g:size())
    assert.equal(501, g:stats().seen)
    assert.is_true(g:seen("http://a/250"))
    g:close()
  end)

  it("refuses a file that is not a journal", function()
    local h = assert(io.open(path, "wb"))
    h:write("not a journal at all, but somebody's file")
    h:close()
    raises("argument", "is not a crawl journal", function() fetch.Frontier{ state = path } end)
    assert.equal("not a journal at all, but somebody's file", assert(io.open(path, "rb")):read("a"))
  end)

  it("refuses what is not a canonical http(s) URL", function()
    local f = fetch.Frontier()
    raises("argument", "entries[].url: not a canonical http(s) URL", function()
      f:push{ E"ftp://a/" }
    end)
    raises("argument", "entries[1]: table expected", function() f:push{ "http://a/" } end)
    raises("argument", "depth", function() f:push{ E("http://a/", -1) } end)
    raises("argument", "NUL", function() fetch.Frontier{ state = "a\0b" } end)
    f:close()
    raises("closed", "closed", function() f:size() end)
  end)
end)
