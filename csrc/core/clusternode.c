/*
** clusternode.c: a worker node of concur.cluster (see clusternode.h).
**
** A task the node took is a record (nrec) from the XREADGROUP (or
** XAUTOCLAIM) that brought it until its result is stored and it is
** acknowledged. Under n->mu: the list of records in flight (the heartbeat
** refreshes their entries; cancellations find them there), the incoming
** queue (what the serving thread read and the sender reclaimed, for the
** serving thread), the done queue (-> the sender), the count of tasks at
** the executor, each record's flags, the queue's settings, 'stopping' and
** 'quit'. A record is freed by the sender only, after its result was
** stored; it reaches the done queue once the executor finished it AND the
** caller's thread registered it (whichever comes second puts it there), so
** the caller never touches a freed record.
**
** Lock order: a future's mu, a waitset's mu, then n->mu (the executor's
** completion callback takes n->mu under the first two), so nothing here
** cancels a future or frees a waitset with n->mu held.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include "clusternode.h"
#include "clusterframe.h"
#include "clusterkeys.h"
#include "redis.h"
#include "u64map.h"
#include "wait.h"

#define BLOCK_MS 1000          /* XREADGROUP BLOCK */
#define CANCEL_MEMORY 65536    /* cancelled task names remembered */

/* Refreshes the node's running tasks (those still its own) and its entry
** in the nodes hash; returns the queue's settings. */
static const char HEARTBEAT[] =
  "local tasks, nodes, config = KEYS[1], KEYS[2], KEYS[3]\n"
  "local group, me = ARGV[1], ARGV[2]\n"
  "redis.call('HSET', nodes, me, ARGV[3] .. ' ' .. redis.call('TIME')[1])\n"
  "local mine = {}\n"
  "for i = 4, #ARGV do\n"
  "  if redis.call('XPENDING', tasks, group, ARGV[i], ARGV[i], 1, me)[1] then\n"
  "    mine[#mine + 1] = ARGV[i]\n"
  "  end\n"
  "end\n"
  "if #mine > 0 then\n"
  "  mine[#mine + 1] = 'JUSTID'\n"
  "  redis.call('XCLAIM', tasks, group, me, 0, unpack(mine))\n"
  "end\n"
  "return redis.call('HMGET', config, 'visibility', 'max_retries', 'result_ttl')\n";

/* Claims tasks idle for longer than the visibility; each with the number
** of times it was delivered. Forgets consumers long gone. */
static const char RECLAIM[] =
  "local tasks, nodes = KEYS[1], KEYS[2]\n"
  "local group, me, idle, count, cursor, stale = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],"
  " tonumber(ARGV[6])\n"
  "local r = redis.call('XAUTOCLAIM', tasks, group, me, idle, cursor, 'COUNT', count)\n"
  "local out = { r[1] }\n"
  "for _, e in ipairs(r[2]) do\n"
  "  local p = redis.call('XPENDING', tasks, group, e[1], e[1], 1)\n"
  "  out[#out + 1] = { e[1], e[2], p[1] and p[1][4] or 1 }\n"
  "end\n"
  "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', tasks, group)) do\n"
  "  local f = {}\n"
  "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
  "  if f.pending == 0 and f.idle > stale and f.name ~= me then\n"
  "    redis.call('XGROUP', 'DELCONSUMER', tasks, group, f.name)\n"
  "    redis.call('HDEL', nodes, f.name)\n"
  "  end\n"
  "end\n"
  "return out\n";

/* Leaves: the nodes hash, and the group when nothing of ours is left. */
static const char LEAVE[] =
  "redis.call('HDEL', KEYS[2], ARGV[2])\n"
  "if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then\n"
  "  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])\n"
  "  return 0\n"
  "end\n"
  "return 1\n";

typedef struct nrec {
  struct concur_cnode *node;
  char entry[48], client[24];
  uint64_t id;
  double timeout;
  concur_buf payload;          /* until handed to the caller */
  concur_future *local;        /* one reference, once running */
  concur_waitset *watch;
  int registered, finished;    /* see the file's comment */
  int cancelled;
  int rtype;                   /* 'E' when 'result' holds the outcome */
  concur_buf result;
  struct nrec *prev, *next;    /* in flight */
  struct nrec *qnext;          /* incoming or done */
} nrec;

struct concur_cnode {
  pthread_mutex_t mu;
  pthread_cond_t work;         /* the sender */
  concur_redis *fetch, *send, *sub;
  concur_mac *mac;
  char name[160], queue[256], info[32];
  char tasks[CONCUR_CKEY_MAX], config[CONCUR_CKEY_MAX], nodes[CONCUR_CKEY_MAX];
  char forged[CONCUR_CKEY_MAX], cancel_chan[CONCUR_CKEY_MAX], cancelled[CONCUR_CKEY_MAX];
  int capacity;                /* tasks at the executor at once */
  int nbusy;                   /* tasks at the executor now, under mu */
  int nincoming;
  int waiting;                 /* the serving thread waits for room */
  double timeout;
  double visibility, result_ttl;   /* under mu */
  int max_retries;
  nrec *inflight;
  int ninflight;
  nrec *in_head, *in_tail, *done_head, *done_tail;
  int wakefd;
  int stopping, quit;
  u64map recent;               /* hashes of cancelled tasks' names */
  uint64_t *ring;              /* the same, oldest first */
  size_t ringpos;
  concur_rscript heartbeat, reclaim, leave;
  char cursor[48];
  pthread_t sender, subscriber;
  int has_sender, has_subscriber;
  atomic_long taken, completed, failed, nforged, reclaimed, broken, ncancelled;
};

