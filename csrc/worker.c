/*
** worker.c: running tasks in a worker's own Lua state, and interrupting them.
**
** Interruption (cancel, per-task timeout): the interrupter marks the future
** (cancel_req) and sends CONCUR_SIGNAL to the worker's thread; a per-thread
** POSIX timer sends the same signal when a task's deadline comes. The handler
** runs on the worker's own thread and, only while Lua code of a task runs,
** sets a count hook on the worker's state, exactly as the standalone lua
** interpreter does for Ctrl-C (lua_sethook is documented as safe for that).
** The hook checks the running future: if it was cancelled or is past its
** deadline it raises, and stays armed (every 1000 instructions) so a task
** that catches the error with pcall is stopped again; otherwise it removes
** itself. So nothing is paid while no interrupt is pending. Tasks blocked
** in concur waits notice through the interrupt check (core/clock.h).
**
** NOTE: a tight loop inside a coroutine created by the task is not hooked
** (hooks are per coroutine); it stops when control returns to the task.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <lualib.h>
#include "worker.h"

#define CONCUR_SIGNAL (SIGRTMIN + 7)

static _Thread_local concur_worker *self_worker;
static pthread_once_t sig_once = PTHREAD_ONCE_INIT;

concur_worker *concur_worker_self (void) { return self_worker; }

/* ---- the interrupt -------------------------------------------------------- */

static int check_interrupt (void *ud, double *task_deadline) {
  concur_worker *w = ud;
  concur_future *f = w->current;
  if (f == NULL) return CONCUR_OK;
  *task_deadline = f->deadline;
  if (atomic_load_explicit(&f->cancel_req, memory_order_relaxed))
    return CONCUR_CANCELLED;
  if (f->deadline >= 0 && concur_now() >= f->deadline)
    return CONCUR_TASKTIMEOUT;
  return CONCUR_OK;
}

static void interrupt_hook (lua_State *L, lua_Debug *ar) {
  concur_worker *w = self_worker;
  double tdl;
  int rc = w ? check_interrupt(w, &tdl) : CONCUR_OK;
  (void)ar;
  if (rc == CONCUR_OK) {
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, 1000);   /* stay armed */
  concur_raisewait(L, rc, "task");
}

