/*
 * check_forward.c - integration suite for forwarding (SPEC 3.1, 3.4):
 * the real ahoyd binary on port 0 in front of the stub upstream.
 *
 * What goes to the upstream is read back from the stub's JSON echo (method,
 * raw target, headers, body bytes as hex); what comes back to the client is
 * read with libcurl. A first test case checks the stub and the harness alone,
 * so that a failure there is not mistaken for a daemon bug.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <strings.h>

#include "harness.h"

static struct proc stub, daemon_proc;

static char *hex_of(const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *out = malloc(2 * n + 1);
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

/* GET through ahoyd and return the stub's echo (asserting a 200 JSON answer). */
static cJSON *echo_of(int port, const char *method, const char *target, const char *const *headers,
                      const void *body, size_t body_len, struct http_resp *resp)
{
    cJSON *j;

    http_send(port, method, target, headers, body, body_len, resp);
    ck_assert_msg(resp->status == 200, "%s %s: status %ld (curl %d), body %.300s", method, target,
                  resp->status, resp->curl_code, resp->body);
    j = json_body(resp);
    ck_assert_msg(j != NULL, "%s %s: body is not JSON: %.300s", method, target, resp->body);
    return j;
}

/* The raw target the upstream received for a client target. */
static void assert_forwarded_target(int port, const char *target, const char *want)
{
    struct http_resp r;
    cJSON *j = echo_of(port, "GET", target, NULL, NULL, 0, &r);
    const char *got = json_str(j, "target");

    ck_assert_msg(got != NULL && strcmp(got, want) == 0, "%s forwarded as %s, want %s", target,
                  got ? got : "(none)", want);
    cJSON_Delete(j);
    http_resp_free(&r);
}

/* ---- the stub and the harness alone --------------------------------------------- */

