/*
 * admin.c - the admin API on admin-listen (SPEC 6): the dashboard page (/),
 * /healthz, /readyz, /metrics, /v1/services, POST /v1/reload and
 * POST /v1/services/<s>/endpoints/<i>/reset.
 *
 * A second libmicrohttpd daemon, run like the proxy's (server.c): no thread,
 * MHD_USE_EPOLL, MHD's epoll fd watched by ahoyd's loop and MHD_run() on
 * readiness. The loop's one "prepare" hook belongs to server.c, so MHD's own
 * timeouts are driven by a loop timer of ours, re-armed from MHD_get_timeout()
 * after every MHD_run(). Nothing here is reachable from listen: it is another
 * socket and another daemon.
 *
 * Every answer is computed synchronously from the current runtime (the hooks
 * give it), so no connection is ever suspended. Answers are queued on the last
 * handler call of a request, not the first, so keep-alive works (a response
 * queued on the first call goes out with Connection: close).
 *
 * A reload that re-binds admin-listen calls admin_stop() on this daemon from
 * inside its own handler (POST /v1/reload). MHD must not be stopped from its
 * own callback, so then the listener is closed at once and the daemon is
 * retired: it finishes sending its answers (with Connection: close) and is
 * stopped after the MHD_run() in progress, within RETIRE_MAX_MS.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "admin.h"
#include "http.h"
#include "dashboard.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"

#define ADMIN_CONNECTION_LIMIT 64
#define ADMIN_IDLE_TIMEOUT_S 60
#define RETIRE_MAX_MS 2000 /* a retired daemon's answers get this long to leave */

struct admin {
    struct loop *loop;
    struct MHD_Daemon *mhd;
    struct loop_io mhd_io;
    struct loop_timer mhd_timer;
    int listen_fd;
    char bound[300];
    struct listen_file file; /* the unix socket file we created, if any */
    char *token; /* NULL = no Authorization required */
    struct sockaddr_storage own; /* the listener's bound address (AF_UNIX for a socket file) */
    int own_port;
    struct admin_hooks hooks;
    int in_run;    /* inside MHD_run(): handlers may be on the stack */
    bool retiring; /* admin_stop() was called from a handler */
    int64_t retire_deadline_ms;
    struct admin *next_retired;
};

/* Daemons stopped from inside their own handler, waiting to be finished. */
static struct admin *retired;

/* ---- answers ------------------------------------------------------------------------ */

static enum MHD_Result queue_body(struct admin *a, struct MHD_Connection *c, unsigned status,
                                  const char *content_type, char *body, size_t len,
                                  const char *const *headers)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    for (size_t i = 0; headers && headers[i]; i += 2)
        MHD_add_response_header(resp, headers[i], headers[i + 1]);
    if (a->retiring)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Serialise j (deleted here) and queue it as the JSON answer. */
static enum MHD_Result queue_json(struct admin *a, struct MHD_Connection *c, unsigned status,
                                  cJSON *j, const char *const *headers)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        return MHD_NO;
    return queue_body(a, c, status, "application/json", text, strlen(text), headers);
}

/* {"error":{"code":..,"message":..,"status":..}} */
static cJSON *error_json(const char *code, const char *message, unsigned status)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddNumberToObject(e, "status", status);
    return root;
}

static enum MHD_Result queue_error(struct admin *a, struct MHD_Connection *c, unsigned status,
                                   const char *code, const char *message,
                                   const char *const *headers)
{
    return queue_json(a, c, status, error_json(code, message, status), headers);
}

static cJSON *status_json(const char *status)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", status);
    return j;
}

/* ---- the services view ------------------------------------------------------------------ */

static void add_retry_on(void *arg, const char *entry)
{
    cJSON_AddItemToArray(arg, cJSON_CreateString(entry));
}

