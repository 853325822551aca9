/*
 * server.c - the client side of ahoyd on libmicrohttpd (MHD).
 *
 * MHD runs with MHD_USE_EPOLL and no thread of its own: its epoll fd sits in
 * ahoyd's loop and MHD_run() is called when it is readable or when MHD's own
 * timeout is due. A request goes through these handler calls:
 *
 *   URI log callback  raw request-target saved (MHD's url is decoded, so all
 *                     routing uses the raw copy), request-timeout timer armed
 *   first call        head checks of SPEC 3.3/3.4; an error that must close
 *                     the connection is queued here (MHD adds
 *                     Connection: close to a first-call response), any other
 *                     error is remembered and answered after the body, so
 *                     keep-alive survives a 404
 *   body calls        body buffered up to max-request-body
 *   last call         the call starts (proxy.c) and the connection is
 *                     suspended; its fd is watched for EPOLLRDHUP because MHD
 *                     does not watch suspended connections
 *   after resume      the answer is queued
 *
 * A request-timeout that fires before the request is complete writes a 408
 * straight onto the socket and shuts it down: MHD has no way to answer a
 * connection from outside its handler, and the handler is not called while
 * a client is silent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "forward.h"
#include "http.h"
#include "log.h"
#include "counters.h"
#include "proxy.h"
#include "server.h"
#include "strbuf.h"
#include "units.h"

#define CONNECTION_RESERVE 16 /* connections above max-connections for the 503 answer */
/* MHD keeps a connection's request head and the response head it writes in one pool,
 * which it zeroes after every request: the pool is the request-header limit plus this
 * room (read buffer, response head). A response head that would not fit is refused
 * with a JSON 502 rather than MHD's silent close (see fits_pool). */
#define POOL_ROOM (16 * 1024)
#define POOL_SLACK (4 * 1024)
#define PEER_CLOSED_GRACE_MS 250 /* a half-closed client's request may still be in the buffer */

static void head_timer_arm(struct client_conn *c, bool first);

/* ---- listening socket ----------------------------------------------------------- */

/* A listening TCP socket on sa (nonblocking, close-on-exec, IPv6 only for IPv6);
 * reuseport: in the address's SO_REUSEPORT group, one socket per worker. -1 and errno. */
static int listen_on(const struct sockaddr *sa, socklen_t len, bool reuseport)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, sa, len) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int bind_inet(const struct listen_addr *la, char *bound, size_t cap, bool reuseport)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", la->port);
    int rc = getaddrinfo(la->host, port, &hints, &res);
    if (rc != 0) {
        log_error("cannot resolve listen address %s: %s", la->text, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = listen_on(ai->ai_addr, ai->ai_addrlen, reuseport);
        if (fd >= 0)
            break;
        log_error("cannot listen on %s: %s", la->text, strerror(errno));
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int p = 0;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        p = ntohs(sin->sin_port);
        snprintf(bound, cap, "%s:%d", host, p);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        p = ntohs(sin6->sin6_port);
        snprintf(bound, cap, "[%s]:%d", host, p);
    }
    return fd;
}

static int bind_unix(const struct listen_addr *la, char *bound, size_t cap)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    if (strlen(la->path) >= sizeof sun.sun_path) {
        log_error("unix socket path too long: %s", la->path);
        return -1;
    }
    strcpy(sun.sun_path, la->path);
    /* a stale socket from a previous run is replaced; any other file is not */
    if (lstat(la->path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(la->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, 1024) != 0) {
        log_error("cannot listen on %s: %s", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    chmod(la->path, 0660);
    snprintf(bound, cap, "unix:%s", la->path);
    return fd;
}

int server_listen_socket(const struct listen_addr *la, char *bound, size_t cap)
{
    return la->kind == LISTEN_UNIX ? bind_unix(la, bound, cap) : bind_inet(la, bound, cap, false);
}

/* The proxy's listening socket: with workers, an inet one is bound SO_REUSEPORT. */
static int proxy_listen_socket(const struct server *s, const struct listen_addr *la, char *bound,
                               size_t cap)
{
    return la->kind == LISTEN_UNIX ? bind_unix(la, bound, cap)
                                   : bind_inet(la, bound, cap, s->reuseport);
}

/* A further worker's socket for the address fd listens on. An inet address gets a
 * socket of its own in fd's SO_REUSEPORT group, so the kernel spreads new
 * connections evenly over the workers; a unix socket cannot, and is shared (a dup:
 * whichever worker accepts first takes the connection). */
static int worker_listen_socket(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_UNIX)
        return fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return listen_on((struct sockaddr *)&ss, sl, true);
}

/* ---- answering ------------------------------------------------------------------- */

static void request_log(struct request *r)
{
    if (r->logged)
        return;
    r->logged = true;
    counters_note_request(r->svc ? &r->svc->state->counters : NULL, r->status,
                          r->resp ? NULL : r->err_code, loop_now_us(r->srv->loop) - r->start_us);
    counters_note_worker_request(r->srv->worker);
    if (!access_log_enabled())
        return;
    struct access_entry e = {
        .request_id = r->request_id[0] ? r->request_id : NULL,
        .method = r->method,
        .service = r->svc ? r->svc->conf->name : NULL,
        .path = r->target,
        .status = r->status,
        .attempts = r->attempts,
        .endpoint = r->last_endpoint,
        .duration_us = loop_now_us(r->srv->loop) - r->start_us,
        .upstream_us = r->attempts ? r->upstream_us : -1,
        .flags = r->flags,
    };
    access_log_write(&e);
}

static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    return MHD_CONTENT_READER_END_OF_STREAM;
}

