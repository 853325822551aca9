/*
 * config_schema.c - the schema and the walk of the tree against it.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "strbuf.h"
#include "units.h"

#define MAX_TOKEN_FILE_BYTES 4096

const struct keydef schema_budget[] = {
    {"ratio", KD_SCALAR, NULL}, {"min-per-second", KD_SCALAR, NULL}, {NULL, 0, NULL}};

const struct keydef schema_retry[] = {{"max-attempts", KD_SCALAR, NULL},
                                      {"base-delay", KD_SCALAR, NULL},
                                      {"max-delay", KD_SCALAR, NULL},
                                      {"jitter", KD_SCALAR, NULL},
                                      {"retry-on", KD_LIST, NULL},
                                      {"retry-non-idempotent", KD_SCALAR, NULL},
                                      {"honor-retry-after", KD_SCALAR, NULL},
                                      {"budget", KD_SM, schema_budget},
                                      {NULL, 0, NULL}};

const struct keydef schema_breaker[] = {{"failure-threshold", KD_SCALAR, NULL},
                                        {"recovery-timeout", KD_SCALAR, NULL},
                                        {"half-open-max-calls", KD_SCALAR, NULL},
                                        {NULL, 0, NULL}};

static const struct keydef schema_default[] = {{"timeout", KD_SCALAR, NULL},
                                               {"connect-timeout", KD_SCALAR, NULL},
                                               {"deadline", KD_SCALAR, NULL},
                                               {NULL, 0, NULL}};

const struct keydef schema_tls[] = {{"verify", KD_SCALAR, NULL},      {"ca-file", KD_SCALAR, NULL},
                                    {"cert-file", KD_SCALAR, NULL},   {"key-file", KD_SCALAR, NULL},
                                    {"server-name", KD_SCALAR, NULL}, {NULL, 0, NULL}};

const struct keydef schema_endpoint[] = {
    {"url", KD_SCALAR, NULL}, {"weight", KD_SCALAR, NULL}, {NULL, 0, NULL}};

const struct keydef schema_service[] = {{"base-url", KD_SCALAR, NULL},
                                        {"endpoints", KD_LIST, NULL},
                                        {"load-balancer", KD_SCALAR, NULL},
                                        {"timeout", KD_SCALAR, NULL},
                                        {"connect-timeout", KD_SCALAR, NULL},
                                        {"deadline", KD_SCALAR, NULL},
                                        {"retry", KD_SM, schema_retry},
                                        {"circuit-breaker", KD_SM, schema_breaker},
                                        {"retry-base-delay", KD_SHORTCUT, NULL},
                                        {"circuit-breaker-failure-threshold", KD_SHORTCUT, NULL},
                                        {"circuit-breaker-recovery-timeout", KD_SHORTCUT, NULL},
                                        {"headers", KD_NOENV, NULL},
                                        {"max-inflight", KD_SCALAR, NULL},
                                        {"methods", KD_NOENV, NULL},
                                        {"tls", KD_MAP, schema_tls},
                                        {NULL, 0, NULL}};

static const struct keydef schema_client[] = {{"default", KD_MAP, schema_default},
                                              {"circuit-breaker", KD_MAP, schema_breaker},
                                              {"retry", KD_MAP, schema_retry},
                                              {"services", KD_SERVICES, schema_service},
                                              {NULL, 0, NULL}};

static const struct keydef schema_profiles[] = {{"active", KD_STEP0, NULL}, {NULL, 0, NULL}};

static const struct keydef schema_pyfly[] = {
    {"profiles", KD_MAP, schema_profiles}, {"client", KD_MAP, schema_client}, {NULL, 0, NULL}};

static const struct keydef schema_ahoyd[] = {{"listen", KD_SCALAR, NULL},
                                             {"admin-listen", KD_SCALAR, NULL},
                                             {"admin-token", KD_SCALAR, NULL},
                                             {"admin-token-file", KD_SCALAR, NULL},
                                             {"include", KD_STEP0, NULL},
                                             {"log-level", KD_SCALAR, NULL},
                                             {"access-log", KD_SCALAR, NULL},
                                             {"access-log-format", KD_SCALAR, NULL},
                                             {"max-connections", KD_SCALAR, NULL},
                                             {"max-request-body", KD_SCALAR, NULL},
                                             {"max-response-body", KD_SCALAR, NULL},
                                             {"max-header-bytes", KD_SCALAR, NULL},
                                             {"max-response-header-bytes", KD_SCALAR, NULL},
                                             {"request-timeout", KD_SCALAR, NULL},
                                             {"idle-timeout", KD_SCALAR, NULL},
                                             {"shutdown-timeout", KD_SCALAR, NULL},
                                             {"workers", KD_SCALAR, NULL},
                                             {NULL, 0, NULL}};

const struct keydef schema_top[] = {
    {"ahoyd", KD_MAP, schema_ahoyd}, {"pyfly", KD_MAP, schema_pyfly}, {NULL, 0, NULL}};

/* Report every key of map that defs does not know, with a suggestion. */
void cfg_check_keys(struct ctx *c, const struct node *map, const struct keydef *defs)
{
    if (map == NULL || map->kind != N_MAP)
        return;
    bool top = defs == schema_top;
    const char *names[32];
    size_t n = 0;
    for (const struct keydef *d = defs; d->name != NULL && n < 32; d++)
        names[n++] = d->name;
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->keys[i]->text;
        size_t j;
        for (j = 0; j < n && strcmp(names[j], k) != 0; j++)
            ;
        if (j < n || (top && strncmp(k, "x-", 2) == 0))
            continue; /* x-*: top-level extension keys, a home for anchors */
        const char *s = cfg_suggest(k, names, n);
        if (s != NULL)
            cfg_err(c, map->keys[i], NULL, "unknown key '%s'; did you mean '%s'?", cfg_show(c, k),
                    s);
        else
            cfg_err(c, map->keys[i], NULL, "unknown key '%s'", cfg_show(c, k));
    }
}

