#!/bin/sh
# tools/deps.sh TARGET...: makes sure the Debian packages those make
# targets need are installed. As root it installs the missing ones; as
# another user it prints the exact apt-get line and fails. Quiet when all
# are present; does nothing on a system without dpkg.
#
# Each group lists what its target adds to the ones it builds on; a target
# that is not named here (clean, rockspec, a file) needs the build group.
# To add a dependency, add the package to the group of the first target
# that needs it.

# make: compile and link concur.core
BUILD="lua5.4 liblua5.4-dev libcurl4-openssl-dev libgmp-dev libhiredis-dev libssl-dev libxml2-dev gcc make pkg-config"
# make test: busted and what the specs run (the HTTP test server is Python,
# with a self-signed certificate made by openssl; curl drives it; the
# cluster specs start their own redis-server; the HTTP/2 specs their own
# nginx; the event-loop specs run real luv and cqueues loops)
TEST="lua-busted lua-socket lua-cjson lua-logging lua-luv lua-cqueues python3 curl openssl redis-server nginx-light"
# make lint: luacheck, the second compiler, and luassert (tools/luals_check.lua
# loads concur.testing)
LINT="lua-check clang lua-busted"
# make check: sanitizers, libFuzzer, valgrind
CHECK="clang libclang-rt-14-dev valgrind"
# make bench: the peers measured in the same run
BENCH="lua-luv wrk python3-aiohttp python3-redis python3-rq python3-celery python3-scrapy"
# make docs: LDoc
DOCS="lua5.4 lua-ldoc lua-discount"
# make dist, make dist-check: luarocks packs and installs the rock
DIST="luarocks unzip zip lua-ldoc"

[ $# -eq 0 ] && set -- all
pkgs=""
for target in "$@"; do
  case "$target" in
    docs) pkgs="$pkgs $DOCS" ;;
    test|demo) pkgs="$pkgs $BUILD $TEST" ;;
    lint) pkgs="$pkgs $BUILD $LINT" ;;
    check) pkgs="$pkgs $BUILD $TEST $LINT $CHECK" ;;
    check-asan|check-tsan|check-valgrind|fuzz) pkgs="$pkgs $BUILD $TEST $CHECK" ;;
    bench) pkgs="$pkgs $BUILD $TEST $BENCH" ;;
    dist|rock) pkgs="$pkgs $BUILD $DIST" ;;
    dist-check) pkgs="$pkgs $BUILD $TEST $DIST" ;;
    *) pkgs="$pkgs $BUILD" ;;
  esac
done

command -v dpkg-query >/dev/null 2>&1 || exit 0
missing=""
for p in $pkgs; do
  case " $missing " in *" $p "*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "concur: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null || {
    echo "concur: apt-get install failed for:$missing" >&2; exit 1; }
else
  echo "concur: 'make $*' needs Debian packages that are missing; as root, run:" >&2
  echo "  apt-get install -y$missing" >&2
  exit 1
fi