START_TEST(stub_echo_and_controls)
{
    struct http_resp r;
    cJSON *j, *recs;
    const char *hdrs[] = {"X-Stub-Status: 418", "X-Stub-Header: X-Tea: pot",
                          "X-Stub-Retry-After: 7", NULL};
    static const unsigned char bin[] = {0, 1, 2, '\r', '\n', 0xff, 'a', 0};

    ck_assert_int_eq(stub_start(&stub, "alpha", NULL), 0);
    ck_assert_int_gt(stub.port, 0);

    j = echo_of(stub.port, "GET", "/a/%2Fb?x=1&&y=%20", NULL, NULL, 0, &r);
    ck_assert_str_eq(json_str(j, "upstream"), "alpha");
    ck_assert_str_eq(json_str(j, "message"), "hello from the demo upstream");
    ck_assert_str_eq(json_str(j, "method"), "GET");
    ck_assert_str_eq(json_str(j, "target"), "/a/%2Fb?x=1&&y=%20");
    ck_assert_str_eq(http_header(&r, "Content-Type"), "application/json");
    cJSON_Delete(j);
    http_resp_free(&r);

    http_send(stub.port, "POST", "/p", hdrs, bin, sizeof(bin), &r);
    ck_assert_int_eq(r.status, 418);
    ck_assert_str_eq(http_header(&r, "x-tea"), "pot");
    ck_assert_str_eq(http_header(&r, "Retry-After"), "7");
    j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_str(j, "body_hex"), "0001020d0aff6100");
    ck_assert_int_eq((int)json_num(j, "body_len", -1), 8);
    ck_assert_str_eq(echo_header(j, "x-stub-status"), "418");
    cJSON_Delete(j);
    http_resp_free(&r);

    /* Instance mode for the next two requests, then back to normal. */
    ck_assert_int_eq(stub_mode(&stub, "{\"status\":503,\"retry_after\":\"1\",\"count\":2}"), 0);
    http_get(stub.port, "/m1", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(http_header(&r, "Retry-After"), "1");
    http_resp_free(&r);
    http_get(stub.port, "/m2", (const char *[]){"X-Stub-Status: 201", NULL}, &r);
    ck_assert_int_eq(r.status, 201); /* the header wins over the mode */
    http_resp_free(&r);
    http_get(stub.port, "/m3", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    ck_assert_int_eq(stub_count(&stub), 5);
    recs = stub_requests(&stub);
    ck_assert_ptr_nonnull(recs);
    ck_assert_int_eq(cJSON_GetArraySize(recs), 5);
    ck_assert_str_eq(json_str(cJSON_GetArrayItem(recs, 0), "target"), "/a/%2Fb?x=1&&y=%20");
    ck_assert_str_eq(json_str(cJSON_GetArrayItem(recs, 1), "method"), "POST");
    ck_assert_str_eq(json_str(cJSON_GetArrayItem(recs, 4), "target"), "/m3");
    ck_assert(json_num(cJSON_GetArrayItem(recs, 0), "time_ms", -1) <=
              json_num(cJSON_GetArrayItem(recs, 4), "time_ms", -1));
    cJSON_Delete(recs);

    ck_assert_int_eq(stub_reset(&stub), 0);
    ck_assert_int_eq(stub_count(&stub), 0);
    ck_assert_int_eq(proc_stop(&stub), 0);
}
END_TEST

START_TEST(stub_faults)
{
    struct http_resp r;
    char raw[4096];
    int n;

    ck_assert_int_eq(stub_start(&stub, "beta", NULL), 0);

    http_get(stub.port, "/r", (const char *[]){"X-Stub-Action: reset", NULL}, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(r.curl_code, CURLE_GOT_NOTHING);
    http_resp_free(&r);

    http_get(stub.port, "/c", (const char *[]){"X-Stub-Action: close-mid-body", NULL}, &r);
    ck_assert_int_eq(r.curl_code, CURLE_PARTIAL_FILE);
    ck_assert_uint_eq(r.body_len, 100);
    http_resp_free(&r);

    http_get(stub.port, "/b", (const char *[]){"X-Stub-Body-Bytes: 70000", NULL}, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 70000);
    ck_assert_int_eq(r.body[0], 'x');
    ck_assert_int_eq(r.body[69999], 'x');
    http_resp_free(&r);

    http_get(stub.port, "/h", (const char *[]){"X-Stub-Header-Bytes: 40000", NULL}, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(strlen(http_header(&r, "X-Big")), 40000);
    http_resp_free(&r);

    {
        struct http_req req = {.url = NULL, .timeout_ms = 300};
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/hang", stub.port);
        req.url = url;
        req.headers = (const char *[]){"X-Stub-Action: hang", NULL};
        http_do(&req, &r);
        ck_assert_int_eq(r.curl_code, CURLE_OPERATION_TIMEDOUT);
        http_resp_free(&r);
    }

    n = raw_exchange(stub.port, "GET /raw?q HTTP/1.1\r\nHost: x\r\n\r\n", 33, raw, sizeof(raw),
                     5000);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(raw_status(raw), 200);
    ck_assert_ptr_nonnull(strstr(raw_body(raw), "\"target\":\"/raw?q\""));

    /* A hanging request must not keep the stub from stopping. */
    ck_assert_int_eq(proc_stop(&stub), 0);
}
END_TEST

START_TEST(stub_parallel_delays)
{
    struct http_req req;
    long statuses[50];
    double elapsed;
    char url[64];
    int i;

    ck_assert_int_eq(stub_start(&stub, "gamma", NULL), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", stub.port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 1000", NULL};
    req.timeout_ms = 20000;
    ck_assert_int_eq(http_parallel(&req, 50, statuses, &elapsed), 50);
    for (i = 0; i < 50; i++)
        ck_assert_int_eq(statuses[i], 200);
    ck_assert_msg(elapsed >= 1000 && elapsed < 3000, "50 parallel 1 s requests took %.0f ms",
                  elapsed);
}
END_TEST

/* ---- forwarding ------------------------------------------------------------------- */

START_TEST(methods_and_bodies)
{
    struct http_resp r;
    cJSON *j;
    unsigned char bin[1024];
    char *want;
    const char *cl;
    size_t i;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false");
    for (i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 7 + (i >> 8)); /* every byte value, NUL and CR/LF too */

    j = echo_of(daemon_proc.port, "GET", "/svc/get", NULL, NULL, 0, &r);
    ck_assert_str_eq(json_str(j, "method"), "GET");
    ck_assert_str_eq(json_str(j, "target"), "/base/get");
    ck_assert_int_eq((int)json_num(j, "body_len", -1), 0);
    cJSON_Delete(j);
    http_resp_free(&r);

    j = echo_of(daemon_proc.port, "POST", "/svc/post",
                (const char *[]){"Content-Type: application/octet-stream", NULL}, bin, sizeof(bin),
                &r);
    want = hex_of(bin, sizeof(bin));
    ck_assert_str_eq(json_str(j, "method"), "POST");
    ck_assert_int_eq((int)json_num(j, "body_len", -1), 1024);
    ck_assert_str_eq(json_str(j, "body_hex"), want);
    ck_assert_str_eq(echo_header(j, "Content-Length"), "1024");
    ck_assert_str_eq(echo_header(j, "Content-Type"), "application/octet-stream");
    free(want);
    cJSON_Delete(j);
    http_resp_free(&r);

    j = echo_of(daemon_proc.port, "PUT", "/svc/put", NULL, "put-body", 8, &r);
    ck_assert_str_eq(json_str(j, "method"), "PUT");
    ck_assert_str_eq(json_str(j, "body"), "put-body");
    cJSON_Delete(j);
    http_resp_free(&r);

    j = echo_of(daemon_proc.port, "DELETE", "/svc/del", NULL, "gone", 4, &r);
    ck_assert_str_eq(json_str(j, "method"), "DELETE");
    ck_assert_str_eq(json_str(j, "body"), "gone");
    cJSON_Delete(j);
    http_resp_free(&r);

    j = echo_of(daemon_proc.port, "DELETE", "/svc/del2", NULL, NULL, 0, &r);
    ck_assert_str_eq(json_str(j, "method"), "DELETE");
    ck_assert_int_eq((int)json_num(j, "body_len", -1), 0);
    cJSON_Delete(j);
    http_resp_free(&r);

    /* An empty POST body: framed with Content-Length: 0 (or nothing), no bytes. */
    j = echo_of(daemon_proc.port, "POST", "/svc/empty", NULL, "", 0, &r);
    ck_assert_str_eq(json_str(j, "method"), "POST");
    ck_assert_int_eq((int)json_num(j, "body_len", -1), 0);
    cl = echo_header(j, "Content-Length");
    ck_assert_msg(cl == NULL || strcmp(cl, "0") == 0, "empty POST sent Content-Length %s", cl);
    cJSON_Delete(j);
    http_resp_free(&r);

    j = echo_of(daemon_proc.port, "PATCH", "/svc/patch", NULL, "{\"a\":1}", 7, &r);
    ck_assert_str_eq(json_str(j, "method"), "PATCH");
    ck_assert_str_eq(json_str(j, "body"), "{\"a\":1}");
    cJSON_Delete(j);
    http_resp_free(&r);

    /* A chunked request body arrives whole, byte for byte (it streams up, re-framed by
     * the upstream library: chunked again, its length being unknown). */
    {
        struct http_req req;
        char url[64];
        memset(&req, 0, sizeof(req));
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/chunked", daemon_proc.port);
        req.method = "POST";
        req.url = url;
        req.body = bin;
        req.body_len = sizeof(bin);
        req.chunked = true;
        http_do(&req, &r);
        ck_assert_msg(r.status == 200, "chunked POST: %ld %.200s", r.status, r.body);
        j = json_body(&r);
        want = hex_of(bin, sizeof(bin));
        ck_assert_str_eq(json_str(j, "body_hex"), want);
        ck_assert_ptr_null(echo_header(j, "Content-Length"));
        free(want);
        cJSON_Delete(j);
        http_resp_free(&r);
    }

    /* A response body with every byte the upstream sent. */
    http_get(daemon_proc.port, "/svc/big", (const char *[]){"X-Stub-Body-Bytes: 70000", NULL}, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 70000);
    ck_assert_str_eq(http_header(&r, "Content-Type"), "text/plain");
    ck_assert_int_eq(r.body[0], 'x');
    ck_assert_int_eq(r.body[69999], 'x');
    http_resp_free(&r);
}
END_TEST

START_TEST(head_keeps_content_length)
{
    struct http_resp r;
    cJSON *recs;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false");
    http_send(daemon_proc.port, "HEAD", "/svc/h", (const char *[]){"X-Stub-Body-Bytes: 1234", NULL},
              NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.curl_code, CURLE_OK);
    ck_assert_uint_eq(r.body_len, 0);
    ck_assert_ptr_nonnull(http_header(&r, "Content-Length"));
    ck_assert_str_eq(http_header(&r, "Content-Length"), "1234");
    http_resp_free(&r);

    recs = stub_requests(&stub);
    ck_assert_int_eq(cJSON_GetArraySize(recs), 1);
    ck_assert_str_eq(json_str(cJSON_GetArrayItem(recs, 0), "method"), "HEAD");
    ck_assert_str_eq(json_str(cJSON_GetArrayItem(recs, 0), "target"), "/base/h");
    cJSON_Delete(recs);
}
END_TEST

START_TEST(base_path_join)
{
    char *yaml;
    int rc;

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    if (asprintf(&yaml,
                 "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n  access-log: stderr\n"
                 "pyfly:\n  client:\n    services:\n"
                 "      svc:\n        base-url: http://127.0.0.1:%d/base\n"
                 "      slash:\n        base-url: http://127.0.0.1:%d/base/\n"
                 "      root:\n        base-url: http://127.0.0.1:%d\n"
                 "      deep:\n        base-url: http://127.0.0.1:%d/a/b\n",
                 stub.port, stub.port, stub.port, stub.port) < 0)
        ck_abort();
    rc = ahoyd_start(&daemon_proc, yaml);
    free(yaml);
    ck_assert_int_eq(rc, 0);

    assert_forwarded_target(daemon_proc.port, "/svc", "/base");
    assert_forwarded_target(daemon_proc.port, "/svc/", "/base/");
    assert_forwarded_target(daemon_proc.port, "/svc/x", "/base/x");
    assert_forwarded_target(daemon_proc.port, "/svc/x/", "/base/x/");
    assert_forwarded_target(daemon_proc.port, "/svc//x", "/base//x");
    assert_forwarded_target(daemon_proc.port, "/svc/x/y/z", "/base/x/y/z");
    assert_forwarded_target(daemon_proc.port, "/slash", "/base/"); /* the base path exactly */
    assert_forwarded_target(daemon_proc.port, "/slash/", "/base/");
    assert_forwarded_target(daemon_proc.port, "/slash/x", "/base/x");
    assert_forwarded_target(daemon_proc.port, "/root", "/");
    assert_forwarded_target(daemon_proc.port, "/root/", "/");
    assert_forwarded_target(daemon_proc.port, "/root/x", "/x");
    assert_forwarded_target(daemon_proc.port, "/deep/c", "/a/b/c");

    /* Encoded bytes and queries byte for byte. */
    assert_forwarded_target(daemon_proc.port, "/svc/a%2Fb/c", "/base/a%2Fb/c");
    assert_forwarded_target(daemon_proc.port, "/svc/a%2fb", "/base/a%2fb");
    assert_forwarded_target(daemon_proc.port, "/svc/%7Euser/%41", "/base/%7Euser/%41");
    assert_forwarded_target(daemon_proc.port, "/svc/a;b,c=d@e:f!$&'()*+",
                            "/base/a;b,c=d@e:f!$&'()*+");
    assert_forwarded_target(daemon_proc.port, "/svc/x?q=1&r=%20&s=a+b&&t",
                            "/base/x?q=1&r=%20&s=a+b&&t");
    assert_forwarded_target(daemon_proc.port, "/svc/x?", "/base/x?");
    assert_forwarded_target(daemon_proc.port, "/svc?a=b", "/base?a=b");
    assert_forwarded_target(daemon_proc.port, "/svc/?a=/x/../y", "/base/?a=/x/../y");
    assert_forwarded_target(daemon_proc.port, "/root?x=%2F", "/?x=%2F");
    assert_forwarded_target(daemon_proc.port, "/svc/x?a=%7e%2f%3F", "/base/x?a=%7e%2f%3F");
}
END_TEST

START_TEST(request_headers)
{
    struct http_resp r;
    cJSON *j;
    const char *hdrs[] = {
        "Connection: keep-alive, X-Drop-Me",
        "X-Drop-Me: secret",
        "Keep-Alive: timeout=5",
        "Proxy-Authorization: Basic Zm9vOmJhcg==",
        "Proxy-Foo: bar",
        "TE: trailers",
        "Trailer: X-Checksum",
        "X-Ahoyd-Something: forged",
        "X-Ahoyd-Attempt: 99",
        "X-Forwarded-For: 10.1.2.3",
        "X-Keep: kept value",
        "Accept: application/json",
        "User-Agent: harness/1",
        "Host: example.invalid",
        "X-Request-Id: req-1234_abcd",
        NULL,
    };
    char host[64];
    const char *conn;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false");
    j = echo_of(daemon_proc.port, "GET", "/svc/h", hdrs, NULL, 0, &r);

    ck_assert_ptr_null(echo_header(j, "X-Drop-Me"));
    ck_assert_ptr_null(echo_header(j, "Keep-Alive"));
    ck_assert_ptr_null(echo_header(j, "Proxy-Authorization"));
    ck_assert_ptr_null(echo_header(j, "Proxy-Foo"));
    ck_assert_ptr_null(echo_header(j, "TE"));
    ck_assert_ptr_null(echo_header(j, "Trailer"));
    ck_assert_ptr_null(echo_header(j, "X-Ahoyd-Something"));
    conn = echo_header(j, "Connection");
    ck_assert_msg(conn == NULL || strcasestr(conn, "x-drop-me") == NULL,
                  "client Connection forwarded: %s", conn);

    snprintf(host, sizeof(host), "127.0.0.1:%d", stub.port);
    ck_assert_str_eq(echo_header(j, "Host"), host);
    ck_assert_str_eq(echo_header(j, "X-Keep"), "kept value");
    ck_assert_str_eq(echo_header(j, "Accept"), "application/json");
    ck_assert_str_eq(echo_header(j, "User-Agent"), "harness/1");
    ck_assert_str_eq(echo_header(j, "X-Forwarded-For"), "10.1.2.3, 127.0.0.1");
    ck_assert_str_eq(echo_header(j, "X-Forwarded-Proto"), "http");
    ck_assert_str_eq(echo_header(j, "Via"), "1.1 ahoyd");
    ck_assert_str_eq(echo_header(j, "X-Ahoyd-Attempt"), "1");
    ck_assert_ptr_null(echo_header(j, "X-Ahoyd-Deadline-Ms"));
    ck_assert_str_eq(echo_header(j, "X-Request-Id"), "req-1234_abcd");

    ck_assert_str_eq(http_header(&r, "X-Request-Id"), "req-1234_abcd");
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "1");
    {
        char want[96];
        snprintf(want, sizeof(want), "http://127.0.0.1:%d/base", stub.port);
        ck_assert_str_eq(http_header(&r, "X-Ahoyd-Upstream"), want);
    }
    ck_assert_str_eq(http_header(&r, "X-Stub-Name"), "a");
    cJSON_Delete(j);
    http_resp_free(&r);

    /* Without X-Forwarded-For: just the client address. Expect is not forwarded. */
    j = echo_of(daemon_proc.port, "POST", "/svc/e", (const char *[]){"Expect: 100-continue", NULL},
                "abc", 3, &r);
    ck_assert_str_eq(echo_header(j, "X-Forwarded-For"), "127.0.0.1");
    ck_assert_ptr_null(echo_header(j, "Expect"));
    ck_assert_str_eq(json_str(j, "body"), "abc");
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

/* An Upgrade other than websocket (h2c from Java's HttpClient and curl --http2, or an
 * unknown protocol) is ignored: the request is forwarded as plain HTTP/1.1 without
 * Upgrade, HTTP2-Settings or the Connection tokens naming them, and the answer is the
 * upstream's, on a connection that stays open. */
START_TEST(upgrade_h2c_ignored)
{
    static const char *const h2c[] = {
        "Connection: Upgrade, HTTP2-Settings",
        "Upgrade: h2c",
        "HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA",
        "User-Agent: Java-http-client/17.0.15",
        NULL,
    };
    static const char *const other[] = {
        "Connection: upgrade",
        "Upgrade: IRC/6.9, foo",
        "HTTP2-Settings: AAEAAEAA",
        NULL,
    };
    struct http_client c;
    struct http_resp r;
    struct http_req req = {0};
    char url[96];
    cJSON *j;

    start_one_service(&stub, &daemon_proc, NULL, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/h2c?x=1", daemon_proc.port);
    http_client_init(&c);
    for (int i = 0; i < 3; i++) {
        req.url = url;
        req.headers = h2c;
        req.method = i == 2 ? "POST" : "GET";
        req.body = i == 2 ? "{\"a\":1}" : NULL;
        req.body_len = i == 2 ? 7 : 0;
        ck_assert_int_eq(http_client_do(&c, &req, &r), 0);
        ck_assert_msg(r.status == 200, "h2c request %d: status %ld: %s", i, r.status, r.body);
        ck_assert_int_eq(r.num_connects, i == 0 ? 1 : 0); /* kept alive */
        ck_assert_ptr_null(http_header(&r, "Upgrade"));
        j = json_body(&r);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(json_str(j, "target"), "/base/h2c?x=1");
        ck_assert_str_eq(json_str(j, "body"), i == 2 ? "{\"a\":1}" : "");
        ck_assert_ptr_null(echo_header(j, "Upgrade"));
        ck_assert_ptr_null(echo_header(j, "HTTP2-Settings"));
        ck_assert_ptr_null(echo_header(j, "Connection"));
        ck_assert_str_eq(echo_header(j, "User-Agent"), "Java-http-client/17.0.15");
        cJSON_Delete(j);
        http_resp_free(&r);
    }
    http_client_free(&c);

    j = echo_of(daemon_proc.port, "GET", "/svc/irc", other, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(echo_header(j, "Upgrade"));
    ck_assert_ptr_null(echo_header(j, "HTTP2-Settings"));
    ck_assert_ptr_null(echo_header(j, "Connection"));
    cJSON_Delete(j);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 4);
}
END_TEST

/* X-Forwarded-For, Via and an empty header are forwarded whole whatever their length
 * (within max-header-bytes): ahoyd's own entry is always the last one, so an upstream
 * trusting the right-most hop never takes a forged address (a fixed buffer once cut a
 * 494-byte X-Forwarded-For before ", 127.0.0.1"). */
START_TEST(forwarded_headers_any_length)
{
    static const size_t lens[] = {494, 500, 1000, 12000};
    struct http_resp r;
    cJSON *j;

    start_one_service(&stub, &daemon_proc, "max-header-bytes: 64KiB", NULL);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = lens[i];
        char *xff = malloc(n + 64), *via = malloc(n + 64), *want = malloc(n + 64);
        char *empty = malloc(n + 8);
        const char *hdrs[4] = {xff, via, empty, NULL};
        const char *got;

        /* "X-Forwarded-For: aaa...a, 6.6.6.6", the value n bytes long */
        int k = sprintf(xff, "X-Forwarded-For: ");
        memset(xff + k, 'a', n - 9);
        strcpy(xff + k + n - 9, ", 6.6.6.6");
        k = sprintf(via, "Via: ");
        memset(via + k, 'v', n);
        via[k + n] = '\0';
        memset(empty, 'e', n);
        strcpy(empty + n, "-x;"); /* curl sends "Name;" as an empty "Name:" */
        j = echo_of(daemon_proc.port, "GET", "/svc/xff", hdrs, NULL, 0, &r);
        ck_assert_msg(r.status == 200, "%zu bytes: status %ld", n, r.status);

        snprintf(want, n + 64, "%s, 127.0.0.1", xff + strlen("X-Forwarded-For: "));
        got = echo_header(j, "X-Forwarded-For");
        ck_assert_msg(got && strcmp(got, want) == 0, "%zu bytes: X-Forwarded-For ends '%s'", n,
                      got ? got + (strlen(got) > 40 ? strlen(got) - 40 : 0) : "(none)");
        snprintf(want, n + 64, "%s, 1.1 ahoyd", via + strlen("Via: "));
        got = echo_header(j, "Via");
        ck_assert_msg(got && strcmp(got, want) == 0, "%zu bytes: Via ends '%s'", n,
                      got ? got + (strlen(got) > 40 ? strlen(got) - 40 : 0) : "(none)");
        empty[n + 2] = '\0'; /* the name, without ';' */
        got = echo_header(j, empty);
        ck_assert_msg(got && *got == '\0', "%zu bytes: an empty header with a long name is %s",
                      n, got ? got : "missing");
        cJSON_Delete(j);
        http_resp_free(&r);
        free(xff);
        free(via);
        free(want);
        free(empty);
    }
}
END_TEST

START_TEST(deadline_header)
{
    struct http_resp r;
    cJSON *j;
    const char *v;
    long ms;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false\ndeadline: 10s");
    j = echo_of(daemon_proc.port, "GET", "/svc/d", NULL, NULL, 0, &r);
    v = echo_header(j, "X-Ahoyd-Deadline-Ms");
    ck_assert_ptr_nonnull(v);
    ms = strtol(v, NULL, 10);
    ck_assert_msg(ms > 5000 && ms <= 10000, "X-Ahoyd-Deadline-Ms %s", v);
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

static bool is_uuid4(const char *s)
{
    size_t i;

    if (s == NULL || strlen(s) != 36 || s[14] != '4' || strchr("89ab", s[19]) == NULL)
        return false;
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (strchr("0123456789abcdef", s[i]) == NULL) {
            return false;
        }
    }
    return true;
}

START_TEST(request_id)
{
    struct http_resp r;
    cJSON *j;
    char long_ok[160], long_bad[160], first[40];

    start_one_service(&stub, &daemon_proc, NULL, "retry: false");

    /* None: a new UUIDv4, the same upstream and back. */
    j = echo_of(daemon_proc.port, "GET", "/svc/1", NULL, NULL, 0, &r);
    ck_assert_msg(is_uuid4(http_header(&r, "X-Request-Id")), "generated id %s",
                  http_header(&r, "X-Request-Id"));
    ck_assert_str_eq(echo_header(j, "X-Request-Id"), http_header(&r, "X-Request-Id"));
    snprintf(first, sizeof(first), "%s", http_header(&r, "X-Request-Id"));
    cJSON_Delete(j);
    http_resp_free(&r);

    /* Two generated ids differ. */
    j = echo_of(daemon_proc.port, "GET", "/svc/2", NULL, NULL, 0, &r);
    ck_assert_str_ne(http_header(&r, "X-Request-Id"), first);
    cJSON_Delete(j);
    http_resp_free(&r);

    /* 128 visible characters: kept. */
    snprintf(long_ok, sizeof(long_ok), "X-Request-Id: %0128d", 7);
    j = echo_of(daemon_proc.port, "GET", "/svc/3", (const char *[]){long_ok, NULL}, NULL, 0, &r);
    ck_assert_str_eq(http_header(&r, "X-Request-Id"), long_ok + 14);
    ck_assert_str_eq(echo_header(j, "X-Request-Id"), long_ok + 14);
    cJSON_Delete(j);
    http_resp_free(&r);

    /* 129: replaced, upstream and back alike. */
    snprintf(long_bad, sizeof(long_bad), "X-Request-Id: %0129d", 7);
    j = echo_of(daemon_proc.port, "GET", "/svc/4", (const char *[]){long_bad, NULL}, NULL, 0, &r);
    ck_assert_msg(is_uuid4(http_header(&r, "X-Request-Id")), "129-char id became %s",
                  http_header(&r, "X-Request-Id"));
    ck_assert_str_eq(echo_header(j, "X-Request-Id"), http_header(&r, "X-Request-Id"));
    cJSON_Delete(j);
    http_resp_free(&r);

    /* A space inside: not visible ASCII, replaced. */
    j = echo_of(daemon_proc.port, "GET", "/svc/5", (const char *[]){"X-Request-Id: a b", NULL},
                NULL, 0, &r);
    ck_assert_msg(is_uuid4(http_header(&r, "X-Request-Id")), "'a b' became %s",
                  http_header(&r, "X-Request-Id"));
    ck_assert_int_eq(http_header_count(&r, "X-Request-Id"), 1);
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

START_TEST(upstream_response_unchanged)
{
    struct http_resp r;
    cJSON *j;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false\ncircuit-breaker: false");

    http_get(daemon_proc.port, "/svc/tea",
             (const char *[]){"X-Stub-Status: 418", "X-Stub-Header: X-Custom: teapot",
                              "X-Stub-Header: Cache-Control: no-store", NULL},
             &r);
    ck_assert_int_eq(r.status, 418);
    ck_assert_str_eq(http_header(&r, "X-Custom"), "teapot");
    ck_assert_str_eq(http_header(&r, "Cache-Control"), "no-store");
    ck_assert_str_eq(http_header(&r, "Content-Type"), "application/json");
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "1");
    j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_str(j, "upstream"), "a"); /* the upstream's body, not ours */
    ck_assert_str_eq(json_str(j, "target"), "/base/tea");
    ck_assert_ptr_null(json_path(j, "error"));
    cJSON_Delete(j);
    http_resp_free(&r);

    /* The upstream's own 5xx comes back as it was (no retries configured). */
    http_get(daemon_proc.port, "/svc/boom", (const char *[]){"X-Stub-Status: 500", NULL}, &r);
    ck_assert_int_eq(r.status, 500);
    j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_str(j, "message"), "hello from the demo upstream");
    cJSON_Delete(j);
    http_resp_free(&r);

    /* Redirects are returned, never followed. */
    http_get(daemon_proc.port, "/svc/moved",
             (const char *[]){"X-Stub-Status: 302",
                              "X-Stub-Header: Location: http://127.0.0.1:1/elsewhere", NULL},
             &r);
    ck_assert_int_eq(r.status, 302);
    ck_assert_str_eq(http_header(&r, "Location"), "http://127.0.0.1:1/elsewhere");
    http_resp_free(&r);

    /* Retry-After and the upstream's own headers pass. */
    http_get(daemon_proc.port, "/svc/ra",
             (const char *[]){"X-Stub-Status: 503", "X-Stub-Retry-After: 120", NULL}, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(http_header(&r, "Retry-After"), "120");
    ck_assert_str_eq(http_header(&r, "X-Stub-Name"), "a");
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 4);
}
END_TEST

START_TEST(service_headers_replace)
{
    struct http_resp r;
    cJSON *j;

    start_one_service(&stub, &daemon_proc, NULL,
                      "retry: false\nheaders: {X-Client: ahoyd, X-Team: core}");
    j = echo_of(daemon_proc.port, "GET", "/svc/h",
                (const char *[]){"X-Client: mine", "x-team: other", "X-Other: o", NULL}, NULL, 0,
                &r);
    ck_assert_str_eq(echo_header(j, "X-Client"), "ahoyd");
    ck_assert_str_eq(echo_header(j, "X-Team"), "core");
    ck_assert_str_eq(echo_header(j, "X-Other"), "o");
    cJSON_Delete(j);
    http_resp_free(&r);

    j = echo_of(daemon_proc.port, "GET", "/svc/h2", NULL, NULL, 0, &r);
    ck_assert_str_eq(echo_header(j, "X-Client"), "ahoyd");
    cJSON_Delete(j);
    http_resp_free(&r);
}
END_TEST

START_TEST(keep_alive_to_client)
{
    struct http_client c;
    struct http_req req;
    struct http_resp r;
    char url[64];
    const char *conn;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false");
    http_client_init(&c);
    memset(&req, 0, sizeof(req));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/ka", daemon_proc.port);
    req.url = url;

    ck_assert_int_eq(http_client_do(&c, &req, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.num_connects, 1);
    conn = http_header(&r, "Connection");
    ck_assert_msg(conn == NULL || strcasecmp(conn, "close") != 0, "Connection: %s", conn);
    http_resp_free(&r);

    ck_assert_int_eq(http_client_do(&c, &req, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.num_connects, 0);
    http_resp_free(&r);

    req.method = "POST";
    req.body = "xyz";
    req.body_len = 3;
    ck_assert_int_eq(http_client_do(&c, &req, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.num_connects, 0);
    http_resp_free(&r);

    /* An upstream error status keeps the connection too. */
    req.method = NULL;
    req.body = NULL;
    req.headers = (const char *[]){"X-Stub-Status: 404", NULL};
    ck_assert_int_eq(http_client_do(&c, &req, &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(r.num_connects, 0);
    http_resp_free(&r);
    http_client_free(&c);
}
END_TEST

START_TEST(nothing_blocks)
{
    struct http_req req;
    long statuses[50];
    double elapsed;
    char url[64];
    int i;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false\ntimeout: 10s");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/slow", daemon_proc.port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 1000", NULL};
    req.timeout_ms = 20000;
    ck_assert_int_eq(http_parallel(&req, 50, statuses, &elapsed), 50);
    for (i = 0; i < 50; i++)
        ck_assert_msg(statuses[i] == 200, "request %d: status %ld", i, statuses[i]);
    ck_assert_msg(elapsed >= 1000 && elapsed < 3000,
                  "50 concurrent 1 s requests took %.0f ms through ahoyd", elapsed);
    ck_assert_int_eq(stub_count(&stub), 50);
}
END_TEST

START_TEST(access_log_line)
{
    struct http_resp r;
    char *log, *line;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false");
    http_get(daemon_proc.port, "/svc/logged?q=1",
             (const char *[]){"X-Request-Id: access-log-probe-1", NULL}, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_msg(proc_log_wait(&daemon_proc, "access-log-probe-1", 5000),
                  "no access-log line with the request id");
    log = proc_log(&daemon_proc);
    line = strstr(log, "access-log-probe-1");
    while (line > log && line[-1] != '\n')
        line--;
    *strchrnul(line, '\n') = '\0';
    ck_assert_msg(strstr(line, "status=200") != NULL && strstr(line, "attempts=1") != NULL &&
                      strstr(line, "method=") != NULL && strstr(line, "svc") != NULL,
                  "access-log line: %s", line);
    free(log);
}
END_TEST

/* One request over a unix socket; returns the bytes read into out (NUL-terminated). */
static int unix_exchange(const char *path, const char *req, char *out, size_t cap)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    size_t got = 0;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    for (int i = 0; i < 1000 && got + 1 < cap; i++) { /* until the server closes */
        ssize_t n = read(fd, out + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    return (int)got;
}

/* SPEC 2.1 listen forms: [::1]:port for the proxy, unix:/path for the admin API, and
 * unix:/path for the proxy (no X-Forwarded-For is added for a unix-socket client). */
START_TEST(ipv6_and_unix_listeners)
{
    struct http_resp r;
    struct http_req q = {0};
    char *yaml, url[128], path[400], out[8192];
    cJSON *j;

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: \"[::1]:0\"\n"
                              "  admin-listen: unix:@DIR@/admin.sock\n  access-log: stderr\n"
                              "pyfly:\n  client:\n    services:\n"
                              "      svc:\n        base-url: http://127.0.0.1:%d\n",
                              stub.port),
                     0);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
    snprintf(url, sizeof url, "http://[::1]:%d/svc/six", daemon_proc.port);
    q.url = url;
    ck_assert_int_eq(http_do(&q, &r), 0);
    ck_assert_int_eq(r.status, 200);
    j = cJSON_Parse(r.body);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "target")->valuestring, "/six");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(
                         cJSON_GetObjectItemCaseSensitive(j, "headers"), "X-Forwarded-For")
                         ->valuestring,
                     "::1");
    cJSON_Delete(j);
    http_resp_free(&r);
    ck_assert_msg(proc_log_wait(&daemon_proc, "client=\"[::1]:", 5000),
                  "no access-log line with client=\"[::1]:port\"");
    snprintf(path, sizeof path, "%s/admin.sock", daemon_proc.dir);
    ck_assert_int_gt(unix_exchange(path, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                         "Connection: close\r\n\r\n",
                                   out, sizeof out),
                     0);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200", 12) == 0 && strstr(out, "\"ok\""),
                  "admin over unix: %.200s", out);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
    ck_assert_msg(access(path, F_OK) != 0, "the admin socket is left behind");

    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: unix:@DIR@/proxy.sock\n  admin-listen: off\n"
                              "pyfly:\n  client:\n    services:\n"
                              "      svc:\n        base-url: http://127.0.0.1:%d\n",
                              stub.port),
                     0);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    free(yaml);
    snprintf(path, sizeof path, "%s/proxy.sock", daemon_proc.dir);
    ck_assert_int_gt(unix_exchange(path, "GET /svc/over-unix HTTP/1.1\r\nHost: x\r\n"
                                         "Connection: close\r\n\r\n",
                                   out, sizeof out),
                     0);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200", 12) == 0 && strstr(out, "\"/over-unix\""),
                  "proxy over unix: %.300s", out);
    ck_assert_msg(strstr(out, "X-Forwarded-For") == NULL, "X-Forwarded-For for a unix client");
    ck_assert_msg(proc_log_wait(&daemon_proc, "client=\"unix\"", 5000),
                  "no access-log line with client=\"unix\"");
}
END_TEST

