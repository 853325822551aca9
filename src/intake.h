/*
 * intake.h - the client side of a request on libmicrohttpd: the callbacks a
 * listener's daemon is started with (server.c), and what the listener life
 * needs from the intake (resuming a suspended request, a connection's fd).
 */
#ifndef AHOYD_INTAKE_H
#define AHOYD_INTAKE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "request.h"

/* libmicrohttpd's callbacks; cls is the struct listener (server.h) of the daemon.
 * MHD calls them from MHD_run, which runs without the state lock (loop.h): each
 * takes it for the time of the call. */
void intake_on_mhd_log(void *cls, const char *fmt, va_list ap);
void *intake_on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
enum MHD_Result intake_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls);
void intake_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe);
void intake_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe);

/* Resume r's connection if it is suspended, so that MHD calls its handler again (which
 * queues the answer, or closes when the client is gone). A server's requests answer
 * through it (request_env.answer). */
void intake_resume(struct request *r);
/* A joined tunnel of r has ended (request_env.tunnel_closed). */
void intake_tunnel_closed(struct request *r, bool mhd_done);
/* The socket of a client connection, -1 if MHD does not say. */
int intake_connection_fd(struct MHD_Connection *conn);

#endif
