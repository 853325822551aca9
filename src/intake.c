/*
 * intake.c - the client side of a request on libmicrohttpd (MHD): MHD's
 * callbacks, the head checks, routing, the body, request-timeout, the
 * client's connection (half-close, idle head timer) and the two answers
 * written straight onto the socket. The listeners that run MHD are server.c's.
 *
 * A request goes through these handler calls:
 *
 *   URI log callback  raw request-target saved (MHD's url is decoded, so all
 *                     routing uses the raw copy), request-timeout timer armed
 *   first call        head checks of SPEC 3.3/3.4; an error that must close
 *                     the connection is queued here (MHD adds
 *                     Connection: close to a first-call response), any other
 *                     error is remembered and answered after the body, so
 *                     keep-alive survives a 404
 *   body calls        body taken up to max-request-body (stream.c); at the first
 *                     piece that leaves it incomplete the call starts and the
 *                     body streams up behind it
 *   last call         the call starts (proxy.c) and the connection is
 *                     suspended; its fd is watched for EPOLLRDHUP because MHD
 *                     does not watch suspended connections
 *   after resume      the answer is queued (request_answer() resumes through
 *                     the request's answer hook, intake_resume)
 *
 * A request-timeout that fires before the request is complete writes a 408
 * straight onto the socket and shuts it down: MHD has no way to answer a
 * connection from outside its handler, and the handler is not called while
 * a client is silent.
 *
 * MHD calls the intake_on_* callbacks from MHD_run(), which runs without the
 * state lock (loop.h): each takes it for the time of the call.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "counters.h"
#include "forward.h"
#include "http.h"
#include "intake.h"
#include "log.h"
#include "proxy.h"
#include "request.h"
#include "server.h"
#include "strbuf.h"
#include "stream.h"
#include "tunnel.h"
#include "units.h"

#define PEER_CLOSED_GRACE_MS 250 /* a half-closed client's request may still be in the buffer */

static void head_timer_arm(struct client_conn *c, bool first);
static void note_client_addr(struct request *r);

/* ---- answering ------------------------------------------------------------------- */

/* Queue r's answer: whole, or streamed from its running attempt (stream.c; logged when
 * the connection is done with it). */
static enum MHD_Result queue_answer(struct request *r)
{
    if (r->resp && !forward_fits_pool(r, r->lst->pool_size)) {
        proxy_cancel(r); /* a streamed answer's attempt */
        r->streaming = false;
        request_set_error(r, 502, "upstream_response_too_large",
                          "the upstream response head does not fit beside the request's");
    }
    bool upgrade = r->tunnel && r->status == 101; /* a tunnel joined once it is sent */
    bool whole = !upgrade && stream_is_whole(r);
    struct MHD_Response *resp = upgrade ? tunnel_response(r)
                                : whole ? forward_build_response(r)
                                        : stream_response(r);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    if (whole)
        request_log(r); /* a tunnel's or a stream's when it ends */
    return ret;
}

static void unlink_suspended(struct request *r)
{
    struct server *s = r->srv;
    if (r->prev_suspended)
        r->prev_suspended->next_suspended = r->next_suspended;
    else if (s->suspended == r)
        s->suspended = r->next_suspended;
    if (r->next_suspended)
        r->next_suspended->prev_suspended = r->prev_suspended;
    r->next_suspended = r->prev_suspended = NULL;
}

void intake_resume(struct request *r)
{
    if (!r->suspended)
        return;
    unlink_suspended(r);
    r->suspended = false;
    r->srv->calls--;
    MHD_resume_connection(r->conn);
    /* without its own thread MHD notices a resume only when it next runs */
    r->lst->kick = true;
}

int intake_connection_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* The client closed (or half-closed) while its call ran: cancel it (SPEC 7). */
static void client_gone(struct request *r)
{
    r->client_gone = true;
    proxy_cancel(r);
    r->status = 499;
    request_add_flag(r, "DC");
    request_log(r);
    intake_resume(r);
}

/* Every client connection is in our epoll set for EPOLLRDHUP (edge-triggered) from
 * accept to close: MHD does not watch a suspended connection, and does not act on a
 * half-close once it has a request line. */
