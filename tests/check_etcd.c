/*
 * check_etcd.c - unit tests of src/etcd_parse.c and src/etcd_stream.c
 * (SPEC 4.6): base64 and range_end, the request bodies, range answers, watch
 * messages (put, delete, compaction, cancel, errors), the endpoint value,
 * the line splitter fed in arbitrary pieces, the keyed endpoint set and the
 * range/watch/resume state machine.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_stream.h"

/* Gateway-shaped JSON of one kv, with key and value base64'd here. */
static char *kv_json(const char *key, const char *value, int mod_revision)
{
    static char out[4][1024];
    static int slot;
    char k[256], v[512];
    char *o = out[slot++ % 4];

    etcd_base64_encode(key, strlen(key), k, sizeof(k));
    etcd_base64_encode(value, strlen(value), v, sizeof(v));
    snprintf(o, 1024,
             "{\"key\":\"%s\",\"create_revision\":\"2\",\"mod_revision\":\"%d\","
             "\"version\":\"1\",\"value\":\"%s\"}",
             k, mod_revision, v);
    return o;
}

#define HEADER(rev)                                                                                \
    "\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":"                           \
    "\"10276657743932975437\",\"revision\":\"" #rev "\",\"raft_term\":\"2\"}"

/* ---- base64, range_end, bodies ---- */

