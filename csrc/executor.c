/*
** executor.c: reading what executors and threads are given, the same way for
** ThreadPool, ProcessPool and concur.spawn: a task as `fn, ...` or as
** `{ fn, args = {...}, <options> }`, an initializer with its initargs, and
** shutdown's options. Values are encoded here (see codec.c); option values
** other than these are read by the caller before.
*/
#include "concur.h"

/* Pushes the items of the array option 'field' of the table at 'arg';
** returns how many. More than the stack can take raise kind "limit". */
static int pushlist (lua_State *L, int arg, const char *field) {
  lua_Unsigned len;
  int n, t;
  if (lua_getfield(L, arg, field) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (lua_type(L, -1) != LUA_TTABLE)
    concur_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a table", field));
  len = lua_rawlen(L, -1);
  if (len > (lua_Unsigned)LUAI_MAXSTACK || !lua_checkstack(L, (int)len + LUA_MINSTACK))
    concur_error(L, "limit", "too many values in option '%s' (%I; a Lua "
                 "stack holds at most %d)", field, (LUAI_UACINT)len,
                 LUAI_MAXSTACK);
  n = (int)len;
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
  t = concur_optnumber(L, arg, "timeout", -1, 0, 0, 1);
  return t >= CONCUR_FOREVER ? -1 : t;   /* a century or more: none */
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
    *wait = concur_optbool(L, arg, "wait", 1);
    *cancel = concur_optbool(L, arg, "cancel_pending", 0);
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
  concur_proxy *px = concur_selfproxy(L);
  if (px->o) {
    concur_obj *o = px->o;
    px->o = NULL;
    stop(o);
    concur_obj_unref(o);
  }
  return 0;
}
