/*
 * check_fleet.c - health checks, outlier ejection, panic and slow start on
 * static pools, against the real daemon and stubs (SPEC 4.5, 4.7).
 *
 * Intervals are short (100-300 ms) so the suite stays quick; timing bounds
 * are the rule's own (interval x threshold + 10 %) plus a margin for a loaded
 * machine. Calls are counted at the stubs: health checks are the requests for
 * the health path, everything else is a proxied call.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define HP "/healthz"

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Requests a stub recorded: health checks (path HP) or proxied calls; ports (when not
 * NULL, cap entries) gets their peer ports. */
static int stub_seen(const struct proc *s, bool health, int *ports, int cap)
{
    cJSON *a = stub_requests(s);
    int n = 0;
    ck_assert_ptr_nonnull(a);
    cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        const char *t = json_str(it, "target");
        bool is_health = t && strncmp(t, HP, strlen(HP)) == 0;
        if (is_health != health)
            continue;
        if (ports && n < cap)
            ports[n] = (int)json_num(it, "peer_port", 0);
        n++;
    }
    cJSON_Delete(a);
    return n;
}

static bool wait_health_checks(const struct proc *s, int n, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < end) {
        if (stub_seen(s, true, NULL, 0) >= n)
            return true;
        pause_ms(10);
    }
    return false;
}

/* The YAML of service svc over the stubs, with extra lines under the service. */
static char *fleet_yaml(const struct proc *stubs, int n, const char *extra, bool admin)
{
    char eps[512] = "";
    for (int i = 0; i < n; i++) {
        char one[64];
        snprintf(one, sizeof one, "%shttp://127.0.0.1:%d/api", i ? ", " : "", stubs[i].port);
        strcat(eps, one);
    }
    char *y = NULL;
    ck_assert_int_ge(asprintf(&y,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: %s\n"
                              "  access-log: stderr\n"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        endpoints: [%s]\n%s",
                              admin ? "127.0.0.1:0" : "off", eps, extra ? extra : ""),
                     0);
    return y;
}

static void start_fleet(struct proc *stubs, int n, struct proc *d, const char *extra, bool admin)
{
    static const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(stub_start(&stubs[i], names[i], NULL), 0);
    char *y = fleet_yaml(stubs, n, extra, admin);
    ck_assert_int_eq(ahoyd_start(d, y), 0);
    free(y);
}

static int index_of(const char *who)
{
    return who[0] >= 'a' && who[0] <= 'c' && who[1] == '\0' ? who[0] - 'a' : -1;
}

/* ---- health checks ------------------------------------------------------------------ */

#define HC_INTERVAL 200
#define HC_UNHEALTHY 3
#define HC_HEALTHY 2
#define HC_EXTRA                                                                                   \
    "        health-check: {path: " HP ", interval: 200ms, timeout: 150ms,\n"                     \
    "                       unhealthy-threshold: 3, healthy-threshold: 2}\n"                      \
    "        retry: false\n"

