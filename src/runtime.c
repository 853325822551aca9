/*
 * runtime.c - building the live state from a config, and handing breaker,
 * health, ejection and budget state across reloads; the candidate set of a
 * pick (health, ejection, panic, slow-start weights).
 *
 * Endpoints present at start begin healthy and at full weight; one that
 * joins with a reload begins unhealthy when its service checks health (its
 * first check runs at once, checker.c) and ramps up under slow start. A
 * kept endpoint keeps all of it; when a reload turns checks on for it, it
 * counts as present (healthy, first check within the first interval).
 *
 * Discovery changes the current runtime's pools in place
 * (runtime_pool_update): every slot array of the service is built anew and
 * swapped at once under the state lock, and an endpoint that joins this way
 * is treated as one joining with a reload. A reload builds each pool from its
 * static endpoints and the discovered part of the old pool, for the sources
 * the service still has with an unchanged block.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "runtime.h"
#include "strbuf.h"

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_eject_timer(void *arg)
{
    struct endpoint_rt *ep = arg;
    endpoint_eject_tick(ep, loop_now_ms(ep->loop));
}

void endpoint_came_back(struct endpoint_rt *ep, int64_t now_ms)
{
    if (ep->slow_start_ms > 0)
        slow_start_begin(&ep->slow_start, now_ms);
}

bool endpoint_usable(const struct endpoint_rt *ep)
{
    return (ep->health.healthy || !ep->health_policy.enabled) && !ep->outlier.ejected;
}

void endpoint_eject_tick(struct endpoint_rt *ep, int64_t now_ms)
{
    if (!outlier_tick(&ep->outlier, &ep->outlier_policy, now_ms)) {
        if (ep->outlier.ejected && !loop_timer_active(&ep->eject_timer))
            loop_timer_start(ep->loop, &ep->eject_timer,
                             outlier_ms_until_return(&ep->outlier, now_ms));
        return;
    }
    loop_timer_stop(ep->loop, &ep->eject_timer);
    log_info("ejection: %s %s: returns to the pool", ep->service_name, ep->url);
    endpoint_came_back(ep, now_ms);
}

void endpoint_note_outcome(struct endpoint_rt *ep, const struct service_rt *svc,
                           enum breaker_result r, int64_t now_ms)
{
    if (!ep->outlier_policy.enabled || ep->retired)
        return;
    endpoint_eject_tick(ep, now_ms);
    int others = 0, pool = 0;
    for (size_t i = 0; i < svc->n_endpoints; i++) {
        const struct endpoint_rt *o = svc->endpoints[i];
        if (o->retired)
            continue;
        pool++;
        others += o != ep && o->outlier.ejected;
    }
    enum outlier_event ev = outlier_record(&ep->outlier, &ep->outlier_policy, r, now_ms, others,
                                           pool);
    if (ev == OUTLIER_EJECTED) {
        int64_t ms = ep->outlier.ejected_until_ms - now_ms;
        ep->ejected_until_unix_ms = wall_ms() + ms;
        log_warn("ejection: %s %s: ejected for %lld ms after %d failed calls in a row "
                 "(ejection %d)",
                 ep->service_name, ep->url, (long long)ms,
                 ep->outlier_policy.consecutive_failures, ep->outlier.multiplier);
        loop_timer_start(ep->loop, &ep->eject_timer, ms);
    } else if (ev == OUTLIER_EJECTION_REFUSED) {
        log_warn("ejection: %s %s: not ejected after %d failed calls in a row: %d of %d "
                 "endpoints are ejected already (max-ejection-percent %d)",
                 ep->service_name, ep->url, ep->outlier_policy.consecutive_failures, others,
                 pool, ep->outlier_policy.max_ejection_percent);
    }
}

int service_candidates(struct service_rt *s, int64_t now_ms, enum balancer_admit *admit,
                       int *weight, bool *none_usable)
{
    size_t n = s->n_endpoints;
    struct panic_endpoint small_eps[8];
    bool small_cand[8];
    struct panic_endpoint *eps = n > 8 ? calloc(n, sizeof *eps) : small_eps;
    bool *cand = n > 8 ? calloc(n, sizeof *cand) : small_cand;
    int usable = 0, count = 0;
    *none_usable = false;
    for (size_t i = 0; i < n; i++) {
        struct endpoint_rt *ep = s->endpoints[i];
        endpoint_tick(ep, now_ms);
        endpoint_eject_tick(ep, now_ms);
        enum breaker_state st = breaker_peek(&ep->breaker, ep->policy);
        admit[i] = ep->retired               ? ADMIT_NO /* removed by a reload */
                   : st == BREAKER_CLOSED    ? ADMIT_CLOSED
                   : st == BREAKER_HALF_OPEN ? ADMIT_PROBE
                                             : ADMIT_NO;
        weight[i] = slow_start_weight(&ep->slow_start, s->weights[i], ep->slow_start_ms, now_ms);
        if (eps && cand) {
            eps[i].healthy = !ep->retired && (ep->health.healthy || !ep->health_policy.enabled);
            eps[i].ejected = ep->retired || ep->outlier.ejected;
            eps[i].admits = admit[i] != ADMIT_NO;
        }
        usable += !ep->retired && endpoint_usable(ep);
    }
    if (eps && cand) {
        enum panic_change ch = PANIC_UNCHANGED;
        count = panic_candidates(eps, (int)n, s->conf->panic_threshold, &s->state->panic, cand,
                                 &ch);
        if (ch == PANIC_ENTERED)
            log_warn("panic: %s: %d of %zu endpoints usable (below %d%%): balancing over every "
                     "endpoint whose breaker admits",
                     s->conf->name, usable, n, s->conf->panic_threshold);
        else if (ch == PANIC_EXITED)
            log_info("panic: %s: over, %d of %zu endpoints usable", s->conf->name, usable, n);
        for (size_t i = 0; i < n; i++)
            if (!cand[i])
                admit[i] = ADMIT_NO;
    } else {
        for (size_t i = 0; i < n; i++) /* out of memory: health and ejection ignored */
            count += admit[i] != ADMIT_NO;
    }
    *none_usable = usable == 0 && !s->state->panic.active;
    if (eps != small_eps)
        free(eps);
    if (cand != small_cand)
        free(cand);
    return count;
}

