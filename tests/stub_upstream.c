/*
 * stub_upstream.c - the demo upstream (SPEC 2.5) and the integration tests' stub.
 *
 * A small libmicrohttpd server that answers every request with a JSON echo of
 * what it received (method, raw target, headers, body), so that `curl
 * http://127.0.0.1:8080/demo/...` through ahoyd shows something useful and the
 * tests can assert on exactly what ahoyd forwarded.
 *
 * Fault modes, for the tests:
 *   - per request, from request headers (they pass through the proxy):
 *     X-Stub-Status: N, X-Stub-Delay-Ms: N, X-Stub-Body-Bytes: N (plain body of
 *     N 'x'), X-Stub-Header-Bytes: N (a response header X-Big of N bytes),
 *     X-Stub-Retry-After: V, X-Stub-Header: Name: value (repeatable),
 *     X-Stub-Pause-Ms: N (with X-Stub-Body-Bytes: the head and the body's first 100
 *     bytes, then N ms of silence, then the rest),
 *     X-Stub-Action: reset | close-mid-body | hang;
 *     X-Stub-Stream: a streamed body (chunked unless said otherwise):
 *       drip      "first\n", X-Stub-Pause-Ms of silence, then "rest\n";
 *       sse       X-Stub-Events events (text/event-stream) X-Stub-Interval-Ms apart;
 *       download  X-Stub-Bytes bytes of stub_pattern(), with Content-Length unless
 *                 X-Stub-Chunked: 1;
 *       reset     X-Stub-Bytes bytes, then the connection is reset (RST);
 *     X-Stub-Sink: 1 (the request body is counted and summed, not kept: the answer has
 *     X-Stub-Sink-Bytes and X-Stub-Sink-Sum, FNV-1a 64 in hex);
 *   - instance-wide, on the stub's own port under /_stub/: POST /_stub/mode
 *     (JSON, optionally for the next `count` requests, optionally only for the
 *     requests whose path is `path`, e.g. a health-check path), POST /_stub/reset,
 *     GET /_stub/requests (the last 1000 recorded requests, arrival order, each
 *     with the peer_port of its connection),
 *     GET /_stub/count.
 *   Per-request headers win over the mode; the mode wins over the command line.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a delay or a
 * hang simply sleeps in its own thread, in small slices, watching whether the
 * client went away and whether the stub is stopping.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#define MAX_RECORDS 1000
#define MAX_DELAY_MS 60000L
#define HANG_MS 60000L
#define MAX_BODY (64L * 1024 * 1024)        /* request bodies kept at most */
#define MAX_BODY_BYTES (512L * 1024 * 1024) /* X-Stub-Body-Bytes cap */
#define MAX_HEADER_BYTES (200L * 1024)      /* X-Stub-Header-Bytes cap (fits the pool) */
#define SLICE_MS 10

enum action { ACTION_NONE = 0, ACTION_RESET, ACTION_CLOSE_MID_BODY, ACTION_HANG };

/* A behaviour: every field optional (see each field for its "not set" value). */
struct behaviour {
    int status;         /* 0 = not set */
    long delay_ms;      /* -1 = not set */
    enum action action; /* ACTION_NONE = not set */
    char *retry_after;  /* NULL = not set */
    long body_bytes;    /* -1 = not set */
    long header_bytes;  /* -1 = not set */
};

/* One request in flight: created by the URI log callback, freed on completion. */
struct request {
    char *target;      /* raw request-target as received */
    uint64_t seq;      /* arrival order */
    double arrival_ms; /* monotonic */
    char *body;
    size_t body_len, body_cap;
    bool body_truncated;
    bool headers_seen; /* first handler call done */
    bool sink;         /* X-Stub-Sink: the body is counted and summed, not kept */
    uint64_t sink_bytes, sink_sum;
};

static const char *stub_name = "demo";
static struct behaviour base_behaviour = {0, -1, ACTION_NONE, NULL, -1, -1};
static atomic_int stopping;
static atomic_uint_fast64_t next_seq;

/* Shared state, under state_lock. */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static struct behaviour mode = {0, -1, ACTION_NONE, NULL, -1, -1};
static bool mode_active;
static char *mode_path; /* NULL: the mode applies to every request */
static long mode_count;            /* 0 = until changed */
static char *records[MAX_RECORDS]; /* printed JSON objects, ring buffer */
static uint64_t record_seq[MAX_RECORDS];
static size_t record_start, record_n;
static long request_count;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void behaviour_clear(struct behaviour *b)
{
    free(b->retry_after);
    *b = (struct behaviour){0, -1, ACTION_NONE, NULL, -1, -1};
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno != 0 || *end != '\0' || v < min)
        return -1;
    *out = v > max ? max : v;
    return 0;
}

static int parse_action(const char *s, enum action *out)
{
    if (strcmp(s, "reset") == 0)
        *out = ACTION_RESET;
    else if (strcmp(s, "close-mid-body") == 0)
        *out = ACTION_CLOSE_MID_BODY;
    else if (strcmp(s, "hang") == 0)
        *out = ACTION_HANG;
    else if (strcmp(s, "none") == 0 || *s == '\0')
        *out = ACTION_NONE;
    else
        return -1;
    return 0;
}

