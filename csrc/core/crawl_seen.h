/*
** crawl_seen.h: the crawler's seen-set, no Lua: the 64-bit fingerprints
** of canonical URLs in an open-addressing table (linear probing), kept
** between 57% and 85% full: 9.4 to 14.1 bytes per URL (10 million URLs in
** under 141 MB). A fingerprint is SipHash-2-4 under a fixed key, the same
** in every run and on every machine (a journal or a shared frontier can
** hold them); two URLs share one with probability n^2 / 2^65 (about 3 in a
** million for 10 million URLs), in which case the second is taken as seen.
*/
#ifndef CONCUR_CORE_CRAWL_SEEN_H
#define CONCUR_CORE_CRAWL_SEEN_H

#include <stddef.h>
#include <stdint.h>

typedef struct concur_seen {
  uint64_t *slots;      /* 0: empty */
  size_t cap, count;
} concur_seen;

/* The fingerprint of n bytes (never 0). */
uint64_t concur_seen_fingerprint (const void *p, size_t n);

void concur_seen_init (concur_seen *s);
void concur_seen_free (concur_seen *s);
/* Adds fp: 1 when it was new, 0 when it was there, -1 out of memory. */
int concur_seen_add (concur_seen *s, uint64_t fp);
int concur_seen_has (const concur_seen *s, uint64_t fp);
/* Bytes the table takes. */
size_t concur_seen_bytes (const concur_seen *s);

#endif