static void on_recovery_timer(void *arg)
{
    struct endpoint_rt *ep = arg;
    endpoint_tick(ep, loop_now_ms(ep->loop));
}

static int64_t unix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void endpoint_note_attempt(struct endpoint_rt *ep, const struct outcome *o, bool cut_by_deadline,
                           int64_t elapsed_us, const char *request_id, int attempt)
{
    const char *detail = o->detail[0] ? o->detail : "no detail";

    ep->attempts[outcome_label_index(o)]++;
    counters_observe(&ep->attempt_duration, elapsed_us);
    if (cut_by_deadline) {
        log_debug("attempt %d of request %s failed on service %s endpoint %s: %s: cut by the "
                  "call deadline (%s)",
                  attempt, request_id, ep->service_name, ep->url, outcome_name(o), detail);
        return;
    }
    if (!outcome_is_failure(o)) {
        ep->consecutive_failures = 0;
        return;
    }
    ep->consecutive_failures++;
    ep->last_failure = *o;
    snprintf(ep->last_failure.detail, sizeof ep->last_failure.detail, "%s", detail);
    ep->last_failure_at_ms = unix_now_ms();
    log_debug("attempt %d of request %s failed on service %s endpoint %s: %s: %s", attempt,
              request_id, ep->service_name, ep->url, outcome_name(o), detail);
}

