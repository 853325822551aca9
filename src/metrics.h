/*
 * metrics.h - counters and the Prometheus text exposition (SPEC 6).
 *
 * Per-service series live in struct service_metrics, hung off the
 * service_state (so they survive reloads of an unchanged service); per
 * endpoint series are the counters in struct endpoint_rt; requests that
 * matched no service go to the process-wide "_none" series.
 */
#ifndef AHOYD_METRICS_H
#define AHOYD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

struct service_metrics;

/* One request answered (status sent to the client). st NULL = service "_none".
 * error_code: ahoyd's error code (SPEC 5) or NULL when the upstream's response was sent. */
void metrics_note_request(struct service_state *st, int status, const char *error_code,
                          int64_t duration_us);
/* A reload attempt finished (SIGHUP or POST /v1/reload). */
void metrics_note_reload(bool ok, int64_t unix_time_s);
/* The configuration loaded at start: sets the last-success timestamp without
 * counting a reload. */
void metrics_note_startup(int64_t unix_time_s);
void metrics_service_free(struct service_metrics *m);
/* Workers (ahoyd.workers > 1): how many run, and a request answered by worker i. */
void metrics_set_workers(size_t n);
void metrics_note_worker_request(size_t worker);

/* The whole exposition for the current runtime, malloc'd; *len set. */
char *metrics_render(const struct runtime *rt, size_t *len);

#endif
