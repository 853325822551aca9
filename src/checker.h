/*
 * checker.h - the I/O side of active health checks (SPEC 4.7): a GET of the
 * service's health-check path on every endpoint, every interval (+-10 %),
 * on connections of its own.
 *
 * One checker runs on the first worker's loop with an upstream (curl multi,
 * so connection cache) of its own: a check never takes or delays a client's
 * connection. The policy (thresholds, expect, schedule) is health.c; the
 * state lives in each struct endpoint_rt and so survives reloads.
 */
#ifndef AHOYD_CHECKER_H
#define AHOYD_CHECKER_H

#include "loop.h"
#include "runtime.h"

struct checker;

struct checker *checker_new(struct loop *loop);
/* rt is the current runtime (after start or a reload's swap): checks run for each of
 * its endpoints whose service has a health-check, at the time their state says (kept
 * endpoints keep their schedule, joined ones are checked at once); endpoints whose
 * service dropped its health-check stop being checked. */
void checker_apply(struct checker *c, struct runtime *rt);
/* After runtime_retire_missing(old, rt): checks of the endpoints retired from old stop. */
void checker_retire(struct checker *c, struct runtime *old);
/* Stop every check of rt (before shutdown). */
void checker_stop(struct checker *c, struct runtime *rt);
void checker_free(struct checker *c);

#endif
