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
 */
#include <stdio.h>
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

#define SV(field) offsetof(struct service_conf, field)

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
