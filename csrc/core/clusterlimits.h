/*
** clusterlimits.h: cluster.limits, per-host start slots that fetch.Clients
** on many machines share through Redis (core/clusterrate.c's GCRA, one
** limiter per host), with no Lua in it. It is the fetch engine's
** concur_fetch_limits (fetch_engine.h): a client given one reserves each
** request's start on the host's shared limiter, at the client's own rate,
** so all the clients together keep that rate per host.
**
** The engine's thread waits for the answer (one round trip). When Redis
** does not answer within 'timeout', the engine is told so (no slot: its
** own limiter decides) and Redis is not asked again for 'pause' seconds:
** a crawl goes on at each client's own rate rather than stall.
*/
#ifndef CONCUR_CORE_CLUSTERLIMITS_H
#define CONCUR_CORE_CLUSTERLIMITS_H

#include "fetch_engine.h"

extern const concur_objtype concur_climits_type;

/* NULL with a message in err (a bad URL, memory). */
concur_fetch_limits *concur_climits_new (const char *url, const char *prefix,
                                         double timeout, char *err, size_t errsize);

/* How many reservations failed (Redis did not answer in time). */
long concur_climits_failures (concur_fetch_limits *l);

#endif
