-- Writes concur-scm-1.rockspec from the tree (every csrc/*.c and
-- src/concur/*.lua), so the rock never misses a file: `make rockspec`
-- writes it, `make lint` checks it is current.
-- the tracked files matching a shell pattern (work in progress stays out)
local function ls(pattern)
  local p = io.popen("git ls-files -- " .. pattern .. " 2>/dev/null | sort")
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end
local csrc = {}
for _, f in ipairs(ls("'csrc/*.c'")) do csrc[#csrc + 1] = f end
local out = {}
local function w(s) out[#out + 1] = s end
w([[rockspec_format = "3.0"
package = "concur"
version = "scm-1"
source = { url = "git+https://example.invalid/concur.git" }
description = {
  summary = "Thread and process pools, futures, queues, locks, HTTP fetching and bigints for Lua 5.4",
  detailed = [==[
concur gives Lua 5.4 what Python has in threading, multiprocessing, queue and
concurrent.futures: a thread pool and a process pool behind one futures API,
threads, queues, locks, conditions, events, semaphores, barriers, atomic values,
a rate-limited concurrent HTTP fetcher on libcurl, and GMP big integers.
]==],
  license = "MIT",
  labels = { "concurrency", "threads", "futures" },
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  CURL = { library = "curl" },
  GMP = { library = "gmp" },
}
build = {
  type = "builtin",
  modules = {]])
for _, f in ipairs(ls("'src/concur/*.lua'")) do
  local name = f:match("src/(.*)%.lua$"):gsub("/", ".")
  if name == "concur.init" then name = "concur" end
  w(("    [%q] = %q,"):format(name, f))
end
w([[    ["concur.core"] = {
      sources = {]])
for _, f in ipairs(csrc) do w(("        %q,"):format(f)) end
w([[      },
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(GMP_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(GMP_LIBDIR)" },
      libraries = { "curl", "gmp", "pthread", "dl" },
    },
  },
}
test = { type = "busted" }]])
local f = assert(io.open(arg[1] or "concur-scm-1.rockspec", "w"))
f:write(table.concat(out, "\n"), "\n")
f:close()
