/* procstat.c - see procstat.h. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "procstat.h"

/* The first bytes of a small /proc file, NUL-terminated; 0 or -1. */
static int read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0 ? 0 : -1;
}

int64_t procstat_parse_starttime(const char *text)
{
    const char *p = strrchr(text, ')');
    if (!p)
        return -1;
    p++;
    /* after the command: field 3 (state) ... field 22 (starttime) */
    for (int field = 3; field <= 22; field++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return -1;
        if (field == 22) {
            char *end;
            long long v = strtoll(p, &end, 10);
            return end == p ? -1 : (int64_t)v;
        }
        while (*p && *p != ' ')
            p++;
    }
    return -1;
}

/* The boot time (btime of /proc/stat), Unix seconds; -1 when unknown. */
static int64_t boot_time(void)
{
    static int64_t cached = -1;
    char buf[8192];
    if (cached >= 0)
        return cached;
    if (read_small("/proc/stat", buf, sizeof buf) != 0)
        return -1;
    const char *p = strstr(buf, "\nbtime ");
    if (p)
        cached = strtoll(p + 7, NULL, 10);
    return cached;
}

static int64_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not the directory's own descriptor */
}

void procstat_read(struct procstat *out)
{
    struct rusage ru;
    struct rlimit rl;
    char buf[1024];
    long page = sysconf(_SC_PAGESIZE), hz = sysconf(_SC_CLK_TCK);

    out->cpu_seconds = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        out->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    out->resident_bytes = out->virtual_bytes = -1;
    long long size, resident;
    if (read_small("/proc/self/statm", buf, sizeof buf) == 0 &&
        sscanf(buf, "%lld %lld", &size, &resident) == 2 && page > 0) {
        out->virtual_bytes = (int64_t)size * page;
        out->resident_bytes = (int64_t)resident * page;
    }
    out->open_fds = count_fds();
    out->max_fds = -1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        out->max_fds = (int64_t)rl.rlim_cur;
    out->start_time_s = -1;
    int64_t ticks = -1, boot = boot_time();
    if (read_small("/proc/self/stat", buf, sizeof buf) == 0)
        ticks = procstat_parse_starttime(buf);
    if (ticks >= 0 && boot >= 0 && hz > 0)
        out->start_time_s = (double)boot + (double)ticks / (double)hz;
}
