/*
 * check_resilience.c - integration suite for the resilience rules (SPEC 4):
 * the real ahoyd binary on port 0 in front of stub upstreams with fault modes.
 *
 * Circuit breaker (4.2), retries and their limits (4.1, 4.3, 4.4), backoff and
 * Retry-After timing, deadlines, error outcomes (5) and load balancing (4.5),
 * ending with the "done when": a pool of three endpoints loses one
 * mid-run under 20 concurrent clients and no request is lost.
 *
 * What the upstream saw is read from the stubs (/_stub/requests: arrival times,
 * headers; /_stub/count); what the client saw from libcurl. Waits poll a
 * condition where one exists; only the breaker's recovery timer is waited out.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "harness.h"

static struct proc daemon_proc;
static struct proc stubs[3];

#define YAML_HEAD                                                                          \
    "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n  access-log: stderr\n"           \
    "pyfly:\n  client:\n    services:\n"

/* Timing slack: the brief's +-80 ms (sanitizer builds are slow). */
#define SLACK_MS 80.0

/* ---- helpers ------------------------------------------------------------------- */

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start ahoyd with YAML_HEAD + the printf-formatted service block; asserts it started. */
__attribute__((format(printf, 1, 2))) static void start_ahoyd(const char *fmt, ...)
{
    char *services = NULL, *yaml = NULL;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&services, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(rc, 0);
    ck_assert_int_ge(asprintf(&yaml, "%s%s", YAML_HEAD, services), 0);
    free(services);
    rc = ahoyd_start(&daemon_proc, yaml);
    ck_assert_msg(rc == 0, "ahoyd did not start with:\n%s", yaml);
    free(yaml);
}

static void start_stubs(int n)
{
    static const char *const names[] = {"a", "b", "c"};
    int i;

    for (i = 0; i < n; i++)
        ck_assert_msg(stub_start(&stubs[i], names[i], NULL) == 0, "stub %s did not start",
                      names[i]);
}

/* X-Ahoyd-Attempts of a response, -1 when absent or not a number. */
static int attempts_of(const struct http_resp *r)
{
    const char *v = http_header(r, "X-Ahoyd-Attempts");
    return v != NULL && *v >= '0' && *v <= '9' ? atoi(v) : -1;
}

static const char *upstream_of(const struct http_resp *r)
{
    const char *v = http_header(r, "X-Ahoyd-Upstream");
    return v != NULL ? v : "(none)";
}

/* Assert the response is the stub's own answer (not ahoyd's error): its status, the
 * stub's name header and JSON echo, and the attempt count ahoyd reports. */
#define assert_upstream_answer(r, st, name, att)                                           \
    assert_upstream_answer_at(__LINE__, (r), (st), (name), (att))
static void assert_upstream_answer_at(int line, const struct http_resp *r, int status,
                                      const char *name, int attempts)
{
    const char *stub_name = http_header(r, "X-Stub-Name");
    cJSON *j;

    ck_assert_msg(r->status == status, "line %d: status %ld, want %d (curl %d, body %.300s)",
                  line, r->status, status, r->curl_code, r->body);
    ck_assert_msg(stub_name != NULL && (name == NULL || strcmp(stub_name, name) == 0),
                  "line %d: X-Stub-Name %s, want %s (body %.300s)", line,
                  stub_name ? stub_name : "(none)", name ? name : "any", r->body);
    j = json_body(r);
    ck_assert_msg(j != NULL && json_str(j, "upstream") != NULL &&
                      json_path(j, "error") == NULL,
                  "line %d: not the upstream's body: %.300s", line, r->body);
    cJSON_Delete(j);
    if (attempts >= 0)
        ck_assert_msg(attempts_of(r) == attempts, "line %d: X-Ahoyd-Attempts %d, want %d",
                      line, attempts_of(r), attempts);
}

static void get_ok(int port, const char *target, const char *const *headers,
                   struct http_resp *r)
{
    http_get(port, target, headers, r);
}

/* Arrival times (ms) of the stub's recorded requests; returns how many (<= max). */
static int arrival_times(const struct proc *stub, double *out, int max)
{
    cJSON *recs = stub_requests(stub);
    int i, n;

    ck_assert_ptr_nonnull(recs);
    n = cJSON_GetArraySize(recs);
    for (i = 0; i < n && i < max; i++)
        out[i] = json_num(cJSON_GetArrayItem(recs, i), "time_ms", -1);
    cJSON_Delete(recs);
    return n;
}

/* Header of the i-th recorded request (copied into buf), NULL if absent. */
static const char *recorded_header(const struct proc *stub, int i, const char *name, char *buf,
                                   size_t cap)
{
    cJSON *recs = stub_requests(stub);
    const char *v;

    ck_assert_ptr_nonnull(recs);
    v = echo_header(cJSON_GetArrayItem(recs, i), name);
    if (v != NULL)
        snprintf(buf, cap, "%s", v);
    cJSON_Delete(recs);
    return v != NULL ? buf : NULL;
}

/* SIGTERM: the daemon drains and exits 0 (under sanitizers: no leak, no error). */
static void assert_clean_exit(void)
{
    int st = proc_stop(&daemon_proc);
    ck_assert_msg(st == 0, "ahoyd exited with %d after SIGTERM", st);
}

static void assert_near(double got, double want, const char *what)
{
    ck_assert_msg(got >= want - SLACK_MS && got <= want + SLACK_MS,
                  "%s: %.0f ms, want %.0f +- %.0f", what, got, want, SLACK_MS);
}

/* ---- 4.2 circuit breaker ------------------------------------------------------------- */

