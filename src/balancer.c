/*
 * balancer.c - which endpoint of a pool gets an attempt (SPEC 4.5).
 *
 * First the candidate set: every endpoint whose breaker admits the attempt,
 * or, on a retry, the first non-empty tier of (untried & closed, untried &
 * probe, not previous & closed, not previous & probe, previous). Then the
 * policy chooses among the candidates:
 *   round-robin   nginx's smooth weighted round-robin; a retry runs it on a
 *                 copy of the weights so the shared position does not move;
 *   random        weighted random;
 *   least-request power of two choices: two distinct candidates drawn
 *                 uniformly, the one with fewer in-flight calls per unit of
 *                 weight wins, a tie goes to one of them at random in
 *                 proportion to their weights (so an idle 1:3 pair splits 1:3).
 *
 * Pure: the random state is an argument, the only state written is the
 * round-robin current_weight of the candidates on a first attempt.
 */
#include "balancer.h"

#include <stddef.h>

#include "rng.h"

const char *const lb_policy_names[LB_POLICY_COUNT] = {"round-robin", "random", "least-request"};

const char *lb_policy_name(enum lb_policy p)
{
    return (unsigned)p < LB_POLICY_COUNT ? lb_policy_names[p] : "unknown";
}

static int64_t slot_weight(const struct balancer_slot *s)
{
    return s->weight >= 1 ? s->weight : 1;
}

/* Does slot s belong to retry tier t (0..4)? */
static bool in_tier(const struct balancer_slot *s, int tier)
{
    switch (tier) {
    case 0:
        return !s->tried && s->admit == ADMIT_CLOSED;
    case 1:
        return !s->tried && s->admit == ADMIT_PROBE;
    case 2:
        return !s->previous && s->admit == ADMIT_CLOSED;
    case 3:
        return !s->previous && s->admit == ADMIT_PROBE;
    default:
        return s->previous && s->admit != ADMIT_NO;
    }
}

/* Is slot i a candidate? For a retry, 'tier' is the chosen tier. */
static bool is_candidate(const struct balancer_slot *s, bool is_retry, int tier)
{
    if (s->admit == ADMIT_NO)
        return false;
    return !is_retry || in_tier(s, tier);
}

/* The first retry tier with a member, or -1. */
static int first_tier(const struct balancer_slot *slots, int n)
{
    for (int tier = 0; tier < 5; tier++) {
        for (int i = 0; i < n; i++) {
            if (in_tier(&slots[i], tier))
                return tier;
        }
    }
    return -1;
}

/* Smooth weighted round-robin (nginx ngx_http_upstream_get_peer): every
 * candidate gains its weight, the largest wins (the first one on a tie) and
 * pays back the total. On a retry nothing is written back, as if on a copy. */
static int pick_round_robin(struct balancer_slot *slots, int n, bool is_retry, int tier)
{
    int64_t total = 0, best_weight = 0;
    int best = -1;

    for (int i = 0; i < n; i++) {
        int64_t cw;
        if (!is_candidate(&slots[i], is_retry, tier))
            continue;
        cw = (slots[i].state ? slots[i].state->current_weight : 0) + slot_weight(&slots[i]);
        if (!is_retry && slots[i].state)
            slots[i].state->current_weight = cw;
        total += slot_weight(&slots[i]);
        if (best < 0 || cw > best_weight) {
            best = i;
            best_weight = cw;
        }
    }
    if (best >= 0 && !is_retry && slots[best].state)
        slots[best].state->current_weight -= total;
    return best;
}

/* The candidate that covers position r of the weight line. */
static int pick_random(const struct balancer_slot *slots, int n, bool is_retry, int tier,
                       uint64_t *rng)
{
    int64_t total = 0, r;
    int last = -1;

    for (int i = 0; i < n; i++) {
        if (is_candidate(&slots[i], is_retry, tier))
            total += slot_weight(&slots[i]);
    }
    if (total == 0)
        return -1;
    r = (int64_t)rng_below(rng, (uint64_t)total);
    for (int i = 0; i < n; i++) {
        if (!is_candidate(&slots[i], is_retry, tier))
            continue;
        last = i;
        r -= slot_weight(&slots[i]);
        if (r < 0)
            return i;
    }
    return last;
}

/* The index of the k-th (0-based) candidate. */
static int nth_candidate(const struct balancer_slot *slots, int n, bool is_retry, int tier, int k)
{
    for (int i = 0; i < n; i++) {
        if (is_candidate(&slots[i], is_retry, tier) && k-- == 0)
            return i;
    }
    return -1;
}

static int pick_least_request(const struct balancer_slot *slots, int n, bool is_retry, int tier,
                              uint64_t *rng)
{
    int count = 0, ka, kb, a, b;
    int64_t load_a, load_b, wa, wb;

    for (int i = 0; i < n; i++) {
        if (is_candidate(&slots[i], is_retry, tier))
            count++;
    }
    if (count == 0)
        return -1;
    if (count == 1)
        return nth_candidate(slots, n, is_retry, tier, 0);

    /* Two distinct candidates: the second is drawn from the other count-1. */
    ka = (int)rng_below(rng, (uint64_t)count);
    kb = (int)rng_below(rng, (uint64_t)count - 1);
    if (kb >= ka)
        kb++;
    a = nth_candidate(slots, n, is_retry, tier, ka);
    b = nth_candidate(slots, n, is_retry, tier, kb);

    /* inflight_a / weight_a vs inflight_b / weight_b, without division. */
    wa = slot_weight(&slots[a]);
    wb = slot_weight(&slots[b]);
    load_a = (int64_t)(slots[a].inflight > 0 ? slots[a].inflight : 0) * wb;
    load_b = (int64_t)(slots[b].inflight > 0 ? slots[b].inflight : 0) * wa;
    if (load_a < load_b)
        return a;
    if (load_b < load_a)
        return b;
    return (int64_t)rng_below(rng, (uint64_t)(wa + wb)) < wa ? a : b;
}

int balancer_pick(enum lb_policy policy, struct balancer_slot *slots, int n, bool is_retry,
                  uint64_t *rng)
{
    int tier = 0, any = 0;

    if (!slots || n <= 0)
        return -1;
    if (is_retry) {
        tier = first_tier(slots, n);
        if (tier < 0)
            return -1;
    } else {
        for (int i = 0; i < n && !any; i++)
            any = slots[i].admit != ADMIT_NO;
        if (!any)
            return -1;
    }

    switch (policy) {
    case LB_RANDOM:
        return pick_random(slots, n, is_retry, tier, rng);
    case LB_LEAST_REQUEST:
        return pick_least_request(slots, n, is_retry, tier, rng);
    case LB_ROUND_ROBIN:
        break;
    }
    return pick_round_robin(slots, n, is_retry, tier);
}