START_TEST(test_base64_vectors)
{
    char out[64];
    unsigned char back[64];

    ck_assert_uint_eq(etcd_base64_encode("foo", 3, out, sizeof(out)), 4);
    ck_assert_str_eq(out, "Zm9v");
    etcd_base64_encode("fo", 2, out, sizeof(out));
    ck_assert_str_eq(out, "Zm8=");
    etcd_base64_encode("f", 1, out, sizeof(out));
    ck_assert_str_eq(out, "Zg==");
    ck_assert_uint_eq(etcd_base64_encode("", 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(etcd_base64_encode("foo", 3, out, 4), 4); /* no room for the NUL */
    etcd_base64_encode("/services/orders/", 17, out, sizeof(out));
    ck_assert_str_eq(out, "L3NlcnZpY2VzL29yZGVycy8=");
    ck_assert_int_eq(etcd_base64_decode("Zm8=", 4, back), 2);
    ck_assert_str_eq((char *)back, "fo");
    ck_assert_int_eq(etcd_base64_decode("Zm8", 3, back), 2); /* padding optional */
    ck_assert_int_eq(etcd_base64_decode("Zm9v", 4, back), 3);
    ck_assert_int_eq(etcd_base64_decode("Zm*v", 4, back), -1);
    ck_assert_int_eq(etcd_base64_decode("Zm9vZ", 5, back), -1);
    ck_assert_int_eq(etcd_base64_decode("", 0, back), 0);
}
END_TEST

START_TEST(test_base64_round_trip_binary)
{
    unsigned char in[40], back[64];
    char enc[64];

    for (int i = 0; i < 40; i++)
        in[i] = (unsigned char)(i * 37 + 255);
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t len = etcd_base64_encode(in, n, enc, sizeof(enc));
        ck_assert_uint_eq(len, (n + 2) / 3 * 4);
        ck_assert_int_eq(etcd_base64_decode(enc, len, back), (long)n);
        ck_assert(memcmp(in, back, n) == 0);
    }
}
END_TEST

START_TEST(test_range_end)
{
    unsigned char out[8];

    ck_assert_uint_eq(etcd_range_end((const unsigned char *)"/a/", 3, out), 3);
    ck_assert(memcmp(out, "/a0", 3) == 0);
    ck_assert_uint_eq(etcd_range_end((const unsigned char *)"a\xff", 2, out), 1);
    ck_assert_int_eq(out[0], 'b');
    ck_assert_uint_eq(etcd_range_end((const unsigned char *)"\xff\xff", 2, out), 1);
    ck_assert_int_eq(out[0], 0);
    ck_assert_uint_eq(etcd_range_end((const unsigned char *)"", 0, out), 1);
    ck_assert_int_eq(out[0], 0);
}
END_TEST

START_TEST(test_request_bodies)
{
    char *s = etcd_range_body("/services/orders/");

    ck_assert_str_eq(s, "{\"key\":\"L3NlcnZpY2VzL29yZGVycy8=\","
                        "\"range_end\":\"L3NlcnZpY2VzL29yZGVyczA=\"}");
    free(s);
    s = etcd_watch_body("/services/orders/", 43);
    ck_assert_str_eq(s, "{\"create_request\":{\"key\":\"L3NlcnZpY2VzL29yZGVycy8=\","
                        "\"range_end\":\"L3NlcnZpY2VzL29yZGVyczA=\",\"start_revision\":\"43\"}}");
    free(s);
    s = etcd_watch_body("/p/", 0);
    ck_assert_str_eq(s, "{\"create_request\":{\"key\":\"L3Av\",\"range_end\":\"L3Aw\"}}");
    free(s);
}
END_TEST

/* ---- answers ---- */

START_TEST(test_parse_range)
{
    char body[2048];
    struct etcd_range r;
    char err[128];

    snprintf(body, sizeof(body), "{" HEADER(7) ",\"kvs\":[%s,%s],\"count\":\"2\"}",
             kv_json("/s/a", "{\"url\":\"http://10.0.0.7:8080\"}", 5), kv_json("/s/b", "x", 7));
    ck_assert_int_eq(etcd_parse_range(body, strlen(body), &r, err, sizeof(err)), 0);
    ck_assert_int_eq(r.revision, 7);
    ck_assert_int_eq(r.count, 2);
    ck_assert(!r.more);
    ck_assert_int_eq(r.n_kvs, 2);
    ck_assert_str_eq(r.kvs[0].key, "/s/a");
    ck_assert_uint_eq(r.kvs[0].key_len, 4);
    ck_assert_str_eq(r.kvs[0].value, "{\"url\":\"http://10.0.0.7:8080\"}");
    ck_assert_int_eq(r.kvs[0].mod_revision, 5);
    ck_assert_int_eq(r.kvs[1].mod_revision, 7);
    etcd_range_free(&r);
}
END_TEST

START_TEST(test_parse_range_empty_and_numbers)
{
    const char *empty = "{" HEADER(12) "}";
    const char *numeric = "{\"header\":{\"revision\":12},\"count\":0,\"more\":true}";
    struct etcd_range r;

    ck_assert_int_eq(etcd_parse_range(empty, strlen(empty), &r, NULL, 0), 0);
    ck_assert_int_eq(r.revision, 12);
    ck_assert_int_eq(r.n_kvs, 0);
    ck_assert_ptr_null(r.kvs);
    etcd_range_free(&r);
    ck_assert_int_eq(etcd_parse_range(numeric, strlen(numeric), &r, NULL, 0), 0);
    ck_assert_int_eq(r.revision, 12);
    ck_assert(r.more);
    etcd_range_free(&r);
}
END_TEST

START_TEST(test_parse_range_errors)
{
    const char *bad[] = {
        "not json",
        "[1,2]",
        "{\"kvs\":{}}",
        "{\"header\":{\"revision\":\"abc\"}}",
        "{\"header\":{\"revision\":1.5}}",
        "{\"kvs\":[{\"key\":\"@@@@\"}]}",
        "{\"kvs\":[{\"value\":\"eA==\"}]}", /* no key */
        "{\"kvs\":[{\"key\":\"eA==\"}, 3]}",
    };
    struct etcd_range r;
    char err[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(etcd_parse_range(bad[i], strlen(bad[i]), &r, err, sizeof(err)) == -1,
                      "accepted %s", bad[i]);
        ck_assert_msg(err[0] != '\0', "no message for %s", bad[i]);
        ck_assert_int_eq(r.n_kvs, 0);
        ck_assert_ptr_null(r.kvs);
        etcd_range_free(&r);
    }
}
END_TEST

START_TEST(test_parse_watch_events)
{
    char line[2048];
    struct etcd_watch_msg m;

    snprintf(line, sizeof(line),
             "{\"result\":{" HEADER(9) ",\"events\":[{\"kv\":%s},{\"type\":\"DELETE\",\"kv\":%s},"
                                       "{\"type\":\"PUT\",\"kv\":%s}]}}",
             kv_json("/s/a", "{\"url\":\"http://a:1\"}", 8), kv_json("/s/b", "", 9),
             kv_json("/s/c", "{\"url\":\"http://c:1\"}", 9));
    ck_assert_int_eq(etcd_parse_watch(line, strlen(line), &m, NULL, 0), 0);
    ck_assert_int_eq(m.revision, 9);
    ck_assert(!m.created && !m.canceled && !m.error);
    ck_assert_int_eq(m.n_events, 3);
    ck_assert_int_eq(m.events[0].type, ETCD_EVENT_PUT); /* absent type */
    ck_assert_str_eq(m.events[0].kv.key, "/s/a");
    ck_assert_int_eq(m.events[1].type, ETCD_EVENT_DELETE);
    ck_assert_str_eq(m.events[1].kv.value, "");
    ck_assert_int_eq(m.events[2].type, ETCD_EVENT_PUT);
    ck_assert_int_eq(m.events[2].kv.mod_revision, 9);
    etcd_watch_msg_free(&m);
}
END_TEST

START_TEST(test_parse_watch_control)
{
    const char *created = "{\"result\":{" HEADER(7) ",\"created\":true}}";
    const char *compacted = "{\"result\":{" HEADER(30) ",\"canceled\":true,"
                                                       "\"compact_revision\":\"21\"}}";
    const char *canceled = "{\"result\":{" HEADER(30) ",\"canceled\":true,"
                                                      "\"cancel_reason\":\"permission denied\"}}";
    const char *error = "{\"error\":{\"grpc_code\":14,\"http_code\":503,"
                        "\"message\":\"transport is closing\",\"http_status\":\"Unavailable\"}}";
    struct etcd_watch_msg m;

    ck_assert_int_eq(etcd_parse_watch(created, strlen(created), &m, NULL, 0), 0);
    ck_assert(m.created);
    ck_assert_int_eq(m.n_events, 0);
    etcd_watch_msg_free(&m);
    ck_assert_int_eq(etcd_parse_watch(compacted, strlen(compacted), &m, NULL, 0), 0);
    ck_assert(m.canceled);
    ck_assert_int_eq(m.compact_revision, 21);
    etcd_watch_msg_free(&m);
    ck_assert_int_eq(etcd_parse_watch(canceled, strlen(canceled), &m, NULL, 0), 0);
    ck_assert(m.canceled);
    ck_assert_int_eq(m.compact_revision, 0);
    ck_assert_str_eq(m.reason, "permission denied");
    etcd_watch_msg_free(&m);
    ck_assert_int_eq(etcd_parse_watch(error, strlen(error), &m, NULL, 0), 0);
    ck_assert(m.error);
    ck_assert_str_eq(m.reason, "transport is closing");
    etcd_watch_msg_free(&m);
}
END_TEST

START_TEST(test_parse_watch_errors)
{
    const char *bad[] = {
        "{}",
        "{\"result\":3}",
        "{\"result\":{\"events\":{}}}",
        "{\"result\":{\"events\":[{\"type\":\"FOO\",\"kv\":{\"key\":\"eA==\"}}]}}",
        "{\"result\":{\"events\":[{\"type\":\"PUT\"}]}}",
        "{\"result\":{\"compact_revision\":\"x\"}}",
        "{\"result\":{\"events\":[{\"kv\":{\"key\":\"eA==\"}},{\"kv\":{\"key\":\"!\"}}]}}",
    };
    struct etcd_watch_msg m;
    char err[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(etcd_parse_watch(bad[i], strlen(bad[i]), &m, err, sizeof(err)) == -1,
                      "accepted %s", bad[i]);
        ck_assert(err[0] != '\0');
        ck_assert_int_eq(m.n_events, 0);
        etcd_watch_msg_free(&m);
    }
}
END_TEST

START_TEST(test_parse_endpoint)
{
    const char *v = "{\"url\":\"http://10.0.0.7:8080/api\",\"weight\":2}";
    const char *nw = "{\"url\":\"HTTPS://h.example\"}";
    char *url;
    int weight = 0;

    ck_assert_int_eq(etcd_parse_endpoint(v, strlen(v), &url, &weight, NULL, 0), 0);
    ck_assert_str_eq(url, "http://10.0.0.7:8080/api");
    ck_assert_int_eq(weight, 2);
    free(url);
    ck_assert_int_eq(etcd_parse_endpoint(nw, strlen(nw), &url, &weight, NULL, 0), 0);
    ck_assert_int_eq(weight, 1);
    free(url);
}
END_TEST

START_TEST(test_parse_endpoint_rejects)
{
    static const struct {
        const char *value, *message;
    } bad[] = {
        {"{\"url\":\"http://a:1\",\"weight\":0}", "'weight' must be an integer from 1 to 1000000"},
        {"{\"url\":\"http://a:1\",\"weight\":-1}", "'weight' must be"},
        {"{\"url\":\"http://a:1\",\"weight\":1.5}", "'weight' must be"},
        {"{\"url\":\"http://a:1\",\"weight\":\"2\"}", "'weight' must be"},
        {"{\"url\":\"http://a:1\",\"weight\":1000001}", "'weight' must be"},
        {"{\"weight\":1}", "'url' must be a string"},
        {"{\"url\":7}", "'url' must be a string"},
        {"{\"url\":\"ftp://a\"}", "'url' must start with http:// or https://"},
        {"{\"url\":\"http://\"}", "'url' has no host"},
        {"{\"url\":\"https:///x\"}", "'url' has no host"},
        {"{\"url\":\"http://a b\"}", "'url' has spaces"},
        {"http://a:1", "not a JSON object"},
        {"", "not a JSON object"},
    };
    char err[128], *url = (char *)"x";
    int weight;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(etcd_parse_endpoint(bad[i].value, strlen(bad[i].value), &url, &weight, err,
                                          sizeof(err)) == -1,
                      "accepted %s", bad[i].value);
        ck_assert_ptr_null(url);
        ck_assert_msg(strncmp(err, bad[i].message, strlen(bad[i].message)) == 0, "%s: message '%s'",
                      bad[i].value, err);
    }
}
END_TEST

