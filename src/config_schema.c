/*
 * config_schema.c - the schema, written once: one table per map of the file,
 * one row per key, and the walk of the tree against them.
 *
 * A row says how a key may be given (which drives the unknown-key checks and
 * the environment overrides, config_layer.c), its type (how it is read and
 * dumped, config_value.c), where its value goes, its range and its default as
 * one would write it. The walk reads the rows in table order, which is also
 * the order of --dump-config; defaults are read like any value, from a
 * one-key map whose origin is "default". Adding a key is one row here, plus
 * a type when none of the existing ones fits. The pyfly.client policy keys
 * fill the policy every service starts from (ctx.policy), so a service's
 * timeout, retry and circuit-breaker rows have no default of their own: they
 * inherit.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "strbuf.h"
#include "units.h"

#define MAX_TOKEN_FILE_BYTES 4096

/* ---- origins and fields ------------------------------------------------------------ */

void *schema_field(const struct sect *s, const struct key *k)
{
    return (char *)s->dst + k->off;
}

void schema_set_origin(struct sect *s, const struct key *k, const char *at)
{
    struct origins *o = s->o;
    for (size_t i = 0; i < o->n; i++) {
        if (o->off[i] == k->off) {
            o->at[i] = at;
            return;
        }
    }
    if (o->n == ORIGINS_MAX)
        abort(); /* a table outgrew ORIGINS_MAX: a programming error */
    o->off[o->n] = k->off;
    o->at[o->n++] = at;
}

const char *schema_origin(const struct sect *s, const struct key *k)
{
    for (size_t i = 0; i < s->o->n; i++)
        if (s->o->off[i] == k->off)
            return s->o->at[i];
    return "default";
}

