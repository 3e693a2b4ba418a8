/*
** shobj.c: shared objects (shobj.h): blocks of the arena with a header (a
** reference count for the whole process tree, the class id, a magic word)
** before the object's state, and the references that carry them from one
** process to another.
*/
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shobj.h"
#include "holdings.h"

typedef struct shhdr {
  _Atomic long refs;         /* across the process tree */
  uint32_t id;               /* its class */
  uint32_t magic;
} shhdr;

#define SHMAGIC 0x6f626a73u

static const concur_shclass *_Atomic classes[CONCUR_SH_NCLASSES];

void concur_shclass_register (const concur_shclass *c) {
  if (c->id > 0 && c->id < CONCUR_SH_NCLASSES)
    atomic_store(&classes[c->id], c);
}

const concur_shclass *concur_shclass_of (const concur_objtype *t) {
  for (int i = 1; i < CONCUR_SH_NCLASSES; i++) {
    const concur_shclass *c = atomic_load(&classes[i]);
    if (c && c->type == t) return c;
  }
  return NULL;
}

static concur_shobj *wrap (const concur_shclass *c, concur_shoff off) {
  concur_shobj *w = malloc(sizeof *w);
  if (w == NULL) return NULL;
  concur_obj_init(&w->obj, c->type);
  w->cls = c;
  w->off = off;
  w->state = (shhdr *)concur_shm_ptr(off) + 1;
  concur_holdings_add(off);       /* its reference, counted */
  return w;
}

/* Drops one arena reference of the object at off (its header h). */
static void unref (const concur_shclass *c, shhdr *h, concur_shoff off) {
  if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1) {
    if (c->release) c->release(h + 1);
    h->magic = 0;
    concur_shm_free(off);
  }
}

concur_shobj *concur_shobj_new (const concur_shclass *c, size_t size) {
  concur_shoff off;
  shhdr *h = concur_shm_alloc(sizeof *h + size, &off);
  concur_shobj *w;
  if (h == NULL) return NULL;
  memset(h, 0, sizeof *h + size);
  atomic_init(&h->refs, 1);
  h->id = c->id;
  h->magic = SHMAGIC;
  w = wrap(c, off);
  if (w == NULL) concur_shm_free(off);
  return w;
}

void concur_shobj_destroy (concur_obj *o) {
  concur_shobj *w = (concur_shobj *)o;
  concur_holdings_remove(w->off);   /* uncounted, then dropped */
  unref(w->cls, concur_shm_ptr(w->off), w->off);
  free(w);
}

int concur_shobj_share (concur_obj *o, char *err, size_t errsize) {
  concur_shobj *w = (concur_shobj *)o;
  return w->cls->share ? w->cls->share(w->state, err, errsize) : 0;
}

void concur_shobj_export (concur_obj *o, concur_shref *r) {
  concur_shobj *w = (concur_shobj *)o;
  shhdr *h = concur_shm_ptr(w->off);
  atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
  r->id = w->cls->id;
  r->pad = 0;
  r->off = w->off;
}

void concur_shobj_lend (concur_obj *o, concur_shref *r) {
  concur_shobj *w = (concur_shobj *)o;
  r->id = w->cls->id;
  r->pad = 0;
  r->off = w->off;
}

/* The class and header of the object r names, or NULL. */
static const concur_shclass *check_ref (const concur_shref *r, shhdr **h) {
  const concur_shclass *c;
  if (concur_shm_init() != 0) return NULL;
  if (r->id == 0 || r->id >= CONCUR_SH_NCLASSES
      || (c = atomic_load(&classes[r->id])) == NULL
      || concur_shm_blocksize(r->off) < sizeof **h)
    return NULL;
  *h = concur_shm_ptr(r->off);
  if ((*h)->magic != SHMAGIC || (*h)->id != r->id
      || atomic_load(&(*h)->refs) <= 0)
    return NULL;
  return c;
}

concur_obj *concur_shobj_import (const concur_shref *r) {
  shhdr *h;
  const concur_shclass *c = check_ref(r, &h);
  concur_shobj *w;
  if (c == NULL) return NULL;
  w = wrap(c, r->off);
  if (w == NULL) {
    unref(c, h, r->off);
    return NULL;
  }
  return &w->obj;
}

void concur_shref_dup (const concur_shref *r) {
  shhdr *h;
  if (check_ref(r, &h)) atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
}

void *concur_shref_state (const concur_shref *r) {
  return (shhdr *)concur_shm_ptr(r->off) + 1;
}

int concur_shref_share (const concur_shref *r, char *err, size_t errsize) {
  shhdr *h;
  const concur_shclass *c = check_ref(r, &h);
  return c && c->share ? c->share(h + 1, err, errsize) : 0;
}

void concur_shref_drop (const concur_shref *r) {
  shhdr *h;
  const concur_shclass *c = check_ref(r, &h);
  if (c) unref(c, h, r->off);
}

/* Drops n references of a dead process to the object at off. */
static void drop_held (concur_shoff off, uint64_t n) {
  concur_shref r;
  shhdr *h;
  const concur_shclass *c;
  r.off = off;
  r.pad = 0;
  if (concur_shm_blocksize(off) < sizeof *h) return;
  r.id = ((shhdr *)concur_shm_ptr(off))->id;
  while (n-- > 0 && (c = check_ref(&r, &h)) != NULL) unref(c, h, off);
}

void concur_shobj_reclaim (concur_shoff holdings) {
  concur_holdings_reclaim(holdings, drop_held);
}

int concur_shobj_sendable (const concur_buf *b, const char *what, char *msg,
                          size_t size) {
  for (size_t i = 0; i < b->nobjs; i++) {
    const concur_objtype *t = b->objs[i]->type;
    char err[200];
    if (concur_shclass_of(t) == NULL) {
      if (t->stays)
        snprintf(msg, size, "a %s (in the %s) cannot be sent to another "
                 "process: %s", t->name, what, t->stays);
      else
        snprintf(msg, size, "a %s (in the %s) cannot be sent to another "
                 "process: only Lock, RLock, Condition, Event, Semaphore, "
                 "BoundedSemaphore, Barrier, Value, Queue and RateLimiter "
                 "objects can", t->name, what);
      return 0;
    }
    if (concur_shobj_share(b->objs[i], err, sizeof err) != 0) {
      snprintf(msg, size, "%s (in the %s)", err, what);
      return 0;
    }
  }
  return 1;
}
