/*
** html.c: HTML on libxml2's HTML parser (see html.h), no Lua.
**
** Parsing: htmlCtxtReadMemory with recovery on and errors quiet, the
** network off (HTML_PARSE_NONET), and the context's SAX hooks that could
** load anything from outside (external subsets and entities) removed, so a
** page can make libxml2 read neither files nor URLs. XML_PARSE_HUGE lifts
** libxml2's nesting limit of 256 (past it, the rest of a page would be
** dropped), as lxml's huge_tree, which Scrapy's selectors use; the body's
** size is capped before parsing instead. The walks over the tree
** are iterative (first child, next sibling, parent), so a deeply nested page
** never runs the C stack out.
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <libxml/HTMLtree.h>
#include <libxml/xpath.h>
#include <libxml/parserInternals.h>
#include "html.h"
#include "fetch_url.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_once (void) { xmlInitParser(); }

void concur_html_init (void) { pthread_once(&once, init_once); }

/* libxml2 also reports some errors (encoding errors while parsing, an
** unknown XPath function) through its generic error function, which is
** per thread: it is this while the parser or XPath runs, then what it was. */
static void quiet (void *ud, const char *fmt, ...) {
  (void)ud;
  (void)fmt;
}

/* ---- parsing ---------------------------------------------------------------- */

/* The next node after n in document order within root, going into n's
** children unless 'skip'; NULL at the end. */
static xmlNodePtr next_node (xmlNodePtr n, xmlNodePtr root, int skip) {
  if (!skip && n->children && n->type == XML_ELEMENT_NODE) return n->children;
  if (!skip && n->children && (n->type == XML_DOCUMENT_NODE ||
                               n->type == XML_HTML_DOCUMENT_NODE))
    return n->children;
  while (n && n != root) {
    if (n->next) return n->next;
    n = n->parent;
  }
  return NULL;
}

static int is (xmlNodePtr n, const char *name) {
  return n->type == XML_ELEMENT_NODE && n->name &&
         strcasecmp((const char *)n->name, name) == 0;
}

/* The first element named 'name' in document order, or NULL. */
static xmlNodePtr first (htmlDocPtr doc, const char *name) {
  xmlNodePtr root = (xmlNodePtr)doc;
  for (xmlNodePtr n = root; n; n = next_node(n, root, 0))
    if (is(n, name)) return n;
  return NULL;
}

static char *attr (xmlNodePtr n, const char *name) {
  return (char *)xmlGetProp(n, (const xmlChar *)name);
}

int concur_html_parse (const char *body, size_t len, const char *url,
                       const char *encoding, size_t max, concur_html **out) {
  concur_html *h;
  htmlParserCtxtPtr ctxt;
  xmlNodePtr b;
  if (len > max || len > INT_MAX) return CONCUR_HTML_ELIMIT;
  concur_html_init();
  if ((h = calloc(1, sizeof *h)) == NULL) return CONCUR_HTML_ENOMEM;
  if (url && (h->url = strdup(url)) == NULL) goto oom;
  if ((ctxt = htmlNewParserCtxt()) == NULL) goto oom;
  /* NOTE: this context's own SAX copy: nothing from outside is resolved */
  ctxt->sax->resolveEntity = NULL;
  ctxt->sax->externalSubset = NULL;
  ctxt->sax->getParameterEntity = NULL;
  {
    xmlGenericErrorFunc was = xmlGenericError;
    void *wasctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, quiet);
    h->doc = htmlCtxtReadMemory(ctxt, body, (int)len, url, encoding,
                                HTML_PARSE_RECOVER | HTML_PARSE_NONET |
                                HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                HTML_PARSE_COMPACT | XML_PARSE_HUGE);
    xmlSetGenericErrorFunc(wasctx, was);
  }
  htmlFreeParserCtxt(ctxt);
  if (h->doc == NULL &&   /* libxml2 makes no document of an empty page */
      (h->doc = htmlNewDocNoDtD(NULL, NULL)) == NULL)
    goto oom;
  if (url) {   /* <base href>, resolved against the page */
    char *href = (b = first(h->doc, "base")) ? attr(b, "href") : NULL;
    if (href == NULL ||
        concur_fetch_urljoin(url, href, 0, &h->base, NULL, NULL, 0) !=
        CONCUR_FETCH_OK)
      concur_fetch_urljoin(url, "", 0, &h->base, NULL, NULL, 0);
    xmlFree(href);
  }
  else if ((b = first(h->doc, "base")) != NULL) {   /* an absolute one */
    char *href = attr(b, "href");
    if (href) concur_fetch_urljoin(href, "", 0, &h->base, NULL, NULL, 0);
    xmlFree(href);
  }
  *out = h;
  return CONCUR_HTML_OK;