const struct key *schema_find(const struct key *rows, const char *name)
{
    for (const struct key *k = rows; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

/* ---- the walk ------------------------------------------------------------------------ */

/* Report every key of map that rows does not know, with a suggestion. */
void cfg_check_keys(struct ctx *c, const struct node *map, const struct key *rows)
{
    if (!map || map->kind != N_MAP)
        return;
    bool top = rows == schema_top;
    const char *names[32];
    size_t n = 0;
    for (const struct key *d = rows; d->name && n < 32; d++)
        names[n++] = d->name;
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->keys[i]->text;
        size_t j;
        for (j = 0; j < n && strcmp(names[j], k) != 0; j++)
            ;
        if (j < n || (top && strncmp(k, "x-", 2) == 0))
            continue; /* x-*: top-level extension keys, a home for anchors */
        const char *s = cfg_suggest(k, names, n);
        if (s)
            cfg_err(c, map->keys[i], NULL, "unknown key '%s'; did you mean '%s'?", cfg_show(c, k),
                    s);
        else
            cfg_err(c, map->keys[i], NULL, "unknown key '%s'", cfg_show(c, k));
    }
}

/*
 * A row's default, read like a value from a one-key map labelled "default";
 * a scalar-or-map row (budget) brings the defaults of its keys along. Only
 * plain values (types with a dump of their own) are defaulted this way: a
 * composite type reads its default from its row itself.
 */
static void schema_default(struct ctx *c, const struct key *k, struct sect *s)
{
    if (!k->def || !k->type || !k->type->dump)
        return;
    struct src at = {NULL, 0, 0, 0, "default"};
    struct node *m = node_new(c, N_MAP, &at);
    node_push(c, m, node_new_scalar(c, k->name, &at), node_new_scalar(c, k->def, &at));
    k->type->read(c, k, m, s, NULL);
    if (k->kind == KD_SM && k->sub)
        for (const struct key *sub = k->sub; sub->name; sub++)
            schema_default(c, sub, s);
}

void schema_walk(struct ctx *c, const struct key *rows, struct node *map, struct sect *s,
                 struct dnode *d, bool defaults)
{
    for (const struct key *k = rows; k->name; k++) {
        if (!k->type)
            continue;
        if (defaults)
            schema_default(c, k, s);
        if (k->type->read)
            k->type->read(c, k, map, s, d);
        if (k->type->dump)
            k->type->dump(c, k, s, d);
    }
}

void schema_dump(struct ctx *c, const struct key *rows, const struct sect *s, struct dnode *d)
{
    for (const struct key *k = rows; k->name; k++)
        if (k->type && k->type->dump)
            k->type->dump(c, k, s, d);
}

/* ---- the daemon's own keys ------------------------------------------------------------ */

char *cfg_read_secret_file(struct ctx *c, const struct node *at, const char *key,
                           const char *file, const char *what)
{
    FILE *f = fopen(file, "rb");
    char buf[MAX_TOKEN_FILE_BYTES + 2]; /* one byte more tells a file that is too large */
    size_t len = 0;
    if (!f) {
        cfg_err(c, at, key, "cannot open %s: %s", cfg_show(c, file), strerror(errno));
        return NULL;
    }
    len = fread(buf, 1, MAX_TOKEN_FILE_BYTES + 1, f);
    fclose(f);
    bool too_large = len > MAX_TOKEN_FILE_BYTES;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    if (too_large)
        cfg_err(c, at, key, "%s %s too large (over %d bytes)", what, cfg_show(c, file),
                MAX_TOKEN_FILE_BYTES);
    else if (len == 0)
        cfg_err(c, at, key, "%s is empty", cfg_show(c, file));
    else if (memchr(buf, '\0', len) != NULL) /* e.g. UTF-16: the secret would be cut */
        cfg_err(c, at, key, "%s holds a NUL byte", cfg_show(c, file));
    else
        return xstrdup(buf);
    return NULL;
}

/*
 * admin-token and admin-token-file (whose row has no type: it is read here),
 * resolved to one token; a non-loopback admin-listen needs one.
 */
static void read_admin_token(struct ctx *c, const struct key *k, struct node *ahoyd, struct sect *s,
                             struct dnode *d)
{
    struct config *cfg = s->dst;
    const struct key *kf = k + 1; /* the admin-token-file row */
    const char *tok = k->def, *tokp = "default", *file = kf->def, *filep = "default";
    struct node *tn = cfg_read_string(c, ahoyd, k->name, &tok, &tokp);
    struct node *fn = cfg_read_string(c, ahoyd, kf->name, &file, &filep);
    file = cfg_rel_path(c, file);
    if (tok[0] != '\0' && file[0] != '\0') {
        cfg_err(c, fn, "admin-token-file", "set admin-token or admin-token-file, not both");
    } else if (tok[0] != '\0') {
        cfg->admin_token = xstrdup(tok);
    } else if (file[0] != '\0') {
        cfg->admin_token = cfg_read_secret_file(c, fn, "admin-token-file", file, "token file");
    }
    if (cfg->admin_token) {
        for (const char *p = cfg->admin_token; *p != '\0'; p++) {
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
                cfg_err(c, tok[0] ? tn : fn, tok[0] ? "admin-token" : "admin-token-file",
                        "the token must be visible ASCII characters without spaces");
                break;
            }
        }
    }
    if (cfg->admin_listen.kind == LISTEN_INET && !cfg->admin_listen.loopback &&
        cfg->admin_token == NULL && tok[0] == '\0' && file[0] == '\0') {
        struct node *an = node_get(ahoyd, "admin-listen");
        cfg_err(c, an, "admin-listen", "%s is not loopback: set admin-token or admin-token-file",
                cfg_show(c, cfg->admin_listen.text));
    }
    dump_leaf(c, d, "admin-token", tok[0] ? "\"<redacted>\"" : "\"\"", tokp);
    dump_leaf(c, d, "admin-token-file", dump_str(c, file), filep);
}

/* log-level: -l beats AHOYD_LOG_LEVEL (already in the tree) beats the files. */
static void read_log_level(struct ctx *c, const struct key *k, struct node *ahoyd, struct sect *s,
                           struct dnode *d)
{
    const struct enum_names *ln = k->arg;
    const char *const *names = ln->v;
    struct config *cfg = s->dst;
    const char *p = "default";
    int lvl = 0;
    while (strcmp(names[lvl], k->def) != 0)
        lvl++;
    if (c->opts->log_level) {
        struct src at = {NULL, 0, 0, 0, "--log-level"};
        size_t i;
        for (i = 0; i < ln->n && strcmp(c->opts->log_level, names[i]) != 0; i++)
            ;
        if (i < ln->n) {
            lvl = (int)i;
            p = "command line";
        } else {
            cfg_err_at(c, &at, NULL, "expected error, warn, info or debug, got '%s'",
                       cfg_show(c, c->opts->log_level));
        }
        int ignored = lvl;
        const char *ip = p;
        cfg_read_enum(c, ahoyd, k->name, names, ln->n, &ignored, &ip);
    } else {
        cfg_read_enum(c, ahoyd, k->name, names, ln->n, &lvl, &p);
    }
    cfg->log_level = (enum log_level)lvl;
    dump_leaf(c, d, k->name, names[lvl], p);
}

