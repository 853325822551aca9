/*
 * config_value.c - the value types of the schema: how a scalar of each kind
 * is read (with its message when it is wrong) and rendered for --dump-config.
 *
 * A type's reader takes the map holding the key, so an absent key is simply
 * nothing to do and the value already in place (a default or an inherited
 * one) stays; on success the value and its origin are replaced. Ranges and
 * defaults are not here but in each key's row (config_schema.c).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "strbuf.h"
#include "units.h"

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
                         const struct key *rows)
{
    struct node *n = node_get(parent, key);
    if (!n || (n->kind == N_SCALAR && n->is_null))
        return NULL;
    if (n->kind != N_MAP) {
        cfg_err(c, n, key, "expected a map, got %s", node_kind_name(n));
        return NULL;
    }
    if (rows)
        cfg_check_keys(c, n, rows);
    return n;
}

/* The rd_* readers: *val and *prov hold the inherited value on entry and are
 * replaced when map has a valid value for key. They return the node read. */
static struct node *cfg_read_duration(struct ctx *c, struct node *map, const char *key,
                                      bool zero_ok, int64_t *val, const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    int64_t v;
    if (!n || (t = cfg_text(c, n, key, "a duration")) == NULL)
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

static struct node *cfg_read_size(struct ctx *c, struct node *map, const char *key, bool zero_ok,
                                  uint64_t *val, const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    uint64_t v;
    if (!n || (t = cfg_text(c, n, key, "a size")) == NULL)
        return n;
    if (units_parse_size(t, &v) != 0) {
        cfg_err(c, n, key, "bad size '%s' (expected e.g. 512, 32KiB, 8MiB, 1GiB)", cfg_show(c, t));
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

bool cfg_conv_int(struct ctx *c, struct node *n, const char *key, int64_t min, int64_t max,
                  int64_t *out)
{
    const char *t = cfg_text(c, n, key, "an integer");
    if (!t)
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

static struct node *cfg_read_int(struct ctx *c, struct node *map, const char *key, int64_t min,
                                 int64_t max, int64_t *val, const char **prov)
{
    struct node *n = node_get(map, key);
    int64_t v;
    if (n && cfg_conv_int(c, n, key, min, max, &v)) {
        *val = v;
        *prov = cfg_origin(c, n);
    }
    return n;
}

static struct node *cfg_read_int32(struct ctx *c, struct node *map, const char *key, int min,
                                   int max, int *val, const char **prov)
{
    int64_t v = *val;
    struct node *n = cfg_read_int(c, map, key, min, max, &v, prov);
    *val = (int)v;
    return n;
}

static struct node *cfg_read_bool(struct ctx *c, struct node *map, const char *key, bool *val,
                                  const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    bool v;
    if (!n || (t = cfg_text(c, n, key, "a boolean")) == NULL)
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
    if (!n || (t = cfg_text(c, n, key, "a name")) == NULL)
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
    if (!n || (t = cfg_string(c, n, key)) == NULL)
        return n;
    *val = t;
    *prov = cfg_origin(c, n);
    return n;
}

/* A non-negative decimal number (budget ratio and rate). */
static struct node *cfg_read_number(struct ctx *c, struct node *map, const char *key, double *val,
                                    const char **prov)
{
    struct node *n = node_get(map, key);
    const char *t;
    if (!n || (t = cfg_text(c, n, key, "a number")) == NULL)
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

/* ---- the types: a row's reader and renderer -------------------------------------- */

static void read_duration(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                          struct dnode *d)
{
    const char *at = NULL;
    (void)d;
    cfg_read_duration(c, map, k->name, k->min == 0, schema_field(s, k), &at);
    if (at)
        schema_set_origin(s, k, at);
}

static void dump_duration_row(struct ctx *c, const struct key *k, const struct sect *s,
                              struct dnode *d)
{
    const int64_t *v = schema_field(s, k);
    dump_leaf(c, d, k->name, dump_duration(c, *v), schema_origin(s, k));
}

static void read_size(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                      struct dnode *d)
{
    const char *at = NULL;
    (void)d;
    cfg_read_size(c, map, k->name, k->min == 0, schema_field(s, k), &at);
    if (at)
        schema_set_origin(s, k, at);
}

static void dump_size_row(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    const uint64_t *v = schema_field(s, k);
    dump_leaf(c, d, k->name, dump_size(c, *v), schema_origin(s, k));
}

static void read_int(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                     struct dnode *d)
{
    const char *at = NULL;
    (void)d;
    cfg_read_int(c, map, k->name, k->min, k->max, schema_field(s, k), &at);
    if (at)
        schema_set_origin(s, k, at);
}

static void dump_int_row(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    const int64_t *v = schema_field(s, k);
    dump_leaf(c, d, k->name, dump_int(c, *v), schema_origin(s, k));
}

static void read_int32(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                       struct dnode *d)
{
    const char *at = NULL;
    (void)d;
    cfg_read_int32(c, map, k->name, (int)k->min, (int)k->max, schema_field(s, k), &at);
    if (at)
        schema_set_origin(s, k, at);
}

static void dump_int32_row(struct ctx *c, const struct key *k, const struct sect *s,
                           struct dnode *d)
{
    const int *v = schema_field(s, k);
    dump_leaf(c, d, k->name, dump_int(c, *v), schema_origin(s, k));
}

static void read_bool(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                      struct dnode *d)
{
    const char *at = NULL;
    (void)d;
    cfg_read_bool(c, map, k->name, schema_field(s, k), &at);
    if (at)
        schema_set_origin(s, k, at);
}

static void dump_bool_row(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    const bool *v = schema_field(s, k);
    dump_leaf(c, d, k->name, *v ? "true" : "false", schema_origin(s, k));
}

/* An enum field (int-sized); k->arg is its struct enum_names. */
static void read_enum(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                      struct dnode *d)
{
    const char *at = NULL;
    int v;
    (void)d;
    memcpy(&v, schema_field(s, k), sizeof v);
    const struct enum_names *names = k->arg;
    cfg_read_enum(c, map, k->name, names->v, names->n, &v, &at);
    memcpy(schema_field(s, k), &v, sizeof v);
    if (at)
        schema_set_origin(s, k, at);
}

static void dump_enum_row(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    const struct enum_names *names = k->arg;
    int v;
    memcpy(&v, schema_field(s, k), sizeof v);
    dump_leaf(c, d, k->name, names->v[v], schema_origin(s, k));
}

void cfg_store_string(struct sect *s, const struct key *k, const char *v, const char *at)
{
    char **field = schema_field(s, k);
    free(*field);
    *field = v[0] != '\0' ? xstrdup(v) : NULL;
    schema_set_origin(s, k, at);
}

/* A malloc'd string field, NULL for ""; type_path makes it relative to the main
 * file's directory. */
static void read_text(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                      bool path)
{
    const char *at = NULL, *v = "";
    cfg_read_string(c, map, k->name, &v, &at);
    if (!at)
        return;
    if (path)
        v = cfg_rel_path(c, v);
    cfg_store_string(s, k, v, at);
}

static void read_string(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                        struct dnode *d)
{
    (void)d;
    read_text(c, k, map, s, false);
}

static void read_path(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                      struct dnode *d)
{
    (void)d;
    read_text(c, k, map, s, true);
}

void dump_string_row(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    char *const *v = schema_field(s, k);
    dump_leaf(c, d, k->name, dump_str(c, *v ? *v : ""), schema_origin(s, k));
}

static void read_number(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                        struct dnode *d)
{
    const char *at = NULL;
    (void)d;
    cfg_read_number(c, map, k->name, schema_field(s, k), &at);
    if (at)
        schema_set_origin(s, k, at);
}

static void dump_number_row(struct ctx *c, const struct key *k, const struct sect *s,
                            struct dnode *d)
{
    const double *v = schema_field(s, k);
    dump_leaf(c, d, k->name, dump_float(c, *v), schema_origin(s, k));
}

/* A percentage (int-sized): "50%" or a whole number, within the row's range (0-100). */
static void read_percent(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                         struct dnode *d)
{
    struct node *n = node_get(map, k->name);
    const char *t;
    int64_t v;
    (void)d;
    if (!n || (t = cfg_text(c, n, k->name, "a percentage")) == NULL)
        return;
    size_t len = strlen(t);
    char *num = arena_strndup(&c->a, t, len > 0 && t[len - 1] == '%' ? len - 1 : len);
    if (units_parse_int(num, INT64_MIN, INT64_MAX, &v) != 0) {
        cfg_err(c, n, k->name, "expected a percentage like 50%% or a whole number %lld-%lld, "
                "got '%s'", (long long)k->min, (long long)k->max, cfg_show(c, t));
        return;
    }
    if (v < k->min || v > k->max) {
        cfg_err(c, n, k->name, "must be between %lld%% and %lld%%, got %s", (long long)k->min,
                (long long)k->max, cfg_show(c, t));
        return;
    }
    int iv = (int)v;
    memcpy(schema_field(s, k), &iv, sizeof iv);
    schema_set_origin(s, k, cfg_origin(c, n));
}

static void dump_percent_row(struct ctx *c, const struct key *k, const struct sect *s,
                             struct dnode *d)
{
    int v;
    memcpy(&v, schema_field(s, k), sizeof v);
    dump_leaf(c, d, k->name, arena_printf(&c->a, "%d%%", v), schema_origin(s, k));
}

/* A switch or a map of its keys: budget, health-check, outlier (config_int.h). */
void cfg_read_switch_map(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                         bool true_ok, const char *expected)
{
    struct node *n = node_get(map, k->name);
    bool *enabled = schema_field(s, k);
    bool b;
    if (!n || n->broken)
        return;
    if (n->kind == N_SCALAR && !n->is_null && units_parse_bool(n->text, &b) == 0 &&
        (!b || true_ok)) {
        *enabled = b;
        schema_set_origin(s, k, cfg_origin(c, n));
        return;
    }
    if (n->kind != N_MAP) {
        cfg_err(c, n, k->name, "expected %s, got %s", expected,
                n->kind == N_SCALAR ? arena_printf(&c->a, "'%s'", cfg_show(c, n->text))
                                    : node_kind_name(n));
        return;
    }
    cfg_check_keys(c, n, k->sub);
    *enabled = true;
    schema_set_origin(s, k, cfg_origin(c, n));
    schema_walk(c, k->sub, n, s, NULL, false);
}

void dump_switch_map(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    const bool *enabled = schema_field(s, k);
    if (!*enabled)
        dump_leaf(c, d, k->name, "off", schema_origin(s, k));
    else
        schema_dump(c, k->sub, s, dump_map(c, d, k->name, NULL));
}
/* A map of known keys into the same struct: checked, walked with its defaults. */
static void read_section(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                         struct dnode *d)
{
    struct node *n = cfg_section(c, map, k->name, k->sub);
    schema_walk(c, k->sub, n, s, dump_map(c, d, k->name, NULL), true);
}

const struct key_type type_duration = {read_duration, dump_duration_row};
const struct key_type type_size = {read_size, dump_size_row};
const struct key_type type_int = {read_int, dump_int_row};
const struct key_type type_int32 = {read_int32, dump_int32_row};
const struct key_type type_bool = {read_bool, dump_bool_row};
const struct key_type type_enum = {read_enum, dump_enum_row};
const struct key_type type_string = {read_string, dump_string_row};
const struct key_type type_path = {read_path, dump_string_row};
const struct key_type type_number = {read_number, dump_number_row};
const struct key_type type_section = {read_section, NULL};
const struct key_type type_percent = {read_percent, dump_percent_row};