oom:
  concur_html_free(h);
  return CONCUR_HTML_ENOMEM;
}

void concur_html_free (concur_html *h) {
  if (h == NULL) return;
  if (h->doc) xmlFreeDoc(h->doc);
  free(h->url);
  free(h->base);
  free(h);
}

/* ---- text ----------------------------------------------------------------- */

/*
** What an element does to text: its content is never shown (script, ...),
** it starts and ends a line (a block), or it breaks words (a cell), or
** nothing. The HTML parser gives element names in lower case; the name is
** looked up by its first letter, so a page walk costs a few compares per
** element.
*/
enum { T_INLINE, T_WORD, T_BLOCK, T_HIDDEN };

static int kind_name (const char *name) {
  static const char *const names[26] = {
    /* a */ "\2address\2article\2aside",
    /* b */ "\2blockquote\2br\2body",
    /* c */ "\2caption",
    /* d */ "\2dd\2details\2dialog\2div\2dl\2dt",
    /* e */ "",
    /* f */ "\2fieldset\2figcaption\2figure\2footer\2form",
    /* g */ "",
    /* h */ "\2h1\2h2\2h3\2h4\2h5\2h6\3head\2header\2hgroup\2hr\2html",
    /* i */ "\3iframe\1img", /* j */ "", /* k */ "", /* l */ "\2li",
    /* m */ "\2main", /* n */ "\2nav\3noscript",
    /* o */ "\3object\2ol\2option", /* p */ "\2p\2pre", /* q */ "", /* r */ "",
    /* s */ "\3script\2section\3style\2summary\3svg",
    /* t */ "\2table\2tbody\1td\3template\2tfoot\1th\2thead\2title\2tr",
    /* u */ "\2ul", /* v */ "", /* w */ "", /* x */ "", /* y */ "", /* z */ "",
  };
  const char *p;
  size_t len;
  if (name[0] < 'a' || name[0] > 'z') return T_INLINE;
  len = strlen(name);
  for (p = names[name[0] - 'a']; *p; ) {
    int k = *p++;
    const char *e = p;
    while (*e > 3) e++;
    if ((size_t)(e - p) == len && memcmp(p, name, len) == 0) return k;
    p = e;
  }
  return T_INLINE;
}

static int kind (xmlNodePtr n) {
  if (n->type == XML_COMMENT_NODE || n->type == XML_PI_NODE ||
      n->type == XML_DTD_NODE)
    return T_HIDDEN;
  if (n->type != XML_ELEMENT_NODE || n->name == NULL) return T_INLINE;
  return kind_name((const char *)n->name);
}

/* Elements whose content is never shown. */
static int hidden (xmlNodePtr n) { return kind(n) == T_HIDDEN; }

/* 2: the element starts and ends a line; 1: a word break; 0: inline. */
static int breaks (xmlNodePtr n) {
  int k = kind(n);
  return k == T_BLOCK ? 2 : k == T_WORD ? 1 : 0;
}

typedef struct tbuf { char *p; size_t len, cap; int pend, oom; } tbuf;

