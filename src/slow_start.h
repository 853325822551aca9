/*
 * slow_start.h - the weight of an endpoint that ramps up (SPEC 4.5), for
 * every balancing policy.
 *
 * Weights handed to balancer_pick are in hundredths: configured weight x
 * SLOW_START_SCALE at full speed, so the ramp moves in steps of 1 % of one
 * weight unit without changing the balancer. Every endpoint of a pool must
 * go through slow_start_weight (ramping or not) so that all weights share
 * the scale; configured weights are at most 1000000, so the result fits an
 * int.
 *
 * Pure: the caller passes the monotonic time in milliseconds.
 */
#ifndef AHOYD_SLOW_START_H
#define AHOYD_SLOW_START_H

#include <stdbool.h>
#include <stdint.h>

#define SLOW_START_SCALE 100
#define SLOW_START_FLOOR_PERCENT 10

struct slow_start {
    bool ramping;
    int64_t since_ms; /* when it joined or came back */
};

/* Present at start: full weight from the first call. */
void slow_start_init(struct slow_start *s);
/* Joined the pool, or came back (breaker closed again, healthy again,
 * ejection over): ramp from now. */
void slow_start_begin(struct slow_start *s, int64_t now_ms);
/* Still ramping at now_ms with a ramp of duration_ms (0 = slow start off)? */
bool slow_start_active(const struct slow_start *s, int64_t duration_ms, int64_t now_ms);
/* weight x SLOW_START_SCALE x f, f rising linearly from 10 % at the start of
 * the ramp to 100 % at its end (rounded down, at least 1). */
int slow_start_weight(const struct slow_start *s, int weight, int64_t duration_ms, int64_t now_ms);

#endif
