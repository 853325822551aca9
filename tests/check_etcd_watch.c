/*
 * check_etcd_watch.c - etcd discovery against a real etcd (temp data dir, free
 * 127.0.0.1 ports): the first range, puts and deletes through the watch within a
 * second, a bad value skipped, etcd killed and restarted (a change made while
 * the watcher was away is not missed), a compaction while it was away (a fresh
 * range), and etcd authentication.
 *
 * etcd listens on two client ports: the source is given the first, the test
 * writes through the second. Restarting etcd on the second alone keeps the
 * watcher away while the test changes keys, deterministically.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discovery.h"
#include "harness.h"
#include "loop.h"
#include "sources.h"

#define WATCH_BOUND_MS 1000 /* a change reaches the callback within a second */

static struct etcd_source *source(struct loop *l, const struct etcd *e, const char *user,
                                  const char *password, struct recorder *r)
{
    char ep[64], err[256];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", e->port);
    const char *eps[] = {ep};
    struct etcd_source_conf c = {.endpoints = eps,
                                 .n_endpoints = 1,
                                 .prefix = "/svc/",
                                 .username = user,
                                 .password = password};
    struct etcd_source *s = etcd_source_new(l, &c, recorder_cb, r, err, sizeof err);
    ck_assert_msg(s != NULL, "etcd_source_new: %s", err);
    return s;
}

#define EP(host, w) "{\"url\":\"http://" host ":8080/api\",\"weight\":" #w "}"

static void assert_change(struct loop *l, struct recorder *r, const char *want, const char *what,
                          double t0)
{
    assert_set_within(l, r, want, what, t0, WATCH_BOUND_MS, "etcd");
}

START_TEST(range_then_watch_puts_and_deletes)
{
    struct etcd e;
    etcd_start(&e);
    etcd_put(&e, "/svc/a", EP("10.0.0.1", 2));
    etcd_put(&e, "/svc/b", EP("10.0.0.2", 1));
    etcd_put(&e, "/svd/x", EP("10.0.0.9", 1)); /* outside the prefix */
    struct loop *l = loop_new();
    struct recorder r = {0};
    struct etcd_source *s = source(l, &e, NULL, NULL, &r);
    double t0;

    ck_assert_msg(wait_set(l, &r, "http://10.0.0.1:8080/api=2 http://10.0.0.2:8080/api=1", 10000) >=
                      0,
                  "first range: \"%s\" (%s)", r.set, r.error);
    run_for(l, 200); /* let the watch be established */
    t0 = harness_now_ms();
    etcd_put(&e, "/svc/c", EP("10.0.0.3", 3));
    assert_change(l, &r,
                  "http://10.0.0.1:8080/api=2 http://10.0.0.2:8080/api=1 "
                  "http://10.0.0.3:8080/api=3",
                  "a put", t0);
    t0 = harness_now_ms();
    etcd_delete(&e, "/svc/a");
    assert_change(l, &r, "http://10.0.0.2:8080/api=1 http://10.0.0.3:8080/api=3", "a delete", t0);
    t0 = harness_now_ms();
    etcd_put(&e, "/svc/c", EP("10.0.0.3", 7));
    assert_change(l, &r, "http://10.0.0.2:8080/api=1 http://10.0.0.3:8080/api=7", "a re-weight",
                  t0);
    /* a bad value is skipped: a new key with one never appears, a key given one leaves */
    t0 = harness_now_ms();
    etcd_put(&e, "/svc/bad", "not json");
    etcd_put(&e, "/svc/b", "{\"url\":\"ftp://10.0.0.2/\"}");
    etcd_put(&e, "/svc/d", EP("10.0.0.4", 1));
    assert_change(l, &r, "http://10.0.0.3:8080/api=7 http://10.0.0.4:8080/api=1",
                  "bad values skipped", t0);
    ck_assert_msg(r.errors == 0, "no error expected: %s", r.error);
    etcd_source_free(s);
    loop_free(l);
}
END_TEST

