/*
** wire.c: the growable buffer, the Lua-free writers and readers of concur's
** value format (see wire.h), and the keyed hash that guards bytecode.
*/
#include <stdlib.h>
#include <string.h>
#include "wire.h"

int concur_buf_reserve (concur_buf *b, size_t extra) {
  if (extra > CONCUR_MAX_ENCODED - b->len) return -1;
  if (b->len + extra > b->cap) {
    size_t ncap = b->cap ? b->cap * 2 : 64;
    while (ncap < b->len + extra) ncap *= 2;
    char *nd = realloc(b->data, ncap);
    if (nd == NULL) return -1;
    b->data = nd;
    b->cap = ncap;
  }
  return 0;
}

int concur_buf_write (concur_buf *b, const void *p, size_t n) {
  if (concur_buf_reserve(b, n)) return -1;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int concur_buf_addobj (concur_buf *b, concur_obj *o) {
  if (b->nobjs == b->objcap) {
    size_t ncap = b->objcap ? b->objcap * 2 : 4;
    concur_obj **no = realloc(b->objs, ncap * sizeof *no);
    if (no == NULL) return -1;
    b->objs = no;
    b->objcap = ncap;
  }
  b->objs[b->nobjs++] = concur_obj_ref(o);
  return 0;
}

void concur_buf_free (concur_buf *b) {
  for (size_t i = 0; i < b->nobjs; i++) concur_obj_unref(b->objs[i]);
  free(b->objs);
  free(b->data);
  memset(b, 0, sizeof *b);
}

void concur_buf_move (concur_buf *dst, concur_buf *src) {
  *dst = *src;
  memset(src, 0, sizeof *src);
}

/* ---- writers -------------------------------------------------------------- */

static int put1 (concur_buf *b, char c) {
  if (b->len < b->cap) { b->data[b->len++] = c; return 0; }
  return concur_buf_write(b, &c, 1);
}

int concur_wire_varint (concur_buf *b, uint64_t v) {
  unsigned char tmp[10];
  size_t n = 0;
  do {
    unsigned char c = v & 0x7f;
    v >>= 7;
    tmp[n++] = c | (v ? 0x80 : 0);
  } while (v);
  return concur_buf_write(b, tmp, n);
}

int concur_wire_nil (concur_buf *b) { return put1(b, 'n'); }
int concur_wire_bool (concur_buf *b, int v) { return put1(b, v ? 't' : 'f'); }
int concur_wire_end (concur_buf *b) { return put1(b, 'e'); }

int concur_wire_int (concur_buf *b, int64_t v) {
  char tmp[9];
  tmp[0] = 'i';
  memcpy(tmp + 1, &v, 8);
  return concur_buf_write(b, tmp, 9);
}

int concur_wire_num (concur_buf *b, double v) {
  char tmp[9];
  tmp[0] = 'd';
  memcpy(tmp + 1, &v, 8);
  return concur_buf_write(b, tmp, 9);
}

int concur_wire_str (concur_buf *b, const char *s, size_t len) {
  if (put1(b, 's') || concur_wire_varint(b, len)) return -1;
  return concur_buf_write(b, s, len);
}

int concur_wire_cstr (concur_buf *b, const char *s) {
  return concur_wire_str(b, s, strlen(s));
}

int concur_wire_table (concur_buf *b, size_t narr) {
  if (put1(b, 'T')) return -1;
  return concur_wire_varint(b, narr);
}

int concur_wire_hint (concur_buf *b, size_t nhash) {
  if (put1(b, 'H')) return -1;
  return concur_wire_varint(b, nhash);
}

int concur_wire_named (concur_buf *b, const char *name) {
  if (put1(b, 'N')) return -1;
  return concur_wire_cstr(b, name);
}

int concur_wire_strbegin (concur_buf *b) {
  static const char room[CONCUR_WIRE_LENPAD] = {0};
  if (put1(b, 's')) return -1;
  return concur_buf_write(b, room, sizeof room);
}

void concur_wire_strend (concur_buf *b, size_t start) {
  uint64_t v = b->len - start;
  char *p = b->data + start - CONCUR_WIRE_LENPAD;
  for (int i = 0; i < CONCUR_WIRE_LENPAD - 1; i++)
    p[i] = (char)(((v >> (7 * i)) & 0x7f) | 0x80);
  p[CONCUR_WIRE_LENPAD - 1] = (char)((v >> (7 * (CONCUR_WIRE_LENPAD - 1))) & 0x7f);
}

void concur_wire_error (concur_buf *b, const char *kind, const char *msg) {
  concur_buf_free(b);
  if (concur_wire_table(b, 0) || concur_wire_cstr(b, "kind") ||
      concur_wire_cstr(b, kind) || concur_wire_cstr(b, "message") ||
      concur_wire_cstr(b, msg) || concur_wire_end(b))
    concur_buf_free(b);
}

/* ---- readers -------------------------------------------------------------- */

int concur_rd_varint (concur_rd *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return -1;
    unsigned char c = *r->p++;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) { *v = x; return 0; }
  }
  return -1;  /* more than 10 bytes: malformed */
}

int concur_rd_bytes (concur_rd *r, const void **p, size_t n) {
  if ((size_t)(r->end - r->p) < n) return -1;
  *p = r->p;
  r->p += n;
  return 0;
}

/* ---- keyed hash ------------------------------------------------------------
** SipHash-2-4. The key is random per process tree (set once by concur.c before
** any thread runs, and handed to child processes), so only bytes written by
** concur carry a bytecode hash that verifies: Lua's undump is not safe on
** arbitrary bytes, and this keeps the decoder safe on them.
*/
static uint64_t k0 = 0x736f6d6570736575ULL, k1 = 0x646f72616e646f6dULL;

void concur_hash_setkey (const unsigned char key[16]) {
  memcpy(&k0, key, 8);
  memcpy(&k1, key + 8, 8);
}

void concur_hash_getkey (unsigned char key[16]) {
  memcpy(key, &k0, 8);
  memcpy(key + 8, &k1, 8);
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND \
  do { v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
       v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
       v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
       v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); } while (0)

uint64_t concur_hash (const void *data, size_t n) {
  return concur_siphash(k0, k1, data, n);
}

uint64_t concur_siphash (uint64_t key0, uint64_t key1, const void *data,
                         size_t n) {
  const unsigned char *p = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ key0, v1 = 0x646f72616e646f6dULL ^ key1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ key0, v3 = 0x7465646279746573ULL ^ key1;
  uint64_t m, last = (uint64_t)n << 56;
  size_t i, full = n & ~(size_t)7;
  for (i = 0; i < full; i += 8) {
    memcpy(&m, p + i, 8);
    v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
  }
  for (size_t j = 0; i + j < n; j++) last |= (uint64_t)p[i + j] << (8 * j);
  v3 ^= last; SIPROUND; SIPROUND; v0 ^= last;
  v2 ^= 0xff;
  SIPROUND; SIPROUND; SIPROUND; SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}
