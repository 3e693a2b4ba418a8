--- Lesson 6: factorials, in parallel.
--
-- Factorials for a range (digit counts for the big ones), computed one
-- after another, on a ThreadPool, on a ProcessPool (where the build has
-- it) and with bigint.factorial's own split over 2 threads; futures,
-- batches with per-item error handling, and a performance table.
--
--     bin/lua examples/06_factorials.lua      (CONCUR_QUICK=1: small sizes)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/lib/?.lua;" .. package.path

local concur = require "concur"
local bigint = require "concur.bigint"
local lesson = require "lesson"

local size, secs, ratio = lesson.size, lesson.secs, lesson.ratio

lesson.title("Lesson 6: factorials, in parallel")

-- The task: n! and its number of decimal digits. Only the digit count
-- travels back (a million-digit number would be copied for nothing).
local function factorial_digits(n, threads)
  local t0 = concur.monotonic()
  local f = bigint.factorial(n, threads and { threads = threads } or nil)
  return f:digits(), concur.monotonic() - t0, concur.thread_name()
end

---------------------------------------------------------------------------
lesson.section("Factorials for a range")
---------------------------------------------------------------------------
local small = {}
for n = 0, 20 do small[#small + 1] = ("%d! = %d"):format(n, bigint.factorial(n):tointeger()) end
for i = 1, #small, 3 do
  print("  " .. table.concat(small, "   ", i, math.min(i + 2, #small)))
end
print("  (20! is the last that fits a Lua integer; from 21! on only a bigint holds it)")
print("  25! = " .. tostring(bigint.factorial(25)))
print("  50! = " .. tostring(bigint.factorial(50)))
local rows = {}
for _, n in ipairs { 100, 1000, 10000, 100000, 1000000, size(10000000, nil) } do
  local digits, took = factorial_digits(n)
  local text = tostring(bigint.factorial(math.min(n, 1000)))
  rows[#rows + 1] = { ("%d!"):format(n), digits,
    n <= 1000 and (text:sub(1, 12) .. "..." .. text:sub(-6)) or "", secs(took) }
end
lesson.table({ "n!", "digits", "value", "time" }, rows)

---------------------------------------------------------------------------
lesson.section("Sequential")
---------------------------------------------------------------------------
-- GMP's factorial (mpz_fac_ui) against the schoolbook loop of bigint
-- products written in Lua.
local NAIVE = size(30000, 8000)
local loop_time, loop_result = lesson.time(function()
  local p = bigint(1)
  for i = 2, NAIVE do p = p * i end
  return p
end)
local gmp_time, gmp_result = lesson.time(bigint.factorial, NAIVE)
print(("  %d! by a Lua loop of products: %s; by bigint.factorial: %s (%s faster, same value: %s)"):format(
  NAIVE, secs(loop_time), secs(gmp_time), ratio(loop_time, gmp_time),
  tostring(bigint.eq(loop_result, gmp_result))))

-- The batch every approach below computes: a range of big factorials.
local BATCH = {}
local first, step, count = size(400000, 60000), size(100000, 20000), size(12, 6)
for i = 1, count do BATCH[i] = first + (i - 1) * step end
local seq_time, seq_digits = lesson.time(function()
  local out = {}
  for i, n in ipairs(BATCH) do out[i] = factorial_digits(n) end
  return out
end)
print(("  the batch: %d factorials from %d! to %d!, one after another: %s"):format(
  #BATCH, BATCH[1], BATCH[#BATCH], secs(seq_time)))

---------------------------------------------------------------------------
lesson.section("Process pool")
---------------------------------------------------------------------------
local proc_time
do
  local ppool <close> = concur.ProcessPool{ workers = 2 }
  local digits
  proc_time, digits = lesson.time(ppool.map, ppool, factorial_digits, BATCH, { chunksize = 1 })
  local same = true
  for i = 1, #BATCH do same = same and digits[i] == seq_digits[i] end
  print(("  ProcessPool(2) map over the batch: %s (same digits: %s)"):format(secs(proc_time),
    tostring(same)))
end

---------------------------------------------------------------------------
lesson.section("Futures")
---------------------------------------------------------------------------
-- One future per factorial, handled as each completes; on_done counts them.
local pool <close> = concur.ThreadPool{ workers = 2, name = "fact" }
local futures, finished = {}, 0
local pool_time = lesson.time(function()
  for i, n in ipairs(BATCH) do
    futures[i] = pool:submit(factorial_digits, n)
    futures[i]:on_done(function() finished = finished + 1 end)
  end
  for f in concur.as_completed(futures) do
    local digits, took, worker = f:result()
    print(("  done: a factorial of %8d digits, %s on %s"):format(digits, secs(took), worker))
  end
end)
local same = true
for i, f in ipairs(futures) do same = same and select(1, f:result()) == seq_digits[i] end
print(("  ThreadPool(2), one future per n: %s, on_done ran %d times, same digits as sequential: %s")
  :format(secs(pool_time), finished, tostring(same)))

-- bigint.factorial can split one factorial over threads itself.
local split_time = lesson.time(function()
  for _, n in ipairs(BATCH) do factorial_digits(n, 2) end
end)
print(("  bigint.factorial(n, {threads = 2}) for each n in turn: %s"):format(secs(split_time)))

---------------------------------------------------------------------------
lesson.section("Batches with per-item error handling")
---------------------------------------------------------------------------
-- A batch with bad inputs, in one call: with errors = "return", map puts
-- each failed item's error object (a concur.Error, its kind kept) in that
-- item's place, and the rest complete. Without it, map raises the first
-- error, saying which item failed.
local inputs = { 10, 500, -5, 2000, "ten", 2.5, 30, 1000000000, 100 }
local results = pool:map(factorial_digits, inputs, { errors = "return", chunksize = 1 })
local ok_count, bad_count = 0, 0
local out = {}
for i, r in ipairs(results) do
  local shown = type(inputs[i]) == "string" and ("%q"):format(inputs[i]) or tostring(inputs[i])
  if concur.Error.is(r) then
    bad_count = bad_count + 1
    out[#out + 1] = { shown, "error (" .. r.kind .. ")", r.message }
  else
    ok_count = ok_count + 1
    out[#out + 1] = { shown, "ok", r .. " digits" }
  end
end
lesson.table({ "input", "outcome", "result or message" }, out)
print(("  %d of %d items completed, %d reported as errors; nothing else was lost"):format(
  ok_count, #inputs, bad_count))

---------------------------------------------------------------------------
lesson.section("Performance analysis")
---------------------------------------------------------------------------
-- The same batch four ways, then one big factorial split over 2 threads.
local map_time, _, others = lesson.measure(pool.map, pool, factorial_digits, BATCH, { chunksize = 1 })
local perf = {
  { "sequential (one thread)", secs(seq_time), ratio(seq_time, seq_time) },
  { "ThreadPool(2):map", secs(map_time), ratio(seq_time, map_time) },
  { "ThreadPool(2), futures", secs(pool_time), ratio(seq_time, pool_time) },
  { "bigint.factorial(n, {threads = 2})", secs(split_time), ratio(seq_time, split_time) },
  { "ProcessPool(2):map", secs(proc_time), ratio(seq_time, proc_time) },
}
lesson.table({ ("batch of %d factorials (%d! .. %d!)"):format(#BATCH, BATCH[1], BATCH[#BATCH]),
  "time", "speed-up" }, perf)
lesson.load_note(others)

local BIG = size(5000000, 1000000)
local one_time, one_cores, _, one_digits = lesson.measure(factorial_digits, BIG)
local two_time, two_cores, others2, two_digits = lesson.measure(factorial_digits, BIG, 2)
lesson.table({ ("one factorial: %d! (%d digits)"):format(BIG, one_digits), "time", "cores busy",
  "speed-up" }, {
  { "bigint.factorial(n)", secs(one_time), ("%.2f"):format(one_cores), ratio(one_time, one_time) },
  { "bigint.factorial(n, {threads = 2})", secs(two_time), ("%.2f"):format(two_cores),
    ratio(one_time, two_time) },
})
lesson.load_note(others2)
assert(one_digits == two_digits)
print("  Many independent factorials split best across pool workers; one huge factorial")
print("  gains from bigint.factorial's own split (its threads use only the CPUs that are idle).")
