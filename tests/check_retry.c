/*
 * check_retry.c - unit tests of the retry policy (src/retry.c; SPEC 4.1 step 5,
 * 4.3, 4.4).
 *
 * Backoff schedules (exact without jitter, bounds and means with it, fixed
 * seeds), retry-on matching, the method rule for every method and outcome,
 * Retry-After in all its forms, the deadline check, the budget window and the
 * order in which retry_decide() applies its checks. Time is a plain integer.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "rng.h"

#define SEED UINT64_C(0x1234567890abcdef)
#define NOW_1994 INT64_C(784111777)  /* Sun, 06 Nov 1994 08:49:37 GMT */
#define NOW_2023 INT64_C(1700000000) /* Tue, 14 Nov 2023 22:13:20 GMT */

static struct outcome status(int code)
{
    struct outcome o = {.kind = OUTCOME_STATUS, .status = code};
    return o;
}

static struct outcome kind(enum outcome_kind k)
{
    struct outcome o = {.kind = k};
    return o;
}

/* A retry input for attempt 1 of 3, no deadline, no Retry-After. */
static struct retry_input input(const char *method, struct outcome o)
{
    struct retry_input in;

    memset(&in, 0, sizeof(in));
    in.outcome = o;
    in.attempt = 1;
    in.max_attempts = 3;
    in.method = method;
    in.now_ms = 1000;
    in.now_unix_s = NOW_1994;
    return in;
}

/* ---- policy and matching ------------------------------------------------------ */

START_TEST(test_defaults)
{
    struct retry_policy p;

    memset(&p, 0xff, sizeof(p));
    retry_policy_defaults(&p);
    ck_assert_int_eq(p.max_attempts, 3);
    ck_assert_int_eq(p.base_delay_ms, 1000);
    ck_assert_int_eq(p.max_delay_ms, 30000);
    ck_assert_int_eq(p.jitter, JITTER_NONE);
    ck_assert_uint_eq(p.retry_on, RETRY_ON_CONNECT_FAILURE | RETRY_ON_RESET | RETRY_ON_TIMEOUT);
    for (int s = 0; s < RETRY_STATUS_WORDS * 64; s++) {
        bool expect = s == 429 || s == 502 || s == 503 || s == 504;
        ck_assert_msg(retry_policy_has_status(&p, s) == expect, "status %d", s);
    }
    ck_assert(!p.retry_non_idempotent);
    ck_assert(p.honor_retry_after);
    ck_assert(!p.budget_enabled);
}
END_TEST

START_TEST(test_status_bitset_bounds)
{
    struct retry_policy p;

    memset(&p, 0, sizeof(p));
    retry_policy_add_status(&p, -1);
    retry_policy_add_status(&p, 640);
    retry_policy_add_status(&p, 100000);
    for (int w = 0; w < RETRY_STATUS_WORDS; w++)
        ck_assert(p.retry_on_status[w] == 0);
    retry_policy_add_status(&p, 0);
    retry_policy_add_status(&p, 639);
    ck_assert(retry_policy_has_status(&p, 0));
    ck_assert(retry_policy_has_status(&p, 639));
    ck_assert(!retry_policy_has_status(&p, 640));
    ck_assert(!retry_policy_has_status(&p, -1));
    ck_assert(!retry_policy_has_status(&p, 1));
}
END_TEST

START_TEST(test_matches_flags)
{
    struct retry_policy p;
    struct outcome cf = kind(OUTCOME_CONNECT_FAILURE), rs = kind(OUTCOME_RESET),
                   to = kind(OUTCOME_TIMEOUT);

    memset(&p, 0, sizeof(p));
    ck_assert(!retry_outcome_matches(&p, &cf));
    ck_assert(!retry_outcome_matches(&p, &rs));
    ck_assert(!retry_outcome_matches(&p, &to));
    p.retry_on = RETRY_ON_CONNECT_FAILURE;
    ck_assert(retry_outcome_matches(&p, &cf));
    ck_assert(!retry_outcome_matches(&p, &rs));
    ck_assert(!retry_outcome_matches(&p, &to));
    p.retry_on = RETRY_ON_RESET;
    ck_assert(!retry_outcome_matches(&p, &cf));
    ck_assert(retry_outcome_matches(&p, &rs));
    ck_assert(!retry_outcome_matches(&p, &to));
    p.retry_on = RETRY_ON_TIMEOUT;
    ck_assert(!retry_outcome_matches(&p, &cf));
    ck_assert(!retry_outcome_matches(&p, &rs));
    ck_assert(retry_outcome_matches(&p, &to));
}
END_TEST

