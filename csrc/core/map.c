/*
** map.c: the shared dictionary of map.h.
**
** Each shard is an open-addressing hash table (linear probing) of slots
** {entry, hash} in one arena block (a table: its capacity, a power of 2,
** then the slots). A slot's entry is 0 (empty), TOMB (a deleted key: the
** probe goes on past it) or the offset of the key's entry block. A table
** grows (and drops its tombstones) by building a new one and then storing
** its offset in the shard: one store, so a process killed in the middle
** leaves the old table whole.
**
** An entry block holds the key's bytes and the value: small values
** without objects are kept in the entry itself, twice over: a write goes
** to the copy not in use and then flips 'cur' (one store), so a reader
** never meets half a value, not even after the writer was killed. Larger
** values, and values holding objects, are a shbuf block of their own whose
** offset the entry holds. An entry too small for a new value is replaced
** by a new entry (one store in the slot).
**
** Blocks that leave the map (a replaced value or entry, a deleted key, an
** old table) are freed after the shard's mutex is released: the mutex
** covers only slot and entry moves and arena allocation.
**
** Invariants: shard.count == the slots holding an entry; the map's count
** is the sum over the shards; a key is in at most one slot; every entry's
** version is at most its shard's stamp.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "map.h"
#include "arena.h"
#include "shbuf.h"

#define TOMB ((uint64_t)1)
#define INLINE_MAX CONCUR_MAP_INLINE
#define MIN_CAP 16

typedef struct mslot {
  uint64_t entry;
  uint64_t hash;
} mslot;

typedef struct mtable {
  uint64_t cap;              /* a power of 2 */
  uint64_t used;             /* slots holding an entry or a tombstone */
  mslot slot[];
} mtable;

typedef struct mentry {
  uint64_t version;
  uint64_t vblock;           /* the value's shbuf block; 0: inline */
  uint32_t klen;             /* the key's bytes */
  uint32_t vcap;             /* room for each inline copy */
  uint32_t vlen[2];          /* the inline copies' lengths */
  uint32_t cur;              /* the copy in use */
  int32_t ktype;
  char bytes[];              /* the key, then two copies of vcap bytes */
} mentry;

/* ---- keys and entries ----------------------------------------------------- */

void concur_mkey_init (concur_mkey *k, int type, const char *p, size_t len) {
  k->type = type;
  k->p = p;
  k->len = len;
  k->hash = concur_hash(p, len) ^ ((uint64_t)type * 0x9e3779b97f4a7c15ull);
}

static mentry *entry_at (uint64_t off) {
  return concur_shm_ptr(off);
}

static char *inline_copy (mentry *e, uint32_t which) {
  return e->bytes + e->klen + (size_t)which * e->vcap;
}

static int key_eq (mentry *e, const concur_mkey *k) {
  return e->ktype == k->type && e->klen == k->len
         && memcmp(e->bytes, k->p, k->len) == 0;
}

/* Whether a value goes inline (in the entry) rather than in a block. */
static int fits_inline (const concur_buf *v) {
  return v->nobjs == 0 && v->len <= INLINE_MAX;
}

/* A new entry for k whose inline copies hold 'room' bytes; its value is
** set by the caller. 0 when the arena is full. */
static uint64_t entry_new (const concur_mkey *k, size_t room) {
  uint64_t off;
  mentry *e = concur_shm_alloc(sizeof *e + k->len + 2 * room, &off);
  if (e == NULL) return 0;
  memset(e, 0, sizeof *e);
  e->klen = (uint32_t)k->len;
  e->vcap = (uint32_t)room;
  e->ktype = k->type;
  memcpy(e->bytes, k->p, k->len);
  return off;
}

/* The blocks an operation takes out of the map, freed once its shard's
** mutex is released. */
typedef struct garbage {
  uint64_t block[3];         /* shbuf blocks, entries, tables */
  int kind[3];
  int n;
} garbage;

enum { G_SHBUF, G_RAW };

static void garbage_add (garbage *g, uint64_t off, int kind) {
  if (off == 0) return;
  g->block[g->n] = off;
  g->kind[g->n++] = kind;
}

