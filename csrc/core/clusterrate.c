/*
** clusterrate.c: GCRA in Redis (see clusterrate.h).
**
** The limiter is one string key: the theoretical arrival time (TAT) of the
** next slot, in seconds of the server's clock with microseconds. The
** script reads TIME, so every machine reserves on one clock; a caller's
** slot is TAT - tau, and reserving moves TAT on by one interval. The key
** expires once it no longer holds back anyone.
*/
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clusterrate.h"
#include "wait.h"

static const char GCRA[] =
  "local t = redis.call('TIME')\n"
  "local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"
  "local interval, tau, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
  "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
  "if tat < now then tat = now end\n"
  "local wait = tat - tau - now\n"
  "if wait < 0 then wait = 0 end\n"
  "if ARGV[4] == 'peek' or (limit >= 0 and wait > limit) then\n"
  "  return { 0, string.format('%.6f', wait) }\n"
  "end\n"
  "local new = string.format('%.6f', tat + interval)\n"
  "redis.call('SET', KEYS[1], new, 'PX', math.ceil((tat + interval - now + tau) * 1000) + 1000)\n"
  "return { 1, string.format('%.6f', wait), new }\n";

static const char UNRESERVE[] =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
  "  redis.call('SET', KEYS[1], string.format('%.6f', tonumber(ARGV[1]) - tonumber(ARGV[2])),"
  " 'KEEPTTL')\n"
  "  return 1\n"
  "end\n"
  "return 0\n";

/* the scripts' digests, computed once */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static concur_rscript gcra, unreserve;

static void init_scripts (void) {
  concur_rscript_init(&gcra, GCRA);
  concur_rscript_init(&unreserve, UNRESERVE);
}

int concur_crate_init (concur_crate *c, double rate, double per, double burst) {
  if (!(rate > 0) || !(per > 0) || !(burst >= 1) || !isfinite(burst)) return -1;
  c->interval = per / rate;
  if (!(c->interval > 0) || !isfinite(c->interval)) return -1;
  c->tau = (burst - 1) * c->interval;
  pthread_once(&once, init_scripts);
  c->gcra = gcra;
  c->unreserve = unreserve;
  return 0;
}

static int numarg (concur_rpipe *p, double v) {
  char num[64];
  int n = snprintf(num, sizeof num, "%.6f", v);
  return concur_rpipe_arg(p, num, (size_t)n);
}

int concur_crate_reserve (concur_crate *c, concur_redis *r, const char *key,
                          double limit, int peek, double deadline,
                          int *reserved, double *wait, char slot[32]) {
  concur_rpipe p = CONCUR_RPIPE_INIT;
  redisReply *rep = NULL;
  int rc;
  *reserved = 0;
  *wait = 0;
  slot[0] = '\0';
  if (concur_rpipe_evalsha(&p, &c->gcra, 1, 4) | concur_rpipe_str(&p, key) |
      numarg(&p, c->interval) | numarg(&p, c->tau) | numarg(&p, limit < 0 ? -1 : limit) |
      concur_rpipe_str(&p, peek ? "peek" : "")) {
    concur_rpipe_free(&p);
    return CONCUR_TIMEDOUT;
  }
  rc = concur_redis_eval(r, deadline, &c->gcra, &p, &rep);
  concur_rpipe_free(&p);
  if (rc != CONCUR_OK) return rc;
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2 &&
      rep->element[0]->type == REDIS_REPLY_INTEGER &&
      rep->element[1]->type == REDIS_REPLY_STRING) {
    *reserved = rep->element[0]->integer == 1;
    *wait = strtod(rep->element[1]->str, NULL);
    if (*reserved && rep->elements == 3 && rep->element[2]->type == REDIS_REPLY_STRING &&
        rep->element[2]->len < 32)
      memcpy(slot, rep->element[2]->str, rep->element[2]->len + 1);
  }
  freeReplyObject(rep);
  return CONCUR_OK;
}

int concur_crate_unreserve (concur_crate *c, concur_redis *r, const char *key,
                            const char *slot, double deadline) {
  concur_rpipe p = CONCUR_RPIPE_INIT;
  redisReply *rep = NULL;
  int rc;
  if (concur_rpipe_evalsha(&p, &c->unreserve, 1, 2) | concur_rpipe_str(&p, key) |
      concur_rpipe_str(&p, slot) | numarg(&p, c->interval)) {
    concur_rpipe_free(&p);
    return CONCUR_TIMEDOUT;
  }
  rc = concur_redis_eval(r, deadline, &c->unreserve, &p, &rep);
  concur_rpipe_free(&p);
  if (rc == CONCUR_OK) freeReplyObject(rep);
  return rc;
}
