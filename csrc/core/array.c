/*
** array.c: the shared numeric array of array.h.
**
** An element is a 64-bit word: an int64, or the bits of a double. Integer
** adds are fetch-and-add (wrapping, as Lua's); float adds and float
** compare-and-swap loop on a compare-and-swap of the word, so they compare
** values, not bits (0.0 and -0.0 are equal, a NaN is never).
*/
#include <string.h>
#include "array.h"

size_t concur_array_size (int64_t n) {
  return sizeof(concur_array) + (size_t)n * sizeof(uint64_t);
}

static uint64_t tobits (concur_num x) {
  uint64_t b;
  if (x.isint) memcpy(&b, &x.u.i, 8);
  else memcpy(&b, &x.u.n, 8);
  return b;
}

static concur_num frombits (uint64_t b, int isfloat) {
  concur_num x;
  x.isint = !isfloat;
  if (isfloat) memcpy(&x.u.n, &b, 8);
  else memcpy(&x.u.i, &b, 8);
  return x;
}

void concur_array_init (concur_array *a, int64_t n, int isfloat, concur_num x) {
  uint64_t b = tobits(x);
  a->n = n;
  a->isfloat = isfloat;
  a->pad = 0;
  for (int64_t i = 0; i < n; i++) atomic_init(&a->v[i], b);
}

concur_num concur_array_get (concur_array *a, int64_t i) {
  return frombits(atomic_load_explicit(&a->v[i], memory_order_acquire),
                  a->isfloat);
}

void concur_array_set (concur_array *a, int64_t i, concur_num x) {
  atomic_store_explicit(&a->v[i], tobits(x), memory_order_release);
}

concur_num concur_array_add (concur_array *a, int64_t i, concur_num d) {
  uint64_t old, nw;
  concur_num x;
  if (!a->isfloat) {
    old = atomic_fetch_add(&a->v[i], tobits(d));   /* two's complement */
    return frombits(old + tobits(d), 0);
  }
  old = atomic_load(&a->v[i]);
  do {
    x = frombits(old, 1);
    x.u.n += d.u.n;
    nw = tobits(x);
  } while (!atomic_compare_exchange_weak(&a->v[i], &old, nw));
  return x;
}

int concur_array_cas (concur_array *a, int64_t i, concur_num old,
                      concur_num x) {
  uint64_t want = tobits(old), nw = tobits(x);
  if (!a->isfloat)
    return atomic_compare_exchange_strong(&a->v[i], &want, nw);
  for (;;) {
    uint64_t cur = atomic_load(&a->v[i]);
    if (!(frombits(cur, 1).u.n == old.u.n)) return 0;
    if (atomic_compare_exchange_weak(&a->v[i], &cur, nw)) return 1;
  }
}
