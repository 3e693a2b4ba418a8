/*
** fuzz_robots.c: libFuzzer target for the robots.txt parser and matcher
** (csrc/core/fetch_robots.c). The input is a robots.txt, optionally
** followed by a NUL byte and a path to match; any bytes must parse and
** match without crashing, hanging or leaking, and the answers must keep
** the rules' invariants (/robots.txt always allowed; a Crawl-delay is
** absent or between 0 and a day), and a pattern must match as the plain
** backtracking matcher says.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/fetch_robots.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const char *const agents[] = {
  "concur/0.1.0 (Lua 5.4.6; libcurl/7.88.1)", "Googlebot", "", "*",
};

static const char *const paths[] = {
  "/", "/a", "/a/b?c=d", "/private/x", "/*", "/$", "", "/index.html",
};

/* The plain wildcard match, by dynamic programming over (pattern, path)
** positions, to check the parser's against: ok[j] says whether the pattern
** read so far can end at path position j. Small sizes only. */
static int ref_match (const char *p, const char *pe, const char *s) {
  size_t n = strlen(s);
  unsigned char ok[80], nx[80];
  int anchored = pe > p && pe[-1] == '$';
  if (anchored) pe--;
  memset(ok, 0, sizeof ok);
  ok[0] = 1;
  for (; p < pe; p++) {
    memset(nx, 0, sizeof nx);
    for (size_t j = 0; j <= n; j++) {
      if (!ok[j]) continue;
      if (*p == '*') for (size_t k = j; k <= n; k++) nx[k] = 1;
      else if (j < n && s[j] == *p) nx[j + 1] = 1;
    }
    memcpy(ok, nx, sizeof ok);
  }
  if (anchored) return ok[n];
  for (size_t j = 0; j <= n; j++) if (ok[j]) return 1;
  return 0;
}

/* When the input's first line is a short plain pattern, one Disallow rule
** with it must give the answer of ref_match on the path. */
static void differential (const char *txt, size_t tlen, const char *path) {
  char rules[128];
  size_t n = 0;
  concur_robots *r;
  while (n < tlen && txt[n] != '\n') {
    unsigned char c = (unsigned char)txt[n];
    if (c <= ' ' || c >= 0x7f || c == '#') return;
    n++;
  }
  if (n == 0 || n > 40) return;
  memcpy(rules, "User-agent: *\nDisallow: ", 24);
  memcpy(rules + 24, txt, n);
  r = concur_fetch_robots_parse(rules, 24 + n, "x");
  if (r == NULL) return;
  if (strcmp(path, "/robots.txt") != 0 &&
      concur_fetch_robots_allowed(r, path) == ref_match(txt, txt + n, path))
    abort();
  concur_fetch_robots_free(r);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  const char *txt = (const char *)data;
  const uint8_t *nul = memchr(data, 0, size);
  size_t tlen = nul ? (size_t)(nul - data) : size;
  char path[256];
  size_t plen = 0;
  if (nul) {   /* the path after the NUL, at most 255 bytes, no NUL */
    for (const uint8_t *p = nul + 1; p < data + size && plen < 255; p++)
      if (*p) path[plen++] = (char)*p;
  }
  path[plen] = '\0';
  for (size_t a = 0; a < sizeof agents / sizeof agents[0]; a++) {
    concur_robots *r = concur_fetch_robots_parse(txt, tlen, agents[a]);
    double d;
    if (r == NULL) continue;   /* out of memory */
    if (!concur_fetch_robots_allowed(r, "/robots.txt")) abort();
    d = concur_fetch_robots_delay(r);
    if (!(d == -1 || (d >= 0 && d <= 86400))) abort();
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
      int ok = concur_fetch_robots_allowed(r, paths[i]);
      if (ok != 0 && ok != 1) abort();
    }
    if (nul) {
      int ok = concur_fetch_robots_allowed(r, path);
      if (ok != 0 && ok != 1) abort();
    }
    concur_fetch_robots_free(r);
  }
  if (nul && plen <= 64) differential(txt, tlen, path);
  for (int allow = 0; allow <= 1; allow++) {
    concur_robots *r = concur_fetch_robots_all(allow);
    if (r && concur_fetch_robots_allowed(r, nul ? path : "/x") != allow &&
        strcmp(path, "/robots.txt") != 0)
      abort();
    concur_fetch_robots_free(r);
  }
  return 0;
}
