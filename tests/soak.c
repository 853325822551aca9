/*
 * soak.c - the long-running mixed-fault test run by `make check`.
 *
 * Not a Check suite: one run of SOAK_SECONDS (default 60) and at least
 * SOAK_MIN_REQUESTS requests (default 50000; whichever ends later, hard cap at
 * 3 x SOAK_SECONDS), then a summary line with the counts by outcome and
 * "N passed, N failed"; exit 1 on any violation.
 *
 * Set-up: three stub upstreams in one pool behind ahoyd (retry 3 attempts,
 * base-delay 10ms; breaker threshold 5, recovery 1s; timeout 1s). SOAK_THREADS
 * (default 16) client threads send keep-alive requests with libcurl, each with a
 * unique X-Request-Id and a random fault for the stub (status 503/500, reset,
 * close-mid-body, a delay beyond the timeout, or none); one stub is killed and
 * restarted on the same port every few seconds.
 *
 * Every answer must be well formed, and be THE answer to this request (a body cut
 * after its head, by close-mid-body or a killed stub, must end incomplete, "cut"):
 * either the stub's echo carrying this request's target, X-Request-Id, method,
 * body and fault (so no answer is mixed up with another's or given twice on a
 * connection), with the status the fault asked for, or ahoyd's JSON error with a
 * code the fault (or a killed endpoint, or open breakers) legitimately leads to.
 * ahoyd's RSS and fd count must be stable from 20 % into the run to its end,
 * ahoyd must still serve and must exit 0 on SIGTERM.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define N_STUBS 3
#define MAX_THREADS 64
#define MAX_REPORTED 25

enum fault {
    F_NONE,       /* GET, normal */
    F_POST,       /* POST with a body, normal */
    F_503,        /* X-Stub-Status: 503 (retried) */
    F_500,        /* X-Stub-Status: 500 (not retried) */
    F_RESET,      /* X-Stub-Action: reset (GET: retried) */
    F_MIDBODY,    /* X-Stub-Action: close-mid-body (GET: retried) */
    F_POST_RESET, /* POST + reset: never sent twice */
    F_DELAY,      /* X-Stub-Delay-Ms beyond the timeout (retried) */
    N_FAULTS
};

static const char *const fault_names[N_FAULTS] = {
    "get", "post", "stub503", "stub500", "reset", "midbody", "post_reset", "delay",
};

/* Out of 1000. Faults are a few percent, so that breakers open now and then (a killed
 * endpoint, a burst of faults) but the pool mostly serves; delays are rarer still: each
 * one holds its thread for ~3 s. */
static const int fault_weights[N_FAULTS] = {830, 140, 6, 6, 6, 6, 5, 1};

enum outcome {
    O_ECHO_200, O_ECHO_503, O_ECHO_500,
    O_UPSTREAM_RESET, O_UPSTREAM_TIMEOUT, O_UPSTREAM_UNREACHABLE, O_CIRCUIT_OPEN,
    O_CUT, /* the head was sent, then the body failed: an incomplete message */
    O_VIOLATION, N_OUTCOMES
};

static const char *const outcome_names[N_OUTCOMES] = {
    "echo200", "echo503", "echo500", "upstream_reset", "upstream_timeout",
    "upstream_unreachable", "circuit_open", "cut", "violations",
};

static struct proc stubs[N_STUBS], daemon_proc;
static int stub_ports[N_STUBS];
static atomic_int stop_flag;
static atomic_long total_requests;
static atomic_int restarts, restart_failures; /* main thread only; atomic for clarity */
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static int reported;

struct worker {
    pthread_t thread;
    int index;
    uint64_t rng;
    long counts[N_FAULTS][N_OUTCOMES];
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    char *end;
    long n;

    if (v == NULL || *v == '\0')
        return dflt;
    n = strtol(v, &end, 10);
    return *end == '\0' && n > 0 ? n : dflt;
}

static void violation(const char *id, enum fault f, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&report_lock);
    if (reported++ < MAX_REPORTED) {
        fprintf(stderr, "soak: VIOLATION request %s (%s): ", id, fault_names[f]);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&report_lock);
}

/* ---- judging one answer ----------------------------------------------------------------- */