/* ---- per-request context -------------------------------------------------- */

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *con)
{
    struct request *r = calloc(1, sizeof(*r));

    (void)cls;
    (void)con;
    if (r == NULL)
        return NULL;
    r->target = strdup(uri != NULL ? uri : "");
    r->seq = atomic_fetch_add(&next_seq, 1);
    r->arrival_ms = now_ms();
    return r;
}

static void request_completed(void *cls, struct MHD_Connection *con, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct request *r = *req_cls;

    (void)cls;
    (void)con;
    (void)toe;
    if (r != NULL) {
        free(r->target);
        free(r->body);
        free(r);
    }
    *req_cls = NULL;
}

/* X-Stub-Sink: count the body and sum it (FNV-1a 64) instead of keeping it. */
static int sink_take(struct request *r, const char *data, size_t n)
{
    if (r->sink_bytes == 0)
        r->sink_sum = 14695981039346656037u;
    for (size_t i = 0; i < n; i++)
        r->sink_sum = (r->sink_sum ^ (unsigned char)data[i]) * 1099511628211u;
    r->sink_bytes += n;
    return 0;
}

static void sink_headers(struct MHD_Response *resp, const struct request *r)
{
    char v[32];
    if (!r->sink)
        return;
    snprintf(v, sizeof v, "%llu", (unsigned long long)r->sink_bytes);
    MHD_add_response_header(resp, "X-Stub-Sink-Bytes", v);
    snprintf(v, sizeof v, "%016llx", (unsigned long long)r->sink_sum);
    MHD_add_response_header(resp, "X-Stub-Sink-Sum", v);
}

