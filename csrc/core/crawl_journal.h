/*
** crawl_journal.h: the crawl frontier's journal, no Lua: an append-only
** file of records, each with a checksum, replayed when it is opened.
**
** A record is: length (u32, of what follows the checksum), checksum (u32:
** SipHash-2-4 under a fixed key of the type and payload, low half), type
** (one byte), payload. The first record of a file is a header (type 'H',
** "concur-frontier/1"). Replay stops at the first record that is cut short
** or whose checksum fails (a write torn by a crash) and the file is cut
** there, so what follows is appended to good records only. A journal is
** compacted by writing its live records to a new file, syncing it, and
** renaming it over the old one: a crash leaves one or the other, whole.
*/
#ifndef CONCUR_CORE_CRAWL_JOURNAL_H
#define CONCUR_CORE_CRAWL_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include "wire.h"

#define CONCUR_JOURNAL_MAXREC (16u << 20)   /* a longer record is torn */

typedef struct concur_journal {
  int fd;              /* -1: no file (a frontier in memory only) */
  char *path;
  uint64_t size;       /* bytes of good records in the file */
} concur_journal;

/* Called for each good record in order; non-zero stops the replay with
** that result (out of memory). */
typedef int (*concur_journal_fn) (void *ud, int type, const unsigned char *p,
                                  size_t n);

/* Opens (or makes) the journal at path and replays it. Returns 0, or -1
** with a message in err (the file cannot be opened or read, or is not a
** journal), or what fn returned. */
int concur_journal_open (concur_journal *j, const char *path,
                         concur_journal_fn fn, void *ud, char *err,
                         size_t errlen);

/* Appends one record of type t to b (framing it; not written yet). */
int concur_journal_frame (concur_buf *b, int t, const void *p1, size_t n1,
                          const void *p2, size_t n2);

/* Writes b's bytes (whole records) at the end of the file, in one write
** unless the kernel takes less; 0 or -1 (errno kept). b is emptied. */
int concur_journal_append (concur_journal *j, concur_buf *b);

/* Replaces the file by b's records (a header is put first): a new file,
** synced, renamed over the old one. 0 or -1. */
int concur_journal_rewrite (concur_journal *j, concur_buf *b);

/* Syncs and closes. */
void concur_journal_close (concur_journal *j);

#endif
