/*
 * check_pool_diff.c - unit tests of src/pool_diff.c (SPEC 4.6): a source's
 * new set against the pool (kept, reweighted, removed, added), static
 * endpoints staying, one URL from two sources, duplicates, and the
 * deterministic "service: +url -url" line.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_diff.h"

#define S POOL_SOURCE_STATIC
#define E POOL_SOURCE_ETCD
#define D POOL_SOURCE_DNS

static struct pool_member member(const char *url, int w_static, int w_etcd, int w_dns)
{
    struct pool_member m = {url, {w_static, w_etcd, w_dns}};
    return m;
}

START_TEST(test_source_names_and_weight)
{
    int w[POOL_SOURCES] = {0, 4, 2};
    enum pool_source shown = S;

    ck_assert_str_eq(pool_source_name(S), "static");
    ck_assert_str_eq(pool_source_name(E), "etcd");
    ck_assert_str_eq(pool_source_name(D), "dns");
    ck_assert_int_eq(pool_member_weight(w, &shown), 4);
    ck_assert_int_eq(shown, E);
    w[1] = 0;
    ck_assert_int_eq(pool_member_weight(w, &shown), 2);
    ck_assert_int_eq(shown, D);
    w[2] = 0;
    ck_assert_int_eq(pool_member_weight(w, NULL), 0);
}
END_TEST

START_TEST(test_kept_reweighted_removed_added)
{
    struct pool_member cur[] = {
        member("http://a:1", 0, 0, 1),
        member("http://b:1", 0, 0, 1),
        member("http://c:1", 0, 0, 1),
    };
    struct pool_found found[] = {
        {"http://d:1", 1}, {"http://b:1", 3}, {"http://a:1", 1}, {"http://0:1", 2}};
    struct pool_next next[3];
    int added[4];

    ck_assert_int_eq(pool_diff(cur, 3, D, found, 4, next, added), 2);
    ck_assert_int_eq(next[0].fate, POOL_KEPT);
    ck_assert_int_eq(next[0].weight, 1);
    ck_assert_int_eq(next[1].fate, POOL_REWEIGHTED);
    ck_assert_int_eq(next[1].weight, 3);
    ck_assert_int_eq(next[1].weight_by_source[D], 3);
    ck_assert_int_eq(next[2].fate, POOL_REMOVED);
    ck_assert_int_eq(next[2].weight, 0);
    ck_assert_int_eq(added[0], 0); /* found order */
    ck_assert_int_eq(added[1], 3);
}
END_TEST

START_TEST(test_static_always_stays)
{
    struct pool_member cur[] = {
        member("http://s:1", 2, 0, 0),
        member("http://sd:1", 3, 0, 5),
    };
    struct pool_next next[2];
    int added[1];

    /* DNS answers empty: the static-only member is untouched, the shared one stays too */
    ck_assert_int_eq(pool_diff(cur, 2, D, NULL, 0, next, added), 0);
    ck_assert_int_eq(next[0].fate, POOL_KEPT);
    ck_assert_int_eq(next[0].weight, 2);
    ck_assert_int_eq(next[0].shown, S);
    ck_assert_int_eq(next[1].fate, POOL_KEPT);
    ck_assert_int_eq(next[1].weight, 3);
    ck_assert_int_eq(next[1].shown, S);
    ck_assert_int_eq(next[1].weight_by_source[D], 0);
    ck_assert_int_eq(next[1].weight_by_source[S], 3);
}
END_TEST

START_TEST(test_static_weight_wins_over_discovery)
{
    struct pool_member cur[] = {member("http://s:1", 2, 0, 0)};
    struct pool_found found[] = {{"http://s:1", 7}};
    struct pool_next next[1];
    int added[1];

    ck_assert_int_eq(pool_diff(cur, 1, D, found, 1, next, added), 0);
    ck_assert_int_eq(next[0].fate, POOL_KEPT);
    ck_assert_int_eq(next[0].weight, 2);
    ck_assert_int_eq(next[0].shown, S);
    ck_assert_int_eq(next[0].weight_by_source[D], 7);
}
END_TEST

