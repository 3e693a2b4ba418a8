/*
** clusterpool.c: the submitting side of concur.cluster.Pool (see
** clusterpool.h for what it does).
**
** A task is a record (ctask) from submit until its future is done. Under
** p->mu: the send queue (qhead), the cancellations to send, the two maps
** that find a pending task by its id (results) and by its future
** (cancel), 'npending', 'closing'. A record is in both maps exactly while
** its future is pending; who takes it out of the maps completes or cancels
** the future. Its 'state' tells who frees it: QUEUED and SENDING records
** belong to the sender (a cancel or a result only marks them), SENT ones to
** whoever takes them out of the maps.
**
** Lock order: a future's mu, then p->mu (op_dropped runs after the
** future's lock is released, so in fact they are never nested). Futures
** are completed outside p->mu.
*/
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include "clusterpool.h"
#include "clusterframe.h"
#include "clusterkeys.h"
#include "u64map.h"
#include "wait.h"

#define BATCH 2048          /* tasks per pipeline */
#define READ_COUNT 1024     /* results per XREAD */
#define BLOCK_MS 2000       /* XREAD BLOCK */

enum { QUEUED, SENDING, SENT, DONE };

typedef struct ctask {
  uint64_t id;
  concur_future *f;          /* one reference while pending */
  concur_buf frame;          /* until sent */
  int state, cancelled;
  char entry[48];            /* the stream entry, once sent */
  struct ctask *next;        /* send queue, or a batch */
} ctask;

typedef struct cancelrec {
  uint64_t id;
  char entry[48];            /* "" when it was never sent */
  struct cancelrec *next;
} cancelrec;

/* ---- the pool ------------------------------------------------------------------ */

struct concur_cpool {
  concur_obj obj;
  pthread_mutex_t mu;
  pthread_cond_t work;        /* the sender: something to send, or stop */
  pthread_cond_t drained;     /* npending reached 0 */
  concur_redis *send, *recv, *query;
  concur_mac *mac;
  char queue[256], client[17];
  char tasks[CONCUR_CKEY_MAX], results[CONCUR_CKEY_MAX];
  char cancel_chan[CONCUR_CKEY_MAX], cancelled[CONCUR_CKEY_MAX];
  double timeout, result_ttl, visibility;
  ctask *qhead, *qtail;
  cancelrec *cancels;
  u64map byid, byfut;
  size_t npending;
  _Atomic uint64_t nextid;
  int closing, stopping;      /* no submissions / threads must end */
  int joined;
  pthread_t sender, receiver;
  int has_sender, has_receiver;
  atomic_long completed, failed, cancelledn, forged, duplicates;
};

static void pool_destroy (concur_obj *o) {
  concur_cpool *p = (concur_cpool *)o;
  while (p->cancels) {
    cancelrec *c = p->cancels;
    p->cancels = c->next;
    free(c);
  }
  u64map_free(&p->byid);
  u64map_free(&p->byfut);
  concur_redis_free(p->send);
  concur_redis_free(p->recv);
  concur_redis_free(p->query);
  concur_mac_free(p->mac);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->drained);
  free(p);
}

const concur_objtype concur_cpool_type = { "concur.cluster.Pool", pool_destroy,
  "a cluster Pool belongs to the state that made it" };

static void free_task (ctask *t) {
  concur_buf_free(&t->frame);
  free(t);
}

/* Takes t out of the maps; p->mu held. */
static void unmap (concur_cpool *p, ctask *t) {
  u64map_del(&p->byid, t->id);
  u64map_del(&p->byfut, (uint64_t)(uintptr_t)t->f);
  if (--p->npending == 0) {
    pthread_cond_broadcast(&p->drained);
    if (p->closing) concur_redis_abort(p->recv);   /* nothing more to read */
  }
}

/* A pending future was cancelled (it is already marked cancelled). */
static void op_dropped (concur_future *f) {
  concur_cpool *p = f->owner;
  ctask *t;
  cancelrec *c = NULL;
  pthread_mutex_lock(&p->mu);
  t = u64map_get(&p->byfut, (uint64_t)(uintptr_t)f);
  if (t == NULL) {                  /* completed meanwhile */
    pthread_mutex_unlock(&p->mu);
    return;
  }
  unmap(p, t);
  atomic_fetch_add(&p->cancelledn, 1);
  t->f = NULL;
  if (t->state == SENT) {           /* in the stream: tell the nodes */
    c = calloc(1, sizeof *c);
    if (c) {
      c->id = t->id;
      memcpy(c->entry, t->entry, sizeof c->entry);
      c->next = p->cancels;
      p->cancels = c;
      pthread_cond_signal(&p->work);
    }
    free_task(t);
  }
  else t->cancelled = 1;            /* the sender's: it knows what to do */
  pthread_mutex_unlock(&p->mu);
  concur_obj_unref(&f->obj);        /* the record's reference */
}

