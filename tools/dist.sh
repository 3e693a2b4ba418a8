#!/bin/sh
# make dist: the source rock build/dist/concur-<version>-1.src.rock. A
# source rock is a zip of the rockspec and the source archive its
# source.url names; `luarocks pack` would fetch that archive from the URL,
# which is not public yet, so the zip is made here the same way:
# rockspecs/concur-<version>-1.rockspec, and concur-<version>.tar.gz made
# from the tree (git archive: the tracked files, with their changes not yet
# committed) plus doc/ (README, CHANGELOG, LICENSE, docs/*.md and the LDoc
# reference).
# It installs offline: luarocks --lua-version=5.4 install FILE.
set -e
cd "$(dirname "$0")/.."
ver=$(sed -n 's/^#define CONCUR_VERSION "concur \(.*\)"$/\1/p' csrc/concur.h)
spec="rockspecs/concur-$ver-1.rockspec"
out=build/dist
mkdir -p build
lua5.4 tools/rockspec.lua build/rockspec.check
for f in concur-scm-1.rockspec "$spec"; do
  cmp -s "build/rockspec.check/$f" "$f" || {
    echo "dist: $f is stale or missing: run make rockspec (and commit it)" >&2; exit 1; }
done
rm -rf "$out" && mkdir -p "$out/stage"
tree=$(git stash create 2>/dev/null)
git archive --format=tar --prefix="concur-$ver/" "${tree:-HEAD}" | tar -x -C "$out/stage"
make --no-print-directory -s docs >/dev/null
mkdir -p "$out/stage/concur-$ver/doc"
cp -r build/docs/. "$out/stage/concur-$ver/doc/"
cp README.md CHANGELOG.md LICENSE docs/*.md "$out/stage/concur-$ver/doc/"
tar -C "$out/stage" -czf "$out/concur-$ver.tar.gz" "concur-$ver"
cp "$spec" "$out/"
(cd "$out" && zip -q -X "concur-$ver-1.src.rock" "concur-$ver-1.rockspec" "concur-$ver.tar.gz")
rm -rf "$out/stage"
echo "dist: $out/concur-$ver-1.src.rock"
