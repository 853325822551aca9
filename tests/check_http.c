/*
 * check_http.c - unit tests for src/http.c: request-target safety (SPEC 3.3),
 * split and join (3.1), header token/value checks, hop-by-hop filtering,
 * X-Request-Id, UUIDv4, error bodies (5), reason phrases, percent-encoding.
 * Tables list every rule in raw and encoded spellings.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "http.h"
#include "strbuf.h"

/* ---- target safety ---------------------------------------------------------- */

struct safety_case {
    const char *target;
    size_t len; /* 0 = strlen */
    bool safe;
};

static const struct safety_case safety_cases[] = {
    /* plain and allowed characters */
    {"/", 0, true},
    {"/svc", 0, true},
    {"/svc/", 0, true},
    {"/svc/a/b/c", 0, true},
    {"/svc/a?x=1&y=2", 0, true},
    {"/svc/a?", 0, true},
    {"/svc?", 0, true},
    {"/svc/-._~", 0, true},
    {"/svc/!$&'()*+,;=:@", 0, true},
    {"/svc/[::1]", 0, true},
    {"/svc/a?q=/x/?y:@", 0, true},
    {"/svc//a", 0, true},
    {"/svc/...", 0, true},
    {"/svc/....", 0, true},
    {"/svc/.a", 0, true},
    {"/svc/a.", 0, true},
    {"/svc/..a", 0, true},
    {"/svc/%2E%2E%2E", 0, true},
    {"/svc/a%2Fb", 0, true},
    {"/svc/a%2fb", 0, true},
    {"/svc/%20", 0, true},
    {"/svc/%C3%A9", 0, true},
    {"/svc/%FF", 0, true},
    {"/svc/%2e%2e.", 0, true},
    {"/svc/a%5Cb", 0, true},
    {"/svc/%25", 0, true},
    {"/svc/a?..", 0, true},             /* query: only byte class and escapes */
    {"/svc/a?x=%2e%2e", 0, true},
    {"/svc/a?x=%00", 0, true},
    {"/svc/a?x=%0a", 0, true},
    {"/svc/a;x", 0, true},              /* ';' parameters on other pieces */
    {"/svc/a;..", 0, true},
    {"/svc/a;x=../b", 0, true},
    {"/svc/;x", 0, true},
    {"/svc/;..", 0, true},
    {"/svc/...;x", 0, true},
    {"/svc/.a;b", 0, true},
    {"/svc/a;b/c;d", 0, true},
    {"/svc/a?x=..;y", 0, true},
    /* dot segments, raw and encoded */
    {"/svc/.", 0, false},
    {"/svc/..", 0, false},
    {"/svc/./a", 0, false},
    {"/svc/../a", 0, false},
    {"/svc/a/..", 0, false},
    {"/svc/a/../", 0, false},
    {"/./svc", 0, false},
    {"/..", 0, false},
    {"/svc/%2e", 0, false},
    {"/svc/%2E", 0, false},
    {"/svc/%2e%2e", 0, false},
    {"/svc/%2E%2E", 0, false},
    {"/svc/%2E.", 0, false},
    {"/svc/.%2e", 0, false},
    {"/svc/%2e%2E/x", 0, false},
    {"/svc/..?x", 0, false},
    {"/svc/a%2F..", 0, false},
    {"/svc/a%2f..%2fb", 0, false},
    {"/svc/..%2Fb", 0, false},
    {"/svc/%2F..%2F", 0, false},
    {"/svc/a%2F.", 0, false},
    {"/svc/%5c..", 0, false},
    {"/svc/%5C..", 0, false},
    {"/svc/..%5c", 0, false},
    {"/svc/a%5C..%5Cb", 0, false},
    {"/svc/%2e%2e%5cx", 0, false},
    {"/svc/a%5c.", 0, false},
    /* dot segments once their ';' parameters are dropped (Tomcat and its kin) */
    {"/svc/..;/admin", 0, false},
    {"/svc/..;x", 0, false},
    {"/svc/..;", 0, false},
    {"/svc/.;a", 0, false},
    {"/svc/.;", 0, false},
    {"/svc/%2e%2e;x/admin", 0, false},
    {"/svc/%2e;x", 0, false},
    {"/svc/.%2E;x=1", 0, false},
    {"/svc/a/..;x/b", 0, false},
    {"/svc/..;a;b", 0, false},
    {"/svc/..;?q", 0, false},
    {"/svc/..%3Bx", 0, false},
    {"/svc/..%3bx", 0, false},
    {"/svc/a%2F..;x", 0, false},
    {"/svc/a%5c..;x", 0, false},
    /* control characters and NUL once decoded */
    {"/svc/%00", 0, false},
    {"/svc/a%00b", 0, false},
    {"/svc/%0a", 0, false},
    {"/svc/%0D%0A", 0, false},
    {"/svc/%09", 0, false},
    {"/svc/%1f", 0, false},
    {"/svc/%7F", 0, false},
    {"/svc/%7f", 0, false},
    /* bytes outside RFC 3986 */
    {"/svc/a b", 0, false},
    {"/svc/a#b", 0, false},
    {"/svc/a?x#y", 0, false},
    {"/svc/#", 0, false},
    {"/svc/a\\..", 0, false},
    {"/svc/..\\", 0, false},
    {"/svc/a\\b", 0, false},
    {"/svc/\"", 0, false},
    {"/svc/<", 0, false},
    {"/svc/>", 0, false},
    {"/svc/{x}", 0, false},
    {"/svc/|", 0, false},
    {"/svc/^", 0, false},
    {"/svc/`", 0, false},
    {"/svc/\t", 0, false},
    {"/svc/\r", 0, false},
    {"/svc/\n", 0, false},
    {"/svc/\x7f", 0, false},
    {"/svc/\xc3\xa9", 0, false},
    {"/svc/\x80", 0, false},
    {"/svc/a?x=a b", 0, false},
    {"/svc/a?x=\xff", 0, false},
    {"/svc/a\0b", 8, false},
    /* bad escapes */
    {"/svc/%zz", 0, false},
    {"/svc/%4", 0, false},
    {"/svc/%4g", 0, false},
    {"/svc/%g4", 0, false},
    {"/svc/%", 0, false},
    {"/svc/a%", 0, false},
    {"/svc/%%", 0, false},
    {"/svc/%%41", 0, false},
    {"/svc/a?x=%", 0, false},
    {"/svc/a?x=%4", 0, false},
    {"/svc/a?x=%zz", 0, false},
    {"/svc/%4?x", 0, false},
    {"/svc/%2", 0, false},
    /* not origin-form */
    {"*", 0, false},
    {"http://x/", 0, false},
    {"https://example.com/svc", 0, false},
    {"svc/a", 0, false},
    {"example.com:443", 0, false},
    {"", 0, false},
    {"?x", 0, false},
    {" /svc", 0, false},
};

