/*
** procsup.c: the thread that supervises worker processes (procsup.h).
**
** The supervisor thread is the only one that touches a slot's process (fd,
** buffers, deadlines) and the only one that reaps. It never blocks on a
** worker: it reads with MSG_DONTWAIT, and a frame it sends goes out as the
** socket takes it (the rest waits in the slot, sent when poll says the
** socket has room), so a stopped or wedged worker holds up nothing but its
** own task. Under ps->mu: the queue, 'closing', 'broken', each slot's
** 'task', 'pid' and 'status' (so Lua may read and kill a pid that is never
** a reaped one). Lock order: a future's mu, then ps->mu
** (op_dropped); interrupt() runs with the future's mu held and only sets a
** flag and writes the eventfd.
**
** Slot life: EMPTY -> STARTING (spawned; 'I' queued) -> IDLE (got 'H') <->
** BUSY (sent 'T') ... -> EXITING (socket shut for writing; SIGKILL at
** kill_at) -> reaped -> EMPTY. An exiting worker's socket is read to its
** end, and the references in what it sent are dropped. Once reaped, what
** the worker still held in the arena is dropped (its holdings table,
** holdings.h), and its task is completed with what the wait status tells;
** but a task the worker never received (its table does not name it as
** begun: the frame was still on its way) goes back to the head of the
** queue (pending again), for another worker. A worker records the task it
** received in shared memory, so this costs no message.
**
** Submitting straight to an idle worker. So that a task costs no hop
** through this thread, the supervisor offers each idle slot with nothing
** left to send and an empty queue ('claimable', under ps->mu), and submit
** takes it: it reserves the slot (under mu), starts the future with it as
** the worker (the future's mu, never under ps->mu), then, under mu again,
** sends the frame itself (MSG_DONTWAIT) and hands the slot over ('handed':
** the task, its id and deadline, what the socket did not take). The
** supervisor adopts a handed slot (it becomes BUSY) before it looks at the
** slot in any other way: in tend, before reading its frames, and in
** begin_exit, which also takes back a reservation not yet used (the
** submitter then queues its task as usual). The submitter only touches the
** socket under mu with the slot reserved, and the supervisor takes the
** reservation back under mu before it shuts or closes the socket, so the
** two never use it at once.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include "procsup.h"
#include "procspawn.h"
#include "holdings.h"
#include "shobj.h"
#include "sys.h"
#include "wait.h"

enum { S_EMPTY, S_STARTING, S_IDLE, S_BUSY, S_EXITING };
enum { R_NONE, R_CRASH, R_TIMEOUT, R_CANCEL };

#define TERM_GRACE 0.1     /* SIGTERM, then SIGKILL after this */
#define EXIT_GRACE 2.0     /* a worker told to exit gets this long */
#define MAX_TRIES 3        /* workers dying before a task starts, before it fails */

typedef struct slot {
  concur_procsup *ps;
  int state, reason, fd;
  int eof;                   /* its socket was read to the end (or is unreadable) */
  pid_t pid;                 /* under ps->mu */
  int status;                /* last reaped wait status, -1: none; under mu */
  concur_future *task;       /* the task handed to it (running), one
                             ** reference; under mu */
  uint64_t id;
  long ntasks;
  double deadline, kill_at;
  int never_ready;           /* it died before its hello */
  atomic_int cancel;         /* the running future was cancelled */
  concur_shoff holdings;     /* its holdings table, 0: none */
  char *rbuf;                /* what it sent, not yet handled */
  size_t rlen, rcap;
  char *wpre;                /* the frame being sent: header and references */
  const char *wbody;         /* then its codec bytes (a future's task or the init) */
  size_t wprelen, wbodylen, wsent;
  /* submitting straight to the worker (see the top); all under ps->mu */
  int claimable;             /* idle, nothing to send: submit may take it */
  int reserved;              /* a submitter took it and starts its future */
  int handed;                /* a submitter sent it a task: to adopt */
  uint64_t h_id;
  double h_deadline;
  char *h_wpre;              /* what the socket did not take, or NULL */
  const char *h_wbody;
  size_t h_wprelen, h_wbodylen, h_wsent;
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
  struct pollfd *pfd;        /* the supervisor's, one per slot and the eventfd */
  int *who;                  /* the slot of each pfd */
  int single;                /* a Process: its task never moves to another */
  long max_tasks;
  double task_timeout;
  size_t memory_limit;
  concur_buf init;
  char **envp;
  char *lua;
  _Atomic uint64_t nextid;
  int start_failures, max_start_failures;   /* in a row; then broken */
  atomic_long running, completed, failed, cancelled;
};

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

