/*
** holdings.c: the per-process tables of arena references (holdings.h).
**
** A table is two arena blocks: a root, whose offset the supervisor keeps,
** naming the current entries block (and holding the id of the last task
** that reached the process); and the entries, an open-addressing
** hash (linear probing) from a block's offset to a count. Keys are never
** removed: an entry whose count fell to 0 stays until the table is rebuilt,
** so a probe stops at the first empty entry. Rebuilding (when 3/4 of the
** entries hold keys) copies the entries with a count into a new block,
** publishes it in the root, then frees the old one: a process killed in the
** middle leaves the root naming a complete table (and one block leaked).
**
** An entry is written count first, then key (release); the reclaimer reads
** only entries with a key and a count, after the process is gone.
*/
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "holdings.h"

typedef struct hroot {
  _Atomic uint64_t tab;          /* the entries block, 0: none yet */
  _Atomic uint64_t begun;        /* the last task that reached it, 0: none */
} hroot;

typedef struct hent {
  _Atomic uint64_t off;          /* the block counted, 0: empty */
  _Atomic uint64_t n;            /* references held */
} hent;

typedef struct htab {
  uint64_t cap;                  /* entries, a power of 2 */
  uint64_t pad;
  hent e[];
} htab;

#define MINCAP 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t myroot;  /* this process's table, 0: none */
static uint64_t nkeys;           /* entries with a key (under mu) */

concur_shoff concur_holdings_new (void) {
  concur_shoff off;
  hroot *r = concur_shm_alloc(sizeof *r, &off);
  if (r == NULL) return 0;
  atomic_init(&r->tab, 0);
  atomic_init(&r->begun, 0);
  return off;
}

void concur_holdings_begin (uint64_t id) {
  concur_shoff root = atomic_load_explicit(&myroot, memory_order_relaxed);
  if (root)
    atomic_store_explicit(&((hroot *)concur_shm_ptr(root))->begun, id,
                          memory_order_release);
}

uint64_t concur_holdings_begun (concur_shoff root) {
  if (root == 0) return 0;
  concur_shm_sync();             /* after what the dead process wrote */
  if (concur_shm_blocksize(root) < sizeof(hroot)) return 0;
  return atomic_load_explicit(&((hroot *)concur_shm_ptr(root))->begun,
                              memory_order_acquire);
}

void concur_holdings_adopt (concur_shoff root) {
  if (root && (concur_shm_init() != 0 || concur_shm_blocksize(root) < sizeof(hroot)))
    root = 0;                    /* not a table of this arena: none */
  pthread_mutex_lock(&mu);
  atomic_store(&myroot, root);
  nkeys = 0;
  pthread_mutex_unlock(&mu);
}

static uint64_t slot_of (concur_shoff off, uint64_t cap) {
  return ((off >> 4) * 0x9e3779b97f4a7c15ULL >> 17) & (cap - 1);
}

/* The entry for off in t, or the empty entry where it would go. */
static hent *probe (htab *t, concur_shoff off) {
  uint64_t i = slot_of(off, t->cap);
  for (;;) {
    uint64_t k = atomic_load_explicit(&t->e[i].off, memory_order_relaxed);
    if (k == off || k == 0) return &t->e[i];
    i = (i + 1) & (t->cap - 1);
  }
}

