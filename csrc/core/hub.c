/*
** hub.c: a Lua state's completion fd (see hub.h).
**
** Each watch is a node on its future's waiter list (future.h) and on the
** hub's 'live' list; when the future completes, fire() moves the node to
** the 'done' queue and signals. take() frees the nodes it hands out, and
** unwatch() frees a live one. A node is thus always on exactly one of the
** hub's lists, both guarded by h->mu, and reachable from its future only
** while live.
**
** Signalling without lost wake-ups: a signaller queues first, then sets
** 'signalled' and writes the eventfd if it was clear. take() reads the
** eventfd first, then clears 'signalled', then takes the queue; so a
** signal that came before the clear is in the queue it takes, and one
** after it writes the eventfd again (a readable fd with nothing queued is
** only a spurious wake-up). The timerfd is never read: it stays readable
** from its deadline until it is armed again (timerfd_settime clears it),
** so an expiry cannot be lost to a take that was not looking at timers.
**
** A bell (concur_bell) is the one-future form for pollers that want a
** descriptor of their own (cqueues.poll(f)): an eventfd written once, when
** its future completes, and readable from then on.
*/
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include "hub.h"
#include "wait.h"

struct concur_hubnode {
  concur_wnode w;              /* first: the future's hook */
  concur_hub *hub;
  concur_future *f;            /* one reference */
  uint64_t token;
  concur_hubnode *prev, *next; /* on 'live' or (next only) on 'done' */
};

struct concur_hub {
  int epfd, evfd, tfd;
  atomic_int signalled;
  pthread_mutex_t mu;
  concur_hubnode *live;                 /* watched, not completed */
  concur_hubnode *dhead, *dtail;        /* completed, not taken */
};

static void unlive (concur_hub *h, concur_hubnode *n) {
  if (n->prev) n->prev->next = n->next;
  else h->live = n->next;
  if (n->next) n->next->prev = n->prev;
  n->prev = n->next = NULL;
}

void concur_hub_signal (concur_hub *h) {
  if (!atomic_exchange(&h->signalled, 1)) {
    uint64_t one = 1;
    ssize_t r;
    do r = write(h->evfd, &one, sizeof one); while (r < 0 && errno == EINTR);
    /* EAGAIN (the counter is full) leaves it readable: nothing is lost */
  }
}

/* The future completed: with f->mu held (future.h), the node unlinked. */
static void fire (concur_wnode *w) {
  concur_hubnode *n = (concur_hubnode *)w;
  concur_hub *h = n->hub;
  pthread_mutex_lock(&h->mu);
  unlive(h, n);
  if (h->dtail) h->dtail->next = n;
  else h->dhead = n;
  h->dtail = n;
  pthread_mutex_unlock(&h->mu);
  concur_hub_signal(h);
}

concur_hub *concur_hub_new (char *err, size_t errsize) {
  concur_hub *h = calloc(1, sizeof *h);
  struct epoll_event ev;
  const char *what = "out of memory";
  if (h == NULL) goto fail;
  h->epfd = h->evfd = h->tfd = -1;
  what = "epoll_create1";
  if ((h->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) goto fail;
  what = "eventfd";
  if ((h->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) goto fail;
  what = "timerfd_create";
  if ((h->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0)
    goto fail;
  what = "epoll_ctl";
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = h->evfd;
  if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->evfd, &ev) < 0) goto fail;
  ev.data.fd = h->tfd;
  if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->tfd, &ev) < 0) goto fail;
  atomic_init(&h->signalled, 0);
  pthread_mutex_init(&h->mu, NULL);
  return h;
fail:
  snprintf(err, errsize, "%s: %s", what, strerror(errno));
  if (h) {
    if (h->epfd >= 0) close(h->epfd);
    if (h->evfd >= 0) close(h->evfd);
    if (h->tfd >= 0) close(h->tfd);
    free(h);
  }
  return NULL;
}

static void freenode (concur_hubnode *n) {
  concur_obj_unref(&n->f->obj);
  free(n);
}

void concur_hub_free (concur_hub *h) {
  concur_hubnode *n;
  if (h == NULL) return;
  /* NOTE: one at a time, without h->mu across delwaiter (lock order); a
  ** node that fires meanwhile moves to 'done' and is freed below. */
  for (;;) {
    pthread_mutex_lock(&h->mu);
    n = h->live;
    pthread_mutex_unlock(&h->mu);
    if (n == NULL) break;
    if (concur_future_delwaiter(n->f, &n->w)) {
      pthread_mutex_lock(&h->mu);
      unlive(h, n);
      pthread_mutex_unlock(&h->mu);
      freenode(n);
    }
  }
  while ((n = h->dhead) != NULL) {
    h->dhead = n->next;
    freenode(n);
  }
  close(h->epfd);
  close(h->evfd);
  close(h->tfd);
  pthread_mutex_destroy(&h->mu);
  free(h);
}

