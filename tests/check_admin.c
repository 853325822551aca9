/*
 * check_admin.c - the admin API (SPEC 6): routes, status codes and JSON
 * fields, the bearer-token rule, the Prometheus exposition and how its values
 * move with traffic, reload through POST /v1/reload, and that nothing of it
 * answers on the proxy port.
 *
 * The exposition is checked twice. A live scrape after traffic with failures goes
 * through `promtool check metrics` (Debian package prometheus; found as $PROMTOOL,
 * /usr/bin/promtool or on PATH; the test skips without it, and fails under CI=true),
 * which must exit 0 and print no lint finding. Every scrape also goes through a
 * strict parser written here (expo_parse): every line is a
 * `# HELP`, a `# TYPE` or a sample; names, label names and escapes are
 * validated; each family has HELP then TYPE before its samples, its samples
 * are contiguous, no series repeats; histogram buckets are cumulative, end in
 * +Inf and equal _count. The parser has its own test case with bad inputs so
 * that a lax parser cannot hide a bad exposition.
 */
#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"
#include "metrics.h"
#include "runtime.h"

static struct proc stub, stub2, daemon_proc;

/* ---- a strict parser for the text exposition format 0.0.4 ------------------------------ */

struct expo_sample {
    char *key; /* name{k="v",...} with labels sorted by name, values escaped again */
    char *name;
    char *le;    /* the le label, or NULL */
    char *group; /* for histograms: name-less key without le (the series of one histogram) */
    double value;
};

struct expo_family {
    char *name;
    char type[16];
    bool help, typed;
};

struct expo {
    struct expo_sample *s;
    size_t n, cap;
    struct expo_family *f;
    size_t nf, capf;
    char error[512];
};

static void expo_free(struct expo *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->s[i].key);
        free(e->s[i].name);
        free(e->s[i].le);
        free(e->s[i].group);
    }
    for (size_t i = 0; i < e->nf; i++)
        free(e->f[i].name);
    free(e->s);
    free(e->f);
    memset(e, 0, sizeof(*e));
}

static bool expo_fail(struct expo *e, int line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(e->error, sizeof(e->error), "line %d: ", line);
    va_start(ap, fmt);
    vsnprintf(e->error + n, sizeof(e->error) - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool metric_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

static bool label_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* A value: a Go float (digits, '.', exponent) or +Inf, -Inf, NaN, nothing after it. */
static bool parse_value(const char *s, double *out)
{
    char *end;
    if (strcmp(s, "+Inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(s, "-Inf") == 0) {
        *out = -INFINITY;
        return true;
    }
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return true;
    }
    if (*s == '\0' || strspn(s, "0123456789.eE+-") != strlen(s))
        return false;
    *out = strtod(s, &end);
    return *end == '\0';
}

struct label {
    char name[64];
    char value[512]; /* unescaped */
};

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct label *)a)->name, ((const struct label *)b)->name);
}

static void append_escaped(char *out, size_t cap, const char *v)
{
    size_t o = strlen(out);
    for (; *v && o + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            out[o++] = '\\';
            out[o++] = *v;
        } else if (*v == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *v;
        }
    }
    out[o] = '\0';
}

/* name{sorted labels}; skip_le leaves the le label out. */
static char *canonical_key(const char *name, struct label *l, int nl, bool skip_le)
{
    char buf[4096];
    bool first = true;
    snprintf(buf, sizeof(buf), "%s", name);
    qsort(l, (size_t)nl, sizeof(*l), label_cmp);
    for (int i = 0; i < nl; i++) {
        if (skip_le && strcmp(l[i].name, "le") == 0)
            continue;
        strcat(buf, first ? "{" : ",");
        strcat(buf, l[i].name);
        strcat(buf, "=\"");
        append_escaped(buf, sizeof(buf), l[i].value);
        strcat(buf, "\"");
        first = false;
    }
    if (!first)
        strcat(buf, "}");
    return strdup(buf);
}

static struct expo_family *family_find(struct expo *e, const char *name)
{
    for (size_t i = 0; i < e->nf; i++)
        if (strcmp(e->f[i].name, name) == 0)
            return &e->f[i];
    return NULL;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n > k && memcmp(s + n - k, suffix, k) == 0;
}

static bool parse_comment(struct expo *e, int ln, const char *line, struct expo_family **cur)
{
    bool help = strncmp(line, "# HELP ", 7) == 0;
    bool type = strncmp(line, "# TYPE ", 7) == 0;
    if (!help && !type)
        return expo_fail(e, ln, "comment that is neither HELP nor TYPE: %s", line);
    const char *name = line + 7;
    size_t n = strcspn(name, " ");
    if (!metric_name_ok(name, n) || name[n] != ' ')
        return expo_fail(e, ln, "bad metric name in: %s", line);
    char fname[256];
    snprintf(fname, sizeof(fname), "%.*s", (int)n, name);
    const char *rest = name + n + 1;
    struct expo_family *f = family_find(e, fname);
    if (help) {
        if (f)
            return expo_fail(e, ln, "second HELP (or HELP after TYPE) for %s", fname);
        for (const char *p = rest; *p; p++)
            if (*p == '\\' && *++p != '\\' && *p != 'n')
                return expo_fail(e, ln, "bad escape in HELP of %s", fname);
        if (*rest == '\0')
            return expo_fail(e, ln, "empty HELP for %s", fname);
        if (e->nf == e->capf) {
            e->capf = e->capf ? e->capf * 2 : 16;
            e->f = realloc(e->f, e->capf * sizeof(*e->f));
        }
        f = &e->f[e->nf++];
        memset(f, 0, sizeof(*f));
        f->name = strdup(fname);
        f->help = true;
        *cur = NULL; /* a family starts: no samples until its TYPE */
        return true;
    }
    if (!f || !f->help)
        return expo_fail(e, ln, "TYPE before HELP for %s", fname);
    if (f->typed)
        return expo_fail(e, ln, "second TYPE for %s", fname);
    if (strcmp(rest, "counter") != 0 && strcmp(rest, "gauge") != 0 &&
        strcmp(rest, "histogram") != 0)
        return expo_fail(e, ln, "unknown TYPE '%s' for %s", rest, fname);
    if (strcmp(rest, "counter") == 0 && !ends_with(fname, strlen(fname), "_total"))
        return expo_fail(e, ln, "counter %s does not end in _total", fname);
    snprintf(f->type, sizeof(f->type), "%s", rest);
    f->typed = true;
    *cur = f;
    return true;
}

static bool parse_sample(struct expo *e, int ln, const char *line, struct expo_family *cur)
{
    size_t n = strcspn(line, "{ ");
    struct label labels[16];
    int nl = 0;
    char name[256];

    if (!metric_name_ok(line, n) || n >= sizeof(name))
        return expo_fail(e, ln, "bad sample name in: %s", line);
    snprintf(name, sizeof(name), "%.*s", (int)n, line);
    const char *p = line + n;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t k = strcspn(p, "=");
            if (!label_name_ok(p, k) || p[k] != '=' || p[k + 1] != '"' || k >= 64)
                return expo_fail(e, ln, "bad label in: %s", line);
            if (nl == 16)
                return expo_fail(e, ln, "too many labels");
            struct label *l = &labels[nl++];
            snprintf(l->name, sizeof(l->name), "%.*s", (int)k, p);
            for (int i = 0; i < nl - 1; i++)
                if (strcmp(labels[i].name, l->name) == 0)
                    return expo_fail(e, ln, "label %s twice", l->name);
            p += k + 2;
            size_t o = 0;
            for (;;) {
                if (*p == '\0' || *p == '\n')
                    return expo_fail(e, ln, "unterminated label value: %s", line);
                if (*p == '"')
                    break;
                if (*p == '\\') {
                    p++;
                    if (*p == '\\' || *p == '"')
                        l->value[o++] = *p;
                    else if (*p == 'n')
                        l->value[o++] = '\n';
                    else
                        return expo_fail(e, ln, "bad escape \\%c in: %s", *p, line);
                } else {
                    l->value[o++] = *p;
                }
                p++;
                if (o + 1 >= sizeof(l->value))
                    return expo_fail(e, ln, "label value too long");
            }
            l->value[o] = '\0';
            p++; /* closing quote */
            if (*p == ',')
                p++;
            else if (*p != '}')
                return expo_fail(e, ln, "expected , or } in: %s", line);
        }
        p++;
    }
    if (*p != ' ')
        return expo_fail(e, ln, "expected one space before the value: %s", line);
    p++;
    if (strchr(p, ' '))
        return expo_fail(e, ln, "junk (a timestamp?) after the value: %s", line);
    double v;
    if (!parse_value(p, &v))
        return expo_fail(e, ln, "bad value '%s'", p);

    /* the sample belongs to the current family */
    if (!cur)
        return expo_fail(e, ln, "sample %s without HELP and TYPE before it", name);
    const char *le = NULL;
    for (int i = 0; i < nl; i++)
        if (strcmp(labels[i].name, "le") == 0)
            le = labels[i].value;
    if (strcmp(cur->type, "histogram") == 0) {
        size_t fl = strlen(cur->name);
        bool bucket = strncmp(name, cur->name, fl) == 0 && strcmp(name + fl, "_bucket") == 0;
        bool sum = strncmp(name, cur->name, fl) == 0 && strcmp(name + fl, "_sum") == 0;
        bool count = strncmp(name, cur->name, fl) == 0 && strcmp(name + fl, "_count") == 0;
        if (!bucket && !sum && !count)
            return expo_fail(e, ln, "sample %s outside its family (%s)", name, cur->name);
        if (bucket != (le != NULL))
            return expo_fail(e, ln, "le label on %s: %s", bucket ? "missing" : "unexpected", line);
        if (le) {
            double b;
            if (!parse_value(le, &b))
                return expo_fail(e, ln, "bad le value '%s'", le);
        }
    } else {
        if (strcmp(name, cur->name) != 0)
            return expo_fail(e, ln, "sample %s outside its family (%s)", name, cur->name);
        if (le)
            return expo_fail(e, ln, "le label outside a histogram");
    }
    if (strcmp(cur->type, "gauge") != 0 && (!(v >= 0) || isinf(v)))
        return expo_fail(e, ln, "counter or histogram value %g is not >= 0", v);

    struct expo_sample s = {0};
    s.le = le ? strdup(le) : NULL; /* before canonical_key sorts the labels under le */
    s.key = canonical_key(name, labels, nl, false);
    s.name = strdup(name);
    s.group = canonical_key(cur->name, labels, nl, true);
    s.value = v;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->s[i].key, s.key) == 0) {
            free(s.key);
            free(s.name);
            free(s.le);
            free(s.group);
            return expo_fail(e, ln, "duplicate series %s", line);
        }
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 64;
        e->s = realloc(e->s, e->cap * sizeof(*e->s));
    }
    e->s[e->n++] = s;
    return true;
}

