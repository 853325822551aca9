/*
 * check_stream.c - integration suite for streamed bodies (SPEC 3.5): the head of
 * a final response goes to the client at once and its body follows as it comes
 * (a drip, server-sent events, a 1 GiB download through a slow reader with the
 * daemon's memory flat), a response that is retried never reaches the client,
 * the newest kept one answers when the retries find nothing better, and a body
 * cut after its head (reset, max-response-body, the client leaving) ends the
 * client's reply without its end. Request bodies stream up the same way: a
 * 256 MiB upload, chunked uploads, retries only of the bodies kept, and many
 * uploads to an upstream that does not read keep the daemon small.
 *
 * The client here is a raw socket with its own chunked decoder: it sees when
 * each byte arrives and whether the message ended properly, which libcurl would
 * hide. Time bounds scale with slow_factor() (sanitizers, valgrind).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"

static struct proc stub, daemon_proc;

/* Sanitizer builds and valgrind run everything several times slower. */
static double slow_factor(void)
{
    if (getenv("AHOYD_WRAPPER"))
        return 10;
#if defined(__SANITIZE_ADDRESS__)
    return 3;
#else
    return 1;
#endif
}

/* The big download's size: 1 GiB, 128 MiB under the sanitizers or valgrind. */
static uint64_t big_size(void)
{
    return slow_factor() > 1 ? UINT64_C(128) << 20 : UINT64_C(1) << 30;
}

/* The stub's download pattern (tests/stub_upstream.c: stub_pattern). */
static unsigned char pattern(uint64_t i)
{
    return (unsigned char)((i * 7u) ^ (i >> 11) ^ (i >> 23));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- a raw streaming client ------------------------------------------------------------- */

enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

struct sclient {
    int fd;
    int status;
    char head[8192];
    size_t head_len;
    bool chunked;
    int64_t content_length; /* -1 none */
    uint64_t body_seen;     /* decoded body bytes so far */
    bool complete;          /* the message ended properly (last chunk, or the length) */
    bool closed;            /* the connection ended */
    /* bytes read past what was decoded */
    char raw[65536];
    size_t raw_off, raw_len;
    enum chunk_state cs;
    uint64_t chunk_left;
    char line[64];
    size_t line_len;
};

/* Read raw bytes into c->raw, waiting up to timeout_ms; false on close or timeout. */
static bool sc_fill(struct sclient *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (c->closed)
        return false;
    if (poll(&p, 1, timeout_ms) <= 0)
        return false;
    ssize_t n = recv(c->fd, c->raw, sizeof c->raw, 0);
    if (n <= 0) {
        c->closed = true;
        return false;
    }
    c->raw_off = 0;
    c->raw_len = (size_t)n;
    return true;
}

/* Connect, send a GET of target with the extra header lines ("Name: value\r\n"...), and
 * read the response head. Asserts a head arrived within timeout_ms. */
static void sc_head(struct sclient *c, int timeout_ms);

static void sc_open(struct sclient *c, int port, const char *target, const char *extra,
                    int timeout_ms)
{
    char req[2048];
    memset(c, 0, sizeof *c);
    c->content_length = -1;
    c->fd = raw_connect(port);
    ck_assert_int_ge(c->fd, 0);
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n%s\r\n", target, extra ? extra : "");
    raw_send_text(c->fd, req);
    sc_head(c, timeout_ms);
}

/* The same with a POST of n body bytes (Content-Length). */
static void sc_post(struct sclient *c, int port, const char *target, const char *extra,
                    const void *body, size_t n, int timeout_ms)
{
    char req[2048];
    memset(c, 0, sizeof *c);
    c->content_length = -1;
    c->fd = raw_connect(port);
    ck_assert_int_ge(c->fd, 0);
    snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n%s\r\n",
             target, n, extra ? extra : "");
    raw_send_text(c->fd, req);
    for (size_t off = 0; off < n;) {
        ssize_t k = send(c->fd, (const char *)body + off, n - off, MSG_NOSIGNAL);
        ck_assert_int_gt(k, 0);
        off += (size_t)k;
    }
    sc_head(c, timeout_ms);
}

