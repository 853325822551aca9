/*
 * check_named.c - integration suite for declared methods (SPEC 3.1, last
 * bullet), named calls (3.2) and the configuration layering that decides
 * where requests go (2.3), plus what --check-config and --dump-config say
 * about overlay files.
 *
 * The real ahoyd binary runs in front of the stub upstream; what reached the
 * upstream is read back from the stub's records (GET /_stub/requests: method,
 * raw target, headers, body), so every assertion is on the exact request line
 * and bytes. Layering tests write their own main file, drop-ins and profile
 * files into a per-test directory and start the daemon with `-c` pointing at
 * it (ahoyd_start_args puts extra arguments after its own `-c`, and the last
 * `-c` wins). --check-config and --dump-config runs are plain fork/exec with
 * stdout and stderr captured in files.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"

#ifndef TOP_BUILDDIR
#define TOP_BUILDDIR "."
#endif

#define RUN_TIMEOUT_MS 20000 /* one --check-config / --dump-config run (sanitizers) */

static struct proc stub, stub2, daemon_proc;

/* One directory per program run (made in main, removed at its end, so that a
 * failed test in fork mode leaves nothing behind), one subdirectory per test. */
static char work_root[256];
static char work_dir[300];

/* ---- files --------------------------------------------------------------------------- */

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

/* A fresh directory for this test's files; work_dir holds its path. */
static void new_work_dir(void)
{
    snprintf(work_dir, sizeof(work_dir), "%s/t-XXXXXX", work_root);
    ck_assert_msg(mkdtemp(work_dir) != NULL, "mkdtemp %s: %s", work_dir, strerror(errno));
}

/* Path of a file in the work dir (static buffer, rotating: up to 4 at once). */
static const char *wpath(const char *rel)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];

    snprintf(b, sizeof(bufs[0]), "%s/%s", work_dir, rel);
    return b;
}

/* Write a printf-formatted file into the work dir (subdirectories are made). */
static void write_file(const char *rel, const char *fmt, ...)
{
    char path[512], *slash;
    va_list ap;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", work_dir, rel);
    for (slash = strchr(path + strlen(work_dir) + 1, '/'); slash != NULL;
         slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(path, 0755);
        *slash = '/';
    }
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL)
        return strdup("");
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* ---- running ahoyd directly ---------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *ahoyd_bin(void)
{
    const char *v = getenv("AHOYD_BIN");
    return v != NULL && *v != '\0' ? v : TOP_BUILDDIR "/ahoyd";
}

struct run_result {
    int status; /* exit code, 128 + signal, -1 when it had to be killed */
    char *out;  /* stdout */
    char *err;  /* stderr */
};

/*
 * Run ahoyd with args (NULL-terminated, without argv[0]) and extra environment
 * entries ("NAME=VALUE", NULL-terminated, may be NULL); wait (bounded) and
 * capture stdout and stderr.
 */
static void run_ahoyd(const char *const *args, const char *const *env, struct run_result *res)
{
    char out_path[400], err_path[400];
    char *argv[32];
    int argc = 0, status, out_fd, err_fd;
    double end;
    pid_t pid;

    snprintf(out_path, sizeof(out_path), "%s/run.out", work_dir);
    snprintf(err_path, sizeof(err_path), "%s/run.err", work_dir);
    out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(out_fd >= 0 && err_fd >= 0, "cannot create the output files");
    argv[argc++] = (char *)ahoyd_bin();
    for (int i = 0; args[i] != NULL && argc < 31; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;

    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* ahoyd reads AHOYD_* as overrides and warns about unknown ones */
        unsetenv("AHOYD_BIN");
        for (int i = 0; env != NULL && env[i] != NULL; i++)
            putenv(strdup(env[i]));
        if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out_fd);
    close(err_fd);
    res->status = -1;
    end = harness_now_ms() + RUN_TIMEOUT_MS;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            res->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (harness_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        sleep_ms(5);
    }
    res->out = read_all(out_path);
    res->err = read_all(err_path);
}

static void run_result_free(struct run_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}

/* Does text hold a whole line equal to line? */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
        p++;
    }
    return false;
}

/* Start ahoyd on a main file written into the work dir (its text must turn the
 * admin API off, as the harness reads that from the text it is given). */
static int start_on_file(struct proc *d, const char *main_rel, const char *const *more_args)
{
    const char *args[16];
    int n = 0, rc;
    char *text = read_all(wpath(main_rel));

    args[n++] = "-c";
    args[n++] = wpath(main_rel);
    for (int i = 0; more_args != NULL && more_args[i] != NULL && n < 15; i++)
        args[n++] = more_args[i];
    args[n] = NULL;
    rc = ahoyd_start_args(d, text, args);
    free(text);
    return rc;
}

/* ---- requests and records ------------------------------------------------------------------ */

/* The single request the stub recorded since its last reset (asserted to be
 * one), as a cJSON object; *all must be cJSON_Delete'd. */
static const cJSON *only_record(const struct proc *s, cJSON **all)
{
    *all = stub_requests(s);
    ck_assert_ptr_nonnull(*all);
    ck_assert_msg(cJSON_GetArraySize(*all) == 1, "the stub recorded %d requests, want 1",
                  cJSON_GetArraySize(*all));
    return cJSON_GetArrayItem(*all, 0);
}

/* A request through ahoyd that must reach the stub as want_method want_target. */
static void expect_forward(int port, const char *method, const char *target,
                           const char *want_method, const char *want_target)
{
    struct http_resp r;
    const cJSON *rec;
    cJSON *all;

    ck_assert_int_eq(stub_reset(&stub), 0);
    http_send(port, method, target, NULL, NULL, 0, &r);
    ck_assert_msg(r.status == 200, "%s %s: status %ld, want 200 (body %.300s)", method, target,
                  r.status, r.body);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "1");
    http_resp_free(&r);
    rec = only_record(&stub, &all);
    ck_assert_msg(strcmp(json_str(rec, "method"), want_method) == 0 &&
                      strcmp(json_str(rec, "target"), want_target) == 0,
                  "%s %s reached the upstream as %s %s, want %s %s", method, target,
                  json_str(rec, "method"), json_str(rec, "target"), want_method, want_target);
    cJSON_Delete(all);
}

/* A request that ahoyd must refuse with an error and never forward. */
static void expect_refused(int port, const char *method, const char *target, int status,
                           const char *code, const char *allow)
{
    struct http_resp r;

    ck_assert_int_eq(stub_reset(&stub), 0);
    http_send(port, method, target, NULL, NULL, 0, &r);
    ck_assert_msg(r.status == status, "%s %s: status %ld, want %d (body %.300s)", method, target,
                  r.status, status, r.body);
    if (strcmp(method, "HEAD") != 0)
        assert_ahoyd_error(&r, status, code, "svc", 0);
    if (allow != NULL) {
        const char *got = http_header(&r, "Allow");
        ck_assert_msg(got != NULL && strcmp(got, allow) == 0, "%s %s: Allow is '%s', want '%s'",
                      method, target, got ? got : "(none)", allow);
        ck_assert_int_eq(http_header_count(&r, "Allow"), 1);
    } else {
        ck_assert_ptr_null(http_header(&r, "Allow"));
    }
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 0);
}