static void tput (tbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 2 > b->cap) {
    size_t ncap = b->cap ? b->cap * 2 : 256;
    char *np;
    while (ncap < b->len + n + 2) ncap *= 2;
    if ((np = realloc(b->p, ncap)) == NULL) { b->oom = 1; return; }
    b->p = np;
    b->cap = ncap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static int blank (char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Appends the n bytes at s (a NUL ends them early) with their whitespace
** collapsed (a pending break is written before the next visible character,
** never at the start). */
static void addtextn (tbuf *b, const char *s, size_t n) {
  const char *end = s + n;
  while (s < end && *s) {
    const char *w = s;
    while (w < end && *w && !blank(*w)) w++;
    if (w > s) {
      if (b->len && b->pend) tput(b, b->pend == 2 ? "\n" : " ", 1);
      b->pend = 0;
      tput(b, s, (size_t)(w - s));
    }
    s = w;
    while (s < end && *s && blank(*s)) {
      if (b->pend < 1) b->pend = 1;
      s++;
    }
  }
}

static void addtext (tbuf *b, const char *s) { addtextn(b, s, strlen(s)); }

char *concur_html_text (xmlNodePtr root, size_t limit) {
  tbuf b = {NULL, 0, 0, 0, 0};
  xmlNodePtr n = root;
  size_t visited = 0;
  while (n && (limit == 0 || (b.len < limit && visited++ < limit / 4))) {
    int skip = n != root && hidden(n);
    if (!skip) {
      int brk = breaks(n);
      if (brk > b.pend) b.pend = brk;
      if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
          n->content)
        addtext(&b, (const char *)n->content);
    }
    /* leaving elements: a block ends its line */
    if (skip || n->children == NULL || (n->type != XML_ELEMENT_NODE &&
        n->type != XML_DOCUMENT_NODE && n->type != XML_HTML_DOCUMENT_NODE)) {
      xmlNodePtr m = n;
      if (!skip && breaks(m) > b.pend) b.pend = breaks(m);
      while (m && m != root && m->next == NULL) {
        m = m->parent;
        if (m && breaks(m) > b.pend) b.pend = breaks(m);
      }
      n = (m == NULL || m == root) ? NULL : m->next;
    }
    else n = n->children;
  }
  if (limit && b.len > limit) b.len = limit;   /* NOTE: may cut a UTF-8 */
  tput(&b, "", 1);                             /* sequence short */
  if (b.oom) { free(b.p); return NULL; }
  return b.p;
}

char *concur_html_title (const concur_html *h) {
  xmlNodePtr t = first(h->doc, "title");
  return t ? concur_html_text(t, 0) : NULL;
}

int concur_html_hastoken (const char *list, const char *name) {
  size_t n = strlen(name);
  const char *p = list;
  while (p && *p) {
    while (*p && (isspace((unsigned char)*p) || *p == ',')) p++;
    if (strncasecmp(p, name, n) == 0 &&
        (p[n] == '\0' || isspace((unsigned char)p[n]) || p[n] == ','))
      return 1;
    while (*p && !isspace((unsigned char)*p) && *p != ',') p++;
  }
  return 0;
}

void concur_html_robots (const concur_html *h, const char *agent,
                         int *noindex, int *nofollow) {
  xmlNodePtr root = (xmlNodePtr)h->doc;
  *noindex = *nofollow = 0;
  for (xmlNodePtr n = root; n; n = next_node(n, root, 0)) {
    char *name, *content;
    if (!is(n, "meta")) continue;
    name = attr(n, "name");
    if (name && (strcasecmp(name, "robots") == 0 ||
                 (agent && strcasecmp(name, agent) == 0)) &&
        (content = attr(n, "content")) != NULL) {
      int none = concur_html_hastoken(content, "none");
      *noindex |= none || concur_html_hastoken(content, "noindex");
      *nofollow |= none || concur_html_hastoken(content, "nofollow");
      xmlFree(content);
    }
    xmlFree(name);
  }
}

/* ---- links ---------------------------------------------------------------- */

/* A link's text is cut at this many bytes (or a quarter as many nodes
** looked at): links nested in links would otherwise make links()
** quadratic. */
#define LINK_TEXT_MAX 1024

void concur_html_links_free (concur_html_link *links, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(links[i].url);
    free(links[i].text);
    free(links[i].rel);
  }
  free(links);
}

