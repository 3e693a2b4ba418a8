/*
** processpool.c: concur.ProcessPool and concur.Process, the Lua side of the
** process supervisor (core/procsup.c; the worker's side is procworker.c).
**
** A ProcessPool is a supervisor shared by its proxy and the state's
** tracker (so lua_close stops it: queue cancelled, running workers killed,
** every process reaped). Its interface is ThreadPool's: submit (also
** submit{fn, args=, timeout=}), shutdown, close, stats, workers, and
** map/imap/imap_unordered from the Lua layer.
**
** A Process is a supervisor with one worker, one task and max_tasks 1,
** closed at once, so its worker exits when the task is done: join waits
** for that exit, then returns the task's results. When the state closes
** (interpreter exit) a running Process is joined, like a non-daemon thread;
** a pool's running tasks are killed and its queue cancelled.
**
** The shared objects (Queue, Lock, ...) cross to the workers by reference
** (core/shobj.h); a task, initializer or result holding any other object
** (a Future, a pool, a fetch Client) fails with kind "transfer".
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "concur.h"
#include "core/procsup.h"
#include "core/shobj.h"
#include "tracker.h"

/* ---- tracking --------------------------------------------------------------- */

static int track_over (concur_obj *o) {
  return concur_procsup_over((concur_procsup *)o);
}

static void track_join (concur_obj *o) {
  concur_procsup_wait((concur_procsup *)o, CONCUR_NODEADLINE);   /* joins the thread */
}

static void track_close (concur_obj *o) {
  concur_procsup *ps = (concur_procsup *)o;
  concur_procsup_stop(ps, 1, 1);
  concur_procsup_wait(ps, CONCUR_NODEADLINE);   /* bounded: all are killed */
}

static const concur_trackops proc_track = { track_over, track_join, track_close };

/* A Process is joined when its state closes, like a non-daemon thread. */
static void track_close_process (concur_obj *o) {
  concur_procsup *ps = (concur_procsup *)o;
  concur_procsup_stop(ps, 0, 0);
  concur_procsup_wait(ps, CONCUR_NODEADLINE);
}

static const concur_trackops process_track = { track_over, track_join, track_close_process };

/* ---- encoding what goes to a process ------------------------------------------- */


/* Refuses (kind "transfer") a buffer holding an object that cannot cross
** to another process; frees it then. */
static void check_noobjs (lua_State *L, concur_buf *b, const char *what) {
  char msg[400];
  if (!concur_shobj_sendable(b, what, msg, sizeof msg)) {
    concur_buf_free(b);
    concur_error(L, "transfer", "%s", msg);
  }
}

/* Starts a supervisor from the options, tracked by L; pushes nothing.
** Takes 'init'; frees 'drop' (may be NULL) when it raises. */
static concur_procsup *start (lua_State *L, concur_procopts *o, concur_buf *drop) {
  char err[640];
  const char *kind;
  concur_procsup *ps;
  char *path, *cpath;
  concur_getpaths(L, &path, &cpath);
  o->path = path;
  o->cpath = cpath;
  ps = concur_procsup_new(o, err, sizeof err, &kind);
  free(path);
  free(cpath);
  if (ps == NULL) {
    if (drop) concur_buf_free(drop);
    concur_error(L, kind, "%s", err);
    return NULL;
  }
  return ps;
}

/* ---- ProcessPool ------------------------------------------------------------- */

static concur_procsup *checkpool (lua_State *L) {
  return (concur_procsup *)concur_checkobj(L, 1, &concur_procsup_type);
}

#define MIN_MEMORY_LIMIT ((lua_Integer)1 << 20)

static const char *const POOL_OPTIONS[] = { "workers", "initializer", "initargs",
  "max_tasks_per_child", "task_timeout", "memory_limit", NULL };

