/*
** fetch_url.c: URLs for the fetch engine and concur.fetch, by libcurl's URL
** API (CURLU): checked and split for requests; joined, split and put in
** canonical form for the crawler.
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "fetch_internal.h"
#include "fetch_url.h"

/*
** The common URL that libcurl's parser gives back as it is, split without
** it: scheme "http://" or "https://", a host of lower-case labels that
** each start with a letter (so never a number libcurl would rewrite) or a
** dotted quad in canonical form, a port (if any) without a leading zero,
** and a path with its query made of characters that are kept as they are:
** no percent escapes, no "/." (dot segments), no "//", no fragment, no
** empty query. Anything else goes to libcurl's parser. Returns 1 with the
** parts filled (as concur_fetch_parseurl; path may be NULL), 0 for the
** parser, or -1 when out of memory.
*/
static int plainurl (const char *url, char **norm, char **key, char **path) {
  const char *h, *p, *q, *c;
  const char *port;
  size_t hlen, plen;
  int quad = 1, dots = 0, label = 0, https;
  if (strncmp(url, "http://", 7) == 0) https = 0;
  else if (strncmp(url, "https://", 8) == 0) https = 1;
  else return 0;
  h = url + 7 + https;
  for (c = h; *c && *c != ':' && *c != '/'; c++) {
    if (*c == '.') {
      if (label == 0) return 0;                  /* an empty label */
      dots++;
      label = 0;
      continue;
    }
    if (label == 0 && !(*c >= 'a' && *c <= 'z')) {
      if (!(*c >= '0' && *c <= '9')) return 0;
    }
    else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
      return 0;
    if (!(*c >= '0' && *c <= '9')) quad = 0;
    label++;
  }
  hlen = (size_t)(c - h);
  if (label == 0 || hlen > 253) return 0;
  if (quad) {                                   /* a.b.c.d, each 0..255 */
    unsigned v = 0;
    int digits = 0;
    if (dots != 3) return 0;
    for (const char *d = h; d <= c; d++) {
      if (d == c || *d == '.') {
        if (digits == 0 || v > 255) return 0;
        v = 0;
        digits = 0;
      }
      else {
        if (digits > 0 && v == 0) return 0;      /* a leading zero */
        v = v * 10 + (unsigned)(*d - '0');
        if (++digits > 3) return 0;
      }
    }
  }
  else                                          /* every label a name */
    for (const char *d = h; d < c; d++)
      if ((d == h || d[-1] == '.') && !(*d >= 'a' && *d <= 'z')) return 0;
  port = https ? "443" : "80";
  if (*c == ':') {
    unsigned v = 0;
    const char *d = ++c;
    for (; *c >= '0' && *c <= '9'; c++)
      if (c - d >= 5 || (v = v * 10 + (unsigned)(*c - '0')) > 65535) return 0;
    if (c == d || *d == '0') return 0;
    port = NULL;                                /* the digits at d */
    p = c;
    plen = (size_t)(c - d);
    if (*p != '/') return 0;
    {
      size_t n = 8 + https + hlen + 1 + plen + 1;
      if ((*key = malloc(n)) == NULL) return -1;
      snprintf(*key, n, "%s://%.*s:%.*s", https ? "https" : "http", (int)hlen, h,
               (int)plen, d);
    }
  }
  else {
    size_t n;
    p = c;
    if (*p != '/') return 0;
    n = 8 + https + hlen + 1 + strlen(port) + 1;
    if ((*key = malloc(n)) == NULL) return -1;
    snprintf(*key, n, "%s://%.*s:%s", https ? "https" : "http", (int)hlen, h, port);
  }
  q = NULL;
  for (c = p; *c; c++) {
    if (*c == '?' && q == NULL) q = c;
    else if (q == NULL && *c == '/' && (c[1] == '.' || c[1] == '/')) break;
    else if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
               (*c >= '0' && *c <= '9') || strchr("-._~!$&'()*+,;=:@/?", *c)))
      break;
  }
  if (*c || (q && q[1] == '\0')) {
    free(*key);
    *key = NULL;
    return 0;
  }
  if (path && (*path = concur_fetch_strdup(p)) == NULL) {
    free(*key);
    *key = NULL;
    return -1;
  }
  if ((*norm = concur_fetch_strdup(url)) == NULL) {
    free(*key);
    *key = NULL;
    if (path) {
      free(*path);
      *path = NULL;
    }
    return -1;
  }
  return 1;
}

