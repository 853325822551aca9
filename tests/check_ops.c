/*
 * check_ops.c - integration suite for operating ahoyd (SPEC 1, 2.6, 6, 7): the real
 * binary, started by the harness on port 0 in front of stub upstreams.
 *
 * - systemd notify protocol, read from a fake NOTIFY_SOCKET (an AF_UNIX datagram
 *   socket made here): READY=1 + STATUS=, RELOADING=1 + MONOTONIC_USEC= then
 *   READY=1 around a reload, STOPPING=1, WATCHDOG=1 every WATCHDOG_USEC / 2;
 * - reload on SIGHUP: a new base-url takes effect, an invalid file keeps the old
 *   configuration, listen re-binds (and a listen address that cannot be bound
 *   fails the whole reload), breaker state survives, and 50 reloads under steady
 *   load (kept-alive and new connections) lose no request;
 * - drain on SIGTERM, the shutdown timeout, and a second SIGTERM; the drain delay
 *   (serving on, not ready) and a second SIGTERM in it;
 * - the access log: SIGUSR1 reopen (nothing lost or doubled), logfmt and JSON
 *   keys, escaping of client data; journald priority prefixes;
 * - command-line exit codes.
 *
 * Every wait polls a condition with a bound. The one fixed pause lets a request
 * line reach the daemon before SIGTERM (nothing observable marks its arrival);
 * watchdog intervals are measured with the kernel's receive timestamps, so a
 * busy test machine does not make them look late.
 *
 * Daemons that must see a special environment at exec (JOURNAL_STREAM naming
 * their own stderr) and one-shot command-line runs are started here by hand;
 * their files live under this suite's own temp root.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "harness.h"

#ifndef TOP_BUILDDIR
#define TOP_BUILDDIR "."
#endif

/* Temporary files of this suite that the harness does not own (notify sockets,
 * rotated logs of hand-started daemons): made in main(), removed at the end. */
static char ops_root[200];

static struct proc daemon_proc;
static struct proc stub_a, stub_b;

/* ---- small helpers ----------------------------------------------------------------- */

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL)
        return strdup("");
    do {
        if (cap - len < 4096) {
            char *p = realloc(buf, cap = cap ? cap * 2 : 8192);
            ck_assert_ptr_nonnull(p);
            buf = p;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static void write_text(const char *path, const char *text)
{
    char tmp[600];
    FILE *f;

    /* write then rename: a reload never reads half a file */
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    ck_assert_msg(f != NULL, "cannot write %s: %s", tmp, strerror(errno));
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

/* A fresh directory under ops_root. */
static void make_dir(char *out, size_t cap, const char *what)
{
    snprintf(out, cap, "%s/%s-XXXXXX", ops_root, what);
    ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
}

/* Append each '\n'-separated line of text to out, indented. */
static void add_lines(char *out, size_t cap, const char *text, int indent)
{
    const char *line = text;

    while (line != NULL && *line != '\0') {
        const char *nl = strchr(line, '\n');
        int n = nl != NULL ? (int)(nl - line) : (int)strlen(line);
        size_t len = strlen(out);
        if (n > 0)
            snprintf(out + len, cap - len, "%*s%.*s\n", indent, "", n, line);
        line = nl != NULL ? nl + 1 : NULL;
    }
}

/*
 * The configuration used by most tests: listen address, extra lines under
 * `ahoyd:` (access-log defaults to stderr here unless the extra lines name it),
 * one service "svc" -> http://127.0.0.1:PORT/base plus extra lines under it.
 * Returns a static buffer.
 */
static const char *ops_yaml(const char *listen, const char *ahoyd_extra, int port,
                            const char *service_extra)
{
    static char buf[8192];
    size_t len;

    snprintf(buf, sizeof(buf), "ahoyd:\n  listen: %s\n  admin-listen: off\n", listen);
    if (ahoyd_extra == NULL || strstr(ahoyd_extra, "access-log:") == NULL)
        add_lines(buf, sizeof(buf), "access-log: stderr", 2);
    add_lines(buf, sizeof(buf), ahoyd_extra, 2);
    len = strlen(buf);
    snprintf(buf + len, sizeof(buf) - len,
             "pyfly:\n  client:\n    services:\n      svc:\n"
             "        base-url: http://127.0.0.1:%d/base\n",
             port);
    add_lines(buf, sizeof(buf), service_extra, 8);
    return buf;
}

/* 1-based line and column of needle in text (asserts it is there). */
static void line_col(const char *text, const char *needle, int *line, int *col)
{
    const char *at = strstr(text, needle), *p, *bol = text;

    ck_assert_ptr_nonnull(at);
    *line = 1;
    for (p = text; p < at; p++)
        if (*p == '\n') {
            (*line)++;
            bol = p + 1;
        }
    *col = (int)(at - bol) + 1;
}

static void start_daemon(const char *yaml)
{
    int rc = ahoyd_start(&daemon_proc, yaml);
    ck_assert_msg(rc == 0, "ahoyd did not start with:\n%s", yaml);
}

/* Rewrite the running daemon's configuration ("@DIR@" = its temp dir). */
static void rewrite_config(const struct proc *p, const char *yaml)
{
    char text[16384];
    const char *at = strstr(yaml, "@DIR@");

    if (at != NULL) {
        /* one occurrence is all the tests use */
        ck_assert_ptr_null(strstr(at + 5, "@DIR@"));
        snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - yaml), yaml, p->dir, at + 5);
    } else {
        snprintf(text, sizeof(text), "%s", yaml);
    }
    write_text(p->conf_path, text);
}

#define RELOAD_OK "configuration reloaded"
#define RELOAD_FAILED "reload failed: keeping the previous configuration"

/* Write yaml, send SIGHUP and wait for the outcome; asserts it is the expected one. */
static void reload_with(struct proc *p, const char *yaml, bool expect_ok)
{
    int ok0 = proc_log_count(p, RELOAD_OK), bad0 = proc_log_count(p, RELOAD_FAILED);
    double end = harness_now_ms() + 15000;

    if (yaml != NULL)
        rewrite_config(p, yaml);
    ck_assert_int_eq(proc_signal(p, SIGHUP), 0);
    for (;;) {
        int ok = proc_log_count(p, RELOAD_OK), bad = proc_log_count(p, RELOAD_FAILED);
        if (ok > ok0 || bad > bad0) {
            ck_assert_msg(expect_ok ? (ok == ok0 + 1 && bad == bad0)
                                    : (bad == bad0 + 1 && ok == ok0),
                          "reload: %d ok and %d failed lines new, want the reload to %s", ok - ok0,
                          bad - bad0, expect_ok ? "succeed" : "fail");
            return;
        }
        ck_assert_msg(harness_now_ms() < end, "no reload outcome in the log within 15 s");
        pause_ms(5);
    }
}

/* GET /svc/<rest> through the daemon; asserts 200 from the named stub. */
static void assert_served_by(int port, const char *name)
{
    struct http_resp r;
    const char *who;

    http_get(port, "/svc/who", NULL, &r);
    who = http_header(&r, "X-Stub-Name");
    ck_assert_msg(r.status == 200 && who != NULL && strcmp(who, name) == 0,
                  "GET on port %d: status %ld (curl %d) from stub %s, want 200 from %s", port,
                  r.status, r.curl_code, who ? who : "(none)", name);
    http_resp_free(&r);
}

/* A listening socket on 127.0.0.1 that never accepts (no SO_REUSEADDR, so nobody
 * else can bind the port while it is open). Returns the port. */
static int hold_port(int *fd_out)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
    *fd_out = fd;
    return ntohs(addr.sin_port);
}

/* A connected TCP socket to 127.0.0.1:port, -1 when refused. */
/* ---- processes run by hand -------------------------------------------------------- */

/*
 * fork + exec the ahoyd binary with args (NULL-terminated), stdout and stderr to
 * the given files, the "NAME=value" strings of env added to its environment.
 * The child dies with the test process.
 */