/* Histogram rules, per series of each histogram family. */
static bool check_histograms(struct expo *e)
{
    for (size_t i = 0; i < e->nf; i++) {
        struct expo_family *f = &e->f[i];
        if (strcmp(f->type, "histogram") != 0)
            continue;
        char bucket[300], sum[300], count[300];
        snprintf(bucket, sizeof(bucket), "%s_bucket", f->name);
        snprintf(sum, sizeof(sum), "%s_sum", f->name);
        snprintf(count, sizeof(count), "%s_count", f->name);
        for (size_t j = 0; j < e->n; j++) {
            if (strcmp(e->s[j].name, bucket) != 0)
                continue;
            /* the first bucket of a series: walk its series in order */
            bool seen_before = false;
            for (size_t k = 0; k < j; k++)
                if (strcmp(e->s[k].group, e->s[j].group) == 0)
                    seen_before = true;
            if (seen_before)
                continue;
            double prev_le = -INFINITY, prev_v = 0, inf_v = -1, sum_v = NAN, count_v = -1;
            for (size_t k = j; k < e->n; k++) {
                struct expo_sample *s = &e->s[k];
                if (strcmp(s->group, e->s[j].group) != 0)
                    continue;
                if (strcmp(s->name, bucket) == 0) {
                    double le;
                    parse_value(s->le, &le);
                    if (inf_v >= 0)
                        return expo_fail(e, 0, "bucket after +Inf in %s", s->group);
                    if (!(le > prev_le))
                        return expo_fail(e, 0, "le not increasing in %s", s->group);
                    if (s->value < prev_v)
                        return expo_fail(e, 0, "buckets not cumulative in %s", s->group);
                    prev_le = le;
                    prev_v = s->value;
                    if (isinf(le))
                        inf_v = s->value;
                } else if (strcmp(s->name, sum) == 0) {
                    sum_v = s->value;
                } else if (strcmp(s->name, count) == 0) {
                    count_v = s->value;
                }
            }
            if (inf_v < 0)
                return expo_fail(e, 0, "no +Inf bucket in %s", e->s[j].group);
            if (count_v < 0 || isnan(sum_v))
                return expo_fail(e, 0, "_sum or _count missing in %s", e->s[j].group);
            if (count_v != inf_v)
                return expo_fail(e, 0, "+Inf bucket %g != _count %g in %s", inf_v, count_v,
                                 e->s[j].group);
        }
        /* every _sum/_count has buckets */
        for (size_t j = 0; j < e->n; j++) {
            if (strcmp(e->s[j].name, sum) != 0 && strcmp(e->s[j].name, count) != 0)
                continue;
            bool has = false;
            for (size_t k = 0; k < e->n && !has; k++)
                has =
                    strcmp(e->s[k].name, bucket) == 0 && strcmp(e->s[k].group, e->s[j].group) == 0;
            if (!has)
                return expo_fail(e, 0, "%s without buckets", e->s[j].key);
        }
    }
    return true;
}

static bool expo_parse(const char *text, struct expo *e)
{
    struct expo_family *cur = NULL;
    const char *p = text;
    int ln = 0;

    memset(e, 0, sizeof(*e));
    if (*text == '\0')
        return expo_fail(e, 0, "empty exposition");
    if (text[strlen(text) - 1] != '\n')
        return expo_fail(e, 0, "the last line does not end in a newline");
    while (*p) {
        const char *nl = strchr(p, '\n');
        char line[4096];
        size_t n = (size_t)(nl - p);
        ln++;
        if (n >= sizeof(line))
            return expo_fail(e, ln, "line too long");
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (n == 0)
            return expo_fail(e, ln, "empty line");
        if (memchr(line, '\r', n) || memchr(line, '\t', n))
            return expo_fail(e, ln, "CR or TAB in line");
        if (line[0] == '#') {
            if (!parse_comment(e, ln, line, &cur))
                return false;
        } else if (!parse_sample(e, ln, line, cur)) {
            return false;
        }
    }
    for (size_t i = 0; i < e->nf; i++)
        if (!e->f[i].typed)
            return expo_fail(e, 0, "family %s has HELP but no TYPE", e->f[i].name);
    return check_histograms(e);
}

/* Value of a series given as name and label pairs (any order); NAN when absent. */
static double expo_get(const struct expo *e, const char *name, ...)
{
    struct label l[16];
    int nl = 0;
    va_list ap;
    const char *k;

    va_start(ap, name);
    while ((k = va_arg(ap, const char *)) != NULL && nl < 16) {
        snprintf(l[nl].name, sizeof(l[nl].name), "%s", k);
        snprintf(l[nl].value, sizeof(l[nl].value), "%s", va_arg(ap, const char *));
        nl++;
    }
    va_end(ap);
    char *key = canonical_key(name, l, nl, false);
    double v = NAN;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->s[i].key, key) == 0)
            v = e->s[i].value;
    free(key);
    return v;
}

/* How many series of that sample name carry label=value (label NULL: all). */
static int expo_count(const struct expo *e, const char *name, const char *label, const char *value)
{
    char needle[600];
    int n = 0;
    snprintf(needle, sizeof(needle), "%s=\"%s\"", label ? label : "", value ? value : "");
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->s[i].name, name) == 0 && (!label || strstr(e->s[i].key, needle)))
            n++;
    return n;
}

/* GET /metrics on the admin port, assert 200 + content type, parse strictly. */
static void scrape(const struct proc *p, struct expo *e)
{
    struct http_resp r;
    http_get(p->admin_port, "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(http_header(&r, "Content-Type"));
    ck_assert_msg(strncmp(http_header(&r, "Content-Type"), "text/plain; version=0.0.4", 25) == 0,
                  "content type %s", http_header(&r, "Content-Type"));
    bool ok = expo_parse(r.body, e);
    ck_assert_msg(ok, "exposition rejected: %s\n%.1500s", e->error, r.body);
    http_resp_free(&r);
}

static double metric(const struct proc *p, const char *name, ...)
{
    struct expo e;
    struct label l[16];
    int nl = 0;
    va_list ap;
    const char *k;

    scrape(p, &e);
    va_start(ap, name);
    while ((k = va_arg(ap, const char *)) != NULL && nl < 16) {
        snprintf(l[nl].name, sizeof(l[nl].name), "%s", k);
        snprintf(l[nl].value, sizeof(l[nl].value), "%s", va_arg(ap, const char *));
        nl++;
    }
    va_end(ap);
    char *key = canonical_key(name, l, nl, false);
    double v = NAN;
    for (size_t i = 0; i < e.n; i++)
        if (strcmp(e.s[i].key, key) == 0)
            v = e.s[i].value;
    free(key);
    expo_free(&e);
    return v;
}

/* Poll a metric until it equals want (bounded); returns the last value. */
static double metric_wait(const struct proc *p, double want, int timeout_ms, const char *name,
                          const char *k1, const char *v1, const char *k2, const char *v2)
{
    double end = harness_now_ms() + timeout_ms, v;
    for (;;) {
        v = metric(p, name, k1, v1, k2, v2, NULL);
        if (v == want || harness_now_ms() > end)
            return v;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- helpers ------------------------------------------------------------------------- */

static char *yaml_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    ck_assert_int_ge(vasprintf(&s, fmt, ap), 0);
    va_end(ap);
    return s;
}

/* A configuration with ahoyd on listen and admin-listen, the access log off, extra
 * (ahoyd lines, may be NULL) after admin-listen, and the services that services_fmt
 * prints (the lines under pyfly.client.services). Free it. */
static char *admin_yaml(const char *listen, const char *admin, const char *extra,
                        const char *services_fmt, ...) __attribute__((format(printf, 4, 5)));
static char *admin_yaml(const char *listen, const char *admin, const char *extra,
                        const char *services_fmt, ...)
{
    va_list ap;
    char *services = NULL;
    va_start(ap, services_fmt);
    ck_assert_int_ge(vasprintf(&services, services_fmt, ap), 0);
    va_end(ap);
    char *yaml = yaml_printf("ahoyd:\n"
                             "  listen: %s\n"
                             "  admin-listen: %s\n"
                             "%s"
                             "  access-log: off\n"
                             "pyfly:\n"
                             "  client:\n"
                             "    services:\n"
                             "%s",
                             listen, admin, extra ? extra : "", services);
    free(services);
    return yaml;
}

static void start_daemon(struct proc *p, const char *yaml)
{
    int rc = ahoyd_start(p, yaml);
    ck_assert_msg(rc == 0, "ahoyd did not start with:\n%s", yaml);
    ck_assert_int_gt(p->admin_port, 0);
    ck_assert_int_ne(p->admin_port, p->port);
}

/* One stub, ahoyd with the admin API on 127.0.0.1:0 and service "svc" -> the stub. */
static void start_svc(const char *service_extra, const char *more_services)
{
    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    char *yaml = admin_yaml("127.0.0.1:0", "127.0.0.1:0", NULL,
                            "      svc:\n"
                            "        base-url: http://127.0.0.1:%d/base\n"
                            "%s%s",
                            stub.port, service_extra ? service_extra : "",
                            more_services ? more_services : "");
    start_daemon(&daemon_proc, yaml);
    free(yaml);
}

/* One stub, ahoyd with the admin API on admin behind the token s3cret and service
 * "svc" -> the stub (no base path). */
static void start_with_token(const char *admin)
{
    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    char *yaml = admin_yaml("127.0.0.1:0", admin, "  admin-token: s3cret\n",
                            "      svc:\n"
                            "        base-url: http://127.0.0.1:%d\n",
                            stub.port);
    start_daemon(&daemon_proc, yaml);
    free(yaml);
}

static cJSON *admin_json(const struct proc *p, const char *method, const char *path,
                         const char *const *headers, long want_status)
{
    struct http_resp r;
    http_send(p->admin_port, method, path, headers, NULL, 0, &r);
    ck_assert_msg(r.status == want_status, "%s %s: status %ld, want %ld, body %.400s", method, path,
                  r.status, want_status, r.body);
    ck_assert_ptr_nonnull(http_header(&r, "Content-Type"));
    ck_assert_str_eq(http_header(&r, "Content-Type"), "application/json");
    cJSON *j = json_body(&r);
    ck_assert_msg(j != NULL, "%s %s: not JSON: %.300s", method, path, r.body);
    http_resp_free(&r);
    return j;
}

/* An admin error: {"error":{"code":..,"message":..,"status":..}} */
static void assert_admin_error(const struct http_resp *r, long status, const char *code)
{
    ck_assert_msg(r->status == status, "status %ld, want %ld (%.300s)", r->status, status, r->body);
    ck_assert_str_eq(http_header(r, "Content-Type"), "application/json");
    cJSON *j = json_body(r);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_str(j, "error.code"), code);
    ck_assert_int_eq((int)json_num(j, "error.status", -1), (int)status);
    ck_assert_ptr_nonnull(json_str(j, "error.message"));
    ck_assert_int_gt(strlen(json_str(j, "error.message")), 0);
    cJSON_Delete(j);
}

static void proxy_get(const char *target, const char *const *headers, long want)
{
    struct http_resp r;
    http_get(daemon_proc.port, target, headers, &r);
    ck_assert_msg(r.status == want, "GET %s: %ld, want %ld: %.300s", target, r.status, want,
                  r.body);
    http_resp_free(&r);
}

static cJSON *service_of(cJSON *services, const char *name)
{
    cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(services, "services"))
    {
        if (json_str(s, "name") && strcmp(json_str(s, "name"), name) == 0)
            return s;
    }
    return NULL;
}

