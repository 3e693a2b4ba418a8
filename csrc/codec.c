/*
** codec.c: copying Lua values between states, through concur's byte format
** (core/wire.h): what the encoder (encode.c) and the decoder (decode.c)
** share.
**
** Every boundary uses the same two functions: concur_encode writes values
** from a state into a buffer and concur_decode pushes them into another
** state. Tables keep shared sub-tables and cycles; Lua functions travel as
** (unstripped) bytecode plus their upvalues, with _ENV rebound to the
** receiver's globals and shared upvalues re-joined; C functions and loaded
** modules travel by name; concur's shared objects by reference (an index
** into the buffer's object list); value userdata (bigints) through their
** registered valtype; tables whose metatable opted in (field
** __concur_restore = true, as the Response's) carry its registry name, and
** arrive with that metatable.
**
** Identity: a userdata is concur's own only when its metatable is one that
** concur registered (the class registry below, a table keyed by the
** metatables themselves in the Lua registry), never because of a field a
** script could copy into another metatable; a proxy must also have a
** proxy's size. Concur's objects that cannot leave their state (pools,
** threads, processes, guards) are registered too, with what to do instead,
** so refusing one names it.
**
** Speed: each state keeps a scratch area in its registry (an encode buffer,
** a pointer map for identity, a table for decoded references), so a small
** message costs no Lua allocation beyond its values.
*/
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "codec.h"

/* registry keys (only their addresses matter) */
static const char SCRATCH_KEY = 's';  /* the state's scratch userdata */
static const char CLASSES_KEY = 'k';  /* metatable -> what the codec does */

#define SCRATCH_MT "concur.scratch"

const char *const concur_preferred_modules[] = {
  "_G", "string", "table", "math", "io", "os", "coroutine", "utf8", "debug",
  "package", "concur.core", "concur", "concur.fetch", "concur.bigint", NULL
};

/* ---- value types ---------------------------------------------------------- */

static const concur_valtype *_Atomic valtypes[256];

void concur_register_valtype (const concur_valtype *vt) {
  atomic_store_explicit(&valtypes[vt->tag], vt, memory_order_release);
}

const concur_valtype *concur_valtype_of (int tag) {
  return atomic_load_explicit(&valtypes[tag & 0xff], memory_order_acquire);
}

/* ---- the class registry ----------------------------------------------------
** registry[&CLASSES_KEY] = { [metatable] = entry }, where entry is a light
** userdata (the concur_objtype of a proxy class), an integer (the tag of a
** value type) or a string (a class whose objects stay in their state: why,
** and what to do instead).
*/

/* Pushes the class table, made on first use. */
static void pushclasses (lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CLASSES_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CLASSES_KEY);
}

/* classes[metatable at mt (absolute)] = the value on top (popped) */
static void setclass (lua_State *L, int mt) {
  luaL_checkstack(L, 3, NULL);
  pushclasses(L);
  lua_pushvalue(L, mt);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
}

void concur_class_byref (lua_State *L, int mt, const concur_objtype *t) {
  mt = lua_absindex(L, mt);
  lua_pushlightuserdata(L, (void *)t);
  setclass(L, mt);
}

void concur_class_byvalue (lua_State *L, int mt, const concur_valtype *vt) {
  mt = lua_absindex(L, mt);
  lua_pushinteger(L, vt->tag);
  setclass(L, mt);
}