static void on_conn_event(void *arg, uint32_t events)
{
    struct client_conn *c = arg;
    if (!(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    c->peer_closed = true;
    struct request *r = c->request;
    if (!r) {
        /* idle, or a partial request line that MHD may never complete */
        head_timer_arm(c, false);
        return;
    }
    if (r->suspended) {
        client_gone(r);
    } else if (!r->received_us && !r->raw_answered) {
        /* incomplete request: what is still in the socket buffer may complete it */
        loop_timer_start(c->srv->env.loop, &r->request_timer, PEER_CLOSED_GRACE_MS);
    }
}

/* ---- raw answers and request-timeout -------------------------------------------- */

/* Answer on the socket itself, for the two cases MHD cannot queue: a request-timeout
 * while the handler is not running, and a body that grows over the limit mid-upload
 * (MHD refuses a response between the first call and the end of the body). The write
 * side is shut down after the answer; what the client still sends is read and dropped
 * until it closes, so the answer is not lost to a reset (a lingering close). */
static void raw_answer(struct request *r, int status, const char *code, const char *message,
                       int how)
{
    int fd = intake_connection_fd(r->conn);
    if (!r->request_id[0])
        http_request_id_new(r->request_id, &r->env->rng);
    request_set_error(r, status, code, message);
    r->close = true;
    r->raw_answered = true;
    r->body_discard = true;
    if (fd >= 0) {
        size_t len = 0;
        char *body = http_error_body(code, message, status, r->svc ? r->svc->conf->name : NULL,
                                     0, r->request_id, &len);
        char head[512];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\nX-Request-Id: %s\r\n\r\n",
                          status, http_status_reason(status), len, r->request_id);
        if (body && hl > 0 && (size_t)hl < sizeof head) {
            ssize_t w = send(fd, head, (size_t)hl, MSG_NOSIGNAL);
            if (w == hl)
                w = send(fd, body, len, MSG_NOSIGNAL);
            (void)w;
        }
        free(body);
        shutdown(fd, how);
    }
    request_log(r);
}

static void on_request_timeout(void *arg)
{
    struct request *r = arg;
    if (r->received_us)
        return;
    proxy_cancel(r); /* a call that streams the body up */
    r->streaming = false;
    if (r->client_conn && r->client_conn->peer_closed && !r->raw_answered) {
        int fd = intake_connection_fd(r->conn);
        if (r->head_checked) {
            r->status = 499;
            request_add_flag(r, "DC");
            request_log(r);
        }
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        return;
    }
    if (r->raw_answered) {
        /* answered already and the client is still sending: stop listening */
        int fd = intake_connection_fd(r->conn);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        return;
    }
    raw_answer(r, 408, "request_timeout", "the request was not received in time", SHUT_RDWR);
    intake_resume(r); /* held for its body: MHD sees the close */
}

/* ---- a request made and completed ------------------------------------------------ */

static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct listener *l = cls;
    struct server *s = l->srv;
    struct request *r = request_new(&s->env, s->rt, uri);
    if (!r)
        return NULL;
    r->srv = s;
    r->lst = l;
    r->conn = conn;
    note_client_addr(r);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) {
        r->client_conn = ci->socket_context;
        r->client_conn->request = r;
        loop_timer_stop(s->env.loop, &r->client_conn->head_timer);
    }
    loop_timer_init(&r->request_timer, on_request_timeout, r);
    if (r->rt->cfg->request_timeout_ms > 0)
        loop_timer_start(s->env.loop, &r->request_timer, r->rt->cfg->request_timeout_ms);
    s->requests++;
    return r;
}

/* MHD is done with r: detach it from its connection and the suspended list, cancel
 * its call, and free it. */
static void request_done(struct request *r)
{
    struct server *s = r->srv;
    if (r->client_conn) {
        r->client_conn->request = NULL;
        head_timer_arm(r->client_conn, false);
    }
    unlink_suspended(r);
    proxy_cancel(r);
    s->requests--;
    request_unref(r); /* a streamed answer's reader may hold it a little longer */
}

