/*
 * checker.c - running health checks: a timer per endpoint (struct
 * endpoint_rt.health_timer) armed for the time health.c says the next check
 * is due, a GET on the checker's own upstream, the result recorded and any
 * change logged, counted and fed to slow start and panic.
 *
 * The check goes to the endpoint's origin (scheme, host, port) with the path
 * as written, not joined to the endpoint's base path; with tls.server-name
 * it names that server as client calls do. Everything runs on one loop
 * under the state lock (loop.h), like a breaker's recovery timer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "checker.h"
#include "log.h"
#include "upstream.h"

#define CHECK_MAX_BODY (1u << 20)

struct checker {
    struct loop *loop;
    struct upstream *upstream; /* its own: never a client's connection */
    struct runtime *rt;        /* the current runtime (not a reference: main holds it) */
    uint64_t rng;
};

static void on_health_timer(void *arg);
static void on_check_done(void *arg, const struct outcome *o, struct upstream_response *resp,
                          int64_t elapsed_us);

struct checker *checker_new(struct loop *loop)
{
    struct checker *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->upstream = upstream_new(loop);
    if (!c->upstream) {
        free(c);
        return NULL;
    }
    c->rng = (uint64_t)monotonic_us() * 6364136223846793005u | 1;
    return c;
}

static void check_cancel(struct checker *c, struct endpoint_rt *ep)
{
    loop_timer_stop(c->loop, &ep->health_timer);
    if (ep->check) {
        upstream_cancel(c->upstream, ep->check);
        ep->check = NULL;
        ep->health.inflight = false;
        endpoint_unref(ep); /* the check's reference */
    }
}

/* Arm ep's timer for its next check (at once when it is due). */
static void check_schedule(struct checker *c, struct endpoint_rt *ep)
{
    int64_t now = loop_now_ms(c->loop);
    if (ep->check || !ep->health_policy.enabled || ep->retired)
        return;
    int64_t delay = ep->health.next_check_ms - now;
    loop_timer_start(c->loop, &ep->health_timer, delay > 0 ? delay : 0);
}

void checker_apply(struct checker *c, struct runtime *rt)
{
    c->rt = rt;
    for (size_t i = 0; i < rt->n_services; i++) {
        struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++) {
            struct endpoint_rt *ep = s->endpoints[j];
            if (!ep->health_policy.enabled) {
                check_cancel(c, ep);
                continue;
            }
            ep->checker = c;
            ep->health_timer.cb = on_health_timer;
            ep->health_timer.arg = ep;
            check_schedule(c, ep);
        }
    }
}

void checker_retire(struct checker *c, struct runtime *old)
{
    for (size_t i = 0; i < old->n_services; i++) {
        struct service_rt *s = &old->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            if (s->endpoints[j]->retired)
                check_cancel(c, s->endpoints[j]);
    }
}

void checker_stop(struct checker *c, struct runtime *rt)
{
    if (!c || !rt)
        return;
    for (size_t i = 0; i < rt->n_services; i++) {
        struct service_rt *s = &rt->services[i];
        for (size_t j = 0; j < s->n_endpoints; j++)
            check_cancel(c, s->endpoints[j]);
    }
    c->rt = NULL;
}

void checker_free(struct checker *c)
{
    if (!c)
        return;
    upstream_free(c->upstream);
    free(c);
}

/* The service of ep in the current runtime, or NULL. */
static struct service_rt *current_service(struct checker *c, const struct endpoint_rt *ep)
{
    if (!c->rt)
        return NULL;
    return runtime_find(c->rt, ep->service_name, strlen(ep->service_name));
}

/* Recompute the service's candidates so panic entry and exit are logged when health
 * changes, not only at the next call. */
static void panic_refresh(struct checker *c, const struct endpoint_rt *ep, int64_t now)
{
    struct service_rt *s = current_service(c, ep);
    if (!s || s->n_endpoints == 0)
        return;
    enum balancer_admit *admit = calloc(s->n_endpoints, sizeof *admit);
    int *weight = calloc(s->n_endpoints, sizeof *weight);
    bool none;
    if (admit && weight)
        service_candidates(s, now, admit, weight, &none);
    free(admit);
    free(weight);
}

