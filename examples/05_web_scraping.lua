--- Lesson 5: web scraping with threads.
--
-- A simple concurrent scraper, a crawler of worker threads fed by a Queue
-- and sharing one client, the same crawl by fetch.Crawler (polite,
-- breadth-first, resumable), a rate-limited scraper, retries with
-- exponential backoff, good manners (robots.txt, User-Agent,
-- timeouts), and the same scrape as threads and as coroutine tasks on one
-- thread (concur.run, concur.async, concur.await). Pages are read with libxml2's HTML parser (resp:html(): the
-- title, the links made absolute) and URLs with libcurl's URL API
-- (fetch.urljoin, fetch.urlparse, fetch.urlnormalize): no HTML or URL is
-- taken apart by hand here.
--
-- No internet needed: with no arguments the script serves its own small
-- site on 127.0.0.1 from concur threads (examples/lib/demosite.lua, needs
-- LuaSocket) and scrapes that. Given URLs, it scrapes those instead,
-- politely: robots.txt on, one request per second per host.
--
--     bin/lua examples/05_web_scraping.lua                     (CONCUR_QUICK=1: small sizes)
--     bin/lua examples/05_web_scraping.lua https://www.lua.org/

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/lib/?.lua;" .. package.path

local concur = require "concur"
local fetch = require "concur.fetch"
local lesson = require "lesson"

local size, secs = lesson.size, lesson.secs
local UA = ("concur-lesson5/%s (a tutorial scraper)"):format(concur._VERSION:match("[%d.]+$") or "0")

---------------------------------------------------------------------------
-- Reading pages (copied into worker threads too)
---------------------------------------------------------------------------

