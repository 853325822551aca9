/*
 * etcd.c - etcd discovery: one key prefix followed through etcd's v3 JSON
 * gateway, on libcurl like any upstream call (a struct upstream of its own, so
 * these long-lived connections never mix with client calls).
 *
 * One transfer at a time, chosen by the etcd_sync state machine:
 *   [POST /v3/auth/authenticate]  when a username is set and no token is held
 *   POST /v3/kv/range             the whole prefix, at header revision R
 *   POST /v3/watch                from R + 1: one streaming answer, a JSON
 *                                 object per line (etcd_lines), for ever
 * A watch that breaks (etcd restarted, connection lost, the gateway's error)
 * is reported, and after the backoff (1 s doubling to 10 s, on the next
 * configured endpoint) resumes from the last revision applied + 1, so no change
 * made meanwhile is missed; if etcd compacted that revision away, the watch is
 * cancelled and the prefix is ranged again. Every failure drops the auth token
 * (a simple token expires when idle): the next attempt authenticates again.
 *
 * Watch lines arrive inside libcurl (the write callback), holding the state
 * lock (upstream_stream_start takes it): an event is applied and reported as
 * soon as its line is complete.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discovery.h"
#include "etcd_parse.h"
#include "etcd_stream.h"
#include "log.h"
#include "upstream.h"

#define ETCD_CONNECT_TIMEOUT_MS 2000
#define ETCD_REQUEST_TIMEOUT_MS 5000 /* authenticate and range */
#define ETCD_MAX_BODY (64u << 20)    /* a range answer */
#define ETCD_MAX_HEADER_BYTES 65536
#define ETCD_MAX_LINE (16u << 20) /* one watch message */
#define ETCD_ERROR_BODY_MAX 300   /* kept of a failed watch's answer, for the message */

enum etcd_phase { PHASE_IDLE = 0, PHASE_AUTH, PHASE_RANGE, PHASE_WATCH };

struct etcd_source {
    struct loop *loop;
    char **endpoints;
    size_t n_endpoints, current;
    char *prefix, *username, *password;
    const struct tls_conf *tls;
    discovery_cb cb;
    void *arg;
    struct upstream *up;
    struct upstream_attempt *xfer;
    enum etcd_phase phase;
    char *body; /* the request body: curl reads it during the transfer */
    char *token;
    struct etcd_sync sync;
    struct etcd_set set;
    struct etcd_lines lines;
    struct loop_timer retry_timer;
    int64_t backoff_ms;
    bool failing;           /* the last report was an error */
    bool rerange;           /* the watch ended for a compaction: range again at once */
    char stream_error[512]; /* why the watch stream was ended from this side */
    char answer[ETCD_ERROR_BODY_MAX + 1]; /* start of a watch answer that was not 200 */
    size_t answer_len;
};

static void next_step(struct etcd_source *s);

/* ---- reports ------------------------------------------------------------------- */

static void report_set(struct etcd_source *s)
{
    struct pool_found *found = calloc((size_t)s->set.n + 1, sizeof *found);
    if (!found) {
        log_error("etcd %s: out of memory reporting the set", s->prefix);
        return;
    }
    int n = etcd_set_found(&s->set, found);
    s->failing = false;
    s->cb(s->arg, POOL_SOURCE_ETCD, found, n, NULL);
    free(found);
}

/* Report, rotate to the next endpoint, retry after the backoff. */
static void fail(struct etcd_source *s, const char *what)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "etcd %s (%s): %s", s->prefix, s->endpoints[s->current], what);
    log_warn("%s", msg);
    free(s->token);
    s->token = NULL;
    s->phase = PHASE_IDLE;
    s->failing = true;
    s->cb(s->arg, POOL_SOURCE_ETCD, NULL, 0, msg);
    s->current = (s->current + 1) % s->n_endpoints;
    loop_timer_start(s->loop, &s->retry_timer, s->backoff_ms);
    s->backoff_ms *= 2;
    if (s->backoff_ms > DISCOVERY_BACKOFF_MAX_MS)
        s->backoff_ms = DISCOVERY_BACKOFF_MAX_MS;
}

