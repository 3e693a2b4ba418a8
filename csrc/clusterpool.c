/*
** clusterpool.c: the Lua side of concur.cluster.Pool (the mechanism is
** core/clusterpool.c): submit, shutdown, close, stats and workers; map,
** imap, imap_unordered and starmap come from the executors' Lua layer
** (lua/concur/cluster.lua puts them on this class).
**
** A pool is tracked by the state that made it (core.cluster_pool is called
** by cluster.Pool, which reads the options): closing the state cancels its
** pending tasks, tells the nodes, and ends the pool's threads.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "concur.h"
#include "tracker.h"
#include "core/clusterkeys.h"
#include "core/clusterpool.h"

static concur_cpool *checkpool (lua_State *L) {
  return (concur_cpool *)concur_checkobj(L, 1, &concur_cpool_type);
}

/* ---- tracking --------------------------------------------------------------- */

static int track_over (concur_obj *o) {
  return concur_cpool_over((concur_cpool *)o);
}

static void track_join (concur_obj *o) {
  concur_cpool_join((concur_cpool *)o, 0);
}

static void track_close (concur_obj *o) {
  concur_cpool *p = (concur_cpool *)o;
  concur_cpool_stop(p, 1);
  concur_cpool_join(p, 1);
}

static const concur_trackops pool_track = { track_over, track_join, track_close };

/* ---- the methods --------------------------------------------------------------- */

static const char *const SUBMIT_OPTIONS[] = { "args", "timeout", NULL };

/*** pool:submit(fn, ...) or pool:submit{ fn, args = {...}, timeout = s }
** --> Future. The task runs on a worker node; `timeout` is enforced there. */
static int pool_submit (lua_State *L) {
  concur_cpool *p = checkpool(L);
  concur_buf task = CONCUR_BUF_INIT;
  double timeout = concur_tasktimeout(L, 2);
  concur_future *f;
  int closed;
  concur_checktask(L, 2, SUBMIT_OPTIONS, &task);
  concur_cluster_checkbuf(L, &task);
  f = concur_cpool_submit(p, &task, timeout, &closed);
  if (f == NULL) {
    if (closed) return concur_error(L, "closed", "cannot submit to a pool that was shut down");
    return concur_error(L, "limit", "not enough memory");
  }
  concur_pushobj(L, &f->obj);
  concur_obj_unref(&f->obj);
  return 1;
}

/*** pool:shutdown{ wait = true, cancel_pending = false }: no more submits;
** with cancel_pending, pending tasks are cancelled (and interrupted on the
** nodes running them); with wait, returns once every future is done. */
static int pool_shutdown (lua_State *L) {
  concur_cpool *p = checkpool(L);
  int wait, cancel;
  concur_checkshutdown(L, 2, &wait, &cancel);
  concur_cpool_stop(p, cancel);
  if (wait) {
    int rc;
    CONCUR_WAIT(L, rc, concur_cpool_wait(p, CONCUR_NODEADLINE));
    if (rc != CONCUR_OK) return concur_raisewait(L, rc, "shutdown");
    concur_cpool_join(p, 0);
  }
  return 0;
}

/*** pool:close(): shutdown{ wait = true }; also __close. */
static int pool_close (lua_State *L) {
  concur_proxy *px = luaL_testudata(L, 1, concur_cpool_type.name);
  if (px == NULL) return concur_typeerror(L, 1, concur_cpool_type.name);
  if (px->o) {
    concur_cpool *p = (concur_cpool *)px->o;
    int rc;
    concur_cpool_stop(p, 0);
    CONCUR_WAIT(L, rc, concur_cpool_wait(p, CONCUR_NODEADLINE));
    if (rc != CONCUR_OK) return concur_raisewait(L, rc, "close");
    concur_cpool_join(p, 0);
  }
  return 0;
}

/* __gc: stops taking work, never blocks; the pending futures still
** resolve, and the tracker ends the threads when they have. */
static void pool_letgo (concur_obj *o) {
  concur_cpool_stop((concur_cpool *)o, 0);
}

static int pool_gc (lua_State *L) {
  return concur_executor_gc(L, pool_letgo);
}

/* Reads the queue's state: live nodes and their workers (seen within
** 'within' seconds), tasks taken by nodes, tasks waiting, frames dropped. */
typedef struct qstate { long nodes, workers, running, queued, forged; } qstate;

