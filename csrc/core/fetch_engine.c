/*
** fetch_engine.c: the libcurl multi loop behind concur.fetch (see
** fetch_engine.h for the shape).
**
** Threads and locks. Any thread calls submit/getstats/close; they take e->mu
** for a few instructions (the inbox, the closing flag; the counters are
** relaxed atomics). All the rest (hosts, queues, timers, easy handles)
** belongs to the engine thread and has no lock. The engine never holds e->mu while it touches a future, so
** the lock order future->mu -> e->mu (interrupt runs under future->mu and
** only sets an atomic and wakes the engine) cannot deadlock.
**
** The loop is libcurl's socket interface on epoll: libcurl says which
** sockets to watch (sock_cb) and when it next needs time (timer_cb); the
** engine hands it exactly the sockets that are ready. (curl_multi_perform
** with curl_multi_poll would poll every transfer's socket on every wake-up,
** which costs more than the HTTP work at 64 transfers.) So the wake-up is
** an eventfd in the epoll set: it plays the part of curl_multi_wakeup.
**
** A request's life: submit parses and copies it, makes its future (pending)
** and appends it to the inbox. The engine routes it to its host's queue.
** When the host and the engine have room, the request reserves a slot on the
** host's limiter: a slot in the future "arms" it (one armed request per host,
** so a Retry-After pause still moves every later start), a slot now starts
** it: the future goes running and an easy handle joins the multi handle.
** When the transfer ends, the request completes its future, or waits on the
** timer heap for a retry, or (a redirect) goes to the front of its new
** host's queue. Each request holds one reference to its future; a request is
** freed only after its future is done, so interrupt() (which runs only while
** the future is running) always finds it alive.
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "clock.h"
#include "fetch_internal.h"

/* ---- library init -------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once (void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void concur_fetch_global_init (void) {
  pthread_once(&curl_once, curl_init_once);
}

static uint64_t rnd (concur_fetch_engine *e) {   /* xorshift64* */
  e->rng ^= e->rng >> 12;
  e->rng ^= e->rng << 25;
  e->rng ^= e->rng >> 27;
  return e->rng * 2685821657736338717ULL;
}

