/*
** sync.h: locks, semaphores, events, barriers, atomic values and condition
** variables in plain C (no Lua). the bindings (lock.c, event.c, ...) give them to Lua.
**
** Every struct here except concur_condvar holds only atomics, numbers and
** pthread objects made by concur_mutex_init/concur_cond_init, so with
** pshared set it can be placed in memory shared between processes.
** Blocking calls take an absolute deadline (wait.h; < 0: none) and return
** a wait result of wait.h: CONCUR_OK, CONCUR_TIMEDOUT, or CONCUR_CANCELLED /
** CONCUR_TASKTIMEOUT when the calling task was interrupted; barriers add
** CONCUR_BROKEN. A past deadline never blocks.
**
** Every object lives in the shared arena (shobj.h), so it can be used by
** several processes: mutexes are process-shared and
** robust (concur_mutex_lock, wait.h, repairs one whose owner died), sleeps are on
** futex words (concur_fcond, wait.h), and owners are named by ids that
** mean the same in every process. A Lock's state word holds the pid of its
** holder: a waiter sleeping on a lock held by another process looks every
** OWNER_POLL seconds whether that process still lives, and takes over the
** lock of a dead one (CONCUR_OWNERDEAD). There is nothing to destroy: a
** process-shared mutex owns no resources, and destroying one that a dead
** process held would be an error; the arena block is simply freed.
**
** Fast paths are lock-free: taking a free Lock or a Semaphore token is one
** compare-and-swap, and releasing touches the mutex (and signals) only when
** somebody waits. The waiter count and the state word form a Dekker pair
** (both seq_cst): a waiter increments 'waiters' and then re-reads the state;
** a releaser writes the state and then reads 'waiters'; so at least one of
** them sees the other and no wake-up is lost.
*/
#ifndef CONCUR_CORE_SYNC_H
#define CONCUR_CORE_SYNC_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "wait.h"

/* results: CONCUR_BROKEN, CONCUR_OWNERDEAD, CONCUR_BARRIER_ACTION (result.h) */

/* The calling thread's id (gettid: unique across processes while it
** lives), and the calling process's id, as stored in owner fields. */
uintptr_t concur_sync_thread (void);
int concur_sync_pid (void);


/* ---- Lock: binary, released by any thread (as Python's) ---------------- */
typedef struct concur_lock {
  atomic_int state;        /* 0 free, else the pid of the holding process */
  atomic_int waiters;      /* threads blocked in acquire */
  pthread_mutex_t mu;      /* guards nothing but the sleep on 'cv' */
  concur_fcond cv;
} concur_lock;

int concur_lock_init (concur_lock *l, int pshared);
/* a wait result, or CONCUR_OWNERDEAD (taken over from a dead process) */
int concur_lock_acquire (concur_lock *l, double deadline);
/* as acquire without deadline, but deaf to task interrupts (Condition.wait
** must get its lock back before it reports a cancellation) */
void concur_lock_reacquire (concur_lock *l);
int concur_lock_release (concur_lock *l);   /* 0, or -1 when not held */

static inline int concur_lock_tryacquire (concur_lock *l) {
  int expect = 0;
  return atomic_compare_exchange_strong(&l->state, &expect, concur_sync_pid());
}

static inline int concur_lock_locked (concur_lock *l) {
  return atomic_load_explicit(&l->state, memory_order_relaxed) != 0;
}

/* ---- RLock: a Lock with an owner and a recursion count ----------------- */
typedef struct concur_rlock {
  concur_lock base;        /* held while anyone owns the RLock */
  atomic_uintptr_t owner;  /* concur_sync_thread() of the owner, 0: none */
  long count;              /* recursion depth; only the owner touches it */
} concur_rlock;

int concur_rlock_init (concur_rlock *r, int pshared);
int concur_rlock_acquire (concur_rlock *r, double deadline);
int concur_rlock_release (concur_rlock *r);  /* -1: caller is not the owner */
int concur_rlock_owned (concur_rlock *r);    /* by the calling thread? */
/* Condition.wait: drop every level at once, and take them back */
long concur_rlock_releaseall (concur_rlock *r);
void concur_rlock_restore (concur_rlock *r, long count);

/* ---- Semaphore (bounded when bound >= 0) ------------------------------- */
typedef struct concur_sem {
  atomic_long value;       /* tokens available */
  atomic_int waiters;
  long bound;              /* BoundedSemaphore: the initial value; else -1 */
  pthread_mutex_t mu;
  concur_fcond cv;
} concur_sem;

