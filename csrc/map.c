/*
** map.c: concur.Map, a dictionary shared by reference between threads,
** pool tasks and processes (as Python's Manager().dict(), effil's shared
** table, a Lanes linda's set/get), over core/map.h.
**
** Keys are strings, integers (a float with an integral value is that
** integer, as in a Lua table) and booleans; anything else raises kind
** "argument" and changes nothing. Values are anything transferable: they
** are encoded (codec) before a shard's mutex is taken and decoded after it
** is dropped, so no Lua code, error or Lua allocation ever runs under it.
** Numbers, booleans and short strings skip the codec's call: their bytes
** are written here, on the C stack.
**
** update(k, fn) is a read-modify-write in the caller, made atomic without
** holding anything across fn: it reads the value and its version, calls
** fn(old) with no lock held, and writes the result only if the key still
** has that version (compare-and-set); when another writer came first, it
** reads again and calls fn again. So fn may run more than once and must
** only compute the new value; nothing is held when fn raises, and a task
** cancelled inside fn leaves the map as it was.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "shared.h"
#include "core/map.h"

static void map_release (void *state) {
  concur_map_destroy(state);
}

static int map_share (void *state, char *err, size_t errsize) {
  return concur_map_share(state, err, errsize);
}

static const concur_objtype map_type = { "concur.Map", concur_shobj_destroy,
                                         NULL };
static const concur_shclass map_class = { &map_type, CONCUR_SH_MAP,
                                          map_release, map_share };

#define checkmap(L) ((concur_map *)concur_shared_selfstate(L, &map_type))

/* ---- keys and values ------------------------------------------------------ */

/* The key at arg into k (its bytes in 'room' for numbers and booleans, or
** the Lua string's own); raises kind "argument" for any other type. */
static void checkkey (lua_State *L, int arg, concur_mkey *k, char room[8]) {
  size_t len;
  const char *s;
  int isint;
  lua_Integer i;
  switch (lua_type(L, arg)) {
    case LUA_TSTRING:
      s = lua_tolstring(L, arg, &len);
      if (len > (size_t)1 << 30)
        concur_argerror(L, arg, "key longer than 2^30 bytes");
      concur_mkey_init(k, CONCUR_MKEY_STR, s, len);
      return;
    case LUA_TNUMBER:
      i = lua_tointegerx(L, arg, &isint);   /* 2.0 is 2, as in a table */
      if (!isint) break;
      memcpy(room, &i, 8);
      concur_mkey_init(k, CONCUR_MKEY_INT, room, 8);
      return;
    case LUA_TBOOLEAN:
      room[0] = (char)lua_toboolean(L, arg);
      concur_mkey_init(k, CONCUR_MKEY_BOOL, room, 1);
      return;
    default: break;
  }
  concur_argerror(L, arg, lua_pushfstring(L, "key must be a string, an "
                  "integer or a boolean, got %s", lua_type(L, arg) == LUA_TNUMBER
                  ? "a float without an integer value" : luaL_typename(L, arg)));
}

/* Pushes a key of a snapshot. */
static void pushkey (lua_State *L, int type, const concur_buf *b) {
  lua_Integer i;
  if (type == CONCUR_MKEY_INT && b->len == 8) {
    memcpy(&i, b->data, 8);
    lua_pushinteger(L, i);
  }
  else if (type == CONCUR_MKEY_BOOL && b->len == 1) lua_pushboolean(L, b->data[0]);
  else lua_pushlstring(L, b->data ? b->data : "", b->len);
}

/* A string this short skips the codec's call: its bytes ('s', a one-byte
** length, the string) fit an entry (CONCUR_MAP_INLINE), so the map copies
** them and never takes the buffer, which can then live on the C stack. */
#define SCALAR_MAX (CONCUR_MAP_INLINE - 2)

