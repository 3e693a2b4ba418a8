/*
** fetch_transfer.c: the fetch engine's schedule (engine thread only).
**
** A request's life: the engine routes it from the inbox to its host's
** queue. When the host and the engine have room, the request reserves a
** slot on the host's limiter: a slot in the future "arms" it (one armed
** request per host, so a Retry-After pause still moves every later start),
** a slot now starts it: the future goes running and an easy handle joins
** the multi handle. When the transfer ends, the request completes its
** future, or waits on the timer heap for a retry, or (a redirect) goes to
** the front of its new host's queue. Each request holds one reference to
** its future; a request is freed only after its future is done, so
** interrupt() (which runs only while the future is running) always finds
** it alive.
**
** robots.txt (with cfg.robots): the first request for a host makes the
** engine's own request for its robots.txt, which goes before anything else
** on that host; the host's queue waits until it is settled, as RFC 9309
** says: 2xx: its rules; 4xx, or redirects that cannot be followed (more
** than five, a loop, another scheme): no rules; 429, 5xx or no answer (after
** the client's retries): everything disallowed for cfg.robots_retry seconds,
** then asked again. What it says is kept for 24 hours. Every way its fetch
** can end settles the host, and a request waiting for it still fails at its
** own timeout (a deadline the host's 'rwait' watches).
*/
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wait.h"
#include "fetch_internal.h"

static uint64_t rnd (concur_fetch_engine *e) {   /* xorshift64* */
  e->rng ^= e->rng >> 12;
  e->rng ^= e->rng << 25;
  e->rng ^= e->rng >> 27;
  return e->rng * 2685821657736338717ULL;
}