static bool is_head(const struct request *r)
{
    return r->method && strcmp(r->method, "HEAD") == 0;
}

struct MHD_Response *forward_build_response(struct request *r)
{
    struct MHD_Response *resp;
    struct upstream_response *up = r->resp;

    if (up) {
        if (is_head(r) && up->content_length >= 0) {
            resp = MHD_create_response_from_callback((uint64_t)up->content_length, 4096,
                                                     no_body, NULL, NULL);
        } else {
            resp = MHD_create_response_from_buffer(up->body_len, up->body,
                                                   MHD_RESPMEM_MUST_FREE);
            if (resp) {
                up->body = NULL; /* MHD frees it */
                up->body_len = up->body_cap = 0;
            }
        }
        if (!resp)
            return NULL;
        /* every Connection line counts (RFC 9110 7.6.1); split once, then one pass */
        char *connection = header_list_join(&up->headers, "Connection");
        struct http_tokens conn;
        if (http_tokens_split(&conn, connection) != 0) {
            free(connection);
            MHD_destroy_response(resp);
            return NULL;
        }
        for (size_t i = 0; i < up->headers.n; i++) {
            const struct header *h = &up->headers.items[i];
            if (!*h->value || http_response_header_dropped(h->name, &conn) ||
                strcasecmp(h->name, "X-Request-Id") == 0 ||
                strncasecmp(h->name, "X-Ahoyd-", 8) == 0)
                continue;
            MHD_add_response_header(resp, h->name, h->value);
        }
        http_tokens_free(&conn);
        free(connection);
        char n[16];
        snprintf(n, sizeof n, "%d", r->attempts);
        MHD_add_response_header(resp, "X-Ahoyd-Attempts", n);
        if (r->resp_endpoint)
            MHD_add_response_header(resp, "X-Ahoyd-Upstream", r->resp_endpoint);
    } else {
        size_t len = 0;
        char *body = http_error_body(r->err_code ? r->err_code : "internal_error",
                                     r->err_message ? r->err_message : "internal error",
                                     r->status, r->svc ? r->svc->conf->name : NULL, r->attempts,
                                     r->request_id, &len);
        if (!body)
            return NULL;
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(body);
            return NULL;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json");
        if (r->attempts > 0) {
            char n[16];
            snprintf(n, sizeof n, "%d", r->attempts);
            MHD_add_response_header(resp, "X-Ahoyd-Attempts", n);
            if (r->last_endpoint)
                MHD_add_response_header(resp, "X-Ahoyd-Upstream", r->last_endpoint);
        }
    }
    for (size_t i = 0; i < r->extra.n; i++)
        MHD_add_response_header(resp, r->extra.items[i].name, r->extra.items[i].value);
    if (r->request_id[0])
        MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (r->close || r->srv->draining)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return resp;
}

/* Will the upstream's response head fit beside this request's head in MHD's pool? */
static bool fits_pool(const struct request *r)
{
    size_t n = 256; /* status line, framing and ahoyd's own headers */
    for (size_t i = 0; i < r->resp->headers.n; i++)
        n += strlen(r->resp->headers.items[i].name) + strlen(r->resp->headers.items[i].value) + 4;
    return r->head_bytes + n + POOL_SLACK <= r->lst->pool_size;
}

