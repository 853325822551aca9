/*
 * config.c - YAML files -> struct config (SPEC 2), and --dump-config.
 *
 * The pipeline, in the order of SPEC 2.3:
 *   1. every file is parsed with libyaml's event API into a small node tree
 *      that keeps FILE:LINE:COL for every node; anchors and aliases are
 *      expanded here (bounded: at most 10,000 nodes and 64 levels per file),
 *      `<<` merge keys applied and duplicate keys reported;
 *   2. step 0: `ahoyd.include` and `pyfly.profiles.active` are read from the
 *      main file (placeholders from the environment only);
 *   3. include files (name order), then profile files are deep-merged on top;
 *   4. `${NAME}` / `${NAME:default}` placeholders are substituted;
 *   5. environment overrides (canonical key paths) replace tree values;
 *   6. the tree is walked against the schema: unknown keys (with a
 *      suggestion), types, ranges and cross-field rules, filling struct config
 *      and, for --dump-config, a tree of rendered values with their origin.
 * Every error is collected (not only the first), then sorted by file and
 * position. Decisions the SPEC leaves open: top-level `x-*` keys are ignored
 * (a home for anchors, as in docker-compose); placeholders apply to values,
 * not keys, and a `${config.key}` reference takes that key's own substituted
 * value (the inserted text is never scanned again); a value whose placeholder
 * failed gets no further checks, so one mistake gives one error. Parse trees live in an arena freed at the end of the load; the
 * struct config owns plain malloc'd copies. The environment is only read from
 * config_options.env, never getenv(), so tests pass their own.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "strbuf.h"
#include "config.h"
#include "template.h"
#include "units.h"

#define MAX_NODES_PER_FILE 10000
#define MAX_DEPTH 64
#define MAX_FILE_BYTES (16 * 1024 * 1024)
#define MAX_TOKEN_FILE_BYTES 4096

/* ---- memory ---------------------------------------------------------------------- */

/* Allocation failure while loading configuration is not recoverable in any
 * useful way; like most daemons' xmalloc() we abort. */
static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static char *xvasprintf(const char *fmt, va_list ap)
{
    char *s;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    return s;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
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

static void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->head == NULL || a->head->cap - a->head->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        struct arena_block *b = xmalloc(sizeof(*b) + cap);
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

static char *arena_printf(struct arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = xvasprintf(fmt, ap);
    va_end(ap);
    char *s = arena_strdup(a, tmp);
    free(tmp);
    return s;
}

static void arena_free(struct arena *a)
{
    while (a->head != NULL) {
        struct arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}


/* ---- nodes, sources, messages ------------------------------------------------------ */

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
};

#define LABEL_IDX (1 << 30)

static void msg_push(struct ctx *c, bool is_err, char *text, const struct src *s)
{
    struct msglist *l = is_err ? &c->errors : &c->warnings;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (l->v == NULL)
            abort();
    }
    struct msg *m = &l->v[l->n++];
    m->text = text;
    m->file_idx = s == NULL ? -1 : s->file != NULL ? s->file_idx : LABEL_IDX;
    m->line = s == NULL ? 0 : s->line;
    m->col = s == NULL ? 0 : s->col;
    m->seq = c->seq++;
}

static void vreport(struct ctx *c, bool is_err, const struct src *s, const char *key,
                    const char *fmt, va_list ap)
{
    char *body = xvasprintf(fmt, ap);
    char *text;
    if (s != NULL && s->file != NULL && s->line > 0) {
        if (key != NULL)
            text = xasprintf("%s:%d:%d: %s: %s", s->file, s->line, s->col, key, body);
        else
            text = xasprintf("%s:%d:%d: %s", s->file, s->line, s->col, body);
    } else if (s != NULL && s->file != NULL) {
        text = xasprintf("%s: %s", s->file, body);
    } else if (s != NULL && s->label != NULL) {
        text = xasprintf("%s: %s", s->label, body);
    } else {
        text = xstrdup(body);
    }
    free(body);
    msg_push(c, is_err, text, s);
}

static void err_src(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err_src(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, true, s, key, fmt, ap);
    va_end(ap);
}

static void warn_src(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void warn_src(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, false, s, key, fmt, ap);
    va_end(ap);
}

/* An error about node n; key (may be NULL) names the key it is the value of. */
static void err(struct ctx *c, const struct node *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err(struct ctx *c, const struct node *n, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, true, n != NULL ? &n->src : NULL, key, fmt, ap);
    va_end(ap);
}

/* User text for a message: control bytes escaped, long values cut. */
static const char *show(struct ctx *c, const char *s)
{
    struct strbuf b = {0};
    size_t i;
    strbuf_add(&b, "", 0);
    for (i = 0; s[i] != '\0' && i < 100; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\x%02x", ch);
            strbuf_puts(&b, esc);
        } else {
            strbuf_add(&b, s + i, 1);
        }
    }
    if (s[i] != '\0')
        strbuf_puts(&b, "...");
    char *r = arena_strdup(&c->a, b.s);
    free(b.s);
    return r;
}

/* "FILE:LINE" or the label: the --dump-config origin comment. */
static const char *prov_of(struct ctx *c, const struct node *n)
{
    if (n->src.file != NULL)
        return arena_printf(&c->a, "%s:%d", n->src.file, n->src.line);
    return n->src.label != NULL ? n->src.label : "default";
}

static const char *pos_of(struct ctx *c, const struct src *s)
{
    if (s->file != NULL)
        return arena_printf(&c->a, "%s:%d:%d", s->file, s->line, s->col);
    return s->label != NULL ? s->label : "?";
}

static struct node *new_node(struct ctx *c, enum nkind kind, const struct src *s)
{
    struct node *n = arena_alloc(&c->a, sizeof(*n));
    n->kind = kind;
    n->src = *s;
    return n;
}

static struct node *new_scalar(struct ctx *c, const char *text, const struct src *s)
{
    struct node *n = new_node(c, N_SCALAR, s);
    n->text = arena_strdup(&c->a, text);
    n->resolved = true;
    return n;
}

static void node_push(struct ctx *c, struct node *n, struct node *key, struct node *val)
{
    if (n->n == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 8;
        struct node **vals = arena_alloc(&c->a, cap * sizeof(*vals));
        if (n->n > 0)
            memcpy(vals, n->vals, n->n * sizeof(*vals));
        n->vals = vals;
        if (n->kind == N_MAP) {
            struct node **keys = arena_alloc(&c->a, cap * sizeof(*keys));
            if (n->n > 0)
                memcpy(keys, n->keys, n->n * sizeof(*keys));
            n->keys = keys;
        }
        n->cap = cap;
    }
    if (n->kind == N_MAP)
        n->keys[n->n] = key;
    n->vals[n->n++] = val;
    if (val->height + 1 > n->height)
        n->height = val->height + 1;
}

static long map_index(const struct node *map, const char *key)
{
    if (map == NULL || map->kind != N_MAP)
        return -1;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->text, key) == 0)
            return (long)i;
    return -1;
}

static struct node *get(const struct node *map, const char *key)
{
    long i = map_index(map, key);
    return i < 0 ? NULL : map->vals[i];
}

static struct node *get_key(const struct node *map, const char *key)
{
    long i = map_index(map, key);
    return i < 0 ? NULL : map->keys[i];
}

static void map_remove(struct node *map, size_t i)
{
    memmove(map->keys + i, map->keys + i + 1, (map->n - i - 1) * sizeof(*map->keys));
    memmove(map->vals + i, map->vals + i + 1, (map->n - i - 1) * sizeof(*map->vals));
    map->n--;
}

static const char *kind_name(const struct node *n)
{
    return n->kind == N_MAP ? "a map" : n->kind == N_SEQ ? "a list" : "a scalar";
}

/* ---- edit distance, for "did you mean" ---------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 80 || lb > 80)
        return SIZE_MAX;
    size_t row[81];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest candidate if it is close enough to be a plausible typo. */
static const char *suggest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    size_t len = strlen(word);
    if (best != NULL && best_d > 0 && (best_d <= 2 || best_d * 4 <= len))
        return best;
    return NULL;
}

/* ---- the schema ---------------------------------------------------------------------- */

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

struct keydef {
    const char *name;
    enum kd kind;
    const struct keydef *sub;
};

static const struct keydef budget_keys[] = {
    {"ratio", KD_SCALAR, NULL}, {"min-per-second", KD_SCALAR, NULL}, {NULL, 0, NULL}};
static const struct keydef retry_keys[] = {{"max-attempts", KD_SCALAR, NULL},
                                           {"base-delay", KD_SCALAR, NULL},
                                           {"max-delay", KD_SCALAR, NULL},
                                           {"jitter", KD_SCALAR, NULL},
                                           {"retry-on", KD_LIST, NULL},
                                           {"retry-non-idempotent", KD_SCALAR, NULL},
                                           {"honor-retry-after", KD_SCALAR, NULL},
                                           {"budget", KD_SM, budget_keys},
                                           {NULL, 0, NULL}};
static const struct keydef breaker_keys[] = {{"failure-threshold", KD_SCALAR, NULL},
                                             {"recovery-timeout", KD_SCALAR, NULL},
                                             {"half-open-max-calls", KD_SCALAR, NULL},
                                             {NULL, 0, NULL}};
static const struct keydef default_keys[] = {{"timeout", KD_SCALAR, NULL},
                                             {"connect-timeout", KD_SCALAR, NULL},
                                             {"deadline", KD_SCALAR, NULL},
                                             {NULL, 0, NULL}};
static const struct keydef tls_keys[] = {
    {"verify", KD_SCALAR, NULL},   {"ca-file", KD_SCALAR, NULL},     {"cert-file", KD_SCALAR, NULL},
    {"key-file", KD_SCALAR, NULL}, {"server-name", KD_SCALAR, NULL}, {NULL, 0, NULL}};
static const struct keydef endpoint_keys[] = {
    {"url", KD_SCALAR, NULL}, {"weight", KD_SCALAR, NULL}, {NULL, 0, NULL}};
static const struct keydef service_keys[] = {
    {"base-url", KD_SCALAR, NULL},
    {"endpoints", KD_LIST, NULL},
    {"load-balancer", KD_SCALAR, NULL},
    {"timeout", KD_SCALAR, NULL},
    {"connect-timeout", KD_SCALAR, NULL},
    {"deadline", KD_SCALAR, NULL},
    {"retry", KD_SM, retry_keys},
    {"circuit-breaker", KD_SM, breaker_keys},
    {"retry-base-delay", KD_SHORTCUT, NULL},
    {"circuit-breaker-failure-threshold", KD_SHORTCUT, NULL},
    {"circuit-breaker-recovery-timeout", KD_SHORTCUT, NULL},
    {"headers", KD_NOENV, NULL},
    {"max-inflight", KD_SCALAR, NULL},
    {"methods", KD_NOENV, NULL},
    {"tls", KD_MAP, tls_keys},
    {NULL, 0, NULL}};
static const struct keydef client_keys[] = {{"default", KD_MAP, default_keys},
                                            {"circuit-breaker", KD_MAP, breaker_keys},
                                            {"retry", KD_MAP, retry_keys},
                                            {"services", KD_SERVICES, service_keys},
                                            {NULL, 0, NULL}};
static const struct keydef profiles_keys[] = {{"active", KD_STEP0, NULL}, {NULL, 0, NULL}};
static const struct keydef pyfly_keys[] = {
    {"profiles", KD_MAP, profiles_keys}, {"client", KD_MAP, client_keys}, {NULL, 0, NULL}};
static const struct keydef ahoyd_keys[] = {{"listen", KD_SCALAR, NULL},
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
static const struct keydef top_keys[] = {
    {"ahoyd", KD_MAP, ahoyd_keys}, {"pyfly", KD_MAP, pyfly_keys}, {NULL, 0, NULL}};

/* Report every key of map that defs does not know, with a suggestion. */
static void check_keys(struct ctx *c, const struct node *map, const struct keydef *defs)
{
    if (map == NULL || map->kind != N_MAP)
        return;
    bool top = defs == top_keys;
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
        const char *s = suggest(k, names, n);
        if (s != NULL)
            err(c, map->keys[i], NULL, "unknown key '%s'; did you mean '%s'?", show(c, k), s);
        else
            err(c, map->keys[i], NULL, "unknown key '%s'", show(c, k));
    }
}

/* ---- YAML parsing ------------------------------------------------------------------- */

struct anchor {
    char *name;
    struct node *node;
    bool complete;
};

struct frame {
    struct node *n;
    struct node *key; /* map: the key waiting for its value */
    bool skip;        /* map: the key was not a scalar, drop the pair */
    long anchor;      /* index in anchors, or -1 */
};