static double rnd01 (concur_fetch_engine *e) {
  return (double)(rnd(e) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- hosts (engine thread) ----------------------------------------------- */

static size_t hash_str (const char *s) {
  size_t h = 5381;
  while (*s) h = h * 33 + (unsigned char)*s++;
  return h;
}

static void run_add (concur_fetch_engine *e, host *h) {
  if (h->inrun) return;
  h->inrun = 1;
  if (e->run == NULL) {
    h->rnext = h->rprev = h;
    e->run = h;
  }
  else {   /* at the tail of the ring */
    h->rnext = e->run;
    h->rprev = e->run->rprev;
    h->rprev->rnext = h;
    e->run->rprev = h;
  }
}

static void run_remove (concur_fetch_engine *e, host *h) {
  if (!h->inrun) return;
  h->inrun = 0;
  if (h->rnext == h) e->run = NULL;
  else {
    h->rprev->rnext = h->rnext;
    h->rnext->rprev = h->rprev;
    if (e->run == h) e->run = h->rnext;
  }
  h->rnext = h->rprev = NULL;
}

/* Finds or makes the host for a key; NULL when out of memory. */
static host *get_host (concur_fetch_engine *e, const char *key) {
  size_t i;
  host *h;
  if (e->nhosts >= e->nbuckets) {   /* grow: keep chains short */
    size_t nb = e->nbuckets ? e->nbuckets * 2 : 64;
    host **b = calloc(nb, sizeof *b);
    if (b == NULL) return NULL;
    for (size_t j = 0; j < e->nbuckets; j++)
      for (host *x = e->buckets[j], *nx; x; x = nx) {
        nx = x->hnext;
        x->hnext = b[hash_str(x->key) % nb];
        b[hash_str(x->key) % nb] = x;
      }
    free(e->buckets);
    e->buckets = b;
    e->nbuckets = nb;
  }
  i = hash_str(key) % e->nbuckets;
  for (h = e->buckets[i]; h; h = h->hnext)
    if (strcmp(h->key, key) == 0) return h;
  h = calloc(1, sizeof *h);
  if (h == NULL || (h->key = concur_fetch_strdup(key)) == NULL) {
    free(h);
    return NULL;
  }
  if (e->cfg.rate > 0) {
    concur_ratelimit_init(&h->rl, e->cfg.rate, e->cfg.per, e->cfg.burst, 0);
    h->hasrl = 1;
  }
  h->hnext = e->buckets[i];
  e->buckets[i] = h;
  e->nhosts++;
  return h;
}

static void q_push (host *h, req *r, int front) {
  r->prev = NULL;
  r->next = NULL;
  if (h->qhead == NULL) h->qhead = h->qtail = r;
  else if (front) {
    r->next = h->qhead;
    h->qhead = r;
  }
  else {
    h->qtail->next = r;
    h->qtail = r;
  }
}

/* Does h still need the engine's attention? */
static int has_work (host *h) {
  return h->qhead != NULL || h->armed != NULL || h->robots_req != NULL;
}

static req *q_pop (host *h) {
  req *r = h->qhead;
  if (r) {
    h->qhead = r->next;
    if (h->qhead == NULL) h->qtail = NULL;
    r->next = NULL;
  }
  return r;
}

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

/* Puts r in its host's queue (front: it was already on its way). */
static void route (concur_fetch_engine *e, req *r, int front) {
  host *h = get_host(e, r->key);
  if (h == NULL) {
    concur_fetch_fail(e, r, "limit", 0, 0, "out of memory queueing %s", r->url);
    return;
  }
  r->h = h;
  q_push(h, r, front);
  if (e->cfg.robots && h->robots_state == 0 && r->robots_for == NULL) {
    req *rr = robots_req(e, h);
    h->robots_state = 1;
    if (rr) {
      rr->h = h;
      h->robots_req = rr;
      count(e, queued, 1);
    }
    else {   /* cannot ask: assume everything is allowed */
      h->robots_state = 2;
    }
  }
  run_add(e, h);
}

/* Sets what a host's robots.txt says, and its Crawl-delay. */
static void robots_known (concur_fetch_engine *e, host *h, concur_robots *rb) {
  double d = concur_fetch_robots_delay(rb);
  h->robots = rb;
  h->robots_state = 2;
  if (d > 0) {
    if (!h->hasrl) {
      concur_ratelimit_init(&h->rl, 1, d, 1, 0);
      h->hasrl = 1;
    }
    else if (h->rl.interval < d)   /* only ever slower */
      concur_ratelimit_setrate(&h->rl, 1, d);
  }
  run_add(e, h);
}

/* ---- timers (engine thread): a binary min-heap on 'due' ------------------ */

static int heap_push (concur_fetch_engine *e, req *r) {
  size_t i;
  if (e->nheap == e->heapcap) {
    size_t ncap = e->heapcap ? e->heapcap * 2 : 16;
    req **nh = realloc(e->heap, ncap * sizeof *nh);
    if (nh == NULL) return -1;
    e->heap = nh;
    e->heapcap = ncap;
  }
  i = e->nheap++;
  while (i > 0 && e->heap[(i - 1) / 2]->due > r->due) {
    e->heap[i] = e->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  e->heap[i] = r;
  return 0;
}

static req *heap_pop (concur_fetch_engine *e) {
  req *top = e->heap[0], *last = e->heap[--e->nheap];
  size_t i = 0, n = e->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && e->heap[c + 1]->due < e->heap[c]->due) c++;
    if (e->heap[c]->due >= last->due) break;
    e->heap[i] = e->heap[c];
    i = c;
  }
  if (n) e->heap[i] = last;
  return top;
}

/* ---- transfers (engine thread) ------------------------------------------- */

static size_t on_body (char *p, size_t size, size_t n, void *ud) {
  req *r = ud;
  size_t len = size * n;
  if ((long long)(concur_fetch_bodylen(r) + len) > r->max_body) {
    r->too_big = 1;
    return 0;   /* aborts the transfer */
  }
  return concur_buf_write(&r->out, p, len) ? 0 : len;
}

static size_t on_header (char *p, size_t size, size_t n, void *ud) {
  req *r = ud;
  size_t len = size * n, nl, vs, ve;
  const char *colon;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* a new response */
    r->heads.len = 0;
    return len;
  }
  colon = memchr(p, ':', len);
  if (colon == NULL || colon == p) return len;
  nl = (size_t)(colon - p);
  vs = nl + 1;
  ve = len;
  while (vs < ve && (p[vs] == ' ' || p[vs] == '\t')) vs++;
  while (ve > vs && (p[ve - 1] == '\r' || p[ve - 1] == '\n' ||
                     p[ve - 1] == ' ' || p[ve - 1] == '\t')) ve--;
  {
    size_t at = r->heads.len;
    if (concur_fetch_sbadd(&r->heads, p, nl)) return 0;
    for (size_t i = at; i < at + nl; i++)
      r->heads.p[i] = (char)tolower((unsigned char)r->heads.p[i]);
  }
  if (concur_fetch_sbadd(&r->heads, "", 1) ||
      concur_fetch_sbadd(&r->heads, p + vs, ve - vs) ||
      concur_fetch_sbadd(&r->heads, "", 1))
    return 0;
  if (nl == 14 && strncasecmp(p, "content-length", 14) == 0) {
    /* room for the body at once (bounded: the server may lie) */
    long long cl = strtoll(p + vs, NULL, 10);
    if (cl > 0 && cl <= r->max_body && cl <= (64 << 20))
      concur_buf_reserve(&r->out, (size_t)cl + 512);
  }
  return len;
}

