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
** Hooks are per coroutine: see "coroutines inside tasks" below for how a
** loop inside a coroutine the task made is stopped too.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
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
  if (lua_isyieldable(L)) {   /* a hook's yield returns here, and the VM */
    lua_yield(L, 0);          /* then yields past every pcall */
    return;
  }
  concur_raisewait(L, rc, "task");   /* inside a C call: raise instead */
}

/* Runs on the worker's own thread (signal or direct call). */
static void on_signal (int sig) {
  concur_worker *w = self_worker;
  (void)sig;
  if (w && w->in_lua && w->hooked)
    lua_sethook(w->hooked, interrupt_hook, LUA_MASKCOUNT, 1);
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

/* ---- coroutines inside tasks -----------------------------------------------
** Hooks belong to one coroutine, so a worker replaces coroutine.resume and
** coroutine.wrap with versions that record the running coroutine (the
** signal handler hooks that one) and, when an interrupt is pending after a
** resume returns, hook the caller too: the interrupt climbs out of nested
** coroutines to the task. Otherwise they behave as the standard ones.
*/

/* As lcorolib's auxresume: returns the number of results, or -1 with an
** error value on top. */
static int auxresume (lua_State *L, lua_State *co, int narg) {
  concur_worker *w = self_worker;
  lua_State *prev = w ? w->hooked : NULL;
  double tdl;
  int status, nres;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  if (w) w->hooked = co;
  status = lua_resume(co, L, narg, &nres);
  if (w) {
    w->hooked = prev;
    if (w->in_lua && check_interrupt(w, &tdl) != CONCUR_OK)
      lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, 1);
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

static int co_resume (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  int r;
  luaL_argexpected(L, co, 1, "coroutine");
  r = auxresume(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int co_wrapped (lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = auxresume(L, co, lua_gettop(L));
  if (r < 0) {
    int st = lua_status(co);
    if (st != LUA_OK && st != LUA_YIELD) {   /* error in the coroutine */
#if LUA_VERSION_RELEASE_NUM >= 50406
      st = lua_closethread(co, L);
#else
      st = lua_resetthread(co);
#endif
      lua_xmove(co, L, 1);
    }
    if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

static int co_wrap (lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 1);
  return 1;
}

/* ---- states --------------------------------------------------------------- */

/* Called in protected mode: opens the libraries, sets the paths, loads concur. */
static int init_state (lua_State *L) {
  const char *path = lua_touserdata(L, 1);
  const char *cpath = lua_touserdata(L, 2);
  luaL_openlibs(L);
  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, co_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, co_wrap);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 1);
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
  w->co = NULL;
  w->hooked = NULL;
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

/* In protected mode: builds the error object for the error value at 1 and
** the traceback at 2. Errors concur raised to stop the task (cancel,
** timeout: marked 'interrupt') and failures to send the results keep their
** kind; anything else the task raised becomes kind "task" with the value. */
static int build_error (lua_State *L) {
  int keep = lua_toboolean(L, 3);
  const char *msg;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, "concur.Error");
    if (lua_rawequal(L, -1, -2)) {
      lua_getfield(L, 1, "interrupt");
      keep = keep || lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    else keep = 0;
    lua_pop(L, 2);
  }
  else keep = 0;
  if (keep) {
    lua_pushvalue(L, 2);
    lua_setfield(L, 1, "traceback");
    lua_settop(L, 1);
    return 1;
  }
  if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING &&
      strcmp(lua_tostring(L, -1), "concur.Error") == 0) {
    lua_getfield(L, 1, "message");
    msg = lua_tostring(L, -1);
  }
  else msg = luaL_tolstring(L, 1, NULL);
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "task");
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg ? msg : "(error object)");
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "value");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "traceback");
  luaL_setmetatable(L, "concur.Error");
  return 1;
}

typedef struct runctx {
  concur_worker *w;
  concur_future *f;
  concur_buf out;
} runctx;

/* In protected mode: decodes the task (function and arguments). */
static int decode_task (lua_State *L) {
  concur_future *f = lua_touserdata(L, 1);
  int n;
  lua_settop(L, 0);
  n = concur_decode(L, f->task.data, f->task.len, f->task.objs, f->task.nobjs);
  if (n < 1 || lua_type(L, 1) != LUA_TFUNCTION)
    return concur_error(L, "argument", "task is not a function");
  return n;
}

/* In protected mode: encodes the values above the runctx at 1. */
static int encode_values (lua_State *L) {
  runctx *rc = lua_touserdata(L, 1);
  const char *root = lua_tostring(L, 2);
  concur_encode(L, 3, lua_gettop(L) - 2, &rc->out, root);
  return 0;
}

/* In protected mode: replaces err.value by tostring(err.value). */
static int stringify_value (lua_State *L) {
  lua_getfield(L, 1, "value");
  luaL_tolstring(L, -1, NULL);
  lua_setfield(L, 1, "value");
  return 0;
}

