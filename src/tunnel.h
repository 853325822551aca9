/*
 * tunnel.h - WebSocket tunnels: `Upgrade: websocket` on a GET, carried to an
 * endpoint picked like any call's, and, after the upstream's 101, both
 * connections joined byte for byte until they close.
 *
 * The call (proxy.c) runs a tunnel's attempts through tunnel_start instead of
 * upstream_start: the connection is curl's (CONNECT_ONLY on the worker's
 * upstream multi, TLS included), the request head and the response head are
 * written and read here. A 101 keeps the connection in r->tunnel; the answer
 * (intake.c) is tunnel_response(), and libmicrohttpd hands over the client's
 * socket once the 101 is out. Any other answer is an ordinary response.
 */
#ifndef AHOYD_TUNNEL_H
#define AHOYD_TUNNEL_H

#include <stdbool.h>

#include "request.h"
#include "upstream.h"

struct MHD_Response;

/* Attempt the tunnelled call r (r->upgrade) as req says: connect, send the request head
 * (req->headers plus Host, Upgrade and Connection), read the answer head. cb reports once,
 * as for upstream_start: a 101 (its connection kept in r->tunnel for the join), another
 * status with its body, or the failure. NULL when it could not start (a connect failure). */
struct upstream_attempt *tunnel_start(struct request *r, const struct upstream_request *req,
                                      upstream_done_cb cb);
/* Cancel r's attempt in flight: cb is not called. */
void tunnel_cancel(struct request *r);
/* The client's 101, made from the upstream's (r->resp); NULL when out of memory. */
struct MHD_Response *tunnel_response(struct request *r);
/* MHD is done with r's request: true when r's tunnel is joined and keeps r until it ends
 * (then r->env->tunnel_closed(r, true) frees it); otherwise any tunnel state is freed and
 * the caller frees r. */
bool tunnel_holds(struct request *r);
/* Close every joined tunnel of env (the drain's shutdown-timeout, shutdown). */
void tunnel_close_all(struct request_env *env);

#endif
