/*
** pool.c: concur.ThreadPool, a fixed set of worker threads, each with its
** own Lua state, fed by one FIFO queue of futures.
**
** The shape is libuv's threadpool: one mutex, a condition variable for work
** ('work', signalled only when a worker is idle), one for queue space
** ('space', for max_pending), an intrusive queue through future->next, and
** an idle count. Workers block in C, never holding a Lua state lock (each
** state belongs to its worker alone). Invariants, under pool->mu:
**   - every future in the queue is referenced once by the queue;
**   - npending is the length of the queue;
**   - a worker's 'running' future is referenced by that worker.
** A worker never holds pool->mu while it runs a task or touches a future's
** lock, and a future's lock is never held while taking pool->mu, except in
** interrupt(), which only sends a signal.
**
** Shutdown: 'closing' stops submissions; workers drain the queue (or it was
** cancelled) and exit. Threads are joined by shutdown{wait=true}, by the
** state's tracker when they are over, or when the state closes.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "concur.h"
#include "core/future.h"
#include "state.h"
#include "worker.h"

typedef struct pool pool;

#define SPIN 1000
#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

typedef struct slot {
  concur_worker w;
  pool *p;
  concur_future *running;   /* under p->mu */
  int started;              /* pthread_create succeeded */
} slot;

struct pool {
  concur_obj obj;
  pthread_mutex_t mu;
  pthread_cond_t work, space, joined_cv;
  concur_future *head, *tail;
  size_t npending, max_pending;
  atomic_size_t queued;   /* npending, readable without the lock (spinning) */
  int nworkers, nidle, nalive;
  int closing;            /* no more submissions */
  int joining, joined;    /* someone joins / has joined the threads */
  char *broken;           /* why the pool broke (initializer), or NULL */
  atomic_long running, completed, failed, cancelled;   /* stats */
  char *path, *cpath;
  char name[48];
  concur_buf init;        /* initializer and initargs */
  slot *slots;
};

static void pool_destroy (concur_obj *o) {
  pool *p = (pool *)o;
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->space);
  pthread_cond_destroy(&p->joined_cv);
  concur_buf_free(&p->init);
  free(p->broken);
  free(p->path);
  free(p->cpath);
  free(p->slots);
  free(p);
}

static const concur_objtype pool_type = { "concur.ThreadPool", pool_destroy, NULL };

/* ---- the queue ------------------------------------------------------------- */

/* A pending future was cancelled: unlink it (it may already be gone). */
static void op_dropped (concur_future *f) {
  pool *p = f->owner;
  concur_future **pp, *prev = NULL;
  int found = 0;
  pthread_mutex_lock(&p->mu);
  for (pp = &p->head; *pp; prev = *pp, pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      if (p->tail == f) p->tail = prev;
      f->next = NULL;
      p->npending--;
      atomic_store_explicit(&p->queued, p->npending, memory_order_relaxed);
      found = 1;
      break;
    }
  atomic_fetch_add(&p->cancelled, 1);
  if (found) pthread_cond_signal(&p->space);
  pthread_mutex_unlock(&p->mu);
  if (found) concur_obj_unref(&f->obj);
}

static void op_interrupt (concur_future *f) {
  concur_worker_interrupt(f->worker);
}

/* Counts a task that ran, before its waiters wake (so stats() seen after
** result() includes it). f->mu held; touches only atomics. */
static void op_finished (concur_future *f, int st) {
  pool *p = f->owner;
  if (f->worker == NULL) {         /* failed without running: broken pool */
    if (st == CONCUR_F_FAILED) atomic_fetch_add(&p->failed, 1);
    return;
  }
  atomic_fetch_sub(&p->running, 1);
  if (st == CONCUR_F_FINISHED) atomic_fetch_add(&p->completed, 1);
  else if (st == CONCUR_F_FAILED) atomic_fetch_add(&p->failed, 1);
  else atomic_fetch_add(&p->cancelled, 1);
}

static const concur_future_ops pool_ops = { op_dropped, op_interrupt, op_finished };

/* Fails every queued future with the given error; p->mu held on entry and
** released on return (futures are completed outside the pool lock). */
static void fail_queue_unlock (pool *p, const char *kind, const char *msg) {
  concur_future *f = p->head;
  p->head = p->tail = NULL;
  p->npending = 0;
  atomic_store_explicit(&p->queued, 0, memory_order_relaxed);
  pthread_cond_broadcast(&p->space);
  pthread_mutex_unlock(&p->mu);
  while (f) {
    concur_future *next = f->next;
    concur_buf eb = CONCUR_BUF_INIT;
    f->next = NULL;
    if (kind) {
      concur_errbuf(&eb, kind, msg);
      concur_future_finish(f, 1, &eb);
    }
    else
      concur_future_cancel(f);   /* counted by op_dropped */
    concur_obj_unref(&f->obj);
    f = next;
  }
}