static pid_t spawn_ahoyd(const char *const *args, const char *out_path, const char *err_path,
                         const char *const *env)
{
    const char *bin = getenv("AHOYD_BIN");
    char *argv[32];
    int argc = 0, i;
    pid_t parent = getpid(), pid;

    argv[argc++] = (char *)(bin != NULL && *bin != '\0' ? bin : TOP_BUILDDIR "/ahoyd");
    for (i = 0; args[i] != NULL && argc < 31; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int out, err;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        err = strcmp(out_path, err_path) == 0 ? out
                                              : open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (out < 0 || err < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0)
            _exit(127);
        unsetenv("AHOYD_BIN");
        for (i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

/* Wait (bounded) for a hand-started child; its exit status, -1 on timeout. */
static int wait_child(pid_t pid, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return exit_code(status);
        if (r < 0 || harness_now_ms() >= end)
            return -1;
        pause_ms(5);
    }
}

struct run_result {
    int status;
    char *out, *err;
};

/* Run ahoyd with args (and env, NAME=value lines, or NULL) to completion (20 s bound;
 * killed after that). */
static void run_ahoyd_env(const char *const *args, const char *const *env,
                          struct run_result *res)
{
    char dir[256], out_path[300], err_path[300];
    pid_t pid;

    make_dir(dir, sizeof(dir), "run");
    snprintf(out_path, sizeof(out_path), "%s/stdout", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
    pid = spawn_ahoyd(args, out_path, err_path, env);
    res->status = wait_child(pid, 20000);
    if (res->status < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    res->out = read_all(out_path);
    res->err = read_all(err_path);
}

static void run_ahoyd(const char *const *args, struct run_result *res)
{
    run_ahoyd_env(args, NULL, res);
}

static void run_result_free(struct run_result *res)
{
    free(res->out);
    free(res->err);
}

/* ---- the systemd notify socket ------------------------------------------------------ */

/* Bind an AF_UNIX datagram socket in a fresh directory and point NOTIFY_SOCKET at it
 * (the daemon started next inherits it). Returns the socket. */
static int notify_open(void)
{
    static char dir[256];
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    make_dir(dir, sizeof(dir), "notify");
    ck_assert_int_lt(strlen(dir) + 8, sizeof(sun.sun_path));
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/notify", dir);
    ck_assert_msg(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "bind %s: %s", sun.sun_path,
                  strerror(errno));
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &(int){1}, sizeof(int)), 0);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", sun.sun_path, 1), 0);
    return fd;
}

/* The next datagram (NUL-terminated) into buf; its length, or -1 after timeout_ms.
 * *sent_ms (may be NULL) gets the kernel's receive time (SO_TIMESTAMPNS, wall clock,
 * for differences only): when the daemon sent it, however late this test reads it. */
static int notify_next_at(int fd, char *buf, size_t cap, int timeout_ms, double *sent_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    union {
        char buf[256]; /* a timestamp, and credentials if the sender adds them */
        struct cmsghdr align;
    } control;
    struct iovec iov = {buf, cap - 1};
    struct msghdr msg = {0};
    struct cmsghdr *c;
    ssize_t n;

    buf[0] = '\0';
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    n = recvmsg(fd, &msg, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    for (c = CMSG_FIRSTHDR(&msg); c != NULL && sent_ms != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            *sent_ms = (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
        }
    }
    return (int)n;
}

static int notify_next(int fd, char *buf, size_t cap, int timeout_ms)
{
    return notify_next_at(fd, buf, cap, timeout_ms, NULL);
}

/* The next datagram that is not a watchdog ping; asserts one arrives within 10 s. */
static void notify_expect_next(int fd, char *buf, size_t cap, const char *when)
{
    double end = harness_now_ms() + 10000;

    for (;;) {
        int left = (int)(end - harness_now_ms());
        ck_assert_msg(left > 0 && notify_next(fd, buf, cap, left) >= 0,
                      "no notify datagram %s within 10 s", when);
        if (strcmp(buf, "WATCHDOG=1") != 0)
            return;
    }
}

/* ---- access-log parsing ----------------------------------------------------------------- */

#define N_ACCESS_KEYS 17
static const char *const access_keys[N_ACCESS_KEYS] = {
    "time",     "request_id", "method",   "service",   "path",   "status",
    "attempts", "endpoint",   "duration", "upstream_time", "flags", "client",
    "bytes_in", "bytes_out",  "target",   "tried",     "ttfb"};

struct logfmt_pair {
    char key[32];
    char value[2048];
    bool quoted;
};

/* The escape after a backslash (p points past it): the byte it stands for goes to
 * *out; returns the characters it takes, 0 when it is not a valid escape. */
static int logfmt_unescape(const char *p, char *out)
{
    static const char from[] = "\"\\nrt", to[] = "\"\\\n\r\t";
    const char *hit = *p != '\0' ? strchr(from, *p) : NULL;
    unsigned int code;
    int len = 0;

    if (hit != NULL) {
        *out = to[hit - from];
        return 1;
    }
    if ((*p == 'u' && sscanf(p + 1, "%4x%n", &code, &len) == 1 && len == 4) ||
        (*p == 'x' && sscanf(p + 1, "%2x%n", &code, &len) == 1 && len == 2)) {
        *out = (char)code;
        return 1 + len;
    }
    return 0;
}

/*
 * Parse one logfmt line into pairs: key=value, value bare (no space, no quote) or
 * "quoted" with \" \\ \n \r \t \uXXXX \xXX escapes (unescaped into value).
 * Returns the number of pairs, or -1 when the line is not logfmt.
 */
static int logfmt_parse(const char *line, struct logfmt_pair *pairs, int max)
{
    const char *p = line;
    int n = 0;

    while (*p != '\0') {
        struct logfmt_pair *kv;
        size_t k = 0, v = 0;
        if (n == max)
            return -1;
        kv = &pairs[n];
        memset(kv, 0, sizeof(*kv));
        while ((*p >= 'a' && *p <= 'z') || *p == '_') {
            if (k + 1 >= sizeof(kv->key))
                return -1;
            kv->key[k++] = *p++;
        }
        if (k == 0 || *p++ != '=')
            return -1;
        if (*p == '"') {
            kv->quoted = true;
            for (p++; *p != '"'; p++) {
                char c = *p;
                if (c == '\0' || (unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                    return -1; /* unterminated, or a raw control/8-bit byte */
                if (c == '\\') {
                    int used = logfmt_unescape(p + 1, &c);
                    if (used == 0)
                        return -1;
                    p += used;
                }
                if (v + 1 >= sizeof(kv->value))
                    return -1;
                kv->value[v++] = c;
            }
            p++;
        } else {
            while (*p != '\0' && *p != ' ') {
                if (*p == '"' || v + 1 >= sizeof(kv->value))
                    return -1;
                kv->value[v++] = *p++;
            }
        }
        n++;
        if (*p == ' ')
            p++;
        else if (*p != '\0')
            return -1;
    }
    return n;
}

/* The lines of a file (a malloc'd copy split in place); *n gets the count. */
static char **split_lines(char *text, int *n)
{
    char **lines = NULL;
    char *save = NULL, *line;
    int count = 0;

    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char **grown = realloc(lines, (size_t)(count + 1) * sizeof(*lines));
        ck_assert_ptr_nonnull(grown);
        lines = grown;
        lines[count++] = line;
    }
    *n = count;
    return lines;
}

/* Asserts the logfmt access line has exactly the SPEC 7 keys, in order; fills pairs. */
static void assert_logfmt_line(const char *line, struct logfmt_pair *pairs)
{
    int n = logfmt_parse(line, pairs, N_ACCESS_KEYS + 2), i;

    ck_assert_msg(n == N_ACCESS_KEYS, "not an access line with %d keys (%d): %s", N_ACCESS_KEYS, n,
                  line);
    for (i = 0; i < N_ACCESS_KEYS; i++)
        ck_assert_msg(strcmp(pairs[i].key, access_keys[i]) == 0, "key %d is %s, want %s in: %s", i,
                      pairs[i].key, access_keys[i], line);
}

static const char *pair_value(const struct logfmt_pair *pairs, const char *key)
{
    int i;

    for (i = 0; i < N_ACCESS_KEYS; i++)
        if (strcmp(pairs[i].key, key) == 0)
            return pairs[i].value;
    return NULL;
}

/* ================================================================================== */
/* systemd notify                                                                      */
/* ================================================================================== */

START_TEST(notify_ready_reload_stopping)
{
    char buf[512], want[128];
    long long before, after, mono = -1;
    int fd, n_wd = 0, rc;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    fd = notify_open();
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL));

    /* READY=1 once listening, with a STATUS= naming the address */
    notify_expect_next(fd, buf, sizeof(buf), "after start");
    snprintf(want, sizeof(want), "READY=1\nSTATUS=listening on 127.0.0.1:%d", daemon_proc.port);
    ck_assert_str_eq(buf, want);
    assert_served_by(daemon_proc.port, "a");

    /* a valid reload: RELOADING=1 with the monotonic time it began, then READY=1 */
    before = monotonic_usec();
    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", NULL, stub_a.port, "timeout: 7s"), true);
    after = monotonic_usec();
    notify_expect_next(fd, buf, sizeof(buf), "after SIGHUP");
    ck_assert_msg(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%lld%n", &mono, &rc) == 1 &&
                      buf[rc] == '\0',
                  "want RELOADING=1\\nMONOTONIC_USEC=<n>, got \"%s\"", buf);
    ck_assert_msg(mono >= before && mono <= after,
                  "MONOTONIC_USEC=%lld is not within the reload [%lld, %lld]", mono, before, after);
    notify_expect_next(fd, buf, sizeof(buf), "after the reload");
    ck_assert_str_eq(buf, "READY=1");

    /* a failed reload still ends in READY=1 (the old configuration serves), with a
     * STATUS= saying why and ERRNO= (EINVAL: the configuration is invalid) */
    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", NULL, stub_a.port, "bogus-key: 1"), false);
    notify_expect_next(fd, buf, sizeof(buf), "after a failed SIGHUP");
    ck_assert_msg(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0, "got \"%s\"", buf);
    notify_expect_next(fd, buf, sizeof(buf), "after the failed reload");
    snprintf(want, sizeof(want), "\nERRNO=%d\nREADY=1", EINVAL);
    ck_assert_msg(strncmp(buf, "STATUS=reload failed: ", 22) == 0 && strstr(buf, "bogus-key") &&
                      strlen(buf) > strlen(want) &&
                      strcmp(buf + strlen(buf) - strlen(want), want) == 0 &&
                      strchr(buf + 7, '\n') == buf + strlen(buf) - strlen(want),
                  "want STATUS=reload failed: <why naming bogus-key>\\nERRNO=%d\\nREADY=1, "
                  "got \"%s\"", EINVAL, buf);
    assert_served_by(daemon_proc.port, "a");

    /* the next good reload puts the status back and clears the error */
    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", NULL, stub_a.port, "timeout: 6s"), true);
    notify_expect_next(fd, buf, sizeof(buf), "after the next SIGHUP");
    ck_assert_msg(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0, "got \"%s\"", buf);
    notify_expect_next(fd, buf, sizeof(buf), "after the next reload");
    snprintf(want, sizeof(want), "STATUS=listening on 127.0.0.1:%d\nERRNO=0\nREADY=1",
             daemon_proc.port);
    ck_assert_str_eq(buf, want);

    /* SIGTERM: STOPPING=1 first, then a clean exit */
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    notify_expect_next(fd, buf, sizeof(buf), "after SIGTERM");
    ck_assert_str_eq(buf, "STOPPING=1");
    ck_assert_int_eq(proc_wait(&daemon_proc, 10000), 0);

    /* no watchdog without WATCHDOG_USEC, and nothing after STOPPING=1 */
    while (notify_next(fd, buf, sizeof(buf), 50) >= 0)
        n_wd++;
    ck_assert_msg(n_wd == 0, "%d datagrams after STOPPING=1 (last \"%s\")", n_wd, buf);
    close(fd);
}
END_TEST

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

START_TEST(notify_watchdog_pings)
{
    enum { PINGS = 16 };
    char buf[512];
    double sent[PINGS], gaps[PINGS - 1], end;
    int fd, i;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    fd = notify_open();
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "200000", 1), 0);
    unsetenv("WATCHDOG_PID"); /* sd_watchdog_enabled accepts an unset WATCHDOG_PID */
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL));
    notify_expect_next(fd, buf, sizeof(buf), "after start");
    ck_assert_msg(strncmp(buf, "READY=1", 7) == 0, "got \"%s\"", buf);

    /* WatchdogSec/2 = 100 ms between pings, timed by the kernel's receive stamps (the
     * machine may be busy: the median must be 100 ms, the worst gap only sane) */
    end = harness_now_ms() + 10000;
    for (i = 0; i < PINGS; i++) {
        int left = (int)(end - harness_now_ms());
        sent[i] = -1;
        ck_assert_msg(left > 0 && notify_next_at(fd, buf, sizeof(buf), left, &sent[i]) >= 0,
                      "only %d WATCHDOG=1 in 10 s", i);
        ck_assert_str_eq(buf, "WATCHDOG=1");
        ck_assert(sent[i] > 0);
    }
    for (i = 1; i < PINGS; i++)
        gaps[i - 1] = sent[i] - sent[i - 1];
    qsort(gaps, PINGS - 1, sizeof(gaps[0]), cmp_double);
    ck_assert_msg(gaps[(PINGS - 1) / 2] >= 90 && gaps[(PINGS - 1) / 2] <= 130,
                  "median gap between watchdog pings %.1f ms, want 100", gaps[(PINGS - 1) / 2]);
    ck_assert_msg(gaps[0] >= 50, "two watchdog pings %.1f ms apart", gaps[0]);
    ck_assert_msg(gaps[PINGS - 2] < 400, "a gap of %.0f ms between watchdog pings",
                  gaps[PINGS - 2]);

    /* still pinging after a reload */
    reload_with(&daemon_proc, NULL, true);
    end = harness_now_ms() + 5000;
    for (i = 0; i < 3;) {
        int left = (int)(end - harness_now_ms());
        ck_assert_msg(left > 0 && notify_next(fd, buf, sizeof(buf), left) >= 0,
                      "only %d WATCHDOG=1 after a reload", i);
        if (strcmp(buf, "WATCHDOG=1") == 0)
            i++;
    }
    close(fd);
}
END_TEST

