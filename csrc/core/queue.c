/*
** queue.c: the queue of queue.h.
**
** One mutex guards everything; three conditions wait on it: 'notempty'
** (getters), 'notfull' (putters of a bounded queue) and 'alldone' (join).
** Each is signalled only when its sleeper count says someone sleeps, so a
** producer and a consumer that keep up with each other make no syscalls.
** Before sleeping, a getter (or a putter on a full queue) spins for a few
** microseconds on the atomic item count, outside the mutex: a handover
** between two running threads is far cheaper than a futex sleep and wake.
**
** Invariants: count == store.n; unfinished >= count; a closed queue stays
** closed; items are only ever moved (buffers are never copied), so each
** object reference in an item is owned by exactly one holder.
*/
#include <stdlib.h>
#include <string.h>
#include "queue.h"
#include "sync.h"

#define SPIN_SECONDS 50e-6   /* longest busy wait before sleeping */

/* ---- the item store -------------------------------------------------------
** The one place that knows how items are kept: a growable array used as a
** ring (FIFO pops at head, LIFO at the tail) or as a binary heap.
*/

static void store_init (concur_qstore *s, int order) {
  s->items = NULL;
  s->cap = s->head = s->n = 0;
  s->order = order;
}

static concur_qitem *store_at (concur_qstore *s, size_t i) {
  if (s->order == CONCUR_PRIORITY) return &s->items[i];
  return &s->items[(s->head + i) & (s->cap - 1)];   /* cap: a power of 2 */
}

static void store_free (concur_qstore *s) {
  for (size_t i = 0; i < s->n; i++) concur_buf_free(&store_at(s, i)->buf);
  free(s->items);
  store_init(s, s->order);
}

/* Moves the items to an array of ncap (>= n, a power of 2), unrolling the
** ring to start at 0; -1 when out of memory (nothing changed). */
static int store_resize (concur_qstore *s, size_t ncap) {
  concur_qitem *ni;
  if (ncap > SIZE_MAX / sizeof *ni) return -1;
  ni = malloc(ncap * sizeof *ni);
  if (ni == NULL) return -1;
  for (size_t i = 0; i < s->n; i++) ni[i] = *store_at(s, i);
  free(s->items);
  s->items = ni;
  s->cap = ncap;
  s->head = 0;
  return 0;
}

