/*
** queue.c: concur.Queue, a closable, optionally bounded FIFO, LIFO or
** priority queue shared by reference between threads and tasks.
**
** Values cross by copy: put encodes its value (codec) before the queue's
** mutex is taken, and get decodes after it is dropped, so no Lua code, error
** or allocation ever runs under the mutex (core/queue.c). Shared objects in
** a value (a Lock, another Queue) travel by reference inside the item.
**
** Between pop and decode, the item is owned by a per-state slot (a userdata,
** upvalue 2 of the methods) whose __gc frees it, so a memory error while
** decoding leaks nothing. A get nested in such a decode (a finalizer that
** calls get) finds the slot busy and uses a fresh one. NOTE: so does every
** get after a decode that raised (out of memory) left the slot busy: slower,
** still correct, and the slot's __gc frees what it holds.
**
** NOTE: a nil taken by items() ends the for loop (Lua's rule): put no nil in
** a queue that is read with items().
*/
#include <stdlib.h>
#include <string.h>
#include "sync_lua.h"
#include "core/queue.h"

typedef struct cqueue {
  int order;
  concur_queue q;
} cqueue;

static void queue_release (void *state) {
  concur_queue_destroy(&((cqueue *)state)->q);
}

static const concur_objtype queue_type = { "concur.Queue",
                                           concur_shobj_destroy, NULL };
static int queue_share (void *state, char *err, size_t errsize) {
  return concur_queue_share(&((cqueue *)state)->q, err, errsize);
}

static const concur_shclass queue_class = { &queue_type, CONCUR_SH_QUEUE,
                                            queue_release, queue_share };

#define checkqueue(L) ((cqueue *)concur_sync_selfstate(L, &queue_type))

/* ---- the decode slot --------------------------------------------------- */

typedef struct qslot {
  concur_buf buf;
  int busy;
} qslot;

#define SLOT "concur.QueueSlot"

static int slot_gc (lua_State *L) {
  qslot *s = luaL_checkudata(L, 1, SLOT);
  concur_buf_free(&s->buf);
  return 0;
}

/* Empties the slot's buffer after a decode, keeping a small one's memory
** for the next get. */
static void slot_clear (concur_buf *b) {
  if (b->cap > 4096) {
    concur_buf_free(b);
    return;
  }
  for (size_t i = 0; i < b->nobjs; i++) concur_obj_unref(b->objs[i]);
  b->nobjs = 0;
  b->len = 0;
}

static qslot *newslot (lua_State *L) {
  qslot *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SLOT);
  return s;
}

/* ---- constructor ------------------------------------------------------- */

static const char *const ORDERS[] = { "fifo", "lifo", "priority", NULL };

/*** Queue([maxsize]) or Queue{ maxsize = 0, order = "fifo" | "lifo" |
** "priority" } --> a new queue; maxsize 0 means unbounded */
static int queue_new (lua_State *L) {
  static const char *const opts[] = { "maxsize", "order", NULL };
  lua_Integer maxsize = 0;
  int order = CONCUR_FIFO;
  concur_shobj *o;
  cqueue *c;
  if (lua_type(L, 1) == LUA_TTABLE) {
    concur_checkoptions(L, 1, opts);
    if (lua_getfield(L, 1, "maxsize") != LUA_TNIL) {
      if (!lua_isinteger(L, -1))
        return concur_argerror(L, 1, "maxsize must be an integer");
      maxsize = lua_tointeger(L, -1);
    }
    if (lua_getfield(L, 1, "order") != LUA_TNIL) {
      const char *s = lua_tostring(L, -1);
      for (order = 0; s && ORDERS[order]; order++)
        if (lua_type(L, -1) == LUA_TSTRING && strcmp(s, ORDERS[order]) == 0)
          break;
      if (s == NULL || ORDERS[order] == NULL)
        return concur_argerror(L, 1,
                               "order must be 'fifo', 'lifo' or 'priority'");
    }
  }
  else if (!lua_isnoneornil(L, 1))
    maxsize = concur_checkinteger(L, 1);
  if (maxsize < 0) return concur_argerror(L, 1, "maxsize must be >= 0");
  o = concur_sync_new(L, &queue_class, sizeof *c);
  c = o->state;
  c->order = order;
  return concur_sync_shmade(L, o, concur_queue_init(&c->q, order,
                            (size_t)maxsize));
}

