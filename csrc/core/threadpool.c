/*
** threadpool.c: a fixed set of worker threads fed by one FIFO queue of
** futures (threadpool.h). What a worker runs tasks with (a Lua state) is
** the runner's business; this file only queues, hands out, watches and
** joins.
**
** The shape is libuv's threadpool: one mutex, a condition variable for work
** ('work', signalled only when a worker is idle), one for queue space
** ('space', for max_pending), an intrusive queue through future->next, and
** an idle count. Workers block in C, never holding a runner's state lock.
** Invariants, under p->mu:
**   - every future in the queue is referenced once by the queue;
**   - npending is the length of the queue;
**   - a worker's 'running' future is referenced by that worker, and its
**     f->worker is the worker's slot while it runs.
** A worker never holds p->mu while it runs a task or touches a future's
** lock. Lock order: future->mu, then p->mu (only op_interrupt holds both).
**
** Shutdown: 'closing' stops submissions; workers drain the queue (or it was
** cancelled) and exit. Threads are joined by concur_tpool_join, once
** concur_tpool_wait saw them end.
**
** Stuck workers: a runner may be unable to stop a task (Lua runs no hook
** inside a finalizer or a debug hook). A task that was asked to stop (its
** deadline passed, it was cancelled, the pool is closing at exit) has
** CONCUR_TPOOL_STUCK_GRACE seconds to do so; then the pool's watchdog
** thread (started at the first task that can be asked to stop) leaves its
** worker behind: the task's future fails with kind "timeout", the thread is
** detached and no longer counted (close and exit do not wait for it), and
** a new worker takes its place unless the pool is closing. The thread left
** behind keeps what its runner opened (which only it ever closes), its slot
** (which it frees) and a reference to the pool; when the task ends at last,
** the thread ends.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "threadpool.h"
#include "sys.h"
#include "wait.h"

#define SPINS 1000

/* A worker thread's own record; f->worker of its running task points to
** it. Fields other than w and thread are under p->mu. */
typedef struct slot {
  concur_tpool *p;
  void *w;                  /* the runner's worker (written by its thread
                            ** before its first task) */
  pthread_t thread;
  concur_future *running;
  double stop_by;           /* 'running' is stuck past this (< 0: no bound) */
  int stuck;                /* left behind: its thread frees the slot */
  int ended;                /* the thread is past its loop and its close */
  char name[64];
} slot;

struct concur_tpool {
  concur_obj obj;
  pthread_mutex_t mu;
  pthread_cond_t work, space, joined_cv;
  pthread_cond_t ended_cv;  /* nalive dropped */
  pthread_cond_t watch_cv;  /* for the watchdog: a stop_by, nalive changed */
  concur_future *head, *tail;
  size_t npending, max_pending;
  atomic_size_t queued;   /* npending, readable without the lock (spinning) */
  int nworkers, nidle;
  int nalive;             /* worker threads not ended, those left behind
                          ** excepted */
  int nstarted;           /* worker threads started (they are named by it) */
  int closing;            /* no more submissions */
  int joining, joined;    /* someone joins / has joined the threads */
  int watching;           /* the watchdog thread was started */
  double watch_until;     /* when the watchdog wakes next (< 0: never) */
  pthread_t watchdog;
  char *broken;           /* why the pool broke (the runner's open), or NULL */
  atomic_long running, completed, failed, cancelled;   /* stats */
  const concur_tpool_runner *runner;
  void *ud;
  char name[48];
  slot **slots;           /* nworkers; NULL where none could start */
};

/* The pool whose worker the calling thread is, or NULL. */
static _Thread_local concur_tpool *self_pool;

static void tpool_destroy (concur_obj *o) {
  concur_tpool *p = (concur_tpool *)o;
  for (int i = 0; i < p->nworkers; i++) free(p->slots[i]);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->space);
  pthread_cond_destroy(&p->joined_cv);
  pthread_cond_destroy(&p->ended_cv);
  pthread_cond_destroy(&p->watch_cv);
  if (p->runner->release) p->runner->release(p->ud);
  free(p->broken);
  free(p->slots);
  free(p);
}

