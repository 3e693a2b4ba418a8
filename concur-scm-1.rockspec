rockspec_format = "3.0"
package = "concur"
version = "scm-1"
source = { url = "git+https://example.invalid/concur.git" }
description = {
  summary = "Thread and process pools, futures, queues, locks, HTTP fetching and bigints for Lua 5.4",
  detailed = [==[
concur gives Lua 5.4 what Python has in threading, multiprocessing, queue and
concurrent.futures: a thread pool and a process pool behind one futures API,
threads, queues, locks, conditions, events, semaphores, barriers, atomic values,
a rate-limited concurrent HTTP fetcher on libcurl, and GMP big integers.
]==],
  license = "MIT",
  labels = { "concurrency", "threads", "futures" },
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  CURL = { library = "curl" },
  GMP = { library = "gmp" },
}
build = {
  type = "builtin",
  modules = {
    ["concur.bigint"] = "src/concur/bigint.lua",
    ["concur.fetch"] = "src/concur/fetch.lua",
    ["concur"] = "src/concur/init.lua",
    ["concur.core"] = {
      sources = {
        "csrc/bigint.c",
        "csrc/codec.c",
        "csrc/core.c",
        "csrc/core/bignum.c",
        "csrc/core/clock.c",
        "csrc/core/fetch_engine.c",
        "csrc/core/fetch_request.c",
        "csrc/core/fetch_robots.c",
        "csrc/core/future.c",
        "csrc/core/procsup.c",
        "csrc/core/queue.c",
        "csrc/core/ratelimit.c",
        "csrc/core/shm.c",
        "csrc/core/sync.c",
        "csrc/core/wire.c",
        "csrc/errors.c",
        "csrc/fetch.c",
        "csrc/future.c",
        "csrc/object.c",
        "csrc/pool.c",
        "csrc/proc.c",
        "csrc/proc_worker.c",
        "csrc/queue.c",
        "csrc/ratelimit_lua.c",
        "csrc/signal.c",
        "csrc/state.c",
        "csrc/sync.c",
        "csrc/task.c",
        "csrc/thread.c",
        "csrc/value.c",
        "csrc/worker.c",
      },
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(GMP_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(GMP_LIBDIR)" },
      libraries = { "curl", "gmp", "pthread", "dl" },
    },
  },
}
test = { type = "busted" }