void endpoint_note_transition(struct endpoint_rt *ep, const struct breaker_transition *tr)
{
    const char *from = breaker_state_name(tr->from), *to = breaker_state_name(tr->to);
    const struct outcome *cause = ep->last_failure_at_ms ? &ep->last_failure : NULL;

    if (tr->to == BREAKER_OPEN && tr->from == BREAKER_CLOSED && cause)
        log_warn("circuit breaker %s %s %s -> %s after %d failures (%s: %s)", ep->service_name,
                 ep->url, from, to, ep->consecutive_failures, outcome_name(cause), cause->detail);
    else if (tr->to == BREAKER_OPEN && cause)
        log_warn("circuit breaker %s %s %s -> %s: %s (%s: %s)", ep->service_name, ep->url, from, to,
                 tr->reason, outcome_name(cause), cause->detail);
    else
        log_msg(tr->to == BREAKER_OPEN ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
                "circuit breaker %s %s %s -> %s (%s)", ep->service_name, ep->url, from, to,
                tr->reason);
    ep->transitions_to[tr->to]++;
    if (tr->to == BREAKER_CLOSED && tr->from != BREAKER_CLOSED)
        endpoint_came_back(ep, loop_now_ms(ep->loop));
    if (tr->to == BREAKER_OPEN)
        loop_timer_start(ep->loop, &ep->recovery_timer, ep->policy->recovery_timeout_ms);
    else
        loop_timer_stop(ep->loop, &ep->recovery_timer);
}

void endpoint_reset(struct endpoint_rt *ep)
{
    struct breaker_transition tr;
    if (breaker_reset(&ep->breaker, &tr))
        endpoint_note_transition(ep, &tr);
    ep->consecutive_failures = 0;
}

void endpoint_tick(struct endpoint_rt *ep, int64_t now_ms)
{
    struct breaker_transition tr;
    if (breaker_tick(&ep->breaker, ep->policy, now_ms, &tr))
        endpoint_note_transition(ep, &tr);
    else if (ep->breaker.state == BREAKER_OPEN && !loop_timer_active(&ep->recovery_timer))
        loop_timer_start(ep->loop, &ep->recovery_timer,
                         breaker_ms_until_half_open(&ep->breaker, ep->policy, now_ms));
}

static struct endpoint_rt *endpoint_find(const struct runtime *prev, const char *svc,
                                         const char *url)
{
    if (!prev)
        return NULL;
    for (size_t i = 0; i < prev->n_services; i++) {
        const struct service_rt *s = &prev->services[i];
        if (strcmp(s->conf->name, svc) != 0)
            continue;
        for (size_t j = 0; j < s->n_endpoints; j++)
            if (strcmp(s->endpoints[j]->url, url) == 0)
                return s->endpoints[j];
    }
    return NULL;
}

static struct service_state *state_find(const struct runtime *prev, const char *svc)
{
    if (!prev)
        return NULL;
    for (size_t i = 0; i < prev->n_services; i++)
        if (strcmp(prev->services[i].conf->name, svc) == 0)
            return prev->services[i].state;
    return NULL;
}

void endpoint_unref(struct endpoint_rt *ep)
{
    if (!ep || --ep->refs > 0)
        return;
    loop_timer_stop(ep->loop, &ep->recovery_timer);
    loop_timer_stop(ep->loop, &ep->eject_timer);
    loop_timer_stop(ep->loop, &ep->health_timer);
    if (ep->own_conf) {
        config_endpoint_clear(ep->own_conf);
        free(ep->own_conf);
    }
    free(ep->service_name);
    free(ep->url);
    free(ep);
}

static void state_unref(struct service_state *st)
{
    if (!st || --st->refs > 0)
        return;
    counters_service_free(st->counters);
    free(st->name);
    free(st);
}

/* The counters and budget of service name: prev's, shared, or new ones. NULL when out
 * of memory. */
static struct service_state *state_take(const struct runtime *prev, const char *name)
{
    struct service_state *st = state_find(prev, name);
    if (st) {
        st->refs++;
        return st;
    }
    st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->refs = 1;
    st->name = strdup(name);
    retry_budget_init(&st->budget);
    return st;
}

/* A fresh endpoint of service svc at url (its settings come later). NULL when out of
 * memory. */