START_TEST(notify_watchdog_other_pid_is_ignored)
{
    char buf[512], pid[32];
    int fd, n = 0;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    fd = notify_open();
    /* the watchdog is meant for another process (this one): ahoyd must not ping */
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "200000", 1), 0);
    ck_assert_int_eq(setenv("WATCHDOG_PID", pid, 1), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL));
    notify_expect_next(fd, buf, sizeof(buf), "after start");
    ck_assert_msg(strncmp(buf, "READY=1", 7) == 0, "got \"%s\"", buf);
    while (notify_next(fd, buf, sizeof(buf), 600) >= 0)
        n++;
    ck_assert_msg(n == 0, "%d datagrams (last \"%s\") with WATCHDOG_PID=%s", n, buf, pid);
    close(fd);
}
END_TEST

/* ================================================================================== */
/* reload                                                                               */
/* ================================================================================== */

START_TEST(reload_changes_base_url)
{
    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    ck_assert_int_eq(stub_start(&stub_b, "b", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL));
    assert_served_by(daemon_proc.port, "a");

    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", NULL, stub_b.port, NULL), true);
    assert_served_by(daemon_proc.port, "b");
    assert_served_by(daemon_proc.port, "b");
    ck_assert_int_eq(stub_count(&stub_a), 1);
    ck_assert_int_eq(stub_count(&stub_b), 2);

    /* and back */
    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL), true);
    assert_served_by(daemon_proc.port, "a");
    ck_assert_int_eq(proc_log_count(&daemon_proc, RELOAD_FAILED), 0);
}
END_TEST

START_TEST(reload_invalid_keeps_old_config)
{
    char want[400];
    char *log;
    int line, col;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    ck_assert_int_eq(stub_start(&stub_b, "b", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL));
    assert_served_by(daemon_proc.port, "a");

    /* base-url moved to b, but an unknown key spoils the file */
    line_col(ops_yaml("127.0.0.1:0", NULL, stub_b.port, "retyr: 2"), "retyr", &line, &col);
    ck_assert_int_eq(col, 9);
    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", NULL, stub_b.port, "retyr: 2"), false);
    snprintf(want, sizeof(want), "%s:%d:%d: unknown key 'retyr'; did you mean 'retry'?",
             daemon_proc.conf_path, line, col);
    log = proc_log(&daemon_proc);
    ck_assert_msg(strstr(log, want) != NULL, "the log lacks \"%s\":\n%s", want, log);
    free(log);
    assert_served_by(daemon_proc.port, "a");
    ck_assert_int_eq(stub_count(&stub_b), 0);

    /* a broken YAML file too */
    reload_with(&daemon_proc, "ahoyd: [\n", false);
    assert_served_by(daemon_proc.port, "a");

    /* fixing the file makes the next reload work */
    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", NULL, stub_b.port, "retry: 2"), true);
    assert_served_by(daemon_proc.port, "b");
}
END_TEST

START_TEST(reload_rebinds_listen)
{
    char listen[64], line[128];
    struct http_resp r;
    int old_port, new_port;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL));
    old_port = daemon_proc.port;
    assert_served_by(old_port, "a");

    new_port = closed_port();
    ck_assert_int_gt(new_port, 0);
    ck_assert_int_ne(new_port, old_port);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", new_port);
    reload_with(&daemon_proc, ops_yaml(listen, NULL, stub_a.port, NULL), true);
    snprintf(line, sizeof(line), "proxy listening on %s", listen);
    ck_assert(proc_log_wait(&daemon_proc, line, 5000));

    assert_served_by(new_port, "a");
    http_get(old_port, "/svc/who", NULL, &r);
    ck_assert_msg(r.status == 0 && r.curl_code == CURLE_COULDNT_CONNECT,
                  "old port %d still answers: status %ld curl %d", old_port, r.status, r.curl_code);
    http_resp_free(&r);
    ck_assert_int_lt(raw_connect(old_port), 0);
}
END_TEST

START_TEST(reload_unbindable_listen_fails_whole_reload)
{
    char listen[64], want[200];
    char *log;
    int held_fd, held;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    ck_assert_int_eq(stub_start(&stub_b, "b", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL));
    assert_served_by(daemon_proc.port, "a");

    /* a port this test keeps open, plus a new base-url that must not take effect */
    held = hold_port(&held_fd);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", held);
    reload_with(&daemon_proc, ops_yaml(listen, NULL, stub_b.port, NULL), false);
    /* the reload's own verdict says why, system error included, as startup does */
    snprintf(want, sizeof(want), RELOAD_FAILED " (cannot listen on %s: Address already in use)",
             listen);
    ck_assert(proc_log_wait(&daemon_proc, want, 5000));
    log = proc_log(&daemon_proc);
    ck_assert_msg(strstr(log, want) != NULL, "log:\n%s", log);
    free(log);

    assert_served_by(daemon_proc.port, "a");
    assert_served_by(daemon_proc.port, "a");
    ck_assert_int_eq(stub_count(&stub_b), 0);
    close(held_fd);

    /* the same file works once the port is free */
    reload_with(&daemon_proc, NULL, true);
    assert_served_by(held, "b");
}
END_TEST

START_TEST(reload_keeps_breaker_state)
{
    const char *const fail_hdr[] = {"X-Stub-Status: 500", NULL};
    const char *svc = "retry: false\ncircuit-breaker-failure-threshold: 2\n"
                      "circuit-breaker-recovery-timeout: 60s";
    char svc2[256];
    struct http_resp r;
    int i;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, svc));
    for (i = 0; i < 2; i++) {
        http_get(daemon_proc.port, "/svc/fail", fail_hdr, &r);
        ck_assert_int_eq(r.status, 500);
        http_resp_free(&r);
    }
    http_get(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
    http_resp_free(&r);

    /* an unrelated change (a header, a timeout, a second service) keeps the breaker */
    snprintf(svc2, sizeof(svc2), "%s\ntimeout: 9s\nheaders: {X-Gen: two}", svc);
    reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", "log-level: info", stub_a.port, svc2), true);
    http_get(daemon_proc.port, "/svc/x", NULL, &r);
    assert_ahoyd_error(&r, 503, "circuit_open", "svc", 0);
    ck_assert_ptr_nonnull(http_header(&r, "Retry-After"));
    ck_assert_int_ge(atoi(http_header(&r, "Retry-After")), 50);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub_a), 2);
}
END_TEST

/* ---- reloads under load ----------------------------------------------------------- */

struct load {
    int port;
    atomic_int stop;
    atomic_long ok, errors;
    char first_error[256];
    pthread_mutex_t lock;
};

struct load_thread {
    struct load *ld;
    bool fresh; /* a new connection per request (else one kept-alive connection) */
    pthread_t thread;
};

