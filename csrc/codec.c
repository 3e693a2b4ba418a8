/*
** codec.c: copying Lua values between states, through concur's byte format
** (core/wire.h).
**
** Every boundary uses the same two functions: concur_encode writes values
** from a state into a buffer and concur_decode pushes them into another
** state. Tables keep shared sub-tables and cycles; Lua functions travel as
** (unstripped) bytecode plus their upvalues, with _ENV rebound to the
** receiver's globals and shared upvalues re-joined; C functions travel by
** name; concur's shared objects by reference (an index into the buffer's
** object list); value userdata (bigints) through their registered valtype;
** tables whose metatable opted in (field __concur_restore = true, as the
** Response's) carry its registry name, and arrive with that metatable.
**
** Speed: each state keeps a scratch area in its registry (an encode buffer,
** a pointer map for identity, a table for decoded references), so a small
** message costs no Lua allocation beyond its values. Bytecode is dumped once
** per closure (weak cache in the sender) and loaded once per worker for
** closures whose only upvalue is _ENV (cache by hash in the receiver).
**
** Safety: the decoder checks every length and index against the bytes it
** was given, bounds nesting by CONCUR_MAX_DEPTH, and loads bytecode only if
** its keyed hash verifies (Lua's undump is not safe on arbitrary bytes).
*/
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "concur.h"

/* registry keys */
static const char SCRATCH_KEY = 's';  /* the state's scratch userdata */
static const char REFS_KEY = 'r';     /* table of decoded references */
static const char DUMP_KEY = 'd';     /* weak: closure -> dumped bytecode */
static const char LOAD_KEY = 'l';     /* hash -> loaded _ENV-only closure */
#define LOAD_CACHE_MAX 1024            /* entries before the cache starts afresh */
static const char CFN_KEY = 'c';      /* C function -> "module\0field" */

static const concur_valtype *_Atomic valtypes[256];

void concur_register_valtype (const concur_valtype *vt) {
  atomic_store_explicit(&valtypes[vt->tag], vt, memory_order_release);
}

/* ---- scratch: a pointer -> id map and an encode buffer ------------------- */

typedef struct seen_entry { const void *key; lua_Integer id; } seen_entry;

typedef struct scratch {
  int busy_enc, busy_dec;
  long nloaded;         /* entries of package.loaded when names were built */
  concur_buf buf;
  seen_entry *map;      /* open addressing, key NULL = empty */
  size_t cap, used;
} scratch;

static void scratch_reset (scratch *s) {
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
  scratch *s = lua_touserdata(L, 1);
  scratch_reset(s);
  concur_buf_free(&s->buf);
  free(s->map);
  s->map = NULL;
  return 0;
}

static scratch *newscratch (lua_State *L) {
  scratch *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  if (luaL_newmetatable(L, "concur.scratch")) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
  lua_pop(L, 1);
  return s;
}

/* The state's scratch; a fresh one when the current one is busy (a nested
** use from a finalizer, or a previous use that raised). */
static scratch *getscratch (lua_State *L, int dec) {
  scratch *s;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SCRATCH_KEY);
  s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (s == NULL || (dec ? s->busy_dec : s->busy_enc)) s = newscratch(L);
  return s;
}