static void query (lua_State *L, concur_cpool *p, qstate *q) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply *reps[5];
  char nodes[CONCUR_CKEY_MAX], tasks[CONCUR_CKEY_MAX], forged[CONCUR_CKEY_MAX];
  const char *name = concur_cpool_queue(p);
  int rc;
  memset(q, 0, sizeof *q);
  concur_ckey(nodes, name, "nodes");
  concur_ckey(tasks, name, "tasks");
  concur_ckey(forged, name, "forged");
  if (concur_rpipe_cmd(&pp, 2) | concur_rpipe_str(&pp, "HGETALL") | concur_rpipe_str(&pp, nodes) |
      concur_rpipe_cmd(&pp, 3) | concur_rpipe_str(&pp, "XPENDING") | concur_rpipe_str(&pp, tasks) |
      concur_rpipe_str(&pp, CONCUR_CGROUP) |
      concur_rpipe_cmd(&pp, 2) | concur_rpipe_str(&pp, "XLEN") | concur_rpipe_str(&pp, tasks) |
      concur_rpipe_cmd(&pp, 2) | concur_rpipe_str(&pp, "GET") | concur_rpipe_str(&pp, forged) |
      concur_rpipe_cmd(&pp, 1) | concur_rpipe_str(&pp, "TIME")) {
    concur_rpipe_free(&pp);
    concur_error(L, "limit", "not enough memory");
  }
  CONCUR_WAIT(L, rc, concur_cpool_query(p, &pp, reps));
  concur_rpipe_free(&pp);
  if (rc != CONCUR_OK) {
    concur_redis *r = concur_cpool_conn(p);
    if (rc == CONCUR_TIMEDOUT || rc == CONCUR_REDIS_REFUSED)
      concur_error(L, "network", "Redis at %s: %s", concur_redis_where(r),
                   concur_redis_error(r));
    concur_raisewait(L, rc, "waiting for Redis");
  }
  if (reps[0]->type == REDIS_REPLY_ARRAY && reps[4]->type == REDIS_REPLY_ARRAY &&
      reps[4]->elements == 2) {
    long now = atol(reps[4]->element[0]->str);
    for (size_t i = 0; i + 1 < reps[0]->elements; i += 2) {
      long workers = 0, seen = 0;
      if (sscanf(reps[0]->element[i + 1]->str, "%ld %ld", &workers, &seen) == 2 &&
          now - seen <= (long)(concur_cpool_visibility(p) + 1)) {
        q->nodes++;
        q->workers += workers;
      }
    }
  }
  if (reps[1]->type == REDIS_REPLY_ARRAY && reps[1]->elements >= 1 &&
      reps[1]->element[0]->type == REDIS_REPLY_INTEGER)
    q->running = (long)reps[1]->element[0]->integer;
  if (reps[2]->type == REDIS_REPLY_INTEGER) q->queued = (long)reps[2]->integer - q->running;
  if (q->queued < 0) q->queued = 0;
  if (reps[3]->type == REDIS_REPLY_STRING) q->forged = atol(reps[3]->str);
  concur_redis_freereplies(reps, 5);
}

/*** pool:stats() --> { workers, pending, running, completed, failed,
** cancelled, nodes, queued, forged, duplicates }: workers and nodes alive
** now, tasks taken by nodes (running) and waiting for one (queued) in the
** whole queue; this pool's futures not resolved yet (pending), resolved,
** and the results it dropped (duplicates: a task that ran twice); forged:
** frames dropped because their signature did not verify. */
static int pool_stats (lua_State *L) {
  concur_cpool *p = checkpool(L);
  long v[6], c[6];
  qstate q;
  query(L, p, &q);
  concur_cpool_counts(p, c);
  v[0] = q.workers; v[1] = c[0]; v[2] = q.running;
  v[3] = c[1]; v[4] = c[2]; v[5] = c[3];
  concur_pushstats(L, v);
  lua_pushinteger(L, q.nodes);
  lua_setfield(L, -2, "nodes");
  lua_pushinteger(L, q.queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, q.forged + c[4]);
  lua_setfield(L, -2, "forged");
  lua_pushinteger(L, c[5]);
  lua_setfield(L, -2, "duplicates");
  return 1;
}

/*** pool:workers() --> the workers of the nodes serving the queue now (at
** least 1, so map sizes its chunks for one while no node is up) */
static int pool_workers (lua_State *L) {
  concur_cpool *p = checkpool(L);
  qstate q;
  query(L, p, &q);
  lua_pushinteger(L, q.workers > 0 ? q.workers : 1);
  return 1;
}

static const luaL_Reg pool_methods[] = {
  {"submit", pool_submit},
  {"shutdown", pool_shutdown},
  {"close", pool_close},
  {"stats", pool_stats},
  {"workers", pool_workers},
  {NULL, NULL}
};

static const luaL_Reg pool_meta[] = {
  {"__gc", pool_gc},
  {"__close", pool_close},
  {NULL, NULL}
};

/* Reads a number from the options table at 1 (checked by the Lua layer). */
static double num (lua_State *L, const char *field) {
  double v;
  lua_getfield(L, 1, field);
  v = concur_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/*** core.cluster_pool{ redis, queue, key, visibility, max_retries,
** result_ttl, timeout } --> a Pool (cluster.Pool checks and fills these) */
static int pool_new (lua_State *L) {
  concur_cpoolopts o;
  concur_cpool *p;
  const char *kind;
  char err[512];
  concur_checktype(L, 1, LUA_TTABLE);
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "redis");
  o.url = concur_checklstring(L, -1, NULL);
  lua_getfield(L, 1, "queue");
  o.queue = concur_checklstring(L, -1, NULL);
  lua_getfield(L, 1, "key");
  o.key = concur_checklstring(L, -1, &o.keylen);
  o.visibility = num(L, "visibility");
  o.max_retries = (int)num(L, "max_retries");
  o.result_ttl = num(L, "result_ttl");
  o.timeout = num(L, "timeout");
  p = concur_cpool_new(&o, &kind, err, sizeof err);
  if (p == NULL) return concur_error(L, kind, "%s", err);
  concur_pushobj(L, (concur_obj *)p);   /* the proxy's reference */
  concur_track(L, (concur_obj *)p, &pool_track);  /* the creation reference */
  return 1;
}

void concur_clusterpool_open (lua_State *L) {
  concur_newclass(L, &concur_cpool_type, pool_methods, pool_meta);
  concur_class_stays(L, concur_cpool_type.name, CONCUR_POOL_STAYS);
  lua_pushcfunction(L, pool_new);
  lua_setfield(L, -2, "cluster_pool");
}