START_TEST(test_same_url_from_dns_and_etcd_is_one_endpoint)
{
    struct pool_member cur[] = {member("http://x:1", 0, 0, 1)};
    struct pool_found etcd[] = {{"http://x:1", 4}};
    struct pool_next next[1];
    int added[1];
    struct pool_member after;

    /* etcd lists it too: not added, shown as etcd with etcd's weight */
    ck_assert_int_eq(pool_diff(cur, 1, E, etcd, 1, next, added), 0);
    ck_assert_int_eq(next[0].fate, POOL_REWEIGHTED);
    ck_assert_int_eq(next[0].shown, E);
    ck_assert_int_eq(next[0].weight, 4);

    /* DNS drops it: it stays, still from etcd */
    after = cur[0];
    memcpy(after.weight_by_source, next[0].weight_by_source, sizeof(after.weight_by_source));
    ck_assert_int_eq(pool_diff(&after, 1, D, NULL, 0, next, added), 0);
    ck_assert_int_eq(next[0].fate, POOL_KEPT);
    ck_assert_int_eq(next[0].shown, E);

    /* then etcd drops it as well: removed */
    memcpy(after.weight_by_source, next[0].weight_by_source, sizeof(after.weight_by_source));
    ck_assert_int_eq(pool_diff(&after, 1, E, NULL, 0, next, added), 0);
    ck_assert_int_eq(next[0].fate, POOL_REMOVED);
}
END_TEST

START_TEST(test_etcd_drop_falls_back_to_dns_weight)
{
    struct pool_member cur[] = {member("http://x:1", 0, 4, 1)};
    struct pool_next next[1];
    int added[1];

    ck_assert_int_eq(pool_diff(cur, 1, E, NULL, 0, next, added), 0);
    ck_assert_int_eq(next[0].fate, POOL_REWEIGHTED);
    ck_assert_int_eq(next[0].weight, 1);
    ck_assert_int_eq(next[0].shown, D);
}
END_TEST

START_TEST(test_duplicates_and_weight_floor)
{
    struct pool_found found[] = {
        {"http://a:1", 2}, {"http://a:1", 5}, {"http://b:1", 0}, {"http://a:1", 1}};
    struct pool_member cur[] = {member("http://b:1", 0, 0, 3)};
    struct pool_next next[1];
    int added[4];

    ck_assert_int_eq(pool_found_weight(found, 4, "http://a:1"), 5);
    ck_assert_int_eq(pool_found_weight(found, 4, "http://b:1"), 1);
    ck_assert_int_eq(pool_found_weight(found, 4, "http://z:1"), 0);
    ck_assert_int_eq(pool_diff(cur, 1, D, found, 4, next, added), 1);
    ck_assert_int_eq(added[0], 0);
    ck_assert_int_eq(next[0].fate, POOL_REWEIGHTED);
    ck_assert_int_eq(next[0].weight, 1);
}
END_TEST

START_TEST(test_empty_answer_empties_the_source)
{
    struct pool_member cur[] = {member("http://a:1", 0, 0, 1), member("http://b:1", 0, 2, 0)};
    struct pool_next next[2];

    ck_assert_int_eq(pool_diff(cur, 2, D, NULL, 0, next, NULL), 0);
    ck_assert_int_eq(next[0].fate, POOL_REMOVED);
    ck_assert_int_eq(next[1].fate, POOL_KEPT); /* etcd's member is not DNS's to remove */
}
END_TEST

START_TEST(test_bad_arguments)
{
    struct pool_found found[] = {{NULL, 1}};
    struct pool_next next[1];
    int added[1];

    ck_assert_int_eq(pool_diff(NULL, 0, POOL_SOURCES, NULL, 0, NULL, NULL), -1);
    ck_assert_int_eq(pool_diff(NULL, 1, D, NULL, 0, next, added), -1);
    ck_assert_int_eq(pool_diff(NULL, 0, D, found, 1, next, added), -1);
    ck_assert_int_eq(pool_diff(NULL, 0, D, NULL, 0, NULL, NULL), 0);
}
END_TEST

START_TEST(test_describe_is_sorted_and_grouped)
{
    struct pool_member cur[] = {
        member("http://z:1", 0, 0, 1), member("http://m:1", 0, 0, 1), member("http://c:1", 0, 0, 1),
        member("http://b:1", 0, 0, 1), member("http://k:1", 0, 0, 1),
    };
    struct pool_found found[] = {
        {"http://y:1", 1}, {"http://k:1", 3}, {"http://a:1", 1}, {"http://b:1", 2}};
    struct pool_next next[5];
    int added[4], nadded;
    struct strbuf out = {0};

    nadded = pool_diff(cur, 5, D, found, 4, next, added);
    ck_assert_int_eq(nadded, 2);
    ck_assert_int_eq(pool_diff_describe(&out, "orders", cur, 5, next, found, added, nadded), 7);
    ck_assert_str_eq(out.s, "orders: +http://a:1 +http://y:1 -http://c:1 -http://m:1 -http://z:1 "
                            "~http://b:1=2 ~http://k:1=3");
    free(out.s);
}
END_TEST

