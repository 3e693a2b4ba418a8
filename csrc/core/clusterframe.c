/*
** clusterframe.c: signing, verifying and re-keying cluster frames (see
** clusterframe.h for the layout and the rules).
**
** The MAC is OpenSSL's HMAC (EVP_MAC "HMAC" with SHA-256): the key is set
** once in a template context, and each frame is tagged in a copy of it, so
** one concur_mac serves any number of threads.
*/
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include "clusterframe.h"

#define VERSION 1

struct concur_mac {
  EVP_MAC_CTX *tmpl;    /* initialised with the key; only copied */
};

concur_mac *concur_mac_new (const void *key, size_t len) {
  concur_mac *m = calloc(1, sizeof *m);
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  OSSL_PARAM params[2];
  if (m == NULL || mac == NULL) goto fail;
  m->tmpl = EVP_MAC_CTX_new(mac);
  if (m->tmpl == NULL) goto fail;
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  if (!EVP_MAC_init(m->tmpl, key, len, params)) goto fail;
  EVP_MAC_free(mac);
  return m;
fail:
  EVP_MAC_free(mac);
  concur_mac_free(m);
  return NULL;
}

void concur_mac_free (concur_mac *m) {
  if (m == NULL) return;
  EVP_MAC_CTX_free(m->tmpl);
  free(m);
}

/* The tag of ctx (with its length first) and then data. */
static int tag (const concur_mac *m, const char *ctx, size_t ctxlen,
                const void *data, size_t len, unsigned char out[CONCUR_CFRAME_TAG]) {
  unsigned char clen[4] = { (unsigned char)ctxlen, (unsigned char)(ctxlen >> 8),
                            (unsigned char)(ctxlen >> 16), (unsigned char)(ctxlen >> 24) };
  size_t outl = 0;
  EVP_MAC_CTX *c = EVP_MAC_CTX_dup(m->tmpl);
  int ok = c && EVP_MAC_update(c, clen, sizeof clen) &&
           EVP_MAC_update(c, (const unsigned char *)ctx, ctxlen) &&
           EVP_MAC_update(c, data, len) &&
           EVP_MAC_final(c, out, &outl, CONCUR_CFRAME_TAG) && outl == CONCUR_CFRAME_TAG;
  EVP_MAC_CTX_free(c);
  return ok ? 0 : -1;
}

