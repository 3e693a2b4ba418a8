/*
** procsup.h: the process supervisor behind concur.ProcessPool and
** concur.Process. No Lua here.
**
** A supervisor owns a fixed number of worker slots, each a child process
** started by posix_spawn (so nothing of a threaded parent is inherited but
** the program image: the child execs the Lua interpreter at once), and one
** C thread that feeds queued futures to idle workers, reads their results,
** completes the futures, notices dead workers (EOF, waitpid), kills
** workers whose task overran its deadline or was cancelled, and starts
** replacements. Tasks and results cross a socketpair as frames (frame.h);
** workers are started by procspawn.h and inherit the shared arena (fd 5,
** CONCUR_SHMFD). No worker can stall the supervisor: it never blocks on a
** worker's socket, and a task goes back to the queue when its worker dies
** before the task reached it.
*/
#ifndef CONCUR_CORE_PROCSUP_H
#define CONCUR_CORE_PROCSUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "future.h"
#include "frame.h"
#include "wire.h"

/* ---- the supervisor ---------------------------------------------------------- */

typedef struct concur_procsup concur_procsup;
extern const concur_objtype concur_procsup_type;

typedef struct concur_procopts {
  int workers;
  long max_tasks;            /* per child; 0: no limit */
  double task_timeout;       /* seconds; < 0: none */
  size_t memory_limit;       /* bytes; 0: none */
  int start_retries;         /* workers that die before they are ready, in
                             ** a row, before the pool is marked broken */
  const char *path, *cpath;  /* the workers' package.path and cpath */
  int single;                /* a Process: a task whose worker dies before it
                             ** starts fails, rather than going to another */
  concur_buf init;           /* initializer and initargs, or empty (moved) */
} concur_procopts;

/* Starts the workers and the supervisor thread. Returns NULL on failure,
** with a message in err and an error kind in *kind: "argument" (no Lua
** interpreter was found: see procspawn.h), "limit" (out of descriptors,
** processes or memory) or "broken". opts->init is freed either way. */
concur_procsup *concur_procsup_new (concur_procopts *opts, char *err,
                                    size_t errsize, const char **kind);

/* A new future to submit to ps (its ops count the stats). */
concur_future *concur_procsup_future (concur_procsup *ps);

/* Queues f (taking the caller's reference). Returns 0; or -1 when the
** pool was shut down, -2 when it is broken (with the reason in msg); the
** reference is then still the caller's. */
int concur_procsup_submit (concur_procsup *ps, concur_future *f,
                           char *msg, size_t msgsize);

/* Stops submissions; cancels the queue and kills running tasks if asked.
** Never blocks. */
void concur_procsup_stop (concur_procsup *ps, int cancel_pending, int kill_running);

/* Waits until every worker has been reaped and the supervisor has ended
** (deadline < 0: for ever). Returns a concur_cond_wait result; joins the
** thread once it has ended. */
int concur_procsup_wait (concur_procsup *ps, double deadline);
int concur_procsup_over (concur_procsup *ps);

/* workers, pending, running, completed, failed, cancelled */
void concur_procsup_stats (concur_procsup *ps, long v[6]);
int concur_procsup_nworkers (concur_procsup *ps);

/* Slot i's process id (0 when it has none), kill(2) of that process (-1
** with errno ESRCH when it has none), and the last wait status reaped in
** slot i (-1 when none yet). */
pid_t concur_procsup_pid (concur_procsup *ps, int i);
int concur_procsup_kill (concur_procsup *ps, int i, int sig);
int concur_procsup_status (concur_procsup *ps, int i);

/* Describes a wait status: "exited with status 3", "killed by signal 11
** (Segmentation fault)". */
void concur_procsup_describe (int status, char *buf, size_t size);

#endif
