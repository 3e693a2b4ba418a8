/*
** queue.c: the queue of queue.h.
**
** Two stores. A FIFO queue that has never crossed to another process keeps
** its items in 'local' (qlocal.c: in-process memory, one mutex per side);
** every other queue keeps them in the shared store here: an array in the
** arena, guarded by 'mu', with three waits on it: 'notempty' (getters),
** 'notfull' (putters of a bounded queue) and 'donegen' (join). Each is
** signalled only when a sleeper count says someone sleeps, so a producer
** and a consumer that keep up with each other make no syscalls. Before
** sleeping, a getter (or a putter on a full queue) spins for a few
** microseconds on the atomic item count, outside the mutex: a handover
** between two running threads is far cheaper than a futex sleep and wake.
**
** The first time a FIFO queue is readied to cross (concur_queue_share), its
** local items move to the shared store, in order, with their positions as
** sequence numbers; 'fast' is cleared and 'local' frozen, which sends every
** thread inside or asleep in it to the shared store (qlocal.h). What the two
** stores share needs no moving: 'closed' is set in both by close, and
** 'unfinished' counts the items of both (it is counted before an item can
** be taken, so task_done never sees it short).
**
** Shared items are packed into arena blocks (shbuf.h) before the mutex is
** taken and copied out after it is dropped, so the mutex covers only the
** array moves. A get takes the item out of either store but keeps it whole
** until its caller has decoded it: then it commits (the item is freed), or,
** when it cannot be decoded here, puts it back where it was (its sequence
** number or position says where), so no consumer's failure loses an item.
**
** Invariants: count == store.n; unfinished >= the items in the queue; a
** closed queue stays closed; each object reference in an item is owned by
** exactly one holder.
*/
#define _GNU_SOURCE   /* PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "queue.h"
#include "shbuf.h"
#include "sync.h"

#define SPIN_SECONDS 50e-6   /* longest busy wait before sleeping */
#define SPIN_BATCH 8         /* pauses between looks while spinning */

/* ---- items ----------------------------------------------------------------
** An item of the shared store that holds objects, or more than
** CONCUR_QINLINE bytes, is an shbuf block (shbuf.h): its bytes and its
** objects' references, in the arena. Only the process that put an item
** holding in-process objects can take it (the block is local).
*/