static cJSON *retry_json(const struct retry_policy *p)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "max_attempts", p->max_attempts);
    cJSON_AddNumberToObject(r, "base_delay_ms", (double)p->base_delay_ms);
    cJSON_AddNumberToObject(r, "max_delay_ms", (double)p->max_delay_ms);
    cJSON_AddStringToObject(r, "jitter", retry_jitter_name(p->jitter));
    cJSON *on = cJSON_AddArrayToObject(r, "retry_on");
    retry_on_each(p, add_retry_on, on);
    cJSON_AddBoolToObject(r, "retry_non_idempotent", p->retry_non_idempotent);
    cJSON_AddBoolToObject(r, "honor_retry_after", p->honor_retry_after);
    if (p->budget_enabled) {
        cJSON *b = cJSON_AddObjectToObject(r, "budget");
        cJSON_AddNumberToObject(b, "ratio", p->budget_ratio);
        cJSON_AddNumberToObject(b, "min_per_second", p->budget_min_per_second);
    } else {
        cJSON_AddNullToObject(r, "budget");
    }
    return r;
}

static cJSON *breaker_json(const struct breaker_policy *p)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddBoolToObject(b, "enabled", p->enabled);
    cJSON_AddNumberToObject(b, "failure_threshold", p->failure_threshold);
    cJSON_AddNumberToObject(b, "recovery_timeout_ms", (double)p->recovery_timeout_ms);
    cJSON_AddNumberToObject(b, "half_open_max_calls", p->half_open_max_calls);
    return b;
}

/* "2026-01-02T03:04:05.678Z" */
static void rfc3339_ms(char *buf, size_t size, int64_t unix_ms)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03dZ", (int)(unix_ms % 1000));
}

/* {"outcome": "connect-failure", "detail": "Connection refused", "at": RFC 3339 UTC}, or
 * null before the endpoint's first failure. */
static cJSON *last_failure_json(const struct endpoint_rt *ep)
{
    if (!ep->last_failure_at_ms)
        return cJSON_CreateNull();
    char at[40];
    rfc3339_ms(at, sizeof at, ep->last_failure_at_ms);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "outcome", outcome_name(&ep->last_failure));
    cJSON_AddStringToObject(f, "detail", ep->last_failure.detail);
    cJSON_AddStringToObject(f, "at", at);
    return f;
}

/* Health, last check, ejection and slow start of one endpoint (SPEC 4.5, 4.7). */
static void endpoint_fleet_json(cJSON *e, const struct service_rt *s, size_t index,
                                int64_t now_ms)
{
    const struct endpoint_rt *ep = s->endpoints[index];
    char at[40];
    bool checked = ep->health_policy.enabled;
    cJSON_AddStringToObject(e, "health",
                            !checked ? "unchecked" : ep->health.healthy ? "healthy" : "unhealthy");
    if (checked && ep->last_check_unix_ms > 0) {
        cJSON *lc = cJSON_AddObjectToObject(e, "last_check");
        rfc3339_ms(at, sizeof at, ep->last_check_unix_ms);
        cJSON_AddStringToObject(lc, "at", at);
        cJSON_AddStringToObject(lc, "outcome", health_outcome_name(ep->health.last_outcome));
        if (ep->last_check_status)
            cJSON_AddNumberToObject(lc, "status", ep->last_check_status);
        else
            cJSON_AddNullToObject(lc, "status");
    } else {
        cJSON_AddNullToObject(e, "last_check");
    }
    if (ep->outlier.ejected) {
        rfc3339_ms(at, sizeof at, ep->ejected_until_unix_ms);
        cJSON_AddStringToObject(e, "ejected_until", at);
    } else {
        cJSON_AddNullToObject(e, "ejected_until");
    }
    cJSON_AddNumberToObject(e, "ejections", (double)ep->outlier.ejections);
    int full = s->weights[index] * SLOW_START_SCALE;
    int w = slow_start_weight(&ep->slow_start, s->weights[index], ep->slow_start_ms, now_ms);
    cJSON_AddNumberToObject(e, "slow_start_percent", full > 0 ? (double)w * 100.0 / full : 100);
}

