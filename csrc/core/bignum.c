/*
** bignum.c: parallel factorial, parallel conversion to text and the exact
** digit count, on GMP and pthreads, without Lua.
**
** Factorial. GMP's mpz_fac_ui is fast but single-threaded, and GMP's big
** multiplications are FFTs that do not get faster by being cut in pieces
** and run on two cores (two half-size squarings cost as much as one full
** one). What does split well is a product of a huge number by a much
** smaller one: cut the huge one into k limb ranges, multiply each on its own
** thread, add the pieces. So the factorial is written as the recursion
**     n! = (floor(n/2)!)^2 * swing(n),   swing(n) = n! / floor(n/2)!^2
** (swing(n) = C(n, n/2), times n - n/2 for odd n, has only about 2n bits),
** kept on odd parts (the power of two of n! is n - popcount(n), added by
** one shift at the end):
**   1. the swings of all levels n, n/2, n/4, ... and the base factorial
**      (mpz_fac_ui of the smallest level) are independent: computed
**      together on the k threads, largest first;
**   2. then from the base upwards X = X^2 (one GMP squaring) and
**      X = X * swing (split over the k threads); the two top levels as
**      X^4 * (swing(n/2)^2 * swing(n)).
** Below FAC_PAR_MIN splitting does not pay and mpz_fac_ui runs alone.
**
** Conversion. mpz_get_str is divide and conquer; its first step divides by
** a power of the base about the square root of the number, and the two
** halves are independent. So for big numbers we take that step ourselves
** (x = hi * base^k + lo) and convert hi and lo on two threads, recursively
** while threads remain. NOTE: lo is written with exactly k digits, its
** leading zeros included.
**
** Threads are created per call (a factorial worth splitting costs
** milliseconds, a thread tens of microseconds) and always joined before
** returning; no state outlives a call and none is shared between calls.
**
** Memory: called inside a GMP scope (gmpalloc.h), every allocation here,
** on any thread, is the scope's: when one fails, every thread stops at its
** next allocation, the caller's jump point is reached once they are all
** joined, and unwinding the scope frees what they held.
*/
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bignum.h"
#include "gmpalloc.h"
#include "sys.h"
#include "wait.h"

/* Measured on 2 idle x86-64 cores (GMP 6.2): a split over 2 threads is
** 1.16x faster than mpz_fac_ui at n = 50,000 and 1.3-1.5x from 80,000 to
** 10^7; below FAC_PAR_MIN (twice the first margin) mpz_fac_ui runs alone. */
#define FAC_PAR_MIN 100000UL
/* levels of the swing recursion stop once n is below this; the rest is
** one mpz_fac_ui */
#define FAC_BASE_MIN 32768UL
/* a multiplication is split only when the big factor has this many limbs */
#define PMUL_MIN_LIMBS 2048
/* products by numbers of this many limbs (4M bits, milliseconds of work)
** count the idle CPUs again before they split */
#define RECHECK_LIMBS 65536
/* numbers of fewer bits are converted to text by mpz_get_str alone: about
** 240,000 decimal digits. Measured as above: the 2-thread split is 1.1x
** faster at 400,000 bits, 1.35-1.45x from 700,000 bits up. */
#define STR_PAR_MIN_BITS 800000
#define MAX_LEVELS 64

int concur_bignum_ncpu (void) {
  int n = concur_cpu_usable();
  return n > CONCUR_BIGNUM_MAX_THREADS ? CONCUR_BIGNUM_MAX_THREADS : n;
}

/* Threads running or ready to run right now in the whole system, this one
** included (Linux: procs_running in /proc/stat); 1 when unknown. */
static int running_tasks (void) {
  char line[256];
  int n = 1;
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) return 1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "procs_running %d", &n) == 1) break;
  fclose(f);
  return n < 1 ? 1 : n;
}

