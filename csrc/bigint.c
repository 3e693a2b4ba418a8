/*
** bigint.c: concur.bigint, GMP integers as Lua values.
**
** A bigint is a full userdata (metatable "concur.bigint") holding an mpz_t.
** Bigints are immutable: every operation makes a new one, so they can be
** shared freely and copied by value into other states (the codec calls
** bigint_encode/bigint_decode: the metatable is registered as a value
** class, concur_class_byvalue). A
** bigint is created "closed" and marked live only once its mpz_t is
** initialised; __gc and __close share one idempotent function, and a bigint
** closed with <close> raises kind "closed" when used again.
**
** Operands: metamethods accept bigints, Lua integers and floats with an
** integral value (non-integral floats raise "argument"). Integers are viewed
** as mpz_t without allocating (mpz_roinit_n over limbs on the C stack).
**
** Memory: GMP allocates the limbs with malloc, out of sight of Lua's
** collector. So each new bigint adds its limb bytes to the collector's debt
** (lua_gc LUA_GCSTEP, in KB, the remainder carried in a per-state counter):
** the GC paces itself on the real memory, and dropped huge values go soon.
** GMP is not routed through Lua's allocator (mp_set_memory_functions is
** process-wide, and worker threads use GMP at the same time).
**
** Limits: results that would pass CONCUR_BIGNUM_MAX_BITS (2^32 bits) raise
** kind "limit" before any work: products, powers, parsed strings, and
** factorials beyond CONCUR_BIGNUM_FAC_MAX. Below the cap, memory can still
** run out (a lowered ulimit, a full machine): GMP would abort the process,
** so every GMP call that can allocate runs in a GMP scope (the GMP macro,
** core/gmpalloc.h) and a failed allocation, on this thread or on one a
** factorial was spread over, raises kind "limit" with nothing leaked. A
** scope holds only GMP calls: Lua values are made before and accounted
** after it.
**
** The work that pays to spread over threads (factorial, conversion of huge
** numbers to text) lives in core/bignum.c, without Lua.
*/
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <gmp.h>
#include "concur.h"
#include "core/bignum.h"
#include "core/gmpalloc.h"

#define BIGINT_MT "concur.bigint"
#define MAX_BITS CONCUR_BIGNUM_MAX_BITS

typedef struct bigint {
  mpz_t z;
  int live;      /* 0 before mpz_init and after close */
} bigint;

/* per-state GC bookkeeping, a userdata in the registry under &ctx_key */
typedef struct bigint_ctx {
  size_t pending;   /* bytes not yet reported (less than 1 KB) */
} bigint_ctx;

/* registry keys (only their addresses matter): the metatable is also kept
** under &meta_key, so that checking a bigint costs a pointer lookup, not a
** string one (luaL_testudata interns its name on every call) */
static const char ctx_key = 0;
static const char meta_key = 0;

static void pushmeta (lua_State *L);

/* ---- GMP calls ----------------------------------------------------------
** Every GMP call that can allocate runs through gmp(): in a GMP scope
** (core/gmpalloc.h), so that memory running out, on this thread or on one
** the work was spread over, raises kind "limit" with nothing leaked. The
** call is described by a gop, so the setjmp lives in gmp() alone, where no
** local of the caller can be clobbered; a gop holds only GMP calls (no Lua,
** nothing that raises): values are made before it and accounted after.
*/

enum {
  G_BIN, G_UN, G_SET_D, G_SET_SI, G_POW_UI, G_MUL_2EXP, G_FDIV_Q_2EXP,
  G_SET_STR, G_FDIV_QR, G_POWMOD, G_FAC, G_FAC_SPLIT, G_TOSTR,
  G_DIGITS, G_IMPORT
};

typedef struct gop {
  int op;
  mpz_ptr r, r2;                /* outputs: left valid when memory runs out */
  mpz_srcptr a, b, c;
  void (*f2) (mpz_ptr, mpz_srcptr, mpz_srcptr);   /* G_BIN */
  void (*f1) (mpz_ptr, mpz_srcptr);               /* G_UN */
  unsigned long n;
  long v;
  double d;
  int base, k;
  const char *s;
  char *out;
  size_t len;                   /* out: text length, digit count */
  int rc;                       /* out: mpz_set_str, G_POWMOD */
} gop;

