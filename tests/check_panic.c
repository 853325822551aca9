/*
 * check_panic.c - unit tests of src/panic.c (SPEC 4.7): the candidate set
 * (usable and admitting), panic entry and exit reported once, the threshold
 * boundary, threshold 0 (panic off, none usable) and empty pools.
 */
#include <check.h>
#include <stdlib.h>

#include "panic.h"

#define OK                                                                                         \
    {                                                                                              \
        true, false, true                                                                          \
    }
#define UNHEALTHY                                                                                  \
    {                                                                                              \
        false, false, true                                                                         \
    }
#define EJECTED                                                                                    \
    {                                                                                              \
        true, true, true                                                                           \
    }
#define OPEN                                                                                       \
    {                                                                                              \
        true, false, false                                                                         \
    }
#define UNHEALTHY_OPEN                                                                             \
    {                                                                                              \
        false, false, false                                                                        \
    }

START_TEST(test_normal_candidates)
{
    struct panic_endpoint eps[] = {OK, UNHEALTHY, EJECTED, OPEN, OK, OK};
    struct panic_state st = {false};
    bool cand[6];
    enum panic_change ch;

    /* 4 of 6 usable (67 %) >= 50 %: no panic */
    ck_assert_int_eq(panic_candidates(eps, 6, 50, &st, cand, &ch), 3);
    ck_assert_int_eq(ch, PANIC_UNCHANGED);
    ck_assert(!st.active);
    ck_assert(cand[0] && !cand[1] && !cand[2] && !cand[3] && cand[4] && cand[5]);
}
END_TEST

START_TEST(test_panic_entry_and_exit_once)
{
    struct panic_endpoint eps[] = {OK, UNHEALTHY, EJECTED, UNHEALTHY_OPEN};
    struct panic_state st = {false};
    bool cand[4];
    enum panic_change ch;

    /* 1 of 4 usable (25 %) < 50 %: every admitting endpoint, health and ejection ignored */
    ck_assert_int_eq(panic_candidates(eps, 4, 50, &st, cand, &ch), 3);
    ck_assert_int_eq(ch, PANIC_ENTERED);
    ck_assert(st.active);
    ck_assert(cand[0] && cand[1] && cand[2] && !cand[3]); /* the breaker still counts */
    ck_assert_int_eq(panic_candidates(eps, 4, 50, &st, cand, &ch), 3);
    ck_assert_int_eq(ch, PANIC_UNCHANGED);
    /* one comes back: 2 of 4 = 50 %, not below: panic ends */
    eps[1].healthy = true;
    ck_assert_int_eq(panic_candidates(eps, 4, 50, &st, cand, &ch), 2);
    ck_assert_int_eq(ch, PANIC_EXITED);
    ck_assert(!st.active);
    ck_assert(cand[0] && cand[1] && !cand[2] && !cand[3]);
    ck_assert_int_eq(panic_candidates(eps, 4, 50, &st, cand, &ch), 2);
    ck_assert_int_eq(ch, PANIC_UNCHANGED);
}
END_TEST

START_TEST(test_threshold_boundary)
{
    ck_assert(!panic_below_threshold(1, 2, 50));
    ck_assert(panic_below_threshold(0, 2, 50));
    ck_assert(panic_below_threshold(2, 3, 67)); /* 66.7 % < 67 % */
    ck_assert(!panic_below_threshold(2, 3, 66));
    ck_assert(panic_below_threshold(9, 10, 100));
    ck_assert(!panic_below_threshold(10, 10, 100));
    ck_assert(!panic_below_threshold(0, 10, 0));
    ck_assert(!panic_below_threshold(0, 0, 50));
}
END_TEST

START_TEST(test_threshold_zero_none_usable)
{
    struct panic_endpoint eps[] = {UNHEALTHY, EJECTED};
    struct panic_state st = {false};
    bool cand[2];
    enum panic_change ch;

    ck_assert_int_eq(panic_candidates(eps, 2, 0, &st, cand, &ch), 0);
    ck_assert_int_eq(ch, PANIC_UNCHANGED);
    ck_assert(!st.active);
    ck_assert(!cand[0] && !cand[1]);
}
END_TEST

START_TEST(test_panic_ends_when_turned_off_or_pool_empties)
{
    struct panic_endpoint eps[] = {UNHEALTHY, UNHEALTHY};
    struct panic_state st = {false};
    bool cand[2];
    enum panic_change ch;

    ck_assert_int_eq(panic_candidates(eps, 2, 50, &st, cand, &ch), 2);
    ck_assert_int_eq(ch, PANIC_ENTERED);
    /* a reload sets the threshold to 0 */
    ck_assert_int_eq(panic_candidates(eps, 2, 0, &st, cand, &ch), 0);
    ck_assert_int_eq(ch, PANIC_EXITED);
    ck_assert_int_eq(panic_candidates(eps, 2, 50, &st, cand, NULL), 2);
    ck_assert(st.active);
    ck_assert_int_eq(panic_candidates(NULL, 0, 50, &st, NULL, &ch), 0);
    ck_assert_int_eq(ch, PANIC_EXITED);
}
END_TEST

static Suite *panic_suite(void)
{
    Suite *s = suite_create("panic");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_normal_candidates);
    tcase_add_test(tc, test_panic_entry_and_exit_once);
    tcase_add_test(tc, test_threshold_boundary);
    tcase_add_test(tc, test_threshold_zero_none_usable);
    tcase_add_test(tc, test_panic_ends_when_turned_off_or_pool_empties);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(panic_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