START_TEST(test_matches_statuses)
{
    struct retry_policy p;

    memset(&p, 0, sizeof(p));
    p.retry_on = RETRY_ON_5XX;
    for (int s = 100; s < 640; s++) {
        struct outcome o = status(s);
        ck_assert_msg(retry_outcome_matches(&p, &o) == (s >= 500 && s <= 599), "5xx %d", s);
    }
    p.retry_on = RETRY_ON_GATEWAY_ERROR;
    for (int s = 100; s < 640; s++) {
        struct outcome o = status(s);
        ck_assert_msg(retry_outcome_matches(&p, &o) == (s >= 502 && s <= 504), "gw %d", s);
    }
    p.retry_on = 0;
    retry_policy_add_status(&p, 429);
    retry_policy_add_status(&p, 418);
    for (int s = 100; s < 640; s++) {
        struct outcome o = status(s);
        ck_assert_msg(retry_outcome_matches(&p, &o) == (s == 429 || s == 418), "code %d", s);
    }
    /* a status flag does not make transport outcomes match */
    p.retry_on = RETRY_ON_5XX | RETRY_ON_GATEWAY_ERROR;
    {
        struct outcome o = kind(OUTCOME_RESET);
        ck_assert(!retry_outcome_matches(&p, &o));
    }
}
END_TEST

START_TEST(test_matches_never)
{
    struct retry_policy p;
    struct outcome big = kind(OUTCOME_RESPONSE_TOO_LARGE), gone = kind(OUTCOME_CANCELLED);

    memset(&p, 0, sizeof(p)); /* every flag, every status */
    p.retry_on = RETRY_ON_CONNECT_FAILURE | RETRY_ON_RESET | RETRY_ON_TIMEOUT | RETRY_ON_5XX |
                 RETRY_ON_GATEWAY_ERROR;
    for (int w = 0; w < RETRY_STATUS_WORDS; w++)
        p.retry_on_status[w] = UINT64_MAX;
    ck_assert(!retry_outcome_matches(&p, &big));
    ck_assert(!retry_outcome_matches(&p, &gone));
    big.status = 503;
    gone.status = 503;
    ck_assert(!retry_outcome_matches(&p, &big));
    ck_assert(!retry_outcome_matches(&p, &gone));
}
END_TEST

