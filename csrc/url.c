/*
** url.c: the Lua binding of concur.fetch's URL functions (core/fetch_url.c):
** core.url.join, core.url.parse and core.url.normalize, which concur.fetch
** exports as fetch.urljoin, fetch.urlparse and fetch.urlnormalize.
**
** Every string reaches C whole or not at all: a NUL byte inside one raises
** kind "argument" (C would see only what comes before it).
*/
#include <stdlib.h>
#include <string.h>
#include "concur.h"
#include "core/fetch_url.h"

/* The string at 'arg', refused when it holds a NUL byte. */
static const char *checkurl (lua_State *L, int arg) {
  size_t len;
  const char *s = concur_checklstring(L, arg, &len);
  if (strlen(s) != len) concur_argerror(L, arg, "URL contains a NUL byte");
  return s;
}

/* Pushes the result of a URL function: the malloc'd string, or raises. */
static int pushresult (lua_State *L, int rc, char *out, const char *err,
                       int arg) {
  switch (rc) {
    case CONCUR_FETCH_OK:
      lua_pushstring(L, out);   /* NOTE: may raise: out leaks then (only */
      free(out);                /* out of memory in Lua itself) */
      return 1;
    case CONCUR_FETCH_EARG: return concur_argerror(L, arg, err);
    default: return concur_error(L, "limit", "out of memory");
  }
}

/*** fetch.urljoin(base, ref [, normalize]) --> the absolute URL of ref on
** the page at base (RFC 3986 section 5, by libcurl's URL API; blanks around
** ref dropped, spaces and non-ASCII bytes percent-encoded, as browsers do);
** with normalize true, in the canonical form of fetch.urlnormalize. Raises
** kind "argument" when base is not an absolute http(s) URL, or the result
** would not be one (`mailto:x`, `ftp://...`, `g:h`). */
static int url_join (lua_State *L) {
  const char *base = checkurl(L, 1), *ref = checkurl(L, 2);
  int normalize = lua_toboolean(L, 3);
  char err[512], *out = NULL;
  int bad;
  int rc = concur_fetch_urljoin(base, ref, normalize, &out, &bad, err,
                                sizeof err);
  return pushresult(L, rc, out, err, bad);
}

/*** fetch.urlnormalize(url) --> the canonical form of an http(s) URL, the
** one the crawler de-duplicates on: scheme and host in lower case, the
** default port dropped, dot segments removed, percent-escapes in upper
** case and unreserved characters decoded in the path, empty path "/", no
** fragment, the query as it is. Raises kind "argument" for anything else. */
static int url_normalize (lua_State *L) {
  const char *url = checkurl(L, 1);
  char err[512], *out = NULL;
  int rc = concur_fetch_urlnormalize(url, &out, err, sizeof err);
  return pushresult(L, rc, out, err, 1);
}

static void setpart (lua_State *L, const char *name, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, name);
}

/*** fetch.urlparse(url) --> { scheme, user, password, host, port, path,
** query, fragment }: the parts present (host in lower case; port an
** integer, the scheme's default when the URL names none). Raises kind
** "argument" for a URL libcurl cannot parse. */
static int url_parse (lua_State *L) {
  const char *url = checkurl(L, 1);
  char err[512];
  concur_urlparts p;
  int rc = concur_fetch_urlparse(url, &p, err, sizeof err);
  if (rc != CONCUR_FETCH_OK) {
    concur_fetch_urlparts_free(&p);
    return pushresult(L, rc, NULL, err, 1);
  }
  /* NOTE: a memory error below leaks the parts; nothing else can raise */
  lua_createtable(L, 0, 8);
  setpart(L, "scheme", p.scheme);
  setpart(L, "user", p.user);
  setpart(L, "password", p.password);
  setpart(L, "host", p.host);
  setpart(L, "path", p.path);
  setpart(L, "query", p.query);
  setpart(L, "fragment", p.fragment);
  if (p.port >= 0) {
    lua_pushinteger(L, p.port);
    lua_setfield(L, -2, "port");
  }
  concur_fetch_urlparts_free(&p);
  return 1;
}

static const luaL_Reg url_funcs[] = {
  {"join", url_join},
  {"normalize", url_normalize},
  {"parse", url_parse},
  {NULL, NULL}
};

void concur_url_open (lua_State *L) {
  luaL_newlib(L, url_funcs);
  lua_setfield(L, -2, "url");
}
