/*
** redis.c: a connection to Redis (see redis.h for the contract).
**
** hiredis does the protocol's hard half, the reply parser, and the socket
** set-up; this file drives the socket itself. A context is made by
** redisConnectNonBlock and stays non-blocking: redisBufferWrite and
** redisBufferRead then return at once, and every wait is a concur_poll on
** the socket and the abort eventfd. Requests are written in the protocol
** straight into a pipeline's buffer (an array header and length-prefixed
** strings: the easy half), so a pipeline of a thousand commands costs one
** buffer and one write.
**
** State, all owned by the one thread using the connection: 'c' (NULL while
** disconnected), 'failures' (connection attempts failed in a row, which
** sets the next wait), 'err'. 'aborted' and 'abortfd' are the only parts
** another thread touches.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include "redis.h"
#include "wait.h"

#define IOERR (-1)                 /* internal: the connection failed */
#define ATTEMPT_TIMEOUT 10.0       /* cap of one connection attempt, s */

struct concur_redis {
  char *host, *user, *pass;
  int port, db;
  char where[300];
  redisContext *c;
  long long clientid;
  int abortfd, wakefd;
  atomic_int aborted;
  double backoff, max_backoff;
  int failures;
  int uncut;                  /* replies not cut by an interrupt */
  unsigned seed;
  char err[256];
};

/* ---- the URL ---------------------------------------------------------------- */

static int urlpart (CURLU *u, CURLUPart what, char **out, int decode) {
  char *v = NULL;
  CURLUcode rc = curl_url_get(u, what, &v, decode ? CURLU_URLDECODE : 0);
  *out = NULL;
  if (rc != CURLUE_OK) return rc;
  *out = strdup(v);
  curl_free(v);
  return *out ? 0 : -1;
}

/* Fills host, port, user, pass and db from the URL; 0, or -1 with err. */
static int parse_url (concur_redis *r, const char *url, char *err, size_t errsize) {
  CURLU *u = curl_url();
  char *scheme = NULL, *port = NULL, *path = NULL, *query = NULL, *end;
  int ok = 0;
  const char *why = "not a redis:// URL";
  if (u == NULL) { snprintf(err, errsize, "not enough memory"); return -1; }
  if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
    goto done;
  if (urlpart(u, CURLUPART_SCHEME, &scheme, 0) || strcmp(scheme, "redis") != 0)
    goto done;
  why = "no host";
  if (urlpart(u, CURLUPART_HOST, &r->host, 0) || r->host[0] == '\0') goto done;
  if (r->host[0] == '[') {                        /* [::1] -> ::1 */
    size_t n = strlen(r->host);
    memmove(r->host, r->host + 1, n - 1);
    r->host[n - 2] = '\0';
  }
  r->port = 6379;
  if (urlpart(u, CURLUPART_PORT, &port, 0) == 0) r->port = atoi(port);
  urlpart(u, CURLUPART_USER, &r->user, 1);
  urlpart(u, CURLUPART_PASSWORD, &r->pass, 1);
  if (r->user && r->user[0] == '\0') { free(r->user); r->user = NULL; }
  why = "the path must be a database number, as /0";
  r->db = 0;
  if (urlpart(u, CURLUPART_PATH, &path, 0) == 0 && strcmp(path, "/") != 0) {
    long db = strtol(path + 1, &end, 10);
    if (end == path + 1 || *end != '\0' || db < 0 || db > 1000000) goto done;
    r->db = (int)db;
  }
  why = "no query part is understood";
  if (urlpart(u, CURLUPART_QUERY, &query, 0) == 0 && query[0] != '\0') goto done;
  ok = 1;
done:
  if (!ok) snprintf(err, errsize, "bad Redis URL '%s' (%s)", url, why);
  free(scheme); free(port); free(path); free(query);
  curl_url_cleanup(u);
  return ok ? 0 : -1;
}