/* etcd with /svc/a and /svc/b, a source following it; then etcd killed (an error
 * reported) and started again on its side port alone: the watcher is away. */
static struct etcd_source *follow_then_go_away(struct etcd *e, struct loop *l, struct recorder *r)
{
    etcd_start(e);
    etcd_put(e, "/svc/a", EP("10.0.0.1", 1));
    etcd_put(e, "/svc/b", EP("10.0.0.2", 1));
    struct etcd_source *s = source(l, e, NULL, NULL, r);
    ck_assert_msg(wait_set(l, r, "http://10.0.0.1:8080/api=1 http://10.0.0.2:8080/api=1", 10000) >=
                      0,
                  "first range: \"%s\" (%s)", r->set, r->error);
    run_for(l, 200); /* the watch is established */
    proc_kill(&e->p);
    ck_assert_msg(wait_errors(l, r, 1, 5000) >= 0, "no error when etcd died");
    etcd_run(e, false);
    return s;
}

START_TEST(killed_and_restarted_resumes_without_missing_a_change)
{
    struct etcd e;
    struct loop *l = loop_new();
    struct recorder r = {0};
    struct etcd_source *s = follow_then_go_away(&e, l, &r);
    double t0;
    printf("etcd: with etcd killed: %s\n", r.error);
    ck_assert_msg(strstr(r.error, "etcd /svc/") != NULL, "%s", r.error);
    /* etcd is back, but not where the watcher looks: changes made meanwhile */
    etcd_put(&e, "/svc/c", EP("10.0.0.3", 1));
    etcd_delete(&e, "/svc/a");
    int good = r.good;
    run_for(l, 500);
    ck_assert_int_eq(r.good, good); /* still away */
    etcd_restart(&e, true);
    double ms = wait_set(l, &r, "http://10.0.0.2:8080/api=1 http://10.0.0.3:8080/api=1", 20000);
    ck_assert_msg(ms >= 0, "after the restart: \"%s\" (%s)", r.set, r.error);
    printf("etcd: the watcher caught up %.0f ms after etcd came back\n", ms);
    /* and follows again */
    t0 = harness_now_ms();
    etcd_put(&e, "/svc/d", EP("10.0.0.4", 1));
    assert_change(l, &r,
                  "http://10.0.0.2:8080/api=1 http://10.0.0.3:8080/api=1 "
                  "http://10.0.0.4:8080/api=1",
                  "a put after the restart", t0);
    etcd_source_free(s);
    loop_free(l);
}
END_TEST

START_TEST(compaction_while_away_ranges_again)
{
    struct etcd e;
    struct loop *l = loop_new();
    struct recorder r = {0};
    struct etcd_source *s = follow_then_go_away(&e, l, &r);
    double t0;
    etcd_delete(&e, "/svc/a");
    etcd_put(&e, "/svc/c", EP("10.0.0.3", 1));
    long long rev = etcd_put(&e, "/svc/c", EP("10.0.0.3", 4));
    char body[128];
    snprintf(body, sizeof body, "{\"revision\":\"%lld\",\"physical\":true}", rev);
    etcd_call(&e, "/v3/kv/compaction", body); /* the watcher's next revision is gone */
    etcd_restart(&e, true);
    double ms = wait_set(l, &r, "http://10.0.0.2:8080/api=1 http://10.0.0.3:8080/api=4", 20000);
    ck_assert_msg(ms >= 0, "after the compaction: \"%s\" (%s)", r.set, r.error);
    t0 = harness_now_ms();
    etcd_delete(&e, "/svc/b");
    assert_change(l, &r, "http://10.0.0.3:8080/api=4", "a delete after the fresh range", t0);
    etcd_source_free(s);
    loop_free(l);
}
END_TEST