static void fail_future (concur_future *f, const char *kind, const char *msg) {
  concur_buf b = CONCUR_BUF_INIT;
  concur_wire_error(&b, kind, msg);
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
    free(ps->slots[i].wpre);
    free(ps->slots[i].h_wpre);
    if (ps->slots[i].fd >= 0) close(ps->slots[i].fd);
  }
  concur_procspawn_freeenv(ps->envp);
  if (ps->wakefd >= 0) close(ps->wakefd);
  if (ps->scriptfd >= 0) close(ps->scriptfd);
  concur_buf_free(&ps->init);
  pthread_mutex_destroy(&ps->mu);
  pthread_cond_destroy(&ps->ended_cv);
  free(ps->lua);
  free(ps->broken);
  free(ps->slots);
  free(ps->pfd);
  free(ps->who);
  free(ps);
}

const concur_objtype concur_procsup_type = { "concur.ProcessPool", procsup_destroy, NULL };

/* A pending future was cancelled: unlink it (it may already be gone: then
** it was handed to a worker, and the supervisor stops that worker). */
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
  if (found) concur_obj_unref(&f->obj);
  wake(ps);     /* a closing pool may be waiting for its queue to empty */
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
  snprintf(msg, sizeof msg, ps->single ? "%s" : "pool is broken: %s",
           ps->broken ? ps->broken : why);   /* a Process is no pool */
  q = take_queue(ps);
  pthread_mutex_unlock(&ps->mu);
  fail_list(q, "broken", msg);
}

/* Puts f (a reference, pending again), which never reached the worker it
** was handed to, back at the head of the queue; or fails it when too many
** workers died with it, or when the pool can no longer run it. */
static void requeue (concur_procsup *ps, concur_future *f, const char *what) {
  char msg[640];
  pthread_mutex_lock(&ps->mu);
  if (ps->broken == NULL && !ps->kill_all && ++f->tries < MAX_TRIES) {
    f->next = ps->head;
    ps->head = f;
    if (ps->tail == NULL) ps->tail = f;
    ps->npending++;
    pthread_mutex_unlock(&ps->mu);
    return;
  }
  if (ps->broken) snprintf(msg, sizeof msg, "pool is broken: %s", ps->broken);
  else if (ps->kill_all) msg[0] = '\0';
  else snprintf(msg, sizeof msg, "%d worker processes died before the task reached "
                "them (the last: %s)", f->tries, what);
  pthread_mutex_unlock(&ps->mu);
  if (msg[0]) fail_future(f, "broken", msg);
  else concur_future_cancel(f);
  concur_obj_unref(&f->obj);
}

/* ---- sending --------------------------------------------------------------------- */

/* Sends what the socket takes of slot s's frame. Returns 0 (the rest waits
** for room), or -1 when the worker is gone. */
static int flush (slot *s) {
  while (s->wpre) {
    struct iovec iov[2];
    struct msghdr m;
    size_t at = s->wsent;
    int n = 0;
    ssize_t w;
    if (at < s->wprelen) {
      iov[n].iov_base = s->wpre + at;
      iov[n++].iov_len = s->wprelen - at;
      at = 0;
    }
    else at -= s->wprelen;
    if (at < s->wbodylen) {
      iov[n].iov_base = (char *)s->wbody + at;
      iov[n++].iov_len = s->wbodylen - at;
    }
    if (n == 0) {                      /* all of it went out */
      free(s->wpre);
      s->wpre = NULL;
      s->wbody = NULL;
      break;
    }
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)n;
    w = sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    s->wsent += (size_t)w;
  }
  return 0;
}

