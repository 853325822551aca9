/*
 * harness.c - process, HTTP, raw-socket and JSON helpers for the integration
 * suites; see harness.h for the contract and the cleanup story.
 *
 * Tests are plain blocking code (libcurl easy and multi APIs, blocking
 * sockets with poll timeouts): every wait here is bounded.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#ifndef TOP_BUILDDIR
#define TOP_BUILDDIR "."
#endif

#define START_TIMEOUT_MS 20000 /* sanitizer builds start slowly */
#define STOP_TIMEOUT_MS 15000
#define MAX_REGISTERED 64

static char temp_root[200];

/* Processes started by this test (copies: the test's structs may be gone at
 * teardown time). */
static struct registered {
    pid_t pid;
    char dir[256];
} registered[MAX_REGISTERED];
static int n_registered;

double harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *read_file_all(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (len_out)
        *len_out = 0;
    if (f == NULL)
        return strdup("");
    for (;;) {
        size_t n;
        if (cap - len < 4096) {
            char *p;
            cap = cap ? cap * 2 : 8192;
            p = realloc(buf, cap);
            if (p == NULL)
                break;
            buf = p;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (buf == NULL)
        return strdup("");
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

/* ---- init / fixtures -------------------------------------------------------------- */

void harness_init(void)
{
    const char *tmp = getenv("TMPDIR");

    signal(SIGPIPE, SIG_IGN);
    /* Daemons orphaned by a failed test (killed by PDEATHSIG) are reparented here
     * rather than to init, and reaped by harness_finish(). */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(temp_root, sizeof(temp_root), "%s/ahoyd-tests-XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    if (mkdtemp(temp_root) == NULL) {
        perror("mkdtemp");
        temp_root[0] = '\0';
    }
}

static void print_tail(const char *path, const char *title, size_t max)
{
    size_t len;
    char *text = read_file_all(path, &len);
    const char *start = text;

    if (len > max)
        start = text + len - max;
    fprintf(stderr, "---- %s: %s%s ----\n%s\n", title, path, len > max ? " (tail)" : "", start);
    free(text);
}

int harness_finish(int failed)
{
    if (failed && temp_root[0] != '\0') {
        /* Directories still here belong to tests that failed (teardown removes the
         * others): show their config and log. */
        char cmd[512];
        FILE *ls;
        snprintf(cmd, sizeof(cmd), "ls -1 '%s' 2>/dev/null", temp_root);
        ls = popen(cmd, "r");
        if (ls != NULL) {
            char name[256];
            while (fgets(name, sizeof(name), ls) != NULL) {
                char path[600];
                name[strcspn(name, "\n")] = '\0';
                snprintf(path, sizeof(path), "%s/%s/ahoyd.yaml", temp_root, name);
                print_tail(path, "config", 8192);
                snprintf(path, sizeof(path), "%s/%s/ahoyd.log", temp_root, name);
                print_tail(path, "daemon log", 16384);
            }
            pclose(ls);
        }
    }
    remove_tree(temp_root);
    curl_global_cleanup();
    {
        /* Reap orphans (bounded: they were SIGKILLed when their test died). */
        double end = harness_now_ms() + 2000;
        while (harness_now_ms() < end) {
            pid_t r = waitpid(-1, NULL, WNOHANG);
            if (r < 0)
                break;
            if (r == 0)
                sleep_ms(10);
        }
    }
    return failed;
}

int harness_main(Suite *s)
{
    SRunner *sr;
    int failed;

    harness_init();
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return harness_finish(failed) != 0 ? 1 : 0;
}

TCase *harness_tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_add_checked_fixture(tc, harness_setup, harness_teardown);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return tc;
}

void harness_setup(void)
{
    n_registered = 0;
}

static void reap_registered(struct registered *r)
{
    int status;

    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, &status, 0);
        r->pid = 0;
    }
}

/* SIGTERM, wait (bounded), SIGKILL if need be; returns the exit status. */
static int stop_registered(struct registered *r)
{
    struct proc p;

    memset(&p, 0, sizeof(p));
    p.pid = r->pid;
    r->pid = 0;
    return proc_stop(&p);
}

void harness_teardown(void)
{
    int i, bad_status = 0;
    pid_t bad_pid = 0;

    /* Daemons get a graceful stop and must exit 0: under the sanitizers that is
     * where leaks and late errors show. A failure keeps the temp dir, so that
     * harness_finish() prints its log. */
    for (i = 0; i < n_registered; i++) {
        struct registered *r = &registered[i];
        if (r->pid > 0 && r->dir[0] != '\0') {
            pid_t pid = r->pid;
            int st = stop_registered(r);
            if (st != 0 && bad_pid == 0) {
                bad_pid = pid;
                bad_status = st;
            }
        } else {
            reap_registered(r);
        }
    }
    for (i = 0; i < n_registered; i++) {
        reap_registered(&registered[i]);
        if (bad_pid == 0)
            remove_tree(registered[i].dir);
    }
    n_registered = 0;
    ck_assert_msg(bad_pid == 0, "ahoyd (pid %d) exited with status %d after SIGTERM", (int)bad_pid,
                  bad_status);
}

static void register_proc(const struct proc *p)
{
    if (n_registered < MAX_REGISTERED) {
        registered[n_registered].pid = p->pid;
        snprintf(registered[n_registered].dir, sizeof(registered[0].dir), "%s", p->dir);
        n_registered++;
    }
}

