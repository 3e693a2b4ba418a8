/*
** crawl_frontier.h: fetch.Crawler's local frontier, no Lua: what is left to
** fetch, per host and breadth-first, what was ever seen (crawl_seen.h), and,
** when it has a path, a journal of both (crawl_journal.h) that a crawl
** stopped, interrupted or killed resumes from.
**
** An entry is a canonical URL (fetch_url.h's form) with its depth (links
** from the start pages) and hops (redirects that led to it). push adds an
** entry whose URL was never seen; pop takes entries in turn from each host
** not busy, the least deep first; done says a popped entry is finished. The
** journal records each push ('Q', depth, hops, URL) and each done ('D',
** fingerprint); replay queues again every 'Q' without its 'D', so an entry
** in flight when the process died is fetched again, and none is lost. The
** crawler's counters travel in 'C' records. A journal that outgrows
** 'compact_at' and twice what it holds alive is rewritten: the seen-set
** ('S' records of fingerprints), the entries queued or in flight, the last
** counters.
*/
#ifndef CONCUR_CORE_CRAWL_FRONTIER_H
#define CONCUR_CORE_CRAWL_FRONTIER_H

#include <stddef.h>
#include <stdint.h>

typedef struct concur_frontier concur_frontier;

typedef struct concur_fentry {
  struct concur_fentry *next, *prev;
  uint64_t fp;
  uint32_t depth, hops;
  size_t len, hostlen;      /* the URL's, and its host key's ("scheme://host") */
  char url[];
} concur_fentry;

typedef struct concur_frontier_stats {
  size_t queued, inflight, seen, seen_bytes;
  uint64_t journal_bytes;
} concur_frontier_stats;

/* A frontier; with a path, journaled there (replayed first). NULL with a
** message in err when the journal cannot be used. */
concur_frontier *concur_frontier_new (const char *path, uint64_t compact_at,
                                       char *err, size_t errlen);
/* Adds an entry unless its URL was seen: 1 added, 0 seen, -1 no memory.
** The journal record is written by concur_frontier_flush. */
int concur_frontier_push (concur_frontier *f, const char *url, size_t len,
                          uint32_t depth, uint32_t hops);
int concur_frontier_seen (concur_frontier *f, const char *url, size_t len);
/* Has the URL whose fingerprint (concur_seen_fingerprint) is fp been seen? */
int concur_frontier_seen_fp (concur_frontier *f, uint64_t fp);
/* Takes up to max entries, one host at a time, at most room(ud, key,
** keylen) from each host (room NULL: no limit); they stay the frontier's
** (in flight) until done. Returns how many were put in out. */
size_t concur_frontier_pop (concur_frontier *f, size_t max,
                            long (*room) (void *ud, const char *key,
                                          size_t keylen),
                            void *ud, concur_fentry **out);
/* An entry (popped, or never popped) is finished: its 'D' is journaled. */
int concur_frontier_done (concur_frontier *f, const char *url, size_t len);
/* The crawler's counters (opaque bytes): kept and journaled. */
int concur_frontier_save (concur_frontier *f, const void *p, size_t n);
/* What was last saved (borrowed), or NULL. */
const char *concur_frontier_saved (concur_frontier *f, size_t *n);
/* Writes what push buffered; compacts when the journal is due. 0 or -1. */
int concur_frontier_flush (concur_frontier *f);
void concur_frontier_stats_get (concur_frontier *f,
                                concur_frontier_stats *st);
/* Flushes, syncs and frees. */
void concur_frontier_close (concur_frontier *f);

#endif
