/*
** signal.c: concur.Event, concur.Semaphore, concur.BoundedSemaphore and
** concur.Barrier: the objects threads use to signal one another.
**
** Thin bindings over core/sync.h, shaped as sync.c: a refcounted struct per
** object, methods as closures over their metatable (sync_lua.h), and no C
** mutex held here, ever: the core takes and drops its own.
*/
#include <stdlib.h>
#include "sync_lua.h"
#include "core/sync.h"

/* ---- Event ------------------------------------------------------------- */

static const concur_objtype event_type = { "concur.Event",
                                           concur_shobj_destroy, NULL };
static const concur_shclass event_class = { &event_type, CONCUR_SH_EVENT,
                                            NULL, NULL };

#define checkevent(L) ((concur_event *)concur_sync_selfstate(L, &event_type))

/*** Event() --> a new event, not set */
static int event_new (lua_State *L) {
  concur_shobj *c = concur_sync_new(L, &event_class, sizeof(concur_event));
  return concur_sync_shmade(L, c, concur_event_init(c->state, 1));
}

/*** ev:set(): sets the flag and wakes every waiter */
static int event_set (lua_State *L) {
  concur_event_set(checkevent(L));
  return 0;
}

/*** ev:clear() */
static int event_clear (lua_State *L) {
  concur_event_clear(checkevent(L));
  return 0;
}

/*** ev:is_set() --> boolean */
static int event_isset (lua_State *L) {
  lua_pushboolean(L, concur_event_isset(checkevent(L)));
  return 1;
}

/*** ev:wait([timeout]) --> true once set, false when the timeout passed */
static int event_wait (lua_State *L) {
  concur_event *e = checkevent(L);
  return concur_sync_result(L, concur_event_wait(e, concur_sync_deadline(L, 2)),
                            "wait");
}

static const luaL_Reg event_methods[] = {
  {"set", event_set},
  {"clear", event_clear},
  {"is_set", event_isset},
  {"wait", event_wait},
  {NULL, NULL}
};

/* ---- Semaphore and BoundedSemaphore ---------------------------------------
** One struct and one set of methods: a BoundedSemaphore is a Semaphore
** whose bound is its initial value; each has its own class (metatable), so
** the methods' self check (sync_lua.h) accepts both.
*/

static const concur_objtype sem_type = { "concur.Semaphore",
                                         concur_shobj_destroy, NULL };
static const concur_objtype bsem_type = { "concur.BoundedSemaphore",
                                          concur_shobj_destroy, NULL };
static const concur_shclass sem_class = { &sem_type, CONCUR_SH_SEM,
                                          NULL, NULL };
static const concur_shclass bsem_class = { &bsem_type, CONCUR_SH_BSEM,
                                           NULL, NULL };

#define checksem(L) ((concur_sem *)concur_sync_selfstate(L, &sem_type))
#define SEMOF(o) ((concur_sem *)concur_sync_state(o))

static int sem_make (lua_State *L, int bounded) {
  lua_Integer n = lua_isnoneornil(L, 1) ? 1 : concur_checkinteger(L, 1);
  concur_shobj *c;
  if (n < 0) return concur_argerror(L, 1, "initial value must be >= 0");
  if (n > 0x7fffffffffffL)
    return concur_argerror(L, 1, "initial value too large");
  c = concur_sync_new(L, bounded ? &bsem_class : &sem_class,
                      sizeof(concur_sem));
  return concur_sync_shmade(L, c, concur_sem_init(c->state, (long)n,
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
  return concur_sync_result(L, concur_sem_acquire(s,
                              concur_sync_deadline(L, 2)),
                            "acquire");
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
  return concur_sync_guard(L, concur_sync_self(L, &sem_type), sem_take,
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

/* ---- Barrier ----------------------------------------------------------- */

static const concur_objtype barrier_type = { "concur.Barrier",
                                             concur_shobj_destroy, NULL };
static const concur_shclass barrier_class = { &barrier_type,
                                              CONCUR_SH_BARRIER,
                                              NULL, NULL };

#define checkbarrier(L) \
  ((concur_barrier *)concur_sync_selfstate(L, &barrier_type))

/*** Barrier(n) --> a barrier for n parties */
static int barrier_new (lua_State *L) {
  lua_Integer n = concur_checkinteger(L, 1);
  concur_shobj *c;
  if (n < 1) return concur_argerror(L, 1, "parties must be at least 1");
  if (n > 0x7fffffff) return concur_argerror(L, 1, "too many parties");
  c = concur_sync_new(L, &barrier_class, sizeof(concur_barrier));
  return concur_sync_shmade(L, c, concur_barrier_init(c->state, (int)n, 1));
}

/*** barrier:wait([timeout]) --> index in 0..n-1 (arrival order). Raises
** "broken" when the barrier is (or becomes) broken, and "timeout" when the
** timeout passes, which breaks it for the others (as Python). */
static int barrier_wait (lua_State *L) {
  concur_barrier *b = checkbarrier(L);
  int index = 0;
  int rc = concur_barrier_wait(b, concur_sync_deadline(L, 2), &index);
  if (rc == CONCUR_OK) {
    lua_pushinteger(L, index);
    return 1;
  }
  if (rc == CONCUR_BROKEN)
    return concur_error(L, "broken", "barrier is broken");
  return concur_raisewait(L, rc, "barrier wait");
}

/*** barrier:abort(): breaks it; every waiter, now and later, raises
** "broken" until reset() */
static int barrier_abort (lua_State *L) {
  concur_barrier_abort(checkbarrier(L));
  return 0;
}

/*** barrier:reset(): back to empty and unbroken; current waiters raise
** "broken" */
static int barrier_reset (lua_State *L) {
  concur_barrier_reset(checkbarrier(L));
  return 0;
}

/*** barrier:parties() --> n */
static int barrier_parties (lua_State *L) {
  lua_pushinteger(L, checkbarrier(L)->parties);
  return 1;
}

/*** barrier:n_waiting() --> parties waiting now */
static int barrier_nwaiting (lua_State *L) {
  lua_pushinteger(L, concur_barrier_waiting(checkbarrier(L)));
  return 1;
}

/*** barrier:broken() --> boolean */
static int barrier_broken (lua_State *L) {
  lua_pushboolean(L, concur_barrier_isbroken(checkbarrier(L)));
  return 1;
}

static const luaL_Reg barrier_methods[] = {
  {"wait", barrier_wait},
  {"abort", barrier_abort},
  {"reset", barrier_reset},
  {"parties", barrier_parties},
  {"n_waiting", barrier_nwaiting},
  {"broken", barrier_broken},
  {NULL, NULL}
};

void concur_signal_open (lua_State *L) {
  static const luaL_Reg ctors[] = {
    {"Event", event_new},
    {"Semaphore", sem_new},
    {"BoundedSemaphore", bsem_new},
    {"Barrier", barrier_new},
    {NULL, NULL}
  };
  concur_shclass_register(&event_class);
  concur_shclass_register(&sem_class);
  concur_shclass_register(&bsem_class);
  concur_shclass_register(&barrier_class);
  concur_sync_class(L, &event_type, event_methods, NULL, 0);
  concur_sync_class(L, &sem_type, sem_methods, NULL, 0);
  concur_sync_class(L, &bsem_type, sem_methods, NULL, 0);
  concur_sync_class(L, &barrier_type, barrier_methods, NULL, 0);
  luaL_setfuncs(L, ctors, 0);
}
