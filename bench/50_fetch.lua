-- bench/50_fetch.lua: concur.fetch against its peers, measured in one run.
--
-- Starts a local nginx (generated config, 127.0.0.1 only, port picked free)
-- serving 2 KB and 100 KB pages (and the 2 KB page over https with HTTP/2
-- on a second port), then fetches 5,000 2 KB pages with:
--   wrk (the ceiling: a C load generator that does no real client work),
--   concur.fetch at concurrency 16 and 64,
--   Python requests + ThreadPoolExecutor(16),
--   Python aiohttp (64 connections; Debian's python3-aiohttp, so it runs
--   under /usr/bin/python3 when the default python3 lacks it),
--   curl --parallel (64),
-- and prints pages/s, ratios to wrk and to Python, and concur's CPU time per
-- request (process CPU: the Lua side and the engine thread); then the 100 KB
-- case in MB/s; then concur.fetch over https, HTTP/1.1 on 64 connections
-- beside HTTP/2 multiplexing 64 streams on one connection. Each figure is
-- the best of BENCH_ROUNDS (3) interleaved rounds (Python requests runs
-- once: it is the slow one). A peer that is not installed is skipped with a
-- line saying so.
-- Run: bin/lua bench/50_fetch.lua [pages]
local concur = require "concur"
local fetch = require "concur.fetch"

local PAGES = tonumber(arg and arg[1]) or 5000
local BIG_PAGES = math.max(200, PAGES // 5)

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local function have(cmd)
  return sh("command -v " .. cmd .. " 2>/dev/null") ~= ""
end

local function free_port()
  return tonumber(sh([[python3 -c "import socket; s=socket.socket(); ]] ..
    [[s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"]]))
end

-- nginx -----------------------------------------------------------------------

local dir = sh("mktemp -d /tmp/concur-bench.XXXXXX"):gsub("%s+$", "")
local port = assert(free_port(), "no free port")
local base = "http://127.0.0.1:" .. port

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

writefile(dir .. "/2k.html", ("x"):rep(2048))
writefile(dir .. "/100k.html", ("y"):rep(100 * 1024))

-- https with HTTP/2 (ALPN) on a second port, with a self-signed certificate
-- made here; without openssl there is no https row
local tls_base, tls_server = nil, ""
if os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem -out %s/cert.pem " ..
    "-days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1"):format(dir, dir)) then
  local tls_port = free_port()
  tls_base = "https://127.0.0.1:" .. tls_port
  tls_server = ([[
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s/cert.pem;
    ssl_certificate_key %s/key.pem;
    root %s;
    location /p2k/ { default_type text/html; try_files /2k.html =404; }
  }
]]):format(tls_port, dir, dir, dir)
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
  server {
    listen 127.0.0.1:%d;
    root %s;
    location /p2k/ { default_type text/html; try_files /2k.html =404; }
    location /p100k/ { default_type text/html; try_files /100k.html =404; }
  }
%s}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, dir, tls_server))

assert(have("nginx"), "bench needs nginx (apt-get install nginx-light)")
-- in the foreground under timeout(1), so a bench that dies leaves no nginx
-- behind for long
assert(os.execute(("timeout 900 nginx -c %s/nginx.conf -p %s -g 'daemon off;' &")
  :format(dir, dir)), "nginx did not start")

local function stop()
  local f = io.open(dir .. "/nginx.pid")
  if f then
    local pid = f:read("n")
    f:close()
    if pid then os.execute("kill " .. pid) end
  end
  concur.sleep(0.2)
  os.execute("rm -rf " .. dir)
end

-- wait for nginx to answer
for _ = 1, 100 do
  if sh(("curl -s --noproxy '*' -o /dev/null -w '%%{http_code}' %s/p2k/1"):format(base)) == "200" then
    break
  end
  concur.sleep(0.05)
end

local function urls(kind, n)
  local t = {}
  for i = 1, n do t[i] = ("%s/%s/%d"):format(base, kind, i) end
  return t
end

-- the runners -------------------------------------------------------------------

local results = {}
local skipped = {}   -- lines saying which peers were not measured, and why
local aio_missing

local function wrk(conns, kind)
  if not have("wrk") then
    if not skipped.wrk then
      skipped.wrk = true
      skipped[#skipped + 1] = "wrk: not installed (apt-get install wrk)"
    end
    return nil
  end
  local out = sh(("wrk -t1 -c%d -d2s %s/%s/1 2>&1"):format(conns, base, kind))
  local rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)"))
  local tr, unit = out:match("Transfer/sec:%s*([%d%.]+)(%a+)")
  local mb = tonumber(tr)
  if mb and unit == "KB" then mb = mb / 1024 elseif mb and unit == "GB" then mb = mb * 1024 end
  return rps, mb
end

local function concur_run(conc, kind, n)
  local client <close> = fetch.Client{ concurrency = conc, per_host = conc, retries = 0 }
  client:get_all(urls(kind, 64))   -- warm the connections
  local list = urls(kind, n)
  local c0, t0 = os.clock(), concur.monotonic()
  local rs = client:get_all(list)
  local t1, c1 = concur.monotonic(), os.clock()
  local bytes = 0
  for i = 1, n do
    assert(rs[i].status == 200, "request failed: " .. tostring(rs[i].message))
    bytes = bytes + #rs[i].body
  end
  return n / (t1 - t0), (c1 - c0) / n * 1e6, bytes / (t1 - t0) / 1048576
end

-- concur.fetch over https (certificate not verified: it is self-signed), with
-- HTTP/2 offered or not; pages/s and CPU microseconds per request
local function concur_tls(conc, n, http2)
  if not tls_base then return nil end
  local client <close> = fetch.Client{ concurrency = conc, per_host = conc, retries = 0,
                                       verify = false, http2 = http2 }
  local function list(k)
    local t = {}
    for i = 1, k do t[i] = ("%s/p2k/%d"):format(tls_base, i) end
    return t
  end
  client:get_all(list(conc))   -- warm: connections and TLS sessions
  local l = list(n)
  local c0, t0 = os.clock(), concur.monotonic()
  local rs = client:get_all(l)
  local t1, c1 = concur.monotonic(), os.clock()
  for i = 1, n do
    assert(rs[i].status == 200, "request failed: " .. tostring(rs[i].message))
    assert(rs[i].http_version == (http2 and "2" or "1.1"), "unexpected HTTP version")
  end
  return n / (t1 - t0), (c1 - c0) / n * 1e6
end

local function python_requests_run(python, n)
  local py = ([[
import time, requests
from concurrent.futures import ThreadPoolExecutor
s = requests.Session()
a = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=16)
s.mount("http://", a)
urls = ["%s/p2k/%%d" %% i for i in range(%d)]
def get(u):
    r = s.get(u); assert r.status_code == 200; return len(r.content)
t0 = time.perf_counter()
with ThreadPoolExecutor(16) as ex:
    list(ex.map(get, urls))
print(len(urls) / (time.perf_counter() - t0))
]]):format(base, n)
  writefile(dir .. "/req.py", py)
  return tonumber(sh(python .. " " .. dir .. "/req.py 2>/dev/null"))