/* Read the response head. */
static void sc_head(struct sclient *c, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    for (;;) {
        char *blank = c->head_len ? strstr(c->head, "\r\n\r\n") : NULL;
        if (blank) {
            size_t hl = (size_t)(blank + 4 - c->head);
            /* what came after the head is body bytes: keep them for sc_read */
            c->raw_len = c->head_len - hl;
            memcpy(c->raw, c->head + hl, c->raw_len);
            c->raw_off = 0;
            c->head[hl] = '\0';
            c->head_len = hl;
            break;
        }
        double left = end - harness_now_ms();
        ck_assert_msg(left > 0 && !c->closed, "no response head (%zu bytes: %.*s)", c->head_len,
                      (int)c->head_len, c->head);
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t n = recv(c->fd, c->head + c->head_len, sizeof c->head - 1 - c->head_len, 0);
        if (n <= 0)
            c->closed = true;
        else
            c->head_len += (size_t)n;
        c->head[c->head_len] = '\0';
    }
    c->status = raw_status(c->head);
    char v[64];
    c->chunked =
        raw_header(c->head, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0;
    if (raw_header(c->head, "Content-Length", v, sizeof v))
        c->content_length = strtoll(v, NULL, 10);
    if (!c->chunked && c->content_length == 0)
        c->complete = true;
}

/* Decoded body bytes into buf (up to cap), waiting up to timeout_ms for the first;
 * 0 at the message's end (c->complete), on close or on timeout. */
static size_t sc_read(struct sclient *c, unsigned char *buf, size_t cap, int timeout_ms)
{
    size_t got = 0;
    while (got == 0 && !c->complete) {
        if (c->raw_off == c->raw_len && !sc_fill(c, timeout_ms))
            return 0;
        while (c->raw_off < c->raw_len && got < cap && !c->complete) {
            char ch = c->raw[c->raw_off];
            if (!c->chunked) {
                size_t n = c->raw_len - c->raw_off;
                if (n > cap - got)
                    n = cap - got;
                if (c->content_length >= 0 && n > (uint64_t)c->content_length - c->body_seen)
                    n = (size_t)((uint64_t)c->content_length - c->body_seen);
                memcpy(buf + got, c->raw + c->raw_off, n);
                got += n;
                c->raw_off += n;
                c->body_seen += n;
                if (c->content_length >= 0 && c->body_seen == (uint64_t)c->content_length)
                    c->complete = true;
                continue;
            }
            switch (c->cs) {
            case CH_SIZE:
            case CH_TRAILER:
                c->raw_off++;
                if (ch != '\n') {
                    if (c->line_len < sizeof c->line - 1)
                        c->line[c->line_len++] = ch;
                    break;
                }
                c->line[c->line_len] = '\0';
                if (c->cs == CH_TRAILER) {
                    if (c->line_len <= 1) /* "\r" */
                        c->complete = true;
                } else {
                    c->chunk_left = strtoull(c->line, NULL, 16);
                    c->cs = c->chunk_left ? CH_DATA : CH_TRAILER;
                }
                c->line_len = 0;
                break;
            case CH_DATA: {
                size_t n = c->raw_len - c->raw_off;
                if (n > c->chunk_left)
                    n = (size_t)c->chunk_left;
                if (n > cap - got)
                    n = cap - got;
                memcpy(buf + got, c->raw + c->raw_off, n);
                got += n;
                c->raw_off += n;
                c->body_seen += n;
                c->chunk_left -= n;
                if (c->chunk_left == 0)
                    c->cs = CH_DATA_END;
                break;
            }
            case CH_DATA_END:
                c->raw_off++;
                if (ch == '\n')
                    c->cs = CH_SIZE;
                break;
            case CH_DONE:
                break;
            }
        }
    }
    return got;
}

/* Read the rest of the body (bounded by timeout_ms of silence), discarding it. */
static void sc_drain(struct sclient *c, int timeout_ms)
{
    unsigned char buf[65536];
    while (sc_read(c, buf, sizeof buf, timeout_ms) > 0)
        ;
}

static void sc_close(struct sclient *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* ---- the daemon's memory -------------------------------------------------------------- */

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

/* Raise *worst to the daemon's RSS growth over base (KiB) when it is larger now. */
static void rss_sample(long base, long *worst)
{
    long kib = rss_kib(daemon_proc.pid);
    if (kib - base > *worst)
        *worst = kib - base;
}

/* ---- set-up ---------------------------------------------------------------------------- */

static void start(const char *ahoyd_extra, const char *service_extra)
{
    start_one_service(&stub, &daemon_proc, ahoyd_extra, service_extra);
}

/* ---- head first, body as it comes -------------------------------------------------------- */

/* The head and the first piece reach the client long before the upstream's 1 s pause
 * ends; the rest follows it; the message ends properly (chunked). */
START_TEST(first_bytes_before_the_pause_ends)
{
    struct sclient c;
    unsigned char buf[256];
    double sf = slow_factor();

    start(NULL, NULL);
    double t0 = harness_now_ms();
    sc_open(&c, daemon_proc.port, "/svc/drip", "X-Stub-Stream: drip\r\nX-Stub-Pause-Ms: 1000\r\n",
            (int)(3000 * sf));
    double t_head = harness_now_ms() - t0;
    ck_assert_int_eq(c.status, 200);
    ck_assert(c.chunked);
    char v[256];
    ck_assert_ptr_nonnull(raw_header(c.head, "X-Ahoyd-Attempts", v, sizeof v));
    ck_assert_str_eq(v, "1");
    ck_assert_ptr_nonnull(raw_header(c.head, "X-Ahoyd-Upstream", v, sizeof v));
    size_t n = sc_read(&c, buf, sizeof buf, (int)(3000 * sf));
    double t_first = harness_now_ms() - t0;
    ck_assert_uint_eq(n, 6);
    ck_assert(memcmp(buf, "first\n", 6) == 0);
    ck_assert_msg(t_first < 300 * sf, "first piece after %.0f ms (head %.0f ms)", t_first, t_head);
    n = sc_read(&c, buf, sizeof buf, (int)(3000 * sf));
    double t_rest = harness_now_ms() - t0;
    ck_assert_uint_eq(n, 5);
    ck_assert(memcmp(buf, "rest\n", 5) == 0);
    ck_assert_msg(t_rest >= 950, "the rest after %.0f ms: the stub paused 1000 ms", t_rest);
    sc_read(&c, buf, sizeof buf, (int)(3000 * sf));
    ck_assert(c.complete);
    printf("stream: ttfb head %.1f ms, first chunk %.1f ms, rest %.1f ms (pause 1000 ms)\n", t_head,
           t_first, t_rest);
    sc_close(&c);
}
END_TEST

/* Server-sent events: 5 events 200 ms apart reach the client each within 50 ms. */
START_TEST(sse_events_arrive_as_sent)
{
    struct sclient c;
    unsigned char buf[4096];
    double at[5], sf = slow_factor(), worst = 0;
    char text[4096];
    size_t text_len = 0;
    int seen = 0;

    start(NULL, NULL);
    double t0 = harness_now_ms();
    sc_open(&c, daemon_proc.port, "/svc/events",
            "Accept: text/event-stream\r\nX-Stub-Stream: sse\r\nX-Stub-Events: 5\r\n"
            "X-Stub-Interval-Ms: 200\r\n",
            (int)(3000 * sf));
    ck_assert_int_eq(c.status, 200);
    char v[128];
    ck_assert_ptr_nonnull(raw_header(c.head, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, "text/event-stream");
    while (seen < 5) {
        size_t n = sc_read(&c, buf, sizeof buf, (int)(2000 * sf));
        ck_assert_msg(n > 0, "event %d never came", seen);
        double now = harness_now_ms() - t0;
        ck_assert_uint_lt(text_len + n, sizeof text);
        memcpy(text + text_len, buf, n);
        text_len += n;
        text[text_len] = '\0';
        /* every complete event so far, stamped when its end was read */
        for (;;) {
            char want[32];
            snprintf(want, sizeof want, "data: tick %d\n\n", seen);
            if (!strstr(text, want))
                break;
            at[seen++] = now;
        }
    }
    for (int k = 1; k < 5; k++) {
        double late = at[k] - (at[0] + 200.0 * k);
        if (late < 0)
            late = -late;
        if (late > worst)
            worst = late;
        ck_assert_msg(late <= 50 * sf, "event %d at %.0f ms, event 0 at %.0f ms", k, at[k], at[0]);
    }
    ck_assert_msg(at[0] < 300 * sf, "event 0 at %.0f ms", at[0]);
    sc_read(&c, buf, sizeof buf, (int)(2000 * sf));
    ck_assert(c.complete);
    printf("stream: SSE event 0 at %.1f ms, worst distance from its 200 ms slot %.1f ms\n", at[0],
           worst);
    sc_close(&c);
}
END_TEST

/* Read a download of size bytes at about rate bytes/s, checking every byte; returns the
 * largest RSS growth of the daemon seen meanwhile (KiB). */
static long download_slowly(struct sclient *c, uint64_t size, double rate, long base_kib)
{
    static unsigned char buf[65536];
    uint64_t pos = 0, next_sample = 0;
    long worst = 0;
    double t0 = harness_now_ms();
    while (pos < size) {
        size_t n = sc_read(c, buf, sizeof buf, (int)(5000 * slow_factor()));
        ck_assert_msg(n > 0, "the download stopped at %llu of %llu bytes", (unsigned long long)pos,
                      (unsigned long long)size);
        for (size_t i = 0; i < n; i++)
            if (buf[i] != pattern(pos + i))
                ck_abort_msg("byte %llu differs", (unsigned long long)(pos + i));
        pos += n;
        if (pos >= next_sample) {
            rss_sample(base_kib, &worst);
            next_sample = pos + (4u << 20);
            /* the rate limit: wait until this many bytes are due */
            double due = (double)pos / rate * 1000.0, el = harness_now_ms() - t0;
            if (due > el)
                sleep_ms((long)(due - el));
        }
    }
    return worst;
}

/* A 1 GiB download through a client slower than the upstream: every byte arrives in
 * order, and the daemon's RSS stays flat (the upstream is held back, not buffered). */
START_TEST(big_download_through_a_slow_client)
{
    struct sclient c;
    uint64_t size = big_size();
    char hdrs[256];

    start(NULL, "timeout: 0");
    /* warm the daemon up (pools, first allocations), then measure */
    sc_open(&c, daemon_proc.port, "/svc/warm",
            "X-Stub-Stream: download\r\nX-Stub-Bytes: 4194304\r\n", 5000);
    sc_drain(&c, 5000);
    ck_assert(c.complete);
    sc_close(&c);
    long base = rss_kib(daemon_proc.pid);
    ck_assert_int_gt(base, 0);

    snprintf(hdrs, sizeof hdrs, "X-Stub-Stream: download\r\nX-Stub-Bytes: %llu\r\n",
             (unsigned long long)size);
    double t0 = harness_now_ms();
    sc_open(&c, daemon_proc.port, "/svc/big", hdrs, 5000);
    ck_assert_int_eq(c.status, 200);
    ck_assert_int_eq(c.content_length, (int64_t)size); /* the upstream's length is kept */
    long growth = download_slowly(&c, size, 300.0 * (1 << 20) / slow_factor(), base);
    double took = harness_now_ms() - t0;
    ck_assert(c.complete);
    sc_close(&c);
    printf("stream: %llu MiB download in %.0f ms, ahoyd RSS %ld KiB at start, growth %ld KiB\n",
           (unsigned long long)(size >> 20), took, base, growth);
    ck_assert_msg(growth < 16 * 1024, "RSS grew by %ld KiB", growth);
    ck_assert(proc_log_wait(&daemon_proc, "path=\"/svc/big\"", 3000));
}
END_TEST

/* Without a Content-Length the download goes to the client chunked, byte for byte. */
START_TEST(chunked_download)
{
    struct sclient c;
    uint64_t size = 64u << 20;
    char hdrs[256];

    start(NULL, NULL);
    long base = rss_kib(daemon_proc.pid);
    snprintf(hdrs, sizeof hdrs,
             "X-Stub-Stream: download\r\nX-Stub-Chunked: 1\r\nX-Stub-Bytes: %llu\r\n",
             (unsigned long long)size);
    sc_open(&c, daemon_proc.port, "/svc/chunked", hdrs, 5000);
    ck_assert_int_eq(c.status, 200);
    ck_assert(c.chunked);
    long growth = download_slowly(&c, size, 200.0 * (1 << 20) / slow_factor(), base);
    unsigned char b[16];
    sc_read(&c, b, sizeof b, 3000);
    ck_assert(c.complete);
    sc_close(&c);
    ck_assert_msg(growth < 16 * 1024, "RSS grew by %ld KiB", growth);
}
END_TEST

/* ---- what is retried never reaches the client ---------------------------------------- */

/* A 503 (its body over 64 KiB) then a 200: only the 200 and its body reach the client. */
START_TEST(retried_response_never_reaches_the_client)
{
    struct sclient c;

    start(NULL, "retry: {max-attempts: 3, base-delay: 10ms}\ncircuit-breaker: false");
    ck_assert_int_eq(stub_mode(&stub, "{\"status\":503,\"count\":1}"), 0);
    sc_open(&c, daemon_proc.port, "/svc/x", "X-Stub-Stream: download\r\nX-Stub-Bytes: 200000\r\n",
            5000);
    ck_assert_int_eq(c.status, 200);
    char v[64];
    ck_assert_ptr_nonnull(raw_header(c.head, "X-Ahoyd-Attempts", v, sizeof v));
    ck_assert_str_eq(v, "2");
    ck_assert_int_eq(c.content_length, 200000);
    download_slowly(&c, 200000, 1e12, 0);
    ck_assert(c.complete);
    sc_close(&c);
    ck_assert_int_eq(stub_count(&stub), 2);
}
END_TEST

/* A 503 then a connect failure: the answer is the upstream's 503 with its own body. A
 * 503 too big to keep (over 64 KiB) is dropped: the answer is then ahoyd's 502. */
START_TEST(kept_response_answers_when_retries_fail)
{
    struct http_resp r;
    const char *small[] = {NULL};
    const char *big[] = {"X-Stub-Body-Bytes: 100000", NULL};
    const char *const *hdrs[] = {small, big};

    for (int i = 0; i < 2; i++) {
        start(NULL, "retry: {max-attempts: 2, base-delay: 400ms}\ncircuit-breaker: false");
        ck_assert_int_eq(stub_mode(&stub, "{\"status\":503}"), 0);
        struct http_req req = {.url = NULL, .headers = hdrs[i]};
        char url[128];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/svc/x", daemon_proc.port);
        req.url = url;
        struct http_async *a = http_async_start(&req);
        ck_assert(stub_wait_count(&stub, 1, 5000));
        proc_kill(&stub); /* the retry finds nobody: connect failure */
        http_async_finish(a, &r);
        if (i == 0) {
            ck_assert_int_eq(r.status, 503);
            cJSON *j = json_body(&r);
            ck_assert_ptr_nonnull(j);
            ck_assert_str_eq(json_str(j, "upstream"), "a"); /* the stub's echo, not ours */
            cJSON_Delete(j);
            ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "2");
        } else {
            assert_ahoyd_error(&r, 502, "upstream_unreachable", "svc", 2);
        }
        http_resp_free(&r);
        proc_stop(&daemon_proc);
    }
}
END_TEST

/* ---- cut after the head ----------------------------------------------------------------- */

/* A reset after the head and part of the body: the client sees the head, part of the
 * body and a close without the body's end; the access log shows RS; not retried. */
START_TEST(reset_after_head_cuts_the_reply)
{
    struct sclient c;

    start(NULL, "retry: {max-attempts: 3, base-delay: 10ms}\ncircuit-breaker: false");
    sc_open(&c, daemon_proc.port, "/svc/cut", "X-Stub-Stream: reset\r\nX-Stub-Bytes: 5000\r\n",
            5000);
    ck_assert_int_eq(c.status, 200);
    sc_drain(&c, 5000);
    ck_assert(!c.complete);
    ck_assert(c.closed);
    ck_assert_uint_le(c.body_seen, 5000);
    sc_close(&c);
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS,UR", 3000));
    ck_assert_int_eq(stub_count(&stub), 1);
}
END_TEST

/* max-response-body cuts a stream that grows past it (RS); a declared length over it is
 * a 502 before any head. */
START_TEST(max_response_body_cuts_the_stream)
{
    struct sclient c;
    struct http_resp r;

    start("max-response-body: 1MiB", NULL);
    sc_open(&c, daemon_proc.port, "/svc/long",
            "X-Stub-Stream: download\r\nX-Stub-Chunked: 1\r\nX-Stub-Bytes: 4194304\r\n", 5000);
    ck_assert_int_eq(c.status, 200);
    sc_drain(&c, 5000);
    ck_assert(!c.complete);
    ck_assert_uint_le(c.body_seen, 1u << 20);
    sc_close(&c);
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS", 3000));

    http_get(daemon_proc.port, "/svc/declared",
             (const char *[]){"X-Stub-Stream: download", "X-Stub-Bytes: 4194304", NULL}, &r);
    assert_ahoyd_error(&r, 502, "upstream_response_too_large", "svc", 1);
    http_resp_free(&r);
}
END_TEST

/* The client leaves mid-stream: the attempt is cancelled (499, DC), no breaker failure
 * (a threshold of 1 would open it), and the next call works. */
START_TEST(client_leaving_mid_stream)
{
    struct sclient c;
    unsigned char buf[65536];
    struct http_resp r;

    start(NULL, "circuit-breaker: {failure-threshold: 1}");
    sc_open(&c, daemon_proc.port, "/svc/left",
            "X-Stub-Stream: download\r\nX-Stub-Bytes: 1073741824\r\n", 5000);
    ck_assert_int_eq(c.status, 200);
    ck_assert_uint_gt(sc_read(&c, buf, sizeof buf, 5000), 0);
    sc_close(&c);
    ck_assert(proc_log_wait(&daemon_proc, "status=499", 5000));
    ck_assert(proc_log_wait(&daemon_proc, "flags=DC", 1000));
    http_get(daemon_proc.port, "/svc/after", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}
END_TEST

/* A stream open at SIGTERM finishes (calls in flight finish), then the daemon exits 0. */
START_TEST(drain_lets_a_stream_finish)
{
    struct sclient c;
    unsigned char buf[4096];

    start(NULL, NULL);
    sc_open(&c, daemon_proc.port, "/svc/events",
            "X-Stub-Stream: sse\r\nX-Stub-Events: 6\r\nX-Stub-Interval-Ms: 100\r\n", 5000);
    ck_assert_int_eq(c.status, 200);
    ck_assert_uint_gt(sc_read(&c, buf, sizeof buf, 5000), 0);
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    sc_drain(&c, 5000);
    ck_assert(c.complete);
    sc_close(&c);
    ck_assert_int_eq(proc_wait(&daemon_proc, 10000), 0);
}
END_TEST

/* ---- request bodies stream up ------------------------------------------------------------ */

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static unsigned char *pattern_body(size_t n)
{
    unsigned char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern(i * 3 + 1);
    return b;
}

struct upload {
    struct http_req req;
    char url[128];
    const char *hdrs[4];
    struct http_async *a;
};

static void upload_start(struct upload *u, const char *target, const void *body, size_t n,
                         bool chunked, const char *extra)
{
    memset(u, 0, sizeof *u);
    snprintf(u->url, sizeof u->url, "http://127.0.0.1:%d%s", daemon_proc.port, target);
    u->hdrs[0] = "X-Stub-Sink: 1";
    u->hdrs[1] = extra;
    u->req.method = "POST";
    u->req.url = u->url;
    u->req.headers = u->hdrs;
    u->req.body = body;
    u->req.body_len = n;
    u->req.chunked = chunked;
    u->req.timeout_ms = 120000;
    u->a = http_async_start(&u->req);
    ck_assert_ptr_nonnull(u->a);
}

/* The stub got exactly these bytes (its sink's count and sum). */
static void assert_sunk(const struct http_resp *r, const unsigned char *body, size_t n)
{
    char want[32];
    ck_assert_msg(r->status == 200, "status %ld (curl %d): %.200s", r->status, r->curl_code,
                  r->body ? r->body : "");
    ck_assert_ptr_nonnull(http_header(r, "X-Stub-Sink-Bytes"));
    ck_assert_uint_eq(strtoull(http_header(r, "X-Stub-Sink-Bytes"), NULL, 10), n);
    snprintf(want, sizeof want, "%016llx", (unsigned long long)fnv1a(body, n));
    ck_assert_str_eq(http_header(r, "X-Stub-Sink-Sum"), want);
}

/* The stub resets the next call; the first n bytes of body go up to target with the
 * header extra (an Idempotency-Key), the answer into r. */
static void upload_after_a_reset(const char *target, const unsigned char *body, size_t n,
                                 const char *extra, struct http_resp *r)
{
    struct upload u;
    ck_assert_int_eq(stub_mode(&stub, "{\"action\":\"reset\",\"count\":1}"), 0);
    upload_start(&u, target, body, n, false, extra);
    http_async_finish(u.a, r);
}

/* ... and the body was kept: the second attempt took it whole. */
static void assert_kept_and_retried(const char *target, const unsigned char *body, size_t n,
                                    const char *extra)
{
    struct http_resp r;
    upload_after_a_reset(target, body, n, extra, &r);
    assert_sunk(&r, body, n);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "2");
    http_resp_free(&r);
}

/* ... and the body was not kept: no second attempt, the reset comes back as a 502. */
static void assert_unkept_not_retried(const char *target, const unsigned char *body, size_t n,
                                      const char *extra)
{
    struct http_resp r;
    upload_after_a_reset(target, body, n, extra, &r);
    assert_ahoyd_error(&r, 502, "upstream_reset", "svc", 1);
    http_resp_free(&r);
}

/* A 256 MiB upload (max-request-body raised) reaches the upstream byte for byte while
 * the daemon's RSS stays flat: the body is not kept (over request-buffer) and the client
 * is held back while the upstream is slower. */
START_TEST(big_upload_streams_through)
{
    size_t n = slow_factor() > 1 ? (size_t)64 << 20 : (size_t)256 << 20;
    unsigned char *body = pattern_body(n);
    struct upload u;
    struct http_resp r;
    long worst = 0;

    start("max-request-body: 0", "timeout: 0");
    long base = rss_kib(daemon_proc.pid);
    double t0 = harness_now_ms();
    upload_start(&u, "/svc/up", body, n, false, NULL);
    /* sample the daemon's memory until the answer is logged */
    for (int i = 0; i < 60000 && !proc_log_wait(&daemon_proc, "path=\"/svc/up\"", 5); i++) {
        rss_sample(base, &worst);
    }
    http_async_finish(u.a, &r);
    double took = harness_now_ms() - t0;
    assert_sunk(&r, body, n);
    http_resp_free(&r);
    free(body);
    printf("stream: %zu MiB upload in %.0f ms, ahoyd RSS %ld KiB at start, growth %ld KiB\n",
           n >> 20, took, base, worst);
    ck_assert_msg(worst < 16 * 1024, "RSS grew by %ld KiB", worst);
}
END_TEST

/* A chunked upload goes up whole, byte for byte. */
START_TEST(chunked_upload)
{
    size_t n = 3u << 20;
    unsigned char *body = pattern_body(n);
    struct upload u;
    struct http_resp r;

    start(NULL, NULL);
    upload_start(&u, "/svc/chunked", body, n, true, NULL);
    http_async_finish(u.a, &r);
    assert_sunk(&r, body, n);
    http_resp_free(&r);
    free(body);
}
END_TEST

/* A POST over request-buffer is not kept: after a reset it is not sent again, even with
 * an Idempotency-Key; one under it is, with the same bytes. */
START_TEST(kept_body_retried_unkept_not)
{
    size_t big = 2u << 20, small = 200u << 10;
    unsigned char *body = pattern_body(big);

    start(NULL, "request-buffer: 1MiB\nretry: {max-attempts: 3, base-delay: 10ms}\n"
                "circuit-breaker: false");
    assert_unkept_not_retried("/svc/big", body, big, "Idempotency-Key: k1");
    ck_assert_int_eq(stub_count(&stub), 1);

    assert_kept_and_retried("/svc/small", body, small, "Idempotency-Key: k2");
    ck_assert_int_eq(stub_count(&stub), 3);
    free(body);
}
END_TEST

/* A body over request-buffer that went up before a retryable status is not sent again:
 * the client gets the upstream's 503 after one attempt, not a retry without the body. */
START_TEST(unkept_body_not_retried_after_a_status)
{
    size_t n = 2u << 20;
    unsigned char *body = pattern_body(n);
    struct upload u;
    struct http_resp r;

    start(NULL, "request-buffer: 1KiB\nretry: {max-attempts: 2, base-delay: 10ms}\n"
                "circuit-breaker: false");
    ck_assert_int_eq(stub_mode(&stub, "{\"status\":503,\"count\":1}"), 0);
    upload_start(&u, "/svc/status", body, n, false, "Idempotency-Key: k5");
    http_async_finish(u.a, &r);
    ck_assert_msg(r.status == 503, "status %ld, attempts %s, sink-bytes %s", r.status,
                  http_header(&r, "X-Ahoyd-Attempts") ? http_header(&r, "X-Ahoyd-Attempts") : "-",
                  http_header(&r, "X-Stub-Sink-Bytes") ? http_header(&r, "X-Stub-Sink-Bytes")
                                                      : "-");
    ck_assert_int_eq(stub_count(&stub), 1);
    http_resp_free(&r);
    free(body);
}
END_TEST

/* ahoyd.max-retry-buffers bounds the kept bodies of all calls together: past it a body
 * under request-buffer streams unkept, and its call is not retried after a reset. */
START_TEST(retry_buffers_bound_kept_bodies)
{
    size_t n = 200u << 10;
    unsigned char *body = pattern_body(n);

    start("max-retry-buffers: 100KiB",
          "request-buffer: 1MiB\nretry: {max-attempts: 3, base-delay: 10ms}\n"
          "circuit-breaker: false");
    assert_unkept_not_retried("/svc/over", body, n, "Idempotency-Key: k3");
    /* within them (the first body's share given back), the same body is kept again */
    assert_kept_and_retried("/svc/under", body, 50u << 10, "Idempotency-Key: k4");
    free(body);
}
END_TEST

/* A kept body's share of max-retry-buffers goes back once its final head is out: a long
 * stream with a kept POST body open, another call's body is still kept and retried. */
START_TEST(a_stream_gives_back_its_retry_buffer)
{
    size_t n = 80u << 10;
    unsigned char *body = pattern_body(n);
    struct sclient c;
    unsigned char buf[4096];

    start("max-retry-buffers: 100KiB",
          "request-buffer: 1MiB\ntimeout: 0\nretry: {max-attempts: 3, base-delay: 10ms}\n"
          "circuit-breaker: false");
    sc_post(&c, daemon_proc.port, "/svc/events", "X-Stub-Sink: 1\r\nX-Stub-Stream: sse\r\n"
            "X-Stub-Events: 10\r\nX-Stub-Interval-Ms: 300\r\n", body, n, 5000);
    ck_assert_int_eq(c.status, 200);
    ck_assert_uint_gt(sc_read(&c, buf, sizeof buf, 5000), 0);
    assert_kept_and_retried("/svc/kept", body, 50u << 10, "Idempotency-Key: k6");
    ck_assert(!c.complete && !c.closed); /* the stream was open all along */
    sc_drain(&c, 10000);
    ck_assert(c.complete);
    sc_close(&c);
    free(body);
}
END_TEST

/* The deadline starts at the last byte of a body that streamed up during the call, and
 * cuts the attempt started before it: 504 about 400 ms after that byte, not when the
 * slow upstream answers 3 s later. */
START_TEST(deadline_starts_at_the_body_end)
{
    char resp[8192];
    double sf = slow_factor();

    start(NULL, "deadline: 400ms\ntimeout: 10s\nretry: false");
    int fd = raw_connect(daemon_proc.port);
    ck_assert_int_ge(fd, 0);
    raw_send_text(fd, "POST /svc/slow HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n"
                      "X-Stub-Delay-Ms: 3000\r\n\r\n0123456789");
    sleep_ms(600); /* longer than the deadline: it has not started yet */
    raw_send_text(fd, "abcdefghij");
    double t0 = harness_now_ms();
    int st = raw_read_response(fd, resp, sizeof resp, (int)(5000 * sf));
    double took = harness_now_ms() - t0;
    close(fd);
    ck_assert_int_eq(st, 504);
    ck_assert_msg(took >= 350 && took < 1500 * sf, "504 after %.0f ms (deadline 400 ms)", took);
}
END_TEST

/* A listening socket on 127.0.0.1 (port 0, backlog given) that nothing accepts by itself,
 * and the daemon started with svc's base-url on it (timeout 3 s, no retry, no breaker),
 * ahoyd_extra ("" or YAML lines) added to the ahoyd block. Returns the socket. */
static int start_on_a_listener(int backlog, const char *ahoyd_extra)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, backlog), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n%s"
             "pyfly:\n  client:\n    services:\n      svc:\n"
             "        base-url: http://127.0.0.1:%d/\n        timeout: 3s\n"
             "        retry: false\n        circuit-breaker: false\n",
             ahoyd_extra, ntohs(sa.sin_port));
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    return lfd;
}

