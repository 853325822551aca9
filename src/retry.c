/*
 * retry.c - whether and when a call is retried (SPEC 4.1 step 5, 4.3, 4.4).
 *
 * Holds the retry-on matching, the method rule, PyFly's exponential backoff
 * (base * 2^(k-1), capped, optionally jittered), the Retry-After parser, the
 * per-service retry budget (a sliding 10 s window in 100 ms buckets) and
 * retry_decide(), which applies all of them in the SPEC's order.
 *
 * Pure: the monotonic time, the wall-clock time and the random state are
 * arguments; nothing here reads a clock or a global.
 */
#include "retry.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- policy --------------------------------------------------------------- */

static const struct {
    unsigned flag;
    const char *word;
} retry_on_words[] = {{RETRY_ON_CONNECT_FAILURE, "connect-failure"},
                      {RETRY_ON_RESET, "reset"},
                      {RETRY_ON_TIMEOUT, "timeout"},
                      {RETRY_ON_5XX, "5xx"},
                      {RETRY_ON_GATEWAY_ERROR, "gateway-error"}};

unsigned retry_on_flag(const char *word)
{
    for (size_t i = 0; i < sizeof retry_on_words / sizeof retry_on_words[0]; i++)
        if (strcmp(word, retry_on_words[i].word) == 0)
            return retry_on_words[i].flag;
    return 0;
}

void retry_on_each(const struct retry_policy *p, void (*fn)(void *arg, const char *entry),
                   void *arg)
{
    for (size_t i = 0; i < sizeof retry_on_words / sizeof retry_on_words[0]; i++)
        if (p->retry_on & retry_on_words[i].flag)
            fn(arg, retry_on_words[i].word);
    for (int s = 0; s < RETRY_STATUS_WORDS * 64; s++)
        if (retry_policy_has_status(p, s)) {
            char n[16];
            snprintf(n, sizeof n, "%d", s);
            fn(arg, n);
        }
}

void retry_policy_defaults(struct retry_policy *p)
{
    memset(p, 0, sizeof *p);
    p->max_attempts = 3;
    p->base_delay_ms = 1000;
    p->max_delay_ms = 30000;
    p->jitter = JITTER_NONE;
    p->retry_on = RETRY_ON_CONNECT_FAILURE | RETRY_ON_RESET | RETRY_ON_TIMEOUT;
    retry_policy_add_status(p, 429);
    retry_policy_add_status(p, 502);
    retry_policy_add_status(p, 503);
    retry_policy_add_status(p, 504);
    p->retry_non_idempotent = false;
    p->honor_retry_after = true;
    p->budget_enabled = false;
    p->budget_ratio = 0.2;
    p->budget_min_per_second = 10;
}

void retry_policy_add_status(struct retry_policy *p, int status)
{
    if (status < 0 || status >= RETRY_STATUS_WORDS * 64)
        return;
    p->retry_on_status[status / 64] |= UINT64_C(1) << (status % 64);
}

bool retry_policy_has_status(const struct retry_policy *p, int status)
{
    if (status < 0 || status >= RETRY_STATUS_WORDS * 64)
        return false;
    return (p->retry_on_status[status / 64] >> (status % 64)) & 1;
}

bool retry_outcome_matches(const struct retry_policy *p, const struct outcome *o)
{
    switch (o->kind) {
    case OUTCOME_STATUS:
        if ((p->retry_on & RETRY_ON_5XX) && o->status >= 500 && o->status <= 599)
            return true;
        if ((p->retry_on & RETRY_ON_GATEWAY_ERROR) && o->status >= 502 && o->status <= 504)
            return true;
        return retry_policy_has_status(p, o->status);
    case OUTCOME_CONNECT_FAILURE:
        return (p->retry_on & RETRY_ON_CONNECT_FAILURE) != 0;
    case OUTCOME_RESET:
        return (p->retry_on & RETRY_ON_RESET) != 0;
    case OUTCOME_TIMEOUT:
        return (p->retry_on & RETRY_ON_TIMEOUT) != 0;
    case OUTCOME_RESPONSE_TOO_LARGE:
    case OUTCOME_CANCELLED:
        return false;
    }
    return false;
}

