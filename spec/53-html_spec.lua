-- fetch.html and resp:html(): libxml2's HTML parser bound in C, with the
-- network off; title, links, find_all, xpath, text, robots, elements.
local helpers = require "helpers"
local httpserver = require "helpers.httpserver"
local concur = require "concur"
local fetch = require "concur.fetch"

local raises = helpers.raises

local PAGE = [[
<!doctype html>
<html><head>
  <title>  The   shop
    front </title>
  <meta name="robots" content="NOINDEX">
  <style>body { color: red }</style>
</head>
<body>
  <h1>Welcome</h1>
  <p class="intro lead" id="p1">Hello <b>there</b>, <i>friend</i>.</p>
  <script>document.write("hidden")</script>
  <ul>
    <li><a href="a.html">First</a></li>
    <li><a href="/b?x=1&amp;y=2#top" rel="nofollow noopener">Second</a></li>
    <li><a href="mailto:shop@example.org">Mail</a></li>
    <li><a href="javascript:void(0)">Script</a></li>
    <li><a href="https://other.example/c">Elsewhere</a></li>
    <li><a name="anchor-only">No href</a></li>
  </ul>
  <map><area href="../d" alt="Area D"></map>
  <div class="box"><p class="inner">Deep <span>text</span></p></div>
</body></html>
]]
local URL = "http://shop.example/dir/index.html"