START_TEST(test_target_safety_table)
{
    const struct safety_case *c = &safety_cases[_i];
    size_t len = c->len ? c->len : strlen(c->target);
    const char *why = NULL;
    bool safe = http_target_is_safe(c->target, len, &why);
    ck_assert_msg(safe == c->safe, "target '%s' (#%d): got %s", c->target, _i,
                  safe ? "safe" : why);
    if (!safe) {
        ck_assert_ptr_nonnull(why);
        ck_assert_int_gt((int)strlen(why), 0);
    }
}
END_TEST

START_TEST(test_target_safety_why_optional)
{
    ck_assert(!http_target_is_safe("/..", 3, NULL));
    ck_assert(http_target_is_safe("/a", 2, NULL));
    ck_assert(!http_target_is_safe(NULL, 0, NULL));
}
END_TEST

START_TEST(test_target_len_respected)
{
    /* only len bytes are looked at: the ".." after it is not part of the target */
    ck_assert(http_target_is_safe("/svc/a/..", 6, NULL));
    /* an escape cut by len is bad even if the bytes after it would complete it */
    ck_assert(!http_target_is_safe("/svc/%41", 7, NULL));
}
END_TEST

/* ---- split ------------------------------------------------------------------- */

struct split_case {
    const char *target, *service, *rest, *query;
};

