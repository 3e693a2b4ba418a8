/* fetch.c: placeholder until the fetch part lands. */
#include "concur.h"

void concur_fetch_open (lua_State *L) {
  (void)L;
}
