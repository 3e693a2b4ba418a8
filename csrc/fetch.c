/*
** fetch.c: the Lua binding of the fetch engine (core/fetch_engine.c):
** core.fetch.Client, the client's methods, and the Response value type.
**
** A Client is a shared object (a refcounted C struct, proxies per state), so
** it crosses into ThreadPool tasks and threads by reference: one engine, one
** set of per-host limits. Every method copies what it needs out of Lua
** (strings stay anchored on the stack) and only then calls the engine, which
** takes its mutex for a few instructions; no C lock is ever held across a
** Lua call. The last reference closes the engine (its thread is joined; it
** only ever waits for the engine loop to notice, never for the network).
**
** Responses come back through futures as tables named by their metatable
** (the codec's 'N': the concur.fetch.Response metatable opts in with
** __concur_restore), so decoding one in whatever state asks for the result,
** and in any state a Response is sent on to (a queue, a thread, a pool
** task's result), sets that metatable again. Its methods live here in C so
** that a state that never required concur.fetch still gets working
** Responses.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "concur.h"
#include "core/fetch_engine.h"
#include "core/fetch_robots.h"
#include "core/future.h"

#define CLIENT "concur.fetch.Client"
#define RESPONSE CONCUR_FETCH_RESPONSE_MT
/* "concur/0.1.0 (Lua 5.4.6; libcurl/7.88.1)": who is asking, with nothing
** that reads like a contact address (there is none to give) */
#define UA_DEFAULT "concur/%s (%s; libcurl/%s)"

typedef struct client {
  concur_obj obj;
  concur_fetch_engine *e;
} client;

static void client_destroy (concur_obj *o) {
  client *c = (client *)o;
  concur_fetch_free(c->e);   /* closes: joins the engine thread */
  free(c);
}

static const concur_objtype client_type = { CLIENT, client_destroy,
  "its connections and per-host limits live in this one; create a client "
  "in the process, e.g. fetch.Client{...} inside the task" };

static client *checkclient (lua_State *L, int arg) {
  client *c = (client *)concur_checkobj(L, arg, &client_type);
  if (concur_fetch_closed(c->e))
    concur_error(L, "closed", "fetch client is closed");
  return c;
}

/* ---- options ------------------------------------------------------------- */

/* Raises the argument error for option 'name' of the table at 'arg'. */
static int opterror (lua_State *L, int arg, const char *name,
                     const char *what) {
  return concur_argerror(L, arg, lua_pushfstring(L, "option '%s' %s", name,
                                                 what));
}

/* Reads number option 'name' (nil: def); it must be >= min (> min when
** strict); math.huge is allowed when inf_ok. */
static double optnumber (lua_State *L, int arg, const char *name, double def,
                         double min, int strict, int inf_ok) {
  double v;
  int t = lua_getfield(L, arg, name);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t != LUA_TNUMBER)
    opterror(L, arg, name, lua_pushfstring(L, "must be a number, got %s",
                                           luaL_typename(L, -1)));
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (isnan(v) || v < min || (strict && v == min) || (!inf_ok && isinf(v)))
    opterror(L, arg, name, strict ? "must be a positive number"
                                  : "must be a non-negative number");
  return v;
}

static long long optinteger (lua_State *L, int arg, const char *name,
                             long long def, long long min) {
  lua_Integer v;
  int t = lua_getfield(L, arg, name), isint;
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isint);
  if (!isint)
    opterror(L, arg, name, lua_pushfstring(L, "must be an integer, got %s",
                                           t == LUA_TNUMBER ? "a fraction"
                                           : luaL_typename(L, -1)));
  lua_pop(L, 1);
  if (v < min)
    opterror(L, arg, name, min > 0 ? "must be a positive integer"
                                   : "must be a non-negative integer");
  return (long long)v;
}

static int optboolean (lua_State *L, int arg, const char *name, int def) {
  int t = lua_getfield(L, arg, name), v;
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t != LUA_TBOOLEAN)
    opterror(L, arg, name, lua_pushfstring(L, "must be a boolean, got %s",
                                           luaL_typename(L, -1)));
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Timeouts: a positive number of seconds, or math.huge for none (0). */
static double opttimeout (lua_State *L, int arg, const char *name,
                          double def) {
  double v = optnumber(L, arg, name, def, 0, 1, 1);
  return isinf(v) ? 0 : v;
}