/* The stub name behind an X-Ahoyd-Upstream URL, NULL if unknown. */
static const char *stub_name_of(const char *upstream_url)
{
    static const char *const names[N_STUBS] = {"s0", "s1", "s2"};
    const char *colon = upstream_url ? strrchr(upstream_url, ':') : NULL;
    int port = colon ? atoi(colon + 1) : 0, i;

    for (i = 0; i < N_STUBS; i++)
        if (stub_ports[i] == port)
            return names[i];
    return NULL;
}

/* The stub's echo for this very request? Returns NULL when it is, else why not. */
static const char *check_echo(const struct http_resp *r, const char *id, enum fault f,
                              const char *target, const char *body, int want_status)
{
    static __thread char why[256];
    cJSON *j = json_body(r);
    const char *v, *method = (f == F_POST || f == F_POST_RESET) ? "POST" : "GET";
    const char *attempts = http_header(r, "X-Ahoyd-Attempts");
    const char *up = http_header(r, "X-Ahoyd-Upstream");
    const char *name = http_header(r, "X-Stub-Name");
    char st[8];

    why[0] = '\0';
    if (j == NULL) {
        snprintf(why, sizeof(why), "body is not JSON");
    } else if ((v = json_str(j, "target")) == NULL || strcmp(v, target) != 0) {
        snprintf(why, sizeof(why), "echo target %s, want %s", v ? v : "(none)", target);
    } else if ((v = echo_header(j, "X-Request-Id")) == NULL || strcmp(v, id) != 0) {
        snprintf(why, sizeof(why), "echo X-Request-Id %s", v ? v : "(none)");
    } else if ((v = json_str(j, "method")) == NULL || strcmp(v, method) != 0) {
        snprintf(why, sizeof(why), "echo method %s", v ? v : "(none)");
    } else if ((v = json_str(j, "body")) == NULL || strcmp(v, body) != 0) {
        snprintf(why, sizeof(why), "echo body differs (%.40s)", v ? v : "(none)");
    } else if (want_status != 200 &&
               ((v = echo_header(j, "X-Stub-Status")) == NULL ||
                (snprintf(st, sizeof(st), "%d", want_status), strcmp(v, st) != 0))) {
        snprintf(why, sizeof(why), "echo of another fault (X-Stub-Status %s)", v ? v : "-");
    } else if (want_status == 200 && echo_header(j, "X-Stub-Status") != NULL) {
        snprintf(why, sizeof(why), "a normal request echoed with X-Stub-Status");
    } else if (attempts == NULL || atoi(attempts) < 1 || atoi(attempts) > 3) {
        snprintf(why, sizeof(why), "X-Ahoyd-Attempts %s", attempts ? attempts : "(none)");
    } else if (up == NULL || name == NULL || stub_name_of(up) == NULL ||
               strcmp(stub_name_of(up), name) != 0) {
        snprintf(why, sizeof(why), "X-Ahoyd-Upstream %s but X-Stub-Name %s", up ? up : "-",
                 name ? name : "-");
    }
    cJSON_Delete(j);
    return why[0] ? why : NULL;
}

/* ahoyd's JSON error for this request with one of the allowed codes? Returns the code's
 * outcome, or O_VIOLATION with *why set. */
