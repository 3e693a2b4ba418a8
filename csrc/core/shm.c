/*
** shm.c: the shared arena and shared objects of shm.h.
**
** Layout: a header (below), a bitmap with one bit per 64-byte unit, then
** blocks. A block is a run of units: a 16-byte block header (its length in
** units, and a check word tying it to its offset) and the caller's bytes.
** The offset handed out is that of the caller's bytes, never 0.
**
** Allocation is first fit over the bitmap under one process-shared robust
** mutex. A process killed in the middle of alloc or free can only leave
** bits set for units nobody owns (a leak), never a structure that points
** the wrong way: the bitmap is the only record. Freed runs of 64 KiB and
** more give their pages back to the system (FALLOC_FL_PUNCH_HOLE), so the
** memory file does not keep the high-water mark of a busy queue.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clock.h"
#include "shm.h"
#include "sync.h"

#define MAGIC ((uint64_t)0x636f6e6375727368)   /* "concursh" */
#define UNIT 64
#define DEFAULT_SIZE ((size_t)1 << 30)
#define MIN_SIZE ((size_t)1 << 22)
#define PUNCH_MIN ((size_t)64 << 10)

typedef struct arena {
  uint64_t magic;
  uint64_t size;             /* bytes, a multiple of 64 units */
  uint64_t nunits;
  uint64_t bitmap;           /* offset of the bitmap */
  uint64_t first;            /* first unit of the block area */
  pthread_mutex_t mu;
  uint64_t lowfree;          /* no free unit below this one (under mu) */
  _Atomic uint64_t used;     /* bytes in blocks */
} arena;

typedef struct blockhdr {
  uint64_t nunits;
  uint64_t check;            /* offset ^ MAGIC */
} blockhdr;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char *base;           /* NULL: no arena */
static int mapfd = -1;

/* ---- mapping ------------------------------------------------------------- */

/* fd moved to 10 or above, clear of the fds workers get by dup2, and closed
** on exec (workers get the arena from procsup); -1 on failure (fd closed). */
static int fd_high (int fd) {
  int nfd;
  if (fd < 0 || fd >= 10) return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return nfd;
}

static int inherit (void) {
  const char *s = getenv("CONCUR_SHMFD");
  struct stat st;
  char *end;
  long fd;
  void *p;
  if (s == NULL || *s == '\0') return -1;
  fd = strtol(s, &end, 10);
  if (*end != '\0' || fd < 0 || fd > 1 << 20) return -1;
  if (fstat((int)fd, &st) != 0 || (size_t)st.st_size < MIN_SIZE) return -1;
  p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_NORESERVE, (int)fd, 0);
  if (p == MAP_FAILED) return -1;
  if (((arena *)p)->magic != MAGIC
      || ((arena *)p)->size != (uint64_t)st.st_size) {
    munmap(p, (size_t)st.st_size);
    return -1;
  }
  fd = fd_high((int)fd);
  if (fd >= 0) fcntl((int)fd, F_SETFD, FD_CLOEXEC);
  if (fd < 0) {
    munmap(p, (size_t)st.st_size);
    return -1;
  }
  base = p;
  mapfd = (int)fd;
  return 0;
}

static void setbits (uint64_t *bm, uint64_t from, uint64_t n, int on) {
  for (uint64_t i = from; i < from + n; ) {
    if ((i & 63) == 0 && i + 64 <= from + n) {
      bm[i >> 6] = on ? ~(uint64_t)0 : 0;
      i += 64;
      continue;
    }
    if (on) bm[i >> 6] |= (uint64_t)1 << (i & 63);
    else bm[i >> 6] &= ~((uint64_t)1 << (i & 63));
    i++;
  }
}

static int create (void) {
  const char *s = getenv("CONCUR_SHMSIZE");
  size_t size = DEFAULT_SIZE, bmbytes;
  arena *a;
  void *p;
  int fd;
  if (s && *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == '\0' && v >= MIN_SIZE && v <= ((unsigned long long)1 << 40))
      size = (size_t)v;
  }
  size = (size + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
  fd = fd_high(memfd_create("concur-shm", MFD_CLOEXEC));
  if (fd < 0) return -1;
  if (ftruncate(fd, (off_t)size) != 0) goto fail;
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
           fd, 0);
  if (p == MAP_FAILED) goto fail;
  a = p;
  a->size = size;
  a->nunits = size / UNIT;
  a->bitmap = (sizeof *a + UNIT - 1) / UNIT * UNIT;
  bmbytes = a->nunits / 8;
  a->first = (a->bitmap + bmbytes + UNIT - 1) / UNIT;
  a->lowfree = a->first;
  atomic_init(&a->used, 0);
  if (concur_mutex_init(&a->mu, 1) != 0) {
    munmap(p, size);
    goto fail;
  }
  setbits((uint64_t *)((char *)p + a->bitmap), 0, a->first, 1);
  a->magic = MAGIC;
  base = p;
  mapfd = fd;
  return 0;