int concur_html_links (const concur_html *h, int normalize, int text,
                       concur_html_link **links, size_t *count) {
  xmlNodePtr root = (xmlNodePtr)h->doc;
  concur_html_link *v = NULL;
  size_t n = 0, cap = 0;
  /* the base is parsed once for all the links */
  concur_urlbase *base = h->base ? concur_fetch_urlbase_new(h->base) : NULL;
  if (h->base && base == NULL) return CONCUR_HTML_ENOMEM;   /* (h->base is
                                                  ** a URL that parsed) */
  for (xmlNodePtr e = root; e; e = next_node(e, root, 0)) {
    char *href, *url = NULL, *rel;
    concur_html_link *l;
    if (!is(e, "a") && !is(e, "area")) continue;
    if ((href = attr(e, "href")) == NULL) continue;
    /* NOTE: without a base, only an absolute href (joined to nothing) */
    if ((base ? concur_fetch_urljoin_base(base, href, normalize, &url)
              : concur_fetch_urljoin(href, "", normalize, &url, NULL, NULL,
                                     0))
        != CONCUR_FETCH_OK) {
      xmlFree(href);
      continue;   /* not an http(s) URL (or no memory: left out too) */
    }
    xmlFree(href);
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      concur_html_link *nv = realloc(v, ncap * sizeof *nv);
      if (nv == NULL) { free(url); goto oom; }
      v = nv;
      cap = ncap;
    }
    l = &v[n++];
    memset(l, 0, sizeof *l);
    l->url = url;
    if ((rel = attr(e, "rel")) != NULL) {
      l->nofollow = concur_html_hastoken(rel, "nofollow");
      l->rel = strdup(rel);
      xmlFree(rel);
      if (l->rel == NULL) goto oom;
    }
    if (text) {
      if (is(e, "area")) {
        char *alt = attr(e, "alt");
        l->text = strdup(alt ? alt : "");
        xmlFree(alt);
      }
      else l->text = concur_html_text(e, LINK_TEXT_MAX);
      if (l->text == NULL) goto oom;
    }
  }
  concur_fetch_urlbase_free(base);
  *links = v;
  *count = n;
  return CONCUR_HTML_OK;
oom:
  concur_fetch_urlbase_free(base);
  concur_html_links_free(v, n);
  return CONCUR_HTML_ENOMEM;
}

/* ---- XPath ----------------------------------------------------------------- */

/* libxml2's XPath errors, by code (xmlXPathError; its own table of
** messages is not exported). */
static const char *const xpath_msgs[] = {
  "ok", "number encoding", "unfinished literal", "start of literal",
  "expected $ for variable reference", "undefined variable",
  "invalid predicate", "invalid expression", "missing closing curly brace",
  "unregistered function", "invalid operand", "invalid type",
  "invalid number of arguments", "invalid context size",
  "invalid context position", "memory allocation", "syntax error",
  "resource error", "sub resource error", "undefined namespace prefix",
  "encoding error", "char out of XML range", "invalid or incomplete context",
  "stack usage error", "forbidden variable", "operation limit exceeded",
  "recursion limit exceeded",
};

typedef struct xperr { char *buf; size_t size; } xperr;

/* The XPath context's error handler: keeps the first error's reason and
** where in the expression it was. */
static void xpath_error (void *ud, xmlErrorPtr err) {
  xperr *x = ud;
  int code = err ? err->code - XML_XPATH_EXPRESSION_OK : -1;
  if (x->buf[0] != '\0' || err == NULL) return;
  snprintf(x->buf, x->size, "%s at offset %d", code >= 0 && code <
           (int)(sizeof xpath_msgs / sizeof xpath_msgs[0]) ? xpath_msgs[code]
           : "error", err->int1);
}

xmlXPathObjectPtr concur_html_xpath (const concur_html *h, xmlNodePtr node,
                                     const char *expr, char *msg,
                                     size_t size) {
  xmlXPathContextPtr ctx = xmlXPathNewContext(h->doc);
  xmlXPathObjectPtr res;
  xmlGenericErrorFunc was;
  void *wasctx;
  xperr x;
  msg[0] = '\0';
  if (ctx == NULL) return NULL;
  x.buf = msg;
  x.size = size;
  ctx->node = node;
  ctx->error = xpath_error;
  ctx->userData = &x;
  was = xmlGenericError;   /* NOTE: some errors (an unknown function) */
  wasctx = xmlGenericErrorContext;   /* also go to the generic handler */
  xmlSetGenericErrorFunc(NULL, quiet);
  res = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
  xmlSetGenericErrorFunc(wasctx, was);
  xmlXPathFreeContext(ctx);
  if (res == NULL && msg[0] == '\0') snprintf(msg, size, "error");
  return res;
}


/* ---- a scan without a tree ---------------------------------------------------- */

