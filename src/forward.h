/*
 * forward.h - what crosses the proxy between the client and the upstream:
 * the upstream's response head turned into the client's answer. Internal to
 * the server side (server.c today), declared here so the regression tests and
 * the fuzz target link it instead of including a .c file.
 */
#ifndef AHOYD_FORWARD_H
#define AHOYD_FORWARD_H

#include <microhttpd.h>

#include "proxy.h"

/* The MHD response for r: the upstream's (r->resp: status, end-to-end headers, body,
 * X-Ahoyd-Attempts) or ahoyd's JSON error. NULL when out of memory. */
struct MHD_Response *forward_build_response(struct request *r);

#endif