fail:
  close(fd);
  return -1;
}

static void init_once (void) {
  if (inherit() != 0) create();
}

int concur_shm_init (void) {
  pthread_once(&once, init_once);
  return base ? 0 : -1;
}

int concur_shm_fd (void) {
  return concur_shm_init() == 0 ? mapfd : -1;
}

void *concur_shm_ptr (concur_shoff off) {
  return base + off;
}

size_t concur_shm_used (void) {
  return base ? (size_t)atomic_load(&((arena *)base)->used) : 0;
}

/* ---- blocks -------------------------------------------------------------- */

/* The first run of n free units in [from, to), or UINT64_MAX. */
static uint64_t find_run (const uint64_t *bm, uint64_t from, uint64_t to,
                          uint64_t n) {
  uint64_t run = 0, start = from, i = from;
  while (i < to) {
    uint64_t w = bm[i >> 6];
    if ((i & 63) == 0 && w == ~(uint64_t)0) {
      run = 0;
      i += 64;
      start = i;
      continue;
    }
    if ((i & 63) == 0 && w == 0 && i + 64 <= to) {
      if (run == 0) start = i;
      run += 64;
      i += 64;
      if (run >= n) return start;
      continue;
    }
    if (w >> (i & 63) & 1) {
      run = 0;
      start = i + 1;
    }
    else {
      if (run == 0) start = i;
      if (++run >= n) return start;
    }
    i++;
  }
  return UINT64_MAX;
}

void *concur_shm_alloc (size_t n, concur_shoff *off) {
  arena *a;
  uint64_t units, start;
  blockhdr *h;
  if (concur_shm_init() != 0) return NULL;
  a = (arena *)base;
  if (n > a->size) return NULL;
  units = (n + sizeof(blockhdr) + UNIT - 1) / UNIT;
  concur_sync_lockmu(&a->mu);
  start = find_run((uint64_t *)(base + a->bitmap), a->lowfree, a->nunits,
                   units);
  if (start != UINT64_MAX) {
    setbits((uint64_t *)(base + a->bitmap), start, units, 1);
    if (start == a->lowfree) a->lowfree = start + units;
    atomic_fetch_add(&a->used, units * UNIT);
  }
  pthread_mutex_unlock(&a->mu);
  if (start == UINT64_MAX) return NULL;
  h = (blockhdr *)(base + start * UNIT);
  *off = start * UNIT + sizeof *h;
  h->nunits = units;
  h->check = *off ^ MAGIC;
  return h + 1;
}

/* The header of the block at 'off', or NULL when off names no block. */
static blockhdr *block_at (concur_shoff off) {
  arena *a = (arena *)base;
  blockhdr *h;
  if (base == NULL || off < a->first * UNIT + sizeof *h || off >= a->size
      || off % UNIT != sizeof *h)
    return NULL;
  h = (blockhdr *)(base + off) - 1;
  if (h->check != (off ^ MAGIC) || h->nunits == 0
      || h->nunits > a->nunits - (off - sizeof *h) / UNIT)
    return NULL;
  return h;
}

void concur_shm_free (concur_shoff off) {
  arena *a = (arena *)base;
  blockhdr *h = block_at(off);
  uint64_t start, units;
  if (h == NULL) return;
  start = (off - sizeof *h) / UNIT;
  units = h->nunits;
  h->check = 0;
  if (units * UNIT >= PUNCH_MIN) {   /* give the whole pages back */
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t from = (start * UNIT + sizeof *h + pg - 1) / pg * pg;
    size_t to = (start + units) * UNIT / pg * pg;
    if (to > from)
      fallocate(mapfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                (off_t)from, (off_t)(to - from));
  }
  concur_sync_lockmu(&a->mu);
  setbits((uint64_t *)(base + a->bitmap), start, units, 0);
  if (start < a->lowfree) a->lowfree = start;
  atomic_fetch_sub(&a->used, units * UNIT);
  pthread_mutex_unlock(&a->mu);
}

/* ---- shared objects -------------------------------------------------------- */

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

/* The class and header of the object r names, or NULL. */
static const concur_shclass *check_ref (const concur_shref *r, shhdr **h) {
  const concur_shclass *c;
  blockhdr *b;
  if (concur_shm_init() != 0) return NULL;
  if (r->id == 0 || r->id >= CONCUR_SH_NCLASSES
      || (c = atomic_load(&classes[r->id])) == NULL
      || (b = block_at(r->off)) == NULL || b->nunits * UNIT < sizeof **h)
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
