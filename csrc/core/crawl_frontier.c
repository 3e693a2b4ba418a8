/*
** crawl_frontier.c: the local frontier (see crawl_frontier.h).
**
** Hosts sit in a hash table and, while they have entries, in a ring that
** pop turns through. A host's entries are FIFO lists by depth, the lists in
** a chain ordered by depth: a push goes to the list of its depth (found
** from the deep end, where pushes land), a pop takes from the least deep.
** Entries in flight are on one list (a crawler has a few hundred) until
** done. Nothing here is shared between threads: the crawler's state owns
** its frontier.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "crawl_frontier.h"
#include "crawl_journal.h"
#include "crawl_seen.h"

typedef struct bucket {
  struct bucket *next, *prev;   /* by depth */
  uint32_t depth;
  concur_fentry *head, *tail;
} bucket;

typedef struct fhost {
  struct fhost *hnext;          /* hash chain */
  struct fhost *rnext, *rprev;  /* ring */
  int inring;
  unsigned long popno;          /* the pop that last asked its room */
  long room;                    /* what that pop may still take */
  bucket *first, *last;
  size_t keylen;
  char key[];
} fhost;

struct concur_frontier {
  concur_seen seen;
  concur_journal j;
  int journaled;
  uint64_t compact_at;
  concur_buf wbuf;              /* records not written yet */
  fhost **buckets;
  size_t nbuckets, nhosts;
  fhost *ring;
  size_t queued, urlbytes;      /* entries queued or in flight, their bytes */
  concur_fentry *inflight;
  size_t ninflight;
  concur_buf counters;          /* the last saved */
  unsigned long popno;          /* pops so far */
  /* replay only */
  concur_seen done;
  concur_fentry *rhead, *rtail;
};

/* ---- entries and hosts ------------------------------------------------------ */

static size_t hostlen (const char *url, size_t len) {
  const char *s = memchr(url, ':', len), *slash;
  if (s == NULL || (size_t)(s - url) + 3 > len || s[1] != '/' || s[2] != '/')
    return len;
  slash = memchr(s + 3, '/', len - (size_t)(s + 3 - url));
  return slash ? (size_t)(slash - url) : len;
}

static concur_fentry *newentry (const char *url, size_t len, uint64_t fp,
                                uint32_t depth, uint32_t hops) {
  concur_fentry *e = malloc(sizeof *e + len + 1);
  if (e == NULL) return NULL;
  e->next = e->prev = NULL;
  e->fp = fp;
  e->depth = depth;
  e->hops = hops;
  e->len = len;
  e->hostlen = hostlen(url, len);
  memcpy(e->url, url, len);
  e->url[len] = '\0';
  return e;
}

static size_t hash (const char *s, size_t n) {
  size_t h = 5381;
  while (n--) h = h * 33 + (unsigned char)*s++;
  return h;
}

static fhost *gethost (concur_frontier *f, const char *key, size_t keylen) {
  size_t i;
  fhost *h;
  if (f->nhosts >= f->nbuckets) {
    size_t nb = f->nbuckets ? f->nbuckets * 2 : 64;
    fhost **b = calloc(nb, sizeof *b);
    if (b == NULL) return NULL;
    for (size_t k = 0; k < f->nbuckets; k++)
      for (fhost *x = f->buckets[k], *nx; x; x = nx) {
        nx = x->hnext;
        x->hnext = b[hash(x->key, x->keylen) % nb];
        b[hash(x->key, x->keylen) % nb] = x;
      }
    free(f->buckets);
    f->buckets = b;
    f->nbuckets = nb;
  }
  i = hash(key, keylen) % f->nbuckets;
  for (h = f->buckets[i]; h; h = h->hnext)
    if (h->keylen == keylen && memcmp(h->key, key, keylen) == 0) return h;
  if ((h = calloc(1, sizeof *h + keylen + 1)) == NULL) return NULL;
  memcpy(h->key, key, keylen);
  h->keylen = keylen;
  h->hnext = f->buckets[i];
  f->buckets[i] = h;
  f->nhosts++;
  return h;
}

