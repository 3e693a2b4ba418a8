/*
** html.c: the Lua binding of HTML documents (core/html.c, on libxml2's HTML
** parser): core.html.parse, which concur.fetch exports as fetch.html, the
** Response method resp:html(), and two types:
**   concur.html.Document  a parsed page: title, links, find_all, xpath,
**                         text, robots; fields url and base
**   concur.html.Element   an element of one: tag, attrs, text, find_all,
**                         xpath, attr
** A Document owns its xmlDoc (freed by __gc or close); an Element holds its
** Document as its user value, so the tree lives as long as any of its
** elements does. Neither crosses to another state (the codec refuses them):
** a ThreadPool task parses the page itself, from the Response.
**
** Strings come from libxml2 in UTF-8. Every string handed to C is checked
** for NUL bytes (kind "argument"); a body over the size cap raises kind
** "limit"; malformed HTML never raises.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <libxml/encoding.h>
#include "concur.h"
#include "core/html.h"
#include "core/crawl_frontier.h"
#include "core/crawl_seen.h"
#include "core/wire.h"
#include "core/fetch_url.h"

#define DOCUMENT "concur.html.Document"
#define ELEMENT "concur.html.Element"
#define DEFAULT_MAX (16 * 1024 * 1024)

typedef struct document { concur_html *h; } document;
typedef struct element { xmlNodePtr node; } element;

/* ---- checks ------------------------------------------------------------------ */

static const char *checkcstring (lua_State *L, int arg, size_t *len) {
  size_t n;
  const char *s = concur_checklstring(L, arg, &n);
  if (strlen(s) != n) concur_argerror(L, arg, "string contains a NUL byte");
  if (len) *len = n;
  return s;
}

/* The Document or Element userdata at 'arg' (kind "argument" if not). */
static void *checkud (lua_State *L, int arg, const char *tname) {
  void *u = luaL_testudata(L, arg, tname);
  if (u == NULL) concur_typeerror(L, arg, tname);
  return u;
}

/* The open document at 'arg'. */
static concur_html *checkdoc (lua_State *L, int arg) {
  document *d = luaL_testudata(L, arg, DOCUMENT);
  if (d == NULL) concur_typeerror(L, arg, DOCUMENT);
  if (d->h == NULL) concur_error(L, "closed", "the HTML document is closed");
  return d->h;
}

/* The element at 'arg', its document open; pushes nothing. */
static xmlNodePtr checkel (lua_State *L, int arg) {
  element *e = luaL_testudata(L, arg, ELEMENT);
  document *d;
  if (e == NULL) concur_typeerror(L, arg, ELEMENT);
  lua_getiuservalue(L, arg, 1);
  d = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (d == NULL || d->h == NULL)
    concur_error(L, "closed", "the HTML document of this element is closed");
  return e->node;
}

/* The node that 'arg' (a Document or an Element) stands for, and (pushed)
** the Document userdata that owns it. */
static xmlNodePtr checknode (lua_State *L, int arg) {
  if (luaL_testudata(L, arg, ELEMENT)) {
    xmlNodePtr n = checkel(L, arg);
    lua_getiuservalue(L, arg, 1);
    return n;
  }
  if (luaL_testudata(L, arg, DOCUMENT)) {
    xmlNodePtr n = (xmlNodePtr)checkdoc(L, arg)->doc;
    lua_pushvalue(L, arg);
    return n;
  }
  concur_typeerror(L, arg, DOCUMENT " or " ELEMENT);
  return NULL;
}

/* Pushes an element for node n of the document userdata at 'docidx'. */
static void pushel (lua_State *L, xmlNodePtr n, int docidx) {
  element *e;
  docidx = lua_absindex(L, docidx);
  e = lua_newuserdatauv(L, sizeof *e, 1);
  e->node = n;
  luaL_setmetatable(L, ELEMENT);
  lua_pushvalue(L, docidx);
  lua_setiuservalue(L, -2, 1);
}

/* Pushes a string libxml2 or core/html.c made (malloc'd: freed here); nil
** for NULL. */
static void pushfree (lua_State *L, char *s) {
  if (s == NULL) lua_pushnil(L);
  else lua_pushstring(L, s);   /* NOTE: a memory error here leaks s */
  free(s);
}

static void pushxml (lua_State *L, xmlChar *s) {
  if (s == NULL) lua_pushnil(L);
  else lua_pushstring(L, (const char *)s);
  xmlFree(s);
}

/* ---- parsing ----------------------------------------------------------------- */

static const char *const PARSE_OPTS[] = { "max_size", "encoding", NULL };

/* A known encoding name, or NULL (libxml2 then reads the page's own). */
static const char *known_encoding (const char *name) {
  xmlCharEncodingHandlerPtr h;
  if (name == NULL || name[0] == '\0') return NULL;
  if ((h = xmlFindCharEncodingHandler(name)) == NULL) return NULL;
  xmlCharEncCloseFunc(h);
  return name;
}

