/*
** redis.h: a connection to Redis over hiredis (the Debian 0.14 synchronous
** API, no TLS), with no Lua in it: the transport of concur.cluster.
**
** A connection is made from a URL, redis://[user:password@]host[:port][/db],
** parsed by libcurl's URL API. It connects lazily, on its first command, and
** again after any failure: the wait between attempts doubles from 'backoff'
** up to 'max_backoff' (with jitter) until the caller's deadline. Commands go
** out as pipelines (concur_rpipe): one write, then one read of as many
** replies; after a lost connection the whole pipeline is sent again, so a
** command may run twice (every user of this file is at least once by
** design). A server still loading its data after a restart (-LOADING) is
** waited for the same way.
**
** Every wait polls the socket together with an abort descriptor, through
** concur_poll, so it ends at its deadline, when the calling task is
** interrupted, or when another thread aborts the connection. A connection
** is used by one thread at a time; only concur_redis_abort may be called
** from any thread. After any result other than CONCUR_OK the socket is
** dropped, so a reply that was not read can never be taken for the next
** one.
*/
#ifndef CONCUR_CORE_REDIS_H
#define CONCUR_CORE_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include "result.h"
#include "wire.h"

/* Results, beside the wait results (CONCUR_TIMEDOUT: Redis unreachable
** until the deadline): CONCUR_REDIS_CLOSED (aborted by concur_redis_abort),
** CONCUR_REDIS_REFUSED (the server refused AUTH or SELECT),
** CONCUR_REDIS_WOKEN (the wake descriptor became readable); result.h. */

typedef struct concur_redis concur_redis;

/* A new connection (not connected yet) to the server of 'url'; NULL with a
** message in err when the URL is not a redis:// URL or memory ran out. */
concur_redis *concur_redis_new (const char *url, char *err, size_t errsize);
void concur_redis_free (concur_redis *r);

/* Pacing of reconnection attempts, seconds (defaults 0.05 and 2). */
void concur_redis_setbackoff (concur_redis *r, double backoff, double max_backoff);

/* Makes every wait of r, now and later, return CONCUR_REDIS_CLOSED. Any
** thread; never blocks. */
void concur_redis_abort (concur_redis *r);

/* Also ends r's waits when 'fd' is readable (CONCUR_REDIS_WOKEN; the
** caller drains fd), so a thread blocked in Redis can be called away by
** another (or by a signal handler) without closing r for good; -1: none. */
void concur_redis_setwake (concur_redis *r, int fd);

/* With 'on', the replies of a pipeline already sent are waited for without
** the caller's interrupt check (the deadline still holds): a caller stopped
** meanwhile still learns what the server did (a slot it reserved, to give
** back). Connecting and backing off stay interruptible. Off by default. */
void concur_redis_setuncut (concur_redis *r, int on);

/* What went wrong last ("connection refused", the server's error, ...),
** and "host:port" of the server. */
const char *concur_redis_error (const concur_redis *r);
const char *concur_redis_where (const concur_redis *r);

/* The server's id of this connection (CLIENT ID, asked at each connect), 0
** when not connected: for CLIENT UNBLOCK from another connection. */
long long concur_redis_clientid (const concur_redis *r);

/* ---- pipelines ------------------------------------------------------------
** Commands written in the Redis protocol into a buffer: cmd(p, argc), then
** exactly argc arguments. Writers return 0, or -1 when memory ran out (the
** pipeline is then unusable: free it).
*/
typedef struct concur_rpipe {
  concur_buf b;
  int n;           /* complete commands */
} concur_rpipe;

#define CONCUR_RPIPE_INIT { CONCUR_BUF_INIT, 0 }

int concur_rpipe_cmd (concur_rpipe *p, int argc);
int concur_rpipe_arg (concur_rpipe *p, const void *s, size_t len);
int concur_rpipe_str (concur_rpipe *p, const char *s);
int concur_rpipe_int (concur_rpipe *p, long long v);
void concur_rpipe_reset (concur_rpipe *p);   /* empty, keeps its memory */
void concur_rpipe_free (concur_rpipe *p);

/* Sends the pipeline and stores its p->n replies in 'replies' (the caller
** frees them with concur_redis_freereplies), reconnecting and sending it
** again as said above until 'deadline' (< 0: none). Returns CONCUR_OK (the
** replies may be errors of single commands: REDIS_REPLY_ERROR), or a
** failure (see above), with the replies then all NULL. */
int concur_redis_exec (concur_redis *r, double deadline, const concur_rpipe *p,
                       redisReply **replies);
void concur_redis_freereplies (redisReply **replies, int n);

/* Waits for one more reply without sending anything (a subscribed
** connection's next message). CONCUR_OK, or a failure: then the connection
** was dropped, and the subscription with it. */
int concur_redis_read (concur_redis *r, double deadline, redisReply **reply);

/* A Lua script run by EVALSHA, and loaded again (SCRIPT LOAD) when the
** server does not know it (first use, a restart). 'src' is the caller's. */
typedef struct concur_rscript {
  const char *src;
  char sha[41];    /* SHA-1 of src, in hex */
} concur_rscript;

void concur_rscript_init (concur_rscript *s, const char *src);

/* Appends EVALSHA of s with 'nkeys' keys and then 'nargs' arguments: the
** caller writes those nkeys + nargs arguments next. */
int concur_rpipe_evalsha (concur_rpipe *p, const concur_rscript *s, int nkeys,
                          int nargs);

/* Runs p, a pipeline whose one command is an EVALSHA of s, as
** concur_redis_exec; when the server does not know s, loads it and runs p
** again. The reply is the caller's (freeReplyObject). */
int concur_redis_eval (concur_redis *r, double deadline, concur_rscript *s,
                       const concur_rpipe *p, redisReply **reply);

#endif
