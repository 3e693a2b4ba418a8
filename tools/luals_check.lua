-- Checks the Lua Language Server definitions in library/ against what
-- concur exports at run time (make lint runs it with the build on the
-- module paths: bin/lua tools/luals_check.lua).
--
-- The public surface is found, not listed: every module lua/concur/*.lua
-- (concur, concur.fetch, ...; none is internal unless INTERNAL_MODULES says
-- so), each module's fields (names starting with "_" are private, but for
-- _VERSION) and the fields of the plain tables among them (concur.Error's),
-- and every class whose metatable concur registers ("concur.Queue",
-- "concur.fetch.Client", ...) with the methods core.methods(name) gives
-- (names starting with "__" are metamethods). It fails when any of them
-- lacks a definition, and when a definition names a function the module or
-- class does not have (a stale or misspelt one).
--
-- How the definition files are read (library/**.lua, LuaLS's ---@meta
-- files): `---@meta NAME` names the module a file defines, and `return X`
-- its table. `---@class NAME[: PARENT, ...]` followed by `local X = {}`
-- binds X to the class; `---@field name` lines under a @class, `function
-- X.name(` / `function X:name(`, and `X.name = ...` define members of X
-- (and of its class). `X.name = Y` with Y a local of the file also makes
-- Y's members those of X.name.
--
-- A new module: add library/concur/NAME.lua with `---@meta concur.NAME`.
-- A new class: a `---@class concur.Name` with its methods, in the file of
-- the module that makes it. An internal one (never handed to users): add
-- it to INTERNAL_CLASSES below, saying why.

-- Classes users never hold.
local INTERNAL_CLASSES = {
  ["concur.waitset"] = "the wait set behind concur.wait and as_completed",
  ["concur.QueueSlot"] = "a Queue's decode buffer, in the registry",
  ["concur.MapSnapshot"] = "the snapshot behind a Map's keys() and pairs()",
  ["concur.fetch.Batch"] = "the batch behind client:get_all",
  ["concur.fetch.Stream"] = "the completions fetch.Crawler waits on",
  ["concur.html.LinkCache"] = "fetch.Crawler's cache of joined links (core.html.linkcache)",
  -- made by concur.core's redis() and cluster_key() only, for concur.cluster's
  -- Lua layer; a class that module hands to users gets its definition
  ["concur.Redis"] = "concur.cluster's connection, made by core.redis",
  ["concur.cluster.Key"] = "concur.cluster's signing key, made by core.cluster_key",
  ["concur.hub"] = "the box of a state's completion fd, in the registry",
  ["concur.bell"] = "the descriptor behind Future:pollfd and Task:pollfd",
}
-- Modules users never require.
local INTERNAL_MODULES = {
  ["concur.task"] = "the scheduler behind concur.run, async, await and poll",
}

local root = (arg and arg[0] or ""):match("^(.*)/tools/[^/]*$") or "."

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

---------------------------------------------------------------------------
-- The definitions
---------------------------------------------------------------------------

local classes = {}   -- name -> { members = {}, parents = {}, fns = {}, file }
local modules = {}   -- module name -> { file, var = vars entry }

local function class(name, file)
  local c = classes[name]
  if not c then
    c = { name = name, members = {}, parents = {}, fns = {}, file = file }
    classes[name] = c
  end
  return c
end

local function parse(file)
  local chunk, err = loadfile(file)   -- definitions are Lua too
  if not chunk then error("luals_check: " .. err, 0) end
  local f = assert(io.open(file))
  local vars = {}     -- local name -> { members, links, class, fns }
  local function var(name)
    vars[name] = vars[name] or { members = {}, links = {}, fns = {} }
    return vars[name]
  end
  local meta, ret, pending, fieldsof
  local n = 0
  for line in f:lines() do
    n = n + 1
    local m = line:match("^%-%-%-@meta%s+([%w_.]+)")
    if m then meta = m end
    local cname, parents = line:match("^%-%-%-@class%s+([%w_.]+)%s*:?%s*(.*)$")
    if cname then
      pending = class(cname, file)
      fieldsof = pending
      for p in parents:gmatch("[%w_.]+") do pending.parents[#pending.parents + 1] = p end
    end
    local field = line:match("^%-%-%-@field%s+([%w_]+)")
    if field and fieldsof then fieldsof.members[field] = true end
    if not line:match("^%-%-%-") then fieldsof = nil end
    local lname = line:match("^local%s+([%w_]+)%s*=%s*{%s*}")
    if lname then
      local v = var(lname)
      if pending then v.class = pending; pending = nil end
    end
    local owner, sep, fname = line:match("^function%s+([%w_]+)([.:])([%w_]+)%s*%(")
    if owner then
      local v = var(owner)
      v.members[fname] = true
      v.fns[fname] = n
      if v.class then
        v.class.members[fname] = true
        v.class.fns[fname] = sep
      end
    end
    local aowner, aname, rhs = line:match("^([%w_]+)%.([%w_]+)%s*=%s*(.-)%s*$")
    if aowner and vars[aowner] then
      local v = vars[aowner]
      v.members[aname] = true
      if v.class then v.class.members[aname] = true end
      if rhs:match("^[%w_]+$") then v.links[aname] = rhs end
    end
    local r = line:match("^return%s+([%w_]+)%s*$")
    if r then ret = r end
  end
  f:close()
  if meta then
    assert(ret and vars[ret], file .. ": a ---@meta file must end with `return X`, X a local table")
    modules[meta] = { file = file, var = vars[ret], vars = vars }
  end
end

for _, file in ipairs(lines_of(("find %q -name '*.lua' | LC_ALL=C sort"):format(root .. "/library"))) do
  parse(file)
end

-- Does class c (or a parent) have member name?
local function has(c, name, seen)
  if not c then return false end
  seen = seen or {}
  if seen[c] then return false end
  seen[c] = true
  if c.members[name] then return true end
  for _, p in ipairs(c.parents) do
    if has(classes[p], name, seen) then return true end
  end
  return false
end

local function var_has(v, name)
  return v.members[name] or (v.class ~= nil and has(v.class, name))
end

---------------------------------------------------------------------------
-- The run time, against the definitions
---------------------------------------------------------------------------

local problems = {}
local function problem(fmt, ...) problems[#problems + 1] = fmt:format(...) end

local modnames = {}
for _, f in ipairs(lines_of(("ls %q/lua/concur/*.lua"):format(root))) do
  local name = "concur." .. f:match("([%w_]+)%.lua$")
  if name == "concur.init" then name = "concur" end
  if not INTERNAL_MODULES[name] then modnames[#modnames + 1] = name end
end
table.sort(modnames)

local loaded = {}
for _, name in ipairs(modnames) do
  local ok, mod = pcall(require, name)
  if not ok then
    problem("%s: cannot be loaded to check it: %s", name, (tostring(mod):match("^[^\n]*")))
  else
    loaded[name] = mod
  end
end
local is_module = {}
for _, mod in pairs(loaded) do is_module[mod] = true end

local function public(k)
  return type(k) == "string" and (k == "_VERSION" or not k:match("^_"))
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do if type(k) == "string" then ks[#ks + 1] = k end end
  table.sort(ks)
  return ks
end

for _, name in ipairs(modnames) do
  local mod, def = loaded[name], modules[name]
  if mod ~= nil and not def then
    problem("%s: no definitions: add library/%s.lua starting with `---@meta %s`",
      name, name:gsub("%.", "/"), name)
  elseif type(mod) == "table" and def then
    local v = def.var
    for _, k in ipairs(sorted_keys(mod)) do
      if public(k) then
        if not var_has(v, k) then
          problem("%s.%s: no definition in %s", name, k, def.file)
        elseif type(mod[k]) == "table" and not is_module[mod[k]] and v.links[k] then
          -- a plain table of the module (concur.Error): its fields too
          local sub = def.vars[v.links[k]]
          for _, j in ipairs(sorted_keys(mod[k])) do
            if not j:match("^__") and public(j) and sub and not var_has(sub, j) then
              problem("%s.%s.%s: no definition in %s", name, k, j, def.file)
            end
          end
        end
      end
    end
    -- definitions of functions the module does not have
    for fname, lineno in pairs(v.fns) do
      if mod[fname] == nil then
        problem("%s:%d: defines %s.%s, which the module does not have", def.file, lineno, name, fname)
      end
    end
  end
end

local core = require "concur.core"
local runtime = {}
for k, mt in pairs(debug.getregistry()) do
  if type(k) == "string" and k:match("^concur") and type(mt) == "table" and mt.__name == k then
    runtime[#runtime + 1] = k
  end
end
table.sort(runtime)
for _, cname in ipairs(runtime) do
  if not INTERNAL_CLASSES[cname] then
    local c = classes[cname]
    local ok, methods = pcall(core.methods, cname)
    if not ok or type(methods) ~= "table" then methods = {} end
    if not c then
      problem("class %s: no definition: add `---@class %s` and its methods to library/", cname, cname)
    else
      for _, m in ipairs(sorted_keys(methods)) do
        if not m:match("^__") and not has(c, m) then
          problem("%s:%s: no definition (in %s)", cname, m, c.file)
        end
      end
      for fname, sep in pairs(c.fns) do
        if sep == ":" and methods[fname] == nil then
          problem("%s:%s is defined in %s, but the class has no such method", cname, fname, c.file)
        end
      end
    end
  end
end

if #problems > 0 then
  table.sort(problems)
  io.stderr:write("luals_check: the definitions in library/ do not match what concur exports:\n")
  for _, p in ipairs(problems) do io.stderr:write("  ", p, "\n") end
  os.exit(1)
end
local nclasses, nmods = 0, #modnames
for _, cname in ipairs(runtime) do if not INTERNAL_CLASSES[cname] then nclasses = nclasses + 1 end end
print(("luals_check: %d modules and %d classes have their definitions in library/"):format(nmods, nclasses))
