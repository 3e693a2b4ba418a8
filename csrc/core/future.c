/*
** future.c: the future state machine and waiting on many futures.
**
** Invariants: 'state' changes only under f->mu, and only forward (pending ->
** running -> finished/failed/cancelled, or pending -> cancelled), but for
** running -> pending when a task is given back before it started. 'out' is
** written once, before the state becomes done, and never after; so a thread
** that has seen a done state (under the lock) may read 'out' without it.
** A future on a waitset has one node there; completion appends the future's
** index to the set's ring under both locks (future first, then set). While
** a set is being built, the futures registered so far can already complete,
** so every append to the ring, also of a future found done when the set is
** built, takes the set's lock.
*/
#include <stdlib.h>
#include <string.h>
#include "future.h"
#include "wait.h"

struct concur_wnode {
  concur_wnode *prev, *next;   /* in the future's list, under future->mu */
  concur_waitset *ws;
  size_t index;
};

struct concur_waitset {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n, head, tail;        /* ring of completed indices, under mu */
  size_t *ring;
  size_t returned;
  concur_future **fs;          /* one reference each */
  concur_wnode *nodes;
  void (*cb) (void *ud, size_t index);   /* or NULL */
  void *cbud;
};

static void future_destroy (concur_obj *o) {
  concur_future *f = (concur_future *)o;
  concur_buf_free(&f->out);
  concur_buf_free(&f->task);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
  free(f);
}

const concur_objtype concur_future_type = { "concur.Future", future_destroy, NULL };

concur_future *concur_future_new (const concur_future_ops *ops, void *owner) {
  concur_future *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  concur_obj_init(&f->obj, &concur_future_type);
  pthread_mutex_init(&f->mu, NULL);
  concur_cond_init(&f->cv, 0);
  f->state = CONCUR_F_PENDING;
  atomic_init(&f->cancel_req, 0);
  f->ops = ops;
  f->owner = owner;
  f->timeout = -1;
  f->deadline = CONCUR_NODEADLINE;
  return f;
}

int concur_future_start (concur_future *f, void *worker) {
  int ok;
  pthread_mutex_lock(&f->mu);
  ok = (f->state == CONCUR_F_PENDING);
  if (ok) {
    f->state = CONCUR_F_RUNNING;
    f->worker = worker;
  }
  pthread_mutex_unlock(&f->mu);
  return ok;
}

int concur_future_unstart (concur_future *f) {
  int ok;
  pthread_mutex_lock(&f->mu);
  ok = f->state == CONCUR_F_RUNNING && !atomic_load(&f->cancel_req);
  if (ok) {
    f->state = CONCUR_F_PENDING;
    f->worker = NULL;
  }
  pthread_mutex_unlock(&f->mu);
  return ok;
}

/* Wakes every waiter; f->mu held. */
static void notify_done (concur_future *f) {
  pthread_cond_broadcast(&f->cv);
  for (concur_wnode *w = f->waiters; w; w = w->next) {
    concur_waitset *ws = w->ws;
    pthread_mutex_lock(&ws->mu);
    ws->ring[ws->tail++ % ws->n] = w->index;
    pthread_cond_signal(&ws->cv);
    if (ws->cb) ws->cb(ws->cbud, w->index);
    pthread_mutex_unlock(&ws->mu);
  }
}

/* finish and fail; 'force': a cancel request does not win */
static int complete (concur_future *f, int failed, concur_buf *out,
                     int force) {
  int st;
  concur_buf old = CONCUR_BUF_INIT;
  pthread_mutex_lock(&f->mu);
  st = f->state;
  if (st == CONCUR_F_PENDING || st == CONCUR_F_RUNNING) {
    if (!force && atomic_load(&f->cancel_req))
      st = CONCUR_F_CANCELLED;
    else {
      st = failed ? CONCUR_F_FAILED : CONCUR_F_FINISHED;
      concur_buf_move(&f->out, out);
    }
    f->state = st;
    if (f->ops && f->ops->finished) f->ops->finished(f, st);
    f->worker = NULL;
    notify_done(f);
  }
  pthread_mutex_unlock(&f->mu);
  if (out->data || out->objs) {     /* not taken: drop it outside the lock */
    concur_buf_move(&old, out);
    concur_buf_free(&old);
  }
  return st;
}

int concur_future_finish (concur_future *f, int failed, concur_buf *out) {
  return complete(f, failed, out, 0);
}

int concur_future_fail (concur_future *f, concur_buf *out) {
  return complete(f, 1, out, 1);
}

