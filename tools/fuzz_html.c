/*
** fuzz_html.c: libFuzzer target for the HTML binding (csrc/html.c over
** csrc/core/html.c and libxml2's HTML parser). Any bytes must parse (with
** recovery, never an error), and every reading of the page (title, text,
** links, robots, find_all, element text and attributes, XPath, the
** crawler's links) must work without crashing, hanging or leaking; the
** scan without a tree (core.html.scan, core.html.crawl) must read the
** same links, base and robots as the tree.
*/
#include <stdint.h>
#include <lualib.h>
#include "concur.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static lua_State *L;

static const char READ[] =
  "local core = require('concur.core')\n"
  "local html = core.html\n"
  "local frontier = core.frontier()\n"
  "local cache = html.linkcache()\n"
  "return function (s)\n"
  "  local p = html.parse(s, 'http://h.example/d/p?q=1')\n"
  "  assert(type(p:text()) == 'string')\n"
  "  local t = p:title()\n"
  "  assert(t == nil or type(t) == 'string')\n"
  "  for _, l in ipairs(p:links()) do assert(l.url:match('^https?://')) end\n"
  "  local r = p:robots('concur')\n"
  "  assert(type(r.noindex) == 'boolean')\n"
  "  for i, e in ipairs(p:find_all()) do\n"
  "    if i > 20 then break end\n"   /* each text is a walk: keep it linear */
  "    local _ = e.tag, e.attrs\n"
  "    e:text()\n"
  "  end\n"
  "  p:xpath('//a/@href')\n"
  "  p:xpath('count(//*)')\n"
  "  local urls = html.follow(p)\n"
  "  for _, u in ipairs(urls) do assert(u:match('^https?://')) end\n"
  /* the scan without a tree reads the same page the same way (a title
  ** may differ in where its whitespace falls: see core/html.c) */
  "  local sc = html.scan(s, 'http://h.example/d/p?q=1', { agent = 'concur' })\n"
  "  assert(sc.noindex == r.noindex and sc.nofollow == r.nofollow)\n"
  "  assert(sc.base == p.base)\n"
  "  assert((sc.title or '-'):gsub('%s', '') == (t or '-'):gsub('%s', ''))\n"
  "  local ls = p:links()\n"
  "  assert(#ls == #sc.links)\n"
  "  for i, l in ipairs(ls) do\n"
  "    assert(l.url == sc.links[i].url and l.nofollow == sc.links[i].nofollow)\n"
  "  end\n"
  "  p:close()\n"
  "  local resp = { body = s, url = 'http://h.example/d/p?q=1', headers = {} }\n"
  "  local a = { html.crawl(resp, frontier, 1, true, true,\n"
  "    { ['h.example:80'] = true }, 3, cache) }\n"
  "  assert(a[4] + a[5] == #ls)\n"
  "  local b = { html.crawl(resp, frontier, 1, true, true,\n"   /* cached */
  "    { ['h.example:80'] = true }, 3, cache) }\n"
  "  assert(b[4] == a[4] and b[5] == a[5] and b[6] == a[6])\n"
  "  assert(b[7] == a[7])\n"
  "  assert(b[8] == (a[3] and 0 or a[5] - a[6] - a[7]))\n"
  /* in two halves (a pool worker's scan, the push): the same counts */
  "  local t2, ni, nf, base, links = html.scanraw(resp)\n"
  "  assert(t2 == a[1] and ni == a[2] and nf == a[3])\n"
  "  local c = { html.pushlinks(links, base, frontier, 1, not nf, true,\n"
  "    { ['h.example:80'] = true }, 3) }\n"
  "  assert(c[1] == a[4] and c[2] == a[5] and c[3] == a[6] and c[4] == a[7])\n"
  /* and any bytes as the links: refused or read, never a crash */
  "  pcall(html.pushlinks, s, 'http://h.example/', frontier, 1, true, true,\n"
  "    { ['h.example:80'] = true }, 3, cache)\n"
  "end\n";

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  if (L == NULL) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "concur.core", luaopen_concur_core, 0);
    lua_pop(L, 1);
    if (luaL_loadstring(L, READ) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
      __builtin_trap();
    lua_setglobal(L, "read_page");
  }
  lua_settop(L, 0);
  lua_getglobal(L, "read_page");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    /* a failed assertion is a bug; nothing else may raise */
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    __builtin_trap();
  }
  lua_settop(L, 0);
  /* NOTE: a full collection every run frees what the run made, so
  ** libFuzzer's leak check (run when a run's mallocs and frees differ)
  ** seldom has to scan */
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
