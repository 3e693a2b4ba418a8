/*
** sync.c: the Lua-free synchronisation primitives of sync.h.
**
** Shape shared by Lock and Semaphore: the state is an atomic word taken by
** compare-and-swap; a thread that must wait spins briefly, then takes the
** object's mutex, counts itself in 'waiters', and sleeps on 'cv' until its
** compare-and-swap succeeds. A releaser changes the word and only when
** 'waiters' is nonzero takes the mutex to signal. See sync.h for why no
** wake-up is lost. The mutex is held only around the sleep and the signal,
** never while anything else runs.
**
** Event, Barrier and Value are plain mutex-guarded state. The condition
** variable keeps its waiters in arrival order, one cv each, so notify(n)
** wakes exactly the n oldest (as Python's threading.Condition).
*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "shobj.h"
#include "sync.h"

#define SPINS 100          /* busy-wait rounds before sleeping */
#define OWNER_POLL 0.05    /* seconds between looks at a foreign holder */

/* Both ids are cached; a fork (by some other library: concur itself only
** spawns) clears the caches in the child. */
static _Thread_local uintptr_t my_tid;
static atomic_int my_pid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forked (void) {
  my_tid = 0;
  atomic_store(&my_pid, 0);
}

static void watch_forks (void) {
  pthread_atfork(NULL, NULL, forked);
}

uintptr_t concur_sync_thread (void) {
  if (my_tid == 0) my_tid = (uintptr_t)gettid();
  return my_tid;
}

int concur_sync_pid (void) {
  int p = atomic_load_explicit(&my_pid, memory_order_relaxed);
  if (p == 0) {
    pthread_once(&atfork_once, watch_forks);
    p = (int)getpid();
    atomic_store_explicit(&my_pid, p, memory_order_relaxed);
  }
  return p;
}

/* Whether process 'pid' has ended (a zombie has: it holds nothing). */
static int pid_dead (int pid) {
  char path[48], buf[512], *st;
  ssize_t n;
  int fd;
  if (kill(pid, 0) != 0 && errno == ESRCH) return 1;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return errno == ENOENT;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  st = strrchr(buf, ')');   /* the state follows the command name */
  return st && st[1] == ' ' && (st[2] == 'Z' || st[2] == 'X');
}


/* One sleep on cv; the object's mutex is held. 'intr': whether a task
** interrupt may end it (Condition's re-acquire may not). */
static int sleep_on (concur_fcond *cv, pthread_mutex_t *mu, double deadline,
                     int intr) {
  if (intr) return concur_fcond_wait(cv, mu, deadline);
  return concur_fcond_wait_nointr(cv, mu, deadline);
}

static int init2 (pthread_mutex_t *mu, concur_fcond *cv, int pshared) {
  concur_fcond_init(cv);
  return concur_mutex_init(mu, pshared) != 0 ? -1 : 0;
}

/* Wakes one sleeper (or all) if 'waiters' says anyone sleeps. Called after
** the state word changed (seq_cst). */
static void wake (atomic_int *waiters, pthread_mutex_t *mu, concur_fcond *cv,
                  int all) {
  if (atomic_load(waiters) == 0) return;
  concur_mutex_lock(mu);
  if (all) concur_fcond_broadcast(cv);
  else concur_fcond_signal(cv);
  pthread_mutex_unlock(mu);
}

/*
** The slow path of Lock and Semaphore: spins, then sleeps until try(obj)
** succeeds (CONCUR_OK) or the wait ends otherwise. A past deadline makes
** one last try and never sleeps.
*/
static int wait_until (int (*try) (void *), void *obj, atomic_int *waiters,
                       pthread_mutex_t *mu, concur_fcond *cv,
                       double deadline, int intr) {
  int rc = CONCUR_OK;
  if (concur_spin(try, obj, SPINS, -1)) return CONCUR_OK;
  concur_mutex_lock(mu);
  atomic_fetch_add(waiters, 1);
  while (!try(obj)) {
    rc = sleep_on(cv, mu, deadline, intr);
    if (rc != CONCUR_OK) {
      if (try(obj)) rc = CONCUR_OK;   /* it came just in time */
      break;
    }
  }
  atomic_fetch_sub(waiters, 1);
  pthread_mutex_unlock(mu);
  return rc;
}