/* ---- records ----------------------------------------------------------------------- */

static void wake (concur_cnode *n) {
  uint64_t one = 1;
  if (write(n->wakefd, &one, sizeof one) < 0) { /* full: it is awake */ }
}

static uint64_t name_hash (const char *client, uint64_t id) {
  uint64_t h = 1469598103934665603ULL;
  for (const char *c = client; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
  h = (h ^ id) * 1099511628211ULL;
  return h == 0 || h == CONCUR_U64_TOMB ? 1 : h;
}

/* Remembers a cancelled task's name; n->mu held. */
static void remember (concur_cnode *n, uint64_t h) {
  uint64_t old = n->ring[n->ringpos];
  if (u64map_get(&n->recent, h)) return;
  if (old) u64map_del(&n->recent, old);
  n->ring[n->ringpos] = h;
  n->ringpos = (n->ringpos + 1) % CANCEL_MEMORY;
  u64map_put(&n->recent, h, (void *)1);
}

static void push_done (concur_cnode *n, nrec *r) {
  r->qnext = NULL;
  if (n->done_tail) n->done_tail->qnext = r;
  else n->done_head = r;
  n->done_tail = r;
  pthread_cond_signal(&n->work);
}

static void rec_free (nrec *r) {
  if (r->watch) concur_waitset_free(r->watch);
  if (r->local) concur_obj_unref(&r->local->obj);
  concur_buf_free(&r->payload);
  concur_buf_free(&r->result);
  free(r);
}

/* A new record in flight for an entry whose frame verified; n->mu held. */
static nrec *rec_new (concur_cnode *n, const char *entry, size_t elen,
                      const concur_cframe *fr) {
  nrec *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->node = n;
  if (elen >= sizeof r->entry) elen = sizeof r->entry - 1;
  memcpy(r->entry, entry, elen);
  if (fr) {
    size_t cl = fr->namelen < sizeof r->client ? fr->namelen : sizeof r->client - 1;
    memcpy(r->client, fr->name, cl);
    r->id = fr->id;
    r->timeout = fr->num;
    if (concur_buf_write(&r->payload, fr->payload, fr->len) != 0 ||
        concur_cframe_rehash(r->payload.data, r->payload.len) != 0) {
      r->rtype = 'E';
      concur_wire_error(&r->result, "transfer", "malformed task (in a signed frame)");
    }
    r->cancelled = u64map_get(&n->recent, name_hash(r->client, r->id)) != NULL;
  }
  r->next = n->inflight;
  if (n->inflight) n->inflight->prev = r;
  n->inflight = r;
  n->ninflight++;
  return r;
}

static void push_incoming (concur_cnode *n, nrec *r) {
  n->nincoming++;
  r->qnext = NULL;
  if (n->in_tail) n->in_tail->qnext = r;
  else n->in_head = r;
  n->in_tail = r;
}

/* The executor finished a task (its future's and the watch's mu held). */
static void on_finished (void *ud, size_t index) {
  nrec *r = ud;
  concur_cnode *n = r->node;
  (void)index;
  pthread_mutex_lock(&n->mu);
  r->finished = 1;
  n->nbusy--;
  if (n->waiting) wake(n);     /* room for the next task */
  if (r->registered) push_done(n, r);
  pthread_mutex_unlock(&n->mu);
}

/* ---- fetching ------------------------------------------------------------------------ */

/* The value of field 't' of a stream entry's field list, or NULL. */
static const redisReply *task_field (const redisReply *fields) {
  if (fields == NULL || fields->type != REDIS_REPLY_ARRAY) return NULL;
  for (size_t k = 0; k + 1 < fields->elements; k += 2)
    if (fields->element[k]->type == REDIS_REPLY_STRING &&
        fields->element[k]->len == 1 && fields->element[k]->str[0] == 't' &&
        fields->element[k + 1]->type == REDIS_REPLY_STRING)
      return fields->element[k + 1];
  return NULL;
}

/* Acknowledges, deletes and counts entries whose frames did not verify. */
static void drop_forged (concur_cnode *n, concur_redis *r, char (*ids)[48], int nids) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply *reps[3];
  int oom = concur_rpipe_cmd(&pp, 3 + nids) | concur_rpipe_str(&pp, "XACK") |
            concur_rpipe_str(&pp, n->tasks) | concur_rpipe_str(&pp, CONCUR_CGROUP);
  for (int i = 0; i < nids; i++) oom |= concur_rpipe_str(&pp, ids[i]);
  oom |= concur_rpipe_cmd(&pp, 2 + nids) | concur_rpipe_str(&pp, "XDEL") |
         concur_rpipe_str(&pp, n->tasks);
  for (int i = 0; i < nids; i++) oom |= concur_rpipe_str(&pp, ids[i]);
  oom |= concur_rpipe_cmd(&pp, 3) | concur_rpipe_str(&pp, "INCRBY") |
         concur_rpipe_str(&pp, n->forged) | concur_rpipe_int(&pp, nids);
  if (!oom && concur_redis_exec(r, concur_deadline(n->timeout), &pp, reps) == CONCUR_OK)
    concur_redis_freereplies(reps, 3);
  concur_rpipe_free(&pp);
  atomic_fetch_add(&n->nforged, nids);
}

