/*
** semaphore.c: concur.Semaphore and concur.BoundedSemaphore, counters of
** tokens shared by threads and processes.
**
** Thin bindings over core/sync.h's concur_sem (shaped as event.c): no C
** mutex held here, ever.
*/
#include <stdlib.h>
#include "shared.h"
#include "core/sync.h"

/* ---- Semaphore and BoundedSemaphore ---------------------------------------
** One struct and one set of methods: a BoundedSemaphore is a Semaphore
** whose bound is its initial value; each has its own class (metatable), so
** the methods' self check (concur_shared_selfstate, shared.h) accepts both.
*/

static const concur_objtype sem_type = { "concur.Semaphore",
                                         concur_shobj_destroy, NULL };
static const concur_objtype bsem_type = { "concur.BoundedSemaphore",
                                          concur_shobj_destroy, NULL };
static const concur_shclass sem_class = { &sem_type, CONCUR_SH_SEM,
                                          NULL, NULL };
static const concur_shclass bsem_class = { &bsem_type, CONCUR_SH_BSEM,
                                           NULL, NULL };

#define checksem(L) ((concur_sem *)concur_shared_selfstate(L, &sem_type))
#define SEMOF(o) ((concur_sem *)concur_shared_state(o))

static int sem_make (lua_State *L, int bounded) {
  lua_Integer n = lua_isnoneornil(L, 1) ? 1 : concur_checkinteger(L, 1);
  concur_shobj *c;
  if (n < 0) return concur_argerror(L, 1, "initial value must be >= 0");
  if (n > 0x7fffffffffffL)
    return concur_argerror(L, 1, "initial value too large");
  c = concur_shared_new(L, bounded ? &bsem_class : &sem_class,
                      sizeof(concur_sem));
  return concur_shared_made(L, c, concur_sem_init(c->state, (long)n,
                            bounded ? (long)n : -1, 1));
}

/*** Semaphore([n]) --> a semaphore holding n tokens (default 1) */
static int sem_new (lua_State *L) {
  return sem_make(L, 0);
}

/*** BoundedSemaphore([n]) --> a semaphore that may never hold more than n */
static int bsem_new (lua_State *L) {
  return sem_make(L, 1);
}

/*** sem:acquire([timeout]) --> true with a token, false on timeout */
static int sem_acquire (lua_State *L) {
  concur_sem *s = checksem(L);
  if (lua_gettop(L) == 1 && concur_sem_tryacquire(s)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  {
    double deadline = concur_shared_deadline(L, 2);
    int rc;
    CONCUR_WAIT(L, rc, concur_sem_acquire(s, deadline));
    return concur_shared_result(L, rc, "acquire");
  }
}

/*** sem:release([n]): gives back n tokens (default 1); a BoundedSemaphore
** raises "argument" when it would hold more than its initial value */
static int sem_release (lua_State *L) {
  concur_sem *s = checksem(L);
  lua_Integer n = lua_isnoneornil(L, 2) ? 1 : concur_checkinteger(L, 2);
  if (n < 1) return concur_argerror(L, 2, "must be at least 1");
  if (n > 0x7fffffffffffL) return concur_argerror(L, 2, "too large");
  if (concur_sem_release(s, (long)n) != 0)
    return concur_error(L, "argument", "semaphore released too many times");
  return 0;
}

/*** sem:value() --> tokens available now (a hint: it may change at once) */
static int sem_value (lua_State *L) {
  lua_pushinteger(L, atomic_load(&checksem(L)->value));
  return 1;
}

/*** sem:is_bounded() --> boolean */
static int sem_isbounded (lua_State *L) {
  lua_pushboolean(L, checksem(L)->bound >= 0);
  return 1;
}

static int sem_take (concur_obj *o, double deadline) {
  return concur_sem_acquire(SEMOF(o), deadline);
}

static int sem_untake (concur_obj *o) {
  concur_sem_release(SEMOF(o), 1);
  return 0;   /* a guard never over-releases: it took its token */
}

/*** sem:guard() --> to-be-closed: takes a token, gives it back when closed */
static int sem_guard (lua_State *L) {
  return concur_shared_guard(L, concur_shared_self(L, &sem_type), sem_take,
                           sem_untake);
}

static const luaL_Reg sem_methods[] = {
  {"acquire", sem_acquire},
  {"release", sem_release},
  {"value", sem_value},
  {"is_bounded", sem_isbounded},
  {"guard", sem_guard},
  {NULL, NULL}
};


void concur_semaphore_open (lua_State *L) {
  static const luaL_Reg ctors[] = {
    {"Semaphore", sem_new},
    {"BoundedSemaphore", bsem_new},
    {NULL, NULL}
  };
  concur_shclass_register(&sem_class);
  concur_shclass_register(&bsem_class);
  concur_shared_class(L, &sem_type, sem_methods, NULL, 0);
  concur_shared_class(L, &bsem_type, sem_methods, NULL, 0);
  luaL_setfuncs(L, ctors, 0);
}