/* Encodes the error object at the top of L into rc->out; a value that
** cannot be sent is replaced by its string form. */
static void encode_error (lua_State *L, runctx *rc) {
  int err = lua_gettop(L);
  for (int attempt = 0; attempt < 2; attempt++) {
    lua_pushcfunction(L, encode_values);
    lua_pushlightuserdata(L, rc);
    lua_pushliteral(L, "error");
    lua_pushvalue(L, err);
    if (lua_pcall(L, 3, 0, 0) == LUA_OK) return;
    lua_pop(L, 1);
    concur_buf_free(&rc->out);
    lua_pushcfunction(L, stringify_value);
    lua_pushvalue(L, err);
    if (lua_type(L, err) != LUA_TTABLE || lua_pcall(L, 1, 0, 0) != LUA_OK) break;
  }
  concur_errbuf(&rc->out, "task", "task failed with an error that cannot be sent");
}

/* Turns the error value at the top of L (with the traceback at the top of
** co, when co is given) into an encoded error object. 'keep': the value
** is concur's own error (e.g. sending the results failed). */
static void fail_with (lua_State *L, lua_State *co, runctx *rc, int keep) {
  int err = lua_gettop(L);
  lua_pushcfunction(L, build_error);
  lua_pushvalue(L, err);
  if (co) luaL_traceback(L, co, NULL, 0);
  else lua_pushliteral(L, "");
  lua_pushboolean(L, keep);
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
    lua_settop(L, err);
    concur_errbuf(&rc->out, "task", "task failed (and so did reporting it)");
    return;
  }
  encode_error(L, rc);
}

/* The worker's coroutine for tasks: a task runs as a coroutine so that an
** interrupt can stop it by yielding from the hook, which no pcall inside
** the task can catch. */
static lua_State *taskthread (concur_worker *w) {
  if (w->co == NULL) {
    w->co = lua_newthread(w->L);
    lua_rawsetp(w->L, LUA_REGISTRYINDEX, w);   /* anchored */
  }
  return w->co;
}

static void resetthread (concur_worker *w) {
  lua_sethook(w->co, NULL, 0, 0);
#if LUA_VERSION_RELEASE_NUM >= 50406
  lua_closethread(w->co, w->L);
#else
  lua_resetthread(w->co);
#endif
  lua_settop(w->co, 0);   /* it may leave an error object */
}

int concur_worker_run (concur_worker *w, concur_future *f) {
  lua_State *L = w->L, *co;
  runctx rc;
  int status, failed = 0, n, nres = 0;
  if (!concur_future_start(f, w)) return -1;
  w->current = f;
  f->deadline = f->timeout >= 0 ? concur_now() + f->timeout : CONCUR_NODEADLINE;
  if (f->timeout >= 0) arm_timer(w, f->timeout);
  rc.w = w;
  rc.f = f;
  memset(&rc.out, 0, sizeof rc.out);
  lua_settop(L, 0);
  co = taskthread(w);
  lua_pushcfunction(L, decode_task);
  lua_pushlightuserdata(L, f);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    fail_with(L, NULL, &rc, 1);
    failed = 1;
  }
  else {
    n = lua_gettop(L);
    lua_xmove(L, co, n);
    w->hooked = co;
    w->in_lua = 1;
    if (check_interrupt(w, &(double){0}) != CONCUR_OK)
      on_signal(0);                  /* already due: stop at the first step */
    status = lua_resume(co, L, n - 1, &nres);
    w->in_lua = 0;
    lua_sethook(co, NULL, 0, 0);
    if (status == LUA_OK) {
      lua_pushcfunction(L, encode_values);
      lua_pushlightuserdata(L, &rc);
      lua_pushliteral(L, "results[]");
      lua_xmove(co, L, nres);
      if (lua_pcall(L, nres + 2, 0, 0) != LUA_OK) {
        concur_buf_free(&rc.out);
        fail_with(L, NULL, &rc, 1);
        failed = 1;
      }
    }
    else if (status == LUA_YIELD) {  /* stopped by the hook, or a stray yield */
      double tdl;
      int why = check_interrupt(w, &tdl);
      lua_pop(co, nres);
      resetthread(w);
      if (why == CONCUR_CANCELLED)
        concur_errbuf(&rc.out, "cancelled", "task cancelled");
      else if (why == CONCUR_TASKTIMEOUT)
        concur_errbuf(&rc.out, "timeout", "task exceeded its timeout");
      else
        concur_errbuf(&rc.out, "task", "task yielded outside a coroutine");
      failed = 1;
    }
    else {
      if (status == LUA_ERRMEM) {
        resetthread(w);
        concur_errbuf(&rc.out, "limit", "not enough memory");
      }
      else {
        lua_xmove(co, L, 1);
        fail_with(L, co, &rc, 0);
        resetthread(w);
      }
      failed = 1;
    }
    w->hooked = NULL;
  }
  if (f->timeout >= 0) arm_timer(w, -1);
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
  if (st != CONCUR_F_FINISHED && f->out.len) {
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