static cJSON *endpoint_json(const struct service_rt *s, size_t index, int64_t now_ms)
{
    const struct endpoint_rt *ep = s->endpoints[index];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "index", (double)index);
    cJSON_AddStringToObject(e, "url", ep->url);
    cJSON_AddNumberToObject(e, "weight", s->weights[index]);
    cJSON_AddStringToObject(e, "source", pool_source_name(s->shown[index]));
    cJSON_AddStringToObject(e, "state", breaker_state_name(ep->breaker.state));
    cJSON_AddNumberToObject(e, "consecutive_failures", ep->consecutive_failures);
    int64_t ms = breaker_ms_until_half_open(&ep->breaker, ep->policy, now_ms);
    cJSON_AddNumberToObject(e, "seconds_to_half_open", (double)ms / 1000.0);
    cJSON_AddNumberToObject(e, "inflight", ep->inflight);
    cJSON *att = cJSON_AddObjectToObject(e, "attempts");
    for (int o = 0; o < OUTCOME_LABELS; o++)
        cJSON_AddNumberToObject(att, outcome_label_name(o), (double)ep->attempts[o]);
    cJSON *tr = cJSON_AddObjectToObject(e, "transitions");
    for (int to = BREAKER_CLOSED; to <= BREAKER_HALF_OPEN; to++)
        cJSON_AddNumberToObject(tr, breaker_state_name((enum breaker_state)to),
                                (double)ep->transitions_to[to]);
    cJSON_AddItemToObject(e, "last_failure", last_failure_json(ep));
    endpoint_fleet_json(e, s, index, now_ms);
    return e;
}

/* Each discovery source of the service (SPEC 4.6): what it follows, its last answer and
 * its last error; null for a service without discovery. */
static cJSON *discovery_json(const struct service_rt *s)
{
    const struct service_conf *sc = s->conf;
    if (!sc->dns.enabled && !sc->etcd.enabled)
        return cJSON_CreateNull();
    cJSON *d = cJSON_CreateObject();
    for (int src = POOL_SOURCE_STATIC + 1; src < POOL_SOURCES; src++) {
        const struct discovery_status *st = &s->state->discovery[src];
        bool dns = src == POOL_SOURCE_DNS;
        if (!(dns ? sc->dns.enabled : sc->etcd.enabled))
            continue;
        cJSON *o = cJSON_AddObjectToObject(d, pool_source_name((enum pool_source)src));
        cJSON_AddStringToObject(o, dns ? "name" : "prefix", dns ? sc->dns.name : sc->etcd.prefix);
        char at[40];
        rfc3339_ms(at, sizeof at, st->last_success_unix_ms);
        cJSON_AddItemToObject(o, "last_success", st->last_success_unix_ms > 0
                                                     ? cJSON_CreateString(at)
                                                     : cJSON_CreateNull());
        cJSON *e = st->last_error_unix_ms > 0 ? cJSON_AddObjectToObject(o, "last_error") : NULL;
        if (e) {
            rfc3339_ms(at, sizeof at, st->last_error_unix_ms);
            cJSON_AddStringToObject(e, "message", st->last_error);
            cJSON_AddStringToObject(e, "at", at);
        } else {
            cJSON_AddNullToObject(o, "last_error");
        }
        cJSON_AddNumberToObject(o, "endpoints", st->endpoints);
        cJSON_AddNumberToObject(o, "updates", (double)st->updates);
        cJSON_AddNumberToObject(o, "errors", (double)st->errors);
    }
    return d;
}

static cJSON *service_json(const struct service_rt *s, int64_t now_ms)
{
    const struct service_conf *sc = s->conf;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", sc->name);
    cJSON_AddStringToObject(j, "load_balancer", lb_policy_name(sc->load_balancer));
    cJSON_AddNumberToObject(j, "timeout_ms", (double)sc->timeout_ms);
    cJSON_AddNumberToObject(j, "connect_timeout_ms", (double)sc->connect_timeout_ms);
    cJSON_AddNumberToObject(j, "deadline_ms", (double)sc->deadline_ms);
    cJSON_AddNumberToObject(j, "max_inflight", (double)sc->max_inflight);
    cJSON_AddNumberToObject(j, "inflight", s->state->inflight);
    cJSON_AddNumberToObject(j, "retries", (double)s->state->retries);
    cJSON_AddItemToObject(j, "retry", retry_json(&sc->retry));
    cJSON_AddItemToObject(j, "circuit_breaker", breaker_json(&sc->breaker));
    if (sc->health.enabled) {
        cJSON *h = cJSON_AddObjectToObject(j, "health_check");
        cJSON_AddStringToObject(h, "path", sc->health_path);
        cJSON_AddNumberToObject(h, "interval_ms", (double)sc->health.interval_ms);
        cJSON_AddNumberToObject(h, "timeout_ms", (double)sc->health.timeout_ms);
        cJSON_AddNumberToObject(h, "healthy_threshold", sc->health.healthy_threshold);
        cJSON_AddNumberToObject(h, "unhealthy_threshold", sc->health.unhealthy_threshold);
    } else {
        cJSON_AddNullToObject(j, "health_check");
    }
    if (sc->outlier.enabled) {
        cJSON *o = cJSON_AddObjectToObject(j, "outlier");
        cJSON_AddNumberToObject(o, "consecutive_failures", sc->outlier.consecutive_failures);
        cJSON_AddNumberToObject(o, "base_ejection_time_ms", (double)sc->outlier.base_ejection_ms);
        cJSON_AddNumberToObject(o, "max_ejection_percent", sc->outlier.max_ejection_percent);
    } else {
        cJSON_AddNullToObject(j, "outlier");
    }
    cJSON_AddNumberToObject(j, "panic_threshold_percent", sc->panic_threshold);
    cJSON_AddBoolToObject(j, "panic", s->state->panic.active);
    cJSON_AddNumberToObject(j, "slow_start_ms", (double)sc->slow_start_ms);
    cJSON_AddItemToObject(j, "discovery", discovery_json(s));
    cJSON *eps = cJSON_AddArrayToObject(j, "endpoints");
    for (size_t i = 0; i < s->n_endpoints; i++)
        cJSON_AddItemToArray(eps, endpoint_json(s, i, now_ms));
    return j;
}

