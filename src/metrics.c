/*
 * metrics.c - the Prometheus text exposition of ahoyd's counters (SPEC 6).
 *
 * Three kinds of state feed it:
 *   - per service and process-wide: requests by status, errors by code, the
 *     duration histograms, reloads and per-worker requests, kept by
 *     counters.c;
 *   - per endpoint and per service: the counters that runtime.c and proxy.c
 *     keep in struct endpoint_rt and struct service_state (attempts by
 *     outcome, transitions, retries, in-flight);
 *   - the build: version;
 *   - the process: CPU, memory, file descriptors, start time (procstat.c).
 * metrics_render() walks the current runtime, so the series of a removed
 * service or endpoint disappear with it. It runs under the state lock.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "metrics.h"
#include "procstat.h"
#include "strbuf.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* The le labels of the duration buckets (counters_duration_bounds_us, in seconds). */
static const char *const bucket_labels[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                            "0.5",   "1",    "2.5",   "5",    "10"};
#define N_BUCKETS COUNTERS_DURATION_BUCKETS
_Static_assert(sizeof bucket_labels / sizeof bucket_labels[0] == N_BUCKETS,
               "one label per duration bucket of counters.c");

/* A label value with \ " and newline escaped, as the text format requires. */
static void text_label_value(struct strbuf *t, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            strbuf_add(t, "\\\\", 2);
        else if (*p == '"')
            strbuf_add(t, "\\\"", 2);
        else if (*p == '\n')
            strbuf_add(t, "\\n", 2);
        else
            strbuf_add(t, p, 1);
    }
}

static void family(struct strbuf *t, const char *name, const char *type, const char *help)
{
    strbuf_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k1="v1",k2="v2"} - labels are NULL-terminated name/value pairs. */
static void sample_start(struct strbuf *t, const char *name, ...)
{
    va_list ap;
    const char *k;
    bool first = true;

    strbuf_puts(t, name);
    va_start(ap, name);
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        strbuf_puts(t, first ? "{" : ",");
        strbuf_puts(t, k);
        strbuf_puts(t, "=\"");
        text_label_value(t, v);
        strbuf_puts(t, "\"");
        first = false;
    }
    va_end(ap);
    if (!first)
        strbuf_puts(t, "}");
    strbuf_puts(t, " ");
}

static void value_u64(struct strbuf *t, uint64_t v)
{
    strbuf_printf(t, "%llu\n", (unsigned long long)v);
}

static void render_requests(struct strbuf *t, const char *svc, const struct service_counters *m)
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

static void render_errors(struct strbuf *t, const char *svc, const struct service_counters *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_errors; i++) {
        sample_start(t, "ahoyd_errors_total", "service", svc, "error", m->errors[i].code, NULL);
        value_u64(t, m->errors[i].count);
    }
}

/* One histogram series: name_bucket{labels,le}, name_sum, name_count. k2 may be NULL. */
static void render_histogram(struct strbuf *t, const char *name, const char *k1, const char *v1,
                             const char *k2, const char *v2, const struct counters_histogram *h)
{
    static const struct counters_histogram empty;
    char bucket[96], sum[96], count[96];
    uint64_t cumulative = 0;

    if (!h)
        h = &empty;
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(sum, sizeof sum, "%s_sum", name);
    snprintf(count, sizeof count, "%s_count", name);
    for (size_t b = 0; b <= N_BUCKETS; b++) {
        cumulative += h->buckets[b];
        const char *le = b < N_BUCKETS ? bucket_labels[b] : "+Inf";
        if (k2)
            sample_start(t, bucket, k1, v1, k2, v2, "le", le, NULL);
        else
            sample_start(t, bucket, k1, v1, "le", le, NULL);
        value_u64(t, cumulative);
    }
    sample_start(t, sum, k1, v1, k2, v2, NULL);
    strbuf_printf(t, "%lld.%06lld\n", (long long)(h->sum_us / 1000000),
                  (long long)(h->sum_us % 1000000));
    sample_start(t, count, k1, v1, k2, v2, NULL);
    value_u64(t, h->count);
}

static void render_service_histogram(struct strbuf *t, const char *svc,
                                     const struct service_counters *m)
{
    render_histogram(t, "ahoyd_request_duration_seconds", "service", svc, NULL, NULL,
                     m ? &m->duration : NULL);
}

/* A family of one sample without labels: an integer, or a number with 6 decimals. */
static void render_number(struct strbuf *t, const char *name, const char *type, const char *help,
                          double v)
{
    family(t, name, type, help);
    sample_start(t, name, NULL);
    if (v == (double)(long long)v)
        strbuf_printf(t, "%lld\n", (long long)v);
    else
        strbuf_printf(t, "%.6f\n", v);
}