static const struct split_case split_cases[] = {
    {"/svc/rest?q", "svc", "/rest", "?q"},
    {"/svc", "svc", "", ""},
    {"/svc/", "svc", "/", ""},
    {"/svc?x", "svc", "", "?x"},
    {"/svc?", "svc", "", "?"},
    {"/svc/?", "svc", "/", "?"},
    {"/svc/a/b/", "svc", "/a/b/", ""},
    {"/svc/a/b?x=1&y=/z?", "svc", "/a/b", "?x=1&y=/z?"},
    {"/", "", "", ""},
    {"/?x", "", "", "?x"},
    {"//x", "", "/x", ""},
    {"/svc//a", "svc", "//a", ""},
    {"/a%2Fb/c", "a%2Fb", "/c", ""},
    {"/_call/svc/op", "_call", "/svc/op", ""},
};

static void assert_view(const char *p, size_t n, const char *want, const char *what)
{
    ck_assert_msg(n == strlen(want) && memcmp(p, want, n) == 0, "%s: got '%.*s' want '%s'", what,
                  (int)n, p, want);
}

START_TEST(test_split_table)
{
    const struct split_case *c = &split_cases[_i];
    struct target_parts parts;
    memset(&parts, 0xa5, sizeof(parts));
    http_split_target(c->target, strlen(c->target), &parts);
    assert_view(parts.service, parts.service_len, c->service, "service");
    assert_view(parts.rest, parts.rest_len, c->rest, "rest");
    assert_view(parts.query, parts.query_len, c->query, "query");
    /* views point into the target */
    ck_assert(parts.service >= c->target && parts.query <= c->target + strlen(c->target));
}
END_TEST

/* ---- join -------------------------------------------------------------------- */

struct join_case {
    const char *base, *rest, *query, *want;
};

static const struct join_case join_cases[] = {
    {"", "", "", "/"},
    {"", "/", "", "/"},
    {"", "/x", "", "/x"},
    {"", "", "?a=1", "/?a=1"},
    {"", "", "?", "/?"},
    {"/api", "", "", "/api"},
    {"/api", "/", "", "/api/"},
    {"/api", "/x", "", "/api/x"},
    {"/api", "/x/", "", "/api/x/"},
    {"/api", "/x", "?", "/api/x?"},
    {"/api", "/x", "?a=1&b", "/api/x?a=1&b"},
    {"/api", "", "?q", "/api?q"},
    {"/api", "/", "?q", "/api/?q"},
    {"/api/", "", "", "/api/"},       /* rest "": the base path exactly */
    {"/api/", "/x", "", "/api/x"},     /* trailing '/' dropped before rest */
    {"/api/", "/", "", "/api/"},
    {"/api", "/a%2Fb/%2e%2e%2e", "?x=%20", "/api/a%2Fb/%2e%2e%2e?x=%20"},
    {"/api", "//x", "", "/api//x"},
    {"/a/b", "/c", "", "/a/b/c"},
};

START_TEST(test_join_table)
{
    const struct join_case *c = &join_cases[_i];
    char *got = http_join_path(c->base, c->rest, strlen(c->rest), c->query, strlen(c->query));
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(strcmp(got, c->want) == 0, "base '%s' rest '%s' query '%s': got '%s' want '%s'",
                  c->base, c->rest, c->query, got, c->want);
    free(got);
}
END_TEST

START_TEST(test_join_null_base_and_views)
{
    char *got = http_join_path(NULL, "", 0, "", 0);
    ck_assert_str_eq(got, "/");
    free(got);
    /* rest and query are views into a bigger buffer (lengths respected) */
    const char *target = "/svc/a/b?x=1";
    struct target_parts p;
    http_split_target(target, strlen(target), &p);
    got = http_join_path("/base", p.rest, p.rest_len, p.query, p.query_len);
    ck_assert_str_eq(got, "/base/a/b?x=1");
    free(got);
}
END_TEST

/* ---- tokens and values --------------------------------------------------------- */