/* ---- put --------------------------------------------------------------- */

/* The priority of the value at 2: a number, or a table's field 'priority'. */
static double checkprio (lua_State *L) {
  double p = 0;
  int t = lua_type(L, 2);
  if (t == LUA_TNUMBER) p = lua_tonumber(L, 2);
  else if (t == LUA_TTABLE && lua_getfield(L, 2, "priority") == LUA_TNUMBER) {
    p = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  else
    concur_argerror(L, 2, lua_pushfstring(L, "number or table with a numeric "
                    "field 'priority' expected, got %s", luaL_typename(L, 2)));
  if (p != p) concur_argerror(L, 2, "priority is NaN");
  return p;
}

/* put and try_put: encode, then hand the bytes to the queue. */
static int q_put (lua_State *L, cqueue *c, double deadline, int try) {
  concur_buf b = CONCUR_BUF_INIT;
  double prio = 0;
  int rc;
  if (lua_gettop(L) < 2) return concur_argerror(L, 2, "value expected");
  if (c->order == CONCUR_PRIORITY) prio = checkprio(L);
  concur_encode(L, 2, 1, &b, "value");
  rc = concur_queue_put(&c->q, &b, prio, deadline);
  if (rc == CONCUR_OK) {
    if (!try) return 0;
    lua_pushboolean(L, 1);
    return 1;
  }
  concur_buf_free(&b);
  switch (rc) {
    case CONCUR_QCLOSED: return concur_error(L, "closed", "queue is closed");
    case CONCUR_QLOCAL:
      return concur_error(L, "transfer", "this Queue is shared with another "
                          "process: it cannot take an object that cannot "
                          "leave this one (a Future, a fetch Client...)");
    case CONCUR_QNOMEM:
      return concur_error(L, "limit", "not enough memory (the queue's shared "
                          "memory is full: see CONCUR_SHMSIZE)");
    case CONCUR_TIMEDOUT:
      if (try) {
        lua_pushboolean(L, 0);
        return 1;
      }
      /* FALLTHROUGH */
    default: return concur_raisewait(L, rc, "put");
  }
}

/*** q:put(v [, timeout]): waits while the queue is full; raises "timeout"
** or "closed" */
static int queue_put (lua_State *L) {
  cqueue *c = checkqueue(L);
  return q_put(L, c, concur_sync_deadline(L, 3), 0);
}

/*** q:try_put(v) --> false when full; raises "closed" */
static int queue_tryput (lua_State *L) {
  cqueue *c = checkqueue(L);
  lua_settop(L, 2);
  return q_put(L, c, 0.0, 1);
}

/* ---- get --------------------------------------------------------------- */

enum { GET, TRYGET, ITER };

/* get, try_get and the items() iterator. Methods and the iterator all have
** the slot as upvalue 2. */
static int q_get (lua_State *L, cqueue *c, double deadline, int mode) {
  qslot *s = lua_touserdata(L, lua_upvalueindex(2));
  int box = 0, rc, n;
  if (s->busy) {   /* nested in another get's decode: a slot of our own */
    s = newslot(L);
    box = lua_gettop(L);
  }
  s->busy = 1;
  rc = concur_queue_get(&c->q, &s->buf, deadline);
  if (rc != CONCUR_OK) {
    s->busy = 0;
    if (rc == CONCUR_QFOREIGN)
      return concur_error(L, "transfer", "the item taken held an object that "
                          "cannot leave the process that put it (it was "
                          "dropped)");
    if (rc == CONCUR_QNOMEM)
      return concur_error(L, "limit", "not enough memory for the item");
    if (rc == CONCUR_QCLOSED) {
      if (mode == ITER) return 0;
      return concur_error(L, "closed", "queue is closed");
    }
    if (rc == CONCUR_TIMEDOUT && mode == TRYGET) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return concur_raisewait(L, rc, "get");
  }
  if (mode == TRYGET) lua_pushboolean(L, 1);
  n = concur_decode(L, s->buf.data, s->buf.len, s->buf.objs, s->buf.nobjs);
  slot_clear(&s->buf);
  s->busy = 0;
  if (box) lua_remove(L, box);
  return n + (mode == TRYGET);
}

/*** q:get([timeout]) --> v; waits while empty; raises "timeout", or
** "closed" once the queue is closed and drained */
static int queue_get (lua_State *L) {
  cqueue *c = checkqueue(L);
  return q_get(L, c, concur_sync_deadline(L, 2), GET);
}

/*** q:try_get() --> true, v | false when empty; raises "closed" once the
** queue is closed and drained */
static int queue_tryget (lua_State *L) {
  return q_get(L, checkqueue(L), 0.0, TRYGET);
}

static int queue_next (lua_State *L) {
  return q_get(L, checkqueue(L), CONCUR_NODEADLINE, ITER);
}

/*** q:items() --> iterator: for v in q:items() do ... end, taking items
** until the queue is closed and drained */
static int queue_items (lua_State *L) {
  checkqueue(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushcclosure(L, queue_next, 2);
  lua_pushvalue(L, 1);
  return 2;
}

/* ---- the rest ---------------------------------------------------------- */

/*** q:size() --> number of items (a hint: it may change at once) */
static int queue_size (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)concur_queue_size(&checkqueue(L)->q));
  return 1;
}