/*
** Reads the headers table of option 'headers' at 'arg' (name -> string or
** number) into "Name: value" lines anchored in a new table, and an array of
** their pointers in a userdata; leaves both on the stack (2 slots) and
** returns the array (n in *n). A missing option gives an empty array.
*/
static const char **optheaders (lua_State *L, int arg, size_t *n) {
  const char **lines;
  size_t count = 0, i = 0;
  int t = lua_getfield(L, arg, "headers"), tab;
  if (t != LUA_TNIL && t != LUA_TTABLE)
    opterror(L, arg, "headers", lua_pushfstring(L, "must be a table, got %s",
                                                luaL_typename(L, -1)));
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  tab = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, tab)) {
    count++;
    lua_pop(L, 1);
  }
  lines = lua_newuserdatauv(L, (count ? count : 1) * sizeof *lines, 0);
  lua_newtable(L);   /* anchors the lines */
  lua_pushnil(L);
  while (lua_next(L, tab)) {
    size_t nl, vl;
    const char *name, *value;
    char err[256];
    if (lua_type(L, -2) != LUA_TSTRING)
      opterror(L, arg, "headers", "must map header names (strings) to values");
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      opterror(L, arg, "headers", lua_pushfstring(L, "value of '%s' must be a "
               "string, got %s", lua_tostring(L, -2), luaL_typename(L, -1)));
    name = lua_tolstring(L, -2, &nl);
    value = lua_tolstring(L, -1, &vl);
    if (concur_fetch_checkheader(name, nl, value, vl, err, sizeof err))
      opterror(L, arg, "headers", lua_pushfstring(L, "has a %s", err));
    lua_pushfstring(L, "%s: %s", name, value);
    lines[i] = lua_tostring(L, -1);
    lua_rawseti(L, -4, (lua_Integer)++i);
    lua_pop(L, 1);
  }
  lua_remove(L, tab);
  lua_pushvalue(L, -2);   /* keep: the lines table, then the array */
  lua_remove(L, -3);
  *n = count;
  return lines;
}

static const char *const CLIENT_OPTS[] = {
  "concurrency", "per_host", "rate", "per", "burst", "retries", "backoff",
  "max_backoff", "retry_on", "timeout", "connect_timeout", "low_speed_limit",
  "low_speed_time", "max_body", "max_redirects", "user_agent", "headers",
  "robots", "verify", NULL
};

/*** fetch.Client([options]) --> a new client (see API.md "Fetching"). */
static int fetch_client (lua_State *L) {
  concur_fetch_config cfg;
  static const int retry_on[] = { 429, 500, 502, 503, 504 };
  char err[256];
  client *c;
  concur_fetch_engine *e;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  concur_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  concur_checkoptions(L, 1, CLIENT_OPTS);
  memset(&cfg, 0, sizeof cfg);
  cfg.concurrency = (long)optinteger(L, 1, "concurrency", 16, 1);
  cfg.per_host = (long)optinteger(L, 1, "per_host", 4, 1);
  cfg.rate = optnumber(L, 1, "rate", 0, 0, 1, 0);
  cfg.per = optnumber(L, 1, "per", 1, 0, 1, 0);
  cfg.burst = optnumber(L, 1, "burst", 1, 1, 0, 0);
  cfg.retries = (long)optinteger(L, 1, "retries", 3, 0);
  cfg.backoff = optnumber(L, 1, "backoff", 0.5, 0, 0, 0);
  cfg.max_backoff = optnumber(L, 1, "max_backoff", 30, 0, 0, 0);
  cfg.timeout = opttimeout(L, 1, "timeout", 30);
  cfg.connect_timeout = opttimeout(L, 1, "connect_timeout", 10);
  cfg.low_speed_limit = (long)optinteger(L, 1, "low_speed_limit", 1, 0);
  cfg.low_speed_time = optnumber(L, 1, "low_speed_time", 30, 0, 0, 0);
  cfg.max_body = optinteger(L, 1, "max_body", 16 * 1024 * 1024, 0);
  cfg.max_redirects = (long)optinteger(L, 1, "max_redirects", 5, 0);
  cfg.robots = optboolean(L, 1, "robots", 0);
  cfg.verify = optboolean(L, 1, "verify", 1);
  if (lua_getfield(L, 1, "retry_on") == LUA_TNIL) {
    memcpy(cfg.retry_on, retry_on, sizeof retry_on);
    cfg.nretry_on = (int)(sizeof retry_on / sizeof retry_on[0]);
  }
  else {
    lua_Integer n;
    if (!lua_istable(L, -1))
      opterror(L, 1, "retry_on", "must be an array of status codes");
    n = (lua_Integer)lua_rawlen(L, -1);
    if (n > CONCUR_FETCH_MAXRETRYON)
      opterror(L, 1, "retry_on", "has too many status codes");
    for (lua_Integer i = 1; i <= n; i++) {
      int isint;
      lua_Integer s;
      lua_rawgeti(L, -1, i);
      s = lua_tointegerx(L, -1, &isint);
      if (!isint || s < 100 || s > 599)
        opterror(L, 1, "retry_on", "must hold status codes (100 to 599)");
      cfg.retry_on[cfg.nretry_on++] = (int)s;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "user_agent") == LUA_TNIL) {
    const char *v = strchr(CONCUR_VERSION, ' ');
    lua_pop(L, 1);
    lua_pushfstring(L, UA_DEFAULT, v ? v + 1 : CONCUR_VERSION, LUA_RELEASE,
                    curl_version_info(CURLVERSION_NOW)->version);
  }
  else if (lua_type(L, -1) != LUA_TSTRING ||
           concur_fetch_checkheader("User-Agent", 10, lua_tostring(L, -1),
                                    lua_rawlen(L, -1), NULL, 0))
    opterror(L, 1, "user_agent", "must be a string without CR or LF");
  cfg.user_agent = lua_tostring(L, -1);   /* anchored at index 2 */
  cfg.headers = optheaders(L, 1, &cfg.nheaders);
  c = calloc(1, sizeof *c);
  if (c == NULL) return concur_error(L, "limit", "out of memory");
  e = concur_fetch_new(&cfg, err, sizeof err);
  if (e == NULL) {
    free(c);
    return concur_error(L, "limit", "cannot create the client: %s", err);
  }
  concur_obj_init(&c->obj, &client_type);
  c->e = e;
  /* NOTE: pushobj takes its own reference and ours is dropped right after;
  ** only a memory error inside pushobj could leak the engine */
  lua_settop(L, 0);
  concur_pushobj(L, &c->obj);
  concur_obj_unref(&c->obj);
  return 1;
}

