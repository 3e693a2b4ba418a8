/*
** gmpalloc.c: GMP's allocation functions and scopes (see gmpalloc.h).
**
** Each thread knows the scope it works in and where to jump when an
** allocation fails (two thread-local pointers). A scope records the blocks
** GMP allocated in it and has not freed yet, in a small open-addressing
** set (inline for the first few blocks, so a small operation allocates
** nothing more than GMP does). While a team of helper threads shares the
** scope, the set is guarded by the scope's mutex; GMP's own work never
** runs under it. The jump happens after the mutex is released.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gmpalloc.h"

static _Thread_local concur_gmp_scope *tl_scope;
static _Thread_local jmp_buf *tl_jb;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_long countdown;   /* > 0: allocations left before one fails */

/* ---- the set of a scope's live blocks -------------------------------------- */

static size_t hashp (const void *p, size_t mask) {
  uintptr_t x = (uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 29;
  return (size_t)x & mask;
}

/* Adds p; 0, or -1 when the set cannot grow. Never fails right after a
** set_del (the room of the removed block is there). */
static int set_add (concur_gmp_scope *sc, void *p) {
  size_t i;
  if ((sc->used + 1) * 2 > sc->cap) {
    size_t ncap = sc->cap * 2;
    void **ns = calloc(ncap, sizeof *ns);
    if (ns == NULL) return -1;
    for (size_t k = 0; k < sc->cap; k++)
      if (sc->set[k]) {
        size_t j = hashp(sc->set[k], ncap - 1);
        while (ns[j]) j = (j + 1) & (ncap - 1);
        ns[j] = sc->set[k];
      }
    if (sc->set != sc->inline_set) free(sc->set);
    sc->set = ns;
    sc->cap = ncap;
  }
  i = hashp(p, sc->cap - 1);
  while (sc->set[i]) i = (i + 1) & (sc->cap - 1);
  sc->set[i] = p;
  sc->used++;
  return 0;
}

static size_t set_find (const concur_gmp_scope *sc, const void *p) {
  size_t mask = sc->cap - 1;
  for (size_t i = hashp(p, mask);; i = (i + 1) & mask) {
    if (sc->set[i] == p) return i;
    if (sc->set[i] == NULL) return (size_t)-1;
  }
}

/* Removes p (backward-shift deletion); returns whether it was there. */
static int set_del (concur_gmp_scope *sc, const void *p) {
  size_t mask = sc->cap - 1, i = set_find(sc, p), j;
  if (i == (size_t)-1) return 0;
  for (j = (i + 1) & mask; sc->set[j]; j = (j + 1) & mask) {
    size_t k = hashp(sc->set[j], mask);
    /* the entry at j may move to i unless its home k lies in (i, j] */
    if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
      sc->set[i] = sc->set[j];
      i = j;
    }
  }
  sc->set[i] = NULL;
  sc->used--;
  return 1;
}

/* ---- the allocation functions ---------------------------------------------- */

static void die (size_t n) {
  fprintf(stderr, "GNU MP: Cannot allocate memory (size=%zu)\n", n);
  abort();
}

/* Marks the scope failed and jumps to this thread's jump point. */
static void fail (concur_gmp_scope *sc) __attribute__((noreturn));
static void fail (concur_gmp_scope *sc) {
  atomic_store(&sc->failed, 1);
  longjmp(*tl_jb, 1);
}

/* Should this allocation fail (a failure elsewhere in the scope, or one
** asked for by a test)? */
static int doomed (concur_gmp_scope *sc) {
  long c = atomic_load_explicit(&countdown, memory_order_relaxed);
  if (atomic_load_explicit(&sc->failed, memory_order_relaxed)) return 1;
  while (c > 0)
    if (atomic_compare_exchange_weak(&countdown, &c, c - 1)) return c == 1;
  return 0;
}

static int lock (concur_gmp_scope *sc) {
  int shared = atomic_load(&sc->shared) > 0;
  if (shared) pthread_mutex_lock(&sc->mu);
  return shared;
}

static void unlock (concur_gmp_scope *sc, int locked) {
  if (locked) pthread_mutex_unlock(&sc->mu);
}

static void *g_alloc (size_t n) {
  concur_gmp_scope *sc = tl_scope;
  void *p;
  int locked, rc;
  if (sc == NULL) {
    p = malloc(n);
    if (p == NULL) die(n);
    return p;
  }
  if (doomed(sc) || (p = malloc(n)) == NULL) fail(sc);
  locked = lock(sc);
  rc = set_add(sc, p);
  unlock(sc, locked);
  if (rc != 0) {
    free(p);
    fail(sc);
  }
  return p;
}