/*** ProcessPool([n]) or ProcessPool{ workers = n, initializer = fn,
** initargs = {...}, max_tasks_per_child = k, task_timeout = s,
** memory_limit = bytes } --> a pool of worker processes.
**
** Each worker is a Lua interpreter: $CONCUR_LUA when set (a path, or a
** name looked up on PATH); else the running program when it is a Lua
** interpreter (named lua, lua5.4, lua54...); else lua5.4, then lua, on
** PATH. When there is none (concur embedded in another program, no Lua on
** PATH) it raises kind "argument" saying to set CONCUR_LUA. memory_limit
** caps each worker's Lua heap (at least 1 MiB); task_timeout counts from
** when a task is handed to a worker. A task whose worker dies before the
** task reached it goes to another worker; only a task that had started
** fails with its worker. Out of descriptors or processes: kind "limit". */
static int pool_new (lua_State *L) {
  concur_procopts o;
  lua_Integer n = concur_cpu_count(), lim;
  concur_procsup *ps;
  memset(&o, 0, sizeof o);
  o.task_timeout = -1;
  if (lua_type(L, 1) == LUA_TTABLE) {
    concur_checkoptions(L, 1, POOL_OPTIONS);
    n = concur_optinteger(L, 1, "workers", n, 1);
    o.max_tasks = (long)concur_optinteger(L, 1, "max_tasks_per_child", 0, 1);
    lim = concur_optinteger(L, 1, "memory_limit", 0, 1);
    if (lim > 0 && lim < MIN_MEMORY_LIMIT)
      concur_argerror(L, 1, "option 'memory_limit' must be at least 1 MiB "
                      "(1048576 bytes): a worker needs about 100 KiB before its first task");
    o.memory_limit = (size_t)lim;
    o.task_timeout = concur_optnumber(L, 1, "task_timeout", -1, 0, 1, 1);
    concur_checkinit(L, 1, &o.init);
    check_noobjs(L, &o.init, "initializer");
  }
  else if (!lua_isnoneornil(L, 1)) {
    if (!lua_isinteger(L, 1)) concur_typeerror(L, 1, "integer or table");
    n = lua_tointeger(L, 1);
  }
  if (n < 1 || n > 1024) {
    concur_buf_free(&o.init);
    concur_argerror(L, 1, "number of workers must be between 1 and 1024");
  }
  o.workers = (int)n;
  o.start_retries = 3;
  ps = start(L, &o, NULL);
  concur_pushobj(L, (concur_obj *)ps);        /* the proxy's reference */
  concur_track(L, (concur_obj *)ps, &proc_track);           /* the creation reference */
  return 1;
}

static const char *const SUBMIT_OPTIONS[] = { "args", "timeout", NULL };

/* Encodes a task from the arguments at 'arg' (fn, ... or {fn, args =,
** timeout =}). */
static void encode_task (lua_State *L, int arg, concur_buf *task, double *timeout) {
  *timeout = concur_tasktimeout(L, arg);
  concur_checktask(L, arg, SUBMIT_OPTIONS, task);
  check_noobjs(L, task, "task");
}

/* A new future of ps for the encoded task (taken). */
static concur_future *newtask (lua_State *L, concur_procsup *ps, concur_buf *task,
                               double timeout) {
  concur_future *f = concur_procsup_future(ps);
  if (f == NULL) {
    concur_buf_free(task);
    concur_error(L, "limit", "not enough memory");
  }
  concur_buf_move(&f->task, task);
  f->timeout = timeout;
  return f;
}

/* Queues f on ps, taking one of its references; the caller holds 'mine'
** more, dropped too when it raises "closed" or "broken". */
static void queue (lua_State *L, concur_procsup *ps, concur_future *f, int mine) {
  char msg[512];
  int rc = concur_procsup_submit(ps, f, msg, sizeof msg);
  if (rc == 0) return;
  for (int i = 0; i <= mine; i++) concur_obj_unref(&f->obj);
  if (rc == -2) concur_error(L, "broken", "pool is broken: %s", msg);
  concur_error(L, "closed", "cannot submit to a pool that was shut down");
}

/*** pool:submit(fn, ...) or pool:submit{ fn, args = {...}, timeout = s }
** --> Future */
static int pool_submit (lua_State *L) {
  concur_procsup *ps = checkpool(L);
  concur_buf task = CONCUR_BUF_INIT;
  double timeout;
  concur_future *f;
  encode_task(L, 2, &task, &timeout);
  f = newtask(L, ps, &task, timeout);
  concur_obj_ref(&f->obj);                  /* ours, until the proxy has one */
  queue(L, ps, f, 1);                       /* the queue takes the first */
  concur_pushobj(L, &f->obj);
  concur_obj_unref(&f->obj);
  return 1;
}

/*** pool:shutdown{ wait = true, cancel_pending = false } */
static int pool_shutdown (lua_State *L) {
  concur_procsup *ps = checkpool(L);
  int wait, cancel;
  concur_checkshutdown(L, 2, &wait, &cancel);
  concur_procsup_stop(ps, cancel, 0);
  if (wait) {
    int rc;
    CONCUR_WAIT(L, rc, concur_procsup_wait(ps, CONCUR_NODEADLINE));
    if (rc != CONCUR_OK) concur_raisewait(L, rc, "shutdown");
  }
  return 0;
}

/*** pool:close(): shutdown{ wait = true }; also __close. */
static int pool_close (lua_State *L) {
  concur_proxy *px = luaL_testudata(L, 1, concur_procsup_type.name);
  if (px == NULL) return concur_typeerror(L, 1, concur_procsup_type.name);
  if (px->o) {
    concur_procsup *ps = (concur_procsup *)px->o;
    int rc;
    concur_procsup_stop(ps, 0, 0);
    CONCUR_WAIT(L, rc, concur_procsup_wait(ps, CONCUR_NODEADLINE));
    if (rc != CONCUR_OK) return concur_raisewait(L, rc, "close");
  }
  return 0;
}