static void completed(void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct request *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (tunnel_holds(r))
        return; /* joined: freed when the tunnel ends */
    bool stream_ended = r->streaming && (r->stream_cut || r->stream_done ||
                                         toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (!r->logged && r->head_checked && !stream_ended) {
        /* the client left before its answer ended (mid-body, during the call or stream) */
        r->status = 499;
        request_add_flag(r, "DC");
    }
    if (!r->logged && r->head_checked)
        request_log(r);
    request_done(r);
}

void intake_tunnel_closed(struct request *r, bool mhd_done)
{
    r->lst->kick = true; /* MHD closes the connection when it next runs */
    if (mhd_done)
        request_done(r);
}

/* ---- head checks and routing ---------------------------------------------------- */

struct head_scan {
    size_t bytes;
    bool bad;
    const char *bad_why;
    int n_host, n_te, n_cl;
    const char *te, *cl;
    bool cl_conflict;
    struct strbuf connection; /* every Connection line, joined (RFC 9110 7.6.1) */
    struct strbuf upgrade;    /* every Upgrade line, joined */
    const char *request_id, *idempotency_key, *x_timeout, *x_attempts;
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    struct head_scan *h = cls;
    h->bytes += key_size + value_size + 4;
    if (!http_is_token(key, key_size)) {
        h->bad = true;
        h->bad_why = "malformed header name";
        return MHD_YES;
    }
    if (!value)
        value = "";
    if (!http_header_value_ok(value, value_size) || strlen(value) != value_size) {
        h->bad = true;
        h->bad_why = "control character in a header value";
        return MHD_YES;
    }
    if (strcasecmp(key, "Host") == 0) {
        h->n_host++;
    } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
        h->n_te++;
        h->te = value;
    } else if (strcasecmp(key, "Content-Length") == 0) {
        if (h->n_cl && strcmp(h->cl, value) != 0)
            h->cl_conflict = true;
        h->n_cl++;
        h->cl = value;
    } else if (strcasecmp(key, "Connection") == 0) {
        http_list_append(&h->connection, value, value_size);
    } else if (strcasecmp(key, "Upgrade") == 0) {
        http_list_append(&h->upgrade, value, value_size);
    } else if (strcasecmp(key, "X-Request-Id") == 0) {
        h->request_id = value;
    } else if (strcasecmp(key, "Idempotency-Key") == 0) {
        h->idempotency_key = value;
    } else if (strcasecmp(key, "X-Ahoyd-Timeout") == 0) {
        h->x_timeout = value;
    } else if (strcasecmp(key, "X-Ahoyd-Max-Attempts") == 0) {
        h->x_attempts = value;
    }
    return MHD_YES;
}

/* Decide an error now; close says whether the connection must close with it. */
static void fail(struct request *r, int status, const char *code, const char *msg, bool close)
{
    request_set_error(r, status, code, msg);
    r->close = close;
    r->body_discard = true;
}