START_TEST(test_describe_nothing_changed)
{
    struct pool_member cur[] = {member("http://a:1", 0, 0, 1)};
    struct pool_found found[] = {{"http://a:1", 1}};
    struct pool_next next[1];
    int added[1];
    struct strbuf out = {0};

    ck_assert_int_eq(pool_diff(cur, 1, D, found, 1, next, added), 0);
    ck_assert_int_eq(pool_diff_describe(&out, "orders", cur, 1, next, found, added, 0), 0);
    ck_assert_ptr_null(out.s);
}
END_TEST

/* Applying a set costs in proportion to its size: 20,000 endpoints against a pool of
 * 20,000 (half of them the same) made 300 million URL comparisons when each URL was
 * looked up by scanning (4 s on the loop); counting comparisons keeps this test
 * independent of the machine's speed. */
START_TEST(test_diff_cost_is_linear)
{
    enum { N = 20000 };
    struct pool_member *cur = calloc(N, sizeof *cur);
    struct pool_found *found = calloc(N, sizeof *found);
    struct pool_next *next = calloc(N, sizeof *next);
    int *added = calloc(N, sizeof *added);
    char (*urls)[32] = calloc(2 * N, sizeof *urls);

    ck_assert(cur && found && next && added && urls);
    for (int i = 0; i < 2 * N; i++)
        snprintf(urls[i], sizeof urls[i], "http://10.%d.%d.%d:80", i >> 16, (i >> 8) & 255,
                 i & 255);
    for (int i = 0; i < N; i++) {
        cur[i] = member(urls[i], 0, 0, 1);
        found[i].url = urls[N / 2 + i]; /* the second half of the pool, and N / 2 new */
        found[i].weight = 1;
    }
    unsigned long before = pool_diff_compares;
    ck_assert_int_eq(pool_diff(cur, N, D, found, N, next, added), N / 2);
    unsigned long compares = pool_diff_compares - before;
    ck_assert_int_eq(next[0].fate, POOL_REMOVED);
    ck_assert_int_eq(next[N - 1].fate, POOL_KEPT);
    ck_assert_int_eq(added[0], N / 2);
    ck_assert_msg(compares <= 8ul * N, "%lu comparisons for %d URLs against %d", compares, N,
                  N);
    free(cur);
    free(found);
    free(next);
    free(added);
    free(urls);
}
END_TEST

START_TEST(test_weighed_gives_the_larger_duplicate)
{
    struct pool_member cur[] = {member("http://a:1", 0, 0, 1)};
    struct pool_found found[] = {{"http://b:1", 2}, {"http://a:1", 1}, {"http://b:1", 7}};
    struct pool_next next[1];
    int added[3], weight[3];

    ck_assert_int_eq(pool_diff_weighed(cur, 1, D, found, 3, next, added, weight), 1);
    ck_assert_int_eq(added[0], 0);
    ck_assert_int_eq(weight[0], 7);
    ck_assert_int_eq(next[0].fate, POOL_KEPT);
}
END_TEST

static Suite *pool_diff_suite(void)
{
    Suite *s = suite_create("pool_diff");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_source_names_and_weight);
    tcase_add_test(tc, test_diff_cost_is_linear);
    tcase_add_test(tc, test_weighed_gives_the_larger_duplicate);
    tcase_add_test(tc, test_kept_reweighted_removed_added);
    tcase_add_test(tc, test_static_always_stays);
    tcase_add_test(tc, test_static_weight_wins_over_discovery);
    tcase_add_test(tc, test_same_url_from_dns_and_etcd_is_one_endpoint);
    tcase_add_test(tc, test_etcd_drop_falls_back_to_dns_weight);
    tcase_add_test(tc, test_duplicates_and_weight_floor);
    tcase_add_test(tc, test_empty_answer_empties_the_source);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_describe_is_sorted_and_grouped);
    tcase_add_test(tc, test_describe_nothing_changed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pool_diff_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