/* POST /_call/<svc>/<op> with a JSON text (NULL = no body at all). */
static void named_call(int port, const char *svc, const char *op, const char *json,
                       const char *const *headers, struct http_resp *r)
{
    char target[256];
    static const char *const json_headers[] = {"Content-Type: application/json", NULL};

    snprintf(target, sizeof(target), "/_call/%s/%s", svc, op);
    http_send(port, "POST", target, headers != NULL ? headers : json_headers, json,
              json != NULL ? strlen(json) : 0, r);
}

/*
 * A named call of svc that must reach the stub as exactly want_method
 * want_target with want_body (NULL = no body: zero bytes and no JSON
 * Content-Type added). Returns nothing; asserts one upstream request.
 */
static void expect_call(const char *op, const char *json, const char *want_method,
                        const char *want_target, const char *want_body)
{
    struct http_resp r;
    const cJSON *rec;
    cJSON *all;
    char cl[32];

    ck_assert_int_eq(stub_reset(&stub), 0);
    named_call(daemon_proc.port, "svc", op, json, NULL, &r);
    ck_assert_msg(r.status == 200, "call %s %s: status %ld, want 200 (body %.300s)", op, json,
                  r.status, r.body);
    http_resp_free(&r);
    rec = only_record(&stub, &all);
    ck_assert_msg(strcmp(json_str(rec, "method"), want_method) == 0 &&
                      strcmp(json_str(rec, "target"), want_target) == 0,
                  "call %s %s was sent as %s %s, want %s %s", op, json, json_str(rec, "method"),
                  json_str(rec, "target"), want_method, want_target);
    if (want_body == NULL) {
        ck_assert_msg(json_num(rec, "body_len", -1) == 0, "call %s %s: body '%s', want none", op,
                      json, json_str(rec, "body"));
    } else {
        ck_assert_msg(strcmp(json_str(rec, "body"), want_body) == 0 &&
                          json_num(rec, "body_len", -1) == (double)strlen(want_body),
                      "call %s %s: body '%s', want '%s'", op, json, json_str(rec, "body"),
                      want_body);
        ck_assert_str_eq(echo_header(rec, "Content-Type"), "application/json");
        snprintf(cl, sizeof(cl), "%zu", strlen(want_body));
        ck_assert_str_eq(echo_header(rec, "Content-Length"), cl);
    }
    cJSON_Delete(all);
}

/* A named call of svc that must fail with status/code and reach nobody. */
static void expect_call_error(const char *svc, const char *op, const char *json, int status,
                              const char *code)
{
    struct http_resp r;

    ck_assert_int_eq(stub_reset(&stub), 0);
    named_call(daemon_proc.port, svc, op, json, NULL, &r);
    ck_assert_msg(r.status == status, "call %s/%s %s: status %ld, want %d %s (body %.300s)", svc,
                  op, json ? json : "(no body)", r.status, status, code, r.body);
    assert_ahoyd_error(&r, status, code, strcmp(code, "unknown_service") == 0 ? NULL : svc, 0);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 0);
}

/* ---- declared methods (SPEC 3.1) ------------------------------------------------------------- */

static const char declared_yaml[] = "ahoyd:\n"
                                    "  listen: 127.0.0.1:0\n"
                                    "  admin-listen: off\n"
                                    "pyfly:\n"
                                    "  client:\n"
                                    "    services:\n"
                                    "      svc:\n"
                                    "        base-url: http://127.0.0.1:%d/base\n"
                                    "        retry: false\n"
                                    "        methods:\n"
                                    "          get_item: GET /items/{id}\n"
                                    "          list_items: GET /items\n"
                                    "          create_item: POST /items\n"
                                    "          put_item: PUT /items/{id}\n"
                                    "          delete_item: DELETE /items/{id}\n"
                                    "          sub: GET /items/{id}/parts/{part}\n"
                                    "          dir: GET /dir/\n"
                                    "          root: GET /\n"
                                    "      open:\n"
                                    "        base-url: http://127.0.0.1:%d/free\n"
                                    "        retry: false\n";

static void start_declared(void)
{
    char yaml[2048];

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    snprintf(yaml, sizeof(yaml), declared_yaml, stub.port, stub.port);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
}

START_TEST(declared_forwards_matching_requests)
{
    int port;

    start_declared();
    port = daemon_proc.port;
    expect_forward(port, "GET", "/svc/items/42", "GET", "/base/items/42");
    expect_forward(port, "GET", "/svc/items", "GET", "/base/items");
    expect_forward(port, "POST", "/svc/items", "POST", "/base/items");
    expect_forward(port, "PUT", "/svc/items/7", "PUT", "/base/items/7");
    expect_forward(port, "DELETE", "/svc/items/7", "DELETE", "/base/items/7");
    expect_forward(port, "GET", "/svc/items/7/parts/x", "GET", "/base/items/7/parts/x");
    /* the query is not part of the match and goes through byte for byte */
    expect_forward(port, "GET", "/svc/items/42?x=1&&y=%20", "GET", "/base/items/42?x=1&&y=%20");
    expect_forward(port, "GET", "/svc/items?", "GET", "/base/items?");
    /* a trailing-slash template matches only with the slash */
    expect_forward(port, "GET", "/svc/dir/", "GET", "/base/dir/");
    /* the template "/" takes the bare service and its slash */
    expect_forward(port, "GET", "/svc", "GET", "/base");
    expect_forward(port, "GET", "/svc/", "GET", "/base/");
}
END_TEST

START_TEST(declared_placeholder_takes_one_raw_segment)
{
    int port;

    start_declared();
    port = daemon_proc.port;
    /* an encoded slash is one segment, forwarded untouched (never decoded) */
    expect_forward(port, "GET", "/svc/items/a%2Fb", "GET", "/base/items/a%2Fb");
    expect_forward(port, "GET", "/svc/items/%41%20b", "GET", "/base/items/%41%20b");
    expect_forward(port, "PUT", "/svc/items/a%2Fb%2Fc", "PUT", "/base/items/a%2Fb%2Fc");
    expect_forward(port, "GET", "/svc/items/a%2Fb/parts/c%2Fd", "GET",
                   "/base/items/a%2Fb/parts/c%2Fd");
    /* a raw slash makes two segments: no template has that shape */
    expect_refused(port, "GET", "/svc/items/a/b", 404, "no_route", NULL);
    /* an empty segment is not a value */
    expect_refused(port, "GET", "/svc/items//parts/x", 404, "no_route", NULL);
    /* trailing slash is significant both ways */
    expect_refused(port, "GET", "/svc/items/", 404, "no_route", NULL);
    expect_refused(port, "GET", "/svc/items/42/", 404, "no_route", NULL);
    expect_refused(port, "GET", "/svc/dir", 404, "no_route", NULL);
    /* literals are compared byte for byte, case included, never decoded */
    expect_refused(port, "GET", "/svc/ITEMS/42", 404, "no_route", NULL);
    expect_refused(port, "GET", "/svc/%69tems/42", 404, "no_route", NULL);
    expect_refused(port, "GET", "/svc/other", 404, "no_route", NULL);
    expect_refused(port, "GET", "/svc/items/42/parts", 404, "no_route", NULL);
}
END_TEST