struct yparse {
    struct ctx *c;
    const char *file;
    int file_idx;
    size_t count;
    bool failed;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
};

static struct src mark_src(const struct yparse *p, yaml_mark_t m)
{
    struct src s = {p->file, p->file_idx, (int)m.line + 1, (int)m.column + 1, NULL};
    return s;
}

/* Count a node against the per-file limit. */
static bool count_node(struct yparse *p, const struct src *at)
{
    if (p->failed)
        return false;
    if (++p->count > MAX_NODES_PER_FILE) {
        err_src(p->c, at, NULL, "more than %d nodes after expanding aliases", MAX_NODES_PER_FILE);
        p->failed = true;
        return false;
    }
    return true;
}

/* Deep copy for an alias; NULL once the node limit is hit. */
static struct node *copy_node(struct yparse *p, const struct node *n, const struct src *at)
{
    if (!count_node(p, at))
        return NULL;
    struct node *d = new_node(p->c, n->kind, &n->src);
    d->is_null = n->is_null;
    d->plain = n->plain;
    d->text = n->text; /* scalar text is never modified in place */
    for (size_t i = 0; i < n->n; i++) {
        struct node *k = NULL;
        if (n->kind == N_MAP) {
            k = copy_node(p, n->keys[i], at);
            if (k == NULL)
                return NULL;
        }
        struct node *v = copy_node(p, n->vals[i], at);
        if (v == NULL)
            return NULL;
        node_push(p->c, d, k, v);
    }
    return d;
}

static bool is_merge_key(const struct node *k)
{
    return k->plain && strcmp(k->text, "<<") == 0;
}

/* At the end of a mapping: report duplicate keys and apply `<<` merge keys
 * (explicit keys win; among merged maps the earlier one wins). */
static void finish_map(struct yparse *p, struct node *map)
{
    struct ctx *c = p->c;
    size_t n = map->n;
    if (n == 0)
        return;
    bool *drop = xcalloc(n, sizeof(bool));
    for (size_t i = 0; i < n; i++) {
        struct node *k = map->keys[i];
        if (is_merge_key(k)) {
            struct node *v = map->vals[i];
            bool ok = v->kind == N_MAP;
            if (v->kind == N_SEQ) {
                ok = true;
                for (size_t j = 0; j < v->n; j++)
                    ok = ok && v->vals[j]->kind == N_MAP;
            }
            if (!ok) {
                err(c, k, NULL, "merge key '<<' needs a map or a list of maps");
                drop[i] = true;
            }
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (!is_merge_key(map->keys[j]) && strcmp(map->keys[j]->text, k->text) == 0) {
                err(c, k, NULL, "duplicate key '%s' (first defined at %d:%d)", show(c, k->text),
                    map->keys[j]->src.line, map->keys[j]->src.col);
                drop[i] = true;
                break;
            }
        }
    }
    struct node *out = new_node(c, N_MAP, &map->src);
    for (size_t i = 0; i < n; i++) {
        if (drop[i])
            continue;
        if (!is_merge_key(map->keys[i])) {
            node_push(c, out, map->keys[i], map->vals[i]);
            continue;
        }
        struct node *v = map->vals[i];
        size_t n_src = v->kind == N_MAP ? 1 : v->n;
        for (size_t s = 0; s < n_src; s++) {
            struct node *from = v->kind == N_MAP ? v : v->vals[s];
            for (size_t j = 0; j < from->n; j++) {
                const char *k = from->keys[j]->text;
                bool explicit = false;
                for (size_t e = 0; e < n && !explicit; e++)
                    explicit = !is_merge_key(map->keys[e]) && strcmp(map->keys[e]->text, k) == 0;
                if (!explicit && map_index(out, k) < 0)
                    node_push(c, out, from->keys[j], from->vals[j]);
            }
        }
    }
    free(drop);
    /* the merged-in values are moved, not copied: the `<<` value is dropped */
    map->n = out->n;
    map->cap = out->cap;
    map->keys = out->keys;
    map->vals = out->vals;
    map->height = out->height;
}

static bool attach(struct yparse *p, struct frame *stack, int depth, struct node *node,
                   struct node **root)
{
    if (depth == 0) {
        *root = node;
        return true;
    }
    if (depth + node->height > MAX_DEPTH) {
        err(p->c, node, NULL, "nesting deeper than %d levels", MAX_DEPTH);
        p->failed = true;
        return false;
    }
    struct frame *f = &stack[depth - 1];
    if (f->n->kind == N_SEQ) {
        node_push(p->c, f->n, NULL, node);
    } else if (f->key == NULL) {
        if (node->kind != N_SCALAR) {
            err(p->c, node, NULL, "map keys must be scalars");
            f->skip = true;
        }
        f->key = node;
    } else {
        if (!f->skip)
            node_push(p->c, f->n, f->key, node);
        f->key = NULL;
        f->skip = false;
    }
    return true;
}

static long add_anchor(struct yparse *p, const yaml_char_t *name, struct node *n, bool complete)
{
    if (name == NULL)
        return -1;
    if (p->n_anchors == p->cap_anchors) {
        p->cap_anchors = p->cap_anchors ? p->cap_anchors * 2 : 16;
        p->anchors = realloc(p->anchors, p->cap_anchors * sizeof(*p->anchors));
        if (p->anchors == NULL)
            abort();
    }
    struct anchor *a = &p->anchors[p->n_anchors];
    a->name = arena_strdup(&p->c->a, (const char *)name);
    a->node = n;
    a->complete = complete;
    return (long)p->n_anchors++;
}

static struct anchor *find_anchor(struct yparse *p, const char *name)
{
    for (size_t i = p->n_anchors; i-- > 0;)
        if (strcmp(p->anchors[i].name, name) == 0)
            return &p->anchors[i];
    return NULL;
}

static bool scalar_is_null(const char *s)
{
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* Parse one YAML document into a node tree. Returns NULL for an empty
 * document or on failure (*failed set; the errors are reported). */
static struct node *parse_yaml(struct ctx *c, const char *file, int file_idx,
                               const unsigned char *buf, size_t len, bool *failed)
{
    struct yparse p = {c, file, file_idx, 0, false, NULL, 0, 0};
    struct frame stack[MAX_DEPTH];
    int depth = 0, docs = 0;
    struct node *root = NULL;
    yaml_parser_t parser;
    bool done = false;

    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, buf, len);
    while (!done && !p.failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            struct src s = mark_src(&p, parser.problem_mark);
            if (parser.context != NULL)
                err_src(c, &s, NULL, "YAML syntax error: %s %s", parser.problem, parser.context);
            else
                err_src(c, &s, NULL, "YAML syntax error: %s",
                        parser.problem ? parser.problem : "unknown error");
            p.failed = true;
            break;
        }
        struct src s = mark_src(&p, ev.start_mark);
        struct node *n = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                err_src(c, &s, NULL, "only one YAML document per file is supported");
                p.failed = true;
            }
            break;
        case YAML_SCALAR_EVENT:
            if (!count_node(&p, &s))
                break;
            n = new_node(c, N_SCALAR, &s);
            n->text =
                arena_strndup(&c->a, (const char *)ev.data.scalar.value, ev.data.scalar.length);
            if (strlen(n->text) != ev.data.scalar.length)
                err(c, n, NULL, "NUL character in a value");
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            n->is_null = n->plain && scalar_is_null(n->text);
            add_anchor(&p, ev.data.scalar.anchor, n, true);
            attach(&p, stack, depth, n, &root);
            break;
        case YAML_ALIAS_EVENT: {
            struct anchor *a = find_anchor(&p, (const char *)ev.data.alias.anchor);
            if (a == NULL) {
                err_src(c, &s, NULL, "undefined alias '*%s'",
                        show(c, (const char *)ev.data.alias.anchor));
                p.failed = true;
            } else if (!a->complete) {
                err_src(c, &s, NULL, "alias '*%s' refers to a node that contains it",
                        show(c, a->name));
                p.failed = true;
            } else if ((n = copy_node(&p, a->node, &s)) != NULL) {
                attach(&p, stack, depth, n, &root);
            }
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth >= MAX_DEPTH) {
                err_src(c, &s, NULL, "nesting deeper than %d levels", MAX_DEPTH);
                p.failed = true;
                break;
            }
            if (!count_node(&p, &s))
                break;
            n = new_node(c, ev.type == YAML_MAPPING_START_EVENT ? N_MAP : N_SEQ, &s);
            stack[depth].n = n;
            stack[depth].key = NULL;
            stack[depth].skip = false;
            stack[depth].anchor =
                add_anchor(&p,
                           ev.type == YAML_MAPPING_START_EVENT ? ev.data.mapping_start.anchor
                                                               : ev.data.sequence_start.anchor,
                           n, false);
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            struct frame *f = &stack[--depth];
            if (f->n->kind == N_MAP)
                finish_map(&p, f->n);
            if (f->anchor >= 0)
                p.anchors[f->anchor].complete = true;
            attach(&p, stack, depth, f->n, &root);
            break;
        }
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    free(p.anchors);
    *failed = p.failed;
    return p.failed ? NULL : root;
}

static int register_file(struct ctx *c, const char *path)
{
    if (c->n_files == c->cap_files) {
        c->cap_files = c->cap_files ? c->cap_files * 2 : 8;
        c->files = realloc(c->files, c->cap_files * sizeof(*c->files));
        c->real_paths = realloc(c->real_paths, c->cap_files * sizeof(*c->real_paths));
        if (c->files == NULL || c->real_paths == NULL)
            abort();
    }
    c->files[c->n_files] = arena_strdup(&c->a, path);
    c->real_paths[c->n_files] = realpath(path, NULL);
    return (int)c->n_files++;
}

static bool already_loaded(struct ctx *c, const char *path)
{
    char *rp = realpath(path, NULL);
    bool found = false;
    for (size_t i = 0; i < c->n_files && !found; i++)
        found = rp != NULL && c->real_paths[i] != NULL && strcmp(rp, c->real_paths[i]) == 0;
    free(rp);
    return found;
}

/* Read and parse one file. Returns its root map (an empty map for an empty
 * file) or NULL when it could not be used; errors are reported. */
static struct node *load_file(struct ctx *c, const char *path)
{
    int idx = register_file(c, path);
    struct src whole = {c->files[idx], idx, 0, 0, NULL};
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        err_src(c, &whole, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct strbuf b = {0};
    char chunk[8192];
    size_t got;
    bool too_big = false;
    strbuf_add(&b, "", 0);
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + got > MAX_FILE_BYTES) {
            too_big = true;
            break;
        }
        strbuf_add(&b, chunk, got);
    }
    bool read_err = ferror(f) != 0;
    int saved = errno;
    fclose(f);
    if (read_err || too_big) {
        if (too_big)
            err_src(c, &whole, NULL, "larger than %d bytes", MAX_FILE_BYTES);
        else
            err_src(c, &whole, NULL, "cannot read: %s", strerror(saved));
        free(b.s);
        return NULL;
    }
    bool failed = false;
    struct node *root =
        parse_yaml(c, c->files[idx], idx, (const unsigned char *)b.s, b.len, &failed);
    free(b.s);
    if (failed)
        return NULL;
    if (root == NULL || root->is_null) {
        struct src s = {c->files[idx], idx, 1, 1, NULL};
        return new_node(c, N_MAP, &s);
    }
    if (root->kind != N_MAP) {
        err(c, root, NULL, "the top level must be a map, not %s", kind_name(root));
        return NULL;
    }
    return root;
}

/* ---- layering ------------------------------------------------------------------------ */

/* Deep merge: maps key by key, everything else replaces. */
static void deep_merge(struct ctx *c, struct node *dst, struct node *src)
{
    for (size_t i = 0; i < src->n; i++) {
        long j = map_index(dst, src->keys[i]->text);
        if (j < 0) {
            node_push(c, dst, src->keys[i], src->vals[i]);
        } else if (dst->vals[j]->kind == N_MAP && src->vals[i]->kind == N_MAP) {
            deep_merge(c, dst->vals[j], src->vals[i]);
        } else {
            dst->keys[j] = src->keys[i];
            dst->vals[j] = src->vals[i];
        }
    }
}

