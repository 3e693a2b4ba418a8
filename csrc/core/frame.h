/*
** frame.h: the frames a process supervisor (procsup.h) and its worker
** processes exchange over their socket. No Lua.
**
** A frame is a 16-byte header (body length, type, id) and a body. A body
** that carries a buffer (concur_buf) starts with its shared objects, as a
** 32-bit count and that many references (concur_shref), then its codec
** bytes. Who owns those references depends on the direction:
**  - worker -> supervisor ('R', 'E'): the writer exports each object (takes
**    an arena reference for it) and the reader adopts it; a reader that
**    discards such a frame drops them (concur_frame_drop);
**  - supervisor -> worker ('I', 'T'): the references are lent: the writer
**    keeps its objects until the worker has answered (or has been reaped),
**    and the worker takes references of its own. So a frame that never
**    reaches a worker (it died, it was killed) leaves nothing behind.
**
** Types: parent -> child: 'I' init (initializer and its arguments, maybe
** empty; the id is the worker's holdings table, holdings.h), 'T' task
** (function and arguments); child -> parent: 'H' hello (id 0: ready; id 1:
** the initializer failed, body = message), 'R' results, 'E' an error
** object (with the id of the task).
*/
#ifndef CONCUR_CORE_FRAME_H
#define CONCUR_CORE_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include "wire.h"

typedef struct concur_frame {
  uint32_t len;      /* bytes after the header */
  uint32_t type;
  uint64_t id;
} concur_frame;

#define CONCUR_FRAME_MAX ((uint32_t)0x7fffffff)

/* Writes one frame (blocking, EINTR-safe, never raises SIGPIPE); 0 or -1. */
int concur_frame_write (int fd, uint32_t type, uint64_t id,
                        const void *body, size_t len);
/* Reads one frame (blocking); *body is malloc'd (NULL when empty). Returns
** 0, 1 at a clean end of file, -1 on errors or a malformed header. */
int concur_frame_read (int fd, concur_frame *h, char **body);
/* Writes buffer b as a frame (blocking), exporting its objects: every
** object of b must be of a shared class (concur_shclass_of). */
int concur_frame_writebuf (int fd, uint32_t type, uint64_t id,
                           const concur_buf *b);
/* The header and the references part of a frame that carries b with its
** references lent (b's codec bytes follow them): malloc'd, its length in
** *len. NULL when memory ran out or the frame would be too long. */
char *concur_frame_lend (uint32_t type, uint64_t id, const concur_buf *b,
                         size_t *len);
/* Turns a body that carries a buffer into *out (empty): imports its
** objects (adopting exported references, or taking new ones for lent
** references when 'lent'), copies its bytes. Returns 0, or -1 when the body
** is malformed or memory ran out (exported references are then dropped). */
int concur_frame_tobuf (const char *body, size_t len, concur_buf *out,
                        int lent);
/* Drops the exported references of a body that will not be read: the
** first 'len' bytes of it (a body cut short drops the references it has
** in full). */
void concur_frame_drop (const char *body, size_t len);

#endif