static size_t hashptr (const void *p, size_t mask) {
  uintptr_t x = (uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 29;
  return (size_t)x & mask;
}

/* returns the id stored for key, or -1 */
static lua_Integer seen_get (scratch *s, const void *key) {
  if (s->used == 0) return -1;
  for (size_t i = hashptr(key, s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (s->map[i].key == key) return s->map[i].id;
    if (s->map[i].key == NULL) return -1;
  }
}

static int seen_put (scratch *s, const void *key, lua_Integer id) {
  if ((s->used + 1) * 2 > s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 64;
    seen_entry *nm = calloc(ncap, sizeof *nm);
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

/* ---- encoder ---------------------------------------------------------------- */

enum { P_INDEX, P_FIELD, P_KEY, P_UPVAL };

typedef struct pathel {
  int kind;
  lua_Integer i;
  const char *s;        /* a string kept alive on the stack while used */
} pathel;

typedef struct enc {
  lua_State *L;
  scratch *s;
  concur_buf *b;
  lua_Integer nrefs;
  int depth;
  int modchecked;           /* module names are known to be current */
  const char *root;
  int rootindexed;
  pathel path[CONCUR_MAX_DEPTH + 4];
} enc;

static void enc_value (enc *e, int idx);

static int isident (const char *s) {
  if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
    return 0;
  for (s++; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9')))
      return 0;
  return 1;
}

/* Pushes the path of the value being encoded, e.g. "args[2].cb". */
static void addpathel (enc *e, luaL_Buffer *lb, int k) {
  lua_State *L = e->L;
  pathel *p = &e->path[k];
  if (k == 0) {
    if (e->root[0] == '\0') {     /* a task: fn, then args[1], args[2]... */
      if (p->i == 1) luaL_addstring(lb, "fn");
      else {
        lua_pushfstring(L, "args[%I]", (LUAI_UACINT)(p->i - 1));
        luaL_addvalue(lb);
      }
      return;
    }
    luaL_addstring(lb, e->root);
    if (!e->rootindexed) return;
  }
  switch (p->kind) {
    case P_INDEX:
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)p->i);
      luaL_addvalue(lb);
      break;
    case P_FIELD:
      if (isident(p->s)) lua_pushfstring(L, ".%s", p->s);
      else lua_pushfstring(L, "[\"%s\"]", p->s);
      luaL_addvalue(lb);
      break;
    case P_KEY:
      luaL_addstring(lb, "[<key>]");
      break;
    case P_UPVAL:
      lua_pushfstring(L, "<upvalue %s>", p->s);
      luaL_addvalue(lb);
      break;
  }
}

/* Pushes the path of the value being encoded, e.g. "args[2].cb"; long
** paths keep their first and last few steps. */
static void pushpath (enc *e) {
  luaL_Buffer lb;
  int last = e->depth < CONCUR_MAX_DEPTH + 3 ? e->depth : CONCUR_MAX_DEPTH + 3;
  luaL_buffinit(e->L, &lb);
  for (int k = 0; k <= last; k++) {
    if (k == 8 && last > 14) {
      luaL_addstring(&lb, "...");
      k = last - 4;
    }
    addpathel(e, &lb, k);
  }
  luaL_pushresult(&lb);
}

static CONCUR_NORETURN void enc_fail (enc *e, const char *kind, const char *what) {
  lua_State *L = e->L;
  pushpath(e);
  e->s->busy_enc = 0;
  scratch_reset(e->s);
  concur_error(L, kind, "cannot transfer %s (at %s)", what,
               lua_tostring(L, -1));
  abort();   /* not reached */
}

static void enc_put (enc *e, const void *p, size_t n) {
  if (concur_buf_write(e->b, p, n)) enc_fail(e, "limit", "a value this large");
}

static void enc_tag (enc *e, char c) {
  concur_buf *b = e->b;
  if (b->len < b->cap) b->data[b->len++] = c;
  else enc_put(e, &c, 1);
}

static void enc_varint (enc *e, uint64_t v) {
  if (concur_wire_varint(e->b, v)) enc_fail(e, "limit", "a value this large");
}

static void enc_str (enc *e, const char *s, size_t len) {
  enc_tag(e, 's');
  enc_varint(e, len);
  enc_put(e, s, len);
}

/* Emits a back reference if the object was seen; else registers it and
** returns 0. */
static int enc_ref (enc *e, const void *p) {
  lua_Integer id = seen_get(e->s, p);
  if (id >= 0) {
    enc_tag(e, 'r');
    enc_varint(e, (uint64_t)id);
    return 1;
  }
  if (seen_put(e->s, p, e->nrefs++)) enc_fail(e, "limit", "(out of memory)");
  return 0;
}

static void enc_enter (enc *e) {
  if (e->depth >= CONCUR_MAX_DEPTH)
    enc_fail(e, "limit", "a value nested this deeply");
  if (!lua_checkstack(e->L, 8)) enc_fail(e, "limit", "(stack overflow)");
  e->depth++;
}

static void build_cfnames (lua_State *L);

/* A fingerprint of package.loaded (which modules, which tables): when it
** changes, the names are built again. */
static long count_loaded (lua_State *L) {
  uintptr_t h = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    h = h * 31 + (uintptr_t)lua_topointer(L, -1) + (uintptr_t)lua_topointer(L, -2);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return (long)(h | 1);
}

/* A loaded module travels by name ('M'): the receiver requires it. */
static int enc_module (enc *e, int idx) {
  lua_State *L = e->L;
  if (!e->modchecked) {     /* once per message: are the names current? */
    long n = count_loaded(L);
    e->modchecked = 1;
    if (n != e->s->nloaded ||
        lua_rawgetp(L, LUA_REGISTRYINDEX, &CFN_KEY) != LUA_TTABLE) {
      if (n == e->s->nloaded) lua_pop(L, 1);
      build_cfnames(L);
      e->s->nloaded = n;
    }
    else lua_pop(L, 1);
  }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CFN_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    size_t len;
    const char *name = lua_tolstring(L, -1, &len);
    enc_tag(e, 'M');
    enc_str(e, name, len);
    lua_pop(L, 2);
    return 1;
  }
  lua_pop(L, 2);
  return 0;
}

/* A table whose metatable travels by name ('N' and the name, before 'T'):
** one whose metatable opted in with __concur_restore = true (raw reads, so
** no metamethod runs). */
static void enc_mtname (enc *e, int idx) {
  lua_State *L = e->L;
  int top = lua_gettop(L);
  if (!lua_getmetatable(L, idx)) return;
  lua_pushliteral(L, "__concur_restore");
  if (lua_rawget(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -1)) {
    lua_pushliteral(L, "__name");
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      size_t len;
      const char *name = lua_tolstring(L, -1, &len);
      enc_tag(e, 'N');
      enc_str(e, name, len);
    }
  }
  lua_settop(L, top);
}

static void enc_table (enc *e, int idx) {
  lua_State *L = e->L;
  lua_Integer narr, i;
  if (enc_module(e, idx)) return;
  if (enc_ref(e, lua_topointer(L, idx))) return;
  enc_enter(e);
  enc_mtname(e, idx);
  narr = (lua_Integer)lua_rawlen(L, idx);
  enc_tag(e, 'T');
  enc_varint(e, (uint64_t)narr);
  for (i = 1; i <= narr; i++) {
    e->path[e->depth].kind = P_INDEX;
    e->path[e->depth].i = i;
    lua_rawgeti(L, idx, i);
    enc_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (lua_isinteger(L, top - 1)) {
      lua_Integer k = lua_tointeger(L, top - 1);
      if (k >= 1 && k <= narr) { lua_pop(L, 1); continue; }
      e->path[e->depth].kind = P_INDEX;
      e->path[e->depth].i = k;
    }
    else if (lua_type(L, top - 1) == LUA_TSTRING) {
      e->path[e->depth].kind = P_FIELD;
      e->path[e->depth].s = lua_tostring(L, top - 1);
    }
    else e->path[e->depth].kind = P_KEY;
    {
      pathel saved = e->path[e->depth];
      e->path[e->depth].kind = P_KEY;
      enc_value(e, top - 1);
      e->path[e->depth] = saved;
    }
    enc_value(e, top);
    lua_pop(L, 1);
  }
  enc_tag(e, 'e');
  e->depth--;
}

/* ---- functions ---- */

typedef struct dumped { uint64_t hash; size_t len; char code[1]; } dumped;

static int dump_writer (lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  return concur_buf_write(ud, p, sz);
}

/* The bytecode of the closure at idx, dumped once and kept in a weak table. */
static dumped *getdump (enc *e, int idx) {
  lua_State *L = e->L;
  dumped *d;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DUMP_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DUMP_KEY);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    d = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return d;
  }
  lua_pop(L, 1);
  {
    concur_buf tmp = CONCUR_BUF_INIT;
    lua_pushvalue(L, idx);
    if (lua_dump(L, dump_writer, &tmp, 0) != 0) {
      concur_buf_free(&tmp);
      enc_fail(e, "transfer", "a function that cannot be dumped");
    }
    lua_pop(L, 1);
    d = lua_newuserdatauv(L, offsetof(dumped, code) + tmp.len, 0);
    d->len = tmp.len;
    d->hash = concur_hash(tmp.data, tmp.len);
    memcpy(d->code, tmp.data, tmp.len);
    concur_buf_free(&tmp);
  }
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_pop(L, 2);
  return d;   /* kept alive by the weak table while the closure lives */
}

