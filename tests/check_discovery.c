/*
 * check_discovery.c - discovery feeding a running daemon's pool: a real dnsmasq
 * (A and SRV records) and a real etcd, the daemon against stub upstreams, the
 * pool read back from /v1/services.
 *
 * DNS: the pool follows added, removed and re-weighted records; an endpoint
 * that stays keeps its open breaker across a change; with dnsmasq stopped the
 * pool keeps its set and /v1/services shows the error. etcd: keys put and
 * deleted while 20 clients run calls (no call fails, a slow call on a removed
 * endpoint completes), etcd killed and started again (the set kept, then
 * followed), a watch break resumed without missing a change, and a reload
 * with the same block keeping the set and its states. The delays measured are
 * printed ("discovery: ...").
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "sources.h"

#define DNS_BOUND_MS 3000  /* refresh 1 s plus a lookup, and margin for a loaded machine */
#define ETCD_BOUND_MS 2000 /* within a second, and margin */

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the pool as /v1/services shows it -------------------------------------------- */

static cJSON *services(const struct proc *d)
{
    struct http_resp r;
    http_get(d->admin_port, "/v1/services", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    cJSON *j = json_body(&r);
    http_resp_free(&r);
    ck_assert_ptr_nonnull(j);
    return j;
}

static const cJSON *service0(const cJSON *j)
{
    return cJSON_GetArrayItem(json_path(j, "services"), 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* items[0..n) sorted, space-separated, into out; frees them. */
static void join_sorted(char **items, int n, char *out, size_t cap)
{
    qsort(items, (size_t)n, sizeof *items, cmp_str);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i)
            strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, items[i], cap - strlen(out) - 1);
        free(items[i]);
    }
}

/* "url=weight" of every endpoint, sorted, space-separated, into out. */
static void pool_text(const struct proc *d, char *out, size_t cap)
{
    cJSON *j = services(d);
    char *items[64];
    int n = 0;
    const cJSON *ep;
    cJSON_ArrayForEach(ep, json_path(service0(j), "endpoints"))
    {
        if (n == 64)
            break;
        ck_assert_int_ge(asprintf(&items[n], "%s=%d", json_str(ep, "url"),
                                  (int)json_num(ep, "weight", 0)),
                         0);
        n++;
    }
    join_sorted(items, n, out, cap);
    cJSON_Delete(j);
}

/* Poll /v1/services until the pool is want: the ms it took, or -1 after timeout_ms. */
static double wait_pool(const struct proc *d, const char *want, int timeout_ms)
{
    double t0 = harness_now_ms(), end = t0 + timeout_ms;
    char got[4096];
    while (harness_now_ms() < end) {
        pool_text(d, got, sizeof got);
        if (strcmp(got, want) == 0)
            return harness_now_ms() - t0;
        pause_ms(10);
    }
    return -1;
}

#define ASSERT_POOL(d, want, bound, what)                                                          \
    do {                                                                                           \
        double ms_ = wait_pool((d), (want), 5 * (bound));                                          \
        char got_[4096];                                                                           \
        pool_text((d), got_, sizeof got_);                                                         \
        ck_assert_msg(ms_ >= 0, "%s: the pool is \"%s\", want \"%s\"", (what), got_, (want));      \
        printf("discovery: %s reached the pool in %.0f ms\n", (what), ms_);                        \
        ck_assert_msg(ms_ <= (bound), "%s took %.0f ms (bound %d)", (what), ms_, (bound));         \
    } while (0)

/* A copy of field of the endpoint with url ("" when there is none). */
static void endpoint_field(const struct proc *d, const char *url, const char *field, char *out,
                           size_t cap)
{
    cJSON *j = services(d);
    const cJSON *ep;
    out[0] = '\0';
    cJSON_ArrayForEach(ep, json_path(service0(j), "endpoints"))
    {
        if (strcmp(json_str(ep, "url"), url) != 0)
            continue;
        const cJSON *f = json_path(ep, field);
        if (cJSON_IsString(f))
            snprintf(out, cap, "%s", f->valuestring);
        else if (cJSON_IsNumber(f))
            snprintf(out, cap, "%g", f->valuedouble);
    }
    cJSON_Delete(j);
}

