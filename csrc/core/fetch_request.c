/*
** fetch_request.c: requests of the fetch engine before and after their
** transfers: URLs and headers checked and copied on the submitting thread,
** handed to the engine's inbox (one at a time or as a batch), and, once
** done, their futures completed with an encoded Response or error object.
**
** Locks: prepare() takes none; enqueue() takes e->mu for a few pointer
** moves and the wake-up. The completion functions run on the engine thread
** without e->mu (they take each future's own mutex through future.c).
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "wait.h"
#include "fetch_internal.h"

/* ---- small helpers ------------------------------------------------------- */

char *concur_fetch_strdup (const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

int concur_fetch_sbadd (strbuf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t ncap = b->cap ? b->cap : 256;
    char *np;
    while (ncap < b->len + n + 1) ncap *= 2;
    np = realloc(b->p, ncap);
    if (np == NULL) return -1;
    b->p = np;
    b->cap = ncap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

void concur_fetch_sbfree (strbuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

void concur_fetch_seterr (char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0) return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int istchar (int c) {   /* RFC 9110 token characters */
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int concur_fetch_checkheader (const char *name, size_t nlen,
                              const char *value, size_t vlen,
                              char *err, size_t errlen) {
  if (nlen == 0) {
    concur_fetch_seterr(err, errlen, "empty header name");
    return CONCUR_FETCH_EARG;
  }
  for (size_t i = 0; i < nlen; i++)
    if (!istchar((unsigned char)name[i])) {
      concur_fetch_seterr(err, errlen, "bad header name '%.*s'", (int)nlen,
                          name);
      return CONCUR_FETCH_EARG;
    }
  for (size_t i = 0; i < vlen; i++)
    if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0') {
      concur_fetch_seterr(err, errlen,
                          "bad value for header '%.*s' (CR, LF or NUL)",
             (int)nlen, name);
      return CONCUR_FETCH_EARG;
    }
  return CONCUR_FETCH_OK;
}

/* ---- requests ------------------------------------------------------------ */

static void batch_done (concur_fetch_batch *b);

/* Frees a request whose future is done (or never was given out). */
void concur_fetch_reqfree (req *r) {
  if (r == NULL) return;
  if (r->f) concur_obj_unref(&r->f->obj);
  if (r->batch) batch_done(r->batch);
  if (r->on_free) r->on_free(r->on_free_ud, r->slot);
  free(r->method); free(r->url); free(r->key); free(r->path); free(r->body);
  curl_slist_free_all(r->hdrs);
  concur_buf_free(&r->out);
  concur_fetch_sbfree(&r->heads);
  free(r);
}

/* Wakes the engine thread; any thread, never blocks. */
void concur_fetch_wake (concur_fetch_engine *e) {
  uint64_t one = 1;
  ssize_t n = write(e->evfd, &one, sizeof one);   /* EAGAIN: already due */
  (void)n;
}

static void future_interrupt (concur_future *f) {
  req *r = f->owner;   /* alive: f is running, so r is not freed yet */
  atomic_store(&r->e->cancels, 1);
  concur_fetch_wake(r->e);
}

/* designated: the ops struct may grow */
static const concur_future_ops req_ops = { .interrupt = future_interrupt };

/* The length of the name in a "Name: value" line. */
static size_t hname (const char *line) {
  const char *c = strchr(line, ':');
  return c ? (size_t)(c - line) : strlen(line);
}

static int hsame (const char *a, const char *b) {
  size_t n = hname(a);
  return n == hname(b) && strncasecmp(a, b, n) == 0;
}

/* Builds the header list: the client's, unless the request names the same
** header, then the request's. */
static int build_headers (concur_fetch_engine *e, const concur_fetch_spec *s,
                          struct curl_slist **out) {
  struct curl_slist *l = NULL, *t;
  for (size_t i = 0; i < e->cfg.nheaders; i++) {
    int over = 0;
    for (size_t j = 0; j < s->nheaders && !over; j++)
      over = hsame(e->cfg.headers[i], s->headers[j]);
    if (over) continue;
    if ((t = curl_slist_append(l, e->cfg.headers[i])) == NULL) goto oom;
    l = t;
  }
  for (size_t j = 0; j < s->nheaders; j++) {
    if ((t = curl_slist_append(l, s->headers[j])) == NULL) goto oom;
    l = t;
  }
  if (s->body) {   /* no "Expect: 100-continue" round trip */
    if ((t = curl_slist_append(l, "Expect:")) == NULL) goto oom;
    l = t;
  }
  *out = l;
  return 0;
oom:
  curl_slist_free_all(l);
  return -1;
}

/* Builds a request from s (copies everything) with its future; nothing is
** queued. Any thread, no lock. */
int concur_fetch_prepare (concur_fetch_engine *e, const concur_fetch_spec *s,
                          req **out, char *err, size_t errlen) {
  req *r;
  const char *method = s->method ? s->method : "GET";
  int rc;
  if (method[0] == '\0') {
    concur_fetch_seterr(err, errlen, "empty method");
    return CONCUR_FETCH_EARG;
  }
  for (const char *c = method; *c; c++)
    if (!istchar((unsigned char)*c)) {
      concur_fetch_seterr(err, errlen, "bad method '%s'", method);
      return CONCUR_FETCH_EARG;
    }
  if ((r = calloc(1, sizeof *r)) == NULL) return CONCUR_FETCH_ENOMEM;
  r->e = e;
  rc = concur_fetch_parseurl(s->url, &r->url, &r->key,
                             e->cfg.robots ? &r->path : NULL,
                 err, errlen);
  if (rc != CONCUR_FETCH_OK) {
    free(r);
    return rc;
  }
  r->method = concur_fetch_strdup(method);
  if (r->method == NULL || build_headers(e, s, &r->hdrs)) goto oom;
  if (s->body) {
    r->body = malloc(s->bodylen ? s->bodylen : 1);
    if (r->body == NULL) goto oom;
    memcpy(r->body, s->body, s->bodylen);
    r->bodylen = s->bodylen;
    r->hasbody = 1;
  }
  r->timeout = s->timeout >= 0 ? s->timeout : e->cfg.timeout;
  r->connect_timeout = s->connect_timeout >= 0 ? s->connect_timeout
                                               : e->cfg.connect_timeout;
  r->retries = s->retries >= 0 ? s->retries : e->cfg.retries;
  r->max_redirects = s->max_redirects >= 0 ? s->max_redirects
                                           : e->cfg.max_redirects;
  r->max_body = s->max_body >= 0 ? s->max_body : e->cfg.max_body;
  r->follow = s->follow != 0;
  r->f = concur_future_new(&req_ops, r);
  if (r->f == NULL) goto oom;
  *out = r;
  return CONCUR_FETCH_OK;
oom:
  concur_fetch_reqfree(r);
  return CONCUR_FETCH_ENOMEM;
}

/* Appends the list head..tail (n requests) to the inbox and wakes the
** engine; returns ECLOSED (and queues nothing) after close. */
int concur_fetch_enqueue (concur_fetch_engine *e, req *head, req *tail,
                          long n) {
  int first;
  pthread_mutex_lock(&e->mu);
  if (e->closing) {
    pthread_mutex_unlock(&e->mu);
    return CONCUR_FETCH_ECLOSED;
  }
  first = (e->inbox == NULL);
  if (e->inbox_tail) e->inbox_tail->next = head;
  else e->inbox = head;
  e->inbox_tail = tail;
  count(e, queued, n);
  /* NOTE: woken under e->mu so that close cannot close the eventfd in
  ** between; only an empty inbox needs a wake-up (the engine drains all). */
  if (first) concur_fetch_wake(e);
  pthread_mutex_unlock(&e->mu);
  return CONCUR_FETCH_OK;
}

int concur_fetch_submit (concur_fetch_engine *e, const concur_fetch_spec *s,
                         concur_future **out, char *err, size_t errlen) {
  req *r;
  concur_future *f;
  int rc = concur_fetch_prepare(e, s, &r, err, errlen);
  if (rc != CONCUR_FETCH_OK) return rc;
  f = (concur_future *)concur_obj_ref(&r->f->obj);   /* the caller's */
  if (concur_fetch_enqueue(e, r, r, 1) != CONCUR_FETCH_OK) {
    concur_obj_unref(&f->obj);
    concur_fetch_reqfree(r);
    concur_fetch_seterr(err, errlen, "client is closed");
    return CONCUR_FETCH_ECLOSED;
  }
  /* NOTE: r belongs to the engine now and may already be freed */
  *out = f;
  return CONCUR_FETCH_OK;
}

/* ---- batches ------------------------------------------------------------- */

/*
** A batch counts its requests down as they are freed (each after its
** future is done). Its owner waits for the count to reach a threshold
** 'wake_at' (-1: nobody waits), so a get_all of thousands of requests wakes
** its caller a few times instead of once per future. NOTE: the waiter
** stores wake_at and then reads left; the engine decrements left and then
** reads wake_at (all sequentially consistent): one of them sees the other,
** so a wake-up is never lost.
*/
struct concur_fetch_batch {
  pthread_mutex_t mu;
  pthread_cond_t cv;           /* broadcast when 'left' reaches wake_at */
  atomic_long left;            /* requests not yet done */
  atomic_long wake_at;
  atomic_long refs;            /* the caller's and one per request */
  size_t n;
  concur_future **fs;          /* one reference each */
};

static void batch_unref (concur_fetch_batch *b) {
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < b->n; i++)
    if (b->fs[i]) concur_obj_unref(&b->fs[i]->obj);
  free(b->fs);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b);
}

/* A request of the batch is done (its future is, or it was dropped). */
static void batch_done (concur_fetch_batch *b) {
  long left = atomic_fetch_sub(&b->left, 1) - 1;
  if (left <= atomic_load(&b->wake_at)) {
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
  }
  batch_unref(b);
}

int concur_fetch_submit_batch (concur_fetch_engine *e,
                               const concur_fetch_spec *specs, size_t n,
                               concur_fetch_batch **out, size_t *bad,
                               char *err, size_t errlen) {
  concur_fetch_batch *b = calloc(1, sizeof *b);
  req *head = NULL, *tail = NULL;
  int rc = CONCUR_FETCH_OK;
  if (b == NULL || (b->fs = calloc(n ? n : 1, sizeof *b->fs)) == NULL) {
    free(b);
    return CONCUR_FETCH_ENOMEM;
  }
  pthread_mutex_init(&b->mu, NULL);
  concur_cond_init(&b->cv, 0);
  b->n = n;
  atomic_init(&b->left, (long)n);
  atomic_init(&b->wake_at, -1);
  atomic_init(&b->refs, 1);
  for (size_t i = 0; i < n; i++) {   /* all or nothing */
    req *r;
    rc = concur_fetch_prepare(e, &specs[i], &r, err, errlen);
    if (rc != CONCUR_FETCH_OK) {
      *bad = i;
      break;
    }
    b->fs[i] = (concur_future *)concur_obj_ref(&r->f->obj);
    r->batch = b;
    if (tail) tail->next = r;
    else head = r;
    tail = r;
  }
  if (rc == CONCUR_FETCH_OK && n > 0) {
    atomic_fetch_add(&b->refs, (long)n);   /* before the engine sees them */
    rc = concur_fetch_enqueue(e, head, tail, (long)n);
    if (rc != CONCUR_FETCH_OK) {
      atomic_fetch_sub(&b->refs, (long)n);
      concur_fetch_seterr(err, errlen, "client is closed");
    }
  }
  if (rc != CONCUR_FETCH_OK) {
    while (head) {
      req *nx = head->next;
      head->batch = NULL;
      concur_fetch_reqfree(head);
      head = nx;
    }
    batch_unref(b);
    return rc;
  }
  *out = b;
  return CONCUR_FETCH_OK;
}

size_t concur_fetch_batch_size (concur_fetch_batch *b) { return b->n; }

concur_future *concur_fetch_batch_future (concur_fetch_batch *b, size_t i) {
  return i < b->n ? b->fs[i] : NULL;
}

long concur_fetch_batch_wait (concur_fetch_batch *b, long target,
                              double deadline, int *rc) {
  long left;
  *rc = CONCUR_OK;
  if (target < 0) target = 0;
  pthread_mutex_lock(&b->mu);
  atomic_store(&b->wake_at, target);
  while ((left = atomic_load(&b->left)) > target) {
    *rc = concur_cond_wait(&b->cv, &b->mu, deadline);
    if (*rc != CONCUR_OK) {
      left = atomic_load(&b->left);
      if (left <= target) *rc = CONCUR_OK;
      break;
    }
  }
  atomic_store(&b->wake_at, -1);
  pthread_mutex_unlock(&b->mu);
  return left;
}

long concur_fetch_batch_left (concur_fetch_batch *b) {
  return atomic_load(&b->left);
}

void concur_fetch_batch_free (concur_fetch_batch *b) {
  if (b) batch_unref(b);
}

/* ---- completing futures (engine thread, e->mu not held) ------------------ */


/* Fails r's future with an error object; frees r. */
void concur_fetch_fail (concur_fetch_engine *e, req *r, const char *kind,
                        long code,
                  long status, const char *fmt, ...) {
  char msg[CURL_ERROR_SIZE + 512];
  concur_buf b = CONCUR_BUF_INIT;
  va_list ap;
  if (r->f == NULL) { concur_fetch_reqfree(r); return; }
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  concur_wire_table(&b, 0);
  concur_wire_cstr(&b, "kind"); concur_wire_cstr(&b, kind);
  concur_wire_cstr(&b, "message"); concur_wire_cstr(&b, msg);
  concur_wire_cstr(&b, "url"); concur_wire_cstr(&b, r->url);
  if (code) { concur_wire_cstr(&b, "code"); concur_wire_int(&b, code); }
  if (status) { concur_wire_cstr(&b, "status"); concur_wire_int(&b, status); }
  concur_wire_end(&b);
  /* counted first, so a caller that sees the future done sees the count */
  if (atomic_load(&r->f->cancel_req)) count(e, cancelled, 1);
  else count(e, failures, 1);
  concur_future_finish(r->f, 1, &b);
  concur_fetch_reqfree(r);
}

/* Ends r's future cancelled (it has a cancel request); frees r. */
void concur_fetch_cancelreq (concur_fetch_engine *e, req *r) {
  concur_buf b = CONCUR_BUF_INIT;
  if (r->f) {
    atomic_store(&r->f->cancel_req, 1);
    concur_future_finish(r->f, 1, &b);
    count(e, cancelled, 1);
  }
  concur_fetch_reqfree(r);
}

/* The next "name\0value\0" pair after the one at n. */
static const char *hnext (const char *n) {
  const char *v = n + strlen(n) + 1;
  return v + strlen(v) + 1;
}

/* Was the name at n seen in an earlier pair of h? */
static int hseen (const strbuf *h, const char *n) {
  for (const char *m = h->p; m < n; m = hnext(m))
    if (strcmp(m, n) == 0) return 1;
  return 0;
}

/* Writes the headers as a table: lower-case names, repeated ones joined
** with ", " (RFC 9110 5.3), but set-cookie, whose values may hold commas:
** always an array of its values, in order. */
static int wire_headers (concur_buf *b, const strbuf *h) {
  const char *end = h->p + h->len;
  size_t nnames = 0;
  int rc;
  for (const char *n = h->p; n && n < end; n = hnext(n))
    nnames += !hseen(h, n);
  rc = concur_wire_hint(b, nnames) | concur_wire_table(b, 0);
  for (const char *n = h->p; n && n < end; n = hnext(n)) {
    const char *v = n + strlen(n) + 1;
    if (!hseen(h, n) && strcmp(n, "set-cookie") == 0) {
      size_t k = 1;
      for (const char *m = hnext(n); m < end; m = hnext(m))
        k += strcmp(m, n) == 0;
      rc |= concur_wire_cstr(b, n);
      rc |= concur_wire_table(b, k);
      rc |= concur_wire_cstr(b, v);
      for (const char *m = hnext(n); m < end; m = hnext(m))
        if (strcmp(m, n) == 0) rc |= concur_wire_cstr(b, m + strlen(m) + 1);
      rc |= concur_wire_end(b);
    }
    else if (!hseen(h, n)) {
      strbuf joined = {NULL, 0, 0};
      int more = 0;
      for (const char *m = hnext(n); m < end; m = hnext(m)) {
        const char *mv = m + strlen(m) + 1;
        if (strcmp(m, n) == 0) {
          if (!more) rc |= concur_fetch_sbadd(&joined, v, strlen(v));
          rc |= concur_fetch_sbadd(&joined, ", ", 2);
          rc |= concur_fetch_sbadd(&joined, mv, strlen(mv));
          more = 1;
        }
      }
      rc |= concur_wire_cstr(b, n);
      if (more) rc |= concur_wire_str(b, joined.p, joined.len);
      else rc |= concur_wire_cstr(b, v);
      concur_fetch_sbfree(&joined);
    }
  }
  return rc | concur_wire_end(b);
}

/*
** The Response is built in place, so the body is copied once, from
** libcurl's buffer into the bytes the future hands to Lua: a table of 8
** pairs named by the Response metatable (wire.h's 'N'), whose first pair,
** "body", is a string written in place (concur_wire_strbegin), its length
** written when the body is complete; the 8 other pairs follow it.
*/
int concur_fetch_bodyopen (req *r) {
  r->out.len = 0;
  if (concur_wire_named(&r->out, CONCUR_FETCH_RESPONSE_MT) ||
      concur_wire_hint(&r->out, 9) || concur_wire_table(&r->out, 0) ||
      concur_wire_cstr(&r->out, "body") || concur_wire_strbegin(&r->out))
    return -1;
  r->body0 = r->out.len;
  return 0;
}

size_t concur_fetch_bodylen (const req *r) {
  return r->out.len >= r->body0 ? r->out.len - r->body0 : 0;
}

/* The HTTP version of a response as HTTP names it. */
static const char *httpver (long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0: return "1.0";
    case CURL_HTTP_VERSION_2_0: return "2";
#if LIBCURL_VERSION_NUM >= 0x074200
    case CURL_HTTP_VERSION_3: return "3";
#endif
    default: return "1.1";
  }
}