/* Parses body into a new Document userdata (pushed). */
static int newdoc (lua_State *L, const char *body, size_t len,
                   const char *url, const char *encoding, lua_Integer max) {
  document *d = lua_newuserdatauv(L, sizeof *d, 0);
  int rc;
  d->h = NULL;   /* closed until parsed: an error leaves it consistent */
  luaL_setmetatable(L, DOCUMENT);
  rc = concur_html_parse(body, len, url, known_encoding(encoding),
                         (size_t)max, &d->h);
  if (rc == CONCUR_HTML_ELIMIT)
    return concur_error(L, "limit", "HTML body of %d bytes is over the "
                        "size cap (max_size = %d)", (int)len, (int)max);
  if (rc != CONCUR_HTML_OK) return concur_error(L, "limit", "out of memory");
  return 1;
}

/*** fetch.html(body [, url [, opts]]) --> a Document: the page parsed by
** libxml2's HTML parser, with recovery (malformed HTML never raises) and
** nothing loaded from the network or files. url: the page's address, which
** links are resolved against (with its <base href>). opts: max_size
** (bytes, 16 MiB: a larger body raises kind "limit"), encoding (when the
** page does not say). */
static int html_parse (lua_State *L) {
  size_t len;
  const char *body = concur_checklstring(L, 1, &len);
  const char *url = lua_isnoneornil(L, 2) ? NULL : checkcstring(L, 2, NULL);
  const char *encoding = NULL;
  lua_Integer max = DEFAULT_MAX;
  if (!lua_isnoneornil(L, 3)) {
    concur_checktype(L, 3, LUA_TTABLE);
    concur_checkoptions(L, 3, PARSE_OPTS);
    max = concur_optinteger(L, 3, "max_size", max, 0);
    encoding = concur_optcstring(L, 3, "encoding");   /* (anchored) */
  }
  return newdoc(L, body, len, url, encoding, max);
}

/* The charset of a Content-Type value into buf ("" when none). */
static void charset (const char *ct, char *buf, size_t size) {
  const char *p = ct ? strstr(ct, "charset=") : NULL;
  size_t n = 0;
  buf[0] = '\0';
  if (p == NULL) return;
  p += 8;
  if (*p == '"') p++;
  while (p[n] && p[n] != '"' && p[n] != ';' && p[n] != ' ' && n + 1 < size) {
    buf[n] = p[n];
    n++;
  }
  buf[n] = '\0';
}

/*** resp:html([opts]) --> a Document of the Response's body, its links
** resolved against resp.url; the charset of its Content-Type is used when
** libxml2 knows it. opts as fetch.html. */
int concur_html_response (lua_State *L) {
  size_t len;
  const char *body, *url = NULL;
  char cs[64];
  lua_Integer max = DEFAULT_MAX;
  concur_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_getfield(L, 1, "body") != LUA_TSTRING)
    return concur_error(L, "argument", "the response has no body");
  body = lua_tolstring(L, 3, &len);
  if (lua_getfield(L, 1, "url") == LUA_TSTRING) {
    size_t n;
    url = lua_tolstring(L, 4, &n);
    if (strlen(url) != n) url = NULL;
  }
  cs[0] = '\0';
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE &&
      lua_getfield(L, 5, "content-type") == LUA_TSTRING)
    charset(lua_tostring(L, 6), cs, sizeof cs);
  if (!lua_isnil(L, 2)) {
    concur_checktype(L, 2, LUA_TTABLE);
    concur_checkoptions(L, 2, PARSE_OPTS);
    max = concur_optinteger(L, 2, "max_size", max, 0);
  }
  return newdoc(L, body, len, url, cs, max);
}

/* ---- scans (no tree) ----------------------------------------------------------- */

/* Pushes the scan's links joined to its base (canonical with 'normalize')
** as an array of { url, nofollow }. */
static void pushscanlinks (lua_State *L, concur_html_scan *s, int normalize) {
  concur_urlbase *base = s->base ? concur_fetch_urlbase_new(s->base) : NULL;
  lua_Integer k = 0;
  if (s->base && base == NULL) {
    concur_html_scan_free(s);
    concur_error(L, "limit", "out of memory");
  }
  lua_createtable(L, (int)s->n, 0);
  for (size_t i = 0; i < s->n; i++) {
    char *url = NULL;
    const char *href = concur_html_scan_href(s, i);
    if ((base ? concur_fetch_urljoin_base(base, href, normalize, &url)
              : concur_fetch_urljoin(href, "", normalize, &url, NULL, NULL, 0))
        != CONCUR_FETCH_OK)
      continue;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, url);   /* NOTE: a memory error here leaks url */
    free(url);
    lua_setfield(L, -2, "url");
    lua_pushboolean(L, s->links[i].nofollow);
    lua_setfield(L, -2, "nofollow");
    lua_rawseti(L, -2, ++k);
  }
  concur_fetch_urlbase_free(base);
}

