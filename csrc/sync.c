/* sync.c: placeholder until the sync part lands. */
#include "concur.h"

void concur_sync_open (lua_State *L) {
  (void)L;
}
