/*
 * check_balancer.c - unit tests of endpoint choice (src/balancer.c, SPEC 4.5).
 *
 * Smooth weighted round-robin is checked pick by pick against nginx's
 * sequences; random and least-request over 100k picks with fixed seeds and
 * tolerances of several standard deviations; the retry tiers and the "no
 * endpoint admits" case for every policy.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "balancer.h"

#define SEED UINT64_C(0x9e3779b97f4a7c15)
#define MAX_SLOTS 8
#define PICKS 100000

struct pool {
    struct balancer_slot slots[MAX_SLOTS];
    struct balancer_state states[MAX_SLOTS];
    int n;
};

/* A pool of closed, untried endpoints with these weights. */
static void pool_init(struct pool *p, const int *weights, int n)
{
    memset(p, 0, sizeof(*p));
    p->n = n;
    for (int i = 0; i < n; i++) {
        p->slots[i].weight = weights[i];
        p->slots[i].admit = ADMIT_CLOSED;
        p->slots[i].state = &p->states[i];
    }
}

/* Count first-attempt picks per endpoint over 'picks' draws. */
static void count_picks(struct pool *p, enum lb_policy policy, bool is_retry, uint64_t *rng,
                        int picks, int *counts)
{
    memset(counts, 0, sizeof(int) * MAX_SLOTS);
    for (int i = 0; i < picks; i++) {
        int k = balancer_pick(policy, p->slots, p->n, is_retry, rng);
        ck_assert(k >= 0 && k < p->n);
        counts[k]++;
    }
}

static void assert_near(int got, double expect, double tolerance, const char *what, int i)
{
    ck_assert_msg(got > expect - tolerance && got < expect + tolerance,
                  "%s[%d] = %d, expected %.0f +- %.0f", what, i, got, expect, tolerance);
}

START_TEST(test_policy_names)
{
    ck_assert_str_eq(lb_policy_name(LB_ROUND_ROBIN), "round-robin");
    ck_assert_str_eq(lb_policy_name(LB_RANDOM), "random");
    ck_assert_str_eq(lb_policy_name(LB_LEAST_REQUEST), "least-request");
}
END_TEST

/* ---- round-robin ----------------------------------------------------------------- */

static void assert_sequence(struct pool *p, const int *expect, int len, int cycles)
{
    uint64_t rng = SEED;

    for (int c = 0; c < cycles; c++) {
        for (int i = 0; i < len; i++) {
            int k = balancer_pick(LB_ROUND_ROBIN, p->slots, p->n, false, &rng);
            ck_assert_msg(k == expect[i], "cycle %d pick %d: %d, expected %d", c, i, k, expect[i]);
        }
        /* a full cycle brings every current_weight back to 0 */
        for (int i = 0; i < p->n; i++)
            ck_assert_int_eq(p->states[i].current_weight, 0);
    }
}

START_TEST(test_rr_equal_weights)
{
    const int w[] = {1, 1, 1};
    const int expect[] = {0, 1, 2};
    struct pool p;

    pool_init(&p, w, 3);
    assert_sequence(&p, expect, 3, 4);
}
END_TEST

START_TEST(test_rr_one_to_three)
{
    const int w[] = {1, 3};
    const int expect[] = {1, 0, 1, 1};
    struct pool p;

    pool_init(&p, w, 2);
    assert_sequence(&p, expect, 4, 4);
}
END_TEST

START_TEST(test_rr_nginx_smooth)
{
    /* nginx's example: weights {5, 1, 1} give a a b a c a a */
    const int w[] = {5, 1, 1};
    const int expect[] = {0, 0, 1, 0, 2, 0, 0};
    struct pool p;

    pool_init(&p, w, 3);
    assert_sequence(&p, expect, 7, 3);
}
END_TEST

START_TEST(test_rr_skips_refused_and_takes_probes)
{
    const int w[] = {1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;

    pool_init(&p, w, 3);
    p.slots[1].admit = ADMIT_NO;
    p.slots[2].admit = ADMIT_PROBE; /* a first attempt may take a probe slot */
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, false, &rng),
                         i % 2 == 0 ? 0 : 2);
    ck_assert_int_eq(p.states[1].current_weight, 0);
}
END_TEST

