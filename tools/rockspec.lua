-- Writes concur's rockspecs from the tree, so the rock never misses a file:
-- concur-scm-1.rockspec (development: `luarocks make` in a checkout) and
-- rockspecs/concur-<version>-1.rockspec (the release that `make dist`
-- packs), the version taken from CONCUR_VERSION in csrc/concur.h.
-- Every tracked csrc/*.c and lua/concur/*.lua is listed, and
-- bin/concur-worker when it exists. `make rockspec` writes them, `make lint`
-- checks they are current.
--
--   lua5.4 tools/rockspec.lua [OUTDIR]   (default: the checkout's root)

-- The C libraries concur.core links: the luarocks variable prefix, the
-- library name and, when its headers sit in a folder of their own below
-- the include directory, that folder. A new one goes here (and in the
-- Makefile's LIBS).
local EXTERNAL = {
  { "CURL", "curl" },
  { "GMP", "gmp" },
  { "HIREDIS", "hiredis" },
  { "CRYPTO", "crypto" },
  { "XML2", "xml2", "libxml2" },
}
-- System libraries that need no search.
local SYSLIBS = { "pthread", "dl" }

-- The tracked files matching a pattern (work in progress stays out).
local function ls(pattern)
  local p = assert(io.popen("git ls-files -- '" .. pattern .. "' 2>/dev/null | LC_ALL=C sort"))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local function version()
  local f = assert(io.open("csrc/concur.h"))
  local v = f:read("a"):match('#define%s+CONCUR_VERSION%s+"concur ([%d.]+)"')
  f:close()
  return assert(v, "no CONCUR_VERSION in csrc/concur.h")
end

-- The rockspec's text for one version ("scm" or "x.y.z").
local function rockspec(ver)
  local out = {}
  local function w(s) out[#out + 1] = s end
  local release = ver ~= "scm"
  w('-- Written by tools/rockspec.lua (make rockspec): edit that, not this.')
  w('rockspec_format = "3.0"')
  w('package = "concur"')
  w(('version = "%s-1"'):format(ver))
  if release then
    w([[-- The project's public source address is not known yet. Until it is,
-- source.url names the archive that `make dist` makes from the tree (git
-- archive), which the source rock carries: concur-]] .. ver .. [[-1.src.rock
-- installs offline. When the project is published, put the archive's real
-- URL (and its md5) here.]])
    w(('source = { url = "concur-%s.tar.gz", dir = "concur-%s" }'):format(ver, ver))
  else
    w([[-- For `luarocks make` in a checkout, which builds the tree it stands in.
-- The project's public repository address is not known yet: put it here
-- (git+https://...) when it is.]])
    w('source = { url = "." }')
  end
  w([[description = {
  summary = "Thread and process pools, futures, queues, locks, HTTP fetching and bigints for Lua 5.4",
  detailed = [==[
concur gives Lua 5.4 what Python has in threading, multiprocessing, queue and
concurrent.futures: a thread pool and a process pool behind one futures API,
threads, queues, locks, conditions, events, semaphores, barriers, atomic values,
a rate-limited concurrent HTTP fetcher on libcurl, and GMP big integers.
]==],
  license = "MIT",
  -- homepage: the project's public address is not known yet; until it is,
  -- the README in the rock (doc/README.md) is its front page.
  labels = { "concurrency", "threads", "futures" },
}
-- Futexes, memfd shared memory, /proc and posix_spawn: Linux only.
supported_platforms = { "linux" }
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {]])
  for _, e in ipairs(EXTERNAL) do w(('  %s = { library = "%s" },'):format(e[1], e[2])) end
  w([[}
build = {
  type = "builtin",
  modules = {]])
  for _, f in ipairs(ls("lua/concur/*.lua")) do
    local name = f:match("^lua/(.*)%.lua$"):gsub("/", ".")
    if name == "concur.init" then name = "concur" end
    w(("    [%q] = %q,"):format(name, f))
  end
  w([[    ["concur.core"] = {
      sources = {]])
  for _, f in ipairs(ls("csrc/*.c")) do   -- (git's * crosses folders: core/ too)
    if not f:find("/test/", 1, true) then w(("        %q,"):format(f)) end   -- not the unit tests
  end
  local inc, libdirs, libs = { '"csrc"' }, {}, {}
  for _, e in ipairs(EXTERNAL) do
    inc[#inc + 1] = ('"$(%s_INCDIR)%s"'):format(e[1], e[3] and "/" .. e[3] or "")
    libdirs[#libdirs + 1] = ('"$(%s_LIBDIR)"'):format(e[1])
    libs[#libs + 1] = ('"%s"'):format(e[2])
  end
  for _, l in ipairs(SYSLIBS) do libs[#libs + 1] = ('"%s"'):format(l) end
  w("      },")
  w(("      incdirs = { %s },"):format(table.concat(inc, ", ")))
  w(("      libdirs = { %s },"):format(table.concat(libdirs, ", ")))
  w(("      libraries = { %s },"):format(table.concat(libs, ", ")))
  w([[    },
  },]])
  if #ls("bin/concur-worker") > 0 then
    w([[  install = { bin = { ["concur-worker"] = "bin/concur-worker" } },]])
  end
  -- Installed beside the rock (luarocks doc, the examples, the Lua Language
  -- Server definitions). The release's archive also has doc/: README,
  -- CHANGELOG, LICENSE and the HTML reference, made by `make dist`.
  local copy = { release and '"doc"' or nil }
  for _, d in ipairs { "examples", "library" } do
    if #ls(d .. "/*") > 0 then copy[#copy + 1] = ('"%s"'):format(d) end
  end
  w(("  copy_directories = { %s },"):format(table.concat(copy, ", ")))
  w([[}
test = { type = "busted" }]])
  return table.concat(out, "\n") .. "\n"
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local outdir = arg[1] or "."
local ver = version()
os.execute(("mkdir -p %q"):format(outdir .. "/rockspecs"))
write(outdir .. "/concur-scm-1.rockspec", rockspec("scm"))
write(("%s/rockspecs/concur-%s-1.rockspec"):format(outdir, ver), rockspec(ver))
