-- The checkout's tools: the packages each make target asks for, make demo,
-- the rockspec generator and the LuaLS definitions checker. They run as
-- shells and make, so not under the sanitizers (#nosan).

-- The checkout's root, absolute.
local root do
  local dir = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
  local p = assert(io.popen(("cd %q && pwd"):format(dir)))
  root = p:read("l")
  p:close()
end

-- Runs a shell command; returns ok, output (stdout and stderr).
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"exit=$?\""))
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return code == 0, (out:gsub("exit=%d+%s*$", ""))
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute(("mkdir -p %q"):format(d)))
  return d
end

local function write(path, text, mode)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  if mode then assert(os.execute(("chmod %s %q"):format(mode, path))) end
end

describe("tools/deps.sh", function()
  -- A dpkg-query that knows no package, and an id that is not root: the
  -- script then prints, for the targets given, the apt-get line.
  local fake
  setup(function()
    fake = tmpdir()
    write(fake .. "/dpkg-query", "#!/bin/sh\nexit 1\n", "+x")
    write(fake .. "/id", "#!/bin/sh\necho 1000\n", "+x")
  end)
  teardown(function() os.execute(("rm -rf %q"):format(fake)) end)

  local function line(...)
    local ok, out = sh(("PATH=%q:$PATH sh %q/tools/deps.sh %s"):format(fake, root, table.concat({ ... }, " ")))
    assert.is_false(ok, "deps.sh passed with every package missing")
    local pkgs = {}
    for p in (out:match("apt%-get install %-y ([^\n]*)") or ""):gmatch("%S+") do pkgs[p] = true end
    return pkgs, out
  end

  it("asks, for the build, only what building needs", function()
    local pkgs, out = line("all")
    assert.matches("'make all' needs Debian packages that are missing; as root, run:", out)
    for _, p in ipairs { "liblua5.4-dev", "libcurl4-openssl-dev", "libgmp-dev", "gcc", "pkg-config" } do
      assert.is_true(pkgs[p], p .. " missing from: " .. out)
    end
    for _, p in ipairs { "nginx-light", "wrk", "valgrind", "lua-busted", "clang", "python3" } do
      assert.is_nil(pkgs[p], p .. " asked for the build: " .. out)
    end
  end)

  it("adds what each other target needs, and only that", function()
    local test = line("test")
    assert.is_true(test["lua-busted"] and test["lua-cjson"] and test["libgmp-dev"])
    assert.is_nil(test["wrk"])
    local bench = line("bench")
    assert.is_true(bench["wrk"] and bench["nginx-light"] and bench["lua-busted"])
    local check = line("check")
    assert.is_true(check["valgrind"] and check["clang"])
    assert.is_nil(check["wrk"])
    local docs = line("docs")
    assert.is_true(docs["lua-ldoc"])
    assert.is_nil(docs["gcc"])
    local dist = line("dist")
    assert.is_true(dist["luarocks"] and dist["gcc"])
  end)

  it("names each package once", function()
    local _, out = line("check", "test", "lint")
    local seen = {}
    for p in out:match("apt%-get install %-y ([^\n]*)"):gmatch("%S+") do
      assert.is_nil(seen[p], p .. " twice")
      seen[p] = true
    end
  end)
end)

describe("make demo #nosan", function()
  it("runs every lesson, in order", function()
    local ok, out = sh(("make -s -n -C %q demo"):format(root))
    assert.is_true(ok, out)
    assert.matches("for f in examples/01_[^ ]+ examples/02_[^ ]+ examples/03_[^ ]+ examples/04_[^ ]+ "
      .. "examples/05_[^ ]+ examples/06_[^ ]+; do", out)
  end)

  it("fails when a lesson fails, and stops there", function()
    local d = tmpdir()
    write(d .. "/a.lua", 'print("lesson a ran")\n')
    write(d .. "/b.lua", 'error("lesson b broke")\n')
    write(d .. "/c.lua", 'print("lesson c ran")\n')
    local ok, out = sh(("make -s -C %q demo DEMOS=%q"):format(root, d .. "/a.lua " .. d .. "/b.lua " .. d .. "/c.lua"))
    os.execute(("rm -rf %q"):format(d))
    assert.is_false(ok, out)
    assert.matches("lesson a ran", out)
    assert.matches("lesson b broke", out)
    assert.matches("demo: [^\n]*/b%.lua failed", out)
    assert.is_nil(out:find("lesson c ran", 1, true))
  end)
end)

