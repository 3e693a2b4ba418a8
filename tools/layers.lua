-- tools/layers.lua: checks the C's layering, for `make lint`.
--
--   * csrc/core/ is the Lua-free bottom: its files include only each other
--     and system or library headers, never Lua's or the binding's;
--   * csrc/core/result.h (every result code) and wait.h are the bottom
--     layer of the core: result.h includes no concur header, wait.h only
--     result.h;
--   * no circle of includes: the headers of csrc/ and csrc/core/ form a
--     directed acyclic graph.
--
-- Usage: lua5.4 tools/layers.lua [root]   (root defaults to ".")
-- Prints each violation and exits 1 when there is one.
local root = arg[1] or "."

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- "a/b/../c.h" -> "a/c.h"
local function clean(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." and #parts > 0 and parts[#parts] ~= ".." then parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return table.concat(parts, "/")
end

local files = lines_of(("cd %q && ls csrc/*.c csrc/*.h csrc/core/*.c csrc/core/*.h 2>/dev/null")
                       :format(root))
local known = {}
for _, f in ipairs(files) do known[f] = true end

local errors = {}
local function fail(fmt, ...) errors[#errors + 1] = fmt:format(...) end

local includes = {}   -- file -> array of included concur files
for _, f in ipairs(files) do
  local fh = assert(io.open(root .. "/" .. f))
  local list = {}
  local n = 0
  for l in fh:lines() do
    n = n + 1
    local q = l:match('^%s*#%s*include%s*"([^"]+)"')
    local sys = l:match("^%s*#%s*include%s*<([^>]+)>")
    local in_core = f:find("^csrc/core/") ~= nil
    if q then
      local target = clean(dirname(f) .. "/" .. q)
      if not known[target] then
        fail("%s:%d: includes %q, which is not a file of csrc/", f, n, q)
      else
        list[#list + 1] = target
        if in_core and not target:find("^csrc/core/") then
          fail("%s:%d: the core includes %s from the binding above it", f, n, target)
        end
        if f == "csrc/core/result.h" or (f == "csrc/core/wait.h" and target ~= "csrc/core/result.h") then
          fail("%s:%d: %s is the core's bottom layer and includes no concur header%s", f, n,
               f:match("[^/]*$"), f:find("wait") and " but result.h" or "")
        end
      end
    elseif sys and in_core and (sys:find("^lua") or sys:find("^lauxlib") or sys:find("^lualib")) then
      fail("%s:%d: the core includes Lua's <%s>", f, n, sys)
    end
  end
  fh:close()
  includes[f] = list
end

-- Circles among the headers: depth-first search with colours.
local colour, stack = {}, {}
local function visit(h)
  colour[h] = "grey"
  stack[#stack + 1] = h
  for _, t in ipairs(includes[h] or {}) do
    if t:find("%.h$") then
      if colour[t] == "grey" then
        local from
        for i, s in ipairs(stack) do if s == t then from = i end end
        fail("include circle: %s -> %s", table.concat(stack, " -> ", from), t)
      elseif not colour[t] then
        visit(t)
      end
    end
  end
  stack[#stack] = nil
  colour[h] = "black"
end
for _, f in ipairs(files) do
  if f:find("%.h$") and not colour[f] then visit(f) end
end

if #errors > 0 then
  for _, e in ipairs(errors) do io.stderr:write(e, "\n") end
  os.exit(1)
end
print(("layers: %d files, core Lua-free, no include circles"):format(#files))
