/*
** procworker.c: the worker process's side of ProcessPool and Process.
**
** The parent starts a Lua interpreter (core/procspawn.h) on a script that
** calls this module's process_worker(): it runs tasks in a fresh worker state (the same task
** runner as the thread pool's, csrc/worker.c) and talks to its supervisor
** over the socket on fd 3 (frames: core/frame.h). It reads the 'I' frame,
** adopts the holdings table it names (core/holdings.h), runs the
** initializer and answers 'H'; then for each 'T' frame records there that
** the task reached it, runs it, and answers 'R' (results) or 'E' (an error
** object) with the same id. At end of file it closes its state and
** returns, so the interpreter exits with status 0; or, when the last task
** it ran failed, it exits with status 1 (a Process's exitcode, as a Python
** process whose function raised).
**
** A worker never outlives its parent: PR_SET_PDEATHSIG delivers SIGKILL
** when the parent goes, and a parent that was gone before that was set is
** noticed through getppid(). memory_limit caps the Lua allocator of the
** worker state (an allocation over it fails, Lua raises a memory error and
** the task fails with kind "limit"), and RLIMIT_AS caps the whole process
** with some headroom, so C allocations cannot take the machine either.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include "concur.h"
#include "worker.h"
#include "core/frame.h"
#include "core/holdings.h"
#include "core/shobj.h"

#define WORKER_FD 3
#define SCRIPT_FD 4
#define AS_HEADROOM ((size_t)256 << 20)

typedef struct memcap {
  lua_Alloc f;
  void *ud;
  size_t used, limit;
} memcap;

/* The worker state's allocator under memory_limit: refuses what would go
** over the limit (Lua then collects and retries once, then raises). */
static void *capped_alloc (void *ud, void *p, size_t osize, size_t nsize) {
  memcap *m = ud;
  void *r;
  if (p == NULL) osize = 0;     /* then osize is a type tag */
  if (nsize > osize && m->used + (nsize - osize) > m->limit) return NULL;
  r = m->f(m->ud, p, osize, nsize);
  if (r != NULL || nsize == 0) m->used = m->used - osize + nsize;
  return r;
}

static void apply_limit (lua_State *L, memcap *m, size_t limit) {
  m->f = lua_getallocf(L, &m->ud);
  m->limit = limit;
  m->used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_setallocf(L, capped_alloc, m);
  if (getenv("CONCUR_SANITIZER") == NULL) {   /* sanitizers reserve terabytes */
    struct rlimit rl;
    size_t vm = concur_vm_size();
    if (vm) {
      rl.rlim_cur = rl.rlim_max = (rlim_t)(vm + limit + AS_HEADROOM);
      setrlimit(RLIMIT_AS, &rl);
    }
  }
}

/* Sends the reply to task 'id': its results, or its error object. */
static int reply (concur_future *f, uint64_t id, int st) {
  char msg[400];
  if (!concur_shobj_sendable(&f->out, st == CONCUR_F_FINISHED ? "task's results"
                            : "task's error", msg, sizeof msg)) {
    concur_wire_error(&f->out, "transfer", msg);
    st = CONCUR_F_FAILED;
  }
  if (st == CONCUR_F_FINISHED)
    return concur_frame_writebuf(WORKER_FD, 'R', id, &f->out);
  if (st == CONCUR_F_CANCELLED || f->out.len == 0)
    concur_wire_error(&f->out, "cancelled", "the task was cancelled");
  return concur_frame_writebuf(WORKER_FD, 'E', id, &f->out);
}

/*** core.process_worker(): the main loop of a worker process (see above). */
static int proc_worker (lua_State *L) {
  const char *ppid = getenv("CONCUR_PPID"), *lim = getenv("CONCUR_MEMLIMIT");
  concur_worker w;
  memcap cap;
  concur_frame h;
  char *body, *err = NULL;
  concur_buf init = CONCUR_BUF_INIT;
  int rc, lastfailed = 0;
  (void)L;
  close(SCRIPT_FD);
  fcntl(WORKER_FD, F_SETFD, FD_CLOEXEC);   /* never held open by a child of a task */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (ppid && getppid() != (pid_t)atol(ppid)) return 0;   /* orphaned already */
  memset(&w, 0, sizeof w);
  w.thread = pthread_self();
  snprintf(w.name, sizeof w.name, "process-%ld", (long)getpid());
  if (concur_worker_begin(&w, NULL, NULL) != 0) {
    static const char msg[] = "cannot create the worker's Lua state";
    concur_frame_write(WORKER_FD, 'H', 1, msg, sizeof msg - 1);
    concur_worker_end(&w);
    return 0;
  }
  concur_shm_init();   /* mapped before RLIMIT_AS is measured */
  if (lim && atoll(lim) > 0) apply_limit(w.L, &cap, (size_t)atoll(lim));
  if (concur_frame_read(WORKER_FD, &h, &body) != 0 || h.type != 'I') {
    free(body);
    concur_worker_end(&w);
    return 0;
  }
  concur_holdings_adopt(h.id);
  rc = concur_frame_tobuf(body, h.len, &init, 1);
  free(body);
  if (rc != 0) {
    concur_worker_end(&w);
    return 0;
  }
  if (concur_worker_init(&w, &init, &err) != 0) {
    const char *m = err ? err : "initializer failed";
    concur_frame_write(WORKER_FD, 'H', 1, m, strlen(m));
    free(err);
    concur_buf_free(&init);
    concur_worker_end(&w);
    return 0;
  }
  concur_buf_free(&init);
  if (concur_frame_write(WORKER_FD, 'H', 0, NULL, 0) != 0) {
    concur_worker_end(&w);
    return 0;
  }
  while (concur_frame_read(WORKER_FD, &h, &body) == 0) {
    concur_future *f;
    int st;
    lastfailed = 0;
    if (h.type != 'T' || (f = concur_future_new(NULL, NULL)) == NULL) {
      free(body);
      break;
    }
    concur_holdings_begin(h.id);   /* it reached us: no other worker runs it */
    rc = concur_frame_tobuf(body, h.len, &f->task, 1);
    free(body);
    if (rc != 0) {
      concur_wire_error(&f->out, "transfer", "the task could not be received by its "
                    "worker process (out of memory, or a malformed message)");
      st = CONCUR_F_FAILED;
    }
    else st = concur_worker_run(&w, f);
    lastfailed = st != CONCUR_F_FINISHED;
    st = reply(f, h.id, st);
    concur_obj_unref(&f->obj);
    if (st != 0) break;
  }
  concur_worker_end(&w);
  if (lastfailed) {
    fflush(NULL);
    exit(1);
  }
  return 0;
}

void concur_procworker_open (lua_State *L) {
  lua_pushcfunction(L, proc_worker);
  lua_setfield(L, -2, "process_worker");
}
