/*
 * units.h - the scalar value syntaxes of the configuration: durations, sizes,
 * booleans and plain integers (units.c).
 *
 * Shared by the YAML loader, the environment overrides, the per-request
 * X-Ahoyd-* headers and the tests. Pure: no allocation, no locale.
 */
#ifndef AHOYD_UNITS_H
#define AHOYD_UNITS_H

#include <stdbool.h>
#include <stdint.h>

/* Duration "250ms", "1.5s", "2m", "1h", "30" (seconds) -> ms. Returns 0 ok, -1 bad. */
int units_parse_duration(const char *s, int64_t *ms);
/* Size "8MiB", "32k", "1024", "2GB" (binary) -> bytes. Returns 0 ok, -1 bad. */
int units_parse_size(const char *s, uint64_t *bytes);
/* Boolean true/false/yes/no/on/off (case-insensitive). Returns 0 ok, -1 bad. */
int units_parse_bool(const char *s, bool *out);
/* Non-negative decimal integer without sign or junk. Returns 0 ok, -1 bad. */
int units_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

#endif
