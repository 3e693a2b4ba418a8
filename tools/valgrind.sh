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
# Left out: the 'stress' specs (long by design, or measuring RSS) and
# 'novalgrind' ones. SPECS=FILE... runs those files only.
set -e
export CONCUR_VALGRIND=1
run() {
  valgrind -q --fair-sched=yes --error-exitcode=26 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --suppressions=tools/valgrind.supp \
    lua5.4 /usr/bin/busted --ignore-lua --exclude-tags=stress,novalgrind "$@"
}
if [ -n "$SPECS" ]; then
  run $SPECS
  exit
fi
run spec