static void gop_do (gop *o) {
  switch (o->op) {
    case G_BIN: o->f2(o->r, o->a, o->b); break;
    case G_UN: o->f1(o->r, o->a); break;
    case G_SET_D: mpz_set_d(o->r, o->d); break;
    case G_SET_SI: mpz_set_si(o->r, o->v); break;
    case G_POW_UI: mpz_pow_ui(o->r, o->a, o->n); break;
    case G_MUL_2EXP: mpz_mul_2exp(o->r, o->a, o->n); break;
    case G_FDIV_Q_2EXP: mpz_fdiv_q_2exp(o->r, o->a, o->n); break;
    case G_SET_STR:
      o->rc = mpz_set_str(o->r, o->s, o->base);
      if (o->v) mpz_neg(o->r, o->r);
      break;
    case G_FDIV_QR: mpz_fdiv_qr(o->r, o->r2, o->a, o->b); break;
    case G_POWMOD: {   /* r = a^b mod c, as Python's pow(a, b, c); rc 0
                       ** when b < 0 and a has no inverse modulo c */
      o->rc = 1;
      if (mpz_sgn(o->b) < 0) {
        mpz_t ne;
        if (!mpz_invert(o->r, o->a, o->c)) {
          o->rc = 0;
          break;
        }
        mpz_roinit_n(ne, mpz_limbs_read(o->b), (mp_size_t)mpz_size(o->b));
        mpz_powm(o->r, o->r, ne, o->c);   /* r^|b|: r is this scope's own */
      }
      else mpz_powm(o->r, o->a, o->b, o->c);   /* in 0 .. |c|-1 */
      if (mpz_sgn(o->c) < 0 && mpz_sgn(o->r) != 0) mpz_add(o->r, o->r, o->c);
      break;
    }
    case G_FAC: concur_bignum_fac(o->r, o->n, o->k); break;
    case G_FAC_SPLIT: concur_bignum_fac_split(o->r, o->n, o->k); break;
    case G_TOSTR: o->len = concur_bignum_tostr(o->out, o->base, o->a, o->k); break;
    case G_DIGITS: o->len = concur_bignum_digits(o->a, o->base); break;
    case G_IMPORT:
      if (o->n) mpz_import(o->r, o->n, -1, 8, -1, 0, o->s);
      if (o->v) mpz_neg(o->r, o->r);
      break;
  }
}

/* Runs o in a GMP scope; raises kind "limit" naming 'what' when memory ran
** out (after freeing what the scope allocated). */
static void gmp (lua_State *L, const char *what, gop *o) {
  concur_gmp_scope sc;
  lua_State *volatile vL = L;
  const char *volatile vwhat = what;
  gop *volatile vo = o;
  concur_gmp_enter(&sc, o->r, o->r2);
  if (setjmp(sc.jb) == 0) {
    gop_do(vo);
    concur_gmp_leave(&sc);
    return;
  }
  concur_gmp_unwind(&sc);
  concur_error(vL, "limit", "%s: not enough memory", vwhat);
}

#define GOP(...) (&(gop){ __VA_ARGS__ })


/* ---- creation and memory accounting ---------------------------------- */

/* Pushes a new live bigint with value 0. */
static bigint *newbig (lua_State *L) {
  bigint *b = (bigint *)lua_newuserdatauv(L, sizeof(bigint), 0);
  b->live = 0;
  pushmeta(L);
  lua_setmetatable(L, -2);
  mpz_init(b->z);     /* allocates nothing until a value is stored */
  b->live = 1;
  return b;
}

/*
** Reports the limbs of a new bigint to the collector as debt. Amounts
** under 1 KB are carried over in the state's counter. Respects a collector
** stopped by the user (LUA_GCSTEP would run it anyway).
*/
static void account (lua_State *L, bigint *b) {
  /* the limbs in use (GMP may hold a few more), plus malloc's overhead */
  size_t bytes = mpz_size(b->z) ? mpz_size(b->z) * sizeof(mp_limb_t) + 16 : 0;
  bigint_ctx *c;
  if (bytes == 0) return;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
  c = (bigint_ctx *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (c == NULL) return;
  c->pending += bytes;
  if (c->pending >= 1024) {
    size_t kb = c->pending / 1024;
    c->pending %= 1024;
    if (lua_gc(L, LUA_GCISRUNNING))
      lua_gc(L, LUA_GCSTEP, kb > INT_MAX ? INT_MAX : (int)kb);
  }
}

/* Accounts for the bigint on top of the stack and returns it (1 result). */
static int done (lua_State *L, bigint *r) {
  account(L, r);
  return 1;
}

/* The bigint at idx, or NULL for any other value (a full userdata of a
** bigint's size whose metatable is the bigint one). */
static bigint *testbig (lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  int same;
  if (p == NULL || lua_type(L, idx) != LUA_TUSERDATA ||
      lua_rawlen(L, idx) != sizeof(bigint) || !lua_getmetatable(L, idx))
    return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &meta_key);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? (bigint *)p : NULL;
}

/* The live bigint at idx; raises "argument" for other values and "closed"
** for a bigint closed by <close>. */
static bigint *checkbig (lua_State *L, int idx) {
  bigint *b = testbig(L, idx);
  if (b == NULL) concur_typeerror(L, idx, "bigint");
  if (!b->live) concur_error(L, "closed", "attempt to use a closed bigint");
  return b;
}


/* ---- operands ---------------------------------------------------------- */

/* room for an int64 in limbs, whatever GMP_NUMB_BITS */
#define INT_LIMBS (64 / GMP_NUMB_BITS + 1)

typedef struct opnd {
  mpz_t view;
  mp_limb_t limbs[INT_LIMBS];
} opnd;

/* A read-only mpz view of a Lua integer, over o's limbs (no allocation). */
static mpz_srcptr intview (opnd *o, lua_Integer v) {
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                               : (unsigned long long)v;
  mp_size_t n = 0;
  while (u != 0) {
    o->limbs[n++] = (mp_limb_t)(u & GMP_NUMB_MASK);
#if GMP_NUMB_BITS >= 64
    u = 0;
#else
    u >>= GMP_NUMB_BITS;
#endif
  }
  return mpz_roinit_n(o->view, o->limbs, v < 0 ? -n : n);
}

/* Does the float f hold an integer value (not NaN, not infinite)? */
static int isintegral (lua_Number f) {
  return f == floor(f) && !isinf(f);
}

