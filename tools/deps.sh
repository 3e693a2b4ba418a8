#!/bin/sh
# Installs the Debian packages concur needs to build and test, when run as
# root; otherwise prints the command to run. Quiet when all are present.
# `deps.sh docs` checks instead what `make docs` needs (LDoc is for it only).
PKGS="lua5.4 liblua5.4-dev luarocks lua-busted lua-check lua-luv libcurl4-openssl-dev libgmp-dev pkg-config gcc clang libclang-rt-14-dev valgrind make curl openssl nginx-light wrk python3 python3-aiohttp lua-socket"
[ "$1" = docs ] && PKGS="lua5.4 lua-ldoc"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "concur: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null || {
    echo "concur: apt-get install failed for:$missing" >&2; exit 1; }
else
  echo "concur: missing Debian packages; run as root:" >&2
  echo "  apt-get install -y$missing" >&2
  exit 1
fi