/* ---- requests ------------------------------------------------------------ */

static const char *const GET_OPTS[] = {
  "headers", "timeout", "connect_timeout", "retries", "max_body",
  "max_redirects", NULL
};

static const char *const REQUEST_OPTS[] = {
  "method", "url", "headers", "body", "timeout", "connect_timeout",
  "retries", "max_body", "max_redirects", NULL
};

/* Reads the per-request options of the table at 'arg' into s; leaves two
** anchors on the stack. */
static void readopts (lua_State *L, int arg, concur_fetch_spec *s) {
  s->timeout = lua_getfield(L, arg, "timeout") == LUA_TNIL ? -1
             : opttimeout(L, arg, "timeout", 0);
  lua_pop(L, 1);
  s->connect_timeout = lua_getfield(L, arg, "connect_timeout") == LUA_TNIL
                     ? -1 : opttimeout(L, arg, "connect_timeout", 0);
  lua_pop(L, 1);
  s->retries = (long)optinteger(L, arg, "retries", -1, 0);
  s->max_body = optinteger(L, arg, "max_body", -1, 0);
  s->max_redirects = (long)optinteger(L, arg, "max_redirects", -1, 0);
  s->headers = optheaders(L, arg, &s->nheaders);
}

static void initspec (concur_fetch_spec *s) {
  memset(s, 0, sizeof *s);
  s->timeout = s->connect_timeout = -1;
  s->retries = s->max_redirects = -1;
  s->max_body = -1;
}

/* Submits s and pushes its future; a bad URL is an argument error naming
** argument 'urlarg'. */
static int submit (lua_State *L, client *c, concur_fetch_spec *s,
                   int urlarg) {
  concur_future *f = NULL;
  char err[512];
  int rc = concur_fetch_submit(c->e, s, &f, err, sizeof err);
  switch (rc) {
    case CONCUR_FETCH_OK: break;
    case CONCUR_FETCH_EARG: return concur_argerror(L, urlarg, err);
    case CONCUR_FETCH_ECLOSED:
      return concur_error(L, "closed", "fetch client is closed");
    default: return concur_error(L, "limit", "out of memory");
  }
  concur_pushobj(L, &f->obj);
  concur_obj_unref(&f->obj);
  return 1;
}

