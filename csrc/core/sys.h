/*
** sys.h: the few operating-system helpers every layer of concur uses: the
** CPU count, threads that leave Ctrl-C to the interpreter's thread, joins
** with a grace, descriptors moved clear of the low numbers, the process's
** size, and what an errno value means for the resource a call wanted.
** Nothing of concur below this (with result.h, the bottom of the core).
*/
#ifndef CONCUR_CORE_SYS_H
#define CONCUR_CORE_SYS_H

#include <pthread.h>
#include <stddef.h>

/* The online CPUs (as Python's os.cpu_count), at least 1. */
int concur_cpu_count (void);
/* The CPUs this process may run on: concur_cpu_count, fewer when its
** affinity (taskset, cpusets) allows fewer. */
int concur_cpu_usable (void);

/* pthread_create, with SIGINT blocked in the new thread: concur's threads
** leave Ctrl-C to the thread of the interpreter (whose waits notice it). */
int concur_thread_create (pthread_t *t, void *(*fn) (void *), void *arg);

/* Joins t within 'grace' seconds (< 0: waits for ever; 0: only if it has
** ended), else detaches it (it ends on its own; the library is never
** unloaded: see concur.c). Returns 1 when it joined. */
int concur_thread_join (pthread_t t, double grace);

/* Moves fd to 10 or above, close-on-exec, clear of the descriptors a child
** process gets by dup2 (0 to 9), and closes the original; an fd already
** there (or < 0) is returned as it is. -1 on failure (fd closed, errno
** kept). */
int concur_fd_high (int fd);

/* The process's virtual size in bytes (0 when unknown). */
size_t concur_vm_size (void);

/* Describes what errno value 'err' means for the resource a failed call
** wanted: "no free file descriptors (at most 1024 open: see ulimit -n)"
** for EMFILE, "out of memory" for ENOMEM, else strerror's text. */
void concur_syserr (int err, char *buf, size_t size);

#endif
