/*
 * check_outlier.c - unit tests of src/outlier.c (SPEC 4.7) with a fake clock:
 * the consecutive-failure run, ejection time growing with n and capped at
 * 10, n falling back by one per base-ejection-time un-ejected, the
 * max-ejection-percent limit, the plain return (no probe), neutral outcomes
 * and the disabled policy.
 */
#include <check.h>
#include <stdlib.h>

#include "outlier.h"

#define BASE 30000

static struct outlier_policy policy(int failures, int max_percent)
{
    struct outlier_policy p = {
        .enabled = true,
        .consecutive_failures = failures,
        .base_ejection_ms = BASE,
        .max_ejection_percent = max_percent,
    };
    return p;
}

/* Fail k times at 'now' in a pool of 10 with nothing else ejected; returns the last event. */
static enum outlier_event fail_run(struct outlier *o, const struct outlier_policy *p, int k,
                                   int64_t now)
{
    enum outlier_event ev = OUTLIER_NO_CHANGE;

    for (int i = 0; i < k; i++)
        ev = outlier_record(o, p, BREAKER_FAILURE, now, 0, 10);
    return ev;
}

/* Eject at 'now' (a full run), then let it return; returns the ejection's length. */
static int64_t eject_and_return(struct outlier *o, const struct outlier_policy *p, int64_t now)
{
    int64_t len;

    ck_assert_int_eq(fail_run(o, p, p->consecutive_failures, now), OUTLIER_EJECTED);
    len = o->ejected_until_ms - now;
    ck_assert(outlier_tick(o, p, o->ejected_until_ms));
    return len;
}

START_TEST(test_ejected_after_run)
{
    struct outlier_policy p = policy(5, 50);
    struct outlier o;

    outlier_init(&o);
    ck_assert_int_eq(fail_run(&o, &p, 4, 100), OUTLIER_NO_CHANGE);
    ck_assert(!o.ejected);
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_FAILURE, 100, 0, 10), OUTLIER_EJECTED);
    ck_assert(o.ejected);
    ck_assert_int_eq(o.ejected_until_ms, 100 + BASE);
    ck_assert_int_eq(o.multiplier, 1);
    ck_assert_uint_eq(o.ejections, 1);
}
END_TEST

START_TEST(test_success_breaks_the_run_neutral_does_not)
{
    struct outlier_policy p = policy(3, 50);
    struct outlier o;

    outlier_init(&o);
    fail_run(&o, &p, 2, 0);
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_SUCCESS, 0, 0, 10), OUTLIER_NO_CHANGE);
    ck_assert_int_eq(fail_run(&o, &p, 2, 0), OUTLIER_NO_CHANGE);
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_NEUTRAL, 0, 0, 10), OUTLIER_NO_CHANGE);
    ck_assert_int_eq(o.consecutive_failures, 2);
    ck_assert_int_eq(fail_run(&o, &p, 1, 0), OUTLIER_EJECTED);
}
END_TEST

START_TEST(test_return_is_plain_and_on_time)
{
    struct outlier_policy p = policy(1, 50);
    struct outlier o;

    outlier_init(&o);
    ck_assert_int_eq(fail_run(&o, &p, 1, 1000), OUTLIER_EJECTED);
    /* outcomes of calls that were in flight change nothing while ejected */
    ck_assert_int_eq(fail_run(&o, &p, 5, 2000), OUTLIER_NO_CHANGE);
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_SUCCESS, 2000, 0, 10), OUTLIER_NO_CHANGE);
    ck_assert(o.ejected);
    ck_assert_int_eq(outlier_ms_until_return(&o, 2000), 1000 + BASE - 2000);
    ck_assert(!outlier_tick(&o, &p, 1000 + BASE - 1));
    ck_assert(o.ejected);
    ck_assert(outlier_tick(&o, &p, 1000 + BASE));
    ck_assert(!o.ejected); /* back at once, no probe phase */
    ck_assert_int_eq(outlier_ms_until_return(&o, 1000 + BASE), 0);
    ck_assert(!outlier_tick(&o, &p, 1000 + BASE + 1));
    ck_assert_int_eq(o.consecutive_failures, 0);
}
END_TEST

START_TEST(test_ejection_time_grows_and_caps)
{
    struct outlier_policy p = policy(2, 50);
    struct outlier o;
    int64_t now = 0;

    outlier_init(&o);
    for (int n = 1; n <= 12; n++) {
        int64_t len = eject_and_return(&o, &p, now);
        int want = n < OUTLIER_MAX_MULTIPLIER ? n : OUTLIER_MAX_MULTIPLIER;
        ck_assert_int_eq(len, (int64_t)BASE * want);
        ck_assert_int_eq(o.multiplier, want);
        now = o.returned_at_ms; /* fails again right after returning */
    }
    ck_assert_uint_eq(o.ejections, 12);
}
END_TEST

