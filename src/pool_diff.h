/*
 * pool_diff.h - applying one source's newly discovered endpoint set to a pool
 * (SPEC 4.6): which endpoints stay, change weight, join or leave, and the
 * log line that says so.
 *
 * Pure: URLs and weights in, indices and fates out; the caller (runtime)
 * moves its endpoint structs (breaker, health, counters, in-flight calls)
 * accordingly.
 */
#ifndef AHOYD_POOL_DIFF_H
#define AHOYD_POOL_DIFF_H

#include "strbuf.h"

/* Where an endpoint comes from. The order is the precedence: when one URL
 * comes from several sources, the first of them is shown and gives the
 * weight. */
enum pool_source { POOL_SOURCE_STATIC = 0, POOL_SOURCE_ETCD, POOL_SOURCE_DNS, POOL_SOURCES };

const char *pool_source_name(enum pool_source s); /* "static", "etcd", "dns" */

/* One endpoint of the current pool: its weight as each source gives it. */
struct pool_member {
    const char *url;
    int weight_by_source[POOL_SOURCES]; /* 0: not from that source, else >= 1 */
};

/* One endpoint of a source's new set. */
struct pool_found {
    const char *url;
    int weight; /* < 1 counts as 1 */
};

enum pool_fate {
    POOL_KEPT = 0,   /* stays with the same effective weight */
    POOL_REWEIGHTED, /* stays, effective weight changed */
    POOL_REMOVED,    /* no source has it any more: drain and free */
};

/* What becomes of one current member. */
struct pool_next {
    int weight_by_source[POOL_SOURCES];
    enum pool_fate fate;
    int weight;             /* effective weight afterwards, 0 when removed */
    enum pool_source shown; /* the source shown afterwards (unchanged when removed) */
};

/* The effective weight of a member (that of its first source in precedence
 * order), 0 when no source has it; *shown gets that source when not NULL. */
int pool_member_weight(const int weight_by_source[POOL_SOURCES], enum pool_source *shown);

/*
 * Compare source src's new set with the pool. Fills next[0..ncur) (one per
 * current member, same order: only weight_by_source[src] changes, so the
 * other sources, static ones above all, keep their members) and
 * added[0..return) with the indices in found of the URLs new to the pool, in
 * found order. A URL listed twice in found is one endpoint with the larger
 * weight (added lists its first index). Returns the number added, or -1 on
 * bad arguments or out of memory. added must have room for nfound indices.
 */
int pool_diff(const struct pool_member *cur, int ncur, enum pool_source src,
              const struct pool_found *found, int nfound, struct pool_next *next, int *added);

/* pool_diff, and the weight of each URL added in added_weight[0..return) when not NULL
 * (room for nfound). -1 also when out of memory. */
int pool_diff_weighed(const struct pool_member *cur, int ncur, enum pool_source src,
                      const struct pool_found *found, int nfound, struct pool_next *next,
                      int *added, int *added_weight);

/* URL comparisons pool_diff has made so far (tests bound its cost with it). */
extern unsigned long pool_diff_compares;

/* The weight found gives a URL (the larger of duplicates), 0 if absent. */
int pool_found_weight(const struct pool_found *found, int nfound, const char *url);

/*
 * Append "service: +url ... -url ... ~url=weight ..." to out: added URLs,
 * then removed, then reweighted, each group in byte order of the URL.
 * Returns the number of changes listed (0: nothing appended), or -1 when out
 * of memory.
 */
int pool_diff_describe(struct strbuf *out, const char *service, const struct pool_member *cur,
                       int ncur, const struct pool_next *next, const struct pool_found *found,
                       const int *added, int nadded);

#endif
