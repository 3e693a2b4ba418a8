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
** Items are packed into arena blocks (pack) before the mutex is taken and
** unpacked after it is dropped, so the mutex covers only the array moves.
**
** Invariants: count == store.n; unfinished >= count; a closed queue stays
** closed; each object reference in an item is owned by exactly one holder.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "queue.h"
#include "shm.h"
#include "sync.h"

#define SPIN_SECONDS 50e-6   /* longest busy wait before sleeping */

/* ---- items ----------------------------------------------------------------
** An item block: this header, nobjs references, then len codec bytes. A
** reference is an exported shared object (id > 0), or (id 0) a pointer to
** an object of process 'pid' holding one in-process reference (in 'off').
*/

typedef struct qblock {
  uint64_t len;
  uint32_t nobjs;
  int32_t pid;               /* whose pointers the references hold, or 0 */
} qblock;

static concur_shref *block_refs (qblock *b) {
  return (concur_shref *)(b + 1);
}

/* Packs *item (emptied) into a new block; its offset, or 0 when the arena
** is full (*item is then left as it was). 'share': the queue is shared with
** other processes, so its objects are readied to cross (a failure shows as
** a block with a pid, which put refuses). */
static concur_shoff pack (concur_buf *item, int share) {
  concur_shoff off;
  qblock *b = concur_shm_alloc(sizeof *b + item->nobjs * sizeof(concur_shref)
                               + item->len, &off);
  concur_shref *r;
  if (b == NULL) return 0;
  b->len = item->len;
  b->nobjs = (uint32_t)item->nobjs;
  b->pid = 0;
  r = block_refs(b);
  for (size_t i = 0; i < item->nobjs; i++) {
    concur_obj *o = item->objs[i];
    char err[8];
    if (concur_shclass_of(o->type)
        && (!share || concur_shobj_share(o, err, sizeof err) == 0)) {
      concur_shobj_export(o, &r[i]);
      concur_obj_unref(o);
    }
    else {                   /* the block takes the item's reference */
      r[i].id = 0;
      r[i].pad = 0;
      r[i].off = (uint64_t)(uintptr_t)o;
      b->pid = concur_sync_pid();
    }
    item->objs[i] = NULL;
  }
  if (item->len) memcpy(r + b->nobjs, item->data, item->len);
  concur_buf_free(item);
  return off;
}

/* Drops what the block at off holds, and the block. */
static void block_free (concur_shoff off) {
  qblock *b = concur_shm_ptr(off);
  concur_shref *r = block_refs(b);
  int mine = b->pid == concur_sync_pid();
  for (uint32_t i = 0; i < b->nobjs; i++) {
    if (r[i].id)
      concur_shref_drop(&r[i]);
    else if (mine)
      concur_obj_unref((concur_obj *)(uintptr_t)r[i].off);
    /* NOTE: else it leaks: it lives in another process's memory */
  }
  concur_shm_free(off);
}

/* Unpacks the block at off into *out (empty) and frees the block. Returns
** CONCUR_OK, CONCUR_QFOREIGN (another process's objects) or CONCUR_QNOMEM;
** on failure the item is dropped. */
static int unpack (concur_shoff off, concur_buf *out) {
  qblock *b = concur_shm_ptr(off);
  concur_shref *r = block_refs(b);
  if (b->pid != 0 && b->pid != concur_sync_pid()) {
    block_free(off);
    return CONCUR_QFOREIGN;
  }
  if (concur_buf_write(out, r + b->nobjs, b->len) != 0) goto nomem;
  for (uint32_t i = 0; i < b->nobjs; i++) {
    concur_obj *o;
    if (r[i].id) {
      o = concur_shobj_import(&r[i]);   /* adopts the block's reference */
      r[i].id = 0;
      r[i].off = 0;
      if (o == NULL) goto nomem;
    }
    else {
      o = (concur_obj *)(uintptr_t)r[i].off;
      r[i].off = 0;
    }
    if (o && concur_buf_addobj(out, o) != 0) {
      concur_obj_unref(o);
      goto nomem;
    }
    if (o) concur_obj_unref(o);     /* addobj took its own */
  }
  concur_shm_free(off);
  return CONCUR_OK;
nomem:
  b->pid = concur_sync_pid();       /* what is left is ours to drop */
  block_free(off);
  concur_buf_free(out);
  return CONCUR_QNOMEM;
}