static enum outcome check_error(const struct http_resp *r, const char *id, unsigned allowed,
                                const char **why)
{
    static __thread char buf[256];
    static const struct {
        enum outcome o;
        const char *code;
        int status;
    } codes[] = {
        {O_UPSTREAM_RESET, "upstream_reset", 502},
        {O_UPSTREAM_TIMEOUT, "upstream_timeout", 504},
        {O_UPSTREAM_UNREACHABLE, "upstream_unreachable", 502},
        {O_CIRCUIT_OPEN, "circuit_open", 503},
    };
    cJSON *j = json_body(r);
    const char *code = j ? json_str(j, "error.code") : NULL;
    const char *rid = j ? json_str(j, "error.request_id") : NULL;
    const char *svc = j ? json_str(j, "error.service") : NULL;
    const char *ctype = http_header(r, "Content-Type");
    const char *hid = http_header(r, "X-Request-Id");
    int attempts = j ? (int)json_num(j, "error.attempts", -1) : -1;
    enum outcome o = O_VIOLATION;
    size_t i;

    buf[0] = '\0';
    if (code == NULL) {
        snprintf(buf, sizeof(buf), "status %ld, not an ahoyd error: %.120s", r->status, r->body);
        goto out;
    }
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(code, codes[i].code) == 0 && r->status == codes[i].status)
            o = codes[i].o;
    if (o == O_VIOLATION || !(allowed & (1u << o))) {
        snprintf(buf, sizeof(buf), "status %ld code %s not expected for this fault", r->status,
                 code);
        o = O_VIOLATION;
    } else if ((int)json_num(j, "error.status", -1) != r->status) {
        snprintf(buf, sizeof(buf), "error.status %g != %ld", json_num(j, "error.status", -1),
                 r->status);
    } else if (rid == NULL || strcmp(rid, id) != 0 || hid == NULL || strcmp(hid, id) != 0) {
        snprintf(buf, sizeof(buf), "error.request_id %s, header %s", rid ? rid : "-",
                 hid ? hid : "-");
    } else if (svc == NULL || strcmp(svc, "pool") != 0) {
        snprintf(buf, sizeof(buf), "error.service %s", svc ? svc : "-");
    } else if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
        snprintf(buf, sizeof(buf), "Content-Type %s", ctype ? ctype : "-");
    } else if (o == O_CIRCUIT_OPEN && (attempts != 0 || !http_header(r, "Retry-After"))) {
        snprintf(buf, sizeof(buf), "circuit_open with attempts %d, Retry-After %s", attempts,
                 http_header(r, "Retry-After") ? "set" : "missing");
    } else if (o != O_CIRCUIT_OPEN && (attempts < 1 || attempts > 3)) {
        snprintf(buf, sizeof(buf), "%s with attempts %d", code, attempts);
    }
    if (buf[0])
        o = O_VIOLATION;
out:
    cJSON_Delete(j);
    *why = buf;
    return o;
}

#define BIT(o) (1u << (o))

/* Judge one answer: the outcome, or O_VIOLATION (reported). */
static enum outcome judge(const struct http_resp *r, int rc, const char *id, enum fault f,
                          const char *target, const char *body)
{
    /* Any request may meet open breakers everywhere, or only dead/killed endpoints. */
    unsigned common = BIT(O_CIRCUIT_OPEN) | BIT(O_UPSTREAM_UNREACHABLE) | BIT(O_UPSTREAM_RESET);
    unsigned allowed;
    int echo_status = 0;
    const char *why = NULL;
    const char *hid;

    if (rc != 0 || r->status == 0) {
        violation(id, f, "no answer (curl %d)", r->curl_code);
        return O_VIOLATION;
    }
    hid = http_header(r, "X-Request-Id");
    if (hid == NULL || strcmp(hid, id) != 0) {
        violation(id, f, "status %ld with X-Request-Id %s", r->status, hid ? hid : "(none)");
        return O_VIOLATION;
    }
    switch (f) {
    case F_NONE:
    case F_POST:
        echo_status = 200;
        allowed = common;
        break;
    case F_503:
        echo_status = 503;
        allowed = common;
        break;
    case F_500:
        echo_status = 500;
        allowed = common;
        break;
    case F_RESET:
    case F_MIDBODY:
    case F_POST_RESET:
        allowed = common;
        break;
    case F_DELAY:
    default:
        /* a timeout, or an earlier connect failure / reset when the endpoint died */
        allowed = common | BIT(O_UPSTREAM_TIMEOUT);
        break;
    }
    /* Bodies stream: a body that fails after its head (close-mid-body, a stub killed
     * mid-answer) ends the client's reply without its end, never a complete-looking one. */
    if (r->curl_code == CURLE_PARTIAL_FILE && http_header(r, "X-Stub-Name") != NULL) {
        if (f == F_RESET || f == F_POST_RESET) { /* reset before any head */
            violation(id, f, "status %ld cut mid-body", r->status);
            return O_VIOLATION;
        }
        return O_CUT;
    }
    if (echo_status != 0 && r->status == echo_status && http_header(r, "X-Stub-Name") != NULL) {
        why = check_echo(r, id, f, target, body, echo_status);
        if (why != NULL) {
            violation(id, f, "status %ld: %s", r->status, why);
            return O_VIOLATION;
        }
        return echo_status == 200 ? O_ECHO_200 : echo_status == 503 ? O_ECHO_503 : O_ECHO_500;
    }
    {
        enum outcome o = check_error(r, id, allowed, &why);
        if (o == O_VIOLATION)
            violation(id, f, "%s", why);
        return o;
    }
}

