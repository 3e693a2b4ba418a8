/*
** array.c: concur.Array, a fixed-size array of numbers shared by reference
** between threads, pool tasks and processes (as Python's
** multiprocessing.Array), over core/array.h: a[i], a[i] = v, #a, atomic
** add and compare-and-swap, totable.
**
** Indexes run from 1 to #a. An index out of range, or a value that is not
** a number (or, in an "int" array, a number without an integer value),
** raises kind "argument" and changes nothing.
*/
#include <string.h>
#include "shared.h"
#include "core/array.h"

static const concur_objtype array_type = { "concur.Array",
                                           concur_shobj_destroy, NULL };
static const concur_shclass array_class = { &array_type, CONCUR_SH_ARRAY,
                                            NULL, NULL };

#define checkarray(L) ((concur_array *)concur_shared_selfstate(L, &array_type))

/* The element index at arg, 0-based; raises kind "argument". */
static int64_t checkindex (lua_State *L, int arg, concur_array *a) {
  int isint = 0;
  lua_Integer i = lua_type(L, arg) == LUA_TNUMBER ? lua_tointegerx(L, arg, &isint) : 0;
  if (!isint)
    concur_argerror(L, arg, lua_pushfstring(L, "index must be an integer, got %s",
                    lua_type(L, arg) == LUA_TNUMBER ? "a float" : luaL_typename(L, arg)));
  if (i < 1 || i > a->n)
    concur_argerror(L, arg, lua_pushfstring(L, "index %I out of range (1..%I)",
                    (LUAI_UACINT)i, (LUAI_UACINT)a->n));
  return (int64_t)i - 1;
}

/* The value at idx as an element of an array of that type: 0, -1 (not
** a number) or -2 (an "int" array's number without an integer value). */
static int toelem (lua_State *L, int idx, int isfloat, concur_num *x) {
  int isint;
  if (lua_type(L, idx) != LUA_TNUMBER) return -1;
  x->isint = !isfloat;
  if (isfloat) x->u.n = (double)lua_tonumber(L, idx);
  else {
    x->u.i = (int64_t)lua_tointegerx(L, idx, &isint);
    if (!isint) return -2;
  }
  return 0;
}

/* The number at arg as an element; raises kind "argument". */
static concur_num checkelem (lua_State *L, int arg, int isfloat) {
  concur_num x;
  int rc = toelem(L, arg, isfloat, &x);
  if (rc == -1) concur_typeerror(L, arg, "number");
  if (rc == -2)
    concur_argerror(L, arg, "number has no integer representation (an "
                    "\"int\" array)");
  return x;
}

static int pushnum (lua_State *L, concur_num x) {
  if (x.isint) lua_pushinteger(L, (lua_Integer)x.u.i);
  else lua_pushnumber(L, (lua_Number)x.u.n);
  return 1;
}

static const char *const TYPES[] = { "int", "float", NULL };

/*** Array(n, "int" | "float" [, init]) --> a shared array of n numbers,
** all 0, or all init (a number), or the numbers of the array init (at most
** n; the rest 0) */
static int array_new (lua_State *L) {
  lua_Integer n = concur_checkinteger(L, 1);
  const char *t;
  int isfloat = -1;
  concur_num zero;
  concur_shobj *o;
  concur_array *a;
  if (n < 0 || n > CONCUR_ARRAY_MAX)
    return concur_argerror(L, 1, lua_pushfstring(L, "size must be 0..%I",
                           (LUAI_UACINT)CONCUR_ARRAY_MAX));
  t = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  for (int i = 0; t && TYPES[i]; i++)
    if (strcmp(t, TYPES[i]) == 0) isfloat = i;
  if (isfloat < 0) return concur_argerror(L, 2, "type must be 'int' or 'float'");
  zero.isint = !isfloat;
  if (isfloat) zero.u.n = 0;
  else zero.u.i = 0;
  if (lua_type(L, 3) == LUA_TNUMBER) zero = checkelem(L, 3, isfloat);
  else if (lua_type(L, 3) == LUA_TTABLE) {   /* checked before anything is made */
    lua_Integer len = (lua_Integer)lua_rawlen(L, 3);
    concur_num x;
    if (len > n)
      return concur_argerror(L, 3, lua_pushfstring(L, "%I initial values for "
                             "%I elements", (LUAI_UACINT)len, (LUAI_UACINT)n));
    for (lua_Integer i = 1; i <= len; i++) {
      int rc;
      lua_rawgeti(L, 3, i);
      rc = toelem(L, -1, isfloat, &x);
      lua_pop(L, 1);
      if (rc != 0)
        return concur_argerror(L, 3, lua_pushfstring(L, "init[%I] is %s",
                               (LUAI_UACINT)i, rc == -1 ? "not a number"
                               : "not an integer (an \"int\" array)"));
    }
  }
  else if (!lua_isnoneornil(L, 3)) return concur_typeerror(L, 3, "number or table");
  o = concur_shared_new(L, &array_class, concur_array_size((int64_t)n));
  a = o->state;
  concur_array_init(a, (int64_t)n, isfloat, zero);
  if (lua_type(L, 3) == LUA_TTABLE) {
    lua_Integer len = (lua_Integer)lua_rawlen(L, 3);
    for (lua_Integer i = 1; i <= len; i++) {
      concur_num x;
      lua_rawgeti(L, 3, i);
      toelem(L, -1, isfloat, &x);
      lua_pop(L, 1);
      concur_array_set(a, (int64_t)i - 1, x);
    }
  }
  return concur_shared_made(L, o, 0);
}

