/*
** fetch_internal.h: what the fetch engine's files share. Not for the Lua
** binding. The files, from the bottom up (each calls only those above it in
** this list):
**   fetch_request.c   requests before and after their transfers: checked
**                     and copied on the submitting thread, queued in the
**                     inbox; futures completed with a Response or an error
**   fetch_url.c       URLs, by libcurl's URL API
**   fetch_host.c      hosts (a hash table), their queues, the runnable ring,
**                     the retry timer heap, what robots.txt said
**   fetch_conn.c      libcurl's side: sockets on epoll, easy handles and
**                     their callbacks
**   fetch_transfer.c  the schedule: routing, politeness, starting and ending
**                     transfers, redirects, retries, robots.txt requests
**   fetch_engine.c    the thread and its loop, the engine's life
**
** Ownership: a request (req) is made by prepare() on the submitting thread
** and belongs to the engine thread once it is in the inbox; it is freed by
** concur_fetch_reqfree exactly once, after its future is done or dropped.
** Everything below but the inbox, the counters and the flags under e->mu
** belongs to the engine thread and has no lock.
*/
#ifndef CONCUR_CORE_FETCH_INTERNAL_H
#define CONCUR_CORE_FETCH_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "fetch_engine.h"
#include "fetch_robots.h"
#include "ratelimit.h"
#include "wire.h"

#define ROBOTS_MAXBODY (512 * 1024)   /* RFC 9309: parse at least 500 KiB */
#define ROBOTS_REDIRECTS 5            /* RFC 9309: follow at least five */
#define ROBOTS_TTL 86400.0            /* RFC 9309: cache at most 24 hours */
#define MAXWAIT_MS 5000               /* a safety net; wake-ups are explicit */

typedef struct req req;
typedef struct host host;

typedef struct strbuf { char *p; size_t len, cap; } strbuf;

struct req {
  concur_fetch_engine *e;
  concur_future *f;          /* NULL: the engine's own robots.txt request */
  req *next, *prev;          /* inbox, host queue or active list */
  host *h;                   /* host of the current url */
  host *robots_for;          /* robots request: the host it decides */
  concur_fetch_batch *batch; /* told when r is freed; NULL: none */
  char *method, *url, *key, *path;   /* key: scheme://host:port */
  char *body;
  size_t bodylen;
  int hasbody, running, too_big;
  int follow;                /* follow redirects (else a 3xx is the answer) */
  void (*on_free) (void *ud, size_t slot);   /* told when r is freed */
  void *on_free_ud;
  size_t slot;
  struct curl_slist *hdrs;
  double timeout, connect_timeout;
  long retries, max_redirects;
  long long max_body;
  long tries, redirects;
  long httpver;              /* CURL_HTTP_VERSION_* of the last response */
  double started, due;
  double launched;           /* when the current attempt started */
  double deadline;           /* > 0: the first attempt must end by then (a
                             ** request that waited for robots.txt) */
  CURL *easy;
  concur_buf out;            /* the Response being built: see bodyopen */
  size_t body0;              /* offset of the body in out */
  strbuf heads;              /* "name\0value\0" pairs, names lower */
  char errbuf[CURL_ERROR_SIZE];
};

/* What a host's robots.txt is known to say. */
enum { ROBOTS_UNASKED, ROBOTS_FETCHING, ROBOTS_KNOWN };

struct host {
  char *key;
  host *hnext;               /* hash chain */
  host *rnext, *rprev;       /* runnable ring */
  int inrun;
  req *qhead, *qtail;
  long active;               /* running and armed transfers */
  int hasrl;
  concur_ratelimit rl;
  double paused_until;
  /* autothrottle: the gap between starts it imposes (0: none), the last
  ** start it allowed, the smoothed latency and its low-water mark */
  double at_gap, at_last, at_lat, at_base, at_cut;
  req *armed;                /* waits for its slot at armed_at */
  double armed_at;
  /* robots.txt */
  int robots_state;          /* ROBOTS_* */
  req *robots_req;           /* robots.txt request not started yet (kept
                             ** out of the queue: it must go first) */
  concur_robots *robots;     /* the rules (NULL: allow all) */
  double robots_until;       /* ask again after this time */
  char *robots_why;          /* why everything is disallowed, or NULL */
  double rwait;              /* earliest deadline of the requests waiting
                             ** for robots.txt (0: none) */
};