static const char *env_get(struct ctx *c, const char *name)
{
    if (c->opts->env == NULL)
        return NULL;
    size_t len = strlen(name);
    for (char *const *e = c->opts->env; *e != NULL; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

static struct node *find_dotted(struct node *root, const char *name)
{
    char buf[256];
    if (strlen(name) >= sizeof(buf))
        return NULL;
    strcpy(buf, name);
    struct node *cur = root;
    char *save = NULL;
    for (char *part = strtok_r(buf, ".", &save); part != NULL; part = strtok_r(NULL, ".", &save)) {
        cur = get(cur, part);
        if (cur == NULL)
            return NULL;
    }
    return cur == root ? NULL : cur;
}

static void resolve_scalar(struct ctx *c, struct node *n, const char *key, bool env_only);

/*
 * Substitute ${NAME} and ${NAME:default} in a scalar: the environment first,
 * then (unless env_only) the config key of that dotted name (its own value,
 * substituted), then the default. `$${` is a literal `${`; substituted text
 * is not scanned again.
 */
static void resolve_scalar(struct ctx *c, struct node *n, const char *key, bool env_only)
{
    if (n->resolved || n->kind != N_SCALAR)
        return;
    if (strchr(n->text, '$') == NULL) {
        n->resolved = true;
        return;
    }
    n->resolving = true;
    struct strbuf out = {0};
    const char *s = n->text;
    bool ok = true;
    strbuf_add(&out, "", 0);
    while (*s != '\0') {
        if (s[0] == '$' && s[1] == '$' && s[2] == '{') {
            strbuf_puts(&out, "${");
            s += 3;
            continue;
        }
        if (!(s[0] == '$' && s[1] == '{')) {
            strbuf_add(&out, s, 1);
            s++;
            continue;
        }
        const char *close = strchr(s + 2, '}');
        if (close == NULL) {
            err(c, n, key, "unterminated placeholder '%s'", show(c, s));
            ok = false;
            break;
        }
        const char *colon = memchr(s + 2, ':', (size_t)(close - s - 2));
        const char *name_end = colon != NULL ? colon : close;
        char *name = arena_strndup(&c->a, s + 2, (size_t)(name_end - s - 2));
        char *def =
            colon != NULL ? arena_strndup(&c->a, colon + 1, (size_t)(close - colon - 1)) : NULL;
        if (name[0] == '\0') {
            err(c, n, key, "empty placeholder name in '%s'", show(c, n->text));
            ok = false;
            s = close + 1;
            continue;
        }
        const char *val = env_get(c, name);
        if (val == NULL && !env_only) {
            struct node *ref = find_dotted(c->root, name);
            if (ref != NULL && ref->kind == N_SCALAR && !ref->is_null) {
                if (ref->resolving || c->ref_depth >= 32) {
                    err(c, n, key, "placeholder '${%s}' is part of a cycle", show(c, name));
                    ok = false;
                    s = close + 1;
                    continue;
                }
                c->ref_depth++;
                resolve_scalar(c, ref, NULL, false);
                c->ref_depth--;
                if (ref->broken) {
                    ok = false; /* reported where it failed */
                    s = close + 1;
                    continue;
                }
                val = ref->text;
            }
        }
        if (val == NULL)
            val = def;
        if (val == NULL) {
            err(c, n, key, "unresolved placeholder '${%s}'", show(c, name));
            ok = false;
        } else {
            strbuf_puts(&out, val);
        }
        s = close + 1;
    }
    if (ok)
        n->text = arena_strdup(&c->a, out.s);
    n->broken = !ok;
    free(out.s);
    n->resolving = false;
    n->resolved = true;
}

static void resolve_tree(struct ctx *c, struct node *n, const char *key)
{
    if (n->kind == N_SCALAR) {
        resolve_scalar(c, n, key, false);
        return;
    }
    for (size_t i = 0; i < n->n; i++)
        resolve_tree(c, n->vals[i], n->kind == N_MAP ? n->keys[i]->text : key);
}

/* A text list item with its origin. */
struct item {
    const char *text;
    struct src src;
};

struct items {
    struct item *v;
    size_t n;
};

/* Split "a, b,c" into trimmed non-empty items. */
static void split_commas(struct ctx *c, const char *s, const struct src *src, struct items *out,
                         size_t max)
{
    const char *p = s;
    while (*p != '\0' && out->n < max) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a) {
            out->v[out->n].text = arena_strndup(&c->a, a, (size_t)(b - a));
            out->v[out->n].src = *src;
            out->n++;
        }
        p = *end == ',' ? end + 1 : end;
    }
}

/* A list-valued key: a YAML list of scalars, or one comma-separated scalar. */
static bool list_items(struct ctx *c, struct node *n, const char *key, bool env_only,
                       struct items *out)
{
    size_t max = n->kind == N_SEQ ? n->n : strlen(n->text != NULL ? n->text : "") + 1;
    out->v = arena_alloc(&c->a, (max + 1) * sizeof(*out->v));
    out->n = 0;
    if (n->kind == N_MAP) {
        err(c, n, key, "expected a list, got a map");
        return false;
    }
    if (n->kind == N_SCALAR) {
        if (n->is_null)
            return true;
        resolve_scalar(c, n, key, env_only);
        if (n->broken)
            return false;
        split_commas(c, n->text, &n->src, out, max);
        return true;
    }
    bool ok = true;
    for (size_t i = 0; i < n->n; i++) {
        struct node *it = n->vals[i];
        if (it->kind != N_SCALAR || it->is_null) {
            err(c, it, key, "list items must be scalars");
            ok = false;
            continue;
        }
        resolve_scalar(c, it, key, env_only);
        if (it->broken) {
            ok = false;
            continue;
        }
        out->v[out->n].text = it->text;
        out->v[out->n].src = it->src;
        out->n++;
    }
    return ok;
}

/* In an included or profile file, the step-0 keys are errors (SPEC 2.3 step 0). */
static void strip_step0(struct ctx *c, struct node *tree)
{
    static const char *const paths[][3] = {{"ahoyd", "include", "ahoyd.include"},
                                           {"pyfly", "profiles", "pyfly.profiles.active"}};
    for (size_t i = 0; i < 2; i++) {
        struct node *sec = get(tree, paths[i][0]);
        if (i == 1)
            sec = get(sec, paths[i][1]);
        long j = map_index(sec, i == 0 ? "include" : "active");
        if (j < 0)
            continue;
        err(c, sec->keys[j], NULL, "%s can only be set in the main file", paths[i][2]);
        map_remove(sec, (size_t)j);
    }
}

static char *glob_escape(struct ctx *c, const char *s)
{
    struct strbuf b = {0};
    strbuf_add(&b, "", 0);
    for (; *s != '\0'; s++) {
        if (strchr("*?[\\", *s) != NULL)
            strbuf_add(&b, "\\", 1);
        strbuf_add(&b, s, 1);
    }
    char *r = arena_strdup(&c->a, b.s);
    free(b.s);
    return r;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void merge_file(struct ctx *c, const char *path)
{
    struct node *t = load_file(c, path);
    if (t == NULL)
        return;
    strip_step0(c, t);
    deep_merge(c, c->root, t);
}

static void load_includes(struct ctx *c, const struct items *inc)
{
    for (size_t i = 0; i < inc->n; i++) {
        const char *pat = inc->v[i].text;
        char *full = pat[0] == '/' ? arena_strdup(&c->a, pat)
                                   : arena_printf(&c->a, "%s%s", glob_escape(c, c->dir), pat);
        glob_t g;
        int r = glob(full, GLOB_NOSORT, NULL, &g);
        if (r == GLOB_NOMATCH)
            continue;
        if (r != 0) {
            err_src(c, &inc->v[i].src, "include", "cannot expand '%s'", show(c, pat));
            continue;
        }
        qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), cmp_str);
        for (size_t k = 0; k < g.gl_pathc; k++) {
            struct stat st;
            if (stat(g.gl_pathv[k], &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            if (already_loaded(c, g.gl_pathv[k]))
                continue;
            merge_file(c, g.gl_pathv[k]);
        }
        globfree(&g);
    }
}

static bool profile_name_ok(const char *p)
{
    if (p[0] == '\0' || p[0] == '.')
        return false;
    for (; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr("_-.", *p) == NULL)
            return false;
    return true;
}

static void load_profiles(struct ctx *c, const struct items *prof)
{
    const char *path = c->opts->path;
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    const char *ext = ".yaml";
    size_t stem_len = strlen(base);
    if (dot != NULL && dot != base && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0)) {
        ext = dot;
        stem_len = (size_t)(dot - base);
    }
    for (size_t i = 0; i < prof->n; i++) {
        const char *p = prof->v[i].text;
        if (!profile_name_ok(p)) {
            err_src(c, &prof->v[i].src, NULL, "bad profile name '%s'", show(c, p));
            continue;
        }
        char *file = arena_printf(&c->a, "%s%.*s-%s%s", c->dir, (int)stem_len, base, p, ext);
        struct stat st;
        if (stat(file, &st) != 0 && errno == ENOENT) {
            warn_src(c, &prof->v[i].src, NULL, "profile '%s': file %s not found", p, file);
            continue;
        }
        if (already_loaded(c, file))
            continue;
        merge_file(c, file);
    }
}

/* ---- environment overrides ------------------------------------------------------------ */

struct envkey {
    char *name;
    const char *path[8];
    int depth;
    enum kd kind;
    bool ambiguous;
};

struct envtab {
    struct envkey *v;
    size_t n, cap;
};

static char *env_stem(struct ctx *c, const char *prefix, const char *key)
{
    char *s = arena_printf(&c->a, "%s%s%s", prefix, prefix[0] ? "_" : "", key);
    for (char *p = s; *p != '\0'; p++)
        *p = *p == '-' || *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    return s;
}

static void env_add(struct ctx *c, struct envtab *t, const char *name, const char **path, int depth,
                    enum kd kind)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->v = realloc(t->v, t->cap * sizeof(*t->v));
        if (t->v == NULL)
            abort();
    }
    struct envkey *e = &t->v[t->n++];
    memset(e, 0, sizeof(*e));
    e->name = arena_strdup(&c->a, name);
    memcpy(e->path, path, (size_t)depth * sizeof(*path));
    e->depth = depth;
    e->kind = kind;
}

static void env_gen(struct ctx *c, struct envtab *t, const char *prefix, const char **path,
                    int depth, const struct keydef *defs)
{
    for (const struct keydef *d = defs; d->name != NULL; d++) {
        if (depth >= 7)
            return;
        char *name = env_stem(c, prefix, d->name);
        path[depth] = d->name;
        switch (d->kind) {
        case KD_SCALAR:
        case KD_LIST:
        case KD_STEP0:
            env_add(c, t, name, path, depth + 1, d->kind);
            break;
        case KD_SM:
            env_add(c, t, name, path, depth + 1, d->kind);
            env_gen(c, t, name, path, depth + 1, d->sub);
            break;
        case KD_MAP:
            env_gen(c, t, name, path, depth + 1, d->sub);
            break;
        case KD_SERVICES: {
            struct node *svcs = find_dotted(c->root, "pyfly.client.services");
            if (svcs == NULL || svcs->kind != N_MAP)
                break;
            for (size_t i = 0; i < svcs->n; i++) {
                path[depth + 1] = svcs->keys[i]->text;
                env_gen(c, t, env_stem(c, name, svcs->keys[i]->text), path, depth + 2, d->sub);
            }
            break;
        }
        case KD_NOENV:
            env_add(c, t, name, path, depth + 1, d->kind);
            break;
        case KD_SHORTCUT:
            break;
        }
    }
}

static int cmp_envkey(const void *a, const void *b)
{
    return strcmp(((const struct envkey *)a)->name, ((const struct envkey *)b)->name);
}

static const char *dotted(struct ctx *c, const struct envkey *e)
{
    struct strbuf b = {0};
    strbuf_add(&b, "", 0);
    for (int i = 0; i < e->depth; i++) {
        if (i > 0)
            strbuf_puts(&b, ".");
        strbuf_puts(&b, e->path[i]);
    }
    char *r = arena_strdup(&c->a, b.s);
    free(b.s);
    return r;
}

/* Make the scalar form of retry / circuit-breaker / budget a map so that one of
 * its keys can be overridden. Returns the map, or NULL after an error. */
static struct node *env_open_map(struct ctx *c, struct node *parent, size_t i, const char *var)
{
    struct node *v = parent->vals[i];
    const char *k = parent->keys[i]->text;
    if (v->kind == N_MAP)
        return v;
    struct node *m = new_node(c, N_MAP, &v->src);
    bool b;
    int64_t attempts;
    struct src es = {NULL, 0, 0, 0, var};
    if (v->kind == N_SCALAR && v->is_null) {
        /* an empty value: becomes a map */
    } else if (v->kind == N_SCALAR && units_parse_bool(v->text, &b) == 0) {
        if (!b && strcmp(k, "budget") != 0) {
            err_src(c, &es, NULL, "not applied: %s is false at %s", k, pos_of(c, &v->src));
            return NULL;
        }
    } else if (v->kind == N_SCALAR && strcmp(k, "retry") == 0 &&
               units_parse_int(v->text, 1, INT_MAX, &attempts) == 0) {
        node_push(c, m, new_scalar(c, "max-attempts", &v->src), v);
    } else {
        err_src(c, &es, NULL, "not applied: %s at %s is not a map", k, pos_of(c, &v->src));
        return NULL;
    }
    parent->vals[i] = m;
    return m;
}

