/*
 * upstream.c - upstream attempts on libcurl's multi socket API.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to
 * wake it (CURLMOPT_TIMERFUNCTION); the loop calls curl_multi_socket_action
 * with what happened and we collect finished transfers with
 * curl_multi_info_read. No transfer ever blocks the loop.
 *
 * Traps handled here (libcurl 7.88 behaviour):
 * - curl silently re-sends a request when a reused connection dies before any
 *   response byte. For requests that may not be retried we count
 *   CURLOPT_PREREQFUNCTION calls and abort the second one (outcome: reset).
 * - PREREQFUNCTION marks the moment the request is about to be written, which
 *   separates connect-failure (nothing sent) from reset/timeout.
 * - MAXFILESIZE only checks a declared length in 7.88: the body and header
 *   limits are enforced in the write and header callbacks.
 * - Every easy handle is reset and given the full option set: path as is, no
 *   proxy from the environment, HTTP/1.1, http/https only, no redirects, no
 *   content decoding, no Expect: 100-continue, no default Accept/Content-Type.
 */
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "counters.h"
#include "strbuf.h"
#include "upstream.h"
#include "upstream_read.h"
#include "upstream_send.h"

#define IDLE_HANDLES_MAX 256
/* Idle upstream connections are dropped before common upstream keep-alive timeouts
 * (Node.js: 5 s) so that curl rarely writes onto a connection the upstream closed. */
#define UPSTREAM_MAX_IDLE_AGE_S 4
#define UPSTREAM_MAX_CACHED_CONNECTIONS 1024 /* idle upstream connections kept for reuse */
/* Keepalive probes on a streamed response's connection: a dead peer is found in about
 * KEEPIDLE + 9 x KEEPINTVL seconds of silence (Linux sends 9 probes). */
#define UPSTREAM_STREAM_KEEPIDLE_S 10
#define UPSTREAM_STREAM_KEEPINTVL_S 5

struct upstream {
    struct loop *loop;
    CURLM *multi;
    struct sock_watch **watches; /* by fd: registrations kept while curl keeps the socket */
    size_t n_watches;
    struct loop_timer timer;
    struct upstream_attempt *idle; /* free list of attempts with their easy handles */
    size_t n_idle;
};

struct upstream_attempt {
    struct upstream *u;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *connect_to;
    CURLU *uh;    /* the parsed URL of the last attempt on this handle (CURLOPT_CURLU) */
    char *uh_url; /* ... and the string it was parsed from */
    upstream_done_cb cb;
    upstream_data_cb on_data; /* a streamed response's body goes here, not into rd */
    upstream_head_cb on_head; /* a call's: decides at the head whether on_data gets it */
    void *arg;
    bool head_seen;           /* on_head was asked */
    bool streaming;           /* on_head said stream: rd.resp is the caller's */
    bool paused;              /* on_data held the body back (upstream_resume_body) */
    bool send_paused;         /* read_body had nothing yet (upstream_resume_upload) */
    size_t (*read_body)(void *arg, char *buf, size_t max);
    struct upstream_reader rd;    /* the response and its limits */
    int prereq_calls;
    bool allow_resend;
    bool resend_aborted;
    bool connect_only; /* a tunnel's: CONNECT_ONLY, reports once connected */
    bool connect_timeout_decides; /* connect-timeout <= timeout: a pre-send timeout is a
                                     connect failure */
    int64_t start_us;
    /* read-timeout: the callbacks note when bytes last came (no lock, no timer work per
     * read); the timer, armed for the whole timeout, looks at that and re-arms itself */
    int64_t read_timeout_ms;    /* 0 = none */
    _Atomic int64_t last_read_us; /* 0 until the first response byte */
    struct loop_timer read_timer;
    struct upstream_attempt *next_idle;
    char errbuf[CURL_ERROR_SIZE];
};

/* One per upstream socket, from its first use until curl closes it. curl drops a socket
 * from its watch list (CURL_POLL_REMOVE) after every transfer even when it keeps the
 * connection for reuse; deregistering and re-registering it each time would cost two
 * epoll_ctl calls per request. So a removed socket is parked: still registered with its
 * last events, found again by fd when curl reuses it, and removed for real when curl
 * closes it (CURLOPT_CLOSESOCKETFUNCTION) or, lazily, when it signals while parked. */