static double rnd01 (concur_fetch_engine *e) {
  return (double)(rnd(e) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- robots.txt ------------------------------------------------------------ */

/* Makes the engine's own request for a host's robots.txt. */
static req *robots_req (concur_fetch_engine *e, host *h) {
  req *r = calloc(1, sizeof *r);
  size_t n = strlen(h->key) + 16;
  char *u;
  if (r == NULL || (u = malloc(n)) == NULL) {
    free(r);
    return NULL;
  }
  snprintf(u, n, "%s/robots.txt", h->key);
  r->e = e;
  r->robots_for = h;
  r->method = concur_fetch_strdup("GET");
  if (r->method == NULL ||
      concur_fetch_parseurl(u, &r->url, &r->key, &r->path, NULL, 0)) {
    free(u);
    concur_fetch_reqfree(r);
    return NULL;
  }
  free(u);
  r->timeout = e->cfg.timeout;
  r->connect_timeout = e->cfg.connect_timeout;
  r->retries = e->cfg.retries;
  r->max_redirects = ROBOTS_REDIRECTS;
  r->max_body = ROBOTS_MAXBODY;
  return r;
}

/* Asks for h's robots.txt unless what it says is known and fresh. */
static void robots_ask (concur_fetch_engine *e, host *h, double now) {
  req *rr;
  if (h->robots_state == ROBOTS_FETCHING ||
      (h->robots_state == ROBOTS_KNOWN && now < h->robots_until))
    return;
  rr = robots_req(e, h);
  if (rr == NULL) {   /* cannot ask now: no rules, ask again soon */
    concur_fetch_robots_set(e, h, NULL, NULL, now + e->cfg.robots_retry);
    return;
  }
  rr->h = h;
  h->robots_req = rr;
  h->robots_state = ROBOTS_FETCHING;
  count(e, queued, 1);
}

/* How a robots.txt fetch ended. */
enum { ROBOTS_RULES, ROBOTS_NONE, ROBOTS_UNREACHABLE };

/* A robots.txt request is over: settle its host; frees r. */
static void robots_done (concur_fetch_engine *e, req *r, double now,
                         int outcome, const char *detail) {
  host *h = r->robots_for;
  if (outcome == ROBOTS_RULES) {
    concur_robots *rb = concur_fetch_robots_parse(r->out.data + r->body0,
                                                  concur_fetch_bodylen(r),
                                                  e->cfg.user_agent);
    concur_fetch_robots_set(e, h, rb, NULL,
                            now + (rb ? ROBOTS_TTL : e->cfg.robots_retry));
  }
  else if (outcome == ROBOTS_NONE)
    concur_fetch_robots_set(e, h, NULL, NULL, now + ROBOTS_TTL);
  else {
    char why[CURL_ERROR_SIZE + 256];
    snprintf(why, sizeof why, "robots.txt of %s could not be fetched (%s): "
             "everything there is disallowed until it can be", h->key,
             detail);
    concur_fetch_robots_set(e, h, NULL, why, now + e->cfg.robots_retry);
  }
  concur_fetch_reqfree(r);
}

/* Fails the requests of h whose wait for robots.txt passed their
** deadline; sets h->rwait to the earliest deadline left. */
static void robots_expire (concur_fetch_engine *e, host *h, double now) {
  req *prev = NULL, *nx;
  h->rwait = 0;
  for (req *r = h->qhead; r; r = nx) {
    nx = r->next;
    if (r->deadline > 0 && r->deadline <= now) {
      if (prev) prev->next = nx;
      else h->qhead = nx;
      if (h->qtail == r) h->qtail = prev;
      r->next = NULL;
      count(e, queued, -1);
      concur_fetch_fail(e, r, "network", CURLE_OPERATION_TIMEDOUT, 0,
           "timed out after %g s waiting for robots.txt of %s for %s",
           r->timeout, h->key, r->url);
      continue;
    }
    if (r->deadline > 0 && (h->rwait == 0 || r->deadline < h->rwait))
      h->rwait = r->deadline;
    prev = r;
  }
}

/* ---- routing ---------------------------------------------------------------- */

void concur_fetch_route (concur_fetch_engine *e, req *r, int front) {
  host *h = concur_fetch_host(e, r->key);
  double now;
  if (h == NULL) {
    if (r->robots_for) {   /* no rules for now; ask again soon */
      concur_fetch_robots_set(e, r->robots_for, NULL, NULL,
                              concur_now() + e->cfg.robots_retry);
      concur_fetch_reqfree(r);
      return;
    }
    concur_fetch_fail(e, r, "limit", 0, 0, "out of memory queueing %s",
                      r->url);
    return;
  }
  r->h = h;
  concur_fetch_q_push(h, r, front);
  if (e->cfg.robots && r->robots_for == NULL) {
    now = concur_now();
    robots_ask(e, h, now);
    if (h->robots_state == ROBOTS_FETCHING && r->timeout > 0 &&
        r->deadline == 0) {   /* its timeout runs from now */
      r->deadline = now + r->timeout;
      if (h->rwait == 0 || r->deadline < h->rwait) h->rwait = r->deadline;
    }
  }
  concur_fetch_run_add(e, h);
}

/* ---- starting transfers ------------------------------------------------------ */

static void active_add (concur_fetch_engine *e, req *r) {
  r->prev = NULL;
  r->next = e->active;
  if (e->active) e->active->prev = r;
  e->active = r;
}

static void active_remove (concur_fetch_engine *e, req *r) {
  if (r->prev) r->prev->next = r->next;
  else e->active = r->next;
  if (r->next) r->next->prev = r->prev;
  r->next = r->prev = NULL;
}

/* Undoes the accounting of a request that leaves its host's slots. */
static void unaccount (concur_fetch_engine *e, host *h) {
  h->active--;
  e->nactive--;
  if (concur_fetch_has_work(h)) concur_fetch_run_add(e, h);
}

/* A request that holds a slot but will not start: fails it (frees r). */
static void launch_failed (concur_fetch_engine *e, req *r, const char *kind,
                           long code, const char *msg) {
  unaccount(e, r->h);
  count(e, queued, -1);
  if (r->robots_for) {   /* no rules for now; ask again soon */
    concur_fetch_robots_set(e, r->robots_for, NULL, NULL,
                            concur_now() + e->cfg.robots_retry);
    concur_fetch_reqfree(r);
  }
  else concur_fetch_fail(e, r, kind, code, 0, "%s %s", msg, r->url);
}

/* Starts r's transfer (r counted in its host's and the engine's slots). */
static void launch (concur_fetch_engine *e, req *r, double now) {
  CURL *c;
  long tmo = (long)(r->timeout * 1000);
  if (r->f) {
    if (!r->running) {
      if (!concur_future_start(r->f, e)) {   /* cancelled while queued */
        unaccount(e, r->h);
        count(e, queued, -1);
        count(e, cancelled, 1);
        concur_fetch_reqfree(r);
        return;
      }
      r->running = 1;
    }
    else if (atomic_load(&r->f->cancel_req)) {
      unaccount(e, r->h);
      count(e, queued, -1);
      concur_fetch_cancelreq(e, r);
      return;
    }
  }
  if ((c = concur_fetch_easy_get(e)) == NULL) {
    launch_failed(e, r, "network", CURLE_OUT_OF_MEMORY, "out of memory for");
    return;
  }
  r->easy = c;
  if (concur_fetch_bodyopen(r)) {
    concur_fetch_easy_put(e, c);
    r->easy = NULL;
    launch_failed(e, r, "limit", 0, "out of memory for");
    return;
  }
  if (r->deadline > 0) {   /* it waited for robots.txt: what is left */
    double left = r->deadline - now;
    tmo = left < 0.001 ? 1 : (long)ceil(left * 1000);
    r->deadline = 0;
  }
  r->heads.len = 0;
  r->too_big = 0;
  r->errbuf[0] = '\0';
  if (r->started == 0) r->started = now;
  r->launched = now;
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_PRIVATE, r);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->hdrs);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, tmo);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(r->connect_timeout * 1000));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
  /* https may turn out to be HTTP/2 (ALPN): wait for a connection being
  ** made to the host rather than open one per transfer */
  curl_easy_setopt(c, CURLOPT_PIPEWAIT,
                   e->cfg.http2 && strncmp(r->key, "https:", 6) == 0 ? 1L : 0L);
  /* the method: reset to GET, then set what this request needs */
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);   /* NOTE: sets POST */
  curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, NULL);
  if (strcmp(r->method, "HEAD") == 0)
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  else if (r->hasbody) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->bodylen);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    if (strcmp(r->method, "POST") != 0)
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
  }
  else if (strcmp(r->method, "GET") != 0)
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
  if (curl_multi_add_handle(e->multi, c) != CURLM_OK) {
    concur_fetch_easy_put(e, c);
    r->easy = NULL;
    launch_failed(e, r, "network", CURLE_FAILED_INIT, "cannot start");
    return;
  }
  active_add(e, r);
  count(e, requests, 1);
  count(e, queued, -1);
  count(e, active, 1);
}

