/*
 * check_slow_start.c - unit tests of src/slow_start.c (SPEC 4.5) with a fake
 * clock: the linear 10 % to 100 % ramp in hundredths, full weight at start
 * and with slow start off, and the ramped weights fed to balancer_pick for
 * round-robin (exact counts), random and least-request (shares within
 * binomial tolerances, fixed seed).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "balancer.h"
#include "slow_start.h"

#define D 10000

START_TEST(test_ramp_values)
{
    struct slow_start s;

    slow_start_begin(&s, 1000);
    ck_assert_int_eq(slow_start_weight(&s, 1, D, 1000), 10);
    ck_assert_int_eq(slow_start_weight(&s, 1, D, 1000 + D / 2), 55);
    ck_assert_int_eq(slow_start_weight(&s, 1, D, 1000 + D - 1), 99);
    ck_assert_int_eq(slow_start_weight(&s, 1, D, 1000 + D), 100);
    ck_assert_int_eq(slow_start_weight(&s, 1, D, 1000 + 5 * D), 100);
    ck_assert_int_eq(slow_start_weight(&s, 3, D, 1000 + D / 4), 97); /* 3 x 32.5 */
    ck_assert_int_eq(slow_start_weight(&s, 1000000, D, 1000), 10000000);
    ck_assert_int_eq(slow_start_weight(&s, 1000000, D, 1000 + D), 100000000);
    ck_assert_int_eq(slow_start_weight(&s, 0, D, 1000), 10); /* weight < 1 counts as 1 */
    ck_assert_int_eq(slow_start_weight(&s, 1, D, 0), 10);    /* before the start: the floor */
}
END_TEST

START_TEST(test_ramp_is_monotonic_and_linear)
{
    struct slow_start s;
    int prev = 0;

    slow_start_begin(&s, 0);
    for (int64_t t = 0; t <= D; t += 100) {
        int w = slow_start_weight(&s, 7, D, t);
        double want = 7 * 100 * (0.10 + 0.90 * (double)t / D);
        ck_assert_int_ge(w, prev);
        ck_assert_double_le(fabs(w - want), 1.0);
        prev = w;
    }
}
END_TEST

START_TEST(test_full_weight_cases)
{
    struct slow_start s;

    slow_start_init(&s); /* present at start */
    ck_assert(!slow_start_active(&s, D, 0));
    ck_assert_int_eq(slow_start_weight(&s, 2, D, 0), 200);
    slow_start_begin(&s, 0);
    ck_assert(slow_start_active(&s, D, D - 1));
    ck_assert(!slow_start_active(&s, D, D));
    ck_assert(!slow_start_active(&s, 0, 0)); /* slow-start: 0 */
    ck_assert_int_eq(slow_start_weight(&s, 2, 0, 0), 200);
}
END_TEST

/* Three endpoints of weight 1; the third came back half a ramp ago: 100, 100, 55. */
static void ramped_slots(struct balancer_slot *slots, struct balancer_state *st, int64_t now)
{
    struct slow_start full, back;

    slow_start_init(&full);
    slow_start_begin(&back, now - D / 2);
    for (int i = 0; i < 3; i++) {
        slots[i] = (struct balancer_slot){0};
        slots[i].admit = ADMIT_CLOSED;
        slots[i].state = &st[i];
        st[i].current_weight = 0;
        slots[i].weight = slow_start_weight(i < 2 ? &full : &back, 1, D, now);
    }
}

START_TEST(test_round_robin_exact)
{
    struct balancer_slot slots[3];
    struct balancer_state st[3];
    int counts[3] = {0, 0, 0};
    uint64_t rng = 1;

    ramped_slots(slots, st, 50000);
    ck_assert_int_eq(slots[2].weight, 55);
    /* smooth weighted round-robin gives exactly the weights over one cycle of 255 picks */
    for (int i = 0; i < 255 * 4; i++)
        counts[balancer_pick(LB_ROUND_ROBIN, slots, 3, false, &rng)]++;
    ck_assert_int_eq(counts[0], 400);
    ck_assert_int_eq(counts[1], 400);
    ck_assert_int_eq(counts[2], 220);
}
END_TEST

