/*
** concur.c: the concur.core module: library-wide set-up, small functions
** (clock, sleep, the logging primitives, CPU count), and the list of its parts.
**
** Library-wide set-up runs once per process (pthread_once): a random key
** for the codec's bytecode hash, and pinning this shared library in memory
** (RTLD_NODELETE), so a thread that outlives the state that loaded concur
** (a detached straggler at exit) never runs unmapped code.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include "concur.h"
#include "core/future.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

/*
** Logging: lua/concur/log.lua formats the lines and keeps each state's
** sink; here are the process-wide level and the default sink's write.
** log_level is one process-wide threshold (1 debug, 2 info, 3 warn,
** 4 error), read from CONCUR_LOG_LEVEL when the process loads concur.
*/
static _Atomic int log_level = 2;

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

static void log_init (void) {
  const char *env = getenv("CONCUR_LOG_LEVEL");
  for (int i = 0; env && log_levels[i]; i++)
    if (strcmp(env, log_levels[i]) == 0) log_level = i + 1;
}

static void global_init (void) {
  unsigned char key[16];
  const char *env = getenv("CONCUR_HASHKEY");   /* set for child processes */
  Dl_info info;
  if (env && strlen(env) == 32) {
    for (int i = 0; i < 16; i++) {
      unsigned int x;
      sscanf(env + 2 * i, "%2x", &x);
      key[i] = (unsigned char)x;
    }
  }
  else if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
    struct timespec ts;   /* no entropy: still unpredictable enough to */
    clock_gettime(CLOCK_REALTIME, &ts);   /* tell our bytes from others' */
    memcpy(key, &ts, sizeof key < sizeof ts ? sizeof key : sizeof ts);
    key[15] ^= (unsigned char)getpid();
  }
  concur_hash_setkey(key);
  log_init();
  if (dladdr((void *)global_init, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

/*** concur.cpu_count() --> number of online CPUs */
static int core_cpu_count (lua_State *L) {
  lua_pushinteger(L, concur_cpu_count());
  return 1;
}

/*** concur.monotonic() --> seconds on a monotonic clock */
static int core_monotonic (lua_State *L) {
  lua_pushnumber(L, concur_now());
  return 1;
}

/*** concur.sleep(seconds): blocks this thread only; a cancelled task
** wakes up (and raises). A negative time returns at once, as every other
** negative timeout in concur means "don't wait" (Python's time.sleep
** raises instead); NaN raises kind "argument". */
static int core_sleep (lua_State *L) {
  lua_Number s = concur_checknumber(L, 1);
  int rc;
  if (s != s) return concur_argerror(L, 1, "seconds is NaN");
  if (s < 0) s = 0;
  s = concur_deadline(s);   /* none: for ever */
  CONCUR_WAIT(L, rc, concur_sleep_until(s));
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "sleep");
  return 0;
}

/*** core.log_level([n]) --> the threshold (1..4) before the call; n sets it */
static int core_log_level (lua_State *L) {
  lua_pushinteger(L, log_level);
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = concur_checkinteger(L, 1);
    if (n < 1 || n > 4) return concur_argerror(L, 1, "log level must be 1..4");
    log_level = (int)n;
  }
  return 1;
}

/*** core.log_write(line): writes the string to stderr with one write under
** a process-wide mutex, so lines from many threads never interleave;
** stdout is flushed first, so a line keeps its place among printed ones. */
static int core_log_write (lua_State *L) {
  size_t len;
  const char *s = concur_checklstring(L, 1, &len);
  pthread_mutex_lock(&log_mu);
  fflush(stdout);
  while (len > 0) {
    ssize_t w = write(STDERR_FILENO, s, len);
    if (w <= 0) break;
    s += w;
    len -= (size_t)w;
  }
  pthread_mutex_unlock(&log_mu);
  return 0;
}

/*** core.isatty(fd) --> boolean */
static int core_isatty (lua_State *L) {
  lua_pushboolean(L, isatty((int)concur_checkinteger(L, 1)));
  return 1;
}