/* Builds the map from package.loaded: module table -> "module", and
** C function -> "module\0field", looking one level into sub-tables (so
** concur.core's bigint.new is found too). */
static void build_cfnames (lua_State *L) {
  lua_newtable(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
      const char *mod = lua_tostring(L, -2);
      lua_pushvalue(L, -1);             /* the module itself, by its name */
      lua_pushvalue(L, -3);
      lua_rawset(L, -6);
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
          const char *field = lua_tostring(L, -2);
          if (lua_iscfunction(L, -1)) {
            lua_pushvalue(L, -1);
            lua_rawget(L, -7);
            if (lua_isnil(L, -1)) {   /* first name found wins */
              lua_pop(L, 1);
              lua_pushvalue(L, -1);
              lua_pushfstring(L, "%s%c%s", mod, 0, field);
              lua_rawset(L, -8);
            }
            else lua_pop(L, 1);
          }
          else if (lua_type(L, -1) == LUA_TTABLE && strcmp(mod, "_G") != 0) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
              if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
                lua_pushvalue(L, -1);
                lua_pushfstring(L, "%s%c%s.%s", mod, 0, field,
                                lua_tostring(L, -3));
                lua_rawset(L, -10);
              }
              lua_pop(L, 1);
            }
          }
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CFN_KEY);
}

