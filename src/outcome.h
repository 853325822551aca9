/*
 * outcome.h - what one upstream attempt came to (SPEC 4.1 step 4), and the
 * labels attempts are counted under (metrics, the admin API).
 *
 * Its own module because upstream.c reports outcomes, retry.c and breaker
 * decisions read them and metrics.c renders them: none of those should have
 * to include the others for it.
 */
#ifndef AHOYD_OUTCOME_H
#define AHOYD_OUTCOME_H

#include <stdbool.h>

enum outcome_kind {
    OUTCOME_STATUS = 0,         /* got a response; status set */
    OUTCOME_CONNECT_FAILURE,    /* nothing was sent */
    OUTCOME_RESET,              /* transport/protocol error after the first byte was written */
    OUTCOME_TIMEOUT,            /* the attempt's own timeout */
    OUTCOME_RESPONSE_TOO_LARGE, /* response body or header block over the limit */
    OUTCOME_CANCELLED,          /* cut by the call deadline or the client left: neutral */
};

#define OUTCOME_DETAIL_MAX 128

struct outcome {
    enum outcome_kind kind;
    int status;                      /* OUTCOME_STATUS only */
    char detail[OUTCOME_DETAIL_MAX]; /* what went wrong, in words ("Connection refused",
                                        "HTTP 503"); "" when nothing is known */
};

#define OUTCOME_LABELS 8 /* 2xx 3xx 4xx 5xx connect_failure reset timeout response_too_large */

/* Bucket an outcome for counting: an index below OUTCOME_LABELS. */
int outcome_label_index(const struct outcome *o);
/* The label of a bucket ("2xx", "connect_failure", ...). */
const char *outcome_label_name(int index);
/* The name an operator reads in logs and /v1/services: the retry-on words
 * ("connect-failure", "reset", "timeout") or the status class ("5xx"). */
const char *outcome_name(const struct outcome *o);
/* Whether the outcome is the endpoint's failure (connect failure, reset, its own
 * timeout, status >= 500): what a breaker counts against it. */
bool outcome_is_failure(const struct outcome *o);

#endif
