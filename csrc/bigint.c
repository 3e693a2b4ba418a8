/* bigint.c: placeholder until the bigint part lands. */
#include "concur.h"

void concur_bigint_open (lua_State *L) {
  (void)L;
}