static void check_start(struct checker *c, struct endpoint_rt *ep, int64_t now)
{
    const struct service_conf *sc = ep->svc_conf;
    const struct endpoint_conf *ec = ep->conf;
    const char *server_name =
        ec->tls && sc->tls.server_name && *sc->tls.server_name ? sc->tls.server_name : NULL;
    char *url = NULL, *connect_to = NULL;
    int rc = server_name ? asprintf(&url, "https://%s:%d%s", server_name, ec->port,
                                    sc->health_path)
                         : asprintf(&url, "%s%s", ec->origin, sc->health_path);
    if (rc < 0)
        url = NULL;
    if (server_name && asprintf(&connect_to, "%s:%d:%s:%d", server_name, ec->port, ec->host,
                                ec->port) < 0)
        connect_to = NULL;
    size_t nh = sc->n_health_headers;
    char **lines = calloc(nh + 2, sizeof *lines);
    bool ok = url && lines && (!server_name || connect_to);
    bool has_ua = false;
    for (size_t i = 0; ok && i < nh; i++) {
        has_ua |= strcasecmp(sc->health_headers[i].name, "User-Agent") == 0;
        if (asprintf(&lines[i], "%s: %s", sc->health_headers[i].name,
                     sc->health_headers[i].value) < 0) {
            lines[i] = NULL;
            ok = false;
        }
    }
    if (ok && !has_ua && !(lines[nh] = strdup("User-Agent: ahoyd-health-check/" PACKAGE_VERSION)))
        ok = false;

    health_begin(&ep->health, &ep->health_policy, now, &c->rng);
    struct upstream_attempt *a = NULL;
    if (ok) {
        struct upstream_request req = {
            .url = url,
            .method = "GET",
            .headers = (const char *const *)lines,
            .timeout_ms = ep->health_policy.timeout_ms,
            .connect_timeout_ms = ep->health_policy.timeout_ms,
            .allow_resend = true,
            .max_body = CHECK_MAX_BODY,
            .max_header_bytes = 16384,
            .tls = &sc->tls,
            .connect_to = connect_to,
        };
        a = upstream_start(c->upstream, &req, on_check_done, ep);
    }
    for (size_t i = 0; lines && i <= nh; i++)
        free(lines[i]);
    free(lines);
    free(url);
    free(connect_to);
    ep->refs++; /* held while the check runs */
    if (!a) {
        struct outcome o = {.kind = OUTCOME_CONNECT_FAILURE};
        on_check_done(ep, &o, NULL, 0);
        return;
    }
    ep->check = a;
}

static void on_health_timer(void *arg)
{
    struct endpoint_rt *ep = arg;
    struct checker *c = ep->checker;
    int64_t now = loop_now_ms(c->loop);
    if (ep->retired || !ep->health_policy.enabled || ep->check)
        return;
    if (health_due(&ep->health, &ep->health_policy, now))
        check_start(c, ep, now);
    check_schedule(c, ep);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_check_done(void *arg, const struct outcome *o, struct upstream_response *resp,
                          int64_t elapsed_us)
{
    struct endpoint_rt *ep = arg;
    struct checker *c = ep->checker;
    int64_t now = loop_now_ms(c->loop);
    (void)elapsed_us;
    ep->check = NULL;
    enum health_transport t = o->kind == OUTCOME_STATUS            ? HEALTH_IO_RESPONSE
                              : o->kind == OUTCOME_CONNECT_FAILURE ? HEALTH_IO_CONNECT_FAILED
                              : o->kind == OUTCOME_TIMEOUT         ? HEALTH_IO_TIMEOUT
                                                                   : HEALTH_IO_ERROR;
    int status = o->kind == OUTCOME_STATUS ? o->status : 0;
    if (resp) {
        upstream_response_free(resp);
        free(resp);
    }
    enum health_outcome ho = health_classify(t, status, &ep->health_policy.expect);
    struct health_transition tr;
    bool changed = health_record(&ep->health, &ep->health_policy, ho, now, &tr);
    ep->checks[ho]++;
    ep->last_check_unix_ms = wall_ms();
    ep->last_check_status = status;
    if (changed) {
        char why[48];
        if (status)
            snprintf(why, sizeof why, "status %d", status);
        else
            snprintf(why, sizeof why, "%s", health_outcome_name(ho));
        if (tr.healthy) {
            if (strcmp(tr.reason, "first check passed") == 0)
                log_info("health: %s %s: healthy after its first check (%s)", ep->service_name,
                         ep->url, why);
            else
                log_info("health: %s %s: healthy after %d passed checks (%s)",
                         ep->service_name, ep->url, ep->health.successes, why);
            endpoint_came_back(ep, now);
        } else {
            log_warn("health: %s %s: unhealthy after %d failed checks (%s)", ep->service_name,
                     ep->url, ep->health.failures, why);
        }
        panic_refresh(c, ep, now);
    }
    bool retired = ep->retired;
    if (!retired)
        check_schedule(c, ep);
    endpoint_unref(ep); /* may free a retired endpoint */
}