/* ---- line splitter ---- */

struct lines_seen {
    char got[8][64];
    int n;
    int stop_at; /* return 7 on this line number (1-based), 0 = never */
};

static int on_line(const char *line, size_t len, void *arg)
{
    struct lines_seen *s = arg;

    ck_assert_int_lt(s->n, 8);
    ck_assert_uint_lt(len, sizeof(s->got[0]));
    memcpy(s->got[s->n], line, len);
    s->got[s->n][len] = '\0';
    s->n++;
    return s->n == s->stop_at ? 7 : 0;
}

START_TEST(test_lines_every_split)
{
    const char *stream = "{\"a\":1}\n{\"b\":22}\r\n\n{\"c\":333}\n";
    size_t n = strlen(stream);

    /* every cut point into two pieces, and one byte at a time */
    for (size_t cut = 0; cut <= n; cut++) {
        struct etcd_lines l;
        struct lines_seen s = {.n = 0};

        etcd_lines_init(&l, 64);
        ck_assert_int_eq(etcd_lines_feed(&l, stream, cut, on_line, &s), 0);
        ck_assert_int_eq(etcd_lines_feed(&l, stream + cut, n - cut, on_line, &s), 0);
        ck_assert_int_eq(s.n, 3);
        ck_assert_str_eq(s.got[0], "{\"a\":1}");
        ck_assert_str_eq(s.got[1], "{\"b\":22}");
        ck_assert_str_eq(s.got[2], "{\"c\":333}");
        etcd_lines_free(&l);
    }
    {
        struct etcd_lines l;
        struct lines_seen s = {.n = 0};

        etcd_lines_init(&l, 64);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(etcd_lines_feed(&l, stream + i, 1, on_line, &s), 0);
        ck_assert_int_eq(s.n, 3);
        ck_assert_str_eq(s.got[2], "{\"c\":333}");
        etcd_lines_free(&l);
    }
}
END_TEST