START_TEST(test_is_token)
{
    ck_assert(http_is_token("GET", 3));
    ck_assert(http_is_token("Transfer-Encoding", 17));
    ck_assert(http_is_token("X-Custom_1", 10));
    ck_assert(http_is_token("!#$%&'*+-.^_`|~09azAZ", 21));
    ck_assert(http_is_token("get", 3));
    ck_assert(!http_is_token("", 0));
    ck_assert(!http_is_token(NULL, 0));
    ck_assert(!http_is_token("Transfer-Encoding ", 18));
    ck_assert(!http_is_token(" Host", 5));
    ck_assert(!http_is_token("A:B", 3));
    ck_assert(!http_is_token("A B", 3));
    ck_assert(!http_is_token("A\tB", 3));
    ck_assert(!http_is_token("A\"B", 3));
    ck_assert(!http_is_token("(A)", 3));
    ck_assert(!http_is_token("A,B", 3));
    ck_assert(!http_is_token("A/B", 3));
    ck_assert(!http_is_token("A;B", 3));
    ck_assert(!http_is_token("A=B", 3));
    ck_assert(!http_is_token("A@B", 3));
    ck_assert(!http_is_token("{}", 2));
    ck_assert(!http_is_token("A\\B", 3));
    ck_assert(!http_is_token("A[B]", 4));
    ck_assert(!http_is_token("A?", 2));
    ck_assert(!http_is_token("\xc3\xa9", 2));
    ck_assert(!http_is_token("A\x7f", 2));
    ck_assert(!http_is_token("A\0B", 3));
    ck_assert(http_is_token("ABC", 2)); /* len respected */
}
END_TEST

START_TEST(test_header_value_ok)
{
    ck_assert(http_header_value_ok("", 0));
    ck_assert(http_header_value_ok("chunked", 7));
    ck_assert(http_header_value_ok("a\tb", 3));
    ck_assert(http_header_value_ok("\t", 1));
    ck_assert(http_header_value_ok("a b  c", 6));
    ck_assert(http_header_value_ok("caf\xc3\xa9", 5)); /* obs-text */
    ck_assert(http_header_value_ok("\x80\xff", 2));
    ck_assert(http_header_value_ok("!\"#~", 4));
    ck_assert(!http_header_value_ok("a\rb", 3));
    ck_assert(!http_header_value_ok("a\r", 2));
    ck_assert(!http_header_value_ok("a\nb", 3));
    ck_assert(!http_header_value_ok("a\r\nb", 4));
    ck_assert(!http_header_value_ok("a\0b", 3));
    ck_assert(!http_header_value_ok("\x01", 1));
    ck_assert(!http_header_value_ok("\x1f", 1));
    ck_assert(!http_header_value_ok("a\x7f", 2));
    ck_assert(!http_header_value_ok("\x0b", 1));
}
END_TEST

/* ---- hop-by-hop ----------------------------------------------------------------- */

START_TEST(test_list_has_token)
{
    ck_assert(http_list_has_token("close", "close"));
    ck_assert(http_list_has_token("Close", "close"));
    ck_assert(http_list_has_token("keep-alive, X-Foo", "x-foo"));
    ck_assert(http_list_has_token("keep-alive,X-Foo", "X-FOO"));
    ck_assert(http_list_has_token("  a ,\tb\t, c  ", "b"));
    ck_assert(http_list_has_token("a,,b", "b"));
    ck_assert(http_list_has_token(", a", "a"));
    ck_assert(http_list_has_token("a ,", "a"));
    ck_assert(!http_list_has_token("X-Foo-Bar", "X-Foo"));
    ck_assert(!http_list_has_token("X-Foo", "X-Foo-Bar"));
    ck_assert(!http_list_has_token("aX-Foo", "X-Foo"));
    ck_assert(!http_list_has_token("", "a"));
    ck_assert(!http_list_has_token(NULL, "a"));
    ck_assert(!http_list_has_token("a", NULL));
    ck_assert(!http_list_has_token("a", ""));
    ck_assert(!http_list_has_token(" , ", ""));
}
END_TEST

/* The droppers against a Connection value given as text. */
static bool req_dropped(const char *name, const char *connection)
{
    struct http_tokens t;
    ck_assert_int_eq(http_tokens_split(&t, connection), 0);
    bool d = http_request_header_dropped(name, &t);
    http_tokens_free(&t);
    return d;
}

