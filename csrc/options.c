/*
** options.c: reading option tables ({ name = value, ... }) the same way in
** every binding: unknown names refused, and each value checked for its
** type and range, with one wording for every error ("option 'workers' must
** be a positive integer", "option 'wait' must be a boolean, got string"),
** raised as concur.Error kind "argument".
*/
#include <math.h>
#include <string.h>
#include "concur.h"

void concur_checkoptions (lua_State *L, int arg, const char *const names[]) {
  arg = lua_absindex(L, arg);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (int i = 0; names[i]; i++)
        if (strcmp(names[i], k) == 0) { ok = 1; break; }
      if (!ok)
        concur_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", k));
    }
    else if (lua_type(L, -1) != LUA_TNUMBER)   /* positional fields are ok */
      concur_argerror(L, arg, "option names must be strings");
  }
}

int concur_opterror (lua_State *L, int arg, const char *name, const char *what) {
  return concur_argerror(L, arg, lua_pushfstring(L, "option '%s' %s", name, what));
}

/* Raises "option 'name' must be <what>, got <type of the value at -1>"
** ("got a fraction" for a number where an integer is wanted). */
static int typeerror (lua_State *L, int arg, const char *name, const char *what) {
  const char *got = lua_type(L, -1) == LUA_TNUMBER && strcmp(what, "an integer") == 0
                    ? "a fraction" : luaL_typename(L, -1);
  return concur_opterror(L, arg, name, lua_pushfstring(L, "must be %s, got %s",
                                                       what, got));
}

int concur_optbool (lua_State *L, int arg, const char *name, int def) {
  int t = lua_getfield(L, arg, name), v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) typeerror(L, arg, name, "a boolean");
  lua_pop(L, 1);
  return v;
}

const char *concur_optstring (lua_State *L, int arg, const char *name,
                              size_t *len) {
  int t = lua_getfield(L, arg, name);
  if (t == LUA_TNIL) return NULL;
  if (t != LUA_TSTRING) typeerror(L, arg, name, "a string");
  return lua_tolstring(L, -1, len);
}

const char *concur_optcstring (lua_State *L, int arg, const char *name) {
  size_t len;
  const char *s = concur_optstring(L, arg, name, &len);
  if (s && strlen(s) != len) concur_opterror(L, arg, name, "contains a NUL byte");
  return s;
}

double concur_optnumber (lua_State *L, int arg, const char *name, double def,
                         double min, int strict, int inf_ok) {
  double v;
  int t = lua_getfield(L, arg, name);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t != LUA_TNUMBER) typeerror(L, arg, name, "a number");
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (isnan(v)) concur_opterror(L, arg, name, "must be a number, got NaN");
  if (v < min || (strict && v == min) || (!inf_ok && isinf(v))) {
    if (min == 0)
      concur_opterror(L, arg, name, strict ? "must be a positive number"
                                           : "must be a non-negative number");
    concur_opterror(L, arg, name, lua_pushfstring(L, "must be a number %s %f",
                                                  strict ? "above" : "of at least",
                                                  (lua_Number)min));
  }
  return v;
}

lua_Integer concur_optinteger (lua_State *L, int arg, const char *name,
                               lua_Integer def, lua_Integer min) {
  lua_Integer v = 0;
  int t = lua_getfield(L, arg, name), isint = 0;
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t == LUA_TNUMBER) v = lua_tointegerx(L, -1, &isint);
  if (!isint) typeerror(L, arg, name, "an integer");
  lua_pop(L, 1);
  if (v < min) {
    if (min == 0) concur_opterror(L, arg, name, "must be a non-negative integer");
    if (min == 1) concur_opterror(L, arg, name, "must be a positive integer");
    concur_opterror(L, arg, name, lua_pushfstring(L, "must be an integer of "
                                                  "at least %I", (LUAI_UACINT)min));
  }
  return v;
}