/* ---- sockets (engine thread) ---------------------------------------------
**
** A keep-alive connection is handed from transfer to transfer: libcurl
** tells sock_cb to stop watching its socket when a transfer ends
** (CURL_POLL_REMOVE) and to watch it again when the next one starts. Doing
** both in epoll costs two system calls per request, so the sockets libcurl
** opens through open_cb are "parked" instead: left in the epoll set with
** their events, re-armed for free when libcurl wants the same events back,
** and dropped from the set only if an event comes while parked (the server
** closed an idle connection). This is safe because libcurl closes those
** sockets through close_cb (close also drops them from the epoll set), so a
** socket number we track is never reused behind our back; sockets libcurl
** makes otherwise (a resolver's) are added and removed every time.
*/

#define FD_OURS 1u     /* opened by open_cb, closed by close_cb */
#define FD_IN 2u       /* in the epoll set for reading */
#define FD_OUT 4u      /* ... for writing */
#define FD_ADDED 8u    /* in the epoll set */
#define FD_PARKED 16u  /* in the set, but libcurl does not watch it */

/* The state of socket s, the table grown as needed; NULL: out of memory. */
static unsigned char *fdstate (concur_fetch_engine *e, curl_socket_t s) {
  if (s < 0) return NULL;
  if ((size_t)s >= e->nfdst) {
    size_t n = e->nfdst ? e->nfdst : 64;
    unsigned char *t;
    while (n <= (size_t)s) n *= 2;
    if ((t = realloc(e->fdst, n)) == NULL) return NULL;
    memset(t + e->nfdst, 0, n - e->nfdst);
    e->fdst = t;
    e->nfdst = n;
  }
  return &e->fdst[s];
}

static curl_socket_t open_cb (void *ud, curlsocktype purpose,
                              struct curl_sockaddr *a) {
  concur_fetch_engine *e = ud;
  curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC,
                           a->protocol);
  unsigned char *st;
  (void)purpose;
  if (s != CURL_SOCKET_BAD && (st = fdstate(e, s)) != NULL) *st = FD_OURS;
  return s;
}

/* NOTE: also called by curl_multi_cleanup, on the thread that closes the
** engine (after the engine thread was joined). */
static int close_cb (void *ud, curl_socket_t s) {
  concur_fetch_engine *e = ud;
  if (s >= 0 && (size_t)s < e->nfdst) e->fdst[s] = 0;
  return close(s);
}

static int epoll_set (concur_fetch_engine *e, int op, curl_socket_t s,
                      unsigned events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.fd = s;
  return epoll_ctl(e->epfd, op, s, &ev);
}