static cJSON *endpoint_of(cJSON *service, int index)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(service, "endpoints"), index);
}

/* ---- the parser itself ------------------------------------------------------------------- */

static const char *const bad_expositions[] = {
    /* sample before HELP/TYPE */
    "a_total 1\n",
    /* TYPE without HELP */
    "# TYPE a_total counter\na_total 1\n",
    /* HELP without TYPE */
    "# HELP a_total x\na_total 1\n",
    /* two HELPs */
    "# HELP a_total x\n# HELP a_total y\n# TYPE a_total counter\na_total 1\n",
    /* unknown type */
    "# HELP a x\n# TYPE a summaryy\na 1\n",
    /* counter without _total */
    "# HELP a x\n# TYPE a counter\na 1\n",
    /* other comment */
    "# hello\n",
    /* bad metric name */
    "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",
    /* bad label name */
    "# HELP a x\n# TYPE a gauge\na{1x=\"v\"} 1\n",
    /* bad escape */
    "# HELP a x\n# TYPE a gauge\na{x=\"a\\tb\"} 1\n",
    /* unterminated label value */
    "# HELP a x\n# TYPE a gauge\na{x=\"ab} 1\n",
    /* raw newline can't appear: label value with quote unescaped */
    "# HELP a x\n# TYPE a gauge\na{x=\"a\"b\"} 1\n",
    /* duplicate series (label order differs) */
    "# HELP a x\n# TYPE a gauge\na{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n",
    /* duplicate label */
    "# HELP a x\n# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",
    /* interleaved families */
    "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\na 1\n",
    /* bad value */
    "# HELP a x\n# TYPE a gauge\na one\n",
    /* timestamp */
    "# HELP a x\n# TYPE a gauge\na 1 1700000000\n",
    /* two spaces */
    "# HELP a x\n# TYPE a gauge\na  1\n",
    /* empty line */
    "# HELP a x\n# TYPE a gauge\n\na 1\n",
    /* no final newline */
    "# HELP a x\n# TYPE a gauge\na 1",
    /* negative counter */
    "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",
    /* histogram: not cumulative */
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
    "h_sum 1\nh_count 1\n",
    /* histogram: +Inf != count */
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
    "h_sum 1\nh_count 3\n",
    /* histogram: no +Inf */
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    /* histogram: le decreasing */
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
    "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    /* histogram: bucket without le */
    "# HELP h x\n# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
    /* histogram: missing _sum */
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    /* histogram: foreign sample */
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\nh_max 1\n",
    NULL,
};

START_TEST(parser_rejects_bad_expositions)
{
    struct expo e;
    for (int i = 0; bad_expositions[i]; i++) {
        bool ok = expo_parse(bad_expositions[i], &e);
        ck_assert_msg(!ok, "accepted bad exposition #%d:\n%s", i, bad_expositions[i]);
        expo_free(&e);
    }
    /* and accepts a good one, with escapes, and finds its values */
    const char *good = "# HELP a x \\\\ y\n# TYPE a gauge\n"
                       "a{x=\"q\\\"u\\\\o\\nte\",y=\"\"} 1.5\na{x=\"2\"} -3\n"
                       "# HELP h_seconds x\n# TYPE h_seconds histogram\n"
                       "h_seconds_bucket{s=\"1\",le=\"0.5\"} 1\n"
                       "h_seconds_bucket{s=\"1\",le=\"+Inf\"} 2\n"
                       "h_seconds_sum{s=\"1\"} 0.75\nh_seconds_count{s=\"1\"} 2\n";
    bool ok = expo_parse(good, &e);
    ck_assert_msg(ok, "rejected good exposition: %s", e.error);
    ck_assert(expo_get(&e, "a", "y", "", "x", "q\"u\\o\nte", NULL) == 1.5);
    ck_assert(expo_get(&e, "a", "x", "2", NULL) == -3);
    ck_assert(expo_get(&e, "h_seconds_bucket", "s", "1", "le", "+Inf", NULL) == 2);
    ck_assert(isnan(expo_get(&e, "a", "x", "3", NULL)));
    expo_free(&e);
}
END_TEST

/* metrics.c in-process: escaping of label values, _none, the histogram buckets. */
START_TEST(render_in_process)
{
    struct service_conf sc;
    struct endpoint_rt ep;
    struct endpoint_rt *eps[1] = {&ep};
    struct service_state st;
    struct service_rt srv;
    struct runtime rt;
    struct expo e;
    size_t len = 0;

    memset(&sc, 0, sizeof(sc));
    memset(&ep, 0, sizeof(ep));
    memset(&st, 0, sizeof(st));
    memset(&srv, 0, sizeof(srv));
    memset(&rt, 0, sizeof(rt));
    sc.name = "we\"ird\\na\nme";
    ep.url = "http://h/\"q\"\\";
    ep.attempts[0] = 5;
    ep.attempts[4] = 2;
    ep.transitions_to[BREAKER_OPEN] = 3;
    ep.breaker.state = BREAKER_HALF_OPEN;
    counters_observe(&ep.attempt_duration, 3000);    /* le 0.005 */
    counters_observe(&ep.attempt_duration, 2000000); /* le 2.5 */
    st.retries = 7;
    st.inflight = 2;
    srv.conf = &sc;
    srv.endpoints = eps;
    srv.n_endpoints = 1;
    srv.state = &st;
    rt.services = &srv;
    rt.n_services = 1;

    counters_note_request(&st.counters, 200, NULL, 4000);             /* le 0.005 */
    counters_note_request(&st.counters, 200, NULL, 5000); /* le 0.005 (bounds are inclusive) */
    counters_note_request(&st.counters, 503, "circuit_open", 300000); /* le 0.5 */
    counters_note_request(&st.counters, 504, "upstream_timeout", 20000000); /* +Inf only */
    counters_note_request(NULL, 404, "unknown_service", 1500);
    counters_note_reload(true, 1700000000);
    counters_note_reload(false, 1700000100);

    char *text = metrics_render(&rt, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, strlen(text));
    bool ok = expo_parse(text, &e);
    ck_assert_msg(ok, "%s\n%.1500s", e.error, text);

    const char *svc = sc.name, *url = ep.url;
    ck_assert(expo_get(&e, "ahoyd_requests_total", "service", svc, "code", "200", NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_requests_total", "service", svc, "code", "503", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_requests_total", "service", "_none", "code", "404", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_errors_total", "service", svc, "error", "circuit_open", NULL) ==
              1);
    ck_assert(expo_get(&e, "ahoyd_errors_total", "service", "_none", "error", "unknown_service",
                       NULL) == 1);
    ck_assert_int_eq(expo_count(&e, "ahoyd_errors_total", NULL, NULL), 3);
    ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_bucket", "service", svc, "le", "0.005",
                       NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_bucket", "service", svc, "le", "0.25",
                       NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_bucket", "service", svc, "le", "0.5",
                       NULL) == 3);
    ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_bucket", "service", svc, "le", "10",
                       NULL) == 3);
    ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_bucket", "service", svc, "le", "+Inf",
                       NULL) == 4);
    ck_assert_int_eq(expo_count(&e, "ahoyd_request_duration_seconds_bucket", "service", "_none"),
                     12);
    ck_assert(fabs(expo_get(&e, "ahoyd_request_duration_seconds_sum", "service", svc, NULL) -
                   20.309) < 1e-9);
    ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_count", "service", svc, NULL) == 4);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", svc, "endpoint", url,
                       "outcome", "2xx", NULL) == 5);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", svc, "endpoint", url,
                       "outcome", "connect_failure", NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", svc, "endpoint", url,
                       "outcome", "response_too_large", NULL) == 0);
    ck_assert_int_eq(expo_count(&e, "ahoyd_upstream_attempts_total", NULL, NULL), 8);
    ck_assert(expo_get(&e, "ahoyd_retries_total", "service", svc, NULL) == 7);
    ck_assert(expo_get(&e, "ahoyd_inflight_requests", "service", svc, NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_circuit_state", "service", svc, "endpoint", url, NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_circuit_transitions_total", "service", svc, "endpoint", url, "to",
                       "open", NULL) == 3);
    ck_assert(expo_get(&e, "ahoyd_circuit_transitions_total", "service", svc, "endpoint", url, "to",
                       "half_open", NULL) == 0);
    ck_assert(expo_get(&e, "ahoyd_config_reloads_total", "result", "success", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_config_reloads_total", "result", "failure", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_config_last_reload_success_timestamp_seconds", NULL) ==
              1700000000);
    ck_assert(expo_get(&e, "ahoyd_build_info", "version", PACKAGE_VERSION, NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_bucket", "service", svc,
                       "endpoint", url, "le", "0.005", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_bucket", "service", svc,
                       "endpoint", url, "le", "1", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_bucket", "service", svc,
                       "endpoint", url, "le", "2.5", NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_count", "service", svc,
                       "endpoint", url, NULL) == 2);
    ck_assert(fabs(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_sum", "service", svc,
                            "endpoint", url, NULL) -
                   2.003) < 1e-9);
    ck_assert(expo_get(&e, "process_open_fds", NULL) > 0);
    ck_assert(expo_get(&e, "process_resident_memory_bytes", NULL) > 0);
    /* the raw text escapes as the format says */
    ck_assert_ptr_nonnull(strstr(text, "service=\"we\\\"ird\\\\na\\nme\""));
    ck_assert_ptr_nonnull(strstr(text, "endpoint=\"http://h/\\\"q\\\"\\\\\""));
    /* health and ejection: healthy without a check, no check series, nothing ejected */
    ck_assert(expo_get(&e, "ahoyd_endpoint_healthy", "service", svc, "endpoint", url, NULL) == 1);
    ck_assert_int_eq(expo_count(&e, "ahoyd_health_checks_total", NULL, NULL), 0);
    ck_assert(expo_get(&e, "ahoyd_ejections_total", "service", svc, "endpoint", url, NULL) == 0);
    ck_assert(expo_get(&e, "ahoyd_panic", "service", svc, NULL) == 0);
    ck_assert(expo_get(&e, "ahoyd_tunnels_open", "service", svc, NULL) == 0);
    /* every family once, in one block: 12 ahoyd_ families before the attempt histogram,
     * the connection gauges and the 4 of health and ejection, and 6 process_ ones */
    ck_assert_int_eq((int)e.nf, 25);
    expo_free(&e);
    free(text);
    counters_service_free(st.counters);

    /* no runtime at all: still valid, still has the process-wide families */
    text = metrics_render(NULL, &len);
    ck_assert_ptr_nonnull(text);
    ok = expo_parse(text, &e);
    ck_assert_msg(ok, "%s\n%.1500s", e.error, text);
    ck_assert_int_eq((int)e.nf, 25);
    expo_free(&e);
    free(text);
}
END_TEST

/* ---- routes --------------------------------------------------------------------------- */