concur_redis *concur_redis_new (const char *url, char *err, size_t errsize) {
  concur_redis *r = calloc(1, sizeof *r);
  if (r == NULL) { snprintf(err, errsize, "not enough memory"); return NULL; }
  r->abortfd = r->wakefd = -1;
  if (parse_url(r, url, err, errsize) != 0) {
    concur_redis_free(r);
    return NULL;
  }
  r->abortfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->abortfd < 0) {
    snprintf(err, errsize, "eventfd: %s", strerror(errno));
    concur_redis_free(r);
    return NULL;
  }
  atomic_init(&r->aborted, 0);
  r->backoff = 0.05;
  r->max_backoff = 2;
  r->seed = (unsigned)getpid() ^ (unsigned)(size_t)r ^ (unsigned)(concur_now() * 1e6);
  snprintf(r->where, sizeof r->where, strchr(r->host, ':') ? "[%s]:%d" : "%s:%d",
           r->host, r->port);
  return r;
}

static void drop (concur_redis *r) {
  if (r->c) redisFree(r->c);
  r->c = NULL;
  r->clientid = 0;
}

void concur_redis_free (concur_redis *r) {
  if (r == NULL) return;
  drop(r);
  if (r->abortfd >= 0) close(r->abortfd);
  if (r->pass) memset(r->pass, 0, strlen(r->pass));
  free(r->host); free(r->user); free(r->pass);
  free(r);
}

void concur_redis_setuncut (concur_redis *r, int on) { r->uncut = on; }

void concur_redis_setbackoff (concur_redis *r, double backoff, double max_backoff) {
  r->backoff = backoff;
  r->max_backoff = max_backoff;
}

void concur_redis_abort (concur_redis *r) {
  uint64_t one = 1;
  atomic_store(&r->aborted, 1);
  if (write(r->abortfd, &one, sizeof one) < 0) { /* already signalled */ }
}

void concur_redis_setwake (concur_redis *r, int fd) { r->wakefd = fd; }

const char *concur_redis_error (const concur_redis *r) { return r->err; }
const char *concur_redis_where (const concur_redis *r) { return r->where; }
long long concur_redis_clientid (const concur_redis *r) { return r->clientid; }

/* ---- waiting ------------------------------------------------------------------ */

/* Waits until fd (-1: none) has one of 'ev', the deadline, an interrupt,
** the abort or the wake descriptor; returns CONCUR_OK when fd is ready. */
static int wait_io (concur_redis *r, int fd, short ev, double deadline) {
  struct pollfd fds[3];
  int n = 1, woke = -1, io = -1;
  fds[0].fd = r->abortfd;
  fds[0].events = POLLIN;
  if (r->wakefd >= 0) {
    woke = n;
    fds[n].fd = r->wakefd;
    fds[n++].events = POLLIN;
  }
  if (fd >= 0) {
    io = n;
    fds[n].fd = fd;
    fds[n++].events = ev;
  }
  for (;;) {
    int rc;
    if (atomic_load(&r->aborted)) return CONCUR_REDIS_CLOSED;
    for (int i = 0; i < n; i++) fds[i].revents = 0;
    rc = concur_poll(fds, (unsigned long)n, deadline);
    if (rc != CONCUR_OK) return rc;
    if (fds[0].revents) return CONCUR_REDIS_CLOSED;
    if (woke >= 0 && fds[woke].revents) return CONCUR_REDIS_WOKEN;
    if (io >= 0 && fds[io].revents) return CONCUR_OK;
  }
}

