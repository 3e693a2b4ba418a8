/*
** sanlua.c: a minimal Lua 5.4 interpreter built with a sanitizer, so the
** sanitized concur.core can be tested without preloading the sanitizer
** runtime into every child process (sh crashes under a preloaded TSan).
** Usage: sanlua SCRIPT [ARGS...]   (as `lua SCRIPT ARGS...`)
*/
#include <signal.h>
#include <stdio.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* Ctrl-C as lua.c handles it: the handler sets a hook that raises
** "interrupted!" at the next instruction, and a second one kills. */
static lua_State *globalL = NULL;

static void setsignal (int sig, void (*handler) (int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

static void lstop (lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void laction (int i) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  setsignal(i, SIG_DFL);
  lua_sethook(globalL, lstop, flag, 1);
}

static int msgh (lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

int main (int argc, char **argv) {
  lua_State *L = luaL_newstate();
  int status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT [ARGS]\n", argv[0]);
    return 2;
  }
  luaL_openlibs(L);
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, msgh);
  if (luaL_loadfile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
  globalL = L;
  setsignal(SIGINT, laction);
  status = lua_pcall(L, argc - 2, 0, 1);
  setsignal(SIGINT, SIG_DFL);
  if (status != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
