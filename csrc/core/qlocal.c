/*
** qlocal.c: the in-process FIFO of qlocal.h.
**
** Positions count every item ever put; position p lives in slot
** p % CONCUR_QL_SLOTS of its block. The producer that writes the first
** position of a block links a new block after the last one (the first block
** is made by the first put: until then, and at position 0, 'pblock' and
** 'cblock' name the block of position 0); the consumer that reads it moves
** on to that block and gives the one it left to 'spare' for the next new block, so a
** steady flow allocates nothing. Publication: a producer writes the slot,
** then stores 'tailpub' (seq_cst: also a release); a consumer that loads
** 'tailpub' (acquire) sees the slot and the link to its block.
**
** Invariants: headpub <= tailpub; the slots of positions [chead, ptail)
** hold the queue's items, after the stash; a block is freed or reused only
** once every position in it was read, so only consumers (under cmu) ever
** let go of one. 'closed' only goes from 0 to 1, under pmu, so once a
** consumer sees it set, a last look at 'tailpub' sees every item put.
*/
#define _GNU_SOURCE
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include "qlocal.h"

#define SPIN_SECONDS 50e-6   /* longest busy wait before sleeping */
#define SPIN_BATCH 8         /* pauses between looks while spinning */
#define MASK (CONCUR_QL_SLOTS - 1)

/* ---- items ---------------------------------------------------------------- */

void concur_qlitem_frombytes (concur_qlitem *it, const char *p, size_t len) {
  it->len = (uint32_t)len;
  it->nobjs = 0;
  if (len) memcpy(it->u.data, p, len);
}

void concur_qlitem_free (concur_qlitem *it) {
  if (it->nobjs == 0 && it->len <= CONCUR_QL_SMALL) return;
  for (uint32_t i = 0; i < it->nobjs; i++) concur_obj_unref(it->u.big.objs[i]);
  free(it->u.big.objs);
  free(it->u.big.bytes);
  it->len = it->nobjs = 0;
}

int concur_qlitem_tobuf (concur_qlitem *it, concur_buf *b) {
  memset(b, 0, sizeof *b);
  if (it->nobjs == 0 && it->len <= CONCUR_QL_SMALL) {
    if (concur_buf_write(b, it->u.data, it->len) != 0) return -1;
  }
  else {
    b->data = it->u.big.bytes;
    b->len = b->cap = it->len;
    b->objs = it->u.big.objs;
    b->nobjs = b->objcap = it->nobjs;
  }
  it->len = it->nobjs = 0;
  return 0;
}

/* ---- the mutexes ------------------------------------------------------------
** A word: 0 free, 1 held, 2 held and maybe wanted by a sleeper (the mutex
** of Drepper's "Futexes Are Tricky"). Held only for a few loads and stores,
** so a taker spins a little before it sleeps; sleeps are deaf to task
** interrupts, as a mutex's are.
*/

/* Takes the free mutex word ud (test before test-and-set). */
static int try_take (void *ud) {
  _Atomic unsigned *m = ud;
  unsigned c = 0;
  return atomic_load_explicit(m, memory_order_relaxed) == 0
         && atomic_compare_exchange_weak_explicit(m, &c, 1, memory_order_acquire,
                                                  memory_order_relaxed);
}

