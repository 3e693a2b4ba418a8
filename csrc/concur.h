/*
** concur.h: what the Lua bindings share: errors, proxies of shared objects,
** the value codec, and the per-state bookkeeping. Each binding file
** (codec.c, future.c, threadpool.c, ...) has an open function, and concur.c
** calls them all from one list.
*/
#ifndef CONCUR_H
#define CONCUR_H

#include <lua.h>
#include <lauxlib.h>
#include "core/obj.h"
#include "core/wire.h"
#include "core/sys.h"
#include "core/wait.h"

#define CONCUR_VERSION "concur 0.2.0"

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
** -> now (a deadline already passed: the wait does not block, as Python's
** negative timeouts), NaN -> argument error; returns the absolute deadline */
double concur_optdeadline (lua_State *L, int arg);
/* raises the error for a wait result (timeout / cancelled) */
int concur_raisewait (lua_State *L, int rc, const char *what);
/* Whether the value at idx is a concur.Error (of that kind, unless NULL). */
int concur_iserror (lua_State *L, int idx, const char *kind);
/* Whether it is the error concur raises to stop a task (cancel, the task's
** own timeout: marked 'interrupt'). */
int concur_isinterrupt (lua_State *L, int idx);
/* Pushes the error object of a task that raised the value at 'err', with
** the traceback (a string) at 'tb': a concur.Error is kept, kind and fields
** (the traceback added when it has none); any other value becomes kind
** "task", with the value in 'value' and tostring(value) as the message.
** May raise (a __tostring that fails, no memory). */
void concur_pushtaskerror (lua_State *L, int err, int tb);

/* ---- option tables (options.c) ----------------------------------------------
** Readers of option 'name' of the table at 'arg': nil gives 'def' (NULL for
** a string); a value of another type or out of range raises kind
** "argument" ("option 'name' must be a positive integer"). */
/* checks that the table at 'arg' has only the given option names */
void concur_checkoptions (lua_State *L, int arg, const char *const names[]);
int concur_optbool (lua_State *L, int arg, const char *name, int def);
/* a string; one slot is left on the stack either way (the string,
** anchored, or nil); len may be NULL */
const char *concur_optstring (lua_State *L, int arg, const char *name,
                              size_t *len);
/* the same, for C: a string with a NUL byte raises */
const char *concur_optcstring (lua_State *L, int arg, const char *name);
/* a number >= min (> min when strict; not NaN; infinite only if inf_ok) */
double concur_optnumber (lua_State *L, int arg, const char *name, double def,
                         double min, int strict, int inf_ok);
/* an integer (an integral float counts) >= min */
lua_Integer concur_optinteger (lua_State *L, int arg, const char *name,
                               lua_Integer def, lua_Integer min);
/* raises "option 'name' <what>" (kind "argument") */
int concur_opterror (lua_State *L, int arg, const char *name, const char *what);

/* ---- waits that Ctrl-C ends (interrupt.c) ---------------------------------
** Every wait a binding makes for Lua goes through CONCUR_WAIT: in a thread
** that runs no task (the main thread), a hook set on the waiting state (or
** on its main thread) while it waits, as the standalone interpreter's
** SIGINT handler sets one, ends the wait (CONCUR_INTERRUPTED, seen within
** CONCUR_WATCH_SLICE); the hook is then run at once (it raises
** "interrupted!"), and a hook that does not raise lets the wait go on with
** the same deadline. 'call' is an expression giving a wait result; it must
** leave nothing taken when it returns CONCUR_INTERRUPTED (as for a cancel),
** and hold no lock when it returns.
*/
typedef struct concur_watch {
  lua_State *L, *M;               /* the waiting state and its main thread */
  lua_Hook hook, mhook;           /* their hooks when the wait began */
  int on;                         /* this wait is watched */
} concur_watch;

void concur_watch_begin (lua_State *L, concur_watch *w);
/* 1: the wait was interrupted and the hook did not raise: wait again */
int concur_watch_end (lua_State *L, concur_watch *w, int rc);

#define CONCUR_WAIT(L, rc, call) do { \
    concur_watch w_; \
    do { concur_watch_begin((L), &w_); (rc) = (call); } \
    while (concur_watch_end((L), &w_, (rc))); \
  } while (0)

/* ---- shared objects (proxy.c) --------------------------------------------
** A proxy is a full userdata holding one reference. Its metatable, created by
** concur_newclass, has __name, __index (methods), __gc and __close (both
** drop the reference, unless the class gives its own __close) and
** __tostring, and is registered with the codec (below) so the object
** crosses to other states by reference.
*/
typedef struct concur_proxy { concur_obj *o; } concur_proxy;

