/*
** procsup.c: worker processes and the thread that supervises them.
**
** Starting a worker: a socketpair (close-on-exec on both ends), then
** posix_spawn of the interpreter (env CONCUR_LUA, else lua5.4 on PATH)
** running a tiny script (held in a memfd) that calls
** concur.core.process_worker(). posix_spawn forks with CLONE_VFORK and
** execs at once, so a lock held by another thread of the parent at that
** moment never matters. The child gets its end of the socket as fd 3, the
** script as fd 4, every other descriptor closed, default signal dispositions
** and an empty signal mask, and in its environment the module paths, the
** codec's hash key, the parent's pid and the memory limit.
**
** The supervisor thread is the only one that touches a slot's process (fd,
** read buffer, deadlines) and the only one that reaps. Under ps->mu: the
** queue, 'closing', 'broken', each slot's 'running' future, 'pid' and
** 'status' (so Lua may read and kill a pid that is never a reaped one).
** Lock order: a future's mu, then ps->mu (op_dropped); interrupt() runs
** with the future's mu held and only sets a flag and writes the eventfd.
**
** Slot life: EMPTY -> STARTING (spawned; sent 'I') -> IDLE (got 'H') <->
** BUSY (sent 'T') ... -> EXITING (socket closed; SIGKILL at kill_at) ->
** reaped -> EMPTY. The future a dying worker was running is completed when
** the worker is reaped, with what the wait status tells.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "procsup.h"
#include "clock.h"
#include "shm.h"

extern char **environ;

enum { S_EMPTY, S_STARTING, S_IDLE, S_BUSY, S_EXITING };
enum { R_NONE, R_CRASH, R_TIMEOUT, R_CANCEL };

#define SHM_FD 5           /* where a worker finds the shared arena */
#define TERM_GRACE 0.1     /* SIGTERM, then SIGKILL after this */
#define EXIT_GRACE 2.0     /* a worker told to exit gets this long */

typedef struct slot {
  concur_procsup *ps;
  int state, reason, fd;
  pid_t pid;                 /* under ps->mu */
  int status;                /* last reaped wait status, -1: none; under mu */
  concur_future *running;    /* one reference; under ps->mu */
  uint64_t id;
  long ntasks;
  double deadline, kill_at;
  int never_ready;           /* it died before its hello */
  atomic_int cancel;         /* the running future was cancelled */
  char *rbuf;
  size_t rlen, rcap;
} slot;

struct concur_procsup {
  concur_obj obj;
  pthread_mutex_t mu;
  pthread_cond_t ended_cv;
  concur_future *head, *tail;
  size_t npending;
  int closing, kill_all;
  char *broken;              /* why the pool broke, or NULL */
  int ended, joined;         /* the supervisor thread has ended / was joined */
  int wakefd, scriptfd;
  pthread_t thread;
  int nworkers;
  slot *slots;
  long max_tasks;
  double task_timeout;
  size_t memory_limit;
  concur_buf init;
  char **envp;
  const char *lua;
  uint64_t nextid;
  int start_failures, max_start_failures;   /* in a row; then broken */
  atomic_long running, completed, failed, cancelled;
};

static const char SCRIPT[] = "require('concur.core').process_worker()\n";

/* ---- frames ---------------------------------------------------------------- */