START_TEST(authentication)
{
    struct etcd e;
    etcd_start(&e);
    etcd_put(&e, "/svc/a", EP("10.0.0.1", 1));
    etcd_call(&e, "/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"s3cret\"}");
    etcd_call(&e, "/v3/auth/role/add", "{\"name\":\"root\"}");
    etcd_call(&e, "/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}");
    etcd_call(&e, "/v3/auth/enable", "{}");
    struct loop *l = loop_new();
    struct recorder good = {0}, bad = {0}, none = {0};
    struct etcd_source *s = source(l, &e, "root", "s3cret", &good);
    struct etcd_source *sb = source(l, &e, "root", "wrong", &bad);
    struct etcd_source *sn = source(l, &e, NULL, NULL, &none);
    ck_assert_msg(wait_set(l, &good, "http://10.0.0.1:8080/api=1", 10000) >= 0, "\"%s\" (%s)",
                  good.set, good.error);
    ck_assert_msg(wait_errors(l, &bad, 1, 5000) >= 0, "a wrong password must fail");
    ck_assert_msg(wait_errors(l, &none, 1, 5000) >= 0, "no credentials must fail");
    printf("etcd: wrong password: %s\netcd: no credentials: %s\n", bad.error, none.error);
    ck_assert_int_eq(bad.good, 0);
    ck_assert_int_eq(none.good, 0);
    etcd_source_free(s);
    etcd_source_free(sb);
    etcd_source_free(sn);
    loop_free(l);
}
END_TEST

START_TEST(bad_configuration_is_refused)
{
    struct loop *l = loop_new();
    struct recorder r = {0};
    char err[256] = "";
    const char *eps[] = {"127.0.0.1:2379"};
    struct etcd_source_conf c = {.endpoints = eps, .n_endpoints = 1, .prefix = "/svc/"};
    ck_assert_ptr_null(etcd_source_new(l, &c, recorder_cb, &r, err, sizeof err));
    ck_assert_msg(strstr(err, "http://") != NULL, "%s", err);
    c.n_endpoints = 0;
    ck_assert_ptr_null(etcd_source_new(l, &c, recorder_cb, &r, err, sizeof err));
    loop_free(l);
}
END_TEST

/* A PUT that rewrites the value a key has changes nothing: it is not reported (each
 * report is a diff of the whole set on the loop). */
START_TEST(same_value_put_is_not_reported)
{
    struct etcd e;
    etcd_start(&e);
    etcd_put(&e, "/svc/a", EP("10.0.0.1", 2));
    struct loop *l = loop_new();
    struct recorder r = {0};
    struct etcd_source *s = source(l, &e, NULL, NULL, &r);
    ck_assert_msg(wait_set(l, &r, "http://10.0.0.1:8080/api=2", 10000) >= 0,
                  "first range: \"%s\" (%s)", r.set, r.error);
    run_for(l, 200); /* the watch is established */
    int good = r.good;
    double t0 = harness_now_ms();
    etcd_put(&e, "/svc/a", EP("10.0.0.1", 2));
    etcd_put(&e, "/svc/b", EP("10.0.0.2", 1)); /* events come in order: this one last */
    assert_change(l, &r, "http://10.0.0.1:8080/api=2 http://10.0.0.2:8080/api=1", "a put", t0);
    ck_assert_int_eq(r.good, good + 1);
    etcd_source_free(s);
    loop_free(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("etcd_watch");
    TCase *tc = harness_tcase(s, "etcd");
    tcase_add_test(tc, range_then_watch_puts_and_deletes);
    tcase_add_test(tc, killed_and_restarted_resumes_without_missing_a_change);
    tcase_add_test(tc, compaction_while_away_ranges_again);
    tcase_add_test(tc, authentication);
    tcase_add_test(tc, bad_configuration_is_refused);
    tcase_add_test(tc, same_value_put_is_not_reported);
    return sources_main(s, ETCD, "etcd-server");
}