/* Makes the class t. Its metamethods (given, and the default __gc and
** __tostring) get the metatable as upvalue 1, so concur_selfproxy can
** check their argument 1. */
void concur_newclass (lua_State *L, const concur_objtype *t,
                      const luaL_Reg *methods, const luaL_Reg *metamethods);
void concur_pushobj (lua_State *L, concur_obj *o);  /* takes a new ref */
/* checks a proxy of type t; raises "argument" on a wrong type and "closed"
** when the proxy was closed */
concur_obj *concur_checkobj (lua_State *L, int arg, const concur_objtype *t);
concur_obj *concur_testobj (lua_State *L, int arg, const concur_objtype *t);
/* The proxy at 'arg' if its metatable is the table at 'mt' (and it has a
** proxy's size), else NULL. */
concur_proxy *concur_toproxy (lua_State *L, int arg, int mt);
/* In a metamethod made by concur_newclass: argument 1 as a proxy of its
** class (it may be closed: p->o NULL); raises "argument" for anything else,
** as Lua's own libraries do. */
concur_proxy *concur_selfproxy (lua_State *L);

/* ---- codec (codec.c, encode.c, decode.c) ---------------------------------
** Encodes n values from the stack at 'first' into 'out', which must be empty
** (CONCUR_BUF_INIT); 'root' names them in error paths: "value" -> "value.cb",
** "args[]" -> "args[2].cb", "task" -> "fn", "args[1]"... Raises kind
** "transfer" or "limit"; on error 'out' is left empty.
*/
void concur_encode (lua_State *L, int first, int n, concur_buf *out,
                    const char *root);
/* Marks the table at idx dense: every integer key it will ever hold up to
** its length is in its array part, as in a table made by lua_createtable
** with room for them and written only with rawseti (map's chunks and
** results). The encoder then skips those keys without visiting them one
** by one. The mark is a private, empty metatable: only for tables no user
** code sees. */
void concur_markdense (lua_State *L, int idx);
/* Pushes a view of t[i..j] (t at index t, a table without a metatable): a
** userdata that the encoder sends as a table of those items (1..j-i+1),
** without their being copied into one here first (map's chunks). Nothing
** else can be done with it. */
void concur_pushview (lua_State *L, int t, lua_Integer i, lua_Integer j);
/* Pushes the values in b; returns their number. Raises kind "transfer" on
** malformed bytes (never crashes, whatever the bytes) or a value this state
** cannot rebuild, "limit" when the stack cannot take them. */
int concur_decode (lua_State *L, const char *p, size_t len,
                   concur_obj *const *objs, size_t nobjs);
/* The same; 'root' names the values in errors, as for concur_encode. */
int concur_decode_as (lua_State *L, const char *p, size_t len,
                      concur_obj *const *objs, size_t nobjs, const char *root);

/* The class registry: the codec knows concur's own userdata by their
** metatables (registry tables keyed by the metatables themselves), never by
** a field a script could copy into another metatable. 'mt' is a stack
** index of a metatable. */
/* Proxies of t cross by reference (concur_newclass registers them). */
void concur_class_byref (lua_State *L, int mt, const concur_objtype *t);
/* Userdata of vt are copied by value. */
struct concur_valtype;
void concur_class_byvalue (lua_State *L, int mt, const struct concur_valtype *vt);
/* Userdata of the class registered as 'name' stay in their state: refused
** with kind "transfer", naming the class and saying 'why' (what to do). */
void concur_class_stays (lua_State *L, const char *name, const char *why);

/* Userdata copied by value (bigint): registered with concur_class_byvalue
** and concur_register_valtype. */
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

/* ---- tasks (executor.c) --------------------------------------------------------
** A task is `fn, ...` (the values from 'arg' to the top) or a table
** `{ fn, args = {...}, ... }` whose fields must be in 'options'; it is
** encoded into 'task' (empty). Read any other option before: this one may
** leave the stack as it was at the call.
*/
void concur_checktask (lua_State *L, int arg, const char *const options[],
                       concur_buf *task);