/*** core.html.scan(body [, url [, opts]]) --> { title, noindex, nofollow,
** base, links = array of { url, nofollow } }: what a Document would say
** of the page (title(), robots(opts.agent), base, links() without text or
** rel; with opts.normalize, the URLs canonical as core.html.follow gives
** them), read from the parser's events without building a tree. opts:
** max_size, encoding (as fetch.html), agent, normalize */
static int html_scan (lua_State *L) {
  static const char *const OPTS[] = { "max_size", "encoding", "agent",
                                      "normalize", NULL };
  size_t len;
  const char *body = concur_checklstring(L, 1, &len);
  const char *url = lua_isnoneornil(L, 2) ? NULL : checkcstring(L, 2, NULL);
  const char *encoding = NULL, *agent = NULL;
  lua_Integer max = DEFAULT_MAX;
  int normalize = 0, rc;
  concur_html_scan s;
  if (!lua_isnoneornil(L, 3)) {
    concur_checktype(L, 3, LUA_TTABLE);
    concur_checkoptions(L, 3, OPTS);
    max = concur_optinteger(L, 3, "max_size", max, 0);
    encoding = concur_optcstring(L, 3, "encoding");   /* (anchored) */
    agent = concur_optcstring(L, 3, "agent");
    lua_getfield(L, 3, "normalize");
    normalize = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  rc = concur_html_scan_page(body, len, url, known_encoding(encoding),
                             (size_t)max, agent, &s);
  if (rc == CONCUR_HTML_ELIMIT)
    return concur_error(L, "limit", "HTML body of %d bytes is over the "
                        "size cap (max_size = %d)", (int)len, (int)max);
  if (rc != CONCUR_HTML_OK) return concur_error(L, "limit", "out of memory");
  lua_createtable(L, 0, 5);
  if (s.title) {
    lua_pushstring(L, s.title);
    lua_setfield(L, -2, "title");
  }
  if (s.base) {
    lua_pushstring(L, s.base);
    lua_setfield(L, -2, "base");
  }
  lua_pushboolean(L, s.noindex);
  lua_setfield(L, -2, "noindex");
  lua_pushboolean(L, s.nofollow);
  lua_setfield(L, -2, "nofollow");
  pushscanlinks(L, &s, normalize);
  lua_setfield(L, -2, "links");
  concur_html_scan_free(&s);
  return 1;
}

/* "host:port" of a canonical http(s) URL (the scheme's port when it names
** none) into buf; its length, 0 when it has none or it does not fit. As
** crawler.lua's hostport. */
static size_t hostport (const char *u, char *buf, size_t size) {
  const char *p = strstr(u, "://"), *auth, *end, *at;
  size_t n, d;
  int https;
  if (p == NULL) return 0;
  https = p - u == 5 && strncmp(u, "https", 5) == 0;
  auth = p + 3;
  end = auth + strcspn(auth, "/");
  at = memchr(auth, '@', (size_t)(end - auth));
  if (at) auth = at + 1;
  n = (size_t)(end - auth);
  for (d = 0; d < n && auth[n - 1 - d] >= '0' && auth[n - 1 - d] <= '9'; d++) ;
  if (n + 5 >= size) return 0;
  memcpy(buf, auth, n);
  if (!(d > 0 && d < n && auth[n - 1 - d] == ':')) {
    memcpy(buf + n, https ? ":443" : ":80", https ? 4 : 3);
    n += https ? 4 : 3;
  }
  buf[n] = '\0';
  return n;
}

/* Is the canonical URL u allowed by the set at index 'set' ("host:port"
** and "host" keys)? The last answer is kept in *last (a host's links come
** together). */
typedef struct allowcache { char hp[300]; size_t len; int yes; } allowcache;

static int allowed (lua_State *L, int set, const char *u, allowcache *c) {
  char hp[300];
  size_t n = hostport(u, hp, sizeof hp), h;
  int yes;
  if (n == 0) return 0;
  if (n == c->len && memcmp(hp, c->hp, n) == 0) return c->yes;
  lua_pushlstring(L, hp, n);
  yes = lua_rawget(L, set) != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!yes) {
    for (h = n; h > 0 && hp[h - 1] != ':'; h--) ;
    if (h > 1) {
      lua_pushlstring(L, hp, h - 1);
      yes = lua_rawget(L, set) != LUA_TNIL && lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
  }
  memcpy(c->hp, hp, n);
  c->len = n;
  c->yes = yes;
  return yes;
}

/*
** The link cache: what joining an href on a page gave, so that the many
** links a crawl meets again (most of a site's links lead to pages seen
** before) are known duplicates without libcurl joining them again. An
** entry is keyed by a 64-bit hash of the href and of what its join
** depends on: nothing for an absolute http(s) URL, the base's scheme and
** authority for a path from the root ("/x"), the base up to its last '/'
** for a relative path ("x", "../x"; RFC 3986 section 5.2.3's merge). Other
** hrefs ("//h/x", "?q", "#f", "", other schemes, ones with blanks or
** controls, which the join cleans) are joined each time. It keeps the
** canonical URL's fingerprint and whether the join gave one and the allow
** set took it (so a cache serves one allow set: one crawler). A hit whose
** URL is in the seen-set is a duplicate; any other is joined.
*/
#define LINKCACHE "concur.html.LinkCache"
#define LC_SIZE 32768   /* entries, a power of 2: 768 KiB */
#define LC_K0 0x636f6e6375722e6cULL   /* "concur.l" */
#define LC_K1 0x696e6b63616368eULL

typedef struct lcentry { uint64_t key, fp; uint32_t flags; } lcentry;
enum { LC_VALID = 1, LC_JOINED = 2, LC_ALLOWED = 4 };

/*** core.html.linkcache() --> a link cache for core.html.crawl (one per
** crawler) */
static int html_linkcache (lua_State *L) {
  lcentry *c = lua_newuserdatauv(L, LC_SIZE * sizeof *c, 0);
  memset(c, 0, LC_SIZE * sizeof *c);
  luaL_setmetatable(L, LINKCACHE);
  return 1;
}

/* The length of what joining href to base depends on (a prefix of base),
** or -1 when the href is not cached. */
static long lc_context (const char *base, const char *href) {
  const char *auth, *end, *q, *p;
  for (p = href; *p; p++)
    if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) return -1;
  if (strncmp(href, "http://", 7) == 0 || strncmp(href, "https://", 8) == 0)
    return 0;
  if (base == NULL || strchr(base, '#') || strchr(base, '[') ||
      (auth = strstr(base, "://")) == NULL)
    return -1;
  auth += 3;
  end = auth + strcspn(auth, "/?");
  if (href[0] == '/') return href[1] == '/' ? -1 : (long)(end - base);
  if (href[0] == '?' || href[0] == '#' || href[0] == '\0') return -1;
  if (href[strcspn(href, ":/?#")] == ':') return -1;   /* a scheme */
  if (*end != '/') return -1;   /* no path: libcurl adds one */
  q = end + strcspn(end, "?");
  while (q > end && q[-1] != '/') q--;
  return (long)(q - base);
}

