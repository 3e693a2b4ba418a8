---@meta concur.fetch
-- Lua Language Server definitions for concur.fetch (see library/concur.lua).

---@class concur.fetch.ClientOptions
---@field concurrency? integer transfers at once (16)
---@field per_host? integer transfers at once per host (4)
---@field rate? number requests per `per` seconds per host (nil: none)
---@field per? number (1)
---@field burst? integer (1)
---@field retries? integer (3)
---@field backoff? number seconds, doubled per retry, with jitter (0.5)
---@field max_backoff? number (30)
---@field retry_on? integer[] statuses retried ({429, 500, 502, 503, 504})
---@field timeout? number seconds per request (30)
---@field connect_timeout? number (10)
---@field low_speed_limit? integer bytes/s (1)
---@field low_speed_time? number seconds (30)
---@field max_body? integer bytes (16 MiB)
---@field max_redirects? integer (5)
---@field user_agent? string
---@field headers? table<string, string>
---@field robots? boolean obey robots.txt (false)
---@field robots_retry? number seconds before an unreachable robots.txt is asked again (60)
---@field verify? boolean verify TLS certificates (true)
---@field http2? boolean HTTP/2 where an https server offers it, streams multiplexed on one connection (true)
---@field cookies? boolean a cookie jar for this client: cookies set are sent back (false)
---@field autothrottle? boolean a host that answers 429/503 or slows down gets a lower rate, recovering slowly (false)
---@field limits? concur.cluster.Limits per-host rates shared with clients on other machines (cluster.limits; needs rate)

---@class concur.fetch.RequestOptions
---@field follow_redirects? boolean false: a 3xx is the answer (headers.location says where)
---@field headers? table<string, string>
---@field timeout? number
---@field connect_timeout? number
---@field retries? integer
---@field max_body? integer
---@field max_redirects? integer

---@class concur.fetch.Request: concur.fetch.RequestOptions
---@field url string
---@field method? string "GET", "POST", ...
---@field body? string

---@class concur.fetch.GetAllOptions: concur.fetch.RequestOptions
---@field progress? concur.ProgressOption

---@class concur.fetch.Stats
---@field requests integer
---@field retries integer
---@field failures integer
---@field completed integer
---@field cancelled integer
---@field bytes integer
---@field throttled integer times autothrottle lowered a host's rate
---@field queued integer
---@field active integer
---@field by_status table<string, integer> keyed "200", ...; by_status[200] reads "200" too

--- A response: a table with methods, in any state it is sent to.
---@class concur.fetch.Response
---@field status integer
---@field ok boolean 2xx
---@field url string the final URL
---@field headers table<string, string|string[]> lower-case names; repeated ones joined with ", ", but set-cookie: always an array
---@field body string
---@field elapsed number seconds
---@field attempts integer
---@field redirects integer
---@field http_version string "1.1", "2", "1.0
local Response = {}

--- Raises kind "http" for a status >= 400; returns the response otherwise.
---@return concur.fetch.Response
function Response:raise_for_status() end

--- The body parsed as HTML, links resolved against the response's URL.
---@param opts? concur.html.ParseOptions
---@return concur.html.Document
function Response:html(opts) end

---@class concur.html.ParseOptions
---@field max_size? integer bytes (16 MiB); a larger body raises kind "limit"
---@field encoding? string when the page does not say

---@class concur.html.Link
---@field url string absolute
---@field text string
---@field rel? string
---@field nofollow boolean

---@class concur.html.Robots
---@field noindex boolean
---@field nofollow boolean

--- A page parsed by libxml2's HTML parser.
---@class concur.html.Document
---@field url? string the page's URL
---@field base? string what links are relative to (`<base href>` or url)
local Document = {}

---@return string?
function Document:title() end

--- The visible text, whitespace collapsed, blocks on lines of their own.
---@return string
function Document:text() end

---@return concur.html.Link[]
function Document:links() end

---@param agent? string a meta name read besides "robots"
---@return concur.html.Robots
function Document:robots(agent) end

---@param tag? string nil or "*": any
---@param attrs? table<string, string|boolean>
---@return concur.html.Element[]
function Document:find_all(tag, attrs) end

--- XPath 1.0: a node-set as an array (elements, strings), or a value.
---@param expr string
---@return any
function Document:xpath(expr) end

--- Frees the tree now; its elements then raise kind "closed".
function Document:close() end

--- An element of a Document.
---@class concur.html.Element
---@field tag string
---@field attrs table<string, string>
local Element = {}

---@return string
function Element:text() end

---@param name string
---@return string?
function Element:attr(name) end

---@param tag? string
---@param attrs? table<string, string|boolean>
---@return concur.html.Element[]
function Element:find_all(tag, attrs) end

---@param expr string
---@return any
function Element:xpath(expr) end

