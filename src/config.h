/*
 * config.h - the effective configuration (SPEC 2) as plain structs.
 *
 * config.c reads the YAML files (libyaml, keeping marks), layers them
 * (includes, profiles, placeholders, environment overrides), validates every
 * key against the schema and fills these structs. Nothing here does I/O after
 * loading; the daemon treats a struct config as immutable and swaps it whole
 * on reload.
 */
#ifndef AHOYD_CONFIG_H
#define AHOYD_CONFIG_H

#define WORKERS_MAX 64 /* ahoyd.workers */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "balancer.h"
#include "breaker.h"
#include "health.h"
#include "outlier.h"
#include "log.h" /* enum log_level, enum access_log_format */
#include "retry.h"

enum listen_kind { LISTEN_OFF = 0, LISTEN_INET, LISTEN_UNIX };
struct listen_addr {
    enum listen_kind kind;
    char *text;  /* as written, e.g. "127.0.0.1:8080", "[::1]:8080", "unix:/run/x.sock", "off" */
    char *host;  /* INET: numeric or name, without brackets ("::1") */
    int port;    /* INET: 0..65535 (0 = any free port, used by tests) */
    char *path;  /* UNIX: socket path */
    bool loopback; /* INET on 127.0.0.0/8 or ::1 or "localhost", or UNIX */
};

struct endpoint_conf {
    char *url;       /* as written, e.g. "http://127.0.0.1:9001/api" */
    char *origin;    /* scheme://host[:port], no path: "http://127.0.0.1:9001" */
    char *host;      /* host as written (brackets kept for IPv6): for the Host header */
    char *base_path; /* "" or "/api" or "/api/", as written */
    int port;        /* explicit or scheme default */
    bool tls;        /* https */
    int weight;      /* >= 1, default 1 */
};

struct header_conf {
    char *name;
    char *value;
};

struct method_conf {
    char *name;     /* operation name, e.g. "get_payment" */
    char *verb;     /* "GET" */
    char *path;     /* template, e.g. "/payments/{payment_id}" */
    const char *file; int line, col; /* where declared, for messages */
};

struct tls_conf {
    bool verify;       /* default true */
    char *ca_file;     /* NULL or "" = system default */
    char *cert_file;
    char *key_file;
    char *server_name; /* SNI / verification name override */
};

/* discovery.dns (SPEC 4.6): given when enabled. */
enum dns_discovery_type { DNS_DISCOVERY_A = 0, DNS_DISCOVERY_AAAA, DNS_DISCOVERY_SRV };
struct dns_discovery_conf {
    bool enabled;
    char *name;
    int type;           /* enum dns_discovery_type */
    int64_t port;       /* a/aaaa: 1..65535 (required); srv: unused, 0 */
    int scheme;         /* 0 http, 1 https */
    char *base_path;    /* NULL = none */
    int64_t refresh_ms;
    char *server;       /* "127.0.0.1:5353"; NULL = the system's */
};

/* discovery.etcd (SPEC 4.6): given when enabled. */
struct etcd_discovery_conf {
    bool enabled;
    char **endpoints;   /* "http://127.0.0.1:2379" ... */
    size_t n_endpoints;
    char *prefix;
    char *username;      /* NULL: no authentication */
    char *password_file; /* as written (resolved against the main file's directory) */
    char *password;      /* read from password_file */
    struct tls_conf tls;
};

struct service_conf {
    char *name;
    struct endpoint_conf *endpoints;
    size_t n_endpoints;
    enum lb_policy load_balancer;
    int64_t timeout_ms;  /* one attempt; 0 = no bound */
    int64_t connect_timeout_ms;
    int64_t deadline_ms; /* 0 = none */
    int64_t read_timeout_ms; /* longest silence while reading a response; 0 = none */
    struct retry_policy retry;     /* global overlaid by service map and shortcuts */
    struct breaker_policy breaker; /* likewise */
    struct header_conf *headers;
    size_t n_headers;
    int64_t max_inflight; /* 0 = no limit */
    uint64_t request_buffer; /* request bodies up to this are kept for retries */
    struct method_conf *methods;
    size_t n_methods;
    struct tls_conf tls;
    /* fleets: active checks, outlier ejection, panic and slow start */
    struct health_policy health;       /* health.enabled false: no health-check */
    char *health_path;                 /* "/healthz": sent as written */
    struct header_conf *health_headers;
    size_t n_health_headers;
    struct outlier_policy outlier;     /* outlier.enabled false: no outlier key */
    int panic_threshold;               /* percent, 0 = panic off */
    int64_t slow_start_ms;             /* 0 = none */
    struct dns_discovery_conf dns;     /* discovery sources (dns.enabled, etcd.enabled) */
    struct etcd_discovery_conf etcd;
};

