/*
 * check_tunnel.c - integration suite for WebSocket tunnels (SPEC 3.6): the real
 * binary in front of the stub's WebSocket endpoints (/ws-echo echoes frames,
 * /ws-close accepts and closes at once, /ws-deny answers 403), driven by a tiny
 * WebSocket client written here (masked frames, as a browser sends them).
 *
 * - frames echo through: a text frame and a 1 MiB binary frame; the handshake
 *   headers reach the upstream and its Sec-WebSocket-Accept comes back;
 * - an upstream that closes closes the client's side; a non-101 answer comes
 *   back as an ordinary response with its body;
 * - ahoyd_tunnels_open while open and after, one access-log line (101, UG, the
 *   bytes both ways), promtool on the live exposition;
 * - idle-timeout closes a tunnel only when both directions were silent; the
 *   drain closes it at shutdown-timeout, not before;
 * - connect failures are retried on another endpoint; declared methods refuse an
 *   upgrade they do not declare (404/405).
 *
 * Every wait polls with a bound.
 */
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"

static struct proc daemon_proc;
static struct proc stub;

#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455's example */

/* ---- a tiny WebSocket client ------------------------------------------------------- */

/* Read exactly n bytes within timeout_ms; false on EOF, error or timeout. */
static bool read_exact(int fd, void *buf, size_t n, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    char *p = buf;
    while (n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int left = (int)(end - harness_now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return false;
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static bool write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Connect to ahoyd and send the upgrade for target; the response head (through the
 * blank line, NUL-terminated) goes to head. Returns the fd, or -1. */
static int ws_open(int port, const char *target, char *head, size_t cap)
{
    char req[1024];
    size_t n = 0;
    int fd = raw_connect(port);
    if (fd < 0)
        return -1;
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
             "Sec-WebSocket-Protocol: chat\r\nOrigin: http://example.test\r\n\r\n",
             target);
    raw_send_text(fd, req);
    while (n + 1 < cap) {
        if (!read_exact(fd, head + n, 1, 10000))
            break;
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = '\0';
    return fd;
}

/* One masked frame from the client. */
static bool ws_send(int fd, int op, const void *payload, size_t len)
{
    unsigned char h[14], mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | op);
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(h + hl, mask, 4);
    hl += 4;
    unsigned char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = ((const unsigned char *)payload)[i] ^ mask[i & 3];
    bool ok = write_all(fd, h, hl) && write_all(fd, p, len);
    free(p);
    return ok;
}

/* One frame from the server (unmasked): its opcode, payload malloc'd in *out. -1 on
 * EOF, error or timeout, else the payload length. */
static long ws_recv(int fd, int *op, unsigned char **out, int timeout_ms)
{
    unsigned char h[10];
    uint64_t len;
    *out = NULL;
    if (!read_exact(fd, h, 2, timeout_ms))
        return -1;
    *op = h[0] & 15;
    ck_assert_msg(!(h[1] & 0x80), "a server frame must not be masked");
    len = h[1] & 127;
    if (len == 126) {
        if (!read_exact(fd, h + 2, 2, timeout_ms))
            return -1;
        len = (uint64_t)h[2] << 8 | h[3];
    } else if (len == 127) {
        if (!read_exact(fd, h + 2, 8, timeout_ms))
            return -1;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
    }
    *out = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(*out);
    if (!read_exact(fd, *out, len, timeout_ms)) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return (long)len;
}

/* Send a text frame and assert its echo. */
static void echo_text(int fd, const char *text)
{
    unsigned char *got;
    int op = 0;
    ck_assert(ws_send(fd, 1, text, strlen(text)));
    long n = ws_recv(fd, &op, &got, 10000);
    ck_assert_msg(n == (long)strlen(text), "echo of %s: %ld bytes", text, n);
    ck_assert_int_eq(op, 1);
    ck_assert(memcmp(got, text, (size_t)n) == 0);
    free(got);
}

/* The peer closed: a read gives EOF (or a reset) within timeout_ms. Returns the time it
 * took in ms, or -1 when the connection stayed open. */
static double wait_eof(int fd, int timeout_ms)
{
    double t0 = harness_now_ms(), end = t0 + timeout_ms;
    char buf[4096];
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int left = (int)(end - harness_now_ms());
        if (left <= 0)
            return -1;
        if (poll(&pfd, 1, left) <= 0)
            continue;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            return harness_now_ms() - t0;
    }
}

static void start_with(const char *ahoyd_extra, const char *service_extra)
{
    start_one_service(&stub, &daemon_proc, ahoyd_extra, service_extra);
}

/* The one service with the admin API on (for the gauge). */
static void start_with_admin(void)
{
    char *yaml;
    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: 127.0.0.1:0\n"
                              "  access-log: stderr\n"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        base-url: http://127.0.0.1:%d/base\n",
                              stub.port),
                     0);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
}

