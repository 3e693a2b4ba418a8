/*
** clusternode.c: the loop of a worker node (core.cluster_serve, called by
** cluster.serve in lua/concur/cluster.lua, whose mechanism is
** core/clusternode.c), and the wrapper its executor runs each task in
** (core.cluster_run).
**
** The loop takes verified tasks from the node and submits each to the
** local executor (a ThreadPool or ProcessPool, through its Lua submit) as
** cluster_run(payload) with the task's timeout; the node watches the
** executor's future and stores its outcome. The payload stays codec bytes
** in the node's state: only the worker that runs a task decodes it.
**
** SIGTERM and SIGINT (while a node serves; one node per process at a time
** handles them) stop taking tasks; the loop returns once the tasks taken
** are finished and their results stored.
*/
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "concur.h"
#include "core/clusternode.h"
#include "core/future.h"

#define TAKE 64       /* tasks handed over at once */

/* ---- the task wrapper ------------------------------------------------------------- */

static int run_k (lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/*** core.cluster_run(payload) --> the results of the function encoded in
** payload called with its encoded arguments (a cluster task, in a worker) */
static int cluster_run (lua_State *L) {
  size_t len;
  const char *p = concur_checklstring(L, 1, &len);
  int n;
  lua_settop(L, 1);
  n = concur_decode(L, p, len, NULL, 0);
  if (n < 1 || lua_type(L, 2) != LUA_TFUNCTION)
    return concur_error(L, "argument", "the task is not a function");
  /* a continuation, so an interrupt can still yield out of the task */
  lua_callk(L, n - 1, LUA_MULTRET, 1, run_k);
  return run_k(L, LUA_OK, 1);
}

/* ---- signals ------------------------------------------------------------------------ */

static volatile sig_atomic_t got_signal;
static volatile int signal_fd = -1;

static void on_signal (int sig) {
  uint64_t one = 1;
  int fd = signal_fd;
  got_signal = sig;
  if (fd >= 0 && write(fd, &one, sizeof one) < 0) { /* awake already */ }
}

/* The node being served, with what to undo when it ends (also by __gc,
** should the loop raise). */
typedef struct nodebox {
  concur_cnode *n;
  int signals;                      /* the handlers are ours */
  struct sigaction oldterm, oldint;
} nodebox;

static void box_end (nodebox *b) {
  if (b->signals) {
    sigaction(SIGTERM, &b->oldterm, NULL);
    sigaction(SIGINT, &b->oldint, NULL);
    signal_fd = -1;
    b->signals = 0;
  }
  if (b->n) concur_cnode_free(b->n);
  b->n = NULL;
}

static int box_gc (lua_State *L) {
  box_end(lua_touserdata(L, 1));
  return 0;
}

static void catch_signals (nodebox *b) {
  struct sigaction sa;
  if (signal_fd >= 0) return;       /* another node has them */
  got_signal = 0;
  signal_fd = concur_cnode_wakefd(b->n);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &b->oldterm);
  sigaction(SIGINT, &sa, &b->oldint);
  b->signals = 1;
}

/* ---- the loop ----------------------------------------------------------------------- */

/* Submits task t to the executor: pool.submit(pool, { cluster_run, args =
** { payload }, timeout = t }); the function is at 'submit', the pool at 1. */
static void submit1 (lua_State *L, concur_cnode *n, int submit, concur_cnodetask *t) {
  int top = lua_gettop(L);
  concur_future *f;
  lua_pushvalue(L, submit);
  lua_pushvalue(L, 1);
  lua_createtable(L, 1, 2);
  lua_pushcfunction(L, cluster_run);
  lua_rawseti(L, -2, 1);
  lua_createtable(L, 1, 0);
  lua_pushlstring(L, t->payload.data ? t->payload.data : "", t->payload.len);
  lua_rawseti(L, -2, 1);
  lua_setfield(L, -2, "args");
  if (t->timeout >= 0) {
    lua_pushnumber(L, t->timeout);
    lua_setfield(L, -2, "timeout");
  }
  if (lua_pcall(L, 2, 1, 0) == LUA_OK &&
      (f = (concur_future *)concur_testobj(L, -1, &concur_future_type)) != NULL)
    concur_cnode_run(n, t, f);
  else {
    const char *kind = "broken", *msg = "the node's executor refused the task";
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_getfield(L, -1, "kind");
      lua_getfield(L, -2, "message");
      if (lua_type(L, -2) == LUA_TSTRING) kind = lua_tostring(L, -2);
      if (lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
    }
    else if (lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
    concur_cnode_fail(n, t, kind, msg);
  }
  lua_settop(L, top);
}

static void setnum (lua_State *L, const char *field, long v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, field);
}

