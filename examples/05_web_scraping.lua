--- Lesson 5: web scraping with threads.
--
-- A simple concurrent scraper, a crawler of worker threads fed by a Queue
-- and sharing one client, a rate-limited scraper, retries with exponential
-- backoff, and good manners (robots.txt, User-Agent, timeouts). Page titles
-- and links are extracted and summarised.
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
-- Extracting titles and links (plain Lua; copied into worker threads too)
---------------------------------------------------------------------------

--- The absolute http(s) URL of href on the page at base, without its
-- #fragment; nil for other schemes (mailto:, javascript:, ...).
local function resolve(base, href)
  href = href:gsub("#.*$", ""):gsub("&amp;", "&")
  if href == "" then return nil end
  if href:match("^%a[%w+.-]*:") then
    return href:match("^[Hh][Tt][Tt][Pp][Ss]?://") and href or nil
  end
  local origin = base:match("^(%a+://[^/?#]+)")
  if href:sub(1, 2) == "//" then return base:match("^(%a+:)") .. href end
  if href:sub(1, 1) == "/" then return origin .. href end
  local dir = base:match("^(%a+://[^?#]*/)") or (origin .. "/")
  return dir .. href
end

--- The title and the (absolute, distinct, in order) links of an HTML page.
local function parse(body, base)
  local title = body:match("<[Tt][Ii][Tt][Ll][Ee][^>]*>(.-)</[Tt][Ii][Tt][Ll][Ee]>")
  title = title and title:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
    :gsub("&amp;", "&"):gsub("&lt;", "<"):gsub("&gt;", ">")
  local links, seen = {}, {}
  for _, href in body:gmatch("<[Aa]%s[^>]-[Hh][Rr][Ee][Ff]%s*=%s*([\"'])(.-)%1") do
    local url = resolve(base, href)
    if url and not seen[url] then
      seen[url] = true
      links[#links + 1] = url
    end
  end
  return title, links
end

-- What one fetch came to, for the summary: from a Response, or from an
-- error (a concur.Error, or a table with its kind and message).
local function record(url, resp_or_err)
  if resp_or_err.kind then
    return { url = url, ok = false, kind = resp_or_err.kind, message = resp_or_err.message,
      links = {} }
  end
  local r = resp_or_err
  local title, links
  if r.ok then title, links = parse(r.body or "", r.url or url) end
  return { url = url, status = r.status, ok = r.ok, title = title, links = links or {},
    attempts = r.attempts }
end

local function outcome(rec)
  if rec.status then return tostring(rec.status) end
  return rec.kind or "error"
end

---------------------------------------------------------------------------
-- Given URLs: scrape those, politely.
---------------------------------------------------------------------------
if arg and #arg > 0 then
  local urls = {}
  for i = 1, #arg do
    if not arg[i]:match("^https?://") then
      io.stderr:write("not an http(s) URL: ", arg[i], "\n")
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
-- queue when nothing is left.
local crawl = {}
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
      if n <= 2 then concur.log(("%s -> %s %s"):format(url:match("//[^/]+(.*)$"), outcome(rec),
        rec.title or "")) end
      outq:put(rec)
    end
    return n
  end
  local took = lesson.time(function()
    local workers = {}
    for i = 1, 4 do
      workers[i] = concur.spawn{ crawler, args = { client, todo, done }, name = "crawler-" .. i }
    end
    local start = site:url("/")
    local seen, pending = { [start] = true }, 1
    todo:put(start)
    while pending > 0 do
      local rec = done:get(30)
      pending = pending - 1
      crawl[#crawl + 1] = rec
      for _, link in ipairs(rec.links) do
        if link:sub(1, #site.base + 1) == site.base .. "/" and not seen[link] then
          seen[link] = true
          pending = pending + 1
          todo:put(link)
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
  summarise(("3. rate = %d/s (client)"):format(RATE), recs, took, seen, client:stats().retries)
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
  summarise("4. retries = 3, backoff = 0.2", recs, total, #site:log(), st.retries)
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
  local who = client:get(site:url("/whoami")):result()
  print(("the server saw the User-Agent: %s"):format(who.body:match("You are ([^<]*)")))
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
lesson.section("Summary")
---------------------------------------------------------------------------
lesson.table({ "run", "URLs", "ok", "not ok", "requests seen", "retries", "time" }, runs)
table.sort(crawl, function(a, b) return a.url < b.url end)
local rows, links, unique, broken, titles = {}, 0, {}, {}, 0
for _, r in ipairs(crawl) do
  links = links + #r.links
  if r.title then titles = titles + 1 end
  for _, l in ipairs(r.links) do unique[l] = true end
  if r.status == 404 then broken[#broken + 1] = r.url:match("//[^/]+(.*)$") end
end
local shown = size(12, 6)
for i, r in ipairs(crawl) do
  if i > shown then break end
  rows[#rows + 1] = { r.url:match("//[^/]+(.*)$"), outcome(r), r.title or "", #r.links }
end
lesson.table({ "page (first " .. shown .. " of the crawl)", "status", "title", "links" }, rows)
local nunique = 0
for _ in pairs(unique) do nunique = nunique + 1 end
print(("the crawl: %d pages, %d titles, %d links (%d distinct), broken links to: %s"):format(
  #crawl, titles, links, nunique, #broken > 0 and table.concat(broken, ", ") or "none"))
local served = site:stop()
print(("the site's %d threads served %s requests"):format(#served, table.concat(served, "+")))
