/*
 * pool_diff.c - one source's new endpoint set against the pool (SPEC 4.6).
 *
 * Endpoints are matched by URL, so one that stays keeps everything it has
 * learnt. A member remembers the weight each source gives it; a source's
 * change touches only its own column, which is why static endpoints always
 * stay and why a URL that DNS and etcd both list is one endpoint that leaves
 * only when both drop it. The shown source and the weight come from the
 * first source in precedence order: static (what the operator wrote), then
 * etcd (an explicit registration), then DNS (the coarsest).
 *
 * Matching goes through a hash of the URLs, so that applying a set costs
 * time in proportion to its size (sources may list thousands).
 *
 * Pure: indices and fates out; the caller owns every string.
 */
#include "pool_diff.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pool_source_name(enum pool_source s)
{
    switch (s) {
    case POOL_SOURCE_STATIC:
        return "static";
    case POOL_SOURCE_ETCD:
        return "etcd";
    case POOL_SOURCE_DNS:
        return "dns";
    case POOL_SOURCES:
        break;
    }
    return "unknown";
}

int pool_member_weight(const int weight_by_source[POOL_SOURCES], enum pool_source *shown)
{
    for (int s = 0; s < POOL_SOURCES; s++) {
        if (weight_by_source[s] > 0) {
            if (shown)
                *shown = (enum pool_source)s;
            return weight_by_source[s];
        }
    }
    return 0;
}

int pool_found_weight(const struct pool_found *found, int nfound, const char *url)
{
    int best = 0;

    for (int i = 0; i < nfound; i++) {
        if (strcmp(found[i].url, url) == 0) {
            int w = found[i].weight >= 1 ? found[i].weight : 1;
            if (w > best)
                best = w;
        }
    }
    return best;
}

/* ---- URL index ------------------------------------------------------------------ */

unsigned long pool_diff_compares;

/* Open addressing over an array of URLs: slot holds index + 1, 0 is empty. */
struct url_index {
    int *slot;
    size_t mask;
};