/* The scalar text of a value, or NULL after reporting why it is not one. */
const char *cfg_text(struct ctx *c, const struct node *n, const char *key, const char *what)
{
    if (n->broken)
        return NULL;
    if (n->kind != N_SCALAR) {
        cfg_err(c, n, key, "expected %s, got %s", what, node_kind_name(n));
        return NULL;
    }
    if (n->is_null) {
        cfg_err(c, n, key, "missing value (expected %s)", what);
        return NULL;
    }
    return n->text;
}

/* A string value: null reads as "". */
const char *cfg_string(struct ctx *c, const struct node *n, const char *key)
{
    if (n->broken)
        return NULL;
    if (n->kind != N_SCALAR) {
        cfg_err(c, n, key, "expected a string, got %s", node_kind_name(n));
        return NULL;
    }
    return n->is_null ? "" : n->text;
}

/* A sub-map of the schema: NULL when absent or null, or after an error. */
struct node *cfg_section(struct ctx *c, struct node *parent, const char *key,
                         const struct keydef *defs)
{
    struct node *n = node_get(parent, key);
    if (n == NULL || (n->kind == N_SCALAR && n->is_null))
        return NULL;
    if (n->kind != N_MAP) {
        cfg_err(c, n, key, "expected a map, got %s", node_kind_name(n));
        return NULL;
    }
    if (defs != NULL)
        cfg_check_keys(c, n, defs);
    return n;
}

/* The rd_* readers: *val and *prov hold the inherited value on entry and are
 * replaced when map has a valid value for key. They return the node read. */
struct node *cfg_read_duration(struct ctx *c, struct node *map, const char *key, bool zero_ok,
                               int64_t *val, const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    int64_t v;
    if (n == NULL || (t = cfg_text(c, n, key, "a duration")) == NULL)
        return n;
    if (units_parse_duration(t, &v) != 0) {
        cfg_err(c, n, key, "bad duration '%s' (expected e.g. 250ms, 1.5s, 2m, 1h)", cfg_show(c, t));
        return n;
    }
    if (v == 0 && !zero_ok) {
        cfg_err(c, n, key, "must be greater than 0");
        return n;
    }
    *val = v;
    *prov = cfg_origin(c, n);
    return n;
}