/*
** The same libxml2 parser (tokenizer, recovery, implied and auto-closed
** elements, the page's own encoding), with SAX hooks in place of the tree
** builder: only <a>/<area> href and rel, the first <base href>, <meta
** name=robots> and the first <title>'s text are kept. The events are those
** the tree is built from, in document order, so what is read off them is
** what the tree walks above read off the tree. One difference: libxml2
** drops some whitespace-only text when it builds a tree (it looks at the
** tree to decide), which can only change where a space falls in a title.
*/
typedef struct scanstate {
  concur_html_scan *s;
  const char *agent;
  int oom;
  int sawbase;
  int title;          /* 0: none yet, 1: in the first, 2: after it */
  int depth;          /* in the title: elements open */
  int hide;           /* in the title: the depth of a hidden element, or 0 */
  tbuf t;
  htmlParserCtxtPtr ctxt;
} scanstate;

/* The name the tree gives an element: its local part, when it has a
** prefix (libxml2's tree builder splits names at ':', even in HTML);
** malloc'd in *own when split. */
static const char *localname (scanstate *st, const char *name, char **own) {
  xmlChar *prefix = NULL, *local;
  *own = NULL;
  if (strchr(name, ':') == NULL) return name;
  local = xmlSplitQName(st->ctxt, (const xmlChar *)name, &prefix);
  xmlFree(prefix);
  if (local == NULL) {
    st->oom = 1;
    return name;
  }
  *own = (char *)local;
  return (const char *)local;
}

static const char *getatt (const xmlChar **atts, const char *name,
                           int *found) {
  *found = 0;
  for (int i = 0; atts && atts[i]; i += 2)
    if (strcmp((const char *)atts[i], name) == 0) {
      *found = 1;
      return atts[i + 1] ? (const char *)atts[i + 1] : "";
    }
  return NULL;
}

static int addhref (scanstate *st, const char *href, int nofollow) {
  concur_html_scan *s = st->s;
  size_t n = strlen(href) + 1;
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 32;
    concur_html_href *nv = realloc(s->links, ncap * sizeof *nv);
    if (nv == NULL) return -1;
    s->links = nv;
    s->cap = ncap;
  }
  if (s->blen + n > s->bcap) {
    size_t ncap = s->bcap ? s->bcap * 2 : 1024;
    char *nb;
    while (ncap < s->blen + n) ncap *= 2;
    if ((nb = realloc(s->buf, ncap)) == NULL) return -1;
    s->buf = nb;
    s->bcap = ncap;
  }
  memcpy(s->buf + s->blen, href, n);
  s->links[s->n].off = s->blen;
  s->links[s->n].nofollow = nofollow;
  s->n++;
  s->blen += n;
  return 0;
}

static void scan_start (void *ud, const xmlChar *xname,
                        const xmlChar **atts) {
  scanstate *st = ud;
  const char *name = (const char *)xname, *v;
  char *own;
  int found;
  if (st->oom || name == NULL) return;
  name = localname(st, name, &own);
  if (st->title == 1) {   /* in the title: its text, as concur_html_text */
    st->depth++;
    if (!st->hide) {
      int k = kind_name(name);
      if (k == T_HIDDEN) st->hide = st->depth;
      else if (k == T_BLOCK ? 2 > st->t.pend : k == T_WORD && 1 > st->t.pend)
        st->t.pend = k == T_BLOCK ? 2 : 1;
    }
  }
  switch (name[0] | 0x20) {
  case 'a':
    if (strcasecmp(name, "a") == 0 || strcasecmp(name, "area") == 0) {
      const char *rel;
      int hasrel;
      if ((v = getatt(atts, "href", &found)) == NULL) break;
      rel = getatt(atts, "rel", &hasrel);
      if (addhref(st, v, rel && concur_html_hastoken(rel, "nofollow")))
        st->oom = 1;
    }
    break;
  case 'b':
    if (!st->sawbase && strcasecmp(name, "base") == 0) {
      st->sawbase = 1;
      if ((v = getatt(atts, "href", &found)) != NULL &&
          (st->s->basehref = strdup(v)) == NULL)
        st->oom = 1;
    }
    break;
  case 'm':
    if (strcasecmp(name, "meta") == 0 &&
        (v = getatt(atts, "name", &found)) != NULL &&
        (strcasecmp(v, "robots") == 0 ||
         (st->agent && strcasecmp(v, st->agent) == 0))) {
      const char *content = getatt(atts, "content", &found);
      if (content) {
        int none = concur_html_hastoken(content, "none");
        st->s->noindex |= none || concur_html_hastoken(content, "noindex");
        st->s->nofollow |= none || concur_html_hastoken(content, "nofollow");
      }
    }
    break;
  case 't':
    if (st->title == 0 && strcasecmp(name, "title") == 0) {
      st->title = 1;
      st->depth = 1;
      st->t.pend = 2;
    }
    break;
  default:
    break;
  }
  xmlFree(own);
}

