/*
 * proxy.c - one call, SPEC 4.1 step by step.
 *
 *   proxy_begin: max-inflight, effective deadline and max-attempts, budget
 *   attempt_next: deadline check, breakers ticked, balancer picks an endpoint
 *                 whose breaker admits, the attempt starts with
 *                 timeout = min(timeout, time left)
 *   on_attempt_done: outcome recorded on that endpoint's breaker, the newest
 *                 response kept, retry_decide() -> backoff timer or finish
 *   on_attempt_head: the response head is judged at once (step 5): a final
 *                 answer streams to the client from here on (stream.c reads it),
 *                 one that will be retried is read whole, kept up to
 *                 REQUEST_STREAM_HOLD bytes for step 6, dropped if larger
 *   finish:       the newest upstream response, or ahoyd's error for the last
 *                 outcome
 *
 * The policy lives in breaker.c, retry.c and balancer.c; this file only
 * sequences it on the loop. A backoff is a loop timer, never a sleep.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "proxy.h"
#include "strbuf.h"
#include "tunnel.h"

static void attempt_next(struct request *r);

static void respond_error(struct request *r, int status, const char *code, const char *message)
{
    request_set_error(r, status, code, message);
    request_answer(r);
}

static void call_end(struct request *r)
{
    if (r->call_running) {
        r->call_running = false;
        r->svc->state->inflight--;
    }
}

/* The answer when no attempt is left: the newest response, else the last outcome. */
static void finish(struct request *r)
{
    call_end(r);
    if (r->resp) {
        r->status = r->resp->status;
        request_answer(r);
        return;
    }
    switch (r->last_outcome.kind) {
    case OUTCOME_STATUS: /* the response was too big to keep for a later answer */
        respond_error(r, 502, "upstream_response_too_large",
                      "the upstream response was too large to keep while retrying");
        break;
    case OUTCOME_CONNECT_FAILURE:
        respond_error(r, 502, "upstream_unreachable", "could not connect to the upstream");
        break;
    case OUTCOME_RESET:
        respond_error(r, 502, "upstream_reset", "the upstream connection failed mid-request");
        break;
    case OUTCOME_RESPONSE_TOO_LARGE:
        respond_error(r, 502, "upstream_response_too_large",
                      "the upstream response is over the configured limit");
        break;
    case OUTCOME_TIMEOUT:
    case OUTCOME_CANCELLED:
    default:
        respond_error(r, 504, "upstream_timeout", "the upstream did not answer in time");
        break;
    }
}

static void on_backoff(void *arg)
{
    attempt_next(arg);
}

static void on_attempt_done(void *arg, const struct outcome *o, struct upstream_response *resp,
                            int64_t elapsed_us);

/* The deadline, started at the end of a body that streamed up, ran out while an attempt
 * started before it still runs: the attempt is cut as the deadline cuts any (SPEC 4.1). */
static void on_deadline(void *arg)
{
    struct request *r = arg;
    if (!r->attempt)
        return;
    upstream_cancel(r->env->upstream, r->attempt);
    r->attempt = NULL;
    r->attempt_cut_by_deadline = true;
    struct outcome o = {.kind = OUTCOME_TIMEOUT, .detail = "the deadline ran out"};
    on_attempt_done(r, &o, NULL, loop_now_us(r->env->loop) - r->attempt_start_us);
}

