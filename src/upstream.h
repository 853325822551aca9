/*
 * upstream.h - upstream attempts over libcurl's multi socket API.
 *
 * One struct upstream per loop holds the multi handle (and so curl's
 * connection cache and DNS cache) and a free list of easy handles. An attempt
 * is started with everything it needs and reports exactly once through its
 * callback, unless it is cancelled first.
 */
#ifndef AHOYD_UPSTREAM_H
#define AHOYD_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "loop.h"
#include "outcome.h"

struct upstream;
struct upstream_attempt;

struct upstream_request {
    const char *url;             /* origin + path + query */
    const char *method;
    const char *const *headers;  /* "Name: value" lines, NULL-terminated */
    const char *body;
    size_t body_len;
    /* or a body streamed up as it comes (upstream_call_start): read_body(arg, ...) gives
     * the next bytes, 0 at its end, or UPSTREAM_READ_PAUSE (upstream_resume_upload) */
    size_t (*read_body)(void *arg, char *buf, size_t max);
    int64_t read_size;           /* its length; -1 unknown (sent chunked) */
    int64_t timeout_ms;          /* whole attempt; 0 = no bound */
    int64_t read_timeout_ms;     /* longest silence while reading the response; 0 = none */
    int64_t connect_timeout_ms;
    bool allow_resend;           /* false: never let curl re-send on a new connection */
    uint64_t max_body;           /* 0 = no limit */
    uint64_t max_header_bytes;
    const struct tls_conf *tls;
    const char *connect_to;      /* "NAME:PORT:HOST:PORT" (tls.server-name) or NULL */
};

struct upstream_response {
    int status;
    struct header_list headers;
    char *body;
    size_t body_len, body_cap;
    int64_t content_length; /* declared, -1 if none (HEAD keeps it) */
    bool dropped;           /* the body was over the size kept, and not kept */
    int64_t head_us;        /* from the attempt's start to its first response byte */
};

void upstream_response_free(struct upstream_response *r);

/* Called once per attempt. resp is non-NULL only for OUTCOME_STATUS; the callee takes
 * ownership of it (free with upstream_response_free + free). elapsed_us = attempt time. */
typedef void (*upstream_done_cb)(void *arg, const struct outcome *o,
                                 struct upstream_response *resp, int64_t elapsed_us);

struct upstream *upstream_new(struct loop *loop);
void upstream_free(struct upstream *u);

/* Start an attempt; NULL when it could not be started (treated as connect failure). */
struct upstream_attempt *upstream_start(struct upstream *u, const struct upstream_request *req,
                                        upstream_done_cb cb, void *arg);
/* A streamed response's body, piece by piece as it arrives; status is the response's
 * (from its head). Runs holding the state lock, from inside libcurl: it must not cancel
 * the attempt or start another on the same struct upstream. Returns n to go on; any
 * other value aborts the transfer, which then reports (usually OUTCOME_RESET). */
typedef size_t (*upstream_data_cb)(void *arg, int status, const char *data, size_t n);

/* Like upstream_start, but the body is handed to on_data instead of being collected
 * (max_body does not apply, resp->body stays empty), timeout_ms <= 0 means no limit,
 * and the connection gets TCP keepalive probes. For long-lived answers (a watch).
 * arg is passed to both callbacks. */
struct upstream_attempt *upstream_stream_start(struct upstream *u,
                                               const struct upstream_request *req,
                                               upstream_data_cb on_data, upstream_done_cb cb,
                                               void *arg);
/* What to do with a response whose head has arrived (upstream_call_start). */
enum upstream_head_verdict {
    UPSTREAM_HEAD_COLLECT, /* read it whole into resp->body; over keep_max: read, dropped */
    UPSTREAM_HEAD_STREAM,  /* the caller took resp; its body goes to on_data as it comes */
};
/* The head of the final response block: status, headers, content_length and head_us are
 * set. Runs holding the state lock, from inside libcurl (same rules as upstream_data_cb).
 * On UPSTREAM_HEAD_STREAM the callee owns resp (upstream_response_free + free) and the
 * attempt's done callback then gets resp == NULL with OUTCOME_STATUS. */
typedef enum upstream_head_verdict (*upstream_head_cb)(void *arg, struct upstream_response *resp);
/* on_data of a streamed call returns this to hold the body back (backpressure) until
 * upstream_resume_body; the same bytes come again then. */
#define UPSTREAM_DATA_PAUSE ((size_t)0x10000001) /* CURL_WRITEFUNC_PAUSE */

#define UPSTREAM_READ_PAUSE ((size_t)0x10000001)  /* CURL_READFUNC_PAUSE */
#define UPSTREAM_READ_ABORT ((size_t)0x10000000)  /* CURL_READFUNC_ABORT: ends as a reset */

/* A proxied call's attempt: like upstream_start, but on_head decides at the head whether
 * the body is collected (kept up to keep_max bytes) or streamed to on_data. max_body
 * counts every body byte either way; over it the attempt ends OUTCOME_RESPONSE_TOO_LARGE. */
struct upstream_attempt *upstream_call_start(struct upstream *u, const struct upstream_request *req,
                                             uint64_t keep_max, upstream_head_cb on_head,
                                             upstream_data_cb on_data, upstream_done_cb cb,
                                             void *arg);
/* Let a streamed body paused by on_data flow again. Its bytes may be handed to on_data
 * before this returns. Call holding the state lock, not from inside on_data. */
void upstream_resume_body(struct upstream *u, struct upstream_attempt *a);
/* Let a request body paused by read_body go on (the next bytes arrived, or its end). */
void upstream_resume_upload(struct upstream *u, struct upstream_attempt *a);
/* A tunnel's connection: curl connects to req->url (TLS for https) with CONNECT_ONLY and
 * calls cb once, with OUTCOME_STATUS and status 0 (resp NULL) when connected, or with
 * another outcome (nothing was sent: the caller counts it a connect failure). A connected
 * attempt keeps its connection until upstream_cancel: the caller watches its socket
 * (CURLINFO_ACTIVESOCKET) and does the I/O with curl_easy_send/curl_easy_recv on
 * upstream_attempt_easy(). */
struct upstream_attempt *upstream_connect_start(struct upstream *u,
                                                const struct upstream_request *req,
                                                upstream_done_cb cb, void *arg);
void *upstream_attempt_easy(const struct upstream_attempt *a); /* its CURL * */
/* Cancel an attempt that has not reported yet (or a connected tunnel's, to close it):
 * its callback is never called. */
void upstream_cancel(struct upstream *u, struct upstream_attempt *a);


#endif
