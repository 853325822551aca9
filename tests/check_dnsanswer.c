/*
 * check_dnsanswer.c - unit tests of src/dnsanswer.c (SPEC 4.6): RFC 2782 SRV
 * selection (priorities, weights, a dead level falling through, duplicates),
 * endpoint URLs (IPv4, IPv6 in brackets, base paths, truncation) and the
 * refresh time taken from the answer's TTLs.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dnsanswer.h"

static const char *const addrs_a[] = {"10.0.0.1", "10.0.0.2"};
static const char *const addrs_b[] = {"10.0.0.3"};
static const char *const addrs_c[] = {"fd00::7"};

static struct dnsanswer_srv rec(int priority, int weight, int port, const char *target,
                                const char *const *addrs, int n)
{
    struct dnsanswer_srv r = {priority, weight, port, target, addrs, n};
    return r;
}

START_TEST(test_lowest_priority_wins)
{
    struct dnsanswer_srv recs[] = {
        rec(20, 5, 8080, "b.", addrs_b, 1),
        rec(10, 3, 8080, "a.", addrs_a, 2),
    };
    struct dnsanswer_endpoint out[4];
    int level = 0;

    ck_assert_int_eq(dnsanswer_srv_select(recs, 2, out, 4, &level), 2);
    ck_assert_int_eq(level, 10);
    ck_assert_str_eq(out[0].addr, "10.0.0.1");
    ck_assert_str_eq(out[1].addr, "10.0.0.2");
    ck_assert_int_eq(out[0].port, 8080);
    ck_assert_int_eq(out[0].weight, 3);
    ck_assert_int_eq(out[1].weight, 3);
}
END_TEST

START_TEST(test_same_level_all_targets_with_weights)
{
    struct dnsanswer_srv recs[] = {
        rec(10, 1, 8080, "a.", addrs_a, 2),
        rec(10, 4, 9090, "b.", addrs_b, 1),
        rec(11, 9, 8080, "c.", addrs_c, 1),
    };
    struct dnsanswer_endpoint out[4];

    ck_assert_int_eq(dnsanswer_srv_select(recs, 3, out, 4, NULL), 3);
    ck_assert_str_eq(out[2].addr, "10.0.0.3");
    ck_assert_int_eq(out[2].port, 9090);
    ck_assert_int_eq(out[2].weight, 4);
    ck_assert_int_eq(out[0].weight, 1);
}
END_TEST

START_TEST(test_weight_zero_counts_as_one)
{
    struct dnsanswer_srv recs[] = {rec(0, 0, 80, "b.", addrs_b, 1)};
    struct dnsanswer_endpoint out[1];

    ck_assert_int_eq(dnsanswer_srv_select(recs, 1, out, 1, NULL), 1);
    ck_assert_int_eq(out[0].weight, 1);
}
END_TEST

START_TEST(test_dead_level_falls_through)
{
    /* priority 1: no addresses, "." and port 0; priority 2 is used */
    struct dnsanswer_srv recs[] = {
        rec(1, 5, 8080, "dead.", NULL, 0), rec(1, 5, 8080, "empty.", addrs_a, 0),
        rec(1, 5, 8080, ".", addrs_a, 2),  rec(1, 5, 0, "noport.", addrs_a, 2),
        rec(2, 7, 8081, "c.", addrs_c, 1), rec(3, 7, 8082, "b.", addrs_b, 1),
    };
    struct dnsanswer_endpoint out[4];
    int level = 0;

    ck_assert_int_eq(dnsanswer_srv_select(recs, 6, out, 4, &level), 1);
    ck_assert_int_eq(level, 2);
    ck_assert_str_eq(out[0].addr, "fd00::7");
    ck_assert_int_eq(out[0].port, 8081);
    ck_assert_int_eq(out[0].weight, 7);
}
END_TEST

START_TEST(test_level_partly_dead_keeps_the_live_target)
{
    struct dnsanswer_srv recs[] = {
        rec(1, 5, 8080, "dead.", NULL, 0),
        rec(1, 2, 8080, "b.", addrs_b, 1),
        rec(2, 7, 8081, "c.", addrs_c, 1),
    };
    struct dnsanswer_endpoint out[4];

    ck_assert_int_eq(dnsanswer_srv_select(recs, 3, out, 4, NULL), 1);
    ck_assert_str_eq(out[0].addr, "10.0.0.3");
}
END_TEST

START_TEST(test_nothing_usable)
{
    struct dnsanswer_srv recs[] = {rec(1, 5, 8080, "dead.", NULL, 0)};
    struct dnsanswer_endpoint out[1];
    int level = 0;

    ck_assert_int_eq(dnsanswer_srv_select(recs, 1, out, 1, &level), 0);
    ck_assert_int_eq(level, -1);
    ck_assert_int_eq(dnsanswer_srv_select(NULL, 0, out, 1, &level), 0);
}
END_TEST