int concur_future_cancel (concur_future *f) {
  int st, dropped = 0;
  pthread_mutex_lock(&f->mu);
  st = f->state;
  if (st == CONCUR_F_PENDING) {
    f->state = CONCUR_F_CANCELLED;
    notify_done(f);
    dropped = 1;
  }
  else if (st == CONCUR_F_RUNNING) {
    atomic_store(&f->cancel_req, 1);
    if (f->ops && f->ops->interrupt) f->ops->interrupt(f);
  }
  pthread_mutex_unlock(&f->mu);
  if (dropped && f->ops && f->ops->dropped) f->ops->dropped(f);
  return st == CONCUR_F_PENDING || st == CONCUR_F_RUNNING ||
         st == CONCUR_F_CANCELLED;
}

int concur_future_state (concur_future *f) {
  int st;
  pthread_mutex_lock(&f->mu);
  st = f->state;
  pthread_mutex_unlock(&f->mu);
  return st;
}

int concur_future_done (concur_future *f) {
  return concur_future_state(f) >= CONCUR_F_FINISHED;
}

int concur_future_wait (concur_future *f, double deadline) {
  int rc = CONCUR_OK;
  pthread_mutex_lock(&f->mu);
  while (f->state < CONCUR_F_FINISHED) {
    rc = concur_cond_wait(&f->cv, &f->mu, deadline);
    if (rc != CONCUR_OK) break;
  }
  if (f->state >= CONCUR_F_FINISHED) rc = CONCUR_OK;
  pthread_mutex_unlock(&f->mu);
  return rc;
}

/* ---- waitsets ------------------------------------------------------------- */

concur_waitset *concur_waitset_new (concur_future **fs, size_t n) {
  return concur_waitset_newcb(fs, n, NULL, NULL);
}

concur_waitset *concur_waitset_newcb (concur_future **fs, size_t n,
                                      void (*cb) (void *ud, size_t index), void *ud) {
  concur_waitset *ws = calloc(1, sizeof *ws);
  if (ws == NULL) return NULL;
  ws->n = n ? n : 1;
  ws->ring = malloc(ws->n * sizeof *ws->ring);
  ws->fs = malloc(ws->n * sizeof *ws->fs);
  ws->nodes = calloc(ws->n, sizeof *ws->nodes);
  if (!ws->ring || !ws->fs || !ws->nodes) {
    free(ws->ring); free(ws->fs); free(ws->nodes); free(ws);
    return NULL;
  }
  ws->n = n;
  ws->cb = cb;
  ws->cbud = ud;
  pthread_mutex_init(&ws->mu, NULL);
  concur_cond_init(&ws->cv, 0);
  for (size_t i = 0; i < n; i++) {
    concur_future *f = fs[i];
    concur_wnode *w = &ws->nodes[i];
    ws->fs[i] = f;
    concur_obj_ref(&f->obj);
    w->ws = ws;
    w->index = i;
    pthread_mutex_lock(&f->mu);
    if (f->state >= CONCUR_F_FINISHED) {   /* already done: queue it now */
      /* NOTE: under the set's lock: a future registered before this one
      ** may be completing right now and appending to the same ring */
      w->ws = NULL;
      pthread_mutex_lock(&ws->mu);
      ws->ring[ws->tail++] = i;
      if (cb) cb(ud, i);
      pthread_mutex_unlock(&ws->mu);
    }
    else {
      w->next = f->waiters;
      if (f->waiters) f->waiters->prev = w;
      f->waiters = w;
    }
    pthread_mutex_unlock(&f->mu);
  }
  return ws;
}

long concur_waitset_next (concur_waitset *ws, double deadline) {
  long r;
  if (ws->returned == ws->n) return -1;
  pthread_mutex_lock(&ws->mu);
  while (ws->head == ws->tail) {
    int rc = concur_cond_wait(&ws->cv, &ws->mu, deadline);
    if (rc != CONCUR_OK && ws->head == ws->tail) {
      pthread_mutex_unlock(&ws->mu);
      return -2 - rc;
    }
  }
  r = (long)ws->ring[ws->head++ % ws->n];
  ws->returned++;
  pthread_mutex_unlock(&ws->mu);
  return r;
}

void concur_waitset_free (concur_waitset *ws) {
  if (ws == NULL) return;
  for (size_t i = 0; i < ws->n; i++) {
    concur_future *f = ws->fs[i];
    concur_wnode *w = &ws->nodes[i];
    if (w->ws) {
      pthread_mutex_lock(&f->mu);
      if (w->prev) w->prev->next = w->next;
      else f->waiters = w->next;
      if (w->next) w->next->prev = w->prev;
      pthread_mutex_unlock(&f->mu);
    }
    concur_obj_unref(&f->obj);
  }
  pthread_mutex_destroy(&ws->mu);
  pthread_cond_destroy(&ws->cv);
  free(ws->ring); free(ws->fs); free(ws->nodes);
  free(ws);
}