/* Starts sending b to slot s as a frame, its references lent (b must
** outlive the send: the init, or the task of the future s holds). Returns
** 0, -1 when the worker is gone, -2 when the frame cannot be made (too
** long, or out of memory). */
static int send_frame (slot *s, uint32_t type, uint64_t id, const concur_buf *b) {
  s->wpre = concur_frame_lend(type, id, b, &s->wprelen);
  if (s->wpre == NULL) return -2;
  s->wbody = b->data;
  s->wbodylen = b->len;
  s->wsent = 0;
  return flush(s);
}

/* ---- submitting straight to a worker ---------------------------------------------- */

/* Makes a slot a submitter handed a task BUSY with it; ps->mu held. */
static void adopt_locked (slot *s) {
  s->claimable = 0;
  if (!s->handed) return;
  s->handed = 0;
  s->state = S_BUSY;
  s->id = s->h_id;
  s->deadline = s->h_deadline;
  s->wpre = s->h_wpre;
  s->wbody = s->h_wbody;
  s->wprelen = s->h_wprelen;
  s->wbodylen = s->h_wbodylen;
  s->wsent = s->h_wsent;
  s->h_wpre = NULL;
}

static void adopt (slot *s) {
  pthread_mutex_lock(&s->ps->mu);
  adopt_locked(s);
  pthread_mutex_unlock(&s->ps->mu);
}

/* Offers an idle slot with nothing to send to submitters, when nothing is
** queued (queued tasks go first, in order). */
static void offer (concur_procsup *ps, slot *s) {
  pthread_mutex_lock(&ps->mu);
  if (s->state == S_IDLE && s->wpre == NULL && !s->reserved && !s->handed
      && ps->head == NULL && !ps->closing)
    s->claimable = 1;
  pthread_mutex_unlock(&ps->mu);
}

/* Sends what the socket takes of a frame, from *sent on (MSG_DONTWAIT);
** stops at the first refusal (the supervisor sends the rest, or finds the
** worker gone). */
static void send_some (int fd, const char *pre, size_t prelen, const char *body,
                       size_t bodylen, size_t *sent) {
  for (;;) {
    struct iovec iov[2];
    struct msghdr m;
    size_t at = *sent;
    int n = 0;
    ssize_t w;
    if (at < prelen) {
      iov[n].iov_base = (char *)pre + at;
      iov[n++].iov_len = prelen - at;
      at = 0;
    }
    else at -= prelen;
    if (at < bodylen) {
      iov[n].iov_base = (char *)body + at;
      iov[n++].iov_len = bodylen - at;
    }
    if (n == 0) return;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)n;
    w = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    *sent += (size_t)w;
  }
}

/*
** Hands f (the caller's reference) straight to an idle worker, if one is
** offered. Returns 1 when it did; 0 when there was none, or the frame could
** not be made, or the worker went away meanwhile (f is then as it was,
** to be queued).
*/
static int hand (concur_procsup *ps, concur_future *f) {
  slot *s = NULL;
  char *pre;
  size_t prelen, sent = 0;
  uint64_t id;
  double timeout;
  int ok;
  pthread_mutex_lock(&ps->mu);
  if (ps->head == NULL && !ps->closing)
    for (int i = 0; i < ps->nworkers; i++)
      if (ps->slots[i].claimable) {
        s = &ps->slots[i];
        s->claimable = 0;
        s->reserved = 1;
        break;
      }
  pthread_mutex_unlock(&ps->mu);
  if (s == NULL) return 0;
  id = atomic_fetch_add(&ps->nextid, 1) + 1;
  atomic_store(&s->cancel, 0);
  pre = concur_frame_lend('T', id, &f->task, &prelen);
  ok = pre != NULL && concur_future_start(f, s);        /* f is new: it starts */
  pthread_mutex_lock(&ps->mu);
  /* still ours (and no close came meanwhile): send and hand over */
  if (ok && s->reserved && !ps->closing) {
    s->reserved = 0;
    s->task = f;
    s->h_id = id;
    timeout = f->timeout >= 0 ? f->timeout : ps->task_timeout;
    s->h_deadline = timeout >= 0 ? concur_now() + timeout : CONCUR_NODEADLINE;
    send_some(s->fd, pre, prelen, f->task.data, f->task.len, &sent);
    s->h_wbody = f->task.data;
    s->h_wprelen = prelen;
    s->h_wbodylen = f->task.len;
    s->h_wsent = sent;
    if (sent < prelen + f->task.len) s->h_wpre = pre;   /* the rest: the supervisor's */
    else {
      free(pre);
      pre = NULL;
    }
    s->handed = 1;
    atomic_fetch_add(&ps->running, 1);
    pthread_mutex_unlock(&ps->mu);
    /* the supervisor must know of a deadline, or of a frame to finish */
    if (s->h_deadline >= 0 || pre != NULL) wake(ps);
    return 1;
  }
  s->reserved = 0;                         /* taken back: the worker is going */
  pthread_mutex_unlock(&ps->mu);
  free(pre);
  if (ok) concur_future_unstart(f);
  return 0;
}