static uint64_t lc_key (const char *base, long ctx, const char *href) {
  size_t n = strlen(href);
  char stack[512], *buf = stack;
  uint64_t k;
  if ((size_t)ctx + n + 1 > sizeof stack &&
      (buf = malloc((size_t)ctx + n + 1)) == NULL)
    return 0;
  memcpy(buf, base, (size_t)ctx);
  buf[ctx] = '\1';
  memcpy(buf + ctx + 1, href, n);
  k = concur_siphash(LC_K0, LC_K1, buf, (size_t)ctx + n + 1);
  if (buf != stack) free(buf);
  return k ? k : 1;
}

/*** core.html.crawl(resp, frontier, depth, follow, robots, allow
** [, max_depth]) --> title, noindex, nofollow, left_out, followed,
** offsite, too_deep, duplicates: a crawler's reading of a page (a
** Response with an HTML body) and the pushing of its links, in C, with no
** tree and no Lua string per link. The links are scanned as
** core.html.scan does and joined in canonical form; with 'robots', meta
** robots is read (noindex, nofollow) and rel=nofollow links are left out
** (left_out); 'followed' counts the others. Unless follow is false or the
** page says nofollow, those are pushed to the frontier (a fetch.Frontier)
** at 'depth', save the ones whose host:port (or host) is not a key of the
** table 'allow' (offsite) and all when depth > max_depth (too_deep); the
** frontier counts the duplicates. title is nil when the page has none.
** cache: a core.html.linkcache() for the links this crawl meets again. */
/* Scans the Response at index 1 (body, url, the charset of its
** Content-Type) into s; raises on a body over the cap or no memory. */
static void scanresponse (lua_State *L, concur_html_scan *s) {
  size_t len;
  const char *body, *url = NULL;
  char cs[64];
  int rc, top = lua_gettop(L);
  concur_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "body") != LUA_TSTRING)
    concur_error(L, "argument", "the response has no body");
  body = lua_tolstring(L, -1, &len);
  if (lua_getfield(L, 1, "url") == LUA_TSTRING) {
    size_t n;
    url = lua_tolstring(L, -1, &n);
    if (strlen(url) != n) url = NULL;
  }
  cs[0] = '\0';
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE &&
      lua_getfield(L, -1, "content-type") == LUA_TSTRING)
    charset(lua_tostring(L, -1), cs, sizeof cs);
  rc = concur_html_scan_page(body, len, url, known_encoding(cs),
                             DEFAULT_MAX, NULL, s);
  if (rc == CONCUR_HTML_ELIMIT)
    concur_error(L, "limit", "HTML body of %d bytes is over the size cap "
                 "(max_size = %d)", (int)len, DEFAULT_MAX);
  if (rc != CONCUR_HTML_OK) concur_error(L, "limit", "out of memory");
  lua_settop(L, top);   /* (the body stays anchored in the Response) */
}

typedef struct crawlcounts {
  lua_Integer left_out, followed, offsite, deep, dups;
} crawlcounts;

