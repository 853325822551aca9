/*
 * sources.h - helpers for the discovery suites (check_dns, check_etcd_watch,
 * check_discovery): a real dnsmasq and a real etcd started on 127.0.0.1 and free
 * ports (killed at teardown like every harness process), a recorder for what a
 * source reports, and running a loop in-process until the recorder shows a
 * condition (bounded).
 */
#ifndef AHOYD_TESTS_SOURCES_H
#define AHOYD_TESTS_SOURCES_H

#include <check.h>
#include <stdbool.h>

#include "discovery.h"
#include "harness.h"
#include "loop.h"

/* ---- dnsmasq ------------------------------------------------------------------------ */

#define DNSMASQ "/usr/sbin/dnsmasq"

struct dnsmasq {
    struct proc p;
    char dir[300];
    char conf[400], hosts[400], log[400];
    int port;
};

/* dnsmasq with conf (dnsmasq.conf lines) and hosts (addn-hosts lines), answering for
 * *.test only, on a free port (d->port); asserts it started. */
void dnsmasq_start(struct dnsmasq *d, const char *conf, const char *hosts);
/* Start it (again, after proc_kill) on its port with its files. */
void dnsmasq_run(struct dnsmasq *d);
/* New hosts file contents, re-read on SIGHUP. */
void dnsmasq_hosts(struct dnsmasq *d, const char *hosts);
/* New configuration (SRV records): dnsmasq started again on its port. */
void dnsmasq_conf(struct dnsmasq *d, const char *conf);

/* ---- etcd --------------------------------------------------------------------------- */

#define ETCD "/usr/bin/etcd"

/* etcd listens on two client ports: port (for the source under test) and side_port
 * (for the test's own calls). Running it on the side port alone keeps a watcher on
 * port away while the test changes keys. */
struct etcd {
    struct proc p;
    char dir[300], data[400], log[400];
    int port, side_port, peer_port;
};

/* A fresh etcd (temp data dir, three free ports) on both client ports, healthy. */
void etcd_start(struct etcd *e);
/* Start it (again, after proc_kill) on the side port, and on port when watcher_port;
 * asserts it became healthy. */
void etcd_run(struct etcd *e, bool watcher_port);
/* Kill it and run it again. */
void etcd_restart(struct etcd *e, bool watcher_port);
/* POST a gateway call on the side port (asserts a 200); the answer's header.revision. */
long long etcd_call(const struct etcd *e, const char *path, const char *body);
/* Put key = value, delete key; the revision. */
long long etcd_put(const struct etcd *e, const char *key, const char *value);
long long etcd_delete(const struct etcd *e, const char *key);

/* ---- a source's reports ----------------------------------------------------------- */

struct recorder {
    int good;           /* reports with error == NULL */
    int empty_good;     /* of which with n == 0 */
    int errors;         /* reports with an error */
    char set[8192];     /* the last good set: "url=weight" sorted, space-separated */
    char error[1024];   /* the last error */
    double set_at_ms;   /* when the last good set arrived */
    double error_at_ms; /* when the last error arrived */
};

/* A discovery_cb: arg is a struct recorder. */
void recorder_cb(void *arg, enum pool_source src, const struct pool_found *found, int n,
                 const char *error);

/* Run the loop until the last good set is want (same format as set), or timeout_ms.
 * Returns the ms it took, -1 on timeout. */
double wait_set(struct loop *l, struct recorder *r, const char *want, int timeout_ms);
/* Run the loop until r->errors reaches n; the ms it took or -1. */
double wait_errors(struct loop *l, struct recorder *r, int n, int timeout_ms);
/* Run the loop until r->good reaches n; the ms it took or -1. */
double wait_good(struct loop *l, struct recorder *r, int n, int timeout_ms);
/* Run the loop until the set is want (asserts, within 5 x bound_ms), then assert it
 * arrived within bound_ms of t0 (taken before the change was made); prints the delay
 * as "<tag>: <what> reached the callback in N ms". */
void assert_set_within(struct loop *l, struct recorder *r, const char *want, const char *what,
                       double t0, int bound_ms, const char *tag);
/* Run the loop for ms (events keep flowing). */
void run_for(struct loop *l, int ms);

/* CI=true: a missing program is a failure, not a skip. */
bool sources_in_ci(void);
/* Whether program (from Debian package package) is installed; when not, says so on
 * stderr: "FAIL: ..." under CI=true, else "SKIP: ...". */
bool sources_have(const char *program, const char *package);
/* The main() of a suite that needs program (from Debian package package): when it is
 * missing, a failure under CI=true (exit 1), else a skip (exit 77) saying why; when it
 * is there, s runs (harness_main) with the log at warn. */
int sources_main(Suite *s, const char *program, const char *package);

#endif
