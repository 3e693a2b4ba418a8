/*
** procspawn.h: starting a worker process for the supervisor (procsup.h):
** which interpreter, with what environment, and the posix_spawn itself.
** No Lua.
*/
#ifndef CONCUR_CORE_PROCSPAWN_H
#define CONCUR_CORE_PROCSPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Finds the Lua interpreter that runs worker processes: $CONCUR_LUA when
** set (a path, or a name looked up on PATH); else the running program
** when it is a Lua interpreter (its file is named lua, lua5.4, lua54...);
** else lua5.4, then lua, on PATH. Writes its path to out and returns 0, or
** returns -1 with a message in err saying what to set. */
int concur_procspawn_lua (char *out, size_t size, char *err, size_t errsize);

/* The workers' environment: the parent's, without the variables set here,
** plus the module paths, the codec's hash key, the parent's pid, the
** memory limit (0: none) and the arena's descriptor. NULL when memory ran
** out. Freed by concur_procspawn_freeenv. */
char **concur_procspawn_env (const char *path, const char *cpath,
                             size_t memlimit);
void concur_procspawn_freeenv (char **env);

/* The worker's script in a memory file (close-on-exec, above the
** descriptors a worker is given); -1 with errno set on failure. */
int concur_procspawn_script (void);

/* Starts interpreter 'lua' on the script at scriptfd, with environment
** envp; the worker gets its end of a new socket pair as fd 3, the script
** as fd 4 and the arena as fd 5, every other descriptor closed, default
** signal dispositions and an empty signal mask. Returns 0 with its pid and
** the parent's end of the socket (close-on-exec) in *pid and
** *fd, or -1 with a message in err (*resource set when descriptors or
** memory ran out, 0 otherwise). */
int concur_procspawn (const char *lua, char **envp, int scriptfd, pid_t *pid,
                      int *fd, char *err, size_t errsize, int *resource);

#endif