/* ---- starting and ending workers ----------------------------------------------- */

/* Shuts s's socket for writing (the worker reads its end and exits); the
** worker is reaped later (killed at the deadline). What it still sends is
** read and dropped. */
static void begin_exit (slot *s, int reason, double grace) {
  pthread_mutex_lock(&s->ps->mu);
  adopt_locked(s);               /* its task is settled with the others */
  s->reserved = 0;               /* a submitter's reservation: taken back */
  pthread_mutex_unlock(&s->ps->mu);
  if (s->fd >= 0) shutdown(s->fd, SHUT_WR);
  free(s->wpre);
  s->wpre = NULL;
  if (s->state == S_STARTING && reason == R_CRASH) s->never_ready = 1;
  s->state = S_EXITING;
  s->reason = reason;
  s->kill_at = concur_now() + grace;
}

/* Kills s's task (timeout, cancel): SIGTERM now, SIGKILL after the grace. */
static void terminate (slot *s, int reason) {
  kill(s->pid, SIGTERM);
  begin_exit(s, reason, TERM_GRACE);
}

/* Starts slot s's process and queues its init frame. Returns 0, or -1 with
** a message in err (*resource: descriptors or memory ran out). */
static int spawn (concur_procsup *ps, slot *s, char *err, size_t errsize,
                  int *resource) {
  pid_t pid;
  int fd;
  concur_shoff holdings = concur_holdings_new();
  if (concur_procspawn(ps->lua, ps->envp, ps->scriptfd, &pid, &fd, err, errsize,
                       resource) != 0) {
    concur_shobj_reclaim(holdings);
    return -1;
  }
  pthread_mutex_lock(&ps->mu);
  s->pid = pid;
  pthread_mutex_unlock(&ps->mu);
  s->fd = fd;
  s->eof = 0;
  s->holdings = holdings;
  s->state = S_STARTING;
  s->reason = R_NONE;
  s->ntasks = 0;
  s->rlen = 0;
  s->never_ready = 0;
  atomic_store(&s->cancel, 0);
  if (send_frame(s, 'I', holdings, &ps->init) != 0)
    begin_exit(s, R_CRASH, TERM_GRACE);   /* reaped as a failed start */
  return 0;
}

/* Reads what slot s has sent; handles every complete frame (an exiting
** worker's are dropped). */
static void on_readable (concur_procsup *ps, slot *s);

/* What a dead worker left in its socket is read to the end and dropped,
** with the references of a frame it was cut short in. */
static void drain (concur_procsup *ps, slot *s) {
  if (s->fd >= 0 && !s->eof) on_readable(ps, s);
  if (s->rlen >= sizeof(concur_frame)) {
    concur_frame h;
    memcpy(&h, s->rbuf, sizeof h);
    if (h.type == 'R' || h.type == 'E')
      concur_frame_drop(s->rbuf + sizeof h, s->rlen - sizeof h);
  }
  s->rlen = 0;
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  free(s->wpre);
  s->wpre = NULL;
}

