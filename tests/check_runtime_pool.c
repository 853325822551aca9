/*
 * check_runtime_pool.c - a discovered set applied to a live pool
 * (runtime_pool_update) and handed across a reload (runtime_new with the old
 * runtime), in process: which endpoint objects stay (the same object: breaker,
 * health and counters with it), which join (closed, unhealthy and due for a
 * check at once, in slow start) and which are retired and freed only when the
 * last holder lets go; the weights and sources of the slots.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "pool_feed.h"
#include "runtime.h"

static char *const no_env[] = {NULL};

/* A runtime of service svc with one static endpoint and discovery (the YAML line
 * discovery, or none when NULL), from YAML in a temp file. */
static struct config *load_with(const char *discovery)
{
    char path[] = "/tmp/ahoyd-check-runtime-pool-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "pyfly:\n  client:\n    services:\n      svc:\n"
               "        endpoints: [http://127.0.0.1:1/s]\n"
               "        health-check: {path: /h, interval: 10s}\n"
               "        slow-start: 10s\n%s",
            discovery ? discovery : "");
    fclose(f);
    struct config_options o = {path, NULL, NULL, no_env};
    struct config_messages m;
    struct config *cfg = config_load(&o, &m);
    for (size_t i = 0; i < m.n_errors; i++)
        fprintf(stderr, "%s\n", m.errors[i]);
    config_messages_free(&m);
    unlink(path);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* With dns: discovery of svc.test's A records. */
static struct config *load(bool dns)
{
    return load_with(dns ? "        discovery: {dns: {name: svc.test, port: 80}}\n" : NULL);
}

static int slot_of(const struct service_rt *s, const char *url)
{
    for (size_t i = 0; i < s->n_endpoints; i++)
        if (strcmp(s->endpoints[i]->url, url) == 0)
            return (int)i;
    return -1;
}

/* A runtime from cfg in place of old (its pool handed over), old's missing parts retired. */
static struct runtime *reload(struct runtime *old, struct config *cfg, struct loop *l)
{
    char *err = NULL;
    struct runtime *rt = runtime_new(cfg, old, l, &err);
    ck_assert_ptr_nonnull(rt);
    runtime_retire_missing(old, rt);
    return rt;
}

#define A "http://10.0.0.1:80"
#define B "http://10.0.0.2:80"
#define STATIC "http://127.0.0.1:1/s"

/* DNS finds A alone, weight 2: A joins s; returns its endpoint. */
static struct endpoint_rt *dns_finds_a(struct service_rt *s, struct loop *l)
{
    struct pool_found set[] = {{A, 2}};
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set, 1, l), 1);
    return s->endpoints[slot_of(s, A)];
}