static bool digits_only(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static void route_request(struct request *r)
{
    struct runtime *rt = r->rt;
    struct target_parts *p = &r->parts;

    http_split_target(r->target, r->target_len, p);
    if (p->service_len == 5 && memcmp(p->service, "_call", 5) == 0) {
        /* POST /_call/<service>/<operation> (SPEC 3.2) */
        const char *s = p->rest, *end = p->rest + p->rest_len;
        if (s < end && *s == '/')
            s++;
        const char *slash = memchr(s, '/', (size_t)(end - s));
        size_t slen = slash ? (size_t)(slash - s) : (size_t)(end - s);
        r->svc = runtime_find(rt, s, slen);
        if (!r->svc) {
            fail(r, 404, "unknown_service", "no service of that name is configured", false);
            return;
        }
        if (strcmp(r->method, "POST") != 0) {
            header_list_add(&r->extra, "Allow", 5, "POST", 4);
            fail(r, 405, "method_not_allowed", "named calls take POST", false);
            return;
        }
        char op[256];
        size_t olen = slash ? (size_t)(end - slash - 1) : 0;
        if (olen == 0 || olen >= sizeof op) {
            fail(r, 404, "unknown_operation", "no operation of that name is declared", false);
            return;
        }
        memcpy(op, slash + 1, olen);
        op[olen] = '\0';
        r->operation = route_find_operation(&r->svc->routes, op);
        if (!r->operation)
            fail(r, 404, "unknown_operation", "no operation of that name is declared", false);
        return;
    }
    r->svc = runtime_find(rt, p->service, p->service_len);
    if (!r->svc) {
        request_add_flag(r, "NR");
        fail(r, 404, "unknown_service", "no service of that name is configured", false);
        return;
    }
    if (r->svc->routes.n_methods > 0) {
        const struct route_method *m = NULL;
        char *allow = NULL;
        switch (route_match(&r->svc->routes, r->method, p->rest, p->rest_len, &m, &allow)) {
        case ROUTE_OK:
            break;
        case ROUTE_NO_ROUTE:
            request_add_flag(r, "NR");
            fail(r, 404, "no_route", "no declared method matches this path", false);
            break;
        case ROUTE_NO_METHOD:
            request_add_flag(r, "NR");
            if (allow)
                header_list_add(&r->extra, "Allow", 5, allow, strlen(allow));
            fail(r, 405, "method_not_allowed", "the declared methods of this path take other verbs",
                 false);
            break;
        }
        free(allow);
    }
}

/* What the head tells the call: its request id (the client's when valid), whether it
 * has an Idempotency-Key, and the X-Ahoyd-Timeout and X-Ahoyd-Max-Attempts asks. */
static void take_head_values(struct request *r, const struct head_scan *h)
{
    if (h->request_id && http_request_id_ok(h->request_id))
        snprintf(r->request_id, sizeof r->request_id, "%s", h->request_id);
    else
        http_request_id_new(r->request_id, &r->env->rng);
    r->has_idempotency_key = h->idempotency_key != NULL;
    if (h->x_timeout) {
        int64_t ms;
        if (units_parse_duration(h->x_timeout, &ms) == 0 && ms > 0)
            r->hdr_timeout_ms = ms;
    }
    if (h->x_attempts) {
        int64_t n;
        if (units_parse_int(h->x_attempts, 1, 1000, &n) == 0)
            r->hdr_max_attempts = (int)n;
    }
}

/* The client address and port, for X-Forwarded-For and the access log ("" and 0 for a
 * unix socket client). */
static void note_client_addr(struct request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
            inet_ntop(AF_INET, &in->sin_addr, r->client_addr, sizeof r->client_addr);
            r->client_port = ntohs(in->sin_port);
        } else if (sa->sa_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, r->client_addr, sizeof r->client_addr);
            r->client_port = ntohs(in6->sin6_port);
        }
    }
}

/* The head checks, in order; the first that fails decides the answer (and whether the
 * connection closes with it). Then the route. */
static void check_head(struct request *r, const char *version)
{
    struct server *s = r->srv;
    const struct config *cfg = r->rt->cfg;
    struct head_scan h = {0};
    const char *why = NULL;

    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, &h);
    r->connection = h.connection.s; /* the request owns it: forward_build_headers uses it */
    h.bytes += strlen(r->method) + r->target_len + strlen(version) + 4;
    r->head_bytes = h.bytes;

    take_head_values(r, &h);
    if (s->env.draining) {
        fail(r, 503, "shutting_down", "ahoyd is shutting down", true);
    } else if (r->client_conn && r->client_conn->over_limit) {
        fail(r, 503, "overloaded", "too many client connections", true);
    } else if (h.bytes > cfg->max_header_bytes) {
        fail(r, 431, "headers_too_large", "the request header block is over the limit", true);
    } else if (!http_is_token(r->method, strlen(r->method))) {
        fail(r, 400, "bad_request", "malformed method", true);
    } else if (strcmp(r->method, "CONNECT") == 0) {
        static const char allow[] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
        header_list_add(&r->extra, "Allow", 5, allow, sizeof allow - 1);
        fail(r, 405, "method_not_allowed", "CONNECT is not supported", true);
    } else if (!http_target_is_safe(r->target, r->target_len, &why)) {
        fail(r, 400, "bad_request", why ? why : "unsafe request target", true);
    } else if (h.bad) {
        fail(r, 400, "bad_request", h.bad_why, true);
    } else if (h.n_te && (h.n_cl || h.n_te > 1 || strcasecmp(h.te, "chunked") != 0)) {
        fail(r, 400, "bad_request",
             h.n_cl ? "Transfer-Encoding together with Content-Length"
                    : "unsupported Transfer-Encoding",
             true);
    } else if (h.cl_conflict || (h.n_cl && !digits_only(h.cl))) {
        fail(r, 400, "bad_request", "invalid Content-Length", true);
    } else if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && h.n_host != 1) {
        fail(r, 400, "bad_request", h.n_host ? "more than one Host header" : "missing Host header",
             true);
    } else if (h.n_cl && cfg->max_request_body &&
               strtoull(h.cl, NULL, 10) > cfg->max_request_body) {
        fail(r, 413, "payload_too_large", "the request body is over the limit", true);
    } else if (h.connection.failed || h.upgrade.failed) {
        fail(r, 503, "overloaded", "out of memory", true);
    } else {
        /* a websocket upgrade is tunnelled (tunnel.c); other upgrades (h2c from Java's
         * HttpClient, curl --http2) are ignored: Upgrade, HTTP2-Settings and the
         * Connection tokens naming them are not forwarded */
        r->upgrade = h.upgrade.s && strcmp(r->method, "GET") == 0 &&
                     http_list_has_token(h.upgrade.s, "websocket");
        route_request(r);
        if (r->svc && !r->err_code)
            stream_body_plan(r, h.n_cl ? strtoll(h.cl, NULL, 10) : h.n_te ? -1 : 0);
    }
    free(h.upgrade.s);
}