-- What one fetch came to, for the summary: from a Response, or from an
-- error (a concur.Error, or a table with its kind and message). A page is
-- parsed by libxml2 (resp:html()); its links come absolute, resolved
-- against the page's URL and its <base href>, mailto: and the like left out.
local function record(url, resp_or_err)
  if resp_or_err.kind then
    return { url = url, ok = false, kind = resp_or_err.kind, message = resp_or_err.message,
      links = {} }
  end
  local r = resp_or_err
  local title, links = nil, {}
  if r.ok then
    local page = r:html()
    title = page:title()
    for _, link in ipairs(page:links()) do links[#links + 1] = link.url end
    page:close()
  end
  return { url = url, status = r.status, ok = r.ok, title = title, links = links,
    attempts = r.attempts }
end

local function outcome(rec)
  if rec.status then return tostring(rec.status) end
  return rec.kind or "error"
end

-- The path (and query) of a URL, for the tables.
local function path_of(url)
  local u = fetch.urlparse(url)
  return u.path .. (u.query and "?" .. u.query or "")
end

---------------------------------------------------------------------------
-- Given URLs: scrape those, politely.
---------------------------------------------------------------------------
if arg and #arg > 0 then
  local urls = {}
  for i = 1, #arg do
    local ok, why = pcall(fetch.urlnormalize, arg[i])   -- http(s) only
    if not ok then
      io.stderr:write("not an http(s) URL: ", arg[i], " (", tostring(why.message or why), ")\n")
      os.exit(2)
    end
    urls[#urls + 1] = arg[i]
  end
  lesson.title("Lesson 5: web scraping (the URLs given)")
  local client <close> = fetch.Client{ robots = true, rate = 1, burst = 1, per_host = 2,
    retries = 2, timeout = 20, connect_timeout = 10, user_agent = UA }
  print(("User-Agent %q, robots.txt honoured, at most 1 request/s and 2 connections per host")
    :format(UA))
  local took, responses = lesson.time(client.get_all, client, urls, { progress = true })
  local rows, nlinks = {}, 0
  for i, url in ipairs(urls) do
    local rec = record(url, responses[i])
    nlinks = nlinks + #rec.links
    rows[i] = { url, outcome(rec), rec.title and rec.title:sub(1, 50) or (rec.message or ""):sub(1, 50),
      #rec.links }
  end
  lesson.table({ "url", "status", "title (or error)", "links" }, rows)
  local st = client:stats()
  print(("%d URLs in %s: %d requests, %d retries, %d failures, %d bytes, %d links found"):format(
    #urls, secs(took), st.requests, st.retries, st.failures, st.bytes, nlinks))
  return
end

---------------------------------------------------------------------------
-- No URLs: the local demo site.
---------------------------------------------------------------------------
lesson.title("Lesson 5: web scraping with threads")
local okso, socket_err = pcall(require, "socket")
if not okso then
  print("This lesson serves its demo site with LuaSocket, which is not installed:")
  print("  apt-get install lua-socket      (" .. tostring(socket_err):match("^[^\n]*") .. ")")
  return
end
local demosite = require "demosite"
local site = demosite.start{ sections = size(4, 3), pages = size(10, 6), slow = size(0.3, 0.15),
  threads = 8 }
local ALL = site:urls()
print(("demo site %s: %d pages served by %d concur threads (slow pages take %.2f s)"):format(
  site.base, #ALL, #site.threads, size(0.3, 0.15)))
local runs = {}                       -- the summary table

local function summarise(name, recs, took, requests, retries)
  local ok, failed = 0, {}
  for _, r in ipairs(recs) do
    if r.ok then ok = ok + 1 else failed[#failed + 1] = outcome(r) end
  end
  runs[#runs + 1] = { name, #recs, ok, #failed > 0 and table.concat(failed, ",") or "-",
    requests, retries, secs(took) }
  return ok, failed
end

---------------------------------------------------------------------------
lesson.section("A simple concurrent scraper")
---------------------------------------------------------------------------
-- Every URL handed to one client at once: it keeps up to per_host (4)
-- transfers going on this host. Retries are off here (see section 4).
do
  site:reset()
  local client <close> = fetch.Client{ retries = 0, user_agent = UA }
  local took, responses = lesson.time(client.get_all, client, ALL)
  local recs, links = {}, 0
  for i, url in ipairs(ALL) do
    recs[i] = record(url, responses[i])
    links = links + #recs[i].links
  end
  local ok, failed = summarise("1. concurrent, no retries", recs, took, #site:log(),
    client:stats().retries)
  print(("%d pages in %s: %d ok, %d failed (%s), %d links extracted"):format(
    #ALL, secs(took), ok, #failed, table.concat(failed, ", "), links))
  print("(a 429 carries Retry-After, which a client honours by pausing that host: see section 4)")
end

---------------------------------------------------------------------------
lesson.section("A crawler: worker threads fed by a Queue, sharing one client")
---------------------------------------------------------------------------
-- Four threads take URLs from a Queue, fetch them through one shared
-- client (so they share its per-host limits), parse them and hand back
-- the links; the main thread queues each new link once and closes the
-- queue when nothing is left. "Once" is by fetch.urlnormalize's form: the
-- same page spelt "/a/./b", "/a/../a/b" or "HTTP://HOST:80/a/b" is one
-- URL. Only links to this site (its host and port) are followed.
local crawl = {}
local site_url = fetch.urlparse(site.base)
local function on_site(url)
  local u = fetch.urlparse(url)
  return u.host == site_url.host and u.port == site_url.port
end
do
  site:reset()
  local client <close> = fetch.Client{ retries = 3, backoff = 0.2, robots = true, user_agent = UA }
  local todo, done = concur.Queue(), concur.Queue()
  local function crawler(c, inq, outq)
    local n = 0
    for url in inq:items() do
      local f = c:get(url)
      local err = f:error()
      local rec = record(url, err and { kind = err.kind, message = err.message } or f:result())
      n = n + 1
      if n <= 2 then concur.log(("%s -> %s %s"):format(url, outcome(rec), rec.title or "")) end
      outq:put(rec)
    end
    return n
  end
  local took = lesson.time(function()
    local workers = {}
    for i = 1, 4 do
      workers[i] = concur.spawn{ crawler, args = { client, todo, done }, name = "crawler-" .. i }
    end
    local start = fetch.urlnormalize(site:url("/"))
    local seen, pending = { [start] = true }, 1
    todo:put(start)
    while pending > 0 do
      local rec = done:get(30)
      pending = pending - 1
      crawl[#crawl + 1] = rec
      for _, link in ipairs(rec.links) do
        local url = fetch.urlnormalize(link)
        if on_site(url) and not seen[url] then
          seen[url] = true
          pending = pending + 1
          todo:put(url)
        end
      end
    end
    todo:close()
    local per = {}
    for i, w in ipairs(workers) do
      local _, n = w:join()
      per[i] = { w.name, n }
    end
    lesson.table({ "thread", "pages fetched" }, per)
  end)
  local ok, failed = summarise("2. crawler, 4 threads + Queue", crawl, took, #site:log(),
    client:stats().retries)
  print(("crawled %d URLs from / in %s: %d ok, not ok: %s"):format(#crawl, secs(took), ok,
    table.concat(failed, ", ")))
end

---------------------------------------------------------------------------
lesson.section("fetch.Crawler: the same crawl, polite and resumable")
---------------------------------------------------------------------------
-- What section 2 wrote by hand, fetch.Crawler does: breadth-first from the
-- start URLs, on this site only (the start's host and port), each page
-- once (by fetch.urlnormalize's form), robots.txt and meta robots obeyed.
-- With `state` it journals its frontier: stopped here after a few pages
-- (as Ctrl-C or kill -9 would stop it), a new Crawler on the same journal
-- goes on where it was, and fetches no finished page again.
do
  site:reset()
  local journal = os.tmpname()
  local function new_crawler()
    return fetch.Crawler{ start = { site:url("/") }, state = journal,
      client = { retries = 3, backoff = 0.2, user_agent = UA } }
  end
  local STOP_AT = size(8, 5)
  local items, before = {}, 0
  local took = lesson.time(function()
    local first = new_crawler()
    for item in first:items() do
      items[#items + 1] = item
      if #items == STOP_AT then first:stop() end   -- in-flight pages still come
    end
    before = #items
    local second = new_crawler()                   -- resumes from the journal
    second:run{ on_item = function(item) items[#items + 1] = item end }
    return second:stats()
  end)
  local st = new_crawler():stats()                 -- the counters were journaled too
  os.remove(journal)
  -- from the server's log: robots.txt is asked by each crawler's client,
  -- and the busy and flaky pages are retried, so those count once
  local fetched, twice = {}, 0
  local retried = { ["/robots.txt"] = true, ["/busy"] = true, ["/flaky"] = true }
  for _, e in ipairs(site:log()) do
    fetched[e.path] = (fetched[e.path] or 0) + 1
    if fetched[e.path] == 2 and not retried[e.path] then twice = twice + 1 end
  end
  print(("stop() at %d items (%d came, with those in flight), then resumed from the journal: "
    .. "%d pages, %d items in %s; pages fetched twice: %d"):format(STOP_AT, before, st.pages,
    #items, secs(took), twice))
  runs[#runs + 1] = { "3. fetch.Crawler, stop + resume", st.pages + st.skipped.robots, #items,
    "robots,404", #site:log(), "-", secs(took) }
  local ok_pages, same = {}, true
  for _, rec in ipairs(crawl) do if rec.ok then ok_pages[rec.url] = true end end
  for _, item in ipairs(items) do
    if not ok_pages[item.url] then same = false end
    ok_pages[item.url] = nil
  end
  if next(ok_pages) then same = false end
  print(("the items are the pages section 2's threads found: %s"):format(same and "yes" or "no"))
  local rows = {}
  for _, why in ipairs { "robots", "duplicate", "offsite", "depth", "nofollow", "noindex" } do
    rows[#rows + 1] = { why, st.skipped[why] or 0 }
  end
  lesson.table({ "URLs skipped: why", "how many" }, rows)
  print(("crawler stats: %d pages, %d errors (the 404), %d redirects, %d URLs seen in %d bytes")
    :format(st.pages, st.errors, st.redirects, st.seen, st.seen_bytes))
end

---------------------------------------------------------------------------
lesson.section("A rate-limited scraper")
---------------------------------------------------------------------------
-- rate = requests per second per host (a token bucket with burst tokens),
-- enforced by the client for everyone who uses it; concur.RateLimiter does
-- the same for any work, shared by threads.
local RATE, NRATE = size(10, 20), size(20, 8)
do
  local pages = site:articles()
  for i = #pages, NRATE + 1, -1 do pages[i] = nil end
  local function server_rate()
    local log = site:log("^/page/")
    local ts = {}
    for i, e in ipairs(log) do ts[i] = e.t end
    table.sort(ts)
    return (#ts - 1) / (ts[#ts] - ts[1]), #ts
  end
  local rows = {}
  -- (a) the client's own rate limit
  site:reset()
  local client <close> = fetch.Client{ rate = RATE, burst = 1, user_agent = UA }
  local took, responses = lesson.time(client.get_all, client, pages)
  local recs = {}
  for i, u in ipairs(pages) do recs[i] = record(u, responses[i]) end
  local achieved, seen = server_rate()
  summarise(("4. rate = %d/s (client)"):format(RATE), recs, took, seen, client:stats().retries)
  rows[#rows + 1] = { "fetch.Client{ rate = " .. RATE .. " }", seen, secs(took),
    ("%.2f/s"):format(achieved) }
  -- (b) four threads taking tokens from one RateLimiter, fetching with one client
  site:reset()
  local limiter = concur.RateLimiter{ rate = RATE, per = 1, burst = 1 }
  local plain <close> = fetch.Client{ user_agent = UA }
  local todo = concur.Queue()
  for _, u in ipairs(pages) do todo:put(u) end
  todo:close()
  local took2 = lesson.time(function()
    local th = {}
    for i = 1, 4 do
      th[i] = concur.spawn{ function(q, rl, c)
        for u in q:items() do
          rl:acquire()
          c:get(u):result()
        end
      end, args = { todo, limiter, plain }, name = "limited-" .. i }
    end
    for i = 1, 4 do assert(th[i]:join()) end
  end)
  local achieved2, seen2 = server_rate()
  rows[#rows + 1] = { "4 threads + concur.RateLimiter{ rate = " .. RATE .. " }", seen2, secs(took2),
    ("%.2f/s"):format(achieved2) }
  lesson.table({ ("asked: %d requests/s"):format(RATE), "requests", "time", "achieved (server)" }, rows)
  print("(achieved = requests after the first / the time between the first and the last,"
    .. " as the server saw them)")
end

---------------------------------------------------------------------------
lesson.section("Retries with exponential backoff")
---------------------------------------------------------------------------
-- /flaky answers 500 twice before it works; /busy answers 429 with
-- Retry-After: 1 once. The client retries with exponential backoff and
-- full jitter (backoff * 2^k at most), and waits as long as Retry-After says.
do
  site:reset()
  local client <close> = fetch.Client{ retries = 3, backoff = 0.2, max_backoff = 5, user_agent = UA }
  local rows, recs, total = {}, {}, 0
  for _, path in ipairs { "/flaky", "/busy" } do
    local took, resp = lesson.time(function() return client:get(site:url(path)):result() end)
    total = total + took
    recs[#recs + 1] = record(site:url(path), resp)
    local log = site:log("^" .. path .. "$")
    local gaps, bounds = {}, {}
    for i = 2, #log do
      gaps[#gaps + 1] = ("%.2f s"):format(log[i].t - log[i - 1].t)
      bounds[#bounds + 1] = path == "/busy" and "Retry-After 1 s" or ("<= %.1f s"):format(0.2 * 2 ^ (i - 2))
    end
    rows[#rows + 1] = { path, resp.status, resp.attempts, secs(took), table.concat(gaps, ", "),
      table.concat(bounds, ", ") }
  end
  lesson.table({ "page", "final status", "attempts", "time", "waits between attempts", "allowed" }, rows)
  local st = client:stats()
  summarise("5. retries = 3, backoff = 0.2", recs, total, #site:log(), st.retries)
  local by_status = {}
  for code, n in pairs(st.by_status or {}) do by_status[#by_status + 1] = code .. "=" .. n end
  table.sort(by_status)
  print(("client stats: %d requests, %d retries, %d failures; by status: %s"):format(
    st.requests, st.retries, st.failures, table.concat(by_status, " ")))
end

---------------------------------------------------------------------------
lesson.section("Good manners: robots.txt, User-Agent, timeouts")
---------------------------------------------------------------------------
do
  site:reset()
  local client <close> = fetch.Client{ robots = true, timeout = 0.5, retries = 0, user_agent = UA }
  -- robots.txt: fetched once per host; disallowed URLs are refused unsent.
  local err = client:get(site:url("/private/secret")):error()
  print(("robots.txt disallows /private/: kind %q (%s)"):format(err and err.kind or "none",
    err and err.message or "fetched"))
  local who = client:get(site:url("/whoami")):result():html()
  print(("the server saw the User-Agent: %s"):format(who:xpath("substring-after(//p, 'You are ')")))
  local t0 = concur.monotonic()
  local terr = client:get(site:url("/slow?s=3")):error()
  print(("a page that takes 3 s, with timeout = 0.5: kind %q, curl code %s, after %.2f s"):format(
    terr and terr.kind or "none", tostring(terr and terr.code), concur.monotonic() - t0))
  local log = site:log()
  local paths = {}
  for _, e in ipairs(log) do paths[#paths + 1] = e.path end
  print("requests the server saw: " .. table.concat(paths, " ") .. " (never /private/secret)")
end

---------------------------------------------------------------------------
lesson.section("The same scrape as threads and as coroutines on one thread")
---------------------------------------------------------------------------
-- Threads: a ThreadPool whose tasks each fetch a page and parse it (the
-- client goes to them by reference). Coroutines (asyncio's way): one task
-- per URL on this one thread (concur.run, concur.async); each awaits its
-- fetch, and while it waits the others run. The fetch engine does the I/O
-- either way; coroutines need no thread per wait, and code between waits
-- never races (one task runs at a time), so it can update plain tables.
-- /busy is left out, and each run has a client of its own: its 429 carries
-- Retry-After, which pauses a client on this host for a second, and the
-- timing would measure that pause.
do
  local urls = {}
  for _, url in ipairs(ALL) do
    if path_of(url) ~= "/busy" then urls[#urls + 1] = url end
  end
  local client = fetch.Client{ retries = 0, user_agent = UA, per_host = 8 }
  site:reset()
  local pool <close> = concur.ThreadPool(8)
  local took_t, recs_t = lesson.time(pool.map, pool, function(url)
    local resp = client:get(url):result()
    return record(url, resp)
  end, urls, { errors = "return" })
  summarise("7a. threads: ThreadPool(8)", recs_t, took_t, #site:log(), 0)
  client:close()
  client = fetch.Client{ retries = 0, user_agent = UA, per_host = 8 }
  site:reset()
  local recs_c, pages_done = {}, 0
  local took_c = lesson.time(concur.run, function()
    for i, url in ipairs(urls) do
      concur.async(function()
        local resp = concur.await(client:get(url))
        recs_c[i] = record(url, resp)
        pages_done = pages_done + 1          -- no lock: one task runs at a time
      end)
    end
  end)
  summarise("7b. coroutines: 1 thread", recs_c, took_c, #site:log(), 0)
  client:close()
  print(("threads: %d pages in %s on 8 worker threads; coroutines: %d pages in %s,"
    .. " %d tasks on this one thread"):format(#recs_t, secs(took_t), pages_done, secs(took_c), #urls))
end

---------------------------------------------------------------------------
lesson.section("Summary")
---------------------------------------------------------------------------
lesson.table({ "run", "URLs", "ok", "not ok", "requests seen", "retries", "time" }, runs)
table.sort(crawl, function(a, b) return a.url < b.url end)
local rows, links, unique, broken, titles = {}, 0, {}, {}, 0
for _, r in ipairs(crawl) do
  links = links + #r.links
  if r.title then titles = titles + 1 end
  for _, l in ipairs(r.links) do unique[l] = true end
  if r.status == 404 then broken[#broken + 1] = path_of(r.url) end
end
local shown = size(12, 6)
for i, r in ipairs(crawl) do
  if i > shown then break end
  rows[#rows + 1] = { path_of(r.url), outcome(r), r.title or "", #r.links }
end
lesson.table({ "page (first " .. shown .. " of the crawl)", "status", "title", "links" }, rows)
local nunique = 0
for _ in pairs(unique) do nunique = nunique + 1 end
print(("the crawl: %d pages, %d titles, %d links (%d distinct), broken links to: %s"):format(
  #crawl, titles, links, nunique, #broken > 0 and table.concat(broken, ", ") or "none"))
local served = site:stop()
print(("the site's %d threads served %s requests"):format(#served, table.concat(served, "+")))