static int heap_less (const concur_qitem *a, const concur_qitem *b) {
  return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

static void heap_up (concur_qitem *h, size_t i) {
  concur_qitem x = h[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(&x, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static void heap_down (concur_qitem *h, size_t n, size_t i) {
  concur_qitem x = h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_less(&h[c + 1], &h[c])) c++;
    if (!heap_less(&h[c], &x)) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

/* Moves *it into the store; 0, or -1 when out of memory (*it untouched). */
static int store_push (concur_qstore *s, concur_qitem *it) {
  if (s->n == s->cap && store_resize(s, s->cap ? s->cap * 2 : 16)) return -1;
  *store_at(s, s->n) = *it;
  s->n++;
  if (s->order == CONCUR_PRIORITY) heap_up(s->items, s->n - 1);
  return 0;
}

/* Moves the next item out into *it; the store is not empty. */
static void store_pop (concur_qstore *s, concur_qitem *it) {
  s->n--;
  switch (s->order) {
    case CONCUR_FIFO:
      *it = s->items[s->head];
      s->head = (s->head + 1) & (s->cap - 1);
      break;
    case CONCUR_LIFO:
      *it = *store_at(s, s->n);
      break;
    default:
      *it = s->items[0];
      if (s->n) {
        s->items[0] = s->items[s->n];
        heap_down(s->items, s->n, 0);
      }
  }
  /* give memory back after a burst: halve when a quarter full (a failed
  ** shrink just keeps the larger array) */
  if (s->cap > 64 && s->n < s->cap / 4) store_resize(s, s->cap / 2);
}

/* ---- the queue --------------------------------------------------------- */

int concur_queue_init (concur_queue *q, int order, size_t maxsize) {
  memset(q, 0, sizeof *q);
  if (concur_mutex_init(&q->mu, 0)) return -1;
  if (concur_cond_init(&q->notempty, 0)) goto e1;
  if (concur_cond_init(&q->notfull, 0)) goto e2;
  if (concur_cond_init(&q->alldone, 0)) goto e3;
  q->maxsize = maxsize;
  atomic_init(&q->count, 0);
  atomic_init(&q->closed, 0);
  store_init(&q->store, order);
  return 0;
e3: pthread_cond_destroy(&q->notfull);
e2: pthread_cond_destroy(&q->notempty);
e1: pthread_mutex_destroy(&q->mu);
  return -1;
}

void concur_queue_destroy (concur_queue *q) {
  store_free(&q->store);
  pthread_cond_destroy(&q->alldone);
  pthread_cond_destroy(&q->notfull);
  pthread_cond_destroy(&q->notempty);
  pthread_mutex_destroy(&q->mu);
}

static int isfull (concur_queue *q) {
  return q->maxsize && q->store.n >= q->maxsize;
}

/*
** Spins outside the mutex until the count leaves 'busy' (the empty count 0
** for a getter, maxsize for a putter), the queue closes, or SPIN_SECONDS
** pass. Called and returns with q->mu held. A hint only: the caller checks
** again under the mutex.
*/
static void spin (concur_queue *q, size_t busy, double deadline) {
  double until = concur_now() + SPIN_SECONDS;
  if (deadline >= 0 && deadline < until) until = deadline;
  pthread_mutex_unlock(&q->mu);
  for (int i = 1; ; i++) {
    size_t n = atomic_load_explicit(&q->count, memory_order_relaxed);
    if ((busy == 0 ? n != 0 : n < busy)
        || atomic_load_explicit(&q->closed, memory_order_relaxed))
      break;
    concur_sync_pause();
    if ((i & 31) == 0 && concur_now() >= until) break;
  }
  concur_sync_lockmu(&q->mu);
}

int concur_queue_put (concur_queue *q, concur_buf *item, double prio,
                      double deadline) {
  int rc = CONCUR_OK, spun = 0;
  concur_qitem it;
  concur_sync_lockmu(&q->mu);
  while (!q->closed && isfull(q)) {
    if (deadline >= 0 && concur_now() >= deadline) {
      rc = CONCUR_TIMEDOUT;
      break;
    }
    if (!spun && concur_sync_canspin()) {
      spun = 1;
      spin(q, q->maxsize, deadline);
      continue;
    }
    q->putters++;
    rc = concur_cond_wait(&q->notfull, &q->mu, deadline);
    q->putters--;
    if (rc != CONCUR_OK) break;
  }
  if (q->closed) rc = CONCUR_QCLOSED;
  else if (rc != CONCUR_OK && !isfull(q)) rc = CONCUR_OK;  /* just in time */
  if (rc == CONCUR_OK) {
    it.buf = *item;
    it.prio = prio;
    it.seq = q->seq;
    if (store_push(&q->store, &it)) rc = CONCUR_QNOMEM;
    else {
      memset(item, 0, sizeof *item);
      q->seq++;
      q->unfinished++;
      atomic_store_explicit(&q->count, q->store.n, memory_order_relaxed);
      if (q->getters) pthread_cond_signal(&q->notempty);
    }
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

int concur_queue_get (concur_queue *q, concur_buf *out, double deadline) {
  int rc = CONCUR_OK, spun = 0;
  concur_qitem it;
  concur_sync_lockmu(&q->mu);
  while (q->store.n == 0 && !q->closed) {
    if (deadline >= 0 && concur_now() >= deadline) {
      rc = CONCUR_TIMEDOUT;
      break;
    }
    if (!spun && concur_sync_canspin()) {
      spun = 1;
      spin(q, 0, deadline);
      continue;
    }
    q->getters++;
    rc = concur_cond_wait(&q->notempty, &q->mu, deadline);
    q->getters--;
    if (rc != CONCUR_OK) break;
  }
  if (q->store.n > 0) {   /* drains a closed queue; takes a just-in-time item */
    store_pop(&q->store, &it);
    *out = it.buf;
    atomic_store_explicit(&q->count, q->store.n, memory_order_relaxed);
    if (q->putters) pthread_cond_signal(&q->notfull);
    rc = CONCUR_OK;
  }
  else if (rc == CONCUR_OK)
    rc = CONCUR_QCLOSED;
  pthread_mutex_unlock(&q->mu);
  return rc;
}

void concur_queue_close (concur_queue *q) {
  concur_sync_lockmu(&q->mu);
  atomic_store(&q->closed, 1);
  pthread_cond_broadcast(&q->notempty);
  pthread_cond_broadcast(&q->notfull);
  pthread_mutex_unlock(&q->mu);
}

int concur_queue_isclosed (concur_queue *q) {
  return atomic_load(&q->closed);
}

size_t concur_queue_size (concur_queue *q) {
  return atomic_load(&q->count);
}

int concur_queue_full (concur_queue *q) {
  return q->maxsize && atomic_load(&q->count) >= q->maxsize;
}

int concur_queue_taskdone (concur_queue *q) {
  int rc = 0;
  concur_sync_lockmu(&q->mu);
  if (q->unfinished == 0) rc = -1;
  else if (--q->unfinished == 0 && q->joiners)
    pthread_cond_broadcast(&q->alldone);
  pthread_mutex_unlock(&q->mu);
  return rc;
}

int concur_queue_join (concur_queue *q, double deadline) {
  int rc = CONCUR_OK;
  concur_sync_lockmu(&q->mu);
  while (q->unfinished > 0) {
    q->joiners++;
    rc = concur_cond_wait(&q->alldone, &q->mu, deadline);
    q->joiners--;
    if (rc != CONCUR_OK) {
      if (q->unfinished == 0) rc = CONCUR_OK;
      break;
    }
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}