/* The daemon's metric sample line value (name{labels} as written), -1 when absent. */
static double metric(const struct proc *d, const char *sample)
{
    struct http_resp r;
    http_get(d->admin_port, "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    const char *at = strstr(r.body, sample);
    double v = -1;
    if (at && at[strlen(sample)] == ' ')
        v = atof(at + strlen(sample) + 1);
    http_resp_free(&r);
    return v;
}

/* The daemon's /metrics through `promtool check metrics`: exit 0, no lint finding
 * (skipped without promtool, failed under CI=true). */
static void promtool_lint(const struct proc *d)
{
    const char *tool = promtool_need("discovery");
    if (!tool)
        return;
    struct http_resp r;
    http_get(d->admin_port, "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    promtool_check(tool, r.body);
    http_resp_free(&r);
}

static char *daemon_yaml(const char *discovery, const char *extra)
{
    char *y = NULL;
    ck_assert_int_ge(asprintf(&y,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: 127.0.0.1:0\n"
                              "  access-log: off\n"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        discovery:\n%s%s",
                              discovery, extra ? extra : ""),
                     0);
    return y;
}

/* Stubs a, b and c. */
static void start_abc(struct proc s[3])
{
    static const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(stub_start(&s[i], names[i], NULL), 0);
}

/* Calls, at most max, until n of them were answered 500: how many were. */
static int calls_failing(const struct proc *d, int n, int max)
{
    char who[32];
    int fails = 0;
    for (int i = 0; i < max && fails < n; i++)
        fails += svc_call(d, who, sizeof who) == 500;
    return fails;
}

/* Poll /v1/services until the service shows the error message at path (bounded). */
static bool error_shown(const struct proc *d, const char *path, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    bool shown = false;
    while (!shown && harness_now_ms() < end) {
        cJSON *j = services(d);
        shown = json_str(service0(j), path) != NULL;
        cJSON_Delete(j);
        if (!shown)
            pause_ms(50);
    }
    return shown;
}

/* ---- load ------------------------------------------------------------------------- */

struct load {
    const struct proc *d;
    double until_ms;
    int calls, failed;
    long last_bad;
};

static void *load_run(void *arg)
{
    struct load *l = arg;
    char who[32];
    for (int i = 0; i < 100000 && harness_now_ms() < l->until_ms; i++) {
        long st = svc_call(l->d, who, sizeof who);
        l->calls++;
        if (st != 200) {
            l->failed++;
            l->last_bad = st;
        }
    }
    return NULL;
}

#define CLIENTS 20

struct clients {
    pthread_t t[CLIENTS];
    struct load l[CLIENTS];
};

static void clients_start(struct clients *c, const struct proc *d, int ms)
{
    double until = harness_now_ms() + ms;
    for (int i = 0; i < CLIENTS; i++) {
        c->l[i] = (struct load){.d = d, .until_ms = until};
        ck_assert_int_eq(pthread_create(&c->t[i], NULL, load_run, &c->l[i]), 0);
    }
}

/* Join the clients; the calls made and *failed those that did not answer 200. */
static int clients_join(struct clients *c, int *failed, long *last_bad)
{
    int calls = 0;
    *failed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(c->t[i], NULL);
        calls += c->l[i].calls;
        *failed += c->l[i].failed;
        if (c->l[i].failed)
            *last_bad = c->l[i].last_bad;
    }
    return calls;
}

/* The pool of stubs s[0..n) with weights w as pool_text shows it (sorted). */
static void want_pool(char *out, size_t cap, int n, const struct proc *const *s, const int *w)
{
    char *items[8];
    for (int i = 0; i < n; i++)
        ck_assert_int_ge(asprintf(&items[i], "http://127.0.0.1:%d/api=%d", s[i]->port, w[i]), 0);
    join_sorted(items, n, out, cap);
}

#define POOL_OF(out, ...)                                                                          \
    do {                                                                                           \
        const struct proc *const ps_[] = {__VA_ARGS__};                                            \
        int ws_[8] = {1, 1, 1, 1, 1, 1, 1, 1};                                                     \
        want_pool((out), sizeof(out), (int)(sizeof ps_ / sizeof ps_[0]), ps_, ws_);                \
    } while (0)

/* ---- DNS -------------------------------------------------------------------------- */

/* A records: three stubs on 127.0.0.11-13 and one port (b answers 500); the pool
 * follows the records, b's open breaker survives a change, a stopped server keeps the
 * set and shows the error. */
START_TEST(dns_a_records_feed_the_pool)
{
    struct proc s[3], d;
    ck_assert_int_eq(stub_start(&s[0], "a", "--listen 127.0.0.11:0"), 0);
    char args[128];
    snprintf(args, sizeof args, "--listen 127.0.0.12:%d --status 500", s[0].port);
    ck_assert_int_eq(stub_start(&s[1], "b", args), 0);
    snprintf(args, sizeof args, "--listen 127.0.0.13:%d", s[0].port);
    ck_assert_int_eq(stub_start(&s[2], "c", args), 0);
    int port = s[0].port;
    struct dnsmasq m;
    dnsmasq_start(&m, "", "127.0.0.11 svc.test\n127.0.0.12 svc.test\n");
    char disc[256], ua[64], ub[64], uc[64], want[512];
    snprintf(disc, sizeof disc,
             "          dns: {name: svc.test, type: a, port: %d, server: '127.0.0.1:%d', "
             "refresh: 1s}\n",
             port, m.port);
    char *y = daemon_yaml(disc, "        circuit-breaker: {failure-threshold: 2, "
                                "recovery-timeout: 60s}\n        retry: false\n");
    ck_assert_int_eq(ahoyd_start(&d, y), 0);
    free(y);
    snprintf(ua, sizeof ua, "http://127.0.0.11:%d", port);
    snprintf(ub, sizeof ub, "http://127.0.0.12:%d", port);
    snprintf(uc, sizeof uc, "http://127.0.0.13:%d", port);

    snprintf(want, sizeof want, "%s=1 %s=1", ua, ub);
    ASSERT_POOL(&d, want, DNS_BOUND_MS, "the first A answer");
    char f[64];
    endpoint_field(&d, ua, "source", f, sizeof f);
    ck_assert_str_eq(f, "dns");
    /* b's breaker opens: two failed calls */
    char who[32];
    ck_assert_int_eq(calls_failing(&d, 2, 20), 2);
    endpoint_field(&d, ub, "state", f, sizeof f);
    ck_assert_str_eq(f, "open");

    double t0 = harness_now_ms();
    dnsmasq_hosts(&m, "127.0.0.12 svc.test\n127.0.0.13 svc.test\n");
    snprintf(want, sizeof want, "%s=1 %s=1", ub, uc);
    ASSERT_POOL(&d, want, DNS_BOUND_MS, "an A record added and one removed");
    printf("discovery: dns change to pool (from the change): %.0f ms\n", harness_now_ms() - t0);
    endpoint_field(&d, ub, "state", f, sizeof f);
    ck_assert_msg(strcmp(f, "open") == 0, "b kept its breaker: %s", f);
    endpoint_field(&d, ub, "transitions.open", f, sizeof f);
    ck_assert_str_eq(f, "1");
    endpoint_field(&d, uc, "state", f, sizeof f);
    ck_assert_str_eq(f, "closed");
    for (int i = 0; i < 4; i++) { /* only c takes calls: b is open, a is gone */
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        ck_assert_str_eq(who, "c");
    }
    ck_assert(proc_log_wait(&d, "+http://127.0.0.13", 2000));
    ck_assert(proc_log_wait(&d, "-http://127.0.0.11", 2000));
    char sample[128];
    snprintf(sample, sizeof sample,
             "ahoyd_discovery_updates_total{service=\"svc\",source=\"dns\"}");
    ck_assert(metric(&d, sample) >= 2);
    snprintf(sample, sizeof sample, "ahoyd_discovery_endpoints{service=\"svc\",source=\"dns\"}");
    ck_assert(metric(&d, sample) == 2);

    /* the server stopped: the set stays, the error shows */
    proc_kill(&m.p);
    ck_assert_msg(error_shown(&d, "discovery.dns.last_error.message", 15000),
                  "no error in /v1/services with the DNS server stopped");
    cJSON *j = services(&d);
    printf("discovery: dns server stopped: %s\n",
           json_str(service0(j), "discovery.dns.last_error.message"));
    ck_assert_ptr_nonnull(json_str(service0(j), "discovery.dns.last_success"));
    cJSON_Delete(j);
    char got[512];
    pool_text(&d, got, sizeof got);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
    snprintf(sample, sizeof sample,
             "ahoyd_discovery_errors_total{service=\"svc\",source=\"dns\"}");
    ck_assert(metric(&d, sample) >= 1);
    promtool_lint(&d);
    /* back: followed again */
    dnsmasq_run(&m);
    dnsmasq_hosts(&m, "127.0.0.11 svc.test\n");
    snprintf(want, sizeof want, "%s=1", ua);
    ASSERT_POOL(&d, want, 3 * DNS_BOUND_MS, "a change after the DNS server came back");
}
END_TEST

/* SRV: targets, ports and weights; a re-weight, an added and a removed target. */
START_TEST(dns_srv_records_feed_the_pool)
{
    struct proc s[3], d;
    start_abc(s);
    char conf[1024], disc[256], want[512];
    snprintf(conf, sizeof conf,
             "srv-host=_http._tcp.svc.test,t1.test,%d,10,1\n"
             "srv-host=_http._tcp.svc.test,t2.test,%d,10,3\n"
             "host-record=t1.test,127.0.0.1\nhost-record=t2.test,127.0.0.1\n"
             "host-record=t3.test,127.0.0.1\n",
             s[0].port, s[1].port);
    struct dnsmasq m;
    dnsmasq_start(&m, conf, "");
    snprintf(disc, sizeof disc,
             "          dns: {name: _http._tcp.svc.test, type: srv, base-path: /api, "
             "server: '127.0.0.1:%d', refresh: 1s}\n",
             m.port);
    char *y = daemon_yaml(disc, NULL);
    ck_assert_int_eq(ahoyd_start(&d, y), 0);
    free(y);
    const struct proc *const ab[] = {&s[0], &s[1]}, *const abc[] = {&s[0], &s[1], &s[2]},
                             *const bc[] = {&s[1], &s[2]};
    want_pool(want, sizeof want, 2, ab, (int[]){1, 3});
    ASSERT_POOL(&d, want, DNS_BOUND_MS, "the first SRV answer");
    /* weights are used: b takes about three calls in four */
    char who[32];
    int to_b = 0;
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        to_b += strcmp(who, "b") == 0;
    }
    ck_assert_msg(to_b >= 25 && to_b <= 35, "b took %d of 40 calls (weight 3 of 4)", to_b);

    snprintf(conf, sizeof conf,
             "srv-host=_http._tcp.svc.test,t1.test,%d,10,2\n"
             "srv-host=_http._tcp.svc.test,t2.test,%d,10,3\n"
             "srv-host=_http._tcp.svc.test,t3.test,%d,10,0\n"
             "host-record=t1.test,127.0.0.1\nhost-record=t2.test,127.0.0.1\n"
             "host-record=t3.test,127.0.0.1\n",
             s[0].port, s[1].port, s[2].port);
    dnsmasq_conf(&m, conf);
    want_pool(want, sizeof want, 3, abc, (int[]){2, 3, 1});
    ASSERT_POOL(&d, want, 2 * DNS_BOUND_MS, "an SRV re-weight and an added target");
    snprintf(conf, sizeof conf,
             "srv-host=_http._tcp.svc.test,t2.test,%d,10,3\n"
             "srv-host=_http._tcp.svc.test,t3.test,%d,10,0\n"
             "host-record=t2.test,127.0.0.1\nhost-record=t3.test,127.0.0.1\n",
             s[1].port, s[2].port);
    dnsmasq_conf(&m, conf);
    want_pool(want, sizeof want, 2, bc, (int[]){3, 1});
    ASSERT_POOL(&d, want, 2 * DNS_BOUND_MS, "an SRV target removed");
    ck_assert(proc_log_wait(&d, "~http://127.0.0.1", 2000)); /* the re-weight was logged */
    /* no record left (NXDOMAIN): the pool is empty and the service answers no_endpoints */
    dnsmasq_conf(&m, "host-record=t1.test,127.0.0.1\n");
    ASSERT_POOL(&d, "", 2 * DNS_BOUND_MS, "the last SRV record gone");
    struct http_resp r;
    http_get(d.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "no_endpoints", "svc", 0);
    http_resp_free(&r);
}
END_TEST