START_TEST(breaker_opens_after_threshold)
{
    struct http_resp r;
    const char *ok_hdr[] = {"X-Stub-Status: 200", NULL};
    const char *ra;
    int i;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: false\n"
                "        circuit-breaker: {failure-threshold: 3, recovery-timeout: 30s, "
                "half-open-max-calls: 1}\n",
                stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":500}"), 0);

    /* F F S F F F: the success resets the count, so only the 6th opens the circuit. */
    for (i = 0; i < 6; i++) {
        get_ok(daemon_proc.port, "/svc/x", i == 2 ? ok_hdr : NULL, &r);
        assert_upstream_answer(&r, i == 2 ? 200 : 500, "a", 1);
        http_resp_free(&r);
    }
    ck_assert_int_eq(stub_count(&stubs[0]), 6);

    /* Open: fail fast, not touching the stub. */
    for (i = 0; i < 3; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
        ra = http_header(&r, "Retry-After");
        ck_assert_msg(ra != NULL && atoi(ra) >= 29 && atoi(ra) <= 30,
                      "Retry-After %s, want the ~30 s until half-open", ra ? ra : "(none)");
        ck_assert_msg(r.elapsed_ms < 1000, "fail-fast took %.0f ms", r.elapsed_ms);
        http_resp_free(&r);
    }
    ck_assert_int_eq(stub_count(&stubs[0]), 6);
}
END_TEST

START_TEST(breaker_half_open_one_probe_then_closes)
{
    struct http_resp r;
    struct http_req req;
    long statuses[3];
    double elapsed, opened;
    char url[64];
    const char *ra;
    int i;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: false\n"
                "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 1s, "
                "half-open-max-calls: 1}\n",
                stubs[0].port);
    for (i = 0; i < 2; i++) {
        get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Stub-Status: 500", NULL}, &r);
        assert_upstream_answer(&r, 500, "a", 1);
        http_resp_free(&r);
    }
    opened = harness_now_ms();
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
    ra = http_header(&r, "Retry-After");
    ck_assert_msg(ra != NULL && strcmp(ra, "1") == 0, "Retry-After %s, want 1", ra ? ra : "-");
    http_resp_free(&r);

    /* The recovery timer (nothing to poll without the admin API). */
    pause_ms((int)(opened + 1200 - harness_now_ms()));

    /* Half-open, one probe slot: of two concurrent slow calls one goes through. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/probe", daemon_proc.port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 600", NULL};
    req.timeout_ms = 10000;
    ck_assert_int_eq(http_parallel(&req, 2, statuses, &elapsed), 2);
    ck_assert_msg((statuses[0] == 200 && statuses[1] == 503) ||
                      (statuses[0] == 503 && statuses[1] == 200),
                  "two calls in half-open got %ld and %ld, want one 200 and one 503",
                  statuses[0], statuses[1]);
    ck_assert_int_eq(stub_count(&stubs[0]), 3);

    /* The successful probe closed it: calls flow again, also concurrently. */
    for (i = 0; i < 3; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 200, "a", 1);
        http_resp_free(&r);
    }
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 100", NULL};
    ck_assert_int_eq(http_parallel(&req, 3, statuses, &elapsed), 3);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(statuses[i], 200);
    ck_assert_int_eq(stub_count(&stubs[0]), 9);

    /* Counts were reset on closing: one failure does not re-open it. */
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Stub-Status: 500", NULL}, &r);
    assert_upstream_answer(&r, 500, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    assert_clean_exit();
}
END_TEST

START_TEST(breaker_probe_refuses_second_and_failed_probe_reopens)
{
    struct http_resp r, slow;
    struct http_req req;
    struct http_async *a;
    double opened;
    char url[64];
    const char *ra;
    int i;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: false\n"
                "        circuit-breaker: {failure-threshold: 1, recovery-timeout: 1s, "
                "half-open-max-calls: 1}\n",
                stubs[0].port);
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Stub-Status: 502", NULL}, &r);
    assert_upstream_answer(&r, 502, "a", 1);
    http_resp_free(&r);
    opened = harness_now_ms();
    pause_ms((int)(opened + 1200 - harness_now_ms()));

    /* The probe is slow and fails; while it runs, another call is refused. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/probe", daemon_proc.port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 500", "X-Stub-Status: 500", NULL};
    a = http_async_start(&req);
    ck_assert_ptr_nonnull(a);
    ck_assert(stub_wait_count(&stubs[0], 2, 5000));
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
    ra = http_header(&r, "Retry-After");
    ck_assert_msg(ra != NULL && atoi(ra) >= 1, "Retry-After %s", ra ? ra : "(none)");
    http_resp_free(&r);
    http_async_finish(a, &slow);
    assert_upstream_answer(&slow, 500, "a", 1);
    http_resp_free(&slow);
    opened = harness_now_ms();

    /* Back to OPEN with a fresh 1 s timer (the first one expired long ago). */
    for (i = 0; i < 3; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
        ra = http_header(&r, "Retry-After");
        ck_assert_msg(ra != NULL && strcmp(ra, "1") == 0, "Retry-After %s", ra ? ra : "-");
        http_resp_free(&r);
    }
    ck_assert_msg(harness_now_ms() - opened < 900, "the refusals took too long to check");
    ck_assert_int_eq(stub_count(&stubs[0]), 2);

    /* And it recovers once more. */
    pause_ms((int)(opened + 1200 - harness_now_ms()));
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 3);
}
END_TEST

START_TEST(breaker_late_success_does_not_close)
{
    struct http_resp r, slow;
    struct http_req req;
    struct http_async *a;
    char url[64];

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: false\n"
                "        circuit-breaker: {failure-threshold: 1, recovery-timeout: 30s}\n",
                stubs[0].port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/slow", daemon_proc.port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 600", NULL};
    a = http_async_start(&req);
    ck_assert_ptr_nonnull(a);
    ck_assert(stub_wait_count(&stubs[0], 1, 5000));

    /* A fast failure opens the circuit while the slow call is out. */
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Stub-Status: 500", NULL}, &r);
    assert_upstream_answer(&r, 500, "a", 1);
    http_resp_free(&r);
    http_async_finish(a, &slow);
    assert_upstream_answer(&slow, 200, "a", 1);
    http_resp_free(&slow);

    /* The slow success was admitted while CLOSED: it cannot close the OPEN breaker. */
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 2);
}
END_TEST

