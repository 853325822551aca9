/*
 * check_route.c - unit tests for src/route.c: method template validation
 * (for config.c), compiling and matching declared methods against raw paths
 * (SPEC 3.1), and building named calls from JSON arguments (3.2).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "template.h"

/* ---- template validation ------------------------------------------------------- */

struct template_case {
    const char *spec;
    bool valid;
};

static const struct template_case template_cases[] = {
    {"GET /payments/{payment_id}", true},
    {"GET /payments", true},
    {"POST /payments", true},
    {"GET /", true},
    {"GET /a/", true},
    {"GET /a/{b}/", true},
    {"GET /{a}/{b}/{c}", true},
    {"GET /{_x9}", true},
    {"GET /{A_b}", true},
    {"PURGE /cache/{key}", true},
    {"M-SEARCH /x", true},
    {"get /x", true},
    {"GET  /x", true},
    {"GET /a//b", true},
    {"GET /a%2Fb", true},
    {"GET /v1:batch/@me/~x/a.b-c_d!$&'()*+,;=", true},
    {"GET /...", true},
    {"GET /.well-known/x", true},
    {"", false},
    {"GET", false},
    {"GET ", false},
    {"/payments", false},
    {" GET /x", false},
    {"GET x", false},
    {"GET /x ", false},
    {"GET /a b", false},
    {"GET /a\tb", false},
    {"G(T /x", false},
    {"GET\t/x", false},
    {"GET /x?y=1", false},
    {"GET /x?", false},
    {"GET /x#frag", false},
    {"GET /{", false},
    {"GET /}", false},
    {"GET /{a", false},
    {"GET /a}", false},
    {"GET /{}", false},
    {"GET /{a}}", false},
    {"GET /{{a}}", false},
    {"GET /{a{b}}", false},
    {"GET /{a}b", false},
    {"GET /a{b}", false},
    {"GET /x-{id}.json", false},
    {"GET /{a}{b}", false},
    {"GET /{1a}", false},
    {"GET /{a-b}", false},
    {"GET /{a.b}", false},
    {"GET /{ a }", false},
    {"GET /{a}/{a}", false},
    {"GET /.", false},
    {"GET /..", false},
    {"GET /a/../b", false},
    {"GET /a/./b", false},
    {"GET /a%zz", false},
    {"GET /a%2", false},
    {"GET /a%", false},
    {"GET /caf\xc3\xa9", false},
    {"GET /a\\b", false},
    {"GET /a\"b", false},
    {"GET /a<b>", false},
    {"GET /a|b", false},
};

START_TEST(test_template_valid_table)
{
    const struct template_case *c = &template_cases[_i];
    const char *why = NULL;
    bool ok = template_valid(c->spec, &why);
    ck_assert_msg(ok == c->valid, "'%s': got %s", c->spec, ok ? "valid" : why);
    if (!ok)
        ck_assert_msg(why != NULL && why[0] != '\0', "'%s' has no reason", c->spec);
}
END_TEST

START_TEST(test_template_valid_messages)
{
    const char *why = NULL;
    ck_assert(!template_valid("GET /x-{id}", &why));
    ck_assert_str_eq(why, "a {placeholder} must fill a whole path segment");
    ck_assert(!template_valid("GET /{id", &why));
    ck_assert_str_eq(why, "unbalanced '{' in path");
    ck_assert(!template_valid("GET /x?a", &why));
    ck_assert_str_eq(why, "no '?' or '#' allowed in a method path");
    ck_assert(!template_valid("GET x", &why));
    ck_assert_str_eq(why, "path must start with '/'");
    ck_assert(!template_valid("GET /{a}/{a}", &why));
    ck_assert_str_eq(why, "placeholder name used twice in path");
    ck_assert(!template_valid(NULL, &why));
    ck_assert(!template_valid("GET /{", NULL));
    ck_assert(template_valid("GET /", NULL));
}
END_TEST

/* ---- a service with methods --------------------------------------------------------- */

#define M(n, v, p) {(char *)(n), (char *)(v), (char *)(p), "test.yaml", 1, 1}