static int write_all (int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

/* A frame whose body is 'pre' and then 'body'. */
static int frame_write2 (int fd, uint32_t type, uint64_t id, const void *pre,
                         size_t prelen, const void *body, size_t len) {
  concur_frame h;
  if (len > CONCUR_FRAME_MAX || prelen > CONCUR_FRAME_MAX - len) return -1;
  h.len = (uint32_t)(prelen + len);
  h.type = type;
  h.id = id;
  if (h.len > 0 && h.len <= 4096) {   /* one send for small frames */
    char small[sizeof h + 4096];
    memcpy(small, &h, sizeof h);
    if (prelen) memcpy(small + sizeof h, pre, prelen);
    if (len) memcpy(small + sizeof h + prelen, body, len);
    return write_all(fd, small, sizeof h + h.len);
  }
  if (write_all(fd, &h, sizeof h)) return -1;
  if (prelen && write_all(fd, pre, prelen)) return -1;
  return len ? write_all(fd, body, len) : 0;
}

int concur_frame_write (int fd, uint32_t type, uint64_t id,
                        const void *body, size_t len) {
  return frame_write2(fd, type, id, NULL, 0, body, len);
}

/* The references part of a body: a 32-bit count, then the references. */

/* Reference i of the references part at p (maybe unaligned). */
static concur_shref ref_at (const char *p, uint32_t i) {
  concur_shref r;
  memcpy(&r, p + sizeof(uint32_t) + i * sizeof r, sizeof r);
  return r;
}

int concur_frame_writebuf (int fd, uint32_t type, uint64_t id,
                           const concur_buf *b) {
  uint32_t n = (uint32_t)b->nobjs;
  size_t prelen = sizeof n + (size_t)n * sizeof(concur_shref);
  char small[sizeof n + 8 * sizeof(concur_shref)];
  char *pre = n <= 8 ? small : malloc(prelen);
  int rc;
  if (pre == NULL) return -1;
  memcpy(pre, &n, sizeof n);
  for (uint32_t i = 0; i < n; i++) {
    concur_shref r;
    concur_shobj_export(b->objs[i], &r);
    memcpy(pre + sizeof n + i * sizeof r, &r, sizeof r);
  }
  rc = frame_write2(fd, type, id, pre, prelen, b->data, b->len);
  if (rc != 0)    /* not delivered: nobody will adopt them */
    for (uint32_t i = 0; i < n; i++) {
      concur_shref r = ref_at(pre, i);
      concur_shref_drop(&r);
    }
  if (pre != small) free(pre);
  return rc;
}

int concur_frame_tobuf (const char *body, size_t len, concur_buf *out) {
  uint32_t n = 0;
  size_t i = 0, skip;
  int rc = 0;
  if (len >= sizeof n) memcpy(&n, body, sizeof n);
  skip = sizeof n + (size_t)n * sizeof(concur_shref);
  if (len < sizeof n || n > (len - sizeof n) / sizeof(concur_shref)) return -1;
  for (; i < n; i++) {
    concur_shref r = ref_at(body, (uint32_t)i);
    concur_obj *o;
    if ((o = concur_shobj_import(&r)) == NULL) {
      rc = -1;
      i++;
      break;
    }
    rc = concur_buf_addobj(out, o);
    concur_obj_unref(o);
    if (rc != 0) {
      i++;
      break;
    }
  }
  for (; i < n; i++) {   /* after a failure: drop the rest */
    concur_shref r = ref_at(body, (uint32_t)i);
    concur_shref_drop(&r);
  }
  if (rc == 0 && len > skip) rc = concur_buf_write(out, body + skip, len - skip);
  if (rc != 0) concur_buf_free(out);
  return rc;
}

static int read_all (int fd, void *p, size_t n) {
  char *s = p;
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, s + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) return got == 0 ? 1 : -1;
    got += (size_t)r;
  }
  return 0;
}

int concur_frame_read (int fd, concur_frame *h, char **body) {
  int rc = read_all(fd, h, sizeof *h);
  *body = NULL;
  if (rc) return rc;
  if (h->len > CONCUR_FRAME_MAX) return -1;
  if (h->len == 0) return 0;
  *body = malloc(h->len);
  if (*body == NULL) return -1;
  if (read_all(fd, *body, h->len) != 0) {
    free(*body);
    *body = NULL;
    return -1;
  }
  return 0;
}

/* ---- small helpers ------------------------------------------------------------- */

void concur_procsup_describe (int status, char *buf, size_t size) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  else
    snprintf(buf, size, "ended with wait status %d", status);
}

/* An encoded error object {kind, message}, built without Lua. */
static void errbuf (concur_buf *b, const char *kind, const char *msg) {
  concur_buf_free(b);
  if (concur_wire_table(b, 0) || concur_wire_cstr(b, "kind") ||
      concur_wire_cstr(b, kind) || concur_wire_cstr(b, "message") ||
      concur_wire_cstr(b, msg) || concur_wire_end(b))
    concur_buf_free(b);
}

static void fail_future (concur_future *f, const char *kind, const char *msg) {
  concur_buf b = CONCUR_BUF_INIT;
  errbuf(&b, kind, msg);
  concur_future_finish(f, 1, &b);
}