/* ---- the clients ------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct http_client c;
    char url[256], target[128], id[64], idh[96], body[96];
    long seq = 0;

    http_client_init(&c);
    while (!atomic_load(&stop_flag)) {
        struct http_req req;
        struct http_resp r;
        const char *headers[4] = {idh, NULL, NULL, NULL};
        int pick = (int)(rng_next(&w->rng) % 1000), acc = 0, rc;
        enum fault f = F_NONE;
        enum outcome o;

        for (f = 0; f < N_FAULTS - 1; f++) {
            acc += fault_weights[f];
            if (pick < acc)
                break;
        }
        snprintf(id, sizeof(id), "soak-%d-%ld", w->index, seq++);
        snprintf(idh, sizeof(idh), "X-Request-Id: %s", id);
        snprintf(target, sizeof(target), "/s/r/%s", id);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/pool/r/%s", daemon_proc.port, id);
        snprintf(body, sizeof(body), "body of %s", id);
        switch (f) {
        case F_503: headers[1] = "X-Stub-Status: 503"; break;
        case F_500: headers[1] = "X-Stub-Status: 500"; break;
        case F_RESET: case F_POST_RESET: headers[1] = "X-Stub-Action: reset"; break;
        case F_MIDBODY: headers[1] = "X-Stub-Action: close-mid-body"; break;
        case F_DELAY: headers[1] = "X-Stub-Delay-Ms: 1500"; break;
        default: break;
        }
        memset(&req, 0, sizeof(req));
        req.url = url;
        req.headers = headers;
        req.timeout_ms = 20000;
        if (f == F_POST || f == F_POST_RESET) {
            req.method = "POST";
            req.body = body;
            req.body_len = strlen(body);
        }
        rc = http_client_do(&c, &req, &r);
        o = judge(&r, rc, id, f, target, req.body ? body : "");
        http_resp_free(&r);
        w->counts[f][o]++;
        atomic_fetch_add(&total_requests, 1);
    }
    http_client_free(&c);
    return NULL;
}

/* ---- the chaos: kill an endpoint, bring it back on the same port ---------------------------- */

/* Run from the main thread: PR_SET_PDEATHSIG fires when the thread that forked the
 * stub ends, so a helper thread's stubs would die with it. */
struct chaos {
    uint64_t rng;
    int victim;        /* the endpoint down now, -1 when all are up */
    int next;          /* the next one to kill */
    double at;         /* when to act next */
};

static void chaos_step(struct chaos *c, double now)
{
    if (now < c->at)
        return;
    if (c->victim < 0) {
        c->victim = c->next;
        c->next = (c->next + 1) % N_STUBS;
        proc_kill(&stubs[c->victim]);
        c->at = now + 300 + (double)(rng_next(&c->rng) % 500);
    } else {
        char name[16], extra[64];
        struct proc p;
        snprintf(name, sizeof(name), "s%d", c->victim);
        snprintf(extra, sizeof(extra), "--listen 127.0.0.1:%d", stub_ports[c->victim]);
        if (stub_start(&p, name, extra) == 0 && p.port == stub_ports[c->victim]) {
            stubs[c->victim] = p;
            atomic_fetch_add(&restarts, 1);
            c->victim = -1;
            c->at = now + 2000 + (double)(rng_next(&c->rng) % 2000);
        } else {
            atomic_fetch_add(&restart_failures, 1); /* the port may be held a moment */
            c->at = now + 100;
        }
    }
}

