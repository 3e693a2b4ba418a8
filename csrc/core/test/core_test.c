/*
** core_test.c: unit tests of csrc/core/, the Lua-free part of concur.
**
** Built against the core's objects alone (no Lua, no binding) and run by
** `make test`; `make check` runs it again under ASan+UBSan and under TSan.
** Each test is a function; CHECK records a failure and goes on, so one run
** reports every broken expectation. Threads synchronise on the core's own
** futures and futex words, never on sleeps.
*/
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../crawl_seen.h"
#include "../fetch_internal.h"
#include "../fetch_url.h"
#include "../future.h"
#include "../ratelimit.h"
#include "../sys.h"
#include "../wait.h"
#include "../wire.h"

static atomic_int failures, checks;   /* threads check too */

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)
static void check (int ok, const char *what, const char *file, int line) {
  checks++;
  if (!ok) {
    failures++;
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  }
}

/* ---- wait.h: deadlines and timed waits ---------------------------------------- */

static void test_deadlines (void) {
  double now = concur_now();
  double d = concur_deadline(0.5);
  CHECK(d >= now + 0.5 && d < now + 60);
  CHECK(concur_deadline(-1) == CONCUR_NODEADLINE);
  CHECK(concur_deadline(NAN) == CONCUR_NODEADLINE);
  CHECK(concur_deadline(CONCUR_FOREVER) == CONCUR_NODEADLINE);
  CHECK(concur_clampdeadline(now + 2 * CONCUR_FOREVER, now) == CONCUR_NODEADLINE);
  CHECK(concur_clampdeadline(now + 1, now) == now + 1);
}

static void test_timed_wait (void) {
  pthread_mutex_t m;
  pthread_cond_t c;
  int rc;
  double start;
  CHECK(concur_mutex_init(&m, 0) == 0);
  CHECK(concur_cond_init(&c, 0) == 0);
  pthread_mutex_lock(&m);
  start = concur_now();
  do rc = concur_cond_wait(&c, &m, start + 0.02);   /* OK may be spurious */
  while (rc == CONCUR_OK);
  pthread_mutex_unlock(&m);
  CHECK(rc == CONCUR_TIMEDOUT);
  CHECK(concur_now() >= start + 0.02);
  /* a deadline already past returns at once */
  pthread_mutex_lock(&m);
  CHECK(concur_cond_wait(&c, &m, start - 1) == CONCUR_TIMEDOUT);
  pthread_mutex_unlock(&m);
  pthread_cond_destroy(&c);
  pthread_mutex_destroy(&m);
}

/* A futex word: the waiter sleeps while it holds 0; the waker sets 1. */
static _Atomic unsigned word;

static void *wake_word (void *arg) {
  (void)arg;
  atomic_store(&word, 1);
  concur_futex_wake_local(&word, 1);
  return NULL;
}

static void test_futex (void) {
  pthread_t t;
  int rc = CONCUR_OK;
  atomic_store(&word, 0);
  CHECK(concur_futex_wait_local(&word, 0, concur_now() + 0.01) == CONCUR_TIMEDOUT);
  CHECK(concur_thread_create(&t, wake_word, NULL) == 0);
  while (atomic_load(&word) == 0 && rc == CONCUR_OK)
    rc = concur_futex_wait_local(&word, 0, concur_deadline(10));
  CHECK(rc == CONCUR_OK);
  CHECK(atomic_load(&word) == 1);
  pthread_join(t, NULL);
  /* a word that no longer holds the expected value returns at once */
  CHECK(concur_futex_wait_local(&word, 0, concur_deadline(10)) == CONCUR_OK);
}

/* ---- future.h: the state machine and wait sets ------------------------------------ */

static int dropped_calls;
static void count_dropped (concur_future *f) { (void)f; dropped_calls++; }
static const concur_future_ops count_ops = { count_dropped, NULL, NULL };

static void put_int (concur_buf *b, long v) {
  char tag = 'i';
  int64_t x = v;
  CHECK(concur_buf_write(b, &tag, 1) == 0);
  CHECK(concur_buf_write(b, &x, sizeof x) == 0);
}

static void test_future_states (void) {
  concur_future *f = concur_future_new(NULL, NULL);
  concur_buf out = CONCUR_BUF_INIT;
  CHECK(f != NULL);
  if (!f) return;
  CHECK(concur_future_state(f) == CONCUR_F_PENDING);
  CHECK(!concur_future_done(f));
  CHECK(concur_future_start(f, NULL) == 1);
  CHECK(concur_future_start(f, NULL) == 0);          /* only a pending one starts */
  CHECK(concur_future_state(f) == CONCUR_F_RUNNING);
  put_int(&out, 42);
  CHECK(concur_future_finish(f, 0, &out) == CONCUR_F_FINISHED);
  CHECK(out.data == NULL && out.len == 0);            /* moved in */
  CHECK(concur_future_done(f));
  CHECK(f->out.len == 9 && f->out.data[0] == 'i');
  CHECK(concur_future_cancel(f) == 0);                /* done: stays finished */
  CHECK(concur_future_state(f) == CONCUR_F_FINISHED);
  CHECK(concur_future_wait(f, concur_now()) == CONCUR_OK);
  concur_obj_unref(&f->obj);
}

