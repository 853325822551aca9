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
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"
#include "strbuf.h"
#include "template.h"
#include "units.h"

/* ---- retry and circuit-breaker values ------------------------------------------------ */

/* The retry policy a row of schema_retry writes into. */
static struct retry_policy *policy_of(const struct sect *s, const struct key *k, size_t member)
{
    return (struct retry_policy *)((char *)schema_field(s, k) - member);
}

static void read_retry_on(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                          struct dnode *d)
{
    struct node *n = node_get(map, k->name);
    struct items it;
    (void)d;
    if (!n || !cfg_list_items(c, n, k->name, false, &it))
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
            cfg_err_at(c, &it.v[i].src, k->name,
                       "unknown entry '%s' (expected connect-failure, reset, timeout, a status "
                       "100-599, 5xx or gateway-error)",
                       cfg_show(c, t));
            ok = false;
        }
    }
    if (!ok)
        return;
    struct retry_policy *p = policy_of(s, k, offsetof(struct retry_policy, retry_on));
    p->retry_on = flags;
    memcpy(p->retry_on_status, st, sizeof st);
    schema_set_origin(s, k, cfg_origin(c, n));
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

static void dump_retry_on(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    if (!d)
        return;
    struct strbuf b = {0};
    strbuf_puts(&b, "[");
    struct retry_on_list l = {&b, true};
    retry_on_each(policy_of(s, k, offsetof(struct retry_policy, retry_on)), retry_on_append, &l);
    strbuf_puts(&b, "]");
    dump_leaf(c, d, k->name, arena_strdup(&c->a, b.s), schema_origin(s, k));
    free(b.s);
}

/* budget: a boolean, or a map of its keys (which turns it on). */
static void read_budget(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                        struct dnode *d)
{
    (void)d;
    cfg_read_switch_map(c, k, map, s, true, "off or a map {ratio, min-per-second}");
}

/*
 * The shortcuts after row k (retry or circuit-breaker) that set one of its
 * fields: each read through that field's row, unless the policy is off or its
 * map sets the same field (an environment override of the field simply wins).
 */
static void read_shortcuts(struct ctx *c, const struct key *k, struct node *svc, struct node *map,
                           const struct node *off, struct sect *s)
{
    for (const struct key *sc = k + 1; sc->name; sc++) {
        if (sc->kind != KD_SHORTCUT || sc->sub != k->sub)
            continue;
        struct node *n = node_get(svc, sc->name);
        if (!n)
            continue;
        const struct key *f = schema_find(k->sub, sc->arg);
        struct node *field = map ? node_get(map, f->name) : NULL;
        if (off) {
            cfg_err(c, n, sc->name, "cannot be used with '%s: false' (at %s)", k->name,
                    cfg_pos(c, &off->src));
        } else if (field && field->src.file) {
            cfg_err(c, n, sc->name, "sets the same field as %s.%s at %s", k->name, f->name,
                    cfg_pos(c, &field->src));
        } else if (!field) {
            struct key as = *f; /* the field's row under the shortcut's name */
            as.name = sc->name;
            f->type->read(c, &as, svc, s, NULL);
        }
    }
}

/*
 * The scalar value of a service's retry or circuit-breaker (not null): the
 * node that turns the policy off, or NULL (an error is reported here). expected
 * is the error's "expected ..." text.
 */
typedef const struct node *policy_scalar_fn(struct ctx *c, const struct key *k, struct node *v,
                                            struct sect *s, const char *expected);

/* retry: true, false (one attempt) or a number of attempts. */
static const struct node *retry_scalar(struct ctx *c, const struct key *k, struct node *r,
                                       struct sect *s, const char *expected)
{
    struct service_conf *sc = s->dst;
    const struct key *ma = schema_find(k->sub, "max-attempts");
    bool b;
    int64_t n;
    if (units_parse_bool(r->text, &b) == 0) {
        if (!b) {
            sc->retry.max_attempts = 1;
            return r;
        }
    } else if (units_parse_int(r->text, INT64_MIN, INT64_MAX, &n) == 0 ||
               (r->text[0] == '-' && isdigit((unsigned char)r->text[1]))) {
        if (cfg_conv_int(c, r, k->name, ma->min, ma->max, &n)) {
            sc->retry.max_attempts = (int)n;
            schema_set_origin(s, ma, cfg_origin(c, r));
        }
    } else {
        cfg_err(c, r, k->name, "expected %s, got '%s'", expected, cfg_show(c, r->text));
    }
    return NULL;
}