static void env_apply(struct ctx *c, const struct envkey *e, const char *value)
{
    const char *label = arena_printf(&c->a, "env %s", e->name);
    struct src s = {NULL, 0, 0, 0, label};
    struct node *val;
    if (e->kind == KD_LIST) {
        val = new_node(c, N_SEQ, &s);
        struct items it = {arena_alloc(&c->a, (strlen(value) + 1) * sizeof(struct item)), 0};
        split_commas(c, value, &s, &it, strlen(value) + 1);
        for (size_t i = 0; i < it.n; i++)
            node_push(c, val, NULL, new_scalar(c, it.v[i].text, &s));
    } else {
        val = new_scalar(c, value, &s);
    }
    struct node *cur = c->root;
    for (int d = 0; d + 1 < e->depth; d++) {
        long i = map_index(cur, e->path[d]);
        if (i < 0) {
            struct node *m = new_node(c, N_MAP, &s);
            node_push(c, cur, new_scalar(c, e->path[d], &s), m);
            cur = m;
            continue;
        }
        struct node *next = cur->vals[i];
        if (next->kind != N_MAP) {
            const char *k = e->path[d];
            if (strcmp(k, "retry") == 0 || strcmp(k, "circuit-breaker") == 0 ||
                strcmp(k, "budget") == 0 || next->is_null) {
                next = env_open_map(c, cur, (size_t)i, label);
            } else {
                err_src(c, &s, NULL, "not applied: %s at %s is not a map", k,
                        pos_of(c, &next->src));
                next = NULL;
            }
            if (next == NULL)
                return;
        }
        cur = next;
    }
    const char *last = e->path[e->depth - 1];
    long i = map_index(cur, last);
    if (i < 0) {
        node_push(c, cur, new_scalar(c, last, &s), val);
        return;
    }
    struct node *old = cur->vals[i];
    if (e->kind == KD_SM && old->kind == N_MAP) {
        /* the scalar form over a map: true keeps the map, a count sets max-attempts */
        bool b;
        int64_t n;
        if (units_parse_bool(value, &b) == 0 && b)
            return;
        if (strcmp(last, "retry") == 0 && units_parse_int(value, 0, INT_MAX, &n) == 0) {
            long j = map_index(old, "max-attempts");
            if (j >= 0)
                old->vals[j] = val;
            else
                node_push(c, old, new_scalar(c, "max-attempts", &s), val);
            return;
        }
    }
    cur->vals[i] = val;
}

static void apply_env(struct ctx *c)
{
    struct envtab t = {0};
    const char *path[8];
    env_gen(c, &t, "", path, 0, top_keys);
    qsort(t.v, t.n, sizeof(*t.v), cmp_envkey);
    for (size_t i = 0; i + 1 < t.n; i++) {
        if (strcmp(t.v[i].name, t.v[i + 1].name) == 0)
            t.v[i].ambiguous = t.v[i + 1].ambiguous = true;
    }

    /* two services whose variables share a stem */
    struct node *svcs = find_dotted(c->root, "pyfly.client.services");
    if (svcs != NULL && svcs->kind == N_MAP) {
        for (size_t i = 0; i < svcs->n; i++) {
            for (size_t j = 0; j < i; j++) {
                const char *a = env_stem(c, "", svcs->keys[j]->text);
                const char *b = env_stem(c, "", svcs->keys[i]->text);
                if (strcmp(a, b) == 0)
                    err(c, svcs->keys[i], NULL,
                        "services '%s' and '%s' map to the same environment variables "
                        "PYFLY_CLIENT_SERVICES_%s_*",
                        show(c, svcs->keys[j]->text), show(c, svcs->keys[i]->text), b);
            }
        }
    }

    for (size_t i = 0; i < t.n; i++) {
        struct envkey *e = &t.v[i];
        const char *value = env_get(c, e->name);
        if (value == NULL || e->kind == KD_STEP0)
            continue;
        if (i > 0 && strcmp(t.v[i - 1].name, e->name) == 0)
            continue; /* reported with the first of the same name */
        if (e->kind == KD_NOENV) {
            struct src s = {NULL, 0, 0, 0, arena_printf(&c->a, "env %s", e->name)};
            warn_src(c, &s, NULL,
                     "%s is a map and cannot be overridden from the environment; "
                     "ignored",
                     dotted(c, e));
            continue;
        }
        if (e->ambiguous) {
            struct src s = {NULL, 0, 0, 0, arena_printf(&c->a, "env %s", e->name)};
            err_src(c, &s, NULL, "ambiguous: matches both %s and %s", dotted(c, e),
                    dotted(c, &t.v[i + 1]));
            continue;
        }
        env_apply(c, e, value);
    }

    /* unknown PYFLY_* / AHOYD_* variables */
    const char **names = xcalloc(t.n + 1, sizeof(*names));
    for (size_t i = 0; i < t.n; i++)
        names[i] = t.v[i].name;
    for (char *const *ev = c->opts->env; ev != NULL && *ev != NULL; ev++) {
        if (strncmp(*ev, "PYFLY_", 6) != 0 && strncmp(*ev, "AHOYD_", 6) != 0)
            continue;
        const char *eq = strchr(*ev, '=');
        if (eq == NULL)
            continue;
        char *name = arena_strndup(&c->a, *ev, (size_t)(eq - *ev));
        struct envkey key = {.name = name};
        if (bsearch(&key, t.v, t.n, sizeof(*t.v), cmp_envkey) != NULL)
            continue;
        struct src s = {NULL, 0, 0, 0, arena_printf(&c->a, "env %s", name)};
        const char *sug = suggest(name, names, t.n);
        if (sug != NULL)
            warn_src(c, &s, NULL, "unknown variable; did you mean '%s'?", sug);
        else
            warn_src(c, &s, NULL, "unknown variable, ignored");
    }
    free(names);
    free(t.v);
}

/* ---- --dump-config tree --------------------------------------------------------------- */

static struct dnode *dadd(struct ctx *c, struct dnode *parent, enum dkind kind, const char *key,
                          const char *text, const char *prov)
{
    if (parent == NULL)
        return NULL;
    struct dnode *d = arena_alloc(&c->a, sizeof(*d));
    d->kind = kind;
    d->key = key;
    d->text = text;
    d->prov = prov;
    if (parent->last != NULL)
        parent->last->next = d;
    else
        parent->first = d;
    parent->last = d;
    return d;
}

static struct dnode *dmap(struct ctx *c, struct dnode *parent, const char *key, const char *prov)
{
    return dadd(c, parent, D_MAP, key, NULL, prov);
}

static void dleaf(struct ctx *c, struct dnode *parent, const char *key, const char *text,
                  const char *prov)
{
    dadd(c, parent, D_LEAF, key, text, prov);
}

/* A YAML double-quoted string that reads back as s (and never as a placeholder). */
static const char *render_str(struct ctx *c, const char *s)
{
    if (c->dump == NULL)
        return NULL;
    struct strbuf b = {0};
    strbuf_add(&b, "\"", 1);
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            strbuf_add(&b, "\\", 1);
            strbuf_add(&b, p, 1);
        } else if (ch < 0x20 || ch == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\x%02x", ch);
            strbuf_puts(&b, esc);
        } else if (ch == '$' && p[1] == '{') {
            strbuf_puts(&b, "$$");
        } else {
            strbuf_add(&b, p, 1);
        }
    }
    strbuf_add(&b, "\"", 1);
    char *r = arena_strdup(&c->a, b.s);
    free(b.s);
    return r;
}

static const char *render_duration(struct ctx *c, int64_t ms)
{
    if (ms == 0)
        return "0";
    if (ms % 3600000 == 0)
        return arena_printf(&c->a, "%lldh", (long long)(ms / 3600000));
    if (ms % 60000 == 0)
        return arena_printf(&c->a, "%lldm", (long long)(ms / 60000));
    if (ms % 1000 == 0)
        return arena_printf(&c->a, "%llds", (long long)(ms / 1000));
    return arena_printf(&c->a, "%lldms", (long long)ms);
}

static const char *render_size(struct ctx *c, uint64_t v)
{
    static const char *const unit[] = {"GiB", "MiB", "KiB"};
    static const unsigned shift[] = {30, 20, 10};
    for (size_t i = 0; i < 3; i++)
        if (v != 0 && v % (UINT64_C(1) << shift[i]) == 0)
            return arena_printf(&c->a, "%llu%s", (unsigned long long)(v >> shift[i]), unit[i]);
    return arena_printf(&c->a, "%llu", (unsigned long long)v);
}

static const char *render_int(struct ctx *c, int64_t v)
{
    return arena_printf(&c->a, "%lld", (long long)v);
}

static const char *render_float(struct ctx *c, double v)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%.15f", v);
    char *dot = strchr(buf, '.');
    if (dot != NULL) {
        char *end = buf + strlen(buf);
        while (end > dot + 2 && end[-1] == '0')
            *--end = '\0';
    }
    return arena_strdup(&c->a, buf);
}

static void dprint_children(FILE *out, const struct dnode *d, int indent, bool dash);

static void dprint_one(FILE *out, const struct dnode *d, int indent, const char *lead)
{
    if (d->kind == D_COMMENT) {
        fprintf(out, "%*s%s# %s\n", indent, "", lead, d->text);
        return;
    }
    fprintf(out, "%*s%s%s:", indent, "", lead, d->key);
    if (d->kind == D_LEAF) {
        fprintf(out, " %s", d->text);
        if (d->prov != NULL)
            fprintf(out, "  # %s", d->prov);
        fputc('\n', out);
        return;
    }
    if (d->first == NULL) {
        fprintf(out, " %s", d->kind == D_SEQ ? "[]" : "{}");
        if (d->prov != NULL)
            fprintf(out, "  # %s", d->prov);
        fputc('\n', out);
        return;
    }
    if (d->prov != NULL)
        fprintf(out, "  # %s", d->prov);
    fputc('\n', out);
    if (d->kind == D_MAP) {
        dprint_children(out, d, indent + 2, false);
    } else {
        for (const struct dnode *it = d->first; it != NULL; it = it->next)
            dprint_children(out, it, indent + 2, true);
    }
}

/* The entries of a map; with dash, as one item of a sequence. */
static void dprint_children(FILE *out, const struct dnode *d, int indent, bool dash)
{
    bool first = true;
    for (const struct dnode *ch = d->first; ch != NULL; ch = ch->next) {
        if (dash)
            dprint_one(out, ch, indent, first ? "- " : "  ");
        else
            dprint_one(out, ch, indent, "");
        first = false;
    }
}

/* ---- typed values ---------------------------------------------------------------------- */

/* The scalar text of a value, or NULL after reporting why it is not one. */
static const char *text_of(struct ctx *c, const struct node *n, const char *key, const char *what)
{
    if (n->broken)
        return NULL;
    if (n->kind != N_SCALAR) {
        err(c, n, key, "expected %s, got %s", what, kind_name(n));
        return NULL;
    }
    if (n->is_null) {
        err(c, n, key, "missing value (expected %s)", what);
        return NULL;
    }
    return n->text;
}

/* A string value: null reads as "". */
static const char *string_of(struct ctx *c, const struct node *n, const char *key)
{
    if (n->broken)
        return NULL;
    if (n->kind != N_SCALAR) {
        err(c, n, key, "expected a string, got %s", kind_name(n));
        return NULL;
    }
    return n->is_null ? "" : n->text;
}

/* A sub-map of the schema: NULL when absent or null, or after an error. */
static struct node *section(struct ctx *c, struct node *parent, const char *key,
                            const struct keydef *defs)
{
    struct node *n = get(parent, key);
    if (n == NULL || (n->kind == N_SCALAR && n->is_null))
        return NULL;
    if (n->kind != N_MAP) {
        err(c, n, key, "expected a map, got %s", kind_name(n));
        return NULL;
    }
    if (defs != NULL)
        check_keys(c, n, defs);
    return n;
}

/* The rd_* readers: *val and *prov hold the inherited value on entry and are
 * replaced when map has a valid value for key. They return the node read. */