bool retry_method_is_idempotent(const char *method)
{
    static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};

    if (!method)
        return false;
    for (size_t i = 0; i < sizeof idempotent / sizeof idempotent[0]; i++) {
        if (strcmp(method, idempotent[i]) == 0)
            return true;
    }
    return false;
}

bool retry_may_resend(const struct retry_policy *p, const char *method, bool has_idempotency_key)
{
    return retry_method_is_idempotent(method) || p->retry_non_idempotent || has_idempotency_key;
}

const char *const jitter_mode_names[JITTER_MODE_COUNT] = {"none", "full", "equal"};

const char *retry_jitter_name(enum jitter_mode j)
{
    return (unsigned)j < JITTER_MODE_COUNT ? jitter_mode_names[j] : "none";
}

/* ---- backoff ------------------------------------------------------------------- */

/* base * 2^(k-1) capped at max, doubling step by step so nothing overflows. */
static int64_t backoff_base_ms(const struct retry_policy *p, int k)
{
    int64_t d = p->base_delay_ms > 0 ? p->base_delay_ms : 0;
    int64_t cap = p->max_delay_ms > 0 ? p->max_delay_ms : 0;

    if (d >= cap)
        return cap;
    for (int i = 1; i < k && d < cap; i++)
        d = d > cap / 2 ? cap : d * 2;
    return d < cap ? d : cap;
}

int64_t retry_backoff_ms(const struct retry_policy *p, int k, uint64_t *rng)
{
    int64_t d = backoff_base_ms(p, k), half;

    switch (p->jitter) {
    case JITTER_FULL:
        return (int64_t)rng_below(rng, (uint64_t)d + 1);
    case JITTER_EQUAL:
        half = d / 2;
        return half + (int64_t)rng_below(rng, (uint64_t)(d - half) + 1);
    case JITTER_NONE:
        break;
    }
    return d;
}

/* ---- Retry-After ------------------------------------------------------------- */

#define RETRY_AFTER_MAX_SECONDS INT64_C(1000000000000) /* clamp, far beyond any max-delay */

static const char *const day_short[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_long[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                       "Friday", "Saturday", "Sunday"};
static const char *const month_short[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Match one of the names at *s (case-insensitively); advance past it. */
static int match_name(const char **s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++) {
        size_t len = strlen(names[i]);
        if (strncasecmp(*s, names[i], len) == 0) {
            *s += len;
            return i;
        }
    }
    return -1;
}

static bool match_char(const char **s, char c)
{
    if (**s != c)
        return false;
    (*s)++;
    return true;
}

/* Exactly n digits. */
static bool match_digits(const char **s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if ((*s)[i] < '0' || (*s)[i] > '9')
            return false;
        v = v * 10 + ((*s)[i] - '0');
    }
    *s += n;
    *out = v;
    return true;
}