const concur_objtype concur_tpool_type = { "concur.ThreadPool", tpool_destroy, NULL };

/* ---- the queue ------------------------------------------------------------- */

/* A pending future was cancelled: unlink it (it may already be gone). */
static void op_dropped (concur_future *f) {
  concur_tpool *p = f->owner;
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

static void watch (concur_tpool *p, double stop_by);

/* A running task is asked to stop: it has CONCUR_TPOOL_STUCK_GRACE
** seconds. f->mu held (so its worker, and the slot, are alive). */
static void op_interrupt (concur_future *f) {
  slot *s = f->worker;
  concur_tpool *p = f->owner;
  p->runner->interrupt(s->w);
  pthread_mutex_lock(&p->mu);
  if (s->running == f) {
    double by = concur_now() + CONCUR_TPOOL_STUCK_GRACE;
    if (s->stop_by < 0 || by < s->stop_by) {
      s->stop_by = by;
      watch(p, by);
    }
  }
  pthread_mutex_unlock(&p->mu);
}

/* Counts a task that ran, before its waiters wake (so the stats seen after
** its result include it). f->mu held; touches only atomics. */
static void op_finished (concur_future *f, int st) {
  concur_tpool *p = f->owner;
  if (f->worker == NULL) {         /* failed without running: broken pool */
    if (st == CONCUR_F_FAILED) atomic_fetch_add(&p->failed, 1);
    return;
  }
  atomic_fetch_sub(&p->running, 1);
  if (st == CONCUR_F_FINISHED) atomic_fetch_add(&p->completed, 1);
  else if (st == CONCUR_F_FAILED) atomic_fetch_add(&p->failed, 1);
  else atomic_fetch_add(&p->cancelled, 1);
}

static const concur_future_ops tpool_ops = { op_dropped, op_interrupt, op_finished };

concur_future *concur_tpool_future (concur_tpool *p) {
  return concur_future_new(&tpool_ops, p);
}

/* Fails every queued future with the given error (kind NULL: cancels
** them); p->mu held on entry and released on return (futures are
** completed outside the pool lock). */
static void fail_queue_unlock (concur_tpool *p, const char *kind, const char *msg) {
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
      concur_wire_error(&eb, kind, msg);
      concur_future_finish(f, 1, &eb);
    }
    else
      concur_future_cancel(f);   /* counted by op_dropped */
    concur_obj_unref(&f->obj);
    f = next;
  }
}

/* Waits until the queue has room for one more task (max_pending), the
** pool closes, or an interrupt; p->mu held. */
static int wait_room (concur_tpool *p) {
  int rc = CONCUR_OK;
  while (!p->closing && p->max_pending && p->npending >= p->max_pending) {
    rc = concur_cond_wait(&p->space, &p->mu, CONCUR_NODEADLINE);
    if (rc != CONCUR_OK) break;
  }
  return rc;
}

int concur_tpool_submit (concur_tpool *p, concur_future *f, char *msg,
                         size_t msgsize) {
  int rc;
  pthread_mutex_lock(&p->mu);
  rc = wait_room(p);
  if (rc == CONCUR_OK && p->closing) {
    rc = p->broken ? -2 : -1;
    snprintf(msg, msgsize, "%s", p->broken ? p->broken : "");
  }
  if (rc != CONCUR_OK) {
    pthread_mutex_unlock(&p->mu);
    return rc;
  }
  f->next = NULL;                       /* the queue takes the reference */
  if (p->tail) p->tail->next = f;
  else p->head = f;
  p->tail = f;
  p->npending++;
  atomic_store_explicit(&p->queued, p->npending, memory_order_relaxed);
  if (p->nidle) pthread_cond_signal(&p->work);
  pthread_mutex_unlock(&p->mu);
  return CONCUR_OK;
}

/* ---- workers ---------------------------------------------------------------- */

/* Has p a task queued? (read without the lock: for spinning) */
static int queued (void *ud) {
  concur_tpool *p = ud;
  return atomic_load_explicit(&p->queued, memory_order_relaxed) != 0;
}

