/*
** barrier.c: concur.Barrier, a meeting point for a fixed number of parties
** (threads or processes), over core/sync.h's concur_barrier. No C mutex is
** held here, ever.
**
** An action (Barrier(n, { action = fn })) is run by the last party to
** arrive, before any party is let go, as Python's. The barrier lives in
** shared memory and its last party may be any thread or process, so the
** action is kept encoded (codec bytes in an shbuf block, core/shbuf.h) and
** the last party runs its own copy, decoded in its state: like a task's,
** its upvalues are copies, and it shares state through concur objects.
** An action that raises breaks the barrier: the last party raises its
** error, the others kind "broken".
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shared.h"
#include "core/shbuf.h"
#include "core/sync.h"

typedef struct cbarrier {
  concur_barrier b;
  uint64_t action;           /* the encoded action (shbuf block), or 0 */
  double timeout;            /* wait's default timeout, seconds; < 0: none */
} cbarrier;

static void barrier_release (void *state) {
  cbarrier *c = state;
  if (c->action) concur_shbuf_free(c->action);
  c->action = 0;
}

/* The action may hold shared objects (ready them) but none that cannot
** leave this process. */
static int barrier_share (void *state, char *err, size_t errsize) {
  cbarrier *c = state;
  concur_shref *inner = NULL;
  size_t n = 0, cap = 0;
  if (c->action == 0) return 0;
  if (concur_shbuf_local(c->action)) {
    snprintf(err, errsize, "a Barrier whose action holds an object that "
             "cannot leave this process (a Future, a fetch Client...) "
             "cannot be sent to another process");
    return -1;
  }
  if (concur_shbuf_refs(c->action, &inner, &n, &cap) != 0) {
    free(inner);
    snprintf(err, errsize, "not enough memory");
    return -1;
  }
  return concur_shbuf_shareall(inner, n, err, errsize);
}

static const concur_objtype barrier_type = { "concur.Barrier",
                                             concur_shobj_destroy, NULL };
static const concur_shclass barrier_class = { &barrier_type,
                                              CONCUR_SH_BARRIER,
                                              barrier_release, barrier_share };

#define checkbarrier(L) ((cbarrier *)concur_shared_selfstate(L, &barrier_type))

static const char *const BARRIER_OPTIONS[] = { "action", "timeout", NULL };

/*** Barrier(n [, { action = fn, timeout = s }]) --> a barrier for n
** parties. `action`: called (a copy of it, with no arguments) by the last
** party to arrive, before the others are let go. `timeout`: the default
** timeout of wait (seconds). */
static int barrier_new (lua_State *L) {
  lua_Integer n = concur_checkinteger(L, 1);
  double timeout = -1;
  concur_buf action = CONCUR_BUF_INIT;
  concur_shobj *o;
  cbarrier *c;
  int rc;
  if (n < 1) return concur_argerror(L, 1, "parties must be at least 1");
  if (n > 0x7fffffff) return concur_argerror(L, 1, "too many parties");
  if (lua_type(L, 2) == LUA_TTABLE) {
    concur_checkoptions(L, 2, BARRIER_OPTIONS);
    /* (nil: none, as a century or more is) */
    timeout = concur_optnumber(L, 2, "timeout", CONCUR_FOREVER, -HUGE_VAL, 0, 1);
    if (timeout < 0) timeout = 0;    /* negative: don't wait */
    if (timeout >= CONCUR_FOREVER) timeout = -1;
    if (lua_getfield(L, 2, "action") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TFUNCTION)
        return concur_argerror(L, 2, "option 'action' must be a function");
      concur_encode(L, -1, 1, &action, "action");
    }
  }
  else if (!lua_isnoneornil(L, 2)) {
    return concur_typeerror(L, 2, "table");
  }
  o = concur_shobj_new(&barrier_class, sizeof *c);
  if (o == NULL) {
    concur_buf_free(&action);
    return concur_error(L, "limit", "cannot create a concur.Barrier: %s",
                        concur_shm_init() != 0 ? "no shared memory"
                        : "shared memory is full (see CONCUR_SHMSIZE)");
  }
  c = o->state;
  c->timeout = timeout;
  rc = concur_barrier_init(&c->b, (int)n, 1);
  if (rc == 0 && action.len) {
    c->action = concur_shbuf_pack(&action, 0);
    if (c->action == 0) rc = -1;
    else c->b.hasaction = 1;
  }
  concur_buf_free(&action);
  return concur_shared_made(L, o, rc);
}

