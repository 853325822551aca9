/*
 * slow_start.c - ramping a new or recovered endpoint up (SPEC 4.5), as
 * HAProxy's slowstart does: its weight grows linearly from 10 % to 100 %
 * over the slow-start duration, so a cold instance (empty caches, JIT not
 * warm, connection pools empty) is not handed a full share at once. Applied
 * to the weight, it works for every policy: round-robin and random use the
 * weight directly, least-request divides the in-flight count by it.
 *
 * The scale (hundredths) keeps the arithmetic in integers and the balancer's
 * signature unchanged; ratios between endpoints are what every policy uses,
 * so scaling all of them by 100 changes no choice.
 *
 * Pure: the caller passes the time and calls slow_start_begin on the
 * transitions that bring an endpoint (back) into the pool.
 */
#include "slow_start.h"

void slow_start_init(struct slow_start *s)
{
    s->ramping = false;
    s->since_ms = 0;
}

void slow_start_begin(struct slow_start *s, int64_t now_ms)
{
    s->ramping = true;
    s->since_ms = now_ms;
}

bool slow_start_active(const struct slow_start *s, int64_t duration_ms, int64_t now_ms)
{
    return s->ramping && duration_ms > 0 && now_ms - s->since_ms < duration_ms;
}

int slow_start_weight(const struct slow_start *s, int weight, int64_t duration_ms, int64_t now_ms)
{
    int64_t w = weight >= 1 ? weight : 1, elapsed, percent_x_d, eff;

    if (!slow_start_active(s, duration_ms, now_ms))
        return (int)(w * SLOW_START_SCALE);
    elapsed = now_ms > s->since_ms ? now_ms - s->since_ms : 0;
    /* f x duration, in percent: 10 % x d + 90 % x elapsed. With w <= 1000000 and a
     * duration up to a day the product stays below 2^63. */
    percent_x_d =
        SLOW_START_FLOOR_PERCENT * duration_ms + (100 - SLOW_START_FLOOR_PERCENT) * elapsed;
    eff = w * SLOW_START_SCALE * percent_x_d / (100 * duration_ms);
    return eff >= 1 ? (int)eff : 1;
}
