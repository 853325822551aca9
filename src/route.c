/*
 * route.c - declared methods (SPEC 3.1, last bullet) and named calls (3.2).
 *
 * A service's "VERB /path/{param}" templates are checked when the
 * configuration is loaded (template.c), compiled once per configuration into segment lists
 * (route_table_build) and matched against the raw rest of a request-target,
 * segment by segment, never against a decoded copy. Named calls turn a JSON
 * object of arguments into method + path + query + body the way PyFly's
 * declarative clients do. Pure: no I/O, no clock, no globals.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "strbuf.h"
#include "http.h"
#include "route.h"
#include "template.h"

/* ---- compiling and matching --------------------------------------------------- */

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *format_message(const char *fmt, const char *a, const char *b)
{
    int n = snprintf(NULL, 0, fmt, a, b);
    char *m = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (m)
        snprintf(m, (size_t)n + 1, fmt, a, b);
    return m;
}

static void method_free(struct route_method *m)
{
    for (size_t i = 0; i < m->n_segments; i++) {
        free(m->segments[i].literal);
        free(m->segments[i].param);
    }
    free(m->segments);
    m->segments = NULL;
    m->n_segments = 0;
}

/* Compile a template path checked by template_path_valid() (template.c). */
static int method_compile(struct route_method *m, const char *path)
{
    size_t len = strlen(path);
    m->trailing_slash = len > 0 && path[len - 1] == '/';
    size_t body_len = m->trailing_slash ? len - 1 : len; /* without the trailing '/' */
    size_t n = 0;
    for (size_t i = 0; i < body_len; i++)
        if (path[i] == '/')
            n++;
    m->segments = n > 0 ? calloc(n, sizeof(*m->segments)) : NULL;
    if (n > 0 && !m->segments)
        return -1;
    m->n_segments = n;
    size_t i = 1, k = 0;
    while (k < n) {
        size_t start = i;
        while (i < body_len && path[i] != '/')
            i++;
        const char *seg = path + start;
        size_t seg_len = i - start;
        if (seg_len >= 2 && seg[0] == '{')
            m->segments[k].param = dup_range(seg + 1, seg_len - 2);
        else
            m->segments[k].literal = dup_range(seg, seg_len);
        if (!m->segments[k].param && !m->segments[k].literal)
            return -1;
        k++;
        i++;
    }
    return 0;
}

int route_table_build(const struct service_conf *svc, struct route_table *out, char **err)
{
    out->methods = NULL;
    out->n_methods = 0;
    if (err)
        *err = NULL;
    if (!svc || svc->n_methods == 0)
        return 0;
    out->methods = calloc(svc->n_methods, sizeof(*out->methods));
    if (!out->methods)
        goto oom;
    for (size_t i = 0; i < svc->n_methods; i++) {
        const struct method_conf *mc = &svc->methods[i];
        const char *why = "missing verb or path";
        if (!mc->verb || !mc->path || !http_is_token(mc->verb, strlen(mc->verb)) ||
            !template_path_valid(mc->path, strlen(mc->path), &why)) {
            if (mc->verb && mc->path && !http_is_token(mc->verb, strlen(mc->verb)))
                why = "method must be 'VERB /path' with VERB an HTTP token";
            if (err)
                *err = format_message("method '%s': %s", mc->name ? mc->name : "?", why);
            route_table_free(out);
            return -1;
        }
        out->methods[i].conf = mc;
        out->n_methods = i + 1;
        if (method_compile(&out->methods[i], mc->path) < 0)
            goto oom;
    }
    return 0;
oom:
    route_table_free(out);
    if (err)
        *err = format_message("%s%s", "out of memory", "");
    return -1;
}

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_methods; i++)
        method_free(&t->methods[i]);
    free(t->methods);
    t->methods = NULL;
    t->n_methods = 0;
}

/*
 * Does the raw rest match m's path? Walks both segment by segment; a literal
 * must equal the raw segment byte for byte, a placeholder takes one non-empty
 * raw segment ("a%2Fb" is one). rest "" is matched as "/".
 */
