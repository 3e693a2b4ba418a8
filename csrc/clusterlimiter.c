/*
** clusterlimiter.c: cluster.RateLimiter, a rate limiter shared through
** Redis by every process that names it (core/clusterrate.c): the
** interface of concur.RateLimiter. cluster.RateLimiter (in
** lua/concur/cluster.lua) reads the options and calls
** core.cluster_ratelimiter.
**
** acquire waits here, in C, so that a caller interrupted while it waits
** (a cancelled task: the interrupt hook would stop Lua code before it could
** clean up) gives its slot back, as concur.RateLimiter's callers do; the
** connection reads every reply it asked for even then (concur_redis_setuncut),
** so a caller stopped while Redis answers still learns its slot.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "concur.h"
#include "core/clusterrate.h"

#define LIMITER "concur.cluster.RateLimiter"

typedef struct limiter {
  concur_redis *r;           /* NULL once closed */
  concur_crate c;
  double rate, per, burst, timeout;
  char key[320];
} limiter;

static limiter *checklimiter (lua_State *L) {
  limiter *l = luaL_testudata(L, 1, LIMITER);
  if (l == NULL) concur_typeerror(L, 1, LIMITER);
  if (l->r == NULL) concur_error(L, "closed", "the rate limiter was closed");
  return l;
}

static int raise_redis (lua_State *L, limiter *l, int rc) {
  if (rc == CONCUR_TIMEDOUT || rc == CONCUR_REDIS_REFUSED)
    return concur_error(L, "network", "Redis at %s: %s", concur_redis_where(l->r),
                        concur_redis_error(l->r));
  if (rc == CONCUR_REDIS_CLOSED)
    return concur_error(L, "closed", "the rate limiter was closed");
  return concur_raisewait(L, rc, "acquire");
}

/* Reserves (or peeks at) a slot coming within 'limit' seconds. */
static void reserve (lua_State *L, limiter *l, double limit, int peek, int *reserved,
                     double *wait, char slot[32]) {
  int rc;
  CONCUR_WAIT(L, rc, concur_crate_reserve(&l->c, l->r, l->key, limit, peek,
                                          concur_deadline(l->timeout), reserved, wait, slot));
  if (rc != CONCUR_OK) raise_redis(L, l, rc);
}

/*** rl:acquire([timeout]) --> true once the caller's slot has come (it
** waits for it); false at once, reserving nothing, when that slot would
** come after the timeout (a negative one: now) */
static int limiter_acquire (lua_State *L) {
  limiter *l = checklimiter(L);
  double deadline = concur_optdeadline(L, 2);
  for (;;) {
    int reserved, rc;
    double wait, now = concur_now();
    char slot[32];
    concur_watch w;
    reserve(L, l, deadline < 0 ? -1 : fmax(0, deadline - now), 0, &reserved, &wait, slot);
    if (!reserved) {
      lua_pushboolean(L, 0);
      return 1;
    }
    if (wait <= 0) break;
    concur_watch_begin(L, &w);
    rc = concur_sleep_until(concur_now() + wait);
    if (rc == CONCUR_OK) {
      concur_watch_end(L, &w, rc);
      break;
    }
    {   /* interrupted while it waited: the slot goes back if it can, at
        ** once, however the task was stopped */
      concur_intr_fn fn;
      void *ud;
      double slice;
      concur_get_interrupt_check(&fn, &ud, &slice);
      concur_set_interrupt_check(NULL, NULL, 0);
      concur_crate_unreserve(&l->c, l->r, l->key, slot, concur_deadline(1.0));
      concur_set_interrupt_check(fn, ud, slice);
    }
    if (!concur_watch_end(L, &w, rc)) return concur_raisewait(L, rc, "acquire");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*** rl:try_acquire() --> true if a slot was free now (and it took it) */
static int limiter_tryacquire (lua_State *L) {
  limiter *l = checklimiter(L);
  int reserved;
  double wait;
  char slot[32];
  reserve(L, l, 0, 0, &reserved, &wait, slot);
  lua_pushboolean(L, reserved);
  return 1;
}

/*** rl:delay() --> seconds a caller would wait for its slot now (0: none) */
static int limiter_delay (lua_State *L) {
  limiter *l = checklimiter(L);
  int reserved;
  double wait;
  char slot[32];
  reserve(L, l, -1, 1, &reserved, &wait, slot);
  lua_pushnumber(L, wait);
  return 1;
}

/*** rl:rate() --> rate, per, burst */
static int limiter_rate (lua_State *L) {
  limiter *l = checklimiter(L);
  lua_pushnumber(L, l->rate);
  lua_pushnumber(L, l->per);
  lua_pushnumber(L, l->burst);
  return 3;
}

/*** rl:close(): drops this object's connection (the limiter stays in
** Redis for the others); also `<close>` and `__gc` */
static int limiter_close (lua_State *L) {
  limiter *l = luaL_testudata(L, 1, LIMITER);
  if (l == NULL) return concur_typeerror(L, 1, LIMITER);
  concur_redis_free(l->r);
  l->r = NULL;
  return 0;
}

static double getnum (lua_State *L, const char *field) {
  double v;
  lua_getfield(L, 1, field);
  v = concur_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/*** core.cluster_ratelimiter{ redis, name, rate, per, burst, timeout } -->
** a RateLimiter (cluster.RateLimiter checks the options) */
static int limiter_new (lua_State *L) {
  limiter *l;
  char err[400];
  const char *url, *name;
  concur_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "redis");
  url = concur_checklstring(L, -1, NULL);
  lua_getfield(L, 1, "name");
  name = concur_checklstring(L, -1, NULL);
  l = lua_newuserdatauv(L, sizeof *l, 0);      /* closed until it is made */
  memset(l, 0, sizeof *l);
  luaL_setmetatable(L, LIMITER);
  l->rate = getnum(L, "rate");
  l->per = getnum(L, "per");
  l->burst = getnum(L, "burst");
  l->timeout = getnum(L, "timeout");
  if (concur_crate_init(&l->c, l->rate, l->per, l->burst) != 0)
    return concur_argerror(L, 1, "per / rate is out of range");
  snprintf(l->key, sizeof l->key, "concur:{%s}:rate", name);
  l->r = concur_redis_new(url, err, sizeof err);
  if (l->r == NULL) return concur_error(L, "argument", "%s", err);
  /* a reservation's answer is always read, so an acquire stopped while
  ** Redis answers still knows its slot and gives it back */
  concur_redis_setuncut(l->r, 1);
  return 1;
}

static const luaL_Reg methods[] = {
  {"acquire", limiter_acquire},
  {"try_acquire", limiter_tryacquire},
  {"delay", limiter_delay},
  {"rate", limiter_rate},
  {"close", limiter_close},
  {NULL, NULL}
};

void concur_clusterlimiter_open (lua_State *L) {
  if (luaL_newmetatable(L, LIMITER)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, limiter_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, limiter_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  concur_class_stays(L, LIMITER, "a cluster RateLimiter belongs to the state that made it:"
                     " make one with the same name in each state (they share the limit)");
  lua_pushcfunction(L, limiter_new);
  lua_setfield(L, -2, "cluster_ratelimiter");
}