START_TEST(test_lines_partial_kept_until_newline)
{
    struct etcd_lines l;
    struct lines_seen s = {.n = 0};

    etcd_lines_init(&l, 64);
    ck_assert_int_eq(etcd_lines_feed(&l, "{\"par", 5, on_line, &s), 0);
    ck_assert_int_eq(s.n, 0);
    ck_assert_int_eq(etcd_lines_feed(&l, "tial\":1}", 8, on_line, &s), 0);
    ck_assert_int_eq(s.n, 0);
    ck_assert_int_eq(etcd_lines_feed(&l, "\n", 1, on_line, &s), 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.got[0], "{\"partial\":1}");
    /* reset drops a partial line: a new stream does not continue the old one */
    ck_assert_int_eq(etcd_lines_feed(&l, "junk", 4, on_line, &s), 0);
    etcd_lines_reset(&l);
    ck_assert_int_eq(etcd_lines_feed(&l, "ok\n", 3, on_line, &s), 0);
    ck_assert_str_eq(s.got[1], "ok");
    etcd_lines_free(&l);
}
END_TEST

START_TEST(test_lines_bounded)
{
    struct etcd_lines l;
    struct lines_seen s = {.n = 0};
    char big[32];

    memset(big, 'x', sizeof(big));
    etcd_lines_init(&l, 10);
    /* exactly max fits, in place and across pieces */
    ck_assert_int_eq(etcd_lines_feed(&l, "0123456789\n", 11, on_line, &s), 0);
    ck_assert_int_eq(etcd_lines_feed(&l, "01234", 5, on_line, &s), 0);
    ck_assert_int_eq(etcd_lines_feed(&l, "56789\n", 6, on_line, &s), 0);
    ck_assert_int_eq(s.n, 2);
    /* one more byte is too long: in one piece, across pieces, without a newline yet */
    ck_assert_int_eq(etcd_lines_feed(&l, "0123456789a\n", 12, on_line, &s), ETCD_LINES_TOO_LONG);
    etcd_lines_reset(&l);
    ck_assert_int_eq(etcd_lines_feed(&l, "012345", 6, on_line, &s), 0);
    ck_assert_int_eq(etcd_lines_feed(&l, "6789a\n", 6, on_line, &s), ETCD_LINES_TOO_LONG);
    etcd_lines_reset(&l);
    ck_assert_int_eq(etcd_lines_feed(&l, big, sizeof(big), on_line, &s), ETCD_LINES_TOO_LONG);
    ck_assert_uint_le(l.cap, 10);
    ck_assert_int_eq(s.n, 2);
    etcd_lines_free(&l);
}
END_TEST