end

-- the first of these interpreters that can import 'module', or nil
local function python_with(module)
  for _, py in ipairs{ "python3", "/usr/bin/python3" } do
    if os.execute(("%s -c 'import %s' >/dev/null 2>&1"):format(py, module)) then
      return py
    end
  end
end


local function python_requests(n)
  local py = python_with("requests")
  if not py then
    skipped[#skipped + 1] = "Python requests: no python3 with the requests module"
    return nil
  end
  return python_requests_run(py, n)
end

-- aiohttp with 64 connections, all requests gathered at once; returns
-- pages/s and CPU microseconds per request
local function python_aiohttp(n)
  local py = python_with("aiohttp")
  if not py then
    skipped[#skipped + 1] = "Python aiohttp: no python3 with the aiohttp module " ..
      "(apt-get install python3-aiohttp)"
    return nil
  end
  writefile(dir .. "/aio.py", ([[
import asyncio, time, aiohttp
urls = ["%s/p2k/%%d" %% i for i in range(%d)]
async def main():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
        async def get(u):
            async with s.get(u) as r:
                assert r.status == 200
                return len(await r.read())
        await asyncio.gather(*(get(u) for u in urls[:64]))   # warm the connections
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(get(u) for u in urls))
        t1, c1 = time.perf_counter(), time.process_time()
        print(len(urls) / (t1 - t0), (c1 - c0) / len(urls) * 1e6)
asyncio.run(main())
]]):format(base, n))
  local rps, cpu = sh(py .. " " .. dir .. "/aio.py 2>/dev/null"):match("(%S+) (%S+)")
  return tonumber(rps), tonumber(cpu)
end

local function curl_parallel(n, conns)
  if not have("curl") then
    if not skipped.curl then
      skipped.curl = true
      skipped[#skipped + 1] = "curl --parallel: curl is not installed"
    end
    return nil
  end
  local lines = {}
  for i = 1, n do lines[i] = ('url = "%s/p2k/%d"\noutput = "/dev/null"'):format(base, i) end
  writefile(dir .. "/curl.cfg", table.concat(lines, "\n") .. "\n")
  local t0 = concur.monotonic()
  sh(("curl -s --noproxy '*' --parallel --parallel-immediate --parallel-max %d -K %s/curl.cfg 2>/dev/null")
    :format(conns, dir))
  return n / (concur.monotonic() - t0)
end

-- a plain C program on libcurl's multi interface (socket API on epoll, 64
-- transfers, bodies discarded): what libcurl itself costs, for reference
local PLAIN_C = [==[
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
static int ep; static long tmo = -1; static CURLM *m;
static size_t wr(char *p, size_t s, size_t n, void *u) { (void)p; (void)u; return s * n; }
static int scb(CURL *e, curl_socket_t s, int what, void *u, void *sp) {
  struct epoll_event ev = {0}; (void)e; (void)u;
  if (what == CURL_POLL_REMOVE) { epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL); return 0; }
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
  ev.data.fd = s;
  if (!sp) { epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev); curl_multi_assign(m, s, (void*)1); }
  else epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
  return 0;
}
static int tcb(CURLM *mm, long t, void *u) { (void)mm; (void)u; tmo = t; return 0; }
int main(int argc, char **argv) {
  int n = atoi(argv[2]), conc = 64, started = 0, done = 0, running;
  struct timespec a, b; clock_t c0 = clock();
  curl_global_init(CURL_GLOBAL_DEFAULT); m = curl_multi_init(); ep = epoll_create1(0);
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, scb);
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, tcb);
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (; started < conc; started++) {
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, argv[1]);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, wr);
    curl_multi_add_handle(m, e);
  }
  while (done < n) {
    struct epoll_event evs[64]; int k = epoll_wait(ep, evs, 64, tmo < 0 ? 100 : (int)tmo);
    if (k == 0) curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    for (int i = 0; i < k; i++)
      curl_multi_socket_action(m, evs[i].data.fd, (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                               (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0), &running);
    if (tmo == 0) curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    CURLMsg *msg; int left;
    while ((msg = curl_multi_info_read(m, &left))) if (msg->msg == CURLMSG_DONE) {
      CURL *e = msg->easy_handle; curl_multi_remove_handle(m, e); done++;
      if (started < n) { started++; curl_multi_add_handle(m, e); } else curl_easy_cleanup(e);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  double t = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
  printf("%.0f %.2f\n", n / t, (double)(clock() - c0) / CLOCKS_PER_SEC / n * 1e6);
  return 0;
}
]==]