struct config {
    char *path; /* main file */
    struct listen_addr listen;
    struct listen_addr admin_listen;
    char *admin_token;      /* resolved: from admin-token or admin-token-file; NULL if none */
    char **include;         /* globs as written */
    size_t n_include;
    enum log_level log_level;
    char *access_log;       /* "stderr", "off" or a path */
    enum access_log_format access_log_format;
    int64_t max_connections;
    uint64_t max_request_body;   /* 0 = no limit */
    uint64_t max_response_body;  /* 0 = no limit */
    uint64_t max_retry_buffers;  /* request bodies kept for retries, all calls together */
    uint64_t max_header_bytes;
    uint64_t max_response_header_bytes;
    int64_t request_timeout_ms;  /* 0 = none */
    int64_t idle_timeout_ms;     /* 0 = none */
    int64_t shutdown_timeout_ms; /* 0 = none (exit at once) */
    int64_t drain_delay_ms;      /* serving on after SIGTERM, not ready; 0 = none */
    int64_t workers;             /* event loops (threads); fixed at start */
    char **profiles;        /* the active profiles, in order */
    size_t n_profiles;

    /* pyfly.client.default / circuit-breaker / retry (the globals) */
    int64_t default_timeout_ms;
    int64_t default_connect_timeout_ms;
    int64_t default_deadline_ms;
    struct breaker_policy breaker;
    struct retry_policy retry;

    struct service_conf *services; /* in file order */
    size_t n_services;

    /* Every file that was read (main, includes, profiles), in load order.
     * method_conf.file points at one of these. */
    char **files;
    size_t n_files;
};

/* Errors and warnings, each a full line: "FILE:LINE:COL: message" or "env NAME: message". */
struct config_messages {
    char **errors;
    size_t n_errors;
    char **warnings;
    size_t n_warnings;
};

struct config_options {
    const char *path;          /* main file */
    const char *profiles;      /* from -p/--profile, comma-separated, or NULL */
    const char *log_level;     /* from -l, or NULL */
    char *const *env;          /* environment (NULL-terminated), e.g. environ */
};

/* Load, layer and validate. Returns NULL when there is any error; every error
 * is in msgs (warnings too, on success or not). */
struct config *config_load(const struct config_options *opts, struct config_messages *msgs);
void config_free(struct config *cfg);
void config_messages_free(struct config_messages *msgs);

/* --dump-config: the effective configuration as YAML with a provenance comment
 * per value. Returns 0, or 1 after filling msgs when the configuration is invalid. */
int config_dump(const struct config_options *opts, FILE *out, struct config_messages *msgs);

/* Service by route name (len bytes, not NUL-terminated); NULL if none. */
const struct service_conf *config_find_service(const struct config *cfg, const char *name,
                                               size_t len);

/* Whether two discovery blocks are the same (a reload keeps the source of an unchanged
 * one). */
bool config_dns_same(const struct dns_discovery_conf *a, const struct dns_discovery_conf *b);
bool config_etcd_same(const struct etcd_discovery_conf *a, const struct etcd_discovery_conf *b);

/* An endpoint URL read as the config reads one (a discovered endpoint's): false with
 * *why on a bad URL. config_endpoint_clear frees what it holds. */
bool config_endpoint_parse(const char *url, int weight, struct endpoint_conf *out,
                           const char **why);
void config_endpoint_clear(struct endpoint_conf *e);

#endif
