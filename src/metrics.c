/*
 * metrics.c - ahoyd's counters and their Prometheus text exposition (SPEC 6).
 *
 * Three kinds of state feed the exposition:
 *   - per service: requests by status, errors by code and the duration
 *     histogram, in a struct service_metrics allocated on the first request
 *     and hung off the service_state (so an unchanged service keeps its series
 *     across reloads); requests that matched no service use one process-wide
 *     struct for service="_none";
 *   - per endpoint and per service: the counters that runtime.c and proxy.c
 *     keep in struct endpoint_rt and struct service_state (attempts by
 *     outcome, transitions, retries, in-flight);
 *   - process-wide: config reloads and build info.
 * metrics_render() walks the current runtime, so the series of a removed
 * service or endpoint disappear with it. Everything runs on the loop thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* Upper bounds of the duration buckets, microseconds (+Inf is implicit). */
static const int64_t bucket_bounds_us[] = {5000,   10000,   25000,   50000,   100000,  250000,
                                           500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_labels[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                            "0.5",   "1",    "2.5",   "5",    "10"};
#define N_BUCKETS (sizeof bucket_bounds_us / sizeof bucket_bounds_us[0])

struct code_count {
    int status;
    uint64_t count;
};

struct error_count {
    char *code;
    uint64_t count;
};

struct service_metrics {
    struct code_count *codes; /* sorted by status */
    size_t n_codes, cap_codes;
    struct error_count *errors; /* sorted by code */
    size_t n_errors, cap_errors;
    uint64_t buckets[N_BUCKETS + 1]; /* per bucket (not cumulative); last = over 10 s */
    uint64_t count;
    int64_t sum_us;
};

/* Requests that matched no service (service="_none"). */
static struct service_metrics none_metrics;

static uint64_t reloads_success, reloads_failure;
static size_t workers_running = 1;
static uint64_t worker_requests[WORKERS_MAX];
static int64_t last_reload_success_s;

/* ---- recording ---------------------------------------------------------------------- */

static void note_code(struct service_metrics *m, int status)
{
    size_t i = 0;
    while (i < m->n_codes && m->codes[i].status < status)
        i++;
    if (i < m->n_codes && m->codes[i].status == status) {
        m->codes[i].count++;
        return;
    }
    if (m->n_codes == m->cap_codes) {
        size_t cap = m->cap_codes ? m->cap_codes * 2 : 8;
        struct code_count *c = realloc(m->codes, cap * sizeof *c);
        if (!c)
            return;
        m->codes = c;
        m->cap_codes = cap;
    }
    memmove(&m->codes[i + 1], &m->codes[i], (m->n_codes - i) * sizeof *m->codes);
    m->codes[i].status = status;
    m->codes[i].count = 1;
    m->n_codes++;
}

static void note_error(struct service_metrics *m, const char *code)
{
    size_t i = 0;
    int cmp = 1;
    while (i < m->n_errors && (cmp = strcmp(m->errors[i].code, code)) < 0)
        i++;
    if (i < m->n_errors && cmp == 0) {
        m->errors[i].count++;
        return;
    }
    if (m->n_errors == m->cap_errors) {
        size_t cap = m->cap_errors ? m->cap_errors * 2 : 8;
        struct error_count *e = realloc(m->errors, cap * sizeof *e);
        if (!e)
            return;
        m->errors = e;
        m->cap_errors = cap;
    }
    char *copy = strdup(code);
    if (!copy)
        return;
    memmove(&m->errors[i + 1], &m->errors[i], (m->n_errors - i) * sizeof *m->errors);
    m->errors[i].code = copy;
    m->errors[i].count = 1;
    m->n_errors++;
}

void metrics_note_request(struct service_state *st, int status, const char *error_code,
                          int64_t duration_us)
{
    struct service_metrics *m = &none_metrics;
    if (st) {
        if (!st->metrics)
            st->metrics = calloc(1, sizeof *st->metrics);
        if (!st->metrics)
            return;
        m = st->metrics;
    }
    if (duration_us < 0)
        duration_us = 0;
    note_code(m, status);
    if (error_code && *error_code)
        note_error(m, error_code);
    size_t b = 0;
    while (b < N_BUCKETS && duration_us > bucket_bounds_us[b])
        b++;
    m->buckets[b]++;
    m->count++;
    m->sum_us += duration_us;
}

void metrics_note_reload(bool ok, int64_t unix_time_s)
{
    if (ok) {
        reloads_success++;
        last_reload_success_s = unix_time_s;
    } else {
        reloads_failure++;
    }
}

void metrics_note_startup(int64_t unix_time_s)
{
    last_reload_success_s = unix_time_s;
}

void metrics_service_free(struct service_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_errors; i++)
        free(m->errors[i].code);
    free(m->errors);
    free(m->codes);
    free(m);
}