static bool path_matches(const struct route_method *m, const char *rest, size_t len)
{
    if (len == 0) {
        rest = "/";
        len = 1;
    }
    if (rest[0] != '/')
        return false;
    bool trailing = rest[len - 1] == '/';
    if (trailing != m->trailing_slash)
        return false;
    size_t body_len = trailing ? len - 1 : len;
    size_t i = 1, k = 0;
    if (body_len == 0)
        return m->n_segments == 0;
    while (i <= body_len) {
        size_t start = i;
        while (i < body_len && rest[i] != '/')
            i++;
        if (k >= m->n_segments)
            return false;
        const struct route_segment *seg = &m->segments[k++];
        size_t seg_len = i - start;
        if (seg->param) {
            if (seg_len == 0)
                return false;
        } else if (strlen(seg->literal) != seg_len ||
                   memcmp(seg->literal, rest + start, seg_len) != 0) {
            return false;
        }
        i++;
    }
    return k == m->n_segments;
}

/* Is a more specific than b? The first segment where one has a literal and
 * the other a placeholder decides ("/p/search" beats "/p/{id}"). */
static bool more_specific(const struct route_method *a, const struct route_method *b)
{
    size_t n = a->n_segments < b->n_segments ? a->n_segments : b->n_segments;
    for (size_t i = 0; i < n; i++) {
        bool la = a->segments[i].literal != NULL, lb = b->segments[i].literal != NULL;
        if (la != lb)
            return la;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "GET, HEAD, POST": the sorted unique verbs of the methods matching the path. */
static char *allow_list(const struct route_table *t, const bool *path_ok)
{
    const char **verbs = malloc((t->n_methods + 1) * sizeof(*verbs));
    if (!verbs)
        return NULL;
    size_t n = 0;
    bool get = false;
    for (size_t i = 0; i < t->n_methods; i++) {
        if (!path_ok[i])
            continue;
        verbs[n++] = t->methods[i].conf->verb;
        if (strcmp(t->methods[i].conf->verb, "GET") == 0)
            get = true;
    }
    if (get)
        verbs[n++] = "HEAD";
    qsort(verbs, n, sizeof(*verbs), cmp_str);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(verbs[i]) + 2;
    char *out = malloc(total);
    if (out) {
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && strcmp(verbs[i], verbs[i - 1]) == 0)
                continue;
            if (o > 0) {
                memcpy(out + o, ", ", 2);
                o += 2;
            }
            size_t l = strlen(verbs[i]);
            memcpy(out + o, verbs[i], l);
            o += l;
        }
        out[o] = '\0';
    }
    free(verbs);
    return out;
}

enum route_match route_match(const struct route_table *t, const char *verb, const char *rest,
                             size_t rest_len, const struct route_method **matched, char **allow)
{
    if (matched)
        *matched = NULL;
    if (allow)
        *allow = NULL;
    if (!t || t->n_methods == 0)
        return ROUTE_NO_ROUTE;
    if (!verb)
        verb = "";
    if (!rest)
        rest_len = 0;
    bool *path_ok = calloc(t->n_methods, sizeof(*path_ok));
    bool any_path = false;
    const struct route_method *exact = NULL, *via_get = NULL;
    for (size_t i = 0; i < t->n_methods; i++) {
        const struct route_method *m = &t->methods[i];
        if (!path_matches(m, rest, rest_len))
            continue;
        any_path = true;
        if (path_ok)
            path_ok[i] = true;
        if (strcmp(m->conf->verb, verb) == 0) {
            if (!exact || more_specific(m, exact))
                exact = m;
        } else if (strcmp(verb, "HEAD") == 0 && strcmp(m->conf->verb, "GET") == 0) {
            if (!via_get || more_specific(m, via_get))
                via_get = m;
        }
    }
    enum route_match r;
    if (exact || via_get) {
        if (matched)
            *matched = exact ? exact : via_get;
        r = ROUTE_OK;
    } else if (!any_path) {
        r = ROUTE_NO_ROUTE;
    } else {
        r = ROUTE_NO_METHOD;
        if (allow && path_ok)
            *allow = allow_list(t, path_ok);
    }
    free(path_ok);
    return r;
}