static void lock_slow (_Atomic unsigned *m) {
  if (concur_spin(try_take, m, 200, -1)) return;
  while (atomic_exchange_explicit(m, 2, memory_order_acquire) != 0)
    syscall(SYS_futex, m, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

static inline void lock (_Atomic unsigned *m) {
  unsigned c = 0;
  if (!atomic_compare_exchange_strong_explicit(m, &c, 1, memory_order_acquire,
                                               memory_order_relaxed))
    lock_slow(m);
}

static inline void unlock (_Atomic unsigned *m) {
  if (atomic_exchange_explicit(m, 0, memory_order_release) == 2)
    syscall(SYS_futex, m, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- setting up and tearing down ------------------------------------------- */

void concur_qlocal_init (concur_qlocal *l, size_t maxsize) {
  memset(l, 0, sizeof *l);
  l->maxsize = maxsize;
  l->spinroom = maxsize / 8 > 64 ? 64 : maxsize / 8 ? maxsize / 8 : 1;
}

/* Frees the blocks from the consumer's on; with 'items', the items in
** them too. */
static void free_blocks (concur_qlocal *l, int items) {
  concur_qlblock *b = l->cblock;
  if (items)
    for (uint64_t p = l->chead; p < l->ptail; p++) {
      if ((p & MASK) == 0 && p != 0) b = b->next;   /* see get */
      concur_qlitem_free(&b->slots[p & MASK]);
    }
  for (b = l->cblock; b; ) {
    concur_qlblock *next = b->next;
    free(b);
    b = next;
  }
  free(atomic_exchange(&l->spare, NULL));
  l->cblock = l->pblock = NULL;
}

void concur_qlocal_destroy (concur_qlocal *l) {
  if (atomic_load(&l->frozen)) return;   /* maybe in another process */
  for (size_t i = 0; i < l->nstash; i++) concur_qlitem_free(&l->stash[i]);
  free_blocks(l, 1);
  free(l->stash);
  free(l->stashpos);
  l->stash = NULL;
  l->stashpos = NULL;
}

/* ---- waiting ------------------------------------------------------------------ */

/*
** A sleeper reads 'seq', counts itself, arms the flag, looks a last time and
** sleeps while 'seq' is unchanged. A waker (after its change, seq_cst) that
** finds sleepers disarms the flag, bumps 'seq' and wakes them all; while
** they get going again, further changes find the flag down and make no
** system call. A sleeper that came after the disarming armed it again, and
** read 'seq' before the bump that its own wake-up needs: so none is missed.
*/
static void wake_all (concur_qlwait *w) {
  atomic_fetch_add(&w->seq, 1);
  concur_futex_wake_local(&w->seq, INT_MAX);
}

static inline void notify (concur_qlwait *w) {
  if (atomic_load(&w->sleepers) && atomic_exchange(&w->armed, 0))
    wake_all(w);
}

/* What a sleeping getter waits for: an item, the close, the freeze. */
static int getter_ready (void *ud) {
  concur_qlocal *l = ud;
  return atomic_load(&l->tailpub) != atomic_load(&l->headpub)
         || atomic_load(&l->nstashed) || atomic_load(&l->closed)
         || atomic_load(&l->frozen);
}

/* ... and a putter, on a full bounded queue: room. */
static int putter_ready (void *ud) {
  concur_qlocal *l = ud;
  return atomic_load(&l->tailpub) - atomic_load(&l->headpub) < l->maxsize
         || atomic_load(&l->closed) || atomic_load(&l->frozen);
}

/* ... and a spinning putter, on a full bounded queue: room for a run of
** items (qlocal.h: 'spinroom'), so that a producer that is faster than its
** consumer refills the queue in runs, not one slot at a time with a cache
** miss on 'headpub' for each. A hint only: the putter looks again. */
static int putter_roomy (void *ud) {
  concur_qlocal *l = ud;
  return atomic_load(&l->tailpub) - atomic_load(&l->headpub) + l->spinroom <= l->maxsize
         || atomic_load(&l->closed) || atomic_load(&l->frozen);
}

/*
** Waits (no mutex held) until ready(l) may hold: spins at first (once per
** call of put or get: *spun), then sleeps on w. Returns CONCUR_OK (look
** again: it may be spurious), CONCUR_TIMEDOUT, or an interrupt's result.
*/
static int wait_for (concur_qlocal *l, int (*ready) (void *),
                     concur_qlwait *w, double deadline, int *spun) {
  unsigned v;
  int rc;
  if (!*spun && concur_can_spin()) {
    double until = concur_now() + SPIN_SECONDS;
    *spun = 1;
    if (deadline >= 0 && deadline < until) until = deadline;
    if (ready == putter_ready) ready = putter_roomy;
    /* a look every SPIN_BATCH pauses: each look pulls the other side's
    ** published position from its cache, and it writes it once per item */
    for (int i = 1; !ready(l); i++) {
      for (int k = 0; k < SPIN_BATCH; k++) concur_cpu_pause();
      if ((i & 7) == 0 && concur_now() >= until) break;
    }
    return CONCUR_OK;
  }
  v = atomic_load(&w->seq);
  atomic_fetch_add(&w->sleepers, 1);
  atomic_store(&w->armed, 1);
  if (ready(l)) rc = CONCUR_OK;
  else rc = concur_futex_wait_local(&w->seq, v, deadline);
  atomic_fetch_sub(&w->sleepers, 1);
  return rc;
}

/* ---- put and get ------------------------------------------------------------- */

int concur_qlocal_put (concur_qlocal *l, concur_qlitem *it, double deadline) {
  int spun = 0, rc;
  for (;;) {
    lock(&l->pmu);
    if (atomic_load_explicit(&l->frozen, memory_order_relaxed))
      rc = CONCUR_QFROZEN;
    else if (atomic_load_explicit(&l->closed, memory_order_relaxed))
      rc = CONCUR_QCLOSED;
    else if (l->maxsize && l->ptail - l->headcache >= l->maxsize
             && l->ptail - (l->headcache = atomic_load_explicit(
                   &l->headpub, memory_order_acquire)) >= l->maxsize)
      rc = CONCUR_TIMEDOUT;          /* full: wait below */
    else {
      unsigned i = (unsigned)(l->ptail & MASK);
      if (i == 0 && (l->ptail != 0 || l->pblock == NULL)) {   /* a new block */
        concur_qlblock *b = atomic_exchange(&l->spare, NULL);
        if (b == NULL && (b = malloc(sizeof *b)) == NULL) {
          unlock(&l->pmu);
          return CONCUR_QNOMEM;
        }
        b->next = NULL;
        if (l->pblock) l->pblock->next = b;
        else l->cblock = b;      /* the first: read once 'tailpub' says so */
        l->pblock = b;
      }
      l->pblock->slots[i] = *it;
      l->ptail++;
      atomic_store(&l->tailpub, l->ptail);     /* seq_cst: see qlocal.h */
      unlock(&l->pmu);
      notify(&l->getters);
      return CONCUR_OK;
    }
    unlock(&l->pmu);
    if (rc != CONCUR_TIMEDOUT || deadline == 0.0) return rc;
    rc = wait_for(l, putter_ready, &l->putters, deadline, &spun);
    if (rc == CONCUR_TIMEDOUT) deadline = 0.0;    /* one last look */
    else if (rc != CONCUR_OK) return rc;
  }
}

/* Takes the first stashed item; cmu held, nstash > 0. */
static void unstash (concur_qlocal *l, concur_qlitem *it, uint64_t *pos) {
  *it = l->stash[0];
  *pos = l->stashpos[0];
  l->nstash--;
  memmove(l->stash, l->stash + 1, l->nstash * sizeof *l->stash);
  memmove(l->stashpos, l->stashpos + 1, l->nstash * sizeof *l->stashpos);
  atomic_store_explicit(&l->nstashed, l->nstash, memory_order_relaxed);
}

int concur_qlocal_get (concur_qlocal *l, concur_qlitem *it, uint64_t *pos,
                       double deadline) {
  int spun = 0, rc;
  for (;;) {
    lock(&l->cmu);
    if (atomic_load_explicit(&l->frozen, memory_order_relaxed)) {
      unlock(&l->cmu);
      return CONCUR_QFROZEN;
    }
    if (l->nstash) {
      unstash(l, it, pos);
      unlock(&l->cmu);
      return CONCUR_OK;
    }
    if (l->chead == l->tailcache) {
      int closed = atomic_load(&l->closed);   /* first: see the top */
      l->tailcache = atomic_load_explicit(&l->tailpub, memory_order_acquire);
      if (l->chead == l->tailcache && closed) {
        unlock(&l->cmu);
        return CONCUR_QCLOSED;
      }
    }
    if (l->chead != l->tailcache) {
      uint64_t p = l->chead;
      unsigned i = (unsigned)(p & MASK);
      if (i == 0 && p != 0) {             /* on to the next block */
        concur_qlblock *old = l->cblock;
        l->cblock = old->next;
        free(atomic_exchange(&l->spare, old));
      }
      *it = l->cblock->slots[i];
      *pos = p;
      l->chead = p + 1;
      if (l->maxsize) {
        atomic_store(&l->headpub, p + 1);              /* seq_cst */
        unlock(&l->cmu);
        notify(&l->putters);
      }
      else {
        atomic_store_explicit(&l->headpub, p + 1, memory_order_release);
        unlock(&l->cmu);
      }
      return CONCUR_OK;
    }
    unlock(&l->cmu);
    if (deadline == 0.0) return CONCUR_TIMEDOUT;
    rc = wait_for(l, getter_ready, &l->getters, deadline, &spun);
    if (rc == CONCUR_TIMEDOUT) deadline = 0.0;    /* one last look */
    else if (rc != CONCUR_OK) return rc;
  }
}

int concur_qlocal_unget (concur_qlocal *l, concur_qlitem *it, uint64_t pos) {
  size_t k;
  lock(&l->cmu);
  if (atomic_load_explicit(&l->frozen, memory_order_relaxed)) {
    unlock(&l->cmu);
    return CONCUR_QFROZEN;
  }
  if (l->nstash == l->stashcap) {
    size_t ncap = l->stashcap ? 2 * l->stashcap : 4;
    concur_qlitem *ns = realloc(l->stash, ncap * sizeof *ns);
    uint64_t *np;
    if (ns) l->stash = ns;
    np = ns ? realloc(l->stashpos, ncap * sizeof *np) : NULL;
    if (np == NULL) {
      unlock(&l->cmu);
      return CONCUR_QNOMEM;
    }
    l->stashpos = np;
    l->stashcap = ncap;
  }
  for (k = l->nstash; k > 0 && l->stashpos[k - 1] > pos; k--) ;
  memmove(l->stash + k + 1, l->stash + k, (l->nstash - k) * sizeof *l->stash);
  memmove(l->stashpos + k + 1, l->stashpos + k,
          (l->nstash - k) * sizeof *l->stashpos);
  l->stash[k] = *it;
  l->stashpos[k] = pos;
  l->nstash++;
  atomic_store(&l->nstashed, l->nstash);        /* seq_cst, as 'tailpub' */
  unlock(&l->cmu);
  notify(&l->getters);
  return CONCUR_OK;
}

int concur_qlocal_close (concur_qlocal *l) {
  int rc = CONCUR_OK;
  lock(&l->pmu);
  if (atomic_load(&l->frozen)) rc = CONCUR_QFROZEN;
  else atomic_store(&l->closed, 1);
  unlock(&l->pmu);
  if (rc == CONCUR_OK) {
    wake_all(&l->getters);
    wake_all(&l->putters);
  }
  return rc;
}

size_t concur_qlocal_size (concur_qlocal *l) {
  uint64_t h = atomic_load_explicit(&l->headpub, memory_order_relaxed);
  uint64_t t = atomic_load_explicit(&l->tailpub, memory_order_relaxed);
  return (size_t)(t > h ? t - h : 0)
         + atomic_load_explicit(&l->nstashed, memory_order_relaxed);
}

/* ---- freezing ------------------------------------------------------------------ */

int concur_qlocal_lock (concur_qlocal *l) {
  lock(&l->pmu);
  lock(&l->cmu);
  if (atomic_load(&l->frozen)) {
    unlock(&l->cmu);
    unlock(&l->pmu);
    return CONCUR_QFROZEN;
  }
  return CONCUR_OK;
}

size_t concur_qlocal_count (concur_qlocal *l) {
  return l->nstash + (size_t)(l->ptail - l->chead);
}

int concur_qlocal_each (concur_qlocal *l,
                        int (*fn) (void *ud, concur_qlitem *it, uint64_t pos),
                        void *ud) {
  concur_qlblock *b = l->cblock;
  int rc;
  for (size_t i = 0; i < l->nstash; i++)
    if ((rc = fn(ud, &l->stash[i], l->stashpos[i])) != 0) return rc;
  for (uint64_t p = l->chead; p < l->ptail; p++) {
    if ((p & MASK) == 0 && p != 0) b = b->next;   /* see get */
    if ((rc = fn(ud, &b->slots[p & MASK], p)) != 0) return rc;
  }
  return 0;
}

uint64_t concur_qlocal_tail (concur_qlocal *l) {
  return l->ptail;
}

/* NOTE: nothing of this process's memory stays: the last reference to a
** frozen queue may be dropped in another process (concur_qlocal_destroy) */
void concur_qlocal_freeze (concur_qlocal *l) {
  atomic_store(&l->frozen, 1);
  free_blocks(l, 0);
  free(l->stash);
  free(l->stashpos);
  l->stash = NULL;
  l->stashpos = NULL;
  l->nstash = l->stashcap = 0;
  atomic_store(&l->nstashed, 0);
}

void concur_qlocal_unlock (concur_qlocal *l) {
  unlock(&l->cmu);
  unlock(&l->pmu);
  wake_all(&l->getters);
  wake_all(&l->putters);
}