static enum MHD_Result queue_answer(struct request *r)
{
    if (r->resp && !fits_pool(r))
        request_set_error(r, 502, "upstream_response_too_large",
                          "the upstream response head does not fit beside the request's");
    struct MHD_Response *resp = forward_build_response(r);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    request_log(r);
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

static void resume(struct request *r)
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

void server_respond(struct request *r)
{
    r->response_ready = true;
    resume(r); /* when not suspended, the handler queues it on return */
}

static int connection_fd(struct MHD_Connection *c)
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
    resume(r);
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
        loop_timer_start(c->srv->loop, &r->request_timer, PEER_CLOSED_GRACE_MS);
    }
}

/* ---- request-timeout ------------------------------------------------------------ */


/* Answer on the socket itself, for the two cases MHD cannot queue: a request-timeout
 * while the handler is not running, and a body that grows over the limit mid-upload
 * (MHD refuses a response between the first call and the end of the body). The write
 * side is shut down after the answer; what the client still sends is read and dropped
 * until it closes, so the answer is not lost to a reset (a lingering close). */
static void raw_answer(struct request *r, int status, const char *code, const char *message,
                       int how)
{
    int fd = connection_fd(r->conn);
    if (!r->request_id[0])
        http_request_id_new(r->request_id, &r->srv->rng);
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
    if (r->client_conn && r->client_conn->peer_closed && !r->raw_answered) {
        int fd = connection_fd(r->conn);
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
        int fd = connection_fd(r->conn);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        return;
    }
    raw_answer(r, 408, "request_timeout", "the request was not received in time", SHUT_RDWR);
}

/* ---- MHD callbacks ------------------------------------------------------------------ */

static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct listener *l = cls;
    struct server *s = l->srv;
    struct request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = s;
    r->lst = l;
    r->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) {
        r->client_conn = ci->socket_context;
        r->client_conn->request = r;
        loop_timer_stop(s->loop, &r->client_conn->head_timer);
    }
    r->rt = runtime_ref(s->rt);
    r->target_len = strlen(uri);
    r->target = strdup(uri);
    r->start_us = loop_now_us(s->loop);
    r->current = r->previous = -1;
    r->upstream_us = -1;
    loop_timer_init(&r->request_timer, on_request_timeout, r);
    if (r->rt->cfg->request_timeout_ms > 0)
        loop_timer_start(s->loop, &r->request_timer, r->rt->cfg->request_timeout_ms);
    s->requests++;
    return r;
}

static void request_free(struct request *r)
{
    struct server *s = r->srv;
    if (r->client_conn) {
        r->client_conn->request = NULL;
        head_timer_arm(r->client_conn, false);
    }
    loop_timer_stop(s->loop, &r->request_timer);
    unlink_suspended(r);
    proxy_release(r);
    if (r->resp) {
        upstream_response_free(r->resp);
        free(r->resp);
    }
    header_list_clear(&r->extra);
    free(r->extra.items);
    for (size_t i = 0; i < r->n_fwd; i++)
        free((char *)r->fwd_headers[i]);
    free(r->fwd_headers);
    free(r->err_message);
    free(r->connection);
    free(r->upstream_path);
    free(r->upstream_method);
    free(r->body);
    free(r->method);
    free(r->target);
    runtime_unref(r->rt);
    s->requests--;
    loop_defer_free(s->loop, r);
}

static void completed(void **con_cls)
{
    struct request *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (!r->logged && r->head_checked) {
        /* the client left before an answer was queued (mid-body, or during the call) */
        r->status = 499;
        request_add_flag(r, "DC");
        request_log(r);
    }
    request_free(r);
}

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

