-- busted's helper (.busted): a plain `busted` in a fresh or edited
-- checkout first brings the build in build/tree up to date with `make`,
-- so the specs never load a missing or stale concur.core. Runs that load
-- another build (the sanitizer trees) or set CONCUR_NO_BUILD skip it.
local root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers/[^/]*$")) or "."
if os.getenv("CONCUR_NO_BUILD") or not package.cpath:find("build/tree/", 1, true) then
  return
end
local ok = os.execute(("make -s -C %q all 1>&2"):format(root))
if not ok then
  error("concur is not built and `make` failed (see above): run `make` in " .. root
    .. " first, then busted", 0)
end