static void on_signal (int sig) {
  concur_worker *w = self_worker;
  (void)sig;
  if (w && w->in_lua && w->L)
    lua_sethook(w->L, interrupt_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void install_handler (void) {
  struct sigaction sa, old;
  sigaction(CONCUR_SIGNAL, NULL, &old);
  if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(CONCUR_SIGNAL, &sa, NULL);
}

void concur_worker_interrupt (concur_worker *w) {
  pthread_kill(w->thread, CONCUR_SIGNAL);
}

static void arm_timer (concur_worker *w, double timeout) {
  struct itimerspec its;
  if (!w->has_timer) return;
  memset(&its, 0, sizeof its);
  if (timeout > 0) {
    its.it_value.tv_sec = (time_t)timeout;
    its.it_value.tv_nsec = (long)((timeout - (double)its.it_value.tv_sec) * 1e9);
    /* then every 50 ms, in case the first signal came before Lua ran */
    its.it_interval.tv_nsec = 50000000L;
  }
  else if (timeout == 0)
    its.it_value.tv_nsec = 1;
  timer_settime(w->timer, 0, &its, NULL);
}

/* ---- states --------------------------------------------------------------- */

/* Called in protected mode: opens the libraries, sets the paths, loads concur. */
static int init_state (lua_State *L) {
  const char *path = lua_touserdata(L, 1);
  const char *cpath = lua_touserdata(L, 2);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  if (path) { lua_pushstring(L, path); lua_setfield(L, -2, "path"); }
  if (cpath) { lua_pushstring(L, cpath); lua_setfield(L, -2, "cpath"); }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "concur");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {   /* the Lua layer is missing: */
    lua_pop(L, 1);                          /* the core is enough to run */
    luaL_requiref(L, "concur.core", luaopen_concur_core, 0);
    lua_pop(L, 1);
  }
  return 0;
}

lua_State *concur_newstate (const char *path, const char *cpath) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  lua_pushcfunction(L, init_state);
  lua_pushlightuserdata(L, (void *)path);
  lua_pushlightuserdata(L, (void *)cpath);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

void concur_getpaths (lua_State *L, char **path, char **cpath) {
  lua_getglobal(L, "package");
  *path = *cpath = NULL;
  if (lua_istable(L, -1)) {
    if (lua_getfield(L, -1, "path") == LUA_TSTRING)
      *path = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "cpath") == LUA_TSTRING)
      *cpath = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

int concur_worker_begin (concur_worker *w, const char *path, const char *cpath) {
  struct sigevent sev;
  pthread_once(&sig_once, install_handler);
  w->current = NULL;
  w->in_lua = 0;
  self_worker = w;
  concur_set_interrupt_check(check_interrupt, w);
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = CONCUR_SIGNAL;
  sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
  w->has_timer = timer_create(CLOCK_MONOTONIC, &sev, &w->timer) == 0;
  w->L = concur_newstate(path, cpath);
  return w->L ? 0 : -1;
}

void concur_worker_end (concur_worker *w) {
  if (w->L) {
    concur_set_interrupt_check(NULL, NULL);   /* finalizers run unhindered */
    lua_close(w->L);
    w->L = NULL;
  }
  if (w->has_timer) timer_delete(w->timer);
  w->has_timer = 0;
  self_worker = NULL;
}

/* ---- running a task --------------------------------------------------------- */

void concur_errbuf (concur_buf *b, const char *kind, const char *msg) {
  concur_buf_free(b);
  if (concur_wire_table(b, 0) || concur_wire_cstr(b, "kind") ||
      concur_wire_cstr(b, kind) || concur_wire_cstr(b, "message") ||
      concur_wire_cstr(b, msg) || concur_wire_end(b))
    concur_buf_free(b);   /* out of memory: an empty error, still an error */
}

/* Message handler: turns any error into an error object with a traceback.
** Errors concur raised to stop the task (cancel, timeout) keep their kind;
** anything else the task raised becomes kind "task" with the original value. */
static int task_msgh (lua_State *L) {
  int interrupt = 0;
  const char *msg;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, "concur.Error");
    if (lua_rawequal(L, -1, -2)) {
      lua_getfield(L, 1, "interrupt");
      interrupt = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  if (interrupt) {
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, 1, "traceback");
    lua_settop(L, 1);
    return 1;
  }
  if (lua_type(L, 1) == LUA_TTABLE && luaL_getmetafield(L, 1, "__name") != LUA_TNIL &&
      lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "concur.Error") == 0) {
    lua_pop(L, 1);
    lua_getfield(L, 1, "message");
    msg = lua_tostring(L, -1);
  }
  else {
    lua_settop(L, 1);
    msg = luaL_tolstring(L, 1, NULL);
  }
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "task");
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg ? msg : "(error object)");
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "value");
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, -2, "traceback");
  luaL_setmetatable(L, "concur.Error");
  return 1;
}

typedef struct runctx {
  concur_worker *w;
  concur_future *f;
  concur_buf out;
} runctx;

/* In protected mode: decodes the task, calls it, encodes its results. */
static int task_body (lua_State *L) {
  runctx *rc = lua_touserdata(L, 1);
  concur_future *f = rc->f;
  int base, n;
  lua_settop(L, 0);
  n = concur_decode(L, f->task.data, f->task.len, f->task.objs, f->task.nobjs);
  if (n < 1 || lua_type(L, 1) != LUA_TFUNCTION)
    return concur_error(L, "argument", "task is not a function");
  base = 0;
  rc->w->in_lua = 1;
  if (f->deadline >= 0 && concur_now() >= f->deadline)
    concur_raisewait(L, CONCUR_TASKTIMEOUT, "task");
  lua_call(L, n - 1, LUA_MULTRET);
  rc->w->in_lua = 0;
  concur_encode(L, base + 1, lua_gettop(L) - base, &rc->out, "results[]");
  return 0;
}

/* In protected mode: encodes the error object at 1. */
static int encode_error (lua_State *L) {
  runctx *rc = lua_touserdata(L, 2);
  concur_encode(L, 1, 1, &rc->out, "error");
  return 0;
}

