/*
** decode.c: the codec's decoder: concur's bytes (core/wire.h) into values
** of a state, for concur_decode (concur.h). What it shares with the encoder
** is in codec.c.
**
** Safety: the decoder checks every length and index against the bytes it
** was given, bounds nesting by CONCUR_MAX_DEPTH, loads bytecode only if its
** keyed hash verifies (Lua's undump is not safe on arbitrary bytes), and
** checks the stack's room before every value: a message of more values than
** a Lua stack can hold raises kind "limit", never overflows it. Malformed
** bytes raise kind "transfer" ("malformed message (...)"); so does a value
** the receiver cannot rebuild (a module it cannot require), naming the
** module and the path of the value ("fn<upvalue fmt>").
**
** Speed: closures whose only upvalue is _ENV are loaded once per state
** (a cache by hash), so a task submitted 100,000 times is loaded once per
** worker; the table of references is kept between messages.
*/
#include <stdlib.h>
#include <string.h>
#include "codec.h"

/* registry keys (only their addresses matter) */
static const char REFS_KEY = 'r';     /* table of decoded references */
static const char LOAD_KEY = 'l';     /* hash -> loaded _ENV-only closure */
#define LOAD_CACHE_MAX 1024            /* entries before the cache starts afresh */

/* Room on the stack for one level of a value, its error included. */
#define DEC_ROOM 20

/* Where the value being decoded sits, per level: an array index, the key
** at a stack index, a key being decoded, or upvalue i of the function at a
** stack index. Resolved into a path (codec.h) only for an error. */
enum { D_INDEX, D_KEYAT, D_KEY, D_UPVAL };
typedef struct dpath { int kind; lua_Integer i; int at; } dpath;

typedef struct dec {
  lua_State *L;
  concur_rd r;
  int refs;                 /* stack index of the references table */
  lua_Integer nrefs;
  int depth;
  concur_obj *const *objs;
  size_t nobjs;
  const char *root;
  dpath path[CONCUR_MAX_DEPTH + 4];
} dec;

/* Pushes the path of the value being decoded, e.g. "results[1].cb". */
static void pushpath (dec *d) {
  lua_State *L = d->L;
  concur_pathel path[CONCUR_MAX_DEPTH + 4];
  concur_root root;
  for (int k = 0; k <= d->depth; k++) {
    const dpath *p = &d->path[k];
    path[k].kind = CONCUR_P_KEY;
    path[k].i = p->i;
    path[k].s = NULL;
    if (p->kind == D_INDEX) path[k].kind = CONCUR_P_INDEX;
    else if (p->kind == D_KEYAT && lua_type(L, p->at) == LUA_TSTRING) {
      path[k].kind = CONCUR_P_FIELD;
      path[k].s = lua_tostring(L, p->at);
    }
    else if (p->kind == D_KEYAT && lua_isinteger(L, p->at)) {
      path[k].kind = CONCUR_P_INDEX;
      path[k].i = lua_tointeger(L, p->at);
    }
    else if (p->kind == D_UPVAL) {
      path[k].kind = CONCUR_P_UPVAL;
      path[k].s = lua_getupvalue(L, p->at, (int)p->i);   /* a name from the */
      if (path[k].s) lua_pop(L, 1);                      /* function's proto */
    }
  }
  concur_root_init(&root, d->root);
  concur_pushpath(L, &root, path, d->depth);
}

/* The stack cannot take the next value: drops the values decoded so far
** and raises kind "limit". */
static CONCUR_NORETURN void dec_full (dec *d) {
  lua_settop(d->L, d->refs);
  concur_error(d->L, "limit", "too many values to receive (the Lua stack "
               "holds at most %d)", LUAI_MAXSTACK);
  abort();
}

/* Malformed bytes: raises kind "transfer". */
static CONCUR_NORETURN void dec_fail (dec *d, const char *why) {
  if (!lua_checkstack(d->L, DEC_ROOM)) dec_full(d);
  concur_error(d->L, "transfer", "malformed message (%s)", why);
  abort();
}

