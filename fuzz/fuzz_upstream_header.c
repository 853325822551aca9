/*
 * fuzz_upstream_header.c - libFuzzer target for upstream response headers:
 * the reader behind src/upstream.c's curl header and write callbacks
 * (upstream_read_header, upstream_read_body; upstream_read.h) and the
 * server's forward_build_response() (forward.h), which copies them to the
 * client. Linked with every src/ object but main.c; no curl transfer and no
 * MHD daemon is started.
 *
 * Input: byte 0 picks max-response-header-bytes (64..16384; its low bit makes
 * the request a HEAD), byte 1 max-response-body (0..4080); then lines, each
 * ending in '\n', fed to upstream_read_header() the way libcurl delivers them: status
 * line, header lines, blank line; after 1xx blocks another status line; after
 * the final block, lines starting with '~' are body data (fed to
 * upstream_read_body() without the '~') and every other line is a trailer. Inputs curl would
 * reject (NUL in a header, malformed status line, 101) end the feed there.
 *
 * A small model of SPEC 3.4 runs alongside: the headers kept are exactly
 * those of the final (non-1xx) block, trailers and interim responses are not
 * forwarded, the header limit counts the final block, Content-Length is that
 * of the final block, the body is what was written. Then forward_build_response()
 * must let no hop-by-hop header through to the MHD response, including names
 * listed in any Connection field line.
 *
 * AHOYD_FUZZ_SKIP (comma-separated) turns checks off to fuzz past a known,
 * unfixed finding: "final-block" (kept headers, Content-Length and the
 * header limit are the final block's), "connection-lines" (names listed in
 * a later Connection field line).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "forward.h"
#include "http.h"
#include "request.h"
#include "upstream_read.h"

static bool skip_final_block, skip_connection_lines;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *s = getenv("AHOYD_FUZZ_SKIP");
    skip_final_block = s != NULL && strstr(s, "final-block") != NULL;
    skip_connection_lines = s != NULL && strstr(s, "connection-lines") != NULL;
    return 0;
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

struct model_header {
    const char *name, *value;
    size_t name_len, value_len;
};

/* Name and value of a header line as upstream_read_header() cuts them; false when no colon. */
static bool cut_line(const char *line, size_t n, struct model_header *h)
{
    const char *colon = memchr(line, ':', n);
    if (colon == NULL || colon == line)
        return false;
    const char *v = colon + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    h->name = line;
    h->name_len = (size_t)(colon - line);
    h->value = v;
    h->value_len = (size_t)(end - v);
    return true;
}

