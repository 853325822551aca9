/*
 * stream.h - a streamed answer on the client side (stream.c): the response
 * whose body libmicrohttpd reads from the running attempt, and the
 * suspension of a connection that waits for its call or its body.
 */
#ifndef AHOYD_STREAM_H
#define AHOYD_STREAM_H

#include <stdbool.h>

#include "request.h"

struct MHD_Response;

/* Suspend r's connection (it waits for its call, or for body bytes) and list it in its
 * server's suspended requests; request_wake (the intake's resume) undoes it. */
void stream_suspend(struct request *r);
/* The answer is whole already: no stream, or the upstream body ended before the head
 * was queued and nothing of it was given out (a buffer response then does). */
bool stream_is_whole(const struct request *r);
/* The MHD response of a streamed answer: the upstream's head, the body read from
 * r->resp->body as it comes. It holds a reference on r. NULL when out of memory. */
struct MHD_Response *stream_response(struct request *r);
/* Cut a streamed answer (shutdown-timeout): the attempt cancelled, the client's
 * connection closed without the body's end, flag RS. */
void stream_abort(struct request *r);

/* The request body, by the head: its length (-1 chunked) and whether it is kept for
 * retries (within the service's request-buffer and max-retry-buffers). */
void stream_body_plan(struct request *r, int64_t expected);
/* Should the call start now, at a piece of the body (the body is not whole yet)? */
bool stream_body_starts(const struct request *r);
/* A piece of the body: counted, kept or queued for the attempt (which is woken). 0, -1
 * over max-request-body, -2 out of memory. */
int stream_body_take(struct request *r, const char *data, size_t n);
/* After a piece: suspend the connection while an unkept body's queue is full. */
void stream_body_hold(struct request *r);

#endif