local plain_bin
local function plain_curl(n)
  if plain_bin == nil then
    writefile(dir .. "/plain.c", PLAIN_C)
    plain_bin = os.execute(("cc -O2 -o %s/plain %s/plain.c -lcurl 2>/dev/null")
      :format(dir, dir)) and dir .. "/plain" or false
  end
  if not plain_bin then return nil end
  local rps, cpu = sh(("%s %s/p2k/1 %d"):format(plain_bin, base, n)):match("(%S+) (%S+)")
  return tonumber(rps), tonumber(cpu)
end

-- run ---------------------------------------------------------------------------

-- best of ROUNDS, the runners interleaved: on a shared machine a neighbour's
-- burst then costs every contender alike
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 3
local function best(key, v, lower)
  if v and (results[key] == nil or (lower and v < results[key]) or
            (not lower and v > results[key])) then
    results[key] = v
  end
end

local ok, err = pcall(function()
  io.write(("concur.fetch bench: %d x 2 KB pages from nginx on 127.0.0.1:%d, " ..
    "%d CPUs, best of %d rounds\n\n"):format(PAGES, port, concur.cpu_count(), ROUNDS))
  for _ = 1, ROUNDS do
    local a, b, c
    best("wrk16", wrk(16, "p2k"))
    best("wrk64", wrk(64, "p2k"))
    a, b = concur_run(16, "p2k", PAGES); best("c16", a); best("cpu16", b, true)
    a, b = concur_run(64, "p2k", PAGES); best("c64", a); best("cpu64", b, true)
    best("curl", curl_parallel(PAGES, 64))
    if not aio_missing then
      a, b = python_aiohttp(PAGES); best("aio", a); best("aiocpu", b, true)
      aio_missing = a == nil
    end
    a, b = plain_curl(PAGES); best("plain", a); best("plaincpu", b, true)
    best("wrkmb64", select(2, wrk(64, "p100k")))
    a, _, c = concur_run(16, "p100k", BIG_PAGES); best("b16", a); best("mb16", c)
    a, _, c = concur_run(64, "p100k", BIG_PAGES); best("b64", a); best("mb64", c)
    a, b = concur_tls(64, PAGES, false); best("tls1", a); best("tls1cpu", b, true)
    a, b = concur_tls(64, PAGES, true); best("tls2", a); best("tls2cpu", b, true)
  end
  results.py = python_requests(PAGES)
end)
stop()
if not ok then error(err, 0) end

