/*
** clusterframe.h: the signed frames that concur.cluster keeps in Redis
** (tasks, results, queue items, map values), with no Lua in it.
**
** A frame is a small header, codec bytes (core/wire.h) and a tag:
**
**   'c' 'f' version(1) type(1) id:u64 num:f64 0(1) namelen:u8 name payload tag
**
** (little-endian). 'type' says what it holds ('T' task, 'R' results, 'E' an
** error object, ...), 'id' and 'num' are the type's (a task's id and its
** timeout), 'name' a short string (the client a result goes back to). The
** tag is HMAC-SHA256, by OpenSSL, keyed with the cluster's shared secret,
** over a context (the name of the Redis key the frame is stored under, so a
** frame moved to another queue or map field does not verify) and then
** every byte before the tag.
**
** Opening a frame checks the tag first, in constant time, and reads
** nothing else of a frame that fails: its payload is never decoded, so
** bytecode in it is never loaded. The payload of a frame that verifies
** came from a holder of the key; its functions' bytecode hashes (keyed per
** process tree, so a sender's never match here) are then written again with
** this process tree's key, by concur_cframe_rehash, for the codec to load.
*/
#ifndef CONCUR_CORE_CLUSTERFRAME_H
#define CONCUR_CORE_CLUSTERFRAME_H

#include <stddef.h>
#include <stdint.h>
#include "wire.h"

#define CONCUR_CFRAME_TAG 32            /* bytes of the HMAC-SHA256 tag */
#define CONCUR_CFRAME_HEAD 21           /* bytes before the name */
#define CONCUR_CFRAME_MINKEY 16         /* shortest shared key, bytes */

/* A keyed MAC (the key's HMAC state); safe to share between threads. */
typedef struct concur_mac concur_mac;

/* NULL when memory ran out or OpenSSL has no HMAC-SHA256. */
concur_mac *concur_mac_new (const void *key, size_t len);
void concur_mac_free (concur_mac *m);

typedef struct concur_cframe {
  int type;
  uint64_t id;
  double num;
  const char *name;        /* at most 255 bytes */
  size_t namelen;
  const char *payload;
  size_t len;
} concur_cframe;

/* Appends the signed frame of f to 'out', for storing under the Redis key
** 'ctx'. Returns 0, or -1 when memory ran out (or the name is too long). */
int concur_cframe_seal (const concur_mac *m, const char *ctx, size_t ctxlen,
                        const concur_cframe *f, concur_buf *out);

/* Verifies the frame in data[0..len) stored under 'ctx' and fills f (its
** pointers into data). Returns 0, or -1 when the tag does not verify or the
** frame is malformed: then nothing in it must be used. */
int concur_cframe_open (const concur_mac *m, const char *ctx, size_t ctxlen,
                        const char *data, size_t len, concur_cframe *f);

/* Walks codec bytes (a verified payload) and writes each function's
** bytecode hash again with this process tree's key. Returns 0, or -1 when
** the bytes are not well-formed codec bytes (left partly rewritten). */
int concur_cframe_rehash (char *p, size_t len);

#endif