/* ---- Lock -------------------------------------------------------------- */

int concur_lock_init (concur_lock *l, int pshared) {
  atomic_init(&l->state, 0);
  atomic_init(&l->waiters, 0);
  return init2(&l->mu, &l->cv, pshared);
}

static int lock_try (void *l) {
  /* test before test-and-set: spinners must not bounce the cache line */
  return !concur_lock_locked(l) && concur_lock_tryacquire(l);
}

/*
** The slow path of Lock: as wait_until, but a holder in another process is
** looked at every OWNER_POLL seconds, and the lock of a dead one is taken
** over (its state word still names the dead pid, so one waiter wins).
*/
static int lock_wait (concur_lock *l, double deadline, int intr) {
  int rc = CONCUR_OK, me = concur_sync_pid();
  double look = 0;   /* when to look at a foreign holder next (0: now) */
  /* spins with exponential backoff: a waiter that looks at the word on
  ** every pause pulls its cache line away from a holder that releases and
  ** takes the lock again in a loop, and slows both */
  if (concur_can_spin())
    for (int round = 0, n = 1; round < 12; round++, n = n < 64 ? 2 * n : n) {
      for (int i = 0; i < n; i++) concur_cpu_pause();
      if (lock_try(l)) return CONCUR_OK;
    }
  concur_mutex_lock(&l->mu);
  atomic_fetch_add(&l->waiters, 1);
  for (;;) {
    int holder = 0;
    double until = deadline;
    if (atomic_compare_exchange_strong(&l->state, &holder, me)) break;
    if (holder != me && holder > 0) {
      double now = concur_now();
      if (now >= look) {
        if (pid_dead(holder)) {
          if (atomic_compare_exchange_strong(&l->state, &holder, me)) {
            rc = CONCUR_OWNERDEAD;
            break;
          }
          continue;
        }
        look = now + OWNER_POLL;
      }
      if (until < 0 || look < until) until = look;
    }
    if (rc != CONCUR_OK) break;   /* the deadline passed, or an interrupt */
    rc = sleep_on(&l->cv, &l->mu, until, intr);
    if (rc == CONCUR_TIMEDOUT && until != deadline) rc = CONCUR_OK;
    /* else one last look at the state before giving up */
  }
  atomic_fetch_sub(&l->waiters, 1);
  pthread_mutex_unlock(&l->mu);
  return rc;
}

int concur_lock_acquire (concur_lock *l, double deadline) {
  if (concur_lock_tryacquire(l)) return CONCUR_OK;
  if (deadline >= 0 && concur_now() >= deadline) return CONCUR_TIMEDOUT;
  return lock_wait(l, deadline, 1);
}

void concur_lock_reacquire (concur_lock *l) {
  if (!concur_lock_tryacquire(l)) lock_wait(l, CONCUR_NODEADLINE, 0);
}

int concur_lock_release (concur_lock *l) {
  if (atomic_exchange(&l->state, 0) == 0) return -1;
  wake(&l->waiters, &l->mu, &l->cv, 0);
  return 0;
}

/* ---- RLock ------------------------------------------------------------- */

int concur_rlock_init (concur_rlock *r, int pshared) {
  atomic_init(&r->owner, 0);
  r->count = 0;
  return concur_lock_init(&r->base, pshared);
}

int concur_rlock_owned (concur_rlock *r) {
  /* NOTE: relaxed is enough: a thread reads its own id here only if it
  ** wrote it itself, and no other thread ever writes that id. The lock's
  ** word must name this process too: a thread id of a process that died
  ** holding the RLock may come back as one of ours. */
  return atomic_load_explicit(&r->owner, memory_order_relaxed)
         == concur_sync_thread()
         && atomic_load_explicit(&r->base.state, memory_order_relaxed)
            == concur_sync_pid();
}

