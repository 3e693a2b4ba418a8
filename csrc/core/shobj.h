/*
** shobj.h: the shared objects that live in the arena (arena.h). No Lua.
**
** A shared object is a block of the arena: a header (a reference count for
** the whole process tree, the class id) and the object's state, which
** holds only atomics, numbers, offsets and process-shared robust mutexes.
** Each process sees it through a concur_shobj, an ordinary concur_obj
** (obj.h) with its own in-process count, which holds one arena reference.
** A worker process counts the arena references its wrappers hold in its
** holdings table (holdings.h), so that its supervisor can drop them when
** it dies without closing its state.
**
** Crossing to another process: the sender exports each object (an arena
** reference that travels with the bytes as a concur_shref), the receiver
** imports it (adopts that reference into a new concur_shobj).
*/
#ifndef CONCUR_CORE_SHOBJ_H
#define CONCUR_CORE_SHOBJ_H

#include <stddef.h>
#include <stdint.h>
#include "obj.h"
#include "arena.h"
#include "wire.h"

/* ---- shared objects ----------------------------------------------------------- */

enum {
  CONCUR_SH_LOCK = 1, CONCUR_SH_RLOCK, CONCUR_SH_EVENT, CONCUR_SH_SEM,
  CONCUR_SH_BSEM, CONCUR_SH_BARRIER, CONCUR_SH_VALUE, CONCUR_SH_QUEUE,
  CONCUR_SH_RATELIMITER, CONCUR_SH_CONDITION, CONCUR_SH_MAP, CONCUR_SH_ARRAY,
  CONCUR_SH_NCLASSES
};

typedef struct concur_shclass {
  const concur_objtype *type;     /* whose destroy is concur_shobj_destroy */
  unsigned id;                    /* CONCUR_SH_* */
  /* optional: the last reference of the process tree went: release what
  ** the state holds (not the block itself); may run in any process */
  void (*release) (void *state);
  /* optional: the object is about to cross to another process for the
  ** first time; 0, or -1 with a message in err when it cannot */
  int (*share) (void *state, char *err, size_t errsize);
} concur_shclass;

typedef struct concur_shobj {
  concur_obj obj;
  const concur_shclass *cls;
  concur_shoff off;               /* the block */
  void *state;                    /* its state, in this process's mapping */
} concur_shobj;

/* An exported reference, as it travels (copied as bytes: 'pad' is zero, so
** no byte of it is undefined). */
typedef struct concur_shref {
  uint32_t id;
  uint32_t pad;
  concur_shoff off;
} concur_shref;

/* Makes class c known to imports in this process (at module load). */
void concur_shclass_register (const concur_shclass *c);
/* The shared class of objects of type t, or NULL if they stay in-process. */
const concur_shclass *concur_shclass_of (const concur_objtype *t);

/* A new object with 'size' bytes of (zeroed) state; the caller holds its
** one in-process reference. NULL when out of memory. */
concur_shobj *concur_shobj_new (const concur_shclass *c, size_t size);
/* The destroy function of every shared class's objtype. */
void concur_shobj_destroy (concur_obj *o);
/* Readies o to cross (the class's share hook): 0, or -1 and a message. */
int concur_shobj_share (concur_obj *o, char *err, size_t errsize);
/* Takes an arena reference for *r; o must be of a shared class. */
void concur_shobj_export (concur_obj *o, concur_shref *r);
/* Fills *r naming o without taking a reference: the receiver takes its
** own (concur_shref_dup) while the lender keeps o. */
void concur_shobj_lend (concur_obj *o, concur_shref *r);
/* A new in-process object adopting the reference r; NULL when r is not a
** valid reference or memory ran out (the reference is then dropped when
** valid). */
concur_obj *concur_shobj_import (const concur_shref *r);
/* Drops an exported reference that will never be imported. */
void concur_shref_drop (const concur_shref *r);
/* Takes one more reference for the object r names (r holds one). */
void concur_shref_dup (const concur_shref *r);
/* The state of the object r names; r holds a reference, so it names a
** live object (no checks: it is on the path of every Condition call). */
void *concur_shref_state (const concur_shref *r);
/* The share hook of the object r names (r holds a reference). */
int concur_shref_share (const concur_shref *r, char *err, size_t errsize);

/* Drops what the holdings table 'holdings' of a process that is gone
** still counts, and frees the table. */
void concur_shobj_reclaim (concur_shoff holdings);

/* Whether every object in b can cross to another process; if not, says
** why in msg, naming 'what' ("task", "results", ...). */
int concur_shobj_sendable (const concur_buf *b, const char *what, char *msg,
                           size_t size);

#endif