/* The next task for slot s, taken off the queue (its reference now the
** worker's), or NULL when the pool closed and the queue is empty, or s was
** left behind. */
static concur_future *next_task (concur_tpool *p, slot *s) {
  concur_future *f;
  pthread_mutex_lock(&p->mu);
  if (p->head == NULL && !p->closing && concur_can_spin()) {
    /* spin a little before sleeping: with small tasks the next one is
    ** usually microseconds away, and a futex wake costs more than that */
    pthread_mutex_unlock(&p->mu);
    concur_spin(queued, p, SPINS, -1);
    pthread_mutex_lock(&p->mu);
  }
  while (p->head == NULL && !p->closing && !s->stuck) {
    p->nidle++;
    pthread_cond_wait(&p->work, &p->mu);
    p->nidle--;
  }
  f = s->stuck ? NULL : p->head;
  if (f == NULL) {           /* closing and nothing left, or left behind */
    pthread_mutex_unlock(&p->mu);
    return NULL;
  }
  p->head = f->next;
  if (p->head == NULL) p->tail = NULL;
  f->next = NULL;
  p->npending--;
  atomic_store_explicit(&p->queued, p->npending, memory_order_relaxed);
  if (p->max_pending) pthread_cond_signal(&p->space);
  s->running = f;
  s->stop_by = -1;
  if (f->timeout >= 0) {     /* it will be asked to stop at its deadline */
    s->stop_by = concur_now() + f->timeout + CONCUR_TPOOL_STUCK_GRACE;
    watch(p, s->stop_by);
  }
  atomic_fetch_add(&p->running, 1);
  pthread_mutex_unlock(&p->mu);
  return f;
}

/* The pool is broken (the runner could not open a worker): fail what
** waits, refuse the rest. Takes err. */
static void set_broken (concur_tpool *p, char *err) {
  pthread_mutex_lock(&p->mu);
  if (p->broken == NULL) {
    p->broken = err ? err : strdup("cannot start a worker");
    err = NULL;
  }
  p->closing = 1;
  pthread_cond_broadcast(&p->work);
  fail_queue_unlock(p, "broken", p->broken ? p->broken : "not enough memory");
  free(err);
}

static void *worker_main (void *arg) {
  slot *s = arg;
  concur_tpool *p = s->p;
  const concur_tpool_runner *r = p->runner;
  char *err = NULL;
  int stuck;
  self_pool = p;
  if (r->open(p->ud, s->name, &s->w, &err) != 0)
    set_broken(p, err);
  else for (;;) {
    concur_future *f = next_task(p, s);
    if (f == NULL) break;
    if (concur_future_start(f, s))
      r->run(s->w, f);
    else                          /* cancelled before it started */
      atomic_fetch_sub(&p->running, 1);
    pthread_mutex_lock(&p->mu);
    s->running = NULL;
    s->stop_by = -1;
    pthread_mutex_unlock(&p->mu);
    concur_obj_unref(&f->obj);
  }
  if (s->w) r->close(s->w);
  pthread_mutex_lock(&p->mu);
  stuck = s->stuck;
  if (!stuck) {
    s->ended = 1;
    p->nalive--;
    pthread_cond_broadcast(&p->ended_cv);
    pthread_cond_signal(&p->watch_cv);
  }
  pthread_mutex_unlock(&p->mu);
  if (stuck) free(s);          /* nobody else knows it any more */
  concur_obj_unref(&p->obj);   /* a thread left behind frees last */
  return NULL;
}

/* Starts a worker thread in slot i; p->mu held. 0, or -1 (slots[i] is then
** NULL). */
static int start_worker (concur_tpool *p, int i) {
  slot *s = calloc(1, sizeof *s);
  if (s == NULL) return -1;
  s->p = p;
  s->stop_by = -1;
  snprintf(s->name, sizeof s->name, "%s_%d", p->name, p->nstarted);
  concur_obj_ref(&p->obj);     /* the thread's */
  if (concur_thread_create(&s->thread, worker_main, s) != 0) {
    concur_obj_unref(&p->obj); /* (never the last: the caller holds one) */
    free(s);
    p->slots[i] = NULL;
    return -1;
  }
  p->slots[i] = s;
  p->nstarted++;
  p->nalive++;
  return 0;
}

