/*
** event.c: concur.Event, a flag that threads and processes wait for.
**
** A thin binding over core/sync.h's concur_event: a shared object (its
** state in the arena, shared.h), methods as closures over their metatable,
** and no C mutex held here, ever: the core takes and drops its own.
*/
#include <stdlib.h>
#include "shared.h"
#include "core/sync.h"

/* ---- Event ------------------------------------------------------------- */

static const concur_objtype event_type = { "concur.Event",
                                           concur_shobj_destroy, NULL };
static const concur_shclass event_class = { &event_type, CONCUR_SH_EVENT,
                                            NULL, NULL };

#define checkevent(L) ((concur_event *)concur_shared_selfstate(L, &event_type))

/*** Event() --> a new event, not set */
static int event_new (lua_State *L) {
  concur_shobj *c = concur_shared_new(L, &event_class, sizeof(concur_event));
  return concur_shared_made(L, c, concur_event_init(c->state, 1));
}

/*** ev:set(): sets the flag and wakes every waiter */
static int event_set (lua_State *L) {
  concur_event_set(checkevent(L));
  return 0;
}

/*** ev:clear() */
static int event_clear (lua_State *L) {
  concur_event_clear(checkevent(L));
  return 0;
}

/*** ev:is_set() --> boolean */
static int event_isset (lua_State *L) {
  lua_pushboolean(L, concur_event_isset(checkevent(L)));
  return 1;
}

/*** ev:wait([timeout]) --> true once set, false when the timeout passed */
static int event_wait (lua_State *L) {
  concur_event *e = checkevent(L);
  double deadline = concur_shared_deadline(L, 2);
  int rc;
  CONCUR_WAIT(L, rc, concur_event_wait(e, deadline));
  return concur_shared_result(L, rc, "wait");
}

static const luaL_Reg event_methods[] = {
  {"set", event_set},
  {"clear", event_clear},
  {"is_set", event_isset},
  {"wait", event_wait},
  {NULL, NULL}
};


void concur_event_open (lua_State *L) {
  static const luaL_Reg ctors[] = {
    {"Event", event_new},
    {NULL, NULL}
  };
  concur_shclass_register(&event_class);
  concur_shared_class(L, &event_type, event_methods, NULL, 0);
  luaL_setfuncs(L, ctors, 0);
}
