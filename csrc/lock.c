/*
** lock.c: concur.Lock, concur.RLock and concur.Condition.
**
** Each object is a shared object (shared.h) around a Lua-free primitive of
** core/sync.h. No C mutex is ever held here: the core functions take and
** drop their own, so every Lua error is raised with no lock of ours held.
** A Condition holds a reference to its lock object, and releases and
** re-takes it around each wait.
*/
#include <stdlib.h>
#include <string.h>
#include "shared.h"
#include "core/sync.h"

/* ---- Lock -------------------------------------------------------------- */

static const concur_objtype lock_type = { "concur.Lock",
                                          concur_shobj_destroy, NULL };
static const concur_shclass lock_class = { &lock_type, CONCUR_SH_LOCK,
                                           NULL, NULL };

#define checklock(L) ((concur_lock *)concur_shared_selfstate(L, &lock_type))
#define LOCKOF(o) ((concur_lock *)concur_shared_state(o))

/*** Lock() --> a new, unlocked Lock */
static int lock_new (lua_State *L) {
  concur_shobj *c = concur_shared_new(L, &lock_class, sizeof(concur_lock));
  return concur_shared_made(L, c, concur_lock_init(c->state, 1));
}

/* Pushes the result of an acquire: true, and "owner died" when the lock
** was taken over from a process that died holding it. */
static int acquired (lua_State *L, int rc) {
  if (rc != CONCUR_OWNERDEAD) return concur_shared_result(L, rc, "acquire");
  lua_pushboolean(L, 1);
  lua_pushliteral(L, "owner died");
  return 2;
}

/*** lock:acquire([timeout]) --> true, or false when the timeout passed;
** true, "owner died" when it was taken over from a process that died
** holding it */
static int lock_acquire (lua_State *L) {
  concur_lock *l = checklock(L);
  if (lua_gettop(L) == 1 && concur_lock_tryacquire(l)) {   /* fast path */
    lua_pushboolean(L, 1);
    return 1;
  }
  {
    double deadline = concur_shared_deadline(L, 2);
    int rc;
    CONCUR_WAIT(L, rc, concur_lock_acquire(l, deadline));
    return acquired(L, rc);
  }
}

/*** lock:release(): any thread may release; raises "argument" if unlocked */
static int lock_release (lua_State *L) {
  if (concur_lock_release(checklock(L)) != 0)
    return concur_error(L, "argument", "release of an unlocked lock");
  return 0;
}

/*** lock:locked() --> boolean */
static int lock_locked (lua_State *L) {
  lua_pushboolean(L, concur_lock_locked(checklock(L)));
  return 1;
}

static int lock_take (concur_obj *o, double deadline) {
  int rc = concur_lock_acquire(LOCKOF(o), deadline);
  return rc == CONCUR_OWNERDEAD ? CONCUR_OK : rc;
}

static int lock_untake (concur_obj *o) {
  return concur_lock_release(LOCKOF(o));
}

/*** lock:guard() --> to-be-closed: acquires now, releases when closed */
static int lock_guard (lua_State *L) {
  return concur_shared_guard(L, concur_shared_self(L, &lock_type), lock_take,
                           lock_untake);
}

static const luaL_Reg lock_methods[] = {
  {"acquire", lock_acquire},
  {"release", lock_release},
  {"locked", lock_locked},
  {"guard", lock_guard},
  {NULL, NULL}
};

/* ---- RLock ------------------------------------------------------------- */

static const concur_objtype rlock_type = { "concur.RLock",
                                           concur_shobj_destroy, NULL };
static const concur_shclass rlock_class = { &rlock_type, CONCUR_SH_RLOCK,
                                            NULL, NULL };

#define checkrlock(L) ((concur_rlock *)concur_shared_selfstate(L, &rlock_type))
#define RLOCKOF(o) ((concur_rlock *)concur_shared_state(o))

/*** RLock() --> a new reentrant lock, owned by the thread that takes it */
static int rlock_new (lua_State *L) {
  concur_shobj *c = concur_shared_new(L, &rlock_class, sizeof(concur_rlock));
  return concur_shared_made(L, c, concur_rlock_init(c->state, 1));
}

/*** rlock:acquire([timeout]) --> boolean; the owner may take it again;
** true, "owner died" as Lock's */
static int rlock_acquire (lua_State *L) {
  concur_rlock *r = checkrlock(L);
  double deadline = concur_shared_deadline(L, 2);
  int rc;
  CONCUR_WAIT(L, rc, concur_rlock_acquire(r, deadline));
  return acquired(L, rc);
}