/* ---- the watchdog -------------------------------------------------------- */

static void *watchdog_main (void *arg);

/* A running task must have stopped by 'stop_by': the watchdog looks then.
** p->mu held. */
static void watch (concur_tpool *p, double stop_by) {
  if (!p->watching) {
    concur_obj_ref(&p->obj);   /* the watchdog's (never the last to go */
    if (concur_thread_create(&p->watchdog, watchdog_main, p) == 0)  /* here) */
      p->watching = 1;
    else concur_obj_unref(&p->obj);   /* stuck tasks then go unreported */
  }
  else if (p->watch_until < 0 || stop_by < p->watch_until)
    pthread_cond_signal(&p->watch_cv);
}

/* Leaves the worker of slot i behind (its task is stuck); p->mu held, and
** dropped meanwhile: the caller looks at the slots afresh. */
static void leave_behind (concur_tpool *p, int i) {
  slot *s = p->slots[i];
  concur_future *f = (concur_future *)concur_obj_ref(&s->running->obj);
  char msg[200];
  concur_buf eb = CONCUR_BUF_INIT;
  s->stuck = 1;                 /* its thread ends after the task, and */
  pthread_detach(s->thread);    /* frees s: no touching s after unlock */
  p->slots[i] = NULL;
  p->nalive--;
  if (!p->closing) start_worker(p, i);   /* a failure leaves one fewer */
  pthread_cond_broadcast(&p->ended_cv);
  pthread_cond_broadcast(&p->work);      /* (it may be idle by now) */
  pthread_mutex_unlock(&p->mu);
  snprintf(msg, sizeof msg, "task stuck: it did not stop within %g s of its "
           "deadline or cancellation (Lua runs no hook inside a finalizer or "
           "a debug hook); its worker thread was left behind",
           CONCUR_TPOOL_STUCK_GRACE);
  concur_wire_error(&eb, "timeout", msg);
  concur_future_fail(f, &eb);
  concur_obj_unref(&f->obj);
  pthread_mutex_lock(&p->mu);
}

/* Leaves behind every worker whose task is past its stop_by, and sleeps
** until the next stop_by; ends once the pool closed and its workers
** ended. */
static void *watchdog_main (void *arg) {
  concur_tpool *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!(p->closing && p->nalive == 0)) {
    double now = concur_now(), next = -1;
    int again = 0;
    for (int i = 0; i < p->nworkers && !again; i++) {
      slot *s = p->slots[i];
      if (s == NULL || s->running == NULL || s->stop_by < 0) continue;
      if (now >= s->stop_by) {
        leave_behind(p, i);
        again = 1;
      }
      else if (next < 0 || s->stop_by < next) next = s->stop_by;
    }
    if (again) continue;
    p->watch_until = next;
    concur_cond_wait(&p->watch_cv, &p->mu, next);
    p->watch_until = -1;
  }
  pthread_mutex_unlock(&p->mu);
  concur_obj_unref(&p->obj);
  return NULL;
}

/* ---- making, stopping and joining ------------------------------------------ */

concur_tpool *concur_tpool_new (const concur_tpool_opts *o) {
  concur_tpool *p = calloc(1, sizeof *p);
  if (p) p->slots = calloc((size_t)o->workers, sizeof *p->slots);
  if (p == NULL || p->slots == NULL) {
    free(p);
    if (o->runner->release) o->runner->release(o->ud);
    return NULL;
  }
  concur_obj_init(&p->obj, &concur_tpool_type);
  concur_mutex_init(&p->mu, 0);
  concur_cond_init(&p->work, 0);
  concur_cond_init(&p->space, 0);
  concur_cond_init(&p->joined_cv, 0);
  concur_cond_init(&p->ended_cv, 0);
  concur_cond_init(&p->watch_cv, 0);
  p->watch_until = -1;
  p->max_pending = o->max_pending;
  p->nworkers = o->workers;
  p->runner = o->runner;
  p->ud = o->ud;
  snprintf(p->name, sizeof p->name, "%s", o->name);
  return p;
}

