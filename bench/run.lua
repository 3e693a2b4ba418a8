-- make bench: runs every bench/NN_*.lua in order, each in its own process.
local dir = arg and arg[0]:match("^(.*)/[^/]*$") or "bench"
local p = io.popen("ls " .. dir .. "/[0-9][0-9]_*.lua 2>/dev/null")
local files = {}
for f in p:lines() do files[#files + 1] = f end
p:close()
local only = os.getenv("BENCH")
local failed = 0
for _, f in ipairs(files) do
  if not only or f:find(only, 1, true) then
    io.write(("\n== %s ==\n"):format(f))
    io.flush()
    local ok = os.execute(("lua5.4 %q"):format(f))
    if not ok then failed = failed + 1 end
  end
end
os.exit(failed == 0 and 0 or 1)