struct sock_watch {
    struct loop_io io;
    struct upstream *u;
    int fd;
    bool parked;
};

void upstream_response_free(struct upstream_response *r)
{
    if (!r)
        return;
    header_list_clear(&r->headers);
    free(r->headers.items);
    free(r->body);
}

/* ---- curl callbacks -------------------------------------------------------------- */

static void note_read(struct upstream_attempt *a)
{
    if (a->read_timeout_ms > 0)
        atomic_store_explicit(&a->last_read_us, monotonic_us(), memory_order_relaxed);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct upstream_attempt *a = userdata;
    note_read(a);
    if (a->streaming) {
        size_t n = size * nmemb;
        if (a->rd.max_body && a->rd.body_seen + n > a->rd.max_body) {
            a->rd.too_large = true; /* a streamed body grew over max-response-body: cut */
            return 0;
        }
        state_enter();
        size_t taken = a->on_data(a->arg, 0, data, n);
        state_leave();
        if (taken == UPSTREAM_DATA_PAUSE)
            a->paused = true;
        else if (taken == n)
            a->rd.body_seen += n;
        return taken;
    }
    if (a->on_data && !a->on_head) {
        /* curl runs this with the state lock let go (socket_action): take it back */
        long status = 0;
        curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
        state_enter();
        size_t taken = a->on_data(a->arg, (int)status, data, size * nmemb);
        state_leave();
        return taken;
    }
    return upstream_read_body(&a->rd, data, size * nmemb);
}

/* The final head of a call's response is complete: let the caller decide (on_head). */
static void head_decide(struct upstream_attempt *a)
{
    struct upstream_response *resp = a->rd.resp;
    long status = 0;
    a->head_seen = true;
    curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
    resp->status = (int)status;
    resp->head_us = monotonic_us() - a->start_us;
    state_enter();
    enum upstream_head_verdict v = a->on_head(a->arg, resp);
    state_leave();
    if (v == UPSTREAM_HEAD_STREAM) {
        a->rd.resp = NULL;
        a->streaming = true;
    } else if (resp->content_length > 0 && a->rd.keep_max &&
               (uint64_t)resp->content_length <= a->rd.keep_max && resp->body_cap == 0) {
        resp->body = malloc((size_t)resp->content_length);
        if (resp->body)
            resp->body_cap = (size_t)resp->content_length;
    }
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata)
{
    struct upstream_attempt *a = userdata;
    size_t n = size * nmemb;
    note_read(a);
    size_t rc = upstream_read_header(&a->rd, line, n);
    if (rc == n && a->on_head && !a->head_seen && a->rd.headers_done)
        head_decide(a);
    return rc;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct upstream_attempt *a = userdata;
    if (!a->read_body)
        return 0;
    state_enter();
    size_t n = a->read_body(a->arg, buf, size * nitems);
    state_leave();
    if (n == UPSTREAM_READ_PAUSE)
        a->send_paused = true;
    return n;
}