/* The links of s joined to s->base, counted and (when 'follow') pushed to
** f at 'depth' unless the allow set at index 'allow' refuses them or depth
** passes maxdepth (< 0: none). NULL, or the reason it failed. */
static const char *crawllinks (lua_State *L, concur_html_scan *s,
                               concur_frontier *f, lua_Integer depth,
                               int follow, int robots, int allow,
                               lua_Integer maxdepth, lcentry *cache,
                               crawlcounts *c) {
  concur_urlbase *base;
  allowcache ac;
  memset(c, 0, sizeof *c);
  if ((base = s->base ? concur_fetch_urlbase_new(s->base) : NULL) == NULL &&
      s->base)
    return "out of memory";
  ac.len = 0;
  for (size_t i = 0; i < s->n; i++) {
    char *u = NULL;
    const char *href = concur_html_scan_href(s, i);
    lcentry *ce = NULL;
    uint64_t key = 0;
    int yes = -1;   /* allowed: unknown */
    if (cache && base) {
      long ctx = lc_context(s->base, href);
      if (ctx >= 0 && (key = lc_key(s->base, ctx, href)) != 0) {
        ce = &cache[key & (LC_SIZE - 1)];
        if (ce->key == key && (ce->flags & LC_VALID)) {   /* a hit */
          if (!(ce->flags & LC_JOINED)) continue;
          if (robots && s->links[i].nofollow) { c->left_out++; continue; }
          if (!follow) { c->followed++; continue; }
          if (!(ce->flags & LC_ALLOWED)) {
            c->followed++;
            c->offsite++;
            continue;
          }
          if (maxdepth >= 0 && depth > maxdepth) {
            c->followed++;
            c->deep++;
            continue;
          }
          if (concur_frontier_seen_fp(f, ce->fp)) {
            c->followed++;
            c->dups++;
            continue;
          }
          yes = 1;   /* not seen: joined, counted and pushed below */
        }
      }
    }
    if ((base ? concur_fetch_urljoin_base(base, href, 1, &u)
              : concur_fetch_urljoin(href, "", 1, &u, NULL, NULL, 0))
        != CONCUR_FETCH_OK) {
      if (ce) {
        ce->key = key;
        ce->flags = LC_VALID;
      }
      continue;   /* not an http(s) URL: not a link to follow */
    }
    if (ce && yes < 0) {
      /* NOTE: allowed() may raise (memory): u would leak, as pushfree */
      yes = allowed(L, allow, u, &ac);
      ce->key = key;
      ce->fp = concur_seen_fingerprint(u, strlen(u));
      ce->flags = LC_VALID | LC_JOINED | (yes ? LC_ALLOWED : 0);
    }
    if (robots && s->links[i].nofollow) c->left_out++;
    else {
      c->followed++;
      if (follow) {
        if (yes < 0) yes = allowed(L, allow, u, &ac);
        if (!yes) c->offsite++;
        else if (maxdepth >= 0 && depth > maxdepth) c->deep++;
        else {
          int r = concur_frontier_push(f, u, strlen(u), (uint32_t)depth, 0);
          if (r < 0) {
            free(u);
            concur_fetch_urlbase_free(base);
            concur_frontier_flush(f);
            return "out of memory in the frontier";
          }
          if (r == 0) c->dups++;
        }
      }
    }
    free(u);
  }
  concur_fetch_urlbase_free(base);
  if (concur_frontier_flush(f)) return "cannot write the crawl journal";
  return NULL;
}

static int pushcounts (lua_State *L, const crawlcounts *c) {
  lua_pushinteger(L, c->left_out);
  lua_pushinteger(L, c->followed);
  lua_pushinteger(L, c->offsite);
  lua_pushinteger(L, c->deep);
  lua_pushinteger(L, c->dups);
  return 5;
}

/* The arguments crawl and pushlinks share, from index i: frontier, depth,
** follow, robots, allow [, max_depth [, cache]]. */
typedef struct crawlargs {
  concur_frontier *f;
  lua_Integer depth, maxdepth;
  int follow, robots, allow;
  lcentry *cache;
} crawlargs;

static void crawlargs_check (lua_State *L, int i, crawlargs *a) {
  a->f = concur_frontier_checkarg(L, i);
  a->depth = concur_checkinteger(L, i + 1);
  a->follow = lua_toboolean(L, i + 2);
  a->robots = lua_toboolean(L, i + 3);
  concur_checktype(L, i + 4, LUA_TTABLE);
  a->allow = i + 4;
  a->maxdepth = lua_isnoneornil(L, i + 5) ? -1 : concur_checkinteger(L, i + 5);
  a->cache = lua_isnoneornil(L, i + 6) ? NULL : checkud(L, i + 6, LINKCACHE);
  if (a->depth < 0 || a->depth > 0x7fffffff)
    concur_argerror(L, i + 1, "out of range");
}

static int html_crawl (lua_State *L) {
  concur_html_scan s;
  crawlargs a;
  crawlcounts c;
  const char *err;
  crawlargs_check(L, 2, &a);
  lua_settop(L, 8);
  scanresponse(L, &s);
  if (!a.robots) s.noindex = s.nofollow = 0;
  if (s.nofollow) a.follow = 0;
  err = crawllinks(L, &s, a.f, a.depth, a.follow, a.robots, a.allow,
                   a.maxdepth, a.cache, &c);
  if (err) {
    concur_html_scan_free(&s);
    return concur_error(L, "limit", "%s", err);
  }
  if (s.title) lua_pushstring(L, s.title); else lua_pushnil(L);
  lua_pushboolean(L, s.noindex);
  lua_pushboolean(L, s.nofollow);
  concur_html_scan_free(&s);
  return 3 + pushcounts(L, &c);
}

/*** core.html.scanraw(resp) --> title, noindex, nofollow, base, links:
** the first half of core.html.crawl, for another state to do (a pool
** worker): the page scanned, its links unjoined in one string (per link a
** byte, "1" when rel has nofollow, else "0", the href and a NUL). title
** and base are nil when the page has none. */
static int html_scanraw (lua_State *L) {
  concur_html_scan s;
  luaL_Buffer b;
  lua_settop(L, 1);
  scanresponse(L, &s);
  if (s.title) lua_pushstring(L, s.title); else lua_pushnil(L);
  lua_pushboolean(L, s.noindex);
  lua_pushboolean(L, s.nofollow);
  if (s.base) lua_pushstring(L, s.base); else lua_pushnil(L);
  /* NOTE: a memory error in these pushes leaks s */
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < s.n; i++) {
    const char *href = concur_html_scan_href(&s, i);
    luaL_addchar(&b, s.links[i].nofollow ? '1' : '0');
    luaL_addlstring(&b, href, strlen(href) + 1);
  }
  luaL_pushresult(&b);
  concur_html_scan_free(&s);
  return 5;
}