/* Make OPEN -> HALF_OPEN visible now even if the recovery timer has not run yet. */
static void tick_all(struct admin *a, struct runtime *rt)
{
    int64_t now = loop_now_ms(a->loop);
    for (size_t i = 0; i < rt->n_services; i++)
        for (size_t j = 0; j < rt->services[i].n_endpoints; j++) {
            endpoint_tick(rt->services[i].endpoints[j], now);
            endpoint_eject_tick(rt->services[i].endpoints[j], now);
        }
}

/* ---- routes ------------------------------------------------------------------------------- */

static struct runtime *current(struct admin *a)
{
    return a->hooks.current ? a->hooks.current(a->hooks.arg) : NULL;
}

static enum MHD_Result get_metrics(struct admin *a, struct MHD_Connection *c)
{
    struct runtime *rt = current(a);
    size_t len = 0;
    if (rt)
        tick_all(a, rt);
    char *text = metrics_render(rt, &len);
    if (!text)
        return queue_error(a, c, 500, "internal_error", "out of memory", NULL);
    return queue_body(a, c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}

static enum MHD_Result get_services(struct admin *a, struct MHD_Connection *c)
{
    struct runtime *rt = current(a);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "services");
    if (rt) {
        tick_all(a, rt);
        for (size_t i = 0; i < rt->n_services; i++)
            cJSON_AddItemToArray(arr, service_json(&rt->services[i], loop_now_ms(a->loop)));
    }
    return queue_json(a, c, 200, root, NULL);
}

static enum MHD_Result post_reload(struct admin *a, struct MHD_Connection *c)
{
    char **errors = NULL;
    size_t n_errors = 0;
    if (!a->hooks.reload)
        return queue_error(a, c, 501, "not_implemented", "reload is not available", NULL);
    int rc = a->hooks.reload(a->hooks.arg, &errors, &n_errors);
    /* a may be retiring now (admin-listen re-bound): it still answers this request */
    if (rc == 0) {
        for (size_t i = 0; i < n_errors; i++)
            free(errors[i]);
        free(errors);
        cJSON *j = status_json("reloaded");
        struct runtime *rt = current(a);
        cJSON_AddNumberToObject(j, "services", rt ? (double)rt->n_services : 0);
        return queue_json(a, c, 200, j, NULL);
    }
    cJSON *root =
        error_json("invalid_config",
                   "the configuration was not reloaded; the previous one stays in effect", 422);
    cJSON *list = cJSON_AddArrayToObject(cJSON_GetObjectItemCaseSensitive(root, "error"), "errors");
    for (size_t i = 0; i < n_errors; i++) {
        cJSON_AddItemToArray(list, cJSON_CreateString(errors[i] ? errors[i] : ""));
        free(errors[i]);
    }
    free(errors);
    return queue_json(a, c, 422, root, NULL);
}