START_TEST(declared_405_with_allow)
{
    int port;

    start_declared();
    port = daemon_proc.port;
    expect_refused(port, "PATCH", "/svc/items/42", 405, "method_not_allowed",
                   "DELETE, GET, HEAD, PUT");
    expect_refused(port, "POST", "/svc/items/a%2Fb", 405, "method_not_allowed",
                   "DELETE, GET, HEAD, PUT");
    expect_refused(port, "DELETE", "/svc/items", 405, "method_not_allowed", "GET, HEAD, POST");
    expect_refused(port, "PUT", "/svc/items?x=1", 405, "method_not_allowed", "GET, HEAD, POST");
    expect_refused(port, "POST", "/svc/dir/", 405, "method_not_allowed", "GET, HEAD");
    expect_refused(port, "OPTIONS", "/svc/items/7/parts/x", 405, "method_not_allowed", "GET, HEAD");
    expect_refused(port, "POST", "/svc", 405, "method_not_allowed", "GET, HEAD");
    /* verbs are case-sensitive: a lower-case get is another verb */
    expect_refused(port, "get", "/svc/items", 405, "method_not_allowed", "GET, HEAD, POST");
    /* a path no template matches is 404 whatever the verb */
    expect_refused(port, "PATCH", "/svc/nothing/here", 404, "no_route", NULL);
}
END_TEST

START_TEST(declared_head_admitted_by_get)
{
    struct http_resp r;
    const cJSON *rec;
    cJSON *all;

    start_declared();
    ck_assert_int_eq(stub_reset(&stub), 0);
    http_send(daemon_proc.port, "HEAD", "/svc/items/42", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "1");
    http_resp_free(&r);
    rec = only_record(&stub, &all);
    ck_assert_str_eq(json_str(rec, "method"), "HEAD");
    ck_assert_str_eq(json_str(rec, "target"), "/base/items/42");
    cJSON_Delete(all);

    ck_assert_int_eq(stub_reset(&stub), 0);
    http_send(daemon_proc.port, "HEAD", "/svc/dir/", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 1);

    /* HEAD on a path no template matches */
    expect_refused(daemon_proc.port, "HEAD", "/svc/nothing", 404, "no_route", NULL);
}
END_TEST

