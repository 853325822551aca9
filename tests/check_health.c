/*
 * check_health.c - unit tests of src/health.c (SPEC 4.7), with a fake clock
 * and a fixed random seed: the expect grammar, outcome classification, both
 * thresholds, the initial states (present at start, joining later), and the
 * jittered schedule.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"

static struct health_policy policy(int healthy_threshold, int unhealthy_threshold)
{
    struct health_policy p = {
        .enabled = true,
        .interval_ms = 5000,
        .timeout_ms = 1000,
        .healthy_threshold = healthy_threshold,
        .unhealthy_threshold = unhealthy_threshold,
    };
    ck_assert_int_eq(health_expect_parse("200-399", &p.expect, NULL, 0), 0);
    return p;
}

/* Run one check at 'now' with outcome o; returns whether the state changed. */
static bool check_at(struct health *h, const struct health_policy *p, int64_t now,
                     enum health_outcome o, uint64_t *rng)
{
    ck_assert(health_due(h, p, now));
    health_begin(h, p, now, rng);
    ck_assert(!health_due(h, p, now));
    return health_record(h, p, o, now, NULL);
}

START_TEST(test_expect_grammar)
{
    struct health_expect e;
    char err[128];

    ck_assert_int_eq(health_expect_parse("200-399", &e, err, sizeof(err)), 0);
    ck_assert_int_eq(e.n, 1);
    ck_assert(health_expect_match(&e, 200) && health_expect_match(&e, 399));
    ck_assert(!health_expect_match(&e, 199) && !health_expect_match(&e, 400));
    ck_assert_int_eq(health_expect_parse("200", &e, err, sizeof(err)), 0);
    ck_assert(health_expect_match(&e, 200) && !health_expect_match(&e, 201));
    ck_assert_int_eq(health_expect_parse("200-299,404", &e, err, sizeof(err)), 0);
    ck_assert_int_eq(e.n, 2);
    ck_assert(health_expect_match(&e, 250) && health_expect_match(&e, 404));
    ck_assert(!health_expect_match(&e, 403) && !health_expect_match(&e, 300));
    ck_assert_int_eq(health_expect_parse(" 200 - 204 , 418 ", &e, err, sizeof(err)), 0);
    ck_assert(health_expect_match(&e, 204) && health_expect_match(&e, 418));
    ck_assert_int_eq(health_expect_parse("100-599", &e, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_expect_rejects)
{
    static const char *bad[] = {"",
                                " ",
                                "abc",
                                "20",
                                "2000",
                                "99",
                                "600",
                                "300-200",
                                "200-",
                                "-200",
                                "200,",
                                ",200",
                                "200;300",
                                "200-299-399",
                                "200 300",
                                "2xx",
                                "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
                                "200,200,200,200,200,200,200,200,200,200,200,200,200,200,200,"
                                "200,200"};
    struct health_expect e;
    char err[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(health_expect_parse(bad[i], &e, err, sizeof(err)) == -1, "accepted '%s'",
                      bad[i]);
        ck_assert_msg(strncmp(err, "expect '", 8) == 0, "message '%s'", err);
        ck_assert_int_eq(e.n, 0);
    }
    ck_assert_int_eq(health_expect_parse("200,200,200,200,200,200,200,200,200,200,200,200,200,"
                                         "200,200,200",
                                         &e, err, sizeof(err)),
                     0);
    ck_assert_int_eq(e.n, HEALTH_EXPECT_MAX);
}
END_TEST

START_TEST(test_classify)
{
    struct health_expect e;

    health_expect_parse("200-299,404", &e, NULL, 0);
    ck_assert_int_eq(health_classify(HEALTH_IO_RESPONSE, 204, &e), HEALTH_PASS);
    ck_assert_int_eq(health_classify(HEALTH_IO_RESPONSE, 404, &e), HEALTH_PASS);
    ck_assert_int_eq(health_classify(HEALTH_IO_RESPONSE, 503, &e), HEALTH_BAD_STATUS);
    ck_assert_int_eq(health_classify(HEALTH_IO_RESPONSE, 301, &e), HEALTH_BAD_STATUS);
    ck_assert_int_eq(health_classify(HEALTH_IO_CONNECT_FAILED, 0, &e), HEALTH_CONNECT_FAILURE);
    ck_assert_int_eq(health_classify(HEALTH_IO_TIMEOUT, 200, &e), HEALTH_TIMEOUT);
    ck_assert_int_eq(health_classify(HEALTH_IO_ERROR, 200, &e), HEALTH_ERROR);
    ck_assert_str_eq(health_outcome_name(HEALTH_PASS), "pass");
    ck_assert_str_eq(health_outcome_name(HEALTH_CONNECT_FAILURE), "connect_failure");
    ck_assert_str_eq(health_outcome_name(HEALTH_TIMEOUT), "timeout");
    ck_assert_str_eq(health_outcome_name(HEALTH_ERROR), "error");
    ck_assert_str_eq(health_outcome_name(HEALTH_BAD_STATUS), "status");
}
END_TEST

START_TEST(test_unhealthy_after_threshold_in_a_row)
{
    struct health_policy p = policy(2, 3);
    struct health h;
    struct health_transition tr;
    uint64_t rng = 42;
    int64_t t = 0;

    health_init_present(&h, &p, 0, &rng);
    ck_assert(h.healthy);
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_TIMEOUT, &rng));
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_BAD_STATUS, &rng));
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_PASS, &rng)); /* breaks the run */
    ck_assert_int_eq(h.failures, 0);
    for (int i = 0; i < 2; i++) {
        t = h.next_check_ms;
        ck_assert(!check_at(&h, &p, t, HEALTH_CONNECT_FAILURE, &rng));
        ck_assert(h.healthy);
    }
    t = h.next_check_ms;
    ck_assert(health_due(&h, &p, t));
    health_begin(&h, &p, t, &rng);
    ck_assert(health_record(&h, &p, HEALTH_ERROR, t + 10, &tr));
    ck_assert(!tr.healthy);
    ck_assert_str_eq(tr.reason, "unhealthy threshold reached");
    ck_assert(!h.healthy);
    ck_assert_int_eq(h.last_check_ms, t + 10);
    ck_assert_int_eq(h.last_outcome, HEALTH_ERROR);
    /* more failures change nothing */
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_TIMEOUT, &rng));
}
END_TEST