/* ---- etcd ------------------------------------------------------------------------- */

/* /svc/<key> (or key, when it starts with '/') = the endpoint of stub s with weight w. */
static void etcd_put_stub(const struct etcd *e, const char *key, const struct proc *s, int w)
{
    char value[256], full[128];
    snprintf(full, sizeof full, key[0] == '/' ? "%s" : "/svc/%s", key);
    snprintf(value, sizeof value, "{\"url\":\"http://127.0.0.1:%d/api\",\"weight\":%d}", s->port,
             w);
    etcd_put(e, full, value);
}

static void etcd_daemon(struct proc *d, const struct etcd *e, const char *extra, char **yaml)
{
    char disc[256];
    snprintf(disc, sizeof disc,
             "          etcd: {endpoints: ['http://127.0.0.1:%d'], prefix: /svc/}\n", e->port);
    char *y = daemon_yaml(disc, extra);
    ck_assert_int_eq(ahoyd_start(d, y), 0);
    if (yaml)
        *yaml = y;
    else
        free(y);
}

/* Stubs a, b and c, etcd with a and b, the daemon following it: the pool is a and b. */
static void etcd_ab(struct proc s[3], struct etcd *e, struct proc *d)
{
    start_abc(s);
    etcd_start(e);
    etcd_put_stub(e, "a", &s[0], 1);
    etcd_put_stub(e, "b", &s[1], 1);
    etcd_daemon(d, e, NULL, NULL);
    char want[512];
    POOL_OF(want, &s[0], &s[1]);
    ASSERT_POOL(d, want, 10000, "the first etcd range");
}