static struct endpoint_rt *endpoint_new(const char *svc, const char *url, struct loop *loop)
{
    static uint64_t next_id; /* under the state lock */
    struct endpoint_rt *ep = calloc(1, sizeof *ep);
    if (!ep)
        return NULL;
    ep->refs = 1;
    ep->id = ++next_id;
    ep->service_name = strdup(svc);
    ep->url = strdup(url);
    if (!ep->service_name || !ep->url) {
        free(ep->service_name);
        free(ep->url);
        free(ep);
        return NULL;
    }
    ep->loop = loop;
    ep->fresh = true;
    breaker_init(&ep->breaker);
    outlier_init(&ep->outlier);
    slow_start_init(&ep->slow_start);
    loop_timer_init(&ep->recovery_timer, on_recovery_timer, ep);
    loop_timer_init(&ep->eject_timer, on_eject_timer, ep);
    loop_timer_init(&ep->health_timer, NULL, ep); /* checker.c sets its callback */
    return ep;
}

/* Endpoint ec of service sc: prev's, shared, or a fresh one (its settings come later,
 * in apply_settings). NULL when out of memory. */
static struct endpoint_rt *endpoint_take(const struct runtime *prev, const struct service_conf *sc,
                                         const struct endpoint_conf *ec, struct loop *loop)
{
    struct endpoint_rt *ep = endpoint_find(prev, sc->name, ec->url);
    if (ep) {
        ep->refs++;
        return ep;
    }
    return endpoint_new(sc->name, ec->url, loop);
}

/* The URL parts of a discovered endpoint, parsed once. NULL when the URL is bad (logged)
 * or out of memory. */
static const struct endpoint_conf *endpoint_own_conf(struct endpoint_rt *ep)
{
    const char *why = "out of memory";
    if (ep->own_conf)
        return ep->own_conf;
    struct endpoint_conf *ec = calloc(1, sizeof *ec);
    if (ec && config_endpoint_parse(ep->url, 1, ec, &why)) {
        ep->own_conf = ec;
        return ec;
    }
    log_warn("discovery: %s: endpoint %s left out: %s", ep->service_name, ep->url, why);
    free(ec);
    return NULL;
}

/* The pool arrays of s for n slots (none filled). -1 when out of memory. */
static int pool_alloc(struct service_rt *s, size_t n)
{
    size_t k = n ? n : 1;
    s->endpoints = calloc(k, sizeof *s->endpoints);
    s->confs = calloc(k, sizeof *s->confs);
    s->members = calloc(k, sizeof *s->members);
    s->weights = calloc(k, sizeof *s->weights);
    s->shown = calloc(k, sizeof *s->shown);
    s->n_endpoints = 0;
    return s->endpoints && s->confs && s->members && s->weights && s->shown ? 0 : -1;
}

static void pool_free_arrays(struct service_rt *s)
{
    free(s->endpoints);
    free(s->confs);
    free(s->members);
    free(s->weights);
    free(s->shown);
}

/* Put ep in the next slot of s with weights wbs (the slot takes the caller's reference). */
static void pool_push(struct service_rt *s, struct endpoint_rt *ep,
                      const struct endpoint_conf *ec, const int wbs[POOL_SOURCES])
{
    size_t i = s->n_endpoints++;
    s->endpoints[i] = ep;
    s->confs[i] = ec;
    s->members[i].url = ep->url;
    memcpy(s->members[i].weight_by_source, wbs, sizeof s->members[i].weight_by_source);
    s->weights[i] = pool_member_weight(wbs, &s->shown[i]);
}

/* Whether sc has source src with the block it had in was (NULL: no previous service),
 * so that the part of the pool it found stays. */
static bool source_kept(const struct service_conf *sc, const struct service_conf *was,
                        enum pool_source src)
{
    if (src == POOL_SOURCE_DNS)
        return sc->dns.enabled && was && was->dns.enabled && config_dns_same(&sc->dns, &was->dns);
    return src == POOL_SOURCE_ETCD && sc->etcd.enabled && was && was->etcd.enabled &&
           config_etcd_same(&sc->etcd, &was->etcd);
}

