/*
** clusterrate.h: a rate limiter shared through Redis (GCRA, the token
** bucket's exact twin, as a Lua script on the server's clock), with no Lua
** in it: cluster.RateLimiter and cluster.limits (the fetch engine's
** per-host start slots) stand on it.
**
** 'rate' slots per 'per' seconds, at most 'burst' at once. A caller
** reserves the next slot in one round trip (EVALSHA): the script returns
** how long to wait for it, and later callers, on any machine, get later
** slots. A caller that will not use its slot (interrupted while it waited)
** gives it back when nobody reserved after it.
*/
#ifndef CONCUR_CORE_CLUSTERRATE_H
#define CONCUR_CORE_CLUSTERRATE_H

#include "redis.h"

typedef struct concur_crate {
  concur_rscript gcra, unreserve;
  double interval;       /* seconds per slot: per / rate */
  double tau;            /* burst tolerance: (burst - 1) * interval */
} concur_crate;

/* 0, or -1 for bad numbers (rate, per <= 0, burst < 1, a non-finite
** interval) */
int concur_crate_init (concur_crate *c, double rate, double per, double burst);

/* Reserves the next slot of the limiter stored under 'key' when it comes
** within 'limit' seconds (< 0: any); *wait is how long until it (0: now),
** and 'slot' (32 bytes) names it for unreserve. With 'peek', reserves
** nothing and tells *wait. Returns a concur_redis_exec result, and in
** *reserved whether a slot was taken. */
int concur_crate_reserve (concur_crate *c, concur_redis *r, const char *key,
                          double limit, int peek, double deadline,
                          int *reserved, double *wait, char slot[32]);

/* Gives the slot back if no later one was reserved (best effort). */
int concur_crate_unreserve (concur_crate *c, concur_redis *r, const char *key,
                            const char *slot, double deadline);

#endif