/* Keys put and deleted while 20 clients call: no call fails; a slow call on a removed
 * endpoint completes. */
START_TEST(etcd_changes_under_load)
{
    struct proc s[3], d;
    struct etcd e;
    etcd_ab(s, &e, &d);
    char want[512];
    char f[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/api", s[0].port);
    endpoint_field(&d, want, "source", f, sizeof f);
    ck_assert_str_eq(f, "etcd");

    struct clients c;
    clients_start(&c, &d, 10000);
    int changes = 0;
    double t0 = harness_now_ms(), worst = 0;
#define CHANGE(what, ...)                                                                          \
    do {                                                                                           \
        POOL_OF(want, __VA_ARGS__);                                                                \
        double ms_ = wait_pool(&d, want, 5 * ETCD_BOUND_MS);                                       \
        ck_assert_msg(ms_ >= 0, "%s: the pool never became %s", (what), want);                    \
        worst = ms_ > worst ? ms_ : worst;                                                         \
        changes++;                                                                                 \
        pause_ms(500); /* the changes spread over the clients' run */                              \
    } while (0)
    etcd_put_stub(&e, "c", &s[2], 1);
    CHANGE("c added", &s[0], &s[1], &s[2]);
    etcd_delete(&e, "/svc/a");
    CHANGE("a removed", &s[1], &s[2]);
    etcd_put_stub(&e, "a", &s[0], 1);
    CHANGE("a back", &s[0], &s[1], &s[2]);
    etcd_delete(&e, "/svc/b");
    CHANGE("b removed", &s[0], &s[2]);
    etcd_delete(&e, "/svc/c");
    CHANGE("c removed", &s[0]);
    /* a slow call on a, then a removed while it runs */
    ck_assert_int_eq(stub_mode(&s[0], "{\"delay_ms\": 1500, \"path\": \"/api/slow\"}"), 0);
    struct http_req q = {.url = NULL, .timeout_ms = 10000};
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/svc/slow", d.port);
    q.url = url;
    struct http_async *slow = http_async_start(&q);
    bool seen = false;
    for (double end = harness_now_ms() + 5000; !seen && harness_now_ms() < end;) {
        cJSON *a = stub_requests(&s[0]);
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
            const char *t = json_str(it, "target");
            seen |= t && strcmp(t, "/api/slow") == 0;
        }
        cJSON_Delete(a);
        if (!seen)
            pause_ms(10);
    }
    ck_assert_msg(seen, "the slow call did not reach a");
    etcd_put_stub(&e, "c", &s[2], 1);
    CHANGE("c back", &s[0], &s[2]);
    etcd_delete(&e, "/svc/a");
    CHANGE("a removed with a call running", &s[2]);
    struct http_resp r;
    ck_assert_int_eq(http_async_finish(slow, &r), 0);
    ck_assert_msg(r.status == 200, "the slow call on the removed endpoint: %ld %s", r.status,
                  r.body);
    cJSON *j = json_body(&r);
    ck_assert_str_eq(json_str(j, "upstream"), "a");
    cJSON_Delete(j);
    http_resp_free(&r);
    etcd_put_stub(&e, "a", &s[0], 2);
    etcd_put_stub(&e, "b", &s[1], 1);
    {
        const struct proc *const ps[] = {&s[0], &s[1], &s[2]};
        int ws[] = {2, 1, 1};
        want_pool(want, sizeof want, 3, ps, ws);
        double ms = wait_pool(&d, want, 5 * ETCD_BOUND_MS);
        ck_assert_msg(ms >= 0, "the last change");
        changes++;
    }
    double spent = harness_now_ms() - t0;
    int failed = 0;
    long last_bad = 0;
    int calls = clients_join(&c, &failed, &last_bad);
    printf("discovery: etcd under load: %d changes in %.0f ms (slowest %.0f ms to the pool), "
           "%d calls by %d clients, %d failed\n",
           changes, spent, worst, calls, CLIENTS, failed);
    ck_assert_msg(failed == 0, "%d of %d calls failed (last status %ld)", failed, calls,
                  last_bad);
    ck_assert_int_gt(calls, CLIENTS * 5);
    ck_assert_msg(worst <= ETCD_BOUND_MS, "a change took %.0f ms to reach the pool", worst);
#undef CHANGE
}
END_TEST

