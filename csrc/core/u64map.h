/*
** u64map.h: a map from 64-bit keys (never 0 nor UINT64_MAX) to pointers,
** open addressing with linear probing; for the cluster's pending tasks.
** Not thread-safe: its owner locks around it.
*/
#ifndef CONCUR_CORE_U64MAP_H
#define CONCUR_CORE_U64MAP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CONCUR_U64_TOMB UINT64_MAX

typedef struct u64map {
  uint64_t *k;
  void **v;
  size_t cap, n, used;       /* used: live + tombstones */
} u64map;

static inline size_t u64map_mix (uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x;
}

static inline void *u64map_get (const u64map *m, uint64_t key) {
  if (m->cap == 0) return NULL;
  for (size_t i = u64map_mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->k[i] == key) return m->v[i];
    if (m->k[i] == 0) return NULL;
  }
}

static inline int u64map_grow (u64map *m) {
  size_t ncap = m->cap == 0 ? 64 : m->n * 4 > m->cap ? m->cap * 2 : m->cap;
  uint64_t *nk = calloc(ncap, sizeof *nk);
  void **nv = calloc(ncap, sizeof *nv);
  if (!nk || !nv) { free(nk); free(nv); return -1; }
  for (size_t i = 0; i < m->cap; i++)
    if (m->k[i] != 0 && m->k[i] != CONCUR_U64_TOMB) {
      size_t j = u64map_mix(m->k[i]) & (ncap - 1);
      while (nk[j]) j = (j + 1) & (ncap - 1);
      nk[j] = m->k[i];
      nv[j] = m->v[i];
    }
  free(m->k);
  free(m->v);
  m->k = nk;
  m->v = nv;
  m->cap = ncap;
  m->used = m->n;
  return 0;
}

/* key must not be in the map */
static inline int u64map_put (u64map *m, uint64_t key, void *val) {
  size_t i;
  if ((m->used + 1) * 2 > m->cap && u64map_grow(m)) return -1;
  for (i = u64map_mix(key) & (m->cap - 1); m->k[i] != 0 && m->k[i] != CONCUR_U64_TOMB;
       i = (i + 1) & (m->cap - 1)) {}
  if (m->k[i] == 0) m->used++;
  m->k[i] = key;
  m->v[i] = val;
  m->n++;
  return 0;
}

static inline void *u64map_del (u64map *m, uint64_t key) {
  if (m->cap == 0) return NULL;
  for (size_t i = u64map_mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->k[i] == key) {
      void *v = m->v[i];
      m->k[i] = CONCUR_U64_TOMB;
      m->n--;
      return v;
    }
    if (m->k[i] == 0) return NULL;
  }
}

static inline void u64map_free (u64map *m) {
  free(m->k);
  free(m->v);
  memset(m, 0, sizeof *m);
}

/* Iterating: for i < cap, a slot whose key is neither 0 nor the tombstone. */
static inline int u64map_live (const u64map *m, size_t i) {
  return m->k[i] != 0 && m->k[i] != CONCUR_U64_TOMB;
}

#endif
