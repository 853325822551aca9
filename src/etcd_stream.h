/*
 * etcd_stream.h - following an etcd prefix (SPEC 4.6): the line splitter for
 * the watch's streaming body, the set of endpoints by key, and the state
 * machine that says whether to range or to watch, and from which revision.
 *
 * Pure: bytes and parsed messages in, decisions out; the transfers (libcurl)
 * live elsewhere.
 */
#ifndef AHOYD_ETCD_STREAM_H
#define AHOYD_ETCD_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd_parse.h"
#include "pool_diff.h"

/* ---- line splitter ---- */

/* Bytes arrive in pieces of any size; a line may span pieces. */
struct etcd_lines {
    char *buf; /* the partial line so far (malloc'd) */
    size_t len, cap;
    size_t max; /* longest line accepted: '\n' excluded, a '\r' before it counted */
};

/* Called once per complete line ('\n' and a '\r' before it removed; empty
 * lines are skipped). A non-zero return stops the feed and is returned. */
typedef int (*etcd_line_fn)(const char *line, size_t len, void *arg);

#define ETCD_LINES_TOO_LONG (-2)
#define ETCD_LINES_NO_MEMORY (-1)

void etcd_lines_init(struct etcd_lines *l, size_t max);
/* 0, ETCD_LINES_TOO_LONG (the stream must be restarted: etcd_lines_reset),
 * ETCD_LINES_NO_MEMORY, or the callback's non-zero value. */
int etcd_lines_feed(struct etcd_lines *l, const char *data, size_t n, etcd_line_fn fn, void *arg);
/* Drop a partial line (a new stream begins). */
void etcd_lines_reset(struct etcd_lines *l);
void etcd_lines_free(struct etcd_lines *l);

/* ---- endpoints by key ---- */

struct etcd_entry {
    char *key;
    char *url;
    int weight;
};

struct etcd_set {
    struct etcd_entry *entries;
    int n, cap;
};

/* Results of etcd_set_apply. */
enum etcd_apply {
    ETCD_APPLY_NO_MEMORY = -1,
    ETCD_APPLY_CHANGED = 0, /* the key was put or deleted */
    ETCD_APPLY_SKIPPED = 1, /* PUT with an invalid value: message in err, the key is dropped */
    ETCD_APPLY_UNKNOWN = 2, /* DELETE of a key not in the set */
    ETCD_APPLY_UNCHANGED = 3, /* PUT of the URL and weight the key already has */
};

/* PUT: parse the value (etcd_parse_endpoint) and put it; an invalid value
 * removes the key (an endpoint whose registration broke must not linger).
 * DELETE: remove the key. */
enum etcd_apply etcd_set_apply(struct etcd_set *s, enum etcd_event_type type,
                               const struct etcd_kv *kv, char *err, size_t errsize);
/* Replace the whole set with a range's keys; invalid ones are skipped and
 * counted in *skipped, the first message in err. 0, or -1 out of memory
 * (the set is then empty). */
int etcd_set_load(struct etcd_set *s, const struct etcd_range *r, int *skipped, char *err,
                  size_t errsize);
/* Key comparisons the sets have made so far (tests bound their cost with it). */
extern unsigned long etcd_set_compares;
const struct etcd_entry *etcd_set_find(const struct etcd_set *s, const char *key);
/* The set as pool_diff input, in byte order of the key: out needs s->n entries; the
 * strings stay the set's. */
int etcd_set_found(const struct etcd_set *s, struct pool_found *out);
void etcd_set_free(struct etcd_set *s);

/* ---- range or watch ---- */

enum etcd_step { ETCD_STEP_RANGE = 0, ETCD_STEP_WATCH };

enum etcd_verdict {
    ETCD_IGNORE = 0, /* nothing to apply (created, progress, only stale events) */
    ETCD_APPLY,      /* apply msg's events, in order (stale ones were dropped) */
    ETCD_RERANGE,    /* compacted or canceled: end this watch, range again */
    ETCD_BROKEN,     /* the gateway reported an error: end this watch, resume it */
};

struct etcd_sync {
    bool have_range;  /* a range has been applied since the start or the last compaction */
    int64_t revision; /* the last revision applied */
};

void etcd_sync_init(struct etcd_sync *s);
/* What to send next: a range, or a watch from *start_revision (last + 1). */
enum etcd_step etcd_sync_next(const struct etcd_sync *s, int64_t *start_revision);
/* A range answer at header revision rev was applied. */
void etcd_sync_ranged(struct etcd_sync *s, int64_t rev);
/* A watch message arrived. Drops (frees) events at or below the revision
 * already applied, advances the revision to the newest event's. */
enum etcd_verdict etcd_sync_message(struct etcd_sync *s, struct etcd_watch_msg *m);

#endif
