/*
** proc.h: what proc.c (the Lua side of processes, in the parent) needs of
** proc_worker.c (the worker process's loop).
*/
#ifndef CONCUR_PROC_H
#define CONCUR_PROC_H

#include "concur.h"

/* adds core.process_worker to the module table at the top */
void concur_proc_worker_open (lua_State *L);

/* Whether every object in b can cross to another process (core/shm.h);
** if not, says why in msg, naming 'what' ("task", "results", ...). */
int concur_proc_sendable (const concur_buf *b, const char *what, char *msg,
                          size_t size);

#endif