static size_t url_hash(const char *s)
{
    size_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static bool index_init(struct url_index *x, int n)
{
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap *= 2;
    x->slot = calloc(cap, sizeof *x->slot);
    x->mask = cap - 1;
    return x->slot != NULL;
}

/* The index of url among urls, or -1; with add, a missing url is added as i. */
static int index_find(struct url_index *x, const char *url, const char *(*at)(const void *, int),
                      const void *arr, bool add, int i)
{
    for (size_t k = url_hash(url) & x->mask;; k = (k + 1) & x->mask) {
        int v = x->slot[k];
        if (v == 0) {
            if (add)
                x->slot[k] = i + 1;
            return -1;
        }
        pool_diff_compares++;
        if (strcmp(at(arr, v - 1), url) == 0)
            return v - 1;
    }
}

static const char *found_at(const void *arr, int i)
{
    return ((const struct pool_found *)arr)[i].url;
}

static const char *member_at(const void *arr, int i)
{
    return ((const struct pool_member *)arr)[i].url;
}

static void diff_member(const struct pool_member *m, enum pool_source src, int found_weight,
                        struct pool_next *n)
{
    enum pool_source was_shown = POOL_SOURCE_STATIC;
    int before = pool_member_weight(m->weight_by_source, &was_shown);

    memcpy(n->weight_by_source, m->weight_by_source, sizeof(n->weight_by_source));
    n->weight_by_source[src] = found_weight;
    n->shown = was_shown;
    n->weight = pool_member_weight(n->weight_by_source, &n->shown);
    if (n->weight == 0)
        n->fate = POOL_REMOVED;
    else
        n->fate = n->weight != before ? POOL_REWEIGHTED : POOL_KEPT;
}

int pool_diff_weighed(const struct pool_member *cur, int ncur, enum pool_source src,
                      const struct pool_found *found, int nfound, struct pool_next *next,
                      int *added, int *added_weight)
{
    struct url_index fx = {0}, cx = {0};
    int *best = NULL, nadded = -1;

    if (src < 0 || src >= POOL_SOURCES || ncur < 0 || nfound < 0 ||
        (ncur > 0 && (!cur || !next)) ||
        (nfound > 0 && (!found || !added)))
        return -1;
    for (int i = 0; i < nfound; i++) {
        if (!found[i].url)
            return -1;
    }
    best = calloc(nfound > 0 ? (size_t)nfound : 1, sizeof *best);
    if (!best || !index_init(&fx, nfound) || !index_init(&cx, ncur))
        goto out;
    /* best[first index of a URL]: the larger weight of its duplicates */
    for (int i = 0; i < nfound; i++) {
        int w = found[i].weight >= 1 ? found[i].weight : 1;
        int first = index_find(&fx, found[i].url, found_at, found, true, i);
        first = first < 0 ? i : first;
        if (w > best[first])
            best[first] = w;
    }
    for (int i = 0; i < ncur; i++) {
        int f = index_find(&fx, cur[i].url, found_at, found, false, 0);
        diff_member(&cur[i], src, f < 0 ? 0 : best[f], &next[i]);
        index_find(&cx, cur[i].url, member_at, cur, true, i);
    }
    nadded = 0;
    for (int i = 0; i < nfound; i++) {
        if (best[i] == 0 || index_find(&cx, found[i].url, member_at, cur, false, 0) >= 0)
            continue; /* a later duplicate, or in the pool */
        if (added_weight)
            added_weight[nadded] = best[i];
        added[nadded++] = i;
    }
out:
    free(best);
    free(fx.slot);
    free(cx.slot);
    return nadded;
}

int pool_diff(const struct pool_member *cur, int ncur, enum pool_source src,
              const struct pool_found *found, int nfound, struct pool_next *next, int *added)
{
    return pool_diff_weighed(cur, ncur, src, found, nfound, next, added, NULL);
}

/* ---- the log line -------------------------------------------------------------- */

struct change {
    const char *url;
    int weight;
};

static int compare_changes(const void *a, const void *b)
{
    return strcmp(((const struct change *)a)->url, ((const struct change *)b)->url);
}

/* Append changes[0..n) sorted by URL, as " <mark>url" (plus "=weight" for '~'). */
static void add_group(struct strbuf *out, struct change *changes, int n, char mark)
{
    char num[16];

    qsort(changes, (size_t)n, sizeof(*changes), compare_changes);
    for (int i = 0; i < n; i++) {
        strbuf_add(out, " ", 1);
        strbuf_add(out, &mark, 1);
        strbuf_puts(out, changes[i].url);
        if (mark == '~') {
            snprintf(num, sizeof num, "=%d", changes[i].weight);
            strbuf_puts(out, num);
        }
    }
}

/* The members of one fate, into changes; returns how many. */
static int collect(const struct pool_member *cur, int ncur, const struct pool_next *next,
                   enum pool_fate fate, struct change *changes)
{
    int n = 0;

    for (int i = 0; i < ncur; i++) {
        if (next[i].fate == fate) {
            changes[n].url = cur[i].url;
            changes[n++].weight = next[i].weight;
        }
    }
    return n;
}

int pool_diff_describe(struct strbuf *out, const char *service, const struct pool_member *cur,
                       int ncur, const struct pool_next *next, const struct pool_found *found,
                       const int *added, int nadded)
{
    struct change *changes;
    int n, total = nadded;

    for (int i = 0; i < ncur; i++)
        total += next[i].fate != POOL_KEPT;
    if (total == 0)
        return 0;
    changes = malloc((size_t)total * sizeof(*changes));
    if (!changes)
        return -1;
    strbuf_puts(out, service);
    strbuf_add(out, ":", 1);
    for (n = 0; n < nadded; n++) {
        changes[n].url = found[added[n]].url;
        changes[n].weight = 0;
    }
    add_group(out, changes, n, '+');
    n = collect(cur, ncur, next, POOL_REMOVED, changes);
    add_group(out, changes, n, '-');
    n = collect(cur, ncur, next, POOL_REWEIGHTED, changes);
    add_group(out, changes, n, '~');
    free(changes);
    return out->failed ? -1 : total;
}
