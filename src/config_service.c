/*
 * config_service.c - services and their policies.
 *
 * A service's policy is the global `pyfly.client.*` values, overlaid by its
 * own `retry` / `circuit-breaker` value (a map, a boolean or, for retry, a
 * count), then by its shortcut keys; setting one field twice at service level
 * (a map key and its shortcut), or a shortcut beside `retry: false` /
 * `circuit-breaker: false`, is an error. Endpoints, headers, methods and TLS
 * settings are checked here too.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strbuf.h"
#include "config_int.h"
#include "units.h"
#include "template.h"

/* The SPEC 2.1 defaults (retry.c), every field marked as coming from the default. */
void cfg_retry_defaults(struct retry_policy *p, struct retry_prov *pv)
{
    retry_policy_defaults(p);
    pv->max_attempts = pv->base_delay = pv->max_delay = pv->jitter = pv->retry_on =
        pv->non_idempotent = pv->honor_retry_after = pv->budget = pv->ratio = pv->min_per_second =
            "default";
}

void cfg_breaker_defaults(struct breaker_policy *p, struct breaker_prov *pv)
{
    p->enabled = true;
    p->failure_threshold = 5;
    p->recovery_timeout_ms = 30000;
    p->half_open_max_calls = 1;
    pv->enabled = pv->failure_threshold = pv->recovery_timeout = pv->half_open_max_calls =
        "default";
}

static const char *const cfg_jitter_names[] = {"none", "full", "equal"};

static const char *const cfg_lb_names[] = {"round-robin", "random", "least-request"};

static void rd_retry_on(struct ctx *c, struct node *map, struct retry_policy *p,
                        struct retry_prov *pv)
{
    struct node *n = node_get(map, "retry-on");
    struct items it;
    if (n == NULL || !cfg_list_items(c, n, "retry-on", false, &it))
        return;
    unsigned flags = 0;
    uint64_t st[RETRY_STATUS_WORDS] = {0};
    bool ok = true;
    for (size_t i = 0; i < it.n; i++) {
        const char *t = it.v[i].text;
        int64_t code;
        unsigned flag = retry_on_flag(t);
        if (flag)
            flags |= flag;
        else if (units_parse_int(t, 100, 599, &code) == 0)
            st[code / 64] |= UINT64_C(1) << (code % 64);
        else {
            cfg_err_at(c, &it.v[i].src, "retry-on",
                       "unknown entry '%s' (expected connect-failure, reset, timeout, a status "
                       "100-599, 5xx or gateway-error)",
                       cfg_show(c, t));
            ok = false;
        }
    }
    if (!ok)
        return;
    p->retry_on = flags;
    memcpy(p->retry_on_status, st, sizeof(st));
    pv->retry_on = cfg_origin(c, n);
}

static void rd_budget(struct ctx *c, struct node *map, struct retry_policy *p,
                      struct retry_prov *pv)
{
    struct node *n = node_get(map, "budget");
    bool b;
    if (n == NULL || n->broken)
        return;
    if (n->kind == N_SCALAR && !n->is_null && units_parse_bool(n->text, &b) == 0) {
        p->budget_enabled = b;
        pv->budget = cfg_origin(c, n);
        return;
    }
    if (n->kind != N_MAP) {
        cfg_err(c, n, "budget", "expected off or a map {ratio, min-per-second}, got %s",
                n->kind == N_SCALAR ? arena_printf(&c->a, "'%s'", cfg_show(c, n->text))
                                    : node_kind_name(n));
        return;
    }
    cfg_check_keys(c, n, schema_budget);
    p->budget_enabled = true;
    pv->budget = cfg_origin(c, n);
    cfg_read_number(c, n, "ratio", &p->budget_ratio, &pv->ratio);
    cfg_read_number(c, n, "min-per-second", &p->budget_min_per_second, &pv->min_per_second);
}