static void forget_pid(pid_t pid)
{
    int i;

    for (i = 0; i < n_registered; i++)
        if (registered[i].pid == pid)
            registered[i].pid = 0;
}

/* ---- processes ------------------------------------------------------------------- */

static const char *binary(const char *env, const char *fallback)
{
    const char *v = getenv(env);
    return v != NULL && *v != '\0' ? v : fallback;
}

/* fork + exec argv with stdout to out_fd and stderr to err_fd (-1 = inherit). */
static pid_t spawn(char *const *argv, int out_fd, int err_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0)
        _exit(127);
    if (err_fd >= 0 && dup2(err_fd, STDERR_FILENO) < 0)
        _exit(127);
    /* ahoyd reads AHOYD_* as configuration overrides and warns about unknown ones. */
    unsetenv("AHOYD_BIN");
    execv(argv[0], argv);
    fprintf(stderr, "harness: cannot exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int stub_start(struct proc *p, const char *name, const char *extra_args)
{
    char *argv[32];
    char *copy = extra_args != NULL ? strdup(extra_args) : NULL;
    char *save = NULL, *tok;
    int argc = 0, fds[2];
    char line[256];
    size_t len = 0;
    double end;

    memset(p, 0, sizeof(*p));
    argv[argc++] = (char *)binary("STUB_BIN", TOP_BUILDDIR "/tests/stub_upstream");
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--name";
    argv[argc++] = (char *)(name != NULL ? name : "stub");
    for (tok = copy ? strtok_r(copy, " ", &save) : NULL; tok != NULL && argc < 30;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    argv[argc] = NULL;

    if (pipe2(fds, O_CLOEXEC) != 0) {
        free(copy);
        return -1;
    }
    p->pid = spawn(argv, fds[1], -1);
    close(fds[1]);
    free(copy);
    if (p->pid < 0) {
        close(fds[0]);
        p->pid = 0;
        return -1;
    }
    register_proc(p);

    end = harness_now_ms() + (getenv("AHOYD_WRAPPER") ? 10 * START_TIMEOUT_MS : START_TIMEOUT_MS);
    while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int left = (int)(end - harness_now_ms());
        ssize_t n;
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        n = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    line[len] = '\0';
    {
        const char *at = strstr(line, "stub listening on ");
        const char *colon = at ? strrchr(at, ':') : NULL;
        if (colon == NULL || (p->port = atoi(colon + 1)) <= 0) {
            fprintf(stderr, "harness: stub %s did not report its port (got \"%s\")\n", name, line);
            proc_kill(p);
            return -1;
        }
    }
    return 0;
}

/* Does the yaml turn the admin API on? (absent = on, at its default address) */
static bool yaml_admin_on(const char *yaml)
{
    const char *at = strstr(yaml, "admin-listen:");
    char word[16];
    size_t n = 0;

    if (at == NULL)
        return true;
    at += strlen("admin-listen:");
    while (*at == ' ' || *at == '\t' || *at == '"' || *at == '\'')
        at++;
    while (n < sizeof(word) - 1 && at[n] != '\0' && strchr(" \t\r\n\"'#", at[n]) == NULL) {
        word[n] = at[n];
        n++;
    }
    word[n] = '\0';
    return !(strcasecmp(word, "off") == 0 || strcasecmp(word, "false") == 0 ||
             strcasecmp(word, "no") == 0);
}

/* Port after "<what> listening on ADDR" in the log; 0 for a unix socket,
 * -1 when not there yet. */
static int log_listen_port(const char *log, const char *what)
{
    char needle[64];
    const char *at, *end, *colon = NULL, *q;

    snprintf(needle, sizeof(needle), "%s listening on ", what);
    at = strstr(log, needle);
    if (at == NULL)
        return -1;
    at += strlen(needle);
    end = at + strcspn(at, " \t\r\n");
    if (*end == '\0')
        return -1; /* line not complete yet */
    if (strncmp(at, "unix:", 5) == 0)
        return 0;
    for (q = at; q < end; q++)
        if (*q == ':')
            colon = q;
    return colon != NULL ? atoi(colon + 1) : -1;
}

static char *replace_all(const char *text, const char *from, const char *to)
{
    size_t flen = strlen(from), tlen = strlen(to), n = 0;
    const char *p;
    char *out, *o;

    for (p = text; (p = strstr(p, from)) != NULL; p += flen)
        n++;
    out = malloc(strlen(text) + n * tlen + 1);
    if (out == NULL)
        return NULL;
    for (o = out, p = text;;) {
        const char *hit = strstr(p, from);
        if (hit == NULL) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, to, tlen);
        o += tlen;
        p = hit + flen;
    }
    return out;
}

int ahoyd_start(struct proc *p, const char *yaml)
{
    return ahoyd_start_args(p, yaml, NULL);
}

int ahoyd_start_args(struct proc *p, const char *yaml, const char *const *extra_args)
{
    char *argv[40];
    int argc = 0, log_fd, i;
    char *text;
    FILE *f;
    bool admin = yaml_admin_on(yaml);
    double end;

    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "%s/ahoyd-XXXXXX", temp_root[0] ? temp_root : "/tmp");
    if (mkdtemp(p->dir) == NULL) {
        perror("harness: mkdtemp");
        p->dir[0] = '\0';
        return -1;
    }
    snprintf(p->conf_path, sizeof(p->conf_path), "%s/ahoyd.yaml", p->dir);
    snprintf(p->log_path, sizeof(p->log_path), "%s/ahoyd.log", p->dir);
    text = replace_all(yaml, "@DIR@", p->dir);
    f = fopen(p->conf_path, "w");
    if (text == NULL || f == NULL) {
        free(text);
        if (f)
            fclose(f);
        return -1;
    }
    fputs(text, f);
    fclose(f);
    free(text);

    log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
        return -1;
    /* AHOYD_WRAPPER (e.g. "valgrind --error-exitcode=99 ...") runs the daemon under a tool:
     * make check-valgrind. Its words come first; the daemon's exit status is the tool's. */
    char *wrapper = getenv("AHOYD_WRAPPER") ? strdup(getenv("AHOYD_WRAPPER")) : NULL;
    for (char *save = NULL, *w = wrapper ? strtok_r(wrapper, " ", &save) : NULL; w && argc < 16;
         w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc++] = (char *)binary("AHOYD_BIN", TOP_BUILDDIR "/ahoyd");
    argv[argc++] = "-c";
    argv[argc++] = p->conf_path;
    for (i = 0; extra_args != NULL && extra_args[i] != NULL && argc < 38; i++)
        argv[argc++] = (char *)extra_args[i];
    argv[argc] = NULL;
    if (argc > 0 && argv[0][0] != '/') {
        /* execv needs a path: resolve the tool on PATH */
        static char tool[512];
        char *path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
        for (char *save = NULL, *d = path ? strtok_r(path, ":", &save) : NULL; d;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(tool, sizeof tool, "%s/%s", d, argv[0]);
            if (access(tool, X_OK) == 0) {
                argv[0] = tool;
                break;
            }
        }
        free(path);
    }
    p->pid = spawn(argv, log_fd, log_fd);
    free(wrapper);
    close(log_fd);
    if (p->pid < 0) {
        p->pid = 0;
        return -1;
    }
    register_proc(p);

    end = harness_now_ms() + (getenv("AHOYD_WRAPPER") ? 10 * START_TIMEOUT_MS : START_TIMEOUT_MS);
    for (;;) {
        char *log = proc_log(p);
        int port = log_listen_port(log, "proxy");
        int admin_port = admin ? log_listen_port(log, "admin") : 0;
        int status;
        free(log);
        if (port >= 0 && admin_port >= 0) {
            p->port = port;
            p->admin_port = admin_port;
            return 0;
        }
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            forget_pid(p->pid);
            p->pid = 0;
            p->exited = true;
            p->exit_status = status_code(status);
            fprintf(stderr, "harness: ahoyd exited with %d before listening\n", p->exit_status);
            print_tail(p->log_path, "daemon log", 16384);
            return -1;
        }
        if (harness_now_ms() > end) {
            fprintf(stderr, "harness: ahoyd did not report listening within %d ms\n",
                    START_TIMEOUT_MS);
            print_tail(p->log_path, "daemon log", 16384);
            proc_kill(p);
            return -1;
        }
        sleep_ms(10);
    }
}

