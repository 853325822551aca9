/*
 * breaker.h - one circuit breaker per endpoint (SPEC 4.2).
 *
 * Pure: no I/O, no clock, no globals. Time is passed in as milliseconds on
 * the monotonic clock. The caller (proxy.c) logs the transitions that these
 * functions report and turns them into metrics.
 */
#ifndef AHOYD_BREAKER_H
#define AHOYD_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 };

struct breaker_policy {
    bool enabled;             /* false: always CLOSED, never counts */
    int failure_threshold;    /* >= 1 */
    int64_t recovery_timeout_ms; /* > 0 */
    int half_open_max_calls;  /* >= 1 */
};

struct breaker {
    enum breaker_state state;
    int consecutive_failures;  /* CLOSED: failures in a row */
    int64_t opened_at_ms;      /* when it last went OPEN */
    int probes_inflight;       /* HALF_OPEN: admitted probes not yet finished */
    int probe_successes;       /* HALF_OPEN: successful probes so far */
    uint64_t epoch;            /* bumped on every transition: stale outcomes are ignored */
};

/* What an admitted attempt carries until its outcome is recorded. */
struct breaker_ticket {
    uint64_t epoch;            /* breaker epoch at admission */
    enum breaker_state admitted_in;
};

/* Result of one attempt, as the breaker sees it. */
enum breaker_result {
    BREAKER_SUCCESS,  /* any status < 500 */
    BREAKER_FAILURE,  /* connect failure, reset, timeout, status >= 500 */
    BREAKER_NEUTRAL,  /* cut by the call deadline or the client left: frees a probe slot only */
};

struct breaker_transition {
    enum breaker_state from, to;
    /* static string: "failure threshold reached", "recovery timeout elapsed", ... */
    const char *reason;
};

const char *breaker_state_name(enum breaker_state s); /* "closed", "open", "half_open" */

void breaker_init(struct breaker *b);

/* OPEN -> HALF_OPEN once recovery_timeout_ms has passed since opened_at_ms.
 * Returns true (and fills *tr) when the state changed. Called from a timer and
 * before every admission. */
bool breaker_tick(struct breaker *b, const struct breaker_policy *p, int64_t now_ms,
                  struct breaker_transition *tr);

/* Would the breaker admit an attempt now? No side effects (call breaker_tick first).
 * Returns BREAKER_CLOSED when it admits as closed, BREAKER_HALF_OPEN when it admits
 * as a probe (a free slot exists), BREAKER_OPEN when it refuses. */
enum breaker_state breaker_peek(const struct breaker *b, const struct breaker_policy *p);

/* Admit an attempt: takes a probe slot in HALF_OPEN. Returns false if refused. */
bool breaker_admit(struct breaker *b, const struct breaker_policy *p, int64_t now_ms,
                   struct breaker_ticket *t);

/* Record the outcome of an admitted attempt. An outcome changes the state only
 * if the breaker is still in the epoch it was admitted in. Returns true (and
 * fills *tr) when the state changed. */
bool breaker_record(struct breaker *b, const struct breaker_policy *p,
                    const struct breaker_ticket *t, enum breaker_result r, int64_t now_ms,
                    struct breaker_transition *tr);

/* Milliseconds until an OPEN breaker goes HALF_OPEN (0 if not OPEN or due). */
int64_t breaker_ms_until_half_open(const struct breaker *b, const struct breaker_policy *p,
                                   int64_t now_ms);

/* Force CLOSED with counts reset (admin reset). Returns true if the state changed. */
bool breaker_reset(struct breaker *b, struct breaker_transition *tr);

#endif
