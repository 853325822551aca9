/*
 * server.c - the life of the proxy's listeners: libmicrohttpd (MHD) daemons
 * started on ahoyd's loop, switched by a reload, drained at shutdown.
 *
 * MHD runs with MHD_USE_EPOLL and no thread of its own: its epoll fd sits in
 * ahoyd's loop and MHD_run() is called when it is readable or when MHD's own
 * timeout is due. One daemon is one struct listener; the first of the
 * server's list accepts, the others were quiesced by a reload (or the drain)
 * and serve their open connections until the last one ends.
 *
 * The other rooms of the server side:
 *   listen.c    the listening sockets (inet, unix, the workers' SO_REUSEPORT
 *               siblings) and the owner-checked removal of a unix socket file
 *   intake.c    what MHD calls back: a request's head checks, routing, body,
 *               request-timeout, the client connection, raw 408/413 answers
 *   forward.c   the request headers sent upstream and the response head back
 *   request.c   struct request: made, answered (the hook set here: the
 *               intake's resume), logged and freed
 * and the call itself is proxy.c's, which gets its loop, upstream, rng and
 * drain deadline from the server's struct request_env.
 *
 * A reload is two steps, prepare and commit, so that nothing changes unless
 * everything can: a new daemon (on a new socket, or on the same one when
 * only the limits change) is started first and made the accepting one at
 * commit; a further worker's switch runs on its own thread (loop_post).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "intake.h"
#include "listen.h"
#include "log.h"
#include "proxy.h"
#include "request.h"
#include "server.h"
#include "stream.h"
#include "tunnel.h"

#define CONNECTION_RESERVE 16 /* connections above max-connections for the 503 answer */
/* MHD keeps a connection's request head and the response head it writes in one pool,
 * which it zeroes after every request and which stays allocated (and touched) as long
 * as the connection is open: the pool is the request-header limit plus this room (read
 * buffer, response head), and at least POOL_MIN, so that a head somewhat over a small
 * limit still gets ahoyd's JSON 431 rather than the library's own answer. A response
 * head that would not fit is refused with a JSON 502 rather than MHD's silent close
 * (see forward_fits_pool). 4 KiB of room is what the 16 KiB default limits need: a
 * request head just under 16 KiB with a small response head, or the reverse. */
#define POOL_ROOM (4 * 1024)
#define POOL_MIN (20 * 1024)

/* ---- listeners: one MHD daemon each, on the loop --------------------------------- */

/* Run one daemon. The state lock is let go meanwhile: MHD parses and does socket I/O
 * on its own; its callbacks into ahoyd take the lock back. */
static void mhd_run(struct listener *l)
{
    int depth = state_release();
    MHD_run(l->mhd);
    state_reacquire(depth);
}

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
    loop_io_del(s->env.loop, &l->io);
    loop_timer_stop(s->env.loop, &l->timer);
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
            loop_timer_start(s->env.loop, &l->timer, (int64_t)to);
        } else {
            loop_timer_stop(s->env.loop, &l->timer);
        }
        pp = &l->next;
    }
    for (struct listener *l = s->listeners; l; l = l->next)
        if (l->kick)
            return 0; /* a run above asked for another one: do not block */
    return -1;
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
    if (pool < POOL_MIN)
        pool = POOL_MIN;
    l->pool_size = pool;
    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)intake_on_mhd_log, l},
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)intake_on_uri, l},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)intake_on_completed, l},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)intake_on_connection, l},
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
    l->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE |
                                  MHD_USE_ERROR_LOG,
                              0, NULL, NULL, intake_on_access, l, MHD_OPTION_ARRAY, ops,
                              MHD_OPTION_END);
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
    if (loop_io_add(l->srv->env.loop, &l->io, l->epoll_fd, EPOLLIN, on_listener_io, l) != 0)
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
    loop_set_prepare(s->env.loop, on_prepare, s);
    return 0;
}

/* A server's request environment: its loop and upstream, and the intake as the answer
 * hook (rng and drain state are set apart). */
static void server_env_init(struct server *s, struct loop *loop, struct upstream *up, size_t worker)
{
    s->env.loop = loop;
    s->env.upstream = up;
    s->env.worker = worker;
    s->env.answer = intake_resume;
    s->env.tunnel_closed = intake_tunnel_closed;
}