static const concur_future_ops pool_ops = { op_dropped, NULL, NULL };

/* Completes f with an error object. */
static void fail (concur_future *f, const char *kind, const char *msg) {
  concur_buf eb = CONCUR_BUF_INIT;
  concur_wire_error(&eb, kind, msg);
  concur_future_finish(f, 1, &eb);
}

/* Fails every pending future that was sent (a network failure). */
static void fail_sent (concur_cpool *p, const char *msg) {
  concur_future **fs = NULL;
  size_t n = 0;
  pthread_mutex_lock(&p->mu);
  if (p->byid.n) fs = malloc(p->byid.n * sizeof *fs);
  for (size_t i = 0; fs && i < p->byid.cap; i++) {
    ctask *t;
    if (!u64map_live(&p->byid, i)) continue;
    t = p->byid.v[i];
    if (t->state != SENT) continue;
    fs[n++] = t->f;
    unmap(p, t);
    free_task(t);
  }
  pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; i < n; i++) {
    atomic_fetch_add(&p->failed, 1);
    fail(fs[i], "network", msg);
    concur_obj_unref(&fs[i]->obj);
  }
  free(fs);
}

/* ---- the sender ---------------------------------------------------------------- */

static int add_cancel (concur_cpool *p, concur_rpipe *pp, const cancelrec *c) {
  char member[64];
  int n = snprintf(member, sizeof member, "%s:%llu", p->client, (unsigned long long)c->id);
  int oom = 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (c->entry[0])
    oom |= concur_rpipe_cmd(pp, 3) | concur_rpipe_str(pp, "XDEL") |
           concur_rpipe_str(pp, p->tasks) | concur_rpipe_str(pp, c->entry);
  oom |= concur_rpipe_cmd(pp, 4) | concur_rpipe_str(pp, "ZADD") |
         concur_rpipe_str(pp, p->cancelled) | concur_rpipe_int(pp, (long long)ts.tv_sec) |
         concur_rpipe_arg(pp, member, (size_t)n);
  oom |= concur_rpipe_cmd(pp, 4) | concur_rpipe_str(pp, "ZREMRANGEBYSCORE") |
         concur_rpipe_str(pp, p->cancelled) | concur_rpipe_str(pp, "-inf") |
         concur_rpipe_int(pp, (long long)(ts.tv_sec - p->result_ttl));
  oom |= concur_rpipe_cmd(pp, 3) | concur_rpipe_str(pp, "PUBLISH") |
         concur_rpipe_str(pp, p->cancel_chan) | concur_rpipe_arg(pp, member, (size_t)n);
  return oom;
}

