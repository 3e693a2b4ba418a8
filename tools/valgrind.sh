#!/bin/sh
# The spec suite under valgrind memcheck: no invalid accesses, no definite
# leaks (in this process: worker processes and the interpreters that specs
# start run without valgrind; the sanitizer runs check those).
#
# CONCUR_VALGRIND=1 tells the specs (helpers.size) to use smaller sizes that
# take the same paths, where size only adds time: valgrind runs one thread
# at a time, 20-50 times slower. --fair-sched=yes hands the CPU on in turn,
# or a thread can starve behind busy ones (the fork-safety spec of
# 40-process took 1.5 s or 45 s without it, 3.5 s with it).
#
# Left out: the 'stress' specs (long by design, or measuring RSS),
# 'novalgrind' ones, and, until the spec accepts a pool that breaks while it
# starts, "ProcessPool initializer marks the pool broken when it raises":
# valgrind slows this process so much that the workers' failed initializer
# always breaks the pool inside the constructor, which then raises (the ASan
# and plain runs keep it).
#
# spec/41-shared runs in a valgrind process of its own. Its worker processes
# (not under valgrind) write into the shared arena of this one, and valgrind
# cannot see writes made by another process: arena bytes that this process
# last filled with undefined ones (the unused tail of a queue item, copied
# from the stack by concur_queue_put) stay "uninitialised" to it after a
# worker writes them, and the specs before 41 leave such bytes behind. In a
# fresh process the arena starts defined. SPECS=FILE... runs those files in
# one process.
set -e
export CONCUR_VALGRIND=1
run() {
  valgrind -q --fair-sched=yes --error-exitcode=26 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --suppressions=tools/valgrind.supp \
    lua5.4 /usr/bin/busted --ignore-lua --exclude-tags=stress,novalgrind \
    --filter-out="ProcessPool initializer marks the pool broken when it raises" "$@"
}
if [ -n "$SPECS" ]; then
  run $SPECS
  exit
fi
own=spec/41-shared_spec.lua
main=""
for f in spec/*_spec.lua; do [ "$f" = "$own" ] || main="$main $f"; done
run $main
if [ -f "$own" ]; then run "$own"; fi