/*** rlock:release(): one level; raises "argument" unless the caller owns it */
static int rlock_release (lua_State *L) {
  if (concur_rlock_release(checkrlock(L)) != 0)
    return concur_error(L, "argument",
                        "release of an RLock not owned by this thread");
  return 0;
}

/*** rlock:locked() --> boolean (by any thread) */
static int rlock_locked (lua_State *L) {
  lua_pushboolean(L, concur_lock_locked(&checkrlock(L)->base));
  return 1;
}

static int rlock_take (concur_obj *o, double deadline) {
  int rc = concur_rlock_acquire(RLOCKOF(o), deadline);
  return rc == CONCUR_OWNERDEAD ? CONCUR_OK : rc;
}

static int rlock_untake (concur_obj *o) {
  return concur_rlock_release(RLOCKOF(o));
}

/*** rlock:guard() --> to-be-closed */
static int rlock_guard (lua_State *L) {
  return concur_shared_guard(L, concur_shared_self(L, &rlock_type), rlock_take,
                           rlock_untake);
}

static const luaL_Reg rlock_methods[] = {
  {"acquire", rlock_acquire},
  {"release", rlock_release},
  {"locked", rlock_locked},
  {"guard", rlock_guard},
  {NULL, NULL}
};

/* ---- Condition ------------------------------------------------------------
** The lock is a Lock or an RLock (a new RLock by default, as Python's).
** wait: queue up on the condvar, release the lock (every level of an
** RLock), sleep, take the lock back (deaf to task interrupts, so that the
** caller's guard always finds it held), then report.
*/

typedef struct ccond {
  int reentrant;           /* its lock is an RLock */
  concur_shref lock;       /* one reference */
  concur_condvar cv;
} ccond;

static void cond_release (void *state) {
  ccond *c = state;
  concur_condvar_destroy(&c->cv);
  concur_shref_drop(&c->lock);
}

static const concur_objtype cond_type = { "concur.Condition",
                                          concur_shobj_destroy, NULL };
static const concur_shclass cond_class = { &cond_type, CONCUR_SH_CONDITION,
                                           cond_release, NULL };

#define checkcond(L) ((ccond *)concur_shared_selfstate(L, &cond_type))
#define CLOCKOF(c) ((concur_lock *)concur_shref_state(&(c)->lock))
#define CRLOCKOF(c) ((concur_rlock *)concur_shref_state(&(c)->lock))

/*** Condition([lock]) --> a condition variable over lock (Lock or RLock) */
static int cond_new (lua_State *L) {
  concur_obj *lock;
  int reentrant = 1, rc;
  concur_shobj *o;
  ccond *c;
  if (lua_isnoneornil(L, 1)) {   /* a new RLock, held by its proxy here */
    lua_settop(L, 0);
    rlock_new(L);
  }
  if ((lock = concur_testobj(L, 1, &rlock_type)) == NULL) {
    lock = concur_testobj(L, 1, &lock_type);
    reentrant = 0;
  }
  if (lock == NULL)
    return concur_typeerror(L, 1, "concur.Lock or concur.RLock");
  o = concur_shared_new(L, &cond_class, sizeof *c);
  c = o->state;
  c->reentrant = reentrant;
  rc = concur_condvar_init(&c->cv, 1);
  if (rc == 0) concur_shobj_export(lock, &c->lock);
  return concur_shared_made(L, o, rc);
}

static int cond_take (ccond *c, double deadline) {
  int rc = c->reentrant ? concur_rlock_acquire(CRLOCKOF(c), deadline)
                        : concur_lock_acquire(CLOCKOF(c), deadline);
  return rc == CONCUR_OWNERDEAD ? CONCUR_OK : rc;
}

static int cond_untake (ccond *c) {
  return c->reentrant ? concur_rlock_release(CRLOCKOF(c))
                      : concur_lock_release(CLOCKOF(c));
}

static int cond_owned (ccond *c) {
  if (c->reentrant) return concur_rlock_owned(CRLOCKOF(c));
  return concur_lock_locked(CLOCKOF(c));
}

/* One wait; returns a wait result, -1 when the lock is not held, or -2
** when there is no memory to wait (the lock was not released). Never
** raises (it runs inside CONCUR_WAIT). */
static int cond_wait1 (ccond *c, double deadline) {
  uint64_t w;
  long levels = 1;
  int rc;
  if (!cond_owned(c)) return -1;
  if (concur_condvar_enter(&c->cv, &w) != 0) return -2;
  if (c->reentrant) levels = concur_rlock_releaseall(CRLOCKOF(c));
  else concur_lock_release(CLOCKOF(c));
  rc = concur_condvar_sleep(&c->cv, w, deadline);
  if (c->reentrant) concur_rlock_restore(CRLOCKOF(c), levels);
  else concur_lock_reacquire(CLOCKOF(c));
  return rc;
}