int proc_wait(struct proc *p, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    int status;

    if (p->pid <= 0)
        return p->exited ? p->exit_status : -1;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid || (r < 0 && errno == ECHILD)) {
            p->exit_status = r == p->pid ? status_code(status) : -1;
            forget_pid(p->pid);
            p->pid = 0;
            p->exited = true;
            return p->exit_status;
        }
        if (harness_now_ms() >= end)
            return -1;
        sleep_ms(5);
    }
}

int proc_stop(struct proc *p)
{
    if (p->pid <= 0)
        return p->exit_status;
    kill(p->pid, SIGTERM);
    if (proc_wait(p, STOP_TIMEOUT_MS) >= 0)
        return p->exit_status;
    fprintf(stderr, "harness: pid %d ignored SIGTERM for %d ms, killing it\n", (int)p->pid,
            STOP_TIMEOUT_MS);
    proc_kill(p);
    return p->exit_status;
}

void proc_kill(struct proc *p)
{
    int status;

    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    if (waitpid(p->pid, &status, 0) == p->pid)
        p->exit_status = status_code(status);
    forget_pid(p->pid);
    p->pid = 0;
    p->exited = true;
}

int proc_signal(struct proc *p, int sig)
{
    return p->pid > 0 ? kill(p->pid, sig) : -1;
}

char *proc_log(const struct proc *p)
{
    return read_file_all(p->log_path, NULL);
}

bool proc_log_wait(const struct proc *p, const char *needle, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;

    for (;;) {
        char *log = proc_log(p);
        bool found = strstr(log, needle) != NULL;
        free(log);
        if (found)
            return true;
        if (harness_now_ms() >= end)
            return false;
        sleep_ms(10);
    }
}

