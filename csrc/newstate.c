/*
** newstate.c: the Lua states that workers, threads and worker processes run
** in: the standard libraries, the creator's package paths, concur loaded,
** and coroutine.resume/wrap replaced by the interruptible ones of
** interrupt.c.
*/
#include <stdlib.h>
#include <string.h>
#include <lualib.h>
#include "worker.h"

/* Called in protected mode: opens the libraries, sets the paths, loads concur. */
static int init_state (lua_State *L) {
  const char *path = lua_touserdata(L, 1);
  const char *cpath = lua_touserdata(L, 2);
  luaL_openlibs(L);
  concur_interrupt_opencoroutines(L);
  lua_getglobal(L, "package");
  if (path) { lua_pushstring(L, path); lua_setfield(L, -2, "path"); }
  if (cpath) { lua_pushstring(L, cpath); lua_setfield(L, -2, "cpath"); }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "concur");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {   /* the Lua layer is missing: */
    lua_pop(L, 1);                          /* the core is enough to run */
    luaL_requiref(L, "concur.core", luaopen_concur_core, 0);
    lua_pop(L, 1);
  }
  return 0;
}

lua_State *concur_newstate (const char *path, const char *cpath) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  lua_pushcfunction(L, init_state);
  lua_pushlightuserdata(L, (void *)path);
  lua_pushlightuserdata(L, (void *)cpath);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

void concur_getpaths (lua_State *L, char **path, char **cpath) {
  lua_getglobal(L, "package");
  *path = *cpath = NULL;
  if (lua_istable(L, -1)) {
    if (lua_getfield(L, -1, "path") == LUA_TSTRING)
      *path = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "cpath") == LUA_TSTRING)
      *cpath = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

