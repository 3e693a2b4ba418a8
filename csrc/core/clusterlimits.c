/*
** clusterlimits.c: per-host rate limits shared through Redis (see
** clusterlimits.h).
**
** One connection, used under 'mu' by the engine threads of the clients
** that were given these limits (one at a time). A host's limiter is the key
** concur:{<prefix>:<host>}:rate (its own hash slot: hosts spread over a
** Redis Cluster); the rate is the asking client's.
*/
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clusterlimits.h"
#include "clusterrate.h"
#include "redis.h"
#include "wait.h"

#define PAUSE 5.0     /* seconds without asking, after Redis did not answer */

typedef struct climits {
  concur_fetch_limits base;   /* first: the engine sees this */
  pthread_mutex_t mu;
  concur_redis *r;
  double timeout, quiet_until;
  atomic_long failures;
  char prefix[200];
} climits;

static void climits_destroy (concur_obj *o) {
  climits *l = (climits *)o;
  concur_redis_free(l->r);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

const concur_objtype concur_climits_type = { CONCUR_FETCH_LIMITS_MT, climits_destroy,
  "cluster.limits live in one process: make them in each process that has a "
  "fetch.Client (they share the limits through Redis)" };

static double climits_reserve (concur_fetch_limits *base, const char *host,
                               double rate, double per, double burst) {
  climits *l = (climits *)base;
  concur_crate c;
  char key[512], slot[32];
  double wait, start = -1, now;
  int reserved, rc;
  concur_intr_fn fn;
  void *ud;
  double slice;
  if (concur_crate_init(&c, rate, per, burst) != 0) return -1;
  snprintf(key, sizeof key, "concur:{%s:%s}:rate", l->prefix, host);
  /* NOTE: the engine's thread runs no task; no interrupt must cut this */
  concur_get_interrupt_check(&fn, &ud, &slice);
  concur_set_interrupt_check(NULL, NULL, 0);
  pthread_mutex_lock(&l->mu);
  now = concur_now();
  if (now >= l->quiet_until) {
    rc = concur_crate_reserve(&c, l->r, key, -1, 0, now + l->timeout, &reserved, &wait, slot);
    if (rc == CONCUR_OK && reserved) start = concur_now() + wait;
    else {
      l->quiet_until = concur_now() + PAUSE;
      atomic_fetch_add(&l->failures, 1);
    }
  }
  pthread_mutex_unlock(&l->mu);
  concur_set_interrupt_check(fn, ud, slice);
  return start;
}

concur_fetch_limits *concur_climits_new (const char *url, const char *prefix,
                                         double timeout, char *err, size_t errsize) {
  climits *l = calloc(1, sizeof *l);
  if (l == NULL) {
    snprintf(err, errsize, "not enough memory");
    return NULL;
  }
  l->r = concur_redis_new(url, err, errsize);
  if (l->r == NULL) {
    free(l);
    return NULL;
  }
  concur_obj_init(&l->base.obj, &concur_climits_type);
  l->base.reserve = climits_reserve;
  pthread_mutex_init(&l->mu, NULL);
  atomic_init(&l->failures, 0);
  l->timeout = timeout;
  snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
  return &l->base;
}

long concur_climits_failures (concur_fetch_limits *l) {
  return atomic_load(&((climits *)l)->failures);
}