static struct node *rd_duration(struct ctx *c, struct node *map, const char *key, bool zero_ok,
                                int64_t *val, const char **prov)
{
    struct node *n = get(map, key);
    const char *t;
    int64_t v;
    if (n == NULL || (t = text_of(c, n, key, "a duration")) == NULL)
        return n;
    if (units_parse_duration(t, &v) != 0) {
        err(c, n, key, "bad duration '%s' (expected e.g. 250ms, 1.5s, 2m, 1h)", show(c, t));
        return n;
    }
    if (v == 0 && !zero_ok) {
        err(c, n, key, "must be greater than 0");
        return n;
    }
    *val = v;
    *prov = prov_of(c, n);
    return n;
}

static struct node *rd_size(struct ctx *c, struct node *map, const char *key, uint64_t *val,
                            const char **prov)
{
    struct node *n = get(map, key);
    const char *t;
    uint64_t v;
    if (n == NULL || (t = text_of(c, n, key, "a size")) == NULL)
        return n;
    if (units_parse_size(t, &v) != 0) {
        err(c, n, key, "bad size '%s' (expected e.g. 512, 32KiB, 8MiB, 1GiB)", show(c, t));
        return n;
    }
    if (v == 0) {
        err(c, n, key, "must be greater than 0");
        return n;
    }
    *val = v;
    *prov = prov_of(c, n);
    return n;
}

static bool conv_int(struct ctx *c, struct node *n, const char *key, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *t = text_of(c, n, key, "an integer");
    if (t == NULL)
        return false;
    if (units_parse_int(t, INT64_MIN, INT64_MAX, out) != 0) {
        int64_t neg;
        if (t[0] == '-' && units_parse_int(t + 1, 0, INT64_MAX, &neg) == 0 && neg > 0)
            err(c, n, key, "must be at least %lld, got %s", (long long)min, show(c, t));
        else
            err(c, n, key, "expected an integer, got '%s'", show(c, t));
        return false;
    }
    if (*out < min) {
        err(c, n, key, "must be at least %lld, got %lld", (long long)min, (long long)*out);
        return false;
    }
    if (*out > max) {
        err(c, n, key, "must be at most %lld, got %lld", (long long)max, (long long)*out);
        return false;
    }
    return true;
}

static struct node *rd_int(struct ctx *c, struct node *map, const char *key, int64_t min,
                           int64_t max, int64_t *val, const char **prov)
{
    struct node *n = get(map, key);
    int64_t v;
    if (n != NULL && conv_int(c, n, key, min, max, &v)) {
        *val = v;
        *prov = prov_of(c, n);
    }
    return n;
}

static struct node *rd_int32(struct ctx *c, struct node *map, const char *key, int min, int max,
                             int *val, const char **prov)
{
    int64_t v = *val;
    struct node *n = rd_int(c, map, key, min, max, &v, prov);
    *val = (int)v;
    return n;
}

static struct node *rd_bool(struct ctx *c, struct node *map, const char *key, bool *val,
                            const char **prov)
{
    struct node *n = get(map, key);
    const char *t;
    bool v;
    if (n == NULL || (t = text_of(c, n, key, "a boolean")) == NULL)
        return n;
    if (units_parse_bool(t, &v) != 0) {
        err(c, n, key, "expected true or false (or yes/no, on/off), got '%s'", show(c, t));
        return n;
    }
    *val = v;
    *prov = prov_of(c, n);
    return n;
}

/* One of names[] (exact, lower-case). */
static struct node *rd_enum(struct ctx *c, struct node *map, const char *key,
                            const char *const *names, size_t n_names, int *val, const char **prov)
{
    struct node *n = get(map, key);
    const char *t;
    if (n == NULL || (t = text_of(c, n, key, "a name")) == NULL)
        return n;
    for (size_t i = 0; i < n_names; i++) {
        if (strcmp(t, names[i]) == 0) {
            *val = (int)i;
            *prov = prov_of(c, n);
            return n;
        }
    }
    struct strbuf b = {0};
    strbuf_add(&b, "", 0);
    for (size_t i = 0; i < n_names; i++) {
        strbuf_puts(&b, i == 0 ? "" : i + 1 == n_names ? " or " : ", ");
        strbuf_puts(&b, names[i]);
    }
    err(c, n, key, "expected %s, got '%s'", b.s, show(c, t));
    free(b.s);
    return n;
}

static struct node *rd_string(struct ctx *c, struct node *map, const char *key, const char **val,
                              const char **prov)
{
    struct node *n = get(map, key);
    const char *t;
    if (n == NULL || (t = string_of(c, n, key)) == NULL)
        return n;
    *val = t;
    *prov = prov_of(c, n);
    return n;
}

/* A non-negative decimal number (budget ratio and rate). */
static struct node *rd_number(struct ctx *c, struct node *map, const char *key, double *val,
                              const char **prov)
{
    struct node *n = get(map, key);
    const char *t;
    if (n == NULL || (t = text_of(c, n, key, "a number")) == NULL)
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
        err(c, n, key, "expected a number >= 0 like 0.2 or 10, got '%s'", show(c, t));
        return n;
    }
    double v = strtod(t, NULL);
    if (v > 1e6) {
        err(c, n, key, "must be at most 1000000, got %s", show(c, t));
        return n;
    }
    *val = v;
    *prov = prov_of(c, n);
    return n;
}

/* A path relative to the main file's directory. */
static const char *rel_path(struct ctx *c, const char *p)
{
    if (p[0] == '\0' || p[0] == '/')
        return p;
    return arena_printf(&c->a, "%s%s", c->dir, p);
}

/* ---- listen addresses and URLs ---------------------------------------------------------- */

static bool host_name_ok(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
            return false;
    return true;
}

static bool parse_port(const char *s, size_t len, int min, int *port)
{
    char buf[8];
    int64_t v;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (units_parse_int(buf, min, 65535, &v) != 0)
        return false;
    *port = (int)v;
    return true;
}

static void listen_clear(struct listen_addr *l)
{
    free(l->text);
    free(l->host);
    free(l->path);
    memset(l, 0, sizeof(*l));
}

/* "host:port", "[v6]:port", "unix:/path", or (off_ok) off/false/no. */
static bool parse_listen(const char *s, bool off_ok, struct listen_addr *out, const char **why)
{
    bool b;
    memset(out, 0, sizeof(*out));
    if (off_ok && units_parse_bool(s, &b) == 0 && !b) {
        out->kind = LISTEN_OFF;
        out->text = xstrdup("off");
        return true;
    }
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        if (path[0] != '/') {
            *why = "a unix socket path must be absolute";
            return false;
        }
        if (strlen(path) >= 108) {
            *why = "unix socket path too long";
            return false;
        }
        out->kind = LISTEN_UNIX;
        out->text = xstrdup(s);
        out->path = xstrdup(path);
        out->loopback = true;
        return true;
    }
    const char *host, *port;
    size_t host_len;
    bool v6 = false;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            *why = "expected [address]:port";
            return false;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            *why = "expected host:port, [address]:port or unix:/path";
            return false;
        }
        host = s;
        host_len = (size_t)(colon - s);
        port = colon + 1;
        if (memchr(host, ':', host_len) != NULL) {
            *why = "an IPv6 address needs brackets: [::1]:8080";
            return false;
        }
    }
    char hbuf[256];
    if (host_len == 0 || host_len >= sizeof(hbuf)) {
        *why = "missing host";
        return false;
    }
    memcpy(hbuf, host, host_len);
    hbuf[host_len] = '\0';
    if (!parse_port(port, strlen(port), 0, &out->port)) {
        *why = "port must be a number from 0 to 65535";
        return false;
    }
    unsigned char addr[16];
    if (v6) {
        if (inet_pton(AF_INET6, hbuf, addr) != 1) {
            *why = "bad IPv6 address";
            return false;
        }
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        out->loopback =
            memcmp(addr, one, 16) == 0 || (memcmp(addr, v4mapped, 12) == 0 && addr[12] == 127);
    } else if (inet_pton(AF_INET, hbuf, addr) == 1) {
        out->loopback = addr[0] == 127;
    } else if (host_name_ok(hbuf, host_len)) {
        out->loopback = strcasecmp(hbuf, "localhost") == 0;
    } else {
        *why = "bad host name";
        return false;
    }
    out->kind = LISTEN_INET;
    out->text = xstrdup(s);
    out->host = xstrdup(hbuf);
    return true;
}

static bool is_unreserved_or_sub(char ch)
{
    return isalnum((unsigned char)ch) || strchr("-._~!$&'()*+,;=:@/", ch) != NULL;
}

static void endpoint_clear(struct endpoint_conf *e)
{
    free(e->url);
    free(e->origin);
    free(e->host);
    free(e->base_path);
    memset(e, 0, sizeof(*e));
}

/* http(s)://host[:port][/base/path], no userinfo, query or fragment. */
static bool parse_url(const char *s, struct endpoint_conf *e, const char **why)
{
    memset(e, 0, sizeof(*e));
    const char *rest;
    if (strncasecmp(s, "http://", 7) == 0) {
        rest = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        rest = s + 8;
        e->tls = true;
    } else {
        *why = "the scheme must be http:// or https://";
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            *why = "spaces, control and non-ASCII characters are not allowed";
            return false;
        }
    }
    if (strpbrk(s, "?#") != NULL) {
        *why = "a query or fragment is not allowed";
        return false;
    }
    const char *path = strchr(rest, '/');
    size_t auth_len = path != NULL ? (size_t)(path - rest) : strlen(rest);
    if (memchr(rest, '@', auth_len) != NULL) {
        *why = "user info (user@) is not allowed";
        return false;
    }
    const char *host = rest, *port = NULL;
    size_t host_len;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', auth_len);
        if (close == NULL) {
            *why = "unbalanced '[' in host";
            return false;
        }
        char buf[64];
        unsigned char addr[16];
        size_t len = (size_t)(close - rest - 1);
        if (len >= sizeof(buf)) {
            *why = "bad IPv6 address";
            return false;
        }
        memcpy(buf, rest + 1, len);
        buf[len] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1) {
            *why = "bad IPv6 address";
            return false;
        }
        host_len = (size_t)(close - rest) + 1;
        if (host_len < auth_len) {
            if (rest[host_len] != ':') {
                *why = "expected ':' after ']'";
                return false;
            }
            port = rest + host_len + 1;
        }
    } else {
        const char *colon = memchr(rest, ':', auth_len);
        host_len = colon != NULL ? (size_t)(colon - rest) : auth_len;
        if (colon != NULL)
            port = colon + 1;
        if (!host_name_ok(host, host_len)) {
            *why = host_len == 0 ? "missing host" : "bad host name";
            return false;
        }
    }
    e->port = e->tls ? 443 : 80;
    if (port != NULL && !parse_port(port, (size_t)(rest + auth_len - port), 1, &e->port)) {
        *why = "port must be a number from 1 to 65535";
        return false;
    }
    if (path != NULL) {
        for (const char *p = path; *p != '\0'; p++) {
            if (*p == '%') {
                if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2])) {
                    *why = "bad %-escape in path";
                    return false;
                }
                p += 2;
            } else if (!is_unreserved_or_sub(*p)) {
                *why = "character not allowed in path";
                return false;
            }
        }
    }
    /* kept as written: "/svc" forwards to the base path exactly (SPEC 3.1); the join
     * drops its trailing '/' when a rest follows */
    size_t plen = path != NULL ? strlen(path) : 0;
    e->url = xstrdup(s);
    e->host = strndup(host, host_len);
    e->base_path = strndup(path != NULL ? path : "", plen);
    e->origin = xasprintf("%s://%.*s", e->tls ? "https" : "http", (int)auth_len, rest);
    if (e->host == NULL || e->base_path == NULL)
        abort();
    e->weight = 1;
    return true;
}

/* ---- retry and breaker policies ---------------------------------------------------------- */

struct retry_prov {
    const char *max_attempts, *base_delay, *max_delay, *jitter, *retry_on, *non_idempotent,
        *honor_retry_after, *budget, *ratio, *min_per_second;
};

struct breaker_prov {
    const char *enabled, *failure_threshold, *recovery_timeout, *half_open_max_calls;
};

/* The SPEC 2.1 defaults (retry.c), every field marked as coming from the default. */
static void retry_defaults(struct retry_policy *p, struct retry_prov *pv)
{
    retry_policy_defaults(p);
    pv->max_attempts = pv->base_delay = pv->max_delay = pv->jitter = pv->retry_on =
        pv->non_idempotent = pv->honor_retry_after = pv->budget = pv->ratio = pv->min_per_second =
            "default";
}

