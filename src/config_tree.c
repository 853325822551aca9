/*
 * config_tree.c - the loader's node tree, its arena and its messages.
 *
 * Every YAML node keeps where it came from (FILE:LINE:COL, or a label such as
 * "env NAME"), so every message can say where; messages are collected, not
 * printed, then sorted by file and position. The "did you mean" suggestion
 * for unknown keys and variables lives here too. Parse trees live in an arena
 * freed at the end of a load.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "config_int.h"

void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
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

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = xvasprintf(fmt, ap);
    va_end(ap);
    char *s = arena_strdup(a, tmp);
    free(tmp);
    return s;
}

void arena_free(struct arena *a)
{
    while (a->head) {
        struct arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

static void msg_push(struct ctx *c, bool is_err, char *text, const struct src *s)
{
    struct msglist *l = is_err ? &c->errors : &c->warnings;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (!l->v)
            abort();
    }
    struct msg *m = &l->v[l->n++];
    m->text = text;
    m->file_idx = !s ? -1 : s->file ? s->file_idx : LABEL_IDX;
    m->line = !s ? 0 : s->line;
    m->col = !s ? 0 : s->col;
    m->seq = c->seq++;
}

static void vreport(struct ctx *c, bool is_err, const struct src *s, const char *key,
                    const char *fmt, va_list ap)
{
    char *msg = xvasprintf(fmt, ap);
    /* the key is named beside a file position only (an env label names it already) */
    if (!s || !s->file || s->line <= 0)
        key = NULL;
    /* a warning says so right after its position: it never reads like an error */
    char *body = xasprintf("%s%s%s%s", is_err ? "" : "warning: ", key ? key : "",
                           key != NULL ? ": " : "", msg);
    free(msg);
    char *text;
    if (s && s->file && s->line > 0)
        text = xasprintf("%s:%d:%d: %s", s->file, s->line, s->col, body);
    else if (s && s->file)
        text = xasprintf("%s: %s", s->file, body);
    else if (s && s->label)
        text = xasprintf("%s: %s", s->label, body);
    else
        text = xstrdup(body);
    free(body);
    msg_push(c, is_err, text, s);
}

void cfg_err_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, true, s, key, fmt, ap);
    va_end(ap);
}

void cfg_warn_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, false, s, key, fmt, ap);
    va_end(ap);
}

void cfg_err(struct ctx *c, const struct node *n, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, true, n ? &n->src : NULL, key, fmt, ap);
    va_end(ap);
}

/* User text for a message: control bytes escaped, long values cut. */
const char *cfg_show(struct ctx *c, const char *s)
{
    struct strbuf b = {0};
    size_t i;
    strbuf_add(&b, "", 0);
    for (i = 0; s[i] != '\0' && i < 100; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\x%02x", ch);
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
const char *cfg_origin(struct ctx *c, const struct node *n)
{
    if (n->src.file)
        return arena_printf(&c->a, "%s:%d", n->src.file, n->src.line);
    return n->src.label != NULL ? n->src.label : "default";
}

const char *cfg_pos(struct ctx *c, const struct src *s)
{
    if (s->file)
        return arena_printf(&c->a, "%s:%d:%d", s->file, s->line, s->col);
    return s->label != NULL ? s->label : "?";
}

struct node *node_new(struct ctx *c, enum nkind kind, const struct src *s)
{
    struct node *n = arena_alloc(&c->a, sizeof(*n));
    n->kind = kind;
    n->src = *s;
    return n;
}

struct node *node_new_scalar(struct ctx *c, const char *text, const struct src *s)
{
    struct node *n = node_new(c, N_SCALAR, s);
    n->text = arena_strdup(&c->a, text);
    n->resolved = true;
    return n;
}

void node_push(struct ctx *c, struct node *n, struct node *key, struct node *val)
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

long node_index(const struct node *map, const char *key)
{
    if (!map || map->kind != N_MAP)
        return -1;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->text, key) == 0)
            return (long)i;
    return -1;
}

struct node *node_get(const struct node *map, const char *key)
{
    long i = node_index(map, key);
    return i < 0 ? NULL : map->vals[i];
}

struct node *node_get_key(const struct node *map, const char *key)
{
    long i = node_index(map, key);
    return i < 0 ? NULL : map->keys[i];
}

void node_remove(struct node *map, size_t i)
{
    memmove(map->keys + i, map->keys + i + 1, (map->n - i - 1) * sizeof(*map->keys));
    memmove(map->vals + i, map->vals + i + 1, (map->n - i - 1) * sizeof(*map->vals));
    map->n--;
}

const char *node_kind_name(const struct node *n)
{
    return n->kind == N_MAP ? "a map" : n->kind == N_SEQ ? "a list" : "a scalar";
}

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
const char *cfg_suggest(const char *word, const char *const *cands, size_t n)
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
    if (best && best_d > 0 && (best_d <= 2 || best_d * 4 <= len))
        return best;
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
void cfg_take_messages(struct msglist *l, char ***out, size_t *n_out)
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