START_TEST(failing_health_path_stops_calls)
{
    struct proc s[3], d;
    char who[32];
    start_fleet(s, 3, &d, HC_EXTRA, false);
    ck_assert(wait_health_checks(&s[0], 2, 3000)); /* its checks run */

    ck_assert_int_eq(stub_mode(&s[0], "{\"status\": 500, \"path\": \"" HP "\"}"), 0);
    double t0 = harness_now_ms(), last_a = -1;
    /* the rule: no call once interval x unhealthy-threshold + 10 % has passed */
    double bound = HC_INTERVAL * HC_UNHEALTHY * 1.1, margin = 250;
    while (harness_now_ms() < t0 + bound + margin + 300) {
        double before = harness_now_ms();
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200); /* its service path still answers */
        if (strcmp(who, "a") == 0)
            last_a = before;
        pause_ms(5);
    }
    ck_assert_msg(last_a >= 0, "a got no call at all before its checks failed");
    fprintf(stderr, "fleet: a got its last call %.0f ms after its health path began failing\n",
            last_a - t0);
    ck_assert_msg(last_a - t0 < bound + margin, "a got a call %.0f ms after its health path began "
                  "failing (bound %.0f ms + %.0f ms margin)", last_a - t0, bound, margin);
    int before = stub_seen(&s[0], false, NULL, 0);
    for (int i = 0; i < 30; i++) {
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        ck_assert_str_ne(who, "a");
    }
    ck_assert_int_eq(stub_seen(&s[0], false, NULL, 0), before);
    ck_assert(proc_log_wait(&d, "unhealthy after 3 failed checks (status 500)", 1000));

    /* recovery after healthy-threshold good checks */
    ck_assert_int_eq(stub_reset(&s[0]), 0);
    double t1 = harness_now_ms(), back = -1;
    while (harness_now_ms() < t1 + 3000 && back < 0) {
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        if (strcmp(who, "a") == 0)
            back = harness_now_ms() - t1;
        pause_ms(5);
    }
    fprintf(stderr, "fleet: a got calls again %.0f ms after its health path recovered\n", back);
    ck_assert_msg(back >= 0, "a never came back");
    /* one interval at least (two checks needed, the first may come at once) */
    ck_assert_msg(back >= HC_INTERVAL * 0.9 * (HC_HEALTHY - 1),
                  "back after %.0f ms: sooner than healthy-threshold checks", back);
    ck_assert(proc_log_count(&d, "healthy after 2 passed checks") == 1);
}
END_TEST

START_TEST(checks_have_their_own_connections)
{
    struct proc s[1], d;
    char who[32];
    start_fleet(s, 1, &d,
                "        health-check: {path: " HP ", interval: 100ms, timeout: 1s}\n", false);
    ck_assert(wait_health_checks(&s[0], 2, 3000));
    /* checks that hang for 900 ms do not delay a call */
    ck_assert_int_eq(stub_mode(&s[0], "{\"delay_ms\": 900, \"path\": \"" HP "\"}"), 0);
    pause_ms(150);
    for (int i = 0; i < 10; i++) {
        double t = harness_now_ms();
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        double ms = harness_now_ms() - t;
        ck_assert_msg(ms < 400, "a call took %.0f ms while a health check hung", ms);
        pause_ms(20);
    }
    /* and never share a connection with calls */
    int hp[1000], cp[1000];
    int nh = stub_seen(&s[0], true, hp, 1000), nc = stub_seen(&s[0], false, cp, 1000);
    ck_assert_int_ge(nh, 2);
    ck_assert_int_eq(nc, 10);
    for (int i = 0; i < nh && i < 1000; i++)
        for (int j = 0; j < nc && j < 1000; j++)
            ck_assert_msg(hp[i] != cp[j], "a health check and a call shared port %d", hp[i]);
}
END_TEST