START_TEST(breaker_deadline_cut_probe_is_neutral)
{
    struct http_resp r;
    double opened;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        timeout: 5s\n"
                "        retry: false\n"
                "        circuit-breaker: {failure-threshold: 1, recovery-timeout: 1s, "
                "half-open-max-calls: 1}\n",
                stubs[0].port);
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Stub-Status: 503", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    opened = harness_now_ms();
    pause_ms((int)(opened + 1200 - harness_now_ms()));

    /* The probe is cut by the call's deadline, not its own timeout: neither success nor
     * failure, and its slot is free again. */
    get_ok(daemon_proc.port, "/svc/x",
           (const char *[]){"X-Ahoyd-Timeout: 200ms", "X-Stub-Delay-Ms: 2000", NULL}, &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "svc", 1);
    ck_assert_msg(r.elapsed_ms < 1500, "deadline 200ms answered after %.0f ms", r.elapsed_ms);
    http_resp_free(&r);

    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
}
END_TEST

START_TEST(breaker_client_errors_never_open)
{
    struct http_resp r;
    int i;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 30s}\n",
                stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":404}"), 0);
    for (i = 0; i < 12; i++) {
        get_ok(daemon_proc.port, "/svc/missing", i % 3 == 0 ?
               (const char *[]){"X-Stub-Status: 400", NULL} :
               i % 3 == 1 ? (const char *[]){"X-Stub-Status: 429", NULL} : NULL, &r);
        /* 429 is retried (default retry-on) but still a breaker success. */
        assert_upstream_answer(&r, i % 3 == 0 ? 400 : i % 3 == 1 ? 429 : 404, "a",
                               i % 3 == 1 ? 3 : 1);
        http_resp_free(&r);
    }
    ck_assert_int_eq(stub_count(&stubs[0]), 4 * 1 + 4 * 3 + 4 * 1);
    ck_assert_int_eq(stub_reset(&stubs[0]), 0);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
}
END_TEST

START_TEST(breaker_open_stops_retries)
{
    struct http_resp r;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: {failure-threshold: 1, recovery-timeout: 30s}\n",
                stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    /* Attempt 1 opens the only breaker: no endpoint admits attempt 2, the call ends with
     * attempt 1's response. */
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 1);
    /* The next call: fail fast, never retried. */
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 1);
}
END_TEST

START_TEST(breaker_per_endpoint_records_retried_attempts)
{
    struct http_resp r;
    int i;

    start_stubs(2);
    start_ahoyd("      svc:\n        endpoints: [http://127.0.0.1:%d/a, http://127.0.0.1:%d/b]\n"
                "        load-balancer: round-robin\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 30s}\n",
                stubs[0].port, stubs[1].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    /* Every call succeeds on b; a's failures still count on a's breaker, which opens
     * after two of them, and then a sees nothing more. */
    for (i = 0; i < 10; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 200, "b", -1);
        http_resp_free(&r);
    }
    ck_assert_int_eq(stub_count(&stubs[0]), 2);
    ck_assert_int_eq(stub_count(&stubs[1]), 10);
}
END_TEST

/* ---- 4.1 / 4.3 retries ----------------------------------------------------------------- */

/* One pool: a failing endpoint (503 stub or closed port) and a healthy one. */
static void check_retry_on_healthy(bool closed)
{
    struct http_resp r;
    char healthy[64];
    int i, retried = 0;
    int bad_port = closed ? closed_port() : stubs[0].port;
    cJSON *j;

    snprintf(healthy, sizeof(healthy), "http://127.0.0.1:%d/b", stubs[1].port);
    start_ahoyd("      svc:\n        endpoints: [http://127.0.0.1:%d/a, %s]\n"
                "        load-balancer: round-robin\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                bad_port, healthy);
    if (!closed)
        ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    for (i = 0; i < 4; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 200, "b", -1);
        ck_assert_msg(strcmp(upstream_of(&r), healthy) == 0, "X-Ahoyd-Upstream %s, want %s",
                      upstream_of(&r), healthy);
        j = json_body(&r);
        if (attempts_of(&r) == 2) {
            retried++;
            ck_assert_str_eq(echo_header(j, "X-Ahoyd-Attempt"), "2");
        } else {
            ck_assert_int_eq(attempts_of(&r), 1);
            ck_assert_str_eq(echo_header(j, "X-Ahoyd-Attempt"), "1");
        }
        cJSON_Delete(j);
        http_resp_free(&r);
    }
    /* Round-robin sends every other first attempt to the failing endpoint. */
    ck_assert_int_eq(retried, 2);
    if (!closed)
        ck_assert_int_eq(stub_count(&stubs[0]), 2);
    ck_assert_int_eq(stub_count(&stubs[1]), 4);
}

START_TEST(retry_lands_on_healthy_endpoint_503)
{
    start_stubs(2);
    check_retry_on_healthy(false);
}
END_TEST

START_TEST(retry_lands_on_healthy_endpoint_closed_port)
{
    start_stubs(2);
    check_retry_on_healthy(true);
}
END_TEST

START_TEST(upstream_header_names_responding_endpoint)
{
    struct http_resp r;
    char responder[64];
    int i;

    start_stubs(1);
    snprintf(responder, sizeof(responder), "http://127.0.0.1:%d/a", stubs[0].port);
    start_ahoyd("      svc:\n        endpoints: [%s, http://127.0.0.1:%d/dead]\n"
                "        load-balancer: round-robin\n"
                "        retry: {max-attempts: 2, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                responder, closed_port());
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    /* Either order (503 then connect failure, or the reverse) answers with a's 503:
     * X-Ahoyd-Upstream names the endpoint that gave this response. */
    for (i = 0; i < 2; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 503, "a", 2);
        ck_assert_msg(strcmp(upstream_of(&r), responder) == 0,
                      "call %d: X-Ahoyd-Upstream %s, want %s (the endpoint that answered)", i,
                      upstream_of(&r), responder);
        http_resp_free(&r);
    }
    ck_assert_int_eq(stub_count(&stubs[0]), 2);
}
END_TEST

