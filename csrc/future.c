/*
** future.c: the Lua side of futures (result, error, done, cancel, ...) and
** of waiting on many futures (core.waitset, used by concur.wait and
** concur.as_completed in lua/concur/init.lua).
**
** A future's results are decoded into the waiting state each time they are
** asked for, so result() may be called any number of times and from any
** state the future was sent to. A failed future holds an encoded error
** object; result() decodes it, gives it the concur.Error metatable and
** raises it.
*/
#include <string.h>
#include "concur.h"
#include "core/future.h"

static concur_future *checkfuture (lua_State *L, int arg) {
  return (concur_future *)concur_checkobj(L, arg, &concur_future_type);
}

/* Waits for f until the deadline at 'arg' (a timeout in seconds). */
static void waitfor (lua_State *L, concur_future *f, int arg) {
  double deadline = concur_optdeadline(L, arg);
  int rc;
  CONCUR_WAIT(L, rc, concur_future_wait(f, deadline));
  if (rc != CONCUR_OK) concur_raisewait(L, rc, "waiting for the future");
}

/* Pushes the error object of a failed or cancelled future. */
static void pusherrobj (lua_State *L, concur_future *f, int st) {
  if (st == CONCUR_F_CANCELLED) {
    concur_pusherror(L, "cancelled", "the task was cancelled");
    return;
  }
  lua_settop(L, lua_gettop(L));
  int n = concur_decode(L, f->out.data, f->out.len, f->out.objs, f->out.nobjs);
  if (n != 1 || lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, n);
    concur_pusherror(L, "task", "the task failed");
    return;
  }
  luaL_setmetatable(L, "concur.Error");
}

/*** f:result([timeout]) --> the task's results; raises its error. */
static int future_result (lua_State *L) {
  concur_future *f = checkfuture(L, 1);
  int st;
  waitfor(L, f, 2);
  st = concur_future_state(f);
  lua_settop(L, 0);
  if (st == CONCUR_F_FINISHED)
    return concur_decode(L, f->out.data, f->out.len, f->out.objs, f->out.nobjs);
  pusherrobj(L, f, st);
  return lua_error(L);
}

/*** f:error([timeout]) --> nil, or the error object. */
static int future_error (lua_State *L) {
  concur_future *f = checkfuture(L, 1);
  int st;
  waitfor(L, f, 2);
  st = concur_future_state(f);
  if (st == CONCUR_F_FINISHED) return 0;
  pusherrobj(L, f, st);
  return 1;
}

/*** f:done() --> true once finished, failed or cancelled */
static int future_done (lua_State *L) {
  lua_pushboolean(L, concur_future_done(checkfuture(L, 1)));
  return 1;
}

/*** f:running() --> true while the task runs */
static int future_running (lua_State *L) {
  lua_pushboolean(L, concur_future_state(checkfuture(L, 1)) == CONCUR_F_RUNNING);
  return 1;
}

/*** f:cancelled() --> true when it was cancelled */
static int future_cancelled (lua_State *L) {
  lua_pushboolean(L, concur_future_state(checkfuture(L, 1)) == CONCUR_F_CANCELLED);
  return 1;
}

/*** f:cancel() --> true if the task will not complete normally. */
static int future_cancel (lua_State *L) {
  concur_future *f = checkfuture(L, 1);
  int st = concur_future_state(f);
  if (st == CONCUR_F_FINISHED || st == CONCUR_F_FAILED) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, concur_future_cancel(f));
  return 1;
}

/*** f:state() --> "pending" | "running" | "finished" | "failed" | "cancelled" */
static int future_state (lua_State *L) {
  static const char *const names[] = { "pending", "running", "finished",
                                       "failed", "cancelled" };
  lua_pushstring(L, names[concur_future_state(checkfuture(L, 1))]);
  return 1;
}

static const luaL_Reg future_methods[] = {
  {"result", future_result},
  {"error", future_error},
  {"done", future_done},
  {"running", future_running},
  {"cancelled", future_cancelled},
  {"cancel", future_cancel},
  {"state", future_state},
  {NULL, NULL}
};

/* ---- waitsets --------------------------------------------------------------- */

typedef struct wsbox { concur_waitset *ws; } wsbox;

#define WAITSET "concur.waitset"

static wsbox *checkws (lua_State *L) {
  wsbox *b = luaL_testudata(L, 1, WAITSET);
  if (b == NULL || lua_rawlen(L, 1) != sizeof *b)
    concur_typeerror(L, 1, WAITSET);
  return b;
}

static int ws_gc (lua_State *L) {
  wsbox *b = checkws(L);
  concur_waitset_free(b->ws);
  b->ws = NULL;
  return 0;
}

/*** core.waitset(futures) --> a set; set:next([deadline]) --> index of the
** next future to complete (1-based), false when every one was returned,
** or nil when the absolute monotonic deadline passed. */
static int ws_new (lua_State *L) {
  size_t n;
  wsbox *b;
  concur_future **fs;
  concur_checktype(L, 1, LUA_TTABLE);
  n = lua_rawlen(L, 1);
  fs = lua_newuserdatauv(L, (n ? n : 1) * sizeof *fs, 0);   /* scratch */
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    fs[i] = (concur_future *)concur_testobj(L, -1, &concur_future_type);
    if (fs[i] == NULL)
      concur_argerror(L, 1, lua_pushfstring(L, "item %d is not a future",
                                            (int)i + 1));
    lua_pop(L, 1);
  }
  b = lua_newuserdatauv(L, sizeof *b, 0);
  b->ws = NULL;
  luaL_setmetatable(L, WAITSET);
  b->ws = concur_waitset_new(fs, n);
  if (b->ws == NULL) return concur_error(L, "limit", "not enough memory");
  return 1;
}

static int ws_next (lua_State *L) {
  wsbox *b = checkws(L);
  double deadline = lua_isnoneornil(L, 2) ? CONCUR_NODEADLINE
                                          : concur_checknumber(L, 2);
  long r;
  int rc;
  if (b->ws == NULL) return concur_error(L, "closed", "waitset is closed");
  CONCUR_WAIT(L, rc, (r = concur_waitset_next(b->ws, deadline),
                      r <= -2 ? (int)(-2 - r) : CONCUR_OK));
  if (r >= 0) lua_pushinteger(L, r + 1);
  else if (r == -1) lua_pushboolean(L, 0);
  else if (-2 - r == CONCUR_TIMEDOUT) lua_pushnil(L);
  else return concur_raisewait(L, (int)(-2 - r), "wait");
  return 1;
}

void concur_future_open (lua_State *L) {
  concur_newclass(L, &concur_future_type, future_methods, NULL);
  lua_pushcfunction(L, ws_new);
  lua_setfield(L, -2, "waitset");
  if (luaL_newmetatable(L, WAITSET)) {
    lua_pushcfunction(L, ws_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ws_next);
    lua_setfield(L, -2, "next");
  }
  lua_pop(L, 1);
}
