/*
** task.c: reading what executors and threads are given, the same way for
** ThreadPool, ProcessPool and concur.spawn: a task as `fn, ...` or as
** `{ fn, args = {...}, <options> }`, an initializer with its initargs, and
** shutdown's options. Values are encoded here (see codec.c); option values
** other than these are read by the caller before.
*/
#include "concur.h"

/* Pushes the items of the array option 'field' of the table at 'arg';
** returns how many. */
static int pushlist (lua_State *L, int arg, const char *field) {
  int n, t;
  if (lua_getfield(L, arg, field) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (lua_type(L, -1) != LUA_TTABLE)
    concur_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a table", field));
  n = (int)lua_rawlen(L, -1);
  luaL_checkstack(L, n, "too many arguments");
  t = lua_gettop(L);
  for (int i = 1; i <= n; i++) lua_rawgeti(L, t, i);
  lua_remove(L, t);
  return n;
}

void concur_checktask (lua_State *L, int arg, const char *const options[],
                       concur_buf *task) {
  int top, n;
  if (lua_type(L, arg) != LUA_TTABLE) {
    if (lua_type(L, arg) != LUA_TFUNCTION) concur_typeerror(L, arg, "function");
    concur_encode(L, arg, lua_gettop(L) - arg + 1, task, "task");
    return;
  }
  concur_checkoptions(L, arg, options);
  top = lua_gettop(L);
  if (lua_rawgeti(L, arg, 1) != LUA_TFUNCTION)
    concur_argerror(L, arg, "field [1] must be the task function");
  n = pushlist(L, arg, "args");
  concur_encode(L, top + 1, n + 1, task, "task");
  lua_settop(L, top);
}

double concur_tasktimeout (lua_State *L, int arg) {
  double t = -1;
  if (lua_type(L, arg) != LUA_TTABLE) return t;
  if (lua_getfield(L, arg, "timeout") != LUA_TNIL) {
    if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) >= 0))
      concur_argerror(L, arg, "option 'timeout' must be a non-negative number");
    t = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return t;
}

void concur_checkinit (lua_State *L, int arg, concur_buf *init) {
  int top = lua_gettop(L), n;
  if (lua_getfield(L, arg, "initializer") == LUA_TNIL) {
    if (lua_getfield(L, arg, "initargs") != LUA_TNIL)
      concur_argerror(L, arg, "option 'initargs' needs an 'initializer'");
    lua_settop(L, top);
    return;
  }
  if (lua_type(L, -1) != LUA_TFUNCTION)
    concur_argerror(L, arg, "option 'initializer' must be a function");
  n = pushlist(L, arg, "initargs");
  concur_encode(L, top + 1, n + 1, init, "initializer[]");
  lua_settop(L, top);
}

static const char *const SHUTDOWN_OPTIONS[] = { "wait", "cancel_pending", NULL };

void concur_checkshutdown (lua_State *L, int arg, int *wait, int *cancel) {
  *wait = 1;
  *cancel = 0;
  if (lua_type(L, arg) == LUA_TTABLE) {
    concur_checkoptions(L, arg, SHUTDOWN_OPTIONS);
    if (lua_getfield(L, arg, "wait") != LUA_TNIL) *wait = lua_toboolean(L, -1);
    if (lua_getfield(L, arg, "cancel_pending") != LUA_TNIL)
      *cancel = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  else if (!lua_isnoneornil(L, arg)) concur_typeerror(L, arg, "table");
}

int concur_pushstats (lua_State *L, const long v[6]) {
  static const char *const names[] = { "workers", "pending", "running",
    "completed", "failed", "cancelled" };
  lua_createtable(L, 0, 6);
  for (int i = 0; i < 6; i++) {
    lua_pushinteger(L, v[i]);
    lua_setfield(L, -2, names[i]);
  }
  return 1;
}

int concur_executor_gc (lua_State *L, void (*stop) (concur_obj *o)) {
  concur_proxy *px = lua_touserdata(L, 1);
  if (px->o) {
    concur_obj *o = px->o;
    px->o = NULL;
    stop(o);
    concur_obj_unref(o);
  }
  return 0;
}