/* An entry's blocks: its value's, and its own. */
static void garbage_entry (garbage *g, uint64_t off) {
  garbage_add(g, entry_at(off)->vblock, G_SHBUF);
  garbage_add(g, off, G_RAW);
}

static void garbage_free (garbage *g) {
  for (int i = 0; i < g->n; i++) {
    if (g->kind[i] == G_SHBUF) concur_shbuf_free(g->block[i]);
    else concur_shm_free(g->block[i]);
  }
  g->n = 0;
}

/* ---- tables --------------------------------------------------------------- */

static mtable *table_of (concur_mshard *s) {
  return s->table ? concur_shm_ptr(s->table) : NULL;
}

/* The slot of k in t (found: *found set), else the slot where k would go
** (the first tombstone on its path, or the empty slot that ends it). */
static mslot *table_find (mtable *t, const concur_mkey *k, int *found) {
  uint64_t mask = t->cap - 1, i = k->hash & mask;
  mslot *tomb = NULL;
  *found = 0;
  for (uint64_t probe = 0; probe < t->cap; probe++, i = (i + 1) & mask) {
    mslot *sl = &t->slot[i];
    if (sl->entry == 0) return tomb ? tomb : sl;
    if (sl->entry == TOMB) {
      if (tomb == NULL) tomb = sl;
    }
    else if (sl->hash == k->hash && key_eq(entry_at(sl->entry), k)) {
      *found = 1;
      return sl;
    }
  }
  return tomb;   /* a table is never full: tables grow at 3/4 */
}

/* The slot of k, or NULL. */
static mslot *lookup (concur_mshard *s, const concur_mkey *k) {
  mtable *t = table_of(s);
  int found;
  mslot *sl;
  if (t == NULL) return NULL;
  sl = table_find(t, k, &found);
  return found ? sl : NULL;
}

/* Makes room in s's table for one more key (growing, or rebuilding
** without tombstones); the old table goes to g. -1 when out of memory. */
static int reserve (concur_mshard *s, garbage *g) {
  mtable *t = table_of(s), *nt;
  uint64_t cap, off, old = s->table;
  if (t && (t->used + 1) * 4 <= t->cap * 3) return 0;
  for (cap = MIN_CAP; cap * 3 < (s->count + 1) * 4 * 2; cap *= 2) ;
  nt = concur_shm_alloc(sizeof *nt + cap * sizeof(mslot), &off);
  if (nt == NULL) return -1;
  memset(nt->slot, 0, cap * sizeof(mslot));
  nt->cap = cap;
  nt->used = 0;
  if (t) {
    for (uint64_t i = 0; i < t->cap; i++) {
      uint64_t mask = cap - 1, j;
      if (t->slot[i].entry <= TOMB) continue;
      for (j = t->slot[i].hash & mask; nt->slot[j].entry; j = (j + 1) & mask) ;
      nt->slot[j] = t->slot[i];
      nt->used++;
    }
  }
  s->table = off;            /* the one store that switches tables */
  garbage_add(g, old, G_RAW);
  return 0;
}

/* ---- the map -------------------------------------------------------------- */

static concur_mshard *shard_of (concur_map *m, const concur_mkey *k) {
  return &m->shard[k->hash >> 60];   /* CONCUR_MAP_SHARDS == 16 */
}

int concur_map_init (concur_map *m) {
  memset(m, 0, sizeof *m);
  for (int i = 0; i < CONCUR_MAP_SHARDS; i++)
    if (concur_mutex_init(&m->shard[i].mu, 1) != 0) return -1;
  atomic_init(&m->count, 0);
  atomic_init(&m->xproc, 0);
  return 0;
}

/* Frees a shard's table and entries (the caller owns them now). */
static void free_table (uint64_t toff) {
  mtable *t;
  if (toff == 0) return;
  t = concur_shm_ptr(toff);
  for (uint64_t i = 0; i < t->cap; i++) {
    garbage g = { {0}, {0}, 0 };
    if (t->slot[i].entry <= TOMB) continue;
    garbage_entry(&g, t->slot[i].entry);
    garbage_free(&g);
  }
  concur_shm_free(toff);
}

void concur_map_destroy (concur_map *m) {
  for (int i = 0; i < CONCUR_MAP_SHARDS; i++) {
    free_table(m->shard[i].table);
    m->shard[i].table = 0;
  }
}