static bool resp_dropped(const char *name, const char *connection)
{
    struct http_tokens t;
    ck_assert_int_eq(http_tokens_split(&t, connection), 0);
    bool d = http_response_header_dropped(name, &t);
    http_tokens_free(&t);
    return d;
}

START_TEST(test_request_headers_dropped)
{
    static const char *const dropped[] = {
        "Connection", "connection", "Keep-Alive", "KEEP-ALIVE", "Proxy-Authorization",
        "proxy-connection", "Proxy-Authenticate", "TE", "te", "Trailer", "Transfer-Encoding",
        "transfer-encoding", "Upgrade", "Host", "host", "Content-Length", "content-length",
        "Expect", "X-Ahoyd-Timeout", "x-ahoyd-max-attempts", "X-AHOYD-Attempt", "HTTP2-Settings",
        "http2-settings",
    };
    static const char *const kept[] = {
        "Accept", "Content-Type", "Authorization", "X-Request-Id", "X-Forwarded-For",
        "Cookie", "Idempotency-Key", "Proxy", "X-Ahoyd", "X-Ahoydx", "Hosts", "TEs",
        "Trailers", "Content-Length2", "Transfer-Encoding-X", "Via",
    };
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        ck_assert_msg(http_request_header_dropped(dropped[i], NULL), "%s", dropped[i]);
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        ck_assert_msg(!http_request_header_dropped(kept[i], NULL), "%s", kept[i]);
    /* names listed in Connection */
    ck_assert(req_dropped("X-Secret", "close, x-secret"));
    ck_assert(req_dropped("x-secret", "X-Secret"));
    ck_assert(req_dropped("Cookie", "keep-alive,Cookie"));
    ck_assert(!req_dropped("X-Secret2", "close, x-secret"));
    ck_assert(!req_dropped("Accept", "close"));
}
END_TEST

START_TEST(test_response_headers_dropped)
{
    static const char *const dropped[] = {
        "Connection", "Keep-Alive", "Proxy-Authenticate", "proxy-foo", "TE", "Trailer",
        "Transfer-Encoding", "UPGRADE", "Content-Length", "content-length",
    };
    static const char *const kept[] = {
        "Content-Type", "Host", "Expect", "X-Ahoyd-Whatever", "Set-Cookie", "Retry-After",
        "Date", "ETag", "Location", "X-Request-Id",
    };
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        ck_assert_msg(http_response_header_dropped(dropped[i], NULL), "%s", dropped[i]);
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        ck_assert_msg(!http_response_header_dropped(kept[i], NULL), "%s", kept[i]);
    ck_assert(resp_dropped("X-Internal", "X-Internal, close"));
    ck_assert(resp_dropped("x-internal", " x-INTERNAL "));
    ck_assert(!resp_dropped("X-Internal", "close"));
}
END_TEST

START_TEST(test_origin_parse)
{
    static const struct {
        const char *origin, *host;
        int port; /* -1: refused */
    } cases[] = {
        {"http://127.0.0.1:9901", "127.0.0.1", 9901},
        {"http://localhost", "localhost", 80},
        {"HTTP://Localhost:1", "Localhost", 1},
        {"http://[::1]:8080", "::1", 8080},
        {"http://[::1]", "::1", 80},
        {"http://a.example:65535", "a.example", 65535},
        {"null", NULL, -1},
        {"", NULL, -1},
        {"https://127.0.0.1:9901", NULL, -1},
        {"http://", NULL, -1},
        {"http://:80", NULL, -1},
        {"http://127.0.0.1:", NULL, -1},
        {"http://127.0.0.1:65536", NULL, -1},
        {"http://127.0.0.1:99999999999999999999", NULL, -1},
        {"http://127.0.0.1:9x", NULL, -1},
        {"http://127.0.0.1/", NULL, -1},
        {"http://127.0.0.1:80/x", NULL, -1},
        {"http://u@127.0.0.1", NULL, -1},
        {"http://127.0.0.1 ", NULL, -1},
        {"http://[::1", NULL, -1},
        {"http://[::1]x", NULL, -1},
        {"http://a%41", NULL, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64];
        int port = -1;
        bool ok = http_origin_parse(cases[i].origin, host, sizeof(host), &port);
        ck_assert_msg(ok == (cases[i].port >= 0), "'%s': %d", cases[i].origin, ok);
        if (ok) {
            ck_assert_str_eq(host, cases[i].host);
            ck_assert_int_eq(port, cases[i].port);
        }
    }
    char small[4];
    int port;
    ck_assert(!http_origin_parse("http://abcd", small, sizeof(small), &port));
    ck_assert(http_origin_parse("http://abc", small, sizeof(small), &port));
    ck_assert(!http_origin_parse(NULL, small, sizeof(small), &port));
}
END_TEST

