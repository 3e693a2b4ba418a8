/*
** encode.c: the codec's encoder: values of a state into concur's bytes
** (core/wire.h), for concur_encode (concur.h). What it shares with the
** decoder is in codec.c.
**
** Each value is written as its tag and contents; tables and Lua functions
** seen before become back references ('r'), so shared parts and cycles
** survive. Bytecode is dumped once per closure (a weak cache in the
** sender). C functions and module tables travel by name: the first name
** found for them in package.loaded, looking first in the standard
** libraries and concur's own modules (codec.h), then in the other modules
** in the order of their names, so a script's own module that happens to
** hold string.format never becomes that function's name.
**
** Errors name the path of the offending value ("args[2].cb") and, for
** concur's objects that stay in their state, what to do instead.
*/
#include <stdlib.h>
#include <string.h>
#include "codec.h"

/* registry keys (only their addresses matter) */
static const char DUMP_KEY = 'd';     /* weak: closure -> dumped bytecode */
static const char CFN_KEY = 'c';      /* value -> "module" or "module\0field" */
static const char DENSE_KEY = 'a';    /* the metatable of concur_markdense */
static const char VIEW_KEY = 'w';     /* the metatable of concur_pushview */

typedef struct view { lua_Integer i, j; } view;

typedef struct enc {
  lua_State *L;
  concur_scratch *s;
  concur_buf *b;
  lua_Integer nrefs;
  int depth;
  int modchecked;           /* module names are known to be current */
  concur_root root;
  concur_pathel path[CONCUR_MAX_DEPTH + 4];
} enc;

/* Room on the stack for one level of a value, its error included. */
#define ENC_ROOM 20

static void enc_value (enc *e, int idx);

/* Raises: "cannot transfer <what> (at <path>)", then ": <why>" if given. */
static CONCUR_NORETURN void enc_failwhy (enc *e, const char *kind,
                                         const char *what, const char *why) {
  lua_State *L = e->L;
  int last = e->depth < CONCUR_MAX_DEPTH + 3 ? e->depth : CONCUR_MAX_DEPTH + 3;
  concur_pushpath(L, &e->root, e->path, last);
  e->s->busy = 0;
  concur_scratch_reset(e->s);
  concur_error(L, kind, "cannot transfer %s (at %s)%s%s", what,
               lua_tostring(L, -1), why ? ": " : "", why ? why : "");
  abort();   /* not reached */
}

static CONCUR_NORETURN void enc_fail (enc *e, const char *kind,
                                      const char *what) {
  enc_failwhy(e, kind, what, NULL);
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
  lua_Integer id = concur_seen_get(e->s, p);
  if (id >= 0) {
    enc_tag(e, 'r');
    enc_varint(e, (uint64_t)id);
    return 1;
  }
  if (concur_seen_put(e->s, p, e->nrefs++)) enc_fail(e, "limit", "(out of memory)");
  return 0;
}

static void enc_enter (enc *e) {
  if (e->depth >= CONCUR_MAX_DEPTH)
    enc_fail(e, "limit", "a value nested this deeply");
  if (!lua_checkstack(e->L, ENC_ROOM))
    enc_fail(e, "limit", "a value nested this deeply (the stack is full)");
  e->depth++;
}

static int build_cfnames (lua_State *L);

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
      if (build_cfnames(L) != 0)
        enc_fail(e, "limit", "a module (not enough memory to name it)");
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
static int enc_mtname (enc *e, int idx) {
  lua_State *L = e->L;
  int top = lua_gettop(L);
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &DENSE_KEY);
  if (lua_rawequal(L, -1, -2)) {
    lua_settop(L, top);
    return 1;
  }
  lua_pop(L, 1);
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
  return 0;
}

void concur_markdense (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DENSE_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DENSE_KEY);
  }
  lua_setmetatable(L, idx);
}

