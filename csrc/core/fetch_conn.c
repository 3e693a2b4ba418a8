/*
** fetch_conn.c: the fetch engine's side of libcurl (engine thread only):
** sockets watched with epoll for libcurl's socket API, the pool of easy
** handles with the options that never change, and the callbacks that
** receive headers and bodies into the Response being built.
**
** Sockets. libcurl says which sockets to watch (sock_cb) and when it next
** needs time (timer_cb); the engine hands it exactly the sockets that are
** ready. A keep-alive connection is handed from transfer to transfer:
** libcurl tells sock_cb to stop watching its socket when a transfer ends
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
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "wait.h"
#include "fetch_internal.h"

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
int concur_fetch_sock_cb (CURL *easy, curl_socket_t s, int what, void *ud,
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

/* libcurl: call back in timeout_ms (< 0: no timer). */
int concur_fetch_timer_cb (CURLM *multi, long timeout_ms, void *ud) {
  concur_fetch_engine *e = ud;
  (void)multi;
  e->curl_due = timeout_ms < 0 ? -1 : concur_now() + timeout_ms / 1000.0;
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

void concur_fetch_sock_event (concur_fetch_engine *e, int fd,
                              unsigned events) {
  int flags = 0, running;
  if (unpark(e, fd)) return;
  if (events & EPOLLIN) flags |= CURL_CSELECT_IN;
  if (events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
  if (events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
  curl_multi_socket_action(e->multi, fd, flags, &running);
}

/* ---- receiving ------------------------------------------------------------ */

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

/* ---- easy handles ------------------------------------------------------- */

CURL *concur_fetch_easy_get (concur_fetch_engine *e) {
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
  /* HTTP/2 by ALPN on https (plain http stays HTTP/1.1: no Upgrade
  ** round trip) */
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, e->cfg.http2
                   ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
  if (e->share) {   /* the client's cookie jar; "" starts the engine */
    curl_easy_setopt(c, CURLOPT_SHARE, e->share);
    curl_easy_setopt(c, CURLOPT_COOKIEFILE, "");
  }
  if (e->cfg.low_speed_time > 0) {
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, e->cfg.low_speed_limit);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                     (long)ceil(e->cfg.low_speed_time));
  }
  return c;
}

void concur_fetch_easy_put (concur_fetch_engine *e, CURL *c) {
  if (e->npool == e->poolcap) {
    size_t ncap = e->poolcap ? e->poolcap * 2 : 16;
    CURL **np = realloc(e->pool, ncap * sizeof *np);
    if (np == NULL) { curl_easy_cleanup(c); return; }
    e->pool = np;
    e->poolcap = ncap;
  }
  e->pool[e->npool++] = c;
}