/* The keys of a retry map over an inherited policy. */
void cfg_read_retry(struct ctx *c, struct node *map, struct retry_policy *p, struct retry_prov *pv)
{
    cfg_read_int32(c, map, "max-attempts", 1, 1000, &p->max_attempts, &pv->max_attempts);
    cfg_read_duration(c, map, "base-delay", false, &p->base_delay_ms, &pv->base_delay);
    cfg_read_duration(c, map, "max-delay", false, &p->max_delay_ms, &pv->max_delay);
    int j = (int)p->jitter;
    cfg_read_enum(c, map, "jitter", cfg_jitter_names, 3, &j, &pv->jitter);
    p->jitter = (enum jitter_mode)j;
    rd_retry_on(c, map, p, pv);
    cfg_read_bool(c, map, "retry-non-idempotent", &p->retry_non_idempotent, &pv->non_idempotent);
    cfg_read_bool(c, map, "honor-retry-after", &p->honor_retry_after, &pv->honor_retry_after);
    rd_budget(c, map, p, pv);
}

void cfg_read_breaker(struct ctx *c, struct node *map, struct breaker_policy *p,
                      struct breaker_prov *pv)
{
    cfg_read_int32(c, map, "failure-threshold", 1, 1000000, &p->failure_threshold,
                   &pv->failure_threshold);
    cfg_read_duration(c, map, "recovery-timeout", false, &p->recovery_timeout_ms,
                      &pv->recovery_timeout);
    cfg_read_int32(c, map, "half-open-max-calls", 1, 1000000, &p->half_open_max_calls,
                   &pv->half_open_max_calls);
}

struct retry_on_list {
    struct strbuf *b;
    bool first;
};

static void retry_on_append(void *arg, const char *entry)
{
    struct retry_on_list *l = arg;
    strbuf_puts(l->b, l->first ? "" : ", ");
    strbuf_puts(l->b, entry);
    l->first = false;
}

static void dump_retry_on(struct ctx *c, struct dnode *d, const struct retry_policy *p,
                          const char *prov)
{
    if (d == NULL)
        return;
    struct strbuf b = {0};
    strbuf_puts(&b, "[");
    struct retry_on_list l = {&b, true};
    retry_on_each(p, retry_on_append, &l);
    strbuf_puts(&b, "]");
    dump_leaf(c, d, "retry-on", arena_strdup(&c->a, b.s), prov);
    free(b.s);
}

void cfg_dump_retry(struct ctx *c, struct dnode *d, const struct retry_policy *p,
                    const struct retry_prov *pv)
{
    if (d == NULL)
        return;
    dump_leaf(c, d, "max-attempts", dump_int(c, p->max_attempts), pv->max_attempts);
    dump_leaf(c, d, "base-delay", dump_duration(c, p->base_delay_ms), pv->base_delay);
    dump_leaf(c, d, "max-delay", dump_duration(c, p->max_delay_ms), pv->max_delay);
    dump_leaf(c, d, "jitter", cfg_jitter_names[p->jitter], pv->jitter);
    dump_retry_on(c, d, p, pv->retry_on);
    dump_leaf(c, d, "retry-non-idempotent", p->retry_non_idempotent ? "true" : "false",
              pv->non_idempotent);
    dump_leaf(c, d, "honor-retry-after", p->honor_retry_after ? "true" : "false",
              pv->honor_retry_after);
    if (!p->budget_enabled) {
        dump_leaf(c, d, "budget", "off", pv->budget);
        return;
    }
    struct dnode *b = dump_map(c, d, "budget", NULL);
    dump_leaf(c, b, "ratio", dump_float(c, p->budget_ratio), pv->ratio);
    dump_leaf(c, b, "min-per-second", dump_float(c, p->budget_min_per_second), pv->min_per_second);
}

void cfg_dump_breaker(struct ctx *c, struct dnode *d, const struct breaker_policy *p,
                      const struct breaker_prov *pv)
{
    dump_leaf(c, d, "failure-threshold", dump_int(c, p->failure_threshold), pv->failure_threshold);
    dump_leaf(c, d, "recovery-timeout", dump_duration(c, p->recovery_timeout_ms),
              pv->recovery_timeout);
    dump_leaf(c, d, "half-open-max-calls", dump_int(c, p->half_open_max_calls),
              pv->half_open_max_calls);
}

