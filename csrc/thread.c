/*
** thread.c: concur.spawn, a thread that runs one function in its own state.
**
** A thread is a worker (worker.h) running a single future; join waits for
** that future. The OS thread is joined by the state's tracker once it is
** over, or when the state closes: then non-daemon threads are waited for
** and daemon threads are cancelled (and given a short grace). A thread
** started by a task or by another thread outlives the worker state that
** started it: that state hands it over to interpreter exit (tracker.c).
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "concur.h"
#include "core/future.h"
#include "tracker.h"
#include "worker.h"

typedef struct cthread {
  concur_obj obj;
  concur_worker w;
  concur_future *f;
  int daemon;
  char *path, *cpath;
  atomic_int over;       /* the OS thread has finished */
  int joined;            /* touched by the tracker that holds the thread
                         ** only (its state's, or the orphans') */
} cthread;

static void thread_destroy (concur_obj *o) {
  cthread *t = (cthread *)o;
  concur_obj_unref(&t->f->obj);
  free(t->path);
  free(t->cpath);
  free(t);
}

static const concur_objtype thread_type = { "concur.Thread", thread_destroy, NULL };

static void op_interrupt (concur_future *f) {
  concur_worker_interrupt(f->worker);
}

static const concur_future_ops thread_ops = { NULL, op_interrupt, NULL };

static void *thread_main (void *arg) {
  cthread *t = arg;
  if (concur_worker_begin(&t->w, t->path, t->cpath) != 0) {
    concur_buf eb = CONCUR_BUF_INIT;
    concur_wire_error(&eb, "broken", "cannot create the thread's Lua state");
    concur_future_finish(t->f, 1, &eb);
  }
  else concur_worker_run(&t->w, t->f);
  concur_worker_end(&t->w);
  atomic_store(&t->over, 1);
  concur_obj_unref(&t->obj);   /* a detached straggler frees last */
  return NULL;
}

static void thread_join_os (cthread *t, double grace) {
  if (t->joined) return;
  t->joined = 1;
  concur_thread_join(t->w.thread, grace);
}

static int track_over (concur_obj *o) {
  return atomic_load(&((cthread *)o)->over);
}

static void track_join (concur_obj *o) {
  thread_join_os((cthread *)o, -1);
}

static void track_close (concur_obj *o) {
  cthread *t = (cthread *)o;
  if (t->daemon) {
    concur_future_cancel(t->f);
    thread_join_os(t, 2);
  }
  else thread_join_os(t, -1);
}

static const concur_trackops thread_track = { track_over, track_join, track_close };

static cthread *checkthread (lua_State *L) {
  return (cthread *)concur_checkobj(L, 1, &thread_type);
}

static const char *const SPAWN_OPTIONS[] = { "args", "name", "daemon", NULL };
static atomic_int thread_counter;

/*** concur.spawn(fn, ...) or concur.spawn{ fn, args = {...}, name = s,
** daemon = false } --> Thread */
static int thread_spawn (lua_State *L) {
  concur_buf task = CONCUR_BUF_INIT;
  const char *name = NULL;
  int daemon = 0;
  cthread *t;
  if (lua_type(L, 1) == LUA_TTABLE) {
    concur_checkoptions(L, 1, SPAWN_OPTIONS);
    name = concur_optstring(L, 1, "name", NULL);   /* kept alive by the table */
    daemon = concur_optbool(L, 1, "daemon", 0);
    lua_settop(L, 1);
  }
  concur_checktask(L, 1, SPAWN_OPTIONS, &task);
  t = calloc(1, sizeof *t);
  if (t) t->f = concur_future_new(&thread_ops, t);
  if (t == NULL || t->f == NULL) {
    free(t);
    concur_buf_free(&task);
    return concur_error(L, "limit", "not enough memory");
  }
  concur_obj_init(&t->obj, &thread_type);
  t->f->task = task;
  t->daemon = daemon;
  t->w.owner = t;
  if (name) snprintf(t->w.name, sizeof t->w.name, "%s", name);
  else snprintf(t->w.name, sizeof t->w.name, "thread-%d",
                atomic_fetch_add(&thread_counter, 1) + 1);
  concur_getpaths(L, &t->path, &t->cpath);
  concur_pushobj(L, &t->obj);     /* proxy: one reference */
  /* the creation reference goes to the OS thread's bookkeeping (tracker) */
  concur_track_outliving(L, &t->obj, &thread_track);
  concur_obj_ref(&t->obj);        /* the OS thread's own reference */
  if (concur_thread_create(&t->w.thread, thread_main, t) != 0) {
    concur_obj_unref(&t->obj);
    concur_buf eb = CONCUR_BUF_INIT;
    concur_wire_error(&eb, "limit", "cannot start a thread");
    concur_future_finish(t->f, 1, &eb);
    atomic_store(&t->over, 1);
    t->joined = 1;
    return concur_error(L, "limit", "cannot start a thread");
  }
  return 1;
}

