/*
** value.c: concur.Value, an atomic number shared by reference (as Python's
** multiprocessing.Value): get, set, add and compare-and-swap, each one
** atomic. An integer stays an integer and a float stays a float; add
** follows Lua's arithmetic (integers wrap around, a float makes a float).
**
** The number lives in core/sync.h's concur_value (a mutex and a tagged
** number, nothing else), so it can move to shared memory unchanged.
*/
#include <stdlib.h>
#include "shared.h"
#include "core/sync.h"

static const concur_objtype value_type = { "concur.Value",
                                           concur_shobj_destroy, NULL };
static const concur_shclass value_class = { &value_type, CONCUR_SH_VALUE,
                                            NULL, NULL };

#define checkvalue(L) ((concur_value *)concur_shared_selfstate(L, &value_type))

static concur_num checknum (lua_State *L, int arg) {
  concur_num x;
  if (lua_type(L, arg) != LUA_TNUMBER) concur_typeerror(L, arg, "number");
  x.isint = lua_isinteger(L, arg);
  if (x.isint) x.u.i = (int64_t)lua_tointeger(L, arg);
  else x.u.n = (double)lua_tonumber(L, arg);
  return x;
}

static int pushnum (lua_State *L, concur_num x) {
  if (x.isint) lua_pushinteger(L, (lua_Integer)x.u.i);
  else lua_pushnumber(L, (lua_Number)x.u.n);
  return 1;
}

/*** Value([x]) --> a shared number, initially x (default 0) */
static int value_new (lua_State *L) {
  concur_num x = { 1, { 0 } };
  concur_shobj *c;
  if (!lua_isnoneornil(L, 1)) x = checknum(L, 1);
  c = concur_shared_new(L, &value_class, sizeof(concur_value));
  return concur_shared_made(L, c, concur_value_init(c->state, x, 1));
}

/*** v:get() --> the number */
static int value_get (lua_State *L) {
  return pushnum(L, concur_value_get(checkvalue(L)));
}

/*** v:set(x) */
static int value_set (lua_State *L) {
  concur_value *v = checkvalue(L);
  concur_value_set(v, checknum(L, 2));
  return 0;
}

/*** v:add(d) --> the new value (atomically: no add is ever lost) */
static int value_add (lua_State *L) {
  concur_value *v = checkvalue(L);
  return pushnum(L, concur_value_add(v, checknum(L, 2)));
}

/*** v:cas(old, new) --> true if the value was == old and is now new */
static int value_cas (lua_State *L) {
  concur_value *v = checkvalue(L);
  concur_num old = checknum(L, 2), x = checknum(L, 3);
  lua_pushboolean(L, concur_value_cas(v, old, x));
  return 1;
}

static const luaL_Reg value_methods[] = {
  {"get", value_get},
  {"set", value_set},
  {"add", value_add},
  {"cas", value_cas},
  {NULL, NULL}
};

void concur_value_open (lua_State *L) {
  concur_shclass_register(&value_class);
  concur_shared_class(L, &value_type, value_methods, NULL, 0);
  lua_pushcfunction(L, value_new);
  lua_setfield(L, -2, "Value");
}
