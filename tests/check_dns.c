/*
 * check_dns.c - DNS discovery against a real dnsmasq started on 127.0.0.1 and a
 * free port: A, AAAA and SRV answers reach the source's callback, changes (hosts
 * file re-read on SIGHUP) within the refresh interval, RFC 2782 priorities and
 * weights with a dead level falling through, NXDOMAIN as an empty good set, and a
 * stopped server as an error with the set coming back when it returns.
 *
 * The source runs in this process on its own loop (no daemon); dnsmasq is killed
 * at teardown even when a test fails (harness registration, PDEATHSIG).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discovery.h"
#include "harness.h"
#include "loop.h"
#include "sources.h"

#define REFRESH_MS 1000
/* A change is seen at the next refresh (1 s) plus a lookup; the rest is margin for a
 * loaded machine. */
#define CHANGE_BOUND_MS 2500

static struct dns_source *source(struct loop *l, const struct dnsmasq *d, const char *name,
                                 enum dns_record_type type, struct recorder *r)
{
    char server[64], err[256];
    snprintf(server, sizeof server, "127.0.0.1:%d", d->port);
    struct dns_source_conf c = {.name = name,
                                .type = type,
                                .port = 8080,
                                .scheme = "http",
                                .base_path = "api",
                                .refresh_ms = REFRESH_MS,
                                .server = server};
    struct dns_source *s = dns_source_new(l, &c, recorder_cb, r, err, sizeof err);
    ck_assert_msg(s != NULL, "dns_source_new: %s", err);
    return s;
}

static void assert_change(struct loop *l, struct recorder *r, const char *want, const char *what,
                          double t0)
{
    assert_set_within(l, r, want, what, t0, CHANGE_BOUND_MS, "dns");
}

START_TEST(a_records_follow_changes)
{
    struct dnsmasq d;
    dnsmasq_start(&d, "", "127.0.0.11 svc.test\n127.0.0.12 svc.test\n");
    struct loop *l = loop_new();
    struct recorder r = {0};
    struct dns_source *s = source(l, &d, "svc.test", DNS_TYPE_A, &r);
    double t0;

    ck_assert_msg(
        wait_set(l, &r, "http://127.0.0.11:8080/api=1 http://127.0.0.12:8080/api=1", 5000) >= 0,
        "first answer: \"%s\" (%s)", r.set, r.error);
    t0 = harness_now_ms();
    dnsmasq_hosts(&d, "127.0.0.12 svc.test\n127.0.0.13 svc.test\n");
    assert_change(l, &r, "http://127.0.0.12:8080/api=1 http://127.0.0.13:8080/api=1",
                  "an A record added and one removed", t0);
    t0 = harness_now_ms();
    dnsmasq_hosts(&d, "127.0.0.14 svc.test\n127.0.0.13 svc.test\n");
    assert_change(l, &r, "http://127.0.0.13:8080/api=1 http://127.0.0.14:8080/api=1",
                  "an A record changed", t0);
    int empty_before = r.empty_good;
    t0 = harness_now_ms();
    dnsmasq_hosts(&d, "127.0.0.13 other.test\n");
    assert_change(l, &r, "", "the name gone (NXDOMAIN)", t0);
    ck_assert_int_gt(r.empty_good, empty_before);
    ck_assert_msg(r.errors == 0, "no lookup may fail here: %s", r.error);
    dns_source_free(s);
    loop_free(l);
}
END_TEST

START_TEST(nxdomain_is_an_empty_good_answer)
{
    struct dnsmasq d;
    dnsmasq_start(&d, "", "127.0.0.11 svc.test\n");
    struct loop *l = loop_new();
    struct recorder r = {0};
    struct dns_source *s = source(l, &d, "none.test", DNS_TYPE_A, &r);
    struct recorder r6 = {0};
    struct dns_source *s6 = source(l, &d, "svc.test", DNS_TYPE_AAAA, &r6); /* no AAAA */

    ck_assert_msg(wait_good(l, &r, 2, 5000) >= 0, "answers: %d good, %d errors (%s)", r.good,
                  r.errors, r.error);
    ck_assert_msg(wait_good(l, &r6, 1, 5000) >= 0, "AAAA: %s", r6.error);
    ck_assert_int_eq(r.empty_good, r.good);
    ck_assert_int_eq(r.errors, 0);
    ck_assert_str_eq(r.set, "");
    ck_assert_int_eq(r6.empty_good, r6.good);
    ck_assert_int_eq(r6.errors, 0);
    dns_source_free(s);
    dns_source_free(s6);
    loop_free(l);
}
END_TEST

