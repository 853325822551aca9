/*
 * config_fleet.c - the keys that keep a pool healthy: health-check and
 * outlier (each a boolean or a map of its keys, like retry's budget), with
 * the checks' path, expected statuses and headers.
 *
 * `health-check` is off unless given, and a map must name its `path` (there
 * is no sensible default path); `health-check: true` is an error for that
 * reason. `outlier` is off unless given; `outlier: true` turns it on with the
 * defaults of its keys. panic-threshold and slow-start are plain rows of
 * the service table (config_schema.c).
 *
 * `discovery` holds a `dns` map, an `etcd` map or both, each turned on by
 * being there; what each needs (a name, a port for a/aaaa, etcd's endpoints
 * and prefix, a password file beside a username) is checked once its keys
 * are read, at the map's position.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "strbuf.h"
#include "units.h"

static void read_health_check(struct ctx *c, const struct key *k, struct node *svc, struct sect *s,
                              struct dnode *d)
{
    struct service_conf *sc = s->dst;
    (void)d;
    cfg_read_switch_map(c, k, svc, s, false, "off or a map {path, interval, timeout, ...}");
    struct node *n = node_get(svc, k->name);
    if (sc->health.enabled && !sc->health_path && n && n->kind == N_MAP &&
        node_get(n, "path") == NULL)
        cfg_err(c, n, k->name, "a health check needs a path (e.g. path: /healthz)");
}

static void read_outlier(struct ctx *c, const struct key *k, struct node *svc, struct sect *s,
                         struct dnode *d)
{
    (void)d;
    cfg_read_switch_map(c, k, svc, s, true,
                        "true, off or a map {consecutive-failures, base-ejection-time, "
                        "max-ejection-percent}");
}

/* The check's path: sent as written, so it must be an origin-form path. */
static void read_health_path(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                             struct dnode *d)
{
    const char *v = NULL, *at = NULL;
    (void)d;
    struct node *n = cfg_read_string(c, map, k->name, &v, &at);
    if (!at)
        return;
    if (v[0] != '/') {
        cfg_err(c, n, k->name, "the health-check path must start with '/', got '%s'",
                cfg_show(c, v));
        return;
    }
    for (const char *p = v; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '#') {
            cfg_err(c, n, k->name,
                    "the health-check path may not hold spaces, control characters or '#'");
            return;
        }
    }
    cfg_store_string(s, k, v, at);
}

static void read_health_expect(struct ctx *c, const struct key *k, struct node *map,
                               struct sect *s, struct dnode *d)
{
    const char *v = NULL, *at = NULL;
    char why[160];
    struct health_expect e;
    (void)d;
    struct node *n = cfg_read_string(c, map, k->name, &v, &at);
    if (!at)
        return;
    if (health_expect_parse(v, &e, why, sizeof why) != 0) {
        cfg_err(c, n, k->name, "%s", why);
        return;
    }
    memcpy(schema_field(s, k), &e, sizeof e);
    schema_set_origin(s, k, at);
}

static void dump_health_expect(struct ctx *c, const struct key *k, const struct sect *s,
                               struct dnode *d)
{
    const struct health_expect *e = schema_field(s, k);
    struct strbuf b = {0};
    strbuf_add(&b, "", 0);
    for (int i = 0; i < e->n; i++) {
        char item[32];
        if (e->ranges[i].lo == e->ranges[i].hi)
            snprintf(item, sizeof item, "%s%d", i ? "," : "", e->ranges[i].lo);
        else
            snprintf(item, sizeof item, "%s%d-%d", i ? "," : "", e->ranges[i].lo,
                     e->ranges[i].hi);
        strbuf_puts(&b, item);
    }
    dump_leaf(c, d, k->name, dump_str(c, b.s), schema_origin(s, k));
    free(b.s);
}

static void read_health_headers(struct ctx *c, const struct key *k, struct node *map,
                                struct sect *s, struct dnode *d)
{
    struct service_conf *sc = s->dst;
    struct node *h = node_get(map, k->name);
    (void)d;
    if (!h || h->is_null || h->broken)
        return;
    if (cfg_read_header_map(c, h, k->name, &sc->health_headers, &sc->n_health_headers, NULL))
        schema_set_origin(s, k, cfg_origin(c, h));
}

