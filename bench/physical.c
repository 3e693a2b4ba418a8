/*
** bench/physical.c: the physical limits the sync and process benchmarks are
** measured against, on the machine they run on. bench/30_sync.lua compiles
** and runs it.
**
**   physical futex N   a futex wake-up round trip between two threads: each
**                      sleeps in FUTEX_WAIT until the other wakes it
**   physical pipe N    a 1-byte round trip between two processes over a
**                      socketpair (blocking read and write)
**
** Prints the best (smallest) seconds per round trip of three runs of N.
*/
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- futex ---------------------------------------------------------------- */

static _Atomic int word;   /* 1: the ponger's turn, 0: the pinger's */
static long rounds;

static void fwait (int v) {
  while (atomic_load(&word) == v)
    syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void fwake (int v) {
  atomic_store(&word, v);
  syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *ponger (void *ud) {
  (void)ud;
  for (long i = 0; i < rounds; i++) {
    fwait(0);
    fwake(0);
  }
  return NULL;
}

static double futex_rt (void) {
  pthread_t t;
  double t0;
  atomic_store(&word, 0);
  if (pthread_create(&t, NULL, ponger, NULL)) return -1;
  t0 = now();
  for (long i = 0; i < rounds; i++) {
    fwake(1);
    fwait(1);
  }
  t0 = now() - t0;
  pthread_join(t, NULL);
  return t0 / rounds;
}

/* ---- socketpair ------------------------------------------------------------ */

static double pipe_rt (void) {
  int sv[2], status;
  pid_t pid;
  char c = 'x';
  double t0;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return -1;
  if ((pid = fork()) < 0) return -1;
  if (pid == 0) {
    close(sv[0]);
    while (read(sv[1], &c, 1) == 1)
      if (write(sv[1], &c, 1) != 1) break;
    _exit(0);
  }
  close(sv[1]);
  t0 = now();
  for (long i = 0; i < rounds; i++)
    if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1) return -1;
  t0 = now() - t0;
  close(sv[0]);
  waitpid(pid, &status, 0);
  return t0 / rounds;
}

int main (int argc, char **argv) {
  double (*fn) (void), best = 1e30;
  if (argc != 3) {
    fprintf(stderr, "usage: physical futex|pipe N\n");
    return 2;
  }
  fn = strcmp(argv[1], "futex") == 0 ? futex_rt : pipe_rt;
  rounds = atol(argv[2]);
  for (int k = 0; k < 3; k++) {
    double s = fn();
    if (s < 0) {
      perror("physical");
      return 1;
    }
    if (s < best) best = s;
  }
  printf("%.9f\n", best);
  return 0;
}