/* 24 clients posting 8 MB each to an upstream that accepts and never reads: the daemon
 * holds little of each (the clients are held back), not 24 x 8 MB. */
START_TEST(uploads_to_a_silent_upstream_stay_small)
{
    enum { N = 24 };
    size_t n = 8000000;
    unsigned char *body = pattern_body(n);
    struct upload u[N];
    struct http_resp r;
    long worst = 0;

    /* a listening socket never accepted: the kernel takes the connections and a little
     * of each body, then nothing more */
    int lfd = start_on_a_listener(128, "");
    long base = rss_kib(daemon_proc.pid);
    for (int i = 0; i < N; i++)
        upload_start(&u[i], "/svc/silent", body, n, false, NULL);
    double end = harness_now_ms() + 2500;
    while (harness_now_ms() < end) {
        rss_sample(base, &worst);
        sleep_ms(20);
    }
    for (int i = 0; i < N; i++) {
        http_async_finish(u[i].a, &r);
        ck_assert_int_eq(r.status, 504);
        http_resp_free(&r);
    }
    close(lfd);
    free(body);
    printf("stream: %d uploads of 8 MB to a silent upstream, ahoyd RSS growth %ld KiB\n", N, worst);
    ck_assert_msg(worst < 64 * 1024, "RSS grew by %ld KiB", worst);
}
END_TEST