static void breaker_defaults(struct breaker_policy *p, struct breaker_prov *pv)
{
    p->enabled = true;
    p->failure_threshold = 5;
    p->recovery_timeout_ms = 30000;
    p->half_open_max_calls = 1;
    pv->enabled = pv->failure_threshold = pv->recovery_timeout = pv->half_open_max_calls =
        "default";
}

static const char *const jitter_names[] = {"none", "full", "equal"};
static const char *const lb_names[] = {"round-robin", "random", "least-request"};

static void rd_retry_on(struct ctx *c, struct node *map, struct retry_policy *p,
                        struct retry_prov *pv)
{
    struct node *n = get(map, "retry-on");
    struct items it;
    if (n == NULL || !list_items(c, n, "retry-on", false, &it))
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
            err_src(c, &it.v[i].src, "retry-on",
                    "unknown entry '%s' (expected connect-failure, reset, timeout, a status "
                    "100-599, 5xx or gateway-error)",
                    show(c, t));
            ok = false;
        }
    }
    if (!ok)
        return;
    p->retry_on = flags;
    memcpy(p->retry_on_status, st, sizeof(st));
    pv->retry_on = prov_of(c, n);
}

static void rd_budget(struct ctx *c, struct node *map, struct retry_policy *p,
                      struct retry_prov *pv)
{
    struct node *n = get(map, "budget");
    bool b;
    if (n == NULL || n->broken)
        return;
    if (n->kind == N_SCALAR && !n->is_null && units_parse_bool(n->text, &b) == 0) {
        p->budget_enabled = b;
        pv->budget = prov_of(c, n);
        return;
    }
    if (n->kind != N_MAP) {
        err(c, n, "budget", "expected off or a map {ratio, min-per-second}, got %s",
            n->kind == N_SCALAR ? arena_printf(&c->a, "'%s'", show(c, n->text)) : kind_name(n));
        return;
    }
    check_keys(c, n, budget_keys);
    p->budget_enabled = true;
    pv->budget = prov_of(c, n);
    rd_number(c, n, "ratio", &p->budget_ratio, &pv->ratio);
    rd_number(c, n, "min-per-second", &p->budget_min_per_second, &pv->min_per_second);
}

/* The keys of a retry map over an inherited policy. */
static void rd_retry_map(struct ctx *c, struct node *map, struct retry_policy *p,
                         struct retry_prov *pv)
{
    rd_int32(c, map, "max-attempts", 1, 1000, &p->max_attempts, &pv->max_attempts);
    rd_duration(c, map, "base-delay", false, &p->base_delay_ms, &pv->base_delay);
    rd_duration(c, map, "max-delay", false, &p->max_delay_ms, &pv->max_delay);
    int j = (int)p->jitter;
    rd_enum(c, map, "jitter", jitter_names, 3, &j, &pv->jitter);
    p->jitter = (enum jitter_mode)j;
    rd_retry_on(c, map, p, pv);
    rd_bool(c, map, "retry-non-idempotent", &p->retry_non_idempotent, &pv->non_idempotent);
    rd_bool(c, map, "honor-retry-after", &p->honor_retry_after, &pv->honor_retry_after);
    rd_budget(c, map, p, pv);
}

static void rd_breaker_map(struct ctx *c, struct node *map, struct breaker_policy *p,
                           struct breaker_prov *pv)
{
    rd_int32(c, map, "failure-threshold", 1, 1000000, &p->failure_threshold,
             &pv->failure_threshold);
    rd_duration(c, map, "recovery-timeout", false, &p->recovery_timeout_ms, &pv->recovery_timeout);
    rd_int32(c, map, "half-open-max-calls", 1, 1000000, &p->half_open_max_calls,
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
    dleaf(c, d, "retry-on", arena_strdup(&c->a, b.s), prov);
    free(b.s);
}

static void dump_retry(struct ctx *c, struct dnode *d, const struct retry_policy *p,
                       const struct retry_prov *pv)
{
    if (d == NULL)
        return;
    dleaf(c, d, "max-attempts", render_int(c, p->max_attempts), pv->max_attempts);
    dleaf(c, d, "base-delay", render_duration(c, p->base_delay_ms), pv->base_delay);
    dleaf(c, d, "max-delay", render_duration(c, p->max_delay_ms), pv->max_delay);
    dleaf(c, d, "jitter", jitter_names[p->jitter], pv->jitter);
    dump_retry_on(c, d, p, pv->retry_on);
    dleaf(c, d, "retry-non-idempotent", p->retry_non_idempotent ? "true" : "false",
          pv->non_idempotent);
    dleaf(c, d, "honor-retry-after", p->honor_retry_after ? "true" : "false",
          pv->honor_retry_after);
    if (!p->budget_enabled) {
        dleaf(c, d, "budget", "off", pv->budget);
        return;
    }
    struct dnode *b = dmap(c, d, "budget", NULL);
    dleaf(c, b, "ratio", render_float(c, p->budget_ratio), pv->ratio);
    dleaf(c, b, "min-per-second", render_float(c, p->budget_min_per_second), pv->min_per_second);
}

static void dump_breaker(struct ctx *c, struct dnode *d, const struct breaker_policy *p,
                         const struct breaker_prov *pv)
{
    dleaf(c, d, "failure-threshold", render_int(c, p->failure_threshold), pv->failure_threshold);
    dleaf(c, d, "recovery-timeout", render_duration(c, p->recovery_timeout_ms),
          pv->recovery_timeout);
    dleaf(c, d, "half-open-max-calls", render_int(c, p->half_open_max_calls),
          pv->half_open_max_calls);
}

/* ---- services ------------------------------------------------------------------------- */

struct globals {
    int64_t timeout, connect_timeout, deadline;
    const char *timeout_prov, *connect_timeout_prov, *deadline_prov;
    struct retry_policy retry;
    struct retry_prov retry_prov;
    struct breaker_policy breaker;
    struct breaker_prov breaker_prov;
};

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
        const char *t = text_of(c, base_url, "base-url", "a URL");
        if (t == NULL)
            return;
        s->endpoints = xcalloc(1, sizeof(*s->endpoints));
        if (!parse_url(t, &s->endpoints[0], &why)) {
            err(c, base_url, "base-url", "bad URL '%s': %s", show(c, t), why);
            free(s->endpoints);
            s->endpoints = NULL;
            return;
        }
        s->n_endpoints = 1;
        dleaf(c, ds, "base-url", render_str(c, t), prov_of(c, base_url));
        return;
    }
    if (endpoints->kind != N_SEQ) {
        err(c, endpoints, "endpoints", "expected a list of URLs, got %s",
            endpoints->is_null ? "nothing" : kind_name(endpoints));
        return;
    }
    if (endpoints->n == 0) {
        err(c, endpoints, "endpoints", "the list is empty");
        return;
    }
    struct dnode *dl = dadd(c, ds, D_SEQ, "endpoints", NULL, NULL);
    s->endpoints = xcalloc(endpoints->n, sizeof(*s->endpoints));
    for (size_t i = 0; i < endpoints->n; i++) {
        struct node *it = endpoints->vals[i], *url = it;
        int weight = 1;
        const char *wprov = "default";
        if (it->kind == N_MAP) {
            check_keys(c, it, endpoint_keys);
            url = get(it, "url");
            if (url == NULL) {
                err(c, it, "endpoints", "an endpoint map needs 'url'");
                continue;
            }
            rd_int32(c, it, "weight", 1, 1000000, &weight, &wprov);
        }
        const char *t = text_of(c, url, "url", "a URL");
        if (t == NULL)
            continue;
        struct endpoint_conf e;
        if (!parse_url(t, &e, &why)) {
            err(c, url, "endpoints", "bad URL '%s': %s", show(c, t), why);
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < s->n_endpoints && !dup; k++)
            dup = strcmp(s->endpoints[k].url, e.url) == 0;
        if (dup) {
            err(c, url, "endpoints", "duplicate endpoint '%s'", show(c, t));
            endpoint_clear(&e);
            continue;
        }
        e.weight = weight;
        s->endpoints[s->n_endpoints++] = e;
        struct dnode *di = dmap(c, dl, NULL, NULL);
        dleaf(c, di, "url", render_str(c, t), prov_of(c, url));
        dleaf(c, di, "weight", render_int(c, weight), wprov);
    }
}