static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct upstream_attempt *a = clientp;
    a->prereq_calls++;
    if (a->prereq_calls > 1 && !a->allow_resend) {
        /* curl is about to re-send on a new connection: not for this request (SPEC 4.3) */
        a->resend_aborted = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/* ---- socket and timer glue ------------------------------------------------------- */

static void check_done(struct upstream *u);

static struct sock_watch *watch_get(struct upstream *u, int fd)
{
    return fd >= 0 && (size_t)fd < u->n_watches ? u->watches[fd] : NULL;
}

static int watch_put(struct upstream *u, int fd, struct sock_watch *w)
{
    if ((size_t)fd >= u->n_watches) {
        size_t n = u->n_watches ? u->n_watches : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct sock_watch **t = realloc(u->watches, n * sizeof *t);
        if (!t)
            return -1;
        memset(t + u->n_watches, 0, (n - u->n_watches) * sizeof *t);
        u->watches = t;
        u->n_watches = n;
    }
    u->watches[fd] = w;
    return 0;
}

/* Let curl work on a socket or its timers. The state lock is let go meanwhile (loop.h):
 * the callbacks curl makes in there touch only the attempt's own buffers and this
 * worker's watches, or take the lock themselves (on_timer, on_close_socket). */
static void socket_action(struct upstream *u, curl_socket_t fd, int flags)
{
    int running;
    int depth = state_release();
    curl_multi_socket_action(u->multi, fd, flags, &running);
    state_reacquire(depth);
    check_done(u);
}

static void on_socket_event(void *arg, uint32_t events)
{
    struct sock_watch *w = arg;
    struct upstream *u = w->u;
    int flags = 0;
    if (w->parked) {
        /* an idle connection spoke (usually the upstream closed it): stop watching it;
         * curl finds out on its own when it next looks at the connection */
        loop_io_del(u->loop, &w->io);
        return;
    }
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    socket_action(u, w->fd, flags);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream *u = userp;
    struct sock_watch *w = socketp ? socketp : watch_get(u, s);

    if (what == CURL_POLL_REMOVE) {
        if (w)
            w->parked = true; /* kept registered: see struct sock_watch */
        return 0;
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN)
        ev |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev |= EPOLLOUT;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return -1;
        w->u = u;
        w->fd = s;
        if (watch_put(u, s, w) != 0) {
            free(w);
            return -1;
        }
    }
    w->parked = false;
    if (!w->io.registered) {
        if (loop_io_add(u->loop, &w->io, s, ev, on_socket_event, w) != 0)
            return -1;
    } else if (loop_io_mod(u->loop, &w->io, ev) != 0) {
        return -1;
    }
    curl_multi_assign(u->multi, s, w);
    return 0;
}

/* curl opens a socket for a connection: counted until on_close_socket (the
 * ahoyd_upstream_connections gauge). */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)clientp;
    (void)purpose;
    curl_socket_t s = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (s == CURL_SOCKET_BAD)
        return CURL_SOCKET_BAD;
    state_enter();
    counters_note_upstream_connection(1);
    state_leave();
    return s;
}

/* curl closes a socket: forget its watch (closing the fd takes it out of epoll). */
static int on_close_socket(void *clientp, curl_socket_t s)
{
    struct upstream *u = clientp;
    state_enter();
    counters_note_upstream_connection(-1);
    struct sock_watch *w = watch_get(u, s);
    if (w) {
        u->watches[s] = NULL;
        w->io.registered = false; /* gone from epoll with the fd; no event may use it */
        loop_defer_free(u->loop, w);
    }
    state_leave();
    return close(s);
}

static void on_timer_fire(void *arg)
{
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream *u = userp;
    state_enter(); /* timer heaps are shared state (a breaker timer may be armed on it) */
    if (timeout_ms < 0)
        loop_timer_stop(u->loop, &u->timer);
    else
        loop_timer_start(u->loop, &u->timer, timeout_ms);
    state_leave();
    return 0;
}

/* ---- attempts ---------------------------------------------------------------------- */

static void attempt_release(struct upstream_attempt *a);

/* read-timeout: silent that long since the last response byte (silence before the first
 * one is the timeout's business): the attempt ends as a timeout. */
static void on_read_timer(void *arg)
{
    struct upstream_attempt *a = arg;
    struct upstream *u = a->u;
    int64_t last = atomic_load_explicit(&a->last_read_us, memory_order_relaxed);
    int64_t silent_ms = last ? (monotonic_us() - last) / 1000 : 0;
    if (a->paused)
        silent_ms = 0; /* held back by ahoyd (a slow client), not a silent upstream */
    if (silent_ms < a->read_timeout_ms) {
        loop_timer_start(u->loop, &a->read_timer, a->read_timeout_ms - silent_ms);
        return;
    }
    struct outcome o = {.kind = OUTCOME_TIMEOUT};
    snprintf(o.detail, sizeof o.detail, "no response byte for %lld ms (read-timeout)",
             (long long)a->read_timeout_ms);
    curl_multi_remove_handle(u->multi, a->easy);
    int64_t elapsed = monotonic_us() - a->start_us;
    upstream_done_cb cb = a->cb;
    void *cb_arg = a->arg;
    attempt_release(a);
    cb(cb_arg, &o, NULL, elapsed);
}