/* The value at idx encoded into *b: for a number, boolean or short string
** the codec's bytes are written into 'room' (b->data points there, nothing
** to free); anything else goes through the codec (b owns its memory).
** Returns whether b must be freed. Raises kind "transfer" or "limit". */
static int encodevalue (lua_State *L, int idx, concur_buf *b,
                        char room[SCALAR_MAX + 2]) {
  size_t len;
  const char *s;
  memset(b, 0, sizeof *b);
  b->data = room;
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        room[0] = 'i';
        memcpy(room + 1, &i, 8);
      }
      else {
        lua_Number n = lua_tonumber(L, idx);
        room[0] = 'd';
        memcpy(room + 1, &n, 8);
      }
      b->len = 9;
      return 0;
    case LUA_TBOOLEAN:
      room[0] = lua_toboolean(L, idx) ? 't' : 'f';
      b->len = 1;
      return 0;
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &len);
      if (len >= SCALAR_MAX) break;
      room[0] = 's';
      room[1] = (char)len;   /* one varint byte: len < 128 */
      memcpy(room + 2, s, len);
      b->len = len + 2;
      return 0;
    default: break;
  }
  b->data = NULL;
  concur_encode(L, idx, 1, b, "value");
  return 1;
}

/* In protected mode: decodes the buffer at 1. */
static int decode_buf (lua_State *L) {
  concur_buf *b = lua_touserdata(L, 1);
  lua_settop(L, 0);
  return concur_decode(L, b->data, b->len, b->objs, b->nobjs);
}

/* Pushes the value copied out in *v (and frees what it holds); raises
** kind "transfer" when it cannot be rebuilt here. */
static void pushvalue (lua_State *L, concur_mval *v) {
  int rc;
  if (v->n != SIZE_MAX) {   /* on the C stack: nothing to free */
    concur_decode(L, v->small, v->n, NULL, 0);
    return;
  }
  lua_pushcfunction(L, decode_buf);
  lua_pushlightuserdata(L, &v->buf);
  rc = lua_pcall(L, 1, 1, 0);
  concur_buf_free(&v->buf);
  if (rc != LUA_OK) lua_error(L);
}

/* Raises the error of a map result. */
static int maperror (lua_State *L, int rc) {
  switch (rc) {
    case CONCUR_MAP_FOREIGN:
      return concur_error(L, "transfer", "the value holds an object that "
                          "cannot leave the process that set it");
    case CONCUR_MAP_LOCAL:
      return concur_error(L, "transfer", "this Map is shared with another "
                          "process: it cannot take an object that cannot "
                          "leave this one (a Future, a fetch Client...)");
    default:
      return concur_error(L, "limit", "not enough memory (the shared memory "
                          "is full: see CONCUR_SHMSIZE)");
  }
}

/* Writes the value at idx (nil: deletes) for k; the core's result. */
static int setvalue (lua_State *L, concur_map *m, const concur_mkey *k,
                     int idx, int mode, uint64_t expect, uint64_t *version) {
  char room[SCALAR_MAX + 2];
  concur_buf b;
  int owned, rc;
  if (lua_isnil(L, idx))
    return concur_map_set(m, k, NULL, mode, expect, version);
  owned = encodevalue(L, idx, &b, room);
  rc = concur_map_set(m, k, &b, mode, expect, version);
  if (owned) concur_buf_free(&b);
  return rc;
}

/* ---- methods -------------------------------------------------------------- */

/*** Map() --> a new, empty shared dictionary: shared by reference with
** threads, pool tasks and processes. */
static int map_new (lua_State *L) {
  concur_shobj *o = concur_shared_new(L, &map_class, sizeof(concur_map));
  return concur_shared_made(L, o, concur_map_init(o->state));
}

/*** m:get(k) --> the value of k, or nil when absent */
static int map_get (lua_State *L) {
  concur_map *m = checkmap(L);
  concur_mkey k;
  concur_mval v;
  char room[8];
  uint64_t version;
  int rc;
  checkkey(L, 2, &k, room);
  memset(&v.buf, 0, sizeof v.buf);
  rc = concur_map_get(m, &k, &v, &version);
  if (rc == CONCUR_MAP_ABSENT) return 0;
  if (rc != CONCUR_MAP_OK) return maperror(L, rc);
  pushvalue(L, &v);
  return 1;
}

/*** m:set(k, v): k's value is now v (a copy; nil deletes k) */
static int map_set (lua_State *L) {
  concur_map *m = checkmap(L);
  concur_mkey k;
  char room[8];
  int rc;
  checkkey(L, 2, &k, room);
  if (lua_gettop(L) < 3) return concur_argerror(L, 3, "value expected");
  rc = setvalue(L, m, &k, 3, CONCUR_MAP_SET, 0, NULL);
  if (rc != CONCUR_MAP_OK && rc != CONCUR_MAP_ABSENT) return maperror(L, rc);
  return 0;
}