static void ring_add (concur_frontier *f, fhost *h) {
  if (h->inring) return;
  h->inring = 1;
  if (f->ring == NULL) {
    h->rnext = h->rprev = h;
    f->ring = h;
  }
  else {
    h->rnext = f->ring;
    h->rprev = f->ring->rprev;
    h->rprev->rnext = h;
    f->ring->rprev = h;
  }
}

static void ring_remove (concur_frontier *f, fhost *h) {
  if (!h->inring) return;
  h->inring = 0;
  if (h->rnext == h) f->ring = NULL;
  else {
    h->rprev->rnext = h->rnext;
    h->rnext->rprev = h->rprev;
    if (f->ring == h) f->ring = h->rnext;
  }
}

/* Queues e on its host (by depth); -1 when out of memory. */
static int enqueue (concur_frontier *f, concur_fentry *e) {
  fhost *h = gethost(f, e->url, e->hostlen);
  bucket *b;
  if (h == NULL) return -1;
  for (b = h->last; b && b->depth > e->depth; b = b->prev) {}
  if (b == NULL || b->depth != e->depth) {   /* a new list, after b */
    bucket *n = calloc(1, sizeof *n);
    if (n == NULL) return -1;
    n->depth = e->depth;
    n->prev = b;
    n->next = b ? b->next : h->first;
    if (n->next) n->next->prev = n; else h->last = n;
    if (b) b->next = n; else h->first = n;
    b = n;
  }
  e->next = NULL;
  if (b->tail) b->tail->next = e; else b->head = e;
  b->tail = e;
  ring_add(f, h);
  f->queued++;
  f->urlbytes += e->len + 24;
  return 0;
}

/* Takes the least deep entry of h (which has one). */
static concur_fentry *dequeue (concur_frontier *f, fhost *h) {
  bucket *b = h->first;
  concur_fentry *e = b->head;
  if ((b->head = e->next) == NULL) {
    h->first = b->next;
    if (h->first) h->first->prev = NULL; else h->last = NULL;
    free(b);
    if (h->first == NULL) ring_remove(f, h);
  }
  e->next = NULL;
  f->queued--;
  return e;
}

/* ---- the journal ---------------------------------------------------------- */

static int record_queued (concur_buf *b, const concur_fentry *e) {
  uint32_t dh[2];
  dh[0] = e->depth;
  dh[1] = e->hops;
  return concur_journal_frame(b, 'Q', dh, sizeof dh, e->url, e->len);
}

/* Replays one record: queued entries collect (in order) until the end,
** when those never done are queued. */
static int replay (void *ud, int type, const unsigned char *p, size_t n) {
  concur_frontier *f = ud;
  switch (type) {
    case 'Q': {
      uint32_t dh[2];
      concur_fentry *e;
      if (n < sizeof dh) return 0;   /* malformed: left out */
      memcpy(dh, p, sizeof dh);
      e = newentry((const char *)p + sizeof dh, n - sizeof dh,
                   concur_seen_fingerprint(p + sizeof dh, n - sizeof dh),
                   dh[0], dh[1]);
      if (e == NULL || concur_seen_add(&f->seen, e->fp) < 0) {
        free(e);
        return -1;
      }
      if (f->rtail) f->rtail->next = e; else f->rhead = e;
      f->rtail = e;
      return 0;
    }
    case 'D': {
      uint64_t fp;
      if (n != sizeof fp) return 0;
      memcpy(&fp, p, sizeof fp);
      return concur_seen_add(&f->done, fp) < 0 ? -1 : 0;
    }
    case 'S':
      for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t fp;
        memcpy(&fp, p + i, 8);
        if (concur_seen_add(&f->seen, fp) < 0) return -1;
      }
      return 0;
    case 'C':
      f->counters.len = 0;
      return concur_buf_write(&f->counters, p, n) ? -1 : 0;
    default:
      return 0;   /* a record this version does not know */
  }
}

