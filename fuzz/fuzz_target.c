/*
 * fuzz_target.c - libFuzzer target for request-target handling (src/http.c)
 * and method matching (src/route.c).
 *
 * Input: "VERB TARGET" (no space: the whole input is the target, verb GET).
 * The target goes through what server.c does with a raw request-target:
 * http_target_is_safe(), then http_split_target(), http_join_path() onto a
 * few base paths and route_match() against a fixed table of templates. The
 * whole input is also tried as a "VERB /template" method spec: when
 * template_valid() accepts it, it must compile, and a path made from it
 * (each {param} filled with "x") must match it.
 *
 * Checked besides memory errors and leaks: the split parts cover the target
 * exactly, the joined path is base + rest + query as SPEC 3.1 says, a safe
 * target has no dot segment once decoded, and route_match() answers
 * consistently (ROUTE_OK with a method of that verb, 405 with an Allow list).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "route.h"
#include "template.h"

static struct method_conf methods[] = {
    {"get_payment", "GET", "/payments/{payment_id}", "fuzz", 1, 1},
    {"search", "GET", "/payments/search", "fuzz", 2, 1},
    {"list", "GET", "/payments", "fuzz", 3, 1},
    {"create", "POST", "/payments/", "fuzz", 4, 1},
    {"update", "PUT", "/payments/{payment_id}", "fuzz", 5, 1},
    {"item", "DELETE", "/users/{user}/items/{item}/", "fuzz", 6, 1},
    {"root", "OPTIONS", "/", "fuzz", 7, 1},
    {"escaped", "PATCH", "/a%2Fb/{x}/c;d=1", "fuzz", 8, 1},
    {"empty_seg", "GET", "/x//y", "fuzz", 9, 1},
};
static struct service_conf service = {.name = "svc", .methods = methods,
                                      .n_methods = sizeof(methods) / sizeof(methods[0])};
static struct route_table table;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *err = NULL;
    if (route_table_build(&service, &table, &err) != 0) {
        fprintf(stderr, "fixed table: %s\n", err ? err : "?");
        abort();
    }
    return 0;
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

/* Independent decoder: does any decoded piece between '/' or '\' equal "." or "..",
 * also once its ';' parameters are dropped ("..;x")? */
static bool has_dot_piece(const char *path, size_t len)
{
    size_t piece = 0, dots = 0;
    bool params = false;
    for (size_t i = 0; i <= len; i++) {
        int c = '/';
        if (i < len) {
            c = (unsigned char)path[i];
            if (c == '%' && i + 2 < len) {
                unsigned v;
                char hex[3] = {path[i + 1], path[i + 2], '\0'};
                if (sscanf(hex, "%2x", &v) == 1) {
                    c = (int)v;
                    i += 2;
                }
            }
        }
        if (c == '/' || c == '\\') {
            if (piece > 0 && piece == dots && dots <= 2)
                return true;
            piece = dots = 0;
            params = false;
        } else if (c == ';' || params) {
            params = true;
        } else {
            piece++;
            dots += c == '.';
        }
    }
    return false;
}

/* Is verb one of the ", "-separated names (case-sensitive, as route_match compares)? */
static bool in_allow(const char *allow, const char *verb)
{
    size_t vl = strlen(verb);
    for (const char *p = allow; *p != '\0';) {
        const char *e = strstr(p, ", ");
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == vl && memcmp(p, verb, vl) == 0)
            return true;
        p += l + (e != NULL ? 2 : 0);
    }
    return false;
}

static void check_match(const struct route_table *t, const char *verb, const char *rest,
                        size_t rest_len)
{
    const struct route_method *m = NULL;
    char *allow = NULL;
    enum route_match r = route_match(t, verb, rest, rest_len, &m, &allow);
    switch (r) {
    case ROUTE_OK:
        check(m != NULL && allow == NULL, "ROUTE_OK sets matched and no Allow");
        check(strcmp(m->conf->verb, verb) == 0 ||
                  (strcmp(verb, "HEAD") == 0 && strcmp(m->conf->verb, "GET") == 0),
              "ROUTE_OK matched a method of that verb");
        break;
    case ROUTE_NO_METHOD:
        check(m == NULL && allow != NULL && allow[0] != '\0', "405 has an Allow list");
        check(!in_allow(allow, verb), "a 405's Allow list does not name the verb");
        break;
    case ROUTE_NO_ROUTE:
        check(m == NULL && allow == NULL, "404 sets nothing");
        break;
    default:
        check(false, "route_match result in range");
    }
    free(allow);
}