int server_start(struct server *s, struct loop *loop, struct upstream *up, struct runtime *rt)
{
    const struct config *cfg = rt->cfg;
    char bound[300];

    server_env_init(s, loop, up, 0);
    s->env.rng = (uint64_t)monotonic_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    s->reuseport = cfg->workers > 1;
    int fd = listen_open(&cfg->listen, s->reuseport, bound, sizeof bound);
    if (fd < 0 || server_serve(s, rt, fd, bound, &s->conns_total_own) != 0)
        return -1;
    listen_file_note(&s->listeners->file, &cfg->listen);
    log_info("proxy listening on %s", bound);
    return 0;
}

int server_start_worker(struct server *s, struct loop *loop, struct upstream *up,
                        struct runtime *rt, struct server *first, size_t index)
{
    struct listener *f = first->listeners;
    server_env_init(s, loop, up, index);
    s->secondary = true;
    s->env.rng = first->env.rng ^ ((uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ULL);
    s->reuseport = first->reuseport;
    int fd = f ? listen_open_sibling(f->fd) : -1;
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

/* ---- reload: prepare, commit or discard, the worker switch ------------------------ */

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
        fd = listen_open(&cfg->listen, s->reuseport, bound, sizeof bound);
        if (fd < 0)
            return -1;
    }
    if (prepare_listener(s, cfg, fd, bound, same_address, out) != 0)
        return -1;
    if (same_address)
        (*out)->file = active->file; /* the same socket, so the same file */
    else
        listen_file_note(&(*out)->file, &cfg->listen);
    return 0;
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
    else if ((fd = listen_open_sibling(first_new->fd)) < 0)
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
        if (loop_post(s->env.loop, on_listener_switch, l) == 0)
            s->switching = l;
        else
            server_discard_reload(s, l);
    } else if (l) {
        struct listener *old = s->listeners;
        listener_switch(s, l);
        if (!l->same_address) {
            listen_file_unlink(&old->file); /* a unix socket's file, the old address's */
            log_info("proxy listening on %s", l->bound);
        }
    }
    runtime_unref(s->rt);
    s->rt = runtime_ref(rt);
}

/* ---- drain: stop accepting, close the idle, answer the calls left ------------------- */

void server_set_draining(struct server *s, int64_t deadline_ms)
{
    s->env.draining = true;
    s->env.drain_deadline_ms = deadline_ms;
}

void server_stop_accepting(struct server *s)
{
    struct listener *l = s->listeners;
    if (!l || l->fd < 0)
        return;
    listener_quiesce(l, true);
    listen_file_unlink(&l->file);
}

void server_close_idle(struct server *s)
{
    for (struct client_conn *c = s->conns; c; c = c->next) {
        if (c->request)
            continue;
        int fd = intake_connection_fd(c->conn);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR); /* MHD sees the close on its next read */
    }
}

void server_abort_calls(struct server *s)
{
    tunnel_close_all(&s->env);
    while (s->suspended) {
        struct request *r = s->suspended;
        if (r->streaming) {
            stream_abort(r); /* its head is out: the reply is cut (unlinks r) */
            continue;
        }
        proxy_cancel(r);
        request_set_error(r, 503, "shutting_down", "ahoyd is shutting down");
        r->close = true;
        request_answer(r); /* unlinks r */
    }
    /* streams whose client reads slowly are not suspended: cut them, and close their
     * connection, which the client may never drain */
    for (struct client_conn *c = s->conns; c; c = c->next) {
        struct request *r = c->request;
        if (!r || !r->streaming || r->stream_cut || r->stream_done || r->client_gone)
            continue;
        stream_abort(r);
        int fd = intake_connection_fd(c->conn);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR); /* MHD sees the close on its next turn */
    }
}

/* ---- the end -------------------------------------------------------------------- */

void server_free(struct server *s)
{
    if (!s->env.loop)
        return; /* never started */
    if (s->switching) { /* its switch was posted to a worker that stopped first */
        struct listener *l = s->switching;
        s->switching = NULL;
        server_discard_reload(s, l);
    }
    /* MHD must not be stopped with suspended connections, nor upgraded ones */
    tunnel_close_all(&s->env);
    while (s->suspended) {
        struct request *r = s->suspended;
        proxy_cancel(r);
        r->client_gone = true;
        intake_resume(r);
    }
    for (struct listener *l = s->listeners; l; l = l->next)
        mhd_run(l);
    while (s->listeners) {
        struct listener *l = s->listeners;
        s->listeners = l->next;
        if (l->fd >= 0)
            listen_file_unlink(&l->file);
        listener_free(l);
    }
    runtime_unref(s->rt);
    s->rt = NULL;
}
