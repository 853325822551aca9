/*
 * admin.h - the admin API on admin-listen (SPEC 6): health, readiness,
 * Prometheus metrics, the services view, reload, and breaker reset. A second
 * libmicrohttpd daemon on the same loop; never reachable on listen.
 */
#ifndef AHOYD_ADMIN_H
#define AHOYD_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "loop.h"
#include "runtime.h"

struct admin;

struct admin_hooks {
    void *arg;
    /* the current runtime (not referenced: use it within the callback only) */
    struct runtime *(*current)(void *arg);
    /* false while starting or draining */
    bool (*ready)(void *arg);
    /* reload the configuration: 0 when it took effect, else -1 with *errors set to a
     * malloc'd array of *n_errors malloc'd strings (the caller frees them) */
    int (*reload)(void *arg, char ***errors, size_t *n_errors);
};

/* Bind la and serve on the loop; logs "admin listening on ADDR". token may be NULL
 * (then no Authorization is required). Returns NULL after logging on failure. */
struct admin *admin_start(struct loop *loop, const struct listen_addr *la, const char *token,
                          const struct admin_hooks *hooks);
/* Replace the token after a reload (NULL = none). */
void admin_set_token(struct admin *a, const char *token);
void admin_stop(struct admin *a);

#endif
