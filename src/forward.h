/*
 * forward.h - what crosses the proxy between the client and the upstream:
 * the request headers sent upstream and the upstream's response head turned
 * into the client's answer. Used by the intake (intake.c); the regression
 * tests and the fuzz target link forward_build_response() from here too.
 */
#ifndef AHOYD_FORWARD_H
#define AHOYD_FORWARD_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "request.h"

/* r->fwd_headers: the "Name: value" lines every attempt sends, from the client's
 * headers on r->conn (hop-by-hop ones and those named in r->connection dropped, the
 * service's replaced) and ahoyd's own. 0, or -1 when out of memory. */
int forward_build_headers(struct request *r);

/* The MHD response for r: the upstream's (r->resp: status, end-to-end headers, body,
 * X-Ahoyd-Attempts) or ahoyd's JSON error. NULL when out of memory. */
struct MHD_Response *forward_build_response(struct request *r);
/* The MHD response of a streamed answer: the upstream's head (as forward_build_response
 * has it) and a body read by read(r, ...) (size: Content-Length, or MHD_SIZE_UNKNOWN for
 * chunked), done(r) once MHD is finished with it (at once when NULL: out of memory). */
struct MHD_Response *forward_build_stream_response(struct request *r, uint64_t size,
                                                   size_t block, MHD_ContentReaderCallback read,
                                                   MHD_ContentReaderFreeCallback done);
/* Will the upstream's response head fit beside r's request head in a connection
 * memory pool of pool_size bytes? (MHD closes silently when it does not.) */
bool forward_fits_pool(const struct request *r, size_t pool_size);

#endif
