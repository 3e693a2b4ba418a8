/*
** worker.c: a thread becomes a worker (begin/end: its Lua state and its
** interrupt timer), and runs tasks: each task is decoded in the worker's
** state, run as a coroutine (so the interrupt hook of interrupt.c can yield
** out of it past any pcall), and its results or its error object encoded
** into its future.
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

/* ---- workers ---------------------------------------------------------------- */

int concur_worker_begin (concur_worker *w, const char *path, const char *cpath) {
  w->current = NULL;
  w->co = NULL;
  w->hooked = NULL;
  w->in_lua = 0;
  concur_interrupt_begin(w);
  w->L = concur_newstate(path, cpath);
  return w->L ? 0 : -1;
}

void concur_worker_end (concur_worker *w) {
  if (w->L) {
    concur_set_interrupt_check(NULL, NULL, 0);   /* finalizers run unhindered */
    lua_close(w->L);
    w->L = NULL;
  }
  concur_interrupt_end(w);
}

/* ---- running a task --------------------------------------------------------- */

/* In protected mode: builds the error object for the error value at 1 and
** the traceback at 2 (errors.c): a concur.Error the task raised keeps its
** kind and fields (the worker's traceback added), as do concur's own
** (cancel, timeout, a failure to send the results); anything else becomes
** kind "task" with the value. */
static int build_error (lua_State *L) {
  concur_pushtaskerror(L, 1, 2);
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
  n = concur_decode_as(L, f->task.data, f->task.len, f->task.objs,
                       f->task.nobjs, "task");
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
  concur_wire_error(&rc->out, "task", "task failed with an error that cannot be sent");
}

/* Turns the error value at the top of L (with the traceback at the top of
** co, when co is given) into an encoded error object. */
static void fail_with (lua_State *L, lua_State *co, runctx *rc) {
  int err = lua_gettop(L);
  lua_pushcfunction(L, build_error);
  lua_pushvalue(L, err);
  if (co) luaL_traceback(L, co, NULL, 0);
  else lua_pushliteral(L, "");
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    lua_settop(L, err);
    concur_wire_error(&rc->out, "task", "task failed (and so did reporting it)");
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
  if (!concur_future_start(f, w)) return -1;
  return concur_worker_exec(w, f);
}

int concur_worker_exec (concur_worker *w, concur_future *f) {
  lua_State *L = w->L, *co;
  runctx rc;
  int status, failed = 0, n, nres = 0;
  w->current = f;
  f->deadline = f->timeout >= 0 ? concur_now() + f->timeout : CONCUR_NODEADLINE;
  if (f->timeout >= 0) concur_interrupt_arm(w, f->timeout);
  rc.w = w;
  rc.f = f;
  memset(&rc.out, 0, sizeof rc.out);
  lua_settop(L, 0);
  co = taskthread(w);
  lua_pushcfunction(L, decode_task);
  lua_pushlightuserdata(L, f);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    fail_with(L, NULL, &rc);
    failed = 1;
  }
  else if (n = lua_gettop(L), !lua_checkstack(co, n)) {
    /* NOTE: every move between the two stacks checks its room first: a
    ** count the stack cannot take fails the task, never overflows it */
    lua_settop(L, 0);
    concur_wire_error(&rc.out, "limit", "too many arguments for the task (more "
                  "than a Lua stack can take)");
    failed = 1;
  }
  else {
    lua_xmove(L, co, n);
    w->hooked = co;
    w->in_lua = 1;
    if (concur_interrupt_check(w, &(double){0}) != CONCUR_OK)
      concur_interrupt_now(0);                  /* already due: stop at the first step */
    status = lua_resume(co, L, n - 1, &nres);
    w->in_lua = 0;
    lua_sethook(co, NULL, 0, 0);
    if (status == LUA_OK && !lua_checkstack(L, nres + 3 + LUA_MINSTACK)) {
      lua_pop(co, nres);
      concur_wire_error(&rc.out, "limit", "the task returned too many values "
                    "(more than a Lua stack can take)");
      failed = 1;
    }
    else if (status == LUA_OK) {
      lua_pushcfunction(L, encode_values);
      lua_pushlightuserdata(L, &rc);
      lua_pushliteral(L, "results[]");
      lua_xmove(co, L, nres);
      if (lua_pcall(L, nres + 2, 0, 0) != LUA_OK) {
        concur_buf_free(&rc.out);
        fail_with(L, NULL, &rc);
        failed = 1;
      }
    }
    else if (status == LUA_YIELD) {  /* stopped by the hook, or a stray yield */
      double tdl;
      int why = concur_interrupt_check(w, &tdl);
      lua_pop(co, nres);
      resetthread(w);
      if (why == CONCUR_CANCELLED)
        concur_wire_error(&rc.out, "cancelled", "task cancelled");
      else if (why == CONCUR_TASKTIMEOUT)
        concur_wire_error(&rc.out, "timeout", "task exceeded its timeout");
      else
        concur_wire_error(&rc.out, "task", "task yielded outside a coroutine");
      failed = 1;
    }
    else {
      if (status == LUA_ERRMEM) {
        resetthread(w);
        concur_wire_error(&rc.out, "limit", "not enough memory");
      }
      else if (!lua_checkstack(L, LUA_MINSTACK)) {
        resetthread(w);
        concur_wire_error(&rc.out, "limit", "the task's stack is full");
      }
      else {
        lua_xmove(co, L, 1);
        fail_with(L, co, &rc);
        resetthread(w);
      }
      failed = 1;
    }
    w->hooked = NULL;
  }
  if (f->timeout >= 0) concur_interrupt_arm(w, -1);
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
