-- robots.txt: the engine's rules (RFC 9309) and a client with robots = true
-- against the test server on 127.0.0.1.
local helpers = require "helpers"
local httpserver = require "helpers.httpserver"
local concur = require "concur"
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

    it("matches stars and ends exactly", function()
      local function m(rule, path)
        return not allowed("User-agent: *\nDisallow: " .. rule .. "\n", path)
      end
      assert.is_true(m("/$", "/"))
      assert.is_false(m("/$", "/a"))
      assert.is_true(m("/*", "/anything"))
      assert.is_true(m("/a*b$", "/axxb"))
      assert.is_false(m("/a*b$", "/axxbc"))
      assert.is_true(m("/a**b", "/ab"))
      assert.is_true(m("/a*b*b$", "/abb"))
      assert.is_false(m("/a*bc*bc$", "/abc"))
      assert.is_true(m("*x", "/yx"))
      assert.is_false(m("/ab*", "/a"))
    end)

    it("matches a hostile pattern in time linear in its size", function()
      local ok, code, out = helpers.run_lua([[
        local core = require "concur.core"
        local txt = "User-agent: *\nDisallow: /" .. ("*a"):rep(200000) .. "$\n"
        local path = "/" .. ("a"):rep(60000) .. "b"
        print(core.fetch.robots(txt, "x", path))
      ]], 20)
      assert.is_true(ok, out .. " exit " .. tostring(code))
      assert.matches("true", out)
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
      -- slots 0.2 s apart: no start ahead of its slot, each late by at most
      -- a prompt wake-up (a late start followed by one on time is a
      -- shorter gap, not a faster rate)
      for i = 2, #ts do
        for j = 1, i - 1 do
          local span = ts[i] - ts[j]
          assert.is_true(span >= (i - j) * 0.2 - helpers.prompt(0.01),
            ("starts %d and %d %.3f s apart"):format(j, i, span))
        end
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

    it("asks for a missing robots.txt once, not at every request", function()
      srv:robots(nil)
      local c <close> = fetch.Client{ robots = true }
      assert.equal(200, c:get(srv:url("/bytes/1")):result().status)
      assert.equal(200, c:get(srv:url("/bytes/2")):result().status)
      assert.equal(1, #srv:log("^/robots.txt"))
    end)

    it("leaves robots.txt alone when robots = false", function()
      srv:robots("User-agent: *\nDisallow: /\n")
      local c <close> = fetch.Client{}
      assert.equal(200, c:get(srv:url("/bytes/1")):result().status)
      assert.equal(0, #srv:log("^/robots.txt"))
    end)
  end)

  -- Every way a robots.txt fetch can end settles its host (RFC 9309): 4xx
  -- and redirects that cannot be followed allow everything; 429, 5xx and no
  -- answer disallow everything for robots_retry seconds. And a request never
  -- waits for robots.txt longer than its own timeout. result(10) and
  -- error(10) are guards: a host left waiting for ever raises kind timeout.
  describe("a robots.txt that cannot be fetched", function()
    local srv

    setup(function() srv = httpserver.start() end)
    teardown(function() srv:robots(nil); srv:stop() end)
    before_each(function() srv:reset() end)

    it("allows everything when its redirect is refused (another scheme)", function()
      srv:robots("REDIRECT file:///etc/passwd")
      local c <close> = fetch.Client{ robots = true }
      assert.equal(200, c:get(srv:url("/bytes/1")):result(10).status)
      assert.equal(1, #srv:log("^/robots.txt"))
    end)

    it("allows everything after five redirects in a loop", function()
      srv:robots("REDIRECT /robots.txt")
      local c <close> = fetch.Client{ robots = true }
      assert.equal(200, c:get(srv:url("/bytes/1")):result(10).status)
      assert.equal(6, #srv:log("^/robots.txt"))   -- the first and five redirects
      assert.equal(200, c:get(srv:url("/bytes/2")):result(10).status)
      assert.equal(6, #srv:log("^/robots.txt"))   -- settled: not asked again
    end)

    it("follows a redirect to the rules", function()
      srv:robots("REDIRECT /text?s=User-agent:%20*%0ADisallow:%20/bytes/")
      local c <close> = fetch.Client{ robots = true }
      local err = c:get(srv:url("/bytes/1")):error(10)
      assert.equal("robots", err.kind)
      assert.matches("disallows", err.message)
      assert.equal(0, #srv:log("^/bytes"))
      assert.equal(200, c:get(srv:url("/echo")):result(10).status)
    end)

    it("fails a waiting request at its own timeout when robots.txt never answers", function()
      srv:robots("HANG")
      local c <close> = fetch.Client{ robots = true, timeout = 60 }
      local t0 = concur.monotonic()
      local err = c:get(srv:url("/bytes/1"), { timeout = 0.5 }):error(10)
      assert.equal("network", err.kind)
      assert.equal(28, err.code)
      assert.matches("waiting for robots.txt", err.message)
      assert.is_true(concur.monotonic() - t0 < 5)
      assert.equal(0, #srv:log("^/bytes"))
    end)

    it("fails every waiting request at its own timeout, in any order", function()
      srv:robots("HANG")
      local c <close> = fetch.Client{ robots = true, timeout = 60 }
      local slow = c:get(srv:url("/bytes/1"), { timeout = 2 })
      local quick = c:get(srv:url("/bytes/2"), { timeout = 0.3 })
      assert.equal(28, quick:error(10).code)
      assert.is_false(slow:done())
      assert.equal(28, slow:error(10).code)
    end)

    it("disallows everything when robots.txt times out, and says why", function()
      srv:robots("HANG")
      local c <close> = fetch.Client{ robots = true, timeout = 0.3, retries = 0 }
      local err = c:get(srv:url("/bytes/1"), { timeout = 30 }):error(10)
      assert.equal("robots", err.kind)
      assert.matches("could not be fetched", err.message)
      assert.matches("timed out", err.message)
      assert.equal(0, #srv:log("^/bytes"))
    end)

    it("disallows everything when the host does not answer", function()
      local c <close> = fetch.Client{ robots = true, retries = 0 }
      local err = c:get("http://127.0.0.1:1/page"):error(10)
      assert.equal("robots", err.kind)
      assert.matches("robots.txt of http://127.0.0.1:1 could not be fetched", err.message, 1, true)
    end)

    it("disallows everything on 500, then asks again after robots_retry", function()
      srv:robots("STATUS 500")
      local c <close> = fetch.Client{ robots = true, retries = 0, robots_retry = 0 }
      local err = c:get(srv:url("/bytes/1")):error(10)
      assert.equal("robots", err.kind)
      assert.matches("HTTP 500", err.message)
      srv:robots("User-agent: *\nDisallow: /private\n")
      assert.equal(200, c:get(srv:url("/bytes/1")):result(10).status)
      assert.equal(2, #srv:log("^/robots.txt"))
      assert.equal(1, #srv:log("^/bytes"))
    end)

    it("keeps disallowing within robots_retry without asking again", function()
      srv:robots("STATUS 503")
      local c <close> = fetch.Client{ robots = true, retries = 0, robots_retry = 3600 }
      assert.equal("robots", c:get(srv:url("/bytes/1")):error(10).kind)
      srv:robots(nil)
      assert.equal("robots", c:get(srv:url("/bytes/2")):error(10).kind)
      assert.equal(1, #srv:log("^/robots.txt"))
      assert.equal(0, #srv:log("^/bytes"))
    end)

    it("retries a 5xx robots.txt with the client's retries first", function()
      srv:robots("STATUS 502")
      local c <close> = fetch.Client{ robots = true, retries = 2, backoff = 0.01 }
      assert.equal("robots", c:get(srv:url("/bytes/1")):error(10).kind)
      assert.equal(3, #srv:log("^/robots.txt"))
    end)

    it("treats 429 as unreachable, not as missing", function()
      srv:robots("STATUS 429")
      local c <close> = fetch.Client{ robots = true, retries = 0 }
      assert.equal("robots", c:get(srv:url("/bytes/1")):error(10).kind)
    end)

    it("allows everything on 404 and 403", function()
      for _, st in ipairs{ "STATUS 404", "STATUS 403" } do
        srv:robots(st)
        local c <close> = fetch.Client{ robots = true, retries = 0 }
        assert.equal(200, c:get(srv:url("/bytes/1")):result(10).status)
      end
    end)

    it("rejects a negative robots_retry", function()
      raises("argument", "option 'robots_retry'", function()
        fetch.Client{ robots_retry = -1 }
      end)
    end)
  end)
end)