const struct route_method *route_find_operation(const struct route_table *t, const char *name)
{
    if (!t || !name)
        return NULL;
    for (size_t i = 0; i < t->n_methods; i++)
        if (t->methods[i].conf->name && strcmp(t->methods[i].conf->name, name) == 0)
            return &t->methods[i];
    return NULL;
}

/* ---- named calls (SPEC 3.2) ----------------------------------------------------- */

/* Largest magnitude an integer argument may have: beyond 2^53 - 1 a double
 * (all cJSON has) no longer tells neighbours apart: 9007199254740993 parses
 * as 9007199254740992, so 2^53 itself is refused too. */
#define SAFE_INTEGER_MAX 9007199254740991.0


/* Append s percent-encoded (unreserved kept, the rest %XX). */
static void sb_encoded(struct strbuf *b, const char *s, bool segment)
{
    char *e = segment ? http_encode_segment(s, strlen(s)) : http_encode_query(s, strlen(s));
    if (!e) {
        b->failed = true;
        return;
    }
    strbuf_puts(b, e);
    free(e);
}

enum number_check { NUMBER_OK, NUMBER_TOO_BIG, NUMBER_NOT_FINITE };

static enum number_check number_check(double d)
{
    if (!isfinite(d))
        return NUMBER_NOT_FINITE;
    if (d == trunc(d) && fabs(d) > SAFE_INTEGER_MAX)
        return NUMBER_TOO_BIG;
    return NUMBER_OK;
}

/* JSON form of a checked number: integers as integers, others with the
 * fewest digits (15..17) that read back as the same double. */
static void format_number(double d, char out[40])
{
    if (d == trunc(d)) {
        snprintf(out, 40, "%lld", (long long)d);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            return;
    }
}

/* A scalar as text: strings as is, numbers in JSON form, booleans. Returns
 * false for anything else (null, array, object). */
static bool scalar_text(const cJSON *v, char num[40], const char **text)
{
    if (cJSON_IsString(v)) {
        *text = v->valuestring;
    } else if (cJSON_IsNumber(v)) {
        format_number(v->valuedouble, num);
        *text = num;
    } else if (cJSON_IsTrue(v)) {
        *text = "true";
    } else if (cJSON_IsFalse(v)) {
        *text = "false";
    } else {
        return false;
    }
    return true;
}

/* Any number inside v that cJSON would print differently from what was sent? */
static enum number_check tree_numbers_check(const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return number_check(v->valuedouble);
    for (const cJSON *c = v->child; c; c = c->next) {
        enum number_check r = tree_numbers_check(c);
        if (r != NUMBER_OK)
            return r;
    }
    return NUMBER_OK;
}

/*
 * What cJSON does not check: a raw control character inside a string is not
 * JSON (invalid_json), and a \u0000 escape would silently cut a C string
 * short (refused as an invalid argument). Returns NULL when fine.
 */
static const char *scan_strings(const char *s, size_t len, const char **code)
{
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!in) {
            if (c == '"')
                in = true;
            continue;
        }
        if (c == '"') {
            in = false;
        } else if (c == '\\') {
            if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) {
                *code = "invalid_argument";
                return "strings containing \\u0000 are not supported";
            }
            i++;
        } else if (c < 0x20) {
            *code = "invalid_json";
            return "control character inside a JSON string";
        }
    }
    return NULL;
}

