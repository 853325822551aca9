/*
 * etcd_stream.c - following an etcd prefix: range, then watch (SPEC 4.6).
 *
 * The watch is one long response made of JSON lines, which curl hands over
 * in pieces of any size; the splitter below keeps the partial line between
 * pieces, bounded so that a broken or hostile peer cannot grow it forever.
 *
 * The endpoints are kept by key, because events name keys: two keys may
 * register one URL, and pool_diff merges them by URL afterwards. The keys are
 * kept sorted, so that finding one is a binary search (a range gives them in
 * order, so loading one appends).
 *
 * Resuming follows etcd's rules. The revision kept is that of the last event
 * applied (events carry their kv's mod_revision), never a header's: a header
 * gives the store's current revision, which may run ahead of the events a
 * catching-up watcher has delivered. After a break the watch restarts at that
 * revision + 1, so no change is missed or applied twice. When etcd has
 * compacted the history past that point (compact_revision set, the watch
 * canceled), only a fresh range can say what the prefix holds.
 *
 * Pure: bytes and parsed messages in, decisions out.
 */
#include "etcd_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* ---- line splitter ------------------------------------------------------------ */

void etcd_lines_init(struct etcd_lines *l, size_t max)
{
    memset(l, 0, sizeof(*l));
    l->max = max;
}

void etcd_lines_reset(struct etcd_lines *l)
{
    l->len = 0;
}

void etcd_lines_free(struct etcd_lines *l)
{
    free(l->buf);
    etcd_lines_init(l, l->max);
}

static int emit(const char *line, size_t len, etcd_line_fn fn, void *arg)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    return len > 0 ? fn(line, len, arg) : 0;
}

/* Append to the partial line, growing the buffer up to max. */
static int keep(struct etcd_lines *l, const char *data, size_t n)
{
    if (l->len + n > l->max)
        return ETCD_LINES_TOO_LONG;
    if (l->len + n > l->cap) {
        size_t cap = l->cap > 0 ? l->cap : 256;
        char *p;
        while (cap < l->len + n)
            cap *= 2;
        if (cap > l->max)
            cap = l->max;
        p = realloc(l->buf, cap);
        if (!p)
            return ETCD_LINES_NO_MEMORY;
        l->buf = p;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, data, n);
    l->len += n;
    return 0;
}

/* Complete lines that lie whole in data are handed over in place; only a
 * line that spans pieces is copied. */
int etcd_lines_feed(struct etcd_lines *l, const char *data, size_t n, etcd_line_fn fn, void *arg)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        int rc;

        if (!nl)
            return keep(l, data, n);
        if (l->len == 0) {
            if (take > l->max)
                return ETCD_LINES_TOO_LONG;
            rc = emit(data, take, fn, arg);
        } else {
            rc = keep(l, data, take);
            if (rc == 0)
                rc = emit(l->buf, l->len, fn, arg);
            l->len = 0;
        }
        if (rc != 0)
            return rc;
        data += take + 1;
        n -= take + 1;
    }
    return 0;
}

/* ---- endpoints by key ------------------------------------------------------------- */

unsigned long etcd_set_compares;

/* Binary search in the set, kept in byte order of the key: the index of key, or
 * -(where it would go) - 1. */
static int find_index(const struct etcd_set *s, const char *key)
{
    int lo = 0, hi = s->n;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s->entries[mid].key, key);

        etcd_set_compares++;
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -lo - 1;
}

const struct etcd_entry *etcd_set_find(const struct etcd_set *s, const char *key)
{
    int i = find_index(s, key);
    return i >= 0 ? &s->entries[i] : NULL;
}

static bool remove_key(struct etcd_set *s, const char *key)
{
    int i = find_index(s, key);

    if (i < 0)
        return false;
    free(s->entries[i].key);
    free(s->entries[i].url);
    memmove(&s->entries[i], &s->entries[i + 1], (size_t)(s->n - i - 1) * sizeof(*s->entries));
    s->n--;
    return true;
}

/* Takes ownership of url. */
static enum etcd_apply put_key(struct etcd_set *s, const char *key, char *url, int weight)
{
    int i = find_index(s, key);