/* Resolves r's future with the Response; frees r. */
void concur_fetch_respond (concur_fetch_engine *e, req *r, long status,
                           double now) {
  concur_buf *b = &r->out;
  int rc = 0;
  if (r->f == NULL) { concur_fetch_reqfree(r); return; }
  if (b->len < r->body0)   /* never started: an empty body */
    rc = concur_fetch_bodyopen(r);
  if (!rc) {
    concur_wire_strend(b, r->body0);
    rc |= concur_wire_cstr(b, "status"); rc |= concur_wire_int(b, status);
    rc |= concur_wire_cstr(b, "ok");
    rc |= concur_wire_bool(b, status >= 200 && status < 300);
    rc |= concur_wire_cstr(b, "url"); rc |= concur_wire_cstr(b, r->url);
    rc |= concur_wire_cstr(b, "headers");
    rc |= wire_headers(b, &r->heads);
    rc |= concur_wire_cstr(b, "elapsed");
    rc |= concur_wire_num(b, now - r->started);
    rc |= concur_wire_cstr(b, "attempts");
    rc |= concur_wire_int(b, r->tries + 1);
    rc |= concur_wire_cstr(b, "redirects");
    rc |= concur_wire_int(b, r->redirects);
    rc |= concur_wire_cstr(b, "http_version");
    rc |= concur_wire_cstr(b, httpver(r->httpver));
    rc |= concur_wire_end(b);
  }
  if (rc) {
    concur_fetch_fail(e, r, "limit", 0, status,
                      "out of memory building the response "
         "for %s", r->url);
    return;
  }
  if (atomic_load(&r->f->cancel_req)) count(e, cancelled, 1);
  else count(e, completed, 1);
  concur_future_finish(r->f, 0, b);   /* takes r->out */
  concur_fetch_reqfree(r);
}
