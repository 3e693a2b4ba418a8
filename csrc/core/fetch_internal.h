/*
** fetch_internal.h: what the fetch engine's files share (fetch_engine.c:
** the thread, hosts, limits and transfers; fetch_request.c: requests,
** batches, URLs and the encoding of results). Not for the Lua binding.
**
** Ownership: a request (req) is made by prepare() on the submitting thread
** and belongs to the engine thread once it is in the inbox; it is freed by
** concur_fetch_reqfree exactly once, after its future is done or dropped.
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
#define ROBOTS_REDIRECTS 5
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
  struct curl_slist *hdrs;
  double timeout, connect_timeout;
  long retries, max_redirects;
  long long max_body;
  long tries, redirects;
  double started, due;
  CURL *easy;
  concur_buf out;            /* the Response being built: see body_open */
  size_t body0;              /* offset of the body in out */
  strbuf heads;              /* "name\0value\0" pairs, names lower */
  char errbuf[CURL_ERROR_SIZE];
};

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
  req *armed;                /* waits for its slot at armed_at */
  double armed_at;
  int robots_state;          /* 0 not asked, 1 fetching, 2 known */
  req *robots_req;           /* robots.txt request not started yet (kept
                             ** out of the queue: it must go first) */
  concur_robots *robots;
};

/* The counters of concur_fetch_stats, updated by the engine without a lock
** (relaxed atomics: each is exact, the set is not a snapshot). */
typedef struct counters {
  atomic_llong requests, retries, failures, completed, cancelled, bytes;
  atomic_llong queued, active;
  atomic_llong by_status[600];
} counters;

struct concur_fetch_engine {
  concur_fetch_config cfg;   /* strings point into the copies below */
  char *ua;
  char **hdrs;
  pthread_mutex_t mu;        /* inbox, closing */
  req *inbox, *inbox_tail;
  int closing;
  counters st;
  pthread_mutex_t closemu;   /* serializes close */
  int joined;
  pthread_t thread;
  CURLM *multi;
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
  unsigned char *fdst;       /* per socket we opened: FD_* bits (fetch_engine.c) */
  size_t nfdst;
  uint64_t rng;
};

#define count(e, field, d) \
  atomic_fetch_add_explicit(&(e)->st.field, (d), memory_order_relaxed)

/* ---- fetch_request.c ---- */
char *concur_fetch_strdup (const char *s);
int concur_fetch_sbadd (strbuf *b, const void *p, size_t n);
void concur_fetch_sbfree (strbuf *b);
void concur_fetch_seterr (char *err, size_t errlen, const char *fmt, ...);
/* Parses and checks a URL (http/https, a host); fills malloc'd copies of
** the normalized URL, the host key "scheme://host:port" and (path not
** NULL) the path and query. Returns CONCUR_FETCH_OK, EARG or ENOMEM. */
int concur_fetch_parseurl (const char *url, char **norm, char **key,
                           char **path, char *err, size_t errlen);
void concur_fetch_reqfree (req *r);
/* Wakes the engine thread; any thread, never blocks. */
void concur_fetch_wake (concur_fetch_engine *e);
/* Engine thread, e->mu not held; each frees r. */
void concur_fetch_fail (concur_fetch_engine *e, req *r, const char *kind,
                        long code, long status, const char *fmt, ...);
void concur_fetch_cancelreq (concur_fetch_engine *e, req *r);
void concur_fetch_respond (concur_fetch_engine *e, req *r, long status,
                           double now);
/* The Response buffer of r: (re)started for an attempt, and its body. */
int concur_fetch_bodyopen (req *r);
size_t concur_fetch_bodylen (const req *r);

#endif
