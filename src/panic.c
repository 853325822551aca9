/*
 * panic.c - the candidate set of a pick and the panic threshold (SPEC 4.7).
 *
 * Health checks and ejection exist to steer calls away from bad endpoints,
 * but a bad health path or a burst of failures can mark most of a pool bad
 * at once, and then the few that are left drown. Below panic-threshold
 * percent usable, ahoyd stops trusting those signals and spreads calls over
 * every endpoint whose breaker admits, as Envoy's panic mode does; the
 * breakers still protect each endpoint. Panic is decided on the share of the
 * pool that is usable (the breaker plays no part in it) and its entry and
 * exit are reported once, for one log line each and the ahoyd_panic gauge.
 *
 * Pure: facts in, flags out.
 */
#include "panic.h"

#include <stddef.h>
#include <stdint.h>

bool panic_below_threshold(int usable, int n, int threshold_percent)
{
    if (threshold_percent <= 0 || n <= 0)
        return false;
    return (int64_t)usable * 100 < (int64_t)threshold_percent * n;
}

static bool usable(const struct panic_endpoint *e)
{
    return e->healthy && !e->ejected;
}

int panic_candidates(const struct panic_endpoint *eps, int n, int threshold_percent,
                     struct panic_state *st, bool *candidate, enum panic_change *change)
{
    int n_usable = 0, count = 0;
    bool panic;

    for (int i = 0; i < n; i++)
        n_usable += usable(&eps[i]);
    panic = panic_below_threshold(n_usable, n, threshold_percent);
    if (change)
        *change = panic == st->active ? PANIC_UNCHANGED : panic ? PANIC_ENTERED : PANIC_EXITED;
    st->active = panic;
    for (int i = 0; i < n; i++) {
        candidate[i] = eps[i].admits && (panic || usable(&eps[i]));
        count += candidate[i];
    }
    return count;
}
