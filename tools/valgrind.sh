#!/bin/sh
# The spec suite under valgrind memcheck: no invalid accesses, no definite
# leaks. The long stress specs are tagged 'stress' and left to the others.
set -e
valgrind -q --error-exitcode=26 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --suppressions=tools/valgrind.supp \
  lua5.4 /usr/bin/busted --ignore-lua --exclude-tags=stress,novalgrind ${SPECS:-spec}