/*** q:empty() --> boolean */
static int queue_empty (lua_State *L) {
  lua_pushboolean(L, concur_queue_size(&checkqueue(L)->q) == 0);
  return 1;
}

/*** q:full() --> boolean (never true when unbounded) */
static int queue_full (lua_State *L) {
  lua_pushboolean(L, concur_queue_full(&checkqueue(L)->q));
  return 1;
}

/*** q:close(): no more puts; wakes every blocked put (raises "closed") and
** get (which drains what is left, then raises "closed") */
static int queue_close (lua_State *L) {
  concur_queue_close(&checkqueue(L)->q);
  return 0;
}

/*** q:closed() --> boolean */
static int queue_closed (lua_State *L) {
  lua_pushboolean(L, concur_queue_isclosed(&checkqueue(L)->q));
  return 1;
}

/*** q:task_done(): one item taken is fully processed; raises "argument"
** when called more often than items were put */
static int queue_taskdone (lua_State *L) {
  if (concur_queue_taskdone(&checkqueue(L)->q) != 0)
    return concur_error(L, "argument", "task_done() called too many times");
  return 0;
}

/*** q:join([timeout]) --> true once every item put was task_done'd, false
** when the timeout passed first */
static int queue_join (lua_State *L) {
  cqueue *c = checkqueue(L);
  return concur_sync_result(L, concur_queue_join(&c->q,
                              concur_sync_deadline(L, 2)), "join");
}

static const luaL_Reg queue_methods[] = {
  {"put", queue_put},
  {"try_put", queue_tryput},
  {"get", queue_get},
  {"try_get", queue_tryget},
  {"items", queue_items},
  {"size", queue_size},
  {"empty", queue_empty},
  {"full", queue_full},
  {"close", queue_close},
  {"closed", queue_closed},
  {"task_done", queue_taskdone},
  {"join", queue_join},
  {NULL, NULL}
};

void concur_queue_open (lua_State *L) {
  if (luaL_newmetatable(L, SLOT)) {
    lua_pushcfunction(L, slot_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  newslot(L);   /* this state's slot: upvalue 2 of every method */
  concur_shclass_register(&queue_class);
  concur_sync_class(L, &queue_type, queue_methods, NULL, 1);
  lua_pushcfunction(L, queue_new);
  lua_setfield(L, -2, "Queue");
}