START_TEST(test_lines_callback_stops)
{
    struct etcd_lines l;
    struct lines_seen s = {.n = 0, .stop_at = 2};

    etcd_lines_init(&l, 64);
    ck_assert_int_eq(etcd_lines_feed(&l, "a\nb\nc\n", 6, on_line, &s), 7);
    ck_assert_int_eq(s.n, 2);
    etcd_lines_free(&l);
}
END_TEST

/* ---- endpoints by key ---- */

static struct etcd_kv kv(const char *key, const char *value, int rev)
{
    struct etcd_kv k = {(char *)key, strlen(key), (char *)value, strlen(value), rev};
    return k;
}

START_TEST(test_set_put_replace_delete)
{
    struct etcd_set s = {0};
    struct etcd_kv a = kv("/s/a", "{\"url\":\"http://a:1\"}", 2);
    struct etcd_kv a2 = kv("/s/a", "{\"url\":\"http://a:2\",\"weight\":3}", 3);
    struct etcd_kv b = kv("/s/b", "{\"url\":\"http://a:2\"}", 4);
    struct pool_found found[2];
    char err[128];

    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &a, err, sizeof(err)), ETCD_APPLY_CHANGED);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &a2, err, sizeof(err)), ETCD_APPLY_CHANGED);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(etcd_set_find(&s, "/s/a")->url, "http://a:2");
    ck_assert_int_eq(etcd_set_find(&s, "/s/a")->weight, 3);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &b, err, sizeof(err)), ETCD_APPLY_CHANGED);
    ck_assert_int_eq(etcd_set_found(&s, found), 2);
    ck_assert_str_eq(found[1].url, "http://a:2"); /* two keys, one URL: pool_diff merges */
    ck_assert_int_eq(found[0].weight, 3);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_DELETE, &a, err, sizeof(err)),
                     ETCD_APPLY_CHANGED);
    ck_assert_ptr_null(etcd_set_find(&s, "/s/a"));
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_DELETE, &a, err, sizeof(err)),
                     ETCD_APPLY_UNKNOWN);
    ck_assert_int_eq(s.n, 1);
    etcd_set_free(&s);
}
END_TEST

START_TEST(test_set_invalid_value_drops_key)
{
    struct etcd_set s = {0};
    struct etcd_kv a = kv("/s/a", "{\"url\":\"http://a:1\"}", 2);
    struct etcd_kv broken = kv("/s/a", "{\"url\":\"http://a:1\",\"weight\":0}", 3);
    struct etcd_kv other = kv("/s/x", "garbage", 4);
    char err[128];

    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &a, err, sizeof(err)), ETCD_APPLY_CHANGED);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &broken, err, sizeof(err)),
                     ETCD_APPLY_SKIPPED);
    ck_assert_str_eq(err, "'weight' must be an integer from 1 to 1000000");
    ck_assert_int_eq(s.n, 0);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &other, err, sizeof(err)),
                     ETCD_APPLY_SKIPPED);
    ck_assert_int_eq(s.n, 0);
    etcd_set_free(&s);
}
END_TEST

