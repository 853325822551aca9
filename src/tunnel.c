/*
 * tunnel.c - WebSocket tunnels (see tunnel.h).
 *
 * A tunnel goes through these states:
 *
 *   CONNECTING  curl connects (CONNECT_ONLY on the worker's upstream multi)
 *   SENDING     the request head goes out with curl_easy_send
 *   HEAD, BODY  the answer head is read with curl_easy_recv, bounded by
 *               max-response-header-bytes; a non-101 answer's body follows
 *               (Content-Length, chunked, or until close; max-response-body)
 *               and the attempt reports it as an ordinary response
 *   UPGRADE     a 101 was reported: the connection waits for the client's
 *               socket, which libmicrohttpd hands over once the 101 is out
 *   JOINED      both sockets on the loop (edge-triggered), one bounded
 *               buffer per direction: a side whose buffer is full is not
 *               read (backpressure); an EOF shuts down writing on the other
 *               side once its buffer is out; the tunnel ends when both
 *               directions are done, on an error, on idle-timeout (both
 *               directions silent) or at the drain's shutdown-timeout
 *
 * Bytes are never looked at once joined: what the upstream sent after its
 * 101 head and what the client sent after its request head (MHD's extra_in)
 * start the two buffers. Both sockets are dups of the ones curl and MHD own,
 * so that their own registrations in the loop's epoll set do not clash.
 */
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"
#include "strbuf.h"
#include "tunnel.h"

#define TUNNEL_BUF (64 * 1024) /* per direction, once joined */
#define HEAD_READ 4096
#define PUMP_ROUNDS 64 /* then the loop runs something else before going on */

enum tunnel_state { T_CONNECTING, T_SENDING, T_HEAD, T_BODY, T_UPGRADE, T_JOINED };

struct pipe_buf {
    char *d;
    size_t off, len, cap;
};

struct tunnel {
    struct request *r;
    struct upstream *up;
    struct upstream_attempt *a;
    CURL *easy;
    upstream_done_cb cb;
    enum tunnel_state state;
    int ufd, cfd; /* dups of curl's and MHD's sockets, -1 when none */
    struct loop_io uio, cio;
    struct loop_timer timer; /* the attempt's timeout, then idle-timeout */
    struct loop_timer again; /* the pump stopped after PUMP_ROUNDS */
    struct MHD_UpgradeResponseHandle *urh;
    struct strbuf out; /* the request head */
    size_t out_sent;
    char *in; /* the answer head and body as read */
    size_t in_len, in_cap, head_end;
    struct upstream_response *resp;
    int64_t body_want; /* Content-Length, -1 = until close (or chunked) */
    bool chunked;
    int64_t start_us, timeout_ms;
    uint64_t max_header, max_body;
    struct pipe_buf c2u, u2c;
    bool c_eof, u_eof, c_shut, u_shut;
    bool mhd_done; /* MHD's completed callback came: end frees the request */
    int64_t last_us, idle_ms;
    struct tunnel *prev, *next; /* the env's joined tunnels */
};

/* ---- upstream I/O through curl -------------------------------------------------- */

/* Bytes read, 0 at EOF, -1 when it would block, -2 on an error. */
static ssize_t up_recv(struct tunnel *t, char *buf, size_t n)
{
    size_t got = 0;
    CURLcode rc = curl_easy_recv(t->easy, buf, n, &got);
    if (rc == CURLE_AGAIN)
        return -1;
    return rc == CURLE_OK ? (ssize_t)got : -2;
}

static ssize_t up_send(struct tunnel *t, const char *buf, size_t n)
{
    size_t sent = 0;
    CURLcode rc = curl_easy_send(t->easy, buf, n, &sent);
    if (rc == CURLE_AGAIN)
        return -1;
    return rc == CURLE_OK ? (ssize_t)sent : -2;
}

/* ---- the attempt ------------------------------------------------------------------ */

static void tunnel_free(struct tunnel *t)
{
    struct loop *loop = t->r->env->loop;
    loop_timer_stop(loop, &t->timer);
    loop_timer_stop(loop, &t->again);
    loop_io_del(loop, &t->uio);
    loop_io_del(loop, &t->cio);
    if (t->ufd >= 0)
        close(t->ufd);
    if (t->cfd >= 0)
        close(t->cfd);
    if (t->a)
        upstream_cancel(t->up, t->a);
    if (t->resp) {
        upstream_response_free(t->resp);
        free(t->resp);
    }
    free(t->out.s);
    free(t->in);
    free(t->c2u.d);
    free(t->u2c.d);
    if (t->r->tunnel == t)
        t->r->tunnel = NULL;
    loop_defer_free(loop, t); /* an event for its sockets may be pending in this batch */
}

