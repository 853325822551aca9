/*
 * forward.c - what crosses ahoyd between the client and the upstream, in both
 * directions: the request headers sent on every attempt (hop-by-hop headers
 * dropped, the service's headers set, X-Forwarded-For, X-Forwarded-Proto, Via
 * and X-Request-Id added) and the upstream's response head turned into the
 * client's answer (or ahoyd's JSON error).
 *
 * The header rules themselves (which names are hop-by-hop, which are never
 * forwarded) are in http.c; this file applies them to libmicrohttpd's header
 * lists and builds libmicrohttpd's response.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "forward.h"
#include "http.h"
#include "strbuf.h"

/* MHD's pool holds the request head and the response head (see forward_fits_pool):
 * what is kept free beyond the estimate of the response head. */
#define POOL_SLACK (4 * 1024)

/* ---- the request headers out ------------------------------------------------------ */

struct fwd_build {
    struct request *r;
    char **lines;
    size_t n, cap;
    struct strbuf xff, via; /* every X-Forwarded-For and Via line, joined */
    bool oom;
};

static void fwd_add(struct fwd_build *b, char *line)
{
    if (!line) {
        b->oom = true;
        return;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        char **l = realloc(b->lines, cap * sizeof *l);
        if (!l) {
            free(line);
            b->oom = true;
            return;
        }
        b->lines = l;
        b->cap = cap;
    }
    b->lines[b->n++] = line;
}

static char *fmt_line(const char *name, size_t nl, const char *value, size_t vl)
{
    char *s = malloc(nl + vl + 3);
    if (!s)
        return NULL;
    memcpy(s, name, nl);
    s[nl] = ':';
    s[nl + 1] = ' ';
    memcpy(s + nl + 2, value, vl);
    s[nl + 2 + vl] = '\0';
    return s;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    struct fwd_build *b = cls;
    const struct service_conf *sc = b->r->svc->conf;
    if (!value)
        value = "";
    if (strcasecmp(key, "Connection") == 0)
        return MHD_YES; /* joined beforehand */
    if (strcasecmp(key, "X-Forwarded-For") == 0) {
        http_list_append(&b->xff, value, value_size); /* every line, in order */
        return MHD_YES;
    }
    if (strcasecmp(key, "Via") == 0) {
        http_list_append(&b->via, value, value_size);
        return MHD_YES;
    }
    if (strcasecmp(key, "X-Request-Id") == 0 || strcasecmp(key, "X-Forwarded-Proto") == 0)
        return MHD_YES;
    if (b->r->operation && strcasecmp(key, "Content-Type") == 0)
        return MHD_YES; /* it described the arguments; a named call's body (if any) is JSON */
    for (size_t i = 0; i < sc->n_headers; i++)
        if (strcasecmp(key, sc->headers[i].name) == 0)
            return MHD_YES; /* replaced by the service's value */
    fwd_add(b, fmt_line(key, key_size, value, value_size));
    return MHD_YES;
}

/* "Name: tail", or "Name: list, tail" after a non-empty list; any length (a fixed buffer
 * here once cut X-Forwarded-For before ahoyd's own entry). NULL when out of memory. */
static char *fmt_list_line(const char *name, const char *list, const char *tail)
{
    struct strbuf b = {0};
    strbuf_puts(&b, name);
    strbuf_add(&b, ": ", 2);
    if (list && *list) {
        strbuf_puts(&b, list);
        strbuf_add(&b, ", ", 2);
    }
    strbuf_puts(&b, tail);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

int forward_build_headers(struct request *r)
{
    struct fwd_build b = {.r = r};
    const struct service_conf *sc = r->svc->conf;

    /* the headers named in Connection (gathered at intake) are hop-by-hop: split the
     * list once, then one pass over the headers */
    struct http_tokens conn;
    if (http_tokens_split(&conn, r->connection) != 0)
        return -1;
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, collect_header, &b);
    size_t j = 0;
    for (size_t i = 0; i < b.n; i++) {
        char *colon = strchr(b.lines[i], ':');
        *colon = '\0';
        bool drop = http_request_header_dropped(b.lines[i], &conn);
        *colon = ':';
        if (drop)
            free(b.lines[i]);
        else
            b.lines[j++] = b.lines[i];
    }
    b.n = j;
    http_tokens_free(&conn);
    for (size_t i = 0; i < sc->n_headers; i++)
        fwd_add(&b, fmt_line(sc->headers[i].name, strlen(sc->headers[i].name),
                             sc->headers[i].value, strlen(sc->headers[i].value)));
    if (r->operation && r->body)
        fwd_add(&b, strdup("Content-Type: application/json"));
    if (b.xff.failed || b.via.failed)
        b.oom = true;
    if (r->client_addr[0])
        fwd_add(&b, fmt_list_line("X-Forwarded-For", b.xff.s, r->client_addr));
    else if (b.xff.len)
        fwd_add(&b, fmt_line("X-Forwarded-For", 15, b.xff.s, b.xff.len));
    fwd_add(&b, strdup("X-Forwarded-Proto: http"));
    fwd_add(&b, fmt_list_line("Via", b.via.s, "1.1 ahoyd"));
    fwd_add(&b, fmt_line("X-Request-Id", 12, r->request_id, strlen(r->request_id)));
    free(b.xff.s);
    free(b.via.s);
    r->fwd_headers = (const char **)b.lines;
    r->n_fwd = b.n;
    return b.oom ? -1 : 0;
}

