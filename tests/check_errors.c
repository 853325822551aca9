/*
 * check_errors.c - integration suite for the errors ahoyd makes itself (SPEC
 * 3.3, 3.4, 4.1 step 6, 5): unsafe or malformed requests, limits, upstream
 * failures, overload, and the exact JSON error shape.
 *
 * Malformed requests go out as raw bytes on a socket (libcurl would fix them);
 * each test asserts the status and the JSON code, and that nothing reached the
 * stub when ahoyd should have refused on its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <microhttpd.h>

#include "harness.h"

static struct proc stub, daemon_proc;

#define RAW_CAP 65536

/* Send raw request bytes to ahoyd and assert a JSON error answer. */
static void assert_raw_request_error(const char *request, int status, const char *code)
{
    char *out = malloc(RAW_CAP);
    int n = raw_exchange(daemon_proc.port, request, strlen(request), out, RAW_CAP, 10000);

    ck_assert_msg(n > 0, "no answer at all to %s", request);
    ck_assert_msg(raw_status(out) == status, "request %s: status %d, want %d: %.300s", request,
                  raw_status(out), status, out);
    assert_raw_error(out, status, code);
    free(out);
}

/* GET target (raw bytes) with a Host header; expect 400 bad_request. */
static void assert_bad_target(const char *target)
{
    char req[1024];

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target);
    assert_raw_request_error(req, 400, "bad_request");
}

/* A request that libmicrohttpd 1.0 refuses itself, with 400 and its own HTML page, before
 * ahoyd sees it (whitespace in the target or in or after a header name, HTTP/1.1 without
 * Host, a bare CR, a Transfer-Encoding other than chunked or beside Content-Length);
 * 0.9.75 hands it to ahoyd, which answers its JSON 400. Either way the status is 400 and
 * nothing reaches the upstream. */
static void assert_raw_request_refused(const char *request)
{
#if MHD_VERSION >= 0x01000000
    char *out = malloc(RAW_CAP);
    int n = raw_exchange(daemon_proc.port, request, strlen(request), out, RAW_CAP, 10000);

    ck_assert_msg(n > 0, "no answer at all to %s", request);
    ck_assert_msg(raw_status(out) == 400, "request %s: status %d, want 400: %.300s", request,
                  raw_status(out), out);
    free(out);
#else
    assert_raw_request_error(request, 400, "bad_request");
#endif
}

/* ---- NUL bytes and obs-fold: the HTTP library's part -------------------------------- */

/* libmicrohttpd before 1.0 (0.9.75 on Debian 12) cuts the method and the target at a NUL,
 * hides a NUL in a header value (it measures headers with strlen) and glues an obs-fold
 * continuation line onto the header name: no code of ahoyd's can see what it hid. 1.0
 * refuses a NUL and refuses or unfolds obs-fold. Returns true (after saying so in the
 * log) when the library running is older than 1.0. */
static bool skip_before_mhd_1_0(const char *what)
{
    const char *v = MHD_get_version();

    if (v != NULL && atoi(v) >= 1)
        return false;
    printf("SKIP (libmicrohttpd %s): %s: before 1.0 the HTTP library hides NUL bytes and "
           "misreads obs-fold; ahoyd(8) PLATFORMS\n",
           v ? v : "?", what);
    fflush(stdout);
    return true;
}

/* Send n raw bytes; the answer must be 400 or the connection closed without one. */
static void assert_refused_or_closed(const char *what, const char *bytes, size_t n)
{
    char *out = malloc(RAW_CAP);
    int got = raw_exchange(daemon_proc.port, bytes, n, out, RAW_CAP, 10000);

    ck_assert_msg(got <= 0 || raw_status(out) == 400, "NUL in the %s: status %d: %.300s", what,
                  raw_status(out), out);
    free(out);
}

#define RAW_LITERAL(s) (s), sizeof(s) - 1

