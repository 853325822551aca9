/*
 * config_layer.c - the layering steps, in order: step 0 (`ahoyd.include` and
 * `pyfly.profiles.active`, placeholders from the environment only), include
 * files in name order, profile files, `${NAME}` / `${NAME:default}`
 * placeholders, then the environment overrides generated from the schema.
 *
 * Placeholders apply to values, not keys; a `${config.key}` reference takes
 * that key's own substituted value (the inserted text is never scanned
 * again); a value whose placeholder failed is marked broken and gets no
 * further checks, so one mistake gives one error. The environment is only
 * read from config_options.env, never getenv(), so tests pass their own.
 */
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "strbuf.h"
#include "config_int.h"
#include "units.h"

/* Deep merge: maps key by key, everything else replaces. */
static void deep_merge(struct ctx *c, struct node *dst, struct node *src)
{
    for (size_t i = 0; i < src->n; i++) {
        long j = node_index(dst, src->keys[i]->text);
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
    if (!c->opts->env)
        return NULL;
    size_t len = strlen(name);
    for (char *const *e = c->opts->env; *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

static struct node *find_dotted(struct node *root, const char *name)
{
    char buf[256];
    if (strlen(name) >= sizeof buf)
        return NULL;
    strcpy(buf, name);
    struct node *cur = root;
    char *save = NULL;
    for (char *part = strtok_r(buf, ".", &save); part; part = strtok_r(NULL, ".", &save)) {
        cur = node_get(cur, part);
        if (!cur)
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
        if (!close) {
            cfg_err(c, n, key, "unterminated placeholder '%s'", cfg_show(c, s));
            ok = false;
            break;
        }
        const char *colon = memchr(s + 2, ':', (size_t)(close - s - 2));
        const char *name_end = colon ? colon : close;
        char *name = arena_strndup(&c->a, s + 2, (size_t)(name_end - s - 2));
        char *def =
            colon != NULL ? arena_strndup(&c->a, colon + 1, (size_t)(close - colon - 1)) : NULL;
        if (name[0] == '\0') {
            cfg_err(c, n, key, "empty placeholder name in '%s'", cfg_show(c, n->text));
            ok = false;
            s = close + 1;
            continue;
        }
        const char *val = env_get(c, name);
        if (!val && !env_only) {
            struct node *ref = find_dotted(c->root, name);
            if (ref && ref->kind == N_SCALAR && !ref->is_null) {
                if (ref->resolving || c->ref_depth >= 32) {
                    cfg_err(c, n, key, "placeholder '${%s}' is part of a cycle", cfg_show(c, name));
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
        if (!val)
            val = def;
        if (!val) {
            cfg_err(c, n, key, "unresolved placeholder '${%s}'", cfg_show(c, name));
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

void cfg_resolve_tree(struct ctx *c, struct node *n, const char *key)
{
    if (n->kind == N_SCALAR) {
        resolve_scalar(c, n, key, false);
        return;
    }
    for (size_t i = 0; i < n->n; i++)
        cfg_resolve_tree(c, n->vals[i], n->kind == N_MAP ? n->keys[i]->text : key);
}

/* Split "a, b,c" into trimmed non-empty items. */
static void split_commas(struct ctx *c, const char *s, const struct src *src, struct items *out,
                         size_t max)
{
    const char *p = s;
    while (*p != '\0' && out->n < max) {
        const char *end = strchr(p, ',');
        if (!end)
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
bool cfg_list_items(struct ctx *c, struct node *n, const char *key, bool env_only,
                    struct items *out)
{
    size_t max = n->kind == N_SEQ ? n->n : strlen(n->text ? n->text : "") + 1;
    out->v = arena_alloc(&c->a, (max + 1) * sizeof(*out->v));
    out->n = 0;
    if (n->kind == N_MAP) {
        cfg_err(c, n, key, "expected a list, got a map");
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
            cfg_err(c, it, key, "list items must be scalars");
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
        struct node *sec = node_get(tree, paths[i][0]);
        if (i == 1)
            sec = node_get(sec, paths[i][1]);
        long j = node_index(sec, i == 0 ? "include" : "active");
        if (j < 0)
            continue;
        cfg_err(c, sec->keys[j], NULL, "%s can only be set in the main file", paths[i][2]);
        node_remove(sec, (size_t)j);
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
    struct node *t = cfg_load_file(c, path);
    if (!t)
        return;
    strip_step0(c, t);
    deep_merge(c, c->root, t);
}

void cfg_load_includes(struct ctx *c, const struct items *inc)
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
            cfg_err_at(c, &inc->v[i].src, "include", "cannot expand '%s'", cfg_show(c, pat));
            continue;
        }
        qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), cmp_str);
        for (size_t k = 0; k < g.gl_pathc; k++) {
            struct stat st;
            if (stat(g.gl_pathv[k], &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            if (cfg_already_loaded(c, g.gl_pathv[k]))
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

void cfg_load_profiles(struct ctx *c, const struct items *prof)
{
    const char *path = c->opts->path;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    const char *ext = ".yaml";
    size_t stem_len = strlen(base);
    if (dot && dot != base && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0)) {
        ext = dot;
        stem_len = (size_t)(dot - base);
    }
    for (size_t i = 0; i < prof->n; i++) {
        const char *p = prof->v[i].text;
        if (!profile_name_ok(p)) {
            cfg_err_at(c, &prof->v[i].src, NULL, "bad profile name '%s'", cfg_show(c, p));
            continue;
        }
        char *file = arena_printf(&c->a, "%s%.*s-%s%s", c->dir, (int)stem_len, base, p, ext);
        struct stat st;
        if (stat(file, &st) != 0 && errno == ENOENT) {
            cfg_warn_at(c, &prof->v[i].src, NULL, "profile '%s': file %s not found", p, file);
            continue;
        }
        if (cfg_already_loaded(c, file))
            continue;
        merge_file(c, file);
    }
}

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
        if (!t->v)
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
                    int depth, const struct key *defs)
{
    for (const struct key *d = defs; d->name; d++) {
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
            if (!svcs || svcs->kind != N_MAP)
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
    struct node *m = node_new(c, N_MAP, &v->src);
    bool b;
    int64_t attempts;
    struct src es = {NULL, 0, 0, 0, var};
    if (v->kind == N_SCALAR && v->is_null) {
        /* an empty value: becomes a map */
    } else if (v->kind == N_SCALAR && units_parse_bool(v->text, &b) == 0) {
        if (!b && strcmp(k, "budget") != 0) {
            cfg_err_at(c, &es, NULL, "not applied: %s is false at %s", k, cfg_pos(c, &v->src));
            return NULL;
        }
    } else if (v->kind == N_SCALAR && strcmp(k, "retry") == 0 &&
               units_parse_int(v->text, 1, INT_MAX, &attempts) == 0) {
        node_push(c, m, node_new_scalar(c, "max-attempts", &v->src), v);
    } else {
        cfg_err_at(c, &es, NULL, "not applied: %s at %s is not a map", k, cfg_pos(c, &v->src));
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
        val = node_new(c, N_SEQ, &s);
        struct items it = {arena_alloc(&c->a, (strlen(value) + 1) * sizeof(struct item)), 0};
        split_commas(c, value, &s, &it, strlen(value) + 1);
        for (size_t i = 0; i < it.n; i++)
            node_push(c, val, NULL, node_new_scalar(c, it.v[i].text, &s));
    } else {
        val = node_new_scalar(c, value, &s);
    }
    struct node *cur = c->root;
    for (int d = 0; d + 1 < e->depth; d++) {
        long i = node_index(cur, e->path[d]);
        if (i < 0) {
            struct node *m = node_new(c, N_MAP, &s);
            node_push(c, cur, node_new_scalar(c, e->path[d], &s), m);
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
                cfg_err_at(c, &s, NULL, "not applied: %s at %s is not a map", k,
                           cfg_pos(c, &next->src));
                next = NULL;
            }
            if (!next)
                return;
        }
        cur = next;
    }
    const char *last = e->path[e->depth - 1];
    long i = node_index(cur, last);
    if (i < 0) {
        node_push(c, cur, node_new_scalar(c, last, &s), val);
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
            long j = node_index(old, "max-attempts");
            if (j >= 0)
                old->vals[j] = val;
            else
                node_push(c, old, node_new_scalar(c, "max-attempts", &s), val);
            return;
        }
    }
    cur->vals[i] = val;
}

void cfg_apply_env(struct ctx *c)
{
    struct envtab t = {0};
    const char *path[8];
    env_gen(c, &t, "", path, 0, schema_top);
    qsort(t.v, t.n, sizeof(*t.v), cmp_envkey);
    for (size_t i = 0; i + 1 < t.n; i++) {
        if (strcmp(t.v[i].name, t.v[i + 1].name) == 0)
            t.v[i].ambiguous = t.v[i + 1].ambiguous = true;
    }

    /* two services whose variables share a stem */
    struct node *svcs = find_dotted(c->root, "pyfly.client.services");
    if (svcs && svcs->kind == N_MAP) {
        for (size_t i = 0; i < svcs->n; i++) {
            for (size_t j = 0; j < i; j++) {
                const char *a = env_stem(c, "", svcs->keys[j]->text);
                const char *b = env_stem(c, "", svcs->keys[i]->text);
                if (strcmp(a, b) == 0)
                    cfg_err(c, svcs->keys[i], NULL,
                            "services '%s' and '%s' map to the same environment variables "
                            "PYFLY_CLIENT_SERVICES_%s_*",
                            cfg_show(c, svcs->keys[j]->text), cfg_show(c, svcs->keys[i]->text), b);
            }
        }
    }

    for (size_t i = 0; i < t.n; i++) {
        struct envkey *e = &t.v[i];
        const char *value = env_get(c, e->name);
        if (!value || e->kind == KD_STEP0)
            continue;
        if (i > 0 && strcmp(t.v[i - 1].name, e->name) == 0)
            continue; /* reported with the first of the same name */
        if (e->kind == KD_NOENV) {
            struct src s = {NULL, 0, 0, 0, arena_printf(&c->a, "env %s", e->name)};
            cfg_warn_at(c, &s, NULL,
                        "%s is a map and cannot be overridden from the environment; "
                        "ignored",
                        dotted(c, e));
            continue;
        }
        if (e->ambiguous) {
            struct src s = {NULL, 0, 0, 0, arena_printf(&c->a, "env %s", e->name)};
            cfg_err_at(c, &s, NULL, "ambiguous: matches both %s and %s", dotted(c, e),
                       dotted(c, &t.v[i + 1]));
            continue;
        }
        env_apply(c, e, value);
    }

    /* unknown PYFLY_* / AHOYD_* variables */
    const char **names = xcalloc(t.n + 1, sizeof(*names));
    for (size_t i = 0; i < t.n; i++)
        names[i] = t.v[i].name;
    for (char *const *ev = c->opts->env; ev && *ev; ev++) {
        if (strncmp(*ev, "PYFLY_", 6) != 0 && strncmp(*ev, "AHOYD_", 6) != 0)
            continue;
        const char *eq = strchr(*ev, '=');
        if (!eq)
            continue;
        char *name = arena_strndup(&c->a, *ev, (size_t)(eq - *ev));
        struct envkey key = {.name = name};
        if (bsearch(&key, t.v, t.n, sizeof(*t.v), cmp_envkey) != NULL)
            continue;
        struct src s = {NULL, 0, 0, 0, arena_printf(&c->a, "env %s", name)};
        const char *sug = cfg_suggest(name, names, t.n);
        if (sug)
            cfg_warn_at(c, &s, NULL, "unknown variable; did you mean '%s'?", sug);
        else
            cfg_warn_at(c, &s, NULL, "unknown variable, ignored");
    }
    free(names);
    free(t.v);
}

/* Step 0: the include globs and the active profiles, placeholders from the
 * environment only. */
void cfg_step0(struct ctx *c, struct items *inc, const char **inc_prov, struct items *prof,
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
        struct node *n = node_get(node_get(c->root, "ahoyd"), "include");
        if (n && cfg_list_items(c, n, "include", true, inc))
            *inc_prov = cfg_origin(c, n);
    }
    if (c->opts->profiles) {
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
        struct node *n = node_get(node_get(node_get(c->root, "pyfly"), "profiles"), "active");
        if (n && cfg_list_items(c, n, "active", true, prof))
            *prof_prov = cfg_origin(c, n);
    }
}