/* ---- process figures ----------------------------------------------------------------------- */

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    FILE *f;
    long kib = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static int fd_count(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static bool within(long before, long after, double ratio, long slack)
{
    long tol = (long)((double)before * ratio);

    if (tol < slack)
        tol = slack;
    return after <= before + tol && after >= before - tol;
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(void)
{
    long seconds = env_long("SOAK_SECONDS", 60);
    long min_requests = env_long("SOAK_MIN_REQUESTS", 50000);
    long n_threads = env_long("SOAK_THREADS", 16);
    uint64_t seed = (uint64_t)env_long("SOAK_SEED", (long)time(NULL));
    static struct worker workers[MAX_THREADS];
    long counts[N_FAULTS][N_OUTCOMES], by_outcome[N_OUTCOMES], passed = 0, failed = 0;
    long rss_mark = -1, rss_end = -1, rss_start, total;
    int fd_mark = -1, fd_end = -1, fd_start, i, f, o, exit_status, final_status = 0;
    int breaker_opens;
    double t0, elapsed, mark_at;
    struct chaos chaos;
    char yaml[2048];
    bool sanitized = false;

#if defined(__SANITIZE_ADDRESS__)
    sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    sanitized = true;
#endif
#endif
    if (n_threads > MAX_THREADS)
        n_threads = MAX_THREADS;
    setvbuf(stdout, NULL, _IOLBF, 0);
    harness_init();
    if (sanitized) {
        /* ASan keeps freed memory in a quarantine (256 MiB by default), so RSS grows until
         * it is full: a small one makes the stability check meaningful. */
        const char *old = getenv("ASAN_OPTIONS");
        char opts[512];
        snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=16", old ? old : "",
                 old && *old ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
    }

    for (i = 0; i < N_STUBS; i++) {
        char name[8];
        snprintf(name, sizeof(name), "s%d", i);
        if (stub_start(&stubs[i], name, NULL) != 0) {
            fprintf(stderr, "soak: cannot start stub %s\n", name);
            return 1;
        }
        stub_ports[i] = stubs[i].port;
    }
    snprintf(yaml, sizeof(yaml),
             "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n  access-log: off\n"
             "pyfly:\n  client:\n    services:\n      pool:\n"
             "        endpoints: [http://127.0.0.1:%d/s, http://127.0.0.1:%d/s, "
             "http://127.0.0.1:%d/s]\n"
             "        load-balancer: round-robin\n"
             "        timeout: 1s\n"
             "        retry: {max-attempts: 3, base-delay: 10ms}\n"
             "        circuit-breaker: {failure-threshold: 5, recovery-timeout: 1s}\n",
             stub_ports[0], stub_ports[1], stub_ports[2]);
    if (ahoyd_start(&daemon_proc, yaml) != 0) {
        fprintf(stderr, "soak: ahoyd did not start\n");
        return 1;
    }
    rss_start = rss_kib(daemon_proc.pid);
    fd_start = fd_count(daemon_proc.pid);
    printf("soak: %ld s, at least %ld requests, %ld threads, seed %llu%s; ahoyd pid %d\n",
           seconds, min_requests, n_threads, (unsigned long long)seed,
           sanitized ? " (sanitizer build)" : "", (int)daemon_proc.pid);

    t0 = harness_now_ms();
    mark_at = t0 + 0.2 * (double)seconds * 1000.0;
    for (i = 0; i < n_threads; i++) {
        workers[i].index = i;
        workers[i].rng = seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i * 7919 + 1;
        pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    }
    chaos.rng = seed * 31 + 7;
    chaos.victim = -1;
    chaos.next = 0;
    chaos.at = t0 + 2000;

    for (;;) {
        double now = harness_now_ms();
        long done = atomic_load(&total_requests);

        sleep_ms(50);
        chaos_step(&chaos, now);
        if (rss_mark < 0 && now >= mark_at) {
            rss_mark = rss_kib(daemon_proc.pid);
            fd_mark = fd_count(daemon_proc.pid);
        }
        if (kill(daemon_proc.pid, 0) != 0)
            break; /* ahoyd died: stop at once */
        if (now - t0 >= 3000.0 * (double)seconds)
            break;
        if (now - t0 >= 1000.0 * (double)seconds && done >= min_requests)
            break;
    }
    /* the end figures, still under load */
    rss_end = rss_kib(daemon_proc.pid);
    fd_end = fd_count(daemon_proc.pid);
    atomic_store(&stop_flag, 1);
    for (i = 0; i < n_threads; i++)
        pthread_join(workers[i].thread, NULL);
    if (chaos.victim >= 0) {
        /* bring the last victim back for the final check */
        chaos.at = 0;
        for (i = 0; i < 50 && chaos.victim >= 0; i++) {
            chaos_step(&chaos, harness_now_ms());
            if (chaos.victim >= 0)
                sleep_ms(100);
        }
    }
    elapsed = (harness_now_ms() - t0) / 1000.0;

    memset(counts, 0, sizeof(counts));
    memset(by_outcome, 0, sizeof(by_outcome));
    for (i = 0; i < n_threads; i++)
        for (f = 0; f < N_FAULTS; f++)
            for (o = 0; o < N_OUTCOMES; o++)
                counts[f][o] += workers[i].counts[f][o];
    for (f = 0; f < N_FAULTS; f++)
        for (o = 0; o < N_OUTCOMES; o++)
            by_outcome[o] += counts[f][o];
    total = atomic_load(&total_requests);
    failed = by_outcome[O_VIOLATION];
    passed = total - failed;

    /* Per fault, which outcomes it had. */
    for (f = 0; f < N_FAULTS; f++) {
        printf("soak: %-10s", fault_names[f]);
        for (o = 0; o < N_OUTCOMES; o++)
            if (counts[f][o])
                printf(" %s=%ld", outcome_names[o], counts[f][o]);
        printf("\n");
    }

    /* The process checks. */
    if (kill(daemon_proc.pid, 0) != 0) {
        fprintf(stderr, "soak: VIOLATION ahoyd died during the run\n");
        failed++;
    } else {
        struct http_resp r;
        char url[128];
        struct http_req req;
        const char *hdr[] = {"X-Request-Id: soak-final", NULL};
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/pool/final", daemon_proc.port);
        memset(&req, 0, sizeof(req));
        req.url = url;
        req.headers = hdr;
        /* breakers may still be open from the last faults: bounded retries */
        for (i = 0; i < 50; i++) {
            http_do(&req, &r);
            final_status = (int)r.status;
            http_resp_free(&r);
            if (final_status == 200)
                break;
            sleep_ms(100);
        }
        if (final_status != 200) {
            fprintf(stderr, "soak: VIOLATION a normal request after the run got %d\n",
                    final_status);
            failed++;
        }
    }
    if (rss_mark > 0 && !within(rss_mark, rss_end, 0.10, sanitized ? 16384 : 4096)) {
        fprintf(stderr, "soak: VIOLATION RSS %ld KiB at 20 %% -> %ld KiB at the end\n", rss_mark,
                rss_end);
        failed++;
    }
    if (fd_mark > 0 && !within(fd_mark, fd_end, 0.10, 24)) {
        fprintf(stderr, "soak: VIOLATION fds %d at 20 %% -> %d at the end\n", fd_mark, fd_end);
        failed++;
    }
    if (atomic_load(&restart_failures) > 0) {
        fprintf(stderr, "soak: %d stub restarts had to be tried again (not counted)\n",
                atomic_load(&restart_failures));
    }
    for (i = 0; i < N_STUBS; i++)
        proc_kill(&stubs[i]);
    exit_status = proc_stop(&daemon_proc);
    breaker_opens = proc_log_count(&daemon_proc, "-> open");
    if (exit_status != 0) {
        fprintf(stderr, "soak: VIOLATION ahoyd exited with %d on SIGTERM\n", exit_status);
        failed++;
    }

    printf("soak: %ld requests in %.1f s (%.0f/s), %d endpoint restarts, %d breaker opens:",
           total, elapsed, (double)total / elapsed, atomic_load(&restarts), breaker_opens);
    for (o = 0; o < N_OUTCOMES; o++)
        printf(" %s=%ld", outcome_names[o], by_outcome[o]);
    printf("; RSS KiB start %ld, 20%% %ld, end %ld; fds start %d, 20%% %d, end %d\n", rss_start,
           rss_mark, rss_end, fd_start, fd_mark, fd_end);
    if (total < min_requests)
        printf("soak: NOTE only %ld of SOAK_MIN_REQUESTS=%ld within the 3x time cap\n", total,
               min_requests);
    printf("%ld passed, %ld failed\n", passed, failed);
    harness_finish(failed > 0);
    return failed > 0 ? 1 : 0;
}
