/*
** queue.c: concur.Queue, a closable, optionally bounded FIFO, LIFO or
** priority queue shared by reference between threads and tasks.
**
** Values cross by copy: put encodes its value (codec) before the queue's
** mutex is taken, and get decodes after it is dropped, so no Lua code, error
** or allocation ever runs under the mutex (core/queue.c). Shared objects in
** a value (a Lock, another Queue) travel by reference inside the item.
**
** The item a get takes is decoded (from the item itself, or from a copy in
** a per-state slot: a userdata, upvalue 2 of the methods, whose buffer is
** kept for the next get) in protected mode; the item leaves the queue only
** once that decode succeeded, and is put back in its place when it failed.
** A get nested in such a decode (a finalizer that calls get) finds the slot
** busy and uses a fresh one. Nil, booleans and numbers, which decode
** without raising, skip the protected call; they and short strings skip
** the encoder too.
**
** NOTE: a nil taken by items() ends the for loop (Lua's rule): put no nil in
** a queue that is read with items().
*/
#include <stdlib.h>
#include <string.h>
#include "shared.h"
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

#define checkqueue(L) ((cqueue *)concur_shared_selfstate(L, &queue_type))

/* ---- the decode slot --------------------------------------------------- */

typedef struct qslot {
  concur_buf buf;
  int busy;
} qslot;

#define SLOT "concur.QueueSlot"

static int slot_gc (lua_State *L) {
  qslot *s = luaL_testudata(L, 1, SLOT);
  if (s == NULL || lua_rawlen(L, 1) != sizeof *s) return concur_typeerror(L, 1, SLOT);
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
** "priority" } --> a new queue; maxsize 0 or less means unbounded (as
** Python's queue.Queue) */
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
  if (maxsize < 0) maxsize = 0;   /* as Python: <= 0 is unbounded */
  o = concur_shared_new(L, &queue_class, sizeof *c);
  c = o->state;
  c->order = order;
  return concur_shared_made(L, o, concur_queue_init(&c->q, order,
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

/* The codec's bytes (core/wire.h) of a value that needs no encoder: nil,
** a boolean, a number or a short string, written into b (CONCUR_QL_SMALL
** bytes); their count, or 0 when the value needs the encoder. */
static size_t quick_encode (lua_State *L, int idx, char *b) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL: b[0] = 'n'; return 1;
    case LUA_TBOOLEAN: b[0] = lua_toboolean(L, idx) ? 't' : 'f'; return 1;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        b[0] = 'i';
        memcpy(b + 1, &v, 8);
      }
      else {
        lua_Number v = lua_tonumber(L, idx);
        b[0] = 'd';
        memcpy(b + 1, &v, 8);
      }
      return 9;
    case LUA_TSTRING: {
      size_t len;
      const char *str = lua_tolstring(L, idx, &len);
      if (len > CONCUR_QL_SMALL - 2) return 0;   /* 's', a one-byte varint */
      b[0] = 's';
      b[1] = (char)len;
      memcpy(b + 2, str, len);
      return len + 2;
    }
    default: return 0;
  }
}

/* put and try_put: encode, then hand the bytes to the queue; a first
** attempt does not wait (and needs no watch: concur.h), a second one, when
** the first would have to, does. */
static int q_put (lua_State *L, cqueue *c, double deadline, int try) {
  concur_buf b = CONCUR_BUF_INIT;
  char small[CONCUR_QL_SMALL];
  size_t n;
  double prio = 0;
  int rc;
  if (lua_gettop(L) < 2) return concur_argerror(L, 2, "value expected");
  if (c->order == CONCUR_PRIORITY) prio = checkprio(L);
  if ((n = quick_encode(L, 2, small)) > 0) {
    rc = concur_queue_putbytes(&c->q, small, n, prio, 0.0);
    if (rc == CONCUR_TIMEDOUT && deadline != 0.0)
      CONCUR_WAIT(L, rc, concur_queue_putbytes(&c->q, small, n, prio, deadline));
  }
  else {
    concur_encode(L, 2, 1, &b, "value");
    rc = concur_queue_put(&c->q, &b, prio, 0.0);
    while (rc == CONCUR_TIMEDOUT && deadline != 0.0) {
      concur_watch w;  /* (a failed put leaves the item to us) */
      concur_watch_begin(L, &w);
      rc = concur_queue_put(&c->q, &b, prio, deadline);
      if (rc == CONCUR_INTERRUPTED) concur_buf_free(&b);   /* it may raise */
      if (!concur_watch_end(L, &w, rc)) break;
      concur_encode(L, 2, 1, &b, "value");
      rc = CONCUR_TIMEDOUT;    /* wait again */
    }
  }
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
    case CONCUR_QNOMEM: {
      char why[400] = "not enough memory";
      if (!atomic_load(&c->q.fast)) concur_shm_why(why, sizeof why);
      return concur_error(L, "limit", "cannot put the item: %s", why);
    }
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
  return q_put(L, c, concur_shared_deadline(L, 3), 0);
}

/*** q:try_put(v) --> false when full; raises "closed" */
static int queue_tryput (lua_State *L) {
  cqueue *c = checkqueue(L);
  lua_settop(L, 2);
  return q_put(L, c, 0.0, 1);
}

/* ---- get --------------------------------------------------------------- */

enum { GET, TRYGET, ITER };