START_TEST(panic_spreads_over_all)
{
    struct proc s[3], d;
    char who[32];
    start_fleet(s, 3, &d,
                "        health-check: {path: " HP ", interval: 100ms, timeout: 100ms,\n"
                "                       unhealthy-threshold: 1}\n",
                true);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(stub_mode(&s[i], "{\"status\": 503, \"path\": \"" HP "\"}"), 0);
    ck_assert(proc_log_wait(&d, "endpoints usable (below 50%)", 3000));
    double end = harness_now_ms() + 3000;
    while (proc_log_count(&d, "unhealthy after") < 3 && harness_now_ms() < end)
        pause_ms(10);
    ck_assert_int_eq(proc_log_count(&d, "unhealthy after"), 3);
    int per[3] = {0};
    for (int i = 0; i < 30; i++) {
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        ck_assert_int_ge(index_of(who), 0);
        per[index_of(who)]++;
    }
    for (int i = 0; i < 3; i++)
        ck_assert_msg(per[i] >= 5, "stub %d got %d of 30 calls in panic", i, per[i]);
    struct http_resp r;
    http_get(d.admin_port, "/metrics", NULL, &r);
    ck_assert_ptr_nonnull(strstr(r.body, "ahoyd_panic{service=\"svc\"} 1"));
    ck_assert_ptr_nonnull(strstr(r.body, "ahoyd_endpoint_healthy{service=\"svc\",endpoint="));
    http_resp_free(&r);
    /* one line when it begins; one when it ends */
    ck_assert_int_eq(proc_log_count(&d, "endpoints usable (below 50%)"), 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(stub_reset(&s[i]), 0);
    ck_assert(proc_log_wait(&d, "panic: svc: over", 3000));
    ck_assert_int_eq(proc_log_count(&d, "panic: svc: over"), 1);
}
END_TEST

START_TEST(no_usable_endpoint_without_panic)
{
    struct proc s[2], d;
    start_fleet(s, 2, &d,
                "        health-check: {path: " HP ", interval: 100ms, timeout: 100ms,\n"
                "                       unhealthy-threshold: 1}\n"
                "        panic-threshold: 0\n",
                true);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(stub_mode(&s[i], "{\"status\": 500, \"path\": \"" HP "\"}"), 0);
    double end = harness_now_ms() + 3000;
    while (proc_log_count(&d, "unhealthy after") < 2 && harness_now_ms() < end)
        pause_ms(10);
    ck_assert_int_eq(proc_log_count(&d, "unhealthy after"), 2);
    int calls = stub_seen(&s[0], false, NULL, 0) + stub_seen(&s[1], false, NULL, 0);
    struct http_resp r;
    http_get(d.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "no_endpoints", "svc", 0);
    http_resp_free(&r);
    ck_assert_int_eq(stub_seen(&s[0], false, NULL, 0) + stub_seen(&s[1], false, NULL, 0), calls);
    ck_assert(proc_log_wait(&d, "flags=NE", 2000));
    http_get(d.admin_port, "/v1/services", NULL, &r);
    cJSON *j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    cJSON *ep = cJSON_GetArrayItem(json_path(cJSON_GetArrayItem(json_path(j, "services"), 0),
                                             "endpoints"),
                                   0);
    ck_assert_ptr_nonnull(ep);
    ck_assert_str_eq(json_str(ep, "health"), "unhealthy");
    ck_assert_str_eq(json_str(ep, "last_check.outcome"), "status");
    ck_assert_int_eq((int)json_num(ep, "last_check.status", 0), 500);
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

/* ---- outlier ejection ---------------------------------------------------------------- */

#define OUT_EXTRA                                                                                  \
    "        outlier: {consecutive-failures: 5, base-ejection-time: 600ms}\n"                     \
    "        circuit-breaker: false\n"                                                             \
    "        retry: false\n"

START_TEST(outlier_ejects_and_grows)
{
    struct proc s[3], d;
    char who[32];
    start_fleet(s, 3, &d, OUT_EXTRA, true);
    ck_assert_int_eq(stub_mode(&s[0], "{\"status\": 500}"), 0);
    /* round-robin: a gets every third call; its 5th failure ejects it */
    int fails = 0;
    for (int i = 0; i < 15; i++)
        fails += svc_call(&d, who, sizeof who) == 500;
    ck_assert_int_eq(fails, 5);
    ck_assert(proc_log_wait(&d, "ejected for 600 ms after 5 failed calls in a row (ejection 1)",
                            1000));
    double t0 = harness_now_ms();
    int a0 = stub_seen(&s[0], false, NULL, 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200); /* calls go elsewhere */
    if (harness_now_ms() - t0 < 500)
        ck_assert_int_eq(stub_seen(&s[0], false, NULL, 0), a0);
    /* returns after base-ejection-time: five more failures eject it for twice as long */
    ck_assert(proc_log_wait(&d, "returns to the pool", 2000));
    fails = 0;
    for (int i = 0; i < 40 && fails < 5; i++)
        fails += svc_call(&d, who, sizeof who) == 500;
    ck_assert_int_eq(fails, 5);
    ck_assert(proc_log_wait(&d, "ejected for 1200 ms after 5 failed calls in a row (ejection 2)",
                            1000));
    struct http_resp r;
    http_get(d.admin_port, "/metrics", NULL, &r);
    char want[160];
    snprintf(want, sizeof want, "ahoyd_ejections_total{service=\"svc\",endpoint=\"http://127.0.0.1:"
             "%d/api\"} 2", s[0].port);
    ck_assert_msg(strstr(r.body, want) != NULL, "no '%s' in the metrics", want);
    http_resp_free(&r);
    http_get(d.admin_port, "/v1/services", NULL, &r);
    cJSON *j = json_body(&r);
    cJSON *ep = cJSON_GetArrayItem(json_path(cJSON_GetArrayItem(json_path(j, "services"), 0),
                                             "endpoints"),
                                   0);
    ck_assert_ptr_nonnull(json_str(ep, "ejected_until"));
    ck_assert_int_eq((int)json_num(ep, "ejections", 0), 2);
    ck_assert_str_eq(json_str(ep, "health"), "unchecked");
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

START_TEST(max_ejection_percent_keeps_one)
{
    struct proc s[2], d;
    char who[32];
    start_fleet(s, 2, &d, OUT_EXTRA, false);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(stub_mode(&s[i], "{\"status\": 500}"), 0);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 500); /* never no_endpoints */
    ck_assert_int_eq(proc_log_count(&d, "(ejection 1)"), 1);
    ck_assert_int_ge(proc_log_count(&d, "not ejected after 5 failed calls"), 1);
}
END_TEST

/* ---- slow start ---------------------------------------------------------------------- */

START_TEST(slow_start_ramps_a_joined_endpoint)
{
    struct proc s[3], d;
    char who[32];
    const char *extra = "        slow-start: 3s\n";
    start_fleet(s, 2, &d, extra, false);
    ck_assert_int_eq(stub_start(&s[2], "c", NULL), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);

    char *y = fleet_yaml(s, 3, extra, false);
    FILE *f = fopen(d.conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(y, f);
    fclose(f);
    free(y);
    ck_assert_int_eq(proc_signal(&d, SIGHUP), 0);
    ck_assert(proc_log_wait(&d, "configuration reloaded", 5000));
    double t0 = harness_now_ms();
    /* just joined: about 10 % of one weight against two full ones (~5 % of calls) */
    int c_early = 0, n_early = 0;
    while (n_early < 60 && harness_now_ms() < t0 + 600) {
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        c_early += strcmp(who, "c") == 0;
        n_early++;
    }
    ck_assert_int_ge(n_early, 20);
    /* after the ramp: a full third */
    while (harness_now_ms() < t0 + 3100)
        pause_ms(20);
    int c_late = 0;
    for (int i = 0; i < 60; i++) {
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        c_late += strcmp(who, "c") == 0;
    }
    fprintf(stderr, "fleet: slow start: c got %d of %d calls at first, %d of 60 after the ramp\n",
            c_early, n_early, c_late);
    ck_assert_msg(c_early * 100 <= n_early * 15, "c got %d of %d calls just after joining",
                  c_early, n_early);
    ck_assert_msg(c_late >= 17 && c_late <= 23, "c got %d of 60 calls after the ramp", c_late);
}
END_TEST

/* ---- one endpoint of three dies under load ------------------------------------------------ */

/* Calls failed while the stub b is killed mid-run, over 1.5 s of steady calls. */
/* Kills one endpoint of three, then calls for 1.5 s (at most 8000 calls): returns the
 * calls that failed; *late and *late_total count those of the last half only, when
 * health checks (every 100 ms, 2 to fail) have long had the time to take it out. */
static int failed_when_one_dies(const char *extra, int *total, int *late, int *late_total)
{
    struct proc s[3], d;
    char who[32];
    start_fleet(s, 3, &d, extra, false);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
    proc_kill(&s[1]);
    int failed = 0;
    *total = *late = *late_total = 0;
    double start = harness_now_ms(), end = start + 1500;
    while (harness_now_ms() < end && *total < 8000) {
        bool late_call = harness_now_ms() >= start + 750;
        bool bad = svc_call(&d, who, sizeof who) != 200;
        failed += bad;
        (*total)++;
        if (late_call) {
            *late += bad;
            (*late_total)++;
        }
    }
    return failed;
}

START_TEST(one_of_three_dies)
{
    int n[3], f[3], late[3], nlate[3];
    static const char *const extra[3] = {
        "        retry: false\n",
        "        retry: false\n        circuit-breaker: false\n",
        "        retry: false\n        circuit-breaker: false\n"
        "        health-check: {path: " HP ", interval: 100ms, timeout: 100ms,\n"
        "                       unhealthy-threshold: 2}\n",
    };
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            harness_teardown();
            harness_setup();
        }
        f[i] = failed_when_one_dies(extra[i], &n[i], &late[i], &nlate[i]);
    }
    fprintf(stderr,
            "fleet: one endpoint of three killed, no retries, 1.5 s of calls: "
            "breaker only %d of %d failed; no breaker, no checks %d of %d (%d of %d in the "
            "last 0.75 s); no breaker, checks every 100 ms %d of %d (%d of %d)\n",
            f[0], n[0], f[1], n[1], late[1], nlate[1], f[2], n[2], late[2], nlate[2]);
    ck_assert_int_le(f[0], 5);                  /* the breaker opens after 5 */
    ck_assert_int_ge(f[1] * 4, n[1]);           /* every third call fails all along */
    ck_assert_int_gt(nlate[1], 0);
    ck_assert_int_ge(late[1] * 4, nlate[1]);    /* ... the last half too */
    ck_assert_int_gt(nlate[2], 0);
    ck_assert_int_eq(late[2], 0);               /* the checks took it out long before */
    ck_assert_int_lt(f[2], f[1]);
}
END_TEST

/* The health check's `headers` reach the endpoint, a User-Agent given there replacing
 * ahoyd's own; calls do not carry them. */
START_TEST(health_check_headers_are_sent)
{
    struct proc s[1], d;
    char who[32];
    start_fleet(s, 1, &d,
                "        health-check: {path: " HP ", interval: 100ms, timeout: 1s,\n"
                "                       headers: {X-Probe: deep, User-Agent: probe/1}}\n",
                false);
    ck_assert(wait_health_checks(&s[0], 2, 3000));
    ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
    cJSON *a = stub_requests(s);
    ck_assert_ptr_nonnull(a);
    int checks = 0, calls = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        const char *t = json_str(it, "target");
        const char *probe = echo_header(it, "X-Probe");
        const char *ua = echo_header(it, "User-Agent");
        if (t && strncmp(t, HP, strlen(HP)) == 0) {
            checks++;
            ck_assert_msg(probe && strcmp(probe, "deep") == 0, "X-Probe: %s",
                          probe ? probe : "(none)");
            ck_assert_msg(ua && strcmp(ua, "probe/1") == 0, "User-Agent: %s", ua ? ua : "(none)");
        } else {
            calls++;
            ck_assert_ptr_null(probe);
        }
    }
    cJSON_Delete(a);
    ck_assert_int_ge(checks, 2);
    ck_assert_int_eq(calls, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fleet");
    TCase *h = harness_tcase(s, "health");
    tcase_add_test(h, failing_health_path_stops_calls);
    tcase_add_test(h, checks_have_their_own_connections);
    tcase_add_test(h, health_check_headers_are_sent);
    tcase_add_test(h, panic_spreads_over_all);
    tcase_add_test(h, no_usable_endpoint_without_panic);
    TCase *o = harness_tcase(s, "outlier");
    tcase_add_test(o, outlier_ejects_and_grows);
    tcase_add_test(o, max_ejection_percent_keeps_one);
    TCase *w = harness_tcase(s, "slow-start");
    tcase_add_test(w, slow_start_ramps_a_joined_endpoint);
    TCase *l = harness_tcase(s, "load");
    tcase_add_test(l, one_of_three_dies);
    return harness_main(s);
}