static void dump_health_headers(struct ctx *c, const struct key *k, const struct sect *s,
                                struct dnode *d)
{
    const struct service_conf *sc = s->dst;
    if (!d)
        return;
    const char *at = schema_origin(s, k);
    if (sc->n_health_headers == 0) {
        dump_add(c, d, D_MAP, k->name, NULL, at);
        return;
    }
    struct dnode *dh = dump_map(c, d, k->name, at);
    for (size_t i = 0; i < sc->n_health_headers; i++) {
        const struct header_conf *h = &sc->health_headers[i];
        dump_leaf(c, dh, dump_str(c, h->name),
                  cfg_header_is_secret(h->name) ? "\"<redacted>\"" : dump_str(c, h->value), at);
    }
}

const struct key_type type_health_check = {read_health_check, dump_switch_map};
const struct key_type type_outlier = {read_outlier, dump_switch_map};
const struct key_type type_health_path = {read_health_path, dump_string_row};
const struct key_type type_health_expect = {read_health_expect, dump_health_expect};
const struct key_type type_health_headers = {read_health_headers, dump_health_headers};

/* ---- discovery ------------------------------------------------------------------------ */

/* A DNS server: an IPv4 or IPv6 address, the port optional ("127.0.0.1:5353",
 * "[::1]:53", "::1"). */
static bool dns_server_ok(const char *v)
{
    char host[64];
    const char *port = NULL;
    unsigned char addr[16];
    if (v[0] == '[') {
        const char *end = strchr(v, ']');
        if (!end || (size_t)(end - v - 1) >= sizeof host)
            return false;
        memcpy(host, v + 1, (size_t)(end - v - 1));
        host[end - v - 1] = '\0';
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return false;
        if (inet_pton(AF_INET6, host, addr) != 1)
            return false;
    } else if (inet_pton(AF_INET6, v, addr) == 1) {
        return true;
    } else {
        const char *colon = strchr(v, ':');
        size_t n = colon ? (size_t)(colon - v) : strlen(v);
        if (n >= sizeof host)
            return false;
        memcpy(host, v, n);
        host[n] = '\0';
        port = colon ? colon + 1 : NULL;
        if (inet_pton(AF_INET, host, addr) != 1)
            return false;
    }
    if (!port)
        return true;
    int64_t p;
    return units_parse_int(port, 1, 65535, &p) == 0;
}

static void read_dns(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                     struct dnode *d)
{
    struct service_conf *sc = s->dst;
    struct node *n = cfg_section(c, map, k->name, k->sub);
    if (!n)
        return;
    sc->dns.enabled = true;
    schema_set_origin(s, k, cfg_origin(c, n));
    schema_walk(c, k->sub, n, s, dump_map(c, d, k->name, NULL), true);
    if (!sc->dns.name)
        cfg_err(c, n, k->name, "a DNS discovery needs a name");
    else if (sc->dns.type != DNS_DISCOVERY_SRV && sc->dns.port == 0 && !node_get(n, "port"))
        cfg_err(c, n, k->name, "type %s needs a port (the records give none)",
                sc->dns.type == DNS_DISCOVERY_A ? "a" : "aaaa");
    struct node *bp = node_get(n, "base-path");
    if (sc->dns.base_path && sc->dns.base_path[0] != '/')
        cfg_err(c, bp, "base-path", "must start with '/', got '%s'",
                cfg_show(c, sc->dns.base_path));
    struct node *sv = node_get(n, "server");
    if (sc->dns.server && !dns_server_ok(sc->dns.server))
        cfg_err(c, sv, "server", "expected an IP address with an optional port "
                "(127.0.0.1:5353, [::1]:53), got '%s'", cfg_show(c, sc->dns.server));
}