static void scan_end (void *ud, const xmlChar *xname) {
  scanstate *st = ud;
  if (st->title != 1) return;
  if (--st->depth == 0) {   /* the title ends */
    st->title = 2;
    return;
  }
  if (st->hide) {
    if (st->depth + 1 == st->hide) st->hide = 0;
    return;
  }
  if (xname) {
    char *own;
    int k = kind_name(localname(st, (const char *)xname, &own));
    int b = k == T_BLOCK ? 2 : k == T_WORD ? 1 : 0;
    if (b > st->t.pend) st->t.pend = b;
    xmlFree(own);
  }
}

static void scan_text (void *ud, const xmlChar *ch, int len) {
  scanstate *st = ud;
  if (st->title == 1 && !st->hide && len > 0)
    addtextn(&st->t, (const char *)ch, (size_t)len);
}

static htmlSAXHandler scan_sax;   /* set once, then only read */
static pthread_once_t scan_once = PTHREAD_ONCE_INIT;

static void scan_sax_init (void) {
  memset(&scan_sax, 0, sizeof scan_sax);
  scan_sax.startElement = scan_start;
  scan_sax.endElement = scan_end;
  scan_sax.characters = scan_text;
  scan_sax.cdataBlock = scan_text;
  scan_sax.initialized = 1;
}

void concur_html_scan_free (concur_html_scan *s) {
  if (s == NULL) return;
  free(s->title);
  free(s->base);
  free(s->basehref);
  free(s->links);
  free(s->buf);
  memset(s, 0, sizeof *s);
}

int concur_html_scan_page (const char *body, size_t len, const char *url,
                           const char *encoding, size_t max,
                           const char *agent, concur_html_scan *s) {
  htmlParserCtxtPtr ctxt;
  scanstate st;
  memset(s, 0, sizeof *s);
  if (len > max || len > INT_MAX) return CONCUR_HTML_ELIMIT;
  concur_html_init();
  pthread_once(&scan_once, scan_sax_init);
  memset(&st, 0, sizeof st);
  st.s = s;
  st.agent = agent;
  if ((ctxt = htmlNewParserCtxt()) == NULL) return CONCUR_HTML_ENOMEM;
  /* NOTE: this context's own SAX copy: only the scan's hooks, nothing
  ** resolved from outside, no tree */
  memcpy(ctxt->sax, &scan_sax, sizeof scan_sax);
  ctxt->userData = &st;
  st.ctxt = ctxt;
  {
    xmlGenericErrorFunc was = xmlGenericError;
    void *wasctx = xmlGenericErrorContext;
    htmlDocPtr doc;
    xmlSetGenericErrorFunc(NULL, quiet);
    doc = htmlCtxtReadMemory(ctxt, len ? body : "", (int)len, url, encoding,
                             HTML_PARSE_RECOVER | HTML_PARSE_NONET |
                             HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                             HTML_PARSE_COMPACT | XML_PARSE_HUGE);
    xmlSetGenericErrorFunc(wasctx, was);
    if (doc) xmlFreeDoc(doc);   /* (none: no startDocument hook) */
  }
  htmlFreeParserCtxt(ctxt);
  if (st.title) {
    tput(&st.t, "", 1);
    if (st.t.oom) st.oom = 1;
    s->title = st.t.p;
  }
  else free(st.t.p);
  if (st.oom) goto oom;
  /* the base, as concur_html_parse has it */
  if (url) {
    if (s->basehref == NULL ||
        concur_fetch_urljoin(url, s->basehref, 0, &s->base, NULL, NULL, 0) !=
        CONCUR_FETCH_OK)
      concur_fetch_urljoin(url, "", 0, &s->base, NULL, NULL, 0);
  }
  else if (s->basehref)
    concur_fetch_urljoin(s->basehref, "", 0, &s->base, NULL, NULL, 0);
  return CONCUR_HTML_OK;
oom:
  concur_html_scan_free(s);
  return CONCUR_HTML_ENOMEM;
}
