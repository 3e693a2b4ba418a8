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

--- A new client.
-- @tparam[opt] table opts concurrency (16), per_host (4), rate (nil: none;
--  requests per `per` seconds per host), per (1), burst (1), retries (3),
--  backoff (0.5), max_backoff (30), retry_on ({429,500,502,503,504}),
--  timeout (30), connect_timeout (10), low_speed_limit (1 byte/s) and
--  low_speed_time (30 s), max_body (16 MiB), max_redirects (5), user_agent,
--  headers ({}), robots (false), verify (true)
-- @return a Client, shared by reference with tasks and threads
M.Client = cf.Client

-- Is stderr a terminal? (core.isatty comes with the foundation)
local function stderr_is_tty()
  return core.isatty ~= nil and core.isatty(2)
end

local function progress_line(done, total, failed)
  io.stderr:write(string.format("\rfetch: %d/%d done%s\27[K", done, total,
    failed > 0 and string.format(", %d failed", failed) or ""))
  if done == total then io.stderr:write("\n") end
  io.stderr:flush()
end

local GET_ALL_OPTS = {
  progress = true, headers = true, timeout = true, connect_timeout = true,
  retries = true, max_body = true, max_redirects = true,
}

--- Fetches every URL; waits for all.
-- @param client a Client
-- @tparam table urls an array of URLs (all checked before anything is sent)
-- @tparam[opt] table opts the options of `client:get`, and `progress`:
--  true (a progress line on stderr when it is a terminal) or
--  `function(done, total)`
-- @return an array, in the order of `urls`, of Responses and error objects
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
  local batch = cf.submit_all(client, urls, reqopts)   -- checks all first
  local report
  if type(progress) == "function" then report = progress
  elseif progress and stderr_is_tty() then report = progress_line end
  if report and n > 0 then
    local last = -1
    repeat
      local left = batch:wait(0.1)
      if n - left ~= last then
        last = n - left
        report(last, n, batch:failed())
      end
    until left == 0
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