/*** client:get(url [, opts]) --> Future of a Response. opts: headers,
** timeout, connect_timeout, retries, max_body, max_redirects. */
static int client_get (lua_State *L) {
  client *c = checkclient(L, 1);
  concur_fetch_spec s;
  initspec(&s);
  s.url = concur_checklstring(L, 2, NULL);
  if (!lua_isnoneornil(L, 3)) {
    concur_checktype(L, 3, LUA_TTABLE);
    concur_checkoptions(L, 3, GET_OPTS);
    lua_settop(L, 3);
    readopts(L, 3, &s);
  }
  return submit(L, c, &s, 2);
}

/*** client:request{ method = "POST", url = u, headers = {...}, body = s,
** timeout = s, ... } --> Future of a Response. */
static int client_request (lua_State *L) {
  client *c = checkclient(L, 1);
  concur_fetch_spec s;
  initspec(&s);
  concur_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  concur_checkoptions(L, 2, REQUEST_OPTS);
  if (lua_getfield(L, 2, "url") != LUA_TSTRING)
    opterror(L, 2, "url", lua_pushfstring(L, "must be a string, got %s",
                                          luaL_typename(L, -1)));
  s.url = lua_tostring(L, -1);
  if (lua_getfield(L, 2, "method") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      opterror(L, 2, "method", lua_pushfstring(L, "must be a string, got %s",
                                               luaL_typename(L, -1)));
    s.method = lua_tostring(L, -1);
  }
  if (lua_getfield(L, 2, "body") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      opterror(L, 2, "body", lua_pushfstring(L, "must be a string, got %s",
                                             luaL_typename(L, -1)));
    s.body = lua_tolstring(L, -1, &s.bodylen);
  }
  readopts(L, 2, &s);
  return submit(L, c, &s, 2);
}