START_TEST(test_multiplier_falls_back_per_base_time)
{
    struct outlier_policy p = policy(1, 50);
    struct outlier o;
    int64_t t;

    outlier_init(&o);
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, 0), 1);
    eject_and_return(&o, &p, 0);
    eject_and_return(&o, &p, o.returned_at_ms);
    eject_and_return(&o, &p, o.returned_at_ms);
    ck_assert_int_eq(o.multiplier, 3);
    t = o.returned_at_ms;
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, t), 4);
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, t + BASE - 1), 4);
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, t + BASE), 3);
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, t + 2 * BASE), 2);
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, t + 3 * BASE), 1);
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, t + 100 * BASE), 1);
    /* an ejection two base times after returning gets n = 3 - 2 + 1 */
    ck_assert_int_eq(eject_and_return(&o, &p, t + 2 * BASE), 2 * BASE);
    ck_assert_int_eq(o.multiplier, 2);
}
END_TEST

START_TEST(test_late_tick_does_not_delay_the_fall_back)
{
    struct outlier_policy p = policy(1, 50);
    struct outlier o;
    int64_t until;

    outlier_init(&o);
    eject_and_return(&o, &p, 0);
    eject_and_return(&o, &p, o.returned_at_ms);
    ck_assert_int_eq(fail_run(&o, &p, 1, o.returned_at_ms), OUTLIER_EJECTED);
    ck_assert_int_eq(o.multiplier, 3);
    until = o.ejected_until_ms;
    /* nobody ticked for two base times after the ejection ended: it ended at until all the
     * same, and the time since then counts */
    ck_assert(outlier_tick(&o, &p, until + 2 * BASE));
    ck_assert_int_eq(o.returned_at_ms, until);
    ck_assert_int_eq(outlier_next_multiplier(&o, &p, until + 2 * BASE), 2);
}
END_TEST

START_TEST(test_max_ejection_percent)
{
    struct outlier_policy p = policy(2, 50);
    struct outlier o;

    ck_assert(outlier_may_eject(1, 4, 50));  /* 2 of 4 = 50 % */
    ck_assert(!outlier_may_eject(2, 4, 50)); /* 3 of 4 */
    ck_assert(!outlier_may_eject(0, 1, 50)); /* 1 of 1 = 100 % */
    ck_assert(outlier_may_eject(0, 1, 100));
    ck_assert(!outlier_may_eject(0, 10, 0));
    ck_assert(outlier_may_eject(0, 10, 10));
    ck_assert(!outlier_may_eject(1, 10, 10));
    ck_assert(!outlier_may_eject(0, 0, 100));

    outlier_init(&o);
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_FAILURE, 0, 2, 4), OUTLIER_NO_CHANGE);
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_FAILURE, 0, 2, 4), OUTLIER_EJECTION_REFUSED);
    ck_assert(!o.ejected);
    ck_assert_uint_eq(o.ejections, 0);
    ck_assert_int_eq(o.multiplier, 0);
    /* the run starts again: room appears, but one more failure is not a full run */
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_FAILURE, 0, 1, 4), OUTLIER_NO_CHANGE);
    ck_assert_int_eq(outlier_record(&o, &p, BREAKER_FAILURE, 0, 1, 4), OUTLIER_EJECTED);
}
END_TEST

START_TEST(test_disabled)
{
    struct outlier_policy p = policy(1, 100);
    struct outlier o;

    outlier_init(&o);
    ck_assert_int_eq(fail_run(&o, &p, 1, 0), OUTLIER_EJECTED);
    p.enabled = false; /* a reload turned it off: the ejection ends at the next tick */
    ck_assert(outlier_tick(&o, &p, 5));
    ck_assert(!o.ejected);
    ck_assert_int_eq(fail_run(&o, &p, 10, 6), OUTLIER_NO_CHANGE);
    ck_assert(!o.ejected);
}
END_TEST

static Suite *outlier_suite(void)
{
    Suite *s = suite_create("outlier");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_ejected_after_run);
    tcase_add_test(tc, test_success_breaks_the_run_neutral_does_not);
    tcase_add_test(tc, test_return_is_plain_and_on_time);
    tcase_add_test(tc, test_ejection_time_grows_and_caps);
    tcase_add_test(tc, test_multiplier_falls_back_per_base_time);
    tcase_add_test(tc, test_late_tick_does_not_delay_the_fall_back);
    tcase_add_test(tc, test_max_ejection_percent);
    tcase_add_test(tc, test_disabled);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(outlier_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
