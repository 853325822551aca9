/*
 * dnsanswer.c - turning a DNS answer into pool endpoints (SPEC 4.6).
 *
 * SRV records follow RFC 2782: only the lowest priority level that yields an
 * endpoint is used, and a level that yields none (its targets have no
 * address, are "." or name port 0) gives way to the next one, so a dead data
 * centre listed first does not empty the pool. The SRV weight becomes the
 * load-balancing weight (0 counts as 1) instead of RFC 2782's weighted pick
 * of one target: the balancer spreads calls over all of them by weight.
 *
 * Pure: plain records in, plain endpoints out; the resolver owns the memory.
 */
#include "dnsanswer.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool record_usable(const struct dnsanswer_srv *r)
{
    return r->port >= 1 && r->port <= 65535 && r->n_addrs > 0 && r->addrs &&
           !(r->target && strcmp(r->target, ".") == 0);
}

/* The lowest priority among the usable records, or -1. */
static int lowest_usable_priority(const struct dnsanswer_srv *recs, int n)
{
    int best = -1;

    for (int i = 0; i < n; i++) {
        if (record_usable(&recs[i]) && (best < 0 || recs[i].priority < best))
            best = recs[i].priority;
    }
    return best;
}

/* Index in out[0..count) of (addr, port), or -1. */
static int find_endpoint(const struct dnsanswer_endpoint *out, int count, const char *addr,
                         int port)
{
    for (int i = 0; i < count; i++) {
        if (out[i].port == port && strcmp(out[i].addr, addr) == 0)
            return i;
    }
    return -1;
}

/* Duplicates are found among the endpoints written so far, so the count is
 * exact only when everything fits; when it does not, the caller grows out
 * to the returned count and asks again, which then finds every duplicate. */
int dnsanswer_srv_select(const struct dnsanswer_srv *recs, int n, struct dnsanswer_endpoint *out,
                         int max, int *priority)
{
    int level = recs ? lowest_usable_priority(recs, n) : -1;
    int count = 0;

    if (priority)
        *priority = level;
    if (level < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        const struct dnsanswer_srv *r = &recs[i];
        int weight = r->weight >= 1 ? r->weight : 1;

        if (r->priority != level || !record_usable(r))
            continue;
        for (int k = 0; k < r->n_addrs; k++) {
            int at = find_endpoint(out, count < max ? count : max, r->addrs[k], r->port);

            if (!r->addrs[k] || r->addrs[k][0] == '\0')
                continue;
            if (at >= 0) {
                out[at].weight += weight;
                continue;
            }
            if (count < max) {
                out[count].addr = r->addrs[k];
                out[count].port = r->port;
                out[count].weight = weight;
            }
            count++;
        }
    }
    return count;
}

int dnsanswer_url(char *buf, size_t size, const char *scheme, const char *addr, int port,
                  const char *base_path)
{
    bool v6;
    const char *slash;
    int len;

    if (!buf || !scheme || !addr || addr[0] == '\0' || port < 1 ||
        port > 65535)
        return -1;
    if (!base_path)
        base_path = "";
    v6 = strchr(addr, ':') != NULL;
    slash = base_path[0] != '\0' && base_path[0] != '/' ? "/" : "";
    len = snprintf(buf, size, "%s://%s%s%s:%d%s%s", scheme, v6 ? "[" : "", addr, v6 ? "]" : "",
                   port, slash, base_path);
    if (len < 0 || (size_t)len >= size)
        return -1;
    return len;
}

int64_t dnsanswer_next_refresh_ms(int64_t refresh_ms, const uint32_t *ttls, int n)
{
    int64_t next = refresh_ms;

    for (int i = 0; ttls && i < n; i++) {
        int64_t ttl_ms = (int64_t)ttls[i] * 1000;
        if (ttl_ms < next)
            next = ttl_ms;
    }
    return next < DNSANSWER_MIN_REFRESH_MS ? DNSANSWER_MIN_REFRESH_MS : next;
}
