/*
** frontier.c: the Lua binding of the local crawl frontier
** (core/crawl_frontier.c): fetch.Frontier{ state = path }, the default
** frontier of fetch.Crawler, and the model of the small interface a
** frontier object offers the crawler (another one, on Redis, offers the
** same methods):
**
**   frontier:push(entries)  --> added, duplicates
**       entries: an array of { url = canonical URL, depth = n, hops = n }
**   frontier:pop(n [, inflight, per_host]) --> array of { url, depth,
**       hops, host }: at most n, least deep first, and from each host at
**       most per_host less inflight[host] (a host key, "scheme://host[:port]",
**       the URL up to its path, maps to its entries in flight)
**   frontier:done(url)      -- a popped entry is finished
**   frontier:seen(url)      --> boolean
**   frontier:size()         --> entries queued (not popped)
**   frontier:stats()        --> { queued, inflight, seen, seen_bytes,
**                                 journal_bytes }
**   frontier:load()         --> the table last saved, or nil
**   frontier:save(t)        -- the crawler's counters, kept with the rest
**   frontier:close()
**
** The frontier belongs to the state that made it (it is not shared): the
** crawler runs in one state and hands parsing to a pool.
*/
#include <stdlib.h>
#include <string.h>
#include "concur.h"
#include "core/crawl_frontier.h"
#include "core/fetch_url.h"

#define FRONTIER "concur.fetch.Frontier"
#define COMPACT_AT (8u << 20)

typedef struct frontierud { concur_frontier *f; } frontierud;

static concur_frontier *checkfrontier (lua_State *L) {
  frontierud *u = luaL_testudata(L, 1, FRONTIER);
  if (u == NULL) concur_typeerror(L, 1, FRONTIER);
  if (u->f == NULL) concur_error(L, "closed", "the frontier is closed");
  return u->f;
}

void *concur_frontier_checkarg (lua_State *L, int idx) {
  frontierud *u = luaL_testudata(L, idx, FRONTIER);
  if (u == NULL) concur_typeerror(L, idx, FRONTIER);
  if (u->f == NULL) concur_error(L, "closed", "the frontier is closed");
  return u->f;
}

/* A URL for the frontier at 'idx' (a string; path names it in errors). */
static const char *checkurl (lua_State *L, int idx, size_t *len,
                             const char *fname, const char *path) {
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    concur_error(L, "argument", "bad argument #1 to '%s' (%s: string "
                 "expected, got %s)", fname, path, luaL_typename(L, idx));
  s = lua_tolstring(L, idx, len);
  if (strlen(s) != *len || *len > CONCUR_URL_MAX ||
      (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0))
    concur_error(L, "argument", "bad argument #1 to '%s' (%s: not a "
                 "canonical http(s) URL)", fname, path);
  return s;
}

static uint32_t checkcount (lua_State *L, int t, const char *field,
                            lua_Integer i) {
  int isint;
  lua_Integer v;
  if (lua_getfield(L, t, field) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  v = lua_tointegerx(L, -1, &isint);
  lua_pop(L, 1);
  if (!isint || v < 0 || v > 0x7fffffff)
    concur_error(L, "argument", "bad argument #1 to 'push' (entries[%d]."
                 "%s: a non-negative integer expected)", (int)i, field);
  return (uint32_t)v;
}

/*** fetch.Frontier([opts]) --> a frontier in this state. opts: state (the
** path of its journal: replayed now, then appended to), compact_at (bytes
** a journal may reach before it is compacted, 8 MiB) */
static int frontier_new (lua_State *L) {
  static const char *const OPTS[] = { "state", "compact_at", NULL };
  const char *path = NULL;
  lua_Integer compact_at = COMPACT_AT;
  frontierud *u;
  char err[512];
  if (!lua_isnoneornil(L, 1)) {
    concur_checktype(L, 1, LUA_TTABLE);
    concur_checkoptions(L, 1, OPTS);
    path = concur_optcstring(L, 1, "state");   /* a path (anchored) */
    compact_at = concur_optinteger(L, 1, "compact_at", compact_at, 0);
  }
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->f = NULL;
  luaL_setmetatable(L, FRONTIER);
  if ((u->f = concur_frontier_new(path, (uint64_t)compact_at, err,
                                   sizeof err)) == NULL)
    return concur_error(L, path ? "argument" : "limit", "%s", err);
  return 1;
}

static int frontier_push (lua_State *L) {
  concur_frontier *f = checkfrontier(L);
  lua_Integer added = 0, dups = 0, n;
  concur_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    const char *url;
    uint32_t depth, hops;
    int rc;
    if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
      return concur_error(L, "argument", "bad argument #1 to 'push' "
                          "(entries[%d]: table expected, got %s)", (int)i,
                          luaL_typename(L, -1));
    lua_getfield(L, -1, "url");
    url = checkurl(L, -1, &len, "push", "entries[].url");
    depth = checkcount(L, -2, "depth", i);
    hops = checkcount(L, -2, "hops", i);
    rc = concur_frontier_push(f, url, len, depth, hops);
    lua_pop(L, 2);
    if (rc < 0) {
      concur_frontier_flush(f);
      return concur_error(L, "limit", "out of memory in the frontier");
    }
    if (rc) added++; else dups++;
  }
  if (concur_frontier_flush(f))
    return concur_error(L, "limit", "cannot write the crawl journal");
  lua_pushinteger(L, added);
  lua_pushinteger(L, dups);
  return 2;
}