static void *load_main(void *arg)
{
    struct load_thread *t = arg;
    struct load *ld = t->ld;
    const char *const hdrs[] = {"X-Stub-Delay-Ms: 2", NULL};
    struct http_client c;
    char url[128];
    struct http_req req;

    http_client_init(&c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/load", ld->port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = hdrs;
    req.timeout_ms = 10000;
    while (!atomic_load(&ld->stop)) {
        struct http_resp r;
        if (t->fresh)
            http_do(&req, &r);
        else
            http_client_do(&c, &req, &r);
        if (r.status == 200) {
            atomic_fetch_add(&ld->ok, 1);
        } else {
            pthread_mutex_lock(&ld->lock);
            if (atomic_fetch_add(&ld->errors, 1) == 0)
                snprintf(ld->first_error, sizeof(ld->first_error),
                         "%s connection: status %ld curl %d body %.150s",
                         t->fresh ? "new" : "kept-alive", r.status, r.curl_code, r.body);
            pthread_mutex_unlock(&ld->lock);
        }
        http_resp_free(&r);
    }
    http_client_free(&c);
    return NULL;
}

START_TEST(reload_50_times_under_load_loses_nothing)
{
    enum { THREADS = 4, RELOADS = 50 };
    static struct load ld;
    struct load_thread threads[THREADS];
    struct http_resp r;
    cJSON *echo;
    long ok_before;
    int i, listener_swaps = 0;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", "max-connections: 200", stub_a.port, NULL));
    memset(&ld, 0, sizeof(ld));
    pthread_mutex_init(&ld.lock, NULL);
    ld.port = daemon_proc.port;
    /* half the clients keep their connection, half connect for every request */
    for (i = 0; i < THREADS; i++) {
        threads[i].ld = &ld;
        threads[i].fresh = i % 2 == 1;
        ck_assert_int_eq(pthread_create(&threads[i].thread, NULL, load_main, &threads[i]), 0);
    }

    for (i = 0; i < RELOADS; i++) {
        char ahoyd_extra[64], svc[128];
        /* every reload changes a timeout and a header; every fifth one also changes
         * max-connections, which needs a new listener on the same address */
        int max_conn = (i / 5) % 2 == 0 ? 300 : 200;
        if (i % 5 == 0)
            listener_swaps++;
        snprintf(ahoyd_extra, sizeof(ahoyd_extra), "max-connections: %d", max_conn);
        snprintf(svc, sizeof(svc), "timeout: %ds\nheaders: {X-Gen: g%d}", 5 + i % 2, i % 2);
        ok_before = atomic_load(&ld.ok);
        reload_with(&daemon_proc, ops_yaml("127.0.0.1:0", ahoyd_extra, stub_a.port, svc), true);
        /* let some requests through on the new configuration (bounded) */
        {
            double end = harness_now_ms() + 2000;
            while (atomic_load(&ld.ok) < ok_before + 8 && harness_now_ms() < end)
                pause_ms(2);
        }
    }
    atomic_store(&ld.stop, 1);
    for (i = 0; i < THREADS; i++)
        pthread_join(threads[i].thread, NULL);

    printf("reload under load: %d reloads (%d new listeners), %ld requests, %ld errors\n", RELOADS,
           listener_swaps, atomic_load(&ld.ok), atomic_load(&ld.errors));
    ck_assert_msg(atomic_load(&ld.errors) == 0, "%ld of %ld requests failed; first: %s",
                  atomic_load(&ld.errors), atomic_load(&ld.ok) + atomic_load(&ld.errors),
                  ld.first_error);
    ck_assert_int_ge(atomic_load(&ld.ok), RELOADS * 8);
    ck_assert_int_eq(proc_log_count(&daemon_proc, RELOAD_OK), RELOADS);

    /* the last configuration (i = 49: X-Gen g1) is the one in force */
    http_get(daemon_proc.port, "/svc/last", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    echo = json_body(&r);
    ck_assert_ptr_nonnull(echo);
    ck_assert_str_eq(echo_header(echo, "X-Gen") ? echo_header(echo, "X-Gen") : "(none)", "g1");
    cJSON_Delete(echo);
    http_resp_free(&r);
    pthread_mutex_destroy(&ld.lock);
}
END_TEST

/* ================================================================================== */
/* drain                                                                                */
/* ================================================================================== */

static struct http_async *slow_call(int port, const char *path, int delay_ms)
{
    static char url[128], delay[64];
    static const char *hdrs[2];
    struct http_req req;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    snprintf(delay, sizeof(delay), "X-Stub-Delay-Ms: %d", delay_ms);
    hdrs[0] = delay;
    hdrs[1] = NULL;
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = hdrs;
    req.timeout_ms = 20000;
    return http_async_start(&req);
}

/* Stub a behind a daemon started with extra in its ahoyd block (NULL: none), and a call
 * of delay_ms upstream already at the stub: what a drain test begins with. */
static struct http_async *daemon_with_slow_call(const char *extra, int delay_ms)
{
    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", extra, stub_a.port, NULL));
    struct http_async *slow = slow_call(daemon_proc.port, "/svc/slow", delay_ms);
    ck_assert(stub_wait_count(&stub_a, 1, 5000));
    return slow;
}

START_TEST(drain_finishes_calls_and_refuses_new_ones)
{
    struct http_async *slow;
    struct http_resp r;
    char resp[8192], rbuf[16];
    const char *yaml;
    double t_term, t_closed = 0;
    int idle_fd, status;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    /* the admin API on, for /readyz */
    yaml = ops_yaml("127.0.0.1:0", NULL, stub_a.port, NULL);
    {
        char text[8192];
        const char *at = strstr(yaml, "  admin-listen: off\n");
        ck_assert_ptr_nonnull(at);
        snprintf(text, sizeof(text), "%.*s  admin-listen: 127.0.0.1:0\n%s", (int)(at - yaml), yaml,
                 at + strlen("  admin-listen: off\n"));
        start_daemon(text);
    }
    ck_assert_int_gt(daemon_proc.admin_port, 0);
    http_get(daemon_proc.admin_port, "/readyz", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    /* an idle keep-alive connection, after one answered request */
    idle_fd = raw_connect(daemon_proc.port);
    ck_assert_int_ge(idle_fd, 0);
    raw_send_text(idle_fd, "GET /svc/idle HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(raw_read_response(idle_fd, resp, sizeof(resp), 5000), 200);

    /* a call that takes 1 s upstream */
    slow = slow_call(daemon_proc.port, "/svc/slow", 1000);
    ck_assert_ptr_nonnull(slow);
    ck_assert(stub_wait_count(&stub_a, 2, 5000));

    t_term = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);

    /* the idle connection is closed at once */
    {
        struct pollfd pfd = {idle_fd, POLLIN, 0};
        ssize_t n;
        ck_assert_msg(poll(&pfd, 1, 2000) == 1, "idle connection still open 2 s after SIGTERM");
        n = recv(idle_fd, rbuf, sizeof(rbuf), 0);
        t_closed = harness_now_ms();
        ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET),
                      "idle connection: read returned %zd (%s), want EOF", n,
                      n < 0 ? strerror(errno) : "data");
        ck_assert_msg(t_closed - t_term < 500, "idle connection closed %.0f ms after SIGTERM",
                      t_closed - t_term);
        close(idle_fd);
    }
    ck_assert(proc_log_wait(&daemon_proc, "draining", 5000));

    /* not ready any more; new connections are refused or told 503 shutting_down */
    http_get(daemon_proc.admin_port, "/readyz", NULL, &r);
    ck_assert_msg(r.status == 503, "/readyz during drain: %ld (curl %d)", r.status, r.curl_code);
    http_resp_free(&r);
    http_get(daemon_proc.port, "/svc/new", NULL, &r);
    if (r.status == 0)
        ck_assert_msg(r.curl_code == CURLE_COULDNT_CONNECT, "new connection: curl %d", r.curl_code);
    else
        assert_ahoyd_error(&r, 503, "shutting_down", SERVICE_ANY, 0);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub_a), 2);

    /* still running while the call is in flight */
    ck_assert_int_eq(proc_wait(&daemon_proc, 0), -1);

    /* the call completes with the upstream's answer, then the process exits 0 */
    ck_assert_int_eq(http_async_finish(slow, &r), 0);
    ck_assert_msg(r.status == 200 && http_header(&r, "X-Stub-Name") != NULL,
                  "slow call during drain: status %ld curl %d body %.200s", r.status, r.curl_code,
                  r.body);
    http_resp_free(&r);
    status = proc_wait(&daemon_proc, 5000);
    ck_assert_msg(status == 0, "exit status %d after the drain", status);
    ck_assert_msg(harness_now_ms() - t_term < 4000, "drain took %.0f ms",
                  harness_now_ms() - t_term);
}
END_TEST

START_TEST(drain_answers_request_on_open_connection_with_503)
{
    struct http_async *slow;
    char resp[8192], conn[64];
    int fd;

    /* keep the drain going with a 2 s call */
    slow = daemon_with_slow_call(NULL, 2000);

    /* a connection whose request line has arrived, its headers not yet */
    fd = raw_connect(daemon_proc.port);
    ck_assert_int_ge(fd, 0);
    raw_send_text(fd, "GET /svc/late HTTP/1.1\r\n");
    pause_ms(300); /* for the daemon to read it (nothing shows when it has) */
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "draining", 5000));
    raw_send_text(fd, "Host: x\r\n\r\n");
    ck_assert_int_eq(raw_read_response(fd, resp, sizeof(resp), 5000), 503);
    assert_raw_error(resp, 503, "shutting_down");
    ck_assert_ptr_nonnull(raw_header(resp, "Connection", conn, sizeof(conn)));
    ck_assert_str_eq(conn, "close");
    close(fd);
    ck_assert_int_eq(stub_count(&stub_a), 1);

    {
        struct http_resp r;
        http_async_finish(slow, &r);
        ck_assert_int_eq(r.status, 200);
        http_resp_free(&r);
    }
    ck_assert_int_eq(proc_wait(&daemon_proc, 5000), 0);
}
END_TEST

START_TEST(drain_shutdown_timeout_answers_503)
{
    struct http_async *slow;
    struct http_resp r;
    double t_term, t_answer, t_exit;
    int status;

    slow = daemon_with_slow_call("shutdown-timeout: 500ms", 5000);

    t_term = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert_int_eq(http_async_finish(slow, &r), 0);
    t_answer = harness_now_ms();
    assert_ahoyd_error(&r, 503, "shutting_down", "svc", 1);
    http_resp_free(&r);
    ck_assert_msg(t_answer - t_term >= 450 && t_answer - t_term < 2000,
                  "answered %.0f ms after SIGTERM, shutdown-timeout is 500 ms", t_answer - t_term);

    status = proc_wait(&daemon_proc, 5000);
    t_exit = harness_now_ms();
    ck_assert_msg(status == 0, "exit status %d", status);
    ck_assert_msg(t_exit - t_term < 3000, "exited %.0f ms after SIGTERM", t_exit - t_term);
}
END_TEST

START_TEST(drain_second_sigterm_exits_at_once)
{
    struct http_async *slow;
    struct http_resp r;
    double t_second;
    int status;

    slow = daemon_with_slow_call(NULL, 5000);

    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "draining", 5000));
    ck_assert_int_eq(proc_wait(&daemon_proc, 200), -1); /* the call holds the drain */
    t_second = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    status = proc_wait(&daemon_proc, 3000);
    ck_assert_msg(status == 0, "exit status %d after a second SIGTERM", status);
    ck_assert_msg(harness_now_ms() - t_second < 1000, "exited %.0f ms after the second SIGTERM",
                  harness_now_ms() - t_second);
    ck_assert(proc_log_wait(&daemon_proc, "second stop signal", 1000));
    /* the client is not left waiting for the upstream's 5 s */
    http_async_finish(slow, &r);
    ck_assert_msg(harness_now_ms() - t_second < 2000,
                  "the client's call ended %.0f ms after the second SIGTERM (status %ld)",
                  harness_now_ms() - t_second, r.status);
    http_resp_free(&r);
}
END_TEST

/* The ops configuration with the admin API on (for /readyz). */
static const char *with_admin(const char *yaml)
{
    static char text[8192];
    const char *at = strstr(yaml, "  admin-listen: off\n");
    ck_assert_ptr_nonnull(at);
    snprintf(text, sizeof(text), "%.*s  admin-listen: 127.0.0.1:0\n%s", (int)(at - yaml), yaml,
             at + strlen("  admin-listen: off\n"));
    return text;
}

/* drain-delay: /readyz turns 503 at once, everything (new connections too) is served for
 * the delay, then the drain runs as without it. */
START_TEST(drain_delay_serves_on_then_drains)
{
    struct http_resp r;
    double t_term, t_exit;
    int status;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(with_admin(ops_yaml("127.0.0.1:0", "drain-delay: 2s", stub_a.port, NULL)));
    http_get(daemon_proc.admin_port, "/readyz", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    t_term = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "drain delay", 1000));
    http_get(daemon_proc.admin_port, "/readyz", NULL, &r);
    ck_assert_msg(r.status == 503, "/readyz in the drain delay: %ld (curl %d)", r.status,
                  r.curl_code);
    http_resp_free(&r);
    ck_assert_msg(harness_now_ms() - t_term < 1000, "/readyz 503 only %.0f ms after SIGTERM",
                  harness_now_ms() - t_term);

    /* a new connection, 1 s into the delay, is served by the upstream */
    pause_ms((int)(t_term + 1000 - harness_now_ms()));
    http_get(daemon_proc.port, "/svc/late", NULL, &r);
    ck_assert_msg(r.status == 200 && http_header(&r, "X-Stub-Name") != NULL,
                  "a new connection 1 s into the drain delay: status %ld curl %d body %.200s",
                  r.status, r.curl_code, r.body);
    http_resp_free(&r);
    ck_assert_msg(harness_now_ms() - t_term < 1800, "the call took until %.0f ms",
                  harness_now_ms() - t_term);
    ck_assert_int_eq(proc_wait(&daemon_proc, 0), -1);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "draining"), 0);

    /* then the drain (nothing in flight) and exit 0, after the delay */
    status = proc_wait(&daemon_proc, 6000);
    t_exit = harness_now_ms();
    ck_assert_msg(status == 0, "exit status %d after the drain delay", status);
    ck_assert_msg(t_exit - t_term >= 1900 && t_exit - t_term < 5000,
                  "exited %.0f ms after SIGTERM, drain-delay is 2 s", t_exit - t_term);
    ck_assert(proc_log_wait(&daemon_proc, "draining", 1000));
}
END_TEST