START_TEST(srv_priorities_weights_and_a_dead_level)
{
    struct dnsmasq d;
    /* priority 10 names a target with no address: the level is dead, 20 is used */
    dnsmasq_start(&d,
                  "srv-host=_http._tcp.svc.test,dead.test,8000,10,1\n"
                  "srv-host=_http._tcp.svc.test,t1.test,8001,20,5\n"
                  "srv-host=_http._tcp.svc.test,t2.test,8002,20,10\n"
                  "srv-host=_http._tcp.svc.test,t3.test,8003,20,0\n"
                  "host-record=t1.test,127.0.0.21\n"
                  "host-record=t2.test,127.0.0.22,fd00::22\n"
                  "host-record=t3.test,127.0.0.23\n"
                  "host-record=v6.test,fd00::7\n",
                  "");
    struct loop *l = loop_new();
    struct recorder r = {0}, r6 = {0};
    struct dns_source *s = source(l, &d, "_http._tcp.svc.test", DNS_TYPE_SRV, &r);
    struct dns_source *s6 = source(l, &d, "v6.test", DNS_TYPE_AAAA, &r6);
    double t0;

    /* weights: the record's, 0 counting as 1; each address of a target gets it */
    ck_assert_msg(wait_set(l, &r,
                           "http://127.0.0.21:8001/api=5 http://127.0.0.22:8002/api=10 "
                           "http://127.0.0.23:8003/api=1 http://[fd00::22]:8002/api=10",
                           5000) >= 0,
                  "SRV: \"%s\" (%s)", r.set, r.error);
    ck_assert_msg(wait_set(l, &r6, "http://[fd00::7]:8080/api=1", 5000) >= 0, "AAAA: \"%s\"",
                  r6.set);
    /* the preferred level comes alive: only it is used */
    t0 = harness_now_ms();
    dnsmasq_hosts(&d, "127.0.0.20 dead.test\n");
    assert_change(l, &r, "http://127.0.0.20:8000/api=1", "an SRV level coming alive", t0);
    /* and dies again: the next level is back */
    t0 = harness_now_ms();
    dnsmasq_hosts(&d, "");
    assert_change(l, &r,
                  "http://127.0.0.21:8001/api=5 http://127.0.0.22:8002/api=10 "
                  "http://127.0.0.23:8003/api=1 http://[fd00::22]:8002/api=10",
                  "an SRV level dying", t0);
    ck_assert_msg(r.errors == 0, "no lookup may fail here: %s", r.error);
    dns_source_free(s);
    dns_source_free(s6);
    loop_free(l);
}
END_TEST

START_TEST(server_stopped_keeps_reporting_errors_then_recovers)
{
    struct dnsmasq d;
    dnsmasq_start(&d, "", "127.0.0.11 svc.test\n");
    struct loop *l = loop_new();
    struct recorder r = {0};
    struct dns_source *s = source(l, &d, "svc.test", DNS_TYPE_A, &r);
    const char *want = "http://127.0.0.11:8080/api=1";

    ck_assert_msg(wait_set(l, &r, want, 5000) >= 0, "first answer: \"%s\"", r.set);
    int good = r.good, empty = r.empty_good;
    proc_kill(&d.p);
    ck_assert_msg(wait_errors(l, &r, 2, 10000) >= 0, "no error reported with dnsmasq stopped");
    ck_assert_msg(strstr(r.error, "svc.test") != NULL, "error names the lookup: %s", r.error);
    printf("dns: with the server stopped: %s\n", r.error);
    /* an error is never an empty set: the caller keeps the last good one */
    ck_assert_int_eq(r.empty_good, empty);
    ck_assert_str_eq(r.set, want);
    int good_down = r.good;
    ck_assert_int_le(good_down, good + 1); /* at most a refresh that raced the kill */

    dnsmasq_run(&d);
    double back = wait_good(l, &r, good_down + 1, 10000);
    ck_assert_msg(back >= 0, "no good answer after dnsmasq came back (%s)", r.error);
    printf("dns: the set came back %.0f ms after the server did\n", back);
    ck_assert_str_eq(r.set, want);
    dns_source_free(s);
    loop_free(l);
}
END_TEST

START_TEST(bad_configuration_is_refused)
{
    struct loop *l = loop_new();
    struct recorder r = {0};
    char err[256] = "";
    struct dns_source_conf c = {.name = "svc.test", .type = DNS_TYPE_A, .port = 0};
    ck_assert_ptr_null(dns_source_new(l, &c, recorder_cb, &r, err, sizeof err));
    ck_assert_msg(strstr(err, "port") != NULL, "%s", err);
    c.port = 80;
    c.server = "not a server";
    ck_assert_ptr_null(dns_source_new(l, &c, recorder_cb, &r, err, sizeof err));
    ck_assert_msg(strstr(err, "server") != NULL, "%s", err);
    loop_free(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dns");
    TCase *tc = harness_tcase(s, "dnsmasq");
    tcase_add_test(tc, a_records_follow_changes);
    tcase_add_test(tc, nxdomain_is_an_empty_good_answer);
    tcase_add_test(tc, srv_priorities_weights_and_a_dead_level);
    tcase_add_test(tc, server_stopped_keeps_reporting_errors_then_recovers);
    tcase_add_test(tc, bad_configuration_is_refused);
    return sources_main(s, DNSMASQ, "dnsmasq-base");
}
