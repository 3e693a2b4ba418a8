/*
** fetch_robots.h: robots.txt (RFC 9309) for the fetch engine, no Lua.
**
** A robots.txt is parsed once per host into the rules of the groups that
** apply to one product token (the User-Agent up to its first character that
** is not a letter, '_' or '-'): the groups naming that token, or else the
** '*' groups. A path is allowed unless its longest matching rule (patterns
** with '*' and a final '$') is a Disallow; on a tie Allow wins.
*/
#ifndef CONCUR_CORE_FETCH_ROBOTS_H
#define CONCUR_CORE_FETCH_ROBOTS_H

#include <stddef.h>

typedef struct concur_robots concur_robots;

/* Parses 'len' bytes for the given User-Agent; NULL when out of memory. */
concur_robots *concur_fetch_robots_parse (const char *txt, size_t len,
                                          const char *user_agent);
/* A robots.txt that allows (allow = 1) or disallows everything. */
concur_robots *concur_fetch_robots_all (int allow);
/* 1 when 'path' (path and query, starting with '/') may be fetched. */
int concur_fetch_robots_allowed (const concur_robots *r, const char *path);
/* Crawl-delay in seconds, or -1 when none was given. */
double concur_fetch_robots_delay (const concur_robots *r);
void concur_fetch_robots_free (concur_robots *r);

#endif
