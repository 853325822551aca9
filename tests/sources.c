/*
 * sources.c - dnsmasq and etcd for the discovery suites, and the recorder and loop
 * driver of the source suites.
 */
#include "sources.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd_parse.h"
#include "harness.h"
#include "log.h"

/* ---- dnsmasq ------------------------------------------------------------------------ */

void dnsmasq_run(struct dnsmasq *d)
{
    char port[32], conf[420], hosts[420];
    snprintf(port, sizeof port, "--port=%d", d->port);
    snprintf(conf, sizeof conf, "--conf-file=%s", d->conf);
    snprintf(hosts, sizeof hosts, "--addn-hosts=%s", d->hosts);
    char *argv[] = {DNSMASQ,
                    "--no-daemon",
                    port,
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    conf,
                    hosts,
                    "--local=/test/",
                    "--log-facility=-",
                    NULL};
    ck_assert_int_eq(proc_spawn(&d->p, argv, d->log), 0);
    if (!port_wait_open(d->port, 10000)) {
        char *log = proc_log(&d->p);
        ck_abort_msg("dnsmasq did not start on port %d: %s", d->port, log);
    }
}

void dnsmasq_start(struct dnsmasq *d, const char *conf, const char *hosts)
{
    memset(d, 0, sizeof *d);
    ck_assert_int_eq(harness_temp_dir(d->dir, sizeof d->dir), 0);
    snprintf(d->conf, sizeof d->conf, "%s/dnsmasq.conf", d->dir);
    snprintf(d->hosts, sizeof d->hosts, "%s/hosts", d->dir);
    snprintf(d->log, sizeof d->log, "%s/dnsmasq.log", d->dir);
    harness_write_file(d->conf, conf);
    harness_write_file(d->hosts, hosts);
    d->port = free_dns_port();
    ck_assert_int_gt(d->port, 0);
    dnsmasq_run(d);
}

void dnsmasq_hosts(struct dnsmasq *d, const char *hosts)
{
    harness_write_file(d->hosts, hosts);
    ck_assert_int_eq(proc_signal(&d->p, SIGHUP), 0);
}

void dnsmasq_conf(struct dnsmasq *d, const char *conf)
{
    harness_write_file(d->conf, conf);
    proc_kill(&d->p);
    dnsmasq_run(d);
}

/* ---- etcd --------------------------------------------------------------------------- */

void etcd_run(struct etcd *e, bool watcher_port)
{
    char listen[128], adv[64], peer[64], cluster[80];
    if (watcher_port)
        snprintf(listen, sizeof listen, "http://127.0.0.1:%d,http://127.0.0.1:%d", e->port,
                 e->side_port);
    else
        snprintf(listen, sizeof listen, "http://127.0.0.1:%d", e->side_port);
    snprintf(adv, sizeof adv, "http://127.0.0.1:%d", e->side_port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", e->peer_port);
    snprintf(cluster, sizeof cluster, "t=http://127.0.0.1:%d", e->peer_port);
    char *argv[] = {ETCD,    "--name",
                    "t",     "--data-dir",
                    e->data, "--listen-client-urls",
                    listen,  "--advertise-client-urls",
                    adv,     "--listen-peer-urls",
                    peer,    "--initial-advertise-peer-urls",
                    peer,    "--initial-cluster",
                    cluster, "--log-level",
                    "warn",  NULL};
    ck_assert_int_eq(proc_spawn(&e->p, argv, e->log), 0);
    double end = harness_now_ms() + 30000;
    while (harness_now_ms() < end) {
        struct http_resp r;
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/health", e->side_port);
        struct http_req q = {.url = url, .timeout_ms = 1000};
        bool up = http_do(&q, &r) == 0 && r.status == 200 && strstr(r.body, "true");
        http_resp_free(&r);
        if (up)
            return;
        if (proc_wait(&e->p, 50) >= 0)
            break; /* it exited: a port taken meanwhile */
    }
    char *log = proc_log(&e->p);
    ck_abort_msg("etcd did not become healthy: %s", log);
}

void etcd_start(struct etcd *e)
{
    memset(e, 0, sizeof *e);
    ck_assert_int_eq(harness_temp_dir(e->dir, sizeof e->dir), 0);
    snprintf(e->data, sizeof e->data, "%s/data", e->dir);
    snprintf(e->log, sizeof e->log, "%s/etcd.log", e->dir);
    e->port = closed_port();
    e->side_port = closed_port();
    e->peer_port = closed_port();
    ck_assert(e->port > 0 && e->side_port > 0 && e->peer_port > 0);
    ck_assert(e->port != e->side_port && e->port != e->peer_port && e->side_port != e->peer_port);
    etcd_run(e, true);
}

void etcd_restart(struct etcd *e, bool watcher_port)
{
    proc_kill(&e->p);
    etcd_run(e, watcher_port);
}

long long etcd_call(const struct etcd *e, const char *path, const char *body)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", e->side_port, path);
    const char *headers[] = {"Content-Type: application/json", NULL};
    struct http_req q = {
        .method = "POST", .url = url, .headers = headers, .body = body, .body_len = strlen(body)};
    struct http_resp r;
    ck_assert_msg(http_do(&q, &r) == 0 && r.status == 200, "%s %s: %ld %s", path, body, r.status,
                  r.body ? r.body : "");
    cJSON *j = json_body(&r);
    const char *rev = json_str(j, "header.revision");
    long long n = rev ? atoll(rev) : 0;
    cJSON_Delete(j);
    http_resp_free(&r);
    return n;
}

