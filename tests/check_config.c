/*
 * check_config.c - the configuration loader (SPEC 2) and --dump-config.
 *
 * Fixtures live in tests/data/ (found through TOP_SRCDIR); layering cases
 * (includes, profiles) build their files in a fresh mkdtemp() directory.
 * Error messages are asserted as exact "FILE:LINE:COL: message" strings, and
 * a bad file must report every one of its errors, not only the first.
 * The environment is always passed explicitly (config_options.env).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define DATA TOP_SRCDIR "/tests/data/"

static char *const no_env[] = {NULL};

/* ---- helpers ------------------------------------------------------------------------- */

static struct config *load_full(const char *path, const char *profiles, const char *level,
                                char *const *env, struct config_messages *m)
{
    struct config_options o = {path, profiles, level, env != NULL ? env : no_env};
    return config_load(&o, m);
}

static struct config *load(const char *path, struct config_messages *m)
{
    return load_full(path, NULL, NULL, NULL, m);
}

static struct config *load_env(const char *path, char *const *env, struct config_messages *m)
{
    return load_full(path, NULL, NULL, env, m);
}

static void print_msgs(const char *what, char **v, size_t n)
{
    fprintf(stderr, "%s (%zu):\n", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "  %s\n", v[i]);
}

static bool has(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* Exactly these messages (in any order). */
static void expect_exact(char **v, size_t n, const char *const *want, size_t n_want,
                         const char *what)
{
    bool ok = n == n_want;
    for (size_t i = 0; i < n_want; i++)
        ok = ok && has(v, n, want[i]);
    if (!ok) {
        print_msgs(what, v, n);
        for (size_t i = 0; i < n_want; i++)
            if (!has(v, n, want[i]))
                fprintf(stderr, "  MISSING: %s\n", want[i]);
    }
    ck_assert_msg(ok, "%s differ: got %zu, want %zu (see stderr)", what, n, n_want);
}

#define EXPECT_ERRORS(m, ...)                                                                      \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        expect_exact((m)->errors, (m)->n_errors, want_, sizeof(want_) / sizeof(want_[0]),          \
                     "errors");                                                                    \
    } while (0)

#define EXPECT_WARNINGS(m, ...)                                                                    \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        expect_exact((m)->warnings, (m)->n_warnings, want_, sizeof(want_) / sizeof(want_[0]),      \
                     "warnings");                                                                  \
    } while (0)

static void expect_ok(const struct config *cfg, struct config_messages *m)
{
    if (cfg == NULL || m->n_errors > 0)
        print_msgs("unexpected errors", m->errors, m->n_errors);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_uint_eq(m->n_errors, 0);
}

static void expect_one_error(const char *path, const char *want)
{
    struct config_messages m;
    struct config *cfg = load(path, &m);
    ck_assert_ptr_null(cfg);
    expect_exact(m.errors, m.n_errors, &want, 1, "errors");
    config_messages_free(&m);
}

static const struct service_conf *svc(const struct config *cfg, const char *name)
{
    const struct service_conf *s = config_find_service(cfg, name, strlen(name));
    ck_assert_msg(s != NULL, "no service '%s'", name);
    return s;
}

static const char *header(const struct service_conf *s, const char *name)
{
    for (size_t i = 0; i < s->n_headers; i++)
        if (strcmp(s->headers[i].name, name) == 0)
            return s->headers[i].value;
    return NULL;
}

static bool status_set(const struct retry_policy *p, int status)
{
    return (p->retry_on_status[status / 64] >> (status % 64)) & 1;
}

static int n_statuses(const struct retry_policy *p)
{
    int n = 0;
    for (int s = 0; s < RETRY_STATUS_WORDS * 64; s++)
        n += status_set(p, s);
    return n;
}

static void assert_default_retry(const struct retry_policy *p)
{
    ck_assert_int_eq(p->max_attempts, 3);
    ck_assert_int_eq(p->base_delay_ms, 1000);
    ck_assert_int_eq(p->max_delay_ms, 30000);
    ck_assert_int_eq(p->jitter, JITTER_NONE);
    ck_assert_uint_eq(p->retry_on, RETRY_ON_CONNECT_FAILURE | RETRY_ON_RESET | RETRY_ON_TIMEOUT);
    ck_assert_int_eq(n_statuses(p), 4);
    ck_assert(status_set(p, 429) && status_set(p, 502) && status_set(p, 503) && status_set(p, 504));
    ck_assert(!p->retry_non_idempotent);
    ck_assert(p->honor_retry_after);
    ck_assert(!p->budget_enabled);
}

/* A scratch directory for layering cases. */
static char tmp[64];

static void tmp_make(void)
{
    strcpy(tmp, "/tmp/ahoyd-check-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void tmp_remove(void)
{
    if (tmp[0] != '\0')
        nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tmp[0] = '\0';
}

/* A path inside the scratch directory (static buffers, 4 in rotation). */
static const char *tp(const char *rel)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmp, rel);
    return buf[k];
}

static void put(const char *rel, const char *content)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmp, rel);
    for (char *p = path + strlen(tmp) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        ck_assert(mkdir(path, 0700) == 0 || errno == EEXIST);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
}

/* Dump to a string. Returns config_dump()'s result. */
static int dump_to_string(const char *path, char *const *env, char **out, struct config_messages *m)
{
    struct config_options o = {path, NULL, NULL, env != NULL ? env : no_env};
    size_t len = 0;
    FILE *f = open_memstream(out, &len);
    ck_assert_ptr_nonnull(f);
    int rc = config_dump(&o, f, m);
    fclose(f);
    return rc;
}

/* ---- defaults and good files ------------------------------------------------------------ */