START_TEST(stops_cleanly)
{
    struct http_resp r;

    start_one_service(&stub, &daemon_proc, NULL, "retry: false");
    http_get(daemon_proc.port, "/svc/x", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

static Suite *forward_suite(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = harness_tcase(s, "stub");

    tcase_add_test(tc, stub_echo_and_controls);
    tcase_add_test(tc, stub_faults);
    tcase_add_test(tc, stub_parallel_delays);

    tc = harness_tcase(s, "forward");
    tcase_add_test(tc, methods_and_bodies);
    tcase_add_test(tc, head_keeps_content_length);
    tcase_add_test(tc, base_path_join);
    tcase_add_test(tc, request_headers);
    tcase_add_test(tc, upgrade_h2c_ignored);
    tcase_add_test(tc, forwarded_headers_any_length);
    tcase_add_test(tc, deadline_header);
    tcase_add_test(tc, request_id);
    tcase_add_test(tc, upstream_response_unchanged);
    tcase_add_test(tc, service_headers_replace);
    tcase_add_test(tc, keep_alive_to_client);
    tcase_add_test(tc, nothing_blocks);
    tcase_add_test(tc, access_log_line);
    tcase_add_test(tc, stops_cleanly);
    tcase_add_test(tc, ipv6_and_unix_listeners);
    return s;
}

int main(void)
{
    return harness_main(forward_suite());
}
