#!/bin/sh
# Runs the spec suite against a sanitized build of concur.core (built by
# `make check-asan` / `make check-tsan` into ./asan-tree or ./tsan-tree).
# lua5.4 itself is not instrumented, so the sanitizer runtime is preloaded.
set -e
san=$1
tree="./$san-tree/lib/lua/5.4/?.so"
case "$san" in
  asan)
    rt=$(gcc -print-file-name=libasan.so)
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23:detect_stack_use_after_return=0"
    export LSAN_OPTIONS="suppressions=$(pwd)/tools/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=24"
    ;;
  tsan)
    rt=$(gcc -print-file-name=libtsan.so)
    export TSAN_OPTIONS="halt_on_error=1:exitcode=25:second_deadlock_stack=1:report_signal_unsafe=0:suppressions=$(pwd)/tools/tsan.supp"
    ;;
  *) echo "usage: $0 asan|tsan" >&2; exit 2 ;;
esac
# --ignore-lua: busted runs in this very process (no re-exec through sh,
# which would preload the runtime into the shell too)
LD_PRELOAD="$rt" CONCUR_SANITIZER="$san" lua5.4 /usr/bin/busted --ignore-lua \
  --cpath="$tree" --exclude-tags=nosan ${SPECS:-spec}
