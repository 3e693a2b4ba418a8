/*
** fuzz_url.c: libFuzzer target for concur.fetch's URL functions
** (csrc/core/fetch_url.c: the href cleaning, percent-escape and
** dot-segment normalisation around libcurl's URL API). The input is a base
** URL, a NUL byte, and a reference. Any bytes must give a result or an
** argument error, never a crash or a leak, and:
**   - normalising is idempotent: normalize(normalize(u)) == normalize(u);
**   - joining with normalize gives normalize(join(base, ref));
**   - what join and normalize give is an http(s) URL that parses.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/fetch_url.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* a copy of n bytes, NUL-terminated (the fuzzer's bytes are not) */
static char *cstr (const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (s == NULL) abort();
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

static void check_http (const char *u) {
  concur_urlparts p;
  if (concur_fetch_urlparse(u, &p, NULL, 0) != CONCUR_FETCH_OK) abort();
  if (p.scheme == NULL || (strcmp(p.scheme, "http") && strcmp(p.scheme, "https")))
    abort();
  concur_fetch_urlparts_free(&p);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t blen = nul ? (size_t)(nul - data) : size;
  char *base = cstr(data, blen);
  char *ref = nul ? cstr(nul + 1, size - blen - 1) : cstr(data, 0);
  char *n1 = NULL, *n2 = NULL, *j = NULL, *jn = NULL, *nj = NULL;
  if (strlen(ref) != (nul ? size - blen - 1 : 0)) goto done;   /* a 2nd NUL */
  if (concur_fetch_urlnormalize(base, &n1, NULL, 0) == CONCUR_FETCH_OK) {
    check_http(n1);
    if (concur_fetch_urlnormalize(n1, &n2, NULL, 0) != CONCUR_FETCH_OK ||
        strcmp(n1, n2) != 0)
      abort();
  }
  if (concur_fetch_urljoin(base, ref, 0, &j, NULL, NULL, 0) ==
      CONCUR_FETCH_OK) {
    check_http(j);
    if (concur_fetch_urljoin(base, ref, 1, &jn, NULL, NULL, 0) !=
        CONCUR_FETCH_OK ||
        concur_fetch_urlnormalize(j, &nj, NULL, 0) != CONCUR_FETCH_OK ||
        strcmp(jn, nj) != 0)
      abort();
  }
  {   /* a base parsed once joins as concur_fetch_urljoin does */
    concur_urlbase *b = concur_fetch_urlbase_new(base);
    for (int norm = 0; b && norm <= 1; norm++) {
      char *once = NULL;
      int rc = concur_fetch_urljoin_base(b, ref, norm, &once);
      const char *want = norm ? jn : j;
      if (rc == CONCUR_FETCH_OK ? (want == NULL || strcmp(once, want) != 0)
                                : (rc != CONCUR_FETCH_ENOMEM && want != NULL))
        abort();
      free(once);
    }
    concur_fetch_urlbase_free(b);
  }
done:
  free(base); free(ref); free(n1); free(n2); free(j); free(jn); free(nj);
  return 0;
}