static void *sender_main (void *arg) {
  concur_cpool *p = arg;
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply **reps = NULL;
  size_t repcap = 0;
  for (;;) {
    ctask *batch = NULL, **tail = &batch;
    cancelrec *cancels;
    int ntasks = 0, rc, oom = 0;
    concur_future **failed = NULL;
    size_t nfailed = 0;
    pthread_mutex_lock(&p->mu);
    while (!p->qhead && !p->cancels && !p->stopping)
      pthread_cond_wait(&p->work, &p->mu);
    if (!p->qhead && !p->cancels) {          /* stopping, and all sent */
      pthread_mutex_unlock(&p->mu);
      break;
    }
    while (p->qhead && ntasks < BATCH) {
      ctask *t = p->qhead;
      p->qhead = t->next;
      t->next = NULL;
      if (t->cancelled) { free_task(t); continue; }   /* never sent */
      t->state = SENDING;
      *tail = t;
      tail = &t->next;
      ntasks++;
    }
    if (p->qhead == NULL) p->qtail = NULL;
    cancels = p->cancels;
    p->cancels = NULL;
    pthread_mutex_unlock(&p->mu);
    concur_rpipe_reset(&pp);
    for (ctask *t = batch; t; t = t->next)
      oom |= concur_rpipe_cmd(&pp, 5) | concur_rpipe_str(&pp, "XADD") |
             concur_rpipe_str(&pp, p->tasks) | concur_rpipe_str(&pp, "*") |
             concur_rpipe_str(&pp, "t") | concur_rpipe_arg(&pp, t->frame.data, t->frame.len);
    for (cancelrec *c = cancels; c; c = c->next) oom |= add_cancel(p, &pp, c);
    if ((size_t)pp.n > repcap) {
      redisReply **nr = realloc(reps, (size_t)pp.n * sizeof *nr);
      if (nr) { reps = nr; repcap = (size_t)pp.n; }
      else oom = 1;
    }
    rc = oom ? CONCUR_TIMEDOUT
             : concur_redis_exec(p->send, concur_deadline(p->timeout), &pp, reps);
    if (ntasks) failed = calloc((size_t)ntasks, sizeof *failed);
    pthread_mutex_lock(&p->mu);
    {
      int i = 0;
      for (ctask *t = batch, *next; t; t = next, i++) {
        const redisReply *r = rc == CONCUR_OK ? reps[i] : NULL;
        next = t->next;
        t->next = NULL;
        if (r && r->type == REDIS_REPLY_STRING && r->len < sizeof t->entry)
          memcpy(t->entry, r->str, r->len + 1);
        concur_buf_free(&t->frame);
        if (t->cancelled || t->state == DONE) {  /* cancelled or answered */
          if (t->cancelled && t->entry[0]) {
            cancelrec *c = calloc(1, sizeof *c);
            if (c) {
              c->id = t->id;
              memcpy(c->entry, t->entry, sizeof c->entry);
              c->next = p->cancels;
              p->cancels = c;
            }
          }
          free_task(t);
        }
        else if (!t->entry[0]) {             /* not sent: fails */
          if (failed) failed[nfailed++] = t->f;
          else concur_obj_unref(&t->f->obj);   /* (no memory even for that) */
          unmap(p, t);
          free_task(t);
        }
        else t->state = SENT;
      }
    }
    pthread_mutex_unlock(&p->mu);
    if (rc == CONCUR_OK) concur_redis_freereplies(reps, pp.n);
    while (cancels) {
      cancelrec *c = cancels;
      cancels = c->next;
      free(c);
    }
    for (size_t i = 0; i < nfailed; i++) {
      char msg[400];
      snprintf(msg, sizeof msg, "cannot send the task to Redis at %s within %g s (%s)",
               concur_redis_where(p->send), p->timeout, concur_redis_error(p->send));
      atomic_fetch_add(&p->failed, 1);
      fail(failed[i], rc == CONCUR_REDIS_CLOSED ? "closed" : "network",
           rc == CONCUR_REDIS_CLOSED ? "the pool was closed" : msg);
      concur_obj_unref(&failed[i]->obj);
    }
    free(failed);
  }
  free(reps);
  concur_rpipe_free(&pp);
  return NULL;
}

/* ---- the receiver ---------------------------------------------------------------- */

/* Handles one result frame (a field value of an entry of the stream). */
static void take_result (concur_cpool *p, const char *data, size_t len) {
  concur_cframe fr;
  concur_buf out = CONCUR_BUF_INIT;
  concur_future *f;
  ctask *t;
  if (concur_cframe_open(p->mac, p->results, strlen(p->results), data, len, &fr) != 0 ||
      (fr.type != 'R' && fr.type != 'E')) {
    atomic_fetch_add(&p->forged, 1);
    return;
  }
  pthread_mutex_lock(&p->mu);
  t = u64map_get(&p->byid, fr.id);
  if (t == NULL) {                   /* ran twice, or was cancelled */
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_add(&p->duplicates, 1);
    return;
  }
  unmap(p, t);
  f = t->f;
  t->f = NULL;
  if (t->state == SENDING) t->state = DONE;   /* the sender frees it */
  else free_task(t);
  pthread_mutex_unlock(&p->mu);
  if (concur_buf_write(&out, fr.payload, fr.len) != 0 ||
      concur_cframe_rehash(out.data, out.len) != 0) {
    atomic_fetch_add(&p->failed, 1);
    fail(f, "transfer", "malformed result (in a signed frame)");
  }
  else {
    int st = concur_future_finish(f, fr.type == 'E', &out);
    atomic_fetch_add(st == CONCUR_F_FINISHED ? &p->completed
                     : st == CONCUR_F_FAILED ? &p->failed : &p->cancelledn, 1);
  }
  concur_buf_free(&out);
  concur_obj_unref(&f->obj);
}

