/*
** sys.c: operating-system helpers (sys.h).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include "sys.h"

int concur_cpu_count (void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int concur_cpu_usable (void) {
  int n = concur_cpu_count();
#if defined(__linux__)
  cpu_set_t set;   /* the CPUs this process may run on */
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < n)
    n = CPU_COUNT(&set);
#endif
  return n < 1 ? 1 : n;
}

int concur_thread_create (pthread_t *t, void *(*fn) (void *), void *arg) {
  sigset_t block, old;
  int rc;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  rc = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* NOTE: pthread_timedjoin_np's deadline is on CLOCK_REALTIME; the grace is
** short (seconds), so a clock step during it matters little. */
int concur_thread_join (pthread_t t, double grace) {
  struct timespec ts;
  if (grace < 0) return pthread_join(t, NULL) == 0;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)grace;
  ts.tv_nsec += (long)((grace - (double)(time_t)grace) * 1e9);
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  if (pthread_timedjoin_np(t, NULL, &ts) == 0) return 1;
  pthread_detach(t);
  return 0;
}

int concur_fd_high (int fd) {
  int nfd, e;
  if (fd < 0 || fd >= 10) return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  e = errno;
  close(fd);
  errno = e;
  return nfd;
}

size_t concur_vm_size (void) {
  unsigned long pages = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
  }
  return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

void concur_syserr (int err, char *buf, size_t size) {
  struct rlimit rl;
  if (err == EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    snprintf(buf, size, "no free file descriptors (at most %llu open: see ulimit -n)",
             (unsigned long long)rl.rlim_cur);
  else if (err == EMFILE)
    snprintf(buf, size, "no free file descriptors (see ulimit -n)");
  else if (err == ENFILE)
    snprintf(buf, size, "the system has no free file descriptors (see fs.file-max)");
  else if (err == ENOMEM)
    snprintf(buf, size, "out of memory");
  else
    snprintf(buf, size, "%s", strerror(err));
}
