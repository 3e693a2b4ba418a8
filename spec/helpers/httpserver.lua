--- A real HTTP/1.1 server on 127.0.0.1 for the fetch specs.
--
-- `httpserver.start()` runs spec/helpers/httpserver.py (Python's stdlib
-- ThreadingHTTPServer) on a port the kernel picks, and returns a handle:
-- `srv:url(path)`, `srv:log()` (the requests the server saw, with its own
-- monotonic timestamps), `srv:reset()`, `srv:robots(text)`, `srv:stop()`.
-- The server also exits by itself when this process goes away.
-- The control calls use the curl command line, not the code under test.
local M = {}
M.__index = M

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec/helpers"

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

--- Starts a server; returns its handle. opts.tls: HTTPS with a
-- self-signed certificate.
function M.start(opts)
  local tls = opts and opts.tls
  -- NOTE: without LD_PRELOAD, so a sanitizer run of the specs does not
  -- load its runtime into python or curl
  local p = assert(io.popen("exec env -u LD_PRELOAD python3 " .. here ..
    "/httpserver.py" .. (tls and " --tls" or ""), "r"))
  local line = p:read("l") or ""
  local port, pid = line:match("^PORT (%d+) PID (%d+)")
  assert(port, "test server did not start: " .. line)
  return setmetatable({ port = tonumber(port), pid = tonumber(pid), pipe = p,
    base = (tls and "https" or "http") .. "://127.0.0.1:" .. port }, M)
end

--- The URL of a path on this server.
function M:url(path)
  return self.base .. path
end

--- GETs a control path with the curl command line; returns the body.
function M:control(path)
  return sh(("env -u LD_PRELOAD curl -sk --noproxy '*' %q")
    :format(self.base .. path))
end

--- The requests seen since the last reset: an array of { t, method, path }
-- (t: the server's monotonic clock, seconds). `filter` is a Lua pattern
-- the path must match.
function M:log(filter)
  local out = {}
  for t, method, path in self:control("/_log"):gmatch("(%S+) (%S+) (%S+)\n") do
    if not filter or path:match(filter) then
      out[#out + 1] = { t = tonumber(t), method = method, path = path }
    end
  end
  return out
end

--- Clears the log and the flaky counters.
function M:reset()
  self:control("/_reset")
end

--- Sets robots.txt (nil: 404 again; "STATUS 503": that status).
function M:robots(text)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(text or "")
  f:close()
  sh(("env -u LD_PRELOAD curl -sk --noproxy '*' --data-binary @%s %q")
    :format(tmp, self.base .. "/_robots"))
  os.remove(tmp)
end

--- Sets the /s/ site: path -> { status = n, headers = { {name, value}, ... },
-- body = s } (see httpserver.py).
function M:site(pages)
  local cjson = require "cjson"
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(cjson.encode(pages))
  f:close()
  sh(("env -u LD_PRELOAD curl -sk --noproxy '*' --data-binary @%s %q")
    :format(tmp, self.base .. "/_site"))
  os.remove(tmp)
end

--- Stops the server (by its own pid) and reaps it.
function M:stop()
  if self.pipe then
    os.execute(("kill %d 2>/dev/null"):format(self.pid))
    self.pipe:close()
    self.pipe = nil
  end
end

--- Start times (seconds) of the logged requests, sorted.
function M.times(log)
  local ts = {}
  for i, e in ipairs(log) do ts[i] = e.t end
  table.sort(ts)
  return ts
end

--- The rate of the starts (per second): the least-squares slope of start
-- time against index, so one late-logged request cannot skew it.
function M.rate(ts)
  local n, sx, sy, sxx, sxy = #ts, 0, 0, 0, 0
  for i, t in ipairs(ts) do
    sx, sy, sxx, sxy = sx + i, sy + t, sxx + i * i, sxy + i * t
  end
  local slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
  return 1 / slope
end

--- The most starts in any window of length w.
function M.max_in_window(ts, w)
  local best, j = 0, 1
  for i = 1, #ts do
    while ts[i] - ts[j] >= w do j = j + 1 end
    if i - j + 1 > best then best = i - j + 1 end
  end
  return best
end

return M
