/*
** fetch_stream.c: a stream of completions. Requests submitted into a
** stream, and other futures it is told to watch (a parse task on a
** ThreadPool), are reported to its one owner in the order they complete:
** next() gives the slot of the next one, at once if one is done, else
** after a wait. A crawler keeps a hundred requests in flight and reacts to
** each as it ends, with one wake-up per completion and no scan.
**
** Slots are indices into the stream's arrays, reused once released. A
** request reports its slot when it is freed (its future done, through
** req.on_free, on the engine thread); a watched future through a one-future
** wait set whose callback runs where the future completes. Both push the
** slot onto the ring under the stream's mutex (after the future's and the
** set's mutexes in the lock order, as future.h allows). Only the owner's
** thread submits, watches, takes and releases, so the arrays grow (under
** the mutex) only there.
*/
#include <stdlib.h>
#include <string.h>
#include "wait.h"
#include "fetch_internal.h"

enum { SLOT_FREE, SLOT_REQUEST, SLOT_WATCHED };

typedef struct watch { concur_fetch_stream *s; size_t slot; } watch;

struct concur_fetch_stream {
  pthread_mutex_t mu;
  pthread_cond_t cv;           /* signalled when a slot is pushed */
  atomic_long refs;            /* the owner's and one per request */
  size_t cap;                  /* slots */
  concur_future **fs;          /* per slot: one reference, or NULL */
  unsigned char *kind;         /* SLOT_* */
  concur_waitset **ws;         /* watched: its wait set */
  watch **wud;                 /* watched: its callback's data */
  size_t *freel, nfree;        /* released slots */
  size_t next;                 /* slots never used start here */
  size_t *ring, rhead, rcount; /* completed slots, oldest first (cap) */
  long inflight;               /* slots not yet taken by next */
  int waiting;                 /* the owner sleeps in next */
};

static void unref (concur_fetch_stream *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < s->next; i++) {
    if (s->ws[i]) concur_waitset_free(s->ws[i]);
    free(s->wud[i]);
    if (s->fs[i]) concur_obj_unref(&s->fs[i]->obj);
  }
  free(s->fs); free(s->kind); free(s->ws); free(s->wud); free(s->freel);
  free(s->ring);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}

/* Pushes a completed slot; s->mu held. */
static void push (concur_fetch_stream *s, size_t slot) {
  s->ring[(s->rhead + s->rcount++) % s->cap] = slot;
  if (s->waiting) pthread_cond_signal(&s->cv);
}

/* A request of the stream is freed (engine thread). */
static void request_freed (void *ud, size_t slot) {
  concur_fetch_stream *s = ud;
  pthread_mutex_lock(&s->mu);
  push(s, slot);
  pthread_mutex_unlock(&s->mu);
  unref(s);
}

/* A watched future completed (where it completed, its mutexes held). */
static void watched_done (void *ud, size_t index) {
  watch *w = ud;
  (void)index;
  pthread_mutex_lock(&w->s->mu);
  push(w->s, w->slot);
  pthread_mutex_unlock(&w->s->mu);
}

concur_fetch_stream *concur_fetch_stream_new (void) {
  concur_fetch_stream *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  pthread_mutex_init(&s->mu, NULL);
  concur_cond_init(&s->cv, 0);
  atomic_init(&s->refs, 1);
  return s;
}

/* A free slot (the arrays grown under the mutex); -1 when out of memory. */
static long newslot (concur_fetch_stream *s) {
  long slot = -1;
  pthread_mutex_lock(&s->mu);
  if (s->nfree) slot = (long)s->freel[--s->nfree];
  else {
    if (s->next == s->cap) {
      size_t ncap = s->cap ? s->cap * 2 : 64;
      concur_future **fs = realloc(s->fs, ncap * sizeof *fs);
      unsigned char *kind;
      concur_waitset **ws;
      watch **wud;
      size_t *freel, *ring;
      if (fs) s->fs = fs;
      kind = fs ? realloc(s->kind, ncap) : NULL;
      if (kind) s->kind = kind;
      ws = kind ? realloc(s->ws, ncap * sizeof *ws) : NULL;
      if (ws) s->ws = ws;
      wud = ws ? realloc(s->wud, ncap * sizeof *wud) : NULL;
      if (wud) s->wud = wud;
      freel = wud ? realloc(s->freel, ncap * sizeof *freel) : NULL;
      if (freel) s->freel = freel;
      ring = freel ? malloc(ncap * sizeof *ring) : NULL;
      if (ring == NULL) goto done;
      for (size_t i = 0; i < s->rcount; i++)   /* oldest first, from 0 */
        ring[i] = s->ring[(s->rhead + i) % s->cap];
      free(s->ring);
      s->ring = ring;
      s->rhead = 0;
      s->cap = ncap;
    }
    slot = (long)s->next++;
  }
  s->fs[slot] = NULL;
  s->ws[slot] = NULL;
  s->wud[slot] = NULL;
  s->kind[slot] = SLOT_FREE;
done:
  pthread_mutex_unlock(&s->mu);
  return slot;
}