/*
** Parses 'url' with libcurl's URL parser: well formed, scheme http or
** https, a host. On success fills (malloc'd) the normalized URL, the host
** key "scheme://host:port" and (if want_path) the path and query. The
** common URL that the parser would leave as it is skips it (plainurl).
*/
int concur_fetch_parseurl (const char *url, char **norm, char **key,
                           char **path,
                      char *err, size_t errlen) {
  if (key && strlen(url) <= 65536) {
    int rc = plainurl(url, norm, key, path);
    if (rc != 0) return rc > 0 ? CONCUR_FETCH_OK : CONCUR_FETCH_ENOMEM;
  }
  return concur_fetch_parseurl_curl(url, norm, key, path, err, errlen);
}

int concur_fetch_parseurl_curl (const char *url, char **norm, char **key,
                                char **path, char *err, size_t errlen) {
  CURLU *u = curl_url();
  char *scheme = NULL, *hostn = NULL, *port = NULL, *full = NULL;
  char *p = NULL, *q = NULL;
  int rc = CONCUR_FETCH_EARG;
  CURLUcode uc;
  if (u == NULL) return CONCUR_FETCH_ENOMEM;
  if (strlen(url) > 65536) {
    concur_fetch_seterr(err, errlen, "URL too long");
    goto done;
  }
  for (const char *c = url; *c; c++)
    if ((unsigned char)*c <= ' ' || *c == 0x7f) {
      concur_fetch_seterr(err, errlen,
                          "malformed URL '%s' (control or space characters)",
             url);
      goto done;
    }
  uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
  if (uc != CURLUE_OK) {
    concur_fetch_seterr(err, errlen, "malformed URL '%s' (%s)", url,
                        curl_url_strerror(uc));
    goto done;
  }
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
    concur_fetch_seterr(err, errlen,
                        "unsupported URL scheme '%s' in '%s' (only http and "
           "https)", scheme ? scheme : "", url);
    goto done;
  }
  if (curl_url_get(u, CURLUPART_HOST, &hostn, 0) != CURLUE_OK ||
      hostn[0] == '\0') {
    concur_fetch_seterr(err, errlen, "malformed URL '%s' (no host)", url);
    goto done;
  }
  if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK
      || curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK) {
    concur_fetch_seterr(err, errlen, "malformed URL '%s'", url);
    goto done;
  }
  rc = CONCUR_FETCH_ENOMEM;
  if (key) {
    size_t n = strlen(scheme) + strlen(hostn) + strlen(port) + 5;
    *key = malloc(n);
    if (*key == NULL) goto done;
    snprintf(*key, n, "%s://%s:%s", scheme, hostn, port);
    for (char *c = *key; *c; c++) *c = (char)tolower((unsigned char)*c);
  }
  if (path) {
    size_t n;
    curl_url_get(u, CURLUPART_PATH, &p, 0);
    curl_url_get(u, CURLUPART_QUERY, &q, 0);
    n = (p ? strlen(p) : 1) + (q ? strlen(q) + 1 : 0) + 1;
    *path = malloc(n);
    if (*path == NULL) {
      if (key) { free(*key); *key = NULL; }
      goto done;
    }
    snprintf(*path, n, "%s%s%s", p ? p : "/", q ? "?" : "", q ? q : "");
  }
  *norm = concur_fetch_strdup(full);
  if (*norm == NULL) {
    if (key) { free(*key); *key = NULL; }
    if (path) { free(*path); *path = NULL; }
    goto done;
  }
  rc = CONCUR_FETCH_OK;
done:
  curl_free(scheme); curl_free(hostn); curl_free(port); curl_free(full);
  curl_free(p); curl_free(q);
  curl_url_cleanup(u);
  return rc;
}

int concur_fetch_checkurl (const char *url, char *err, size_t errlen) {
  char *norm = NULL;
  int rc = concur_fetch_parseurl(url, &norm, NULL, NULL, err, errlen);
  free(norm);
  return rc;
}


/* ---- joining, normalising, parsing ---------------------------------------- */