/* pop's room for a host: per_host (index 4) less what the table at index 3
** says is in flight there. */
static long hostroom (void *ud, const char *key, size_t keylen) {
  lua_State *L = ud;
  lua_Integer inflight;
  lua_pushlstring(L, key, keylen);
  lua_rawget(L, 3);
  inflight = lua_tointeger(L, -1);   /* nil and non-numbers: 0 */
  lua_pop(L, 1);
  return (long)(lua_tointeger(L, 4) - inflight);
}

static int frontier_pop (lua_State *L) {
  concur_frontier *f = checkfrontier(L);
  lua_Integer max = concur_checkinteger(L, 2);
  concur_fentry **out;
  size_t n;
  int limited = !lua_isnoneornil(L, 3);
  if (max < 0) return concur_argerror(L, 2, "must not be negative");
  if (limited) {
    concur_checktype(L, 3, LUA_TTABLE);
    if (concur_checkinteger(L, 4) < 0)
      return concur_argerror(L, 4, "must not be negative");
  }
  lua_settop(L, 4);
  if (max > 4096) max = 4096;
  out = lua_newuserdatauv(L, (size_t)(max ? max : 1) * sizeof *out, 0);
  n = concur_frontier_pop(f, (size_t)max, limited ? hostroom : NULL, L, out);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    /* NOTE: the entries are in flight in the frontier already: a memory
    ** error here leaves them there, as a killed process would */
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, out[i]->url, out[i]->len);
    lua_setfield(L, -2, "url");
    lua_pushinteger(L, out[i]->depth);
    lua_setfield(L, -2, "depth");
    lua_pushinteger(L, out[i]->hops);
    lua_setfield(L, -2, "hops");
    lua_pushlstring(L, out[i]->url, out[i]->hostlen);
    lua_setfield(L, -2, "host");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int frontier_done (lua_State *L) {
  concur_frontier *f = checkfrontier(L);
  size_t len;
  const char *url = checkurl(L, 2, &len, "done", "url");
  if (concur_frontier_done(f, url, len))
    return concur_error(L, "limit", "cannot write the crawl journal");
  return 0;
}

static int frontier_seen (lua_State *L) {
  concur_frontier *f = checkfrontier(L);
  size_t len;
  const char *url = checkurl(L, 2, &len, "seen", "url");
  lua_pushboolean(L, concur_frontier_seen(f, url, len));
  return 1;
}

static int frontier_size (lua_State *L) {
  concur_frontier_stats st;
  concur_frontier_stats_get(checkfrontier(L), &st);
  lua_pushinteger(L, (lua_Integer)st.queued);
  return 1;
}

static int frontier_stats (lua_State *L) {
  concur_frontier_stats st;
  concur_frontier_stats_get(checkfrontier(L), &st);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st.queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, (lua_Integer)st.inflight);
  lua_setfield(L, -2, "inflight");
  lua_pushinteger(L, (lua_Integer)st.seen);
  lua_setfield(L, -2, "seen");
  lua_pushinteger(L, (lua_Integer)st.seen_bytes);
  lua_setfield(L, -2, "seen_bytes");
  lua_pushinteger(L, (lua_Integer)st.journal_bytes);
  lua_setfield(L, -2, "journal_bytes");
  return 1;
}

static int frontier_save (lua_State *L) {
  concur_frontier *f = checkfrontier(L);
  concur_buf b = CONCUR_BUF_INIT;
  int rc;
  concur_checktype(L, 2, LUA_TTABLE);
  concur_encode(L, 2, 1, &b, "counters");
  if (b.nobjs) {
    concur_buf_free(&b);
    return concur_error(L, "transfer", "bad argument #1 to 'save' (the "
                        "counters hold a shared object)");
  }
  rc = concur_frontier_save(f, b.data, b.len);
  concur_buf_free(&b);
  if (rc) return concur_error(L, "limit", "cannot write the crawl journal");
  return 0;
}

static int decode_bytes (lua_State *L) {
  size_t n;
  const char *p = lua_tolstring(L, 1, &n);
  return concur_decode(L, p, n, NULL, 0);
}

static int frontier_load (lua_State *L) {
  concur_frontier *f = checkfrontier(L);
  size_t n;
  const char *p = concur_frontier_saved(f, &n);
  int k;
  if (p == NULL) return 0;
  /* NOTE: the bytes came from a file: the decoder is safe on any, and a
  ** bad record is no counters */
  lua_settop(L, 1);
  lua_pushcfunction(L, decode_bytes);
  lua_pushlstring(L, p, n);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) return 0;
  k = lua_gettop(L);
  return k > 1 ? 1 : 0;
}

static int frontier_close (lua_State *L) {
  frontierud *u = luaL_testudata(L, 1, FRONTIER);
  if (u == NULL) return concur_typeerror(L, 1, FRONTIER);
  if (u->f) {
    concur_frontier *f = u->f;
    u->f = NULL;
    concur_frontier_close(f);
  }
  return 0;
}

static int frontier_tostring (lua_State *L) {
  frontierud *u = luaL_testudata(L, 1, FRONTIER);
  if (u == NULL) return concur_typeerror(L, 1, FRONTIER);
  lua_pushstring(L, u->f ? FRONTIER : FRONTIER " (closed)");
  return 1;
}

static const luaL_Reg frontier_methods[] = {
  {"push", frontier_push},
  {"pop", frontier_pop},
  {"done", frontier_done},
  {"seen", frontier_seen},
  {"size", frontier_size},
  {"stats", frontier_stats},
  {"save", frontier_save},
  {"load", frontier_load},
  {"close", frontier_close},
  {NULL, NULL}
};

void concur_frontier_open (lua_State *L) {
  if (luaL_newmetatable(L, FRONTIER)) {
    luaL_newlib(L, frontier_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, frontier_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, frontier_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, frontier_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, frontier_new);
  lua_setfield(L, -2, "frontier");
}