START_TEST(post_retry_rules)
{
    struct http_resp r;
    cJSON *recs;
    int i;

    start_stubs(1);
    start_ahoyd("      strict:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n"
                "      lax:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms, retry-non-idempotent: true}\n"
                "        circuit-breaker: false\n"
                "      dead:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                stubs[0].port, stubs[0].port, closed_port());
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);

    /* POST on 503: sent once, the upstream's 503 comes back unchanged. */
    http_send(daemon_proc.port, "POST", "/strict/p", NULL, "once", 4, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    ck_assert_ptr_nonnull(strstr(r.body, "\"body\":\"once\""));
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 1);

    /* PATCH and unknown or lower-case methods likewise; PUT and DELETE are retried. */
    http_send(daemon_proc.port, "PATCH", "/strict/p", NULL, "x", 1, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    http_send(daemon_proc.port, "PURGE", "/strict/p", NULL, NULL, 0, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    http_send(daemon_proc.port, "get", "/strict/p", NULL, NULL, 0, &r);
    ck_assert_msg(r.status == 503 && attempts_of(&r) == 1,
                  "lower-case get: status %ld attempts %d, want 503 after 1 attempt", r.status,
                  attempts_of(&r));
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 4);
    http_send(daemon_proc.port, "PUT", "/strict/p", NULL, "x", 1, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    http_send(daemon_proc.port, "DELETE", "/strict/p", NULL, NULL, 0, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 10);

    /* With an Idempotency-Key: retried, the same bytes each time. */
    ck_assert_int_eq(stub_reset(&stubs[0]), 0);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    http_send(daemon_proc.port, "POST", "/strict/p", (const char *[]){"Idempotency-Key: k-1", NULL},
              "same-bytes", 10, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    recs = stub_requests(&stubs[0]);
    ck_assert_int_eq(cJSON_GetArraySize(recs), 3);
    for (i = 0; i < 3; i++) {
        char want[4];
        cJSON *rec = cJSON_GetArrayItem(recs, i);
        snprintf(want, sizeof(want), "%d", i + 1);
        ck_assert_str_eq(json_str(rec, "method"), "POST");
        ck_assert_str_eq(json_str(rec, "body"), "same-bytes");
        ck_assert_str_eq(echo_header(rec, "Idempotency-Key"), "k-1");
        ck_assert_str_eq(echo_header(rec, "X-Ahoyd-Attempt"), want);
    }
    cJSON_Delete(recs);

    /* retry-non-idempotent: true */
    http_send(daemon_proc.port, "POST", "/lax/p", NULL, "x", 1, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 6);

    /* Connect failure: nothing was sent, so POST is retried. */
    http_send(daemon_proc.port, "POST", "/dead/p", NULL, "x", 1, &r);
    assert_ahoyd_error(&r, 502, "upstream_unreachable", "dead", 3);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "3");
    http_resp_free(&r);
    assert_clean_exit();
}
END_TEST

START_TEST(post_retried_on_connect_failure_in_pool)
{
    struct http_resp r;
    int i, retried = 0;

    start_stubs(1);
    start_ahoyd("      svc:\n        endpoints: [http://127.0.0.1:%d/dead, http://127.0.0.1:%d/a]\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                closed_port(), stubs[0].port);
    for (i = 0; i < 4; i++) {
        http_send(daemon_proc.port, "POST", "/svc/p", NULL, "post-body", 9, &r);
        assert_upstream_answer(&r, 200, "a", -1);
        ck_assert_ptr_nonnull(strstr(r.body, "\"body\":\"post-body\""));
        if (attempts_of(&r) == 2)
            retried++;
        else
            ck_assert_int_eq(attempts_of(&r), 1);
        http_resp_free(&r);
    }
    ck_assert_int_eq(retried, 2);
    ck_assert_int_eq(stub_count(&stubs[0]), 4);
}
END_TEST

START_TEST(post_reset_never_resent)
{
    struct http_resp r;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                stubs[0].port);
    struct http_client c;
    char url[3][128];
    const char *reset_hdr[] = {"X-Stub-Action: reset", NULL};
    struct http_req warm = {.url = url[0]};
    struct http_req post = {
        .method = "POST", .url = url[1], .headers = reset_hdr, .body = "x", .body_len = 1};
    struct http_req get = {.url = url[2], .headers = reset_hdr};

    snprintf(url[0], sizeof(url[0]), "http://127.0.0.1:%d/svc/warm", daemon_proc.port);
    snprintf(url[1], sizeof(url[1]), "http://127.0.0.1:%d/svc/p", daemon_proc.port);
    snprintf(url[2], sizeof(url[2]), "http://127.0.0.1:%d/svc/g", daemon_proc.port);
    /* One client connection throughout, so that with several workers the same one
     * (and so the same upstream connection cache) serves all three requests. Warm a
     * kept-alive upstream connection first, then reset mid-request. */
    http_client_init(&c);
    http_client_do(&c, &warm, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    http_client_do(&c, &post, &r);
    assert_ahoyd_error(&r, 502, "upstream_reset", "svc", 1);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 2);
    /* GET is retried on reset. */
    http_client_do(&c, &get, &r);
    assert_ahoyd_error(&r, 502, "upstream_reset", "svc", 3);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 5);
    http_client_free(&c);
}
END_TEST

START_TEST(backoff_schedule_and_cap)
{
    struct http_resp r;
    double t[8];

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 200ms, max-delay: 10s}\n"
                "        circuit-breaker: false\n"
                "      capped:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 4, base-delay: 200ms, max-delay: 250ms}\n"
                "        circuit-breaker: false\n",
                stubs[0].port, stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);

    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    ck_assert_int_eq(arrival_times(&stubs[0], t, 8), 3);
    assert_near(t[1] - t[0], 200, "backoff before attempt 2");
    assert_near(t[2] - t[1], 400, "backoff before attempt 3");

    ck_assert_int_eq(stub_reset(&stubs[0]), 0);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    get_ok(daemon_proc.port, "/capped/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 4);
    http_resp_free(&r);
    ck_assert_int_eq(arrival_times(&stubs[0], t, 8), 4);
    assert_near(t[1] - t[0], 200, "capped: backoff before attempt 2");
    assert_near(t[2] - t[1], 250, "capped: backoff before attempt 3 (400 capped at 250)");
    assert_near(t[3] - t[2], 250, "capped: backoff before attempt 4 (800 capped at 250)");
}
END_TEST