/* Completes what slot s was running, once its process was reaped with
** 'status'. */
static void settle (concur_procsup *ps, slot *s, int status) {
  concur_future *f;
  char what[128], msg[320];
  int received;
  long pid;
  drain(ps, s);
  /* without a table, a task counts as received (it fails, as it may have run) */
  received = s->holdings == 0 || concur_holdings_begun(s->holdings) == s->id;
  concur_shobj_reclaim(s->holdings);   /* what it held when it died */
  s->holdings = 0;
  pthread_mutex_lock(&ps->mu);
  f = s->task;
  s->task = NULL;
  s->status = status;
  pid = (long)s->pid;
  s->pid = 0;
  pthread_mutex_unlock(&ps->mu);
  concur_procsup_describe(status, what, sizeof what);
  if (s->never_ready && ++ps->start_failures >= ps->max_start_failures) {
    if (ps->single)              /* a Process: killed as it started, say */
      snprintf(msg, sizeof msg, "process %ld %s", pid, what);
    else
      snprintf(msg, sizeof msg, "a worker process could not start (%s; it runs %s)",
               what, ps->lua);
    set_broken(ps, msg);         /* rather than respawning for ever */
  }
  if (f && !received && !ps->single && (s->reason == R_CRASH || s->reason == R_NONE)
      && concur_future_unstart(f)) {
    atomic_fetch_sub(&ps->running, 1);
    snprintf(msg, sizeof msg, "worker %ld %s", pid, what);
    requeue(ps, f, msg);         /* it never ran: another worker will */
  }
  else if (f) {
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
        snprintf(msg, sizeof msg, ps->single ? "process %ld %s"
                 : "worker %ld died: %s", pid, what);
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
    int rc;
    pthread_mutex_lock(&ps->mu);
    adopt_locked(s);
    f = s->state == S_IDLE && !s->reserved ? ps->head : NULL;
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
    s->task = f;                        /* the queue's reference */
    pthread_mutex_unlock(&ps->mu);
    s->id = atomic_fetch_add(&ps->nextid, 1) + 1;
    timeout = f->timeout >= 0 ? f->timeout : ps->task_timeout;
    s->deadline = timeout >= 0 ? concur_now() + timeout : CONCUR_NODEADLINE;
    s->state = S_BUSY;
    rc = send_frame(s, 'T', s->id, &f->task);
    if (rc == -1)
      begin_exit(s, R_CRASH, TERM_GRACE);   /* it died: the task goes back */
    else if (rc == -2) {
      pthread_mutex_lock(&ps->mu);
      s->task = NULL;
      pthread_mutex_unlock(&ps->mu);
      s->state = S_IDLE;
      fail_future(f, "limit", "the task cannot be sent to a worker process "
                  "(too large, or out of memory)");
      concur_obj_unref(&f->obj);
      continue;
    }
    return;
  }
}

/* Handles one frame from slot s (not exiting). */
static void on_frame (concur_procsup *ps, slot *s, const concur_frame *h,
                      const char *body) {
  if (h->type == 'H' && s->state == S_STARTING) {
    char msg[512];
    if (h->id == 0) {
      s->state = S_IDLE;
      ps->start_failures = 0;
      return;
    }
    snprintf(msg, sizeof msg, "initializer failed: %.*s", (int)(h->len > 400 ? 400 : h->len),
             body ? body : "");
    set_broken(ps, msg);
    begin_exit(s, R_NONE, EXIT_GRACE);
  }
  else if ((h->type == 'R' || h->type == 'E') && s->state == S_BUSY && h->id == s->id) {
    concur_buf out = CONCUR_BUF_INIT;
    concur_future *f;
    pthread_mutex_lock(&ps->mu);
    f = s->task;
    s->task = NULL;
    pthread_mutex_unlock(&ps->mu);
    if (concur_frame_tobuf(body, h->len, &out, 0) != 0)
      concur_wire_error(&out, "transfer", "the task's results could not be received "
             "(out of memory, or a malformed message)");
    s->state = S_IDLE;
    if (ps->max_tasks && ++s->ntasks >= ps->max_tasks)
      begin_exit(s, R_NONE, EXIT_GRACE);     /* recycled */
    else offer(ps, s);     /* before the waiter wakes: its next task comes here */
    concur_future_finish(f, h->type == 'E', &out);
    concur_obj_unref(&f->obj);
  }
  else {
    if (h->type == 'R' || h->type == 'E') concur_frame_drop(body, h->len);
    terminate(s, R_CRASH);   /* it speaks out of turn: not to be trusted */
  }
}

