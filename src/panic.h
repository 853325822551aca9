/*
 * panic.h - which endpoints of a pool may take a call (SPEC 4.5, 4.7):
 * usable ones (healthy, not ejected) whose breaker admits, or, when too few
 * are usable, every endpoint whose breaker admits (panic).
 *
 * Pure: per-endpoint facts in, candidate flags out; the caller maps a
 * non-candidate to ADMIT_NO for balancer_pick and logs panic transitions.
 */
#ifndef AHOYD_PANIC_H
#define AHOYD_PANIC_H

#include <stdbool.h>

struct panic_endpoint {
    bool healthy; /* health check (always true without one) */
    bool ejected; /* outlier ejection */
    bool admits;  /* breaker_peek() admits (closed or probe) */
};

/* A pool's panic mode, kept between picks so that entry and exit are
 * reported once. */
struct panic_state {
    bool active;
};

enum panic_change { PANIC_UNCHANGED = 0, PANIC_ENTERED, PANIC_EXITED };

/* Is the usable share below threshold_percent (1..100)? 0 = panic off. */
bool panic_below_threshold(int usable, int n, int threshold_percent);

/*
 * Fill candidate[0..n) and return how many are set. Not in panic: usable and
 * admitting. In panic (fewer than threshold_percent of the n endpoints
 * usable): admitting, health and ejection ignored. A return of 0 with
 * threshold 0 means "none usable" (503 no_endpoints). *change (when not
 * NULL) reports entry into or exit from panic against st.
 */
int panic_candidates(const struct panic_endpoint *eps, int n, int threshold_percent,
                     struct panic_state *st, bool *candidate, enum panic_change *change);

#endif
