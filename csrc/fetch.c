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

/* The last reference is gone: what the client holds still finishes (as a
** collected pool finishes its queue), then the engine frees itself. */
static void client_destroy (concur_obj *o) {
  client *c = (client *)o;
  concur_fetch_letgo(c->e);   /* never blocks */
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

/* The string at 'arg' for C: raises kind "argument" when it holds a NUL
** byte (C would see only what comes before it). */
static const char *checkcstring (lua_State *L, int arg) {
  size_t len;
  const char *s = concur_checklstring(L, arg, &len);
  if (strlen(s) != len) concur_argerror(L, arg, "string contains a NUL byte");
  return s;
}

/* Timeouts: a positive number of seconds, or math.huge (or a century or
** more: CONCUR_FOREVER) for none (0). */
static double opttimeout (lua_State *L, int arg, const char *name,
                          double def) {
  double v = concur_optnumber(L, arg, name, def, 0, 1, 1);
  return v >= CONCUR_FOREVER ? 0 : v;
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
    concur_opterror(L, arg, "headers", lua_pushfstring(L, "must be a table, got %s",
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
      concur_opterror(L, arg, "headers", "must map header names (strings) to values");
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      concur_opterror(L, arg, "headers", lua_pushfstring(L, "value of '%s' must be a "
               "string, got %s", lua_tostring(L, -2), luaL_typename(L, -1)));
    name = lua_tolstring(L, -2, &nl);
    value = lua_tolstring(L, -1, &vl);
    if (concur_fetch_checkheader(name, nl, value, vl, err, sizeof err))
      concur_opterror(L, arg, "headers", lua_pushfstring(L, "has a %s", err));
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
  "robots", "robots_retry", "verify", "limits", "http2", "cookies",
  "autothrottle", NULL
};

/*** fetch.Client([options]) --> a new client (docs/API.md, "concur.fetch"). */
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
  cfg.concurrency = (long)concur_optinteger(L, 1, "concurrency", 16, 1);
  cfg.per_host = (long)concur_optinteger(L, 1, "per_host", 4, 1);
  cfg.rate = concur_optnumber(L, 1, "rate", 0, 0, 1, 0);
  cfg.per = concur_optnumber(L, 1, "per", 1, 0, 1, 0);
  cfg.burst = concur_optnumber(L, 1, "burst", 1, 1, 0, 0);
  cfg.retries = (long)concur_optinteger(L, 1, "retries", 3, 0);
  cfg.backoff = concur_optnumber(L, 1, "backoff", 0.5, 0, 0, 0);
  cfg.max_backoff = concur_optnumber(L, 1, "max_backoff", 30, 0, 0, 0);
  cfg.timeout = opttimeout(L, 1, "timeout", 30);
  cfg.connect_timeout = opttimeout(L, 1, "connect_timeout", 10);
  cfg.low_speed_limit = (long)concur_optinteger(L, 1, "low_speed_limit", 1, 0);
  cfg.low_speed_time = fmin(concur_optnumber(L, 1, "low_speed_time", 30, 0, 0, 0),
                            CONCUR_FOREVER);   /* curl takes a long */
  cfg.max_body = concur_optinteger(L, 1, "max_body", 16 * 1024 * 1024, 0);
  cfg.max_redirects = (long)concur_optinteger(L, 1, "max_redirects", 5, 0);
  cfg.robots = concur_optbool(L, 1, "robots", 0);
  cfg.robots_retry = concur_optnumber(L, 1, "robots_retry", 60, 0, 0, 0);
  cfg.verify = concur_optbool(L, 1, "verify", 1);
  cfg.http2 = concur_optbool(L, 1, "http2", 1);
  cfg.cookies = concur_optbool(L, 1, "cookies", 0);
  cfg.autothrottle = concur_optbool(L, 1, "autothrottle", 0);
  if (lua_getfield(L, 1, "retry_on") == LUA_TNIL) {
    memcpy(cfg.retry_on, retry_on, sizeof retry_on);
    cfg.nretry_on = (int)(sizeof retry_on / sizeof retry_on[0]);
  }
  else {
    lua_Integer n;
    if (!lua_istable(L, -1))
      concur_opterror(L, 1, "retry_on", "must be an array of status codes");
    n = (lua_Integer)lua_rawlen(L, -1);
    if (n > CONCUR_FETCH_MAXRETRYON)
      concur_opterror(L, 1, "retry_on", "has too many status codes");
    for (lua_Integer i = 1; i <= n; i++) {
      int isint;
      lua_Integer s;
      lua_rawgeti(L, -1, i);
      s = lua_tointegerx(L, -1, &isint);
      if (!isint || s < 100 || s > 599)
        concur_opterror(L, 1, "retry_on", "must hold status codes (100 to 599)");
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
    concur_opterror(L, 1, "user_agent", "must be a string without CR, LF or NUL");
  cfg.user_agent = lua_tostring(L, -1);   /* anchored at index 2 */
  cfg.headers = optheaders(L, 1, &cfg.nheaders);
  if (lua_getfield(L, 1, "limits") != LUA_TNIL) {   /* cluster.limits{...} */
    concur_proxy *px = luaL_testudata(L, -1, CONCUR_FETCH_LIMITS_MT);
    if (px == NULL || px->o == NULL)
      concur_opterror(L, 1, "limits", "must be a cluster.limits object");
    if (!(cfg.rate > 0)) concur_opterror(L, 1, "limits", "needs a rate");
    cfg.limits = (concur_fetch_limits *)px->o;   /* (on the stack meanwhile) */
  }
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
  "max_redirects", "follow_redirects", NULL
};

static const char *const REQUEST_OPTS[] = {
  "method", "url", "headers", "body", "timeout", "connect_timeout",
  "retries", "max_body", "max_redirects", "follow_redirects", NULL
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
  s->retries = (long)concur_optinteger(L, arg, "retries", -1, 0);
  s->max_body = concur_optinteger(L, arg, "max_body", -1, 0);
  s->max_redirects = (long)concur_optinteger(L, arg, "max_redirects", -1, 0);
  s->follow = concur_optbool(L, arg, "follow_redirects", 1);
  s->headers = optheaders(L, arg, &s->nheaders);
}

static void initspec (concur_fetch_spec *s) {
  memset(s, 0, sizeof *s);
  s->timeout = s->connect_timeout = -1;
  s->retries = s->max_redirects = -1;
  s->max_body = -1;
  s->follow = 1;
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
  s.url = checkcstring(L, 2);
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
  if ((s.url = concur_optcstring(L, 2, "url")) == NULL)
    concur_opterror(L, 2, "url", "must be a string, got nil");
  s.method = concur_optcstring(L, 2, "method");
  if (lua_getfield(L, 2, "body") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      concur_opterror(L, 2, "body", lua_pushfstring(L, "must be a string, got %s",
                                             luaL_typename(L, -1)));
    s.body = lua_tolstring(L, -1, &s.bodylen);
  }
  readopts(L, 2, &s);
  return submit(L, c, &s, 2);
}

/* by_status[200] reads by_status["200"]: the keys are strings, so the
** stats encode as JSON (lua-cjson refuses a sparse array), and integer
** codes still read as they did. */
static int statuses_index (lua_State *L) {
  if (lua_isinteger(L, 2)) {
    lua_pushfstring(L, "%I", lua_tointeger(L, 2));
    lua_rawget(L, 1);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static const char STATUSES_MT = 0;   /* the registry key of by_status's metatable */

/*** client:stats() --> { requests, retries, failures, completed, cancelled,
** bytes, throttled, queued, active, by_status = { ["200"] = n, ... } }: by_status has
** string keys (it encodes as JSON), and by_status[200] reads "200" too. */
static int client_stats (lua_State *L) {
  client *c = (client *)concur_checkobj(L, 1, &client_type);
  concur_fetch_stats *st = lua_newuserdatauv(L, sizeof *st, 0);
  concur_fetch_getstats(c->e, st);
  lua_createtable(L, 0, 10);
#define SETI(name) lua_pushinteger(L, (lua_Integer)st->name); \
                   lua_setfield(L, -2, #name)
  SETI(requests); SETI(retries); SETI(failures); SETI(completed);
  SETI(cancelled); SETI(bytes); SETI(throttled); SETI(queued);
  SETI(active);
#undef SETI
  luaL_checkstack(L, 4, NULL);
  lua_newtable(L);
  for (int i = 100; i < 600; i++)
    if (st->by_status[i]) {
      lua_pushfstring(L, "%d", i);
      lua_pushinteger(L, (lua_Integer)st->by_status[i]);
      lua_rawset(L, -3);
    }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &STATUSES_MT) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, statuses_index);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATUSES_MT);
  }
  lua_setmetatable(L, -2);
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

static batchud *tobatch (lua_State *L) {
  batchud *u = luaL_testudata(L, 1, BATCH);
  if (u == NULL || lua_rawlen(L, 1) != sizeof *u) concur_typeerror(L, 1, BATCH);
  return u;
}

static concur_fetch_batch *checkbatch (lua_State *L) {
  batchud *u = tobatch(L);
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
    size_t len;
    if (t != LUA_TSTRING)
      return concur_error(L, "argument", "bad argument #1 to 'get_all' "
                          "(urls[%d]: string expected, got %s)", (int)i + 1,
                          luaL_typename(L, -1));
    specs[i] = tmpl;
    specs[i].url = lua_tolstring(L, -1, &len);
    if (strlen(specs[i].url) != len)
      return concur_error(L, "argument", "bad argument #1 to 'get_all' "
                          "(urls[%d]: string contains a NUL byte)", (int)i + 1);
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
  long left;
  CONCUR_WAIT(L, rc, (left = concur_fetch_batch_wait(b, 0, deadline, &rc), rc));
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
      CONCUR_WAIT(L, rc, (concur_fetch_batch_wait(b, concur_fetch_batch_left(b)
                          - RESULTS_CHUNK, CONCUR_NODEADLINE, &rc), rc));
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
  batchud *u = tobatch(L);
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

/* ---- streams (the crawler's completions) --------------------------------- */

#define STREAM "concur.fetch.Stream"

typedef struct streamud {
  concur_fetch_stream *s;
  client *c;                   /* one reference: the engine stays */
} streamud;

static streamud *checkstream (lua_State *L) {
  streamud *u = luaL_testudata(L, 1, STREAM);
  if (u == NULL) concur_typeerror(L, 1, STREAM);
  if (u->s == NULL) concur_error(L, "closed", "stream is freed");
  return u;
}

/*** core.fetch.stream(client) --> a Stream: requests, and futures it
** watches, reported one by one as each completes (what fetch.Crawler waits
** on). stream:get(url [, opts]) and stream:watch(future) --> slot;
** stream:next([timeout]) --> slot, ok, value (a request's Response or
** error object; a watched future's nothing: read it), or nil when nothing is
** in flight; stream:pending() --> number in flight. */
static int fetch_stream (lua_State *L) {
  client *c = checkclient(L, 1);
  streamud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  u->c = NULL;
  luaL_setmetatable(L, STREAM);
  if ((u->s = concur_fetch_stream_new()) == NULL)
    return concur_error(L, "limit", "out of memory");
  u->c = (client *)concur_obj_ref(&c->obj);
  return 1;
}

static int stream_get (lua_State *L) {
  streamud *u = checkstream(L);
  concur_fetch_spec s;
  size_t slot;
  char err[512];
  int rc;
  initspec(&s);
  s.url = checkcstring(L, 2);
  if (!lua_isnoneornil(L, 3)) {
    concur_checktype(L, 3, LUA_TTABLE);
    concur_checkoptions(L, 3, GET_OPTS);
    lua_settop(L, 3);
    readopts(L, 3, &s);
  }
  rc = concur_fetch_stream_submit(u->c->e, u->s, &s, &slot, err, sizeof err);
  switch (rc) {
    case CONCUR_FETCH_OK: break;
    case CONCUR_FETCH_EARG: return concur_argerror(L, 2, err);
    case CONCUR_FETCH_ECLOSED:
      return concur_error(L, "closed", "fetch client is closed");
    default: return concur_error(L, "limit", "out of memory");
  }
  lua_pushinteger(L, (lua_Integer)slot);
  return 1;
}

static int stream_watch (lua_State *L) {
  streamud *u = checkstream(L);
  concur_future *f = (concur_future *)concur_checkobj(L, 2, &concur_future_type);
  size_t slot;
  if (concur_fetch_stream_watch(u->s, f, &slot) != CONCUR_FETCH_OK)
    return concur_error(L, "limit", "out of memory");
  lua_pushinteger(L, (lua_Integer)slot);
  return 1;
}

static int stream_next (lua_State *L) {
  streamud *u = checkstream(L);
  double deadline = concur_optdeadline(L, 2);
  concur_future *f;
  int rc, wrc, st;
  long slot;
  CONCUR_WAIT(L, wrc, (slot = concur_fetch_stream_next(u->s, deadline, &rc),
                       slot == -2 ? rc : CONCUR_OK));
  (void)wrc;
  if (slot == -1) return 0;
  if (slot == -2) {
    if (rc == CONCUR_TIMEDOUT) return 0;
    return concur_raisewait(L, rc, "crawl");
  }
  lua_pushinteger(L, slot);
  if (concur_fetch_stream_watched(u->s, (size_t)slot)) {
    concur_fetch_stream_release(u->s, (size_t)slot);
    return 1;
  }
  f = concur_fetch_stream_future(u->s, (size_t)slot);
  st = concur_future_state(f);
  lua_pushboolean(L, st == CONCUR_F_FINISHED);
  if (st == CONCUR_F_CANCELLED)
    concur_pusherror(L, "cancelled", "the request was cancelled");
  else {
    /* NOTE: a decoding error raises: the slot stays taken (never reused) */
    int k = concur_decode(L, f->out.data, f->out.len, f->out.objs,
                          f->out.nobjs);
    if (k != 1) {
      lua_pop(L, k);
      concur_pusherror(L, "network", "malformed result");
    }
    else if (st == CONCUR_F_FAILED) luaL_setmetatable(L, "concur.Error");
  }
  concur_fetch_stream_release(u->s, (size_t)slot);
  return 3;
}

static int stream_pending (lua_State *L) {
  lua_pushinteger(L, concur_fetch_stream_pending(checkstream(L)->s));
  return 1;
}

static int stream_gc (lua_State *L) {
  streamud *u = luaL_testudata(L, 1, STREAM);
  if (u == NULL) return concur_typeerror(L, 1, STREAM);
  if (u->s) {
    concur_fetch_stream_free(u->s);
    u->s = NULL;
  }
  if (u->c) {
    concur_obj_unref(&u->c->obj);
    u->c = NULL;
  }
  return 0;
}

static const luaL_Reg stream_methods[] = {
  {"get", stream_get},
  {"watch", stream_watch},
  {"next", stream_next},
  {"pending", stream_pending},
  {"close", stream_gc},
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
  concur_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "status");
  lua_getfield(L, 1, "url");
  lua_pushfstring(L, "concur.fetch.Response: %d %s", (int)lua_tointeger(L, -2),
                  luaL_optstring(L, -1, "?"));
  return 1;
}

static const luaL_Reg response_methods[] = {
  {"raise_for_status", response_raise_for_status},
  {"html", concur_html_response},
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
  const char *url = checkcstring(L, 1);
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
  const char *ua = checkcstring(L, 2);
  const char *path = checkcstring(L, 3);
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
  {"stream", fetch_stream},
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
  if (luaL_newmetatable(L, STREAM)) {
    luaL_newlib(L, stream_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, stream_gc);
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