START_TEST(routes_and_fields)
{
    struct http_resp r;
    cJSON *j, *s, *ep;

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    char *yaml = admin_yaml(
        "127.0.0.1:0", "127.0.0.1:0", NULL,
        "      pool:\n"
        "        endpoints:\n"
        "          - http://127.0.0.1:%d/one\n"
        "          - {url: http://127.0.0.1:%d/two, weight: 3}\n"
        "        load-balancer: least-request\n"
        "        timeout: 2s\n"
        "        connect-timeout: 500ms\n"
        "        deadline: 10s\n"
        "        max-inflight: 7\n"
        "        retry: {max-attempts: 4, base-delay: 200ms, max-delay: 5s, jitter: full,\n"
        "                retry-on: [reset, 503, gateway-error], retry-non-idempotent: true,\n"
        "                honor-retry-after: false, budget: {ratio: 0.25, min-per-second: 3}}\n"
        "        circuit-breaker: {failure-threshold: 4, recovery-timeout: 9s,\n"
        "                          half-open-max-calls: 2}\n"
        "      plain:\n"
        "        base-url: http://127.0.0.1:%d\n"
        "        retry: false\n"
        "        circuit-breaker: false\n",
        stub.port, stub.port, stub.port);
    start_daemon(&daemon_proc, yaml);
    free(yaml);

    j = admin_json(&daemon_proc, "GET", "/healthz", NULL, 200);
    ck_assert_str_eq(json_str(j, "status"), "ok");
    ck_assert_int_eq(cJSON_GetArraySize(j), 1);
    cJSON_Delete(j);
    j = admin_json(&daemon_proc, "GET", "/readyz", NULL, 200);
    ck_assert_str_eq(json_str(j, "status"), "ready");
    cJSON_Delete(j);

    /* HEAD works on GET routes, without a body */
    http_send(daemon_proc.admin_port, "HEAD", "/healthz", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    http_resp_free(&r);

    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "services")), 2);
    /* config order */
    ck_assert_str_eq(json_str(cJSON_GetArrayItem(json_path(j, "services"), 0), "name"), "pool");
    ck_assert_str_eq(json_str(cJSON_GetArrayItem(json_path(j, "services"), 1), "name"), "plain");
    s = service_of(j, "pool");
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(json_str(s, "load_balancer"), "least-request");
    ck_assert(json_num(s, "timeout_ms", -1) == 2000);
    ck_assert(json_num(s, "connect_timeout_ms", -1) == 500);
    ck_assert(json_num(s, "deadline_ms", -1) == 10000);
    ck_assert(json_num(s, "max_inflight", -1) == 7);
    ck_assert(json_num(s, "inflight", -1) == 0);
    ck_assert(json_num(s, "retry.max_attempts", -1) == 4);
    ck_assert(json_num(s, "retry.base_delay_ms", -1) == 200);
    ck_assert(json_num(s, "retry.max_delay_ms", -1) == 5000);
    ck_assert_str_eq(json_str(s, "retry.jitter"), "full");
    {
        cJSON *on = json_path(s, "retry.retry_on");
        char got[200] = "";
        cJSON *it;
        ck_assert(cJSON_IsArray(on));
        cJSON_ArrayForEach(it, on)
        {
            ck_assert(cJSON_IsString(it));
            strcat(got, it->valuestring);
            strcat(got, " ");
        }
        ck_assert_str_eq(got, "reset gateway-error 503 ");
    }
    ck_assert(cJSON_IsTrue(json_path(s, "retry.retry_non_idempotent")));
    ck_assert(cJSON_IsFalse(json_path(s, "retry.honor_retry_after")));
    ck_assert(json_num(s, "retry.budget.ratio", -1) == 0.25);
    ck_assert(json_num(s, "retry.budget.min_per_second", -1) == 3);
    ck_assert(cJSON_IsTrue(json_path(s, "circuit_breaker.enabled")));
    ck_assert(json_num(s, "circuit_breaker.failure_threshold", -1) == 4);
    ck_assert(json_num(s, "circuit_breaker.recovery_timeout_ms", -1) == 9000);
    ck_assert(json_num(s, "circuit_breaker.half_open_max_calls", -1) == 2);
    ck_assert_int_eq(cJSON_GetArraySize(json_path(s, "endpoints")), 2);
    for (int i = 0; i < 2; i++) {
        char url[128];
        ep = endpoint_of(s, i);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", stub.port, i ? "two" : "one");
        ck_assert(json_num(ep, "index", -1) == i);
        ck_assert_str_eq(json_str(ep, "url"), url);
        ck_assert(json_num(ep, "weight", -1) == (i ? 3 : 1));
        ck_assert_str_eq(json_str(ep, "state"), "closed");
        ck_assert(json_num(ep, "consecutive_failures", -1) == 0);
        ck_assert(json_num(ep, "seconds_to_half_open", -1) == 0);
        ck_assert(json_num(ep, "inflight", -1) == 0);
        ck_assert_int_eq(cJSON_GetArraySize(json_path(ep, "attempts")), 8);
        static const char *const outcomes[] = {"2xx",
                                               "3xx",
                                               "4xx",
                                               "5xx",
                                               "connect_failure",
                                               "reset",
                                               "timeout",
                                               "response_too_large"};
        for (int o = 0; o < 8; o++)
            ck_assert(json_num(json_path(ep, "attempts"), outcomes[o], -1) == 0);
    }
    s = service_of(j, "plain");
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(json_str(s, "load_balancer"), "round-robin");
    ck_assert(json_num(s, "deadline_ms", -1) == 0);
    ck_assert(json_num(s, "max_inflight", -1) == 0);
    ck_assert(json_num(s, "retry.max_attempts", -1) == 1);
    ck_assert(cJSON_IsNull(json_path(s, "retry.budget")));
    ck_assert(cJSON_IsFalse(json_path(s, "circuit_breaker.enabled")));
    ck_assert(json_num(endpoint_of(s, 0), "weight", -1) == 1);
    cJSON_Delete(j);

    /* unknown paths: 404 JSON (/ is the dashboard page, see dashboard_page) */
    static const char *const unknown[] = {"/index.html",
                                          "/healthz/",
                                          "/metrics/x",
                                          "/v1",
                                          "/v1/service",
                                          "/v1/services/pool/endpoints/0/reset/x",
                                          "/v1/services/pool/endpoints//reset",
                                          "/v1/services//endpoints/0/reset",
                                          NULL};
    for (int i = 0; unknown[i]; i++) {
        http_get(daemon_proc.admin_port, unknown[i], NULL, &r);
        ck_assert_msg(r.status == 404, "%s: %ld", unknown[i], r.status);
        assert_admin_error(&r, 404, "not_found");
        http_resp_free(&r);
    }

    /* wrong methods: 405 with Allow */
    static const struct {
        const char *method, *path, *allow;
    } wrong[] = {{"POST", "/healthz", "GET, HEAD"},
                 {"DELETE", "/readyz", "GET, HEAD"},
                 {"POST", "/metrics", "GET, HEAD"},
                 {"DELETE", "/", "GET, HEAD"},
                 {"PUT", "/v1/services", "GET, HEAD"},
                 {"GET", "/v1/reload", "POST"},
                 {"GET", "/v1/services/pool/endpoints/0/reset", "POST"},
                 {"DELETE", "/v1/services/nope/endpoints/0/reset", "POST"}};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        http_send(daemon_proc.admin_port, wrong[i].method, wrong[i].path, NULL, NULL, 0, &r);
        ck_assert_msg(r.status == 405, "%s %s: %ld", wrong[i].method, wrong[i].path, r.status);
        assert_admin_error(&r, 405, "method_not_allowed");
        ck_assert_ptr_nonnull(http_header(&r, "Allow"));
        ck_assert_str_eq(http_header(&r, "Allow"), wrong[i].allow);
        http_resp_free(&r);
    }

    /* reset: unknown service, bad index, good one */
    http_send(daemon_proc.admin_port, "POST", "/v1/services/nope/endpoints/0/reset", NULL, NULL, 0,
              &r);
    assert_admin_error(&r, 404, "unknown_service");
    http_resp_free(&r);
    static const char *const bad_index[] = {"2", "99999999999999999999", "x", "-1", "+1", "0x0",
                                            NULL};
    for (int i = 0; bad_index[i]; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/services/pool/endpoints/%s/reset", bad_index[i]);
        http_send(daemon_proc.admin_port, "POST", path, NULL, NULL, 0, &r);
        ck_assert_msg(r.status == 404, "%s: %ld", path, r.status);
        assert_admin_error(&r, 404, "unknown_endpoint");
        http_resp_free(&r);
    }
    j = admin_json(&daemon_proc, "POST", "/v1/services/pool/endpoints/1/reset", NULL, 200);
    ck_assert(json_num(j, "index", -1) == 1);
    ck_assert_str_eq(json_str(j, "state"), "closed");
    ck_assert(json_num(j, "weight", -1) == 3);
    cJSON_Delete(j);

    /* /metrics is valid and lists both services' endpoints */
    {
        struct expo e;
        char url[128];
        scrape(&daemon_proc, &e);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/two", stub.port);
        ck_assert(expo_get(&e, "ahoyd_circuit_state", "service", "pool", "endpoint", url, NULL) ==
                  0);
        ck_assert_int_eq(expo_count(&e, "ahoyd_circuit_state", NULL, NULL), 3);
        ck_assert_int_eq(expo_count(&e, "ahoyd_upstream_attempts_total", NULL, NULL), 24);
        ck_assert_int_eq(expo_count(&e, "ahoyd_circuit_transitions_total", NULL, NULL), 9);
        ck_assert(expo_get(&e, "ahoyd_build_info", "version", PACKAGE_VERSION, NULL) == 1);
        ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_count", "service", "plain", NULL) ==
                  0);
        /* a reset of a closed breaker is no transition */
        ck_assert(expo_get(&e, "ahoyd_circuit_transitions_total", "service", "pool", "endpoint",
                           url, "to", "closed", NULL) == 0);
        double ts = expo_get(&e, "ahoyd_config_last_reload_success_timestamp_seconds", NULL);
        ck_assert_msg(fabs(ts - (double)time(NULL)) < 120, "start timestamp %f", ts);
        expo_free(&e);
    }

    /* keep-alive: the second request reuses the connection */
    {
        struct http_client c;
        struct http_req req;
        char url[64];
        http_client_init(&c);
        memset(&req, 0, sizeof(req));
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", daemon_proc.admin_port);
        req.url = url;
        http_client_do(&c, &req, &r);
        ck_assert_int_eq(r.status, 200);
        http_resp_free(&r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", daemon_proc.admin_port);
        http_client_do(&c, &req, &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_eq(r.num_connects, 0);
        http_resp_free(&r);
        http_client_free(&c);
    }
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

START_TEST(not_on_the_proxy_port)
{
    static const char *const paths[] = {"/metrics", "/healthz", "/readyz", "/v1/services", NULL};
    struct http_resp r;

    start_svc(NULL, NULL);
    for (int i = 0; paths[i]; i++) {
        http_get(daemon_proc.port, paths[i], NULL, &r);
        assert_ahoyd_error(&r, 404, "unknown_service", NULL, 0);
        ck_assert_ptr_null(strstr(r.body, "ahoyd_"));
        http_resp_free(&r);
    }
    http_send(daemon_proc.port, "POST", "/v1/reload", NULL, NULL, 0, &r);
    assert_ahoyd_error(&r, 404, "unknown_service", NULL, 0);
    http_resp_free(&r);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "reloading configuration"), 0);

    ck_assert(
        metric(&daemon_proc, "ahoyd_requests_total", "service", "_none", "code", "404", NULL) == 5);
    ck_assert(metric(&daemon_proc, "ahoyd_errors_total", "service", "_none", "error",
                     "unknown_service", NULL) == 5);
    ck_assert(metric(&daemon_proc, "ahoyd_request_duration_seconds_count", "service", "_none",
                     NULL) == 5);
    /* admin requests are not proxy traffic */
    ck_assert(isnan(
        metric(&daemon_proc, "ahoyd_requests_total", "service", "_none", "code", "200", NULL)));
}
END_TEST