static void enc_cfunction (enc *e, int idx) {
  lua_State *L = e->L;
  for (int tries = 0; tries < 2; tries++) {
    if (tries || lua_rawgetp(L, LUA_REGISTRYINDEX, &CFN_KEY) != LUA_TTABLE) {
      if (!tries) lua_pop(L, 1);
      build_cfnames(L);
      lua_rawgetp(L, LUA_REGISTRYINDEX, &CFN_KEY);
    }
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TSTRING) {
      size_t len;
      const char *name = lua_tolstring(L, -1, &len);
      size_t mlen = strlen(name);
      enc_tag(e, 'C');
      enc_str(e, name, mlen);
      enc_str(e, name + mlen + 1, len - mlen - 1);
      lua_pop(L, 2);
      return;
    }
    lua_pop(L, 2);
  }
  enc_fail(e, "transfer", "a C function that is in no loaded module");
}

static void enc_function (enc *e, int idx) {
  lua_State *L = e->L;
  lua_Debug ar;
  dumped *d;
  if (lua_iscfunction(L, idx)) { enc_cfunction(e, idx); return; }
  if (enc_ref(e, lua_topointer(L, idx))) return;
  lua_Integer self = e->nrefs - 1;
  enc_enter(e);
  d = getdump(e, idx);
  enc_tag(e, 'F');
  enc_put(e, &d->hash, 8);
  enc_varint(e, d->len);
  enc_put(e, d->code, d->len);
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  enc_varint(e, ar.nups);
  for (int i = 1; i <= ar.nups; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    void *id = lua_upvalueid(L, idx, i);
    lua_Integer prev;
    int top = lua_gettop(L);
    if (name && strcmp(name, "_ENV") == 0) {   /* the receiver's globals */
      enc_tag(e, 'E');
      lua_pop(L, 1);
      continue;
    }
    prev = seen_get(e->s, id);
    if (prev >= 0) {      /* shared with an upvalue already sent: join */
      enc_tag(e, 'j');
      enc_varint(e, (uint64_t)(prev >> 8));
      enc_varint(e, (uint64_t)(prev & 0xff));
    }
    else {
      if (seen_put(e->s, id, self << 8 | i)) enc_fail(e, "limit", "(out of memory)");
      e->path[e->depth].kind = P_UPVAL;
      e->path[e->depth].s = name ? name : "?";
      enc_value(e, top);
    }
    lua_pop(L, 1);
  }
  e->depth--;
}

