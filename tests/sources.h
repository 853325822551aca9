/*
 * sources.h - helpers for the discovery source suites (check_dns, check_etcd_watch):
 * a recorder for what a source reports, and running a loop in-process until the
 * recorder shows a condition (bounded).
 */
#ifndef AHOYD_TESTS_SOURCES_H
#define AHOYD_TESTS_SOURCES_H

#include <check.h>
#include <stdbool.h>

#include "discovery.h"
#include "loop.h"

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

/* The main() of a suite that needs program (from Debian package package): when it is
 * missing, a failure under CI=true (exit 1), else a skip (exit 77) saying why; when it
 * is there, s runs (harness_main) with the log at warn. */
int sources_main(Suite *s, const char *program, const char *package);

#endif