START_TEST(declared_head_not_admitted_without_get)
{
    char yaml[1024];
    struct http_resp r;

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    snprintf(yaml, sizeof(yaml),
             "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
             "pyfly:\n  client:\n    services:\n      svc:\n"
             "        base-url: http://127.0.0.1:%d/base\n"
             "        methods:\n"
             "          create: POST /things\n"
             "          replace: PUT /things\n",
             stub.port);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
    http_send(daemon_proc.port, "HEAD", "/svc/things", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(http_header(&r, "Allow"), "POST, PUT");
    http_resp_free(&r);
    expect_refused(daemon_proc.port, "GET", "/svc/things", 405, "method_not_allowed", "POST, PUT");
    ck_assert_int_eq(stub_count(&stub), 0);
}
END_TEST

START_TEST(service_without_methods_forwards_everything)
{
    int port;

    start_declared();
    port = daemon_proc.port;
    expect_forward(port, "GET", "/open/anything/at/all?q", "GET", "/free/anything/at/all?q");
    expect_forward(port, "PATCH", "/open/items/42", "PATCH", "/free/items/42");
    expect_forward(port, "PURGE", "/open/x/", "PURGE", "/free/x/");
    expect_forward(port, "DELETE", "/open", "DELETE", "/free");
    expect_forward(port, "GET", "/open/a/b%2Fc//d", "GET", "/free/a/b%2Fc//d");
}
END_TEST

/* ---- named calls (SPEC 3.2) ------------------------------------------------------------------ */

static const char named_yaml[] = "ahoyd:\n"
                                 "  listen: 127.0.0.1:0\n"
                                 "  admin-listen: off\n"
                                 "pyfly:\n"
                                 "  client:\n"
                                 "    services:\n"
                                 "      svc:\n"
                                 "        base-url: http://127.0.0.1:%d/base\n"
                                 "        retry: {max-attempts: 3, base-delay: 10ms}\n"
                                 "        methods:\n"
                                 "          get_item: GET /items/{id}\n"
                                 "          search: GET /items\n"
                                 "          pair: GET /a/{x}/b/{y}\n"
                                 "          create: POST /items\n"
                                 "          update: PUT /items/{id}\n"
                                 "          patch_item: PATCH /items/{id}\n"
                                 "          remove: DELETE /items/{id}\n"
                                 "          options: OPTIONS /items\n"
                                 "          head_item: HEAD /items/{id}\n"
                                 "          dir: GET /dir/{d}/\n"
                                 "          root: GET /\n"
                                 "          Case: GET /case/{Name}\n"
                                 "      plain:\n"
                                 "        base-url: http://127.0.0.1:%d/plain\n";

static void start_named(void)
{
    char yaml[2048];

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    snprintf(yaml, sizeof(yaml), named_yaml, stub.port, stub.port);
    ck_assert_int_eq(ahoyd_start(&daemon_proc, yaml), 0);
}

START_TEST(named_placeholders_encoded_as_one_segment)
{
    start_named();
    expect_call("get_item", "{\"id\":\"a/b c\"}", "GET", "/base/items/a%2Fb%20c", NULL);
    expect_call("get_item", "{\"id\":\"A-z_0.9~\"}", "GET", "/base/items/A-z_0.9~", NULL);
    expect_call("get_item", "{\"id\":\"%41?#&=+!*'();:@$,[]\\\\\"}", "GET",
                "/base/items/%2541%3F%23%26%3D%2B%21%2A%27%28%29%3B%3A%40%24%2C%5B%5D%5C", NULL);
    /* unicode: raw UTF-8 and \u escapes (a surrogate pair too) become UTF-8 %XX */
    expect_call("get_item", "{\"id\":\"\xc3\xa9\xe2\x9c\x93\"}", "GET",
                "/base/items/%C3%A9%E2%9C%93", NULL);
    expect_call("get_item", "{\"id\":\"\\u00e9\\ud83d\\ude00\"}", "GET",
                "/base/items/%C3%A9%F0%9F%98%80", NULL);
    /* numbers and booleans in JSON form */
    expect_call("get_item", "{\"id\":42}", "GET", "/base/items/42", NULL);
    expect_call("get_item", "{\"id\":-1.25}", "GET", "/base/items/-1.25", NULL);
    expect_call("get_item", "{\"id\":1e2}", "GET", "/base/items/100", NULL);
    expect_call("get_item", "{\"id\":true}", "GET", "/base/items/true", NULL);
    expect_call("get_item", "{\"id\":false}", "GET", "/base/items/false", NULL);
    expect_call("get_item", "{\"id\":9007199254740991}", "GET", "/base/items/9007199254740991",
                NULL);
    /* dots that are not a whole dot segment are fine */
    expect_call("get_item", "{\"id\":\".x\"}", "GET", "/base/items/.x", NULL);
    /* several placeholders, given in another order */
    expect_call("pair", "{\"y\":\"2/3\",\"x\":\"1\"}", "GET", "/base/a/1/b/2%2F3", NULL);
    /* names are case-sensitive */
    expect_call("Case", "{\"Name\":\"n\"}", "GET", "/base/case/n", NULL);
    /* the template's own shape: trailing slash, and "/" under the base path */
    expect_call("dir", "{\"d\":\"x y\"}", "GET", "/base/dir/x%20y/", NULL);
    expect_call("root", "{}", "GET", "/base/", NULL);
    expect_call("head_item", "{\"id\":\"h\",\"v\":1}", "HEAD", "/base/items/h?v=1", NULL);
}
END_TEST

START_TEST(named_query_from_leftover_arguments)
{
    start_named();
    /* GET: leftovers in argument order */
    expect_call("search", "{\"b\":\"2\",\"a\":\"1\",\"c\":\"x y\"}", "GET",
                "/base/items?b=2&a=1&c=x%20y", NULL);
    expect_call("search", "{\"k&=\":\"v&=\xc3\xa9+\"}", "GET",
                "/base/items?k%26%3D=v%26%3D%C3%A9%2B", NULL);
    /* arrays repeat the key, null is omitted (as a value and inside an array) */
    expect_call("search", "{\"tag\":[\"a\",\"b\"],\"n\":[1,true,null,\"z\"]}", "GET",
                "/base/items?tag=a&tag=b&n=1&n=true&n=z", NULL);
    expect_call("search", "{\"a\":null,\"b\":\"1\",\"c\":null}", "GET", "/base/items?b=1", NULL);
    expect_call("search", "{\"a\":null}", "GET", "/base/items", NULL);
    expect_call("search", "{\"arr\":[]}", "GET", "/base/items", NULL);
    expect_call("search", "{\"empty\":\"\"}", "GET", "/base/items?empty=", NULL);
    /* numbers and booleans in JSON form */
    expect_call("search",
                "{\"i\":10,\"f\":0.5,\"neg\":-2,\"t\":true,\"f2\":false,\"e\":1e3,"
                "\"max\":9007199254740991,\"min\":-9007199254740991,\"tenth\":0.1}",
                "GET",
                "/base/items?i=10&f=0.5&neg=-2&t=true&f2=false&e=1000&max=9007199254740991"
                "&min=-9007199254740991&tenth=0.1",
                NULL);
    /* placeholders are taken out, whatever their position */
    expect_call("get_item", "{\"q\":\"1\",\"id\":\"x\",\"r\":\"2\"}", "GET",
                "/base/items/x?q=1&r=2", NULL);
    /* GET, DELETE, OPTIONS: an argument named body is a query argument like any other */
    expect_call("search", "{\"body\":\"b\"}", "GET", "/base/items?body=b", NULL);
    expect_call("remove", "{\"id\":\"7\",\"body\":\"x\",\"z\":1}", "DELETE",
                "/base/items/7?body=x&z=1", NULL);
    expect_call("options", "{\"a\":\"1\"}", "OPTIONS", "/base/items?a=1", NULL);
    /* an empty body counts as {} */
    expect_call("search", NULL, "GET", "/base/items", NULL);
    expect_call("search", "", "GET", "/base/items", NULL);
    expect_call("search", " { } \n", "GET", "/base/items", NULL);
}
END_TEST

START_TEST(named_json_bodies)
{
    start_named();
    expect_call("create", "{\"body\":{\"amount\":5,\"tags\":[\"x\"],\"n\":null}}", "POST",
                "/base/items", "{\"amount\":5,\"tags\":[\"x\"],\"n\":null}");
    /* the other arguments go to the query, in order */
    expect_call("create", "{\"dry\":true,\"body\":\"hi\",\"v\":2}", "POST",
                "/base/items?dry=true&v=2", "\"hi\"");
    expect_call("create", "{\"body\":[1,2.5,true,\"\xc3\xa9\"]}", "POST", "/base/items",
                "[1,2.5,true,\"\xc3\xa9\"]");
    expect_call("create", "{\"body\":0}", "POST", "/base/items", "0");
    expect_call("update", "{\"id\":\"7\",\"body\":{\"a\":[]}}", "PUT", "/base/items/7",
                "{\"a\":[]}");
    expect_call("patch_item", "{\"body\":{\"a\":null},\"id\":\"a b\",\"v\":2}", "PATCH",
                "/base/items/a%20b?v=2", "{\"a\":null}");
    /* no body argument: no request body */
    expect_call("create", "{}", "POST", "/base/items", NULL);
    expect_call("create", "{\"q\":\"1\"}", "POST", "/base/items?q=1", NULL);
    expect_call("update", "{\"id\":\"7\"}", "PUT", "/base/items/7", NULL);
}
END_TEST

START_TEST(named_body_content_type_replaces_the_clients)
{
    struct http_resp r;
    const cJSON *rec;
    cJSON *all;

    start_named();
    ck_assert_int_eq(stub_reset(&stub), 0);
    named_call(daemon_proc.port, "svc", "create", "{\"body\":{\"a\":1}}",
               (const char *[]){"Content-Type: text/plain", "X-Custom: hello",
                                "X-Request-Id: named-call-1", NULL},
               &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(http_header(&r, "X-Request-Id"), "named-call-1");
    http_resp_free(&r);
    rec = only_record(&stub, &all);
    ck_assert_str_eq(json_str(rec, "body"), "{\"a\":1}");
    ck_assert_str_eq(echo_header(rec, "Content-Type"), "application/json");
    ck_assert_str_eq(echo_header(rec, "Content-Length"), "7");
    /* client headers pass through as for plain forwarding */
    ck_assert_str_eq(echo_header(rec, "X-Custom"), "hello");
    ck_assert_str_eq(echo_header(rec, "X-Request-Id"), "named-call-1");
    ck_assert_str_eq(echo_header(rec, "X-Ahoyd-Attempt"), "1");
    ck_assert_str_eq(echo_header(rec, "Via"), "1.1 ahoyd");
    cJSON_Delete(all);
}
END_TEST

/*
 * The client's Content-Type describes the JSON arguments, which ahoyd consumes:
 * an upstream request without a body must not claim one (a strict upstream
 * refuses "Content-Type: application/json" with an empty POST body).
 */
START_TEST(named_call_without_body_sends_no_content_type)
{
    static const char *const ops[][3] = {{"search", "{\"q\":\"1\"}", "/base/items?q=1"},
                                         {"create", "{}", "/base/items"},
                                         {"remove", "{\"id\":\"7\"}", "/base/items/7"}};
    struct http_resp r;
    const cJSON *rec;
    cJSON *all;

    start_named();
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        ck_assert_int_eq(stub_reset(&stub), 0);
        named_call(daemon_proc.port, "svc", ops[i][0], ops[i][1],
                   (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
        ck_assert_int_eq(r.status, 200);
        http_resp_free(&r);
        rec = only_record(&stub, &all);
        ck_assert_str_eq(json_str(rec, "target"), ops[i][2]);
        ck_assert_int_eq((int)json_num(rec, "body_len", -1), 0);
        ck_assert_msg(echo_header(rec, "Content-Type") == NULL,
                      "call %s %s: the upstream got Content-Type '%s' without a body", ops[i][0],
                      ops[i][1], echo_header(rec, "Content-Type"));
        cJSON_Delete(all);
    }
}
END_TEST

START_TEST(named_argument_errors)
{
    start_named();
    /* not a JSON object, duplicate names, bad JSON */
    expect_call_error("svc", "search", "[]", 400, "invalid_json");
    expect_call_error("svc", "search", "[{\"a\":1}]", 400, "invalid_json");
    expect_call_error("svc", "search", "\"s\"", 400, "invalid_json");
    expect_call_error("svc", "search", "5", 400, "invalid_json");
    expect_call_error("svc", "search", "null", 400, "invalid_json");
    expect_call_error("svc", "search", "{", 400, "invalid_json");
    expect_call_error("svc", "search", "{'a':1}", 400, "invalid_json");
    expect_call_error("svc", "search", "{\"a\":1} {}", 400, "invalid_json");
    expect_call_error("svc", "search", "{\"a\":1,\"a\":2}", 400, "invalid_json");
    expect_call_error("svc", "get_item", "{\"id\":\"x\",\"q\":1,\"id\":\"y\"}", 400,
                      "invalid_json");
    expect_call_error("svc", "search", "{\"a\":\"x\ny\"}", 400, "invalid_json");
    /* missing placeholders (names are case-sensitive; empty body = {}) */
    expect_call_error("svc", "get_item", "{}", 400, "missing_argument");
    expect_call_error("svc", "get_item", "{\"ID\":\"x\"}", 400, "missing_argument");
    expect_call_error("svc", "get_item", NULL, 400, "missing_argument");
    expect_call_error("svc", "pair", "{\"x\":\"1\"}", 400, "missing_argument");
    expect_call_error("svc", "Case", "{\"name\":\"n\"}", 400, "missing_argument");
    /* bad placeholder values */
    expect_call_error("svc", "get_item", "{\"id\":\"\"}", 400, "invalid_argument");
    expect_call_error("svc", "get_item", "{\"id\":\".\"}", 400, "invalid_argument");
    expect_call_error("svc", "get_item", "{\"id\":\"..\"}", 400, "invalid_argument");
    expect_call_error("svc", "get_item", "{\"id\":{\"a\":1}}", 400, "invalid_argument");
    expect_call_error("svc", "get_item", "{\"id\":[\"a\"]}", 400, "invalid_argument");
    expect_call_error("svc", "get_item", "{\"id\":9007199254740993}", 400, "invalid_argument");
    expect_call_error("svc", "get_item", "{\"id\":-9007199254740993}", 400, "invalid_argument");
    /* bad query values: objects, objects in arrays, big integers */
    expect_call_error("svc", "search", "{\"q\":{\"a\":1}}", 400, "invalid_argument");
    expect_call_error("svc", "search", "{\"q\":[\"a\",{\"b\":1}]}", 400, "invalid_argument");
    expect_call_error("svc", "search", "{\"q\":[[1]]}", 400, "invalid_argument");
    expect_call_error("svc", "search", "{\"n\":9007199254740993}", 400, "invalid_argument");
    expect_call_error("svc", "search", "{\"n\":[1,1e300]}", 400, "invalid_argument");
    expect_call_error("svc", "search", "{\"body\":{\"a\":1}}", 400, "invalid_argument");
    expect_call_error("svc", "create", "{\"f\":{\"a\":1},\"body\":{}}", 400, "invalid_argument");
    /* a big integer inside the JSON body would lose digits too */
    expect_call_error("svc", "create", "{\"body\":{\"n\":[9007199254740993]}}", 400,
                      "invalid_argument");
}
END_TEST

START_TEST(named_unknown_operation_service_and_verb)
{
    struct http_resp r;

    start_named();
    expect_call_error("svc", "nope", "{}", 404, "unknown_operation");
    expect_call_error("svc", "GET_ITEM", "{\"id\":\"x\"}", 404, "unknown_operation");
    expect_call_error("svc", "get_item/extra", "{\"id\":\"x\"}", 404, "unknown_operation");
    expect_call_error("svc", "", "{}", 404, "unknown_operation");
    expect_call_error("plain", "get_item", "{\"id\":\"x\"}", 404, "unknown_operation");
    expect_call_error("nosvc", "get_item", "{\"id\":\"x\"}", 404, "unknown_service");

    /* another verb than POST on /_call/...: 405 with exactly Allow: POST */
    ck_assert_int_eq(stub_reset(&stub), 0);
    http_get(daemon_proc.port, "/_call/svc/get_item", NULL, &r);
    assert_ahoyd_error(&r, 405, "method_not_allowed", "svc", 0);
    ck_assert_str_eq(http_header(&r, "Allow"), "POST");
    ck_assert_int_eq(http_header_count(&r, "Allow"), 1);
    http_resp_free(&r);
    http_send(daemon_proc.port, "PUT", "/_call/svc/create", NULL, "{}", 2, &r);
    assert_ahoyd_error(&r, 405, "method_not_allowed", "svc", 0);
    ck_assert_str_eq(http_header(&r, "Allow"), "POST");
    http_resp_free(&r);
    http_send(daemon_proc.port, "DELETE", "/_call/svc/remove", NULL, NULL, 0, &r);
    assert_ahoyd_error(&r, 405, "method_not_allowed", "svc", 0);
    ck_assert_str_eq(http_header(&r, "Allow"), "POST");
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 0);
}
END_TEST

START_TEST(named_call_goes_through_retry)
{
    struct http_resp r;
    cJSON *all;
    int i;

    start_named();
    /* GET: one 503, then success: two attempts, the same request line each time */
    ck_assert_int_eq(stub_reset(&stub), 0);
    ck_assert_int_eq(stub_mode(&stub, "{\"status\":503,\"count\":1}"), 0);
    named_call(daemon_proc.port, "svc", "get_item", "{\"id\":\"a/b\",\"q\":[1,2]}", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "2");
    http_resp_free(&r);
    all = stub_requests(&stub);
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(cJSON_GetArraySize(all), 2);
    for (i = 0; i < 2; i++) {
        const cJSON *rec = cJSON_GetArrayItem(all, i);
        char want[8];
        ck_assert_str_eq(json_str(rec, "method"), "GET");
        ck_assert_str_eq(json_str(rec, "target"), "/base/items/a%2Fb?q=1&q=2");
        snprintf(want, sizeof(want), "%d", i + 1);
        ck_assert_str_eq(echo_header(rec, "X-Ahoyd-Attempt"), want);
    }
    cJSON_Delete(all);

    /* POST is not idempotent: a 503 is handed back after one attempt */
    ck_assert_int_eq(stub_reset(&stub), 0);
    ck_assert_int_eq(stub_mode(&stub, "{\"status\":503,\"count\":1}"), 0);
    named_call(daemon_proc.port, "svc", "create", "{\"body\":{\"a\":1}}", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "1");
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub), 1);

    /* ... unless the client sends an Idempotency-Key: the same body is sent twice */
    ck_assert_int_eq(stub_reset(&stub), 0);
    ck_assert_int_eq(stub_mode(&stub, "{\"status\":503,\"count\":1}"), 0);
    named_call(daemon_proc.port, "svc", "create", "{\"body\":{\"a\":1},\"v\":3}",
               (const char *[]){"Content-Type: application/json", "Idempotency-Key: k-1", NULL},
               &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "2");
    http_resp_free(&r);
    all = stub_requests(&stub);
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(cJSON_GetArraySize(all), 2);
    for (i = 0; i < 2; i++) {
        const cJSON *rec = cJSON_GetArrayItem(all, i);
        ck_assert_str_eq(json_str(rec, "method"), "POST");
        ck_assert_str_eq(json_str(rec, "target"), "/base/items?v=3");
        ck_assert_str_eq(json_str(rec, "body"), "{\"a\":1}");
        ck_assert_str_eq(echo_header(rec, "Idempotency-Key"), "k-1");
    }
    cJSON_Delete(all);
}
END_TEST