/* ---- the token -------------------------------------------------------------------------- */

START_TEST(bearer_token)
{
    struct http_resp r;

    start_with_token("0.0.0.0:0");

    static const char *const refused[] = {NULL, /* no header */
                                          "Authorization: Bearer s3cre",
                                          "Authorization: Bearer s3cret1",
                                          "Authorization: Bearer S3CRET",
                                          "Authorization: Bearer",
                                          "Authorization: Bearer ",
                                          "Authorization: s3cret",
                                          "Authorization: Basic czNjcmV0",
                                          "Authorization: Bearers3cret",
                                          "Authorization: Bearer s3cret s3cret",
                                          "X-Token: s3cret",
                                          NULL};
    static const char *const paths[] = {"/healthz", "/metrics", "/v1/services", "/nowhere"};
    for (int i = 0; i == 0 || refused[i]; i++) {
        const char *h[] = {refused[i], NULL};
        for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
            http_get(daemon_proc.admin_port, paths[k], refused[i] ? h : NULL, &r);
            ck_assert_msg(r.status == 401, "%s with '%s': %ld", paths[k],
                          refused[i] ? refused[i] : "(none)", r.status);
            assert_admin_error(&r, 401, "unauthorized");
            ck_assert_ptr_nonnull(http_header(&r, "WWW-Authenticate"));
            ck_assert_str_eq(http_header(&r, "WWW-Authenticate"), "Bearer");
            ck_assert_ptr_null(strstr(r.body, "ahoyd_"));
            http_resp_free(&r);
        }
    }
    /* no side effect without the token */
    http_send(daemon_proc.admin_port, "POST", "/v1/reload", NULL, NULL, 0, &r);
    assert_admin_error(&r, 401, "unauthorized");
    http_resp_free(&r);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "reloading configuration"), 0);

    const char *good[] = {"Authorization: Bearer s3cret", NULL};
    cJSON *j = admin_json(&daemon_proc, "GET", "/healthz", good, 200);
    ck_assert_str_eq(json_str(j, "status"), "ok");
    cJSON_Delete(j);
    j = admin_json(&daemon_proc, "GET", "/v1/services", good, 200);
    ck_assert_ptr_nonnull(service_of(j, "svc"));
    cJSON_Delete(j);
    http_get(daemon_proc.admin_port, "/metrics", good, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "ahoyd_build_info"));
    http_resp_free(&r);
    /* the scheme is case-insensitive (RFC 9110 11.1) */
    const char *lower[] = {"Authorization: bearer s3cret", NULL};
    j = admin_json(&daemon_proc, "GET", "/readyz", lower, 200);
    cJSON_Delete(j);
    /* with the token, the other statuses are the usual ones */
    http_get(daemon_proc.admin_port, "/nowhere", good, &r);
    assert_admin_error(&r, 404, "not_found");
    http_resp_free(&r);
    j = admin_json(&daemon_proc, "POST", "/v1/reload", good, 200);
    cJSON_Delete(j);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "reloading configuration"), 1);
    /* the dashboard reached by a name or address of this host: Origin == Host is own where
     * a token is required (a rebound name cannot present it); another origin is not */
    char host[64], origin[96];
    snprintf(host, sizeof(host), "Host: admin.example:%d", daemon_proc.admin_port);
    snprintf(origin, sizeof(origin), "Origin: http://admin.example:%d", daemon_proc.admin_port);
    const char *same[] = {good[0], host, origin, NULL};
    j = admin_json(&daemon_proc, "POST", "/v1/reload", same, 200);
    cJSON_Delete(j);
    const char *other[] = {good[0], host, "Origin: http://evil.example", NULL};
    http_send(daemon_proc.admin_port, "POST", "/v1/reload", other, NULL, 0, &r);
    assert_admin_error(&r, 403, "forbidden");
    http_resp_free(&r);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "reloading configuration"), 2);
}
END_TEST


/* A POST carrying an Origin other than the admin listener's own, or Sec-Fetch-Site:
 * cross-site, is 403 forbidden with no side effect: a web page elsewhere cannot drive
 * the API through the operator's browser (a plain HTML form needs no script). Own is
 * http:// + the listener's address, localhost or a loopback literal, with its port, or
 * what the browser asked for through a forwarder (Origin == Host, on a loopback host). */
START_TEST(origin_of_mutating_requests)
{
    struct http_resp r;
    char own[12][128], foreign[16][128];
    int port, n_own = 0, n_foreign = 0;

    start_svc(NULL, NULL);
    port = daemon_proc.admin_port;
    snprintf(own[n_own++], 128, "Origin: http://127.0.0.1:%d", port);
    snprintf(own[n_own++], 128, "Origin: http://localhost:%d", port);
    snprintf(own[n_own++], 128, "Origin: http://LOCALHOST:%d", port);
    snprintf(own[n_own++], 128, "Origin: http://127.8.9.10:%d", port);
    snprintf(own[n_own++], 128, "Origin: http://[::1]:%d", port);
    snprintf(own[n_own++], 128, "Sec-Fetch-Site: same-origin");
    snprintf(own[n_own++], 128, "Sec-Fetch-Site: none");
    snprintf(foreign[n_foreign++], 128, "Origin: null");
    snprintf(foreign[n_foreign++], 128, "Origin: http://evil.example");
    snprintf(foreign[n_foreign++], 128, "Origin: http://evil.example:%d", port);
    snprintf(foreign[n_foreign++], 128, "Origin: http://127.0.0.1:%d", port == 1 ? 2 : 1);
    snprintf(foreign[n_foreign++], 128, "Origin: http://localhost:%d", port + 1);
    snprintf(foreign[n_foreign++], 128, "Origin: http://127.0.0.1");
    snprintf(foreign[n_foreign++], 128, "Origin: https://127.0.0.1:%d", port);
    snprintf(foreign[n_foreign++], 128, "Origin: http://127.0.0.1:%d/x", port);
    snprintf(foreign[n_foreign++], 128, "Origin: http://a@127.0.0.1:%d", port);
    snprintf(foreign[n_foreign++], 128, "Origin: http://10.0.0.1:%d", port);
    snprintf(foreign[n_foreign++], 128, "Origin: http://0.0.0.0:%d", port);
    snprintf(foreign[n_foreign++], 128, "Origin: file://");
    snprintf(foreign[n_foreign++], 128, "Sec-Fetch-Site: cross-site");
    snprintf(foreign[n_foreign++], 128, "Sec-Fetch-Site: Cross-Site");

    for (int i = 0; i < n_foreign; i++) {
        const char *h[] = {foreign[i], NULL};
        http_send(port, "POST", "/v1/reload", h, NULL, 0, &r);
        ck_assert_msg(r.status == 403, "reload with '%s': %ld", foreign[i], r.status);
        assert_admin_error(&r, 403, "forbidden");
        http_resp_free(&r);
        http_send(port, "POST", "/v1/services/svc/endpoints/0/reset", h, NULL, 0, &r);
        ck_assert_msg(r.status == 403, "reset with '%s': %ld", foreign[i], r.status);
        http_resp_free(&r);
    }
    /* DNS rebinding: the browser asked for evil.example, which now points here */
    {
        char host[64], origin[96];
        snprintf(host, sizeof(host), "Host: evil.example:%d", port);
        snprintf(origin, sizeof(origin), "Origin: http://evil.example:%d", port);
        const char *h[] = {host, origin, NULL};
        http_send(port, "POST", "/v1/reload", h, NULL, 0, &r);
        assert_admin_error(&r, 403, "forbidden");
        http_resp_free(&r);
    }
    ck_assert_int_eq(proc_log_count(&daemon_proc, "reloading configuration"), 0);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "circuit breaker reset"), 0);
    /* reads are not judged by their origin */
    {
        const char *h[] = {"Origin: http://evil.example", "Sec-Fetch-Site: cross-site", NULL};
        cJSON *j = admin_json(&daemon_proc, "GET", "/healthz", h, 200);
        cJSON_Delete(j);
    }

    int reloads = 0;
    for (int i = 0; i < n_own; i++) {
        const char *h[] = {own[i], NULL};
        cJSON *j = admin_json(&daemon_proc, "POST", "/v1/reload", h, 200);
        cJSON_Delete(j);
        reloads++;
    }
    /* through a forwarder on another local port (an SSH tunnel): Origin == Host */
    {
        const char *h[] = {"Host: 127.0.0.1:3000", "Origin: http://127.0.0.1:3000", NULL};
        cJSON *j = admin_json(&daemon_proc, "POST", "/v1/reload", h, 200);
        cJSON_Delete(j);
        reloads++;
    }
    /* no Origin: as before */
    cJSON *j = admin_json(&daemon_proc, "POST", "/v1/services/svc/endpoints/0/reset", NULL, 200);
    cJSON_Delete(j);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "reloading configuration"), reloads);
}
END_TEST
/* ---- the dashboard page ------------------------------------------------------------------ */

/* GET / serves the page without the token (it holds no data; its own requests carry the
 * token), as one self-contained HTML resource; anything else on / needs the token. */
