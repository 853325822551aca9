/*
 * check_workers.c - integration suite for ahoyd.workers > 1: several
 * event loops share one listening socket, and the state the SPEC defines
 * (breakers, max-connections, reload, drain, counters) stays exact across them.
 *
 * Which worker serves a connection is the kernel's choice; the tests find out
 * from ahoyd_worker_requests_total: one request on a fresh keep-alive connection
 * moves exactly one worker's counter, and the connection stays with that worker.
 * With a connection held on worker 0 and one on worker 1, a test drives both
 * workers in an order it chooses.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define WORKERS 2
#define FIND_TRIES 32 /* fresh connections tried to find one on each worker */

static struct proc stub_a, daemon_proc;

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start stub "a" and ahoyd with two workers, the admin API and one service "svc". */
static void start_workers(const char *ahoyd_extra, const char *service_extra)
{
    char *yaml = NULL;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: 127.0.0.1:0\n"
                              "  access-log: off\n  workers: %d\n%s%s"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        base-url: http://127.0.0.1:%d/base\n%s%s",
                              WORKERS, ahoyd_extra ? ahoyd_extra : "", ahoyd_extra ? "\n" : "",
                              stub_a.port, service_extra ? service_extra : "",
                              service_extra ? "\n" : ""),
                     0);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
    ck_assert_int_gt(daemon_proc.admin_port, 0);
    ck_assert(proc_log_wait(&daemon_proc, "workers: 2 event loops", 5000));
}

