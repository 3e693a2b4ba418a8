--- concur.bigint: GMP big integers and fast (parallel) factorials.
--
-- The values and their operators live in C (csrc/bigint.c), so a bigint
-- works the same in every Lua state it is copied to (threads, pool tasks,
-- processes) whether or not that state required this module. This file is
-- the public face: calling the module constructs a bigint.
--
--     local bigint = require "concur.bigint"
--     local b = bigint("123456789012345678901234567890")
--     print(b * 2 + 1, b // 7, b % 7, -b, b ^ 3, bigint("0xff"), bigint("z", 36))
--     print(bigint.factorial(100000):digits(), bigint.factorial(10^7, { threads = 2 }):bits())
--
-- Operators: `+ - * // % ^` and unary `-` with bigints, Lua integers and floats
-- that hold an integer value mixed freely (a non-integral float raises kind
-- "argument"); `//` and `%` floor, as Lua's integer operators do; `/` raises
-- "argument" (bigint division is not exact); division by zero raises
-- "argument"; `^` takes a non-negative integer exponent. `& | ~ << >>` and
-- unary `~` act on an unbounded two's complement, as Python's do (so `>>` is
-- an arithmetic shift: floor division by a power of 2). `< <=` compare
-- bigints with any Lua number. `..` and `tostring` give decimal text.
--
-- Equality: Lua 5.4 calls `__eq` only when both operands are userdata, so
-- `bigint(5) == 5` is false by the language. Use `bigint.eq(a, b)` or
-- `bigint.cmp(a, b)`, which accept Lua numbers on either side.
--
-- Limits: a result over 2^32 bits (512 MiB) is refused with kind "limit"
-- before any work, as is `factorial(n)` for n over 10^8. Below that, memory
-- can still run out (a lowered `ulimit -v`, a full machine): the operation
-- then raises kind "limit" too, having freed what it had taken, where GMP
-- alone would abort the process (also when a factorial was split over
-- threads).
--
-- Memory: each bigint tells Lua's collector how much memory GMP holds for
-- it, so loops that make and drop many bigints, or a few huge ones, stay
-- flat. `local b <close> = ...` frees a huge value at once; using it after
-- that raises kind "closed".
-- @module concur.bigint

local core = require "concur.core"
local C = core.bigint

local M = {}

--- Makes a bigint.
-- @param x a bigint (copied), a Lua integer, a float with an integral value,
--   or a string: optional sign, then decimal digits, or `0x`/`0b`/`0o` and
--   hex/binary/octal digits, or digits in `base`; white space around it is
--   allowed. Malformed strings raise kind "argument" naming the input.
-- @param[opt] base 2..36, for strings only
-- @return bigint
-- @function new
M.new = C.new

--- n! for an integer 0 <= n <= 10^8.
-- @param n a non-negative integer (Lua integer, integral float or bigint)
-- @param[opt] opts `{ threads = k }`: split the work over up to k OS threads:
--   at most the CPUs this process may use that are idle at the call (threads
--   sharing a busy CPU would make the split slower than one thread). For n
--   below 100,000 one thread is used, as splitting does not pay there; the
--   value is the same either way. On 2 idle cores the split is 1.2-1.5x
--   faster than GMP's mpz_fac_ui for n from 10^5 to 10^7. The call blocks its
--   Lua state (a pool task running it is cancelled only when it returns).
-- @return bigint
-- @raise "argument" (negative, non-integer, bad option), "limit" (n > 10^8)
-- @function factorial
M.factorial = C.factorial

--- Are a and b equal? Bigints and Lua numbers on either side.
-- @return boolean
-- @function eq
M.eq = C.eq

--- Compares a and b: -1, 0 or 1. Bigints and Lua numbers on either side.
-- @return integer
-- @function cmp
M.cmp = C.cmp

--- `q, r = bigint.divmod(a, b)`: floor quotient and remainder (as `//`, `%`).
-- @function divmod
M.divmod = C.divmod

--- `bigint.gcd(a, b)`: the greatest common divisor, >= 0.
-- @function gcd
M.gcd = C.gcd

--- `bigint.powmod(b, e, m)`: b^e mod m, as Python's `pow(b, e, m)` (result
-- with the sign of m; a negative e inverts b modulo m, "argument" when b has
-- no inverse or m is 0).
-- @function powmod
M.powmod = C.powmod

--- `bigint.isqrt(n)`: the integer square root (floor) of n >= 0.
-- @function isqrt
M.isqrt = C.isqrt

--- Is x a bigint?
-- @return boolean
-- @function isbigint
M.isbigint = C.isbigint

--- Methods of a bigint `b`.
-- @section methods

--- `b:tostring([base])`: the digits in base 2..36 (default 10), lower case,
-- with '-' when negative and no prefix. Numbers of over about 240,000 digits
-- are converted on the idle CPUs (split by a power of the base; 1.4-1.6x
-- faster than GMP's mpz_get_str on 2 cores, the same text).
-- Bigints are compared by value, but as table keys they are distinct
-- objects: use `b:tostring()` as the key to index by value.
-- @function tostring

--- `b:digits([base])`: the exact number of digits of |b| in base 2..36
-- (default 10), sign not counted; 1 for zero.
-- @function digits

--- `b:bits()`: the number of bits of |b|; 0 for zero.
-- @function bits

--- `b:sign()`: -1, 0 or 1.
-- @function sign

--- `b:tointeger()`: b as a Lua integer, or nil when it does not fit.
-- @function tointeger

--- `b:tonumber()`: b as a float (truncated toward zero), +-inf beyond range.
-- @function tonumber

--- `b:abs()`: |b|.
-- @function abs

local bigint = C.new
return setmetatable(M, {
  -- bigint(x [, base]) is bigint.new(x [, base])
  __call = function (_, x, base)
    local b = bigint(x, base)   -- not a tail call, so errors name 'bigint'
    return b
  end,
})