/* ---- layering: where requests go (SPEC 2.3) -------------------------------------------------- */

/* GET target through ahoyd must land on the stub named want_stub as want_target. */
static void expect_lands(int port, const char *target, const char *want_stub,
                         const char *want_target)
{
    struct http_resp r;
    cJSON *j;

    http_get(port, target, NULL, &r);
    ck_assert_msg(r.status == 200, "GET %s: status %ld (body %.300s)", target, r.status, r.body);
    j = json_body(&r);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(strcmp(json_str(j, "upstream"), want_stub) == 0 &&
                      strcmp(json_str(j, "target"), want_target) == 0,
                  "GET %s landed on %s as %s, want %s as %s", target, json_str(j, "upstream"),
                  json_str(j, "target"), want_stub, want_target);
    cJSON_Delete(j);
    http_resp_free(&r);
}

static void start_two_stubs(void)
{
    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    ck_assert_int_eq(stub_start(&stub2, "b", NULL), 0);
    new_work_dir();
}

/* The main file of the layering tests: svc on stub a under /main. */
static void write_main(const char *rel, const char *ahoyd_extra, const char *pyfly_extra)
{
    write_file(rel,
               "ahoyd:\n"
               "  listen: 127.0.0.1:0\n"
               "  admin-listen: off\n"
               "%s"
               "pyfly:\n"
               "%s"
               "  client:\n"
               "    services:\n"
               "      svc:\n"
               "        base-url: http://127.0.0.1:%d/main\n"
               "        retry: false\n",
               ahoyd_extra ? ahoyd_extra : "", pyfly_extra ? pyfly_extra : "", stub.port);
}