/* The counters of concur_fetch_stats, updated by the engine without a lock
** (relaxed atomics: each is exact, the set is not a snapshot). */
typedef struct counters {
  atomic_llong requests, retries, failures, completed, cancelled, bytes;
  atomic_llong throttled;
  atomic_llong queued, active;
  atomic_llong by_status[600];
} counters;

struct concur_fetch_engine {
  concur_fetch_config cfg;   /* strings point into the copies below */
  char *ua;
  char **hdrs;
  pthread_mutex_t mu;        /* inbox, closing, letgo */
  req *inbox, *inbox_tail;
  int closing;               /* fail everything and stop */
  int letgo;                 /* nobody submits any more: finish and stop */
  concur_fetch_engine *dnext;   /* engines let go (fetch_engine.c) */
  counters st;
  pthread_mutex_t closemu;   /* serializes close */
  int joined;
  pthread_t thread;
  CURLM *multi;
  CURLSH *share;             /* the cookie jar (cfg.cookies), else NULL;
                             ** used by the engine thread alone */
  int epfd, evfd;            /* epoll set; eventfd that wakes the engine */
  int envproxy;              /* a proxy is set in the environment */
  atomic_int cancels;        /* a running future was cancelled */
  double curl_due;           /* when libcurl wants time (< 0: never) */
  /* engine thread only */
  host **buckets;
  size_t nbuckets, nhosts;
  host *run;                 /* runnable ring (hosts with work) */
  req *active;               /* transfers in the multi handle */
  long nactive;              /* running and armed */
  req **heap;                /* retry timers, by due */
  size_t nheap, heapcap;
  CURL **pool;               /* idle easy handles */
  size_t npool, poolcap;
  unsigned char *fdst;       /* per socket we opened: FD_* bits (fetch_conn.c) */
  size_t nfdst;
  uint64_t rng;
};

#define count(e, field, d) \
  atomic_fetch_add_explicit(&(e)->st.field, (d), memory_order_relaxed)

/* ---- fetch_request.c ---- */
/* Builds a request from s (copies everything) with its future; nothing is
** queued. Any thread, no lock. */
int concur_fetch_prepare (concur_fetch_engine *e, const concur_fetch_spec *s,
                          req **out, char *err, size_t errlen);
/* Appends the list head..tail (n requests) to the inbox and wakes the
** engine; ECLOSED (and nothing queued) after close. */
int concur_fetch_enqueue (concur_fetch_engine *e, req *head, req *tail,
                          long n);
char *concur_fetch_strdup (const char *s);
int concur_fetch_sbadd (strbuf *b, const void *p, size_t n);
void concur_fetch_sbfree (strbuf *b);
void concur_fetch_seterr (char *err, size_t errlen, const char *fmt, ...);
void concur_fetch_reqfree (req *r);
/* Wakes the engine thread; any thread, never blocks. */
void concur_fetch_wake (concur_fetch_engine *e);
/* Engine thread, e->mu not held; each frees r (a robots.txt request, with
** no future, is only freed). */
void concur_fetch_fail (concur_fetch_engine *e, req *r, const char *kind,
                        long code, long status, const char *fmt, ...);
void concur_fetch_cancelreq (concur_fetch_engine *e, req *r);
void concur_fetch_respond (concur_fetch_engine *e, req *r, long status,
                           double now);
/* The Response buffer of r: (re)started for an attempt, and its body. */
int concur_fetch_bodyopen (req *r);
size_t concur_fetch_bodylen (const req *r);