/* Handles an XREAD reply; updates 'last'. */
static void take_entries (concur_cpool *p, const redisReply *r, char *last, size_t lastsize) {
  if (r->type != REDIS_REPLY_ARRAY) return;     /* nil: nothing came */
  for (size_t s = 0; s < r->elements; s++) {
    const redisReply *st = r->element[s];
    if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 ||
        st->element[1]->type != REDIS_REPLY_ARRAY)
      continue;
    for (size_t e = 0; e < st->element[1]->elements; e++) {
      const redisReply *ent = st->element[1]->element[e];
      if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
          ent->element[0]->type != REDIS_REPLY_STRING)
        continue;
      if (ent->element[0]->len < lastsize)
        memcpy(last, ent->element[0]->str, ent->element[0]->len + 1);
      if (ent->element[1]->type != REDIS_REPLY_ARRAY) continue;
      for (size_t k = 1; k < ent->element[1]->elements; k += 2) {
        const redisReply *v = ent->element[1]->element[k];
        if (v->type == REDIS_REPLY_STRING) take_result(p, v->str, v->len);
      }
    }
  }
}

static void *receiver_main (void *arg) {
  concur_cpool *p = arg;
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  char last[48] = "0-0";
  for (;;) {
    redisReply *reps[2] = { NULL, NULL };
    int rc, oom = 0, n;
    pthread_mutex_lock(&p->mu);
    n = p->stopping || (p->closing && p->npending == 0);
    pthread_mutex_unlock(&p->mu);
    if (n) break;
    concur_rpipe_reset(&pp);
    if (strcmp(last, "0-0") != 0)   /* what was read is dropped */
      oom |= concur_rpipe_cmd(&pp, 4) | concur_rpipe_str(&pp, "XTRIM") |
             concur_rpipe_str(&pp, p->results) | concur_rpipe_str(&pp, "MINID") |
             concur_rpipe_str(&pp, last);
    oom |= concur_rpipe_cmd(&pp, 8) | concur_rpipe_str(&pp, "XREAD") |
           concur_rpipe_str(&pp, "COUNT") | concur_rpipe_int(&pp, READ_COUNT) |
           concur_rpipe_str(&pp, "BLOCK") | concur_rpipe_int(&pp, BLOCK_MS) |
           concur_rpipe_str(&pp, "STREAMS") | concur_rpipe_str(&pp, p->results) |
           concur_rpipe_str(&pp, last);
    if (oom) {
      concur_sleep_until(concur_now() + 0.1);   /* memory: try again soon */
      continue;
    }
    rc = concur_redis_exec(p->recv, concur_deadline(p->timeout + BLOCK_MS / 1000.0),
                           &pp, reps);
    if (rc == CONCUR_REDIS_CLOSED) break;
    if (rc != CONCUR_OK) {
      char msg[400];
      snprintf(msg, sizeof msg, "Redis at %s not reachable within %g s (%s)",
               concur_redis_where(p->recv), p->timeout, concur_redis_error(p->recv));
      fail_sent(p, msg);
      continue;
    }
    take_entries(p, reps[pp.n - 1], last, sizeof last);
    concur_redis_freereplies(reps, pp.n);
  }
  concur_rpipe_free(&pp);
  return NULL;
}

/* ---- the interface ----------------------------------------------------------------- */

/* Records the queue's settings and makes its stream and group. */
static int setup_queue (concur_cpool *p, const concur_cpoolopts *o) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply *reps[2];
  char config[CONCUR_CKEY_MAX];
  int rc, oom;
  concur_ckey(config, p->queue, "config");
  oom = concur_rpipe_cmd(&pp, 8) | concur_rpipe_str(&pp, "HSET") |
        concur_rpipe_str(&pp, config) | concur_rpipe_str(&pp, "visibility");
  {
    char num[64];
    snprintf(num, sizeof num, "%.17g", o->visibility);
    oom |= concur_rpipe_str(&pp, num) | concur_rpipe_str(&pp, "max_retries") |
           concur_rpipe_int(&pp, o->max_retries) | concur_rpipe_str(&pp, "result_ttl");
    snprintf(num, sizeof num, "%.17g", o->result_ttl);
    oom |= concur_rpipe_str(&pp, num);
  }
  oom |= concur_rpipe_cmd(&pp, 6) | concur_rpipe_str(&pp, "XGROUP") |
         concur_rpipe_str(&pp, "CREATE") | concur_rpipe_str(&pp, p->tasks) |
         concur_rpipe_str(&pp, CONCUR_CGROUP) | concur_rpipe_str(&pp, "0") |
         concur_rpipe_str(&pp, "MKSTREAM");
  rc = oom ? CONCUR_TIMEDOUT : concur_redis_exec(p->query, concur_deadline(p->timeout), &pp, reps);
  if (rc == CONCUR_OK) concur_redis_freereplies(reps, 2);   /* BUSYGROUP is fine */
  concur_rpipe_free(&pp);
  return rc;
}

