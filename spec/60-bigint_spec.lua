-- concur.bigint: GMP big integers, mixed arithmetic, text, factorials,
-- memory and crossing between states.
--
-- Expected values come from elsewhere than the code under test: Lua's own
-- integer arithmetic and string.format, multiplication loops over bigints,
-- closed formulas (Legendre's trailing zeros of n!) and published values
-- (1000! has 2568 digits, the digits of 100! sum to 648).

local concur = require "concur"
local bigint = require "concur.bigint"
local size = require("helpers").size

local Error = concur.Error
-- the multi-threaded paths, forced whatever the CPUs and their load
local split = require("concur.core").bigint

-- runs f and returns the concur error it raises
local function raised (f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  assert(Error.is(err), "expected a concur.Error, got " .. tostring(err))
  return err
end

local function product (from, to)
  local p = bigint(1)
  for i = from, to do p = p * i end
  return p
end

-- resident memory in KB; nil where it means nothing (no /proc, or under a
-- sanitizer or valgrind, whose allocators hold on to freed memory)
local function rss_kb ()
  for _, v in ipairs{ "LD_PRELOAD", "ASAN_OPTIONS", "TSAN_OPTIONS" } do
    if os.getenv(v) then return nil end
  end
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)"))
end

-- a deterministic stream of 62-bit integers
local function lcg (seed)
  local x = seed
  return function ()
    x = (x * 6364136223846793005 + 1442695040888963407)
    return x >> 2
  end
end

describe("concur.bigint", function ()

  describe("construction", function ()
    it("takes Lua integers, the extremes included", function ()
      assert.equal(tostring(math.maxinteger), tostring(bigint(math.maxinteger)))
      assert.equal(tostring(math.mininteger), tostring(bigint(math.mininteger)))
      assert.equal("0", tostring(bigint(0)))
    end)

    it("parses decimal strings with a sign and surrounding space", function ()
      assert.equal("123456789012345678901234567890",
                   tostring(bigint("123456789012345678901234567890")))
      assert.equal("-42", tostring(bigint(" -42\n")))
      assert.equal("42", tostring(bigint("+42")))
      assert.equal("7", tostring(bigint("007")))
    end)

    it("reads the 0x, 0b and 0o prefixes", function ()
      assert.equal("255", tostring(bigint("0xff")))
      assert.equal("255", tostring(bigint("0XFF")))
      assert.equal("-5", tostring(bigint("-0b101")))
      assert.equal("8", tostring(bigint("0o10")))
    end)

    it("reads digits in an explicit base", function ()
      assert.equal("35", tostring(bigint("z", 36)))
      assert.equal("255", tostring(bigint("ff", 16)))
      assert.equal("255", tostring(bigint("0xff", 16)))
      assert.equal(tostring(tonumber("zzzz", 36)), tostring(bigint("ZZZZ", 36)))
    end)

    it("takes floats with an integral value exactly", function ()
      assert.is_true(bigint.eq(bigint(2.0 ^ 100), bigint(2) ^ 100))
      assert.equal("-3", tostring(bigint(-3.0)))
    end)

    it("copies a bigint", function ()
      local a = bigint("12345678901234567890")
      local b = bigint(a)
      assert.is_true(a == b)
      assert.is_true(bigint.isbigint(b))
    end)

    it("rejects malformed strings, naming them", function ()
      for _, s in ipairs{ "12x", "", " ", "-", "0x", "1 2", "1.5", "1e5", "0b102" } do
        local err = raised(bigint, s)
        assert.equal("argument", err.kind)
        assert.matches("malformed number '" .. s:gsub("%p", "%%%0") .. "'",
                       err.message)
      end
    end)

    it("rejects digits outside an explicit base", function ()
      assert.equal("argument", raised(bigint, "19", 8).kind)
    end)

    it("rejects a base out of range", function ()
      assert.equal("argument", raised(bigint, "1", 37).kind)
      assert.equal("argument", raised(bigint, "1", 1).kind)
    end)

    it("rejects non-integral floats, NaN and infinities", function ()
      for _, f in ipairs{ 1.5, 0 / 0, math.huge, -math.huge } do
        local err = raised(bigint, f)
        assert.equal("argument", err.kind)
        assert.matches("integer representation", err.message)
      end
    end)

    it("rejects other types", function ()
      local err = raised(bigint, {})
      assert.equal("argument", err.kind)
      assert.matches("got table", err.message)
      assert.equal("argument", raised(bigint, nil).kind)
    end)
  end)

  describe("arithmetic", function ()
    local next_int = lcg(7)
    local function small ()   -- fits so that products stay in an int64
      return (next_int() % 2000000001) - 1000000000
    end

    it("matches Lua's integer + - * with integers on either side", function ()
      for _ = 1, 200 do
        local a, b = small(), small()
        assert.equal(tostring(a + b), tostring(bigint(a) + b))
        assert.equal(tostring(a - b), tostring(a - bigint(b)))
        assert.equal(tostring(a * b), tostring(bigint(a) * bigint(b)))
      end
    end)

    it("floors // and % as Lua does, for every sign", function ()
      for _ = 1, 200 do
        local a, b = small(), small()
        if b ~= 0 then
          assert.equal(tostring(a // b), tostring(bigint(a) // b))
          assert.equal(tostring(a % b), tostring(a % bigint(b)))
        end
      end
      assert.equal("-4", tostring(bigint(-7) // 2))
      assert.equal("1", tostring(bigint(-7) % 2))
      assert.equal("-1", tostring(bigint(7) % -2))
    end)

    it("keeps a == (a // b) * b + a % b for big values", function ()
      local a = bigint(3) ^ 2000 + 12345
      local b = -(bigint(7) ^ 333)
      assert.is_true(a == (a // b) * b + a % b)
      assert.is_true(bigint.cmp(a % b, 0) <= 0)   -- sign of the divisor
      assert.is_true((a * b) // b == a)
      assert.is_true(bigint.eq((a * b) % b, 0))
    end)

    it("computes ^ as repeated multiplication", function ()
      local p = bigint(1)
      for _ = 1, 100 do p = p * -3 end
      assert.is_true(bigint(-3) ^ 100 == p)
      assert.is_true(bigint.eq(bigint(5) ^ 0, 1))
      assert.is_true(2 ^ bigint(10) == bigint(1024))
    end)

    it("takes any exponent for the bases 0, 1 and -1", function ()
      local huge = bigint(10) ^ 30
      assert.is_true(bigint.eq(bigint(-1) ^ huge, 1))
      assert.is_true(bigint.eq(bigint(-1) ^ (huge + 1), -1))
      assert.is_true(bigint.eq(bigint(0) ^ huge, 0))
    end)

    it("negates", function ()
      assert.equal("-12345678901234567890", tostring(-bigint("12345678901234567890")))
      assert.equal("0", tostring(-bigint(0)))
    end)

    it("matches Lua's & | ~ and shifts on int64 values", function ()
      local vals = { 0, 1, -1, 5, -5, 123456789, -987654321, math.maxinteger // 3 }
      for _, a in ipairs(vals) do
        for _, b in ipairs{ 0, 1, -1, 3, -7, 255, -256 } do
          assert.equal(tostring(a & b), tostring(bigint(a) & b))
          assert.equal(tostring(a | b), tostring(a | bigint(b)))
          assert.equal(tostring(a ~ b), tostring(bigint(a) ~ bigint(b)))
        end
        assert.equal(tostring(~a), tostring(~bigint(a)))
        for n = 0, 20 do   -- shifts are arithmetic: floor division by 2^n
          assert.equal(tostring(a // (1 << n)), tostring(bigint(a) >> n))
          assert.equal(tostring(a // (1 << n)), tostring(bigint(a) << -n))
        end
      end
      assert.is_true(bigint(1) << 100 == bigint(2) ^ 100)
      assert.is_true(bigint.eq(bigint(-1) >> 1000, -1))
      assert.equal("limit", raised(function () return bigint(1) << (1 << 40) end).kind)
    end)

    it("mixes floats with an integral value", function ()
      assert.equal("12", tostring(bigint(10) + 2.0))
      assert.equal("5", tostring(10.0 // bigint(2)))
    end)

    describe("refuses", function ()
      it("non-integral floats", function ()
        local err = raised(function () return bigint(1) + 1.5 end)
        assert.equal("argument", err.kind)
        assert.matches("'%+'", err.message)
        assert.equal("argument", raised(function () return bigint(1) * (0 / 0) end).kind)
      end)

      it("operands of other types", function ()
        local err = raised(function () return bigint(1) + "2" end)
        assert.equal("argument", err.kind)
        assert.matches("got string", err.message)
        assert.equal("argument", raised(function () return {} - bigint(1) end).kind)
      end)

      it("'/' as not exact", function ()
        local err = raised(function () return bigint(6) / 2 end)
        assert.equal("argument", err.kind)
        assert.matches("'/'", err.message)
      end)

      it("division by zero", function ()
        assert.equal("argument", raised(function () return bigint(1) // 0 end).kind)
        assert.equal("argument", raised(function () return bigint(1) % bigint(0) end).kind)
      end)

      it("division by zero in Lua's words", function ()
        -- the same text Lua gives for integers: 'n%%0' and 'n//0'
        local _, lua_mod = pcall(function () local z = 0 return 7 % z end)
        local err = raised(function () return bigint(7) % 0 end)
        assert.truthy(err.message:find("attempt to perform 'n%0'", 1, true), err.message)
        assert.truthy(lua_mod:find("attempt to perform 'n%0'", 1, true), lua_mod)
        err = raised(function () return bigint(7) // 0 end)
        assert.truthy(err.message:find("attempt to perform 'n//0'", 1, true), err.message)
      end)

      it("negative and non-integral exponents", function ()
        local err = raised(function () return bigint(2) ^ -1 end)
        assert.equal("argument", err.kind)
        assert.matches("negative exponent", err.message)
        assert.equal("argument", raised(function () return bigint(2) ^ 0.5 end).kind)
      end)

      it("powers over the size cap, before computing", function ()
        local err = raised(function () return bigint(3) ^ (1 << 40) end)
        assert.equal("limit", err.kind)
        assert.matches("2%^32 bits", err.message)
        assert.equal("limit", raised(function () return bigint(2) ^ (bigint(2) ^ 70) end).kind)
      end)
    end)
  end)

  describe("comparison", function ()
    it("== compares bigints by value", function ()
      assert.is_true(bigint("100") == bigint(100))
      assert.is_false(bigint(1) == bigint(2))
    end)

    it("== with a Lua number is false, as the language decides", function ()
      assert.is_false(bigint(5) == 5)
    end)

    it("eq and cmp take Lua numbers on either side", function ()
      assert.is_true(bigint.eq(bigint(5), 5))
      assert.is_true(bigint.eq(5, bigint(5)))
      assert.is_true(bigint.eq(5.0, bigint(5)))
      assert.is_false(bigint.eq(bigint(5), 5.5))
      assert.equal(-1, bigint.cmp(3, bigint(4)))
      assert.equal(1, bigint.cmp(bigint(2) ^ 70, math.maxinteger))
      assert.equal(0, bigint.cmp(bigint(-7), -7))
      assert.equal(-1, bigint.cmp(bigint(2) ^ 70, math.huge))
    end)

    it("< and <= work mixed, also with non-integral floats", function ()
      assert.is_true(bigint(3) < 4)
      assert.is_true(2 < bigint(3))
      assert.is_true(bigint(3) <= 3)
      assert.is_true(bigint(3) <= 3.5)
      assert.is_false(bigint(4) <= 3.5)
      assert.is_true(-(bigint(2) ^ 64) < math.mininteger)
    end)

    it("NaN is unordered, and cmp refuses it", function ()
      assert.is_false(bigint(1) < 0 / 0)
      assert.is_false(bigint(1) >= 0 / 0)
      assert.is_false(bigint.eq(bigint(1), 0 / 0))
      assert.equal("argument", raised(bigint.cmp, bigint(1), 0 / 0).kind)
    end)

    it("eq refuses other types", function ()
      assert.equal("argument", raised(bigint.eq, bigint(1), "1").kind)
    end)
  end)

  describe("conversion", function ()
    it("tostring matches string.format for int64 values", function ()
      local next_int = lcg(11)
      for _ = 1, 100 do
        local v = next_int() * 3 - next_int()
        assert.equal(string.format("%d", v), tostring(bigint(v)))
        assert.equal(v, bigint(v):tointeger())
      end
    end)

    it("tostring takes a base", function ()
      assert.equal(string.format("%x", 3735928559), bigint(3735928559):tostring(16))
      assert.equal("-101", bigint(-5):tostring(2))
      assert.equal("z", bigint(35):tostring(36))
      assert.equal("argument", raised(function () return bigint(1):tostring(40) end).kind)
    end)

    it("reads back what it writes, in every base", function ()
      local x = -(bigint(7) ^ 500 + 1)
      for base = 2, 36 do
        assert.is_true(bigint(x:tostring(base), base) == x)
      end
    end)

    it("concatenates with strings and numbers", function ()
      assert.equal("10x", bigint(10) .. "x")
      assert.equal("y-3", "y" .. bigint(-3))
      assert.equal("1.52", 1.5 .. bigint(2))
      assert.equal("argument", raised(function () return bigint(1) .. {} end).kind)
    end)

    it("digits is exact around powers of the base", function ()
      for k = 1, 60 do
        local p = bigint(10) ^ k
        assert.equal(k + 1, p:digits())
        assert.equal(k, (p - 1):digits())
        assert.equal(k + 1, (-p):digits())
        assert.equal(#(p - 1):tostring(7), (p - 1):digits(7))
      end
      assert.equal(1, bigint(0):digits())
    end)

    it("digits agrees with the text of big numbers", function ()
      local x = bigint(3) ^ 100000
      assert.equal(#tostring(x), x:digits())
      assert.equal(#x:tostring(3), x:digits(3))
      assert.equal(100001, x:digits(3))
    end)

    it("bits counts the bits of the magnitude", function ()
      assert.equal(0, bigint(0):bits())
      assert.equal(1, bigint(1):bits())
      assert.equal(64, bigint(math.mininteger):bits())
      assert.equal(101, (bigint(2) ^ 100):bits())
    end)

    it("sign is -1, 0 or 1", function ()
      assert.equal(-1, bigint(-5):sign())
      assert.equal(0, bigint(0):sign())
      assert.equal(1, (bigint(2) ^ 100):sign())
    end)

    it("tointeger gives nil when the value does not fit", function ()
      assert.equal(math.maxinteger, bigint(math.maxinteger):tointeger())
      assert.equal(math.mininteger, bigint(math.mininteger):tointeger())
      assert.is_nil((bigint(math.maxinteger) + 1):tointeger())
      assert.is_nil((bigint(math.mininteger) - 1):tointeger())
    end)

    describe("of numbers over a million digits", function ()
      -- these take the parallel path; the expected text is built in Lua.
      -- Under valgrind, 520,000 digits: 1.73M bits, still split twice by 4
      -- threads (a part is split while it has 800,000 bits, core/bignum.c)
      local DIGITS = size(1200000, 520000)

      it("round-trips random digits", function ()
        local next_int = lcg(5)
        local parts = {}
        for i = 1, DIGITS // 8 do parts[i] = string.format("%08d", next_int() % 100000000) end
        local s = "9" .. table.concat(parts)   -- DIGITS + 1 digits
        local x = bigint(s)
        assert.equal(s, tostring(x))
        assert.equal(s, split._split_tostring(x, 2))
        assert.equal(s, split._split_tostring(x, 4))
        assert.equal(#s, x:digits())
      end)

      it("keeps the leading zeros of the low halves", function ()
        local s = "7" .. string.rep("0", DIGITS) .. "123"
        assert.equal(s, tostring(bigint(s)))
        assert.equal(s, split._split_tostring(bigint(s), 2))
        assert.equal("-" .. s, split._split_tostring(-bigint(s), 4))
        local e = size(2000000, DIGITS)
        local t = "1" .. string.rep("0", e)
        assert.equal(t, tostring(bigint(10) ^ e))
        assert.equal(t, split._split_tostring(bigint(10) ^ e, 4))
      end)
    end)
  end)

  describe("number theory", function ()
    local function gcd (a, b)   -- Euclid on Lua integers
      a, b = math.abs(a), math.abs(b)
      while b ~= 0 do a, b = b, a % b end
      return a
    end

    it("divmod gives floor quotient and remainder", function ()
      for _, p in ipairs{ { 7, 2 }, { -7, 2 }, { 7, -2 }, { -7, -2 }, { 0, 5 } } do
        local q, r = bigint.divmod(bigint(p[1]), p[2])
        assert.equal(p[1] // p[2], q:tointeger())
        assert.equal(p[1] % p[2], r:tointeger())
      end
      assert.equal("argument", raised(bigint.divmod, 1, 0).kind)
    end)

    it("gcd matches Euclid's algorithm", function ()
      local next_int = lcg(13)
      for _ = 1, 100 do
        local a, b = next_int() % 1000000 - 500000, next_int() % 1000000 - 500000
        assert.equal(gcd(a, b), bigint.gcd(bigint(a), b):tointeger())
      end
      assert.equal(0, bigint.gcd(0, 0):tointeger())
      local p = bigint(2) ^ 89 - 1   -- a Mersenne prime
      assert.is_true(bigint.gcd(p * 6, p * 35) == p)
    end)

    it("powmod matches repeated multiplication", function ()
      local acc = 1
      for e = 0, 60 do
        assert.equal(acc, bigint.powmod(3, e, 1000003):tointeger())
        acc = acc * 3 % 1000003
      end
      assert.equal(5, bigint.powmod(3, -1, 7):tointeger())   -- 3 * 5 = 15 = 1 mod 7
      assert.equal(-5, bigint.powmod(-3, 5, -7):tointeger())  -- Python's sign rule
      assert.equal("argument", raised(bigint.powmod, 2, -1, 4).kind)
      assert.equal("argument", raised(bigint.powmod, 2, 3, 0).kind)
    end)

    it("isqrt is the floor of the square root", function ()
      for _, n in ipairs{ bigint(0), bigint(1), bigint(10) ^ 41, bigint(2) ^ 301 - 1 } do
        local r = bigint.isqrt(n)
        assert.is_true(r * r <= n and n < (r + 1) * (r + 1))
      end
      assert.equal("argument", raised(bigint.isqrt, -1).kind)
    end)

    it("abs drops the sign", function ()
      assert.is_true((bigint(-5)):abs() == bigint(5))
      assert.is_true((bigint(5)):abs() == bigint(5))
    end)

    it("tonumber gives a float, infinite beyond the range", function ()
      assert.equal(12345.0, bigint(12345):tonumber())
      assert.equal(2.0 ^ 100, (bigint(2) ^ 100):tonumber())
      assert.equal(-math.huge, (-(bigint(2) ^ 2000)):tonumber())
    end)
  end)

  describe("factorial", function ()
    it("matches a multiplication loop", function ()
      for n = 0, 40 do
        assert.is_true(bigint.factorial(n) == product(1, n))
      end
      assert.is_true(bigint.factorial(1000) == product(1, 1000))
    end)

    it("has the published digit counts and digit sum", function ()
      assert.equal(2568, bigint.factorial(1000):digits())
      assert.equal(35660, bigint.factorial(10000):digits())
      assert.equal(456574, bigint.factorial(100000):digits())
      local sum = 0
      for d in tostring(bigint.factorial(100)):gmatch("%d") do sum = sum + tonumber(d) end
      assert.equal(648, sum)
    end)

    it("gives the same value on threads as on one", function ()
      -- under valgrind without 600000: 250001 is split as well
      for _, n in ipairs(size({ 10, 99999, 250001, 600000 }, { 10, 99999, 250001 })) do
        assert.is_true(bigint.factorial(n, { threads = 2 }) == bigint.factorial(n))
      end
    end)

    it("split over threads gives GMP's value (mpz_fac_ui)", function ()
      -- under valgrind without 600000: 250001 has split products too
      for _, n in ipairs(size({ 65536, 65537, 131071, 250001, 600000 },
                              { 65536, 65537, 131071, 250001 })) do
        for _, k in ipairs{ 2, 3, 4 } do
          assert.is_true(split._split_factorial(n, k) == bigint.factorial(n))
        end
      end
    end)

    it("split over threads has Legendre's count of trailing zeros", function ()
      local n = size(300000, 150000)
      local zeros, p = 0, 5
      while p <= n do zeros = zeros + n // p; p = p * 5 end
      local f = split._split_factorial(n, 2)
      assert.equal(zeros, #tostring(f):match("0*$"))
      assert.is_true(f // bigint.factorial(n - 1) == bigint(n))
    end)

    it("takes an integral float or a bigint", function ()
      assert.is_true(bigint.factorial(20.0) == bigint.factorial(bigint(20)))
    end)

    describe("refuses", function ()
      it("negative n", function ()
        local err = raised(bigint.factorial, -1)
        assert.equal("argument", err.kind)
        assert.matches("negative", err.message)
      end)

      it("non-integer n", function ()
        assert.equal("argument", raised(bigint.factorial, 1.5).kind)
        assert.equal("argument", raised(bigint.factorial, "10").kind)
        assert.equal("argument", raised(bigint.factorial, nil).kind)
      end)

      it("n over the cap, without computing", function ()
        local err = raised(bigint.factorial, 10 ^ 8 + 1)
        assert.equal("limit", err.kind)
        assert.matches("100000000", err.message)
        assert.equal("limit", raised(bigint.factorial, bigint(10) ^ 30).kind)
      end)

      it("unknown options", function ()
        local err = raised(bigint.factorial, 10, { thread = 2 })
        assert.equal("argument", err.kind)
        assert.matches("unknown option 'thread'", err.message)
      end)

      it("a bad thread count", function ()
        assert.equal("argument", raised(bigint.factorial, 10, { threads = 0 }).kind)
        assert.equal("argument", raised(bigint.factorial, 10, { threads = "2" }).kind)
        assert.equal("argument", raised(bigint.factorial, 10, 2).kind)
      end)
    end)
  end)

  describe("running out of memory", function ()
    -- core.bigint._fail_after(k): the k-th GMP allocation from now fails, as
    -- under a full machine; each operation must raise kind "limit", free
    -- what it had allocated (checked by LeakSanitizer under make check-asan)
    -- and leave the state working
    local ops = {
      { "+", function (a, b) return a + b end },
      { "*", function (a, b) return a * b end },
      { "//", function (a, b) return a // b end },
      { "%", function (a, b) return a % b end },
      { "^", function (a) return a ^ 7 end },
      { "<<", function (a) return a << 3000 end },
      { "&", function (a, b) return a & -b end },
      { "-", function (a) return -a end },
      { "~", function (a) return ~a end },
      { "tostring", function (a) return tostring(a * a) end },
      { "digits", function (a) return (a * a):digits() end },
      { "parse", function (a) return bigint(a:tostring(16), 16) end },
      { "divmod", function (a, b) return bigint.divmod(a * a, b) end },
      { "gcd", function (a, b) return bigint.gcd(a * 6, b * 4) end },
      { "powmod", function (a, b) return bigint.powmod(b, -5, a) end },
      { "isqrt", function (a) return bigint.isqrt(a * a) end },
      { "abs", function (a) return (-a):abs() end },
      { "factorial", function () return bigint.factorial(20000) end },
    }

    it("raises kind limit from every operation, and goes on", function ()
      local a, b = bigint(3) ^ 5000 + 1, bigint(7) ^ 1200
      for _, op in ipairs(ops) do
        local failed = 0
        for k = 1, 6 do
          split._fail_after(k)
          local ok, err = pcall(op[2], a, b)
          split._fail_after(0)
          if not ok then
            failed = failed + 1
            assert.is_true(Error.is(err, "limit"), op[1] .. ": " .. tostring(err))
            assert.matches("not enough memory", err.message)
          end
        end
        assert.is_true(failed > 0, op[1] .. " never failed")
        local x, y = op[2](a, b), op[2](a, b)   -- works again
        assert.is_true(bigint.isbigint(x) and bigint.eq(x, y) or x == y, op[1])
      end
    end)

    it("stops every thread of a split factorial and reports limit once", function ()
      local n = size(300000, 150000)
      local good = split._split_factorial(n, 2)
      local failed = 0
      for k = 1, size(120, 30), 3 do
        split._fail_after(k)
        local ok, err = pcall(split._split_factorial, n, 2)
        split._fail_after(0)
        if ok then assert.is_true(bigint.eq(good, err))
        else
          failed = failed + 1
          assert.is_true(Error.is(err, "limit"), tostring(err))
        end
      end
      assert.is_true(failed > 0)
      assert.is_true(bigint.eq(good, split._split_factorial(n, 2)))
    end)

    it("reports limit from a split conversion to text", function ()
      local big = bigint.factorial(size(200000, 120000))
      local text = split._split_tostring(big, 4)
      local failed = 0
      for k = 1, 40, 2 do
        split._fail_after(k)
        local ok, err = pcall(split._split_tostring, big, 4)
        split._fail_after(0)
        if ok then assert.equal(text, err)
        else
          failed = failed + 1
          assert.is_true(Error.is(err, "limit"), tostring(err))
        end
      end
      assert.is_true(failed > 0)
    end)

    it("reports limit from a bigint arriving in a state with no memory left", function ()
      local pool <close> = concur.ThreadPool(1)
      local f = pool:submit(function () return require("concur.bigint")(3) ^ 4000 end)
      concur.wait({ f })     -- done, nothing decoded yet
      split._fail_after(1)   -- the first allocation: decoding the result here
      local ok, err = pcall(f.result, f)
      split._fail_after(0)
      assert.is_false(ok)
      assert.is_true(Error.is(err, "limit"), tostring(err))
      assert.is_true(bigint.eq(bigint(3) ^ 4000, f:result()))
    end)

    -- a real lowered address-space limit: GMP would abort the process; not
    -- under sanitizers or valgrind, whose allocators need the address space
    it("raises kind limit under a lowered ulimit -v instead of aborting #nosan #novalgrind", function ()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([[
        local bigint = require "concur.bigint"
        local core = require "concur.core"
        local ok, err = pcall(function () return bigint(2) ^ (2^31) + 1 end)
        print("pow", ok, ok or err.kind, ok or err.message)
        collectgarbage()
        ok, err = pcall(core.bigint._split_factorial, 3 * 10^7, 2)
        print("factorial", ok, ok or err.kind)
        collectgarbage()
        print("after", bigint.factorial(30))
      ]])
      f:close()
      local p = io.popen(("ulimit -v 400000; LUA_PATH=%q LUA_CPATH=%q timeout -s KILL 120 " ..
        "lua5.4 %s 2>&1; echo \"exit=$?\""):format(package.path, package.cpath, script))
      local out = p:read("a")
      p:close()
      os.remove(script)
      assert.matches("pow\tfalse\tlimit\t'%+': not enough memory", out)
      assert.matches("factorial\tfalse\tlimit", out)
      assert.matches("after\t265252859812191058636308480000000", out)
      assert.matches("exit=0", out)
    end)
  end)

  describe("memory", function ()
    -- #stress: long, and RSS means nothing under valgrind or sanitizers
    it("stays flat over a million bigints made and dropped #stress", function ()
      local base = bigint(10) ^ 300   -- a few hundred bytes of limbs each
      for i = 1, 100000 do local _ = base + i end
      collectgarbage()
      local before = rss_kb()
      for i = 1, 1000000 do local _ = base + i end
      local after = rss_kb()
      if before and after then assert.is_true(after - before < 20000, (after - before) .. " KB more") end
    end)

    it("collects big temporaries promptly #stress", function ()
      local _ = bigint.factorial(1000000)
      _ = nil
      collectgarbage()
      local before = rss_kb()
      for _ = 1, 20 do local _ = bigint.factorial(1000000) end   -- 2.3 MB each
      local after = rss_kb()
      if before and after then assert.is_true(after - before < 25000, (after - before) .. " KB more") end
    end)

    it("<close> frees a bigint; using it then raises 'closed'", function ()
      local kept
      do
        local b <close> = bigint(10) ^ 1000
        kept = b
      end
      assert.equal("bigint (closed)", tostring(kept))
      assert.equal("closed", raised(function () return kept + 1 end).kind)
      assert.equal("closed", raised(function () return kept:digits() end).kind)
      local err = raised(function () return concur.spawn(function (x) return x end, kept) end)
      assert.equal("transfer", err.kind)
      assert.truthy(err.message:find("a closed value", 1, true), err.message)
    end)
  end)

  describe("crossing states", function ()
    local core = require "concur.core"

    it("goes to a thread and back by value", function ()
      local big = bigint.factorial(1000)
      local ok, r = concur.spawn(function (b) return b * 2 end, big):join()
      assert.is_true(ok)
      assert.is_true(bigint.isbigint(r))
      assert.is_true(r == big * 2)
    end)

    it("keeps negatives and zero", function ()
      for _, v in ipairs{ bigint(0), bigint(-1), -(bigint(2) ^ 200), bigint(math.mininteger) } do
        local ok, r = concur.spawn(function (b) return b end, v):join()
        assert.is_true(ok)
        assert.is_true(r == v)
        assert.equal(v:sign(), r:sign())
      end
    end)

    it("keeps numbers of millions of digits", function ()
      local big = -bigint.factorial(1000000)
      local ok, digits, back = concur.spawn(function (b) return b:digits(), b end, big):join()
      assert.is_true(ok)
      assert.equal(5565709, digits)
      assert.is_true(back == big)
    end)

    it("passes through a Queue between threads", function ()
      local q = concur.Queue()
      local t = concur.spawn(function (qq)
        local b = qq:get()
        qq:put(b + 1)
      end, q)
      local big = bigint(2) ^ 10000
      q:put(big)
      assert.is_true(t:join())
      assert.is_true(q:get() == big + 1)
    end)

    it("runs in ThreadPool tasks", function ()
      local pool <close> = concur.ThreadPool(2)
      local res = pool:map(function (n)
        return require("concur.bigint").factorial(n):digits()
      end, { 10, 100, 1000 })
      assert.same({ 7, 158, 2568 }, res)
    end)

    it("round-trips through the encoded bytes", function ()
      for _, v in ipairs{ bigint(0), bigint(-5), bigint(2) ^ 64, -(bigint(3) ^ 5000),
                          -bigint.factorial(1000000) } do
        local back = core.decode(core.encode(v))
        assert.is_true(back == v)
      end
    end)

    it("refuses malformed encoded bytes without crashing", function ()
      local s = core.encode(bigint(2) ^ 100)   -- 'v' 'G' len sign words
      local at = assert(s:find("vG", 1, true))
      local head = s:sub(1, at + 1)
      local function try (payload)
        local ok, r = pcall(core.decode, head .. string.char(#payload) .. payload)
        if ok then assert.is_true(r == nil or bigint.isbigint(r))
        else assert.is_true(Error.is(r, "transfer"), tostring(r)) end
        return ok
      end
      assert.is_false(try(""))                        -- no sign byte
      assert.is_false(try("\2"))                      -- bad sign
      assert.is_false(try("\0\1\2\3"))                -- not whole words
      assert.is_false(try("\1"))                      -- negative zero
      assert.is_false(try("\0" .. string.rep("\0", 8)))   -- top word zero
      assert.is_true(try("\1\5\0\0\0\0\0\0\0"))       -- -5
      local next_int = lcg(3)
      for _ = 1, 2000 do
        local n = next_int() % 40
        local t = {}
        for i = 1, n do t[i] = string.char(next_int() % 256) end
        try(table.concat(t))
      end
    end)
  end)
end)
