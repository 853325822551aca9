/*
 * etcd_parse.c - reading and writing the etcd v3 JSON gateway (SPEC 4.6).
 *
 * The gateway is grpc-gateway over etcd's protobufs, which fixes the shapes
 * handled here: bytes fields (keys, values) are base64, int64 fields
 * (revisions, counts) are JSON strings (numbers are accepted too), and fields
 * at their default value are left out: an event without "type" is a PUT, a
 * header without "revision" is revision 0. A watch answers with one JSON
 * object per line, {"result":{...}} or, when the stream fails,
 * {"error":{...}}.
 *
 * Pure: strings in, structs out, parsed with cJSON.
 */
#include "etcd_parse.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- base64 and range_end --------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t etcd_base64_encode(const void *in, size_t n, char *out, size_t size)
{
    const unsigned char *p = in;
    size_t len = (n + 2) / 3 * 4, o = 0;

    if (!out || size <= len)
        return len;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return len;
}

static int b64_value(char c)
{
    const char *at = c != '\0' ? strchr(b64_alphabet, c) : NULL;
    return at != NULL ? (int)(at - b64_alphabet) : -1;
}

long etcd_base64_decode(const char *in, size_t n, unsigned char *out)
{
    unsigned v = 0;
    int bits = 0;
    long o = 0;

    while (n > 0 && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int d = b64_value(in[i]);
        if (d < 0)
            return -1;
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
            v &= (1u << bits) - 1;
        }
    }
    out[o] = '\0';
    return o;
}

size_t etcd_range_end(const unsigned char *prefix, size_t n, unsigned char *out)
{
    for (size_t i = n; i > 0; i--) {
        if (prefix[i - 1] < 0xff) {
            memcpy(out, prefix, i);
            out[i - 1] = (unsigned char)(prefix[i - 1] + 1);
            return i;
        }
    }
    out[0] = '\0';
    return 1;
}

/* ---- request bodies --------------------------------------------------------- */

/* Adds name: base64(data) to obj; false when out of memory. */
static bool add_b64(cJSON *obj, const char *name, const void *data, size_t n)
{
    size_t len = etcd_base64_encode(data, n, NULL, 0);
    char *s = malloc(len + 1);
    bool ok;

    if (!s)
        return false;
    etcd_base64_encode(data, n, s, len + 1);
    ok = cJSON_AddStringToObject(obj, name, s) != NULL;
    free(s);
    return ok;
}

/* {"key":..., "range_end":...} for prefix, into obj. */
static bool add_prefix_range(cJSON *obj, const char *prefix)
{
    size_t n = strlen(prefix);
    unsigned char *end = malloc(n + 1);
    size_t end_len;
    bool ok;

    if (!end)
        return false;
    end_len = etcd_range_end((const unsigned char *)prefix, n, end);
    ok = add_b64(obj, "key", prefix, n) && add_b64(obj, "range_end", end, end_len);
    free(end);
    return ok;
}

static char *print_and_delete(cJSON *root, bool ok)
{
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;

    cJSON_Delete(root);
    return s;
}

char *etcd_range_body(const char *prefix)
{
    cJSON *root = cJSON_CreateObject();

    if (!root)
        return NULL;
    return print_and_delete(root, add_prefix_range(root, prefix));
}

char *etcd_watch_body(const char *prefix, int64_t start_revision)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *create = cJSON_AddObjectToObject(root, "create_request");
    char rev[24];
    bool ok;

    if (!root)
        return NULL;
    ok = create != NULL && add_prefix_range(create, prefix);
    if (ok && start_revision > 0) {
        snprintf(rev, sizeof rev, "%lld", (long long)start_revision);
        ok = cJSON_AddStringToObject(create, "start_revision", rev) != NULL;
    }
    return print_and_delete(root, ok);
}

/* ---- answers ---------------------------------------------------------------- */

static void set_err(char *err, size_t errsize, const char *msg)
{
    if (err && errsize > 0)
        snprintf(err, errsize, "%s", msg);
}

/* An int64 field: a string of digits or a whole number; absent = 0. */
static bool get_int64(const cJSON *obj, const char *name, int64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    char *end;
    long long v;

    *out = 0;
    if (!it || cJSON_IsNull(it))
        return true;
    if (cJSON_IsNumber(it)) {
        double d = cJSON_GetNumberValue(it);
        if (d != floor(d) || d < -9.0e18 || d > 9.0e18)
            return false;
        *out = (int64_t)d;
        return true;
    }
    if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
        return false;
    errno = 0;
    v = strtoll(it->valuestring, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool get_bool(const cJSON *obj, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, name));
}