/* Encodes t[i] (t at idx), an array item at 'at' in the path. */
static void enc_item (enc *e, int idx, lua_Integer i, lua_Integer at) {
  lua_State *L = e->L;
  concur_buf *b = e->b;
  if (lua_rawgeti(L, idx, i) == LUA_TNUMBER && b->cap - b->len >= 9) {
    /* a number, the common item: without enc_value's round */
    char *p = b->data + b->len;
    if (lua_isinteger(L, -1)) {
      lua_Integer v = lua_tointeger(L, -1);
      p[0] = 'i';
      memcpy(p + 1, &v, 8);
    }
    else {
      lua_Number v = lua_tonumber(L, -1);
      p[0] = 'd';
      memcpy(p + 1, &v, 8);
    }
    b->len += 9;
  }
  else {
    e->path[e->depth].kind = CONCUR_P_INDEX;
    e->path[e->depth].i = at;
    enc_value(e, lua_gettop(L));
  }
  lua_pop(L, 1);
}

void concur_pushview (lua_State *L, int t, lua_Integer i, lua_Integer j) {
  view *v;
  t = lua_absindex(L, t);
  v = lua_newuserdatauv(L, sizeof *v, 1);
  v->i = i;
  v->j = j;
  lua_pushvalue(L, t);
  lua_setiuservalue(L, -2, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &VIEW_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "concur.slice");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &VIEW_KEY);
  }
  lua_setmetatable(L, -2);
}

/* Whether the userdata at idx is a view of concur_pushview. */
static int isview (lua_State *L, int idx) {
  int yes;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &VIEW_KEY);
  yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

/* A view travels as the table of its items: what a table of them, made
** with room for them, would be (nil items included, as the decoder skips
** them). */
static void enc_view (enc *e, int idx) {
  lua_State *L = e->L;
  view *v = lua_touserdata(L, idx);
  lua_Integer n = v->j >= v->i ? v->j - v->i + 1 : 0;
  int t;
  if (enc_ref(e, v)) return;   /* the decoder counts it as a table */
  enc_enter(e);
  lua_getiuservalue(L, idx, 1);
  t = lua_gettop(L);
  enc_tag(e, 'T');
  enc_varint(e, (uint64_t)n);
  for (lua_Integer k = 0; k < n; k++) enc_item(e, t, v->i + k, k + 1);
  lua_pop(L, 1);
  enc_tag(e, 'e');
  e->depth--;
}