/*** client:stats() --> { requests, retries, failures, completed, cancelled,
** bytes, queued, active, by_status = { [code] = n } } */
static int client_stats (lua_State *L) {
  client *c = (client *)concur_checkobj(L, 1, &client_type);
  concur_fetch_stats *st = lua_newuserdatauv(L, sizeof *st, 0);
  concur_fetch_getstats(c->e, st);
  lua_createtable(L, 0, 9);
#define SETI(name) lua_pushinteger(L, (lua_Integer)st->name); \
                   lua_setfield(L, -2, #name)
  SETI(requests); SETI(retries); SETI(failures); SETI(completed);
  SETI(cancelled); SETI(bytes); SETI(queued); SETI(active);
#undef SETI
  lua_newtable(L);
  for (int i = 100; i < 600; i++)
    if (st->by_status[i]) {
      lua_pushinteger(L, (lua_Integer)st->by_status[i]);
      lua_rawseti(L, -2, i);
    }
  lua_setfield(L, -2, "by_status");
  return 1;
}

/*** client:close(): fails what is queued or running (kind "closed"), stops
** the engine; later calls raise kind "closed". Idempotent; also __close. */
static int client_close (lua_State *L) {
  client *c = (client *)concur_testobj(L, 1, &client_type);
  if (c == NULL) {
    if (luaL_testudata(L, 1, CLIENT)) return 0;   /* proxy already dropped */
    return concur_typeerror(L, 1, CLIENT);
  }
  concur_fetch_close(c->e);
  return 0;
}

/*** client:closed() --> boolean */
static int client_closed (lua_State *L) {
  client *c = (client *)concur_testobj(L, 1, &client_type);
  lua_pushboolean(L, c == NULL || concur_fetch_closed(c->e));
  return 1;
}

/* ---- batches (get_all) --------------------------------------------------- */

#define BATCH "concur.fetch.Batch"

typedef struct batchud { concur_fetch_batch *b; } batchud;

static concur_fetch_batch *checkbatch (lua_State *L) {
  batchud *u = luaL_checkudata(L, 1, BATCH);
  if (u->b == NULL) concur_error(L, "closed", "batch is freed");
  return u->b;
}

/*** core.fetch.submit_all(client, urls [, opts]) --> batch: queues a GET
** for every URL of the array (all checked first: a bad one raises kind
** "argument" naming urls[i], and nothing is sent); opts as client:get. */
static int fetch_submit_all (lua_State *L) {
  client *c = checkclient(L, 1);
  concur_fetch_spec tmpl, *specs;
  concur_fetch_batch *b;
  batchud *u;
  size_t n, bad = 0;
  char err[512];
  int rc;
  initspec(&tmpl);
  concur_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) {
    concur_checktype(L, 3, LUA_TTABLE);
    concur_checkoptions(L, 3, GET_OPTS);
    lua_settop(L, 3);
    readopts(L, 3, &tmpl);   /* anchors at 4 and 5 */
  }
  n = lua_rawlen(L, 2);
  specs = lua_newuserdatauv(L, (n ? n : 1) * sizeof *specs, 0);
  for (size_t i = 0; i < n; i++) {
    /* NOTE: the strings stay alive in the urls table; no Lua code runs
    ** before submit_batch has copied them */
    int t = lua_rawgeti(L, 2, (lua_Integer)i + 1);
    if (t != LUA_TSTRING)
      return concur_error(L, "argument", "bad argument #1 to 'get_all' "
                          "(urls[%d]: string expected, got %s)", (int)i + 1,
                          luaL_typename(L, -1));
    specs[i] = tmpl;
    specs[i].url = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->b = NULL;
  luaL_setmetatable(L, BATCH);
  rc = concur_fetch_submit_batch(c->e, specs, n, &b, &bad, err, sizeof err);
  switch (rc) {
    case CONCUR_FETCH_OK: break;
    case CONCUR_FETCH_EARG:
      return concur_error(L, "argument", "bad argument #1 to 'get_all' "
                          "(urls[%d]: %s)", (int)bad + 1, err);
    case CONCUR_FETCH_ECLOSED:
      return concur_error(L, "closed", "fetch client is closed");
    default: return concur_error(L, "limit", "out of memory");
  }
  u->b = b;
  return 1;
}

/*** batch:wait([timeout]) --> number of requests not done yet */
static int batch_wait (lua_State *L) {
  concur_fetch_batch *b = checkbatch(L);
  double deadline = concur_optdeadline(L, 2);
  int rc;
  long left = concur_fetch_batch_wait(b, 0, deadline, &rc);
  if (rc == CONCUR_CANCELLED || rc == CONCUR_TASKTIMEOUT)
    return concur_raisewait(L, rc, "get_all");
  lua_pushinteger(L, left);
  return 1;
}

/*** batch:failed() --> number of requests that failed or were cancelled */
static int batch_failed (lua_State *L) {
  concur_fetch_batch *b = checkbatch(L);
  size_t n = concur_fetch_batch_size(b);
  lua_Integer failed = 0;
  for (size_t i = 0; i < n; i++)
    if (concur_future_state(concur_fetch_batch_future(b, i)) >
        CONCUR_F_FINISHED)
      failed++;
  lua_pushinteger(L, failed);
  return 1;
}

/* results() decodes while the engine works, waking once per this many
** finished requests rather than once per future */
#define RESULTS_CHUNK 32

/*** batch:results() --> array of Responses and error objects, in order
** (waits for each) */
static int batch_results (lua_State *L) {
  concur_fetch_batch *b = checkbatch(L);
  size_t n = concur_fetch_batch_size(b);
  lua_settop(L, 1);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    concur_future *f = concur_fetch_batch_future(b, i);
    int st, k;
    while ((st = concur_future_state(f)) < CONCUR_F_FINISHED) {
      /* NOTE: f is done before the count drops past it, and every request
      ** ends, so each round makes progress */
      int rc;
      concur_fetch_batch_wait(b, concur_fetch_batch_left(b) - RESULTS_CHUNK,
                              CONCUR_NODEADLINE, &rc);
      if (rc != CONCUR_OK) return concur_raisewait(L, rc, "get_all");
    }
    if (st == CONCUR_F_CANCELLED)
      concur_pusherror(L, "cancelled", "the request was cancelled");
    else {
      k = concur_decode(L, f->out.data, f->out.len, f->out.objs,
                        f->out.nobjs);
      if (k != 1) {
        lua_pop(L, k);
        concur_pusherror(L, "network", "malformed result");
      }
      else if (st == CONCUR_F_FAILED)
        luaL_setmetatable(L, "concur.Error");
    }
    lua_rawseti(L, 2, (lua_Integer)i + 1);
  }
  return 1;
}

static int batch_gc (lua_State *L) {
  batchud *u = luaL_checkudata(L, 1, BATCH);
  if (u->b) {
    concur_fetch_batch_free(u->b);
    u->b = NULL;
  }
  return 0;
}

static const luaL_Reg batch_methods[] = {
  {"wait", batch_wait},
  {"failed", batch_failed},
  {"results", batch_results},
  {NULL, NULL}
};