/*
** The threads worth using for one call: at most those asked for, the
** online CPUs, and the CPUs not busy with other work at this moment. A
** split whose threads must share a CPU waits for the slowest of them and
** ends up slower than one thread; on a busy machine (or when every pool
** worker splits its own work) one thread is the better choice.
*/
static int clamp_threads (int threads) {
  int ncpu = concur_bignum_ncpu();
  int idle = ncpu - (running_tasks() - 1);
  if (threads > ncpu) threads = ncpu;
  if (threads > idle) threads = idle;
  return threads < 1 ? 1 : threads;
}


/* ---- a team of threads ----------------------------------------------- */

typedef void (*team_fn) (void *ud, int i);

typedef struct team_arg {
  team_fn fn;
  void *ud;
  int i;
  concur_gmp_scope *sc;
} team_arg;

static void *team_main (void *p) {
  team_arg *a = (team_arg *)p;
  concur_gmp_run(a->sc, a->fn, a->ud, a->i);
  return NULL;
}

/*
** Runs fn(ud, i) for i = 0 .. n-1 (n <= CONCUR_BIGNUM_MAX_THREADS): i = 0 on
** the calling thread, the others on new threads; returns when all are done.
** A share whose thread cannot be created runs on the caller after its own.
** Every share runs in the caller's GMP scope (gmpalloc.h): when memory ran
** out in any of them, this jumps to the caller's jump point once all are
** joined.
*/
static void team_run (int n, team_fn fn, void *ud) {
  pthread_t th[CONCUR_BIGNUM_MAX_THREADS];
  team_arg args[CONCUR_BIGNUM_MAX_THREADS];
  int started[CONCUR_BIGNUM_MAX_THREADS];
  concur_gmp_scope *sc = concur_gmp_current();
  int i;
  concur_gmp_team(sc, 1);
  for (i = 1; i < n; i++) {
    args[i].fn = fn;
    args[i].ud = ud;
    args[i].i = i;
    args[i].sc = sc;
    started[i] = concur_thread_create(&th[i], team_main, &args[i]) == 0;
  }
  concur_gmp_run(sc, fn, ud, 0);
  for (i = 1; i < n; i++) {
    if (started[i]) pthread_join(th[i], NULL);
    else concur_gmp_run(sc, fn, ud, i);
  }
  concur_gmp_team(sc, -1);
  concur_gmp_check(sc);
}


/* ---- split multiplication -------------------------------------------- */

/* parts per thread: more parts than threads let a thread that is slowed
** (a busy CPU) take fewer of them */
#define PARTS_PER_THREAD 4
#define MAX_PARTS (PARTS_PER_THREAD * CONCUR_BIGNUM_MAX_THREADS)
/* a part is at least this many times longer than b */
#define PART_MIN_RATIO 8

typedef struct pmul_job {
  mpz_srcptr a, b;
  mp_size_t chunk;           /* limbs of a per part */
  int nparts;
  atomic_int next;           /* next part to multiply */
  mpz_t part[MAX_PARTS];
} pmul_job;

/* Multiplies the parts taken from the shared counter until none is left. */
static void pmul_share (void *ud, int unused) {
  pmul_job *j = (pmul_job *)ud;
  mp_size_t an = mpz_size(j->a);
  int i;
  (void)unused;
  while ((i = atomic_fetch_add(&j->next, 1)) < j->nparts) {
    mp_size_t lo = (mp_size_t)i * j->chunk;
    mp_size_t hi = lo + j->chunk < an ? lo + j->chunk : an;
    mpz_t view;
    if (lo < hi)   /* else part[i] stays 0 */
      mpz_mul(j->part[i], mpz_roinit_n(view, mpz_limbs_read(j->a) + lo,
                                       hi - lo), j->b);
  }
}