/* Queues what the replay found and was never done. */
static int replay_end (concur_frontier *f) {
  int rc = 0;
  for (concur_fentry *e = f->rhead, *nx; e; e = nx) {
    nx = e->next;
    if (rc == 0 && !concur_seen_has(&f->done, e->fp)) {
      concur_seen_add(&f->done, e->fp);   /* a URL queued twice: once */
      if ((rc = enqueue(f, e)) == 0) continue;
    }
    free(e);
  }
  f->rhead = f->rtail = NULL;
  concur_seen_free(&f->done);
  return rc;
}

/* Rewrites the journal with what is alive. */
static int compact (concur_frontier *f) {
  concur_buf b = CONCUR_BUF_INIT;
  int rc = -1;
  enum { CHUNK = 65536 };   /* fingerprints per 'S' record: 512 KiB */
  uint64_t *chunk = malloc(CHUNK * sizeof *chunk);
  size_t k = 0;
  if (chunk == NULL) return -1;
  if (f->counters.len &&
      concur_journal_frame(&b, 'C', f->counters.data, f->counters.len,
                           NULL, 0))
    goto done;
  for (size_t i = 0; i < f->seen.cap; i++) {
    if (f->seen.slots[i] == 0) continue;
    chunk[k++] = f->seen.slots[i];
    if (k == CHUNK) {
      if (concur_journal_frame(&b, 'S', chunk, k * 8, NULL, 0)) goto done;
      k = 0;
    }
  }
  if (k && concur_journal_frame(&b, 'S', chunk, k * 8, NULL, 0)) goto done;
  for (concur_fentry *e = f->inflight; e; e = e->next)
    if (record_queued(&b, e)) goto done;
  if (f->ring) {
    fhost *h = f->ring;
    do {
      for (bucket *bk = h->first; bk; bk = bk->next)
        for (concur_fentry *e = bk->head; e; e = e->next)
          if (record_queued(&b, e)) goto done;
      h = h->rnext;
    } while (h != f->ring);
  }
  rc = concur_journal_rewrite(&f->j, &b);
done:
  free(chunk);
  concur_buf_free(&b);
  return rc;
}

int concur_frontier_flush (concur_frontier *f) {
  if (!f->journaled) {
    f->wbuf.len = 0;
    return 0;
  }
  if (concur_journal_append(&f->j, &f->wbuf)) return -1;
  /* due: past compact_at, and over twice what a rewrite would write */
  if (f->j.size > f->compact_at &&
      f->j.size > 2 * (f->seen.count * 8 + f->urlbytes + f->counters.len))
    return compact(f);
  return 0;
}

/* ---- the frontier ------------------------------------------------------------ */

concur_frontier *concur_frontier_new (const char *path, uint64_t compact_at,
                                       char *err, size_t errlen) {
  concur_frontier *f = calloc(1, sizeof *f);
  if (f == NULL) {
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return NULL;
  }
  concur_seen_init(&f->seen);
  concur_seen_init(&f->done);
  f->compact_at = compact_at;
  f->j.fd = -1;
  if (path) {
    if (concur_journal_open(&f->j, path, replay, f, err, errlen) != 0) {
      concur_frontier_close(f);
      return NULL;
    }
    f->journaled = 1;
    if (replay_end(f) != 0) {
      if (err && errlen)
        snprintf(err, errlen, "out of memory replaying '%s'", path);
      concur_frontier_close(f);
      return NULL;
    }
  }
  return f;
}

int concur_frontier_seen (concur_frontier *f, const char *url, size_t len) {
  return concur_seen_has(&f->seen, concur_seen_fingerprint(url, len));
}

int concur_frontier_seen_fp (concur_frontier *f, uint64_t fp) {
  return concur_seen_has(&f->seen, fp);
}

int concur_frontier_push (concur_frontier *f, const char *url, size_t len,
                          uint32_t depth, uint32_t hops) {
  uint64_t fp = concur_seen_fingerprint(url, len);
  concur_fentry *e;
  int rc;
  if (concur_seen_has(&f->seen, fp)) return 0;
  if ((e = newentry(url, len, fp, depth, hops)) == NULL) return -1;
  if ((f->journaled && record_queued(&f->wbuf, e)) || enqueue(f, e)) {
    free(e);
    return -1;
  }
  rc = concur_seen_add(&f->seen, fp);
  return rc < 0 ? -1 : 1;
}