/* "<service>/endpoints/<index>/reset" after "/v1/services/"; false when not that shape. */
static bool parse_reset_path(const char *p, const char **svc, size_t *svc_len, const char **index,
                             size_t *index_len)
{
    const char *slash = strchr(p, '/');
    if (!slash || slash == p || strncmp(slash, "/endpoints/", 11) != 0)
        return false;
    *svc = p;
    *svc_len = (size_t)(slash - p);
    const char *i = slash + 11;
    const char *end = strchr(i, '/');
    if (!end || end == i || strcmp(end, "/reset") != 0)
        return false;
    *index = i;
    *index_len = (size_t)(end - i);
    return true;
}

static enum MHD_Result post_reset(struct admin *a, struct MHD_Connection *c, const char *svc,
                                  size_t svc_len, const char *index, size_t index_len)
{
    struct runtime *rt = current(a);
    struct service_rt *s = rt ? runtime_find(rt, svc, svc_len) : NULL;
    if (!s)
        return queue_error(a, c, 404, "unknown_service", "no service of that name", NULL);
    size_t i = 0;
    bool ok = index_len > 0 && index_len <= 9;
    for (size_t k = 0; ok && k < index_len; k++) {
        if (index[k] < '0' || index[k] > '9')
            ok = false;
        else
            i = i * 10 + (size_t)(index[k] - '0');
    }
    if (!ok || i >= s->n_endpoints)
        return queue_error(a, c, 404, "unknown_endpoint",
                           "the service has no endpoint of that index", NULL);
    struct endpoint_rt *ep = s->endpoints[i];
    endpoint_reset(ep);
    log_info("admin: circuit breaker reset service=%s endpoint=%s", ep->service_name, ep->url);
    return queue_json(a, c, 200, endpoint_json(s, i, loop_now_ms(a->loop)), NULL);
}

/* The page holds no data (it reads the API, with the token, like any client), so it is
 * served without one; it may load nothing from elsewhere and not be framed. */
static enum MHD_Result get_dashboard(struct admin *a, struct MHD_Connection *c)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        dashboard_html_len, (void *)dashboard_html, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
                            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (a->retiring)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result not_allowed(struct admin *a, struct MHD_Connection *c, const char *allow)
{
    const char *const h[] = {"Allow", allow, NULL};
    return queue_error(a, c, 405, "method_not_allowed", "method not allowed on this path", h);
}

/* ---- authorization ------------------------------------------------------------------------ */

/* Compare the presented token with the expected one without an early exit: the time
 * depends on the length of what was presented, never on where the first difference is. */
static bool token_equal(const char *expected, const char *given)
{
    size_t n = strlen(expected), m = strlen(given);
    size_t diff = n ^ m;
    for (size_t i = 0; i < m; i++) {
        unsigned char e = n ? (unsigned char)expected[i % n] : 0;
        diff |= (size_t)((unsigned char)given[i] ^ e);
    }
    return diff == 0;
}

static bool authorized(const struct admin *a, struct MHD_Connection *c)
{
    if (!a->token)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return token_equal(a->token, h);
}

/* ---- origin of a mutating request --------------------------------------------------------- */

/* localhost, 127.0.0.0/8, ::1, or the listener's own (not wildcard) address. */
static bool host_is_own(const struct admin *a, const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        if ((ntohl(v4.s_addr) >> 24) == 127)
            return true;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->own;
        return a->own.ss_family == AF_INET && sin->sin_addr.s_addr != htonl(INADDR_ANY) &&
               sin->sin_addr.s_addr == v4.s_addr;
    }
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6))
            return true;
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->own;
        return a->own.ss_family == AF_INET6 && !IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) &&
               memcmp(&sin6->sin6_addr, &v6, sizeof v6) == 0;
    }
    return false;
}

/* Is the page that sent this request one of the listener's own? http:// and the listener's
 * port with an own host (an SSH tunnel to the same port keeps working); or, through a
 * forwarder (a tunnel to another port, a unix socket, which has no port), the very origin
 * the browser asked for (Origin == Host) when its host is own or a token is required: a
 * DNS-rebound name is neither. */
