#!/bin/sh
# A part of the suite under valgrind memcheck: no invalid accesses, no
# definite leaks. The rest (pool, thread, process, fetch, bigint, examples,
# and the 'stress' specs) is left to the sanitizer runs, which check the
# same C with leak detection: under valgrind, which runs one thread at a
# time, their busy-waiting cancellation specs and the 1,000 worker states
# of the pool specs take over ten minutes. SPECS=spec runs everything.
set -e
valgrind -q --error-exitcode=26 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --suppressions=tools/valgrind.supp \
  lua5.4 /usr/bin/busted --ignore-lua --exclude-tags=stress,novalgrind \
  ${SPECS:-spec/10-codec_spec.lua spec/21-future_spec.lua spec/3*_spec.lua}