/*
** The bytes of a reference as a browser takes them from an href (the URL
** standard's basic parsing): blanks and controls at either end dropped,
** tabs and line breaks inside removed, and what may not appear in a URL
** percent-encoded (controls, space, DEL, bytes above 127, and " < > \ ^ `
** { | }). NULL when out of memory.
*/
static char *clean (const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s), i = 0, len;
  char *out, *o;
  while (i < n && (unsigned char)s[i] <= ' ') i++;
  while (n > i && (unsigned char)s[n - 1] <= ' ') n--;
  len = n - i;
  if ((out = malloc(len * 3 + 1)) == NULL) return NULL;
  o = out;
  for (; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\t' || c == '\n' || c == '\r') continue;
    if (c <= ' ' || c >= 0x7f || strchr("\"<>\\^`{|}", c)) {
      *o++ = '%';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
    else *o++ = (char)c;
  }
  *o = '\0';
  return out;
}

static int ishex (int c) { return isxdigit(c); }
static int hexval (int c) { return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10; }

static int unreserved (int c) {
  return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Normalises the percent-escapes of 'p': unreserved characters decoded,
** the others in upper case, a '%' that starts no escape written "%25" (so
** that decoding never makes a new escape); returns the result (malloc'd:
** it may grow) and sets *dots when a '.' was decoded (the dot segments
** must be looked at again); NULL when out of memory. */
static char *percent_normalize (const char *p, int *dots) {
  char *out = malloc(strlen(p) * 3 + 1), *o = out;
  *dots = 0;
  if (out == NULL) return NULL;
  while (*p) {
    if (p[0] == '%' && ishex((unsigned char)p[1]) &&
        ishex((unsigned char)p[2])) {
      int c = hexval((unsigned char)p[1]) * 16 + hexval((unsigned char)p[2]);
      if (unreserved(c)) {
        *o++ = (char)c;
        *dots |= (c == '.');
      }
      else {
        *o++ = '%';
        *o++ = (char)toupper((unsigned char)p[1]);
        *o++ = (char)toupper((unsigned char)p[2]);
      }
      p += 3;
    }
    else if (*p == '%') {
      memcpy(o, "%25", 3);
      o += 3;
      p++;
    }
    else *o++ = *p++;
  }
  *o = '\0';
  return out;
}

/*
** u must be an http or https URL with a host name (letters, digits and
** - . _ ~) or an IPv6 literal: what else libcurl lets through (escapes it
** decoded in the host) would not parse again. EARG (with a message) if not.
*/
static int check_scheme (CURLU *u, const char *url, char *err,
                         size_t errlen) {
  char *scheme = NULL, *hn = NULL;
  int rc = CONCUR_FETCH_OK;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
    concur_fetch_seterr(err, errlen, "unsupported URL scheme '%s' in '%s' "
                        "(only http and https)", scheme ? scheme : "", url);
    rc = CONCUR_FETCH_EARG;
  }
  else if (curl_url_get(u, CURLUPART_HOST, &hn, 0) != CURLUE_OK ||
           hn[0] == '\0') {
    concur_fetch_seterr(err, errlen, "malformed URL '%s' (no host)", url);
    rc = CONCUR_FETCH_EARG;
  }
  else
    for (const char *c = hn; *c; c++)
      if (!isalnum((unsigned char)*c) && !strchr("-._~", *c) &&
          !(hn[0] == '[' && strchr("[]:", *c))) {
        concur_fetch_seterr(err, errlen, "malformed URL '%s' (bad host "
                            "name)", url);
        rc = CONCUR_FETCH_EARG;
        break;
      }
  curl_free(scheme);
  curl_free(hn);
  return rc;
}

/* Sets u to 'url' (cleaned); EARG with libcurl's reason when malformed. */
static int seturl (CURLU *u, const char *url, char *err, size_t errlen) {
  char *c;
  CURLUcode uc;
  if (strlen(url) > CONCUR_URL_MAX) {
    concur_fetch_seterr(err, errlen, "URL too long");
    return CONCUR_FETCH_EARG;
  }
  if ((c = clean(url)) == NULL) return CONCUR_FETCH_ENOMEM;
  uc = curl_url_set(u, CURLUPART_URL, c, CURLU_NON_SUPPORT_SCHEME);
  free(c);
  if (uc == CURLUE_OUT_OF_MEMORY) return CONCUR_FETCH_ENOMEM;
  if (uc != CURLUE_OK) {
    concur_fetch_seterr(err, errlen, "malformed URL '%s' (%s)", url,
                        curl_url_strerror(uc));
    return CONCUR_FETCH_EARG;
  }
  return CONCUR_FETCH_OK;
}