/* ---- workers ---------------------------------------------------------------- */

static void *worker_main (void *arg) {
  slot *s = arg;
  pool *p = s->p;
  char *err = NULL;
  if (concur_worker_begin(&s->w, p->path, p->cpath) != 0)
    err = strdup("cannot create the worker's Lua state");
  else if (concur_worker_init(&s->w, &p->init, &err) != 0 && err == NULL)
    err = strdup("initializer failed");
  if (err) {    /* the pool is broken: fail what waits, refuse the rest */
    pthread_mutex_lock(&p->mu);
    if (p->broken == NULL) {
      p->broken = err;
      err = NULL;
    }
    p->closing = 1;
    pthread_cond_broadcast(&p->work);
    fail_queue_unlock(p, "broken", p->broken);
    free(err);
  }
  else for (;;) {
    concur_future *f;
    int st;
    pthread_mutex_lock(&p->mu);
    if (p->head == NULL && !p->closing) {
      /* spin a little before sleeping: with small tasks the next one is
      ** usually microseconds away, and a futex wake costs more than that */
      pthread_mutex_unlock(&p->mu);
      for (int i = 0; i < SPIN && !atomic_load_explicit(&p->queued, memory_order_relaxed); i++)
        cpu_relax();
      pthread_mutex_lock(&p->mu);
    }
    while (p->head == NULL && !p->closing) {
      p->nidle++;
      pthread_cond_wait(&p->work, &p->mu);
      p->nidle--;
    }
    f = p->head;
    if (f == NULL) {           /* closing, and nothing left */
      pthread_mutex_unlock(&p->mu);
      break;
    }
    p->head = f->next;
    if (p->head == NULL) p->tail = NULL;
    f->next = NULL;
    p->npending--;
    atomic_store_explicit(&p->queued, p->npending, memory_order_relaxed);
    if (p->max_pending) pthread_cond_signal(&p->space);
    s->running = f;
    atomic_fetch_add(&p->running, 1);
    pthread_mutex_unlock(&p->mu);
    st = concur_worker_run(&s->w, f);
    if (st < 0)                   /* cancelled before it started */
      atomic_fetch_sub(&p->running, 1);
    pthread_mutex_lock(&p->mu);
    s->running = NULL;
    pthread_mutex_unlock(&p->mu);
    concur_obj_unref(&f->obj);
  }
  concur_worker_end(&s->w);
  pthread_mutex_lock(&p->mu);
  p->nalive--;
  pthread_mutex_unlock(&p->mu);
  concur_obj_unref(&p->obj);   /* a straggler that was detached frees last */
  return NULL;
}

/* Stops submissions; cancels the queue if asked; interrupts running tasks
** if asked. Never blocks on workers. */
static void pool_stop (pool *p, int cancel_pending, int interrupt) {
  concur_future **run = interrupt ? calloc((size_t)p->nworkers, sizeof *run) : NULL;
  int nrun = 0;
  pthread_mutex_lock(&p->mu);
  p->closing = 1;
  pthread_cond_broadcast(&p->work);
  pthread_cond_broadcast(&p->space);
  if (run)
    for (int i = 0; i < p->nworkers; i++)
      if (p->slots[i].running)
        run[nrun++] = (concur_future *)concur_obj_ref(&p->slots[i].running->obj);
  if (cancel_pending) fail_queue_unlock(p, NULL, NULL);
  else pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < nrun; i++) {
    concur_future_cancel(run[i]);
    concur_obj_unref(&run[i]->obj);
  }
  free(run);
}

/* Joins the worker threads once (others wait for the one who joins).
** 'grace' < 0: wait for ever; else give up after grace seconds and detach
** the stragglers (the library stays loaded, so they can finish safely). */
static void pool_join (pool *p, double grace) {
  pthread_mutex_lock(&p->mu);
  if (p->joining) {
    while (!p->joined) pthread_cond_wait(&p->joined_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return;
  }
  p->joining = 1;
  pthread_mutex_unlock(&p->mu);
  double deadline = grace < 0 ? -1 : concur_now() + grace;
  for (int i = 0; i < p->nworkers; i++) {
    slot *s = &p->slots[i];
    if (!s->started) continue;
    if (deadline < 0) pthread_join(s->w.thread, NULL);
    else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      double left = deadline - concur_now();
      if (left < 0) left = 0;
      ts.tv_sec += (time_t)left;
      ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
      if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
      if (pthread_timedjoin_np(s->w.thread, NULL, &ts) != 0)
        pthread_detach(s->w.thread);
    }
  }
  pthread_mutex_lock(&p->mu);
  p->joined = 1;
  pthread_cond_broadcast(&p->joined_cv);
  pthread_mutex_unlock(&p->mu);
}