/* Takes the entries of an XREADGROUP or XAUTOCLAIM: verifies each; the good
** ones become records, put on the incoming queue (or, for reclaimed ones
** whose nodes died too often, failed at once). 'times' gives an entry's
** delivery count (NULL: first delivery). Returns how many were queued. */
static int take_entries (concur_cnode *n, concur_redis *conn, const redisReply **ents,
                         const long long *times, int nents) {
  char (*bad)[48] = nents ? calloc((size_t)nents, sizeof *bad) : NULL;
  nrec **good = nents ? calloc((size_t)nents, sizeof *good) : NULL;
  concur_cframe *frames = nents ? calloc((size_t)nents, sizeof *frames) : NULL;
  int nbad = 0, ngood = 0, queued = 0;
  int *ok = nents ? calloc((size_t)nents, sizeof *ok) : NULL;
  if (nents && (!bad || !good || !frames || !ok)) goto done;   /* reclaimed later */
  for (int i = 0; i < nents; i++) {
    const redisReply *e = ents[i], *v;
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 48)
      continue;
    v = task_field(e->element[1]);
    if (v && concur_cframe_open(n->mac, n->tasks, strlen(n->tasks), v->str, v->len,
                                &frames[i]) == 0 && frames[i].type == 'T')
      ok[i] = 1;
    else
      memcpy(bad[nbad++], e->element[0]->str, e->element[0]->len + 1);
  }
  /* NOTE: forged entries are dealt with before any good one of the same
  ** read is handed over */
  if (nbad) drop_forged(n, conn, bad, nbad);
  pthread_mutex_lock(&n->mu);
  for (int i = 0; i < nents; i++) {
    nrec *r;
    if (!ok[i]) continue;
    r = rec_new(n, ents[i]->element[0]->str, ents[i]->element[0]->len, &frames[i]);
    if (r == NULL) continue;                   /* left to be reclaimed */
    atomic_fetch_add(&n->taken, 1);
    if (times && times[i] - 1 >= n->max_retries && r->rtype == 0) {
      char msg[200];
      snprintf(msg, sizeof msg, "the task's worker node died %lld times (max_retries %d)",
               times[i] - 1, n->max_retries);
      r->rtype = 'E';
      concur_wire_error(&r->result, "broken", msg);
      atomic_fetch_add(&n->broken, 1);
    }
    if (times) atomic_fetch_add(&n->reclaimed, 1);
    if (r->rtype) {
      r->registered = r->finished = 1;
      push_done(n, r);
    }
    else {
      push_incoming(n, r);
      good[ngood++] = r;
      queued++;
    }
  }
  pthread_mutex_unlock(&n->mu);
  if (queued) wake(n);
done:
  free(bad); free(good); free(frames); free(ok);
  return queued;
}

/* Takes up to 'room' new tasks (XREADGROUP, blocking at most BLOCK_MS or
** until the deadline), onto the incoming queue. Returns a concur_redis_exec
** result. */
static int fetch_once (concur_cnode *n, int room, double deadline) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply *rep = NULL;
  double now = concur_now(), block = BLOCK_MS;
  int rc;
  if (deadline >= 0 && (deadline - now) * 1000 < block) block = (deadline - now) * 1000;
  if (block < 1) block = 1;
  if (concur_rpipe_cmd(&pp, 11) | concur_rpipe_str(&pp, "XREADGROUP") |
      concur_rpipe_str(&pp, "GROUP") | concur_rpipe_str(&pp, CONCUR_CGROUP) |
      concur_rpipe_str(&pp, n->name) | concur_rpipe_str(&pp, "COUNT") |
      concur_rpipe_int(&pp, room) | concur_rpipe_str(&pp, "BLOCK") |
      concur_rpipe_int(&pp, (long long)block) | concur_rpipe_str(&pp, "STREAMS") |
      concur_rpipe_str(&pp, n->tasks) | concur_rpipe_str(&pp, ">")) {
    concur_rpipe_free(&pp);
    return CONCUR_TIMEDOUT;
  }
  rc = concur_redis_exec(n->fetch, concur_deadline(n->timeout + block / 1000), &pp, &rep);
  concur_rpipe_free(&pp);
  if (rc != CONCUR_OK) return rc;
  if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOGROUP", 7) == 0) {
    /* the stream or its group went away (a server that lost its data) */
    concur_rpipe g = CONCUR_RPIPE_INIT;
    redisReply *gr;
    if (!(concur_rpipe_cmd(&g, 6) | concur_rpipe_str(&g, "XGROUP") |
          concur_rpipe_str(&g, "CREATE") | concur_rpipe_str(&g, n->tasks) |
          concur_rpipe_str(&g, CONCUR_CGROUP) | concur_rpipe_str(&g, "0") |
          concur_rpipe_str(&g, "MKSTREAM")) &&
        concur_redis_exec(n->fetch, concur_deadline(n->timeout), &g, &gr) == CONCUR_OK)
      freeReplyObject(gr);
    concur_rpipe_free(&g);
  }
  else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
           rep->element[0]->type == REDIS_REPLY_ARRAY &&
           rep->element[0]->elements == 2 &&
           rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
    const redisReply *ents = rep->element[0]->element[1];
    take_entries(n, n->fetch, (const redisReply **)ents->element, NULL, (int)ents->elements);
  }
  freeReplyObject(rep);
  return CONCUR_OK;
}