/* A chunked upload to an upstream that answers at once (200, "hello") and then reads
 * no more: the client is held back while the attempt runs, the daemon does not take the
 * 64 MiB into memory; the attempt's timeout ends the call. */
START_TEST(upload_after_an_early_answer_is_held)
{
    size_t n = (size_t)64 << 20;
    unsigned char *body = pattern_body(n);
    struct upload u;
    struct http_resp r;
    long worst = 0;
    char head[8192];
    size_t hl = 0;

    int lfd = start_on_a_listener(8, "  max-request-body: 0\n");
    long base = rss_kib(daemon_proc.pid);
    upload_start(&u, "/svc/early", body, n, true, NULL);
    struct pollfd pl = {.fd = lfd, .events = POLLIN};
    ck_assert_int_eq(poll(&pl, 1, (int)(5000 * slow_factor())), 1);
    int fd = accept(lfd, NULL, NULL);
    ck_assert_int_ge(fd, 0);
    /* the request head, then the answer; the body is never read */
    double end = harness_now_ms() + 5000 * slow_factor();
    while (!memmem(head, hl, "\r\n\r\n", 4) && hl < sizeof head &&
           harness_now_ms() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 100) != 1)
            continue;
        ssize_t k = recv(fd, head + hl, sizeof head - hl < 256 ? sizeof head - hl : 256, 0);
        ck_assert_int_gt(k, 0);
        hl += (size_t)k;
    }
    ck_assert_ptr_nonnull(memmem(head, hl, "\r\n\r\n", 4));
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    ck_assert_int_eq(send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof answer - 1));
    for (int i = 0; i < 60000 && !proc_log_wait(&daemon_proc, "path=\"/svc/early\"", 5); i++) {
        rss_sample(base, &worst);
    }
    http_async_finish(u.a, &r);
    http_resp_free(&r);
    close(fd);
    close(lfd);
    free(body);
    printf("stream: 64 MiB upload after an early answer, ahoyd RSS growth %ld KiB\n", worst);
    ck_assert_msg(worst < 16 * 1024, "RSS grew by %ld KiB", worst);
}
END_TEST