/*
** r = a * b for non-negative a and b, where a is the big factor: a is cut
** into limb ranges (a few per thread when they stay much longer than b),
** multiplied by b on k threads, and the partial products added at their
** offsets. r must not be a or b.
*/
static void pmul (mpz_ptr r, mpz_srcptr a, mpz_srcptr b, int k) {
  mp_size_t an = mpz_size(a), bn = mpz_size(b), rn;
  mp_ptr rp;
  pmul_job *j;
  int i, nparts;
  if (k < 2 || an < PMUL_MIN_LIMBS || bn == 0 || an < 2 * bn) {
    mpz_mul(r, a, b);
    return;
  }
  /* NOTE: each part costs about a product of (part + bn) limbs, so parts
  ** much longer than b keep the total close to one unsplit product */
  nparts = k * PARTS_PER_THREAD;
  if ((mp_size_t)nparts > an / (PART_MIN_RATIO * bn))
    nparts = (int)(an / (PART_MIN_RATIO * bn));
  if (nparts < k) nparts = k;
  j = (pmul_job *)concur_gmp_alloc(sizeof *j);
  if (j == NULL) {   /* (only outside a scope: in one, a failure jumps) */
    mpz_mul(r, a, b);
    return;
  }
  j->a = a;
  j->b = b;
  j->nparts = nparts;
  j->chunk = (an + nparts - 1) / nparts;
  atomic_init(&j->next, 0);
  for (i = 0; i < nparts; i++) mpz_init(j->part[i]);
  team_run(k, pmul_share, j);
  rn = an + bn;
  rp = mpz_limbs_write(r, rn);
  mpn_zero(rp, rn);
  /* in order of offset: part i adds over its own limbs only, since the
  ** limbs past it are still zero; a carry out of it (rare) moves on */
  for (i = 0; i < nparts; i++) {
    mp_size_t pn = mpz_size(j->part[i]), off = (mp_size_t)i * j->chunk;
    if (pn > 0) {
      mp_limb_t cy = mpn_add_n(rp + off, rp + off, mpz_limbs_read(j->part[i]),
                               pn);
      if (cy) mpn_add_1(rp + off + pn, rp + off + pn, rn - off - pn, cy);
    }
    mpz_clear(j->part[i]);
  }
  concur_gmp_free(j, sizeof *j);
  mpz_limbs_finish(r, rn);
}


/* ---- factorial -------------------------------------------------------- */

typedef struct fac_job {
  unsigned long n[MAX_LEVELS + 1];   /* n[0] = n, n[i+1] = n[i] / 2 */
  int levels;                        /* swings n[0 .. levels-1] */
  mpz_t w[MAX_LEVELS + 1];           /* odd swings; w[levels]: odd base */
  int order[MAX_LEVELS + 1];         /* the w in decreasing size */
  atomic_int next;                   /* next entry of order to compute */
} fac_job;

static void strip_twos (mpz_ptr x) {
  if (mpz_sgn(x) != 0) mpz_tdiv_q_2exp(x, x, mpz_scan1(x, 0));
}

/* Computes the w[i] taken from the shared counter until none is left. */
static void fac_share (void *ud, int unused) {
  fac_job *j = (fac_job *)ud;
  int o;
  (void)unused;
  while ((o = atomic_fetch_add(&j->next, 1)) <= j->levels) {
    int i = j->order[o];
    if (i == j->levels)
      mpz_fac_ui(j->w[i], j->n[i]);
    else {   /* n!/m!^2 = C(n, m) * ((n - m)! / m!), with n - m in {m, m+1} */
      mpz_bin_uiui(j->w[i], j->n[i], j->n[i + 1]);
      if (j->n[i] - j->n[i + 1] != j->n[i + 1])
        mpz_mul_ui(j->w[i], j->w[i], j->n[i] - j->n[i + 1]);
    }
    strip_twos(j->w[i]);
  }
}

/*
** Orders the jobs largest first (the usual greedy schedule): a swing of
** level i has about 2 n[i] bits, the base factorial about n log2(n/e).
*/
static void fac_order (fac_job *j) {
  double size[MAX_LEVELS + 1];
  int i, a;
  for (i = 0; i <= j->levels; i++) {
    double m = (double)j->n[i];
    size[i] = i < j->levels ? 2 * m : (m > 3 ? m * log2(m / 2.718281828) : 1);
    j->order[i] = i;
  }
  for (i = 1; i <= j->levels; i++)   /* insertion sort of a few entries */
    for (a = i; a > 0 && size[j->order[a]] > size[j->order[a - 1]]; a--) {
      int t = j->order[a];
      j->order[a] = j->order[a - 1];
      j->order[a - 1] = t;
    }
}