/* libcurl: watch socket s for 'what' (or stop watching it). */
static int sock_cb (CURL *easy, curl_socket_t s, int what, void *ud,
                    void *sockp) {
  concur_fetch_engine *e = ud;
  unsigned want = (what & CURL_POLL_IN ? FD_IN : 0u) |
                  (what & CURL_POLL_OUT ? FD_OUT : 0u);
  unsigned events = (want & FD_IN ? EPOLLIN : 0u) |
                    (want & FD_OUT ? EPOLLOUT : 0u);
  unsigned char *st = (s >= 0 && (size_t)s < e->nfdst &&
                       (e->fdst[s] & FD_OURS)) ? &e->fdst[s] : NULL;
  (void)easy;
  if (st) {   /* a socket we opened: see above */
    if (what == CURL_POLL_REMOVE) {
      if (*st & FD_ADDED) *st |= FD_PARKED;
      return 0;
    }
    if ((*st & FD_ADDED) && (*st & (FD_IN | FD_OUT)) == want) {
      *st &= (unsigned char)~FD_PARKED;
      return 0;
    }
    if (epoll_set(e, *st & FD_ADDED ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s,
                  events) != 0 &&
        epoll_set(e, errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s,
                  events) != 0)
      return 0;   /* cannot watch it: the transfer times out */
    *st = (unsigned char)(FD_OURS | FD_ADDED | want);
    return 0;
  }
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, s, NULL);   /* may be closed: fine */
    return 0;
  }
  if (sockp == NULL || epoll_set(e, EPOLL_CTL_MOD, s, events) != 0) {
    if (epoll_set(e, EPOLL_CTL_ADD, s, events) != 0 && errno == EEXIST)
      epoll_set(e, EPOLL_CTL_MOD, s, events);
    curl_multi_assign(e->multi, s, (void *)1);
  }
  return 0;
}

/* An event on a parked socket: nobody wants it, drop it from the set.
** Returns 1 if s was parked. */
static int unpark (concur_fetch_engine *e, int s) {
  unsigned char *st;
  if (s < 0 || (size_t)s >= e->nfdst) return 0;
  st = &e->fdst[s];
  if ((*st & (FD_OURS | FD_PARKED)) != (FD_OURS | FD_PARKED)) return 0;
  epoll_ctl(e->epfd, EPOLL_CTL_DEL, s, NULL);
  *st = FD_OURS;
  return 1;
}

/* An easy handle with the options that never change set. */
static CURL *easy_get (concur_fetch_engine *e) {
  CURL *c;
  if (e->npool) return e->pool[--e->npool];
  c = curl_easy_init();
  if (c == NULL) return NULL;
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
  /* NOTE: a transfer aborted in the middle of a DNS lookup (cancel, close)
  ** leaves the resolver thread to finish alone instead of joining it, so
  ** close never waits on a slow resolver */
  curl_easy_setopt(c, CURLOPT_QUICK_EXIT, 1L);
#endif
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_cb);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, e);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, e);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_USERAGENT, e->cfg.user_agent);
  if (!e->envproxy)   /* spares libcurl its getenv calls per transfer */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, e->cfg.verify ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, e->cfg.verify ? 2L : 0L);
  if (e->cfg.low_speed_time > 0) {
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, e->cfg.low_speed_limit);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                     (long)ceil(e->cfg.low_speed_time));
  }
  return c;
}

static void easy_put (concur_fetch_engine *e, CURL *c) {
  if (e->npool == e->poolcap) {
    size_t ncap = e->poolcap ? e->poolcap * 2 : 16;
    CURL **np = realloc(e->pool, ncap * sizeof *np);
    if (np == NULL) { curl_easy_cleanup(c); return; }
    e->pool = np;
    e->poolcap = ncap;
  }
  e->pool[e->npool++] = c;
}

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
  if (has_work(h)) run_add(e, h);
}