struct upstream *upstream_new(struct loop *loop)
{
    struct upstream *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->loop = loop;
    u->multi = curl_multi_init();
    if (!u->multi) {
        free(u);
        return NULL;
    }
    loop_timer_init(&u->timer, on_timer_fire, u);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    /* curl 7.88 otherwise keeps only 4 x the transfers running now, and closes idle
     * upstream connections whenever traffic dips: a connect per few requests */
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, (long)UPSTREAM_MAX_CACHED_CONNECTIONS);
    return u;
}

static void attempt_free(struct upstream_attempt *a)
{
    curl_easy_cleanup(a->easy);
    curl_url_cleanup(a->uh);
    free(a->uh_url);
    free(a);
}

static void attempt_release(struct upstream_attempt *a)
{
    struct upstream *u = a->u;
    if (a->read_timeout_ms > 0)
        loop_timer_stop(u->loop, &a->read_timer);
    a->read_timeout_ms = 0;
    free(a->headers); /* one block (upstream_send_headers) */
    a->headers = NULL;
    curl_slist_free_all(a->connect_to);
    a->connect_to = NULL;
    if (a->rd.resp) {
        upstream_response_free(a->rd.resp);
        free(a->rd.resp);
        a->rd.resp = NULL;
    }
    /* a handle removed while paused may keep held bytes and its pause: not reused */
    if (u->n_idle < IDLE_HANDLES_MAX && !a->paused && !a->send_paused && !a->connect_only) {
        a->next_idle = u->idle;
        u->idle = a;
        u->n_idle++;
    } else {
        attempt_free(a);
    }
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    loop_timer_stop(u->loop, &u->timer);
    while (u->idle) {
        struct upstream_attempt *a = u->idle;
        u->idle = a->next_idle;
        attempt_free(a);
    }
    curl_multi_cleanup(u->multi); /* closes the cached connections: on_close_socket */
    for (size_t i = 0; i < u->n_watches; i++)
        if (u->watches[i]) {
            loop_io_del(u->loop, &u->watches[i]->io);
            free(u->watches[i]);
        }
    free(u->watches);
    free(u);
}

/* The options that never change for a handle: it belongs to one attempt struct for
 * life, so even the callback data pointers are constant. Set once, not per attempt. */
static void set_constant_options(struct upstream_attempt *a)
{
    CURL *e = a->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, a);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, (long)UPSTREAM_MAX_IDLE_AGE_S);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, a);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, a);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->errbuf);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, a->u);
}

/* One attempt's easy handle: a flat list of curl options, each set for every attempt
 * (a reused handle keeps what the last one set), so it reads top to bottom. */
static struct upstream_attempt *attempt_begin(struct upstream *u,
                                              const struct upstream_request *req,
                                              upstream_data_cb on_data, upstream_done_cb cb,
                                              void *arg, upstream_head_cb on_head,
                                              uint64_t keep_max, bool connect_only)
{
    struct upstream_attempt *a = u->idle;
    if (a) {
        u->idle = a->next_idle;
        u->n_idle--;
    } else {
        a = calloc(1, sizeof *a);
        if (!a)
            return NULL;
        a->easy = curl_easy_init();
        if (!a->easy) {
            free(a);
            return NULL;
        }
        a->u = u;
        set_constant_options(a);
    }
    CURL *e = a->easy;
    a->u = u;
    a->cb = cb;
    a->on_data = on_data;
    a->on_head = on_head;
    a->arg = arg;
    a->head_seen = a->streaming = a->paused = a->send_paused = false;
    a->read_body = req->read_body;
    a->rd.keep_max = keep_max;
    a->rd.body_seen = 0;
    a->rd.defer_alloc = on_head != NULL;
    a->prereq_calls = 0;
    a->allow_resend = req->allow_resend;
    a->connect_only = connect_only;
    curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, connect_only ? 1L : 0L);
    a->rd.too_large = false;
    a->resend_aborted = false;
    a->rd.headers_done = false;
    a->rd.in_block = false;
    a->rd.interim = false;
    a->rd.header_bytes = 0;
    a->rd.max_body = req->max_body;
    a->rd.max_header_bytes = req->max_header_bytes;
    a->connect_timeout_decides =
        req->timeout_ms <= 0 || req->connect_timeout_ms <= req->timeout_ms;
    a->read_timeout_ms = req->read_timeout_ms;
    atomic_store_explicit(&a->last_read_us, 0, memory_order_relaxed);
    a->errbuf[0] = '\0';
    a->rd.resp = calloc(1, sizeof *a->rd.resp);
    a->headers = upstream_send_headers(req);
    if (!a->rd.resp || !a->headers) {
        attempt_release(a);
        return NULL;
    }
    a->rd.resp->content_length = -1;

    /* the URL parsed once per handle and URL (an endpoint's handles see the same ones
     * again and again), not by curl on every transfer */
    if (!a->uh_url || strcmp(a->uh_url, req->url) != 0) {
        free(a->uh_url);
        a->uh_url = NULL;
        if (!a->uh)
            a->uh = curl_url();
        if (!a->uh ||
            curl_url_set(a->uh, CURLUPART_URL, req->url,
                         CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS) != CURLUE_OK ||
            !(a->uh_url = strdup(req->url))) {
            attempt_release(a);
            return NULL;
        }
    }
    curl_easy_setopt(e, CURLOPT_CURLU, a->uh);
    /* timeout 0: no bound (a stream may last for ever; the deadline, when set, is in
     * timeout_ms already) */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms > 0 ? req->timeout_ms : 0));
    /* a long stream is often silent: keepalive probes find a peer that vanished */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, on_data && !on_head ? 1L : 0L);
    if (on_data && !on_head) {
        curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, (long)UPSTREAM_STREAM_KEEPIDLE_S);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, (long)UPSTREAM_STREAM_KEEPINTVL_S);
    }
