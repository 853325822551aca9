/*
 * pool_feed.c - running the discovery sources of every service and applying
 * what they find to the current pool.
 *
 * Each source reports the whole set it found, or an error (discovery.h). A
 * good answer goes through runtime_pool_update (pool_diff underneath: kept
 * endpoints keep their state, new ones join, removed ones drain); an error
 * keeps the last good set, is logged once per run of failures and shown in
 * /v1/services (the source retries by itself with backoff; one that cannot
 * even start is started again after the same backoff). An answer listing
 * more than RUNTIME_POOL_MAX_PER_SOURCE endpoints is an error too. The sources keep
 * copies of their blocks, to tell an unchanged block at a reload, and of the
 * etcd TLS settings, which the etcd source reads for as long as it lives.
 * Everything runs on one loop under the state lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "discovery.h"
#include "log.h"
#include "pool_feed.h"

struct feed_source {
    struct feed_source *next;
    struct pool_feed *feed;
    char *service;
    enum pool_source src;
    struct dns_discovery_conf dns;   /* copy of the block (src DNS) */
    struct etcd_discovery_conf etcd; /* copy of the block (src ETCD) */
    struct dns_source *dns_source;
    struct etcd_source *etcd_source;
    bool failing; /* the last report was an error: logged once until a good answer */
    struct loop_timer retry_timer; /* starting the source again after it could not start */
    int backoff_ms;                /* before that retry */
    bool seen;    /* still configured (pool_feed_apply) */
};

