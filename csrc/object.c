/*
** object.c: proxies of shared objects in a Lua state.
**
** A proxy is a userdata holding one reference to a concur_obj; __gc and
** __close drop it (idempotently) and never block. The metatable's __concur
** field (a light userdata: the concur_objtype) marks the object as one that
** the codec sends by reference.
*/
#include "concur.h"



static int proxy_gc (lua_State *L) {
  concur_proxy *p = lua_touserdata(L, 1);
  if (p && p->o) {
    concur_obj *o = p->o;
    p->o = NULL;
    concur_obj_unref(o);
  }
  return 0;
}

static int proxy_tostring (lua_State *L) {
  concur_proxy *p = lua_touserdata(L, 1);
  luaL_getmetafield(L, 1, "__name");
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
  lua_pushcfunction(L, proxy_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, proxy_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushlightuserdata(L, (void *)t);
  lua_setfield(L, -2, "__concur");
  if (metamethods) luaL_setfuncs(L, metamethods, 0);
  lua_newtable(L);
  if (methods) luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
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

concur_obj *concur_testobj (lua_State *L, int arg, const concur_objtype *t) {
  concur_proxy *p = luaL_testudata(L, arg, t->name);
  return p ? p->o : NULL;
}

concur_obj *concur_checkobj (lua_State *L, int arg, const concur_objtype *t) {
  concur_proxy *p = luaL_testudata(L, arg, t->name);
  if (p == NULL) concur_typeerror(L, arg, t->name);
  if (p->o == NULL) concur_error(L, "closed", "%s is closed", t->name);
  return p->o;
}
