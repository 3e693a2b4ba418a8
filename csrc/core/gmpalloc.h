/*
** gmpalloc.h: GMP's memory, routed so that running out of it is an error
** the caller reports, never an abort. No Lua.
**
** GMP aborts the process when an allocation fails, and its functions have
** no way to return an error. So concur installs its own allocation
** functions (mp_set_memory_functions, once per process; they are malloc's,
** so values made before or by other GMP users in the process stay valid),
** and runs every GMP call that can allocate inside a scope:
**
**     concur_gmp_scope sc;
**     concur_gmp_enter(&sc, r, NULL);   // r: the output
**     if (setjmp(sc.jb) == 0) {
**       mpz_mul(r, a, b);          // GMP calls only: no Lua, no locks
**       concur_gmp_leave(&sc);
**     }
**     else {                        // an allocation failed
**       concur_gmp_unwind(&sc);
**       ... report "not enough memory"
**     }
**
** Inside a scope every block GMP allocates is recorded until it is freed;
** an allocation that fails jumps back to the scope's setjmp, and unwinding
** frees every block the scope still holds, so nothing leaks. The outputs
** named at entry (their limbs from before count as the scope's: it
** overwrites them) are left a valid 0; the scope's other integers
** (temporaries on the stack) are abandoned, their memory freed with the
** rest. Nothing else that existed before the scope is freed by unwinding:
** an input must not be an output.
**
** Threads: work spread over threads within a scope (core/bignum.c) runs
** each share through concur_gmp_run, which gives that thread its own jump
** point. A failure on any thread marks the scope failed, and every
** thread of the scope stops at its next allocation; the entering thread,
** once it has joined its helpers, calls concur_gmp_check, which jumps to
** the scope's setjmp. So every thread's failure is reported once, in the
** caller, and no thread is left running.
**
** A GMP allocation outside any scope that fails aborts as GMP does.
*/
#ifndef CONCUR_CORE_GMPALLOC_H
#define CONCUR_CORE_GMPALLOC_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <pthread.h>
#include <gmp.h>

#define CONCUR_GMP_INLINE 32   /* blocks tracked without an allocation */

typedef struct concur_gmp_scope {
  jmp_buf jb;                 /* where the entering thread resumes on failure */
  pthread_mutex_t mu;         /* guards the block set while threads share it */
  atomic_int shared;          /* teams of helper threads running */
  atomic_int failed;
  void **set;                 /* the live blocks: open addressing, NULL empty */
  size_t cap, used;
  void *inline_set[CONCUR_GMP_INLINE];
  mpz_ptr out[2];             /* the outputs, or NULL */
  struct concur_gmp_scope *prev;
  jmp_buf *prevjb;
} concur_gmp_scope;

/* Installs the allocation functions (once per process; idempotent). */
void concur_gmp_init (void);

/* Opens a scope on this thread, with its outputs (either may be NULL);
** then setjmp(sc->jb) as above. */
void concur_gmp_enter (concur_gmp_scope *sc, mpz_ptr out1, mpz_ptr out2);
/* Closes a scope that succeeded: its blocks live on, untracked. */
void concur_gmp_leave (concur_gmp_scope *sc);
/* After a failure (back at the setjmp): closes the scope, leaves its
** outputs valid and frees every block it still holds. */
void concur_gmp_unwind (concur_gmp_scope *sc);

/* The scope open on this thread, or NULL. */
concur_gmp_scope *concur_gmp_current (void);
/* Runs fn(ud, i) on this thread as a share of scope sc (NULL: plainly).
** Returns 0, or -1 when an allocation failed in it (it stopped there). */
int concur_gmp_run (concur_gmp_scope *sc, void (*fn) (void *, int), void *ud,
                    int i);
/* A team of threads starts (delta 1) or has been joined (-1) in sc. */
void concur_gmp_team (concur_gmp_scope *sc, int delta);
/* On the thread that started a team, after joining it: if any thread of
** the scope failed, jumps to this thread's jump point. */
void concur_gmp_check (concur_gmp_scope *sc);
/* Memory from the scope's allocator for the caller's own work (freed with
** concur_gmp_free; freed by unwinding when the scope fails). */
void *concur_gmp_alloc (size_t n);
void concur_gmp_free (void *p, size_t n);

/* For tests: the n-th allocation made in any scope from now fails (n > 0),
** as if the memory had run out; 0 turns that off. */
void concur_gmp_fail_after (long n);

#endif
