/*
 * dns.c - DNS discovery: one name followed through c-ares on ahoyd's loop.
 *
 * c-ares says which sockets to watch (ARES_OPT_SOCK_STATE_CB); the loop calls
 * ares_process_fd when one is ready, and a loop timer wakes c-ares for its own
 * retransmits and timeouts (ares_timeout). Nothing waits: a lookup is a few
 * callbacks. One lookup round at a time:
 * - A/AAAA: ares_getaddrinfo of the name, one endpoint per address;
 * - SRV: the SRV query, then ares_getaddrinfo of every target, then the RFC 2782
 *   level (dnsanswer_srv_select).
 * Each round ends in one report (discovery_cb) and the timer for the next round:
 * the refresh interval or the shortest TTL (dnsanswer_next_refresh_ms), or after
 * a failure the backoff (1 s doubling up to the refresh interval).
 *
 * c-ares versions: Debian 12 has 1.18, Debian 13 1.34, where ares_query and
 * ares_parse_srv_reply are deprecated (a -Werror build fails on them). SRV goes
 * through ares_query_dnsrec from 1.28 on, the old pair before. c-ares 1.23 and
 * later cache answers for their TTL: the cache is turned off, the refresh timer
 * already follows the TTLs and a cached answer would hide a change made sooner.
 *
 * Locking (loop.h): ares_process_fd runs with the state lock let go; every
 * callback from c-ares takes it back (state_enter is nestable, so the callbacks
 * c-ares makes from inside a call of ours are fine too).
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "discovery.h"
#include "dnsanswer.h"
#include "log.h"

#if ARES_VERSION >= 0x011c00
#define DNS_HAVE_DNSREC 1 /* ares_query_dnsrec, ares_dns_record_t */
#endif

#define DNS_TIMEOUT_MS 1000 /* one try against one server */
#define DNS_TRIES 2
#define DNS_URL_MAX 600
#define DNS_DEFAULT_REFRESH_MS 5000

struct dns_watch {
    struct loop_io io;
    struct dns_source *s;
    int fd;
};

/* One SRV record of the round in progress and its target's addresses. */
struct srv_rec {
    struct dns_source *s;
    int priority, weight, port;
    char *target;
    char **addrs;
    int n_addrs;
    uint32_t ttl;
};

struct dns_source {
    struct loop *loop;
    char *name, *scheme, *base_path;
    enum dns_record_type type;
    int port;
    int64_t refresh_ms;
    discovery_cb cb;
    void *arg;
    ares_channel channel;
    struct dns_watch **watches;
    int n_watches, cap_watches;
    struct loop_timer ares_timer; /* c-ares' retransmits and timeouts */
    struct loop_timer next_timer; /* the next round */
    int64_t backoff_ms;
    bool closing;
    /* the round in progress */
    struct srv_rec *srv;
    int n_srv;
    int srv_pending;   /* target lookups not answered yet */
    char *round_error; /* the first target lookup that failed */
    uint32_t *ttls;
    int n_ttls, cap_ttls;
};

static const char *type_name(enum dns_record_type t)
{
    return t == DNS_TYPE_SRV ? "SRV" : t == DNS_TYPE_AAAA ? "AAAA" : "A";
}

/* ---- socket and timer glue ------------------------------------------------------- */

