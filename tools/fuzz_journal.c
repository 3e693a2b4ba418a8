/*
** fuzz_journal.c: libFuzzer target for the crawl journal's replay
** (csrc/core/crawl_journal.c, crawl_frontier.c). The input, after a valid
** header when its first byte is odd (so records get explored), is a journal
** file; opening it must replay what is good and cut what is not, never
** crash or leak; the frontier must then work (push, pop, done, save, a
** compaction) and read back what it wrote.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/crawl_frontier.h"
#include "core/crawl_journal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  FILE *f;
  concur_frontier *fr;
  concur_fentry *out[8];
  size_t n, before;
  char err[256];
  if (path[0] == '\0')
    snprintf(path, sizeof path, "/dev/shm/concur-fuzz-journal-%d", (int)getpid());
  if ((f = fopen(path, "wb")) == NULL) abort();
  if (size && (data[0] & 1)) {
    /* a header, then chunks [type u8][len u8][payload] framed as records
    ** (their checksums right, so replay reads them), then the rest of the
    ** input raw (a torn tail) */
    concur_buf h = CONCUR_BUF_INIT;
    size_t i = 1;
    concur_journal_frame(&h, 'H', "concur-frontier/1", 17, NULL, 0);
    while (i + 2 <= size && i + 2 + data[i + 1] <= size) {
      concur_journal_frame(&h, data[i], data + i + 2, data[i + 1], NULL, 0);
      i += 2 + data[i + 1];
    }
    fwrite(h.data, 1, h.len, f);
    concur_buf_free(&h);
    data += i;
    size -= i;
  }
  fwrite(data, 1, size, f);
  fclose(f);
  fr = concur_frontier_new(path, 512, err, sizeof err);
  if (fr == NULL) {   /* not a journal: refused, and left alone */
    unlink(path);
    return 0;
  }
  concur_frontier_push(fr, "http://a/x", 10, 1, 0);
  concur_frontier_push(fr, "http://b/y", 10, 0, 0);
  concur_frontier_flush(fr);
  n = concur_frontier_pop(fr, 8, NULL, NULL, out);
  for (size_t i = 0; i < n; i++)
    concur_frontier_done(fr, out[i]->url, out[i]->len);
  concur_frontier_save(fr, "counters", 8);
  {
    concur_frontier_stats st;
    concur_frontier_stats_get(fr, &st);
    before = st.seen;
  }
  concur_frontier_close(fr);
  fr = concur_frontier_new(path, 512, err, sizeof err);   /* read back */
  if (fr == NULL) abort();
  {
    concur_frontier_stats st;
    size_t len;
    const char *c = concur_frontier_saved(fr, &len);
    concur_frontier_stats_get(fr, &st);
    if (st.seen != before || st.queued != 0 || c == NULL || len != 8 ||
        memcmp(c, "counters", 8) != 0)
      abort();
  }
  concur_frontier_close(fr);
  unlink(path);
  return 0;
}