/* client:get_all(urls [, opts]): lives in lua/concur/fetch.lua; this
** trampoline finds it from any state that holds a client. */
static int client_get_all (lua_State *L) {
  int n = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "concur.fetch");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "_get_all");
  lua_insert(L, 1);
  lua_pop(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* ---- Response ------------------------------------------------------------ */

/*** resp:raise_for_status() --> resp; raises kind "http" (with status and
** url) when status >= 400. */
static int response_raise_for_status (lua_State *L) {
  lua_Integer status;
  concur_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "status");
  status = lua_tointeger(L, -1);
  if (status >= 400) {
    lua_getfield(L, 1, "url");
    concur_pusherror(L, "http", lua_pushfstring(L, "HTTP %d %s for %s",
                     (int)status, status >= 500 ? "server error"
                     : "client error", luaL_optstring(L, -1, "?")));
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "url");
    return lua_error(L);
  }
  lua_settop(L, 1);
  return 1;
}

static int response_tostring (lua_State *L) {
  lua_getfield(L, 1, "status");
  lua_getfield(L, 1, "url");
  lua_pushfstring(L, "concur.fetch.Response: %d %s", (int)lua_tointeger(L, -2),
                  luaL_optstring(L, -1, "?"));
  return 1;
}

static const luaL_Reg response_methods[] = {
  {"raise_for_status", response_raise_for_status},
  {NULL, NULL}
};

/* Pushes the Response metatable, making it in this state if needed. */
static void pushresponsemt (lua_State *L) {
  if (luaL_newmetatable(L, RESPONSE)) {
    lua_newtable(L);
    luaL_setfuncs(L, response_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, response_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 1);   /* the codec carries it by name */
    lua_setfield(L, -2, "__concur_restore");
  }
}

/* ---- helpers for the Lua layer and the specs ----------------------------- */

/*** core.fetch.response(t) --> t, a Response: gives a plain table (say, one
** rebuilt by hand, or read back from a file) the Response methods. */
static int fetch_response (lua_State *L) {
  concur_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  pushresponsemt(L);
  lua_setmetatable(L, 1);
  return 1;
}

/*** core.fetch.is_response(v) --> boolean */
static int fetch_is_response (lua_State *L) {
  int yes = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    pushresponsemt(L);
    yes = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

/*** core.fetch.checkurl(url) --> url; raises kind "argument" (as argument 1
** of the caller) when fetching it would be refused. */
static int fetch_checkurl (lua_State *L) {
  char err[512];
  const char *url = concur_checklstring(L, 1, NULL);
  if (concur_fetch_checkurl(url, err, sizeof err))
    return concur_argerror(L, 1, err);
  lua_settop(L, 1);
  return 1;
}

/*** core.fetch.robots(txt, user_agent, path) --> allowed, crawl_delay|nil:
** the engine's robots.txt rules, for tests and tools. */
static int fetch_robots (lua_State *L) {
  size_t len;
  const char *txt = concur_checklstring(L, 1, &len);
  const char *ua = concur_checklstring(L, 2, NULL);
  const char *path = concur_checklstring(L, 3, NULL);
  concur_robots *r = concur_fetch_robots_parse(txt, len, ua);
  double d;
  if (r == NULL) return concur_error(L, "limit", "out of memory");
  lua_pushboolean(L, concur_fetch_robots_allowed(r, path));
  d = concur_fetch_robots_delay(r);
  concur_fetch_robots_free(r);
  if (d >= 0) lua_pushnumber(L, d);
  else lua_pushnil(L);
  return 2;
}

static const luaL_Reg client_methods[] = {
  {"get", client_get},
  {"request", client_request},
  {"get_all", client_get_all},
  {"stats", client_stats},
  {"close", client_close},
  {"closed", client_closed},
  {NULL, NULL}
};

static const luaL_Reg client_metamethods[] = {
  {"__close", client_close},
  {NULL, NULL}
};

static const luaL_Reg fetch_funcs[] = {
  {"Client", fetch_client},
  {"submit_all", fetch_submit_all},
  {"response", fetch_response},
  {"is_response", fetch_is_response},
  {"checkurl", fetch_checkurl},
  {"robots", fetch_robots},
  {NULL, NULL}
};

void concur_fetch_open (lua_State *L) {
  concur_fetch_global_init();
  concur_newclass(L, &client_type, client_methods, client_metamethods);
  if (luaL_newmetatable(L, BATCH)) {
    luaL_newlib(L, batch_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, batch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  /* NOTE: the Response metatable stays out of this table: the codec finds
  ** C functions by name only two levels down a module */
  pushresponsemt(L);
  lua_pop(L, 1);
  luaL_newlib(L, fetch_funcs);
  lua_setfield(L, -2, "fetch");
}