START_TEST(test_rr_retry_does_not_advance)
{
    const int w[] = {1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;
    int64_t saved[3];

    pool_init(&p, w, 3);
    ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, false, &rng), 0);
    p.slots[0].tried = true;
    p.slots[0].previous = true;
    for (int i = 0; i < 3; i++)
        saved[i] = p.states[i].current_weight;
    /* the retry goes where round-robin would go next among the untried ... */
    for (int r = 0; r < 5; r++) {
        ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, true, &rng), 1);
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(p.states[i].current_weight, saved[i]);
    }
    /* ... and the next call's first attempt still gets 1, then 2, then 0 */
    p.slots[0].tried = false;
    p.slots[0].previous = false;
    ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, false, &rng), 1);
    ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, false, &rng), 2);
    ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, false, &rng), 0);
}
END_TEST

START_TEST(test_rr_retry_weighted_preview)
{
    /* weights {5,1,1} after one pick: a retry that may not use 0 previews among {1,2} */
    const int w[] = {5, 1, 1};
    struct pool p;
    uint64_t rng = SEED;

    pool_init(&p, w, 3);
    ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, false, &rng), 0);
    p.slots[0].tried = p.slots[0].previous = true;
    ck_assert_int_eq(balancer_pick(LB_ROUND_ROBIN, p.slots, p.n, true, &rng), 1);
    ck_assert_int_eq(p.states[0].current_weight, -2);
    ck_assert_int_eq(p.states[1].current_weight, 1);
    ck_assert_int_eq(p.states[2].current_weight, 1);
}
END_TEST

/* ---- retry tiers --------------------------------------------------------------- */

static const enum lb_policy all_policies[] = {LB_ROUND_ROBIN, LB_RANDOM, LB_LEAST_REQUEST};

/* Every policy, many times, always picks 'expect'. */
static void assert_always(struct pool *p, bool is_retry, int expect)
{
    uint64_t rng = SEED;

    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 200; i++) {
            int got = balancer_pick(all_policies[k], p->slots, p->n, is_retry, &rng);
            ck_assert_msg(got == expect, "%s: picked %d, expected %d",
                          lb_policy_name(all_policies[k]), got, expect);
        }
    }
}

static void set_slot(struct pool *p, int i, enum balancer_admit admit, bool tried, bool previous)
{
    p->slots[i].admit = admit;
    p->slots[i].tried = tried;
    p->slots[i].previous = previous;
}

START_TEST(test_tier_untried_closed_first)
{
    const int w[] = {1, 1, 1, 1};
    struct pool p;

    pool_init(&p, w, 4);
    set_slot(&p, 0, ADMIT_CLOSED, true, true);
    set_slot(&p, 1, ADMIT_PROBE, false, false);
    set_slot(&p, 2, ADMIT_CLOSED, false, false);
    set_slot(&p, 3, ADMIT_CLOSED, true, false);
    assert_always(&p, true, 2);
}
END_TEST

START_TEST(test_tier_untried_probe_second)
{
    const int w[] = {1, 1, 1, 1};
    struct pool p;

    pool_init(&p, w, 4);
    set_slot(&p, 0, ADMIT_CLOSED, true, true);
    set_slot(&p, 1, ADMIT_CLOSED, true, false);
    set_slot(&p, 2, ADMIT_PROBE, false, false);
    set_slot(&p, 3, ADMIT_NO, false, false);
    assert_always(&p, true, 2);
}
END_TEST

START_TEST(test_tier_not_previous_closed_third)
{
    const int w[] = {1, 1, 1, 1};
    struct pool p;

    pool_init(&p, w, 4);
    set_slot(&p, 0, ADMIT_CLOSED, true, true);
    set_slot(&p, 1, ADMIT_PROBE, true, false);
    set_slot(&p, 2, ADMIT_CLOSED, true, false);
    set_slot(&p, 3, ADMIT_NO, false, false);
    assert_always(&p, true, 2);
}
END_TEST

START_TEST(test_tier_not_previous_probe_fourth)
{
    const int w[] = {1, 1, 1};
    struct pool p;

    pool_init(&p, w, 3);
    set_slot(&p, 0, ADMIT_CLOSED, true, true);
    set_slot(&p, 1, ADMIT_NO, false, false);
    set_slot(&p, 2, ADMIT_PROBE, true, false);
    assert_always(&p, true, 2);
}
END_TEST