int concur_hub_fd (concur_hub *h) {
  return h->epfd;
}

concur_hubnode *concur_hub_watch (concur_hub *h, concur_future *f,
                                  uint64_t token, int *done) {
  concur_hubnode *n;
  *done = 0;
  if (concur_future_done(f)) {
    *done = 1;
    return NULL;
  }
  n = calloc(1, sizeof *n);
  if (n == NULL) return NULL;
  n->w.fire = fire;
  n->w.first = 1;
  n->hub = h;
  n->f = f;
  n->token = token;
  concur_obj_ref(&f->obj);
  /* on 'live' before it can fire: fire unlinks it from there */
  pthread_mutex_lock(&h->mu);
  n->next = h->live;
  if (h->live) h->live->prev = n;
  h->live = n;
  pthread_mutex_unlock(&h->mu);
  if (!concur_future_addwaiter(f, &n->w)) {   /* completed just now */
    pthread_mutex_lock(&h->mu);
    unlive(h, n);
    pthread_mutex_unlock(&h->mu);
    freenode(n);
    *done = 1;
    return NULL;
  }
  return n;
}

void concur_hub_unwatch (concur_hub *h, concur_hubnode *n) {
  if (!concur_future_delwaiter(n->f, &n->w)) return;   /* on 'done' now */
  pthread_mutex_lock(&h->mu);
  unlive(h, n);
  pthread_mutex_unlock(&h->mu);
  freenode(n);
}

int concur_hub_settimer (concur_hub *h, double deadline) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (deadline >= 0) {
    double s = floor(deadline);
    its.it_value.tv_sec = (time_t)s;
    its.it_value.tv_nsec = (long)((deadline - s) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
      its.it_value.tv_nsec = 1;   /* zero would disarm it */
  }
  return timerfd_settime(h->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

size_t concur_hub_take (concur_hub *h, uint64_t *out, size_t max) {
  uint64_t v;
  size_t k = 0;
  concur_hubnode *n, *taken = NULL, **tail = &taken;
  ssize_t r;
  do r = read(h->evfd, &v, sizeof v); while (r < 0 && errno == EINTR);
  atomic_store(&h->signalled, 0);
  pthread_mutex_lock(&h->mu);
  while (k < max && (n = h->dhead) != NULL) {
    h->dhead = n->next;
    if (h->dhead == NULL) h->dtail = NULL;
    n->next = NULL;
    *tail = n;
    tail = &n->next;
    out[k++] = n->token;
  }
  if (h->dhead != NULL) {   /* more than max: keep the fd readable */
    pthread_mutex_unlock(&h->mu);
    concur_hub_signal(h);
  }
  else pthread_mutex_unlock(&h->mu);
  while ((n = taken) != NULL) {   /* their futures' references, unlocked */
    taken = n->next;
    freenode(n);
  }
  return k;
}

int concur_hub_pending (concur_hub *h) {
  int p;
  pthread_mutex_lock(&h->mu);
  p = h->dhead != NULL;
  pthread_mutex_unlock(&h->mu);
  return p;
}

int concur_hub_wait (concur_hub *h, double deadline) {
  struct pollfd p;
  p.fd = h->epfd;
  p.events = POLLIN;
  p.revents = 0;
  return concur_poll(&p, 1, deadline);
}

/* ---- bells ----------------------------------------------------------------- */

struct concur_bell {
  concur_wnode w;              /* first */
  concur_future *f;            /* one reference, or NULL */
  int fd;
};

static void ring (int fd) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(fd, &one, sizeof one); while (r < 0 && errno == EINTR);
}

static void bell_fire (concur_wnode *w) {
  ring(((concur_bell *)w)->fd);
}

concur_bell *concur_bell_new (concur_future *f, char *err, size_t errsize) {
  concur_bell *b = calloc(1, sizeof *b);
  if (b == NULL) {
    snprintf(err, errsize, "out of memory");
    return NULL;
  }
  b->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (b->fd < 0) {
    snprintf(err, errsize, "eventfd: %s", strerror(errno));
    free(b);
    return NULL;
  }
  b->w.fire = bell_fire;
  b->w.first = 1;
  if (f) {
    b->f = f;
    concur_obj_ref(&f->obj);
    if (!concur_future_addwaiter(f, &b->w)) ring(b->fd);   /* done already */
  }
  return b;
}

int concur_bell_fd (concur_bell *b) {
  return b->fd;
}

void concur_bell_ring (concur_bell *b) {
  ring(b->fd);
}

void concur_bell_free (concur_bell *b) {
  if (b == NULL) return;
  if (b->f) {
    concur_future_delwaiter(b->f, &b->w);
    concur_obj_unref(&b->f->obj);
  }
  close(b->fd);
  free(b);
}
