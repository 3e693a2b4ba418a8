/*
** qlocal.h: the in-process FIFO under a Queue that has never crossed to
** another process (queue.h). No Lua.
**
** Producers and consumers each have a mutex of their own, and between them
** items flow through a chain of fixed blocks of slots, written at the tail
** by the producer that holds 'pmu' and read at the head by the consumer
** that holds 'cmu'. A producer publishes what it wrote by advancing
** 'tailpub'; a consumer, by advancing 'headpub'. So a producer and a
** consumer that keep up with each other never take the same mutex and share
** only the slots and the two counters, and neither makes a system call: a
** thread that must wait spins briefly, then sleeps (concur_qlwait: a
** private futex word, a count of sleepers so the other side knows to wake
** them, and a flag so that it wakes them once, not once per item, while
** they get going again; the count and the published position form a Dekker
** pair, both seq_cst, as in sync.h).
**
** An item a consumer took and hands back (concur_qlocal_unget: its copy
** could not be decoded) goes to the 'stash', taken before the blocks, in
** its place by position. The whole queue can be frozen (with both mutexes
** held): it then refuses every call with CONCUR_QFROZEN, and its items
** belong to whoever froze it (queue.c moves them to shared memory when the
** queue first crosses to another process).
**
** Items hold codec bytes and in-process object references: up to
** CONCUR_QL_SMALL bytes without objects in the slot itself; else the
** encoder's buffer and object array, moved in without a copy.
*/
#ifndef CONCUR_CORE_QLOCAL_H
#define CONCUR_CORE_QLOCAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "wait.h"
#include "wire.h"

/* results: CONCUR_QCLOSED, CONCUR_QNOMEM, CONCUR_QFROZEN (result.h) */

#define CONCUR_QL_SMALL 24
#define CONCUR_QL_SLOTS 256    /* per block: a power of 2 */

typedef struct concur_qlitem {
  uint32_t len, nobjs;
  union {
    char data[CONCUR_QL_SMALL];    /* len <= CONCUR_QL_SMALL, no objects */
    struct { char *bytes; concur_obj **objs; } big;   /* malloc'd, owned */
  } u;
} concur_qlitem;

/* Sleepers of one kind (getters, putters): see qlocal.c. */
typedef struct concur_qlwait {
  atomic_int sleepers;             /* counted before they look a last time */
  atomic_int armed;                /* a sleeper came since the last wake-up */
  _Atomic unsigned seq;            /* the futex word: bumped by wake-ups */
} concur_qlwait;

typedef struct concur_qlblock {
  struct concur_qlblock *next;
  concur_qlitem slots[CONCUR_QL_SLOTS];
} concur_qlblock;

/* NOTE: the pads keep what producers write, what consumers write, the two
** published positions (which the other side reads, also while it spins)
** and what each kind of sleeper writes on separate cache lines, whatever
** the struct's alignment: a producer's mutex is not pulled away by a
** consumer that spins on 'tailpub'. */
typedef struct concur_qlocal {
  size_t maxsize;                  /* 0: unbounded */
  size_t spinroom;                 /* room a putter spins for (qlocal.c) */
  atomic_int closed;               /* written with pmu held */
  atomic_int frozen;               /* written with both mutexes held */
  char pad0[64];
  /* producers: under pmu */
  _Atomic unsigned pmu;            /* a small mutex (qlocal.c) */
  concur_qlblock *pblock;          /* the block of position ptail - 1 */
  uint64_t ptail;                  /* the next position to write */
  uint64_t headcache;              /* a past 'headpub' (bounded queues) */
  char pad1a[64];
  _Atomic uint64_t tailpub;        /* == ptail, published */
  char pad1[64];
  /* consumers: under cmu */
  _Atomic unsigned cmu;
  concur_qlblock *cblock;          /* the block of position chead - 1 */
  uint64_t chead;                  /* the next position to read */
  uint64_t tailcache;              /* a past 'tailpub' */
  concur_qlitem *stash;            /* items handed back, by position */
  uint64_t *stashpos;
  size_t nstash, stashcap;
  atomic_size_t nstashed;          /* == nstash, published */
  char pad2a[64];
  _Atomic uint64_t headpub;        /* == chead, published */
  char pad2[64];
  /* sleepers */
  concur_qlwait getters;
  char pad3a[64];
  concur_qlwait putters;
  _Atomic(concur_qlblock *) spare; /* one emptied block, for the producers */
  char pad3[64];
} concur_qlocal;

