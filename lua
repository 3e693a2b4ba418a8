#!/bin/sh
# ./lua FILE [ARGS]: runs lua5.4 with this checkout's ./lua_modules first on
# the module paths, building it first when it is missing or stale.
here=$(cd "$(dirname "$0")" && pwd)

if [ -z "$CONCUR_NO_BUILD" ]; then
  make -s -C "$here" all >&2 || exit 1
fi
LUA_PATH="$here/lua_modules/share/lua/5.4/?.lua;$here/lua_modules/share/lua/5.4/?/init.lua;;"
LUA_CPATH="$here/lua_modules/lib/lua/5.4/?.so;;"
export LUA_PATH LUA_CPATH
exec lua5.4 "$@"