START_TEST(test_set_load_replaces)
{
    struct etcd_set s = {0};
    struct etcd_kv old = kv("/s/old", "{\"url\":\"http://old:1\"}", 2);
    struct etcd_kv kvs[] = {
        kv("/s/a", "{\"url\":\"http://a:1\"}", 5),
        kv("/s/bad", "{\"url\":3}", 6),
        kv("/s/b", "{\"url\":\"http://b:1\",\"weight\":4}", 7),
        kv("/s/worse", "[]", 7),
    };
    struct etcd_range r = {.revision = 7, .kvs = kvs, .n_kvs = 4};
    int skipped = 0;
    char err[128] = "";

    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &old, NULL, 0), ETCD_APPLY_CHANGED);
    ck_assert_int_eq(etcd_set_load(&s, &r, &skipped, err, sizeof(err)), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(skipped, 2);
    ck_assert_str_eq(err, "'url' must be a string");
    ck_assert_ptr_null(etcd_set_find(&s, "/s/old"));
    ck_assert_int_eq(etcd_set_find(&s, "/s/b")->weight, 4);
    etcd_set_free(&s);
}
END_TEST

/* ---- range or watch ---- */

static struct etcd_watch_msg msg_with(int n, const int *revs)
{
    struct etcd_watch_msg m = {0};

    m.events = calloc((size_t)n, sizeof(*m.events));
    for (int i = 0; i < n; i++) {
        m.events[i].kv.key = strdup("/k");
        m.events[i].kv.key_len = 2;
        m.events[i].kv.mod_revision = revs[i];
    }
    m.n_events = n;
    return m;
}

START_TEST(test_sync_range_then_watch_then_resume)
{
    struct etcd_sync s;
    struct etcd_watch_msg m;
    int64_t start = -1;
    static const int revs[] = {9, 10, 10};

    etcd_sync_init(&s);
    ck_assert_int_eq(etcd_sync_next(&s, &start), ETCD_STEP_RANGE);
    etcd_sync_ranged(&s, 7);
    ck_assert_int_eq(etcd_sync_next(&s, &start), ETCD_STEP_WATCH);
    ck_assert_int_eq(start, 8);

    m = msg_with(3, revs); /* a transaction puts two keys at revision 10 */
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_APPLY);
    ck_assert_int_eq(m.n_events, 3);
    etcd_watch_msg_free(&m);
    /* a break: resume right after the last event applied */
    ck_assert_int_eq(etcd_sync_next(&s, &start), ETCD_STEP_WATCH);
    ck_assert_int_eq(start, 11);
}
END_TEST

START_TEST(test_sync_header_revision_does_not_advance)
{
    struct etcd_sync s;
    struct etcd_watch_msg m = {0};
    int64_t start;

    etcd_sync_init(&s);
    etcd_sync_ranged(&s, 7);
    m.created = true;
    m.revision = 99; /* the store's revision, ahead of what was delivered */
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_IGNORE);
    m.created = false; /* a progress notification */
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_IGNORE);
    etcd_sync_next(&s, &start);
    ck_assert_int_eq(start, 8);
}
END_TEST

START_TEST(test_sync_stale_events_dropped)
{
    struct etcd_sync s;
    struct etcd_watch_msg m;
    static const int old[] = {5, 7};
    static const int mixed[] = {7, 8, 6, 9};

    etcd_sync_init(&s);
    etcd_sync_ranged(&s, 7);
    m = msg_with(2, old);
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_IGNORE);
    ck_assert_int_eq(m.n_events, 0);
    etcd_watch_msg_free(&m);
    m = msg_with(4, mixed);
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_APPLY);
    ck_assert_int_eq(m.n_events, 2);
    ck_assert_int_eq(m.events[0].kv.mod_revision, 8);
    ck_assert_int_eq(m.events[1].kv.mod_revision, 9);
    ck_assert_int_eq(s.revision, 9);
    etcd_watch_msg_free(&m);
}
END_TEST

START_TEST(test_sync_compaction_reranges)
{
    struct etcd_sync s;
    struct etcd_watch_msg m = {0};
    int64_t start;

    etcd_sync_init(&s);
    etcd_sync_ranged(&s, 7);
    m.canceled = true;
    m.compact_revision = 21;
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_RERANGE);
    ck_assert_int_eq(etcd_sync_next(&s, &start), ETCD_STEP_RANGE);
    ck_assert_int_eq(start, 0);
    etcd_sync_ranged(&s, 30);
    ck_assert_int_eq(etcd_sync_next(&s, &start), ETCD_STEP_WATCH);
    ck_assert_int_eq(start, 31);
    /* compact_revision alone, and canceled alone, re-range too */
    m.canceled = false;
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_RERANGE);
    etcd_sync_ranged(&s, 30);
    m.canceled = true;
    m.compact_revision = 0;
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_RERANGE);
    ck_assert_int_eq(etcd_sync_next(&s, &start), ETCD_STEP_RANGE);
}
END_TEST