static bool origin_is_own(const struct admin *a, struct MHD_Connection *c, const char *origin)
{
    char host[256], req_host[256], authority[300];
    int port, req_port;
    if (!http_origin_parse(origin, host, sizeof host, &port))
        return false; /* "null", https://, a path... */
    if (a->own.ss_family != AF_UNIX && port == a->own_port && host_is_own(a, host))
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (!h || snprintf(authority, sizeof authority, "http://%s", h) >= (int)sizeof authority ||
        !http_origin_parse(authority, req_host, sizeof req_host, &req_port))
        return false;
    return strcasecmp(host, req_host) == 0 && port == req_port &&
           (a->token || host_is_own(a, host));
}

/* A POST from a web page elsewhere (a plain HTML form needs no script and no CORS) must not
 * drive the API through the operator's browser. No Origin: judged as before. */
static bool cross_origin(const struct admin *a, struct MHD_Connection *c)
{
    const char *site = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-Fetch-Site");
    if (site && strcasecmp(site, "cross-site") == 0)
        return true;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    return origin && !origin_is_own(a, c, origin);
}

/* ---- MHD ------------------------------------------------------------------------------------ */

static enum MHD_Result dispatch(struct admin *a, struct MHD_Connection *c, const char *url,
                                const char *method)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;

    if (strcmp(url, "/") == 0 && get)
        return get_dashboard(a, c); /* the page's shell: no data, no token needed */
    if (!authorized(a, c)) {
        const char *const h[] = {"WWW-Authenticate", "Bearer", NULL};
        return queue_error(a, c, 401, "unauthorized", "a valid bearer token is required", h);
    }
    if (post && cross_origin(a, c))
        return queue_error(a, c, 403, "forbidden",
                           "a mutating request from another origin is refused", NULL);
    if (strcmp(url, "/") == 0)
        return not_allowed(a, c, "GET, HEAD");
    if (strcmp(url, "/healthz") == 0) {
        if (!get)
            return not_allowed(a, c, "GET, HEAD");
        return queue_json(a, c, 200, status_json("ok"), NULL);
    }
    if (strcmp(url, "/readyz") == 0) {
        if (!get)
            return not_allowed(a, c, "GET, HEAD");
        bool ready = a->hooks.ready ? a->hooks.ready(a->hooks.arg) : true;
        return queue_json(a, c, ready ? 200 : 503, status_json(ready ? "ready" : "not ready"),
                          NULL);
    }
    if (strcmp(url, "/metrics") == 0) {
        if (!get)
            return not_allowed(a, c, "GET, HEAD");
        return get_metrics(a, c);
    }
    if (strcmp(url, "/v1/services") == 0) {
        if (!get)
            return not_allowed(a, c, "GET, HEAD");
        return get_services(a, c);
    }
    if (strcmp(url, "/v1/reload") == 0) {
        if (!post)
            return not_allowed(a, c, "POST");
        return post_reload(a, c);
    }
    const char *svc, *index;
    size_t svc_len, index_len;
    if (strncmp(url, "/v1/services/", 13) == 0 &&
        parse_reset_path(url + 13, &svc, &svc_len, &index, &index_len)) {
        if (!post)
            return not_allowed(a, c, "POST");
        return post_reset(a, c, svc, svc_len, index, index_len);
    }
    return queue_error(a, c, 404, "not_found", "no such admin resource", NULL);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    static int seen; /* marks a request whose first call is done */
    struct admin *a = cls;

    if (!*con_cls) {
        *con_cls = &seen;
        return MHD_YES; /* answer on a later call: keeps the connection alive */
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* no admin route takes a body */
        return MHD_YES;
    }
    return dispatch(a, c, url, method);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    if (!log_enabled(LOG_LEVEL_DEBUG))
        return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    log_debug("admin libmicrohttpd: %s", buf);
}

static void finish(struct admin *a)
{
    loop_io_del(a->loop, &a->mhd_io);
    loop_timer_stop(a->loop, &a->mhd_timer);
    if (a->mhd)
        MHD_stop_daemon(a->mhd); /* closes the listen socket unless quiesced */
    else if (a->listen_fd >= 0)
        close(a->listen_fd);
    a->mhd = NULL;
    a->listen_fd = -1;
    free(a->token);
    loop_defer_free(a->loop, a); /* a pending event of this batch may still name mhd_io */
}

static void unlink_retired(struct admin *a)
{
    for (struct admin **pp = &retired; *pp; pp = &(*pp)->next_retired)
        if (*pp == a) {
            *pp = a->next_retired;
            return;
        }
}