static void enc_userdata (enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_getmetatable(L, idx)) {
    int t = lua_getfield(L, -1, "__concur");
    if (t == LUA_TLIGHTUSERDATA) {
      concur_proxy *p = lua_touserdata(L, idx);
      lua_pop(L, 2);
      if (p->o == NULL) enc_fail(e, "transfer", "a closed object");
      if (concur_buf_addobj(e->b, p->o)) enc_fail(e, "limit", "(out of memory)");
      enc_tag(e, 'o');
      enc_varint(e, e->b->nobjs - 1);
      return;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "__concur_value") == LUA_TLIGHTUSERDATA) {
      const concur_valtype *vt = lua_touserdata(L, -1);
      concur_buf tmp = CONCUR_BUF_INIT;
      lua_pop(L, 2);
      int rc = vt->encode(L, idx, &tmp);
      if (rc != 0) {
        concur_buf_free(&tmp);
        if (rc == CONCUR_VALUE_CLOSED) enc_fail(e, "transfer", "a closed value");
        enc_fail(e, "limit", "a value this large");
      }
      enc_tag(e, 'v');
      enc_put(e, &vt->tag, 1);
      enc_varint(e, tmp.len);
      if (concur_buf_write(e->b, tmp.data, tmp.len)) {
        concur_buf_free(&tmp);
        enc_fail(e, "limit", "a value this large");
      }
      concur_buf_free(&tmp);
      return;
    }
    lua_pop(L, 2);
  }
  enc_fail(e, "transfer", lua_pushfstring(L, "a userdata (%s)",
                                          luaL_typename(L, idx)));
}

static void enc_value (enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: enc_tag(e, 'n'); break;
    case LUA_TBOOLEAN: enc_tag(e, lua_toboolean(L, idx) ? 't' : 'f'); break;
    case LUA_TNUMBER: {
      char tmp[9];
      if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        tmp[0] = 'i';
        memcpy(tmp + 1, &v, 8);
      }
      else {
        lua_Number v = lua_tonumber(L, idx);
        tmp[0] = 'd';
        memcpy(tmp + 1, &v, 8);
      }
      enc_put(e, tmp, 9);
      break;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      enc_str(e, s, len);
      break;
    }
    case LUA_TTABLE: enc_table(e, idx); break;
    case LUA_TFUNCTION: enc_function(e, idx); break;
    case LUA_TUSERDATA: enc_userdata(e, idx); break;
    case LUA_TTHREAD: enc_fail(e, "transfer", "a coroutine"); break;
    case LUA_TLIGHTUSERDATA: enc_fail(e, "transfer", "a light userdata"); break;
    default: enc_fail(e, "transfer", luaL_typename(L, idx)); break;
  }
}

void concur_encode (lua_State *L, int first, int n, concur_buf *out,
                    const char *root) {
  enc e;
  size_t rlen = strlen(root);
  char rootbuf[64];
  first = lua_absindex(L, first);
  e.L = L;
  e.s = getscratch(L, 0);
  e.s->busy_enc = 1;
  scratch_reset(e.s);
  e.b = &e.s->buf;
  e.nrefs = 0;
  e.depth = 0;
  e.modchecked = 0;
  if (strcmp(root, "task") == 0) { root = ""; rlen = 0; }
  e.rootindexed = rlen > 2 && rlen < sizeof rootbuf &&
                  strcmp(root + rlen - 2, "[]") == 0;
  if (e.rootindexed) {
    memcpy(rootbuf, root, rlen - 2);
    rootbuf[rlen - 2] = '\0';
    root = rootbuf;
  }
  e.root = root;
  for (int i = 0; i < n; i++) {
    e.path[0].kind = P_INDEX;
    e.path[0].i = i + 1;
    enc_value(&e, first + i);
  }
  /* hand the bytes and objects over; the scratch keeps its capacity */
  out->data = malloc(e.b->len ? e.b->len : 1);
  if (out->data == NULL) enc_fail(&e, "limit", "(out of memory)");
  if (e.b->len) memcpy(out->data, e.b->data, e.b->len);
  out->len = out->cap = e.b->len;
  out->objs = NULL;
  out->nobjs = out->objcap = 0;
  if (e.b->nobjs) {
    out->objs = e.b->objs;            /* refs move with the array */
    out->nobjs = e.b->nobjs;
    out->objcap = e.b->objcap;
    e.b->objs = NULL;
    e.b->nobjs = e.b->objcap = 0;
  }
  e.s->busy_enc = 0;
  scratch_reset(e.s);
}

