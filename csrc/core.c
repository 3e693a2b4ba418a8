/*
** core.c: the concur.core module: library-wide set-up, small functions
** (clock, sleep, logging, CPU count), and the open function of each part.
**
** Library-wide set-up runs once per process (pthread_once): a random key
** for the codec's bytecode hash, and pinning this shared library in memory
** (RTLD_NODELETE), so a thread that outlives the state that loaded concur
** (a detached straggler at exit) never runs unmapped code.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include "concur.h"
#include "core/future.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

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
** wakes up (and raises). */
static int core_sleep (lua_State *L) {
  lua_Number s = concur_checknumber(L, 1);
  int rc;
  if (!(s >= 0)) return concur_argerror(L, 1, "seconds must be a non-negative number");
  rc = concur_sleep_until(concur_now() + s);
  if (rc != CONCUR_OK) return concur_raisewait(L, rc, "sleep");
  return 0;
}

/*** concur.log(...): prints its arguments like print, as one line tagged
** with the thread's name; lines from many threads never interleave. */
static int core_log (lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  lua_getfield(L, lua_upvalueindex(1), "thread_name");
  lua_call(L, 0, 1);
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '[');
  lua_pushvalue(L, n + 1);
  luaL_addvalue(&b);
  luaL_addstring(&b, "] ");
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    pthread_mutex_lock(&log_mu);
    fflush(stdout);
    while (len > 0) {
      ssize_t w = write(STDOUT_FILENO, s, len);
      if (w <= 0) break;
      s += w;
      len -= (size_t)w;
    }
    pthread_mutex_unlock(&log_mu);
  }
  return 0;
}

/*** core.isatty(fd) --> boolean */
static int core_isatty (lua_State *L) {
  lua_pushboolean(L, isatty((int)concur_checkinteger(L, 1)));
  return 1;
}

/*** core.mapchunk(fn, items) --> array of fn(item) (first results): the
** task that map and imap send for a chunk of items. */
static int core_mapchunk (lua_State *L) {
  lua_Integer n;
  concur_checktype(L, 1, LUA_TFUNCTION);
  concur_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushvalue(L, 1);
    lua_rawgeti(L, 2, i);
    lua_call(L, 1, 1);
    lua_rawseti(L, 3, i);
  }
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

static const luaL_Reg funcs[] = {
  {"cpu_count", core_cpu_count},
  {"monotonic", core_monotonic},
  {"sleep", core_sleep},
  {"isatty", core_isatty},
  {"mapchunk", core_mapchunk},
  {"methods", core_methods},
  {"encode", core_encode},
  {"decode", core_decode},
  {NULL, NULL}
};

CONCUR_API int luaopen_concur_core (lua_State *L) {
  pthread_once(&once, global_init);
  luaL_newlib(L, funcs);
  lua_pushliteral(L, CONCUR_VERSION);
  lua_setfield(L, -2, "_VERSION");
  concur_errors_open(L);
  concur_codec_open(L);
  concur_future_open(L);
  concur_pool_open(L);
  concur_thread_open(L);
  concur_sync_open(L);
  concur_bigint_open(L);
  concur_fetch_open(L);
  concur_proc_open(L);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, core_log, 1);
  lua_setfield(L, -2, "log");
  return 1;
}
