/*
** clusterlimits.c: cluster.limits, per-host rates that fetch.Clients on many
** machines share through Redis (core/clusterlimits.c): give one to
** fetch.Client{ rate = r, limits = ... } in each process, and every such
** client, on any machine, starts requests to a host at r per second
** together. cluster.limits (lua/concur/cluster.lua) reads the options.
*/
#include "concur.h"
#include "core/clusterlimits.h"

static concur_fetch_limits *checklimits (lua_State *L) {
  return (concur_fetch_limits *)concur_checkobj(L, 1, &concur_climits_type);
}

/*** limits:failures() --> reservations Redis did not answer in time (the
** clients then kept their own rates) */
static int limits_failures (lua_State *L) {
  lua_pushinteger(L, concur_climits_failures(checklimits(L)));
  return 1;
}

static const luaL_Reg methods[] = {
  {"failures", limits_failures},
  {NULL, NULL}
};

/*** core.cluster_limits{ redis, prefix, timeout } --> limits */
static int limits_new (lua_State *L) {
  concur_fetch_limits *l;
  const char *url, *prefix;
  double timeout;
  char err[400];
  concur_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "redis");
  url = concur_checklstring(L, -1, NULL);
  lua_getfield(L, 1, "prefix");
  prefix = concur_checklstring(L, -1, NULL);
  lua_getfield(L, 1, "timeout");
  timeout = concur_checknumber(L, -1);
  l = concur_climits_new(url, prefix, timeout, err, sizeof err);
  if (l == NULL) return concur_error(L, "argument", "%s", err);
  concur_pushobj(L, &l->obj);
  concur_obj_unref(&l->obj);
  return 1;
}

void concur_clusterlimits_open (lua_State *L) {
  concur_newclass(L, &concur_climits_type, methods, NULL);
  lua_pushcfunction(L, limits_new);
  lua_setfield(L, -2, "cluster_limits");
}
