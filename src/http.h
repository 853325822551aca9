/*
 * http.h - pure HTTP helpers for the proxy: request-target safety (SPEC 3.3),
 * splitting and joining paths (3.1), header checks, hop-by-hop filtering,
 * X-Request-Id, header lists, and ahoyd's JSON error bodies (5).
 *
 * Everything works on the raw bytes as received, never on a decoded copy.
 */
#ifndef AHOYD_HTTP_H
#define AHOYD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A raw request-target "/svc/rest?query" cut into views (no copies). */
struct target_parts {
    const char *service;  /* first segment, without the leading '/' (may be empty) */
    size_t service_len;
    const char *rest;     /* everything after the service segment up to '?': "" or "/..." */
    size_t rest_len;
    const char *query;    /* "" or "?..." (an empty '?' is kept) */
    size_t query_len;
};

/*
 * Check a raw request-target (SPEC 3.3): must start with '/', no '#', no byte
 * outside RFC 3986 (unreserved, reserved, '%'), every '%' followed by two hex
 * digits; each raw path segment percent-decoded and split on '/' and '\' must
 * not give "." or "..", NUL or a control character. Returns true when safe;
 * otherwise false with *why set to a static message.
 */
bool http_target_is_safe(const char *target, size_t len, const char **why);

/* Cut a target that passed http_target_is_safe(). */
void http_split_target(const char *target, size_t len, struct target_parts *out);

/*
 * The upstream path+query: base_path (e.g. "/api" or "") joined with rest and
 * query by SPEC 3.1: rest "" -> base path exactly (or "/"), rest "/" -> base + "/",
 * rest "/x" -> base + "/x"; the query is appended byte for byte.
 * Returns a malloc'd NUL-terminated string.
 */
char *http_join_path(const char *base_path, const char *rest, size_t rest_len,
                     const char *query, size_t query_len);

/* RFC 9110 token (header names, methods). */
bool http_is_token(const char *s, size_t len);
/* Header value without control characters other than HTAB (obs-text allowed). */
bool http_header_value_ok(const char *s, size_t len);

/* A list of header fields in the order received (response headers from upstream,
 * extra headers of ahoyd's own answers). Names and values are malloc'd copies. */
struct header {
    char *name;
    char *value;
};

struct header_list {
    struct header *items;
    size_t n, cap;
};

void header_list_add(struct header_list *l, const char *name, size_t name_len, const char *value,
                     size_t value_len);
const char *header_list_get(const struct header_list *l, const char *name);
/* Every value of that name joined with ", " (RFC 9110 list syntax), malloc'd; NULL if none. */
char *header_list_join(const struct header_list *l, const char *name);
/* Free the fields (the list stays usable: items is kept for reuse). */
void header_list_clear(struct header_list *l);

/* Append one field value to a malloc'd comma-separated list (*list NULL: none yet):
 * ", " between values, as RFC 9110 joins the lines of a list field. Out of memory
 * leaves the list as it was. */
void http_list_append(char **list, const char *value, size_t n);

/* Hop-by-hop or otherwise never forwarded request header (SPEC 3.1):
 * Connection, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade,
 * Host, Content-Length, Expect, X-Ahoyd-*, and any name listed in the
 * request's Connection header value (connection may be NULL). Case-insensitive. */
bool http_request_header_dropped(const char *name, const char *connection);

/* Response headers never copied back to the client: Connection, Keep-Alive,
 * Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade, Content-Length, and names
 * listed in the response's Connection value. Case-insensitive. */
bool http_response_header_dropped(const char *name, const char *connection);

/* Does comma-separated list value contain token (case-insensitive)? */
bool http_list_has_token(const char *list, const char *token);

/* X-Request-Id from the client is kept when 1-128 visible ASCII (0x21-0x7e). */
bool http_request_id_ok(const char *s);
/* New UUIDv4, lowercase, 36 chars + NUL. rng: the state of rng_next(). */
void http_request_id_new(char out[37], uint64_t *rng);

/*
 * {"error":{"code":..,"message":..,"status":..,"service":..|null,"attempts":..,
 *  "request_id":..}} as a malloc'd string (strings JSON-escaped); *len set.
 */
char *http_error_body(const char *code, const char *message, int status, const char *service,
                      int attempts, const char *request_id, size_t *len);

/* Reason phrase for the statuses ahoyd makes ("Bad Request", ...). */
const char *http_status_reason(int status);

/* Percent-encode one path segment: RFC 3986 unreserved kept, the rest %XX upper-case. */
char *http_encode_segment(const char *s, size_t len);
/* Percent-encode a query key or value: unreserved kept, the rest %XX upper-case. */
char *http_encode_query(const char *s, size_t len);

#endif
