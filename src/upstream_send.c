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

/* One line of the list being laid out: "Name: value", or "Name;" for an empty value
 * (curl drops "Name:"; "Name;" sends an empty value, for a name of any length). */
static size_t header_line_len(const char *h, bool *empty)
{
    const char *colon = strchr(h, ':');
    const char *v = colon ? colon + 1 : NULL;
    while (v && (*v == ' ' || *v == '\t'))
        v++;
    *empty = colon && v && *v == '\0';
    return *empty ? (size_t)(colon - h) + 1 : strlen(h);
}

/* The list is laid out in one allocation (the nodes, then the strings): curl only
 * reads CURLOPT_HTTPHEADER's list, so one free() releases it, and an attempt costs one
 * malloc rather than two per line (curl_slist_append). */
struct curl_slist *upstream_send_headers(const struct upstream_request *req)
{
    /* curl's own additions that a proxy must not make */
    static const char *const removals[] = {"Expect:", "Accept:", "Content-Type:"};
    bool add[3] = {true, !has_header(req->headers, "Accept"),
                   !has_header(req->headers, "Content-Type")};
    size_t m = 0, n, bytes = 0;
    bool empty;
    for (; req->headers && req->headers[m]; m++)
        bytes += header_line_len(req->headers[m], &empty) + 1;
    n = m;
    for (size_t i = 0; i < 3; i++)
        if (add[i]) {
            bytes += strlen(removals[i]) + 1;
            n++;
        }
    struct curl_slist *nodes = malloc(n * sizeof *nodes + bytes);
    if (!nodes)
        return NULL;
    char *p = (char *)(nodes + n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *h;
        size_t len;
        if (i < m) {
            h = req->headers[i];
            len = header_line_len(h, &empty);
        } else {
            while (!add[k])
                k++;
            h = removals[k++];
            len = strlen(h);
            empty = false;
        }
        memcpy(p, h, len);
        if (empty)
            p[len - 1] = ';';
        p[len] = '\0';
        nodes[i].data = p;
        nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
        p += len + 1;
    }
    return nodes;
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