static void arm_ares_timer(struct dns_source *s)
{
    struct timeval tv;
    if (s->closing)
        return;
    if (!ares_timeout(s->channel, NULL, &tv)) {
        loop_timer_stop(s->loop, &s->ares_timer);
        return;
    }
    int64_t ms = (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
    loop_timer_start(s->loop, &s->ares_timer, ms);
}

/* Let c-ares read, write or time out; its callbacks take the lock themselves. */
static void process(struct dns_source *s, ares_socket_t rfd, ares_socket_t wfd)
{
    int depth = state_release();
    ares_process_fd(s->channel, rfd, wfd);
    state_reacquire(depth);
    arm_ares_timer(s);
}

static void on_socket_event(void *arg, uint32_t events)
{
    struct dns_watch *w = arg;
    bool rd = events & (EPOLLIN | EPOLLERR | EPOLLHUP);
    bool wr = events & EPOLLOUT;
    process(w->s, rd ? w->fd : ARES_SOCKET_BAD, wr ? w->fd : ARES_SOCKET_BAD);
}

static void on_ares_timer(void *arg)
{
    process(arg, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

static int watch_find(const struct dns_source *s, int fd)
{
    for (int i = 0; i < s->n_watches; i++)
        if (s->watches[i]->fd == fd)
            return i;
    return -1;
}

static void watch_drop(struct dns_source *s, int i)
{
    struct dns_watch *w = s->watches[i];
    loop_io_del(s->loop, &w->io);
    loop_defer_free(s->loop, w); /* a pending event of this iteration may name it */
    s->watches[i] = s->watches[--s->n_watches];
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_source *s = data;
    if (s->closing)
        return; /* dns_source_free dropped every watch already */
    state_enter();
    int i = watch_find(s, fd);
    uint32_t ev = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
    if (!ev) {
        if (i >= 0)
            watch_drop(s, i); /* c-ares closes it next */
    } else if (i >= 0) {
        if (loop_io_mod(s->loop, &s->watches[i]->io, ev) != 0)
            log_warn("dns %s: cannot watch a resolver socket", s->name);
    } else {
        struct dns_watch *w = calloc(1, sizeof *w);
        if (s->n_watches == s->cap_watches) {
            int cap = s->cap_watches ? s->cap_watches * 2 : 8;
            struct dns_watch **t = realloc(s->watches, (size_t)cap * sizeof *t);
            if (t) {
                s->watches = t;
                s->cap_watches = cap;
            }
        }
        if (!w || s->n_watches == s->cap_watches) {
            free(w);
            log_warn("dns %s: out of memory watching a resolver socket", s->name);
        } else {
            w->s = s;
            w->fd = fd;
            if (loop_io_add(s->loop, &w->io, fd, ev, on_socket_event, w) != 0) {
                log_warn("dns %s: cannot watch a resolver socket", s->name);
                free(w);
            } else {
                s->watches[s->n_watches++] = w;
            }
        }
    }
    state_leave();
}

/* ---- one round ------------------------------------------------------------------- */

static void start_round(void *arg);

static void add_ttl(struct dns_source *s, uint32_t ttl)
{
    if (s->n_ttls == s->cap_ttls) {
        int cap = s->cap_ttls ? s->cap_ttls * 2 : 16;
        uint32_t *t = realloc(s->ttls, (size_t)cap * sizeof *t);
        if (!t)
            return; /* a TTL less: the refresh interval still applies */
        s->ttls = t;
        s->cap_ttls = cap;
    }
    s->ttls[s->n_ttls++] = ttl;
}

static void round_clear(struct dns_source *s)
{
    for (int i = 0; i < s->n_srv; i++) {
        for (int k = 0; k < s->srv[i].n_addrs; k++)
            free(s->srv[i].addrs[k]);
        free(s->srv[i].addrs);
        free(s->srv[i].target);
    }
    free(s->srv);
    s->srv = NULL;
    s->n_srv = 0;
    s->srv_pending = 0;
    free(s->round_error);
    s->round_error = NULL;
    s->n_ttls = 0;
}

/* ENOTFOUND (NXDOMAIN) and ENODATA (no record of the type) are answers: empty. */
static bool status_is_empty(int status)
{
    return status == ARES_ENOTFOUND || status == ARES_ENODATA;
}

static bool status_is_shutdown(int status)
{
    return status == ARES_EDESTRUCTION || status == ARES_ECANCELLED;
}

static void round_failed(struct dns_source *s, const char *what, const char *why)
{
    char msg[512];
    snprintf(msg, sizeof msg, "dns %s: %s lookup failed: %s", s->name, what, why);
    log_warn("%s", msg);
    round_clear(s);
    s->cb(s->arg, POOL_SOURCE_DNS, NULL, 0, msg);
    int64_t delay = s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 > s->refresh_ms ? s->refresh_ms : s->backoff_ms * 2;
    if (s->backoff_ms < DISCOVERY_BACKOFF_MIN_MS)
        s->backoff_ms = DISCOVERY_BACKOFF_MIN_MS;
    loop_timer_start(s->loop, &s->next_timer, delay);
}

/* Report found (URLs owned by the caller) and schedule the next round by the TTLs. */
static void round_done(struct dns_source *s, const struct pool_found *found, int n)
{
    int64_t next = dnsanswer_next_refresh_ms(s->refresh_ms, s->ttls, s->n_ttls);
    round_clear(s);
    s->backoff_ms = DISCOVERY_BACKOFF_MIN_MS;
    s->cb(s->arg, POOL_SOURCE_DNS, found, n, NULL);
    loop_timer_start(s->loop, &s->next_timer, next);
}

/* The numeric text of one address of a c-ares answer; false if not IPv4/IPv6. */
static bool node_addr(const struct ares_addrinfo_node *node, char *buf, size_t size)
{
    const void *a;
    if (node->ai_family == AF_INET)
        a = &((const struct sockaddr_in *)(const void *)node->ai_addr)->sin_addr;
    else if (node->ai_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)(const void *)node->ai_addr)->sin6_addr;
    else
        return false;
    return inet_ntop(node->ai_family, a, buf, (socklen_t)size) != NULL;
}

static void free_urls(struct pool_found *found, int n)
{
    for (int i = 0; i < n; i++)
        free((char *)found[i].url);
    free(found);
}

/* A/AAAA: one endpoint per address. */
static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct dns_source *s = arg;
    state_enter();
    if (s->closing || status_is_shutdown(status))
        goto out;
    if (status != ARES_SUCCESS && !status_is_empty(status)) {
        round_failed(s, type_name(s->type), ares_strerror(status));
        goto out;
    }
    int max = 0;
    for (const struct ares_addrinfo_node *nd = res ? res->nodes : NULL; nd; nd = nd->ai_next)
        max++;
    struct pool_found *found = calloc(max ? (size_t)max : 1, sizeof *found);
    int n = 0;
    if (!found) {
        round_failed(s, type_name(s->type), "out of memory");
        goto out;
    }
    for (const struct ares_addrinfo_node *nd = res ? res->nodes : NULL; nd; nd = nd->ai_next) {
        char addr[INET6_ADDRSTRLEN], url[DNS_URL_MAX];
        if (!node_addr(nd, addr, sizeof addr) ||
            dnsanswer_url(url, sizeof url, s->scheme, addr, s->port, s->base_path) < 0)
            continue;
        if (!(found[n].url = strdup(url)))
            break;
        found[n++].weight = 1;
        add_ttl(s, nd->ai_ttl > 0 ? (uint32_t)nd->ai_ttl : 0);
    }
    round_done(s, found, n);
    free_urls(found, n);
out:
    if (res)
        ares_freeaddrinfo(res);
    state_leave();
}

/* SRV, once every target has answered: the RFC 2782 level, one endpoint per address. */
static void srv_finish(struct dns_source *s)
{
    if (s->round_error) {
        char why[300];
        snprintf(why, sizeof why, "%s", s->round_error);
        round_failed(s, "SRV target", why);
        return;
    }
    int total = 0;
    struct dnsanswer_srv *recs = calloc((size_t)s->n_srv + 1, sizeof *recs);
    for (int i = 0; recs && i < s->n_srv; i++) {
        struct srv_rec *r = &s->srv[i];
        recs[i] = (struct dnsanswer_srv){
            r->priority, r->weight, r->port, r->target, (const char *const *)r->addrs, r->n_addrs};
        total += r->n_addrs;
    }
    struct dnsanswer_endpoint *eps = calloc((size_t)total + 1, sizeof *eps);
    struct pool_found *found = calloc((size_t)total + 1, sizeof *found);
    if (!recs || !eps || !found) {
        free(recs);
        free(eps);
        free(found);
        round_failed(s, "SRV", "out of memory");
        return;
    }
    int n_eps = dnsanswer_srv_select(recs, s->n_srv, eps, total, NULL);
    int n = 0;
    for (int i = 0; i < n_eps && i < total; i++) {
        char url[DNS_URL_MAX];
        if (dnsanswer_url(url, sizeof url, s->scheme, eps[i].addr, eps[i].port, s->base_path) < 0)
            continue;
        if (!(found[n].url = strdup(url)))
            break;
        found[n++].weight = eps[i].weight;
    }
    free(recs);
    free(eps);
    round_done(s, found, n);
    free_urls(found, n);
}

static void on_target(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct srv_rec *r = arg;
    struct dns_source *s = r->s;
    state_enter();
    if (s->closing || status_is_shutdown(status))
        goto out;
    if (status == ARES_SUCCESS) {
        int max = 0;
        for (const struct ares_addrinfo_node *nd = res->nodes; nd; nd = nd->ai_next)
            max++;
        r->addrs = calloc(max ? (size_t)max : 1, sizeof *r->addrs);
        for (const struct ares_addrinfo_node *nd = res->nodes; r->addrs && nd; nd = nd->ai_next) {
            char addr[INET6_ADDRSTRLEN];
            if (node_addr(nd, addr, sizeof addr) && (r->addrs[r->n_addrs] = strdup(addr))) {
                r->n_addrs++;
                add_ttl(s, nd->ai_ttl > 0 ? (uint32_t)nd->ai_ttl : 0);
            }
        }
    } else if (!status_is_empty(status) && !s->round_error) {
        /* a target that does not resolve is a dead level; one that fails is a failure */
        char why[300];
        snprintf(why, sizeof why, "%s: %s", r->target, ares_strerror(status));
        s->round_error = strdup(why);
        if (!s->round_error)
            s->round_error = strdup("out of memory");
    }
    if (--s->srv_pending == 0)
        srv_finish(s);
out:
    if (res)
        ares_freeaddrinfo(res);
    state_leave();
}

static void resolve_target(struct dns_source *s, struct srv_rec *r)
{
    struct ares_addrinfo_hints hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(s->channel, r->target, NULL, &hints, on_target, r);
}

/* The SRV records are in s->srv: resolve each usable target, then select. */
static void srv_records_done(struct dns_source *s)
{
    s->srv_pending = 1; /* held while starting: a lookup may answer at once */
    for (int i = 0; i < s->n_srv; i++) {
        struct srv_rec *r = &s->srv[i];
        if (r->port > 0 && r->target && strcmp(r->target, ".") != 0 && *r->target) {
            s->srv_pending++;
            resolve_target(s, r);
        }
    }
    if (--s->srv_pending == 0)
        srv_finish(s);
}

static bool srv_add(struct dns_source *s, int priority, int weight, int port, const char *target,
                    uint32_t ttl)
{
    struct srv_rec *t = realloc(s->srv, (size_t)(s->n_srv + 1) * sizeof *t);
    if (!t)
        return false;
    s->srv = t;
    struct srv_rec *r = &s->srv[s->n_srv];
    *r = (struct srv_rec){.s = s, .priority = priority, .weight = weight, .port = port, .ttl = ttl};
    if (!(r->target = strdup(target && *target ? target : ".")))
        return false;
    s->n_srv++;
    add_ttl(s, ttl);
    return true;
}

#ifdef DNS_HAVE_DNSREC
static void on_srv(void *arg, ares_status_t status, size_t timeouts, const ares_dns_record_t *rec)
{
    struct dns_source *s = arg;
    state_enter();
    if (s->closing || status_is_shutdown((int)status)) {
        state_leave();
        return;
    }
    if (status != ARES_SUCCESS && !status_is_empty((int)status)) {
        round_failed(s, "SRV", ares_strerror((int)status));
        state_leave();
        return;
    }
    size_t n = rec ? ares_dns_record_rr_cnt(rec, ARES_SECTION_ANSWER) : 0;
    for (size_t i = 0; status == ARES_SUCCESS && i < n; i++) {
        const ares_dns_rr_t *rr = ares_dns_record_rr_get_const(rec, ARES_SECTION_ANSWER, i);
        if (ares_dns_rr_get_type(rr) != ARES_REC_TYPE_SRV)
            continue; /* a CNAME on the way */
        if (!srv_add(s, ares_dns_rr_get_u16(rr, ARES_RR_SRV_PRIORITY),
                     ares_dns_rr_get_u16(rr, ARES_RR_SRV_WEIGHT),
                     ares_dns_rr_get_u16(rr, ARES_RR_SRV_PORT),
                     ares_dns_rr_get_str(rr, ARES_RR_SRV_TARGET), ares_dns_rr_get_ttl(rr))) {
            round_failed(s, "SRV", "out of memory");
            state_leave();
            return;
        }
    }
    srv_records_done(s);
    state_leave();
}
#else
/* c-ares before 1.28: ares_query + ares_parse_srv_reply (which gives no TTLs: the
 * targets' address TTLs and the refresh interval decide). */
static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_source *s = arg;
    struct ares_srv_reply *reply = NULL;
    state_enter();
    if (s->closing || status_is_shutdown(status))
        goto out;
    if (status == ARES_SUCCESS)
        status = ares_parse_srv_reply(abuf, alen, &reply);
    if (status != ARES_SUCCESS && !status_is_empty(status)) {
        round_failed(s, "SRV", ares_strerror(status));
        goto out;
    }
    for (struct ares_srv_reply *r = reply; r; r = r->next) {
        if (!srv_add(s, r->priority, r->weight, r->port, r->host, s->refresh_ms / 1000)) {
            round_failed(s, "SRV", "out of memory");
            goto out;
        }
    }
    srv_records_done(s);
out:
    if (reply)
        ares_free_data(reply);
    state_leave();
}
#endif