int proc_log_count(const struct proc *p, const char *needle)
{
    char *log = proc_log(p);
    char *line, *save = NULL;
    int n = 0;

    for (line = strtok_r(log, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
        if (strstr(line, needle) != NULL)
            n++;
    free(log);
    return n;
}

/* ---- HTTP ------------------------------------------------------------------------- */

struct transfer {
    struct http_resp *resp;
    size_t body_cap, raw_cap;
    const char *upload; /* chunked upload source */
    size_t upload_len, upload_pos;
};

static int grow_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        char *p;
        while (c < *len + n + 1)
            c *= 2;
        p = realloc(*buf, c);
        if (p == NULL)
            return -1;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * nmemb;

    if (grow_append(&t->resp->body, &t->resp->body_len, &t->body_cap, data, n) != 0)
        return 0;
    return n;
}

static void headers_clear(struct http_resp *r)
{
    size_t i;

    for (i = 0; i < r->n_hdrs; i++) {
        free(r->hdrs[i].name);
        free(r->hdrs[i].value);
    }
    free(r->hdrs);
    r->hdrs = NULL;
    r->n_hdrs = 0;
    if (r->headers_raw)
        r->headers_raw[0] = '\0';
    r->headers_len = 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    struct http_resp *r = t->resp;
    size_t n = size * nmemb, len = n;
    const char *colon;

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        headers_clear(r); /* a new response (after a 1xx): keep only the final one */
    if (grow_append(&r->headers_raw, &r->headers_len, &t->raw_cap, data, n) != 0)
        return 0;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    colon = memchr(data, ':', len);
    if (colon != NULL && !(n >= 5 && memcmp(data, "HTTP/", 5) == 0)) {
        const char *v = colon + 1;
        const char *vend = data + len;
        struct http_header *h = realloc(r->hdrs, (r->n_hdrs + 1) * sizeof(*h));
        if (h == NULL)
            return 0;
        r->hdrs = h;
        while (v < vend && (*v == ' ' || *v == '\t'))
            v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        h[r->n_hdrs].name = strndup(data, (size_t)(colon - data));
        h[r->n_hdrs].value = strndup(v, (size_t)(vend - v));
        r->n_hdrs++;
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * nmemb, left = t->upload_len - t->upload_pos;

    if (n > 100)
        n = 100; /* several chunks */
    if (n > left)
        n = left;
    memcpy(buf, t->upload + t->upload_pos, n);
    t->upload_pos += n;
    return n;
}

static struct curl_slist *setup_easy(CURL *h, const struct http_req *req, struct transfer *t)
{
    struct curl_slist *list = NULL;
    const char *method = req->method != NULL ? req->method : "GET";
    int i;

    curl_easy_setopt(h, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x080800
    /* libcurl 8.8 and later drop an empty query ("/x?" goes out as "/x"): send the
     * target as written */
    size_t ulen = strlen(req->url);
    const char *tail = strstr(req->url, "://");
    tail = tail ? strchr(tail + 3, '/') : NULL;
    if (tail && ulen > 0 && req->url[ulen - 1] == '?')
        curl_easy_setopt(h, CURLOPT_REQUEST_TARGET, tail);
#endif
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 15000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(h, CURLOPT_PRIVATE, t);

    list = curl_slist_append(list, "Expect:");
    for (i = 0; req->headers != NULL && req->headers[i] != NULL; i++)
        list = curl_slist_append(list, req->headers[i]);

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req->chunked) {
        t->upload = req->body != NULL ? req->body : "";
        t->upload_len = req->body != NULL ? req->body_len : 0;
        list = curl_slist_append(list, "Transfer-Encoding: chunked");
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, t);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else if (req->body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body_len ? req->body : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    return list;
}

static void resp_init(struct http_resp *out)
{
    memset(out, 0, sizeof(*out));
    out->body = calloc(1, 1);
    out->headers_raw = calloc(1, 1);
}

static void finish_easy(CURL *h, CURLcode rc, struct http_resp *out)
{
    curl_off_t us = 0;

    out->curl_code = (int)rc;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &out->num_connects);
    curl_easy_getinfo(h, CURLINFO_TOTAL_TIME_T, &us);
    out->elapsed_ms = (double)us / 1000.0;
}

int http_client_do(struct http_client *c, const struct http_req *req, struct http_resp *out)
{
    struct transfer t;
    struct curl_slist *list;
    CURLcode rc;

    resp_init(out);
    memset(&t, 0, sizeof(t));
    t.resp = out;
    t.raw_cap = 1;
    t.body_cap = 1;
    curl_easy_reset(c->easy); /* keeps the live connections */
    list = setup_easy(c->easy, req, &t);
    rc = curl_easy_perform(c->easy);
    finish_easy(c->easy, rc, out);
    curl_slist_free_all(list);
    return out->status > 0 ? 0 : -1;
}

void http_client_init(struct http_client *c)
{
    c->easy = curl_easy_init();
}

void http_client_free(struct http_client *c)
{
    if (c->easy)
        curl_easy_cleanup(c->easy);
    c->easy = NULL;
}

int http_do(const struct http_req *req, struct http_resp *out)
{
    struct http_client c;
    int rc;

    http_client_init(&c);
    rc = http_client_do(&c, req, out);
    http_client_free(&c);
    return rc;
}

const char *http_header(const struct http_resp *r, const char *name)
{
    size_t i;

    for (i = 0; i < r->n_hdrs; i++)
        if (strcasecmp(r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value;
    return NULL;
}

int http_header_count(const struct http_resp *r, const char *name)
{
    size_t i;
    int n = 0;

    for (i = 0; i < r->n_hdrs; i++)
        if (strcasecmp(r->hdrs[i].name, name) == 0)
            n++;
    return n;
}

void http_resp_free(struct http_resp *r)
{
    headers_clear(r);
    free(r->body);
    free(r->headers_raw);
    memset(r, 0, sizeof(*r));
}

int http_get(int port, const char *target, const char *const *headers, struct http_resp *out)
{
    return http_send(port, "GET", target, headers, NULL, 0, out);
}

int http_send(int port, const char *method, const char *target, const char *const *headers,
              const void *body, size_t body_len, struct http_resp *out)
{
    char url[4096];
    struct http_req req;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, target);
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.headers = headers;
    req.body = body;
    req.body_len = body_len;
    return http_do(&req, out);
}

int http_parallel(const struct http_req *req, int n, long *statuses, double *elapsed_ms)
{
    CURLM *multi = curl_multi_init();
    CURL **easy = calloc((size_t)n, sizeof(*easy));
    struct transfer *t = calloc((size_t)n, sizeof(*t));
    struct http_resp *resp = calloc((size_t)n, sizeof(*resp));
    struct curl_slist **lists = calloc((size_t)n, sizeof(*lists));
    double start = harness_now_ms();
    double end = start + (req->timeout_ms > 0 ? req->timeout_ms : 15000L) + 5000;
    int i, running = 0, ok = 0;

    if (multi == NULL || easy == NULL || t == NULL || resp == NULL || lists == NULL) {
        curl_multi_cleanup(multi);
        free(easy);
        free(t);
        free(resp);
        free(lists);
        return -1;
    }
    for (i = 0; i < n; i++) {
        resp_init(&resp[i]);
        t[i].resp = &resp[i];
        t[i].raw_cap = 1;
        t[i].body_cap = 1;
        easy[i] = curl_easy_init();
        lists[i] = setup_easy(easy[i], req, &t[i]);
        curl_multi_add_handle(multi, easy[i]);
    }
    do {
        curl_multi_perform(multi, &running);
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    } while (running > 0 && harness_now_ms() < end);
    *elapsed_ms = harness_now_ms() - start;

    for (i = 0; i < n; i++) {
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &statuses[i]);
        if (statuses[i] > 0)
            ok++;
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(lists[i]);
        http_resp_free(&resp[i]);
    }
    curl_multi_cleanup(multi);
    free(easy);
    free(t);
    free(resp);
    free(lists);
    return ok;
}

struct http_async {
    pthread_t thread;
    struct http_req req;
    char *url, *method;
    void *body;
    char **headers;
    struct http_resp resp;
    int rc;
};

static void *async_main(void *arg)
{
    struct http_async *a = arg;
    a->rc = http_do(&a->req, &a->resp);
    return NULL;
}

struct http_async *http_async_start(const struct http_req *req)
{
    struct http_async *a = calloc(1, sizeof(*a));
    size_t n = 0, i;

    if (a == NULL)
        return NULL;
    a->req = *req;
    a->url = strdup(req->url);
    a->req.url = a->url;
    if (req->method) {
        a->method = strdup(req->method);
        a->req.method = a->method;
    }
    if (req->body) {
        a->body = malloc(req->body_len + 1);
        memcpy(a->body, req->body, req->body_len);
        a->req.body = a->body;
    }
    while (req->headers && req->headers[n])
        n++;
    a->headers = calloc(n + 1, sizeof(char *));
    for (i = 0; i < n; i++)
        a->headers[i] = strdup(req->headers[i]);
    a->req.headers = (const char *const *)a->headers;
    if (pthread_create(&a->thread, NULL, async_main, a) != 0) {
        free(a->url);
        free(a->method);
        free(a->body);
        for (i = 0; i < n; i++)
            free(a->headers[i]);
        free(a->headers);
        free(a);
        return NULL;
    }
    return a;
}

int http_async_finish(struct http_async *a, struct http_resp *out)
{
    size_t i;
    int rc;

    pthread_join(a->thread, NULL);
    *out = a->resp;
    rc = a->rc;
    free(a->url);
    free(a->method);
    free(a->body);
    for (i = 0; a->headers[i] != NULL; i++)
        free(a->headers[i]);
    free(a->headers);
    free(a);
    return rc;
}

/* ---- raw sockets ---------------------------------------------------------------- */

/* Is buf (len bytes) one whole response? head_only: the request was HEAD. */
static bool raw_complete(const char *buf, size_t len, bool head_only)
{
    const char *start = buf;

    for (;;) {
        const char *end = memmem(start, len - (size_t)(start - buf), "\r\n\r\n", 4);
        const char *body;
        char cl_buf[32], te_buf[32];
        size_t body_len;
        int status;

        if (end == NULL)
            return false;
        body = end + 4;
        body_len = len - (size_t)(body - buf);
        status = raw_status(start);
        if (status >= 100 && status < 200) {
            start = body; /* interim response: look at the next one */
            continue;
        }
        if (head_only || status == 204 || status == 304)
            return true;
        {
            /* raw_header works on a NUL-terminated block: copy the head. */
            size_t hlen = (size_t)(body - start);
            char *head = strndup(start, hlen);
            const char *cl =
                head ? raw_header(head, "Content-Length", cl_buf, sizeof(cl_buf)) : NULL;
            const char *te =
                head ? raw_header(head, "Transfer-Encoding", te_buf, sizeof(te_buf)) : NULL;
            bool done = false;
            if (cl != NULL)
                done = body_len >= (size_t)strtoul(cl, NULL, 10);
            else if (te != NULL && strcasecmp(te, "chunked") == 0)
                done = body_len >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0;
            free(head);
            return done;
        }
    }
}

/* Read from fd into out until one whole response is there (raw_complete), the peer
 * closes, or end (harness_now_ms) passes. Returns the bytes read; out NUL-terminated. */
static size_t raw_read_until_complete(int fd, char *out, size_t cap, double end, bool head_only)
{
    size_t got = 0;

    if (cap > 0)
        out[0] = '\0';
    while (got + 1 < cap) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int left = (int)(end - harness_now_ms());
        ssize_t r;
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        r = recv(fd, out + got, cap - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        out[got] = '\0';
        if (raw_complete(out, got, head_only))
            break;
    }
    return got;
}

int raw_connect(int port)
{
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -1;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int raw_exchange(int port, const void *bytes, size_t n, char *out, size_t cap, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;
    bool head_only = n >= 5 && memcmp(bytes, "HEAD ", 5) == 0;
    int fd = raw_connect(port);
    size_t sent = 0, got;

    if (cap > 0)
        out[0] = '\0';
    if (fd < 0)
        return -1;
    while (sent < n) {
        ssize_t w = send(fd, (const char *)bytes + sent, n - sent, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may answer and close before reading everything */
        sent += (size_t)w;
    }
    got = raw_read_until_complete(fd, out, cap, end, head_only);
    close(fd);
    return (int)got;
}

void raw_send_text(int fd, const char *text)
{
    size_t n = strlen(text), sent = 0;

    while (sent < n) {
        ssize_t w = send(fd, text + sent, n - sent, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        sent += (size_t)w;
    }
}

int raw_read_response(int fd, char *out, size_t cap, int timeout_ms)
{
    raw_read_until_complete(fd, out, cap, harness_now_ms() + timeout_ms, false);
    return raw_status(out);
}

int raw_status(const char *resp)
{
    int status = 0;

    if (resp == NULL || strncmp(resp, "HTTP/1.", 7) != 0)
        return 0;
    if (sscanf(resp + 8, " %3d", &status) != 1)
        return 0;
    return status;
}

const char *raw_body(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p != NULL ? p + 4 : "";
}

const char *raw_header(const char *resp, const char *name, char *buf, size_t cap)
{
    const char *line = strstr(resp, "\r\n");
    size_t nlen = strlen(name);

    while (line != NULL) {
        const char *next;
        line += 2;
        if (strncmp(line, "\r\n", 2) == 0 || *line == '\0')
            return NULL;
        next = strstr(line, "\r\n");
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            const char *e = next != NULL ? next : v + strlen(v);
            size_t n;
            while (*v == ' ' || *v == '\t')
                v++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            n = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
            memcpy(buf, v, n);
            buf[n] = '\0';
            return buf;
        }
        line = next;
    }
    return NULL;
}

/* ---- JSON --------------------------------------------------------------------------- */

cJSON *json_body(const struct http_resp *r)
{
    return cJSON_ParseWithLength(r->body, r->body_len);
}

cJSON *json_path(const cJSON *root, const char *path)
{
    char key[256];
    const cJSON *cur = root;

    while (cur != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        path += n;
        if (*path == '.')
            path++;
    }
    return (cJSON *)cur;
}

const char *json_str(const cJSON *root, const char *path)
{
    const cJSON *v = json_path(root, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double json_num(const cJSON *root, const char *path, double dflt)
{
    const cJSON *v = json_path(root, path);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

const char *echo_header(const cJSON *echo, const char *name)
{
    const cJSON *headers = json_path(echo, "headers");
    const cJSON *v;

    if (headers == NULL)
        return NULL;
    v = cJSON_GetObjectItem(headers, name); /* case-insensitive on purpose */
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- stub control ---------------------------------------------------------------------- */

int stub_mode(const struct proc *stub, const char *json)
{
    struct http_resp r;
    int ok;

    http_send(stub->port, "POST", "/_stub/mode", NULL, json, strlen(json), &r);
    ok = r.status == 200 ? 0 : -1;
    http_resp_free(&r);
    return ok;
}

int stub_reset(const struct proc *stub)
{
    struct http_resp r;
    int ok;

    http_send(stub->port, "POST", "/_stub/reset", NULL, "", 0, &r);
    ok = r.status == 200 ? 0 : -1;
    http_resp_free(&r);
    return ok;
}

long stub_count(const struct proc *stub)
{
    struct http_resp r;
    cJSON *j;
    long n = -1;

    http_get(stub->port, "/_stub/count", NULL, &r);
    j = r.status == 200 ? json_body(&r) : NULL;
    if (j != NULL)
        n = (long)json_num(j, "count", -1);
    cJSON_Delete(j);
    http_resp_free(&r);
    return n;
}

cJSON *stub_requests(const struct proc *stub)
{
    struct http_resp r;
    cJSON *j = NULL;

    http_get(stub->port, "/_stub/requests", NULL, &r);
    if (r.status == 200)
        j = json_body(&r);
    http_resp_free(&r);
    if (j != NULL && !cJSON_IsArray(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    return j;
}

bool stub_wait_count(const struct proc *stub, long n, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;

    for (;;) {
        if (stub_count(stub) >= n)
            return true;
        if (harness_now_ms() >= end)
            return false;
        sleep_ms(10);
    }
}

/* ---- common set-ups ------------------------------------------------------------------------ */

/* Append text's lines to out, each indented by indent spaces. */
static void append_indented(char **out, size_t *len, size_t *cap, const char *text, int indent)
{
    const char *line = text;

    while (line != NULL && *line != '\0') {
        const char *nl = strchr(line, '\n');
        size_t n = nl != NULL ? (size_t)(nl - line) : strlen(line);
        int i;
        if (n > 0) {
            for (i = 0; i < indent; i++)
                grow_append(out, len, cap, " ", 1);
            grow_append(out, len, cap, line, n);
            grow_append(out, len, cap, "\n", 1);
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
}

char *one_service_yaml(int stub_port, const char *ahoyd_extra, const char *service_extra)
{
    char *out = NULL, head[512];
    size_t len = 0, cap = 0;

    grow_append(&out, &len, &cap, "ahoyd:\n", 7);
    append_indented(&out, &len, &cap, "listen: 127.0.0.1:0\nadmin-listen: off\naccess-log: stderr",
                    2);
    append_indented(&out, &len, &cap, ahoyd_extra, 2);
    snprintf(head, sizeof(head),
             "pyfly:\n  client:\n    services:\n      svc:\n"
             "        base-url: http://127.0.0.1:%d/base\n",
             stub_port);
    grow_append(&out, &len, &cap, head, strlen(head));
    append_indented(&out, &len, &cap, service_extra, 8);
    return out;
}

void start_one_service(struct proc *stub, struct proc *daemon, const char *ahoyd_extra,
                       const char *service_extra)
{
    char *yaml;
    int rc;

    ck_assert_int_eq(stub_start(stub, "a", NULL), 0);
    yaml = one_service_yaml(stub->port, ahoyd_extra, service_extra);
    rc = ahoyd_start(daemon, yaml);
    ck_assert_msg(rc == 0, "ahoyd did not start with:\n%s", yaml);
    free(yaml);
}

int closed_port(void)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = 0;

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &alen) == 0)
        port = ntohs(addr.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int blackhole_port(int fds[3])
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    int i, port;

    /* Backlog 0: the accept queue holds one connection; once it is full the
     * kernel drops further SYNs, so a third connect can only time out. */
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fds[0] < 0 || bind(fds[0], (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(fds[0], 0) != 0 || getsockname(fds[0], (struct sockaddr *)&addr, &alen) != 0)
        return -1;
    port = ntohs(addr.sin_port);
    for (i = 1; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fds[i] >= 0)
            connect(fds[i], (struct sockaddr *)&addr, sizeof(addr));
    }
    sleep_ms(100); /* let the handshakes settle into the queue */
    return port;
}

/* ---- assertions ------------------------------------------------------------------------ */

static void check_error_json(const char *file, int line, const char *body, int status,
                             const char *code, const char *ctype, const char *request_id,
                             bool check_service, const char *service, int attempts)
{
    cJSON *j = cJSON_Parse(body);
    const char *got_code, *msg, *rid;
    const cJSON *svc;

    ck_assert_msg(j != NULL, "%s:%d: error body is not JSON: %.300s", file, line, body);
    got_code = json_str(j, "error.code");
    ck_assert_msg(got_code != NULL && strcmp(got_code, code) == 0,
                  "%s:%d: error.code is %s, want %s (body %.300s)", file, line,
                  got_code ? got_code : "(none)", code, body);
    ck_assert_msg((int)json_num(j, "error.status", -1) == status,
                  "%s:%d: error.status is %g, want %d", file, line, json_num(j, "error.status", -1),
                  status);
    msg = json_str(j, "error.message");
    ck_assert_msg(msg != NULL && *msg != '\0', "%s:%d: error.message missing or empty", file, line);
    ck_assert_msg(ctype != NULL && strncasecmp(ctype, "application/json", 16) == 0,
                  "%s:%d: Content-Type is %s, want application/json", file, line,
                  ctype ? ctype : "(none)");
    rid = json_str(j, "error.request_id");
    ck_assert_msg(rid != NULL && *rid != '\0', "%s:%d: error.request_id missing", file, line);
    if (request_id != NULL || rid != NULL)
        ck_assert_msg(request_id != NULL && strcmp(rid, request_id) == 0,
                      "%s:%d: error.request_id %s != X-Request-Id header %s", file, line, rid,
                      request_id ? request_id : "(none)");
    svc = json_path(j, "error.service");
    ck_assert_msg(svc != NULL, "%s:%d: error.service missing", file, line);
    if (check_service && !(service != NULL && strcmp(service, SERVICE_ANY) == 0)) {
        if (service == NULL)
            ck_assert_msg(cJSON_IsNull(svc), "%s:%d: error.service is not null", file, line);
        else
            ck_assert_msg(cJSON_IsString(svc) && strcmp(svc->valuestring, service) == 0,
                          "%s:%d: error.service is %s, want %s", file, line,
                          cJSON_IsString(svc) ? svc->valuestring : "(not a string)", service);
    }
    ck_assert_msg(cJSON_IsNumber(json_path(j, "error.attempts")), "%s:%d: error.attempts missing",
                  file, line);
    if (attempts >= 0)
        ck_assert_msg((int)json_num(j, "error.attempts", -1) == attempts,
                      "%s:%d: error.attempts is %g, want %d", file, line,
                      json_num(j, "error.attempts", -1), attempts);
    cJSON_Delete(j);
}

void assert_ahoyd_error_at(const char *file, int line, const struct http_resp *r, int status,
                           const char *code, const char *service, int attempts)
{
    ck_assert_msg(r->status == status, "%s:%d: status %ld, want %d (curl %d, body %.300s)", file,
                  line, r->status, status, r->curl_code, r->body ? r->body : "");
    check_error_json(file, line, r->body, status, code, http_header(r, "Content-Type"),
                     http_header(r, "X-Request-Id"), true, service, attempts);
}

void assert_raw_error_at(const char *file, int line, const char *text, int status, const char *code)
{
    char ctype[128], rid[256];
    const char *ct, *id;

    ck_assert_msg(raw_status(text) == status, "%s:%d: raw status %d, want %d (got %.300s)", file,
                  line, raw_status(text), status, text);
    ct = raw_header(text, "Content-Type", ctype, sizeof(ctype));
    id = raw_header(text, "X-Request-Id", rid, sizeof(rid));
    check_error_json(file, line, raw_body(text), status, code, ct, id, false, NULL, -1);
}

/* ---- other daemons ------------------------------------------------------------------ */

int proc_spawn(struct proc *p, char *const argv[], const char *log_path)
{
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    if (fd < 0)
        return -1;
    snprintf(p->log_path, sizeof(p->log_path), "%s", log_path);
    p->dir[0] = '\0'; /* killed, not stopped, at teardown */
    p->exited = false;
    p->pid = spawn(argv, fd, fd);
    close(fd);
    if (p->pid < 0) {
        p->pid = 0;
        return -1;
    }
    register_proc(p);
    return 0;
}

int harness_temp_dir(char *out, size_t size)
{
    if (temp_root[0] == '\0' || (size_t)snprintf(out, size, "%s/d-XXXXXX", temp_root) >= size ||
        mkdtemp(out) == NULL || chmod(out, 0755) != 0 || chmod(temp_root, 0755) != 0)
        return -1;
    return 0;
}

int free_dns_port(void)
{
    int attempt;

    for (attempt = 0; attempt < 50; attempt++) {
        struct sockaddr_in addr;
        socklen_t alen = sizeof(addr);
        int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int port = 0;

        memset(&addr, 0, sizeof(addr));
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (tcp >= 0 && udp >= 0 && bind(tcp, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
            getsockname(tcp, (struct sockaddr *)&addr, &alen) == 0 &&
            bind(udp, (struct sockaddr *)&addr, sizeof(addr)) == 0)
            port = ntohs(addr.sin_port);
        if (tcp >= 0)
            close(tcp);
        if (udp >= 0)
            close(udp);
        if (port > 0)
            return port;
    }
    return 0;
}

bool port_wait_open(int port, int timeout_ms)
{
    double end = harness_now_ms() + timeout_ms;

    while (harness_now_ms() < end) {
        int fd = raw_connect(port);
        if (fd >= 0) {
            close(fd);
            return true;
        }
        sleep_ms(20);
    }
    return false;
}

void harness_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

long svc_call(const struct proc *d, char *who, size_t cap)
{
    struct http_resp r;
    http_get(d->port, "/svc/x", NULL, &r);
    long st = r.status;
    who[0] = '\0';
    cJSON *j = json_body(&r);
    const char *u = j ? json_str(j, "upstream") : NULL;
    if (u)
        snprintf(who, cap, "%s", u);
    cJSON_Delete(j);
    http_resp_free(&r);
    return st;
}

const char *promtool_path(void)
{
    static char found[512];
    const char *env = getenv("PROMTOOL");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    if (access("/usr/bin/promtool", X_OK) == 0)
        return "/usr/bin/promtool";
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t n = strcspn(path, ":");
        snprintf(found, sizeof(found), "%.*s/promtool", (int)n, path);
        if (n && access(found, X_OK) == 0)
            return found;
        path += n + (path[n] == ':');
    }
    return NULL;
}

const char *promtool_need(const char *what)
{
    const char *tool = promtool_path();
    if (!tool) {
        const char *ci = getenv("CI");
        ck_assert_msg(!(ci && strcmp(ci, "true") == 0),
                      "promtool is not installed (Debian package prometheus); CI must have it");
        printf("%s: skipped, promtool not found (apt-get install prometheus, or set PROMTOOL)\n",
               what);
    }
    return tool;
}

void promtool_check(const char *tool, const char *text)
{
    char dir[] = "/tmp/ahoyd-promtool-XXXXXX", in[64], out[64], cmd[800];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(in, sizeof(in), "%s/metrics", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    harness_write_file(in, text);
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' > '%s' 2>&1", tool, in, out);
    int rc = system(cmd);
    char said[4096] = "";
    FILE *f = fopen(out, "r");
    if (f) {
        size_t n = fread(said, 1, sizeof(said) - 1, f);
        said[n] = '\0';
        fclose(f);
    }
    unlink(in);
    unlink(out);
    rmdir(dir);
    ck_assert_msg(rc == 0 && said[0] == '\0', "promtool check metrics: status %d, said:\n%s", rc,
                  said);
}