START_TEST(test_tier_previous_last)
{
    const int w[] = {1, 1, 1};
    struct pool p;

    pool_init(&p, w, 3);
    set_slot(&p, 0, ADMIT_NO, true, false);
    set_slot(&p, 1, ADMIT_CLOSED, true, true);
    set_slot(&p, 2, ADMIT_NO, false, false);
    assert_always(&p, true, 1);
    set_slot(&p, 1, ADMIT_PROBE, true, true);
    assert_always(&p, true, 1);
    /* a one-endpoint service retries on its only endpoint */
    pool_init(&p, w, 1);
    set_slot(&p, 0, ADMIT_CLOSED, true, true);
    assert_always(&p, true, 0);
}
END_TEST

START_TEST(test_tier_spreads_within_tier)
{
    /* two untried closed endpoints: both are used, the tried ones never */
    const int w[] = {1, 1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 4);
    set_slot(&p, 0, ADMIT_CLOSED, true, true);
    set_slot(&p, 2, ADMIT_CLOSED, true, false);
    for (int k = 1; k < 3; k++) {
        count_picks(&p, all_policies[k], true, &rng, 10000, counts);
        ck_assert_int_eq(counts[0], 0);
        ck_assert_int_eq(counts[2], 0);
        assert_near(counts[1], 5000, 400, lb_policy_name(all_policies[k]), 1);
        assert_near(counts[3], 5000, 400, lb_policy_name(all_policies[k]), 3);
    }
}
END_TEST

START_TEST(test_none_admits)
{
    const int w[] = {1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;

    pool_init(&p, w, 3);
    for (int i = 0; i < 3; i++)
        set_slot(&p, i, ADMIT_NO, i == 0, i == 0);
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(balancer_pick(all_policies[k], p.slots, p.n, false, &rng), -1);
        ck_assert_int_eq(balancer_pick(all_policies[k], p.slots, p.n, true, &rng), -1);
        ck_assert_int_eq(balancer_pick(all_policies[k], p.slots, 0, false, &rng), -1);
        ck_assert_int_eq(balancer_pick(all_policies[k], NULL, 3, false, &rng), -1);
    }
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(p.states[i].current_weight, 0);
}
END_TEST

/* ---- random -------------------------------------------------------------------- */

START_TEST(test_random_weighted)
{
    const int w[] = {1, 2, 3, 4};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 4);
    count_picks(&p, LB_RANDOM, false, &rng, PICKS, counts);
    /* sd <= sqrt(100000 * 0.25) = 158; tolerance about 5 sd */
    for (int i = 0; i < 4; i++)
        assert_near(counts[i], PICKS * w[i] / 10.0, 800, "random", i);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(p.states[i].current_weight, 0); /* random leaves RR state alone */
}
END_TEST

START_TEST(test_random_skips_refused)
{
    const int w[] = {1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 3);
    p.slots[1].admit = ADMIT_NO;
    count_picks(&p, LB_RANDOM, false, &rng, PICKS, counts);
    ck_assert_int_eq(counts[1], 0);
    assert_near(counts[0], PICKS / 2.0, 800, "random", 0);
    assert_near(counts[2], PICKS / 2.0, 800, "random", 2);
}
END_TEST

/* ---- least-request ----------------------------------------------------------- */

START_TEST(test_lr_single_candidate)
{
    const int w[] = {1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;

    pool_init(&p, w, 3);
    p.slots[0].admit = ADMIT_NO;
    p.slots[2].admit = ADMIT_NO;
    p.slots[1].inflight = 1000;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(balancer_pick(LB_LEAST_REQUEST, p.slots, p.n, false, &rng), 1);
}
END_TEST

START_TEST(test_lr_two_distinct_candidates)
{
    /* drawn with replacement, the busy endpoint would win a quarter of the time */
    const int w[] = {1, 1};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 2);
    p.slots[1].inflight = 5;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, PICKS, counts);
    ck_assert_int_eq(counts[0], PICKS);
    ck_assert_int_eq(counts[1], 0);
}
END_TEST

START_TEST(test_lr_busiest_never_wins)
{
    /* {0,1,2} in flight: the pair decides; 2 never wins, 0 wins in 2 of 3 pairs */
    const int w[] = {1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 3);
    for (int i = 0; i < 3; i++)
        p.slots[i].inflight = i;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, PICKS, counts);
    ck_assert_int_eq(counts[2], 0);
    /* sd = sqrt(1e5 * 2/9) = 149 */
    assert_near(counts[0], PICKS * 2 / 3.0, 750, "least-request", 0);
    assert_near(counts[1], PICKS / 3.0, 750, "least-request", 1);
}
END_TEST

