/*
** clusterpool.h: the submitting side of concur.cluster.Pool, with no Lua in
** it: tasks go out to a Redis stream, results come back on the pool's own
** stream, and each future resolves once.
**
** A pool has three connections and two threads. submit() seals the task
** (core/clusterframe.h) in the caller's thread and queues it; the sender
** thread writes whatever is queued as one pipeline of XADDs (and the
** cancellations: XDEL, a mark, a PUBLISH), so a burst of submits costs one
** round trip. The receiver thread blocks in XREAD on the pool's result
** stream, verifies each frame, looks its task id up among the pending
** tasks and completes the future; a task id that is no longer pending (a
** task that ran twice, a cancelled one) is counted and dropped, so a future
** resolves exactly once. The third connection serves the caller's own
** queries (stats, the number of workers).
**
** A future's task is pending until its result arrives: cancel() fails it
** at once (kind "cancelled") and tells the nodes, which interrupt it if it
** runs. When Redis stays unreachable for 'timeout' seconds, the tasks that
** could not be sent and every pending future fail with kind "network".
*/
#ifndef CONCUR_CORE_CLUSTERPOOL_H
#define CONCUR_CORE_CLUSTERPOOL_H

#include "future.h"
#include "redis.h"

typedef struct concur_cpool concur_cpool;
extern const concur_objtype concur_cpool_type;

typedef struct concur_cpoolopts {
  const char *url, *queue;
  const char *key;
  size_t keylen;
  double visibility;     /* recorded for the nodes, with the next two */
  int max_retries;
  double result_ttl;
  double timeout;        /* how long Redis may be unreachable */
} concur_cpoolopts;

/* Connects, records the queue's settings and starts the threads. Returns
** NULL with the kind of error ("argument", "network", "limit") in *kind
** and a message in err. */
concur_cpool *concur_cpool_new (const concur_cpoolopts *o, const char **kind,
                                char *err, size_t errsize);

/* A new future for the encoded task (taken, freed on failure), with a
** per-task timeout (< 0: none). NULL when the pool was shut down (or memory
** ran out: *closed tells). The caller owns the returned reference. */
concur_future *concur_cpool_submit (concur_cpool *p, concur_buf *task,
                                    double timeout, int *closed);

/* Stops submissions; with cancel_pending, cancels every pending future.
** Never blocks. */
void concur_cpool_stop (concur_cpool *p, int cancel_pending);

/* Waits until no future is pending (a wait result). */
int concur_cpool_wait (concur_cpool *p, double deadline);

/* Ends the threads (after stop): they finish sending what is queued unless
** 'now', which also drops the connections at once. Once only. */
void concur_cpool_join (concur_cpool *p, int now);

/* Stopped, and nothing pending. */
int concur_cpool_over (concur_cpool *p);

/* pending, completed, failed, cancelled, forged (frames dropped because
** they did not verify), duplicates (results of tasks already resolved) */
void concur_cpool_counts (concur_cpool *p, long v[6]);

/* Runs a pipeline on the pool's own query connection (one caller at a
** time), until the pool's timeout; as concur_redis_exec. */
int concur_cpool_query (concur_cpool *p, const concur_rpipe *pp, redisReply **reps);
concur_redis *concur_cpool_conn (concur_cpool *p);
const char *concur_cpool_queue (concur_cpool *p);
double concur_cpool_visibility (concur_cpool *p);

#endif