/*** t:join([timeout]) --> true, results... | false, err; raises "timeout" */
static int thread_join (lua_State *L) {
  cthread *t = checkthread(L);
  double deadline = concur_optdeadline(L, 2);
  concur_future *f = t->f;
  int rc, st;
  CONCUR_WAIT(L, rc, concur_future_wait(f, deadline));
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "join");
  st = concur_future_state(f);
  lua_settop(L, 0);
  if (st == CONCUR_F_FINISHED) {
    lua_pushboolean(L, 1);
    return 1 + concur_decode(L, f->out.data, f->out.len, f->out.objs,
                             f->out.nobjs);
  }
  lua_pushboolean(L, 0);
  if (st == CONCUR_F_CANCELLED)
    concur_pusherror(L, "cancelled", "the thread was cancelled");
  else {
    concur_decode(L, f->out.data, f->out.len, f->out.objs, f->out.nobjs);
    lua_settop(L, 2);
    luaL_setmetatable(L, "concur.Error");
  }
  return 2;
}

/*** t:alive() --> true while the thread runs */
static int thread_alive (lua_State *L) {
  cthread *t = checkthread(L);
  lua_pushboolean(L, !concur_future_done(t->f));
  return 1;
}

/*** t:cancel() --> true when the thread will not finish normally: it is
** interrupted at its next Lua instruction check (past pcall) or wait. */
static int thread_cancel (lua_State *L) {
  cthread *t = checkthread(L);
  lua_pushboolean(L, concur_future_cancel(t->f) &&
                     concur_future_state(t->f) != CONCUR_F_FINISHED &&
                     concur_future_state(t->f) != CONCUR_F_FAILED);
  return 1;
}

/* t.name, t.daemon, and the methods */
static int thread_index (lua_State *L) {
  cthread *t = checkthread(L);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "name") == 0) {
    lua_pushstring(L, t->w.name);
    return 1;
  }
  if (k && strcmp(k, "daemon") == 0) {
    lua_pushboolean(L, t->daemon);
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* <close>: waits for the thread to end (as join without a timeout); what
** it returned or raised is left for join. */
static int thread_close (lua_State *L) {
  cthread *t = (cthread *)concur_selfproxy(L)->o;
  int rc;
  if (t == NULL) return 0;
  CONCUR_WAIT(L, rc, concur_future_wait(t->f, CONCUR_NODEADLINE));
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "join");
  return 0;
}

static const luaL_Reg thread_meta[] = {
  {"__close", thread_close},
  {NULL, NULL}
};

static const luaL_Reg thread_methods[] = {
  {"join", thread_join},
  {"alive", thread_alive},
  {"cancel", thread_cancel},
  {NULL, NULL}
};

/*** core.thread_handle(t) --> another Thread object for the thread t is
** (concur's own bookkeeping of errors nobody joined, lua/concur/init.lua:
** it outlives the object the caller holds) */
static int thread_handle (lua_State *L) {
  cthread *t = checkthread(L);
  concur_pushobj(L, &t->obj);
  return 1;
}

/*** concur.thread_name() --> the current thread's name ("main" outside
** workers and threads) */
static int thread_name (lua_State *L) {
  concur_worker *w = concur_worker_self();
  lua_pushstring(L, w ? w->name : "main");
  return 1;
}

void concur_thread_open (lua_State *L) {
  concur_newclass(L, &thread_type, thread_methods, thread_meta);
  luaL_getmetatable(L, thread_type.name);
  if (lua_getfield(L, -1, "methods") != LUA_TNIL) {  /* opened before */
    lua_pop(L, 2);
    goto funcs;
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -2, "methods");
  lua_pushcfunction(L, thread_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  concur_class_stays(L, thread_type.name, "a Thread belongs to the state "
                     "that spawned it: join it there, and send a Queue or an "
                     "Event to hear from it");
funcs:
  lua_pushcfunction(L, thread_spawn);
  lua_setfield(L, -2, "spawn");
  lua_pushcfunction(L, thread_name);
  lua_setfield(L, -2, "thread_name");
  lua_pushcfunction(L, thread_handle);
  lua_setfield(L, -2, "thread_handle");
}