/* A base64 field, decoded into a malloc'd NUL-terminated buffer; absent = "". */
static bool get_bytes(const cJSON *obj, const char *name, char **out, size_t *len)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    const char *s = cJSON_IsString(it) ? it->valuestring : "";
    size_t n = strlen(s);
    long got;

    *out = NULL;
    *len = 0;
    if (it && !cJSON_IsString(it))
        return false;
    *out = malloc(n / 4 * 3 + 4);
    if (!*out)
        return false;
    got = etcd_base64_decode(s, n, (unsigned char *)*out);
    if (got < 0) {
        free(*out);
        *out = NULL;
        return false;
    }
    *len = (size_t)got;
    return true;
}

void etcd_kv_free(struct etcd_kv *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

static bool parse_kv(const cJSON *obj, struct etcd_kv *kv)
{
    memset(kv, 0, sizeof(*kv));
    if (!cJSON_IsObject(obj) || !get_bytes(obj, "key", &kv->key, &kv->key_len) ||
        !get_bytes(obj, "value", &kv->value, &kv->value_len) ||
        !get_int64(obj, "mod_revision", &kv->mod_revision)) {
        etcd_kv_free(kv);
        return false;
    }
    if (kv->key_len == 0) { /* etcd has no empty key */
        etcd_kv_free(kv);
        return false;
    }
    return true;
}

/* The "header" object's revision. */
static bool header_revision(const cJSON *obj, int64_t *rev)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(obj, "header");

    *rev = 0;
    if (!h)
        return true;
    return cJSON_IsObject(h) && get_int64(h, "revision", rev);
}

