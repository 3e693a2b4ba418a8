/*
** arena.h: the shared arena. No Lua.
**
** The arena is one memory file (memfd) mapped by every process of a
** process tree: the first concur process creates it when it first needs
** it, and each worker it starts inherits the file (fd and CONCUR_SHMFD)
** and maps it too, at whatever address. So nothing in the arena holds a
** pointer: blocks are named by their offset, and each process turns an
** offset into an address of its own mapping. Shared objects (shobj.h) are
** blocks of it.
*/
#ifndef CONCUR_CORE_ARENA_H
#define CONCUR_CORE_ARENA_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t concur_shoff;   /* offset in the arena; 0: none */

/* ---- the arena ------------------------------------------------------------ */

/* Maps the arena (creating it, or inheriting the parent's); idempotent and
** thread-safe, and tried again after a failure. Returns 0, or -1 when it
** cannot be had. Its size: CONCUR_SHMSIZE (bytes) when set, else 1 GiB of
** address space, less under a tight RLIMIT_AS (ulimit -v), halved until a
** mapping succeeds (4 MiB at least). */
int concur_shm_init (void);
/* The arena's memory file, for children (-1 when none). */
int concur_shm_fd (void);
/* A block of at least n bytes, 16-aligned, uninitialised; NULL when the
** arena is full or missing. */
void *concur_shm_alloc (size_t n, concur_shoff *off);
void concur_shm_free (concur_shoff off);
/* The address of offset 'off' in this process (the arena is mapped). */
void *concur_shm_ptr (concur_shoff off);
/* Says why a block cannot be had: no arena (and why), or a full one (and
** what to set), e.g. "shared memory is full (63 of its 64 MiB in use; set
** CONCUR_SHMSIZE=<bytes> ...)". */
void concur_shm_why (char *buf, size_t size);
/* Takes and drops the arena's mutex: orders the caller after every
** allocation and free made so far in the process tree, for a reader of
** blocks that another (now dead) process wrote. */
void concur_shm_sync (void);
/* Bytes in use (blocks and their headers), for stats and specs. */
size_t concur_shm_used (void);
/* The usable size of the block at 'off', or 0 when off names no block. */
size_t concur_shm_blocksize (concur_shoff off);

#endif