/* A second SIGTERM in the delay starts the drain then: calls in flight still finish. */
START_TEST(drain_delay_second_sigterm_starts_drain)
{
    struct http_async *slow;
    struct http_resp r;
    double t_term, t_second, t_exit;
    int status;

    slow = daemon_with_slow_call("drain-delay: 20s", 1500);

    t_term = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "drain delay", 1000));
    pause_ms((int)(t_term + 500 - harness_now_ms()));
    ck_assert_int_eq(proc_log_count(&daemon_proc, "draining"), 0);
    t_second = harness_now_ms();
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGTERM), 0);
    ck_assert(proc_log_wait(&daemon_proc, "draining", 1000));
    ck_assert_msg(harness_now_ms() - t_second < 1000, "the drain started %.0f ms after it",
                  harness_now_ms() - t_second);
    ck_assert_int_eq(proc_wait(&daemon_proc, 0), -1); /* the call holds the drain */

    ck_assert_int_eq(http_async_finish(slow, &r), 0);
    ck_assert_msg(r.status == 200, "the call in flight: status %ld curl %d", r.status,
                  r.curl_code);
    http_resp_free(&r);
    status = proc_wait(&daemon_proc, 5000);
    t_exit = harness_now_ms();
    ck_assert_msg(status == 0, "exit status %d", status);
    ck_assert_msg(t_exit - t_term < 6000, "exited %.0f ms after the first SIGTERM (delay 20 s)",
                  t_exit - t_term);
}
END_TEST

/* ================================================================================== */
/* access log                                                                           */
/* ================================================================================== */

struct id_load {
    int port;
    atomic_int stop;
    atomic_int sent; /* requests answered (ids 0 .. sent-1) */
    atomic_int failed;
};

static void *id_load_main(void *arg)
{
    struct id_load *ld = arg;
    struct http_client c;
    char url[128], hdr[64];
    const char *hdrs[2] = {hdr, NULL};
    struct http_req req;
    int i;

    http_client_init(&c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/svc/rot", ld->port);
    memset(&req, 0, sizeof(req));
    req.url = url;
    req.headers = hdrs;
    for (i = 0; !atomic_load(&ld->stop) && i < 100000; i++) {
        struct http_resp r;
        snprintf(hdr, sizeof(hdr), "X-Request-Id: rot-%06d", i);
        http_client_do(&c, &req, &r);
        if (r.status != 200)
            atomic_fetch_add(&ld->failed, 1);
        http_resp_free(&r);
        atomic_store(&ld->sent, i + 1);
    }
    http_client_free(&c);
    return NULL;
}

/* How often "rot-NNNNNN" appears as request id in text, for every id < n. */
static void count_ids(const char *path, int *counts, int n, int *others)
{
    char *text = read_all(path);
    int nlines, i;
    char **lines = split_lines(text, &nlines);

    for (i = 0; i < nlines; i++) {
        struct logfmt_pair pairs[N_ACCESS_KEYS + 2];
        const char *id;
        assert_logfmt_line(lines[i], pairs);
        id = pair_value(pairs, "request_id");
        if (strncmp(id, "rot-", 4) == 0 && atoi(id + 4) < n)
            counts[atoi(id + 4)]++;
        else
            (*others)++;
    }
    free(lines);
    free(text);
}

START_TEST(access_log_reopen_on_sigusr1)
{
    static struct id_load ld;
    static int counts_old[100000], counts_new[100000];
    char path[400], rotated[400];
    pthread_t thread;
    int i, n, at_reopen, others = 0, in_both = 0, missing = 0;
    double end;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", "access-log: @DIR@/access.log", stub_a.port, NULL));
    snprintf(path, sizeof(path), "%s/access.log", daemon_proc.dir);
    snprintf(rotated, sizeof(rotated), "%s/access.log.1", daemon_proc.dir);

    memset(&ld, 0, sizeof(ld));
    ld.port = daemon_proc.port;
    ck_assert_int_eq(pthread_create(&thread, NULL, id_load_main, &ld), 0);
    end = harness_now_ms() + 10000;
    while (atomic_load(&ld.sent) < 50 && harness_now_ms() < end)
        pause_ms(2);

    /* logrotate: rename, then SIGUSR1 */
    ck_assert_int_eq(rename(path, rotated), 0);
    ck_assert_int_eq(proc_signal(&daemon_proc, SIGUSR1), 0);
    ck_assert(proc_log_wait(&daemon_proc, "access log reopened", 5000));
    at_reopen = atomic_load(&ld.sent);
    end = harness_now_ms() + 10000;
    while (atomic_load(&ld.sent) < at_reopen + 50 && harness_now_ms() < end)
        pause_ms(2);
    atomic_store(&ld.stop, 1);
    pthread_join(thread, NULL);
    n = atomic_load(&ld.sent);
    ck_assert_int_eq(atomic_load(&ld.failed), 0);
    ck_assert_int_ge(n, at_reopen + 50);

    /* the last line may trail its response by a moment: wait for the count */
    end = harness_now_ms() + 5000;
    for (;;) {
        int total = 0;
        others = 0;
        memset(counts_old, 0, sizeof(counts_old));
        memset(counts_new, 0, sizeof(counts_new));
        count_ids(rotated, counts_old, n, &others);
        count_ids(path, counts_new, n, &others);
        for (i = 0; i < n; i++)
            total += counts_old[i] + counts_new[i];
        if (total >= n || harness_now_ms() > end)
            break;
        pause_ms(10);
    }
    ck_assert_int_eq(others, 0);
    for (i = 0; i < n; i++) {
        int c = counts_old[i] + counts_new[i];
        if (c == 0)
            missing++;
        ck_assert_msg(c <= 1, "rot-%06d logged %d times", i, c);
        if (counts_old[i] && counts_new[i])
            in_both++;
        /* answered before the reopen was logged: may be in either file; answered
         * after it: only in the new one */
        if (i > at_reopen)
            ck_assert_msg(counts_new[i] == 1, "rot-%06d (after the reopen) not in the new file", i);
        if (i < 50)
            ck_assert_msg(counts_old[i] == 1, "rot-%06d (before the rename) not in the old file",
                          i);
    }
    ck_assert_msg(missing == 0, "%d of %d requests missing from the access logs", missing, n);
    ck_assert_int_eq(in_both, 0);
    /* the old file stopped growing at the reopen: its ids form a prefix */
    for (i = 1; i < n; i++)
        ck_assert_msg(!(counts_old[i] && !counts_old[i - 1]), "old file has a gap at %d", i);
    printf("access log reopen: %d requests, %d before the reopen line\n", n, at_reopen);
}
END_TEST

START_TEST(access_log_logfmt_fields)
{
    const char *const hdrs[] = {"X-Request-Id: fields-1", NULL};
    char path[400], endpoint[128], *text;
    struct logfmt_pair pairs[N_ACCESS_KEYS + 2];
    struct http_resp r;
    char **lines;
    int n;

    const char *const put_hdrs[] = {"X-Request-Id: fields-3", "X-Stub-Body-Bytes: 1234", NULL};
    char want[300];
    size_t body_out;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", "access-log: @DIR@/access.log\naccess-log-format: logfmt",
                          stub_a.port, "retry:\n  base-delay: 10ms\n  max-delay: 20ms"));
    snprintf(path, sizeof(path), "%s/access.log", daemon_proc.dir);
    http_get(daemon_proc.port, "/svc/items/7?x=1", hdrs, &r);
    ck_assert_int_eq(r.status, 200);
    body_out = r.body_len;
    http_resp_free(&r);
    http_get(daemon_proc.port, "/nosuch/x", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    http_resp_free(&r);
    /* a PUT with a body, answered 503 once then 1234 bytes: two attempts */
    ck_assert_int_eq(stub_mode(&stub_a, "{\"status\": 503, \"count\": 1}"), 0);
    http_send(daemon_proc.port, "PUT", "/svc/up?v=2", put_hdrs, "hello", 5, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.body_len, 1234);
    http_resp_free(&r);
    {
        double end = harness_now_ms() + 5000;
        for (;;) {
            text = read_all(path);
            lines = split_lines(text, &n);
            if (n >= 3 || harness_now_ms() > end)
                break;
            free(lines);
            free(text);
            pause_ms(10);
        }
    }
    ck_assert_int_eq(n, 3);

    assert_logfmt_line(lines[0], pairs);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/base", stub_a.port);
    ck_assert_str_eq(pair_value(pairs, "request_id"), "fields-1");
    ck_assert_str_eq(pair_value(pairs, "method"), "GET");
    ck_assert_str_eq(pair_value(pairs, "service"), "svc");
    ck_assert_str_eq(pair_value(pairs, "path"), "/svc/items/7?x=1");
    ck_assert_str_eq(pair_value(pairs, "status"), "200");
    ck_assert_str_eq(pair_value(pairs, "attempts"), "1");
    ck_assert_str_eq(pair_value(pairs, "endpoint"), endpoint);
    ck_assert_str_eq(pair_value(pairs, "flags"), "-");
    ck_assert_msg(strtod(pair_value(pairs, "duration"), NULL) >= 0 &&
                      strtod(pair_value(pairs, "duration"), NULL) < 5,
                  "duration=%s", pair_value(pairs, "duration"));
    ck_assert_msg(strtod(pair_value(pairs, "upstream_time"), NULL) <=
                      strtod(pair_value(pairs, "duration"), NULL),
                  "upstream_time=%s > duration", pair_value(pairs, "upstream_time"));
    ck_assert_msg(strlen(pair_value(pairs, "time")) >= 20 && pair_value(pairs, "time")[4] == '-',
                  "time=%s", pair_value(pairs, "time"));
    /* values with client data are quoted */
    ck_assert(pairs[1].quoted && pairs[2].quoted && pairs[4].quoted && pairs[11].quoted &&
              pairs[14].quoted && pairs[15].quoted);
    ck_assert_msg(strncmp(pair_value(pairs, "client"), "127.0.0.1:", 10) == 0 &&
                      atoi(pair_value(pairs, "client") + 10) > 0,
                  "client=%s", pair_value(pairs, "client"));
    ck_assert_str_eq(pair_value(pairs, "bytes_in"), "0");
    snprintf(want, sizeof(want), "%zu", body_out);
    ck_assert_str_eq(pair_value(pairs, "bytes_out"), want);
    ck_assert_str_eq(pair_value(pairs, "target"), "/base/items/7?x=1");
    ck_assert_str_eq(pair_value(pairs, "tried"), endpoint);
    ck_assert_msg(strcmp(pair_value(pairs, "ttfb"), "-") != 0 &&
                      strtod(pair_value(pairs, "ttfb"), NULL) >= 0 &&
                      strtod(pair_value(pairs, "ttfb"), NULL) <=
                          strtod(pair_value(pairs, "upstream_time"), NULL),
                  "ttfb=%s upstream_time=%s", pair_value(pairs, "ttfb"),
                  pair_value(pairs, "upstream_time"));

    assert_logfmt_line(lines[1], pairs);
    ck_assert_str_eq(pair_value(pairs, "status"), "404");
    ck_assert_str_eq(pair_value(pairs, "path"), "/nosuch/x");
    ck_assert_str_eq(pair_value(pairs, "attempts"), "0");
    ck_assert_str_eq(pair_value(pairs, "flags"), "NR");
    ck_assert_str_eq(pair_value(pairs, "bytes_in"), "0");
    ck_assert_int_gt(atoi(pair_value(pairs, "bytes_out")), 0); /* the JSON error */
    ck_assert_str_eq(pair_value(pairs, "target"), "-");
    ck_assert_str_eq(pair_value(pairs, "tried"), "-");
    ck_assert_str_eq(pair_value(pairs, "ttfb"), "-");

    assert_logfmt_line(lines[2], pairs);
    ck_assert_str_eq(pair_value(pairs, "request_id"), "fields-3");
    ck_assert_str_eq(pair_value(pairs, "status"), "200");
    ck_assert_str_eq(pair_value(pairs, "attempts"), "2");
    ck_assert_str_eq(pair_value(pairs, "bytes_in"), "5");
    ck_assert_str_eq(pair_value(pairs, "bytes_out"), "1234");
    ck_assert_str_eq(pair_value(pairs, "target"), "/base/up?v=2");
    snprintf(want, sizeof(want), "%s,%s", endpoint, endpoint);
    ck_assert_str_eq(pair_value(pairs, "tried"), want);
    free(lines);
    free(text);
}
END_TEST