static struct node *cfg_read_size(struct ctx *c, struct node *map, const char *key, uint64_t *val,
                                  const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    uint64_t v;
    if (n == NULL || (t = cfg_text(c, n, key, "a size")) == NULL)
        return n;
    if (units_parse_size(t, &v) != 0) {
        cfg_err(c, n, key, "bad size '%s' (expected e.g. 512, 32KiB, 8MiB, 1GiB)", cfg_show(c, t));
        return n;
    }
    if (v == 0) {
        cfg_err(c, n, key, "must be greater than 0");
        return n;
    }
    *val = v;
    *prov = cfg_origin(c, n);
    return n;
}

bool cfg_conv_int(struct ctx *c, struct node *n, const char *key, int64_t min, int64_t max,
                  int64_t *out)
{
    const char *t = cfg_text(c, n, key, "an integer");
    if (t == NULL)
        return false;
    if (units_parse_int(t, INT64_MIN, INT64_MAX, out) != 0) {
        int64_t neg;
        if (t[0] == '-' && units_parse_int(t + 1, 0, INT64_MAX, &neg) == 0 && neg > 0)
            cfg_err(c, n, key, "must be at least %lld, got %s", (long long)min, cfg_show(c, t));
        else
            cfg_err(c, n, key, "expected an integer, got '%s'", cfg_show(c, t));
        return false;
    }
    if (*out < min) {
        cfg_err(c, n, key, "must be at least %lld, got %lld", (long long)min, (long long)*out);
        return false;
    }
    if (*out > max) {
        cfg_err(c, n, key, "must be at most %lld, got %lld", (long long)max, (long long)*out);
        return false;
    }
    return true;
}

struct node *cfg_read_int(struct ctx *c, struct node *map, const char *key, int64_t min,
                          int64_t max, int64_t *val, const char **prov)
{
    struct node *n = node_get(map, key);
    int64_t v;
    if (n != NULL && cfg_conv_int(c, n, key, min, max, &v)) {
        *val = v;
        *prov = cfg_origin(c, n);
    }
    return n;
}

struct node *cfg_read_int32(struct ctx *c, struct node *map, const char *key, int min, int max,
                            int *val, const char **prov)
{
    int64_t v = *val;
    struct node *n = cfg_read_int(c, map, key, min, max, &v, prov);
    *val = (int)v;
    return n;
}

struct node *cfg_read_bool(struct ctx *c, struct node *map, const char *key, bool *val,
                           const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    bool v;
    if (n == NULL || (t = cfg_text(c, n, key, "a boolean")) == NULL)
        return n;
    if (units_parse_bool(t, &v) != 0) {
        cfg_err(c, n, key, "expected true or false (or yes/no, on/off), got '%s'", cfg_show(c, t));
        return n;
    }
    *val = v;
    *prov = cfg_origin(c, n);
    return n;
}

/* One of names[] (exact, lower-case). */
struct node *cfg_read_enum(struct ctx *c, struct node *map, const char *key,
                           const char *const *names, size_t n_names, int *val, const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    if (n == NULL || (t = cfg_text(c, n, key, "a name")) == NULL)
        return n;
    for (size_t i = 0; i < n_names; i++) {
        if (strcmp(t, names[i]) == 0) {
            *val = (int)i;
            *prov = cfg_origin(c, n);
            return n;
        }
    }
    struct strbuf b = {0};
    strbuf_add(&b, "", 0);
    for (size_t i = 0; i < n_names; i++) {
        strbuf_puts(&b, i == 0 ? "" : i + 1 == n_names ? " or " : ", ");
        strbuf_puts(&b, names[i]);
    }
    cfg_err(c, n, key, "expected %s, got '%s'", b.s, cfg_show(c, t));
    free(b.s);
    return n;
}

struct node *cfg_read_string(struct ctx *c, struct node *map, const char *key, const char **val,
                             const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    if (n == NULL || (t = cfg_string(c, n, key)) == NULL)
        return n;
    *val = t;
    *prov = cfg_origin(c, n);
    return n;
}