/* Starts r's transfer (r counted in its host's and the engine's slots). */
static void launch (concur_fetch_engine *e, req *r, double now) {
  host *h = r->h;
  CURL *c;
  if (r->f) {
    if (!r->running) {
      if (!concur_future_start(r->f, e)) {   /* cancelled while queued */
        unaccount(e, h);
        count(e, queued, -1);
        count(e, cancelled, 1);
        concur_fetch_reqfree(r);
        return;
      }
      r->running = 1;
    }
    else if (atomic_load(&r->f->cancel_req)) {
      unaccount(e, h);
      count(e, queued, -1);
      concur_fetch_cancelreq(e, r);
      return;
    }
  }
  c = easy_get(e);
  if (c == NULL) {
    unaccount(e, h);
    count(e, queued, -1);
    concur_fetch_fail(e, r, "network", CURLE_OUT_OF_MEMORY, 0,
                      "out of memory for %s",
         r->url);
    return;
  }
  r->easy = c;
  if (concur_fetch_bodyopen(r)) {
    easy_put(e, c);
    r->easy = NULL;
    unaccount(e, h);
    count(e, queued, -1);
    concur_fetch_fail(e, r, "limit", 0, 0, "out of memory for %s", r->url);
    return;
  }
  r->heads.len = 0;
  r->too_big = 0;
  r->errbuf[0] = '\0';
  if (r->started == 0) r->started = now;
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_PRIVATE, r);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->hdrs);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(r->timeout * 1000));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(r->connect_timeout * 1000));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
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
    easy_put(e, c);
    r->easy = NULL;
    unaccount(e, h);
    count(e, queued, -1);
    concur_fetch_fail(e, r, "network", CURLE_FAILED_INIT, 0, "cannot start %s",
                      r->url);
    return;
  }
  active_add(e, r);
  count(e, requests, 1);
  count(e, queued, -1);
  count(e, active, 1);
}

/* The start time for the next request of h: its limiter's next slot, and
** not before a Retry-After pause. Reserves the slot. */
static double reserve (host *h, double now) {
  double slot = h->hasrl ? concur_ratelimit_reserve(&h->rl, now, -1) : now;
  return slot < h->paused_until ? h->paused_until : slot;
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
  slot = reserve(h, now);
  if (slot > now) {
    h->armed = r;
    h->armed_at = slot;
    return slot;
  }
  launch(e, r, now);
  return 0;
}

/* Starts what host h may start now; returns when it next needs the engine
** (an armed slot), or 0. */
static double pump (concur_fetch_engine *e, host *h, double now) {
  if (h->robots_req && !h->armed && e->nactive < e->cfg.concurrency &&
      h->active < e->cfg.per_host) {   /* robots.txt goes first */
    req *r = h->robots_req;
    double slot;
    h->robots_req = NULL;
    if ((slot = take_slot(e, h, r, now)) > 0) return slot;
  }
  if (h->armed) {
    req *r = h->armed;
    if (h->armed_at > now) return h->armed_at;
    h->armed = NULL;
    if (h->paused_until > now) {   /* paused since it was armed */
      double slot = reserve(h, now);
      if (slot > now) {
        h->armed = r;
        h->armed_at = slot;
        return slot;
      }
    }
    launch(e, r, now);
  }
  while (h->qhead && e->nactive < e->cfg.concurrency &&
         h->active < e->cfg.per_host) {
    req *r = h->qhead;
    double slot;
    if (!wanted(r)) {
      q_pop(h);
      count(e, queued, -1);
      if (r->running) concur_fetch_cancelreq(e, r);
      else {
        count(e, cancelled, 1);
        concur_fetch_reqfree(r);
      }
      continue;
    }
    if (e->cfg.robots && r->robots_for == NULL) {
      if (h->robots_state == 1) break;   /* wait for robots.txt */
      if (!concur_fetch_robots_allowed(h->robots, r->path)) {
        q_pop(h);
        count(e, queued, -1);
        concur_fetch_fail(e, r, "robots", 0, 0,
                          "robots.txt of %s disallows %s", h->key,
             r->url);
        continue;
      }
    }
    q_pop(h);
    if ((slot = take_slot(e, h, r, now)) > 0) return slot;
  }
  return 0;
}