static void wake (concur_procsup *ps) {
  uint64_t one = 1;
  ssize_t w = write(ps->wakefd, &one, sizeof one);
  (void)w;   /* EAGAIN: the counter is full, a wake-up is pending anyway */
}

/* ---- object and futures ------------------------------------------------------- */

static void procsup_destroy (concur_obj *o) {
  concur_procsup *ps = (concur_procsup *)o;
  for (int i = 0; i < ps->nworkers; i++) {
    free(ps->slots[i].rbuf);
    if (ps->slots[i].fd >= 0) close(ps->slots[i].fd);
  }
  if (ps->envp) {
    for (char **e = ps->envp; *e; e++) free(*e);
    free(ps->envp);
  }
  if (ps->wakefd >= 0) close(ps->wakefd);
  if (ps->scriptfd >= 0) close(ps->scriptfd);
  concur_buf_free(&ps->init);
  pthread_mutex_destroy(&ps->mu);
  pthread_cond_destroy(&ps->ended_cv);
  free(ps->broken);
  free(ps->slots);
  free(ps);
}

const concur_objtype concur_procsup_type = { "concur.ProcessPool", procsup_destroy, NULL };

/* A pending future was cancelled: unlink it (it may already be gone). */
static void op_dropped (concur_future *f) {
  concur_procsup *ps = f->owner;
  concur_future **pp, *prev = NULL;
  int found = 0;
  pthread_mutex_lock(&ps->mu);
  for (pp = &ps->head; *pp; prev = *pp, pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      if (ps->tail == f) ps->tail = prev;
      f->next = NULL;
      ps->npending--;
      found = 1;
      break;
    }
  pthread_mutex_unlock(&ps->mu);
  atomic_fetch_add(&ps->cancelled, 1);
  if (found) {
    concur_obj_unref(&f->obj);
    wake(ps);     /* a closing pool may be waiting for its queue to empty */
  }
}

/* A running future was cancelled (f->mu held): the supervisor kills its
** worker. Never blocks. */
static void op_interrupt (concur_future *f) {
  slot *s = f->worker;
  atomic_store(&s->cancel, 1);
  wake(s->ps);
}

static void op_finished (concur_future *f, int st) {
  concur_procsup *ps = f->owner;
  if (f->worker == NULL) {   /* failed without running: broken pool */
    if (st == CONCUR_F_FAILED) atomic_fetch_add(&ps->failed, 1);
    return;
  }
  atomic_fetch_sub(&ps->running, 1);
  if (st == CONCUR_F_FINISHED) atomic_fetch_add(&ps->completed, 1);
  else if (st == CONCUR_F_FAILED) atomic_fetch_add(&ps->failed, 1);
  else atomic_fetch_add(&ps->cancelled, 1);
}

static const concur_future_ops procsup_ops = { op_dropped, op_interrupt, op_finished };

concur_future *concur_procsup_future (concur_procsup *ps) {
  return concur_future_new(&procsup_ops, ps);
}

/* Takes the whole queue; ps->mu held. */
static concur_future *take_queue (concur_procsup *ps) {
  concur_future *f = ps->head;
  ps->head = ps->tail = NULL;
  ps->npending = 0;
  return f;
}

/* Fails (kind given) or cancels (kind NULL) a list taken by take_queue. */
static void fail_list (concur_future *f, const char *kind, const char *msg) {
  while (f) {
    concur_future *next = f->next;
    f->next = NULL;
    if (kind) fail_future(f, kind, msg);
    else concur_future_cancel(f);   /* counted by op_dropped */
    concur_obj_unref(&f->obj);
    f = next;
  }
}

/* Marks the pool broken: no more work; what waits fails with the reason. */
static void set_broken (concur_procsup *ps, const char *why) {
  concur_future *q;
  char msg[512];
  pthread_mutex_lock(&ps->mu);
  if (ps->broken == NULL) ps->broken = strdup(why);
  ps->closing = 1;
  snprintf(msg, sizeof msg, "pool is broken: %s", ps->broken ? ps->broken : why);
  q = take_queue(ps);
  pthread_mutex_unlock(&ps->mu);
  fail_list(q, "broken", msg);
}

/* ---- starting and ending workers ----------------------------------------------- */