/* The start time for the next request of h: its limiter's next slot (and
** the shared limits' one, when the client has them), and not before a
** Retry-After pause. Reserves the slot. */
static double reserve (concur_fetch_engine *e, host *h, double now) {
  double slot = h->hasrl ? concur_ratelimit_reserve(&h->rl, now, -1) : now;
  if (e->cfg.limits) {
    double shared = e->cfg.limits->reserve(e->cfg.limits, h->key, e->cfg.rate,
                                           e->cfg.per, e->cfg.burst);
    if (shared > slot) slot = shared;
  }
  if (slot < h->paused_until) slot = h->paused_until;
  return e->cfg.autothrottle ? concur_fetch_throttle_slot(h, slot) : slot;
}

/* Is r still wanted? (a pending future may have been cancelled) */
static int wanted (req *r) {
  int st;
  if (r->f == NULL) return 1;
  st = concur_future_state(r->f);
  return st == CONCUR_F_PENDING ||
         (st == CONCUR_F_RUNNING && !atomic_load(&r->f->cancel_req));
}

/* r takes one of h's transfer slots (and the engine's) and reserves its
** start on h's limiter: it starts now (returns 0), or is armed for its slot
** (returns the slot; h had no armed request). */
static double take_slot (concur_fetch_engine *e, host *h, req *r,
                         double now) {
  double slot;
  h->active++;
  e->nactive++;
  slot = reserve(e, h, now);
  if (slot > now) {
    h->armed = r;
    h->armed_at = slot;
    return slot;
  }
  launch(e, r, now);
  return 0;
}

