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
  void *owner;                  /* the pool, or the thread object */
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

/* Calls the initializer encoded in 'init' (function and arguments). Returns
** 0, or -1 and a malloc'd message in *err. */
int concur_worker_init (concur_worker *w, const concur_buf *init, char **err);

/* Asks worker w to interrupt its running task (with the task's f->mu held:
** the worker is alive). Async-signal-safe, never blocks. */
void concur_worker_interrupt (concur_worker *w);

/* The worker running on this thread, or NULL. */
concur_worker *concur_worker_self (void);

/* Builds an encoded error object {kind, message} without Lua. */
void concur_errbuf (concur_buf *b, const char *kind, const char *msg);

#endif