/* Requests whose client-controlled fields carry quotes, backslashes and control
 * bytes; the raw ones bypass libcurl. */
struct nasty {
    const char *raw;       /* bytes sent */
    const char *want_path; /* path as it must read back from the log */
};

static const struct nasty nasty_requests[] = {
    {"GET /svc/a\"b HTTP/1.1\r\nHost: x\r\nX-Request-Id: nasty-1\r\n\r\n", "/svc/a\"b"},
    {"GET /svc/a\\b\" HTTP/1.1\r\nHost: x\r\nX-Request-Id: nasty-2\r\n\r\n", "/svc/a\\b\""},
    {"GET /svc/esc\x1b[2J HTTP/1.1\r\nHost: x\r\nX-Request-Id: nasty-3\r\n\r\n", "/svc/esc\x1b[2J"},
    {"GET /svc/nl%0Afake=1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: nasty-4\r\n\r\n",
     "/svc/nl%0Afake=1"},
    {"GET /svc/hi\xc3\xa9 HTTP/1.1\r\nHost: x\r\nX-Request-Id: nasty-5\r\n\r\n", "/svc/hi\xc3\xa9"},
};
#define N_NASTY (sizeof(nasty_requests) / sizeof(nasty_requests[0]))
/* a valid request id (visible ASCII) trying to close the quote and add a field */
#define FORGED_ID "x\"status=999\\\"\\"

static char **access_lines_wait(const char *path, int want, int *n, char **text)
{
    double end = harness_now_ms() + 5000;
    char **lines;

    for (;;) {
        *text = read_all(path);
        lines = split_lines(*text, n);
        if (*n >= want || harness_now_ms() > end)
            return lines;
        free(lines);
        free(*text);
        pause_ms(10);
    }
}

static void send_nasty_requests(int port)
{
    const char *const hdrs[] = {"X-Request-Id: " FORGED_ID, NULL};
    char resp[8192];
    struct http_resp r;
    size_t i;

    for (i = 0; i < N_NASTY; i++) {
        int got = raw_exchange(port, nasty_requests[i].raw, strlen(nasty_requests[i].raw), resp,
                               sizeof(resp), 5000);
        ck_assert_msg(got > 0 && raw_status(resp) >= 200, "nasty request %zu: no answer", i);
    }
    http_get(port, "/svc/forged", hdrs, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(http_header(&r, "X-Request-Id"), FORGED_ID);
    http_resp_free(&r);
}

START_TEST(access_log_escapes_client_data_logfmt)
{
    char path[400], *text, want_id[32];
    struct logfmt_pair pairs[N_ACCESS_KEYS + 2];
    char **lines;
    int n;
    size_t i;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", "access-log: @DIR@/access.log", stub_a.port, NULL));
    snprintf(path, sizeof(path), "%s/access.log", daemon_proc.dir);
    send_nasty_requests(daemon_proc.port);
    lines = access_lines_wait(path, (int)N_NASTY + 1, &n, &text);
    /* one line per request, whatever the request carried */
    ck_assert_int_eq(n, (int)N_NASTY + 1);
    for (i = 0; i < N_NASTY; i++) {
        assert_logfmt_line(lines[i], pairs);
        snprintf(want_id, sizeof(want_id), "nasty-%zu", i + 1);
        ck_assert_str_eq(pair_value(pairs, "request_id"), want_id);
        ck_assert_str_eq(pair_value(pairs, "path"), nasty_requests[i].want_path);
    }
    assert_logfmt_line(lines[N_NASTY], pairs);
    ck_assert_str_eq(pair_value(pairs, "request_id"), FORGED_ID);
    ck_assert_str_eq(pair_value(pairs, "status"), "200");
    free(lines);
    free(text);
}
END_TEST

/*
 * JSON strings are Unicode: a raw byte >= 0x80 of the request-target may come back
 * as itself (valid UTF-8 passed through) or as the code point U+0080..U+00FF of
 * that byte (what ahoyd does: \u00XX per byte, which keeps invalid UTF-8 one-to-one).
 */
static bool json_path_matches(const char *got, const char *raw)
{
    char latin1[512];
    size_t n = 0;
    const unsigned char *p;

    if (strcmp(got, raw) == 0)
        return true;
    for (p = (const unsigned char *)raw; *p != '\0' && n + 3 < sizeof(latin1); p++) {
        if (*p < 0x80) {
            latin1[n++] = (char)*p;
        } else {
            latin1[n++] = (char)(0xc0 | (*p >> 6));
            latin1[n++] = (char)(0x80 | (*p & 0x3f));
        }
    }
    latin1[n] = '\0';
    return strcmp(got, latin1) == 0;
}

START_TEST(access_log_json_lines)
{
    const char *const hdrs[] = {"X-Request-Id: json-1", NULL};
    char path[400], *text, endpoint[128], want_id[32];
    struct http_resp r;
    char **lines;
    int n, k;
    size_t i;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", "access-log: @DIR@/access.log\naccess-log-format: json",
                          stub_a.port, NULL));
    snprintf(path, sizeof(path), "%s/access.log", daemon_proc.dir);
    http_get(daemon_proc.port, "/svc/j?q=1", hdrs, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    send_nasty_requests(daemon_proc.port);
    lines = access_lines_wait(path, (int)N_NASTY + 2, &n, &text);
    ck_assert_int_eq(n, (int)N_NASTY + 2);

    for (k = 0; k < n; k++) {
        cJSON *j = cJSON_Parse(lines[k]);
        const cJSON *item;
        int count = 0;
        ck_assert_msg(cJSON_IsObject(j), "not a JSON object: %s", lines[k]);
        cJSON_ArrayForEach(item, j)
        {
            ck_assert_msg(count < N_ACCESS_KEYS && strcmp(item->string, access_keys[count]) == 0,
                          "key %d is %s, want %s: %s", count, item->string,
                          count < N_ACCESS_KEYS ? access_keys[count] : "(none)", lines[k]);
            count++;
        }
        ck_assert_int_eq(count, N_ACCESS_KEYS);
        ck_assert(cJSON_IsString(json_path(j, "time")));
        ck_assert(cJSON_IsString(json_path(j, "request_id")));
        ck_assert(cJSON_IsString(json_path(j, "method")));
        ck_assert(cJSON_IsString(json_path(j, "path")));
        ck_assert(cJSON_IsNumber(json_path(j, "status")));
        ck_assert(cJSON_IsNumber(json_path(j, "attempts")));
        ck_assert(cJSON_IsNumber(json_path(j, "duration")));
        ck_assert(cJSON_IsString(json_path(j, "flags")));
        if (k == 0) {
            snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/base", stub_a.port);
            ck_assert_str_eq(json_str(j, "request_id"), "json-1");
            ck_assert_str_eq(json_str(j, "method"), "GET");
            ck_assert_str_eq(json_str(j, "service"), "svc");
            ck_assert_str_eq(json_str(j, "path"), "/svc/j?q=1");
            ck_assert_int_eq((int)json_num(j, "status", -1), 200);
            ck_assert_int_eq((int)json_num(j, "attempts", -1), 1);
            ck_assert_str_eq(json_str(j, "endpoint"), endpoint);
            ck_assert(cJSON_IsNumber(json_path(j, "upstream_time")));
            ck_assert_str_eq(json_str(j, "flags"), "");
            ck_assert_msg(strncmp(json_str(j, "client"), "127.0.0.1:", 10) == 0, "client %s",
                          json_str(j, "client"));
            ck_assert_int_eq((int)json_num(j, "bytes_in", -1), 0);
            ck_assert_int_gt((int)json_num(j, "bytes_out", -1), 0);
            ck_assert_str_eq(json_str(j, "target"), "/base/j?q=1");
            ck_assert_str_eq(json_str(j, "tried"), endpoint);
            ck_assert(json_num(j, "ttfb", -1) >= 0); /* a number, not null */
        } else if (k <= (int)N_NASTY) {
            i = (size_t)k - 1;
            snprintf(want_id, sizeof(want_id), "nasty-%zu", i + 1);
            ck_assert_str_eq(json_str(j, "request_id"), want_id);
            ck_assert_msg(json_str(j, "path") != NULL &&
                              json_path_matches(json_str(j, "path"), nasty_requests[i].want_path),
                          "path reads back as %s: %s", json_str(j, "path"), lines[k]);
        } else {
            ck_assert_str_eq(json_str(j, "request_id"), FORGED_ID);
            ck_assert_int_eq((int)json_num(j, "status", -1), 200);
        }
        cJSON_Delete(j);
    }
    free(lines);
    free(text);
}
END_TEST

/* ================================================================================== */
/* timeouts for streams                                                                 */
/* ================================================================================== */

/* read-timeout bounds a silence inside the response: a body that pauses 1.5 s after its
 * first bytes ends as a timeout soon after 300 ms of silence, not at the pause's end. The
 * head went out already (the body streams): the client's reply is cut, flag RS. */