int concur_rlock_acquire (concur_rlock *r, double deadline) {
  int rc;
  if (concur_rlock_owned(r)) {
    r->count++;
    return CONCUR_OK;
  }
  rc = concur_lock_acquire(&r->base, deadline);
  if (rc == CONCUR_OK || rc == CONCUR_OWNERDEAD) {
    atomic_store_explicit(&r->owner, concur_sync_thread(),
                          memory_order_relaxed);
    r->count = 1;
  }
  return rc;
}

int concur_rlock_release (concur_rlock *r) {
  if (!concur_rlock_owned(r)) return -1;
  if (--r->count == 0) {
    atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
    concur_lock_release(&r->base);
  }
  return 0;
}

long concur_rlock_releaseall (concur_rlock *r) {
  long n = r->count;
  r->count = 0;
  atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
  concur_lock_release(&r->base);
  return n;
}

void concur_rlock_restore (concur_rlock *r, long count) {
  concur_lock_reacquire(&r->base);
  atomic_store_explicit(&r->owner, concur_sync_thread(), memory_order_relaxed);
  r->count = count;
}

/* ---- Semaphore --------------------------------------------------------- */

int concur_sem_init (concur_sem *s, long value, long bound, int pshared) {
  atomic_init(&s->value, value);
  atomic_init(&s->waiters, 0);
  s->bound = bound;
  return init2(&s->mu, &s->cv, pshared);
}

int concur_sem_tryacquire (concur_sem *s) {
  long v = atomic_load(&s->value);
  while (v > 0)
    if (atomic_compare_exchange_weak(&s->value, &v, v - 1)) return 1;
  return 0;
}

static int sem_try (void *s) {
  return concur_sem_tryacquire(s);
}

int concur_sem_acquire (concur_sem *s, double deadline) {
  if (concur_sem_tryacquire(s)) return CONCUR_OK;
  if (deadline >= 0 && concur_now() >= deadline) return CONCUR_TIMEDOUT;
  return wait_until(sem_try, s, &s->waiters, &s->mu, &s->cv, deadline, 1);
}

int concur_sem_release (concur_sem *s, long n) {
  long v = atomic_load(&s->value);
  do {
    if (s->bound >= 0 ? v > s->bound - n : v > LONG_MAX - n) return -1;
  } while (!atomic_compare_exchange_weak(&s->value, &v, v + n));
  wake(&s->waiters, &s->mu, &s->cv, n > 1);
  return 0;
}

/* ---- Event ------------------------------------------------------------- */

int concur_event_init (concur_event *e, int pshared) {
  atomic_init(&e->flag, 0);
  e->gen = 0;
  e->waiters = 0;
  return init2(&e->mu, &e->cv, pshared);
}

void concur_event_set (concur_event *e) {
  if (atomic_load(&e->flag)) return;
  concur_mutex_lock(&e->mu);
  if (!atomic_load(&e->flag)) {
    atomic_store(&e->flag, 1);
    e->gen++;
    if (e->waiters) concur_fcond_broadcast(&e->cv);
  }
  pthread_mutex_unlock(&e->mu);
}

void concur_event_clear (concur_event *e) {
  atomic_store(&e->flag, 0);
}

int concur_event_isset (concur_event *e) {
  return atomic_load(&e->flag);
}

int concur_event_wait (concur_event *e, double deadline) {
  int rc = CONCUR_OK;
  unsigned gen;
  if (atomic_load(&e->flag)) return CONCUR_OK;
  concur_mutex_lock(&e->mu);
  gen = e->gen;
  e->waiters++;
  while (!atomic_load(&e->flag) && e->gen == gen) {
    rc = concur_fcond_wait(&e->cv, &e->mu, deadline);
    if (rc != CONCUR_OK) {
      if (atomic_load(&e->flag) || e->gen != gen) rc = CONCUR_OK;
      break;
    }
  }
  e->waiters--;
  pthread_mutex_unlock(&e->mu);
  return rc;
}

/* ---- Barrier ----------------------------------------------------------- */

int concur_barrier_init (concur_barrier *b, int parties, int pshared) {
  b->parties = parties;
  b->count = 0;
  b->broken = 0;
  b->generation = b->epoch = 0;
  b->hasaction = 0;
  b->pass_epoch = 0;
  return init2(&b->mu, &b->cv, pshared);
}