/* Rebuilds the table of root r with room for the counted entries and one
** more; mu held. Returns the new table, or NULL (the old one stays). */
static htab *rebuild (hroot *r, htab *old) {
  uint64_t live = 0, cap = MINCAP;
  concur_shoff noff, ooff = atomic_load(&r->tab);
  htab *t;
  if (old)
    for (uint64_t i = 0; i < old->cap; i++)
      if (atomic_load_explicit(&old->e[i].n, memory_order_relaxed) > 0) live++;
  while (cap * 3 < (live + 1) * 8) cap *= 2;       /* at most 3/8 full */
  t = concur_shm_alloc(sizeof *t + cap * sizeof(hent), &noff);
  if (t == NULL) return NULL;
  memset(t, 0, sizeof *t + cap * sizeof(hent));
  t->cap = cap;
  if (old)
    for (uint64_t i = 0; i < old->cap; i++) {
      uint64_t n = atomic_load_explicit(&old->e[i].n, memory_order_relaxed);
      if (n > 0) {
        hent *e = probe(t, atomic_load_explicit(&old->e[i].off, memory_order_relaxed));
        atomic_store_explicit(&e->n, n, memory_order_relaxed);
        atomic_store_explicit(&e->off, old->e[i].off, memory_order_relaxed);
      }
    }
  atomic_store_explicit(&r->tab, noff, memory_order_release);
  if (ooff) concur_shm_free(ooff);
  nkeys = live;
  return t;
}

void concur_holdings_add (concur_shoff off) {
  concur_shoff root = atomic_load_explicit(&myroot, memory_order_relaxed);
  hroot *r;
  htab *t;
  hent *e;
  if (root == 0 || off == 0) return;
  pthread_mutex_lock(&mu);
  r = concur_shm_ptr(root);
  t = atomic_load(&r->tab) ? concur_shm_ptr(atomic_load(&r->tab)) : NULL;
  if (t) {
    e = probe(t, off);
    if (atomic_load_explicit(&e->off, memory_order_relaxed) == off) {
      atomic_fetch_add_explicit(&e->n, 1, memory_order_relaxed);
      pthread_mutex_unlock(&mu);
      return;
    }
  }
  if (t == NULL || (nkeys + 1) * 4 > t->cap * 3)
    t = rebuild(r, t);
  if (t) {                   /* NULL: the arena is full, it goes uncounted */
    e = probe(t, off);
    atomic_store_explicit(&e->n, 1, memory_order_relaxed);
    atomic_store_explicit(&e->off, off, memory_order_release);
    nkeys++;
  }
  pthread_mutex_unlock(&mu);
}

void concur_holdings_remove (concur_shoff off) {
  concur_shoff root = atomic_load_explicit(&myroot, memory_order_relaxed);
  hroot *r;
  hent *e;
  if (root == 0 || off == 0) return;
  pthread_mutex_lock(&mu);
  r = concur_shm_ptr(root);
  if (atomic_load(&r->tab)) {
    e = probe(concur_shm_ptr(atomic_load(&r->tab)), off);
    if (atomic_load_explicit(&e->off, memory_order_relaxed) == off
        && atomic_load_explicit(&e->n, memory_order_relaxed) > 0)
      atomic_fetch_sub_explicit(&e->n, 1, memory_order_release);
    /* NOTE: not there: it was taken while the arena was full, uncounted */
  }
  pthread_mutex_unlock(&mu);
}

void concur_holdings_reclaim (concur_shoff root,
                              void (*drop) (concur_shoff off, uint64_t n)) {
  hroot *r;
  concur_shoff toff;
  if (root == 0) return;
  concur_shm_sync();             /* after what the dead process wrote */
  if (concur_shm_blocksize(root) < sizeof *r) return;
  r = concur_shm_ptr(root);
  toff = atomic_load_explicit(&r->tab, memory_order_acquire);
  if (toff && concur_shm_blocksize(toff) >= sizeof(htab)) {
    htab *t = concur_shm_ptr(toff);
    if (t->cap <= (concur_shm_blocksize(toff) - sizeof *t) / sizeof(hent))
      for (uint64_t i = 0; i < t->cap; i++) {
        uint64_t off = atomic_load_explicit(&t->e[i].off, memory_order_acquire);
        uint64_t n = atomic_load_explicit(&t->e[i].n, memory_order_relaxed);
        if (off && n) drop(off, n);
      }
    concur_shm_free(toff);
  }
  concur_shm_free(root);
}
