-- lua5.4 tools/docsrc.lua OUTDIR FILE...: writes what LDoc reads for
-- `make docs` (config.ld) into OUTDIR, from the Lua modules and the C
-- bindings.
--
-- Pages are named by the modules users require (concur, concur.fetch,
-- concur.bigint, ...): a module's page is its Lua file, then one section
-- per C binding file that belongs to it (fetch.c, html.c and url.c to
-- concur.fetch, ...). LDoc's own C mode documents C functions (queue_put
-- (L), returning static int), not the Lua API they implement; here a C
-- file's opening comment is its section's text, and each /*** ... */
-- comment a function named by the first call it shows ("q:put(v)" gives
-- q:put), or else by the C function below it (the metamethods: "a + b."
-- above bigint_add).
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
  text = text:gsub("%-%-&gt;", "&rarr;"):gsub("__", "\\_\\_")
  return "--- " .. text:gsub("\n", "\n-- ")
end

-- The module users require for what a C file documents: its first part
-- before a digit or the end ("cluster" for clusterpool.c).
local OWNER = {
  bigint = "concur.bigint",
  fetch = "concur.fetch", html = "concur.fetch", url = "concur.fetch",
  cluster = "concur.cluster", redis = "concur.cluster",
}
local function owner(base)
  for prefix, mod in pairs(OWNER) do
    if base:sub(1, #prefix) == prefix then return mod end
  end
  return "concur"
end

-- The section of one C file, or nil when it documents nothing for users:
-- the file's opening comment is the section's text, each /*** ... */
-- comment a function named by the first call it shows, or else by the C
-- function below it. Functions of the core module itself ("core.x"), for
-- concur's own Lua layer, are left out.
local function c_section(src, base)
  local head = src:match("^%s*(/%*.-%*/)")
  local text = head and text_of(head):gsub("^[%w_]+%.c:%s*", "") or base
  local out = { "", comment(text), "-- @section " .. base }
  local n = 0
  for block, after in src:gmatch("(/%*%*%*.-%*/)%s*([^\n]*)") do
    local ftext = text_of(block)
    local name = ftext:match("^[^\n]*"):match("([%a_][%w_%.:]*)[%({]")
      or after:match("([%a_][%w_]*)%s*%(") or ("item" .. n + 1)
    if not name:match("^core[%.:]") then
      n = n + 1
      out[#out + 1] = ""
      out[#out + 1] = comment(ftext)
      out[#out + 1] = "-- @function " .. name
    end
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

-- Each module's page: its Lua file, then a section per C file it owns.
local pages, order = {}, {}
for i = 2, #arg do
  local name = arg[i]
  local base = name:match("([^/]+)%.c$")
  if not base then
    local mod = name:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", "."):gsub("%.init$", "")
    pages[mod] = pages[mod] or {}
    table.insert(pages[mod], 1, lua_copy(slurp(name)))
    order[#order + 1] = mod
  end
end
for i = 2, #arg do
  local name = arg[i]
  local base = name:match("([^/]+)%.c$")
  if base then
    local mod = owner(base)
    local s = c_section(slurp(name), base)
    if s and pages[mod] then table.insert(pages[mod], s) end
  end
end
for _, mod in ipairs(order) do
  write(mod .. ".lua", table.concat(pages[mod], "\n"))
end
