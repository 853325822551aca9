/*
 * runtime.h - the live state built from one struct config: per service its
 * endpoints (each with its circuit breaker, balancer state and in-flight
 * count), its compiled method table and its retry budget.
 *
 * A runtime is reference-counted: a request holds the runtime it began with
 * until it ends, so a reload can swap in a new one while old calls finish.
 * Endpoint and service state objects are reference-counted too and are handed
 * from the old runtime to the new one for every unchanged (service, endpoint
 * URL) pair, so breaker state and counters survive a reload (SPEC 2.6).
 */
#ifndef AHOYD_RUNTIME_H
#define AHOYD_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "balancer.h"
#include "breaker.h"
#include "config.h"
#include "counters.h"
#include "health.h"
#include "loop.h"
#include "outcome.h"
#include "outlier.h"
#include "panic.h"
#include "pool_diff.h"
#include "retry.h"
#include "route.h"
#include "slow_start.h"

struct service_rt;
struct checker;
struct upstream_attempt;

struct endpoint_rt {
    int refs;
    uint64_t id;                       /* unique in the process: a call's tried list names it */
    char *service_name;
    char *url;                         /* identity within the service */
    const struct endpoint_conf *conf;  /* of the newest runtime that holds it (admin view) */
    struct endpoint_conf *own_conf;    /* a discovered endpoint's URL parts, NULL = none yet */
    const struct breaker_policy *policy; /* = &policy_value */
    struct breaker_policy policy_value;  /* a copy of the newest config's policy: an endpoint
                                            may outlive every config that named it */
    bool retired;                        /* no longer in the current runtime (SPEC 2.6) */
    struct breaker breaker;
    struct balancer_state lb;
    int inflight;
    struct loop *loop;
    struct loop_timer recovery_timer;  /* OPEN -> HALF_OPEN made visible by a timer */
    uint64_t attempts[OUTCOME_LABELS]; /* by outcome_label_index() */
    uint64_t transitions_to[3];
    struct counters_histogram attempt_duration; /* every attempt counted in attempts[] */
    int consecutive_failures;    /* failures in a row (outcome_is_failure), whatever the
                                    breaker's state; a success or an admin reset zeroes it */
    struct outcome last_failure; /* the newest failure, valid when last_failure_at_ms */
    int64_t last_failure_at_ms;  /* its Unix time in ms; 0 = none yet */

    /* health and ejection (SPEC 4.7), slow start (4.5): they survive reloads with the
     * endpoint; the policies are copies of the newest config's, like policy_value */
    const struct service_conf *svc_conf; /* of the newest runtime that holds it */
    bool fresh;                          /* created by the runtime being built */
    struct health health;
    struct health_policy health_policy;
    int64_t last_check_unix_ms;          /* wall clock of the last check's end, 0 = none */
    int last_check_status;               /* its status, 0 = none */
    uint64_t checks[HEALTH_BAD_STATUS + 1]; /* by enum health_outcome */
    struct checker *checker;             /* runs its checks (checker.c), NULL = none */
    struct upstream_attempt *check;      /* the check in flight */
    struct loop_timer health_timer;      /* the next check */
    struct outlier outlier;
    struct outlier_policy outlier_policy;
    int64_t ejected_until_unix_ms;       /* wall clock of the ejection's end */
    struct loop_timer eject_timer;       /* ends an ejection */
    struct slow_start slow_start;
    int64_t slow_start_ms;               /* the service's slow-start, 0 = none */
};

/* What one discovery source of a service did (SPEC 4.6), shown by /v1/services. */
struct discovery_status {
    bool active;                  /* the service has this source now */
    int64_t last_success_unix_ms; /* the last good answer, 0 = none yet */
    int64_t last_error_unix_ms;   /* the last failed lookup, 0 = none */
    char last_error[256];
    uint64_t updates;             /* answers that changed the pool */
    uint64_t errors;              /* failed lookups */
    int endpoints;                /* in its last good answer */
};

/* Per-service state that outlives reloads (matched by service name). */
struct service_state {
    int refs;
    char *name;
    struct retry_budget budget;
    int inflight;
    int tunnels_open;
    uint64_t retries;
    struct service_counters *counters; /* counters.c: requests, errors, durations */
    struct panic_state panic;          /* SPEC 4.7: logged when it begins and ends */
    struct discovery_status discovery[POOL_SOURCES]; /* [POOL_SOURCE_STATIC] unused */
};

/*
 * A service's pool is static endpoints first (config order), then the discovered ones,
 * slot i being endpoints[i], confs[i] (its URL parts: the config's, or a discovered
 * endpoint's own), members[i] (URL and weight by source, pool_diff's view),
 * weights[i] (effective) and shown[i] (the source shown). A discovery change replaces
 * every array at once, under the state lock, so a pick sees one pool or the other;
 * a call names the endpoints it tried by id, not by slot.
 */