/* Copies entry e's value into *v. CONCUR_MAP_OK, NOMEM or FOREIGN. */
static int copy_value (mentry *e, concur_mval *v) {
  int rc;
  if (e->vblock == 0) {
    uint32_t len = e->vlen[e->cur];
    if (len <= sizeof v->small) {
      memcpy(v->small, inline_copy(e, e->cur), len);
      v->n = len;
      return CONCUR_MAP_OK;
    }
    v->n = SIZE_MAX;
    return concur_buf_write(&v->buf, inline_copy(e, e->cur), len)
           ? CONCUR_MAP_NOMEM : CONCUR_MAP_OK;
  }
  v->n = SIZE_MAX;
  rc = concur_shbuf_copyout(e->vblock, &v->buf);
  return rc == 0 ? CONCUR_MAP_OK
         : rc == CONCUR_SHB_FOREIGN ? CONCUR_MAP_FOREIGN : CONCUR_MAP_NOMEM;
}

int concur_map_get (concur_map *m, const concur_mkey *k, concur_mval *v,
                    uint64_t *version) {
  concur_mshard *s = shard_of(m, k);
  mslot *sl;
  int rc = CONCUR_MAP_ABSENT;
  *version = 0;
  concur_mutex_lock(&s->mu);
  sl = lookup(s, k);
  if (sl) {
    mentry *e = entry_at(sl->entry);
    *version = e->version;
    rc = copy_value(e, v);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int concur_map_has (concur_map *m, const concur_mkey *k) {
  concur_mshard *s = shard_of(m, k);
  int yes;
  concur_mutex_lock(&s->mu);
  yes = lookup(s, k) != NULL;
  pthread_mutex_unlock(&s->mu);
  return yes;
}

/* Writes the value into the slot's entry (or a new entry for k put in the
** slot), under s's mutex: 'block' an shbuf block (0: the value is inline,
** in val). What leaves the map goes to g. CONCUR_MAP_OK or NOMEM. */
static int write_value (concur_mshard *s, mslot *sl, int found,
                        const concur_mkey *k, uint64_t block,
                        const concur_buf *val, garbage *g) {
  mentry *e = found ? entry_at(sl->entry) : NULL;
  uint64_t noff;
  if (e && (block || val->len <= e->vcap)) {   /* in place */
    if (block) {
      garbage_add(g, e->vblock, G_SHBUF);
      e->vblock = block;     /* one store */
    }
    else {
      uint32_t other = e->cur ^ 1;
      memcpy(inline_copy(e, other), val->data, val->len);
      e->vlen[other] = (uint32_t)val->len;
      garbage_add(g, e->vblock, G_SHBUF);
      e->vblock = 0;
      e->cur = other;        /* one store */
    }
    e->version = ++s->stamp;
    return CONCUR_MAP_OK;
  }
  /* a new entry: room for twice this value, at least 16 bytes a copy */
  noff = entry_new(k, block ? 0 : (val->len < 16 ? 16 : val->len));
  if (noff == 0) return CONCUR_MAP_NOMEM;
  e = entry_at(noff);
  if (block) e->vblock = block;
  else {
    if (val->len) memcpy(inline_copy(e, 0), val->data, val->len);
    e->vlen[0] = (uint32_t)val->len;
  }
  e->version = ++s->stamp;
  if (found) garbage_entry(g, sl->entry);
  else {
    mtable *t = table_of(s);
    if (sl->entry == 0) t->used++;
    sl->hash = k->hash;
    s->count++;
  }
  sl->entry = noff;          /* one store: the key now reads its new value */
  return CONCUR_MAP_OK;
}

int concur_map_set (concur_map *m, const concur_mkey *k, concur_buf *val,
                    int mode, uint64_t expect, uint64_t *version) {
  concur_mshard *s = shard_of(m, k);
  garbage g = { {0}, {0}, 0 };
  uint64_t block = 0;
  mslot *sl = NULL;
  int rc = CONCUR_MAP_OK, found = 0, added = 0, removed = 0;
  if (val && !fits_inline(val)) {   /* packed before the mutex is taken */
    block = concur_shbuf_pack(val, atomic_load(&m->xproc));
    if (block == 0) return CONCUR_MAP_NOMEM;
  }
  concur_mutex_lock(&s->mu);
  if (block && concur_shbuf_local(block) && atomic_load(&m->xproc)) {
    rc = CONCUR_MAP_LOCAL;
    goto done;
  }
  if (val && reserve(s, &g) != 0) {
    rc = CONCUR_MAP_NOMEM;
    goto done;
  }
  if (s->table) sl = table_find(table_of(s), k, &found);
  if (mode == CONCUR_MAP_ADD && found) rc = CONCUR_MAP_PRESENT;
  else if (mode == CONCUR_MAP_SETIF
           && (found ? entry_at(sl->entry)->version : 0) != expect)
    rc = CONCUR_MAP_CHANGED;
  else if (val == NULL) {    /* delete */
    if (!found) rc = CONCUR_MAP_ABSENT;
    else {
      garbage_entry(&g, sl->entry);
      sl->entry = TOMB;      /* one store */
      s->count--;
      removed = 1;
      s->stamp++;
    }
  }
  else {
    rc = write_value(s, sl, found, k, block, val, &g);
    if (rc == CONCUR_MAP_OK) {
      block = 0;             /* the map has it */
      added = !found;
      if (version) *version = entry_at(sl->entry)->version;
    }
  }
done:
  pthread_mutex_unlock(&s->mu);
  if (added) atomic_fetch_add(&m->count, 1);
  if (removed) atomic_fetch_sub(&m->count, 1);
  garbage_free(&g);
  if (block) concur_shbuf_free(block);
  return rc;
}

/* Reads an inline number (the codec's 'i' or 'd'); 0, or -1. */
static int read_num (mentry *e, concur_num *x) {
  const char *p;
  if (e->vblock || e->vlen[e->cur] != 9) return -1;
  p = inline_copy(e, e->cur);
  if (p[0] == 'i') {
    x->isint = 1;
    memcpy(&x->u.i, p + 1, 8);
  }
  else if (p[0] == 'd') {
    x->isint = 0;
    memcpy(&x->u.n, p + 1, 8);
  }
  else return -1;
  return 0;
}

/* The codec's bytes of a number, into b (9 bytes). */
static void write_num (char *b, concur_num x) {
  b[0] = x.isint ? 'i' : 'd';
  if (x.isint) memcpy(b + 1, &x.u.i, 8);
  else memcpy(b + 1, &x.u.n, 8);
}

int concur_map_incr (concur_map *m, const concur_mkey *k, concur_num d,
                     concur_num *out) {
  concur_mshard *s = shard_of(m, k);
  garbage g = { {0}, {0}, 0 };
  char bytes[9];
  concur_buf val = CONCUR_BUF_INIT;
  mslot *sl = NULL;
  int rc = CONCUR_MAP_OK, found = 0;
  concur_num x = { 1, { 0 } };
  concur_mutex_lock(&s->mu);
  if (reserve(s, &g) != 0) {
    rc = CONCUR_MAP_NOMEM;
    goto done;
  }
  sl = table_find(table_of(s), k, &found);
  if (found && read_num(entry_at(sl->entry), &x) != 0) {
    rc = CONCUR_MAP_NOTNUM;
    goto done;
  }
  x = concur_num_add(x, d);
  write_num(bytes, x);
  val.data = bytes;          /* read only, never freed: a borrowed view */
  val.len = sizeof bytes;
  rc = write_value(s, sl, found, k, 0, &val, &g);
  if (rc == CONCUR_MAP_OK && !found) atomic_fetch_add(&m->count, 1);
done:
  pthread_mutex_unlock(&s->mu);
  garbage_free(&g);
  *out = x;
  return rc;
}

size_t concur_map_len (concur_map *m) {
  int64_t n = atomic_load(&m->count);
  return n > 0 ? (size_t)n : 0;
}

void concur_map_clear (concur_map *m) {
  uint64_t old[CONCUR_MAP_SHARDS];
  int64_t n = 0;
  for (int i = 0; i < CONCUR_MAP_SHARDS; i++) {
    concur_mshard *s = &m->shard[i];
    concur_mutex_lock(&s->mu);
    old[i] = s->table;
    s->table = 0;            /* one store: the shard is empty */
    n += (int64_t)s->count;
    s->count = 0;
    s->stamp++;
    pthread_mutex_unlock(&s->mu);
  }
  atomic_fetch_sub(&m->count, n);
  for (int i = 0; i < CONCUR_MAP_SHARDS; i++) free_table(old[i]);
}

void concur_map_freeitems (concur_mitem *items, size_t n) {
  for (size_t i = 0; i < n; i++) {
    concur_buf_free(&items[i].key);
    concur_buf_free(&items[i].val);
  }
  free(items);
}

int concur_map_snapshot (concur_map *m, int values, concur_mitem **items,
                         size_t *n) {
  concur_mitem *v = NULL;
  size_t total = 0, k = 0;
  int rc = CONCUR_MAP_OK;
  for (int i = 0; i < CONCUR_MAP_SHARDS; i++)
    concur_mutex_lock(&m->shard[i].mu);
  for (int i = 0; i < CONCUR_MAP_SHARDS; i++) total += m->shard[i].count;
  if (total && (v = calloc(total, sizeof *v)) == NULL) rc = CONCUR_MAP_NOMEM;
  for (int i = 0; i < CONCUR_MAP_SHARDS && rc == CONCUR_MAP_OK; i++) {
    mtable *t = table_of(&m->shard[i]);
    for (uint64_t j = 0; t && j < t->cap && rc == CONCUR_MAP_OK; j++) {
      mentry *e;
      if (t->slot[j].entry <= TOMB) continue;
      e = entry_at(t->slot[j].entry);
      v[k].ktype = e->ktype;
      if (concur_buf_write(&v[k].key, e->bytes, e->klen) != 0)
        rc = CONCUR_MAP_NOMEM;
      else if (values) {
        concur_mval mv;
        mv.buf = v[k].val;
        rc = copy_value(e, &mv);
        if (rc == CONCUR_MAP_OK && mv.n != SIZE_MAX
            && concur_buf_write(&mv.buf, mv.small, mv.n) != 0)
          rc = CONCUR_MAP_NOMEM;
        v[k].val = mv.buf;
      }
      k++;
    }
  }
  for (int i = CONCUR_MAP_SHARDS - 1; i >= 0; i--)
    pthread_mutex_unlock(&m->shard[i].mu);
  if (rc != CONCUR_MAP_OK) {
    concur_map_freeitems(v, k);
    *items = NULL;
    *n = 0;
    return rc;
  }
  *items = v;
  *n = k;
  return CONCUR_MAP_OK;
}

int concur_map_share (concur_map *m, char *err, size_t errsize) {
  concur_shref *inner = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  if (atomic_load(&m->xproc)) return 0;
  /* every shard at once: a value put meanwhile either is seen here or
  ** finds the map shared */
  for (int i = 0; i < CONCUR_MAP_SHARDS; i++)
    concur_mutex_lock(&m->shard[i].mu);
  for (int i = 0; i < CONCUR_MAP_SHARDS && rc == 0; i++) {
    mtable *t = table_of(&m->shard[i]);
    for (uint64_t j = 0; t && j < t->cap && rc == 0; j++) {
      mentry *e;
      if (t->slot[j].entry <= TOMB) continue;
      e = entry_at(t->slot[j].entry);
      if (e->vblock == 0) continue;
      if (concur_shbuf_local(e->vblock)) {
        snprintf(err, errsize, "a Map holding an object that cannot leave "
                 "this process (a Future, a fetch Client...) cannot be sent "
                 "to another process");
        rc = -1;
      }
      else if (concur_shbuf_refs(e->vblock, &inner, &n, &cap) != 0) {
        snprintf(err, errsize, "not enough memory");
        rc = -1;
      }
    }
  }
  if (rc == 0) atomic_store(&m->xproc, 1);   /* before the inner ones: a
                                             ** cycle of maps ends here */
  for (int i = CONCUR_MAP_SHARDS - 1; i >= 0; i--)
    pthread_mutex_unlock(&m->shard[i].mu);
  if (rc != 0) {
    for (size_t i = 0; i < n; i++) concur_shref_drop(&inner[i]);
    free(inner);
    return rc;
  }
  return concur_shbuf_shareall(inner, n, err, errsize);
}