/* The attempt is over: report it (a 101 keeps the connection for the join). */
static void report(struct tunnel *t, const struct outcome *o, struct upstream_response *resp)
{
    struct request *r = t->r;
    upstream_done_cb cb = t->cb;
    int64_t elapsed = monotonic_us() - t->start_us;
    if (resp && resp->status == 101) {
        t->state = T_UPGRADE;
        loop_timer_stop(r->env->loop, &t->timer);
        loop_io_del(r->env->loop, &t->uio); /* watched again once joined */
    } else {
        tunnel_free(t);
    }
    cb(r, o, resp, elapsed);
}

static void fail(struct tunnel *t, enum outcome_kind kind, const char *detail)
{
    struct outcome o = {.kind = kind};
    snprintf(o.detail, sizeof o.detail, "%s", detail);
    report(t, &o, NULL);
}

/* Parse the head in t->in[0, head_end): status line and header lines. */
static int parse_head(struct tunnel *t)
{
    const char *p = t->in, *end = t->in + t->head_end - 2; /* the last line's CRLF stays */
    if (t->head_end < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
        return -1;
    int status = atoi(p + 9);
    if (status < 100 || status > 999)
        return -1;
    t->resp = calloc(1, sizeof *t->resp);
    if (!t->resp)
        return -1;
    t->resp->status = status;
    t->resp->content_length = -1;
    t->resp->head_us = monotonic_us() - t->start_us;
    const char *line = memchr(p, '\n', (size_t)(end - p));
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line + 1));
        if (!eol)
            break;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon && colon > line) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            header_list_add(&t->resp->headers, line, (size_t)(colon - line), v, (size_t)(ve - v));
        }
        line = eol;
    }
    const char *cl = header_list_get(&t->resp->headers, "Content-Length");
    const char *te = header_list_get(&t->resp->headers, "Transfer-Encoding");
    t->chunked = te && strcasecmp(te, "chunked") == 0;
    t->body_want = -1;
    if (cl && !t->chunked) {
        char *e = NULL;
        long long n = strtoll(cl, &e, 10);
        if (n < 0 || e == cl || *e)
            return -1;
        t->body_want = n;
        t->resp->content_length = n;
    }
    if (status == 204 || status == 304 || (status >= 100 && status < 200))
        t->body_want = 0;
    return 0;
}

/* A chunked body in buf: 1 and the decoded body in out when complete, 0 when more is
 * needed, -1 when malformed. */
static int dechunk(const char *buf, size_t n, struct strbuf *out)
{
    size_t i = 0;
    out->len = 0;
    for (;;) {
        const char *eol = memchr(buf + i, '\n', n - i);
        if (!eol)
            return 0;
        char *e = NULL;
        unsigned long long size = strtoull(buf + i, &e, 16);
        if (e == buf + i)
            return -1;
        i = (size_t)(eol - buf) + 1;
        if (size == 0) {
            /* trailers up to an empty line */
            for (;;) {
                const char *tl = memchr(buf + i, '\n', n - i);
                if (!tl)
                    return 0;
                bool empty = tl == buf + i || (tl == buf + i + 1 && buf[i] == '\r');
                i = (size_t)(tl - buf) + 1;
                if (empty)
                    return out->failed ? -1 : 1;
            }
        }
        if (size > n || n - i < size + 2)
            return 0;
        strbuf_add(out, buf + i, (size_t)size);
        i += (size_t)size + 2;
    }
}