static bool service_name_ok(const char *s)
{
    if (!(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '_' && *p != '-')
            return false;
    return true;
}

static bool token_ok(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL)
            return false;
    return true;
}

static bool header_is_secret(const char *name)
{
    size_t n = strlen(name);
    return strcasecmp(name, "authorization") == 0 || strcasecmp(name, "cookie") == 0 ||
           (n >= 6 && strcasecmp(name + n - 6, "-token") == 0) ||
           (n >= 4 && strcasecmp(name + n - 4, "-key") == 0);
}

static void conv_endpoints(struct ctx *c, struct service_conf *s, struct node *base_url,
                           struct node *endpoints, struct dnode *ds)
{
    const char *why = NULL;
    if (base_url != NULL) {
        const char *t = cfg_text(c, base_url, "base-url", "a URL");
        if (t == NULL)
            return;
        s->endpoints = xcalloc(1, sizeof(*s->endpoints));
        if (!cfg_parse_url(t, &s->endpoints[0], &why)) {
            cfg_err(c, base_url, "base-url", "bad URL '%s': %s", cfg_show(c, t), why);
            free(s->endpoints);
            s->endpoints = NULL;
            return;
        }
        s->n_endpoints = 1;
        dump_leaf(c, ds, "base-url", dump_str(c, t), cfg_origin(c, base_url));
        return;
    }
    if (endpoints->kind != N_SEQ) {
        cfg_err(c, endpoints, "endpoints", "expected a list of URLs, got %s",
                endpoints->is_null ? "nothing" : node_kind_name(endpoints));
        return;
    }
    if (endpoints->n == 0) {
        cfg_err(c, endpoints, "endpoints", "the list is empty");
        return;
    }
    struct dnode *dl = dump_add(c, ds, D_SEQ, "endpoints", NULL, NULL);
    s->endpoints = xcalloc(endpoints->n, sizeof(*s->endpoints));
    for (size_t i = 0; i < endpoints->n; i++) {
        struct node *it = endpoints->vals[i], *url = it;
        int weight = 1;
        const char *wprov = "default";
        if (it->kind == N_MAP) {
            cfg_check_keys(c, it, schema_endpoint);
            url = node_get(it, "url");
            if (url == NULL) {
                cfg_err(c, it, "endpoints", "an endpoint map needs 'url'");
                continue;
            }
            cfg_read_int32(c, it, "weight", 1, 1000000, &weight, &wprov);
        }
        const char *t = cfg_text(c, url, "url", "a URL");
        if (t == NULL)
            continue;
        struct endpoint_conf e;
        if (!cfg_parse_url(t, &e, &why)) {
            cfg_err(c, url, "endpoints", "bad URL '%s': %s", cfg_show(c, t), why);
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < s->n_endpoints && !dup; k++)
            dup = strcmp(s->endpoints[k].url, e.url) == 0;
        if (dup) {
            cfg_err(c, url, "endpoints", "duplicate endpoint '%s'", cfg_show(c, t));
            cfg_endpoint_clear(&e);
            continue;
        }
        e.weight = weight;
        s->endpoints[s->n_endpoints++] = e;
        struct dnode *di = dump_map(c, dl, NULL, NULL);
        dump_leaf(c, di, "url", dump_str(c, t), cfg_origin(c, url));
        dump_leaf(c, di, "weight", dump_int(c, weight), wprov);
    }
}

