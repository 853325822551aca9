/*
 * balancer.h - endpoint choice within a service's pool (SPEC 4.5).
 *
 * Pure: the caller fills one struct balancer_slot per endpoint with what the
 * breaker says and what this call has tried; balancer_pick() chooses.
 */
#ifndef AHOYD_BALANCER_H
#define AHOYD_BALANCER_H

#include <stdbool.h>
#include <stdint.h>

enum lb_policy { LB_ROUND_ROBIN = 0, LB_RANDOM, LB_LEAST_REQUEST };

/* Persistent per-endpoint balancer state (lives with the endpoint). */
struct balancer_state {
    int64_t current_weight; /* smooth weighted round-robin */
};

/* Per-pick view of one endpoint. */
enum balancer_admit { ADMIT_NO = 0, ADMIT_PROBE, ADMIT_CLOSED };
struct balancer_slot {
    int weight;                  /* >= 1 */
    int inflight;                /* calls in flight on this endpoint */
    enum balancer_admit admit;   /* from breaker_peek() */
    bool tried;                  /* already tried in this call */
    bool previous;               /* the previous attempt of this call went here */
    struct balancer_state *state;
};

#define LB_POLICY_COUNT 3
/* The names, indexed by enum lb_policy: "round-robin", "random", "least-request". */
extern const char *const lb_policy_names[LB_POLICY_COUNT];
const char *lb_policy_name(enum lb_policy p);

/*
 * Choose an endpoint index, or -1 when none admits.
 * First attempt (is_retry false): every admitted endpoint (closed or probe) is a
 * candidate; round-robin advances its position.
 * Retry: candidates are the first non-empty tier of
 *   untried&closed, untried&probe, not-previous&closed, not-previous&probe, previous;
 * round-robin does not advance its position on a retry.
 */
int balancer_pick(enum lb_policy policy, struct balancer_slot *slots, int n, bool is_retry,
                  uint64_t *rng);

#endif