/* Breaks the barrier and wakes every waiter; b->mu is held. */
static void barrier_break (concur_barrier *b) {
  b->broken = 1;
  concur_fcond_broadcast(&b->cv);
}

int concur_barrier_wait (concur_barrier *b, double deadline, int *index) {
  int rc = CONCUR_OK;
  unsigned gen, epoch;
  concur_mutex_lock(&b->mu);
  if (b->broken) {
    pthread_mutex_unlock(&b->mu);
    return CONCUR_BROKEN;
  }
  *index = b->count++;
  if (b->count == b->parties && b->hasaction) {   /* the last one, who */
    b->pass_epoch = b->epoch;                    /* runs the action first */
    pthread_mutex_unlock(&b->mu);
    return CONCUR_BARRIER_ACTION;
  }
  if (b->count == b->parties) {   /* the last one: release everyone */
    b->count = 0;
    b->generation++;
    concur_fcond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return CONCUR_OK;
  }
  gen = b->generation;
  epoch = b->epoch;
  for (;;) {
    if (b->generation != gen) { rc = CONCUR_OK; break; }
    if (b->broken || b->epoch != epoch) { rc = CONCUR_BROKEN; break; }
    rc = concur_fcond_wait(&b->cv, &b->mu, deadline);
    if (rc != CONCUR_OK && b->generation == gen && !b->broken
        && b->epoch == epoch) {
      /* as Python: one waiter giving up breaks the barrier for all */
      b->count--;
      barrier_break(b);
      break;
    }
  }
  pthread_mutex_unlock(&b->mu);
  return rc;
}

int concur_barrier_pass (concur_barrier *b, int ok) {
  int rc = CONCUR_OK;
  concur_mutex_lock(&b->mu);
  if (b->broken || b->epoch != b->pass_epoch) rc = CONCUR_BROKEN;
  else if (!ok) {            /* as Python: a failed action breaks it */
    b->count = 0;
    barrier_break(b);
    rc = CONCUR_BROKEN;
  }
  else {
    b->count = 0;
    b->generation++;
    concur_fcond_broadcast(&b->cv);
  }
  pthread_mutex_unlock(&b->mu);
  return rc;
}

void concur_barrier_abort (concur_barrier *b) {
  concur_mutex_lock(&b->mu);
  barrier_break(b);
  pthread_mutex_unlock(&b->mu);
}

