/*
** clusternode.h: a worker node of concur.cluster, with no Lua in it: takes
** tasks from a queue's Redis stream, has them run by a local executor, and
** stores their results.
**
** The serving thread (the caller's) reads as many tasks as the executor
** has room for (XREADGROUP; a frame that does not verify is acknowledged,
** deleted and counted, never decoded) and submits each to the local
** executor (a ThreadPool or ProcessPool, through Lua), handing the node the
** executor's future (concur_cnode_run). Two threads, each with its own
** connection, do the rest:
**   sender      for each task the executor finished: XADD of its result to
**               the submitter's stream, then XACK and XDEL, pipelined; every
**               visibility/4 seconds a heartbeat (XCLAIM JUSTID of the
**               node's running tasks, so no one takes them over); every
**               visibility/2 seconds XAUTOCLAIM of tasks whose node went
**               silent for 'visibility' (or fails them with kind "broken"
**               once their nodes died max_retries times);
**   subscriber  the queue's cancel channel: a running task that was
**               cancelled is cancelled locally too (its worker interrupted,
**               or killed for a process).
** Delivery is at least once: a task is acknowledged only after its result
** is stored, so a node that dies loses nothing.
*/
#ifndef CONCUR_CORE_CLUSTERNODE_H
#define CONCUR_CORE_CLUSTERNODE_H

#include "future.h"
#include "wire.h"

typedef struct concur_cnode concur_cnode;

typedef struct concur_cnodeopts {
  const char *url, *queue;
  const char *key;
  size_t keylen;
  int workers;           /* the executor's */
  int prefetch;          /* tasks taken beyond 'workers' */
  double timeout;        /* how long Redis may be unreachable */
  const char *name;      /* the node's name (consumer), or NULL: made up */
} concur_cnodeopts;

/* A task handed to the caller: run 'payload' (codec bytes: the function and
** its arguments, re-keyed for this process tree) with 'timeout' (< 0:
** none), then give the executor's future to concur_cnode_run. */
typedef struct concur_cnodetask {
  concur_buf payload;
  double timeout;
  void *rec;             /* the node's */
} concur_cnodetask;

/* Connects, joins the queue's consumer group, starts the threads. NULL with
** a message (and the kind of error: "argument", "network", "limit"). */
concur_cnode *concur_cnode_new (const concur_cnodeopts *o, const char **kind,
                                char *err, size_t errsize);

/* Waits for tasks to run (reading them from Redis when the executor has
** room), until 'deadline' or an interrupt (or a write to
** concur_cnode_wakefd). Returns how many were put in ts (at most max; each
** to be given to concur_cnode_run or concur_cnode_fail, then freed with
** concur_cnode_taskfree), 0 when none came (the deadline, or a write to the
** wake fd: the caller looks at what it waits for), -1 once the node is stopping
** and nothing it took is left to finish, or -2 - rc for a wait result rc
** other than a timeout (an interrupt). */
int concur_cnode_take (concur_cnode *n, concur_cnodetask *ts, int max, double deadline);

/* The executor's future for task t (the node takes a new reference). */
void concur_cnode_run (concur_cnode *n, concur_cnodetask *t, concur_future *f);
/* Task t could not be submitted: fails it with an error object. */
void concur_cnode_fail (concur_cnode *n, concur_cnodetask *t, const char *kind,
                        const char *msg);
void concur_cnode_taskfree (concur_cnodetask *t);

/* An eventfd: any thread, or a signal handler, may write it (8 bytes) to
** wake concur_cnode_take. */
int concur_cnode_wakefd (concur_cnode *n);

/* Stops taking tasks; those taken are finished. Any thread (not a signal
** handler: write the wake fd there and call this from the loop). */
void concur_cnode_stop (concur_cnode *n);

/* Ends the threads, leaves the consumer group when nothing of the node's is
** left there, and frees the node. */
void concur_cnode_free (concur_cnode *n);

/* taken, completed, failed, forged, reclaimed, broken, cancelled */
void concur_cnode_counts (concur_cnode *n, long v[7]);
const char *concur_cnode_name (concur_cnode *n);

#endif
