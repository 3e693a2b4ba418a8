/*
** hub.h: a Lua state's completion fd: what an event loop (or the state's
** own coroutine scheduler, when it has nothing to run) sleeps on.
**
** A hub has one descriptor (an epoll set) that is readable while anything
** is due in its state: a watched future completed (its token waits to be
** taken), somebody signalled (a task became runnable), or the timer (one
** absolute deadline on CLOCK_MONOTONIC, the scheduler's next sleeper)
** passed. Under the set are an eventfd and a timerfd. Signals coalesce:
** the eventfd is written only by whoever turns the 'signalled' flag on, so
** a burst of completions costs one write until the hub is next drained.
**
** Threads: watch, unwatch, take, settimer, wait and free belong to the
** thread that runs the state; completions (fire) and signal may come from
** any thread. Lock order: future->mu, then hub->mu.
*/
#ifndef CONCUR_CORE_HUB_H
#define CONCUR_CORE_HUB_H

#include <stddef.h>
#include <stdint.h>
#include "future.h"

typedef struct concur_hub concur_hub;
typedef struct concur_hubnode concur_hubnode;

/* NULL on failure, with the reason in err */
concur_hub *concur_hub_new (char *err, size_t errsize);
/* Unwatches every future and closes the descriptors. */
void concur_hub_free (concur_hub *h);
/* The descriptor to poll for readability. */
int concur_hub_fd (concur_hub *h);

/* Watches f: when it completes, 'token' is queued for take and the hub
** signalled. Returns the node (for unwatch), or NULL with *done set when f
** is done already (nothing queued), or NULL with *done clear when out of
** memory. */
concur_hubnode *concur_hub_watch (concur_hub *h, concur_future *f,
                                  uint64_t token, int *done);
/* Stops watching: the node is freed, or, when its future completed
** meanwhile, its token stays queued (and the node is freed by take). The
** caller must not use n afterwards either way. */
void concur_hub_unwatch (concur_hub *h, concur_hubnode *n);

/* Makes the descriptor readable (coalesced while it is). Any thread. */
void concur_hub_signal (concur_hub *h);
/* Arms the timer for an absolute monotonic deadline (< 0: disarms it). */
int concur_hub_settimer (concur_hub *h, double deadline);
/* Drains the eventfd (not the timer: see hub.c) and takes up to 'max' queued tokens, oldest first;
** returns their number (call again while it is max). */
size_t concur_hub_take (concur_hub *h, uint64_t *out, size_t max);
/* Whether tokens are queued. */
int concur_hub_pending (concur_hub *h);
/* Sleeps until the descriptor is readable or the deadline (a wait result
** of wait.h; interruptible as concur_poll). */
int concur_hub_wait (concur_hub *h, double deadline);

/* A bell: an eventfd that becomes readable, for good, when 'f' completes
** (or when rung; f may be NULL). NULL on failure, the reason in err. */
typedef struct concur_bell concur_bell;
concur_bell *concur_bell_new (concur_future *f, char *err, size_t errsize);
int concur_bell_fd (concur_bell *b);
void concur_bell_ring (concur_bell *b);   /* any thread */
void concur_bell_free (concur_bell *b);

#endif
