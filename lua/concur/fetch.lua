--- concur.fetch: rate-limited, concurrent HTTP fetching on libcurl.
--
-- The engine (csrc/core/fetch_engine.c) does the work on its own thread:
-- per-host queues, `concurrency` and `per_host` limits, a GCRA rate limit
-- per scheme+host+port, retries with backoff, Retry-After, redirects,
-- robots.txt. This module adds what reads better in Lua: `get_all` with its
-- progress line, and the blocking `fetch.get` on a default client.
--
-- A Response is a table { status, ok, url, headers, body, elapsed,
-- attempts, redirects } whose metatable gives it `raise_for_status`;
-- `future:result()` returns one in any state, and a Response sent on to
-- another state (a queue, a thread, a pool task's result) arrives with its
-- methods too. `fetch.response(t)` gives a plain table the methods.
--
--     local fetch = require "concur.fetch"
--     local client <close> = fetch.Client{ rate = 2, per_host = 2 }
--     local resp = client:get("https://example.org/"):result()
--     resp:raise_for_status()
-- @module concur.fetch

local core = require "concur.core"
local cf = core.fetch

local M = {
  _VERSION = core._VERSION,
  --- fetch.response(t) --> t with the Response methods (see above).
  response = cf.response,
  --- fetch.is_response(v) --> true when v has the Response methods.
  is_response = cf.is_response,
}

--- fetch.urljoin(base, ref) --> the absolute URL of `ref` on the page at
-- `base` (RFC 3986 section 5, by libcurl's URL API). Blanks around `ref`
-- are dropped and spaces or non-ASCII bytes percent-encoded, as browsers do
-- with an href. Raises kind "argument" when `base` is not an absolute
-- http(s) URL or the result would not be one (`mailto:x`, `g:h`).
M.urljoin = core.url.join

--- fetch.urlparse(url) --> { scheme, user, password, host, port, path,
-- query, fragment }: the parts present; host in lower case, port an integer
-- (the scheme's default when the URL names none). Raises kind "argument".
M.urlparse = core.url.parse

--- fetch.urlnormalize(url) --> the canonical form of an http(s) URL, the one
-- the crawler de-duplicates on: scheme and host in lower case, default port
-- dropped, dot segments removed, percent-escapes of the path in upper case
-- and unreserved characters decoded, empty path "/", fragment dropped, the
-- query as it is. Raises kind "argument" for anything else.
M.urlnormalize = core.url.normalize

--- fetch.html(body [, url [, opts]]) --> a Document: the page parsed by
-- libxml2's HTML parser (the one under lxml and Scrapy), with recovery
-- (malformed HTML never raises) and with nothing loaded from the network
-- or from files. `url` is the page's address, which links are resolved
-- against (with its `<base href>`). opts: `max_size` (bytes, 16 MiB; a
-- larger body raises kind "limit"), `encoding` (when the page does not say).
-- `resp:html([opts])` does the same for a Response. A Document has
-- `title()`, `links()`, `find_all(tag [, attrs])`, `xpath(expr)`, `text()`,
-- `robots()`, `close()` and the fields `url` and `base`; an Element has
-- `tag`, `attrs`, `text()`, `attr(name)`, `find_all`, `xpath`.
M.html = core.html.parse

--- fetch.Crawler(opts) --> a polite, resumable, breadth-first crawler (see
-- concur.crawler): `items()`, `run{ on_item = fn }`, `stats()`, `stop()`.
function M.Crawler(opts)
  return require("concur.crawler").new(opts)
end

--- fetch.Frontier([opts]) --> the crawler's local frontier (opts: `state`,
-- a journal path; `compact_at`, bytes): `push`, `pop`, `done`, `seen`,
-- `size`, `stats`, `load`, `save`, `close` (see concur.crawler).
M.Frontier = core.frontier

--- A new client.
-- @tparam[opt] table opts concurrency (16), per_host (4), rate (nil: none;
--  requests per `per` seconds per host), per (1), burst (1), retries (3),
--  backoff (0.5), max_backoff (30), retry_on ({429,500,502,503,504}),
--  timeout (30), connect_timeout (10), low_speed_limit (1 byte/s) and
--  low_speed_time (30 s), max_body (16 MiB), max_redirects (5), user_agent,
--  headers ({}), robots (false), robots_retry (60: seconds before a
--  robots.txt that could not be fetched is asked for again; meanwhile its
--  host is disallowed), verify (true)
-- @return a Client, shared by reference with tasks and threads
M.Client = cf.Client

local progress_option = require("concur.progress").option

local GET_ALL_OPTS = {
  progress = true, headers = true, timeout = true, connect_timeout = true,
  retries = true, max_body = true, max_redirects = true,
}

--- Fetches every URL; waits for all.
-- @param client a Client
-- @tparam table urls an array of URLs (all checked before anything is sent)
-- @tparam[opt] table opts the options of `client:get`, and `progress`:
--  true (concur.progress: a line redrawn on stderr when it is a terminal,
--  else a summary line at the end), `function(done, total, failed)`, or an
--  object with update and finish methods
-- @return an array, in the order of `urls`, of Responses and error objects
-- @function client:get_all
function M._get_all(client, urls, opts)
  local Error = core.Error
  if type(urls) ~= "table" then
    error(Error.new("argument", string.format(
      "bad argument #1 to 'get_all' (table expected, got %s)", type(urls))), 2)
  end
  local reqopts, progress
  if opts ~= nil then
    if type(opts) ~= "table" then
      error(Error.new("argument", string.format(
        "bad argument #2 to 'get_all' (table expected, got %s)", type(opts))), 2)
    end
    reqopts = {}
    for k, v in pairs(opts) do
      if not GET_ALL_OPTS[k] then
        error(Error.new("argument", string.format(
          "bad argument #2 to 'get_all' (unknown option '%s')", tostring(k))), 2)
      end
      if k == "progress" then progress = v else reqopts[k] = v end
    end
  end
  local n = #urls
  local report = progress_option(progress, "get_all", n, "get_all")
  local batch = cf.submit_all(client, urls, reqopts)   -- checks all first
  if report then
    local last = -1
    while n > 0 do
      local left = batch:wait(0.1)
      if n - left ~= last then
        last = n - left
        report:update(last, batch:failed())
      end
      if left == 0 then break end
    end
    if n == 0 then report:update(0, 0) end
    report:finish()
  end
  return batch:results()
end

local default

--- The client `fetch.get` uses (one per Lua state, made on first use with
-- the default options; after `close` the next call makes a new one).
function M.default_client()
  if default == nil or default:closed() then default = cf.Client() end
  return default
end

--- Fetches one URL on the default client, blocking.
-- @tparam string url
-- @tparam[opt] table opts the options of `client:get`
-- @return a Response; raises kind "network", "limit", "robots", "argument"
function M.get(url, opts)
  return M.default_client():get(url, opts):result()
end

return M