/* RFC 3986 section 5.2.4: removes the dot segments of an absolute path,
** in place (the output never grows). */
static void remove_dots (char *path) {
  char *in = path, *out = path;
  while (*in) {
    if (strncmp(in, "/./", 3) == 0) in += 2;
    else if (strcmp(in, "/.") == 0) in[1] = '\0';
    else if (strncmp(in, "/../", 4) == 0 || strcmp(in, "/..") == 0) {
      in += 3;
      if (*in == '\0') *--in = '/';   /* "/.." -> "/" */
      while (out > path && *--out != '/') {}
    }
    else {
      do *out++ = *in++; while (*in && *in != '/');
    }
  }
  *out = '\0';
  if (out == path) strcpy(path, "/");
}

/* Writes the canonical form of u (an http(s) URL) to *out. */
static int canonical (CURLU *u, char **out, char *err, size_t errlen) {
  char *scheme = NULL, *user = NULL, *pw = NULL, *hn = NULL, *port = NULL;
  char *path = NULL, *query = NULL, *npath = NULL;
  int rc = CONCUR_FETCH_ENOMEM;
  strbuf b = {NULL, 0, 0};
  if (curl_url_get(u, CURLUPART_HOST, &hn, 0) != CURLUE_OK ||
      hn[0] == '\0') {
    concur_fetch_seterr(err, errlen, "malformed URL (no host)");
    rc = CONCUR_FETCH_EARG;
    goto done;
  }
  for (char *c = hn; *c; c++) *c = (char)tolower((unsigned char)*c);
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) goto done;
  curl_url_get(u, CURLUPART_USER, &user, 0);
  curl_url_get(u, CURLUPART_PASSWORD, &pw, 0);
  curl_url_get(u, CURLUPART_PORT, &port, 0);   /* NULL: none given */
  curl_url_get(u, CURLUPART_PATH, &path, 0);
  curl_url_get(u, CURLUPART_QUERY, &query, 0);   /* "": as none (as */
  if (path) {   /* libcurl) */
    int dots;
    if ((npath = percent_normalize(path, &dots)) == NULL) goto done;
    if (dots) remove_dots(npath);
  }
  if (port && strcmp(port, strcmp(scheme, "https") == 0 ? "443" : "80") == 0)
    port[0] = '\0';
  if (concur_fetch_sbadd(&b, scheme, strlen(scheme)) ||
      concur_fetch_sbadd(&b, "://", 3) ||
      (user && (concur_fetch_sbadd(&b, user, strlen(user)) ||
                (pw && (concur_fetch_sbadd(&b, ":", 1) ||
                        concur_fetch_sbadd(&b, pw, strlen(pw)))) ||
                concur_fetch_sbadd(&b, "@", 1))) ||
      concur_fetch_sbadd(&b, hn, strlen(hn)) ||
      (port && port[0] && (concur_fetch_sbadd(&b, ":", 1) ||
                           concur_fetch_sbadd(&b, port, strlen(port)))) ||
      concur_fetch_sbadd(&b, npath && npath[0] ? npath : "/",
                         npath && npath[0] ? strlen(npath) : 1) ||
      (query && query[0] && (concur_fetch_sbadd(&b, "?", 1) ||
                 concur_fetch_sbadd(&b, query, strlen(query)))))
    goto done;
  *out = b.p;
  b.p = NULL;
  rc = CONCUR_FETCH_OK;
done:
  concur_fetch_sbfree(&b);
  curl_free(scheme); curl_free(user); curl_free(pw); curl_free(hn);
  curl_free(port); curl_free(path); curl_free(query);
  free(npath);
  return rc;
}

/*
** NOTE: libcurl rewrites an IPv4 address in a short or numeric form
** ("3.9", "0x7f.1") when it parses the host, but not when the host arrived
** percent-encoded ("3%2e9"): such a canonical form would change when read
** again. So a host made of digits, dots and hex letters alone is read
** again, which makes normalising idempotent.
*/
/* Is the host at h (up to '/' or ':') an IPv4 address in dotted-decimal
** form, as libcurl writes one (four numbers up to 255, no leading zero)? */
static int dotted_quad (const char *h) {
  int parts = 0;
  for (;;) {
    int v = 0, digits = 0;
    while (isdigit((unsigned char)*h) && digits < 4) {
      v = v * 10 + (*h++ - '0');
      digits++;
    }
    if (digits == 0 || digits > 3 || v > 255 ||
        (digits > 1 && h[-digits] == '0'))
      return 0;
    parts++;
    if (*h != '.') break;
    h++;
  }
  return parts == 4 && (*h == '/' || *h == ':');
}

