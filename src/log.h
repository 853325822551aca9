/*
 * log.h - the error log (leveled, to stderr, with <N> priority prefixes when
 * stderr is the journal) and the access log (one line per request, logfmt or
 * JSON, to stderr, a file, or nowhere).
 */
#ifndef AHOYD_LOG_H
#define AHOYD_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
#define LOG_LEVEL_COUNT 4
enum access_log_format { ACCESS_LOG_LOGFMT = 0, ACCESS_LOG_JSON };

/* The level names, indexed by enum log_level: "error", "warn", "info", "debug". */
extern const char *const log_level_names[LOG_LEVEL_COUNT];
const char *log_level_name(enum log_level l);
/* A level by name (exact). Returns 0, or -1 for anything else. */
int log_level_parse(const char *name, enum log_level *out);

void log_init(enum log_level level);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
enum log_level log_level_current(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget the last error; log_last_error() then gives the text (no time or level) of the
 * newest error this thread logged since, or NULL: a step that logs why it failed (a
 * bind's system error) can be quoted by its caller (a reload's error list). */
void log_error_mark(void);
const char *log_last_error(void);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                         \
    do {                                                                                       \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                      \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                             \
    } while (0)

/* One access-log record (SPEC 7). Strings may be NULL (written as "-"/null). */
struct access_entry {
    const char *request_id;
    const char *method;
    const char *service;
    const char *path;       /* raw request-target */
    int status;
    int attempts;
    const char *endpoint;   /* URL of the last endpoint tried */
    int64_t duration_us;
    int64_t upstream_us;    /* time spent in upstream attempts; -1 when none */
    const char *flags;      /* "UO,URX" or "" */
    const char *client;     /* "address:port" or "unix" */
    uint64_t bytes_in;      /* body bytes from the client */
    uint64_t bytes_out;     /* body bytes to the client */
    const char *target;     /* path + query sent upstream (the last attempt's) */
    const char *tried;      /* endpoints attempted, in order, comma-separated */
    int64_t ttfb_us;        /* upstream time to the response head; -1 when none */
};

/* target: "stderr", "off" or a file path (opened for append). Returns 0 or -1 (errno). */
int access_log_open(const char *target, enum access_log_format format);
/* SIGUSR1: reopen the file (no-op for stderr/off). Returns 0 or -1. */
int access_log_reopen(void);
void access_log_close(void);
bool access_log_enabled(void);
void access_log_write(const struct access_entry *e);


#endif
