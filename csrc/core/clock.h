/*
** clock.h: monotonic time, sleeping and timed waits on condition variables.
**
** All deadlines in concur are absolute seconds on CLOCK_MONOTONIC (a double);
** a negative deadline means "no deadline". Condition variables are created by
** concur_cond_init so that timed waits use the same clock.
*/
#ifndef CONCUR_CORE_CLOCK_H
#define CONCUR_CORE_CLOCK_H

#include <pthread.h>

#define CONCUR_NODEADLINE (-1.0)

/* Wait results. */
#define CONCUR_OK 0
#define CONCUR_TIMEDOUT 1      /* the deadline passed */
#define CONCUR_CANCELLED 2     /* the calling task was cancelled */
#define CONCUR_TASKTIMEOUT 3   /* the calling task's own deadline passed */

double concur_now (void);
double concur_deadline (double timeout);   /* timeout < 0: no deadline */
int concur_cpu_count (void);

/* pshared: nonzero for objects placed in shared memory between processes */
int concur_cond_init (pthread_cond_t *c, int pshared);
int concur_mutex_init (pthread_mutex_t *m, int pshared);

/*
** Waits on 'c' with 'm' held, until signalled (or a spurious wake-up), until
** 'deadline', or until the calling thread's running task is interrupted
** (cancelled or past its own deadline; see csrc/interrupt.c). Returns one of
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

/* Sleeps until the deadline or an interrupt (same results as above). */
int concur_sleep_until (double deadline);

/*
** The interrupt check used by waits: set by the task runner of the calling
** thread (NULL for threads that run no task). Returns CONCUR_OK,
** CONCUR_CANCELLED or CONCUR_TASKTIMEOUT, and fills *task_deadline with the
** running task's deadline (or CONCUR_NODEADLINE).
*/
typedef int (*concur_intr_fn) (void *ud, double *task_deadline);
void concur_set_interrupt_check (concur_intr_fn fn, void *ud);
int concur_check_interrupt (double *task_deadline);

#endif