/* Reads an option of the table at 2 (checked by cluster.serve). */
static const char *stropt (lua_State *L, const char *field, size_t *len) {
  lua_getfield(L, 2, field);
  return lua_isnil(L, -1) ? NULL : concur_checklstring(L, -1, len);
}

static double numopt (lua_State *L, const char *field) {
  lua_getfield(L, 2, field);
  return concur_checknumber(L, -1);
}

/*** core.cluster_serve(executor, { redis, queue, key, workers, prefetch,
** timeout, name, ready }) --> { name, taken, completed, failed, forged,
** reclaimed, broken, cancelled }: serves until SIGTERM or SIGINT (or until
** the calling task is cancelled); ready(name) is called once the node is
** in the queue's group. */
static int serve (lua_State *L) {
  concur_cnodeopts o;
  concur_cnodetask ts[TAKE];
  const char *kind;
  char err[512];
  nodebox *b;
  long v[7];
  int submit, stopping = 0;
  concur_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&o, 0, sizeof o);
  o.url = stropt(L, "redis", NULL);
  o.queue = stropt(L, "queue", NULL);
  o.key = stropt(L, "key", &o.keylen);
  o.name = stropt(L, "name", NULL);
  o.workers = (int)numopt(L, "workers");
  o.prefetch = (int)numopt(L, "prefetch");
  o.timeout = numopt(L, "timeout");
  if (!o.url || !o.queue || !o.key) return concur_argerror(L, 2, "redis, queue and key are needed");
  lua_getfield(L, 1, "submit");
  submit = lua_gettop(L);
  if (!lua_isfunction(L, submit)) return concur_argerror(L, 1, "an executor expected");
  b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  lua_newtable(L);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  b->n = concur_cnode_new(&o, &kind, err, sizeof err);
  if (b->n == NULL) return concur_error(L, kind, "%s", err);
  catch_signals(b);
  if (lua_getfield(L, 2, "ready") != LUA_TNIL) {
    lua_pushstring(L, concur_cnode_name(b->n));
    lua_call(L, 1, 0);          /* an error here ends the node (box_gc) */
  }
  else lua_pop(L, 1);
  for (;;) {
    int k = concur_cnode_take(b->n, ts, TAKE, CONCUR_NODEADLINE);
    if (got_signal && b->signals && !stopping) {
      stopping = 1;
      concur_cnode_stop(b->n);
    }
    if (k == -1) break;
    if (k < -1) {                 /* this task was cancelled or timed out */
      box_end(b);                 /* what it took is claimed by others */
      return concur_raisewait(L, -2 - k, "serve");
    }
    for (int i = 0; i < k; i++) {
      submit1(L, b->n, submit, &ts[i]);
      concur_cnode_taskfree(&ts[i]);
    }
  }
  concur_cnode_counts(b->n, v);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, concur_cnode_name(b->n));
  lua_setfield(L, -2, "name");
  setnum(L, "taken", v[0]);
  setnum(L, "completed", v[1]);
  setnum(L, "failed", v[2]);
  setnum(L, "forged", v[3]);
  setnum(L, "reclaimed", v[4]);
  setnum(L, "broken", v[5]);
  setnum(L, "cancelled", v[6]);
  box_end(b);
  return 1;
}

void concur_clusternode_open (lua_State *L) {
  lua_pushcfunction(L, cluster_run);
  lua_setfield(L, -2, "cluster_run");
  lua_pushcfunction(L, serve);
  lua_setfield(L, -2, "cluster_serve");
}