/* A non-negative decimal number (budget ratio and rate). */
struct node *cfg_read_number(struct ctx *c, struct node *map, const char *key, double *val,
                             const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    if (n == NULL || (t = cfg_text(c, n, key, "a number")) == NULL)
        return n;
    const char *p = t;
    size_t digits = 0;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits++;
    }
    if (digits > 0 && *p == '.' && isdigit((unsigned char)p[1])) {
        p++;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (digits == 0 || *p != '\0') {
        cfg_err(c, n, key, "expected a number >= 0 like 0.2 or 10, got '%s'", cfg_show(c, t));
        return n;
    }
    double v = strtod(t, NULL);
    if (v > 1e6) {
        cfg_err(c, n, key, "must be at most 1000000, got %s", cfg_show(c, t));
        return n;
    }
    *val = v;
    *prov = cfg_origin(c, n);
    return n;
}

/* A path relative to the main file's directory. */
const char *cfg_rel_path(struct ctx *c, const char *p)
{
    if (p[0] == '\0' || p[0] == '/')
        return p;
    return arena_printf(&c->a, "%s%s", c->dir, p);
}

static void conv_admin_token(struct ctx *c, struct config *cfg, struct node *ahoyd, struct dnode *d)
{
    const char *tok = "", *tokp = "default", *file = "", *filep = "default";
    struct node *tn = cfg_read_string(c, ahoyd, "admin-token", &tok, &tokp);
    struct node *fn = cfg_read_string(c, ahoyd, "admin-token-file", &file, &filep);
    file = cfg_rel_path(c, file);
    if (tok[0] != '\0' && file[0] != '\0') {
        cfg_err(c, fn, "admin-token-file", "set admin-token or admin-token-file, not both");
    } else if (tok[0] != '\0') {
        cfg->admin_token = xstrdup(tok);
    } else if (file[0] != '\0') {
        FILE *f = fopen(file, "rb");
        char buf[MAX_TOKEN_FILE_BYTES + 1];
        size_t len = 0;
        if (f == NULL) {
            cfg_err(c, fn, "admin-token-file", "cannot open %s: %s", cfg_show(c, file),
                    strerror(errno));
        } else {
            len = fread(buf, 1, sizeof(buf), f);
            fclose(f);
            while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                               buf[len - 1] == ' ' || buf[len - 1] == '\t'))
                len--;
            buf[len] = '\0';
            if (len > MAX_TOKEN_FILE_BYTES)
                cfg_err(c, fn, "admin-token-file", "%s is too large for a token",
                        cfg_show(c, file));
            else if (len == 0)
                cfg_err(c, fn, "admin-token-file", "%s is empty", cfg_show(c, file));
            else
                cfg->admin_token = xstrdup(buf);
        }
    }
    if (cfg->admin_token != NULL) {
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

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void cfg_convert(struct ctx *c, struct config *cfg, const struct items *inc,
                 const struct items *prof, const char *inc_prov, const char *prof_prov)
{
    struct node *root = c->root;
    cfg_check_keys(c, root, schema_top);
    struct node *ahoyd = cfg_section(c, root, "ahoyd", schema_ahoyd);
    struct dnode *da = dump_map(c, c->dump, "ahoyd", NULL);
    const char *p;

    cfg_conv_listen(c, ahoyd, "listen", "127.0.0.1:8080", false, &cfg->listen, da);
    cfg_conv_listen(c, ahoyd, "admin-listen", "127.0.0.1:9901", true, &cfg->admin_listen, da);
    conv_admin_token(c, cfg, ahoyd, da);

    cfg->include = xcalloc(inc->n + 1, sizeof(char *));
    for (size_t i = 0; i < inc->n; i++)
        cfg->include[cfg->n_include++] = xstrdup(inc->v[i].text);
    if (c->dump != NULL && inc->n > 0) {
        struct strbuf b = {0};
        strbuf_puts(&b, "include: [");
        for (size_t i = 0; i < inc->n; i++) {
            strbuf_puts(&b, i ? ", " : "");
            strbuf_puts(&b, dump_str(c, inc->v[i].text));
        }
        strbuf_puts(&b, "]  # ");
        strbuf_puts(&b, inc_prov);
        strbuf_puts(&b, " (already merged into this output)");
        dump_add(c, da, D_COMMENT, NULL, arena_strdup(&c->a, b.s), NULL);
        free(b.s);
    }

    /* log level: -l beats AHOYD_LOG_LEVEL (already in the tree) beats the files */
    int lvl = LOG_LEVEL_INFO;
    p = "default";
    if (c->opts->log_level != NULL) {
        struct src s = {NULL, 0, 0, 0, "--log-level"};
        size_t i;
        for (i = 0; i < 4 && strcmp(c->opts->log_level, level_names[i]) != 0; i++)
            ;
        if (i < 4) {
            lvl = (int)i;
            p = "command line";
        } else {
            cfg_err_at(c, &s, NULL, "expected error, warn, info or debug, got '%s'",
                       cfg_show(c, c->opts->log_level));
        }
        int ignored = lvl;
        const char *ip = p;
        cfg_read_enum(c, ahoyd, "log-level", level_names, 4, &ignored, &ip);
    } else {
        cfg_read_enum(c, ahoyd, "log-level", level_names, 4, &lvl, &p);
    }
    cfg->log_level = (enum log_level)lvl;
    dump_leaf(c, da, "log-level", level_names[lvl], p);

    const char *al = "stderr";
    p = "default";
    struct node *aln = cfg_read_string(c, ahoyd, "access-log", &al, &p);
    bool b;
    if (units_parse_bool(al, &b) == 0 && !b)
        al = "off";
    if (strcmp(al, "stderr") != 0 && strcmp(al, "off") != 0 && al[0] != '/') {
        cfg_err(c, aln, "access-log", "expected stderr, off or an absolute path, got '%s'",
                cfg_show(c, al));
        al = "stderr";
    }
    cfg->access_log = xstrdup(al);
    dump_leaf(c, da, "access-log", dump_str(c, al), p);

    static const char *const fmt_names[] = {"logfmt", "json"};
    int fmt = ACCESS_LOG_LOGFMT;
    p = "default";
    cfg_read_enum(c, ahoyd, "access-log-format", fmt_names, 2, &fmt, &p);
    cfg->access_log_format = (enum access_log_format)fmt;
    dump_leaf(c, da, "access-log-format", fmt_names[fmt], p);

    cfg->max_connections = 4096;
    p = "default";
    cfg_read_int(c, ahoyd, "max-connections", 1, 1048576, &cfg->max_connections, &p);
    dump_leaf(c, da, "max-connections", dump_int(c, cfg->max_connections), p);

    cfg->workers = 1;
    p = "default";
    cfg_read_int(c, ahoyd, "workers", 1, WORKERS_MAX, &cfg->workers, &p);
    dump_leaf(c, da, "workers", dump_int(c, cfg->workers), p);

    static const struct {
        const char *key;
        size_t off;
        uint64_t def;
    } sizes[] = {
        {"max-request-body", offsetof(struct config, max_request_body), 8u << 20},
        {"max-response-body", offsetof(struct config, max_response_body), 64u << 20},
        {"max-header-bytes", offsetof(struct config, max_header_bytes), 32u << 10},
        {"max-response-header-bytes", offsetof(struct config, max_response_header_bytes),
         32u << 10},
    };
    for (size_t i = 0; i < 4; i++) {
        uint64_t *v = (uint64_t *)((char *)cfg + sizes[i].off);
        *v = sizes[i].def;
        p = "default";
        cfg_read_size(c, ahoyd, sizes[i].key, v, &p);
        dump_leaf(c, da, sizes[i].key, dump_size(c, *v), p);
    }
    static const struct {
        const char *key;
        size_t off;
        int64_t def;
    } times[] = {
        {"request-timeout", offsetof(struct config, request_timeout_ms), 30000},
        {"idle-timeout", offsetof(struct config, idle_timeout_ms), 60000},
        {"shutdown-timeout", offsetof(struct config, shutdown_timeout_ms), 10000},
    };
    for (size_t i = 0; i < 3; i++) {
        int64_t *v = (int64_t *)((char *)cfg + times[i].off);
        *v = times[i].def;
        p = "default";
        cfg_read_duration(c, ahoyd, times[i].key, true, v, &p);
        dump_leaf(c, da, times[i].key, dump_duration(c, *v), p);
    }

    /* pyfly */
    struct node *pyfly = cfg_section(c, root, "pyfly", schema_pyfly);
    struct dnode *dp = dump_map(c, c->dump, "pyfly", NULL);
    cfg_section(c, pyfly, "profiles", schema_profiles);
    cfg->profiles = xcalloc(prof->n + 1, sizeof(char *));
    for (size_t i = 0; i < prof->n; i++)
        cfg->profiles[cfg->n_profiles++] = xstrdup(prof->v[i].text);
    if (c->dump != NULL && prof->n > 0) {
        struct strbuf sb = {0};
        strbuf_puts(&sb, "profiles: {active: \"");
        for (size_t i = 0; i < prof->n; i++) {
            strbuf_puts(&sb, i ? "," : "");
            strbuf_puts(&sb, prof->v[i].text);
        }
        strbuf_puts(&sb, "\"}  # ");
        strbuf_puts(&sb, prof_prov);
        strbuf_puts(&sb, " (already merged into this output)");
        dump_add(c, dp, D_COMMENT, NULL, arena_strdup(&c->a, sb.s), NULL);
        free(sb.s);
    }
    struct node *client = cfg_section(c, pyfly, "client", schema_client);
    struct dnode *dc = dump_map(c, dp, "client", NULL);

    struct globals g;
    struct node *def = cfg_section(c, client, "default", schema_default);
    g.timeout = 30000;
    g.connect_timeout = 5000;
    g.deadline = 0;
    g.timeout_prov = g.connect_timeout_prov = g.deadline_prov = "default";
    cfg_read_duration(c, def, "timeout", false, &g.timeout, &g.timeout_prov);
    cfg_read_duration(c, def, "connect-timeout", false, &g.connect_timeout,
                      &g.connect_timeout_prov);
    cfg_read_duration(c, def, "deadline", true, &g.deadline, &g.deadline_prov);
    cfg->default_timeout_ms = g.timeout;
    cfg->default_connect_timeout_ms = g.connect_timeout;
    cfg->default_deadline_ms = g.deadline;
    struct dnode *dd = dump_map(c, dc, "default", NULL);
    dump_leaf(c, dd, "timeout", dump_duration(c, g.timeout), g.timeout_prov);
    dump_leaf(c, dd, "connect-timeout", dump_duration(c, g.connect_timeout),
              g.connect_timeout_prov);
    dump_leaf(c, dd, "deadline", dump_duration(c, g.deadline), g.deadline_prov);

    cfg_breaker_defaults(&g.breaker, &g.breaker_prov);
    cfg_read_breaker(c, cfg_section(c, client, "circuit-breaker", schema_breaker), &g.breaker,
                     &g.breaker_prov);
    cfg->breaker = g.breaker;
    cfg_dump_breaker(c, dump_map(c, dc, "circuit-breaker", NULL), &g.breaker, &g.breaker_prov);

    cfg_retry_defaults(&g.retry, &g.retry_prov);
    cfg_read_retry(c, cfg_section(c, client, "retry", schema_retry), &g.retry, &g.retry_prov);
    cfg->retry = g.retry;
    cfg_dump_retry(c, dump_map(c, dc, "retry", NULL), &g.retry, &g.retry_prov);

    struct node *svcs = cfg_section(c, client, "services", NULL);
    struct dnode *dsv = svcs != NULL && svcs->n > 0
                            ? dump_map(c, dc, "services", NULL)
                            : dump_add(c, dc, D_MAP, "services", NULL, "default");
    if (svcs != NULL) {
        cfg->services = xcalloc(svcs->n, sizeof(*cfg->services));
        for (size_t i = 0; i < svcs->n; i++)
            cfg_conv_service(c, cfg, svcs->keys[i], svcs->vals[i], &g, dsv);
    }
}