START_TEST(read_timeout_cuts_a_silent_response)
{
    const char *const hdrs[] = {"X-Stub-Body-Bytes: 1000", "X-Stub-Pause-Ms: 1500", NULL};
    struct http_resp r;
    double t0, took;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port,
                          "timeout: 0\nread-timeout: 300ms\nretry:\n  max-attempts: 1"));
    t0 = harness_now_ms();
    http_get(daemon_proc.port, "/svc/pausing", hdrs, &r);
    took = harness_now_ms() - t0;
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.curl_code, CURLE_PARTIAL_FILE);
    ck_assert_uint_lt(r.body_len, 1000);
    http_resp_free(&r);
    ck_assert_msg(took >= 250 && took < 1300, "cut after %.0f ms (read-timeout 300 ms, "
                  "pause 1500 ms)", took);
    ck_assert(proc_log_wait(&daemon_proc, "flags=RS,UT", 2000));
}
END_TEST

/* timeout: 0 is no bound, and without read-timeout a pause is waited out. */
START_TEST(timeout_zero_waits_for_a_pausing_response)
{
    const char *const hdrs[] = {"X-Stub-Body-Bytes: 1000", "X-Stub-Pause-Ms: 1200", NULL};
    struct http_resp r;
    double t0, took;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_daemon(ops_yaml("127.0.0.1:0", NULL, stub_a.port, "timeout: 0"));
    t0 = harness_now_ms();
    http_get(daemon_proc.port, "/svc/pausing", hdrs, &r);
    took = harness_now_ms() - t0;
    ck_assert_msg(r.status == 200 && r.body_len == 1000, "status %ld, %zu bytes (curl %d)",
                  r.status, r.body_len, r.curl_code);
    http_resp_free(&r);
    ck_assert_msg(took >= 1100, "answered after %.0f ms: the stub paused 1200 ms", took);
}
END_TEST

/* ================================================================================== */
/* journald                                                                             */
/* ================================================================================== */

/*
 * Start ahoyd by hand with stderr to a log file and JOURNAL_STREAM naming that
 * file's dev:ino, as systemd does for a service whose stderr is the journal.
 * profile: a -p argument or NULL. Fills p (pid, dir, conf_path, log_path).
 */
static void start_under_journal(struct proc *p, const char *yaml, const char *profile)
{
    static char env[64];
    const char *args[] = {"-c", p->conf_path, profile ? "-p" : NULL, profile, NULL};
    const char *envs[] = {env, NULL};
    struct stat st;
    int fd;

    memset(p, 0, sizeof(*p));
    make_dir(p->dir, sizeof(p->dir), "journal");
    snprintf(p->conf_path, sizeof(p->conf_path), "%s/ahoyd.yaml", p->dir);
    snprintf(p->log_path, sizeof(p->log_path), "%s/ahoyd.log", p->dir);
    write_text(p->conf_path, yaml);
    fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &st), 0);
    close(fd);
    snprintf(env, sizeof(env), "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    p->pid = spawn_ahoyd(args, p->log_path, p->log_path, envs);
    ck_assert_msg(proc_log_wait(p, "ready", 20000), "no ready line");
}

/* Every line of text starts with <0>..<7> and carries no timestamp or pid; counts
 * the lines per priority into by_prio[8]. */
static void assert_journal_lines(const char *text_in, int by_prio[8])
{
    char *text = strdup(text_in);
    char **lines;
    int n, i;

    memset(by_prio, 0, 8 * sizeof(int));
    lines = split_lines(text, &n);
    for (i = 0; i < n; i++) {
        const char *l = lines[i];
        ck_assert_msg(l[0] == '<' && l[1] >= '0' && l[1] <= '7' && l[2] == '>',
                      "line %d of %d has no <N> prefix under journald: %s", i + 1, n, l);
        ck_assert_msg(!(l[3] >= '0' && l[3] <= '9') && strstr(l, "ahoyd[") == NULL,
                      "line %d has a timestamp or pid under journald: %s", i + 1, l);
        by_prio[l[1] - '0']++;
    }
    free(lines);
    free(text);
}

START_TEST(journald_priority_prefixes)
{
    char yaml[8192], with_profile[8192];
    const char *pyfly, *warn;
    struct proc p;
    char *text;
    int by_prio[8];

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    snprintf(yaml, sizeof(yaml), "%s",
             ops_yaml("127.0.0.1:0", "access-log: off", stub_a.port, NULL));
    start_under_journal(&p, yaml, NULL);

    /* info lines (reloading, reloaded), a warning (a profile file that is missing),
     * errors (a bad reload) */
    pyfly = strstr(yaml, "pyfly:\n");
    ck_assert_ptr_nonnull(pyfly);
    snprintf(with_profile, sizeof(with_profile), "%.*spyfly:\n  profiles:\n    active: nosuch\n%s",
             (int)(pyfly - yaml), yaml, pyfly + strlen("pyfly:\n"));
    reload_with(&p, with_profile, true);
    reload_with(&p, ops_yaml("127.0.0.1:0", "access-log: off", stub_a.port, "bogus-key: 1"), false);
    ck_assert_int_eq(proc_stop(&p), 0);

    text = read_all(p.log_path);
    assert_journal_lines(text, by_prio);
    ck_assert_int_ge(by_prio[6], 4);
    ck_assert_int_eq(by_prio[4], 1);
    ck_assert_int_ge(by_prio[3], 2);
    ck_assert_msg(strncmp(text, "<6>proxy listening on 127.0.0.1:", 32) == 0, "%s", text);
    warn = strstr(text, "\n<4>");
    ck_assert_msg(warn != NULL && strstr(warn, "nosuch") != NULL,
                  "no <4> line about the missing profile: %s", text);
    ck_assert_ptr_nonnull(strstr(text, ": unknown key 'bogus-key'\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n<3>" RELOAD_FAILED "\n"));
    free(text);
}
END_TEST

START_TEST(journald_startup_warnings_prefixed)
{
    struct proc p;
    char *text;
    int by_prio[8];

    /* -p with a missing profile file: a configuration warning at start-up */
    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    start_under_journal(&p, ops_yaml("127.0.0.1:0", "access-log: off", stub_a.port, NULL),
                        "nosuch");
    ck_assert_int_eq(proc_stop(&p), 0);
    text = read_all(p.log_path);
    ck_assert_ptr_nonnull(strstr(text, "nosuch"));
    /* the same text as --check-config prints, marked as a warning */
    ck_assert_msg(strstr(text, "<4>--profile: warning: profile 'nosuch': file ") != NULL, "%s",
                  text);
    assert_journal_lines(text, by_prio);
    ck_assert_int_eq(by_prio[4], 1);
    free(text);
}
END_TEST

START_TEST(journald_other_stream_keeps_timestamps)
{
    char dir[256], conf[300], logp[300];
    const char *args[] = {"-c", conf, NULL};
    const char *envs[] = {"JOURNAL_STREAM=1:2", NULL};
    struct proc p;
    char *text;

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    make_dir(dir, sizeof(dir), "nojournal");
    snprintf(conf, sizeof(conf), "%s/ahoyd.yaml", dir);
    snprintf(logp, sizeof(logp), "%s/ahoyd.log", dir);
    write_text(conf, ops_yaml("127.0.0.1:0", "access-log: off", stub_a.port, NULL));
    memset(&p, 0, sizeof(p));
    snprintf(p.log_path, sizeof(p.log_path), "%s", logp);
    p.pid = spawn_ahoyd(args, logp, logp, envs);
    ck_assert_msg(proc_log_wait(&p, "ready", 20000), "no ready line");
    ck_assert_int_eq(proc_stop(&p), 0);
    text = read_all(logp);
    /* stderr is not the journal: ISO-8601 time, pid and level, no <N> */
    ck_assert_msg(text[0] == '2' && text[4] == '-' && text[10] == 'T' && text[0] != '<',
                  "first line: %.120s", text);
    ck_assert_ptr_nonnull(strstr(text, " info: proxy listening on 127.0.0.1:"));
    ck_assert_ptr_null(strstr(text, "<6>"));
    free(text);
}
END_TEST

/* ================================================================================== */
/* command line                                                                         */
/* ================================================================================== */

/* ---- failure causes in the log ----------------------------------------------------- */

/* At info level a breaker that opens says after how many failures and why, with the
 * system error; at debug level each failed attempt names its request, service and
 * endpoint. */
START_TEST(breaker_log_names_the_cause)
{
    char want[400], down_url[64], id[140];
    struct http_resp r;
    int down = closed_port();

    ck_assert_int_eq(stub_start(&stub_a, "a", NULL), 0);
    snprintf(down_url, sizeof(down_url), "http://127.0.0.1:%d", down);
    /* svc: the stub answering 503; down: nothing listens */
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "%s"
             "        retry: false\n"
             "        circuit-breaker: {failure-threshold: 2, recovery-timeout: 60s}\n"
             "      down:\n"
             "        base-url: %s\n"
             "        retry: false\n"
             "        circuit-breaker: {failure-threshold: 3, recovery-timeout: 60s}\n",
             ops_yaml("127.0.0.1:0", "log-level: debug", stub_a.port, NULL), down_url);
    start_daemon(yaml);

    for (int i = 0; i < 3; i++) {
        http_get(daemon_proc.port, "/down/x", NULL, &r);
        ck_assert_int_eq(r.status, 502);
        http_resp_free(&r);
    }
    http_get(daemon_proc.port, "/down/x", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    snprintf(id, sizeof(id), "%s", http_header(&r, "X-Request-Id"));
    http_resp_free(&r);
    snprintf(want, sizeof(want),
             "warn: circuit breaker down %s closed -> open after 3 failures "
             "(connect-failure: Connection refused)",
             down_url);
    ck_assert_msg(proc_log_wait(&daemon_proc, want, 5000), "no line \"%s\"", want);

    for (int i = 0; i < 2; i++) {
        http_get(daemon_proc.port, "/svc/x", (const char *[]){"X-Stub-Status: 503", NULL}, &r);
        ck_assert_int_eq(r.status, 503);
        if (i == 1)
            snprintf(id, sizeof(id), "%s", http_header(&r, "X-Request-Id"));
        http_resp_free(&r);
    }
    snprintf(want, sizeof(want),
             "circuit breaker svc http://127.0.0.1:%d/base closed -> open after 2 failures "
             "(5xx: HTTP 503)",
             stub_a.port);
    ck_assert_msg(proc_log_wait(&daemon_proc, want, 5000), "no line \"%s\"", want);
    snprintf(want, sizeof(want),
             "debug: attempt 1 of request %s failed on service svc endpoint "
             "http://127.0.0.1:%d/base: 5xx: HTTP 503",
             id, stub_a.port);
    ck_assert_msg(proc_log_count(&daemon_proc, want) == 1, "no line \"%s\"", want);
    snprintf(want, sizeof(want),
             "failed on service down endpoint %s: connect-failure: "
             "Connection refused",
             down_url);
    ck_assert_int_eq(proc_log_count(&daemon_proc, want), 3);
    ck_assert_int_eq(proc_log_count(&daemon_proc, "upstream attempt failed"), 0);
}
END_TEST

