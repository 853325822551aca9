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

#endif
