/*
** wait.c: monotonic time, condition variables on that clock, futex waits,
** and waits that a task's cancellation or deadline can cut short.
**
** A thread running a task installs an interrupt check (thread-local). Waits
** made by such a thread wake at least every CONCUR_SLICE seconds to run the
** check, so a cancelled task blocked in Queue:get or Future:result stops
** promptly. A thread that runs no task (the main thread) has a check only
** around a wait made from Lua, which notices Ctrl-C (interrupt.c), with a
** longer slice; idle workers sleep undisturbed.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include "sys.h"
#include "wait.h"


#define CONCUR_SLICE 0.01

/* one thread-local struct: one TLS lookup per use in a shared library */
static _Thread_local struct {
  concur_intr_fn fn;
  void *ud;
  double slice;
} intr;
#define intr_fn (intr.fn)
#define intr_ud (intr.ud)
#define intr_slice (intr.slice)

double concur_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double concur_deadline (double timeout) {
  if (!(timeout >= 0 && timeout < CONCUR_FOREVER)) return CONCUR_NODEADLINE;
  return concur_now() + timeout;
}

double concur_clampdeadline (double deadline, double now) {
  if (deadline >= 0 && deadline - now < CONCUR_FOREVER) return deadline;
  return CONCUR_NODEADLINE;   /* none, too far (math.huge), or NaN */
}

int concur_cond_init (pthread_cond_t *c, int pshared) {
  pthread_condattr_t a;
  int rc;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  if (pshared) pthread_condattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  rc = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return rc;
}

int concur_mutex_init (pthread_mutex_t *m, int pshared) {
  pthread_mutexattr_t a;
  int rc;
  pthread_mutexattr_init(&a);
  if (pshared) {
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  }
  rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return rc;
}

/* Whether m looks free (a hint: glibc's lock word, read without a write
** so spinners do not bounce its cache line). */
static int mutex_free (void *ud) {
#ifdef __GLIBC__
  pthread_mutex_t *m = ud;
  return __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) == 0;
#else
  (void)ud;
  return 1;
#endif
}

#define MUTEX_SPINS 200   /* pauses before a taken mutex is slept on */

void concur_mutex_lock_slow (pthread_mutex_t *m) {
  int rc;
  for (int i = 0; i < 4 && concur_spin(mutex_free, m, MUTEX_SPINS / 4, -1); i++) {
    if ((rc = pthread_mutex_trylock(m)) == 0) return;
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(m);
      return;
    }
  }
  if (pthread_mutex_lock(m) == EOWNERDEAD) pthread_mutex_consistent(m);
}

void concur_set_interrupt_check (concur_intr_fn fn, void *ud, double slice) {
  intr_fn = fn;
  intr_ud = ud;
  intr_slice = slice > 0 ? slice : CONCUR_SLICE;
}

void concur_get_interrupt_check (concur_intr_fn *fn, void **ud, double *slice) {
  *fn = intr_fn;
  *ud = intr_ud;
  *slice = intr_slice;
}

int concur_try_interrupt_check (concur_intr_fn fn, void *ud, double slice) {
  if (intr_fn) return 0;
  intr_fn = fn;
  intr_ud = ud;
  intr_slice = slice;
  return 1;
}

int concur_check_interrupt (double *task_deadline) {
  *task_deadline = CONCUR_NODEADLINE;
  return intr_fn ? intr_fn(intr_ud, task_deadline) : CONCUR_OK;
}

/* NOTE: t is a clamped time (concur_clampdeadline): far below the range
** of time_t; the bound here only keeps a caller's slip defined. */
static struct timespec to_timespec (double t) {
  struct timespec ts;
  double s;
  if (!(t >= 0)) t = 0;
  if (t > 2 * CONCUR_FOREVER) t = 2 * CONCUR_FOREVER;
  s = floor(t);
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((t - s) * 1e9);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  return ts;
}

/* the earliest of the wait's deadline, the task's, and the next slice */
static double wake_time (double deadline, double task_deadline, double now) {
  double until = deadline;
  if (task_deadline >= 0 && (until < 0 || task_deadline < until))
    until = task_deadline;
  if (intr_fn && (until < 0 || now + intr_slice < until))
    until = now + intr_slice;
  return until;
}

/*
** The wait shared by both kinds of condition variable: 'sleep' sleeps once
** until 'until' (< 0: none), returning 0 or ETIMEDOUT.
*/
typedef int (*sleep_fn) (void *c, pthread_mutex_t *m, double until);

static int timed_wait (sleep_fn sleep1, void *c, pthread_mutex_t *m,
                       double deadline) {
  double tdl, now;
  int rc = concur_check_interrupt(&tdl);
  if (rc != CONCUR_OK) return rc;
  now = (deadline >= 0 || tdl >= 0 || intr_fn) ? concur_now() : 0;
  deadline = concur_clampdeadline(deadline, now);
  tdl = concur_clampdeadline(tdl, now);
  if (deadline >= 0 && now >= deadline) return CONCUR_TIMEDOUT;
  if (sleep1(c, m, wake_time(deadline, tdl, now)) == ETIMEDOUT) {
    if (deadline >= 0 && concur_now() >= deadline) return CONCUR_TIMEDOUT;
    return concur_check_interrupt(&tdl);
  }
  return CONCUR_OK;
}