/* The answer's body so far: report it when complete. Returns true when reported. */
static bool body_check(struct tunnel *t, bool eof)
{
    size_t have = t->in_len - t->head_end;
    const char *body = t->in + t->head_end;
    struct upstream_response *resp = t->resp;
    if (t->max_body && (have > t->max_body + (t->chunked ? 4096 : 0) ||
                        (t->body_want > 0 && (uint64_t)t->body_want > t->max_body))) {
        fail(t, OUTCOME_RESPONSE_TOO_LARGE, "the response is over the configured limit");
        return true;
    }
    if (t->chunked) {
        struct strbuf b = {0};
        int rc = dechunk(body, have, &b);
        if (rc == 0 && !eof) {
            free(b.s);
            return false;
        }
        if (rc != 1) {
            free(b.s);
            fail(t, OUTCOME_RESET, "malformed or cut chunked response body");
            return true;
        }
        if (t->max_body && b.len > t->max_body) {
            free(b.s);
            fail(t, OUTCOME_RESPONSE_TOO_LARGE, "the response is over the configured limit");
            return true;
        }
        resp->body = b.s;
        resp->body_len = resp->body_cap = b.len;
    } else {
        if (t->body_want >= 0 && have < (uint64_t)t->body_want) {
            if (!eof)
                return false;
            fail(t, OUTCOME_RESET, "the upstream closed the connection mid-body");
            return true;
        }
        if (t->body_want < 0 && !eof)
            return false;
        size_t n = t->body_want >= 0 ? (size_t)t->body_want : have;
        resp->body = malloc(n ? n : 1);
        if (!resp->body) {
            fail(t, OUTCOME_RESET, "out of memory");
            return true;
        }
        memcpy(resp->body, body, n);
        resp->body_len = resp->body_cap = n;
    }
    struct outcome o = {.kind = OUTCOME_STATUS, .status = resp->status};
    if (resp->status >= 500)
        snprintf(o.detail, sizeof o.detail, "HTTP %d", resp->status);
    t->resp = NULL;
    report(t, &o, resp);
    return true;
}

/* The head is in: a 101 is reported at once (what follows it is the upstream's first
 * tunnel bytes), anything else once its body is in. Returns true when reported. */
static bool head_done(struct tunnel *t, bool eof)
{
    if (parse_head(t) != 0) {
        fail(t, OUTCOME_RESET, "malformed response head");
        return true;
    }
    if (t->resp->status != 101) {
        t->state = T_BODY;
        return body_check(t, eof);
    }
    size_t extra = t->in_len - t->head_end;
    t->u2c.cap = TUNNEL_BUF > extra ? TUNNEL_BUF : extra;
    t->u2c.d = malloc(t->u2c.cap);
    if (!t->u2c.d) {
        fail(t, OUTCOME_RESET, "out of memory");
        return true;
    }
    memcpy(t->u2c.d, t->in + t->head_end, extra);
    t->u2c.len = extra;
    struct outcome o = {.kind = OUTCOME_STATUS, .status = 101};
    struct upstream_response *resp = t->resp;
    t->resp = NULL;
    report(t, &o, resp);
    return true;
}

/* Look for a whole head in t->in from offset from on. An interim answer (1xx other than
 * 101: 100, 103) is dropped and the next head looked for. Returns true when the attempt
 * has reported. */
static bool head_scan(struct tunnel *t, size_t from)
{
    for (;;) {
        char *e = strstr(t->in + from, "\r\n\r\n");
        if (!e || (size_t)(e - t->in) + 4 > t->max_header) {
            if (!e && t->in_len <= t->max_header)
                return false;
            fail(t, OUTCOME_RESPONSE_TOO_LARGE, "the response head is over the limit");
            return true;
        }
        t->head_end = (size_t)(e - t->in) + 4;
        if (strncmp(t->in, "HTTP/1.", 7) != 0 || t->in[9] != '1' || atoi(t->in + 9) == 101 ||
            atoi(t->in + 9) > 199)
            return head_done(t, false);
        memmove(t->in, t->in + t->head_end, t->in_len - t->head_end + 1); /* its NUL too */
        t->in_len -= t->head_end;
        t->head_end = from = 0;
    }
}