/* Builds the children's environment: the parent's, without the variables
** we set, plus ours. */
static char **make_env (const char *path, const char *cpath, size_t memlimit) {
  static const char *const ours[] = { "LUA_PATH=", "LUA_PATH_5_4=", "LUA_CPATH=",
    "LUA_CPATH_5_4=", "CONCUR_HASHKEY=", "CONCUR_PPID=", "CONCUR_MEMLIMIT=",
    "CONCUR_SHMFD=", NULL };
  size_t n = 0, k = 0;
  char **env;
  unsigned char key[16];
  char hex[33];
  for (char **e = environ; e && *e; e++) n++;
  env = calloc(n + 8, sizeof *env);
  if (env == NULL) return NULL;
  for (char **e = environ; e && *e; e++) {
    int skip = 0;
    for (int i = 0; ours[i]; i++)
      if (strncmp(*e, ours[i], strlen(ours[i])) == 0) skip = 1;
    if (!skip && (env[k] = strdup(*e)) != NULL) k++;
  }
  concur_hash_getkey(key);
  for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
  if (path && asprintf(&env[k], "LUA_PATH_5_4=%s", path) > 0) k++;
  if (cpath && asprintf(&env[k], "LUA_CPATH_5_4=%s", cpath) > 0) k++;
  if (asprintf(&env[k], "CONCUR_HASHKEY=%s", hex) > 0) k++;
  if (asprintf(&env[k], "CONCUR_PPID=%ld", (long)getpid()) > 0) k++;
  if (memlimit && asprintf(&env[k], "CONCUR_MEMLIMIT=%zu", memlimit) > 0) k++;
  if (concur_shm_fd() >= 0 && asprintf(&env[k], "CONCUR_SHMFD=%d", SHM_FD) > 0)
    k++;
  env[k] = NULL;
  return env;
}

/* Moves fd above the slots dup2 fills in the child (3 to SHM_FD). */
static int high_fd (int fd) {
  int nfd;
  if (fd > SHM_FD || fd < 0) return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return nfd;
}

/* Starts slot s's process and sends it the init frame. Returns 0, or -1
** with a message in err. Runs on the creating thread, then on the
** supervisor's. */
static int spawn (concur_procsup *ps, slot *s, char *err, size_t errsize) {
  int sv[2], rc;
  pid_t pid;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, def;
  char *argv[3];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    snprintf(err, errsize, "cannot make a socket pair: %s", strerror(errno));
    return -1;
  }
  sv[1] = high_fd(sv[1]);
  if (sv[1] < 0) {
    close(sv[0]);
    snprintf(err, errsize, "out of file descriptors");
    return -1;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
  posix_spawn_file_actions_adddup2(&fa, ps->scriptfd, 4);
  if (concur_shm_fd() >= 0)
    posix_spawn_file_actions_adddup2(&fa, concur_shm_fd(), SHM_FD);
  posix_spawn_file_actions_addclosefrom_np(&fa, SHM_FD + 1);
  posix_spawnattr_init(&at);
  sigemptyset(&none);
  sigemptyset(&def);
  sigaddset(&def, SIGTERM); sigaddset(&def, SIGINT); sigaddset(&def, SIGPIPE);
  sigaddset(&def, SIGCHLD); sigaddset(&def, SIGHUP); sigaddset(&def, SIGQUIT);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  argv[0] = (char *)ps->lua;
  argv[1] = (char *)"/proc/self/fd/4";
  argv[2] = NULL;
  rc = posix_spawnp(&pid, ps->lua, &fa, &at, argv, ps->envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    snprintf(err, errsize, "cannot start '%s': %s", ps->lua, strerror(rc));
    return -1;
  }
  pthread_mutex_lock(&ps->mu);
  s->pid = pid;
  pthread_mutex_unlock(&ps->mu);
  s->fd = sv[0];
  s->state = S_STARTING;
  s->reason = R_NONE;
  s->ntasks = 0;
  s->rlen = 0;
  s->never_ready = 0;
  atomic_store(&s->cancel, 0);
  /* the child reads the init frame when it is ready; a small one fits the
  ** socket buffer, and a big one blocks only until the child reads it */
  if (concur_frame_writebuf(s->fd, 'I', 0, &ps->init) != 0) {
    s->state = S_EXITING;      /* it died at once: reaped as a failed start */
    s->reason = R_CRASH;
    s->never_ready = 1;
    s->kill_at = concur_now() + TERM_GRACE;
    close(s->fd);
    s->fd = -1;
  }
  return 0;
}

