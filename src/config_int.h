/*
 * config_int.h - what the config_*.c files share, private to them: the
 * node tree, the load context, messages, the schema tables and each step's
 * entry points. Nothing outside src/config*.c includes it.
 */
#ifndef AHOYD_CONFIG_INT_H
#define AHOYD_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Allocation failure while loading configuration is not recoverable in any
 * useful way; like most daemons' xmalloc() we abort. */
static inline void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static inline char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static inline char *xvasprintf(const char *fmt, va_list ap)
{
    char *s;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    return s;
}

static inline char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

struct arena {
    struct arena_block *head;
};

/* Where a value came from: a file position, or a label ("env NAME", "--profile"). */
struct src {
    const char *file;
    int file_idx;  /* load order, to sort messages */
    int line, col; /* 1-based; line 0 = the file as a whole */
    const char *label;
};

enum nkind { N_SCALAR, N_SEQ, N_MAP };

struct node {
    enum nkind kind;
    bool is_null;   /* plain "", "~" or "null" */
    bool plain;     /* plain (unquoted) scalar */
    bool resolved;  /* placeholders substituted (or never to be) */
    bool resolving; /* being substituted: a reference back here is a cycle */
    bool broken;    /* a placeholder failed (reported): no further checks */
    int height;     /* nesting below this node */
    char *text;     /* scalar */
    size_t n, cap;
    struct node **keys; /* map keys (scalars) */
    struct node **vals; /* map values or sequence items */
    struct src src;
};

struct msg {
    char *text;
    int file_idx;
    int line, col;
    size_t seq;
};

struct msglist {
    struct msg *v;
    size_t n, cap;
};

/* Rendered --dump-config output, built while converting. */
enum dkind { D_MAP, D_LEAF, D_SEQ, D_COMMENT };

struct dnode {
    enum dkind kind;
    const char *key;  /* NULL for sequence items */
    const char *text; /* leaf value or comment */
    const char *prov; /* origin comment, or NULL */
    struct dnode *first, *last, *next;
};

/* A text list item with its origin. */
struct item {
    const char *text;
    struct src src;
};

struct items {
    struct item *v;
    size_t n;
};

/* Where the values of one section (a struct) came from, by the value's offset in
 * that struct: "FILE:LINE", a label ("env NAME") or "default". Copied with the
 * values when a service starts from the global policy. */
#define ORIGINS_MAX 96
struct origins {
    size_t n;
    size_t off[ORIGINS_MAX];
    const char *at[ORIGINS_MAX];
};

/* The struct a table's rows write into (struct config, or a struct
 * service_conf: the global policy or one service) and the origins of its values. */
struct sect {
    void *dst;
    struct origins *o;
};

/* How a key may be given, for unknown-key checks and environment overrides. */
enum kd {
    KD_SCALAR,   /* env: the value */
    KD_LIST,     /* env: comma-separated */
    KD_MAP,      /* a map of known keys; env: its keys */
    KD_SM,       /* a scalar or a map (retry, circuit-breaker, budget); env: both */
    KD_NOENV,    /* headers, methods: maps, not overridable (a warning says so) */
    KD_SHORTCUT, /* retry-base-delay...: no variable of their own */
    KD_SERVICES, /* the services map: env per declared service */
    KD_STEP0,    /* include, profiles.active: read before everything else */
};

struct key;
struct ctx;
/* A reader: the value of key k in map (absent: nothing to do) into s, its origin
 * recorded; d is where a composite value (a map, a list) dumps itself. */
typedef void key_read_fn(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                         struct dnode *d);
/* The --dump-config entry of key k from the value in s. */
typedef void key_dump_fn(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d);
struct key_type {
    key_read_fn *read;
    key_dump_fn *dump;
};

/* The names of an enum, indexed by value (the arg of an enum row). */
struct enum_names {
    const char *const *v;
    size_t n;
};

/*
 * One row of the schema: a key, how it may be given, how it is read and
 * dumped, where its value goes and its default. Tables end with a row whose
 * name is NULL.
 */