/*** core.html.pushlinks(links, base, frontier, depth, follow, robots,
** allow [, max_depth [, cache]]) --> left_out, followed, offsite,
** too_deep, duplicates: the second half of core.html.crawl, on what
** core.html.scanraw gave (links, base); follow false when the page (or
** its X-Robots-Tag) says nofollow. */
static int html_pushlinks (lua_State *L) {
  size_t len, n = 0;
  const char *blob = concur_checklstring(L, 1, &len);
  const char *base = lua_isnoneornil(L, 2) ? NULL : checkcstring(L, 2, NULL);
  concur_html_scan s;
  crawlargs a;
  crawlcounts c;
  const char *err;
  crawlargs_check(L, 3, &a);
  memset(&s, 0, sizeof s);
  for (size_t i = 0; i < len; i++) if (blob[i] == '\0') n++;
  if (len && blob[len - 1] != '\0')
    return concur_argerror(L, 1, "not what core.html.scanraw gives");
  s.links = lua_newuserdatauv(L, (n ? n : 1) * sizeof *s.links, 0);
  for (size_t i = 0; i < len; ) {   /* flag, href, NUL */
    s.links[s.n].nofollow = blob[i] == '1';
    s.links[s.n++].off = i + 1;
    i += strlen(blob + i) + 1;
  }
  s.buf = (char *)blob;   /* (only read) */
  s.base = (char *)base;
  err = crawllinks(L, &s, a.f, a.depth, a.follow, a.robots, a.allow,
                   a.maxdepth, a.cache, &c);
  if (err) return concur_error(L, "limit", "%s", err);
  return pushcounts(L, &c);
}

/* ---- Document ---------------------------------------------------------------- */

/*** doc:title() --> the <title>'s text, or nil */
static int doc_title (lua_State *L) {
  pushfree(L, concur_html_title(checkdoc(L, 1)));
  return 1;
}

/*** doc:text() --> the visible text of the page (no script, style, head),
** whitespace collapsed, blocks on lines of their own */
static int doc_text (lua_State *L) {
  concur_html *h = checkdoc(L, 1);
  xmlNodePtr root = xmlDocGetRootElement(h->doc);
  xmlNodePtr body = root;
  for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next)
    if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, "body") == 0)
      body = n;
  if (body == NULL) lua_pushliteral(L, "");
  else pushfree(L, concur_html_text(body, 0));
  return 1;
}

/*** doc:robots([agent]) --> { noindex = bool, nofollow = bool }: what
** <meta name="robots"> says (and <meta name=agent>, when agent is given) */
static int doc_robots (lua_State *L) {
  concur_html *h = checkdoc(L, 1);
  const char *agent = lua_isnoneornil(L, 2) ? NULL : checkcstring(L, 2, NULL);
  int noindex, nofollow;
  concur_html_robots(h, agent, &noindex, &nofollow);
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, noindex);
  lua_setfield(L, -2, "noindex");
  lua_pushboolean(L, nofollow);
  lua_setfield(L, -2, "nofollow");
  return 1;
}

/* Pushes the links of h as an array of { url, text, rel, nofollow } (or,
** with 'urls_only', of URLs). */
static int pushlinks (lua_State *L, concur_html *h, int normalize,
                      int urls_only) {
  concur_html_link *v;
  size_t n;
  if (concur_html_links(h, normalize, !urls_only, &v, &n) != CONCUR_HTML_OK)
    return concur_error(L, "limit", "out of memory");
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    if (urls_only) lua_pushstring(L, v[i].url);
    else {
      lua_createtable(L, 0, 4);
      lua_pushstring(L, v[i].url);
      lua_setfield(L, -2, "url");
      lua_pushstring(L, v[i].text ? v[i].text : "");
      lua_setfield(L, -2, "text");
      if (v[i].rel) {
        lua_pushstring(L, v[i].rel);
        lua_setfield(L, -2, "rel");
      }
      lua_pushboolean(L, v[i].nofollow);
      lua_setfield(L, -2, "nofollow");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  concur_html_links_free(v, n);
  return 1;
}

/*** doc:links() --> array of { url, text, rel, nofollow }: every <a href>
** and <area href> in document order, url absolute (resolved against the
** page's URL and its <base href>), nofollow when rel says so; links that
** are not http(s) URLs (mailto:, javascript:, relative ones on a page
** without a URL) are left out */
static int doc_links (lua_State *L) {
  return pushlinks(L, checkdoc(L, 1), 0, 0);
}

/*** core.html.follow(doc [, all]) --> array of the canonical URLs of the
** links (fetch.urlnormalize's form) without rel=nofollow (all of them with
** 'all'), and the number of those left out: what a crawler follows */
static int doc_follow (lua_State *L) {
  concur_html *h = checkdoc(L, 1);
  int all = lua_toboolean(L, 2);
  concur_html_link *v;
  size_t n, k = 0, skipped = 0;
  if (concur_html_links(h, 1, 0, &v, &n) != CONCUR_HTML_OK)
    return concur_error(L, "limit", "out of memory");
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    if (v[i].nofollow && !all) { skipped++; continue; }
    lua_pushstring(L, v[i].url);
    lua_rawseti(L, -2, (lua_Integer)++k);
  }
  concur_html_links_free(v, n);
  lua_pushinteger(L, (lua_Integer)skipped);
  return 2;
}