/* Send the request head, then read the answer, as far as the socket allows. */
static void head_io(struct tunnel *t)
{
    while (t->state == T_SENDING) {
        if (t->out_sent == t->out.len) {
            t->state = T_HEAD;
            break;
        }
        ssize_t n = up_send(t, t->out.s + t->out_sent, t->out.len - t->out_sent);
        if (n == -1)
            return;
        if (n < 0) {
            fail(t, OUTCOME_RESET, "the upstream connection failed while sending");
            return;
        }
        t->out_sent += (size_t)n;
    }
    for (int rounds = 0; rounds < 1024; rounds++) {
        if (t->in_cap - t->in_len < HEAD_READ) {
            size_t cap = t->in_cap ? t->in_cap * 2 : 2 * HEAD_READ;
            char *p = realloc(t->in, cap);
            if (!p) {
                fail(t, OUTCOME_RESET, "out of memory");
                return;
            }
            t->in = p;
            t->in_cap = cap;
        }
        ssize_t n = up_recv(t, t->in + t->in_len, t->in_cap - t->in_len - 1);
        if (n == -1)
            return;
        if (n == -2 || (n == 0 && t->state == T_HEAD)) {
            fail(t, OUTCOME_RESET, "the upstream closed the connection before its answer");
            return;
        }
        bool eof = n == 0;
        size_t from = t->in_len >= 3 ? t->in_len - 3 : 0;
        t->in_len += (size_t)n;
        t->in[t->in_len] = '\0';
        if (t->state == T_HEAD) {
            if (head_scan(t, from))
                return;
        } else if (body_check(t, eof)) {
            return;
        }
    }
    loop_timer_start(t->r->env->loop, &t->again, 0);
}

static void join_pump(struct tunnel *t);
static void tunnel_end(struct tunnel *t);

static void on_up_event(void *arg, uint32_t events)
{
    struct tunnel *t = arg;
    (void)events;
    if (t->state == T_JOINED)
        join_pump(t);
    else
        head_io(t);
}

static void on_again(void *arg)
{
    on_up_event(arg, 0);
}

/* The attempt's timeout, or (joined) idle-timeout: both directions silent that long. */
static void on_timer(void *arg)
{
    struct tunnel *t = arg;
    if (t->state != T_JOINED) {
        fail(t, t->state == T_CONNECTING ? OUTCOME_CONNECT_FAILURE : OUTCOME_TIMEOUT,
             "no answer to the upgrade in time");
        return;
    }
    int64_t silent = (loop_now_us(t->r->env->loop) - t->last_us) / 1000;
    if (silent < t->idle_ms) {
        loop_timer_start(t->r->env->loop, &t->timer, t->idle_ms - silent);
        return;
    }
    log_debug("tunnel of request %s idle for %lld ms: closed", t->r->request_id, (long long)silent);
    tunnel_end(t);
}

static void on_connected(void *arg, const struct outcome *o, struct upstream_response *resp,
                         int64_t elapsed_us)
{
    struct tunnel *t = arg;
    (void)resp;
    (void)elapsed_us;
    if (o->kind != OUTCOME_STATUS) {
        t->a = NULL; /* released by upstream.c */
        struct outcome oc = *o;
        oc.kind = OUTCOME_CONNECT_FAILURE; /* nothing was sent */
        report(t, &oc, NULL);
        return;
    }
    curl_socket_t s = CURL_SOCKET_BAD;
    curl_easy_getinfo(t->easy, CURLINFO_ACTIVESOCKET, &s);
    t->ufd = s == CURL_SOCKET_BAD ? -1 : dup(s);
    if (t->ufd < 0 || loop_io_add(t->r->env->loop, &t->uio, t->ufd,
                                  EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, on_up_event, t) != 0) {
        fail(t, OUTCOME_CONNECT_FAILURE, "cannot watch the upstream connection");
        return;
    }
    t->state = T_SENDING;
    head_io(t);
}