int concur_tpool_start (concur_tpool *p) {
  int n;
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->nworkers; i++)
    if (start_worker(p, i) != 0) {
      p->nworkers = i;
      break;
    }
  n = p->nworkers;
  pthread_mutex_unlock(&p->mu);
  if (n == 0) concur_tpool_stop(p, 1, 0);
  return n;
}

void concur_tpool_stop (concur_tpool *p, int cancel_pending, int interrupt) {
  concur_future **run = interrupt ? calloc((size_t)p->nworkers + 1, sizeof *run) : NULL;
  int nrun = 0;
  pthread_mutex_lock(&p->mu);
  p->closing = 1;
  pthread_cond_broadcast(&p->work);
  pthread_cond_broadcast(&p->space);
  pthread_cond_signal(&p->watch_cv);
  if (run)
    for (int i = 0; i < p->nworkers; i++)
      if (p->slots[i] && p->slots[i]->running)
        run[nrun++] = (concur_future *)concur_obj_ref(&p->slots[i]->running->obj);
  if (cancel_pending) fail_queue_unlock(p, NULL, NULL);
  else pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < nrun; i++) {
    concur_future_cancel(run[i]);
    concur_obj_unref(&run[i]->obj);
  }
  free(run);
}

int concur_tpool_wait (concur_tpool *p, double deadline) {
  int rc = CONCUR_OK;
  pthread_mutex_lock(&p->mu);
  while (p->nalive > 0) {
    rc = concur_cond_wait(&p->ended_cv, &p->mu, deadline);
    if (rc != CONCUR_OK) break;
  }
  if (p->nalive == 0) rc = CONCUR_OK;
  pthread_mutex_unlock(&p->mu);
  return rc;
}

/* NOTE: a thread still running when the join comes (a grace ran out) is
** detached (concur_thread_join): it finishes on its own. */
void concur_tpool_join (concur_tpool *p) {
  int n = p->nworkers, watching;
  pthread_t *th = calloc((size_t)n + 1, sizeof *th);
  char *ended = calloc((size_t)n + 1, 1);
  pthread_mutex_lock(&p->mu);
  if (p->joining) {
    while (!p->joined) pthread_cond_wait(&p->joined_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    free(th);
    free(ended);
    return;
  }
  p->joining = 1;
  for (int i = 0; i < n; i++) {
    slot *s = p->slots[i];
    if (s == NULL || th == NULL || ended == NULL) continue;
    th[i] = s->thread;
    ended[i] = s->ended ? 1 : 2;
  }
  watching = p->watching;
  if (watching && th && ended) {
    th[n] = p->watchdog;
    ended[n] = p->nalive == 0 ? 1 : 2;   /* then it ends at once */
  }
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; th && ended && i <= n; i++)
    if (ended[i]) concur_thread_join(th[i], ended[i] == 1 ? -1 : 0);
  free(th);
  free(ended);
  pthread_mutex_lock(&p->mu);
  p->joined = 1;
  pthread_cond_broadcast(&p->joined_cv);
  pthread_mutex_unlock(&p->mu);
}

int concur_tpool_over (concur_tpool *p) {
  int over;
  pthread_mutex_lock(&p->mu);
  over = p->closing && p->nalive == 0;
  pthread_mutex_unlock(&p->mu);
  return over;
}

int concur_tpool_on_worker (concur_tpool *p) {
  return self_pool == p;
}

void concur_tpool_stats (concur_tpool *p, long v[6]) {
  pthread_mutex_lock(&p->mu);
  v[0] = p->nworkers;
  v[1] = (long)p->npending;
  v[2] = atomic_load(&p->running);
  v[3] = atomic_load(&p->completed);
  v[4] = atomic_load(&p->failed);
  v[5] = atomic_load(&p->cancelled);
  pthread_mutex_unlock(&p->mu);
}

int concur_tpool_nworkers (concur_tpool *p) {
  return p->nworkers;
}