/* A stream still open at shutdown-timeout is cut (the client sees no end, flag RS) and
 * the daemon exits 0. */
START_TEST(shutdown_timeout_cuts_a_stream)
{
    struct sclient c;
    unsigned char buf[4096];

    start("shutdown-timeout: 500ms", "timeout: 0");
    sc_open(&c, daemon_proc.port, "/svc/events",
            "X-Stub-Stream: sse\r\nX-Stub-Events: 20\r\nX-Stub-Interval-Ms: 400\r\n", 5000);
    ck_assert_int_eq(c.status, 200);
    ck_assert_uint_gt(sc_read(&c, buf, sizeof buf, 5000), 0);
    double t0 = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    sc_drain(&c, 5000);
    ck_assert(!c.complete);
    ck_assert(c.closed);
    ck_assert_msg(harness_now_ms() - t0 < 3000 * slow_factor(), "cut after %.0f ms",
                  harness_now_ms() - t0);
    sc_close(&c);
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS", 3000));
    ck_assert_int_eq(proc_wait(&daemon_proc, 10000), 0);
}
END_TEST

/* At shutdown-timeout a stream whose client does not read (the upstream held back, the
 * connection not waiting for anything) is cut too: logged with its status and RS, and
 * the daemon exits in time. */
START_TEST(shutdown_timeout_cuts_a_stream_not_read)
{
    struct sclient c;
    char hdrs[256];

    start("shutdown-timeout: 1s", "timeout: 0");
    snprintf(hdrs, sizeof hdrs, "X-Stub-Stream: download\r\nX-Stub-Bytes: %llu\r\n",
             (unsigned long long)(UINT64_C(256) << 20));
    sc_open(&c, daemon_proc.port, "/svc/unread", hdrs, 5000);
    ck_assert_int_eq(c.status, 200);
    double t0 = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert_int_eq(proc_wait(&daemon_proc, (int)(10000 * slow_factor())), 0);
    double took = harness_now_ms() - t0;
    ck_assert_msg(took < 3000 * slow_factor(), "exited after %.0f ms", took);
    ck_assert(proc_log_wait(&daemon_proc, "path=\"/svc/unread\" status=200 ", 1000));
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS", 1000));
    sc_drain(&c, 5000);
    ck_assert(!c.complete);
    sc_close(&c);
}
END_TEST