START_TEST(test_idempotent_methods)
{
    const char *yes[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    const char *no[] = {"POST",     "PATCH", "CONNECT", "get", "Get", "put",
                        "PROPFIND", "GETX",  "GE",      "",    " GET"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        ck_assert_msg(retry_method_is_idempotent(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        ck_assert_msg(!retry_method_is_idempotent(no[i]), "%s", no[i]);
    ck_assert(!retry_method_is_idempotent(NULL));
}
END_TEST

/* ---- random numbers ---------------------------------------------------------- */

START_TEST(test_rng)
{
    uint64_t s = 1, a = SEED, b = SEED, z = 0;
    int counts[3] = {0, 0, 0};

    /* xorshift64* reference value for state 1 */
    ck_assert(rng_next(&s) == UINT64_C(5180492295206395165));
    ck_assert(s == UINT64_C(0x2000001));
    for (int i = 0; i < 100; i++)
        ck_assert(rng_next(&a) == rng_next(&b));
    /* a zero state does not stick at zero */
    ck_assert(rng_next(&z) != 0);
    ck_assert(z != 0);

    ck_assert(rng_below(&a, 0) == 0);
    ck_assert(rng_below(&a, 1) == 0);
    for (int i = 0; i < 30000; i++) {
        uint64_t r = rng_below(&a, 3);
        ck_assert(r < 3);
        counts[r]++;
    }
    for (int i = 0; i < 3; i++)
        ck_assert_msg(counts[i] > 9500 && counts[i] < 10500, "bucket %d: %d", i, counts[i]);
    /* huge n: still in range */
    for (int i = 0; i < 1000; i++)
        ck_assert(rng_below(&a, UINT64_C(0x8000000000000001)) < UINT64_C(0x8000000000000001));
}
END_TEST

/* ---- backoff ------------------------------------------------------------------- */

START_TEST(test_backoff_none_schedule)
{
    struct retry_policy p;
    uint64_t rng = SEED, before;
    const int64_t expect[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000};

    retry_policy_defaults(&p);
    for (int k = 1; k <= 7; k++)
        ck_assert_int_eq(retry_backoff_ms(&p, k, &rng), expect[k - 1]);
    ck_assert_int_eq(retry_backoff_ms(&p, 64, &rng), 30000);
    ck_assert_int_eq(retry_backoff_ms(&p, 1000, &rng), 30000);
    ck_assert_int_eq(retry_backoff_ms(&p, 2147483647, &rng), 30000);
    /* no jitter draws no random numbers */
    before = rng;
    (void)retry_backoff_ms(&p, 3, &rng);
    ck_assert(rng == before);

    p.base_delay_ms = 200;
    p.max_delay_ms = 1000;
    ck_assert_int_eq(retry_backoff_ms(&p, 1, &rng), 200);
    ck_assert_int_eq(retry_backoff_ms(&p, 2, &rng), 400);
    ck_assert_int_eq(retry_backoff_ms(&p, 3, &rng), 800);
    ck_assert_int_eq(retry_backoff_ms(&p, 4, &rng), 1000);

    /* base above max: capped from the first retry */
    p.base_delay_ms = 5000;
    p.max_delay_ms = 3000;
    ck_assert_int_eq(retry_backoff_ms(&p, 1, &rng), 3000);

    /* no overflow near the top of int64 */
    p.base_delay_ms = INT64_MAX / 2 + 1;
    p.max_delay_ms = INT64_MAX;
    ck_assert_int_eq(retry_backoff_ms(&p, 1, &rng), INT64_MAX / 2 + 1);
    ck_assert_int_eq(retry_backoff_ms(&p, 2, &rng), INT64_MAX);
    ck_assert_int_eq(retry_backoff_ms(&p, 80, &rng), INT64_MAX);
}
END_TEST

START_TEST(test_backoff_full_jitter)
{
    struct retry_policy p;
    uint64_t rng = SEED;
    int64_t lo = INT64_MAX, hi = -1, sum = 0;
    const int n = 100000;

    retry_policy_defaults(&p);
    p.jitter = JITTER_FULL;
    for (int i = 0; i < n; i++) {
        int64_t d = retry_backoff_ms(&p, 3, &rng); /* d = 4000 */
        ck_assert(d >= 0 && d <= 4000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        sum += d;
    }
    ck_assert_int_lt(lo, 20);
    ck_assert_int_gt(hi, 3980);
    ck_assert_msg(sum / n > 1960 && sum / n < 2040, "mean %lld", (long long)(sum / n));
    /* capped values are jittered too */
    for (int i = 0; i < 1000; i++) {
        int64_t d = retry_backoff_ms(&p, 50, &rng);
        ck_assert(d >= 0 && d <= 30000);
    }
    /* both ends are reachable: d = 2 -> {0, 1, 2} */
    p.base_delay_ms = 2;
    {
        bool seen[3] = {false, false, false};
        for (int i = 0; i < 1000; i++) {
            int64_t d = retry_backoff_ms(&p, 1, &rng);
            ck_assert(d >= 0 && d <= 2);
            seen[d] = true;
        }
        ck_assert(seen[0] && seen[1] && seen[2]);
    }
}
END_TEST

START_TEST(test_backoff_equal_jitter)
{
    struct retry_policy p;
    uint64_t rng = SEED;
    int64_t lo = INT64_MAX, hi = -1, sum = 0;
    const int n = 100000;
    bool seen[4] = {false, false, false, false};

    retry_policy_defaults(&p);
    p.jitter = JITTER_EQUAL;
    for (int i = 0; i < n; i++) {
        int64_t d = retry_backoff_ms(&p, 3, &rng); /* 2000 + [0, 2000] */
        ck_assert(d >= 2000 && d <= 4000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        sum += d;
    }
    ck_assert_int_lt(lo, 2020);
    ck_assert_int_gt(hi, 3980);
    ck_assert_msg(sum / n > 2960 && sum / n < 3040, "mean %lld", (long long)(sum / n));

    /* an odd d: 3 -> [1, 3], never above d */
    p.base_delay_ms = 3;
    for (int i = 0; i < 1000; i++) {
        int64_t d = retry_backoff_ms(&p, 1, &rng);
        ck_assert(d >= 1 && d <= 3);
        seen[d] = true;
    }
    ck_assert(seen[1] && seen[2] && seen[3]);
}
END_TEST

/* ---- Retry-After --------------------------------------------------------------- */

START_TEST(test_retry_after_seconds)
{
    ck_assert_int_eq(retry_parse_retry_after("120", NOW_1994), 120000);
    ck_assert_int_eq(retry_parse_retry_after("0", NOW_1994), 0);
    ck_assert_int_eq(retry_parse_retry_after("007", NOW_1994), 7000);
    ck_assert_int_eq(retry_parse_retry_after(" 5\t", NOW_1994), 5000);
    /* absurdly long values are clamped, not overflowed */
    ck_assert_int_gt(retry_parse_retry_after("99999999999999999999999999999999", 0),
                     INT64_C(1000000000));
    ck_assert_int_eq(retry_parse_retry_after("-5", NOW_1994), -1);
    ck_assert_int_eq(retry_parse_retry_after("+5", NOW_1994), -1);
    ck_assert_int_eq(retry_parse_retry_after("1.5", NOW_1994), -1);
    ck_assert_int_eq(retry_parse_retry_after("5s", NOW_1994), -1);
    ck_assert_int_eq(retry_parse_retry_after("5 5", NOW_1994), -1);
    ck_assert_int_eq(retry_parse_retry_after("0x10", NOW_1994), -1);
}
END_TEST

START_TEST(test_retry_after_dates)
{
    const int64_t now = NOW_1994 - 30;

    ck_assert_int_eq(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 30000);
    ck_assert_int_eq(retry_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), 30000);
    ck_assert_int_eq(retry_parse_retry_after("Sun Nov  6 08:49:37 1994", now), 30000);
    ck_assert_int_eq(retry_parse_retry_after("  Sun, 06 Nov 1994 08:49:37 GMT ", now), 30000);
    ck_assert_int_eq(retry_parse_retry_after("sun, 06 nov 1994 08:49:37 gmt", now), 30000);
    /* asctime with a two-digit day */
    ck_assert_int_eq(retry_parse_retry_after("Sun Nov 16 08:49:37 1994", now),
                     (10 * 86400 + 30) * INT64_C(1000));
    /* leap day */
    ck_assert_int_eq(retry_parse_retry_after("Thu, 29 Feb 1996 00:00:00 GMT", 825552000 - 2), 2000);
    /* a past or present date is 0 */
    ck_assert_int_eq(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW_1994), 0);
    ck_assert_int_eq(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW_2023), 0);
    ck_assert_int_eq(retry_parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", NOW_2023), 0);
    ck_assert_int_eq(retry_parse_retry_after("Sat, 01 Jan 1960 00:00:00 GMT", NOW_2023), 0);
}
END_TEST

START_TEST(test_retry_after_rfc850_century)
{
    /* RFC 9110: a two-digit year more than 50 years ahead is in the last century */
    ck_assert_int_eq(retry_parse_retry_after("Tuesday, 01-Jan-30 00:00:00 GMT", NOW_2023),
                     (INT64_C(1893456000) - NOW_2023) * 1000);
    ck_assert_int_eq(retry_parse_retry_after("Sunday, 01-Jan-73 00:00:00 GMT", NOW_2023),
                     (INT64_C(3250454400) - NOW_2023) * 1000);
    ck_assert_int_eq(retry_parse_retry_after("Monday, 01-Jan-80 00:00:00 GMT", NOW_2023), 0);
    ck_assert_int_eq(retry_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", NOW_2023), 0);
}
END_TEST

START_TEST(test_retry_after_garbage)
{
    const char *bad[] = {
        "",
        "   ",
        "soon",
        "Sun",
        "GMT",
        "Sun, 06 Nov 1994",
        "x Sun, 06 Nov 1994 08:49:37 GMT", /* curl_getdate() would accept these */
        "Sun, 06 Nov 1994 08:49:37 GMT junk",
        "Sun, 06 Nov 1994 08:49:37 +0100",
        "Sun, 31 Feb 1994 08:49:37 GMT", /* no such day */
        "Mon, 29 Feb 1900 00:00:00 GMT", /* 1900 is not a leap year */
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT", /* IMF-fixdate needs two digits */
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994", /* asctime pads the day with a space */
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "2024-01-01T00:00:00Z",
        "Sun, 06 Nov 1994 08:49:37 GMT Sun, 06 Nov 1994 08:49:37 GMT Sun, 06 Nov 1994",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(retry_parse_retry_after(bad[i], NOW_1994 - 30) == -1, "'%s'", bad[i]);
    ck_assert_int_eq(retry_parse_retry_after(NULL, NOW_1994), -1);
}
END_TEST

/* ---- method rule (4.3) through retry_decide ---------------------------------- */

START_TEST(test_method_rule_matrix)
{
    const char *idempotent[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    const char *other[] = {"POST", "PATCH", "get", "post", "FOO", "CONNECT", ""};
    struct outcome outs[] = {kind(OUTCOME_CONNECT_FAILURE),
                             kind(OUTCOME_RESET),
                             kind(OUTCOME_TIMEOUT),
                             status(429),
                             status(502),
                             status(503),
                             status(504)};
    struct retry_policy p;
    uint64_t rng = SEED;
    int64_t delay;

    retry_policy_defaults(&p);
    for (size_t o = 0; o < sizeof(outs) / sizeof(outs[0]); o++) {
        bool cf = outs[o].kind == OUTCOME_CONNECT_FAILURE;
        for (size_t m = 0; m < sizeof(idempotent) / sizeof(idempotent[0]); m++) {
            struct retry_input in = input(idempotent[m], outs[o]);
            ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
            ck_assert_int_eq(delay, 1000);
        }
        for (size_t m = 0; m < sizeof(other) / sizeof(other[0]); m++) {
            struct retry_input in = input(other[m], outs[o]);
            ck_assert_msg(retry_decide(&p, &in, NULL, &rng, &delay) ==
                              (cf ? RETRY_YES : RETRY_NO_METHOD),
                          "%s outcome %zu", other[m], o);
            /* an Idempotency-Key makes any outcome retryable */
            in.has_idempotency_key = true;
            ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
        }
        {
            struct retry_input in = input(NULL, outs[o]);
            ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay),
                             cf ? RETRY_YES : RETRY_NO_METHOD);
        }
    }
    /* retry-non-idempotent: every retry-on outcome */
    p.retry_non_idempotent = true;
    for (size_t o = 0; o < sizeof(outs) / sizeof(outs[0]); o++) {
        for (size_t m = 0; m < sizeof(other) / sizeof(other[0]); m++) {
            struct retry_input in = input(other[m], outs[o]);
            ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
        }
    }
}
END_TEST

START_TEST(test_decide_not_matching)
{
    struct retry_policy p;
    uint64_t rng = SEED;
    int64_t delay = 77;
    struct outcome outs[] = {status(200),
                             status(404),
                             status(500),
                             status(501),
                             kind(OUTCOME_RESPONSE_TOO_LARGE),
                             kind(OUTCOME_CANCELLED)};

    retry_policy_defaults(&p);
    for (size_t o = 0; o < sizeof(outs) / sizeof(outs[0]); o++) {
        struct retry_input in = input("GET", outs[o]);
        delay = 77;
        ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_OUTCOME);
        ck_assert_int_eq(delay, 0);
    }
}
END_TEST

START_TEST(test_decide_attempts)
{
    struct retry_policy p;
    uint64_t rng = SEED;
    int64_t delay;
    struct retry_input in = input("GET", kind(OUTCOME_RESET));

    retry_policy_defaults(&p);
    in.attempt = 2;
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(delay, 2000);
    in.attempt = 3;
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_ATTEMPTS);
    /* X-Ahoyd-Max-Attempts: 1 -> the first attempt is the last */
    in.attempt = 1;
    in.max_attempts = 1;
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_ATTEMPTS);
    /* 0 means: use the policy's */
    in.max_attempts = 0;
    in.attempt = 2;
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    in.attempt = 3;
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_ATTEMPTS);
}
END_TEST

START_TEST(test_decide_retry_after)
{
    struct retry_policy p;
    uint64_t rng = SEED;
    int64_t delay;
    struct retry_input in;

    retry_policy_defaults(&p);
    p.jitter = JITTER_FULL;

    /* replaces the computed delay, without jitter, on 429 and 503 */
    for (int i = 0; i < 2; i++) {
        in = input("GET", status(i == 0 ? 429 : 503));
        in.retry_after = "2";
        ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
        ck_assert_int_eq(delay, 2000);
        in.retry_after = "Sun, 06 Nov 1994 08:49:47 GMT"; /* now + 10 s */
        ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
        ck_assert_int_eq(delay, 10000);
        in.retry_after = "Sun, 06 Nov 1994 08:00:00 GMT"; /* past: at once */
        ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
        ck_assert_int_eq(delay, 0);
        in.retry_after = "30"; /* == max-delay is fine */
        ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
        ck_assert_int_eq(delay, 30000);
        in.retry_after = "31"; /* beyond max-delay: not retried */
        ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_RETRY_AFTER);
        ck_assert_int_eq(delay, 0);
    }

    /* a Retry-After on another status is ignored: the jittered backoff applies */
    p.jitter = JITTER_NONE;
    in = input("GET", status(502));
    in.retry_after = "31";
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(delay, 1000);

    /* unparsable: ignored */
    in = input("GET", status(503));
    in.retry_after = "later please";
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(delay, 1000);

    /* must end before the deadline */
    in = input("GET", status(503));
    in.now_ms = 1000;
    in.deadline_ms = 3000;
    in.retry_after = "2";
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_RETRY_AFTER);
    in.retry_after = "1";
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(delay, 1000);

    /* honor-retry-after off: the header means nothing */
    p.honor_retry_after = false;
    in = input("GET", status(429));
    in.retry_after = "31";
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(delay, 1000);
}
END_TEST