static void test_future_cancel (void) {
  concur_future *f = concur_future_new(&count_ops, NULL);
  concur_future *g = concur_future_new(NULL, NULL);
  concur_buf out = CONCUR_BUF_INIT;
  CHECK(f && g);
  if (!f || !g) return;
  dropped_calls = 0;
  CHECK(concur_future_cancel(f) == 1);                /* pending: dropped */
  CHECK(dropped_calls == 1);
  CHECK(concur_future_state(f) == CONCUR_F_CANCELLED);
  /* a cancel request while running wins over the result */
  CHECK(concur_future_start(g, NULL) == 1);
  CHECK(concur_future_cancel(g) == 1);
  CHECK(atomic_load(&g->cancel_req));
  put_int(&out, 1);
  CHECK(concur_future_finish(g, 0, &out) == CONCUR_F_CANCELLED);
  concur_buf_free(&out);
  /* unstart: a cancelled one does not go back to pending */
  CHECK(concur_future_unstart(g) == 0);
  concur_obj_unref(&f->obj);
  concur_obj_unref(&g->obj);
}

enum { NFUT = 64 };

typedef struct finisher {
  concur_future **fs;
  size_t n;
} finisher;

/* Finishes the futures in reverse order. */
static void *finish_all (void *arg) {
  finisher *w = arg;
  for (size_t i = w->n; i-- > 0;) {
    concur_buf out = CONCUR_BUF_INIT;
    put_int(&out, (long)i);
    concur_future_start(w->fs[i], NULL);
    concur_future_finish(w->fs[i], 0, &out);
    concur_buf_free(&out);
  }
  return NULL;
}

static void test_waitset (void) {
  concur_future *fs[NFUT];
  int seen[NFUT] = {0};
  concur_waitset *ws;
  finisher w = { fs, NFUT };
  pthread_t t;
  long idx;
  int count = 0, dup = 0;
  for (size_t i = 0; i < NFUT; i++) fs[i] = concur_future_new(NULL, NULL);
  /* one done before the set is made */
  {
    concur_buf out = CONCUR_BUF_INIT;
    put_int(&out, 0);
    concur_future_start(fs[0], NULL);
    concur_future_finish(fs[0], 0, &out);
  }
  ws = concur_waitset_new(fs, NFUT);
  CHECK(ws != NULL);
  if (!ws) return;
  w.n = NFUT - 1;                          /* fs[0] is done already */
  w.fs = fs + 1;
  CHECK(concur_thread_create(&t, finish_all, &w) == 0);
  while ((idx = concur_waitset_next(ws, concur_deadline(30))) >= 0) {
    if (seen[idx]++) dup++;
    count++;
  }
  pthread_join(t, NULL);
  CHECK(idx == -1);                        /* all returned, none timed out */
  CHECK(count == NFUT);
  CHECK(dup == 0);
  concur_waitset_free(ws);
  for (size_t i = 0; i < NFUT; i++) concur_obj_unref(&fs[i]->obj);
}

static void test_waitset_timeout (void) {
  concur_future *f = concur_future_new(NULL, NULL);
  concur_waitset *ws = concur_waitset_new(&f, 1);
  CHECK(ws != NULL);
  if (ws) {
    CHECK(concur_waitset_next(ws, concur_now() + 0.01) == -2 - CONCUR_TIMEDOUT);
    concur_waitset_free(ws);
  }
  concur_obj_unref(&f->obj);
}

/* ---- ratelimit.h: GCRA on given clock readings ------------------------------------ */