/* ---- the body and the call ------------------------------------------------------ */

/* The whole request is in: build what the call sends and start it. */
static void start_call(struct request *r)
{
    if (r->operation) {
        struct named_request nr = {0};
        const char *code = NULL;
        char *msg = NULL;
        int st = route_build_named_call(r->operation, r->body, r->body_len, &nr, &code, &msg);
        if (st != 0) {
            request_set_error(r, st, code, msg ? msg : "invalid arguments");
            free(msg);
            request_answer(r);
            return;
        }
        free(r->body);
        r->body = nr.body;
        r->body_len = nr.body_len;
        r->upstream_method = nr.method;
        r->upstream_path = nr.path_query;
    } else {
        r->upstream_method = strdup(r->method);
        r->upstream_path = strndup(r->parts.rest, r->parts.rest_len + r->parts.query_len);
    }
    if (!r->upstream_method || !r->upstream_path || forward_build_headers(r) != 0) {
        request_set_error(r, 503, "overloaded", "out of memory");
        request_answer(r);
        return;
    }
    proxy_begin(r);
}

/* A piece of the body (stream.c keeps or queues it, or counts it when an error is
 * decided) up to max-request-body; beyond it, 413 on the socket. A call that streams
 * the body up is cancelled then. */
static void take_body(struct request *r, const char *data, size_t n)
{
    int rc = stream_body_take(r, data, n);
    if (rc == 0)
        return;
    proxy_cancel(r);
    r->streaming = false;
    if (rc == -1)
        raw_answer(r, 413, "payload_too_large", "the request body is over the limit", SHUT_WR);
    else
        raw_answer(r, 503, "overloaded", "out of memory", SHUT_WR);
    /* the lingering drain is bounded by request-timeout, or idle-timeout */
    if (!loop_timer_active(&r->request_timer))
        loop_timer_start(r->env->loop, &r->request_timer, 5000);
}

/* Wait for the upstream: suspend the connection, and watch the client ourselves. */
static void suspend_for_call(struct request *r)
{
    stream_suspend(r);
    if (r->client_conn && r->client_conn->peer_closed)
        client_gone(r); /* it half-closed while its request was being read */
}

/* One handler call of MHD for r (see the top of this file for the sequence). */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct listener *l = cls;
    struct server *s = l->srv;
    struct request *r = *con_cls;

    if (!r)
        return MHD_NO;
    r->conn = conn;
    if (r->client_gone)
        return MHD_NO; /* the client left during the call: close */
    if (r->raw_answered) {
        /* answered on the socket: drop what still arrives, close at the end */
        if (*upload_data_size) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        return MHD_NO;
    }
    if (r->response_ready && !*upload_data_size)
        return queue_answer(r); /* MHD takes no answer before the body's end */

    if (!r->head_checked) {
        r->head_checked = true;
        r->method = strdup(method);
        if (!r->method)
            return MHD_NO;
        check_head(r, version);
        if (r->err_code && r->close) {
            r->response_ready = true;
            return queue_answer(r);
        }
        return MHD_YES; /* queue later: a first-call answer loses keep-alive */
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->response_ready && !(r->streaming && r->attempt))
            return MHD_YES; /* answered: the rest is dropped */
        take_body(r, upload_data, n);
        if (stream_body_starts(r)) {
            r->body_streams = true; /* the call starts now; the body follows it up */
            start_call(r);
        }
        stream_body_hold(r);
        return MHD_YES;
    }

    /* the whole request is in */
    loop_timer_stop(s->env.loop, &r->request_timer);
    r->received_us = loop_now_us(s->env.loop);
    if (r->body_streams) {
        proxy_body_end(r);
        if (r->response_ready)
            return queue_answer(r);
        suspend_for_call(r);
        return MHD_YES;
    }
    if (r->err_code) {
        r->response_ready = true;
        return queue_answer(r);
    }
    start_call(r);
    if (r->response_ready)
        return queue_answer(r);

    suspend_for_call(r);
    return MHD_YES;
}

