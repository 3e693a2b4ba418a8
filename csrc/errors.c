/*
** errors.c: concur.Error, the one kind of error concur raises.
**
** An error is a plain table { kind = ..., message = ..., [value, traceback,
** url, status, code] } whose metatable is concur.Error (kept in the registry
** under "concur.Error"), so tasks can pcall, inspect and re-raise it, and it
** crosses between states by the codec like any table. tostring(err) gives the
** message and then the traceback.
*/
#include <math.h>
#include <string.h>
#include "concur.h"

static const char *const KINDS[] = {
  "task", "timeout", "cancelled", "broken", "closed", "transfer", "argument",
  "network", "http", "robots", "limit", NULL
};

/* Pushes a new error object. */
void concur_pusherror (lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, "concur.Error");
}

int concur_error (lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  concur_pusherror(L, kind, lua_tostring(L, -1));
  return lua_error(L);
}

/* As luaL_argerror, with kind "argument". */
int concur_argerror (lua_State *L, int arg, const char *extramsg) {
  lua_Debug ar;
  const char *name = "?";
  if (lua_getstack(L, 0, &ar)) {
    lua_getinfo(L, "n", &ar);
    if (ar.namewhat && strcmp(ar.namewhat, "method") == 0) {
      arg--;
      if (arg == 0)
        return concur_error(L, "argument", "calling '%s' on bad self (%s)",
                            ar.name ? ar.name : "?", extramsg);
    }
    if (ar.name) name = ar.name;
  }
  return concur_error(L, "argument", "bad argument #%d to '%s' (%s)", arg,
                      name, extramsg);
}

int concur_typeerror (lua_State *L, int arg, const char *tname) {
  const char *typearg;
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
    typearg = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
    typearg = "light userdata";
  else
    typearg = luaL_typename(L, arg);
  return concur_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s",
                                                 tname, typearg));
}

lua_Integer concur_checkinteger (lua_State *L, int arg) {
  int isnum;
  lua_Integer d = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_isnumber(L, arg))
      concur_argerror(L, arg, "number has no integer representation");
    else
      concur_typeerror(L, arg, "integer");
  }
  return d;
}

lua_Number concur_checknumber (lua_State *L, int arg) {
  int isnum;
  lua_Number d = lua_tonumberx(L, arg, &isnum);
  if (!isnum) concur_typeerror(L, arg, "number");
  return d;
}

const char *concur_checklstring (lua_State *L, int arg, size_t *len) {
  if (lua_type(L, arg) != LUA_TSTRING) concur_typeerror(L, arg, "string");
  return lua_tolstring(L, arg, len);
}

void concur_checktype (lua_State *L, int arg, int t) {
  if (lua_type(L, arg) != t) concur_typeerror(L, arg, lua_typename(L, t));
}

double concur_optdeadline (lua_State *L, int arg) {
  lua_Number t;
  if (lua_isnoneornil(L, arg)) return CONCUR_NODEADLINE;
  t = concur_checknumber(L, arg);
  if (t != t) concur_argerror(L, arg, "timeout is NaN");
  if (t < 0) return concur_now();   /* already passed: don't wait */
  if (isinf(t)) return CONCUR_NODEADLINE;
  return concur_deadline(t);
}

int concur_raisewait (lua_State *L, int rc, const char *what) {
  switch (rc) {
    case CONCUR_TIMEDOUT:
      return concur_error(L, "timeout", "%s timed out", what);
    case CONCUR_CANCELLED:   /* marked, so the task runner keeps the kind */
      concur_pusherror(L, "cancelled", "task cancelled");
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "interrupt");
      return lua_error(L);
    case CONCUR_TASKTIMEOUT:
      concur_pusherror(L, "timeout", "task exceeded its timeout");
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "interrupt");
      return lua_error(L);
    case CONCUR_INTERRUPTED:   /* CONCUR_WAIT handles it: never here */
      return concur_error(L, "cancelled", "%s interrupted", what);
    default:
      return 0;
  }
}

