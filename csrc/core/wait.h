/*
** wait.h: the bottom layer of the core: monotonic time, timed waits on
** condition variables and futex words that a task interrupt can cut short,
** robust mutexes, and the CPU pause of spin loops.
**
** All deadlines in concur are absolute seconds on CLOCK_MONOTONIC (a double);
** a negative deadline means "no deadline". Condition variables are created by
** concur_cond_init so that timed waits use the same clock. A timeout of
** CONCUR_FOREVER or more (a century, math.huge) means "no deadline" too, and
** so does a deadline that far ahead: the waits here clamp every deadline
** they are given, so no caller can overflow a timespec.
*/
#ifndef CONCUR_CORE_WAIT_H
#define CONCUR_CORE_WAIT_H

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include "result.h"

#define CONCUR_NODEADLINE (-1.0)
#define CONCUR_FOREVER 3.2e9   /* seconds: about a century */

/* Wait results: CONCUR_OK, CONCUR_TIMEDOUT, CONCUR_CANCELLED,
** CONCUR_TASKTIMEOUT, CONCUR_INTERRUPTED (result.h). */

double concur_now (void);
/* now + timeout; CONCUR_NODEADLINE for a timeout < 0, NaN, or of
** CONCUR_FOREVER or more */
double concur_deadline (double timeout);
/* 'deadline' (absolute), or CONCUR_NODEADLINE when it is CONCUR_FOREVER or
** more after 'now' */
double concur_clampdeadline (double deadline, double now);

/* pshared: nonzero for objects placed in shared memory between processes */
int concur_cond_init (pthread_cond_t *c, int pshared);
int concur_mutex_init (pthread_mutex_t *m, int pshared);

/*
** Waits on 'c' with 'm' held, until signalled (or a spurious wake-up), until
** 'deadline', or until the calling thread's running task is interrupted
** (cancelled or past its own deadline; see worker.c). Returns one of
** the wait results above; CONCUR_OK may be spurious, so callers loop on their
** predicate. A thread that runs no task is never interrupted.
*/
int concur_cond_wait (pthread_cond_t *c, pthread_mutex_t *m, double deadline);

/*
** A condition variable on one futex word, for objects in memory shared
** between processes: unlike a pthread_cond_t it keeps no record of its
** waiters, so a process killed while waiting leaves nothing behind that
** could swallow a wake-up or block a signaller. Same results and interrupt
** rules as concur_cond_wait; 'm' is held around wait, signal and broadcast.
*/
typedef struct concur_fcond {
  _Atomic unsigned seq;
} concur_fcond;

void concur_fcond_init (concur_fcond *c);
int concur_fcond_wait (concur_fcond *c, pthread_mutex_t *m, double deadline);
/* as concur_fcond_wait, deaf to task interrupts: CONCUR_OK or TIMEDOUT */
int concur_fcond_wait_nointr (concur_fcond *c, pthread_mutex_t *m,
                              double deadline);
void concur_fcond_signal (concur_fcond *c);
void concur_fcond_broadcast (concur_fcond *c);

/* Sleeps while *word == val (a futex word, maybe in shared memory), until
** woken by concur_futex_wake, 'deadline', or an interrupt; same results as
** concur_cond_wait (CONCUR_OK may be spurious). */
int concur_futex_wait (_Atomic unsigned *word, unsigned val, double deadline);
void concur_futex_wake (_Atomic unsigned *word, int n);
/* The same on a word that only threads of this process sleep on and wake
** (a private futex: the kernel keys it by address, without a lookup of the
** mapping behind it). */
int concur_futex_wait_local (_Atomic unsigned *word, unsigned val,
                             double deadline);
void concur_futex_wake_local (_Atomic unsigned *word, int n);

/* Sleeps until the deadline (none: for ever) or an interrupt (same results
** as above). */
int concur_sleep_until (double deadline);

/* poll(2) on 'fds' until one is ready, 'deadline', or an interrupt (same
** results as above; CONCUR_OK may be spurious, so callers look at revents
** and loop). A descriptor is the only way in for a wake-up from another
** thread or process (a socket, an eventfd). */
struct pollfd;
int concur_poll (struct pollfd *fds, unsigned long nfds, double deadline);

/*
** The interrupt check used by waits: set by the task runner of the calling
** thread for as long as it runs tasks, or by a binding around one wait of a
** thread that runs none (see interrupt.c), or NULL. Returns CONCUR_OK,
** CONCUR_CANCELLED, CONCUR_TASKTIMEOUT or CONCUR_INTERRUPTED, and fills
** *task_deadline with the running task's deadline (or CONCUR_NODEADLINE).
** A waiting thread with a check wakes every 'slice' seconds (<= 0: a
** default of 10 ms) to run it.
*/
typedef int (*concur_intr_fn) (void *ud, double *task_deadline);
void concur_set_interrupt_check (concur_intr_fn fn, void *ud, double slice);
int concur_check_interrupt (double *task_deadline);
/* Installs fn as the calling thread's check unless it has one already;
** returns whether it did. */
int concur_try_interrupt_check (concur_intr_fn fn, void *ud, double slice);
/* The calling thread's check (fn NULL: none), to put back after a short
** wait that an interrupt must not cut (the clean-up after one). */
void concur_get_interrupt_check (concur_intr_fn *fn, void **ud, double *slice);

/* ---- mutexes and spinning ---------------------------------------------- */

/* Locks a mutex made by concur_mutex_init; a robust (pshared) one whose
** owner died is made consistent: the state it guards is kept valid at every
** step, so the next owner just goes on. A taken mutex is spun on briefly
** before sleeping (a robust mutex never spins by itself, and the sections
** these mutexes guard are short). */
void concur_mutex_lock_slow (pthread_mutex_t *m);
static inline void concur_mutex_lock (pthread_mutex_t *m) {
  int rc = pthread_mutex_trylock(m);
  if (rc == EOWNERDEAD) pthread_mutex_consistent(m);
  else if (rc != 0) concur_mutex_lock_slow(m);
}

/* A short busy wait before sleeping: a handover between two running
** threads takes far less than a futex sleep and wake-up. */
#if defined(__x86_64__) || defined(__i386__)
#define concur_cpu_pause() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define concur_cpu_pause() __asm__ __volatile__("yield")
#else
#define concur_cpu_pause() ((void)0)
#endif

/* Whether busy waits can pay: false on a single CPU, where the thread we
** wait for cannot run while we spin. */
int concur_can_spin (void);

/* The busy wait of every spin-then-sleep in concur: where spinning can pay,
** pauses the CPU until done(ud) is true, at most 'pauses' times and never
** past 'until' (absolute; < 0: no bound; looked at every 32 pauses).
** Returns whether done(ud) came true. A hint only: the caller checks again
** under its lock. (Inline, so done is inlined too.) */
static inline int concur_spin (int (*done) (void *), void *ud, int pauses,
                               double until) {
  if (!concur_can_spin()) return 0;
  for (int i = 1; i <= pauses; i++) {
    concur_cpu_pause();
    if (done(ud)) return 1;
    if (until >= 0 && (i & 31) == 0 && concur_now() >= until) break;
  }
  return 0;
}

#endif
