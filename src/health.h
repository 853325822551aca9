/*
 * health.h - the active health check of one endpoint (SPEC 4.7): the
 * expected statuses, what a check's result counts as, the healthy/unhealthy
 * thresholds and when the next check is due.
 *
 * Pure: no I/O, no clock, no globals. Time is milliseconds on the monotonic
 * clock, passed in; randomness is xorshift state, passed in. The caller runs
 * the GET on connections of its own and logs the transitions reported here.
 */
#ifndef AHOYD_HEALTH_H
#define AHOYD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Statuses that pass: a union of ranges, see health_expect_parse. */
#define HEALTH_EXPECT_MAX 16
struct health_expect {
    int n;
    struct {
        int lo, hi;
    } ranges[HEALTH_EXPECT_MAX];
};

/*
 * expect := item ("," item)* ; item := status | status "-" status ;
 * status := a decimal from 100 to 599; spaces and tabs may surround items,
 * commas and dashes; lo <= hi; at most HEALTH_EXPECT_MAX items.
 * Examples: "200-399" (the default), "200", "200-299,404".
 * Returns 0, or -1 with a message in err.
 */
int health_expect_parse(const char *s, struct health_expect *e, char *err, size_t errsize);
bool health_expect_match(const struct health_expect *e, int status);

/* How the check's transfer ended, as the I/O side saw it. */
enum health_transport {
    HEALTH_IO_RESPONSE = 0, /* a status line arrived */
    HEALTH_IO_CONNECT_FAILED,
    HEALTH_IO_TIMEOUT, /* the check's own timeout */
    HEALTH_IO_ERROR,   /* reset, malformed answer, TLS failure ... */
};

enum health_outcome {
    HEALTH_PASS = 0,
    HEALTH_CONNECT_FAILURE,
    HEALTH_TIMEOUT,
    HEALTH_ERROR,
    HEALTH_BAD_STATUS, /* a status outside expect */
};

/* The metrics' result label: "pass", "connect_failure", "timeout", "error", "status". */
const char *health_outcome_name(enum health_outcome o);
enum health_outcome health_classify(enum health_transport t, int status,
                                    const struct health_expect *e);

struct health_policy {
    bool enabled;            /* false: always healthy, never checked */
    int64_t interval_ms;     /* > 0 */
    int64_t timeout_ms;      /* for the I/O side */
    int healthy_threshold;   /* >= 1 */
    int unhealthy_threshold; /* >= 1 */
    struct health_expect expect;
};

struct health {
    bool healthy;
    bool joined_late;      /* joined after start: its first check alone decides */
    bool inflight;         /* a check is running */
    int successes;         /* passed checks in a row */
    int failures;          /* failed checks in a row */
    int64_t next_check_ms; /* INT64_MAX when checks are off */
    int64_t last_check_ms; /* -1: never checked */
    enum health_outcome last_outcome;
};

struct health_transition {
    bool healthy;       /* the new state */
    const char *reason; /* static string */
};

/* Present at start, or kept across a reload that adds checks: healthy, first
 * check at a random point of the first interval, [now, now + interval). */
void health_init_present(struct health *h, const struct health_policy *p, int64_t now_ms,
                         uint64_t *rng);
/* Joining later (discovery, reload): unhealthy, checked at once, healthy as
 * soon as that one check passes. Without checks: healthy. */
void health_init_joining(struct health *h, const struct health_policy *p, int64_t now_ms);

/* Is a check due (none running, next time reached)? */
bool health_due(const struct health *h, const struct health_policy *p, int64_t now_ms);
/* A check starts now: the next one is due one jittered interval after this start. */
void health_begin(struct health *h, const struct health_policy *p, int64_t now_ms, uint64_t *rng);
/* The interval with +-10 % jitter, uniform in [0.9, 1.1] x interval. */
int64_t health_jittered_interval_ms(int64_t interval_ms, uint64_t *rng);

/* A check ended with outcome o. Returns true (and fills *tr when not NULL)
 * when the endpoint changed state. */
bool health_record(struct health *h, const struct health_policy *p, enum health_outcome o,
                   int64_t now_ms, struct health_transition *tr);

#endif
