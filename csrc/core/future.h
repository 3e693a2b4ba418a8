/*
** future.h: the future state machine, shared by submitter and worker.
**
** A future is a shared object (see obj.h): pending -> running -> finished,
** failed or cancelled; a pending future may also go straight to cancelled,
** and a running one back to pending when its task never reached the worker
** it was handed to (concur_future_unstart).
** 'out' holds the encoded results (finished) or the encoded error object
** (failed; a table with kind, message, ...). Once done, a future never
** changes again, so readers may use 'out' without the lock after seeing done.
**
** Whoever runs the future (a pool, a thread, the fetch engine) may install
** 'ops': dropped() is told when a pending future is cancelled (so a queue can
** unlink it), interrupt() when a running one is (so the runner can stop it).
** interrupt() is called with f->mu held and must not block.
**
** Waiting on many futures: a concur_waitset registers one node on each future;
** a future that completes appends its index to the set's ring and signals it.
** Lock order: future->mu, then waitset->mu; never the reverse.
**
** The node is the general hook: anyone may add a concur_wnode with its own
** fire() (a state's hub, hub.h, does); completion unlinks every node and
** fires it, once.
*/
#ifndef CONCUR_CORE_FUTURE_H
#define CONCUR_CORE_FUTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include "obj.h"
#include "wire.h"

enum { CONCUR_F_PENDING, CONCUR_F_RUNNING, CONCUR_F_FINISHED, CONCUR_F_FAILED,
       CONCUR_F_CANCELLED };

typedef struct concur_future concur_future;
typedef struct concur_wnode concur_wnode;

/* A waiter on one future: fire(w) is called once when the future is done,
** with the future's mu held (so it must not block nor touch the future),
** after the node was unlinked. The fields are the future's, under its mu. */
struct concur_wnode {
  concur_wnode *prev, *next;
  int linked;
  int first;                   /* fires before the nodes without it */
  void (*fire) (concur_wnode *w);
};

typedef struct concur_future_ops {
  void (*dropped) (concur_future *f);     /* pending future was cancelled */
  void (*interrupt) (concur_future *f);   /* running future was cancelled */
  /* the future is done (with f->mu held, before any waiter wakes) */
  void (*finished) (concur_future *f, int state);
} concur_future_ops;

struct concur_future {
  concur_obj obj;
  pthread_mutex_t mu;
  pthread_cond_t cv;           /* broadcast when done */
  int state;                   /* CONCUR_F_*, under mu */
  atomic_int cancel_req;       /* set when a running future is cancelled */
  concur_buf out;              /* results or error object, once done */
  concur_wnode *waiters;       /* waitset nodes, under mu */
  const concur_future_ops *ops;
  void *owner;                 /* for ops */
  /* the runner's part: free for the owner to use */
  concur_future *next;         /* queue link */
  concur_buf task;             /* encoded function and arguments */
  double timeout;              /* per-task timeout, seconds (< 0: none) */
  double deadline;             /* absolute, set when the task starts */
  void *worker;                /* the worker running it, under mu */
  int tries;                   /* workers that died before it reached them */
};

extern const concur_objtype concur_future_type;

concur_future *concur_future_new (const concur_future_ops *ops, void *owner);

/* pending -> running; returns 0 (and changes nothing) when not pending */
int concur_future_start (concur_future *f, void *worker);

/* running -> pending, for a runner that learns the task never reached its
** worker (a process pool's worker died first): returns 1, or 0 (and
** changes nothing) when it is not running or was cancelled meanwhile. */
int concur_future_unstart (concur_future *f);

/* Completes the future, taking 'out' (moved); failed: 'out' is an encoded
** error object. A cancel request that arrived while running wins: the future
** ends cancelled. Returns the final state. */
int concur_future_finish (concur_future *f, int failed, concur_buf *out);
/* Fails the future with the encoded error object 'out' (moved), even when a
** cancel was requested (the runner gave up on it: see threadpool.c).
** Returns the final state. */
int concur_future_fail (concur_future *f, concur_buf *out);

/* Cancels: returns 1 when the future was pending or running (it will end
** cancelled), 0 when it had already finished. */
int concur_future_cancel (concur_future *f);

int concur_future_state (concur_future *f);
int concur_future_done (concur_future *f);

/* Links w on f (w->fire set by the caller): returns 1, or 0 when f is done
** already (then w is not linked and never fires). */
int concur_future_addwaiter (concur_future *f, concur_wnode *w);
/* Unlinks w: returns 1, or 0 when it had fired (or was never linked). */
int concur_future_delwaiter (concur_future *f, concur_wnode *w);

/* Waits until done or the deadline; returns a concur_cond_wait result. */
int concur_future_wait (concur_future *f, double deadline);

/* Waiting on many futures. */
typedef struct concur_waitset concur_waitset;
concur_waitset *concur_waitset_new (concur_future **fs, size_t n);
/* A waitset that also calls cb(ud, index) as each future completes (at
** once, on this thread, for one that already had): with that future's mu
** and the set's held, so cb must not block and must not touch the future
** (it may take a lock of its own, after them in the lock order). */
concur_waitset *concur_waitset_newcb (concur_future **fs, size_t n,
                                      void (*cb) (void *ud, size_t index), void *ud);
/* Returns the index of the next future to complete (each exactly once), -1
** when all were returned, or -2 - rc for a wait result rc (timeout, ...). */
long concur_waitset_next (concur_waitset *ws, double deadline);
void concur_waitset_free (concur_waitset *ws);

#endif