describe("tools/rockspec.lua #nosan", function()
  -- A scratch repository with a file of each kind the generator lists.
  local function repo(with_worker)
    local d = tmpdir()
    assert(os.execute(("mkdir -p %q/csrc %q/lua/concur %q/bin %q/examples"):format(d, d, d, d)))
    write(d .. "/csrc/concur.h", '#define CONCUR_VERSION "concur 9.8.7"\n')
    write(d .. "/csrc/a.c", "")
    write(d .. "/lua/concur/init.lua", "")
    write(d .. "/lua/concur/extra.lua", "")
    write(d .. "/examples/01_x.lua", "")
    write(d .. "/lua/concur/untracked.lua", "")
    local files = "csrc/concur.h csrc/a.c lua/concur/init.lua lua/concur/extra.lua examples/01_x.lua"
    if with_worker then
      write(d .. "/bin/concur-worker", "#!/usr/bin/env lua5.4\n", "+x")
      files = files .. " bin/concur-worker"
    end
    local ok, out = sh(("cd %q && git init -q . && git add %s && lua5.4 %q/tools/rockspec.lua"):format(d, files, root))
    assert(ok, out)
    local f = assert(io.open(d .. "/rockspecs/concur-9.8.7-1.rockspec"))
    local release = f:read("a")
    f:close()
    f = assert(io.open(d .. "/concur-scm-1.rockspec"))
    local scm = f:read("a")
    f:close()
    os.execute(("rm -rf %q"):format(d))
    return release, scm
  end

  it("writes the release and scm rockspecs with every tracked module and C file", function()
    local release, scm = repo(false)
    for _, text in ipairs { release, scm } do
      assert.matches('%["concur"%] = "lua/concur/init.lua"', text)
      assert.matches('%["concur.extra"%] = "lua/concur/extra.lua"', text)
      assert.matches('"csrc/a.c"', text)
      assert.is_nil(text:find("untracked", 1, true))
      assert.matches('supported_platforms = { "linux" }', text)
      assert.matches('license = "MIT"', text)
      assert.is_nil(text:find("concur-worker", 1, true))
    end
    assert.matches('version = "9.8.7%-1"', release)
    assert.matches('source = { url = "concur%-9.8.7.tar.gz", dir = "concur%-9.8.7" }', release)
    assert.matches('copy_directories = { "doc", "examples" }', release)
    assert.matches('version = "scm%-1"', scm)
    assert.is_nil(release:find("example.invalid", 1, true))
  end)

  it("installs bin/concur-worker when it is there", function()
    local release, scm = repo(true)
    for _, text in ipairs { release, scm } do
      assert.matches('install = { bin = { %["concur%-worker"%] = "bin/concur%-worker" } }', text)
    end
  end)

  it("agrees with the rockspecs in the checkout", function()
    local d = tmpdir()
    local ok, out = sh(("cd %q && lua5.4 tools/rockspec.lua %q && cmp %q/concur-scm-1.rockspec concur-scm-1.rockspec"
      .. " && cmp %q/rockspecs/concur-*.rockspec rockspecs/concur-$(sed -n "
      .. "'s/^#define CONCUR_VERSION \"concur \\(.*\\)\"$/\\1/p' csrc/concur.h)-1.rockspec")
      :format(root, d, d, d))
    os.execute(("rm -rf %q"):format(d))
    assert.is_true(ok, "stale rockspec (make rockspec): " .. out)
  end)
end)

