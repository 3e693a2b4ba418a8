/*
** queue.h: a closable MPMC queue of encoded values (concur_buf), in plain C.
** csrc/queue.c binds it to Lua as concur.Queue.
**
** Orders: FIFO, LIFO, or priority (lowest first, FIFO among equals: each
** item carries a sequence number that breaks ties). 'maxsize' 0 means
** unbounded. Blocking calls take an absolute deadline (wait.h; 0.0: do not
** wait) and return a wait result of wait.h or one of the codes below.
**
** The queue's own struct lives in the shared arena (arena.h), so processes
** can share it. A FIFO queue keeps its items in this process (qlocal.h:
** in-process memory, a mutex for each side, private futexes) for as long
** as it has never crossed to another process; the first crossing
** (concur_queue_share) moves them into the shared store below, and every
** call goes there from then on, threads asleep in the queue included. The
** shared store holds its items in arena blocks (the codec bytes and the
** item's objects as exported references), ordered by an array that is an
** arena block too. An item of the shared store may also hold an object
** that cannot leave its process (a fetch Client, a Future): that one is kept
** by pointer, and only the process that put it can take the item.
*/
#ifndef CONCUR_CORE_QUEUE_H
#define CONCUR_CORE_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "qlocal.h"
#include "wait.h"
#include "wire.h"

/* results: CONCUR_QCLOSED, CONCUR_QNOMEM, CONCUR_QFOREIGN, CONCUR_QLOCAL
** (result.h) */

enum { CONCUR_FIFO, CONCUR_LIFO, CONCUR_PRIORITY };

#define CONCUR_QINLINE 32      /* items this small, without objects, are kept
                               ** in their array slot: no block at all */

typedef struct concur_qitem {
  uint64_t block;            /* the item's arena block (concur_shoff), or 0 */
  double prio;               /* CONCUR_PRIORITY only */
  uint64_t seq;
  uint32_t len;              /* block 0: the bytes, in 'data' */
  uint32_t pad;
  char data[CONCUR_QINLINE];
} concur_qitem;

/* Items: a ring (FIFO, LIFO) or a binary min-heap on (prio, seq), in an
** arena block. */
typedef struct concur_qstore {
  uint64_t items;            /* concur_shoff of the array; 0: none */
  size_t cap, head, n;
  int order;
} concur_qstore;

typedef struct concur_queue {
  /* NOTE: the pads keep apart what every call reads (the first line), what
  ** the shared store's mutex guards (written by whoever holds it), the
  ** count that spinners read outside it, and the task count every put
  ** writes: else each put and get would miss on lines the other side has
  ** just written, and a spinner would pull the mutex away from its holder */
  size_t maxsize;            /* 0: unbounded */
  atomic_int fast;           /* the items are in 'local' (until shared) */
  atomic_int closed;         /* written under mu, read anywhere */
  atomic_int xproc;          /* sent to another process once: set for good */
  char pad0[64];
  pthread_mutex_t mu;        /* the shared store's */
  concur_fcond notempty, notfull;
  int getters, putters;      /* threads sleeping on each condition (mu) */
  int sharing;               /* a share is under way (queue.c: share_mu) */
  uint64_t seq;
  concur_qstore store;
  char pad1[64];
  atomic_size_t count;       /* == store.n; written under mu, read anywhere */
  char pad2[64];
  atomic_size_t unfinished;  /* put but not yet task_done'd */
  atomic_int joiners;        /* threads in join */
  _Atomic unsigned donegen;  /* futex word: bumped when unfinished hits 0 */
  char pad3[64];
  concur_qlocal local;
} concur_queue;

/* An item taken by get: the caller decodes its bytes and objects, then
** commits (the item is gone) or ungets it (it returns to its place, before
** the items put after it), e.g. when its copy cannot be decoded. */
typedef struct concur_qtaken {
  int fast;                  /* a 'local' item, else a store item */
  uint64_t pos;              /* fast: its position */
  concur_qlitem li;
  concur_qitem it;
  const char *data;          /* what to decode: valid until commit/unget */
  size_t len;
  concur_obj *const *objs;
  size_t nobjs;
} concur_qtaken;

int concur_queue_init (concur_queue *q, int order, size_t maxsize);
/* frees the items left (dropping their object references); never blocks */
void concur_queue_destroy (concur_queue *q);
/* Moves *item into the queue: on CONCUR_OK only (else *item is left as it
** was, the caller's). */
int concur_queue_put (concur_queue *q, concur_buf *item, double prio,
                      double deadline);
/* The same for an item of object-free bytes, copied; len <= CONCUR_QL_SMALL. */
int concur_queue_putbytes (concur_queue *q, const char *p, size_t len,
                           double prio, double deadline);
/* On CONCUR_OK *t holds the next item, out of the queue but not gone: its
** bytes and objects are t->data, t->objs (a store item's are copied into
** *out, which has no bytes and no objects on entry and may have room).
** On CONCUR_QFOREIGN (the item holds objects of another process) or
** CONCUR_QNOMEM the item was put back already. */
int concur_queue_get (concur_queue *q, concur_buf *out, double deadline,
                      concur_qtaken *t);
void concur_queue_commit (concur_qtaken *t);
/* CONCUR_OK, or CONCUR_QNOMEM when even its place could not be had (the
** item is then dropped) */
int concur_queue_unget (concur_queue *q, concur_qtaken *t);
void concur_queue_close (concur_queue *q);
/* Readies q to cross to another process (once): 0, or -1 with a message in
** err when an item holds an object that cannot leave this process (or the
** shared memory is full). Queues inside its items are readied too. From
** then on put refuses such items (CONCUR_QLOCAL). */
int concur_queue_share (concur_queue *q, char *err, size_t errsize);
int concur_queue_isclosed (concur_queue *q);
size_t concur_queue_size (concur_queue *q);
int concur_queue_full (concur_queue *q);
int concur_queue_taskdone (concur_queue *q);   /* -1: called too often */
/* CONCUR_OK once every item put was task_done'd, else the wait result */
int concur_queue_join (concur_queue *q, double deadline);

#endif
