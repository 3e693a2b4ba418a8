/*
** interrupt.c: stopping a worker's running task (cancel, per-task timeout).
**
** The interrupter marks the future
** (cancel_req) and sends CONCUR_SIGNAL to the worker's thread; a per-thread
** POSIX timer sends the same signal when a task's deadline comes. The handler
** runs on the worker's own thread and, only while Lua code of a task runs,
** sets a count hook on the worker's state, exactly as the standalone lua
** interpreter does for Ctrl-C (lua_sethook is documented as safe for that).
** The hook checks the running future: if it was cancelled or is past its
** deadline it raises, and stays armed (every 1000 instructions) so a task
** that catches the error with pcall is stopped again; otherwise it removes
** itself. So nothing is paid while no interrupt is pending. Tasks blocked
** in concur waits notice through the interrupt check (core/wait.h).
**
** Hooks are per coroutine: see "coroutines inside tasks" below for how a
** loop inside a coroutine the task made is stopped too.
*/
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "worker.h"

#define CONCUR_SIGNAL (SIGRTMIN + 7)

static _Thread_local concur_worker *self_worker;
static pthread_once_t sig_once = PTHREAD_ONCE_INIT;

concur_worker *concur_worker_self (void) { return self_worker; }

/* ---- the interrupt -------------------------------------------------------- */

int concur_interrupt_check (void *ud, double *task_deadline) {
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
  int rc = w ? concur_interrupt_check(w, &tdl) : CONCUR_OK;
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
void concur_interrupt_now (int sig) {
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
  sa.sa_handler = concur_interrupt_now;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(CONCUR_SIGNAL, &sa, NULL);
}

void concur_worker_interrupt (concur_worker *w) {
  pthread_kill(w->thread, CONCUR_SIGNAL);
}

void concur_interrupt_arm (concur_worker *w, double timeout) {
  struct itimerspec its;
  if (!w->has_timer) return;
  memset(&its, 0, sizeof its);
  if (timeout >= CONCUR_FOREVER) timeout = -1;   /* none (time_t range) */
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
    if (w->in_lua && concur_interrupt_check(w, &tdl) != CONCUR_OK)
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

/* ---- waits of a thread that runs no task: Ctrl-C -------------------------
** The standalone interpreter stops a script on Ctrl-C by setting a hook on
** its main state from the SIGINT handler (lua.c's laction); the hook raises
** "interrupted!" at the next instruction. A thread blocked in a concur wait
** runs no instruction, so each wait of a thread that runs no task (see
** CONCUR_WAIT in concur.h) watches the hooks of its state and of that
** state's main thread: a change made while it waits is an asynchronous
** interrupt (nothing else can change them: the thread is blocked). The
** wait returns CONCUR_INTERRUPTED; the binding then calls a function that
** does nothing (a C one, then a Lua one for count and line hooks), so the
** new hook fires there, as it would have in Lua code; a hook set on the main thread while
** a coroutine waits is set on the coroutine too, so it fires in the
** coroutine. A hook that does not raise lets the wait go on.
**
** NOTE: the check reads hook fields that a signal handler writes; the
** handler runs on this very thread (concur's threads block SIGINT: see
** concur_thread_create), as the interpreter's own hook does.
*/

#define CONCUR_WATCH_SLICE 0.05   /* seconds: how soon a wait notices */

static const char NOOP_KEY = 'n';

static int noop (lua_State *L) {
  (void)L;
  return 0;
}

static int watch_check (void *ud, double *task_deadline) {
  concur_watch *w = ud;
  (void)task_deadline;
  if (lua_gethook(w->L) != w->hook
      || (w->M != w->L && lua_gethook(w->M) != w->mhook))
    return CONCUR_INTERRUPTED;
  return CONCUR_OK;
}

/* NOTE: on the path of every wait, also those that do not sleep, so it
** makes few calls: the hook function alone tells an interrupt (the
** interpreter's replaces whatever hook there was), and a state that
** cannot yield here is taken for the main thread (a coroutine in a
** non-yieldable call has only its own hook watched). */
void concur_watch_begin (lua_State *L, concur_watch *w) {
  w->on = concur_try_interrupt_check(watch_check, w, CONCUR_WATCH_SLICE);
  if (!w->on) return;   /* a task's own check: enough */
  w->L = w->M = L;
  w->hook = lua_gethook(L);
  if (lua_isyieldable(L) && lua_checkstack(L, 1)) {   /* a coroutine: */
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD) == LUA_TTHREAD)
      w->M = lua_tothread(L, -1);                     /* its main thread */
    lua_pop(L, 1);                                    /* too */
    w->mhook = lua_gethook(w->M);
  }
}

int concur_watch_end (lua_State *L, concur_watch *w, int rc) {
  if (!w->on) return 0;
  concur_set_interrupt_check(NULL, NULL, 0);
  if (rc != CONCUR_INTERRUPTED) return 0;
  if (w->M != L && lua_gethook(w->M) != w->mhook)   /* set on the main */
    lua_sethook(L, lua_gethook(w->M), lua_gethookmask(w->M),   /* thread */
                lua_gethookcount(w->M));
  luaL_checkstack(L, 2, "interrupt");
  lua_pushcfunction(L, noop);   /* a call hook (the interpreter's) fires */
  lua_call(L, 0, 0);
  if ((lua_gethookmask(L) & (LUA_MASKCOUNT | LUA_MASKLINE)) == 0) return 1;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NOOP_KEY) != LUA_TFUNCTION) {
    lua_pop(L, 1);            /* a count or line hook needs Lua code */
    if (luaL_loadbuffer(L, "return", 6, "=(interrupted wait)") != LUA_OK)
      lua_error(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NOOP_KEY);
  }
  lua_call(L, 0, 0);
  return 1;   /* the hook did not raise: wait again */
}

void concur_interrupt_begin (concur_worker *w) {
  struct sigevent sev;
  pthread_once(&sig_once, install_handler);
  self_worker = w;
  concur_set_interrupt_check(concur_interrupt_check, w, 0);
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = CONCUR_SIGNAL;
  sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
  w->has_timer = timer_create(CLOCK_MONOTONIC, &sev, &w->timer) == 0;
}

void concur_interrupt_end (concur_worker *w) {
  concur_set_interrupt_check(NULL, NULL, 0);
  if (w->has_timer) timer_delete(w->timer);
  w->has_timer = 0;
  self_worker = NULL;
}

void concur_interrupt_opencoroutines (lua_State *L) {
  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, co_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, co_wrap);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 1);
}
