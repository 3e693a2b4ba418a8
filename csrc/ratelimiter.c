/*
** ratelimiter.c: concur.RateLimiter, the GCRA limiter of core/ratelimit.h
** shared by reference.
**
** acquire reserves a slot first and then sleeps until it (interruptibly,
** with no lock held), so callers are served in the order they called, and a
** late wake-up costs neither rate nor fairness. A slot that would come after
** the caller's timeout is not reserved at all: acquire returns false at
** once instead of sleeping in vain. A caller interrupted while it waits
** (its task cancelled) gives its slot back when nobody reserved after it.
*/
#include <math.h>
#include <stdlib.h>
#include "shared.h"
#include "core/ratelimit.h"

typedef struct crl {
  double rate, per, burst;
  concur_ratelimit rl;
} crl;

static void rl_release (void *state) {
  concur_ratelimit_destroy(&((crl *)state)->rl);
}

static const concur_objtype rl_type = { "concur.RateLimiter",
                                        concur_shobj_destroy, NULL };
static const concur_shclass rl_class = { &rl_type, CONCUR_SH_RATELIMITER,
                                         rl_release, NULL };

#define checkrl(L) ((crl *)concur_shared_selfstate(L, &rl_type))

/* Reads option 'name' (from the table at 1, or else the positional
** argument 'pos'): a finite number > 0, or >= 1 when 'one'; 'def' when
** absent, which is an error when 'def' < 0. */
static double getnum (lua_State *L, const char *name, int pos, double def,
                      int one) {
  int idx = pos, t, top = lua_gettop(L);
  double x = def;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_getfield(L, 1, name);
    idx = lua_gettop(L);
  }
  t = lua_type(L, idx);
  if (t == LUA_TNUMBER) x = lua_tonumber(L, idx);
  else if (t > LUA_TNIL)
    concur_argerror(L, 1, lua_pushfstring(L, "'%s' must be a number", name));
  else if (def < 0)
    concur_argerror(L, 1, lua_pushfstring(L, "'%s' is required", name));
  if (!isfinite(x) || (one ? !(x >= 1) : !(x > 0)))
    concur_argerror(L, 1, lua_pushfstring(L, "'%s' must be %s", name,
                    one ? "at least 1" : "a positive number"));
  lua_settop(L, top);
  return x;
}

/*** RateLimiter{ rate = r, per = 1, burst = 1 } (or RateLimiter(r, per,
** burst)) --> a limiter letting r acquisitions through per 'per' seconds,
** at most 'burst' at once */
static int rl_new (lua_State *L) {
  static const char *const opts[] = { "rate", "per", "burst", NULL };
  double rate, per, burst;
  concur_shobj *o;
  crl *c;
  if (lua_type(L, 1) == LUA_TTABLE) concur_checkoptions(L, 1, opts);
  else if (lua_type(L, 1) != LUA_TNUMBER)
    return concur_typeerror(L, 1, "table or number");
  rate = getnum(L, "rate", 1, -1, 0);
  per = getnum(L, "per", 2, 1, 0);
  burst = getnum(L, "burst", 3, 1, 1);
  if (!(per / rate > 0) || !isfinite(per / rate))
    return concur_argerror(L, 1, "per / rate is out of range");
  o = concur_shared_new(L, &rl_class, sizeof *c);
  c = o->state;
  c->rate = rate;
  c->per = per;
  c->burst = burst;
  return concur_shared_made(L, o, concur_ratelimit_init(&c->rl, rate, per,
                            burst, 1));
}

/*** rl:acquire([timeout]) --> true when the caller's slot has come; false at
** once (reserving nothing) when that slot would come after the timeout */
static int rl_acquire (lua_State *L) {
  crl *c = checkrl(L);
  double deadline = concur_shared_deadline(L, 2);
  for (;;) {
    double now = concur_now(), slot;
    concur_watch w;
    int rc;
    if (deadline >= 0 && deadline < now) deadline = now;   /* timeout 0 */
    slot = concur_ratelimit_reserve(&c->rl, now, deadline);
    if (slot < 0) {
      lua_pushboolean(L, 0);
      return 1;
    }
    if (slot <= now) break;
    concur_watch_begin(L, &w);   /* CONCUR_WAIT, giving the slot back */
    rc = concur_sleep_until(slot);
    if (rc == CONCUR_OK) {
      concur_watch_end(L, &w, rc);
      break;
    }
    /* cancelled, interrupted or timed out while it waited */
    concur_ratelimit_unreserve(&c->rl, slot);
    if (!concur_watch_end(L, &w, rc))
      return concur_raisewait(L, rc, "acquire");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*** rl:try_acquire() --> true if a token was free now (and took it) */
static int rl_tryacquire (lua_State *L) {
  crl *c = checkrl(L);
  double now = concur_now();
  lua_pushboolean(L, concur_ratelimit_reserve(&c->rl, now, now) >= 0);
  return 1;
}

/*** rl:delay() --> seconds a caller would wait for a token now (0: none) */
static int rl_delay (lua_State *L) {
  crl *c = checkrl(L);
  double now = concur_now();
  lua_pushnumber(L, concur_ratelimit_peek(&c->rl, now) - now);
  return 1;
}

/*** rl:rate() --> rate, per, burst */
static int rl_rate (lua_State *L) {
  crl *c = checkrl(L);
  lua_pushnumber(L, c->rate);
  lua_pushnumber(L, c->per);
  lua_pushnumber(L, c->burst);
  return 3;
}

static const luaL_Reg rl_methods[] = {
  {"acquire", rl_acquire},
  {"try_acquire", rl_tryacquire},
  {"delay", rl_delay},
  {"rate", rl_rate},
  {NULL, NULL}
};

void concur_ratelimiter_open (lua_State *L) {
  concur_shclass_register(&rl_class);
  concur_shared_class(L, &rl_type, rl_methods, NULL, 0);
  lua_pushcfunction(L, rl_new);
  lua_setfield(L, -2, "RateLimiter");
}