static struct method_conf payments_methods[] = {
    M("get_payment", "GET", "/payments/{payment_id}"),
    M("list_payments", "GET", "/payments"),
    M("create_payment", "POST", "/payments"),
    M("update_payment", "PUT", "/payments/{payment_id}"),
    M("delete_payment", "DELETE", "/payments/{payment_id}"),
    M("search", "GET", "/payments/search"),
    M("dir", "GET", "/dir/"),
    M("root", "OPTIONS", "/"),
    M("refund", "POST", "/payments/{payment_id}/refunds/{refund_id}"),
    M("patch_item", "PATCH", "/items/{id}"),
    M("purge", "PURGE", "/cache/{key}"),
    M("head_only", "HEAD", "/h"),
    M("empty_seg", "GET", "/e//x"),
    M("body_param", "POST", "/b/{body}"),
    M("put_items", "PUT", "/items"),
    M("head_q", "HEAD", "/hq"),
    M("opt_q", "OPTIONS", "/oq"),
    M("del_q", "DELETE", "/dq"),
};

static struct service_conf payments_svc;
static struct route_table table;

static void setup(void)
{
    memset(&payments_svc, 0, sizeof(payments_svc));
    payments_svc.name = (char *)"payments";
    payments_svc.methods = payments_methods;
    payments_svc.n_methods = sizeof(payments_methods) / sizeof(payments_methods[0]);
    char *err = NULL;
    ck_assert_int_eq(route_table_build(&payments_svc, &table, &err), 0);
    ck_assert_ptr_null(err);
}

static void teardown(void)
{
    route_table_free(&table);
}

START_TEST(test_build_compiles_segments)
{
    ck_assert_int_eq((int)table.n_methods, (int)payments_svc.n_methods);
    const struct route_method *m = route_find_operation(&table, "refund");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq((int)m->n_segments, 4);
    ck_assert_str_eq(m->segments[0].literal, "payments");
    ck_assert_ptr_null(m->segments[0].param);
    ck_assert_str_eq(m->segments[1].param, "payment_id");
    ck_assert_ptr_null(m->segments[1].literal);
    ck_assert_str_eq(m->segments[2].literal, "refunds");
    ck_assert_str_eq(m->segments[3].param, "refund_id");
    ck_assert(!m->trailing_slash);
    m = route_find_operation(&table, "dir");
    ck_assert_int_eq((int)m->n_segments, 1);
    ck_assert(m->trailing_slash);
    m = route_find_operation(&table, "root");
    ck_assert_int_eq((int)m->n_segments, 0);
    ck_assert(m->trailing_slash);
    m = route_find_operation(&table, "empty_seg");
    ck_assert_int_eq((int)m->n_segments, 3);
    ck_assert_str_eq(m->segments[1].literal, "");
    ck_assert_ptr_eq(route_find_operation(&table, "get_payment")->conf, &payments_methods[0]);
    ck_assert_ptr_null(route_find_operation(&table, "GET_PAYMENT"));
    ck_assert_ptr_null(route_find_operation(&table, "nope"));
    ck_assert_ptr_null(route_find_operation(&table, NULL));
}
END_TEST

START_TEST(test_build_rejects_bad_template)
{
    struct method_conf bad[] = {M("ok", "GET", "/a"), M("broken", "GET", "/a/{b")};
    struct service_conf svc;
    memset(&svc, 0, sizeof(svc));
    svc.name = (char *)"s";
    svc.methods = bad;
    svc.n_methods = 2;
    struct route_table t;
    char *err = NULL;
    ck_assert_int_eq(route_table_build(&svc, &t, &err), -1);
    ck_assert_str_eq(err, "method 'broken': unbalanced '{' in path");
    ck_assert_ptr_null(t.methods);
    ck_assert_int_eq((int)t.n_methods, 0);
    free(err);

    struct method_conf bad_verb[] = {M("v", "G T", "/a")};
    svc.methods = bad_verb;
    svc.n_methods = 1;
    ck_assert_int_eq(route_table_build(&svc, &t, &err), -1);
    ck_assert_str_eq(err, "method 'v': method must be 'VERB /path' with VERB an HTTP token");
    free(err);

    /* no methods: an empty table, which forwards everything (the caller's rule) */
    svc.n_methods = 0;
    svc.methods = NULL;
    ck_assert_int_eq(route_table_build(&svc, &t, &err), 0);
    ck_assert_int_eq((int)t.n_methods, 0);
    route_table_free(&t);
}
END_TEST