/* etcd killed: the set stays and the error shows; started again: followed again; a
 * watch break (the watcher kept away while keys change) misses nothing. */
START_TEST(etcd_down_then_back_and_a_broken_watch)
{
    struct proc s[3], d;
    struct etcd e;
    etcd_ab(s, &e, &d);
    char want[512], got[512], who[32];
    pause_ms(300); /* the watch is established */
    double t0 = harness_now_ms();
    etcd_put_stub(&e, "c", &s[2], 1);
    POOL_OF(want, &s[0], &s[1], &s[2]);
    ASSERT_POOL(&d, want, ETCD_BOUND_MS, "an etcd put");
    printf("discovery: etcd change to pool (from the put): %.0f ms\n", harness_now_ms() - t0);

    proc_kill(&e.p);
    ck_assert_msg(error_shown(&d, "discovery.etcd.last_error.message", 15000),
                  "no error in /v1/services with etcd down");
    pool_text(&d, got, sizeof got);
    ck_assert_str_eq(got, want);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);

    /* back, with a change made as it returns */
    etcd_run(&e, true);
    etcd_delete(&e, "/svc/b");
    POOL_OF(want, &s[0], &s[2]);
    ASSERT_POOL(&d, want, 12000, "a change after etcd came back");

    /* the watch broken: etcd away from the watcher while keys change */
    pause_ms(300);
    etcd_restart(&e, false);
    etcd_put_stub(&e, "b", &s[1], 1);
    etcd_delete(&e, "/svc/a");
    pool_text(&d, got, sizeof got);
    POOL_OF(want, &s[0], &s[2]);
    ck_assert_str_eq(got, want); /* the watcher has not seen it yet */
    etcd_restart(&e, true);
    POOL_OF(want, &s[1], &s[2]);
    ASSERT_POOL(&d, want, 12000, "changes made while the watch was broken");
}
END_TEST

