/*
 * outcome.c - what an upstream attempt came to, as the labels it is counted
 * under (the metrics' and admin API's outcome names). Its own module because
 * upstream.c reports outcomes while retry.c, the breaker and metrics.c read
 * them, and none of those should include the others for it.
 */
#include "outcome.h"

int outcome_label_index(const struct outcome *o)
{
    switch (o->kind) {
    case OUTCOME_STATUS:
        if (o->status >= 500)
            return 3;
        if (o->status >= 400)
            return 2;
        if (o->status >= 300)
            return 1;
        return 0;
    case OUTCOME_CONNECT_FAILURE: return 4;
    case OUTCOME_RESET: return 5;
    case OUTCOME_TIMEOUT:
    case OUTCOME_CANCELLED: return 6;
    case OUTCOME_RESPONSE_TOO_LARGE: return 7;
    }
    return 5;
}

const char *outcome_label_name(int index)
{
    static const char *const names[OUTCOME_LABELS] = {
        "2xx", "3xx", "4xx", "5xx", "connect_failure", "reset", "timeout", "response_too_large"};
    return index >= 0 && index < OUTCOME_LABELS ? names[index] : "reset";
}

const char *outcome_name(const struct outcome *o)
{
    switch (o->kind) {
    case OUTCOME_STATUS:
        return outcome_label_name(outcome_label_index(o));
    case OUTCOME_CONNECT_FAILURE:
        return "connect-failure";
    case OUTCOME_RESET:
        return "reset";
    case OUTCOME_TIMEOUT:
        return "timeout";
    case OUTCOME_RESPONSE_TOO_LARGE:
        return "response-too-large";
    case OUTCOME_CANCELLED:
        return "cancelled";
    }
    return "reset";
}

bool outcome_is_failure(const struct outcome *o)
{
    switch (o->kind) {
    case OUTCOME_STATUS:
        return o->status >= 500;
    case OUTCOME_CONNECT_FAILURE:
    case OUTCOME_RESET:
    case OUTCOME_TIMEOUT:
        return true;
    case OUTCOME_RESPONSE_TOO_LARGE:
    case OUTCOME_CANCELLED:
        return false;
    }
    return true;
}