/* ---- MHD's callbacks: each takes the state lock ----------------------------------- */

void intake_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    state_enter();
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        char buf[512];
        vsnprintf(buf, sizeof buf, fmt, ap);
        log_debug("libmicrohttpd: %s", buf);
    }
    state_leave();
}

/* MHD calls into ahoyd from MHD_run, which runs without the state lock (loop.h). */
void *intake_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    state_enter();
    void *r = uri_seen(cls, uri, conn);
    state_leave();
    return r;
}

enum MHD_Result intake_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)url; /* decoded: the raw target from intake_on_uri is used */
    state_enter();
    enum MHD_Result rc =
        handle_request(cls, conn, method, version, upload_data, upload_data_size, con_cls);
    state_leave();
    return rc;
}

void intake_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    state_enter();
    completed(con_cls, toe);
    state_leave();
}

/* ---- client connections --------------------------------------------------------- */

/* A connection has had no complete request line for too long: a slow drip while the
 * header block is incomplete (MHD runs no handler before it, so a plain close). */
static void on_head_timeout(void *arg)
{
    struct client_conn *c = arg;
    int fd = intake_connection_fd(c->conn);
    if (!c->request && fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

/* Arm the head timer of an idle connection: the first request line must arrive within
 * request-timeout of the accept, a later one within idle-timeout + request-timeout. */
static void head_timer_arm(struct client_conn *c, bool first)
{
    const struct config *cfg = c->srv->rt->cfg;
    int64_t ms = cfg->request_timeout_ms;
    if (c->peer_closed) {
        /* the client has finished sending: whatever it sent is read within the grace */
        loop_timer_start(c->srv->env.loop, &c->head_timer, PEER_CLOSED_GRACE_MS);
        return;
    }
    if (ms <= 0 || (!first && cfg->idle_timeout_ms <= 0)) {
        loop_timer_stop(c->srv->env.loop, &c->head_timer);
        return;
    }
    if (!first)
        ms += cfg->idle_timeout_ms;
    loop_timer_start(c->srv->env.loop, &c->head_timer, ms);
}

static void connection_event(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe)
{
    struct listener *l = cls;
    struct server *s = l->srv;
    struct client_conn *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        c = calloc(1, sizeof *c);
        if (!c)
            return;
        c->srv = s;
        c->conn = conn;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        (*s->conns_total)++;
        counters_note_client_connection(1);
        /* decided once, at accept: connections within the limit keep working */
        c->over_limit = (int64_t)*s->conns_total > s->rt->cfg->max_connections;
        loop_timer_init(&c->head_timer, on_head_timeout, c);
        head_timer_arm(c, true);
        int fd = intake_connection_fd(conn);
        if (fd >= 0)
            loop_io_add(s->env.loop, &c->io, fd, EPOLLRDHUP | EPOLLET, on_conn_event, c);
        *socket_context = c;
        return;
    }
    if (!c)
        return;
    /* at its connection limit MHD takes the listen socket out of its epoll set and puts
     * it back only on its next run: make sure there is one, or the backlog waits */
    l->kick = true;
    s->n_conns--;
    (*s->conns_total)--;
    counters_note_client_connection(-1);
    loop_timer_stop(s->env.loop, &c->head_timer);
    loop_io_del(s->env.loop, &c->io);
    if (c->request)
        c->request->client_conn = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    *socket_context = NULL;
    loop_defer_free(s->env.loop, c); /* an event for its fd may be pending in this batch */
}

void intake_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    state_enter(); /* from MHD_run (loop.h) */
    connection_event(cls, conn, socket_context, toe);
    state_leave();
}