/* "HH:MM:SS" */
static bool match_time(const char **s, int *h, int *m, int *sec)
{
    return match_digits(s, 2, h) && match_char(s, ':') && match_digits(s, 2, m) &&
           match_char(s, ':') && match_digits(s, 2, sec);
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int year_of_unix(int64_t t)
{
    /* Good enough for choosing the century of an RFC 850 date. */
    int y = 1970;

    while (y < 9999 && days_from_civil(y + 1, 1, 1) * 86400 <= t)
        y++;
    return y;
}

/* The three HTTP-date forms of RFC 9110 5.6.7, strictly (names compared
 * case-insensitively). Sets *when to the Unix time. */
static bool parse_http_date(const char *s, int64_t now_unix_s, int64_t *when)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int day = 0, month = -1, year = 0, h = 0, m = 0, sec = 0;
    bool ok = false;

    if (match_name(&p, day_long, 7) >= 0) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        ok = match_char(&p, ',') && match_char(&p, ' ') && match_digits(&p, 2, &day) &&
             match_char(&p, '-') && (month = match_name(&p, month_short, 12)) >= 0 &&
             match_char(&p, '-') && match_digits(&p, 2, &year) && match_char(&p, ' ') &&
             match_time(&p, &h, &m, &sec) && strcasecmp(p, " GMT") == 0;
        if (ok) {
            /* RFC 9110: more than 50 years ahead means the previous century. */
            int now_year = year_of_unix(now_unix_s);
            year += now_year - now_year % 100;
            if (year > now_year + 50)
                year -= 100;
        }
    } else if (match_name(&p, day_short, 7) >= 0) {
        if (*p == ',') {
            /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
            ok = match_char(&p, ',') && match_char(&p, ' ') && match_digits(&p, 2, &day) &&
                 match_char(&p, ' ') && (month = match_name(&p, month_short, 12)) >= 0 &&
                 match_char(&p, ' ') && match_digits(&p, 4, &year) && match_char(&p, ' ') &&
                 match_time(&p, &h, &m, &sec) && strcasecmp(p, " GMT") == 0;
        } else {
            /* asctime: Sun Nov  6 08:49:37 1994 */
            ok = match_char(&p, ' ') && (month = match_name(&p, month_short, 12)) >= 0 &&
                 match_char(&p, ' ');
            if (ok && *p == ' ')
                ok = match_char(&p, ' ') && match_digits(&p, 1, &day);
            else if (ok)
                ok = match_digits(&p, 2, &day);
            ok = ok && match_char(&p, ' ') && match_time(&p, &h, &m, &sec) && match_char(&p, ' ') &&
                 match_digits(&p, 4, &year) && *p == '\0';
        }
    }
    if (!ok || month < 0 || day < 1 || h > 23 || m > 59 || sec > 60)
        return false;
    if (day > mdays[month] + (month == 1 && is_leap(year)))
        return false;
    *when = days_from_civil(year, month + 1, day) * 86400 + h * 3600 + m * 60 + sec;
    return true;
}

int64_t retry_parse_retry_after(const char *value, int64_t now_unix_s)
{
    char buf[64];
    size_t start = 0, end;
    int64_t when;

    if (!value)
        return -1;
    end = strlen(value);
    while (start < end && (value[start] == ' ' || value[start] == '\t'))
        start++;
    while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    if (start == end)
        return -1;

    if (value[start] >= '0' && value[start] <= '9') {
        /* delta-seconds = 1*DIGIT */
        int64_t secs = 0;
        for (size_t i = start; i < end; i++) {
            if (value[i] < '0' || value[i] > '9')
                return -1;
            if (secs < RETRY_AFTER_MAX_SECONDS)
                secs = secs * 10 + (value[i] - '0');
        }
        if (secs > RETRY_AFTER_MAX_SECONDS)
            secs = RETRY_AFTER_MAX_SECONDS;
        return secs * 1000;
    }
    if (end - start >= sizeof buf)
        return -1;
    memcpy(buf, value + start, end - start);
    buf[end - start] = '\0';
    if (!parse_http_date(buf, now_unix_s, &when))
        return -1;
    if (when <= now_unix_s)
        return 0;
    if (when - now_unix_s > RETRY_AFTER_MAX_SECONDS)
        return RETRY_AFTER_MAX_SECONDS * 1000;
    return (when - now_unix_s) * 1000;
}

/* ---- budget ------------------------------------------------------------------ */

#define BUDGET_BUCKET_MS 100
#define BUDGET_WINDOW_MS (RETRY_BUDGET_BUCKETS * BUDGET_BUCKET_MS)
#define BUDGET_UNUSED INT64_MIN

void retry_budget_init(struct retry_budget *b)
{
    for (int i = 0; i < RETRY_BUDGET_BUCKETS; i++) {
        b->bucket_start_ms[i] = BUDGET_UNUSED;
        b->requests[i] = 0;
        b->retries[i] = 0;
    }
}

static int64_t bucket_start(int64_t now_ms)
{
    int64_t q = now_ms / BUDGET_BUCKET_MS;

    if (now_ms < 0 && now_ms % BUDGET_BUCKET_MS != 0)
        q--;
    return q * BUDGET_BUCKET_MS;
}