/* Connection tokens are split once and looked up by binary search: filtering 300
 * headers against an 8,000-token Connection value makes at most 300 * (log2(8000) + 1)
 * comparisons, where scanning the list for each header compared every token with every
 * header (2.4 million). Counting comparisons keeps this test independent of the
 * machine's speed and load. */
START_TEST(test_connection_tokens_split_once)
{
    struct strbuf list = {0};
    char name[32];
    size_t compares = 0;
    struct http_tokens t;

    for (int i = 0; i < 8000; i++) {
        snprintf(name, sizeof(name), "%sX-Tok-%d", i ? ", " : "", 7999 - i);
        strbuf_puts(&list, name);
    }
    strbuf_puts(&list, ",, \t,close ,Keep-Alive");
    ck_assert(!list.failed);
    ck_assert_int_eq(http_tokens_split(&t, list.s), 0);
    ck_assert_uint_eq(t.n, 8002);
    t.compares = &compares;
    for (int i = 0; i < 300; i++) {
        /* every other header is named in Connection, in another case */
        snprintf(name, sizeof(name), i % 2 ? "x-tok-%d" : "X-Kept-%d", i * 26);
        ck_assert_msg(http_request_header_dropped(name, &t) == (i % 2 == 1), "%s", name);
    }
    ck_assert(http_tokens_has(&t, "CLOSE", 5));
    ck_assert(http_tokens_has(&t, "x-tok-0", 7));
    ck_assert(http_tokens_has(&t, "X-TOK-7999", 10));
    ck_assert(!http_tokens_has(&t, "X-Tok-8000", 10));
    ck_assert(!http_tokens_has(&t, "X-Tok-", 6));
    ck_assert(!http_tokens_has(&t, "", 0));
    ck_assert_msg(compares <= 305 * 14, "%zu comparisons for 305 lookups in 8,002 tokens",
                  compares);
    http_tokens_free(&t);
    free(list.s);

    ck_assert_int_eq(http_tokens_split(&t, NULL), 0);
    ck_assert_uint_eq(t.n, 0);
    ck_assert(!http_tokens_has(&t, "a", 1));
    ck_assert(!http_tokens_has(NULL, "a", 1));
    http_tokens_free(&t);
    ck_assert_int_eq(http_tokens_split(&t, " , ,"), 0);
    ck_assert_uint_eq(t.n, 0);
    http_tokens_free(&t);
}
END_TEST

/* ---- request ids -------------------------------------------------------------- */

START_TEST(test_request_id_ok)
{
    char s[200];
    ck_assert(!http_request_id_ok(""));
    ck_assert(!http_request_id_ok(NULL));
    ck_assert(http_request_id_ok("a"));
    ck_assert(http_request_id_ok("!"));
    ck_assert(http_request_id_ok("~"));
    ck_assert(http_request_id_ok("abc-123_XYZ.{}\"\\"));
    memset(s, 'x', 128);
    s[128] = '\0';
    ck_assert(http_request_id_ok(s));
    memset(s, 'x', 129);
    s[129] = '\0';
    ck_assert(!http_request_id_ok(s));
    memset(s, 'x', 199);
    s[199] = '\0';
    ck_assert(!http_request_id_ok(s));
    ck_assert(!http_request_id_ok("a b"));
    ck_assert(!http_request_id_ok(" "));
    ck_assert(!http_request_id_ok("a\tb"));
    ck_assert(!http_request_id_ok("a\r\n"));
    ck_assert(!http_request_id_ok("caf\xc3\xa9"));
    ck_assert(!http_request_id_ok("\x7f"));
    ck_assert(!http_request_id_ok("\x80"));
}
END_TEST

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

