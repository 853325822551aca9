/*
 * http.c - pure HTTP helpers shared by the server, the proxy and named calls.
 *
 * Request-target safety (SPEC 3.3), cutting a target into service / rest /
 * query and joining rest onto an endpoint's base path (3.1), RFC 9110 token
 * and field-value checks, hop-by-hop header filtering, X-Request-Id, the JSON
 * error body (5), reason phrases, percent-encoding and header lists. Everything works on the
 * raw bytes as received: routing on a decoded copy is how proxies get escaped.
 * Pure: no I/O, no clock; the request-id generator takes its RNG state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "rng.h"
#include "strbuf.h"

/* ---- character classes (RFC 3986, RFC 9110) ------------------------------- */

static bool is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_unreserved(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Bytes a request-target may carry raw: unreserved, gen-delims but '#',
 * sub-delims, and '%' (whose escape is checked separately). */
static bool is_target_char(unsigned char c)
{
    if (is_unreserved(c))
        return true;
    switch (c) {
    case ':': case '/': case '?': case '[': case ']': case '@':          /* gen-delims */
    case '!': case '$': case '&': case '\'': case '(': case ')':           /* sub-delims */
    case '*': case '+': case ',': case ';': case '=':
    case '%':
        return true;
    default:
        return false;
    }
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_tchar(unsigned char c)
{
    return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* ---- target safety (SPEC 3.3) --------------------------------------------- */

/*
 * One raw path segment: decode it and look at the pieces between decoded '/'
 * and '\'. A piece "." or ".." (however it was spelled) could climb out of the
 * base path once some upstream decodes it, and so could one whose ';' path
 * parameters are dropped (Tomcat and its kin read "..;x" as ".."); control
 * characters have no business in a path and NUL truncates C strings downstream.
 */
static bool segment_is_safe(const char *seg, size_t len, const char **why)
{
    size_t piece = 0;    /* length of the current decoded piece, up to a ';' */
    int dots = 0;        /* how many of those bytes are '.' */
    bool params = false; /* past a ';' in this piece */
    for (size_t i = 0; i <= len; i++) {
        int c;
        if (i == len) {
            c = '/';
        } else if (seg[i] == '%') {
            c = hex_value((unsigned char)seg[i + 1]) * 16 + hex_value((unsigned char)seg[i + 2]);
            i += 2;
        } else {
            c = (unsigned char)seg[i];
        }
        if (c < 0x20 || c == 0x7f) {
            *why = "control character in path";
            return false;
        }
        if (c == '/' || c == '\\') {
            if (piece > 0 && piece == (size_t)dots && dots <= 2) {
                *why = "dot segment in path";
                return false;
            }
            piece = 0;
            dots = 0;
            params = false;
            continue;
        }
        if (c == ';')
            params = true;
        if (params)
            continue;
        piece++;
        if (c == '.')
            dots++;
    }
    return true;
}

bool http_target_is_safe(const char *target, size_t len, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!target || len == 0) {
        *why = "empty request-target";
        return false;
    }
    if (target[0] != '/') {
        *why = "request-target must start with '/'";
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c == '#') {
            *why = "'#' in request-target";
            return false;
        }
        if (!is_target_char(c)) {
            *why = "character not allowed in request-target";
            return false;
        }
        if (c == '%') {
            if (i + 2 >= len || hex_value((unsigned char)target[i + 1]) < 0 ||
                hex_value((unsigned char)target[i + 2]) < 0) {
                *why = "bad %-escape in request-target";
                return false;
            }
            i += 2;
        }
    }
    size_t path_len = len;
    const char *q = memchr(target, '?', len);
    if (q)
        path_len = (size_t)(q - target);
    size_t i = 1;
    while (i <= path_len) {
        size_t start = i;
        while (i < path_len && target[i] != '/')
            i++;
        if (!segment_is_safe(target + start, i - start, why))
            return false;
        i++;
    }
    return true;
}

/* ---- split and join (SPEC 3.1) -------------------------------------------- */

void http_split_target(const char *target, size_t len, struct target_parts *out)
{
    const char *q = memchr(target, '?', len);
    size_t path_len = q ? (size_t)(q - target) : len;
    out->query = target + path_len;
    out->query_len = len - path_len;
    size_t s = path_len > 0 && target[0] == '/' ? 1 : 0;
    size_t e = s;
    while (e < path_len && target[e] != '/')
        e++;
    out->service = target + s;
    out->service_len = e - s;
    out->rest = target + e;
    out->rest_len = path_len - e;
}

char *http_join_path(const char *base_path, const char *rest, size_t rest_len,
                     const char *query, size_t query_len)
{
    if (!base_path)
        base_path = "";
    size_t base_len = strlen(base_path);
    /* rest "/..." goes after the base path without its trailing '/' */
    if (rest_len > 0)
        while (base_len > 0 && base_path[base_len - 1] == '/')
            base_len--;
    bool slash_only = rest_len == 0 && base_len == 0;
    size_t n = base_len + rest_len + query_len + (slash_only ? 1 : 0);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    memcpy(out + o, base_path, base_len);
    o += base_len;
    if (slash_only)
        out[o++] = '/';
    if (rest_len > 0)
        memcpy(out + o, rest, rest_len);
    o += rest_len;
    if (query_len > 0)
        memcpy(out + o, query, query_len);
    o += query_len;
    out[o] = '\0';
    return out;
}

/* ---- header checks ---------------------------------------------------------- */

bool http_is_token(const char *s, size_t len)
{
    if (!s || len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

bool http_header_value_ok(const char *s, size_t len)
{
    if (!s)
        return len == 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

bool http_origin_parse(const char *origin, char *host, size_t cap, int *port)
{
    if (!origin || strncasecmp(origin, "http://", 7) != 0 || cap == 0)
        return false;
    const char *h = origin + 7, *end;
    bool bracket = *h == '[';
    if (bracket) {
        end = strchr(++h, ']');
        if (!end)
            return false;
    } else {
        end = h + strcspn(h, ":");
    }
    size_t hl = (size_t)(end - h);
    if (hl == 0 || hl >= cap)
        return false;
    for (size_t i = 0; i < hl; i++)
        if (!is_unreserved((unsigned char)h[i]) && h[i] != ':')
            return false; /* no userinfo, path, query, escape or space */
    memcpy(host, h, hl);
    host[hl] = '\0';
    const char *p = end + (bracket ? 1 : 0);
    if (*p == '\0') {
        *port = 80;
        return true;
    }
    if (*p != ':' || p[1] == '\0')
        return false;
    long v = 0;
    for (p++; *p; p++) {
        if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > 65535)
            return false;
    }
    *port = (int)v;
    return true;
}

/* The next element of the comma-separated list at *p, blanks around it dropped:
 * *start set and its end returned (the same for an empty element); *p moved to the
 * comma after it or the end. */
static const char *list_item(const char **p, const char **start)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',')
        s++;
    const char *e = s;
    while (*e != '\0' && *e != ',')
        e++;
    *p = e;
    *start = s;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return e;
}

bool http_list_has_token(const char *list, const char *token)
{
    if (!list || !token)
        return false;
    size_t tlen = strlen(token);
    if (tlen == 0)
        return false;
    const char *p = list;
    while (*p != '\0') {
        const char *start, *end = list_item(&p, &start);
        if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return true;
    }
    return false;
}

/* Case-insensitive order of two byte strings (the tokens' sort and search order). */
static int compare_ci(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = strncasecmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int token_order(const void *a, const void *b)
{
    const struct http_token *x = a, *y = b;
    return compare_ci(x->s, x->len, y->s, y->len);
}

int http_tokens_split(struct http_tokens *t, const char *list)
{
    size_t cap = 0;
    *t = (struct http_tokens){0};
    for (const char *p = list; p && *p != '\0';) {
        const char *start, *end = list_item(&p, &start);
        if (end == start)
            continue;
        struct http_token *items = array_grow(t->items, t->n, &cap, sizeof *items, 8);
        if (!items) {
            http_tokens_free(t);
            return -1;
        }
        t->items = items;
        t->items[t->n++] = (struct http_token){start, (size_t)(end - start)};
    }
    if (t->n > 1)
        qsort(t->items, t->n, sizeof *t->items, token_order);
    return 0;
}

bool http_tokens_has(const struct http_tokens *t, const char *name, size_t len)
{
    if (!t || len == 0)
        return false;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->compares)
            (*t->compares)++;
        int c = compare_ci(name, len, t->items[mid].s, t->items[mid].len);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

void http_tokens_free(struct http_tokens *t)
{
    free(t->items);
    t->items = NULL;
    t->n = 0;
}

static bool has_prefix_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* The hop-by-hop set both directions share (RFC 9110 7.6.1 and old practice). */
static bool is_hop_by_hop(const char *name)
{
    static const char *const names[] = {"Connection", "Keep-Alive", "TE", "Trailer",
                                        "Transfer-Encoding", "Upgrade"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return has_prefix_ci(name, "Proxy-");
}

bool http_request_header_dropped(const char *name, const struct http_tokens *connection)
{
    if (!name)
        return true;
    if (is_hop_by_hop(name) || strcasecmp(name, "Host") == 0 ||
        strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Expect") == 0 ||
        strcasecmp(name, "HTTP2-Settings") == 0 || has_prefix_ci(name, "X-Ahoyd-"))
        return true;
    return http_tokens_has(connection, name, strlen(name));
}

bool http_response_header_dropped(const char *name, const struct http_tokens *connection)
{
    if (!name)
        return true;
    if (is_hop_by_hop(name) || strcasecmp(name, "Content-Length") == 0)
        return true;
    return http_tokens_has(connection, name, strlen(name));
}

/* ---- X-Request-Id ----------------------------------------------------------- */

bool http_request_id_ok(const char *s)
{
    if (!s)
        return false;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c < 0x21 || c > 0x7e || n >= 128)
            return false;
    }
    return n >= 1;
}

void http_request_id_new(char out[37], uint64_t *rng)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t hi = rng_next(rng);
    uint64_t lo = rng_next(rng);
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(hi >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10xx */
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}

/* ---- header lists -------------------------------------------------------------- */

void header_list_add(struct header_list *l, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    struct header *items = array_grow(l->items, l->n, &l->cap, sizeof *items, 16);
    if (!items)
        return;
    l->items = items;
    /* name and value in one allocation, "name\0value\0" (freed through the name); cut
     * at a NUL as strndup would */
    size_t nl = strnlen(name, name_len), vl = strnlen(value, value_len);
    char *block = malloc(nl + vl + 2);
    if (!block)
        return;
    memcpy(block, name, nl);
    block[nl] = '\0';
    memcpy(block + nl + 1, value, vl);
    block[nl + 1 + vl] = '\0';
    l->items[l->n].name = block;
    l->items[l->n].value = block + nl + 1;
    l->n++;
}

void http_list_append(struct strbuf *list, const char *value, size_t n)
{
    if (list->len)
        strbuf_add(list, ", ", 2);
    strbuf_add(list, value, n);
}

char *header_list_join(const struct header_list *l, const char *name)
{
    struct strbuf out = {0};
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->items[i].name, name) == 0)
            http_list_append(&out, l->items[i].value, strlen(l->items[i].value));
    if (out.failed) {
        free(out.s);
        return NULL;
    }
    return out.s;
}

