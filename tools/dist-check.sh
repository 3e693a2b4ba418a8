#!/bin/sh
# make dist-check: installs build/dist/concur-<version>-1.src.rock as a user
# would, into a fresh luarocks tree in a temporary directory, with no rock
# server to download from (offline), then runs tools/smoke.lua from that
# directory with only that tree on the module paths: a ThreadPool, a Queue,
# a ProcessPool, a fetch from a local HTTP server and bigint. It also checks
# that the docs, the examples, the Lua Language Server definitions and the
# command line tools were installed.
set -e
cd "$(dirname "$0")/.."
root=$(pwd)
ver=$(sed -n 's/^#define CONCUR_VERSION "concur \(.*\)"$/\1/p' csrc/concur.h)
rock="$root/build/dist/concur-$ver-1.src.rock"
tmp=$(mktemp -d /tmp/concur-dist.XXXXXX)
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
mkdir "$tmp/noserver"
cp "$rock" tools/smoke.lua "$tmp/"
cd "$tmp"
# --only-server: an empty directory is the only rock server, so nothing is
# downloaded; the build uses a fresh HOME, as on a fresh machine.
HOME="$tmp" luarocks --lua-version=5.4 --tree="$tmp/tree" --only-server="$tmp/noserver" \
  install "concur-$ver-1.src.rock" > "$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log"; echo "dist-check: luarocks install failed" >&2; exit 1; }
rockdir="$tmp/tree/lib/luarocks/rocks-5.4/concur/$ver-1"
for f in doc/index.html doc/README.md doc/LICENSE doc/API.md examples/06_factorials.lua \
         library/concur.lua library/concur/fetch.lua; do
  [ -f "$rockdir/$f" ] || { echo "dist-check: the rock did not install $f" >&2; exit 1; }
done
if grep -q concur-worker "$rockdir/concur-$ver-1.rockspec"; then
  [ -x "$tmp/tree/bin/concur-worker" ] || {
    echo "dist-check: the rock did not install bin/concur-worker" >&2; exit 1; }
fi
# A local HTTP server for the fetch (the specs' own, Python's stdlib).
python3 "$root/spec/helpers/httpserver.py" > "$tmp/server.out" &
srv=$!
while ! grep -q '^PORT' "$tmp/server.out" 2>/dev/null; do
  kill -0 "$srv" 2>/dev/null || { echo "dist-check: the test server did not start" >&2; exit 1; }
  sleep 0.05
done
port=$(sed -n 's/^PORT \([0-9]*\).*/\1/p' "$tmp/server.out")
# Only the fresh tree on the paths (luarocks path), nothing of the checkout.
eval "$(luarocks --lua-version=5.4 --tree="$tmp/tree" path)"
export LUA_PATH LUA_CPATH
unset CONCUR_NO_BUILD
lua5.4 smoke.lua "http://127.0.0.1:$port" "$tmp/tree" "$ver"
if [ -x "$tmp/tree/bin/concur-worker" ]; then
  "$tmp/tree/bin/concur-worker" --help > "$tmp/worker.out" 2>&1 &&
    grep -q '^usage: concur-worker' "$tmp/worker.out" || {
    cat "$tmp/worker.out"; echo "dist-check: the installed concur-worker does not run" >&2; exit 1; }
  echo "ok  the installed concur-worker runs"
fi
echo "dist-check: concur-$ver-1.src.rock installs offline and works from $tmp"