/* Seconds on the coarse monotonic clock: a few nanoseconds to read, good
** to a few milliseconds, which is all a progress count needs. */
static double coarse_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define MAPCHUNK_FLUSH 0.02   /* seconds between adds to the count */

/* The state of a chunk's loop, kept outside it: an error in an item ends
** the loop, and the chunk then knows where. */
typedef struct chunkstate {
  lua_Integer i, n;          /* the item running; the number of items */
  lua_Integer pending;       /* items done since the last add to the count */
  double last;               /* when that add was */
  int star, counted;
} chunkstate;

/* In the loop's frame (1: the state, 2: fn, 3: items, 4: the counter, a
** concur.Value, 5: its add method, 6: the results): adds the items done
** since the last add to the counter. */
static void mapchunk_flush (lua_State *L, chunkstate *cs) {
  lua_pushvalue(L, 5);
  lua_pushvalue(L, 4);
  lua_pushinteger(L, cs->pending);
  lua_call(L, 2, 0);
  cs->pending = 0;
}

/* Pushes the arguments of item i (the item itself, or with 'star' the
** values of the table it is: 1..n, or 1..#item); returns their number. */
static int mapchunk_args (lua_State *L, lua_Integer i, int star) {
  lua_Integer n;
  if (lua_rawgeti(L, 3, i) != LUA_TTABLE || !star) return 1;
  if (lua_getfield(L, -1, "n") == LUA_TNUMBER && lua_isinteger(L, -1))
    n = lua_tointeger(L, -1);
  else n = (lua_Integer)lua_rawlen(L, -2);
  lua_pop(L, 1);
  if (n < 0 || n > 250 || !lua_checkstack(L, (int)n + LUA_MINSTACK))
    return concur_error(L, "limit", "item %d has too many values to unpack "
                        "(%d)", (int)i, (int)n);
  for (lua_Integer k = 1; k <= n; k++) lua_rawgeti(L, -(int)k, k);
  lua_remove(L, -1 - (int)n);
  return (int)n;
}

/* The loop over the items from cs->i on (the frame of mapchunk_flush). */
static int mapchunk_loop (lua_State *L) {
  chunkstate *cs = lua_touserdata(L, 1);
  for (; cs->i <= cs->n; cs->i++) {
    lua_pushvalue(L, 2);
    lua_call(L, mapchunk_args(L, cs->i, cs->star), 1);
    lua_rawseti(L, 6, cs->i);
    if (cs->counted) {
      double now = coarse_now();
      cs->pending++;
      if (now - cs->last >= MAPCHUNK_FLUSH) {
        mapchunk_flush(L, cs);
        cs->last = now;
      }
    }
  }
  if (cs->counted && cs->pending > 0) mapchunk_flush(L, cs);
  return 0;
}

/* Pushes the loop and its arguments for a call with 6 of them (the stack
** of core_mapchunk: 1 fn, 2 items, 3 counter, 5 results, 6 add). */
static void mapchunk_push (lua_State *L, chunkstate *cs) {
  lua_pushcfunction(L, mapchunk_loop);
  lua_pushlightuserdata(L, cs);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 6);
  lua_pushvalue(L, 5);
}

/* The message handler of the loop: the task error object of the error
** (errors.c), with the traceback where it was raised. */
static int mapchunk_msgh (lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  concur_pushtaskerror(L, 1, 2);
  return 1;
}

