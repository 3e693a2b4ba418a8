/*
** codec.h: what the three files of the value codec share. codec.c holds the
** per-state scratch, the value types and the class registry (how a userdata
** is known to be one of concur's own), and the paths that name a value in
** errors; encode.c turns values into bytes, decode.c bytes into values. The
** byte format is core/wire.h; the entry points are declared in concur.h.
*/
#ifndef CONCUR_CODEC_H
#define CONCUR_CODEC_H

#include "concur.h"

/* ---- the scratch -----------------------------------------------------------
** Each state keeps one in its registry for the encoder: a buffer and a
** pointer -> id map for identity (tables and functions seen, upvalues
** sent), so a small message costs no allocation. A use nested in another
** (a finalizer that sends while a message is being encoded) gets a fresh
** one.
*/
typedef struct concur_seen { const void *key; lua_Integer id; } concur_seen;

typedef struct concur_scratch {
  int busy;
  long nloaded;         /* fingerprint of package.loaded when names were built */
  concur_buf buf;
  concur_seen *map;     /* open addressing, key NULL = empty */
  size_t cap, used;
} concur_scratch;

/* Pushes the state's scratch (a fresh one when it is in use: the busy one
** stays alive on its user's stack) and returns it. */
concur_scratch *concur_scratch_get (lua_State *L);
/* Empties it (drops the buffer's object references), keeping small memory. */
void concur_scratch_reset (concur_scratch *s);
/* The id stored for key, or -1. */
lua_Integer concur_seen_get (concur_scratch *s, const void *key);
/* Stores key -> id; 0, or -1 when out of memory. */
int concur_seen_put (concur_scratch *s, const void *key, lua_Integer id);

/* ---- paths -----------------------------------------------------------------
** Where a value sits in a message, for errors: "args[2].cb",
** "results[1][\"k\"]", "fn<upvalue fmt>". Element 0 is the value's place
** in the message (i: 1-based); the root names the message: "task" (fn,
** then args[1], args[2], ...), "name[]" (name[1], name[2], ...) or "name".
*/
enum { CONCUR_P_INDEX, CONCUR_P_FIELD, CONCUR_P_KEY, CONCUR_P_UPVAL };

typedef struct concur_pathel {
  int kind;
  lua_Integer i;
  const char *s;        /* a field or upvalue name, kept alive by the caller */
} concur_pathel;

typedef struct concur_root {
  const char *name;     /* "" for a task */
  int indexed;          /* "name[]" */
  char buf[64];
} concur_root;

void concur_root_init (concur_root *r, const char *root);
/* Pushes the path of elements 0 .. last; long ones keep their ends. */
void concur_pushpath (lua_State *L, const concur_root *r,
                      const concur_pathel *path, int last);

/* ---- classes ---------------------------------------------------------------
** What the class registry (registry tables keyed by the metatables
** themselves, out of a script's reach) says of the userdata at idx.
*/
enum {
  CONCUR_UD_FOREIGN,    /* not concur's */
  CONCUR_UD_PROXY,      /* a proxy: *info is its concur_objtype */
  CONCUR_UD_VALUE,      /* a value type: *info is its concur_valtype */
  CONCUR_UD_STAYS       /* stays in its state: *info is why (a string) */
};
/* Pushes nothing; needs 2 free stack slots. */
int concur_classof (lua_State *L, int idx, const void **info);

/* The value type with this tag, or NULL. */
const concur_valtype *concur_valtype_of (int tag);

/* Module names that C functions and modules are sent by: these, in this
** order, win over any other module holding the same value. */
extern const char *const concur_preferred_modules[];

#endif