START_TEST(minimal_defaults)
{
    struct config_messages m;
    struct config *cfg = load(DATA "good-minimal.yaml", &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(m.n_warnings, 0);
    ck_assert_str_eq(cfg->path, DATA "good-minimal.yaml");
    ck_assert_uint_eq(cfg->n_files, 1);
    ck_assert_str_eq(cfg->files[0], DATA "good-minimal.yaml");

    ck_assert_int_eq(cfg->listen.kind, LISTEN_INET);
    ck_assert_str_eq(cfg->listen.text, "127.0.0.1:8080");
    ck_assert_str_eq(cfg->listen.host, "127.0.0.1");
    ck_assert_int_eq(cfg->listen.port, 8080);
    ck_assert(cfg->listen.loopback);
    ck_assert_int_eq(cfg->admin_listen.kind, LISTEN_INET);
    ck_assert_str_eq(cfg->admin_listen.host, "127.0.0.1");
    ck_assert_int_eq(cfg->admin_listen.port, 9901);
    ck_assert(cfg->admin_listen.loopback);
    ck_assert_ptr_null(cfg->admin_token);
    ck_assert_uint_eq(cfg->n_include, 0);
    ck_assert_uint_eq(cfg->n_profiles, 0);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
    ck_assert_str_eq(cfg->access_log, "stderr");
    ck_assert_int_eq(cfg->access_log_format, ACCESS_LOG_LOGFMT);
    ck_assert_int_eq(cfg->max_connections, 4096);
    ck_assert_int_eq(cfg->workers, 1);
    ck_assert_uint_eq(cfg->max_request_body, 8u << 20);
    ck_assert_uint_eq(cfg->max_response_body, 0);
    ck_assert_uint_eq(cfg->max_header_bytes, 16u << 10);
    ck_assert_uint_eq(cfg->max_response_header_bytes, 16u << 10);
    ck_assert_int_eq(cfg->request_timeout_ms, 30000);
    ck_assert_int_eq(cfg->idle_timeout_ms, 60000);
    ck_assert_int_eq(cfg->shutdown_timeout_ms, 10000);
    ck_assert_int_eq(cfg->drain_delay_ms, 0);
    ck_assert_int_eq(cfg->default_timeout_ms, 30000);
    ck_assert_int_eq(cfg->default_connect_timeout_ms, 5000);
    ck_assert_int_eq(cfg->default_deadline_ms, 0);
    ck_assert(cfg->breaker.enabled);
    ck_assert_int_eq(cfg->breaker.failure_threshold, 5);
    ck_assert_int_eq(cfg->breaker.recovery_timeout_ms, 30000);
    ck_assert_int_eq(cfg->breaker.half_open_max_calls, 1);
    assert_default_retry(&cfg->retry);

    ck_assert_uint_eq(cfg->n_services, 1);
    const struct service_conf *s = svc(cfg, "payments");
    ck_assert_uint_eq(s->n_endpoints, 1);
    ck_assert_str_eq(s->endpoints[0].url, "http://127.0.0.1:9001/api/");
    ck_assert_str_eq(s->endpoints[0].origin, "http://127.0.0.1:9001");
    ck_assert_str_eq(s->endpoints[0].host, "127.0.0.1");
    /* kept as written: SPEC 3.1 forwards "/svc" to the base path exactly */
    ck_assert_str_eq(s->endpoints[0].base_path, "/api/");
    ck_assert_int_eq(s->endpoints[0].port, 9001);
    ck_assert(!s->endpoints[0].tls);
    ck_assert_int_eq(s->endpoints[0].weight, 1);
    ck_assert_int_eq(s->load_balancer, LB_ROUND_ROBIN);
    ck_assert_int_eq(s->timeout_ms, 30000);
    ck_assert_int_eq(s->connect_timeout_ms, 5000);
    ck_assert_int_eq(s->deadline_ms, 0);
    ck_assert_int_eq(s->read_timeout_ms, 0);
    assert_default_retry(&s->retry);
    ck_assert(s->breaker.enabled);
    ck_assert_int_eq(s->breaker.failure_threshold, 5);
    ck_assert_uint_eq(s->n_headers, 0);
    ck_assert_int_eq(s->max_inflight, 0);
    ck_assert_uint_eq(s->n_methods, 0);
    ck_assert(s->tls.verify);
    ck_assert_ptr_null(s->tls.ca_file);
    ck_assert_ptr_null(s->tls.cert_file);
    ck_assert_ptr_null(s->tls.key_file);
    ck_assert_ptr_null(s->tls.server_name);
    ck_assert_ptr_null(config_find_service(cfg, "pay", 3));
    ck_assert_ptr_nonnull(config_find_service(cfg, "payments/x", 8));
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(empty_file_is_all_defaults)
{
    struct config_messages m;
    struct config *cfg = load(DATA "good-empty.yaml", &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(cfg->n_services, 0);
    ck_assert_int_eq(cfg->listen.port, 8080);
    assert_default_retry(&cfg->retry);
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(full_spec_example)
{
    struct config_messages m;
    struct config *cfg = load(DATA "good-full.yaml", &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(cfg->n_services, 2);
    ck_assert_str_eq(cfg->services[0].name, "payments"); /* file order */
    ck_assert_str_eq(cfg->services[1].name, "ledger");

    const struct service_conf *p = svc(cfg, "payments");
    ck_assert_int_eq(p->timeout_ms, 2000);
    ck_assert_int_eq(p->connect_timeout_ms, 500);
    ck_assert_int_eq(p->deadline_ms, 10000);
    ck_assert_int_eq(p->retry.max_attempts, 3);
    ck_assert_int_eq(p->retry.base_delay_ms, 200);  /* shortcut */
    ck_assert_int_eq(p->retry.max_delay_ms, 30000); /* global */
    ck_assert(p->breaker.enabled);
    ck_assert_int_eq(p->breaker.failure_threshold, 3);
    ck_assert_int_eq(p->breaker.recovery_timeout_ms, 10000);
    ck_assert_int_eq(p->breaker.half_open_max_calls, 1);
    ck_assert_uint_eq(p->n_headers, 1);
    ck_assert_str_eq(p->headers[0].name, "X-Client");
    ck_assert_str_eq(p->headers[0].value, "ahoyd");
    ck_assert_uint_eq(p->n_methods, 5);
    ck_assert_str_eq(p->methods[0].name, "get_payment");
    ck_assert_str_eq(p->methods[0].verb, "GET");
    ck_assert_str_eq(p->methods[0].path, "/payments/{payment_id}");
    ck_assert_str_eq(p->methods[0].file, DATA "good-full.yaml");
    ck_assert_int_eq(p->methods[0].line, 52);
    ck_assert_int_eq(p->methods[0].col, 24);
    ck_assert_str_eq(p->methods[2].verb, "POST");
    ck_assert_str_eq(p->methods[2].path, "/payments");
    ck_assert_str_eq(p->methods[4].name, "delete_payment");
    ck_assert_str_eq(p->methods[4].verb, "DELETE");

    const struct service_conf *l = svc(cfg, "ledger");
    ck_assert_uint_eq(l->n_endpoints, 2);
    ck_assert_str_eq(l->endpoints[0].url, "http://10.0.0.5:8080/api");
    ck_assert_int_eq(l->endpoints[0].weight, 1);
    ck_assert_str_eq(l->endpoints[1].url, "http://10.0.0.6:8080/api");
    ck_assert_str_eq(l->endpoints[1].origin, "http://10.0.0.6:8080");
    ck_assert_str_eq(l->endpoints[1].base_path, "/api");
    ck_assert_int_eq(l->endpoints[1].weight, 2);
    ck_assert_int_eq(l->timeout_ms, 30000);
    ck_assert_int_eq(l->retry.base_delay_ms, 1000);
    ck_assert_int_eq(l->breaker.failure_threshold, 5);
    ck_assert(l->tls.verify);
    ck_assert_ptr_null(l->tls.ca_file);
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(other_accepted_forms)
{
    struct config_messages m;
    struct config *cfg = load(DATA "good-forms.yaml", &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->listen.kind, LISTEN_INET);
    ck_assert_str_eq(cfg->listen.host, "::1");
    ck_assert_int_eq(cfg->listen.port, 0);
    ck_assert(cfg->listen.loopback);
    ck_assert_int_eq(cfg->admin_listen.kind, LISTEN_OFF);
    ck_assert_str_eq(cfg->access_log, "off"); /* false means off where off is accepted */
    ck_assert_int_eq(cfg->access_log_format, ACCESS_LOG_JSON);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
    ck_assert_uint_eq(cfg->max_request_body, 1024);
    ck_assert_uint_eq(cfg->max_response_body, UINT64_C(2) << 30);
    ck_assert_uint_eq(cfg->max_header_bytes, 16384);
    ck_assert_uint_eq(cfg->max_response_header_bytes, 65536);
    ck_assert_int_eq(cfg->request_timeout_ms, 0);
    ck_assert_int_eq(cfg->idle_timeout_ms, 90000);
    ck_assert_int_eq(cfg->shutdown_timeout_ms, 250);
    ck_assert_int_eq(cfg->default_timeout_ms, 10000);
    ck_assert_int_eq(cfg->default_connect_timeout_ms, 500);
    ck_assert_int_eq(cfg->default_deadline_ms, 3600000);
    ck_assert_int_eq(cfg->breaker.failure_threshold, 7);
    ck_assert_int_eq(cfg->breaker.recovery_timeout_ms, 120000);
    ck_assert_int_eq(cfg->breaker.half_open_max_calls, 3);
    ck_assert_int_eq(cfg->retry.max_attempts, 4);
    ck_assert_int_eq(cfg->retry.jitter, JITTER_FULL);
    ck_assert_uint_eq(cfg->retry.retry_on, RETRY_ON_5XX | RETRY_ON_GATEWAY_ERROR);
    ck_assert_int_eq(n_statuses(&cfg->retry), 1);
    ck_assert(status_set(&cfg->retry, 418));
    ck_assert(cfg->retry.retry_non_idempotent);
    ck_assert(!cfg->retry.honor_retry_after);
    ck_assert(cfg->retry.budget_enabled);
    ck_assert(cfg->retry.budget_ratio == 0.25);
    ck_assert(cfg->retry.budget_min_per_second == 2.5);

    const struct service_conf *v6 = svc(cfg, "v6");
    ck_assert_uint_eq(v6->n_endpoints, 2);
    ck_assert_str_eq(v6->endpoints[0].host, "[::1]");
    ck_assert_str_eq(v6->endpoints[0].origin, "https://[::1]:8443");
    ck_assert_int_eq(v6->endpoints[0].port, 8443);
    ck_assert(v6->endpoints[0].tls);
    ck_assert_str_eq(v6->endpoints[0].base_path, "");
    ck_assert_str_eq(v6->endpoints[1].host, "LOCALHOST");
    ck_assert_str_eq(v6->endpoints[1].base_path, "/base/path//");
    ck_assert_int_eq(v6->endpoints[1].weight, 5);
    ck_assert_int_eq(v6->load_balancer, LB_LEAST_REQUEST);
    ck_assert_int_eq(v6->retry.max_attempts, 4); /* retry: true = the globals */
    ck_assert_int_eq(v6->retry.jitter, JITTER_FULL);
    ck_assert(v6->retry.budget_enabled);
    ck_assert(v6->breaker.enabled);
    ck_assert_int_eq(v6->breaker.half_open_max_calls, 2);
    ck_assert_int_eq(v6->breaker.failure_threshold, 7);
    ck_assert(!v6->tls.verify);
    ck_assert_str_eq(v6->tls.ca_file, DATA "ca.pem"); /* relative to the main file */
    ck_assert_str_eq(v6->tls.cert_file, "/etc/ahoyd/c.pem");
    ck_assert_ptr_null(v6->tls.key_file);
    ck_assert_str_eq(v6->tls.server_name, "api.internal");

    const struct service_conf *p2 = svc(cfg, "pool-2");
    ck_assert_str_eq(p2->endpoints[0].origin, "https://api.example.com");
    ck_assert_int_eq(p2->endpoints[0].port, 443);
    ck_assert(p2->endpoints[0].tls);
    ck_assert_int_eq(p2->load_balancer, LB_RANDOM);
    ck_assert(!p2->retry.budget_enabled); /* opts out of the global budget */
    ck_assert_int_eq(p2->retry.jitter, JITTER_EQUAL);
    ck_assert_uint_eq(p2->retry.retry_on, 0);
    ck_assert_int_eq(n_statuses(&p2->retry), 0);
    ck_assert_int_eq(p2->retry.max_attempts, 4);
    ck_assert(!p2->breaker.enabled);
    ck_assert_int_eq(p2->max_inflight, 100);

    const struct service_conf *u = svc(cfg, "unix-socket-user");
    ck_assert_int_eq(u->retry.max_attempts, 1); /* retry: false = one attempt */
    ck_assert(u->breaker.enabled);
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(unix_listen)
{
    struct config_messages m;
    struct config *cfg = load(DATA "good-unix.yaml", &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->listen.kind, LISTEN_UNIX);
    ck_assert_str_eq(cfg->listen.path, "/run/ahoyd/ahoyd.sock");
    ck_assert_str_eq(cfg->listen.text, "unix:/run/ahoyd/ahoyd.sock");
    ck_assert(cfg->listen.loopback);
    ck_assert_int_eq(cfg->admin_listen.kind, LISTEN_UNIX);
    ck_assert_ptr_null(cfg->admin_token); /* a unix socket counts as local */
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(missing_main_file)
{
    expect_one_error(DATA "no-such-file.yaml",
                     DATA "no-such-file.yaml: cannot open: No such file or directory");
}
END_TEST

/* ---- invalid files: every error, exactly ---------------------------------------------------- */

#define BV DATA "bad-values.yaml:"
#define EXPECTED_DURATION " (expected e.g. 250ms, 1.5s, 2m, 1h)"
#define EXPECTED_RETRY_ON                                                                          \
    " (expected connect-failure, reset, timeout, a status 100-599, 5xx or gateway-error)"

START_TEST(bad_values_all_reported)
{
    struct config_messages m;
    struct config *cfg = load(DATA "bad-values.yaml", &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(
        &m,
        BV "3:11: listen: bad address 'localhost': expected host:port, [address]:port or "
           "unix:/path",
        BV "4:17: admin-listen: bad address '[::1:9901': expected [address]:port",
        BV "5:14: log-level: expected error, warn, info or debug, got 'loud'",
        BV "6:15: access-log: expected stderr, off or an absolute path, got "
           "'relative/access.log'",
        BV "7:22: access-log-format: expected logfmt or json, got 'xml'",
        BV "8:20: max-connections: must be at least 1, got 0",
        BV "9:21: max-request-body: bad size '8XB' (expected e.g. 512, 32KiB, 8MiB, 1GiB)",
        BV "10:30: max-response-header-bytes: must be greater than 0",
        BV "11:21: max-header-bytes: bad size '-1' (expected e.g. 512, 32KiB, 8MiB, 1GiB)",
        BV "12:20: request-timeout: bad duration '10 s'" EXPECTED_DURATION,
        BV "13:17: idle-timeout: bad duration '-1'" EXPECTED_DURATION,
        BV "14:21: shutdown-timeout: expected a duration, got a map",
        BV "19:24: connect-timeout: bad duration 'abc'" EXPECTED_DURATION,
        BV "20:17: deadline: bad duration '1d'" EXPECTED_DURATION,
        BV "22:26: failure-threshold: must be at least 1, got 0",
        BV "23:25: recovery-timeout: must be greater than 0",
        BV "24:28: half-open-max-calls: must be at least 1, got 0",
        BV "26:21: max-attempts: must be at least 1, got 0",
        BV "27:19: base-delay: bad duration '1x'" EXPECTED_DURATION,
        BV "28:18: max-delay: expected a duration, got a list",
        BV "29:15: jitter: expected none, full or equal, got 'some'",
        BV "30:25: retry-on: unknown entry '6xx'" EXPECTED_RETRY_ON,
        BV "30:30: retry-on: unknown entry '99'" EXPECTED_RETRY_ON,
        BV "30:34: retry-on: unknown entry '600'" EXPECTED_RETRY_ON,
        BV "30:39: retry-on: unknown entry 'timeouts'" EXPECTED_RETRY_ON,
        BV "31:29: retry-non-idempotent: expected true or false (or yes/no, on/off), got "
           "'maybe'",
        BV "32:26: honor-retry-after: expected true or false (or yes/no, on/off), got '1'",
        BV "33:23: ratio: expected a number >= 0 like 0.2 or 10, got '-1'",
        BV "33:43: min-per-second: expected a number >= 0 like 0.2 or 10, got 'x'",
        BV "37:23: max-inflight: must be at least 0, got -5",
        BV "38:24: load-balancer: expected round-robin, random or least-request, got 'least'");
    /* sorted by position */
    ck_assert_str_eq(m.errors[0], BV "3:11: listen: bad address 'localhost': expected "
                                     "host:port, [address]:port or unix:/path");
    ck_assert(strncmp(m.errors[m.n_errors - 1], BV "38:24:", strlen(BV "38:24:")) == 0);
    config_messages_free(&m);
}
END_TEST

#define BS DATA "bad-services.yaml:"
#define HOP " is a hop-by-hop header and cannot be set"

START_TEST(bad_services_all_reported)
{
    struct config_messages m;
    struct config *cfg = load(DATA "bad-services.yaml", &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(
        &m, BS "5:7: bad service name 'Payments' (expected [a-z0-9][a-z0-9_-]*)",
        BS "7:7: service name '_internal' is reserved (names starting with '_')",
        BS "11:7: service 'neither' needs base-url, endpoints or discovery",
        BS "15:9: service 'both' has both base-url and endpoints; use one",
        BS "18:13: endpoints: bad URL 'ftp://a': the scheme must be http:// or https://",
        BS "19:13: endpoints: bad URL 'http://user:pw@a': user info (user@) is not allowed",
        BS "20:13: endpoints: bad URL 'http://a/x?y=1': a query or fragment is not allowed",
        BS "21:13: endpoints: bad URL 'http://a/#frag': a query or fragment is not allowed",
        BS "22:13: endpoints: bad URL 'http://a:0': port must be a number from 1 to 65535",
        BS "23:13: endpoints: bad URL 'http://a:65536': port must be a number from 1 to 65535",
        BS "24:13: endpoints: bad URL 'http://': missing host",
        BS "25:13: endpoints: bad URL 'http://a b': spaces, control and non-ASCII characters "
           "are not allowed",
        BS "26:37: weight: must be at least 1, got 0",
        BS "27:13: endpoints: an endpoint map needs 'url'",
        BS "27:14: unknown key 'uri'; did you mean 'url'?",
        BS "29:13: endpoints: duplicate endpoint 'http://d/ok'",
        BS "31:20: endpoints: the list is empty",
        BS "35:20: no_verb: bad method template '/payments': method must be 'VERB /path' with "
           "VERB an HTTP token",
        BS "36:20: no_path: bad method template 'GET': method must be 'VERB /path'",
        BS "37:22: bad_brace: bad method template 'GET /a/{b': unbalanced '{' in path",
        BS "38:18: query: bad method template 'GET /a?x=1': no '?' or '#' allowed in a method "
           "path",
        BS "39:21: fragment: bad method template 'GET /a#x': no '?' or '#' allowed in a "
           "method path",
        BS "41:11: methods: bad operation name 'bad-op' (expected [A-Za-z_][A-Za-z0-9_]*)",
        BS "45:11: headers: 'Connection'" HOP, BS "46:11: headers: 'Keep-Alive'" HOP,
        BS "47:11: headers: 'Proxy-Authorization'" HOP, BS "48:11: headers: 'TE'" HOP,
        BS "49:11: headers: 'Trailer'" HOP, BS "50:11: headers: 'Transfer-Encoding'" HOP,
        BS "51:11: headers: 'Upgrade'" HOP,
        BS "52:11: headers: 'Host' is managed by ahoyd and cannot be set",
        BS "53:11: headers: 'Content-Length' is managed by ahoyd and cannot be set",
        BS "54:11: headers: bad header name 'Bad Name'",
        BS "56:11: headers: header 'x-fine' is set twice",
        BS "59:16: retry: must be at least 1, got 0",
        BS "60:26: circuit-breaker: expected true, false or a map, got 'maybe'",
        BS "63:31: max-attempts: must be at least 1, got 0",
        BS "64:46: failure-threshold: must be at least 1, got 0",
        BS "64:70: half-open-max-calls: must be at least 1, got 0",
        BS "65:44: circuit-breaker-failure-threshold: sets the same field as "
           "circuit-breaker.failure-threshold at " BS "64:46");
    config_messages_free(&m);
}
END_TEST

#define BSC DATA "bad-shortcuts.yaml:"

START_TEST(shortcut_conflicts)
{
    struct config_messages m;
    struct config *cfg = load(DATA "bad-shortcuts.yaml", &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(
        &m, BSC "8:27: retry-base-delay: sets the same field as retry.base-delay at " BSC "7:29",
        BSC "12:44: circuit-breaker-failure-threshold: sets the same field as "
            "circuit-breaker.failure-threshold at " BSC "10:30",
        BSC "13:43: circuit-breaker-recovery-timeout: sets the same field as "
            "circuit-breaker.recovery-timeout at " BSC "11:29",
        BSC "18:27: retry-base-delay: cannot be used with 'retry: false' (at " BSC "16:16)",
        BSC "19:44: circuit-breaker-failure-threshold: cannot be used with "
            "'circuit-breaker: false' (at " BSC "17:26)",
        BSC "20:43: circuit-breaker-recovery-timeout: cannot be used with "
            "'circuit-breaker: false' (at " BSC "17:26)");
    config_messages_free(&m);
}
END_TEST

/* Globals < service map < shortcut, field by field. */
START_TEST(shortcut_overlay_precedence)
{
    tmp_make();
    put("main.yaml", "pyfly:\n"
                     "  client:\n"
                     "    circuit-breaker: {failure-threshold: 9, recovery-timeout: 9s,\n"
                     "                      half-open-max-calls: 9}\n"
                     "    retry: {max-attempts: 9, base-delay: 9s, max-delay: 99s}\n"
                     "    services:\n"
                     "      s:\n"
                     "        base-url: http://a\n"
                     "        retry: {max-attempts: 4, max-delay: 40s}\n"
                     "        retry-base-delay: 300ms\n"
                     "        circuit-breaker: {half-open-max-calls: 2}\n"
                     "        circuit-breaker-failure-threshold: 3\n"
                     "        circuit-breaker-recovery-timeout: 1m\n"
                     "      count:\n"
                     "        base-url: http://b\n"
                     "        retry: 7\n"
                     "        retry-base-delay: 5ms\n");
    struct config_messages m;
    struct config *cfg = load(tp("main.yaml"), &m);
    expect_ok(cfg, &m);
    const struct service_conf *s = svc(cfg, "s");
    ck_assert_int_eq(s->retry.max_attempts, 4);
    ck_assert_int_eq(s->retry.base_delay_ms, 300);
    ck_assert_int_eq(s->retry.max_delay_ms, 40000);
    ck_assert_int_eq(s->breaker.failure_threshold, 3);
    ck_assert_int_eq(s->breaker.recovery_timeout_ms, 60000);
    ck_assert_int_eq(s->breaker.half_open_max_calls, 2);
    const struct service_conf *c = svc(cfg, "count");
    ck_assert_int_eq(c->retry.max_attempts, 7);
    ck_assert_int_eq(c->retry.base_delay_ms, 5);
    ck_assert_int_eq(c->retry.max_delay_ms, 99000);
    ck_assert_int_eq(c->breaker.failure_threshold, 9);
    ck_assert_int_eq(cfg->retry.base_delay_ms, 9000);
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(unknown_keys_suggest)
{
    struct config_messages m;
    struct config *cfg = load(DATA "bad-unknown.yaml", &m);
    ck_assert_ptr_null(cfg);
#define BU DATA "bad-unknown.yaml:"
    EXPECT_ERRORS(&m, BU "3:3: unknown key 'listn'; did you mean 'listen'?",
                  BU "4:3: unknown key 'max-conections'; did you mean 'max-connections'?",
                  BU "8:7: unknown key 'failure-treshold'; did you mean 'failure-threshold'?",
                  BU "10:7: unknown key 'max-attempt'; did you mean 'max-attempts'?",
                  BU "11:16: unknown key 'ratoi'; did you mean 'ratio'?",
                  BU "14:9: unknown key 'base_url'; did you mean 'base-url'?",
                  BU "15:37: unknown key 'wieght'; did you mean 'weight'?",
                  BU "16:15: unknown key 'verfy'; did you mean 'verify'?",
                  BU "17:17: unknown key 'jiter'; did you mean 'jitter'?",
                  BU "18:9: unknown key 'completely-unrelated'",
                  BU "19:3: unknown key 'clients'; did you mean 'client'?",
                  BU "20:1: unknown key 'ahoy'; did you mean 'ahoyd'?");
    config_messages_free(&m);
}
END_TEST

START_TEST(duplicate_keys)
{
    struct config_messages m;
    struct config *cfg = load(DATA "bad-dupkeys.yaml", &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(&m, DATA "bad-dupkeys.yaml:3:3: duplicate key 'listen' (first defined at 2:3)",
                  DATA "bad-dupkeys.yaml:9:7: duplicate key 'a' (first defined at 7:7)");
    config_messages_free(&m);
}
END_TEST

START_TEST(syntax_error)
{
    expect_one_error(DATA "bad-syntax.yaml",
                     DATA "bad-syntax.yaml:4:6: YAML syntax error: did not find expected ',' "
                          "or ']' while parsing a flow sequence");
    expect_one_error(DATA "bad-toplevel.yaml",
                     DATA "bad-toplevel.yaml:1:1: the top level must be a map, not a list");
}
END_TEST

/* A syntax error stops its file only: the other files are still checked. */
START_TEST(syntax_error_other_files_checked)
{
    tmp_make();
    put("main.yaml", "ahoyd:\n  include: [conf.d/*.yaml]\n  listn: 127.0.0.1:1\n");
    put("conf.d/a.yaml", "pyfly: {client: {retry: {max-attempts: 0}}}\n");
    put("conf.d/b.yaml", "pyfly:\n  client: [\n");
    put("conf.d/c.yaml", "ahoyd:\n  log-level: chatty\n");
    struct config_messages m;
    struct config *cfg = load(tp("main.yaml"), &m);
    ck_assert_ptr_null(cfg);
    char e1[600], e2[600], e3[600], e4[600];
    snprintf(e1, sizeof(e1), "%s:3:3: unknown key 'listn'; did you mean 'listen'?",
             tp("main.yaml"));
    snprintf(e2, sizeof(e2), "%s:1:40: max-attempts: must be at least 1, got 0",
             tp("conf.d/a.yaml"));
    snprintf(e3, sizeof(e3),
             "%s:3:1: YAML syntax error: did not find expected node content while parsing a "
             "flow node",
             tp("conf.d/b.yaml"));
    snprintf(e4, sizeof(e4),
             "%s:2:14: log-level: expected error, warn, info or debug, got "
             "'chatty'",
             tp("conf.d/c.yaml"));
    const char *want[] = {e1, e2, e3, e4};
    expect_exact(m.errors, m.n_errors, want, 4, "errors");
    /* main first, then the includes in name order */
    ck_assert_str_eq(m.errors[0], e1);
    ck_assert_str_eq(m.errors[1], e2);
    ck_assert_str_eq(m.errors[2], e3);
    ck_assert_str_eq(m.errors[3], e4);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST


static void put_bytes(const char *rel, const void *bytes, size_t n)
{
    FILE *f = fopen(tp(rel), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

/* admin-token-file holding a NUL byte (UTF-16 text, a leading NUL) or nothing once its
 * final newline is dropped is an error, as is a file over 4096 bytes, reported at the key
 * (the file is read into a C string: "l\0o\0n\0g" once gave the token "l", a leading NUL an
 * empty token that any "Bearer " passed, and 4097 bytes a one-byte stack overflow). */
START_TEST(admin_token_file_contents)
{
    static const struct {
        const char *name;
        const char *bytes;
        size_t n;
        const char *error; /* NULL: loads, with the token "long" */
    } cases[] = {
        {"utf16.token", "l\0o\0n\0g\0\n\0", 10, "holds a NUL byte"},
        {"lead-nul.token", "\0long\n", 6, "holds a NUL byte"},
        {"mid-nul.token", "lo\0ng", 5, "holds a NUL byte"},
        {"only-nul.token", "\0", 1, "holds a NUL byte"},
        {"newline.token", "\n", 1, "is empty"},
        {"empty.token", "", 0, "is empty"},
        {"crlf.token", "long\r\n", 6, NULL},
        {"plain.token", "long", 4, NULL},
    };
    struct config_messages m;
    struct config *cfg;
    char yaml[700], want[900];

    tmp_make();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        put_bytes(cases[i].name, cases[i].bytes, cases[i].n);
        snprintf(yaml, sizeof(yaml), "ahoyd:\n  admin-listen: 0.0.0.0:1\n  admin-token-file: %s\n",
                 tp(cases[i].name));
        put("a.yaml", yaml);
        cfg = load(tp("a.yaml"), &m);
        if (cases[i].error == NULL) {
            expect_ok(cfg, &m);
            ck_assert_str_eq(cfg->admin_token, "long");
            config_free(cfg);
        } else {
            ck_assert_msg(cfg == NULL, "%s loaded (token '%s')", cases[i].name,
                          cfg ? cfg->admin_token : "");
            snprintf(want, sizeof(want), "%s:3:21: admin-token-file: %s %s", tp("a.yaml"),
                     tp(cases[i].name), cases[i].error);
            const char *w = want;
            expect_exact(m.errors, m.n_errors, &w, 1, "errors");
        }
        config_messages_free(&m);
    }

    /* 4096 bytes are a token; 4097 (or 100,000) bytes are too large, whatever they hold */
    static const size_t sizes[] = {4096, 4097, 4098, 100000};
    char *big = malloc(100000);
    memset(big, 'a', 100000);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        put_bytes("big.token", big, sizes[i]);
        snprintf(yaml, sizeof(yaml), "ahoyd:\n  admin-listen: 0.0.0.0:1\n  admin-token-file: %s\n",
                 tp("big.token"));
        put("a.yaml", yaml);
        cfg = load(tp("a.yaml"), &m);
        if (sizes[i] == 4096) {
            expect_ok(cfg, &m);
            ck_assert_uint_eq(strlen(cfg->admin_token), 4096);
            config_free(cfg);
        } else {
            ck_assert_msg(cfg == NULL, "a %zu-byte token file loaded", sizes[i]);
            snprintf(want, sizeof(want),
                     "%s:3:21: admin-token-file: token file %s too large (over 4096 bytes)",
                     tp("a.yaml"), tp("big.token"));
            const char *w = want;
            expect_exact(m.errors, m.n_errors, &w, 1, "errors");
        }
        config_messages_free(&m);
    }
    /* a 4096-byte token and its newline are one byte too many */
    big[4096] = '\n';
    put_bytes("big.token", big, 4097);
    cfg = load(tp("a.yaml"), &m);
    ck_assert_ptr_null(cfg);
    config_messages_free(&m);
    free(big);
    tmp_remove();
}
END_TEST
START_TEST(admin_token_rules)
{
    expect_one_error(DATA "bad-admin-public.yaml",
                     DATA "bad-admin-public.yaml:2:17: admin-listen: 0.0.0.0:9901 is not "
                          "loopback: set admin-token or admin-token-file");
    expect_one_error(DATA "bad-admin-both.yaml",
                     DATA "bad-admin-both.yaml:4:21: admin-token-file: set admin-token or "
                          "admin-token-file, not both");
    expect_one_error(DATA "bad-admin-nofile.yaml",
                     DATA "bad-admin-nofile.yaml:3:21: admin-token-file: cannot open " DATA
                          "does-not-exist.token: No such file or directory");

    struct config_messages m;
    struct config *cfg = load(DATA "good-admin-token-file.yaml", &m);
    expect_ok(cfg, &m);
    ck_assert_str_eq(cfg->admin_token, "s3cr3t-t0ken"); /* read now, newline dropped */
    ck_assert(!cfg->admin_listen.loopback);
    config_free(cfg);
    config_messages_free(&m);

    cfg = load(DATA "good-admin-token.yaml", &m);
    expect_ok(cfg, &m);
    ck_assert_str_eq(cfg->admin_token, "tok-123");
    ck_assert_int_eq(cfg->admin_listen.port, 0);
    config_free(cfg);
    config_messages_free(&m);

    /* loopback forms need no token */
    tmp_make();
    put("v6.yaml", "ahoyd: {admin-listen: \"[::1]:9901\"}\n");
    put("name.yaml", "ahoyd: {admin-listen: \"localhost:9901\"}\n");
    put("net.yaml", "ahoyd: {admin-listen: \"127.9.9.9:9901\"}\n");
    put("mapped.yaml", "ahoyd: {admin-listen: \"[::ffff:127.0.0.1]:9901\"}\n");
    put("public6.yaml", "ahoyd: {admin-listen: \"[2001:db8::1]:9901\"}\n");
    put("publicname.yaml", "ahoyd: {admin-listen: \"admin.example.com:9901\"}\n");
    put("empty-token.yaml", "ahoyd: {admin-listen: \"0.0.0.0:1\", admin-token: \"\"}\n");
    put("spacey.yaml", "ahoyd: {admin-listen: \"0.0.0.0:1\", admin-token: \"a b\"}\n");
    static const char *const ok[] = {"v6.yaml", "name.yaml", "net.yaml", "mapped.yaml"};
    for (size_t i = 0; i < 4; i++) {
        cfg = load(tp(ok[i]), &m);
        expect_ok(cfg, &m);
        ck_assert(cfg->admin_listen.loopback);
        config_free(cfg);
        config_messages_free(&m);
    }
    static const char *const bad[] = {"public6.yaml", "publicname.yaml", "empty-token.yaml"};
    for (size_t i = 0; i < 3; i++) {
        cfg = load(tp(bad[i]), &m);
        ck_assert_ptr_null(cfg);
        ck_assert_uint_eq(m.n_errors, 1);
        ck_assert_ptr_nonnull(strstr(m.errors[0], "is not loopback: set admin-token or "
                                                  "admin-token-file"));
        config_messages_free(&m);
    }
    cfg = load(tp("spacey.yaml"), &m);
    ck_assert_ptr_null(cfg);
    char want[600];
    snprintf(want, sizeof(want),
             "%s:1:49: admin-token: the token must be visible ASCII characters without spaces",
             tp("spacey.yaml"));
    const char *w = want;
    expect_exact(m.errors, m.n_errors, &w, 1, "errors");
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(listen_forms)
{
    static const struct {
        const char *text;
        const char *error; /* NULL: valid */
    } cases[] = {
        {"127.0.0.1:80", NULL},
        {"0.0.0.0:65535", NULL},
        {"[::]:8080", NULL},
        {"unix:/tmp/a.sock", NULL},
        {"127.0.0.1", "expected host:port, [address]:port or unix:/path"},
        {"127.0.0.1:", "port must be a number from 0 to 65535"},
        {"127.0.0.1:65536", "port must be a number from 0 to 65535"},
        {"127.0.0.1:-1", "port must be a number from 0 to 65535"},
        {":8080", "missing host"},
        {"::1:8080", "an IPv6 address needs brackets: [::1]:8080"},
        {"[::1]", "expected [address]:port"},
        {"[zz::1]:80", "bad IPv6 address"},
        {"bad host:80", "bad host name"},
        {"unix:relative.sock", "a unix socket path must be absolute"},
        {"off", "expected host:port, [address]:port or unix:/path"}, /* listen has no off */
    };
    tmp_make();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256], want[700];
        snprintf(body, sizeof(body), "ahoyd:\n  listen: \"%s\"\n", cases[i].text);
        put("l.yaml", body);
        struct config_messages m;
        struct config *cfg = load(tp("l.yaml"), &m);
        if (cases[i].error == NULL) {
            expect_ok(cfg, &m);
        } else {
            ck_assert_ptr_null(cfg);
            snprintf(want, sizeof(want), "%s:2:11: listen: bad address '%s': %s", tp("l.yaml"),
                     cases[i].text, cases[i].error);
            const char *w = want;
            expect_exact(m.errors, m.n_errors, &w, 1, "errors");
        }
        config_free(cfg);
        config_messages_free(&m);
    }
    /* admin-listen accepts off, false and no */
    static const char *const offs[] = {"off", "false", "no", "OFF"};
    for (size_t i = 0; i < 4; i++) {
        char body[128];
        snprintf(body, sizeof(body), "ahoyd:\n  admin-listen: %s\n", offs[i]);
        put("a.yaml", body);
        struct config_messages m;
        struct config *cfg = load(tp("a.yaml"), &m);
        expect_ok(cfg, &m);
        ck_assert_int_eq(cfg->admin_listen.kind, LISTEN_OFF);
        config_free(cfg);
        config_messages_free(&m);
    }
    tmp_remove();
}
END_TEST

/* ---- anchors, aliases, merge keys --------------------------------------------------------- */

START_TEST(anchors_and_merge_keys)
{
    struct config_messages m;
    struct config *cfg = load(DATA "anchors.yaml", &m);
    expect_ok(cfg, &m);
    const struct service_conf *a = svc(cfg, "a");
    ck_assert_int_eq(a->timeout_ms, 3000); /* explicit key beats the merged one */
    ck_assert_int_eq(a->retry.max_attempts, 5);
    ck_assert_str_eq(header(a, "X-Team"), "core");
    const struct service_conf *b = svc(cfg, "b");
    ck_assert_int_eq(b->timeout_ms, 8000); /* the earlier map in the merge list wins */
    ck_assert_int_eq(b->deadline_ms, 9000);
    ck_assert_int_eq(b->retry.max_attempts, 5);
    const struct service_conf *c = svc(cfg, "c");
    ck_assert_str_eq(header(c, "X-Team"), "core");
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(alias_limits)
{
    expect_one_error(DATA "alias-bomb.yaml",
                     DATA "alias-bomb.yaml:5:47: more than 10000 nodes after expanding aliases");
    expect_one_error(DATA "alias-recursive.yaml",
                     DATA "alias-recursive.yaml:2:10: alias '*loop' refers to a node that "
                          "contains it");
    expect_one_error(DATA "alias-undefined.yaml",
                     DATA "alias-undefined.yaml:2:11: undefined alias '*nowhere'");
    expect_one_error(DATA "nesting-deep.yaml",
                     DATA "nesting-deep.yaml:1:72: nesting deeper than 64 levels");
    expect_one_error(DATA "merge-bad.yaml",
                     DATA "merge-bad.yaml:6:9: merge key '<<' needs a map or a list of maps");
}
END_TEST

/* ---- includes ------------------------------------------------------------------------------ */

START_TEST(includes_name_order_deep_merge)
{
    tmp_make();
    put("ahoyd.yaml", "ahoyd:\n"
                      "  include: [conf.d/*.yaml, nothing-here/*.yaml, extra.yaml]\n"
                      "  log-level: warn\n"
                      "pyfly:\n"
                      "  client:\n"
                      "    retry: {retry-on: [reset, 503], max-attempts: 2}\n"
                      "    services:\n"
                      "      main-svc: {base-url: \"http://127.0.0.1:1\", timeout: 1s}\n");
    put("conf.d/20-late.yaml", "ahoyd: {log-level: error}\n"
                               "pyfly: {client: {services: {b: {base-url: \"http://b\"}}}}\n");
    put("conf.d/10-early.yaml", "ahoyd: {log-level: debug, max-connections: 10}\n"
                                "pyfly:\n"
                                "  client:\n"
                                "    retry: {retry-on: [timeout]}\n"
                                "    services:\n"
                                "      main-svc: {deadline: 5s}\n"
                                "      a: {base-url: \"http://a\"}\n");
    put("conf.d/notes.txt", "not yaml: [\n");
    put("extra.yaml", "pyfly: {client: {services: {main-svc: {headers: {X-Extra: \"1\"}}}}}\n");
    struct config_messages m;
    struct config *cfg = load(tp("ahoyd.yaml"), &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_ERROR); /* 20-late after 10-early */
    ck_assert_int_eq(cfg->max_connections, 10);
    ck_assert_uint_eq(cfg->retry.retry_on, RETRY_ON_TIMEOUT); /* lists replace */
    ck_assert_int_eq(n_statuses(&cfg->retry), 0);
    ck_assert_int_eq(cfg->retry.max_attempts, 2); /* maps merge */
    ck_assert_uint_eq(cfg->n_services, 3);
    ck_assert_str_eq(cfg->services[0].name, "main-svc");
    ck_assert_str_eq(cfg->services[1].name, "a");
    ck_assert_str_eq(cfg->services[2].name, "b");
    const struct service_conf *s = svc(cfg, "main-svc");
    ck_assert_int_eq(s->timeout_ms, 1000);
    ck_assert_int_eq(s->deadline_ms, 5000);
    ck_assert_str_eq(header(s, "X-Extra"), "1");
    ck_assert_uint_eq(cfg->n_include, 3);
    ck_assert_str_eq(cfg->include[0], "conf.d/*.yaml");
    ck_assert_uint_eq(cfg->n_files, 4);
    ck_assert_str_eq(cfg->files[1], tp("conf.d/10-early.yaml"));
    ck_assert_str_eq(cfg->files[2], tp("conf.d/20-late.yaml"));
    ck_assert_str_eq(cfg->files[3], tp("extra.yaml"));
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(include_only_in_main_file)
{
    tmp_make();
    put("main.yaml", "ahoyd: {include: [\"d/*.yaml\"]}\n");
    put("d/a.yaml", "ahoyd:\n  include: [\"other/*.yaml\"]\n"
                    "pyfly:\n  profiles:\n    active: x\n");
    put("other/o.yaml", "ahoyd: {log-level: debug}\n");
    struct config_messages m;
    struct config *cfg = load(tp("main.yaml"), &m);
    ck_assert_ptr_null(cfg);
    char e1[600], e2[600];
    snprintf(e1, sizeof(e1), "%s:2:3: ahoyd.include can only be set in the main file",
             tp("d/a.yaml"));
    snprintf(e2, sizeof(e2), "%s:5:5: pyfly.profiles.active can only be set in the main file",
             tp("d/a.yaml"));
    const char *want[] = {e1, e2};
    expect_exact(m.errors, m.n_errors, want, 2, "errors");
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

/* ---- profiles ------------------------------------------------------------------------------ */

static void write_profile_files(void)
{
    put("app.yaml", "ahoyd:\n  log-level: info\n  max-connections: 1\n"
                    "pyfly:\n  profiles:\n    active: \"prod, eu\"\n"
                    "  client:\n    services:\n      s: {base-url: \"http://main\"}\n");
    put("app-prod.yaml", "ahoyd: {log-level: warn, max-connections: 2}\n"
                         "pyfly: {client: {services: {s: {base-url: \"http://prod\"}}}}\n");
    put("app-eu.yaml", "ahoyd: {max-connections: 3}\n");
    put("app-dev.yaml", "ahoyd: {log-level: debug}\n");
    put("conf.d/app-prod.yaml", "ahoyd: {log-level: error}\n"); /* not beside: unused */
}

START_TEST(profiles_from_file_in_order)
{
    tmp_make();
    write_profile_files();
    struct config_messages m;
    struct config *cfg = load(tp("app.yaml"), &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(m.n_warnings, 0);
    ck_assert_uint_eq(cfg->n_profiles, 2);
    ck_assert_str_eq(cfg->profiles[0], "prod");
    ck_assert_str_eq(cfg->profiles[1], "eu");
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_WARN);
    ck_assert_int_eq(cfg->max_connections, 3); /* eu merged after prod */
    ck_assert_str_eq(svc(cfg, "s")->endpoints[0].url, "http://prod");
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(profiles_env_beats_file_cli_beats_env)
{
    tmp_make();
    write_profile_files();
    char *env[] = {"PYFLY_PROFILES_ACTIVE=eu,prod", NULL};
    struct config_messages m;
    struct config *cfg = load_env(tp("app.yaml"), env, &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(cfg->n_profiles, 2);
    ck_assert_str_eq(cfg->profiles[0], "eu");
    ck_assert_int_eq(cfg->max_connections, 2); /* prod last now */
    config_free(cfg);
    config_messages_free(&m);

    cfg = load_full(tp("app.yaml"), "dev", NULL, env, &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(cfg->n_profiles, 1);
    ck_assert_str_eq(cfg->profiles[0], "dev");
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(cfg->max_connections, 1);
    ck_assert_str_eq(svc(cfg, "s")->endpoints[0].url, "http://main");
    config_free(cfg);
    config_messages_free(&m);

    /* an empty --profile list switches every profile off */
    cfg = load_full(tp("app.yaml"), "", NULL, env, &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(cfg->n_profiles, 0);
    ck_assert_int_eq(cfg->max_connections, 1);
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(profile_missing_is_a_warning)
{
    tmp_make();
    write_profile_files();
    struct config_messages m;
    struct config *cfg = load_full(tp("app.yaml"), "prod,staging", NULL, NULL, &m);
    expect_ok(cfg, &m);
    char w1[600];
    snprintf(w1, sizeof(w1), "--profile: warning: profile 'staging': file %s not found",
             tp("app-staging.yaml"));
    const char *want[] = {w1};
    expect_exact(m.warnings, m.n_warnings, want, 1, "warnings");
    ck_assert_int_eq(cfg->max_connections, 2);
    config_free(cfg);
    config_messages_free(&m);

    put("b.yaml", "pyfly:\n  profiles:\n    active: [nope]\n"
                  "  client:\n    services:\n      s: {base-url: http://127.0.0.1:1}\n");
    cfg = load(tp("b.yaml"), &m);
    expect_ok(cfg, &m);
    snprintf(w1, sizeof(w1), "%s:3:14: warning: profile 'nope': file %s not found", tp("b.yaml"),
             tp("b-nope.yaml"));
    expect_exact(m.warnings, m.n_warnings, want, 1, "warnings");
    config_free(cfg);
    config_messages_free(&m);

    char *env[] = {"PYFLY_PROFILES_ACTIVE=gone", NULL};
    cfg = load_env(tp("b.yaml"), env, &m);
    expect_ok(cfg, &m);
    snprintf(w1, sizeof(w1),
             "env PYFLY_PROFILES_ACTIVE: warning: profile 'gone': file %s not found",
             tp("b-gone.yaml"));
    expect_exact(m.warnings, m.n_warnings, want, 1, "warnings");
    config_free(cfg);
    config_messages_free(&m);

    cfg = load_full(tp("b.yaml"), "../etc", NULL, NULL, &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(&m, "--profile: bad profile name '../etc'");
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

/* Includes are merged before profiles; a profile beats a drop-in. */
START_TEST(profiles_after_includes)
{
    tmp_make();
    put("x.yml", "ahoyd: {include: [\"d/*.yaml\"], log-level: info}\n"
                 "pyfly: {profiles: {active: p}}\n");
    put("d/a.yaml", "ahoyd: {log-level: warn, max-connections: 7}\n");
    put("x-p.yml", "ahoyd: {log-level: debug}\n");
    struct config_messages m;
    struct config *cfg = load(tp("x.yml"), &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(cfg->max_connections, 7);
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

/* ---- placeholders -------------------------------------------------------------------------- */

START_TEST(placeholders_resolve)
{
    char *env[] = {"APP=ahoyd", "INDIRECT=${PAY_URL}", "PAY_URL=http://10.1.1.1:80", NULL};
    struct config_messages m;
    struct config *cfg = load_env(DATA "placeholders.yaml", env, &m);
    expect_ok(cfg, &m);
    ck_assert_str_eq(cfg->listen.text, "127.0.0.1:8081"); /* default containing ':' */
    ck_assert_str_eq(cfg->access_log, "/var/log/ahoyd/access.log");
    ck_assert_int_eq(cfg->default_timeout_ms, 7000); /* from a config key */
    const struct service_conf *s = svc(cfg, "pay");
    ck_assert_str_eq(s->endpoints[0].url, "http://10.1.1.1:80"); /* env beats default */
    ck_assert_str_eq(header(s, "X-Literal"), "${HOME}");
    ck_assert_str_eq(header(s, "X-Not-Rescanned"), "${PAY_URL}");
    ck_assert_str_eq(header(s, "X-Default-Colon"), "a:b");
    ck_assert_str_eq(header(s, "X-Empty-Default"), "[]");
    ck_assert_str_eq(header(s, "X-Two"), "ahoyd-ahoyd");
    config_free(cfg);
    config_messages_free(&m);

    /* without PAY_URL the default applies; the environment beats a config key */
    char *env2[] = {"APP=x", "INDIRECT=i", "pyfly.client.services.pay.timeout=9s", NULL};
    cfg = load_env(DATA "placeholders.yaml", env2, &m);
    expect_ok(cfg, &m);
    ck_assert_str_eq(svc(cfg, "pay")->endpoints[0].url, "http://127.0.0.1:9001");
    ck_assert_int_eq(cfg->default_timeout_ms, 9000);
    ck_assert_int_eq(svc(cfg, "pay")->timeout_ms, 7000);
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(placeholders_errors)
{
    struct config_messages m;
    struct config *cfg = load(DATA "placeholders-bad.yaml", &m);
    ck_assert_ptr_null(cfg);
#define PB DATA "placeholders-bad.yaml:"
    EXPECT_ERRORS(&m, PB "2:11: listen: unresolved placeholder '${MISSING_LISTEN}'",
                  PB "3:15: access-log: unterminated placeholder '${UNCLOSED'",
                  PB "9:18: placeholder '${pyfly.client.services.pay.base-url}' is part of a "
                     "cycle",
                  PB "11:25: X-Empty-Name: empty placeholder name in '${}'",
                  PB "12:22: X-Map-Key: unresolved placeholder '${pyfly.client.services}'");
    config_messages_free(&m);
    /* one missing variable of APP / INDIRECT: exactly that error */
    char *env[] = {"APP=a", NULL};
    cfg = load_env(DATA "placeholders.yaml", env, &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(&m, DATA "placeholders.yaml:15:28: X-Not-Rescanned: unresolved placeholder "
                           "'${INDIRECT}'");
    config_messages_free(&m);
}
END_TEST

/* Step 0: in include and profiles.active, placeholders come from the environment only. */
START_TEST(placeholders_step0_env_only)
{
    tmp_make();
    put("m.yaml", "ahoyd:\n  include: [\"${DROPINS:conf.d}/*.yaml\"]\n"
                  "pyfly:\n  profiles:\n    active: ${PROFILE:base}\n");
    put("conf.d/a.yaml", "ahoyd: {max-connections: 11}\n");
    put("other/a.yaml", "ahoyd: {max-connections: 22}\n");
    put("m-base.yaml", "ahoyd: {log-level: warn}\n");
    put("m-special.yaml", "ahoyd: {log-level: debug}\n");
    struct config_messages m;
    struct config *cfg = load(tp("m.yaml"), &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->max_connections, 11);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_WARN);
    ck_assert_str_eq(cfg->include[0], "conf.d/*.yaml");
    config_free(cfg);
    config_messages_free(&m);

    char *env[] = {"DROPINS=other", "PROFILE=special", NULL};
    cfg = load_env(tp("m.yaml"), env, &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->max_connections, 22);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
    config_free(cfg);
    config_messages_free(&m);

    /* a config key is not a source there */
    put("n.yaml", "ahoyd:\n  include: [\"${ahoyd.log-level}/*.yaml\"]\n  log-level: info\n");
    cfg = load(tp("n.yaml"), &m);
    ck_assert_ptr_null(cfg);
    char want[600];
    snprintf(want, sizeof(want), "%s:2:13: include: unresolved placeholder '${ahoyd.log-level}'",
             tp("n.yaml"));
    const char *w = want;
    expect_exact(m.errors, m.n_errors, &w, 1, "errors");
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

/* ---- environment overrides ----------------------------------------------------------------- */

START_TEST(env_overrides_apply)
{
    char *env[] = {"PYFLY_CLIENT_DEFAULT_TIMEOUT=10s",
                   "PYFLY_CLIENT_SERVICES_PAYMENTS_BASE_URL=http://127.0.0.2:9/v2",
                   "PYFLY_CLIENT_SERVICES_PAYMENTS_RETRY_BASE_DELAY=50ms",
                   "PYFLY_CLIENT_SERVICES_PAYMENTS_CIRCUIT_BREAKER_HALF_OPEN_MAX_CALLS=4",
                   "PYFLY_CLIENT_RETRY_RETRY_ON=reset, 503",
                   "PYFLY_CLIENT_RETRY_BUDGET_RATIO=0.5",
                   "PYFLY_CLIENT_SERVICES_LEDGER_ENDPOINTS=http://a:1,http://b:2",
                   "PYFLY_CLIENT_SERVICES_LEDGER_RETRY=false",
                   "PYFLY_CLIENT_SERVICES_LEDGER_TLS_VERIFY=off",
                   "AHOYD_LISTEN=[::1]:0",
                   "AHOYD_MAX_REQUEST_BODY=1MiB",
                   "HOME=/root",
                   NULL};
    struct config_messages m;
    struct config *cfg = load_env(DATA "good-full.yaml", env, &m);
    expect_ok(cfg, &m);
    ck_assert_uint_eq(m.n_warnings, 0);
    ck_assert_int_eq(cfg->default_timeout_ms, 10000);
    ck_assert_str_eq(cfg->listen.host, "::1");
    ck_assert_uint_eq(cfg->max_request_body, 1u << 20);
    ck_assert_uint_eq(cfg->retry.retry_on, RETRY_ON_RESET);
    ck_assert_int_eq(n_statuses(&cfg->retry), 1);
    ck_assert(status_set(&cfg->retry, 503));
    ck_assert(cfg->retry.budget_enabled); /* budget: off became a map */
    ck_assert(cfg->retry.budget_ratio == 0.5);
    ck_assert(cfg->retry.budget_min_per_second == 10);

    const struct service_conf *p = svc(cfg, "payments");
    ck_assert_str_eq(p->endpoints[0].url, "http://127.0.0.2:9/v2");
    ck_assert_str_eq(p->endpoints[0].base_path, "/v2");
    ck_assert_int_eq(p->timeout_ms, 2000);        /* its own value stays */
    ck_assert_int_eq(p->retry.base_delay_ms, 50); /* env beats the shortcut */
    ck_assert_int_eq(p->retry.max_attempts, 3);
    ck_assert_int_eq(p->breaker.half_open_max_calls, 4); /* circuit-breaker: true -> map */
    ck_assert_int_eq(p->breaker.failure_threshold, 3);

    const struct service_conf *l = svc(cfg, "ledger");
    ck_assert_int_eq(l->timeout_ms, 10000); /* inherits the overridden global */
    ck_assert_uint_eq(l->n_endpoints, 2);
    ck_assert_str_eq(l->endpoints[1].url, "http://b:2");
    ck_assert_int_eq(l->endpoints[1].weight, 1);
    ck_assert_int_eq(l->retry.max_attempts, 1);
    ck_assert(!l->tls.verify);
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

START_TEST(env_override_retry_count_over_map)
{
    tmp_make();
    put("r.yaml", "pyfly:\n  client:\n    services:\n"
                  "      a: {base-url: \"http://a\", retry: {max-attempts: 2, base-delay: 3s}}\n"
                  "      b: {base-url: \"http://b\", retry: 2}\n");
    char *env[] = {"PYFLY_CLIENT_SERVICES_A_RETRY=6", "PYFLY_CLIENT_SERVICES_B_RETRY_MAX_DELAY=7s",
                   NULL};
    struct config_messages m;
    struct config *cfg = load_env(tp("r.yaml"), env, &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(svc(cfg, "a")->retry.max_attempts, 6);
    ck_assert_int_eq(svc(cfg, "a")->retry.base_delay_ms, 3000); /* the map is kept */
    ck_assert_int_eq(svc(cfg, "b")->retry.max_attempts, 2);
    ck_assert_int_eq(svc(cfg, "b")->retry.max_delay_ms, 7000);
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(env_override_errors)
{
    char *env[] = {
        "PYFLY_CLIENT_DEFAULT_TIMEOUT=abc",        "AHOYD_LISTEN=nowhere",
        "PYFLY_CLIENT_RETRY_RETRY_ON=reset,7xx",   "PYFLY_CLIENT_SERVICES_PAYMENTS_RETRY=false",
        "PYFLY_CLIENT_SERVICES_LEDGER_ENDPOINTS=", NULL};
    struct config_messages m;
    struct config *cfg = load_env(DATA "good-full.yaml", env, &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(&m, "env PYFLY_CLIENT_DEFAULT_TIMEOUT: bad duration 'abc'" EXPECTED_DURATION,
                  "env AHOYD_LISTEN: bad address 'nowhere': expected host:port, [address]:port or "
                  "unix:/path",
                  "env PYFLY_CLIENT_RETRY_RETRY_ON: unknown entry '7xx'" EXPECTED_RETRY_ON,
                  "env PYFLY_CLIENT_SERVICES_LEDGER_ENDPOINTS: the list is empty",
                  DATA
                  "good-full.yaml:46:27: retry-base-delay: cannot be used with 'retry: false' (at "
                  "env PYFLY_CLIENT_SERVICES_PAYMENTS_RETRY)");
    /* file positions first, env after */
    ck_assert_str_eq(m.errors[0], DATA "good-full.yaml:46:27: retry-base-delay: cannot be used "
                                       "with 'retry: false' (at env "
                                       "PYFLY_CLIENT_SERVICES_PAYMENTS_RETRY)");
    config_messages_free(&m);

    /* a nested key under retry: false is not applied */
    tmp_make();
    put("f.yaml", "pyfly: {client: {services: {a: {base-url: \"http://a\", retry: false}}}}\n");
    char *env2[] = {"PYFLY_CLIENT_SERVICES_A_RETRY_MAX_ATTEMPTS=3", NULL};
    cfg = load_env(tp("f.yaml"), env2, &m);
    ck_assert_ptr_null(cfg);
    char want[600];
    snprintf(want, sizeof(want),
             "env PYFLY_CLIENT_SERVICES_A_RETRY_MAX_ATTEMPTS: not applied: retry is false at "
             "%s:1:62",
             tp("f.yaml"));
    const char *w = want;
    expect_exact(m.errors, m.n_errors, &w, 1, "errors");
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(env_unknown_and_map_warnings)
{
    char *env[] = {"PYFLY_CLIENT_DEFAULT_TIMOUT=1s",
                   "AHOYD_LISTN=127.0.0.1:1",
                   "PYFLY_SOMETHING_ELSE_ENTIRELY=1",
                   "PYFLY_CLIENT_SERVICES_PAYMENTS_HEADERS=x",
                   "PYFLY_CLIENT_SERVICES_PAYMENTS_METHODS=y",
                   "PYFLY_PROFILES_ACTIVE=",
                   "AHOYD_INCLUDE=",
                   "OTHER_VAR=1",
                   NULL};
    struct config_messages m;
    struct config *cfg = load_env(DATA "good-full.yaml", env, &m);
    expect_ok(cfg, &m);
    EXPECT_WARNINGS(
        &m,
        "env PYFLY_CLIENT_DEFAULT_TIMOUT: warning: unknown variable; did you mean "
        "'PYFLY_CLIENT_DEFAULT_TIMEOUT'?",
        "env AHOYD_LISTN: warning: unknown variable; did you mean 'AHOYD_LISTEN'?",
        "env PYFLY_SOMETHING_ELSE_ENTIRELY: warning: unknown variable, ignored",
        "env PYFLY_CLIENT_SERVICES_PAYMENTS_HEADERS: warning: "
        "pyfly.client.services.payments.headers is a map and cannot be overridden from the "
        "environment; ignored",
        "env PYFLY_CLIENT_SERVICES_PAYMENTS_METHODS: warning: "
        "pyfly.client.services.payments.methods is a map and cannot be overridden from the "
        "environment; ignored");
    config_free(cfg);
    config_messages_free(&m);
}
END_TEST

/* ---- warnings: values valid one by one, not together ----------------------------------- */

START_TEST(consistency_warnings_global_and_service)
{
    tmp_make();
    put("c.yaml", "pyfly:\n"
                  "  client:\n"
                  "    default:\n"
                  "      timeout: 2s\n"
                  "      connect-timeout: 3s\n"
                  "      deadline: 1s\n"
                  "    retry:\n"
                  "      base-delay: 2s\n"
                  "      max-delay: 1s\n"
                  "    services:\n"
                  "      inherits:\n"
                  "        base-url: http://127.0.0.1:1\n"
                  "      own:\n"
                  "        base-url: http://127.0.0.1:1\n"
                  "        timeout: 500ms\n"
                  "        deadline: 0\n"
                  "        retry-base-delay: 300ms\n"
                  "      pair:\n"
                  "        base-url: http://127.0.0.1:1\n"
                  "        connect-timeout: 10s\n"
                  "        retry: {max-delay: 5s}\n"
                  "      single:\n"
                  "        base-url: http://127.0.0.1:1\n"
                  "        timeout: 5s\n"
                  "        retry: {max-attempts: 1, max-delay: 10ms}\n");
    struct config_messages m;
    struct config *cfg = load(tp("c.yaml"), &m);
    expect_ok(cfg, &m);
    char w[6][700];
    const char *f = tp("c.yaml");
    /* the globals, once: not again for the services that inherit them */
    snprintf(w[0], sizeof(w[0]),
             "%s:5:24: warning: connect-timeout 3s is not shorter than timeout 2s (%s:4:16), "
             "which includes the connect: it has no effect", f, f);
    snprintf(w[1], sizeof(w[1]),
             "%s:6:17: warning: deadline 1s is shorter than one timeout 2s (%s:4:16): a slow "
             "attempt is cut by the deadline, never retried", f, f);
    snprintf(w[2], sizeof(w[2]),
             "%s:8:19: warning: base-delay 2s is longer than max-delay 1s (%s:9:18): every "
             "backoff is cut to max-delay", f, f);
    /* a service's own key against the global one it inherits, either way round */
    snprintf(w[3], sizeof(w[3]),
             "%s:15:18: warning: timeout 500ms is not longer than connect-timeout 3s "
             "(pyfly.client.default.connect-timeout at %s:5:24), which is part of it: the "
             "connect-timeout has no effect", f, f);
    snprintf(w[4], sizeof(w[4]),
             "%s:20:26: warning: connect-timeout 10s is not shorter than timeout 2s "
             "(pyfly.client.default.timeout at %s:4:16), which includes the connect: it has no "
             "effect", f, f);
    snprintf(w[5], sizeof(w[5]),
             "%s:24:18: warning: timeout 5s is longer than the deadline 1s "
             "(pyfly.client.default.deadline at %s:6:17): a slow attempt is cut by the deadline, "
             "never retried", f, f);
    /* one attempt: no backoff, so its delays are not compared */
    const char *want[] = {w[0], w[1], w[2], w[3], w[4], w[5]};
    expect_exact(m.warnings, m.n_warnings, want, 6, "warnings");
    ck_assert_int_eq(svc(cfg, "pair")->connect_timeout_ms, 10000); /* a warning changes nothing */
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(consistency_zero_default_and_env)
{
    tmp_make();
    put("z.yaml", "pyfly:\n"
                  "  client:\n"
                  "    default:\n"
                  "      deadline: 0\n"
                  "    retry:\n"
                  "      max-delay: 500ms\n"
                  "    services:\n"
                  "      a:\n"
                  "        base-url: http://127.0.0.1:1\n"
                  "        timeout: 2s\n"
                  "        deadline: 0\n"
                  "      b:\n"
                  "        base-url: http://127.0.0.1:1\n"
                  "        timeout: 1s\n"
                  "        deadline: 1s\n");
    struct config_messages m;
    /* a deadline of 0 is no bound; a timeout under the default connect-timeout, or a
     * max-delay under the default base-delay, is what was meant; equal is not shorter */
    struct config *cfg = load(tp("z.yaml"), &m);
    expect_ok(cfg, &m);
    if (m.n_warnings > 0)
        print_msgs("warnings", m.warnings, m.n_warnings);
    ck_assert_uint_eq(m.n_warnings, 0);
    config_free(cfg);
    config_messages_free(&m);

    /* from the environment: said at the variable */
    char *env[] = {"PYFLY_CLIENT_SERVICES_A_CONNECT_TIMEOUT=2s",
                   "PYFLY_CLIENT_DEFAULT_DEADLINE=500ms", NULL};
    cfg = load_env(tp("z.yaml"), env, &m);
    expect_ok(cfg, &m);
    char w0[600];
    snprintf(w0, sizeof(w0),
             "env PYFLY_CLIENT_SERVICES_A_CONNECT_TIMEOUT: warning: connect-timeout 2s is not "
             "shorter than timeout 2s (%s:10:18), which includes the connect: it has no effect",
             tp("z.yaml"));
    const char *want[] = {w0, "env PYFLY_CLIENT_DEFAULT_DEADLINE: warning: deadline 500ms is "
                              "shorter than one timeout 30s (the default): a slow attempt is "
                              "cut by the deadline, never retried"};
    expect_exact(m.warnings, m.n_warnings, want, 2, "warnings");
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(no_service_is_a_warning)
{
    tmp_make();
    put("none.yaml", "ahoyd:\n  listen: 127.0.0.1:1\n");
    put("empty.yaml", "pyfly:\n  client:\n    services: {}\n");
    struct config_messages m;
    struct config *cfg = load(tp("none.yaml"), &m);
    expect_ok(cfg, &m);
    char w0[600];
    snprintf(w0, sizeof(w0),
             "%s: warning: no service declared under pyfly.client.services: every call gets 404",
             tp("none.yaml"));
    const char *want[] = {w0};
    expect_exact(m.warnings, m.n_warnings, want, 1, "warnings");
    config_free(cfg);
    config_messages_free(&m);

    cfg = load(tp("empty.yaml"), &m);
    expect_ok(cfg, &m);
    snprintf(w0, sizeof(w0),
             "%s:3:5: warning: no service declared under pyfly.client.services: every call "
             "gets 404", tp("empty.yaml"));
    expect_exact(m.warnings, m.n_warnings, want, 1, "warnings");
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(bad_service_name_keeps_inner_errors)
{
    tmp_make();
    put("n.yaml", "pyfly:\n"
                  "  client:\n"
                  "    services:\n"
                  "      Payments!:\n"
                  "        base-url: http://127.0.0.1:9001/api\n"
                  "        timeout: fast\n"
                  "        retyr: 3\n"
                  "      _x:\n"
                  "        endpoints: [http://a]\n"
                  "        base-url: http://b\n"
                  "      ok:\n"
                  "        base-url: http://127.0.0.1:1\n");
    struct config_messages m;
    struct config *cfg = load(tp("n.yaml"), &m);
    ck_assert_ptr_null(cfg);
    char e[6][600];
    const char *f = tp("n.yaml");
    snprintf(e[0], sizeof(e[0]), "%s:4:7: bad service name 'Payments!' (expected "
                                 "[a-z0-9][a-z0-9_-]*)", f);
    snprintf(e[1], sizeof(e[1]), "%s:6:18: timeout: bad duration 'fast' (expected e.g. 250ms, "
                                 "1.5s, 2m, 1h)", f);
    snprintf(e[2], sizeof(e[2]), "%s:7:9: unknown key 'retyr'; did you mean 'retry'?", f);
    snprintf(e[3], sizeof(e[3]), "%s:8:7: service name '_x' is reserved (names starting with "
                                 "'_')", f);
    snprintf(e[4], sizeof(e[4]), "%s:9:9: service '_x' has both base-url and endpoints; use one",
             f);
    const char *want[] = {e[0], e[1], e[2], e[3], e[4]};
    expect_exact(m.errors, m.n_errors, want, 5, "errors");
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(env_service_stem_collision)
{
    struct config_messages m;
    struct config *cfg = load(DATA "env-collision.yaml", &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(&m, DATA "env-collision.yaml:6:7: services 'pay-v2' and 'pay_v2' map to the "
                           "same environment variables PYFLY_CLIENT_SERVICES_PAY_V2_*");
    config_messages_free(&m);
}
END_TEST

/* Two different keys of two services producing one variable name. */
START_TEST(env_ambiguous_variable)
{
    tmp_make();
    put("amb.yaml", "pyfly:\n  client:\n    services:\n"
                    "      a: {base-url: \"http://a\"}\n"
                    "      a-connect: {base-url: \"http://b\"}\n");
    char *env[] = {"PYFLY_CLIENT_SERVICES_A_CONNECT_TIMEOUT=1s", NULL};
    struct config_messages m;
    struct config *cfg = load_env(tp("amb.yaml"), env, &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(&m, "env PYFLY_CLIENT_SERVICES_A_CONNECT_TIMEOUT: ambiguous: matches both "
                      "pyfly.client.services.a.connect-timeout and "
                      "pyfly.client.services.a-connect.timeout");
    config_messages_free(&m);
    cfg = load(tp("amb.yaml"), &m); /* not set: no error */
    expect_ok(cfg, &m);
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

/* AHOYD_INCLUDE replaces the main file's include list (step 0, relative to the main file). */
START_TEST(env_include_override)
{
    tmp_make();
    put("m.yaml", "ahoyd: {include: [\"a/*.yaml\"]}\n");
    put("a/x.yaml", "ahoyd: {max-connections: 1}\n");
    put("b/x.yaml", "pyfly: {client: {services: {s: {base-url: \"http://s\",\n"
                    "  methods: {op: \"GET /x\"}}}}}\n");
    char *env[] = {"AHOYD_INCLUDE=b/*.yaml, none/*.yaml", NULL};
    struct config_messages m;
    struct config *cfg = load_env(tp("m.yaml"), env, &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->max_connections, 4096);
    ck_assert_uint_eq(cfg->n_include, 2);
    ck_assert_str_eq(cfg->include[0], "b/*.yaml");
    ck_assert_str_eq(cfg->include[1], "none/*.yaml");
    const struct service_conf *s = svc(cfg, "s");
    ck_assert_str_eq(s->methods[0].file, tp("b/x.yaml"));
    ck_assert_ptr_eq(s->methods[0].file, cfg->files[1]); /* owned by the config */
    ck_assert_int_eq(s->methods[0].line, 2);
    ck_assert_int_eq(s->methods[0].col, 17);
    config_free(cfg);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

START_TEST(log_level_precedence)
{
    tmp_make();
    put("l.yaml", "ahoyd: {log-level: warn}\n");
    char *env[] = {"AHOYD_LOG_LEVEL=debug", NULL};
    struct config_messages m;
    struct config *cfg = load(tp("l.yaml"), &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_WARN);
    config_free(cfg);
    config_messages_free(&m);
    cfg = load_env(tp("l.yaml"), env, &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
    config_free(cfg);
    config_messages_free(&m);
    cfg = load_full(tp("l.yaml"), NULL, "error", env, &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_ERROR);
    config_free(cfg);
    config_messages_free(&m);
    cfg = load_full(tp("l.yaml"), NULL, "verbose", env, &m);
    ck_assert_ptr_null(cfg);
    EXPECT_ERRORS(&m, "--log-level: expected error, warn, info or debug, got 'verbose'");
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

/* ---- --dump-config ----------------------------------------------------------------------------
 */

static void assert_same_retry(const struct retry_policy *a, const struct retry_policy *b)
{
    ck_assert_int_eq(a->max_attempts, b->max_attempts);
    ck_assert_int_eq(a->base_delay_ms, b->base_delay_ms);
    ck_assert_int_eq(a->max_delay_ms, b->max_delay_ms);
    ck_assert_int_eq(a->jitter, b->jitter);
    ck_assert_uint_eq(a->retry_on, b->retry_on);
    ck_assert(memcmp(a->retry_on_status, b->retry_on_status, sizeof(a->retry_on_status)) == 0);
    ck_assert_int_eq(a->retry_non_idempotent, b->retry_non_idempotent);
    ck_assert_int_eq(a->honor_retry_after, b->honor_retry_after);
    ck_assert_int_eq(a->budget_enabled, b->budget_enabled);
    if (a->budget_enabled) {
        ck_assert(a->budget_ratio == b->budget_ratio);
        ck_assert(a->budget_min_per_second == b->budget_min_per_second);
    }
}

static void assert_same_breaker(const struct breaker_policy *a, const struct breaker_policy *b)
{
    ck_assert_int_eq(a->enabled, b->enabled);
    ck_assert_int_eq(a->failure_threshold, b->failure_threshold);
    ck_assert_int_eq(a->recovery_timeout_ms, b->recovery_timeout_ms);
    ck_assert_int_eq(a->half_open_max_calls, b->half_open_max_calls);
}

static void assert_same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        ck_assert_ptr_eq(a, b);
    else
        ck_assert_str_eq(a, b);
}

static void assert_same_listen(const struct listen_addr *a, const struct listen_addr *b)
{
    ck_assert_int_eq(a->kind, b->kind);
    assert_same_str(a->text, b->text);
    assert_same_str(a->host, b->host);
    assert_same_str(a->path, b->path);
    ck_assert_int_eq(a->port, b->port);
    ck_assert_int_eq(a->loopback, b->loopback);
}

/* Every value, except the layering bookkeeping (path, files, include, profiles). */
static void assert_same_config(const struct config *a, const struct config *b)
{
    assert_same_listen(&a->listen, &b->listen);
    assert_same_listen(&a->admin_listen, &b->admin_listen);
    ck_assert_int_eq(a->log_level, b->log_level);
    ck_assert_str_eq(a->access_log, b->access_log);
    ck_assert_int_eq(a->access_log_format, b->access_log_format);
    ck_assert_int_eq(a->max_connections, b->max_connections);
    ck_assert_uint_eq(a->max_request_body, b->max_request_body);
    ck_assert_uint_eq(a->max_response_body, b->max_response_body);
    ck_assert_uint_eq(a->max_header_bytes, b->max_header_bytes);
    ck_assert_uint_eq(a->max_response_header_bytes, b->max_response_header_bytes);
    ck_assert_int_eq(a->request_timeout_ms, b->request_timeout_ms);
    ck_assert_int_eq(a->idle_timeout_ms, b->idle_timeout_ms);
    ck_assert_int_eq(a->shutdown_timeout_ms, b->shutdown_timeout_ms);
    ck_assert_int_eq(a->drain_delay_ms, b->drain_delay_ms);
    ck_assert_int_eq(a->default_timeout_ms, b->default_timeout_ms);
    ck_assert_int_eq(a->default_connect_timeout_ms, b->default_connect_timeout_ms);
    ck_assert_int_eq(a->default_deadline_ms, b->default_deadline_ms);
    assert_same_breaker(&a->breaker, &b->breaker);
    assert_same_retry(&a->retry, &b->retry);
    ck_assert_uint_eq(a->n_services, b->n_services);
    for (size_t i = 0; i < a->n_services; i++) {
        const struct service_conf *x = &a->services[i], *y = &b->services[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_uint_eq(x->n_endpoints, y->n_endpoints);
        for (size_t k = 0; k < x->n_endpoints; k++) {
            ck_assert_str_eq(x->endpoints[k].url, y->endpoints[k].url);
            ck_assert_str_eq(x->endpoints[k].origin, y->endpoints[k].origin);
            ck_assert_str_eq(x->endpoints[k].host, y->endpoints[k].host);
            ck_assert_str_eq(x->endpoints[k].base_path, y->endpoints[k].base_path);
            ck_assert_int_eq(x->endpoints[k].port, y->endpoints[k].port);
            ck_assert_int_eq(x->endpoints[k].tls, y->endpoints[k].tls);
            ck_assert_int_eq(x->endpoints[k].weight, y->endpoints[k].weight);
        }
        ck_assert_int_eq(x->load_balancer, y->load_balancer);
        ck_assert_int_eq(x->timeout_ms, y->timeout_ms);
        ck_assert_int_eq(x->connect_timeout_ms, y->connect_timeout_ms);
        ck_assert_int_eq(x->deadline_ms, y->deadline_ms);
        assert_same_retry(&x->retry, &y->retry);
        assert_same_breaker(&x->breaker, &y->breaker);
        ck_assert_uint_eq(x->n_headers, y->n_headers);
        for (size_t k = 0; k < x->n_headers; k++) {
            ck_assert_str_eq(x->headers[k].name, y->headers[k].name);
            ck_assert_str_eq(x->headers[k].value, y->headers[k].value);
        }
        ck_assert_int_eq(x->max_inflight, y->max_inflight);
        ck_assert_uint_eq(x->n_methods, y->n_methods);
        for (size_t k = 0; k < x->n_methods; k++) {
            ck_assert_str_eq(x->methods[k].name, y->methods[k].name);
            ck_assert_str_eq(x->methods[k].verb, y->methods[k].verb);
            ck_assert_str_eq(x->methods[k].path, y->methods[k].path);
        }
        ck_assert_int_eq(x->tls.verify, y->tls.verify);
        assert_same_str(x->tls.ca_file, y->tls.ca_file);
        assert_same_str(x->tls.cert_file, y->tls.cert_file);
        assert_same_str(x->tls.key_file, y->tls.key_file);
        assert_same_str(x->tls.server_name, y->tls.server_name);
    }
}

/* dump(path) -> file -> load -> same values as load(path); the dump of the dump is stable. */
static void round_trip(const char *path, char *const *env)
{
    struct config_messages m;
    struct config *orig = load_env(path, env, &m);
    expect_ok(orig, &m);
    config_messages_free(&m);
    char *text = NULL;
    ck_assert_int_eq(dump_to_string(path, env, &text, &m), 0);
    ck_assert_uint_eq(m.n_errors, 0);
    config_messages_free(&m);
    put("dump.yaml", text);
    struct config *again = load(tp("dump.yaml"), &m);
    if (again == NULL)
        fprintf(stderr, "dump was:\n%s\n", text);
    expect_ok(again, &m);
    assert_same_config(orig, again);
    config_free(again);
    config_free(orig);
    config_messages_free(&m);
    free(text);
}

START_TEST(dump_round_trips)
{
    tmp_make();
    round_trip(DATA "good-full.yaml", NULL);
    round_trip(DATA "good-forms.yaml", NULL);
    round_trip(DATA "good-minimal.yaml", NULL);
    round_trip(DATA "good-empty.yaml", NULL);
    round_trip(DATA "good-unix.yaml", NULL);
    round_trip(DATA "anchors.yaml", NULL);
    round_trip(DATA "good-admin-token-file.yaml", NULL);
    char *env[] = {"APP=ahoyd", "INDIRECT=$${x} ${y}", NULL};
    round_trip(DATA "placeholders.yaml", env);
    char *env2[] = {"PYFLY_CLIENT_SERVICES_LEDGER_RETRY=false", "PYFLY_CLIENT_RETRY_BUDGET=on",
                    "AHOYD_ACCESS_LOG=/var/log/a \"b\".log", NULL};
    round_trip(DATA "good-full.yaml", env2);
    tmp_remove();
}
END_TEST

START_TEST(dump_provenance)
{
    char *env[] = {"PYFLY_CLIENT_DEFAULT_TIMEOUT=10s", NULL};
    struct config_messages m;
    char *text = NULL;
    ck_assert_int_eq(dump_to_string(DATA "good-full.yaml", env, &text, &m), 0);
    config_messages_free(&m);
    static const char *const lines[] = {
        "ahoyd:\n  listen: \"127.0.0.1:8080\"  # " DATA "good-full.yaml:3\n",
        "\n    default:\n      timeout: 10s  # env PYFLY_CLIENT_DEFAULT_TIMEOUT\n",
        "\n      connect-timeout: 5s  # " DATA "good-full.yaml:23\n",
        "\n      ledger:\n        endpoints:\n"
        "          - url: \"http://10.0.0.5:8080/api\"  # " DATA "good-full.yaml:59\n"
        "            weight: 1  # default\n"
        "          - url: \"http://10.0.0.6:8080/api\"  # " DATA "good-full.yaml:60\n"
        "            weight: 2  # " DATA "good-full.yaml:60\n",
        /* a service value inherited from a global carries the global's origin */
        "\n        timeout: 10s  # env PYFLY_CLIENT_DEFAULT_TIMEOUT\n"
        "        connect-timeout: 5s  # " DATA "good-full.yaml:23\n",
        "\n          base-delay: 200ms  # " DATA "good-full.yaml:46\n",
        "\n          failure-threshold: 3  # " DATA "good-full.yaml:47\n",
        "\n          \"X-Client\": \"ahoyd\"  # " DATA "good-full.yaml:49\n",
        "\n          get_payment: \"GET /payments/{payment_id}\"  # " DATA "good-full.yaml:52\n",
        "\n        max-inflight: 0  # default\n",
        "\n      retry-on: [connect-failure, reset, timeout, 429, 502, 503, 504]  # " DATA
        "good-full.yaml:34\n",
        "\n  max-request-body: 8MiB  # " DATA "good-full.yaml:11\n",
        "\n  idle-timeout: 1m  # " DATA "good-full.yaml:16\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (strstr(text, lines[i]) == NULL)
            fprintf(stderr, "missing in dump:\n%s\n--- dump:\n%s", lines[i], text);
        ck_assert_msg(strstr(text, lines[i]) != NULL, "dump line %zu missing (see stderr)", i);
    }
    free(text);

    /* -l and profiles: the command line is named */
    tmp_make();
    put("p.yaml", "ahoyd: {include: [\"d/*.yaml\"]}\n");
    put("p-x.yaml", "ahoyd: {max-connections: 5}\n");
    struct config_options o = {tp("p.yaml"), "x", "debug", no_env};
    size_t len;
    FILE *f = open_memstream(&text, &len);
    ck_assert_int_eq(config_dump(&o, f, &m), 0);
    fclose(f);
    config_messages_free(&m);
    ck_assert_ptr_nonnull(strstr(text, "\n  log-level: debug  # command line\n"));
    char want[600];
    snprintf(want, sizeof(want), "\n  max-connections: 5  # %s:1\n", tp("p-x.yaml"));
    ck_assert_ptr_nonnull(strstr(text, want));
    snprintf(want, sizeof(want),
             "\n  # include: [\"d/*.yaml\"]  # %s:1 (already merged into this output)\n",
             tp("p.yaml"));
    ck_assert_ptr_nonnull(strstr(text, want));
    ck_assert_ptr_nonnull(strstr(text, "\n  # profiles: {active: \"x\"}  # command line "
                                       "(already merged into this output)\n"));
    free(text);
    tmp_remove();
}
END_TEST

START_TEST(dump_redacts_secrets)
{
    struct config_messages m;
    char *text = NULL;
    ck_assert_int_eq(dump_to_string(DATA "headers-secret.yaml", NULL, &text, &m), 0);
    config_messages_free(&m);
    ck_assert_ptr_null(strstr(text, "very-secret"));
    ck_assert_ptr_nonnull(
        strstr(text, "\n  admin-token: \"<redacted>\"  # " DATA "headers-secret.yaml:4\n"));
    ck_assert_ptr_nonnull(strstr(text, "\"Authorization\": \"<redacted>\""));
    ck_assert_ptr_nonnull(strstr(text, "\"Cookie\": \"<redacted>\""));
    ck_assert_ptr_nonnull(strstr(text, "\"X-Auth-Token\": \"<redacted>\""));
    ck_assert_ptr_nonnull(strstr(text, "\"X-Api-Key\": \"<redacted>\""));
    ck_assert_ptr_nonnull(strstr(text, "\"X-Client\": \"visible-value\""));
    ck_assert_ptr_nonnull(strstr(text, "\"X-Literal\": \"$${NOT_A_PLACEHOLDER}\""));
    ck_assert_ptr_nonnull(strstr(text, "\"X-Quote\": \"say \\\"hi\\\" \\\\ bye\""));
    free(text);

    /* the token read from a file is never printed either; its path is */
    ck_assert_int_eq(dump_to_string(DATA "good-admin-token-file.yaml", NULL, &text, &m), 0);
    config_messages_free(&m);
    ck_assert_ptr_null(strstr(text, "s3cr3t"));
    ck_assert_ptr_nonnull(strstr(text, "\n  admin-token-file: \"" DATA "admin.token\"  # " DATA
                                       "good-admin-token-file.yaml:4\n"));
    free(text);

    /* the redacted dump still loads, with the same non-secret values */
    tmp_make();
    ck_assert_int_eq(dump_to_string(DATA "headers-secret.yaml", NULL, &text, &m), 0);
    config_messages_free(&m);
    put("d.yaml", text);
    struct config *cfg = load(tp("d.yaml"), &m);
    expect_ok(cfg, &m);
    ck_assert_str_eq(cfg->admin_token, "<redacted>");
    ck_assert_str_eq(header(svc(cfg, "pay"), "X-Literal"), "${NOT_A_PLACEHOLDER}");
    ck_assert_str_eq(header(svc(cfg, "pay"), "X-Quote"), "say \"hi\" \\ bye");
    config_free(cfg);
    config_messages_free(&m);
    free(text);
    tmp_remove();
}
END_TEST

START_TEST(dump_invalid_reports_errors)
{
    struct config_messages m;
    char *text = NULL;
    ck_assert_int_eq(dump_to_string(DATA "bad-dupkeys.yaml", NULL, &text, &m), 1);
    ck_assert_uint_eq(m.n_errors, 2);
    ck_assert_str_eq(text, ""); /* nothing printed */
    free(text);
    config_messages_free(&m);
}
END_TEST

/* ahoyd.workers: 1..64, an integer; the environment overrides it like any key. */
START_TEST(workers_range)
{
    struct config_messages m;
    struct config *cfg;
    char want[512];

    tmp_make();
    put("w.yaml", "ahoyd:\n  workers: 4\n");
    cfg = load(tp("w.yaml"), &m);
    expect_ok(cfg, &m);
    ck_assert_int_eq(cfg->workers, 4);
    config_free(cfg);
    config_messages_free(&m);

    put("w.yaml", "ahoyd:\n  workers: 65\n");
    cfg = load(tp("w.yaml"), &m);
    ck_assert_ptr_null(cfg);
    ck_assert_uint_eq(m.n_errors, 1);
    snprintf(want, sizeof(want), "%s:2:12: workers: must be at most 64, got 65", tp("w.yaml"));
    ck_assert_str_eq(m.errors[0], want);
    config_messages_free(&m);

    put("w.yaml", "ahoyd:\n  workers: two\n");
    cfg = load(tp("w.yaml"), &m);
    ck_assert_ptr_null(cfg);
    ck_assert_uint_eq(m.n_errors, 1);
    ck_assert_ptr_nonnull(strstr(m.errors[0], ":2:12: workers: "));
    config_messages_free(&m);
}
END_TEST

/* health-check, outlier, panic-threshold and slow-start: defaults, values, env, errors */
START_TEST(fleet_keys)
{
    struct config_messages m;
    tmp_make();
    put("f.yaml", "pyfly:\n  client:\n    services:\n"
                  "      plain: {base-url: http://127.0.0.1:9001}\n"
                  "      orders:\n"
                  "        endpoints: [http://127.0.0.1:9001/api]\n"
                  "        health-check: {path: /healthz, interval: 2s, expect: '200-299, 404',\n"
                  "                       headers: {X-Probe: yes}}\n"
                  "        outlier: {consecutive-failures: 4}\n"
                  "        panic-threshold: 30%\n"
                  "        slow-start: 10s\n");
    char *env[] = {"PYFLY_CLIENT_SERVICES_ORDERS_HEALTH_CHECK_TIMEOUT=300ms",
                   "PYFLY_CLIENT_SERVICES_ORDERS_OUTLIER_MAX_EJECTION_PERCENT=20", NULL};
    struct config *cfg = load_env(tp("f.yaml"), env, &m);
    expect_ok(cfg, &m);
    const struct service_conf *p = svc(cfg, "plain"), *o = svc(cfg, "orders");
    ck_assert(!p->health.enabled);
    ck_assert(!p->outlier.enabled);
    ck_assert_int_eq(p->panic_threshold, 50);
    ck_assert_int_eq(p->slow_start_ms, 0);
    ck_assert(o->health.enabled);
    ck_assert_str_eq(o->health_path, "/healthz");
    ck_assert_int_eq(o->health.interval_ms, 2000);
    ck_assert_int_eq(o->health.timeout_ms, 300);
    ck_assert_int_eq(o->health.healthy_threshold, 2);
    ck_assert_int_eq(o->health.unhealthy_threshold, 3);
    ck_assert(health_expect_match(&o->health.expect, 404));
    ck_assert(!health_expect_match(&o->health.expect, 301));
    ck_assert_uint_eq(o->n_health_headers, 1);
    ck_assert_str_eq(o->health_headers[0].name, "X-Probe");
    ck_assert(o->outlier.enabled);
    ck_assert_int_eq(o->outlier.consecutive_failures, 4);
    ck_assert_int_eq(o->outlier.base_ejection_ms, 30000);
    ck_assert_int_eq(o->outlier.max_ejection_percent, 20);
    ck_assert_int_eq(o->panic_threshold, 30);
    ck_assert_int_eq(o->slow_start_ms, 10000);
    config_free(cfg);
    config_messages_free(&m);

    put("g.yaml", "pyfly:\n  client:\n    services:\n"
                  "      a:\n"
                  "        base-url: http://127.0.0.1:9001\n"
                  "        health-check: {path: healthz, healthy-threshold: 0, expect: 700}\n"
                  "        outlier: {max-ejection-percent: 120, consecutive-failures: 0}\n"
                  "        panic-threshold: 101%\n"
                  "      b:\n"
                  "        base-url: http://127.0.0.1:9001\n"
                  "        health-check: {interval: 1s}\n"
                  "        slow-start: -1\n");
    cfg = load(tp("g.yaml"), &m);
    ck_assert_ptr_null(cfg);
    const char *g = tp("g.yaml");
    char w[8][256];
    snprintf(w[0], 256, "%s:6:30: path: the health-check path must start with '/', got "
             "'healthz'", g);
    snprintf(w[1], 256, "%s:6:58: healthy-threshold: must be at least 1, got 0", g);
    snprintf(w[2], 256, "%s:6:69: expect: expect '700': a status is a number from 100 to 599", g);
    snprintf(w[3], 256, "%s:7:41: max-ejection-percent: must be between 0%% and 100%%, got 120", g);
    snprintf(w[4], 256, "%s:7:68: consecutive-failures: must be at least 1, got 0", g);
    snprintf(w[5], 256, "%s:8:26: panic-threshold: must be between 0%% and 100%%, got 101%%", g);
    snprintf(w[6], 256, "%s:11:23: health-check: a health check needs a path (e.g. path: "
             "/healthz)", g);
    for (int i = 0; i < 7; i++) {
        if (!has(m.errors, m.n_errors, w[i]))
            print_msgs("errors", m.errors, m.n_errors);
        ck_assert_msg(has(m.errors, m.n_errors, w[i]), "missing: %s", w[i]);
    }
    ck_assert_uint_eq(m.n_errors, 8); /* and slow-start: -1 */
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

/* discovery: dns and etcd maps, what each needs, the password file, the dump. */
START_TEST(discovery_keys)
{
    struct config_messages m;
    tmp_make();
    put("pw", "s3cret\n");
    put("d.yaml", "pyfly:\n  client:\n    services:\n"
                  "      orders:\n"
                  "        discovery:\n"
                  "          dns: {name: orders.internal, type: srv, scheme: https, refresh: 2s,\n"
                  "                server: '127.0.0.1:5353', base-path: /api}\n"
                  "      users:\n"
                  "        base-url: http://127.0.0.1:9001\n"
                  "        discovery:\n"
                  "          dns: {name: users.internal, port: 8080}\n"
                  "          etcd: {endpoints: [http://127.0.0.1:2379, http://127.0.0.1:2381],\n"
                  "                 prefix: /services/users/, username: ahoyd,\n"
                  "                 password-file: pw, tls: {verify: false}}\n");
    char *env[] = {"PYFLY_CLIENT_SERVICES_ORDERS_DISCOVERY_DNS_REFRESH=3s", NULL};
    struct config *cfg = load_env(tp("d.yaml"), env, &m);
    expect_ok(cfg, &m);
    const struct service_conf *o = svc(cfg, "orders"), *u = svc(cfg, "users");
    ck_assert_uint_eq(o->n_endpoints, 0);
    ck_assert(o->dns.enabled);
    ck_assert(!o->etcd.enabled);
    ck_assert_str_eq(o->dns.name, "orders.internal");
    ck_assert_int_eq(o->dns.type, DNS_DISCOVERY_SRV);
    ck_assert_int_eq(o->dns.scheme, 1);
    ck_assert_int_eq(o->dns.refresh_ms, 3000);
    ck_assert_str_eq(o->dns.server, "127.0.0.1:5353");
    ck_assert_str_eq(o->dns.base_path, "/api");
    ck_assert_uint_eq(u->n_endpoints, 1);
    ck_assert(u->dns.enabled);
    ck_assert_int_eq(u->dns.type, DNS_DISCOVERY_A);
    ck_assert_int_eq(u->dns.port, 8080);
    ck_assert_int_eq(u->dns.scheme, 0);
    ck_assert_int_eq(u->dns.refresh_ms, 5000);
    ck_assert_ptr_null(u->dns.server);
    ck_assert(u->etcd.enabled);
    ck_assert_uint_eq(u->etcd.n_endpoints, 2);
    ck_assert_str_eq(u->etcd.endpoints[1], "http://127.0.0.1:2381");
    ck_assert_str_eq(u->etcd.prefix, "/services/users/");
    ck_assert_str_eq(u->etcd.username, "ahoyd");
    ck_assert_str_eq(u->etcd.password, "s3cret");
    ck_assert(!u->etcd.tls.verify);
    config_free(cfg);
    config_messages_free(&m);

    char *text = NULL;
    ck_assert_int_eq(dump_to_string(tp("d.yaml"), NULL, &text, &m), 0);
    config_messages_free(&m);
    ck_assert_ptr_nonnull(strstr(text, "        discovery:\n          dns:\n"
                                       "            name: \"orders.internal\""));
    ck_assert_ptr_nonnull(strstr(text, "            type: srv"));
    ck_assert_ptr_nonnull(strstr(text, "endpoints: [\"http://127.0.0.1:2379\", "
                                       "\"http://127.0.0.1:2381\"]"));
    ck_assert_ptr_null(strstr(text, "s3cret"));
    free(text);
    round_trip(tp("d.yaml"), NULL);

    put("e.yaml", "pyfly:\n  client:\n    services:\n"
                  "      a:\n"
                  "        discovery:\n"
                  "          dns: {name: a.internal, type: aaaa}\n"
                  "      b:\n"
                  "        discovery: {dns: {type: mx, port: 1}}\n"
                  "      c:\n"
                  "        discovery: {etcd: {username: u}}\n"
                  "      d:\n"
                  "        discovery: {etcd: {endpoints: [ftp://x], prefix: /p/, password-file: "
                  "nofile}}\n"
                  "      e:\n"
                  "        discovery: {}\n"
                  "      f:\n"
                  "        discovery: {dns: {name: f, port: 70000, server: 'host:53', base-path: "
                  "api}}\n"
                  "      g:\n"
                  "        discovery: {etcd: {endpoints: [http://127.0.0.1:2379], prefix: /p/,\n"
                  "                           username: u, password-file: empty}}\n");
    put("empty", "\n");
    cfg = load(tp("e.yaml"), &m);
    ck_assert_ptr_null(cfg);
    const char *e = tp("e.yaml");
    char w[13][300];
    snprintf(w[0], 300, "%s:6:16: dns: type aaaa needs a port (the records give none)", e);
    snprintf(w[1], 300, "%s:8:33: type: expected a, aaaa or srv, got 'mx'", e);
    snprintf(w[2], 300, "%s:8:26: dns: a DNS discovery needs a name", e);
    snprintf(w[3], 300, "%s:10:27: etcd: an etcd discovery needs endpoints (e.g. "
             "[http://127.0.0.1:2379])", e);
    snprintf(w[4], 300, "%s:10:27: etcd: an etcd discovery needs a prefix (e.g. "
             "/services/orders/)", e);
    snprintf(w[5], 300, "%s:10:38: username: a username needs a password-file", e);
    snprintf(w[6], 300, "%s:12:40: endpoints: bad URL 'ftp://x': the scheme must be http:// or "
             "https://", e);
    snprintf(w[7], 300, "%s:12:78: password-file: a password-file needs a username", e);
    snprintf(w[8], 300, "%s:14:20: discovery: expected a map with dns, etcd or both", e);
    snprintf(w[9], 300, "%s:16:42: port: must be at most 65535, got 70000", e);
    snprintf(w[10], 300, "%s:16:57: server: expected an IP address with an optional port "
             "(127.0.0.1:5353, [::1]:53), got 'host:53'", e);
    snprintf(w[11], 300, "%s:16:79: base-path: must start with '/', got 'api'", e);
    snprintf(w[12], 300, "%s:19:56: password-file: %s/empty is empty", e, tmp);
    for (int i = 0; i < 13; i++) {
        if (!has(m.errors, m.n_errors, w[i]))
            print_msgs("errors", m.errors, m.n_errors);
        ck_assert_msg(has(m.errors, m.n_errors, w[i]), "missing: %s", w[i]);
    }
    ck_assert_uint_eq(m.n_errors, 13);
    config_messages_free(&m);
    tmp_remove();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *good = tcase_create("good");
    tcase_add_test(good, minimal_defaults);
    tcase_add_test(good, empty_file_is_all_defaults);
    tcase_add_test(good, full_spec_example);
    tcase_add_test(good, other_accepted_forms);
    tcase_add_test(good, unix_listen);
    tcase_add_test(good, missing_main_file);
    suite_add_tcase(s, good);

    TCase *bad = tcase_create("validation");
    tcase_add_test(bad, bad_values_all_reported);
    tcase_add_test(bad, bad_services_all_reported);
    tcase_add_test(bad, shortcut_conflicts);
    tcase_add_test(bad, shortcut_overlay_precedence);
    tcase_add_test(bad, unknown_keys_suggest);
    tcase_add_test(bad, duplicate_keys);
    tcase_add_test(bad, syntax_error);
    tcase_add_test(bad, syntax_error_other_files_checked);
    tcase_add_test(bad, admin_token_rules);
    tcase_add_test(bad, admin_token_file_contents);
    tcase_add_test(bad, listen_forms);
    tcase_add_test(bad, workers_range);
    tcase_add_test(bad, fleet_keys);
    tcase_add_test(bad, discovery_keys);
    tcase_add_test(bad, anchors_and_merge_keys);
    tcase_add_test(bad, alias_limits);
    suite_add_tcase(s, bad);

    TCase *lay = tcase_create("layering");
    tcase_add_test(lay, includes_name_order_deep_merge);
    tcase_add_test(lay, include_only_in_main_file);
    tcase_add_test(lay, profiles_from_file_in_order);
    tcase_add_test(lay, profiles_env_beats_file_cli_beats_env);
    tcase_add_test(lay, profile_missing_is_a_warning);
    tcase_add_test(lay, profiles_after_includes);
    tcase_add_test(lay, placeholders_resolve);
    tcase_add_test(lay, placeholders_errors);
    tcase_add_test(lay, placeholders_step0_env_only);
    tcase_add_test(lay, env_overrides_apply);
    tcase_add_test(lay, env_override_retry_count_over_map);
    tcase_add_test(lay, env_override_errors);
    tcase_add_test(lay, env_unknown_and_map_warnings);
    tcase_add_test(lay, env_service_stem_collision);
    tcase_add_test(lay, env_ambiguous_variable);
    tcase_add_test(lay, env_include_override);
    tcase_add_test(lay, log_level_precedence);
    suite_add_tcase(s, lay);

    TCase *warn = tcase_create("warnings");
    tcase_add_test(warn, consistency_warnings_global_and_service);
    tcase_add_test(warn, consistency_zero_default_and_env);
    tcase_add_test(warn, no_service_is_a_warning);
    tcase_add_test(warn, bad_service_name_keeps_inner_errors);
    suite_add_tcase(s, warn);

    TCase *dump = tcase_create("dump");
    tcase_add_test(dump, dump_round_trips);
    tcase_add_test(dump, dump_provenance);
    tcase_add_test(dump, dump_redacts_secrets);
    tcase_add_test(dump, dump_invalid_reports_errors);
    suite_add_tcase(s, dump);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