/* ---- the sender: results, heartbeats, reclaims --------------------------------------------- */

/* Appends the XADD of r's result (and the EXPIRE of its stream when this
** pipeline has not set it yet). */
static int add_result (concur_cnode *n, concur_rpipe *pp, nrec *r, concur_buf *frame) {
  char key[CONCUR_CKEY_MAX], part[40];
  concur_cframe fr;
  concur_buf err = CONCUR_BUF_INIT;
  const concur_buf *out;
  int type, oom;
  if (r->rtype) { type = r->rtype; out = &r->result; }
  else {
    int st = concur_future_state(r->local);
    out = &r->local->out;
    type = st == CONCUR_F_FINISHED ? 'R' : 'E';
    if (st == CONCUR_F_CANCELLED || (st == CONCUR_F_FAILED && out->len == 0)) {
      concur_wire_error(&err, "cancelled", "the task was cancelled");
      out = &err;
    }
    else if (out->nobjs) {
      char msg[300];
      snprintf(msg, sizeof msg, "the task's %s hold a %s, which cannot cross to "
               "another machine", type == 'R' ? "results" : "error",
               out->objs[0]->type->name);
      concur_wire_error(&err, "transfer", msg);
      out = &err;
      type = 'E';
    }
    if (type == 'R') atomic_fetch_add(&n->completed, 1);
    else atomic_fetch_add(&n->failed, 1);
  }
  snprintf(part, sizeof part, "r:%s", r->client);
  concur_ckey(key, n->queue, part);
  fr.type = type;
  fr.id = r->id;
  fr.num = 0;
  fr.name = n->name;
  fr.namelen = strlen(n->name) > 255 ? 255 : strlen(n->name);
  fr.payload = out->data;
  fr.len = out->len;
  frame->len = 0;
  oom = concur_cframe_seal(n->mac, key, strlen(key), &fr, frame);
  concur_buf_free(&err);
  oom |= concur_rpipe_cmd(pp, 5) | concur_rpipe_str(pp, "XADD") | concur_rpipe_str(pp, key) |
         concur_rpipe_str(pp, "*") | concur_rpipe_str(pp, "r") |
         concur_rpipe_arg(pp, frame->data, frame->len);
  oom |= concur_rpipe_cmd(pp, 3) | concur_rpipe_str(pp, "EXPIRE") | concur_rpipe_str(pp, key) |
         concur_rpipe_int(pp, (long long)(n->result_ttl + 0.999));
  return oom;
}

/* Stores the results of the records of 'batch', then acknowledges and
** deletes their entries; frees them. On failure puts them back. */
static void send_results (concur_cnode *n, nrec *batch) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  concur_buf frame = CONCUR_BUF_INIT;
  redisReply **reps = NULL;
  int nrec_ = 0, oom = 0, rc = CONCUR_TIMEDOUT;
  for (nrec *r = batch; r; r = r->qnext) nrec_++;
  for (nrec *r = batch; r && !oom; r = r->qnext) oom |= add_result(n, &pp, r, &frame);
  oom |= concur_rpipe_cmd(&pp, 3 + nrec_) | concur_rpipe_str(&pp, "XACK") |
         concur_rpipe_str(&pp, n->tasks) | concur_rpipe_str(&pp, CONCUR_CGROUP);
  for (nrec *r = batch; r; r = r->qnext) oom |= concur_rpipe_str(&pp, r->entry);
  oom |= concur_rpipe_cmd(&pp, 2 + nrec_) | concur_rpipe_str(&pp, "XDEL") |
         concur_rpipe_str(&pp, n->tasks);
  for (nrec *r = batch; r; r = r->qnext) oom |= concur_rpipe_str(&pp, r->entry);
  if (!oom) reps = malloc((size_t)pp.n * sizeof *reps);
  if (reps) rc = concur_redis_exec(n->send, concur_deadline(n->timeout), &pp, reps);
  if (rc == CONCUR_OK) concur_redis_freereplies(reps, pp.n);
  free(reps);
  concur_rpipe_free(&pp);
  concur_buf_free(&frame);
  pthread_mutex_lock(&n->mu);
  if (rc != CONCUR_OK) {                    /* again, next time round */
    nrec *last = batch;
    while (last->qnext) last = last->qnext;
    last->qnext = n->done_head;
    n->done_head = batch;
    if (n->done_tail == NULL) n->done_tail = last;
    pthread_mutex_unlock(&n->mu);
    if (rc != CONCUR_REDIS_CLOSED) concur_sleep_until(concur_now() + 0.05);
    return;
  }
  for (nrec *r = batch; r; r = r->qnext) {
    if (r->prev) r->prev->next = r->next;
    else n->inflight = r->next;
    if (r->next) r->next->prev = r->prev;
    n->ninflight--;
  }
  if (n->stopping && n->ninflight == 0) wake(n);
  pthread_mutex_unlock(&n->mu);
  while (batch) {
    nrec *next = batch->qnext;
    rec_free(batch);
    batch = next;
  }
}