static void on_readable (concur_procsup *ps, slot *s) {
  if (s->state == S_IDLE) adopt(s);   /* a result may answer a handed task */
  for (;;) {
    ssize_t r;
    size_t off = 0;
    if (s->rcap - s->rlen < 65536) {
      size_t ncap = s->rcap ? s->rcap * 2 : 131072;
      char *nb = realloc(s->rbuf, ncap);
      if (nb == NULL) goto unreadable;
      s->rbuf = nb;
      s->rcap = ncap;
    }
    r = recv(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {                         /* end of file: it died */
      s->eof = 1;
      if (s->state != S_EXITING) begin_exit(s, R_CRASH, EXIT_GRACE);
      return;
    }
    s->rlen += (size_t)r;
    while (s->rlen - off >= sizeof(concur_frame)) {
      concur_frame h;
      const char *body = s->rbuf + off + sizeof h;
      memcpy(&h, s->rbuf + off, sizeof h);
      if (h.len > CONCUR_FRAME_MAX) goto unreadable;
      if (s->rlen - off - sizeof h < h.len) {   /* incomplete: make room */
        size_t need = sizeof h + h.len;
        if (need > s->rcap) {
          char *nb = realloc(s->rbuf, need + 65536);
          if (nb == NULL) goto unreadable;
          s->rbuf = nb;
          s->rcap = need + 65536;
        }
        break;
      }
      if (s->state != S_EXITING) on_frame(ps, s, &h, body);
      else if (h.type == 'R' || h.type == 'E') concur_frame_drop(body, h.len);
      off += sizeof h + h.len;
    }
    memmove(s->rbuf, s->rbuf + off, s->rlen - off);
    s->rlen -= off;
    if ((size_t)r < 65536) return;      /* probably drained */
  }
unreadable:           /* malformed, or no memory to read it: stop reading */
  s->eof = 1;
  s->rlen = 0;
  if (s->state != S_EXITING) terminate(s, R_CRASH);
}

/* One round of slot s's life; adds to *alive, and lowers *timeout (ms) and
** *next (the next task deadline) as it needs. */
static void tend (concur_procsup *ps, slot *s, int closing, int kill_all, int *broken,
                  int queued, double now, double *next, int *timeout) {
  char err[512];
  int resource;
  if (s->state == S_IDLE) adopt(s);
  if (s->state == S_EMPTY && !*broken && (!closing || queued) && !kill_all) {
    if (spawn(ps, s, err, sizeof err, &resource) != 0) {
      set_broken(ps, err);
      *broken = 1;
    }
  }
  if (s->state == S_IDLE && queued && !kill_all) dispatch(ps, s);
  if (s->state == S_IDLE && s->wpre == NULL && !closing && !kill_all && !*broken)
    offer(ps, s);
  if ((s->state == S_IDLE || s->state == S_STARTING) && (kill_all || *broken ||
      (closing && !queued && s->state == S_IDLE)))
    begin_exit(s, R_NONE, kill_all ? TERM_GRACE : EXIT_GRACE);
  if (s->state == S_BUSY) {
    if (atomic_load(&s->cancel) || kill_all) terminate(s, R_CANCEL);
    else if (s->deadline >= 0 && now >= s->deadline) terminate(s, R_TIMEOUT);
    else if (s->deadline >= 0 && (*next < 0 || s->deadline < *next)) *next = s->deadline;
  }
  if (s->state == S_EXITING) {
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid || (r < 0 && errno == ECHILD)) {
      settle(ps, s, r == s->pid ? st : 0);
      *timeout = 0;            /* go round again: replace it */
    }
    else {
      if (now >= s->kill_at) {
        kill(s->pid, SIGKILL);
        s->kill_at = now + 1.0;
      }
      if (*timeout != 0) *timeout = 2;    /* poll for its end */
    }
  }
}