#if LIBCURL_VERSION_NUM >= 0x080800
    /* libcurl 8.8 and later (8.14 on Debian 13) drop an empty query ("/x?" goes out as
     * "/x"); the target is forwarded byte for byte, so name it in the request line
     * (NULL resets a reused handle). 7.88 (Debian 12) sends the URL's path as given. */
    const char *tail = strstr(req->url, "://");
    tail = tail ? strchr(tail + 3, '/') : NULL;
    size_t ulen = strlen(req->url);
    curl_easy_setopt(e, CURLOPT_REQUEST_TARGET,
                     tail && ulen > 0 && req->url[ulen - 1] == '?' ? tail : NULL);
#endif
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 1));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers);
    /* tls.server-name: the URL names the server (SNI, verification, Host) and curl
     * connects to the endpoint's address instead; NULL resets a reused handle */
    a->connect_to = req->connect_to ? curl_slist_append(NULL, req->connect_to) : NULL;
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, a->connect_to);
    upstream_send_method(e, req);
    if (strncmp(req->url, "https:", 6) == 0)
        upstream_send_tls(e, req->tls);

    a->start_us = monotonic_us();
    if (curl_multi_add_handle(u->multi, e) != CURLM_OK) {
        attempt_release(a);
        return NULL;
    }
    if (a->read_timeout_ms > 0) {
        loop_timer_init(&a->read_timer, on_read_timer, a);
        loop_timer_start(u->loop, &a->read_timer, a->read_timeout_ms);
    }
    return a;
}

struct upstream_attempt *upstream_start(struct upstream *u, const struct upstream_request *req,
                                        upstream_done_cb cb, void *arg)
{
    return attempt_begin(u, req, NULL, cb, arg, NULL, 0, false);
}

struct upstream_attempt *upstream_call_start(struct upstream *u, const struct upstream_request *req,
                                             uint64_t keep_max, upstream_head_cb on_head,
                                             upstream_data_cb on_data, upstream_done_cb cb,
                                             void *arg)
{
    if (!on_head || !on_data)
        return NULL;
    return attempt_begin(u, req, on_data, cb, arg, on_head, keep_max, false);
}

/* What stays paused is said again: curl_easy_pause sets both directions at once. */
static void pause_set(struct upstream_attempt *a)
{
    int mask = (a->paused ? CURLPAUSE_RECV : 0) | (a->send_paused ? CURLPAUSE_SEND : 0);
    curl_easy_pause(a->easy, mask);
}

void upstream_resume_body(struct upstream *u, struct upstream_attempt *a)
{
    (void)u;
    if (!a->paused)
        return;
    a->paused = false;
    note_read(a); /* the silence while held back was ahoyd's */
    pause_set(a); /* may hand the held bytes to on_data now */
}