/* Closes s's socket; the worker is reaped later (killed at the deadline). */
static void begin_exit (slot *s, int reason, double grace) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  if (s->state == S_STARTING && reason == R_CRASH) s->never_ready = 1;  /* never ready */
  s->state = S_EXITING;
  s->reason = reason;
  s->kill_at = concur_now() + grace;
}

/* Kills s's task (timeout, cancel): SIGTERM now, SIGKILL after the grace. */
static void terminate (slot *s, int reason) {
  kill(s->pid, SIGTERM);
  begin_exit(s, reason, TERM_GRACE);
}

/* Completes what slot s was running, once its process was reaped with
** 'status'. */
static void settle (concur_procsup *ps, slot *s, int status) {
  concur_future *f;
  char what[128], msg[320];
  long pid;
  pthread_mutex_lock(&ps->mu);
  f = s->running;
  s->running = NULL;
  s->status = status;
  pid = (long)s->pid;
  s->pid = 0;
  pthread_mutex_unlock(&ps->mu);
  concur_procsup_describe(status, what, sizeof what);
  if (s->never_ready && ++ps->start_failures >= ps->max_start_failures) {
    snprintf(msg, sizeof msg, "a worker process could not start (%s)", what);
    set_broken(ps, msg);         /* rather than respawning for ever */
  }
  if (f) {
    if (s->reason == R_TIMEOUT)
      fail_future(f, "timeout", "task exceeded its timeout (its worker process was killed)");
    else if (s->reason == R_CANCEL)
      fail_future(f, "cancelled", "task cancelled (its worker process was killed)");
    else {
      int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      if (ps->memory_limit && (sig == SIGKILL || sig == SIGABRT || sig == SIGSEGV ||
                               sig == SIGBUS)) {
        snprintf(msg, sizeof msg, "worker %ld died over its memory_limit of %zu bytes: %s",
                 pid, ps->memory_limit, what);
        fail_future(f, "limit", msg);
      }
      else {
        snprintf(msg, sizeof msg, "worker %ld died: %s", pid, what);
        fail_future(f, "broken", msg);
      }
    }
    concur_obj_unref(&f->obj);
  }
  s->state = S_EMPTY;
}

/* ---- the supervisor thread --------------------------------------------------------- */

/* Gives slot s the next queued task, if any. */
static void dispatch (concur_procsup *ps, slot *s) {
  for (;;) {
    concur_future *f;
    double timeout;
    pthread_mutex_lock(&ps->mu);
    f = ps->head;
    if (f) {
      ps->head = f->next;
      if (ps->head == NULL) ps->tail = NULL;
      f->next = NULL;
      ps->npending--;
    }
    pthread_mutex_unlock(&ps->mu);
    if (f == NULL) return;
    if (!concur_future_start(f, s)) {   /* cancelled meanwhile */
      concur_obj_unref(&f->obj);
      continue;
    }
    atomic_fetch_add(&ps->running, 1);
    atomic_store(&s->cancel, 0);
    pthread_mutex_lock(&ps->mu);
    s->running = f;                     /* the queue's reference */
    pthread_mutex_unlock(&ps->mu);
    s->id = ++ps->nextid;
    timeout = f->timeout >= 0 ? f->timeout : ps->task_timeout;
    s->deadline = timeout >= 0 ? concur_now() + timeout : CONCUR_NODEADLINE;
    s->state = S_BUSY;
    if (concur_frame_writebuf(s->fd, 'T', s->id, &f->task) != 0)
      begin_exit(s, R_CRASH, TERM_GRACE);   /* it died: reaped and reported */
    return;
  }
}

