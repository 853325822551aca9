/*
 * request.h - one request from its request line to its log line, and the
 * environment it runs in.
 *
 * struct request is the single owner of everything a request allocates. It is
 * made by request_new() when libmicrohttpd has the request line (intake.c),
 * filled by intake.c (head, body), forward.c (the forwarded headers) and
 * proxy.c (the call), answered through request_answer() and logged and freed
 * here, once. The server side (intake.c, server.c) reaches its own state
 * through the srv, lst and client_conn pointers; nothing below it looks
 * inside them.
 */
#ifndef AHOYD_REQUEST_H
#define AHOYD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "http.h"
#include "loop.h"
#include "outcome.h"
#include "route.h"
#include "runtime.h"
#include "upstream.h"

/* Body bytes held for one streamed answer before the upstream is held back; also the
 * largest response kept whole for a later answer while its call is retried. */
#define REQUEST_STREAM_HOLD (64u * 1024)

struct MHD_Connection;
struct client_conn;
struct listener;
struct request;
struct server;

/* What a request and its call need from the worker that runs them; one per server
 * (worker), set up by server.c. */
struct request_env {
    struct loop *loop;
    struct upstream *upstream;
    uint64_t rng;              /* the worker's: request ids, balancing, jitter */
    size_t worker;             /* its index, for the per-worker request count */
    bool draining;             /* answers carry Connection: close */
    int64_t drain_deadline_ms; /* monotonic end of shutdown-timeout, 0 = none */
    /* The answer is ready (status and resp, or err_*): the server side queues it. */
    void (*answer)(struct request *r);
    struct tunnel *tunnels; /* joined tunnels (tunnel.c) */
    /* A joined tunnel has ended; mhd_done: MHD's completed callback came already (the
     * server side frees r now), else it comes once MHD has closed the connection. */
    void (*tunnel_closed)(struct request *r, bool mhd_done);
};

struct request {
    struct request_env *env;
    int refs;                       /* the connection's, and a streamed answer's reader */
    struct server *srv;             /* the server side's (intake.c, server.c) */
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
    bool upgrade;                   /* Upgrade: websocket on a GET: tunnelled (tunnel.c) */
    struct tunnel *tunnel;          /* its attempt in flight, or its connection after a 101 */
    bool head_checked;
    bool body_discard;              /* an error is decided: read and drop the body */
    char *body;
    size_t body_len, body_cap;
    char request_id[132];
    size_t head_bytes;              /* the request line and header block */
    char *connection;               /* every Connection value joined, or NULL */
    char client_addr[64];           /* for X-Forwarded-For; "" for unix clients */
    unsigned client_port;           /* 0 for unix clients */
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
    uint64_t *tried;                /* endpoint ids (endpoint_rt.id) by attempt */
    uint64_t current;               /* endpoint id of the attempt in flight, 0 = none */
    uint64_t previous;              /* endpoint id of the previous attempt, 0 = none */
    struct endpoint_rt *current_ep; /* held while the attempt runs */
    struct breaker_ticket ticket;
    bool attempt_cut_by_deadline;
    struct upstream_attempt *attempt;
    struct loop_timer backoff_timer;
    struct outcome last_outcome;
    const char *last_endpoint;      /* URL of the last endpoint tried (of last_ep) */
    struct endpoint_rt *last_ep;    /* held for its URL: discovery may free it otherwise */
    char *last_url;                 /* the last attempt's URL; its path + query from */
    size_t last_target_off;         /* this offset on is the target sent upstream */
    char tried_list[256];           /* every endpoint attempted, comma-separated */
    size_t tried_len;
    int64_t ttfb_us;                /* the answer's attempt: time to its head; -1 none */
    uint64_t bytes_in, bytes_out;   /* body bytes from and to the client */
    int64_t upstream_us;            /* total time in attempts; -1 when none */

    /* the answer */
    bool response_ready;
    int status;
    struct upstream_response *resp; /* the upstream's, or NULL */
    const char *resp_endpoint;      /* URL of the endpoint that gave resp (of resp_ep) */
    struct endpoint_rt *resp_ep;    /* held, like last_ep */
    const char *err_code;           /* ahoyd's error, when resp is NULL */
    char *err_message;
    struct header_list extra;       /* Allow, Retry-After ... */
    bool close;                     /* Connection: close */
    char flags[48];

    /* a streamed answer (stream.c): the head goes out when it arrives, the body follows
     * through r->resp->body, a buffer of about REQUEST_STREAM_HOLD bytes */
    bool head_decided;              /* the attempt's head was judged (retry or final) */
    int head_verdict;               /* enum retry_verdict of that judgement */
    int64_t head_delay_ms;          /* its backoff, when retried */
    bool streaming;                 /* the answer streams from the running attempt */
    bool stream_paused;             /* the buffer is full: the upstream is held back */
    bool stream_eof;                /* the upstream body ended well */
    bool stream_cut;                /* it failed mid-body (RS): the client's reply is cut */
    bool stream_done;               /* the reader gave the client the body's end */
    size_t stream_off;              /* of r->resp->body, the bytes already given out */

    /* the request body (stream.c): body/body_len hold it whole from byte 0 when kept for
     * retries, else only the bytes the running attempt has not taken yet */
    int64_t body_expected;          /* Content-Length; -1 chunked */
    bool body_keep;                 /* kept whole (<= request-buffer, max-retry-buffers) */
    bool body_streams;              /* the call started before the body's end */
    bool body_complete;             /* its last byte arrived */
    bool body_sent;                 /* some of an unkept body went out: no retry */
    bool body_held;                 /* the connection is suspended: the buffer is full */
    bool upload_paused;             /* the attempt waits for the next bytes */
    size_t body_off;                /* where the running attempt reads in body */
    uint64_t body_reserved;         /* of max-retry-buffers, held by this body */
    int64_t deadline_after_body;    /* the deadline's length, started at the body's end */
    struct loop_timer deadline_timer; /* cuts an attempt started before the deadline was */
    int64_t attempt_start_us;
};

/* A request whose request line (the raw target) was just seen, in env, on runtime rt
 * (a reference is taken). NULL when out of memory. */
struct request *request_new(struct request_env *env, struct runtime *rt, const char *target);
/* Free r and everything it owns (its call must be cancelled first: proxy_cancel).
 * The memory itself goes at the end of the loop iteration (loop_defer_free). */
void request_free(struct request *r);
/* Drop one reference (request_new gives the first); the last one frees r. */
void request_unref(struct request *r);
/* Something a suspended streamed answer waits for happened: let the server side look. */
void request_wake(struct request *r);

/* Take n bytes of the retry buffers (max-retry-buffers = limit, 0 = no limit) for r's
 * kept body; false when they are spent. request_body_release gives all of r's back. */
bool request_body_reserve(struct request *r, uint64_t n, uint64_t limit);
void request_body_release(struct request *r);
/* Record an error answer made by ahoyd itself. message is copied. */
void request_set_error(struct request *r, int status, const char *code, const char *message);
/* Add an access-log flag ("UF", "DC", ... see ahoyd(8)); each appears once. */
void request_add_flag(struct request *r, const char *flag);
/* The answer is decided: hand it to the server side (env->answer). */
void request_answer(struct request *r);
/* Count r in the metrics and write its access-log line; only the first call counts. */
void request_log(struct request *r);

#endif