/* As Python: waiters still blocked see the barrier broken; it then starts
** afresh, unbroken and empty. */
void concur_barrier_reset (concur_barrier *b) {
  concur_mutex_lock(&b->mu);
  b->epoch++;
  b->count = 0;
  b->broken = 0;
  concur_fcond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

int concur_barrier_waiting (concur_barrier *b) {
  int n;
  concur_mutex_lock(&b->mu);
  n = b->broken ? 0 : b->count;
  pthread_mutex_unlock(&b->mu);
  return n;
}

int concur_barrier_isbroken (concur_barrier *b) {
  int n;
  concur_mutex_lock(&b->mu);
  n = b->broken;
  pthread_mutex_unlock(&b->mu);
  return n;
}

/* ---- Value ------------------------------------------------------------- */

int concur_value_init (concur_value *v, concur_num x, int pshared) {
  v->v = x;
  return concur_mutex_init(&v->mu, pshared) == 0 ? 0 : -1;
}

concur_num concur_value_get (concur_value *v) {
  concur_num x;
  concur_mutex_lock(&v->mu);
  x = v->v;
  pthread_mutex_unlock(&v->mu);
  return x;
}

void concur_value_set (concur_value *v, concur_num x) {
  concur_mutex_lock(&v->mu);
  v->v = x;
  pthread_mutex_unlock(&v->mu);
}

static double num_tofloat (concur_num a) {
  return a.isint ? (double)a.u.i : a.u.n;
}

concur_num concur_num_add (concur_num a, concur_num b) {
  concur_num r;
  r.isint = a.isint && b.isint;
  if (r.isint) r.u.i = (int64_t)((uint64_t)a.u.i + (uint64_t)b.u.i);
  else r.u.n = num_tofloat(a) + num_tofloat(b);
  return r;
}

concur_num concur_value_add (concur_value *v, concur_num d) {
  concur_num x;
  concur_mutex_lock(&v->mu);
  x = v->v = concur_num_add(v->v, d);
  pthread_mutex_unlock(&v->mu);
  return x;
}

/* Lua's == on numbers: exact, across integer and float. */
int concur_num_eq (concur_num a, concur_num b) {
  if (a.isint == b.isint)
    return a.isint ? a.u.i == b.u.i : a.u.n == b.u.n;
  if (b.isint) { concur_num t = a; a = b; b = t; }   /* a int, b float */
  /* b must be integral and in range: [-2^63, 2^63) */
  if (!(b.u.n >= -9223372036854775808.0 && b.u.n < 9223372036854775808.0))
    return 0;
  return (double)(int64_t)b.u.n == b.u.n && (int64_t)b.u.n == a.u.i;
}

int concur_value_cas (concur_value *v, concur_num expect, concur_num x) {
  int ok;
  concur_mutex_lock(&v->mu);
  ok = concur_num_eq(v->v, expect);
  if (ok) v->v = x;
  pthread_mutex_unlock(&v->mu);
  return ok;
}

/* ---- condition variable ------------------------------------------------ */

typedef struct cwaiter {
  uint64_t next, prev;
  _Atomic unsigned notified;   /* the futex word: 0 waiting, 1 notified */
  int pid;
} cwaiter;

static cwaiter *node (uint64_t off) {
  return concur_shm_ptr(off);
}

int concur_condvar_init (concur_condvar *c, int pshared) {
  c->head = c->tail = 0;
  return concur_mutex_init(&c->mu, pshared) == 0 ? 0 : -1;
}

void concur_condvar_destroy (concur_condvar *c) {
  while (c->head) {
    uint64_t next = node(c->head)->next;
    concur_shm_free(c->head);
    c->head = next;
  }
}

/* Unlinks w (at offset off); c->mu is held. */
static void cw_unlink (concur_condvar *c, uint64_t off) {
  cwaiter *w = node(off);
  if (w->prev) node(w->prev)->next = w->next; else c->head = w->next;
  if (w->next) node(w->next)->prev = w->prev; else c->tail = w->prev;
  w->next = w->prev = 0;
}

int concur_condvar_enter (concur_condvar *c, uint64_t *off) {
  cwaiter *w = concur_shm_alloc(sizeof *w, off);
  if (w == NULL) return -1;
  w->next = 0;
  atomic_init(&w->notified, 0);
  w->pid = concur_sync_pid();
  concur_mutex_lock(&c->mu);
  w->prev = c->tail;
  if (c->tail) node(c->tail)->next = *off; else c->head = *off;
  c->tail = *off;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

int concur_condvar_sleep (concur_condvar *c, uint64_t off, double deadline) {
  cwaiter *w = node(off);
  int rc = CONCUR_OK;
  while (!atomic_load(&w->notified)) {
    rc = concur_futex_wait(&w->notified, 0, deadline);
    if (rc != CONCUR_OK) break;
  }
  /* NOTE: a notifier wakes the word with c->mu held, so once we hold it
  ** the node is ours alone to free */
  concur_mutex_lock(&c->mu);
  if (atomic_load(&w->notified)) rc = CONCUR_OK;   /* notify dequeued it */
  else cw_unlink(c, off);
  pthread_mutex_unlock(&c->mu);
  concur_shm_free(off);
  return rc;
}

int concur_condvar_notify (concur_condvar *c, int n) {
  int woken = 0, me = concur_sync_pid();
  concur_mutex_lock(&c->mu);
  while (woken < n && c->head) {
    uint64_t off = c->head;
    cwaiter *w = node(off);
    cw_unlink(c, off);
    if (w->pid != me && pid_dead(w->pid)) {   /* it will never wake */
      concur_shm_free(off);
      continue;
    }
    atomic_store(&w->notified, 1);
    concur_futex_wake(&w->notified, 1);
    woken++;
  }
  pthread_mutex_unlock(&c->mu);
  return woken;
}
