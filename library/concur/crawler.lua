---@meta concur.crawler
-- Lua Language Server definitions for concur.crawler (fetch.Crawler).

---@class concur.fetch.CrawlerOptions
---@field start string|string[] the start URLs (required)
---@field allow? string|string[]|fun(url: string): boolean "host" or "host:port" (default: the start URLs' host:port)
---@field max_depth? integer start pages are depth 0; a redirect adds no depth
---@field max_pages? integer
---@field robots? boolean robots.txt, meta robots, rel=nofollow (true)
---@field state? string the journal's path: a crawl stopped or killed resumes from it
---@field client? concur.fetch.Client|concur.fetch.ClientOptions
---@field parse? fun(resp: concur.fetch.Response, page: concur.html.Document): any, string[]?
---@field workers? integer > 0: parse on a ThreadPool of that many workers
---@field progress? concur.ProgressOption
---@field frontier? concur.fetch.FrontierLike another frontier (a shared one)
---@field max_redirects? integer redirects followed from one URL (5)
---@field inflight? integer requests in flight (twice the client's concurrency)

---@class concur.fetch.CrawlSkipped
---@field robots integer
---@field depth integer
---@field offsite integer
---@field duplicate integer
---@field nofollow integer
---@field noindex integer

---@class concur.fetch.CrawlStats
---@field pages integer
---@field items integer
---@field errors integer
---@field redirects integer
---@field queued integer
---@field seen integer
---@field seen_bytes integer
---@field skipped concur.fetch.CrawlSkipped

---@class concur.fetch.CrawlRunOptions
---@field on_item? fun(item: any, resp: concur.fetch.Response)

--- A polite, resumable, breadth-first crawler.
---@class concur.fetch.Crawler
local Crawler = {}

--- for item, resp in crawler:items() do ... end
---@return fun(): any, concur.fetch.Response
function Crawler:items() end

---@param opts? concur.fetch.CrawlRunOptions
---@return concur.fetch.CrawlStats
function Crawler:run(opts) end

---@return concur.fetch.CrawlStats
function Crawler:stats() end

--- Nothing new starts; what is in flight finishes; the frontier is saved.
function Crawler:stop() end

---@class concur.crawlerlib
local M = {}

---@param opts concur.fetch.CrawlerOptions
---@return concur.fetch.Crawler
function M.new(opts) end

M.Crawler = Crawler

return M