static int canonical_stable (CURLU *u, char **out, char *err, size_t errlen) {
  int rc = canonical(u, out, err, errlen);
  const char *h;
  CURLU *v;
  char *again = NULL;
  if (rc != CONCUR_FETCH_OK) return rc;
  h = strstr(*out, "://") + 3;
  if (strchr(h, '@') && strchr(h, '@') < strchr(h, '/')) h = strchr(h, '@') + 1;
  if (dotted_quad(h)) return rc;   /* already as libcurl writes it */
  for (const char *c = h; *c != '/' && *c != ':'; c++)
    if (!isxdigit((unsigned char)*c) && *c != '.' && *c != 'x') return rc;
  if ((v = curl_url()) == NULL) goto oom;
  rc = seturl(v, *out, err, errlen);
  if (rc == CONCUR_FETCH_OK) rc = canonical(v, &again, err, errlen);
  curl_url_cleanup(v);
  free(*out);
  *out = again;
  return rc;
oom:
  free(*out);
  *out = NULL;
  return CONCUR_FETCH_ENOMEM;
}

int concur_fetch_urlnormalize (const char *url, char **out, char *err,
                               size_t errlen) {
  CURLU *u = curl_url();
  int rc;
  if (u == NULL) return CONCUR_FETCH_ENOMEM;
  rc = seturl(u, url, err, errlen);
  if (rc == CONCUR_FETCH_OK) rc = check_scheme(u, url, err, errlen);
  if (rc == CONCUR_FETCH_OK) rc = canonical_stable(u, out, err, errlen);
  curl_url_cleanup(u);
  return rc;
}

/*
** NOTE: libcurl 7.88 resolves the same-document references "" and "#frag"
** against the base's directory (RFC 3986 section 5.4 wants the base itself,
** its query kept), so those two never reach it: the base, without its
** fragment, plus the new one.
*/
int concur_fetch_urljoin (const char *base, const char *ref, int normalize,
                          char **out, int *bad, char *err, size_t errlen) {
  CURLU *u = curl_url();
  char *c = NULL, *full = NULL;
  int rc, dummy;
  if (bad == NULL) bad = &dummy;
  *bad = 1;
  if (u == NULL) return CONCUR_FETCH_ENOMEM;
  rc = seturl(u, base, err, errlen);
  if (rc == CONCUR_FETCH_OK) rc = check_scheme(u, base, err, errlen);
  if (rc != CONCUR_FETCH_OK) goto done;
  *bad = 2;
  rc = CONCUR_FETCH_ENOMEM;
  if ((c = clean(ref)) == NULL) goto done;
  if (c[0] == '\0' || c[0] == '#') {
    if (curl_url_set(u, CURLUPART_FRAGMENT, c[0] ? c + 1 : NULL, 0)
        != CURLUE_OK)
      goto done;
  }
  else {
    CURLUcode uc;
    if (strlen(c) > CONCUR_URL_MAX) {
      concur_fetch_seterr(err, errlen, "URL too long");
      rc = CONCUR_FETCH_EARG;
      goto done;
    }
    uc = curl_url_set(u, CURLUPART_URL, c, CURLU_NON_SUPPORT_SCHEME);
    if (uc == CURLUE_OUT_OF_MEMORY) goto done;
    if (uc != CURLUE_OK) {
      concur_fetch_seterr(err, errlen, "cannot join '%s' to '%s' (%s)", ref,
                          base, curl_url_strerror(uc));
      rc = CONCUR_FETCH_EARG;
      goto done;
    }
    if ((rc = check_scheme(u, ref, err, errlen)) != CONCUR_FETCH_OK)
      goto done;
    rc = CONCUR_FETCH_ENOMEM;
  }
  if (normalize) rc = canonical_stable(u, out, err, errlen);
  else if (curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK &&
           (*out = concur_fetch_strdup(full)) != NULL)
    rc = CONCUR_FETCH_OK;
done:
  free(c);
  curl_free(full);
  curl_url_cleanup(u);
  return rc;
}

