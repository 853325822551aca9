/*
 * units.c - the scalar value syntaxes of SPEC 2.2: durations, sizes,
 * booleans and plain integers, plus log level names.
 *
 * These are shared by the YAML loader, the environment overrides and the
 * tests, so they live apart from config.c. Every parser is strict (no
 * leading sign, no spaces, no trailing junk) and rejects values that would
 * overflow instead of wrapping. Pure: no allocation, no locale.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "units.h"

/* Longest duration accepted: about 31.7 years, so that now + timeout and
 * milliseconds-to-microseconds conversions can never overflow an int64. */
#define UNITS_MAX_DURATION_MS INT64_C(1000000000000)

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Accumulate decimal digits into *v; false on overflow beyond max. */
static bool add_digit(uint64_t *v, char c, uint64_t max)
{
    uint64_t d = (uint64_t)(c - '0');
    if (*v > (max - d) / 10)
        return false;
    *v = *v * 10 + d;
    return true;
}

int units_parse_duration(const char *s, int64_t *ms)
{
    if (!s || !is_digit(*s))
        return -1;
    const uint64_t max = (uint64_t)UNITS_MAX_DURATION_MS;
    uint64_t whole = 0;
    const char *p = s;
    while (is_digit(*p)) {
        if (!add_digit(&whole, *p, max))
            return -1;
        p++;
    }
    /* The fraction is kept as frac / frac_scale with at most 9 digits: finer
     * digits than a nanosecond are read but cannot change the result. */
    uint64_t frac = 0, frac_scale = 1;
    if (*p == '.') {
        p++;
        if (!is_digit(*p))
            return -1;
        while (is_digit(*p)) {
            if (frac_scale < UINT64_C(1000000000)) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                frac_scale *= 10;
            }
            p++;
        }
    }
    uint64_t mult;
    if (*p == '\0' || strcmp(p, "s") == 0)
        mult = 1000;
    else if (strcmp(p, "ms") == 0)
        mult = 1;
    else if (strcmp(p, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        mult = 3600 * 1000;
    else
        return -1;
    if (whole > max / mult)
        return -1;
    uint64_t total = whole * mult;
    /* frac * mult <= 1e9 * 3.6e6: fits; round half up to whole milliseconds */
    uint64_t part = (frac * mult * 2 + frac_scale) / (2 * frac_scale);
    if (total > max - part)
        return -1;
    *ms = (int64_t)(total + part);
    return 0;
}

int units_parse_size(const char *s, uint64_t *bytes)
{
    if (!s || !is_digit(*s))
        return -1;
    uint64_t v = 0;
    const char *p = s;
    while (is_digit(*p)) {
        if (!add_digit(&v, *p, UINT64_MAX))
            return -1;
        p++;
    }
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {
        {"", 0},    {"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
        {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].suffix) != 0)
            continue;
        if (units[i].shift > 0 && v > (UINT64_MAX >> units[i].shift))
            return -1;
        *bytes = v << units[i].shift;
        return 0;
    }
    return -1;
}

int units_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    if (!s)
        return -1;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int units_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !is_digit(*s))
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (!is_digit(*p) || !add_digit(&v, *p, (uint64_t)INT64_MAX))
            return -1;
    }
    if ((int64_t)v < min || (int64_t)v > max)
        return -1;
    *out = (int64_t)v;
    return 0;
}