concur_cpool *concur_cpool_new (const concur_cpoolopts *o, const char **kind,
                                char *err, size_t errsize) {
  concur_cpool *p = calloc(1, sizeof *p);
  unsigned char rnd[8];
  int rc;
  *kind = "limit";
  if (p == NULL) { snprintf(err, errsize, "not enough memory"); return NULL; }
  concur_obj_init(&p->obj, &concur_cpool_type);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->drained, NULL);
  atomic_init(&p->nextid, 0);
  p->timeout = o->timeout;
  p->result_ttl = o->result_ttl;
  p->visibility = o->visibility;
  snprintf(p->queue, sizeof p->queue, "%s", o->queue);
  if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
    uint64_t t = (uint64_t)(concur_now() * 1e9) ^ (uint64_t)(uintptr_t)p;
    memcpy(rnd, &t, sizeof rnd);
  }
  for (int i = 0; i < 8; i++) snprintf(p->client + 2 * i, 3, "%02x", rnd[i]);
  concur_ckey(p->tasks, p->queue, "tasks");
  concur_ckey(p->cancel_chan, p->queue, "cancel");
  concur_ckey(p->cancelled, p->queue, "cancelled");
  {
    char part[40];
    snprintf(part, sizeof part, "r:%s", p->client);
    concur_ckey(p->results, p->queue, part);
  }
  p->mac = concur_mac_new(o->key, o->keylen);
  *kind = "argument";
  if (p->mac == NULL ||
      !(p->send = concur_redis_new(o->url, err, errsize)) ||
      !(p->recv = concur_redis_new(o->url, err, errsize)) ||
      !(p->query = concur_redis_new(o->url, err, errsize))) {
    if (p->mac == NULL) { *kind = "limit"; snprintf(err, errsize, "cannot make the key"); }
    pool_destroy(&p->obj);
    return NULL;
  }
  rc = setup_queue(p, o);
  if (rc != CONCUR_OK) {
    *kind = rc == CONCUR_TIMEDOUT || rc == CONCUR_REDIS_REFUSED ? "network" : "cancelled";
    snprintf(err, errsize, "Redis at %s: %s", concur_redis_where(p->query),
             concur_redis_error(p->query));
    pool_destroy(&p->obj);
    return NULL;
  }
  concur_obj_ref(&p->obj);                 /* one for each thread */
  concur_obj_ref(&p->obj);
  p->has_sender = pthread_create(&p->sender, NULL, sender_main, p) == 0;
  p->has_receiver = pthread_create(&p->receiver, NULL, receiver_main, p) == 0;
  if (!p->has_sender) concur_obj_unref(&p->obj);
  if (!p->has_receiver) concur_obj_unref(&p->obj);
  if (!p->has_sender || !p->has_receiver) {
    concur_cpool_stop(p, 1);
    concur_cpool_join(p, 1);
    *kind = "limit";
    snprintf(err, errsize, "cannot start the pool's threads");
    concur_obj_unref(&p->obj);
    return NULL;
  }
  return p;
}

concur_future *concur_cpool_submit (concur_cpool *p, concur_buf *task,
                                    double timeout, int *closed) {
  concur_cframe fr;
  concur_future *f;
  ctask *t = calloc(1, sizeof *t);
  *closed = 0;
  f = t ? concur_future_new(&pool_ops, p) : NULL;
  if (f == NULL) {
    free(t);
    concur_buf_free(task);
    return NULL;
  }
  t->id = atomic_fetch_add(&p->nextid, 1) + 1;
  fr.type = 'T';
  fr.id = t->id;
  fr.num = timeout;
  fr.name = p->client;
  fr.namelen = strlen(p->client);
  fr.payload = task->data;
  fr.len = task->len;
  if (concur_cframe_seal(p->mac, p->tasks, strlen(p->tasks), &fr, &t->frame) != 0) {
    concur_buf_free(task);
    free_task(t);
    concur_obj_unref(&f->obj);
    return NULL;
  }
  concur_buf_free(task);
  t->f = (concur_future *)concur_obj_ref(&f->obj);   /* the record's */
  pthread_mutex_lock(&p->mu);
  if (p->closing || u64map_put(&p->byid, t->id, t) != 0) {
    *closed = p->closing;
    pthread_mutex_unlock(&p->mu);
    concur_obj_unref(&f->obj);
    concur_obj_unref(&f->obj);
    free_task(t);
    return NULL;
  }
  if (u64map_put(&p->byfut, (uint64_t)(uintptr_t)f, t) != 0) {
    u64map_del(&p->byid, t->id);
    pthread_mutex_unlock(&p->mu);
    concur_obj_unref(&f->obj);
    concur_obj_unref(&f->obj);
    free_task(t);
    return NULL;
  }
  p->npending++;
  if (p->qtail) p->qtail->next = t;
  else p->qhead = t;
  p->qtail = t;
  pthread_cond_signal(&p->work);
  pthread_mutex_unlock(&p->mu);
  return f;
}