/* The value of ahoyd_tunnels_open{service="svc"} on the admin port, -1 if absent. */
static long tunnels_open(void)
{
    struct http_resp r;
    long v = -1;
    http_get(daemon_proc.admin_port, "/metrics", NULL, &r);
    const char *p = r.body ? strstr(r.body, "ahoyd_tunnels_open{service=\"svc\"} ") : NULL;
    if (p)
        v = strtol(p + strlen("ahoyd_tunnels_open{service=\"svc\"} "), NULL, 10);
    http_resp_free(&r);
    return v;
}

static bool tunnels_open_wait(long want, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < end) {
        if (tunnels_open() == want)
            return true;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* ---- frames through the tunnel --------------------------------------------------- */

START_TEST(text_and_large_binary_echo)
{
    char head[4096], buf[128];
    unsigned char *big, *got;
    int op = 0;
    size_t n = 1 << 20;

    start_with(NULL, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert_str_eq(raw_header(head, "Sec-WebSocket-Accept", buf, sizeof(buf)), WS_ACCEPT);
    ck_assert_str_eq(raw_header(head, "Sec-WebSocket-Protocol", buf, sizeof(buf)), "chat");
    ck_assert_ptr_nonnull(raw_header(head, "Upgrade", buf, sizeof(buf)));
    ck_assert_str_eq(raw_header(head, "X-Ahoyd-Attempts", buf, sizeof(buf)), "1");

    echo_text(fd, "hello through ahoyd");
    big = malloc(n);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 7 + (i >> 11));
    ck_assert(ws_send(fd, 2, big, n));
    long got_n = ws_recv(fd, &op, &got, 20000);
    ck_assert_int_eq(got_n, (long)n);
    ck_assert_int_eq(op, 2);
    ck_assert(memcmp(got, big, n) == 0);
    free(got);
    free(big);
    echo_text(fd, "and after it");
    close(fd);

    /* what the upstream got: the handshake headers and the forwarded ones */
    cJSON *reqs = stub_requests(&stub);
    cJSON *last = cJSON_GetArrayItem(reqs, cJSON_GetArraySize(reqs) - 1);
    ck_assert_ptr_nonnull(last);
    ck_assert_str_eq(json_str(last, "target"), "/base/ws-echo");
    const char *up = echo_header(last, "Upgrade"), *conn = echo_header(last, "Connection");
    ck_assert_msg(up && strcasecmp(up, "websocket") == 0, "Upgrade: %s", up ? up : "(none)");
    ck_assert_msg(conn && strcasestr(conn, "upgrade"), "Connection: %s", conn ? conn : "(none)");
    ck_assert_str_eq(echo_header(last, "Sec-WebSocket-Key"), WS_KEY);
    ck_assert_str_eq(echo_header(last, "Sec-WebSocket-Version"), "13");
    ck_assert_str_eq(echo_header(last, "Origin"), "http://example.test");
    ck_assert_str_eq(echo_header(last, "X-Forwarded-For"), "127.0.0.1");
    ck_assert_ptr_nonnull(echo_header(last, "X-Request-Id"));
    ck_assert_str_eq(echo_header(last, "X-Ahoyd-Attempt"), "1");
    cJSON_Delete(reqs);
}
END_TEST

/* The bytes on either side of the 101 are not lost: the upstream's first frame sent with
 * its 101, and a client frame sent with the request head (MHD has read it already). */
START_TEST(bytes_around_the_101_kept)
{
    char head[4096], req[1024];
    unsigned char *got;
    int op = 0;
    start_with(NULL, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-hello", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert_int_eq(ws_recv(fd, &op, &got, 5000), 7);
    ck_assert(memcmp(got, "welcome", 7) == 0);
    free(got);
    echo_text(fd, "after the welcome");
    close(fd);

    /* request head and a first frame in one write */
    fd = raw_connect(daemon_proc.port);
    ck_assert_int_ge(fd, 0);
    int hl = snprintf(req, sizeof(req),
                      "GET /svc/ws-echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: " WS_KEY "\r\n\r\n");
    static const unsigned char frame[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                          0x7f, 0x9f, 0x4d, 0x51, 0x58}; /* "Hello" */
    memcpy(req + hl, frame, sizeof(frame));
    ck_assert(write_all(fd, req, (size_t)hl + sizeof(frame)));
    size_t n = 0;
    while (n + 1 < sizeof(head) && read_exact(fd, head + n, 1, 5000)) {
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = '\0';
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert_int_eq(ws_recv(fd, &op, &got, 5000), 5);
    ck_assert(memcmp(got, "Hello", 5) == 0);
    free(got);
    close(fd);
}
END_TEST

/* ahoyd's resident set in KiB, from /proc; 0 if unknown. */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = 0;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Backpressure: a client that does not read while the upstream sends it 32 MiB makes
 * ahoyd stop reading the upstream; what ahoyd holds stays bounded, and every byte still
 * arrives once the client reads. */
START_TEST(slow_reader_backpressure)
{
    char head[4096];
    size_t n = 32u << 20;
    unsigned char *big = malloc(n), *got;
    int op = 0;
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 13 + (i >> 9));
    start_with(NULL, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    echo_text(fd, "warm up");
    long before = rss_kib(daemon_proc.pid);
    ck_assert(ws_send(fd, 2, big, n)); /* the stub reads it all, then echoes it */
    /* the echo now waits in socket buffers and, bounded, in ahoyd */
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    long during = rss_kib(daemon_proc.pid);
    ck_assert_msg(before > 0 && during - before < 12 * 1024,
                  "ahoyd grew by %ld KiB while the client did not read", during - before);
    long got_n = ws_recv(fd, &op, &got, 30000);
    ck_assert_int_eq(got_n, (long)n);
    ck_assert(memcmp(got, big, n) == 0);
    free(got);
    free(big);
    close(fd);
}
END_TEST

START_TEST(upstream_close_closes_client)
{
    char head[4096];
    start_with(NULL, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-close", head, sizeof(head));
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert_msg(wait_eof(fd, 5000) >= 0, "the client side stayed open");
    close(fd);
    ck_assert(proc_log_wait(&daemon_proc, "path=\"/svc/ws-close\" status=101", 5000));
}
END_TEST

START_TEST(non_101_is_an_ordinary_response)
{
    char head[4096], body[256], buf[64];
    start_with(NULL, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-deny", head, sizeof(head));
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(raw_status(head) == 403, "upgrade answered: %s", head);
    const char *cl = raw_header(head, "Content-Length", buf, sizeof(buf));
    ck_assert_ptr_nonnull(cl);
    size_t n = (size_t)atoi(cl);
    ck_assert_uint_lt(n, sizeof(body));
    ck_assert(read_exact(fd, body, n, 5000));
    body[n] = '\0';
    ck_assert_str_eq(body, "websocket refused by the stub\n");
    close(fd);
    ck_assert(proc_log_wait(&daemon_proc, "path=\"/svc/ws-deny\" status=403", 5000));
    ck_assert_int_eq(proc_log_count(&daemon_proc, "flags=UG"), 0);
}
END_TEST

/* An https endpoint: the tunnel runs over TLS (the stub with a certificate for
 * ledger.internal, verified with it as CA), frames both ways. */
/* A client that half-closes after its frame still gets the echo: its EOF reaches the
 * upstream as a half-close, and the upstream's answer and close come back. */
START_TEST(client_half_close_passes_on)
{
    char head[4096];
    unsigned char *got;
    int op = 0;
    start_with(NULL, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert(ws_send(fd, 1, "last words", 10));
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(ws_recv(fd, &op, &got, 5000), 10);
    ck_assert(memcmp(got, "last words", 10) == 0);
    free(got);
    ck_assert_msg(wait_eof(fd, 5000) >= 0, "the tunnel stayed open after both sides closed");
    close(fd);
    ck_assert(proc_log_wait(&daemon_proc, "flags=UG", 5000));
}
END_TEST

START_TEST(tunnel_over_tls)
{
    char dir[256], cmd[1024], args[700], head[4096], *yaml;
    unsigned char *big, *got;
    int op = 0;
    size_t n = 200 * 1024;
    ck_assert_int_eq(harness_temp_dir(dir, sizeof(dir)), 0);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ledger.internal "
             "-addext subjectAltName=DNS:ledger.internal -keyout %s/key.pem -out %s/cert.pem "
             ">/dev/null 2>&1",
             dir, dir);
    ck_assert_msg(system(cmd) == 0, "openssl req failed (is openssl installed?)");
    snprintf(args, sizeof(args), "--tls-cert %s/cert.pem --tls-key %s/key.pem", dir, dir);
    ck_assert_int_eq(stub_start(&stub, "tls", args), 0);
    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
                              "  access-log: stderr\n  idle-timeout: 1s\n"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        base-url: https://127.0.0.1:%d/base\n"
                              "        tls: {ca-file: %s/cert.pem, server-name: ledger.internal}\n",
                              stub.port, dir),
                     0);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    echo_text(fd, "hello over tls");
    big = malloc(n);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 31 + (i >> 10));
    ck_assert(ws_send(fd, 2, big, n));
    ck_assert_int_eq(ws_recv(fd, &op, &got, 30000), (long)n);
    ck_assert(memcmp(got, big, n) == 0);
    free(got);
    free(big);
    echo_text(fd, "and after it");
    ck_assert(ws_send(fd, 8, "", 0));
    ck_assert_int_eq(ws_recv(fd, &op, &got, 5000), 0);
    free(got);
    /* the stub's TLS layer (libmicrohttpd's) does not always close its side after its
     * close frame: the idle-timeout ends the tunnel then */
    close(fd);
    ck_assert(proc_log_wait(&daemon_proc, "flags=UG", 5000));
}
END_TEST

/* A refusal with a chunked body comes back whole; one over max-response-body is a 502. */
START_TEST(non_101_chunked_and_too_large)
{
    char head[4096], body[256], buf[64];
    start_with("max-response-body: 20", NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-deny-chunked", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 502 && strstr(head, "Content-Length"),
                  "a 27-byte body over a 20-byte limit: %s", head);
    close(fd);
    ck_assert(proc_stop(&daemon_proc) == 0);
    char *yaml = one_service_yaml(stub.port, NULL, NULL);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
    fd = ws_open(daemon_proc.port, "/svc/ws-deny-chunked", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 426, "upgrade answered: %s", head);
    const char *cl = raw_header(head, "Content-Length", buf, sizeof(buf));
    ck_assert_msg(cl && atoi(cl) == 27, "Content-Length %s", cl ? cl : "(none)");
    ck_assert(read_exact(fd, body, 27, 5000));
    body[27] = '\0';
    ck_assert_str_eq(body, "upgrade refused, in chunks\n");
    close(fd);
}
END_TEST

/* A 101 is a breaker success: between two failures it keeps failure-threshold 2 from
 * opening the circuit. */
START_TEST(upgrade_is_a_breaker_success)
{
    static const char *const fail500[] = {"X-Stub-Status: 500", NULL};
    char head[4096];
    struct http_resp r;
    start_with(NULL,
               "retry: false\ncircuit-breaker: {failure-threshold: 2, recovery-timeout: 30s}\n");
    http_get(daemon_proc.port, "/svc/x", fail500, &r);
    ck_assert_int_eq(r.status, 500);
    http_resp_free(&r);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    echo_text(fd, "a success");
    close(fd);
    http_get(daemon_proc.port, "/svc/x", fail500, &r);
    ck_assert_int_eq(r.status, 500);
    http_resp_free(&r);
    http_get(daemon_proc.port, "/svc/x", NULL, &r);
    ck_assert_msg(r.status == 200, "after F S F the circuit opened: %ld", r.status);
    http_resp_free(&r);
}
END_TEST

/* ---- a raw upstream: canned answers, byte for byte ------------------------------------ */

/* One connection accepted on 127.0.0.1: its request head is kept, the canned bytes are
 * written, and then it is closed (close_after) or echoes raw bytes until EOF. */
struct raw_upstream {
    int lfd, port;
    const char *canned;
    bool close_after;
    char head[4096];
    pthread_t th;
};

static void *raw_upstream_run(void *arg)
{
    struct raw_upstream *u = arg;
    size_t n = 0;
    char buf[4096];
    struct pollfd pfd = {u->lfd, POLLIN, 0};
    if (poll(&pfd, 1, 20000) <= 0)
        return NULL;
    int fd = accept(u->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    while (n + 1 < sizeof(u->head) && read_exact(fd, u->head + n, 1, 10000)) {
        n++;
        if (n >= 4 && memcmp(u->head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    u->head[n] = '\0';
    write_all(fd, u->canned, strlen(u->canned));
    for (;;) {
        if (u->close_after)
            break;
        struct pollfd p2 = {fd, POLLIN, 0};
        if (poll(&p2, 1, 20000) <= 0)
            break;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0 || !write_all(fd, buf, (size_t)r))
            break;
    }
    close(fd);
    return NULL;
}

static void raw_upstream_start(struct raw_upstream *u, const char *canned, bool close_after)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    memset(u->head, 0, sizeof(u->head));
    u->canned = canned;
    u->close_after = close_after;
    u->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(u->lfd, 0);
    ck_assert_int_eq(bind(u->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(u->lfd, 4), 0);
    ck_assert_int_eq(getsockname(u->lfd, (struct sockaddr *)&a, &l), 0);
    u->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&u->th, NULL, raw_upstream_run, u), 0);
}

static void start_raw(struct raw_upstream *u, const char *ahoyd_extra)
{
    char *yaml;
    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
                              "  access-log: stderr\n%s"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        base-url: http://127.0.0.1:%d/base\n"
                              "        retry: false\n",
                              ahoyd_extra ? ahoyd_extra : "", u->port),
                     0);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
}

/* The request head ahoyd writes, and an interim 100 before the 101 (not forwarded). */
START_TEST(request_head_and_interim_answer)
{
    static struct raw_upstream u;
    char head[4096], want[128], got[8];
    raw_upstream_start(&u,
                       "HTTP/1.1 100 Continue\r\n\r\n"
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\nhello",
                       false);
    start_raw(&u, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/raw?q=1", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert(read_exact(fd, got, 5, 5000));
    ck_assert(memcmp(got, "hello", 5) == 0);
    ck_assert(write_all(fd, "ping", 4));
    ck_assert(read_exact(fd, got, 4, 5000));
    ck_assert(memcmp(got, "ping", 4) == 0);
    close(fd);
    pthread_join(u.th, NULL);
    close(u.lfd);
    snprintf(want, sizeof(want), "GET /base/raw?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", u.port);
    ck_assert_msg(strncmp(u.head, want, strlen(want)) == 0, "request head: %s", u.head);
    static const char *const lines[] = {"\r\nUpgrade: websocket\r\n",
                                        "\r\nConnection: Upgrade\r\n",
                                        "\r\nSec-WebSocket-Key: " WS_KEY "\r\n",
                                        "\r\nSec-WebSocket-Version: 13\r\n",
                                        "\r\nSec-WebSocket-Protocol: chat\r\n",
                                        "\r\nVia: 1.1 ahoyd\r\n",
                                        "\r\nX-Ahoyd-Attempt: 1\r\n",
                                        "\r\nX-Forwarded-Proto: http\r\n"};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        ck_assert_msg(strstr(u.head, lines[i]), "no %s in: %s", lines[i] + 2, u.head);
    /* once each: the client's own Connection and Upgrade lines are not passed on as well */
    int n_conn = 0, n_up = 0;
    for (const char *p = u.head; (p = strcasestr(p, "\r\nConnection:")); p += 2)
        n_conn++;
    for (const char *p = u.head; (p = strcasestr(p, "\r\nUpgrade:")); p += 2)
        n_up++;
    ck_assert_int_eq(n_conn, 1);
    ck_assert_int_eq(n_up, 1);
}
END_TEST

/* A refusal without a length is read until the upstream closes; a head over
 * max-response-header-bytes is a 502. */
START_TEST(until_close_and_head_too_large)
{
    static struct raw_upstream u;
    static char big[4096];
    char head[4096], body[64];
    raw_upstream_start(&u,
                       "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n"
                       "no length, until close",
                       true);
    start_raw(&u, NULL);
    int fd = ws_open(daemon_proc.port, "/svc/raw", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 400, "upgrade answered: %s", head);
    ck_assert(read_exact(fd, body, 22, 5000));
    ck_assert(memcmp(body, "no length, until close", 22) == 0);
    close(fd);
    pthread_join(u.th, NULL);
    close(u.lfd);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    snprintf(big, sizeof(big),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "X-Big: %03000d\r\n\r\n",
             0);
    raw_upstream_start(&u, big, true);
    start_raw(&u, "  max-response-header-bytes: 1KiB\n");
    fd = ws_open(daemon_proc.port, "/svc/raw", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 502 && strstr(head, "application/json"),
                  "a 3 KB head over a 1 KiB limit: %s", head);
    close(fd);
    pthread_join(u.th, NULL);
    close(u.lfd);
}
END_TEST

/* ---- metrics and the access log -------------------------------------------------- */

START_TEST(gauge_and_one_log_line)
{
    char head[4096];
    start_with_admin();
    ck_assert_int_eq(tunnels_open(), 0);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert(tunnels_open_wait(1, 5000));
    echo_text(fd, "hello");                                        /* 11 bytes in (masked), 7 out */
    ck_assert_int_eq(proc_log_count(&daemon_proc, "flags=UG"), 0); /* logged when it ends */
    ck_assert(ws_send(fd, 8, "", 0)); /* close: 6 bytes in, its echo 2 out */
    unsigned char *got;
    int op = 0;
    ck_assert_int_eq(ws_recv(fd, &op, &got, 5000), 0);
    free(got);
    ck_assert_int_eq(op, 8);
    ck_assert_msg(wait_eof(fd, 5000) >= 0, "the tunnel stayed open after the close frames");
    close(fd);
    ck_assert(tunnels_open_wait(0, 5000));
    ck_assert(proc_log_wait(&daemon_proc, "flags=UG", 5000));
    ck_assert_int_eq(proc_log_count(&daemon_proc, "flags=UG"), 1);
    char *log = proc_log(&daemon_proc);
    const char *line = strstr(log, "path=\"/svc/ws-echo\"");
    ck_assert_ptr_nonnull(line);
    ck_assert_msg(strstr(line, "status=101") && strstr(line, "bytes_in=17 ") &&
                      strstr(line, "bytes_out=9 "),
                  "access log: %.400s", line);
    free(log);
}
END_TEST

START_TEST(promtool_with_a_tunnel_open)
{
    char head[4096];
    struct http_resp r;
    start_with_admin();
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    ck_assert(tunnels_open_wait(1, 5000));
    if (access("/usr/bin/promtool", X_OK) != 0) {
        const char *ci = getenv("CI");
        ck_assert_msg(!(ci && strcmp(ci, "true") == 0), "promtool is not installed");
        printf("promtool_with_a_tunnel_open: skipped, no /usr/bin/promtool\n");
        close(fd);
        return;
    }
    http_get(daemon_proc.admin_port, "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    char path[300];
    snprintf(path, sizeof(path), "%s/metrics.txt", daemon_proc.dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(r.body, 1, r.body_len, f);
    fclose(f);
    http_resp_free(&r);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < '%s' > '%s.out' 2>&1", path,
             path);
    int rc = system(cmd);
    snprintf(cmd, sizeof(cmd), "%s.out", path);
    f = fopen(cmd, "r");
    char said[2048] = "";
    if (f) {
        size_t n = fread(said, 1, sizeof(said) - 1, f);
        said[n] = '\0';
        fclose(f);
    }
    ck_assert_msg(rc == 0 && said[0] == '\0', "promtool: %d %s", rc, said);
    close(fd);
}
END_TEST

/* ---- idle-timeout and the drain ---------------------------------------------------- */

START_TEST(idle_timeout_spares_a_chatty_tunnel)
{
    char head[4096];
    start_with("idle-timeout: 1s", NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    /* 3 s of traffic, one frame every 250 ms: never silent for the idle-timeout */
    double end = harness_now_ms() + 3000;
    while (harness_now_ms() < end) {
        echo_text(fd, "still here");
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* then silence: closed after about the idle-timeout (1 s resolution) */
    double took = wait_eof(fd, 5000);
    ck_assert_msg(took >= 700, "closed %.0f ms into the silence, idle-timeout is 1 s", took);
    close(fd);
    ck_assert(proc_log_wait(&daemon_proc, "flags=UG", 5000));
}
END_TEST

/* One direction alone keeps a tunnel open: the client sends, the upstream says nothing. */
START_TEST(idle_timeout_spares_one_chatty_side)
{
    char head[4096];
    start_with("idle-timeout: 1s", NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-sink", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    double end = harness_now_ms() + 3000;
    while (harness_now_ms() < end) {
        ck_assert_msg(ws_send(fd, 1, "one way", 7), "the tunnel closed while the client spoke");
        struct pollfd pfd = {fd, POLLIN, 0};
        ck_assert_msg(poll(&pfd, 1, 250) == 0, "the tunnel closed while the client spoke");
    }
    double took = wait_eof(fd, 5000);
    ck_assert_msg(took >= 700, "closed %.0f ms into the silence, idle-timeout is 1 s", took);
    close(fd);
}
END_TEST

START_TEST(drain_closes_at_shutdown_timeout)
{
    char head[4096];
    start_with("shutdown-timeout: 2s", NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    double t_term = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "draining", 5000));
    echo_text(fd, "during the drain"); /* not closed at the start of it */
    double took = wait_eof(fd, 10000);
    ck_assert_msg(took >= 0, "the tunnel outlived the drain");
    double at = harness_now_ms() - t_term;
    /* at shutdown-timeout, not at the forced exit a second later */
    ck_assert_msg(at >= 1700 && at < 2800, "closed %.0f ms after SIGTERM, shutdown-timeout is 2 s",
                  at);
    close(fd);
    ck_assert_int_eq(proc_wait(&daemon_proc, 10000), 0);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "flags=UG"), 1);
}
END_TEST

/* ---- picking and routes ------------------------------------------------------------ */

/* A tunnel is a client connection: with max-connections 1 it fills the limit. */
START_TEST(tunnel_counts_toward_max_connections)
{
    char head[4096], out[8192];
    static const char plain[] = "GET /svc/plain HTTP/1.1\r\nHost: h\r\n\r\n";
    start_with("max-connections: 1", NULL);
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
    echo_text(fd, "holding the one connection");
    int n = raw_exchange(daemon_proc.port, plain, strlen(plain), out, sizeof(out), 10000);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(raw_status(out) == 503 && strstr(out, "overloaded"), "beside a tunnel: %.300s",
                  out);
    close(fd);
    ck_assert(proc_log_wait(&daemon_proc, "flags=UG", 5000));
    double end = harness_now_ms() + 5000;
    int st = 0;
    while (harness_now_ms() < end) {
        n = raw_exchange(daemon_proc.port, plain, strlen(plain), out, sizeof(out), 10000);
        st = n > 0 ? raw_status(out) : 0;
        if (st == 200)
            break;
    }
    ck_assert_msg(st == 200, "after the tunnel ended: %.300s", out);
}
END_TEST

START_TEST(connect_failure_retried_elsewhere)
{
    char head[4096], buf[256], *yaml;
    int down = closed_port();
    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
                              "  access-log: stderr\n"
                              "pyfly:\n  client:\n    services:\n      svc:\n"
                              "        endpoints: [http://127.0.0.1:%d/down, "
                              "http://127.0.0.1:%d/base]\n"
                              "        load-balancer: round-robin\n"
                              "        retry: {max-attempts: 2, base-delay: 10ms}\n",
                              down, stub.port),
                     0);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
    /* round-robin: one of two tunnels goes first to the closed port */
    bool retried = false;
    for (int i = 0; i < 2; i++) {
        int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
        ck_assert_msg(raw_status(head) == 101, "upgrade answered: %s", head);
        const char *n = raw_header(head, "X-Ahoyd-Attempts", buf, sizeof(buf));
        retried |= n && strcmp(n, "2") == 0;
        echo_text(fd, "picked");
        close(fd);
    }
    ck_assert_msg(retried, "no tunnel was retried after the connect failure");
    ck_assert(proc_log_wait(&daemon_proc, "flags=UF,UG", 5000));
}
END_TEST

START_TEST(declared_methods_refuse_undeclared)
{
    char head[4096];
    start_with(NULL, "methods:\n  stream: GET /ws-echo\n  post: POST /ws-post\n");
    int fd = ws_open(daemon_proc.port, "/svc/ws-echo", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 101, "declared: %s", head);
    echo_text(fd, "declared");
    close(fd);
    fd = ws_open(daemon_proc.port, "/svc/ws-other", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 404, "undeclared: %s", head);
    close(fd);
    fd = ws_open(daemon_proc.port, "/svc/ws-post", head, sizeof(head));
    ck_assert_msg(raw_status(head) == 405, "POST only: %s", head);
    close(fd);
}
END_TEST

static Suite *tunnel_suite(void)
{
    Suite *s = suite_create("tunnel");
    TCase *tc = harness_tcase(s, "frames");
    tcase_add_test(tc, text_and_large_binary_echo);
    tcase_add_test(tc, bytes_around_the_101_kept);
    tcase_add_test(tc, slow_reader_backpressure);
    tcase_add_test(tc, upstream_close_closes_client);
    tcase_add_test(tc, client_half_close_passes_on);
    tc = harness_tcase(s, "tls");
    tcase_add_test(tc, tunnel_over_tls);
    tc = harness_tcase(s, "answers");
    tcase_add_test(tc, non_101_is_an_ordinary_response);
    tcase_add_test(tc, non_101_chunked_and_too_large);
    tcase_add_test(tc, request_head_and_interim_answer);
    tcase_add_test(tc, until_close_and_head_too_large);
    tc = harness_tcase(s, "observability");
    tcase_add_test(tc, gauge_and_one_log_line);
    tcase_add_test(tc, promtool_with_a_tunnel_open);
    tc = harness_tcase(s, "lifetime");
    tcase_add_test(tc, idle_timeout_spares_a_chatty_tunnel);
    tcase_add_test(tc, idle_timeout_spares_one_chatty_side);
    tcase_add_test(tc, drain_closes_at_shutdown_timeout);
    tc = harness_tcase(s, "calls");
    tcase_add_test(tc, tunnel_counts_toward_max_connections);
    tcase_add_test(tc, connect_failure_retried_elsewhere);
    tcase_add_test(tc, upgrade_is_a_breaker_success);
    tcase_add_test(tc, declared_methods_refuse_undeclared);
    return s;
}

int main(void)
{
    return harness_main(tunnel_suite());
}
