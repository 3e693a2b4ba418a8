--- A real redis-server on 127.0.0.1 for the cluster specs and benches.
--
-- `redis.start{ password = nil, user = nil, fsync = "always" }` runs
-- redis-server on a free port with a temporary directory and `appendonly
-- yes` (by default with an fsync at every write, so what Redis acknowledged
-- survives any restart; "everysec" is Redis' own default, for benches), and
-- returns a handle:
-- `srv.url`, `srv.port`, `srv.dir`, `srv:stop()` (graceful: Redis writes
-- out its append-only file and exits), `srv:kill()` (SIGKILL),
-- `srv:restart()` (after stop or kill: on the same port and directory, so
-- it reloads its data), `srv:close()` (stop, then remove the directory). The server is
-- also killed when this process goes away.
local M = {}
M.__index = M

local socket = require "socket"

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

-- A TCP port of 127.0.0.1 nobody listens on now.
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

--- Starts a server; returns its handle.
function M.start(opts)
  opts = opts or {}
  local self = setmetatable({ password = opts.password, user = opts.user,
    fsync = opts.fsync or "always",
    dir = sh("mktemp -d /tmp/concur-redis.XXXXXX"):gsub("%s+$", "") }, M)
  for _ = 1, 10 do
    self.port = free_port()
    if self:launch() then
      local auth = ""
      if self.password then
        auth = (self.user or "") .. ":" .. self.password .. "@"
      end
      self.url = ("redis://%s127.0.0.1:%d/0"):format(auth, self.port)
      return self
    end
  end
  error("redis-server did not start")
end

-- Starts the server on its port and directory; true when it is ready.
function M:launch()
  local conf = { "--port", self.port, "--bind", "127.0.0.1", "--dir", self.dir,
    "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "''",
    "--daemonize", "no", "--logfile", "''", "--protected-mode", "no" }
  if self.password then
    if self.user then
      conf[#conf + 1] = ("--user %s on '>%s' '~*' '&*' '+@all' --user default off")
        :format(self.user, self.password)
    else
      conf[#conf + 1] = "--requirepass " .. self.password
    end
  end
  -- NOTE: without LD_PRELOAD, so a sanitizer run of the specs does not
  -- load its runtime into redis; the watchdog kills redis if we die
  local script = ([[exec 2>&1
env -u LD_PRELOAD redis-server %s &
rpid=$!
echo "PID $rpid"
( while kill -0 %d 2>/dev/null && kill -0 $rpid 2>/dev/null; do sleep 1; done
  kill -9 $rpid 2>/dev/null ) </dev/null >/dev/null 2>&1 &
wait $rpid]]):format(table.concat(conf, " "), mypid())
  local p = assert(io.popen("sh -c '" .. script:gsub("'", "'\\''") .. "'", "r"))
  self.pid = tonumber((p:read("l") or ""):match("^PID (%d+)"))
  for line in p:lines() do
    if line:find("Ready to accept connections", 1, true) then
      self.pipe = p
      return true
    end
  end
  p:close()
  return false
end

-- Waits for the server process to end (its output pipe to close).
function M:wait()
  if self.pipe then
    self.pipe:read("a")
    self.pipe:close()
    self.pipe = nil
  end
end

--- Stops the server gracefully (SIGTERM: it writes out its data and exits).
function M:stop()
  if self.pipe then
    os.execute("kill -TERM " .. self.pid)
    self:wait()
  end
end

--- Starts the server again (after stop or kill), on its port and directory.
function M:restart()
  assert(self:launch(), "redis-server did not restart")
end

--- Kills the server (SIGKILL).
function M:kill()
  if self.pipe then
    os.execute("kill -KILL " .. self.pid)
    self:wait()
  end
end

--- Stops the server and removes its directory.
function M:close()
  self:stop()
  os.execute(("rm -rf %q"):format(self.dir))
end

return M