/* Write yaml as d's configuration and reload it (SIGHUP); asserts it was reloaded. */
static void reload_with(struct proc *d, const char *yaml)
{
    harness_write_file(d->conf_path, yaml);
    int reloads = proc_log_count(d, "configuration reloaded");
    ck_assert_int_eq(proc_signal(d, SIGHUP), 0);
    for (double end = harness_now_ms() + 5000;
         proc_log_count(d, "configuration reloaded") == reloads && harness_now_ms() < end;)
        pause_ms(10);
    ck_assert_int_eq(proc_log_count(d, "configuration reloaded"), reloads + 1);
}

/* A reload with the same discovery block: the set, its breakers and counters stay, the
 * source is not started again; a changed block starts it again, a removed one drops
 * its endpoints. */
START_TEST(reload_keeps_the_discovered_set)
{
    struct proc s[2], d;
    ck_assert_int_eq(stub_start(&s[0], "a", NULL), 0);
    ck_assert_int_eq(stub_start(&s[1], "b", "--status 500"), 0);
    struct etcd e;
    etcd_start(&e);
    etcd_put_stub(&e, "a", &s[0], 1);
    etcd_put_stub(&e, "b", &s[1], 1);
    struct proc c;
    ck_assert_int_eq(stub_start(&c, "c", NULL), 0);
    char *y = NULL;
    etcd_daemon(&d, &e,
                "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 60s}\n"
                "        retry: false\n",
                &y);
    char want[512], got[512], who[32], f[64], ub[64];
    POOL_OF(want, &s[0], &s[1]);
    ASSERT_POOL(&d, want, 10000, "the first etcd range");
    ck_assert_int_eq(calls_failing(&d, 2, 20), 2);
    snprintf(ub, sizeof ub, "http://127.0.0.1:%d/api", s[1].port);
    endpoint_field(&d, ub, "state", f, sizeof f);
    ck_assert_str_eq(f, "open");
    char sample[128];
    snprintf(sample, sizeof sample,
             "ahoyd_discovery_updates_total{service=\"svc\",source=\"etcd\"}");
    double updates = metric(&d, sample);
    ck_assert(updates >= 1);

    /* the same block, another timeout */
    char *y2 = NULL;
    ck_assert_int_ge(asprintf(&y2, "%s        timeout: 5s\n", y), 0);
    reload_with(&d, y2);
    free(y2);
    pool_text(&d, got, sizeof got);
    ck_assert_str_eq(got, want);
    endpoint_field(&d, ub, "state", f, sizeof f);
    ck_assert_msg(strcmp(f, "open") == 0, "b's breaker after the reload: %s", f);
    endpoint_field(&d, ub, "attempts.5xx", f, sizeof f);
    ck_assert_str_eq(f, "2");
    ck_assert_int_eq(proc_log_count(&d, "its source starts again"), 0);
    ck_assert(metric(&d, sample) == updates);
    ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
    ck_assert_str_eq(who, "a");
    /* and it still follows */
    etcd_delete(&e, "/svc/a");
    POOL_OF(want, &s[1]);
    ASSERT_POOL(&d, want, ETCD_BOUND_MS, "an etcd change after the reload");

    /* a changed block: its source starts again and the pool follows the new prefix */
    char *y3 = strdup(y);
    char *at = strstr(y3, "prefix: /svc/");
    ck_assert_ptr_nonnull(at);
    memcpy(at, "prefix: /oth/", strlen("prefix: /oth/"));
    etcd_put_stub(&e, "/oth/c", &c, 1);
    reload_with(&d, y3);
    ck_assert_int_eq(proc_log_count(&d, "its source starts again"), 1);
    POOL_OF(want, &c);
    ASSERT_POOL(&d, want, ETCD_BOUND_MS, "a changed etcd block after a reload");
    /* the block removed: its endpoints leave, a static one stays */
    char *y4 = NULL;
    ck_assert_int_ge(asprintf(&y4,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: 127.0.0.1:0\n"
                              "  access-log: off\n"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        base-url: http://127.0.0.1:%d/api\n",
                              s[0].port),
                     0);
    reload_with(&d, y4);
    POOL_OF(want, &s[0]);
    pool_text(&d, got, sizeof got);
    ck_assert_str_eq(got, want);
    snprintf(ub, sizeof ub, "http://127.0.0.1:%d/api", s[0].port);
    endpoint_field(&d, ub, "source", f, sizeof f);
    ck_assert_str_eq(f, "static");
    free(y3);
    free(y4);
    free(y);
}
END_TEST