/* Another GET on c's connection, its head read (the previous answer must have ended). */
static void sc_again(struct sclient *c, const char *target, const char *extra, int timeout_ms)
{
    char req[2048];
    int fd = c->fd;
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->content_length = -1;
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n%s\r\n", target, extra ? extra : "");
    raw_send_text(c->fd, req);
    sc_head(c, timeout_ms);
}

/* The connection is kept after a streamed answer, chunked or with a Content-Length. */
START_TEST(keep_alive_after_a_stream)
{
    static const char *const kinds[] = {
        "X-Stub-Stream: download\r\nX-Stub-Chunked: 1\r\nX-Stub-Bytes: 1048576\r\n",
        "X-Stub-Stream: download\r\nX-Stub-Bytes: 1048576\r\n",
    };
    struct sclient c;

    start(NULL, NULL);
    for (size_t i = 0; i < 2; i++) {
        sc_open(&c, daemon_proc.port, "/svc/first", kinds[i], 5000);
        ck_assert_int_eq(c.status, 200);
        sc_drain(&c, 5000);
        ck_assert_msg(c.complete && !c.closed, "answer %zu: complete %d closed %d", i,
                      c.complete, c.closed);
        ck_assert_uint_eq(c.body_seen, 1048576);
        sc_again(&c, "/svc/second", kinds[i], 5000);
        ck_assert_int_eq(c.status, 200);
        sc_drain(&c, 5000);
        ck_assert(c.complete);
        ck_assert_uint_eq(c.body_seen, 1048576);
        sc_close(&c);
    }
}
END_TEST

