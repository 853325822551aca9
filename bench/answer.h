/*
 * answer.h - for the bench clients (holdconns.c, nreq.c): a monotonic clock, and
 * reading an HTTP answer with Content-Length framing into a buffer.
 */
#ifndef AHOYD_BENCH_ANSWER_H
#define AHOYD_BENCH_ANSWER_H

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The bytes of the whole answer starting at buf (NUL-terminated): its head and
 * Content-Length bytes of body (0 without the header); -1 while the head is incomplete. */
static inline long answer_length(const char *buf)
{
    const char *end = strstr(buf, "\r\n\r\n");
    if (!end)
        return -1;
    long cl = 0;
    for (const char *p = buf; p < end;) {
        const char *nl = strstr(p, "\r\n");
        if (!nl)
            break;
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            cl = atol(p + 15);
        p = nl + 2;
    }
    return (long)(end - buf) + 4 + cl;
}

enum answer { ANSWER_MORE, ANSWER_OK, ANSWER_BAD, ANSWER_TOO_LARGE };

/* n more bytes were read at buf + *len (buf has cap bytes, one kept for a NUL; *need is
 * the answer's length once known, else -1): the answer is complete and a 200, complete
 * and not, too large for buf, or still incomplete. */
static inline enum answer answer_more(char *buf, size_t cap, size_t *len, long *need, size_t n)
{
    *len += n;
    buf[*len] = '\0';
    if (*need < 0)
        *need = answer_length(buf);
    if (*need >= 0 && (long)*len >= *need)
        return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? ANSWER_OK : ANSWER_BAD;
    return *len >= cap - 1 ? ANSWER_TOO_LARGE : ANSWER_MORE;
}

#endif