/*** core.mapchunk(fn, items [, counter [, star [, errors]]]) --> array of
** fn(item) (first results): the task that map, imap and starmap send for a
** chunk of items. With a counter (a concur.Value), the items done are
** added to it as they finish, at most every MAPCHUNK_FLUSH seconds and at
** the end, for a progress display; without one the loop reads no clock.
** 'star': each item is a table of arguments, fn(table.unpack(item, 1,
** item.n or #item)). 'errors': nil, an error fails the whole chunk;
** "raise", the chunk stops at the first item that raises and returns the
** results before it, its index and its error object (errors.c's task
** error); "return", each failed item's error object takes its place among
** the results. Interrupts (cancel, timeout) are never caught. One
** protected call runs the loop, so an item costs no pcall of its own. */
static int core_mapchunk (lua_State *L) {
  chunkstate cs;
  int keep = 0, protect = 0;
  concur_checktype(L, 1, LUA_TFUNCTION);
  concur_checktype(L, 2, LUA_TTABLE);
  memset(&cs, 0, sizeof cs);
  cs.counted = !lua_isnoneornil(L, 3);
  cs.star = lua_toboolean(L, 4);
  if (!lua_isnoneornil(L, 5)) {
    const char *e = concur_checklstring(L, 5, NULL);
    protect = 1;
    keep = strcmp(e, "return") == 0;
    if (!keep && strcmp(e, "raise") != 0)
      return concur_argerror(L, 5, "errors must be 'raise' or 'return'");
  }
  cs.n = (lua_Integer)lua_rawlen(L, 2);
  cs.i = 1;
  lua_settop(L, 3);
  lua_pushcfunction(L, mapchunk_msgh);       /* 4 */
  lua_createtable(L, (int)cs.n, 0);          /* 5: the results */
  concur_markdense(L, 5);
  if (cs.counted) {
    if (lua_getfield(L, 3, "add") != LUA_TFUNCTION)   /* 6: the counter's add */
      return concur_argerror(L, 3, "a concur.Value expected");
    cs.last = coarse_now();
  }
  else lua_pushnil(L);
  for (;;) {
    int rc;
    if (!protect) {
      mapchunk_push(L, &cs);
      lua_call(L, 6, 0);
      break;
    }
    mapchunk_push(L, &cs);
    rc = lua_pcall(L, 6, 0, 4);
    if (rc == LUA_OK) break;
    if (rc != LUA_ERRRUN || !concur_iserror(L, -1, NULL)
        || concur_isinterrupt(L, -1))
      return lua_error(L);   /* an interrupt, or no memory to report it */
    cs.pending++;            /* the failed item is done too */
    if (!keep) {             /* the results, the item's index, its error */
      lua_Integer bad = cs.i;
      if (cs.counted) {      /* a loop past the end only adds the count */
        cs.i = cs.n + 1;
        mapchunk_push(L, &cs);
        lua_call(L, 6, 0);
      }
      lua_pushvalue(L, 5);
      lua_pushinteger(L, bad);
      lua_rotate(L, -3, -1);
      return 3;
    }
    lua_rawseti(L, 5, cs.i);
    cs.i++;
  }
  lua_settop(L, 5);
  return 1;
}