/* ---- decoder ---------------------------------------------------------------- */

typedef struct dec {
  lua_State *L;
  scratch *s;
  concur_rd r;
  int refs;                 /* stack index of the references table */
  lua_Integer nrefs;
  int depth;
  concur_obj *const *objs;
  size_t nobjs;
} dec;

static CONCUR_NORETURN void dec_fail (dec *d, const char *why) {
  d->s->busy_dec = 0;
  lua_pushnil(d->L);   /* drop the half-filled references table */
  lua_rawsetp(d->L, LUA_REGISTRYINDEX, &REFS_KEY);
  concur_error(d->L, "transfer", "malformed message (%s)", why);
  abort();
}

static void dec_value (dec *d);

static int dec_byte (dec *d) {
  if (d->r.p >= d->r.end) dec_fail(d, "truncated");
  return *d->r.p++;
}

static uint64_t dec_varint (dec *d) {
  uint64_t v;
  if (concur_rd_varint(&d->r, &v)) dec_fail(d, "bad length");
  return v;
}

static const char *dec_bytes (dec *d, size_t n) {
  const char *p = (const char *)d->r.p;
  if ((size_t)(d->r.end - d->r.p) < n) dec_fail(d, "truncated");
  d->r.p += n;
  return p;
}

static size_t remaining (dec *d) { return (size_t)(d->r.end - d->r.p); }

/* registers the value on top as the next reference */
static void dec_addref (dec *d) {
  lua_pushvalue(d->L, -1);
  lua_rawseti(d->L, d->refs, ++d->nrefs);
}

static void dec_enter (dec *d) {
  if (d->depth >= CONCUR_MAX_DEPTH) dec_fail(d, "nested too deeply");
  if (!lua_checkstack(d->L, 8)) dec_fail(d, "stack overflow");
  d->depth++;
}

/* A table ('T' read); nhash: how many pairs to make room for. */
static void dec_table (dec *d, uint64_t nhash) {
  lua_State *L = d->L;
  uint64_t narr = dec_varint(d);
  if (narr > remaining(d)) dec_fail(d, "bad array size");
  dec_enter(d);
  lua_createtable(L, (int)narr, (int)nhash);
  dec_addref(d);
  for (uint64_t i = 1; i <= narr; i++) {
    dec_value(d);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else lua_rawseti(L, -2, (lua_Integer)i);
  }
  for (;;) {
    if (d->r.p < d->r.end && *d->r.p == 'e') { d->r.p++; break; }
    dec_value(d);
    if (lua_isnil(L, -1)) dec_fail(d, "nil key");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      dec_fail(d, "NaN key");
    dec_value(d);
    lua_rawset(L, -3);
  }
  d->depth--;
}

/* the reference 'id' (0-based), pushed */
static void dec_getref (dec *d, uint64_t id) {
  if (id >= (uint64_t)d->nrefs) dec_fail(d, "bad reference");
  lua_rawgeti(d->L, d->refs, (lua_Integer)id + 1);
}