/* ---- the exposition --------------------------------------------------------------------- */

struct text {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void text_reserve(struct text *t, size_t more)
{
    if (t->oom || t->len + more + 1 <= t->cap)
        return;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *b = realloc(t->buf, cap);
    if (!b) {
        t->oom = true;
        return;
    }
    t->buf = b;
    t->cap = cap;
}

static void text_add(struct text *t, const char *s, size_t n)
{
    text_reserve(t, n);
    if (t->oom)
        return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = true;
        return;
    }
    text_reserve(t, (size_t)n);
    if (t->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A label value with \ " and newline escaped, as the text format requires. */
static void text_label_value(struct text *t, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            text_add(t, "\\\\", 2);
        else if (*p == '"')
            text_add(t, "\\\"", 2);
        else if (*p == '\n')
            text_add(t, "\\n", 2);
        else
            text_add(t, p, 1);
    }
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k1="v1",k2="v2"} - labels are NULL-terminated name/value pairs. */
static void sample_start(struct text *t, const char *name, ...)
{
    va_list ap;
    const char *k;
    bool first = true;

    text_puts(t, name);
    va_start(ap, name);
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        text_puts(t, first ? "{" : ",");
        text_puts(t, k);
        text_puts(t, "=\"");
        text_label_value(t, v);
        text_puts(t, "\"");
        first = false;
    }
    va_end(ap);
    if (!first)
        text_puts(t, "}");
    text_puts(t, " ");
}

static void value_u64(struct text *t, uint64_t v)
{
    text_printf(t, "%llu\n", (unsigned long long)v);
}

static void render_requests(struct text *t, const char *svc, const struct service_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_codes; i++) {
        char code[16];
        snprintf(code, sizeof code, "%d", m->codes[i].status);
        sample_start(t, "ahoyd_requests_total", "service", svc, "code", code, NULL);
        value_u64(t, m->codes[i].count);
    }
}

static void render_errors(struct text *t, const char *svc, const struct service_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_errors; i++) {
        sample_start(t, "ahoyd_errors_total", "service", svc, "error", m->errors[i].code, NULL);
        value_u64(t, m->errors[i].count);
    }
}

static void render_histogram(struct text *t, const char *svc, const struct service_metrics *m)
{
    static const struct service_metrics empty;
    uint64_t cumulative = 0;

    if (!m)
        m = &empty;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        cumulative += m->buckets[b];
        sample_start(t, "ahoyd_request_duration_seconds_bucket", "service", svc, "le",
                     bucket_labels[b], NULL);
        value_u64(t, cumulative);
    }
    cumulative += m->buckets[N_BUCKETS];
    sample_start(t, "ahoyd_request_duration_seconds_bucket", "service", svc, "le", "+Inf", NULL);
    value_u64(t, cumulative);
    sample_start(t, "ahoyd_request_duration_seconds_sum", "service", svc, NULL);
    text_printf(t, "%lld.%06lld\n", (long long)(m->sum_us / 1000000),
                (long long)(m->sum_us % 1000000));
    sample_start(t, "ahoyd_request_duration_seconds_count", "service", svc, NULL);
    value_u64(t, m->count);
}

void metrics_set_workers(size_t n)
{
    workers_running = n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : n;
}

void metrics_note_worker_request(size_t worker)
{
    if (worker < WORKERS_MAX)
        worker_requests[worker]++;
}

