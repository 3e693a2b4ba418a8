--- Small helpers shared by the lesson scripts in examples/: quick mode,
-- headings, timing, aligned tables and the CPU-bound work (count_primes).
-- Nothing here is part of concur.
--
--     local lesson = require "lesson"
--     lesson.title("Lesson 1: processes and threads")
--     lesson.section("Sequential vs concurrent")
--     local secs, result = lesson.time(fn, arg)
--     lesson.table({ "run", "time" }, { { "sequential", lesson.secs(secs) } })
-- @module lesson

local concur = require "concur"

local M = {}

local q = os.getenv("CONCUR_QUICK")
--- True when the environment asks for the quick mode (CONCUR_QUICK=1).
M.quick = q ~= nil and q ~= "" and q ~= "0"

--- The full size normally, the small one in quick mode.
function M.size(full, small)
  if M.quick then return small end
  return full
end

--- Prints the lesson's title.
function M.title(text)
  io.stdout:setvbuf("line")
  print(("="):rep(#text + 4))
  print("  " .. text)
  print(("="):rep(#text + 4))
  print(("%s, %d CPUs%s"):format(concur._VERSION, concur.cpu_count(),
    M.quick and ", quick mode (CONCUR_QUICK=1)" or ""))
end

local nsection = 0
--- Prints a numbered section heading.
function M.section(text)
  nsection = nsection + 1
  print()
  local head = ("%d. %s"):format(nsection, text)
  print(head)
  print(("-"):rep(#head))
end

--- Runs fn(...) and returns the wall-clock seconds it took, then its results.
function M.time(fn, ...)
  local t0 = concur.monotonic()
  local r = table.pack(fn(...))
  return concur.monotonic() - t0, table.unpack(r, 1, r.n)
end

-- Busy and total CPU seconds of the whole machine so far (from /proc/stat;
-- nil where there is none).
local function machine_cpu()
  local f = io.open("/proc/stat")
  if not f then return nil end
  local line = f:read("l") or ""
  f:close()
  local v, total = {}, 0
  for x in line:gmatch("%d+") do v[#v + 1] = tonumber(x); total = total + tonumber(x) end
  if #v < 5 then return nil end
  return (total - v[4] - v[5]) / 100
end

-- CPU seconds of this process's children that have ended and been reaped
-- (from /proc/self/stat; 0 where there is none).
local function children_cpu()
  local f = io.open("/proc/self/stat")
  if not f then return 0 end
  local line = f:read("a") or ""
  f:close()
  local v = {}
  for x in (line:match("^%d+ %b() (.*)") or ""):gmatch("%S+") do v[#v + 1] = x end
  return ((tonumber(v[14]) or 0) + (tonumber(v[15]) or 0)) / 100
end

-- measure, counting the CPU of the children reaped meanwhile when asked.
local function measuring(with_children, fn, ...)
  local m0, c0, t0 = machine_cpu(), os.clock(), concur.monotonic()
  local k0 = with_children and children_cpu() or 0
  local r = table.pack(fn(...))
  local wall, cpu, m1 = concur.monotonic() - t0, os.clock() - c0, machine_cpu()
  if with_children then cpu = cpu + children_cpu() - k0 end
  local others = m0 and m1 and math.max(0, (m1 - m0 - cpu) / wall) or nil
  return wall, cpu / wall, others, table.unpack(r, 1, r.n)
end

--- Runs fn(...) and measures it: returns wall seconds, this process's CPU
-- seconds per wall second (how many cores it kept busy), and the cores
-- other processes kept busy meanwhile (nil when unknown), then fn's results.
function M.measure(fn, ...)
  return measuring(false, fn, ...)
end

--- Like measure, but the child processes that end during fn (a joined
-- Process, the workers of a ProcessPool closed in fn) count as this run's
-- own CPU, not as other work. Workers still running at the end are not
-- counted at all: close the pool inside fn.
function M.measure_processes(fn, ...)
  return measuring(true, fn, ...)
end

--- Prints how busy the machine was with other work during a measurement
-- (the `others` of `measure`), which lowers every CPU-bound speed-up.
function M.load_note(others)
  if others then
    print(("  (other processes kept %.2f of the %d CPUs busy meanwhile)"):format(others,
      concur.cpu_count()))
  end
end

--- Seconds as text ("0.123 s").
function M.secs(s)
  return ("%.3f s"):format(s)
end

--- A speed-up as text ("1.92x").
function M.ratio(base, s)
  if s <= 0 then return "-" end
  return ("%.2fx"):format(base / s)
end

--- Prints an aligned table: headers is an array of column names, rows an
-- array of arrays (any values; tostring'ed). Numbers align to the right.
function M.table(headers, rows)
  local widths = {}
  for c, h in ipairs(headers) do widths[c] = #h end
  for _, row in ipairs(rows) do
    for c = 1, #headers do
      widths[c] = math.max(widths[c], #tostring(row[c] == nil and "" or row[c]))
    end
  end
  local function line(cells, right)
    local out = {}
    for c = 1, #headers do
      local s = tostring(cells[c] == nil and "" or cells[c])
      local pad = (" "):rep(widths[c] - #s)
      out[c] = (right and right[c]) and pad .. s or s .. pad
    end
    print("  | " .. table.concat(out, " | ") .. " |")
  end
  line(headers)
  local sep = {}
  for c = 1, #headers do sep[c] = ("-"):rep(widths[c]) end
  print("  |-" .. table.concat(sep, "-|-") .. "-|")
  for _, row in ipairs(rows) do
    local right = {}
    for c = 1, #headers do
      local s = tostring(row[c])
      right[c] = type(row[c]) == "number" or s:match("^%-?[%d%.]+ ?m?s$") ~= nil
        or s:match("^%-?[%d%.]+[x%%]?$") ~= nil
    end
    line(row, right)
  end
end

--- A CPU-bound function: the number of primes in lo..hi, by trial
-- division. Plain Lua, so it can be sent to threads and pool workers (the
-- benchmarks measure the same work with it: bench/benchlib.lua).
local function count_primes_between(lo, hi)
  local count = 0
  for n = math.max(lo, 2), hi do
    local prime = true
    for d = 2, math.floor(math.sqrt(n)) do
      if n % d == 0 then prime = false; break end
    end
    if prime then count = count + 1 end
  end
  return count
end
M.count_primes_between = count_primes_between

--- A CPU-bound function: the number of primes up to hi. With part and
-- parts (1 <= part <= parts) it does only its share: the part-th of every
-- `parts` blocks of 1000 numbers, so `parts` workers given part = 1..parts
-- split the work evenly. It can be sent to threads and pool workers (its
-- one upvalue, count_primes_between, goes with it).
function M.count_primes(hi, part, parts)
  part, parts = part or 1, parts or 1
  local count = 0
  for block = (part - 1) * 1000, hi, 1000 * parts do
    count = count + count_primes_between(block, math.min(block + 999, hi))
  end
  return count
end

return M
