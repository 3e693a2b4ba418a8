/*
** queue.h: a closable MPMC queue of encoded values (concur_buf), in plain C.
** csrc/queue.c binds it to Lua as concur.Queue.
**
** Orders: FIFO, LIFO, or priority (lowest first, FIFO among equals: each
** item carries a sequence number that breaks ties). 'maxsize' 0 means
** unbounded. Blocking calls take an absolute deadline (clock.h) and return a
** wait result of clock.h or one of the codes below.
**
** The whole queue lives in the shared arena (shm.h), so processes can
** share it: its items are arena blocks holding the codec bytes and the
** item's objects as exported references, and the array that orders them is
** an arena block too. An item may also hold an object that cannot leave
** its process (a fetch Client, a Future): that one is kept by pointer, and
** only the process that put it can take the item.
*/
#ifndef CONCUR_CORE_QUEUE_H
#define CONCUR_CORE_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "clock.h"
#include "wire.h"

#define CONCUR_QCLOSED 32      /* put after close; get once closed and empty */
#define CONCUR_QNOMEM 33       /* the store could not grow */
#define CONCUR_QFOREIGN 34     /* the item taken held an object of another
                               ** process's (and was dropped) */
#define CONCUR_QLOCAL 35       /* the item holds an in-process object and the
                               ** queue is shared with other processes */

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
  pthread_mutex_t mu;
  concur_fcond notempty, notfull, alldone;
  size_t maxsize;            /* 0: unbounded */
  atomic_int closed;         /* written under mu, read anywhere */
  atomic_int xproc;          /* sent to another process once: set for good */
  atomic_size_t count;       /* == store.n; written under mu, read anywhere */
  size_t unfinished;         /* put but not yet task_done'd */
  int getters, putters, joiners;   /* threads sleeping on each condition */
  uint64_t seq;
  concur_qstore store;
} concur_queue;

int concur_queue_init (concur_queue *q, int order, size_t maxsize);
/* frees the items left (dropping their object references); never blocks */
void concur_queue_destroy (concur_queue *q);
/* Takes *item (left empty) whatever the result; CONCUR_OK when queued. */
int concur_queue_put (concur_queue *q, concur_buf *item, double prio,
                      double deadline);
/* On CONCUR_OK *out (with no bytes and no objects on entry; it may have
** room) holds the item, now the caller's. On CONCUR_QFOREIGN the item was
** taken but could not be had here. */
int concur_queue_get (concur_queue *q, concur_buf *out, double deadline);
void concur_queue_close (concur_queue *q);
/* Readies q to cross to another process (once): 0, or -1 with a message in
** err when an item holds an object that cannot leave this process. Queues
** inside its items are readied too. From then on put refuses such items
** (CONCUR_QLOCAL). */
int concur_queue_share (concur_queue *q, char *err, size_t errsize);
int concur_queue_isclosed (concur_queue *q);
size_t concur_queue_size (concur_queue *q);
int concur_queue_full (concur_queue *q);
int concur_queue_taskdone (concur_queue *q);   /* -1: called too often */
/* CONCUR_OK once every item put was task_done'd, else the wait result */
int concur_queue_join (concur_queue *q, double deadline);

#endif
