/*
** hub.c: core.hub, the Lua side of this state's completion fd (core/hub.h):
** what concur.pollfd, concur.poll, on_done and the coroutine scheduler
** (lua/concur/task.lua) build on.
**
** One hub per Lua state, made on first use and kept in the registry; its
** box's __gc frees it (unwatching every future), after which every call
** here raises kind "closed". A watch is named by an integer token that the
** Lua side chooses; take() hands back the tokens of completed futures, in
** completion order. The node of a watch travels to Lua as a light userdata,
** valid until its token is taken or it is unwatched (the Lua side forgets
** it at either).
*/
#include <string.h>
#include "concur.h"
#include "core/hub.h"

typedef struct hubbox { concur_hub *h; } hubbox;

static const char HUB_KEY = 'h';
#define HUB_MT "concur.hub"
#define TAKE_BATCH 256

static int hub_gc (lua_State *L) {
  hubbox *b = luaL_testudata(L, 1, HUB_MT);
  if (b && lua_rawlen(L, 1) == sizeof *b && b->h) {
    concur_hub_free(b->h);
    b->h = NULL;
  }
  return 0;
}

/* This state's hub, made on first use; raises when it was closed. */
static concur_hub *gethub (lua_State *L) {
  hubbox *b;
  char err[128];
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &HUB_KEY) == LUA_TUSERDATA) {
    b = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (b->h == NULL) concur_error(L, "closed", "the state's hub is closed");
    return b->h;
  }
  lua_pop(L, 1);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  b->h = NULL;
  if (luaL_newmetatable(L, HUB_MT)) {
    lua_pushcfunction(L, hub_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  b->h = concur_hub_new(err, sizeof err);
  if (b->h == NULL) {
    lua_pop(L, 1);
    concur_error(L, "limit", "cannot make the completion fd (%s)", err);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &HUB_KEY);
  return b->h;
}

/*** hub.fd() --> the descriptor (concur.pollfd) */
static int hub_fd (lua_State *L) {
  lua_pushinteger(L, concur_hub_fd(gethub(L)));
  return 1;
}

/*** hub.watch(future, token) --> node, or false when the future is done */
static int hub_watch (lua_State *L) {
  concur_hub *h = gethub(L);
  concur_future *f = (concur_future *)concur_checkobj(L, 1, &concur_future_type);
  lua_Integer token = concur_checkinteger(L, 2);
  int done;
  concur_hubnode *n = concur_hub_watch(h, f, (uint64_t)token, &done);
  if (n == NULL && !done) return concur_error(L, "limit", "not enough memory");
  if (n) lua_pushlightuserdata(L, n);
  else lua_pushboolean(L, 0);
  return 1;
}

/*** hub.unwatch(node) */
static int hub_unwatch (lua_State *L) {
  concur_hub *h = gethub(L);
  concur_checktype(L, 1, LUA_TLIGHTUSERDATA);
  concur_hub_unwatch(h, lua_touserdata(L, 1));
  return 0;
}

/*** hub.take(t) --> n: drains the fd; t[1..n] = the tokens of the futures
** completed since the last take (t[n+1] = nil) */
static int hub_take (lua_State *L) {
  concur_hub *h = gethub(L);
  uint64_t tok[TAKE_BATCH];
  lua_Integer n = 0;
  size_t k;
  concur_checktype(L, 1, LUA_TTABLE);
  do {
    k = concur_hub_take(h, tok, TAKE_BATCH);
    for (size_t i = 0; i < k; i++) {
      lua_pushinteger(L, (lua_Integer)tok[i]);
      lua_rawseti(L, 1, ++n);
    }
  } while (k == TAKE_BATCH);
  lua_pushnil(L);
  lua_rawseti(L, 1, n + 1);
  lua_pushinteger(L, n);
  return 1;
}

/*** hub.pending() --> whether completed watches wait to be taken */
static int hub_pending (lua_State *L) {
  lua_pushboolean(L, concur_hub_pending(gethub(L)));
  return 1;
}

/*** hub.signal(): makes the fd readable */
static int hub_signal (lua_State *L) {
  concur_hub_signal(gethub(L));
  return 0;
}

/*** hub.timer(deadline | nil): the fd becomes readable at that absolute
** monotonic time and stays so until the next call (nil: never) */
static int hub_timer (lua_State *L) {
  concur_hub *h = gethub(L);
  double d = lua_isnoneornil(L, 1) ? -1 : concur_checknumber(L, 1);
  if (d != d) return concur_argerror(L, 1, "deadline is NaN");
  if (d < 0 && !lua_isnoneornil(L, 1)) d = 0;
  if (concur_hub_settimer(h, d) != 0)
    return concur_error(L, "limit", "timerfd_settime failed");
  return 0;
}

/*** hub.wait([deadline]) --> true once the fd is readable, false at the
** absolute monotonic deadline */
static int hub_wait (lua_State *L) {
  concur_hub *h = gethub(L);
  double d = lua_isnoneornil(L, 1) ? CONCUR_NODEADLINE : concur_checknumber(L, 1);
  int rc;
  if (d != d) return concur_argerror(L, 1, "deadline is NaN");
  CONCUR_WAIT(L, rc, concur_hub_wait(h, d));
  if (rc == CONCUR_TIMEDOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "waiting for the completion fd");
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- bells ---------------------------------------------------------------- */

typedef struct bellbox { concur_bell *b; } bellbox;
#define BELL_MT "concur.bell"

static bellbox *checkbell (lua_State *L) {
  bellbox *b = luaL_testudata(L, 1, BELL_MT);
  if (b == NULL || lua_rawlen(L, 1) != sizeof *b) concur_typeerror(L, 1, BELL_MT);
  if (b->b == NULL) concur_error(L, "closed", "the bell is closed");
  return b;
}

static int bell_gc (lua_State *L) {
  bellbox *b = luaL_testudata(L, 1, BELL_MT);
  if (b && lua_rawlen(L, 1) == sizeof *b && b->b) {
    concur_bell_free(b->b);
    b->b = NULL;
  }
  return 0;
}

/*** hub.bell([future]) --> a bell: bell:fd() is readable, for good, once
** the future completes or bell:ring() was called */
static int hub_bell (lua_State *L) {
  concur_future *f = NULL;
  bellbox *b;
  char err[128];
  if (!lua_isnoneornil(L, 1))
    f = (concur_future *)concur_checkobj(L, 1, &concur_future_type);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  b->b = NULL;
  luaL_setmetatable(L, BELL_MT);
  b->b = concur_bell_new(f, err, sizeof err);
  if (b->b == NULL) return concur_error(L, "limit", "cannot make a bell (%s)", err);
  return 1;
}

static int bell_fd (lua_State *L) {
  lua_pushinteger(L, concur_bell_fd(checkbell(L)->b));
  return 1;
}

static int bell_ring (lua_State *L) {
  concur_bell_ring(checkbell(L)->b);
  return 0;
}

static const luaL_Reg bell_methods[] = {
  {"fd", bell_fd},
  {"ring", bell_ring},
  {"close", bell_gc},
  {NULL, NULL}
};

static const luaL_Reg hub_funcs[] = {
  {"bell", hub_bell},
  {"fd", hub_fd},
  {"watch", hub_watch},
  {"unwatch", hub_unwatch},
  {"take", hub_take},
  {"pending", hub_pending},
  {"signal", hub_signal},
  {"timer", hub_timer},
  {"wait", hub_wait},
  {NULL, NULL}
};

void concur_hub_open (lua_State *L) {
  luaL_newlib(L, hub_funcs);
  lua_setfield(L, -2, "hub");
  if (luaL_newmetatable(L, BELL_MT)) {
    luaL_newlib(L, bell_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, bell_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
