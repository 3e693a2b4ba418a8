/*
** shared.h: what the bindings of the objects that live in shared memory
** share (lock.c, event.c, semaphore.c, barrier.c, value.c, queue.c,
** ratelimiter.c); shared.c has the code.
**
** Method paths are kept lean, since Lock acquire+release is measured in
** tens of nanoseconds: each method is a C closure whose first upvalue is
** its class's metatable, so checking 'self' is one metatable comparison,
** with no registry lookup. Anything unusual falls back to concur_checkobj,
** which raises the proper error.
*/
#ifndef CONCUR_SHARED_H
#define CONCUR_SHARED_H

#include "concur.h"
#include "core/shobj.h"

/* Makes the class t (concur_newclass) whose methods get the metatable as
** upvalue 1, then the 'nup' values on top of the stack (popped), and adds
** __eq (same object) to the metamethods. */
void concur_shared_class (lua_State *L, const concur_objtype *t,
                        const luaL_Reg *methods, const luaL_Reg *meta,
                        int nup);

/* 'self' (argument 1) of a method made by concur_shared_class. */
static inline concur_obj *concur_shared_self (lua_State *L,
                                            const concur_objtype *t) {
  if (lua_getmetatable(L, 1)) {   /* NOTE: first, as p may be anything */
    const void *mt = lua_topointer(L, -1);
    lua_settop(L, -2);
    if (mt == lua_topointer(L, lua_upvalueindex(1))) {
      concur_proxy *p = (concur_proxy *)lua_touserdata(L, 1);
      if (p != NULL && p->o != NULL) return p->o;
    }
  }
  return concur_checkobj(L, 1, t);
}

/* A new shared object of class c (core/shobj.h) with 'size' bytes of zeroed
** state, or raises kind "limit". */
concur_shobj *concur_shared_new (lua_State *L, const concur_shclass *c,
                               size_t size);
/* Ends the constructor of a shared object: 'rc' is the result of
** initialising its state (0: done). On failure drops it and raises
** "limit", else pushes its first proxy; returns 1. */
int concur_shared_made (lua_State *L, concur_shobj *c, int rc);
/* The state of a shared object, from a concur_obj of a shared class. */
static inline void *concur_shared_state (concur_obj *o) {
  return ((concur_shobj *)o)->state;
}
/* 'self' of a method of a shared class, as its state. */
#define concur_shared_selfstate(L, t) concur_shared_state(concur_shared_self(L, t))

/* The optional timeout at 'arg' as a deadline; cheap when absent. As in
** Python's acquire(blocking) and get(block), false means "do not block"
** (timeout 0) and true "block" (no timeout). */
double concur_shared_deadline (lua_State *L, int arg);
/* Pushes true (CONCUR_OK) or false (CONCUR_TIMEDOUT) and returns 1, or
** raises for an interrupted task. */
int concur_shared_result (lua_State *L, int rc, const char *what);

/* Guards: to-be-closed values that release what guard() took. 'take'
** waits for o (a wait result of wait.h, raised unless CONCUR_OK);
** 'release' returns 0, or -1 when the caller does not hold o (raised as an
** "argument" error by __close). Pushes the guard; returns 1. */
typedef int (*concur_take_fn) (concur_obj *o, double deadline);
typedef int (*concur_release_fn) (concur_obj *o);
int concur_shared_guard (lua_State *L, concur_obj *o, concur_take_fn take,
                         concur_release_fn release);

#endif