/* ahoyd_worker_requests_total of every worker into out[WORKERS]. */
static void worker_counts(long out[WORKERS])
{
    struct http_resp r;
    int i;

    ck_assert_int_eq(http_get(daemon_proc.admin_port, "/metrics", NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    for (i = 0; i < WORKERS; i++) {
        char key[64];
        const char *at;
        snprintf(key, sizeof(key), "ahoyd_worker_requests_total{worker=\"%d\"} ", i);
        at = strstr(r.body, key);
        ck_assert_msg(at != NULL, "no %s in /metrics", key);
        out[i] = strtol(at + strlen(key), NULL, 10);
    }
    http_resp_free(&r);
}

static long total_of(const long c[WORKERS])
{
    long t = 0;
    for (int i = 0; i < WORKERS; i++)
        t += c[i];
    return t;
}

/* One request on the kept-alive connection fd; its status (text in out). */
static int request_on(int fd, const char *target, const char *extra_header, char *out,
                      size_t cap)
{
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n%s%s\r\n", target,
             extra_header ? extra_header : "", extra_header ? "\r\n" : "");
    raw_send_text(fd, req);
    return raw_read_response(fd, out, cap, 10000);
}

/*
 * Open fresh keep-alive connections to port until one is held on every worker:
 * fds[w] is the connection served by worker w (the others are closed). A
 * connection answered 503 overloaded (an earlier one still counted) is retried.
 */
static void connect_every_worker(int port, int fds[WORKERS])
{
    char resp[16384];
    int found = 0, tries;

    for (int i = 0; i < WORKERS; i++)
        fds[i] = -1;
    for (tries = 0; tries < FIND_TRIES && found < WORKERS; tries++) {
        long before[WORKERS], after[WORKERS];
        int fd, st, w = -1;

        worker_counts(before);
        fd = raw_connect(port);
        ck_assert_int_ge(fd, 0);
        st = request_on(fd, "/svc/find", NULL, resp, sizeof(resp));
        worker_counts(after);
        for (int i = 0; i < WORKERS; i++)
            if (after[i] == before[i] + 1)
                w = i;
        ck_assert_msg(total_of(after) == total_of(before) + 1,
                      "one request moved the worker counters by %ld",
                      total_of(after) - total_of(before));
        if (st == 200 && fds[w] < 0) {
            fds[w] = fd;
            found++;
            continue;
        }
        close(fd);
        if (st != 200)
            pause_ms(50); /* let ahoyd see the closes of earlier tries */
    }
    ck_assert_msg(found == WORKERS, "%d fresh connections found only %d of %d workers", tries,
                  found, WORKERS);
}

static void close_all(int fds[WORKERS])
{
    for (int i = 0; i < WORKERS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* ---- tests ------------------------------------------------------------------------ */

START_TEST(every_worker_serves_and_counts_add_up)
{
    enum { ROUNDS = 4, PARALLEL = 50 };
    long statuses[PARALLEL], counts[WORKERS];
    char url[128];
    struct http_req req = {0};
    int fds[WORKERS], i, j;
    long stub_before;
    double elapsed;

    start_workers(NULL, NULL);
    connect_every_worker(daemon_proc.port, fds);
    close_all(fds);

    /* load on fresh connections: every request answered once, counted once */
    stub_before = stub_count(&stub_a);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/load", daemon_proc.port);
    req.url = url;
    for (i = 0; i < ROUNDS; i++) {
        ck_assert_int_eq(http_parallel(&req, PARALLEL, statuses, &elapsed), PARALLEL);
        for (j = 0; j < PARALLEL; j++)
            ck_assert_int_eq(statuses[j], 200);
    }
    ck_assert_int_eq(stub_count(&stub_a) - stub_before, ROUNDS * PARALLEL);
    worker_counts(counts);
    {
        struct http_resp r;
        const char *key = "ahoyd_requests_total{service=\"svc\",code=\"200\"} ";
        const char *at;
        ck_assert_int_eq(http_get(daemon_proc.admin_port, "/metrics", NULL, &r), 0);
        at = strstr(r.body, key);
        ck_assert_ptr_nonnull(at);
        ck_assert_int_eq(strtol(at + strlen(key), NULL, 10), total_of(counts));
        ck_assert_int_eq(total_of(counts), stub_count(&stub_a));
        http_resp_free(&r);
    }
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

/* Failures on both workers count toward one breaker: with a threshold of 4, two
 * failures on each worker open it for both (per-worker breakers would need 8). */
START_TEST(breaker_is_shared_exactly)
{
    char resp[16384];
    int fds[WORKERS], i;
    long before;

    start_workers(NULL, "        retry: false\n"
                        "        circuit-breaker: {failure-threshold: 4, recovery-timeout: 30s}");
    connect_every_worker(daemon_proc.port, fds);
    ck_assert_int_eq(stub_mode(&stub_a, "{\"status\":500}"), 0);
    before = stub_count(&stub_a);
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(request_on(fds[i % WORKERS], "/svc/fail", NULL, resp, sizeof(resp)), 500);
    ck_assert_int_eq(stub_count(&stub_a) - before, 4);
    for (i = 0; i < WORKERS; i++) {
        ck_assert_int_eq(request_on(fds[i], "/svc/refused", NULL, resp, sizeof(resp)), 503);
        assert_raw_error(resp, 503, "circuit_open");
    }
    ck_assert_int_eq(stub_count(&stub_a) - before, 4);
    close_all(fds);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

/* max-connections counts the connections of every worker: with one held on each
 * worker and a limit of 2, a third is over it whichever worker takes it. */
START_TEST(max_connections_is_shared)
{
    char resp[16384];
    int fds[WORKERS], i;

    start_workers("  max-connections: 2", NULL);
    connect_every_worker(daemon_proc.port, fds);
    for (i = 0; i < 6; i++) {
        int fd = raw_connect(daemon_proc.port);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(request_on(fd, "/svc/third", NULL, resp, sizeof(resp)), 503);
        assert_raw_error(resp, 503, "overloaded");
        close(fd);
    }
    /* the two within the limit keep working */
    for (i = 0; i < WORKERS; i++)
        ck_assert_int_eq(request_on(fds[i], "/svc/still", NULL, resp, sizeof(resp)), 200);
    close_all(fds);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

/* A reload that moves listen: every worker accepts on the new address, none on the
 * old one, and connections already open finish on the old daemons. */
START_TEST(reload_moves_every_worker)
{
    char resp[16384], *conf;
    int old_fds[WORKERS], new_fds[WORKERS], new_port, i;
    FILE *f;
    size_t n;

    start_workers(NULL, NULL);
    connect_every_worker(daemon_proc.port, old_fds);
    new_port = closed_port();
    ck_assert_int_gt(new_port, 0);
    /* the same file with the new listen address */
    f = fopen(daemon_proc.conf_path, "r");
    ck_assert_ptr_nonnull(f);
    conf = calloc(1, 65536);
    n = fread(conf, 1, 65535, f);
    fclose(f);
    ck_assert_uint_gt(n, 0);
    {
        char *at = strstr(conf, "listen: 127.0.0.1:0\n");
        char *out = NULL;
        ck_assert_ptr_nonnull(at);
        ck_assert_int_ge(asprintf(&out, "%.*slisten: 127.0.0.1:%d\n%s", (int)(at - conf), conf,
                                  new_port, at + strlen("listen: 127.0.0.1:0\n")),
                         0);
        f = fopen(daemon_proc.conf_path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(out, f);
        fclose(f);
        free(out);
    }
    free(conf);
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGHUP), 0);
    ck_assert(proc_log_wait(&daemon_proc, "configuration reloaded", 5000));

    connect_every_worker(new_port, new_fds);
    for (i = 0; i < 20; i++) {
        int fd = raw_connect(daemon_proc.port);
        if (fd < 0)
            break;
        close(fd); /* a worker not yet switched would still accept here */
        pause_ms(20);
    }
    ck_assert_msg(i < 20, "the old address still accepts after the reload");
    for (i = 0; i < WORKERS; i++) {
        ck_assert_int_eq(request_on(old_fds[i], "/svc/old", NULL, resp, sizeof(resp)), 200);
        ck_assert_int_eq(request_on(new_fds[i], "/svc/new", NULL, resp, sizeof(resp)), 200);
    }
    close_all(old_fds);
    close_all(new_fds);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

/* SIGTERM with a call running on each worker: both finish with the upstream's
 * answer, new connections are refused, then ahoyd exits 0. */
START_TEST(drain_waits_for_every_worker)
{
    char resp[WORKERS][16384];
    int fds[WORKERS], i, status;
    long before;

    start_workers(NULL, NULL);
    connect_every_worker(daemon_proc.port, fds);
    before = stub_count(&stub_a);
    for (i = 0; i < WORKERS; i++)
        raw_send_text(fds[i], "GET /svc/slow HTTP/1.1\r\nHost: x\r\nX-Stub-Delay-Ms: 800\r\n\r\n");
    ck_assert(stub_wait_count(&stub_a, before + WORKERS, 5000));
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "draining: 2 requests in progress", 5000));
    for (i = 0; i < WORKERS; i++) {
        ck_assert_int_eq(raw_read_response(fds[i], resp[i], sizeof(resp[i]), 10000), 200);
        ck_assert_ptr_nonnull(strstr(resp[i], "X-Stub-Name: a"));
    }
    close_all(fds);
    status = proc_wait(&daemon_proc, 10000);
    ck_assert_msg(status == 0, "exit status %d after the drain", status);
}
END_TEST

static Suite *workers_suite(void)
{
    Suite *s = suite_create("workers");
    TCase *tc = harness_tcase(s, "workers");
    tcase_add_test(tc, every_worker_serves_and_counts_add_up);
    tcase_add_test(tc, breaker_is_shared_exactly);
    tcase_add_test(tc, max_connections_is_shared);
    tcase_add_test(tc, reload_moves_every_worker);
    tcase_add_test(tc, drain_waits_for_every_worker);
    return s;
}

int main(void)
{
    return harness_main(workers_suite());
}