START_TEST(test_sync_gateway_error_resumes)
{
    struct etcd_sync s;
    struct etcd_watch_msg m = {0};
    int64_t start;

    etcd_sync_init(&s);
    etcd_sync_ranged(&s, 7);
    m.error = true;
    ck_assert_int_eq(etcd_sync_message(&s, &m), ETCD_BROKEN);
    ck_assert_int_eq(etcd_sync_next(&s, &start), ETCD_STEP_WATCH);
    ck_assert_int_eq(start, 8);
}
END_TEST

/* The whole path: a gateway stream in odd pieces, through parser, sync and set. */
struct follow {
    struct etcd_sync sync;
    struct etcd_set set;
    int reranges;
};

static int on_watch_line(const char *line, size_t len, void *arg)
{
    struct follow *f = arg;
    struct etcd_watch_msg m;

    ck_assert_int_eq(etcd_parse_watch(line, len, &m, NULL, 0), 0);
    switch (etcd_sync_message(&f->sync, &m)) {
    case ETCD_APPLY:
        for (int i = 0; i < m.n_events; i++)
            ck_assert_int_ge(etcd_set_apply(&f->set, m.events[i].type, &m.events[i].kv, NULL, 0),
                             0);
        break;
    case ETCD_RERANGE:
        f->reranges++;
        break;
    default:
        break;
    }
    etcd_watch_msg_free(&m);
    return 0;
}

START_TEST(test_stream_end_to_end)
{
    char stream[4096];
    struct follow f = {.reranges = 0};
    struct etcd_lines l;
    size_t n, off = 0, piece = 1;
    int64_t start;

    n = (size_t)snprintf(
        stream, sizeof(stream),
        "{\"result\":{" HEADER(7) ",\"created\":true}}\n"
                                  "{\"result\":{" HEADER(
                                      8) ",\"events\":[{\"kv\":%s}]}}\n"
                                         "{\"result\":{" HEADER(
                                             9) ",\"events\":[{\"kv\":%s}]}}\n"
                                                "{\"result\":{" HEADER(
                                                    10) ",\"events\":[{\"type\":\"DELETE\","
                                                        "\"kv\":%s}]}}\n",
        kv_json("/s/a", "{\"url\":\"http://a:1\"}", 8),
        kv_json("/s/b", "{\"url\":\"http://b:1\",\"weight\":2}", 9), kv_json("/s/a", "", 10));
    etcd_sync_init(&f.sync);
    etcd_sync_ranged(&f.sync, 7);
    etcd_lines_init(&l, 4096);
    while (off < n) {
        size_t take = piece < n - off ? piece : n - off;
        ck_assert_int_eq(etcd_lines_feed(&l, stream + off, take, on_watch_line, &f), 0);
        off += take;
        piece = piece * 3 % 97 + 1;
    }
    ck_assert_int_eq(f.set.n, 1);
    ck_assert_str_eq(f.set.entries[0].url, "http://b:1");
    ck_assert_int_eq(f.reranges, 0);
    ck_assert_int_eq(etcd_sync_next(&f.sync, &start), ETCD_STEP_WATCH);
    ck_assert_int_eq(start, 11);
    etcd_lines_free(&l);
    etcd_set_free(&f.set);
}
END_TEST

/* A range of 20,000 keys loads in n log n key comparisons (a scan per key made 200
 * million), and a PUT of the value a key has changes nothing. */