    if (i >= 0 && strcmp(s->entries[i].url, url) == 0 && s->entries[i].weight == weight) {
        free(url);
        return ETCD_APPLY_UNCHANGED;
    }
    if (i >= 0) {
        free(s->entries[i].url);
        s->entries[i].url = url;
        s->entries[i].weight = weight;
        return ETCD_APPLY_CHANGED;
    }
    if (s->n == s->cap) {
        int cap = s->cap > 0 ? s->cap * 2 : 8;
        struct etcd_entry *p = realloc(s->entries, (size_t)cap * sizeof(*p));
        if (!p) {
            free(url);
            return ETCD_APPLY_NO_MEMORY;
        }
        s->entries = p;
        s->cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(url);
        return ETCD_APPLY_NO_MEMORY;
    }
    i = -i - 1;
    memmove(&s->entries[i + 1], &s->entries[i], (size_t)(s->n - i) * sizeof(*s->entries));
    s->entries[i].key = k;
    s->entries[i].url = url;
    s->entries[i].weight = weight;
    s->n++;
    return ETCD_APPLY_CHANGED;
}

/* The URL read as the config reads an endpoint's (no query, no user info, a port up to
 * 65535): one the pool would leave out must not count as a change on every answer. */
static bool endpoint_url_ok(const char *url, char *err, size_t errsize)
{
    struct endpoint_conf ec = {0};
    const char *why = "out of memory";
    bool ok = config_endpoint_parse(url, 1, &ec, &why);

    config_endpoint_clear(&ec);
    if (!ok && err && errsize > 0)
        snprintf(err, errsize, "'url': %s", why);
    return ok;
}

enum etcd_apply etcd_set_apply(struct etcd_set *s, enum etcd_event_type type,
                               const struct etcd_kv *kv, char *err, size_t errsize)
{
    char *url;
    int weight;

    if (type == ETCD_EVENT_DELETE)
        return remove_key(s, kv->key) ? ETCD_APPLY_CHANGED : ETCD_APPLY_UNKNOWN;
    if (etcd_parse_endpoint(kv->value, kv->value_len, &url, &weight, err, errsize) != 0 ||
        !endpoint_url_ok(url, err, errsize)) {
        free(url);
        remove_key(s, kv->key);
        return ETCD_APPLY_SKIPPED;
    }
    return put_key(s, kv->key, url, weight);
}

int etcd_set_load(struct etcd_set *s, const struct etcd_range *r, int *skipped, char *err,
                  size_t errsize)
{
    char msg[256];

    etcd_set_free(s);
    *skipped = 0;
    for (int i = 0; i < r->n_kvs; i++) {
        enum etcd_apply a = etcd_set_apply(s, ETCD_EVENT_PUT, &r->kvs[i], msg, sizeof msg);
        if (a == ETCD_APPLY_NO_MEMORY) {
            etcd_set_free(s);
            return -1;
        }
        if (a == ETCD_APPLY_SKIPPED && (*skipped)++ == 0 && err && errsize > 0) {
            strncpy(err, msg, errsize - 1);
            err[errsize - 1] = '\0';
        }
    }
    return 0;
}

int etcd_set_found(const struct etcd_set *s, struct pool_found *out)
{
    for (int i = 0; i < s->n; i++) {
        out[i].url = s->entries[i].url;
        out[i].weight = s->entries[i].weight;
    }
    return s->n;
}

void etcd_set_free(struct etcd_set *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->entries[i].key);
        free(s->entries[i].url);
    }
    free(s->entries);
    memset(s, 0, sizeof(*s));
}

/* ---- range or watch ----------------------------------------------------------------- */

void etcd_sync_init(struct etcd_sync *s)
{
    s->have_range = false;
    s->revision = 0;
}

enum etcd_step etcd_sync_next(const struct etcd_sync *s, int64_t *start_revision)
{
    *start_revision = s->have_range ? s->revision + 1 : 0;
    return s->have_range ? ETCD_STEP_WATCH : ETCD_STEP_RANGE;
}

void etcd_sync_ranged(struct etcd_sync *s, int64_t rev)
{
    s->have_range = true;
    s->revision = rev;
}

/* Keep only the events newer than floor, in order; free the others. */
static void drop_stale(struct etcd_watch_msg *m, int64_t floor)
{
    int kept = 0;

    for (int i = 0; i < m->n_events; i++) {
        if (m->events[i].kv.mod_revision > floor)
            m->events[kept++] = m->events[i];
        else
            etcd_kv_free(&m->events[i].kv);
    }
    m->n_events = kept;
}

enum etcd_verdict etcd_sync_message(struct etcd_sync *s, struct etcd_watch_msg *m)
{
    if (m->error)
        return ETCD_BROKEN;
    if (m->compact_revision > 0 || m->canceled) {
        s->have_range = false;
        return ETCD_RERANGE;
    }
    drop_stale(m, s->revision);
    for (int i = 0; i < m->n_events; i++) {
        if (m->events[i].kv.mod_revision > s->revision)
            s->revision = m->events[i].kv.mod_revision;
    }
    return m->n_events > 0 ? ETCD_APPLY : ETCD_IGNORE;
}