void proxy_begin(struct request *r)
{
    struct service_rt *svc = r->svc;
    const struct service_conf *sc = svc->conf;

    if (sc->max_inflight > 0 && svc->state->inflight >= sc->max_inflight) {
        respond_error(r, 503, "overloaded", "too many calls in flight for this service");
        return;
    }
    svc->state->inflight++;
    r->call_running = true;

    r->max_attempts = sc->retry.max_attempts;
    if (r->hdr_max_attempts > 0 && r->hdr_max_attempts < r->max_attempts)
        r->max_attempts = r->hdr_max_attempts;
    int64_t deadline = sc->deadline_ms;
    if (r->hdr_timeout_ms > 0 && (deadline == 0 || r->hdr_timeout_ms < deadline))
        deadline = r->hdr_timeout_ms;
    r->deadline_ms = deadline > 0 ? r->received_us / 1000 + deadline : 0;
    if (!r->received_us) {
        /* the body still streams in: the deadline starts at its last byte (SPEC 4.1) */
        r->deadline_ms = 0;
        r->deadline_after_body = deadline > 0 ? deadline : 0;
    }

    r->allow_resend = r->max_attempts > 1 && (r->body_keep || !r->bytes_in) &&
                      retry_may_resend(&sc->retry, r->upstream_method, r->has_idempotency_key);

    /* the endpoints tried, by id: the pool may change between attempts (discovery) */
    r->tried = calloc((size_t)r->max_attempts, sizeof *r->tried);
    if (!r->tried) {
        call_end(r);
        respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    r->current = r->previous = 0;
    r->upstream_us = -1;
    loop_timer_init(&r->backoff_timer, on_backoff, r);
    loop_timer_init(&r->deadline_timer, on_deadline, r);
    attempt_next(r);
}

static enum upstream_head_verdict on_attempt_head(void *arg, struct upstream_response *resp);
static size_t on_attempt_body(void *arg, int status, const char *data, size_t n);
static size_t on_attempt_read(void *arg, char *buf, size_t max);

/* origin + base path + rest + query, joined by the rules of SPEC 3.1. path is the
 * base-path-relative part ("" or "/..."), optionally followed by "?query". */
static char *endpoint_url(const struct endpoint_conf *ec, const char *server_name,
                          const char *path)
{
    const char *q = strchr(path, '?');
    size_t rest_len = q ? (size_t)(q - path) : strlen(path);
    char *joined = http_join_path(ec->base_path, path, rest_len, q ? q : "", q ? strlen(q) : 0);
    if (!joined)
        return NULL;
    char *url = NULL;
    int rc;
    if (server_name)
        rc = asprintf(&url, "https://%s:%d%s", server_name, ec->port, joined);
    else
        rc = asprintf(&url, "%s%s", ec->origin, joined);
    free(joined);
    return rc < 0 ? NULL : url;
}

/* Seconds until the earliest endpoint of svc goes half-open, at least 1. */
static int64_t retry_after_seconds(struct service_rt *svc, int64_t now)
{
    int64_t best = -1;
    for (size_t i = 0; i < svc->n_endpoints; i++) {
        struct endpoint_rt *ep = svc->endpoints[i];
        int64_t ms = breaker_ms_until_half_open(&ep->breaker, ep->policy, now);
        if (best < 0 || ms < best)
            best = ms;
    }
    int64_t s = best < 0 ? 1 : (best + 999) / 1000;
    return s < 1 ? 1 : s;
}

/* Balance over the usable endpoints (runtime.c's service_candidates) for attempt k: the
 * endpoint index, -1 when none can take it (*none_usable: none is healthy and not
 * ejected), -2 when out of memory. */
static int pick_endpoint(struct request *r, int64_t now, int k, bool *none_usable)
{
    struct service_rt *svc = r->svc;
    const struct service_conf *sc = svc->conf;
    struct balancer_slot slots_small[8];
    enum balancer_admit admit_small[8];
    int weight_small[8];
    struct balancer_slot *slots = slots_small;
    enum balancer_admit *admit = admit_small;
    int *weight = weight_small;
    size_t n = svc->n_endpoints;
    if (n > 8) {
        slots = calloc(n, sizeof *slots);
        admit = calloc(n, sizeof *admit);
        weight = calloc(n, sizeof *weight);
    }
    if (!slots || !admit || !weight) {
        if (n > 8) {
            free(slots);
            free(admit);
            free(weight);
        }
        return -2;
    }
    /* usable endpoints (health, ejection, panic) with slow-start weights: runtime.c */
    service_candidates(svc, now, admit, weight, none_usable);
    for (size_t i = 0; i < n; i++) {
        struct endpoint_rt *ep = svc->endpoints[i];
        slots[i].weight = weight[i];
        slots[i].inflight = ep->inflight;
        slots[i].admit = admit[i];
        slots[i].tried = false;
        for (int t = 0; t < r->attempts && !slots[i].tried; t++)
            slots[i].tried = r->tried[t] == ep->id;
        slots[i].previous = ep->id == r->previous;
        slots[i].state = &ep->lb;
    }
    int idx = balancer_pick(sc->load_balancer, slots, (int)n, k > 1, &r->env->rng);
    if (n > 8) {
        free(slots);
        free(admit);
        free(weight);
    }
    return idx;
}

/* Send attempt k to endpoint idx (already admitted and held): its timeout is cut to the
 * time left before the deadline, and it carries the shared headers plus its own. */
static void attempt_send(struct request *r, int idx, int k, int64_t now)
{
    const struct service_conf *sc = r->svc->conf;
    int64_t timeout = sc->timeout_ms;
    r->attempt_cut_by_deadline = false;
    int64_t left = 0;
    if (r->deadline_ms) {
        left = r->deadline_ms - now;
        if (timeout <= 0 || left < timeout) {
            timeout = left;
            r->attempt_cut_by_deadline = true;
        }
    }

    /* per-attempt headers after the shared ones */
    char attempt_hdr[40], deadline_hdr[48];
    const char *lines_small[40];
    const char **lines = lines_small;
    size_t nl = r->n_fwd + 3;
    if (nl > 40 && !(lines = calloc(nl, sizeof *lines))) {
        lines = NULL;
    }
    const struct endpoint_conf *ec = r->svc->confs[idx];
    const char *server_name =
        ec->tls && sc->tls.server_name && *sc->tls.server_name ? sc->tls.server_name : NULL;
    char *connect_to = NULL; /* any length: never cut */
    if (server_name && asprintf(&connect_to, "%s:%d:%s:%d", server_name, ec->port, ec->host,
                                ec->port) < 0)
        connect_to = NULL;
    char *url = endpoint_url(ec, server_name, r->upstream_path);
    struct upstream_attempt *a = NULL;
    if (lines && url && (!server_name || connect_to)) {
        size_t j = 0;
        for (size_t i = 0; i < r->n_fwd; i++)
            lines[j++] = r->fwd_headers[i];
        snprintf(attempt_hdr, sizeof attempt_hdr, "X-Ahoyd-Attempt: %d", k);
        lines[j++] = attempt_hdr;
        if (r->deadline_ms) {
            snprintf(deadline_hdr, sizeof deadline_hdr, "X-Ahoyd-Deadline-Ms: %lld",
                     (long long)left);
            lines[j++] = deadline_hdr;
        }
        lines[j] = NULL;
        r->body_off = 0;
        r->upload_paused = false;
        bool streams = r->body_streams && !r->body_complete;
        struct upstream_request req = {
            .url = url,
            .method = r->upstream_method,
            .headers = lines,
            .body = streams ? NULL : r->body,
            .body_len = streams ? 0 : r->body_len,
            .read_body = streams ? on_attempt_read : NULL,
            .read_size = r->body_expected,
            .timeout_ms = timeout,
            .read_timeout_ms = sc->read_timeout_ms,
            .connect_timeout_ms = sc->connect_timeout_ms,
            .allow_resend = r->allow_resend,
            .max_body = r->rt->cfg->max_response_body,
            .max_header_bytes = r->rt->cfg->max_response_header_bytes,
            .tls = &sc->tls,
            .connect_to = connect_to,
        };
        a = r->upgrade ? tunnel_start(r, &req, on_attempt_done)
                       : upstream_call_start(r->env->upstream, &req, REQUEST_STREAM_HOLD,
                                             on_attempt_head, on_attempt_body, on_attempt_done, r);
    }
    free(connect_to);
    if (a && url) {
        /* kept for the access log's target: no copy, the URL is freed with the request */
        free(r->last_url);
        r->last_url = url;
        const char *p = strstr(url, "://");
        p = p ? strchr(p + 3, '/') : NULL;
        r->last_target_off = p ? (size_t)(p - url) : strlen(url);
    } else {
        free(url);
    }
    if (lines != lines_small)
        free(lines);
    if (!a) {
        struct outcome o = {.kind = OUTCOME_CONNECT_FAILURE,
                            .detail = "the attempt could not be started"};
        on_attempt_done(r, &o, NULL, 0);
        return;
    }
    r->attempt = a;
    r->attempt_start_us = loop_now_us(r->env->loop);
}

/* Append url to the access log's list of endpoints tried; room is always left for a
 * closing ",..." should a later one not fit. */
static void note_tried(struct request *r, const char *url)
{
    size_t cap = sizeof r->tried_list, len = r->tried_len, n = strlen(url);
    if (len >= 3 && memcmp(r->tried_list + len - 3, "...", 3) == 0)
        return; /* already cut */
    if (len + (len ? 1 : 0) + n + 5 <= cap) {
        if (len)
            r->tried_list[len++] = ',';
        memcpy(r->tried_list + len, url, n + 1);
        r->tried_len = len + n;
    } else {
        memcpy(r->tried_list + len, len ? ",..." : "...", len ? 5 : 4);
        r->tried_len = len + (len ? 4 : 3);
    }
}

static void attempt_next(struct request *r)
{
    struct service_rt *svc = r->svc;
    const struct service_conf *sc = svc->conf;
    int64_t now = loop_now_ms(r->env->loop);
    int k = r->attempts + 1;

    if (r->deadline_ms && now >= r->deadline_ms) {
        if (r->last_outcome.kind != OUTCOME_STATUS || !r->resp)
            r->last_outcome.kind = OUTCOME_TIMEOUT;
        request_add_flag(r, "UT");
        finish(r);
        return;
    }

    bool none_usable = false;
    int idx = pick_endpoint(r, now, k, &none_usable);
    if (idx == -2) {
        call_end(r);
        respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    if (idx < 0 && none_usable) {
        request_add_flag(r, "NE");
        if (k == 1) {
            call_end(r);
            respond_error(r, 503, "no_endpoints",
                          svc->n_endpoints == 0
                              ? "this service has no endpoint (discovery has found none)"
                              : "no endpoint of this service is usable (none is healthy and "
                                "not ejected)");
            return;
        }
        request_add_flag(r, "URX");
        finish(r);
        return;
    }
    if (idx < 0) {
        request_add_flag(r, "UO");
        if (k == 1) {
            /* fail fast: not retried, not counted as a failure */
            char ra[32];
            call_end(r);
            snprintf(ra, sizeof ra, "%lld", (long long)retry_after_seconds(svc, now));
            header_list_add(&r->extra, "Retry-After", 11, ra, strlen(ra));
            respond_error(r, 503, "circuit_open",
                          "every endpoint of this service has its circuit open");
            return;
        }
        request_add_flag(r, "URX");
        finish(r);
        return;
    }

    struct endpoint_rt *ep = svc->endpoints[idx];
    if (!breaker_admit(&ep->breaker, ep->policy, now, &r->ticket)) {
        /* peek said yes and the state lock is held since: not expected, but the
         * breaker has the last word */
        request_add_flag(r, "UO");
        finish(r);
        return;
    }
    if (k == 1 && sc->retry.budget_enabled) /* circuit_open refusals are not counted */
        retry_budget_note_request(&svc->state->budget, now);
    if (k > 1)
        svc->state->retries++; /* a retry made, not only decided */
    ep->refs++; /* held while the attempt runs, even across a reload */
    ep->inflight++;
    r->current_ep = ep;
    r->current = ep->id;
    if (k <= r->max_attempts)
        r->tried[k - 1] = ep->id;
    r->attempts = k;
    ep->refs++; /* the URL is kept for the answer and the log (request_free lets go) */
    endpoint_unref(r->last_ep);
    r->last_ep = ep;
    r->last_endpoint = ep->url;
    note_tried(r, ep->url);
    attempt_send(r, idx, k, now);
}

static enum breaker_result breaker_result_of(const struct outcome *o)
{
    switch (o->kind) {
    case OUTCOME_STATUS:
        return o->status >= 500 ? BREAKER_FAILURE : BREAKER_SUCCESS;
    case OUTCOME_RESPONSE_TOO_LARGE:
        return BREAKER_SUCCESS; /* the endpoint answered; the answer was too big */
    case OUTCOME_CANCELLED:
        return BREAKER_NEUTRAL;
    default:
        return BREAKER_FAILURE;
    }
}

/* Give back what the running attempt holds on its endpoint. */
static void attempt_settle(struct request *r, const struct outcome *o)
{
    struct endpoint_rt *ep = r->current_ep;
    struct breaker_transition tr;
    if (!ep)
        return;
    ep->inflight--;
    int64_t now = loop_now_ms(r->env->loop);
    enum breaker_result br = breaker_result_of(o);
    if (breaker_record(&ep->breaker, ep->policy, &r->ticket, br, now, &tr))
        endpoint_note_transition(ep, &tr);
    endpoint_note_outcome(ep, r->svc, br, now); /* outlier ejection: every attempt's outcome */
    r->current_ep = NULL;
    r->previous = r->current;
    r->current = 0;
    endpoint_unref(ep);
}

/* Step 5 for an outcome: retry (*delay_ms the backoff) or not, and why not. */
static enum retry_verdict decide(struct request *r, const struct outcome *oc,
                                 const char *retry_after, int64_t *delay_ms)
{
    const struct retry_policy *rp = &r->svc->conf->retry;
    int64_t now = loop_now_ms(r->env->loop);
    struct retry_input in = {
        .outcome = *oc,
        .attempt = r->attempts,
        .max_attempts = r->max_attempts,
        .method = r->upstream_method,
        .has_idempotency_key = r->has_idempotency_key,
        .retry_after = rp->honor_retry_after ? retry_after : NULL,
        .now_ms = now,
        .now_unix_s = (int64_t)time(NULL),
        .deadline_ms = r->deadline_ms,
    };
    *delay_ms = 0;
    if (r->body_sent)
        return RETRY_NO_METHOD; /* part of a body that was not kept went out (SPEC 4.3) */
    enum retry_verdict v = retry_decide(rp, &in, &r->svc->state->budget, &r->env->rng, delay_ms);
    if (v == RETRY_YES && r->env->drain_deadline_ms &&
        now + *delay_ms >= r->env->drain_deadline_ms) {
        v = RETRY_NO_DEADLINE; /* draining: a retry only if it can end before shutdown-timeout */
    }
    return v;
}

/* The access-log flags of a retry refused. */
static void note_no_retry(struct request *r, enum retry_verdict v)
{
    if (v == RETRY_NO_ATTEMPTS && r->max_attempts > 1)
        request_add_flag(r, "URX");
    if (v == RETRY_NO_BUDGET) {
        request_add_flag(r, "RB");
        request_add_flag(r, "URX");
    }
}

static const char *retry_after_of(const struct upstream_response *resp)
{
    if (resp->status == 429 || resp->status == 503)
        return header_list_get(&resp->headers, "Retry-After");
    return NULL;
}

/* A final head is out and no retry can follow: a kept body is kept no more (what the
 * attempt took is forgotten from now on) and its share of max-retry-buffers goes back. */
static void body_let_go(struct request *r)
{
    if (!r->body_keep)
        return;
    r->body_keep = false;
    request_body_release(r);
}

/* The streamed attempt ended: the body is not needed any more. */
static void body_drop(struct request *r)
{
    if (r->body_keep)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = r->body_off = 0;
}

/* The head of the attempt's response (SPEC 3.5): a response that will be retried is
 * collected (kept up to REQUEST_STREAM_HOLD bytes); a final one is the answer now, its
 * body streamed to the client as it comes. A response without a body is collected. */
static enum upstream_head_verdict on_attempt_head(void *arg, struct upstream_response *resp)
{
    struct request *r = arg;
    int st = resp->status;
    if (strcmp(r->upstream_method, "HEAD") == 0 || st < 200 || st == 204 || st == 304)
        return UPSTREAM_HEAD_COLLECT; /* nothing to stream: decided at its end, as before */
    struct outcome o = {.kind = OUTCOME_STATUS, .status = st};
    r->head_decided = true;
    r->head_verdict = decide(r, &o, retry_after_of(resp), &r->head_delay_ms);
    if (r->head_verdict == RETRY_YES)
        return UPSTREAM_HEAD_COLLECT;
    note_no_retry(r, (enum retry_verdict)r->head_verdict);
    if (r->resp) {
        upstream_response_free(r->resp);
        free(r->resp);
    }
    r->resp = resp;
    /* a declared length that fits the hold: the whole body in one buffer of that size
     * (a small answer costs one exact allocation, not a 4 KiB one) */
    if (resp->content_length > 0 && (uint64_t)resp->content_length <= REQUEST_STREAM_HOLD &&
        resp->body_cap == 0 && (resp->body = malloc((size_t)resp->content_length)))
        resp->body_cap = (size_t)resp->content_length;
    r->resp_endpoint = r->last_endpoint;
    r->ttfb_us = resp->head_us;
    r->status = st;
    r->streaming = true;
    r->stream_off = 0;
    body_let_go(r); /* no retry any more: the body's share goes back */
    request_answer(r); /* the head goes out; the server side reads the body (stream.c) */
    return UPSTREAM_HEAD_STREAM;
}

/* A piece of a streamed body: into the answer's buffer, or held back when it is full. */
static size_t on_attempt_body(void *arg, int status, const char *data, size_t n)
{
    struct request *r = arg;
    struct upstream_response *b = r->resp;
    (void)status;
    if (!b || r->client_gone)
        return 0;
    size_t held = b->body_len - r->stream_off;
    if (held >= REQUEST_STREAM_HOLD) {
        r->stream_paused = true;
        return UPSTREAM_DATA_PAUSE;
    }
    if (r->stream_off && b->body_len + n > b->body_cap) {
        memmove(b->body, b->body + r->stream_off, held);
        b->body_len = held;
        r->stream_off = 0;
    }
    if (strbuf_bytes_append(&b->body, &b->body_len, &b->body_cap, data, n, 0) != 0)
        return 0;
    request_wake(r);
    return n;
}

/* The end of a streamed attempt: the body ended, or the client's reply is cut (RS). */
static void stream_attempt_done(struct request *r, const struct outcome *oc)
{
    if (oc->kind == OUTCOME_STATUS) {
        r->stream_eof = true;
    } else {
        r->stream_cut = true;
        request_add_flag(r, "RS");
        if (oc->kind == OUTCOME_RESET)
            request_add_flag(r, "UR");
        else if (oc->kind == OUTCOME_TIMEOUT || oc->kind == OUTCOME_CANCELLED)
            request_add_flag(r, "UT");
    }
    call_end(r);
    body_drop(r);
    request_wake(r);
}

static void on_attempt_done(void *arg, const struct outcome *o, struct upstream_response *resp,
                            int64_t elapsed_us)
{
    struct request *r = arg;
    struct service_rt *svc = r->svc;
    struct outcome oc = *o;

    r->attempt = NULL;
    loop_timer_stop(r->env->loop, &r->deadline_timer);
    r->upstream_us = (r->upstream_us < 0 ? 0 : r->upstream_us) + elapsed_us;
    if (oc.kind == OUTCOME_TIMEOUT && r->attempt_cut_by_deadline) {
        /* the call's deadline, not the attempt's timeout: neutral for the breaker, but
         * the attempt was sent and is counted as a timeout */
        oc.kind = OUTCOME_CANCELLED;
    }
    if (r->current_ep)
        endpoint_note_attempt(r->current_ep, o, oc.kind == OUTCOME_CANCELLED, elapsed_us,
                              r->request_id, r->attempts);
    attempt_settle(r, &oc);
    if (!r->body_keep && r->bytes_in && oc.kind != OUTCOME_CONNECT_FAILURE)
        r->body_sent = true; /* not known to be unsent: never sent again */
    if (r->streaming) {
        stream_attempt_done(r, &oc);
        return;
    }

    const char *retry_after = NULL;
    bool head_decided = r->head_decided;
    r->head_decided = false;
    if (resp && resp->dropped) {
        upstream_response_free(resp); /* too big to keep: an earlier one stays the answer */
        free(resp);
    } else if (resp) {
        if (r->resp) {
            upstream_response_free(r->resp);
            free(r->resp);
        }
        r->resp = resp;
        r->resp_endpoint = r->last_endpoint;
        if (r->last_ep)
            r->last_ep->refs++;
        endpoint_unref(r->resp_ep);
        r->resp_ep = r->last_ep;
        r->ttfb_us = resp->head_us;
        retry_after = retry_after_of(resp);
    }
    r->last_outcome = oc;
    switch (oc.kind) {
    case OUTCOME_CONNECT_FAILURE: request_add_flag(r, "UF"); break;
    case OUTCOME_RESET: request_add_flag(r, "UR"); break;
    case OUTCOME_TIMEOUT:
    case OUTCOME_CANCELLED: request_add_flag(r, "UT"); break;
    default: break;
    }
    if (oc.kind == OUTCOME_CANCELLED) {
        finish(r); /* the deadline is spent */
        return;
    }

    int64_t delay = 0;
    enum retry_verdict v;
    if (head_decided && oc.kind == OUTCOME_STATUS) {
        v = (enum retry_verdict)r->head_verdict; /* judged at its head, budget noted then */
        delay = r->head_delay_ms;
        if (v == RETRY_YES && r->body_sent)
            v = RETRY_NO_METHOD; /* body bytes not kept went out after the head */
    } else {
        v = decide(r, &oc, retry_after, &delay);
    }
    if (v == RETRY_YES) {
        log_debug("retrying request %s on service %s in %lld ms (attempt %d: %s)",
                  r->request_id, svc->conf->name, (long long)delay, r->attempts,
                  outcome_label_name(outcome_label_index(&oc)));
        loop_timer_start(r->env->loop, &r->backoff_timer, delay);
        return;
    }
    note_no_retry(r, v);
    finish(r);
}

/* The running attempt wants the next bytes of a streamed request body. */
static size_t on_attempt_read(void *arg, char *buf, size_t max)
{
    struct request *r = arg;
    size_t held = r->body_len - r->body_off;
    if (held == 0) {
        if (r->body_complete)
            return 0;
        r->upload_paused = true; /* stream_body_take or proxy_body_end lets it go */
        return UPSTREAM_READ_PAUSE;
    }
    size_t n = held < max ? held : max;
    memcpy(buf, r->body + r->body_off, n);
    r->body_off += n;
    if (!r->body_keep)
        r->body_sent = true; /* these bytes are not kept: this call is not sent again */
    if (!r->body_keep && r->body_off == r->body_len)
        r->body_off = r->body_len = 0; /* not kept: what went out is forgotten */
    if (r->body_held && r->body_len - r->body_off <= REQUEST_STREAM_HOLD / 2) {
        r->body_held = false;
        request_wake(r); /* the client's connection may hand the next pieces */
    }
    return n;
}

void proxy_body_end(struct request *r)
{
    r->body_complete = true;
    if (r->deadline_after_body) {
        r->deadline_ms = r->received_us / 1000 + r->deadline_after_body;
        if (r->attempt) /* its timeout was set without the deadline */
            loop_timer_start(r->env->loop, &r->deadline_timer, r->deadline_after_body);
    }
    if (r->upload_paused && r->attempt) {
        r->upload_paused = false;
        upstream_resume_upload(r->env->upstream, r->attempt);
    }
}

/* The client got the whole declared body of a streamed answer: the attempt is a success
 * even when its end is not collected yet (the last bytes went out as it was resumed). */
static bool stream_passed_whole(const struct request *r)
{
    return r->streaming && !r->stream_cut && r->resp && r->resp->content_length >= 0 &&
           r->bytes_out >= (uint64_t)r->resp->content_length;
}

void proxy_cancel(struct request *r)
{
    if (r->attempt) {
        struct outcome o = {.kind = OUTCOME_CANCELLED};
        if (!r->tunnel && stream_passed_whole(r)) {
            o = (struct outcome){.kind = OUTCOME_STATUS, .status = r->status};
            r->stream_eof = true;
        }
        if (r->tunnel)
            tunnel_cancel(r);
        else
            upstream_cancel(r->env->upstream, r->attempt);
        r->attempt = NULL;
        if (o.kind == OUTCOME_STATUS && r->current_ep)
            endpoint_note_attempt(r->current_ep, &o, false,
                                  loop_now_us(r->env->loop) - r->attempt_start_us, r->request_id,
                                  r->attempts);
        attempt_settle(r, &o);
    }
    loop_timer_stop(r->env->loop, &r->backoff_timer);
    loop_timer_stop(r->env->loop, &r->deadline_timer);
    call_end(r);
}