static void test_ratelimit (void) {
  concur_ratelimit rl;
  double t0 = 1000.0;
  CHECK(concur_ratelimit_init(&rl, 0, 1, 1, 0) == -1);     /* bad numbers */
  CHECK(concur_ratelimit_init(&rl, 10, 1, 0.5, 0) == -1);
  CHECK(concur_ratelimit_init(&rl, 10, 1, 2, 0) == 0);     /* 10/s, burst 2 */
  /* the burst goes at once; then one slot every 0.1 s, in order */
  CHECK(concur_ratelimit_reserve(&rl, t0, -1) <= t0);
  CHECK(concur_ratelimit_reserve(&rl, t0, -1) <= t0);
  CHECK(fabs(concur_ratelimit_reserve(&rl, t0, -1) - (t0 + 0.1)) < 1e-9);
  CHECK(fabs(concur_ratelimit_reserve(&rl, t0, -1) - (t0 + 0.2)) < 1e-9);
  /* a slot past the deadline is not reserved */
  CHECK(concur_ratelimit_reserve(&rl, t0, t0 + 0.25) == -1);
  CHECK(fabs(concur_ratelimit_peek(&rl, t0) - (t0 + 0.3)) < 1e-9);
  /* the last slot given back: the next caller gets it */
  {
    double s = concur_ratelimit_reserve(&rl, t0, -1);
    CHECK(fabs(s - (t0 + 0.3)) < 1e-9);
    CHECK(concur_ratelimit_unreserve(&rl, s) == 1);
    CHECK(fabs(concur_ratelimit_reserve(&rl, t0, -1) - s) < 1e-9);
  }
  /* pause pushes the schedule back */
  concur_ratelimit_pause(&rl, t0 + 5);
  CHECK(concur_ratelimit_reserve(&rl, t0, -1) >= t0 + 5);
  concur_ratelimit_destroy(&rl);
}

/* ---- crawl_seen.h: the compact seen-set ---------------------------------------- */

static void test_seen (void) {
  concur_seen s;
  char url[64];
  size_t n = 100000;
  int fresh = 1, again = 0;
  concur_seen_init(&s);
  for (size_t i = 0; i < n; i++) {
    int len = snprintf(url, sizeof url, "http://127.0.0.1/page/%zu", i);
    uint64_t fp = concur_seen_fingerprint(url, (size_t)len);
    fresh &= fp != 0 && concur_seen_add(&s, fp) == 1;
  }
  for (size_t i = 0; i < n; i++) {
    int len = snprintf(url, sizeof url, "http://127.0.0.1/page/%zu", i);
    uint64_t fp = concur_seen_fingerprint(url, (size_t)len);
    again += concur_seen_has(&s, fp) && concur_seen_add(&s, fp) == 0;
  }
  CHECK(fresh);
  CHECK((size_t)again == n);
  CHECK(s.count == n);
  CHECK(!concur_seen_has(&s, concur_seen_fingerprint("http://other/", 13)));
  CHECK(concur_seen_bytes(&s) <= 16 * n);            /* the crawler's promise */
  /* the fingerprint is the same in every run: journals depend on it */
  CHECK(concur_seen_fingerprint("abc", 3) == concur_seen_fingerprint("abc", 3));
  CHECK(concur_seen_fingerprint("abc", 3) != concur_seen_fingerprint("abd", 3));
  concur_seen_free(&s);
}

/* ---- fetch_url.h: RFC 3986 section 5.4 and normal forms ---------------------------- */

static void test_urljoin (void) {
  static const char *const base = "http://a/b/c/d;p?q";
  static const char *const cases[][2] = {
    {"g", "http://a/b/c/g"}, {"./g", "http://a/b/c/g"}, {"g/", "http://a/b/c/g/"},
    {"/g", "http://a/g"}, {"?y", "http://a/b/c/d;p?y"}, {"g?y", "http://a/b/c/g?y"},
    {"#s", "http://a/b/c/d;p?q#s"}, {"", "http://a/b/c/d;p?q"},
    {"..", "http://a/b/"}, {"../g", "http://a/b/g"}, {"../../g", "http://a/g"},
    {"../../../g", "http://a/g"}, {"/./g", "http://a/g"}, {"g.", "http://a/b/c/g."},
    {"./../g", "http://a/b/g"}, {"g;x=1/../y", "http://a/b/c/y"},
  };
  char err[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *out = NULL;
    int rc = concur_fetch_urljoin(base, cases[i][0], 0, &out, NULL, err, sizeof err);
    CHECK(rc == 0);
    if (rc == 0 && strcmp(out, cases[i][1]) != 0) {
      fprintf(stderr, "urljoin(%s, \"%s\") = %s, want %s\n", base, cases[i][0], out,
              cases[i][1]);
      CHECK(0);
    }
    free(out);
  }
  {
    char *out = NULL;
    int bad = 0;
    CHECK(concur_fetch_urljoin("not a url", "g", 0, &out, &bad, err, sizeof err) ==
          CONCUR_FETCH_EARG);
    CHECK(bad == 1);
    CHECK(out == NULL);
  }
}