/* An overlay that points svc at port/base. */
static void write_svc_overlay(const char *rel, int port, const char *base)
{
    write_file(rel,
               "pyfly:\n"
               "  client:\n"
               "    services:\n"
               "      svc:\n"
               "        base-url: http://127.0.0.1:%d/%s\n",
               port, base);
}

START_TEST(dropin_changes_base_url)
{
    start_two_stubs();
    write_main("ahoyd.yaml", "  include: [conf.d/*.yaml]\n", NULL);
    /* name order: 10 is merged after 05, and 20 adds a service beside svc */
    write_svc_overlay("conf.d/10-svc.yaml", stub2.port, "dropin");
    write_svc_overlay("conf.d/05-first.yaml", stub.port, "first");
    write_file("conf.d/20-other.yaml",
               "pyfly:\n  client:\n    services:\n      other:\n"
               "        base-url: http://127.0.0.1:%d/other\n",
               stub.port);
    write_file("conf.d/30-ignored.yml", "this is: [not merged\n");
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    expect_lands(daemon_proc.port, "/svc/x?y=1", "b", "/dropin/x?y=1");
    expect_lands(daemon_proc.port, "/other/z", "a", "/other/z");
    ck_assert_int_eq(stub_count(&stub2), 1);
    ck_assert_int_eq(stub_count(&stub), 1);
}
END_TEST

