/*
 * dnsanswer.h - what a DNS answer means for a pool (SPEC 4.6): the RFC 2782
 * choice among SRV records, the endpoint URL of an address, and when to ask
 * again.
 *
 * Pure: the resolver (c-ares, on the loop) fills plain records; nothing here
 * reads the clock or the network.
 */
#ifndef AHOYD_DNSANSWER_H
#define AHOYD_DNSANSWER_H

#include <stddef.h>
#include <stdint.h>

/* One SRV record with its target's A/AAAA addresses, as numeric text. */
struct dnsanswer_srv {
    int priority;             /* 0..65535, lower is preferred */
    int weight;               /* 0..65535, 0 counts as 1 */
    int port;                 /* 0 = unusable */
    const char *target;       /* "." = no service at this record */
    const char *const *addrs; /* "10.0.0.7", "fd00::7" */
    int n_addrs;
};

/* One endpoint of the chosen level; addr points into the records. */
struct dnsanswer_endpoint {
    const char *addr;
    int port;
    int weight; /* >= 1 */
};

/*
 * RFC 2782 selection: the endpoints are every (address, port) of the lowest
 * priority level that has at least one usable endpoint (a level whose targets
 * resolve to nothing, are "." or have port 0 falls through to the next). Each
 * address of a target gets the target's weight; an (address, port) reached
 * through two targets of the level is one endpoint with the weights added.
 * Writes at most max endpoints (in record order, then address order) and
 * returns how many the level has (like snprintf: more than max means out was
 * too small); 0 when no level is usable. *priority gets the chosen level
 * (-1 if none) when not NULL.
 */
int dnsanswer_srv_select(const struct dnsanswer_srv *recs, int n, struct dnsanswer_endpoint *out,
                         int max, int *priority);

/*
 * scheme://addr:port/base-path, IPv6 addresses in brackets, base_path given
 * a leading '/' when it lacks one ("" adds nothing). Returns the length, or
 * -1 when it does not fit in size or an argument is invalid (port outside
 * 1..65535, empty address).
 */
int dnsanswer_url(char *buf, size_t size, const char *scheme, const char *addr, int port,
                  const char *base_path);

/*
 * When to resolve again: refresh_ms, or sooner when the answer's shortest TTL
 * is shorter, never sooner than DNSANSWER_MIN_REFRESH_MS. ttls are seconds.
 */
#define DNSANSWER_MIN_REFRESH_MS 1000
int64_t dnsanswer_next_refresh_ms(int64_t refresh_ms, const uint32_t *ttls, int n);

#endif