/* Allocates nothing, and cannot fail. */
void concur_qlocal_init (concur_qlocal *l, size_t maxsize);
/* Frees the items left (dropping their object references) and the blocks;
** nobody uses l any more. */
void concur_qlocal_destroy (concur_qlocal *l);

/* Moves *it into the queue (on CONCUR_OK only: else *it is left as it
** was). Waits while a bounded queue is full, until 'deadline' (0.0: do not
** wait). Returns CONCUR_OK, CONCUR_QCLOSED, CONCUR_QNOMEM, CONCUR_QFROZEN,
** or a wait result of wait.h. */
int concur_qlocal_put (concur_qlocal *l, concur_qlitem *it, double deadline);
/* Moves the next item into *it (now the caller's), with its position in
** *pos; waits while empty as put does. Returns CONCUR_OK, CONCUR_QCLOSED
** (closed and empty), CONCUR_QFROZEN, or a wait result. */
int concur_qlocal_get (concur_qlocal *l, concur_qlitem *it, uint64_t *pos,
                       double deadline);
/* Hands back an item get gave (at position pos), to be taken next in its
** place. CONCUR_OK, CONCUR_QNOMEM or CONCUR_QFROZEN (*it is then still
** the caller's). */
int concur_qlocal_unget (concur_qlocal *l, concur_qlitem *it, uint64_t pos);
/* No more puts; wakes every sleeper. CONCUR_OK or CONCUR_QFROZEN. */
int concur_qlocal_close (concur_qlocal *l);
/* Items in the queue (a hint). */
size_t concur_qlocal_size (concur_qlocal *l);

/* Freezing: lock takes both mutexes (CONCUR_OK, or CONCUR_QFROZEN when it
** was frozen already: then nothing is held); while they are held, 'count'
** and 'each' see the items in order (each calls fn(ud, item, position)
** until it returns nonzero, and returns that); freeze marks the queue
** frozen and frees its blocks (the items now belong to the caller: nothing
** of theirs is freed); unlock drops both mutexes and wakes every sleeper. */
int concur_qlocal_lock (concur_qlocal *l);
size_t concur_qlocal_count (concur_qlocal *l);
int concur_qlocal_each (concur_qlocal *l,
                        int (*fn) (void *ud, concur_qlitem *it, uint64_t pos),
                        void *ud);
uint64_t concur_qlocal_tail (concur_qlocal *l);   /* the next position */
void concur_qlocal_freeze (concur_qlocal *l);
void concur_qlocal_unlock (concur_qlocal *l);

/* An item of object-free bytes, copied (len <= CONCUR_QL_SMALL). The
** bytes and objects an item holds (a larger item's are the encoder's, moved
** in: see queue.c); and freeing one. */
void concur_qlitem_frombytes (concur_qlitem *it, const char *p, size_t len);
static inline const char *concur_qlitem_bytes (const concur_qlitem *it) {
  return it->len <= CONCUR_QL_SMALL && it->nobjs == 0 ? it->u.data
                                                       : it->u.big.bytes;
}
static inline concur_obj *const *concur_qlitem_objs (const concur_qlitem *it) {
  return it->nobjs ? it->u.big.objs : NULL;
}
void concur_qlitem_free (concur_qlitem *it);
/* Turns *it into a buffer that owns what it held (*it is left empty); 0,
** or -1 when out of memory (nothing changed). */
int concur_qlitem_tobuf (concur_qlitem *it, concur_buf *b);

#endif
