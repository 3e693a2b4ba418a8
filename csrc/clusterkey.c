/*
** clusterkey.c: core.cluster_key, the shared secret of a cluster as a Lua
** object that seals values into signed frames and opens them again
** (core/clusterframe.c), for the Lua side of concur.cluster: queue items,
** map values, frontier entries.
**
**   local k = core.cluster_key(secret)          -- at least 16 bytes
**   local s = k:seal(ctx, "Q", id, num, name, ...)   --> frame (a string)
**   k:open(ctx, s)   --> false (a frame that does not verify: nothing in it
**                        was read) | type, id, num, name, values...
**
** 'ctx' is the Redis key the frame is stored under. Values are encoded by
** the codec; concur's shared objects (a Queue, a Lock) live in one machine
** and are refused with kind "transfer".
*/
#include <string.h>
#include "concur.h"
#include "core/clusterframe.h"

#define KEY "concur.cluster.Key"

typedef struct keybox { concur_mac *m; } keybox;

static concur_mac *checkkey (lua_State *L) {
  keybox *k = luaL_testudata(L, 1, KEY);
  if (k == NULL) concur_typeerror(L, 1, KEY);
  if (k->m == NULL) concur_error(L, "closed", "the key was closed");
  return k->m;
}

void concur_cluster_checkbuf (lua_State *L, concur_buf *b) {
  if (b->nobjs) {
    const char *name = b->objs[0]->type->name;   /* a static string */
    concur_buf_free(b);
    concur_error(L, "transfer", "a %s cannot cross to another machine (a cluster "
                 "object, such as a cluster.Queue, can)", name);
  }
}

/* Encodes the values from 'first' to the top into b (empty), for another
** machine. */
static void encode_remote (lua_State *L, int first, concur_buf *b) {
  concur_encode(L, first, lua_gettop(L) - first + 1, b, "value[]");
  concur_cluster_checkbuf(L, b);
}

/*** key:seal(ctx, type, id, num, name, ...) --> a signed frame */
static int key_seal (lua_State *L) {
  concur_mac *m = checkkey(L);
  concur_cframe f;
  concur_buf b = CONCUR_BUF_INIT, out = CONCUR_BUF_INIT;
  size_t ctxlen, tlen;
  const char *ctx = concur_checklstring(L, 2, &ctxlen);
  const char *type = concur_checklstring(L, 3, &tlen);
  int rc;
  if (tlen != 1) return concur_argerror(L, 3, "type must be one character");
  f.type = (unsigned char)type[0];
  f.id = (uint64_t)concur_checkinteger(L, 4);
  f.num = concur_checknumber(L, 5);
  f.name = concur_checklstring(L, 6, &f.namelen);
  if (f.namelen > 255) return concur_argerror(L, 6, "name longer than 255 bytes");
  encode_remote(L, 7, &b);
  f.payload = b.data;
  f.len = b.len;
  rc = concur_cframe_seal(m, ctx, ctxlen, &f, &out);
  concur_buf_free(&b);
  if (rc != 0) {
    concur_buf_free(&out);
    return concur_error(L, "limit", "not enough memory");
  }
  lua_pushlstring(L, out.data, out.len);
  concur_buf_free(&out);
  return 1;
}

/*** key:open(ctx, frame) --> false | type, id, num, name, values... */
static int key_open (lua_State *L) {
  concur_mac *m = checkkey(L);
  concur_cframe f;
  size_t ctxlen, len;
  const char *ctx = concur_checklstring(L, 2, &ctxlen);
  const char *s = concur_checklstring(L, 3, &len);
  char *copy, type;
  int n;
  if (concur_cframe_open(m, ctx, ctxlen, s, len, &f) != 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_settop(L, 3);
  luaL_checkstack(L, 8, "opening a frame");
  type = (char)f.type;
  lua_pushlstring(L, &type, 1);
  lua_pushinteger(L, (lua_Integer)f.id);
  lua_pushnumber(L, f.num);
  lua_pushlstring(L, f.name, f.namelen);
  copy = lua_newuserdatauv(L, f.len ? f.len : 1, 0);   /* re-keyed in place */
  memcpy(copy, f.payload, f.len);
  if (concur_cframe_rehash(copy, f.len) != 0)
    return concur_error(L, "transfer", "malformed message (in a signed frame)");
  n = concur_decode(L, copy, f.len, NULL, 0);
  lua_remove(L, 8);     /* the copy */
  return 4 + n;
}

/*** key:close(): forgets the key (also __gc) */
static int key_close (lua_State *L) {
  keybox *k = luaL_testudata(L, 1, KEY);
  if (k == NULL) return concur_typeerror(L, 1, KEY);
  concur_mac_free(k->m);
  k->m = NULL;
  return 0;
}

/*** core.cluster_key(secret) --> a key; raises "argument" for a secret
** shorter than 16 bytes */
static int key_new (lua_State *L) {
  size_t len;
  const char *secret = concur_checklstring(L, 1, &len);
  keybox *k;
  if (len < CONCUR_CFRAME_MINKEY)
    return concur_argerror(L, 1, "the shared key must be at least 16 bytes "
                           "(make one with: openssl rand -hex 32)");
  k = lua_newuserdatauv(L, sizeof *k, 0);
  k->m = NULL;
  luaL_setmetatable(L, KEY);
  k->m = concur_mac_new(secret, len);
  if (k->m == NULL) return concur_error(L, "limit", "cannot make an HMAC-SHA256 key");
  return 1;
}

static const luaL_Reg methods[] = {
  {"seal", key_seal},
  {"open", key_open},
  {"close", key_close},
  {NULL, NULL}
};

void concur_clusterkey_open (lua_State *L) {
  if (luaL_newmetatable(L, KEY)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, key_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  concur_class_stays(L, KEY, "a cluster key belongs to the state that made it:"
                     " make one in each state");
  lua_pushcfunction(L, key_new);
  lua_setfield(L, -2, "cluster_key");
}
