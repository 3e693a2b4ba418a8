/*
** arena.c: the shared arena of arena.h.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sys.h"
#include "wait.h"
#include "arena.h"

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

static pthread_mutex_t initmu = PTHREAD_MUTEX_INITIALIZER;
static char *_Atomic shbase; /* NULL: no arena (yet) */
static char *base;           /* the same, once set (never changes then) */
static int mapfd = -1;
static char why[240];        /* why there is no arena (under initmu) */

/* ---- mapping ------------------------------------------------------------- */

/* Maps the arena named by CONCUR_SHMFD. Returns 0; -1 when there is none
** to inherit (no variable, or a descriptor that is not an arena: a process
** started by a worker's task); -2 when it is there but cannot be mapped
** (then no arena at all: a new one would give the parent's objects' offsets
** to other objects). */
static int inherit (void) {
  const char *s = getenv("CONCUR_SHMFD");
  struct stat st;
  arena head;
  char *end, e[120];
  long fd;
  void *p;
  if (s == NULL || *s == '\0') return -1;
  fd = strtol(s, &end, 10);
  if (*end != '\0' || fd < 0 || fd > 1 << 20) return -1;
  if (fstat((int)fd, &st) != 0 || (size_t)st.st_size < MIN_SIZE
      || pread((int)fd, &head, sizeof head, 0) != (ssize_t)sizeof head
      || head.magic != MAGIC || head.size != (uint64_t)st.st_size)
    return -1;
  p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_NORESERVE, (int)fd, 0);
  if (p == MAP_FAILED) {
    concur_syserr(errno, e, sizeof e);
    snprintf(why, sizeof why, "cannot map the %zu MiB of shared memory of the "
             "parent process (%s: see ulimit -v)", (size_t)st.st_size >> 20, e);
    return -2;
  }
  fd = concur_fd_high((int)fd);
  if (fd >= 0) fcntl((int)fd, F_SETFD, FD_CLOEXEC);
  if (fd < 0) {
    concur_syserr(errno, e, sizeof e);
    snprintf(why, sizeof why, "cannot keep the shared memory file: %s", e);
    munmap(p, (size_t)st.st_size);
    return -2;
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

/* The size to reserve: CONCUR_SHMSIZE, else DEFAULT_SIZE but no more than
** a quarter of the address space left under RLIMIT_AS (ulimit -v). */
static size_t wanted_size (void) {
  const char *s = getenv("CONCUR_SHMSIZE");
  size_t size = DEFAULT_SIZE;
  struct rlimit rl;
  if (s && *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == '\0' && v >= MIN_SIZE && v <= ((unsigned long long)1 << 40))
      return (size_t)v;
  }
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    size_t vm = concur_vm_size(), room = rl.rlim_cur > vm ? (size_t)rl.rlim_cur - vm : 0;
    if (size > room / 4) size = room / 4;
  }
  return size < MIN_SIZE ? MIN_SIZE : size;
}

static int create (void) {
  size_t size = wanted_size(), bmbytes;
  arena *a;
  void *p = MAP_FAILED;
  char e[120];
  int fd;
  size = (size + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
  fd = concur_fd_high(memfd_create("concur-shm", MFD_CLOEXEC));
  if (fd < 0) {
    concur_syserr(errno, e, sizeof e);
    snprintf(why, sizeof why, "cannot make the shared memory file: %s", e);
    return -1;
  }
  /* a smaller one when the address space is short (ulimit -v) */
  for (; size >= MIN_SIZE; size = size / 2 & ~(((size_t)1 << 20) - 1)) {
    if (ftruncate(fd, (off_t)size) != 0) break;
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
             fd, 0);
    if (p != MAP_FAILED || errno != ENOMEM) break;
  }
  if (p == MAP_FAILED) {
    concur_syserr(errno, e, sizeof e);
    snprintf(why, sizeof why, "cannot map %zu MiB of shared memory (%s: see "
             "ulimit -v, or set CONCUR_SHMSIZE lower)", wanted_size() >> 20, e);
    close(fd);
    return -1;
  }
  a = p;
  a->size = size;
  a->nunits = size / UNIT;
  a->bitmap = (sizeof *a + UNIT - 1) / UNIT * UNIT;
  bmbytes = a->nunits / 8;
  a->first = (a->bitmap + bmbytes + UNIT - 1) / UNIT;
  a->lowfree = a->first;
  atomic_init(&a->used, 0);
  if (concur_mutex_init(&a->mu, 1) != 0) {
    snprintf(why, sizeof why, "cannot make the shared memory's mutex");
    munmap(p, size);
    close(fd);
    return -1;
  }
  setbits((uint64_t *)((char *)p + a->bitmap), 0, a->first, 1);
  a->magic = MAGIC;
  base = p;
  mapfd = fd;
  return 0;
}

int concur_shm_init (void) {
  if (atomic_load_explicit(&shbase, memory_order_acquire)) return 0;
  pthread_mutex_lock(&initmu);
  /* NOTE: tried again after a failure: the descriptors may be back */
  if (base == NULL && inherit() == -1) create();
  if (base) atomic_store_explicit(&shbase, base, memory_order_release);
  pthread_mutex_unlock(&initmu);
  return atomic_load_explicit(&shbase, memory_order_acquire) ? 0 : -1;
}

int concur_shm_fd (void) {
  return concur_shm_init() == 0 ? mapfd : -1;
}

void *concur_shm_ptr (concur_shoff off) {
  return base + off;
}

size_t concur_shm_used (void) {
  return atomic_load_explicit(&shbase, memory_order_acquire)
    ? (size_t)atomic_load(&((arena *)base)->used) : 0;
}

void concur_shm_why (char *buf, size_t size) {
  if (concur_shm_init() != 0) {
    pthread_mutex_lock(&initmu);
    snprintf(buf, size, "no shared memory: %s", why);
    pthread_mutex_unlock(&initmu);
  }
  else
    snprintf(buf, size, "shared memory is full (%zu of its %zu MiB in use; "
             "set CONCUR_SHMSIZE=<bytes> in the environment of the first "
             "process for more)", concur_shm_used() >> 20,
             (size_t)((arena *)base)->size >> 20);
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
  concur_mutex_lock(&a->mu);
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
  concur_mutex_lock(&a->mu);
  setbits((uint64_t *)(base + a->bitmap), start, units, 0);
  if (start < a->lowfree) a->lowfree = start;
  atomic_fetch_sub(&a->used, units * UNIT);
  pthread_mutex_unlock(&a->mu);
}

void concur_shm_sync (void) {
  if (concur_shm_init() != 0) return;
  concur_mutex_lock(&((arena *)base)->mu);
  pthread_mutex_unlock(&((arena *)base)->mu);
}

/* The usable size of the block at 'off', or 0 when off names no block. */
size_t concur_shm_blocksize (concur_shoff off) {
  blockhdr *h = block_at(off);
  return h ? h->nunits * UNIT - sizeof *h : 0;
}
