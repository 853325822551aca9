/*
 * check_units.c - the value syntaxes of SPEC 2.2 (units.c): durations,
 * sizes, booleans, integers and log level names, including every rejection
 * (signs, junk, spaces, overflow).
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "units.h"

static int64_t dur(const char *s)
{
    int64_t ms = -12345;
    ck_assert_msg(units_parse_duration(s, &ms) == 0, "duration '%s' rejected", s);
    return ms;
}

static void dur_bad(const char *s)
{
    int64_t ms = -12345;
    ck_assert_msg(units_parse_duration(s, &ms) == -1, "duration '%s' accepted", s);
    ck_assert_int_eq(ms, -12345); /* untouched on error */
}

START_TEST(duration_units)
{
    ck_assert_int_eq(dur("250ms"), 250);
    ck_assert_int_eq(dur("1s"), 1000);
    ck_assert_int_eq(dur("30"), 30000); /* bare number = seconds */
    ck_assert_int_eq(dur("2m"), 120000);
    ck_assert_int_eq(dur("1h"), 3600000);
    ck_assert_int_eq(dur("0"), 0);
    ck_assert_int_eq(dur("0ms"), 0);
    ck_assert_int_eq(dur("0s"), 0);
    ck_assert_int_eq(dur("007s"), 7000);
}
END_TEST

START_TEST(duration_fractions)
{
    ck_assert_int_eq(dur("1.5s"), 1500);
    ck_assert_int_eq(dur("0.25"), 250);
    ck_assert_int_eq(dur("0.5m"), 30000);
    ck_assert_int_eq(dur("1.5h"), 5400000);
    ck_assert_int_eq(dur("0.001s"), 1);
    ck_assert_int_eq(dur("1.5ms"), 2); /* rounded half up to whole ms */
    ck_assert_int_eq(dur("1.4ms"), 1);
    ck_assert_int_eq(dur("0.0004s"), 0); /* below a millisecond */
    ck_assert_int_eq(dur("0.0005s"), 1);
    ck_assert_int_eq(dur("2.1234567891234s"), 2123); /* long fractions are fine */
}
END_TEST

