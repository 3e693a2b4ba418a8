-- fetch.urljoin, fetch.urlparse, fetch.urlnormalize: libcurl's URL API, with
-- RFC 3986 section 5.4's examples as the contract.
local helpers = require "helpers"
local fetch = require "concur.fetch"

local raises = helpers.raises
local BASE = "http://a/b/c/d;p?q"

describe("URLs", function()
  describe("fetch.urljoin", function()
    -- RFC 3986 section 5.4.1
    local normal = {
      { "g", "http://a/b/c/g" },
      { "./g", "http://a/b/c/g" },
      { "g/", "http://a/b/c/g/" },
      { "/g", "http://a/g" },
      { "//g", "http://g/" },   -- the RFC's "http://g", with its "/" path
      { "?y", "http://a/b/c/d;p?y" },
      { "g?y", "http://a/b/c/g?y" },
      { "#s", "http://a/b/c/d;p?q#s" },
      { "g#s", "http://a/b/c/g#s" },
      { "g?y#s", "http://a/b/c/g?y#s" },
      { ";x", "http://a/b/c/;x" },
      { "g;x", "http://a/b/c/g;x" },
      { "g;x?y#s", "http://a/b/c/g;x?y#s" },
      { "", "http://a/b/c/d;p?q" },
      { ".", "http://a/b/c/" },
      { "./", "http://a/b/c/" },
      { "..", "http://a/b/" },
      { "../", "http://a/b/" },
      { "../g", "http://a/b/g" },
      { "../..", "http://a/" },
      { "../../", "http://a/" },
      { "../../g", "http://a/g" },
    }
    -- RFC 3986 section 5.4.2
    local abnormal = {
      { "../../../g", "http://a/g" },
      { "../../../../g", "http://a/g" },
      { "/./g", "http://a/g" },
      { "/../g", "http://a/g" },
      { "g.", "http://a/b/c/g." },
      { ".g", "http://a/b/c/.g" },
      { "g..", "http://a/b/c/g.." },
      { "..g", "http://a/b/c/..g" },
      { "./../g", "http://a/b/g" },
      { "./g/.", "http://a/b/c/g/" },
      { "g/./h", "http://a/b/c/g/h" },
      { "g/../h", "http://a/b/c/h" },
      { "g;x=1/./y", "http://a/b/c/g;x=1/y" },
      { "g;x=1/../y", "http://a/b/c/y" },
      { "g?y/./x", "http://a/b/c/g?y/./x" },
      { "g?y/../x", "http://a/b/c/g?y/../x" },
      { "g#s/./x", "http://a/b/c/g#s/./x" },
      { "g#s/../x", "http://a/b/c/g#s/../x" },
    }

    it("gives RFC 3986's answers to its normal examples", function()
      for _, c in ipairs(normal) do
        assert.equal(c[2], fetch.urljoin(BASE, c[1]), "ref " .. c[1])
      end
    end)

    it("gives RFC 3986's answers to its abnormal examples", function()
      for _, c in ipairs(abnormal) do
        assert.equal(c[2], fetch.urljoin(BASE, c[1]), "ref " .. c[1])
      end
    end)

    it("refuses references to other schemes, or to none, with kind argument", function()
      for _, ref in ipairs{ "g:h", "http:g", "mailto:a@b", "ftp://x/y",
          "javascript:void(0)" } do
        raises("argument", "bad argument #2 to 'urljoin'", function()
          fetch.urljoin(BASE, ref)
        end)
      end
    end)

    it("refuses a base that is not an absolute http(s) URL", function()
      for _, base in ipairs{ "/relative/path", "file:///etc/passwd", "not a url" } do
        raises("argument", "bad argument #1 to 'urljoin'", function()
          fetch.urljoin(base, "g")
        end)
      end
    end)

    it("joins a query-only reference to the page, not its directory", function()
      assert.equal("http://h/list?page=2", fetch.urljoin("http://h/list?page=1", "?page=2"))
      assert.equal("http://h/a/list?page=2", fetch.urljoin("http://h/a/list", "list?page=2"))
    end)

    it("takes an absolute reference as it is", function()
      assert.equal("https://other.example/x?y#z",
        fetch.urljoin(BASE, "https://other.example/x?y#z"))
    end)

    it("drops the base's fragment", function()
      assert.equal("http://a/b?q", fetch.urljoin("http://a/b?q#frag", ""))
      assert.equal("http://a/b?q#new", fetch.urljoin("http://a/b?q#frag", "#new"))
    end)

    it("cleans an href as a browser does", function()
      assert.equal("http://a/b/c/g", fetch.urljoin(BASE, "  g\n "))
      assert.equal("http://a/b/c/gh", fetch.urljoin(BASE, "g\t\nh"))
      assert.equal("http://a/b/c/a%20b", fetch.urljoin(BASE, "a b"))
      assert.equal("http://a/b/c/%C3%A9t%C3%A9", fetch.urljoin(BASE, "été"))
      assert.equal("http://a/b/c/%22q%22", fetch.urljoin(BASE, '"q"'))
    end)

    it("refuses strings with NUL bytes and non-strings", function()
      raises("argument", "NUL", function() fetch.urljoin(BASE, "g\0h") end)
      raises("argument", "NUL", function() fetch.urljoin(BASE .. "\0", "g") end)
      raises("argument", "string expected, got no value", function() fetch.urljoin(BASE) end)
    end)

    it("refuses a URL longer than 64 KiB", function()
      raises("argument", "too long", function()
        fetch.urljoin(BASE, "/" .. ("x"):rep(70000))
      end)
    end)
  end)

  describe("fetch.urlnormalize", function()
    it("lower-cases scheme and host, drops the default port", function()
      assert.equal("http://host/", fetch.urlnormalize("HTTP://HOST:80/"))
      assert.equal("https://host/a", fetch.urlnormalize("https://Host:443/a"))
      assert.equal("http://host:8080/", fetch.urlnormalize("http://host:8080"))
    end)

    it("removes dot segments", function()
      assert.equal("http://h/a/b", fetch.urlnormalize("http://h/a/./b"))
      assert.equal("http://h/a/b", fetch.urlnormalize("http://h/a/../a/b"))
      assert.equal("http://h/b", fetch.urlnormalize("http://h/a/%2E%2E/b"))
    end)

    it("normalises percent-encoding in the path", function()
      assert.equal("http://h/~user/A", fetch.urlnormalize("http://h/%7euser/%41"))
      assert.equal(fetch.urlnormalize("http://h/%7Euser"), fetch.urlnormalize("http://h/~user"))
      assert.equal("http://h/a%2Fb%C3%A9", fetch.urlnormalize("http://h/a%2fb%c3%a9"))
    end)

    it("gives an empty path as / and drops the fragment", function()
      assert.equal("http://h/", fetch.urlnormalize("http://h"))
      assert.equal("http://h/p?x=1", fetch.urlnormalize("http://h/p?x=1#section"))
    end)

    it("writes a % that starts no escape as %25, so it is stable", function()
      assert.equal("http://h/100%25/a%25zz", fetch.urlnormalize("http://h/100%/a%zz"))
      local once = fetch.urlnormalize("http://h/%5%30")
      assert.equal(once, fetch.urlnormalize(once))
    end)

    it("refuses a host name that would not parse again", function()
      raises("argument", "bad host name", function() fetch.urlnormalize("http://a%25b/") end)
    end)

    it("keeps the query as it is", function()
      assert.equal("http://h/?b=2&a=1&c=%7e", fetch.urlnormalize("http://h/?b=2&a=1&c=%7e"))
    end)

    it("gives one form for every spelling of a page", function()
      local spellings = { "http://127.0.0.1:8080/a/b", "HTTP://127.0.0.1:8080/a/./b",
        "http://127.0.0.1:8080/a/../a/b", "http://127.0.0.1:8080/%61/b#top",
        "http://127.0.0.1:8080/a/b/../b" }
      for _, u in ipairs(spellings) do
        assert.equal("http://127.0.0.1:8080/a/b", fetch.urlnormalize(u), u)
      end
    end)

    it("refuses other schemes and malformed URLs", function()
      for _, u in ipairs{ "ftp://h/x", "mailto:a@b", "/relative", "http://" } do
        raises("argument", "bad argument #1 to 'urlnormalize'", function()
          fetch.urlnormalize(u)
        end)
      end
    end)
  end)

  describe("fetch.urlparse", function()
    it("splits a URL into its parts", function()
      local p = fetch.urlparse("https://me:secret@Example.ORG:8443/a/b?x=1&y=2#frag")
      assert.same({ scheme = "https", user = "me", password = "secret",
        host = "example.org", port = 8443, path = "/a/b", query = "x=1&y=2",
        fragment = "frag" }, p)
    end)

    it("gives the scheme's default port and leaves absent parts out", function()
      assert.same({ scheme = "http", host = "h", port = 80, path = "/" },
        fetch.urlparse("http://h"))
      assert.equal(443, fetch.urlparse("https://h/").port)
    end)

    it("refuses what libcurl cannot parse", function()
      raises("argument", "malformed URL", function() fetch.urlparse("http://h:99999/") end)
      raises("argument", "NUL", function() fetch.urlparse("http://h/\0") end)
    end)
  end)
end)