START_TEST(test_decide_deadline)
{
    struct retry_policy p;
    uint64_t rng = SEED;
    int64_t delay;
    struct retry_input in = input("GET", kind(OUTCOME_TIMEOUT));

    retry_policy_defaults(&p);
    in.now_ms = 5000;
    in.deadline_ms = 6000; /* backoff 1000 would end exactly at the deadline */
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_DEADLINE);
    in.deadline_ms = 6001;
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(delay, 1000);
    in.attempt = 2; /* 2000 */
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_NO_DEADLINE);
    in.deadline_ms = 0; /* none */
    ck_assert_int_eq(retry_decide(&p, &in, NULL, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(delay, 2000);
}
END_TEST

START_TEST(test_decide_order)
{
    struct retry_policy p;
    struct retry_budget budget;
    uint64_t rng = SEED;
    int64_t delay;
    struct retry_input in;

    retry_policy_defaults(&p);
    p.budget_enabled = true;
    p.budget_ratio = 0;
    p.budget_min_per_second = 0; /* the budget refuses everything */
    retry_budget_init(&budget);

    /* everything wrong: the outcome is checked first */
    in = input("POST", status(200));
    in.attempt = 3;
    in.retry_after = "999";
    in.deadline_ms = 1;
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_NO_OUTCOME);
    /* then attempts */
    in.outcome = status(503);
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_NO_ATTEMPTS);
    /* then the method */
    in.attempt = 1;
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_NO_METHOD);
    /* then Retry-After */
    in.method = "GET";
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_NO_RETRY_AFTER);
    /* then the deadline */
    in.retry_after = NULL;
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_NO_DEADLINE);
    /* then the budget */
    in.deadline_ms = 0;
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_NO_BUDGET);
    /* and a refused retry was not noted */
    p.budget_min_per_second = 0.1; /* one retry per window */
    ck_assert(retry_budget_allows(&budget, &p, in.now_ms));
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_YES);
    ck_assert(!retry_budget_allows(&budget, &p, in.now_ms));
    ck_assert_int_eq(retry_decide(&p, &in, &budget, &rng, &delay), RETRY_NO_BUDGET);
}
END_TEST

