/* strbuf.c - see strbuf.h. */
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
    if (p == NULL)
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
    if (big == NULL) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    strbuf_add(b, big, (size_t)n);
    free(big);
}