struct key {
    const char *name;
    enum kd kind;
    const struct key_type *type; /* NULL: read by another row's type (said beside it) */
    size_t off;                  /* the value's offset in the section's struct */
    int64_t min, max;            /* integers: range; durations: min 1 = must be > 0 */
    const char *def;             /* the default as one would write it; NULL: none/inherited */
    const struct key *sub;       /* maps: their keys; shortcuts: the table of the field */
    const void *arg;             /* names of an enum; a shortcut's field; listen: off_ok */
};

struct ctx {
    struct arena a;
    const struct config_options *opts;
    struct msglist errors, warnings;
    size_t seq;
    const char **files; /* every file loaded, in order (file_idx) */
    size_t n_files, cap_files;
    char **real_paths; /* realpath() of the files, to skip duplicates */
    const char *dir;   /* main file's directory with trailing '/', or "" */
    struct node *root;
    struct dnode *dump; /* NULL unless dumping */
    int ref_depth;      /* placeholders resolving other keys' placeholders */
    bool defaulting;    /* applying the table's defaults (no command-line options) */
    struct config *cfg; /* being filled */
    /* step 0: the include globs and the active profiles, with their origins */
    struct items *inc, *prof;
    const char *inc_prov, *prof_prov;
    /* pyfly.client.*: the policy every service starts from */
    struct service_conf policy;
    struct origins policy_origins;
};

#define LABEL_IDX (1 << 30)