static int doc_index (lua_State *L) {
  concur_html *h;
  const char *k;
  checkud(L, 1, DOCUMENT);
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "url") == 0) {
    h = checkdoc(L, 1);
    if (h->url) lua_pushstring(L, h->url); else lua_pushnil(L);
    return 1;
  }
  if (k && strcmp(k, "base") == 0) {
    h = checkdoc(L, 1);
    if (h->base) lua_pushstring(L, h->base); else lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/*** doc:close(): frees the tree now (its elements then raise kind
** "closed"); also __close and __gc */
static int doc_close (lua_State *L) {
  document *d = checkud(L, 1, DOCUMENT);
  if (d->h) {
    concur_html *h = d->h;
    d->h = NULL;
    concur_html_free(h);
  }
  return 0;
}

static int doc_tostring (lua_State *L) {
  document *d = checkud(L, 1, DOCUMENT);
  if (d->h == NULL) lua_pushliteral(L, DOCUMENT " (closed)");
  else lua_pushfstring(L, DOCUMENT ": %s", d->h->url ? d->h->url : "(no url)");
  return 1;
}

/* ---- searching (Documents and Elements) -------------------------------------- */

/* Does element n match tag (NULL: any) and every attribute test of the
** table at 'attrs' (0: none)? */
static int matches (lua_State *L, xmlNodePtr n, const char *tag, int attrs) {
  if (n->type != XML_ELEMENT_NODE) return 0;
  if (tag && strcasecmp((const char *)n->name, tag) != 0) return 0;
  if (attrs == 0) return 1;
  lua_pushnil(L);
  while (lua_next(L, attrs)) {
    const char *name = lua_tostring(L, -2);
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    int ok;
    if (lua_type(L, -1) == LUA_TBOOLEAN) ok = (v != NULL) == lua_toboolean(L, -1);
    else {
      const char *want = lua_tostring(L, -1);
      ok = v != NULL && (strcmp((const char *)v, want) == 0 ||
                         (strcmp(name, "class") == 0 &&
                          concur_html_hastoken((const char *)v, want)));
    }
    xmlFree(v);
    lua_pop(L, 1);
    if (!ok) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return 1;
}

/*** x:find_all([tag [, attrs]]) --> array of Elements below x (a Document or
** an Element), in document order: tag (case-insensitive; nil or "*": any),
** attrs a table of name = value (a string: equal, or for "class" one of its
** words; true: present; false: absent) */
static int node_find_all (lua_State *L) {
  xmlNodePtr root;
  lua_settop(L, 3);
  root = checknode(L, 1);   /* pushes the document */
  int docidx = lua_gettop(L), attrs = 0, k = 0;
  const char *tag = NULL;
  if (!lua_isnoneornil(L, 2)) {
    tag = checkcstring(L, 2, NULL);
    if (strcmp(tag, "*") == 0) tag = NULL;
  }
  if (!lua_isnoneornil(L, 3)) {
    concur_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      size_t n;
      const char *name;
      if (lua_type(L, -2) != LUA_TSTRING ||
          strlen(name = lua_tolstring(L, -2, &n)) != n ||
          (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TBOOLEAN))
        return concur_argerror(L, 3, "attrs must map attribute names to "
                               "strings or booleans");
      (void)name;
      lua_pop(L, 1);
    }
    attrs = 3;
  }
  lua_newtable(L);
  for (xmlNodePtr n = root->children, up; n; ) {
    if (matches(L, n, tag, attrs)) {
      pushel(L, n, docidx);
      lua_rawseti(L, -2, ++k);
    }
    if (n->children && n->type == XML_ELEMENT_NODE) { n = n->children; continue; }
    for (up = n; up && up != root && up->next == NULL; up = up->parent) {}
    n = (up == NULL || up == root) ? NULL : up->next;
  }
  return 1;
}

/* Pushes one node of an XPath result: an element as an Element, anything
** else (attribute, text, namespace) as its string value. */
static void pushxnode (lua_State *L, xmlNodePtr n, int docidx) {
  if (n->type == XML_ELEMENT_NODE) pushel(L, n, docidx);
  else if (n->type == XML_NAMESPACE_DECL)
    lua_pushstring(L, (const char *)((xmlNsPtr)n)->href);
  else pushxml(L, xmlXPathCastNodeToString(n));
}

/*** x:xpath(expr) --> the XPath 1.0 result with x (a Document or an Element)
** as the context node: a node-set as an array (elements as Elements,
** attributes and text as strings), or a number, string or boolean. A bad
** expression raises kind "argument". */
static int node_xpath (lua_State *L) {
  const char *expr = checkcstring(L, 2, NULL);
  xmlNodePtr node;
  int docidx;
  lua_settop(L, 2);
  node = checknode(L, 1);
  docidx = lua_gettop(L);
  concur_html *h = ((document *)lua_touserdata(L, docidx))->h;
  char msg[256];
  xmlXPathObjectPtr res = concur_html_xpath(h, node, expr, msg, sizeof msg);
  if (res == NULL && msg[0] == '\0')
    return concur_error(L, "limit", "out of memory");
  if (res == NULL)
    return concur_argerror(L, 2, lua_pushfstring(L, "bad XPath expression "
                           "'%s' (%s)", expr, msg));
  /* NOTE: a memory error while pushing leaks res */
  switch (res->type) {
    case XPATH_NODESET: {
      int n = res->nodesetval ? res->nodesetval->nodeNr : 0;
      lua_createtable(L, n, 0);
      for (int i = 0; i < n; i++) {
        pushxnode(L, res->nodesetval->nodeTab[i], docidx);
        lua_rawseti(L, -2, i + 1);
      }
      break;
    }
    case XPATH_BOOLEAN: lua_pushboolean(L, res->boolval); break;
    case XPATH_NUMBER: {
      double v = res->floatval;
      if (v == (double)(lua_Integer)v && v >= -9e15 && v <= 9e15)
        lua_pushinteger(L, (lua_Integer)v);
      else lua_pushnumber(L, v);
      break;
    }
    case XPATH_STRING:
      lua_pushstring(L, res->stringval ? (const char *)res->stringval : "");
      break;
    default: lua_pushnil(L); break;
  }
  xmlXPathFreeObject(res);
  return 1;
}

/* ---- Element ------------------------------------------------------------------ */

/*** el:text() --> the element's visible text, as doc:text() */
static int el_text (lua_State *L) {
  pushfree(L, concur_html_text(checkel(L, 1), 0));
  return 1;
}

/*** el:attr(name) --> the attribute's value, or nil */
static int el_attr (lua_State *L) {
  xmlNodePtr n = checkel(L, 1);
  pushxml(L, xmlGetProp(n, (const xmlChar *)checkcstring(L, 2, NULL)));
  return 1;
}

/* Pushes the table of n's attributes. */
static void pushattrs (lua_State *L, xmlNodePtr n) {
  lua_newtable(L);
  for (xmlAttrPtr a = n->properties; a; a = a->next) {
    pushxml(L, xmlNodeListGetString(n->doc, a->children, 1));
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "");
    }
    lua_setfield(L, -2, (const char *)a->name);
  }
}