/* Runs a script of the node (keys: tasks, nodes, config; then args). */
static int script (concur_cnode *n, concur_rscript *s, concur_rpipe *pp, redisReply **rep) {
  return concur_redis_eval(n->send, concur_deadline(n->timeout), s, pp, rep);
}

static double reply_num (const redisReply *r, double def) {
  if (r && r->type == REDIS_REPLY_STRING) {
    char *end;
    double v = strtod(r->str, &end);
    if (end != r->str) return v;
  }
  return def;
}

static void heartbeat (concur_cnode *n) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply *rep = NULL;
  int nids, oom;
  pthread_mutex_lock(&n->mu);
  nids = n->ninflight;
  oom = concur_rpipe_evalsha(&pp, &n->heartbeat, 3, 3 + nids) |
        concur_rpipe_str(&pp, n->tasks) | concur_rpipe_str(&pp, n->nodes) |
        concur_rpipe_str(&pp, n->config) | concur_rpipe_str(&pp, CONCUR_CGROUP) |
        concur_rpipe_str(&pp, n->name) | concur_rpipe_str(&pp, n->info);
  for (nrec *r = n->inflight; r; r = r->next) oom |= concur_rpipe_str(&pp, r->entry);
  pthread_mutex_unlock(&n->mu);
  if (!oom && script(n, &n->heartbeat, &pp, &rep) == CONCUR_OK) {
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3) {
      pthread_mutex_lock(&n->mu);
      n->visibility = reply_num(rep->element[0], n->visibility);
      n->max_retries = (int)reply_num(rep->element[1], n->max_retries);
      n->result_ttl = reply_num(rep->element[2], n->result_ttl);
      pthread_mutex_unlock(&n->mu);
    }
    freeReplyObject(rep);
  }
  concur_rpipe_free(&pp);
}

static void reclaim (concur_cnode *n) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply *rep = NULL;
  int room, oom;
  double vis;
  pthread_mutex_lock(&n->mu);
  room = n->capacity - n->nbusy - n->nincoming;
  vis = n->visibility;
  pthread_mutex_unlock(&n->mu);
  if (room <= 0) return;
  oom = concur_rpipe_evalsha(&pp, &n->reclaim, 2, 6) | concur_rpipe_str(&pp, n->tasks) |
        concur_rpipe_str(&pp, n->nodes) | concur_rpipe_str(&pp, CONCUR_CGROUP) |
        concur_rpipe_str(&pp, n->name) | concur_rpipe_int(&pp, (long long)(vis * 1000)) |
        concur_rpipe_int(&pp, room) | concur_rpipe_str(&pp, n->cursor) |
        concur_rpipe_int(&pp, (long long)((vis * 10 > 60 ? vis * 10 : 60) * 1000));
  if (!oom && script(n, &n->reclaim, &pp, &rep) == CONCUR_OK) {
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1) {
      int ne = (int)rep->elements - 1, k = 0;
      const redisReply **ents = ne ? calloc((size_t)ne, sizeof *ents) : NULL;
      long long *times = ne ? calloc((size_t)ne, sizeof *times) : NULL;
      if (rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len < 48)
        memcpy(n->cursor, rep->element[0]->str, rep->element[0]->len + 1);
      for (int i = 0; (ents && times) && i < ne; i++) {
        const redisReply *e = rep->element[i + 1];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 3) continue;
        ents[k] = e;   /* { id, fields, times }: take_entries reads 0 and 1 */
        times[k++] = e->element[2]->integer;
      }
      if (k) take_entries(n, n->send, ents, times, k);
      free(ents);
      free(times);
    }
    freeReplyObject(rep);
  }
  concur_rpipe_free(&pp);
}

