/*
 * check_regress_fuzz.c - regression tests for what the libFuzzer targets in
 * fuzz/ found (fuzz/README.md lists the findings). Each test feeds the
 * minimized input to the code that mishandled it and asserts the right answer.
 *
 * The code at fault: the reader behind upstream.c's curl header and write
 * callbacks (upstream_read.h) and the server's forward_build_response()
 * (forward.h), both reached through their internal headers, linked from
 * libahoyd.a like every other suite.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "request.h"
#include "upstream_read.h"

/* ---- upstream response headers as libcurl delivers them --------------------- */

struct feed {
    struct upstream_reader a;
    struct upstream_response *resp;
};

static void feed_init(struct feed *f)
{
    memset(f, 0, sizeof(*f));
    f->resp = calloc(1, sizeof(*f->resp));
    ck_assert_ptr_nonnull(f->resp);
    f->resp->content_length = -1;
    f->a.resp = f->resp;
    f->a.max_header_bytes = 32 * 1024;
    f->a.max_body = 1024 * 1024;
}

static void feed_free(struct feed *f)
{
    upstream_response_free(f->resp);
    free(f->resp);
}

/* One header line (status, field, blank or trailer), as curl's header callback gets it. */
static void feed_line(struct feed *f, const char *line)
{
    size_t n = strlen(line);
    char *copy = malloc(n); /* exactly n bytes, no NUL, like curl's buffer */
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, line, n);
    ck_assert_uint_eq(upstream_read_header(&f->a, copy, n), n);
    free(copy);
}

static void feed_body(struct feed *f, const char *data)
{
    size_t n = strlen(data);
    ck_assert_uint_eq(upstream_read_body(&f->a, data, n), n);
}

/*
 * Finding 1 (fuzz_upstream_header): a chunked-body trailer line starting with
 * "HTTP/" was taken for a new status line: the real headers were thrown away
 * and the following trailers became the response headers (SPEC 3.4: trailers
 * are never forwarded). Input: fuzz/findings/upstream-header-trailer-status.
 */
START_TEST(trailer_starting_with_http_is_not_a_status_line)
{
    struct feed f;
    feed_init(&f);
    feed_line(&f, "HTTP/1.1 200 OK\r\n");
    feed_line(&f, "X-Real: 1\r\n");
    feed_line(&f, "Transfer-Encoding: chunked\r\n");
    feed_line(&f, "\r\n");
    feed_body(&f, "ok");
    feed_line(&f, "HTTP/1.1: x\r\n"); /* trailers */
    feed_line(&f, "Set-Cookie: evil\r\n");
    feed_line(&f, "Content-Length: 7\r\n");
    feed_line(&f, "\r\n");
    ck_assert_uint_eq(f.resp->headers.n, 2);
    ck_assert_str_eq(f.resp->headers.items[0].name, "X-Real");
    ck_assert_str_eq(f.resp->headers.items[0].value, "1");
    ck_assert_str_eq(f.resp->headers.items[1].name, "Transfer-Encoding");
    ck_assert_ptr_null(header_list_get(&f.resp->headers, "Set-Cookie"));
    ck_assert_int_eq(f.resp->content_length, -1);
    ck_assert_uint_eq(f.resp->body_len, 2);
    ck_assert_int_eq(memcmp(f.resp->body, "ok", 2), 0);
    feed_free(&f);
}
END_TEST

/* Same finding, the fuzzer's own spelling: a whole status line as a trailer. */
START_TEST(trailer_status_line_is_not_a_new_response)
{
    struct feed f;
    feed_init(&f);
    feed_line(&f, "HTTP/1.1 200 OK\r\n");
    feed_line(&f, "Link: </a>\r\n");
    feed_line(&f, "\r\n");
    feed_line(&f, "HTTP/1.1 201 Created\r\n"); /* a trailer line, not a response */
    feed_line(&f, "Location: /x\r\n");
    feed_line(&f, "\r\n");
    ck_assert_uint_eq(f.resp->headers.n, 1);
    ck_assert_str_eq(f.resp->headers.items[0].name, "Link");
    ck_assert_str_eq(f.resp->headers.items[0].value, "</a>");
    feed_free(&f);
}
END_TEST

/*
 * Finding 1, inside the header block (the fuzzer's minimized input:
 * "HTTP/1.1 200\nHTTP/:\n\n", fuzz/findings/upstream-header-http-line-in-block):
 * a header line starting with "HTTP/" dropped the headers before it and
 * restarted the max-response-header-bytes count.
 */
START_TEST(http_prefixed_header_line_keeps_the_block)
{
    struct feed f;
    feed_init(&f);
    feed_line(&f, "HTTP/1.1 200 OK\r\n");
    feed_line(&f, "X-Real: 1\r\n");
    feed_line(&f, "HTTP/:\r\n");
    feed_line(&f, "\r\n");
    ck_assert_str_eq(header_list_get(&f.resp->headers, "X-Real"), "1");
    feed_free(&f);
}
END_TEST