START_TEST(deadline_limits_retries)
{
    struct http_resp r;
    double t[8];

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        deadline: 500ms\n"
                "        retry: {max-attempts: 5, base-delay: 400ms}\n"
                "        circuit-breaker: false\n",
                stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    /* Attempt 1 at 0, attempt 2 at 400 ms; the next backoff (800 ms) would pass the
     * deadline, so the call ends there with the upstream's 503. */
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 2);
    ck_assert_msg(r.elapsed_ms < 500 + 2 * SLACK_MS, "answered after %.0f ms", r.elapsed_ms);
    http_resp_free(&r);
    ck_assert_int_eq(arrival_times(&stubs[0], t, 8), 2);
    assert_near(t[1] - t[0], 400, "backoff before attempt 2");
}
END_TEST

START_TEST(deadline_cuts_slow_attempt)
{
    struct http_resp r;
    const char *slow[] = {"X-Stub-Delay-Ms: 3000", NULL};

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        timeout: 5s\n        deadline: 300ms\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n"
                "      open:\n        base-url: http://127.0.0.1:%d/a\n"
                "        timeout: 5s\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                stubs[0].port, stubs[0].port);

    get_ok(daemon_proc.port, "/svc/x", slow, &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "svc", 1);
    assert_near(r.elapsed_ms, 300, "deadline 300ms");
    http_resp_free(&r);

    /* X-Ahoyd-Timeout cannot raise the configured deadline... */
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Timeout: 5s", slow[0], NULL},
           &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "svc", 1);
    assert_near(r.elapsed_ms, 300, "deadline 300ms, X-Ahoyd-Timeout 5s");
    http_resp_free(&r);
    /* ...but lowers it, */
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Timeout: 150ms", slow[0], NULL},
           &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "svc", 1);
    assert_near(r.elapsed_ms, 150, "deadline 300ms, X-Ahoyd-Timeout 150ms");
    http_resp_free(&r);
    /* ...and sets one where none is configured. */
    get_ok(daemon_proc.port, "/open/x", (const char *[]){"X-Ahoyd-Timeout: 250ms", slow[0], NULL},
           &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "open", 1);
    assert_near(r.elapsed_ms, 250, "no deadline, X-Ahoyd-Timeout 250ms");
    http_resp_free(&r);

    /* Malformed, zero or negative values are ignored. */
    get_ok(daemon_proc.port, "/open/x",
           (const char *[]){"X-Ahoyd-Timeout: 0", "X-Stub-Delay-Ms: 400", NULL}, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/open/x",
           (const char *[]){"X-Ahoyd-Timeout: -100ms", "X-Stub-Delay-Ms: 400", NULL}, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/open/x",
           (const char *[]){"X-Ahoyd-Timeout: soon", "X-Stub-Delay-Ms: 400", NULL}, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    /* The header is ahoyd's: it does not reach the upstream. */
    ck_assert_ptr_null(strcasestr(r.body, "X-Ahoyd-Timeout"));
    http_resp_free(&r);
}
END_TEST

START_TEST(max_attempts_header)
{
    struct http_resp r;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Max-Attempts: 1", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Max-Attempts: 2", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 2);
    http_resp_free(&r);
    /* Cannot raise the configured 3. */
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Max-Attempts: 10", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    /* Ignored when malformed, zero or negative. */
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Max-Attempts: 0", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Max-Attempts: -1", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Max-Attempts: two", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 1 + 2 + 3 * 4);
}
END_TEST

START_TEST(deadline_header_to_upstream)
{
    struct http_resp r;
    char buf[64];
    long d1, d2;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        deadline: 2s\n"
                "        retry: {max-attempts: 2, base-delay: 200ms}\n"
                "        circuit-breaker: false\n"
                "      nodl:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: false\n",
                stubs[0].port, stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503,\"count\":1}"), 0);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 2);
    http_resp_free(&r);
    ck_assert_ptr_nonnull(recorded_header(&stubs[0], 0, "X-Ahoyd-Deadline-Ms", buf, sizeof(buf)));
    d1 = atol(buf);
    ck_assert_ptr_nonnull(recorded_header(&stubs[0], 1, "X-Ahoyd-Deadline-Ms", buf, sizeof(buf)));
    d2 = atol(buf);
    ck_assert_msg(d1 > 2000 - SLACK_MS * 2 && d1 <= 2000, "attempt 1 deadline header %ld", d1);
    ck_assert_msg(d2 <= d1 - 200 + 5 && d2 >= d1 - 200 - 2 * SLACK_MS,
                  "attempt 2 deadline header %ld after a 200 ms backoff (attempt 1: %ld)", d2, d1);
    ck_assert_str_eq(recorded_header(&stubs[0], 0, "X-Ahoyd-Attempt", buf, sizeof(buf)), "1");
    ck_assert_str_eq(recorded_header(&stubs[0], 1, "X-Ahoyd-Attempt", buf, sizeof(buf)), "2");

    /* X-Ahoyd-Timeout lowers it; without any deadline there is no header. */
    get_ok(daemon_proc.port, "/svc/x", (const char *[]){"X-Ahoyd-Timeout: 700ms", NULL}, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    ck_assert_ptr_nonnull(recorded_header(&stubs[0], 2, "X-Ahoyd-Deadline-Ms", buf, sizeof(buf)));
    ck_assert_msg(atol(buf) > 0 && atol(buf) <= 700, "deadline header %s with 700ms", buf);
    get_ok(daemon_proc.port, "/nodl/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 1);
    http_resp_free(&r);
    ck_assert_ptr_null(recorded_header(&stubs[0], 3, "X-Ahoyd-Deadline-Ms", buf, sizeof(buf)));
    ck_assert_str_eq(recorded_header(&stubs[0], 3, "X-Ahoyd-Attempt", buf, sizeof(buf)), "1");
}
END_TEST

START_TEST(exhausted_returns_last_response)
{
    struct http_resp r;
    cJSON *j;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n",
                stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    get_ok(daemon_proc.port, "/svc/last?q=1", (const char *[]){"X-Stub-Header: X-Own: yes", NULL},
           &r);
    assert_upstream_answer(&r, 503, "a", 3);
    /* The upstream's own 503: its headers and its body (the echo of attempt 3). */
    ck_assert_str_eq(http_header(&r, "X-Own"), "yes");
    ck_assert_str_eq(http_header(&r, "Content-Type"), "application/json");
    j = json_body(&r);
    ck_assert_str_eq(json_str(j, "target"), "/a/last?q=1");
    ck_assert_str_eq(echo_header(j, "X-Ahoyd-Attempt"), "3");
    cJSON_Delete(j);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 3);
}
END_TEST