static void run(struct admin *a)
{
    MHD_UNSIGNED_LONG_LONG to;

    a->in_run++;
    MHD_run(a->mhd);
    a->in_run--;
    if (a->retiring) {
        const union MHD_DaemonInfo *di =
            MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!di || di->num_connections == 0 || loop_now_ms(a->loop) >= a->retire_deadline_ms) {
            unlink_retired(a);
            finish(a);
            return;
        }
        int64_t wait = 50;
        if (MHD_get_timeout(a->mhd, &to) == MHD_YES && (int64_t)to < wait)
            wait = (int64_t)to;
        loop_timer_start(a->loop, &a->mhd_timer, wait);
        return;
    }
    if (MHD_get_timeout(a->mhd, &to) == MHD_YES)
        loop_timer_start(a->loop, &a->mhd_timer, (int64_t)to);
    else
        loop_timer_stop(a->loop, &a->mhd_timer);
}

static void on_mhd_io(void *arg, uint32_t events)
{
    run(arg);
}

static void on_mhd_timer(void *arg)
{
    run(arg);
}

/* ---- the interface ----------------------------------------------------------------------- */

struct admin *admin_start(struct loop *loop, const struct listen_addr *la, const char *token,
                          const struct admin_hooks *hooks)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a) {
        log_error("admin: out of memory");
        return NULL;
    }
    a->loop = loop;
    a->hooks = *hooks;
    a->listen_fd = -1;
    loop_timer_init(&a->mhd_timer, on_mhd_timer, a);
    if (token && !(a->token = strdup(token)))
        goto fail;
    a->listen_fd = listen_open(la, false, a->bound, sizeof a->bound);
    if (a->listen_fd < 0)
        goto fail;
    socklen_t own_len = sizeof a->own;
    if (getsockname(a->listen_fd, (struct sockaddr *)&a->own, &own_len) != 0)
        a->own.ss_family = AF_UNIX; /* unknown: only Origin == Host can be own */
    if (a->own.ss_family == AF_INET)
        a->own_port = ntohs(((struct sockaddr_in *)&a->own)->sin_port);
    else if (a->own.ss_family == AF_INET6)
        a->own_port = ntohs(((struct sockaddr_in6 *)&a->own)->sin6_port);
    listen_file_note(&a->file, la);
    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_LISTEN_SOCKET, a->listen_fd, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, ADMIN_CONNECTION_LIMIT, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, ADMIN_IDLE_TIMEOUT_S, NULL},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, a},
        {MHD_OPTION_END, 0, NULL},
    };
    a->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_access, a,
                              MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    if (!a->mhd) {
        log_error("cannot start the admin API on %s", a->bound);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di || loop_io_add(loop, &a->mhd_io, di->epoll_fd, EPOLLIN, on_mhd_io, a) != 0) {
        log_error("cannot watch the admin API's epoll fd");
        goto fail;
    }
    loop_timer_start(loop, &a->mhd_timer, 0);
    log_info("admin listening on %s", a->bound);
    return a;
fail:
    if (a->mhd)
        MHD_stop_daemon(a->mhd);
    else if (a->listen_fd >= 0)
        close(a->listen_fd);
    free(a->token);
    free(a);
    return NULL;
}

void admin_set_token(struct admin *a, const char *token)
{
    char *copy = token ? strdup(token) : NULL;
    if (token && !copy) {
        log_error("admin: out of memory replacing the token; keeping the old one");
        return;
    }
    free(a->token);
    a->token = copy;
}

void admin_stop(struct admin *a)
{
    /* finish daemons retired earlier (at shutdown their timers may never have run) */
    while (retired && retired != a) {
        struct admin *r = retired;
        if (r->in_run)
            break;
        retired = r->next_retired;
        finish(r);
    }
    if (!a)
        return;
    listen_file_unlink(&a->file); /* unless another socket has replaced it since */
    if (!a->in_run) {
        finish(a);
        return;
    }
    /* called from our own handler (a reload re-binding admin-listen): stop listening now,
     * answer what is in progress, and stop after MHD_run returns */
    if (a->retiring)
        return;
    a->retiring = true;
    a->retire_deadline_ms = loop_now_ms(a->loop) + RETIRE_MAX_MS;
    MHD_socket fd = MHD_quiesce_daemon(a->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    a->listen_fd = -1;
    a->next_retired = retired;
    retired = a;
}