START_TEST(test_request_id_new_format)
{
    uint64_t rng = 12345;
    char prev[37] = "";
    int distinct_nibbles[16] = {0};
    for (int n = 0; n < 2000; n++) {
        char id[37];
        memset(id, 'Z', sizeof(id));
        http_request_id_new(id, &rng);
        ck_assert_int_eq((int)strlen(id), 36);
        for (int i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                ck_assert_msg(id[i] == '-', "%s", id);
            else
                ck_assert_msg(is_lower_hex(id[i]), "%s", id);
        }
        ck_assert_msg(id[14] == '4', "version nibble: %s", id);
        ck_assert_msg(strchr("89ab", id[19]) != NULL, "variant: %s", id);
        ck_assert(http_request_id_ok(id));
        ck_assert_str_ne(id, prev);
        distinct_nibbles[id[0] <= '9' ? id[0] - '0' : id[0] - 'a' + 10]++;
        memcpy(prev, id, sizeof(prev));
    }
    for (int i = 0; i < 16; i++)
        ck_assert_int_gt(distinct_nibbles[i], 0); /* every first nibble shows up */
}
END_TEST

START_TEST(test_request_id_new_zero_state)
{
    uint64_t rng = 0;
    char a[37], b[37];
    http_request_id_new(a, &rng);
    http_request_id_new(b, &rng);
    ck_assert_str_ne(a, b);
    ck_assert(rng != 0);
    /* same state, same id: the generator is deterministic */
    uint64_t r1 = 99, r2 = 99;
    http_request_id_new(a, &r1);
    http_request_id_new(b, &r2);
    ck_assert_str_eq(a, b);
}
END_TEST

/* ---- error body --------------------------------------------------------------- */

START_TEST(test_error_body_exact)
{
    size_t len = 0;
    char *b = http_error_body("circuit_open", "circuit open for every endpoint", 503, "payments",
                              0, "abc-123", &len);
    ck_assert_str_eq(b, "{\"error\":{\"code\":\"circuit_open\",\"message\":\"circuit open for "
                        "every endpoint\",\"status\":503,\"service\":\"payments\",\"attempts\":0,"
                        "\"request_id\":\"abc-123\"}}");
    ck_assert_int_eq((int)len, (int)strlen(b));
    free(b);

    b = http_error_body("bad_request", "unsafe target", 400, NULL, 0, "r", &len);
    ck_assert_str_eq(b, "{\"error\":{\"code\":\"bad_request\",\"message\":\"unsafe target\","
                        "\"status\":400,\"service\":null,\"attempts\":0,\"request_id\":\"r\"}}");
    free(b);

    b = http_error_body("upstream_timeout", "x", 504, "s", 3, "id", NULL);
    ck_assert_str_eq(b, "{\"error\":{\"code\":\"upstream_timeout\",\"message\":\"x\","
                        "\"status\":504,\"service\":\"s\",\"attempts\":3,\"request_id\":\"id\"}}");
    free(b);
}
END_TEST

START_TEST(test_error_body_escaping)
{
    size_t len = 0;
    char *b = http_error_body("invalid_argument", "argument 'a\"b\\c': bad\n\t\x01\x7f", 400,
                              "svc", 0, "q\"", &len);
    ck_assert_str_eq(b, "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"argument "
                        "'a\\\"b\\\\c': bad\\n\\t\\u0001\\u007f\",\"status\":400,"
                        "\"service\":\"svc\",\"attempts\":0,\"request_id\":\"q\\\"\"}}");
    /* and it is valid JSON that reads back to the same strings */
    cJSON *j = cJSON_ParseWithLength(b, len);
    ck_assert_ptr_nonnull(j);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring,
                     "argument 'a\"b\\c': bad\n\t\x01\x7f");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "request_id")->valuestring, "q\"");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(e, "status")->valueint, 400);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "service")) == 0);
    cJSON_Delete(j);
    free(b);
}
END_TEST