/*
** The threads for one split product by x, counted again when x is big
** enough for the count to cost nothing in comparison: a CPU that became
** busy since the call began would hold back every product split over it
** (each waits for its slowest part), so the work goes back to fewer
** threads. The forced split (k < 0) always takes -k.
*/
static int recheck (mpz_srcptr x, int k) {
  if (k < 0) return -k;
  return mpz_size(x) >= RECHECK_LIMBS ? clamp_threads(k) : k;
}

/* r = n! on k threads (n >= 2 FAC_BASE_MIN); for k < 0 on exactly -k
** threads, the idle CPUs never counted (the forced split of the specs). */
static void fac_split (mpz_ptr r, unsigned long n, int k) {
  fac_job j;
  mpz_t x, t;
  int i, top, ones = 0;
  unsigned long m;
  j.levels = 0;
  j.n[0] = n;
  while (j.n[j.levels] >= FAC_BASE_MIN && j.levels < MAX_LEVELS) {
    j.n[j.levels + 1] = j.n[j.levels] / 2;
    j.levels++;
  }
  for (i = 0; i <= j.levels; i++) mpz_init(j.w[i]);
  fac_order(&j);
  atomic_init(&j.next, 0);
  team_run(k < 0 ? -k : k, fac_share, &j);
  mpz_init(t);
  mpz_init(x);
  mpz_swap(x, j.w[j.levels]);
  /* NOTE: the two top levels are merged, x^4 * (w1^2 * w0) instead of
  ** (x^2 * w1)^2 * w0: a split product by a number twice as long costs
  ** little more than one (GMP cuts it into products of that length), so
  ** the product at level 1 is saved for the price of two small ones
  ** (measured: 3-8% faster; merging three levels is no better) */
  top = j.levels >= 2 ? 2 : 0;
  for (i = j.levels - 1; i >= top; i--) {
    mpz_mul(x, x, x);
    pmul(t, x, j.w[i], recheck(x, k));
    mpz_swap(x, t);
  }
  if (top == 2) {
    mpz_mul(j.w[1], j.w[1], j.w[1]);
    mpz_mul(j.w[0], j.w[0], j.w[1]);
    mpz_mul(x, x, x);
    mpz_mul(x, x, x);
    pmul(t, x, j.w[0], recheck(x, k));
    mpz_swap(x, t);
  }
  for (m = n; m; m >>= 1) ones += (int)(m & 1);
  mpz_mul_2exp(r, x, n - (unsigned long)ones);   /* Legendre: v2(n!) */
  mpz_clear(x);
  mpz_clear(t);
  for (i = 0; i <= j.levels; i++) mpz_clear(j.w[i]);
}

void concur_bignum_fac_split (mpz_ptr r, unsigned long n, int threads) {
  if (threads > CONCUR_BIGNUM_MAX_THREADS) threads = CONCUR_BIGNUM_MAX_THREADS;
  if (threads < 2 || n < 2 * FAC_BASE_MIN) mpz_fac_ui(r, n);
  else fac_split(r, n, -threads);   /* negative: no recount of CPUs */
}

void concur_bignum_fac (mpz_ptr r, unsigned long n, int threads) {
  /* NOTE: CPUs are counted (reads of /sys and /proc) only for big work */
  if (threads < 2 || n < FAC_PAR_MIN || (threads = clamp_threads(threads)) < 2)
    mpz_fac_ui(r, n);
  else
    fac_split(r, n, threads);
}


/* ---- digits ------------------------------------------------------------ */

static int ispow2 (int b) { return (b & (b - 1)) == 0; }