static void put64 (unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64 (const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

int concur_cframe_seal (const concur_mac *m, const char *ctx, size_t ctxlen,
                        const concur_cframe *f, concur_buf *out) {
  unsigned char head[CONCUR_CFRAME_HEAD + 1], t[CONCUR_CFRAME_TAG];
  uint64_t num;
  size_t start = out->len;
  if (f->namelen > 255) return -1;
  head[0] = 'c';
  head[1] = 'f';
  head[2] = VERSION;
  head[3] = (unsigned char)f->type;
  put64(head + 4, f->id);
  memcpy(&num, &f->num, 8);
  put64(head + 12, num);
  head[20] = 0;   /* reserved */
  head[21] = (unsigned char)f->namelen;
  if (concur_buf_reserve(out, sizeof head + f->namelen + f->len + sizeof t) ||
      concur_buf_write(out, head, sizeof head) ||
      concur_buf_write(out, f->name, f->namelen) ||
      concur_buf_write(out, f->payload, f->len) ||
      tag(m, ctx, ctxlen, out->data + start, out->len - start, t) ||
      concur_buf_write(out, t, sizeof t)) {
    out->len = start;
    return -1;
  }
  return 0;
}

int concur_cframe_open (const concur_mac *m, const char *ctx, size_t ctxlen,
                        const char *data, size_t len, concur_cframe *f) {
  const unsigned char *p = (const unsigned char *)data;
  unsigned char t[CONCUR_CFRAME_TAG];
  uint64_t num;
  size_t body;
  if (len < CONCUR_CFRAME_HEAD + 1 + CONCUR_CFRAME_TAG) return -1;
  body = len - CONCUR_CFRAME_TAG;
  /* NOTE: the tag first, and nothing read before it verifies */
  if (tag(m, ctx, ctxlen, data, body, t) != 0 ||
      CRYPTO_memcmp(t, p + body, CONCUR_CFRAME_TAG) != 0)
    return -1;
  if (p[0] != 'c' || p[1] != 'f' || p[2] != VERSION) return -1;
  f->type = p[3];
  f->id = get64(p + 4);
  num = get64(p + 12);
  memcpy(&f->num, &num, 8);
  f->namelen = p[21];
  if (CONCUR_CFRAME_HEAD + 1 + f->namelen > body) return -1;
  f->name = data + CONCUR_CFRAME_HEAD + 1;
  f->payload = f->name + f->namelen;
  f->len = body - CONCUR_CFRAME_HEAD - 1 - f->namelen;
  return 0;
}

/* ---- re-keying bytecode hashes ---------------------------------------------------
** A walk over the codec's format (core/wire.h) as the decoder of codec.c
** reads it, with the same bounds; it rewrites each 'F' value's hash.
*/

typedef struct walker {
  concur_rd r;
  char *base;
  int depth;
} walker;

static int walk_value (walker *w);

static int byte (walker *w, int *c) {
  if (w->r.p >= w->r.end) return -1;
  *c = *w->r.p++;
  return 0;
}

static int skip (walker *w, size_t n) {
  const void *p;
  return concur_rd_bytes(&w->r, &p, n);
}

static int varint (walker *w, uint64_t *v) {
  return concur_rd_varint(&w->r, v);
}

static int remaining (walker *w) {
  return w->r.p < w->r.end;
}

/* A string value ('s', length, bytes): module and field names. */
static int walk_name (walker *w) {
  int c;
  uint64_t n;
  if (byte(w, &c) || c != 's' || varint(w, &n)) return -1;
  if (n > (uint64_t)(w->r.end - w->r.p)) return -1;
  return skip(w, (size_t)n);
}

/* Tables and functions nest as deep as the decoder lets them. */
static int enter (walker *w) {
  if (w->depth >= CONCUR_MAX_DEPTH) return -1;
  w->depth++;
  return 0;
}

static int walk_table (walker *w) {
  uint64_t narr;
  if (enter(w) || varint(w, &narr) || narr > (uint64_t)(w->r.end - w->r.p))
    return -1;
  for (uint64_t i = 0; i < narr; i++)
    if (walk_value(w)) return -1;
  for (;;) {
    if (!remaining(w)) return -1;
    if (*w->r.p == 'e') {
      w->r.p++;
      w->depth--;
      return 0;
    }
    if (walk_value(w) || walk_value(w)) return -1;
  }
}

static int walk_function (walker *w) {
  char *hashat = w->base + (w->r.p - (const unsigned char *)w->base);
  const void *code;
  uint64_t len, nups, hash;
  if (enter(w) || skip(w, 8) || varint(w, &len) || len > (uint64_t)(w->r.end - w->r.p) ||
      concur_rd_bytes(&w->r, &code, (size_t)len) || varint(w, &nups) || nups > 255)
    return -1;
  hash = concur_hash(code, (size_t)len);
  memcpy(hashat, &hash, 8);
  for (uint64_t i = 0; i < nups; i++) {
    int c;
    uint64_t a, b;
    if (byte(w, &c)) return -1;
    if (c == 'E') continue;
    if (c == 'j') {
      if (varint(w, &a) || varint(w, &b)) return -1;
      continue;
    }
    w->r.p--;
    if (walk_value(w)) return -1;
  }
  w->depth--;
  return 0;
}

static int walk_value (walker *w) {
  int c, rc = 0;
  uint64_t n;
  if (byte(w, &c)) return -1;
  switch (c) {
    case 'n': case 'f': case 't': break;
    case 'i': case 'd': rc = skip(w, 8); break;
    case 's':
      rc = varint(w, &n) || n > (uint64_t)(w->r.end - w->r.p) || skip(w, (size_t)n);
      break;
    case 'T': rc = walk_table(w); break;
    case 'H':
      rc = varint(w, &n) || byte(w, &c) || c != 'T' || walk_table(w);
      break;
    case 'r': case 'o': rc = varint(w, &n); break;
    case 'F': rc = walk_function(w); break;
    case 'C': rc = walk_name(w) || walk_name(w); break;
    case 'M': rc = walk_name(w); break;
    case 'N':
      rc = walk_name(w) || !remaining(w) || (*w->r.p != 'T' && *w->r.p != 'H') ||
           walk_value(w);
      break;
    case 'v':
      rc = byte(w, &c) || varint(w, &n) || n > (uint64_t)(w->r.end - w->r.p) ||
           skip(w, (size_t)n);
      break;
    default: rc = -1;
  }
  return rc ? -1 : 0;
}

int concur_cframe_rehash (char *p, size_t len) {
  walker w;
  w.r.p = (const unsigned char *)p;
  w.r.end = w.r.p + len;
  w.base = p;
  w.depth = 0;
  while (remaining(&w))
    if (walk_value(&w)) return -1;
  return 0;
}