/* In protected mode: replaces err.value by tostring(err.value). */
static int stringify_value (lua_State *L) {
  lua_getfield(L, 1, "value");
  luaL_tolstring(L, -1, NULL);
  lua_setfield(L, 1, "value");
  return 0;
}

static void finish_error (lua_State *L, runctx *rc) {
  int err = lua_gettop(L);
  lua_pushcfunction(L, encode_error);
  lua_pushvalue(L, err);
  lua_pushlightuserdata(L, rc);
  if (lua_pcall(L, 2, 0, 0) == LUA_OK) return;
  lua_pop(L, 1);
  concur_buf_free(&rc->out);
  if (lua_type(L, err) == LUA_TTABLE) {
    lua_pushcfunction(L, stringify_value);
    lua_pushvalue(L, err);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) {
      lua_pushcfunction(L, encode_error);
      lua_pushvalue(L, err);
      lua_pushlightuserdata(L, rc);
      if (lua_pcall(L, 2, 0, 0) == LUA_OK) return;
    }
    lua_pop(L, 1);
    concur_buf_free(&rc->out);
  }
  concur_errbuf(&rc->out, "task", "task failed with an error that cannot be sent");
}

int concur_worker_run (concur_worker *w, concur_future *f) {
  lua_State *L = w->L;
  runctx rc;
  int status, failed;
  if (!concur_future_start(f, w)) return concur_future_state(f);
  w->current = f;
  f->deadline = f->timeout >= 0 ? concur_now() + f->timeout : CONCUR_NODEADLINE;
  if (f->timeout >= 0) arm_timer(w, f->timeout);
  rc.w = w;
  rc.f = f;
  memset(&rc.out, 0, sizeof rc.out);
  lua_settop(L, 0);
  lua_pushcfunction(L, task_msgh);
  lua_pushcfunction(L, task_body);
  lua_pushlightuserdata(L, &rc);
  status = lua_pcall(L, 1, 0, 1);
  w->in_lua = 0;
  if (f->timeout >= 0) arm_timer(w, -1);
  lua_sethook(L, NULL, 0, 0);
  failed = status != LUA_OK;
  if (failed) {
    concur_buf_free(&rc.out);
    if (status == LUA_ERRMEM)
      concur_errbuf(&rc.out, "limit", "not enough memory");
    else
      finish_error(L, &rc);
  }
  lua_settop(L, 0);
  status = concur_future_finish(f, failed, &rc.out);
  w->current = NULL;
  return status;
}

/* In protected mode: the message of the encoded error object at 1. */
static int error_message (lua_State *L) {
  const concur_buf *b = lua_touserdata(L, 1);
  lua_settop(L, 0);
  concur_decode(L, b->data, b->len, b->objs, b->nobjs);
  lua_settop(L, 1);
  luaL_setmetatable(L, "concur.Error");
  luaL_tolstring(L, 1, NULL);
  return 1;
}

int concur_worker_init (concur_worker *w, const concur_buf *init, char **err) {
  lua_State *L = w->L;
  concur_future *f;
  int st;
  *err = NULL;
  if (init == NULL || init->len == 0) return 0;
  f = concur_future_new(NULL, NULL);
  if (f == NULL) { *err = strdup("not enough memory"); return -1; }
  if (concur_buf_write(&f->task, init->data, init->len)) {
    concur_obj_unref(&f->obj);
    *err = strdup("not enough memory");
    return -1;
  }
  for (size_t i = 0; i < init->nobjs; i++)
    concur_buf_addobj(&f->task, init->objs[i]);
  st = concur_worker_run(w, f);
  if (st != CONCUR_F_FINISHED) {
    lua_settop(L, 0);
    lua_pushcfunction(L, error_message);
    lua_pushlightuserdata(L, &f->out);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      *err = strdup(lua_tostring(L, -1));
    else
      *err = strdup("initializer failed");
    lua_settop(L, 0);
  }
  concur_obj_unref(&f->obj);
  return st == CONCUR_F_FINISHED ? 0 : -1;
}