/* The standard process metrics, named and described as the Prometheus client libraries
 * export them; a value that cannot be read is left out with its family. */
static void render_process(struct strbuf *t)
{
    struct procstat ps;
    procstat_read(&ps);
    render_number(t, "process_cpu_seconds_total", "counter",
                  "Total user and system CPU time spent in seconds.", ps.cpu_seconds);
    if (ps.open_fds >= 0)
        render_number(t, "process_open_fds", "gauge", "Number of open file descriptors.",
                      (double)ps.open_fds);
    if (ps.max_fds >= 0)
        render_number(t, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                      (double)ps.max_fds);
    if (ps.virtual_bytes >= 0)
        render_number(t, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                      (double)ps.virtual_bytes);
    if (ps.resident_bytes >= 0)
        render_number(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                      (double)ps.resident_bytes);
    if (ps.start_time_s >= 0)
        render_number(t, "process_start_time_seconds", "gauge",
                      "Start time of the process since unix epoch in seconds.", ps.start_time_s);
}

/* Health checks, ejections and panic (SPEC 4.7). */
static void render_fleet(struct strbuf *t, const struct runtime *rt, size_t n)
{
    family(t, "ahoyd_endpoint_healthy", "gauge",
           "1 when the endpoint is healthy (always, without a health check), else 0.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++) {
            const struct endpoint_rt *ep = s->endpoints[j];
            sample_start(t, "ahoyd_endpoint_healthy", "service", s->conf->name, "endpoint",
                         ep->url, NULL);
            strbuf_printf(t, "%d\n", !ep->health_policy.enabled || ep->health.healthy);
        }
    }
    family(t, "ahoyd_health_checks_total", "counter",
           "Active health checks, by service, endpoint and result.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++) {
            const struct endpoint_rt *ep = s->endpoints[j];
            if (!ep->health_policy.enabled)
                continue;
            for (int r = HEALTH_PASS; r <= HEALTH_BAD_STATUS; r++) {
                sample_start(t, "ahoyd_health_checks_total", "service", s->conf->name,
                             "endpoint", ep->url, "result",
                             health_outcome_name((enum health_outcome)r), NULL);
                value_u64(t, ep->checks[r]);
            }
        }
    }
    family(t, "ahoyd_ejections_total", "counter", "Outlier ejections, by service and endpoint.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++) {
            sample_start(t, "ahoyd_ejections_total", "service", s->conf->name, "endpoint",
                         s->endpoints[j]->url, NULL);
            value_u64(t, s->endpoints[j]->outlier.ejections);
        }
    }
    family(t, "ahoyd_panic", "gauge",
           "1 while the service balances over every endpoint (too few usable), else 0.");
    for (size_t i = 0; i < n; i++) {
        sample_start(t, "ahoyd_panic", "service", rt->services[i].conf->name, NULL);
        strbuf_printf(t, "%d\n", rt->services[i].state->panic.active ? 1 : 0);
    }
}

/* Requests, errors and durations by service, then of the requests that matched none. */
static void render_service_counters(struct strbuf *t, const struct runtime *rt, size_t n,
                                    const struct process_counters *pc)
{
    family(t, "ahoyd_requests_total", "counter",
           "Requests answered, by service and HTTP status sent to the client.");
    for (size_t i = 0; i < n; i++)
        render_requests(t, rt->services[i].conf->name, rt->services[i].state->counters);
    render_requests(t, "_none", &pc->none);

    family(t, "ahoyd_errors_total", "counter",
           "Requests answered with an ahoyd error, by service and error code.");
    for (size_t i = 0; i < n; i++)
        render_errors(t, rt->services[i].conf->name, rt->services[i].state->counters);
    render_errors(t, "_none", &pc->none);

    family(t, "ahoyd_request_duration_seconds", "histogram",
           "Time from the first request byte to the answer, by service.");
    for (size_t i = 0; i < n; i++)
        render_service_histogram(t, rt->services[i].conf->name, rt->services[i].state->counters);
    render_service_histogram(t, "_none", &pc->none);
}