static void set_err (concur_redis *r, const char *what, const char *detail) {
  snprintf(r->err, sizeof r->err, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

/* Writes out the context's output buffer. */
static int send_all (concur_redis *r, double deadline) {
  for (;;) {
    int done = 0, rc;
    if (redisBufferWrite(r->c, &done) != REDIS_OK) {
      set_err(r, "lost the connection to Redis", r->c->errstr);
      return IOERR;
    }
    if (done) return CONCUR_OK;
    rc = wait_io(r, r->c->fd, POLLOUT, deadline);
    if (rc != CONCUR_OK) return rc;
  }
}

/* Reads one reply. */
static int recv_one (concur_redis *r, double deadline, redisReply **out) {
  for (;;) {
    void *rep = NULL;
    int rc;
    if (redisGetReplyFromReader(r->c, &rep) != REDIS_OK) {
      set_err(r, "bad reply from Redis", r->c->errstr);
      return IOERR;
    }
    if (rep) { *out = rep; return CONCUR_OK; }
    rc = wait_io(r, r->c->fd, POLLIN, deadline);
    if (rc != CONCUR_OK) return rc;
    if (redisBufferRead(r->c) != REDIS_OK) {
      set_err(r, "lost the connection to Redis", r->c->errstr);
      return IOERR;
    }
  }
}

/* Whether a reply is an error that passes by itself (a restarted server
** loading its data, a replica being promoted). */
static int transient (const redisReply *rep) {
  return rep && rep->type == REDIS_REPLY_ERROR && rep->str &&
         (strncmp(rep->str, "LOADING ", 8) == 0 || strncmp(rep->str, "BUSY ", 5) == 0 ||
          strncmp(rep->str, "TRYAGAIN ", 9) == 0);
}

/* ---- connecting ------------------------------------------------------------------ */

/* One attempt at a TCP connection to one of the host's addresses. */
static int try_connect (concur_redis *r, double deadline) {
  struct addrinfo hints, *res = NULL, *ai;
  char port[16];
  int gai, rc = IOERR;
  double until = concur_now() + ATTEMPT_TIMEOUT;
  if (deadline >= 0 && deadline < until) until = deadline;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof port, "%d", r->port);
  gai = getaddrinfo(r->host, port, &hints, &res);
  if (gai != 0) {
    set_err(r, "cannot resolve the Redis host", gai_strerror(gai));
    return IOERR;
  }
  for (ai = res; ai && r->c == NULL; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    void *addr = ai->ai_family == AF_INET6
      ? (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
      : (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    redisContext *c;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (!inet_ntop(ai->ai_family, addr, ip, sizeof ip)) continue;
    c = redisConnectNonBlock(ip, r->port);
    if (c == NULL) { set_err(r, "not enough memory", NULL); continue; }
    if (c->err) {
      set_err(r, "cannot connect to Redis", c->errstr);
      redisFree(c);
      continue;
    }
    rc = wait_io(r, c->fd, POLLOUT, until);
    if (rc != CONCUR_OK) {
      if (rc == CONCUR_TIMEDOUT) set_err(r, "cannot connect to Redis", "timed out");
      redisFree(c);
      if (rc != CONCUR_TIMEDOUT) break;
      rc = IOERR;
      continue;
    }
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
    if (soerr != 0) {
      set_err(r, "cannot connect to Redis", strerror(soerr));
      redisFree(c);
      rc = IOERR;
      continue;
    }
    r->c = c;
  }
  freeaddrinfo(res);
  return r->c ? CONCUR_OK : rc;
}

/* AUTH, SELECT and CLIENT ID on a new connection. */
static int handshake (concur_redis *r, double deadline) {
  concur_rpipe p = CONCUR_RPIPE_INIT;
  redisReply *rep[3] = { NULL, NULL, NULL };
  int n = 0, rc = CONCUR_OK, oom = 0;
  if (r->pass) {
    oom |= concur_rpipe_cmd(&p, r->user ? 3 : 2) | concur_rpipe_str(&p, "AUTH");
    if (r->user) oom |= concur_rpipe_str(&p, r->user);
    oom |= concur_rpipe_str(&p, r->pass);
  }
  if (r->db) oom |= concur_rpipe_cmd(&p, 2) | concur_rpipe_str(&p, "SELECT") |
                    concur_rpipe_int(&p, r->db);
  oom |= concur_rpipe_cmd(&p, 2) | concur_rpipe_str(&p, "CLIENT") |
         concur_rpipe_str(&p, "ID");
  if (oom || redisAppendFormattedCommand(r->c, p.b.data, p.b.len) != REDIS_OK) {
    concur_rpipe_free(&p);
    set_err(r, "not enough memory", NULL);
    return IOERR;
  }
  rc = send_all(r, deadline);
  for (; rc == CONCUR_OK && n < p.n; n++) rc = recv_one(r, deadline, &rep[n]);
  for (int i = 0; rc == CONCUR_OK && i < p.n; i++) {
    if (transient(rep[i])) {
      set_err(r, "Redis is not ready", rep[i]->str);
      rc = IOERR;
    }
    else if (rep[i]->type == REDIS_REPLY_ERROR) {
      set_err(r, "Redis refused the connection", rep[i]->str);
      rc = CONCUR_REDIS_REFUSED;
    }
  }
  if (rc == CONCUR_OK) r->clientid = rep[p.n - 1]->integer;
  concur_redis_freereplies(rep, n);
  concur_rpipe_free(&p);
  return rc;
}

/* Waits before the next attempt as 'failures' calls for: CONCUR_OK, or
** CONCUR_TIMEDOUT when the deadline comes first (or another failure). */
static int pause_backoff (concur_redis *r, double deadline) {
  double wait = r->backoff;
  int rc;
  if (r->failures <= 0) return CONCUR_OK;
  for (int i = 1; i < r->failures && wait < r->max_backoff; i++) wait *= 2;
  if (wait > r->max_backoff) wait = r->max_backoff;
  wait *= 0.5 + 0.5 * (double)rand_r(&r->seed) / RAND_MAX;
  if (deadline >= 0 && concur_now() + wait >= deadline) {
    rc = wait_io(r, -1, 0, deadline);     /* the rest, interruptible */
    return rc == CONCUR_OK ? CONCUR_TIMEDOUT : rc;
  }
  rc = wait_io(r, -1, 0, concur_now() + wait);
  return rc == CONCUR_TIMEDOUT ? CONCUR_OK : rc;
}

/* Connects (one attempt): CONCUR_OK, IOERR, or another failure. */
static int connect1 (concur_redis *r, double deadline) {
  int rc = try_connect(r, deadline);
  if (rc == CONCUR_OK) rc = handshake(r, deadline);
  if (rc != CONCUR_OK) drop(r);
  return rc;
}

/* ---- commands ---------------------------------------------------------------------- */

void concur_redis_freereplies (redisReply **replies, int n) {
  for (int i = 0; i < n; i++) {
    if (replies[i]) freeReplyObject(replies[i]);
    replies[i] = NULL;
  }
}

int concur_redis_exec (concur_redis *r, double deadline, const concur_rpipe *p,
                       redisReply **replies) {
  concur_intr_fn fn = NULL;
  void *ud = NULL;
  double slice = 0;
  if (r->uncut) concur_get_interrupt_check(&fn, &ud, &slice);
  for (int i = 0; i < p->n; i++) replies[i] = NULL;
  for (;;) {
    int rc = pause_backoff(r, deadline), got = 0, again = 0, fresh = 0;
    if (rc == CONCUR_OK && r->c == NULL) {
      fresh = 1;
      rc = connect1(r, deadline);
    }
    if (rc == CONCUR_OK) {
      if (redisAppendFormattedCommand(r->c, p->b.data, p->b.len) != REDIS_OK) {
        set_err(r, "not enough memory", NULL);
        drop(r);
        return CONCUR_TIMEDOUT;
      }
      rc = send_all(r, deadline);
    }
    if (rc == CONCUR_OK && r->uncut) concur_set_interrupt_check(NULL, NULL, 0);
    while (rc == CONCUR_OK && got < p->n) {
      rc = recv_one(r, deadline, &replies[got]);
      if (rc == CONCUR_OK && !again && transient(replies[got])) {
        again = 1;
        set_err(r, "Redis is not ready", replies[got]->str);
      }
      if (rc == CONCUR_OK) got++;
    }
    if (r->uncut) concur_set_interrupt_check(fn, ud, slice);
    if (rc == CONCUR_OK && !again) {
      r->failures = 0;
      return CONCUR_OK;
    }
    concur_redis_freereplies(replies, got);
    if (again) {                  /* the server is there: ask again, later */
      r->failures++;
      continue;
    }
    drop(r);
    if (rc != IOERR) return rc;
    /* a connection that had worked is tried again at once; one that
    ** fails as soon as it is made waits as a refused one does */
    r->failures = fresh ? r->failures + 1 : 0;
  }
}

int concur_redis_read (concur_redis *r, double deadline, redisReply **reply) {
  int rc;
  *reply = NULL;
  if (r->c == NULL) {
    set_err(r, "not connected", NULL);
    return CONCUR_TIMEDOUT;
  }
  rc = recv_one(r, deadline, reply);
  if (rc == CONCUR_OK) return rc;
  drop(r);
  return rc == IOERR ? CONCUR_TIMEDOUT : rc;
}

/* ---- pipelines ------------------------------------------------------------------------ */

static int put_header (concur_rpipe *p, char type, unsigned long long n) {
  char head[32];
  int len = snprintf(head, sizeof head, "%c%llu\r\n", type, n);
  return concur_buf_write(&p->b, head, (size_t)len);
}

int concur_rpipe_cmd (concur_rpipe *p, int argc) {
  p->n++;
  return put_header(p, '*', (unsigned long long)argc);
}

int concur_rpipe_arg (concur_rpipe *p, const void *s, size_t len) {
  if (put_header(p, '$', len) || concur_buf_write(&p->b, s, len)) return -1;
  return concur_buf_write(&p->b, "\r\n", 2);
}

int concur_rpipe_str (concur_rpipe *p, const char *s) {
  return concur_rpipe_arg(p, s, strlen(s));
}

int concur_rpipe_int (concur_rpipe *p, long long v) {
  char num[32];
  int len = snprintf(num, sizeof num, "%lld", v);
  return concur_rpipe_arg(p, num, (size_t)len);
}

void concur_rpipe_reset (concur_rpipe *p) {
  p->b.len = 0;
  p->n = 0;
}

void concur_rpipe_free (concur_rpipe *p) {
  concur_buf_free(&p->b);
  p->n = 0;
}

/* ---- scripts ------------------------------------------------------------------------ */

void concur_rscript_init (concur_rscript *s, const char *src) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  s->src = src;
  s->sha[0] = '\0';
  if (EVP_Digest(src, strlen(src), md, &len, EVP_sha1(), NULL) && len == 20)
    for (unsigned i = 0; i < len; i++) snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

int concur_rpipe_evalsha (concur_rpipe *p, const concur_rscript *s, int nkeys,
                          int nargs) {
  return concur_rpipe_cmd(p, 3 + nkeys + nargs) | concur_rpipe_str(p, "EVALSHA") |
         concur_rpipe_str(p, s->sha) | concur_rpipe_int(p, nkeys);
}

int concur_redis_eval (concur_redis *r, double deadline, concur_rscript *s,
                       const concur_rpipe *p, redisReply **reply) {
  int rc = concur_redis_exec(r, deadline, p, reply);
  if (rc == CONCUR_OK && (*reply)->type == REDIS_REPLY_ERROR &&
      strncmp((*reply)->str, "NOSCRIPT", 8) == 0) {
    concur_rpipe load = CONCUR_RPIPE_INIT;
    redisReply *lr = NULL;
    freeReplyObject(*reply);
    *reply = NULL;
    if (concur_rpipe_cmd(&load, 3) | concur_rpipe_str(&load, "SCRIPT") |
        concur_rpipe_str(&load, "LOAD") | concur_rpipe_str(&load, s->src)) {
      concur_rpipe_free(&load);
      set_err(r, "not enough memory", NULL);
      return CONCUR_TIMEDOUT;
    }
    rc = concur_redis_exec(r, deadline, &load, &lr);
    concur_rpipe_free(&load);
    if (rc != CONCUR_OK) return rc;
    freeReplyObject(lr);
    rc = concur_redis_exec(r, deadline, p, reply);
  }
  return rc;
}