long long etcd_put(const struct etcd *e, const char *key, const char *value)
{
    char k[256], v[1024], body[1400];
    etcd_base64_encode(key, strlen(key), k, sizeof k);
    etcd_base64_encode(value, strlen(value), v, sizeof v);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    return etcd_call(e, "/v3/kv/put", body);
}

long long etcd_delete(const struct etcd *e, const char *key)
{
    char k[256], body[400];
    etcd_base64_encode(key, strlen(key), k, sizeof k);
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", k);
    return etcd_call(e, "/v3/kv/deleterange", body);
}

/* ---- a source's reports ----------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void recorder_cb(void *arg, enum pool_source src, const struct pool_found *found, int n,
                 const char *error)
{
    struct recorder *r = arg;
    if (error) {
        r->errors++;
        snprintf(r->error, sizeof r->error, "%s", error);
        r->error_at_ms = harness_now_ms();
        return;
    }
    char **items = calloc((size_t)n + 1, sizeof *items);
    size_t len = 0;
    for (int i = 0; items && i < n; i++) {
        size_t k = strlen(found[i].url) + 16;
        if ((items[i] = malloc(k)))
            snprintf(items[i], k, "%s=%d", found[i].url, found[i].weight);
    }
    if (items && n > 0)
        qsort(items, (size_t)n, sizeof *items, cmp_str);
    r->set[0] = '\0';
    for (int i = 0; items && i < n; i++) {
        len += (size_t)snprintf(r->set + len, len < sizeof r->set ? sizeof r->set - len : 0, "%s%s",
                                i ? " " : "", items[i] ? items[i] : "?");
        free(items[i]);
    }
    free(items);
    r->good++;
    if (n == 0)
        r->empty_good++;
    r->set_at_ms = harness_now_ms();
}

struct waiter {
    struct loop *loop;
    struct loop_timer tick;
    bool (*cond)(const struct recorder *, const void *);
    const struct recorder *r;
    const void *want;
    double end_ms;
    bool met;
};

static void on_tick(void *arg)
{
    struct waiter *w = arg;
    if (w->cond && w->cond(w->r, w->want)) {
        w->met = true;
        loop_stop(w->loop);
    } else if (harness_now_ms() >= w->end_ms) {
        loop_stop(w->loop);
    } else {
        loop_timer_start(w->loop, &w->tick, 5);
    }
}

static double run_until(struct loop *l, const struct recorder *r,
                        bool (*cond)(const struct recorder *, const void *), const void *want,
                        int timeout_ms)
{
    double start = harness_now_ms();
    struct waiter w = {.loop = l, .cond = cond, .r = r, .want = want, .end_ms = start + timeout_ms};
    loop_timer_init(&w.tick, on_tick, &w);
    loop_timer_start(l, &w.tick, 0);
    loop_run(l);
    loop_timer_stop(l, &w.tick);
    return w.met ? harness_now_ms() - start : -1;
}

static bool set_is(const struct recorder *r, const void *want)
{
    return r->good > 0 && strcmp(r->set, want) == 0;
}

static bool errors_reach(const struct recorder *r, const void *n)
{
    return r->errors >= *(const int *)n;
}

static bool good_reach(const struct recorder *r, const void *n)
{
    return r->good >= *(const int *)n;
}

double wait_set(struct loop *l, struct recorder *r, const char *want, int timeout_ms)
{
    return run_until(l, r, set_is, want, timeout_ms);
}

double wait_errors(struct loop *l, struct recorder *r, int n, int timeout_ms)
{
    return run_until(l, r, errors_reach, &n, timeout_ms);
}

double wait_good(struct loop *l, struct recorder *r, int n, int timeout_ms)
{
    return run_until(l, r, good_reach, &n, timeout_ms);
}

void assert_set_within(struct loop *l, struct recorder *r, const char *want, const char *what,
                       double t0, int bound_ms, const char *tag)
{
    double ms = wait_set(l, r, want, 5 * bound_ms);
    ck_assert_msg(ms >= 0, "%s: wanted \"%s\", last set \"%s\" (errors %d: %s)", what, want, r->set,
                  r->errors, r->error);
    ms = r->set_at_ms - t0;
    printf("%s: %s reached the callback in %.0f ms\n", tag, what, ms);
    ck_assert_msg(ms <= bound_ms, "%s took %.0f ms (bound %d ms)", what, ms, bound_ms);
}

void run_for(struct loop *l, int ms)
{
    run_until(l, NULL, NULL, NULL, ms);
}

bool sources_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && strcmp(ci, "true") == 0;
}

bool sources_have(const char *path, const char *package)
{
    if (access(path, X_OK) == 0)
        return true;
    if (sources_in_ci())
        fprintf(stderr, "FAIL: %s is not installed (Debian package %s; .ci/deps installs it)\n",
                path, package);
    else
        fprintf(stderr, "SKIP: %s is not installed (apt-get install %s to run this suite)\n",
                path, package);
    return false;
}

int sources_main(Suite *s, const char *path, const char *package)
{
    if (sources_have(path, package)) {
        log_init(LOG_LEVEL_WARN);
        return harness_main(s);
    }
    srunner_free(srunner_create(s)); /* frees s */
    return sources_in_ci() ? 1 : 77;
}