/* In protected mode: decodes the action in the buffer at 1 and calls it. */
static int decode_call (lua_State *L) {
  concur_buf *b = lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (concur_decode_as(L, b->data, b->len, b->objs, b->nobjs, "action") < 1
      || lua_type(L, 1) != LUA_TFUNCTION)
    return concur_error(L, "transfer", "the barrier's action is not a function");
  lua_settop(L, 1);
  lua_call(L, 0, 0);
  return 0;
}

/* The last party of a barrier with an action: runs a copy of it, then lets
** the others go (or breaks the barrier when it raised, and raises its
** error). Returns the barrier's result. */
static int last_party (lua_State *L, cbarrier *c) {
  concur_buf b = CONCUR_BUF_INIT;
  int rc = concur_shbuf_copyout(c->action, &b), ok;
  if (rc != 0) {
    concur_barrier_pass(&c->b, 0);
    if (rc == CONCUR_SHB_FOREIGN)
      return concur_error(L, "transfer", "the barrier's action holds an "
                          "object that cannot leave the process that made it");
    return concur_error(L, "limit", "not enough memory");
  }
  lua_pushcfunction(L, decode_call);
  lua_pushlightuserdata(L, &b);
  ok = lua_pcall(L, 1, 0, 0) == LUA_OK;
  concur_buf_free(&b);
  rc = concur_barrier_pass(&c->b, ok);
  if (!ok) lua_error(L);   /* the action's own error */
  return rc;
}

/*** barrier:wait([timeout]) --> index in 0..n-1 (arrival order). Without a
** timeout, the barrier's own (Barrier's option) applies. Raises "broken"
** when the barrier is (or becomes) broken, and "timeout" when the timeout
** passes, which breaks it for the others (as Python). The last party runs
** the action first; when it raises, it raises here (the others: kind
** "broken"). */
static int barrier_wait (lua_State *L) {
  cbarrier *c = checkbarrier(L);
  double deadline = lua_isnoneornil(L, 2) && c->timeout >= 0
                    ? concur_deadline(c->timeout) : concur_shared_deadline(L, 2);
  int index = 0, rc;
  CONCUR_WAIT(L, rc, concur_barrier_wait(&c->b, deadline, &index));
  if (rc == CONCUR_BARRIER_ACTION) rc = last_party(L, c);
  if (rc == CONCUR_OK) {
    lua_pushinteger(L, index);
    return 1;
  }
  if (rc == CONCUR_BROKEN)
    return concur_error(L, "broken", "barrier is broken");
  return concur_raisewait(L, rc, "barrier wait");
}

/*** barrier:abort(): breaks it; every waiter, now and later, raises
** "broken" until reset() */
static int barrier_abort (lua_State *L) {
  concur_barrier_abort(&checkbarrier(L)->b);
  return 0;
}

/*** barrier:reset(): back to empty and unbroken; current waiters raise
** "broken" */
static int barrier_reset (lua_State *L) {
  concur_barrier_reset(&checkbarrier(L)->b);
  return 0;
}

/*** barrier:parties() --> n */
static int barrier_parties (lua_State *L) {
  lua_pushinteger(L, checkbarrier(L)->b.parties);
  return 1;
}

/*** barrier:n_waiting() --> parties waiting now */
static int barrier_nwaiting (lua_State *L) {
  lua_pushinteger(L, concur_barrier_waiting(&checkbarrier(L)->b));
  return 1;
}

/*** barrier:broken() --> boolean */
static int barrier_broken (lua_State *L) {
  lua_pushboolean(L, concur_barrier_isbroken(&checkbarrier(L)->b));
  return 1;
}

static const luaL_Reg barrier_methods[] = {
  {"wait", barrier_wait},
  {"abort", barrier_abort},
  {"reset", barrier_reset},
  {"parties", barrier_parties},
  {"n_waiting", barrier_nwaiting},
  {"broken", barrier_broken},
  {NULL, NULL}
};

void concur_barrier_open (lua_State *L) {
  static const luaL_Reg ctors[] = {
    {"Barrier", barrier_new},
    {NULL, NULL}
  };
  concur_shclass_register(&barrier_class);
  concur_shared_class(L, &barrier_type, barrier_methods, NULL, 0);
  luaL_setfuncs(L, ctors, 0);
}
