/*
 * proxy.h - one request from intake to answer, and the call that runs it:
 * route -> breaker -> balancer -> attempt -> retry (SPEC 4.1).
 *
 * struct request is the single owner of everything a request allocates; it
 * is created when libmicrohttpd has the request line and freed in one place
 * (server.c, when libmicrohttpd reports the request complete).
 */
#ifndef AHOYD_PROXY_H
#define AHOYD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "route.h"
#include "runtime.h"
#include "server.h"
#include "upstream.h"

struct MHD_Connection;

struct request {
    struct server *srv;
    struct listener *lst;           /* the daemon this request arrived on */
    struct client_conn *client_conn;
    struct MHD_Connection *conn;
    struct runtime *rt;             /* reference held for the life of the request */
    struct request *next_suspended, *prev_suspended;

    /* intake */
    char *target;                   /* raw request-target */
    size_t target_len;
    char *method;
    struct target_parts parts;
    struct service_rt *svc;
    const struct route_method *operation; /* named call */
    bool head_checked;
    bool body_discard;              /* an error is decided: read and drop the body */
    char *body;
    size_t body_len, body_cap;
    char request_id[132];
    size_t head_bytes;              /* the request line and header block */
    char *connection;               /* every Connection value joined, or NULL */
    char client_addr[64];           /* for X-Forwarded-For; "" for unix clients */
    int64_t start_us;               /* request line seen */
    int64_t received_us;            /* whole request received */
    struct loop_timer request_timer;
    bool suspended;
    bool client_gone;
    bool logged;
    bool raw_answered;              /* answered directly on the socket (408, late 413) */

    /* the call */
    bool call_running;              /* counted in service inflight */
    char *upstream_path;            /* base-path-relative path + query (after named-call build) */
    char *upstream_method;
    const char **fwd_headers;       /* "Name: value" lines sent on every attempt */
    size_t n_fwd;
    bool has_idempotency_key;
    int64_t hdr_timeout_ms;         /* X-Ahoyd-Timeout, 0 = none */
    int hdr_max_attempts;           /* X-Ahoyd-Max-Attempts, 0 = none */
    bool allow_resend;
    int max_attempts;
    int64_t deadline_ms;            /* absolute monotonic, 0 = none */
    int attempts;                   /* sent so far */
    bool *tried;                    /* per endpoint index */
    int current;                    /* endpoint index of the attempt in flight, -1 */
    int previous;                   /* endpoint index of the previous attempt, -1 */
    struct endpoint_rt *current_ep; /* held while the attempt runs */
    struct breaker_ticket ticket;
    bool attempt_cut_by_deadline;
    struct upstream_attempt *attempt;
    struct loop_timer backoff_timer;
    struct outcome last_outcome;
    const char *last_endpoint;      /* URL of the last endpoint tried */
    int64_t upstream_us;            /* total time in attempts; -1 when none */

    /* the answer */
    bool response_ready;
    int status;
    struct upstream_response *resp; /* the upstream's, or NULL */
    const char *resp_endpoint;      /* URL of the endpoint that gave resp */
    const char *err_code;           /* ahoyd's error, when resp is NULL */
    char *err_message;
    struct header_list extra;       /* Allow, Retry-After ... */
    bool close;                     /* Connection: close */
    char flags[48];
};

/* Start the call for a complete, routed request. Answers synchronously (via
 * server_respond) when it is refused at once. */
void proxy_begin(struct request *r);
/* The client went away or the daemon is stopping: cancel the attempt or backoff. */
void proxy_cancel(struct request *r);
/* Release what the call holds (at request free). */
void proxy_release(struct request *r);

/* Record an error answer made by ahoyd itself. message is copied. */
void request_set_error(struct request *r, int status, const char *code, const char *message);
void request_add_flag(struct request *r, const char *flag);

#endif