static const struct service_rt *service_find(const struct runtime *rt, const char *name)
{
    for (size_t i = 0; rt && i < rt->n_services; i++)
        if (strcmp(rt->services[i].conf->name, name) == 0)
            return &rt->services[i];
    return NULL;
}

/* The pool of a new service: its static endpoints, then what prev's pool has from the
 * discovery sources the service still has with the same block (the set survives a
 * reload; a source whose block changed starts again with no part of the pool, so that
 * traffic leaves the old name or prefix at once). */
static int pool_build(struct service_rt *s, const struct runtime *prev, struct loop *loop)
{
    const struct service_conf *sc = s->conf;
    const struct service_rt *ps = service_find(prev, sc->name);
    if (pool_alloc(s, sc->n_endpoints + (ps ? ps->n_endpoints : 0)) != 0)
        return -1;
    for (size_t j = 0; j < sc->n_endpoints; j++) {
        struct endpoint_rt *ep = endpoint_take(prev, sc, &sc->endpoints[j], loop);
        if (!ep)
            return -1;
        int wbs[POOL_SOURCES] = {0};
        wbs[POOL_SOURCE_STATIC] = sc->endpoints[j].weight;
        pool_push(s, ep, &sc->endpoints[j], wbs);
    }
    size_t n_static = s->n_endpoints;
    for (size_t j = 0; ps && j < ps->n_endpoints; j++) {
        int wbs[POOL_SOURCES] = {0};
        bool any = false;
        for (int src = POOL_SOURCE_STATIC + 1; src < POOL_SOURCES; src++) {
            if (source_kept(sc, ps->conf, (enum pool_source)src))
                wbs[src] = ps->members[j].weight_by_source[src];
            any |= wbs[src] > 0;
        }
        if (!any)
            continue;
        size_t k;
        for (k = 0; k < n_static && strcmp(s->members[k].url, ps->members[j].url) != 0; k++)
            ;
        if (k < n_static) { /* static too: one endpoint, the static weight shown */
            for (int src = POOL_SOURCE_STATIC + 1; src < POOL_SOURCES; src++)
                s->members[k].weight_by_source[src] = wbs[src];
            continue;
        }
        struct endpoint_rt *ep = ps->endpoints[j];
        const struct endpoint_conf *ec = endpoint_own_conf(ep);
        if (!ec)
            continue;
        ep->refs++;
        pool_push(s, ep, ec, wbs);
    }
    return 0;
}

/* Endpoint ep in slot j of s takes its service's settings; joining: it joins a running
 * pool (a reload or a discovery change), so it is checked at once and slows-starts. */
static void endpoint_apply(struct endpoint_rt *ep, const struct service_rt *s, size_t j,
                           bool joining, int64_t now, uint64_t *rng)
{
    const struct health_policy *hp = &s->conf->health;
    ep->conf = s->confs[j];
    ep->svc_conf = s->conf;
    ep->policy_value = s->conf->breaker;
    ep->policy = &ep->policy_value;
    ep->retired = false;
    if (ep->fresh && joining) {
        health_init_joining(&ep->health, hp, now); /* joins: checked at once */
        if (s->conf->slow_start_ms > 0)
            slow_start_begin(&ep->slow_start, now);
    } else if (ep->fresh || hp->enabled != ep->health_policy.enabled) {
        health_init_present(&ep->health, hp, now, rng);
    }
    ep->fresh = false;
    ep->health_policy = *hp;
    ep->outlier_policy = s->conf->outlier;
    ep->slow_start_ms = s->conf->slow_start_ms;
}

/* Every endpoint of rt takes its service's settings: only once nothing can fail, as
 * endpoints shared with prev change under the old runtime too. */
static void apply_settings(struct runtime *rt, const struct runtime *prev, struct loop *loop)
{
    int64_t now = loop_now_ms(loop);
    uint64_t rng = (uint64_t)monotonic_us() * 2654435761u | 1;
    for (size_t i = 0; i < rt->n_services; i++) {
        struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            endpoint_apply(s->endpoints[j], s, j, prev != NULL, now, &rng);
    }
}