/* circuit-breaker: true or false. */
static const struct node *breaker_scalar(struct ctx *c, const struct key *k, struct node *b,
                                         struct sect *s, const char *expected)
{
    struct service_conf *sc = s->dst;
    bool on;
    if (units_parse_bool(b->text, &on) != 0) {
        cfg_err(c, b, k->name, "expected %s, got '%s'", expected, cfg_show(c, b->text));
    } else if (!on) {
        sc->breaker.enabled = false;
        return b;
    }
    return NULL;
}

/*
 * A service's retry or circuit-breaker: the global policy (already in s),
 * overlaid by its value (a map, or a scalar that scalar reads), then by its
 * shortcuts; dumped as false when off, else as the policy's fields.
 */
static void read_service_policy(struct ctx *c, const struct key *k, struct node *svc,
                                struct sect *s, struct dnode *ds, policy_scalar_fn *scalar,
                                const char *expected)
{
    struct node *v = node_get(svc, k->name);
    struct node *map = NULL;
    const struct node *off = NULL;
    if (v && v->broken) {
        /* reported */
    } else if (v && v->kind == N_MAP) {
        map = v;
        cfg_check_keys(c, v, k->sub);
        schema_walk(c, k->sub, v, s, NULL, false);
    } else if (v && v->kind == N_SCALAR && !v->is_null) {
        off = scalar(c, k, v, s, expected);
    } else if (v && !v->is_null) {
        cfg_err(c, v, k->name, "expected %s, got a list", expected);
    }
    read_shortcuts(c, k, svc, map, off, s);
    if (!ds)
        return;
    if (off)
        dump_leaf(c, ds, k->name, "false", cfg_origin(c, off));
    else
        schema_dump(c, k->sub, s, dump_map(c, ds, k->name, NULL));
}

/* A service's retry: a count, a boolean or a map. */
static void read_service_retry(struct ctx *c, const struct key *k, struct node *svc, struct sect *s,
                               struct dnode *ds)
{
    read_service_policy(c, k, svc, s, ds, retry_scalar,
                        "true, false, a number of attempts or a map");
}

/* A service's circuit-breaker: a boolean or a map. */
static void read_service_breaker(struct ctx *c, const struct key *k, struct node *svc,
                                 struct sect *s, struct dnode *ds)
{
    read_service_policy(c, k, svc, s, ds, breaker_scalar, "true, false or a map");
}

/* ---- endpoints, headers, methods ---------------------------------------------------- */

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

bool cfg_header_is_secret(const char *name)
{
    size_t n = strlen(name);
    return strcasecmp(name, "authorization") == 0 || strcasecmp(name, "cookie") == 0 ||
           (n >= 6 && strcasecmp(name + n - 6, "-token") == 0) ||
           (n >= 4 && strcasecmp(name + n - 4, "-key") == 0);
}

