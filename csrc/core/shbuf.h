/*
** shbuf.h: an encoded value (a concur_buf: codec bytes and the objects
** they name) packed into one block of the shared arena (arena.h), so that
** any process of the tree can take a copy. No Lua. Queue items (queue.c),
** Map values (map.c) and a Barrier's action (barrier.c) are kept so.
**
** A block is a header, one reference per object, then the bytes. A
** reference is an exported shared object (shobj.h), or (id 0) a pointer to
** an object that cannot leave its process (a Future, a fetch Client)
** holding one in-process reference: such a block is "local", names the
** process that packed it, and only that process can copy it out.
*/
#ifndef CONCUR_CORE_SHBUF_H
#define CONCUR_CORE_SHBUF_H

#include <stddef.h>
#include "arena.h"
#include "shobj.h"
#include "wire.h"

#define CONCUR_SHB_NOMEM (-1)     /* memory ran out */
#define CONCUR_SHB_FOREIGN (-2)   /* it holds another process's objects */

/* Packs *item into a new block and empties it (its references move into
** the block); the block's offset, or 0 when the arena is full (*item is
** then left as it was). 'share': the block may go to other processes, so
** its objects are readied to cross (concur_shobj_share); one that cannot
** be stays a pointer, and the block is local. */
concur_shoff concur_shbuf_pack (concur_buf *item, int share);
/* The same, leaving *item as it was: the block takes references of its
** own. */
concur_shoff concur_shbuf_packcopy (const concur_buf *item, int share);
/* Drops the block's references and frees it. */
void concur_shbuf_free (concur_shoff off);
/* Appends a copy of the block to *out (its bytes, and references of its
** own to the objects: the block is left as it was). 0, or
** CONCUR_SHB_FOREIGN, or CONCUR_SHB_NOMEM (*out is then emptied). Only
** when *out starts empty do the bytes' object indexes hold. */
int concur_shbuf_copyout (concur_shoff off, concur_buf *out);
/* Whether the block holds objects that cannot leave their process. */
int concur_shbuf_local (concur_shoff off);
/* The number of codec bytes in the block. */
size_t concur_shbuf_len (concur_shoff off);
/* Appends to the array *v (n used, cap allocated; grown with realloc) a
** new reference to each shared object of the block, for the caller to
** ready (concur_shref_share) and drop once it holds no lock. 0, or -1
** when out of memory. */
int concur_shbuf_refs (concur_shoff off, concur_shref **v, size_t *n,
                       size_t *cap);
/* Readies each of the n references to cross to another process, and drops
** them all; 0, or -1 with a message in err (the rest are dropped too).
** Frees v. */
int concur_shbuf_shareall (concur_shref *v, size_t n, char *err,
                           size_t errsize);

#endif