static void *sender_main (void *arg) {
  concur_cnode *n = arg;
  unsigned seed = (unsigned)(size_t)n ^ (unsigned)getpid();
  double next_hb = 0, next_rc = 0;
  for (;;) {
    nrec *batch;
    double now = concur_now(), vis, until;
    pthread_mutex_lock(&n->mu);
    for (;;) {
      vis = n->visibility;
      until = next_hb < next_rc || n->stopping ? next_hb : next_rc;
      if (n->done_head || n->quit || now >= until) break;
      concur_cond_wait(&n->work, &n->mu, until);
      now = concur_now();
    }
    if (n->quit && !n->done_head) {
      pthread_mutex_unlock(&n->mu);
      break;
    }
    batch = n->done_head;
    n->done_head = n->done_tail = NULL;
    pthread_mutex_unlock(&n->mu);
    if (batch) send_results(n, batch);
    now = concur_now();
    if (now >= next_hb) {
      heartbeat(n);
      next_hb = now + vis / 4;
    }
    if (now >= next_rc) {
      pthread_mutex_lock(&n->mu);
      until = n->stopping;
      pthread_mutex_unlock(&n->mu);
      if (!until) reclaim(n);
      next_rc = now + vis / 2 * (0.75 + 0.5 * (double)rand_r(&seed) / RAND_MAX);
    }
  }
  return NULL;
}

/* ---- the subscriber: cancellations ------------------------------------------------------- */

/* A task was cancelled ("<client>:<id>"): remembered, and cancelled here
** if it runs here. */
static void cancel_one (concur_cnode *n, const char *s, size_t len) {
  char client[24];
  const char *colon = memchr(s, ':', len);
  uint64_t id;
  concur_future *f = NULL;
  if (colon == NULL || (size_t)(colon - s) >= sizeof client) return;
  memcpy(client, s, (size_t)(colon - s));
  client[colon - s] = '\0';
  id = strtoull(colon + 1, NULL, 10);
  pthread_mutex_lock(&n->mu);
  remember(n, name_hash(client, id));
  for (nrec *r = n->inflight; r; r = r->next)
    if (r->id == id && strcmp(r->client, client) == 0) {
      r->cancelled = 1;
      if (r->local) f = (concur_future *)concur_obj_ref(&r->local->obj);
      break;
    }
  pthread_mutex_unlock(&n->mu);
  if (f) {
    if (concur_future_cancel(f)) atomic_fetch_add(&n->ncancelled, 1);
    concur_obj_unref(&f->obj);
  }
}

static void *subscriber_main (void *arg) {
  concur_cnode *n = arg;
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  for (;;) {
    redisReply *reps[2] = { NULL, NULL }, *msg;
    int rc;
    concur_rpipe_reset(&pp);
    if (concur_rpipe_cmd(&pp, 4) | concur_rpipe_str(&pp, "ZRANGEBYSCORE") |
        concur_rpipe_str(&pp, n->cancelled) | concur_rpipe_str(&pp, "-inf") |
        concur_rpipe_str(&pp, "+inf") | concur_rpipe_cmd(&pp, 2) |
        concur_rpipe_str(&pp, "SUBSCRIBE") | concur_rpipe_str(&pp, n->cancel_chan))
      break;
    rc = concur_redis_exec(n->sub, concur_deadline(n->timeout), &pp, reps);
    if (rc == CONCUR_REDIS_CLOSED) break;
    if (rc != CONCUR_OK) continue;
    if (reps[0]->type == REDIS_REPLY_ARRAY)
      for (size_t i = 0; i < reps[0]->elements; i++)
        if (reps[0]->element[i]->type == REDIS_REPLY_STRING)
          cancel_one(n, reps[0]->element[i]->str, reps[0]->element[i]->len);
    concur_redis_freereplies(reps, 2);
    while ((rc = concur_redis_read(n->sub, CONCUR_NODEADLINE, &msg)) == CONCUR_OK) {
      if (msg->type == REDIS_REPLY_ARRAY && msg->elements == 3 &&
          msg->element[2]->type == REDIS_REPLY_STRING)
        cancel_one(n, msg->element[2]->str, msg->element[2]->len);
      freeReplyObject(msg);
    }
    if (rc == CONCUR_REDIS_CLOSED) break;
  }
  concur_rpipe_free(&pp);
  return NULL;
}

/* ---- the interface ---------------------------------------------------------------------- */

static void node_free (concur_cnode *n) {
  while (n->inflight) {
    nrec *r = n->inflight;
    n->inflight = r->next;
    rec_free(r);
  }
  concur_redis_free(n->fetch);
  concur_redis_free(n->send);
  concur_redis_free(n->sub);
  concur_mac_free(n->mac);
  u64map_free(&n->recent);
  free(n->ring);
  if (n->wakefd >= 0) close(n->wakefd);
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->work);
  free(n);
}

/* Joins the group, reads the settings, registers the node. */
static int setup (concur_cnode *n) {
  concur_rpipe pp = CONCUR_RPIPE_INIT;
  redisReply *reps[2];
  int rc;
  if (concur_rpipe_cmd(&pp, 6) | concur_rpipe_str(&pp, "XGROUP") |
      concur_rpipe_str(&pp, "CREATE") | concur_rpipe_str(&pp, n->tasks) |
      concur_rpipe_str(&pp, CONCUR_CGROUP) | concur_rpipe_str(&pp, "0") |
      concur_rpipe_str(&pp, "MKSTREAM") | concur_rpipe_cmd(&pp, 5) |
      concur_rpipe_str(&pp, "HMGET") | concur_rpipe_str(&pp, n->config) |
      concur_rpipe_str(&pp, "visibility") | concur_rpipe_str(&pp, "max_retries") |
      concur_rpipe_str(&pp, "result_ttl")) {
    concur_rpipe_free(&pp);
    return CONCUR_TIMEDOUT;
  }
  rc = concur_redis_exec(n->send, concur_deadline(n->timeout), &pp, reps);
  concur_rpipe_free(&pp);
  if (rc != CONCUR_OK) return rc;
  if (reps[1]->type == REDIS_REPLY_ARRAY && reps[1]->elements == 3) {
    n->visibility = reply_num(reps[1]->element[0], n->visibility);
    n->max_retries = (int)reply_num(reps[1]->element[1], n->max_retries);
    n->result_ttl = reply_num(reps[1]->element[2], n->result_ttl);
  }
  concur_redis_freereplies(reps, 2);
  return CONCUR_OK;
}

