/*
 * template.c - the syntax of a declared method, "VERB /path/{param}".
 *
 * Checked when the configuration is loaded (config_service.c) and again when
 * route.c compiles a service's methods, so it lives below both: a template is
 * an HTTP token, spaces, then a path of pchar segments and whole-segment
 * {name} placeholders, each name used once. Pure: no allocation.
 */
#include <ctype.h>
#include <string.h>

#include "http.h"
#include "template.h"

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static bool is_hex(char c)
{
    return isxdigit((unsigned char)c) != 0;
}

/* A byte a literal template segment may hold: RFC 3986 pchar minus '%'
 * (checked separately); anything else could never match a safe target. */
static bool is_literal_char(char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

/* Does path[0..end) hold a whole segment equal to seg? */
static bool placeholder_seen(const char *path, size_t end, const char *seg, size_t seg_len)
{
    size_t i = 1;
    while (i < end) {
        size_t start = i;
        while (i < end && path[i] != '/')
            i++;
        if (i - start == seg_len && memcmp(path + start, seg, seg_len) == 0)
            return true;
        i++;
    }
    return false;
}

/*
 * Check one template path ("/a/{b}/c/"): starts with '/', literal segments of
 * pchar bytes and valid %XX escapes, no "." or ".." segment, placeholders
 * "{name}" filling whole segments, names [A-Za-z_][A-Za-z0-9_]* used once.
 * Over 80 lines because it is one pass over the segments with a precise
 * message for each way a segment can be wrong.
 */
bool template_path_valid(const char *path, size_t len, const char **why)
{
    if (len == 0 || path[0] != '/') {
        *why = "path must start with '/'";
        return false;
    }
    size_t i = 1;
    while (i <= len) {
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        const char *seg = path + start;
        size_t seg_len = i - start;
        if (seg_len > 0 && seg[0] == '{') {
            if (seg_len == 2 && seg[1] == '}') {
                *why = "empty placeholder name";
                return false;
            }
            if (seg[seg_len - 1] != '}' || seg_len < 3) {
                *why = seg_len >= 2 && memchr(seg + 1, '}', seg_len - 1) != NULL
                           ? "a {placeholder} must fill a whole path segment"
                           : "unbalanced '{' in path";
                return false;
            }
            if (!is_name_start(seg[1])) {
                *why = "placeholder name must match [A-Za-z_][A-Za-z0-9_]*";
                return false;
            }
            for (size_t k = 2; k + 1 < seg_len; k++) {
                if (seg[k] == '{' || seg[k] == '}') {
                    *why = "nested or unbalanced braces in path";
                    return false;
                }
                if (!is_name_char(seg[k])) {
                    *why = "placeholder name must match [A-Za-z_][A-Za-z0-9_]*";
                    return false;
                }
            }
            /* the same name twice would make a named call ambiguous */
            if (placeholder_seen(path, start, seg, seg_len)) {
                *why = "placeholder name used twice in path";
                return false;
            }
        } else {
            for (size_t k = 0; k < seg_len; k++) {
                char c = seg[k];
                if (c == '{' || c == '}') {
                    *why = memchr(seg, '{', seg_len) && memchr(seg, '}', seg_len)
                               ? "a {placeholder} must fill a whole path segment"
                               : "unbalanced brace in path";
                    return false;
                }
                if (c == '?' || c == '#') {
                    *why = "no '?' or '#' allowed in a method path";
                    return false;
                }
                if (c == ' ' || c == '\t') {
                    *why = "no spaces allowed in a method path";
                    return false;
                }
                if (c == '%') {
                    if (k + 2 >= seg_len || !is_hex(seg[k + 1]) || !is_hex(seg[k + 2])) {
                        *why = "bad %-escape in path";
                        return false;
                    }
                    k += 2;
                    continue;
                }
                if (!is_literal_char(c)) {
                    *why = "character not allowed in a method path";
                    return false;
                }
            }
            if ((seg_len == 1 && seg[0] == '.') ||
                (seg_len == 2 && seg[0] == '.' && seg[1] == '.')) {
                *why = "'.' and '..' segments are not allowed in a method path";
                return false;
            }
        }
        i++; /* skip the '/' (or step past the end) */
    }
    return true;
}

bool template_valid(const char *spec, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!spec) {
        *why = "empty method template";
        return false;
    }
    size_t n = strlen(spec);
    size_t v = 0;
    while (v < n && spec[v] != ' ')
        v++;
    if (v == 0 || !http_is_token(spec, v)) {
        *why = "method must be 'VERB /path' with VERB an HTTP token";
        return false;
    }
    if (v == n) {
        *why = "method must be 'VERB /path'";
        return false;
    }
    size_t p = v;
    while (p < n && spec[p] == ' ')
        p++;
    return template_path_valid(spec + p, n - p, why);
}