static void start_round(void *arg)
{
    struct dns_source *s = arg;
    round_clear(s);
    if (s->type == DNS_TYPE_SRV) {
#ifdef DNS_HAVE_DNSREC
        ares_query_dnsrec(s->channel, s->name, ARES_CLASS_IN, ARES_REC_TYPE_SRV, on_srv, s, NULL);
#else
        ares_query(s->channel, s->name, C_IN, T_SRV, on_srv, s);
#endif
    } else {
        struct ares_addrinfo_hints hints = {0};
        hints.ai_family = s->type == DNS_TYPE_AAAA ? AF_INET6 : AF_INET;
        hints.ai_flags = ARES_AI_NOSORT;
        ares_getaddrinfo(s->channel, s->name, NULL, &hints, on_addrinfo, s);
    }
    arm_ares_timer(s);
}

/* ---- life ---------------------------------------------------------------------- */

static int channel_open(struct dns_source *s, const char *server, char *err, size_t errsize)
{
    static bool library_ready;
    if (!library_ready) { /* called holding the state lock: once in the process */
        int rc = ares_library_init(ARES_LIB_INIT_ALL);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errsize, "c-ares: %s", ares_strerror(rc));
            return -1;
        }
        library_ready = true;
    }
    struct ares_options opt;
    memset(&opt, 0, sizeof opt);
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    opt.sock_state_cb = on_sock_state;
    opt.sock_state_cb_data = s;
    opt.timeout = DNS_TIMEOUT_MS;
    opt.tries = DNS_TRIES;
    char lookups[] = "b";
    if (server) {
        /* a given server: the name as written, no search list, no hosts file */
        mask |= ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS;
        opt.domains = NULL;
        opt.ndomains = 0;
        opt.lookups = lookups;
    }
