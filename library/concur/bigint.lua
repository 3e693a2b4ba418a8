---@meta concur.bigint
-- Lua Language Server definitions for concur.bigint (see library/concur.lua).

--- A GMP big integer: + - * // % ^ unary- & | ~ << >> and < <= with
--- bigints and Lua integers mixed; / raises kind "argument". Lua calls
--- __eq only between two userdata: use bigint.eq with Lua numbers.
---@class concur.bigint
---@operator add(concur.bigint|integer): concur.bigint
---@operator sub(concur.bigint|integer): concur.bigint
---@operator mul(concur.bigint|integer): concur.bigint
---@operator idiv(concur.bigint|integer): concur.bigint
---@operator mod(concur.bigint|integer): concur.bigint
---@operator pow(integer): concur.bigint
---@operator unm: concur.bigint
---@operator band(concur.bigint|integer): concur.bigint
---@operator bor(concur.bigint|integer): concur.bigint
---@operator bxor(concur.bigint|integer): concur.bigint
---@operator bnot: concur.bigint
---@operator shl(integer): concur.bigint
---@operator shr(integer): concur.bigint
---@operator concat(string|number|concur.bigint): string
local B = {}

--- The digits in base 2..36 (default 10), lower case, with a "-" sign.
---@param base? integer
---@return string
function B:tostring(base) end

--- The exact number of digits of |b| in base 2..36 (default 10).
---@param base? integer
---@return integer
function B:digits(base) end

--- The number of bits of |b|; 0 for zero.
---@return integer
function B:bits() end

---@return -1|0|1
function B:sign() end

--- b as a Lua integer, or nil when it does not fit.
---@return integer?
function B:tointeger() end

--- b as a float (truncated toward zero), +-inf beyond range.
---@return number
function B:tonumber() end

---@return concur.bigint
function B:abs() end

---@alias concur.bigint.like concur.bigint|integer|string

--- The module; calling it makes a bigint: bigint(x [, base]).
---@class concur.bigintlib
---@overload fun(x: concur.bigint.like|number, base?: integer): concur.bigint
local bigint = {}

--- Makes a bigint from a bigint, an integer, an integral float or a string
--- (decimal, 0x/0b/0o, or digits in base 2..36).
---@param x concur.bigint.like|number
---@param base? integer
---@return concur.bigint
function bigint.new(x, base) end

--- n! for 0 <= n <= 10^8; threads > 1 splits the work over idle CPUs.
---@param n integer|concur.bigint
---@param opts? { threads?: integer }
---@return concur.bigint
function bigint.factorial(n, opts) end

--- Are a and b equal? Bigints and Lua numbers on either side.
---@param a concur.bigint|number
---@param b concur.bigint|number
---@return boolean
function bigint.eq(a, b) end

--- -1, 0 or 1.
---@param a concur.bigint|number
---@param b concur.bigint|number
---@return -1|0|1
function bigint.cmp(a, b) end

--- Floor quotient and remainder (as // and %).
---@param a concur.bigint.like
---@param b concur.bigint.like
---@return concur.bigint q
---@return concur.bigint r
function bigint.divmod(a, b) end

--- The greatest common divisor, >= 0.
---@param a concur.bigint.like
---@param b concur.bigint.like
---@return concur.bigint
function bigint.gcd(a, b) end

--- b^e mod m, as Python's pow(b, e, m).
---@param b concur.bigint.like
---@param e concur.bigint.like
---@param m concur.bigint.like
---@return concur.bigint
function bigint.powmod(b, e, m) end

--- The integer square root (floor) of n >= 0.
---@param n concur.bigint.like
---@return concur.bigint
function bigint.isqrt(n) end

--- Is x a bigint?
---@param x any
---@return boolean
function bigint.isbigint(x) end

return bigint