/* Is the calling thread one of p's workers? (It must not join itself.) */
static int in_own_worker (pool *p) {
  concur_worker *w = concur_worker_self();
  return w && w->owner == p;
}

/* ---- tracking --------------------------------------------------------------- */

static int track_reap (void *ud) {
  pool *p = ud;
  int over;
  pthread_mutex_lock(&p->mu);
  over = p->closing && p->nalive == 0;
  pthread_mutex_unlock(&p->mu);
  if (over) pool_join(p, -1);
  return over;
}

static void track_close (void *ud) {
  pool *p = ud;
  pool_stop(p, 1, 1);
  if (!in_own_worker(p)) pool_join(p, 5.0);
}

static void track_release (void *ud) {
  concur_obj_unref(&((pool *)ud)->obj);
}

static const concur_trackops pool_track = { track_reap, track_close, track_release };

/* ---- Lua binding ------------------------------------------------------------ */

static pool *checkpool (lua_State *L) {
  return (pool *)concur_checkobj(L, 1, &pool_type);
}

static const char *const POOL_OPTIONS[] = {
  "workers", "name", "initializer", "initargs", "max_pending", NULL
};

/*** Creates a pool: ThreadPool([n]) or ThreadPool{ workers = n, name = s,
** initializer = fn, initargs = {...}, max_pending = m }. */
static int pool_new (lua_State *L) {
  lua_Integer n = concur_cpu_count(), maxp = 0;
  const char *name = "pool";
  pool *p;
  concur_buf init = CONCUR_BUF_INIT;
  if (lua_type(L, 1) == LUA_TTABLE) {
    concur_checkoptions(L, 1, POOL_OPTIONS);
    if (lua_getfield(L, 1, "workers") != LUA_TNIL) {
      if (!lua_isinteger(L, -1))
        concur_argerror(L, 1, "option 'workers' must be an integer");
      n = lua_tointeger(L, -1);
    }
    if (lua_getfield(L, 1, "name") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        concur_argerror(L, 1, "option 'name' must be a string");
      name = lua_tostring(L, -1);
    }
    if (lua_getfield(L, 1, "max_pending") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        concur_argerror(L, 1, "option 'max_pending' must be a non-negative integer");
      maxp = lua_tointeger(L, -1);
    }
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
  p = calloc(1, sizeof *p);
  if (p) p->slots = calloc((size_t)n, sizeof *p->slots);
  if (p == NULL || p->slots == NULL) {
    if (p) free(p);
    concur_buf_free(&init);
    return concur_error(L, "limit", "not enough memory");
  }
  concur_obj_init(&p->obj, &pool_type);
  concur_mutex_init(&p->mu, 0);
  concur_cond_init(&p->work, 0);
  concur_cond_init(&p->space, 0);
  concur_cond_init(&p->joined_cv, 0);
  p->max_pending = (size_t)maxp;
  p->nworkers = (int)n;
  p->init = init;
  snprintf(p->name, sizeof p->name, "%s", name);
  concur_getpaths(L, &p->path, &p->cpath);
  concur_pushobj(L, &p->obj);      /* the proxy's reference */
  concur_obj_unref(&p->obj);       /* (drop the creation reference) */
  /* the tracker holds a reference, and so does each worker thread, so a
  ** worker that outlives a close (detached after the grace) is safe */
  concur_obj_ref(&p->obj);
  concur_track(L, p, &pool_track);
  for (int i = 0; i < p->nworkers; i++) {
    slot *s = &p->slots[i];
    s->p = p;
    s->w.owner = p;
    snprintf(s->w.name, sizeof s->w.name, "%s-%d", p->name, i + 1);
    pthread_mutex_lock(&p->mu);
    p->nalive++;
    pthread_mutex_unlock(&p->mu);
    concur_obj_ref(&p->obj);
    if (pthread_create(&s->w.thread, NULL, worker_main, s) != 0) {
      concur_obj_unref(&p->obj);
      pthread_mutex_lock(&p->mu);
      p->nalive--;
      pthread_mutex_unlock(&p->mu);
      if (i == 0) {
        pool_stop(p, 1, 0);
        return concur_error(L, "limit", "cannot start worker threads");
      }
      p->nworkers = i;
      break;
    }
    s->started = 1;
  }
  return 1;
}

static const char *const SUBMIT_OPTIONS[] = { "args", "timeout", NULL };

/*** pool:submit(fn, ...) or pool:submit{ fn, args = {...}, timeout = s }
** --> Future */
static int pool_submit (lua_State *L) {
  pool *p = checkpool(L);
  concur_buf task = CONCUR_BUF_INIT;
  double timeout = -1;
  concur_future *f;
  int rc = CONCUR_OK;
  timeout = concur_tasktimeout(L, 2);
  concur_checktask(L, 2, SUBMIT_OPTIONS, &task);
  f = concur_future_new(&pool_ops, p);
  if (f == NULL) {
    concur_buf_free(&task);
    return concur_error(L, "limit", "not enough memory");
  }
  f->task = task;
  f->timeout = timeout;
  pthread_mutex_lock(&p->mu);
  while (!p->closing && p->max_pending && p->npending >= p->max_pending) {
    rc = concur_cond_wait(&p->space, &p->mu, CONCUR_NODEADLINE);
    if (rc != CONCUR_OK) break;
  }
  if (p->closing || rc != CONCUR_OK) {
    char msg[256];
    int broken = p->broken != NULL;
    snprintf(msg, sizeof msg, "%s", broken ? p->broken : "");
    pthread_mutex_unlock(&p->mu);
    concur_obj_unref(&f->obj);
    if (rc != CONCUR_OK) return concur_raisewait(L, rc, "submit");
    if (broken) return concur_error(L, "broken", "pool is broken: %s", msg);
    return concur_error(L, "closed", "cannot submit to a pool that was shut down");
  }
  f->next = NULL;                       /* the queue takes the creation ref */
  if (p->tail) p->tail->next = f;
  else p->head = f;
  p->tail = f;
  p->npending++;
  atomic_store_explicit(&p->queued, p->npending, memory_order_relaxed);
  if (p->nidle) pthread_cond_signal(&p->work);
  concur_obj_ref(&f->obj);              /* ...and the proxy takes one more */
  pthread_mutex_unlock(&p->mu);
  concur_pushobj(L, &f->obj);
  concur_obj_unref(&f->obj);
  return 1;
}

/*** pool:shutdown{ wait = true, cancel_pending = false } */
static int pool_shutdown (lua_State *L) {
  pool *p = checkpool(L);
  int wait, cancel;
  concur_checkshutdown(L, 2, &wait, &cancel);
  pool_stop(p, cancel, 0);
  if (wait && !in_own_worker(p)) pool_join(p, -1);
  return 0;
}

/*** pool:close(): shutdown{ wait = true }; also __close. A pool collected
** without being closed (__gc) stops taking work but never blocks: its
** workers finish the queue and are joined later. */
static int pool_close (lua_State *L) {
  concur_proxy *px = luaL_testudata(L, 1, pool_type.name);
  if (px == NULL) return concur_typeerror(L, 1, pool_type.name);
  if (px->o) {
    pool *p = (pool *)px->o;
    pool_stop(p, 0, 0);
    if (!in_own_worker(p)) pool_join(p, -1);
  }
  return 0;
}

static void pool_letgo (concur_obj *o) {
  pool_stop((pool *)o, 0, 0);
}

static int pool_gc (lua_State *L) {
  return concur_executor_gc(L, pool_letgo);
}

/*** pool:stats() --> { workers, pending, running, completed, failed,
** cancelled } */
static int pool_stats (lua_State *L) {
  pool *p = checkpool(L);
  long v[6];
  pthread_mutex_lock(&p->mu);
  v[0] = p->nworkers; v[1] = (long)p->npending; v[2] = atomic_load(&p->running);
  v[3] = atomic_load(&p->completed); v[4] = atomic_load(&p->failed);
  v[5] = atomic_load(&p->cancelled);
  pthread_mutex_unlock(&p->mu);
  return concur_pushstats(L, v);
}

static int pool_workers (lua_State *L) {
  pool *p = checkpool(L);
  lua_pushinteger(L, p->nworkers);
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

void concur_pool_open (lua_State *L) {
  concur_newclass(L, &pool_type, pool_methods, pool_meta);
  /* a pool is not sent to other states: drop the by-reference mark */
  luaL_getmetatable(L, pool_type.name);
  lua_pushnil(L);
  lua_setfield(L, -2, "__concur");
  lua_pop(L, 1);
  lua_pushcfunction(L, pool_new);
  lua_setfield(L, -2, "ThreadPool");
}