/* __gc: stops taking work, never blocks; the workers finish the queue and
** the tracker reaps them. */
static void pool_letgo (concur_obj *o) {
  concur_procsup_stop((concur_procsup *)o, 0, 0);
}

static int pool_gc (lua_State *L) {
  return concur_executor_gc(L, pool_letgo);
}

/*** pool:stats() --> { workers, pending, running, completed, failed,
** cancelled } */
static int pool_stats (lua_State *L) {
  long v[6];
  concur_procsup_stats(checkpool(L), v);
  return concur_pushstats(L, v);
}

static int pool_workers (lua_State *L) {
  lua_pushinteger(L, concur_procsup_nworkers(checkpool(L)));
  return 1;
}

/*** pool:pids() --> array of the worker processes' ids (now) */
static int pool_pids (lua_State *L) {
  concur_procsup *ps = checkpool(L);
  int n = concur_procsup_nworkers(ps), k = 0;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    pid_t pid = concur_procsup_pid(ps, i);
    if (pid > 0) {
      lua_pushinteger(L, pid);
      lua_rawseti(L, -2, ++k);
    }
  }
  return 1;
}

static const luaL_Reg pool_methods[] = {
  {"submit", pool_submit},
  {"shutdown", pool_shutdown},
  {"close", pool_close},
  {"stats", pool_stats},
  {"workers", pool_workers},
  {"pids", pool_pids},
  {NULL, NULL}
};

static const luaL_Reg pool_meta[] = {
  {"__gc", pool_gc},
  {"__close", pool_close},
  {NULL, NULL}
};

/* ---- Process ------------------------------------------------------------------ */

typedef struct process {
  concur_procsup *ps;    /* one reference each, or NULL once collected */
  concur_future *f;
  pid_t pid;
} process;

#define PROCESS "concur.Process"

/* The Process at 1 (it may be closed); raises "argument" for anything
** else. */
static process *toprocess (lua_State *L) {
  process *p = luaL_testudata(L, 1, PROCESS);
  if (p == NULL || lua_rawlen(L, 1) != sizeof *p)
    concur_typeerror(L, 1, PROCESS);
  return p;
}

static process *checkprocess (lua_State *L) {
  process *p = toprocess(L);
  if (p->ps == NULL) concur_error(L, "closed", "process object was closed");
  return p;
}

/*** concur.Process(fn, ...) --> a process running fn(...), started at once
** (the interpreter is found as for ProcessPool: CONCUR_LUA, the running
** one, lua5.4 or lua on PATH). */
static int process_new (lua_State *L) {
  concur_procopts o;
  process *p;
  concur_future *f;
  concur_procsup *ps;
  concur_buf task = CONCUR_BUF_INIT;
  double timeout;
  memset(&o, 0, sizeof o);
  o.workers = 1;
  o.max_tasks = 1;
  o.start_retries = 1;   /* its one worker is not replaced */
  o.single = 1;
  o.task_timeout = -1;
  if (lua_type(L, 1) != LUA_TFUNCTION) concur_typeerror(L, 1, "function");
  p = lua_newuserdatauv(L, sizeof *p, 0);   /* closed until it runs */
  memset(p, 0, sizeof *p);
  luaL_setmetatable(L, PROCESS);
  lua_insert(L, 1);
  encode_task(L, 2, &task, &timeout);
  ps = start(L, &o, &task);
  concur_track_outliving(L, (concur_obj *)ps, &process_track);      /* the creation reference */
  p->ps = (concur_procsup *)concur_obj_ref((concur_obj *)ps);
  p->pid = concur_procsup_pid(ps, 0);
  f = newtask(L, ps, &task, timeout);
  p->f = (concur_future *)concur_obj_ref(&f->obj);
  queue(L, ps, f, 0);     /* on failure p->f keeps its reference for __gc */
  concur_procsup_stop(ps, 0, 0);            /* its one task, then exit */
  lua_settop(L, 1);
  return 1;
}

/* Pushes the error object of a failed or cancelled future. */
static void pusherrobj (lua_State *L, concur_future *f, int st) {
  int n;
  if (st == CONCUR_F_CANCELLED) {
    concur_pusherror(L, "cancelled", "the task was cancelled");
    return;
  }
  n = concur_decode(L, f->out.data, f->out.len, f->out.objs, f->out.nobjs);
  if (n != 1 || lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, n);
    concur_pusherror(L, "broken", "the process failed");
    return;
  }
  luaL_setmetatable(L, "concur.Error");
}

