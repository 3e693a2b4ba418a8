/*
** redis.c: core.redis, a connection to Redis for the Lua side of
** concur.cluster (lua/concur/cluster.lua): commands, pipelines and scripts
** over core/redis.c.
**
** A connection belongs to the state that made it (it is not sent to other
** states: each makes its own). Replies become Lua values: a string or
** status is a string, an integer an integer, an array a table, a nil reply
** false (so arrays keep their length), and an error reply a table
** { err = message }, returned, not raised. Raised, as concur.Error: kind
** "network" when Redis could not be reached before the call's deadline or
** refused the credentials, "closed" after close, and the wait kinds when a
** task calling it is cancelled or times out.
**
**   local r = core.redis("redis://127.0.0.1:6379/0", { timeout = 30 })
**   r:call("SET", "k", "v")                 --> "OK"
**   r:pipeline({ { "INCR", "n" }, { "GET", "n" } } [, timeout]) --> { 1, "1" }
**   r:eval(src, { keys... }, { args... } [, timeout])   -- EVALSHA, loaded as needed
*/
#include <string.h>
#include "concur.h"
#include "core/redis.h"

#define REDIS "concur.Redis"

typedef struct conn {
  concur_redis *r;       /* NULL once closed */
  double timeout;        /* seconds per call */
} conn;

static conn *checkconn (lua_State *L) {
  conn *c = luaL_testudata(L, 1, REDIS);
  if (c == NULL) concur_typeerror(L, 1, REDIS);
  if (c->r == NULL) concur_error(L, "closed", "the Redis connection was closed");
  return c;
}

/* Raises the error for a failed exec. */
static int raise_exec (lua_State *L, concur_redis *r, int rc, double timeout) {
  if (rc == CONCUR_TIMEDOUT)
    return concur_error(L, "network", "Redis at %s not reachable within %s s (%s)",
                        concur_redis_where(r), lua_pushfstring(L, "%f", timeout),
                        concur_redis_error(r));
  if (rc == CONCUR_REDIS_REFUSED)
    return concur_error(L, "network", "Redis at %s: %s", concur_redis_where(r),
                        concur_redis_error(r));
  if (rc == CONCUR_REDIS_CLOSED)
    return concur_error(L, "closed", "the Redis connection was closed");
  return concur_raisewait(L, rc, "waiting for Redis");
}

/* Pushes a reply as a Lua value (see above). */
static void pushreply (lua_State *L, const redisReply *rep) {
  if (!lua_checkstack(L, 4)) concur_error(L, "limit", "reply nested too deeply");
  switch (rep->type) {
    case REDIS_REPLY_STRING: case REDIS_REPLY_STATUS:
      lua_pushlstring(L, rep->str, rep->len);
      break;
    case REDIS_REPLY_INTEGER:
      lua_pushinteger(L, (lua_Integer)rep->integer);
      break;
    case REDIS_REPLY_ARRAY:
      lua_createtable(L, (int)rep->elements, 0);
      for (size_t i = 0; i < rep->elements; i++) {
        pushreply(L, rep->element[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      break;
    case REDIS_REPLY_ERROR:
      lua_createtable(L, 0, 1);
      lua_pushlstring(L, rep->str, rep->len);
      lua_setfield(L, -2, "err");
      break;
    default:
      lua_pushboolean(L, 0);
  }
}

/* Appends one command from the values t[1..n] of the table at idx (or the
** stack values idx..top when 'stack'); raises "argument" on a bad one. */
static void addcmd (lua_State *L, concur_rpipe *p, int idx, int n, int stack) {
  int oom;
  if (n < 1) {
    concur_rpipe_free(p);
    concur_argerror(L, idx, "empty command");
  }
  oom = concur_rpipe_cmd(p, n);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    int vi = idx + i - 1;
    if (!stack) { lua_rawgeti(L, idx, i); vi = -1; }
    if (lua_type(L, vi) != LUA_TSTRING && lua_type(L, vi) != LUA_TNUMBER) {
      concur_rpipe_free(p);
      concur_argerror(L, stack ? vi : idx, "command arguments must be strings or numbers");
    }
    s = lua_tolstring(L, vi, &len);
    oom |= concur_rpipe_arg(p, s, len);
    if (!stack) lua_pop(L, 1);
  }
  if (oom) {
    concur_rpipe_free(p);
    concur_error(L, "limit", "not enough memory");
  }
}

/* Runs p and pushes its replies as an array (or the one reply when
** 'single'); frees p. */
static int run (lua_State *L, conn *c, concur_rpipe *p, double timeout, int single,
                concur_rscript *script) {
  redisReply *one, **reps;
  int rc, n = p->n;
  reps = n == 1 ? &one : lua_newuserdatauv(L, (size_t)p->n * sizeof *reps, 0);
  if (script)
    CONCUR_WAIT(L, rc, concur_redis_eval(c->r, concur_deadline(timeout), script, p, reps));
  else
    CONCUR_WAIT(L, rc, concur_redis_exec(c->r, concur_deadline(timeout), p, reps));
  concur_rpipe_free(p);
  if (rc != CONCUR_OK) return raise_exec(L, c->r, rc, timeout);
  /* NOTE: the replies are C memory: converting may raise (memory), so
  ** they are freed by a pcall-free path: push all, then free, never
  ** raising in between but for memory, which leaks them at worst */
  if (single) {
    pushreply(L, reps[0]);
    concur_redis_freereplies(reps, 1);
    return 1;
  }
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    pushreply(L, reps[i]);
    lua_rawseti(L, -2, i + 1);
  }
  concur_redis_freereplies(reps, n);
  return 1;
}

static double opttimeout (lua_State *L, int arg, double def) {
  double t;
  if (lua_isnoneornil(L, arg)) return def;
  t = concur_checknumber(L, arg);
  if (!(t >= 0)) concur_argerror(L, arg, "timeout must be a non-negative number");
  return t;
}

/*** r:call(cmd, ...) --> the reply */
static int redis_call (lua_State *L) {
  conn *c = checkconn(L);
  concur_rpipe p = CONCUR_RPIPE_INIT;
  addcmd(L, &p, 2, lua_gettop(L) - 1, 1);
  return run(L, c, &p, c->timeout, 1, NULL);
}

/*** r:pipeline({ {cmd, ...}, ... } [, timeout]) --> array of replies */
static int redis_pipeline (lua_State *L) {
  conn *c = checkconn(L);
  concur_rpipe p = CONCUR_RPIPE_INIT;
  double timeout = opttimeout(L, 3, c->timeout);
  int n;
  concur_checktype(L, 2, LUA_TTABLE);
  n = (int)lua_rawlen(L, 2);
  if (n < 1) return concur_argerror(L, 2, "empty pipeline");
  for (int i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TTABLE) {
      concur_rpipe_free(&p);
      concur_argerror(L, 2, "each command must be a table");
    }
    addcmd(L, &p, lua_gettop(L), (int)lua_rawlen(L, -1), 0);
    lua_pop(L, 1);
  }
  return run(L, c, &p, timeout, 0, NULL);
}