START_TEST(dropin_keeps_unchanged_keys_of_the_main_file)
{
    struct http_resp r;

    start_two_stubs();
    /* main: retry false (one attempt); the drop-in only moves the service */
    write_main("ahoyd.yaml", "  include: [conf.d/*.yaml]\n", NULL);
    write_svc_overlay("conf.d/svc.yaml", stub2.port, "dropin");
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    ck_assert_int_eq(stub_mode(&stub2, "{\"status\":503,\"count\":1}"), 0);
    http_get(daemon_proc.port, "/svc/r", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Attempts"), "1");
    http_resp_free(&r);
    ck_assert_int_eq(stub_count(&stub2), 1);
    ck_assert_int_eq(stub_count(&stub), 0);
}
END_TEST

START_TEST(profile_selected_by_flag)
{
    start_two_stubs();
    write_main("ahoyd.yaml", NULL, NULL);
    write_svc_overlay("ahoyd-prod.yaml", stub2.port, "prod");
    write_svc_overlay("ahoyd-eu.yaml", stub2.port, "eu");
    ck_assert_int_eq(
        start_on_file(&daemon_proc, "ahoyd.yaml", (const char *[]){"-p", "prod", NULL}), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/prod/x");
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    /* without a profile: the main file alone */
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    expect_lands(daemon_proc.port, "/svc/x", "a", "/main/x");
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    /* several profiles merge in list order: the last one wins */
    ck_assert_int_eq(
        start_on_file(&daemon_proc, "ahoyd.yaml", (const char *[]){"--profile", "prod,eu", NULL}),
        0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/eu/x");
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
    ck_assert_int_eq(
        start_on_file(&daemon_proc, "ahoyd.yaml", (const char *[]){"-p", "eu,prod", NULL}), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/prod/x");
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    /* a missing profile file is only a warning */
    ck_assert_int_eq(
        start_on_file(&daemon_proc, "ahoyd.yaml", (const char *[]){"-p", "staging", NULL}), 0);
    expect_lands(daemon_proc.port, "/svc/x", "a", "/main/x");
    ck_assert(proc_log_wait(&daemon_proc, "staging", 1000));
}
END_TEST

START_TEST(profile_selected_by_env_and_by_file)
{
    start_two_stubs();
    write_main("ahoyd.yaml", NULL, NULL);
    write_main("active.yaml", NULL, "  profiles:\n    active: other\n");
    write_svc_overlay("ahoyd-prod.yaml", stub2.port, "prod");
    write_svc_overlay("ahoyd-other.yaml", stub2.port, "other");
    write_svc_overlay("active-prod.yaml", stub2.port, "active-prod");
    write_svc_overlay("active-other.yaml", stub2.port, "active-other");

    /* pyfly.profiles.active in the main file */
    ck_assert_int_eq(start_on_file(&daemon_proc, "active.yaml", NULL), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/active-other/x");
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    /* PYFLY_PROFILES_ACTIVE (the children inherit the environment) */
    setenv("PYFLY_PROFILES_ACTIVE", "prod", 1);
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/prod/x");
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    /* the environment beats the file ... */
    ck_assert_int_eq(start_on_file(&daemon_proc, "active.yaml", NULL), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/active-prod/x");
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    /* ... and the command line beats the environment */
    ck_assert_int_eq(
        start_on_file(&daemon_proc, "ahoyd.yaml", (const char *[]){"-p", "other", NULL}), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/other/x");
    unsetenv("PYFLY_PROFILES_ACTIVE");
}
END_TEST

START_TEST(placeholders_in_base_url)
{
    start_two_stubs();
    write_file("ahoyd.yaml",
               "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
               "pyfly:\n  client:\n    services:\n"
               "      svc:\n"
               "        base-url: http://127.0.0.1:${NAMED_STUB_PORT}/${NAMED_BASE:dflt}\n"
               "        headers: {X-Lit: \"$${NOT_A_PLACEHOLDER}\"}\n"
               "      other:\n"
               "        base-url: \"http://127.0.0.1:${NAMED_UNSET_PORT_XYZ:%d}/o\"\n",
               stub.port);
    {
        char port[16];
        snprintf(port, sizeof(port), "%d", stub2.port);
        setenv("NAMED_STUB_PORT", port, 1);
    }
    unsetenv("NAMED_BASE");
    unsetenv("NAMED_UNSET_PORT_XYZ");
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/dflt/x");
    expect_lands(daemon_proc.port, "/other/y", "a", "/o/y");
    {
        cJSON *all = stub_requests(&stub2);
        const cJSON *rec;
        ck_assert_ptr_nonnull(all);
        rec = cJSON_GetArrayItem(all, 0);
        ck_assert_ptr_nonnull(rec);
        ck_assert_str_eq(echo_header(rec, "X-Lit"), "${NOT_A_PLACEHOLDER}");
        cJSON_Delete(all);
    }
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    /* the environment beats the default */
    setenv("NAMED_BASE", "from-env", 1);
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    expect_lands(daemon_proc.port, "/svc/x", "b", "/from-env/x");
    unsetenv("NAMED_BASE");
    unsetenv("NAMED_STUB_PORT");
}
END_TEST

START_TEST(env_override_redirects_a_service)
{
    char url[128];

    start_two_stubs();
    write_file("ahoyd.yaml",
               "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
               "pyfly:\n  client:\n    services:\n"
               "      svc:\n        base-url: http://127.0.0.1:%d/main\n"
               "      pay-v2:\n        base-url: http://127.0.0.1:%d/pay\n",
               stub.port, stub.port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/env", stub2.port);
    setenv("PYFLY_CLIENT_SERVICES_SVC_BASE_URL", url, 1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/env-pay", stub2.port);
    setenv("PYFLY_CLIENT_SERVICES_PAY_V2_BASE_URL", url, 1);
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    unsetenv("PYFLY_CLIENT_SERVICES_SVC_BASE_URL");
    unsetenv("PYFLY_CLIENT_SERVICES_PAY_V2_BASE_URL");
    expect_lands(daemon_proc.port, "/svc/x", "b", "/env/x");
    expect_lands(daemon_proc.port, "/pay-v2/q?z", "b", "/env-pay/q?z");
    ck_assert_int_eq(stub_count(&stub), 0);
}
END_TEST

/* A socket listening on 127.0.0.1 (so that binding its port fails); returns the port. */
static int occupied_port(int *fd_out)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
    *fd_out = fd;
    return ntohs(addr.sin_port);
}

START_TEST(ahoyd_listen_env_overrides_the_file)
{
    struct run_result res;
    int fd, busy;

    ck_assert_int_eq(stub_start(&stub, "a", NULL), 0);
    new_work_dir();
    busy = occupied_port(&fd);
    write_file("ahoyd.yaml",
               "ahoyd:\n  listen: 127.0.0.1:%d\n  admin-listen: off\n"
               "pyfly:\n  client:\n    services:\n"
               "      svc:\n        base-url: http://127.0.0.1:%d/main\n",
               busy, stub.port);
    /* the control: the file's address is taken, ahoyd cannot start (exit 3) */
    run_ahoyd((const char *[]){"-c", wpath("ahoyd.yaml"), NULL}, NULL, &res);
    ck_assert_msg(res.status == 3, "ahoyd on a taken port exited %d, want 3 (stderr %.500s)",
                  res.status, res.err);
    run_result_free(&res);

    setenv("AHOYD_LISTEN", "127.0.0.1:0", 1);
    ck_assert_int_eq(start_on_file(&daemon_proc, "ahoyd.yaml", NULL), 0);
    unsetenv("AHOYD_LISTEN");
    ck_assert_int_gt(daemon_proc.port, 0);
    ck_assert_int_ne(daemon_proc.port, busy);
    expect_lands(daemon_proc.port, "/svc/x", "a", "/main/x");
    close(fd);
}
END_TEST

/* ---- overlays under --check-config and --dump-config ----------------------------------------- */

START_TEST(check_config_reports_the_bad_dropin)
{
    struct run_result res;
    char line[600];

    new_work_dir();
    write_file("ahoyd.yaml", "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
                             "  include: [conf.d/*.yaml]\n"
                             "pyfly:\n  client:\n    services:\n"
                             "      svc:\n        base-url: http://127.0.0.1:1/main\n");
    write_file("conf.d/10-good.yaml",
               "pyfly:\n  client:\n    services:\n      svc:\n        timeout: 2s\n");
    run_ahoyd((const char *[]){"--check-config", "-c", wpath("ahoyd.yaml"), NULL}, NULL, &res);
    ck_assert_msg(res.status == 0, "valid files: exit %d, stderr %.500s", res.status, res.err);
    ck_assert(has_line(res.out, "configuration OK"));
    run_result_free(&res);

    write_file("conf.d/20-bad.yaml", "pyfly:\n"
                                     "  client:\n"
                                     "    services:\n"
                                     "      svc:\n"
                                     "        timeout: 5parsecs\n"
                                     "        circuit-breaker:\n"
                                     "          failure-treshold: 3\n");
    run_ahoyd((const char *[]){"--check-config", "-c", wpath("ahoyd.yaml"), NULL}, NULL, &res);
    ck_assert_msg(res.status == 1, "bad drop-in: exit %d, want 1", res.status);
    ck_assert_ptr_null(strstr(res.out, "configuration OK"));
    snprintf(line, sizeof(line), "%s:5:18: ", wpath("conf.d/20-bad.yaml"));
    ck_assert_msg(strstr(res.err, line) != NULL && strstr(res.err, "5parsecs") != NULL,
                  "no '%s...5parsecs' in:\n%s", line, res.err);
    snprintf(line, sizeof(line),
             "%s:7:11: unknown key 'failure-treshold'; did you mean 'failure-threshold'?",
             wpath("conf.d/20-bad.yaml"));
    ck_assert_msg(has_line(res.err, line), "no line '%s' in:\n%s", line, res.err);
    run_result_free(&res);

    /* a YAML syntax error in one drop-in does not hide the errors of another */
    write_file("conf.d/15-syntax.yaml", "pyfly:\n  client: [\n");
    run_ahoyd((const char *[]){"--check-config", "-c", wpath("ahoyd.yaml"), NULL}, NULL, &res);
    ck_assert_int_eq(res.status, 1);
    snprintf(line, sizeof(line), "%s:", wpath("conf.d/15-syntax.yaml"));
    ck_assert_msg(strstr(res.err, line) != NULL, "no '%s' in:\n%s", line, res.err);
    snprintf(line, sizeof(line), "%s:5:18: ", wpath("conf.d/20-bad.yaml"));
    ck_assert_msg(strstr(res.err, line) != NULL, "no '%s' in:\n%s", line, res.err);
    run_result_free(&res);
}
END_TEST

START_TEST(check_config_reports_bad_profile_and_env)
{
    struct run_result res;
    char line[600];

    new_work_dir();
    write_file("ahoyd.yaml", "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
                             "pyfly:\n  client:\n    services:\n"
                             "      svc:\n        base-url: http://127.0.0.1:1/main\n");
    write_file("ahoyd-prod.yaml", "pyfly:\n"
                                  "  client:\n"
                                  "    retry:\n"
                                  "      max-attempts: 0\n"
                                  "ahoyd:\n"
                                  "  include: [x/*.yaml]\n");
    /* the profile is not active: fine */
    run_ahoyd((const char *[]){"--check-config", "-c", wpath("ahoyd.yaml"), NULL}, NULL, &res);
    ck_assert_int_eq(res.status, 0);
    run_result_free(&res);

    run_ahoyd((const char *[]){"--check-config", "-c", wpath("ahoyd.yaml"), "-p", "prod", NULL},
              NULL, &res);
    ck_assert_int_eq(res.status, 1);
    snprintf(line, sizeof(line), "%s:4:21: ", wpath("ahoyd-prod.yaml"));
    ck_assert_msg(strstr(res.err, line) != NULL, "no '%s' in:\n%s", line, res.err);
    snprintf(line, sizeof(line), "%s:6:3: ahoyd.include can only be set in the main file",
             wpath("ahoyd-prod.yaml"));
    ck_assert_msg(has_line(res.err, line), "no line '%s' in:\n%s", line, res.err);
    run_result_free(&res);

    /* an override with a bad value names its variable */
    run_ahoyd((const char *[]){"--check-config", "-c", wpath("ahoyd.yaml"), NULL},
              (const char *[]){"PYFLY_CLIENT_SERVICES_SVC_TIMEOUT=soon", NULL}, &res);
    ck_assert_int_eq(res.status, 1);
    ck_assert_msg(strstr(res.err, "env PYFLY_CLIENT_SERVICES_SVC_TIMEOUT: ") != NULL,
                  "no 'env PYFLY_CLIENT_SERVICES_SVC_TIMEOUT: ' in:\n%s", res.err);
    run_result_free(&res);
}
END_TEST

START_TEST(dump_config_names_the_origin_of_each_value)
{
    struct run_result res;
    char line[600];

    new_work_dir();
    write_file("ahoyd.yaml", "ahoyd:\n"
                             "  listen: 127.0.0.1:0\n"
                             "  admin-listen: off\n"
                             "  include: [conf.d/*.yaml]\n"
                             "pyfly:\n"
                             "  client:\n"
                             "    services:\n"
                             "      svc:\n"
                             "        base-url: http://127.0.0.1:1/main\n"
                             "        retry: false\n");
    write_file("conf.d/10-svc.yaml", "pyfly:\n"
                                     "  client:\n"
                                     "    services:\n"
                                     "      svc:\n"
                                     "        timeout: 2s\n");
    write_file("ahoyd-prod.yaml", "pyfly:\n"
                                  "  client:\n"
                                  "    services:\n"
                                  "      svc:\n"
                                  "        base-url: http://127.0.0.1:2/prod\n");
    run_ahoyd((const char *[]){"--dump-config", "-c", wpath("ahoyd.yaml"), "-p", "prod", NULL},
              (const char *[]){"PYFLY_CLIENT_SERVICES_SVC_CONNECT_TIMEOUT=700ms",
                               "AHOYD_LISTEN=127.0.0.1:0", NULL},
              &res);
    ck_assert_msg(res.status == 0, "exit %d, stderr %.500s", res.status, res.err);
    /* a value from a drop-in: that file and line */
    snprintf(line, sizeof(line), "timeout: 2s  # %s:5\n", wpath("conf.d/10-svc.yaml"));
    ck_assert_msg(strstr(res.out, line) != NULL, "no '%s' in:\n%s", line, res.out);
    /* from the profile file */
    snprintf(line, sizeof(line), "base-url: \"http://127.0.0.1:2/prod\"  # %s:5\n",
             wpath("ahoyd-prod.yaml"));
    ck_assert_msg(strstr(res.out, line) != NULL, "no '%s' in:\n%s", line, res.out);
    /* from the main file */
    snprintf(line, sizeof(line), "retry: false  # %s:10\n", wpath("ahoyd.yaml"));
    ck_assert_msg(strstr(res.out, line) != NULL, "no '%s' in:\n%s", line, res.out);
    /* from the environment */
    ck_assert_msg(
        strstr(res.out,
               "connect-timeout: 700ms  # env PYFLY_CLIENT_SERVICES_SVC_CONNECT_TIMEOUT\n") != NULL,
        "no env connect-timeout in:\n%s", res.out);
    ck_assert_msg(strstr(res.out, "listen: \"127.0.0.1:0\"  # env AHOYD_LISTEN\n") != NULL,
                  "no env listen in:\n%s", res.out);
    /* defaults */
    ck_assert_msg(strstr(res.out, "deadline: 0  # default\n") != NULL, "no default in:\n%s",
                  res.out);
    ck_assert_msg(strstr(res.out, "max-attempts: 3  # default\n") != NULL,
                  "no default max-attempts in:\n%s", res.out);
    run_result_free(&res);
}
END_TEST

/* ---- main --------------------------------------------------------------------------------- */

static Suite *named_suite(void)
{
    Suite *s = suite_create("named");
    TCase *tc;

    tc = harness_tcase(s, "declared_methods");
    tcase_add_test(tc, declared_forwards_matching_requests);
    tcase_add_test(tc, declared_placeholder_takes_one_raw_segment);
    tcase_add_test(tc, declared_405_with_allow);
    tcase_add_test(tc, declared_head_admitted_by_get);
    tcase_add_test(tc, declared_head_not_admitted_without_get);
    tcase_add_test(tc, service_without_methods_forwards_everything);

    tc = harness_tcase(s, "named_calls");
    tcase_add_test(tc, named_placeholders_encoded_as_one_segment);
    tcase_add_test(tc, named_query_from_leftover_arguments);
    tcase_add_test(tc, named_json_bodies);
    tcase_add_test(tc, named_body_content_type_replaces_the_clients);
    tcase_add_test(tc, named_call_without_body_sends_no_content_type);
    tcase_add_test(tc, named_argument_errors);
    tcase_add_test(tc, named_unknown_operation_service_and_verb);
    tcase_add_test(tc, named_call_goes_through_retry);

    tc = harness_tcase(s, "layering");
    tcase_add_test(tc, dropin_changes_base_url);
    tcase_add_test(tc, dropin_keeps_unchanged_keys_of_the_main_file);
    tcase_add_test(tc, profile_selected_by_flag);
    tcase_add_test(tc, profile_selected_by_env_and_by_file);
    tcase_add_test(tc, placeholders_in_base_url);
    tcase_add_test(tc, env_override_redirects_a_service);
    tcase_add_test(tc, ahoyd_listen_env_overrides_the_file);

    tc = harness_tcase(s, "overlay_messages");
    tcase_add_test(tc, check_config_reports_the_bad_dropin);
    tcase_add_test(tc, check_config_reports_bad_profile_and_env);
    tcase_add_test(tc, dump_config_names_the_origin_of_each_value);
    return s;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    SRunner *sr;
    int failed;

    harness_init();
    snprintf(work_root, sizeof(work_root), "%s/ahoyd-named-XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    if (mkdtemp(work_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    sr = srunner_create(named_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_tree(work_root);
    return harness_finish(failed) != 0 ? 1 : 0;
}