static int body_append(struct request *r, const char *data, size_t n)
{
    if (r->sink)
        return sink_take(r, data, n);
    if (r->body_len + n > (size_t)MAX_BODY) {
        r->body_truncated = true;
        n = (size_t)MAX_BODY - r->body_len;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        char *p;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        p = realloc(r->body, cap);
        if (p == NULL)
            return -1;
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

/* ---- the record / echo ------------------------------------------------------ */

struct header_walk {
    cJSON *obj;
};

static enum MHD_Result add_header_json(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    struct header_walk *w = cls;
    cJSON *old;

    (void)kind;
    if (key == NULL)
        return MHD_YES;
    if (value == NULL)
        value = "";
    old = cJSON_GetObjectItemCaseSensitive(w->obj, key);
    if (old != NULL && cJSON_IsString(old)) {
        /* Repeated header: combine as HTTP allows (", "). */
        size_t n = strlen(old->valuestring) + strlen(value) + 3;
        char *joined = malloc(n);
        if (joined != NULL) {
            snprintf(joined, n, "%s, %s", old->valuestring, value);
            cJSON_ReplaceItemInObjectCaseSensitive(w->obj, key, cJSON_CreateString(joined));
            free(joined);
        }
    } else {
        cJSON_AddStringToObject(w->obj, key, value);
    }
    return MHD_YES;
}

static char *hex_of(const char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *out = malloc(2 * n + 1);
    size_t i;

    if (out == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[(unsigned char)p[i] >> 4];
        out[2 * i + 1] = digits[(unsigned char)p[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

/* The common part of the echo and the record. */
static void describe_request(cJSON *o, struct MHD_Connection *con, const char *method,
                             const struct request *r)
{
    struct header_walk w;
    char *hex;

    cJSON_AddStringToObject(o, "method", method);
    cJSON_AddStringToObject(o, "target", r->target);
    w.obj = cJSON_AddObjectToObject(o, "headers");
    MHD_get_connection_values(con, MHD_HEADER_KIND, add_header_json, &w);
    /* cJSON strings end at NUL; body_hex carries the exact bytes. */
    cJSON_AddStringToObject(o, "body", r->body != NULL ? r->body : "");
    hex = hex_of(r->body != NULL ? r->body : "", r->body_len);
    cJSON_AddStringToObject(o, "body_hex", hex != NULL ? hex : "");
    free(hex);
    cJSON_AddNumberToObject(o, "body_len", (double)r->body_len);
}

static void record_request(struct MHD_Connection *con, const char *method, const struct request *r)
{
    cJSON *o = cJSON_CreateObject();
    char *text;
    size_t i, pos, idx;

    describe_request(o, con, method, r);
    cJSON_AddNumberToObject(o, "time_ms", r->arrival_ms);
    /* the client's port tells one connection from another (health checks vs calls) */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    int port = 0;
    if (ci != NULL && ci->client_addr != NULL) {
        if (ci->client_addr->sa_family == AF_INET)
            port = ntohs(((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_port);
        else if (ci->client_addr->sa_family == AF_INET6)
            port = ntohs(((const struct sockaddr_in6 *)(const void *)ci->client_addr)->sin6_port);
    }
    cJSON_AddNumberToObject(o, "peer_port", port);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL)
        return;

    pthread_mutex_lock(&state_lock);
    request_count++;
    if (record_n == MAX_RECORDS) {
        /* Drop the oldest. */
        free(records[record_start]);
        records[record_start] = NULL;
        record_start = (record_start + 1) % MAX_RECORDS;
        record_n--;
    }
    /* Insert by arrival (seq): usually at the end; shift later ones right. */
    pos = record_n;
    while (pos > 0 && record_seq[(record_start + pos - 1) % MAX_RECORDS] > r->seq)
        pos--;
    for (i = record_n; i > pos; i--) {
        size_t to = (record_start + i) % MAX_RECORDS;
        size_t from = (record_start + i - 1) % MAX_RECORDS;
        records[to] = records[from];
        record_seq[to] = record_seq[from];
    }
    idx = (record_start + pos) % MAX_RECORDS;
    records[idx] = text;
    record_seq[idx] = r->seq;
    record_n++;
    pthread_mutex_unlock(&state_lock);
}

static void records_clear_locked(void)
{
    size_t i;

    for (i = 0; i < record_n; i++) {
        free(records[(record_start + i) % MAX_RECORDS]);
        records[(record_start + i) % MAX_RECORDS] = NULL;
    }
    record_start = 0;
    record_n = 0;
    request_count = 0;
}

/* The behaviour for one ordinary request: command line, then the mode (consuming one
 * of its count), then the request's own X-Stub-* headers. */
static bool mode_path_matches(const char *target)
{
    if (mode_path == NULL)
        return true;
    size_t n = strlen(mode_path);
    return strncmp(target, mode_path, n) == 0 && (target[n] == '\0' || target[n] == '?');
}

static int effective_behaviour(struct MHD_Connection *con, const char *target,
                               struct behaviour *b)
{
    const char *v;
    long n;

    *b = base_behaviour;
    b->retry_after = base_behaviour.retry_after ? strdup(base_behaviour.retry_after) : NULL;

    pthread_mutex_lock(&state_lock);
    if (mode_active && mode_path_matches(target)) {
        if (mode.status)
            b->status = mode.status;
        if (mode.delay_ms >= 0)
            b->delay_ms = mode.delay_ms;
        if (mode.action != ACTION_NONE)
            b->action = mode.action;
        if (mode.body_bytes >= 0)
            b->body_bytes = mode.body_bytes;
        if (mode.header_bytes >= 0)
            b->header_bytes = mode.header_bytes;
        if (mode.retry_after != NULL) {
            free(b->retry_after);
            b->retry_after = strdup(mode.retry_after);
        }
        if (mode_count > 0 && --mode_count == 0) {
            behaviour_clear(&mode);
            mode_active = false;
        }
    }
    pthread_mutex_unlock(&state_lock);

    v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Status");
    if (v != NULL && parse_long(v, 100, 999, &n) == 0)
        b->status = (int)n;
    v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Delay-Ms");
    if (v != NULL && parse_long(v, 0, MAX_DELAY_MS, &n) == 0)
        b->delay_ms = n;
    v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Body-Bytes");
    if (v != NULL && parse_long(v, 0, MAX_BODY_BYTES, &n) == 0)
        b->body_bytes = n;
    v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Header-Bytes");
    if (v != NULL && parse_long(v, 0, MAX_HEADER_BYTES, &n) == 0)
        b->header_bytes = n;
    v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Retry-After");
    if (v != NULL) {
        free(b->retry_after);
        b->retry_after = strdup(v);
    }
    v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Action");
    if (v != NULL && parse_action(v, &b->action) != 0)
        return -1;
    return 0;
}

/* ---- waiting ------------------------------------------------------------------ */

/* True when the client closed its side (or the socket broke). */
static bool client_gone(struct MHD_Connection *con)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd pfd;
    char c;

    if (ci == NULL)
        return false;
    pfd.fd = ci->connect_fd;
    pfd.events = POLLIN | POLLRDHUP;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) <= 0)
        return false;
    if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return true;
    if (pfd.revents & POLLIN) {
        /* Data (a pipelined request) means alive; EOF means gone. */
        ssize_t n = recv(pfd.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    return false;
}

/* Sleep up to ms in slices; returns false when the client left or the stub stops. */
static bool wait_ms(struct MHD_Connection *con, long ms)
{
    double end = now_ms() + (double)ms;

    for (;;) {
        double left = end - now_ms();
        struct timespec ts;
        long slice;

        if (atomic_load(&stopping) || client_gone(con))
            return false;
        if (left <= 0)
            return true;
        slice = left < SLICE_MS ? (long)left + 1 : SLICE_MS;
        ts.tv_sec = 0;
        ts.tv_nsec = slice * 1000000L;
        nanosleep(&ts, NULL);
    }
}

/* ---- responses --------------------------------------------------------------- */

struct body_gen {
    uint64_t total;   /* bytes to produce */
    uint64_t fail_at; /* produce this many, then report an error (UINT64_MAX = never) */
    uint64_t pause_at; /* produce this many, then be silent for pause_ms */
    long pause_ms;     /* 0 = no pause */
};

static ssize_t body_gen_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct body_gen *g = cls;
    uint64_t limit = g->fail_at < g->total ? g->fail_at : g->total;
    size_t n;

    if (pos >= limit)
        return g->fail_at < g->total ? MHD_CONTENT_READER_END_WITH_ERROR
                                     : MHD_CONTENT_READER_END_OF_STREAM;
    if (g->pause_ms > 0 && pos >= g->pause_at) {
        /* this connection's own thread: sleep in slices, stop when the stub stops */
        for (long waited = 0; waited < g->pause_ms && !atomic_load(&stopping);
             waited += SLICE_MS) {
            struct timespec ts = {0, SLICE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        g->pause_ms = 0;
    }
    if (g->pause_ms > 0 && limit > g->pause_at)
        limit = g->pause_at; /* the first piece alone, then the pause */
    n = (size_t)(limit - pos) < max ? (size_t)(limit - pos) : max;
    memset(buf, 'x', n);
    return (ssize_t)n;
}

static enum MHD_Result queue_text(struct MHD_Connection *con, unsigned status, const char *ctype,
                                  const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "X-Stub-Name", stub_name);
    ret = MHD_queue_response(con, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

struct extra_walk {
    struct MHD_Response *resp;
};

static enum MHD_Result add_extra_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    struct extra_walk *w = cls;
    const char *colon;
    char name[256];
    size_t n;

    (void)kind;
    if (key == NULL || value == NULL || strcasecmp(key, "X-Stub-Header") != 0)
        return MHD_YES;
    colon = strchr(value, ':');
    if (colon == NULL)
        return MHD_YES;
    n = (size_t)(colon - value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof(name))
        return MHD_YES;
    memcpy(name, value, n);
    name[n] = '\0';
    colon++;
    while (*colon == ' ' || *colon == '\t')
        colon++;
    MHD_add_response_header(w->resp, name, colon);
    return MHD_YES;
}

/* ---- X-Stub-Stream modes ----------------------------------------------------------- */

enum stream_kind { STREAM_DRIP, STREAM_SSE, STREAM_DOWNLOAD, STREAM_RESET };

struct stream_gen {
    enum stream_kind kind;
    struct MHD_Connection *con;
    uint64_t total;  /* download, reset: bytes */
    long count;      /* sse: events; drip: pieces sent */
    long sent;       /* sse: events sent */
    long pause_ms;   /* drip: the silence; sse: between events */
    double start_ms; /* sse: event k is due at start_ms + k * pause_ms (no drift) */
};

/* The download pattern: byte i of the body (tests check every byte against it). */
static unsigned char stub_pattern(uint64_t i)
{
    return (unsigned char)((i * 7u) ^ (i >> 11) ^ (i >> 23));
}

/* Sleep until the monotonic time due_ms, in slices; false when the stub stops. */
static bool stream_sleep_until(double due_ms)
{
    for (;;) {
        double left = due_ms - now_ms();
        if (atomic_load(&stopping))
            return false;
        if (left <= 0)
            return true;
        long slice = left < SLICE_MS ? (long)left + 1 : SLICE_MS;
        struct timespec ts = {0, slice * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static bool stream_sleep(long ms)
{
    return stream_sleep_until(now_ms() + (double)ms);
}

static ssize_t stream_drip_read(struct stream_gen *g, char *buf, size_t max)
{
    const char *piece = g->count == 0 ? "first\n" : "rest\n";
    if (g->count >= 2)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (g->count == 1 && !stream_sleep(g->pause_ms))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    g->count++;
    memcpy(buf, piece, strlen(piece) < max ? strlen(piece) : max);
    return (ssize_t)(strlen(piece) < max ? strlen(piece) : max);
}

static ssize_t stream_sse_read(struct stream_gen *g, char *buf, size_t max)
{
    if (g->sent >= g->count)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (g->sent == 0)
        g->start_ms = now_ms();
    else if (!stream_sleep_until(g->start_ms + (double)(g->sent * g->pause_ms)))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    int n = snprintf(buf, max, "id: %ld\ndata: tick %ld\n\n", g->sent, g->sent);
    g->sent++;
    return n < 0 || (size_t)n >= max ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

static ssize_t stream_bytes_read(struct stream_gen *g, uint64_t pos, char *buf, size_t max)
{
    if (pos >= g->total) {
        if (g->kind == STREAM_DOWNLOAD)
            return MHD_CONTENT_READER_END_OF_STREAM;
        /* reset: let the bytes reach the peer, then close with RST (SO_LINGER 0) */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(g->con, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct linger lg = {1, 0};
        stream_sleep(100);
        if (ci != NULL)
            setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = g->total - pos < max ? (size_t)(g->total - pos) : max;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)stub_pattern(pos + i);
    return (ssize_t)n;
}

static ssize_t stream_gen_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_gen *g = cls;
    switch (g->kind) {
    case STREAM_DRIP: return stream_drip_read(g, buf, max);
    case STREAM_SSE: return stream_sse_read(g, buf, max);
    default: return stream_bytes_read(g, pos, buf, max);
    }
}

static long header_long(struct MHD_Connection *con, const char *name, long max, long dflt)
{
    const char *v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, name);
    long n;
    return v != NULL && parse_long(v, 0, max, &n) == 0 ? n : dflt;
}

/* Answer with an X-Stub-Stream body (see the top of the file). */
static enum MHD_Result answer_stream(struct MHD_Connection *con, unsigned status, const char *kind)
{
    struct stream_gen *g = calloc(1, sizeof(*g));
    uint64_t size = MHD_SIZE_UNKNOWN;
    const char *ctype = "application/octet-stream";
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (g == NULL)
        return MHD_NO;
    g->con = con;
    g->total = (uint64_t)header_long(con, "X-Stub-Bytes", LONG_MAX, 0);
    if (strcmp(kind, "drip") == 0) {
        g->kind = STREAM_DRIP;
        g->pause_ms = header_long(con, "X-Stub-Pause-Ms", MAX_DELAY_MS, 1000);
        ctype = "text/plain";
    } else if (strcmp(kind, "sse") == 0) {
        g->kind = STREAM_SSE;
        g->count = header_long(con, "X-Stub-Events", 100000, 5);
        g->pause_ms = header_long(con, "X-Stub-Interval-Ms", MAX_DELAY_MS, 200);
        ctype = "text/event-stream";
    } else if (strcmp(kind, "download") == 0) {
        g->kind = STREAM_DOWNLOAD;
        if (header_long(con, "X-Stub-Chunked", 1, 0) == 0)
            size = g->total;
    } else if (strcmp(kind, "reset") == 0) {
        g->kind = STREAM_RESET;
    } else {
        free(g);
        return queue_text(con, 400, "text/plain", "bad X-Stub-Stream\n");
    }
    resp = MHD_create_response_from_callback(size, 64 * 1024, stream_gen_read, g, free);
    if (resp == NULL) {
        free(g);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "X-Stub-Name", stub_name);
    ret = MHD_queue_response(con, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Answer an ordinary (non-/_stub/) request whose body has fully arrived. */
static enum MHD_Result answer_request(struct MHD_Connection *con, const char *method,
                                      struct request *r)
{
    struct behaviour b;
    struct MHD_Response *resp = NULL;
    struct body_gen *gen = NULL;
    struct extra_walk w;
    unsigned status;
    enum MHD_Result ret;

    record_request(con, method, r);
    if (effective_behaviour(con, r->target, &b) != 0) {
        behaviour_clear(&b);
        return queue_text(con, 400, "text/plain", "bad X-Stub-Action\n");
    }
    if (b.delay_ms > 0 && !wait_ms(con, b.delay_ms)) {
        behaviour_clear(&b);
        return MHD_NO;
    }
    if (b.action == ACTION_RESET) {
        behaviour_clear(&b);
        return MHD_NO;
    }
    if (b.action == ACTION_HANG) {
        wait_ms(con, HANG_MS);
        behaviour_clear(&b);
        return MHD_NO;
    }
    status = b.status ? (unsigned)b.status : 200;
    if (MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Stream") != NULL) {
        behaviour_clear(&b);
        return answer_stream(con, status,
                             MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Stream"));
    }

    if (b.action == ACTION_CLOSE_MID_BODY || b.body_bytes >= 0) {
        gen = malloc(sizeof(*gen));
        if (gen == NULL) {
            behaviour_clear(&b);
            return MHD_NO;
        }
        gen->pause_ms = 0;
        gen->pause_at = 100;
        if (b.action == ACTION_CLOSE_MID_BODY) {
            gen->total = 1000;
            gen->fail_at = 100;
        } else {
            const char *pv = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Pause-Ms");
            long pn;
            gen->total = (uint64_t)b.body_bytes;
            gen->fail_at = UINT64_MAX;
            if (pv != NULL && parse_long(pv, 0, MAX_DELAY_MS, &pn) == 0)
                gen->pause_ms = pn;
        }
        resp = MHD_create_response_from_callback(gen->total, 64 * 1024, body_gen_read, gen, free);
        if (resp == NULL) {
            free(gen);
            behaviour_clear(&b);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/plain");
    } else {
        cJSON *o = cJSON_CreateObject();
        char *text;

        /* The greeting first, for people reading it with curl. */
        cJSON_AddStringToObject(o, "upstream", stub_name);
        cJSON_AddStringToObject(o, "message", "hello from the demo upstream");
        describe_request(o, con, method, r);
        text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (text == NULL) {
            behaviour_clear(&b);
            return MHD_NO;
        }
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL) {
            free(text);
            behaviour_clear(&b);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json");
    }
    MHD_add_response_header(resp, "X-Stub-Name", stub_name);
    if (b.retry_after != NULL && *b.retry_after != '\0')
        MHD_add_response_header(resp, "Retry-After", b.retry_after);
    if (b.header_bytes > 0) {
        char *big = malloc((size_t)b.header_bytes + 1);
        if (big != NULL) {
            memset(big, 'b', (size_t)b.header_bytes);
            big[b.header_bytes] = '\0';
            MHD_add_response_header(resp, "X-Big", big);
            free(big);
        }
    }
    w.resp = resp;
    MHD_get_connection_values(con, MHD_HEADER_KIND, add_extra_header, &w);
    sink_headers(resp, r);
    ret = MHD_queue_response(con, status, resp);
    MHD_destroy_response(resp);
    behaviour_clear(&b);
    return ret;
}

/* ---- /_stub/ control API --------------------------------------------------------- */

static enum MHD_Result control_mode(struct MHD_Connection *con, const struct request *r)
{
    cJSON *j = cJSON_ParseWithLength(r->body != NULL ? r->body : "", r->body_len);
    struct behaviour b = {0, -1, ACTION_NONE, NULL, -1, -1};
    cJSON *it;
    long count = 0;

    if (j == NULL || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return queue_text(con, 400, "application/json", "{\"error\":\"body is not JSON\"}");
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "status")) && cJSON_IsNumber(it))
        b.status = it->valueint;
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "delay_ms")) && cJSON_IsNumber(it))
        b.delay_ms = it->valueint > MAX_DELAY_MS ? MAX_DELAY_MS : it->valueint;
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "body_bytes")) && cJSON_IsNumber(it))
        b.body_bytes = (long)it->valuedouble;
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "header_bytes")) && cJSON_IsNumber(it))
        b.header_bytes = it->valueint > MAX_HEADER_BYTES ? MAX_HEADER_BYTES : it->valueint;
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "retry_after")) && cJSON_IsString(it))
        b.retry_after = strdup(it->valuestring);
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "action")) && cJSON_IsString(it) &&
        parse_action(it->valuestring, &b.action) != 0) {
        cJSON_Delete(j);
        behaviour_clear(&b);
        return queue_text(con, 400, "application/json", "{\"error\":\"unknown action\"}");
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "count")) && cJSON_IsNumber(it))
        count = it->valueint < 0 ? 0 : it->valueint;
    char *path = NULL;
    if ((it = cJSON_GetObjectItemCaseSensitive(j, "path")) && cJSON_IsString(it))
        path = strdup(it->valuestring);
    cJSON_Delete(j);

    pthread_mutex_lock(&state_lock);
    behaviour_clear(&mode);
    free(mode_path);
    mode_path = path;
    mode = b;
    mode_active = true;
    mode_count = count;
    pthread_mutex_unlock(&state_lock);
    return queue_text(con, 200, "application/json", "{\"ok\":true}");
}