START_TEST(dashboard_page)
{
    struct http_resp r;

    start_with_token("127.0.0.1:0");

    http_get(daemon_proc.admin_port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(http_header(&r, "Content-Type"), "text/html; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(http_header(&r, "Content-Security-Policy"),
                                 "default-src 'none'"));
    ck_assert_ptr_nonnull(strstr(http_header(&r, "Content-Security-Policy"),
                                 "frame-ancestors 'none'"));
    ck_assert_str_eq(http_header(&r, "X-Content-Type-Options"), "nosniff");
    ck_assert_ptr_eq(r.body, strstr(r.body, "<!doctype html>"));
    ck_assert_ptr_nonnull(strstr(r.body, "</html>"));
    ck_assert_uint_eq(strlen(r.body), r.body_len); /* no NUL sent */
    /* self-contained: nothing loaded from anywhere, no data of the runtime in it */
    static const char *const loads[] = {" src=", " href=", "url(", "@import", "<link", "<iframe",
                                        "127.0.0.1", "ahoyd_build_info{"};
    for (size_t i = 0; i < sizeof loads / sizeof loads[0]; i++)
        ck_assert_msg(strstr(r.body, loads[i]) == NULL, "the page contains '%s'", loads[i]);
    /* it reads the API it is served with */
    ck_assert_ptr_nonnull(strstr(r.body, "\"/v1/services\""));
    ck_assert_ptr_nonnull(strstr(r.body, "\"/metrics\""));
    size_t page_len = r.body_len;
    http_resp_free(&r);

    http_send(daemon_proc.admin_port, "HEAD", "/", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    ck_assert_str_eq(http_header(&r, "Content-Type"), "text/html; charset=utf-8");
    http_resp_free(&r);

    /* the data and the actions still need the token */
    http_get(daemon_proc.admin_port, "/v1/services", NULL, &r);
    assert_admin_error(&r, 401, "unauthorized");
    http_resp_free(&r);
    http_send(daemon_proc.admin_port, "POST", "/", NULL, NULL, 0, &r);
    assert_admin_error(&r, 401, "unauthorized");
    http_resp_free(&r);
    const char *good[] = {"Authorization: Bearer s3cret", NULL};
    http_send(daemon_proc.admin_port, "POST", "/", good, NULL, 0, &r);
    assert_admin_error(&r, 405, "method_not_allowed");
    ck_assert_str_eq(http_header(&r, "Allow"), "GET, HEAD");
    http_resp_free(&r);
    /* the page with a token is the same page */
    http_get(daemon_proc.admin_port, "/", good, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, page_len);
    http_resp_free(&r);
    /* only / is the page */
    http_get(daemon_proc.admin_port, "/index.html", NULL, &r);
    ck_assert_int_eq(r.status, 401);
    http_resp_free(&r);
}
END_TEST

/* ---- metric values follow traffic --------------------------------------------------------- */

START_TEST(metrics_follow_traffic)
{
    char url[128], down_url[128], *more;
    struct expo e;
    cJSON *j;
    int down = closed_port();

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    more = admin_yaml("127.0.0.1:0", "127.0.0.1:0", NULL,
                      "      svc:\n"
                      "        base-url: http://127.0.0.1:%d/base\n"
                      "        retry: {max-attempts: 2, base-delay: 10ms}\n"
                      "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 60s}\n"
                      "      down:\n"
                      "        base-url: http://127.0.0.1:%d\n"
                      "        retry: false\n"
                      "        connect-timeout: 1s\n"
                      "      flaky:\n"
                      "        base-url: http://127.0.0.1:%d\n"
                      "        retry: false\n"
                      "        circuit-breaker: false\n"
                      "      slow:\n"
                      "        base-url: http://127.0.0.1:%d\n"
                      "        retry: false\n"
                      "        timeout: 250ms\n",
                      stub.port, down, stub.port, stub.port);
    start_daemon(&daemon_proc, more);
    free(more);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/base", stub.port);
    snprintf(down_url, sizeof(down_url), "http://127.0.0.1:%d", down);

    /* successes and a 4xx from the upstream */
    proxy_get("/svc/ok", NULL, 200);
    proxy_get("/svc/ok", NULL, 200);
    proxy_get("/svc/x", (const char *[]){"X-Stub-Status: 404", NULL}, 404);
    scrape(&daemon_proc, &e);
    ck_assert(expo_get(&e, "ahoyd_requests_total", "service", "svc", "code", "200", NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_requests_total", "service", "svc", "code", "404", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "svc", "endpoint", url,
                       "outcome", "2xx", NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "svc", "endpoint", url,
                       "outcome", "4xx", NULL) == 1);
    /* the upstream's own 404 is not an ahoyd error */
    ck_assert_int_eq(expo_count(&e, "ahoyd_errors_total", "service", "svc"), 0);
    ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_count", "service", "svc", NULL) == 3);
    ck_assert(expo_get(&e, "ahoyd_retries_total", "service", "svc", NULL) == 0);
    ck_assert(expo_get(&e, "ahoyd_circuit_state", "service", "svc", "endpoint", url, NULL) == 0);
    expo_free(&e);

    /* 503 twice: one retry, and the breaker (threshold 2) opens */
    proxy_get("/svc/x", (const char *[]){"X-Stub-Status: 503", NULL}, 503);
    scrape(&daemon_proc, &e);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "svc", "endpoint", url,
                       "outcome", "5xx", NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_retries_total", "service", "svc", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_requests_total", "service", "svc", "code", "503", NULL) == 1);
    ck_assert_int_eq(expo_count(&e, "ahoyd_errors_total", "service", "svc"), 0);
    ck_assert(expo_get(&e, "ahoyd_circuit_state", "service", "svc", "endpoint", url, NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_circuit_transitions_total", "service", "svc", "endpoint", url,
                       "to", "open", NULL) == 1);
    ck_assert(expo_get(&e, "ahoyd_circuit_transitions_total", "service", "svc", "endpoint", url,
                       "to", "closed", NULL) == 0);
    expo_free(&e);

    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    {
        cJSON *ep = endpoint_of(service_of(j, "svc"), 0);
        ck_assert_str_eq(json_str(ep, "state"), "open");
        double left = json_num(ep, "seconds_to_half_open", -1);
        ck_assert_msg(left > 50 && left <= 60, "seconds_to_half_open %f", left);
        ck_assert(json_num(ep, "attempts.5xx", -1) == 2);
        ck_assert(json_num(ep, "attempts.2xx", -1) == 2);
        ck_assert(json_num(ep, "transitions.open", -1) == 1);
    }
    cJSON_Delete(j);

    /* open: refused at once, counted as an ahoyd error */
    proxy_get("/svc/ok", NULL, 503);
    scrape(&daemon_proc, &e);
    ck_assert(expo_get(&e, "ahoyd_errors_total", "service", "svc", "error", "circuit_open", NULL) ==
              1);
    ck_assert(expo_get(&e, "ahoyd_requests_total", "service", "svc", "code", "503", NULL) == 2);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "svc", "endpoint", url,
                       "outcome", "2xx", NULL) == 2);
    expo_free(&e);

    /* reset closes it */
    j = admin_json(&daemon_proc, "POST", "/v1/services/svc/endpoints/0/reset", NULL, 200);
    ck_assert_str_eq(json_str(j, "state"), "closed");
    ck_assert(json_num(j, "consecutive_failures", -1) == 0);
    ck_assert(json_num(j, "seconds_to_half_open", -1) == 0);
    ck_assert_str_eq(json_str(j, "url"), url);
    cJSON_Delete(j);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "open -> closed"), 1);
    scrape(&daemon_proc, &e);
    ck_assert(expo_get(&e, "ahoyd_circuit_state", "service", "svc", "endpoint", url, NULL) == 0);
    ck_assert(expo_get(&e, "ahoyd_circuit_transitions_total", "service", "svc", "endpoint", url,
                       "to", "closed", NULL) == 1);
    expo_free(&e);
    proxy_get("/svc/ok", NULL, 200);
    ck_assert(metric(&daemon_proc, "ahoyd_upstream_attempts_total", "service", "svc", "endpoint",
                     url, "outcome", "2xx", NULL) == 3);

    /* connect failure, reset, timeout */
    {
        struct http_resp r;
        http_get(daemon_proc.port, "/down/x", NULL, &r);
        assert_ahoyd_error(&r, 502, "upstream_unreachable", "down", 1);
        http_resp_free(&r);
        http_get(daemon_proc.port, "/flaky/x", (const char *[]){"X-Stub-Action: reset", NULL}, &r);
        assert_ahoyd_error(&r, 502, "upstream_reset", "flaky", 1);
        http_resp_free(&r);
        http_get(daemon_proc.port, "/slow/x", (const char *[]){"X-Stub-Delay-Ms: 2000", NULL}, &r);
        assert_ahoyd_error(&r, 504, "upstream_timeout", "slow", 1);
        http_resp_free(&r);
    }
    {
        char stub_root[128];
        snprintf(stub_root, sizeof(stub_root), "http://127.0.0.1:%d", stub.port);
        scrape(&daemon_proc, &e);
        ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "down", "endpoint",
                           down_url, "outcome", "connect_failure", NULL) == 1);
        ck_assert(expo_get(&e, "ahoyd_errors_total", "service", "down", "error",
                           "upstream_unreachable", NULL) == 1);
        ck_assert(expo_get(&e, "ahoyd_requests_total", "service", "down", "code", "502", NULL) ==
                  1);
        ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "flaky", "endpoint",
                           stub_root, "outcome", "reset", NULL) == 1);
        ck_assert(expo_get(&e, "ahoyd_errors_total", "service", "flaky", "error", "upstream_reset",
                           NULL) == 1);
        ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "slow", "endpoint",
                           stub_root, "outcome", "timeout", NULL) == 1);
        ck_assert(expo_get(&e, "ahoyd_errors_total", "service", "slow", "error", "upstream_timeout",
                           NULL) == 1);
        /* the 250 ms timeout lands above the 0.1 s bucket and well below 2.5 s */
        ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_bucket", "service", "slow", "le",
                           "0.1", NULL) == 0);
        ck_assert(expo_get(&e, "ahoyd_request_duration_seconds_bucket", "service", "slow", "le",
                           "2.5", NULL) == 1);
        double sum = expo_get(&e, "ahoyd_request_duration_seconds_sum", "service", "slow", NULL);
        ck_assert_msg(sum >= 0.2 && sum < 2.5, "slow sum %f", sum);
        ck_assert(expo_get(&e, "ahoyd_retries_total", "service", "down", NULL) == 0);
        /* a breaker that is off never leaves closed */
        ck_assert(expo_get(&e, "ahoyd_circuit_state", "service", "flaky", "endpoint", stub_root,
                           NULL) == 0);
        expo_free(&e);
    }

    /* in flight: a slow call shows as 1 while it runs, then 0 */
    {
        struct http_req req;
        struct http_resp r;
        char purl[128];
        memset(&req, 0, sizeof(req));
        snprintf(purl, sizeof(purl), "http://127.0.0.1:%d/svc/slow", daemon_proc.port);
        req.url = purl;
        req.headers = (const char *[]){"X-Stub-Delay-Ms: 1500", NULL};
        struct http_async *a = http_async_start(&req);
        double v = metric_wait(&daemon_proc, 1, 3000, "ahoyd_inflight_requests", "service", "svc",
                               NULL, NULL);
        ck_assert_msg(v == 1, "inflight %f while a call runs", v);
        j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
        ck_assert(json_num(service_of(j, "svc"), "inflight", -1) == 1);
        ck_assert(json_num(endpoint_of(service_of(j, "svc"), 0), "inflight", -1) == 1);
        cJSON_Delete(j);
        http_async_finish(a, &r);
        ck_assert_int_eq(r.status, 200);
        http_resp_free(&r);
        ck_assert(metric_wait(&daemon_proc, 0, 3000, "ahoyd_inflight_requests", "service", "svc",
                              NULL, NULL) == 0);
    }
}
END_TEST

/* ---- promtool, the attempt histogram, connections, process_*, last failure ---------------- */

/* promtool from $PROMTOOL, /usr/bin or PATH; NULL when there is none. */
static const char *promtool_path(void)
{
    static char found[512];
    const char *env = getenv("PROMTOOL");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    if (access("/usr/bin/promtool", X_OK) == 0)
        return "/usr/bin/promtool";
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t n = strcspn(path, ":");
        snprintf(found, sizeof(found), "%.*s/promtool", (int)n, path);
        if (n && access(found, X_OK) == 0)
            return found;
        path += n + (path[n] == ':');
    }
    return NULL;
}

