/*
 * upstream_read.h - the reader behind libcurl's header and write callbacks:
 * which header lines make the response (the final block's, never a 1xx
 * block's or a trailer), its Content-Length, and the header and body limits.
 * Used by upstream.c (upstream_read.c has it); declared here so the regression
 * tests and the fuzz target feed it lines the way libcurl does, without a transfer.
 */
#ifndef AHOYD_UPSTREAM_READ_H
#define AHOYD_UPSTREAM_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream.h"

#define UPSTREAM_PREALLOC_MAX (64u << 20) /* a declared body allocated whole, without a limit */

struct upstream_reader {
    struct upstream_response *resp; /* filled in; content_length starts at -1 */
    uint64_t max_body, max_header_bytes;
    uint64_t keep_max;     /* a body over this is read on but dropped (resp->dropped); 0 = none */
    uint64_t body_seen;    /* body bytes read, kept or not (max_body counts these) */
    bool defer_alloc;      /* no allocation for a declared length at the head's end */
    uint64_t header_bytes; /* of the current block */
    bool in_block;         /* between a status line and its blank line */
    bool interim;          /* the block is a 1xx response, forgotten at its end */
    bool headers_done;     /* the final block ended: what follows are trailers */
    bool too_large;        /* a limit was crossed: the transfer is aborted */
};

/* One header line as libcurl delivers it (status line, field, blank line or trailer;
 * n bytes, not NUL-terminated). Returns n, or 0 to abort the transfer. */
size_t upstream_read_header(struct upstream_reader *rd, const char *line, size_t n);
/* Body bytes. Returns n, or 0 to abort (over max_body: too_large; out of memory). */
size_t upstream_read_body(struct upstream_reader *rd, const char *data, size_t n);

#endif
