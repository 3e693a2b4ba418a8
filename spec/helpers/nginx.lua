--- A real nginx on 127.0.0.1 for the fetch specs that need what the Python
-- test server does not speak (HTTP/2).
--
-- `nginx.start{ tls = true, http2 = true, files = { ["/a.html"] = body } }`
-- runs nginx (one process, in the foreground, a generated configuration in
-- a temporary directory) on a free port, serving `files` as text/html; with
-- `tls` it speaks HTTPS with a throw-away self-signed certificate. Returns
-- a handle: `srv:url(path)`, `srv:log()` (the requests nginx logged: an
-- array of { conn, nreq, protocol, path }), `srv:stop()`. A watchdog kills
-- nginx when this process goes away.
local socket = require "socket"
local sync = require "helpers.sync"

local M = {}
M.__index = M

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function mypid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end

--- Is nginx installed?
function M.available()
  return sh("command -v nginx 2>/dev/null; ls /usr/sbin/nginx 2>/dev/null") ~= ""
end

local CONF = [[
worker_processes 1;
master_process off;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 512; }
http {
  log_format concur '$connection $connection_requests $server_protocol $request_uri';
  access_log %s/access.log concur;
  keepalive_requests 100000;
  http2_max_requests 100000;
  client_body_temp_path %s/tmp;
  proxy_temp_path %s/tmp;
  fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp;
  scgi_temp_path %s/tmp;
  default_type text/html;
  server {
    listen 127.0.0.1:%d%s;
    %s
    root %s/www;
  }
}
]]

--- Starts nginx; returns its handle.
function M.start(opts)
  opts = opts or {}
  local dir = sh("mktemp -d /tmp/concur-nginx.XXXXXX"):gsub("%s+$", "")
  local self = setmetatable({ dir = dir, tls = opts.tls }, M)
  os.execute(("mkdir -p %q %q"):format(dir .. "/www", dir .. "/tmp"))
  for path, body in pairs(opts.files or {}) do
    local sub = (dir .. "/www" .. path):match("^(.*)/[^/]*$")
    os.execute(("mkdir -p %q"):format(sub))
    writefile(dir .. "/www" .. path, body)
  end
  local tls = ""
  if opts.tls then
    assert(os.execute(("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
      .. "-subj /CN=127.0.0.1 -keyout %q -out %q >/dev/null 2>&1")
      :format(dir .. "/key.pem", dir .. "/cert.pem")), "openssl could not make a certificate")
    tls = ("ssl_certificate %s/cert.pem; ssl_certificate_key %s/key.pem;"):format(dir, dir)
  end
  local listen = (opts.tls and " ssl" or "") .. (opts.http2 and " http2" or "")
  for _ = 1, 10 do
    self.port = free_port()
    writefile(dir .. "/nginx.conf", CONF:format(dir, dir, dir, dir, dir, dir, dir, dir,
      self.port, listen, tls, dir))
    if self:launch() then
      self.base = (opts.tls and "https" or "http") .. "://127.0.0.1:" .. self.port
      return self
    end
  end
  error("nginx did not start: " .. sh(("cat %q"):format(dir .. "/error.log")))
end

-- Runs nginx; true once it accepts connections, false if it exited.
-- NOTE: without LD_PRELOAD, so a sanitizer run of the specs does not load
-- its runtime into nginx; the watchdog kills nginx if we die
function M:launch()
  local script = ([[exec 2>&1
env -u LD_PRELOAD nginx -c %s/nginx.conf -p %s </dev/null >/dev/null &
npid=$!
echo "PID $npid"
( while kill -0 %d 2>/dev/null && kill -0 $npid 2>/dev/null; do sleep 1; done
  kill -9 $npid 2>/dev/null ) </dev/null >/dev/null 2>&1 &
wait $npid]]):format(self.dir, self.dir, mypid())
  local p = assert(io.popen("sh -c '" .. script:gsub("'", "'\\''") .. "'", "r"))
  self.pid = tonumber((p:read("l") or ""):match("^PID (%d+)"))
  local up = false
  sync.wait_until(function()
    local c = socket.tcp()
    c:settimeout(1)
    up = c:connect("127.0.0.1", self.port) == 1
    c:close()
    return up or not os.execute(("kill -0 %d 2>/dev/null"):format(self.pid))
  end, 20)
  if up then
    self.pipe = p
    return true
  end
  p:close()
  return false
end

--- The URL of a path on this server.
function M:url(path)
  return self.base .. path
end

--- The requests logged so far (waiting until there are at least `n`):
-- an array of { conn = connection serial, nreq = its request count,
-- protocol = "HTTP/1.1" | "HTTP/2.0", path }.
function M:log(n)
  local out
  sync.wait_until(function()
    out = {}
    local f = io.open(self.dir .. "/access.log")
    if f then
      for line in f:lines() do
        local conn, nreq, proto, path = line:match("^(%d+) (%d+) (%S+) (%S+)$")
        if conn then
          out[#out + 1] = { conn = tonumber(conn), nreq = tonumber(nreq), protocol = proto,
            path = path }
        end
      end
      f:close()
    end
    return #out >= (n or 0)
  end, 10)
  return out
end

--- Forgets the log.
function M:reset()
  writefile(self.dir .. "/access.log", "")
end

--- Stops nginx and removes its directory.
function M:stop()
  if self.pipe then
    os.execute(("kill %d 2>/dev/null"):format(self.pid))
    self.pipe:read("a")
    self.pipe:close()
    self.pipe = nil
  end
  os.execute(("rm -rf %q"):format(self.dir))
end

return M
