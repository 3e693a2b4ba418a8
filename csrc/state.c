/*
** state.c: what each Lua state remembers of the pools and threads it made,
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
*/
#include <stdlib.h>
#include <string.h>
#include "concur.h"
#include "state.h"

typedef struct entry { void *p; const concur_trackops *ops; } entry;

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

static void close_all (tracker *t) {
  /* NOTE: entries are closed newest first, so a pool made inside a task of
  ** an older pool's worker... (each state has its own tracker) */
  while (t->n > 0) {
    entry e = t->v[--t->n];
    e.ops->close(e.p);
    e.ops->release(e.p);
  }
}

static int tracker_gc (lua_State *L) {
  tracker *t = lua_touserdata(L, 1);
  close_all(t);
  free(t->v);
  t->v = NULL;
  t->cap = 0;
  return 0;
}

static int sentinel_gc (lua_State *L) {
  sentinel *s = lua_touserdata(L, 1);
  if (!s->superseded && s->t) {   /* the state is closing */
    close_all(s->t);
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
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, tracker_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &TRACKER_KEY);
  return t;
}

static void reap (tracker *t) {
  size_t j = 0;
  for (size_t i = 0; i < t->n; i++) {
    entry e = t->v[i];
    if (e.ops->reap(e.p)) e.ops->release(e.p);
    else t->v[j++] = e;
  }
  t->n = j;
}

void concur_track (lua_State *L, void *p, const concur_trackops *ops) {
  tracker *t = gettracker(L);
  sentinel *s;
  reap(t);
  if (t->n == t->cap) {
    size_t ncap = t->cap ? t->cap * 2 : 8;
    entry *nv = realloc(t->v, ncap * sizeof *nv);
    if (nv == NULL) {   /* cannot track it: close it now rather than leak */
      ops->close(p);
      ops->release(p);
      concur_error(L, "limit", "not enough memory");
    }
    t->v = nv;
    t->cap = ncap;
  }
  t->v[t->n].p = p;
  t->v[t->n].ops = ops;
  t->n++;
  s = lua_newuserdatauv(L, sizeof *s, 0);
  s->t = t;
  s->superseded = 0;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if (t->current) t->current->superseded = 1;
  t->current = s;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SENTINEL_KEY);
}
