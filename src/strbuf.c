/*
 * strbuf.c - growing buffers: the NUL-terminated string the JSON bodies,
 * query strings, YAML dump and metrics text are built in (out of memory is
 * noted once in failed, checked at the end), the JSON escaping every byte a
 * client sends goes through, byte buffers for bodies and the doubling growth
 * of item arrays: one place, so every buffer grows and fails the same way.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* Room for need bytes: the capacity doubles from first, clamped to limit (0: none)
 * when limit still holds need. */
static int grow(char **buf, size_t *cap, size_t need, size_t first, size_t limit)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    if (limit != 0 && c > limit && limit >= need)
        c = limit;
    char *p = realloc(*buf, c);
    if (!p)
        return -1;
    *buf = p;
    *cap = c;
    return 0;
}

void strbuf_add(struct strbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (grow(&b->s, &b->cap, b->len + n + 1, 64, 0) != 0) {
        b->failed = true;
        return;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

int strbuf_bytes_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n,
                        size_t limit)
{
    if (grow(buf, cap, *len + n, 4096, limit) != 0)
        return -1;
    memcpy(*buf + *len, data, n);
    *len += n;
    return 0;
}

void strbuf_puts(struct strbuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        strbuf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    strbuf_add(b, big, (size_t)n);
    free(big);
}

size_t json_escape(char *dst, size_t room, const char *s, size_t max, bool high_as_x,
                   size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0;
    for (; i < max && s[i] != '\0' && o < room; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            dst[o++] = '\\';
            dst[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !high_as_x)) {
            memcpy(dst + o, "\\u00", 4);
            dst[o + 4] = hex[c >> 4];
            dst[o + 5] = hex[c & 15];
            o += 6;
        } else if (c >= 0x80) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    if (used)
        *used = i;
    return o;
}

void strbuf_json_string(struct strbuf *b, const char *s)
{
    char chunk[256];
    size_t len = strlen(s), off = 0;

    strbuf_add(b, "\"", 1);
    while (off < len) {
        size_t used;
        size_t n = json_escape(chunk, sizeof chunk - 6, s + off, len - off, false, &used);
        strbuf_add(b, chunk, n);
        off += used;
    }
    strbuf_add(b, "\"", 1);
}

void *array_grow(void *items, size_t n, size_t *cap, size_t size, size_t first)
{
    if (n < *cap)
        return items;
    size_t c = *cap ? *cap * 2 : first;
    void *grown = realloc(items, c * size);
    if (grown)
        *cap = c;
    return grown;
}
