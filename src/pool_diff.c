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
 * Matching is a linear scan: pools hold tens to a few hundred endpoints and
 * a change is rare next to calls.
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

static bool in_pool(const struct pool_member *cur, int ncur, const char *url)
{
    for (int i = 0; i < ncur; i++) {
        if (strcmp(cur[i].url, url) == 0)
            return true;
    }
    return false;
}

static bool seen_before(const struct pool_found *found, int i)
{
    for (int k = 0; k < i; k++) {
        if (strcmp(found[k].url, found[i].url) == 0)
            return true;
    }
    return false;
}

static void diff_member(const struct pool_member *m, enum pool_source src,
                        const struct pool_found *found, int nfound, struct pool_next *n)
{
    enum pool_source was_shown = POOL_SOURCE_STATIC;
    int before = pool_member_weight(m->weight_by_source, &was_shown);

    memcpy(n->weight_by_source, m->weight_by_source, sizeof(n->weight_by_source));
    n->weight_by_source[src] = pool_found_weight(found, nfound, m->url);
    n->shown = was_shown;
    n->weight = pool_member_weight(n->weight_by_source, &n->shown);
    if (n->weight == 0)
        n->fate = POOL_REMOVED;
    else
        n->fate = n->weight != before ? POOL_REWEIGHTED : POOL_KEPT;
}

int pool_diff(const struct pool_member *cur, int ncur, enum pool_source src,
              const struct pool_found *found, int nfound, struct pool_next *next, int *added)
{
    int nadded = 0;

    if (src < 0 || src >= POOL_SOURCES || ncur < 0 || nfound < 0 ||
        (ncur > 0 && (!cur || !next)) ||
        (nfound > 0 && (!found || !added)))
        return -1;
    for (int i = 0; i < nfound; i++) {
        if (!found[i].url)
            return -1;
    }
    for (int i = 0; i < ncur; i++)
        diff_member(&cur[i], src, found, nfound, &next[i]);
    for (int i = 0; i < nfound; i++) {
        if (!in_pool(cur, ncur, found[i].url) && !seen_before(found, i))
            added[nadded++] = i;
    }
    return nadded;
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