/*** core.methods(classname) --> the method table of a concur class */
static int core_methods (lua_State *L) {
  const char *name = concur_checklstring(L, 1, NULL);
  if (luaL_getmetatable(L, name) != LUA_TTABLE)
    return concur_argerror(L, 1, "no such class");
  if (lua_getfield(L, -1, "methods") == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  lua_getfield(L, -1, "__index");
  return 1;
}

/*** core.encode(...) --> string; core.decode(s) --> values: the codec on
** plain strings (no shared objects), for tests and tools. */
static int core_encode (lua_State *L) {
  concur_buf b = CONCUR_BUF_INIT;
  concur_encode(L, 1, lua_gettop(L), &b, "value[]");
  if (b.nobjs) {
    concur_buf_free(&b);
    return concur_error(L, "transfer", "shared objects cannot be encoded to a string");
  }
  lua_pushlstring(L, b.data, b.len);
  concur_buf_free(&b);
  return 1;
}

static int core_decode (lua_State *L) {
  size_t len;
  const char *s = concur_checklstring(L, 1, &len);
  lua_settop(L, 1);
  return concur_decode(L, s, len, NULL, 0);
}

/*** core.slice(src, i, j [, dst [, at]]) --> dst: table.move(src, i, j,
** at or 1, dst); raw reads and writes when src has no metatable and dst is
** new or has none (map's chunks and results, without the growth and the
** metamethod checks of table.move into {}). With neither dst nor at: map's
** chunk, which only travels to a pool task: a view of src's items that the
** encoder sends as their table (concur_pushview) when src has no metatable,
** else a new table made with room for the items and marked dense
** (concur.h). */
static int core_slice (lua_State *L) {
  lua_Integer i = luaL_checkinteger(L, 2), j = luaL_checkinteger(L, 3), at;
  int raw;
  luaL_checktype(L, 1, LUA_TTABLE);
  at = luaL_optinteger(L, 5, 1);
  lua_settop(L, 5);
  if (lua_isnil(L, 4) && lua_isnil(L, 5) && i >= 1) {
    int meta = lua_getmetatable(L, 1);
    lua_settop(L, 5);
    if (!meta) {
      concur_pushview(L, 1, i, j);   /* map's chunk: copied as it is sent */
      return 1;
    }
  }
  if (lua_isnoneornil(L, 4)) {
    lua_Integer n = j >= i ? j - i + 1 : 0;
    lua_settop(L, 3);
    lua_createtable(L, n < INT_MAX && at == 1 ? (int)n : 0, 0);
    raw = 1;
    if (at == 1 && n < INT_MAX) concur_markdense(L, 4);
  }
  else {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);
    raw = !lua_getmetatable(L, 4);
    lua_settop(L, 4);
  }
  if (j < i) return 1;
  luaL_argcheck(L, i > 0 || j < LUA_MAXINTEGER + i, 3, "too many elements to move");
  luaL_argcheck(L, at <= LUA_MAXINTEGER - (j - i), 5, "destination wrap around");
  if (lua_getmetatable(L, 1)) raw = 0;
  lua_settop(L, 4);
  if (raw)
    for (lua_Integer k = 0; k <= j - i; k++) {
      lua_rawgeti(L, 1, i + k);
      lua_rawseti(L, 4, at + k);
    }
  else
    for (lua_Integer k = 0; k <= j - i; k++) {
      lua_geti(L, 1, i + k);
      lua_seti(L, 4, at + k);
    }
  return 1;
}

/*** core.array(n) --> an empty table with room for n array items */
static int core_array (lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_createtable(L, n > 0 && n < INT_MAX ? (int)n : 0, 0);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"slice", core_slice},
  {"array", core_array},
  {"cpu_count", core_cpu_count},
  {"monotonic", core_monotonic},
  {"sleep", core_sleep},
  {"isatty", core_isatty},
  {"mapchunk", core_mapchunk},
  {"methods", core_methods},
  {"log_level", core_log_level},
  {"log_write", core_log_write},
  {"encode", core_encode},
  {"decode", core_decode},
  {NULL, NULL}
};

/* Every part of the module, in the order they are opened (concur.Error
** first: the others raise it). */
static void (*const parts[]) (lua_State *L) = {
  concur_errors_open, concur_codec_open, concur_future_open, concur_hub_open,
  concur_threadpool_open, concur_thread_open, concur_shared_open,
  concur_lock_open, concur_event_open, concur_semaphore_open,
  concur_barrier_open, concur_value_open, concur_queue_open,
  concur_ratelimiter_open, concur_map_open, concur_array_open,
  concur_bigint_open, concur_fetch_open, concur_url_open, concur_html_open,
  concur_frontier_open,
  concur_processpool_open, concur_procworker_open,
  concur_redis_open, concur_clusterkey_open, concur_clusterpool_open,
  concur_clusternode_open, concur_clusterlimiter_open, concur_clusterlimits_open,
};

CONCUR_API int luaopen_concur_core (lua_State *L) {
  pthread_once(&once, global_init);
  luaL_newlib(L, funcs);
  lua_pushliteral(L, CONCUR_VERSION);
  lua_setfield(L, -2, "_VERSION");
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) parts[i](L);
  return 1;
}
