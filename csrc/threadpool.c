/*
** threadpool.c: concur.ThreadPool, the Lua side of the thread pool
** (core/threadpool.c has the queue, the worker loop, the watchdog and the
** joins). Each worker thread runs its tasks in a Lua state of its own,
** with the task runner of worker.c: this file gives the core that runner
** (make the state and run the initializer, run a task, interrupt it,
** close the state).
**
** A pool is shared by its proxy and the state's tracker, and each worker
** thread holds a reference too (so a worker left behind, or detached
** after a grace, is safe). The tracker joins the threads once they are
** over, or stops and joins the pool when the state closes. Its interface
** is ProcessPool's: submit (also submit{fn, args=, timeout=}), shutdown,
** close, stats, workers, and map/imap/imap_unordered from the Lua layer.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "concur.h"
#include "core/threadpool.h"
#include "tracker.h"
#include "worker.h"

/* ---- the runner: a Lua state per worker thread ----------------------------- */

/* What every worker of one pool needs to make its state. */
typedef struct runner {
  char *path, *cpath;     /* the creator's package.path and cpath */
  concur_buf init;        /* initializer and initargs */
} runner;

static int run_open (void *ud, const char *name, void **wp, char **err) {
  runner *r = ud;
  concur_worker *w = calloc(1, sizeof *w);
  *wp = w;
  *err = NULL;
  if (w == NULL) return -1;
  w->owner = r;
  w->thread = pthread_self();
  snprintf(w->name, sizeof w->name, "%s", name);
  if (concur_worker_begin(w, r->path, r->cpath) != 0)
    *err = strdup("cannot create the worker's Lua state");
  else if (concur_worker_init(w, &r->init, err) != 0 && *err == NULL)
    *err = strdup("initializer failed");
  return *err ? -1 : 0;
}

static void run_task (void *w, concur_future *f) {
  concur_worker_exec(w, f);
}

static void run_interrupt (void *w) {
  concur_worker_interrupt(w);
}

static void run_close (void *w) {
  concur_worker_end(w);
  free(w);
}

static void run_release (void *ud) {
  runner *r = ud;
  concur_buf_free(&r->init);
  free(r->path);
  free(r->cpath);
  free(r);
}

static const concur_tpool_runner lua_runner = {
  run_open, run_task, run_interrupt, run_close, run_release
};

/* ---- tracking --------------------------------------------------------------- */

/* Waits for the workers ('grace' < 0: for ever; else at most grace
** seconds), then joins the threads. */
static void join (concur_tpool *p, double grace) {
  concur_tpool_wait(p, grace < 0 ? CONCUR_NODEADLINE : concur_now() + grace);
  concur_tpool_join(p);
}

static int track_over (concur_obj *o) {
  return concur_tpool_over((concur_tpool *)o);
}

static void track_join (concur_obj *o) {
  join((concur_tpool *)o, -1);
}

static void track_close (concur_obj *o) {
  concur_tpool *p = (concur_tpool *)o;
  concur_tpool_stop(p, 1, 1);
  if (!concur_tpool_on_worker(p)) join(p, 5.0);
}

static const concur_trackops pool_track = { track_over, track_join, track_close };

/* ---- Lua binding ------------------------------------------------------------ */

static concur_tpool *checkpool (lua_State *L) {
  return (concur_tpool *)concur_checkobj(L, 1, &concur_tpool_type);
}

/* Pools without a name are named "ThreadPool-<k>", k counting the pools of
** the process from 0, so their workers' names ("ThreadPool-3_0") are unique,
** as Python's ThreadPoolExecutor names its threads. */
static atomic_int pool_counter;

static const char *const POOL_OPTIONS[] = {
  "workers", "name", "initializer", "initargs", "max_pending", NULL
};

/*** Creates a pool: ThreadPool([n]) or ThreadPool{ workers = n, name = s,
** initializer = fn, initargs = {...}, max_pending = m }. */
static int pool_new (lua_State *L) {
  lua_Integer n = concur_cpu_count(), maxp = 0;
  const char *name = NULL;
  char pname[48];
  concur_tpool_opts o;
  concur_tpool *p;
  runner *r;
  concur_buf init = CONCUR_BUF_INIT;
  if (lua_type(L, 1) == LUA_TTABLE) {
    concur_checkoptions(L, 1, POOL_OPTIONS);
    n = concur_optinteger(L, 1, "workers", n, LUA_MININTEGER);
    name = concur_optstring(L, 1, "name", NULL);   /* (anchored) */
    maxp = concur_optinteger(L, 1, "max_pending", 0, 0);
    concur_checkinit(L, 1, &init);
  }
  else if (!lua_isnoneornil(L, 1)) {
    if (!lua_isinteger(L, 1)) concur_typeerror(L, 1, "integer or table");
    n = lua_tointeger(L, 1);
  }
  if (n < 1 || n > 1024) {
    concur_buf_free(&init);
    concur_argerror(L, 1, "number of workers must be between 1 and 1024");
  }
  r = calloc(1, sizeof *r);
  if (r == NULL) {
    concur_buf_free(&init);
    return concur_error(L, "limit", "not enough memory");
  }
  r->init = init;
  if (name) snprintf(pname, sizeof pname, "%s", name);
  else snprintf(pname, sizeof pname, "ThreadPool-%d",
                atomic_fetch_add(&pool_counter, 1));
  concur_getpaths(L, &r->path, &r->cpath);
  o.workers = (int)n;
  o.max_pending = (size_t)maxp;
  o.name = pname;
  o.runner = &lua_runner;
  o.ud = r;
  p = concur_tpool_new(&o);        /* (releases r when it fails) */
  if (p == NULL) return concur_error(L, "limit", "not enough memory");
  concur_pushobj(L, (concur_obj *)p);   /* the proxy's reference */
  concur_obj_unref((concur_obj *)p);    /* (drop the creation reference) */
  /* the tracker holds a reference, and so does each worker thread, so a
  ** worker that outlives a close (detached after the grace) is safe */
  concur_obj_ref((concur_obj *)p);
  concur_track(L, (concur_obj *)p, &pool_track);
  if (concur_tpool_start(p) == 0)
    return concur_error(L, "limit", "cannot start worker threads");
  return 1;
}