START_TEST(retry_after_honoured)
{
    struct http_resp r;
    double t[4];

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 50ms, max-delay: 5s}\n"
                "        circuit-breaker: false\n"
                "      short:\n        base-url: http://127.0.0.1:%d/a\n"
                "        deadline: 600ms\n"
                "        retry: {max-attempts: 3, base-delay: 50ms, max-delay: 5s}\n"
                "        circuit-breaker: false\n"
                "      deaf:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 50ms, honor-retry-after: false}\n"
                "        circuit-breaker: false\n",
                stubs[0].port, stubs[0].port, stubs[0].port);

    /* 503 with Retry-After: 1 once: the retry comes ~1 s later, not after 50 ms. */
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503,\"retry_after\":\"1\",\"count\":1}"), 0);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 2);
    http_resp_free(&r);
    ck_assert_int_eq(arrival_times(&stubs[0], t, 4), 2);
    assert_near(t[1] - t[0], 1000, "Retry-After: 1");

    /* Beyond max-delay: not retried, that 503 (with its Retry-After) is the answer. */
    ck_assert_int_eq(stub_reset(&stubs[0]), 0);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503,\"retry_after\":\"10\"}"), 0);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    ck_assert_str_eq(http_header(&r, "Retry-After"), "10");
    ck_assert_msg(r.elapsed_ms < 1000, "took %.0f ms", r.elapsed_ms);
    http_resp_free(&r);

    /* Beyond the deadline: likewise. */
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503,\"retry_after\":\"1\"}"), 0);
    get_ok(daemon_proc.port, "/short/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 2);

    /* An unparsable value is ignored (base-delay), and so is any with honor-retry-after off. */
    ck_assert_int_eq(stub_reset(&stubs[0]), 0);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503,\"retry_after\":\"soon\",\"count\":1}"),
                     0);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 2);
    http_resp_free(&r);
    ck_assert_int_eq(arrival_times(&stubs[0], t, 4), 2);
    assert_near(t[1] - t[0], 50, "unparsable Retry-After");
    ck_assert_int_eq(stub_reset(&stubs[0]), 0);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503,\"retry_after\":\"10\",\"count\":1}"),
                     0);
    get_ok(daemon_proc.port, "/deaf/x", NULL, &r);
    assert_upstream_answer(&r, 200, "a", 2);
    http_resp_free(&r);
    ck_assert_int_eq(arrival_times(&stubs[0], t, 4), 2);
    assert_near(t[1] - t[0], 50, "honor-retry-after: false");
}
END_TEST

START_TEST(retry_budget_limits_retries)
{
    struct http_resp r;

    start_stubs(1);
    start_ahoyd("      svc:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms, "
                "budget: {ratio: 0, min-per-second: 0.1}}\n"
                "        circuit-breaker: false\n"
                "      free:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms, budget: off}\n"
                "        circuit-breaker: false\n",
                stubs[0].port, stubs[0].port);
    ck_assert_int_eq(stub_mode(&stubs[0], "{\"status\":503}"), 0);
    /* 0 x requests + 0.1/s x 10 s = 1 retry in the window. */
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 2);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/svc/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    /* The budget is per service. */
    get_ok(daemon_proc.port, "/free/x", NULL, &r);
    assert_upstream_answer(&r, 503, "a", 3);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 2 + 1 + 1 + 3);
    ck_assert_msg(proc_log_wait(&daemon_proc, "RB", 3000), "no access-log flag RB");
}
END_TEST

/* ---- 4.1 step 6 / 5: errors ------------------------------------------------------------- */