/* Upstream attempts, their durations, retries and the circuit breakers. */
static void render_upstream(struct strbuf *t, const struct runtime *rt, size_t n)
{
    family(t, "ahoyd_upstream_attempts_total", "counter",
           "Upstream attempts, by service, endpoint and outcome.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            for (int o = 0; o < OUTCOME_LABELS; o++) {
                sample_start(t, "ahoyd_upstream_attempts_total", "service", s->conf->name,
                             "endpoint", s->endpoints[j]->url, "outcome", outcome_label_name(o),
                             NULL);
                value_u64(t, s->endpoints[j]->attempts[o]);
            }
    }

    family(t, "ahoyd_upstream_attempt_duration_seconds", "histogram",
           "Time of each upstream attempt, by service and endpoint.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            render_histogram(t, "ahoyd_upstream_attempt_duration_seconds", "service",
                             s->conf->name, "endpoint", s->endpoints[j]->url,
                             &s->endpoints[j]->attempt_duration);
    }

    family(t, "ahoyd_retries_total", "counter", "Retries (attempts after the first), by service.");
    for (size_t i = 0; i < n; i++) {
        sample_start(t, "ahoyd_retries_total", "service", rt->services[i].conf->name, NULL);
        value_u64(t, rt->services[i].state->retries);
    }

    family(t, "ahoyd_circuit_state", "gauge",
           "Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++) {
            sample_start(t, "ahoyd_circuit_state", "service", s->conf->name, "endpoint",
                         s->endpoints[j]->url, NULL);
            strbuf_printf(t, "%d\n", (int)s->endpoints[j]->breaker.state);
        }
    }

    family(t, "ahoyd_circuit_transitions_total", "counter",
           "Circuit breaker transitions per endpoint, by the state entered.");
    for (size_t i = 0; i < n; i++) {
        const struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            for (int to = BREAKER_CLOSED; to <= BREAKER_HALF_OPEN; to++) {
                sample_start(t, "ahoyd_circuit_transitions_total", "service", s->conf->name,
                             "endpoint", s->endpoints[j]->url, "to",
                             breaker_state_name((enum breaker_state)to), NULL);
                value_u64(t, s->endpoints[j]->transitions_to[to]);
            }
    }
}

/* In-flight calls, connections, per-worker requests and reloads. */
static void render_load(struct strbuf *t, const struct runtime *rt, size_t n,
                        const struct process_counters *pc)
{
    family(t, "ahoyd_tunnels_open", "gauge", "WebSocket tunnels open, by service.");
    for (size_t i = 0; i < n; i++) {
        sample_start(t, "ahoyd_tunnels_open", "service", rt->services[i].conf->name, NULL);
        strbuf_printf(t, "%d\n", rt->services[i].state->tunnels_open);
    }
    family(t, "ahoyd_inflight_requests", "gauge", "Calls in flight, by service.");
    for (size_t i = 0; i < n; i++) {
        sample_start(t, "ahoyd_inflight_requests", "service", rt->services[i].conf->name, NULL);
        strbuf_printf(t, "%d\n", rt->services[i].state->inflight);
    }

    render_number(t, "ahoyd_client_connections", "gauge",
                  "Client connections open on listen, all workers.",
                  (double)pc->client_connections);
    render_number(t, "ahoyd_upstream_connections", "gauge",
                  "Connections open to upstream endpoints, all workers.",
                  (double)pc->upstream_connections);

    if (pc->workers_running > 1) {
        family(t, "ahoyd_worker_requests_total", "counter",
               "Requests answered, by worker (event loop).");
        for (size_t i = 0; i < pc->workers_running; i++) {
            char w[24];
            snprintf(w, sizeof w, "%zu", i);
            sample_start(t, "ahoyd_worker_requests_total", "worker", w, NULL);
            value_u64(t, pc->worker_requests[i]);
        }
    }

    family(t, "ahoyd_config_reloads_total", "counter", "Configuration reloads, by result.");
    sample_start(t, "ahoyd_config_reloads_total", "result", "success", NULL);
    value_u64(t, pc->reloads_success);
    sample_start(t, "ahoyd_config_reloads_total", "result", "failure", NULL);
    value_u64(t, pc->reloads_failure);

    family(t, "ahoyd_config_last_reload_success_timestamp_seconds", "gauge",
           "Unix time of the last successful configuration load (start or reload).");
    sample_start(t, "ahoyd_config_last_reload_success_timestamp_seconds", NULL);
    strbuf_printf(t, "%lld\n", (long long)pc->last_reload_success_s);
}

char *metrics_render(const struct runtime *rt, size_t *len)
{
    struct strbuf t = {0};
    const struct process_counters *pc = counters_process();
    size_t n = rt ? rt->n_services : 0;

    family(&t, "ahoyd_build_info", "gauge", "ahoyd build information.");
    sample_start(&t, "ahoyd_build_info", "version", PACKAGE_VERSION, NULL);
    strbuf_puts(&t, "1\n");
    render_service_counters(&t, rt, n, pc);
    render_upstream(&t, rt, n);
    render_fleet(&t, rt, n);
    render_load(&t, rt, n, pc);
    render_process(&t);

    if (t.failed || !t.s) {
        free(t.s);
        return NULL;
    }
    *len = t.len;
    return t.s;
}
