/*
** sync_lua.h: what the bindings of the synchronisation objects share
** (sync.c, signal.c, value.c, queue.c, ratelimit_lua.c).
**
** Method paths are kept lean, since Lock acquire+release is measured in
** tens of nanoseconds: each method is a C closure whose first upvalue is
** its class's metatable, so checking 'self' is one metatable comparison,
** with no registry lookup. Anything unusual falls back to concur_checkobj,
** which raises the proper error.
*/
#ifndef CONCUR_SYNC_LUA_H
#define CONCUR_SYNC_LUA_H

#include "concur.h"
#include "core/shm.h"

/* Makes the class t (concur_newclass) whose methods get the metatable as
** upvalue 1, then the 'nup' values on top of the stack (popped), and adds
** __eq (same object) to the metamethods. */
void concur_sync_class (lua_State *L, const concur_objtype *t,
                        const luaL_Reg *methods, const luaL_Reg *meta,
                        int nup);

/* 'self' (argument 1) of a method made by concur_sync_class. */
static inline concur_obj *concur_sync_self (lua_State *L,
                                            const concur_objtype *t) {
  if (lua_getmetatable(L, 1)) {   /* NOTE: first, as p may be anything */
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same) {
      concur_proxy *p = (concur_proxy *)lua_touserdata(L, 1);
      if (p != NULL && p->o != NULL) return p->o;
    }
  }
  return concur_checkobj(L, 1, t);
}

/* A new shared object of class c (core/shm.h) with 'size' bytes of zeroed
** state, or raises kind "limit". */
concur_shobj *concur_sync_new (lua_State *L, const concur_shclass *c,
                               size_t size);
/* Ends the constructor of a shared object: 'rc' is the result of
** initialising its state (0: done). On failure drops it and raises
** "limit", else pushes its first proxy; returns 1. */
int concur_sync_shmade (lua_State *L, concur_shobj *c, int rc);
/* The state of a shared object, from a concur_obj of a shared class. */
static inline void *concur_sync_state (concur_obj *o) {
  return ((concur_shobj *)o)->state;
}
/* 'self' of a method of a shared class, as its state. */
#define concur_sync_selfstate(L, t) concur_sync_state(concur_sync_self(L, t))

/* The optional timeout at 'arg' as a deadline; cheap when absent. As in
** Python's acquire(blocking) and get(block), false means "do not block"
** (timeout 0) and true "block" (no timeout). */
double concur_sync_deadline (lua_State *L, int arg);
/* Pushes true (CONCUR_OK) or false (CONCUR_TIMEDOUT) and returns 1, or
** raises for an interrupted task. */
int concur_sync_result (lua_State *L, int rc, const char *what);

/* Guards: to-be-closed values that release what guard() took. 'take'
** waits for o (a wait result of clock.h, raised unless CONCUR_OK);
** 'release' returns 0, or -1 when the caller does not hold o (raised as an
** "argument" error by __close). Pushes the guard; returns 1. */
typedef int (*concur_take_fn) (concur_obj *o, double deadline);
typedef int (*concur_release_fn) (concur_obj *o);
int concur_sync_guard (lua_State *L, concur_obj *o, concur_take_fn take,
                       concur_release_fn release);

/* The other parts, opened by concur_sync_open (sync.c). */
void concur_signal_open (lua_State *L);     /* Event, Semaphore, Barrier */
void concur_value_open (lua_State *L);      /* Value */
void concur_queue_open (lua_State *L);      /* Queue */
void concur_ratelimiter_open (lua_State *L);  /* RateLimiter */

#endif
