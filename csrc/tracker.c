/*
** tracker.c: what each Lua state remembers of the pools and threads it made,
** so that closing the state (lua_close, interpreter exit) ends them cleanly.
**
** Every pool or thread is registered with concur_track. A registration also
** makes a new "sentinel" userdata (anchored in the registry) and marks the
** previous one superseded. Lua calls finalizers in the reverse order of
** their marking, so at lua_close the newest sentinel is finalized before any
** pool or thread proxy: it closes them all (pending tasks cancelled, running
** ones interrupted, daemon threads cancelled, workers joined). A sentinel
** that is finalized while superseded is ordinary garbage and does nothing.
** Entries whose work is over are reaped (joined, released) at the next
** registration, so a program that makes many pools keeps no dead threads.
**
** Threads and processes that a task or a thread started outlive the worker
** state that started them, as Python's do (the pool's close does not wait
** for them): when a worker's state closes, such entries go to one list of
** the process, the orphans, and the first state to close that is no
** worker's (the interpreter's, at exit) closes them with its own: non-daemon
** threads joined, daemon ones cancelled. Orphans that are over are reaped
** at every registration, by any state.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "concur.h"
#include "tracker.h"
#include "worker.h"

typedef struct entry {
  concur_obj *o;
  const concur_trackops *ops;
  int outlives;   /* see concur_track_outliving */
} entry;

typedef struct tracker {
  entry *v;
  size_t n, cap;
  struct sentinel *current;
} tracker;

typedef struct sentinel {
  tracker *t;
  int superseded;
} sentinel;

static const char TRACKER_KEY = 't';
static const char SENTINEL_KEY = 's';
#define TRACKER_MT "concur.tracker"
#define SENTINEL_MT "concur.sentinel"

/* The userdata at 1 of the class named mt with 'size' bytes, or raises. */
static void *checkself (lua_State *L, const char *mt, size_t size) {
  void *p = luaL_testudata(L, 1, mt);
  if (p == NULL || lua_rawlen(L, 1) != size) concur_typeerror(L, 1, mt);
  return p;
}

/* ---- orphans: the process's list, under orphans_mu ---- */

static pthread_mutex_t orphans_mu = PTHREAD_MUTEX_INITIALIZER;
static entry *orphans;
static size_t norphans, orphans_cap;

/* Hands e over to the orphans; 0, or -1 when out of memory. */
static int adopt (entry e) {
  int rc = 0;
  pthread_mutex_lock(&orphans_mu);
  if (norphans == orphans_cap) {
    size_t ncap = orphans_cap ? orphans_cap * 2 : 8;
    entry *nv = realloc(orphans, ncap * sizeof *nv);
    if (nv == NULL) rc = -1;
    else {
      orphans = nv;
      orphans_cap = ncap;
    }
  }
  if (rc == 0) orphans[norphans++] = e;
  pthread_mutex_unlock(&orphans_mu);
  return rc;
}

/* Joins and releases e if its work is over; returns whether it did. */
static int reaped (entry e) {
  if (!e.ops->over(e.o)) return 0;
  e.ops->join(e.o);
  concur_obj_unref(e.o);
  return 1;
}

/* Closes and releases e. */
static void closed (entry e) {
  e.ops->close(e.o);
  concur_obj_unref(e.o);
}

/* Joins and releases the orphans whose work is over. */
static void reap_orphans (void) {
  size_t j = 0;
  pthread_mutex_lock(&orphans_mu);
  for (size_t i = 0; i < norphans; i++) {
    if (!reaped(orphans[i])) orphans[j++] = orphans[i];
  }
  norphans = j;
  pthread_mutex_unlock(&orphans_mu);
}

/* Closes every orphan, newest first, also those that orphans closing now
** hand over (a thread's own state closes as it ends). */
static void close_orphans (void) {
  for (;;) {
    entry e;
    pthread_mutex_lock(&orphans_mu);
    if (norphans == 0) {
      pthread_mutex_unlock(&orphans_mu);
      return;
    }
    e = orphans[--norphans];
    pthread_mutex_unlock(&orphans_mu);
    closed(e);
  }
}

/* Is L the state of a pool's worker or of a thread, on this thread? (A
** worker process's state has no owner: it ends with its process, and
** closes what it made as the interpreter's does.) */
static int worker_state (lua_State *L) {
  concur_worker *w = concur_worker_self();
  return w && w->L == L && w->owner != NULL;
}

/* The state L closes: closes what it made, newest first (a pool made in a
** task closes before the pool of that task...); a worker's state hands its
** threads and processes to the orphans, the interpreter's closes them. */
static void close_all (lua_State *L, tracker *t) {
  int worker = worker_state(L);
  while (t->n > 0) {
    entry e = t->v[--t->n];
    if (worker && e.outlives && adopt(e) == 0) continue;
    closed(e);
  }
  if (!worker) close_orphans();
}

static int tracker_gc (lua_State *L) {
  tracker *t = checkself(L, TRACKER_MT, sizeof *t);
  close_all(L, t);
  free(t->v);
  t->v = NULL;
  t->cap = 0;
  return 0;
}

static int sentinel_gc (lua_State *L) {
  sentinel *s = checkself(L, SENTINEL_MT, sizeof *s);
  if (!s->superseded && s->t) {   /* the state is closing */
    close_all(L, s->t);
    s->t->current = NULL;
  }
  return 0;
}

static tracker *gettracker (lua_State *L) {
  tracker *t;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &TRACKER_KEY) == LUA_TUSERDATA) {
    t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return t;
  }
  lua_pop(L, 1);
  t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  if (luaL_newmetatable(L, TRACKER_MT)) {
    lua_pushcfunction(L, tracker_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &TRACKER_KEY);
  return t;
}

static void reap (tracker *t) {
  size_t j = 0;
  for (size_t i = 0; i < t->n; i++)
    if (!reaped(t->v[i])) t->v[j++] = t->v[i];
  t->n = j;
}

static void track (lua_State *L, concur_obj *o, const concur_trackops *ops,
                   int outlives) {
  tracker *t = gettracker(L);
  sentinel *s;
  reap(t);
  reap_orphans();
  if (t->n == t->cap) {
    size_t ncap = t->cap ? t->cap * 2 : 8;
    entry *nv = realloc(t->v, ncap * sizeof *nv);
    if (nv == NULL) {   /* cannot track it: close it now rather than leak */
      ops->close(o);
      concur_obj_unref(o);
      concur_error(L, "limit", "not enough memory");
    }
    t->v = nv;
    t->cap = ncap;
  }
  t->v[t->n].o = o;
  t->v[t->n].ops = ops;
  t->v[t->n].outlives = outlives;
  t->n++;
  s = lua_newuserdatauv(L, sizeof *s, 0);
  s->t = t;
  s->superseded = 0;
  if (luaL_newmetatable(L, SENTINEL_MT)) {
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (t->current) t->current->superseded = 1;
  t->current = s;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SENTINEL_KEY);
}

void concur_track (lua_State *L, concur_obj *o, const concur_trackops *ops) {
  track(L, o, ops, 0);
}

void concur_track_outliving (lua_State *L, concur_obj *o,
                             const concur_trackops *ops) {
  track(L, o, ops, 1);
}