static void dec_function (dec *d) {
  lua_State *L = d->L;
  uint64_t hash, len, nups;
  const char *code;
  int allenv = 1;
  memcpy(&hash, dec_bytes(d, 8), 8);
  len = dec_varint(d);
  if (len > remaining(d)) dec_fail(d, "truncated bytecode");
  code = dec_bytes(d, len);
  nups = dec_varint(d);
  if (nups > 255 || nups > remaining(d)) dec_fail(d, "bad upvalue count");
  for (uint64_t i = 0; i < nups; i++)
    if (d->r.p[i] != 'E') { allenv = 0; break; }
  dec_enter(d);
  if (allenv) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LOAD_KEY) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &LOAD_KEY);
    }
    if (lua_rawgeti(L, -1, (lua_Integer)hash) == LUA_TFUNCTION) {
      /* NOTE: the bytes are not even read: the cached function was loaded
      ** from bytes that verified under this hash */
      lua_remove(L, -2);
      dec_addref(d);
      d->r.p += nups;
      d->depth--;
      return;
    }
    lua_pop(L, 1);
  }
  if (concur_hash(code, len) != hash) dec_fail(d, "bytecode check failed");
  if (luaL_loadbufferx(L, code, len, "=(transferred)", "b") != LUA_OK)
    dec_fail(d, "bytecode does not load");
  {
    lua_Debug ar;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">u", &ar);
    if (ar.nups != nups) dec_fail(d, "upvalue count mismatch");
  }
  dec_addref(d);
  int fn = lua_gettop(L);
  for (int i = 1; i <= (int)nups; i++) {
    int c = dec_byte(d);
    if (c == 'E') {
      lua_pushglobaltable(L);
      lua_setupvalue(L, fn, i);
    }
    else if (c == 'j') {
      uint64_t ref = dec_varint(d), up = dec_varint(d);
      dec_getref(d, ref);
      if (lua_type(L, -1) != LUA_TFUNCTION || lua_iscfunction(L, -1) ||
          up < 1 || up > 255 || lua_getupvalue(L, -1, (int)up) == NULL)
        dec_fail(d, "bad upvalue join");
      lua_pop(L, 1);
      lua_upvaluejoin(L, fn, i, -1, (int)up);
      lua_pop(L, 1);
    }
    else {
      d->r.p--;
      dec_value(d);
      lua_setupvalue(L, fn, i);
    }
  }
  if (allenv) {     /* cache it for the next task that sends the same code */
    lua_Integer n;
    lua_getfield(L, fn - 1, "n");   /* entries so far (a raw field) */
    n = lua_tointeger(L, -1) + 1;
    lua_pop(L, 1);
    if (n > LOAD_CACHE_MAX) {       /* a state that sees endless new code
                                    ** starts a fresh cache, bounded */
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &LOAD_KEY);
      lua_replace(L, fn - 1);
      n = 1;
    }
    lua_pushinteger(L, n);
    lua_setfield(L, fn - 1, "n");
    lua_pushvalue(L, fn);
    lua_rawseti(L, fn - 1, (lua_Integer)hash);
    lua_remove(L, fn - 1);
  }
  d->depth--;
}

/* Reads a string (the 's' tag, a length, the bytes). */
static const char *dec_name (dec *d, size_t *len, const char *what) {
  if (dec_byte(d) != 's') dec_fail(d, what);
  *len = dec_varint(d);
  return dec_bytes(d, *len);
}

/* Pushes the loaded module of the given name, requiring it if needed. */
static void push_module (dec *d, const char *name, size_t len) {
  lua_State *L = d->L;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, len);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushlstring(L, name, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    dec_fail(d, "module not found");
  }
}

static void dec_module (dec *d) {
  size_t len;
  const char *name = dec_name(d, &len, "bad module name");
  push_module(d, name, len);
}

/* A C function: its module's name, then its field ("f" or "sub.f"). */
static void dec_cfunction (dec *d) {
  lua_State *L = d->L;
  size_t mlen, flen;
  const char *mod = dec_name(d, &mlen, "bad C function name");
  const char *field = dec_name(d, &flen, "bad C function name");
  const char *dot = memchr(field, '.', flen);
  push_module(d, mod, mlen);
  if (dot) {
    lua_pushlstring(L, field, (size_t)(dot - field));
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) != LUA_TTABLE) dec_fail(d, "C function not found");
    flen -= (size_t)(dot - field) + 1;
    field = dot + 1;
  }
  lua_pushlstring(L, field, flen);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (!lua_iscfunction(L, -1)) dec_fail(d, "C function not found");
}