static double earliest (double a, double b) {
  return a == 0 ? b : (b == 0 || a < b) ? a : b;
}

/* Starts what host h may start now; returns when it next needs the engine
** (an armed slot, a robots.txt wait that expires), or 0. */
static double pump (concur_fetch_engine *e, host *h, double now) {
  double rw = 0;   /* a robots.txt wait's deadline */
  /* NOTE: a request queued here is decided by the answer it waited for,
  ** however old; only a request routed later asks again (route) */
  if (e->cfg.robots && h->robots_state == ROBOTS_FETCHING && h->qhead) {
    if (h->rwait > 0 && h->rwait <= now) robots_expire(e, h, now);
    rw = h->rwait;
  }
  if (h->robots_req && !h->armed && e->nactive < e->cfg.concurrency &&
      h->active < e->cfg.per_host) {   /* robots.txt goes first */
    req *r = h->robots_req;
    double slot;
    h->robots_req = NULL;
    if ((slot = take_slot(e, h, r, now)) > 0) return earliest(slot, rw);
  }
  if (h->armed) {
    req *r = h->armed;
    if (h->armed_at > now) return earliest(h->armed_at, rw);
    h->armed = NULL;
    if (h->paused_until > now) {   /* paused since it was armed */
      double slot = reserve(e, h, now);
      if (slot > now) {
        h->armed = r;
        h->armed_at = slot;
        return earliest(slot, rw);
      }
    }
    launch(e, r, now);
  }
  while (h->qhead && e->nactive < e->cfg.concurrency &&
         h->active < e->cfg.per_host) {
    req *r = h->qhead;
    double slot;
    if (!wanted(r)) {
      concur_fetch_q_pop(h);
      count(e, queued, -1);
      if (r->running) concur_fetch_cancelreq(e, r);
      else {
        count(e, cancelled, 1);
        concur_fetch_reqfree(r);
      }
      continue;
    }
    if (e->cfg.robots && r->robots_for == NULL) {
      if (h->robots_state == ROBOTS_FETCHING)
        break;   /* wait for robots.txt */
      if (h->robots_why) {
        concur_fetch_q_pop(h);
        count(e, queued, -1);
        concur_fetch_fail(e, r, "robots", 0, 0, "%s", h->robots_why);
        continue;
      }
      if (!concur_fetch_robots_allowed(h->robots, r->path)) {
        concur_fetch_q_pop(h);
        count(e, queued, -1);
        concur_fetch_fail(e, r, "robots", 0, 0,
                          "robots.txt of %s disallows %s", h->key, r->url);
        continue;
      }
    }
    concur_fetch_q_pop(h);
    if ((slot = take_slot(e, h, r, now)) > 0) return earliest(slot, rw);
  }
  return rw;
}

