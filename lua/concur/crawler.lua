--- concur.crawler: fetch.Crawler, a polite, resumable, breadth-first crawler
-- on a fetch.Client, libxml2's HTML parser and a frontier.
--
--     local fetch = require "concur.fetch"
--     local crawler = fetch.Crawler{ start = { "https://example.org/" },
--       max_depth = 3, state = "crawl.journal" }
--     for item, resp in crawler:items() do print(item.url, item.title) end
--
-- The work is split as the rest of concur splits it. The Client does the
-- politeness: per-host concurrency and rate, robots.txt Disallow and
-- Crawl-delay, retries, Retry-After. The frontier keeps what is left to
-- fetch, per host and least deep first, and what was seen: 64-bit
-- fingerprints of canonical URLs, at most 16 bytes each (fetch.Frontier, in
-- C, journaled when `state` names a file). This module decides: what to
-- follow (allow, max_depth, meta robots, rel=nofollow), what a page is worth
-- (parse), when to stop (max_pages, stop()), and it keeps the counters.
--
-- One crawl step: take entries from the frontier, each host at most twice
-- its per_host transfers in flight (the crawl as many as the client's
-- concurrency, twice: the client's queues stay fed), fetch them without
-- following redirects, and react to each as it completes (a stream of
-- completions in C: one wake-up each, no scan). A redirect's target goes
-- back through the frontier at the same depth, so a page reached by two
-- paths, or a loop, is fetched once, and it counts once. A page's links
-- are pushed before the page is marked done, so a crash between the two
-- fetches the page again rather than lose its links.
--
-- The frontier object: anything with push, pop, done, seen, size, stats,
-- load, save and close, as fetch.Frontier has (see csrc/frontier.c); pass
-- it as `frontier` (a Redis one shares a crawl between machines).
-- @module concur.crawler

local core = require "concur.core"
local progress = require "concur.progress"

local Error = core.Error
local cf, url = core.fetch, core.url
local type, ipairs, pairs, pcall, tostring = type, ipairs, pairs, pcall, tostring
local min = math.min

local M = {}

local Crawler = {}
Crawler.__index = Crawler
Crawler.__name = "concur.fetch.Crawler"

local function raise(kind, fmt, ...)
  error(Error.new(kind, fmt:format(...)), 3)
end

local OPTS = {
  start = true, allow = true, max_depth = true, max_pages = true, robots = true,
  state = true, client = true, parse = true, workers = true, progress = true,
  frontier = true, max_redirects = true, inflight = true,
}

-- "host:port" of a canonical URL (the scheme's port when none is named)
local function hostport(u)
  local scheme, auth = u:match("^(%a+)://([^/]*)")
  if not auth then return nil end
  auth = auth:match("@(.*)$") or auth
  if auth:match(":%d+$") then return auth end
  return auth .. (scheme == "https" and ":443" or ":80")
end

-- allow as a function of a canonical URL, and (unless allow is a
-- function) as a set of "host:port" and "host" keys for core.html.crawl
local function allow_fn(allow, start)
  if type(allow) == "function" then return allow end
  local exact, anyport = {}, {}
  local list = allow
  if list == nil then
    list = {}
    for i, u in ipairs(start) do list[i] = hostport(u) end
  elseif type(list) == "string" then
    list = { list }
  end
  for _, a in ipairs(list) do
    if type(a) ~= "string" then
      raise("argument", "bad option 'allow' to 'Crawler' (host or host:port strings, or a function)")
    end
    a = a:lower()
    if a:match(":%d+$") then exact[a] = true else anyport[a] = true end
  end
  local set = {}
  for k in pairs(exact) do set[k] = true end
  for k in pairs(anyport) do set[k] = true end
  local cache = {}
  return function(u)
    local hp = hostport(u)
    if not hp then return false end
    local yes = cache[hp]
    if yes == nil then
      yes = exact[hp] or anyport[hp:match("^(.*):%d+$")] or false
      cache[hp] = yes
    end
    return yes
  end, set
end

-- what X-Robots-Tag says: noindex, nofollow (as read_page reads it; that
-- one has no upvalues: it is sent to pool workers)
local function xrobots(resp)
  local xr = resp.headers and resp.headers["x-robots-tag"]
  if type(xr) ~= "string" then return false, false end
  xr = xr:lower()
  local none = xr:find("none", 1, true) ~= nil
  return none or xr:find("noindex", 1, true) ~= nil, none or xr:find("nofollow", 1, true) ~= nil
end

--- Reads a page: what the crawler needs of it. Runs in the crawler's state,
-- or in a pool worker when workers > 0 (it requires what it uses).
-- Returns item, urls (canonical), noindex, nofollow (meta), left_out (links
-- with rel=nofollow), bad (URLs parse gave that are not http(s)).
local function read_page(resp, parse, robots)
  local c = require "concur.core"
  local page = resp:html()
  local noindex, nofollow = false, false
  if robots then
    local r = page:robots()
    noindex, nofollow = r.noindex, r.nofollow
    local xr = resp.headers and resp.headers["x-robots-tag"]
    if type(xr) == "string" then
      xr = xr:lower()
      noindex = noindex or xr:find("noindex", 1, true) ~= nil or xr:find("none", 1, true) ~= nil
      nofollow = nofollow or xr:find("nofollow", 1, true) ~= nil or xr:find("none", 1, true) ~= nil
    end
  end
  local item, urls, left_out, bad
  if parse then
    local got
    item, got = parse(resp, page)
    urls, bad = {}, 0
    if type(got) == "table" then
      for _, u in ipairs(got) do
        local ok, n = pcall(c.url.join, resp.url, tostring(u), true)
        if ok then urls[#urls + 1] = n else bad = bad + 1 end
      end
    end
    left_out = 0
  else
    item = { url = resp.url, status = resp.status, title = page:title() }
    urls, left_out = c.html.follow(page, not robots)
  end
  page:close()
  return item, urls, noindex, nofollow, left_out, bad or 0
end

-- the scan of a page on a pool worker (no upvalues: it is sent there)
local function scan_page(resp)
  return require("concur.core").html.scanraw(resp)
end

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local FETCH_OPTS = { follow_redirects = false }

--- A new crawler (see API.md "URLs, HTML and crawling").
-- @tparam table opts `start` (URLs, required), `allow` ("host" or
--  "host:port" strings, or fn(url) -> bool; default: the start URLs'
--  host:port), `max_depth`, `max_pages`, `robots` (true), `state` (a journal
--  path), `client` (a Client, or a table of Client options), `parse`
--  (fn(resp, page) -> item, urls), `workers` (0: parse here; n: on a
--  ThreadPool of n), `progress`, `frontier` (an object with the frontier's
--  methods, instead of a fetch.Frontier), `max_redirects` (5: hops followed
--  from one URL), `inflight` (requests in flight; default: twice the
--  client's concurrency)
-- @return a Crawler: items(), run{on_item}, stats(), stop()
function M.new(opts)
  if type(opts) ~= "table" then
    raise("argument", "bad argument #1 to 'Crawler' (table expected, got %s)", type(opts))
  end
  for k in pairs(opts) do
    if not OPTS[k] then raise("argument", "bad argument #1 to 'Crawler' (unknown option '%s')", tostring(k)) end
  end
  local start = opts.start
  if type(start) == "string" then start = { start } end
  if type(start) ~= "table" or #start == 0 then
    raise("argument", "bad argument #1 to 'Crawler' (option 'start' must be a URL or an array of URLs)")
  end
  local canon = {}
  for i, u in ipairs(start) do
    local ok, n = pcall(url.normalize, u)
    if not ok then
      raise("argument", "bad argument #1 to 'Crawler' (start[%d]: %s)", i,
        type(n) == "table" and n.message or tostring(n))
    end
    canon[i] = n
  end
  local function count(name, v, positive)
    if v == nil then return nil end
    if math.type(v) ~= "integer" or v < (positive and 1 or 0) then
      raise("argument", "bad argument #1 to 'Crawler' (option '%s' must be a %s integer)",
        name, positive and "positive" or "non-negative")
    end
    return v
  end
  local allow, allowset = allow_fn(opts.allow, canon)
  local self = setmetatable({
    _start = canon,
    _allow = allow,
    _allowset = allowset,
    _max_depth = count("max_depth", opts.max_depth),
    _max_pages = count("max_pages", opts.max_pages),
    _max_redirects = count("max_redirects", opts.max_redirects) or 5,
    _workers = count("workers", opts.workers) or 0,
    _robots = opts.robots ~= false,
    _parse = opts.parse,
    _progress_opt = opts.progress,
  }, Crawler)
  if opts.parse ~= nil and type(opts.parse) ~= "function" then
    raise("argument", "bad argument #1 to 'Crawler' (option 'parse' must be a function)")
  end
  if opts.robots ~= nil and type(opts.robots) ~= "boolean" then
    raise("argument", "bad argument #1 to 'Crawler' (option 'robots' must be a boolean)")
  end
  -- the client: given, or made from options (robots.txt as the crawler says)
  local conc, per_host = 16, 4
  local client = opts.client
  if client == nil or type(client) == "table" and getmetatable(client) == nil then
    local copts = {}
    for k, v in pairs(client or {}) do copts[k] = v end
    if copts.robots == nil then copts.robots = self._robots end
    conc, per_host = copts.concurrency or conc, copts.per_host or per_host
    self._client = cf.Client(copts)
    self._own_client = true
  elseif tostring(client):match("^concur%.fetch%.Client") then
    self._client = client
  else
    raise("argument", "bad argument #1 to 'Crawler' (option 'client' must be a Client or a table of its options)")
  end
  self._window = count("inflight", opts.inflight, true) or 2 * conc
  self._host_window = 2 * per_host
  -- the frontier: given, or a local one (journaled with 'state')
  if opts.frontier ~= nil then
    if opts.state ~= nil then
      raise("argument", "bad argument #1 to 'Crawler' (options 'state' and 'frontier' exclude each other)")
    end
    for _, m in ipairs{ "push", "pop", "done", "seen", "size", "stats", "load", "save", "close" } do
      if type(opts.frontier[m]) ~= "function" and
         not (type(opts.frontier) == "userdata" and opts.frontier[m]) then
        raise("argument", "bad argument #1 to 'Crawler' (option 'frontier' has no method '%s')", m)
      end
    end
    self._frontier = opts.frontier
  else
    if opts.state ~= nil and type(opts.state) ~= "string" then
      raise("argument", "bad argument #1 to 'Crawler' (option 'state' must be a path)")
    end
    self._frontier = core.frontier{ state = opts.state }
    self._own_frontier = true
  end
  -- the default reading (no parse, allow by hosts, a fetch.Frontier) is
  -- done in C: no tree, links pushed as they are joined
  self._fast = opts.parse == nil and allowset ~= nil and
    type(self._frontier) == "userdata" and
    tostring(self._frontier):match("^concur%.fetch%.Frontier") ~= nil
  if self._fast then self._linkcache = core.html.linkcache() end
  local st = { pages = 0, items = 0, errors = 0, redirects = 0,
    skipped = { robots = 0, depth = 0, offsite = 0, duplicate = 0, nofollow = 0, noindex = 0 } }
  local saved = self._frontier:load()
  if type(saved) == "table" then   -- resumed: the counters go on
    for k, v in pairs(saved) do
      if k == "skipped" and type(v) == "table" then
        for r, n in pairs(v) do st.skipped[r] = n end
      else st[k] = v end
    end
  end
  self._st = st
  return self
end

-- starting: the start URLs (seen ones, on a resume, are not counted), the
-- stream, the pool
function Crawler:_begin()
  if self._begun then return end
  self._begun = true
  local entries = {}
  for i, u in ipairs(self._start) do entries[i] = { url = u, depth = 0, hops = 0 } end
  self._frontier:push(entries)
  self._stream = cf.stream(self._client)
  self._slots = {}            -- slot -> what is in flight
  self._inflight, self._pages_inflight = 0, 0
  self._host_count = {}        -- host key -> entries in flight
  self._ready, self._rhead, self._rtail = {}, 1, 0   -- items to hand out
  if self._workers > 0 then self._pool = require("concur").ThreadPool(self._workers) end
  self._report = progress.option(self._progress_opt, "crawl", nil, "Crawler")
end

-- takes what may start from the frontier and fetches it
function Crawler:_fill()
  if self._stopping then return end
  local room = self._window - self._inflight
  if self._max_pages then
    room = min(room, self._max_pages - self._st.pages - self._pages_inflight)
  end
  if room <= 0 then return end
  local entries = self._frontier:pop(room, self._host_count, self._host_window)
  for _, e in ipairs(entries) do
    local slot = self._stream:get(e.url, FETCH_OPTS)
    e.kind = "fetch"
    self._slots[slot] = e
    self._inflight = self._inflight + 1
    self._pages_inflight = self._pages_inflight + 1
    self._host_count[e.host] = (self._host_count[e.host] or 0) + 1
  end
end

function Crawler:_landed(e)
  self._inflight = self._inflight - 1
  local n = self._host_count[e.host] - 1
  self._host_count[e.host] = n > 0 and n or nil
end

function Crawler:_save()
  self._frontier:save(self._st)
  if self._report then self._report:update(self._st.pages, self._st.errors) end
end

-- the end of an entry: its links pushed first, then marked done
function Crawler:_done(e, urls)
  local st = self._st
  if urls and #urls > 0 then
    local entries, depth = {}, e.depth + 1
    local skipped = st.skipped
    for _, u in ipairs(urls) do
      if not self._allow(u) then skipped.offsite = skipped.offsite + 1
      elseif self._max_depth and depth > self._max_depth then skipped.depth = skipped.depth + 1
      else entries[#entries + 1] = { url = u, depth = depth, hops = 0 } end
    end
    if #entries > 0 then
      local _, dups = self._frontier:push(entries)
      skipped.duplicate = skipped.duplicate + dups
    end
  end
  self._frontier:done(e.url)
  self:_save()
end

function Crawler:_give(item, resp)
  self._rtail = self._rtail + 1
  self._ready[self._rtail] = { item, resp }
end

-- a page's reading, here or from a worker
function Crawler:_read(e, resp, item, urls, noindex, nofollow, left_out, bad)
  local st = self._st
  st.skipped.offsite = st.skipped.offsite + bad
  st.skipped.nofollow = st.skipped.nofollow + left_out
  if nofollow then
    st.skipped.nofollow = st.skipped.nofollow + #urls
    urls = nil
  end
  if noindex then st.skipped.noindex = st.skipped.noindex + 1
  elseif item ~= nil then
    st.items = st.items + 1
    self:_give(item, resp)
  end
  self:_done(e, urls)
end

local function is_html(resp)
  local ct = resp.headers and resp.headers["content-type"]
  return ct == nil or ct:find("html", 1, true) ~= nil
end

-- a request completed: ok, v is a Response or an error object
function Crawler:_fetched(e, ok, v)
  local st = self._st
  self:_landed(e)
  self._pages_inflight = self._pages_inflight - 1
  if not ok then
    if v.kind == "robots" then st.skipped.robots = st.skipped.robots + 1
    else st.errors = st.errors + 1 end
    return self:_done(e)
  end
  local loc = REDIRECT[v.status] and v.headers.location
  if loc then
    st.redirects = st.redirects + 1
    local good, target = pcall(url.join, v.url, loc, true)
    if not good then st.skipped.offsite = st.skipped.offsite + 1
    elseif e.hops + 1 > self._max_redirects then st.errors = st.errors + 1
    elseif not self._allow(target) then st.skipped.offsite = st.skipped.offsite + 1
    else
      local _, dups = self._frontier:push{ { url = target, depth = e.depth, hops = e.hops + 1 } }
      st.skipped.duplicate = st.skipped.duplicate + dups
    end
    return self:_done(e)
  end
  st.pages = st.pages + 1
  if v.status >= 400 then
    st.errors = st.errors + 1
    return self:_done(e)
  end
  if not is_html(v) or #v.body == 0 then   -- not a page to read
    if self._parse == nil then
      st.items = st.items + 1
      self:_give({ url = v.url, status = v.status }, v)
    end
    return self:_done(e)
  end
  if self._fast then
    if self._pool then   -- scanned on a worker, its links pushed here
      -- (what the scan reads of the Response, not all of it)
      local h = v.headers
      local f = self._pool:submit(scan_page, { body = v.body, url = v.url,
        headers = { ["content-type"] = h and h["content-type"] } })
      local slot = self._stream:watch(f)
      self._slots[slot] = { kind = "scan", entry = e, resp = v, future = f }
      self._inflight = self._inflight + 1
      return
    end
    return self:_crawl(e, v)
  end
  if self._pool then   -- read on a worker; this slot comes back when done
    local f = self._pool:submit(read_page, v, self._parse, self._robots)
    local slot = self._stream:watch(f)
    self._slots[slot] = { kind = "read", entry = e, resp = v, future = f }
    self._inflight = self._inflight + 1
    return
  end
  local okr, item, urls, noindex, nofollow, left_out, bad = pcall(read_page, v, self._parse, self._robots)
  if not okr then
    self:_done(e)
    error(item, 0)   -- parse raised: the page is done, the error is the user's
  end
  self:_read(e, v, item, urls, noindex, nofollow, left_out, bad)
end

-- the default reading of a page, in C (core.html.crawl): the same counts
-- as read_page, _read and _done give
function Crawler:_crawl(e, v)
  local xnoindex, xnofollow = false, false
  if self._robots then xnoindex, xnofollow = xrobots(v) end
  local ok, title, noindex, nofollow, left_out, followed, offsite, deep, dups = pcall(
    core.html.crawl, v, self._frontier, e.depth + 1, not xnofollow, self._robots,
    self._allowset, self._max_depth, self._linkcache)
  if not ok then
    self:_done(e)
    error(title, 0)
  end
  self:_crawled(e, v, title, noindex or xnoindex, nofollow or xnofollow, left_out, followed,
    offsite, deep, dups)
end

-- the same, for a page a worker scanned (core.html.scanraw)
function Crawler:_scanned(e, v, title, noindex, nofollow, base, links)
  local xnoindex, xnofollow = false, false
  if self._robots then xnoindex, xnofollow = xrobots(v)
  else noindex, nofollow = false, false end
  nofollow = nofollow or xnofollow
  local ok, left_out, followed, offsite, deep, dups = pcall(core.html.pushlinks, links, base,
    self._frontier, e.depth + 1, not nofollow, self._robots, self._allowset, self._max_depth,
    self._linkcache)
  if not ok then
    self:_done(e)
    error(left_out, 0)
  end
  self:_crawled(e, v, title, noindex or xnoindex, nofollow, left_out, followed, offsite, deep,
    dups)
end

function Crawler:_crawled(e, v, title, noindex, nofollow, left_out, followed, offsite, deep,
                          dups)
  local st = self._st
  local skipped = st.skipped
  skipped.nofollow = skipped.nofollow + left_out
  if nofollow then skipped.nofollow = skipped.nofollow + followed end
  skipped.offsite = skipped.offsite + offsite
  skipped.depth = skipped.depth + deep
  skipped.duplicate = skipped.duplicate + dups
  if noindex then skipped.noindex = skipped.noindex + 1
  else
    st.items = st.items + 1
    self:_give({ url = v.url, status = v.status, title = title }, v)
  end
  self._frontier:done(e.url)
  self:_save()
end

-- one completion; false when the crawl is over
function Crawler:_step()
  self:_fill()
  local slot, ok, v = self._stream:next()
  if slot == nil then return false end
  local rec = self._slots[slot]
  self._slots[slot] = nil
  if rec.kind == "fetch" then
    self:_fetched(rec, ok, v)
  elseif rec.kind == "scan" then
    self._inflight = self._inflight - 1
    local f = rec.future
    local err = f:error()
    if err then
      self:_done(rec.entry)
      error(err, 0)
    end
    self:_scanned(rec.entry, rec.resp, f:result())
  else
    self._inflight = self._inflight - 1
    local f = rec.future
    local err = f:error()
    if err then
      self:_done(rec.entry)
      error(err, 0)
    end
    self:_read(rec.entry, rec.resp, f:result())
  end
  return true
end

function Crawler:_finish()
  if self._finished then return end
  self._finished = true
  pcall(self._save, self)
  local ok, fs = pcall(self._frontier.stats, self._frontier)
  if ok then self._last_fs = fs end
  if self._report then self._report:finish() end
  if self._pool then self._pool:close() end
  if self._stream then self._stream:close() end
  if self._own_frontier then self._frontier:close() end
  if self._own_client then self._client:close() end
end

--- Iterates over the items as pages are crawled: `for item, resp in
-- crawler:items() do ... end`. item is what `parse` returned, or by default
-- { url, status, title }; pages with meta robots noindex give none.
function Crawler:items()
  if self._finished then raise("closed", "the crawl is over (make a new Crawler to resume it)") end
  self:_begin()
  return function()
    while true do
      local r = self._ready[self._rhead]
      if r then
        self._ready[self._rhead] = nil
        self._rhead = self._rhead + 1
        return r[1], r[2]
      end
      local ok, more = pcall(self._step, self)
      if not ok then   -- an interrupt, a parse that raised: the crawl ends
        self:_finish()  -- here; what was in flight is fetched on a resume
        error(more, 0)
      end
      if not more then
        self:_finish()
        return nil
      end
    end
  end
end

--- Crawls to the end, calling on_item(item, resp) for each item.
-- @tparam[opt] table opts `on_item`
-- @return the stats
function Crawler:run(opts)
  local on_item = opts and opts.on_item
  if on_item ~= nil and type(on_item) ~= "function" then
    raise("argument", "bad argument #1 to 'run' (option 'on_item' must be a function)")
  end
  for item, resp in self:items() do
    if on_item then on_item(item, resp) end
  end
  return self:stats()
end

--- Stops the crawl: nothing new starts; what is in flight finishes (its
-- items still come) and the frontier, with what is left, is saved.
function Crawler:stop()
  self._stopping = true
  if not self._begun then self:_finish() end
end

--- { pages, items, errors, redirects, queued, seen, seen_bytes, skipped =
-- { robots, depth, offsite, duplicate, nofollow, noindex } }
function Crawler:stats()
  local st = self._st
  local out = { pages = st.pages, items = st.items, errors = st.errors,
    redirects = st.redirects, skipped = {} }
  for k, v in pairs(st.skipped) do out.skipped[k] = v end
  local fs = self._last_fs
  if not (self._finished and self._own_frontier) then fs = self._frontier:stats() end
  if fs then out.queued, out.seen, out.seen_bytes = fs.queued, fs.seen, fs.seen_bytes end
  return out
end

function Crawler:__close() self:stop(); self:_finish() end
Crawler.__gc = nil

M.Crawler = Crawler
return M
