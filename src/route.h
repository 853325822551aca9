/*
 * route.h - declared methods (SPEC 3.1 end) and named calls (3.2).
 *
 * Templates ("/payments/{payment_id}") are compiled once at load time into a
 * segment list; matching walks raw path segments. Pure.
 */
#ifndef AHOYD_ROUTE_H
#define AHOYD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct route_segment {
    char *literal; /* NULL for a {placeholder} */
    char *param;   /* placeholder name, NULL for a literal */
};

struct route_method {
    const struct method_conf *conf; /* name, verb, template */
    struct route_segment *segments;
    size_t n_segments;
    bool trailing_slash; /* template ends with '/' */
};

/* All the declared methods of one service. */
struct route_table {
    struct route_method *methods;
    size_t n_methods;
};

/* Compile a service's methods; returns 0, or -1 with *err (malloc'd) on a bad template. */
int route_table_build(const struct service_conf *svc, struct route_table *out, char **err);
void route_table_free(struct route_table *t);

enum route_match {
    ROUTE_OK = 0,        /* a template matches this verb (GET also admits HEAD) */
    ROUTE_NO_ROUTE,      /* no template matches the path: 404 no_route */
    ROUTE_NO_METHOD,     /* path matches only under other verbs: 405, allow filled */
};

/* Match the raw rest of a path ("" or "/...", no query) and a verb. On
 * ROUTE_NO_METHOD, *allow is a malloc'd "GET, HEAD, POST" list. */
enum route_match route_match(const struct route_table *t, const char *verb, const char *rest,
                             size_t rest_len, const struct route_method **matched, char **allow);

/* Find an operation by name; NULL if unknown. */
const struct route_method *route_find_operation(const struct route_table *t, const char *name);

/* A named call turned into an upstream request (SPEC 3.2). */
struct named_request {
    char *method;       /* the template's verb */
    char *path_query;   /* "/payments/a%2Fb?x=1&y=2" (relative to the base path) */
    char *body;         /* JSON body or NULL */
    size_t body_len;
};

/* Build from a JSON body (len 0 = {}). Returns 0, or the HTTP status (400) with
 * *code ("invalid_json", "missing_argument", "invalid_argument") and *message
 * (malloc'd) set. */
int route_build_named_call(const struct route_method *m, const char *json, size_t len,
                           struct named_request *out, const char **code, char **message);
void named_request_free(struct named_request *r);

#endif