/* etcd's endpoints: a list of http:// or https:// URLs. */
static void read_etcd_endpoints(struct ctx *c, const struct key *k, struct node *map,
                                struct sect *s, struct dnode *d)
{
    struct service_conf *sc = s->dst;
    struct node *n = node_get(map, k->name);
    struct items it;
    if (!n || !cfg_list_items(c, n, k->name, false, &it))
        return;
    struct strbuf b = {0};
    strbuf_puts(&b, "[");
    for (size_t i = 0; i < sc->etcd.n_endpoints; i++)
        free(sc->etcd.endpoints[i]);
    free(sc->etcd.endpoints);
    sc->etcd.endpoints = xcalloc(it.n + 1, sizeof(char *));
    sc->etcd.n_endpoints = 0;
    for (size_t i = 0; i < it.n; i++) {
        struct endpoint_conf e;
        const char *why = NULL;
        if (!cfg_parse_url(it.v[i].text, &e, &why)) {
            cfg_err_at(c, &it.v[i].src, k->name, "bad URL '%s': %s", cfg_show(c, it.v[i].text),
                       why);
            continue;
        }
        cfg_endpoint_clear(&e);
        sc->etcd.endpoints[sc->etcd.n_endpoints++] = xstrdup(it.v[i].text);
        if (c->dump) {
            strbuf_puts(&b, sc->etcd.n_endpoints > 1 ? ", " : "");
            strbuf_puts(&b, dump_str(c, it.v[i].text));
        }
    }
    strbuf_puts(&b, "]");
    schema_set_origin(s, k, cfg_origin(c, n));
    dump_leaf(c, d, k->name, arena_strdup(&c->a, b.s), cfg_origin(c, n));
    free(b.s);
}

static void read_etcd(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                      struct dnode *d)
{
    struct service_conf *sc = s->dst;
    struct node *n = cfg_section(c, map, k->name, k->sub);
    if (!n)
        return;
    sc->etcd.enabled = true;
    schema_set_origin(s, k, cfg_origin(c, n));
    schema_walk(c, k->sub, n, s, dump_map(c, d, k->name, NULL), true);
    if (!node_get(n, "endpoints"))
        cfg_err(c, n, k->name, "an etcd discovery needs endpoints (e.g. [http://127.0.0.1:2379])");
    else if (sc->etcd.n_endpoints == 0 && node_get(n, "endpoints")->kind == N_SEQ &&
             node_get(n, "endpoints")->n == 0)
        cfg_err(c, node_get(n, "endpoints"), "endpoints", "the list is empty");
    if (!sc->etcd.prefix)
        cfg_err(c, n, k->name, "an etcd discovery needs a prefix (e.g. /services/orders/)");
    struct node *pf = node_get(n, "password-file");
    if (sc->etcd.username && !sc->etcd.password_file)
        cfg_err(c, node_get(n, "username"), "username", "a username needs a password-file");
    else if (!sc->etcd.username && sc->etcd.password_file)
        cfg_err(c, pf, "password-file", "a password-file needs a username");
    else if (sc->etcd.password_file)
        sc->etcd.password =
            cfg_read_secret_file(c, pf, "password-file", sc->etcd.password_file, "password file");
}

/* discovery: a map of its sources, at least one of them. */
static void read_discovery(struct ctx *c, const struct key *k, struct node *svc, struct sect *s,
                           struct dnode *d)
{
    struct node *n = cfg_section(c, svc, k->name, k->sub);
    if (!n)
        return;
    if (!node_get(n, "dns") && !node_get(n, "etcd"))
        cfg_err(c, n, k->name, "expected a map with dns, etcd or both");
    schema_walk(c, k->sub, n, s, dump_map(c, d, k->name, NULL), false);
}

const struct key_type type_discovery = {read_discovery, NULL};
static const struct key_type type_dns = {read_dns, NULL};
static const struct key_type type_etcd = {read_etcd, NULL};
static const struct key_type type_etcd_endpoints = {read_etcd_endpoints, NULL};

#define SV(field) offsetof(struct service_conf, field)

static const char *const dns_type_list[] = {"a", "aaaa", "srv"};
static const char *const scheme_list[] = {"http", "https"};
static const struct enum_names dns_type_names = {dns_type_list, 3};
static const struct enum_names scheme_names = {scheme_list, 2};

