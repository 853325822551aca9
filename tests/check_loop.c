/*
 * check_loop.c - the event loop across threads (workers, loop.h): another thread
 * that holds the state lock posts work to a loop, arms a timer on it or stops it,
 * and the loop, asleep in epoll_wait, wakes for it at once.
 *
 * Each test runs in its own process (Check's fork mode), so enabling the state
 * lock does not outlive it. Every wait is bounded.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "loop.h"

struct runner {
    struct loop *loop;
    pthread_t thread;
    pthread_t ran_on; /* the thread a posted function ran on */
    atomic_int done;
    int64_t fired_us; /* when the timer fired */
    int rc;
};

static void *run_loop(void *arg)
{
    struct runner *r = arg;
    r->rc = loop_run(r->loop);
    atomic_store(&r->done, 1);
    return NULL;
}

/* Start a loop on its own thread with the state lock on. asleep: let it go to sleep
 * in epoll_wait first (nothing to do: it would wait 60 s); otherwise the caller keeps
 * holding the lock, and the loop has not begun when the test acts. */
static void runner_start(struct runner *r, bool asleep)
{
    r->loop = loop_new();
    ck_assert_ptr_nonnull(r->loop);
    state_lock_enable();
    if (!asleep)
        state_enter();
    ck_assert_int_eq(pthread_create(&r->thread, NULL, run_loop, r), 0);
    if (asleep) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        state_enter(); /* the test acts under the lock, as ahoyd's code does */
    }
}

/* Let go of the lock, wait until the loop stops (bounded: 5 s) and join it. */
static void runner_finish(struct runner *r)
{
    int64_t end = monotonic_us() + 5000000;
    state_leave();
    while (!atomic_load(&r->done) && monotonic_us() < end) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(atomic_load(&r->done), "the loop did not stop within 5 s");
    pthread_join(r->thread, NULL);
    ck_assert_int_eq(r->rc, 0);
    loop_free(r->loop);
}

static void on_timer(void *arg)
{
    struct runner *r = arg;
    r->fired_us = monotonic_us();
    loop_stop(r->loop);
}

START_TEST(timer_armed_from_another_thread_wakes_the_loop)
{
    struct runner r = {0};
    struct loop_timer t;
    int64_t armed;

    runner_start(&r, true);
    loop_timer_init(&t, on_timer, &r);
    armed = monotonic_us();
    loop_timer_start(r.loop, &t, 50);
    runner_finish(&r);
    ck_assert_msg(r.fired_us - armed >= 45000 && r.fired_us - armed < 2000000,
                  "fired %lld us after being armed for 50 ms", (long long)(r.fired_us - armed));
}
END_TEST

static void on_posted(void *arg)
{
    struct runner *r = arg;
    r->ran_on = pthread_self();
    loop_stop(r->loop);
}

START_TEST(posted_work_runs_on_the_loop_thread)
{
    struct runner r = {0};

    runner_start(&r, true);
    ck_assert_int_eq(loop_post(r.loop, on_posted, &r), 0);
    runner_finish(&r);
    ck_assert(pthread_equal(r.ran_on, r.thread));
    ck_assert(!pthread_equal(r.ran_on, pthread_self()));
}
END_TEST

START_TEST(stop_from_another_thread)
{
    struct runner r = {0};

    runner_start(&r, true);
    loop_stop(r.loop); /* asleep: the stop wakes it */
    runner_finish(&r);
}
END_TEST

START_TEST(stop_before_the_loop_runs)
{
    struct runner r = {0};

    runner_start(&r, false);
    loop_stop(r.loop); /* it has not begun: it must still stop */
    runner_finish(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("threads");
    int failed;

    tcase_add_test(tc, timer_armed_from_another_thread_wakes_the_loop);
    tcase_add_test(tc, posted_work_runs_on_the_loop_thread);
    tcase_add_test(tc, stop_from_another_thread);
    tcase_add_test(tc, stop_before_the_loop_runs);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
