-- robots.txt: the engine's rules (RFC 9309) and a client with robots = true
-- against the test server on 127.0.0.1.
local helpers = require "helpers"
local httpserver = require "helpers.httpserver"
local core = require "concur.core"
local fetch = require "concur.fetch"

local raises = helpers.raises
local UA = "concur/0.1.0 (+https://example.invalid)"

local function allowed(txt, path, ua)
  return (core.fetch.robots(txt, ua or UA, path))
end

describe("robots.txt", function()
  describe("rules", function()
    it("allows everything when empty", function()
      assert.is_true(allowed("", "/anything"))
    end)

    it("disallows by path prefix", function()
      local txt = "User-agent: *\nDisallow: /private\n"
      assert.is_false(allowed(txt, "/private"))
      assert.is_false(allowed(txt, "/private/x"))
      assert.is_false(allowed(txt, "/privateer"))
      assert.is_true(allowed(txt, "/public"))
    end)

    it("treats an empty Disallow as allowing everything", function()
      assert.is_true(allowed("User-agent: *\nDisallow:\n", "/x"))
    end)

    it("lets the longest matching rule win", function()
      local txt = "User-agent: *\nDisallow: /a\nAllow: /a/b\nDisallow: /a/b/c\n"
      assert.is_false(allowed(txt, "/a/x"))
      assert.is_true(allowed(txt, "/a/b/x"))
      assert.is_false(allowed(txt, "/a/b/c/x"))
    end)

    it("lets Allow win a tie", function()
      local txt = "User-agent: *\nDisallow: /page\nAllow: /page\n"
      assert.is_true(allowed(txt, "/page"))
    end)

    it("understands * and $", function()
      local txt = "User-agent: *\nDisallow: /*.pdf$\nDisallow: /tmp*/x\n"
      assert.is_false(allowed(txt, "/docs/a.pdf"))
      assert.is_true(allowed(txt, "/docs/a.pdf?download=1"))
      assert.is_false(allowed(txt, "/tmp123/x"))
      assert.is_true(allowed(txt, "/tmp123/y"))
    end)

    it("matches the query string too", function()
      local txt = "User-agent: *\nDisallow: /search?q=\n"
      assert.is_false(allowed(txt, "/search?q=lua"))
      assert.is_true(allowed(txt, "/search"))
    end)

    it("follows the group naming our product token, case-insensitively", function()
      local txt = "User-agent: *\nDisallow: /\n\nUser-agent: CONCUR\nDisallow: /no\n"
      assert.is_true(allowed(txt, "/yes"))
      assert.is_false(allowed(txt, "/no"))
      assert.is_false(allowed(txt, "/yes", "otherbot/1.0"))
    end)

    it("merges groups that name us and groups with several agents", function()
      local txt = "User-agent: a\nUser-agent: concur\nDisallow: /one\n\n" ..
                  "User-agent: concur\nDisallow: /two\n"
      assert.is_false(allowed(txt, "/one"))
      assert.is_false(allowed(txt, "/two"))
      assert.is_true(allowed(txt, "/three"))
    end)

    it("ignores comments, blank lines and unknown fields", function()
      local txt = "# hello\nUser-agent: * # all\n\nSitemap: /s.xml\nDisallow: /x # no\n"
      assert.is_false(allowed(txt, "/x"))
      assert.is_true(allowed(txt, "/y"))
    end)

    it("always allows /robots.txt", function()
      assert.is_true(allowed("User-agent: *\nDisallow: /\n", "/robots.txt"))
    end)

    it("reads Crawl-delay of the group that applies", function()
      local _, d = core.fetch.robots("User-agent: *\nCrawl-delay: 0.25\n", UA, "/")
      assert.equal(0.25, d)
      local _, none = core.fetch.robots("User-agent: *\nDisallow: /x\n", UA, "/")
      assert.is_nil(none)
    end)

    it("handles CRLF line ends", function()
      assert.is_false(allowed("User-agent: *\r\nDisallow: /x\r\n", "/x"))
    end)
  end)

  describe("a client with robots = true", function()
    local srv

    setup(function() srv = httpserver.start() end)
    teardown(function() srv:robots(nil); srv:stop() end)
    before_each(function() srv:reset() end)

    it("refuses a disallowed URL with kind robots and sends nothing", function()
      srv:robots("User-agent: *\nDisallow: /bytes/\n")
      local c <close> = fetch.Client{ robots = true }
      local err = c:get(srv:url("/bytes/5")):error()
      assert.equal("robots", err.kind)
      assert.matches("disallows", err.message)
      assert.equal(srv:url("/bytes/5"), err.url)
      assert.equal(0, #srv:log("^/bytes"))
    end)

    it("raises kind robots from result()", function()
      srv:robots("User-agent: *\nDisallow: /\n")
      local c <close> = fetch.Client{ robots = true }
      raises("robots", "robots.txt", function() c:get(srv:url("/echo")):result() end)
    end)

    it("fetches an allowed URL", function()
      srv:robots("User-agent: *\nDisallow: /private\n")
      local c <close> = fetch.Client{ robots = true }
      assert.equal(200, c:get(srv:url("/bytes/5")):result().status)
    end)

    it("fetches robots.txt once per host", function()
      srv:robots("User-agent: *\nDisallow: /private\n")
      local c <close> = fetch.Client{ robots = true }
      local urls = {}
      for i = 1, 10 do urls[i] = srv:url("/bytes/1?i=" .. i) end
      c:get_all(urls)
      c:get(srv:url("/bytes/2")):result()
      assert.equal(1, #srv:log("^/robots.txt"))
      local log = srv:log()
      assert.equal("/robots.txt", log[1].path)
    end)

    it("refuses a redirect to a disallowed URL", function()
      srv:robots("User-agent: *\nDisallow: /bytes/\n")
      local c <close> = fetch.Client{ robots = true }
      local err = c:get(srv:url("/goto?url=/bytes/1")):error()
      assert.equal("robots", err.kind)
      assert.equal(0, #srv:log("^/bytes"))
    end)

    it("fetches robots.txt first on a host reached by several redirects", function()
      local srv2 = httpserver.start()
      srv:robots(nil)
      local c <close> = fetch.Client{ robots = true, per_host = 4 }
      local fs = {}
      for i = 1, 4 do
        fs[i] = c:get(srv:url("/goto?url=" .. srv2:url("/bytes/1?i=" .. i)))
      end
      for i = 1, 4 do assert.equal(200, fs[i]:result(10).status) end
      local log = srv2:log()
      srv2:stop()
      assert.equal("/robots.txt", log[1].path)
      assert.equal(5, #log)
    end)

    it("lowers the host's rate to the Crawl-delay", function()
      srv:robots("User-agent: *\nCrawl-delay: 0.2\n")
      local c <close> = fetch.Client{ robots = true, per_host = 4 }
      local urls = {}
      for i = 1, 6 do urls[i] = srv:url("/bytes/1?i=" .. i) end
      c:get_all(urls)
      local ts = httpserver.times(srv:log("^/bytes"))
      assert.equal(6, #ts)
      for i = 2, #ts do
        assert.is_true(ts[i] - ts[i - 1] >= 0.19, "gap " .. (ts[i] - ts[i - 1]))
      end
    end)

    it("allows everything when robots.txt is missing", function()
      srv:robots(nil)
      local c <close> = fetch.Client{ robots = true }
      assert.equal(200, c:get(srv:url("/bytes/1")):result().status)
    end)

    it("disallows everything when robots.txt answers 5xx", function()
      srv:robots("STATUS 503")
      local c <close> = fetch.Client{ robots = true, retries = 0 }
      local err = c:get(srv:url("/bytes/1")):error()
      assert.equal("robots", err.kind)
    end)

    it("leaves robots.txt alone when robots = false", function()
      srv:robots("User-agent: *\nDisallow: /\n")
      local c <close> = fetch.Client{}
      assert.equal(200, c:get(srv:url("/bytes/1")):result().status)
      assert.equal(0, #srv:log("^/robots.txt"))
    end)
  end)
end)
