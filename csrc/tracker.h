/*
** tracker.h: registering pools and threads with the Lua state that made them
** (see tracker.c).
*/
#ifndef CONCUR_TRACKER_H
#define CONCUR_TRACKER_H

#include "concur.h"

/* What the tracker does with a tracked object; the tracker holds one
** reference to it, dropped once the object is joined or closed. */
typedef struct concur_trackops {
  int (*over) (concur_obj *o);    /* stopped, and all its work ended? */
  void (*join) (concur_obj *o);   /* once over: join what is left of it */
  void (*close) (concur_obj *o);  /* the state closes: stop it and join */
} concur_trackops;

/* Registers o (the caller passes one reference to the tracker); it is
** closed with the state (pools). */
void concur_track (lua_State *L, concur_obj *o, const concur_trackops *ops);
/* The same for what outlives the worker state (a task's, a thread's) that
** made it: when that state closes, o is handed over to interpreter exit
** (threads and processes). */
void concur_track_outliving (lua_State *L, concur_obj *o,
                            const concur_trackops *ops);

#endif