static void conv_headers(struct ctx *c, struct service_conf *s, struct node *svc, struct dnode *ds)
{
    struct node *h = get(svc, "headers");
    if (h == NULL || h->is_null) {
        dadd(c, ds, D_MAP, "headers", NULL, "default");
        return;
    }
    if (h->kind != N_MAP) {
        err(c, h, "headers", "expected a map of header names to values, got %s", kind_name(h));
        return;
    }
    struct dnode *dh = dmap(c, ds, "headers", h->n == 0 ? prov_of(c, h) : NULL);
    s->headers = xcalloc(h->n, sizeof(*s->headers));
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->keys[i]->text;
        const char *v = string_of(c, h->vals[i], name);
        if (!token_ok(name)) {
            err(c, h->keys[i], "headers", "bad header name '%s'", show(c, name));
            continue;
        }
        if (strcasecmp(name, "connection") == 0 || strcasecmp(name, "keep-alive") == 0 ||
            strncasecmp(name, "proxy-", 6) == 0 || strcasecmp(name, "te") == 0 ||
            strcasecmp(name, "trailer") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
            strcasecmp(name, "upgrade") == 0) {
            err(c, h->keys[i], "headers", "'%s' is a hop-by-hop header and cannot be set", name);
            continue;
        }
        if (strcasecmp(name, "host") == 0 || strcasecmp(name, "content-length") == 0 ||
            strcasecmp(name, "expect") == 0 || strncasecmp(name, "x-ahoyd-", 8) == 0) {
            err(c, h->keys[i], "headers", "'%s' is managed by ahoyd and cannot be set", name);
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < s->n_headers && !dup; k++)
            dup = strcasecmp(s->headers[k].name, name) == 0;
        if (dup) {
            err(c, h->keys[i], "headers", "header '%s' is set twice", name);
            continue;
        }
        if (v == NULL)
            continue;
        bool bad = false;
        for (const char *p = v; *p != '\0'; p++)
            bad = bad || ((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f;
        if (bad) {
            err(c, h->vals[i], name, "control characters are not allowed in a header value");
            continue;
        }
        s->headers[s->n_headers].name = xstrdup(name);
        s->headers[s->n_headers].value = xstrdup(v);
        s->n_headers++;
        dleaf(c, dh, render_str(c, name),
              header_is_secret(name) ? "\"<redacted>\"" : render_str(c, v), prov_of(c, h->vals[i]));
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
    struct node *m = get(svc, "methods");
    if (m == NULL || m->is_null) {
        dadd(c, ds, D_MAP, "methods", NULL, "default");
        return;
    }
    if (m->kind != N_MAP) {
        err(c, m, "methods", "expected a map of operation names to 'VERB /path', got %s",
            kind_name(m));
        return;
    }
    struct dnode *dm = dmap(c, ds, "methods", m->n == 0 ? prov_of(c, m) : NULL);
    s->methods = xcalloc(m->n, sizeof(*s->methods));
    for (size_t i = 0; i < m->n; i++) {
        const char *op = m->keys[i]->text;
        if (!op_name_ok(op)) {
            err(c, m->keys[i], "methods",
                "bad operation name '%s' (expected [A-Za-z_][A-Za-z0-9_]*)", show(c, op));
            continue;
        }
        const char *t = text_of(c, m->vals[i], op, "'VERB /path'");
        const char *why = "bad template";
        if (t == NULL)
            continue;
        if (!template_valid(t, &why)) {
            err(c, m->vals[i], op, "bad method template '%s': %s", show(c, t), why);
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
        dleaf(c, dm, op, render_str(c, t), prov_of(c, m->vals[i]));
    }
}

static void conv_tls(struct ctx *c, struct service_conf *s, struct node *svc, struct dnode *ds)
{
    struct node *t = section(c, svc, "tls", tls_keys);
    const char *vp = "default", *caf = "", *cf = "", *kf = "", *sn = "";
    const char *cap = "default", *cp = "default", *kp = "default", *snp = "default";
    s->tls.verify = true;
    rd_bool(c, t, "verify", &s->tls.verify, &vp);
    rd_string(c, t, "ca-file", &caf, &cap);
    rd_string(c, t, "cert-file", &cf, &cp);
    rd_string(c, t, "key-file", &kf, &kp);
    rd_string(c, t, "server-name", &sn, &snp);
    caf = rel_path(c, caf);
    cf = rel_path(c, cf);
    kf = rel_path(c, kf);
    s->tls.ca_file = caf[0] ? xstrdup(caf) : NULL;
    s->tls.cert_file = cf[0] ? xstrdup(cf) : NULL;
    s->tls.key_file = kf[0] ? xstrdup(kf) : NULL;
    s->tls.server_name = sn[0] ? xstrdup(sn) : NULL;
    struct dnode *d = dmap(c, ds, "tls", NULL);
    dleaf(c, d, "verify", s->tls.verify ? "true" : "false", vp);
    dleaf(c, d, "ca-file", render_str(c, caf), cap);
    dleaf(c, d, "cert-file", render_str(c, cf), cp);
    dleaf(c, d, "key-file", render_str(c, kf), kp);
    dleaf(c, d, "server-name", render_str(c, sn), snp);
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
    struct node *r = get(svc, "retry");
    struct node *rmap = NULL;
    const char *rprov = NULL; /* set: dump `retry: false` */
    bool disabled = false;
    s->retry = g->retry;
    if (r != NULL && r->broken) {
        /* reported */
    } else if (r != NULL && r->kind == N_MAP) {
        rmap = r;
        check_keys(c, r, retry_keys);
        rd_retry_map(c, r, &s->retry, &pv);
    } else if (r != NULL && r->kind == N_SCALAR && !r->is_null) {
        bool b;
        int64_t n;
        if (units_parse_bool(r->text, &b) == 0) {
            if (!b) {
                disabled = true;
                s->retry.max_attempts = 1;
                rprov = prov_of(c, r);
            }
        } else if (units_parse_int(r->text, INT64_MIN, INT64_MAX, &n) == 0 ||
                   (r->text[0] == '-' && isdigit((unsigned char)r->text[1]))) {
            if (conv_int(c, r, "retry", 1, 1000, &n)) {
                s->retry.max_attempts = (int)n;
                pv.max_attempts = prov_of(c, r);
            }
        } else {
            err(c, r, "retry", "expected true, false, a number of attempts or a map, got '%s'",
                show(c, r->text));
        }
    } else if (r != NULL && !r->is_null) {
        err(c, r, "retry", "expected true, false, a number of attempts or a map, got a list");
    }

    struct node *sc = get(svc, "retry-base-delay");
    if (sc != NULL) {
        struct node *field = rmap != NULL ? get(rmap, "base-delay") : NULL;
        if (disabled) {
            err(c, sc, "retry-base-delay", "cannot be used with 'retry: false' (at %s)",
                pos_of(c, &r->src));
        } else if (field != NULL && field->src.file != NULL) {
            err(c, sc, "retry-base-delay", "sets the same field as retry.base-delay at %s",
                pos_of(c, &field->src));
        } else if (field == NULL) {
            rd_duration(c, svc, "retry-base-delay", false, &s->retry.base_delay_ms, &pv.base_delay);
        }
    }
    if (ds == NULL)
        return;
    if (disabled) {
        dleaf(c, ds, "retry", "false", rprov);
        return;
    }
    dump_retry(c, dmap(c, ds, "retry", NULL), &s->retry, &pv);
}

static void conv_service_breaker(struct ctx *c, struct service_conf *s, struct node *svc,
                                 const struct globals *g, struct dnode *ds)
{
    struct breaker_prov pv = g->breaker_prov;
    struct node *b = get(svc, "circuit-breaker");
    struct node *bmap = NULL;
    const char *bprov = NULL;
    s->breaker = g->breaker;
    if (b != NULL && b->broken) {
        /* reported */
    } else if (b != NULL && b->kind == N_MAP) {
        bmap = b;
        check_keys(c, b, breaker_keys);
        rd_breaker_map(c, b, &s->breaker, &pv);
    } else if (b != NULL && b->kind == N_SCALAR && !b->is_null) {
        bool on;
        if (units_parse_bool(b->text, &on) != 0) {
            err(c, b, "circuit-breaker", "expected true, false or a map, got '%s'",
                show(c, b->text));
        } else if (!on) {
            s->breaker.enabled = false;
            bprov = prov_of(c, b);
        }
    } else if (b != NULL && !b->is_null) {
        err(c, b, "circuit-breaker", "expected true, false or a map, got a list");
    }

    static const char *const shortcuts[][2] = {
        {"circuit-breaker-failure-threshold", "failure-threshold"},
        {"circuit-breaker-recovery-timeout", "recovery-timeout"}};
    for (size_t i = 0; i < 2; i++) {
        struct node *sc = get(svc, shortcuts[i][0]);
        if (sc == NULL)
            continue;
        struct node *field = bmap != NULL ? get(bmap, shortcuts[i][1]) : NULL;
        if (!s->breaker.enabled) {
            err(c, sc, shortcuts[i][0], "cannot be used with 'circuit-breaker: false' (at %s)",
                pos_of(c, &b->src));
        } else if (field != NULL && field->src.file != NULL) {
            err(c, sc, shortcuts[i][0], "sets the same field as circuit-breaker.%s at %s",
                shortcuts[i][1], pos_of(c, &field->src));
        } else if (field == NULL && i == 0) {
            rd_int32(c, svc, shortcuts[i][0], 1, 1000000, &s->breaker.failure_threshold,
                     &pv.failure_threshold);
        } else if (field == NULL) {
            rd_duration(c, svc, shortcuts[i][0], false, &s->breaker.recovery_timeout_ms,
                        &pv.recovery_timeout);
        }
    }
    if (ds == NULL)
        return;
    if (!s->breaker.enabled) {
        dleaf(c, ds, "circuit-breaker", "false", bprov);
        return;
    }
    dump_breaker(c, dmap(c, ds, "circuit-breaker", NULL), &s->breaker, &pv);
}

static void conv_service(struct ctx *c, struct config *cfg, struct node *key, struct node *svc,
                         const struct globals *g, struct dnode *dservices)
{
    const char *name = key->text;
    struct service_conf *s = &cfg->services[cfg->n_services];
    if (name[0] == '_') {
        err(c, key, NULL, "service name '%s' is reserved (names starting with '_')", show(c, name));
        return;
    }
    if (!service_name_ok(name)) {
        err(c, key, NULL, "bad service name '%s' (expected [a-z0-9][a-z0-9_-]*)", show(c, name));
        return;
    }
    if (svc->kind != N_MAP) {
        err(c, svc, name, "expected a map, got %s", svc->is_null ? "nothing" : kind_name(svc));
        return;
    }
    cfg->n_services++;
    s->name = xstrdup(name);
    check_keys(c, svc, service_keys);
    struct dnode *ds = dmap(c, dservices, name, NULL);

    struct node *bu = get(svc, "base-url"), *ep = get(svc, "endpoints");
    if (bu == NULL && ep == NULL)
        err(c, key, NULL, "service '%s' needs base-url or endpoints", name);
    else if (bu != NULL && ep != NULL)
        err(c, get_key(svc, "endpoints"), NULL,
            "service '%s' has both base-url and endpoints; use one", name);
    else
        conv_endpoints(c, s, bu, ep, ds);

    const char *p = "default";
    int lb = LB_ROUND_ROBIN;
    rd_enum(c, svc, "load-balancer", lb_names, 3, &lb, &p);
    s->load_balancer = (enum lb_policy)lb;
    dleaf(c, ds, "load-balancer", lb_names[lb], p);

    s->timeout_ms = g->timeout;
    p = g->timeout_prov;
    rd_duration(c, svc, "timeout", false, &s->timeout_ms, &p);
    dleaf(c, ds, "timeout", render_duration(c, s->timeout_ms), p);
    s->connect_timeout_ms = g->connect_timeout;
    p = g->connect_timeout_prov;
    rd_duration(c, svc, "connect-timeout", false, &s->connect_timeout_ms, &p);
    dleaf(c, ds, "connect-timeout", render_duration(c, s->connect_timeout_ms), p);
    s->deadline_ms = g->deadline;
    p = g->deadline_prov;
    rd_duration(c, svc, "deadline", true, &s->deadline_ms, &p);
    dleaf(c, ds, "deadline", render_duration(c, s->deadline_ms), p);

    conv_service_retry(c, s, svc, g, ds);
    conv_service_breaker(c, s, svc, g, ds);
    conv_headers(c, s, svc, ds);
    p = "default";
    rd_int(c, svc, "max-inflight", 0, 100000000, &s->max_inflight, &p);
    dleaf(c, ds, "max-inflight", render_int(c, s->max_inflight), p);
    conv_methods(c, cfg, s, svc, ds);
    conv_tls(c, s, svc, ds);
}

/* ---- the whole configuration -------------------------------------------------------------- */

static void conv_listen(struct ctx *c, struct node *ahoyd, const char *key, const char *def,
                        bool off_ok, struct listen_addr *out, struct dnode *d)
{
    struct node *n = get(ahoyd, key);
    const char *why = NULL, *prov = "default";
    const char *t = n != NULL ? text_of(c, n, key, "an address") : NULL;
    if (t != NULL && parse_listen(t, off_ok, out, &why))
        prov = prov_of(c, n);
    else if (t != NULL)
        err(c, n, key, "bad address '%s': %s", show(c, t), why);
    if (out->text == NULL)
        parse_listen(def, off_ok, out, &why);
    dleaf(c, d, key, out->kind == LISTEN_OFF ? "off" : render_str(c, out->text), prov);
}

static void conv_admin_token(struct ctx *c, struct config *cfg, struct node *ahoyd, struct dnode *d)
{
    const char *tok = "", *tokp = "default", *file = "", *filep = "default";
    struct node *tn = rd_string(c, ahoyd, "admin-token", &tok, &tokp);
    struct node *fn = rd_string(c, ahoyd, "admin-token-file", &file, &filep);
    file = rel_path(c, file);
    if (tok[0] != '\0' && file[0] != '\0') {
        err(c, fn, "admin-token-file", "set admin-token or admin-token-file, not both");
    } else if (tok[0] != '\0') {
        cfg->admin_token = xstrdup(tok);
    } else if (file[0] != '\0') {
        FILE *f = fopen(file, "rb");
        char buf[MAX_TOKEN_FILE_BYTES + 1];
        size_t len = 0;
        if (f == NULL) {
            err(c, fn, "admin-token-file", "cannot open %s: %s", show(c, file), strerror(errno));
        } else {
            len = fread(buf, 1, sizeof(buf), f);
            fclose(f);
            while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                               buf[len - 1] == ' ' || buf[len - 1] == '\t'))
                len--;
            buf[len] = '\0';
            if (len > MAX_TOKEN_FILE_BYTES)
                err(c, fn, "admin-token-file", "%s is too large for a token", show(c, file));
            else if (len == 0)
                err(c, fn, "admin-token-file", "%s is empty", show(c, file));
            else
                cfg->admin_token = xstrdup(buf);
        }
    }
    if (cfg->admin_token != NULL) {
        for (const char *p = cfg->admin_token; *p != '\0'; p++) {
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
                err(c, tok[0] ? tn : fn, tok[0] ? "admin-token" : "admin-token-file",
                    "the token must be visible ASCII characters without spaces");
                break;
            }
        }
    }
    if (cfg->admin_listen.kind == LISTEN_INET && !cfg->admin_listen.loopback &&
        cfg->admin_token == NULL && tok[0] == '\0' && file[0] == '\0') {
        struct node *an = get(ahoyd, "admin-listen");
        err(c, an, "admin-listen", "%s is not loopback: set admin-token or admin-token-file",
            show(c, cfg->admin_listen.text));
    }
    dleaf(c, d, "admin-token", tok[0] ? "\"<redacted>\"" : "\"\"", tokp);
    dleaf(c, d, "admin-token-file", render_str(c, file), filep);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void convert(struct ctx *c, struct config *cfg, const struct items *inc,
                    const struct items *prof, const char *inc_prov, const char *prof_prov)
{
    struct node *root = c->root;
    check_keys(c, root, top_keys);
    struct node *ahoyd = section(c, root, "ahoyd", ahoyd_keys);
    struct dnode *da = dmap(c, c->dump, "ahoyd", NULL);
    const char *p;

    conv_listen(c, ahoyd, "listen", "127.0.0.1:8080", false, &cfg->listen, da);
    conv_listen(c, ahoyd, "admin-listen", "127.0.0.1:9901", true, &cfg->admin_listen, da);
    conv_admin_token(c, cfg, ahoyd, da);

    cfg->include = xcalloc(inc->n + 1, sizeof(char *));
    for (size_t i = 0; i < inc->n; i++)
        cfg->include[cfg->n_include++] = xstrdup(inc->v[i].text);
    if (c->dump != NULL && inc->n > 0) {
        struct strbuf b = {0};
        strbuf_puts(&b, "include: [");
        for (size_t i = 0; i < inc->n; i++) {
            strbuf_puts(&b, i ? ", " : "");
            strbuf_puts(&b, render_str(c, inc->v[i].text));
        }
        strbuf_puts(&b, "]  # ");
        strbuf_puts(&b, inc_prov);
        strbuf_puts(&b, " (already merged into this output)");
        dadd(c, da, D_COMMENT, NULL, arena_strdup(&c->a, b.s), NULL);
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
            err_src(c, &s, NULL, "expected error, warn, info or debug, got '%s'",
                    show(c, c->opts->log_level));
        }
        int ignored = lvl;
        const char *ip = p;
        rd_enum(c, ahoyd, "log-level", level_names, 4, &ignored, &ip);
    } else {
        rd_enum(c, ahoyd, "log-level", level_names, 4, &lvl, &p);
    }
    cfg->log_level = (enum log_level)lvl;
    dleaf(c, da, "log-level", level_names[lvl], p);

    const char *al = "stderr";
    p = "default";
    struct node *aln = rd_string(c, ahoyd, "access-log", &al, &p);
    bool b;
    if (units_parse_bool(al, &b) == 0 && !b)
        al = "off";
    if (strcmp(al, "stderr") != 0 && strcmp(al, "off") != 0 && al[0] != '/') {
        err(c, aln, "access-log", "expected stderr, off or an absolute path, got '%s'",
            show(c, al));
        al = "stderr";
    }
    cfg->access_log = xstrdup(al);
    dleaf(c, da, "access-log", render_str(c, al), p);

    static const char *const fmt_names[] = {"logfmt", "json"};
    int fmt = ACCESS_LOG_LOGFMT;
    p = "default";
    rd_enum(c, ahoyd, "access-log-format", fmt_names, 2, &fmt, &p);
    cfg->access_log_format = (enum access_log_format)fmt;
    dleaf(c, da, "access-log-format", fmt_names[fmt], p);

    cfg->max_connections = 4096;
    p = "default";
    rd_int(c, ahoyd, "max-connections", 1, 1048576, &cfg->max_connections, &p);
    dleaf(c, da, "max-connections", render_int(c, cfg->max_connections), p);

    cfg->workers = 1;
    p = "default";
    rd_int(c, ahoyd, "workers", 1, WORKERS_MAX, &cfg->workers, &p);
    dleaf(c, da, "workers", render_int(c, cfg->workers), p);

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
        rd_size(c, ahoyd, sizes[i].key, v, &p);
        dleaf(c, da, sizes[i].key, render_size(c, *v), p);
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
        rd_duration(c, ahoyd, times[i].key, true, v, &p);
        dleaf(c, da, times[i].key, render_duration(c, *v), p);
    }

    /* pyfly */
    struct node *pyfly = section(c, root, "pyfly", pyfly_keys);
    struct dnode *dp = dmap(c, c->dump, "pyfly", NULL);
    section(c, pyfly, "profiles", profiles_keys);
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
        dadd(c, dp, D_COMMENT, NULL, arena_strdup(&c->a, sb.s), NULL);
        free(sb.s);
    }
    struct node *client = section(c, pyfly, "client", client_keys);
    struct dnode *dc = dmap(c, dp, "client", NULL);

    struct globals g;
    struct node *def = section(c, client, "default", default_keys);
    g.timeout = 30000;
    g.connect_timeout = 5000;
    g.deadline = 0;
    g.timeout_prov = g.connect_timeout_prov = g.deadline_prov = "default";
    rd_duration(c, def, "timeout", false, &g.timeout, &g.timeout_prov);
    rd_duration(c, def, "connect-timeout", false, &g.connect_timeout, &g.connect_timeout_prov);
    rd_duration(c, def, "deadline", true, &g.deadline, &g.deadline_prov);
    cfg->default_timeout_ms = g.timeout;
    cfg->default_connect_timeout_ms = g.connect_timeout;
    cfg->default_deadline_ms = g.deadline;
    struct dnode *dd = dmap(c, dc, "default", NULL);
    dleaf(c, dd, "timeout", render_duration(c, g.timeout), g.timeout_prov);
    dleaf(c, dd, "connect-timeout", render_duration(c, g.connect_timeout), g.connect_timeout_prov);
    dleaf(c, dd, "deadline", render_duration(c, g.deadline), g.deadline_prov);

    breaker_defaults(&g.breaker, &g.breaker_prov);
    rd_breaker_map(c, section(c, client, "circuit-breaker", breaker_keys), &g.breaker,
                   &g.breaker_prov);
    cfg->breaker = g.breaker;
    dump_breaker(c, dmap(c, dc, "circuit-breaker", NULL), &g.breaker, &g.breaker_prov);

    retry_defaults(&g.retry, &g.retry_prov);
    rd_retry_map(c, section(c, client, "retry", retry_keys), &g.retry, &g.retry_prov);
    cfg->retry = g.retry;
    dump_retry(c, dmap(c, dc, "retry", NULL), &g.retry, &g.retry_prov);

    struct node *svcs = section(c, client, "services", NULL);
    struct dnode *dsv = svcs != NULL && svcs->n > 0
                            ? dmap(c, dc, "services", NULL)
                            : dadd(c, dc, D_MAP, "services", NULL, "default");
    if (svcs != NULL) {
        cfg->services = xcalloc(svcs->n, sizeof(*cfg->services));
        for (size_t i = 0; i < svcs->n; i++)
            conv_service(c, cfg, svcs->keys[i], svcs->vals[i], &g, dsv);
    }
}

