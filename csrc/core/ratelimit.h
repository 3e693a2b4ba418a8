/*
** ratelimit.h: a rate limiter (GCRA, the token bucket's exact twin) on the
** monotonic clock, with no Lua in it. Used by concur.RateLimiter and by the
** fetch engine (one per host).
**
** 'rate' tokens per 'per' seconds, at most 'burst' at once. Callers reserve
** slots in order: a reservation returns the time the caller may start, and
** later callers get later slots, so a late wake-up neither loses rate nor
** lets a burst through, and waiters are served first come, first served.
** The struct holds no pointers, so it may live in shared memory (pshared).
*/
#ifndef CONCUR_CORE_RATELIMIT_H
#define CONCUR_CORE_RATELIMIT_H

#include <pthread.h>

typedef struct concur_ratelimit {
  pthread_mutex_t mu;
  double interval;   /* seconds per token: per / rate */
  double tau;        /* burst tolerance: (burst - 1) * interval */
  double tat;        /* theoretical arrival time of the next token */
  double last;       /* the last slot reserved, and tat before it */
  double prevtat;
} concur_ratelimit;

/* returns 0, or -1 for bad numbers (rate, per <= 0, burst < 1) */
int concur_ratelimit_init (concur_ratelimit *rl, double rate, double per,
                           double burst, int pshared);
void concur_ratelimit_destroy (concur_ratelimit *rl);

/* Reserves the next slot if it falls at or before 'deadline' (< 0: no
** deadline) and returns its time (<= now: go at once); returns -1 and
** reserves nothing when the slot would come after the deadline. */
double concur_ratelimit_reserve (concur_ratelimit *rl, double now,
                                 double deadline);

/* Gives back the slot that reserve returned, for a caller that will not
** use it (interrupted while it waited): when no later slot was reserved
** since, the schedule goes back to what it was; otherwise the slot stays
** taken (moving later callers' slots would break the order they were
** promised). Returns 1 when given back. */
int concur_ratelimit_unreserve (concur_ratelimit *rl, double slot);

/* The time the next slot would have (>= now), reserving nothing. */
double concur_ratelimit_peek (concur_ratelimit *rl, double now);

/* No slot before 'until' (Retry-After pushes back the whole schedule). */
void concur_ratelimit_pause (concur_ratelimit *rl, double until);

/* Changes the rate (e.g. a robots.txt Crawl-delay); keeps the schedule. */
void concur_ratelimit_setrate (concur_ratelimit *rl, double rate, double per);

#endif
