/*
** ratelimit.c: the GCRA rate limiter of ratelimit.h.
**
** GCRA keeps one number, 'tat', the theoretical arrival time of the next
** token: a request at time t conforms when t >= tat - tau, and then moves
** tat to max(tat, t) + interval. That is a token bucket of 'burst' tokens
** refilled at one per 'interval', written as a schedule instead of a count.
**
** Here a caller does not test a time, it reserves one: its slot is
** s = max(now, tat - tau), and tat becomes max(tat, s) + interval. Slots are
** handed out in call order under the mutex, so waiters are served first
** come, first served, and a waiter that wakes late does not shift anyone
** else's slot: the schedule, not the wake-ups, decides the rate. Any window
** of length w holds at most burst + w / interval slots (+1 for the edges).
**
** The struct holds only numbers and a mutex made by concur_mutex_init, so
** with pshared it can live in memory shared between processes. The mutex
** is only ever held for a few arithmetic operations.
*/
#include <math.h>
#include "wait.h"
#include "ratelimit.h"
#include "sync.h"

/* NOTE: the numbers are valid doubles at every step, so when the owner of
** a robust (pshared) mutex dies mid-update, at worst one slot is lost. */
#define rl_lock(rl) concur_mutex_lock(&(rl)->mu)

static int rl_valid (double rate, double per) {
  return isfinite(rate) && isfinite(per) && rate > 0 && per > 0
         && isfinite(per / rate) && per / rate > 0;
}

int concur_ratelimit_init (concur_ratelimit *rl, double rate, double per,
                           double burst, int pshared) {
  if (!rl_valid(rate, per) || !(burst >= 1) || !isfinite(burst)) return -1;
  if (concur_mutex_init(&rl->mu, pshared) != 0) return -1;
  rl->interval = per / rate;
  rl->tau = (burst - 1) * rl->interval;
  rl->tat = 0;   /* the past: the first 'burst' slots are free at once */
  rl->last = -1;
  rl->prevtat = 0;
  return 0;
}

void concur_ratelimit_destroy (concur_ratelimit *rl) {
  pthread_mutex_destroy(&rl->mu);
}

double concur_ratelimit_reserve (concur_ratelimit *rl, double now,
                                 double deadline) {
  double slot;
  rl_lock(rl);
  slot = rl->tat - rl->tau;
  if (slot < now) slot = now;
  if (deadline >= 0 && slot > deadline)
    slot = -1;
  else {
    rl->last = slot;
    rl->prevtat = rl->tat;
    rl->tat = (rl->tat > slot ? rl->tat : slot) + rl->interval;
  }
  pthread_mutex_unlock(&rl->mu);
  return slot;
}

int concur_ratelimit_unreserve (concur_ratelimit *rl, double slot) {
  int back = 0;
  rl_lock(rl);
  if (rl->last == slot && slot >= 0) {   /* still the last one reserved */
    rl->tat = rl->prevtat;
    rl->last = -1;
    back = 1;
  }
  pthread_mutex_unlock(&rl->mu);
  return back;
}

void concur_ratelimit_pause (concur_ratelimit *rl, double until) {
  rl_lock(rl);
  /* the next slot, tat - tau, must not come before 'until' */
  if (rl->tat - rl->tau < until) rl->tat = until + rl->tau;
  rl->last = -1;   /* no undoing a reservation across a pause */
  pthread_mutex_unlock(&rl->mu);
}

void concur_ratelimit_setrate (concur_ratelimit *rl, double rate, double per) {
  if (!rl_valid(rate, per)) return;
  rl_lock(rl);
  {
    double burst = rl->tau / rl->interval + 1;
    double next = rl->tat - rl->interval;   /* the last reserved slot's tat */
    rl->interval = per / rate;
    rl->tau = (burst - 1) * rl->interval;
    /* NOTE: keep the last reservation where it is and space the next one
    ** by the new interval, so slowing down takes effect at once. */
    rl->tat = next + rl->interval;
    rl->last = -1;
  }
  pthread_mutex_unlock(&rl->mu);
}

double concur_ratelimit_peek (concur_ratelimit *rl, double now) {
  double slot;
  rl_lock(rl);
  slot = rl->tat - rl->tau;
  pthread_mutex_unlock(&rl->mu);
  return slot > now ? slot : now;
}