/*
** The value at idx as an mpz: a bigint, a Lua integer, or a float with an
** integral value (beyond the integers, a temporary bigint is pushed). 'what'
** names the operation in errors, e.g. "'+'". Raises "argument" for other
** values and for non-integral floats.
*/
static mpz_srcptr toz (lua_State *L, int idx, opnd *o, const char *what) {
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER: {
      lua_Integer i;
      lua_Number f;
      if (lua_isinteger(L, idx)) return intview(o, lua_tointeger(L, idx));
      f = lua_tonumber(L, idx);
      if (!isintegral(f))
        concur_error(L, "argument", "bad operand for %s (number has no "
                     "integer representation)", what);
      if (lua_numbertointeger(f, &i)) return intview(o, i);
      {
        bigint *t = newbig(L);
        gmp(L, what, GOP(G_SET_D, .r = t->z, .d = f));
        return t->z;
      }
    }
    case LUA_TUSERDATA: {
      bigint *b = testbig(L, idx);
      if (b != NULL) {
        if (!b->live)
          concur_error(L, "closed", "attempt to use a closed bigint");
        return b->z;
      }
    }
    /* FALLTHROUGH */
    default:
      concur_error(L, "argument", "bad operand for %s (bigint or integer "
                   "expected, got %s)", what, luaL_typename(L, idx));
      return NULL;
  }
}

/* As concur_argerror, naming the function itself: the debug info has no
** name for functions called through pcall or a table field. */
static int argerr (lua_State *L, int arg, const char *fname,
                   const char *msg) {
  return concur_error(L, "argument", "bad argument #%d to '%s' (%s)", arg,
                      fname, msg);
}

/* Raises "limit" unless a result of 'bits' bits is allowed. */
static void checkbits (lua_State *L, double bits, const char *what) {
  if (bits > MAX_BITS)
    concur_error(L, "limit", "%s: result too large (over the cap of 2^32 "
                 "bits)", what);
}


/* ---- arithmetic ---------------------------------------------------------- */

