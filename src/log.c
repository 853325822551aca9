/*
 * log.c - error log and access log.
 *
 * The error log goes to stderr. When stderr is connected to the journal
 * (JOURNAL_STREAM names the same device and inode) every line starts with a
 * "<N>" syslog priority and carries no timestamp, because journald adds its
 * own; otherwise lines carry an ISO-8601 UTC timestamp.
 *
 * The access log is written with one write(2) per line, so lines from a
 * single process never interleave and a reopen (SIGUSR1) loses none: the old
 * descriptor is closed only after the new one is in place. Every field that
 * carries client data is quoted and escaped (SPEC 7), so a client cannot
 * forge a log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "strbuf.h"

const char *const log_level_names[LOG_LEVEL_COUNT] = {"error", "warn", "info", "debug"};

static enum log_level current_level = LOG_LEVEL_INFO;
static bool to_journal;

static int access_fd = -1; /* -1: off */
static bool access_is_file;
static char *access_path;
static enum access_log_format access_format;

static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

const char *log_level_name(enum log_level l)
{
    return (unsigned)l < LOG_LEVEL_COUNT ? log_level_names[l] : "info";
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i < LOG_LEVEL_COUNT; i++)
        if (strcmp(name, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return -1;
}

void log_init(enum log_level level)
{
    current_level = level;
    to_journal = stderr_is_journal();
}

void log_set_level(enum log_level level)
{
    current_level = level;
}

enum log_level log_level_current(void)
{
    return current_level;
}

bool log_enabled(enum log_level level)
{
    return level <= current_level;
}

static size_t format_time(char *buf, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    return n;
}

/* The text of the newest error this thread logged since log_error_mark(); "" = none. */
static _Thread_local char last_error[512];

void log_error_mark(void)
{
    last_error[0] = '\0';
}

const char *log_last_error(void)
{
    return last_error[0] ? last_error : NULL;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const int priority[LOG_LEVEL_COUNT] = {3, 4, 6, 7};
    char line[4096];
    size_t n;
    va_list ap;

    if (!log_enabled(level))
        return;
    if (to_journal) {
        n = (size_t)snprintf(line, sizeof line, "<%d>", priority[level]);
    } else {
        n = format_time(line, sizeof line);
        n += (size_t)snprintf(line + n, sizeof line - n, " ahoyd[%d] %s: ", (int)getpid(),
                              log_level_names[level]);
    }
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    if (level == LOG_LEVEL_ERROR)
        snprintf(last_error, sizeof last_error, "%s", line + n);
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    /* one line per message: a newline inside would forge a second line */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

/* ---- access log ---------------------------------------------------------- */

static int open_append(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int access_log_open(const char *target, enum access_log_format format)
{
    access_log_close();
    access_format = format;
    if (!target || strcmp(target, "off") == 0)
        return 0;
    if (strcmp(target, "stderr") == 0) {
        access_fd = STDERR_FILENO;
        return 0;
    }
    int fd = open_append(target);
    if (fd < 0)
        return -1;
    access_fd = fd;
    access_is_file = true;
    access_path = strdup(target);
    return 0;
}

int access_log_reopen(void)
{
    if (!access_is_file)
        return 0;
    int fd = open_append(access_path);
    if (fd < 0)
        return -1;
    int old = access_fd;
    access_fd = fd;
    close(old);
    return 0;
}

void access_log_close(void)
{
    if (access_is_file && access_fd >= 0)
        close(access_fd);
    access_fd = -1;
    access_is_file = false;
    free(access_path);
    access_path = NULL;
}

bool access_log_enabled(void)
{
    return access_fd >= 0;
}

/* A bounded line buffer: appends never write past cap, and a full buffer stays full. */
struct linebuf {
    char *buf;
    size_t len, cap;
};

static void lb_putc(struct linebuf *b, char c)
{
    if (b->len + 1 < b->cap)
        b->buf[b->len++] = c;
}

static void lb_puts(struct linebuf *b, const char *s)
{
    while (*s)
        lb_putc(b, *s++);
}

static void lb_printf(struct linebuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void lb_printf(struct linebuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    lb_puts(b, tmp);
}

/* Quote s: JSON string syntax in both formats, with \xNN for raw bytes >= 0x80 in
 * logfmt (json_escape). At most max bytes of s are written (a field cannot crowd out
 * the ones after it); it also stops, still closing the quote, when fewer than 16 bytes
 * of the line are left (room for the rest of the line). */
static void lb_quote_max(struct linebuf *b, const char *s, bool json, size_t max)
{
    if (!s) {
        lb_puts(b, json ? "null" : "\"-\"");
        return;
    }
    lb_putc(b, '"');
    if (b->len + 16 < b->cap) /* the escapes may run 6 bytes past room: 16 are kept */
        b->len += json_escape(b->buf + b->len, b->cap - 16 - b->len, s, max, !json, NULL);
    lb_putc(b, '"');
}

static void lb_quote(struct linebuf *b, const char *s, bool json)
{
    lb_quote_max(b, s, json, 256);
}

void access_log_write(const struct access_entry *e)
{
    char line[8192];
    char tbuf[40];
    struct linebuf b = {line, 0, sizeof line - 1}; /* one byte kept for the newline */
    bool json = access_format == ACCESS_LOG_JSON;
    char dur[32], up[32], ttfb[32];

    if (access_fd < 0)
        return;
    format_time(tbuf, sizeof tbuf);
    snprintf(dur, sizeof dur, "%.3f", (double)e->duration_us / 1e6);
    if (e->upstream_us >= 0)
        snprintf(up, sizeof up, "%.3f", (double)e->upstream_us / 1e6);
    else
        snprintf(up, sizeof up, json ? "null" : "-");
    if (e->ttfb_us >= 0)
        snprintf(ttfb, sizeof ttfb, "%.3f", (double)e->ttfb_us / 1e6);
    else
        snprintf(ttfb, sizeof ttfb, json ? "null" : "-");
    const char *flags = e->flags && *e->flags ? e->flags : NULL;

    if (json) {
        lb_printf(&b, "{\"time\":\"%s\",\"request_id\":", tbuf);
        lb_quote(&b, e->request_id, true);
        lb_puts(&b, ",\"method\":");
        lb_quote(&b, e->method, true);
        lb_puts(&b, ",\"service\":");
        lb_quote(&b, e->service, true);
        lb_puts(&b, ",\"path\":");
        lb_quote_max(&b, e->path, true, 4096);
        lb_printf(&b, ",\"status\":%d,\"attempts\":%d,\"endpoint\":", e->status, e->attempts);
        lb_quote_max(&b, e->endpoint, true, 1024);
        lb_printf(&b, ",\"duration\":%s,\"upstream_time\":%s,\"flags\":", dur, up);
        lb_quote(&b, flags ? flags : "", true);
        lb_puts(&b, ",\"client\":");
        lb_quote(&b, e->client, true);
        lb_printf(&b, ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"target\":",
                  (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out);
        lb_quote_max(&b, e->target, true, 4096);
        lb_puts(&b, ",\"tried\":");
        lb_quote_max(&b, e->tried, true, 1024);
        lb_printf(&b, ",\"ttfb\":%s", ttfb);
        lb_putc(&b, '}');
    } else {
        lb_printf(&b, "time=%s request_id=", tbuf);
        lb_quote(&b, e->request_id, false);
        lb_puts(&b, " method=");
        lb_quote(&b, e->method, false);
        lb_puts(&b, " service=");
        lb_quote(&b, e->service, false);
        lb_puts(&b, " path=");
        lb_quote_max(&b, e->path, false, 4096);
        lb_printf(&b, " status=%d attempts=%d endpoint=", e->status, e->attempts);
        lb_quote_max(&b, e->endpoint, false, 1024);
        lb_printf(&b, " duration=%s upstream_time=%s flags=%s", dur, up, flags ? flags : "-");
        lb_puts(&b, " client=");
        lb_quote(&b, e->client, false);
        lb_printf(&b, " bytes_in=%llu bytes_out=%llu target=", (unsigned long long)e->bytes_in,
                  (unsigned long long)e->bytes_out);
        lb_quote_max(&b, e->target, false, 4096);
        lb_puts(&b, " tried=");
        lb_quote_max(&b, e->tried, false, 1024);
        lb_printf(&b, " ttfb=%s", ttfb);
    }
    line[b.len++] = '\n';
    ssize_t w = write(access_fd, line, b.len);
    (void)w;
}
