/*
 * fuzz_named.c - libFuzzer target for named calls: route_build_named_call()
 * (src/route.c, SPEC 3.2) with a fixed table of templates.
 *
 * Input: one byte choosing the operation, then the JSON argument body as a
 * client would send it to POST /_call/<service>/<operation>.
 *
 * Checked besides memory errors and leaks: an error is 400/500 with one of
 * the SPEC's codes and a message; a built request has the template's verb, a
 * path+query that passes the same safety check as a client's target
 * (http_target_is_safe) and matches a template of that verb again, each
 * string placeholder percent-decodes back to its argument, and a body only
 * for POST/PUT/PATCH, which is valid JSON.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "http.h"
#include "route.h"

static struct method_conf methods[] = {
    {"get_payment", "GET", "/payments/{payment_id}", "fuzz", 1, 1},
    {"list_payments", "GET", "/payments", "fuzz", 2, 1},
    {"create_payment", "POST", "/payments", "fuzz", 3, 1},
    {"update_payment", "PUT", "/payments/{payment_id}/", "fuzz", 4, 1},
    {"item", "DELETE", "/users/{user}/items/{item}", "fuzz", 5, 1},
    {"patch", "PATCH", "/a%2Fb/{x}/c", "fuzz", 6, 1},
    {"root", "OPTIONS", "/", "fuzz", 7, 1},
    {"head", "HEAD", "/h/{body}", "fuzz", 8, 1},
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))
static struct service_conf service = {.name = "svc", .methods = methods, .n_methods = N_METHODS};
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

static void check(bool ok, const char *what, const char *detail)
{
    if (!ok) {
        fprintf(stderr, "invariant broken: %s [%s]\n", what, detail ? detail : "");
        abort();
    }
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decode s[0..len) into a new string; NULL if an escape is malformed. */
static char *decode(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1, lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(d);
                return NULL;
            }
            d[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[o++] = s[i];
        }
    }
    d[o] = '\0';
    return d;
}

/* Each string placeholder's raw segment decodes back to the argument. */
static void check_params(const struct route_method *m, const char *json, size_t len,
                         const char *path, size_t path_len)
{
    cJSON *args = cJSON_ParseWithLength(len > 0 ? json : "{}", len > 0 ? len : 2);
    check(args != NULL, "accepted arguments parse", NULL);
    size_t i = 1;
    for (size_t k = 0; k < m->n_segments && i <= path_len; k++) {
        size_t start = i;
        while (i < path_len && path[i] != '/')
            i++;
        const struct route_segment *seg = &m->segments[k];
        if (seg->literal != NULL) {
            check(i - start == strlen(seg->literal) &&
                      memcmp(path + start, seg->literal, i - start) == 0,
                  "literal segment copied", path);
        } else {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, seg->param);
            check(v != NULL, "placeholder argument present", seg->param);
            if (cJSON_IsString(v)) {
                for (size_t c = start; c < i; c++)
                    check(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-._~%",
                                 path[c]) != NULL,
                          "segment is percent-encoded", path);
                char *d = decode(path + start, i - start);
                check(d != NULL && strcmp(d, v->valuestring) == 0,
                      "segment decodes to the argument", path);
                free(d);
            }
        }
        i++;
    }
    cJSON_Delete(args);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const struct route_method *m = &table.methods[data[0] % N_METHODS];
    const char *json = (const char *)data + 1;
    size_t len = size - 1;

    struct named_request req;
    const char *code = NULL;
    char *message = NULL;
    int rc = route_build_named_call(m, json, len, &req, &code, &message);
    if (rc != 0) {
        check(rc == 400 || rc == 500, "error status 400 or 500", NULL);
        check(code != NULL && message != NULL && message[0] != '\0', "error has code+message",
              NULL);
        check(strcmp(code, "invalid_json") == 0 || strcmp(code, "missing_argument") == 0 ||
                  strcmp(code, "invalid_argument") == 0 || strcmp(code, "internal_error") == 0,
              "error code from the SPEC", code);
        check(req.method == NULL && req.path_query == NULL && req.body == NULL,
              "nothing built on error", NULL);
        free(message);
        return 0;
    }
    check(code == NULL && message == NULL, "no error on success", NULL);
    check(req.method != NULL && strcmp(req.method, m->conf->verb) == 0, "template's verb",
          req.method);
    const char *pq = req.path_query;
    check(pq != NULL && pq[0] == '/', "path starts with '/'", pq);
    size_t pq_len = strlen(pq);
    const char *why = NULL;
    check(http_target_is_safe(pq, pq_len, &why), "built path+query is a safe target", pq);
    const char *q = strchr(pq, '?');
    size_t path_len = q != NULL ? (size_t)(q - pq) : pq_len;
    const struct route_method *back = NULL;
    char *allow = NULL;
    enum route_match r = route_match(&table, m->conf->verb, pq, path_len, &back, &allow);
    check(r == ROUTE_OK, "built path matches a template of its verb again", pq);
    free(allow);
    check_params(m, json, len, pq, path_len);
    bool has_body = strcmp(m->conf->verb, "POST") == 0 || strcmp(m->conf->verb, "PUT") == 0 ||
                    strcmp(m->conf->verb, "PATCH") == 0;
    if (req.body != NULL) {
        check(has_body, "a body only for POST/PUT/PATCH", m->conf->verb);
        check(req.body_len == strlen(req.body), "body_len", req.body);
        cJSON *b = cJSON_ParseWithLength(req.body, req.body_len);
        check(b != NULL, "body is JSON", req.body);
        cJSON_Delete(b);
    } else {
        check(req.body_len == 0, "no body, no length", NULL);
    }
    named_request_free(&req);
    return 0;
}
