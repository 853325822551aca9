/*
 * breaker.c - the circuit breaker of one endpoint (SPEC 4.2).
 *
 * A small state machine: CLOSED counts consecutive failures, OPEN refuses
 * until recovery-timeout has passed, HALF_OPEN lets at most
 * half-open-max-calls probes run at a time and closes after that many
 * successful probes. Every transition bumps an epoch; an attempt carries the
 * epoch it was admitted in (its ticket), and an outcome that arrives after
 * the breaker has moved on is ignored, so a slow success cannot close an OPEN
 * breaker and a slow failure from an earlier CLOSED period cannot count.
 *
 * Pure: no I/O, no clock, no globals; the caller passes the monotonic time in
 * milliseconds and logs the transitions reported here.
 */
#include "breaker.h"

#include <stddef.h>

const char *breaker_state_name(enum breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

void breaker_init(struct breaker *b)
{
    b->state = BREAKER_CLOSED;
    b->consecutive_failures = 0;
    b->opened_at_ms = 0;
    b->probes_inflight = 0;
    b->probe_successes = 0;
    b->epoch = 0;
}

/* Move to a new state: counts that belong to the old state are cleared and
 * the epoch advances, which turns every outstanding ticket stale. */
static void transition(struct breaker *b, enum breaker_state to, int64_t now_ms, const char *reason,
                       struct breaker_transition *tr)
{
    if (tr) {
        tr->from = b->state;
        tr->to = to;
        tr->reason = reason;
    }
    b->state = to;
    b->consecutive_failures = 0;
    b->probes_inflight = 0;
    b->probe_successes = 0;
    if (to == BREAKER_OPEN)
        b->opened_at_ms = now_ms;
    b->epoch++;
}

bool breaker_tick(struct breaker *b, const struct breaker_policy *p, int64_t now_ms,
                  struct breaker_transition *tr)
{
    if (!p->enabled) {
        /* Disabled by a reload while not CLOSED: fall back to CLOSED now. */
        if (b->state != BREAKER_CLOSED) {
            transition(b, BREAKER_CLOSED, now_ms, "circuit breaker disabled", tr);
            return true;
        }
        return false;
    }
    if (b->state == BREAKER_OPEN && now_ms - b->opened_at_ms >= p->recovery_timeout_ms) {
        transition(b, BREAKER_HALF_OPEN, now_ms, "recovery timeout elapsed", tr);
        return true;
    }
    return false;
}

enum breaker_state breaker_peek(const struct breaker *b, const struct breaker_policy *p)
{
    if (!p->enabled)
        return BREAKER_CLOSED;
    switch (b->state) {
    case BREAKER_CLOSED:
        return BREAKER_CLOSED;
    case BREAKER_HALF_OPEN:
        return b->probes_inflight < p->half_open_max_calls ? BREAKER_HALF_OPEN : BREAKER_OPEN;
    case BREAKER_OPEN:
        break;
    }
    return BREAKER_OPEN;
}

/* now_ms is not used: the OPEN -> HALF_OPEN move is breaker_tick()'s job, so
 * that it is always reported; an OPEN breaker that was not ticked refuses. */
bool breaker_admit(struct breaker *b, const struct breaker_policy *p, int64_t now_ms,
                   struct breaker_ticket *t)
{
    enum breaker_state as = breaker_peek(b, p);

    (void)now_ms;
    if (as == BREAKER_OPEN)
        return false;
    if (as == BREAKER_HALF_OPEN)
        b->probes_inflight++;
    t->epoch = b->epoch;
    t->admitted_in = as;
    return true;
}

bool breaker_record(struct breaker *b, const struct breaker_policy *p,
                    const struct breaker_ticket *t, enum breaker_result r, int64_t now_ms,
                    struct breaker_transition *tr)
{
    if (!p->enabled)
        return false;
    /* Stale: the breaker has changed state (or was reset) since admission. */
    if (t->epoch != b->epoch || t->admitted_in != b->state)
        return false;

    if (b->state == BREAKER_CLOSED) {
        if (r == BREAKER_SUCCESS) {
            b->consecutive_failures = 0;
        } else if (r == BREAKER_FAILURE) {
            b->consecutive_failures++;
            if (b->consecutive_failures >= p->failure_threshold) {
                transition(b, BREAKER_OPEN, now_ms, "failure threshold reached", tr);
                return true;
            }
        }
        return false;
    }

    if (b->state == BREAKER_HALF_OPEN) {
        if (b->probes_inflight > 0)
            b->probes_inflight--;
        if (r == BREAKER_FAILURE) {
            transition(b, BREAKER_OPEN, now_ms, "probe failed", tr);
            return true;
        }
        if (r == BREAKER_SUCCESS) {
            b->probe_successes++;
            if (b->probe_successes >= p->half_open_max_calls) {
                transition(b, BREAKER_CLOSED, now_ms, "probes succeeded", tr);
                return true;
            }
        }
        return false;
    }
    /* OPEN admits nothing, so no ticket of this epoch can exist. */
    return false;
}

int64_t breaker_ms_until_half_open(const struct breaker *b, const struct breaker_policy *p,
                                   int64_t now_ms)
{
    int64_t left;

    if (!p->enabled || b->state != BREAKER_OPEN)
        return 0;
    left = b->opened_at_ms + p->recovery_timeout_ms - now_ms;
    return left > 0 ? left : 0;
}

bool breaker_reset(struct breaker *b, struct breaker_transition *tr)
{
    enum breaker_state from = b->state;

    /* Always a fresh epoch, so outcomes of attempts admitted before the reset
     * cannot count against the reset breaker. */
    transition(b, BREAKER_CLOSED, 0, "admin reset", tr);
    return from != BREAKER_CLOSED;
}
