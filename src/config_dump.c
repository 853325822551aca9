/*
 * config_dump.c - the --dump-config tree: rendered values with the origin of
 * each, built while converting, printed as YAML that loads again.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "strbuf.h"
#include "config_int.h"

struct dnode *dump_add(struct ctx *c, struct dnode *parent, enum dkind kind, const char *key,
                       const char *text, const char *prov)
{
    if (!parent)
        return NULL;
    struct dnode *d = arena_alloc(&c->a, sizeof(*d));
    d->kind = kind;
    d->key = key;
    d->text = text;
    d->prov = prov;
    if (parent->last)
        parent->last->next = d;
    else
        parent->first = d;
    parent->last = d;
    return d;
}

struct dnode *dump_map(struct ctx *c, struct dnode *parent, const char *key, const char *prov)
{
    return dump_add(c, parent, D_MAP, key, NULL, prov);
}

void dump_leaf(struct ctx *c, struct dnode *parent, const char *key, const char *text,
               const char *prov)
{
    dump_add(c, parent, D_LEAF, key, text, prov);
}

/* A YAML double-quoted string that reads back as s (and never as a placeholder). */
const char *dump_str(struct ctx *c, const char *s)
{
    if (!c->dump)
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
            snprintf(esc, sizeof esc, "\\x%02x", ch);
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

const char *dump_duration(struct ctx *c, int64_t ms)
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

const char *dump_size(struct ctx *c, uint64_t v)
{
    static const char *const unit[] = {"GiB", "MiB", "KiB"};
    static const unsigned shift[] = {30, 20, 10};
    for (size_t i = 0; i < 3; i++)
        if (v != 0 && v % (UINT64_C(1) << shift[i]) == 0)
            return arena_printf(&c->a, "%llu%s", (unsigned long long)(v >> shift[i]), unit[i]);
    return arena_printf(&c->a, "%llu", (unsigned long long)v);
}

const char *dump_int(struct ctx *c, int64_t v)
{
    return arena_printf(&c->a, "%lld", (long long)v);
}

const char *dump_float(struct ctx *c, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.15f", v);
    char *dot = strchr(buf, '.');
    if (dot) {
        char *end = buf + strlen(buf);
        while (end > dot + 2 && end[-1] == '0')
            *--end = '\0';
    }
    return arena_strdup(&c->a, buf);
}

static void dump_print_one(FILE *out, const struct dnode *d, int indent, const char *lead)
{
    if (d->kind == D_COMMENT) {
        fprintf(out, "%*s%s# %s\n", indent, "", lead, d->text);
        return;
    }
    fprintf(out, "%*s%s%s:", indent, "", lead, d->key);
    if (d->kind == D_LEAF) {
        fprintf(out, " %s", d->text);
        if (d->prov)
            fprintf(out, "  # %s", d->prov);
        fputc('\n', out);
        return;
    }
    if (!d->first) {
        fprintf(out, " %s", d->kind == D_SEQ ? "[]" : "{}");
        if (d->prov)
            fprintf(out, "  # %s", d->prov);
        fputc('\n', out);
        return;
    }
    if (d->prov)
        fprintf(out, "  # %s", d->prov);
    fputc('\n', out);
    if (d->kind == D_MAP) {
        dump_print(out, d, indent + 2, false);
    } else {
        for (const struct dnode *it = d->first; it; it = it->next)
            dump_print(out, it, indent + 2, true);
    }
}

/* The entries of a map; with dash, as one item of a sequence. */
void dump_print(FILE *out, const struct dnode *d, int indent, bool dash)
{
    bool first = true;
    for (const struct dnode *ch = d->first; ch; ch = ch->next) {
        if (dash)
            dump_print_one(out, ch, indent, first ? "- " : "  ");
        else
            dump_print_one(out, ch, indent, "");
        first = false;
    }
}
