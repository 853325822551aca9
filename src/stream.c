/*
 * stream.c - a streamed answer on the client side: the upstream's head goes
 * to the client when it arrives (proxy.c decides that it is final) and the
 * body follows through libmicrohttpd's content reader, chunk by chunk.
 *
 * The body passes through one buffer per call, r->resp->body, filled by
 * proxy.c from libcurl's write callback and emptied here. Backpressure both
 * ways: proxy.c holds the upstream back (CURL_WRITEFUNC_PAUSE) once about
 * REQUEST_STREAM_HOLD bytes wait, and the reader lets it go again once the
 * client took half of them; a reader with nothing to give suspends the
 * connection (MHD calls it in a busy loop otherwise) and is resumed through
 * request_wake() when bytes, the end or a failure arrive.
 *
 * The request body goes the other way (stream_body_*): the call starts at its
 * first piece, and libcurl's read callback (proxy.c) takes it from r->body. A
 * body up to the service's request-buffer (and within max-retry-buffers) is
 * kept whole for retries; a larger one keeps only what the attempt has not
 * taken, and the connection is suspended while that is over
 * REQUEST_STREAM_HOLD (libmicrohttpd hands the next piece only when the
 * handler returns).
 *
 * The reader keeps a reference on the request: libmicrohttpd destroys the
 * response (and calls stream_free) after it reported the request completed.
 * The reader and stream_free run from MHD_run, without the state lock: each
 * takes it (loop.h).
 */
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "forward.h"
#include "proxy.h"
#include "server.h"
#include "strbuf.h"
#include "stream.h"

#define STREAM_BLOCK (32 * 1024) /* libmicrohttpd's buffer for one streamed response */

void stream_suspend(struct request *r)
{
    struct server *s = r->srv;
    if (r->suspended)
        return; /* MHD may still hand the rest of its buffer to a suspended connection */
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    s->calls++;
    r->next_suspended = s->suspended;
    if (s->suspended)
        s->suspended->prev_suspended = r;
    s->suspended = r;
}

/* Up to max bytes of the body for the client, the end, a failure, or 0 (suspended). */
static ssize_t stream_take(struct request *r, char *buf, size_t max)
{
    struct upstream_response *b = r->resp;
    size_t held = b ? b->body_len - r->stream_off : 0;
    if (r->client_gone)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (held) {
        size_t n = held < max ? held : max;
        memcpy(buf, b->body + r->stream_off, n);
        r->stream_off += n;
        r->bytes_out += n;
        if (r->stream_off == b->body_len)
            r->stream_off = b->body_len = 0;
        if (r->stream_paused && b->body_len - r->stream_off <= REQUEST_STREAM_HOLD / 2 &&
            r->attempt) {
            r->stream_paused = false;
            upstream_resume_body(r->env->upstream, r->attempt);
        }
        return (ssize_t)n;
    }
    if (r->stream_eof) {
        r->stream_done = true;
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (r->stream_cut || !r->attempt)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* closed without the body's end */
    stream_suspend(r);
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    state_enter();
    ssize_t n = stream_take(cls, buf, max);
    state_leave();
    return n;
}

static void stream_free(void *cls)
{
    state_enter();
    request_unref(cls);
    state_leave();
}

struct MHD_Response *stream_response(struct request *r)
{
    int64_t cl = r->resp->content_length;
    r->refs++; /* the reader's, given back by stream_free (at once on failure) */
    return forward_build_stream_response(r, cl >= 0 ? (uint64_t)cl : MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                         stream_read, stream_free);
}

bool stream_is_whole(const struct request *r)
{
    return !r->streaming || (r->stream_eof && r->stream_off == 0);
}

void stream_abort(struct request *r)
{
    proxy_cancel(r);
    r->stream_cut = true;
    request_add_flag(r, "RS");
    request_wake(r);
}

/* ---- the request body up ----------------------------------------------------------- */

void stream_body_plan(struct request *r, int64_t expected)
{
    const struct config *cfg = r->rt->cfg;
    r->body_expected = expected;
    if (r->operation || expected < 0)
        return; /* a named call's arguments are read whole; chunked: kept while it fits */
    r->body_keep = (uint64_t)expected <= r->svc->conf->request_buffer &&
                   request_body_reserve(r, (uint64_t)expected, cfg->max_retry_buffers);
}

bool stream_body_starts(const struct request *r)
{
    if (r->body_streams || r->err_code || r->body_discard || r->raw_answered || r->operation ||
        !r->svc || r->response_ready)
        return false;
    /* a body whole after this piece goes up in one piece at its end, as before */
    return r->body_expected < 0 || r->bytes_in < (uint64_t)r->body_expected;
}

/* A chunked body that outgrows request-buffer (or the retry buffers) is not kept. */
static void keep_check(struct request *r, size_t n)
{
    if (!r->body_keep || r->operation || r->body_expected >= 0)
        return;
    if ((uint64_t)r->body_len + n <= r->svc->conf->request_buffer &&
        request_body_reserve(r, n, r->rt->cfg->max_retry_buffers))
        return;
    r->body_keep = false;
    request_body_release(r);
    if (r->body_off)
        r->body_sent = true; /* what the attempt took is no longer kept */
}

int stream_body_take(struct request *r, const char *data, size_t n)
{
    uint64_t limit = r->rt->cfg->max_request_body;
    if (limit && r->bytes_in + n > limit)
        return -1;
    r->bytes_in += n;
    if (r->body_discard)
        return 0; /* counted, not kept */
    if (r->svc)
        keep_check(r, n);
    if (!r->body_keep && r->body_off && r->body_len + n > r->body_cap) {
        memmove(r->body, r->body + r->body_off, r->body_len - r->body_off);
        r->body_len -= r->body_off;
        r->body_off = 0;
    }
    if (strbuf_bytes_append(&r->body, &r->body_len, &r->body_cap, data, n, 0) != 0)
        return -2;
    if (r->upload_paused && r->attempt) {
        r->upload_paused = false;
        upstream_resume_upload(r->env->upstream, r->attempt);
    }
    return 0;
}

/* Held while the call may still take the body: also once a final head arrived (the
 * attempt still uploads); dropped by intake.c only when no attempt runs any more. */
void stream_body_hold(struct request *r)
{
    if (r->body_keep || !r->body_streams || (r->response_ready && !r->attempt) ||
        r->client_gone ||
        r->body_len - r->body_off <= REQUEST_STREAM_HOLD)
        return;
    r->body_held = true; /* the read callback lets go (request_wake) once half is taken */
    stream_suspend(r);
}