/* the 'timeout' option of a task table at 'arg' (seconds), or -1 (none,
** also for CONCUR_FOREVER or more) */
double concur_tasktimeout (lua_State *L, int arg);
/* 'initializer' and 'initargs' of the options table at 'arg', encoded into
** 'init' (left empty without an initializer) */
void concur_checkinit (lua_State *L, int arg, concur_buf *init);
/* shutdown{ wait = true, cancel_pending = false } at 'arg' */
void concur_checkshutdown (lua_State *L, int arg, int *wait, int *cancel);
/* Why a pool cannot be sent to another state, and what to do instead. */
#define CONCUR_POOL_STAYS "a pool belongs to the state that made it: submit " \
  "from there, or send a Queue and submit what arrives on it"
/* Pushes an executor's stats table from workers, pending, running,
** completed, failed, cancelled; returns 1. */
int concur_pushstats (lua_State *L, const long v[6]);
/* __gc of an executor (a metamethod given to concur_newclass): takes the
** object from the proxy at 1, stops it (never blocking) and drops the
** proxy's reference; returns 0. */
int concur_executor_gc (lua_State *L, void (*stop) (concur_obj *o));

/* ---- the cluster (clusterkey.c) ------------------------------------------- */
/* Refuses (kind "transfer", freeing b) an encoded buffer holding concur's
** shared objects: they live in one machine. */
void concur_cluster_checkbuf (lua_State *L, concur_buf *b);

/* ---- states (worker.c) ----------------------------------------------------- */
/* A new state for a worker: standard libraries, the creator's package.path
** and cpath (given), concur loaded. Returns NULL when out of memory. */
lua_State *concur_newstate (const char *path, const char *cpath);
/* copies the current package.path and cpath into malloc'd strings */
void concur_getpaths (lua_State *L, char **path, char **cpath);

/* ---- the parts: each adds its fields to the module table at the top;
** concur.c calls them all, from one list ---- */
void concur_errors_open (lua_State *L);       /* errors.c: concur.Error */
void concur_codec_open (lua_State *L);        /* codec.c */
void concur_future_open (lua_State *L);       /* future.c: Future, waitset */
void concur_hub_open (lua_State *L);          /* hub.c: core.hub (the completion fd) */
void concur_threadpool_open (lua_State *L);   /* threadpool.c: ThreadPool */
void concur_thread_open (lua_State *L);       /* thread.c: spawn */
void concur_shared_open (lua_State *L);       /* shared.c: guards */
void concur_lock_open (lua_State *L);         /* lock.c: Lock, RLock, Condition */
void concur_event_open (lua_State *L);        /* event.c: Event */
void concur_semaphore_open (lua_State *L);    /* semaphore.c: (Bounded)Semaphore */
void concur_barrier_open (lua_State *L);      /* barrier.c: Barrier */
void concur_value_open (lua_State *L);        /* value.c: Value */
void concur_queue_open (lua_State *L);        /* queue.c: Queue */
void concur_ratelimiter_open (lua_State *L);  /* ratelimiter.c: RateLimiter */
void concur_map_open (lua_State *L);          /* map.c: Map */
void concur_array_open (lua_State *L);        /* array.c: Array */
void concur_bigint_open (lua_State *L);       /* bigint.c: concur.bigint */
void concur_fetch_open (lua_State *L);        /* fetch.c: fetch.Client */
void concur_url_open (lua_State *L);          /* url.c: fetch.urljoin, ... */
void concur_html_open (lua_State *L);         /* html.c: fetch.html */
void concur_frontier_open (lua_State *L);     /* frontier.c: fetch.Frontier */
/* frontier.c: the open fetch.Frontier at idx (a concur_frontier *), or an
** error (kind "argument" or "closed") */
void *concur_frontier_checkarg (lua_State *L, int idx);
/* html.c: resp:html([opts]), a method of fetch.c's Response */
int concur_html_response (lua_State *L);
void concur_processpool_open (lua_State *L);  /* processpool.c: ProcessPool, Process */
void concur_procworker_open (lua_State *L);   /* procworker.c: a worker process's loop */
void concur_redis_open (lua_State *L);        /* redis.c: core.redis (cluster) */
void concur_clusterkey_open (lua_State *L);   /* clusterkey.c: core.cluster_key */
void concur_clusterpool_open (lua_State *L);  /* clusterpool.c: cluster.Pool */
void concur_clusternode_open (lua_State *L);  /* clusternode.c: cluster.serve */
void concur_clusterlimiter_open (lua_State *L);  /* clusterlimiter.c: cluster.RateLimiter */
void concur_clusterlimits_open (lua_State *L);   /* clusterlimits.c: cluster.limits */

#endif