/* In protected mode: decodes the taken item at 1. */
static int decode_item (lua_State *L) {
  concur_qtaken *t = lua_touserdata(L, 1);
  lua_settop(L, 0);
  return concur_decode(L, t->data, t->len, t->objs, t->nobjs);
}

/* Pushes the value of bytes that need no decoder (as quick_encode writes
** them, but a string: its push may raise); 0 when they need it. Pushes
** nothing that can raise. */
static int quick_decode (lua_State *L, const concur_qtaken *t) {
  if (t->nobjs) return 0;
  if (t->len == 1) {
    switch (t->data[0]) {
      case 'n': lua_pushnil(L); return 1;
      case 't': lua_pushboolean(L, 1); return 1;
      case 'f': lua_pushboolean(L, 0); return 1;
    }
  }
  else if (t->len == 9 && t->data[0] == 'i') {
    lua_Integer v;
    memcpy(&v, t->data + 1, 8);
    lua_pushinteger(L, v);
    return 1;
  }
  else if (t->len == 9 && t->data[0] == 'd') {
    lua_Number v;
    memcpy(&v, t->data + 1, 8);
    lua_pushnumber(L, v);
    return 1;
  }
  return 0;
}

/* The item could not be decoded here (the error is at the top): it was put
** back, so the error says so when it is concur's; raises it. */
static int decode_failed (lua_State *L, int putback) {
  if (lua_type(L, -1) == LUA_TTABLE && lua_checkstack(L, 3)) {
    if (lua_getfield(L, -1, "message") == LUA_TSTRING) {
      lua_pushstring(L, putback ? " (the item stays in the queue)"
                     : " (the item was lost: no memory to put it back)");
      lua_concat(L, 2);
      lua_setfield(L, -2, "message");
    }
    else lua_pop(L, 1);
  }
  return lua_error(L);
}

/* get, try_get and the items() iterator. Methods and the iterator all have
** the slot as upvalue 2. The item is decoded before it leaves the queue for
** good: one that cannot be decoded here (a module only the sender has, no
** memory) is put back in its place for other consumers. As put, a first
** attempt does not wait. */
static int q_get (lua_State *L, cqueue *c, double deadline, int mode) {
  qslot *s = lua_touserdata(L, lua_upvalueindex(2));
  int box = 0, rc, n, base;
  concur_qtaken taken;
  if (s->busy) {   /* nested in another get's decode: a slot of our own */
    s = newslot(L);
    box = lua_gettop(L);
  }
  s->busy = 1;     /* busy only while it holds data */
  rc = concur_queue_get(&c->q, &s->buf, 0.0, &taken);
  if (rc == CONCUR_TIMEDOUT && deadline != 0.0) {
    for (;;) {     /* CONCUR_WAIT */
      concur_watch w;
      concur_watch_begin(L, &w);
      s->busy = 1;
      rc = concur_queue_get(&c->q, &s->buf, deadline, &taken);
      if (rc != CONCUR_OK) s->busy = 0;
      if (!concur_watch_end(L, &w, rc)) break;
    }
  }
  if (rc != CONCUR_OK) {
    s->busy = 0;
    if (rc == CONCUR_QFOREIGN)
      return concur_error(L, "transfer", "the next item holds an object that "
                          "cannot leave the process that put it (it stays in "
                          "the queue)");
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
  /* NOTE: nothing here can raise until the item is committed or put back
  ** (a C function has LUA_MINSTACK slots; pushing a number, a boolean, a C
  ** function or a light userdata allocates nothing) */
  if (mode == TRYGET) lua_pushboolean(L, 1);
  if (quick_decode(L, &taken)) {
    concur_queue_commit(&taken);
    slot_clear(&s->buf);
    s->busy = 0;
    if (box) lua_remove(L, box);
    return 1 + (mode == TRYGET);
  }
  base = lua_gettop(L);
  lua_pushcfunction(L, decode_item);
  lua_pushlightuserdata(L, &taken);
  rc = lua_pcall(L, 1, LUA_MULTRET, 0);
  slot_clear(&s->buf);
  s->busy = 0;
  if (rc != LUA_OK)
    return decode_failed(L, concur_queue_unget(&c->q, &taken) == CONCUR_OK);
  concur_queue_commit(&taken);
  n = lua_gettop(L) - base;
  if (box) lua_remove(L, box);
  return n + (mode == TRYGET);
}

/*** q:get([timeout]) --> v; waits while empty; raises "timeout", or
** "closed" once the queue is closed and drained. An item that cannot be
** decoded in this state (kind "transfer": it names a module only its
** sender has...) stays in the queue, in its place, for other consumers. */
static int queue_get (lua_State *L) {
  cqueue *c = checkqueue(L);
  return q_get(L, c, concur_shared_deadline(L, 2), GET);
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
  double deadline = concur_shared_deadline(L, 2);
  int rc;
  CONCUR_WAIT(L, rc, concur_queue_join(&c->q, deadline));
  return concur_shared_result(L, rc, "join");
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

/* <close>: local q <close> = concur.Queue() closes the queue at the end of
** the scope (q:close()). */
static const luaL_Reg queue_meta[] = {
  {"__close", queue_close},
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
  concur_shared_class(L, &queue_type, queue_methods, queue_meta, 1);
  lua_pushcfunction(L, queue_new);
  lua_setfield(L, -2, "Queue");
}
