--- Shared helpers for concur's specs.
local helpers = {}

local concur = require "concur"
helpers.concur = concur

--- Calls fn(...) expecting a concur error; returns it.
-- Fails the spec when fn succeeds or raises something else.
function helpers.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  assert(concur.Error.is(err), "expected a concur.Error, got: " .. tostring(err))
  return err
end

--- Asserts that fn(...) raises a concur error of the given kind whose
-- message matches the (plain) text, when given.
function helpers.raises(kind, text, fn, ...)
  local err = helpers.error_of(fn, ...)
  assert(err.kind == kind, ("expected kind %q, got %q (%s)"):format(kind,
    tostring(err.kind), tostring(err.message)))
  if text then
    assert(tostring(err.message):find(text, 1, true),
      ("expected message containing %q, got %q"):format(text, tostring(err.message)))
  end
  return err
end

--- The number of OS threads of this process.
function helpers.thread_count()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("Threads:%s*(%d+)"))
end

--- Runs a Lua snippet in a fresh lua5.4 process with this checkout's
-- paths; returns ok, exit code, output (stdout and stderr). The process is
-- killed after 'limit' seconds (so a hang fails the spec, never blocks it).
-- 'env' (optional) adds environment variables; 'shell' (optional) is a
-- shell command run first in the same shell (e.g. "ulimit -v 400000").
function helpers.run_lua(code, limit, env, shell)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write(code)
  f:close()
  local lua = os.getenv("CONCUR_LUA") or "lua5.4"   -- a sanitized one in make check
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = ("%s=%q"):format(k, tostring(v)) end
  local cmd = ("%s LUA_PATH=%q LUA_CPATH=%q %s timeout -s KILL %d %s %s 2>&1; echo \"exit=$?\"")
    :format(shell and (shell .. ";") or "", package.path, package.cpath,
      table.concat(vars, " "), limit or 20, lua, tmp)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  os.remove(tmp)
  local code_ = tonumber(out:match("exit=(%d+)%s*$"))
  return code_ == 0, code_, out:gsub("exit=%d+%s*$", "")
end

--- Starts a Lua snippet in a fresh lua5.4 process, as run_lua does, and
-- returns a handle at once: h:line() reads the next line of its output
-- (stdout and stderr; nil at the end), h:finish() reads the rest and
-- returns exit code, output. The process is killed after 'limit' seconds.
function helpers.start_lua(code, limit)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write(code)
  f:close()
  local lua = os.getenv("CONCUR_LUA") or "lua5.4"
  local cmd = ("LUA_PATH=%q LUA_CPATH=%q timeout -s KILL %d %s %s 2>&1; echo \"exit=$?\"")
    :format(package.path, package.cpath, limit or 20, lua, tmp)
  local h = { pipe = io.popen(cmd), out = {} }
  function h:line()
    local l = self.pipe:read("l")
    if l then self.out[#self.out + 1] = l end
    return l
  end
  function h:finish()
    self.out[#self.out + 1] = self.pipe:read("a")
    self.pipe:close()
    os.remove(tmp)
    local out = table.concat(self.out, "\n")
    return tonumber(out:match("exit=(%d+)%s*$")), (out:gsub("exit=%d+%s*$", ""))
  end
  return h
end

--- True when the suite runs under valgrind (tools/valgrind.sh sets
-- CONCUR_VALGRIND=1), which runs one thread at a time, 20-50 times slower.
helpers.valgrind = os.getenv("CONCUR_VALGRIND") == "1"

--- 'full', or 'small' under valgrind: for specs whose size only adds time
-- there. 'small' must still take every path that 'full' takes (the same
-- thresholds crossed), so valgrind checks the same code on less data.
function helpers.size(full, small)
  if helpers.valgrind then return small end
  return full
end

--- How much longer than on a plain run a prompt reaction may take here:
-- valgrind runs one thread at a time, 20-50 times slower; the sanitizers
-- several times slower. A spec that asserts "within 0.1 s" (a cancel, a
-- timeout) asserts "within helpers.prompt(0.1)", so it checks the same
-- promptness on a plain run and stays true under the checkers.
function helpers.prompt(seconds)
  if helpers.valgrind then return seconds * 40 end
  if os.getenv("CONCUR_SANITIZER") then return seconds * 5 end
  return seconds
end

return helpers