/* The root object of an answer, or NULL with a message. */
static cJSON *parse_object(const char *text, size_t len, char *err, size_t errsize)
{
    cJSON *root = cJSON_ParseWithLength(text, len);

    if (!root || !cJSON_IsObject(root)) {
        set_err(err, errsize, "not a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

void etcd_range_free(struct etcd_range *r)
{
    for (int i = 0; i < r->n_kvs; i++)
        etcd_kv_free(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof(*r));
}

static int range_fail(struct etcd_range *out, cJSON *root, char *err, size_t errsize,
                      const char *msg)
{
    set_err(err, errsize, msg);
    etcd_range_free(out);
    cJSON_Delete(root);
    return -1;
}

int etcd_parse_range(const char *body, size_t len, struct etcd_range *out, char *err,
                     size_t errsize)
{
    cJSON *root, *kvs, *kv;

    memset(out, 0, sizeof(*out));
    root = parse_object(body, len, err, errsize);
    if (!root)
        return -1;
    if (!header_revision(root, &out->revision) || !get_int64(root, "count", &out->count))
        return range_fail(out, root, err, errsize, "bad header revision or count");
    out->more = get_bool(root, "more");
    kvs = cJSON_GetObjectItemCaseSensitive(root, "kvs");
    if (kvs && !cJSON_IsArray(kvs))
        return range_fail(out, root, err, errsize, "'kvs' is not a list");
    if (cJSON_GetArraySize(kvs) > 0) {
        out->kvs = calloc((size_t)cJSON_GetArraySize(kvs), sizeof(*out->kvs));
        if (!out->kvs)
            return range_fail(out, root, err, errsize, "out of memory");
    }
    cJSON_ArrayForEach(kv, kvs)
    {
        if (!parse_kv(kv, &out->kvs[out->n_kvs]))
            return range_fail(out, root, err, errsize, "bad key/value in 'kvs'");
        out->n_kvs++;
    }
    cJSON_Delete(root);
    return 0;
}

void etcd_watch_msg_free(struct etcd_watch_msg *m)
{
    for (int i = 0; i < m->n_events; i++)
        etcd_kv_free(&m->events[i].kv);
    free(m->events);
    free(m->reason);
    memset(m, 0, sizeof(*m));
}

static int watch_fail(struct etcd_watch_msg *out, cJSON *root, char *err, size_t errsize,
                      const char *msg)
{
    set_err(err, errsize, msg);
    etcd_watch_msg_free(out);
    cJSON_Delete(root);
    return -1;
}

/* reason = a copy of obj[name] when it is a non-empty string. */
static bool copy_reason(const cJSON *obj, const char *name, char **reason)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
        return true;
    *reason = strdup(it->valuestring);
    return *reason != NULL;
}

static bool parse_event(const cJSON *obj, struct etcd_event *ev)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");

    if (!cJSON_IsObject(obj))
        return false;
    if (!type || (cJSON_IsString(type) && strcmp(type->valuestring, "PUT") == 0))
        ev->type = ETCD_EVENT_PUT;
    else if (cJSON_IsString(type) && strcmp(type->valuestring, "DELETE") == 0)
        ev->type = ETCD_EVENT_DELETE;
    else
        return false;
    return parse_kv(cJSON_GetObjectItemCaseSensitive(obj, "kv"), &ev->kv);
}

static int parse_result(const cJSON *res, struct etcd_watch_msg *out, cJSON *root, char *err,
                        size_t errsize)
{
    const cJSON *events, *ev;

    if (!header_revision(res, &out->revision) ||
        !get_int64(res, "compact_revision", &out->compact_revision))
        return watch_fail(out, root, err, errsize, "bad header or compact revision");
    out->created = get_bool(res, "created");
    out->canceled = get_bool(res, "canceled");
    if (!copy_reason(res, "cancel_reason", &out->reason))
        return watch_fail(out, root, err, errsize, "out of memory");
    events = cJSON_GetObjectItemCaseSensitive(res, "events");
    if (events && !cJSON_IsArray(events))
        return watch_fail(out, root, err, errsize, "'events' is not a list");
    if (cJSON_GetArraySize(events) > 0) {
        out->events = calloc((size_t)cJSON_GetArraySize(events), sizeof(*out->events));
        if (!out->events)
            return watch_fail(out, root, err, errsize, "out of memory");
    }
    cJSON_ArrayForEach(ev, events)
    {
        if (!parse_event(ev, &out->events[out->n_events]))
            return watch_fail(out, root, err, errsize, "bad event");
        out->n_events++;
    }
    cJSON_Delete(root);
    return 0;
}

int etcd_parse_watch(const char *line, size_t len, struct etcd_watch_msg *out, char *err,
                     size_t errsize)
{
    cJSON *root, *res, *error;

    memset(out, 0, sizeof(*out));
    root = parse_object(line, len, err, errsize);
    if (!root)
        return -1;
    error = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsObject(error)) {
        out->error = true;
        if (!copy_reason(error, "message", &out->reason))
            return watch_fail(out, root, err, errsize, "out of memory");
        cJSON_Delete(root);
        return 0;
    }
    res = cJSON_GetObjectItemCaseSensitive(root, "result");
    if (!cJSON_IsObject(res))
        return watch_fail(out, root, err, errsize, "neither 'result' nor 'error'");
    return parse_result(res, out, root, err, errsize);
}

/* ---- the endpoint value ------------------------------------------------------- */

static const char *check_url(const char *url)
{
    size_t n = strlen(url);

    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return "'url' must start with http:// or https://";
    if (n > ETCD_URL_MAX)
        return "'url' is too long";
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return "'url' has spaces, control or non-ASCII characters";
    }
    if (url[url[4] == ':' ? 7 : 8] == '\0' || url[url[4] == ':' ? 7 : 8] == '/')
        return "'url' has no host";
    return NULL;
}

static const char *check_weight(const cJSON *w, int *weight)
{
    double d;

    *weight = 1;
    if (!w)
        return NULL;
    d = cJSON_IsNumber(w) ? cJSON_GetNumberValue(w) : 0;
    if (!cJSON_IsNumber(w) || d != floor(d) || d < 1 || d > 1000000)
        return "'weight' must be an integer from 1 to 1000000";
    *weight = (int)d;
    return NULL;
}

int etcd_parse_endpoint(const char *value, size_t len, char **url, int *weight, char *err,
                        size_t errsize)
{
    cJSON *root = parse_object(value, len, err, errsize);
    const cJSON *u;
    const char *why;

    *url = NULL;
    if (!root)
        return -1;
    u = cJSON_GetObjectItemCaseSensitive(root, "url");
    why = !cJSON_IsString(u) ? "'url' must be a string" : check_url(u->valuestring);
    if (!why)
        why = check_weight(cJSON_GetObjectItemCaseSensitive(root, "weight"), weight);
    if (!why && (*url = strdup(u->valuestring)) == NULL)
        why = "out of memory";
    if (why)
        set_err(err, errsize, why);
    cJSON_Delete(root);
    return !why ? 0 : -1;
}
