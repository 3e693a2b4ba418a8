-- The fetch Client's options http2, cookies and autothrottle, against real
-- servers on 127.0.0.1: nginx (HTTP/2 over TLS) and the Python test server
-- (spec/helpers/httpserver.py). What happened is read from the servers'
-- logs: which connection and protocol carried each request, and when each
-- request started.
local helpers = require "helpers"
local httpserver = require "helpers.httpserver"
local nginx = require "helpers.nginx"
local fetch = require "concur.fetch"

local raises = helpers.raises

local function distinct(log, field)
  local seen, n = {}, 0
  for _, e in ipairs(log) do
    if not seen[e[field]] then seen[e[field]], n = true, n + 1 end
  end
  return n, seen
end

-- the gaps between the start times of a server log, in order
local function gaps(log)
  local ts, out = httpserver.times(log), {}
  for i = 2, #ts do out[#out + 1] = ts[i] - ts[i - 1] end
  return out
end

local function median(xs)
  local t = { table.unpack(xs) }
  table.sort(t)
  return t[(#t + 1) // 2]
end

describe("fetch.Client options", function()
  describe("http2", function()
    local srv
    local N = 40
    local urls = {}

    setup(function()
      if not nginx.available() then return end
      local files = {}
      for i = 1, N do files[("/p/%d.html"):format(i)] = ("<p>page %d</p>"):format(i) end
      srv = nginx.start{ tls = true, http2 = true, files = files }
      for i = 1, N do urls[i] = srv:url(("/p/%d.html"):format(i)) end
    end)

    teardown(function() if srv then srv:stop() end end)

    before_each(function()
      if not srv then pending("needs nginx (nginx-light)") return end
      srv:reset()
    end)

    it("speaks HTTP/2 where the server offers it, all streams on one connection", function()
      if not srv then return end
      local c <close> = fetch.Client{ verify = false, concurrency = 8, per_host = 8 }
      for i, r in ipairs(c:get_all(urls)) do
        assert.equal(200, r.status, tostring(r.message))
        assert.equal("2", r.http_version)
        assert.equal(("<p>page %d</p>"):format(i), r.body)
      end
      local log = srv:log(N)
      assert.equal(N, #log)
      local _, protos = distinct(log, "protocol")
      assert.same({ ["HTTP/2.0"] = true }, protos)
      assert.equal(1, distinct(log, "conn"))   -- multiplexed
    end)

    it("is the default", function()
      if not srv then return end
      local c <close> = fetch.Client{ verify = false }
      assert.equal("2", c:get(urls[1]):result().http_version)
    end)

    it("keeps to HTTP/1.1 with http2 = false, one request at a time per connection", function()
      if not srv then return end
      local c <close> = fetch.Client{ verify = false, concurrency = 8, per_host = 8, http2 = false }
      for _, r in ipairs(c:get_all(urls)) do
        assert.equal(200, r.status)
        assert.equal("1.1", r.http_version)
      end
      local log = srv:log(N)
      local _, protos = distinct(log, "protocol")
      assert.same({ ["HTTP/1.1"] = true }, protos)
      assert.is_true(distinct(log, "conn") > 1)
    end)

    it("still follows per_host: no more streams at once than it allows", function()
      if not srv then return end
      local c <close> = fetch.Client{ verify = false, per_host = 2 }
      for _, r in ipairs(c:get_all(urls)) do assert.equal("2", r.http_version) end
      assert.is_true(c:stats().requests == N)
    end)

    it("refuses a value that is not a boolean", function()
      raises("argument", "option 'http2' must be a boolean", function()
        fetch.Client{ http2 = "yes" }
      end)
    end)
  end)

  describe("with the test server", function()
    local srv

    setup(function()
      srv = httpserver.start()
      srv:site{
        ["/s/set"] = { status = 302, headers = { { "Set-Cookie", "a=1; Path=/" },
          { "Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/" },
          { "Location", "/echo" } }, body = "" },
        ["/s/one"] = { status = 200, headers = { { "Set-Cookie", "c=3; Path=/" } }, body = "one" },
      }
    end)

    teardown(function() if srv then srv:stop() end end)
    before_each(function() srv:reset() end)

    it("speaks HTTP/1.1 to a plain http server with http2 on", function()
      local c <close> = fetch.Client{}
      assert.equal("1.1", c:get(srv:url("/bytes/3")):result().http_version)
    end)

    describe("cookies", function()
      it("gives repeated Set-Cookie headers as a list, never joined with commas", function()
        local c <close> = fetch.Client{}
        local r = c:get(srv:url("/s/set"), { follow_redirects = false }):result()
        assert.same({ "a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/" },
          r.headers["set-cookie"])
        assert.same({ "c=3; Path=/" }, c:get(srv:url("/s/one")):result().headers["set-cookie"])
      end)

      it("sends none back by default", function()
        local c <close> = fetch.Client{}
        local r = c:get(srv:url("/s/set")):result()   -- on to /echo
        assert.equal(200, r.status)
        assert.not_matches("\nheader cookie:", r.body)
      end)

      it("keeps a jar with cookies = true, also across redirects", function()
        local c <close> = fetch.Client{ cookies = true }
        local r = c:get(srv:url("/s/set")):result()
        assert.equal(1, r.redirects)
        local line = r.body:match("\nheader cookie: ([^\r\n]*)")
        assert.truthy(line, r.body)
        local got = {}
        for kv in line:gmatch("[^;%s]+") do got[#got + 1] = kv end
        table.sort(got)
        assert.same({ "a=1", "b=2" }, got)
        -- and on a later request of the same client
        local again = c:get(srv:url("/echo")):result()
        assert.matches("\nheader cookie: [^\n]*a=1", again.body)
      end)

      it("gives each client its own jar", function()
        local c1 <close> = fetch.Client{ cookies = true }
        local c2 <close> = fetch.Client{ cookies = true }
        c1:get(srv:url("/s/one")):result()
        assert.matches("\nheader cookie: c=3", c1:get(srv:url("/echo")):result().body)
        assert.not_matches("\nheader cookie:", c2:get(srv:url("/echo")):result().body)
      end)

      it("keeps the jar for requests made from a thread", function()
        local concur = require "concur"
        local c <close> = fetch.Client{ cookies = true }
        local t = concur.spawn(function(client, u) return client:get(u):result().status end,
          c, srv:url("/s/one"))
        assert.same({ true, 200 }, { t:join(30) })
        assert.matches("\nheader cookie: c=3", c:get(srv:url("/echo")):result().body)
      end)
    end)

    describe("autothrottle", function()
      it("is off by default: 503s leave the rate alone", function()
        local c <close> = fetch.Client{ retries = 0 }
        for _ = 1, 3 do c:get(srv:url("/status/503")):result() end
        assert.equal(0, c:stats().throttled)
      end)

      it("lowers a host's rate at each 503 or 429 in a row", function()
        local c <close> = fetch.Client{ retries = 0, autothrottle = true }
        for i = 1, 4 do
          c:get(srv:url(i % 2 == 0 and "/status/429" or "/status/503")):result()
        end
        local g = gaps(srv:log("^/status"))
        assert.equal(3, #g)
        assert.is_true(g[1] >= 0.045, "first gap " .. g[1])
        assert.is_true(g[2] >= 0.095, "second gap " .. g[2])
        assert.is_true(g[3] >= 0.195, "third gap " .. g[3])
        assert.equal(4, c:stats().throttled)
      end)

      it("recovers slowly as the host answers again", function()
        local c <close> = fetch.Client{ retries = 0, autothrottle = true, per_host = 4 }
        c:get(srv:url("/status/503")):result()
        local urls = {}
        for i = 1, 80 do urls[i] = srv:url("/bytes/" .. i) end
        for _, r in ipairs(c:get_all(urls)) do assert.equal(200, r.status) end
        local g = gaps(srv:log("^/bytes"))
        -- the gap shrinks by 5% an answer: slow at first, gone at the end
        local first = { table.unpack(g, 1, 10) }
        local last = { table.unpack(g, #g - 9, #g) }
        local early = 0
        for _, x in ipairs(first) do early = early + x end
        assert.is_true(early >= 0.3, "first ten gaps took " .. early)
        assert.is_true(median(last) < median(first) / 2,
          ("gaps %.4f at first, %.4f at the end"):format(median(first), median(last)))
        assert.equal(1, c:stats().throttled)
      end)

      it("counts a burst of answers to requests in flight as one signal", function()
        local c <close> = fetch.Client{ retries = 0, autothrottle = true, per_host = 4 }
        local urls = {}
        for i = 1, 4 do urls[i] = srv:url("/status/503?n=" .. i) end
        c:get_all(urls)
        assert.equal(1, c:stats().throttled)
      end)

      it("lowers the rate of a host whose latency rises", function()
        local c <close> = fetch.Client{ retries = 0, autothrottle = true, per_host = 1 }
        for i = 1, 10 do c:get(srv:url("/bytes/" .. i)):result() end
        assert.equal(0, c:stats().throttled)
        for _ = 1, 2 do c:get(srv:url("/delay/0.2")):result() end
        assert.is_true(c:stats().throttled >= 1)
        srv:reset()
        for i = 1, 3 do c:get(srv:url("/bytes/" .. i)):result() end
        local g = gaps(srv:log("^/bytes"))
        for _, x in ipairs(g) do assert.is_true(x >= 0.01, "gap " .. x) end
      end)

      it("lets Retry-After win: the host waits as long as it says", function()
        local c <close> = fetch.Client{ retries = 0, autothrottle = true }
        c:get(srv:url("/status/503?retry_after=1")):result()
        c:get(srv:url("/bytes/1")):result()
        local ts = httpserver.times(srv:log())
        assert.equal(2, #ts)
        assert.is_true(ts[2] - ts[1] >= 0.95, "waited " .. (ts[2] - ts[1]))
      end)

      it("refuses a value that is not a boolean", function()
        raises("argument", "option 'autothrottle' must be a boolean", function()
          fetch.Client{ autothrottle = 1 }
        end)
        raises("argument", "option 'cookies' must be a boolean", function()
          fetch.Client{ cookies = 1 }
        end)
      end)
    end)
  end)
end)