/*
** Gives every runnable host its chance; returns the earliest time one needs
** the engine again (0: none). Every host is visited even when the engine is
** full, so no armed slot or robots.txt deadline is ever forgotten; the ring
** turns by one host per call, so hosts take turns at the free transfers.
*/
double concur_fetch_dispatch (concur_fetch_engine *e, double now) {
  double next = 0;
  host *h = e->run;
  size_t n = 1;
  if (h == NULL) return 0;
  for (host *x = h->rnext; x != h; x = x->rnext) n++;
  for (size_t i = 0; i < n; i++) {
    host *nx = h->rnext;   /* NOTE: pump never removes another host */
    next = earliest(next, pump(e, h, now));
    if (!concur_fetch_has_work(h)) concur_fetch_run_remove(e, h);
    h = nx;
  }
  if (e->run) e->run = e->run->rnext;
  return next;
}

/* ---- ending transfers -------------------------------------------------------- */

static int retryable (CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT: case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
      return 1;
    default:
      return 0;
  }
}

static int retry_status (concur_fetch_engine *e, long status) {
  for (int i = 0; i < e->cfg.nretry_on; i++)
    if (e->cfg.retry_on[i] == status) return 1;
  return 0;
}

/* Puts r on the timer heap for another attempt after 'delay' seconds. */
static void retry_later (concur_fetch_engine *e, req *r, double now,
                         double delay) {
  r->tries++;
  r->due = now + delay;
  if (concur_fetch_heap_push(e, r)) {
    if (r->robots_for) {
      robots_done(e, r, now, ROBOTS_UNREACHABLE, "out of memory");
      return;
    }
    concur_fetch_fail(e, r, "limit", 0, 0,
                      "out of memory scheduling a retry of %s", r->url);
    return;
  }
  count(e, retries, 1);
  count(e, queued, 1);
}

/* Backoff before retry number r->tries + 1: full jitter, capped. */
static double backoff (concur_fetch_engine *e, req *r) {
  double cap = e->cfg.backoff * pow(2, (double)r->tries);
  if (cap > e->cfg.max_backoff) cap = e->cfg.max_backoff;
  return cap * rnd01(e);
}

/* A redirect: r goes on to 'loc' through the queues; or, when it cannot,
** fails (a robots.txt request settles its host without rules). */
static void redirect (concur_fetch_engine *e, req *r, long status,
                      const char *loc, double now) {
  char *url = NULL, *key = NULL, *path = NULL, err[256];
  int rc;
  if (r->redirects >= r->max_redirects) {
    if (r->robots_for) robots_done(e, r, now, ROBOTS_NONE, NULL);
    else
      concur_fetch_fail(e, r, "network", CURLE_TOO_MANY_REDIRECTS, status,
           "too many redirects (more than %ld) fetching %s", r->max_redirects,
           r->url);
    return;
  }
  rc = concur_fetch_parseurl(loc, &url, &key, &path, err, sizeof err);
  if (rc != CONCUR_FETCH_OK) {
    if (r->robots_for) robots_done(e, r, now, ROBOTS_NONE, NULL);
    else
      concur_fetch_fail(e, r, "network", CURLE_UNSUPPORTED_PROTOCOL, status,
           "refused redirect from %s: %s", r->url, err);
    return;
  }
  free(r->url); free(r->key); free(r->path);
  r->url = url;
  r->key = key;
  r->path = path;
  r->redirects++;
  if ((status == 303 && strcmp(r->method, "HEAD") != 0) ||
      ((status == 301 || status == 302) && strcmp(r->method, "POST") == 0)) {
    free(r->method);
    r->method = concur_fetch_strdup("GET");
    free(r->body);
    r->body = NULL;
    r->hasbody = 0;
    if (r->method == NULL) {
      concur_fetch_fail(e, r, "limit", 0, status,
                        "out of memory following a redirect");
      return;
    }
  }
  count(e, queued, 1);
  concur_fetch_route(e, r, 1);
}