/* ---- the item store -------------------------------------------------------
** The one place that knows how items are kept: a growable array used as a
** ring (FIFO pops at head, LIFO at the tail) or as a binary heap.
*/

static void store_init (concur_qstore *s, int order) {
  s->items = 0;
  s->cap = s->head = s->n = 0;
  s->order = order;
}

static concur_qitem *store_items (concur_qstore *s) {
  return concur_shm_ptr(s->items);
}

static concur_qitem *store_at (concur_qstore *s, size_t i) {
  concur_qitem *items = store_items(s);
  if (s->order == CONCUR_PRIORITY) return &items[i];
  return &items[(s->head + i) & (s->cap - 1)];   /* cap: a power of 2 */
}

static void store_free (concur_qstore *s) {
  for (size_t i = 0; i < s->n; i++)
    if (store_at(s, i)->block) block_free(store_at(s, i)->block);
  if (s->items) concur_shm_free(s->items);
  store_init(s, s->order);
}

/* Moves the items to an array of ncap (>= n, a power of 2), unrolling the
** ring to start at 0; -1 when out of memory (nothing changed). */
static int store_resize (concur_qstore *s, size_t ncap) {
  concur_qitem *ni;
  concur_shoff noff;
  if (ncap > SIZE_MAX / sizeof *ni) return -1;
  ni = concur_shm_alloc(ncap * sizeof *ni, &noff);
  if (ni == NULL) return -1;
  for (size_t i = 0; i < s->n; i++) ni[i] = *store_at(s, i);
  if (s->items) concur_shm_free(s->items);
  s->items = noff;
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
  if (s->order == CONCUR_PRIORITY) heap_up(store_items(s), s->n - 1);
  return 0;
}

/* Moves the next item out into *it; the store is not empty. */
static void store_pop (concur_qstore *s, concur_qitem *it) {
  concur_qitem *items = store_items(s);
  s->n--;
  switch (s->order) {
    case CONCUR_FIFO:
      *it = items[s->head];
      s->head = (s->head + 1) & (s->cap - 1);
      break;
    case CONCUR_LIFO:
      *it = *store_at(s, s->n);
      break;
    default:
      *it = items[0];
      if (s->n) {
        items[0] = items[s->n];
        heap_down(items, s->n, 0);
      }
  }
  /* give memory back after a burst: halve when a quarter full (a failed
  ** shrink just keeps the larger array) */
  if (s->cap > 64 && s->n < s->cap / 4) store_resize(s, s->cap / 2);
}

/* ---- the queue --------------------------------------------------------- */

int concur_queue_init (concur_queue *q, int order, size_t maxsize) {
  memset(q, 0, sizeof *q);
  if (concur_mutex_init(&q->mu, 1)) return -1;
  concur_fcond_init(&q->notempty);
  concur_fcond_init(&q->notfull);
  concur_fcond_init(&q->alldone);
  q->maxsize = maxsize;
  atomic_init(&q->count, 0);
  atomic_init(&q->closed, 0);
  store_init(&q->store, order);
  return 0;
}