/*** a + b. */
static int bigint_add (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'+'"), b = toz(L, 2, &y, "'+'");
  bigint *r = newbig(L);
  gmp(L, "'+'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_add));
  return done(L, r);
}

/*** a - b. */
static int bigint_sub (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'-'"), b = toz(L, 2, &y, "'-'");
  bigint *r = newbig(L);
  gmp(L, "'-'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_sub));
  return done(L, r);
}

/*** a * b; raises "limit" when the product would pass the size cap. */
static int bigint_mul (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'*'"), b = toz(L, 2, &y, "'*'");
  bigint *r;
  checkbits(L, (double)mpz_sizeinbase(a, 2) + (double)mpz_sizeinbase(b, 2),
            "'*'");
  r = newbig(L);
  gmp(L, "'*'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_mul));
  return done(L, r);
}

/* Raises "argument" for a zero divisor, as Lua does for integers. */
static void checkdivisor (lua_State *L, mpz_srcptr b, const char *what) {
  if (mpz_sgn(b) == 0)
    concur_error(L, "argument", "attempt to perform 'n%s0'", what);
}

/*** a // b: floor division (rounds toward minus infinity, as Lua). */
static int bigint_idiv (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'//'"), b = toz(L, 2, &y, "'//'");
  bigint *r;
  checkdivisor(L, b, "//");
  r = newbig(L);
  gmp(L, "'//'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_fdiv_q));
  return done(L, r);
}

/*** a % b: the remainder of floor division (has the sign of b, as Lua). */
static int bigint_mod (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'%'"), b = toz(L, 2, &y, "'%'");
  bigint *r;
  checkdivisor(L, b, "%");
  r = newbig(L);
  gmp(L, "'%'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_fdiv_r));
  return done(L, r);
}

/* a / b: refused, bigint division is not exact. */
static int bigint_div (lua_State *L) {
  return concur_error(L, "argument", "bad operand for '/' (bigint division "
                      "is not exact: use '//' and '%%')");
}

/*** -a. */
static int bigint_unm (lua_State *L) {
  bigint *a = checkbig(L, 1);
  bigint *r = newbig(L);
  gmp(L, "'-'", GOP(G_UN, .r = r->z, .a = a->z, .f1 = mpz_neg));
  return done(L, r);
}

/*
** The exponent at idx for '^': a non-negative integer (Lua integer,
** integral float or bigint). Sets *big when it does not fit an unsigned
** long (only bases 0, 1 and -1 can take such exponents).
*/
static unsigned long checkexp (lua_State *L, int idx, int *big, int *odd) {
  opnd o;
  mpz_srcptr e = toz(L, idx, &o, "'^'");
  if (mpz_sgn(e) < 0)
    concur_error(L, "argument", "bad operand for '^' (negative exponent)");
  *odd = mpz_odd_p(e);
  *big = !mpz_fits_ulong_p(e);
  return *big ? 0 : mpz_get_ui(e);
}

/*** a ^ n for a non-negative integer n; raises "limit" when the power would
** pass the size cap. */
static int bigint_pow (lua_State *L) {
  opnd x;
  int big, odd;
  mpz_srcptr a = toz(L, 1, &x, "'^'");
  unsigned long n = checkexp(L, 2, &big, &odd);
  bigint *r;
  if (mpz_cmpabs_ui(a, 1) <= 0) {   /* 0, 1, -1: any exponent */
    long v = mpz_sgn(a) == 0 ? ((big || n > 0) ? 0 : 1)
             : (mpz_sgn(a) < 0 && odd) ? -1 : 1;
    r = newbig(L);
    gmp(L, "'^'", GOP(G_SET_SI, .r = r->z, .v = v));
    return done(L, r);
  }
  if (big) checkbits(L, INFINITY, "'^'");
  {   /* bits of |a|^n: n log2|a|, from a double mantissa and exponent */
    long e;
    double m = fabs(mpz_get_d_2exp(&e, a));
    checkbits(L, (log2(m) + (double)e) * (double)n + 1, "'^'");
  }
  r = newbig(L);
  gmp(L, "'^'", GOP(G_POW_UI, .r = r->z, .a = a, .n = n));
  return done(L, r);
}


/* ---- bitwise (two's complement of unbounded width, as Python's) ------- */

/*** a & b. */
static int bigint_band (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'&'"), b = toz(L, 2, &y, "'&'");
  bigint *r = newbig(L);
  gmp(L, "'&'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_and));
  return done(L, r);
}

/*** a | b. */
static int bigint_bor (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'|'"), b = toz(L, 2, &y, "'|'");
  bigint *r = newbig(L);
  gmp(L, "'|'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_ior));
  return done(L, r);
}

/*** a ~ b. */
static int bigint_bxor (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'~'"), b = toz(L, 2, &y, "'~'");
  bigint *r = newbig(L);
  gmp(L, "'~'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_xor));
  return done(L, r);
}

/*** ~a, which is -a - 1. */
static int bigint_bnot (lua_State *L) {
  bigint *a = checkbig(L, 1);
  bigint *r = newbig(L);
  gmp(L, "'~'", GOP(G_UN, .r = r->z, .a = a->z, .f1 = mpz_com));
  return done(L, r);
}

/*
** a << n (n < 0 shifts right) and a >> n: a times or floor-divided by 2^n
** (an arithmetic shift: -1 >> 1 is -1). The count must be a Lua integer.
*/
static int shift (lua_State *L, int left, const char *what) {
  opnd x;
  mpz_srcptr a = toz(L, 1, &x, what);
  lua_Integer n;
  bigint *r;
  if (!lua_isinteger(L, 2))
    concur_error(L, "argument", "bad operand for %s (shift count must be "
                 "an integer)", what);
  n = lua_tointeger(L, 2);
  if (!left) n = n == LUA_MININTEGER ? LUA_MAXINTEGER : -n;
  if (n > 0 && mpz_sgn(a) != 0)
    checkbits(L, (double)mpz_sizeinbase(a, 2) + (double)n, what);
  r = newbig(L);
  if (n >= 0) {
    if (mpz_sgn(a) != 0)
      gmp(L, what, GOP(G_MUL_2EXP, .r = r->z, .a = a, .n = (unsigned long)n));
  }
  else if ((double)-n >= (double)mpz_sizeinbase(a, 2))   /* all shifted out */
    gmp(L, what, GOP(G_SET_SI, .r = r->z, .v = mpz_sgn(a) < 0 ? -1 : 0));
  else
    gmp(L, what, GOP(G_FDIV_Q_2EXP, .r = r->z, .a = a, .n = (unsigned long)-n));
  return done(L, r);
}

static int bigint_shl (lua_State *L) { return shift(L, 1, "'<<'"); }
static int bigint_shr (lua_State *L) { return shift(L, 0, "'>>'"); }


/* ---- comparison ---------------------------------------------------------- */

/*
** Compares the values at i and j (bigints, integers, or any floats: a
** non-integral float compares by value). Returns -1, 0 or 1, or 2 when they
** are unordered (a NaN). Raises "argument" for other types.
*/
static int compare (lua_State *L, int i, int j, const char *what) {
  int fi = lua_type(L, i) == LUA_TNUMBER && !lua_isinteger(L, i);
  int fj = lua_type(L, j) == LUA_TNUMBER && !lua_isinteger(L, j);
  opnd x, y;
  int c;
  if (fi && fj) {
    lua_Number a = lua_tonumber(L, i), b = lua_tonumber(L, j);
    return a < b ? -1 : a > b ? 1 : a == b ? 0 : 2;
  }
  if (fi || fj) {   /* exactly one float: mpz_cmp_d compares exactly */
    lua_Number f = lua_tonumber(L, fi ? i : j);
    mpz_srcptr z = toz(L, fi ? j : i, &x, what);
    if (isnan(f)) return 2;
    c = mpz_cmp_d(z, f);
    c = (c > 0) - (c < 0);
    return fi ? -c : c;
  }
  c = mpz_cmp(toz(L, i, &x, what), toz(L, j, &y, what));
  return (c > 0) - (c < 0);
}

/* __eq: only called by Lua when both sides are userdata. */
static int bigint_eq (lua_State *L) {
  bigint *a = testbig(L, 1), *b = testbig(L, 2);
  lua_pushboolean(L, a && b && a->live && b->live && mpz_cmp(a->z, b->z) == 0);
  return 1;
}

static int bigint_lt (lua_State *L) {
  int c = compare(L, 1, 2, "'<'");
  lua_pushboolean(L, c == -1);
  return 1;
}

static int bigint_le (lua_State *L) {
  int c = compare(L, 1, 2, "'<='");
  lua_pushboolean(L, c == -1 || c == 0);
  return 1;
}

/***
** bigint.eq(a, b): are a and b equal? Accepts bigints and Lua numbers on
** either side (Lua itself calls __eq only when both sides are userdata, so
** `bigint(5) == 5` is false).
*/
static int bigint_eqf (lua_State *L) {
  lua_pushboolean(L, compare(L, 1, 2, "'eq'") == 0);
  return 1;
}

/***
** bigint.cmp(a, b): -1, 0 or 1 as a < b, a == b, a > b; bigints and Lua
** numbers on either side. Raises "argument" for a NaN.
*/
static int bigint_cmpf (lua_State *L) {
  int c = compare(L, 1, 2, "'cmp'");
  if (c == 2) concur_error(L, "argument", "bad argument to 'cmp' (NaN)");
  lua_pushinteger(L, c);
  return 1;
}


/* ---- text ---------------------------------------------------------------- */

/* Pushes z written in base (2..36); big numbers are converted on several
** threads. */
static void pushstring (lua_State *L, mpz_srcptr z, int base) {
  luaL_Buffer B;
  char *p = luaL_buffinitsize(L, &B, mpz_sizeinbase(z, base) + 2);
  gop o = { G_TOSTR, .out = p, .base = base, .a = z,
             .k = CONCUR_BIGNUM_MAX_THREADS };
  gmp(L, "tostring", &o);
  luaL_pushresultsize(&B, o.len);
}

static int optbase (lua_State *L, int idx) {
  lua_Integer base;
  if (lua_isnoneornil(L, idx)) return 10;
  base = concur_checkinteger(L, idx);
  if (base < 2 || base > 36) concur_argerror(L, idx, "base out of range");
  return (int)base;
}

/* __tostring: decimal; "bigint (closed)" for a closed bigint. */
static int bigint_tostring_mm (lua_State *L) {
  bigint *b = testbig(L, 1);
  if (b == NULL) return concur_typeerror(L, 1, "bigint");
  if (!b->live) lua_pushliteral(L, "bigint (closed)");
  else pushstring(L, b->z, 10);
  return 1;
}

/*** b:tostring([base]): the digits in base 2..36 (default 10), lower-case,
** with a leading '-' when negative and no prefix. */
static int bigint_tostring (lua_State *L) {
  bigint *b = checkbig(L, 1);
  pushstring(L, b->z, optbase(L, 2));
  return 1;
}

/* __concat: bigints as decimal text, strings and numbers as Lua has them. */
static int bigint_concat (lua_State *L) {
  int i;
  for (i = 1; i <= 2; i++) {
    bigint *b = testbig(L, i);
    if (b != NULL) {
      if (!b->live) concur_error(L, "closed", "attempt to use a closed bigint");
      pushstring(L, b->z, 10);
    }
    else if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) {
      lua_pushvalue(L, i);
      lua_tostring(L, -1);   /* numbers: converted in place, on the copy */
    }
    else
      concur_error(L, "argument", "attempt to concatenate a %s value",
                   luaL_typename(L, i));
  }
  lua_concat(L, 2);
  return 1;
}

/*** b:digits([base]): the exact number of digits of |b| in base 2..36
** (default 10), without a sign; 1 for zero. */
static int bigint_digits (lua_State *L) {
  bigint *b = checkbig(L, 1);
  gop o = { G_DIGITS, .a = b->z, .base = optbase(L, 2) };
  gmp(L, "digits", &o);
  lua_pushinteger(L, (lua_Integer)o.len);
  return 1;
}

/*** b:bits(): the number of bits of |b| (0 for zero). */
static int bigint_bits (lua_State *L) {
  bigint *b = checkbig(L, 1);
  lua_pushinteger(L, mpz_sgn(b->z) == 0 ? 0
                     : (lua_Integer)mpz_sizeinbase(b->z, 2));
  return 1;
}

/*** b:sign(): -1, 0 or 1. */
static int bigint_sign (lua_State *L) {
  bigint *b = checkbig(L, 1);
  lua_pushinteger(L, mpz_sgn(b->z));
  return 1;
}

/*** b:tointeger(): b as a Lua integer, or nil when it does not fit. */
static int bigint_tointeger (lua_State *L) {
  bigint *b = checkbig(L, 1);
  size_t n = mpz_size(b->z), i;
  unsigned long long u = 0;
  if (mpz_sizeinbase(b->z, 2) > 64) {
    lua_pushnil(L);
    return 1;
  }
  for (i = n; i-- > 0; ) {   /* at most 64 bits: fits u */
#if GMP_NUMB_BITS >= 64
    u = (unsigned long long)mpz_getlimbn(b->z, (mp_size_t)i);
#else
    u = (u << GMP_NUMB_BITS) | mpz_getlimbn(b->z, (mp_size_t)i);
#endif
  }
  if (mpz_sgn(b->z) >= 0 && u <= (unsigned long long)LUA_MAXINTEGER)
    lua_pushinteger(L, (lua_Integer)u);
  else if (mpz_sgn(b->z) < 0 && u <= (unsigned long long)LUA_MAXINTEGER + 1)
    lua_pushinteger(L, (lua_Integer)(0ULL - u));   /* wraps to the negative */
  else
    lua_pushnil(L);
  return 1;
}

/* __gc and __close: frees the limbs; idempotent. */
static int bigint_close (lua_State *L) {
  bigint *b = testbig(L, 1);
  if (b == NULL) return concur_typeerror(L, 1, "bigint");
  if (b->live) {
    b->live = 0;
    mpz_clear(b->z);
  }
  return 0;
}


/* ---- construction ------------------------------------------------------ */

static int digitval (int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  return 99;
}

static int isspacec (int c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Raises "argument" for a malformed number, quoting (the start of) it. */
static int badnumber (lua_State *L, const char *s, size_t len) {
  if (len > 40)
    lua_pushfstring(L, "malformed number '%s...'",
                    lua_pushlstring(L, s, 40));
  else
    lua_pushfstring(L, "malformed number '%s'", lua_pushlstring(L, s, len));
  return argerr(L, 1, "bigint", lua_tostring(L, -1));
}

/*
** Parses s as an optional sign, an optional prefix 0x/0b/0o (only without
** a base, or with the base it names), then digits; leading and trailing
** white space is allowed, nothing else. base 0 means 10 unless prefixed.
*/
static void parse (lua_State *L, bigint *r, const char *s, size_t len,
                   int base) {
  size_t i = 0, end = len, k;
  int neg = 0;
  while (i < end && isspacec((unsigned char)s[i])) i++;
  while (end > i && isspacec((unsigned char)s[end - 1])) end--;
  if (i < end && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (end - i > 2 && s[i] == '0') {
    int c = s[i + 1] | 0x20, pbase = c == 'x' ? 16 : c == 'b' ? 2
                                   : c == 'o' ? 8 : 0;
    if (pbase != 0 && (base == 0 || base == pbase)) {
      base = pbase;
      i += 2;
    }
  }
  if (base == 0) base = 10;
  if (i == end) badnumber(L, s, len);
  for (k = i; k < end; k++)
    if (digitval((unsigned char)s[k]) >= base) badnumber(L, s, len);
  checkbits(L, (double)(end - i) * log2((double)base), "bigint");
  /* NOTE: s[i .. end) holds only digits, and after it come only white
  ** space and the NUL Lua keeps after every string, which mpz_set_str
  ** skips: so it can read in place */
  {
    gop o = { G_SET_STR, .r = r->z, .s = s + i, .base = base, .v = neg };
    gmp(L, "bigint", &o);
    if (o.rc != 0) badnumber(L, s, len);
  }
}

/***
** bigint.new(x [, base]): a bigint from a bigint (copied), a Lua integer, a
** float with an integral value, or a string: optional sign, then decimal
** digits, or 0x / 0b / 0o and hex / binary / octal digits, or digits in
** the given base (2..36). Raises "argument" for anything else, naming it.
*/
static int bigint_new (lua_State *L) {
  bigint *r;
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    int base = lua_isnoneornil(L, 2) ? 0 : optbase(L, 2);
    r = newbig(L);
    parse(L, r, s, len, base);
  }
  else {
    opnd o;
    mpz_srcptr z;
    if (lua_type(L, 1) != LUA_TNUMBER && !testbig(L, 1))
      return argerr(L, 1, "bigint", lua_pushfstring(L, "bigint, integer or "
                    "string expected, got %s", luaL_typename(L, 1)));
    if (!lua_isnoneornil(L, 2))
      argerr(L, 2, "bigint", "a base is only allowed with a string");
    z = toz(L, 1, &o, "'bigint'");
    r = newbig(L);
    gmp(L, "'bigint'", GOP(G_UN, .r = r->z, .a = z, .f1 = mpz_set));
  }
  return done(L, r);
}

/* ---- number theory, as Python's math and pow offer it -------------------- */

/*** bigint.divmod(a, b) --> a // b, a % b (floor, as Lua's // and %). */
static int bigint_divmod (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'divmod'"), b = toz(L, 2, &y, "'divmod'");
  bigint *q, *r;
  checkdivisor(L, b, "//");
  q = newbig(L);
  r = newbig(L);
  gmp(L, "'divmod'", GOP(G_FDIV_QR, .r = q->z, .r2 = r->z, .a = a, .b = b));
  account(L, q);
  account(L, r);
  return 2;
}

/*** bigint.gcd(a, b) --> the greatest common divisor (>= 0; gcd(0, 0) = 0). */
static int bigint_gcd (lua_State *L) {
  opnd x, y;
  mpz_srcptr a = toz(L, 1, &x, "'gcd'"), b = toz(L, 2, &y, "'gcd'");
  bigint *r = newbig(L);
  gmp(L, "'gcd'", GOP(G_BIN, .r = r->z, .a = a, .b = b, .f2 = mpz_gcd));
  return done(L, r);
}

/***
** bigint.powmod(b, e, m) --> b^e mod m, in 0 .. |m|-1 for m > 0 (as
** Python's pow(b, e, m): the sign of m for m < 0). A negative e uses the
** inverse of b modulo m; raises "argument" when there is none, or m is 0.
*/
static int bigint_powmod (lua_State *L) {
  opnd x, y, z;
  mpz_srcptr b = toz(L, 1, &x, "'powmod'"), e = toz(L, 2, &y, "'powmod'");
  mpz_srcptr m = toz(L, 3, &z, "'powmod'");
  bigint *r;
  if (mpz_sgn(m) == 0)
    return concur_error(L, "argument", "bad argument #3 to 'powmod' (zero "
                        "modulus)");
  r = newbig(L);
  {
    gop o = { G_POWMOD, .r = r->z, .a = b, .b = e, .c = m };
    gmp(L, "'powmod'", &o);
    if (!o.rc)
      return concur_error(L, "argument", "bad argument #1 to 'powmod' (base "
                          "is not invertible for the modulus)");
  }
  return done(L, r);
}

/*** bigint.isqrt(n) --> the integer square root of n >= 0 (floor). */
static int bigint_isqrt (lua_State *L) {
  opnd x;
  mpz_srcptr n = toz(L, 1, &x, "'isqrt'");
  bigint *r;
  if (mpz_sgn(n) < 0)
    return concur_error(L, "argument", "bad argument #1 to 'isqrt' (negative "
                        "number)");
  r = newbig(L);
  gmp(L, "'isqrt'", GOP(G_UN, .r = r->z, .a = n, .f1 = mpz_sqrt));
  return done(L, r);
}

/*** b:abs() --> |b|. */
static int bigint_abs (lua_State *L) {
  bigint *a = checkbig(L, 1);
  bigint *r = newbig(L);
  gmp(L, "'abs'", GOP(G_UN, .r = r->z, .a = a->z, .f1 = mpz_abs));
  return done(L, r);
}

/*** b:tonumber() --> the nearest float below |b| in magnitude (truncated,
** as mpz_get_d), or +-inf (math.huge) beyond the float range. */
static int bigint_tonumber (lua_State *L) {
  bigint *a = checkbig(L, 1);
  if (mpz_sizeinbase(a->z, 2) > 1024)
    lua_pushnumber(L, mpz_sgn(a->z) < 0 ? -HUGE_VAL : HUGE_VAL);
  else
    lua_pushnumber(L, (lua_Number)mpz_get_d(a->z));
  return 1;
}

/*** bigint.isbigint(x): is x a bigint? */
static int bigint_isbigint (lua_State *L) {
  lua_pushboolean(L, testbig(L, 1) != NULL);
  return 1;
}

/***
** bigint.factorial(n [, { threads = k }]): n! for an integer 0 <= n <=
** 10^8. With k > 1 the work is split over up to k threads (at most the
** CPUs idle at the call; n below 10^5 runs on one, where splitting does
** not pay); the value is the same. Raises "argument" for a negative or
** non-integer n or a bad option, "limit" for n > 10^8.
*/
static int bigint_factorial (lua_State *L) {
  static const char *const opts[] = {"threads"};
  opnd o;
  mpz_srcptr nz;
  lua_Integer threads = 1;
  unsigned long n;
  bigint *r;
  if (lua_type(L, 1) != LUA_TNUMBER && !testbig(L, 1))
    return argerr(L, 1, "factorial", lua_pushfstring(L, "integer expected, "
                  "got %s", luaL_typename(L, 1)));
  if (lua_type(L, 1) == LUA_TNUMBER && !lua_isinteger(L, 1)
      && !isintegral(lua_tonumber(L, 1)))
    return argerr(L, 1, "factorial", "number has no integer representation");
  nz = toz(L, 1, &o, "'factorial'");
  if (mpz_sgn(nz) < 0) return argerr(L, 1, "factorial", "negative number");
  if (mpz_cmp_ui(nz, CONCUR_BIGNUM_FAC_MAX) > 0)
    return concur_error(L, "limit", "factorial: n is over the cap of %d",
                        (int)CONCUR_BIGNUM_FAC_MAX);
  n = mpz_get_ui(nz);
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TTABLE)
      argerr(L, 2, "factorial", lua_pushfstring(L, "table expected, got %s",
                                                luaL_typename(L, 2)));
    lua_pushnil(L);
    while (lua_next(L, 2)) {   /* only known option names */
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING
          || strcmp(lua_tostring(L, -1), opts[0]) != 0)
        argerr(L, 2, "factorial", lua_pushfstring(L, "unknown option '%s'",
                                                  luaL_tolstring(L, -1, NULL)));
    }
    if (lua_getfield(L, 2, "threads") != LUA_TNIL) {
      lua_Number f = lua_tonumber(L, -1);
      threads = lua_isinteger(L, -1) ? lua_tointeger(L, -1)
              : (lua_type(L, -1) == LUA_TNUMBER && isintegral(f) && f >= 1)
              ? (f > 1e6 ? 1000000 : (lua_Integer)f) : 0;
      if (threads < 1)
        argerr(L, 2, "factorial", "option 'threads' must be a positive "
               "integer");
    }
    lua_pop(L, 1);
  }
  if (threads > CONCUR_BIGNUM_MAX_THREADS) threads = CONCUR_BIGNUM_MAX_THREADS;
  r = newbig(L);
  gmp(L, "factorial", GOP(G_FAC, .r = r->z, .n = n, .k = (int)threads));
  return done(L, r);
}


/*
** For the specs: core.bigint._split_factorial(n, k) and
** core.bigint._split_tostring(b, k) take the multi-threaded paths whatever
** the machine's CPUs and load (which decide for the public functions).
*/
static int bigint_split_factorial (lua_State *L) {
  lua_Integer n = concur_checkinteger(L, 1), k = concur_checkinteger(L, 2);
  bigint *r;
  if (n < 0 || (unsigned long long)n > CONCUR_BIGNUM_FAC_MAX || k < 1)
    return concur_error(L, "argument", "bad arguments to '_split_factorial'");
  r = newbig(L);
  gmp(L, "factorial", GOP(G_FAC_SPLIT, .r = r->z, .n = (unsigned long)n,
                          .k = (int)k));
  return done(L, r);
}

/* core.bigint._fail_after(n): for the specs, the n-th GMP allocation from
** now, in any state, fails as if memory had run out (0: none). */
static int bigint_fail_after (lua_State *L) {
  concur_gmp_fail_after((long)concur_checkinteger(L, 1));
  return 0;
}

static int bigint_split_tostring (lua_State *L) {
  bigint *b = checkbig(L, 1);
  lua_Integer k = concur_checkinteger(L, 2);
  luaL_Buffer B;
  char *p;
  if (k < 1 || k > CONCUR_BIGNUM_MAX_THREADS)
    return concur_error(L, "argument", "bad arguments to '_split_tostring'");
  gop o = { G_TOSTR, .base = 10, .a = b->z, .k = -(int)k };
  o.out = p = luaL_buffinitsize(L, &B, mpz_sizeinbase(b->z, 10) + 2);
  gmp(L, "tostring", &o);
  luaL_pushresultsize(&B, o.len);
  return 1;
}


/* ---- the codec: bigints cross states by value -------------------------- */

/*
** Bytes: a sign byte (0: zero or positive, 1: negative) then the magnitude
** as 64-bit little-endian words, least significant first, the top word
** non-zero (zero has no words). Any other bytes are refused.
*/
static int bigint_encode (lua_State *L, int idx, concur_buf *buf) {
  bigint *b = testbig(L, idx);
  size_t words, count = 0;
  unsigned char sign;
  if (b == NULL || !b->live) return CONCUR_VALUE_CLOSED;
  sign = mpz_sgn(b->z) < 0;
  words = (mpz_sizeinbase(b->z, 2) + 63) / 64;
  if (mpz_sgn(b->z) == 0) words = 0;
  if (concur_buf_reserve(buf, 1 + words * 8)) return -1;
  buf->data[buf->len++] = (char)sign;
  if (words) mpz_export(buf->data + buf->len, &count, -1, 8, -1, 0, b->z);
  buf->len += count * 8;
  return 0;
}

static int bigint_decode (lua_State *L, const char *p, size_t n) {
  size_t words;
  bigint *r;
  if (n < 1 || (unsigned char)p[0] > 1 || (n - 1) % 8 != 0) return -1;
  words = (n - 1) / 8;
  if ((double)words * 64 > MAX_BITS) return -1;
  if (words == 0 && p[0] != 0) return -1;         /* no negative zero */
  if (words > 0 && memcmp(p + n - 8, "\0\0\0\0\0\0\0\0", 8) == 0)
    return -1;                                    /* top word zero */
  r = newbig(L);
  gmp(L, "bigint", GOP(G_IMPORT, .r = r->z, .n = words, .s = p + 1, .v = p[0]));
  account(L, r);
  return 0;
}

static const concur_valtype bigint_valtype = {
  'G', bigint_encode, bigint_decode
};


/* ---- registration ------------------------------------------------------ */

static const luaL_Reg bigint_methods[] = {
  {"tostring", bigint_tostring},
  {"digits", bigint_digits},
  {"bits", bigint_bits},
  {"sign", bigint_sign},
  {"tointeger", bigint_tointeger},
  {"tonumber", bigint_tonumber},
  {"abs", bigint_abs},
  {NULL, NULL}
};

static const luaL_Reg bigint_meta[] = {
  {"__add", bigint_add},
  {"__sub", bigint_sub},
  {"__mul", bigint_mul},
  {"__idiv", bigint_idiv},
  {"__mod", bigint_mod},
  {"__div", bigint_div},
  {"__pow", bigint_pow},
  {"__unm", bigint_unm},
  {"__band", bigint_band},
  {"__bor", bigint_bor},
  {"__bxor", bigint_bxor},
  {"__bnot", bigint_bnot},
  {"__shl", bigint_shl},
  {"__shr", bigint_shr},
  {"__eq", bigint_eq},
  {"__lt", bigint_lt},
  {"__le", bigint_le},
  {"__tostring", bigint_tostring_mm},
  {"__concat", bigint_concat},
  {"__gc", bigint_close},
  {"__close", bigint_close},
  {NULL, NULL}
};

static const luaL_Reg bigint_funcs[] = {
  {"new", bigint_new},
  {"factorial", bigint_factorial},
  {"eq", bigint_eqf},
  {"cmp", bigint_cmpf},
  {"isbigint", bigint_isbigint},
  {"divmod", bigint_divmod},
  {"gcd", bigint_gcd},
  {"powmod", bigint_powmod},
  {"isqrt", bigint_isqrt},
  {"_split_factorial", bigint_split_factorial},
  {"_split_tostring", bigint_split_tostring},
  {"_fail_after", bigint_fail_after},
  {NULL, NULL}
};

/*
** Pushes the metatable, creating it (and the state's GC counter) on first
** use: a state that only receives bigints through the codec gets it too.
*/
static void pushmeta (lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &meta_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  if (luaL_newmetatable(L, BIGINT_MT)) {
    luaL_setfuncs(L, bigint_meta, 0);
    luaL_newlib(L, bigint_methods);
    lua_setfield(L, -2, "__index");
    concur_class_byvalue(L, -1, &bigint_valtype);
    lua_newuserdatauv(L, sizeof(bigint_ctx), 0);
    ((bigint_ctx *)lua_touserdata(L, -1))->pending = 0;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &meta_key);
}

/* Adds the field 'bigint' (the functions above) to the module table on
** top of the stack. */
void concur_bigint_open (lua_State *L) {
  concur_gmp_init();
  concur_register_valtype(&bigint_valtype);
  pushmeta(L);
  lua_pop(L, 1);
  luaL_newlib(L, bigint_funcs);
  lua_setfield(L, -2, "bigint");
}
