/*
** concur.h: what the Lua bindings share: errors, proxies of shared objects,
** the value codec, and the per-state bookkeeping. Each binding file
** (codec.c, future.c, pool.c, ...) has an open function called by core.c.
*/
#ifndef CONCUR_H
#define CONCUR_H

#include <lua.h>
#include <lauxlib.h>
#include "core/obj.h"
#include "core/wire.h"
#include "core/clock.h"

#define CONCUR_VERSION "concur 0.1.0"

#if defined(__GNUC__)
#define CONCUR_API __attribute__((visibility("default")))
#define CONCUR_NORETURN __attribute__((noreturn))
#else
#define CONCUR_API
#define CONCUR_NORETURN
#endif

CONCUR_API int luaopen_concur_core (lua_State *L);

/* ---- errors (errors.c) ---------------------------------------------------
** concur raises tables with metatable concur.Error: { kind, message, ... }.
*/
void concur_pusherror (lua_State *L, const char *kind, const char *msg);
int concur_error (lua_State *L, const char *kind, const char *fmt, ...);
int concur_argerror (lua_State *L, int arg, const char *extramsg);
int concur_typeerror (lua_State *L, int arg, const char *tname);
/* luaL_check* equivalents that raise kind "argument" */
lua_Integer concur_checkinteger (lua_State *L, int arg);
lua_Number concur_checknumber (lua_State *L, int arg);
const char *concur_checklstring (lua_State *L, int arg, size_t *len);
void concur_checktype (lua_State *L, int arg, int t);
/* optional timeout in seconds at 'arg': nil -> CONCUR_NODEADLINE, negative
** -> argument error; returns the absolute deadline */
double concur_optdeadline (lua_State *L, int arg);
/* raises the error for a wait result (timeout / cancelled) */
int concur_raisewait (lua_State *L, int rc, const char *what);
/* checks that the table at 'arg' has only the given option names */
void concur_checkoptions (lua_State *L, int arg, const char *const names[]);
void concur_errors_open (lua_State *L);

/* ---- shared objects (object.c) --------------------------------------------
** A proxy is a full userdata holding one reference. Its metatable, created by
** concur_newclass, has __name, __index (methods), __gc/__close (drop the
** reference) and __concur (light userdata: the concur_objtype), which the
** codec uses to send the object by reference.
*/
typedef struct concur_proxy { concur_obj *o; } concur_proxy;

void concur_newclass (lua_State *L, const concur_objtype *t,
                      const luaL_Reg *methods, const luaL_Reg *metamethods);
void concur_pushobj (lua_State *L, concur_obj *o);  /* takes a new ref */
/* checks a proxy of type t; raises "argument" on a wrong type and "closed"
** when the proxy was closed */
concur_obj *concur_checkobj (lua_State *L, int arg, const concur_objtype *t);
concur_obj *concur_testobj (lua_State *L, int arg, const concur_objtype *t);

/* ---- codec (codec.c) ------------------------------------------------------
** Encodes n values from the stack at 'first' into 'out', which must be empty
** (CONCUR_BUF_INIT); 'root' names them in error paths: "value" -> "value.cb",
** "args[]" -> "args[2].cb". Raises kind "transfer" or "limit"; on error
** 'out' is left empty.
*/
void concur_encode (lua_State *L, int first, int n, concur_buf *out,
                    const char *root);
/* Pushes the values in b; returns their number. Raises kind "transfer" on
** malformed bytes (never crashes, whatever the bytes). */
int concur_decode (lua_State *L, const char *p, size_t len,
                   concur_obj *const *objs, size_t nobjs);

/* Userdata copied by value (bigint): its metatable has __concur_value, a
** light userdata pointing to this. */
#define CONCUR_VALUE_CLOSED (-2)
typedef struct concur_valtype {
  unsigned char tag;              /* unique, registered once */
  /* appends the value at idx to b; returns 0, -1 (out of memory), or
  ** CONCUR_VALUE_CLOSED (a closed value, refused with kind "transfer") */
  int (*encode) (lua_State *L, int idx, concur_buf *b);
  /* pushes a value from n bytes; returns 0, or -1 if the bytes are bad */
  int (*decode) (lua_State *L, const char *p, size_t n);
} concur_valtype;
void concur_register_valtype (const concur_valtype *vt);
void concur_codec_open (lua_State *L);

/* ---- tasks (task.c) --------------------------------------------------------
** A task is `fn, ...` (the values from 'arg' to the top) or a table
** `{ fn, args = {...}, ... }` whose fields must be in 'options'; it is
** encoded into 'task' (empty). Read any other option before: this one may
** leave the stack as it was at the call.
*/
void concur_checktask (lua_State *L, int arg, const char *const options[],
                       concur_buf *task);
/* the 'timeout' option of a task table at 'arg' (seconds), or -1 */
double concur_tasktimeout (lua_State *L, int arg);
/* 'initializer' and 'initargs' of the options table at 'arg', encoded into
** 'init' (left empty without an initializer) */
void concur_checkinit (lua_State *L, int arg, concur_buf *init);
/* shutdown{ wait = true, cancel_pending = false } at 'arg' */
void concur_checkshutdown (lua_State *L, int arg, int *wait, int *cancel);
/* Pushes an executor's stats table from workers, pending, running,
** completed, failed, cancelled; returns 1. */
int concur_pushstats (lua_State *L, const long v[6]);
/* __gc of an executor: takes the object from the proxy at 1, stops it
** (never blocking) and drops the proxy's reference; returns 0. */
int concur_executor_gc (lua_State *L, void (*stop) (concur_obj *o));

/* ---- states (state.c) ----------------------------------------------------- */
/* A new state for a worker: standard libraries, the creator's package.path
** and cpath (given), concur loaded. Returns NULL when out of memory. */
lua_State *concur_newstate (const char *path, const char *cpath);
/* copies the current package.path and cpath into malloc'd strings */
void concur_getpaths (lua_State *L, char **path, char **cpath);

/* ---- the parts: each adds its fields to the module table at the top ---- */
void concur_future_open (lua_State *L);
void concur_pool_open (lua_State *L);
void concur_thread_open (lua_State *L);
void concur_sync_open (lua_State *L);      /* sync.c, queue.c, ratelimit */
void concur_bigint_open (lua_State *L);    /* bigint.c */
void concur_fetch_open (lua_State *L);     /* fetch.c */

/* ---- the parts: each adds its fields to the module table at the top ---- */
void concur_future_open (lua_State *L);
void concur_pool_open (lua_State *L);
void concur_thread_open (lua_State *L);
void concur_sync_open (lua_State *L);      /* sync.c, queue.c, ratelimit */
void concur_bigint_open (lua_State *L);    /* bigint.c */
void concur_fetch_open (lua_State *L);     /* fetch.c */
void concur_proc_open (lua_State *L);      /* proc.c, proc_worker.c */

#endif