START_TEST(update_keeps_joins_and_retires)
{
    struct loop *l = loop_new();
    char *err = NULL;
    struct runtime *rt = runtime_new(load(true), NULL, l, &err);
    ck_assert_ptr_nonnull(rt);
    struct service_rt *s = &rt->services[0];
    ck_assert_uint_eq(s->n_endpoints, 1);
    ck_assert_int_eq(s->shown[0], POOL_SOURCE_STATIC);
    ck_assert(s->endpoints[0]->health.healthy); /* present at start */

    struct pool_found set1[] = {{A, 1}, {B, 2}};
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set1, 2, l), 2);
    ck_assert_uint_eq(s->n_endpoints, 3);
    int ia = slot_of(s, A), ib = slot_of(s, B);
    ck_assert(ia > 0 && ib > 0); /* after the static one */
    struct endpoint_rt *a = s->endpoints[ia], *b = s->endpoints[ib];
    ck_assert_int_eq(s->shown[ib], POOL_SOURCE_DNS);
    ck_assert_int_eq(s->weights[ib], 2);
    ck_assert_ptr_eq(s->confs[ib], b->own_conf);
    ck_assert_str_eq(s->confs[ib]->origin, B);
    ck_assert_int_eq(b->breaker.state, BREAKER_CLOSED);
    ck_assert(!b->health.healthy);                       /* joined: unhealthy ... */
    ck_assert_int_le(b->health.next_check_ms, loop_now_ms(l)); /* ... and due at once */
    ck_assert(b->slow_start.ramping);
    ck_assert_ptr_eq(b->svc_conf, s->conf);

    /* the same set: nothing changes */
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set1, 2, l), 0);
    ck_assert_ptr_eq(s->endpoints[ib], b);

    /* a leaves while a call holds it; b re-weighted; the static URL found too */
    a->refs++;
    b->consecutive_failures = 4; /* state that must stay with b */
    struct pool_found set2[] = {{B, 3}, {STATIC, 5}};
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set2, 2, l), 2);
    ck_assert_uint_eq(s->n_endpoints, 2);
    ck_assert_int_eq(slot_of(s, A), -1);
    ck_assert(a->retired);
    ib = slot_of(s, B);
    ck_assert_ptr_eq(s->endpoints[ib], b);
    ck_assert_int_eq(b->consecutive_failures, 4);
    ck_assert_int_eq(s->weights[ib], 3);
    int is = slot_of(s, STATIC);
    ck_assert_int_eq(s->shown[is], POOL_SOURCE_STATIC); /* static wins, its weight shown */
    ck_assert_int_eq(s->weights[is], 1);
    ck_assert_int_eq(s->members[is].weight_by_source[POOL_SOURCE_DNS], 5);
    endpoint_unref(a); /* the call ends: a is freed (ASan tells otherwise) */

    /* an empty answer empties the source, never the static endpoints */
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, NULL, 0, l), 1);
    ck_assert_uint_eq(s->n_endpoints, 1);
    ck_assert_str_eq(s->endpoints[0]->url, STATIC);
    ck_assert_int_eq(s->members[0].weight_by_source[POOL_SOURCE_DNS], 0);
    runtime_unref(rt);
    loop_free(l);
}
END_TEST

START_TEST(reload_hands_the_set_over)
{
    struct loop *l = loop_new();
    char *err = NULL;
    struct runtime *rt = runtime_new(load(true), NULL, l, &err);
    struct service_rt *s = &rt->services[0];
    struct endpoint_rt *a = dns_finds_a(s, l);
    a->consecutive_failures = 3;

    /* the same block: the set and its objects carry over */
    struct runtime *rt2 = reload(rt, load(true), l);
    struct service_rt *s2 = &rt2->services[0];
    ck_assert_uint_eq(s2->n_endpoints, 2);
    int i = slot_of(s2, A);
    ck_assert_ptr_eq(s2->endpoints[i], a);
    ck_assert(!a->retired);
    ck_assert_int_eq(a->consecutive_failures, 3);
    ck_assert_int_eq(s2->weights[i], 2);
    ck_assert_int_eq(s2->shown[i], POOL_SOURCE_DNS);
    ck_assert_ptr_eq(s2->confs[i], a->own_conf);
    ck_assert_ptr_eq(a->conf, a->own_conf);
    runtime_unref(rt);

    /* discovery removed: its endpoints leave with the reload */
    struct runtime *rt3 = reload(rt2, load(false), l);
    ck_assert_uint_eq(rt3->services[0].n_endpoints, 1);
    ck_assert(a->retired);
    runtime_unref(rt2);
    runtime_unref(rt3);
    loop_free(l);
}
END_TEST

/* A URL the pool leaves out is no change: not counted (no update metric, no rebuild)
 * on this answer nor on the next that lists it again. */
START_TEST(update_bad_url_is_no_change)
{
    struct loop *l = loop_new();
    char *err = NULL;
    struct runtime *rt = runtime_new(load(true), NULL, l, &err);
    struct service_rt *s = &rt->services[0];
    struct pool_found set[] = {{"http://10.0.0.9:80/x?y=1", 1}};
    struct endpoint_rt **before = s->endpoints;
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set, 1, l), 0);
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set, 1, l), 0);
    ck_assert_ptr_eq(s->endpoints, before); /* not rebuilt */
    ck_assert_uint_eq(s->n_endpoints, 1);
    struct pool_found set2[] = {{"http://user@10.0.0.9:80", 1}, {A, 1}};
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set2, 2, l), 1);
    ck_assert_uint_eq(s->n_endpoints, 2);
    ck_assert_int_eq(slot_of(s, A), 1);
    runtime_unref(rt);
    loop_free(l);
}
END_TEST