START_TEST(test_verdict_names)
{
    const char *names[7];

    for (int v = RETRY_YES; v <= RETRY_NO_BUDGET; v++) {
        names[v] = retry_verdict_name((enum retry_verdict)v);
        ck_assert_ptr_nonnull(names[v]);
        ck_assert_str_ne(names[v], "unknown");
        for (int w = 0; w < v; w++)
            ck_assert_str_ne(names[v], names[w]);
    }
    ck_assert_str_eq(retry_verdict_name(RETRY_YES), "yes");
    ck_assert_str_eq(retry_verdict_name(RETRY_NO_BUDGET), "budget");
}
END_TEST

/* ---- budget -------------------------------------------------------------------- */

static struct retry_policy budget_policy(double ratio, double min_per_second)
{
    struct retry_policy p;

    retry_policy_defaults(&p);
    p.budget_enabled = true;
    p.budget_ratio = ratio;
    p.budget_min_per_second = min_per_second;
    return p;
}

/* How many retries in a row the budget allows at 'now' (noting each one). */
static int drain(struct retry_budget *b, const struct retry_policy *p, int64_t now)
{
    int n = 0;

    while (n < 100000 && retry_budget_allows(b, p, now)) {
        retry_budget_note_retry(b, now);
        n++;
    }
    return n;
}

