/*
** fetch_robots.c: parsing and matching robots.txt (RFC 9309).
**
** The parser walks the lines once. Consecutive User-agent lines open a
** group; the rules after them belong to that group until the next
** User-agent line that follows a rule. Only groups that match our product
** token are kept (and the '*' groups, used when no group names us), so
** matching later is a walk over a short array. Unknown lines (Sitemap, ...)
** are ignored, and so is anything the parser cannot read: a broken
** robots.txt allows what it cannot express.
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "fetch_robots.h"

typedef struct rule {
  char *pat;
  size_t len;
  int allow;
} rule;

typedef struct ruleset {
  rule *r;
  size_t n, cap;
  double delay;
} ruleset;

struct concur_robots {
  ruleset rs;
  int all;      /* -1: use the rules; 0: disallow all; 1: allow all */
};

static int rs_add (ruleset *rs, const char *p, size_t len, int allow) {
  if (rs->n == rs->cap) {
    size_t ncap = rs->cap ? rs->cap * 2 : 8;
    rule *nr = realloc(rs->r, ncap * sizeof *nr);
    if (nr == NULL) return -1;
    rs->r = nr;
    rs->cap = ncap;
  }
  rs->r[rs->n].pat = malloc(len + 1);
  if (rs->r[rs->n].pat == NULL) return -1;
  memcpy(rs->r[rs->n].pat, p, len);
  rs->r[rs->n].pat[len] = '\0';
  rs->r[rs->n].len = len;
  rs->r[rs->n].allow = allow;
  rs->n++;
  return 0;
}

static void rs_free (ruleset *rs) {
  for (size_t i = 0; i < rs->n; i++) free(rs->r[i].pat);
  free(rs->r);
  memset(rs, 0, sizeof *rs);
}

static int istokenchar (int c) {
  return isalpha(c) || c == '_' || c == '-';
}

/* Length of the product token at the start of s. */
static size_t tokenlen (const char *s, size_t n) {
  size_t i = 0;
  while (i < n && istokenchar((unsigned char)s[i])) i++;
  return i;
}

static int keyis (const char *k, size_t klen, const char *name) {
  size_t n = strlen(name);
  if (klen != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (tolower((unsigned char)k[i]) != name[i]) return 0;
  return 1;
}

concur_robots *concur_fetch_robots_parse (const char *txt, size_t len,
                                          const char *user_agent) {
  concur_robots *r = calloc(1, sizeof *r);
  ruleset star = {NULL, 0, 0, -1};
  const char *me = user_agent ? user_agent : "";
  size_t melen = tokenlen(me, strlen(me));
  const char *p = txt, *end = txt + len;
  int ingroup_agents = 0;      /* the last line was a User-agent line */
  int g_me = 0, g_star = 0;    /* the current group applies to us / to '*' */
  int found_me = 0, oom = 0;
  if (r == NULL) return NULL;
  r->all = -1;
  r->rs.delay = -1;
  while (p < end && !oom) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line = p, *lend = eol ? eol : end;
    const char *colon, *k, *v, *hash;
    size_t klen, vlen;
    p = eol ? eol + 1 : end;
    hash = memchr(line, '#', (size_t)(lend - line));
    if (hash) lend = hash;
    colon = memchr(line, ':', (size_t)(lend - line));
    if (colon == NULL) continue;
    k = line;
    while (k < colon && isspace((unsigned char)*k)) k++;
    klen = (size_t)(colon - k);
    while (klen && isspace((unsigned char)k[klen - 1])) klen--;
    v = colon + 1;
    while (v < lend && isspace((unsigned char)*v)) v++;
    vlen = (size_t)(lend - v);
    while (vlen && isspace((unsigned char)v[vlen - 1])) vlen--;
    if (keyis(k, klen, "user-agent")) {
      size_t tl = tokenlen(v, vlen);
      if (!ingroup_agents) g_me = g_star = 0;   /* a new group starts */
      ingroup_agents = 1;
      if (vlen == 1 && v[0] == '*') g_star = 1;
      else if (tl > 0 && tl == melen && strncasecmp(v, me, tl) == 0) {
        g_me = 1;
        found_me = 1;
      }
      continue;
    }
    ingroup_agents = 0;
    if (keyis(k, klen, "allow") || keyis(k, klen, "disallow")) {
      int allow = (klen == 5);
      if (vlen == 0) continue;         /* "Disallow:" allows everything */
      if (g_me) oom |= rs_add(&r->rs, v, vlen, allow);
      if (g_star) oom |= rs_add(&star, v, vlen, allow);
    }
    else if (keyis(k, klen, "crawl-delay")) {
      char tmp[32];
      char *e;
      double d;
      if (vlen == 0 || vlen >= sizeof tmp) continue;
      memcpy(tmp, v, vlen);
      tmp[vlen] = '\0';
      d = strtod(tmp, &e);
      if (*e != '\0' || !(d >= 0) || d > 86400) continue;
      if (g_me && r->rs.delay < 0) r->rs.delay = d;
      if (g_star && star.delay < 0) star.delay = d;
    }
  }
  if (oom) {
    rs_free(&star);
    concur_fetch_robots_free(r);
    return NULL;
  }
  if (found_me) rs_free(&star);
  else {
    rs_free(&r->rs);
    r->rs = star;
  }
  return r;
}