/* A robots.txt transfer ended with rc and status (no redirect). */
static void robots_transfer_done (concur_fetch_engine *e, req *r,
                                  CURLcode rc, long status, double now) {
  char detail[CURL_ERROR_SIZE + 32];
  if (rc == CURLE_OK && retry_status(e, status) && r->tries < r->retries) {
    retry_later(e, r, now, backoff(e, r));
    return;
  }
  if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED)   /* RFC 9309: the */
    robots_done(e, r, now, ROBOTS_RULES, NULL);      /* first 500 KiB */
  else if (rc == CURLE_OK && status >= 200 && status < 300)
    robots_done(e, r, now, ROBOTS_RULES, NULL);
  else if (rc == CURLE_OK && status >= 400 && status < 500 && status != 429)
    robots_done(e, r, now, ROBOTS_NONE, NULL);
  else if (rc == CURLE_OK && status >= 300 && status < 400)   /* no */
    robots_done(e, r, now, ROBOTS_NONE, NULL);                /* Location */
  else if (rc == CURLE_OK) {
    snprintf(detail, sizeof detail, "HTTP %ld", status);
    robots_done(e, r, now, ROBOTS_UNREACHABLE, detail);
  }
  else if (retryable(rc) && r->tries < r->retries)
    retry_later(e, r, now, backoff(e, r));
  else
    robots_done(e, r, now, ROBOTS_UNREACHABLE,
                r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
}

/* A transfer ended with 'rc'. */
static void transfer_done (concur_fetch_engine *e, req *r, CURLcode rc,
                           double now) {
  host *h = r->h;
  CURL *c = r->easy;
  long status = 0;
  curl_off_t ra = -1;
  char *loc = NULL;
  curl_multi_remove_handle(e->multi, c);
  active_remove(e, r);
  unaccount(e, h);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra);
  curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &r->httpver);
  if (e->cfg.autothrottle && rc == CURLE_OK && status > 0) {
    curl_off_t pre = 0, first = 0;   /* microseconds */
    curl_easy_getinfo(c, CURLINFO_PRETRANSFER_TIME_T, &pre);
    curl_easy_getinfo(c, CURLINFO_STARTTRANSFER_TIME_T, &first);
    concur_fetch_throttle_note(e, h, status, (double)(first - pre) / 1e6,
                               r->launched);
  }
  if (rc == CURLE_OK && status >= 300 && status < 400) {
    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
    if (loc &&
        (loc = concur_fetch_strdup(loc)) == NULL) rc = CURLE_OUT_OF_MEMORY;
  }
  r->easy = NULL;
  concur_fetch_easy_put(e, c);
  count(e, active, -1);
  count(e, bytes, (long long)concur_fetch_bodylen(r));
  if (status >= 100 && status < 600) count(e, by_status[status], 1);
  if ((status == 429 || status == 503) && ra > 0) {   /* the whole host */
    double d = (double)ra > e->cfg.max_backoff ? e->cfg.max_backoff
                                               : (double)ra;
    if (h->paused_until < now + d) h->paused_until = now + d;
    if (h->hasrl) concur_ratelimit_pause(&h->rl, now + d);
  }
  if (r->f && atomic_load(&r->f->cancel_req)) {
    free(loc);
    concur_fetch_cancelreq(e, r);
    return;
  }
  if (rc == CURLE_OK && loc && (r->follow || r->robots_for) &&
      (status == 301 || status == 302 || status == 303 || status == 307 ||
       status == 308)) {
    redirect(e, r, status, loc, now);
    free(loc);
    return;
  }
  free(loc);
  if (r->robots_for) {
    robots_transfer_done(e, r, rc, status, now);
    return;
  }
  if (rc == CURLE_OK) {
    if (retry_status(e, status) && r->tries < r->retries) {
      double d = backoff(e, r);
      if ((status == 429 || status == 503) && ra > 0)   /* 0: no Retry-After header */
        d = (double)ra > e->cfg.max_backoff ? e->cfg.max_backoff : (double)ra;
      retry_later(e, r, now, d);
      return;
    }
    concur_fetch_respond(e, r, status, now);
    return;
  }
  if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
    concur_fetch_fail(e, r, "limit", rc, status,
                      "response body of %s exceeds max_body (%lld bytes)",
                      r->url, r->max_body);
    return;
  }
  if (retryable(rc) && r->tries < r->retries) {
    retry_later(e, r, now, backoff(e, r));
    return;
  }
  concur_fetch_fail(e, r, "network", rc, status, "%s: %s", r->url,
       r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
}