/* base-url or endpoints (whose row has no type: it is read here), never both. */
static void read_endpoints(struct ctx *c, const struct key *k, struct node *svc, struct sect *sect,
                           struct dnode *ds)
{
    struct service_conf *s = sect->dst;
    struct node *base_url = node_get(svc, "base-url"), *endpoints = node_get(svc, "endpoints");
    const char *why = NULL;
    if ((!base_url) == (!endpoints))
        return; /* neither or both: reported with the service's name */
    if (base_url) {
        const char *t = cfg_text(c, base_url, "base-url", "a URL");
        if (!t)
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
            cfg_check_keys(c, it, k->sub);
            url = node_get(it, "url");
            if (!url) {
                cfg_err(c, it, "endpoints", "an endpoint map needs 'url'");
                continue;
            }
            const struct key *wk = schema_find(k->sub, "weight");
            int64_t w;
            struct node *wn = node_get(it, wk->name);
            if (wn && cfg_conv_int(c, wn, wk->name, wk->min, wk->max, &w)) {
                weight = (int)w;
                wprov = cfg_origin(c, wn);
            }
        }
        const char *t = cfg_text(c, url, "url", "a URL");
        if (!t)
            continue;
        struct endpoint_conf e;
        if (!cfg_parse_url(t, &e, &why)) {
            cfg_err(c, url, "endpoints", "bad URL '%s': %s", cfg_show(c, t), why);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < s->n_endpoints && !dup; j++)
            dup = strcmp(s->endpoints[j].url, e.url) == 0;
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

bool cfg_read_header_map(struct ctx *c, struct node *h, const char *key, struct header_conf **out,
                         size_t *n_out, struct dnode *ds)
{
    if (h->kind != N_MAP) {
        cfg_err(c, h, key, "expected a map of header names to values, got %s",
                node_kind_name(h));
        return false;
    }
    struct dnode *dh = ds ? dump_map(c, ds, key, h->n == 0 ? cfg_origin(c, h) : NULL)
                                  : NULL;
    struct header_conf *v = xcalloc(h->n, sizeof(*v));
    size_t n = 0;
    *out = v;
    *n_out = 0;
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->keys[i]->text;
        const char *val = cfg_string(c, h->vals[i], name);
        if (!token_ok(name)) {
            cfg_err(c, h->keys[i], key, "bad header name '%s'", cfg_show(c, name));
            continue;
        }
        if (strcasecmp(name, "connection") == 0 || strcasecmp(name, "keep-alive") == 0 ||
            strncasecmp(name, "proxy-", 6) == 0 || strcasecmp(name, "te") == 0 ||
            strcasecmp(name, "trailer") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
            strcasecmp(name, "upgrade") == 0) {
            cfg_err(c, h->keys[i], key, "'%s' is a hop-by-hop header and cannot be set", name);
            continue;
        }
        if (strcasecmp(name, "host") == 0 || strcasecmp(name, "content-length") == 0 ||
            strcasecmp(name, "expect") == 0 || strncasecmp(name, "x-ahoyd-", 8) == 0) {
            cfg_err(c, h->keys[i], key, "'%s' is managed by ahoyd and cannot be set", name);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcasecmp(v[j].name, name) == 0;
        if (dup) {
            cfg_err(c, h->keys[i], key, "header '%s' is set twice", name);
            continue;
        }
        if (!val)
            continue;
        bool bad = false;
        for (const char *p = val; *p != '\0'; p++)
            bad = bad || ((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f;
        if (bad) {
            cfg_err(c, h->vals[i], name, "control characters are not allowed in a header value");
            continue;
        }
        v[n].name = xstrdup(name);
        v[n].value = xstrdup(val);
        n++;
        *n_out = n;
        if (dh)
            dump_leaf(c, dh, dump_str(c, name),
                      cfg_header_is_secret(name) ? "\"<redacted>\"" : dump_str(c, val),
                      cfg_origin(c, h->vals[i]));
    }
    return true;
}

static void read_headers(struct ctx *c, const struct key *k, struct node *svc, struct sect *sect,
                         struct dnode *ds)
{
    struct service_conf *s = sect->dst;
    struct node *h = node_get(svc, k->name);
    if (!h || h->is_null) {
        dump_add(c, ds, D_MAP, "headers", NULL, "default");
        return;
    }
    cfg_read_header_map(c, h, "headers", &s->headers, &s->n_headers, ds);
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

static void read_methods(struct ctx *c, const struct key *k, struct node *svc, struct sect *sect,
                         struct dnode *ds)
{
    struct service_conf *s = sect->dst;
    const struct config *cfg = c->cfg;
    struct node *m = node_get(svc, k->name);
    if (!m || m->is_null) {
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
        if (!t)
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
        if (!mc->verb)
            abort();
        /* method_conf.file points into cfg->files, which the config owns */
        mc->file = NULL;
        for (size_t j = 0; j < cfg->n_files; j++)
            if (m->vals[i]->src.file && strcmp(cfg->files[j], m->vals[i]->src.file) == 0)
                mc->file = cfg->files[j];
        mc->line = m->vals[i]->src.line;
        mc->col = m->vals[i]->src.col;
        dump_leaf(c, dm, op, dump_str(c, t), cfg_origin(c, m->vals[i]));
    }
}

/* ---- services ---------------------------------------------------------------------- */

/* A service into cfg->services; one with a bad name is still checked (into a scratch
 * service_conf, dropped after) so that its name does not hide the errors inside it. */
static void conv_service(struct ctx *c, struct node *key, struct node *svc, const struct key *rows,
                         struct dnode *dservices)
{
    struct config *cfg = c->cfg;
    const char *name = key->text;
    bool named = false;
    if (name[0] == '_')
        cfg_err(c, key, NULL, "service name '%s' is reserved (names starting with '_')",
                cfg_show(c, name));
    else if (!service_name_ok(name))
        cfg_err(c, key, NULL, "bad service name '%s' (expected [a-z0-9][a-z0-9_-]*)",
                cfg_show(c, name));
    else
        named = true;
    if (svc->kind != N_MAP) {
        cfg_err(c, svc, cfg_show(c, name), "expected a map, got %s",
                svc->is_null ? "nothing" : node_kind_name(svc));
        return;
    }
    struct service_conf scratch;
    struct service_conf *s = named ? &cfg->services[cfg->n_services++] : &scratch;
    *s = c->policy; /* the global policy; its other fields are all empty */
    s->name = xstrdup(name);
    cfg_check_keys(c, svc, rows);
    struct dnode *ds = named ? dump_map(c, dservices, name, NULL) : NULL;

    struct node *bu = node_get(svc, "base-url"), *ep = node_get(svc, "endpoints");
    if (!bu && !ep && !node_get(svc, "discovery"))
        cfg_err(c, key, NULL, "service '%s' needs base-url, endpoints or discovery",
                cfg_show(c, name));
    else if (bu && ep)
        cfg_err(c, node_get_key(svc, "endpoints"), NULL,
                "service '%s' has both base-url and endpoints; use one", cfg_show(c, name));

    struct origins o = c->policy_origins;
    struct sect sect = {s, &o};
    schema_walk(c, rows, svc, &sect, ds, true);
    if (!named)
        cfg_service_free(&scratch);
}

static void read_services(struct ctx *c, const struct key *k, struct node *client, struct sect *s,
                          struct dnode *d)
{
    struct config *cfg = c->cfg;
    struct node *svcs = cfg_section(c, client, k->name, NULL);
    struct dnode *dsv = svcs != NULL && svcs->n > 0
                            ? dump_map(c, d, k->name, NULL)
                            : dump_add(c, d, D_MAP, k->name, NULL, "default");
    (void)s;
    if (!svcs)
        return;
    cfg->services = xcalloc(svcs->n, sizeof(*cfg->services));
    for (size_t i = 0; i < svcs->n; i++)
        conv_service(c, svcs->keys[i], svcs->vals[i], k->sub, dsv);
}

const struct key_type type_retry_on = {read_retry_on, dump_retry_on};
const struct key_type type_budget = {read_budget, dump_switch_map};
const struct key_type type_service_retry = {read_service_retry, NULL};
const struct key_type type_service_breaker = {read_service_breaker, NULL};
const struct key_type type_endpoints = {read_endpoints, NULL};
const struct key_type type_headers = {read_headers, NULL};
const struct key_type type_methods = {read_methods, NULL};
const struct key_type type_services = {read_services, NULL};

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
    free(s->health_path);
    for (size_t i = 0; i < s->n_health_headers; i++) {
        free(s->health_headers[i].name);
        free(s->health_headers[i].value);
    }
    free(s->health_headers);
    free(s->dns.name);
    free(s->dns.base_path);
    free(s->dns.server);
    for (size_t i = 0; i < s->etcd.n_endpoints; i++)
        free(s->etcd.endpoints[i]);
    free(s->etcd.endpoints);
    free(s->etcd.prefix);
    free(s->etcd.username);
    free(s->etcd.password_file);
    free(s->etcd.password);
    free(s->etcd.tls.ca_file);
    free(s->etcd.tls.cert_file);
    free(s->etcd.tls.key_file);
    free(s->etcd.tls.server_name);
}
