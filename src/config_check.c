/*
 * config_check.c - the consistency warnings of a valid configuration.
 *
 * Values that are each valid but do not make sense together: connect-timeout
 * not shorter than timeout, base-delay longer than max-delay, a deadline
 * shorter than one timeout, no service at all. A timeout or deadline of 0 is
 * no bound and never takes part; a connect-timeout or base-delay left at its
 * default under a shorter timeout or max-delay is not warned (the value set
 * wins, as meant). Each warning points at the key that makes
 * the pair inconsistent: a service's own key when it sets one of the two (the
 * other may be inherited from pyfly.client.* or be the default), otherwise
 * the global key, once, for every service that inherits both. The values are
 * the converted ones (struct config); the positions come from the tree,
 * where environment overrides are nodes labelled "env NAME".
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "config_int.h"

/* One value of a pair: what it is and where it was set. */
struct side {
    const char *key;    /* the key's own name, e.g. "connect-timeout" */
    const char *dotted; /* its global name, e.g. "pyfly.client.default.connect-timeout" */
    int64_t ms;
    const struct node *n; /* the value's node; NULL: the default */
    bool own;             /* set by the service itself */
};

/* How two values of one section are inconsistent. */
struct rule {
    bool (*bad)(int64_t a, int64_t b);
    bool a_default_quiet; /* a at its default: the set b simply wins, as meant */
    const char *a_says;   /* printf: a's key and value, b's key, value and origin */
    const char *b_says;   /* printf: b's key and value, a's key, value and origin */
};

static bool connect_vs_timeout(int64_t connect, int64_t timeout)
{
    return timeout > 0 && connect >= timeout;
}

static bool base_vs_max(int64_t base, int64_t max)
{
    return base > max;
}

static bool deadline_vs_timeout(int64_t deadline, int64_t timeout)
{
    return deadline > 0 && timeout > 0 && deadline < timeout;
}

static const struct rule rule_connect = {
    connect_vs_timeout,
    true, /* timeout: 2s under the default connect-timeout 5s bounds the connect too */
    "%s %s is not shorter than %s %s (%s), which includes the connect: it has no effect",
    "%s %s is not longer than %s %s (%s), which is part of it: the connect-timeout has no effect",
};
static const struct rule rule_delay = {
    base_vs_max,
    true, /* max-delay: 500ms under the default base-delay 1s caps every backoff */
    "%s %s is longer than %s %s (%s): every backoff is cut to max-delay",
    "%s %s is shorter than %s %s (%s): every backoff is cut to max-delay",
};
static const struct rule rule_deadline = {
    deadline_vs_timeout,
    false, /* never a default: the deadline's is 0 */
    "%s %s is shorter than one %s %s (%s): a slow attempt is cut by the deadline, never retried",
    "%s %s is longer than the %s %s (%s): a slow attempt is cut by the deadline, never retried",
};

/* Where the other value of a pair came from, for the message. */
static const char *origin_of(struct ctx *c, const struct side *s, const struct side *at)
{
    if (!s->n)
        return "the default";
    if (s->own == at->own) /* the same section: its position says enough */
        return cfg_pos(c, &s->n->src);
    if (!s->n->src.file)
        return cfg_pos(c, &s->n->src); /* "env NAME" */
    return arena_printf(&c->a, "%s at %s", s->dotted, cfg_pos(c, &s->n->src));
}

/* Warn when a and b break rule r. Service level (global false): only when the
 * service sets one of them; global level: only when one is not a default. */
static void check_pair(struct ctx *c, const struct rule *r, const struct side *a,
                       const struct side *b, bool global)
{
    if (!r->bad(a->ms, b->ms) || (r->a_default_quiet && !a->n))
        return;
    const struct side *at, *other;
    if (global) {
        at = a->n ? a : b->n ? b : NULL;
    } else {
        at = a->own ? a : b->own ? b : NULL;
    }
    if (!at)
        return; /* defaults, or a service that inherits both: said at the global level */
    other = at == a ? b : a;
    cfg_warn_at(c, &at->n->src, NULL, at == a ? r->a_says : r->b_says, at->key,
                dump_duration(c, at->ms), other->key, dump_duration(c, other->ms),
                origin_of(c, other, at));
}

static struct node *map_at(struct node *map, const char *key)
{
    struct node *n = node_get(map, key);
    return n != NULL && n->kind == N_MAP ? n : NULL;
}

/* A side: the service's own node (key in own, else alt_key in alt, a shortcut, which
 * an environment override in own beats), else the global node. */
static struct side side_of(const char *key, const char *dotted, int64_t ms, struct node *own,
                           struct node *alt, const char *alt_key, struct node *global)
{
    struct side s = {key, dotted, ms, NULL, false};
    struct node *n = own ? node_get(own, key) : NULL;
    if (!n && alt && (n = node_get(alt, alt_key)) != NULL)
        s.key = alt_key;
    if (n) {
        s.n = n;
        s.own = true;
    } else {
        s.n = global ? node_get(global, key) : NULL;
    }
    return s;
}

static void check_section(struct ctx *c, const struct service_conf *v, struct node *svc,
                          struct node *gdefault, struct node *gretry)
{
    bool global = svc == NULL;
    struct node *sretry = global ? NULL : map_at(svc, "retry");
    struct side timeout = side_of("timeout", "pyfly.client.default.timeout", v->timeout_ms, svc,
                                  NULL, NULL, gdefault);
    struct side connect = side_of("connect-timeout", "pyfly.client.default.connect-timeout",
                                  v->connect_timeout_ms, svc, NULL, NULL, gdefault);
    struct side deadline = side_of("deadline", "pyfly.client.default.deadline", v->deadline_ms, svc,
                                   NULL, NULL, gdefault);
    check_pair(c, &rule_connect, &connect, &timeout, global);
    check_pair(c, &rule_deadline, &deadline, &timeout, global);
    if (!global && v->retry.max_attempts <= 1)
        return; /* one attempt, no backoff (a global pair still matters to retry: 3) */
    struct side base = side_of("base-delay", "pyfly.client.retry.base-delay",
                               v->retry.base_delay_ms, sretry, svc, "retry-base-delay", gretry);
    struct side max = side_of("max-delay", "pyfly.client.retry.max-delay", v->retry.max_delay_ms,
                              sretry, NULL, NULL, gretry);
    check_pair(c, &rule_delay, &base, &max, global);
}

void cfg_check_consistency(struct ctx *c)
{
    const struct config *cfg = c->cfg;
    struct node *client = map_at(map_at(c->root, "pyfly"), "client");
    struct node *gdefault = map_at(client, "default");
    struct node *gretry = map_at(client, "retry");
    check_section(c, &c->policy, NULL, gdefault, gretry);

    struct node *svcs = node_get(client, "services");
    if (cfg->n_services == 0) {
        struct src whole = {c->files[0], 0, 0, 0, NULL};
        const struct src *at = svcs ? &node_get_key(client, "services")->src : &whole;
        cfg_warn_at(c, at, NULL,
                    "no service declared under pyfly.client.services: every call gets 404");
        return;
    }
    for (size_t i = 0; i < svcs->n; i++) {
        const struct service_conf *v =
            config_find_service(cfg, svcs->keys[i]->text, strlen(svcs->keys[i]->text));
        if (v && svcs->vals[i]->kind == N_MAP)
            check_section(c, v, svcs->vals[i], gdefault, gretry);
    }
}