/* Handles one frame from slot s. */
static void on_frame (concur_procsup *ps, slot *s, const concur_frame *h,
                      const char *body) {
  if (h->type == 'H' && s->state == S_STARTING) {
    if (h->id == 0) {
      s->state = S_IDLE;
      ps->start_failures = 0;
      return;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "initializer failed: %.*s", (int)(h->len > 400 ? 400 : h->len),
             body ? body : "");
    set_broken(ps, msg);
    begin_exit(s, R_NONE, EXIT_GRACE);
  }
  else if ((h->type == 'R' || h->type == 'E') && s->state == S_BUSY && h->id == s->id) {
    concur_buf out = CONCUR_BUF_INIT;
    concur_future *f;
    pthread_mutex_lock(&ps->mu);
    f = s->running;
    s->running = NULL;
    pthread_mutex_unlock(&ps->mu);
    if (concur_frame_tobuf(body, h->len, &out) != 0)
      errbuf(&out, "transfer", "the task's results could not be received "
             "(out of memory, or a malformed message)");
    concur_future_finish(f, h->type == 'E', &out);
    concur_obj_unref(&f->obj);
    s->state = S_IDLE;
    if (ps->max_tasks && ++s->ntasks >= ps->max_tasks)
      begin_exit(s, R_NONE, EXIT_GRACE);     /* recycled */
  }
  else
    terminate(s, R_CRASH);   /* it speaks out of turn: not to be trusted */
}

/* Reads what slot s has sent; handles every complete frame. */
static void on_readable (concur_procsup *ps, slot *s) {
  for (;;) {
    ssize_t r;
    size_t off = 0;
    if (s->rcap - s->rlen < 65536) {
      size_t ncap = s->rcap ? s->rcap * 2 : 131072;
      char *nb = realloc(s->rbuf, ncap);
      if (nb == NULL) { terminate(s, R_CRASH); return; }
      s->rbuf = nb;
      s->rcap = ncap;
    }
    r = recv(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {                         /* end of file: it died */
      begin_exit(s, R_CRASH, EXIT_GRACE);
      return;
    }
    s->rlen += (size_t)r;
    while (s->state != S_EXITING && s->rlen - off >= sizeof(concur_frame)) {
      concur_frame h;
      memcpy(&h, s->rbuf + off, sizeof h);
      if (h.len > CONCUR_FRAME_MAX) { terminate(s, R_CRASH); return; }
      if (s->rlen - off - sizeof h < h.len) {   /* incomplete: make room */
        size_t need = sizeof h + h.len;
        if (need > s->rcap) {
          char *nb = realloc(s->rbuf, need + 65536);
          if (nb == NULL) { terminate(s, R_CRASH); return; }
          s->rbuf = nb;
          s->rcap = need + 65536;
        }
        break;
      }
      on_frame(ps, s, &h, s->rbuf + off + sizeof h);
      off += sizeof h + h.len;
    }
    if (s->state == S_EXITING) { s->rlen = 0; return; }
    memmove(s->rbuf, s->rbuf + off, s->rlen - off);
    s->rlen -= off;
    if ((size_t)r < 65536) return;      /* probably drained */
  }
}

static void *supervise (void *arg) {
  concur_procsup *ps = arg;
  struct pollfd *pfd = calloc((size_t)ps->nworkers + 1, sizeof *pfd);
  int *who = calloc((size_t)ps->nworkers + 1, sizeof *who);
  char err[256];
  for (;;) {
    int closing, kill_all, broken, queued, alive = 0, n = 0, timeout = -1;
    double now = concur_now(), next = -1;
    pthread_mutex_lock(&ps->mu);
    closing = ps->closing;
    kill_all = ps->kill_all;
    broken = ps->broken != NULL;
    queued = ps->head != NULL;
    pthread_mutex_unlock(&ps->mu);
    for (int i = 0; i < ps->nworkers; i++) {
      slot *s = &ps->slots[i];
      if (s->state == S_EMPTY && !broken && (!closing || queued) && !kill_all) {
        if (spawn(ps, s, err, sizeof err) != 0) {
          set_broken(ps, err);
          broken = 1;
        }
      }
      if (s->state == S_IDLE && queued && !kill_all) dispatch(ps, s);
      if ((s->state == S_IDLE || s->state == S_STARTING) && (kill_all || broken ||
          (closing && !queued && s->state == S_IDLE)))
        begin_exit(s, R_NONE, kill_all ? TERM_GRACE : EXIT_GRACE);
      if (s->state == S_BUSY) {
        if (atomic_load(&s->cancel) || kill_all) terminate(s, R_CANCEL);
        else if (s->deadline >= 0 && now >= s->deadline) terminate(s, R_TIMEOUT);
        else if (s->deadline >= 0 && (next < 0 || s->deadline < next)) next = s->deadline;
      }
      if (s->state == S_EXITING) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid || (r < 0 && errno == ECHILD)) {
          settle(ps, s, r == s->pid ? st : 0);
          timeout = 0;          /* go round again: replace it */
        }
        else {
          if (now >= s->kill_at) {
            kill(s->pid, SIGKILL);
            s->kill_at = now + 1.0;
          }
          if (timeout != 0) timeout = 2;    /* poll for its end */
        }
      }
      if (s->state != S_EMPTY) alive++;
      if (s->fd >= 0) {
        pfd[n].fd = s->fd;
        pfd[n].events = POLLIN;
        who[n++] = i;
      }
    }
    if (alive == 0 && (closing || broken)) {
      pthread_mutex_lock(&ps->mu);
      queued = ps->head != NULL;
      pthread_mutex_unlock(&ps->mu);
      if (!queued || broken) break;
      continue;                /* a task came in while closing: run it */
    }
    if (timeout < 0 && next >= 0) {   /* sleep until the next task deadline */
      double ms = (next - now) * 1000 + 1;
      timeout = ms > 1e6 ? 1000000 : (int)ms;
    }
    pfd[n].fd = ps->wakefd;
    pfd[n].events = POLLIN;
    if (poll(pfd, (nfds_t)n + 1, timeout) <= 0) continue;
    if (pfd[n].revents) {
      uint64_t v;
      ssize_t rr = read(ps->wakefd, &v, sizeof v);
      (void)rr;
    }
    for (int k = 0; k < n; k++) {
      slot *s = &ps->slots[who[k]];
      if (pfd[k].revents && s->fd == pfd[k].fd) on_readable(ps, s);
    }
  }
  free(pfd);
  free(who);
  pthread_mutex_lock(&ps->mu);
  ps->ended = 1;
  pthread_cond_broadcast(&ps->ended_cv);
  pthread_mutex_unlock(&ps->mu);
  concur_obj_unref(&ps->obj);
  return NULL;
}