START_TEST(test_budget_disabled)
{
    struct retry_policy p = budget_policy(0, 0);
    struct retry_budget b;

    p.budget_enabled = false;
    retry_budget_init(&b);
    for (int i = 0; i < 1000; i++)
        retry_budget_note_retry(&b, 0);
    ck_assert(retry_budget_allows(&b, &p, 0));
}
END_TEST

START_TEST(test_budget_ratio)
{
    struct retry_policy p = budget_policy(0.2, 0);
    struct retry_budget b;

    retry_budget_init(&b);
    ck_assert(!retry_budget_allows(&b, &p, 0)); /* 0 requests -> 0 retries */
    for (int i = 0; i < 10; i++)
        retry_budget_note_request(&b, i * 10);
    ck_assert_int_eq(drain(&b, &p, 100), 2);
    retry_budget_note_request(&b, 200);
    ck_assert_int_eq(drain(&b, &p, 200), 0); /* 11 * 0.2 = 2.2 -> 2 */
    for (int i = 0; i < 4; i++)
        retry_budget_note_request(&b, 300);
    ck_assert_int_eq(drain(&b, &p, 300), 1); /* 15 * 0.2 = 3 */
}
END_TEST

START_TEST(test_budget_rounding)
{
    struct retry_policy p;
    struct retry_budget b;

    /* 7 * 0.25 = 1.75 -> 1 */
    p = budget_policy(0.25, 0);
    retry_budget_init(&b);
    for (int i = 0; i < 7; i++)
        retry_budget_note_request(&b, 0);
    ck_assert_int_eq(drain(&b, &p, 0), 1);

    /* min-per-second 0.15 -> 1.5 per window -> 1 */
    p = budget_policy(0, 0.15);
    retry_budget_init(&b);
    ck_assert_int_eq(drain(&b, &p, 0), 1);

    /* 0.5 * 1 + 0.05 * 10 = 1 */
    p = budget_policy(0.5, 0.05);
    retry_budget_init(&b);
    retry_budget_note_request(&b, 0);
    ck_assert_int_eq(drain(&b, &p, 0), 1);

    /* 0.29 * 100 is 28.999... in binary: still 29 */
    p = budget_policy(0.29, 0);
    retry_budget_init(&b);
    for (int i = 0; i < 100; i++)
        retry_budget_note_request(&b, 0);
    ck_assert_int_eq(drain(&b, &p, 0), 29);

    /* the defaults' min-per-second 10 -> 100 per window */
    p = budget_policy(0.2, 10);
    retry_budget_init(&b);
    ck_assert_int_eq(drain(&b, &p, 0), 100);
}
END_TEST

