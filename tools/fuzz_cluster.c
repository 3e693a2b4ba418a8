/*
** fuzz_cluster.c: libFuzzer target for the cluster's frames
** (core/clusterframe.c). The first byte picks what the rest is:
**   even: a frame as read from Redis: it must fail to verify (it was not
**         signed with the key), and so nothing in it is read;
**   odd:  a payload, signed here as a key holder would: it must open again,
**         unchanged but for its bytecode hashes, and the re-keying walk must
**         accept or refuse it without crashing, hanging or leaking.
** Decoding a verified payload is the codec's, fuzzed by fuzz_decode.c.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/clusterframe.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static concur_mac *key;

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  static const char ctx[] = "concur:{q}:tasks";
  concur_cframe f, g;
  if (key == NULL) key = concur_mac_new("fuzzing-key-of-32-bytes-........", 32);
  if (size == 0) return 0;
  if ((data[0] & 1) == 0) {
    if (concur_cframe_open(key, ctx, sizeof ctx - 1, (const char *)data + 1,
                           size - 1, &f) == 0)
      abort();   /* a forgery verified */
    return 0;
  }
  {
    concur_buf out = CONCUR_BUF_INIT;
    char *copy;
    memset(&f, 0, sizeof f);
    f.type = 'T';
    f.id = size;
    f.num = 1.5;
    f.name = "client";
    f.namelen = 6;
    f.payload = (const char *)data + 1;
    f.len = size - 1;
    if (concur_cframe_seal(key, ctx, sizeof ctx - 1, &f, &out) != 0) abort();
    if (concur_cframe_open(key, ctx, sizeof ctx - 1, out.data, out.len, &g) != 0 ||
        g.len != f.len || g.id != f.id || memcmp(g.payload, f.payload, f.len) != 0)
      abort();
    copy = malloc(g.len ? g.len : 1);
    memcpy(copy, g.payload, g.len);
    concur_cframe_rehash(copy, g.len);
    free(copy);
    out.data[out.len / 2] ^= 1;    /* one bit changed: refused */
    if (concur_cframe_open(key, ctx, sizeof ctx - 1, out.data, out.len, &g) == 0)
      abort();
    concur_buf_free(&out);
  }
  return 0;
}