static void check_head(struct request *r, const char *version)
{
    struct server *s = r->srv;
    const struct config *cfg = r->rt->cfg;
    struct head_scan h = {0};
    const char *why = NULL;

    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, &h);
    r->connection = h.connection.s; /* the request owns it: build_forward_headers uses it */
    h.bytes += strlen(r->method) + r->target_len + strlen(version) + 4;
    r->head_bytes = h.bytes;

    if (h.request_id && http_request_id_ok(h.request_id))
        snprintf(r->request_id, sizeof r->request_id, "%s", h.request_id);
    else
        http_request_id_new(r->request_id, &s->rng);
    r->has_idempotency_key = h.idempotency_key != NULL;
    if (h.x_timeout) {
        int64_t ms;
        if (units_parse_duration(h.x_timeout, &ms) == 0 && ms > 0)
            r->hdr_timeout_ms = ms;
    }
    if (h.x_attempts) {
        int64_t n;
        if (units_parse_int(h.x_attempts, 1, 1000, &n) == 0)
            r->hdr_max_attempts = (int)n;
    }

    if (s->draining) {
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
    } else if (h.n_cl && strtoull(h.cl, NULL, 10) > cfg->max_request_body) {
        fail(r, 413, "payload_too_large", "the request body is over the limit", true);
    } else if (h.connection.failed || h.upgrade.failed) {
        fail(r, 503, "overloaded", "out of memory", true);
    } else if (h.upgrade.s && http_list_has_token(h.upgrade.s, "websocket")) {
        /* other upgrades (h2c from Java's HttpClient, curl --http2) are ignored: Upgrade,
         * HTTP2-Settings and the Connection tokens naming them are not forwarded */
        fail(r, 501, "not_implemented", "WebSocket upgrades are not supported yet", true);
    } else {
        route_request(r);
    }
    free(h.upgrade.s);
    if (r->err_code && r->close)
        return;
    if (r->body_discard)
        return;
    /* the client address for X-Forwarded-For */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client_addr,
                      sizeof r->client_addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client_addr,
                      sizeof r->client_addr);
    }
}

/* ---- forwarded headers ------------------------------------------------------------- */

struct fwd_build {
    struct request *r;
    char **lines;
    size_t n, cap;
    struct strbuf xff, via; /* every X-Forwarded-For and Via line, joined */
    bool oom;
};

static void fwd_add(struct fwd_build *b, char *line)
{
    if (!line) {
        b->oom = true;
        return;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        char **l = realloc(b->lines, cap * sizeof *l);
        if (!l) {
            free(line);
            b->oom = true;
            return;
        }
        b->lines = l;
        b->cap = cap;
    }
    b->lines[b->n++] = line;
}

static char *fmt_line(const char *name, size_t nl, const char *value, size_t vl)
{
    char *s = malloc(nl + vl + 3);
    if (!s)
        return NULL;
    memcpy(s, name, nl);
    s[nl] = ':';
    s[nl + 1] = ' ';
    memcpy(s + nl + 2, value, vl);
    s[nl + 2 + vl] = '\0';
    return s;
}


static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    struct fwd_build *b = cls;
    const struct service_conf *sc = b->r->svc->conf;
    if (!value)
        value = "";
    if (strcasecmp(key, "Connection") == 0)
        return MHD_YES; /* joined beforehand */
    if (strcasecmp(key, "X-Forwarded-For") == 0) {
        http_list_append(&b->xff, value, value_size); /* every line, in order */
        return MHD_YES;
    }
    if (strcasecmp(key, "Via") == 0) {
        http_list_append(&b->via, value, value_size);
        return MHD_YES;
    }
    if (strcasecmp(key, "X-Request-Id") == 0 || strcasecmp(key, "X-Forwarded-Proto") == 0)
        return MHD_YES;
    if (b->r->operation && strcasecmp(key, "Content-Type") == 0)
        return MHD_YES; /* it described the arguments; a named call's body (if any) is JSON */
    for (size_t i = 0; i < sc->n_headers; i++)
        if (strcasecmp(key, sc->headers[i].name) == 0)
            return MHD_YES; /* replaced by the service's value */
    fwd_add(b, fmt_line(key, key_size, value, value_size));
    return MHD_YES;
}

/* "Name: tail", or "Name: list, tail" after a non-empty list; any length (a fixed buffer
 * here once cut X-Forwarded-For before ahoyd's own entry). NULL when out of memory. */