/*** m:delete(k) --> true when k was there */
static int map_delete (lua_State *L) {
  concur_map *m = checkmap(L);
  concur_mkey k;
  char room[8];
  checkkey(L, 2, &k, room);
  lua_pushboolean(L, concur_map_set(m, &k, NULL, CONCUR_MAP_SET, 0, NULL)
                     == CONCUR_MAP_OK);
  return 1;
}

/*** m:has(k) --> boolean */
static int map_has (lua_State *L) {
  concur_map *m = checkmap(L);
  concur_mkey k;
  char room[8];
  checkkey(L, 2, &k, room);
  lua_pushboolean(L, concur_map_has(m, &k));
  return 1;
}

/*** m:incr(k [, d]) --> the new number: adds d (default 1) to k's number
** atomically (an absent key counts as 0); integers stay integers. Raises
** kind "argument" (nothing changed) when k's value is not a number. */
static int map_incr (lua_State *L) {
  concur_map *m = checkmap(L);
  concur_mkey k;
  concur_num d = { 1, { 1 } }, x;
  char room[8];
  int rc;
  checkkey(L, 2, &k, room);
  if (!lua_isnoneornil(L, 3)) {
    if (lua_type(L, 3) != LUA_TNUMBER) return concur_typeerror(L, 3, "number");
    d.isint = lua_isinteger(L, 3);
    if (d.isint) d.u.i = (int64_t)lua_tointeger(L, 3);
    else d.u.n = (double)lua_tonumber(L, 3);
  }
  rc = concur_map_incr(m, &k, d, &x);
  if (rc == CONCUR_MAP_NOTNUM)
    return concur_argerror(L, 2, "its value is not a number");
  if (rc != CONCUR_MAP_OK) return maperror(L, rc);
  if (x.isint) lua_pushinteger(L, (lua_Integer)x.u.i);
  else lua_pushnumber(L, (lua_Number)x.u.n);
  return 1;
}

/*** m:update(k, fn) --> the new value: fn(old) (old nil when k is absent)
** returns k's new value (nil deletes k), atomically: fn runs in the
** caller with nothing held, and its result is written only if no other
** write to k came meanwhile; else fn runs again on the newer value. So fn
** may run more than once: it should only compute. An error in fn raises
** here and leaves k as it was. */
static int map_update (lua_State *L) {
  concur_map *m = checkmap(L);
  concur_mkey k;
  char room[8];
  checkkey(L, 2, &k, room);
  concur_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  for (;;) {
    concur_mval v;
    uint64_t version;
    int rc;
    memset(&v.buf, 0, sizeof v.buf);
    rc = concur_map_get(m, &k, &v, &version);
    lua_pushvalue(L, 3);
    if (rc == CONCUR_MAP_ABSENT) lua_pushnil(L);
    else if (rc != CONCUR_MAP_OK) return maperror(L, rc);
    else pushvalue(L, &v);
    lua_call(L, 1, 1);                       /* 4: the new value */
    rc = setvalue(L, m, &k, 4, CONCUR_MAP_SETIF, version, NULL);
    if (rc == CONCUR_MAP_OK || rc == CONCUR_MAP_ABSENT) return 1;
    if (rc != CONCUR_MAP_CHANGED) return maperror(L, rc);
    lua_settop(L, 3);                        /* another writer came first */
  }
}

/*** m:setdefault(k, v) --> k's value: v, set now when k was absent, else
** the value k already had (as Python's dict.setdefault) */
static int map_setdefault (lua_State *L) {
  concur_map *m = checkmap(L);
  concur_mkey k;
  char room[8];
  checkkey(L, 2, &k, room);
  if (lua_isnoneornil(L, 3)) return concur_argerror(L, 3, "value expected");
  lua_settop(L, 3);
  for (;;) {
    concur_mval v;
    uint64_t version;
    int rc = setvalue(L, m, &k, 3, CONCUR_MAP_ADD, 0, NULL);
    if (rc == CONCUR_MAP_OK) return 1;       /* v itself */
    if (rc != CONCUR_MAP_PRESENT) return maperror(L, rc);
    memset(&v.buf, 0, sizeof v.buf);
    rc = concur_map_get(m, &k, &v, &version);
    if (rc == CONCUR_MAP_OK) {
      pushvalue(L, &v);
      return 1;
    }
    if (rc != CONCUR_MAP_ABSENT) return maperror(L, rc);
  }                                          /* deleted meanwhile: again */
}

