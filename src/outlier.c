/*
 * outlier.c - outlier ejection of one endpoint (SPEC 4.7), as Envoy's
 * consecutive-5xx detector does it.
 *
 * A call outcome counts by the breaker's rule (connect failure, reset,
 * timeout, status >= 500 fail; neutral outcomes do not count). Unlike the
 * breaker, ejection looks at every call, has no half-open probe and simply
 * ends. The n-th ejection in a run lasts base-ejection-time x n (n capped at
 * 10), and n falls back by one for each base-ejection-time the endpoint then
 * stays un-ejected: a flapping endpoint is kept out longer and longer, one
 * that recovered for good is soon forgiven. The decay is computed when the
 * next ejection happens, not by a timer, so nothing here needs ticking but
 * the return itself.
 *
 * The pool decides the limit: an ejection that would leave more than
 * max-ejection-percent of the pool ejected does not happen, and the failure
 * run starts again (the next attempt needs a full run).
 *
 * Pure: the caller passes the time and the pool's counts.
 */
#include "outlier.h"

void outlier_init(struct outlier *o)
{
    o->consecutive_failures = 0;
    o->ejected = false;
    o->ejected_until_ms = 0;
    o->multiplier = 0;
    o->returned_at_ms = 0;
    o->ejections = 0;
}

bool outlier_tick(struct outlier *o, const struct outlier_policy *p, int64_t now_ms)
{
    if (!o->ejected)
        return false;
    if (p->enabled && now_ms < o->ejected_until_ms)
        return false;
    o->ejected = false;
    o->returned_at_ms = p->enabled ? o->ejected_until_ms : now_ms;
    o->consecutive_failures = 0;
    return true;
}

bool outlier_may_eject(int ejected_others, int pool_size, int max_percent)
{
    if (pool_size <= 0)
        return false;
    return (int64_t)(ejected_others + 1) * 100 <= (int64_t)max_percent * pool_size;
}

int outlier_next_multiplier(const struct outlier *o, const struct outlier_policy *p, int64_t now_ms)
{
    int64_t n = o->multiplier;

    if (n > 0 && p->base_ejection_ms > 0 && now_ms > o->returned_at_ms)
        n -= (now_ms - o->returned_at_ms) / p->base_ejection_ms;
    if (n < 0)
        n = 0;
    return n + 1 > OUTLIER_MAX_MULTIPLIER ? OUTLIER_MAX_MULTIPLIER : (int)n + 1;
}

enum outlier_event outlier_record(struct outlier *o, const struct outlier_policy *p,
                                  enum breaker_result r, int64_t now_ms, int ejected_others,
                                  int pool_size)
{
    int n;

    if (!p->enabled || o->ejected || r == BREAKER_NEUTRAL)
        return OUTLIER_NO_CHANGE;
    if (r == BREAKER_SUCCESS) {
        o->consecutive_failures = 0;
        return OUTLIER_NO_CHANGE;
    }
    if (++o->consecutive_failures < p->consecutive_failures)
        return OUTLIER_NO_CHANGE;
    o->consecutive_failures = 0;
    if (!outlier_may_eject(ejected_others, pool_size, p->max_ejection_percent))
        return OUTLIER_EJECTION_REFUSED;
    n = outlier_next_multiplier(o, p, now_ms);
    o->multiplier = n;
    o->ejected = true;
    o->ejected_until_ms = now_ms + p->base_ejection_ms * n;
    o->ejections++;
    return OUTLIER_EJECTED;
}

int64_t outlier_ms_until_return(const struct outlier *o, int64_t now_ms)
{
    if (!o->ejected || now_ms >= o->ejected_until_ms)
        return 0;
    return o->ejected_until_ms - now_ms;
}