static char *fmt_list_line(const char *name, const char *list, const char *tail)
{
    struct strbuf b = {0};
    strbuf_puts(&b, name);
    strbuf_add(&b, ": ", 2);
    if (list && *list) {
        strbuf_puts(&b, list);
        strbuf_add(&b, ", ", 2);
    }
    strbuf_puts(&b, tail);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

static int build_forward_headers(struct request *r)
{
    struct fwd_build b = {.r = r};
    const struct service_conf *sc = r->svc->conf;

    /* the headers named in Connection (gathered at intake) are hop-by-hop: split the
     * list once, then one pass over the headers */
    struct http_tokens conn;
    if (http_tokens_split(&conn, r->connection) != 0)
        return -1;
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, collect_header, &b);
    size_t j = 0;
    for (size_t i = 0; i < b.n; i++) {
        char *colon = strchr(b.lines[i], ':');
        *colon = '\0';
        bool drop = http_request_header_dropped(b.lines[i], &conn);
        *colon = ':';
        if (drop)
            free(b.lines[i]);
        else
            b.lines[j++] = b.lines[i];
    }
    b.n = j;
    http_tokens_free(&conn);
    for (size_t i = 0; i < sc->n_headers; i++)
        fwd_add(&b, fmt_line(sc->headers[i].name, strlen(sc->headers[i].name),
                             sc->headers[i].value, strlen(sc->headers[i].value)));
    if (r->operation && r->body)
        fwd_add(&b, strdup("Content-Type: application/json"));
    if (b.xff.failed || b.via.failed)
        b.oom = true;
    if (r->client_addr[0])
        fwd_add(&b, fmt_list_line("X-Forwarded-For", b.xff.s, r->client_addr));
    else if (b.xff.len)
        fwd_add(&b, fmt_line("X-Forwarded-For", 15, b.xff.s, b.xff.len));
    fwd_add(&b, strdup("X-Forwarded-Proto: http"));
    fwd_add(&b, fmt_list_line("Via", b.via.s, "1.1 ahoyd"));
    fwd_add(&b, fmt_line("X-Request-Id", 12, r->request_id, strlen(r->request_id)));
    free(b.xff.s);
    free(b.via.s);
    r->fwd_headers = (const char **)b.lines;
    r->n_fwd = b.n;
    return b.oom ? -1 : 0;
}

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
            server_respond(r);
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
    if (!r->upstream_method || !r->upstream_path || build_forward_headers(r) != 0) {
        request_set_error(r, 503, "overloaded", "out of memory");
        server_respond(r);
        return;
    }
    proxy_begin(r);
}

static int body_append(struct request *r, const char *data, size_t n, uint64_t limit)
{
    if ((uint64_t)r->body_len + n > limit)
        return -1;
    if (r->body_discard) {
        r->body_len += n; /* counted, not kept */
        return 0;
    }
    return strbuf_bytes_append(&r->body, &r->body_len, &r->body_cap, data, n, 0);
}

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
    if (r->response_ready)
        return queue_answer(r);

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
        if (r->response_ready)
            return MHD_YES;
        if (body_append(r, upload_data, n, r->rt->cfg->max_request_body) != 0) {
            raw_answer(r, 413, "payload_too_large", "the request body is over the limit",
                       SHUT_WR);
            /* the lingering drain is bounded by request-timeout, or idle-timeout */
            if (!loop_timer_active(&r->request_timer))
                loop_timer_start(s->loop, &r->request_timer, 5000);
        }
        return MHD_YES;
    }

    /* the whole request is in */
    loop_timer_stop(s->loop, &r->request_timer);
    r->received_us = loop_now_us(s->loop);
    if (r->err_code) {
        r->response_ready = true;
        return queue_answer(r);
    }
    start_call(r);
    if (r->response_ready)
        return queue_answer(r);

    /* wait for the upstream: suspend, and watch the client ourselves */
    MHD_suspend_connection(conn);
    r->suspended = true;
    s->calls++;
    r->next_suspended = s->suspended;
    if (s->suspended)
        s->suspended->prev_suspended = r;
    s->suspended = r;
    if (r->client_conn && r->client_conn->peer_closed)
        client_gone(r); /* it half-closed while its request was being read */
    return MHD_YES;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
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
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    state_enter();
    void *r = uri_seen(cls, uri, conn);
    state_leave();
    return r;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)url; /* decoded: the raw target from on_uri is used */
    state_enter();
    enum MHD_Result rc =
        handle_request(cls, conn, method, version, upload_data, upload_data_size, con_cls);
    state_leave();
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    state_enter();
    completed(con_cls);
    state_leave();
}

/* Run one daemon. The state lock is let go meanwhile: MHD parses and does socket I/O
 * on its own; its callbacks into ahoyd take the lock back. */
static void mhd_run(struct listener *l)
{
    int depth = state_release();
    MHD_run(l->mhd);
    state_reacquire(depth);
}

/* ---- listeners: one MHD daemon each, on the loop --------------------------------- */

