/*
 * check_breaker.c - unit tests of the circuit breaker (src/breaker.c, SPEC 4.2).
 *
 * Every transition and non-transition is driven with a fake clock (plain
 * integers in milliseconds): threshold counting, the recovery timer, the
 * half-open probe limit, stale-epoch outcomes, neutral outcomes, the disabled
 * breaker and the admin reset.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"

static struct breaker_policy policy(int threshold, int64_t recovery_ms, int half_open_max)
{
    struct breaker_policy p = {
        .enabled = true,
        .failure_threshold = threshold,
        .recovery_timeout_ms = recovery_ms,
        .half_open_max_calls = half_open_max,
    };
    return p;
}

/* Admit one attempt and record its outcome at the same instant. */
static bool run(struct breaker *b, const struct breaker_policy *p, enum breaker_result r,
                int64_t now, struct breaker_transition *tr)
{
    struct breaker_ticket t;

    ck_assert(breaker_admit(b, p, now, &t));
    return breaker_record(b, p, &t, r, now, tr);
}

/* Drive a fresh breaker to OPEN at time 'at'. */
static void open_at(struct breaker *b, const struct breaker_policy *p, int64_t at)
{
    struct breaker_transition tr;

    breaker_init(b);
    for (int i = 0; i < p->failure_threshold - 1; i++)
        ck_assert(!run(b, p, BREAKER_FAILURE, at, &tr));
    ck_assert(run(b, p, BREAKER_FAILURE, at, &tr));
    ck_assert_int_eq(b->state, BREAKER_OPEN);
}

/* Drive a fresh breaker to HALF_OPEN: opened at 0, ticked at recovery. */
static void half_open(struct breaker *b, const struct breaker_policy *p)
{
    struct breaker_transition tr;

    open_at(b, p, 0);
    ck_assert(breaker_tick(b, p, p->recovery_timeout_ms, &tr));
    ck_assert_int_eq(b->state, BREAKER_HALF_OPEN);
}