void upstream_resume_upload(struct upstream *u, struct upstream_attempt *a)
{
    (void)u;
    if (!a->send_paused)
        return;
    a->send_paused = false;
    pause_set(a);
}

struct upstream_attempt *upstream_stream_start(struct upstream *u,
                                               const struct upstream_request *req,
                                               upstream_data_cb on_data, upstream_done_cb cb,
                                               void *arg)
{
    return on_data ? attempt_begin(u, req, on_data, cb, arg, NULL, 0, false) : NULL;
}

struct upstream_attempt *upstream_connect_start(struct upstream *u,
                                                const struct upstream_request *req,
                                                upstream_done_cb cb, void *arg)
{
    return attempt_begin(u, req, NULL, cb, arg, NULL, 0, true);
}
void *upstream_attempt_easy(const struct upstream_attempt *a) { return a->easy; }

void upstream_cancel(struct upstream *u, struct upstream_attempt *a)
{
    curl_multi_remove_handle(u->multi, a->easy);
    attempt_release(a);
}

/* The words for what went wrong: the system error of a failed connect (curl's
 * CURLINFO_OS_ERRNO, as startup and reload errors say it), else curl's own message. */
static void describe(struct upstream_attempt *a, CURLcode rc, struct outcome *o)
{
    long os_errno = 0;
    const char *text = a->errbuf[0] ? a->errbuf : curl_easy_strerror(rc);

    switch (o->kind) {
    case OUTCOME_STATUS:
        snprintf(o->detail, sizeof o->detail, "HTTP %d", o->status);
        return;
    case OUTCOME_RESPONSE_TOO_LARGE:
        snprintf(o->detail, sizeof o->detail, "the response is over the configured limit");
        return;
    case OUTCOME_CONNECT_FAILURE:
        if (rc != CURLE_OPERATION_TIMEDOUT &&
            curl_easy_getinfo(a->easy, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK && os_errno)
            text = strerror((int)os_errno);
        break;
    case OUTCOME_RESET:
        if (a->resend_aborted)
            text = "the connection closed before the response; not sent again";
        break;
    default:
        break;
    }
    size_t n = strlen(text);
    if (n >= sizeof o->detail)
        n = sizeof o->detail - 1; /* curl's messages are longer than any system error */
    memcpy(o->detail, text, n);
    o->detail[n] = '\0';
}

static void classify(struct upstream_attempt *a, CURLcode rc, struct outcome *o)
{
    bool sent = a->prereq_calls > 0;
    o->status = 0;
    if (a->rd.too_large) {
        o->kind = OUTCOME_RESPONSE_TOO_LARGE;
    } else if (a->resend_aborted) {
        o->kind = OUTCOME_RESET;
    } else if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
        o->kind = OUTCOME_STATUS;
        o->status = (int)status;
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        o->kind = (!sent && a->connect_timeout_decides) ? OUTCOME_CONNECT_FAILURE
                                                        : OUTCOME_TIMEOUT;
    } else if (!sent) {
        o->kind = OUTCOME_CONNECT_FAILURE;
    } else {
        o->kind = OUTCOME_RESET;
    }
    o->detail[0] = '\0';
    if (o->kind != OUTCOME_STATUS || o->status >= 500)
        describe(a, rc, o);
}

static void check_done(struct upstream *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct upstream_attempt *a = NULL;
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&a);
        struct outcome o;
        classify(a, rc, &o); /* logged by the caller, who knows the request */
        if (a->connect_only && o.kind == OUTCOME_STATUS) { /* a tunnel's, connected */
            a->cb(a->arg, &o, NULL, monotonic_us() - a->start_us);
            continue;
        }
        curl_multi_remove_handle(u->multi, e);
        struct upstream_response *resp = NULL;
        if (o.kind == OUTCOME_STATUS && a->rd.resp) { /* none once streamed */
            resp = a->rd.resp;
            resp->status = o.status;
            curl_off_t ttfb = 0;
            if (curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &ttfb) == CURLE_OK)
                resp->head_us = (int64_t)ttfb;
            a->rd.resp = NULL;
        }
        int64_t elapsed = monotonic_us() - a->start_us;
        upstream_done_cb cb = a->cb;
        void *arg = a->arg;
        attempt_release(a);
        cb(arg, &o, resp, elapsed);
    }
}