/* ---- the interface ------------------------------------------------------------- */

concur_procsup *concur_procsup_new (concur_procopts *o, char **err) {
  concur_procsup *ps = calloc(1, sizeof *ps);
  char msg[256];
  const char *lua = getenv("CONCUR_LUA");
  *err = NULL;
  if (ps) ps->slots = calloc((size_t)o->workers, sizeof *ps->slots);
  if (ps == NULL || ps->slots == NULL) {
    free(ps);
    concur_buf_free(&o->init);
    *err = strdup("not enough memory");
    return NULL;
  }
  concur_obj_init(&ps->obj, &concur_procsup_type);
  concur_mutex_init(&ps->mu, 0);
  concur_cond_init(&ps->ended_cv, 0);
  concur_buf_move(&ps->init, &o->init);
  ps->nworkers = o->workers;
  ps->max_tasks = o->max_tasks;
  ps->task_timeout = o->task_timeout;
  ps->memory_limit = o->memory_limit;
  ps->max_start_failures = o->start_retries > 0 ? o->start_retries : 1;
  ps->lua = lua && *lua ? lua : "lua5.4";
  ps->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ps->scriptfd = high_fd(memfd_create("concur-worker", MFD_CLOEXEC));
  ps->envp = make_env(o->path, o->cpath, o->memory_limit);
  for (int i = 0; i < ps->nworkers; i++) {
    ps->slots[i].ps = ps;
    ps->slots[i].fd = -1;
    ps->slots[i].status = -1;
  }
  if (ps->wakefd < 0 || ps->scriptfd < 0 || ps->envp == NULL ||
      write(ps->scriptfd, SCRIPT, sizeof SCRIPT - 1) != (ssize_t)(sizeof SCRIPT - 1)) {
    *err = strdup("cannot set up the worker processes (out of descriptors or memory)");
    concur_obj_unref(&ps->obj);
    return NULL;
  }
  for (int i = 0; i < ps->nworkers; i++)
    if (spawn(ps, &ps->slots[i], msg, sizeof msg) != 0) {
      set_broken(ps, msg);   /* the supervisor reaps what did start */
      break;
    }
  concur_obj_ref(&ps->obj);  /* the thread's */
  if (pthread_create(&ps->thread, NULL, supervise, ps) != 0) {
    for (int i = 0; i < ps->nworkers; i++) {
      slot *s = &ps->slots[i];
      if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
      }
    }
    concur_obj_unref(&ps->obj);
    concur_obj_unref(&ps->obj);
    *err = strdup("cannot start the supervisor thread");
    return NULL;
  }
  /* NOTE: an initializer that fails, or workers that die while starting,
  ** mark the pool broken later, on the supervisor's thread: submit and the
  ** futures report it, whichever comes first (never the constructor, which
  ** would make it depend on timing) */
  return ps;
}