START_TEST(test_healthy_after_threshold_in_a_row)
{
    struct health_policy p = policy(2, 1);
    struct health h;
    struct health_transition tr;
    uint64_t rng = 42;
    int64_t t;

    health_init_present(&h, &p, 0, &rng);
    t = h.next_check_ms;
    ck_assert(check_at(&h, &p, t, HEALTH_BAD_STATUS, &rng)); /* threshold 1 */
    ck_assert(!h.healthy);
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_PASS, &rng));
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_TIMEOUT, &rng)); /* breaks the run */
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_PASS, &rng));
    ck_assert(!h.healthy);
    t = h.next_check_ms;
    health_begin(&h, &p, t, &rng);
    ck_assert(health_record(&h, &p, HEALTH_PASS, t, &tr));
    ck_assert(tr.healthy);
    ck_assert_str_eq(tr.reason, "healthy threshold reached");
    ck_assert(h.healthy);
}
END_TEST

START_TEST(test_present_at_start_first_check_spread)
{
    struct health_policy p = policy(2, 3);
    struct health h;
    uint64_t rng = 7;
    int64_t min = INT64_MAX, max = -1;

    for (int i = 0; i < 2000; i++) {
        health_init_present(&h, &p, 1000, &rng);
        ck_assert(h.healthy);
        ck_assert_int_eq(h.last_check_ms, -1);
        ck_assert_int_ge(h.next_check_ms, 1000);
        ck_assert_int_lt(h.next_check_ms, 1000 + p.interval_ms);
        if (h.next_check_ms < min)
            min = h.next_check_ms;
        if (h.next_check_ms > max)
            max = h.next_check_ms;
    }
    /* spread over the interval, not bunched: 2000 draws leave gaps of a few ms at the ends */
    ck_assert_int_lt(min, 1000 + 50);
    ck_assert_int_gt(max, 1000 + p.interval_ms - 50);
    ck_assert(!health_due(&h, &p, h.next_check_ms - 1));
    ck_assert(health_due(&h, &p, h.next_check_ms));
}
END_TEST

START_TEST(test_joining_checked_at_once_one_pass_suffices)
{
    struct health_policy p = policy(3, 3);
    struct health h;
    struct health_transition tr;
    uint64_t rng = 1;

    health_init_joining(&h, &p, 500);
    ck_assert(!h.healthy);
    ck_assert(health_due(&h, &p, 500));
    health_begin(&h, &p, 500, &rng);
    ck_assert(health_record(&h, &p, HEALTH_PASS, 520, &tr));
    ck_assert(tr.healthy);
    ck_assert_str_eq(tr.reason, "first check passed");
    ck_assert(h.healthy);
}
END_TEST