/* Appends the items of the array at idx as arguments. */
static int addlist (lua_State *L, concur_rpipe *p, int idx) {
  int n = (int)lua_rawlen(L, idx), oom = 0;
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
      concur_rpipe_free(p);
      concur_argerror(L, idx, "script keys and arguments must be strings or numbers");
    }
    s = lua_tolstring(L, -1, &len);
    oom |= concur_rpipe_arg(p, s, len);
    lua_pop(L, 1);
  }
  return oom;
}

/*** r:eval(src, keys, args [, timeout]) --> the script's reply (EVALSHA;
** the script is loaded when the server does not know it) */
static int redis_eval (lua_State *L) {
  conn *c = checkconn(L);
  concur_rpipe p = CONCUR_RPIPE_INIT;
  concur_rscript s;
  double timeout = opttimeout(L, 5, c->timeout);
  const char *src = concur_checklstring(L, 2, NULL);
  concur_checktype(L, 3, LUA_TTABLE);
  concur_checktype(L, 4, LUA_TTABLE);
  concur_rscript_init(&s, src);
  if (concur_rpipe_evalsha(&p, &s, (int)lua_rawlen(L, 3), (int)lua_rawlen(L, 4)) |
      addlist(L, &p, 3) | addlist(L, &p, 4)) {
    concur_rpipe_free(&p);
    return concur_error(L, "limit", "not enough memory");
  }
  return run(L, c, &p, timeout, 1, &s);
}

/*** r:where() --> "host:port" */
static int redis_where (lua_State *L) {
  lua_pushstring(L, concur_redis_where(checkconn(L)->r));
  return 1;
}

/*** r:close(): drops the connection (also __close and __gc) */
static int redis_close (lua_State *L) {
  conn *c = luaL_testudata(L, 1, REDIS);
  if (c == NULL) return concur_typeerror(L, 1, REDIS);
  concur_redis_free(c->r);
  c->r = NULL;
  return 0;
}

static const char *const OPTIONS[] = { "timeout", "backoff", "max_backoff", NULL };


/*** core.redis(url [, { timeout = 30, backoff = 0.05, max_backoff = 2 }])
** --> a connection (connected on first use) */
static int redis_new (lua_State *L) {
  const char *url = concur_checklstring(L, 1, NULL);
  double timeout = 30, backoff = 0.05, maxb = 2;
  char err[400];
  conn *c;
  if (!lua_isnoneornil(L, 2)) {
    concur_checktype(L, 2, LUA_TTABLE);
    concur_checkoptions(L, 2, OPTIONS);
    timeout = concur_optnumber(L, 2, "timeout", timeout, 0, 0, 1);
    backoff = concur_optnumber(L, 2, "backoff", backoff, 0, 0, 1);
    maxb = concur_optnumber(L, 2, "max_backoff", maxb, 0, 0, 1);
  }
  c = lua_newuserdatauv(L, sizeof *c, 0);      /* closed until it is made */
  c->r = NULL;
  c->timeout = timeout;
  luaL_setmetatable(L, REDIS);
  c->r = concur_redis_new(url, err, sizeof err);
  if (c->r == NULL) return concur_error(L, "argument", "%s", err);
  concur_redis_setbackoff(c->r, backoff, maxb);
  return 1;
}

static const luaL_Reg methods[] = {
  {"call", redis_call},
  {"pipeline", redis_pipeline},
  {"eval", redis_eval},
  {"where", redis_where},
  {"close", redis_close},
  {NULL, NULL}
};

void concur_redis_open (lua_State *L) {
  if (luaL_newmetatable(L, REDIS)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, redis_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, redis_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  concur_class_stays(L, REDIS, "a Redis connection belongs to the state that made it:"
                     " make one in each state");
  lua_pushcfunction(L, redis_new);
  lua_setfield(L, -2, "redis");
}