/* ---- loading ----------------------------------------------------------------------------- */

static void service_free(struct service_conf *s)
{
    free(s->name);
    for (size_t i = 0; i < s->n_endpoints; i++)
        endpoint_clear(&s->endpoints[i]);
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

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    listen_clear(&cfg->listen);
    listen_clear(&cfg->admin_listen);
    free(cfg->admin_token);
    for (size_t i = 0; i < cfg->n_include; i++)
        free(cfg->include[i]);
    free(cfg->include);
    free(cfg->access_log);
    for (size_t i = 0; i < cfg->n_profiles; i++)
        free(cfg->profiles[i]);
    free(cfg->profiles);
    for (size_t i = 0; i < cfg->n_services; i++)
        service_free(&cfg->services[i]);
    free(cfg->services);
    for (size_t i = 0; i < cfg->n_files; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg);
}

void config_messages_free(struct config_messages *msgs)
{
    if (msgs == NULL)
        return;
    for (size_t i = 0; i < msgs->n_errors; i++)
        free(msgs->errors[i]);
    free(msgs->errors);
    for (size_t i = 0; i < msgs->n_warnings; i++)
        free(msgs->warnings[i]);
    free(msgs->warnings);
    memset(msgs, 0, sizeof(*msgs));
}

const struct service_conf *config_find_service(const struct config *cfg, const char *name,
                                               size_t len)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->n_services; i++) {
        const char *s = cfg->services[i].name;
        if (strlen(s) == len && memcmp(s, name, len) == 0)
            return &cfg->services[i];
    }
    return NULL;
}

static int cmp_msg(const void *a, const void *b)
{
    const struct msg *x = a, *y = b;
    if (x->file_idx != y->file_idx)
        return x->file_idx < y->file_idx ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorted by file and position, duplicates (an aliased value checked twice) dropped. */
static void take_messages(struct msglist *l, char ***out, size_t *n_out)
{
    if (l->n > 0)
        qsort(l->v, l->n, sizeof(*l->v), cmp_msg);
    *out = xcalloc(l->n + 1, sizeof(char *));
    *n_out = 0;
    for (size_t i = 0; i < l->n; i++) {
        bool dup = false;
        for (size_t k = 0; k < *n_out && !dup; k++)
            dup = strcmp((*out)[k], l->v[i].text) == 0;
        if (dup)
            free(l->v[i].text);
        else
            (*out)[(*n_out)++] = l->v[i].text;
    }
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* Step 0: the include globs and the active profiles, placeholders from the
 * environment only. */
static void step0(struct ctx *c, struct items *inc, const char **inc_prov, struct items *prof,
                  const char **prof_prov)
{
    const char *v;
    inc->n = prof->n = 0;
    inc->v = prof->v = NULL;
    *inc_prov = *prof_prov = "default";
    if ((v = env_get(c, "AHOYD_INCLUDE")) != NULL) {
        struct src s = {NULL, 0, 0, 0, "env AHOYD_INCLUDE"};
        inc->v = arena_alloc(&c->a, (strlen(v) + 1) * sizeof(struct item));
        split_commas(c, v, &s, inc, strlen(v) + 1);
        *inc_prov = s.label;
    } else {
        struct node *n = get(get(c->root, "ahoyd"), "include");
        if (n != NULL && list_items(c, n, "include", true, inc))
            *inc_prov = prov_of(c, n);
    }
    if (c->opts->profiles != NULL) {
        struct src s = {NULL, 0, 0, 0, "--profile"};
        v = c->opts->profiles;
        prof->v = arena_alloc(&c->a, (strlen(v) + 1) * sizeof(struct item));
        split_commas(c, v, &s, prof, strlen(v) + 1);
        *prof_prov = "command line";
    } else if ((v = env_get(c, "PYFLY_PROFILES_ACTIVE")) != NULL) {
        struct src s = {NULL, 0, 0, 0, "env PYFLY_PROFILES_ACTIVE"};
        prof->v = arena_alloc(&c->a, (strlen(v) + 1) * sizeof(struct item));
        split_commas(c, v, &s, prof, strlen(v) + 1);
        *prof_prov = s.label;
    } else {
        struct node *n = get(get(get(c->root, "pyfly"), "profiles"), "active");
        if (n != NULL && list_items(c, n, "active", true, prof))
            *prof_prov = prov_of(c, n);
    }
}

static int run(const struct config_options *opts, struct config_messages *msgs, FILE *dump_out,
               struct config **cfg_out)
{
    struct ctx c;
    memset(&c, 0, sizeof(c));
    memset(msgs, 0, sizeof(*msgs));
    c.opts = opts;
    if (cfg_out != NULL)
        *cfg_out = NULL;
    const char *path = opts->path != NULL ? opts->path : SYSCONFDIR "/ahoyd/ahoyd.yaml";
    struct config_options o = *opts;
    o.path = path;
    c.opts = &o;
    const char *slash = strrchr(path, '/');
    c.dir = slash != NULL ? arena_strndup(&c.a, path, (size_t)(slash - path + 1)) : "";

    struct node *main_tree = load_file(&c, path);
    struct src top = {c.files[0], 0, 1, 1, NULL};
    c.root = main_tree != NULL ? main_tree : new_node(&c, N_MAP, &top);

    struct items inc, prof;
    const char *inc_prov, *prof_prov;
    step0(&c, &inc, &inc_prov, &prof, &prof_prov);
    load_includes(&c, &inc);
    load_profiles(&c, &prof);
    resolve_tree(&c, c.root, NULL);
    apply_env(&c);

    struct config *cfg = xcalloc(1, sizeof(*cfg));
    cfg->path = xstrdup(path);
    cfg->files = xcalloc(c.n_files + 1, sizeof(char *));
    for (size_t i = 0; i < c.n_files; i++)
        cfg->files[cfg->n_files++] = xstrdup(c.files[i]);
    struct dnode dump_root = {0};
    if (dump_out != NULL)
        c.dump = &dump_root;
    convert(&c, cfg, &inc, &prof, inc_prov, prof_prov);

    int rc = c.errors.n > 0 ? 1 : 0;
    if (rc == 0 && dump_out != NULL) {
        fprintf(dump_out, "# ahoyd effective configuration, from %s\n", path);
        fprintf(dump_out, "# each value is followed by where it came from\n");
        dprint_children(dump_out, &dump_root, 0, false);
    }
    take_messages(&c.errors, &msgs->errors, &msgs->n_errors);
    take_messages(&c.warnings, &msgs->warnings, &msgs->n_warnings);
    for (size_t i = 0; i < c.n_files; i++)
        free(c.real_paths[i]);
    free(c.real_paths);
    free(c.files);
    arena_free(&c.a);
    if (rc == 0 && cfg_out != NULL)
        *cfg_out = cfg;
    else
        config_free(cfg);
    return rc;
}

struct config *config_load(const struct config_options *opts, struct config_messages *msgs)
{
    struct config *cfg = NULL;
    run(opts, msgs, NULL, &cfg);
    return cfg;
}

int config_dump(const struct config_options *opts, FILE *out, struct config_messages *msgs)
{
    return run(opts, msgs, out, NULL);
}