static const char *const SUBMIT_OPTIONS[] = { "args", "timeout", NULL };

/*** pool:submit(fn, ...) or pool:submit{ fn, args = {...}, timeout = s }
** --> Future */
static int pool_submit (lua_State *L) {
  concur_tpool *p = checkpool(L);
  double timeout = concur_tasktimeout(L, 2);
  concur_future *f;
  char msg[256];
  int rc;
  for (;;) {   /* CONCUR_WAIT around the submit, the task made for each try */
    concur_buf task = CONCUR_BUF_INIT;
    concur_watch w;
    concur_checktask(L, 2, SUBMIT_OPTIONS, &task);
    f = concur_tpool_future(p);
    if (f == NULL) {
      concur_buf_free(&task);
      return concur_error(L, "limit", "not enough memory");
    }
    concur_buf_move(&f->task, &task);
    f->timeout = timeout;
    concur_obj_ref(&f->obj);            /* ours, until the proxy has one */
    concur_watch_begin(L, &w);
    rc = concur_tpool_submit(p, f, msg, sizeof msg);   /* the queue takes */
    if (rc != CONCUR_INTERRUPTED) {                    /* the first */
      concur_watch_end(L, &w, rc);
      break;
    }
    concur_obj_unref(&f->obj);
    concur_obj_unref(&f->obj);
    concur_watch_end(L, &w, rc);   /* raises, or we try again */
  }
  if (rc != CONCUR_OK) {
    concur_obj_unref(&f->obj);
    concur_obj_unref(&f->obj);
    if (rc == -2) return concur_error(L, "broken", "pool is broken: %s", msg);
    if (rc == -1)
      return concur_error(L, "closed", "cannot submit to a pool that was shut down");
    return concur_raisewait(L, rc, "submit");
  }
  concur_pushobj(L, &f->obj);
  concur_obj_unref(&f->obj);
  return 1;
}

/*** pool:shutdown{ wait = true, cancel_pending = false } */
static int pool_shutdown (lua_State *L) {
  concur_tpool *p = checkpool(L);
  int wait, cancel;
  concur_checkshutdown(L, 2, &wait, &cancel);
  concur_tpool_stop(p, cancel, 0);
  if (wait && !concur_tpool_on_worker(p)) {
    int rc;
    CONCUR_WAIT(L, rc, concur_tpool_wait(p, CONCUR_NODEADLINE));
    if (rc != CONCUR_OK) return concur_raisewait(L, rc, "shutdown");
    concur_tpool_join(p);
  }
  return 0;
}

/*** pool:close(): shutdown{ wait = true }; also __close. A pool collected
** without being closed (__gc) stops taking work but never blocks: its
** workers finish the queue and are joined later. A task that cannot stop
** when asked (looping in a finalizer or a debug hook, where Lua runs no
** hook) has its worker left behind after a grace of a second: its future
** fails with kind "timeout", close does not wait for it, and a new worker
** takes its place. Threads that tasks started are not waited for (they
** are joined, or cancelled if daemon, at interpreter exit). */
static int pool_close (lua_State *L) {
  concur_proxy *px = luaL_testudata(L, 1, concur_tpool_type.name);
  if (px == NULL) return concur_typeerror(L, 1, concur_tpool_type.name);
  if (px->o) {
    concur_tpool *p = (concur_tpool *)px->o;
    concur_tpool_stop(p, 0, 0);
    if (!concur_tpool_on_worker(p)) {
      int rc;
      CONCUR_WAIT(L, rc, concur_tpool_wait(p, CONCUR_NODEADLINE));
      if (rc != CONCUR_OK) return concur_raisewait(L, rc, "close");
      concur_tpool_join(p);
    }
  }
  return 0;
}

static void pool_letgo (concur_obj *o) {
  concur_tpool_stop((concur_tpool *)o, 0, 0);
}

static int pool_gc (lua_State *L) {
  return concur_executor_gc(L, pool_letgo);
}

/*** pool:stats() --> { workers, pending, running, completed, failed,
** cancelled } */
static int pool_stats (lua_State *L) {
  long v[6];
  concur_tpool_stats(checkpool(L), v);
  return concur_pushstats(L, v);
}

static int pool_workers (lua_State *L) {
  lua_pushinteger(L, concur_tpool_nworkers(checkpool(L)));
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

void concur_threadpool_open (lua_State *L) {
  concur_newclass(L, &concur_tpool_type, pool_methods, pool_meta);
  concur_class_stays(L, concur_tpool_type.name, CONCUR_POOL_STAYS);
  lua_pushcfunction(L, pool_new);
  lua_setfield(L, -2, "ThreadPool");
}