--- A client: one engine thread, per-host queues, limits and rates. Shared by
--- reference with threads and ThreadPool tasks.
---@class concur.fetch.Client
local Client = {}

---@param url string
---@param opts? concur.fetch.RequestOptions
---@return concur.Future # of a concur.fetch.Response
function Client:get(url, opts) end

---@param req concur.fetch.Request
---@return concur.Future # of a concur.fetch.Response
function Client:request(req) end

--- Fetches every URL; an array, in order, of Responses and error objects.
---@param urls string[]
---@param opts? concur.fetch.GetAllOptions
---@return (concur.fetch.Response|concur.Error)[]
function Client:get_all(urls, opts) end

---@return concur.fetch.Stats
function Client:stats() end

--- Fails what is queued or running (kind "closed"); idempotent.
function Client:close() end

---@return boolean
function Client:closed() end

---@class concur.fetch.FrontierEntry
---@field url string canonical
---@field depth integer
---@field hops integer
---@field host? string "scheme://host[:port]" (from pop)

---@class concur.fetch.FrontierStats
---@field queued integer
---@field inflight integer
---@field seen integer
---@field seen_bytes integer
---@field journal_bytes integer

--- What fetch.Crawler asks of a frontier (fetch.Frontier, or a shared one).
---@class concur.fetch.FrontierLike
---@field push fun(self, entries: concur.fetch.FrontierEntry[]): integer, integer
---@field pop fun(self, n: integer, inflight?: table<string, integer>, per_host?: integer): concur.fetch.FrontierEntry[]
---@field done fun(self, url: string)
---@field seen fun(self, url: string): boolean
---@field size fun(self): integer
---@field stats fun(self): concur.fetch.FrontierStats
---@field load fun(self): table?
---@field save fun(self, counters: table)
---@field close fun(self)

--- The crawler's local frontier: per-host queues, a seen-set of 64-bit
--- fingerprints, and a journal when it has a state path.
---@class concur.fetch.Frontier
local Frontier = {}

--- Adds the entries whose URL was never seen: added, duplicates.
---@param entries concur.fetch.FrontierEntry[]
---@return integer, integer
function Frontier:push(entries) end

--- At most n entries, least deep first, at most per_host - inflight[host] per host.
---@param n integer
---@param inflight? table<string, integer>
---@param per_host? integer
---@return concur.fetch.FrontierEntry[]
function Frontier:pop(n, inflight, per_host) end

---@param url string
function Frontier:done(url) end

---@param url string
---@return boolean
function Frontier:seen(url) end

---@return integer
function Frontier:size() end

---@return concur.fetch.FrontierStats
function Frontier:stats() end

---@return table?
function Frontier:load() end

---@param counters table
function Frontier:save(counters) end

function Frontier:close() end

---@class concur.fetch.FrontierOptions
---@field state? string the journal's path
---@field compact_at? integer bytes before the journal is compacted (8 MiB)

---@class concur.fetchlib
local fetch = {}

---@type string
fetch._VERSION = ""

---@param opts? concur.fetch.ClientOptions
---@return concur.fetch.Client
function fetch.Client(opts) end

--- Fetches one URL on the default client, blocking.
---@param url string
---@param opts? concur.fetch.RequestOptions
---@return concur.fetch.Response
function fetch.get(url, opts) end

--- The client fetch.get uses (one per Lua state).
---@return concur.fetch.Client
function fetch.default_client() end

--- t with the Response methods.
---@param t table
---@return concur.fetch.Response
function fetch.response(t) end

---@param v any
---@return boolean
function fetch.is_response(v) end

---@class concur.fetch.URLParts
---@field scheme? string
---@field user? string
---@field password? string
---@field host? string lower case
---@field port? integer the scheme's default when none is named
---@field path? string
---@field query? string
---@field fragment? string

--- The absolute URL of ref on the page at base (RFC 3986 section 5); kind
--- "argument" when the result is not an http(s) URL.
---@param base string
---@param ref string
---@param normalize? boolean give the canonical form
---@return string
function fetch.urljoin(base, ref, normalize) end

---@param url string
---@return concur.fetch.URLParts
function fetch.urlparse(url) end

---@param opts concur.fetch.CrawlerOptions
---@return concur.fetch.Crawler
function fetch.Crawler(opts) end

---@param opts? concur.fetch.FrontierOptions
---@return concur.fetch.Frontier
function fetch.Frontier(opts) end

--- Parses HTML (recovering from errors; nothing loaded from the network).
---@param body string
---@param url? string the page's URL
---@param opts? concur.html.ParseOptions
---@return concur.html.Document
function fetch.html(body, url, opts) end

--- The canonical form of an http(s) URL (what the crawler de-duplicates on).
---@param url string
---@return string
function fetch.urlnormalize(url) end

return fetch