/*
** Gives every runnable host its chance; returns the earliest armed slot
** (0: none). Every host is visited even when the engine is full, so no
** armed slot is ever forgotten; the ring turns by one host per call, so
** hosts take turns at the free transfers.
*/
static double dispatch (concur_fetch_engine *e, double now) {
  double next = 0;
  host *h = e->run;
  size_t n = 1;
  if (h == NULL) return 0;
  for (host *x = h->rnext; x != h; x = x->rnext) n++;
  for (size_t i = 0; i < n; i++) {
    host *nx = h->rnext;   /* NOTE: pump never removes another host */
    double t = pump(e, h, now);
    if (t > 0 && (next == 0 || t < next)) next = t;
    if (!has_work(h)) run_remove(e, h);
    h = nx;
  }
  if (e->run) e->run = e->run->rnext;
  return next;
}

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
  if (heap_push(e, r)) {
    concur_fetch_fail(e, r, "limit", 0, 0,
                      "out of memory scheduling a retry of %s",
         r->url);
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

/* A robots.txt transfer ended: decide its host. */
static void robots_done (concur_fetch_engine *e, req *r, CURLcode rc,
                         long status) {
  host *h = r->robots_for;
  concur_robots *rb;
  if (rc == CURLE_OK && status >= 200 && status < 300)
    rb = concur_fetch_robots_parse(r->out.data + r->body0,
                                   concur_fetch_bodylen(r),
                                   e->cfg.user_agent);
  else if (rc == CURLE_OK && status >= 500)
    rb = concur_fetch_robots_all(0);   /* RFC 9309: unreachable = disallow */
  else
    rb = concur_fetch_robots_all(1);   /* 4xx, or the host does not answer */
  robots_known(e, h, rb);
  concur_fetch_reqfree(r);
}

/* A redirect: r goes on to 'loc' through the queues, or fails. */
static void redirect (concur_fetch_engine *e, req *r, long status,
                      const char *loc) {
  char *url = NULL, *key = NULL, *path = NULL, err[256];
  int rc;
  if (r->redirects >= r->max_redirects) {
    concur_fetch_fail(e, r, "network", CURLE_TOO_MANY_REDIRECTS, status,
         "too many redirects (more than %ld) fetching %s", r->max_redirects,
         r->url);
    return;
  }
  rc = concur_fetch_parseurl(loc, &url, &key, &path, err, sizeof err);
  if (rc != CONCUR_FETCH_OK) {
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
  route(e, r, 1);
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
  if (rc == CURLE_OK && status >= 300 && status < 400) {
    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
    if (loc &&
        (loc = concur_fetch_strdup(loc)) == NULL) rc = CURLE_OUT_OF_MEMORY;
  }
  r->easy = NULL;
  easy_put(e, c);
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
  if (rc == CURLE_OK) {
    if (loc && (status == 301 || status == 302 || status == 303 ||
                status == 307 || status == 308)) {
      redirect(e, r, status, loc);
      free(loc);
      return;
    }
    free(loc);
    if (r->robots_for) {
      robots_done(e, r, rc, status);
      return;
    }
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
  free(loc);
  if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
    if (r->robots_for) {   /* too big to read: use what we have */
      robots_done(e, r, CURLE_OK, 200);
      return;
    }
    concur_fetch_fail(e, r, "limit", rc, status,
                      "response body of %s exceeds max_body "
         "(%lld bytes)", r->url, r->max_body);
    return;
  }
  if (retryable(rc) && r->tries < r->retries) {
    retry_later(e, r, now, backoff(e, r));
    return;
  }
  if (r->robots_for) {
    robots_done(e, r, rc, status);
    return;
  }
  concur_fetch_fail(e, r, "network", rc, status, "%s: %s", r->url,
       r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
}

/* Ends every cancelled running request that is not in a queue (those are
** found by pump). */
static void reap_cancelled (concur_fetch_engine *e) {
  for (req *r = e->active, *nx; r; r = nx) {
    nx = r->next;
    if (r->f && atomic_load(&r->f->cancel_req)) {
      curl_multi_remove_handle(e->multi, r->easy);
      active_remove(e, r);
      easy_put(e, r->easy);
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
  for (size_t i = e->nheap / 2; i-- > 0; ) {   /* sift down, bottom up */
    size_t j = i;
    req *x = e->heap[j];
    for (;;) {
      size_t c = 2 * j + 1;
      if (c >= e->nheap) break;
      if (c + 1 < e->nheap && e->heap[c + 1]->due < e->heap[c]->due) c++;
      if (e->heap[c]->due >= x->due) break;
      e->heap[j] = e->heap[c];
      j = c;
    }
    e->heap[j] = x;
  }
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

/* Fails everything the engine holds with kind "closed"; frees the hosts. */
static void fail_all (concur_fetch_engine *e, req *list) {
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
    req *r = heap_pop(e);
    concur_fetch_fail(e, r, "closed", 0, 0, "client closed before retrying %s",
                      r->url);
  }
  for (size_t i = 0; i < e->nbuckets; i++) {
    for (host *h = e->buckets[i], *nx; h; h = nx) {
      req *r;
      nx = h->hnext;
      if (h->robots_req) concur_fetch_reqfree(h->robots_req);
      if (h->armed)
        concur_fetch_fail(e, h->armed, "closed", 0, 0,
                          "client closed before %s was "
             "fetched", h->armed->url);
      while ((r = q_pop(h)) != NULL)
        concur_fetch_fail(e, r, "closed", 0, 0,
                          "client closed before %s was fetched",
             r->url);
      if (h->hasrl) concur_ratelimit_destroy(&h->rl);
      concur_fetch_robots_free(h->robots);
      free(h->key);
      free(h);
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

/* libcurl: call back in timeout_ms (< 0: no timer). */
static int timer_cb (CURLM *multi, long timeout_ms, void *ud) {
  concur_fetch_engine *e = ud;
  (void)multi;
  e->curl_due = timeout_ms < 0 ? -1 : concur_now() + timeout_ms / 1000.0;
  return 0;
}

/* Hands finished transfers to transfer_done; returns how many. */
static int collect (concur_fetch_engine *e) {
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

static void *engine_main (void *ud) {
  concur_fetch_engine *e = ud;
  struct epoll_event evs[64];
  for (;;) {
    req *list;
    int closing, running, n;
    double now, next, wait;
    pthread_mutex_lock(&e->mu);
    list = e->inbox;
    e->inbox = e->inbox_tail = NULL;
    closing = e->closing;
    pthread_mutex_unlock(&e->mu);
    if (closing) {
      fail_all(e, list);
      break;
    }
    while (list) {
      req *r = list;
      list = r->next;
      route(e, r, 0);
    }
    if (atomic_exchange(&e->cancels, 0)) reap_cancelled(e);
    now = concur_now();
    while (e->nheap && e->heap[0]->due <= now) {   /* retries due */
      req *r = heap_pop(e);
      route(e, r, 1);
    }
    next = dispatch(e, now);
    /* how long to sleep: libcurl's timer, an armed slot, a retry */
    now = concur_now();
    wait = MAXWAIT_MS;
    if (e->curl_due >= 0) wait = ceil((e->curl_due - now) * 1000);
    if (next > 0 && ceil((next - now) * 1000) < wait)
      wait = ceil((next - now) * 1000);
    if (e->nheap && ceil((e->heap[0]->due - now) * 1000) < wait)
      wait = ceil((e->heap[0]->due - now) * 1000);
    if (wait < 0) wait = 0;
    if (wait > MAXWAIT_MS) wait = MAXWAIT_MS;
    n = epoll_wait(e->epfd, evs, 64, (int)wait);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd, flags = 0;
      if (fd == e->evfd) {
        uint64_t v;
        ssize_t rd = read(e->evfd, &v, sizeof v);
        (void)rd;
        continue;
      }
      if (unpark(e, fd)) continue;
      if (evs[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
      if (evs[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (evs[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
      curl_multi_socket_action(e->multi, fd, flags, &running);
    }
    if (e->curl_due >= 0 && e->curl_due <= concur_now()) {
      e->curl_due = -1;
      curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    collect(e);
  }
  return NULL;
}

/* ---- the engine ---------------------------------------------------------- */

concur_fetch_engine *concur_fetch_new (const concur_fetch_config *cfg,
                                       char *err, size_t errlen) {
  concur_fetch_engine *e;
  concur_fetch_global_init();
  if (cfg->concurrency < 1 || cfg->per_host < 1 || cfg->retries < 0 ||
      cfg->max_redirects < 0 || cfg->max_body < 0 || !(cfg->backoff >= 0) ||
      !(cfg->max_backoff >= 0) || !(cfg->timeout >= 0) ||
      !(cfg->connect_timeout >= 0) || cfg->nretry_on < 0 ||
      cfg->nretry_on > CONCUR_FETCH_MAXRETRYON ||
      (cfg->rate > 0 && (!(cfg->per > 0) || !(cfg->burst >= 1)))) {
    concur_fetch_seterr(err, errlen, "bad client configuration");
    return NULL;
  }
  e = calloc(1, sizeof *e);
  if (e == NULL) goto oom;
  e->epfd = e->evfd = -1;
  pthread_mutex_init(&e->mu, NULL);
  pthread_mutex_init(&e->closemu, NULL);
  e->joined = 1;   /* nothing to join until the thread runs */
  e->cfg = *cfg;
  e->ua = concur_fetch_strdup(cfg->user_agent ? cfg->user_agent : "concur");
  e->hdrs = calloc(cfg->nheaders + 1, sizeof *e->hdrs);
  if (e->ua == NULL || e->hdrs == NULL) goto oom;
  for (size_t i = 0; i < cfg->nheaders; i++)
    if ((e->hdrs[i] = concur_fetch_strdup(cfg->headers[i])) == NULL) goto oom;
  e->cfg.user_agent = e->ua;
  e->cfg.headers = (const char *const *)e->hdrs;
  e->rng = (uint64_t)(uintptr_t)e ^ (uint64_t)(concur_now() * 1e9) ^
           0x9e3779b97f4a7c15ULL;
  if (e->rng == 0) e->rng = 1;
  atomic_init(&e->cancels, 0);
  e->curl_due = -1;
  {
    static const char *const vars[] = { "http_proxy", "HTTP_PROXY",
      "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL };
    for (int i = 0; vars[i]; i++)
      if (getenv(vars[i]) && getenv(vars[i])[0]) e->envproxy = 1;
  }
  e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  e->epfd = epoll_create1(EPOLL_CLOEXEC);
  e->multi = curl_multi_init();
  if (e->multi == NULL || e->evfd < 0 || e->epfd < 0) goto oom;
  {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = e->evfd;
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->evfd, &ev) != 0) goto oom;
  }
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
  /* keep one idle connection per possible transfer, and some spare */
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS,
                    (long)(cfg->concurrency * 2 + 8));
  if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
    concur_fetch_seterr(err, errlen, "cannot start the fetch engine thread");
    concur_fetch_free(e);
    return NULL;
  }
  pthread_setname_np(e->thread, "concur-fetch");
  e->joined = 0;
  return e;
oom:
  concur_fetch_seterr(err, errlen, "out of memory");
  concur_fetch_free(e);
  return NULL;
}

void concur_fetch_getstats (concur_fetch_engine *e, concur_fetch_stats *st) {
#define LOAD(f) st->f = atomic_load_explicit(&e->st.f, memory_order_relaxed)
  LOAD(requests); LOAD(retries); LOAD(failures); LOAD(completed);
  LOAD(cancelled); LOAD(bytes); LOAD(queued); LOAD(active);
  for (int i = 0; i < 600; i++) LOAD(by_status[i]);
#undef LOAD
}

int concur_fetch_closed (concur_fetch_engine *e) {
  int c;
  pthread_mutex_lock(&e->mu);
  c = e->closing;
  pthread_mutex_unlock(&e->mu);
  return c;
}

void concur_fetch_close (concur_fetch_engine *e) {
  pthread_mutex_lock(&e->closemu);
  if (!e->joined) {
    pthread_mutex_lock(&e->mu);
    e->closing = 1;
    concur_fetch_wake(e);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->joined = 1;
    /* NOTE: under e->mu, so a submit that saw 'closing' clear has finished
    ** its wake-up; every future is done, so no interrupt can come. */
    pthread_mutex_lock(&e->mu);
    curl_multi_cleanup(e->multi);
    e->multi = NULL;
    close(e->evfd);
    close(e->epfd);
    e->evfd = e->epfd = -1;
    pthread_mutex_unlock(&e->mu);
  }
  pthread_mutex_unlock(&e->closemu);
}

void concur_fetch_free (concur_fetch_engine *e) {
  if (e == NULL) return;
  concur_fetch_close(e);
  if (e->multi) curl_multi_cleanup(e->multi);   /* never started */
  if (e->evfd >= 0) close(e->evfd);
  if (e->epfd >= 0) close(e->epfd);
  pthread_mutex_destroy(&e->mu);
  pthread_mutex_destroy(&e->closemu);
  if (e->hdrs)
    for (size_t i = 0; e->hdrs[i]; i++) free(e->hdrs[i]);
  free(e->hdrs);
  free(e->ua);
  free(e->heap);
  free(e->pool);
  free(e->fdst);   /* after curl_multi_cleanup: close_cb uses it */
  free(e);
}
