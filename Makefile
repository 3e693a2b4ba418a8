# concur: build, test, check, bench.
#   make          build into build/tree (installs the missing Debian packages
#                 each target needs when run as root; else names them)
#   make test     run the C unit tests of csrc/core and the busted suite
#   make demo     run the six lessons (CONCUR_QUICK=1: their quick sizes)
#   make check    the suite under ASan+UBSan and under TSan, valgrind, fuzz smoke
#   make lint     luacheck, and -Werror builds under gcc and clang
#   make bench    benchmarks against the peers, measured in the same run
#   make docs     the HTML reference from the LDoc comments, in build/docs

LUA      ?= lua5.4
LUA_INC  ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
CC       ?= cc
OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wmissing-prototypes
CFLAGS_ALL = $(OPT) $(WARN) -fPIC -fvisibility=hidden -pthread $(LUA_INC) \
             $(shell pkg-config --cflags libcurl 2>/dev/null) \
             $(shell pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2) \
             $(EXTRA_CFLAGS)
LIBS     := -pthread -lcurl -lgmp -ldl \
            $(shell pkg-config --libs libxml-2.0 2>/dev/null || echo -lxml2) \
            $(shell pkg-config --libs hiredis libcrypto 2>/dev/null || echo -lhiredis -lcrypto)
TREE     := build/tree
LMOD     := $(TREE)/share/lua/5.4
CMOD     := $(TREE)/lib/lua/5.4
BUILD    ?= build/release

SRCS     := $(wildcard csrc/*.c csrc/core/*.c)
HDRS     := $(wildcard csrc/*.h csrc/core/*.h)
OBJS     := $(patsubst csrc/%.c,$(BUILD)/%.o,$(SRCS))
LUASRC   := $(wildcard lua/concur/*.lua)
LUADST   := $(patsubst lua/%,$(LMOD)/%,$(LUASRC))
SO       := $(CMOD)/concur/core.so

BUSTED   ?= busted --lua=$(LUA)
VERSION  := $(shell sed -n 's/^\#define CONCUR_VERSION "concur \(.*\)"$$/\1/p' csrc/concur.h)

.PHONY: all deps test demo check check-asan check-tsan check-valgrind fuzz lint bench docs clean rock rockspec \
        dist dist-check

all: $(SO) $(LUADST)

# The Debian packages the targets asked for need (tools/deps.sh has the
# groups); every compile waits for it (order-only), also under make -j.
deps:
	@sh tools/deps.sh $(or $(filter-out deps,$(MAKECMDGOALS)),all)

$(OBJS): | deps

$(BUILD)/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(OBJS) $(LIBS) $(EXTRA_LDFLAGS)

# The C unit tests of csrc/core/, linked against the core's objects alone:
# that they link at all shows the core needs no Lua.
CORE_OBJS = $(filter $(BUILD)/core/%.o,$(OBJS))
$(BUILD)/core_test: csrc/core/test/core_test.c $(CORE_OBJS)
	$(CC) $(CFLAGS_ALL) -o $@ $< -Wl,--whole-archive $(CORE_OBJS) -Wl,--no-whole-archive \
	  $(LIBS) -lm $(EXTRA_LDFLAGS)

$(LMOD)/%.lua: lua/%.lua
	@mkdir -p $(dir $@)
	cp $< $@


test: all deps $(BUILD)/core_test
	$(BUILD)/core_test
	CONCUR_NO_BUILD=1 $(BUSTED) $(BUSTED_ARGS)

# Every lesson, in order; the first that fails stops the demo and fails it.
DEMOS    ?= $(sort $(wildcard examples/[0-9][0-9]_*.lua))
demo: all deps
	@for f in $(DEMOS); do \
	  echo; echo "### $$f"; CONCUR_NO_BUILD=1 bin/lua "$$f" || { echo "demo: $$f failed" >&2; exit 1; }; \
	done

# Sanitizer builds go to their own trees, so a plain build is never mixed in.
check: lint check-asan check-tsan fuzz check-valgrind

check-asan: deps
	$(MAKE) --no-print-directory sanitized SAN=asan \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined"

check-tsan: deps
	$(MAKE) --no-print-directory sanitized SAN=tsan \
	  EXTRA_CFLAGS="-fsanitize=thread -fno-omit-frame-pointer" EXTRA_LDFLAGS="-fsanitize=thread"

sanitized:
	$(MAKE) --no-print-directory build/$(SAN)/tree/lib/lua/5.4/concur/core.so build/$(SAN)/core_test \
	  BUILD=build/$(SAN) OPT="-O1 -g" SO=build/$(SAN)/tree/lib/lua/5.4/concur/core.so
	sh tools/sanitize.sh $(SAN)

check-valgrind: all deps
	sh tools/valgrind.sh

fuzz: deps
	sh tools/fuzz.sh

# luacheck; the C's layers (tools/layers.lua: the core is Lua-free, no
# include circles); the rockspecs are current; the Lua Language Server definitions in
# library/ cover what the modules export (tools/luals_check.lua); -Werror
# builds under gcc and clang.
lint: all deps
	luacheck -q lua spec examples bench tools
	CONCUR_NO_BUILD=1 bin/lua tools/luals_check.lua
	lua5.4 tools/layers.lua
	@mkdir -p build && lua5.4 tools/rockspec.lua build/rockspec.check && \
	  for f in concur-scm-1.rockspec rockspecs/concur-$(VERSION)-1.rockspec; do \
	    cmp -s build/rockspec.check/$$f $$f || { echo "$$f is stale or missing: run make rockspec"; exit 1; }; \
	  done
	$(MAKE) --no-print-directory BUILD=build/lint-gcc CC=gcc OPT="-O2" EXTRA_CFLAGS=-Werror \
	  SO=build/lint-gcc/core.so build/lint-gcc/core.so build/lint-gcc/core_test
	$(MAKE) --no-print-directory BUILD=build/lint-clang CC=clang OPT="-O2" EXTRA_CFLAGS=-Werror \
	  SO=build/lint-clang/core.so build/lint-clang/core.so build/lint-clang/core_test

bench: all deps
	CONCUR_NO_BUILD=1 bin/lua bench/run.lua

# LDoc reads build/docs-src: the Lua modules, and stubs made from the C
# bindings' /*** */ comments (tools/docsrc.lua); config.ld says the rest.
docs: deps
	@rm -rf build/docs build/docs-src && mkdir -p build/docs-src
	lua5.4 tools/docsrc.lua build/docs-src $(LUASRC) $(wildcard csrc/*.c)
	ldoc -q .
	@echo "concur: docs in build/docs/index.html"

rockspec:
	lua5.4 tools/rockspec.lua

# The source rock build/dist/concur-<version>-1.src.rock (tools/dist.sh);
# dist-check installs it into a fresh luarocks tree, offline, and runs a
# script from outside the checkout with it (tools/dist-check.sh).
dist: deps
	sh tools/dist.sh

dist-check: dist
	sh tools/dist-check.sh

rock: deps
	luarocks --lua-version=5.4 make --tree=build/rocktree concur-scm-1.rockspec

clean:
	rm -rf build