/* Retire ep (removed from the current pool): no new calls, its timers stopped; it is
 * freed when the last call or check holding it ends. */
static void endpoint_retire(struct endpoint_rt *ep)
{
    ep->retired = true;
    loop_timer_stop(ep->loop, &ep->recovery_timer);
    loop_timer_stop(ep->loop, &ep->eject_timer);
}

int runtime_pool_update(struct service_rt *s, enum pool_source src,
                        const struct pool_found *found, int n, struct loop *loop)
{
    size_t ncur = s->n_endpoints;
    struct pool_next *next = calloc(ncur ? ncur : 1, sizeof *next);
    int *added = calloc(n > 0 ? (size_t)n : 1, sizeof *added);
    int *weight = calloc(n > 0 ? (size_t)n : 1, sizeof *weight);
    struct endpoint_rt **fresh = calloc(n > 0 ? (size_t)n : 1, sizeof *fresh);
    struct service_rt nw = {0};
    struct strbuf line = {0};
    int rc = -1, nadded = -1, nfresh = 0;
    if (n > RUNTIME_POOL_MAX_PER_SOURCE) {
        rc = RUNTIME_POOL_TOO_MANY;
        goto out;
    }
    if (next && added && weight && fresh)
        nadded = pool_diff_weighed(s->members, (int)ncur, src, found, n, next, added, weight);
    if (nadded < 0)
        goto out;
    /* the new endpoints first: nothing is changed until all of them exist */
    for (int a = 0; a < nadded; a++) {
        struct endpoint_rt *ep = endpoint_new(s->conf->name, found[added[a]].url, loop);
        if (!ep)
            goto out;
        if (!endpoint_own_conf(ep)) {
            endpoint_unref(ep); /* a bad URL: left out (logged) */
            continue;
        }
        fresh[nfresh] = ep;
        weight[nfresh] = weight[a];
        added[nfresh++] = added[a];
    }
    size_t kept = 0;
    int changes = nfresh; /* counted once the bad URLs are out */
    for (size_t i = 0; i < ncur; i++) {
        kept += next[i].fate != POOL_REMOVED;
        changes += next[i].fate != POOL_KEPT;
    }
    if (changes == 0) { /* a source's own weight may change under another's: keep it */
        for (size_t i = 0; i < ncur; i++)
            memcpy(s->members[i].weight_by_source, next[i].weight_by_source,
                   sizeof next[i].weight_by_source);
        rc = 0;
        goto out;
    }
    if (pool_alloc(&nw, kept + (size_t)nfresh) != 0)
        goto out;
    for (size_t i = 0; i < ncur; i++) {
        if (next[i].fate == POOL_REMOVED)
            continue;
        pool_push(&nw, s->endpoints[i], s->confs[i], next[i].weight_by_source);
        s->endpoints[i]->refs++;
    }
    for (int a = 0; a < nfresh; a++) {
        int wbs[POOL_SOURCES] = {0};
        wbs[src] = weight[a];
        pool_push(&nw, fresh[a], fresh[a]->own_conf, wbs);
    }
    uint64_t rng = (uint64_t)monotonic_us() * 2654435761u | 1;
    int64_t now = loop_now_ms(loop);
    nw.conf = s->conf;
    for (size_t j = kept; j < nw.n_endpoints; j++)
        endpoint_apply(nw.endpoints[j], &nw, j, true, now, &rng);
    nfresh = 0; /* the pool holds them now */
    if (pool_diff_describe(&line, s->conf->name, s->members, (int)ncur, next, found, added,
                           (int)(nw.n_endpoints - kept)) > 0)
        log_info("%s (%s)", line.s, pool_source_name(src));
    /* the swap: every array at once */
    for (size_t i = 0; i < ncur; i++) {
        if (next[i].fate == POOL_REMOVED)
            endpoint_retire(s->endpoints[i]);
        endpoint_unref(s->endpoints[i]);
    }
    pool_free_arrays(s);
    s->endpoints = nw.endpoints;
    s->confs = nw.confs;
    s->members = nw.members;
    s->weights = nw.weights;
    s->shown = nw.shown;
    s->n_endpoints = nw.n_endpoints;
    nw.endpoints = NULL;
    nw.confs = NULL;
    nw.members = NULL;
    nw.weights = NULL;
    nw.shown = NULL;
    rc = changes;
out:
    for (int a = 0; fresh && a < nfresh; a++)
        endpoint_unref(fresh[a]);
    pool_free_arrays(&nw);
    free(line.s);
    free(next);
    free(added);
    free(weight);
    free(fresh);
    return rc;
}