/* parseurl's own split of the common URL gives what libcurl's parser
** gives, and leaves every other URL to it */
static void test_parseurl (void) {
  static const char *const urls[] = {
    "http://127.0.0.1:18931/p2k/1", "http://127.0.0.1/", "https://example.com/a/b?x=1&y=2",
    "http://example.com:80/", "https://example.com:443/x", "http://a-b.c0.example/p;q=1",
    "http://example.com/~user/(x)!$&'*+,=:@", "http://example.com/a?b?c", "http://h.example/",
    "http://example.com/a/./b", "http://example.com/a/../b", "http://example.com//a",
    "http://example.com/.well-known/x", "http://example.com/a%20b", "http://example.com/a#f",
    "http://example.com/a?", "http://Example.com/", "HTTP://example.com/",
    "http://example.com", "http://example.com:0080/", "http://example.com:65536/",
    "http://127.1/", "http://127.000.0.1/", "http://0x7f.0.0.1/", "http://1.2.3.256/",
    "http://1example.com/", "http://example.com./", "http://user@example.com/",
    "http://[::1]:8080/", "http://-a.example/", "http://a..b/", "ftp://example.com/",
    "http://example.com:8080/a b", "http://example.com/\\x", "http://ex_ample.com/",
    "https://xn--bcher-kva.example/", "http://example.com:8080?x", "http://a.b/c?d#e",
  };
  for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
    char *n1 = NULL, *k1 = NULL, *p1 = NULL, *n2 = NULL, *k2 = NULL, *p2 = NULL;
    char e1[256], e2[256];
    int r1 = concur_fetch_parseurl(urls[i], &n1, &k1, &p1, e1, sizeof e1);
    int r2 = concur_fetch_parseurl_curl(urls[i], &n2, &k2, &p2, e2, sizeof e2);
    CHECK(r1 == r2);
    if (r1 == r2 && r1 == CONCUR_FETCH_OK) {
      CHECK(strcmp(n1, n2) == 0);
      CHECK(strcmp(k1, k2) == 0);
      CHECK(strcmp(p1, p2) == 0);
      if (strcmp(n1, n2) || strcmp(k1, k2) || strcmp(p1, p2))
        fprintf(stderr, "parseurl %s: %s %s %s / curl: %s %s %s\n", urls[i], n1, k1, p1,
                n2, k2, p2);
    }
    free(n1); free(k1); free(p1); free(n2); free(k2); free(p2);
    n1 = k1 = n2 = k2 = NULL;       /* and without the path */
    r1 = concur_fetch_parseurl(urls[i], &n1, &k1, NULL, e1, sizeof e1);
    r2 = concur_fetch_parseurl_curl(urls[i], &n2, &k2, NULL, e2, sizeof e2);
    CHECK(r1 == r2);
    if (r1 == r2 && r1 == CONCUR_FETCH_OK) CHECK(strcmp(n1, n2) == 0 && strcmp(k1, k2) == 0);
    free(n1); free(k1); free(n2); free(k2);
  }
}

static void test_urlnormalize (void) {
  static const char *const cases[][2] = {
    {"HTTP://Example.COM:80/a/./b/../c", "http://example.com/a/c"},
    {"https://h:443", "https://h/"},
    {"http://h/%7euser/%2f#frag", "http://h/~user/%2F"},
    {"http://h:8080/p?b=2&a=1", "http://h:8080/p?b=2&a=1"},
  };
  char err[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *out = NULL;
    int rc = concur_fetch_urlnormalize(cases[i][0], &out, err, sizeof err);
    CHECK(rc == 0);
    if (rc == 0 && strcmp(out, cases[i][1]) != 0) {
      fprintf(stderr, "urlnormalize(%s) = %s, want %s\n", cases[i][0], out, cases[i][1]);
      CHECK(0);
    }
    free(out);
  }
  {
    char *out = NULL;
    CHECK(concur_fetch_urlnormalize("ftp://h/x", &out, err, sizeof err) ==
          CONCUR_FETCH_EARG);
    free(out);
  }
}

/* ---- wire.h: the buffer ------------------------------------------------------------- */

static void test_buf (void) {
  concur_buf a = CONCUR_BUF_INIT, b = CONCUR_BUF_INIT;
  int ok = 1;
  for (int i = 0; i < 10000; i++) ok &= concur_buf_write(&a, "xy", 2) == 0;
  CHECK(ok);
  CHECK(a.len == 20000);
  CHECK(a.cap >= a.len);
  CHECK(memcmp(a.data + 19998, "xy", 2) == 0);
  concur_buf_move(&b, &a);
  CHECK(a.data == NULL && a.len == 0);
  CHECK(b.len == 20000);
  CHECK(concur_buf_reserve(&b, CONCUR_MAX_ENCODED) == -1);   /* past the cap */
  CHECK(b.len == 20000);
  concur_buf_free(&b);
  CHECK(b.data == NULL);
}

int main (void) {
  test_deadlines();
  test_timed_wait();
  test_futex();
  test_future_states();
  test_future_cancel();
  test_waitset();
  test_waitset_timeout();
  test_ratelimit();
  test_seen();
  test_urljoin();
  test_urlnormalize();
  test_parseurl();
  test_buf();
  printf("core: %d checks, %d failed\n", atomic_load(&checks), atomic_load(&failures));
  return atomic_load(&failures) ? 1 : 0;
}