/* A retry during which the pool changes: the endpoints the call tried are known by
 * identity, not by place (x opens and leaves, c joins where a was). */
START_TEST(retry_across_a_pool_change)
{
    struct proc x, a, c, d;
    ck_assert_int_eq(stub_start(&x, "x", "--status 500"), 0);
    ck_assert_int_eq(stub_start(&a, "a", NULL), 0);
    ck_assert_int_eq(stub_start(&c, "c", NULL), 0);
    struct etcd e;
    etcd_start(&e);
    etcd_put_stub(&e, "1x", &x, 1);
    etcd_put_stub(&e, "2a", &a, 1);
    etcd_daemon(&d, &e,
                "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 60s}\n"
                "        retry: {max-attempts: 2, base-delay: 1s, retry-on: [503]}\n",
                NULL);
    char want[512];
    POOL_OF(want, &x, &a);
    ASSERT_POOL(&d, want, 10000, "the first etcd range");
    /* x is open then; a, which one 503 does not open, is not */
    ck_assert_int_eq(calls_failing(&d, 2, 8), 2);
    ck_assert_int_eq(stub_mode(&a, "{\"status\": 503, \"path\": \"/api/r\"}"), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/svc/r", d.port);
    struct http_req q = {.url = url, .timeout_ms = 10000};
    long before = stub_count(&a);
    struct http_async *call_r = http_async_start(&q);
    ck_assert(stub_wait_count(&a, before + 1, 5000)); /* its first attempt reached a */
    etcd_delete(&e, "/svc/1x");
    etcd_put_stub(&e, "3c", &c, 1);
    POOL_OF(want, &a, &c);
    ck_assert_msg(wait_pool(&d, want, 800) >= 0, "the pool did not change during the backoff");
    struct http_resp r;
    ck_assert_int_eq(http_async_finish(call_r, &r), 0);
    cJSON *j = json_body(&r);
    ck_assert_msg(r.status == 200 && j && strcmp(json_str(j, "upstream"), "c") == 0,
                  "the retry went to %s (status %ld): it must go to the endpoint not tried",
                  j && json_str(j, "upstream") ? json_str(j, "upstream") : "nowhere", r.status);
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

/* An endpoint that joins a service with health checks starts unhealthy and is checked
 * at once (not an interval later): failing its check, it gets no call. */
START_TEST(joined_endpoint_is_checked_at_once)
{
    struct proc a, b, d;
    ck_assert_int_eq(stub_start(&a, "a", NULL), 0);
    ck_assert_int_eq(stub_start(&b, "b", NULL), 0);
    ck_assert_int_eq(stub_mode(&b, "{\"status\": 500, \"path\": \"/healthz\"}"), 0);
    struct etcd e;
    etcd_start(&e);
    etcd_put_stub(&e, "a", &a, 1);
    etcd_daemon(&d, &e,
                "        health-check: {path: /healthz, interval: 30s, unhealthy-threshold: 1}\n",
                NULL);
    char want[512], who[32], f[64], ub[64];
    POOL_OF(want, &a);
    ASSERT_POOL(&d, want, 10000, "the first etcd range");
    etcd_put_stub(&e, "b", &b, 1);
    POOL_OF(want, &a, &b);
    ASSERT_POOL(&d, want, ETCD_BOUND_MS, "an endpoint joining");
    ck_assert(stub_wait_count(&b, 1, 2000)); /* its first check, not 30 s later */
    snprintf(ub, sizeof ub, "http://127.0.0.1:%d/api", b.port);
    endpoint_field(&d, ub, "health", f, sizeof f);
    ck_assert_str_eq(f, "unhealthy");
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
        ck_assert_str_eq(who, "a");
    }
}
END_TEST

/* ---- one endpoint of three dies under load (a measurement) ---------------------- */

static int one_dies(const char *extra, int *calls_out)
{
    struct proc s[3], d;
    start_abc(s);
    char *y = NULL;
    ck_assert_int_ge(asprintf(&y,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
                              "  access-log: off\n"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        endpoints: [http://127.0.0.1:%d, http://127.0.0.1:%d, "
                              "http://127.0.0.1:%d]\n        retry: false\n%s",
                              s[0].port, s[1].port, s[2].port, extra),
                     0);
    ck_assert_int_eq(ahoyd_start(&d, y), 0);
    free(y);
    struct clients c;
    clients_start(&c, &d, 3000);
    pause_ms(1000); /* load running: then b dies */
    proc_kill(&s[1]);
    int failed = 0;
    long last_bad = 0;
    *calls_out = clients_join(&c, &failed, &last_bad);
    ck_assert_int_eq(proc_stop(&d), 0);
    return failed;
}

START_TEST(one_of_three_dies_under_load)
{
    int calls_plain = 0, calls_checked = 0;
    int plain = one_dies("", &calls_plain);
    int checked = one_dies("        health-check: {path: /healthz, interval: 100ms, timeout: "
                           "100ms, unhealthy-threshold: 1}\n",
                           &calls_checked);
    printf("discovery: one endpoint of three killed under load (%d clients, retry off): "
           "%d of %d calls failed without health checks, %d of %d with them (every 100 ms)\n",
           CLIENTS, plain, calls_plain, checked, calls_checked);
    ck_assert_int_gt(calls_plain, 0);
    ck_assert_int_gt(calls_checked, 0);
    ck_assert_int_lt(plain, calls_plain / 3); /* the breaker stops sending there */
    ck_assert_int_lt(checked, calls_checked / 3);
}
END_TEST

/* A reload to another prefix while etcd is down: the old prefix's endpoints leave at
 * once (the new source may never answer) and the source's counts begin afresh. */
START_TEST(reload_to_a_new_prefix_with_etcd_down)
{
    struct proc a, d;
    ck_assert_int_eq(stub_start(&a, "a", NULL), 0);
    struct etcd e;
    etcd_start(&e);
    etcd_put_stub(&e, "a", &a, 1);
    char *y = NULL, want[512], got[512], who[32];
    etcd_daemon(&d, &e, NULL, &y);
    POOL_OF(want, &a);
    ASSERT_POOL(&d, want, 10000, "the first etcd range");
    ck_assert_int_eq(svc_call(&d, who, sizeof who), 200);
    const char *sample = "ahoyd_discovery_updates_total{service=\"svc\",source=\"etcd\"}";
    ck_assert(metric(&d, sample) >= 1);
    proc_kill(&e.p);
    char *at = strstr(y, "prefix: /svc/");
    ck_assert_ptr_nonnull(at);
    memcpy(at, "prefix: /oth/", strlen("prefix: /oth/"));
    reload_with(&d, y);
    pool_text(&d, got, sizeof got);
    ck_assert_str_eq(got, "");
    struct http_resp r;
    http_get(d.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "no_endpoints", "svc", 0);
    http_resp_free(&r);
    ck_assert(metric(&d, sample) == 0);
    free(y);
}
END_TEST

int main(void)
{
    bool dns = sources_have(DNSMASQ, "dnsmasq-base"), etcd = sources_have(ETCD, "etcd-server");
    if ((!dns || !etcd) && sources_in_ci())
        return 1;
    Suite *s = suite_create("discovery");
    TCase *tc = harness_tcase(s, "discovery");
    if (dns) {
        tcase_add_test(tc, dns_a_records_feed_the_pool);
        tcase_add_test(tc, dns_srv_records_feed_the_pool);
    }
    if (etcd) {
        tcase_add_test(tc, etcd_changes_under_load);
        tcase_add_test(tc, etcd_down_then_back_and_a_broken_watch);
        tcase_add_test(tc, reload_keeps_the_discovered_set);
        tcase_add_test(tc, retry_across_a_pool_change);
        tcase_add_test(tc, joined_endpoint_is_checked_at_once);
        tcase_add_test(tc, reload_to_a_new_prefix_with_etcd_down);
    }
    tcase_add_test(tc, one_of_three_dies_under_load);
    if (!dns && !etcd)
        fprintf(stderr, "SKIP: the discovery tests need dnsmasq and etcd\n");
    return harness_main(s);
}
