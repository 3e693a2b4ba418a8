-- luacheck: std lua54+busted
-- The lessons in examples/ run in their quick mode (CONCUR_QUICK=1), each
-- in a fresh interpreter, and print what they teach: so they never rot.
-- Each example runs once; its `it`s check lines of that one output.
-- Tagged #notsan: ThreadSanitizer runs cannot start subprocesses here.

local concur = require "concur"

local LUA = os.getenv("CONCUR_LUA") or "lua5.4"
local LIMIT = 60          -- seconds before a run is killed (quick mode takes a few)

-- The checkout's root: the folder above this spec's.
local root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

local function have_socket()
  return (pcall(require, "socket"))
end

-- Runs examples/<file> with CONCUR_QUICK=1; returns { ok, code, out, secs }.
local runs = {}
local function run(file)
  if runs[file] then return runs[file] end
  local cmd = ("cd %q && CONCUR_QUICK=1 LUA_PATH=%q LUA_CPATH=%q timeout -s KILL %d %s %q 2>&1;"
    .. " echo \"exit=$?\""):format(root, package.path, package.cpath, LIMIT, LUA, "examples/" .. file)
  local t0 = concur.monotonic()
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  local r = { ok = code == 0, code = code, out = (out:gsub("exit=%d+%s*$", "")),
              secs = concur.monotonic() - t0 }
  runs[file] = r
  return r
end

-- Asserts that the run succeeded quickly and that its output has `text`
-- (a plain string); returns the output.
local function output(file)
  local r = run(file)
  assert(r.ok, ("%s exited with %s:\n%s"):format(file, tostring(r.code), r.out))
  return r.out
end

local function has(out, text)
  assert(out:find(text, 1, true), ("output lacks %q:\n%s"):format(text, out))
end

local function sections(out, n)
  for i = 1, n do
    assert(out:match("\n" .. i .. "%. [^\n]+\n%-%-%-"), ("no section %d heading:\n%s"):format(i, out))
  end
end