/* "HTTP/1.x NNN ..." as curl accepts it for HTTP/1: the code, or -1. */
static int status_code(const char *line, size_t n)
{
    if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') ||
        line[8] != ' ' || !isdigit((unsigned char)line[9]) ||
        !isdigit((unsigned char)line[10]) || !isdigit((unsigned char)line[11]))
        return -1;
    if (n > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n')
        return -1;
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

static bool is_blank(const char *line, size_t n)
{
    return (n == 1 && line[0] == '\n') || (n == 2 && line[0] == '\r' && line[1] == '\n');
}

/* SPEC 3.1/3.4: never copied back, whatever the case; plus Connection-listed names. */
static bool must_not_forward(const char *name, const char *conn_all)
{
    static const char *const hop[] = {"Connection", "Keep-Alive", "TE", "Trailer",
                                      "Transfer-Encoding", "Upgrade", "Content-Length",
                                      "X-Request-Id"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (strcasecmp(name, hop[i]) == 0)
            return true;
    if (strncasecmp(name, "Proxy-", 6) == 0 || strncasecmp(name, "X-Ahoyd-", 8) == 0)
        return true;
    return conn_all[0] != '\0' && http_list_has_token(conn_all, name);
}

struct fwd_check {
    const char *conn_all;
    bool bad;
};

static enum MHD_Result check_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct fwd_check *fc = cls;
    if (strcmp(key, "X-Ahoyd-Attempts") == 0 && strcmp(value, "1") == 0)
        return MHD_YES; /* ahoyd's own */
    if (must_not_forward(key, fc->conn_all)) {
        fprintf(stderr, "forwarded '%s: %s' (Connection: %s)\n", key, value, fc->conn_all);
        fc->bad = true;
    }
    return MHD_YES;
}

/* forward_build_response(): which upstream headers reach the client. */
static void check_forwarding(struct upstream_response *resp, bool head)
{
    const struct header_list *hl = &resp->headers;
    size_t total = 1;
    for (size_t i = 0; i < hl->n; i++)
        total += strlen(hl->items[i].value) + 2;
    char *conn_all = calloc(1, total); /* every Connection field line, joined */
    bool first = true;
    for (size_t i = 0; i < hl->n; i++) {
        if (strcasecmp(hl->items[i].name, "Connection") != 0)
            continue;
        if (!first && skip_connection_lines)
            break;
        if (!first)
            strcat(conn_all, ", ");
        strcat(conn_all, hl->items[i].value);
        first = false;
    }
    static struct request_env env; /* not draining */
    struct request r;
    memset(&r, 0, sizeof(r));
    r.env = &env;
    r.method = head ? "HEAD" : "GET";
    r.status = 200;
    r.attempts = 1;
    r.resp = resp;
    struct MHD_Response *mr = forward_build_response(&r);
    check(mr != NULL, "forward_build_response answers");
    struct fwd_check fc = {conn_all, false};
    MHD_get_response_headers(mr, check_one, &fc);
    check(!fc.bad, "no hop-by-hop response header is forwarded");
    MHD_destroy_response(mr);
    free(conn_all);
}

enum phase { EXPECT_STATUS, IN_BLOCK, BODY, TRAILERS };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct upstream_response *resp = calloc(1, sizeof(*resp));
    struct upstream_reader a;
    memset(&a, 0, sizeof(a));
    a.resp = resp;
    resp->content_length = -1;
    a.max_header_bytes = 64 + (uint64_t)data[0] * 64;
    a.max_body = (uint64_t)data[1] * 16;

    /* the model */
    enum phase ph = EXPECT_STATUS;
    bool interim = false;
    uint64_t block_bytes = 0;
    struct model_header *expect = calloc(size, sizeof(*expect));
    size_t n_expect = 0;
    int64_t cl = -1;
    const char *body_src[64];
    size_t body_len[64], n_body = 0, body_total = 0;
    bool aborted = false;

    const char *p = (const char *)data + 2, *end = (const char *)data + size;
    while (p < end && !aborted) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break; /* curl only delivers whole lines */
        size_t n = (size_t)(nl + 1 - p);
        char *line = malloc(n); /* a copy, exactly n bytes, as ASan should see it */
        memcpy(line, p, n);
        p = nl + 1;
        bool has_nul = memchr(line, '\0', n) != NULL;

        if (ph == BODY && line[0] != '~')
            ph = TRAILERS;
        if (ph == BODY) {
            size_t got = upstream_read_body(&a, line + 1, n - 1);
            if (a.max_body && body_total + n - 1 > a.max_body) { /* 0: no limit */
                check(got == 0 && a.too_large, "body over max-response-body is refused");
                aborted = true;
            } else {
                check(got == n - 1, "body accepted");
                if (n_body < 64) {
                    body_src[n_body] = p - n + 1;
                    body_len[n_body++] = n - 1;
                }
                body_total += n - 1;
            }
            free(line);
            continue;
        }
        if (has_nul && ph != BODY) {
            free(line); /* curl: "Nul byte in header", the transfer fails */
            aborted = true;
            break;
        }
        if (ph == EXPECT_STATUS) {
            int code = status_code(line, n);
            if (code < 100 || code == 101) {
                free(line); /* curl refuses the response (or switches protocols) */
                aborted = true;
                break;
            }
            interim = code < 200;
            n_expect = 0;
            cl = -1;
            block_bytes = n;
            check(upstream_read_header(&a, line, n) == n, "status line accepted");
            ph = IN_BLOCK;
        } else if (ph == IN_BLOCK && is_blank(line, n)) {
            size_t got = upstream_read_header(&a, line, n);
            if (!interim && a.max_body && cl > 0 && (uint64_t)cl > a.max_body) {
                /* a final head declaring a body over the limit ends the transfer there */
                check(got == 0 && a.too_large, "declared body over the limit refused at the head");
                free(line);
                aborted = true;
                break;
            }
            check(got == n, "blank line accepted");
            ph = interim ? EXPECT_STATUS : BODY;
        } else if (ph == IN_BLOCK) {
            block_bytes += n;
            size_t got = upstream_read_header(&a, line, n);
            if (block_bytes > a.max_header_bytes) {
                check((got == 0 && a.too_large) || skip_final_block,
                      "header block over the limit is refused");
                aborted = true;
            } else {
                check(got == n, "header line accepted");
                struct model_header h;
                if (cut_line(line, n, &h)) {
                    h.name = (const char *)data + (p - (const char *)data) - n;
                    h.value = h.name + (h.value - line);
                    expect[n_expect++] = h;
                    if (h.name_len == 14 && strncasecmp(h.name, "Content-Length", 14) == 0) {
                        char tmp[32];
                        size_t k = h.value_len < 31 ? h.value_len : 31;
                        memcpy(tmp, h.value, k);
                        tmp[k] = '\0';
                        cl = strtoll(tmp, NULL, 10);
                    }
                }
            }
        } else { /* TRAILERS: handed to the callback, never forwarded */
            size_t got = upstream_read_header(&a, line, n);
            check(got == n || skip_final_block, "trailer accepted");
        }
        free(line);
    }

    if (!aborted && (ph == BODY || ph == TRAILERS)) {
        /* a complete response: what the proxy would forward */
        struct header_list *hl = &resp->headers;
        if (skip_final_block)
            n_expect = hl->n; /* a trailer may have replaced the list: do not compare */
        if (hl->n != n_expect) {
            fprintf(stderr, "upstream_read_header kept %zu headers, the final block has %zu\n",
                    hl->n, n_expect);
            for (size_t i = 0; i < hl->n; i++)
                fprintf(stderr, "  kept: %s: %s\n", hl->items[i].name, hl->items[i].value);
            check(false, "kept headers are those of the final response (no 1xx, no trailers)");
        }
        for (size_t i = 0; i < n_expect && !skip_final_block; i++) {
            /* strndup stops at NUL: compare as C strings */
            check(strncmp(hl->items[i].name, expect[i].name, expect[i].name_len) == 0 &&
                      strlen(hl->items[i].name) == expect[i].name_len,
                  "header name kept byte for byte");
            check(strncmp(hl->items[i].value, expect[i].value, expect[i].value_len) == 0 &&
                      strlen(hl->items[i].value) == expect[i].value_len,
                  "header value kept byte for byte");
        }
        check(skip_final_block || resp->content_length == cl,
              "Content-Length is the final block's");
        check(resp->body_len == body_total, "body length");
        size_t off = 0;
        for (size_t i = 0; i < n_body; i++) {
            check(memcmp(resp->body + off, body_src[i], body_len[i]) == 0, "body bytes");
            off += body_len[i];
        }
        /* within the limit; without one (0), the declared length or twice what came */
        check(resp->body_cap == 0 ||
                  (a.max_body ? resp->body_cap <= a.max_body
                              : resp->body_cap <= 4096 || resp->body_cap <= 2 * body_total ||
                                    (cl > 0 && resp->body_cap == (size_t)cl)),
              "body buffer within limit");
        check_forwarding(resp, (data[0] & 1) != 0);
    }
    upstream_response_free(resp);
    free(resp);
    free(expect);
    return 0;
}
