/*
 * procstat.h - the process's own resource use, for the standard process_*
 * metrics that the Prometheus client libraries export: CPU time, memory, file
 * descriptors and start time, read from getrusage(), getrlimit() and /proc.
 */
#ifndef AHOYD_PROCSTAT_H
#define AHOYD_PROCSTAT_H

#include <stddef.h>
#include <stdint.h>

struct procstat {
    double cpu_seconds;     /* user + system */
    int64_t resident_bytes; /* -1 when unknown (no /proc) */
    int64_t virtual_bytes;  /* -1 when unknown */
    int64_t open_fds;       /* -1 when unknown */
    int64_t max_fds;        /* the soft RLIMIT_NOFILE; -1 when unlimited or unknown */
    double start_time_s;    /* Unix time; -1 when unknown */
};

/* Read them now (a few small reads of /proc: does not block). */
void procstat_read(struct procstat *out);

/* The start time in clock ticks after boot from the text of /proc/self/stat
 * (field 22, after the parenthesised command, which may hold spaces and ')').
 * Returns -1 when the text does not have it. */
int64_t procstat_parse_starttime(const char *stat_text);

#endif