START_TEST(test_set_load_cost_and_same_put)
{
    enum { N = 20000 };
    struct etcd_kv *kvs = calloc(N, sizeof *kvs);
    char (*keys)[32] = calloc(N, sizeof *keys);
    char (*values)[64] = calloc(N, sizeof *values);
    struct etcd_set s = {0};
    int skipped = 0;

    ck_assert(kvs && keys && values);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "/s/%06d", i);
        snprintf(values[i], sizeof values[i], "{\"url\":\"http://10.0.%d.%d:80\"}", i >> 8,
                 i & 255);
        kvs[i] = kv(keys[i], values[i], i + 2);
    }
    struct etcd_range r = {.revision = N + 1, .kvs = kvs, .n_kvs = N};
    unsigned long before = etcd_set_compares;
    ck_assert_int_eq(etcd_set_load(&s, &r, &skipped, NULL, 0), 0);
    unsigned long compares = etcd_set_compares - before;
    ck_assert_int_eq(s.n, N);
    ck_assert_int_eq(skipped, 0);
    ck_assert_msg(compares <= 20ul * N, "%lu comparisons loading %d keys", compares, N);
    ck_assert_str_eq(etcd_set_find(&s, "/s/012345")->url, "http://10.0.48.57:80");
    /* out of order: still found (kept sorted) */
    struct etcd_kv first = kv("/s/", "{\"url\":\"http://first:1\"}", N + 2);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &first, NULL, 0), ETCD_APPLY_CHANGED);
    ck_assert_str_eq(etcd_set_find(&s, "/s/")->url, "http://first:1");
    ck_assert_str_eq(etcd_set_find(&s, "/s/000000")->url, "http://10.0.0.0:80");
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &first, NULL, 0), ETCD_APPLY_UNCHANGED);
    struct etcd_kv heavier = kv("/s/", "{\"url\":\"http://first:1\",\"weight\":2}", N + 3);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &heavier, NULL, 0), ETCD_APPLY_CHANGED);
    ck_assert_int_eq(s.n, N + 1);
    etcd_set_free(&s);
    free(kvs);
    free(keys);
    free(values);
}
END_TEST

/* A URL the endpoint parser refuses (a query, user info, a port over 65535) is skipped
 * like any bad value, not kept to be refused by the pool on every answer. */
START_TEST(test_set_url_refused_by_the_endpoint_rules)
{
    static const char *const bad[] = {
        "{\"url\":\"http://a:1/x?y=1\"}",
        "{\"url\":\"http://user@a:1\"}",
        "{\"url\":\"http://a:70000\"}",
    };
    struct etcd_set s = {0};
    char err[128];

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct etcd_kv k = kv("/s/a", bad[i], 2);
        err[0] = '\0';
        ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &k, err, sizeof err),
                         ETCD_APPLY_SKIPPED);
        ck_assert_msg(strncmp(err, "'url': ", 7) == 0, "%s", err);
        ck_assert_int_eq(s.n, 0);
    }
    struct etcd_kv good = kv("/s/a", "{\"url\":\"http://a:65535/x\"}", 3);
    ck_assert_int_eq(etcd_set_apply(&s, ETCD_EVENT_PUT, &good, err, sizeof err),
                     ETCD_APPLY_CHANGED);
    etcd_set_free(&s);
}
END_TEST

static Suite *etcd_suite(void)
{
    Suite *s = suite_create("etcd");
    TCase *wire = tcase_create("wire");
    TCase *stream = tcase_create("stream");

    tcase_add_test(wire, test_base64_vectors);
    tcase_add_test(wire, test_base64_round_trip_binary);
    tcase_add_test(wire, test_range_end);
    tcase_add_test(wire, test_request_bodies);
    tcase_add_test(wire, test_parse_range);
    tcase_add_test(wire, test_parse_range_empty_and_numbers);
    tcase_add_test(wire, test_parse_range_errors);
    tcase_add_test(wire, test_parse_watch_events);
    tcase_add_test(wire, test_parse_watch_control);
    tcase_add_test(wire, test_parse_watch_errors);
    tcase_add_test(wire, test_parse_endpoint);
    tcase_add_test(wire, test_parse_endpoint_rejects);
    suite_add_tcase(s, wire);
    tcase_add_test(stream, test_lines_every_split);
    tcase_add_test(stream, test_lines_partial_kept_until_newline);
    tcase_add_test(stream, test_lines_bounded);
    tcase_add_test(stream, test_lines_callback_stops);
    tcase_add_test(stream, test_set_put_replace_delete);
    tcase_add_test(stream, test_set_invalid_value_drops_key);
    tcase_add_test(stream, test_set_load_replaces);
    tcase_add_test(stream, test_set_load_cost_and_same_put);
    tcase_add_test(stream, test_set_url_refused_by_the_endpoint_rules);
    tcase_add_test(stream, test_sync_range_then_watch_then_resume);
    tcase_add_test(stream, test_sync_header_revision_does_not_advance);
    tcase_add_test(stream, test_sync_stale_events_dropped);
    tcase_add_test(stream, test_sync_compaction_reranges);
    tcase_add_test(stream, test_sync_gateway_error_resumes);
    tcase_add_test(stream, test_stream_end_to_end);
    suite_add_tcase(s, stream);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(etcd_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
