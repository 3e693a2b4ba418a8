/*
** proxy.c: proxies of shared objects in a Lua state.
**
** A proxy is a userdata holding one reference to a concur_obj; __gc drops
** it (idempotently) and never blocks. The class's metatable is registered
** with the codec (codec.c), which then sends the object by reference.
**
** Every metamethod checks its argument 1, as Lua's own libraries do: a
** metamethod can be called directly (getmetatable(x).__gc(y)) with any
** value, and a table can be given a proxy's metatable. So each metamethod
** is a closure whose upvalue 1 is its class's metatable, and argument 1
** counts as a proxy only when it is a userdata with exactly that metatable
** and a proxy's size (a foreign userdata given the metatable through the
** debug library is not one).
*/
#include "concur.h"

concur_proxy *concur_toproxy (lua_State *L, int arg, int mt) {
  concur_proxy *p = lua_touserdata(L, arg);
  int same;
  mt = lua_absindex(L, mt);
  if (p == NULL || lua_type(L, arg) != LUA_TUSERDATA ||
      lua_rawlen(L, arg) != sizeof *p || !lua_getmetatable(L, arg))
    return NULL;
  same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return same ? p : NULL;
}

concur_proxy *concur_selfproxy (lua_State *L) {
  concur_proxy *p = concur_toproxy(L, 1, lua_upvalueindex(1));
  if (p == NULL) {
    const char *name = "concur object";
    if (lua_type(L, lua_upvalueindex(1)) == LUA_TTABLE &&
        lua_getfield(L, lua_upvalueindex(1), "__name") == LUA_TSTRING)
      name = lua_tostring(L, -1);
    concur_typeerror(L, 1, name);
  }
  return p;
}

/* __gc, and the default __close: drops the proxy's reference (the object
** lives on while other references hold it; this proxy then raises
** "closed"); idempotent. */
static int proxy_gc (lua_State *L) {
  concur_proxy *p = concur_selfproxy(L);
  if (p->o) {
    concur_obj *o = p->o;
    p->o = NULL;
    concur_obj_unref(o);
  }
  return 0;
}

static int proxy_tostring (lua_State *L) {
  concur_proxy *p = concur_selfproxy(L);
  lua_getfield(L, lua_upvalueindex(1), "__name");
  if (p->o) lua_pushfstring(L, "%s: %p", lua_tostring(L, -1), (void *)p->o);
  else lua_pushfstring(L, "%s (closed)", lua_tostring(L, -1));
  return 1;
}

void concur_newclass (lua_State *L, const concur_objtype *t,
                      const luaL_Reg *methods, const luaL_Reg *metamethods) {
  if (!luaL_newmetatable(L, t->name)) {   /* already made in this state */
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, proxy_gc, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__gc");
  lua_setfield(L, -2, "__close");   /* classes may give their own */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, proxy_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  if (metamethods) {
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, metamethods, 1);
  }
  lua_newtable(L);
  if (methods) luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  concur_class_byref(L, -1, t);
  lua_pop(L, 1);
}

void concur_pushobj (lua_State *L, concur_obj *o) {
  concur_proxy *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->o = NULL;   /* closed until its metatable is set: errors leave it safe */
  if (luaL_getmetatable(L, o->type->name) != LUA_TTABLE) {
    lua_pop(L, 1);
    luaL_requiref(L, "concur.core", luaopen_concur_core, 0);
    lua_pop(L, 1);
    if (luaL_getmetatable(L, o->type->name) != LUA_TTABLE)
      concur_error(L, "transfer", "no class '%s' in this state",
                   o->type->name);
  }
  lua_setmetatable(L, -2);
  p->o = concur_obj_ref(o);
}

/* The proxy of class t at arg, or NULL. */
static concur_proxy *testproxy (lua_State *L, int arg, const concur_objtype *t) {
  concur_proxy *p;
  arg = lua_absindex(L, arg);
  luaL_getmetatable(L, t->name);
  p = concur_toproxy(L, arg, -1);
  lua_pop(L, 1);
  return p;
}

concur_obj *concur_testobj (lua_State *L, int arg, const concur_objtype *t) {
  concur_proxy *p = testproxy(L, arg, t);
  return p ? p->o : NULL;
}

concur_obj *concur_checkobj (lua_State *L, int arg, const concur_objtype *t) {
  concur_proxy *p = testproxy(L, arg, t);
  if (p == NULL) concur_typeerror(L, arg, t->name);
  if (p->o == NULL) concur_error(L, "closed", "%s is closed", t->name);
  return p->o;
}
