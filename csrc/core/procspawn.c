/*
** procspawn.c: starting worker processes (procspawn.h).
**
** posix_spawn forks with CLONE_VFORK and execs at once, so a lock held by
** another thread of the parent at that moment never matters. The child is
** the Lua interpreter running a tiny script (held in a memfd) that calls
** concur.core.process_worker(); see procworker.c for what it does next.
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "procspawn.h"
#include "arena.h"
#include "sys.h"
#include "wait.h"
#include "wire.h"

extern char **environ;

#define SOCK_FD 3          /* the worker's end of its socket */
#define SCRIPT_FD 4        /* its script */
#define SHM_FD 5           /* where a worker finds the shared arena */

static const char SCRIPT[] = "require('concur.core').process_worker()\n";

/* ---- the interpreter ---------------------------------------------------------- */

static int executable (const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Looks 'name' up on PATH; its path in out. Returns 0 or -1. */
static int on_path (const char *name, char *out, size_t size) {
  const char *p = getenv("PATH");
  if (p == NULL) p = "/usr/local/bin:/usr/bin:/bin";
  for (;;) {
    const char *e = strchr(p, ':');
    int n = e ? (int)(e - p) : (int)strlen(p);
    if ((size_t)snprintf(out, size, "%.*s/%s", n, n ? p : ".", name) < size
        && executable(out))
      return 0;
    if (e == NULL) return -1;
    p = e + 1;
  }
}

/* The running program's path in out when it is a Lua interpreter (named
** lua followed by a version, if anything). Returns 0 or -1. */
static int running_lua (char *out, size_t size) {
  ssize_t n = readlink("/proc/self/exe", out, size - 1);
  const char *base;
  if (n <= 0 || (size_t)n >= size - 1) return -1;
  out[n] = '\0';
  base = strrchr(out, '/');
  base = base ? base + 1 : out;
  if (strncmp(base, "lua", 3) != 0) return -1;
  for (const char *c = base + 3; *c; c++)
    if (!isdigit((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_')
      return -1;          /* luajit, luatex, "lua5.4 (deleted)": not ours */
  return executable(out) ? 0 : -1;
}

int concur_procspawn_lua (char *out, size_t size, char *err, size_t errsize) {
  const char *env = getenv("CONCUR_LUA");
  char self[512];
  if (env && *env) {
    if (strchr(env, '/') ? (snprintf(out, size, "%s", env) < (int)size && executable(out))
                         : on_path(env, out, size) == 0)
      return 0;
    snprintf(err, errsize, "CONCUR_LUA is '%s', which is not an executable file: "
             "set it to the path of a Lua 5.4 interpreter", env);
    return -1;
  }
  if (running_lua(out, size) == 0 || on_path("lua5.4", out, size) == 0
      || on_path("lua", out, size) == 0)
    return 0;
  if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) strcpy(self, "?");
  else self[strcspn(self, "\n")] = '\0';
  self[sizeof self - 1] = '\0';
  snprintf(err, errsize, "no Lua interpreter to run worker processes: this program "
           "(%s) is not one, and neither lua5.4 nor lua is on PATH; set CONCUR_LUA "
           "to the path of a Lua 5.4 interpreter", self);
  return -1;
}

/* ---- environment and script --------------------------------------------------- */

char **concur_procspawn_env (const char *path, const char *cpath, size_t memlimit) {
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

void concur_procspawn_freeenv (char **env) {
  if (env == NULL) return;
  for (char **e = env; *e; e++) free(*e);
  free(env);
}

int concur_procspawn_script (void) {
  int fd = concur_fd_high(memfd_create("concur-worker", MFD_CLOEXEC)), e;
  if (fd < 0) return -1;
  if (write(fd, SCRIPT, sizeof SCRIPT - 1) != (ssize_t)(sizeof SCRIPT - 1)) {
    e = errno;
    close(fd);
    errno = e ? e : EIO;
    return -1;
  }
  return fd;
}

/* ---- spawning ----------------------------------------------------------------- */

int concur_procspawn (const char *lua, char **envp, int scriptfd, pid_t *pid,
                      int *fd, char *err, size_t errsize, int *resource) {
  int sv[2] = { -1, -1 }, rc;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, def;
  char *argv[3], why[160];
  *resource = 0;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0
      || (sv[1] = concur_fd_high(sv[1])) < 0) {
    int e = errno;
    if (sv[0] >= 0) close(sv[0]);     /* concur_fd_high closed sv[1] */
    *resource = e == EMFILE || e == ENFILE || e == ENOMEM;
    concur_syserr(e, why, sizeof why);
    snprintf(err, errsize, "cannot make a socket pair for a worker process: %s", why);
    return -1;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], SOCK_FD);
  posix_spawn_file_actions_adddup2(&fa, scriptfd, SCRIPT_FD);
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
  argv[0] = (char *)lua;
  argv[1] = (char *)"/proc/self/fd/4";
  argv[2] = NULL;
  rc = posix_spawn(pid, lua, &fa, &at, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    *resource = rc == EMFILE || rc == ENFILE || rc == ENOMEM || rc == EAGAIN;
    concur_syserr(rc, why, sizeof why);
    snprintf(err, errsize, "cannot start '%s': %s", lua, why);
    return -1;
  }
  *fd = sv[0];
  return 0;
}
