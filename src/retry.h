/*
 * retry.h - retry policy, backoff schedule, Retry-After and retry budget
 * (SPEC 4.1 steps 5-6, 4.3, 4.4).
 *
 * Pure: the clock and the random state are arguments.
 */
#ifndef AHOYD_RETRY_H
#define AHOYD_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outcome.h"

enum jitter_mode { JITTER_NONE = 0, JITTER_FULL, JITTER_EQUAL };
#define JITTER_MODE_COUNT 3
/* The names, indexed by enum jitter_mode: "none", "full", "equal". */
extern const char *const jitter_mode_names[JITTER_MODE_COUNT];
const char *retry_jitter_name(enum jitter_mode j);

/* retry-on flags; status codes live in the bitset */
#define RETRY_ON_CONNECT_FAILURE (1u << 0)
#define RETRY_ON_RESET (1u << 1)
#define RETRY_ON_TIMEOUT (1u << 2)
#define RETRY_ON_5XX (1u << 3)          /* any 500-599 */
#define RETRY_ON_GATEWAY_ERROR (1u << 4) /* 502, 503, 504 */

#define RETRY_STATUS_WORDS 10 /* bitset for statuses 0..639 */

struct retry_policy {
    int max_attempts;      /* >= 1, first attempt included */
    int64_t base_delay_ms; /* > 0 */
    int64_t max_delay_ms;  /* > 0 */
    enum jitter_mode jitter;
    unsigned retry_on;     /* RETRY_ON_* flags */
    uint64_t retry_on_status[RETRY_STATUS_WORDS];
    bool retry_non_idempotent;
    bool honor_retry_after;
    bool budget_enabled;
    double budget_ratio;          /* >= 0 */
    double budget_min_per_second; /* >= 0 */
};

/* Set the defaults of SPEC 2.1: 3 attempts, 1s base, 30s max, no jitter,
 * [connect-failure, reset, timeout, 429, 502, 503, 504], honor Retry-After, no budget. */
void retry_policy_defaults(struct retry_policy *p);
void retry_policy_add_status(struct retry_policy *p, int status);
bool retry_policy_has_status(const struct retry_policy *p, int status);

/* retry-on words: the flag of "connect-failure", "reset", "timeout", "5xx" or
 * "gateway-error", 0 for anything else. */
unsigned retry_on_flag(const char *word);
/* Every retry-on entry of p as written in YAML, words first, then the status codes in
 * ascending order ("503"), each passed to fn. */
void retry_on_each(const struct retry_policy *p, void (*fn)(void *arg, const char *entry),
                   void *arg);

/* Does the outcome match retry-on? (OUTCOME_RESPONSE_TOO_LARGE and CANCELLED never do.) */
bool retry_outcome_matches(const struct retry_policy *p, const struct outcome *o);

/* GET HEAD OPTIONS PUT DELETE TRACE (exact, case-sensitive). */
bool retry_method_is_idempotent(const char *method);

/* May a request that may have reached the upstream be sent again (SPEC 4.3)? Yes for an
 * idempotent method, with retry-non-idempotent, or with an Idempotency-Key. */
bool retry_may_resend(const struct retry_policy *p, const char *method,
                      bool has_idempotency_key);

/* Backoff before attempt k+1, k >= 1 the attempt just finished:
 * base * 2^(k-1), capped at max, then jittered. rng is xorshift state (non-zero). */
int64_t retry_backoff_ms(const struct retry_policy *p, int k, uint64_t *rng);

/* Retry-After value -> delay in ms (seconds or HTTP-date; a past date is 0).
 * Returns -1 when unparsable. now_unix_s is the wall clock in seconds. */
int64_t retry_parse_retry_after(const char *value, int64_t now_unix_s);

/* Sliding 10 s window of requests and retries, per service (SPEC 4.4). */
#define RETRY_BUDGET_BUCKETS 100 /* 100 ms each */
struct retry_budget {
    int64_t bucket_start_ms[RETRY_BUDGET_BUCKETS];
    uint32_t requests[RETRY_BUDGET_BUCKETS];
    uint32_t retries[RETRY_BUDGET_BUCKETS];
};
void retry_budget_init(struct retry_budget *b);
void retry_budget_note_request(struct retry_budget *b, int64_t now_ms);
void retry_budget_note_retry(struct retry_budget *b, int64_t now_ms);
/* Would one more retry be allowed now? */
bool retry_budget_allows(const struct retry_budget *b, const struct retry_policy *p,
                         int64_t now_ms);

enum retry_verdict {
    RETRY_YES = 0,
    RETRY_NO_OUTCOME,     /* outcome not in retry-on (or a success) */
    RETRY_NO_ATTEMPTS,    /* max attempts reached */
    RETRY_NO_METHOD,      /* method may not be retried for this outcome (4.3) */
    RETRY_NO_RETRY_AFTER, /* Retry-After beyond max-delay or the deadline */
    RETRY_NO_DEADLINE,    /* backoff would not end before the deadline */
    RETRY_NO_BUDGET,      /* the retry budget refuses */
};

struct retry_input {
    struct outcome outcome;
    int attempt;               /* k: the attempt that just finished, 1-based */
    int max_attempts;          /* effective (after X-Ahoyd-Max-Attempts) */
    const char *method;
    bool has_idempotency_key;
    const char *retry_after;   /* the response's Retry-After header or NULL */
    int64_t now_ms;            /* monotonic */
    int64_t now_unix_s;        /* wall clock, for HTTP dates */
    int64_t deadline_ms;       /* absolute monotonic deadline, 0 = none */
};

/* The whole decision of SPEC 4.1 step 5. On RETRY_YES, *delay_ms is the backoff
 * and the retry has been noted in the budget (when enabled). */
enum retry_verdict retry_decide(const struct retry_policy *p, const struct retry_input *in,
                                struct retry_budget *budget, uint64_t *rng, int64_t *delay_ms);

const char *retry_verdict_name(enum retry_verdict v);

#endif