static void putback (concur_fetch_stream *s, size_t slot) {
  pthread_mutex_lock(&s->mu);
  s->kind[slot] = SLOT_FREE;
  s->freel[s->nfree++] = slot;
  pthread_mutex_unlock(&s->mu);
}

int concur_fetch_stream_submit (concur_fetch_engine *e,
                                concur_fetch_stream *s,
                                const concur_fetch_spec *spec, size_t *out,
                                char *err, size_t errlen) {
  req *r;
  long slot;
  int rc = concur_fetch_prepare(e, spec, &r, err, errlen);
  if (rc != CONCUR_FETCH_OK) return rc;
  if ((slot = newslot(s)) < 0) {
    concur_fetch_reqfree(r);
    return CONCUR_FETCH_ENOMEM;
  }
  s->fs[slot] = (concur_future *)concur_obj_ref(&r->f->obj);
  s->kind[slot] = SLOT_REQUEST;
  r->on_free = request_freed;
  r->on_free_ud = s;
  r->slot = (size_t)slot;
  atomic_fetch_add(&s->refs, 1);   /* before the engine sees it */
  pthread_mutex_lock(&s->mu);
  s->inflight++;
  pthread_mutex_unlock(&s->mu);
  rc = concur_fetch_enqueue(e, r, r, 1);
  if (rc != CONCUR_FETCH_OK) {
    r->on_free = NULL;
    concur_fetch_reqfree(r);
    atomic_fetch_sub(&s->refs, 1);
    pthread_mutex_lock(&s->mu);
    s->inflight--;
    pthread_mutex_unlock(&s->mu);
    concur_obj_unref(&s->fs[slot]->obj);
    s->fs[slot] = NULL;
    putback(s, (size_t)slot);
    concur_fetch_seterr(err, errlen, "client is closed");
    return rc;
  }
  *out = (size_t)slot;
  return CONCUR_FETCH_OK;
}

int concur_fetch_stream_watch (concur_fetch_stream *s, concur_future *f,
                               size_t *out) {
  long slot = newslot(s);
  watch *w;
  if (slot < 0) return CONCUR_FETCH_ENOMEM;
  if ((w = malloc(sizeof *w)) == NULL) {
    putback(s, (size_t)slot);
    return CONCUR_FETCH_ENOMEM;
  }
  w->s = s;
  w->slot = (size_t)slot;
  s->fs[slot] = (concur_future *)concur_obj_ref(&f->obj);
  s->kind[slot] = SLOT_WATCHED;
  s->wud[slot] = w;
  pthread_mutex_lock(&s->mu);
  s->inflight++;
  pthread_mutex_unlock(&s->mu);
  /* NOTE: s->mu not held: the callback takes it (for a future already
  ** done, right here) */
  if ((s->ws[slot] = concur_waitset_newcb(&f, 1, watched_done, w)) == NULL) {
    pthread_mutex_lock(&s->mu);
    s->inflight--;
    pthread_mutex_unlock(&s->mu);
    free(w);
    s->wud[slot] = NULL;
    concur_obj_unref(&f->obj);
    s->fs[slot] = NULL;
    putback(s, (size_t)slot);
    return CONCUR_FETCH_ENOMEM;
  }
  *out = (size_t)slot;
  return CONCUR_FETCH_OK;
}

long concur_fetch_stream_next (concur_fetch_stream *s, double deadline,
                               int *rc) {
  long slot = -1;
  *rc = CONCUR_OK;
  pthread_mutex_lock(&s->mu);
  while (s->rcount == 0 && s->inflight > 0) {
    s->waiting = 1;
    *rc = concur_cond_wait(&s->cv, &s->mu, deadline);
    s->waiting = 0;
    if (*rc != CONCUR_OK && s->rcount == 0) break;
    *rc = CONCUR_OK;
  }
  if (s->rcount > 0) {
    slot = (long)s->ring[s->rhead];
    s->rhead = (s->rhead + 1) % s->cap;
    s->rcount--;
    s->inflight--;
  }
  else if (*rc != CONCUR_OK) slot = -2;
  pthread_mutex_unlock(&s->mu);
  return slot;
}

long concur_fetch_stream_pending (concur_fetch_stream *s) {
  long n;
  pthread_mutex_lock(&s->mu);
  n = s->inflight;
  pthread_mutex_unlock(&s->mu);
  return n;
}

concur_future *concur_fetch_stream_future (concur_fetch_stream *s,
                                           size_t slot) {
  return slot < s->next ? s->fs[slot] : NULL;
}

int concur_fetch_stream_watched (concur_fetch_stream *s, size_t slot) {
  return slot < s->next && s->kind[slot] == SLOT_WATCHED;
}

void concur_fetch_stream_release (concur_fetch_stream *s, size_t slot) {
  if (slot >= s->next || s->kind[slot] == SLOT_FREE) return;
  if (s->ws[slot]) concur_waitset_free(s->ws[slot]);
  free(s->wud[slot]);
  if (s->fs[slot]) concur_obj_unref(&s->fs[slot]->obj);
  s->ws[slot] = NULL;
  s->wud[slot] = NULL;
  s->fs[slot] = NULL;
  putback(s, slot);
}

void concur_fetch_stream_free (concur_fetch_stream *s) {
  if (s) unref(s);
}