/* What a non-200 answer says: the gateway's {"error": ..., "message": ...}, or the
 * status alone. */
static void describe_status(char *out, size_t size, int status, const char *body, size_t len)
{
    cJSON *j = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsString(m))
        snprintf(out, size, "HTTP %d: %s", status, m->valuestring);
    else
        snprintf(out, size, "HTTP %d", status);
    cJSON_Delete(j);
}

/* ---- transfers ----------------------------------------------------------------- */

static void on_done(void *arg, const struct outcome *o, struct upstream_response *resp,
                    int64_t elapsed_us);
static size_t on_watch_data(void *arg, int status, const char *data, size_t n);

static int send_request(struct etcd_source *s, enum etcd_phase phase, const char *path, char *body)
{
    char url[1200], auth[1100];
    const char *ep = s->endpoints[s->current];
    size_t k = strlen(ep);
    while (k > 0 && ep[k - 1] == '/')
        k--;
    snprintf(url, sizeof url, "%.*s%s", (int)k, ep, path);
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    if (s->token && phase != PHASE_AUTH) {
        snprintf(auth, sizeof auth, "Authorization: %s", s->token);
        headers[1] = auth;
    }
    free(s->body);
    s->body = body;
    if (!body)
        return -1;
    struct upstream_request req = {
        .url = url,
        .method = "POST",
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = phase == PHASE_WATCH ? 0 : ETCD_REQUEST_TIMEOUT_MS,
        .connect_timeout_ms = ETCD_CONNECT_TIMEOUT_MS,
        .allow_resend = true, /* reads, and authenticating twice is harmless */
        .max_body = ETCD_MAX_BODY,
        .max_header_bytes = ETCD_MAX_HEADER_BYTES,
        .tls = s->tls,
    };
    s->phase = phase;
    if (phase == PHASE_WATCH) {
        etcd_lines_reset(&s->lines);
        s->stream_error[0] = '\0';
        s->answer_len = 0;
        s->rerange = false;
        s->xfer = upstream_stream_start(s->up, &req, on_watch_data, on_done, s);
    } else {
        s->xfer = upstream_start(s->up, &req, on_done, s);
    }
    return s->xfer ? 0 : -1;
}

