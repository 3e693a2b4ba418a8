/*
** crawl_seen.c: the crawler's seen-set (see crawl_seen.h).
**
** A slot holds a fingerprint or 0 (empty; a fingerprint of 0 is stored as
** 1). The home slot of fp is fp * cap / 2^64 (the high half of a 128-bit
** product: no division, and any capacity); collisions go to the next slots,
** wrapping. The table grows by half when it would pass 85% full, so it is
** never below 57% after growing: at most 14.1 bytes per fingerprint.
*/
#include <stdlib.h>
#include "crawl_seen.h"
#include "wire.h"

#define MAXLOAD_NUM 85    /* grow past 85% full */
#define MAXLOAD_DEN 100

/* a fixed key: fingerprints must mean the same everywhere, always */
#define K0 0x636f6e6375722e73ULL   /* "concur.s" */
#define K1 0x65656e2e73657431ULL   /* "een.set1" */

uint64_t concur_seen_fingerprint (const void *p, size_t n) {
  uint64_t fp = concur_siphash(K0, K1, p, n);
  return fp ? fp : 1;
}

void concur_seen_init (concur_seen *s) {
  s->slots = NULL;
  s->cap = s->count = 0;
}

void concur_seen_free (concur_seen *s) {
  free(s->slots);
  concur_seen_init(s);
}

static size_t home (uint64_t fp, size_t cap) {
  return (size_t)(((unsigned __int128)fp * cap) >> 64);
}

/* Puts fp (not there) into slots of capacity cap. */
static void place (uint64_t *slots, size_t cap, uint64_t fp) {
  size_t i = home(fp, cap);
  while (slots[i]) i = i + 1 == cap ? 0 : i + 1;
  slots[i] = fp;
}

static int grow (concur_seen *s) {
  size_t ncap = s->cap ? s->cap + s->cap / 2 : 64;
  uint64_t *n = calloc(ncap, sizeof *n);
  if (n == NULL) return -1;
  for (size_t i = 0; i < s->cap; i++)
    if (s->slots[i]) place(n, ncap, s->slots[i]);
  free(s->slots);
  s->slots = n;
  s->cap = ncap;
  return 0;
}

int concur_seen_has (const concur_seen *s, uint64_t fp) {
  size_t i;
  if (s->cap == 0) return 0;
  if (fp == 0) fp = 1;
  for (i = home(fp, s->cap); s->slots[i]; i = i + 1 == s->cap ? 0 : i + 1)
    if (s->slots[i] == fp) return 1;
  return 0;
}

int concur_seen_add (concur_seen *s, uint64_t fp) {
  if (fp == 0) fp = 1;
  if (concur_seen_has(s, fp)) return 0;
  if ((s->count + 1) * MAXLOAD_DEN > s->cap * MAXLOAD_NUM && grow(s)) return -1;
  place(s->slots, s->cap, fp);
  s->count++;
  return 1;
}

size_t concur_seen_bytes (const concur_seen *s) {
  return s->cap * sizeof *s->slots;
}