START_TEST(test_names_and_init)
{
    struct breaker b;

    ck_assert_str_eq(breaker_state_name(BREAKER_CLOSED), "closed");
    ck_assert_str_eq(breaker_state_name(BREAKER_OPEN), "open");
    ck_assert_str_eq(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    memset(&b, 0x5a, sizeof(b));
    breaker_init(&b);
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(b.consecutive_failures, 0);
    ck_assert_int_eq(b.probes_inflight, 0);
    ck_assert_int_eq(b.probe_successes, 0);
}
END_TEST

START_TEST(test_closed_opens_at_threshold)
{
    struct breaker_policy p = policy(3, 1000, 1);
    struct breaker b;
    struct breaker_transition tr = {0};
    uint64_t epoch;

    breaker_init(&b);
    epoch = b.epoch;
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 10, &tr));
    ck_assert_int_eq(b.consecutive_failures, 1);
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 20, &tr));
    ck_assert_int_eq(b.consecutive_failures, 2);
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_CLOSED);
    ck_assert(b.epoch == epoch);

    ck_assert(run(&b, &p, BREAKER_FAILURE, 30, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    ck_assert_int_eq(tr.from, BREAKER_CLOSED);
    ck_assert_int_eq(tr.to, BREAKER_OPEN);
    ck_assert_str_eq(tr.reason, "failure threshold reached");
    ck_assert_int_eq(b.opened_at_ms, 30);
    ck_assert_int_eq(b.consecutive_failures, 0);
    ck_assert(b.epoch == epoch + 1);
}
END_TEST

START_TEST(test_threshold_one)
{
    struct breaker_policy p = policy(1, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;

    breaker_init(&b);
    ck_assert(run(&b, &p, BREAKER_FAILURE, 5, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
}
END_TEST

START_TEST(test_success_resets_count)
{
    struct breaker_policy p = policy(3, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;

    breaker_init(&b);
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 1, &tr));
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 2, &tr));
    ck_assert(!run(&b, &p, BREAKER_SUCCESS, 3, &tr));
    ck_assert_int_eq(b.consecutive_failures, 0);
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 4, &tr));
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 5, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(b.consecutive_failures, 2);
    ck_assert(run(&b, &p, BREAKER_FAILURE, 6, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
}
END_TEST

START_TEST(test_neutral_in_closed_changes_nothing)
{
    struct breaker_policy p = policy(2, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;

    breaker_init(&b);
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 1, &tr));
    for (int i = 0; i < 5; i++)
        ck_assert(!run(&b, &p, BREAKER_NEUTRAL, 2, &tr));
    ck_assert_int_eq(b.consecutive_failures, 1);
    ck_assert(run(&b, &p, BREAKER_FAILURE, 3, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
}
END_TEST

START_TEST(test_open_refuses_until_recovery)
{
    struct breaker_policy p = policy(1, 1000, 1);
    struct breaker b;
    struct breaker_transition tr = {0};
    struct breaker_ticket t;
    uint64_t epoch;

    open_at(&b, &p, 100);
    epoch = b.epoch;
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_OPEN);
    ck_assert(!breaker_admit(&b, &p, 100, &t));
    ck_assert(!breaker_tick(&b, &p, 100, &tr));
    ck_assert(!breaker_tick(&b, &p, 1099, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    /* admit does not move the state itself, even when the timer is due */
    ck_assert(!breaker_admit(&b, &p, 5000, &t));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    ck_assert(b.epoch == epoch);

    ck_assert(breaker_tick(&b, &p, 1100, &tr));
    ck_assert_int_eq(b.state, BREAKER_HALF_OPEN);
    ck_assert_int_eq(tr.from, BREAKER_OPEN);
    ck_assert_int_eq(tr.to, BREAKER_HALF_OPEN);
    ck_assert_str_eq(tr.reason, "recovery timeout elapsed");
    ck_assert(b.epoch == epoch + 1);
    /* ticking again changes nothing */
    ck_assert(!breaker_tick(&b, &p, 99999, &tr));
    ck_assert_int_eq(b.state, BREAKER_HALF_OPEN);
}
END_TEST

START_TEST(test_tick_closed_is_noop)
{
    struct breaker_policy p = policy(3, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;

    breaker_init(&b);
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 0, &tr));
    ck_assert(!breaker_tick(&b, &p, 1000000, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(b.consecutive_failures, 1);
}
END_TEST

START_TEST(test_ms_until_half_open)
{
    struct breaker_policy p = policy(1, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;

    breaker_init(&b);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 0), 0);
    open_at(&b, &p, 100);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 100), 1000);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 600), 500);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 1099), 1);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 1100), 0);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 5000), 0);
    ck_assert(breaker_tick(&b, &p, 1100, &tr));
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 1100), 0);
}
END_TEST

START_TEST(test_half_open_probe_limit_one)
{
    struct breaker_policy p = policy(1, 1000, 1);
    struct breaker b;
    struct breaker_ticket t[10];
    int admitted = 0;

    half_open(&b, &p);
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_HALF_OPEN);
    /* ten calls arrive at once: exactly one probe goes out */
    for (int i = 0; i < 10; i++)
        admitted += breaker_admit(&b, &p, 1000, &t[i]);
    ck_assert_int_eq(admitted, 1);
    ck_assert_int_eq(t[0].admitted_in, BREAKER_HALF_OPEN);
    ck_assert_int_eq(b.probes_inflight, 1);
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_OPEN);
}
END_TEST