START_TEST(error_outcomes)
{
    struct http_resp r;
    int dead1 = closed_port(), dead2 = closed_port();

    start_stubs(1);
    start_ahoyd("      unreach:\n        endpoints: [http://127.0.0.1:%d, http://127.0.0.1:%d]\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: false\n"
                "      slow:\n        base-url: http://127.0.0.1:%d/a\n"
                "        timeout: 300ms\n        retry: false\n"
                "      slowretry:\n        base-url: http://127.0.0.1:%d/a\n"
                "        timeout: 200ms\n"
                "        retry: {max-attempts: 2, base-delay: 10ms}\n"
                "        circuit-breaker: false\n"
                "      plain:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: false\n"
                "      cfonly:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms, retry-on: [connect-failure]}\n"
                "        circuit-breaker: false\n"
                "      fivexx:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms, retry-on: [5xx]}\n"
                "        circuit-breaker: false\n"
                "      gw:\n        base-url: http://127.0.0.1:%d/a\n"
                "        retry: {max-attempts: 3, base-delay: 10ms, retry-on: [gateway-error]}\n"
                "        circuit-breaker: false\n",
                dead1, dead2, stubs[0].port, stubs[0].port, stubs[0].port, stubs[0].port,
                stubs[0].port, stubs[0].port);

    get_ok(daemon_proc.port, "/unreach/x", NULL, &r);
    assert_ahoyd_error(&r, 502, "upstream_unreachable", "unreach", 3);
    http_resp_free(&r);

    get_ok(daemon_proc.port, "/slow/x", (const char *[]){"X-Stub-Delay-Ms: 3000", NULL}, &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "slow", 1);
    assert_near(r.elapsed_ms, 300, "timeout 300ms");
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/slowretry/x", (const char *[]){"X-Stub-Delay-Ms: 3000", NULL}, &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "slowretry", 2);
    http_resp_free(&r);

    get_ok(daemon_proc.port, "/plain/x", (const char *[]){"X-Stub-Action: reset", NULL}, &r);
    assert_ahoyd_error(&r, 502, "upstream_reset", "plain", 1);
    http_resp_free(&r);

    ck_assert_int_eq(stub_reset(&stubs[0]), 0);
    get_ok(daemon_proc.port, "/cfonly/x", (const char *[]){"X-Stub-Status: 503", NULL}, &r);
    assert_upstream_answer(&r, 503, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/fivexx/x", (const char *[]){"X-Stub-Status: 500", NULL}, &r);
    assert_upstream_answer(&r, 500, "a", 3);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/fivexx/x", (const char *[]){"X-Stub-Status: 429", NULL}, &r);
    assert_upstream_answer(&r, 429, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/gw/x", (const char *[]){"X-Stub-Status: 500", NULL}, &r);
    assert_upstream_answer(&r, 500, "a", 1);
    http_resp_free(&r);
    get_ok(daemon_proc.port, "/gw/x", (const char *[]){"X-Stub-Status: 504", NULL}, &r);
    assert_upstream_answer(&r, 504, "a", 3);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stubs[0]), 1 + 3 + 1 + 1 + 3);
    assert_clean_exit();
}
END_TEST

/* ---- 4.5 load balancing ------------------------------------------------------------------ */

START_TEST(round_robin_even)
{
    struct http_resp r;
    int i;

    start_stubs(3);
    start_ahoyd("      svc:\n        endpoints: [http://127.0.0.1:%d/a, http://127.0.0.1:%d/b, "
                "http://127.0.0.1:%d/c]\n"
                "        load-balancer: round-robin\n",
                stubs[0].port, stubs[1].port, stubs[2].port);
    for (i = 0; i < 30; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 200, NULL, 1);
        http_resp_free(&r);
    }
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(stub_count(&stubs[i]), 10);
}
END_TEST

START_TEST(round_robin_weighted)
{
    struct http_resp r;
    int i, run = 0, longest = 0;

    start_stubs(2);
    start_ahoyd("      svc:\n        endpoints: [http://127.0.0.1:%d/a, "
                "{url: http://127.0.0.1:%d/b, weight: 3}]\n"
                "        load-balancer: round-robin\n",
                stubs[0].port, stubs[1].port);
    for (i = 0; i < 40; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 200, NULL, 1);
        run = strcmp(http_header(&r, "X-Stub-Name"), "b") == 0 ? run + 1 : 0;
        longest = run > longest ? run : longest;
        http_resp_free(&r);
    }
    ck_assert_int_eq(stub_count(&stubs[0]), 10);
    ck_assert_int_eq(stub_count(&stubs[1]), 30);
    /* Smooth: the light endpoint comes every fourth call, never after a burst. */
    ck_assert_msg(longest == 3, "longest run on the weight-3 endpoint: %d", longest);
}
END_TEST

START_TEST(killed_endpoint_routed_around)
{
    struct http_resp r;
    char dead[64];
    int i;

    start_stubs(3);
    start_ahoyd("      svc:\n        endpoints: [http://127.0.0.1:%d/a, http://127.0.0.1:%d/b, "
                "http://127.0.0.1:%d/c]\n"
                "        load-balancer: round-robin\n"
                "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 30s}\n",
                stubs[0].port, stubs[1].port, stubs[2].port);
    for (i = 0; i < 6; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 200, NULL, 1);
        http_resp_free(&r);
    }
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d/b", stubs[1].port);
    proc_kill(&stubs[1]);
    for (i = 0; i < 30; i++) {
        get_ok(daemon_proc.port, "/svc/x", NULL, &r);
        assert_upstream_answer(&r, 200, NULL, -1);
        ck_assert_msg(strcmp(upstream_of(&r), dead) != 0, "answered by the killed endpoint");
        ck_assert_msg(attempts_of(&r) == 1 || attempts_of(&r) == 2, "attempts %d",
                      attempts_of(&r));
        http_resp_free(&r);
    }
    /* 2 + 10 each before, and after the kill everything on a and c. */
    ck_assert_int_eq(stub_count(&stubs[0]) + stub_count(&stubs[2]), 4 + 30);
    ck_assert_int_ge(stub_count(&stubs[0]), 14);
    ck_assert_int_ge(stub_count(&stubs[2]), 14);
}
END_TEST

/* ---- the "done when" ------------------------------------------------------------- */

#define LOAD_CLIENTS 20
#define LOAD_SECONDS 10

struct load_client {
    pthread_t thread;
    int port;
    double end_ms;
    long total, ok, bad;
    long bad_status;
    int bad_curl;
    char bad_body[200];
};

