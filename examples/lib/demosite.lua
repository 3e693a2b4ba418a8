--- A small web site on 127.0.0.1, served by concur threads, for lesson 5.
--
-- Several daemon threads share one listening socket (LuaSocket): each
-- accepts a connection, answers one request and closes it, so slow pages
-- never hold up the others. The site has an index, sections of articles
-- linking to each other, a few slow pages, a broken link, `/busy` (429 with
-- Retry-After: 1 on its first request after a reset), `/flaky` (500 twice,
-- then 200), `/private/...` (disallowed by robots.txt), `/whoami` (echoes
-- the User-Agent) and `/slow?s=N` (answers after N seconds, at most 5).
-- It binds 127.0.0.1 only, on a port the kernel picks.
--
--     local demosite = require "demosite"
--     local site = demosite.start{ sections = 4, pages = 10 }
--     print(site.base, #site:urls())
--     site:stop()
-- @module demosite

local concur = require "concur"

local M = {}
M.__index = M

--- The site's pages: path -> { title, links, slow } (a pure function of the
-- shape, so every server thread builds the same table).
local function build_pages(sections, pages, slow)
  local site = {}
  local index_links = {}
  for k = 1, sections do index_links[#index_links + 1] = "/section/" .. k end
  for _, p in ipairs { "/about", "/busy", "/flaky", "/private/secret" } do
    index_links[#index_links + 1] = p
  end
  site["/"] = { title = "concur demo shop", links = index_links }
  site["/about"] = { title = "About the demo shop", links = { "/" } }
  site["/private/secret"] = { title = "Staff only", links = { "/" } }
  for k = 1, sections do
    local links = { "/" }
    for j = 1, pages do links[#links + 1] = ("/page/%d/%d"):format(k, j) end
    site["/section/" .. k] = { title = "Section " .. k, links = links }
    for j = 1, pages do
      local plinks = { "/", "/section/" .. k, ("/page/%d/%d"):format(k, j % pages + 1),
        ("/page/%d/%d"):format(k % sections + 1, j) }
      if k == 1 and j == 1 then plinks[#plinks + 1] = "/page/1/999" end  -- a broken link
      site[("/page/%d/%d"):format(k, j)] = { title = ("Article %d.%d"):format(k, j),
        links = plinks, slow = (j % 4 == 0) and slow or nil, article = true }
    end
  end
  return site
end

local function html(title, links, text)
  local out = { "<!doctype html>\n<html><head><title>", title, "</title></head>\n<body><h1>",
    title, "</h1>\n<p>", text or "Some text about " .. title:lower() .. ".", "</p>\n<ul>\n" }
  for _, l in ipairs(links or {}) do
    out[#out + 1] = ('<li><a href="%s">%s</a></li>\n'):format(l, l)
  end
  out[#out + 1] = "</ul></body></html>\n"
  return table.concat(out)
end

local REASON = { [200] = "OK", [404] = "Not Found", [429] = "Too Many Requests",
  [500] = "Internal Server Error" }

-- The number after "s=" in a query string such as "s=3&x=1", or nil.
local function query_number(query, name)
  for pair in (query or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k == name then return tonumber(v) end
  end
end

-- Answers one request: returns status, body, extra header lines. The
-- request's target is split by fetch.urlparse, as any URL.
local function route(st, pages, target, headers)
  local fetch = require "concur.fetch"
  local ok, url = pcall(fetch.urlparse, "http://site" .. target)
  if not ok then return 404, html("Not found", { "/" }) end
  local bare = url.path
  if bare == "/robots.txt" then
    return 200, "User-agent: *\nDisallow: /private/\n", "Content-Type: text/plain\r\n"
  elseif bare == "/whoami" then
    return 200, html("Who am I", {}, "You are " .. (headers["user-agent"] or "anonymous"))
  elseif bare == "/slow" then
    local s = math.min(query_number(url.query, "s") or 1, 5)
    st.stop:wait(s)                -- a sleep that ends early when the site stops
    return 200, html("Slow page", {}, ("This took %g s."):format(s))
  elseif bare == "/busy" and st.busy:add(1) == 1 then
    return 429, html("Too many requests", {}), "Retry-After: 1\r\n"
  elseif bare == "/flaky" and st.flaky:add(1) <= 2 then
    return 500, html("Internal error", {}, "Please try again.")
  elseif bare == "/busy" then
    return 200, html("Busy page", { "/" }, "Thank you for waiting.")
  elseif bare == "/flaky" then
    return 200, html("Flaky page", { "/" }, "Third time lucky.")
  end
  local page = pages[bare]
  if not page then return 404, html("Not found", { "/" }) end
  if page.slow then st.stop:wait(page.slow) end
  return 200, html(page.title, page.links)
end

-- One server thread: accepts on the shared listening socket until stopped.
local function serve(fd, st)
  local socket = require "socket"
  local pages = build_pages(st.sections, st.pages, st.slow)
  local server = socket.tcp()
  server:setfd(fd)
  assert(server:listen(64))        -- the socket already listens: this only types it
  server:settimeout(0.1)
  local served = 0
  while not st.stop:is_set() do
    local c = server:accept()
    if c then
      c:settimeout(5)
      local line = c:receive("*l")
      local headers = {}
      while line do
        local h = c:receive("*l")
        if not h or h == "" then break end
        local k, v = h:match("^([^:]+):%s*(.-)%s*$")
        if k then headers[k:lower()] = v end
      end
      local path = line and line:match("^%u+ (%S+)")
      if path then
        st.requests:put({ t = concur.monotonic(), path = path, ua = headers["user-agent"] })
        local status, body, extra = route(st, pages, path, headers)
        c:send(("HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
          .. "Connection: close\r\n%s\r\n"):format(status, REASON[status] or "", #body, extra or "")
          .. body)
        served = served + 1
      end
      c:close()
    end
  end
  server:setfd(-1)                 -- the listening socket is the main state's
  return served
end

--- Starts the site. opts: sections (4), pages per section (10), slow
-- (seconds the slow pages take, 0.3), threads (8).
-- @return a site: `base` (its URL), `port`, and the methods below
function M.start(opts)
  opts = opts or {}
  local socket = require "socket"
  local listener = assert(socket.bind("127.0.0.1", 0))
  local _, port = listener:getsockname()
  local st = { sections = opts.sections or 4, pages = opts.pages or 10, slow = opts.slow or 0.3,
    stop = concur.Event(), busy = concur.Value(0), flaky = concur.Value(0),
    requests = concur.Queue() }
  local self = setmetatable({ port = tonumber(port), base = "http://127.0.0.1:" .. port,
    listener = listener, st = st, threads = {}, seen = {} }, M)
  self.pages = build_pages(st.sections, st.pages, st.slow)
  for i = 1, opts.threads or 8 do
    self.threads[i] = concur.spawn{ serve, args = { listener:getfd(), st },
      name = "http-" .. i, daemon = true }
  end
  return self
end

--- The URL of a path.
function M:url(path)
  return self.base .. path
end

--- URLs of every page that exists (articles, sections, index, about, and
-- the special pages last), sorted.
function M:urls()
  local paths, special = {}, { ["/busy"] = true, ["/flaky"] = true, ["/private/secret"] = true }
  for p in pairs(self.pages) do
    if not special[p] then paths[#paths + 1] = p end
  end
  table.sort(paths)
  for _, p in ipairs { "/private/secret", "/flaky", "/busy" } do paths[#paths + 1] = p end
  local out = {}
  for i, p in ipairs(paths) do out[i] = self.base .. p end
  return out
end

--- URLs of the article pages only, sorted.
function M:articles()
  local out = {}
  for p, page in pairs(self.pages) do
    if page.article then out[#out + 1] = self.base .. p end
  end
  table.sort(out)
  return out
end

--- The requests the server has seen since the last reset: an array of
-- { t (concur.monotonic()), path, ua }, optionally only paths matching a
-- Lua pattern.
function M:log(pattern)
  while true do
    local ok, e = self.st.requests:try_get()
    if not ok then break end
    self.seen[#self.seen + 1] = e
  end
  local out = {}
  for _, e in ipairs(self.seen) do
    if not pattern or e.path:match(pattern) then out[#out + 1] = e end
  end
  return out
end

--- Forgets the log and rearms /busy and /flaky.
function M:reset()
  self:log()
  self.seen = {}
  self.st.busy:set(0)
  self.st.flaky:set(0)
end

--- Stops the server threads and closes the socket; returns the number of
-- requests each thread served.
function M:stop()
  self.st.stop:set()
  local served = {}
  for i, t in ipairs(self.threads) do
    local ok, n = t:join(10)
    served[i] = ok and n or 0
  end
  self.listener:close()
  return served
end

return M