int concur_sem_init (concur_sem *s, long value, long bound, int pshared);
int concur_sem_tryacquire (concur_sem *s);
int concur_sem_acquire (concur_sem *s, double deadline);
/* adds n tokens; -1 (and adds none) when that would pass the bound (or
** LONG_MAX) */
int concur_sem_release (concur_sem *s, long n);

/* ---- Event ------------------------------------------------------------- */
typedef struct concur_event {
  atomic_int flag;
  unsigned gen;            /* bumped by every set() that sets; under mu */
  int waiters;             /* under mu */
  pthread_mutex_t mu;
  concur_fcond cv;
} concur_event;

int concur_event_init (concur_event *e, int pshared);
void concur_event_set (concur_event *e);
void concur_event_clear (concur_event *e);
int concur_event_isset (concur_event *e);
/* CONCUR_OK once the flag is set (even if cleared again before the waiter
** ran, as Python's), else the wait result */
int concur_event_wait (concur_event *e, double deadline);

/* ---- Barrier --------------------------------------------------------------
** 'generation' advances when the last party arrives (after its action, for
** a barrier with one); 'epoch' when the barrier is reset. A waiter leaves
** when either changes or it breaks.
*/
typedef struct concur_barrier {
  int parties, count;      /* count: parties waiting now */
  int broken;
  unsigned generation, epoch;
  int hasaction;           /* the last party runs an action before the rest
                           ** are let go */
  unsigned pass_epoch;     /* the epoch the running action belongs to */
  pthread_mutex_t mu;
  concur_fcond cv;
} concur_barrier;

int concur_barrier_init (concur_barrier *b, int parties, int pshared);
/* CONCUR_OK with *index in 0..parties-1 (arrival order), CONCUR_BROKEN, or
** a wait result; a waiter that times out or is interrupted breaks it. With
** an action, the last party gets CONCUR_BARRIER_ACTION instead (*index
** parties-1): it runs the action with no lock held, then calls
** concur_barrier_pass, while the others keep waiting. */
int concur_barrier_wait (concur_barrier *b, double deadline, int *index);
/* Ends the action of the last party: 'ok' (the action succeeded) lets
** every party go (CONCUR_OK); a failed action breaks the barrier. Returns
** CONCUR_BROKEN when it is (or was meanwhile) broken or reset. */
int concur_barrier_pass (concur_barrier *b, int ok);
void concur_barrier_abort (concur_barrier *b);
void concur_barrier_reset (concur_barrier *b);
int concur_barrier_waiting (concur_barrier *b);
int concur_barrier_isbroken (concur_barrier *b);

/* ---- Value: an atomic number that stays integer or float --------------- */
typedef struct concur_num {
  int isint;
  union { int64_t i; double n; } u;
} concur_num;

typedef struct concur_value {
  pthread_mutex_t mu;
  concur_num v;
} concur_value;

int concur_value_init (concur_value *v, concur_num x, int pshared);
concur_num concur_value_get (concur_value *v);
void concur_value_set (concur_value *v, concur_num x);
concur_num concur_value_add (concur_value *v, concur_num d);  /* new value */
int concur_value_cas (concur_value *v, concur_num expect, concur_num x);
int concur_num_eq (concur_num a, concur_num b);   /* Lua's == on numbers */
/* Lua's + on two numbers: integers wrap around, anything else is a float */
concur_num concur_num_add (concur_num a, concur_num b);

/* ---- condition variable with exact notify(n) ------------------------------
** Waiters are nodes in the shared arena (shobj.h), linked by offset in
** arrival order, each with its own futex word; notify(n) wakes the n
** oldest, passing over the nodes of processes that died waiting.
** Protocol: enter (queue up), release the user lock, sleep, re-acquire.
*/
typedef struct concur_condvar {
  pthread_mutex_t mu;
  uint64_t head, tail;     /* node offsets; 0: none */
} concur_condvar;

int concur_condvar_init (concur_condvar *c, int pshared);
/* frees the nodes left (of waiters that died); never blocks */
void concur_condvar_destroy (concur_condvar *c);
/* queues the caller up: its node in *w; -1 when out of memory */
int concur_condvar_enter (concur_condvar *c, uint64_t *w);
/* CONCUR_OK when notified, else the wait result (and w is dequeued); frees
** the node either way */
int concur_condvar_sleep (concur_condvar *c, uint64_t w, double deadline);
int concur_condvar_notify (concur_condvar *c, int n);   /* number woken */

#endif