size_t concur_bignum_digits (mpz_srcptr x, int base) {
  size_t d;
  long e;
  double m, lg, margin;
  mpz_t p;
  int ge;
  if (mpz_sgn(x) == 0) return 1;
  d = mpz_sizeinbase(x, base);   /* exact for powers of 2, else d or d+1 */
  if (ispow2(base) || d == 1) return d;
  /* log_base |x| from a double mantissa and the exponent: good to about
  ** 1e-15 relative; only when it lies near an integer is an exact
  ** comparison with base^(d-1) needed (powers of the base, say) */
  m = fabs(mpz_get_d_2exp(&e, x));
  lg = (log2(m) + (double)e) / log2((double)base);
  margin = lg * 1e-12 + 1e-9;
  if (floor(lg - margin) == floor(lg + margin)) {
    double f = floor(lg) + 1;
    if (f == (double)d || f == (double)(d - 1)) return (size_t)f;
  }
  mpz_init(p);
  mpz_ui_pow_ui(p, (unsigned long)base, d - 1);
  ge = mpz_cmpabs(x, p) >= 0;
  mpz_clear(p);
  return ge ? d : d - 1;
}


/* ---- conversion to text ------------------------------------------------ */

typedef struct str_job {
  char *out;
  int base, threads;
  mpz_srcptr x;
  size_t len;
} str_job;

static size_t tostr_abs (char *out, int base, mpz_srcptr x, int threads);

static void str_share (void *ud, int i) {
  str_job *j = (str_job *)ud + i;
  j->len = tostr_abs(j->out, j->base, j->x, j->threads);
}

/*
** Writes x >= 0 into out (room for sizeinbase + 1 bytes), NUL-terminated;
** returns the length. Splits x = hi * base^k + lo while threads and size
** allow: hi (never 0, as k is below the digit count) goes to out directly,
** lo to a side buffer, copied after hi with its leading zeros to k digits.
*/
static size_t tostr_abs (char *out, int base, mpz_srcptr x, int threads) {
  size_t d, k, hilen;
  mpz_t hi, lo, p;
  str_job j[2];
  char *side;
  if (threads < 2 || ispow2(base) || mpz_sizeinbase(x, 2) < STR_PAR_MIN_BITS)
    return strlen(mpz_get_str(out, base, x));
  d = mpz_sizeinbase(x, base);
  k = d / 2;
  side = (char *)concur_gmp_alloc(k + 2);
  if (side == NULL)   /* no room for a split: convert in one piece */
    return strlen(mpz_get_str(out, base, x));
  mpz_init(p);
  mpz_init(hi);
  mpz_init(lo);
  mpz_ui_pow_ui(p, (unsigned long)base, k);
  mpz_tdiv_qr(hi, lo, x, p);
  mpz_clear(p);
  j[0].out = out; j[0].base = base; j[0].x = hi;
  j[0].threads = threads / 2;
  j[1].out = side; j[1].base = base; j[1].x = lo;
  j[1].threads = threads - threads / 2;
  team_run(2, str_share, j);
  hilen = j[0].len;
  memset(out + hilen, '0', k - j[1].len);
  memcpy(out + hilen + (k - j[1].len), side, j[1].len + 1);   /* with NUL */
  concur_gmp_free(side, k + 2);
  mpz_clear(hi);
  mpz_clear(lo);
  return hilen + k;
}

size_t concur_bignum_tostr (char *out, int base, mpz_srcptr x, int threads) {
  mpz_t ax;
  if (threads > 1 && mpz_sizeinbase(x, 2) >= STR_PAR_MIN_BITS)
    threads = clamp_threads(threads);   /* counted only for big numbers */
  else if (threads < 0)   /* forced: as many as asked */
    threads = -threads > CONCUR_BIGNUM_MAX_THREADS ? CONCUR_BIGNUM_MAX_THREADS
                                                   : -threads;
  if (mpz_sgn(x) >= 0) return tostr_abs(out, base, x, threads);
  *out = '-';
  mpz_roinit_n(ax, mpz_limbs_read(x), (mp_size_t)mpz_size(x));
  return 1 + tostr_abs(out + 1, base, ax, threads);
}
