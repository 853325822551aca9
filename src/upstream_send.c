/*
 * upstream_send.c - what an attempt sends (upstream_send.h): the header list
 * with curl's own additions taken back, the method and body options, and the
 * TLS options, set on every attempt since easy handles are reused.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream_send.h"

static bool has_header(const char *const *headers, const char *name)
{
    size_t k = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, k) == 0 && headers[i][k] == ':')
            return true;
    return false;
}

struct curl_slist *upstream_send_headers(const struct upstream_request *req)
{
    struct curl_slist *list = NULL, *t;
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        const char *h = req->headers[i];
        const char *colon = strchr(h, ':');
        const char *v = colon ? colon + 1 : NULL;
        char *empty = NULL;
        while (v && (*v == ' ' || *v == '\t'))
            v++;
        if (colon && v && *v == '\0') {
            /* curl drops "Name:"; "Name;" sends an empty value (a name of any length) */
            if (!(empty = strndup(h, (size_t)(colon - h) + 1)))
                goto fail;
            empty[colon - h] = ';';
            h = empty;
        }
        t = curl_slist_append(list, h);
        free(empty);
        if (!t)
            goto fail;
        list = t;
    }
    /* curl's own additions that a proxy must not make */
    if (!(t = curl_slist_append(list, "Expect:")))
        goto fail;
    list = t;
    if (!has_header(req->headers, "Accept")) {
        if (!(t = curl_slist_append(list, "Accept:")))
            goto fail;
        list = t;
    }
    if (!has_header(req->headers, "Content-Type")) {
        if (!(t = curl_slist_append(list, "Content-Type:")))
            goto fail;
        list = t;
    }
    return list;
fail:
    curl_slist_free_all(list);
    return NULL;
}

void upstream_send_method(CURL *e, const struct upstream_request *req)
{
    const char *m = req->method;
    /* a reused handle carries the previous attempt's method: start from plain GET */
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    if (req->read_body) {
        /* a body that streams up through the read callback: Content-Length when its
         * length is known, chunked otherwise */
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->read_size);
        if (strcmp(m, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
        return;
    }
    bool wants_body = req->body_len > 0 || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
                      strcmp(m, "PATCH") == 0;
    if (wants_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body_len ? req->body : "");
        if (strcmp(m, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    }
}

void upstream_send_tls(CURL *e, const struct tls_conf *tls)
{
    /* every TLS option is set on every https attempt: a reused handle must not keep
     * another service's CA or client certificate (NULL restores curl's default) */
    bool verify = !tls || tls->verify;
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_CAINFO, tls && tls->ca_file && *tls->ca_file ? tls->ca_file : NULL);
    curl_easy_setopt(e, CURLOPT_SSLCERT,
                     tls && tls->cert_file && *tls->cert_file ? tls->cert_file : NULL);
    curl_easy_setopt(e, CURLOPT_SSLKEY,
                     tls && tls->key_file && *tls->key_file ? tls->key_file : NULL);
}