/*** m:len() --> the number of keys (also #m) */
static int map_len (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)concur_map_len(checkmap(L)));
  return 1;
}

/*** m:clear(): removes every key */
static int map_clear (lua_State *L) {
  concur_map_clear(checkmap(L));
  return 0;
}

/* ---- snapshots -------------------------------------------------------------
** The items of a snapshot live in a box (a userdata whose __gc frees them),
** so a value that cannot be decoded here leaks nothing when it raises.
*/

typedef struct snapbox {
  concur_mitem *items;
  size_t n;
} snapbox;

#define SNAPSHOT "concur.MapSnapshot"

static int snap_gc (lua_State *L) {
  snapbox *b = luaL_testudata(L, 1, SNAPSHOT);
  if (b == NULL || lua_rawlen(L, 1) != sizeof *b)
    return concur_typeerror(L, 1, SNAPSHOT);
  concur_map_freeitems(b->items, b->n);
  b->items = NULL;
  b->n = 0;
  return 0;
}

/* Pushes a box holding a snapshot of m (with values when asked). */
static snapbox *snapshot (lua_State *L, concur_map *m, int values) {
  snapbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  int rc;
  b->items = NULL;
  b->n = 0;
  luaL_setmetatable(L, SNAPSHOT);
  rc = concur_map_snapshot(m, values, &b->items, &b->n);
  if (rc != CONCUR_MAP_OK) maperror(L, rc);
  return b;
}

/*** m:keys() --> an array of the keys, as they were at one moment (a
** snapshot; in no particular order) */
static int map_keys (lua_State *L) {
  concur_map *m = checkmap(L);
  snapbox *b = snapshot(L, m, 0);
  lua_createtable(L, b->n > INT32_MAX ? INT32_MAX : (int)b->n, 0);
  for (size_t i = 0; i < b->n; i++) {
    pushkey(L, b->items[i].ktype, &b->items[i].key);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int pairs_next (lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2)) + 1;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(2));
  if (lua_rawgeti(L, lua_upvalueindex(1), 2 * i - 1) == LUA_TNIL) return 1;
  lua_rawgeti(L, lua_upvalueindex(1), 2 * i);
  return 2;
}

/*** m:pairs() --> an iterator over (key, value) as they were at one moment
** (a snapshot: later writes are not seen); `for k, v in pairs(m)` too */
static int map_pairs (lua_State *L) {
  concur_map *m = checkmap(L);
  snapbox *b = snapshot(L, m, 1);
  lua_createtable(L, b->n > INT32_MAX / 2 ? INT32_MAX : (int)(2 * b->n), 0);
  for (size_t i = 0; i < b->n; i++) {
    concur_buf *val = &b->items[i].val;
    pushkey(L, b->items[i].ktype, &b->items[i].key);
    lua_rawseti(L, -2, 2 * (lua_Integer)i + 1);
    concur_decode(L, val->data, val->len, val->objs, val->nobjs);
    lua_rawseti(L, -2, 2 * (lua_Integer)i + 2);
  }
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, pairs_next, 2);
  return 1;
}

static const luaL_Reg map_methods[] = {
  {"get", map_get},
  {"set", map_set},
  {"delete", map_delete},
  {"has", map_has},
  {"incr", map_incr},
  {"update", map_update},
  {"setdefault", map_setdefault},
  {"len", map_len},
  {"clear", map_clear},
  {"keys", map_keys},
  {"pairs", map_pairs},
  {NULL, NULL}
};

static const luaL_Reg map_meta[] = {
  {"__len", map_len},
  {"__pairs", map_pairs},
  {NULL, NULL}
};

void concur_map_open (lua_State *L) {
  if (luaL_newmetatable(L, SNAPSHOT)) {
    lua_pushcfunction(L, snap_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  concur_shclass_register(&map_class);
  concur_shared_class(L, &map_type, map_methods, map_meta, 0);
  lua_pushcfunction(L, map_new);
  lua_setfield(L, -2, "Map");
}
