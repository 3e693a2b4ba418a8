/*
** fetch_host.c: the fetch engine's hosts and timers (engine thread only).
**
** A host is one scheme://host:port: its queue of requests waiting for a
** transfer slot, its rate limiter, its Retry-After pause and what its
** robots.txt says. Hosts live in a hash table (chains, grown at load 1) and,
** while they have work, in the runnable ring that dispatch turns through.
** Requests waiting for a retry sit on a binary min-heap ordered by 'due'.
**
** autothrottle (cfg.autothrottle) is a gap between a host's starts, on top
** of its limiter: a 429 or 503 doubles it (at least the host's latency),
** a latency grown past twice its usual value raises it by half (at least
** latency / per_host); only answers to requests started after the last
** such change can change it again, so the answers to the requests of one
** burst count as one signal; every other
** answer shrinks it by 5%, so a host recovers over tens of requests.
** "Usual" is the low-water mark of the smoothed latency, which creeps up
** by 1% of the difference per answer, so a host that stays slow becomes
** the norm. Retry-After still wins: it pauses the host (fetch_transfer.c).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wait.h"
#include "fetch_internal.h"

static size_t hash_str (const char *s) {
  size_t h = 5381;
  while (*s) h = h * 33 + (unsigned char)*s++;
  return h;
}

/* ---- the runnable ring ---------------------------------------------------- */

void concur_fetch_run_add (concur_fetch_engine *e, host *h) {
  if (h->inrun) return;
  h->inrun = 1;
  if (e->run == NULL) {
    h->rnext = h->rprev = h;
    e->run = h;
  }
  else {   /* at the tail of the ring */
    h->rnext = e->run;
    h->rprev = e->run->rprev;
    h->rprev->rnext = h;
    e->run->rprev = h;
  }
}

void concur_fetch_run_remove (concur_fetch_engine *e, host *h) {
  if (!h->inrun) return;
  h->inrun = 0;
  if (h->rnext == h) e->run = NULL;
  else {
    h->rprev->rnext = h->rnext;
    h->rnext->rprev = h->rprev;
    if (e->run == h) e->run = h->rnext;
  }
  h->rnext = h->rprev = NULL;
}

/* ---- hosts ------------------------------------------------------------------ */

host *concur_fetch_host (concur_fetch_engine *e, const char *key) {
  size_t i;
  host *h;
  if (e->nhosts >= e->nbuckets) {   /* grow: keep chains short */
    size_t nb = e->nbuckets ? e->nbuckets * 2 : 64;
    host **b = calloc(nb, sizeof *b);
    if (b == NULL) return NULL;
    for (size_t j = 0; j < e->nbuckets; j++)
      for (host *x = e->buckets[j], *nx; x; x = nx) {
        nx = x->hnext;
        x->hnext = b[hash_str(x->key) % nb];
        b[hash_str(x->key) % nb] = x;
      }
    free(e->buckets);
    e->buckets = b;
    e->nbuckets = nb;
  }
  i = hash_str(key) % e->nbuckets;
  for (h = e->buckets[i]; h; h = h->hnext)
    if (strcmp(h->key, key) == 0) return h;
  h = calloc(1, sizeof *h);
  if (h == NULL || (h->key = concur_fetch_strdup(key)) == NULL) {
    free(h);
    return NULL;
  }
  if (e->cfg.rate > 0) {
    concur_ratelimit_init(&h->rl, e->cfg.rate, e->cfg.per, e->cfg.burst, 0);
    h->hasrl = 1;
  }
  h->hnext = e->buckets[i];
  e->buckets[i] = h;
  e->nhosts++;
  return h;
}

/* Frees a host whose queues are empty (the engine is closing). */
void concur_fetch_hostfree (host *h) {
  if (h->robots_req) concur_fetch_reqfree(h->robots_req);
  if (h->hasrl) concur_ratelimit_destroy(&h->rl);
  concur_fetch_robots_free(h->robots);
  free(h->robots_why);
  free(h->key);
  free(h);
}

void concur_fetch_q_push (host *h, req *r, int front) {
  r->prev = NULL;
  r->next = NULL;
  if (h->qhead == NULL) h->qhead = h->qtail = r;
  else if (front) {
    r->next = h->qhead;
    h->qhead = r;
  }
  else {
    h->qtail->next = r;
    h->qtail = r;
  }
}

req *concur_fetch_q_pop (host *h) {
  req *r = h->qhead;
  if (r) {
    h->qhead = r->next;
    if (h->qhead == NULL) h->qtail = NULL;
    r->next = NULL;
  }
  return r;
}

int concur_fetch_has_work (const host *h) {
  return h->qhead != NULL || h->armed != NULL || h->robots_req != NULL;
}