/* ---- the response head back ------------------------------------------------------- */

static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    return MHD_CONTENT_READER_END_OF_STREAM;
}

static bool is_head(const struct request *r)
{
    return r->method && strcmp(r->method, "HEAD") == 0;
}

/* The upstream's end-to-end headers and ahoyd's X-Ahoyd-* on resp; -1 when out of
 * memory. */
static int add_upstream_head(struct request *r, struct MHD_Response *resp)
{
    struct upstream_response *up = r->resp;
    /* every Connection line counts (RFC 9110 7.6.1); split once, then one pass */
    char *connection = header_list_join(&up->headers, "Connection");
    struct http_tokens conn;
    if (http_tokens_split(&conn, connection) != 0) {
        free(connection);
        return -1;
    }
    for (size_t i = 0; i < up->headers.n; i++) {
        const struct header *h = &up->headers.items[i];
        if (!*h->value || http_response_header_dropped(h->name, &conn) ||
            strcasecmp(h->name, "X-Request-Id") == 0 || strncasecmp(h->name, "X-Ahoyd-", 8) == 0)
            continue;
        MHD_add_response_header(resp, h->name, h->value);
    }
    http_tokens_free(&conn);
    free(connection);
    char n[16];
    snprintf(n, sizeof n, "%d", r->attempts);
    MHD_add_response_header(resp, "X-Ahoyd-Attempts", n);
    if (r->resp_endpoint)
        MHD_add_response_header(resp, "X-Ahoyd-Upstream", r->resp_endpoint);
    return 0;
}

/* What every answer carries: the extra headers, X-Request-Id, Connection: close. */
static void add_common_head(struct request *r, struct MHD_Response *resp)
{
    for (size_t i = 0; i < r->extra.n; i++)
        MHD_add_response_header(resp, r->extra.items[i].name, r->extra.items[i].value);
    if (r->request_id[0])
        MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (r->close || r->env->draining)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

struct MHD_Response *forward_build_stream_response(struct request *r, uint64_t size,
                                                   size_t block, MHD_ContentReaderCallback read,
                                                   MHD_ContentReaderFreeCallback done)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(size, block, read, r, done);
    if (!resp) {
        done(r); /* called once in every case */
        return NULL;
    }
    if (add_upstream_head(r, resp) != 0) {
        MHD_destroy_response(resp); /* calls done */
        return NULL;
    }
    add_common_head(r, resp);
    return resp;
}

struct MHD_Response *forward_build_response(struct request *r)
{
    struct MHD_Response *resp;
    struct upstream_response *up = r->resp;

    if (up) {
        if (is_head(r) && up->content_length >= 0) {
            resp = MHD_create_response_from_callback((uint64_t)up->content_length, 4096,
                                                     no_body, NULL, NULL);
        } else {
            resp = MHD_create_response_from_buffer(up->body_len, up->body,
                                                   MHD_RESPMEM_MUST_FREE);
            if (resp) {
                r->bytes_out = up->body_len;
                up->body = NULL; /* MHD frees it */
                up->body_len = up->body_cap = 0;
            }
        }
        if (!resp)
            return NULL;
        if (add_upstream_head(r, resp) != 0) {
            MHD_destroy_response(resp);
            return NULL;
        }
    } else {
        size_t len = 0;
        char *body = http_error_body(r->err_code ? r->err_code : "internal_error",
                                     r->err_message ? r->err_message : "internal error",
                                     r->status, r->svc ? r->svc->conf->name : NULL, r->attempts,
                                     r->request_id, &len);
        if (!body)
            return NULL;
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(body);
            return NULL;
        }
        r->bytes_out = is_head(r) ? 0 : len;
        MHD_add_response_header(resp, "Content-Type", "application/json");
        if (r->attempts > 0) {
            char n[16];
            snprintf(n, sizeof n, "%d", r->attempts);
            MHD_add_response_header(resp, "X-Ahoyd-Attempts", n);
            if (r->last_endpoint)
                MHD_add_response_header(resp, "X-Ahoyd-Upstream", r->last_endpoint);
        }
    }
    add_common_head(r, resp);
    return resp;
}

bool forward_fits_pool(const struct request *r, size_t pool_size)
{
    size_t n = 256; /* status line, framing and ahoyd's own headers */
    for (size_t i = 0; i < r->resp->headers.n; i++)
        n += strlen(r->resp->headers.items[i].name) + strlen(r->resp->headers.items[i].value) + 4;
    return r->head_bytes + n + POOL_SLACK <= pool_size;
}