size_t concur_frontier_pop (concur_frontier *f, size_t max,
                            long (*room) (void *ud, const char *key,
                                          size_t keylen),
                            void *ud, concur_fentry **out) {
  size_t n = 0, idle = 0, hosts = 0;
  f->popno++;
  if (f->ring) {
    hosts = 1;
    for (fhost *x = f->ring->rnext; x != f->ring; x = x->rnext) hosts++;
  }
  while (n < max && f->ring && idle < hosts) {   /* idle: a whole turn */
    fhost *h = f->ring;                           /* without an entry */
    f->ring = h->rnext;          /* next time, the next host first */
    if (room) {
      if (h->popno != f->popno) {
        h->popno = f->popno;
        h->room = room(ud, h->key, h->keylen);
      }
      if (h->room <= 0) {
        idle++;
        continue;
      }
      h->room--;
    }
    idle = 0;
    if (h->first->head->next == NULL && h->first->next == NULL)
      hosts--;   /* its last entry: it leaves the ring */
    {
      concur_fentry *e = dequeue(f, h);
      e->prev = NULL;
      e->next = f->inflight;
      if (f->inflight) f->inflight->prev = e;
      f->inflight = e;
      f->ninflight++;
      out[n++] = e;
    }
  }
  return n;
}

int concur_frontier_done (concur_frontier *f, const char *url, size_t len) {
  uint64_t fp = concur_seen_fingerprint(url, len);
  for (concur_fentry *e = f->inflight; e; e = e->next)
    if (e->fp == fp && e->len == len && memcmp(e->url, url, len) == 0) {
      if (e->prev) e->prev->next = e->next; else f->inflight = e->next;
      if (e->next) e->next->prev = e->prev;
      f->ninflight--;
      f->urlbytes -= e->len + 24;
      free(e);
      break;
    }
  if (!f->journaled) return 0;
  if (concur_journal_frame(&f->wbuf, 'D', &fp, sizeof fp, NULL, 0))
    return -1;
  return concur_frontier_flush(f);
}

int concur_frontier_save (concur_frontier *f, const void *p, size_t n) {
  f->counters.len = 0;
  if (concur_buf_write(&f->counters, p, n)) return -1;
  if (!f->journaled) return 0;
  if (concur_journal_frame(&f->wbuf, 'C', p, n, NULL, 0)) return -1;
  return concur_frontier_flush(f);
}

const char *concur_frontier_saved (concur_frontier *f, size_t *n) {
  *n = f->counters.len;
  return f->counters.len ? f->counters.data : NULL;
}

void concur_frontier_stats_get (concur_frontier *f,
                                concur_frontier_stats *st) {
  st->queued = f->queued;
  st->inflight = f->ninflight;
  st->seen = f->seen.count;
  st->seen_bytes = concur_seen_bytes(&f->seen);
  st->journal_bytes = f->journaled ? f->j.size : 0;
}

void concur_frontier_close (concur_frontier *f) {
  if (f == NULL) return;
  if (f->journaled) {
    concur_journal_append(&f->j, &f->wbuf);
    concur_journal_close(&f->j);
  }
  for (size_t i = 0; i < f->nbuckets; i++)
    for (fhost *h = f->buckets[i], *nh; h; h = nh) {
      nh = h->hnext;
      for (bucket *b = h->first, *nb; b; b = nb) {
        nb = b->next;
        for (concur_fentry *e = b->head, *ne; e; e = ne) {
          ne = e->next;
          free(e);
        }
        free(b);
      }
      free(h);
    }
  for (concur_fentry *e = f->inflight, *ne; e; e = ne) {
    ne = e->next;
    free(e);
  }
  for (concur_fentry *e = f->rhead, *ne; e; e = ne) {
    ne = e->next;
    free(e);
  }
  free(f->buckets);
  concur_seen_free(&f->seen);
  concur_seen_free(&f->done);
  concur_buf_free(&f->wbuf);
  concur_buf_free(&f->counters);
  free(f);
}