START_TEST(test_joining_first_check_fails_then_threshold)
{
    struct health_policy p = policy(2, 3);
    struct health h;
    uint64_t rng = 1;
    int64_t t = 0;

    health_init_joining(&h, &p, 0);
    ck_assert(!check_at(&h, &p, 0, HEALTH_CONNECT_FAILURE, &rng));
    ck_assert(!h.healthy);
    /* the shortcut was for the first check only */
    t = h.next_check_ms;
    ck_assert(!check_at(&h, &p, t, HEALTH_PASS, &rng));
    ck_assert(!h.healthy);
    t = h.next_check_ms;
    ck_assert(check_at(&h, &p, t, HEALTH_PASS, &rng));
    ck_assert(h.healthy);
}
END_TEST

START_TEST(test_schedule_jitter_within_ten_percent)
{
    struct health_policy p = policy(2, 3);
    struct health h;
    uint64_t rng = 99;
    int64_t lo = INT64_MAX, hi = 0, t;
    double sum = 0;
    const int n = 5000;

    health_init_present(&h, &p, 0, &rng);
    t = h.next_check_ms;
    for (int i = 0; i < n; i++) {
        int64_t gap;
        health_begin(&h, &p, t, &rng);
        gap = h.next_check_ms - t;
        ck_assert_int_ge(gap, 4500);
        ck_assert_int_le(gap, 5500);
        lo = gap < lo ? gap : lo;
        hi = gap > hi ? gap : hi;
        sum += (double)gap;
        /* a slow check does not push the schedule: the next is measured from the start */
        ck_assert(!health_record(&h, &p, HEALTH_PASS, t + 900, NULL));
        t = h.next_check_ms;
    }
    /* uniform over [4500, 5500]: both ends reached, mean near 5000 (sd of mean ~4 ms) */
    ck_assert_int_lt(lo, 4520);
    ck_assert_int_gt(hi, 5480);
    ck_assert_double_eq_tol(sum / n, 5000.0, 25.0);
    ck_assert_int_eq(health_jittered_interval_ms(9, &rng), 9); /* a tenth of 9 ms is 0 */
}
END_TEST

START_TEST(test_late_start_measures_from_the_start)
{
    struct health_policy p = policy(2, 3);
    struct health h;
    uint64_t rng = 5;
    int64_t late;

    health_init_joining(&h, &p, 0);
    /* the loop got to the due check 2 s late: the next is one interval after it started */
    late = h.next_check_ms + 2000;
    health_begin(&h, &p, late, &rng);
    ck_assert_int_ge(h.next_check_ms - late, 4500);
    ck_assert_int_le(h.next_check_ms - late, 5500);
}
END_TEST

START_TEST(test_inflight_blocks_due)
{
    struct health_policy p = policy(2, 3);
    struct health h;
    uint64_t rng = 3;

    health_init_joining(&h, &p, 0);
    health_begin(&h, &p, 0, &rng);
    /* the check hangs past its next due time: no second check on top of it */
    ck_assert(!health_due(&h, &p, 100000));
    health_record(&h, &p, HEALTH_TIMEOUT, 100000, NULL);
    ck_assert(health_due(&h, &p, 100000));
}
END_TEST

START_TEST(test_disabled_always_healthy)
{
    struct health_policy p = policy(2, 1);
    struct health h;
    uint64_t rng = 3;

    p.enabled = false;
    health_init_joining(&h, &p, 0);
    ck_assert(h.healthy);
    ck_assert(!health_due(&h, &p, INT64_MAX - 1));
    health_init_present(&h, &p, 0, &rng);
    ck_assert(h.healthy);
    ck_assert(!health_due(&h, &p, INT64_MAX - 1));
    ck_assert(!health_record(&h, &p, HEALTH_TIMEOUT, 10, NULL));
    ck_assert(h.healthy);
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_expect_grammar);
    tcase_add_test(tc, test_expect_rejects);
    tcase_add_test(tc, test_classify);
    tcase_add_test(tc, test_unhealthy_after_threshold_in_a_row);
    tcase_add_test(tc, test_healthy_after_threshold_in_a_row);
    tcase_add_test(tc, test_present_at_start_first_check_spread);
    tcase_add_test(tc, test_joining_checked_at_once_one_pass_suffices);
    tcase_add_test(tc, test_joining_first_check_fails_then_threshold);
    tcase_add_test(tc, test_schedule_jitter_within_ten_percent);
    tcase_add_test(tc, test_late_start_measures_from_the_start);
    tcase_add_test(tc, test_inflight_blocks_due);
    tcase_add_test(tc, test_disabled_always_healthy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(health_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