static void on_listener_io(void *arg, uint32_t events)
{
    mhd_run(arg);
}

static void on_listener_timer(void *arg)
{
    mhd_run(arg);
}

static size_t listener_connections(const struct listener *l)
{
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return di ? di->num_connections : 0;
}

static void listener_free(struct listener *l)
{
    struct server *s = l->srv;
    loop_io_del(s->loop, &l->io);
    loop_timer_stop(s->loop, &l->timer);
    if (l->mhd)
        MHD_stop_daemon(l->mhd); /* closes the listen socket unless quiesced */
    free(l->bound);
    free(l);
}

/* Run every daemon that needs it, arm their timers, and retire the quiesced
 * daemons whose last connection has gone. */
static int64_t on_prepare(void *arg)
{
    struct server *s = arg;
    struct listener **pp = &s->listeners;
    while (*pp) {
        struct listener *l = *pp;
        MHD_UNSIGNED_LONG_LONG to;
        if (l->kick) {
            l->kick = false;
            mhd_run(l);
        }
        if (l->fd < 0 && l != s->listeners && listener_connections(l) == 0) {
            *pp = l->next; /* quiesced and empty */
            listener_free(l);
            continue;
        }
        if (MHD_get_timeout(l->mhd, &to) == MHD_YES) {
            if (to == 0) {
                mhd_run(l);
                if (MHD_get_timeout(l->mhd, &to) != MHD_YES)
                    to = 1000;
            }
            loop_timer_start(s->loop, &l->timer, (int64_t)to);
        } else {
            loop_timer_stop(s->loop, &l->timer);
        }
        pp = &l->next;
    }
    for (struct listener *l = s->listeners; l; l = l->next)
        if (l->kick)
            return 0; /* a run above asked for another one: do not block */
    return -1;
}

/* A connection has had no complete request line for too long: a slow drip while the
 * header block is incomplete (MHD runs no handler before it, so a plain close). */
static void on_head_timeout(void *arg)
{
    struct client_conn *c = arg;
    int fd = connection_fd(c->conn);
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
        loop_timer_start(c->srv->loop, &c->head_timer, PEER_CLOSED_GRACE_MS);
        return;
    }
    if (ms <= 0 || (!first && cfg->idle_timeout_ms <= 0)) {
        loop_timer_stop(c->srv->loop, &c->head_timer);
        return;
    }
    if (!first)
        ms += cfg->idle_timeout_ms;
    loop_timer_start(c->srv->loop, &c->head_timer, ms);
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
        int fd = connection_fd(conn);
        if (fd >= 0)
            loop_io_add(s->loop, &c->io, fd, EPOLLRDHUP | EPOLLET, on_conn_event, c);
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
    loop_timer_stop(s->loop, &c->head_timer);
    loop_io_del(s->loop, &c->io);
    if (c->request)
        c->request->client_conn = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    *socket_context = NULL;
    loop_defer_free(s->loop, c); /* an event for its fd may be pending in this batch */
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    state_enter(); /* from MHD_run (loop.h) */
    connection_event(cls, conn, socket_context, toe);
    state_leave();
}

/* Start a daemon on an already listening fd. */
static struct listener *listener_start(struct server *s, const struct config *cfg, int fd,
                                       const char *bound)
{
    struct listener *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->srv = s;
    l->fd = fd;
    l->bound = strdup(bound);
    loop_timer_init(&l->timer, on_listener_timer, l);
    unsigned idle_s = cfg->idle_timeout_ms > 0 ? (unsigned)((cfg->idle_timeout_ms + 999) / 1000)
                                               : 0;
    size_t pool = (size_t)cfg->max_header_bytes + POOL_ROOM;
    l->pool_size = pool;
    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, l},
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, l},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, l},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, l},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)(cfg->max_connections + CONNECTION_RESERVE),
         NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)pool, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)idle_s, NULL},
#if MHD_VERSION >= 0x01000000
        /* libmicrohttpd 1.0 at its default level 0 answers whitespace in the target with
         * a 301 to the target percent-encoded; level 1 answers 400 (as do a folded header
         * line and Transfer-Encoding with Content-Length) and keeps every other check.
         * Levels below 0 would let these through to ahoyd's checks, but also turn a NUL
         * in a header into a space. */
        {MHD_OPTION_CLIENT_DISCIPLINE_LVL, 1, NULL},