static void enc_table (enc *e, int idx) {
  lua_State *L = e->L;
  lua_Integer narr, i;
  int dense;
  if (enc_module(e, idx)) return;
  if (enc_ref(e, lua_topointer(L, idx))) return;
  enc_enter(e);
  dense = enc_mtname(e, idx);
  narr = (lua_Integer)lua_rawlen(L, idx);
  enc_tag(e, 'T');
  enc_varint(e, (uint64_t)narr);
  for (i = 1; i <= narr; i++) enc_item(e, idx, i, i);
  /* the other keys: next visits the array part first, so a dense table
  ** (concur.h) starts after it, from key narr (a border: t[narr] is not
  ** nil, and in the array part) */
  if (dense && narr > 0) lua_pushinteger(L, narr);
  else lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (lua_isinteger(L, top - 1)) {
      lua_Integer k = lua_tointeger(L, top - 1);
      if (k >= 1 && k <= narr) { lua_pop(L, 1); continue; }
      e->path[e->depth].kind = CONCUR_P_INDEX;
      e->path[e->depth].i = k;
    }
    else if (lua_type(L, top - 1) == LUA_TSTRING) {
      e->path[e->depth].kind = CONCUR_P_FIELD;
      e->path[e->depth].s = lua_tostring(L, top - 1);
    }
    else e->path[e->depth].kind = CONCUR_P_KEY;
    {
      concur_pathel saved = e->path[e->depth];
      e->path[e->depth].kind = CONCUR_P_KEY;
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

/* names[value at v] = the string on top (popped), unless the value has a
** name already: the first name given wins. */
static void addname (lua_State *L, int names, int v) {
  lua_pushvalue(L, v);
  if (lua_rawget(L, names) == LUA_TNIL) {
    lua_pushvalue(L, v);
    lua_pushvalue(L, -3);
    lua_rawset(L, names);
  }
  lua_pop(L, 2);
}

/* Names the module table at 'm' ("mod") and its C functions
** ("mod\0field"), looking one level into its sub-tables ("mod\0sub.f":
** so concur.core's bigint.new is found too; not into _G's, which are the
** other libraries). Uses 6 stack slots. */
static void addmodule (lua_State *L, int names, int m, const char *mod) {
  lua_pushstring(L, mod);
  addname(L, names, m);
  lua_pushnil(L);
  while (lua_next(L, m)) {
    int v = lua_gettop(L);
    if (lua_type(L, v - 1) == LUA_TSTRING) {
      const char *field = lua_tostring(L, v - 1);
      if (lua_iscfunction(L, v)) {
        lua_pushfstring(L, "%s%c%s", mod, 0, field);
        addname(L, names, v);
      }
      else if (lua_type(L, v) == LUA_TTABLE && strcmp(mod, "_G") != 0) {
        lua_pushnil(L);
        while (lua_next(L, v)) {
          if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
            lua_pushfstring(L, "%s%c%s.%s", mod, 0, field,
                            lua_tostring(L, -2));
            addname(L, names, v + 2);
          }
          lua_pop(L, 1);
        }
      }
    }
    lua_pop(L, 1);
  }
}

static int preferred (const char *mod) {
  for (int i = 0; concur_preferred_modules[i]; i++)
    if (strcmp(concur_preferred_modules[i], mod) == 0) return 1;
  return 0;
}

static int cmpnames (const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Builds the names of C functions and module tables from package.loaded:
** the preferred modules first (codec.h: the standard libraries, concur's
** own), then the others in the order of their names, so the name a value
** gets does not depend on the order of a hash table. Returns 0, or -1 when
** the stack or memory is short (the names are then left as they were). */
static int build_cfnames (lua_State *L) {
  int top = lua_gettop(L), names, loaded;
  size_t n = 0, cap = 0;
  const char **others = NULL;
  if (!lua_checkstack(L, 12)) return -1;
  lua_newtable(L);
  names = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  if (lua_type(L, loaded) != LUA_TTABLE) {
    lua_settop(L, top);
    return -1;
  }
  for (int i = 0; concur_preferred_modules[i]; i++) {
    if (lua_getfield(L, loaded, concur_preferred_modules[i]) == LUA_TTABLE)
      addmodule(L, names, lua_gettop(L), concur_preferred_modules[i]);
    lua_pop(L, 1);
  }
  /* NOTE: the key strings stay alive in package.loaded, which no code
  ** changes while this runs (raw accesses only) */
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE &&
        !preferred(lua_tostring(L, -2))) {
      if (n == cap) {
        size_t ncap = cap ? cap * 2 : 32;
        const char **no = realloc(others, ncap * sizeof *no);
        if (no == NULL) {
          free(others);
          lua_settop(L, top);
          return -1;
        }
        others = no;
        cap = ncap;
      }
      others[n++] = lua_tostring(L, -2);
    }
    lua_pop(L, 1);
  }
  if (n) qsort(others, n, sizeof *others, cmpnames);
  for (size_t i = 0; i < n; i++) {
    lua_getfield(L, loaded, others[i]);
    addmodule(L, names, lua_gettop(L), others[i]);
    lua_pop(L, 1);
  }
  free(others);
  lua_pushvalue(L, names);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CFN_KEY);
  lua_settop(L, top);
  return 0;
}