static void conv_headers(struct ctx *c, struct service_conf *s, struct node *svc, struct dnode *ds)
{
    struct node *h = node_get(svc, "headers");
    if (h == NULL || h->is_null) {
        dump_add(c, ds, D_MAP, "headers", NULL, "default");
        return;
    }
    if (h->kind != N_MAP) {
        cfg_err(c, h, "headers", "expected a map of header names to values, got %s",
                node_kind_name(h));
        return;
    }
    struct dnode *dh = dump_map(c, ds, "headers", h->n == 0 ? cfg_origin(c, h) : NULL);
    s->headers = xcalloc(h->n, sizeof(*s->headers));
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->keys[i]->text;
        const char *v = cfg_string(c, h->vals[i], name);
        if (!token_ok(name)) {
            cfg_err(c, h->keys[i], "headers", "bad header name '%s'", cfg_show(c, name));
            continue;
        }
        if (strcasecmp(name, "connection") == 0 || strcasecmp(name, "keep-alive") == 0 ||
            strncasecmp(name, "proxy-", 6) == 0 || strcasecmp(name, "te") == 0 ||
            strcasecmp(name, "trailer") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
            strcasecmp(name, "upgrade") == 0) {
            cfg_err(c, h->keys[i], "headers", "'%s' is a hop-by-hop header and cannot be set",
                    name);
            continue;
        }
        if (strcasecmp(name, "host") == 0 || strcasecmp(name, "content-length") == 0 ||
            strcasecmp(name, "expect") == 0 || strncasecmp(name, "x-ahoyd-", 8) == 0) {
            cfg_err(c, h->keys[i], "headers", "'%s' is managed by ahoyd and cannot be set", name);
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < s->n_headers && !dup; k++)
            dup = strcasecmp(s->headers[k].name, name) == 0;
        if (dup) {
            cfg_err(c, h->keys[i], "headers", "header '%s' is set twice", name);
            continue;
        }
        if (v == NULL)
            continue;
        bool bad = false;
        for (const char *p = v; *p != '\0'; p++)
            bad = bad || ((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f;
        if (bad) {
            cfg_err(c, h->vals[i], name, "control characters are not allowed in a header value");
            continue;
        }
        s->headers[s->n_headers].name = xstrdup(name);
        s->headers[s->n_headers].value = xstrdup(v);
        s->n_headers++;
        dump_leaf(c, dh, dump_str(c, name),
                  header_is_secret(name) ? "\"<redacted>\"" : dump_str(c, v),
                  cfg_origin(c, h->vals[i]));
    }
}

static bool op_name_ok(const char *s)
{
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    return true;
}

static void conv_methods(struct ctx *c, struct config *cfg, struct service_conf *s,
                         struct node *svc, struct dnode *ds)
{
    struct node *m = node_get(svc, "methods");
    if (m == NULL || m->is_null) {
        dump_add(c, ds, D_MAP, "methods", NULL, "default");
        return;
    }
    if (m->kind != N_MAP) {
        cfg_err(c, m, "methods", "expected a map of operation names to 'VERB /path', got %s",
                node_kind_name(m));
        return;
    }
    struct dnode *dm = dump_map(c, ds, "methods", m->n == 0 ? cfg_origin(c, m) : NULL);
    s->methods = xcalloc(m->n, sizeof(*s->methods));
    for (size_t i = 0; i < m->n; i++) {
        const char *op = m->keys[i]->text;
        if (!op_name_ok(op)) {
            cfg_err(c, m->keys[i], "methods",
                    "bad operation name '%s' (expected [A-Za-z_][A-Za-z0-9_]*)", cfg_show(c, op));
            continue;
        }
        const char *t = cfg_text(c, m->vals[i], op, "'VERB /path'");
        const char *why = "bad template";
        if (t == NULL)
            continue;
        if (!template_valid(t, &why)) {
            cfg_err(c, m->vals[i], op, "bad method template '%s': %s", cfg_show(c, t), why);
            continue;
        }
        const char *sp = strchr(t, ' ');
        const char *path = sp;
        while (*path == ' ')
            path++;
        struct method_conf *mc = &s->methods[s->n_methods++];
        mc->name = xstrdup(op);
        mc->verb = strndup(t, (size_t)(sp - t));
        mc->path = xstrdup(path);
        if (mc->verb == NULL)
            abort();
        /* method_conf.file points into cfg->files, which the config owns */
        mc->file = NULL;
        for (size_t k = 0; k < cfg->n_files; k++)
            if (m->vals[i]->src.file != NULL && strcmp(cfg->files[k], m->vals[i]->src.file) == 0)
                mc->file = cfg->files[k];
        mc->line = m->vals[i]->src.line;
        mc->col = m->vals[i]->src.col;
        dump_leaf(c, dm, op, dump_str(c, t), cfg_origin(c, m->vals[i]));
    }
}

static void conv_tls(struct ctx *c, struct service_conf *s, struct node *svc, struct dnode *ds)
{
    struct node *t = cfg_section(c, svc, "tls", schema_tls);
    const char *vp = "default", *caf = "", *cf = "", *kf = "", *sn = "";
    const char *cap = "default", *cp = "default", *kp = "default", *snp = "default";
    s->tls.verify = true;
    cfg_read_bool(c, t, "verify", &s->tls.verify, &vp);
    cfg_read_string(c, t, "ca-file", &caf, &cap);
    cfg_read_string(c, t, "cert-file", &cf, &cp);
    cfg_read_string(c, t, "key-file", &kf, &kp);
    cfg_read_string(c, t, "server-name", &sn, &snp);
    caf = cfg_rel_path(c, caf);
    cf = cfg_rel_path(c, cf);
    kf = cfg_rel_path(c, kf);
    s->tls.ca_file = caf[0] ? xstrdup(caf) : NULL;
    s->tls.cert_file = cf[0] ? xstrdup(cf) : NULL;
    s->tls.key_file = kf[0] ? xstrdup(kf) : NULL;
    s->tls.server_name = sn[0] ? xstrdup(sn) : NULL;
    struct dnode *d = dump_map(c, ds, "tls", NULL);
    dump_leaf(c, d, "verify", s->tls.verify ? "true" : "false", vp);
    dump_leaf(c, d, "ca-file", dump_str(c, caf), cap);
    dump_leaf(c, d, "cert-file", dump_str(c, cf), cp);
    dump_leaf(c, d, "key-file", dump_str(c, kf), kp);
    dump_leaf(c, d, "server-name", dump_str(c, sn), snp);
}

/*
 * A service's retry policy: the globals, overlaid by its `retry` value (a
 * count, a boolean or a map), then by the shortcut retry-base-delay. A
 * shortcut beside `retry: false`, or beside the same field in the map, is an
 * error (an environment override of the field simply wins).
 */
static void conv_service_retry(struct ctx *c, struct service_conf *s, struct node *svc,
                               const struct globals *g, struct dnode *ds)
{
    struct retry_prov pv = g->retry_prov;
    struct node *r = node_get(svc, "retry");
    struct node *rmap = NULL;
    const char *rprov = NULL; /* set: dump `retry: false` */
    bool disabled = false;
    s->retry = g->retry;
    if (r != NULL && r->broken) {
        /* reported */
    } else if (r != NULL && r->kind == N_MAP) {
        rmap = r;
        cfg_check_keys(c, r, schema_retry);
        cfg_read_retry(c, r, &s->retry, &pv);
    } else if (r != NULL && r->kind == N_SCALAR && !r->is_null) {
        bool b;
        int64_t n;
        if (units_parse_bool(r->text, &b) == 0) {
            if (!b) {
                disabled = true;
                s->retry.max_attempts = 1;
                rprov = cfg_origin(c, r);
            }
        } else if (units_parse_int(r->text, INT64_MIN, INT64_MAX, &n) == 0 ||
                   (r->text[0] == '-' && isdigit((unsigned char)r->text[1]))) {
            if (cfg_conv_int(c, r, "retry", 1, 1000, &n)) {
                s->retry.max_attempts = (int)n;
                pv.max_attempts = cfg_origin(c, r);
            }
        } else {
            cfg_err(c, r, "retry", "expected true, false, a number of attempts or a map, got '%s'",
                    cfg_show(c, r->text));
        }
    } else if (r != NULL && !r->is_null) {
        cfg_err(c, r, "retry", "expected true, false, a number of attempts or a map, got a list");
    }

    struct node *sc = node_get(svc, "retry-base-delay");
    if (sc != NULL) {
        struct node *field = rmap != NULL ? node_get(rmap, "base-delay") : NULL;
        if (disabled) {
            cfg_err(c, sc, "retry-base-delay", "cannot be used with 'retry: false' (at %s)",
                    cfg_pos(c, &r->src));
        } else if (field != NULL && field->src.file != NULL) {
            cfg_err(c, sc, "retry-base-delay", "sets the same field as retry.base-delay at %s",
                    cfg_pos(c, &field->src));
        } else if (field == NULL) {
            cfg_read_duration(c, svc, "retry-base-delay", false, &s->retry.base_delay_ms,
                              &pv.base_delay);
        }
    }
    if (ds == NULL)
        return;
    if (disabled) {
        dump_leaf(c, ds, "retry", "false", rprov);
        return;
    }
    cfg_dump_retry(c, dump_map(c, ds, "retry", NULL), &s->retry, &pv);
}

static void conv_service_breaker(struct ctx *c, struct service_conf *s, struct node *svc,
                                 const struct globals *g, struct dnode *ds)
{
    struct breaker_prov pv = g->breaker_prov;
    struct node *b = node_get(svc, "circuit-breaker");
    struct node *bmap = NULL;
    const char *bprov = NULL;
    s->breaker = g->breaker;
    if (b != NULL && b->broken) {
        /* reported */
    } else if (b != NULL && b->kind == N_MAP) {
        bmap = b;
        cfg_check_keys(c, b, schema_breaker);
        cfg_read_breaker(c, b, &s->breaker, &pv);
    } else if (b != NULL && b->kind == N_SCALAR && !b->is_null) {
        bool on;
        if (units_parse_bool(b->text, &on) != 0) {
            cfg_err(c, b, "circuit-breaker", "expected true, false or a map, got '%s'",
                    cfg_show(c, b->text));
        } else if (!on) {
            s->breaker.enabled = false;
            bprov = cfg_origin(c, b);
        }
    } else if (b != NULL && !b->is_null) {
        cfg_err(c, b, "circuit-breaker", "expected true, false or a map, got a list");
    }

    static const char *const shortcuts[][2] = {
        {"circuit-breaker-failure-threshold", "failure-threshold"},
        {"circuit-breaker-recovery-timeout", "recovery-timeout"}};
    for (size_t i = 0; i < 2; i++) {
        struct node *sc = node_get(svc, shortcuts[i][0]);
        if (sc == NULL)
            continue;
        struct node *field = bmap != NULL ? node_get(bmap, shortcuts[i][1]) : NULL;
        if (!s->breaker.enabled) {
            cfg_err(c, sc, shortcuts[i][0], "cannot be used with 'circuit-breaker: false' (at %s)",
                    cfg_pos(c, &b->src));
        } else if (field != NULL && field->src.file != NULL) {
            cfg_err(c, sc, shortcuts[i][0], "sets the same field as circuit-breaker.%s at %s",
                    shortcuts[i][1], cfg_pos(c, &field->src));
        } else if (field == NULL && i == 0) {
            cfg_read_int32(c, svc, shortcuts[i][0], 1, 1000000, &s->breaker.failure_threshold,
                           &pv.failure_threshold);
        } else if (field == NULL) {
            cfg_read_duration(c, svc, shortcuts[i][0], false, &s->breaker.recovery_timeout_ms,
                              &pv.recovery_timeout);
        }
    }
    if (ds == NULL)
        return;
    if (!s->breaker.enabled) {
        dump_leaf(c, ds, "circuit-breaker", "false", bprov);
        return;
    }
    cfg_dump_breaker(c, dump_map(c, ds, "circuit-breaker", NULL), &s->breaker, &pv);
}

void cfg_conv_service(struct ctx *c, struct config *cfg, struct node *key, struct node *svc,
                      const struct globals *g, struct dnode *dservices)
{
    const char *name = key->text;
    struct service_conf *s = &cfg->services[cfg->n_services];
    if (name[0] == '_') {
        cfg_err(c, key, NULL, "service name '%s' is reserved (names starting with '_')",
                cfg_show(c, name));
        return;
    }
    if (!service_name_ok(name)) {
        cfg_err(c, key, NULL, "bad service name '%s' (expected [a-z0-9][a-z0-9_-]*)",
                cfg_show(c, name));
        return;
    }
    if (svc->kind != N_MAP) {
        cfg_err(c, svc, name, "expected a map, got %s",
                svc->is_null ? "nothing" : node_kind_name(svc));
        return;
    }
    cfg->n_services++;
    s->name = xstrdup(name);
    cfg_check_keys(c, svc, schema_service);
    struct dnode *ds = dump_map(c, dservices, name, NULL);

    struct node *bu = node_get(svc, "base-url"), *ep = node_get(svc, "endpoints");
    if (bu == NULL && ep == NULL)
        cfg_err(c, key, NULL, "service '%s' needs base-url or endpoints", name);
    else if (bu != NULL && ep != NULL)
        cfg_err(c, node_get_key(svc, "endpoints"), NULL,
                "service '%s' has both base-url and endpoints; use one", name);
    else
        conv_endpoints(c, s, bu, ep, ds);

    const char *p = "default";
    int lb = LB_ROUND_ROBIN;
    cfg_read_enum(c, svc, "load-balancer", cfg_lb_names, 3, &lb, &p);
    s->load_balancer = (enum lb_policy)lb;
    dump_leaf(c, ds, "load-balancer", cfg_lb_names[lb], p);

    s->timeout_ms = g->timeout;
    p = g->timeout_prov;
    cfg_read_duration(c, svc, "timeout", false, &s->timeout_ms, &p);
    dump_leaf(c, ds, "timeout", dump_duration(c, s->timeout_ms), p);
    s->connect_timeout_ms = g->connect_timeout;
    p = g->connect_timeout_prov;
    cfg_read_duration(c, svc, "connect-timeout", false, &s->connect_timeout_ms, &p);
    dump_leaf(c, ds, "connect-timeout", dump_duration(c, s->connect_timeout_ms), p);
    s->deadline_ms = g->deadline;
    p = g->deadline_prov;
    cfg_read_duration(c, svc, "deadline", true, &s->deadline_ms, &p);
    dump_leaf(c, ds, "deadline", dump_duration(c, s->deadline_ms), p);

    conv_service_retry(c, s, svc, g, ds);
    conv_service_breaker(c, s, svc, g, ds);
    conv_headers(c, s, svc, ds);
    p = "default";
    cfg_read_int(c, svc, "max-inflight", 0, 100000000, &s->max_inflight, &p);
    dump_leaf(c, ds, "max-inflight", dump_int(c, s->max_inflight), p);
    conv_methods(c, cfg, s, svc, ds);
    conv_tls(c, s, svc, ds);
}

void cfg_service_free(struct service_conf *s)
{
    free(s->name);
    for (size_t i = 0; i < s->n_endpoints; i++)
        cfg_endpoint_clear(&s->endpoints[i]);
    free(s->endpoints);
    for (size_t i = 0; i < s->n_headers; i++) {
        free(s->headers[i].name);
        free(s->headers[i].value);
    }
    free(s->headers);
    for (size_t i = 0; i < s->n_methods; i++) {
        free(s->methods[i].name);
        free(s->methods[i].verb);
        free(s->methods[i].path);
    }
    free(s->methods);
    free(s->tls.ca_file);
    free(s->tls.cert_file);
    free(s->tls.key_file);
    free(s->tls.server_name);
}