START_TEST(test_budget_window_expiry)
{
    struct retry_policy p = budget_policy(0.2, 0);
    struct retry_budget b;

    retry_budget_init(&b);
    for (int i = 0; i < 10; i++)
        retry_budget_note_request(&b, 50); /* bucket [0, 100) */
    ck_assert(retry_budget_allows(&b, &p, 9999));
    ck_assert(!retry_budget_allows(&b, &p, 10000)); /* the requests are 10 s old */

    /* retries expire as well */
    p = budget_policy(0, 0.1); /* one retry per window */
    retry_budget_init(&b);
    ck_assert_int_eq(drain(&b, &p, 500), 1);
    ck_assert(!retry_budget_allows(&b, &p, 5000));
    ck_assert(!retry_budget_allows(&b, &p, 10499));
    ck_assert(retry_budget_allows(&b, &p, 10500));

    /* a bucket reused after a full window forgets its old counts */
    p = budget_policy(1, 0);
    retry_budget_init(&b);
    for (int i = 0; i < 5; i++)
        retry_budget_note_request(&b, 0);
    retry_budget_note_request(&b, 10000); /* same bucket index, new period */
    ck_assert_int_eq(drain(&b, &p, 10000), 1);

    /* sliding: requests spread over the window all count */
    p = budget_policy(1, 0);
    retry_budget_init(&b);
    for (int i = 0; i < 100; i++)
        retry_budget_note_request(&b, i * 100);
    ck_assert_int_eq(drain(&b, &p, 9900), 100);
    /* at 10 s the first bucket's request (and no retry) has left */
    ck_assert(!retry_budget_allows(&b, &p, 10000));
}
END_TEST