/* NOTE: libcurl 7.88's curl_url_dup drops an IPv6 zone id ("[fe80::1%25
** eth0]"), so a base with one is parsed again for every reference. */
struct concur_urlbase {
  CURLU *u;
  char *zoned;   /* the base, when it has a zone id; else NULL */
};

concur_urlbase *concur_fetch_urlbase_new (const char *base) {
  concur_urlbase *b = calloc(1, sizeof *b);
  char *zone = NULL;
  if (b == NULL || (b->u = curl_url()) == NULL ||
      seturl(b->u, base, NULL, 0) != CONCUR_FETCH_OK ||
      check_scheme(b->u, base, NULL, 0) != CONCUR_FETCH_OK)
    goto fail;
  if (curl_url_get(b->u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) {
    curl_free(zone);
    if ((b->zoned = concur_fetch_strdup(base)) == NULL) goto fail;
  }
  return b;
fail:
  concur_fetch_urlbase_free(b);
  return NULL;
}

void concur_fetch_urlbase_free (concur_urlbase *b) {
  if (b == NULL) return;
  curl_url_cleanup(b->u);
  free(b->zoned);
  free(b);
}

/* As concur_fetch_urljoin, on a copy of the parsed base. */
int concur_fetch_urljoin_base (concur_urlbase *b, const char *ref,
                               int normalize, char **out) {
  CURLU *u;
  char *c = NULL, *full = NULL;
  int rc = CONCUR_FETCH_ENOMEM;
  if (b->zoned)
    return concur_fetch_urljoin(b->zoned, ref, normalize, out, NULL, NULL, 0);
  if ((u = curl_url_dup(b->u)) == NULL || (c = clean(ref)) == NULL)
    goto done;
  if (c[0] == '\0' || c[0] == '#') {   /* see concur_fetch_urljoin */
    if (curl_url_set(u, CURLUPART_FRAGMENT, c[0] ? c + 1 : NULL, 0)
        != CURLUE_OK)
      goto done;
  }
  else {
    CURLUcode uc;
    if (strlen(c) > CONCUR_URL_MAX) {
      rc = CONCUR_FETCH_EARG;
      goto done;
    }
    uc = curl_url_set(u, CURLUPART_URL, c, CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
      if (uc != CURLUE_OUT_OF_MEMORY) rc = CONCUR_FETCH_EARG;
      goto done;
    }
    if ((rc = check_scheme(u, ref, NULL, 0)) != CONCUR_FETCH_OK) goto done;
    rc = CONCUR_FETCH_ENOMEM;
  }
  if (normalize) rc = canonical_stable(u, out, NULL, 0);
  else if (curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK &&
           (*out = concur_fetch_strdup(full)) != NULL)
    rc = CONCUR_FETCH_OK;
done:
  free(c);
  curl_free(full);
  curl_url_cleanup(u);
  return rc;
}

int concur_fetch_urlparse (const char *url, concur_urlparts *parts,
                           char *err, size_t errlen) {
  CURLU *u = curl_url();
  char *port = NULL;
  int rc;
  memset(parts, 0, sizeof *parts);
  parts->port = -1;
  if (u == NULL) return CONCUR_FETCH_ENOMEM;
  rc = seturl(u, url, err, errlen);
  if (rc == CONCUR_FETCH_OK) {
    /* NOTE: a part that is absent leaves its pointer NULL */
    curl_url_get(u, CURLUPART_SCHEME, &parts->scheme, 0);
    curl_url_get(u, CURLUPART_USER, &parts->user, 0);
    curl_url_get(u, CURLUPART_PASSWORD, &parts->password, 0);
    curl_url_get(u, CURLUPART_HOST, &parts->host, 0);
    curl_url_get(u, CURLUPART_PATH, &parts->path, 0);
    curl_url_get(u, CURLUPART_QUERY, &parts->query, 0);
    curl_url_get(u, CURLUPART_FRAGMENT, &parts->fragment, 0);
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
        CURLUE_OK)
      parts->port = strtol(port, NULL, 10);
    if (parts->host)
      for (char *c = parts->host; *c; c++) *c = (char)tolower((unsigned char)*c);
    curl_free(port);
  }
  curl_url_cleanup(u);
  return rc;
}

void concur_fetch_urlparts_free (concur_urlparts *p) {
  curl_free(p->scheme); curl_free(p->user); curl_free(p->password);
  curl_free(p->host); curl_free(p->path); curl_free(p->query);
  curl_free(p->fragment);
  memset(p, 0, sizeof *p);
}
