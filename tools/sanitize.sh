#!/bin/sh
# Runs the core's C unit tests (build/$san/core_test) and the spec suite
# against a sanitized build of concur.core (built by `make check-asan` /
# `make check-tsan` into build/asan/tree or build/tsan/tree),
# under a Lua interpreter built with the same sanitizer (tools/sanlua.c):
# child processes (servers, shells) then run without the sanitizer.
set -e
san=$1
case "$san" in
  asan)
    flags="-fsanitize=address,undefined -fno-omit-frame-pointer"
    export ASAN_OPTIONS="detect_leaks=1:exitcode=23:detect_stack_use_after_return=0"
    # use_tls=0: LeakSanitizer's tracer crashes at exit ("Tracer caught
    # signal 11") reading a bogus dynamic-TLS block of this glibc; without
    # TLS as roots it can only report more leaks, never fewer.
    export LSAN_OPTIONS="suppressions=$(pwd)/tools/lsan.supp:print_suppressions=0:use_tls=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=24"
    exclude="nosan"
    ;;
  tsan)
    flags="-fsanitize=thread"
    # ThreadSanitizer delivers signals only when a thread enters an
    # intercepted call; a pure-Lua loop never does, so specs that interrupt
    # one are tagged notsan.
    export TSAN_OPTIONS="halt_on_error=1:exitcode=25:second_deadlock_stack=1:report_signal_unsafe=0:suppressions=$(pwd)/tools/tsan.supp"
    exclude="nosan,notsan,stress"
    ;;
  *) echo "usage: $0 asan|tsan" >&2; exit 2 ;;
esac
# the C unit tests of the core first, under the same options
"build/$san/core_test"
lua="build/$san/sanlua"
gcc -O1 -g $flags $(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4) \
  -Wl,-E -o "$lua" tools/sanlua.c /usr/lib/x86_64-linux-gnu/liblua5.4.a -lm -ldl
export CONCUR_LUA="$(pwd)/$lua" CONCUR_SANITIZER="$san"
"$lua" /usr/bin/busted --ignore-lua --cpath="./build/$san/tree/lib/lua/5.4/?.so" \
  --exclude-tags="$exclude" ${SPECS:-spec}