struct runtime *runtime_new(struct config *cfg, const struct runtime *prev, struct loop *loop,
                            char **err)
{
    struct runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return NULL;
    rt->refs = 1;
    rt->services = calloc(cfg->n_services ? cfg->n_services : 1, sizeof *rt->services);
    if (!rt->services)
        goto fail;
    for (size_t i = 0; i < cfg->n_services; i++) {
        const struct service_conf *sc = &cfg->services[i];
        struct service_rt *s = &rt->services[i];
        s->conf = sc;
        rt->n_services++;
        if (route_table_build(sc, &s->routes, err) != 0)
            goto fail;
        s->state = state_take(prev, sc->name);
        if (!s->state)
            goto fail;
        if (pool_build(s, prev, loop) != 0)
            goto fail;
    }
    apply_settings(rt, prev, loop);
    rt->cfg = cfg;
    return rt;
fail:
    if (!*err)
        *err = strdup("out of memory building the runtime");
    rt->cfg = NULL; /* the caller keeps cfg */
    runtime_unref(rt);
    return NULL;
}

void runtime_retire_missing(struct runtime *old, struct runtime *cur)
{
    for (size_t i = 0; i < old->n_services; i++) {
        struct service_rt *s = &old->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            if (!endpoint_find(cur, s->conf->name, s->endpoints[j]->url)) {
                s->endpoints[j]->retired = true;
                loop_timer_stop(s->endpoints[j]->loop, &s->endpoints[j]->recovery_timer);
                loop_timer_stop(s->endpoints[j]->loop, &s->endpoints[j]->eject_timer);
            }
    }
}

/* Each (service, endpoint) of a that b lacks, logged as what (SPEC 7: endpoint changes). */
static void log_missing(const struct runtime *a, const struct runtime *b, const char *what)
{
    for (size_t i = 0; i < a->n_services; i++) {
        const struct service_rt *s = &a->services[i];
        bool svc_known = false;
        for (size_t k = 0; k < b->n_services; k++)
            svc_known |= strcmp(b->services[k].conf->name, s->conf->name) == 0;
        if (!svc_known) {
            log_info("service %s %s", s->conf->name, what);
            continue;
        }
        for (size_t j = 0; j < s->n_endpoints; j++)
            if (!endpoint_find(b, s->conf->name, s->endpoints[j]->url))
                log_info("service %s: endpoint %s %s", s->conf->name, s->endpoints[j]->url,
                         what);
    }
}

void runtime_log_changes(const struct runtime *old, const struct runtime *cur)
{
    log_missing(cur, old, "added");
    log_missing(old, cur, "removed");
}

struct runtime *runtime_ref(struct runtime *rt)
{
    rt->refs++;
    return rt;
}

void runtime_unref(struct runtime *rt)
{
    if (!rt || --rt->refs > 0)
        return;
    for (size_t i = 0; i < rt->n_services; i++) {
        struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            endpoint_unref(s->endpoints[j]);
        pool_free_arrays(s);
        route_table_free(&s->routes);
        state_unref(s->state);
    }
    free(rt->services);
    config_free(rt->cfg);
    free(rt);
}

struct service_rt *runtime_find(struct runtime *rt, const char *name, size_t len)
{
    for (size_t i = 0; i < rt->n_services; i++) {
        const char *n = rt->services[i].conf->name;
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return &rt->services[i];
    }
    return NULL;
}