START_TEST(http_prefixed_header_line_counts_toward_the_limit)
{
    struct feed f;
    feed_init(&f);
    f.a.max_header_bytes = 64;
    feed_line(&f, "HTTP/1.1 200 OK\r\n");                               /* 17 bytes */
    feed_line(&f, "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");   /* 17 + 44 = 61 */
    char line[] = "HTTP/1.1: x\r\n";                                    /* 61 + 13 > 64 */
    ck_assert_uint_eq(upstream_read_header(&f.a, line, strlen(line)), 0);
    ck_assert(f.a.too_large);
    feed_free(&f);
}
END_TEST

/* The fix must keep this: 1xx interim responses are dropped, the final one kept. */
START_TEST(interim_responses_are_forgotten)
{
    struct feed f;
    feed_init(&f);
    feed_line(&f, "HTTP/1.1 100 Continue\r\n");
    feed_line(&f, "\r\n");
    feed_line(&f, "HTTP/1.1 103 Early Hints\r\n");
    feed_line(&f, "Link: </style.css>\r\n");
    feed_line(&f, "Content-Length: 9\r\n");
    feed_line(&f, "\r\n");
    feed_line(&f, "HTTP/1.1 200 OK\r\n");
    feed_line(&f, "Content-Length: 3\r\n");
    feed_line(&f, "X-Final: yes\r\n");
    feed_line(&f, "\r\n");
    feed_body(&f, "abc");
    ck_assert_uint_eq(f.resp->headers.n, 2);
    ck_assert_ptr_null(header_list_get(&f.resp->headers, "Link"));
    ck_assert_str_eq(header_list_get(&f.resp->headers, "X-Final"), "yes");
    ck_assert_int_eq(f.resp->content_length, 3);
    ck_assert_uint_eq(f.resp->body_len, 3);
    feed_free(&f);
}
END_TEST

/* ---- forward_build_response(): which upstream headers reach the client ------- */

/* forward_build_response() for an upstream answer with these header lines. */
static struct MHD_Response *respond_with(const char *const *lines, struct feed *f,
                                         struct request *r)
{
    feed_init(f);
    feed_line(f, "HTTP/1.1 200 OK\r\n");
    for (size_t i = 0; lines[i] != NULL; i++)
        feed_line(f, lines[i]);
    feed_line(f, "\r\n");
    static struct request_env env; /* not draining */
    memset(r, 0, sizeof(*r));
    r->env = &env;
    r->method = "GET";
    r->status = 200;
    r->attempts = 1;
    r->resp = f->resp;
    struct MHD_Response *resp = forward_build_response(r);
    ck_assert_ptr_nonnull(resp);
    return resp;
}

/*
 * Finding 2 (fuzz_upstream_header): only the first Connection field line was
 * read, so a header named in a second one (RFC 9110 7.6.1: the field is the
 * list of all its lines) went to the client. Input:
 * fuzz/findings/upstream-header-second-connection.
 */
START_TEST(every_connection_line_names_hop_by_hop_headers)
{
    static const char *const lines[] = {"Connection: close\r\n", "Connection: X-Second\r\n",
                                        "X-Second: hop\r\n", "X-Kept: end-to-end\r\n", NULL};
    struct feed f;
    struct request r;
    struct MHD_Response *resp = respond_with(lines, &f, &r);
    ck_assert_ptr_null(MHD_get_response_header(resp, "X-Second"));
    ck_assert_str_eq(MHD_get_response_header(resp, "X-Kept"), "end-to-end");
    MHD_destroy_response(resp);
    feed_free(&f);
}
END_TEST

/* Guard for the fix: one Connection line listing several names still works. */
START_TEST(one_connection_line_with_several_names)
{
    static const char *const lines[] = {"Connection: keep-alive, X-A ,x-b\r\n", "X-A: 1\r\n",
                                        "X-B: 2\r\n", "X-C: 3\r\n", NULL};
    struct feed f;
    struct request r;
    struct MHD_Response *resp = respond_with(lines, &f, &r);
    ck_assert_ptr_null(MHD_get_response_header(resp, "X-A"));
    ck_assert_ptr_null(MHD_get_response_header(resp, "X-B"));
    ck_assert_ptr_null(MHD_get_response_header(resp, "Connection"));
    ck_assert_str_eq(MHD_get_response_header(resp, "X-C"), "3");
    MHD_destroy_response(resp);
    feed_free(&f);
}
END_TEST

static Suite *regress_suite(void)
{
    Suite *s = suite_create("regress_fuzz");
    TCase *tc = tcase_create("upstream_headers");
    tcase_add_test(tc, trailer_starting_with_http_is_not_a_status_line);
    tcase_add_test(tc, trailer_status_line_is_not_a_new_response);
    tcase_add_test(tc, http_prefixed_header_line_keeps_the_block);
    tcase_add_test(tc, http_prefixed_header_line_counts_toward_the_limit);
    tcase_add_test(tc, interim_responses_are_forgotten);
    suite_add_tcase(s, tc);
    tc = tcase_create("response_filter");
    tcase_add_test(tc, every_connection_line_names_hop_by_hop_headers);
    tcase_add_test(tc, one_connection_line_with_several_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(regress_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