const char *header_list_get(const struct header_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->items[i].name, name) == 0)
            return l->items[i].value;
    return NULL;
}

void header_list_clear(struct header_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].name); /* the value is in the same block */
    l->n = 0;
}

/* ---- JSON error body (SPEC 5) ----------------------------------------------- */


char *http_error_body(const char *code, const char *message, int status, const char *service,
                      int attempts, const char *request_id, size_t *len)
{
    struct strbuf b = {0};
    char num[32];
    strbuf_puts(&b, "{\"error\":{\"code\":");
    strbuf_json_string(&b, code ? code : "");
    strbuf_puts(&b, ",\"message\":");
    strbuf_json_string(&b, message ? message : "");
    snprintf(num, sizeof num, "%d", status);
    strbuf_puts(&b, ",\"status\":");
    strbuf_puts(&b, num);
    strbuf_puts(&b, ",\"service\":");
    if (service)
        strbuf_json_string(&b, service);
    else
        strbuf_puts(&b, "null");
    snprintf(num, sizeof num, "%d", attempts);
    strbuf_puts(&b, ",\"attempts\":");
    strbuf_puts(&b, num);
    strbuf_puts(&b, ",\"request_id\":");
    strbuf_json_string(&b, request_id ? request_id : "");
    strbuf_puts(&b, "}}");
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.s;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- percent-encoding --------------------------------------------------------- */

static char *percent_encode(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0x0f];
        }
    }
    out[o] = '\0';
    return out;
}

char *http_encode_segment(const char *s, size_t len)
{
    return percent_encode(s, len);
}

char *http_encode_query(const char *s, size_t len)
{
    return percent_encode(s, len);
}