static enum MHD_Result control_requests(struct MHD_Connection *con)
{
    size_t i, total = 3;
    char *out, *p;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    pthread_mutex_lock(&state_lock);
    for (i = 0; i < record_n; i++)
        total += strlen(records[(record_start + i) % MAX_RECORDS]) + 1;
    out = malloc(total);
    if (out == NULL) {
        pthread_mutex_unlock(&state_lock);
        return MHD_NO;
    }
    p = out;
    *p++ = '[';
    for (i = 0; i < record_n; i++) {
        const char *rec = records[(record_start + i) % MAX_RECORDS];
        size_t n = strlen(rec);
        if (i > 0)
            *p++ = ',';
        memcpy(p, rec, n);
        p += n;
    }
    *p++ = ']';
    *p = '\0';
    pthread_mutex_unlock(&state_lock);

    resp = MHD_create_response_from_buffer(strlen(out), out, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(out);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    ret = MHD_queue_response(con, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result control(struct MHD_Connection *con, const char *method,
                               const struct request *r)
{
    const char *path = r->target + strlen("/_stub/");
    char buf[64];

    if (strcmp(path, "mode") == 0 && strcmp(method, "POST") == 0)
        return control_mode(con, r);
    if (strcmp(path, "reset") == 0 && strcmp(method, "POST") == 0) {
        pthread_mutex_lock(&state_lock);
        behaviour_clear(&mode);
        free(mode_path);
        mode_path = NULL;
        mode_active = false;
        mode_count = 0;
        records_clear_locked();
        pthread_mutex_unlock(&state_lock);
        return queue_text(con, 200, "application/json", "{\"ok\":true}");
    }
    if (strcmp(path, "requests") == 0 && strcmp(method, "GET") == 0)
        return control_requests(con);
    if (strcmp(path, "count") == 0 && strcmp(method, "GET") == 0) {
        pthread_mutex_lock(&state_lock);
        snprintf(buf, sizeof(buf), "{\"count\":%ld}", request_count);
        pthread_mutex_unlock(&state_lock);
        return queue_text(con, 200, "application/json", buf);
    }
    return queue_text(con, 404, "application/json", "{\"error\":\"unknown stub control\"}");
}

/* ---- WebSocket endpoints ---------------------------------------------------------- */

/* A GET whose path holds /ws-echo answers a minimal RFC 6455 handshake (101 with
 * Sec-WebSocket-Accept) and echoes every frame, unmasked; /ws-hello does the same after
 * a first text frame "welcome" sent with the 101; /ws-sink reads frames and answers
 * none (but a close); /ws-close accepts and closes at once;
 * /ws-deny answers 403 with a body, /ws-deny-chunked 426 with a chunked one. The tunnel
 * tests talk to them through ahoyd. */

struct sha1 {
    uint32_t h[5];
    uint64_t len;
    unsigned char blk[64];
    size_t n;
};

static uint32_t rol32(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static void sha1_block(struct sha1 *c)
{
    uint32_t w[80], a, b, d, e, f, k, t, cc;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)c->blk[4 * i] << 24 | (uint32_t)c->blk[4 * i + 1] << 16 |
               (uint32_t)c->blk[4 * i + 2] << 8 | c->blk[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
    for (int i = 0; i < 80; i++) {
        if (i < 20)
            f = (b & cc) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ cc ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & cc) | (b & d) | (cc & d), k = 0x8F1BBCDC;
        else
            f = b ^ cc ^ d, k = 0xCA62C1D6;
        t = rol32(a, 5) + f + e + k + w[i];
        e = d, d = cc, cc = rol32(b, 30), b = a, a = t;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e;
}

static void sha1_add(struct sha1 *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        c->blk[c->n++] = p[i];
        c->len++;
        if (c->n == 64) {
            sha1_block(c);
            c->n = 0;
        }
    }
}

static void sha1_of(const void *data, size_t n, unsigned char out[20])
{
    struct sha1 c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    unsigned char pad = 0x80, zero = 0, be[8];
    sha1_add(&c, data, n);
    uint64_t bits = c.len * 8;
    sha1_add(&c, &pad, 1);
    while (c.n != 56)
        sha1_add(&c, &zero, 1);
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_add(&c, be, 8);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (unsigned char)(c.h[i] >> (24 - 8 * j));
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

static bool read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static bool write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

struct ws_conn {
    int fd;
    bool close_at_once, hello, sink;
    struct MHD_UpgradeResponseHandle *urh;
};

/* Echo frames until a close frame or EOF: each frame's payload is unmasked and sent back
 * in a frame of the same opcode, unmasked (a close is answered with a close). */
static void *ws_echo_thread(void *arg)
{
    struct ws_conn *w = arg;
    int fd = w->fd;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (w->close_at_once) {
        shutdown(fd, SHUT_RDWR);
    } else if (!w->hello || write_full(fd, "\x81\x07welcome", 9)) {
        for (;;) {
            unsigned char h[14];
            if (!read_full(fd, h, 2))
                break;
            int op = h[0] & 15;
            bool masked = h[1] & 0x80;
            uint64_t len = h[1] & 127;
            if (len == 126) {
                if (!read_full(fd, h + 2, 2))
                    break;
                len = (uint64_t)h[2] << 8 | h[3];
            } else if (len == 127) {
                if (!read_full(fd, h + 2, 8))
                    break;
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = len << 8 | h[2 + i];
            }
            unsigned char mask[4] = {0};
            if (masked && !read_full(fd, mask, 4))
                break;
            if (len > MAX_BODY)
                break;
            unsigned char *p = malloc(len ? len : 1);
            if (!p || !read_full(fd, p, len)) {
                free(p);
                break;
            }
            for (uint64_t i = 0; i < len; i++)
                p[i] ^= mask[i & 3];
            unsigned char oh[10];
            size_t ohl = 2;
            oh[0] = (unsigned char)(0x80 | op);
            if (len < 126) {
                oh[1] = (unsigned char)len;
            } else if (len < 65536) {
                oh[1] = 126, oh[2] = (unsigned char)(len >> 8), oh[3] = (unsigned char)len;
                ohl = 4;
            } else {
                oh[1] = 127;
                for (int i = 0; i < 8; i++)
                    oh[2 + i] = (unsigned char)(len >> (56 - 8 * i));
                ohl = 10;
            }
            bool ok = (w->sink && op != 8) || (write_full(fd, oh, ohl) && write_full(fd, p, len));
            free(p);
            if (!ok || op == 8)
                break;
        }
        shutdown(fd, SHUT_RDWR);
    }
    MHD_upgrade_action(w->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(w);
    return NULL;
}

static void ws_upgraded(void *cls, struct MHD_Connection *con, void *req_cls, const char *extra_in,
                        size_t extra_in_size, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh)
{
    struct ws_conn *w = calloc(1, sizeof(*w));
    pthread_t th;

    (void)con;
    (void)req_cls;
    if (w == NULL) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        return;
    }
    w->fd = sock;
    w->urh = urh;
    w->close_at_once = cls == (void *)1;
    w->hello = cls == (void *)2;
    w->sink = cls == (void *)3;
    (void)extra_in; /* none: ahoyd sends nothing of the client's before the 101 */
    (void)extra_in_size;
    if (pthread_create(&th, NULL, ws_echo_thread, w) != 0) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        free(w);
        return;
    }
    pthread_detach(th);
}

/* The chunked refusal's body, five bytes a chunk. */
static ssize_t deny_chunks(void *cls, uint64_t pos, char *buf, size_t max)
{
    static const char text[] = "upgrade refused, in chunks\n";
    size_t n = sizeof(text) - 1 - (pos < sizeof(text) - 1 ? pos : sizeof(text) - 1);

    (void)cls;
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    n = n < 5 ? n : 5;
    n = n < max ? n : max;
    memcpy(buf, text + pos, n);
    return (ssize_t)n;
}

static enum MHD_Result answer_websocket(struct MHD_Connection *con, const char *method,
                                        struct request *r)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const char *key = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *proto =
        MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Sec-WebSocket-Protocol");
    char cat[256], accept[64];
    unsigned char digest[20];
    struct MHD_Response *resp;
    enum MHD_Result ret;

    record_request(con, method, r);
    if (strstr(r->target, "/ws-deny-chunked")) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64, deny_chunks, NULL, NULL);
        if (resp == NULL)
            return MHD_NO;
        ret = MHD_queue_response(con, 426, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (strstr(r->target, "/ws-deny") || !key || strlen(key) > 100) {
        return queue_text(con, 403, "text/plain", "websocket refused by the stub\n");
    }
    snprintf(cat, sizeof(cat), "%s%s", key, guid);
    sha1_of(cat, strlen(cat), digest);
    base64(digest, 20, accept);
    resp = MHD_create_response_for_upgrade(ws_upgraded, strstr(r->target, "/ws-close") ? (void *)1
                                                        : strstr(r->target, "/ws-hello")
                                                            ? (void *)2
                                                        : strstr(r->target, "/ws-sink")
                                                            ? (void *)3
                                                            : NULL);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Upgrade", "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    if (proto != NULL)
        MHD_add_response_header(resp, "Sec-WebSocket-Protocol", proto);
    ret = MHD_queue_response(con, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- the handler ----------------------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *con, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **req_cls)
{
    struct request *r = *req_cls;

    (void)cls;
    (void)url;
    (void)version;
    if (r == NULL)
        return MHD_NO;
    if (!r->headers_seen) {
        /* Queue nothing in the first call: MHD would add Connection: close. */
        r->headers_seen = true;
        r->sink = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Stub-Sink") != NULL;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (body_append(r, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strncmp(r->target, "/_stub/", 7) == 0)
        return control(con, method, r);
    if (strstr(r->target, "/ws-") && strcmp(method, "GET") == 0)
        return answer_websocket(con, method, r);
    return answer_request(con, method, r);
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out, "usage: stub_upstream [--listen HOST:PORT] [--name NAME] [--status N]\n"
                 "                     [--delay-ms N] [--action reset|close-mid-body|hang]\n"
                 "                     [--tls-cert PEM --tls-key PEM]\n");
}

/* A whole file, NUL-terminated (the TLS certificate and key); NULL on failure. */
static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    if (f == NULL)
        return NULL;
    do {
        if (cap - len < 4096) {
            char *p = realloc(buf, cap + 8192);
            if (p == NULL)
                break;
            buf = p;
            cap += 8192;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

/* "127.0.0.1:9001" or "[::1]:9001" into a sockaddr. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, bool *v6,
                        char *host, size_t host_cap)
{
    const char *colon;
    size_t hlen;
    long port;

    memset(ss, 0, sizeof(*ss));
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= host_cap)
            return -1;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        colon = close + 1;
        *v6 = true;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen >= host_cap)
            return -1;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        *v6 = false;
    }
    if (parse_long(colon + 1, 0, 65535, &port) != 0)
        return -1;
    if (*v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        *len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (strcmp(host, "localhost") == 0)
            strcpy(host, "127.0.0.1");
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        *len = sizeof(*a);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen_text = "127.0.0.1:9001";
    struct sockaddr_storage ss;
    socklen_t sslen;
    char host[INET6_ADDRSTRLEN + 1];
    bool v6;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    sigset_t set;
    int sig, i;
    unsigned int flags;
    char *tls_cert = NULL, *tls_key = NULL; /* https, for the tunnel tests */
    struct MHD_OptionItem tls_ops[3] = {{MHD_OPTION_END, 0, NULL}};

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            listen_text = v;
        } else if (strcmp(a, "--name") == 0) {
            stub_name = v;
        } else if (strcmp(a, "--status") == 0 && parse_long(v, 100, 999, &n) == 0) {
            base_behaviour.status = (int)n;
        } else if (strcmp(a, "--delay-ms") == 0 && parse_long(v, 0, MAX_DELAY_MS, &n) == 0) {
            base_behaviour.delay_ms = n;
        } else if (strcmp(a, "--action") == 0 && parse_action(v, &base_behaviour.action) == 0) {
            ;
        } else if (strcmp(a, "--tls-cert") == 0 && (tls_cert = read_pem(v)) != NULL) {
            ;
        } else if (strcmp(a, "--tls-key") == 0 && (tls_key = read_pem(v)) != NULL) {
            ;
        } else {
            fprintf(stderr, "stub_upstream: bad argument %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (parse_listen(listen_text, &ss, &sslen, &v6, host, sizeof(host)) != 0) {
        fprintf(stderr, "stub_upstream: bad --listen %s (want HOST:PORT)\n", listen_text);
        return 2;
    }

    /* Every thread (MHD's included) inherits this mask; main waits with sigwait. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_ALLOW_UPGRADE;
    if (v6)
        flags |= MHD_USE_IPv6;
    (void)sslen;
    if (tls_cert != NULL && tls_key != NULL) {
        flags |= MHD_USE_TLS;
        tls_ops[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, tls_cert};
        tls_ops[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, tls_key};
        tls_ops[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    d = MHD_start_daemon(
        flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_URI_LOG_CALLBACK, uri_logger, NULL, MHD_OPTION_NOTIFY_COMPLETED,
        request_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)2000,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(512 * 1024), MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)(512 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024, MHD_OPTION_ARRAY,
        tls_ops, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "stub_upstream: cannot listen on %s\n", listen_text);
        return 3;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (v6)
        printf("stub listening on [%s]:%u\n", host, info != NULL ? info->port : 0u);
    else
        printf("stub listening on %s:%u\n", host, info != NULL ? info->port : 0u);
    fflush(stdout);

    for (;;) {
        if (sigwait(&set, &sig) == 0 && (sig == SIGTERM || sig == SIGINT))
            break;
    }
    atomic_store(&stopping, 1);
    MHD_stop_daemon(d);

    pthread_mutex_lock(&state_lock);
    behaviour_clear(&mode);
    records_clear_locked();
    pthread_mutex_unlock(&state_lock);
    free(tls_cert);
    free(tls_key);
    return 0;
}