static void *g_realloc (void *old, size_t osize, size_t nsize) {
  concur_gmp_scope *sc = tl_scope;
  void *p;
  int locked, tracked;
  (void)osize;
  if (sc == NULL) {
    p = realloc(old, nsize);
    if (p == NULL) die(nsize);
    return p;
  }
  if (doomed(sc)) fail(sc);
  /* NOTE: a block from before the scope stays untracked wherever it
  ** moves: it belongs to a value that outlives the scope */
  locked = lock(sc);
  tracked = set_del(sc, old);
  unlock(sc, locked);
  p = realloc(old, nsize);
  if (tracked) {   /* the block, moved or not (old is intact on failure) */
    locked = lock(sc);
    set_add(sc, p ? p : old);
    unlock(sc, locked);
  }
  if (p == NULL) fail(sc);
  return p;
}

static void g_free (void *p, size_t n) {
  concur_gmp_scope *sc = tl_scope;
  (void)n;
  if (sc != NULL && p != NULL) {
    int locked = lock(sc);
    set_del(sc, p);
    unlock(sc, locked);
  }
  free(p);
}

static void install (void) {
  mp_set_memory_functions(g_alloc, g_realloc, g_free);
}

void concur_gmp_init (void) {
  pthread_once(&once, install);
}

/* ---- scopes ------------------------------------------------------------------ */

void concur_gmp_enter (concur_gmp_scope *sc, mpz_ptr out1, mpz_ptr out2) {
  pthread_mutex_init(&sc->mu, NULL);
  atomic_init(&sc->shared, 0);
  atomic_init(&sc->failed, 0);
  memset(sc->inline_set, 0, sizeof sc->inline_set);
  sc->set = sc->inline_set;
  sc->cap = CONCUR_GMP_INLINE;
  sc->used = 0;
  sc->out[0] = out1;
  sc->out[1] = out2;
  /* an output's limbs from before are the scope's: overwritten by it, or
  ** freed if it fails (at most 2 blocks: the inline set has room) */
  for (int i = 0; i < 2; i++)
    if (sc->out[i] && sc->out[i]->_mp_alloc != 0) set_add(sc, sc->out[i]->_mp_d);
  sc->prev = tl_scope;
  sc->prevjb = tl_jb;
  tl_scope = sc;
  tl_jb = &sc->jb;
}

/* Closes the scope on this thread and frees its set (not the blocks). */
static void close_scope (concur_gmp_scope *sc) {
  tl_scope = sc->prev;
  tl_jb = sc->prevjb;
  pthread_mutex_destroy(&sc->mu);
}

void concur_gmp_leave (concur_gmp_scope *sc) {
  close_scope(sc);
  if (sc->set != sc->inline_set) free(sc->set);
}

void concur_gmp_unwind (concur_gmp_scope *sc) {
  close_scope(sc);
  /* NOTE: GMP may leave an integer it was writing inconsistent when an
  ** allocation fails (mpz_mul sets the size before it allocates): outputs
  ** are made a fresh 0 (mpz_init allocates nothing, as of GMP 6.2; before,
  ** one limb outside the scope) and their limbs, the scope's, are freed */
  for (int i = 0; i < 2; i++)
    if (sc->out[i]) mpz_init(sc->out[i]);
  for (size_t i = 0; i < sc->cap; i++) free(sc->set[i]);
  if (sc->set != sc->inline_set) free(sc->set);
  sc->used = 0;
}

concur_gmp_scope *concur_gmp_current (void) {
  return tl_scope;
}

int concur_gmp_run (concur_gmp_scope *sc, void (*fn) (void *, int), void *ud,
                    int i) {
  concur_gmp_scope *volatile prev = tl_scope;
  jmp_buf *volatile prevjb = tl_jb;
  jmp_buf jb;
  int rc = 0;
  if (sc == NULL) {
    fn(ud, i);
    return 0;
  }
  tl_scope = sc;
  tl_jb = &jb;
  if (setjmp(jb) == 0) {
    if (!atomic_load(&sc->failed)) fn(ud, i);
  }
  else rc = -1;
  tl_scope = prev;
  tl_jb = prevjb;
  return rc;
}

void concur_gmp_team (concur_gmp_scope *sc, int delta) {
  if (sc) atomic_fetch_add(&sc->shared, delta);
}

void concur_gmp_check (concur_gmp_scope *sc) {
  if (sc && atomic_load(&sc->failed)) longjmp(*tl_jb, 1);
}

void *concur_gmp_alloc (size_t n) {
  return tl_scope ? g_alloc(n) : malloc(n);
}

void concur_gmp_free (void *p, size_t n) {
  g_free(p, n);
}

void concur_gmp_fail_after (long n) {
  atomic_store(&countdown, n > 0 ? n : 0);
}