START_TEST(test_budget_in_decide)
{
    /* the current call is counted before deciding: ratio 0.5, 2 requests -> 1 retry */
    struct retry_policy p = budget_policy(0.5, 0);
    struct retry_budget b;
    uint64_t rng = SEED;
    int64_t delay;
    struct retry_input in = input("GET", kind(OUTCOME_RESET));

    retry_budget_init(&b);
    retry_budget_note_request(&b, in.now_ms);
    ck_assert_int_eq(retry_decide(&p, &in, &b, &rng, &delay), RETRY_NO_BUDGET);
    retry_budget_note_request(&b, in.now_ms);
    ck_assert_int_eq(retry_decide(&p, &in, &b, &rng, &delay), RETRY_YES);
    ck_assert_int_eq(retry_decide(&p, &in, &b, &rng, &delay), RETRY_NO_BUDGET);
    /* a disabled budget is never consulted or written */
    p.budget_enabled = false;
    ck_assert_int_eq(retry_decide(&p, &in, &b, &rng, &delay), RETRY_YES);
    p.budget_enabled = true;
    ck_assert_int_eq(retry_decide(&p, &in, &b, &rng, &delay), RETRY_NO_BUDGET);
    p = budget_policy(1, 0);
    ck_assert_int_eq(drain(&b, &p, in.now_ms), 1);
}
END_TEST

static Suite *retry_suite(void)
{
    Suite *s = suite_create("retry");
    TCase *tc = tcase_create("policy");
    TCase *tb = tcase_create("backoff");
    TCase *ta = tcase_create("retry_after");
    TCase *td = tcase_create("decide");
    TCase *tg = tcase_create("budget");

    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_status_bitset_bounds);
    tcase_add_test(tc, test_matches_flags);
    tcase_add_test(tc, test_matches_statuses);
    tcase_add_test(tc, test_matches_never);
    tcase_add_test(tc, test_idempotent_methods);
    tcase_add_test(tb, test_rng);
    tcase_add_test(tb, test_backoff_none_schedule);
    tcase_add_test(tb, test_backoff_full_jitter);
    tcase_add_test(tb, test_backoff_equal_jitter);
    tcase_add_test(ta, test_retry_after_seconds);
    tcase_add_test(ta, test_retry_after_dates);
    tcase_add_test(ta, test_retry_after_rfc850_century);
    tcase_add_test(ta, test_retry_after_garbage);
    tcase_add_test(td, test_method_rule_matrix);
    tcase_add_test(td, test_decide_not_matching);
    tcase_add_test(td, test_decide_attempts);
    tcase_add_test(td, test_decide_retry_after);
    tcase_add_test(td, test_decide_deadline);
    tcase_add_test(td, test_decide_order);
    tcase_add_test(td, test_verdict_names);
    tcase_add_test(tg, test_budget_disabled);
    tcase_add_test(tg, test_budget_ratio);
    tcase_add_test(tg, test_budget_rounding);
    tcase_add_test(tg, test_budget_window_expiry);
    tcase_add_test(tg, test_budget_in_decide);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, tb);
    suite_add_tcase(s, ta);
    suite_add_tcase(s, td);
    suite_add_tcase(s, tg);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(retry_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
