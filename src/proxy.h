/*
 * proxy.h - the call that runs a complete, routed request:
 * route -> breaker -> balancer -> attempt -> retry (SPEC 4.1).
 *
 * The call reads and writes its request (request.h) and the environment the
 * request carries (loop, upstream, rng, drain deadline); it answers through
 * request_answer(), never by calling the server side.
 */
#ifndef AHOYD_PROXY_H
#define AHOYD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

/* Start the call for a complete, routed request. Answers synchronously (via
 * request_answer) when it is refused at once. */
void proxy_begin(struct request *r);
/* The last byte of a body that streams up while the call runs has arrived: the
 * deadline starts, the attempt reads the end. */
void proxy_body_end(struct request *r);
/* The client went away, the daemon is stopping or the request is being freed: cancel
 * the attempt or backoff and give back what the call holds (nothing when none runs). */
void proxy_cancel(struct request *r);

#endif
