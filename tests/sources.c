/*
 * sources.c - the recorder and loop driver of the discovery source suites.
 */
#include "sources.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void recorder_cb(void *arg, enum pool_source src, const struct pool_found *found, int n,
                 const char *error)
{
    struct recorder *r = arg;
    if (error) {
        r->errors++;
        snprintf(r->error, sizeof r->error, "%s", error);
        r->error_at_ms = harness_now_ms();
        return;
    }
    char **items = calloc((size_t)n + 1, sizeof *items);
    size_t len = 0;
    for (int i = 0; items && i < n; i++) {
        size_t k = strlen(found[i].url) + 16;
        if ((items[i] = malloc(k)))
            snprintf(items[i], k, "%s=%d", found[i].url, found[i].weight);
    }
    if (items && n > 0)
        qsort(items, (size_t)n, sizeof *items, cmp_str);
    r->set[0] = '\0';
    for (int i = 0; items && i < n; i++) {
        len += (size_t)snprintf(r->set + len, len < sizeof r->set ? sizeof r->set - len : 0, "%s%s",
                                i ? " " : "", items[i] ? items[i] : "?");
        free(items[i]);
    }
    free(items);
    r->good++;
    if (n == 0)
        r->empty_good++;
    r->set_at_ms = harness_now_ms();
}

struct waiter {
    struct loop *loop;
    struct loop_timer tick;
    bool (*cond)(const struct recorder *, const void *);
    const struct recorder *r;
    const void *want;
    double end_ms;
    bool met;
};

static void on_tick(void *arg)
{
    struct waiter *w = arg;
    if (w->cond && w->cond(w->r, w->want)) {
        w->met = true;
        loop_stop(w->loop);
    } else if (harness_now_ms() >= w->end_ms) {
        loop_stop(w->loop);
    } else {
        loop_timer_start(w->loop, &w->tick, 5);
    }
}

static double run_until(struct loop *l, const struct recorder *r,
                        bool (*cond)(const struct recorder *, const void *), const void *want,
                        int timeout_ms)
{
    double start = harness_now_ms();
    struct waiter w = {.loop = l, .cond = cond, .r = r, .want = want, .end_ms = start + timeout_ms};
    loop_timer_init(&w.tick, on_tick, &w);
    loop_timer_start(l, &w.tick, 0);
    loop_run(l);
    loop_timer_stop(l, &w.tick);
    return w.met ? harness_now_ms() - start : -1;
}

static bool set_is(const struct recorder *r, const void *want)
{
    return r->good > 0 && strcmp(r->set, want) == 0;
}

static bool errors_reach(const struct recorder *r, const void *n)
{
    return r->errors >= *(const int *)n;
}

static bool good_reach(const struct recorder *r, const void *n)
{
    return r->good >= *(const int *)n;
}

double wait_set(struct loop *l, struct recorder *r, const char *want, int timeout_ms)
{
    return run_until(l, r, set_is, want, timeout_ms);
}

double wait_errors(struct loop *l, struct recorder *r, int n, int timeout_ms)
{
    return run_until(l, r, errors_reach, &n, timeout_ms);
}

double wait_good(struct loop *l, struct recorder *r, int n, int timeout_ms)
{
    return run_until(l, r, good_reach, &n, timeout_ms);
}

void assert_set_within(struct loop *l, struct recorder *r, const char *want, const char *what,
                       double t0, int bound_ms, const char *tag)
{
    double ms = wait_set(l, r, want, 5 * bound_ms);
    ck_assert_msg(ms >= 0, "%s: wanted \"%s\", last set \"%s\" (errors %d: %s)", what, want, r->set,
                  r->errors, r->error);
    ms = r->set_at_ms - t0;
    printf("%s: %s reached the callback in %.0f ms\n", tag, what, ms);
    ck_assert_msg(ms <= bound_ms, "%s took %.0f ms (bound %d ms)", what, ms, bound_ms);
}

void run_for(struct loop *l, int ms)
{
    run_until(l, NULL, NULL, NULL, ms);
}

int sources_main(Suite *s, const char *path, const char *package)
{
    const char *ci = getenv("CI");
    if (access(path, X_OK) == 0) {
        log_init(LOG_LEVEL_WARN);
        return harness_main(s);
    }
    srunner_free(srunner_create(s)); /* frees s */
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "FAIL: %s is not installed (Debian package %s; .ci/deps installs it)\n",
                path, package);
        return 1;
    }
    fprintf(stderr, "SKIP: %s is not installed (apt-get install %s to run this suite)\n", path,
            package);
    return 77;
}
