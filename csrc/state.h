/*
** state.h: registering pools and threads with the Lua state that made them
** (see state.c).
*/
#ifndef CONCUR_STATE_H
#define CONCUR_STATE_H

#include "concur.h"

typedef struct concur_trackops {
  int (*reap) (void *p);      /* all work over? then join what is left, 1 */
  void (*close) (void *p);    /* the state closes: stop everything, join */
  void (*release) (void *p);  /* drop the tracker's reference */
} concur_trackops;

/* Registers p (the caller passes one reference to the tracker). */
void concur_track (lua_State *L, void *p, const concur_trackops *ops);

#endif