void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(struct arena *a);
void cfg_err_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cfg_warn_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error about node n; key (may be NULL) names the key it is the value of. */
void cfg_err(struct ctx *c, const struct node *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *cfg_show(struct ctx *c, const char *s);
const char *cfg_origin(struct ctx *c, const struct node *n);
const char *cfg_pos(struct ctx *c, const struct src *s);
struct node *node_new(struct ctx *c, enum nkind kind, const struct src *s);
struct node *node_new_scalar(struct ctx *c, const char *text, const struct src *s);
void node_push(struct ctx *c, struct node *n, struct node *key, struct node *val);
long node_index(const struct node *map, const char *key);
struct node *node_get(const struct node *map, const char *key);
struct node *node_get_key(const struct node *map, const char *key);
void node_remove(struct node *map, size_t i);
const char *node_kind_name(const struct node *n);
const char *cfg_suggest(const char *word, const char *const *cands, size_t n);
void cfg_take_messages(struct msglist *l, char ***out, size_t *n_out);
bool cfg_already_loaded(struct ctx *c, const char *path);
struct node *cfg_load_file(struct ctx *c, const char *path);
void cfg_resolve_tree(struct ctx *c, struct node *n, const char *key);
bool cfg_list_items(struct ctx *c, struct node *n, const char *key, bool env_only,
                    struct items *out);
void cfg_load_includes(struct ctx *c, const struct items *inc);
void cfg_load_profiles(struct ctx *c, const struct items *prof);
void cfg_apply_env(struct ctx *c);
void cfg_step0(struct ctx *c, struct items *inc, const char **inc_prov, struct items *prof,
               const char **prof_prov);
struct dnode *dump_add(struct ctx *c, struct dnode *parent, enum dkind kind, const char *key,
                       const char *text, const char *prov);
struct dnode *dump_map(struct ctx *c, struct dnode *parent, const char *key, const char *prov);
void dump_leaf(struct ctx *c, struct dnode *parent, const char *key, const char *text,
               const char *prov);
const char *dump_str(struct ctx *c, const char *s);
const char *dump_duration(struct ctx *c, int64_t ms);
const char *dump_size(struct ctx *c, uint64_t v);
const char *dump_int(struct ctx *c, int64_t v);
const char *dump_float(struct ctx *c, double v);
void dump_print(FILE *out, const struct dnode *d, int indent, bool dash);

/* ---- config_schema.c: the tables, the walk, the value types -------------------------- */

extern const struct key schema_top[];     /* the whole file: ahoyd, pyfly */
extern const struct key schema_retry[];   /* pyfly.client.retry, a service's retry map */
extern const struct key schema_breaker[]; /* pyfly.client.circuit-breaker, likewise */
extern const struct key schema_service[]; /* pyfly.client.services.NAME */

/* Report every key of map that rows does not know, with a suggestion. */
void cfg_check_keys(struct ctx *c, const struct node *map, const struct key *rows);
/* Read (and dump into d) every row of rows from map; with defaults, each row's
 * default first (a row without one keeps the value already in s). */
void schema_walk(struct ctx *c, const struct key *rows, struct node *map, struct sect *s,
                 struct dnode *d, bool defaults);
/* The dump entries of every row of rows. */
void schema_dump(struct ctx *c, const struct key *rows, const struct sect *s, struct dnode *d);
/* The row named name, NULL if none. */
const struct key *schema_find(const struct key *rows, const char *name);
void *schema_field(const struct sect *s, const struct key *k);
void schema_set_origin(struct sect *s, const struct key *k, const char *at);
const char *schema_origin(const struct sect *s, const struct key *k);

void cfg_convert(struct ctx *c);
/* The secret in file (trailing white space cut; at most 4 KiB, not empty, no NUL byte),
 * malloc'd, or NULL after an error at node at; what names the file in the messages
 * ("token file"). */
char *cfg_read_secret_file(struct ctx *c, const struct node *at, const char *key,
                           const char *file, const char *what);

/* ---- config_value.c: the value types ------------------------------------------------ */

extern const struct key_type type_duration, type_size, type_int, type_int32, type_bool, type_enum,
    type_string, type_path, type_number, type_section, type_percent;
/* The scalar text of a value, or NULL after reporting why it is not one. */
const char *cfg_text(struct ctx *c, const struct node *n, const char *key, const char *what);
/* A string value: null reads as "". */
const char *cfg_string(struct ctx *c, const struct node *n, const char *key);
/* A sub-map of the schema: NULL when absent or null, or after an error. */
struct node *cfg_section(struct ctx *c, struct node *parent, const char *key,
                         const struct key *rows);
bool cfg_conv_int(struct ctx *c, struct node *n, const char *key, int64_t min, int64_t max,
                  int64_t *out);
/* The readers behind the types: *val and *prov hold the value in place on entry
 * and are replaced when map has a valid value for key. They return the node read. */
struct node *cfg_read_enum(struct ctx *c, struct node *map, const char *key,
                           const char *const *names, size_t n_names, int *val, const char **prov);
struct node *cfg_read_string(struct ctx *c, struct node *map, const char *key, const char **val,
                             const char **prov);
/* A path relative to the main file's directory. */
const char *cfg_rel_path(struct ctx *c, const char *p);
/* Set row k's malloc'd string field to a copy of v (NULL for ""), from at. */
void cfg_store_string(struct sect *s, const struct key *k, const char *v, const char *at);
/* The dump of a string field (NULL shows as ""). */
void dump_string_row(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d);
/* A policy that is a switch or a map of its keys: false turns it off, true turns
 * it on with its keys' defaults where true_ok (else an error), a map turns it on
 * and is walked; expected is the error's "expected ..." text. Its dump is off, or
 * the map. */
void cfg_read_switch_map(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                         bool true_ok, const char *expected);
void dump_switch_map(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d);

/* ---- config_addr.c --------------------------------------------------------------- */

extern const struct key_type type_listen;
void cfg_listen_clear(struct listen_addr *l);
void cfg_endpoint_clear(struct endpoint_conf *e);
bool cfg_parse_url(const char *s, struct endpoint_conf *e, const char **why);

/* ---- config_service.c -------------------------------------------------------------- */

extern const struct key_type type_retry_on, type_budget, type_services, type_endpoints,
    type_headers, type_methods, type_service_retry, type_service_breaker;
void cfg_service_free(struct service_conf *s);
/* A map of header names to values, checked as a service's headers are; dumped into
 * ds under key when ds is not NULL. Returns false when the value is not a map. */
bool cfg_read_header_map(struct ctx *c, struct node *h, const char *key, struct header_conf **out,
                         size_t *n_out, struct dnode *ds);
bool cfg_header_is_secret(const char *name);

/* ---- config_fleet.c: health-check, outlier ---------------------------------------- */

extern const struct key schema_health[]; /* a service's health-check map */
extern const struct key schema_outlier[]; /* a service's outlier map */
extern const struct key_type type_health_check, type_outlier, type_health_path,
    type_health_expect, type_health_headers;
extern const struct key schema_discovery[]; /* a service's discovery map: dns, etcd */
extern const struct key_type type_discovery;

/* ---- config_check.c ---------------------------------------------------------------- */

/* The warnings about values that are valid one by one but not together. */
void cfg_check_consistency(struct ctx *c);

#endif
