/*
 * config_yaml.c - one YAML file -> a node tree (libyaml's event API).
 *
 * Anchors and aliases are expanded here, bounded (at most 10,000 nodes and 64
 * levels per file, so an alias bomb is an error, not an allocation storm);
 * `<<` merge keys are applied and duplicate keys reported at the end of each
 * mapping. A syntax error stops that file: libyaml cannot go on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config_int.h"
#include "strbuf.h"

struct anchor {
    char *name;
    struct node *node;
    bool complete;
};

#define MAX_NODES_PER_FILE 10000
#define MAX_DEPTH 64
#define MAX_FILE_BYTES (16 * 1024 * 1024)

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
        cfg_err_at(p->c, at, NULL, "more than %d nodes after expanding aliases",
                   MAX_NODES_PER_FILE);
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
    struct node *d = node_new(p->c, n->kind, &n->src);
    d->is_null = n->is_null;
    d->plain = n->plain;
    d->text = n->text; /* scalar text is never modified in place */
    for (size_t i = 0; i < n->n; i++) {
        struct node *k = NULL;
        if (n->kind == N_MAP) {
            k = copy_node(p, n->keys[i], at);
            if (!k)
                return NULL;
        }
        struct node *v = copy_node(p, n->vals[i], at);
        if (!v)
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
                cfg_err(c, k, NULL, "merge key '<<' needs a map or a list of maps");
                drop[i] = true;
            }
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (!is_merge_key(map->keys[j]) && strcmp(map->keys[j]->text, k->text) == 0) {
                cfg_err(c, k, NULL, "duplicate key '%s' (first defined at %d:%d)",
                        cfg_show(c, k->text), map->keys[j]->src.line, map->keys[j]->src.col);
                drop[i] = true;
                break;
            }
        }
    }
    struct node *out = node_new(c, N_MAP, &map->src);
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
                if (!explicit && node_index(out, k) < 0)
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
        cfg_err(p->c, node, NULL, "nesting deeper than %d levels", MAX_DEPTH);
        p->failed = true;
        return false;
    }
    struct frame *f = &stack[depth - 1];
    if (f->n->kind == N_SEQ) {
        node_push(p->c, f->n, NULL, node);
    } else if (!f->key) {
        if (node->kind != N_SCALAR) {
            cfg_err(p->c, node, NULL, "map keys must be scalars");
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
    if (!name)
        return -1;
    if (p->n_anchors == p->cap_anchors) {
        p->cap_anchors = p->cap_anchors ? p->cap_anchors * 2 : 16;
        p->anchors = realloc(p->anchors, p->cap_anchors * sizeof(*p->anchors));
        if (!p->anchors)
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
 * document or on failure (*failed set; the errors are reported).
 * Longer than 80 lines on purpose: one switch over libyaml's events whose
 * cases share the parser, the node stack and the anchors; split up, each
 * piece would take all of that as arguments. */
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
            if (parser.context)
                cfg_err_at(c, &s, NULL, "YAML syntax error: %s %s", parser.problem, parser.context);
            else
                cfg_err_at(c, &s, NULL, "YAML syntax error: %s",
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
                cfg_err_at(c, &s, NULL, "only one YAML document per file is supported");
                p.failed = true;
            }
            break;
        case YAML_SCALAR_EVENT:
            if (!count_node(&p, &s))
                break;
            n = node_new(c, N_SCALAR, &s);
            n->text =
                arena_strndup(&c->a, (const char *)ev.data.scalar.value, ev.data.scalar.length);
            if (strlen(n->text) != ev.data.scalar.length)
                cfg_err(c, n, NULL, "NUL character in a value");
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            n->is_null = n->plain && scalar_is_null(n->text);
            add_anchor(&p, ev.data.scalar.anchor, n, true);
            attach(&p, stack, depth, n, &root);
            break;
        case YAML_ALIAS_EVENT: {
            struct anchor *a = find_anchor(&p, (const char *)ev.data.alias.anchor);
            if (!a) {
                cfg_err_at(c, &s, NULL, "undefined alias '*%s'",
                           cfg_show(c, (const char *)ev.data.alias.anchor));
                p.failed = true;
            } else if (!a->complete) {
                cfg_err_at(c, &s, NULL, "alias '*%s' refers to a node that contains it",
                           cfg_show(c, a->name));
                p.failed = true;
            } else if ((n = copy_node(&p, a->node, &s)) != NULL) {
                attach(&p, stack, depth, n, &root);
            }
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth >= MAX_DEPTH) {
                cfg_err_at(c, &s, NULL, "nesting deeper than %d levels", MAX_DEPTH);
                p.failed = true;
                break;
            }
            if (!count_node(&p, &s))
                break;
            n = node_new(c, ev.type == YAML_MAPPING_START_EVENT ? N_MAP : N_SEQ, &s);
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
        if (!c->files || !c->real_paths)
            abort();
    }
    c->files[c->n_files] = arena_strdup(&c->a, path);
    c->real_paths[c->n_files] = realpath(path, NULL);
    return (int)c->n_files++;
}

bool cfg_already_loaded(struct ctx *c, const char *path)
{
    char *rp = realpath(path, NULL);
    bool found = false;
    for (size_t i = 0; i < c->n_files && !found; i++)
        found = rp != NULL && c->real_paths[i] && strcmp(rp, c->real_paths[i]) == 0;
    free(rp);
    return found;
}

/* Read and parse one file. Returns its root map (an empty map for an empty
 * file) or NULL when it could not be used; errors are reported. */
struct node *cfg_load_file(struct ctx *c, const char *path)
{
    int idx = register_file(c, path);
    struct src whole = {c->files[idx], idx, 0, 0, NULL};
    FILE *f = fopen(path, "rb");
    if (!f) {
        cfg_err_at(c, &whole, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct strbuf b = {0};
    char chunk[8192];
    size_t got;
    bool too_big = false;
    strbuf_add(&b, "", 0);
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
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
            cfg_err_at(c, &whole, NULL, "larger than %d bytes", MAX_FILE_BYTES);
        else
            cfg_err_at(c, &whole, NULL, "cannot read: %s", strerror(saved));
        free(b.s);
        return NULL;
    }
    bool failed = false;
    struct node *root =
        parse_yaml(c, c->files[idx], idx, (const unsigned char *)b.s, b.len, &failed);
    free(b.s);
    if (failed)
        return NULL;
    if (!root || root->is_null) {
        struct src s = {c->files[idx], idx, 1, 1, NULL};
        return node_new(c, N_MAP, &s);
    }
    if (root->kind != N_MAP) {
        cfg_err(c, root, NULL, "the top level must be a map, not %s", node_kind_name(root));
        return NULL;
    }
    return root;
}