/* A source's set over the limit is refused whole: the pool keeps the last good set. */
START_TEST(update_over_the_limit_is_refused)
{
    enum { N = RUNTIME_POOL_MAX_PER_SOURCE + 1 };
    struct loop *l = loop_new();
    char *err = NULL;
    struct runtime *rt = runtime_new(load(true), NULL, l, &err);
    struct service_rt *s = &rt->services[0];
    struct pool_found *set = calloc(N, sizeof *set);
    char (*urls)[32] = calloc(N, sizeof *urls);
    ck_assert(set && urls);
    for (int i = 0; i < N; i++) {
        snprintf(urls[i], sizeof urls[i], "http://10.1.%d.%d:80", i >> 8, i & 255);
        set[i].url = urls[i];
        set[i].weight = 1;
    }
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set, N, l), RUNTIME_POOL_TOO_MANY);
    ck_assert_uint_eq(s->n_endpoints, 1);
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set, N - 1, l), N - 1);
    ck_assert_uint_eq(s->n_endpoints, N);
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set, N, l), RUNTIME_POOL_TOO_MANY);
    ck_assert_uint_eq(s->n_endpoints, N); /* the last good set stays */
    runtime_unref(rt);
    free(set);
    free(urls);
    loop_free(l);
}
END_TEST

/* A reload that changes the discovery block drops what the old block found at once
 * (the new source may never answer); the static endpoint stays. */
START_TEST(reload_changed_block_drops_its_part)
{
    struct loop *l = loop_new();
    char *err = NULL;
    struct runtime *rt = runtime_new(load(true), NULL, l, &err);
    struct service_rt *s = &rt->services[0];
    struct endpoint_rt *a = dns_finds_a(s, l);

    struct runtime *rt2 =
        reload(rt, load_with("        discovery: {dns: {name: other.test, port: 80}}\n"), l);
    struct service_rt *s2 = &rt2->services[0];
    ck_assert_uint_eq(s2->n_endpoints, 1);
    ck_assert_int_eq(slot_of(s2, STATIC), 0);
    ck_assert_int_eq(slot_of(s2, A), -1);
    ck_assert(a->retired);
    runtime_unref(rt);
    runtime_unref(rt2);
    loop_free(l);
}
END_TEST

struct poll {
    struct loop *loop;
    struct loop_timer tick;
    const struct discovery_status *st;
    int64_t end_ms;
};

static void poll_tick(void *arg)
{
    struct poll *p = arg;
    if (strncmp(p->st->last_error, "cannot start", 12) != 0 ||
        loop_now_ms(p->loop) >= p->end_ms)
        loop_stop(p->loop);
    else
        loop_timer_start(p->loop, &p->tick, 10);
}

/* A source that could not start is started again after the backoff, its reason shown
 * meanwhile; a reload with a changed block resets the source's status. */
