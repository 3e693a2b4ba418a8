/*
** fetch_engine.h: concur's HTTP engine, libcurl's multi interface on one
** thread, with no Lua in it.
**
** An engine owns one thread, one multi handle and every easy handle. Other
** threads hand it requests through an inbox (a mutex and a list) and wake it
** (an eventfd in the engine's epoll set, the socket-API equivalent of
** curl_multi_wakeup); each request is a future (future.h) that the engine
** completes with an encoded Response (a table named by its metatable,
** CONCUR_FETCH_RESPONSE_MT: wire.h's 'N') or an encoded error object.
**
** Politeness lives here, not in libcurl: requests wait in per-host queues
** (host = scheme://host:port) until the host has fewer than 'per_host' and
** the engine fewer than 'concurrency' transfers, and then reserve a start
** slot on the host's GCRA limiter (ratelimit.h), in order. Retry-After on
** 429/503 pauses the host's whole schedule; retries wait on a timer heap;
** redirects are followed by the engine itself (one hop = one request through
** the queue, the limiter and robots.txt), only to http and https.
*/
#ifndef CONCUR_CORE_FETCH_ENGINE_H
#define CONCUR_CORE_FETCH_ENGINE_H

#include <stddef.h>
#include "future.h"
#include "result.h"

/* the Response metatable's registry name */
#define CONCUR_FETCH_RESPONSE_MT "concur.fetch.Response"
#define CONCUR_FETCH_MAXRETRYON 64

/* Start slots shared beyond one engine (cluster.limits: per-host rates
** held in Redis for every client of every machine). A shared object (obj.h)
** whose metatable is registered as CONCUR_FETCH_LIMITS_MT; the engine keeps
** a reference. reserve() runs on the engine's thread, before each request
** starts: it returns when (concur_now's clock) the next request to 'host'
** may start, that slot reserved, or < 0 when it has no answer (the engine's
** own limiter alone decides then); the engine starts the request at the
** later of that and its own limiter's slot. */
#define CONCUR_FETCH_LIMITS_MT "concur.cluster.Limits"
typedef struct concur_fetch_limits {
  concur_obj obj;
  double (*reserve) (struct concur_fetch_limits *l, const char *host,
                     double rate, double per, double burst);
} concur_fetch_limits;

/* Client configuration; strings are copied by concur_fetch_new. */
typedef struct concur_fetch_config {
  long concurrency, per_host;
  double rate, per, burst;        /* rate <= 0: no rate limit */
  long retries;
  double backoff, max_backoff;    /* seconds */
  int retry_on[CONCUR_FETCH_MAXRETRYON];
  int nretry_on;
  double timeout, connect_timeout;   /* seconds; 0: none */
  long low_speed_limit;           /* bytes/s ... */
  double low_speed_time;          /* ... over this many seconds; 0: off */
  long long max_body;             /* bytes of (decoded) body */
  long max_redirects;
  int verify, robots;
  int http2;                      /* HTTP/2 where the server speaks it
                                  ** (ALPN on https), streams multiplexed */
  int cookies;                    /* one cookie jar for the engine */
  int autothrottle;               /* hosts that answer 429/503 or slow
                                  ** down get a lower rate (fetch_host.c) */
  double robots_retry;            /* seconds before an unreachable
                                  ** robots.txt is asked for again */
  const char *user_agent;
  const char *const *headers;     /* "Name: value" lines */
  size_t nheaders;
  concur_fetch_limits *limits;    /* or NULL (needs a rate); the engine
                                  ** takes a reference */
} concur_fetch_config;

/* One request as the caller describes it; all pointers are borrowed for the
** duration of concur_fetch_submit, which copies what it keeps. */
typedef struct concur_fetch_spec {
  const char *method;             /* NULL: GET */
  const char *url;
  const char *const *headers;     /* "Name: value" lines, override client's */
  size_t nheaders;
  const char *body;               /* NULL: no body */
  size_t bodylen;
  /* overrides; < 0: the client's value */
  double timeout, connect_timeout;
  long retries, max_redirects;
  long long max_body;
  int follow;                     /* 0: a redirect is the response itself
                                  ** (headers.location says where) */
} concur_fetch_spec;

typedef struct concur_fetch_stats {
  long long requests;   /* HTTP requests sent: attempts and redirect hops */
  long long retries, failures, completed, cancelled, bytes;
  long long throttled;             /* times autothrottle slowed a host */
  long long queued, active;        /* now */
  long long by_status[600];        /* responses by status code */
} concur_fetch_stats;

typedef struct concur_fetch_engine concur_fetch_engine;

/* Results of the calls below: CONCUR_FETCH_OK, CONCUR_FETCH_EARG (bad
** input: a message in err), CONCUR_FETCH_ECLOSED, CONCUR_FETCH_ENOMEM
** (result.h). */