static const struct key schema_dns[] = {
    {"name", KD_SCALAR, &type_string, SV(dns.name), 0, 0, NULL, NULL, NULL},
    {"type", KD_SCALAR, &type_enum, SV(dns.type), 0, 0, "a", NULL, &dns_type_names},
    {"port", KD_SCALAR, &type_int, SV(dns.port), 0, 65535, "0", NULL, NULL},
    {"scheme", KD_SCALAR, &type_enum, SV(dns.scheme), 0, 0, "http", NULL, &scheme_names},
    {"base-path", KD_SCALAR, &type_string, SV(dns.base_path), 0, 0, "", NULL, NULL},
    {"refresh", KD_SCALAR, &type_duration, SV(dns.refresh_ms), 1, 0, "5s", NULL, NULL},
    {"server", KD_SCALAR, &type_string, SV(dns.server), 0, 0, "", NULL, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_etcd_tls[] = {
    {"verify", KD_SCALAR, &type_bool, SV(etcd.tls.verify), 0, 0, "true", NULL, NULL},
    {"ca-file", KD_SCALAR, &type_path, SV(etcd.tls.ca_file), 0, 0, "", NULL, NULL},
    {"cert-file", KD_SCALAR, &type_path, SV(etcd.tls.cert_file), 0, 0, "", NULL, NULL},
    {"key-file", KD_SCALAR, &type_path, SV(etcd.tls.key_file), 0, 0, "", NULL, NULL},
    {"server-name", KD_SCALAR, &type_string, SV(etcd.tls.server_name), 0, 0, "", NULL, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_etcd[] = {
    {"endpoints", KD_LIST, &type_etcd_endpoints, SV(etcd.endpoints), 0, 0, NULL, NULL, NULL},
    {"prefix", KD_SCALAR, &type_string, SV(etcd.prefix), 0, 0, NULL, NULL, NULL},
    {"username", KD_SCALAR, &type_string, SV(etcd.username), 0, 0, NULL, NULL, NULL},
    {"password-file", KD_SCALAR, &type_path, SV(etcd.password_file), 0, 0, NULL, NULL, NULL},
    {"tls", KD_MAP, &type_section, 0, 0, 0, NULL, schema_etcd_tls, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

const struct key schema_discovery[] = {
    {"dns", KD_MAP, &type_dns, SV(dns.enabled), 0, 0, NULL, schema_dns, NULL},
    {"etcd", KD_MAP, &type_etcd, SV(etcd.enabled), 0, 0, NULL, schema_etcd, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};


/* Rows: name, how given, type, field, min, max, default, sub-table, arg. */
const struct key schema_health[] = {
    {"path", KD_SCALAR, &type_health_path, SV(health_path), 0, 0, NULL, NULL, NULL},
    {"interval", KD_SCALAR, &type_duration, SV(health.interval_ms), 1, 0, "5s", NULL, NULL},
    {"timeout", KD_SCALAR, &type_duration, SV(health.timeout_ms), 1, 0, "1s", NULL, NULL},
    {"healthy-threshold", KD_SCALAR, &type_int32, SV(health.healthy_threshold), 1, 1000, "2",
     NULL, NULL},
    {"unhealthy-threshold", KD_SCALAR, &type_int32, SV(health.unhealthy_threshold), 1, 1000, "3",
     NULL, NULL},
    {"expect", KD_SCALAR, &type_health_expect, SV(health.expect), 0, 0, "200-399", NULL, NULL},
    {"headers", KD_NOENV, &type_health_headers, SV(health_headers), 0, 0, NULL, NULL, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

const struct key schema_outlier[] = {
    {"consecutive-failures", KD_SCALAR, &type_int32, SV(outlier.consecutive_failures), 1,
     1000000, "5", NULL, NULL},
    {"base-ejection-time", KD_SCALAR, &type_duration, SV(outlier.base_ejection_ms), 1, 0, "30s",
     NULL, NULL},
    {"max-ejection-percent", KD_SCALAR, &type_percent, SV(outlier.max_ejection_percent), 0, 100,
     "50%", NULL, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

/* ---- telling a changed block at a reload ---- */

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

bool config_dns_same(const struct dns_discovery_conf *a, const struct dns_discovery_conf *b)
{
    return same_str(a->name, b->name) && a->type == b->type && a->port == b->port &&
           a->scheme == b->scheme && same_str(a->base_path, b->base_path) &&
           a->refresh_ms == b->refresh_ms && same_str(a->server, b->server);
}

bool config_etcd_same(const struct etcd_discovery_conf *a,
                           const struct etcd_discovery_conf *b)
{
    if (a->n_endpoints != b->n_endpoints)
        return false;
    for (size_t i = 0; i < a->n_endpoints; i++)
        if (!same_str(a->endpoints[i], b->endpoints[i]))
            return false;
    return same_str(a->prefix, b->prefix) && same_str(a->username, b->username) &&
           same_str(a->password, b->password) && a->tls.verify == b->tls.verify &&
           same_str(a->tls.ca_file, b->tls.ca_file) &&
           same_str(a->tls.cert_file, b->tls.cert_file) &&
           same_str(a->tls.key_file, b->tls.key_file) &&
           same_str(a->tls.server_name, b->tls.server_name);
}
