/*
 * health.c - active health checks of one endpoint (SPEC 4.7).
 *
 * Hysteresis both ways: healthy_threshold passed checks in a row make an
 * endpoint healthy, unhealthy_threshold failed ones unhealthy, so one lost
 * packet neither ejects nor readmits. The start differs by age: an endpoint
 * that was there at start (or across a reload) is presumed healthy, and its
 * first check lands at a random point of the first interval so that a fleet
 * restarted together does not check in lockstep; one that joins later is
 * presumed unhealthy (nothing is known of it) and checked at once, and that
 * single check suffices, so a new instance gets traffic within one
 * round-trip. After that every check is one interval +-10 % after the start
 * of the previous one.
 *
 * Pure: the caller passes the time and the random state, and runs the GETs.
 */
#include "health.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* ---- expect -------------------------------------------------------------------- */

static const char *skip_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* A status (100..599) at *s; advances *s. */
static bool parse_status(const char **s, int *out)
{
    const char *p = skip_blanks(*s);
    int v = 0, digits = 0;

    while (isdigit((unsigned char)*p) && digits < 4) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (digits != 3 || isdigit((unsigned char)*p) || v < 100 || v > 599)
        return false;
    *out = v;
    *s = skip_blanks(p);
    return true;
}

static int expect_fail(struct health_expect *e, char *err, size_t errsize, const char *msg,
                       const char *s)
{
    e->n = 0;
    if (err && errsize > 0)
        snprintf(err, errsize, "expect '%s': %s", s, msg);
    return -1;
}

int health_expect_parse(const char *s, struct health_expect *e, char *err, size_t errsize)
{
    const char *p = s;

    e->n = 0;
    for (;;) {
        int lo, hi;

        if (e->n == HEALTH_EXPECT_MAX)
            return expect_fail(e, err, errsize, "too many ranges", s);
        if (!parse_status(&p, &lo))
            return expect_fail(e, err, errsize, "a status is a number from 100 to 599", s);
        hi = lo;
        if (*p == '-') {
            p++;
            if (!parse_status(&p, &hi))
                return expect_fail(e, err, errsize, "a status is a number from 100 to 599", s);
            if (hi < lo)
                return expect_fail(e, err, errsize, "a range must go from low to high", s);
        }
        e->ranges[e->n].lo = lo;
        e->ranges[e->n].hi = hi;
        e->n++;
        if (*p != ',')
            break;
        p++;
    }
    if (*p != '\0')
        return expect_fail(e, err, errsize, "expected ',' between ranges", s);
    return 0;
}

bool health_expect_match(const struct health_expect *e, int status)
{
    for (int i = 0; i < e->n; i++) {
        if (status >= e->ranges[i].lo && status <= e->ranges[i].hi)
            return true;
    }
    return false;
}

/* ---- outcomes ------------------------------------------------------------------ */

const char *health_outcome_name(enum health_outcome o)
{
    switch (o) {
    case HEALTH_PASS:
        return "pass";
    case HEALTH_CONNECT_FAILURE:
        return "connect_failure";
    case HEALTH_TIMEOUT:
        return "timeout";
    case HEALTH_ERROR:
        return "error";
    case HEALTH_BAD_STATUS:
        return "status";
    }
    return "unknown";
}

enum health_outcome health_classify(enum health_transport t, int status,
                                    const struct health_expect *e)
{
    switch (t) {
    case HEALTH_IO_CONNECT_FAILED:
        return HEALTH_CONNECT_FAILURE;
    case HEALTH_IO_TIMEOUT:
        return HEALTH_TIMEOUT;
    case HEALTH_IO_ERROR:
        return HEALTH_ERROR;
    case HEALTH_IO_RESPONSE:
        break;
    }
    return health_expect_match(e, status) ? HEALTH_PASS : HEALTH_BAD_STATUS;
}

/* ---- state --------------------------------------------------------------------- */

static void init_common(struct health *h, bool healthy)
{
    memset(h, 0, sizeof(*h));
    h->healthy = healthy;
    h->last_check_ms = -1;
    h->last_outcome = HEALTH_PASS;
    h->next_check_ms = INT64_MAX;
}

void health_init_present(struct health *h, const struct health_policy *p, int64_t now_ms,
                         uint64_t *rng)
{
    init_common(h, true);
    if (p->enabled)
        h->next_check_ms = now_ms + (int64_t)rng_below(rng, (uint64_t)p->interval_ms);
}

void health_init_joining(struct health *h, const struct health_policy *p, int64_t now_ms)
{
    init_common(h, !p->enabled);
    if (p->enabled) {
        h->joined_late = true;
        h->next_check_ms = now_ms;
    }
}

bool health_due(const struct health *h, const struct health_policy *p, int64_t now_ms)
{
    return p->enabled && !h->inflight && now_ms >= h->next_check_ms;
}

int64_t health_jittered_interval_ms(int64_t interval_ms, uint64_t *rng)
{
    int64_t tenth = interval_ms / 10;

    return interval_ms - tenth + (int64_t)rng_below(rng, (uint64_t)(2 * tenth) + 1);
}

void health_begin(struct health *h, const struct health_policy *p, int64_t now_ms, uint64_t *rng)
{
    h->inflight = true;
    h->next_check_ms = now_ms + health_jittered_interval_ms(p->interval_ms, rng);
}

static bool change(struct health *h, bool healthy, const char *reason, struct health_transition *tr)
{
    h->healthy = healthy;
    if (tr) {
        tr->healthy = healthy;
        tr->reason = reason;
    }
    return true;
}

bool health_record(struct health *h, const struct health_policy *p, enum health_outcome o,
                   int64_t now_ms, struct health_transition *tr)
{
    bool first = h->joined_late;

    h->inflight = false;
    if (!p->enabled)
        return false;
    h->joined_late = false;
    h->last_check_ms = now_ms;
    h->last_outcome = o;
    if (o == HEALTH_PASS) {
        h->failures = 0;
        h->successes++;
        if (!h->healthy && first)
            return change(h, true, "first check passed", tr);
        if (!h->healthy && h->successes >= p->healthy_threshold)
            return change(h, true, "healthy threshold reached", tr);
        return false;
    }
    h->successes = 0;
    h->failures++;
    if (h->healthy && h->failures >= p->unhealthy_threshold)
        return change(h, false, "unhealthy threshold reached", tr);
    return false;
}