static int cmp_member_names(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* The first top-level name that appears twice, or NULL. */
static const char *duplicate_name(const cJSON *obj, bool *oom)
{
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        n++;
    *oom = false;
    if (n < 2)
        return NULL;
    const cJSON **v = malloc(n * sizeof(*v));
    if (!v) {
        *oom = true;
        return NULL;
    }
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        v[i++] = c;
    qsort(v, n, sizeof(*v), cmp_member_names);
    const char *dup = NULL;
    for (i = 1; i < n && !dup; i++)
        if (strcmp(v[i - 1]->string, v[i]->string) == 0)
            dup = v[i]->string;
    free(v);
    return dup;
}

static bool verb_has_body(const char *verb)
{
    return strcmp(verb, "POST") == 0 || strcmp(verb, "PUT") == 0 || strcmp(verb, "PATCH") == 0;
}

/* Errors of the builder: status, code and a message naming the argument. */
struct call_error {
    const char *code;
    char *message;
    int status;
};

static int fail(struct call_error *e, int status, const char *code, const char *fmt,
                const char *a, const char *b)
{
    e->status = status;
    e->code = code;
    e->message = format_message(fmt, a, b ? b : "");
    return status;
}

static const char *number_problem(enum number_check r)
{
    return r == NUMBER_TOO_BIG ? "integers beyond +-2^53 lose digits; send it as a string"
                               : "number out of range";
}

/* Fill the path from the template; used[] collects the arguments taken. */
static int build_path(const struct route_method *m, const cJSON *args, struct strbuf *path,
                      const cJSON **used, struct call_error *e)
{
    size_t n_used = 0;
    if (m->n_segments == 0)
        strbuf_add(path, "/", 1);
    for (size_t i = 0; i < m->n_segments; i++) {
        const struct route_segment *seg = &m->segments[i];
        strbuf_add(path, "/", 1);
        if (seg->literal) {
            strbuf_puts(path, seg->literal);
            continue;
        }
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, seg->param);
        if (!v)
            return fail(e, 400, "missing_argument", "missing argument '%s' for {%s} in the path",
                        seg->param, seg->param);
        used[n_used++] = v;
        if (cJSON_IsNumber(v) && number_check(v->valuedouble) != NUMBER_OK)
            return fail(e, 400, "invalid_argument", "argument '%s': %s", seg->param,
                        number_problem(number_check(v->valuedouble)));
        char num[40];
        const char *text;
        if (!scalar_text(v, num, &text))
            return fail(e, 400, "invalid_argument",
                        "argument '%s': a path value must be a string, number or boolean",
                        seg->param, NULL);
        if (text[0] == '\0' || strcmp(text, ".") == 0 || strcmp(text, "..") == 0)
            return fail(e, 400, "invalid_argument",
                        "argument '%s': a path value may not be empty, '.' or '..'", seg->param,
                        NULL);
        /* the same check as a client's raw target (SPEC 3.3): no dot pieces
         * between '/' or '\', no control characters, once an upstream decodes */
        struct strbuf one = {0};
        strbuf_add(&one, "/", 1);
        sb_encoded(&one, text, true);
        if (one.failed) {
            free(one.s);
            return fail(e, 500, "internal_error", "out of memory%s%s", "", NULL);
        }
        if (!http_target_is_safe(one.s, one.len, NULL)) {
            free(one.s);
            return fail(e, 400, "invalid_argument",
                        "argument '%s': a path value may not hold '.' or '..' between '/' or "
                        "'\\', or control characters",
                        seg->param, NULL);
        }
        strbuf_add(path, one.s + 1, one.len - 1);
        free(one.s);
    }
    if (m->trailing_slash && m->n_segments > 0)
        strbuf_add(path, "/", 1);
    return 0;
}

static void query_pair(struct strbuf *q, const char *key, const char *value)
{
    strbuf_add(q, q->len == 0 ? "?" : "&", 1);
    sb_encoded(q, key, false);
    strbuf_add(q, "=", 1);
    sb_encoded(q, value, false);
}

/* One leftover argument as key=value pairs (arrays repeat the key). */
static int query_argument(struct strbuf *q, const cJSON *v, struct call_error *e)
{
    const char *key = v->string;
    if (cJSON_IsNull(v))
        return 0;
    if (cJSON_IsObject(v))
        return fail(e, 400, "invalid_argument",
                    "argument '%s': objects cannot be sent in the query string", key, NULL);
    const cJSON *first = v, *stop = v->next;
    if (cJSON_IsArray(v)) {
        first = v->child;
        stop = NULL;
    }
    for (const cJSON *el = first; el != stop; el = el->next) {
        if (cJSON_IsNull(el))
            continue;
        if (cJSON_IsNumber(el) && number_check(el->valuedouble) != NUMBER_OK)
            return fail(e, 400, "invalid_argument", "argument '%s': %s", key,
                        number_problem(number_check(el->valuedouble)));
        char num[40];
        const char *text;
        if (!scalar_text(el, num, &text))
            return fail(e, 400, "invalid_argument",
                        "argument '%s': array elements must be strings, numbers, booleans "
                        "or null",
                        key, NULL);
        query_pair(q, key, text);
    }
    return 0;
}