/* Copies the item in the block at off into *out (empty), with references
** of its own: the block is left as it was. Returns CONCUR_OK,
** CONCUR_QFOREIGN (another process's objects) or CONCUR_QNOMEM (*out is
** then left empty). */
static int copyout (concur_shoff off, concur_buf *out) {
  int rc = concur_shbuf_copyout(off, out);
  if (rc == 0) return CONCUR_OK;
  return rc == CONCUR_SHB_FOREIGN ? CONCUR_QFOREIGN : CONCUR_QNOMEM;
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
    if (store_at(s, i)->block) concur_shbuf_free(store_at(s, i)->block);
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

/* Puts back *it, an item taken from the store, where it was: the heap
** orders by (prio, seq); the ring holds items in put order (ascending seq),
** so it goes after the items put before it. 0, or -1 when out of memory. */
static int store_putback (concur_qstore *s, concur_qitem *it) {
  size_t k;
  if (s->order == CONCUR_PRIORITY) return store_push(s, it);
  if (s->n == s->cap && store_resize(s, s->cap ? s->cap * 2 : 16)) return -1;
  if (s->order == CONCUR_FIFO)          /* it was taken from the front */
    for (k = 0; k < s->n && store_at(s, k)->seq < it->seq; k++) ;
  else                                  /* ... from the back */
    for (k = s->n; k > 0 && store_at(s, k - 1)->seq > it->seq; k--) ;
  if (k < s->n - k) {          /* fewer before it: move those one down */
    s->head = (s->head - 1) & (s->cap - 1);
    for (size_t i = 0; i < k; i++) *store_at(s, i) = *store_at(s, i + 1);
  }
  else
    for (size_t i = s->n; i > k; i--) *store_at(s, i) = *store_at(s, i - 1);
  *store_at(s, k) = *it;
  s->n++;
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

/* ---- the shared store's queue ------------------------------------------- */

int concur_queue_init (concur_queue *q, int order, size_t maxsize) {
  memset(q, 0, sizeof *q);
  if (concur_mutex_init(&q->mu, 1)) return -1;
  concur_qlocal_init(&q->local, maxsize);
  concur_fcond_init(&q->notempty);
  concur_fcond_init(&q->notfull);
  q->maxsize = maxsize;
  atomic_init(&q->count, 0);
  atomic_init(&q->closed, 0);
  atomic_init(&q->unfinished, 0);
  atomic_init(&q->fast, order == CONCUR_FIFO);
  store_init(&q->store, order);
  return 0;
}

/* NOTE: the process-shared mutex is not destroyed (see core/sync.c) */
void concur_queue_destroy (concur_queue *q) {
  store_free(&q->store);
  concur_qlocal_destroy(&q->local);   /* a frozen one holds nothing */
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
typedef struct spinning {
  concur_queue *q;
  size_t busy;
} spinning;

/* Has the count left 'busy', or the queue closed? A putter waits for room
** for a run of items (qlocal.c's putter_roomy says why). */
static int moved (void *ud) {
  spinning *sp = ud;
  size_t n = atomic_load_explicit(&sp->q->count, memory_order_relaxed);
  return (sp->busy == 0 ? n != 0 : n + sp->q->local.spinroom <= sp->busy)
         || atomic_load_explicit(&sp->q->closed, memory_order_relaxed);
}

static void spin (concur_queue *q, size_t busy, double deadline) {
  spinning sp = { q, busy };
  double until = concur_now() + SPIN_SECONDS;
  if (deadline >= 0 && deadline < until) until = deadline;
  pthread_mutex_unlock(&q->mu);
  /* a look every few pauses: each pulls the count's line from the holder */
  for (int i = 1; !moved(&sp); i++) {
    for (int k = 0; k < SPIN_BATCH; k++) concur_cpu_pause();
    if ((i & 7) == 0 && concur_now() >= until) break;
  }
  concur_mutex_lock(&q->mu);
}

/* Whether the deadline has passed (0.0: at once, without a clock read). */
static int passed (double deadline) {
  return deadline == 0.0 || (deadline >= 0 && concur_now() >= deadline);
}

/* put into the shared store: the item is *item (packed: a copy) when it
** has objects or is larger than CONCUR_QINLINE, else the bytes p, len. */
static int store_put (concur_queue *q, const concur_buf *item, const char *p,
                      size_t len, double prio, double deadline) {
  int rc = CONCUR_OK, spun = 0;
  concur_qitem it;
  concur_shoff block = 0;
  memset(&it, 0, sizeof it);   /* every byte that goes to the arena is set */
  if (item && (block = concur_shbuf_packcopy(item, atomic_load(&q->xproc))) == 0)
    return CONCUR_QNOMEM;
  concur_mutex_lock(&q->mu);
  if (block && atomic_load(&q->xproc) && concur_shbuf_local(block)) {
    pthread_mutex_unlock(&q->mu);
    concur_shbuf_free(block);
    return CONCUR_QLOCAL;
  }
  while (!q->closed && isfull(q)) {
    if (passed(deadline)) {
      rc = CONCUR_TIMEDOUT;
      break;
    }
    if (!spun && concur_can_spin()) {
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
    it.len = block ? 0 : (uint32_t)len;
    if (!block && len) memcpy(it.data, p, len);
    if (store_push(&q->store, &it)) rc = CONCUR_QNOMEM;
    else {
      block = 0;
      q->seq++;
      atomic_fetch_add(&q->unfinished, 1);   /* before anyone can take it */
      atomic_store_explicit(&q->count, q->store.n, memory_order_relaxed);
      if (q->getters) concur_fcond_signal(&q->notempty);
    }
  }
  pthread_mutex_unlock(&q->mu);
  if (block) concur_shbuf_free(block);
  return rc;
}

static int store_get (concur_queue *q, concur_buf *out, double deadline,
                      concur_qtaken *t) {
  int rc = CONCUR_OK, spun = 0, got = 0;
  concur_qitem it;
  concur_mutex_lock(&q->mu);
  while (q->store.n == 0 && !q->closed) {
    if (passed(deadline)) {
      rc = CONCUR_TIMEDOUT;
      break;
    }
    if (!spun && concur_can_spin()) {
      spun = 1;
      spin(q, 0, deadline);
      continue;
    }
    q->getters++;
    rc = concur_fcond_wait(&q->notempty, &q->mu, deadline);
    q->getters--;
    if (rc != CONCUR_OK) break;
  }
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
  if (!got) return rc;
  t->fast = 0;
  t->it = it;
  if (it.block) rc = copyout(it.block, out);
  else if (concur_buf_write(out, it.data, it.len) != 0) rc = CONCUR_QNOMEM;
  if (rc == CONCUR_OK) {
    t->data = out->data;
    t->len = out->len;
    t->objs = out->objs;
    t->nobjs = out->nobjs;
  }
  else if (concur_queue_unget(q, t) != CONCUR_OK)
    rc = CONCUR_QNOMEM;
  return rc;
}

/* Puts back a store item taken by get. */
static int store_unget (concur_queue *q, concur_qitem *it) {
  int rc = CONCUR_OK;
  concur_mutex_lock(&q->mu);
  if (store_putback(&q->store, it)) rc = CONCUR_QNOMEM;
  else {
    atomic_store_explicit(&q->count, q->store.n, memory_order_relaxed);
    if (q->getters) concur_fcond_signal(&q->notempty);
  }
  pthread_mutex_unlock(&q->mu);
  if (rc != CONCUR_OK && it->block)   /* no room even for it: lost */
    concur_shbuf_free(it->block);
  it->block = 0;
  return rc;
}

/* ---- the queue ------------------------------------------------------------ */

/* NOTE: 'unfinished' is counted before the item is published (an item
** that another thread takes at once is task_done'd against it), and given
** back when the put fails. */
int concur_queue_put (concur_queue *q, concur_buf *item, double prio,
                      double deadline) {
  int rc;
  if (atomic_load_explicit(&q->fast, memory_order_acquire)) {
    concur_qlitem it;
    int small = item->nobjs == 0 && item->len <= CONCUR_QL_SMALL;
    if (item->len > UINT32_MAX || item->nobjs > UINT32_MAX) return CONCUR_QNOMEM;
    if (small) concur_qlitem_frombytes(&it, item->data, item->len);
    else {                  /* the buffer's memory, moved in on success */
      it.len = (uint32_t)item->len;
      it.nobjs = (uint32_t)item->nobjs;
      it.u.big.bytes = item->data;
      it.u.big.objs = item->objs;
    }
    atomic_fetch_add(&q->unfinished, 1);
    rc = concur_qlocal_put(&q->local, &it, deadline);
    if (rc == CONCUR_OK) {
      if (small) concur_buf_free(item);
      else memset(item, 0, sizeof *item);
      return rc;
    }
    atomic_fetch_sub(&q->unfinished, 1);
    if (rc != CONCUR_QFROZEN) return rc;
  }
  if (item->nobjs == 0 && item->len <= CONCUR_QINLINE)
    rc = store_put(q, NULL, item->data, item->len, prio, deadline);
  else
    rc = store_put(q, item, NULL, 0, prio, deadline);
  if (rc == CONCUR_OK) concur_buf_free(item);
  return rc;
}

int concur_queue_putbytes (concur_queue *q, const char *p, size_t len,
                           double prio, double deadline) {
  if (atomic_load_explicit(&q->fast, memory_order_acquire)) {
    concur_qlitem it;
    int rc;
    concur_qlitem_frombytes(&it, p, len);   /* small: copied in place */
    atomic_fetch_add(&q->unfinished, 1);
    rc = concur_qlocal_put(&q->local, &it, deadline);
    if (rc == CONCUR_OK) return rc;
    atomic_fetch_sub(&q->unfinished, 1);
    if (rc != CONCUR_QFROZEN) return rc;
  }
  return store_put(q, NULL, p, len, prio, deadline);
}

int concur_queue_get (concur_queue *q, concur_buf *out, double deadline,
                      concur_qtaken *t) {
  if (atomic_load_explicit(&q->fast, memory_order_acquire)) {
    int rc = concur_qlocal_get(&q->local, &t->li, &t->pos, deadline);
    if (rc == CONCUR_OK) {
      t->fast = 1;
      t->data = concur_qlitem_bytes(&t->li);
      t->len = t->li.len;
      t->objs = concur_qlitem_objs(&t->li);
      t->nobjs = t->li.nobjs;
      return rc;
    }
    if (rc != CONCUR_QFROZEN) return rc;
  }
  return store_get(q, out, deadline, t);
}

void concur_queue_commit (concur_qtaken *t) {
  if (t->fast) concur_qlitem_free(&t->li);
  else if (t->it.block) concur_shbuf_free(t->it.block);
  t->it.block = 0;
}

int concur_queue_unget (concur_queue *q, concur_qtaken *t) {
  concur_qitem it;
  concur_buf b;
  if (!t->fast) return store_unget(q, &t->it);
  if (concur_qlocal_unget(&q->local, &t->li, t->pos) == CONCUR_OK)
    return CONCUR_OK;
  /* the queue moved to the shared store meanwhile (or no memory): there */
  memset(&it, 0, sizeof it);
  it.seq = t->pos;
  if (concur_qlitem_tobuf(&t->li, &b) != 0) {
    concur_qlitem_free(&t->li);
    return CONCUR_QNOMEM;
  }
  if (b.nobjs == 0 && b.len <= CONCUR_QINLINE) {
    it.len = (uint32_t)b.len;
    if (b.len) memcpy(it.data, b.data, b.len);
  }
  else if ((it.block = concur_shbuf_packcopy(&b, atomic_load(&q->xproc))) == 0) {
    concur_buf_free(&b);
    return CONCUR_QNOMEM;
  }
  concur_buf_free(&b);
  return store_unget(q, &it);
}

/* ---- crossing to another process ---------------------------------------- */

/* Whether any object of the queue's items cannot leave this process: for a
** local item (qlocal each: stops at the first) */
static int local_stays (void *ud, concur_qlitem *it, uint64_t pos) {
  concur_obj *const *objs = concur_qlitem_objs(it);
  (void)ud;
  (void)pos;
  for (uint32_t i = 0; i < it->nobjs; i++)
    if (concur_shclass_of(objs[i]->type) == NULL) return 1;
  return 0;
}

/* Readies the objects of a local item to cross: the first failure's
** message in the ud's buffer. */
typedef struct sharing {
  char *err;
  size_t errsize;
  concur_qitem *items;       /* the store's new array */
  size_t n;
} sharing;

static int local_share (void *ud, concur_qlitem *it, uint64_t pos) {
  sharing *sh = ud;
  concur_obj *const *objs = concur_qlitem_objs(it);
  (void)pos;
  for (uint32_t i = 0; i < it->nobjs; i++)
    if (concur_shobj_share(objs[i], sh->err, sh->errsize) != 0) return 1;
  return 0;
}

/* Packs a local item into the new array (its block allocated; the item
** itself is left for later); 1 when the arena is full. */
static int local_pack (void *ud, concur_qlitem *it, uint64_t pos) {
  sharing *sh = ud;
  concur_qitem *x = &sh->items[sh->n];
  memset(x, 0, sizeof *x);
  x->seq = pos;
  if (it->nobjs == 0 && it->len <= CONCUR_QINLINE) {
    x->len = it->len;
    if (it->len) memcpy(x->data, concur_qlitem_bytes(it), it->len);
  }
  else {
    concur_buf b;
    memset(&b, 0, sizeof b);
    b.data = (char *)concur_qlitem_bytes(it);
    b.len = it->len;
    b.objs = (concur_obj **)concur_qlitem_objs(it);
    b.nobjs = it->nobjs;
    if ((x->block = concur_shbuf_packcopy(&b, 1)) == 0) return 1;
  }
  sh->n++;
  return 0;
}

static int local_free (void *ud, concur_qlitem *it, uint64_t pos) {
  (void)ud;
  (void)pos;
  concur_qlitem_free(it);
  return 0;
}

/* Shares run one at a time in a process: a queue that holds itself (or a
** cycle of queues) finds its own share under way, by this thread, and
** leaves it to the outer call. */
static pthread_mutex_t share_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

/* Moves the items of local into the shared store; with share_mu and both
** of local's mutexes held. 0, or -1 with a message. */
static int migrate (concur_queue *q, char *err, size_t errsize) {
  size_t n = concur_qlocal_count(&q->local), cap = 16;
  sharing sh = { err, errsize, NULL, 0 };
  if (concur_qlocal_each(&q->local, local_stays, NULL)) {
    snprintf(err, errsize, "a Queue holding an object that cannot leave "
             "this process (a Future, a fetch Client...) cannot be sent to "
             "another process");
    return -1;
  }
  if (concur_qlocal_each(&q->local, local_share, &sh)) return -1;
  while (cap < n) cap *= 2;
  if (cap > SIZE_MAX / sizeof *sh.items
      || (sh.items = concur_shm_alloc(cap * sizeof *sh.items, &q->store.items)) == NULL
      || concur_qlocal_each(&q->local, local_pack, &sh)) {
    char why[300];
    for (size_t i = 0; i < sh.n; i++)
      if (sh.items[i].block) concur_shbuf_free(sh.items[i].block);
    if (sh.items) concur_shm_free(q->store.items);
    store_init(&q->store, CONCUR_FIFO);
    concur_shm_why(why, sizeof why);
    snprintf(err, errsize, "cannot move the Queue's items to shared memory: %s", why);
    return -1;
  }
  concur_qlocal_each(&q->local, local_free, NULL);
  concur_mutex_lock(&q->mu);
  q->store.cap = cap;
  q->store.head = 0;
  q->store.n = n;
  q->seq = concur_qlocal_tail(&q->local);
  atomic_store(&q->count, n);
  atomic_store(&q->xproc, 1);
  atomic_store(&q->fast, 0);
  concur_qlocal_freeze(&q->local);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

/* The share of a queue kept in the shared store from the start (LIFO,
** priority): its items' objects must be able to cross, and queues in them
** are readied too. */
static int store_share (concur_queue *q, char *err, size_t errsize) {
  concur_shref *inner = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  concur_mutex_lock(&q->mu);
  for (size_t i = 0; i < q->store.n && rc == 0; i++) {
    concur_shoff b = store_at(&q->store, i)->block;
    if (b == 0) continue;    /* inline: no objects */
    if (concur_shbuf_local(b)) {
      snprintf(err, errsize, "a Queue holding an object that cannot leave "
               "this process (a Future, a fetch Client...) cannot be sent to "
               "another process");
      rc = -1;
    }
    else if (concur_shbuf_refs(b, &inner, &n, &cap) != 0) {
      snprintf(err, errsize, "not enough memory");
      rc = -1;
    }
  }
  if (rc == 0) atomic_store(&q->xproc, 1);   /* before the inner ones: a
                                             ** cycle of queues ends here */
  pthread_mutex_unlock(&q->mu);
  if (rc != 0) {
    for (size_t i = 0; i < n; i++) concur_shref_drop(&inner[i]);
    free(inner);
    return rc;
  }
  return concur_shbuf_shareall(inner, n, err, errsize);
}

int concur_queue_share (concur_queue *q, char *err, size_t errsize) {
  int rc = 0;
  if (atomic_load(&q->xproc)) return 0;
  if (!atomic_load(&q->fast)) return store_share(q, err, errsize);
  pthread_mutex_lock(&share_mu);
  /* NOTE: a share of q under way in this thread holds q's local mutexes
  ** (no other thread can: share_mu), and finds q frozen once it is done */
  if (!atomic_load(&q->xproc) && !q->sharing) {
    q->sharing = 1;
    if (concur_qlocal_lock(&q->local) == CONCUR_OK) {
      rc = migrate(q, err, errsize);
      concur_qlocal_unlock(&q->local);
    }
    q->sharing = 0;
  }
  pthread_mutex_unlock(&share_mu);
  return rc;
}

void concur_queue_close (concur_queue *q) {
  concur_mutex_lock(&q->mu);
  atomic_store(&q->closed, 1);
  concur_fcond_broadcast(&q->notempty);
  concur_fcond_broadcast(&q->notfull);
  pthread_mutex_unlock(&q->mu);
  concur_qlocal_close(&q->local);   /* frozen already: nothing to do */
}

int concur_queue_isclosed (concur_queue *q) {
  return atomic_load(&q->closed);
}

size_t concur_queue_size (concur_queue *q) {
  if (atomic_load(&q->fast)) return concur_qlocal_size(&q->local);
  return atomic_load(&q->count);
}

int concur_queue_full (concur_queue *q) {
  return q->maxsize && concur_queue_size(q) >= q->maxsize;
}

/* NOTE: 'unfinished' and 'joiners' form a Dekker pair (sync.h): a joiner
** counts itself, then looks; task_done lowers the count, then looks for
** joiners. The word 'donegen' is read before either, so a wake-up between
** the look and the sleep is not lost. Non-private futex: joiners may be
** in other processes. */
int concur_queue_taskdone (concur_queue *q) {
  size_t u = atomic_load(&q->unfinished);
  do {
    if (u == 0) return -1;
  } while (!atomic_compare_exchange_weak(&q->unfinished, &u, u - 1));
  if (u == 1 && atomic_load(&q->joiners)) {
    atomic_fetch_add(&q->donegen, 1);
    concur_futex_wake(&q->donegen, INT_MAX);
  }
  return 0;
}

int concur_queue_join (concur_queue *q, double deadline) {
  for (;;) {
    unsigned gen = atomic_load(&q->donegen);
    int rc = CONCUR_OK;
    atomic_fetch_add(&q->joiners, 1);
    if (atomic_load(&q->unfinished) != 0)
      rc = concur_futex_wait(&q->donegen, gen, deadline);
    atomic_fetch_sub(&q->joiners, 1);
    if (atomic_load(&q->unfinished) == 0) return CONCUR_OK;
    if (rc != CONCUR_OK) return rc;
  }
}
