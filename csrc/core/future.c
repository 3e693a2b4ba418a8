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

typedef struct wsnode {
  concur_wnode w;              /* first: a concur_wnode * is a wsnode * */
  concur_waitset *ws;
  size_t index;
} wsnode;

struct concur_waitset {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n, head, tail;        /* ring of completed indices, under mu */
  size_t *ring;
  size_t returned;
  concur_future **fs;          /* one reference each */
  wsnode *nodes;
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

/* Wakes every waiter, unlinking each node before it fires (a fired node
** may be freed by its owner at once); f->mu held. The nodes marked 'first'
** fire before the others: a thread that a waitset wakes (it needs only the
** set's lock, not f->mu) then finds what they did (a state's hub holds the
** future's token, so the on_done callbacks it runs next include f's). */
static void notify_done (concur_future *f) {
  concur_wnode *w = f->waiters, *rest = NULL, *next;
  f->waiters = NULL;
  pthread_cond_broadcast(&f->cv);
  for (; w; w = next) {
    next = w->next;
    w->prev = w->next = NULL;
    w->linked = 0;
    if (w->first) w->fire(w);
    else {
      w->next = rest;
      rest = w;
    }
  }
  for (w = rest; w; w = next) {
    next = w->next;
    w->next = NULL;
    w->fire(w);
  }
}

int concur_future_addwaiter (concur_future *f, concur_wnode *w) {
  int ok;
  pthread_mutex_lock(&f->mu);
  ok = f->state < CONCUR_F_FINISHED;
  if (ok) {
    w->prev = NULL;
    w->next = f->waiters;
    if (f->waiters) f->waiters->prev = w;
    f->waiters = w;
    w->linked = 1;
  }
  pthread_mutex_unlock(&f->mu);
  return ok;
}

int concur_future_delwaiter (concur_future *f, concur_wnode *w) {
  int was;
  pthread_mutex_lock(&f->mu);
  was = w->linked;
  if (was) {
    if (w->prev) w->prev->next = w->next;
    else f->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->linked = 0;
  }
  pthread_mutex_unlock(&f->mu);
  return was;
}

/* A waitset's node fires: the index goes to the set's ring. */
static void wsnode_fire (concur_wnode *w) {
  wsnode *n = (wsnode *)w;
  concur_waitset *ws = n->ws;
  pthread_mutex_lock(&ws->mu);
  ws->ring[ws->tail++ % ws->n] = n->index;
  pthread_cond_signal(&ws->cv);
  if (ws->cb) ws->cb(ws->cbud, n->index);
  pthread_mutex_unlock(&ws->mu);
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
    wsnode *w = &ws->nodes[i];
    ws->fs[i] = f;
    concur_obj_ref(&f->obj);
    w->ws = ws;
    w->index = i;
    w->w.fire = wsnode_fire;
    if (!concur_future_addwaiter(f, &w->w)) {   /* already done: queue it now */
      /* NOTE: under the set's lock: a future registered before this one
      ** may be completing right now and appending to the same ring */
      pthread_mutex_lock(&ws->mu);
      ws->ring[ws->tail++] = i;
      if (cb) cb(ud, i);
      pthread_mutex_unlock(&ws->mu);
    }
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
    concur_future_delwaiter(f, &ws->nodes[i].w);
    concur_obj_unref(&f->obj);
  }
  pthread_mutex_destroy(&ws->mu);
  pthread_cond_destroy(&ws->cv);
  free(ws->ring); free(ws->fs); free(ws->nodes);
  free(ws);
}
