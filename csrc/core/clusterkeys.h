/*
** clusterkeys.h: the Redis keys of a cluster queue, shared by the pool
** (clusterpool.c) and the worker node (clusternode.c).
**
** Every key of queue Q is "concur:{Q}:<part>": the braces make Q the hash
** tag, so a Redis Cluster keeps a queue's keys in one slot (its scripts and
** pipelines then stay on one shard) and spreads queues over shards.
**   tasks        stream of task frames; consumer group "workers"
**   config       hash: visibility, max_retries, result_ttl (set by pools)
**   r:<client>   stream of one pool's results (expires after result_ttl)
**   cancel       channel: "<client>:<task id>" of a cancelled task
**   cancelled    sorted set of the same, scored by time (for nodes that
**                were not listening when it was published)
**   nodes        hash: node name -> "<workers> <last seen, unix seconds>"
**   forged       counter of frames dropped because they did not verify
*/
#ifndef CONCUR_CORE_CLUSTERKEYS_H
#define CONCUR_CORE_CLUSTERKEYS_H

#include <stdio.h>

#define CONCUR_CGROUP "workers"
#define CONCUR_CKEY_MAX 320      /* a queue name is at most 255 bytes */

/* Writes key 'part' of queue q into buf (CONCUR_CKEY_MAX bytes). */
static inline int concur_ckey (char *buf, const char *q, const char *part) {
  return snprintf(buf, CONCUR_CKEY_MAX, "concur:{%s}:%s", q, part);
}

#endif