char *metrics_render(const struct runtime *rt, size_t *len)
{
    struct text t = {0};
    size_t n = rt ? rt->n_services : 0;

    family(&t, "ahoyd_build_info", "gauge", "ahoyd build information.");
    sample_start(&t, "ahoyd_build_info", "version", PACKAGE_VERSION, NULL);
    text_puts(&t, "1\n");

    family(&t, "ahoyd_requests_total", "counter",
           "Requests answered, by service and HTTP status sent to the client.");
    for (size_t i = 0; i < n; i++)
        render_requests(&t, rt->services[i].conf->name, rt->services[i].state->metrics);
    render_requests(&t, "_none", &none_metrics);

    family(&t, "ahoyd_errors_total", "counter",
           "Requests answered with an ahoyd error, by service and error code.");
    for (size_t i = 0; i < n; i++)
        render_errors(&t, rt->services[i].conf->name, rt->services[i].state->metrics);
    render_errors(&t, "_none", &none_metrics);

    family(&t, "ahoyd_request_duration_seconds", "histogram",
           "Time from the first request byte to the answer, by service.");
    for (size_t i = 0; i < n; i++)
        render_histogram(&t, rt->services[i].conf->name, rt->services[i].state->metrics);
    render_histogram(&t, "_none", &none_metrics);

    family(&t, "ahoyd_upstream_attempts_total", "counter",
           "Upstream attempts, by service, endpoint and outcome.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            for (int o = 0; o < OUTCOME_LABELS; o++) {
                sample_start(&t, "ahoyd_upstream_attempts_total", "service", s->conf->name,
                             "endpoint", s->endpoints[j]->url, "outcome", outcome_label_name(o),
                             NULL);
                value_u64(&t, s->endpoints[j]->attempts[o]);
            }
    }

    family(&t, "ahoyd_retries_total", "counter", "Retries (attempts after the first), by service.");
    for (size_t i = 0; i < n; i++) {
        sample_start(&t, "ahoyd_retries_total", "service", rt->services[i].conf->name, NULL);
        value_u64(&t, rt->services[i].state->retries);
    }

    family(&t, "ahoyd_circuit_state", "gauge",
           "Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++) {
            sample_start(&t, "ahoyd_circuit_state", "service", s->conf->name, "endpoint",
                         s->endpoints[j]->url, NULL);
            text_printf(&t, "%d\n", (int)s->endpoints[j]->breaker.state);
        }
    }

    family(&t, "ahoyd_circuit_transitions_total", "counter",
           "Circuit breaker transitions per endpoint, by the state entered.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            for (int to = BREAKER_CLOSED; to <= BREAKER_HALF_OPEN; to++) {
                sample_start(&t, "ahoyd_circuit_transitions_total", "service", s->conf->name,
                             "endpoint", s->endpoints[j]->url, "to",
                             breaker_state_name((enum breaker_state)to), NULL);
                value_u64(&t, s->endpoints[j]->transitions_to[to]);
            }
    }

    family(&t, "ahoyd_inflight_requests", "gauge", "Calls in flight, by service.");
    for (size_t i = 0; i < n; i++) {
        sample_start(&t, "ahoyd_inflight_requests", "service", rt->services[i].conf->name, NULL);
        text_printf(&t, "%d\n", rt->services[i].state->inflight);
    }

    if (workers_running > 1) {
        family(&t, "ahoyd_worker_requests_total", "counter",
               "Requests answered, by worker (event loop).");
        for (size_t i = 0; i < workers_running; i++) {
            char w[24];
            snprintf(w, sizeof w, "%zu", i);
            sample_start(&t, "ahoyd_worker_requests_total", "worker", w, NULL);
            value_u64(&t, worker_requests[i]);
        }
    }

    family(&t, "ahoyd_config_reloads_total", "counter", "Configuration reloads, by result.");
    sample_start(&t, "ahoyd_config_reloads_total", "result", "success", NULL);
    value_u64(&t, reloads_success);
    sample_start(&t, "ahoyd_config_reloads_total", "result", "failure", NULL);
    value_u64(&t, reloads_failure);

    family(&t, "ahoyd_config_last_reload_success_timestamp_seconds", "gauge",
           "Unix time of the last successful configuration load (start or reload).");
    sample_start(&t, "ahoyd_config_last_reload_success_timestamp_seconds", NULL);
    text_printf(&t, "%lld\n", (long long)last_reload_success_s);

    if (t.oom) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}