int concur_fetch_collect (concur_fetch_engine *e) {
  CURLMsg *m;
  int left, n = 0;
  double now = concur_now();
  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    if (m->msg == CURLMSG_DONE) {
      req *r = NULL;
      CURLcode rc = m->data.result;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
      transfer_done(e, r, rc, now);
      n++;
    }
  }
  return n;
}

/* ---- cancelling and closing -------------------------------------------------- */

void concur_fetch_reap_cancelled (concur_fetch_engine *e) {
  for (req *r = e->active, *nx; r; r = nx) {
    nx = r->next;
    if (r->f && atomic_load(&r->f->cancel_req)) {
      curl_multi_remove_handle(e->multi, r->easy);
      active_remove(e, r);
      concur_fetch_easy_put(e, r->easy);
      r->easy = NULL;
      unaccount(e, r->h);
      count(e, active, -1);
      concur_fetch_cancelreq(e, r);
    }
  }
  for (size_t i = 0; i < e->nheap; ) {
    req *r = e->heap[i];
    if (r->f && atomic_load(&r->f->cancel_req)) {
      e->heap[i] = e->heap[--e->nheap];   /* re-heapified below */
      count(e, queued, -1);
      concur_fetch_cancelreq(e, r);
    }
    else i++;
  }
  concur_fetch_heap_fix(e);
  if (e->run) {   /* armed requests */
    host *h = e->run;
    do {
      req *r = h->armed;
      if (r && r->f && atomic_load(&r->f->cancel_req)) {
        h->armed = NULL;
        unaccount(e, h);
        count(e, queued, -1);
        concur_fetch_cancelreq(e, r);
      }
      h = h->rnext;
    } while (h != e->run);
  }
}

void concur_fetch_fail_all (concur_fetch_engine *e, req *list) {
  for (req *r = list, *nx; r; r = nx) {
    nx = r->next;
    concur_fetch_fail(e, r, "closed", 0, 0,
                      "client closed before %s was fetched", r->url);
  }
  for (req *r = e->active, *nx; r; r = nx) {
    nx = r->next;
    curl_multi_remove_handle(e->multi, r->easy);
    curl_easy_cleanup(r->easy);
    concur_fetch_fail(e, r, "closed", 0, 0, "client closed while fetching %s",
                      r->url);
  }
  e->active = NULL;
  while (e->nheap) {
    req *r = concur_fetch_heap_pop(e);
    concur_fetch_fail(e, r, "closed", 0, 0, "client closed before retrying %s",
                      r->url);
  }
  for (size_t i = 0; i < e->nbuckets; i++) {
    for (host *h = e->buckets[i], *nx; h; h = nx) {
      req *r;
      nx = h->hnext;
      if (h->armed)
        concur_fetch_fail(e, h->armed, "closed", 0, 0,
                          "client closed before %s was fetched",
                          h->armed->url);
      while ((r = concur_fetch_q_pop(h)) != NULL)
        concur_fetch_fail(e, r, "closed", 0, 0,
                          "client closed before %s was fetched", r->url);
      concur_fetch_hostfree(h);
    }
  }
  free(e->buckets);
  e->buckets = NULL;
  e->nbuckets = e->nhosts = 0;
  e->run = NULL;
  while (e->npool) curl_easy_cleanup(e->pool[--e->npool]);
  atomic_store(&e->st.queued, 0);
  atomic_store(&e->st.active, 0);
}

int concur_fetch_idle (concur_fetch_engine *e) {
  return e->active == NULL && e->nheap == 0 && e->run == NULL &&
         e->nactive == 0;
}