/* A stream cut by the upstream (RS) is the endpoint's failure: the breaker opens; one
 * cut by max-response-body is not. */
START_TEST(stream_cuts_and_the_breaker)
{
    struct sclient c;
    struct http_resp r;

    start("max-response-body: 1MiB",
          "retry: false\ncircuit-breaker: {failure-threshold: 1, recovery-timeout: 30s}");
    sc_open(&c, daemon_proc.port, "/svc/long",
            "X-Stub-Stream: download\r\nX-Stub-Chunked: 1\r\nX-Stub-Bytes: 4194304\r\n", 5000);
    ck_assert_int_eq(c.status, 200);
    sc_drain(&c, 5000);
    ck_assert(!c.complete);
    sc_close(&c);
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS", 3000));
    http_get(daemon_proc.port, "/svc/after-limit", NULL, &r);
    ck_assert_int_eq(r.status, 200); /* still closed */
    http_resp_free(&r);

    sc_open(&c, daemon_proc.port, "/svc/cut", "X-Stub-Stream: reset\r\nX-Stub-Bytes: 5000\r\n",
            5000);
    ck_assert_int_eq(c.status, 200);
    sc_drain(&c, 5000);
    ck_assert(!c.complete);
    sc_close(&c);
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS,UR", 3000));
    http_get(daemon_proc.port, "/svc/after-reset", NULL, &r);
    assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
    http_resp_free(&r);
}
END_TEST

