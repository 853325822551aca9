/*
 * server.h - the client side: libmicrohttpd driven from ahoyd's loop
 * (external epoll), request intake and checks (SPEC 3.3, 3.4), suspend while
 * the call runs, resume and answer.
 */
#ifndef AHOYD_SERVER_H
#define AHOYD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "runtime.h"
#include "upstream.h"

struct MHD_Daemon;
struct request;

struct server {
    struct loop *loop;
    struct upstream *upstream;
    struct runtime *rt;          /* current; requests hold their own reference */
    struct MHD_Daemon *mhd;
    struct loop_io mhd_io;
    struct loop_timer mhd_timer; /* MHD's own timeouts */
    bool mhd_kick;               /* a connection was resumed: run MHD before waiting */
    int listen_fd;
    char *bound;                 /* "127.0.0.1:8080" as bound (port 0 resolved) */
    uint64_t rng;
    size_t requests;             /* requests alive (URI seen, not yet completed) */
    size_t calls;                /* calls running upstream (suspended connections) */
    bool draining;
    struct request *suspended;   /* list of suspended requests (drain, shutdown) */
};

/* Bind cfg->listen and start libmicrohttpd on the loop. Returns 0, or -1 with a
 * message logged. */
int server_start(struct server *s, struct loop *loop, struct upstream *up, struct runtime *rt);
/* Bind a listen address (inet or unix); fills bound with the address as bound.
 * Returns the listening fd, or -1 after logging. */
int server_listen_socket(const struct listen_addr *la, char *bound, size_t cap);

/* Stop accepting: close the listener (drain). */
void server_stop_accepting(struct server *s);
/* Answer every suspended call with 503 shutting_down (end of drain). */
void server_abort_calls(struct server *s);
void server_free(struct server *s);

/* Called by proxy.c when r's answer is ready (r->status and r->resp or r->err_*). */
void server_respond(struct request *r);

#endif
