/*
** worker.h: a worker is an OS thread with its own Lua state that runs tasks
** (futures whose 'task' buffer holds a function and its arguments). Pool
** workers run many tasks; a thread made by concur.spawn runs one.
*/
#ifndef CONCUR_WORKER_H
#define CONCUR_WORKER_H

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include "concur.h"
#include "core/future.h"

typedef struct concur_worker {
  lua_State *L;                 /* owned by the worker thread */
  lua_State *co;                /* the coroutine tasks run in */
  lua_State *volatile hooked;   /* the coroutine running Lua now, or NULL */
  pthread_t thread;
  char name[64];
  concur_future *current;       /* the running task: written by this thread */
  volatile sig_atomic_t in_lua; /* the signal handler may set a hook */
  timer_t timer;                /* delivers the interrupt at a deadline */
  int has_timer;
  void *owner;                  /* the pool's runner data, or the thread
                                ** object (NULL in a worker process) */
} concur_worker;

/* Prepares the calling thread to run tasks as worker w: a new Lua state
** (from the paths), the thread-local worker pointer, the interrupt timer.
** Returns 0, or -1 with w->L == NULL when the state cannot be made. */
int concur_worker_begin (concur_worker *w, const char *path, const char *cpath);
/* Undoes begin: closes the state (running its finalizers) and the timer. */
void concur_worker_end (concur_worker *w);

/* Runs the future f as worker w, and completes it. Returns f's final state,
** or -1 for a future that was cancelled before it started (left alone). */
int concur_worker_run (concur_worker *w, concur_future *f);
/* Runs the future f, already started (running) by whoever hands tasks to
** w (a pool), and completes it. Returns f's final state. */
int concur_worker_exec (concur_worker *w, concur_future *f);

/* Calls the initializer encoded in 'init' (function and arguments). Returns
** 0, or -1 and a malloc'd message in *err. */
int concur_worker_init (concur_worker *w, const concur_buf *init, char **err);

/* Asks worker w to interrupt its running task (with the task's f->mu held:
** the worker is alive). Async-signal-safe, never blocks. */
void concur_worker_interrupt (concur_worker *w);

/* The worker running on this thread, or NULL. */
concur_worker *concur_worker_self (void);

/* ---- interrupt.c ---- */
/* Makes w the worker of this thread: the signal handler (installed once
** per process), the interrupt check of waits, w's timer. */
void concur_interrupt_begin (concur_worker *w);
/* Undoes begin. */
void concur_interrupt_end (concur_worker *w);
/* The interrupt check of worker ud (a concur_intr_fn, core/wait.h). */
int concur_interrupt_check (void *ud, double *task_deadline);
/* Hooks the coroutine running Lua on this thread's worker now, so its next
** instruction checks the interrupt (the signal handler; 'sig' unused). */
void concur_interrupt_now (int sig);
/* Arms w's timer to interrupt after 'timeout' seconds (< 0: disarms). */
void concur_interrupt_arm (concur_worker *w, double timeout);
/* Replaces coroutine.resume and coroutine.wrap in L by interruptible ones. */
void concur_interrupt_opencoroutines (lua_State *L);

#endif