/* `promtool check metrics` on text: exit 0 and nothing printed (no lint finding). */
static void promtool_check(const char *tool, const char *text)
{
    char dir[] = "/tmp/ahoyd-promtool-XXXXXX", in[64], out[64], cmd[800];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(in, sizeof(in), "%s/metrics", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    FILE *f = fopen(in, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' > '%s' 2>&1", tool, in, out);
    int rc = system(cmd);
    char said[4096] = "";
    f = fopen(out, "r");
    if (f) {
        size_t n = fread(said, 1, sizeof(said) - 1, f);
        said[n] = '\0';
        fclose(f);
    }
    unlink(in);
    unlink(out);
    rmdir(dir);
    ck_assert_msg(rc == 0 && said[0] == '\0', "promtool check metrics: status %d, said:\n%s", rc,
                  said);
}

/* An RFC 3339 UTC time ("2026-01-02T03:04:05.678Z") as Unix seconds; -1 if not one. */
static double rfc3339_utc(const char *s)
{
    struct tm tm;
    int ms = 0, used = 0;
    memset(&tm, 0, sizeof(tm));
    if (!s ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
        used != (int)strlen(s) || strlen(s) != 24)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1000.0;
}

/* Traffic with retries, two open breakers, a connect failure and a timeout: the live
 * exposition passes promtool and the strict parser, and every metric added for
 * operators is there with values that follow the traffic. */
START_TEST(promtool_and_operator_metrics)
{
    char url[128], down_url[128], slow_url[128], *yaml, *text;
    struct http_resp r;
    struct expo e;
    cJSON *j;
    int down = closed_port();
    const char *tool = promtool_path();

    if (!tool) {
        const char *ci = getenv("CI");
        ck_assert_msg(!(ci && strcmp(ci, "true") == 0),
                      "promtool is not installed (Debian package prometheus); CI must have it");
        printf("promtool_and_operator_metrics: skipped, promtool not found "
               "(apt-get install prometheus, or set PROMTOOL)\n");
        return;
    }
    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    yaml = admin_yaml("127.0.0.1:0", "127.0.0.1:0", NULL,
                      "      svc:\n"
                      "        base-url: http://127.0.0.1:%d/base\n"
                      "        retry: {max-attempts: 2, base-delay: 10ms}\n"
                      "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 60s}\n"
                      "      down:\n"
                      "        base-url: http://127.0.0.1:%d\n"
                      "        retry: false\n"
                      "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 60s}\n"
                      "      slow:\n"
                      "        base-url: http://127.0.0.1:%d/slow\n"
                      "        retry: false\n"
                      "        timeout: 200ms\n",
                      stub.port, down, stub.port);
    start_daemon(&daemon_proc, yaml);
    free(yaml);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/base", stub.port);
    snprintf(down_url, sizeof(down_url), "http://127.0.0.1:%d", down);
    snprintf(slow_url, sizeof(slow_url), "http://127.0.0.1:%d/slow", stub.port);

    /* before any failure: last_failure is null */
    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    ck_assert(cJSON_IsNull(json_path(endpoint_of(service_of(j, "svc"), 0), "last_failure")));
    cJSON_Delete(j);

    for (int i = 0; i < 3; i++)
        proxy_get("/svc/ok", NULL, 200);
    /* curl keeps the connection of the successes to the stub for reuse (the timeout below
     * closes it: slow's endpoint is the same stub) */
    double upc = metric(&daemon_proc, "ahoyd_upstream_connections", NULL);
    ck_assert_msg(upc >= 1 && upc <= 3, "ahoyd_upstream_connections %f", upc);
    proxy_get("/svc/x", (const char *[]){"X-Stub-Status: 503", NULL}, 503); /* retried: opens */
    proxy_get("/svc/ok", NULL, 503);                                        /* circuit_open */
    proxy_get("/down/x", NULL, 502);
    proxy_get("/down/x", NULL, 502); /* opens */
    proxy_get("/down/x", NULL, 503);
    http_get(daemon_proc.port, "/slow/x", (const char *[]){"X-Stub-Delay-Ms: 2000", NULL}, &r);
    assert_ahoyd_error(&r, 504, "upstream_timeout", "slow", 1);
    http_resp_free(&r);

    http_get(daemon_proc.admin_port, "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    text = strdup(r.body);
    http_resp_free(&r);
    promtool_check(tool, text);
    ck_assert_msg(expo_parse(text, &e), "exposition rejected: %s", e.error);

    /* the attempt histogram counts every attempt counted by outcome, per endpoint */
    const char *svcs[] = {"svc", "down", "slow"}, *eps[] = {url, down_url, slow_url};
    const double made[] = {5, 2, 1};
    for (int i = 0; i < 3; i++) {
        double by_outcome = 0;
        for (int o = 0; o < OUTCOME_LABELS; o++)
            by_outcome += expo_get(&e, "ahoyd_upstream_attempts_total", "service", svcs[i],
                                   "endpoint", eps[i], "outcome", outcome_label_name(o), NULL);
        double count = expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_count", "service",
                                svcs[i], "endpoint", eps[i], NULL);
        ck_assert_msg(count == made[i] && by_outcome == made[i],
                      "%s: histogram count %f, attempts by outcome %f, want %f", svcs[i], count,
                      by_outcome, made[i]);
        ck_assert(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_bucket", "service", svcs[i],
                           "endpoint", eps[i], "le", "+Inf", NULL) == made[i]);
    }
    /* the 200 ms timeout: above 0.1 s, within 1 s */
    ck_assert(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_bucket", "service", "slow",
                       "endpoint", slow_url, "le", "0.1", NULL) == 0);
    ck_assert(expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_bucket", "service", "slow",
                       "endpoint", slow_url, "le", "1", NULL) == 1);
    double slow_sum = expo_get(&e, "ahoyd_upstream_attempt_duration_seconds_sum", "service", "slow",
                               "endpoint", slow_url, NULL);
    ck_assert_msg(slow_sum >= 0.15 && slow_sum < 1, "slow attempt sum %f", slow_sum);

    upc = expo_get(&e, "ahoyd_upstream_connections", NULL);
    ck_assert_msg(upc >= 0 && upc <= 3, "ahoyd_upstream_connections %f", upc);
    ck_assert(expo_get(&e, "ahoyd_client_connections", NULL) >= 0);

    double fds = expo_get(&e, "process_open_fds", NULL);
    double max_fds = expo_get(&e, "process_max_fds", NULL);
    ck_assert_msg(fds > 0 && max_fds >= fds, "process_open_fds %f, process_max_fds %f", fds,
                  max_fds);
    double rss = expo_get(&e, "process_resident_memory_bytes", NULL);
    double vsz = expo_get(&e, "process_virtual_memory_bytes", NULL);
    ck_assert_msg(rss > 1e5 && vsz >= rss, "resident %f, virtual %f", rss, vsz);
    ck_assert(expo_get(&e, "process_cpu_seconds_total", NULL) >= 0);
    double start = expo_get(&e, "process_start_time_seconds", NULL);
    ck_assert_msg(fabs(start - (double)time(NULL)) < 60, "process_start_time_seconds %f", start);
    expo_free(&e);
    free(text);

    /* a connection held open by a client shows, and goes when it closes */
    {
        int fd = raw_connect(daemon_proc.port);
        ck_assert_int_ge(fd, 0);
        ck_assert(metric_wait(&daemon_proc, 1, 3000, "ahoyd_client_connections", NULL, NULL, NULL,
                              NULL) == 1);
        close(fd);
        ck_assert(metric_wait(&daemon_proc, 0, 3000, "ahoyd_client_connections", NULL, NULL, NULL,
                              NULL) == 0);
    }

    /* why each endpoint failed, and the streak that opened the breakers */
    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    {
        cJSON *ep = endpoint_of(service_of(j, "down"), 0);
        ck_assert_str_eq(json_str(ep, "state"), "open");
        ck_assert(json_num(ep, "consecutive_failures", -1) == 2);
        ck_assert_str_eq(json_str(ep, "last_failure.outcome"), "connect-failure");
        ck_assert_str_eq(json_str(ep, "last_failure.detail"), "Connection refused");
        double at = rfc3339_utc(json_str(ep, "last_failure.at"));
        ck_assert_msg(fabs(at - (double)time(NULL)) < 60, "last_failure.at %s",
                      json_str(ep, "last_failure.at"));

        ep = endpoint_of(service_of(j, "svc"), 0);
        ck_assert_str_eq(json_str(ep, "state"), "open");
        ck_assert(json_num(ep, "consecutive_failures", -1) == 2);
        ck_assert_str_eq(json_str(ep, "last_failure.outcome"), "5xx");
        ck_assert_str_eq(json_str(ep, "last_failure.detail"), "HTTP 503");

        ep = endpoint_of(service_of(j, "slow"), 0);
        ck_assert_str_eq(json_str(ep, "last_failure.outcome"), "timeout");
        ck_assert_msg(strstr(json_str(ep, "last_failure.detail"), "timed out") != NULL,
                      "timeout detail %s", json_str(ep, "last_failure.detail"));
        ck_assert(json_num(ep, "consecutive_failures", -1) == 1);
    }
    cJSON_Delete(j);

    /* an admin reset ends the streak; a success would too */
    j = admin_json(&daemon_proc, "POST", "/v1/services/svc/endpoints/0/reset", NULL, 200);
    ck_assert(json_num(j, "consecutive_failures", -1) == 0);
    ck_assert_str_eq(json_str(j, "last_failure.detail"), "HTTP 503"); /* still the newest */
    cJSON_Delete(j);
    proxy_get("/slow/ok", NULL, 200);
    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    ck_assert(json_num(endpoint_of(service_of(j, "slow"), 0), "consecutive_failures", -1) == 0);
    cJSON_Delete(j);
}
END_TEST