START_TEST(nul_bytes_are_refused)
{
    struct http_resp r;

    if (skip_before_mhd_1_0("NUL in the method, the target, a header name and value"))
        return;
    start_one_service(&stub, &daemon_proc, NULL, NULL);
    assert_refused_or_closed("method", RAW_LITERAL("GE\0T /svc/x HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_refused_or_closed("target", RAW_LITERAL("GET /svc/x\0y HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_refused_or_closed("header name",
                             RAW_LITERAL("GET /svc/x HTTP/1.1\r\nHost: h\r\nX-A\0b: 1\r\n\r\n"));
    assert_refused_or_closed("header value",
                             RAW_LITERAL("GET /svc/x HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n"));
    /* nothing of them reached the upstream; the daemon still serves */
    ck_assert_int_eq(stub_count(&stub), 0);
    http_get(daemon_proc.port, "/svc/after", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 1);
}
END_TEST

/* The stub's record of every request must carry no body and no header whose name ends
 * in "Length" unless it is a true Content-Length the client sent unfolded. */
START_TEST(obs_fold_never_frames_a_body)
{
    static const char smuggle[] = "GET /svc/smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    char req[512], *out = malloc(RAW_CAP);
    int n, status;
    cJSON *recs, *rec;

    if (skip_before_mhd_1_0("obs-fold")) {
        free(out);
        return;
    }
    start_one_service(&stub, &daemon_proc, NULL, NULL);

    /* "Content-: N" folded onto " Length": a front proxy that unfolds sees no
     * Content-Length and so no body; the bytes after the head are its next request */
    n = snprintf(req, sizeof(req),
                 "POST /svc/fold HTTP/1.1\r\nHost: h\r\nContent-: %zu\r\n Length\r\n\r\n%s",
                 strlen(smuggle), smuggle);
    raw_exchange(daemon_proc.port, req, (size_t)n, out, RAW_CAP, 10000);
    status = raw_status(out);
    ck_assert_msg(status == 400 || status == 200, "folded Content-Length: %.300s", out);
    recs = stub_requests(&stub);
    ck_assert_ptr_nonnull(recs);
    cJSON_ArrayForEach(rec, recs) {
        const cJSON *h = cJSON_GetObjectItem(rec, "headers"), *e;
        const cJSON *len = cJSON_GetObjectItem(rec, "body_len");
        ck_assert_msg(cJSON_IsNumber(len) && len->valuedouble == 0,
                      "a folded Content-Length framed a body at the upstream: %s",
                      cJSON_PrintUnformatted(rec));
        cJSON_ArrayForEach(e, h)
            ck_assert_msg(strcasecmp(e->string, "Content-Length") != 0,
                          "a folded Content-Length reached the upstream: %s",
                          cJSON_PrintUnformatted(rec));
    }
    cJSON_Delete(recs);
    ck_assert_int_eq(stub_reset(&stub), 0);

    /* an ordinary folded value: 400, or the fold becomes spaces in the value */
    raw_exchange(daemon_proc.port,
                 RAW_LITERAL("GET /svc/fold2 HTTP/1.1\r\nHost: h\r\nX-Fold: a\r\n  b\r\n\r\n"),
                 out, RAW_CAP, 10000);
    status = raw_status(out);
    ck_assert_msg(status == 400 || status == 200, "folded X-Fold: %.300s", out);
    if (status == 200) {
        recs = stub_requests(&stub);
        rec = cJSON_GetArrayItem(recs, 0);
        const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "X-Fold");
        ck_assert_msg(cJSON_IsString(v) && strncmp(v->valuestring, "a", 1) == 0 &&
                          strspn(v->valuestring + 1, " \t") > 0 &&
                          strcmp(v->valuestring + 1 + strspn(v->valuestring + 1, " \t"), "b") == 0,
                      "X-Fold reached the upstream as %s", cJSON_PrintUnformatted(rec));
        cJSON_Delete(recs);
    } else {
        ck_assert_int_eq(stub_count(&stub), 0);
    }
    free(out);
}
END_TEST

/* ---- upstream failures ------------------------------------------------------------- */

START_TEST(upstream_timeout)
{
    struct http_resp r;
    double t0;

    start_one_service(&stub, &daemon_proc, NULL,
                      "retry: false\ncircuit-breaker: false\ntimeout: 400ms");
    t0 = harness_now_ms();
    http_get(daemon_proc.port, "/svc/slow", (const char *[]){"X-Stub-Delay-Ms: 5000", NULL}, &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "svc", 1);
    ck_assert_msg(harness_now_ms() - t0 < 3000, "timeout took %.0f ms", harness_now_ms() - t0);
    ck_assert_msg(harness_now_ms() - t0 >= 350, "timeout after only %.0f ms",
                  harness_now_ms() - t0);
    http_resp_free(&r);

    /* A hanging upstream too. */
    http_get(daemon_proc.port, "/svc/hang", (const char *[]){"X-Stub-Action: hang", NULL}, &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "svc", 1);
    http_resp_free(&r);
}
END_TEST

START_TEST(upstream_unreachable_closed_port)
{
    struct http_resp r;
    char *yaml;
    int rc, port = closed_port();

    ck_assert_int_gt(port, 0);
    yaml = one_service_yaml(port, NULL, "retry: false\ncircuit-breaker: false");
    rc = ahoyd_start(&daemon_proc, yaml);
    free(yaml);
    ck_assert_int_eq(rc, 0);
    http_get(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 502, "upstream_unreachable", "svc", 1);
    http_resp_free(&r);
}
END_TEST

START_TEST(upstream_unreachable_connect_timeout)
{
    struct http_resp r;
    char *yaml;
    int fds[3], rc, i, port = blackhole_port(fds);
    double t0;

    ck_assert_int_gt(port, 0);
    yaml = one_service_yaml(port, NULL,
                            "retry: false\ncircuit-breaker: false\n"
                            "connect-timeout: 300ms\ntimeout: 5s");
    rc = ahoyd_start(&daemon_proc, yaml);
    free(yaml);
    ck_assert_int_eq(rc, 0);
    t0 = harness_now_ms();
    http_get(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 502, "upstream_unreachable", "svc", 1);
    ck_assert_msg(harness_now_ms() - t0 < 2500, "connect timeout took %.0f ms",
                  harness_now_ms() - t0);
    http_resp_free(&r);
    for (i = 0; i < 3; i++)
        close(fds[i]);
}
END_TEST

START_TEST(upstream_reset)
{
    struct http_resp r;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false\ncircuit-breaker: false");
    http_get(daemon_proc.port, "/svc/r", (const char *[]){"X-Stub-Action: reset", NULL}, &r);
    assert_ahoyd_error(&r, 502, "upstream_reset", "svc", 1);
    http_resp_free(&r);

    /* A body cut short after its head went out: the client's reply is cut too (an
     * incomplete message, never a complete-looking one), flag RS. */
    http_get(daemon_proc.port, "/svc/c", (const char *[]){"X-Stub-Action: close-mid-body", NULL},
             &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.curl_code, CURLE_PARTIAL_FILE);
    ck_assert_uint_lt(r.body_len, 1000);
    http_resp_free(&r);
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS,UR", 3000));
    ck_assert_int_eq(stub_count(&stub), 2);

    /* And the service still works afterwards. */
    http_get(daemon_proc.port, "/svc/ok", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}
END_TEST

START_TEST(upstream_response_too_large)
{
    struct http_resp r;

    /* Default retry policy on: too-large responses must not be retried. */
    start_one_service(&stub, &daemon_proc,
                      "max-response-body: 1KiB\nmax-response-header-bytes: 1KiB", NULL);
    http_get(daemon_proc.port, "/svc/big", (const char *[]){"X-Stub-Body-Bytes: 5000", NULL}, &r);
    assert_ahoyd_error(&r, 502, "upstream_response_too_large", "svc", 1);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 1);

    http_get(daemon_proc.port, "/svc/hdr", (const char *[]){"X-Stub-Header-Bytes: 4000", NULL}, &r);
    assert_ahoyd_error(&r, 502, "upstream_response_too_large", "svc", 1);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 2);

    /* At the limit: fine. */
    http_get(daemon_proc.port, "/svc/fits", (const char *[]){"X-Stub-Body-Bytes: 1024", NULL}, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 1024);
    http_resp_free(&r);
}
END_TEST

