/*
** array.h: a fixed-size array of numbers in shared memory (as Python's
** multiprocessing.Array), every element an atomic 64-bit word: int64
** integers or doubles. csrc/array.c binds it to Lua as concur.Array. No
** Lua.
**
** Each operation on one element is one atomic instruction (a load, a
** store, a fetch-and-add) or a compare-and-swap loop (a float add, a
** compare-and-swap of floats by value), so it is lock-free and a process
** killed in the middle of one leaves nothing half done.
*/
#ifndef CONCUR_CORE_ARRAY_H
#define CONCUR_CORE_ARRAY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "sync.h"

#define CONCUR_ARRAY_MAX ((int64_t)1 << 27)   /* elements: 1 GiB of words */

typedef struct concur_array {
  int64_t n;
  int isfloat;
  int pad;
  _Atomic uint64_t v[];
} concur_array;

/* The bytes of an array of n elements. */
size_t concur_array_size (int64_t n);
/* n elements of x (x of the array's type). */
void concur_array_init (concur_array *a, int64_t n, int isfloat, concur_num x);

/* Element i (0-based, in range): a number of the array's type. */
concur_num concur_array_get (concur_array *a, int64_t i);
/* x must be of the array's type (the binding converts). */
void concur_array_set (concur_array *a, int64_t i, concur_num x);
/* Adds d (of the array's type) atomically; the new value. Integers wrap
** around, as Lua's. */
concur_num concur_array_add (concur_array *a, int64_t i, concur_num d);
/* Sets element i to x if it equals old (by value; a NaN equals nothing);
** whether it did. */
int concur_array_cas (concur_array *a, int64_t i, concur_num old,
                      concur_num x);

#endif
