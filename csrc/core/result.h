/*
** result.h: every result code of concur's core, in one numbering.
**
** Each code has a value of its own, so a result passed up through layers
** (a wait inside a map update, a queue inside the fetch engine) can never
** be read as another's. CONCUR_OK (0) is success everywhere; the module
** names (CONCUR_MAP_OK, CONCUR_FETCH_ENOMEM, ...) are the same codes under
** the names their callers read best. Callers compare with these names,
** never with numbers. No includes: every core header may include it.
*/
#ifndef CONCUR_CORE_RESULT_H
#define CONCUR_CORE_RESULT_H

#define CONCUR_OK 0

/* waits (wait.h) */
#define CONCUR_TIMEDOUT 1      /* the deadline passed */
#define CONCUR_CANCELLED 2     /* the calling task was cancelled */
#define CONCUR_TASKTIMEOUT 3   /* the calling task's own deadline passed */
#define CONCUR_INTERRUPTED 4   /* the calling thread's Lua state was
                               ** interrupted (Ctrl-C: see interrupt.c) */

/* any part */
#define CONCUR_NOMEM 5         /* memory (the heap, the arena, a store) ran out */

/* Redis (redis.h), beside the wait results: CONCUR_TIMEDOUT is Redis
** unreachable until the deadline */
#define CONCUR_REDIS_CLOSED 10    /* aborted by concur_redis_abort */
#define CONCUR_REDIS_REFUSED 11   /* the server refused AUTH or SELECT */
#define CONCUR_REDIS_WOKEN 12     /* the wake descriptor became readable */

/* synchronisation objects (sync.h) */
#define CONCUR_BROKEN 16       /* barrier broken (abort, reset, a timeout) */
#define CONCUR_OWNERDEAD 17    /* acquired; the process holding it had died */
#define CONCUR_BARRIER_ACTION 18   /* the last party of a barrier with an
                                   ** action: run it, then barrier_pass */

/* queues (qlocal.h, queue.h) */
#define CONCUR_QCLOSED 32      /* put after close; get once closed and empty */
#define CONCUR_QNOMEM CONCUR_NOMEM   /* the store could not grow */
#define CONCUR_QFOREIGN 34     /* the next item holds an object of another
                               ** process's (it stays in the queue) */
#define CONCUR_QLOCAL 35       /* the item holds an in-process object and the
                               ** queue is shared with other processes */
#define CONCUR_QFROZEN 36      /* the queue moved to shared memory */

/* the shared map (map.h) */
#define CONCUR_MAP_OK CONCUR_OK
#define CONCUR_MAP_ABSENT 40   /* no such key */
#define CONCUR_MAP_CHANGED 41  /* set_if: the key's version moved */
#define CONCUR_MAP_PRESENT 42  /* add: the key is there already */
#define CONCUR_MAP_NOTNUM 43   /* incr: the value is not a number */
#define CONCUR_MAP_NOMEM CONCUR_NOMEM   /* the arena (or the heap) is full */
#define CONCUR_MAP_FOREIGN 44  /* the value holds another process's objects */
#define CONCUR_MAP_LOCAL 45    /* the value holds an in-process object and
                               ** the map is shared with other processes */

/* the fetch engine and URLs (fetch_engine.h, fetch_url.h) */
#define CONCUR_FETCH_OK CONCUR_OK
#define CONCUR_FETCH_EARG 48   /* bad input: message in err */
#define CONCUR_FETCH_ECLOSED 49   /* the engine was closed */
#define CONCUR_FETCH_ENOMEM CONCUR_NOMEM

/* the HTML parser (html.h) */
#define CONCUR_HTML_OK CONCUR_OK
#define CONCUR_HTML_ELIMIT 56  /* the body is over the size cap */
#define CONCUR_HTML_ENOMEM CONCUR_NOMEM

#endif