local function row(name, rps, extra)
  io.write(("%-38s %10s pages/s   %s\n"):format(name, rps and ("%.0f"):format(rps) or "n/a",
    extra or ""))
end
local function ratio(a, b, what)
  if not (a and b) then return "" end
  return ("%.2fx %s"):format(a / b, what)
end

row("wrk -c16 (ceiling)", results.wrk16)
row("wrk -c64 (ceiling)", results.wrk64)
row("concur.fetch concurrency 16", results.c16,
  ("%s, %s, %.1f us CPU/request"):format(ratio(results.c16, results.wrk16, "of wrk"),
    ratio(results.c16, results.py, "Python"), results.cpu16))
row("concur.fetch concurrency 64", results.c64,
  ("%s, %s, %.1f us CPU/request"):format(ratio(results.c64, results.wrk64, "of wrk"),
    ratio(results.c64, results.py, "Python"), results.cpu64))
row("Python requests + ThreadPoolExecutor(16)", results.py)
row("Python aiohttp (64 connections)", results.aio, results.aio and
  ("%s, %.1f us CPU/request"):format(ratio(results.c64, results.aio, "concur/aiohttp"),
    results.aiocpu) or "")
row("curl --parallel (64)", results.curl, ratio(results.c64, results.curl, "concur/curl"))
row("plain C on libcurl multi (64, discards)", results.plain, results.plain and
  ("%s, %.1f us CPU/request"):format(ratio(results.plain, results.wrk64, "of wrk"),
    results.plaincpu) or "")
if tls_base then
  row("concur.fetch https HTTP/1.1, 64 conns", results.tls1,
    ("%.1f us CPU/request"):format(results.tls1cpu))
  row("concur.fetch https HTTP/2, 64 streams", results.tls2,
    ("%s, %.1f us CPU/request (one connection, multiplexed)"):format(
      ratio(results.tls2, results.tls1, "of HTTP/1.1"), results.tls2cpu))
else
  skipped[#skipped + 1] = "https (HTTP/1.1 and HTTP/2): openssl could not make a certificate"
end
for _, line in ipairs(skipped) do io.write(("skipped %s\n"):format(line)) end
io.write(("\n100 KB pages (%d): concur.fetch %.0f MB/s at 16, %.0f MB/s at 64 " ..
  "(%.0f / %.0f pages/s); wrk -c64 %s MB/s\n"):format(BIG_PAGES, results.mb16, results.mb64,
  results.b16, results.b64, results.wrkmb64 and ("%.0f"):format(results.wrkmb64) or "n/a"))
-- The project's aims, for information (a benchmark measures; it does not
-- pass or fail).
io.write(("\n(for information) the project aims at 0.6x of wrk or more at concurrency 64: %s;"
  .. " and about 25 us of CPU per request: %.1f us here\n"):format(
  results.wrk64 and ("%.2fx here"):format(results.c64 / results.wrk64) or "no wrk in this run",
  results.cpu64))