/* The request head and the response head share libmicrohttpd's per-connection pool
 * (max-header-bytes + 16 KiB): a big request head with a big response head is a JSON
 * 502, never a connection closed without an answer; each alone is forwarded. */
START_TEST(response_head_beside_request_head)
{
    struct http_resp r;
    char *big = malloc(30000);
    const char *hdrs[3];

    start_one_service(&stub, &daemon_proc,
                      "max-header-bytes: 32KiB\nmax-response-header-bytes: 32KiB", NULL);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'q', 29000);
    big[29007] = '\0';
    /* a 29 KB request head alone: forwarded */
    hdrs[0] = big;
    hdrs[1] = NULL;
    http_get(daemon_proc.port, "/svc/a", hdrs, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    /* a 20 KB response head alone: forwarded */
    http_get(daemon_proc.port, "/svc/b", (const char *[]){"X-Stub-Header-Bytes: 20000", NULL}, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(strlen(http_header(&r, "X-Big") ? http_header(&r, "X-Big") : ""), 20000);
    http_resp_free(&r);
    /* both: they do not fit together */
    hdrs[1] = "X-Stub-Header-Bytes: 20000";
    hdrs[2] = NULL;
    http_get(daemon_proc.port, "/svc/c", hdrs, &r);
    assert_ahoyd_error(&r, 502, "upstream_response_too_large", "svc", 1);
    http_resp_free(&r);
    free(big);
}
END_TEST

/* ---- requests ahoyd refuses ----------------------------------------------------------- */

START_TEST(unknown_service)
{
    struct http_resp r;

    start_one_service(&stub, &daemon_proc, NULL, NULL);
    http_get(daemon_proc.port, "/nope/x", NULL, &r);
    assert_ahoyd_error(&r, 404, "unknown_service", NULL, 0);
    http_resp_free(&r);

    http_get(daemon_proc.port, "/svcx/a", NULL, &r);
    assert_ahoyd_error(&r, 404, "unknown_service", NULL, 0);
    http_resp_free(&r);

    http_get(daemon_proc.port, "/", NULL, &r);
    assert_ahoyd_error(&r, 404, "unknown_service", NULL, 0);
    http_resp_free(&r);

    http_get(daemon_proc.port, "/SVC/a", NULL, &r);
    assert_ahoyd_error(&r, 404, "unknown_service", NULL, 0);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 0);
}
END_TEST