int main(void)
{
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer keeps freed blocks in a quarantine (256 MiB): libcurl copies the
     * bytes it holds for a paused transfer, so the daemon's RSS would measure that, not
     * what ahoyd holds. A small quarantine keeps the RSS bounds meaningful. */
    static char asan[512];
    const char *was = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%squarantine_size_mb=4", was ? was : "", was ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
#endif
    Suite *s = suite_create("stream");
    TCase *tc = harness_tcase(s, "responses");
    tcase_add_test(tc, first_bytes_before_the_pause_ends);
    tcase_add_test(tc, sse_events_arrive_as_sent);
    tcase_add_test(tc, big_download_through_a_slow_client);
    tcase_add_test(tc, chunked_download);
    tc = harness_tcase(s, "retries");
    tcase_add_test(tc, retried_response_never_reaches_the_client);
    tcase_add_test(tc, kept_response_answers_when_retries_fail);
    tc = harness_tcase(s, "cut");
    tcase_add_test(tc, reset_after_head_cuts_the_reply);
    tcase_add_test(tc, max_response_body_cuts_the_stream);
    tcase_add_test(tc, client_leaving_mid_stream);
    tcase_add_test(tc, drain_lets_a_stream_finish);
    tcase_add_test(tc, shutdown_timeout_cuts_a_stream);
    tc = harness_tcase(s, "unread");
    tcase_add_test(tc, shutdown_timeout_cuts_a_stream_not_read);
    tcase_add_test(tc, keep_alive_after_a_stream);
    tcase_add_test(tc, stream_cuts_and_the_breaker);
    tc = harness_tcase(s, "uploads");
    tcase_add_test(tc, big_upload_streams_through);
    tcase_add_test(tc, chunked_upload);
    tcase_add_test(tc, kept_body_retried_unkept_not);
    tcase_add_test(tc, unkept_body_not_retried_after_a_status);
    tcase_add_test(tc, retry_buffers_bound_kept_bodies);
    tcase_add_test(tc, deadline_starts_at_the_body_end);
    tcase_add_test(tc, uploads_to_a_silent_upstream_stay_small);
    tc = harness_tcase(s, "held");
    tcase_add_test(tc, upload_after_an_early_answer_is_held);
    tcase_add_test(tc, a_stream_gives_back_its_retry_buffer);
    return harness_main(s);
}
