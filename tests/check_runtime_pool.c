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
#include "runtime.h"

static char *const no_env[] = {NULL};

/* A runtime of service svc with one static endpoint and discovery (dns when dns is
 * true), from YAML in a temp file. */
static struct config *load(bool dns)
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
            dns ? "        discovery: {dns: {name: svc.test, port: 80}}\n" : "");
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

static int slot_of(const struct service_rt *s, const char *url)
{
    for (size_t i = 0; i < s->n_endpoints; i++)
        if (strcmp(s->endpoints[i]->url, url) == 0)
            return (int)i;
    return -1;
}

#define A "http://10.0.0.1:80"
#define B "http://10.0.0.2:80"
#define STATIC "http://127.0.0.1:1/s"

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
    struct pool_found set[] = {{A, 2}};
    ck_assert_int_eq(runtime_pool_update(s, POOL_SOURCE_DNS, set, 1, l), 1);
    struct endpoint_rt *a = s->endpoints[slot_of(s, A)];
    a->consecutive_failures = 3;

    /* the same block: the set and its objects carry over */
    struct runtime *rt2 = runtime_new(load(true), rt, l, &err);
    ck_assert_ptr_nonnull(rt2);
    runtime_retire_missing(rt, rt2);
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
    struct runtime *rt3 = runtime_new(load(false), rt2, l, &err);
    ck_assert_ptr_nonnull(rt3);
    runtime_retire_missing(rt2, rt3);
    ck_assert_uint_eq(rt3->services[0].n_endpoints, 1);
    ck_assert(a->retired);
    runtime_unref(rt2);
    runtime_unref(rt3);
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
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