/* access-log: stderr, off (or false, no) or an absolute path. */
static void read_access_log(struct ctx *c, const struct key *k, struct node *ahoyd, struct sect *s,
                            struct dnode *d)
{
    const char *al = NULL, *p = NULL;
    struct node *aln = cfg_read_string(c, ahoyd, k->name, &al, &p);
    bool b;
    (void)d;
    if (!al)
        return;
    if (units_parse_bool(al, &b) == 0 && !b)
        al = "off";
    if (strcmp(al, "stderr") != 0 && strcmp(al, "off") != 0 && al[0] != '/') {
        cfg_err(c, aln, k->name, "expected stderr, off or an absolute path, got '%s'",
                cfg_show(c, al));
        return;
    }
    char **field = schema_field(s, k);
    free(*field);
    *field = xstrdup(al);
    schema_set_origin(s, k, p);
}

static void dump_access_log(struct ctx *c, const struct key *k, const struct sect *s,
                            struct dnode *d)
{
    char *const *v = schema_field(s, k);
    dump_leaf(c, d, k->name, dump_str(c, *v), schema_origin(s, k));
}

/* A step-0 list (include, profiles.active): already read and merged, so the
 * dump shows it as a comment; prefix, sep and suffix shape that comment. */
static void step0_comment(struct ctx *c, struct dnode *d, const struct items *it,
                          const char *prefix, const char *sep, bool quote, const char *suffix,
                          const char *prov)
{
    if (!c->dump || it->n == 0)
        return;
    struct strbuf b = {0};
    strbuf_puts(&b, prefix);
    for (size_t i = 0; i < it->n; i++) {
        strbuf_puts(&b, i ? sep : "");
        strbuf_puts(&b, quote ? dump_str(c, it->v[i].text) : it->v[i].text);
    }
    strbuf_puts(&b, suffix);
    strbuf_puts(&b, prov);
    strbuf_puts(&b, " (already merged into this output)");
    dump_add(c, d, D_COMMENT, NULL, arena_strdup(&c->a, b.s), NULL);
    free(b.s);
}

static char **items_copy(const struct items *it, size_t *n)
{
    char **v = xcalloc(it->n + 1, sizeof(char *));
    for (*n = 0; *n < it->n; (*n)++)
        v[*n] = xstrdup(it->v[*n].text);
    return v;
}

static void read_include(struct ctx *c, const struct key *k, struct node *ahoyd, struct sect *s,
                         struct dnode *d)
{
    struct config *cfg = s->dst;
    (void)k;
    (void)ahoyd;
    cfg->include = items_copy(c->inc, &cfg->n_include);
    step0_comment(c, d, c->inc, "include: [", ", ", true, "]  # ", c->inc_prov);
}

/* pyfly.profiles: its keys checked; active was read in step 0. */
static void read_profiles(struct ctx *c, const struct key *k, struct node *pyfly, struct sect *s,
                          struct dnode *d)
{
    struct config *cfg = s->dst;
    cfg_section(c, pyfly, k->name, k->sub);
    cfg->profiles = items_copy(c->prof, &cfg->n_profiles);
    step0_comment(c, d, c->prof, "profiles: {active: \"", ",", false, "\"}  # ", c->prof_prov);
}

/* pyfly.client: its keys fill the policy every service starts from (ctx.policy),
 * which struct config keeps as the globals. */