START_TEST(test_lr_uniform_when_equal)
{
    const int w[] = {1, 1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 4);
    for (int i = 0; i < 4; i++)
        p.slots[i].inflight = 3;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, PICKS, counts);
    for (int i = 0; i < 4; i++)
        assert_near(counts[i], PICKS / 4.0, 700, "least-request", i);
}
END_TEST

START_TEST(test_lr_weight_divides_count)
{
    const int w[] = {1, 3};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 2);
    /* 1/1 > 2/3: the heavier endpoint wins */
    p.slots[0].inflight = 1;
    p.slots[1].inflight = 2;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, 1000, counts);
    ck_assert_int_eq(counts[1], 1000);
    /* 1/1 < 4/3: the lighter one wins */
    p.slots[1].inflight = 4;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, 1000, counts);
    ck_assert_int_eq(counts[0], 1000);
    /* 1/1 == 3/3: a tie, split in proportion to weight (1:3) */
    p.slots[1].inflight = 3;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, PICKS, counts);
    assert_near(counts[0], PICKS / 4.0, 700, "least-request tie", 0);
    assert_near(counts[1], PICKS * 3 / 4.0, 700, "least-request tie", 1);
    /* idle: the same */
    p.slots[0].inflight = 0;
    p.slots[1].inflight = 0;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, PICKS, counts);
    assert_near(counts[0], PICKS / 4.0, 700, "least-request idle", 0);
}
END_TEST

START_TEST(test_lr_equal_weight_tie_is_fair)
{
    const int w[] = {2, 2};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 2);
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, PICKS, counts);
    assert_near(counts[0], PICKS / 2.0, 800, "least-request", 0);
    assert_near(counts[1], PICKS / 2.0, 800, "least-request", 1);
}
END_TEST

START_TEST(test_lr_skips_refused)
{
    const int w[] = {1, 1, 1};
    struct pool p;
    uint64_t rng = SEED;
    int counts[MAX_SLOTS];

    pool_init(&p, w, 3);
    p.slots[0].admit = ADMIT_NO; /* idle but refused */
    p.slots[1].inflight = 2;
    p.slots[2].inflight = 1;
    count_picks(&p, LB_LEAST_REQUEST, false, &rng, 1000, counts);
    ck_assert_int_eq(counts[0], 0);
    ck_assert_int_eq(counts[1], 0);
    ck_assert_int_eq(counts[2], 1000);
}
END_TEST

static Suite *balancer_suite(void)
{
    Suite *s = suite_create("balancer");
    TCase *tr = tcase_create("round_robin");
    TCase *tt = tcase_create("retry_tiers");
    TCase *tx = tcase_create("random");
    TCase *tl = tcase_create("least_request");

    tcase_add_test(tr, test_policy_names);
    tcase_add_test(tr, test_rr_equal_weights);
    tcase_add_test(tr, test_rr_one_to_three);
    tcase_add_test(tr, test_rr_nginx_smooth);
    tcase_add_test(tr, test_rr_skips_refused_and_takes_probes);
    tcase_add_test(tr, test_rr_retry_does_not_advance);
    tcase_add_test(tr, test_rr_retry_weighted_preview);
    tcase_add_test(tt, test_tier_untried_closed_first);
    tcase_add_test(tt, test_tier_untried_probe_second);
    tcase_add_test(tt, test_tier_not_previous_closed_third);
    tcase_add_test(tt, test_tier_not_previous_probe_fourth);
    tcase_add_test(tt, test_tier_previous_last);
    tcase_add_test(tt, test_tier_spreads_within_tier);
    tcase_add_test(tt, test_none_admits);
    tcase_add_test(tx, test_random_weighted);
    tcase_add_test(tx, test_random_skips_refused);
    tcase_add_test(tl, test_lr_single_candidate);
    tcase_add_test(tl, test_lr_two_distinct_candidates);
    tcase_add_test(tl, test_lr_busiest_never_wins);
    tcase_add_test(tl, test_lr_uniform_when_equal);
    tcase_add_test(tl, test_lr_weight_divides_count);
    tcase_add_test(tl, test_lr_equal_weight_tie_is_fair);
    tcase_add_test(tl, test_lr_skips_refused);
    suite_add_tcase(s, tr);
    suite_add_tcase(s, tt);
    suite_add_tcase(s, tx);
    suite_add_tcase(s, tl);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(balancer_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