int concur_iserror (lua_State *L, int idx, const char *kind) {
  int ok = 0;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, "concur.Error");
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (ok && kind) {
      lua_getfield(L, idx, "kind");
      ok = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), kind) == 0;
      lua_pop(L, 1);
    }
  }
  return ok;
}

int concur_isinterrupt (lua_State *L, int idx) {
  int yes;
  if (!concur_iserror(L, idx, NULL)) return 0;
  lua_getfield(L, idx, "interrupt");
  yes = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return yes;
}

void concur_pushtaskerror (lua_State *L, int err, int tb) {
  const char *msg;
  err = lua_absindex(L, err);
  tb = lua_absindex(L, tb);
  if (concur_iserror(L, err, NULL)) {   /* kind and fields kept */
    lua_pushvalue(L, err);
    if (lua_getfield(L, -1, "traceback") == LUA_TNIL) {
      lua_pushvalue(L, tb);
      lua_setfield(L, -3, "traceback");
    }
    lua_pop(L, 1);
    return;
  }
  if (luaL_getmetafield(L, err, "__name") == LUA_TSTRING &&
      strcmp(lua_tostring(L, -1), "concur.Error") == 0) {
    lua_getfield(L, err, "message");    /* an Error of another state's */
    msg = lua_tostring(L, -1);
  }
  else msg = luaL_tolstring(L, err, NULL);
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "task");
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg ? msg : "(error object)");
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, err);
  lua_setfield(L, -2, "value");
  lua_pushvalue(L, tb);
  lua_setfield(L, -2, "traceback");
  luaL_setmetatable(L, "concur.Error");
}

/*** tostring(err): the message, then the traceback. */
static int error_tostring (lua_State *L) {
  luaL_Buffer b;
  concur_checktype(L, 1, LUA_TTABLE);
  luaL_buffinit(L, &b);
  if (lua_getfield(L, 1, "message") != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_getfield(L, 1, "kind");
    lua_pushfstring(L, "concur error (%s)", lua_type(L, -1) == LUA_TSTRING
                    ? lua_tostring(L, -1) : "?");
    lua_remove(L, -2);
  }
  luaL_addvalue(&b);
  if (lua_getfield(L, 1, "traceback") == LUA_TSTRING) {
    luaL_addchar(&b, '\n');
    luaL_addvalue(&b);
  }
  else lua_pop(L, 1);
  luaL_pushresult(&b);
  return 1;
}

/*** Error.is(err [, kind]): is err a concur error (of that kind)? */
static int error_is (lua_State *L) {
  int ok = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, "concur.Error");
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (ok && !lua_isnoneornil(L, 2)) {
      lua_getfield(L, 1, "kind");
      ok = lua_rawequal(L, -1, 2);
      lua_pop(L, 1);
    }
  }
  lua_pushboolean(L, ok);
  return 1;
}

/*** Error.new(kind, message [, fields]): builds an error object (kind one of
** task, timeout, cancelled, broken, closed, transfer, argument, network,
** http, robots, limit). */
static int error_new (lua_State *L) {
  const char *kind = concur_checklstring(L, 1, NULL);
  const char *msg = concur_checklstring(L, 2, NULL);
  int i;
  for (i = 0; KINDS[i] && strcmp(KINDS[i], kind) != 0; i++) ;
  if (!KINDS[i])
    concur_argerror(L, 1, lua_pushfstring(L, "unknown error kind '%s'", kind));
  concur_pusherror(L, kind, msg);
  if (lua_type(L, 3) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  return 1;
}

void concur_errors_open (lua_State *L) {
  if (luaL_newmetatable(L, "concur.Error")) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, error_is);
    lua_setfield(L, -2, "is");
    lua_pushcfunction(L, error_new);
    lua_setfield(L, -2, "new");
    lua_pushboolean(L, 1);   /* an Error sent to another state stays one */
    lua_setfield(L, -2, "__concur_restore");
    lua_newtable(L);
    for (int i = 0; KINDS[i]; i++) {
      lua_pushstring(L, KINDS[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "kinds");
  }
  lua_setfield(L, -2, "Error");
}