/*** p:join([timeout]) --> true, results... | false, err; raises "timeout"
** when the process is still running at the deadline. A process that called
** os.exit(0) (or os.exit(true)) joins true, with no results; one that died
** otherwise gives kind "broken", saying how ("process 123 exited with status
** 3", "... killed by signal 15 (Terminated)"). */
static int process_join (lua_State *L) {
  process *p = checkprocess(L);
  double deadline = concur_optdeadline(L, 2);
  int rc, st, status;
  CONCUR_WAIT(L, rc, concur_procsup_wait(p->ps, deadline));
  if (rc == CONCUR_TIMEDOUT)
    return concur_error(L, "timeout", "process %d still running", (int)p->pid);
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "join");
  st = concur_future_state(p->f);
  status = concur_procsup_status(p->ps, 0);
  lua_settop(L, 0);
  if (st == CONCUR_F_FINISHED) {
    lua_pushboolean(L, 1);
    return 1 + concur_decode(L, p->f->out.data, p->f->out.len, p->f->out.objs,
                             p->f->out.nobjs);
  }
  /* a task that fails exits with status 1: a failed one whose process
  ** exited with 0 called os.exit(0) (or os.exit(true)), a success */
  if (st == CONCUR_F_FAILED && status >= 0 && WIFEXITED(status)
      && WEXITSTATUS(status) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  pusherrobj(L, p->f, st);
  return 2;
}

/*** p:alive() --> boolean: the process has not been reaped yet */
static int process_alive (lua_State *L) {
  process *p = checkprocess(L);
  lua_pushboolean(L, concur_procsup_pid(p->ps, 0) > 0);
  return 1;
}

/*** p:kill([signal]) --> boolean: sends the signal (default SIGTERM);
** false when the process had already ended. */
static int process_kill (lua_State *L) {
  process *p = checkprocess(L);
  lua_Integer sig = SIGTERM;
  if (!lua_isnoneornil(L, 2)) sig = concur_checkinteger(L, 2);
  if (sig < 0 || sig > 64) return concur_argerror(L, 2, "invalid signal number");
  if (concur_procsup_kill(p->ps, 0, (int)sig) != 0) {
    if (errno == ESRCH) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return concur_error(L, "argument", "kill: %s", strerror(errno));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p.pid, p.exitcode (nil while running; 0 when fn returned, 1 when it
** raised, the os.exit code, -signal when killed: as Python's), methods */
static int process_index (lua_State *L) {
  process *p = checkprocess(L);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    lua_pushinteger(L, p->pid);
    return 1;
  }
  if (k && strcmp(k, "exitcode") == 0) {
    int st = concur_procsup_pid(p->ps, 0) > 0 ? -1 : concur_procsup_status(p->ps, 0);
    if (st < 0) lua_pushnil(L);
    else if (WIFEXITED(st)) lua_pushinteger(L, WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) lua_pushinteger(L, -WTERMSIG(st));
    else lua_pushnil(L);
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* <close>: waits for the process to end (as join without a timeout); what
** it returned or raised is left for join. */
static int process_close (lua_State *L) {
  process *p = toprocess(L);
  int rc;
  if (p->ps == NULL) return 0;
  CONCUR_WAIT(L, rc, concur_procsup_wait(p->ps, CONCUR_NODEADLINE));
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "join");
  return 0;
}

static int process_gc (lua_State *L) {
  process *p = toprocess(L);
  if (p->f) concur_obj_unref(&p->f->obj);
  if (p->ps) concur_obj_unref((concur_obj *)p->ps);
  p->f = NULL;
  p->ps = NULL;
  return 0;
}

static int process_tostring (lua_State *L) {
  process *p = toprocess(L);
  lua_pushfstring(L, "concur.Process (pid %d)", (int)p->pid);
  return 1;
}

static const luaL_Reg process_methods[] = {
  {"join", process_join},
  {"alive", process_alive},
  {"kill", process_kill},
  {NULL, NULL}
};

void concur_processpool_open (lua_State *L) {
  concur_newclass(L, &concur_procsup_type, pool_methods, pool_meta);
  concur_class_stays(L, concur_procsup_type.name, CONCUR_POOL_STAYS);
  if (luaL_newmetatable(L, PROCESS)) {
    luaL_newlib(L, process_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, process_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, process_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, process_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, process_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  concur_class_stays(L, PROCESS, "a Process belongs to the state that "
                     "started it: join it there, and send a Queue to talk "
                     "with it");
  lua_pushcfunction(L, pool_new);
  lua_setfield(L, -2, "ProcessPool");
  lua_pushcfunction(L, process_new);
  lua_setfield(L, -2, "Process");
}