static char *auth_body(const struct etcd_source *s)
{
    cJSON *j = cJSON_CreateObject();
    char *out = NULL;
    if (j && cJSON_AddStringToObject(j, "name", s->username) &&
        cJSON_AddStringToObject(j, "password", s->password ? s->password : ""))
        out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static void next_step(struct etcd_source *s)
{
    int rc;
    if (s->username && !s->token) {
        rc = send_request(s, PHASE_AUTH, "/v3/auth/authenticate", auth_body(s));
    } else {
        int64_t start;
        if (etcd_sync_next(&s->sync, &start) == ETCD_STEP_RANGE)
            rc = send_request(s, PHASE_RANGE, "/v3/kv/range", etcd_range_body(s->prefix));
        else
            rc = send_request(s, PHASE_WATCH, "/v3/watch", etcd_watch_body(s->prefix, start));
    }
    if (rc != 0)
        fail(s, "cannot start a request (out of memory)");
}

static void on_retry(void *arg)
{
    next_step(arg);
}

static void authenticated(struct etcd_source *s, const struct upstream_response *r)
{
    cJSON *j = cJSON_ParseWithLength(r->body ? r->body : "", r->body_len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
    if (cJSON_IsString(t) && *t->valuestring && strlen(t->valuestring) < 1000)
        s->token = strdup(t->valuestring);
    cJSON_Delete(j);
    if (!s->token) {
        fail(s, "authenticate: no token in the answer");
        return;
    }
    next_step(s);
}

static void ranged(struct etcd_source *s, const struct upstream_response *r)
{
    struct etcd_range range;
    char err[256];
    int skipped = 0;
    if (etcd_parse_range(r->body ? r->body : "", r->body_len, &range, err, sizeof err) != 0) {
        char why[300];
        snprintf(why, sizeof why, "range: %s", err);
        fail(s, why);
        return;
    }
    err[0] = '\0';
    if (etcd_set_load(&s->set, &range, &skipped, err, sizeof err) != 0) {
        etcd_range_free(&range);
        fail(s, "range: out of memory");
        return;
    }
    if (skipped > 0)
        log_warn("etcd %s: %d key(s) skipped: %s", s->prefix, skipped, err);
    etcd_sync_ranged(&s->sync, range.revision);
    etcd_range_free(&range);
    s->backoff_ms = DISCOVERY_BACKOFF_MIN_MS;
    report_set(s);
    next_step(s); /* the watch */
}

static void on_done(void *arg, const struct outcome *o, struct upstream_response *resp,
                    int64_t elapsed_us)
{
    struct etcd_source *s = arg;
    enum etcd_phase phase = s->phase;
    s->xfer = NULL;
    s->phase = PHASE_IDLE;
    const char *what = phase == PHASE_AUTH    ? "authenticate"
                       : phase == PHASE_RANGE ? "range"
                                              : "watch";
    char why[560];
    if (phase == PHASE_WATCH && s->rerange) {
        log_info("etcd %s: watch cancelled (compacted): ranging again", s->prefix);
        next_step(s);
    } else if (phase == PHASE_WATCH && s->stream_error[0]) {
        snprintf(why, sizeof why, "watch: %s", s->stream_error);
        fail(s, why);
    } else if (o->kind != OUTCOME_STATUS) {
        snprintf(why, sizeof why, "%s: %s", what, outcome_label_name(outcome_label_index(o)));
        fail(s, why);
    } else if (resp->status != 200) {
        if (phase == PHASE_WATCH)
            describe_status(why, sizeof why, resp->status, s->answer, s->answer_len);
        else
            describe_status(why, sizeof why, resp->status, resp->body, resp->body_len);
        char msg[640];
        snprintf(msg, sizeof msg, "%s: %s", what, why);
        fail(s, msg);
    } else if (phase == PHASE_AUTH) {
        authenticated(s, resp);
    } else if (phase == PHASE_RANGE) {
        ranged(s, resp);
    } else {
        fail(s, "watch: the stream ended");
    }
    if (resp) {
        upstream_response_free(resp);
        free(resp);
    }
}

/* ---- the watch stream ---------------------------------------------------------- */

/* Whether the set changed. */
static bool apply_events(struct etcd_source *s, const struct etcd_watch_msg *m)
{
    bool changed = false;
    for (int i = 0; i < m->n_events; i++) {
        char err[256] = "";
        const struct etcd_event *ev = &m->events[i];
        enum etcd_apply r = etcd_set_apply(&s->set, ev->type, &ev->kv, err, sizeof err);
        if (r == ETCD_APPLY_SKIPPED)
            log_warn("etcd %s: key %s skipped: %s", s->prefix, ev->kv.key, err);
        else if (r == ETCD_APPLY_NO_MEMORY)
            log_error("etcd %s: out of memory applying key %s", s->prefix, ev->kv.key);
        changed |= r != ETCD_APPLY_UNCHANGED && r != ETCD_APPLY_UNKNOWN;
    }
    return changed;
}

/* One watch message. Non-zero ends the stream (stream_error or rerange says why). */
static int on_line(const char *line, size_t len, void *arg)
{
    struct etcd_source *s = arg;
    struct etcd_watch_msg m;
    char err[256];
    int stop = 0;
    if (etcd_parse_watch(line, len, &m, err, sizeof err) != 0) {
        snprintf(s->stream_error, sizeof s->stream_error, "bad message: %s", err);
        return 1;
    }
    switch (etcd_sync_message(&s->sync, &m)) {
    case ETCD_IGNORE:
        if (m.created) {
            s->backoff_ms = DISCOVERY_BACKOFF_MIN_MS;
            if (s->failing)
                report_set(s); /* following again */
        }
        break;
    case ETCD_APPLY:
        if (apply_events(s, &m) || s->failing)
            report_set(s); /* a PUT of the same value changes nothing */
        break;
    case ETCD_RERANGE:
        s->rerange = true;
        stop = 1;
        break;
    case ETCD_BROKEN:
        snprintf(s->stream_error, sizeof s->stream_error, "%s",
                 m.reason ? m.reason : "the gateway reported an error");
        stop = 1;
        break;
    }
    etcd_watch_msg_free(&m);
    return stop;
}

static size_t on_watch_data(void *arg, int status, const char *data, size_t n)
{
    struct etcd_source *s = arg;
    if (status != 200) { /* an error answer: keep its start for the message */
        size_t k = ETCD_ERROR_BODY_MAX - s->answer_len;
        k = n < k ? n : k;
        memcpy(s->answer + s->answer_len, data, k);
        s->answer_len += k;
        return n;
    }
    int rc = etcd_lines_feed(&s->lines, data, n, on_line, s);
    if (rc == ETCD_LINES_TOO_LONG)
        snprintf(s->stream_error, sizeof s->stream_error, "a message over %u bytes", ETCD_MAX_LINE);
    else if (rc == ETCD_LINES_NO_MEMORY)
        snprintf(s->stream_error, sizeof s->stream_error, "out of memory");
    return rc == 0 ? n : 0; /* 0 aborts the transfer: on_done follows */
}

/* ---- life ---------------------------------------------------------------------- */

static char *dup_or_null(const char *p, bool *ok)
{
    char *d = p ? strdup(p) : NULL;
    if (p && !d)
        *ok = false;
    return d;
}

struct etcd_source *etcd_source_new(struct loop *loop, const struct etcd_source_conf *conf,
                                    discovery_cb cb, void *arg, char *err, size_t errsize)
{
    if (!conf->prefix || !*conf->prefix || conf->n_endpoints == 0 || !conf->endpoints || !cb) {
        snprintf(err, errsize, "etcd: a prefix and at least one endpoint are required");
        return NULL;
    }
    for (size_t i = 0; i < conf->n_endpoints; i++) {
        const char *e = conf->endpoints[i];
        if (!e || (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0) ||
            strlen(e) > 1000) {
            snprintf(err, errsize, "etcd %s: endpoint %s is not an http:// or https:// URL",
                     conf->prefix, e ? e : "(null)");
            return NULL;
        }
    }
    struct etcd_source *s = calloc(1, sizeof *s);
    bool ok = s != NULL;
    if (s) {
        s->loop = loop;
        s->cb = cb;
        s->arg = arg;
        s->tls = conf->tls;
        s->backoff_ms = DISCOVERY_BACKOFF_MIN_MS;
        loop_timer_init(&s->retry_timer, on_retry, s);
        etcd_sync_init(&s->sync);
        etcd_lines_init(&s->lines, ETCD_MAX_LINE);
        s->prefix = dup_or_null(conf->prefix, &ok);
        s->username = conf->username && *conf->username ? dup_or_null(conf->username, &ok) : NULL;
        s->password = dup_or_null(conf->password, &ok);
        s->endpoints = calloc(conf->n_endpoints, sizeof *s->endpoints);
        ok = ok && s->endpoints;
        for (size_t i = 0; ok && i < conf->n_endpoints; i++, s->n_endpoints++)
            s->endpoints[i] = dup_or_null(conf->endpoints[i], &ok);
        s->up = ok ? upstream_new(loop) : NULL;
        ok = ok && s->up;
    }
    if (!ok) {
        snprintf(err, errsize, "etcd %s: out of memory", conf->prefix);
        etcd_source_free(s);
        return NULL;
    }
    loop_timer_start(loop, &s->retry_timer, 0); /* the first step, from the loop */
    return s;
}

void etcd_source_free(struct etcd_source *s)
{
    if (!s)
        return;
    loop_timer_stop(s->loop, &s->retry_timer);
    if (s->xfer)
        upstream_cancel(s->up, s->xfer);
    upstream_free(s->up);
    for (size_t i = 0; i < s->n_endpoints; i++)
        free(s->endpoints[i]);
    free(s->endpoints);
    free(s->prefix);
    free(s->username);
    if (s->password)
        memset(s->password, 0, strlen(s->password));
    free(s->password);
    free(s->token);
    free(s->body);
    etcd_set_free(&s->set);
    etcd_lines_free(&s->lines);
    free(s);
}