START_TEST(cli_exit_codes)
{
    char dir[256], good[300], bad[300], want[400];
    struct run_result res;
    int line1, col1, line2, col2;

    make_dir(dir, sizeof(dir), "cli");
    snprintf(good, sizeof(good), "%s/good.yaml", dir);
    snprintf(bad, sizeof(bad), "%s/bad.yaml", dir);
    write_text(good, ops_yaml("127.0.0.1:0", NULL, 9, NULL));
    write_text(bad, ops_yaml("127.0.0.1:0", NULL, 9, "retyr: 2\ntimeout: fast"));
    line_col(ops_yaml("127.0.0.1:0", NULL, 9, "retyr: 2\ntimeout: fast"), "retyr", &line1, &col1);
    line_col(ops_yaml("127.0.0.1:0", NULL, 9, "retyr: 2\ntimeout: fast"), "fast", &line2, &col2);

    {
        const char *args[] = {"--check-config", "-c", good, NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 0);
        ck_assert_str_eq(res.out, "configuration OK\n");
        run_result_free(&res);
    }
    {
        const char *args[] = {"-c", bad, "--check-config", NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 1);
        ck_assert_str_eq(res.out, "");
        snprintf(want, sizeof(want), "%s:%d:%d: unknown key 'retyr'", bad, line1, col1);
        ck_assert_msg(strstr(res.err, want) != NULL, "stderr: %s", res.err);
        /* every error, not only the first */
        snprintf(want, sizeof(want), "%s:%d:%d: ", bad, line2, col2);
        ck_assert_msg(strstr(res.err, want) != NULL, "stderr: %s", res.err);
        run_result_free(&res);
    }
    {
        /* a bad file without --check-config: 1 as well, no listener */
        const char *args[] = {"-c", bad, NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 1);
        ck_assert_ptr_null(strstr(res.err, "listening"));
        run_result_free(&res);
    }
    {
        const char *args[] = {"--no-such-option", NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 2);
        ck_assert_ptr_nonnull(strstr(res.err, "usage: ahoyd"));
        run_result_free(&res);
    }
    {
        const char *args[] = {"-c", good, "stray-argument", NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 2);
        run_result_free(&res);
    }
    {
        const char *args[] = {"-l", "loud", "-c", good, NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 2);
        run_result_free(&res);
    }
    {
        const char *args[] = {"-V", NULL};
        unsigned a, b, c;
        int end = 0;
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 0);
        ck_assert_msg(sscanf(res.out, "ahoyd %u.%u.%u\n%n", &a, &b, &c, &end) == 3 &&
                          res.out[end] == '\0',
                      "-V printed \"%s\"", res.out);
        ck_assert_str_eq(res.out, "ahoyd " PACKAGE_VERSION "\n");
        run_result_free(&res);
    }
    {
        const char *args[] = {"--version", NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 0);
        ck_assert_str_eq(res.out, "ahoyd " PACKAGE_VERSION "\n");
        run_result_free(&res);
    }
    {
        const char *args[] = {"-h", NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 0);
        ck_assert_msg(strncmp(res.out, "usage: ahoyd", 12) == 0, "-h printed \"%s\"", res.out);
        ck_assert_ptr_nonnull(strstr(res.out, "--check-config"));
        run_result_free(&res);
    }
}
END_TEST

/* --check-config: each warning marked as one, never changing the exit status, counted
 * before "configuration OK"; the errors counted last. */
START_TEST(cli_check_config_counts)
{
    char dir[256], one[300], two[300], bad[300], want[1024];
    const char *yaml_one = ops_yaml("127.0.0.1:0", NULL, 9, "timeout: 1s\nconnect-timeout: 10s");
    struct run_result res;
    int line, col;

    make_dir(dir, sizeof(dir), "counts");
    snprintf(one, sizeof(one), "%s/one.yaml", dir);
    snprintf(two, sizeof(two), "%s/two.yaml", dir);
    snprintf(bad, sizeof(bad), "%s/bad.yaml", dir);
    write_text(one, yaml_one);
    line_col(yaml_one, "10s", &line, &col);
    write_text(two, ops_yaml("127.0.0.1:0", NULL, 9, "deadline: 1s\nretry-base-delay: 1m"));
    write_text(bad, ops_yaml("127.0.0.1:0", NULL, 9, "retyr: 2\ntimeout: fast"));
    {
        const char *args[] = {"--check-config", "-c", one, NULL};
        run_ahoyd(args, &res);
        ck_assert_int_eq(res.status, 0);
        ck_assert_str_eq(res.out, "1 warning\nconfiguration OK\n");
        snprintf(want, sizeof(want),
                 "%s:%d:%d: warning: connect-timeout 10s is not shorter than timeout 1s "
                 "(%s:%d:18), which includes the connect: it has no effect\n",
                 one, line, col, one, line - 1);
        ck_assert_str_eq(res.err, want);
        run_result_free(&res);
    }
    {
        const char *args[] = {"--check-config", "-c", two, NULL};
        const char *envs[] = {"PYFLY_CLIENT_DEFAULT_TIMOUT=1s", NULL};
        run_ahoyd_env(args, envs, &res);
        ck_assert_int_eq(res.status, 0);
        ck_assert_str_eq(res.out, "3 warnings\nconfiguration OK\n");
        ck_assert_msg(strstr(res.err, "env PYFLY_CLIENT_DEFAULT_TIMOUT: warning: unknown "
                                      "variable; did you mean 'PYFLY_CLIENT_DEFAULT_TIMEOUT'?\n"),
                      "stderr: %s", res.err);
        run_result_free(&res);
    }
    {
        const char *args[] = {"--check-config", "-c", bad, NULL};
        const char *envs[] = {"PYFLY_CLIENT_DEFAULT_TIMOUT=1s", NULL};
        const char *last = "\n2 errors\n"; /* the verdict, last */
        size_t n;
        run_ahoyd_env(args, envs, &res);
        ck_assert_int_eq(res.status, 1);
        ck_assert_str_eq(res.out, "");
        n = strlen(res.err);
        ck_assert_msg(n > strlen(last) && strcmp(res.err + n - strlen(last), last) == 0,
                      "stderr: %s", res.err);
        ck_assert_ptr_nonnull(strstr(res.err, ": warning: unknown variable"));
        run_result_free(&res);
    }
}
END_TEST

START_TEST(cli_listen_in_use_exits_3)
{
    char dir[256], conf[300], listen[64], want[128];
    struct run_result res;
    int held_fd, held;

    make_dir(dir, sizeof(dir), "inuse");
    snprintf(conf, sizeof(conf), "%s/ahoyd.yaml", dir);
    held = hold_port(&held_fd);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", held);
    write_text(conf, ops_yaml(listen, NULL, 9, NULL));
    {
        const char *args[] = {"-c", conf, NULL};
        run_ahoyd(args, &res);
    }
    ck_assert_msg(res.status == 3, "exit %d with the listen port taken; stderr: %s", res.status,
                  res.err);
    snprintf(want, sizeof(want), "cannot listen on %s", listen);
    ck_assert_msg(strstr(res.err, want) != NULL, "stderr: %s", res.err);
    run_result_free(&res);

    /* the admin address taken: the same */
    {
        char text[8192];
        const char *yaml = ops_yaml("127.0.0.1:0", NULL, 9, NULL);
        const char *at = strstr(yaml, "  admin-listen: off\n");
        const char *args[] = {"-c", conf, NULL};
        snprintf(text, sizeof(text), "%.*s  admin-listen: %s\n%s", (int)(at - yaml), yaml, listen,
                 at + strlen("  admin-listen: off\n"));
        write_text(conf, text);
        run_ahoyd(args, &res);
        ck_assert_msg(res.status == 3, "exit %d with the admin port taken; stderr: %s", res.status,
                      res.err);
        run_result_free(&res);
    }
    close(held_fd);
}
END_TEST

/* ---- main ------------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int main(void)
{
    Suite *s = suite_create("ops");
    TCase *tc;
    SRunner *sr;
    const char *tmp = getenv("TMPDIR");
    int failed;

    snprintf(ops_root, sizeof(ops_root), "%s/ahoyd-ops-XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    if (mkdtemp(ops_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }

    tc = harness_tcase(s, "notify");
    tcase_add_test(tc, notify_ready_reload_stopping);
    tcase_add_test(tc, notify_watchdog_pings);
    tcase_add_test(tc, notify_watchdog_other_pid_is_ignored);

    tc = harness_tcase(s, "reload");
    tcase_add_test(tc, reload_changes_base_url);
    tcase_add_test(tc, reload_invalid_keeps_old_config);
    tcase_add_test(tc, reload_rebinds_listen);
    tcase_add_test(tc, reload_unbindable_listen_fails_whole_reload);
    tcase_add_test(tc, reload_keeps_breaker_state);
    tcase_add_test(tc, reload_50_times_under_load_loses_nothing);

    tc = harness_tcase(s, "drain");
    tcase_add_test(tc, drain_finishes_calls_and_refuses_new_ones);
    tcase_add_test(tc, drain_answers_request_on_open_connection_with_503);
    tcase_add_test(tc, drain_shutdown_timeout_answers_503);
    tcase_add_test(tc, drain_second_sigterm_exits_at_once);
    tcase_add_test(tc, drain_delay_serves_on_then_drains);
    tcase_add_test(tc, drain_delay_second_sigterm_starts_drain);

    tc = harness_tcase(s, "access_log");
    tcase_add_test(tc, access_log_reopen_on_sigusr1);
    tcase_add_test(tc, access_log_logfmt_fields);
    tcase_add_test(tc, access_log_escapes_client_data_logfmt);
    tcase_add_test(tc, access_log_json_lines);

    tc = harness_tcase(s, "stream_timeouts");
    tcase_add_test(tc, read_timeout_cuts_a_silent_response);
    tcase_add_test(tc, timeout_zero_waits_for_a_pausing_response);

    tc = harness_tcase(s, "journald");
    tcase_add_test(tc, journald_priority_prefixes);
    tcase_add_test(tc, journald_startup_warnings_prefixed);
    tcase_add_test(tc, journald_other_stream_keeps_timestamps);

    tc = harness_tcase(s, "failure_causes");
    tcase_add_test(tc, breaker_log_names_the_cause);

    tc = harness_tcase(s, "cli");
    tcase_add_test(tc, cli_exit_codes);
    tcase_add_test(tc, cli_check_config_counts);
    tcase_add_test(tc, cli_listen_in_use_exits_3);

    harness_init();
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(ops_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return harness_finish(failed) != 0 ? 1 : 0;
}