static void enc_cfunction (enc *e, int idx) {
  lua_State *L = e->L;
  for (int tries = 0; tries < 2; tries++) {
    if (tries || lua_rawgetp(L, LUA_REGISTRYINDEX, &CFN_KEY) != LUA_TTABLE) {
      if (!tries) lua_pop(L, 1);
      if (build_cfnames(L) != 0)
        enc_fail(e, "limit", "a C function (not enough memory to name it)");
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
    prev = concur_seen_get(e->s, id);
    if (prev >= 0) {      /* shared with an upvalue already sent: join */
      enc_tag(e, 'j');
      enc_varint(e, (uint64_t)(prev >> 8));
      enc_varint(e, (uint64_t)(prev & 0xff));
    }
    else {
      if (concur_seen_put(e->s, id, self << 8 | i)) enc_fail(e, "limit", "(out of memory)");
      e->path[e->depth].kind = CONCUR_P_UPVAL;
      e->path[e->depth].s = name ? name : "?";
      enc_value(e, top);
    }
    lua_pop(L, 1);
  }
  e->depth--;
}

/* The name of the userdata at idx, for errors (its __name, read raw). */
static const char *udname (lua_State *L, int idx) {
  int t = luaL_getmetafield(L, idx, "__name");
  if (t == LUA_TSTRING) return lua_tostring(L, -1);   /* left on the stack */
  if (t != LUA_TNIL) lua_pop(L, 1);
  return "userdata";
}

/* A userdata: one of concur's, known by its metatable (codec.c). */
static void enc_userdata (enc *e, int idx) {
  lua_State *L = e->L;
  const void *info = NULL;
  if (isview(L, idx)) {
    enc_view(e, idx);
    return;
  }
  switch (concur_classof(L, idx, &info)) {
    case CONCUR_UD_PROXY: {   /* by reference */
      concur_proxy *p = lua_touserdata(L, idx);
      if (p->o == NULL) enc_fail(e, "transfer", "a closed object");
      if (concur_buf_addobj(e->b, p->o)) enc_fail(e, "limit", "(out of memory)");
      enc_tag(e, 'o');
      enc_varint(e, e->b->nobjs - 1);
      return;
    }
    case CONCUR_UD_VALUE: {   /* by value */
      const concur_valtype *vt = info;
      concur_buf tmp = CONCUR_BUF_INIT;
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
    case CONCUR_UD_STAYS:
      enc_failwhy(e, "transfer", lua_pushfstring(L, "a %s", udname(L, idx)),
                  (const char *)info);
      break;
    default:
      enc_fail(e, "transfer", lua_pushfstring(L, "a userdata (%s)",
                                              udname(L, idx)));
  }
}

static void enc_value (enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: enc_tag(e, 'n'); break;
    case LUA_TBOOLEAN: enc_tag(e, lua_toboolean(L, idx) ? 't' : 'f'); break;
    case LUA_TNUMBER: {
      char tmp[9];
      concur_buf *b = e->b;
      if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        tmp[0] = 'i';
        memcpy(tmp + 1, &v, 8);
      }
      else {
        lua_Number x = lua_tonumber(L, idx);
        tmp[0] = 'd';
        memcpy(tmp + 1, &x, 8);
      }
      if (b->cap - b->len >= 9) {   /* the common case, without a call */
        char *p = b->data + b->len;
        p[0] = tmp[0];
        memcpy(p + 1, tmp + 1, 8);
        b->len += 9;
      }
      else enc_put(e, tmp, 9);
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
  first = lua_absindex(L, first);
  if (!lua_checkstack(L, ENC_ROOM))
    concur_error(L, "limit", "cannot transfer %d values: the stack is full", n);
  e.L = L;
  e.s = concur_scratch_get(L);
  e.s->busy = 1;
  concur_scratch_reset(e.s);
  e.b = &e.s->buf;
  e.nrefs = 0;
  e.depth = 0;
  e.modchecked = 0;
  concur_root_init(&e.root, root);
  for (int i = 0; i < n; i++) {
    e.path[0].kind = CONCUR_P_INDEX;
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
  e.s->busy = 0;
  concur_scratch_reset(e.s);
  lua_pop(L, 1);   /* the scratch */
}