static void read_client(struct ctx *c, const struct key *k, struct node *pyfly, struct sect *s,
                        struct dnode *d)
{
    struct config *cfg = s->dst;
    struct node *client = cfg_section(c, pyfly, k->name, k->sub);
    struct sect policy = {&c->policy, &c->policy_origins};
    c->policy.breaker.enabled = true; /* no key: only a service turns its breaker off */
    schema_walk(c, k->sub, client, &policy, dump_map(c, d, k->name, NULL), true);
    cfg->default_timeout_ms = c->policy.timeout_ms;
    cfg->default_connect_timeout_ms = c->policy.connect_timeout_ms;
    cfg->default_deadline_ms = c->policy.deadline_ms;
    cfg->breaker = c->policy.breaker;
    cfg->retry = c->policy.retry;
}

static const struct key_type type_admin_token = {read_admin_token, NULL};
static const struct key_type type_log_level = {read_log_level, NULL};
static const struct key_type type_access_log = {read_access_log, dump_access_log};
static const struct key_type type_include = {read_include, NULL};
static const struct key_type type_profiles = {read_profiles, NULL};
static const struct key_type type_client = {read_client, NULL};

/* ---- the tables ------------------------------------------------------------------------ */

/* Each enum's one name table lives with its module; access-log-format's here. */
static const char *const format_name_list[] = {"logfmt", "json"};
static const struct enum_names level_names = {log_level_names, LOG_LEVEL_COUNT};
static const struct enum_names format_names = {format_name_list, 2};
static const struct enum_names jitter_names = {jitter_mode_names, JITTER_MODE_COUNT};
static const struct enum_names lb_names = {lb_policy_names, LB_POLICY_COUNT};

#define CF(field) offsetof(struct config, field)
#define SV(field) offsetof(struct service_conf, field)
#define MIB(n) ((n) << 20)