START_TEST(source_that_cannot_start_is_retried)
{
    struct loop *l = loop_new();
    char *err = NULL;
    struct runtime *rt = runtime_new(
        load_with("        discovery: {etcd: {endpoints: ['http://127.0.0.1:1'], prefix: /x/}}\n"),
        NULL, l, &err);
    ck_assert_ptr_nonnull(rt);
    struct pool_feed *f = pool_feed_new(l, NULL);
    const struct discovery_status *st = &rt->services[0].state->discovery[POOL_SOURCE_ETCD];
    pool_feed_test_start_failures = 1;
    pool_feed_apply(f, rt);
    ck_assert_int_eq(pool_feed_test_start_failures, 0);
    ck_assert_msg(strncmp(st->last_error, "cannot start: ", 14) == 0, "%s", st->last_error);
    ck_assert_uint_eq(st->errors, 1);
    struct poll p = {l, {0}, st, loop_now_ms(l) + 3000};
    loop_timer_init(&p.tick, poll_tick, &p);
    loop_timer_start(l, &p.tick, 0);
    loop_run(l);
    loop_timer_stop(l, &p.tick);
    /* started: it now reports what etcd itself does (nothing listens there) */
    ck_assert_msg(strncmp(st->last_error, "cannot start", 12) != 0, "%s", st->last_error);
    ck_assert_uint_ge(st->errors, 2);

    struct runtime *rt2 = runtime_new(
        load_with("        discovery: {etcd: {endpoints: ['http://127.0.0.1:1'], prefix: /y/}}\n"),
        rt, l, &err);
    ck_assert_ptr_nonnull(rt2);
    pool_feed_apply(f, rt2);
    runtime_retire_missing(rt, rt2);
    const struct discovery_status *st2 = &rt2->services[0].state->discovery[POOL_SOURCE_ETCD];
    ck_assert_uint_eq(st2->errors, 0);
    ck_assert_str_eq(st2->last_error, "");
    ck_assert(st2->active);
    pool_feed_free(f);
    runtime_unref(rt);
    runtime_unref(rt2);
    loop_free(l);
}
END_TEST

/* An endpoint that comes back ramps up again under slow start: when its breaker
 * closes again, and when its ejection ends. */
START_TEST(slow_start_again_after_breaker_and_ejection)
{
    struct loop *l = loop_new();
    char *err = NULL;
    struct runtime *rt = runtime_new(
        load_with("        outlier: {consecutive-failures: 2, base-ejection-time: 1s}\n"), NULL, l,
        &err);
    ck_assert_ptr_nonnull(rt);
    struct endpoint_rt *ep = rt->services[0].endpoints[0];
    int64_t now = loop_now_ms(l);
    ck_assert(!slow_start_active(&ep->slow_start, ep->slow_start_ms, now)); /* present */

    struct breaker_transition tr = {.from = BREAKER_HALF_OPEN, .to = BREAKER_CLOSED,
                                    .reason = "test"};
    endpoint_note_transition(ep, &tr);
    ck_assert(slow_start_active(&ep->slow_start, ep->slow_start_ms, now + 10));
    ck_assert_int_lt(slow_start_weight(&ep->slow_start, 100, ep->slow_start_ms, now + 1000),
                     50 * SLOW_START_SCALE); /* 10 % + 9 % of the way: 19 % */

    slow_start_init(&ep->slow_start);
    ep->outlier.ejected = true;
    ep->outlier.ejected_until_ms = now + 1000;
    endpoint_eject_tick(ep, now + 500); /* not yet */
    ck_assert(ep->outlier.ejected);
    ck_assert(!slow_start_active(&ep->slow_start, ep->slow_start_ms, now + 500));
    endpoint_eject_tick(ep, now + 1000);
    ck_assert(!ep->outlier.ejected);
    ck_assert(slow_start_active(&ep->slow_start, ep->slow_start_ms, now + 1010));
    ck_assert_int_lt(slow_start_weight(&ep->slow_start, 100, ep->slow_start_ms, now + 2000),
                     50 * SLOW_START_SCALE);
    runtime_unref(rt);
    loop_free(l);
}
END_TEST

int main(void)
{
    log_init(LOG_LEVEL_ERROR);
    Suite *s = suite_create("runtime_pool");
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, update_keeps_joins_and_retires);
    tcase_add_test(tc, reload_hands_the_set_over);
    tcase_add_test(tc, update_bad_url_is_no_change);
    tcase_add_test(tc, update_over_the_limit_is_refused);
    tcase_add_test(tc, reload_changed_block_drops_its_part);
    tcase_add_test(tc, source_that_cannot_start_is_retried);
    tcase_add_test(tc, slow_start_again_after_breaker_and_ejection);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