concur_cnode *concur_cnode_new (const concur_cnodeopts *o, const char **kind,
                                char *err, size_t errsize) {
  concur_cnode *n = calloc(1, sizeof *n);
  int rc;
  *kind = "limit";
  if (n == NULL) { snprintf(err, errsize, "not enough memory"); return NULL; }
  n->wakefd = -1;
  pthread_mutex_init(&n->mu, NULL);
  concur_cond_init(&n->work, 0);
  snprintf(n->queue, sizeof n->queue, "%s", o->queue);
  if (o->name) snprintf(n->name, sizeof n->name, "%s", o->name);
  else {
    char host[64] = "node";
    unsigned short rnd = 0;
    gethostname(host, sizeof host - 1);
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) rnd = (unsigned short)concur_now();
    snprintf(n->name, sizeof n->name, "%s:%ld:%04x", host, (long)getpid(), rnd);
  }
  snprintf(n->info, sizeof n->info, "%d", o->workers);
  concur_ckey(n->tasks, n->queue, "tasks");
  concur_ckey(n->config, n->queue, "config");
  concur_ckey(n->nodes, n->queue, "nodes");
  concur_ckey(n->forged, n->queue, "forged");
  concur_ckey(n->cancel_chan, n->queue, "cancel");
  concur_ckey(n->cancelled, n->queue, "cancelled");
  strcpy(n->cursor, "0-0");
  n->capacity = o->workers + o->prefetch;
  n->timeout = o->timeout;
  n->visibility = 30;
  n->max_retries = 2;
  n->result_ttl = 3600;
  concur_rscript_init(&n->heartbeat, HEARTBEAT);
  concur_rscript_init(&n->reclaim, RECLAIM);
  concur_rscript_init(&n->leave, LEAVE);
  n->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  n->ring = calloc(CANCEL_MEMORY, sizeof *n->ring);
  n->mac = concur_mac_new(o->key, o->keylen);
  if (n->wakefd < 0 || n->ring == NULL || n->mac == NULL) {
    snprintf(err, errsize, "cannot set the node up (memory, descriptors)");
    node_free(n);
    return NULL;
  }
  *kind = "argument";
  if (!(n->fetch = concur_redis_new(o->url, err, errsize)) ||
      !(n->send = concur_redis_new(o->url, err, errsize)) ||
      !(n->sub = concur_redis_new(o->url, err, errsize))) {
    node_free(n);
    return NULL;
  }
  /* NOTE: the serving thread waits in Redis for tasks; a wake-up (a signal,
  ** tasks reclaimed, a stop) calls it away, dropping that connection: what
  ** the read brought meanwhile stays in the group, claimed after the
  ** visibility */
  concur_redis_setwake(n->fetch, n->wakefd);
  rc = setup(n);
  if (rc != CONCUR_OK) {
    *kind = rc == CONCUR_TIMEDOUT || rc == CONCUR_REDIS_REFUSED ? "network" : "cancelled";
    snprintf(err, errsize, "Redis at %s: %s", concur_redis_where(n->send),
             concur_redis_error(n->send));
    node_free(n);
    return NULL;
  }
  n->has_sender = pthread_create(&n->sender, NULL, sender_main, n) == 0;
  n->has_subscriber = pthread_create(&n->subscriber, NULL, subscriber_main, n) == 0;
  if (!n->has_sender || !n->has_subscriber) {
    concur_cnode_stop(n);
    concur_cnode_free(n);
    *kind = "limit";
    snprintf(err, errsize, "cannot start the node's threads");
    return NULL;
  }
  return n;
}