/* libcurl's global init, once per process (pthread_once). */
void concur_fetch_global_init (void);

/* Starts an engine (its thread). Returns NULL with a message in err on bad
** configuration, out of memory, or a thread that would not start. */
concur_fetch_engine *concur_fetch_new (const concur_fetch_config *cfg,
                                       char *err, size_t errlen);

/* Queues a request; on success *out is a new future (one reference, the
** caller's). Any thread; takes the engine's mutex briefly. Nothing is sent
** when the result is not CONCUR_FETCH_OK. */
int concur_fetch_submit (concur_fetch_engine *e, const concur_fetch_spec *s,
                         concur_future **out, char *err, size_t errlen);

/* Batches: many requests submitted at once, all or none (get_all), with
** one wait for all of them instead of one per future. */
typedef struct concur_fetch_batch concur_fetch_batch;

/* Queues n requests; on success *out is the batch (the caller's reference).
** On EARG, *bad is the index of the bad spec and nothing was queued. */
int concur_fetch_submit_batch (concur_fetch_engine *e,
                               const concur_fetch_spec *specs, size_t n,
                               concur_fetch_batch **out, size_t *bad,
                               char *err, size_t errlen);
size_t concur_fetch_batch_size (concur_fetch_batch *b);
/* The i-th future (borrowed: valid while the batch is). */
concur_future *concur_fetch_batch_future (concur_fetch_batch *b, size_t i);
/* Waits until at most 'left' requests are not done (0: all done), or the
** deadline passes (an interrupt of the calling task also ends it, rc says
** which: a concur_cond_wait result); returns how many are not done yet.
** The engine wakes the waiter once, when the count reaches 'left', not at
** every request. One waiter at a time (the batch's owner). */
long concur_fetch_batch_wait (concur_fetch_batch *b, long left,
                              double deadline, int *rc);
/* How many requests are not done yet (no wait). */
long concur_fetch_batch_left (concur_fetch_batch *b);
void concur_fetch_batch_free (concur_fetch_batch *b);

/* Streams: requests (and other futures) reported one by one as each
** completes, to one owner (fetch_stream.c). A slot names each until the
** owner releases it. */
typedef struct concur_fetch_stream concur_fetch_stream;

concur_fetch_stream *concur_fetch_stream_new (void);   /* NULL: no memory */
/* Queues a request in the stream; *slot names it. As concur_fetch_submit. */
int concur_fetch_stream_submit (concur_fetch_engine *e,
                                concur_fetch_stream *s,
                                const concur_fetch_spec *spec, size_t *slot,
                                char *err, size_t errlen);
/* Reports f (any future: a task's) in the stream when it completes. */
int concur_fetch_stream_watch (concur_fetch_stream *s, concur_future *f,
                               size_t *slot);
/* The slot of the next completion (waiting until the deadline); -1 when
** nothing is in flight; -2 when the wait ended first (rc: why). */
long concur_fetch_stream_next (concur_fetch_stream *s, double deadline,
                               int *rc);
long concur_fetch_stream_pending (concur_fetch_stream *s);
/* The slot's future (borrowed, until release), and whether it is watched
** (else a request of the stream). */
concur_future *concur_fetch_stream_future (concur_fetch_stream *s,
                                           size_t slot);
int concur_fetch_stream_watched (concur_fetch_stream *s, size_t slot);
void concur_fetch_stream_release (concur_fetch_stream *s, size_t slot);
/* The owner lets go (requests in flight finish on their own). */
void concur_fetch_stream_free (concur_fetch_stream *s);

/* Checks a URL as submit would (http/https, well formed); 0 or EARG. */
int concur_fetch_checkurl (const char *url, char *err, size_t errlen);

/* Checks a header name and value (no CR/LF, token name); 0 or EARG. */
int concur_fetch_checkheader (const char *name, size_t nlen,
                              const char *value, size_t vlen,
                              char *err, size_t errlen);

/* Copies the counters. Any thread. */
void concur_fetch_getstats (concur_fetch_engine *e, concur_fetch_stats *st);

/* Stops the engine: every queued and running request fails with kind
** "closed" (or ends cancelled), and the thread is joined. Idempotent, any
** thread but the engine's own; never waits on the network. */
void concur_fetch_close (concur_fetch_engine *e);
int concur_fetch_closed (concur_fetch_engine *e);

/* Closes and frees. */
void concur_fetch_free (concur_fetch_engine *e);

/* The owner lets the engine go (the last reference to its client is gone):
** nothing more is submitted; what is queued and running finishes (each
** request within its timeouts), then the engine frees itself. Never blocks.
** At process exit, engines still finishing are closed. e must not be used
** after this call. */
void concur_fetch_letgo (concur_fetch_engine *e);

#endif
