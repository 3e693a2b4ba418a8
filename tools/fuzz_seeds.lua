-- Writes real encoded messages as the fuzzer's seed corpus.
local core = require "concur.core"
local dir = assert(arg[1], "usage: fuzz_seeds.lua DIR")
local shared = { 1, 2 }
local cyc = { name = "c" }
cyc.self = cyc
local seeds = {
  { nil, true, false, 0, -1, math.mininteger, 1.5, -0.0, 0 / 0, "" },
  { "hello\0world", ("x"):rep(300) },
  { { 1, 2, 3, a = { b = { c = "d" } }, [true] = 1.25 } },
  { { a = shared, b = shared }, cyc },
  { string.format, math.max, print },
  { function(x) return x + 1 end },
  { string },
  -- a table whose metatable travels by name (a Response)
  { setmetatable({ status = 200, body = "x" },
      { __name = "concur.fetch.Response", __concur_restore = true }) },
}
for i, values in ipairs(seeds) do
  local f = assert(io.open(("%s/seed%02d"):format(dir, i), "wb"))
  f:write(core.encode(table.unpack(values, 1, 10)))
  f:close()
end