int concur_procsup_submit (concur_procsup *ps, concur_future *f, char *msg,
                           size_t msgsize) {
  pthread_mutex_lock(&ps->mu);
  if (ps->closing) {
    int broken = ps->broken != NULL;
    snprintf(msg, msgsize, "%s", broken ? ps->broken : "");
    pthread_mutex_unlock(&ps->mu);
    return broken ? -2 : -1;
  }
  f->next = NULL;
  if (ps->tail) ps->tail->next = f;
  else ps->head = f;
  ps->tail = f;
  ps->npending++;
  pthread_mutex_unlock(&ps->mu);
  wake(ps);
  return 0;
}

void concur_procsup_stop (concur_procsup *ps, int cancel_pending, int kill_running) {
  concur_future *q = NULL, **run = NULL;
  int nrun = 0;
  if (kill_running) run = calloc((size_t)ps->nworkers, sizeof *run);
  pthread_mutex_lock(&ps->mu);
  ps->closing = 1;
  if (kill_running) ps->kill_all = 1;
  if (cancel_pending) q = take_queue(ps);
  if (run)
    for (int i = 0; i < ps->nworkers; i++)
      if (ps->slots[i].running)
        run[nrun++] = (concur_future *)concur_obj_ref(&ps->slots[i].running->obj);
  pthread_mutex_unlock(&ps->mu);
  fail_list(q, NULL, NULL);
  for (int i = 0; i < nrun; i++) {
    concur_future_cancel(run[i]);
    concur_obj_unref(&run[i]->obj);
  }
  free(run);
  wake(ps);
}

int concur_procsup_wait (concur_procsup *ps, double deadline) {
  int rc = CONCUR_OK, join = 0;
  pthread_mutex_lock(&ps->mu);
  while (!ps->ended) {
    rc = concur_cond_wait(&ps->ended_cv, &ps->mu, deadline);
    if (rc != CONCUR_OK) break;
  }
  if (ps->ended) {
    rc = CONCUR_OK;
    if (!ps->joined) join = ps->joined = 1;
  }
  pthread_mutex_unlock(&ps->mu);
  if (join) pthread_join(ps->thread, NULL);
  return rc;
}

int concur_procsup_over (concur_procsup *ps) {
  int over;
  pthread_mutex_lock(&ps->mu);
  over = ps->ended;
  pthread_mutex_unlock(&ps->mu);
  return over;
}

void concur_procsup_stats (concur_procsup *ps, long v[6]) {
  pthread_mutex_lock(&ps->mu);
  v[0] = ps->nworkers;
  v[1] = (long)ps->npending;
  pthread_mutex_unlock(&ps->mu);
  v[2] = atomic_load(&ps->running);
  v[3] = atomic_load(&ps->completed);
  v[4] = atomic_load(&ps->failed);
  v[5] = atomic_load(&ps->cancelled);
}

int concur_procsup_nworkers (concur_procsup *ps) { return ps->nworkers; }

pid_t concur_procsup_pid (concur_procsup *ps, int i) {
  pid_t pid;
  pthread_mutex_lock(&ps->mu);
  pid = ps->slots[i].pid;
  pthread_mutex_unlock(&ps->mu);
  return pid;
}

int concur_procsup_kill (concur_procsup *ps, int i, int sig) {
  int rc = -1;
  pthread_mutex_lock(&ps->mu);   /* the pid cannot be reaped (and reused) meanwhile */
  if (ps->slots[i].pid > 0) rc = kill(ps->slots[i].pid, sig);
  else errno = ESRCH;
  pthread_mutex_unlock(&ps->mu);
  return rc;
}

int concur_procsup_status (concur_procsup *ps, int i) {
  int st;
  pthread_mutex_lock(&ps->mu);
  st = ps->slots[i].status;
  pthread_mutex_unlock(&ps->mu);
  return st;
}