/* NOTE: the process-shared mutex is not destroyed (see core/sync.c) */
void concur_queue_destroy (concur_queue *q) {
  store_free(&q->store);
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
  int small = item->nobjs == 0 && item->len <= CONCUR_QINLINE;
  memset(&it, 0, sizeof it);   /* every byte that goes to the arena is set */
  concur_shoff block = small ? 0 : pack(item, atomic_load(&q->xproc));
  if (!small && block == 0) {
    concur_buf_free(item);
    return CONCUR_QNOMEM;
  }
  concur_sync_lockmu(&q->mu);
  if (block && atomic_load(&q->xproc)
      && ((qblock *)concur_shm_ptr(block))->pid != 0) {
    pthread_mutex_unlock(&q->mu);
    block_free(block);
    return CONCUR_QLOCAL;
  }
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
    rc = concur_fcond_wait(&q->notfull, &q->mu, deadline);
    q->putters--;
    if (rc != CONCUR_OK) break;
  }
  if (q->closed) rc = CONCUR_QCLOSED;
  else if (rc != CONCUR_OK && !isfull(q)) rc = CONCUR_OK;  /* just in time */
  if (rc == CONCUR_OK) {
    it.block = block;
    it.prio = prio;
    it.seq = q->seq;
    it.len = small ? (uint32_t)item->len : 0;
    if (small && item->len) memcpy(it.data, item->data, item->len);
    if (store_push(&q->store, &it)) rc = CONCUR_QNOMEM;
    else {
      block = 0;
      q->seq++;
      q->unfinished++;
      atomic_store_explicit(&q->count, q->store.n, memory_order_relaxed);
      if (q->getters) concur_fcond_signal(&q->notempty);
    }
  }
  pthread_mutex_unlock(&q->mu);
  if (block) block_free(block);
  if (small) concur_buf_free(item);
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
    rc = concur_fcond_wait(&q->notempty, &q->mu, deadline);
    q->getters--;
    if (rc != CONCUR_OK) break;
  }
  int got = 0;
  it.block = 0;
  if (q->store.n > 0) {   /* drains a closed queue; takes a just-in-time item */
    store_pop(&q->store, &it);
    got = 1;
    atomic_store_explicit(&q->count, q->store.n, memory_order_relaxed);
    if (q->putters) concur_fcond_signal(&q->notfull);
    rc = CONCUR_OK;
  }
  else if (rc == CONCUR_OK)
    rc = CONCUR_QCLOSED;
  pthread_mutex_unlock(&q->mu);
  if (it.block) rc = unpack(it.block, out);
  else if (got && concur_buf_write(out, it.data, it.len) != 0) rc = CONCUR_QNOMEM;
  return rc;
}

int concur_queue_share (concur_queue *q, char *err, size_t errsize) {
  concur_shref *inner = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  if (atomic_load(&q->xproc)) return 0;
  concur_sync_lockmu(&q->mu);
  for (size_t i = 0; i < q->store.n && rc == 0; i++) {
    qblock *b;
    concur_shref *r;
    if (store_at(&q->store, i)->block == 0) continue;   /* inline: no objects */
    b = concur_shm_ptr(store_at(&q->store, i)->block);
    r = block_refs(b);
    if (b->pid != 0) {
      snprintf(err, errsize, "a Queue holding an object that cannot leave "
               "this process (a Future, a fetch Client...) cannot be sent to "
               "another process");
      rc = -1;
    }
    for (uint32_t k = 0; k < b->nobjs && rc == 0; k++) {
      if (r[k].id != CONCUR_SH_QUEUE) continue;
      if (n == cap) {
        concur_shref *ni = realloc(inner, (cap = cap ? 2 * cap : 8) * sizeof *ni);
        if (ni == NULL) {
          snprintf(err, errsize, "not enough memory");
          rc = -1;
          break;
        }
        inner = ni;
      }
      inner[n] = r[k];
      concur_shref_dup(&inner[n++]);
    }
  }
  if (rc == 0) atomic_store(&q->xproc, 1);   /* before the inner ones: a
                                             ** cycle of queues ends here */
  pthread_mutex_unlock(&q->mu);
  for (size_t i = 0; i < n; i++) {
    if (rc == 0) rc = concur_shref_share(&inner[i], err, errsize);
    concur_shref_drop(&inner[i]);
  }
  free(inner);
  return rc;
}

void concur_queue_close (concur_queue *q) {
  concur_sync_lockmu(&q->mu);
  atomic_store(&q->closed, 1);
  concur_fcond_broadcast(&q->notempty);
  concur_fcond_broadcast(&q->notfull);
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
    concur_fcond_broadcast(&q->alldone);
  pthread_mutex_unlock(&q->mu);
  return rc;
}

int concur_queue_join (concur_queue *q, double deadline) {
  int rc = CONCUR_OK;
  concur_sync_lockmu(&q->mu);
  while (q->unfinished > 0) {
    q->joiners++;
    rc = concur_fcond_wait(&q->alldone, &q->mu, deadline);
    q->joiners--;
    if (rc != CONCUR_OK) {
      if (q->unfinished == 0) rc = CONCUR_OK;
      break;
    }
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}