struct service_rt {
    const struct service_conf *conf;
    struct endpoint_rt **endpoints;
    size_t n_endpoints;
    const struct endpoint_conf **confs;
    struct pool_member *members;
    int *weights;
    enum pool_source *shown;
    struct route_table routes;
    struct service_state *state;
};

struct runtime {
    int refs;
    struct config *cfg;           /* owned */
    struct service_rt *services;  /* config order */
    size_t n_services;
};

/* Build from cfg (takes ownership of cfg on success). prev (may be NULL) lends its
 * endpoint and service state objects. Returns NULL with *err (malloc'd) on failure. */
struct runtime *runtime_new(struct config *cfg, const struct runtime *prev, struct loop *loop,
                            char **err);
/* After a swap: mark the endpoints of old that cur no longer has, so calls still
 * running on old retry only among endpoints that exist. */
void runtime_retire_missing(struct runtime *old, struct runtime *cur);
/* Log the services and endpoints a reload added or removed (SPEC 7). */
void runtime_log_changes(const struct runtime *old, const struct runtime *cur);
struct runtime *runtime_ref(struct runtime *rt);
void runtime_unref(struct runtime *rt);

struct service_rt *runtime_find(struct runtime *rt, const char *name, size_t len);

/*
 * Apply source src's new set to the pool of s (SPEC 4.6): endpoints that stay keep
 * their state, new ones start closed (unhealthy and due for a check at once when the
 * service checks health; in slow start), removed ones are retired (no new calls; freed
 * when their last call ends). The change is logged ("service: +url -url") when there is
 * one. Returns the number of changes (0: none), -1 when out of memory or
 * RUNTIME_POOL_TOO_MANY when the set lists more than RUNTIME_POOL_MAX_PER_SOURCE
 * endpoints (the pool is then unchanged).
 */
#define RUNTIME_POOL_MAX_PER_SOURCE 4096
#define RUNTIME_POOL_TOO_MANY (-2)
int runtime_pool_update(struct service_rt *s, enum pool_source src,
                        const struct pool_found *found, int n, struct loop *loop);

/* An attempt holds its endpoint even across a reload that removes it. */
void endpoint_unref(struct endpoint_rt *ep);

/* An attempt on ep ended with o after elapsed_us (not for an attempt cancelled because
 * the client left). cut_by_deadline: the call's deadline ended it (o is its timeout),
 * which is not the endpoint's failure. Counts it, times it, keeps the failure streak and
 * the last failure, and logs a failure at debug level with the request's id. */
void endpoint_note_attempt(struct endpoint_rt *ep, const struct outcome *o, bool cut_by_deadline,
                           int64_t elapsed_us, const char *request_id, int attempt);
/* Log a breaker transition and keep its counters and recovery timer in step. A move to
 * open names its cause: the failure count and ep's last failure. */
void endpoint_note_transition(struct endpoint_rt *ep, const struct breaker_transition *tr);
/* The admin reset: breaker closed, failure streak zeroed. */
void endpoint_reset(struct endpoint_rt *ep);
/* breaker_tick with the transition noted. */
void endpoint_tick(struct endpoint_rt *ep, int64_t now_ms);

/* An attempt's outcome for outlier ejection (r: the breaker's failure rule), within the
 * pool of svc; an ejection is logged and ended by a timer. */
void endpoint_note_outcome(struct endpoint_rt *ep, const struct service_rt *svc,
                           enum breaker_result r, int64_t now_ms);
/* End an ejection whose time is up (logged; slow start begins). */
void endpoint_eject_tick(struct endpoint_rt *ep, int64_t now_ms);
/* The endpoint is back (healthy again, breaker closed again, ejection over): slow start. */
void endpoint_came_back(struct endpoint_rt *ep, int64_t now_ms);
/* Is the endpoint usable (healthy and not ejected; SPEC 4.7)? */
bool endpoint_usable(const struct endpoint_rt *ep);

/*
 * The candidates of one pick (SPEC 4.5, 4.7): admit[i] from the breaker of endpoint i, set
 * to ADMIT_NO for one that is not a candidate (retired; unhealthy or ejected unless the
 * service is in panic), weight[i] through slow start (every endpoint on the same scale).
 * Ticks breakers and ejections and logs panic entry and exit. Returns the number of
 * candidates; *none_usable tells a pool with no usable endpoint and panic off
 * (503 no_endpoints) from one whose breakers refuse (503 circuit_open).
 */
int service_candidates(struct service_rt *s, int64_t now_ms, enum balancer_admit *admit,
                       int *weight, bool *none_usable);

#endif