/* Rows: name, how given, type, field, min, max, default, sub-table, arg. */
static const struct key schema_ahoyd[] = {
    {"listen", KD_SCALAR, &type_listen, CF(listen), 0, 0, "127.0.0.1:8080", NULL, NULL},
    {"admin-listen", KD_SCALAR, &type_listen, CF(admin_listen), 0, 0, "127.0.0.1:9901", NULL,
     "off allowed"},
    {"admin-token", KD_SCALAR, &type_admin_token, CF(admin_token), 0, 0, "", NULL, NULL},
    {"admin-token-file", KD_SCALAR, NULL, 0, 0, 0, "", NULL, NULL}, /* with admin-token */
    {"include", KD_STEP0, &type_include, CF(include), 0, 0, NULL, NULL, NULL},
    {"log-level", KD_SCALAR, &type_log_level, CF(log_level), 0, 0, "info", NULL, &level_names},
    {"access-log", KD_SCALAR, &type_access_log, CF(access_log), 0, 0, "stderr", NULL, NULL},
    {"access-log-format", KD_SCALAR, &type_enum, CF(access_log_format), 0, 0, "logfmt", NULL,
     &format_names},
    {"max-connections", KD_SCALAR, &type_int, CF(max_connections), 1, 1048576, "4096", NULL, NULL},
    {"workers", KD_SCALAR, &type_int, CF(workers), 1, WORKERS_MAX, "1", NULL, NULL},
    {"max-request-body", KD_SCALAR, &type_size, CF(max_request_body), 0, 0, "8MiB", NULL, NULL},
    {"max-response-body", KD_SCALAR, &type_size, CF(max_response_body), 0, 0, "0", NULL,
     NULL},
    {"max-header-bytes", KD_SCALAR, &type_size, CF(max_header_bytes), 1, 0, "16KiB", NULL, NULL},
    {"max-response-header-bytes", KD_SCALAR, &type_size, CF(max_response_header_bytes), 1, 0,
     "16KiB", NULL, NULL},
    {"request-timeout", KD_SCALAR, &type_duration, CF(request_timeout_ms), 0, 0, "30s", NULL, NULL},
    {"idle-timeout", KD_SCALAR, &type_duration, CF(idle_timeout_ms), 0, 0, "60s", NULL, NULL},
    {"shutdown-timeout", KD_SCALAR, &type_duration, CF(shutdown_timeout_ms), 0, 0, "10s", NULL,
     NULL},
    {"drain-delay", KD_SCALAR, &type_duration, CF(drain_delay_ms), 0, 0, "0s", NULL, NULL},
    {"max-retry-buffers", KD_SCALAR, &type_size, CF(max_retry_buffers), 0, 0, "256MiB", NULL,
     NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_budget[] = {
    {"ratio", KD_SCALAR, &type_number, SV(retry.budget_ratio), 0, 0, "0.2", NULL, NULL},
    {"min-per-second", KD_SCALAR, &type_number, SV(retry.budget_min_per_second), 0, 0, "10", NULL,
     NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

const struct key schema_retry[] = {
    {"max-attempts", KD_SCALAR, &type_int32, SV(retry.max_attempts), 1, 1000, "3", NULL, NULL},
    {"base-delay", KD_SCALAR, &type_duration, SV(retry.base_delay_ms), 1, 0, "1s", NULL, NULL},
    {"max-delay", KD_SCALAR, &type_duration, SV(retry.max_delay_ms), 1, 0, "30s", NULL, NULL},
    {"jitter", KD_SCALAR, &type_enum, SV(retry.jitter), 0, 0, "none", NULL, &jitter_names},
    {"retry-on", KD_LIST, &type_retry_on, SV(retry.retry_on), 0, 0,
     "connect-failure, reset, timeout, 429, 502, 503, 504", NULL, NULL},
    {"retry-non-idempotent", KD_SCALAR, &type_bool, SV(retry.retry_non_idempotent), 0, 0, "false",
     NULL, NULL},
    {"honor-retry-after", KD_SCALAR, &type_bool, SV(retry.honor_retry_after), 0, 0, "true", NULL,
     NULL},
    {"budget", KD_SM, &type_budget, SV(retry.budget_enabled), 0, 0, "off", schema_budget, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

const struct key schema_breaker[] = {{"failure-threshold", KD_SCALAR, &type_int32,
                                      SV(breaker.failure_threshold), 1, 1000000, "5", NULL, NULL},
                                     {"recovery-timeout", KD_SCALAR, &type_duration,
                                      SV(breaker.recovery_timeout_ms), 1, 0, "30s", NULL, NULL},
                                     {"half-open-max-calls", KD_SCALAR, &type_int32,
                                      SV(breaker.half_open_max_calls), 1, 1000000, "1", NULL, NULL},
                                     {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_default_call[] = {
    {"timeout", KD_SCALAR, &type_duration, SV(timeout_ms), 0, 0, "30s", NULL, NULL},
    {"connect-timeout", KD_SCALAR, &type_duration, SV(connect_timeout_ms), 1, 0, "5s", NULL, NULL},
    {"deadline", KD_SCALAR, &type_duration, SV(deadline_ms), 0, 0, "0", NULL, NULL},
    {"read-timeout", KD_SCALAR, &type_duration, SV(read_timeout_ms), 0, 0, "0", NULL, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_tls[] = {
    {"verify", KD_SCALAR, &type_bool, SV(tls.verify), 0, 0, "true", NULL, NULL},
    {"ca-file", KD_SCALAR, &type_path, SV(tls.ca_file), 0, 0, "", NULL, NULL},
    {"cert-file", KD_SCALAR, &type_path, SV(tls.cert_file), 0, 0, "", NULL, NULL},
    {"key-file", KD_SCALAR, &type_path, SV(tls.key_file), 0, 0, "", NULL, NULL},
    {"server-name", KD_SCALAR, &type_string, SV(tls.server_name), 0, 0, "", NULL, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

/* An item of endpoints given as a map (read by the endpoints type). */
static const struct key schema_endpoint[] = {
    {"url", KD_SCALAR, NULL, 0, 0, 0, NULL, NULL, NULL},
    {"weight", KD_SCALAR, NULL, 0, 1, 1000000, "1", NULL, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

/* A service starts from ctx.policy: the rows without a default inherit from it.
 * A shortcut sets the field named by its arg in the table of its sub, through
 * that field's row (type, range), read by the retry or circuit-breaker type. */
const struct key schema_service[] = {
    {"base-url", KD_SCALAR, &type_endpoints, SV(endpoints), 0, 0, NULL, schema_endpoint, NULL},
    {"endpoints", KD_LIST, NULL, 0, 0, 0, NULL, schema_endpoint, NULL}, /* with base-url */
    {"load-balancer", KD_SCALAR, &type_enum, SV(load_balancer), 0, 0, "round-robin", NULL,
     &lb_names},
    {"timeout", KD_SCALAR, &type_duration, SV(timeout_ms), 0, 0, NULL, NULL, NULL},
    {"connect-timeout", KD_SCALAR, &type_duration, SV(connect_timeout_ms), 1, 0, NULL, NULL, NULL},
    {"deadline", KD_SCALAR, &type_duration, SV(deadline_ms), 0, 0, NULL, NULL, NULL},
    {"read-timeout", KD_SCALAR, &type_duration, SV(read_timeout_ms), 0, 0, NULL, NULL, NULL},
    {"retry", KD_SM, &type_service_retry, SV(retry), 0, 0, NULL, schema_retry, NULL},
    {"circuit-breaker", KD_SM, &type_service_breaker, SV(breaker), 0, 0, NULL, schema_breaker,
     NULL},
    {"retry-base-delay", KD_SHORTCUT, NULL, 0, 0, 0, NULL, schema_retry, "base-delay"},
    {"circuit-breaker-failure-threshold", KD_SHORTCUT, NULL, 0, 0, 0, NULL, schema_breaker,
     "failure-threshold"},
    {"circuit-breaker-recovery-timeout", KD_SHORTCUT, NULL, 0, 0, 0, NULL, schema_breaker,
     "recovery-timeout"},
    {"headers", KD_NOENV, &type_headers, SV(headers), 0, 0, NULL, NULL, NULL},
    {"max-inflight", KD_SCALAR, &type_int, SV(max_inflight), 0, 100000000, "0", NULL, NULL},
    {"request-buffer", KD_SCALAR, &type_size, SV(request_buffer), 0, 0, "1MiB", NULL, NULL},
    {"methods", KD_NOENV, &type_methods, SV(methods), 0, 0, NULL, NULL, NULL},
    {"tls", KD_MAP, &type_section, SV(tls), 0, 0, NULL, schema_tls, NULL},
    {"slow-start", KD_SCALAR, &type_duration, SV(slow_start_ms), 0, 0, "0", NULL, NULL},
    {"health-check", KD_SM, &type_health_check, SV(health.enabled), 0, 0, "off", schema_health,
     NULL},
    {"outlier", KD_SM, &type_outlier, SV(outlier.enabled), 0, 0, "off", schema_outlier, NULL},
    {"panic-threshold", KD_SCALAR, &type_percent, SV(panic_threshold), 0, 100, "50%", NULL, NULL},
    {"discovery", KD_MAP, &type_discovery, 0, 0, 0, NULL, schema_discovery, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_client[] = {
    {"default", KD_MAP, &type_section, 0, 0, 0, NULL, schema_default_call, NULL},
    {"circuit-breaker", KD_MAP, &type_section, 0, 0, 0, NULL, schema_breaker, NULL},
    {"retry", KD_MAP, &type_section, 0, 0, 0, NULL, schema_retry, NULL},
    {"services", KD_SERVICES, &type_services, CF(services), 0, 0, NULL, schema_service, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_profiles[] = {
    {"active", KD_STEP0, NULL, 0, 0, 0, NULL, NULL, NULL}, /* read in step 0 */
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

static const struct key schema_pyfly[] = {
    {"profiles", KD_MAP, &type_profiles, CF(profiles), 0, 0, NULL, schema_profiles, NULL},
    {"client", KD_MAP, &type_client, 0, 0, 0, NULL, schema_client, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

const struct key schema_top[] = {
    {"ahoyd", KD_MAP, &type_section, 0, 0, 0, NULL, schema_ahoyd, NULL},
    {"pyfly", KD_MAP, &type_section, 0, 0, 0, NULL, schema_pyfly, NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL}};

/* The whole tree into c->cfg (and c->dump). */
void cfg_convert(struct ctx *c)
{
    struct origins o = {0};
    struct sect top = {c->cfg, &o};
    cfg_check_keys(c, c->root, schema_top);
    schema_walk(c, schema_top, c->root, &top, c->dump, true);
}