void concur_cpool_stop (concur_cpool *p, int cancel_pending) {
  concur_future **fs = NULL;
  size_t n = 0;
  pthread_mutex_lock(&p->mu);
  p->closing = 1;
  if (p->npending == 0) concur_redis_abort(p->recv);   /* it may stop now */
  if (cancel_pending && p->byfut.n) {
    fs = malloc(p->byfut.n * sizeof *fs);
    for (size_t i = 0; fs && i < p->byfut.cap; i++) {
      if (u64map_live(&p->byfut, i))
        fs[n++] = (concur_future *)concur_obj_ref(&((ctask *)p->byfut.v[i])->f->obj);
    }
  }
  pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; i < n; i++) {   /* each goes through op_dropped */
    concur_future_cancel(fs[i]);
    concur_obj_unref(&fs[i]->obj);
  }
  free(fs);
}

int concur_cpool_wait (concur_cpool *p, double deadline) {
  int rc = CONCUR_OK;
  pthread_mutex_lock(&p->mu);
  while (p->npending > 0 && rc == CONCUR_OK) rc = concur_cond_wait(&p->drained, &p->mu, deadline);
  if (p->npending == 0) rc = CONCUR_OK;
  pthread_mutex_unlock(&p->mu);
  return rc;
}

void concur_cpool_join (concur_cpool *p, int now) {
  pthread_mutex_lock(&p->mu);
  if (p->joined) {
    pthread_mutex_unlock(&p->mu);
    return;
  }
  p->joined = 1;
  p->stopping = 1;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  concur_redis_abort(p->recv);
  if (now) concur_redis_abort(p->send);
  if (p->has_sender) {
    pthread_join(p->sender, NULL);
    concur_obj_unref(&p->obj);
  }
  if (p->has_receiver) {
    pthread_join(p->receiver, NULL);
    concur_obj_unref(&p->obj);
  }
  if (!now) {                       /* the results stream is ours alone */
    concur_rpipe pp = CONCUR_RPIPE_INIT;
    redisReply *rep;
    if (!(concur_rpipe_cmd(&pp, 2) | concur_rpipe_str(&pp, "DEL") |
          concur_rpipe_str(&pp, p->results)) &&
        concur_redis_exec(p->send, concur_deadline(1.0), &pp, &rep) == CONCUR_OK)
      freeReplyObject(rep);
    concur_rpipe_free(&pp);
  }
}

int concur_cpool_over (concur_cpool *p) {
  int over;
  pthread_mutex_lock(&p->mu);
  over = p->closing && p->npending == 0;
  pthread_mutex_unlock(&p->mu);
  return over;
}

void concur_cpool_counts (concur_cpool *p, long v[6]) {
  pthread_mutex_lock(&p->mu);
  v[0] = (long)p->npending;
  pthread_mutex_unlock(&p->mu);
  v[1] = atomic_load(&p->completed);
  v[2] = atomic_load(&p->failed);
  v[3] = atomic_load(&p->cancelledn);
  v[4] = atomic_load(&p->forged);
  v[5] = atomic_load(&p->duplicates);
}

int concur_cpool_query (concur_cpool *p, const concur_rpipe *pp, redisReply **reps) {
  return concur_redis_exec(p->query, concur_deadline(p->timeout), pp, reps);
}

concur_redis *concur_cpool_conn (concur_cpool *p) { return p->query; }
const char *concur_cpool_queue (concur_cpool *p) { return p->queue; }
double concur_cpool_visibility (concur_cpool *p) { return p->visibility; }