static int csleep (void *c, pthread_mutex_t *m, double until) {
  int rc;
  if (until < 0)
    rc = pthread_cond_wait(c, m);
  else {
    struct timespec ts = to_timespec(until);
    rc = pthread_cond_timedwait(c, m, &ts);
  }
  if (rc == EOWNERDEAD) pthread_mutex_consistent(m);
  return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

int concur_cond_wait (pthread_cond_t *c, pthread_mutex_t *m, double deadline) {
  return timed_wait(csleep, c, m, deadline);
}

/* ---- futex condition variable ---------------------------------------------
** A wait reads the sequence number with the mutex held, drops the mutex and
** sleeps while the number is unchanged; signal and broadcast bump it (with
** the mutex held) and wake one or all sleepers. A waiter that read the
** number before a signal cannot miss it: the futex compares first. The
** futex is not private, since the word may be mapped by other processes.
*/

void concur_fcond_init (concur_fcond *c) {
  atomic_init(&c->seq, 0);
}

/* Sleeps while *word == val, until 'until' (< 0: none); 0 or ETIMEDOUT.
** 'priv': FUTEX_PRIVATE_FLAG when only this process uses the word. */
static int futex_sleep (_Atomic unsigned *word, unsigned val, double until,
                        int priv) {
  struct timespec ts;
  long r;
  if (until >= 0) ts = to_timespec(until);
  r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET | priv, val,
              until >= 0 ? &ts : NULL, NULL, FUTEX_BITSET_MATCH_ANY);
  return r < 0 && errno == ETIMEDOUT ? ETIMEDOUT : 0;
}

/* One sleep on c, with m dropped meanwhile; 0, or ETIMEDOUT. */
static int fsleep (void *cv, pthread_mutex_t *m, double until) {
  concur_fcond *c = cv;
  unsigned seq = atomic_load(&c->seq);
  int rc;
  pthread_mutex_unlock(m);
  rc = futex_sleep(&c->seq, seq, until, 0);
  concur_mutex_lock(m);
  return rc;
}

int concur_fcond_wait (concur_fcond *c, pthread_mutex_t *m, double deadline) {
  return timed_wait(fsleep, c, m, deadline);
}

int concur_fcond_wait_nointr (concur_fcond *c, pthread_mutex_t *m,
                              double deadline) {
  if (deadline >= 0) {
    double now = concur_now();
    deadline = concur_clampdeadline(deadline, now);
    if (deadline >= 0 && now >= deadline) return CONCUR_TIMEDOUT;
  }
  if (fsleep(c, m, deadline) == ETIMEDOUT && concur_now() >= deadline)
    return CONCUR_TIMEDOUT;
  return CONCUR_OK;
}

static void fwake (concur_fcond *c, int n) {
  atomic_fetch_add(&c->seq, 1);
  concur_futex_wake(&c->seq, n);
}

typedef struct fword {
  _Atomic unsigned *word;
  unsigned val;
  int priv;
} fword;

/* One sleep on a bare futex word ('m' is unused: there is none). */
static int wsleep (void *c, pthread_mutex_t *m, double until) {
  fword *w = c;
  (void)m;
  return futex_sleep(w->word, w->val, until, w->priv);
}

int concur_futex_wait (_Atomic unsigned *word, unsigned val, double deadline) {
  fword w = { word, val, 0 };
  return timed_wait(wsleep, &w, NULL, deadline);
}

void concur_futex_wake (_Atomic unsigned *word, int n) {
  syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

int concur_futex_wait_local (_Atomic unsigned *word, unsigned val,
                             double deadline) {
  fword w = { word, val, FUTEX_PRIVATE_FLAG };
  return timed_wait(wsleep, &w, NULL, deadline);
}

void concur_futex_wake_local (_Atomic unsigned *word, int n) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void concur_fcond_signal (concur_fcond *c) {
  fwake(c, 1);
}

void concur_fcond_broadcast (concur_fcond *c) {
  fwake(c, INT_MAX);
}

/* the longest single sleep of a sleep without a deadline (it loops) */
#define LONGSLEEP 3600.0

int concur_sleep_until (double deadline) {
  for (;;) {
    double tdl, now, until;
    struct timespec ts;
    int rc = concur_check_interrupt(&tdl);
    if (rc != CONCUR_OK) return rc;
    now = concur_now();
    deadline = concur_clampdeadline(deadline, now);
    tdl = concur_clampdeadline(tdl, now);
    if (deadline >= 0 && now >= deadline) return CONCUR_OK;
    until = wake_time(deadline, tdl, now);
    if (until < 0) until = now + LONGSLEEP;
    ts = to_timespec(until);
    /* a signal (EINTR) ends the sleep early: the loop looks again */
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
  }
}

int concur_poll (struct pollfd *fds, unsigned long nfds, double deadline) {
  double tdl, now, until;
  int rc = concur_check_interrupt(&tdl), ms;
  if (rc != CONCUR_OK) return rc;
  now = concur_now();
  deadline = concur_clampdeadline(deadline, now);
  tdl = concur_clampdeadline(tdl, now);
  if (deadline >= 0 && now >= deadline) return CONCUR_TIMEDOUT;
  until = wake_time(deadline, tdl, now);
  if (until >= 0 && until - now > 3600) until = now + 3600;  /* int ms */
  ms = until < 0 ? -1 : (int)ceil((until - now) * 1000);
  if (poll(fds, (nfds_t)nfds, ms) > 0) return CONCUR_OK;   /* or EINTR: the */
  if (deadline >= 0 && concur_now() >= deadline)           /* caller loops */
    return CONCUR_TIMEDOUT;
  return concur_check_interrupt(&tdl);
}

int concur_can_spin (void) {
  static atomic_int ncpu;   /* 0: not known yet (a benign race to fill) */
  int n = atomic_load_explicit(&ncpu, memory_order_relaxed);
  if (n == 0) {
    n = concur_cpu_count();
    atomic_store_explicit(&ncpu, n, memory_order_relaxed);
  }
  return n > 1;
}