/* The request head: request line, Host, the forwarded headers, the upgrade. */
static int build_head(struct tunnel *t, const struct upstream_request *req)
{
    const char *auth = strstr(req->url, "://");
    if (!auth)
        return -1;
    auth += 3;
    const char *path = strchr(auth, '/');
    size_t alen = path ? (size_t)(path - auth) : strlen(auth);
    strbuf_printf(&t->out, "GET %s HTTP/1.1\r\nHost: %.*s\r\n", path ? path : "/", (int)alen, auth);
    for (const char *const *h = req->headers; h && *h; h++) {
        strbuf_puts(&t->out, *h);
        strbuf_add(&t->out, "\r\n", 2);
    }
    strbuf_puts(&t->out, "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    return t->out.failed ? -1 : 0;
}

struct upstream_attempt *tunnel_start(struct request *r, const struct upstream_request *req,
                                      upstream_done_cb cb)
{
    struct tunnel *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->r = r;
    t->up = r->env->upstream;
    t->cb = cb;
    t->ufd = t->cfd = -1;
    t->start_us = monotonic_us();
    t->timeout_ms = req->timeout_ms;
    t->max_header = req->max_header_bytes;
    t->max_body = req->max_body;
    loop_timer_init(&t->timer, on_timer, t);
    loop_timer_init(&t->again, on_again, t);
    r->tunnel = t;
    if (build_head(t, req) != 0 || !(t->a = upstream_connect_start(t->up, req, on_connected, t))) {
        tunnel_free(t);
        return NULL;
    }
    t->easy = upstream_attempt_easy(t->a);
    if (t->timeout_ms > 0)
        loop_timer_start(r->env->loop, &t->timer, t->timeout_ms);
    return t->a;
}

void tunnel_cancel(struct request *r)
{
    if (r->tunnel && r->tunnel->state < T_UPGRADE)
        tunnel_free(r->tunnel);
}

/* ---- the 101 and the join ---------------------------------------------------------- */

static bool pipe_room(const struct pipe_buf *b)
{
    return b->off + b->len < b->cap || b->off > 0;
}

static void tunnel_end(struct tunnel *t)
{
    struct request *r = t->r;
    struct request_env *env = r->env;
    bool done = t->mhd_done;
    if (t->prev)
        t->prev->next = t->next;
    else
        env->tunnels = t->next;
    if (t->next)
        t->next->prev = t->prev;
    r->svc->state->tunnels_open--;
    r->status = 101;
    request_add_flag(r, "UG");
    request_log(r);
    struct MHD_UpgradeResponseHandle *urh = t->urh;
    tunnel_free(t); /* closes the dups and curl's connection */
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    env->tunnel_closed(r, done);
}

/* Read from fd (the client) or curl (the upstream) into b. */
static ssize_t pipe_read(struct tunnel *t, bool client, struct pipe_buf *b)
{
    if (b->off + b->len == b->cap) {
        memmove(b->d, b->d + b->off, b->len);
        b->off = 0;
    }
    char *p = b->d + b->off + b->len;
    size_t room = b->cap - b->off - b->len;
    if (!client)
        return up_recv(t, p, room);
    ssize_t n = recv(t->cfd, p, room, 0);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
    return n;
}

static ssize_t pipe_write(struct tunnel *t, bool client, struct pipe_buf *b)
{
    const char *p = b->d + b->off;
    if (!client)
        return up_send(t, p, b->len);
    ssize_t n = send(t->cfd, p, b->len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
    return n;
}

/* Move what can be moved, both ways, until every socket would block (edge-triggered:
 * each wait is on a socket that said EAGAIN). */
static void join_pump(struct tunnel *t)
{
    struct request *r = t->r;
    bool progress = true, error = false;
    int rounds = 0;
    while (progress && !error && rounds++ < PUMP_ROUNDS) {
        progress = false;
        ssize_t n;
        if (!t->c_eof && pipe_room(&t->c2u)) {
            n = pipe_read(t, true, &t->c2u);
            if (n > 0) {
                t->c2u.len += (size_t)n;
                r->bytes_in += (uint64_t)n;
            }
            t->c_eof = n == 0;
            error |= n == -2;
            progress |= n >= 0;
        }
        if (t->c2u.len && !t->u_shut) {
            n = pipe_write(t, false, &t->c2u);
            if (n > 0) {
                t->c2u.off += (size_t)n;
                t->c2u.len -= (size_t)n;
                if (!t->c2u.len)
                    t->c2u.off = 0;
                progress = true;
            }
            error |= n == -2;
        }
        if (!t->u_eof && pipe_room(&t->u2c)) {
            n = pipe_read(t, false, &t->u2c);
            if (n > 0) {
                t->u2c.len += (size_t)n;
                r->bytes_out += (uint64_t)n;
            }
            t->u_eof = n == 0;
            error |= n == -2;
            progress |= n >= 0;
        }
        if (t->u2c.len && !t->c_shut) {
            n = pipe_write(t, true, &t->u2c);
            if (n > 0) {
                t->u2c.off += (size_t)n;
                t->u2c.len -= (size_t)n;
                if (!t->u2c.len)
                    t->u2c.off = 0;
                progress = true;
            }
            error |= n == -2;
        }
        if (progress)
            t->last_us = loop_now_us(r->env->loop);
    }
    if (t->c_eof && !t->c2u.len && !t->u_shut) {
        shutdown(t->ufd, SHUT_WR);
        t->u_shut = true;
    }
    if (t->u_eof && !t->u2c.len && !t->c_shut) {
        shutdown(t->cfd, SHUT_WR);
        t->c_shut = true;
    }
    if (error || (t->u_shut && t->c_shut)) {
        tunnel_end(t);
        return;
    }
    if (progress)
        loop_timer_start(r->env->loop, &t->again, 0);
}

static void on_client_event(void *arg, uint32_t events)
{
    (void)events;
    join_pump(arg);
}

/* MHD has sent the 101 and hands over the client's socket (from MHD_run: no lock). */
static void on_upgrade(void *cls, struct MHD_Connection *connection, void *con_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh)
{
    struct request *r = cls;
    (void)connection;
    (void)con_cls;
    state_enter();
    struct tunnel *t = r->tunnel;
    struct loop *loop = r->env->loop;
    if (!t || t->state != T_UPGRADE) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        state_leave();
        return;
    }
    t->urh = urh;
    t->state = T_JOINED;
    t->next = r->env->tunnels;
    if (t->next)
        t->next->prev = t;
    r->env->tunnels = t;
    r->svc->state->tunnels_open++;
    r->bytes_out = t->u2c.len; /* the upstream's first bytes, counted as they go out */
    r->bytes_in = 0;
    t->c2u.cap = TUNNEL_BUF > extra_in_size ? TUNNEL_BUF : extra_in_size;
    t->c2u.d = malloc(t->c2u.cap);
    t->cfd = dup(sock);
    t->last_us = loop_now_us(loop);
    t->idle_ms = r->rt->cfg->idle_timeout_ms;
    if (!t->c2u.d || t->cfd < 0 ||
        loop_io_add(loop, &t->cio, t->cfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                    on_client_event, t) != 0 ||
        loop_io_add(loop, &t->uio, t->ufd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, on_up_event,
                    t) != 0) {
        log_warn("request %s: cannot join the tunnel: %s", r->request_id, strerror(errno));
        tunnel_end(t);
        state_leave();
        return;
    }
    if (extra_in_size) /* libmicrohttpd 1.0 passes NULL when it read nothing past the head */
        memcpy(t->c2u.d, extra_in, extra_in_size);
    t->c2u.len = extra_in_size;
    r->bytes_in = extra_in_size;
    if (t->idle_ms > 0)
        loop_timer_start(loop, &t->timer, t->idle_ms);
    join_pump(t);
    state_leave();
}

struct MHD_Response *tunnel_response(struct request *r)
{
    struct upstream_response *up = r->resp;
    struct MHD_Response *resp = MHD_create_response_for_upgrade(on_upgrade, r);
    if (!resp)
        return NULL;
    bool upgrade = false;
    for (size_t i = 0; i < up->headers.n; i++) {
        const struct header *h = &up->headers.items[i];
        if (!*h->value || strcasecmp(h->name, "Connection") == 0 ||
            strcasecmp(h->name, "Content-Length") == 0 ||
            strcasecmp(h->name, "Transfer-Encoding") == 0 ||
            strcasecmp(h->name, "Keep-Alive") == 0 || strcasecmp(h->name, "X-Request-Id") == 0 ||
            strncasecmp(h->name, "X-Ahoyd-", 8) == 0)
            continue;
        upgrade |= strcasecmp(h->name, "Upgrade") == 0;
        MHD_add_response_header(resp, h->name, h->value);
    }
    if (!upgrade)
        MHD_add_response_header(resp, "Upgrade", "websocket");
    char n[16];
    snprintf(n, sizeof n, "%d", r->attempts);
    MHD_add_response_header(resp, "X-Ahoyd-Attempts", n);
    if (r->resp_endpoint)
        MHD_add_response_header(resp, "X-Ahoyd-Upstream", r->resp_endpoint);
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    return resp;
}

bool tunnel_holds(struct request *r)
{
    struct tunnel *t = r->tunnel;
    if (!t)
        return false;
    if (t->state == T_JOINED) {
        t->mhd_done = true;
        return true;
    }
    tunnel_free(t);
    return false;
}

void tunnel_close_all(struct request_env *env)
{
    while (env->tunnels)
        tunnel_end(env->tunnels);
}