START_TEST(test_duplicate_address_port_merged)
{
    static const char *const one[] = {"10.0.0.3"};
    struct dnsanswer_srv recs[] = {
        rec(1, 2, 8080, "b.", addrs_b, 1),
        rec(1, 3, 8080, "b-alias.", one, 1),
        rec(1, 1, 9090, "b-other-port.", one, 1),
    };
    struct dnsanswer_endpoint out[4];

    ck_assert_int_eq(dnsanswer_srv_select(recs, 3, out, 4, NULL), 2);
    ck_assert_int_eq(out[0].weight, 5);
    ck_assert_int_eq(out[1].port, 9090);
}
END_TEST

START_TEST(test_out_too_small_reports_needed)
{
    struct dnsanswer_srv recs[] = {
        rec(1, 1, 80, "a.", addrs_a, 2),
        rec(1, 1, 80, "b.", addrs_b, 1),
    };
    struct dnsanswer_endpoint out[1];

    ck_assert_int_eq(dnsanswer_srv_select(recs, 2, out, 1, NULL), 3);
    ck_assert_str_eq(out[0].addr, "10.0.0.1");
    ck_assert_int_eq(dnsanswer_srv_select(recs, 2, NULL, 0, NULL), 3);
}
END_TEST

START_TEST(test_url_forms)
{
    char buf[128];

    ck_assert_int_eq(dnsanswer_url(buf, sizeof(buf), "http", "10.0.0.7", 8080, ""), 20);
    ck_assert_str_eq(buf, "http://10.0.0.7:8080");
    dnsanswer_url(buf, sizeof(buf), "http", "10.0.0.7", 8080, "/api");
    ck_assert_str_eq(buf, "http://10.0.0.7:8080/api");
    dnsanswer_url(buf, sizeof(buf), "https", "10.0.0.7", 443, "api/v1");
    ck_assert_str_eq(buf, "https://10.0.0.7:443/api/v1");
    dnsanswer_url(buf, sizeof(buf), "http", "fd00::7", 80, NULL);
    ck_assert_str_eq(buf, "http://[fd00::7]:80");
}
END_TEST

START_TEST(test_url_errors)
{
    char buf[20], big[21];

    ck_assert_int_eq(dnsanswer_url(buf, sizeof(buf), "http", "10.0.0.7", 8080, "/"), -1);
    ck_assert_int_eq(dnsanswer_url(buf, sizeof(buf), "http", "10.0.0.7", 8080, ""), -1);
    ck_assert_int_eq(dnsanswer_url(big, 21, "http", "10.0.0.7", 8080, ""), 20);
    ck_assert_int_eq(dnsanswer_url(buf, sizeof(buf), "http", "10.0.0.7", 0, ""), -1);
    ck_assert_int_eq(dnsanswer_url(buf, sizeof(buf), "http", "10.0.0.7", 65536, ""), -1);
    ck_assert_int_eq(dnsanswer_url(buf, sizeof(buf), "http", "", 80, ""), -1);
    ck_assert_int_eq(dnsanswer_url(buf, sizeof(buf), NULL, "a", 80, ""), -1);
}
END_TEST

START_TEST(test_refresh_from_ttl)
{
    uint32_t ttls[] = {30, 3, 60};
    uint32_t zero[] = {0};
    uint32_t long_ttl[] = {3600};

    ck_assert_int_eq(dnsanswer_next_refresh_ms(5000, ttls, 3), 3000);
    ck_assert_int_eq(dnsanswer_next_refresh_ms(2000, ttls, 3), 2000);
    ck_assert_int_eq(dnsanswer_next_refresh_ms(5000, long_ttl, 1), 5000);
    ck_assert_int_eq(dnsanswer_next_refresh_ms(5000, zero, 1), 1000);
    ck_assert_int_eq(dnsanswer_next_refresh_ms(200, NULL, 0), 1000);
    ck_assert_int_eq(dnsanswer_next_refresh_ms(5000, NULL, 0), 5000);
}
END_TEST

static Suite *dnsanswer_suite(void)
{
    Suite *s = suite_create("dnsanswer");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_lowest_priority_wins);
    tcase_add_test(tc, test_same_level_all_targets_with_weights);
    tcase_add_test(tc, test_weight_zero_counts_as_one);
    tcase_add_test(tc, test_dead_level_falls_through);
    tcase_add_test(tc, test_level_partly_dead_keeps_the_live_target);
    tcase_add_test(tc, test_nothing_usable);
    tcase_add_test(tc, test_duplicate_address_port_merged);
    tcase_add_test(tc, test_out_too_small_reports_needed);
    tcase_add_test(tc, test_url_forms);
    tcase_add_test(tc, test_url_errors);
    tcase_add_test(tc, test_refresh_from_ttl);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dnsanswer_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
