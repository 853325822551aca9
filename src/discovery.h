/*
 * discovery.h - the sources that find a service's endpoints at run time: DNS
 * (dns.c, c-ares on the loop) and etcd (etcd.c, the v3 JSON gateway on
 * libcurl). Each source follows one name or one prefix and reports the whole
 * set it found, every time it has an answer, through one callback; what the
 * set does to a pool (pool_diff.h) is the caller's business.
 *
 * The configuration structs are plain data filled by the config layer; a
 * source copies what it needs, so they may be freed once the source exists.
 * A source belongs to one loop and is used from that loop's thread only.
 */
#ifndef AHOYD_DISCOVERY_H
#define AHOYD_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "pool_diff.h"

struct tls_conf;

/*
 * What a source reports, on its loop, holding the state lock:
 * - error == NULL: a good answer; found[0..n) is the whole set now (n == 0: the name
 *   has no records, NXDOMAIN, or the prefix has no keys: the source is empty). Sent
 *   after every successful lookup (DNS: every refresh, changed or not; etcd: the
 *   first range, every change, and each time a watch is established again), so the
 *   time of the last good answer is the time of the last call with error == NULL.
 * - error != NULL: the lookup failed (timeout, SERVFAIL, refused, etcd down, a
 *   broken watch); found is NULL and n is 0. The caller keeps the last good set;
 *   error says why (e.g. "dns _http._tcp.svc: SRV lookup failed: Connection
 *   refused"). The source retries by itself with backoff.
 * found, its strings and error are valid during the call only. The callback must
 * not free the source that calls it.
 */
typedef void (*discovery_cb)(void *arg, enum pool_source src, const struct pool_found *found, int n,
                             const char *error);

/* Backoff after a failure: 1 s, doubled after each further failure, capped (DNS: at
 * the refresh interval; etcd: DISCOVERY_BACKOFF_MAX_MS). A success resets it. */
#define DISCOVERY_BACKOFF_MIN_MS 1000
#define DISCOVERY_BACKOFF_MAX_MS 10000

/* ---- DNS ----------------------------------------------------------------------- */

enum dns_record_type { DNS_TYPE_A = 0, DNS_TYPE_AAAA, DNS_TYPE_SRV };

struct dns_source_conf {
    const char *name; /* the name looked up (SRV: "_http._tcp.orders.example") */
    enum dns_record_type type;
    int port;              /* A/AAAA: required, 1..65535; SRV: unused (records say) */
    const char *scheme;    /* "http" or "https"; NULL = "http" */
    const char *base_path; /* appended to every URL; NULL or "" = none */
    int64_t refresh_ms;    /* re-resolved this often, sooner when a TTL is shorter,
                              never more often than once a second; <= 0 = 5 s */
    const char *server;    /* "127.0.0.1:5353" (also "[::1]:53", port optional); the
                              name is then absolute (no search domains); NULL = the
                              system's servers and search list (/etc/resolv.conf) */
};

struct dns_source;

/* Start following conf->name: the first lookup is sent at once. NULL on bad
 * configuration or when c-ares cannot start, with the reason in err. */
struct dns_source *dns_source_new(struct loop *loop, const struct dns_source_conf *conf,
                                  discovery_cb cb, void *arg, char *err, size_t errsize);
/* Stop: pending lookups are cancelled, the callback is not called again. NULL is fine. */
void dns_source_free(struct dns_source *s);

/* ---- etcd ---------------------------------------------------------------------- */

struct etcd_source_conf {
    const char *const *endpoints; /* "http://10.0.0.1:2379" ...: tried in turn, a failed
                                     one makes the next attempt use the next one */
    size_t n_endpoints;
    const char *prefix;         /* every key under it is one endpoint (etcd_parse_endpoint) */
    const char *username;       /* NULL: no etcd authentication */
    const char *password;       /* with username (the config layer reads the password file) */
    const struct tls_conf *tls; /* for https endpoints; NULL = verify with the system's
                                   CAs; must outlive the source (not copied) */
};

struct etcd_source;

/* Start following conf->prefix: authenticate (when a username is set), range, then
 * watch from the range's revision; after a break the watch resumes from the last
 * revision seen + 1, after a compaction the prefix is ranged again. A key whose
 * value is not a valid endpoint is left out (logged). NULL on bad configuration. */
struct etcd_source *etcd_source_new(struct loop *loop, const struct etcd_source_conf *conf,
                                    discovery_cb cb, void *arg, char *err, size_t errsize);
void etcd_source_free(struct etcd_source *s);

#endif
