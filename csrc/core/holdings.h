/*
** holdings.h: the arena references a worker process holds, and the last
** task that reached it, written down in the arena, so that whoever reaps
** the process when it died without letting them go (SIGKILL, os.exit, a
** task-timeout kill) can drop them, and knows whether the task it had
** handed over ever arrived. No Lua.
**
** A supervisor makes a table for each worker it starts (concur_holdings_new)
** and hands its offset over in the worker's 'I' frame; the worker adopts it
** (concur_holdings_adopt) before it takes any reference. From then on every
** shared object the worker wraps is counted there: shobj.c adds one when a
** wrapper takes its arena reference and removes one before a wrapper drops
** it. Once the worker has been reaped, its supervisor reclaims the table:
** each count still there is a reference the dead process held.
**
** Take, then count; uncount, then drop: a process killed between the two
** steps leaks one reference at worst, and never has one dropped twice. The
** table is written only by its own process (under an in-process mutex) and
** read only once that process is gone. A process with no table (the first
** process of the tree, or one whose table could not be had) counts nothing.
**
** Not covered: the workers of a worker that dies are killed with it
** (PR_SET_PDEATHSIG) and reaped by init; what they held stays.
*/
#ifndef CONCUR_CORE_HOLDINGS_H
#define CONCUR_CORE_HOLDINGS_H

#include <stdint.h>
#include "arena.h"

/* A new, empty table; 0 when the arena is full or missing. */
concur_shoff concur_holdings_new (void);
/* Makes 'root' this process's table (0, or no block of the arena: none). */
void concur_holdings_adopt (concur_shoff root);
/* One more, or one less, reference to the block at 'off' held by this
** process. No-ops without a table. */
void concur_holdings_add (concur_shoff off);
void concur_holdings_remove (concur_shoff off);
/* Records that the task with this id reached this process (before any of
** its code runs). No-op without a table. */
void concur_holdings_begin (uint64_t id);
/* The id of the last task that reached the process of the table at 'root'
** (0: none), read once that process is gone. */
uint64_t concur_holdings_begun (concur_shoff root);
/* Calls drop(off, n) for each block of which the table at 'root' (of a
** process that is gone) counts n > 0 references, then frees the table. */
void concur_holdings_reclaim (concur_shoff root,
                              void (*drop) (concur_shoff off, uint64_t n));

#endif