struct pool_feed {
    struct loop *loop;
    struct checker *checker;
    struct runtime *rt; /* the current runtime (not a reference: main holds it) */
    struct feed_source *sources;
    struct loop_timer check_timer; /* tells the checker of joined endpoints, off the
                                      source's callback (which may run inside libcurl) */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_str(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    *ok = *ok && d;
    return d;
}

/* ---- copies of the blocks ---------------------------------------------------------- */

static void dns_conf_clear(struct dns_discovery_conf *c)
{
    free(c->name);
    free(c->base_path);
    free(c->server);
    memset(c, 0, sizeof *c);
}

static bool dns_conf_copy(struct dns_discovery_conf *d, const struct dns_discovery_conf *s)
{
    bool ok = true;
    *d = *s;
    d->name = dup_str(s->name, &ok);
    d->base_path = dup_str(s->base_path, &ok);
    d->server = dup_str(s->server, &ok);
    return ok;
}

static void tls_clear(struct tls_conf *t)
{
    free(t->ca_file);
    free(t->cert_file);
    free(t->key_file);
    free(t->server_name);
}

static void etcd_conf_clear(struct etcd_discovery_conf *c)
{
    for (size_t i = 0; c->endpoints && i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    free(c->endpoints);
    free(c->prefix);
    free(c->username);
    free(c->password_file);
    free(c->password);
    tls_clear(&c->tls);
    memset(c, 0, sizeof *c);
}

static bool etcd_conf_copy(struct etcd_discovery_conf *d, const struct etcd_discovery_conf *s)
{
    bool ok = true;
    *d = *s;
    d->endpoints = calloc(s->n_endpoints ? s->n_endpoints : 1, sizeof *d->endpoints);
    d->n_endpoints = 0;
    ok = d->endpoints != NULL;
    for (size_t i = 0; ok && i < s->n_endpoints; i++, d->n_endpoints++)
        d->endpoints[i] = dup_str(s->endpoints[i], &ok);
    d->prefix = dup_str(s->prefix, &ok);
    d->username = dup_str(s->username, &ok);
    d->password_file = dup_str(s->password_file, &ok);
    d->password = dup_str(s->password, &ok);
    d->tls.ca_file = dup_str(s->tls.ca_file, &ok);
    d->tls.cert_file = dup_str(s->tls.cert_file, &ok);
    d->tls.key_file = dup_str(s->tls.key_file, &ok);
    d->tls.server_name = dup_str(s->tls.server_name, &ok);
    return ok;
}

/* ---- answers ------------------------------------------------------------------------ */

static void on_check_timer(void *arg)
{
    struct pool_feed *f = arg;
    if (f->checker && f->rt)
        checker_apply(f->checker, f->rt);
}

static void on_found(void *arg, enum pool_source src, const struct pool_found *found, int n,
                     const char *error)
{
    struct feed_source *fs = arg;
    struct pool_feed *f = fs->feed;
    struct service_rt *s = f->rt ? runtime_find(f->rt, fs->service, strlen(fs->service)) : NULL;
    if (!s)
        return;
    struct discovery_status *st = &s->state->discovery[src];
    char over[128];
    int rc = error ? 0 : runtime_pool_update(s, src, found, n, f->loop);
    if (rc == RUNTIME_POOL_TOO_MANY) {
        snprintf(over, sizeof over, "%s: %d endpoints, more than the limit of %d",
                 pool_source_name(src), n, RUNTIME_POOL_MAX_PER_SOURCE);
        error = over;
    }
    if (error) {
        st->errors++;
        st->last_error_unix_ms = wall_ms();
        snprintf(st->last_error, sizeof st->last_error, "%s", error);
        if (!fs->failing)
            log_warn("discovery: %s: %s (keeping the last good set: %d endpoints)",
                     fs->service, error, st->endpoints);
        fs->failing = true;
        return;
    }
    if (fs->failing)
        log_info("discovery: %s: %s answers again", fs->service, pool_source_name(src));
    fs->failing = false;
    st->last_success_unix_ms = wall_ms();
    st->endpoints = n;
    if (rc < 0) {
        log_error("discovery: %s: out of memory applying the %s answer (pool unchanged)",
                  fs->service, pool_source_name(src));
        return;
    }
    if (rc > 0) {
        st->updates++;
        if (f->checker && !loop_timer_active(&f->check_timer))
            loop_timer_start(f->loop, &f->check_timer, 0);
    }
}

/* ---- sources ------------------------------------------------------------------------ */

static void source_free(struct feed_source *fs)
{
    loop_timer_stop(fs->feed->loop, &fs->retry_timer);
    dns_source_free(fs->dns_source);
    etcd_source_free(fs->etcd_source);
    dns_conf_clear(&fs->dns);
    etcd_conf_clear(&fs->etcd);
    free(fs->service);
    free(fs);
}

int pool_feed_test_start_failures;

/* Start fs's source for service s. One that cannot start (c-ares cannot set up, out of
 * memory) shows its reason as the last error and is tried again after the backoff. */
static void source_start(struct feed_source *fs, struct service_rt *s)
{
    struct pool_feed *f = fs->feed;
    char err[256] = "";
    if (pool_feed_test_start_failures > 0) {
        pool_feed_test_start_failures--;
        snprintf(err, sizeof err, "failure injected by a test");
    } else if (fs->src == POOL_SOURCE_DNS) {
        static const enum dns_record_type types[] = {DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_SRV};
        struct dns_source_conf dc = {
            .name = fs->dns.name,
            .type = types[fs->dns.type],
            .port = (int)fs->dns.port,
            .scheme = fs->dns.scheme ? "https" : "http",
            .base_path = fs->dns.base_path,
            .refresh_ms = fs->dns.refresh_ms,
            .server = fs->dns.server,
        };
        fs->dns_source = dns_source_new(f->loop, &dc, on_found, fs, err, sizeof err);
    } else {
        struct etcd_source_conf ec = {
            .endpoints = (const char *const *)fs->etcd.endpoints,
            .n_endpoints = fs->etcd.n_endpoints,
            .prefix = fs->etcd.prefix,
            .username = fs->etcd.username,
            .password = fs->etcd.password,
            .tls = &fs->etcd.tls,
        };
        fs->etcd_source = etcd_source_new(f->loop, &ec, on_found, fs, err, sizeof err);
    }
    if (fs->dns_source || fs->etcd_source) {
        fs->backoff_ms = 0;
        return;
    }
    struct discovery_status *st = &s->state->discovery[fs->src];
    fs->backoff_ms = fs->backoff_ms ? fs->backoff_ms * 2 : DISCOVERY_BACKOFF_MIN_MS;
    if (fs->backoff_ms > DISCOVERY_BACKOFF_MAX_MS)
        fs->backoff_ms = DISCOVERY_BACKOFF_MAX_MS;
    if (!fs->failing)
        log_error("discovery: %s: cannot start the %s source: %s (trying again)", fs->service,
                  pool_source_name(fs->src), err[0] ? err : "out of memory");
    snprintf(st->last_error, sizeof st->last_error, "cannot start: %s",
             err[0] ? err : "out of memory");
    st->last_error_unix_ms = wall_ms();
    st->errors++;
    fs->failing = true;
    loop_timer_start(f->loop, &fs->retry_timer, fs->backoff_ms);
}

static void on_retry_timer(void *arg)
{
    struct feed_source *fs = arg;
    struct pool_feed *f = fs->feed;
    struct service_rt *s = f->rt ? runtime_find(f->rt, fs->service, strlen(fs->service)) : NULL;
    if (s && !fs->dns_source && !fs->etcd_source)
        source_start(fs, s);
}

/* Start following sc's block for src; NULL when out of memory. */
static struct feed_source *source_new(struct pool_feed *f, struct service_rt *s,
                                      enum pool_source src)
{
    const struct service_conf *sc = s->conf;
    struct feed_source *fs = calloc(1, sizeof *fs);
    if (!fs)
        return NULL;
    fs->feed = f;
    fs->src = src;
    loop_timer_init(&fs->retry_timer, on_retry_timer, fs);
    fs->service = strdup(sc->name);
    bool ok = fs->service && (src == POOL_SOURCE_DNS ? dns_conf_copy(&fs->dns, &sc->dns)
                                                     : etcd_conf_copy(&fs->etcd, &sc->etcd));
    if (!ok) {
        source_free(fs);
        return NULL;
    }
    source_start(fs, s);
    return fs;
}

struct pool_feed *pool_feed_new(struct loop *loop, struct checker *checker)
{
    struct pool_feed *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->loop = loop;
    f->checker = checker;
    loop_timer_init(&f->check_timer, on_check_timer, f);
    return f;
}

static struct feed_source *source_find(struct pool_feed *f, const char *service,
                                       enum pool_source src)
{
    for (struct feed_source *fs = f->sources; fs; fs = fs->next)
        if (fs->src == src && strcmp(fs->service, service) == 0)
            return fs;
    return NULL;
}

void pool_feed_apply(struct pool_feed *f, struct runtime *rt)
{
    f->rt = rt;
    for (struct feed_source *fs = f->sources; fs; fs = fs->next)
        fs->seen = false;
    for (size_t i = 0; i < rt->n_services; i++) {
        struct service_rt *s = &rt->services[i];
        for (int k = POOL_SOURCE_STATIC + 1; k < POOL_SOURCES; k++) {
            enum pool_source src = (enum pool_source)k;
            bool dns = src == POOL_SOURCE_DNS;
            bool on = dns ? s->conf->dns.enabled : s->conf->etcd.enabled;
            s->state->discovery[src].active = on;
            if (!on)
                continue;
            struct feed_source *fs = source_find(f, s->conf->name, src);
            if (fs && (dns ? config_dns_same(&fs->dns, &s->conf->dns)
                                : config_etcd_same(&fs->etcd, &s->conf->etcd))) {
                fs->seen = true;
                continue;
            }
            if (fs) {
                log_info("discovery: %s: the %s block changed: its source starts again",
                         s->conf->name, pool_source_name(src));
                fs->seen = false; /* stopped below */
                fs->service[0] = '\0';
                /* the new block's status begins afresh, like its part of the pool */
                memset(&s->state->discovery[src], 0, sizeof s->state->discovery[src]);
                s->state->discovery[src].active = true;
            }
            struct feed_source *nf = source_new(f, s, src);
            if (!nf) {
                log_error("discovery: %s: out of memory starting the %s source",
                          s->conf->name, pool_source_name(src));
                continue;
            }
            nf->seen = true;
            nf->next = f->sources;
            f->sources = nf;
        }
    }
    struct feed_source **pp = &f->sources;
    while (*pp) {
        struct feed_source *fs = *pp;
        if (fs->seen) {
            pp = &fs->next;
            continue;
        }
        *pp = fs->next;
        source_free(fs);
    }
}

void pool_feed_free(struct pool_feed *f)
{
    if (!f)
        return;
    while (f->sources) {
        struct feed_source *fs = f->sources;
        f->sources = fs->next;
        source_free(fs);
    }
    loop_timer_stop(f->loop, &f->check_timer);
    free(f);
}
