/*
** map_core.c: the shared map's core (csrc/core/map.c) exercised alone, in
** plain C with no Lua: set, get, versions and set_if, add, incr, deletes,
** growth, snapshots, clear, and two threads adding to one counter. Built
** and run by spec/33-map_spec.lua; prints "map core: ok" and exits 0, or
** names the first check that failed and exits 1.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "arena.h"
#include "map.h"

#define CHECK(c) do { if (!(c)) { \
  fprintf(stderr, "map core: failed at line %d: %s\n", __LINE__, #c); \
  exit(1); } } while (0)

static void strkey (concur_mkey *k, const char *s) {
  concur_mkey_init(k, CONCUR_MKEY_STR, s, strlen(s));
}

static void intkey (concur_mkey *k, int64_t *room, int64_t i) {
  *room = i;
  concur_mkey_init(k, CONCUR_MKEY_INT, (const char *)room, 8);
}

/* A value: the codec's bytes of a string. */
static void strval (concur_buf *b, const char *s) {
  memset(b, 0, sizeof *b);
  CHECK(concur_wire_str(b, s, strlen(s)) == 0);
}

/* Whether k's value is the string s. */
static int has_str (concur_map *m, const concur_mkey *k, const char *s) {
  concur_mval v;
  concur_buf want;
  uint64_t version;
  int same;
  memset(&v.buf, 0, sizeof v.buf);
  if (concur_map_get(m, k, &v, &version) != CONCUR_MAP_OK) return 0;
  strval(&want, s);
  if (v.n == SIZE_MAX)
    same = v.buf.len == want.len && memcmp(v.buf.data, want.data, want.len) == 0;
  else
    same = v.n == want.len && memcmp(v.small, want.data, want.len) == 0;
  concur_buf_free(&v.buf);
  concur_buf_free(&want);
  return same;
}

static concur_map *shared_map;

static void *adder (void *arg) {
  concur_mkey k;
  concur_num one = { 1, { 1 } }, out;
  (void)arg;
  strkey(&k, "counter");
  for (int i = 0; i < 100000; i++)
    CHECK(concur_map_incr(shared_map, &k, one, &out) == CONCUR_MAP_OK);
  return NULL;
}

int main (void) {
  concur_shoff off;
  concur_map *m;
  concur_mkey k, k2;
  concur_buf b;
  concur_num x, d = { 1, { 5 } };
  uint64_t v1, v2;
  int64_t room;
  concur_mitem *items;
  size_t n;
  char big[1000];
  pthread_t t[2];

  CHECK(concur_shm_init() == 0);
  m = concur_shm_alloc(sizeof *m, &off);
  CHECK(m != NULL);
  CHECK(concur_map_init(m) == 0);

  /* set, get, replace by a larger value, delete */
  strkey(&k, "a");
  strval(&b, "one");
  CHECK(concur_map_set(m, &k, &b, CONCUR_MAP_SET, 0, &v1) == CONCUR_MAP_OK);
  concur_buf_free(&b);
  CHECK(has_str(m, &k, "one"));
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  strval(&b, big);
  CHECK(concur_map_set(m, &k, &b, CONCUR_MAP_SET, 0, &v2) == CONCUR_MAP_OK);
  concur_buf_free(&b);
  CHECK(v2 > v1);
  CHECK(has_str(m, &k, big));
  CHECK(concur_map_len(m) == 1);

  /* set_if: only at the version read */
  strval(&b, "stale");
  CHECK(concur_map_set(m, &k, &b, CONCUR_MAP_SETIF, v1, NULL) == CONCUR_MAP_CHANGED);
  concur_buf_free(&b);
  strval(&b, "fresh");
  CHECK(concur_map_set(m, &k, &b, CONCUR_MAP_SETIF, v2, NULL) == CONCUR_MAP_OK);
  concur_buf_free(&b);
  CHECK(has_str(m, &k, "fresh"));

  /* add: only when absent */
  strval(&b, "other");
  CHECK(concur_map_set(m, &k, &b, CONCUR_MAP_ADD, 0, NULL) == CONCUR_MAP_PRESENT);
  concur_buf_free(&b);
  CHECK(concur_map_set(m, &k, NULL, CONCUR_MAP_SET, 0, NULL) == CONCUR_MAP_OK);
  CHECK(concur_map_set(m, &k, NULL, CONCUR_MAP_SET, 0, NULL) == CONCUR_MAP_ABSENT);
  CHECK(!concur_map_has(m, &k));
  CHECK(concur_map_len(m) == 0);

  /* incr: from 0, and refused on a string */
  strkey(&k2, "n");
  CHECK(concur_map_incr(m, &k2, d, &x) == CONCUR_MAP_OK && x.isint && x.u.i == 5);
  CHECK(concur_map_incr(m, &k2, d, &x) == CONCUR_MAP_OK && x.u.i == 10);
  strval(&b, "text");
  CHECK(concur_map_set(m, &k, &b, CONCUR_MAP_SET, 0, NULL) == CONCUR_MAP_OK);
  concur_buf_free(&b);
  CHECK(concur_map_incr(m, &k, d, &x) == CONCUR_MAP_NOTNUM);
  CHECK(has_str(m, &k, "text"));

  /* many keys: growth, deletes, a snapshot, clear */
  for (int64_t i = 0; i < 10000; i++) {
    concur_mkey ik;
    intkey(&ik, &room, i);
    strval(&b, "v");
    CHECK(concur_map_set(m, &ik, &b, CONCUR_MAP_SET, 0, NULL) == CONCUR_MAP_OK);
    concur_buf_free(&b);
  }
  for (int64_t i = 0; i < 10000; i += 2) {
    concur_mkey ik;
    intkey(&ik, &room, i);
    CHECK(concur_map_set(m, &ik, NULL, CONCUR_MAP_SET, 0, NULL) == CONCUR_MAP_OK);
  }
  CHECK(concur_map_len(m) == 5000 + 2);
  for (int64_t i = 0; i < 10000; i++) {
    concur_mkey ik;
    intkey(&ik, &room, i);
    CHECK(concur_map_has(m, &ik) == (i % 2 == 1));
  }
  CHECK(concur_map_snapshot(m, 1, &items, &n) == CONCUR_MAP_OK);
  CHECK(n == 5002);
  concur_map_freeitems(items, n);
  concur_map_clear(m);
  CHECK(concur_map_len(m) == 0);

  /* two threads, one counter: no add lost */
  shared_map = m;
  for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, adder, NULL) == 0);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  strkey(&k, "counter");
  CHECK(concur_map_incr(m, &k, (concur_num){ 1, { 0 } }, &x) == CONCUR_MAP_OK);
  CHECK(x.u.i == 200000);

  concur_map_destroy(m);
  concur_shm_free(off);
  CHECK(concur_shm_used() == 0);
  printf("map core: ok\n");
  return 0;
}