static int notheld (lua_State *L, const char *what) {
  return concur_error(L, "argument", "cannot %s on an un-acquired lock", what);
}

/* Raises for a negative result of cond_wait1. */
static int notwaited (lua_State *L, int rc) {
  char why[400];
  if (rc == -1) return notheld(L, "wait");
  concur_shm_why(why, sizeof why);
  return concur_error(L, "limit", "cannot wait: %s", why);
}

/*** cond:wait([timeout]) --> true when notified, false on timeout; the
** caller must hold the lock, and holds it again on return */
static int cond_wait (lua_State *L) {
  ccond *c = checkcond(L);
  double deadline = concur_shared_deadline(L, 2);
  int rc;
  CONCUR_WAIT(L, rc, cond_wait1(c, deadline));
  if (rc < 0) return notwaited(L, rc);
  return concur_shared_result(L, rc, "wait");
}

/*** cond:wait_for(pred [, timeout]) --> the first true result of pred(),
** or false when the timeout passed first; pred runs with the lock held */
static int cond_wait_for (lua_State *L) {
  ccond *c = checkcond(L);
  double deadline;
  concur_checktype(L, 2, LUA_TFUNCTION);
  deadline = concur_shared_deadline(L, 3);
  for (;;) {
    int rc;
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    if (lua_toboolean(L, -1)) return 1;
    if (deadline >= 0 && concur_now() >= deadline) break;
    CONCUR_WAIT(L, rc, cond_wait1(c, deadline));
    if (rc < 0) return notwaited(L, rc);
    if (rc != CONCUR_OK && rc != CONCUR_TIMEDOUT)
      return concur_raisewait(L, rc, "wait_for");
    /* woken, timed out or spurious: the predicate decides */
  }
  lua_pushboolean(L, 0);
  return 1;
}

/*** cond:notify([n]): wakes the n (default 1) longest waiting threads */
static int cond_notify (lua_State *L) {
  ccond *c = checkcond(L);
  lua_Integer n = lua_isnoneornil(L, 2) ? 1 : concur_checkinteger(L, 2);
  if (n < 0) return concur_argerror(L, 2, "must be non-negative");
  if (!cond_owned(c)) return notheld(L, "notify");
  concur_condvar_notify(&c->cv, n > 0x7fffffff ? 0x7fffffff : (int)n);
  return 0;
}

/*** cond:notify_all() */
static int cond_notify_all (lua_State *L) {
  ccond *c = checkcond(L);
  if (!cond_owned(c)) return notheld(L, "notify");
  concur_condvar_notify(&c->cv, 0x7fffffff);
  return 0;
}

/*** cond:acquire([timeout]) --> boolean: takes the underlying lock */
static int cond_acquire (lua_State *L) {
  ccond *c = checkcond(L);
  double deadline = concur_shared_deadline(L, 2);
  int rc;
  CONCUR_WAIT(L, rc, cond_take(c, deadline));
  return concur_shared_result(L, rc, "acquire");
}

/*** cond:release(): releases the underlying lock */
static int cond_unlock (lua_State *L) {
  ccond *c = checkcond(L);
  if (cond_untake(c) != 0)
    return concur_error(L, "argument", "release of a lock not held");
  return 0;
}

static int condguard_take (concur_obj *o, double deadline) {
  return cond_take(concur_shared_state(o), deadline);
}

static int condguard_untake (concur_obj *o) {
  return cond_untake(concur_shared_state(o));
}

/*** cond:guard() --> to-be-closed holding the underlying lock */
static int cond_guard (lua_State *L) {
  return concur_shared_guard(L, concur_shared_self(L, &cond_type), condguard_take,
                           condguard_untake);
}

static const luaL_Reg cond_methods[] = {
  {"wait", cond_wait},
  {"wait_for", cond_wait_for},
  {"notify", cond_notify},
  {"notify_all", cond_notify_all},
  {"acquire", cond_acquire},
  {"release", cond_unlock},
  {"guard", cond_guard},
  {NULL, NULL}
};

void concur_lock_open (lua_State *L) {
  static const luaL_Reg ctors[] = {
    {"Lock", lock_new},
    {"RLock", rlock_new},
    {"Condition", cond_new},
    {NULL, NULL}
  };
  concur_shclass_register(&lock_class);
  concur_shclass_register(&rlock_class);
  concur_shclass_register(&cond_class);
  concur_shared_class(L, &lock_type, lock_methods, NULL, 0);
  concur_shared_class(L, &rlock_type, rlock_methods, NULL, 0);
  concur_shared_class(L, &cond_type, cond_methods, NULL, 0);
  luaL_setfuncs(L, ctors, 0);
}