/* ---- reasons and encoding ----------------------------------------------------- */

START_TEST(test_status_reason)
{
    ck_assert_str_eq(http_status_reason(200), "OK");
    ck_assert_str_eq(http_status_reason(204), "No Content");
    ck_assert_str_eq(http_status_reason(400), "Bad Request");
    ck_assert_str_eq(http_status_reason(401), "Unauthorized");
    ck_assert_str_eq(http_status_reason(404), "Not Found");
    ck_assert_str_eq(http_status_reason(405), "Method Not Allowed");
    ck_assert_str_eq(http_status_reason(408), "Request Timeout");
    ck_assert_str_eq(http_status_reason(413), "Content Too Large");
    ck_assert_str_eq(http_status_reason(422), "Unprocessable Content");
    ck_assert_str_eq(http_status_reason(429), "Too Many Requests");
    ck_assert_str_eq(http_status_reason(431), "Request Header Fields Too Large");
    ck_assert_str_eq(http_status_reason(499), "Client Closed Request");
    ck_assert_str_eq(http_status_reason(500), "Internal Server Error");
    ck_assert_str_eq(http_status_reason(501), "Not Implemented");
    ck_assert_str_eq(http_status_reason(502), "Bad Gateway");
    ck_assert_str_eq(http_status_reason(503), "Service Unavailable");
    ck_assert_str_eq(http_status_reason(504), "Gateway Timeout");
    ck_assert_str_eq(http_status_reason(799), "Unknown");
}
END_TEST

START_TEST(test_encode)
{
    struct {
        const char *in;
        size_t len;
        const char *want;
    } cases[] = {
        {"abcXYZ019-._~", 0, "abcXYZ019-._~"},
        {"a/b c", 0, "a%2Fb%20c"},
        {"", 0, ""},
        {"%", 0, "%25"},
        {"?#[]@!$&'()*+,;=:", 0, "%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%3A"},
        {"\xc3\xa9\xe2\x82\xac", 0, "%C3%A9%E2%82%AC"},
        {"\\\"<>{}|^`", 0, "%5C%22%3C%3E%7B%7D%7C%5E%60"},
        {"a\0b", 3, "a%00b"},
        {"\n\x7f\xff", 0, "%0A%7F%FF"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        char *s = http_encode_segment(cases[i].in, len);
        char *q = http_encode_query(cases[i].in, len);
        ck_assert_str_eq(s, cases[i].want);
        ck_assert_str_eq(q, cases[i].want);
        free(s);
        free(q);
    }
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("target");
    tcase_add_loop_test(tc, test_target_safety_table, 0,
                        (int)(sizeof(safety_cases) / sizeof(safety_cases[0])));
    tcase_add_test(tc, test_target_safety_why_optional);
    tcase_add_test(tc, test_target_len_respected);
    tcase_add_loop_test(tc, test_split_table, 0,
                        (int)(sizeof(split_cases) / sizeof(split_cases[0])));
    tcase_add_loop_test(tc, test_join_table, 0, (int)(sizeof(join_cases) / sizeof(join_cases[0])));
    tcase_add_test(tc, test_join_null_base_and_views);
    suite_add_tcase(s, tc);

    tc = tcase_create("headers");
    tcase_add_test(tc, test_is_token);
    tcase_add_test(tc, test_header_value_ok);
    tcase_add_test(tc, test_list_has_token);
    tcase_add_test(tc, test_request_headers_dropped);
    tcase_add_test(tc, test_response_headers_dropped);
    tcase_add_test(tc, test_connection_tokens_split_once);
    tcase_add_test(tc, test_origin_parse);
    tcase_add_test(tc, test_request_id_ok);
    tcase_add_test(tc, test_request_id_new_format);
    tcase_add_test(tc, test_request_id_new_zero_state);
    suite_add_tcase(s, tc);

    tc = tcase_create("bodies");
    tcase_add_test(tc, test_error_body_exact);
    tcase_add_test(tc, test_error_body_escaping);
    tcase_add_test(tc, test_status_reason);
    tcase_add_test(tc, test_encode);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