static void *supervise (void *arg) {
  concur_procsup *ps = arg;
  struct pollfd *pfd = ps->pfd;
  int *who = ps->who;
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
      tend(ps, s, closing, kill_all, &broken, queued, now, &next, &timeout);
      if (s->state != S_EMPTY) alive++;
      if (s->fd >= 0 && !s->eof) {
        pfd[n].fd = s->fd;
        pfd[n].events = (short)(POLLIN | (s->wpre && s->state != S_EXITING ? POLLOUT : 0));
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
      if (s->fd != pfd[k].fd || s->eof) continue;
      if ((pfd[k].revents & POLLOUT) && s->wpre && s->state != S_EXITING
          && flush(s) != 0)
        begin_exit(s, R_CRASH, EXIT_GRACE);   /* it died: its EOF follows */
      if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) on_readable(ps, s);
    }
  }
  pthread_mutex_lock(&ps->mu);
  ps->ended = 1;
  pthread_cond_broadcast(&ps->ended_cv);
  pthread_mutex_unlock(&ps->mu);
  concur_obj_unref(&ps->obj);
  return NULL;
}

/* ---- the interface ------------------------------------------------------------- */

/* Kills and reaps what the slots started (when the pool cannot start). */
static void reap_started (concur_procsup *ps) {
  for (int i = 0; i < ps->nworkers; i++) {
    slot *s = &ps->slots[i];
    if (s->pid > 0) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, NULL, 0);
      s->pid = 0;
      concur_shobj_reclaim(s->holdings);
      s->holdings = 0;
    }
  }
}

concur_procsup *concur_procsup_new (concur_procopts *o, char *err, size_t errsize,
                                    const char **kind) {
  concur_procsup *ps;
  char lua[PATH_MAX], why[160];
  int resource = 0;
  *kind = "broken";
  if (concur_procspawn_lua(lua, sizeof lua, err, errsize) != 0) {
    concur_buf_free(&o->init);
    *kind = "argument";
    return NULL;
  }
  ps = calloc(1, sizeof *ps);
  if (ps) {
    ps->slots = calloc((size_t)o->workers, sizeof *ps->slots);
    ps->pfd = calloc((size_t)o->workers + 1, sizeof *ps->pfd);
    ps->who = calloc((size_t)o->workers + 1, sizeof *ps->who);
    ps->lua = strdup(lua);
  }
  if (ps == NULL || !ps->slots || !ps->pfd || !ps->who || !ps->lua) {
    if (ps) {
      free(ps->slots);
      free(ps->pfd);
      free(ps->who);
      free(ps->lua);
    }
    free(ps);
    concur_buf_free(&o->init);
    snprintf(err, errsize, "not enough memory");
    *kind = "limit";
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
  ps->single = o->single;
  ps->wakefd = ps->scriptfd = -1;
  for (int i = 0; i < ps->nworkers; i++) {
    ps->slots[i].ps = ps;
    ps->slots[i].fd = -1;
    ps->slots[i].status = -1;
  }
  errno = 0;
  if ((ps->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0
      || (ps->scriptfd = concur_procspawn_script()) < 0
      || (ps->envp = concur_procspawn_env(o->path, o->cpath, o->memory_limit)) == NULL) {
    int e = errno ? errno : ENOMEM;
    concur_syserr(e, why, sizeof why);
    snprintf(err, errsize, "cannot set up the worker processes: %s", why);
    *kind = e == EMFILE || e == ENFILE || e == ENOMEM ? "limit" : "broken";
    concur_obj_unref(&ps->obj);
    return NULL;
  }
  for (int i = 0; i < ps->nworkers; i++)
    if (spawn(ps, &ps->slots[i], err, errsize, &resource) != 0) {
      if (resource) *kind = "limit";
      reap_started(ps);
      concur_obj_unref(&ps->obj);
      return NULL;
    }
  concur_obj_ref(&ps->obj);  /* the thread's */
  if (concur_thread_create(&ps->thread, supervise, ps) != 0) {
    reap_started(ps);
    concur_obj_unref(&ps->obj);
    concur_obj_unref(&ps->obj);
    snprintf(err, errsize, "cannot start the supervisor thread");
    *kind = "limit";
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
  if (hand(ps, f)) return 0;
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
      if (ps->slots[i].task)
        run[nrun++] = (concur_future *)concur_obj_ref(&ps->slots[i].task->obj);
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