/* Assert count is within 5 binomial standard deviations of n x p. */
static void assert_share(int count, int n, double p)
{
    double sd = sqrt(n * p * (1 - p));
    ck_assert_msg(fabs(count - n * p) <= 5 * sd, "count %d, expected %.0f +- %.0f", count, n * p,
                  5 * sd);
}

START_TEST(test_random_proportional)
{
    struct balancer_slot slots[3];
    struct balancer_state st[3];
    int counts[3] = {0, 0, 0};
    const int n = 200000;
    uint64_t rng = 12345;

    ramped_slots(slots, st, 50000);
    for (int i = 0; i < n; i++)
        counts[balancer_pick(LB_RANDOM, slots, 3, false, &rng)]++;
    assert_share(counts[0], n, 100.0 / 255);
    assert_share(counts[1], n, 100.0 / 255);
    assert_share(counts[2], n, 55.0 / 255);
}
END_TEST

START_TEST(test_least_request_idle_and_loaded)
{
    struct balancer_slot slots[3];
    struct balancer_state st[3];
    int counts[3] = {0, 0, 0};
    const int n = 200000;
    uint64_t rng = 777;
    /* idle: a pair drawn uniformly, the tie split by weight: P(i) = 1/3 sum_j wi/(wi+wj) */
    double p2 = (55.0 / 155 + 55.0 / 155) / 3, p0 = (1 - p2) / 2;

    ramped_slots(slots, st, 50000);
    for (int i = 0; i < n; i++)
        counts[balancer_pick(LB_LEAST_REQUEST, slots, 3, false, &rng)]++;
    assert_share(counts[0], n, p0);
    assert_share(counts[1], n, p0);
    assert_share(counts[2], n, p2);
    ck_assert_int_lt(counts[2], counts[0]);

    /* loaded alike: 5 in flight each, so in-flight per weight puts the ramping one last in
     * every pair it is drawn into */
    for (int i = 0; i < 3; i++) {
        slots[i].inflight = 5;
        counts[i] = 0;
    }
    for (int i = 0; i < n; i++)
        counts[balancer_pick(LB_LEAST_REQUEST, slots, 3, false, &rng)]++;
    ck_assert_int_eq(counts[2], 0);
    assert_share(counts[0], n, 0.5);
}
END_TEST

START_TEST(test_share_grows_over_the_ramp)
{
    struct balancer_slot slots[3];
    struct balancer_state st[3];
    uint64_t rng = 1;
    int prev = -1;

    /* round-robin over 1000 picks at each tenth of the ramp: the newcomer's count rises
     * from about 1000 x 10/210 to 1000 / 3 */
    for (int step = 0; step <= 10; step++) {
        struct slow_start full, back;
        int count = 0;

        slow_start_init(&full);
        slow_start_begin(&back, 0);
        for (int i = 0; i < 3; i++) {
            slots[i] = (struct balancer_slot){0};
            slots[i].admit = ADMIT_CLOSED;
            slots[i].state = &st[i];
            st[i].current_weight = 0;
            slots[i].weight = slow_start_weight(i < 2 ? &full : &back, 1, D, step * D / 10);
        }
        for (int i = 0; i < 1000; i++)
            count += balancer_pick(LB_ROUND_ROBIN, slots, 3, false, &rng) == 2;
        ck_assert_int_gt(count, prev);
        if (step == 0)
            ck_assert_int_le(abs(count - 1000 * 10 / 210), 1);
        if (step == 10)
            ck_assert_int_le(abs(count - 333), 1);
        prev = count;
    }
}
END_TEST

static Suite *slow_start_suite(void)
{
    Suite *s = suite_create("slow_start");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_ramp_values);
    tcase_add_test(tc, test_ramp_is_monotonic_and_linear);
    tcase_add_test(tc, test_full_weight_cases);
    tcase_add_test(tc, test_round_robin_exact);
    tcase_add_test(tc, test_random_proportional);
    tcase_add_test(tc, test_least_request_idle_and_loaded);
    tcase_add_test(tc, test_share_grows_over_the_ramp);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(slow_start_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
