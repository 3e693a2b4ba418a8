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
function helpers.run_lua(code, limit)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write(code)
  f:close()
  local lua = os.getenv("CONCUR_LUA") or "lua5.4"   -- a sanitized one in make check
  local cmd = ("LUA_PATH=%q LUA_CPATH=%q timeout -s KILL %d %s %s 2>&1; echo \"exit=$?\"")
    :format(package.path, package.cpath, limit or 20, lua, tmp)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  os.remove(tmp)
  local code_ = tonumber(out:match("exit=(%d+)%s*$"))
  return code_ == 0, code_, out:gsub("exit=%d+%s*$", "")
end

--- A CPU-bound function: counts the primes in lo..hi (used as real work).
-- The benchmarks' own (bench/benchlib.lua), so both measure the same work.
helpers.count_primes = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "")
  .. "../bench/benchlib.lua").count_primes

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

return helpers