/*
** What robots.txt says for h, until 'until': the rules rb (NULL: allow
** all), or, when 'why' is given, that everything is disallowed for that
** reason (rb is then NULL). A Crawl-delay lowers the host's rate, never
** raises it. The host runs again: its queue was waiting.
*/
void concur_fetch_robots_set (concur_fetch_engine *e, host *h,
                              concur_robots *rb, const char *why,
                              double until) {
  double d = concur_fetch_robots_delay(rb);
  concur_fetch_robots_free(h->robots);
  free(h->robots_why);
  h->robots = rb;
  h->robots_why = why ? concur_fetch_strdup(why) : NULL;
  if (why && h->robots_why == NULL)   /* no memory for the reason */
    h->robots_why = concur_fetch_strdup("unreachable");
  h->robots_state = ROBOTS_KNOWN;
  h->robots_until = until;
  h->rwait = 0;
  if (d > 0) {
    if (!h->hasrl) {
      concur_ratelimit_init(&h->rl, 1, d, 1, 0);
      h->hasrl = 1;
    }
    else if (h->rl.interval < d)   /* only ever slower */
      concur_ratelimit_setrate(&h->rl, 1, d);
  }
  concur_fetch_run_add(e, h);
}

/* ---- autothrottle ---------------------------------------------------------- */

#define AT_MINGAP 0.05     /* seconds: the first gap a 429/503 imposes */
#define AT_MAXGAP 60.0     /* seconds: the largest gap */
#define AT_NOISE 0.02      /* seconds: latency changes below this are noise */
#define AT_RECOVER 0.95    /* the gap's factor per good answer */

/* Widens h's gap to 'gap' unless the request answered started before the
** last widening (the answers of one burst are one signal). */
static void at_slow (concur_fetch_engine *e, host *h, double gap,
                     double launched) {
  if (launched < h->at_cut) return;
  h->at_cut = concur_now();
  h->at_gap = fmin(gap, AT_MAXGAP);
  count(e, throttled, 1);
}

void concur_fetch_throttle_note (concur_fetch_engine *e, host *h, long status,
                                 double latency, double launched) {
  if (!e->cfg.autothrottle) return;
  if (!(latency >= 0)) latency = 0;
  if (h->at_lat == 0 && h->at_base == 0) h->at_lat = h->at_base = latency;
  else h->at_lat = 0.7 * h->at_lat + 0.3 * latency;
  if (h->at_lat < h->at_base) h->at_base = h->at_lat;
  else h->at_base += (h->at_lat - h->at_base) * 0.01;
  if (status == 429 || status == 503)
    at_slow(e, h, fmax(2 * h->at_gap, fmax(h->at_lat, AT_MINGAP)), launched);
  else if (h->at_lat > 2 * h->at_base && h->at_lat - h->at_base > AT_NOISE)
    at_slow(e, h, fmax(1.5 * h->at_gap,
                       h->at_lat / (double)e->cfg.per_host), launched);
  else if (h->at_gap > 0 && (h->at_gap *= AT_RECOVER) < AT_MINGAP / 10)
    h->at_gap = 0;
}

double concur_fetch_throttle_slot (host *h, double slot) {
  if (h->at_gap > 0 && slot < h->at_last + h->at_gap)
    slot = h->at_last + h->at_gap;
  h->at_last = slot;
  return slot;
}

/* ---- timers: a binary min-heap on 'due' ------------------------------------ */

int concur_fetch_heap_push (concur_fetch_engine *e, req *r) {
  size_t i;
  if (e->nheap == e->heapcap) {
    size_t ncap = e->heapcap ? e->heapcap * 2 : 16;
    req **nh = realloc(e->heap, ncap * sizeof *nh);
    if (nh == NULL) return -1;
    e->heap = nh;
    e->heapcap = ncap;
  }
  i = e->nheap++;
  while (i > 0 && e->heap[(i - 1) / 2]->due > r->due) {
    e->heap[i] = e->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  e->heap[i] = r;
  return 0;
}

/* Moves x down from slot i to its place. */
static void sift_down (concur_fetch_engine *e, size_t i, req *x) {
  size_t n = e->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && e->heap[c + 1]->due < e->heap[c]->due) c++;
    if (e->heap[c]->due >= x->due) break;
    e->heap[i] = e->heap[c];
    i = c;
  }
  e->heap[i] = x;
}

req *concur_fetch_heap_pop (concur_fetch_engine *e) {
  req *top = e->heap[0], *last = e->heap[--e->nheap];
  if (e->nheap) sift_down(e, 0, last);
  return top;
}

void concur_fetch_heap_fix (concur_fetch_engine *e) {
  for (size_t i = e->nheap / 2; i-- > 0; )   /* bottom up */
    sift_down(e, i, e->heap[i]);
}