/* A value this state cannot rebuild (its module cannot be required here):
** raises kind "transfer", naming what and where ("cannot receive the C
** function mymod.fmt (at fn<upvalue fmt>): ..."). */
static CONCUR_NORETURN void dec_refuse (dec *d, const char *what,
                                        const char *why) {
  lua_State *L = d->L;
  if (!lua_checkstack(L, DEC_ROOM)) dec_full(d);
  pushpath(d);
  concur_error(L, "transfer", "cannot receive %s (at %s): %s", what,
               lua_tostring(L, -1), why);
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
  if (!lua_checkstack(d->L, DEC_ROOM)) dec_full(d);
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
    if (d->r.end - d->r.p >= 9 && (*d->r.p == 'i' || *d->r.p == 'd')) {
      /* a number, the common item: without dec_value's round */
      if (*d->r.p == 'i') {
        lua_Integer v;
        memcpy(&v, d->r.p + 1, 8);
        lua_pushinteger(L, v);
      }
      else {
        lua_Number v;
        memcpy(&v, d->r.p + 1, 8);
        lua_pushnumber(L, v);
      }
      d->r.p += 9;
      lua_rawseti(L, -2, (lua_Integer)i);
      continue;
    }
    d->path[d->depth].kind = D_INDEX;
    d->path[d->depth].i = (lua_Integer)i;
    dec_value(d);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else lua_rawseti(L, -2, (lua_Integer)i);
  }
  for (;;) {
    if (d->r.p < d->r.end && *d->r.p == 'e') { d->r.p++; break; }
    d->path[d->depth].kind = D_KEY;
    d->path[d->depth].i = 0;
    dec_value(d);
    if (lua_isnil(L, -1)) dec_fail(d, "nil key");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      dec_fail(d, "NaN key");
    d->path[d->depth].kind = D_KEYAT;
    d->path[d->depth].at = lua_gettop(L);
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
      d->path[d->depth].kind = D_UPVAL;
      d->path[d->depth].i = i;
      d->path[d->depth].at = fn;
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

/* Pushes the loaded module of the given name, requiring it if needed.
** Returns NULL, or why it cannot (a message, pushed instead). */
static const char *push_module (dec *d, const char *name, size_t len) {
  lua_State *L = d->L;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, len);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) return NULL;
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushlstring(L, name, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushliteral(L, "require failed");
    }
    return lua_tostring(L, -1);
  }
  if (lua_type(L, -1) == LUA_TTABLE) return NULL;
  lua_pop(L, 1);
  lua_pushlstring(L, name, len);
  return lua_pushfstring(L, "module '%s' is not a table here",
                         lua_tostring(L, -1));
}

static void dec_module (dec *d) {
  size_t len;
  const char *name = dec_name(d, &len, "bad module name");
  const char *why = push_module(d, name, len);
  if (why) {
    lua_pushlstring(d->L, name, len);
    dec_refuse(d, lua_pushfstring(d->L, "the module '%s'",
                                  lua_tostring(d->L, -1)), why);
  }
}

/* A C function: its module's name, then its field ("f" or "sub.f"). */
static void dec_cfunction (dec *d) {
  lua_State *L = d->L;
  size_t mlen, flen;
  const char *mod = dec_name(d, &mlen, "bad C function name");
  const char *field = dec_name(d, &flen, "bad C function name");
  const char *dot = memchr(field, '.', flen);
  const char *why = push_module(d, mod, mlen);
  int top = lua_gettop(L);
  if (why == NULL) {
    const char *f = field;
    size_t n = flen;
    if (dot) {
      lua_pushlstring(L, field, (size_t)(dot - field));
      lua_rawget(L, -2);
      lua_remove(L, -2);
      n -= (size_t)(dot - field) + 1;
      f = dot + 1;
    }
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushlstring(L, f, n);
      lua_rawget(L, -2);
      lua_remove(L, -2);
      if (lua_iscfunction(L, -1)) return;
    }
    why = "its module has no such C function here";
  }
  lua_settop(L, top);
  lua_pushlstring(L, mod, mlen);
  lua_pushlstring(L, field, flen);
  dec_refuse(d, lua_pushfstring(L, "the C function %s.%s", lua_tostring(L, -2),
                                lua_tostring(L, -1)), why);
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
      if (!lua_checkstack(L, 3)) dec_full(d);
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
      const concur_valtype *vt = concur_valtype_of(tag);
      if (vt == NULL) dec_fail(d, "unknown value type");
      if (len > remaining(d)) dec_fail(d, "truncated value");
      if (vt->decode(L, dec_bytes(d, len), len)) dec_fail(d, "bad value");
      break;
    }
    default: dec_fail(d, "unknown tag");
  }
}

int concur_decode_as (lua_State *L, const char *p, size_t len,
                      concur_obj *const *objs, size_t nobjs, const char *root) {
  dec d;
  int n = 0;
  d.L = L;
  d.r.p = (const unsigned char *)p;
  d.r.end = d.r.p + len;
  d.nrefs = 0;
  d.depth = 0;
  d.objs = objs;
  d.nobjs = nobjs;
  d.root = root;
  if (!lua_checkstack(L, DEC_ROOM))
    concur_error(L, "limit", "too many values to receive (the Lua stack "
                 "holds at most %d)", LUAI_MAXSTACK);
  /* the references table: the state's cached one, taken out of the
  ** registry while in use (a decode nested in this one, from a finalizer,
  ** makes its own; one that raised is left to the collector) */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &REFS_KEY) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &REFS_KEY);
  }
  else {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  d.refs = lua_gettop(L);
  while (d.r.p < d.r.end) {
    if (!lua_checkstack(L, DEC_ROOM)) dec_full(&d);
    d.path[0].kind = D_INDEX;
    d.path[0].i = n + 1;
    dec_value(&d);
    n++;
  }
  for (lua_Integer i = 1; i <= d.nrefs; i++) {   /* leave it empty */
    lua_pushnil(L);
    lua_rawseti(L, d.refs, i);
  }
  lua_pushvalue(L, d.refs);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &REFS_KEY);
  lua_remove(L, d.refs);
  return n;
}

int concur_decode (lua_State *L, const char *p, size_t len,
                   concur_obj *const *objs, size_t nobjs) {
  return concur_decode_as(L, p, len, objs, nobjs, "value[]");
}
