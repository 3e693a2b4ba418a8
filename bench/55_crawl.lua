-- bench/55_crawl.lua: fetch.Crawler against Scrapy, and against fetching the
-- same pages with client:get_all, measured in one run.
--
-- Generates a site of PAGES (10,000) HTML pages of about 10 KB, each with 20
-- links (written as pages write them: relative, root-relative and absolute;
-- every page reachable from /c/0.html) and a robots.txt, served by a local
-- nginx (generated config, 127.0.0.1 only, a free port). Then, each in its
-- own process so that its peak memory is its own:
--   client:get_all on the PAGES URLs (concurrency 64, per_host 64),
--   fetch.Crawler from /c/0.html (the same client options, robots on),
--   the same with workers = 2 (pages parsed on a ThreadPool of 2),
--   Scrapy (Debian's python3-scrapy) with the equivalent settings:
--   CONCURRENT_REQUESTS = CONCURRENT_REQUESTS_PER_DOMAIN = 64, no delay,
--   ROBOTSTXT_OBEY, no autothrottle; one item per page (url, title) and
--   every link followed, as the crawler does by default.
-- It prints pages/s, CPU per page (user + system of the whole process),
-- peak memory (VmHWM / ru_maxrss), the crawler's seen-set bytes per URL,
-- and checks the targets: the crawler at least 10x Scrapy's pages/s and at
-- least half get_all's. Each concur figure is the best of BENCH_ROUNDS (3)
-- interleaved rounds; Scrapy runs once (it is the slow one).
-- Run: bin/lua bench/55_crawl.lua [pages]
local concur = require "concur"

local PAGES = tonumber(arg and arg[1]) or 10000
local LINKS, PAGE_BYTES, CONC = 20, 10 * 1024, 64

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local function have(cmd)
  return sh("command -v " .. cmd .. " 2>/dev/null") ~= ""
end

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- a child run: bin/lua bench/55_crawl.lua --child MODE BASE PAGES ----------------

-- "user+system CPU seconds, peak RSS bytes" of this process
local function usage()
  local f = assert(io.open("/proc/self/stat"))
  local fields = {}
  for x in f:read("a"):gsub("^.*%) ", ""):gmatch("%S+") do fields[#fields + 1] = x end
  f:close()
  local ticks = tonumber(sh("getconf CLK_TCK")) or 100
  local cpu = (tonumber(fields[12]) + tonumber(fields[13])) / ticks   -- utime, stime
  local peak = 0
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s*(%d+)")
    if kb then peak = tonumber(kb) * 1024 end
  end
  return cpu, peak
end

if arg and arg[1] == "--child" then
  local fetch = require "concur.fetch"
  local mode, base, n = arg[2], arg[3], tonumber(arg[4])
  local copts = { concurrency = CONC, per_host = CONC, retries = 0 }
  local cpu0 = usage()
  local t0, pages, extra = concur.monotonic(), 0, ""
  if mode == "get_all" then
    local urls = {}
    for i = 0, n - 1 do urls[#urls + 1] = ("%s/c/%d.html"):format(base, i) end
    local client <close> = fetch.Client(copts)
    t0 = concur.monotonic()
    for _, r in ipairs(client:get_all(urls)) do
      assert(r.status == 200, "get_all: " .. tostring(r.message or r.status))
      pages = pages + 1
    end
  else
    copts.robots = true
    local crawler = fetch.Crawler{ start = { base .. "/c/0.html" }, client = copts,
      workers = mode == "crawl_workers" and 2 or 0 }
    local items = 0
    for _ in crawler:items() do items = items + 1 end
    local st = crawler:stats()
    assert(st.pages == n and items == n and st.errors == 0,
      ("crawl: %d pages, %d items, %d errors"):format(st.pages, items, st.errors))
    pages = st.pages
    extra = (" %d %d"):format(st.seen, st.seen_bytes)
  end
  local secs = concur.monotonic() - t0
  local cpu, peak = usage()
  print(("RESULT %d %.6f %.6f %d%s"):format(pages, secs, cpu - cpu0, peak, extra))
  os.exit(0)
end

-- the site ------------------------------------------------------------------------

local dir = sh("mktemp -d /tmp/concur-crawlbench.XXXXXX"):gsub("%s+$", "")
local port = tonumber(sh([[python3 -c "import socket; s=socket.socket(); ]] ..
  [[s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"]]))
local base = "http://127.0.0.1:" .. port

-- page i links to its children 20i+1..20i+20 (so every page is reachable),
-- and past the tree's leaves to pages picked by a fixed LCG; one link in
-- four is absolute, one root-relative, the rest relative to /c/
local function make_site()
  os.execute(("mkdir -p %q"):format(dir .. "/www/c"))
  writefile(dir .. "/www/robots.txt", "User-agent: *\nDisallow: /private/\n")
  local seed = 12345
  local filler = ("<p>" .. ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. "):rep(8)
    .. "</p>\n")
  for i = 0, PAGES - 1 do
    local out = { ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
      .. "<title>Page %d</title></head>\n<body><h1>Page %d</h1>\n<ul>\n"):format(i, i) }
    for k = 1, LINKS do
      local j = LINKS * i + k
      if j >= PAGES then
        seed = (seed * 1103515245 + 12345) % 2147483648
        j = seed % PAGES
      end
      local href
      if k % 4 == 0 then href = ("%s/c/%d.html"):format(base, j)
      elseif k % 4 == 1 then href = ("/c/%d.html"):format(j)
      else href = ("%d.html"):format(j) end
      out[#out + 1] = ('<li><a href="%s">page %d</a></li>\n'):format(href, j)
    end
    out[#out + 1] = "</ul>\n"
    local len = 0
    for _, s in ipairs(out) do len = len + #s end
    while len < PAGE_BYTES - 32 do
      out[#out + 1] = filler
      len = len + #filler
    end
    out[#out + 1] = "</body></html>\n"
    writefile(("%s/www/c/%d.html"):format(dir, i), table.concat(out))
  end
end

writefile(dir .. "/nginx.conf", ([[
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
  default_type text/html;
  types { text/html html; text/plain txt; }
  server {
    listen 127.0.0.1:%d;
    root %s/www;
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, dir))

assert(have("nginx") or io.open("/usr/sbin/nginx"), "bench needs nginx (apt-get install nginx-light)")
make_site()
-- in the foreground under timeout(1), so a bench that dies leaves no nginx
-- behind for long
assert(os.execute(("PATH=$PATH:/usr/sbin timeout 1800 nginx -c %s/nginx.conf -p %s "
  .. "-g 'daemon off;' &"):format(dir, dir)), "nginx did not start")

local function stop()
  local f = io.open(dir .. "/nginx.pid")
  if f then
    local pid = f:read("n")
    f:close()
    if pid then os.execute("kill " .. pid) end
  end
  os.execute("rm -rf " .. dir)
end

for _ = 1, 200 do   -- wait for nginx to answer
  if sh(("curl -s --noproxy '*' -o /dev/null -w '%%{http_code}' %s/c/0.html"):format(base)) == "200" then
    break
  end
  concur.sleep(0.05)
end

-- the runners ------------------------------------------------------------------------

local here = arg[0]
local lua = os.getenv("CONCUR_LUA") or "lua5.4"

local function child(mode)
  local out = sh(("%s %q --child %s %s %d 2>&1"):format(lua, here, mode, base, PAGES))
  local pages, secs, cpu, peak, seen, seen_bytes =
    out:match("RESULT (%d+) (%S+) (%S+) (%d+) ?(%d*) ?(%d*)")
  assert(pages, mode .. " failed:\n" .. out)
  return { pages = tonumber(pages), rate = tonumber(pages) / tonumber(secs),
    cpu = tonumber(cpu) / tonumber(pages), peak = tonumber(peak),
    seen = tonumber(seen), seen_bytes = tonumber(seen_bytes) }
end

local SPIDER = [[
import resource, sys, time
import scrapy
from scrapy.crawler import CrawlerProcess

class Site(scrapy.Spider):
    name = "site"
    start_urls = [sys.argv[1] + "/c/0.html"]

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, self.parse)

pages = 0
def count(item, response, spider):
    global pages
    pages += 1

process = CrawlerProcess(settings={
    "CONCURRENT_REQUESTS": 64, "CONCURRENT_REQUESTS_PER_DOMAIN": 64,
    "DOWNLOAD_DELAY": 0, "ROBOTSTXT_OBEY": True, "AUTOTHROTTLE_ENABLED": False,
    "RETRY_ENABLED": False, "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False,
    "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
})
crawler = process.create_crawler(Site)
crawler.signals.connect(count, signal=scrapy.signals.item_scraped)
process.crawl(crawler)
t0 = time.monotonic()
process.start()
secs = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT %d %.6f %.6f %d" % (pages, secs, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024))
]]

local function scrapy()
  local py
  for _, p in ipairs{ "/usr/bin/python3", "python3" } do
    if os.execute(p .. " -c 'import scrapy' >/dev/null 2>&1") then py = p break end
  end
  if not py then return nil, "Scrapy: not installed (apt-get install python3-scrapy)" end
  writefile(dir .. "/spider.py", SPIDER)
  local out = sh(("cd %q && env -u LD_PRELOAD %s spider.py %s 2>&1"):format(dir, py, base))
  local pages, secs, cpu, peak = out:match("RESULT (%d+) (%S+) (%S+) (%d+)")
  if not pages then return nil, "Scrapy failed:\n" .. out end
  return { pages = tonumber(pages), rate = tonumber(pages) / tonumber(secs),
    cpu = tonumber(cpu) / tonumber(pages), peak = tonumber(peak) }
end

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 3
io.write(("crawl a generated site of %d pages (%d KB, %d links each) from local nginx "
  .. "(127.0.0.1:%d), concurrency %d, robots.txt on; %d CPUs, best of %d rounds\n\n")
  :format(PAGES, PAGE_BYTES // 1024, LINKS, port, CONC, concur.cpu_count(), ROUNDS))

local best = {}
local function keep(name, r)
  local b = best[name]
  if not b or r.rate > b.rate then
    if b then r.peak = math.max(r.peak, b.peak) end
    best[name] = r
  elseif r.peak > b.peak then b.peak = r.peak end
end
local ok, err = pcall(function()
  for _ = 1, ROUNDS do
    keep("get_all", child("get_all"))
    keep("crawler", child("crawl"))
    keep("workers", child("crawl_workers"))
  end
  local s, why = scrapy()
  best.scrapy = s
  best.why = why
end)
stop()
if not ok then error(err, 0) end

local function row(name, r)
  if not r then return end
  io.write(("%-34s %9.0f pages/s %8.1f µs CPU/page %8.1f MB peak\n")
    :format(name, r.rate, r.cpu * 1e6, r.peak / 1048576))
end
row("client:get_all (the same pages)", best.get_all)
row("fetch.Crawler", best.crawler)
row("fetch.Crawler, workers = 2", best.workers)
row("Scrapy " .. (sh("/usr/bin/python3 -c 'import scrapy; print(scrapy.__version__)' 2>/dev/null")
  :gsub("%s+$", "")), best.scrapy)
if best.why then print(best.why) end
local c = best.crawler
io.write(("\nseen-set: %d URLs in %d bytes, %.1f bytes per URL\n")
  :format(c.seen, c.seen_bytes, c.seen_bytes / c.seen))
if best.workers.rate > c.rate then   -- the targets, for the faster crawl
  c = best.workers
  io.write("(the ratios below are for workers = 2, the faster)\n")
end
local vs_get_all = c.rate / best.get_all.rate
io.write(("crawler / get_all: %.2fx (target >= 0.5x: %s)\n")
  :format(vs_get_all, vs_get_all >= 0.5 and "met" or "MISSED"))
if best.scrapy then
  local vs = c.rate / best.scrapy.rate
  io.write(("crawler / Scrapy: %.1fx pages/s (target >= 10x: %s), %.1fx less CPU per page, "
    .. "%.1fx less peak memory\n"):format(vs, vs >= 10 and "met" or "MISSED",
    best.scrapy.cpu / c.cpu, best.scrapy.peak / c.peak))
end