static void dec_value (dec *d) {
  lua_State *L = d->L;
  int c = dec_byte(d);
  switch (c) {
    case 'M': dec_module(d); break;
    case 'n': lua_pushnil(L); break;
    case 'f': lua_pushboolean(L, 0); break;
    case 't': lua_pushboolean(L, 1); break;
    case 'i': {
      lua_Integer v;
      memcpy(&v, dec_bytes(d, 8), 8);
      lua_pushinteger(L, v);
      break;
    }
    case 'd': {
      lua_Number v;
      memcpy(&v, dec_bytes(d, 8), 8);
      lua_pushnumber(L, v);
      break;
    }
    case 's': {
      uint64_t len = dec_varint(d);
      if (len > remaining(d)) dec_fail(d, "truncated string");
      lua_pushlstring(L, dec_bytes(d, len), len);
      break;
    }
    case 'T': dec_table(d, 0); break;
    case 'H': {   /* a size hint, then a table */
      uint64_t nhash = dec_varint(d);
      /* NOTE: a pair takes at least 2 bytes: the hint never asks for more
      ** room than the bytes could fill */
      if (nhash > remaining(d) / 2 || nhash > (1u << 26) || dec_byte(d) != 'T')
        dec_fail(d, "bad table size");
      dec_table(d, nhash);
      break;
    }
    case 'r': dec_getref(d, dec_varint(d)); break;
    case 'F': dec_function(d); break;
    case 'C': dec_cfunction(d); break;
    case 'o': {
      uint64_t i = dec_varint(d);
      if (i >= d->nobjs) dec_fail(d, "bad object index");
      concur_pushobj(L, d->objs[i]);
      break;
    }
    case 'N': {   /* a table with its metatable, by name */
      size_t len;
      const char *name = dec_name(d, &len, "bad metatable name");
      if (d->r.p >= d->r.end || (*d->r.p != 'T' && *d->r.p != 'H'))
        dec_fail(d, "bad named table");
      dec_value(d);
      if (!lua_checkstack(L, 3)) dec_fail(d, "stack overflow");
      /* NOTE: only a metatable that opted in is ever set (raw reads: no
      ** metamethod runs): the name comes from the bytes, and the registry
      ** holds other tables too */
      lua_pushlstring(L, name, len);
      if (lua_rawget(L, LUA_REGISTRYINDEX) == LUA_TTABLE) {
        int ok;
        lua_pushliteral(L, "__concur_restore");
        ok = lua_rawget(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (ok) {
          lua_setmetatable(L, -2);
          break;
        }
      }
      lua_pop(L, 1);
      break;
    }
    case 'v': {
      int tag = dec_byte(d);
      uint64_t len = dec_varint(d);
      const concur_valtype *vt = atomic_load_explicit(&valtypes[tag],
                                                      memory_order_acquire);
      if (vt == NULL) dec_fail(d, "unknown value type");
      if (len > remaining(d)) dec_fail(d, "truncated value");
      if (vt->decode(L, dec_bytes(d, len), len)) dec_fail(d, "bad value");
      break;
    }
    default: dec_fail(d, "unknown tag");
  }
}

int concur_decode (lua_State *L, const char *p, size_t len,
                   concur_obj *const *objs, size_t nobjs) {
  dec d;
  int n = 0, base;
  d.L = L;
  d.s = getscratch(L, 1);
  d.r.p = (const unsigned char *)p;
  d.r.end = d.r.p + len;
  d.nrefs = 0;
  d.depth = 0;
  d.objs = objs;
  d.nobjs = nobjs;
  luaL_checkstack(L, 4, "decoding");
  /* the references table: the state's cached one, unless it is in use */
  if (d.s->busy_dec || lua_rawgetp(L, LUA_REGISTRYINDEX, &REFS_KEY) != LUA_TTABLE) {
    if (!d.s->busy_dec) lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &REFS_KEY);
  }
  d.s->busy_dec = 1;
  d.refs = lua_gettop(L);
  base = d.refs;
  while (d.r.p < d.r.end) {
    if (!lua_checkstack(L, 4)) dec_fail(&d, "too many values");
    dec_value(&d);
    n++;
  }
  for (lua_Integer i = 1; i <= d.nrefs; i++) {   /* leave it empty */
    lua_pushnil(L);
    lua_rawseti(L, base, i);
  }
  d.s->busy_dec = 0;
  lua_remove(L, base);
  return n;
}

void concur_codec_open (lua_State *L) {
  (void)L;
}