static bool pointer_in(const cJSON *const *list, size_t n, const cJSON *p)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == p)
            return true;
    return false;
}

static int build_call(const struct route_method *m, const cJSON *args, struct named_request *out,
                      struct call_error *e)
{
    const char *verb = m->conf->verb;
    size_t n_params = 0;
    for (size_t i = 0; i < m->n_segments; i++)
        if (m->segments[i].param)
            n_params++;
    const cJSON **used = calloc(n_params + 1, sizeof(*used));
    struct strbuf path = {0}, query = {0};
    int rc = !used ? fail(e, 500, "internal_error", "out of memory%s%s", "", NULL)
                          : build_path(m, args, &path, used, e);
    const cJSON *body = NULL;
    for (const cJSON *c = args->child; rc == 0 && c; c = c->next) {
        if (pointer_in(used, n_params, c))
            continue;
        if (!body && verb_has_body(verb) && strcmp(c->string, "body") == 0) {
            body = c;
            continue;
        }
        rc = query_argument(&query, c, e);
    }
    if (rc == 0 && body) {
        enum number_check r = tree_numbers_check(body);
        if (r != NUMBER_OK) {
            rc = fail(e, 400, "invalid_argument", "argument '%s': %s", "body", number_problem(r));
        } else {
            char *printed = cJSON_PrintUnformatted(body);
            out->body = printed ? strdup(printed) : NULL; /* plain malloc for free() */
            if (printed)
                cJSON_free(printed);
            if (!out->body)
                rc = fail(e, 500, "internal_error", "out of memory%s%s", "", NULL);
            else
                out->body_len = strlen(out->body);
        }
    }
    if (rc == 0) {
        strbuf_add(&path, query.s ? query.s : "", query.len);
        out->method = strdup(verb);
        if (path.failed || query.failed || !out->method)
            rc = fail(e, 500, "internal_error", "out of memory%s%s", "", NULL);
        else
            out->path_query = path.s, path.s = NULL;
    }
    free(path.s);
    free(query.s);
    free(used);
    return rc;
}

int route_build_named_call(const struct route_method *m, const char *json, size_t len,
                           struct named_request *out, const char **code, char **message)
{
    struct call_error e = {NULL, NULL, 0};
    memset(out, 0, sizeof(*out));
    *code = NULL;
    *message = NULL;
    if (len == 0) {
        json = "{}";
        len = 2;
    }
    const char *scan_code = NULL;
    const char *problem = scan_strings(json, len, &scan_code);
    if (problem) {
        *code = scan_code;
        *message = strdup(problem);
        return 400;
    }
    const char *end = NULL;
    cJSON *args = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (args) {
        size_t off = (size_t)(end - json);
        while (off < len && (json[off] == ' ' || json[off] == '\t' || json[off] == '\n' ||
                             json[off] == '\r'))
            off++;
        if (off != len) {
            cJSON_Delete(args);
            args = NULL;
        }
    }
    int rc;
    bool oom = false;
    const char *dup = NULL;
    if (!args)
        rc = fail(&e, 400, "invalid_json", "the arguments are not valid JSON%s%s", "", NULL);
    else if (!cJSON_IsObject(args))
        rc = fail(&e, 400, "invalid_json", "the arguments must be a JSON object%s%s", "", NULL);
    else if ((dup = duplicate_name(args, &oom)) != NULL)
        rc = fail(&e, 400, "invalid_json", "duplicate argument '%s'%s", dup, NULL);
    else if (oom)
        rc = fail(&e, 500, "internal_error", "out of memory%s%s", "", NULL);
    else
        rc = build_call(m, args, out, &e);
    cJSON_Delete(args);
    if (rc != 0) {
        named_request_free(out);
        *code = e.code;
        *message = e.message;
    }
    return rc;
}

void named_request_free(struct named_request *r)
{
    if (!r)
        return;
    free(r->method);
    free(r->path_query);
    free(r->body);
    memset(r, 0, sizeof(*r));
}