#endif
        {MHD_OPTION_END, 0, NULL},
    };
    l->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0,
                              NULL, NULL, on_access, l, MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    const union MHD_DaemonInfo *di =
        l->mhd ? MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (di)
        l->epoll_fd = di->epoll_fd;
    if (!di) {
        log_error("cannot start the HTTP server on %s", bound);
        if (l->mhd) {
            MHD_quiesce_daemon(l->mhd); /* the fd stays the caller's */
            MHD_stop_daemon(l->mhd);
        }
        free(l->bound);
        free(l);
        return NULL;
    }
    return l;
}

/* Put a started daemon on its worker's loop (by that worker: it runs it from then on). */
static void listener_activate(struct listener *l)
{
    if (loop_io_add(l->srv->loop, &l->io, l->epoll_fd, EPOLLIN, on_listener_io, l) != 0)
        log_error("cannot watch the HTTP server on %s: %s", l->bound, strerror(errno));
}

/* Stop accepting on l: the listen fd is closed (or handed back) and the daemon serves
 * its open connections until they end. */
static int listener_quiesce(struct listener *l, bool close_fd)
{
    int fd = l->fd;
    if (fd < 0)
        return -1;
    MHD_socket q = MHD_quiesce_daemon(l->mhd);
    l->fd = -1;
    if (q == MHD_INVALID_SOCKET)
        return -1;
    if (close_fd) {
        close(q);
        return -1;
    }
    return q;
}

/* Serve on fd (listening on bound) from s's loop; conns_total counts with max-connections. */
static int server_serve(struct server *s, struct runtime *rt, int fd, const char *bound,
                        size_t *conns_total)
{
    s->listeners = listener_start(s, rt->cfg, fd, bound);
    if (!s->listeners) {
        close(fd);
        return -1;
    }
    listener_activate(s->listeners);
    s->conns_total = conns_total;
    s->rt = runtime_ref(rt);
    loop_set_prepare(s->loop, on_prepare, s);
    return 0;
}

int server_start(struct server *s, struct loop *loop, struct upstream *up, struct runtime *rt)
{
    const struct config *cfg = rt->cfg;
    char bound[300];

    s->loop = loop;
    s->upstream = up;
    s->rng = (uint64_t)monotonic_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    s->reuseport = cfg->workers > 1;
    int fd = proxy_listen_socket(s, &cfg->listen, bound, sizeof bound);
    if (fd < 0 || server_serve(s, rt, fd, bound, &s->conns_total_own) != 0)
        return -1;
    log_info("proxy listening on %s", bound);
    return 0;
}

