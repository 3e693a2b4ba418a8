/*
** fetch_url.h: URLs as concur.fetch sees them, by libcurl's URL API (CURLU),
** no Lua: joined to a base (RFC 3986 section 5), split into parts, and put
** in the canonical form the crawler de-duplicates on. Only http and https
** URLs come out of join and normalize (only those are ever fetched).
** Results are malloc'd; errors are CONCUR_FETCH_EARG (a message in err) or
** CONCUR_FETCH_ENOMEM.
*/
#ifndef CONCUR_CORE_FETCH_URL_H
#define CONCUR_CORE_FETCH_URL_H

#include <stddef.h>
#include "fetch_engine.h"

/* The longest URL taken, in bytes. */
#define CONCUR_URL_MAX 65536

/* The absolute URL of reference 'ref' on the page at 'base' (an absolute
** http(s) URL), as a browser resolves an href: surrounding blanks dropped,
** tabs and line breaks removed, spaces, controls and non-ASCII bytes
** percent-encoded. With 'normalize', in canonical form (see below). On
** EARG, *bad (when not NULL) is 1 when base is at fault, 2 when ref is. */
int concur_fetch_urljoin (const char *base, const char *ref, int normalize,
                          char **out, int *bad, char *err, size_t errlen);

/* A base URL parsed once, for joining many references to it (a page's
** links): concur_fetch_urljoin's answers, without parsing the base again
** for each. new() returns NULL for a base that is not an absolute http(s)
** URL, or when out of memory. */
typedef struct concur_urlbase concur_urlbase;
concur_urlbase *concur_fetch_urlbase_new (const char *base);
int concur_fetch_urljoin_base (concur_urlbase *b, const char *ref,
                               int normalize, char **out);
void concur_fetch_urlbase_free (concur_urlbase *b);

/* The canonical form of an http(s) URL: scheme and host in lower case, the
** default port dropped, dot segments removed, in the path percent-escapes
** in upper case and unreserved characters decoded, an empty path "/", no
** fragment; the query as it is. */
int concur_fetch_urlnormalize (const char *url, char **out, char *err,
                               size_t errlen);

/* A URL's parts (any scheme libcurl parses); absent parts are NULL, port
** is the given one or the scheme's default (-1: none known). */
typedef struct concur_urlparts {
  char *scheme, *user, *password, *host, *path, *query, *fragment;
  long port;
} concur_urlparts;

int concur_fetch_urlparse (const char *url, concur_urlparts *parts,
                           char *err, size_t errlen);
void concur_fetch_urlparts_free (concur_urlparts *parts);

#endif