describe("examples (quick mode)", function()
  describe("01_processes_and_threads.lua", function()
    local F = "01_processes_and_threads.lua"

    it("runs in a few seconds with all five sections #notsan", function()
      local out = output(F)
      sections(out, 5)
      assert.is_true(run(F).secs < 30, "took " .. run(F).secs)
    end)

    it("shows a thread's greeting tagged with its name #notsan", function()
      has(output(F), "[greeter] hello, world, from thread greeter")
    end)

    it("joins a process #notsan", function()
      assert.matches("process %d+ joined: ok=true", output(F))
    end)

    it("loses updates without a lock #notsan", function()
      local expected, got, lost = output(F):match(
        "without a lock: %d+ threads x %d+ increments = (%d+) expected, got (%d+): lost (%d+) updates")
      assert.truthy(expected, output(F))
      assert.is_true(tonumber(lost) > 0)
      assert.equal(tonumber(expected) - tonumber(got), tonumber(lost))
    end)

    it("counts exactly with a Lock and with Value:add #notsan", function()
      local out = output(F)
      local expected, got = out:match("with a Lock: +%d+ threads x %d+ increments = (%d+) expected, got (%d+): exact")
      assert.truthy(expected, out)
      assert.equal(expected, got)
      assert.matches("with Value:add: +%d+ threads x %d+ increments = (%d+) expected, got %1: exact", out)
    end)

    it("prints the sequential vs threads table with speed-ups #notsan", function()
      local out = output(F)
      assert.matches("| I/O%-bound [^\n]+| +[%d.]+ s | +[%d.]+ s | +[%d.]+x |", out)
      assert.matches("| CPU%-bound [^\n]+| +[%d.]+ s | +[%d.]+ s | +[%d.]+x |", out)
      assert.matches("| 2 threads +| +[%d.]+ s | +[%d.]+ | +[%d.?]+ | +[%d.]+x |", out)
    end)
  end)

  describe("02_multithreading.lua", function()
    local F = "02_multithreading.lua"

    it("runs in a few seconds with all eight sections #notsan", function()
      sections(output(F), 8)
      assert.is_true(run(F).secs < 30, "took " .. run(F).secs)
    end)

    it("never overdraws the locked account #notsan", function()
      local out = output(F)
      local bal, expect = out:match("balance (%-?%d+) %(never negative%), 1000 %- 3 x %d+ = (%-?%d+)")
      assert.truthy(bal, out)
      assert.equal(expect, bal)
      assert.is_true(tonumber(bal) >= 0)
    end)

    it("consumes every produced item exactly once #notsan", function()
      local n, of, sum, expect = output(F):match("(%d+) items consumed %(of (%d+)%), sum (%d+) %(expected (%d+)%)")
      assert.equal(of, n)
      assert.equal(expect, sum)
    end)

    it("signals with Events, waits with a Condition, limits with a Semaphore #notsan", function()
      local out = output(F)
      assert.matches("poller saw the stop Event after %d+ ticks", out)
      has(out, "main: wait_for saw all 4 workers: true")
      assert.matches("semaphore: 6 threads, at most [12] inside at once", out)
      has(out, "barrier: phases in order 1 1 1 2 2 2")
    end)

    it("keeps per-worker globals apart and cancels a busy thread #notsan", function()
      local out = output(F)
      assert.matches("| worker_0 +| +%d+ |", out)
      has(out, "main's _G.calls is still main's own")
      has(out, 'a busy loop cancelled: join -> false, kind "cancelled"')
    end)

    it("prints the performance comparison #notsan", function()
      local out = output(F)
      assert.matches("| I/O: [^\n]+x |\n", out)
      assert.matches("| a thread per task +| +[%d.]+ s |", out)
      assert.matches("a pool is [%d.]+x faster", out)
    end)
  end)

  describe("03_multiprocessing.lua", function()
    local F = "03_multiprocessing.lua"

    it("runs in a few seconds with all seven sections #notsan", function()
      sections(output(F), 7)
      assert.is_true(run(F).secs < 30, "took " .. run(F).secs)
    end)

    it("starts processes, joins their results and reports how they ended #notsan", function()
      local out = output(F)
      assert.matches('process %d+ joined: ok=true, sum 500000500000, it called itself "process%-%d+"', out)
      assert.matches("%[process%-%d+%] working on job 3 %(3000000 steps%)\n", out)
      has(out, "in the parent: mode is the parent's, hits 0: the child changed a copy")
      has(out, 'an error:   join -> false, kind "task", message "bad input", exit code 1')
      has(out, 'os.exit(3): join -> false, kind "broken", exit code 3')
      has(out, 'join(0.1) -> timeout, then kill(): join -> false, kind "broken", exit code -15')
    end)

    it("receives every result through the queue, and a sentinel from each worker #notsan", function()
      local out = output(F)
      local got, nproc, sent = out:match(
        "(%d+) results received through the queue from (%d+) processes %((%d+) jobs sent%)")
      assert.truthy(got, out)
      assert.equal(sent, got)
      local handled, workers = 0, 0
      for n in out:gmatch("| process%-%d+ +| +(%d+) |") do
        handled, workers = handled + tonumber(n), workers + 1
      end
      assert.equal(tonumber(nproc), workers)
      assert.equal(tonumber(sent), handled)
      local sum, want = out:match("sum of the counts: (%d+); primes below %d+, counted here: (%d+)")
      assert.truthy(sum, out)
      assert.equal(want, sum)
    end)

    it("counts exactly with a shared Lock and with Value:add across processes #notsan", function()
      local out = output(F)
      local expected, got, lost = out:match(
        "without a lock: %d+ processes x %d+ increments = (%d+) expected, got (%d+): lost (%d+) updates")
      assert.truthy(expected, out)
      assert.equal(tonumber(expected) - tonumber(got), tonumber(lost))
      local want, fixed = out:match("with a Lock: +%d+ processes x %d+ increments = (%d+) expected, got (%d+): exact")
      assert.truthy(want, out)
      assert.equal(want, fixed)
      assert.equal(expected, want)
      assert.matches("with Value:add: %d+ processes x %d+ increments = (%d+) expected, got %1: exact", out)
    end)

    it("prints the CPU-bound speed-up table #notsan", function()
      local out = output(F)
      has(out, "primes up to 300000: 25997 (every way)")
      assert.matches("| this process alone +| +[%d.]+ s | +[%d.]+ | +1%.00x |", out)
      assert.matches("| 2 processes +| +[%d.]+ s | +[%d.]+ | +[%d.]+x |", out)
    end)

    it("maps on a process pool, in order, in chunks #notsan", function()
      local out = output(F)
      has(out, "squares of 1..10: 1 4 9 16 25 36 49 64 81 100")
      assert.matches("| ProcessPool%(2%):map, 16 items +| +[%d.]+ s | +[%d.]+ | +[%d.]+x |", out)
      for _, chunk in ipairs { " +1 ", " +10 ", " +100 ", " default +" } do
        assert.matches("|" .. chunk .. "| +[%d.]+ s | +[%d.]+ | +[%d.]+x |", out)
      end
    end)

    it("builds the costly table once per worker with the initializer #notsan", function()
      local out = output(F)
      has(out, "6 lookups in a table of primes up to 600000: 49098 primes, the same both ways")
      local inits = select(2, out:gsub("%[process%-%d+%] initializer: built the table in [%d.]+ s\n", ""))
      local ran = 0
      for n in (out:match("tasks with the initializer: ([^\n]+)") or ""):gmatch("process%-%d+ ran (%d+)") do
        ran = ran + tonumber(n)
      end
      assert.equal(6, ran)
      assert.matches("| each task builds the table +| +6 | +[%d.]+ s | +[%d.]+x |", out)
      local built = out:match("| the initializer builds it +| +(%d+) | +[%d.]+ s | +[%d.]+x |")
      assert.truthy(built, out)
      assert.equal(inits, tonumber(built))
      assert.is_true(inits >= 1 and inits <= 2, out)
    end)

    it("compares processes with threads and shows what only processes isolate #notsan", function()
      local out = output(F)
      assert.matches("| start and join one, ms %(x %d+%) +| +[%d.]+ | +[%d.]+ | +[%d.]+x |", out)
      assert.matches("| primes to 300000 in 8 parts, s +| +[%d.]+ | +[%d.]+ | +[%d.]+x |", out)
      assert.matches('a ProcessPool task calls os.exit%(3%): kind "broken"', out)
      has(out, 'a task over memory_limit = 64 MB: kind "limit"')
      assert.matches("the pool goes on: the next task returns ok from process%-%d+", out)
    end)
  end)

  describe("04_executors.lua", function()
    local F = "04_executors.lua"

    it("runs in a few seconds with all seven sections #notsan", function()
      sections(output(F), 7)
      assert.is_true(run(F).secs < 30, "took " .. run(F).secs)
    end)

    it("maps in order and collects futures as they complete #notsan", function()
      local out = output(F)
      has(out, "primes up to  50000: 5133")
      assert.matches("as completed: task 2 slept", out)
      has(out, "on_done callback: the answer is 42")
    end)

    it("reports task errors with kind, value and the worker's traceback #notsan", function()
      local out = output(F)
      assert.matches('10 // 0 in a task: kind "task", message "[^"]*attempt to', out)
      has(out, "err.value.code = 404")
      has(out, "item 3: failed: item 3 is bad")
      has(out, "item 4: ok: 16")
    end)

    it("stops waits and runaway tasks at their timeouts #notsan", function()
      local out = output(F)
      assert.matches('submit{fn, timeout = 0.2} on an endless loop: kind "timeout"', out)
      assert.matches('map{timeout = 0.1} with a 0.3 s item: ok=false, kind "timeout"', out)
    end)

    it("prints the executors table #notsan", function()
      local out = output(F)
      assert.matches("| executor +| CPU: [^\n]+| speed%-up | I/O: [^\n]+| speed%-up |", out)
      assert.matches("| ThreadPool%(8%) +| +[%d.]+ s | +[%d.]+x | +[%d.]+ s | +[%d.]+x |", out)
      assert.matches("| ProcessPool%(2%) +| +[%d.]+ s | +[%d.]+x | +[%d.]+ s | +[%d.]+x |", out)
    end)

    it("compares the executors with coroutine tasks #notsan", function()
      local out = output(F)
      assert.matches("| I/O: %d+ waits of [%d.]+ s | ThreadPool%(8%), map +| +[%d.]+ s |", out)
      assert.matches("| +| %d+ tasks on 1 thread +| +[%d.]+ s |", out)
      assert.matches("| +| tasks awaiting ThreadPool%(2%) | +[%d.]+ s |", out)
    end)

    it("runs the batch job with the same results on the pool #notsan", function()
      local out = output(F)
      has(out, "the pool and the plain loop agree on every file: true")
      assert.matches("| ThreadPool%(%d+%), imap_unordered | +[%d.]+ s | +[%d.]+x |", out)
    end)
  end)

  describe("05_web_scraping.lua", function()
    local F = "05_web_scraping.lua"

    it("runs in a few seconds with all eight sections #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      local out = output(F)
      sections(out, 8)
      assert.matches("demo site http://127%.0%.0%.1:%d+: %d+ pages", out)
      assert.is_true(run(F).secs < 30, "took " .. run(F).secs)
    end)

    it("scrapes the same pages as threads and as coroutine tasks on one thread #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      local out = output(F)
      local n1, n2, n3 = out:match("threads: (%d+) pages in [%d.]+ s on 8 worker threads; "
        .. "coroutines: (%d+) pages in [%d.]+ s, (%d+) tasks on this one thread")
      assert.truthy(n1, out)
      assert.equal(n1, n2)
      assert.equal(n1, n3)
      assert.matches("| 7b%. coroutines: 1 thread +| +%d+ | +%d+ | +500 |", out)
    end)

    it("scrapes concurrently, the 429 and the 500 failing without retries #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      assert.matches("%d+ pages in [%d.]+ s: %d+ ok, 2 failed %(500, 429%)", output(F))
    end)

    it("crawls with queue-fed threads, skipping robots and finding the broken link #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      local out = output(F)
      assert.matches("| crawler%-4 +| +%d+ |", out)
      assert.matches("crawled %d+ URLs from / in [%d.]+ s: %d+ ok, not ok: robots, 404", out)
      has(out, "broken links to: /page/1/999")
    end)

    it("crawls the same pages with fetch.Crawler, stopped and resumed, each page once #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      local out = output(F)
      assert.matches("then resumed from the journal: %d+ pages, %d+ items in [%d.]+ s; "
        .. "pages fetched twice: 0\n", out)
      has(out, "the items are the pages section 2's threads found: yes")
      assert.matches("| robots +| +1 |", out)
      assert.matches("crawler stats: %d+ pages, 1 errors %(the 404%)", out)
    end)

    it("has no hand-written URL or HTML handling left in examples/ #notsan", function()
      -- the shapes hand-made link extraction and URL joining take: Lua
      -- patterns over tags, hrefs, schemes, hosts and queries
      local shapes = { "[Hh][Rr][Ee][Ff]", "[Tt][Ii][Tt][Ll][Ee]", "match(\"<", "gmatch(\"<",
        "https?://", "//[^/]", "%?.*$", "#.*$", "&amp;" }
      local p = assert(io.popen(("ls %q/examples/*.lua %q/examples/lib/*.lua"):format(root, root)))
      for f in p:lines() do
        local src = assert(io.open(f)):read("a")
        for _, shape in ipairs(shapes) do
          assert.is_nil(src:find(shape, 1, true), ("%s has %q"):format(f, shape))
        end
      end
      p:close()
    end)

    it("holds the asked rate, as the server saw it #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      local out = output(F)
      local asked = tonumber(out:match("| asked: (%d+) requests/s"))
      for rate in out:gmatch("| +%d+ | +[%d.]+ s | ([%d.]+)/s +|") do
        assert.is_true(math.abs(tonumber(rate) - asked) <= asked * 0.15, rate .. " vs " .. asked)
      end
      assert.matches("concur.RateLimiter{ rate = %d+ } | +%d+ |", out)
    end)

    it("retries with backoff and honours Retry-After #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      local out = output(F)
      assert.matches("| /flaky | +200 | +3 |", out)
      local wait = out:match("| /busy +| +200 | +2 | [^|]+| +([%d.]+) s |")
      assert.truthy(wait, out)
      assert.is_true(tonumber(wait) >= 0.95)
    end)

    it("minds robots.txt, sends its User-Agent and times out #notsan", function()
      if not have_socket() then pending("needs LuaSocket (lua-socket)") return end
      local out = output(F)
      has(out, 'robots.txt disallows /private/: kind "robots"')
      has(out, "the server saw the User-Agent: concur-lesson5/")
      assert.matches('with timeout = 0.5: kind "network", curl code 28', out)
      has(out, "(never /private/secret)")
    end)
  end)

  describe("06_factorials.lua", function()
    local F = "06_factorials.lua"

    it("runs in a few seconds with all six sections #notsan", function()
      sections(output(F), 6)
      assert.is_true(run(F).secs < 30, "took " .. run(F).secs)
    end)

    it("prints factorials for a range, digit counts for the big ones #notsan", function()
      local out = output(F)
      has(out, "20! = 2432902008176640000")
      has(out, "50! = 30414093201713378043612608166064768844377641568960512000000000000")
      assert.matches("| 1000000! +| +5565709 |", out)
    end)

    it("reports the bad inputs of a batch and completes the rest #notsan", function()
      local out = output(F)
      has(out, "5 of 9 items completed, 4 reported as errors")
      assert.matches("| +%-5 | error %(argument%) |", out)
      assert.matches("| 1000000000 | error %(limit%) +|", out)
    end)

    it("gets the same digits on the pool as sequentially #notsan", function()
      assert.matches("same digits as sequential: true", output(F))
    end)

    it("prints the performance table #notsan", function()
      local out = output(F)
      assert.matches("| sequential %(one thread%) +| +[%d.]+ s | +1%.00x |", out)
      assert.matches("| ThreadPool%(2%):map +| +[%d.]+ s | +[%d.]+x |", out)
      assert.matches("| bigint.factorial%(n, {threads = 2}%) +| +[%d.]+ s | +[%d.]+x |", out)
      assert.matches("| ProcessPool%(2%):map +| +[%d.]+ s | +[%d.]+x |", out)
    end)
  end)
end)
