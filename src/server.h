/*
 * server.h - the proxy's listeners: libmicrohttpd daemons driven from ahoyd's
 * loop (external epoll), started, switched by a reload and drained. The
 * structs are shared with the intake (intake.c), which serves the requests
 * that arrive on them.
 */
#ifndef AHOYD_SERVER_H
#define AHOYD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "listen.h"
#include "loop.h"
#include "request.h"
#include "runtime.h"
#include "upstream.h"

struct MHD_Daemon;
struct MHD_Connection;
struct server;

/* One libmicrohttpd daemon. The first in the server's list accepts; the others
 * were quiesced by a reload (or the drain) and serve their open connections. */
struct listener {
    struct server *srv;
    struct MHD_Daemon *mhd;
    struct loop_io io;       /* MHD's epoll fd in our loop */
    struct loop_timer timer; /* MHD's own timeouts */
    int fd;                  /* listening socket; -1 once quiesced */
    char *bound;             /* "127.0.0.1:8080" as bound (port 0 resolved) */
    struct listen_file file; /* the unix socket file it bound (the first worker's only) */
    bool kick;               /* a connection was resumed: run MHD before waiting */
    bool same_address;       /* (reload) took over the previous daemon's socket */
    size_t pool_size;        /* MHD's per-connection memory: request and response heads */
    int epoll_fd;            /* MHD's, watched from activation on */
    struct listener *next;
};

/* A client connection, tracked to close the idle ones at drain. */
struct client_conn {
    struct server *srv;
    struct MHD_Connection *conn;
    struct request *request;      /* the request in progress, NULL when idle */
    bool over_limit;              /* accepted beyond max-connections: answered 503 */
    bool peer_closed;             /* the client closed or half-closed its side */
    struct loop_io io;            /* EPOLLRDHUP watch, accept to close */
    struct loop_timer head_timer; /* the next request line must arrive within this */
    struct client_conn *prev, *next;
};

struct server {
    struct request_env env;      /* loop, upstream, rng, drain state, the answer hook */
    struct runtime *rt;          /* current; requests hold their own reference */
    struct listener *listeners;  /* the accepting one first */
    struct client_conn *conns;
    size_t n_conns;
    size_t *conns_total;         /* of every worker's server (max-connections) */
    size_t conns_total_own;      /* the first server's: the others point here */
    bool secondary;              /* a further worker's (loop.h): shares the first's socket */
    bool reuseport;              /* workers: inet listeners are bound SO_REUSEPORT */
    struct listener *switching;  /* committed, its switch posted to the worker, not yet run */
    size_t requests;             /* requests alive (URI seen, not yet completed) */
    size_t calls;                /* calls running upstream (suspended connections) */
    struct request *suspended;   /* list of suspended requests (drain, shutdown) */
};

/* Bind cfg->listen and start libmicrohttpd on the loop. Returns 0, or -1 with a
 * message logged. */
int server_start(struct server *s, struct loop *loop, struct upstream *up, struct runtime *rt);

/* Workers (loop.h): a server on a further worker's loop, accepting on a dup of the
 * first server's listening socket and counting connections with it. Called before
 * that worker's thread runs. */
int server_start_worker(struct server *s, struct loop *loop, struct upstream *up,
                        struct runtime *rt, struct server *first, size_t index);
/* The accepting address as bound. */
const char *server_bound(const struct server *s);

/* Reload, in two steps so that nothing changes unless everything can (SPEC 2.6):
 * prepare binds a new listener when listen, max-connections, the header limits or
 * idle-timeout change (*out NULL when nothing needs one; -1 when the new address
 * cannot be bound); commit swaps the runtime and the listener (the old one drains);
 * discard undoes a prepare. */
int server_prepare_reload(struct server *s, const struct config *cfg, struct listener **out);
void server_commit_reload(struct server *s, struct runtime *rt, struct listener *l);
/* prepare for a further worker's server, after the first's prepare gave first_new
 * (NULL: nothing to do). Its commit hands the switch to the worker's own thread. */
int server_prepare_reload_worker(struct server *s, const struct config *cfg,
                                 const struct listener *first_new, struct listener **out);
void server_discard_reload(struct server *s, struct listener *l);

/* The drain has begun: answers carry Connection: close, new requests get 503
 * shutting_down, and a retry is made only if it can end before deadline_ms (monotonic;
 * 0 = no limit). */
void server_set_draining(struct server *s, int64_t deadline_ms);
/* The next three run on the server's own worker thread (loop_post for the others). */
/* Stop accepting: close the listener (drain). */
void server_stop_accepting(struct server *s);
/* Close the connections that have no request in progress (drain). */
void server_close_idle(struct server *s);
/* Answer every suspended call with 503 shutting_down (end of drain). */
void server_abort_calls(struct server *s);
void server_free(struct server *s);

#endif