int concur_cnode_take (concur_cnode *n, concur_cnodetask *ts, int max, double deadline) {
  for (;;) {
    uint64_t drain;
    struct pollfd pfd;
    int k = 0, rc, room, over;
    /* NOTE: a wake-up drained here may be for the caller (a signal): it is
    ** told (0) rather than slept through */
    int woken = read(n->wakefd, &drain, sizeof drain) > 0;
    pthread_mutex_lock(&n->mu);
    while (n->in_head && k < max) {
      nrec *r = n->in_head;
      n->in_head = r->qnext;
      if (n->in_head == NULL) n->in_tail = NULL;
      n->nincoming--;
      r->qnext = NULL;
      if (r->cancelled) {                 /* cancelled before it ran */
        r->rtype = 'E';
        concur_wire_error(&r->result, "cancelled", "the task was cancelled");
        r->registered = r->finished = 1;
        push_done(n, r);
        continue;
      }
      ts[k].payload = r->payload;
      memset(&r->payload, 0, sizeof r->payload);
      ts[k].timeout = r->timeout;
      ts[k].rec = r;
      n->nbusy++;
      k++;
    }
    over = n->stopping && n->ninflight == 0;
    room = n->stopping ? 0 : n->capacity - n->nbusy;
    n->waiting = k == 0 && room <= 0;
    pthread_mutex_unlock(&n->mu);
    if (k) return k;
    if (over) return -1;
    if (woken) return 0;
    if (room > 0) {                       /* fetch: this thread waits in Redis */
      rc = fetch_once(n, room, deadline);
      if (rc == CONCUR_OK || rc == CONCUR_REDIS_CLOSED || rc == CONCUR_REDIS_WOKEN) continue;
      if (rc == CONCUR_TIMEDOUT) {
        if (deadline >= 0 && concur_now() >= deadline) return 0;
        continue;                         /* Redis away: it tries on */
      }
      return -2 - rc;                     /* interrupted */
    }
    pfd.fd = n->wakefd;                   /* wait for room, a task, a stop */
    pfd.events = POLLIN;
    pfd.revents = 0;
    rc = concur_poll(&pfd, 1, deadline);
    if (rc == CONCUR_TIMEDOUT || pfd.revents) return 0;   /* (the caller looks) */
    if (rc != CONCUR_OK) return -2 - rc;
  }
}

void concur_cnode_run (concur_cnode *n, concur_cnodetask *t, concur_future *f) {
  nrec *r = t->rec;
  concur_waitset *ws;
  int cancel;
  pthread_mutex_lock(&n->mu);
  r->local = (concur_future *)concur_obj_ref(&f->obj);
  pthread_mutex_unlock(&n->mu);
  ws = concur_waitset_newcb(&f, 1, on_finished, r);    /* may call back at once */
  pthread_mutex_lock(&n->mu);
  r->watch = ws;
  r->registered = 1;
  if (ws == NULL && !r->finished) {       /* no memory to watch it: wait */
    pthread_mutex_unlock(&n->mu);
    concur_future_wait(f, CONCUR_NODEADLINE);
    pthread_mutex_lock(&n->mu);
    r->finished = 1;
    n->nbusy--;
  }
  if (r->finished) push_done(n, r);
  cancel = r->cancelled;
  pthread_mutex_unlock(&n->mu);
  if (cancel) concur_future_cancel(f);
}

void concur_cnode_fail (concur_cnode *n, concur_cnodetask *t, const char *kind,
                        const char *msg) {
  nrec *r = t->rec;
  pthread_mutex_lock(&n->mu);
  n->nbusy--;
  r->rtype = 'E';
  concur_wire_error(&r->result, kind, msg);
  r->registered = r->finished = 1;
  push_done(n, r);
  pthread_mutex_unlock(&n->mu);
}

void concur_cnode_taskfree (concur_cnodetask *t) {
  concur_buf_free(&t->payload);
  t->rec = NULL;
}

int concur_cnode_wakefd (concur_cnode *n) { return n->wakefd; }

void concur_cnode_stop (concur_cnode *n) {
  pthread_mutex_lock(&n->mu);
  n->stopping = 1;
  pthread_cond_broadcast(&n->work);
  pthread_mutex_unlock(&n->mu);
  concur_redis_abort(n->fetch);   /* a blocked read ends now */
  wake(n);
}

void concur_cnode_free (concur_cnode *n) {
  concur_cnode_stop(n);
  pthread_mutex_lock(&n->mu);
  n->quit = 1;
  pthread_cond_broadcast(&n->work);
  pthread_mutex_unlock(&n->mu);
  if (n->has_sender) pthread_join(n->sender, NULL);
  concur_redis_abort(n->sub);
  if (n->has_subscriber) pthread_join(n->subscriber, NULL);
  {
    concur_rpipe pp = CONCUR_RPIPE_INIT;
    redisReply *rep;
    if (!(concur_rpipe_evalsha(&pp, &n->leave, 2, 2) | concur_rpipe_str(&pp, n->tasks) |
          concur_rpipe_str(&pp, n->nodes) | concur_rpipe_str(&pp, CONCUR_CGROUP) |
          concur_rpipe_str(&pp, n->name)) &&
        concur_redis_eval(n->send, concur_deadline(2.0), &n->leave, &pp, &rep) == CONCUR_OK)
      freeReplyObject(rep);
    concur_rpipe_free(&pp);
  }
  node_free(n);
}

void concur_cnode_counts (concur_cnode *n, long v[7]) {
  v[0] = atomic_load(&n->taken);
  v[1] = atomic_load(&n->completed);
  v[2] = atomic_load(&n->failed);
  v[3] = atomic_load(&n->nforged);
  v[4] = atomic_load(&n->reclaimed);
  v[5] = atomic_load(&n->broken);
  v[6] = atomic_load(&n->ncancelled);
}

const char *concur_cnode_name (concur_cnode *n) { return n->name; }