concur_robots *concur_fetch_robots_all (int allow) {
  concur_robots *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->all = allow ? 1 : 0;
  r->rs.delay = -1;
  return r;
}

/*
** Does pattern pat (with '*' and a final '$') match a prefix of s, or all
** of s when it ends in '$'? The pattern is literal pieces between stars,
** P0*P1*...*Pk: P0 must start s, each later piece is found at its leftmost
** place after the one before (leftmost is never worse for what follows), and
** with '$' the last piece must end s. memmem is linear, so a hostile
** robots.txt (long patterns full of stars, long paths) costs time in
** proportion to its size, never its size squared.
*/
static int match (const char *pat, size_t plen, const char *s) {
  int anchored = plen > 0 && pat[plen - 1] == '$';
  const char *pe = pat + plen - (anchored ? 1 : 0);
  const char *star = memchr(pat, '*', (size_t)(pe - pat));
  size_t slen = strlen(s), at;
  size_t n0 = (size_t)((star ? star : pe) - pat);
  if (n0 > slen || memcmp(pat, s, n0) != 0) return 0;
  if (star == NULL) return !anchored || n0 == slen;
  at = n0;
  pat = star + 1;
  for (;;) {   /* pat: just after a star */
    const char *next = memchr(pat, '*', (size_t)(pe - pat));
    size_t n = (size_t)((next ? next : pe) - pat);
    if (next == NULL) {   /* the last piece */
      if (!anchored) return memmem(s + at, slen - at, pat, n) != NULL || n == 0;
      return n <= slen - at && memcmp(s + slen - n, pat, n) == 0;
    }
    if (n > 0) {
      const char *found = memmem(s + at, slen - at, pat, n);
      if (found == NULL) return 0;
      at = (size_t)(found - s) + n;
    }
    pat = next + 1;
  }
}

int concur_fetch_robots_allowed (const concur_robots *r, const char *path) {
  size_t best = 0;
  int allowed = 1, found = 0;
  if (r == NULL || strcmp(path, "/robots.txt") == 0) return 1;
  if (r->all >= 0) return r->all;
  for (size_t i = 0; i < r->rs.n; i++) {
    const rule *ru = &r->rs.r[i];
    if (!match(ru->pat, ru->len, path)) continue;
    if (!found || ru->len > best || (ru->len == best && ru->allow)) {
      best = ru->len;
      allowed = ru->allow;
      found = 1;
    }
  }
  return allowed;
}

double concur_fetch_robots_delay (const concur_robots *r) {
  return r ? r->rs.delay : -1;
}

void concur_fetch_robots_free (concur_robots *r) {
  if (r == NULL) return;
  rs_free(&r->rs);
  free(r);
}