/* The bucket for now, emptied if it last held an older period. */
static int current_bucket(struct retry_budget *b, int64_t now_ms)
{
    int64_t start = bucket_start(now_ms);
    int i = (int)((start / BUDGET_BUCKET_MS) % RETRY_BUDGET_BUCKETS);

    if (i < 0)
        i += RETRY_BUDGET_BUCKETS;
    if (b->bucket_start_ms[i] != start) {
        b->bucket_start_ms[i] = start;
        b->requests[i] = 0;
        b->retries[i] = 0;
    }
    return i;
}

void retry_budget_note_request(struct retry_budget *b, int64_t now_ms)
{
    int i = current_bucket(b, now_ms);

    if (b->requests[i] < UINT32_MAX)
        b->requests[i]++;
}

void retry_budget_note_retry(struct retry_budget *b, int64_t now_ms)
{
    int i = current_bucket(b, now_ms);

    if (b->retries[i] < UINT32_MAX)
        b->retries[i]++;
}

bool retry_budget_allows(const struct retry_budget *b, const struct retry_policy *p, int64_t now_ms)
{
    int64_t cur = bucket_start(now_ms);
    uint64_t requests = 0, retries = 0;
    double limit;

    if (!p->budget_enabled)
        return true;
    for (int i = 0; i < RETRY_BUDGET_BUCKETS; i++) {
        int64_t s = b->bucket_start_ms[i];
        if (s == BUDGET_UNUSED || s > cur || s <= cur - BUDGET_WINDOW_MS)
            continue;
        requests += b->requests[i];
        retries += b->retries[i];
    }
    /* The epsilon keeps 0.29 * 100 (28.999...96 in binary) at 29. */
    limit = floor(p->budget_ratio * (double)requests + p->budget_min_per_second * 10.0 + 1e-9);
    return (double)retries < limit;
}

/* ---- the decision ------------------------------------------------------------ */

enum retry_verdict retry_decide(const struct retry_policy *p, const struct retry_input *in,
                                struct retry_budget *budget, uint64_t *rng, int64_t *delay_ms)
{
    int max_attempts = in->max_attempts > 0 ? in->max_attempts : p->max_attempts;
    int64_t delay = -1;

    if (delay_ms)
        *delay_ms = 0;
    if (!retry_outcome_matches(p, &in->outcome))
        return RETRY_NO_OUTCOME;
    if (in->attempt >= max_attempts)
        return RETRY_NO_ATTEMPTS;
    if (in->outcome.kind != OUTCOME_CONNECT_FAILURE &&
        !retry_may_resend(p, in->method, in->has_idempotency_key))
        return RETRY_NO_METHOD;

    if (p->honor_retry_after && in->outcome.kind == OUTCOME_STATUS &&
        (in->outcome.status == 429 || in->outcome.status == 503) && in->retry_after) {
        int64_t ra = retry_parse_retry_after(in->retry_after, in->now_unix_s);
        if (ra >= 0) {
            if (ra > p->max_delay_ms)
                return RETRY_NO_RETRY_AFTER;
            if (in->deadline_ms != 0 && in->now_ms + ra >= in->deadline_ms)
                return RETRY_NO_RETRY_AFTER;
            delay = ra;
        }
    }
    if (delay < 0)
        delay = retry_backoff_ms(p, in->attempt, rng);

    if (in->deadline_ms != 0 && in->now_ms + delay >= in->deadline_ms)
        return RETRY_NO_DEADLINE;
    if (p->budget_enabled && budget) {
        if (!retry_budget_allows(budget, p, in->now_ms))
            return RETRY_NO_BUDGET;
        retry_budget_note_retry(budget, in->now_ms);
    }
    if (delay_ms)
        *delay_ms = delay;
    return RETRY_YES;
}

const char *retry_verdict_name(enum retry_verdict v)
{
    switch (v) {
    case RETRY_YES:
        return "yes";
    case RETRY_NO_OUTCOME:
        return "outcome_not_retryable";
    case RETRY_NO_ATTEMPTS:
        return "attempts_exhausted";
    case RETRY_NO_METHOD:
        return "method_not_retryable";
    case RETRY_NO_RETRY_AFTER:
        return "retry_after_too_long";
    case RETRY_NO_DEADLINE:
        return "deadline";
    case RETRY_NO_BUDGET:
        return "budget";
    }
    return "unknown";
}