static void *load_main(void *arg)
{
    struct load_client *c = arg;
    struct http_client hc;
    struct http_req req;
    struct http_resp r;
    char url[64];
    const char *hdrs[] = {"X-Stub-Delay-Ms: 10", NULL};

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/load", c->port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = hdrs;
    req.timeout_ms = 15000;
    http_client_init(&hc);
    while (harness_now_ms() < c->end_ms) {
        http_client_do(&hc, &req, &r);
        c->total++;
        if (r.status == 200 && http_header(&r, "X-Stub-Name") != NULL) {
            c->ok++;
        } else {
            if (c->bad++ == 0) {
                c->bad_status = r.status;
                c->bad_curl = r.curl_code;
                snprintf(c->bad_body, sizeof(c->bad_body), "%s", r.body ? r.body : "");
            }
        }
        http_resp_free(&r);
    }
    http_client_free(&hc);
    return NULL;
}

START_TEST(no_request_lost_when_endpoint_dies)
{
    static struct load_client clients[LOAD_CLIENTS];
    long total = 0, ok = 0, bad = 0, before_kill, after_a, after_c;
    double start, end;
    int i, first_bad = -1;

    start_stubs(3);
    start_ahoyd("      svc:\n        endpoints: [http://127.0.0.1:%d/a, http://127.0.0.1:%d/b, "
                "http://127.0.0.1:%d/c]\n"
                "        load-balancer: round-robin\n"
                "        timeout: 5s\n        connect-timeout: 1s\n"
                "        retry: {max-attempts: 4, base-delay: 50ms, max-delay: 200ms}\n"
                "        circuit-breaker: {failure-threshold: 3, recovery-timeout: 1s, "
                "half-open-max-calls: 1}\n",
                stubs[0].port, stubs[1].port, stubs[2].port);
    start = harness_now_ms();
    end = start + LOAD_SECONDS * 1000.0;
    for (i = 0; i < LOAD_CLIENTS; i++) {
        clients[i] = (struct load_client){.port = daemon_proc.port, .end_ms = end};
        ck_assert_int_eq(pthread_create(&clients[i].thread, NULL, load_main, &clients[i]), 0);
    }
    /* Kill b a third of the way in, while calls are in flight on it. */
    pause_ms((int)(start + LOAD_SECONDS * 1000.0 / 3 - harness_now_ms()));
    before_kill = stub_count(&stubs[1]);
    proc_kill(&stubs[1]);
    after_a = stub_count(&stubs[0]);
    after_c = stub_count(&stubs[2]);
    for (i = 0; i < LOAD_CLIENTS; i++) {
        pthread_join(clients[i].thread, NULL);
        total += clients[i].total;
        ok += clients[i].ok;
        bad += clients[i].bad;
        if (clients[i].bad > 0 && first_bad < 0)
            first_bad = i;
    }
    printf("resilience: %ld requests from %d clients in %.1f s, %ld lost (b served %ld before "
           "it was killed)\n",
           total, LOAD_CLIENTS, (harness_now_ms() - start) / 1000.0, bad, before_kill);
    fflush(stdout);
    ck_assert_msg(bad == 0,
                  "%ld of %ld requests lost; first: status %ld curl %d body %.200s", bad, total,
                  first_bad >= 0 ? clients[first_bad].bad_status : 0,
                  first_bad >= 0 ? clients[first_bad].bad_curl : 0,
                  first_bad >= 0 ? clients[first_bad].bad_body : "");
    ck_assert_int_eq(ok, total);
    ck_assert_msg(total >= 20 * LOAD_CLIENTS, "only %ld requests in %d s", total, LOAD_SECONDS);
    ck_assert_msg(before_kill > 0, "b served nothing before it was killed");
    /* After the kill the survivors carried the load. */
    ck_assert_int_gt(stub_count(&stubs[0]), after_a);
    ck_assert_int_gt(stub_count(&stubs[2]), after_c);
    assert_clean_exit();
}
END_TEST

static Suite *resilience_suite(void)
{
    Suite *s = suite_create("resilience");
    TCase *tc = harness_tcase(s, "breaker");
    tcase_add_test(tc, breaker_opens_after_threshold);
    tcase_add_test(tc, breaker_half_open_one_probe_then_closes);
    tcase_add_test(tc, breaker_probe_refuses_second_and_failed_probe_reopens);
    tcase_add_test(tc, breaker_late_success_does_not_close);
    tcase_add_test(tc, breaker_deadline_cut_probe_is_neutral);
    tcase_add_test(tc, breaker_client_errors_never_open);
    tcase_add_test(tc, breaker_open_stops_retries);
    tcase_add_test(tc, breaker_per_endpoint_records_retried_attempts);

    tc = harness_tcase(s, "retry");
    tcase_add_test(tc, retry_lands_on_healthy_endpoint_503);
    tcase_add_test(tc, retry_lands_on_healthy_endpoint_closed_port);
    tcase_add_test(tc, upstream_header_names_responding_endpoint);
    tcase_add_test(tc, post_retry_rules);
    tcase_add_test(tc, post_retried_on_connect_failure_in_pool);
    tcase_add_test(tc, post_reset_never_resent);
    tcase_add_test(tc, backoff_schedule_and_cap);
    tcase_add_test(tc, deadline_limits_retries);
    tcase_add_test(tc, deadline_cuts_slow_attempt);
    tcase_add_test(tc, max_attempts_header);
    tcase_add_test(tc, deadline_header_to_upstream);
    tcase_add_test(tc, exhausted_returns_last_response);
    tcase_add_test(tc, retry_after_honoured);
    tcase_add_test(tc, retry_budget_limits_retries);
    tcase_add_test(tc, error_outcomes);

    tc = harness_tcase(s, "balance");
    tcase_add_test(tc, round_robin_even);
    tcase_add_test(tc, round_robin_weighted);
    tcase_add_test(tc, killed_endpoint_routed_around);
    tcase_add_test(tc, no_request_lost_when_endpoint_dies);
    return s;
}

int main(void)
{
    return harness_main(resilience_suite());
}
