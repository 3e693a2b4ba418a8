/*
** bignum.h: the Lua-free half of concur.bigint: GMP work that is worth
** spreading over OS threads (factorials, conversion to text) and the exact
** digit count. csrc/bigint.c binds it to Lua.
**
** Every function here is reentrant: no global state is written, so Lua
** states on different threads (pool workers) may call them at once. Threads
** are created per call and joined before the call returns; when a thread
** cannot be created its share runs on the calling thread, so the result never
** depends on how many threads were actually available.
**
** Memory: call these inside a GMP scope (gmpalloc.h), so that running out
** of memory on any of their threads jumps back to the caller instead of
** aborting; nothing here allocates beyond what the result and its
** intermediate products need. Results are capped too (below).
*/
#ifndef CONCUR_CORE_BIGNUM_H
#define CONCUR_CORE_BIGNUM_H

#include <stddef.h>
#include <gmp.h>

/* The size cap of any bigint result: 2^32 bits (512 MiB). */
#define CONCUR_BIGNUM_MAX_BITS 4294967296.0
/* The largest n accepted by factorial: 10^8 (n! has about 2.5e9 bits,
** 317 MB; computing it takes tens of seconds). */
#define CONCUR_BIGNUM_FAC_MAX 100000000UL
/* The most threads one call spreads its work over. */
#define CONCUR_BIGNUM_MAX_THREADS 64

/* Online CPUs this process may run on (at least 1). */
int concur_bignum_ncpu (void);

/* r = n!. With threads > 1 (clamped to the idle CPUs) and n large enough
** for splitting to pay, the work runs on that many threads; the value is the
** same either way. Expects n <= CONCUR_BIGNUM_FAC_MAX. */
void concur_bignum_fac (mpz_ptr r, unsigned long n, int threads);

/* As concur_bignum_fac, but splits whatever the CPUs and the size (over
** a small minimum), so that tests reach the split on any machine. */
void concur_bignum_fac_split (mpz_ptr r, unsigned long n, int threads);

/* The exact number of digits of |x| in 'base' (2..62), without a sign;
** 1 for zero. (mpz_sizeinbase may be one too large.) */
size_t concur_bignum_digits (mpz_srcptr x, int base);

/* Writes x in 'base' (2..36, lower-case letters) into 'out', with a leading
** '-' when negative and a terminating NUL; returns the length without the
** NUL. 'out' must hold mpz_sizeinbase(x, base) + 2 bytes. Numbers of more
** than about 240,000 digits are converted on up to 'threads' threads
** (split by a power of the base); the text is identical either way. A
** negative 'threads' forces -threads, whatever the CPUs (for tests). */
size_t concur_bignum_tostr (char *out, int base, mpz_srcptr x, int threads);

#endif