START_TEST(duration_rejects)
{
    static const char *const bad[] = {
        "",     "s",     "ms",    "-1",   "-1s", "+1s", " 1s",    "1s ", "1 s", "1.s",
        ".5s",  "1..5s", "1.5.s", "1sec", "1S",  "1MS", "1d",     "1w",  "abc", "1e3",
        "0x10", "1,5s",  "1s1",   "10us", "1ns", "ms1", "1.5e2s", "\t1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        dur_bad(bad[i]);
    int64_t ms;
    ck_assert_int_eq(units_parse_duration(NULL, &ms), -1);
}
END_TEST

START_TEST(duration_overflow)
{
    /* the ceiling is 10^12 ms (about 31.7 years) */
    ck_assert_int_eq(dur("1000000000000ms"), INT64_C(1000000000000));
    ck_assert_int_eq(dur("1000000000s"), INT64_C(1000000000000));
    dur_bad("1000000000001ms");
    dur_bad("1000000000.001s");
    dur_bad("277778h");
    ck_assert_int_eq(dur("277777h"), INT64_C(277777) * 3600000);
    dur_bad("9223372036854775807");
    dur_bad("9223372036854775808ms");
    dur_bad("99999999999999999999999999999s");
}
END_TEST

static uint64_t size(const char *s)
{
    uint64_t v = 4242;
    ck_assert_msg(units_parse_size(s, &v) == 0, "size '%s' rejected", s);
    return v;
}

static void size_bad(const char *s)
{
    uint64_t v = 4242;
    ck_assert_msg(units_parse_size(s, &v) == -1, "size '%s' accepted", s);
    ck_assert_uint_eq(v, 4242);
}

START_TEST(size_units)
{
    ck_assert_uint_eq(size("0"), 0);
    ck_assert_uint_eq(size("1024"), 1024);
    ck_assert_uint_eq(size("512B"), 512);
    ck_assert_uint_eq(size("512b"), 512);
    ck_assert_uint_eq(size("32KiB"), 32768);
    ck_assert_uint_eq(size("32kib"), 32768);
    ck_assert_uint_eq(size("32k"), 32768);
    ck_assert_uint_eq(size("32K"), 32768);
    ck_assert_uint_eq(size("32KB"), 32768); /* binary, as nginx reads it */
    ck_assert_uint_eq(size("32kb"), 32768);
    ck_assert_uint_eq(size("8MiB"), 8u << 20);
    ck_assert_uint_eq(size("8M"), 8u << 20);
    ck_assert_uint_eq(size("8m"), 8u << 20);
    ck_assert_uint_eq(size("8MB"), 8u << 20);
    ck_assert_uint_eq(size("8mIb"), 8u << 20);
    ck_assert_uint_eq(size("2GiB"), UINT64_C(2) << 30);
    ck_assert_uint_eq(size("2G"), UINT64_C(2) << 30);
    ck_assert_uint_eq(size("2gb"), UINT64_C(2) << 30);
}
END_TEST

START_TEST(size_rejects)
{
    static const char *const bad[] = {
        "",   "B",     "KiB", "-1",    "+1",  " 1",  "1 KiB", "1KiB ", "1.5MiB", "1TB",
        "1T", "1KiBB", "1Ki", "1kbit", "abc", "1e3", "0x10",  "1_000", "1,024",  "1bytes",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        size_bad(bad[i]);
    uint64_t v;
    ck_assert_int_eq(units_parse_size(NULL, &v), -1);
}
END_TEST

START_TEST(size_overflow)
{
    ck_assert_uint_eq(size("18446744073709551615"), UINT64_MAX);
    size_bad("18446744073709551616");
    ck_assert_uint_eq(size("17179869183G"), UINT64_C(17179869183) << 30);
    size_bad("17179869184G");
    ck_assert_uint_eq(size("17592186044415M"), UINT64_C(17592186044415) << 20);
    size_bad("17592186044416M");
    ck_assert_uint_eq(size("18014398509481983k"), UINT64_C(18014398509481983) << 10);
    size_bad("18014398509481984k");
}
END_TEST

START_TEST(bools)
{
    static const char *const yes[] = {"true", "TRUE", "True", "yes", "YES", "on", "On"};
    static const char *const no[] = {"false", "FALSE", "no", "No", "off", "OFF"};
    static const char *const bad[] = {"",  "1",   "0",       "y",     "n",     "t",
                                      "f", "tru", "enabled", " true", "true ", "nope"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        bool b = false;
        ck_assert_int_eq(units_parse_bool(yes[i], &b), 0);
        ck_assert(b);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        bool b = true;
        ck_assert_int_eq(units_parse_bool(no[i], &b), 0);
        ck_assert(!b);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool b = true;
        ck_assert_msg(units_parse_bool(bad[i], &b) == -1, "'%s' accepted", bad[i]);
        ck_assert(b);
    }
    bool b;
    ck_assert_int_eq(units_parse_bool(NULL, &b), -1);
}
END_TEST

START_TEST(ints)
{
    int64_t v = -1;
    ck_assert_int_eq(units_parse_int("0", 0, 10, &v), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(units_parse_int("10", 0, 10, &v), 0);
    ck_assert_int_eq(v, 10);
    ck_assert_int_eq(units_parse_int("042", 0, 100, &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(units_parse_int("9223372036854775807", 0, INT64_MAX, &v), 0);
    ck_assert_int_eq(v, INT64_MAX);

    v = 77;
    ck_assert_int_eq(units_parse_int("11", 0, 10, &v), -1);  /* above max */
    ck_assert_int_eq(units_parse_int("0", 1, 10, &v), -1);   /* below min */
    ck_assert_int_eq(units_parse_int("-1", -5, 10, &v), -1); /* no sign */
    ck_assert_int_eq(units_parse_int("+1", 0, 10, &v), -1);
    ck_assert_int_eq(units_parse_int("", 0, 10, &v), -1);
    ck_assert_int_eq(units_parse_int("1a", 0, 10, &v), -1);
    ck_assert_int_eq(units_parse_int(" 1", 0, 10, &v), -1);
    ck_assert_int_eq(units_parse_int("1 ", 0, 10, &v), -1);
    ck_assert_int_eq(units_parse_int("1.0", 0, 10, &v), -1);
    ck_assert_int_eq(units_parse_int("9223372036854775808", 0, INT64_MAX, &v), -1);
    ck_assert_int_eq(units_parse_int("99999999999999999999", 0, INT64_MAX, &v), -1);
    ck_assert_int_eq(units_parse_int(NULL, 0, 10, &v), -1);
    ck_assert_int_eq(v, 77);
}
END_TEST

START_TEST(level_names)
{
    ck_assert_str_eq(log_level_name(LOG_LEVEL_ERROR), "error");
    ck_assert_str_eq(log_level_name(LOG_LEVEL_WARN), "warn");
    ck_assert_str_eq(log_level_name(LOG_LEVEL_INFO), "info");
    ck_assert_str_eq(log_level_name(LOG_LEVEL_DEBUG), "debug");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("units");
    TCase *tc = tcase_create("units");
    tcase_add_test(tc, duration_units);
    tcase_add_test(tc, duration_fractions);
    tcase_add_test(tc, duration_rejects);
    tcase_add_test(tc, duration_overflow);
    tcase_add_test(tc, size_units);
    tcase_add_test(tc, size_rejects);
    tcase_add_test(tc, size_overflow);
    tcase_add_test(tc, bools);
    tcase_add_test(tc, ints);
    tcase_add_test(tc, level_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
