-- The smoke test of an installed rock (tools/dist-check.sh runs it from a
-- temporary directory, with only the fresh tree on the module paths).
--   lua5.4 smoke.lua BASE_URL TREE VERSION
local base, tree, version = arg[1], arg[2], arg[3]
local concur = require "concur"
local fetch = require "concur.fetch"
local bigint = require "concur.bigint"

local function check(cond, what)
  if not cond then error("smoke: " .. what, 2) end
  print("ok  " .. what)
end

for _, m in ipairs { "concur", "concur.core", "concur.fetch", "concur.bigint" } do
  local where = package.searchpath(m, package.path) or package.searchpath(m, package.cpath)
  check(where and where:sub(1, #tree) == tree, m .. " loads from the installed tree: " .. tostring(where))
end
check(concur._VERSION == "concur " .. version, "concur._VERSION is " .. concur._VERSION)

do
  local pool <close> = concur.ThreadPool(2)
  local sq = pool:map(function(x) return x * x end, { 1, 2, 3, 4 })
  check(table.concat(sq, " ") == "1 4 9 16", "ThreadPool:map")
  local q = concur.Queue()
  pool:submit(function() for i = 1, 10 do q:put(i) end q:close() end)
  local sum = 0
  for v in q:items() do sum = sum + v end
  check(sum == 55, "a Queue fed from a pool task")
end

do
  local ppool <close> = concur.ProcessPool(2)
  local total = concur.Value(0)
  ppool:map(function(x) total:add(x) end, { 1, 2, 3, 4 })
  check(total:get() == 10, "ProcessPool:map with a shared Value")
  local f = ppool:submit(function() return require("concur.bigint").factorial(20):tostring() end)
  check(f:result() == "2432902008176640000", "a ProcessPool task requires concur.bigint")
end

do
  local client <close> = fetch.Client { concurrency = 4 }
  local rs = client:get_all { base .. "/bytes/5", base .. "/status/404" }
  check(rs[1].status == 200 and rs[1].body == "xxxxx", "fetch from a local server")
  check(rs[2].status == 404, "fetch gets a 404 as a Response")
end

check(bigint.factorial(1000):digits() == 2568, "bigint.factorial(1000) has 2568 digits")
check(tostring(bigint("123456789012345678901234567890") * 2) == "246913578024691357802469135780",
      "bigint arithmetic")
print("smoke: all ok")