int server_start_worker(struct server *s, struct loop *loop, struct upstream *up,
                        struct runtime *rt, struct server *first, size_t index)
{
    struct listener *f = first->listeners;
    s->worker = index;
    s->loop = loop;
    s->upstream = up;
    s->secondary = true;
    s->rng = first->rng ^ ((uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ULL);
    s->reuseport = first->reuseport;
    int fd = f ? worker_listen_socket(f->fd) : -1;
    if (fd < 0) {
        log_error("cannot listen on %s for a worker: %s", f ? f->bound : "?", strerror(errno));
        return -1;
    }
    return server_serve(s, rt, fd, f->bound, first->conns_total);
}

const char *server_bound(const struct server *s)
{
    return s->listeners ? s->listeners->bound : "";
}

static bool listener_settings_differ(const struct config *a, const struct config *b)
{
    return strcmp(a->listen.text, b->listen.text) != 0 ||
           a->max_connections != b->max_connections ||
           a->max_header_bytes != b->max_header_bytes ||
           a->max_response_header_bytes != b->max_response_header_bytes ||
           a->idle_timeout_ms != b->idle_timeout_ms;
}

/* A reload's new daemon on fd, not yet accepting (commit activates it). A fd of its own
 * (not same_address) is closed when the daemon cannot start. */
static int prepare_listener(struct server *s, const struct config *cfg, int fd,
                            const char *bound, bool same_address, struct listener **out)
{
    struct listener *l = listener_start(s, cfg, fd, bound);
    if (!l) {
        if (!same_address)
            close(fd);
        return -1;
    }
    l->same_address = same_address;
    *out = l;
    return 0;
}

int server_prepare_reload(struct server *s, const struct config *cfg, struct listener **out)
{
    const struct config *cur = s->rt->cfg;
    struct listener *active = s->listeners;
    char bound[300];
    int fd;

    *out = NULL;
    if (!active || active->fd < 0 || !listener_settings_differ(cur, cfg))
        return 0;
    bool same_address = strcmp(cur->listen.text, cfg->listen.text) == 0;
    if (same_address) {
        fd = active->fd; /* the new daemon takes over the same socket */
        snprintf(bound, sizeof bound, "%s", active->bound);
    } else {
        fd = proxy_listen_socket(s, &cfg->listen, bound, sizeof bound);
        if (fd < 0)
            return -1;
    }
    return prepare_listener(s, cfg, fd, bound, same_address, out);
}

int server_prepare_reload_worker(struct server *s, const struct config *cfg,
                                 const struct listener *first_new, struct listener **out)
{
    /* an earlier reload's switch may not have run on the worker yet: build on it */
    struct listener *active = s->switching ? s->switching : s->listeners;
    int fd;

    *out = NULL;
    if (!first_new || !active || active->fd < 0)
        return 0;
    if (first_new->same_address)
        fd = active->fd;
    else if ((fd = worker_listen_socket(first_new->fd)) < 0)
        return -1;
    return prepare_listener(s, cfg, fd, first_new->bound, first_new->same_address, out);
}

void server_discard_reload(struct server *s, struct listener *l)
{
    if (!l)
        return;
    int fd = listener_quiesce(l, false);
    if (fd >= 0 && !l->same_address)
        close(fd);
    listener_free(l);
}

/* The new daemon takes over from the accepting one, which stops accepting and
 * serves its connections until they end. On the server's own thread. */
static void listener_switch(struct server *s, struct listener *l)
{
    struct listener *old = s->listeners;
    listener_quiesce(old, !l->same_address);
    l->next = old;
    s->listeners = l;
    listener_activate(l);
}

static void on_listener_switch(void *arg)
{
    struct listener *l = arg;
    if (l->srv->switching == l)
        l->srv->switching = NULL;
    listener_switch(l->srv, l);
}

void server_commit_reload(struct server *s, struct runtime *rt, struct listener *l)
{
    if (l && s->secondary) {
        /* its daemons are run by its own worker: hand the switch over */
        if (loop_post(s->loop, on_listener_switch, l) == 0)
            s->switching = l;
        else
            server_discard_reload(s, l);
    } else if (l) {
        const struct config *cur = s->rt->cfg;
        listener_switch(s, l);
        if (!l->same_address && cur->listen.kind == LISTEN_UNIX)
            unlink(cur->listen.path);
        if (!l->same_address)
            log_info("proxy listening on %s", l->bound);
    }
    runtime_unref(s->rt);
    s->rt = runtime_ref(rt);
}

void server_stop_accepting(struct server *s)
{
    struct listener *l = s->listeners;
    if (!l || l->fd < 0)
        return;
    listener_quiesce(l, true);
    if (s->rt->cfg->listen.kind == LISTEN_UNIX && !s->secondary)
        unlink(s->rt->cfg->listen.path);
}

void server_close_idle(struct server *s)
{
    for (struct client_conn *c = s->conns; c; c = c->next) {
        if (c->request)
            continue;
        int fd = connection_fd(c->conn);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR); /* MHD sees the close on its next read */
    }
}

void server_abort_calls(struct server *s)
{
    while (s->suspended) {
        struct request *r = s->suspended;
        proxy_cancel(r);
        request_set_error(r, 503, "shutting_down", "ahoyd is shutting down");
        r->close = true;
        server_respond(r); /* unlinks r */
    }
}

void server_free(struct server *s)
{
    if (!s->loop)
        return; /* never started */
    if (s->switching) { /* its switch was posted to a worker that stopped first */
        struct listener *l = s->switching;
        s->switching = NULL;
        server_discard_reload(s, l);
    }
    /* MHD must not be stopped with suspended connections */
    while (s->suspended) {
        struct request *r = s->suspended;
        proxy_cancel(r);
        r->client_gone = true;
        resume(r);
    }
    for (struct listener *l = s->listeners; l; l = l->next)
        mhd_run(l);
    while (s->listeners) {
        struct listener *l = s->listeners;
        s->listeners = l->next;
        if (l->fd >= 0 && s->rt && s->rt->cfg->listen.kind == LISTEN_UNIX && !s->secondary)
            unlink(s->rt->cfg->listen.path);
        listener_free(l);
    }
    runtime_unref(s->rt);
    s->rt = NULL;
}