START_TEST(test_half_open_probe_limit_three)
{
    struct breaker_policy p = policy(1, 1000, 3);
    struct breaker b;
    struct breaker_transition tr;
    struct breaker_ticket t[6];
    int admitted = 0;

    half_open(&b, &p);
    for (int i = 0; i < 6; i++)
        admitted += breaker_admit(&b, &p, 1000, &t[i]);
    ck_assert_int_eq(admitted, 3);
    ck_assert_int_eq(b.probes_inflight, 3);
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_OPEN);

    /* one success frees a slot but does not close yet */
    ck_assert(!breaker_record(&b, &p, &t[0], BREAKER_SUCCESS, 1010, &tr));
    ck_assert_int_eq(b.state, BREAKER_HALF_OPEN);
    ck_assert_int_eq(b.probes_inflight, 2);
    ck_assert_int_eq(b.probe_successes, 1);
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_HALF_OPEN);
    ck_assert(breaker_admit(&b, &p, 1010, &t[3]));
    ck_assert(!breaker_admit(&b, &p, 1010, &t[4]));

    ck_assert(!breaker_record(&b, &p, &t[1], BREAKER_SUCCESS, 1020, &tr));
    ck_assert_int_eq(b.probe_successes, 2);
    /* the third success in total closes, with counts reset */
    ck_assert(breaker_record(&b, &p, &t[2], BREAKER_SUCCESS, 1030, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(tr.from, BREAKER_HALF_OPEN);
    ck_assert_int_eq(tr.to, BREAKER_CLOSED);
    ck_assert_str_eq(tr.reason, "probes succeeded");
    ck_assert_int_eq(b.probes_inflight, 0);
    ck_assert_int_eq(b.probe_successes, 0);
    ck_assert_int_eq(b.consecutive_failures, 0);

    /* the fourth probe's late outcome belongs to the old epoch */
    ck_assert(!breaker_record(&b, &p, &t[3], BREAKER_FAILURE, 1040, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(b.consecutive_failures, 0);
}
END_TEST

START_TEST(test_sequential_probes_close)
{
    struct breaker_policy p = policy(1, 1000, 2);
    struct breaker b;
    struct breaker_transition tr;

    half_open(&b, &p);
    ck_assert(!run(&b, &p, BREAKER_SUCCESS, 1001, &tr));
    ck_assert_int_eq(b.state, BREAKER_HALF_OPEN);
    ck_assert_int_eq(b.probe_successes, 1);
    ck_assert_int_eq(b.probes_inflight, 0);
    ck_assert(run(&b, &p, BREAKER_SUCCESS, 1002, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
}
END_TEST

START_TEST(test_probe_failure_reopens_with_fresh_timer)
{
    struct breaker_policy p = policy(1, 1000, 2);
    struct breaker b;
    struct breaker_transition tr = {0};
    struct breaker_ticket t1, t2;

    half_open(&b, &p);
    ck_assert(breaker_admit(&b, &p, 1000, &t1));
    ck_assert(breaker_admit(&b, &p, 1000, &t2));
    ck_assert(!breaker_record(&b, &p, &t1, BREAKER_SUCCESS, 1200, &tr));
    ck_assert(breaker_record(&b, &p, &t2, BREAKER_FAILURE, 1500, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    ck_assert_int_eq(tr.from, BREAKER_HALF_OPEN);
    ck_assert_int_eq(tr.to, BREAKER_OPEN);
    ck_assert_str_eq(tr.reason, "probe failed");
    ck_assert_int_eq(b.opened_at_ms, 1500);
    ck_assert_int_eq(b.probe_successes, 0);
    ck_assert_int_eq(b.probes_inflight, 0);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 1500), 1000);
    ck_assert(!breaker_tick(&b, &p, 2499, &tr));
    ck_assert(breaker_tick(&b, &p, 2500, &tr));
    ck_assert_int_eq(b.state, BREAKER_HALF_OPEN);
    ck_assert_int_eq(b.probe_successes, 0);
}
END_TEST

START_TEST(test_slow_success_cannot_close_open)
{
    struct breaker_policy p = policy(2, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;
    struct breaker_ticket slow;

    breaker_init(&b);
    ck_assert(breaker_admit(&b, &p, 0, &slow));
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 1, &tr));
    ck_assert(run(&b, &p, BREAKER_FAILURE, 2, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    ck_assert(!breaker_record(&b, &p, &slow, BREAKER_SUCCESS, 3, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    ck_assert_int_eq(b.opened_at_ms, 2);
}
END_TEST

START_TEST(test_slow_outcomes_from_old_half_open)
{
    struct breaker_policy p = policy(1, 1000, 2);
    struct breaker b;
    struct breaker_transition tr;
    struct breaker_ticket t1, t2, t3;

    half_open(&b, &p);
    ck_assert(breaker_admit(&b, &p, 1000, &t1));
    ck_assert(breaker_admit(&b, &p, 1000, &t2));
    ck_assert(breaker_record(&b, &p, &t1, BREAKER_FAILURE, 1100, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    /* the other probe succeeds late: still OPEN, timer untouched */
    ck_assert(!breaker_record(&b, &p, &t2, BREAKER_SUCCESS, 1200, &tr));
    ck_assert_int_eq(b.state, BREAKER_OPEN);
    ck_assert_int_eq(b.opened_at_ms, 1100);

    /* a new HALF_OPEN period: an old-period probe neither frees a slot nor counts */
    ck_assert(breaker_tick(&b, &p, 2100, &tr));
    ck_assert(breaker_admit(&b, &p, 2100, &t3));
    ck_assert(!breaker_record(&b, &p, &t2, BREAKER_NEUTRAL, 2150, &tr));
    ck_assert_int_eq(b.probes_inflight, 1);
    ck_assert(!breaker_record(&b, &p, &t2, BREAKER_SUCCESS, 2150, &tr));
    ck_assert_int_eq(b.probe_successes, 0);
    ck_assert(!breaker_record(&b, &p, &t2, BREAKER_FAILURE, 2150, &tr));
    ck_assert_int_eq(b.state, BREAKER_HALF_OPEN);
    ck_assert_int_eq(b.probes_inflight, 1);
}
END_TEST

START_TEST(test_slow_failure_from_previous_closed_epoch)
{
    struct breaker_policy p = policy(1, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;
    struct breaker_ticket slow;

    breaker_init(&b);
    ck_assert(breaker_admit(&b, &p, 0, &slow));
    ck_assert(run(&b, &p, BREAKER_FAILURE, 10, &tr));   /* -> OPEN */
    ck_assert(breaker_tick(&b, &p, 1010, &tr));         /* -> HALF_OPEN */
    ck_assert(run(&b, &p, BREAKER_SUCCESS, 1020, &tr)); /* -> CLOSED */
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    /* threshold is 1, yet the failure admitted two epochs ago neither opens nor counts */
    ck_assert(!breaker_record(&b, &p, &slow, BREAKER_FAILURE, 1030, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(b.consecutive_failures, 0);
}
END_TEST

START_TEST(test_neutral_frees_probe_slot)
{
    struct breaker_policy p = policy(1, 1000, 1);
    struct breaker b;
    struct breaker_transition tr;
    struct breaker_ticket t;
    uint64_t epoch;

    half_open(&b, &p);
    epoch = b.epoch;
    ck_assert(breaker_admit(&b, &p, 1000, &t));
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_OPEN);
    ck_assert(!breaker_record(&b, &p, &t, BREAKER_NEUTRAL, 1100, &tr));
    ck_assert_int_eq(b.state, BREAKER_HALF_OPEN);
    ck_assert_int_eq(b.probes_inflight, 0);
    ck_assert_int_eq(b.probe_successes, 0);
    ck_assert(b.epoch == epoch);
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_HALF_OPEN);
    /* the freed slot takes the next probe, which closes the breaker */
    ck_assert(run(&b, &p, BREAKER_SUCCESS, 1200, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
}
END_TEST

START_TEST(test_disabled_breaker)
{
    struct breaker_policy p = policy(1, 1000, 1);
    struct breaker b;
    struct breaker_transition tr = {0};
    struct breaker_ticket t;

    p.enabled = false;
    breaker_init(&b);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_CLOSED);
        ck_assert(breaker_admit(&b, &p, i, &t));
        ck_assert_int_eq(t.admitted_in, BREAKER_CLOSED);
        ck_assert(!breaker_record(&b, &p, &t, BREAKER_FAILURE, i, &tr));
    }
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(b.consecutive_failures, 0);
    ck_assert(!breaker_tick(&b, &p, 100000, &tr));
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 0), 0);

    /* a breaker left OPEN when a reload disables it: peek admits, tick closes */
    p.enabled = true;
    open_at(&b, &p, 0);
    p.enabled = false;
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_CLOSED);
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 0), 0);
    ck_assert(breaker_tick(&b, &p, 1, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(tr.from, BREAKER_OPEN);
    ck_assert_str_eq(tr.reason, "circuit breaker disabled");
}
END_TEST

START_TEST(test_reset)
{
    struct breaker_policy p = policy(2, 1000, 1);
    struct breaker b;
    struct breaker_transition tr = {0};
    struct breaker_ticket old;

    open_at(&b, &p, 50);
    ck_assert(breaker_reset(&b, &tr));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
    ck_assert_int_eq(tr.from, BREAKER_OPEN);
    ck_assert_int_eq(tr.to, BREAKER_CLOSED);
    ck_assert_str_eq(tr.reason, "admin reset");
    ck_assert_int_eq(breaker_ms_until_half_open(&b, &p, 60), 0);
    ck_assert_int_eq(breaker_peek(&b, &p), BREAKER_CLOSED);

    /* reset of a CLOSED breaker: no state change, counts cleared, old tickets stale */
    ck_assert(breaker_admit(&b, &p, 100, &old));
    ck_assert(!run(&b, &p, BREAKER_FAILURE, 100, &tr));
    ck_assert_int_eq(b.consecutive_failures, 1);
    ck_assert(!breaker_reset(&b, NULL));
    ck_assert_int_eq(b.consecutive_failures, 0);
    ck_assert(!breaker_record(&b, &p, &old, BREAKER_FAILURE, 110, NULL));
    ck_assert_int_eq(b.consecutive_failures, 0);

    /* reset from HALF_OPEN */
    half_open(&b, &p);
    ck_assert(breaker_reset(&b, &tr));
    ck_assert_int_eq(tr.from, BREAKER_HALF_OPEN);
    ck_assert_int_eq(b.probes_inflight, 0);
}
END_TEST

START_TEST(test_null_transition_pointer)
{
    struct breaker_policy p = policy(1, 10, 1);
    struct breaker b;

    breaker_init(&b);
    ck_assert(run(&b, &p, BREAKER_FAILURE, 0, NULL));
    ck_assert(breaker_tick(&b, &p, 10, NULL));
    ck_assert(run(&b, &p, BREAKER_SUCCESS, 11, NULL));
    ck_assert_int_eq(b.state, BREAKER_CLOSED);
}
END_TEST

static Suite *breaker_suite(void)
{
    Suite *s = suite_create("breaker");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_names_and_init);
    tcase_add_test(tc, test_closed_opens_at_threshold);
    tcase_add_test(tc, test_threshold_one);
    tcase_add_test(tc, test_success_resets_count);
    tcase_add_test(tc, test_neutral_in_closed_changes_nothing);
    tcase_add_test(tc, test_open_refuses_until_recovery);
    tcase_add_test(tc, test_tick_closed_is_noop);
    tcase_add_test(tc, test_ms_until_half_open);
    tcase_add_test(tc, test_half_open_probe_limit_one);
    tcase_add_test(tc, test_half_open_probe_limit_three);
    tcase_add_test(tc, test_sequential_probes_close);
    tcase_add_test(tc, test_probe_failure_reopens_with_fresh_timer);
    tcase_add_test(tc, test_slow_success_cannot_close_open);
    tcase_add_test(tc, test_slow_outcomes_from_old_half_open);
    tcase_add_test(tc, test_slow_failure_from_previous_closed_epoch);
    tcase_add_test(tc, test_neutral_frees_probe_slot);
    tcase_add_test(tc, test_disabled_breaker);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_null_transition_pointer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(breaker_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