/* ---- fetch_url.c ---- */
/* Parses and checks a URL (http/https, a host); fills malloc'd copies of
** the URL as libcurl writes it, the host key "scheme://host:port" (key not
** NULL) and the path and query (path not NULL). Returns CONCUR_FETCH_OK,
** EARG (message in err) or ENOMEM. */
int concur_fetch_parseurl (const char *url, char **norm, char **key,
                           char **path, char *err, size_t errlen);
/* The same, always through libcurl's parser (parseurl skips it for the
** common URL it would leave as it is; the unit tests compare the two). */
int concur_fetch_parseurl_curl (const char *url, char **norm, char **key,
                                char **path, char *err, size_t errlen);

/* ---- fetch_host.c ---- */
/* Finds or makes the host for a key; NULL when out of memory. */
host *concur_fetch_host (concur_fetch_engine *e, const char *key);
void concur_fetch_hostfree (host *h);
void concur_fetch_run_add (concur_fetch_engine *e, host *h);
void concur_fetch_run_remove (concur_fetch_engine *e, host *h);
void concur_fetch_q_push (host *h, req *r, int front);
req *concur_fetch_q_pop (host *h);
/* Does h still need the engine's attention? */
int concur_fetch_has_work (const host *h);
/* The retry timers: a binary min-heap on r->due. */
int concur_fetch_heap_push (concur_fetch_engine *e, req *r);
req *concur_fetch_heap_pop (concur_fetch_engine *e);
void concur_fetch_heap_fix (concur_fetch_engine *e);   /* after removals */
/* autothrottle: a response of h came with 'status' after 'latency'
** seconds (server time: from the request sent to its first byte), for a
** request started at 'launched'; adjusts the gap it imposes between h's
** starts. */
void concur_fetch_throttle_note (concur_fetch_engine *e, host *h, long status,
                                 double latency, double launched);
/* The earliest start autothrottle allows h at or after 'slot'; reserves
** it. */
double concur_fetch_throttle_slot (host *h, double slot);
/* Records what robots.txt says (rb: the rules, or NULL when unknown: then
** 'why' says why everything is disallowed) until 'until'. */
void concur_fetch_robots_set (concur_fetch_engine *e, host *h,
                              concur_robots *rb, const char *why,
                              double until);

/* ---- fetch_conn.c ---- */
/* An easy handle with the options that never change set; NULL: no memory. */
CURL *concur_fetch_easy_get (concur_fetch_engine *e);
void concur_fetch_easy_put (concur_fetch_engine *e, CURL *c);
/* libcurl's multi callbacks, and one epoll event handed to libcurl. */
int concur_fetch_sock_cb (CURL *easy, curl_socket_t s, int what, void *ud,
                          void *sockp);
int concur_fetch_timer_cb (CURLM *multi, long timeout_ms, void *ud);
void concur_fetch_sock_event (concur_fetch_engine *e, int fd,
                              unsigned events);

/* ---- fetch_transfer.c ---- */
/* A request from the inbox or the timer heap goes to its host's queue
** (front: it was already on its way). */
void concur_fetch_route (concur_fetch_engine *e, req *r, int front);
/* Starts what may start; returns when the engine must look again (an armed
** slot, a robots.txt wait that expires), or 0. */
double concur_fetch_dispatch (concur_fetch_engine *e, double now);
/* Hands libcurl's finished transfers on; returns how many. */
int concur_fetch_collect (concur_fetch_engine *e);
/* Ends every cancelled request that is running, armed or waiting a retry. */
void concur_fetch_reap_cancelled (concur_fetch_engine *e);
/* Fails everything the engine holds (and 'list') with kind "closed"; frees
** the hosts. */
void concur_fetch_fail_all (concur_fetch_engine *e, req *list);
/* Nothing queued, armed, running or waiting a retry. */
int concur_fetch_idle (concur_fetch_engine *e);

#endif
