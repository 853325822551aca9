/*
 * outlier.h - outlier ejection of one endpoint (SPEC 4.7): consecutive
 * failures across all calls eject it for a time that grows with each
 * ejection, within the pool's max-ejection-percent.
 *
 * Pure: no I/O, no clock, no globals; the caller passes the monotonic time in
 * milliseconds and the pool's counts, and logs what is reported here.
 */
#ifndef AHOYD_OUTLIER_H
#define AHOYD_OUTLIER_H

#include <stdbool.h>
#include <stdint.h>

#include "breaker.h" /* enum breaker_result: the breaker's failure rule */

#define OUTLIER_MAX_MULTIPLIER 10

struct outlier_policy {
    bool enabled;             /* false: never ejects */
    int consecutive_failures; /* >= 1 */
    int64_t base_ejection_ms; /* > 0 */
    int max_ejection_percent; /* 0..100 */
};

struct outlier {
    int consecutive_failures; /* failures in a row while not ejected */
    bool ejected;
    int64_t ejected_until_ms;
    int multiplier;         /* n of the last ejection, 0 before the first */
    int64_t returned_at_ms; /* when the last ejection ended */
    uint64_t ejections;     /* total, for metrics */
};

enum outlier_event {
    OUTLIER_NO_CHANGE = 0,
    OUTLIER_EJECTED,          /* ejected now, until ejected_until_ms */
    OUTLIER_EJECTION_REFUSED, /* would have been, but max-ejection-percent forbids it */
};

void outlier_init(struct outlier *o);

/* Ends an ejection whose time is up (or any, when the policy is disabled).
 * Returns true when the endpoint returned. Call before outlier_record and
 * before building a pick's candidates. */
bool outlier_tick(struct outlier *o, const struct outlier_policy *p, int64_t now_ms);

/* The outcome of one call. ejected_others: endpoints of the pool ejected now
 * (this one excluded), pool_size: endpoints in the pool (this one included).
 * Outcomes that arrive while ejected, and neutral ones, change nothing. */
enum outlier_event outlier_record(struct outlier *o, const struct outlier_policy *p,
                                  enum breaker_result r, int64_t now_ms, int ejected_others,
                                  int pool_size);

/* Would ejecting one more endpoint keep the ejected share within max_percent? */
bool outlier_may_eject(int ejected_others, int pool_size, int max_percent);

/* The n the next ejection would get at now_ms (1..OUTLIER_MAX_MULTIPLIER):
 * the last one's n, less one per base-ejection-time spent un-ejected, plus one. */
int outlier_next_multiplier(const struct outlier *o, const struct outlier_policy *p,
                            int64_t now_ms);

/* Milliseconds until an ejected endpoint returns (0 if not ejected or due). */
int64_t outlier_ms_until_return(const struct outlier *o, int64_t now_ms);

#endif
