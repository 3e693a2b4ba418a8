-- Written by tools/rockspec.lua (make rockspec): edit that, not this.
rockspec_format = "3.0"
package = "concur"
version = "0.2.0-1"
-- The project's public source address is not known yet. Until it is,
-- source.url names the archive that `make dist` makes from the tree (git
-- archive), which the source rock carries: concur-0.2.0-1.src.rock
-- installs offline. When the project is published, put the archive's real
-- URL (and its md5) here.
source = { url = "concur-0.2.0.tar.gz", dir = "concur-0.2.0" }
description = {
  summary = "Thread and process pools, futures, queues, locks, HTTP fetching and bigints for Lua 5.4",
  detailed = [==[
concur gives Lua 5.4 what Python has in threading, multiprocessing, queue and
concurrent.futures: a thread pool and a process pool behind one futures API,
threads, queues, locks, conditions, events, semaphores, barriers, atomic values,
a rate-limited concurrent HTTP fetcher on libcurl, and GMP big integers.
]==],
  license = "MIT",
  -- homepage: the project's public address is not known yet; until it is,
  -- the README in the rock (doc/README.md) is its front page.
  labels = { "concurrency", "threads", "futures" },
}
-- Futexes, memfd shared memory, /proc and posix_spawn: Linux only.
supported_platforms = { "linux" }
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  CURL = { library = "curl" },
  GMP = { library = "gmp" },
  HIREDIS = { library = "hiredis" },
  CRYPTO = { library = "crypto" },
  XML2 = { library = "xml2" },
}
build = {
  type = "builtin",
  modules = {
    ["concur.bigint"] = "lua/concur/bigint.lua",
    ["concur.cluster"] = "lua/concur/cluster.lua",
    ["concur.crawler"] = "lua/concur/crawler.lua",
    ["concur.fetch"] = "lua/concur/fetch.lua",
    ["concur"] = "lua/concur/init.lua",
    ["concur.log"] = "lua/concur/log.lua",
    ["concur.progress"] = "lua/concur/progress.lua",
    ["concur.testing"] = "lua/concur/testing.lua",
    ["concur.core"] = {
      sources = {
        "csrc/array.c",
        "csrc/barrier.c",
        "csrc/bigint.c",
        "csrc/clusterkey.c",
        "csrc/clusterlimiter.c",
        "csrc/clusterlimits.c",
        "csrc/clusternode.c",
        "csrc/clusterpool.c",
        "csrc/codec.c",
        "csrc/concur.c",
        "csrc/core/arena.c",
        "csrc/core/array.c",
        "csrc/core/bignum.c",
        "csrc/core/clusterframe.c",
        "csrc/core/clusterlimits.c",
        "csrc/core/clusternode.c",
        "csrc/core/clusterpool.c",
        "csrc/core/clusterrate.c",
        "csrc/core/crawl_frontier.c",
        "csrc/core/crawl_journal.c",
        "csrc/core/crawl_seen.c",
        "csrc/core/fetch_conn.c",
        "csrc/core/fetch_engine.c",
        "csrc/core/fetch_host.c",
        "csrc/core/fetch_request.c",
        "csrc/core/fetch_robots.c",
        "csrc/core/fetch_stream.c",
        "csrc/core/fetch_transfer.c",
        "csrc/core/fetch_url.c",
        "csrc/core/frame.c",
        "csrc/core/future.c",
        "csrc/core/gmpalloc.c",
        "csrc/core/holdings.c",
        "csrc/core/html.c",
        "csrc/core/map.c",
        "csrc/core/procspawn.c",
        "csrc/core/procsup.c",
        "csrc/core/qlocal.c",
        "csrc/core/queue.c",
        "csrc/core/ratelimit.c",
        "csrc/core/redis.c",
        "csrc/core/shbuf.c",
        "csrc/core/shobj.c",
        "csrc/core/sync.c",
        "csrc/core/sys.c",
        "csrc/core/threadpool.c",
        "csrc/core/wait.c",
        "csrc/core/wire.c",
        "csrc/decode.c",
        "csrc/encode.c",
        "csrc/errors.c",
        "csrc/event.c",
        "csrc/executor.c",
        "csrc/fetch.c",
        "csrc/frontier.c",
        "csrc/future.c",
        "csrc/html.c",
        "csrc/interrupt.c",
        "csrc/lock.c",
        "csrc/map.c",
        "csrc/newstate.c",
        "csrc/options.c",
        "csrc/processpool.c",
        "csrc/procworker.c",
        "csrc/proxy.c",
        "csrc/queue.c",
        "csrc/ratelimiter.c",
        "csrc/redis.c",
        "csrc/semaphore.c",
        "csrc/shared.c",
        "csrc/thread.c",
        "csrc/threadpool.c",
        "csrc/tracker.c",
        "csrc/url.c",
        "csrc/value.c",
        "csrc/worker.c",
      },
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(GMP_INCDIR)", "$(HIREDIS_INCDIR)", "$(CRYPTO_INCDIR)", "$(XML2_INCDIR)/libxml2" },
      libdirs = { "$(CURL_LIBDIR)", "$(GMP_LIBDIR)", "$(HIREDIS_LIBDIR)", "$(CRYPTO_LIBDIR)", "$(XML2_LIBDIR)" },
      libraries = { "curl", "gmp", "hiredis", "crypto", "xml2", "pthread", "dl" },
    },
  },
  install = { bin = { ["concur-worker"] = "bin/concur-worker" } },
  copy_directories = { "doc", "examples", "library" },
}
test = { type = "busted" }
