/*
** fetch_engine.c: the fetch engine's thread and life (see fetch_engine.h
** for the shape, fetch_internal.h for the files).
**
** Threads and locks. Any thread calls submit/getstats/close/letgo; they
** take e->mu for a few instructions (the inbox, the closing and letgo
** flags; the counters are relaxed atomics). All the rest (hosts, queues,
** timers, easy handles) belongs to the engine thread and has no lock. The
** engine never holds e->mu while it touches a future, so the lock order
** future->mu -> e->mu (interrupt runs under future->mu and only sets an
** atomic and wakes the engine) cannot deadlock.
**
** The loop is libcurl's socket interface on epoll (fetch_conn.c). (curl_
** multi_perform with curl_multi_poll would poll every transfer's socket on
** every wake-up, which costs more than the HTTP work at 64 transfers.) So
** the wake-up is an eventfd in the epoll set: it plays the part of
** curl_multi_wakeup.
**
** Two ways to end. close() fails everything still queued or running with
** kind "closed" and joins the thread: it never waits on the network.
** letgo() (the last reference to the client went away) lets the engine
** finish what it holds, as a collected pool finishes its queue: the thread
** runs until it is idle and then frees the engine itself. Engines let go
** are listed, so that process exit closes those still working rather than
** letting exit() tear libcurl down under them.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "sys.h"
#include "wait.h"
#include "fetch_internal.h"

/* ---- library init -------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once (void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void concur_fetch_global_init (void) {
  pthread_once(&curl_once, curl_init_once);
}

/* ---- engines let go ------------------------------------------------------- */

static pthread_mutex_t drain_mu = PTHREAD_MUTEX_INITIALIZER;
static concur_fetch_engine *draining;   /* through e->dnext, under drain_mu */
static pthread_once_t drain_once = PTHREAD_ONCE_INIT;

/* At exit: closes the engines still finishing their work (their futures
** can no longer be waited for). */
static void close_draining (void) {
  for (;;) {
    concur_fetch_engine *e;
    pthread_mutex_lock(&drain_mu);
    e = draining;
    if (e) draining = e->dnext;
    pthread_mutex_unlock(&drain_mu);
    if (e == NULL) break;
    concur_fetch_free(e);
  }
}

static void drain_init (void) { atexit(close_draining); }

/* Takes e off the list; returns 1 if it was there. */
static int drain_remove (concur_fetch_engine *e) {
  int found = 0;
  pthread_mutex_lock(&drain_mu);
  for (concur_fetch_engine **pp = &draining; *pp; pp = &(*pp)->dnext)
    if (*pp == e) {
      *pp = e->dnext;
      found = 1;
      break;
    }
  pthread_mutex_unlock(&drain_mu);
  return found;
}

/* ---- the loop --------------------------------------------------------------- */

static void destroy (concur_fetch_engine *e);

