/*
** html.h: HTML documents on libxml2's HTML parser, no Lua: parsing with
** recovery and with the network off, and what a scraper reads off a page
** (title, visible text, links resolved against the page and its <base>,
** meta robots). The binding (csrc/html.c) adds find_all, XPath and elements.
*/
#ifndef CONCUR_CORE_HTML_H
#define CONCUR_CORE_HTML_H

#include <stddef.h>
#include <libxml/HTMLparser.h>
#include <libxml/xpath.h>
#include "result.h"

/* Results: CONCUR_HTML_OK, CONCUR_HTML_ELIMIT (the body is over the size
** cap), CONCUR_HTML_ENOMEM (result.h). */

typedef struct concur_html {
  htmlDocPtr doc;
  char *url;      /* the page's URL, or NULL */
  char *base;     /* what its links are relative to: <base href> resolved
                  ** against url, or url; NULL when none is absolute */
} concur_html;

/* libxml2's global initialisation, once per process (pthread_once). */
void concur_html_init (void);

/* Parses 'len' bytes of HTML (malformed HTML is recovered, never refused;
** nothing is loaded from the network or from files) found at 'url' (NULL:
** unknown), in 'encoding' (NULL: as the document says, else UTF-8 is
** tried). Over 'max' bytes: CONCUR_HTML_ELIMIT. */
int concur_html_parse (const char *body, size_t len, const char *url,
                       const char *encoding, size_t max, concur_html **out);
void concur_html_free (concur_html *h);

/* The visible text under n (script, style and the like left out),
** whitespace collapsed to one space, blocks on lines of their own; a
** malloc'd UTF-8 string, NULL when out of memory. limit > 0: at most that
** many bytes, from at most a quarter as many nodes (0: all). */
char *concur_html_text (xmlNodePtr n, size_t limit);

/* The document's <title>, as text; NULL when it has none (or no memory). */
char *concur_html_title (const concur_html *h);

/* What <meta name="robots"> (or name = 'agent', when given) says. */
void concur_html_robots (const concur_html *h, const char *agent,
                         int *noindex, int *nofollow);

/* The page's links: every <a href> and <area href>, in document order,
** resolved against h->base; those that are not http(s) URLs (mailto:,
** javascript:, unresolvable) are left out. With 'normalize', URLs are in
** canonical form (fetch_url.h); with 'text', each has its text (an <area>:
** its alt), at most 1 KiB of it. */
typedef struct concur_html_link {
  char *url, *text, *rel;   /* text, rel: NULL when absent */
  int nofollow;             /* rel has the nofollow token */
} concur_html_link;

int concur_html_links (const concur_html *h, int normalize, int text,
                       concur_html_link **links, size_t *n);
void concur_html_links_free (concur_html_link *links, size_t n);

/* A scan of a page without a tree: the same parser, its events read as
** they come. What the tree functions above would say of the same page:
** title (NULL when there is no <title>), noindex and nofollow (as
** concur_html_robots with 'agent'), base (as concur_html.base), and the
** raw href of every <a href> and <area href> in document order, with
** whether its rel has nofollow (concur_html_scan_href(s, i); join them to
** base as concur_html_links does). */
typedef struct concur_html_href { size_t off; int nofollow; } concur_html_href;
typedef struct concur_html_scan {
  char *title, *base, *basehref;
  int noindex, nofollow;
  size_t n, cap;                /* links */
  concur_html_href *links;
  char *buf;                    /* the hrefs, each NUL-terminated */
  size_t blen, bcap;
} concur_html_scan;
int concur_html_scan_page (const char *body, size_t len, const char *url,
                           const char *encoding, size_t max,
                           const char *agent, concur_html_scan *s);
#define concur_html_scan_href(s, i) ((s)->buf + (s)->links[i].off)
void concur_html_scan_free (concur_html_scan *s);

/* Evaluates an XPath 1.0 expression with 'node' as the context node;
** NULL when it is bad (the reason in msg) or out of memory (msg "error").
** Nothing is written to stderr. */
xmlXPathObjectPtr concur_html_xpath (const concur_html *h, xmlNodePtr node,
                                     const char *expr, char *msg,
                                     size_t size);

/* Is 'name' among the space-separated tokens of 'list' (ASCII case
** insensitively)? */
int concur_html_hastoken (const char *list, const char *name);

#endif