void concur_class_stays (lua_State *L, const char *name, const char *why) {
  if (luaL_getmetatable(L, name) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushstring(L, why);
  setclass(L, lua_gettop(L) - 1);
  lua_pop(L, 1);
}

int concur_classof (lua_State *L, int idx, const void **info) {
  int kind = CONCUR_UD_FOREIGN;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
    return kind;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CLASSES_KEY) == LUA_TTABLE) {
    lua_pushvalue(L, -2);
    switch (lua_rawget(L, -2)) {
      case LUA_TLIGHTUSERDATA:
        /* NOTE: the size too: a foreign userdata given a proxy's
        ** metatable (debug.setmetatable) is not read as a proxy */
        if (lua_rawlen(L, idx) == sizeof(concur_proxy)) {
          *info = lua_touserdata(L, -1);
          kind = CONCUR_UD_PROXY;
        }
        break;
      case LUA_TNUMBER:
        *info = concur_valtype_of((int)lua_tointeger(L, -1));
        if (*info) kind = CONCUR_UD_VALUE;
        break;
      case LUA_TSTRING:
        *info = lua_tostring(L, -1);   /* anchored by the class table */
        kind = CONCUR_UD_STAYS;
        break;
      default: break;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return kind;
}

/* ---- scratch ---------------------------------------------------------------- */

void concur_scratch_reset (concur_scratch *s) {
  for (size_t i = 0; i < s->buf.nobjs; i++) concur_obj_unref(s->buf.objs[i]);
  s->buf.nobjs = 0;
  s->buf.len = 0;
  if (s->used) {
    if (s->cap > 4096) {   /* do not keep a huge map for small messages */
      free(s->map);
      s->map = NULL;
      s->cap = 0;
    }
    else memset(s->map, 0, s->cap * sizeof *s->map);
    s->used = 0;
  }
  if (s->buf.cap > ((size_t)1 << 20)) {
    free(s->buf.data);
    s->buf.data = NULL;
    s->buf.cap = 0;
  }
}

static int scratch_gc (lua_State *L) {
  concur_scratch *s = luaL_testudata(L, 1, SCRATCH_MT);
  if (s == NULL) return concur_typeerror(L, 1, SCRATCH_MT);
  concur_scratch_reset(s);
  concur_buf_free(&s->buf);
  free(s->map);
  s->map = NULL;
  return 0;
}

/* Pushes the state's scratch and returns it: a fresh one when the current
** one is busy (a use nested in another, from a finalizer, or one that
** raised); the fresh one becomes the state's, and the busy one stays alive
** on its user's stack. */
concur_scratch *concur_scratch_get (lua_State *L) {
  concur_scratch *s;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
  s = lua_touserdata(L, -1);
  if (s != NULL && !s->busy) return s;
  lua_pop(L, 1);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  if (luaL_newmetatable(L, SCRATCH_MT)) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
  return s;
}

static size_t hashptr (const void *p, size_t mask) {
  uintptr_t x = (uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 29;
  return (size_t)x & mask;
}

lua_Integer concur_seen_get (concur_scratch *s, const void *key) {
  if (s->used == 0) return -1;
  for (size_t i = hashptr(key, s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (s->map[i].key == key) return s->map[i].id;
    if (s->map[i].key == NULL) return -1;
  }
}

int concur_seen_put (concur_scratch *s, const void *key, lua_Integer id) {
  if ((s->used + 1) * 2 > s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 64;
    concur_seen *nm = calloc(ncap, sizeof *nm);
    if (nm == NULL) return -1;
    for (size_t i = 0; i < s->cap; i++)
      if (s->map[i].key) {
        size_t j = hashptr(s->map[i].key, ncap - 1);
        while (nm[j].key) j = (j + 1) & (ncap - 1);
        nm[j] = s->map[i];
      }
    free(s->map);
    s->map = nm;
    s->cap = ncap;
  }
  size_t i = hashptr(key, s->cap - 1);
  while (s->map[i].key) i = (i + 1) & (s->cap - 1);
  s->map[i].key = key;
  s->map[i].id = id;
  s->used++;
  return 0;
}

/* ---- paths ------------------------------------------------------------------ */

void concur_root_init (concur_root *r, const char *root) {
  size_t rlen = strlen(root);
  if (strcmp(root, "task") == 0) { root = ""; rlen = 0; }
  r->indexed = rlen > 2 && rlen < sizeof r->buf &&
               strcmp(root + rlen - 2, "[]") == 0;
  if (r->indexed) {
    memcpy(r->buf, root, rlen - 2);
    r->buf[rlen - 2] = '\0';
    root = r->buf;
  }
  r->name = root;
}

static int isident (const char *s) {
  if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
    return 0;
  for (s++; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9')))
      return 0;
  return 1;
}

static void addpathel (lua_State *L, luaL_Buffer *lb, const concur_root *r,
                       const concur_pathel *p, int k) {
  if (k == 0) {
    if (r->name[0] == '\0') {     /* a task: fn, then args[1], args[2]... */
      if (p->i == 1) luaL_addstring(lb, "fn");
      else {
        lua_pushfstring(L, "args[%I]", (LUAI_UACINT)(p->i - 1));
        luaL_addvalue(lb);
      }
      return;
    }
    luaL_addstring(lb, r->name);
    if (!r->indexed) return;
  }
  switch (p->kind) {
    case CONCUR_P_INDEX:
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)p->i);
      luaL_addvalue(lb);
      break;
    case CONCUR_P_FIELD:
      if (isident(p->s)) lua_pushfstring(L, ".%s", p->s);
      else lua_pushfstring(L, "[\"%s\"]", p->s);
      luaL_addvalue(lb);
      break;
    case CONCUR_P_KEY:
      luaL_addstring(lb, "[<key>]");
      break;
    case CONCUR_P_UPVAL:
      lua_pushfstring(L, "<upvalue %s>", p->s ? p->s : "?");
      luaL_addvalue(lb);
      break;
  }
}

void concur_pushpath (lua_State *L, const concur_root *r,
                      const concur_pathel *path, int last) {
  luaL_Buffer lb;
  luaL_buffinit(L, &lb);
  for (int k = 0; k <= last; k++) {
    if (k == 8 && last > 14) {
      luaL_addstring(&lb, "...");
      k = last - 4;
    }
    addpathel(L, &lb, r, &path[k], k);
  }
  luaL_pushresult(&lb);
}

void concur_codec_open (lua_State *L) {
  (void)L;
}