describe("fetch.html", function()
  local page

  before_each(function() page = fetch.html(PAGE, URL) end)

  describe("title", function()
    it("gives the title's text, whitespace collapsed", function()
      assert.equal("The shop front", page:title())
    end)

    it("gives nil for a page without one", function()
      assert.is_nil(fetch.html("<p>no title</p>"):title())
    end)
  end)

  describe("links", function()
    it("gives absolute URLs with their text, rel and nofollow, in order", function()
      assert.same({
        { url = "http://shop.example/dir/a.html", text = "First", nofollow = false },
        { url = "http://shop.example/b?x=1&y=2#top", text = "Second",
          rel = "nofollow noopener", nofollow = true },
        { url = "https://other.example/c", text = "Elsewhere", nofollow = false },
        { url = "http://shop.example/d", text = "Area D", nofollow = false },
      }, page:links())
    end)

    it("resolves against <base href>, itself resolved against the page", function()
      local p = fetch.html('<base href="/root/sub/"><a href="x">x</a><a href="../y">y</a>', URL)
      assert.equal("http://shop.example/root/sub/", p.base)
      assert.same({ "http://shop.example/root/sub/x", "http://shop.example/root/y" },
        { p:links()[1].url, p:links()[2].url })
    end)

    it("uses only the first <base href>", function()
      local p = fetch.html('<base href="http://a/1/"><base href="http://b/2/"><a href="x">x</a>')
      assert.equal("http://a/1/x", p:links()[1].url)
    end)

    it("leaves out relative links of a page without a URL", function()
      local p = fetch.html('<a href="rel">r</a><a href="http://abs/x">a</a>')
      assert.is_nil(p.url)
      assert.same({ "http://abs/x" }, { p:links()[1].url, p:links()[2] })
    end)

    it("takes hrefs as a browser does", function()
      local p = fetch.html('<a href="  spaced name.html\n ">s</a>', URL)
      assert.equal("http://shop.example/dir/spaced%20name.html", p:links()[1].url)
    end)
  end)

  describe("text", function()
    it("gives the visible text, without script, style or head", function()
      local text = page:text()
      assert.matches("^Welcome\nHello there, friend%.\n", text)
      assert.not_matches("hidden", text)
      assert.not_matches("color", text)
      assert.not_matches("shop\n", text)
      assert.matches("\nDeep text$", text)
    end)

    it("gives an element's text", function()
      assert.equal("Hello there, friend.", page:find_all("p")[1]:text())
    end)
  end)

  describe("robots", function()
    it("reads meta robots, case-insensitively", function()
      assert.same({ noindex = true, nofollow = false }, page:robots())
    end)

    it("reads none, nofollow and the agent's own meta", function()
      assert.same({ noindex = true, nofollow = true },
        fetch.html('<meta name="robots" content="none">'):robots())
      assert.same({ noindex = false, nofollow = true },
        fetch.html('<meta name="concur" content="nofollow">'):robots("concur"))
      assert.same({ noindex = false, nofollow = false },
        fetch.html('<meta name="otherbot" content="noindex">'):robots("concur"))
    end)
  end)

  describe("find_all", function()
    it("finds elements by tag, in document order", function()
      local lis = page:find_all("li")
      assert.equal(6, #lis)
      assert.equal("li", lis[1].tag)
      assert.equal("First", lis[1]:text())
    end)

    it("matches attributes: equal, a class word, present or absent", function()
      assert.equal("p1", page:find_all("p", { class = "lead" })[1].attrs.id)
      assert.equal(1, #page:find_all("p", { class = "intro lead" }))
      assert.equal(0, #page:find_all("p", { class = "nope" }))
      assert.equal(5, #page:find_all("a", { href = true }))
      assert.equal(1, #page:find_all("a", { href = false }))
      assert.equal(1, #page:find_all("*", { id = "p1" }))
    end)

    it("searches below an element only", function()
      local box = page:find_all("div", { class = "box" })[1]
      local ps = box:find_all("p")
      assert.equal(1, #ps)
      assert.equal("inner", ps[1].attrs.class)
      assert.equal(2, #box:find_all())
    end)

    it("refuses attrs that are not strings or booleans", function()
      raises("argument", "attrs", function() page:find_all("p", { id = 1 }) end)
    end)
  end)

  describe("xpath", function()
    it("gives elements, attribute values and text", function()
      local as = page:xpath("//li/a")
      assert.equal(6, #as)
      assert.equal("a", as[1].tag)
      assert.same({ "a.html" }, { page:xpath("//li[1]/a/@href")[1] })
      assert.equal("Welcome", page:xpath("//h1/text()")[1])
    end)

    it("gives numbers, strings and booleans", function()
      assert.equal(6, page:xpath("count(//li)"))
      assert.equal("Welcome", page:xpath("string(//h1)"))
      assert.is_true(page:xpath("boolean(//map)"))
      assert.equal(0.5, page:xpath("1 div 2"))
    end)

    it("runs relative to an element", function()
      local ul = page:find_all("ul")[1]
      assert.equal(6, #ul:xpath("li"))
      assert.equal(0, #ul:xpath("h1"))
    end)

    it("raises kind argument with the reason for a bad expression, quietly", function()
      raises("argument", "bad XPath expression '//a[' (invalid expression", function()
        page:xpath("//a[")
      end)
      raises("argument", "unregistered function", function() page:xpath("nosuch(1)") end)
      local ok, code, out = helpers.run_lua([[
        local p = require("concur.fetch").html("<a>x</a>")
        pcall(p.xpath, p, "nosuch(1)")
        pcall(p.xpath, p, "//a[")
        print("done")
      ]])
      assert.is_true(ok, out .. " exit " .. tostring(code))
      assert.equal("done\n", out)   -- nothing from libxml2 on stderr
    end)
  end)

  describe("elements", function()
    it("have tag, attrs, attr, tostring and equality", function()
      local p = page:find_all("p", { id = "p1" })[1]
      assert.equal("p", p.tag)
      assert.same({ class = "intro lead", id = "p1" }, p.attrs)
      assert.equal("p1", p:attr("id"))
      assert.is_nil(p:attr("nope"))
      assert.equal("concur.html.Element: <p>", tostring(p))
      assert.equal(p, page:xpath("//p[@id='p1']")[1])
    end)

    it("keep their document alive", function()
      local el = fetch.html("<p>kept</p>"):find_all("p")[1]
      collectgarbage(); collectgarbage()
      assert.equal("kept", el:text())
    end)

    it("raise kind closed once their document is closed", function()
      local p = fetch.html("<p>x</p>")
      local el = p:find_all("p")[1]
      p:close()
      raises("closed", "closed", function() el:text() end)
      raises("closed", "closed", function() p:title() end)
      p:close()   -- idempotent
    end)
  end)

  describe("parsing", function()
    it("never raises on malformed HTML or binary bytes", function()
      for _, body in ipairs{ "<p><b>unclosed <i>tags", "</div></div>", "<<<>>>",
          "\0\1\2\255\254<p>x\0y</p>", ("<div>"):rep(5000), "<a href='x", "",
          "   ", "<html><body><table><tr><td>1<td>2</table>" } do
        local p = fetch.html(body, URL)
        assert.equal("string", type(p:text()))
        assert.equal("table", type(p:links()))
      end
    end)

    it("scans a page without a tree to the same title, robots, base and links", function()
      local core = require "concur.core"
      local pages = { PAGE, "<p><b>unclosed <i>tags", "<<<>>><a href=x>", "",
        "\0\1\2\255\254<a href=q>x\0y</a>", ("<div><a href=d>"):rep(300),
        "<a href='x", "<title> a <b>b</b>\n c<script>no</script><div>d</div></title>",
        "<title></title><base><base href='/other/'><a href=1><a href>",
        "<table><a href='t' rel='x NOFOLLOW'><tr><td><area href=../u></table>",
        "<meta name=Robots content='none'><meta name=robots><a href=' s p '>",
        "<svg><a href=s /></svg><frameset><a href=//h/p?q#f></frameset></html><a href=z>",
        "<base href='mailto:x'><a href=m><a href=javascript:x><a href=http://h:80/./a/../b>",
        "<meta charset=iso-8859-1><title>caf\233</title><a href='\233'>",
        "<td:a href=p><x:base href=/b/><x:title>t<y:div>u</y:div></x:title><:a href=q>" }
      for i, body in ipairs(pages) do
        for _, url in ipairs{ URL, false } do
          local p = fetch.html(body, url or nil)
          local s = core.html.scan(body, url or nil)
          local r = p:robots()
          local what = ("page %d, url %s"):format(i, tostring(url))
          assert.equal(p:title(), s.title, what)
          assert.equal(r.noindex, s.noindex, what)
          assert.equal(r.nofollow, s.nofollow, what)
          assert.equal(p.base, s.base, what)
          local links = {}
          for k, l in ipairs(p:links()) do links[k] = { url = l.url, nofollow = l.nofollow } end
          assert.same(links, s.links, what)
          local canon = core.html.scan(body, url or nil, { normalize = true }).links
          local follow, left = core.html.follow(p, true)
          assert.equal(#follow, #canon, what)
          for k, u in ipairs(follow) do assert.equal(u, canon[k].url, what) end
          assert.equal(0, left)
        end
      end
      assert.is_true(core.html.scan(PAGE, URL, { agent = "shopbot" }).noindex)
      raises("limit", "size cap", core.html.scan, ("x"):rep(100), URL, { max_size = 10 })
      raises("argument", nil, core.html.scan, "<p>", URL, { bad = 1 })
    end)

    it("writes nothing to stderr, even for bytes it cannot decode", function()
      local ok, code, out = helpers.run_lua([[
        local f = require "concur.fetch"
        f.html("<" .. ("\0"):rep(34) .. "\b" .. ("\0"):rep(11) .. "&#x42;</r>"):text()
        f.html("<meta charset=utf-16><p>\255\254\0\216"):text()
        print("done")
      ]])
      assert.is_true(ok, out .. " exit " .. tostring(code))
      assert.equal("done\n", out)
    end)

    it("keeps links() linear when links nest", function()
      local ok, code, out = helpers.run_lua([[
        local p = require("concur.fetch").html(("<div><a href=x>"):rep(20000), "http://h/")
        print(#p:links())
      ]], 30)
      assert.is_true(ok, out .. " exit " .. tostring(code))
      assert.equal("20000\n", out)
    end)

    it("keeps the text of a deeply nested page", function()
      local p = fetch.html(("<div>"):rep(3000) .. "deep" .. ("</div>"):rep(3000))
      assert.matches("deep", p:text())
    end)

    it("raises kind limit for a body over max_size", function()
      raises("limit", "max_size = 100", function()
        fetch.html(("x"):rep(101), nil, { max_size = 100 })
      end)
      assert.equal("x", fetch.html("<p>x</p>", nil, { max_size = 8 }):text())
    end)

    it("has a default size cap of 16 MiB", function()
      raises("limit", "size cap", function()
        fetch.html(("x"):rep(16 * 1024 * 1024 + 1))
      end)
    end)

    it("loads no entity or DTD from files", function()
      local p = fetch.html('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' ..
        '<p>&e;</p><p>&amp;</p>')
      assert.not_matches("root:", p:text())
      assert.matches("&", p:text())
    end)

    it("takes an encoding when the page does not say", function()
      local latin1 = "<p>caf\233</p>"
      assert.equal("café", fetch.html(latin1, nil, { encoding = "ISO-8859-1" }):text())
    end)

    it("refuses bad arguments with kind argument", function()
      raises("argument", "string expected", function() fetch.html(nil) end)
      raises("argument", "NUL", function() fetch.html("<p>", "http://a/\0") end)
      raises("argument", "unknown option", function() fetch.html("<p>", nil, { max = 1 }) end)
      raises("argument", "max_size", function() fetch.html("<p>", nil, { max_size = -1 }) end)
      raises("argument", "NUL", function() page:find_all("p\0") end)
      raises("argument", "NUL", function() page:xpath("//p\0") end)
      raises("argument", "concur.html.Document", function() page.title({}) end)
      raises("argument", "concur.html.Element", function()
        getmetatable(page:find_all("p")[1]).__index(1, "tag")
      end)
      raises("argument", "concur.html.Document", function() getmetatable(page).__gc(1) end)
    end)
  end)

  describe("with threads", function()
    it("does not cross to another state", function()
      local pool <close> = concur.ThreadPool(1)
      raises("transfer", nil, function()
        pool:submit(function(p) return p:title() end, page):result()
      end)
    end)

    it("parses in many workers at once", function()
      local pool <close> = concur.ThreadPool(4)
      local titles = pool:map(function(i)
        local f = require "concur.fetch"
        local p = f.html(("<title>t%d</title><a href='x%d'>x</a>"):format(i, i), "http://h/")
        return p:title() .. " " .. p:links()[1].url .. " " .. #p:xpath("//a")
      end, { 1, 2, 3, 4, 5, 6, 7, 8 })
      for i = 1, 8 do assert.equal(("t%d http://h/x%d 1"):format(i, i), titles[i]) end
    end)
  end)
end)

describe("resp:html()", function()
  local srv

  setup(function() srv = httpserver.start() end)
  teardown(function() srv:stop() end)

  it("parses a Response's body, its links resolved against resp.url", function()
    local resp = fetch.get(srv:url("/text?s=") .. "%3Ctitle%3EHi%3C/title%3E%3Ca%20href=%22p2%22%3E2%3C/a%3E")
    local page = resp:html()
    assert.equal("Hi", page:title())
    assert.equal(srv:url("/p2"), page:links()[1].url)
    assert.equal(resp.url, page.url)
  end)

  it("loads nothing from the network", function()
    srv:reset()
    local dtd = srv:url("/text?s=dtd")
    local p = fetch.html(('<!DOCTYPE html SYSTEM "%s"><!DOCTYPE x [<!ENTITY e SYSTEM "%s">]>' ..
      '<p>&e;</p>'):format(dtd, dtd), srv:url("/"))
    p:text()
    assert.equal(0, #srv:log())
  end)

  it("uses the Content-Type's charset", function()
    local resp = fetch.response({ status = 200, url = "http://h/", body = "<p>caf\233</p>",
      headers = { ["content-type"] = "text/html; charset=ISO-8859-1" } })
    assert.equal("café", resp:html():text())
  end)

  teardown(function() fetch.default_client():close() end)
end)
