/*
 * upstream_send.h - what an attempt sends (upstream_send.c): its header list
 * and its method, body and TLS options. Internal to upstream.c.
 */
#ifndef AHOYD_UPSTREAM_SEND_H
#define AHOYD_UPSTREAM_SEND_H

#include <curl/curl.h>

#include "upstream.h"

/* req's header lines for CURLOPT_HTTPHEADER, with curl's own Expect, Accept and
 * Content-Type taken back, in one block that free() releases (not curl_slist_free_all);
 * NULL when out of memory. */
struct curl_slist *upstream_send_headers(const struct upstream_request *req);
/* The method and the body: POSTFIELDS for a body in memory, the read callback for a
 * streamed one (read_body), NOBODY for HEAD. Every option is set (a reused handle). */
void upstream_send_method(CURL *e, const struct upstream_request *req);
/* Every TLS option of an https attempt (NULL restores curl's default). */
void upstream_send_tls(CURL *e, const struct tls_conf *tls);

#endif
