-- bench/52_tasks.lua: coroutine tasks (concur.run/async/await) in one Lua
-- state, measured in one run against client:get_all and Python asyncio.
--
-- 1. 10,000 fetches of a 2 KB page from a local nginx (127.0.0.1, port
--    picked free), on a Client of concurrency 64:
--      one concur task per URL, each `concur.await(client:get(url))`,
--      client:get_all(urls) (the same Client settings),
--      Python asyncio + aiohttp (64 connections, one coroutine per URL).
--    Aims: tasks within 10% of get_all; 5x aiohttp or more.
-- 2. Completion latency: a ThreadPool worker records the monotonic time as
--    its task ends; the on_done callback, run from a luv loop attached with
--    concur.luv, records it again. 1,000 futures one at a time, each
--    sleeping 1 ms first so the loop waits in epoll; median and p99 in
--    microseconds (aim: median under 50 us).
-- Each figure of part 1 is the best of BENCH_ROUNDS (3) interleaved rounds.
-- Run: bin/lua bench/52_tasks.lua [pages]
local concur = require "concur"
local fetch = require "concur.fetch"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local benchlib = require "benchlib"

local PAGES = tonumber(arg and arg[1]) or 10000
local CONC = 64
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 3
local sh = benchlib.sh

local function have(cmd)
  return sh("command -v " .. cmd .. " 2>/dev/null") ~= ""
end

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- nginx ------------------------------------------------------------------------

assert(have("nginx"), "bench needs nginx (apt-get install nginx-light)")
local dir = sh("mktemp -d /tmp/concur-bench.XXXXXX"):gsub("%s+$", "")
local port = assert(tonumber(sh([[python3 -c "import socket; s=socket.socket(); ]] ..
  [[s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"]])), "no free port")
local base = "http://127.0.0.1:" .. port
writefile(dir .. "/2k.html", ("x"):rep(2048))
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
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, dir))
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

for _ = 1, 100 do
  if sh(("curl -s --noproxy '*' -o /dev/null -w '%%{http_code}' %s/p2k/1"):format(base)) == "200" then
    break
  end
  concur.sleep(0.05)
end

local function urls(n)
  local t = {}
  for i = 1, n do t[i] = ("%s/p2k/%d"):format(base, i) end
  return t
end

-- the runners --------------------------------------------------------------------

local function client()
  return fetch.Client { concurrency = CONC, per_host = CONC, retries = 0 }
end

local function get_all_run(list)
  local c <close> = client()
  c:get_all(urls(CONC))   -- warm the connections
  local t0 = concur.monotonic()
  local rs = c:get_all(list)
  local t = concur.monotonic() - t0
  for i = 1, #list do assert(rs[i].status == 200, "request failed") end
  return #list / t
end

local function tasks_run(list)
  local c <close> = client()
  c:get_all(urls(CONC))
  local ok = 0
  local t0 = concur.monotonic()
  concur.run(function()
    for i = 1, #list do
      concur.async(function()
        local resp = concur.await(c:get(list[i]))
        if resp.status == 200 then ok = ok + 1 end
      end)
    end
  end)
  local t = concur.monotonic() - t0
  assert(ok == #list, "requests failed")
  return #list / t
end

local function python_with(module)
  for _, py in ipairs { "python3", "/usr/bin/python3" } do
    if os.execute(("%s -c 'import %s' >/dev/null 2>&1"):format(py, module)) then return py end
  end
end

local aio_py = python_with("aiohttp")
local function aiohttp_run(n)
  if not aio_py then return nil end
  writefile(dir .. "/aio.py", ([[
import asyncio, time, aiohttp
urls = ["%s/p2k/%%d" %% i for i in range(%d)]
async def main():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=%d)) as s:
        async def get(u):
            async with s.get(u) as r:
                assert r.status == 200
                return len(await r.read())
        await asyncio.gather(*(get(u) for u in urls[:%d]))
        t0 = time.perf_counter()
        await asyncio.gather(*(get(u) for u in urls))
        print(len(urls) / (time.perf_counter() - t0))
asyncio.run(main())
]]):format(base, n, CONC, CONC))
  return tonumber(sh(aio_py .. " " .. dir .. "/aio.py 2>/dev/null"))
end

-- completion latency in a luv loop: one future at a time, so the figure is
-- the wake-up path (worker -> eventfd -> loop -> callback), not a queue
local function latency(n)
  local okuv, uv = pcall(require, "luv")
  if not okuv then return nil end
  local bridge = require "concur.luv"
  local pool <close> = concur.ThreadPool(1)
  local h = bridge.attach(uv)
  local lat, i = {}, 0
  local monotonic = concur.monotonic
  local function submit()
    i = i + 1
    pool:submit(function()   -- after a sleep, so the loop is asleep in epoll
      local c = require "concur"
      c.sleep(0.001)
      return c.monotonic()
    end):on_done(function(f)
      local now = monotonic()
      lat[#lat + 1] = (now - f:result()) * 1e6
      if i < n then submit() else h:close() end
    end)
  end
  submit()
  uv.run()
  table.sort(lat)
  return lat[(#lat + 1) // 2], lat[math.ceil(#lat * 0.99)]
end

-- run ------------------------------------------------------------------------------

local best = {}
local function keep(key, v)
  if v and (best[key] == nil or v > best[key]) then best[key] = v end
end

local ok, err = pcall(function()
  io.write(("coroutine tasks bench: %d x 2 KB pages from nginx on 127.0.0.1:%d, "
    .. "concurrency %d, %d CPUs, best of %d rounds\n\n"):format(PAGES, port, CONC,
    concur.cpu_count(), ROUNDS))
  local list = urls(PAGES)
  for _ = 1, ROUNDS do
    keep("tasks", tasks_run(list))
    keep("getall", get_all_run(list))
    keep("aio", aiohttp_run(PAGES))
  end
  best.lat50, best.lat99 = latency(1000)
end)
stop()
if not ok then error(err, 0) end

local function row(name, v, extra)
  io.write(("%-44s %10s pages/s   %s\n"):format(name, v and ("%.0f"):format(v) or "n/a",
    extra or ""))
end
row("concur tasks (one per URL, await client:get)", best.tasks,
  ("%.2fx of get_all%s"):format(best.tasks / best.getall,
    best.aio and (", %.1fx aiohttp"):format(best.tasks / best.aio) or ""))
row("client:get_all", best.getall)
row("Python asyncio + aiohttp (one coroutine per URL)", best.aio,
  aio_py and "" or "skipped: no python3 with aiohttp (apt-get install python3-aiohttp)")
if best.lat50 then
  io.write(("\ncompletion latency, ThreadPool worker -> on_done in a luv loop: "
    .. "median %.1f us, p99 %.1f us\n"):format(best.lat50, best.lat99))
else
  io.write("\ncompletion latency: skipped (no luv: apt-get install lua-luv)\n")
end
io.write(("\n(for information) the aims: tasks within 10%% of get_all (%.2fx here), "
  .. ">= 5x aiohttp (%s here), latency median under 50 us (%s here)\n"):format(
  best.tasks / best.getall, best.aio and ("%.1fx"):format(best.tasks / best.aio) or "n/a",
  best.lat50 and ("%.1f us"):format(best.lat50) or "n/a"))