/* ---- matching ------------------------------------------------------------------- */

struct match_case {
    const char *verb, *rest;
    enum route_match want;
    const char *operation; /* ROUTE_OK: the method matched */
    const char *allow;     /* ROUTE_NO_METHOD: the Allow list */
};

static const struct match_case match_cases[] = {
    {"GET", "/payments/p1", ROUTE_OK, "get_payment", NULL},
    {"GET", "/payments/a%2Fb", ROUTE_OK, "get_payment", NULL},
    {"GET", "/payments/%2e%2e%2e", ROUTE_OK, "get_payment", NULL},
    {"GET", "/payments", ROUTE_OK, "list_payments", NULL},
    {"GET", "/payments/search", ROUTE_OK, "search", NULL},
    {"HEAD", "/payments/search", ROUTE_OK, "search", NULL},
    {"POST", "/payments", ROUTE_OK, "create_payment", NULL},
    {"PUT", "/payments/p1", ROUTE_OK, "update_payment", NULL},
    {"DELETE", "/payments/p1", ROUTE_OK, "delete_payment", NULL},
    {"HEAD", "/payments/p1", ROUTE_OK, "get_payment", NULL},
    {"HEAD", "/payments", ROUTE_OK, "list_payments", NULL},
    {"HEAD", "/h", ROUTE_OK, "head_only", NULL},
    {"POST", "/payments/p1/refunds/r9", ROUTE_OK, "refund", NULL},
    {"GET", "/dir/", ROUTE_OK, "dir", NULL},
    {"OPTIONS", "/", ROUTE_OK, "root", NULL},
    {"OPTIONS", "", ROUTE_OK, "root", NULL}, /* rest "" matches as "/" */
    {"PURGE", "/cache/k", ROUTE_OK, "purge", NULL},
    {"GET", "/e//x", ROUTE_OK, "empty_seg", NULL},
    /* trailing slash significant, placeholders need a non-empty segment */
    {"GET", "/payments/", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/payments/p1/", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/dir", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/payments//refunds/r", ROUTE_NO_ROUTE, NULL, NULL},
    {"POST", "/payments/p1/refunds/", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/payments/p1/extra", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/Payments", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/payment", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/paymentsx", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/nothing", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/e/x", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "//payments", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "/payments%2Fp1", ROUTE_NO_ROUTE, NULL, NULL},
    {"GET", "", ROUTE_NO_METHOD, NULL, "OPTIONS"},
    /* path known under other verbs: 405 with a sorted, unique Allow list */
    {"PATCH", "/payments/p1", ROUTE_NO_METHOD, NULL, "DELETE, GET, HEAD, PUT"},
    {"POST", "/payments/search", ROUTE_NO_METHOD, NULL, "DELETE, GET, HEAD, PUT"},
    {"DELETE", "/payments", ROUTE_NO_METHOD, NULL, "GET, HEAD, POST"},
    {"get", "/payments", ROUTE_NO_METHOD, NULL, "GET, HEAD, POST"},
    {"GET", "/h", ROUTE_NO_METHOD, NULL, "HEAD"},
    {"GET", "/payments/p1/refunds/r9", ROUTE_NO_METHOD, NULL, "POST"},
    {"GET", "/items/1", ROUTE_NO_METHOD, NULL, "PATCH"},
    {"POST", "/dir/", ROUTE_NO_METHOD, NULL, "GET, HEAD"},
};

START_TEST(test_match_table)
{
    const struct match_case *c = &match_cases[_i];
    const struct route_method *m = (const struct route_method *)1;
    char *allow = (char *)1;
    enum route_match r =
        route_match(&table, c->verb, c->rest, strlen(c->rest), &m, &allow);
    ck_assert_msg(r == c->want, "%s '%s': got %d want %d", c->verb, c->rest, r, c->want);
    if (c->want == ROUTE_OK) {
        ck_assert_ptr_nonnull(m);
        ck_assert_str_eq(m->conf->name, c->operation);
        ck_assert_ptr_null(allow);
    } else if (c->want == ROUTE_NO_METHOD) {
        ck_assert_ptr_null(m);
        ck_assert_ptr_nonnull(allow);
        ck_assert_str_eq(allow, c->allow);
    } else {
        ck_assert_ptr_null(m);
        ck_assert_ptr_null(allow);
    }
    free(allow);
}
END_TEST

START_TEST(test_match_views_and_empty_table)
{
    /* rest is a view: bytes after rest_len are ignored */
    const char *target = "/payments/p1?x=1";
    const struct route_method *m = NULL;
    char *allow = NULL;
    ck_assert_int_eq(route_match(&table, "GET", target, 12, &m, &allow), ROUTE_OK);
    ck_assert_str_eq(m->conf->name, "get_payment");
    struct route_table empty = {NULL, 0};
    ck_assert_int_eq(route_match(&empty, "GET", "/x", 2, &m, &allow), ROUTE_NO_ROUTE);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(route_match(&table, "PATCH", "/payments/1", 11, NULL, NULL),
                     ROUTE_NO_METHOD);
}
END_TEST

/* ---- named calls ----------------------------------------------------------------- */

struct call_case {
    const char *operation;
    const char *json;      /* NULL = empty body */
    int status;            /* 0 = built */
    const char *path_query; /* or the error code */
    const char *body;      /* NULL = no body; or the error message */
};

static const struct call_case call_cases[] = {
    /* placeholders: every scalar type, encoding as one segment */
    {"get_payment", "{\"payment_id\":\"p1\"}", 0, "/payments/p1", NULL},
    {"get_payment", "{\"payment_id\":\"a/b c\"}", 0, "/payments/a%2Fb%20c", NULL},
    {"get_payment", "{\"payment_id\":42}", 0, "/payments/42", NULL},
    {"get_payment", "{\"payment_id\":-7}", 0, "/payments/-7", NULL},
    {"get_payment", "{\"payment_id\":1.5}", 0, "/payments/1.5", NULL},
    {"get_payment", "{\"payment_id\":0.1}", 0, "/payments/0.1", NULL},
    {"get_payment", "{\"payment_id\":1e3}", 0, "/payments/1000", NULL},
    {"get_payment", "{\"payment_id\":3.0}", 0, "/payments/3", NULL},
    {"get_payment", "{\"payment_id\":9007199254740991}", 0, "/payments/9007199254740991", NULL},
    {"get_payment", "{\"payment_id\":-9007199254740991}", 0, "/payments/-9007199254740991",
     NULL},
    {"get_payment", "{\"payment_id\":true}", 0, "/payments/true", NULL},
    {"get_payment", "{\"payment_id\":false}", 0, "/payments/false", NULL},
    {"get_payment", "{\"payment_id\":\"caf\xc3\xa9 \\u20ac\"}", 0,
     "/payments/caf%C3%A9%20%E2%82%AC", NULL},
    {"get_payment", "{\"payment_id\":\"?#[]@!$&'()*+,;=:%~._-\"}", 0,
     "/payments/%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%3A%25~._-", NULL},
    {"get_payment", "{\"payment_id\":\"...\"}", 0, "/payments/...", NULL},
    {"get_payment", "{\"payment_id\":\".a\"}", 0, "/payments/.a", NULL},
    {"get_payment", "{\"payment_id\":\"a;..\"}", 0, "/payments/a%3B..", NULL},
    {"refund", "{\"refund_id\":\"r\",\"payment_id\":\"p\"}", 0, "/payments/p/refunds/r", NULL},
    {"dir", "{}", 0, "/dir/", NULL},
    {"root", NULL, 0, "/", NULL},
    {"root", "{\"a\":1}", 0, "/?a=1", NULL},
    /* placeholder errors */
    {"get_payment", "{}", 400, "missing_argument",
     "missing argument 'payment_id' for {payment_id} in the path"},
    {"get_payment", NULL, 400, "missing_argument",
     "missing argument 'payment_id' for {payment_id} in the path"},
    {"get_payment", "{\"Payment_Id\":\"x\"}", 400, "missing_argument",
     "missing argument 'payment_id' for {payment_id} in the path"},
    {"refund", "{\"payment_id\":\"p\"}", 400, "missing_argument",
     "missing argument 'refund_id' for {refund_id} in the path"},
    {"get_payment", "{\"payment_id\":\"\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not be empty, '.' or '..'"},
    {"get_payment", "{\"payment_id\":\".\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not be empty, '.' or '..'"},
    {"get_payment", "{\"payment_id\":\"..\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not be empty, '.' or '..'"},
    {"get_payment", "{\"payment_id\":\"../../admin\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not hold '.' or '..' between '/' or '\\', or "
     "control characters"},
    {"get_payment", "{\"payment_id\":\"..\\\\x\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not hold '.' or '..' between '/' or '\\', or "
     "control characters"},
    /* '..' once its ';' parameters are dropped, as a client's raw target */
    {"get_payment", "{\"payment_id\":\"..;x\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not hold '.' or '..' between '/' or '\\', or "
     "control characters"},
    {"get_payment", "{\"payment_id\":\".;a\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not hold '.' or '..' between '/' or '\\', or "
     "control characters"},
    {"get_payment", "{\"payment_id\":\"a\\nb\"}", 400, "invalid_argument",
     "argument 'payment_id': a path value may not hold '.' or '..' between '/' or '\\', or "
     "control characters"},
    {"get_payment", "{\"payment_id\":null}", 400, "invalid_argument",
     "argument 'payment_id': a path value must be a string, number or boolean"},
    {"get_payment", "{\"payment_id\":{}}", 400, "invalid_argument",
     "argument 'payment_id': a path value must be a string, number or boolean"},
    {"get_payment", "{\"payment_id\":[1]}", 400, "invalid_argument",
     "argument 'payment_id': a path value must be a string, number or boolean"},
    {"get_payment", "{\"payment_id\":9007199254740992}", 400, "invalid_argument",
     "argument 'payment_id': integers beyond +-2^53 lose digits; send it as a string"},
    {"get_payment", "{\"payment_id\":9007199254740993}", 400, "invalid_argument",
     "argument 'payment_id': integers beyond +-2^53 lose digits; send it as a string"},
    {"get_payment", "{\"payment_id\":-9007199254740993}", 400, "invalid_argument",
     "argument 'payment_id': integers beyond +-2^53 lose digits; send it as a string"},
    {"get_payment", "{\"payment_id\":1e300}", 400, "invalid_argument",
     "argument 'payment_id': integers beyond +-2^53 lose digits; send it as a string"},
    {"get_payment", "{\"payment_id\":1e999}", 400, "invalid_argument",
     "argument 'payment_id': number out of range"},
    /* GET leftovers: the query string in argument order */
    {"list_payments", "{\"z\":1,\"a\":\"x y\",\"m\":true}", 0, "/payments?z=1&a=x%20y&m=true",
     NULL},
    {"list_payments", "{\"b\":2,\"a\":1}", 0, "/payments?b=2&a=1", NULL},
    {"list_payments", "{\"n\":null}", 0, "/payments", NULL},
    {"list_payments", "{\"n\":null,\"x\":false}", 0, "/payments?x=false", NULL},
    {"list_payments", "{\"tag\":[\"a\",2,true,null,\"b&c\"]}", 0,
     "/payments?tag=a&tag=2&tag=true&tag=b%26c", NULL},
    {"list_payments", "{\"tag\":[]}", 0, "/payments", NULL},
    {"list_payments", "{\"tag\":[null]}", 0, "/payments", NULL},
    {"list_payments", "{\"a b\":\"c=d&e\"}", 0, "/payments?a%20b=c%3Dd%26e", NULL},
    {"list_payments", "{\"e\":\"\"}", 0, "/payments?e=", NULL},
    {"list_payments", "{\"u\":\"\xc3\xa9\"}", 0, "/payments?u=%C3%A9", NULL},
    {"list_payments", "{\"f\":-0.25,\"g\":1e-7,\"h\":123456789.125}", 0,
     "/payments?f=-0.25&g=1e-07&h=123456789.125", NULL},
    {"list_payments", "{\"big\":\"9007199254740993\"}", 0, "/payments?big=9007199254740993",
     NULL},
    {"list_payments", "{\"body\":\"x\"}", 0, "/payments?body=x", NULL},
    {"get_payment", "{\"payment_id\":\"p\",\"expand\":\"all\"}", 0, "/payments/p?expand=all",
     NULL},
    {"get_payment", "{\"expand\":\"all\",\"payment_id\":\"p\",\"v\":2}", 0,
     "/payments/p?expand=all&v=2", NULL},
    {"delete_payment", "{\"payment_id\":\"p\",\"body\":{\"a\":1}}", 400, "invalid_argument",
     "argument 'body': objects cannot be sent in the query string"},
    {"delete_payment", "{\"payment_id\":\"p\",\"force\":true}", 0, "/payments/p?force=true",
     NULL},
    {"head_q", "{\"a\":1}", 0, "/hq?a=1", NULL},
    {"opt_q", "{\"a\":1}", 0, "/oq?a=1", NULL},
    {"del_q", "{\"a\":1}", 0, "/dq?a=1", NULL},
    {"purge", "{\"key\":\"k\",\"body\":\"b\"}", 0, "/cache/k?body=b", NULL},
    /* query errors */
    {"list_payments", "{\"o\":{\"a\":1}}", 400, "invalid_argument",
     "argument 'o': objects cannot be sent in the query string"},
    {"list_payments", "{\"o\":{}}", 400, "invalid_argument",
     "argument 'o': objects cannot be sent in the query string"},
    {"list_payments", "{\"arr\":[1,[2]]}", 400, "invalid_argument",
     "argument 'arr': array elements must be strings, numbers, booleans or null"},
    {"list_payments", "{\"arr\":[{}]}", 400, "invalid_argument",
     "argument 'arr': array elements must be strings, numbers, booleans or null"},
    {"list_payments", "{\"id\":12345678901234567890}", 400, "invalid_argument",
     "argument 'id': integers beyond +-2^53 lose digits; send it as a string"},
    {"list_payments", "{\"ids\":[1,9007199254740993]}", 400, "invalid_argument",
     "argument 'ids': integers beyond +-2^53 lose digits; send it as a string"},
    /* POST / PUT / PATCH: body argument is the JSON body */
    {"create_payment", "{\"body\":{\"amount\":10,\"currency\":\"EUR\"}}", 0, "/payments",
     "{\"amount\":10,\"currency\":\"EUR\"}"},
    {"create_payment", "{\"body\":{\"a\" : [1, 2.5, null, true, \"x\"]} }", 0, "/payments",
     "{\"a\":[1,2.5,null,true,\"x\"]}"},
    {"create_payment", "{\"body\":[1,2]}", 0, "/payments", "[1,2]"},
    {"create_payment", "{\"body\":\"text\"}", 0, "/payments", "\"text\""},
    {"create_payment", "{\"body\":7}", 0, "/payments", "7"},
    {"create_payment", "{\"body\":null}", 0, "/payments", "null"},
    {"create_payment", "{\"body\":{}}", 0, "/payments", "{}"},
    {"create_payment", "{}", 0, "/payments", NULL},
    {"create_payment", NULL, 0, "/payments", NULL},
    {"create_payment", "{\"dry_run\":true,\"body\":{\"x\":1},\"v\":\"2\"}", 0,
     "/payments?dry_run=true&v=2", "{\"x\":1}"},
    {"create_payment", "{\"Body\":{\"x\":1}}", 400, "invalid_argument",
     "argument 'Body': objects cannot be sent in the query string"},
    {"create_payment", "{\"body\":{\"n\":9007199254740993}}", 400, "invalid_argument",
     "argument 'body': integers beyond +-2^53 lose digits; send it as a string"},
    {"create_payment", "{\"body\":{\"s\":\"caf\xc3\xa9\"}}", 0, "/payments",
     "{\"s\":\"caf\xc3\xa9\"}"},
    {"update_payment", "{\"payment_id\":\"p\",\"body\":{\"s\":\"ok\"}}", 0, "/payments/p",
     "{\"s\":\"ok\"}"},
    {"update_payment", "{\"body\":{\"s\":\"ok\"}}", 400, "missing_argument",
     "missing argument 'payment_id' for {payment_id} in the path"},
    {"patch_item", "{\"id\":5,\"body\":{\"op\":\"x\"}}", 0, "/items/5", "{\"op\":\"x\"}"},
    {"put_items", "{\"body\":[]}", 0, "/items", "[]"},
    {"body_param", "{\"body\":\"b1\"}", 0, "/b/b1", NULL},
    /* not a JSON object, duplicate names */
    {"list_payments", "[]", 400, "invalid_json", "the arguments must be a JSON object"},
    {"list_payments", "\"x\"", 400, "invalid_json", "the arguments must be a JSON object"},
    {"list_payments", "null", 400, "invalid_json", "the arguments must be a JSON object"},
    {"list_payments", "1", 400, "invalid_json", "the arguments must be a JSON object"},
    {"list_payments", "{", 400, "invalid_json", "the arguments are not valid JSON"},
    {"list_payments", "{\"a\":}", 400, "invalid_json", "the arguments are not valid JSON"},
    {"list_payments", "{} x", 400, "invalid_json", "the arguments are not valid JSON"},
    {"list_payments", "{}{}", 400, "invalid_json", "the arguments are not valid JSON"},
    {"list_payments", " ", 400, "invalid_json", "the arguments are not valid JSON"},
    {"list_payments", "{'a':1}", 400, "invalid_json", "the arguments are not valid JSON"},
    {"list_payments", "{\"a\":\"x\ny\"}", 400, "invalid_json",
     "control character inside a JSON string"},
    {"list_payments", "{\"a\":\"x\\u0000y\"}", 400, "invalid_argument",
     "strings containing \\u0000 are not supported"},
    {"list_payments", "{\"a\":1,\"a\":2}", 400, "invalid_json", "duplicate argument 'a'"},
    {"list_payments", "{\"a\":1,\"b\":2,\"c\":3,\"b\":4}", 400, "invalid_json",
     "duplicate argument 'b'"},
    {"get_payment", "{\"payment_id\":\"x\",\"payment_id\":\"y\"}", 400, "invalid_json",
     "duplicate argument 'payment_id'"},
    {"list_payments", "{\"a\":1,\"A\":2}", 0, "/payments?a=1&A=2", NULL},
    {"list_payments", " \r\n\t{\"a\":{\"b\":1,\"b\":2}}\n ", 400, "invalid_argument",
     "argument 'a': objects cannot be sent in the query string"},
    {"create_payment", "{\"body\":{\"b\":1,\"b\":2}}", 0, "/payments", "{\"b\":1,\"b\":2}"},
    {"list_payments", "{\"a\":\"\\\\u0000\"}", 0, "/payments?a=%5Cu0000", NULL},
};

START_TEST(test_named_call_table)
{
    const struct call_case *c = &call_cases[_i];
    const struct route_method *m = route_find_operation(&table, c->operation);
    ck_assert_msg(m != NULL, "%s", c->operation);
    struct named_request req;
    memset(&req, 0x5a, sizeof(req));
    const char *code = (const char *)1;
    char *message = (char *)1;
    size_t len = c->json != NULL ? strlen(c->json) : 0;
    int rc = route_build_named_call(m, c->json, len, &req, &code, &message);
    if (c->status == 0) {
        ck_assert_msg(rc == 0, "#%d %s %s: %d %s %s", _i, c->operation, c->json, rc,
                      rc ? code : "", rc ? message : "");
        ck_assert_ptr_null(code);
        ck_assert_ptr_null(message);
        ck_assert_str_eq(req.method, m->conf->verb);
        ck_assert_str_eq(req.path_query, c->path_query);
        if (c->body == NULL) {
            ck_assert_ptr_null(req.body);
            ck_assert_int_eq((int)req.body_len, 0);
        } else {
            ck_assert_ptr_nonnull(req.body);
            ck_assert_int_eq((int)req.body_len, (int)strlen(c->body));
            ck_assert_str_eq(req.body, c->body);
        }
        named_request_free(&req);
        ck_assert_ptr_null(req.method);
        named_request_free(&req); /* twice is harmless */
    } else {
        ck_assert_msg(rc == c->status, "#%d %s %s: got %d", _i, c->operation, c->json, rc);
        ck_assert_str_eq(code, c->path_query);
        ck_assert_ptr_nonnull(message);
        ck_assert_str_eq(message, c->body);
        ck_assert_ptr_null(req.method);
        ck_assert_ptr_null(req.path_query);
        ck_assert_ptr_null(req.body);
        free(message);
    }
}
END_TEST

START_TEST(test_named_call_length_respected)
{
    /* only len bytes are JSON: what follows in memory is not read */
    const char *json = "{\"a\":1}garbage";
    const struct route_method *m = route_find_operation(&table, "list_payments");
    struct named_request req;
    const char *code = NULL;
    char *message = NULL;
    ck_assert_int_eq(route_build_named_call(m, json, 7, &req, &code, &message), 0);
    ck_assert_str_eq(req.path_query, "/payments?a=1");
    named_request_free(&req);
    /* an embedded NUL ends nothing: the bytes after it are garbage */
    ck_assert_int_eq(route_build_named_call(m, "{}\0{}", 5, &req, &code, &message), 400);
    ck_assert_str_eq(code, "invalid_json");
    free(message);
}
END_TEST

START_TEST(test_named_call_many_arguments)
{
    /* a big object: order kept, duplicates found (sorting, not quadratic) */
    const struct route_method *m = route_find_operation(&table, "list_payments");
    char *json = malloc(20000 * 16);
    size_t o = 0;
    json[o++] = '{';
    for (int i = 0; i < 20000; i++)
        o += (size_t)sprintf(json + o, "%s\"k%d\":%d", i ? "," : "", i, i);
    json[o++] = '}';
    struct named_request req;
    const char *code = NULL;
    char *message = NULL;
    ck_assert_int_eq(route_build_named_call(m, json, o, &req, &code, &message), 0);
    ck_assert(strncmp(req.path_query, "/payments?k0=0&k1=1&k2=2&", 25) == 0);
    ck_assert(strstr(req.path_query, "&k19999=19999") != NULL);
    named_request_free(&req);
    o--; /* replace the closing brace: add a duplicate of k777 */
    o += (size_t)sprintf(json + o, ",\"k777\":0}");
    ck_assert_int_eq(route_build_named_call(m, json, o, &req, &code, &message), 400);
    ck_assert_str_eq(code, "invalid_json");
    ck_assert_str_eq(message, "duplicate argument 'k777'");
    free(message);
    free(json);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("templates");
    tcase_add_loop_test(tc, test_template_valid_table, 0,
                        (int)(sizeof(template_cases) / sizeof(template_cases[0])));
    tcase_add_test(tc, test_template_valid_messages);
    tcase_add_test(tc, test_build_rejects_bad_template);
    suite_add_tcase(s, tc);

    tc = tcase_create("match");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_build_compiles_segments);
    tcase_add_loop_test(tc, test_match_table, 0,
                        (int)(sizeof(match_cases) / sizeof(match_cases[0])));
    tcase_add_test(tc, test_match_views_and_empty_table);
    suite_add_tcase(s, tc);

    tc = tcase_create("named");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_named_call_table, 0,
                        (int)(sizeof(call_cases) / sizeof(call_cases[0])));
    tcase_add_test(tc, test_named_call_length_respected);
    tcase_add_test(tc, test_named_call_many_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(route_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
