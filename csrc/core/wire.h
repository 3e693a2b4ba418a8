/*
** wire.h: the byte format of concur's value codec, and a growable buffer.
**
** Every value that leaves a Lua state is written in this format: tasks and
** results between threads, frames between processes, items of queues in
** shared memory, cluster messages. This part needs no Lua, so C engines (fetch) can build results and the fuzzer can
** feed the decoder arbitrary bytes. The Lua side is csrc/codec.c.
**
** A buffer holds the bytes and, beside them, the shared objects that travel
** by reference: the bytes name an object only by its index in 'objs', and
** the buffer owns one reference to each object until it is freed. So a
** decoder can never be tricked into following a pointer from the bytes.
**
** Format (little-endian, native doubles):
**   'n' nil   'f' false   't' true
**   'i' int64            'd' double (8 bytes)
**   's' len:varint bytes
**   'T' narr:varint then narr values, then key/value pairs, then 'e'
**   'H' nhash:varint then a 'T' table: room for nhash pairs (a hint, from
**       writers that know the count, as the fetch engine)
**   'r' index:varint     (back reference to the index-th table or function)
**   'F' hash:u64 len:varint bytecode nups:varint, then per upvalue one of
**       'E' (_ENV: the receiver's globals), 'j' fn:varint up:varint (joined
**       with upvalue 'up' of back reference 'fn'), or a value
**   'C' module-name:str field-name:str   (C function found by name)
**   'o' index:varint     (shared object objs[index], by reference)
**   'v' tag:u8 len:varint bytes   (value userdata, e.g. a bigint)
**   'N' name:str then a table ('T' or 'H'): one whose metatable travels by name
**       (a Response): the receiver sets the metatable registered under that
**       name, and only one that opted in (a true '__concur_restore' field);
**       any other name leaves the table plain
*/
#ifndef CONCUR_CORE_WIRE_H
#define CONCUR_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "obj.h"

#define CONCUR_MAX_DEPTH 200            /* nesting of tables and functions */
#define CONCUR_MAX_ENCODED ((size_t)1 << 31)   /* 2 GiB per message */

typedef struct concur_buf {
  char *data;
  size_t len, cap;
  concur_obj **objs;      /* objects by reference; one ref each */
  size_t nobjs, objcap;
} concur_buf;

#define CONCUR_BUF_INIT {NULL, 0, 0, NULL, 0, 0}

/* All writers return 0, or -1 when memory or CONCUR_MAX_ENCODED ran out. */
int concur_buf_reserve (concur_buf *b, size_t extra);
int concur_buf_write (concur_buf *b, const void *p, size_t n);
int concur_buf_addobj (concur_buf *b, concur_obj *o);  /* takes a new ref */
void concur_buf_free (concur_buf *b);   /* drops the object references */
void concur_buf_move (concur_buf *dst, concur_buf *src);  /* src emptied */

int concur_wire_nil (concur_buf *b);
int concur_wire_bool (concur_buf *b, int v);
int concur_wire_int (concur_buf *b, int64_t v);
int concur_wire_num (concur_buf *b, double v);
int concur_wire_str (concur_buf *b, const char *s, size_t len);
int concur_wire_cstr (concur_buf *b, const char *s);
int concur_wire_table (concur_buf *b, size_t narr);  /* then values, pairs */
int concur_wire_hint (concur_buf *b, size_t nhash);  /* before a table */
int concur_wire_end (concur_buf *b);                 /* closes a table */
int concur_wire_varint (concur_buf *b, uint64_t v);
/* A table whose metatable travels by name: writes 'N' and the name; the
** table ('T' or 'H') follows. */
int concur_wire_named (concur_buf *b, const char *name);
/* A string written in place, its length not known yet: strbegin writes 's'
** and room for the length (a varint padded to CONCUR_WIRE_LENPAD bytes: the
** decoder takes non-minimal varints); the caller appends the bytes at
** b->len, then strend(b, start), with start the b->len that strbegin left,
** writes their length. */
#define CONCUR_WIRE_LENPAD 5    /* lengths below 2^35: every message */
int concur_wire_strbegin (concur_buf *b);
void concur_wire_strend (concur_buf *b, size_t start);
/* Replaces b's contents by an error object { kind = kind, message = msg }
** (left empty when memory runs out: still an error, without its text). */
void concur_wire_error (concur_buf *b, const char *kind, const char *msg);

/* Reading: a cursor over bytes. Readers return 0, or -1 on truncation. */
typedef struct concur_rd {
  const unsigned char *p, *end;
} concur_rd;

int concur_rd_varint (concur_rd *r, uint64_t *v);
int concur_rd_bytes (concur_rd *r, const void **p, size_t n);

/* A keyed 64-bit hash; the key is random per process tree, so bytes that
** were not written by concur (say, a fuzzer's) never pass for bytecode. */
uint64_t concur_hash (const void *p, size_t n);
/* SipHash-2-4 of n bytes under the key k0, k1 (concur_hash is this under
** the process tree's key; a fixed key gives a hash stable across runs and
** machines, as the crawler's URL fingerprints need). */
uint64_t concur_siphash (uint64_t k0, uint64_t k1, const void *p, size_t n);
void concur_hash_setkey (const unsigned char key[16]);
void concur_hash_getkey (unsigned char key[16]);

#endif