#if ARES_VERSION >= 0x011700
    mask |= ARES_OPT_QUERY_CACHE;
    opt.qcache_max_ttl = 0;
#endif
    int rc = ares_init_options(&s->channel, &opt, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errsize, "dns %s: c-ares: %s", s->name, ares_strerror(rc));
        s->channel = NULL;
        return -1;
    }
    if (server && (rc = ares_set_servers_ports_csv(s->channel, server)) != ARES_SUCCESS) {
        snprintf(err, errsize, "dns %s: server %s: %s", s->name, server, ares_strerror(rc));
        return -1;
    }
    return 0;
}

struct dns_source *dns_source_new(struct loop *loop, const struct dns_source_conf *conf,
                                  discovery_cb cb, void *arg, char *err, size_t errsize)
{
    if (!conf->name || !*conf->name || !cb) {
        snprintf(err, errsize, "dns: a name is required");
        return NULL;
    }
    if (conf->type != DNS_TYPE_SRV && (conf->port < 1 || conf->port > 65535)) {
        snprintf(err, errsize, "dns %s: type %s needs a port from 1 to 65535", conf->name,
                 type_name(conf->type));
        return NULL;
    }
    struct dns_source *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errsize, "dns %s: out of memory", conf->name);
        return NULL;
    }
    s->loop = loop;
    s->type = conf->type;
    s->port = conf->port;
    s->refresh_ms = conf->refresh_ms > 0 ? conf->refresh_ms : DNS_DEFAULT_REFRESH_MS;
    if (s->refresh_ms < DNSANSWER_MIN_REFRESH_MS)
        s->refresh_ms = DNSANSWER_MIN_REFRESH_MS;
    s->backoff_ms = DISCOVERY_BACKOFF_MIN_MS;
    s->cb = cb;
    s->arg = arg;
    s->name = strdup(conf->name);
    s->scheme = strdup(conf->scheme && *conf->scheme ? conf->scheme : "http");
    s->base_path = strdup(conf->base_path ? conf->base_path : "");
    loop_timer_init(&s->ares_timer, on_ares_timer, s);
    loop_timer_init(&s->next_timer, start_round, s);
    if (!s->name || !s->scheme || !s->base_path) {
        snprintf(err, errsize, "dns %s: out of memory", conf->name);
        dns_source_free(s);
        return NULL;
    }
    if (channel_open(s, conf->server, err, errsize) != 0) {
        dns_source_free(s);
        return NULL;
    }
    loop_timer_start(loop, &s->next_timer, 0);
    return s;
}

void dns_source_free(struct dns_source *s)
{
    if (!s)
        return;
    s->closing = true; /* callbacks from ares_destroy (EDESTRUCTION) do nothing */
    loop_timer_stop(s->loop, &s->next_timer);
    loop_timer_stop(s->loop, &s->ares_timer);
    while (s->n_watches > 0) /* before c-ares closes the fds */
        watch_drop(s, s->n_watches - 1);
    if (s->channel)
        ares_destroy(s->channel);
    free(s->watches);
    round_clear(s);
    free(s->ttls);
    free(s->name);
    free(s->scheme);
    free(s->base_path);
    free(s);
}
