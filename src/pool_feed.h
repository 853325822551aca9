/*
 * pool_feed.h - the discovery sources of every service, feeding its pool
 * (SPEC 4.6): one source per dns or etcd block of each service, on the first
 * worker's loop (like the health checker), whose answers are applied to the
 * current runtime's pool (runtime_pool_update) and whose state is kept in the
 * service's struct service_state for the admin API and the metrics.
 *
 * A reload hands the sources over: an unchanged block keeps its source (and
 * the set it found, which the new runtime takes from the old one), a changed
 * block starts its source again (the old block's endpoints and status are
 * dropped), a removed one stops it.
 */
#ifndef AHOYD_POOL_FEED_H
#define AHOYD_POOL_FEED_H

#include "checker.h"
#include "loop.h"
#include "runtime.h"

struct pool_feed;

/* checker (may be NULL) is told when endpoints join, so that they are checked at once. */
struct pool_feed *pool_feed_new(struct loop *loop, struct checker *checker);
/* rt is the current runtime (after start or a reload's swap; not a reference: main
 * holds it): sources are started, kept, restarted or stopped to match its services. */
void pool_feed_apply(struct pool_feed *f, struct runtime *rt);
/* Tests: the next this many source starts fail (to see them retried). */
extern int pool_feed_test_start_failures;
/* Stop every source (before the runtime goes). NULL is fine. */
void pool_feed_free(struct pool_feed *f);

#endif