describe("tools/luals_check.lua #nosan", function()
  -- The checker on a copy of library/ (and of the module list) with edits.
  local function check(edit)
    local d = tmpdir()
    assert(os.execute(("mkdir -p %q/tools %q/lua && cp -r %q/library %q/ && cp -r %q/lua/concur %q/lua/"
      .. " && cp %q %q/tools/"):format(d, d, root, d, root, d, root .. "/tools/luals_check.lua", d)))
    if edit then edit(d) end
    local ok, out = sh(("cd %q && LUA_PATH=%q LUA_CPATH=%q lua5.4 %q/tools/luals_check.lua")
      :format(root, package.path, package.cpath, d))
    os.execute(("rm -rf %q"):format(d))
    return ok, out
  end

  local function sed(d, file, expr)
    assert(os.execute(("sed -i %q %q"):format(expr, d .. "/library/" .. file)))
  end

  it("passes on the checkout's definitions", function()
    local ok, out = check()
    assert.is_true(ok, out)
    assert.matches("luals_check: %d+ modules and %d+ classes have their definitions", out)
  end)

  it("fails on a method, a module function or a class without a definition", function()
    local ok, out = check(function(d)
      sed(d, "concur.lua", "s/^function Queue:task_done() end$//")
      sed(d, "concur.lua", "s/^function concur.poll() end$//")
      sed(d, "concur.lua", "s/^---@class concur.Barrier$/---@class concur.Barriers/")
    end)
    assert.is_false(ok, out)
    assert.matches("concur.Queue:task_done: no definition", out)
    assert.matches("concur.poll: no definition", out)
    assert.matches("class concur.Barrier: no definition", out)
  end)

  it("fails on a definition of something the module or class does not have", function()
    local ok, out = check(function(d)
      sed(d, "concur/fetch.lua", "s/^function fetch.get(url, opts) end$/function fetch.fetch(url) end/")
      sed(d, "concur/bigint.lua", "s/^function B:abs() end$/function B:absolute() end/")
    end)
    assert.is_false(ok, out)
    assert.matches("defines concur.fetch.fetch, which the module does not have", out)
    assert.matches("concur.bigint:absolute is defined in [^\n]*, but the class has no such method", out)
  end)

  it("fails on a module without a definitions file", function()
    local ok, out = check(function(d)
      assert(os.execute(("rm %q"):format(d .. "/library/concur/log.lua")))
    end)
    assert.is_false(ok, out)
    assert.matches("concur.log: no definitions: add library/concur/log.lua starting with `%-%-%-@meta concur.log`", out)
  end)
end)

describe("busted's helper (.busted) #nosan", function()
  -- A scratch checkout: the checkout's .busted and helper, a Makefile whose
  -- `all` succeeds (leaving a mark) or fails, and one spec.
  local function run(make_ok)
    local d = tmpdir()
    assert(os.execute(("mkdir -p %q/spec/helpers && cp %q/.busted %q/ && cp %q/spec/helpers/build.lua %q/spec/helpers/")
      :format(d, root, d, root, d)))
    write(d .. "/Makefile", make_ok and "all:\n\t@touch built\n" or "all:\n\t@echo 'no compiler' >&2; false\n")
    write(d .. "/spec/a_spec.lua", [[
      it("runs after the build", function()
        assert(io.open("built"), "the helper did not build first")
      end)
    ]])
    local ok, out = sh(("cd %q && env -u CONCUR_NO_BUILD busted -o plainTerminal"):format(d))
    os.execute(("rm -rf %q"):format(d))
    return ok, out
  end

  it("builds with make before the specs run", function()
    local ok, out = run(true)
    assert.is_true(ok, out)
    assert.matches("1 success / 0 failures / 0 errors", out)
  end)

  it("says to run make first when the build fails", function()
    local ok, out = run(false)
    assert.is_false(ok, out)
    assert.matches("no compiler", out)
    assert.matches("concur is not built and `make` failed %(see above%): run `make` in [^\n]* first, then busted", out)
  end)
end)

describe("tools/layers.lua", function()
  it("passes the tree as it is", function()
    local ok, out = sh(("cd %q && lua5.4 tools/layers.lua"):format(root))
    assert.is_true(ok, out)
    assert.matches("no include circles", out)
  end)

  it("names a core file that reaches up, and a circle of includes", function()
    local d = tmpdir()
    assert(os.execute(("mkdir -p %q/csrc/core"):format(d)))
    write(d .. "/csrc/binding.h", '#include "core/low.h"\n')
    write(d .. "/csrc/core/wait.h", "#include <pthread.h>\n")
    write(d .. "/csrc/core/low.h", '#include "wait.h"\n#include "high.h"\n')
    write(d .. "/csrc/core/high.h", '#include "low.h"\n#include "../binding.h"\n#include <lua.h>\n')
    local ok, out = sh(("lua5.4 %q/tools/layers.lua %q"):format(root, d))
    os.execute(("rm -rf %q"):format(d))
    assert.is_false(ok, out)
    assert.matches("csrc/core/high.h:2: the core includes csrc/binding.h", out, 1, true)
    assert.matches("csrc/core/high.h:3: the core includes Lua's <lua.h>", out, 1, true)
    assert.matches("include circle: csrc/core/low.h -> csrc/core/high.h -> csrc/core/low.h", out, 1, true)
  end)
end)
