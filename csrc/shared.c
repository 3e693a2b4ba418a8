/*
** shared.c: what the bindings of shared objects have in common (shared.h):
** classes whose methods check 'self' fast, constructors of objects in the
** shared arena, timeouts and wait results, and guards (to-be-closed values
** that release what they took).
**
** Each object is a refcounted C struct (obj.h) around a Lua-free primitive
** of core/sync.h; each state holds proxies. No C mutex is ever held here.
*/
#include <stdlib.h>
#include <string.h>
#include "shared.h"

/* ---- shared helpers ---------------------------------------------------- */

/* __eq: two proxies of this class (upvalue 1: its metatable) are equal
** when they share the object (a shared object that came back from another
** process has a proxy of its own, over the same state); anything else is
** not equal. */
static int sync_eq (lua_State *L) {
  concur_proxy *a = concur_toproxy(L, 1, lua_upvalueindex(1));
  concur_proxy *b = concur_toproxy(L, 2, lua_upvalueindex(1));
  int same = a && b && a->o && b->o;
  if (same && a->o != b->o)
    same = concur_shclass_of(a->o->type) != NULL
           && ((concur_shobj *)a->o)->off == ((concur_shobj *)b->o)->off;
  lua_pushboolean(L, same);
  return 1;
}

void concur_shared_class (lua_State *L, const concur_objtype *t,
                        const luaL_Reg *methods, const luaL_Reg *meta,
                        int nup) {
  concur_newclass(L, t, NULL, meta);
  luaL_getmetatable(L, t->name);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, sync_eq, 1);
  lua_setfield(L, -2, "__eq");
  lua_getfield(L, -1, "__index");
  lua_rotate(L, -(nup + 2), 2);          /* mt, __index, upvalues... */
  lua_pushvalue(L, -(nup + 2));          /* upvalue 1: the metatable */
  lua_rotate(L, -(nup + 1), 1);
  luaL_setfuncs(L, methods, nup + 1);    /* pops the upvalues */
  lua_pop(L, 2);
}

concur_shobj *concur_shared_new (lua_State *L, const concur_shclass *c,
                               size_t size) {
  concur_shobj *o = concur_shobj_new(c, size);
  if (o == NULL) {
    char why[400];
    concur_shm_why(why, sizeof why);
    concur_error(L, "limit", "cannot create a %s: %s", c->type->name, why);
  }
  return o;
}

int concur_shared_made (lua_State *L, concur_shobj *c, int rc) {
  if (rc != 0) {
    const char *name = c->cls->type->name;
    concur_obj_unref(&c->obj);
    return concur_error(L, "limit", "cannot create a %s", name);
  }
  concur_pushobj(L, &c->obj);
  concur_obj_unref(&c->obj);
  return 1;
}

double concur_shared_deadline (lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return CONCUR_NODEADLINE;
  if (lua_isboolean(L, arg))
    return lua_toboolean(L, arg) ? CONCUR_NODEADLINE : concur_now();
  return concur_optdeadline(L, arg);
}

int concur_shared_result (lua_State *L, int rc, const char *what) {
  if (rc != CONCUR_OK && rc != CONCUR_TIMEDOUT)
    return concur_raisewait(L, rc, what);
  lua_pushboolean(L, rc == CONCUR_OK);
  return 1;
}

/* ---- guards ---------------------------------------------------------------
** A guard is a small userdata: the object (one reference) and how to release
** it. __close releases once; __gc only drops the reference (a guard that was
** never closed leaves the lock held, as a forgotten release would).
*/

typedef struct guard {
  concur_obj *o;
  concur_release_fn release;
} guard;

#define GUARD "concur.Guard"

static guard *checkguard (lua_State *L) {
  guard *g = luaL_testudata(L, 1, GUARD);
  if (g == NULL || lua_rawlen(L, 1) != sizeof *g)
    concur_typeerror(L, 1, GUARD);
  return g;
}

static int guard_close (lua_State *L) {
  guard *g = checkguard(L);
  if (g->o) {
    concur_obj *o = g->o;
    int rc = g->release(o);
    g->o = NULL;
    concur_obj_unref(o);
    if (rc != 0)
      return concur_error(L, "argument", "guard released by a thread that "
                          "does not hold its lock");
  }
  return 0;
}

static int guard_gc (lua_State *L) {
  guard *g = checkguard(L);
  if (g->o) {
    concur_obj *o = g->o;
    g->o = NULL;
    concur_obj_unref(o);
  }
  return 0;
}

int concur_shared_guard (lua_State *L, concur_obj *o, concur_take_fn take,
                       concur_release_fn release) {
  guard *g = lua_newuserdatauv(L, sizeof *g, 0);   /* first: it may raise */
  int rc;
  g->o = NULL;
  luaL_setmetatable(L, GUARD);
  CONCUR_WAIT(L, rc, take(o, CONCUR_NODEADLINE));
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "acquire");
  g->release = release;
  g->o = concur_obj_ref(o);
  return 1;
}

static void guard_open (lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__close", guard_close},
    {"__gc", guard_gc},
    {NULL, NULL}
  };
  if (luaL_newmetatable(L, GUARD)) {
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "release");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  concur_class_stays(L, GUARD, "a guard belongs to the state that took "
                     "its lock: release it there (leave its scope), and send "
                     "the lock itself");
}

/* core._shm_used() --> bytes of the shared arena in use (for specs) */
static int shm_used (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)concur_shm_used());
  return 1;
}

void concur_shared_open (lua_State *L) {
  guard_open(L);
  lua_pushcfunction(L, shm_used);
  lua_setfield(L, -2, "_shm_used");
}