/* el.tag, el.attrs, then the methods */
static int el_index (lua_State *L) {
  const char *k;
  checkud(L, 1, ELEMENT);
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "tag") == 0) {
    lua_pushstring(L, (const char *)checkel(L, 1)->name);
    return 1;
  }
  if (k && strcmp(k, "attrs") == 0) {
    pushattrs(L, checkel(L, 1));
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int el_tostring (lua_State *L) {
  xmlNodePtr n = checkel(L, 1);
  lua_pushfstring(L, ELEMENT ": <%s>", (const char *)n->name);
  return 1;
}

static int el_eq (lua_State *L) {
  element *a = luaL_testudata(L, 1, ELEMENT), *b = luaL_testudata(L, 2, ELEMENT);
  lua_pushboolean(L, a && b && a->node == b->node);
  return 1;
}

/* ---- registration ------------------------------------------------------------ */

static const luaL_Reg doc_methods[] = {
  {"title", doc_title},
  {"text", doc_text},
  {"robots", doc_robots},
  {"links", doc_links},
  {"find_all", node_find_all},
  {"xpath", node_xpath},
  {"close", doc_close},
  {NULL, NULL}
};

static const luaL_Reg el_methods[] = {
  {"text", el_text},
  {"attr", el_attr},
  {"find_all", node_find_all},
  {"xpath", node_xpath},
  {NULL, NULL}
};

static const luaL_Reg html_funcs[] = {
  {"parse", html_parse},
  {"follow", doc_follow},
  {"scan", html_scan},
  {"crawl", html_crawl},
  {"linkcache", html_linkcache},
  {"scanraw", html_scanraw},
  {"pushlinks", html_pushlinks},
  {"response", concur_html_response},
  {NULL, NULL}
};

/* Makes a metatable 'name' whose __index is 'index' over the methods (also
** its field 'methods', where core.methods finds them). */
static void newmeta (lua_State *L, const char *name, const luaL_Reg *methods,
                     lua_CFunction index) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_pushcclosure(L, index, 1);
  lua_setfield(L, -2, "__index");
}

void concur_html_open (lua_State *L) {
  concur_html_init();   /* xmlInitParser, before threads parse */
  newmeta(L, DOCUMENT, doc_methods, doc_index);
  lua_pushcfunction(L, doc_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, doc_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, doc_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  newmeta(L, ELEMENT, el_methods, el_index);
  lua_pushcfunction(L, el_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, el_eq);
  lua_setfield(L, -2, "__eq");
  lua_pop(L, 1);
  luaL_newmetatable(L, LINKCACHE);
  lua_pop(L, 1);
  luaL_newlib(L, html_funcs);
  lua_setfield(L, -2, "html");
}
