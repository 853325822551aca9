/*
 * request.c - a request's life in one place: made when its request line is
 * seen, answered through the hook of its environment, counted and logged
 * once, freed once.
 *
 * The answer hook is what keeps the modules in one direction: proxy.c finishes
 * a call with request_answer() and never calls into the server side, which
 * sets env->answer to resume the suspended connection and queue the answer.
 */
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "log.h"
#include "request.h"

/* The bytes of every kept request body, all workers together (under the state lock). */
static uint64_t retry_buffers_used;

bool request_body_reserve(struct request *r, uint64_t n, uint64_t limit)
{
    if (limit && retry_buffers_used + n > limit)
        return false;
    retry_buffers_used += n;
    r->body_reserved += n;
    return true;
}

void request_body_release(struct request *r)
{
    retry_buffers_used -= r->body_reserved;
    r->body_reserved = 0;
}

struct request *request_new(struct request_env *env, struct runtime *rt, const char *target)
{
    struct request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->target_len = strlen(target);
    r->target = strdup(target);
    if (!r->target) {
        free(r);
        return NULL;
    }
    r->env = env;
    r->refs = 1;
    r->rt = runtime_ref(rt);
    r->start_us = loop_now_us(env->loop);
    r->current = r->previous = 0;
    r->upstream_us = -1;
    r->ttfb_us = -1;
    r->body_keep = true;
    return r;
}

void request_free(struct request *r)
{
    struct loop *loop = r->env->loop;
    loop_timer_stop(loop, &r->request_timer);
    loop_timer_stop(loop, &r->backoff_timer);
    loop_timer_stop(loop, &r->deadline_timer);
    request_body_release(r);
    free(r->tried);
    endpoint_unref(r->last_ep);
    endpoint_unref(r->resp_ep);
    free(r->last_url);
    if (r->resp) {
        upstream_response_free(r->resp);
        free(r->resp);
    }
    header_list_clear(&r->extra);
    free(r->extra.items);
    for (size_t i = 0; i < r->n_fwd; i++)
        free((char *)r->fwd_headers[i]);
    free(r->fwd_headers);
    free(r->err_message);
    free(r->connection);
    free(r->upstream_path);
    free(r->upstream_method);
    free(r->body);
    free(r->method);
    free(r->target);
    runtime_unref(r->rt);
    loop_defer_free(loop, r); /* an event or timer of this batch may still name it */
}

void request_unref(struct request *r)
{
    if (--r->refs == 0)
        request_free(r);
}

void request_wake(struct request *r)
{
    r->env->answer(r); /* the server side resumes a suspended connection */
}

void request_add_flag(struct request *r, const char *flag)
{
    size_t n = strlen(r->flags), k = strlen(flag);
    /* no duplicates */
    const char *p = r->flags;
    while ((p = strstr(p, flag))) {
        if ((p == r->flags || p[-1] == ',') && (p[k] == ',' || p[k] == '\0'))
            return;
        p += k;
    }
    if (n + k + 2 > sizeof r->flags)
        return;
    if (n)
        r->flags[n++] = ',';
    memcpy(r->flags + n, flag, k + 1);
}

void request_set_error(struct request *r, int status, const char *code, const char *message)
{
    if (r->resp) {
        upstream_response_free(r->resp);
        free(r->resp);
        r->resp = NULL;
    }
    free(r->err_message);
    r->status = status;
    r->err_code = code;
    r->err_message = strdup(message);
}

void request_answer(struct request *r)
{
    r->response_ready = true;
    r->env->answer(r);
}

void request_log(struct request *r)
{
    if (r->logged)
        return;
    r->logged = true;
    int64_t now_us = loop_now_us(r->env->loop);
    counters_note_request(r->svc ? &r->svc->state->counters : NULL, r->status,
                          r->resp ? NULL : r->err_code, now_us - r->start_us);
    counters_note_worker_request(r->env->worker);
    if (!access_log_enabled())
        return;
    char client[80];
    if (r->client_port)
        snprintf(client, sizeof client, strchr(r->client_addr, ':') ? "[%s]:%u" : "%s:%u",
                 r->client_addr, r->client_port);
    else
        snprintf(client, sizeof client, "unix");
    struct access_entry e = {
        .request_id = r->request_id[0] ? r->request_id : NULL,
        .method = r->method,
        .service = r->svc ? r->svc->conf->name : NULL,
        .path = r->target,
        .status = r->status,
        .attempts = r->attempts,
        .endpoint = r->last_endpoint,
        .duration_us = now_us - r->start_us,
        .upstream_us = r->attempts ? r->upstream_us : -1,
        .flags = r->flags,
        .client = client,
        .bytes_in = r->bytes_in,
        .bytes_out = r->bytes_out,
        .target = r->last_url ? r->last_url + r->last_target_off : NULL,
        .tried = r->tried_len ? r->tried_list : NULL,
        .ttfb_us = r->ttfb_us,
    };
    access_log_write(&e);
}