START_TEST(half_open_by_timer)
{
    char url[128];
    cJSON *j;

    start_svc("        retry: false\n"
              "        circuit-breaker: {failure-threshold: 1, recovery-timeout: 400ms}\n",
              NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/base", stub.port);
    proxy_get("/svc/x", (const char *[]){"X-Stub-Status: 500", NULL}, 500);
    ck_assert(
        metric(&daemon_proc, "ahoyd_circuit_state", "service", "svc", "endpoint", url, NULL) == 1);
    /* no traffic: the state moves on its own */
    double v = metric_wait(&daemon_proc, 2, 3000, "ahoyd_circuit_state", "service", "svc",
                           "endpoint", url);
    ck_assert_msg(v == 2, "circuit state %f, want 2 (half-open)", v);
    ck_assert(metric(&daemon_proc, "ahoyd_circuit_transitions_total", "service", "svc", "endpoint",
                     url, "to", "half_open", NULL) == 1);
    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    ck_assert_str_eq(json_str(endpoint_of(service_of(j, "svc"), 0), "state"), "half_open");
    ck_assert(json_num(endpoint_of(service_of(j, "svc"), 0), "seconds_to_half_open", -1) == 0);
    cJSON_Delete(j);
    /* reset from half-open */
    j = admin_json(&daemon_proc, "POST", "/v1/services/svc/endpoints/0/reset", NULL, 200);
    ck_assert_str_eq(json_str(j, "state"), "closed");
    cJSON_Delete(j);
    ck_assert(
        metric(&daemon_proc, "ahoyd_circuit_state", "service", "svc", "endpoint", url, NULL) == 0);
    ck_assert(metric(&daemon_proc, "ahoyd_circuit_transitions_total", "service", "svc", "endpoint",
                     url, "to", "closed", NULL) == 1);
}
END_TEST

/* ---- reload ------------------------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(reload_via_api)
{
    char one[128], two[128], *yaml;
    struct http_resp r;
    cJSON *j;

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    ck_assert_int_eq(stub_start(&stub2, "b", NULL), 0);
    snprintf(one, sizeof(one), "http://127.0.0.1:%d/one", stub.port);
    snprintf(two, sizeof(two), "http://127.0.0.1:%d/two", stub2.port);
    yaml = admin_yaml("127.0.0.1:0", "127.0.0.1:0", NULL,
                      "      svc:\n"
                      "        endpoints: [%s, %s]\n",
                      one, two);
    start_daemon(&daemon_proc, yaml);
    free(yaml);

    for (int i = 0; i < 4; i++)
        proxy_get("/svc/x", NULL, 200);
    double ok0 = metric(&daemon_proc, "ahoyd_config_reloads_total", "result", "success", NULL);
    double bad0 = metric(&daemon_proc, "ahoyd_config_reloads_total", "result", "failure", NULL);
    ck_assert(!isnan(ok0) && !isnan(bad0));
    ck_assert(bad0 == 0);
    ck_assert(metric(&daemon_proc, "ahoyd_upstream_attempts_total", "service", "svc", "endpoint",
                     one, "outcome", "2xx", NULL) == 2);

    /* valid: endpoint two removed, service other added */
    yaml = admin_yaml("127.0.0.1:0", "127.0.0.1:0", NULL,
                      "      svc:\n"
                      "        endpoints: [%s]\n"
                      "      other:\n"
                      "        base-url: %s\n",
                      one, two);
    write_file(daemon_proc.conf_path, yaml);
    free(yaml);
    j = admin_json(&daemon_proc, "POST", "/v1/reload", NULL, 200);
    ck_assert_str_eq(json_str(j, "status"), "reloaded");
    cJSON_Delete(j);
    {
        struct expo e;
        scrape(&daemon_proc, &e);
        ck_assert(expo_get(&e, "ahoyd_config_reloads_total", "result", "success", NULL) == ok0 + 1);
        ck_assert(expo_get(&e, "ahoyd_config_reloads_total", "result", "failure", NULL) == 0);
        double ts = expo_get(&e, "ahoyd_config_last_reload_success_timestamp_seconds", NULL);
        ck_assert_msg(fabs(ts - (double)time(NULL)) < 60, "timestamp %f", ts);
        /* the kept endpoint keeps its counters; the removed one's series are gone */
        ck_assert(expo_get(&e, "ahoyd_upstream_attempts_total", "service", "svc", "endpoint", one,
                           "outcome", "2xx", NULL) == 2);
        ck_assert_int_eq(expo_count(&e, "ahoyd_upstream_attempts_total", "endpoint", two), 8);
        ck_assert_int_eq(expo_count(&e, "ahoyd_upstream_attempts_total", "service", "svc"), 8);
        ck_assert(
            isnan(expo_get(&e, "ahoyd_circuit_state", "service", "svc", "endpoint", two, NULL)));
        ck_assert(expo_get(&e, "ahoyd_circuit_state", "service", "other", "endpoint", two, NULL) ==
                  0);
        ck_assert(expo_get(&e, "ahoyd_requests_total", "service", "svc", "code", "200", NULL) == 4);
        expo_free(&e);
    }
    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(json_path(j, "services")), 2);
    ck_assert_int_eq(cJSON_GetArraySize(json_path(service_of(j, "svc"), "endpoints")), 1);
    ck_assert_ptr_nonnull(service_of(j, "other"));
    cJSON_Delete(j);

    /* invalid: 422 with every error, the old configuration stays */
    write_file(daemon_proc.conf_path, "ahoyd:\n"
                                      "  listen: 127.0.0.1:0\n"
                                      "  admin-listen: 127.0.0.1:0\n"
                                      "  lisen: x\n"
                                      "pyfly:\n"
                                      "  client:\n"
                                      "    services:\n"
                                      "      svc:\n"
                                      "        timeout: forever\n");
    http_send(daemon_proc.admin_port, "POST", "/v1/reload", NULL, NULL, 0, &r);
    assert_admin_error(&r, 422, "invalid_config");
    j = json_body(&r);
    {
        cJSON *errs = json_path(j, "error.errors");
        cJSON *it;
        bool lisen = false, forever = false;
        ck_assert(cJSON_IsArray(errs));
        ck_assert_int_ge(cJSON_GetArraySize(errs), 2);
        cJSON_ArrayForEach(it, errs)
        {
            ck_assert(cJSON_IsString(it));
            ck_assert_msg(
                strncmp(it->valuestring, daemon_proc.conf_path, strlen(daemon_proc.conf_path)) == 0,
                "error without FILE:LINE:COL: %s", it->valuestring);
            lisen = lisen || strstr(it->valuestring, "lisen") != NULL;
            forever = forever || strstr(it->valuestring, "forever") != NULL ||
                      strstr(it->valuestring, "timeout") != NULL;
        }
        ck_assert_msg(lisen && forever, "errors: %.1500s", r.body);
    }
    cJSON_Delete(j);
    http_resp_free(&r);
    ck_assert(metric(&daemon_proc, "ahoyd_config_reloads_total", "result", "failure", NULL) == 1);
    ck_assert(metric(&daemon_proc, "ahoyd_config_reloads_total", "result", "success", NULL) ==
              ok0 + 1);
    proxy_get("/other/x", NULL, 200);
    j = admin_json(&daemon_proc, "GET", "/v1/services", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(json_path(j, "services")), 2);
    cJSON_Delete(j);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

/* A reload over the API that moves admin-listen: the answer still arrives on the old
 * address, then only the new one serves (the old listener is closed). */
START_TEST(reload_moves_admin_listen)
{
    struct http_resp r;
    cJSON *j;
    char *yaml, admin[32];
    int moved = closed_port(), old_port;
    double end;

    ck_assert_int_gt(moved, 0);
    start_svc(NULL, NULL);
    old_port = daemon_proc.admin_port;
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", moved);
    yaml = admin_yaml("127.0.0.1:0", admin, NULL,
                      "      svc:\n"
                      "        base-url: http://127.0.0.1:%d/base\n",
                      stub.port);
    write_file(daemon_proc.conf_path, yaml);
    free(yaml);
    j = admin_json(&daemon_proc, "POST", "/v1/reload", NULL, 200);
    ck_assert_str_eq(json_str(j, "status"), "reloaded");
    cJSON_Delete(j);
    {
        char line[64];
        snprintf(line, sizeof(line), "admin listening on 127.0.0.1:%d", moved);
        ck_assert(proc_log_wait(&daemon_proc, line, 3000));
    }
    daemon_proc.admin_port = moved;
    j = admin_json(&daemon_proc, "GET", "/healthz", NULL, 200);
    cJSON_Delete(j);
    ck_assert(metric(&daemon_proc, "ahoyd_config_reloads_total", "result", "failure", NULL) == 0);
    /* the old address stops answering (bounded wait: it may finish what it was sending) */
    end = harness_now_ms() + 3000;
    for (;;) {
        http_get(old_port, "/healthz", NULL, &r);
        long st = r.status;
        http_resp_free(&r);
        if (st == 0)
            break;
        ck_assert_msg(harness_now_ms() < end, "old admin port %d still answers", old_port);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
}
END_TEST

/* A reload that cannot bind answers 422 with the bind's own error, system error
 * included, as startup logs it: for listen and for admin-listen. */
START_TEST(reload_unbindable_says_why)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    char want[128], held_addr[64];
    struct http_resp r;
    int held = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(held, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(held, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(held, 8), 0);
    ck_assert_int_eq(getsockname(held, (struct sockaddr *)&addr, &alen), 0);
    snprintf(held_addr, sizeof(held_addr), "127.0.0.1:%d", ntohs(addr.sin_port));
    snprintf(want, sizeof(want), "cannot listen on %s: Address already in use", held_addr);

    start_svc(NULL, NULL);
    for (int k = 0; k < 2; k++) {
        char *yaml =
            admin_yaml(k == 0 ? held_addr : "127.0.0.1:0", k == 1 ? held_addr : "127.0.0.1:0", NULL,
                       "      svc:\n"
                       "        base-url: http://127.0.0.1:%d/base\n",
                       stub.port);
        write_file(daemon_proc.conf_path, yaml);
        free(yaml);
        http_send(daemon_proc.admin_port, "POST", "/v1/reload", NULL, NULL, 0, &r);
        assert_admin_error(&r, 422, "invalid_config");
        cJSON *j = json_body(&r);
        cJSON *first = cJSON_GetArrayItem(json_path(j, "error.errors"), 0);
        ck_assert_msg(cJSON_IsString(first) && strcmp(first->valuestring, want) == 0,
                      "%s: %.500s, want \"%s\"", k == 0 ? "listen" : "admin-listen", r.body, want);
        cJSON_Delete(j);
        http_resp_free(&r);
    }
    proxy_get("/svc/ok", NULL, 200);
    close(held);
}
END_TEST

START_TEST(readyz_during_drain)
{
    struct http_req req;
    struct http_resp r;
    char purl[128];
    cJSON *j;

    start_svc("        retry: false\n", NULL);
    j = admin_json(&daemon_proc, "GET", "/readyz", NULL, 200);
    ck_assert_str_eq(json_str(j, "status"), "ready");
    cJSON_Delete(j);

    memset(&req, 0, sizeof(req));
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%d/svc/slow", daemon_proc.port);
    req.url = purl;
    req.headers = (const char *[]){"X-Stub-Delay-Ms: 1500", NULL};
    struct http_async *a = http_async_start(&req);
    ck_assert(stub_wait_count(&stub, 1, 3000));
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "draining", 3000));
    j = admin_json(&daemon_proc, "GET", "/readyz", NULL, 503);
    ck_assert_str_eq(json_str(j, "status"), "not ready");
    cJSON_Delete(j);
    /* the rest of the admin API still answers while draining */
    j = admin_json(&daemon_proc, "GET", "/healthz", NULL, 200);
    cJSON_Delete(j);
    http_async_finish(a, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(proc_wait(&daemon_proc, 10000), 0);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("exposition");

    tcase_add_test(tc, parser_rejects_bad_expositions);
    tcase_add_test(tc, render_in_process);
    suite_add_tcase(s, tc);

    tc = harness_tcase(s, "api");
    tcase_add_test(tc, routes_and_fields);
    tcase_add_test(tc, not_on_the_proxy_port);
    tcase_add_test(tc, bearer_token);
    tcase_add_test(tc, origin_of_mutating_requests);
    tcase_add_test(tc, dashboard_page);
    tcase_add_test(tc, metrics_follow_traffic);
    tcase_add_test(tc, promtool_and_operator_metrics);
    tcase_add_test(tc, half_open_by_timer);
    tcase_add_test(tc, reload_via_api);
    tcase_add_test(tc, reload_moves_admin_listen);
    tcase_add_test(tc, reload_unbindable_says_why);
    tcase_add_test(tc, readyz_during_drain);
    return s;
}

int main(void)
{
    return harness_main(admin_suite());
}
