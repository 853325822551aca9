/*
 * upstream_read.c - the reader behind libcurl's header and write callbacks
 * (upstream_read.h): which header lines make the response, its declared
 * length, and the header and body limits. No I/O: the regression tests and the
 * fuzz target feed it lines the way libcurl does.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strbuf.h"
#include "upstream_read.h"

size_t upstream_read_body(struct upstream_reader *a, const char *data, size_t n)
{
    struct upstream_response *r = a->resp;

    if (a->max_body && a->body_seen + n > a->max_body) {
        a->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    a->body_seen += n;
    if (r->dropped)
        return n; /* read to its end, not kept */
    if (a->keep_max && (uint64_t)r->body_len + n > a->keep_max) {
        free(r->body); /* too big to keep for a later answer: drop it, read on */
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        r->dropped = true;
        return n;
    }
    if (strbuf_bytes_append(&r->body, &r->body_len, &r->body_cap, data, n,
                            (size_t)a->max_body) != 0)
        return 0;
    return n;
}

size_t upstream_read_header(struct upstream_reader *a, const char *line, size_t n)
{
    struct upstream_response *r = a->resp;

    if (a->headers_done)
        return n; /* trailers are not forwarded */
    if (!a->in_block) {
        /* a status line starts a block; inside a block "HTTP/..." is just a header */
        const char *sp = memchr(line, ' ', n);
        header_list_clear(&r->headers);
        a->in_block = true;
        a->interim = sp && (size_t)(sp - line) + 1 < n && sp[1] == '1';
        a->header_bytes = n;
        r->content_length = -1;
        return n;
    }
    if (n <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        a->in_block = false;
        if (a->interim)
            return n; /* a 1xx response: the real one follows */
        a->headers_done = true;
        if (a->max_body && r->content_length > 0 && (uint64_t)r->content_length > a->max_body) {
            a->too_large = true; /* declared over the limit: no need to read it */
            return 0;
        }
        /* the whole declared body at once, up to a bound (0 = no limit: grow as it comes);
         * a head the caller decides on first allocates after its decision */
        if (!a->defer_alloc && r->content_length > 0 &&
            (uint64_t)r->content_length <= (a->max_body ? a->max_body : UPSTREAM_PREALLOC_MAX) &&
            r->body_cap == 0) {
            r->body = malloc((size_t)r->content_length);
            if (r->body)
                r->body_cap = (size_t)r->content_length;
        }
        return n;
    }
    a->header_bytes += n;
    if (a->header_bytes > a->max_header_bytes) {
        a->too_large = true;
        return 0;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon || colon == line)
        return n; /* obs-fold continuation or junk: not forwarded */
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (name_len == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        char tmp[32];
        size_t k = (size_t)(end - v) < sizeof tmp - 1 ? (size_t)(end - v) : sizeof tmp - 1;
        memcpy(tmp, v, k);
        tmp[k] = '\0';
        r->content_length = strtoll(tmp, NULL, 10);
    }
    header_list_add(&r->headers, line, name_len, v, (size_t)(end - v));
    return n;
}
