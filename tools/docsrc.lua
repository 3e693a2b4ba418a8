-- lua5.4 tools/docsrc.lua OUTDIR FILE...: writes what LDoc reads for
-- `make docs` (config.ld) into OUTDIR, from the Lua modules and the C
-- bindings.
--
-- A C file becomes a stub module "core.NAME" (core.c: "core"). LDoc's own C
-- mode documents C functions (queue_put (L), returning static int), not the
-- Lua API they implement; here the file's opening comment is the module's
-- description, and each /*** ... */ comment a function named by the first
-- call it shows ("q:put(v)" gives q:put), or else by the C function below
-- it (the metamethods: "a + b." above bigint_add).
--
-- A Lua file is copied with two changes to its comments only: "-->" becomes
-- an arrow, since LDoc drops an item whose text holds "--" (pool:map would
-- vanish), and a banner line of dashes becomes a plain comment.
local outdir = assert(arg[1], "usage: lua5.4 tools/docsrc.lua OUTDIR FILE...")

local function slurp(name)
  local f = assert(io.open(name))
  local s = f:read("a")
  f:close()
  return s
end

local function write(name, s)
  local f = assert(io.open(outdir .. "/" .. name, "w"))
  f:write(s)
  f:close()
end

-- The text of a block comment: without its /* */ and the ** of each line.
local function text_of(block)
  local lines = {}
  for line in (block .. "\n"):gmatch("(.-)\n") do
    line = line:gsub("^%s*/%*+", ""):gsub("%*/%s*$", ""):gsub("^%s*%*%*? ?", "")
    lines[#lines + 1] = line
  end
  return (table.concat(lines, "\n"):gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Comment text for LDoc: HTML-escaped ("<close>", "a < b"), with arrows,
-- each line behind "-- " (the first behind "--- ").
local function comment(text)
  text = text:gsub("[<>&]", { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;" })
  text = text:gsub("%-%-&gt;", "&rarr;")
  return "--- " .. text:gsub("\n", "\n-- ")
end

-- The stub of one C file, or nil when it documents nothing.
local function c_stub(src, modname)
  local head = src:match("^%s*(/%*.-%*/)")
  local out = { comment(head and text_of(head) or modname), "-- @module " .. modname }
  local n = 0
  for block, after in src:gmatch("(/%*%*%*.-%*/)%s*([^\n]*)") do
    local text = text_of(block)
    local name = text:match("^[^\n]*"):match("([%a_][%w_%.:]*)[%({]")
      or after:match("([%a_][%w_]*)%s*%(") or ("item" .. n + 1)
    n = n + 1
    out[#out + 1] = ""
    out[#out + 1] = comment(text)
    out[#out + 1] = "-- @function " .. name
  end
  return n > 0 and table.concat(out, "\n") .. "\n" or nil
end

-- A Lua module with its comments adjusted for LDoc (see above).
local function lua_copy(src)
  local out = {}
  for line in (src .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*%-%-%-%-%-%-+%s*$") then
      line = "--"
    elseif line:match("^%s*%-%-") then
      line = line:gsub("(%S)%s*%-%->", "%1 \u{2192}")
    end
    out[#out + 1] = line
  end
  return table.concat(out, "\n")
end

for i = 2, #arg do
  local name = arg[i]
  local base = name:match("([^/]+)%.c$")
  if base then
    local modname = base == "core" and "core" or "core." .. base
    local s = c_stub(slurp(name), modname)
    if s then write(modname .. ".lua", s) end
  else
    write((name:gsub("^src/", ""):gsub("/", ".")), lua_copy(slurp(name)))
  end
end
