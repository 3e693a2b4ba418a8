# concur: build, test, check, bench.
#   make          build into ./lua_modules (installs missing Debian packages as root)
#   make test     run the busted suite
#   make demo     run the lessons in their offline mode
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
             $(shell pkg-config --cflags libcurl 2>/dev/null) $(EXTRA_CFLAGS)
LIBS     := -pthread -lcurl -lgmp -ldl
TREE     := lua_modules
LMOD     := $(TREE)/share/lua/5.4
CMOD     := $(TREE)/lib/lua/5.4
BUILD    ?= build/release

SRCS     := $(wildcard csrc/*.c csrc/core/*.c)
HDRS     := $(wildcard csrc/*.h csrc/core/*.h)
OBJS     := $(patsubst csrc/%.c,$(BUILD)/%.o,$(SRCS))
LUASRC   := $(wildcard src/concur/*.lua)
LUADST   := $(patsubst src/%,$(LMOD)/%,$(LUASRC))
SO       := $(CMOD)/concur/core.so

BUSTED   ?= busted --lua=$(LUA)

.PHONY: all deps test demo check check-asan check-tsan check-valgrind fuzz lint bench docs clean rock rockspec

all: deps $(SO) $(LUADST)

deps:
	@sh tools/deps.sh

$(BUILD)/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(OBJS) $(LIBS) $(EXTRA_LDFLAGS)

$(LMOD)/%.lua: src/%.lua
	@mkdir -p $(dir $@)
	cp $< $@


test: all
	$(BUSTED) $(BUSTED_ARGS)

demo: all
	@for f in examples/04_*.lua examples/05_*.lua examples/06_*.lua; do \
	  [ -f "$$f" ] && ./lua "$$f" || true; done

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
	$(MAKE) --no-print-directory $(SAN)-tree/lib/lua/5.4/concur/core.so BUILD=build/$(SAN) \
	  OPT="-O1 -g" SO=$(SAN)-tree/lib/lua/5.4/concur/core.so
	sh tools/sanitize.sh $(SAN)

check-valgrind: all
	sh tools/valgrind.sh

fuzz: deps
	sh tools/fuzz.sh

lint: deps
	luacheck -q src spec examples bench tools
	@mkdir -p build && lua5.4 tools/rockspec.lua build/rockspec.check && cmp -s build/rockspec.check concur-scm-1.rockspec \
	  || { echo "concur-scm-1.rockspec is stale: run make rockspec"; exit 1; }
	$(MAKE) --no-print-directory BUILD=build/lint-gcc CC=gcc OPT="-O2" EXTRA_CFLAGS=-Werror \
	  SO=build/lint-gcc/core.so build/lint-gcc/core.so
	$(MAKE) --no-print-directory BUILD=build/lint-clang CC=clang OPT="-O2" EXTRA_CFLAGS=-Werror \
	  SO=build/lint-clang/core.so build/lint-clang/core.so

bench: all
	./lua bench/run.lua

# LDoc reads build/docs-src: the Lua modules, and stubs made from the C
# bindings' /*** */ comments (tools/docsrc.lua); config.ld says the rest.
docs:
	@sh tools/deps.sh docs
	@rm -rf build/docs build/docs-src && mkdir -p build/docs-src
	lua5.4 tools/docsrc.lua build/docs-src $(LUASRC) $(wildcard csrc/*.c)
	ldoc -q .
	@echo "concur: docs in build/docs/index.html"

rockspec:
	lua5.4 tools/rockspec.lua

rock: deps
	luarocks --lua-version=5.4 make --tree=build/rocktree concur-scm-1.rockspec

clean:
	rm -rf build $(TREE) asan-tree tsan-tree