START_TEST(error_shape)
{
    struct http_resp r;
    cJSON *j, *err, *it;
    int n = 0;

    start_one_service(&stub, &daemon_proc, NULL, NULL);
    http_get(daemon_proc.port, "/nope", (const char *[]){"X-Request-Id: shape-42", NULL}, &r);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(http_header(&r, "Content-Type"), "application/json");
    ck_assert_str_eq(http_header(&r, "X-Request-Id"), "shape-42");
    j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(cJSON_GetArraySize(j), 1);
    err = json_path(j, "error");
    ck_assert(cJSON_IsObject(err));
    cJSON_ArrayForEach(it, err)
    {
        n++;
    }
    ck_assert_int_eq(n, 6);
    ck_assert_str_eq(json_str(j, "error.code"), "unknown_service");
    ck_assert(cJSON_IsString(json_path(j, "error.message")));
    ck_assert(cJSON_IsNumber(json_path(j, "error.status")));
    ck_assert_int_eq(json_path(j, "error.status")->valueint, 404);
    ck_assert(cJSON_IsNull(json_path(j, "error.service")));
    ck_assert(cJSON_IsNumber(json_path(j, "error.attempts")));
    ck_assert_int_eq(json_path(j, "error.attempts")->valueint, 0);
    ck_assert_str_eq(json_str(j, "error.request_id"), "shape-42");
    cJSON_Delete(j);
    http_resp_free(&r);

    /* A generated id is the same in the header and the body. */
    http_get(daemon_proc.port, "/nope", NULL, &r);
    j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_nonnull(http_header(&r, "X-Request-Id"));
    ck_assert_uint_eq(strlen(http_header(&r, "X-Request-Id")), 36);
    ck_assert_str_eq(json_str(j, "error.request_id"), http_header(&r, "X-Request-Id"));
    cJSON_Delete(j);
    http_resp_free(&r);

    /* An upstream error names its service. */
    http_get(daemon_proc.port, "/svc/x",
             (const char *[]){"X-Stub-Action: reset", "X-Ahoyd-Max-Attempts: 1", NULL}, &r);
    ck_assert_int_eq(r.status, 502);
    j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_str(j, "error.service"), "svc");
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

