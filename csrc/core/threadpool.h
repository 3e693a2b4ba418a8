/*
** threadpool.h: the mechanism behind concur.ThreadPool: worker threads fed
** by one FIFO queue of futures, and a watchdog for tasks that cannot stop.
** No Lua here: what runs a task on a worker thread (for concur, a Lua state
** and the task runner of worker.c) is given as a concur_tpool_runner.
**
** The pool reads as core/procsup.h, its sibling for worker processes: new,
** start, submit, stop, wait, join, stats. A future submitted here is
** started by the pool (pending -> running, f->worker being the pool's
** record of the worker thread) and handed to runner->run, which completes
** it.
*/
#ifndef CONCUR_CORE_THREADPOOL_H
#define CONCUR_CORE_THREADPOOL_H

#include <stddef.h>
#include "future.h"

typedef struct concur_tpool concur_tpool;
extern const concur_objtype concur_tpool_type;   /* "concur.ThreadPool" */

/* What runs tasks on the pool's threads; 'ud' is the runner's own data
** (concur_tpool_opts.ud). */
typedef struct concur_tpool_runner {
  /* On a new worker thread, before its first task: makes what runs tasks
  ** there, in *w. Returns 0; or -1 with a malloc'd message in *err (or
  ** NULL: a generic one), and the pool is then broken. *w is given to
  ** close afterwards either way (NULL: nothing to close). */
  int (*open) (void *ud, const char *name, void **w, char **err);
  /* Runs the future f (started: running) on the worker w, and completes
  ** it (concur_future_finish). */
  void (*run) (void *w, concur_future *f);
  /* Asks w to stop the task it runs. Called with that task's f->mu held
  ** (so w is alive) from any thread: it must not block. */
  void (*interrupt) (void *w);
  /* On the worker thread, after its last task: undoes open. */
  void (*close) (void *w);
  /* Frees ud, when the pool is destroyed (NULL: nothing to free). */
  void (*release) (void *ud);
} concur_tpool_runner;

typedef struct concur_tpool_opts {
  int workers;                 /* 1 or more */
  size_t max_pending;          /* queued tasks at most; 0: no bound */
  const char *name;            /* the workers are name_0, name_1, ... */
  const concur_tpool_runner *runner;
  void *ud;                    /* the runner's, released with the pool
                               ** (also when new fails) */
} concur_tpool_opts;

/* A pool with no threads yet (so a caller can register it before any
** thread exists); NULL when memory runs out. */
concur_tpool *concur_tpool_new (const concur_tpool_opts *o);

/* Starts the worker threads. Returns how many started: fewer than asked
** when threads ran out (the pool then has that many), 0 when none did
** (the pool is then stopped). */
int concur_tpool_start (concur_tpool *p);

/* A new future to submit to p (its ops unlink a cancelled queued task,
** interrupt a cancelled running one, and count the stats). */
concur_future *concur_tpool_future (concur_tpool *p);

/* Queues f (taking the caller's reference) once there is room
** (max_pending). Returns CONCUR_OK; a wait result when the wait for room
** ended otherwise (an interrupt: see core/wait.h); or -1 when the pool was
** shut down, -2 when it is broken (with the reason in msg). The
** reference is still the caller's unless CONCUR_OK. */
int concur_tpool_submit (concur_tpool *p, concur_future *f, char *msg,
                         size_t msgsize);

/* Stops submissions; cancels the queue if asked; interrupts running tasks
** if asked. Never blocks on workers. */
void concur_tpool_stop (concur_tpool *p, int cancel_pending, int interrupt);

/* Waits until every worker has ended (those left behind excepted), or the
** deadline (< 0: none); a wait result. */
int concur_tpool_wait (concur_tpool *p, double deadline);

/* Joins the threads of the workers that ended and the watchdog's, once
** (other callers wait for the one who joins); detaches those still
** running. Call it after concur_tpool_wait. */
void concur_tpool_join (concur_tpool *p);

/* Stopped, and every worker ended? */
int concur_tpool_over (concur_tpool *p);

/* Is the calling thread one of p's workers? (It must not wait for p.) */
int concur_tpool_on_worker (concur_tpool *p);

/* workers, pending, running, completed, failed, cancelled */
void concur_tpool_stats (concur_tpool *p, long v[6]);
int concur_tpool_nworkers (concur_tpool *p);

/* Seconds a task has to stop once asked (its deadline passed, it was
** cancelled, the pool closes at exit) before its worker is left behind:
** the task's future fails with kind "timeout", the thread is detached and
** no longer counted, and a new worker takes its place. */
#define CONCUR_TPOOL_STUCK_GRACE 1.0

#endif
