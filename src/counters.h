/*
 * counters.h - the request and reload counters behind the metrics (SPEC 6),
 * apart from their Prometheus rendering (metrics.c), so the runtime that owns
 * them and the exposition that reads them do not depend on each other.
 *
 * Per service: requests by status, errors by code and a duration histogram,
 * in a struct service_counters allocated on the service's first request and
 * hung off its service_state (an unchanged service keeps its series across
 * reloads). Requests that matched no service count in the process-wide
 * "_none" set; reloads and per-worker requests are process-wide too.
 * Every function runs under the state lock (loop.h), as all shared state.
 */
#ifndef AHOYD_COUNTERS_H
#define AHOYD_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* WORKERS_MAX */

/* Upper bounds of the duration buckets, microseconds, inclusive (+Inf is implicit). */
#define COUNTERS_DURATION_BUCKETS 11
extern const int64_t counters_duration_bounds_us[COUNTERS_DURATION_BUCKETS];

struct counters_code {
    int status;
    uint64_t count;
};

struct counters_error {
    char *code;
    uint64_t count;
};

/* A duration histogram on those buckets. */
struct counters_histogram {
    uint64_t buckets[COUNTERS_DURATION_BUCKETS + 1]; /* not cumulative; last = over 10 s */
    uint64_t count;
    int64_t sum_us;
};

struct service_counters {
    struct counters_code *codes; /* sorted by status */
    size_t n_codes, cap_codes;
    struct counters_error *errors; /* sorted by code */
    size_t n_errors, cap_errors;
    struct counters_histogram duration;
};

struct process_counters {
    struct service_counters none; /* requests that matched no service */
    uint64_t reloads_success, reloads_failure;
    int64_t last_reload_success_s;
    size_t workers_running;
    uint64_t worker_requests[WORKERS_MAX];
    int64_t client_connections;   /* accepted on listen and not yet closed, all workers */
    int64_t upstream_connections; /* sockets curl has open to upstreams, all workers */
};

/* One duration observed (negative counts as 0). */
void counters_observe(struct counters_histogram *h, int64_t duration_us);

/* One request answered (status sent to the client). slot: the service's counters
 * (allocated on first use), NULL for service "_none". error_code: ahoyd's error code
 * (SPEC 5) or NULL when the upstream's response was sent. */
void counters_note_request(struct service_counters **slot, int status, const char *error_code,
                           int64_t duration_us);
/* A reload attempt finished (SIGHUP or POST /v1/reload). */
void counters_note_reload(bool ok, int64_t unix_time_s);
/* The configuration loaded at start: sets the last-success timestamp without
 * counting a reload. */
void counters_note_startup(int64_t unix_time_s);
/* Workers (ahoyd.workers > 1): how many run, and a request answered by worker i. */
void counters_set_workers(size_t n);
void counters_note_worker_request(size_t worker);
void counters_service_free(struct service_counters *c);
/* A client connection accepted (+1) or closed (-1); an upstream socket opened or closed. */
void counters_note_client_connection(int delta);
void counters_note_upstream_connection(int delta);

const struct process_counters *counters_process(void);

#endif