static void *engine_main (void *ud) {
  concur_fetch_engine *e = ud;
  struct epoll_event evs[64];
  for (;;) {
    req *list;
    int closing, letgo, running, n;
    double now, next, wait;
    pthread_mutex_lock(&e->mu);
    list = e->inbox;
    e->inbox = e->inbox_tail = NULL;
    closing = e->closing;
    letgo = e->letgo;
    pthread_mutex_unlock(&e->mu);
    if (closing) {
      concur_fetch_fail_all(e, list);
      break;
    }
    while (list) {
      req *r = list;
      list = r->next;
      concur_fetch_route(e, r, 0);
    }
    if (atomic_exchange(&e->cancels, 0)) concur_fetch_reap_cancelled(e);
    now = concur_now();
    while (e->nheap && e->heap[0]->due <= now)   /* retries due */
      concur_fetch_route(e, concur_fetch_heap_pop(e), 1);
    next = concur_fetch_dispatch(e, now);
    if (letgo && concur_fetch_idle(e)) {   /* all done, nobody to ask more */
      concur_fetch_fail_all(e, NULL);      /* frees the hosts */
      if (drain_remove(e)) {   /* else close_draining joins and frees us */
        pthread_detach(pthread_self());
        /* NOTE: letgo's last touch of e is its unlock of closemu */
        pthread_mutex_lock(&e->closemu);
        pthread_mutex_unlock(&e->closemu);
        destroy(e);
      }
      return NULL;
    }
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
      int fd = evs[i].data.fd;
      if (fd == e->evfd) {
        uint64_t v;
        ssize_t rd = read(e->evfd, &v, sizeof v);
        (void)rd;
        continue;
      }
      concur_fetch_sock_event(e, fd, evs[i].events);
    }
    if (e->curl_due >= 0 && e->curl_due <= concur_now()) {
      e->curl_due = -1;
      curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    concur_fetch_collect(e);
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
      !(cfg->connect_timeout >= 0) || !(cfg->robots_retry >= 0) ||
      cfg->nretry_on < 0 || cfg->nretry_on > CONCUR_FETCH_MAXRETRYON ||
      (cfg->rate > 0 && (!(cfg->per > 0) || !(cfg->burst >= 1))) ||
      (cfg->limits && !(cfg->rate > 0))) {
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
  if (e->cfg.limits) concur_obj_ref(&e->cfg.limits->obj);   /* destroy's */
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
  if ((e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0
      || (e->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
    char why[160];                 /* descriptors, most likely: say so */
    concur_syserr(errno, why, sizeof why);
    concur_fetch_seterr(err, errlen, "cannot start the fetch engine: %s", why);
    concur_fetch_free(e);
    return NULL;
  }
  e->multi = curl_multi_init();
  if (e->multi == NULL) goto oom;
  {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = e->evfd;
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->evfd, &ev) != 0) goto oom;
  }
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, concur_fetch_sock_cb);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, concur_fetch_timer_cb);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, cfg->http2
                    ? (long)CURLPIPE_MULTIPLEX : (long)CURLPIPE_NOTHING);
  /* NOTE: the share has no lock callbacks: only the engine thread's
  ** handles use it, and curl_share_cleanup runs after they are gone */
  if (cfg->cookies) {
    if ((e->share = curl_share_init()) == NULL ||
        curl_share_setopt(e->share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_COOKIE) != CURLSHE_OK)
      goto oom;
  }
  /* keep one idle connection per possible transfer, and some spare */
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS,
                    (long)(cfg->concurrency * 2 + 8));
  if (concur_thread_create(&e->thread, engine_main, e) != 0) {
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
  LOAD(cancelled); LOAD(bytes); LOAD(throttled); LOAD(queued);
  LOAD(active);
  for (int i = 0; i < 600; i++) LOAD(by_status[i]);
#undef LOAD
}

int concur_fetch_closed (concur_fetch_engine *e) {
  int c;
  pthread_mutex_lock(&e->mu);
  c = e->closing || e->letgo;
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

/* Frees e, its thread joined or ending (the thread's own last act). */
static void destroy (concur_fetch_engine *e) {
  if (e->multi) curl_multi_cleanup(e->multi);
  while (e->npool) curl_easy_cleanup(e->pool[--e->npool]);
  if (e->share) curl_share_cleanup(e->share);
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
  if (e->cfg.limits) concur_obj_unref(&e->cfg.limits->obj);
  free(e);
}

void concur_fetch_letgo (concur_fetch_engine *e) {
  pthread_mutex_lock(&e->closemu);
  if (e->joined) {   /* closed (or never started): nothing runs */
    pthread_mutex_unlock(&e->closemu);
    concur_fetch_free(e);
    return;
  }
  pthread_once(&drain_once, drain_init);
  pthread_mutex_lock(&drain_mu);
  e->dnext = draining;
  draining = e;
  pthread_mutex_unlock(&drain_mu);
  pthread_mutex_lock(&e->mu);
  e->letgo = 1;
  concur_fetch_wake(e);
  pthread_mutex_unlock(&e->mu);
  /* NOTE: once this is unlocked, the engine thread may free e */
  pthread_mutex_unlock(&e->closemu);
}

void concur_fetch_free (concur_fetch_engine *e) {
  if (e == NULL) return;
  concur_fetch_close(e);
  destroy(e);
}
