/*
** map.h: a shared dictionary in plain C, in the shared arena (arena.h), so
** that threads and processes use it by reference. csrc/map.c binds it to
** Lua as concur.Map. No Lua.
**
** Keys are strings, integers or booleans, given as a type and raw bytes
** (concur_mkey); values are encoded values (concur_buf, the codec's
** bytes and objects). The map is CONCUR_MAP_SHARDS independent hash tables
** (shards), each under its own process-shared robust mutex, so callers on
** different keys rarely meet; a key's shard is fixed by its hash. Every
** operation on one key takes one shard's mutex; len is an atomic count;
** a snapshot (keys, pairs) or clear takes every shard's mutex, in order.
** No mutex is ever held across anything but memory moves and arena
** allocation.
**
** Versions: every write to a key stamps it with a number its shard never
** gave before; an absent key has version 0. get returns the version it
** read, and set_if writes only while the key still has that version: the
** compare-and-set that update() (a read-modify-write in the caller) is
** built on.
**
** A process killed in the middle of an operation leaves the map usable
** (the next locker repairs the mutex): each write becomes visible with one
** store (a slot's entry offset, an entry's current copy, a shard's table),
** so at worst a block leaks or the count is off by one.
*/
#ifndef CONCUR_CORE_MAP_H
#define CONCUR_CORE_MAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "sync.h"
#include "wire.h"

#define CONCUR_MAP_SHARDS 16

/* Results: CONCUR_MAP_OK, _ABSENT, _CHANGED, _PRESENT, _NOTNUM, _NOMEM,
** _FOREIGN, _LOCAL (result.h). */

/* Key types: the codec's tags. */
enum { CONCUR_MKEY_STR = 's', CONCUR_MKEY_INT = 'i', CONCUR_MKEY_BOOL = 'b' };

typedef struct concur_mkey {
  int type;                 /* CONCUR_MKEY_* */
  const char *p;            /* the bytes: a string's, an int64's, or one
                            ** byte 0/1 for a boolean */
  size_t len;
  uint64_t hash;            /* set by concur_mkey_init */
} concur_mkey;

/* Fills k (the bytes are not copied: they must outlive k's use). */
void concur_mkey_init (concur_mkey *k, int type, const char *p, size_t len);

typedef struct concur_mshard {
  pthread_mutex_t mu;
  uint64_t table;           /* arena offset of the slot table; 0: none */
  uint64_t count;           /* live keys */
  uint64_t stamp;           /* the last version given */
  char pad[128 - sizeof(pthread_mutex_t) - 24];   /* a shard per two lines */
} concur_mshard;

typedef struct concur_map {
  _Atomic int64_t count;    /* live keys, all shards */
  atomic_int xproc;         /* shared with another process: set for good */
  concur_mshard shard[CONCUR_MAP_SHARDS];
} concur_map;

/* A copy of a value taken out of the map: its bytes in 'small' (len
** 'n', no objects) when they fit there, else in 'buf'. */
#define CONCUR_MAP_SMALL 256
typedef struct concur_mval {
  char small[CONCUR_MAP_SMALL];
  size_t n;                 /* bytes in small; SIZE_MAX: the value is in buf */
  concur_buf buf;
} concur_mval;

int concur_map_init (concur_map *m);
/* Frees every entry (dropping its objects' references); never blocks. */
void concur_map_destroy (concur_map *m);

/* The value of k copied into *v (v->buf empty on entry), and its version
** (0 when absent). CONCUR_MAP_OK, ABSENT, NOMEM or FOREIGN. */
int concur_map_get (concur_map *m, const concur_mkey *k, concur_mval *v,
                    uint64_t *version);
/* Whether k is there. */
int concur_map_has (concur_map *m, const concur_mkey *k);

/* Values of at most this many bytes, without objects, are kept in the
** key's entry, never in a block of their own (never packed). */
#define CONCUR_MAP_INLINE 64

/* Writes of a key's value: *val, or NULL to delete the key. *val stays the
** caller's, to free after: a value packed into a block of its own (larger
** than CONCUR_MAP_INLINE, or holding objects) is moved there and *val
** emptied; an inline one is copied and *val left as it was. */
enum {
  CONCUR_MAP_SET,           /* write whatever was there */
  CONCUR_MAP_SETIF,         /* write only while the key has version 'expect'
                            ** (0: only while absent): else CHANGED */
  CONCUR_MAP_ADD            /* write only while absent: else PRESENT */
};
/* CONCUR_MAP_OK, CHANGED, PRESENT, ABSENT (a delete of an absent key),
** NOMEM or LOCAL; the key's new version in *version when not NULL. */
int concur_map_set (concur_map *m, const concur_mkey *k, concur_buf *val,
                    int mode, uint64_t expect, uint64_t *version);

/* Adds d to k's number (an absent key counts as integer 0) atomically;
** the new number in *out. Lua's arithmetic: integers wrap around, a float
** makes a float. CONCUR_MAP_OK, NOTNUM (nothing changed) or NOMEM. */
int concur_map_incr (concur_map *m, const concur_mkey *k, concur_num d,
                     concur_num *out);

size_t concur_map_len (concur_map *m);
/* Removes every key. */
void concur_map_clear (concur_map *m);

/* A snapshot: every key (type and bytes, in 'key'), with a copy of its
** value in 'val' when asked for. */
typedef struct concur_mitem {
  int ktype;
  concur_buf key;           /* the key's bytes (no objects) */
  concur_buf val;           /* the value (empty without values) */
} concur_mitem;
/* Takes every shard's mutex, in order, and copies the map out: a malloc'd
** array in *items, *n of them. CONCUR_MAP_OK, NOMEM or FOREIGN (nothing
** is then returned). */
int concur_map_snapshot (concur_map *m, int values, concur_mitem **items,
                         size_t *n);
void concur_map_freeitems (concur_mitem *items, size_t n);

/* Readies m to cross to another process (once): 0, or -1 with a message
** in err when a value holds an object that cannot leave this process.
** Shared objects inside its values are readied too. From then on set
** refuses such values (CONCUR_MAP_LOCAL). */
int concur_map_share (concur_map *m, char *err, size_t errsize);

#endif