/* __index: a[i] for an integer i; a method's name gives the method. */
static int array_index (lua_State *L) {
  concur_array *a = checkarray(L);
  if (lua_type(L, 2) == LUA_TNUMBER)
    return pushnum(L, concur_array_get(a, checkindex(L, 2, a)));
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

/* __newindex: a[i] = v */
static int array_newindex (lua_State *L) {
  concur_array *a = checkarray(L);
  int64_t i = checkindex(L, 2, a);
  concur_array_set(a, i, checkelem(L, 3, a->isfloat));
  return 0;
}

/*** #a, a:len() --> the number of elements */
static int array_len (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkarray(L)->n);
  return 1;
}

/*** a:add(i, d) --> the new value of a[i], after adding d atomically (no
** add is ever lost; an "int" array's integers wrap around, as Lua's) */
static int array_add (lua_State *L) {
  concur_array *a = checkarray(L);
  int64_t i = checkindex(L, 2, a);
  return pushnum(L, concur_array_add(a, i, checkelem(L, 3, a->isfloat)));
}

/*** a:cas(i, old, new) --> true when a[i] was equal to old and is now new
** (atomically) */
static int array_cas (lua_State *L) {
  concur_array *a = checkarray(L);
  int64_t i = checkindex(L, 2, a);
  concur_num old, x = checkelem(L, 4, a->isfloat);
  int rc = toelem(L, 3, a->isfloat, &old);
  if (rc == -1) return concur_typeerror(L, 3, "number");
  /* an old value an "int" element can never equal: no swap */
  lua_pushboolean(L, rc == 0 && concur_array_cas(a, i, old, x));
  return 1;
}

/*** a:totable() --> a Lua array of the elements (each read atomically;
** the whole is no snapshot while others write) */
static int array_totable (lua_State *L) {
  concur_array *a = checkarray(L);
  lua_createtable(L, a->n > INT32_MAX ? INT32_MAX : (int)a->n, 0);
  for (int64_t i = 0; i < a->n; i++) {
    pushnum(L, concur_array_get(a, i));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/*** a:type() --> "int" or "float" */
static int array_type_ (lua_State *L) {
  lua_pushstring(L, TYPES[checkarray(L)->isfloat]);
  return 1;
}

static const luaL_Reg array_methods[] = {
  {"add", array_add},
  {"cas", array_cas},
  {"totable", array_totable},
  {"len", array_len},
  {"type", array_type_},
  {NULL, NULL}
};

static const luaL_Reg array_meta[] = {
  {"__len", array_len},
  {"__newindex", array_newindex},
  {NULL, NULL}
};

void concur_array_open (lua_State *L) {
  int made;
  concur_shclass_register(&array_class);
  made = 0;                                /* opened before in this state? */
  if (luaL_getmetatable(L, array_type.name) == LUA_TTABLE) {
    made = lua_getfield(L, -1, "methods") == LUA_TTABLE;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (made) goto ctor;
  concur_shared_class(L, &array_type, array_methods, array_meta, 0);
  /* __index: elements by number, methods by name (upvalues: the
  ** metatable, the methods) */
  luaL_getmetatable(L, array_type.name);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -2, "methods");        /* for core.methods */
  lua_pushvalue(L, -1);
  lua_getfield(L, -2, "methods");
  lua_pushcclosure(L, array_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
ctor:
  lua_pushcfunction(L, array_new);
  lua_setfield(L, -2, "Array");
}