START_TEST(dot_segments_and_bad_targets)
{
    start_one_service(&stub, &daemon_proc, NULL, NULL);

    assert_bad_target("/svc/../x");
    assert_bad_target("/svc/..");
    assert_bad_target("/svc/./x");
    assert_bad_target("/svc/a/../../etc/passwd");
    assert_bad_target("/svc/%2e%2e/x");
    assert_bad_target("/svc/%2E%2E/x");
    assert_bad_target("/svc/a/%2E./b");
    assert_bad_target("/svc/a/.%2e/b");
    assert_bad_target("/svc/a/%2e/b");
    assert_bad_target("/svc/a%2F..%2Fb"); /* one raw segment, ".." after decoding */
    assert_bad_target("/svc/a%5C..%5Cb"); /* backslash, encoded */
    assert_bad_target("/svc/a\\..\\b");   /* backslash, raw (outside RFC 3986) */
    assert_bad_target("/svc/..%5Cx");
    assert_bad_target("/svc/%zz");
    assert_bad_target("/svc/%4");
    assert_bad_target("/svc/a%");
    assert_bad_target("/svc/a#frag");
    assert_bad_target("/svc/a%00b");
    assert_bad_target("/svc/a%0Ab");
    assert_bad_target("/svc/a%7Fb");
    assert_bad_target("/svc/a\"b");
    assert_bad_target("/svc/a<b>");
    assert_bad_target("/svc/a{b}");
    assert_raw_request_refused("GET /svc/a b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_bad_target("http://127.0.0.1/svc/");
    assert_bad_target("svc/x");
    assert_bad_target("*");
    assert_bad_target("/../svc/x");
    /* dot segments behind ';' path parameters: Tomcat-family upstreams resolve them */
    assert_bad_target("/svc/..;/admin");
    assert_bad_target("/svc/%2e%2e;x/admin");
    assert_bad_target("/svc/a/..;x/b");
    assert_bad_target("/svc/.;a/x");
    assert_bad_target("/svc/..%3Bx/admin");
    ck_assert_int_eq(stub_count(&stub), 0);
}
END_TEST

START_TEST(bad_headers_and_framing)
{
    start_one_service(&stub, &daemon_proc, NULL, NULL);

    /* HTTP/1.1 without Host. */
    assert_raw_request_refused("GET /svc/x HTTP/1.1\r\n\r\n");
    /* Space before the colon: a smuggling classic. */
    assert_raw_request_refused("POST /svc/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n"
                               "Content-Length: 4\r\n\r\nabcd");
    assert_raw_request_refused("GET /svc/x HTTP/1.1\r\nHost: h\r\nX-Bad Name: 1\r\n\r\n");
    assert_raw_request_error("GET /svc/x HTTP/1.1\r\nHost: h\r\nX-Bad(: 1\r\n\r\n", 400,
                             "bad_request");
    /* Control characters in a value. */
    assert_raw_request_error("GET /svc/x HTTP/1.1\r\nHost: h\r\nX-Evil: a\x01z\r\n\r\n", 400,
                             "bad_request");
    assert_raw_request_refused("GET /svc/x HTTP/1.1\r\nHost: h\r\nX-Evil: a\rz\r\n\r\n");
    /* Transfer-Encoding with Content-Length, or other than chunked. */
    assert_raw_request_refused("POST /svc/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_raw_request_refused("POST /svc/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                               "\r\nabc");
    assert_raw_request_refused("POST /svc/x HTTP/1.1\r\nHost: h\r\n"
                               "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
    /* A method that is not an RFC 9110 token would reach the upstream as a malformed
     * request line (libmicrohttpd 1.0 refuses some of them itself). */
    assert_raw_request_refused("GET\tX /svc/x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_raw_request_refused("G@T:X /svc/x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_raw_request_refused("GE(T) /svc/x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_raw_request_refused("G\x7fT /svc/x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_raw_request_refused("G\xc3\xa9T /svc/x HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert_int_eq(stub_count(&stub), 0);
}
END_TEST

START_TEST(http10_without_host_is_fine)
{
    char out[8192];
    int n;
    static const char req[] = "GET /svc/old HTTP/1.0\r\n\r\n";

    start_one_service(&stub, &daemon_proc, NULL, NULL);
    n = raw_exchange(daemon_proc.port, req, strlen(req), out, sizeof(out), 10000);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(raw_status(out) == 200, "HTTP/1.0 without Host: %.300s", out);
    ck_assert_ptr_nonnull(strstr(raw_body(out), "\"target\":\"/base/old\""));
}
END_TEST

START_TEST(connect_and_upgrade)
{
    start_one_service(&stub, &daemon_proc, NULL, NULL);
    assert_raw_request_error("CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n", 405,
                             "method_not_allowed");
    assert_raw_request_error("CONNECT /svc/x HTTP/1.1\r\nHost: h\r\n\r\n", 405,
                             "method_not_allowed");
    ck_assert_int_eq(stub_count(&stub), 0);
    /* a websocket upgrade is tunnelled (check_tunnel): it reaches the upstream, and an
     * upstream that does not switch protocols answers as for any request (the stub's
     * echo, 200); websocket among other protocols, in any case, on any Upgrade line */
    static const char *const ws[] = {
        "GET /svc/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "GET /svc/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
        "Upgrade: h2c\r\nUpgrade: foo, WebSocket\r\n\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        char out[8192];
        int n = raw_exchange(daemon_proc.port, ws[i], strlen(ws[i]), out, sizeof(out), 10000);
        ck_assert_int_gt(n, 0);
        ck_assert_msg(raw_status(out) == 200, "upgrade %zu: %.300s", i, out);
        ck_assert_ptr_nonnull(strstr(raw_body(out), "\"target\":\"/base/ws\""));
    }
    ck_assert_int_eq(stub_count(&stub), 2);
}
END_TEST

/* ---- limits ------------------------------------------------------------------------------ */

START_TEST(payload_too_large_content_length)
{
    struct http_resp r;
    static const char huge[] =
        "POST /svc/up HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\n";
    char *body = malloc(2000), out[8192], hdr[64];
    double t0;
    int n;

    memset(body, 'b', 2000);
    start_one_service(&stub, &daemon_proc, "max-request-body: 1KiB", NULL);

    http_send(daemon_proc.port, "POST", "/svc/up", NULL, body, 2000, &r);
    assert_ahoyd_error(&r, 413, "payload_too_large", SERVICE_ANY, 0);
    ck_assert_ptr_nonnull(http_header(&r, "Connection"));
    ck_assert_str_eq(http_header(&r, "Connection"), "close");
    http_resp_free(&r);

    /* Exactly at the limit: forwarded. */
    http_send(daemon_proc.port, "POST", "/svc/up", NULL, body, 1024, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 1);

    /* Known from Content-Length before any body byte: answered at once. */
    t0 = harness_now_ms();
    n = raw_exchange(daemon_proc.port, huge, strlen(huge), out, sizeof(out), 10000);
    ck_assert_int_gt(n, 0);
    assert_raw_error(out, 413, "payload_too_large");
    ck_assert_str_eq(raw_header(out, "Connection", hdr, sizeof(hdr)) ? hdr : "", "close");
    ck_assert_msg(harness_now_ms() - t0 < 3000, "413 took %.0f ms", harness_now_ms() - t0);
    ck_assert_int_eq(stub_count(&stub), 1);
    free(body);
}
END_TEST

START_TEST(payload_too_large_chunked)
{
    static const char head[] =
        "POST /svc/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    char req[8192], out[8192], *p;
    int i, n;

    start_one_service(&stub, &daemon_proc, "max-request-body: 1KiB", NULL);
    p = req + sprintf(req, "%s", head);
    for (i = 0; i < 3; i++) {
        p += sprintf(p, "200\r\n");
        memset(p, 'c', 0x200);
        p += 0x200;
        p += sprintf(p, "\r\n");
    }
    p += sprintf(p, "0\r\n\r\n");
    n = raw_exchange(daemon_proc.port, req, (size_t)(p - req), out, sizeof(out), 10000);
    ck_assert_int_gt(n, 0);
    assert_raw_error(out, 413, "payload_too_large");
    ck_assert_int_eq(stub_count(&stub), 0);

    /* Under the limit in chunks: forwarded whole. */
    p = req + sprintf(req, "%s3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", head);
    n = raw_exchange(daemon_proc.port, req, (size_t)(p - req), out, sizeof(out), 10000);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(raw_status(out) == 200, "small chunked POST: %.300s", out);
    ck_assert_ptr_nonnull(strstr(raw_body(out), "\"body\":\"abcde\""));
}
END_TEST

START_TEST(headers_too_large)
{
    struct http_resp r;
    char big[2100];

    start_one_service(&stub, &daemon_proc, "max-header-bytes: 1KiB", NULL);
    snprintf(big, sizeof(big), "X-Big: %02000d", 1);
    http_get(daemon_proc.port, "/svc/h", (const char *[]){big, NULL}, &r);
    assert_ahoyd_error(&r, 431, "headers_too_large", SERVICE_ANY, 0);
    http_resp_free(&r);

    /* Many small headers add up. */
    {
        const char *many[41];
        char bufs[40][40];
        int i;
        for (i = 0; i < 40; i++) {
            snprintf(bufs[i], sizeof(bufs[i]), "X-H%02d: %026d", i, i);
            many[i] = bufs[i];
        }
        many[40] = NULL;
        http_get(daemon_proc.port, "/svc/h", many, &r);
        assert_ahoyd_error(&r, 431, "headers_too_large", SERVICE_ANY, 0);
        http_resp_free(&r);
    }
    ck_assert_int_eq(stub_count(&stub), 0);

    /* A modest block passes. */
    snprintf(big, sizeof(big), "X-Big: %0500d", 1);
    http_get(daemon_proc.port, "/svc/h", (const char *[]){big, NULL}, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}
END_TEST

START_TEST(overloaded_max_inflight)
{
    struct http_req req;
    struct http_async *slow;
    struct http_resp r;
    char url[64];

    start_one_service(&stub, &daemon_proc, NULL, "retry: false\nmax-inflight: 1\ntimeout: 20s");
    memset(&req, 0, sizeof(req));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/slow", daemon_proc.port);
    req.url = url;
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 2000", NULL};
    slow = http_async_start(&req);
    ck_assert_ptr_nonnull(slow);
    ck_assert_msg(stub_wait_count(&stub, 1, 10000), "the slow call never reached the stub");

    http_get(daemon_proc.port, "/svc/second", NULL, &r);
    assert_ahoyd_error(&r, 503, "overloaded", "svc", 0);
    http_resp_free(&r);

    http_async_finish(slow, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    /* The slot is free again. */
    http_get(daemon_proc.port, "/svc/third", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 2);
}
END_TEST

START_TEST(overloaded_max_connections)
{
    struct http_client held;
    struct http_req req;
    struct http_resp r;
    char url[64];

    start_one_service(&stub, &daemon_proc, "max-connections: 1", NULL);
    /* One kept-alive connection holds the only slot. */
    http_client_init(&held);
    memset(&req, 0, sizeof(req));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/held", daemon_proc.port);
    req.url = url;
    ck_assert_int_eq(http_client_do(&held, &req, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    http_get(daemon_proc.port, "/svc/extra", NULL, &r);
    assert_ahoyd_error(&r, 503, "overloaded", SERVICE_ANY, 0);
    ck_assert_str_eq(http_header(&r, "Connection") ? http_header(&r, "Connection") : "", "close");
    http_resp_free(&r);

    http_client_free(&held); /* closes the held connection */
    /* Bounded wait for ahoyd to notice the close. */
    {
        int i;
        long status = 0;
        for (i = 0; i < 100 && status != 200; i++) {
            http_get(daemon_proc.port, "/svc/after", NULL, &r);
            status = r.status;
            http_resp_free(&r);
            if (status != 200)
                usleep(20000);
        }
        ck_assert_int_eq(status, 200);
    }
}
END_TEST

static Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = harness_tcase(s, "upstream");

    tcase_add_test(tc, upstream_timeout);
    tcase_add_test(tc, upstream_unreachable_closed_port);
    tcase_add_test(tc, upstream_unreachable_connect_timeout);
    tcase_add_test(tc, upstream_reset);
    tcase_add_test(tc, upstream_response_too_large);
    tcase_add_test(tc, response_head_beside_request_head);

    tc = harness_tcase(s, "requests");
    tcase_add_test(tc, unknown_service);
    tcase_add_test(tc, error_shape);
    tcase_add_test(tc, dot_segments_and_bad_targets);
    tcase_add_test(tc, bad_headers_and_framing);
    tcase_add_test(tc, http10_without_host_is_fine);
    tcase_add_test(tc, connect_and_upgrade);
    tcase_add_test(tc, nul_bytes_are_refused);
    tcase_add_test(tc, obs_fold_never_frames_a_body);

    tc = harness_tcase(s, "limits");
    tcase_add_test(tc, payload_too_large_content_length);
    tcase_add_test(tc, payload_too_large_chunked);
    tcase_add_test(tc, headers_too_large);
    tcase_add_test(tc, overloaded_max_inflight);
    tcase_add_test(tc, overloaded_max_connections);
    return s;
}

int main(void)
{
    return harness_main(errors_suite());
}
