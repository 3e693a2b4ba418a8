/*
** fuzz_decode.c: libFuzzer target for concur's decoder. Any bytes must
** decode or raise a "transfer" error: never crash, hang or leak.
*/
#include <stdint.h>
#include <lualib.h>
#include "concur.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static lua_State *L;
static unsigned long runs;

static int decode (lua_State *L1) {
  size_t n;
  const char *p = lua_tolstring(L1, 1, &n);
  return concur_decode(L1, p, n, NULL, 0);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  if (L == NULL) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "concur.core", luaopen_concur_core, 0);
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, decode);
  lua_pushlstring(L, (const char *)data, size);
  lua_pcall(L, 1, LUA_MULTRET, 0);
  lua_settop(L, 0);
  if (++runs % 1000 == 0) lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