/* Fill a valid template's placeholders with "x": the path it must match. */
static void check_template(const char *spec)
{
    if (!template_valid(spec, NULL))
        return;
    const char *sp = strchr(spec, ' ');
    char *verb = strndup(spec, (size_t)(sp - spec));
    while (*sp == ' ')
        sp++;
    struct method_conf mc = {"op", verb, (char *)sp, "fuzz", 1, 1};
    struct service_conf svc = {.name = "t", .methods = &mc, .n_methods = 1};
    struct route_table t;
    char *err = NULL;
    if (route_table_build(&svc, &t, &err) != 0) {
        fprintf(stderr, "template '%s' valid but does not compile: %s\n", spec, err ? err : "?");
        abort();
    }
    size_t n = strlen(sp);
    char *path = malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (sp[i] == '{') {
            const char *close = strchr(sp + i, '}');
            path[o++] = 'x';
            i = (size_t)(close - sp);
        } else {
            path[o++] = sp[i];
        }
    }
    path[o] = '\0';
    const struct route_method *m = NULL;
    char *allow = NULL;
    enum route_match r = route_match(&t, verb, path, o, &m, &allow);
    if (r != ROUTE_OK || m != &t.methods[0]) {
        fprintf(stderr, "template '%s' does not match its own path '%s' (%d)\n", spec, path, r);
        abort();
    }
    free(allow);
    free(path);
    route_table_free(&t);
    free(verb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    const char *sp = memchr(in, ' ', size);
    char *verb = sp != NULL ? strndup(in, (size_t)(sp - in)) : strdup("GET");
    const char *target = sp != NULL ? sp + 1 : in;
    size_t len = sp != NULL ? size - (size_t)(target - in) : size;

    const char *why = NULL;
    bool safe = http_target_is_safe(target, len, &why);
    check(safe || (why != NULL && why[0] != '\0'), "an unsafe target has a reason");
    if (safe) {
        check(len > 0 && target[0] == '/', "safe targets start with '/'");
        check(memchr(target, '#', len) == NULL && memchr(target, '\0', len) == NULL,
              "no '#' or NUL in a safe target");
        const char *q = memchr(target, '?', len);
        check(!has_dot_piece(target, q != NULL ? (size_t)(q - target) : len),
              "no dot segment in a safe target");

        struct target_parts tp;
        http_split_target(target, len, &tp);
        check(tp.service == target + 1, "service starts after '/'");
        check(tp.rest == tp.service + tp.service_len, "rest follows service");
        check(tp.query == tp.rest + tp.rest_len, "query follows rest");
        check(tp.query + tp.query_len == target + len, "parts cover the target");
        check(memchr(tp.service, '/', tp.service_len) == NULL &&
                  memchr(tp.service, '?', tp.service_len) == NULL,
              "service is one segment");
        check(tp.rest_len == 0 || tp.rest[0] == '/', "rest is empty or starts with '/'");
        check(memchr(tp.rest, '?', tp.rest_len) == NULL, "rest has no '?'");
        check(tp.query_len == 0 || tp.query[0] == '?', "query is empty or starts with '?'");

        static const char *const bases[] = {"", "/", "/api", "/api/", "/a//"};
        for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
            char *j = http_join_path(bases[b], tp.rest, tp.rest_len, tp.query, tp.query_len);
            check(j != NULL, "join allocates");
            size_t base_len = strlen(bases[b]);
            if (tp.rest_len > 0)
                while (base_len > 0 && bases[b][base_len - 1] == '/')
                    base_len--;
            size_t jl = strlen(j);
            bool slash = tp.rest_len == 0 && base_len == 0;
            check(jl == base_len + (slash ? 1 : 0) + tp.rest_len + tp.query_len, "join length");
            check(memcmp(j, bases[b], base_len) == 0, "join keeps the base path");
            check(memcmp(j + jl - tp.query_len, tp.query, tp.query_len) == 0,
                  "join appends the query byte for byte");
            check(j[0] == '/', "joined path starts with '/'");
            free(j);
        }
        check_match(&table, verb, tp.rest, tp.rest_len);
    }
    /* route_match on raw bytes as well: it must not trust its input */
    check_match(&table, verb, target, len);
    const char *q = memchr(target, '?', len);
    check_match(&table, verb, target, q != NULL ? (size_t)(q - target) : len);
    check_template(in);
    free(verb);
    free(in);
    return 0;
}
