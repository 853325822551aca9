/*
 * counters.c - the request, error, duration, reload and worker counters that
 * /metrics renders: per service in a struct service_counters made on its first
 * request, and the process-wide set. Codes and errors are kept sorted, so the
 * exposition lists them in a stable order without sorting under the lock.
 * Apart from metrics.c so that runtime.c, which owns the counters, and the
 * rendering do not depend on each other.
 */
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "strbuf.h"

const int64_t counters_duration_bounds_us[COUNTERS_DURATION_BUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

static struct process_counters process = {.workers_running = 1};

static void note_code(struct service_counters *m, int status)
{
    size_t i = 0;
    while (i < m->n_codes && m->codes[i].status < status)
        i++;
    if (i < m->n_codes && m->codes[i].status == status) {
        m->codes[i].count++;
        return;
    }
    struct counters_code *c = array_grow(m->codes, m->n_codes, &m->cap_codes, sizeof *c, 8);
    if (!c)
        return;
    m->codes = c;
    memmove(&m->codes[i + 1], &m->codes[i], (m->n_codes - i) * sizeof *m->codes);
    m->codes[i].status = status;
    m->codes[i].count = 1;
    m->n_codes++;
}

static void note_error(struct service_counters *m, const char *code)
{
    size_t i = 0;
    int cmp = 1;
    while (i < m->n_errors && (cmp = strcmp(m->errors[i].code, code)) < 0)
        i++;
    if (i < m->n_errors && cmp == 0) {
        m->errors[i].count++;
        return;
    }
    struct counters_error *e = array_grow(m->errors, m->n_errors, &m->cap_errors, sizeof *e, 8);
    if (!e)
        return;
    m->errors = e;
    char *copy = strdup(code);
    if (!copy)
        return;
    memmove(&m->errors[i + 1], &m->errors[i], (m->n_errors - i) * sizeof *m->errors);
    m->errors[i].code = copy;
    m->errors[i].count = 1;
    m->n_errors++;
}

void counters_note_request(struct service_counters **slot, int status, const char *error_code,
                           int64_t duration_us)
{
    struct service_counters *m = &process.none;
    if (slot) {
        if (!*slot)
            *slot = calloc(1, sizeof **slot);
        if (!*slot)
            return;
        m = *slot;
    }
    note_code(m, status);
    if (error_code && *error_code)
        note_error(m, error_code);
    counters_observe(&m->duration, duration_us);
}

void counters_observe(struct counters_histogram *h, int64_t duration_us)
{
    if (duration_us < 0)
        duration_us = 0;
    size_t b = 0;
    while (b < COUNTERS_DURATION_BUCKETS && duration_us > counters_duration_bounds_us[b])
        b++;
    h->buckets[b]++;
    h->count++;
    h->sum_us += duration_us;
}

void counters_note_client_connection(int delta)
{
    process.client_connections += delta;
}

void counters_note_upstream_connection(int delta)
{
    process.upstream_connections += delta;
}

void counters_note_reload(bool ok, int64_t unix_time_s)
{
    if (ok) {
        process.reloads_success++;
        process.last_reload_success_s = unix_time_s;
    } else {
        process.reloads_failure++;
    }
}

void counters_note_startup(int64_t unix_time_s)
{
    process.last_reload_success_s = unix_time_s;
}

void counters_set_workers(size_t n)
{
    process.workers_running = n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : n;
}

void counters_note_worker_request(size_t worker)
{
    if (worker < WORKERS_MAX)
        process.worker_requests[worker]++;
}

void counters_service_free(struct service_counters *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_errors; i++)
        free(c->errors[i].code);
    free(c->errors);
    free(c->codes);
    free(c);
}

const struct process_counters *counters_process(void)
{
    return &process;
}
