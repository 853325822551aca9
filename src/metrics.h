/*
 * metrics.h - the Prometheus text exposition (SPEC 6) of the counters kept by
 * counters.c, runtime.c and proxy.c.
 */
#ifndef AHOYD_METRICS_H
#define AHOYD_METRICS_H

#include <stddef.h>

#include "runtime.h"

/* The whole exposition for the current runtime (NULL: no services), malloc'd; *len set.
 * NULL when out of memory. */
char *metrics_render(const struct runtime *rt, size_t *len);

#endif
