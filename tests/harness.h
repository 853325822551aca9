/*
 * harness.h - helpers for the integration suites (check_forward, check_errors,
 * check_resilience): start and stop the stub upstream and the real ahoyd
 * binary on port 0, talk HTTP to them with libcurl (one request, a kept-alive
 * connection, many at once), send raw bytes for malformed requests, and read
 * JSON bodies with cJSON.
 *
 * Cleanup: every process started here is registered and killed by
 * harness_teardown() (use it as the teardown of a checked fixture); children
 * also get SIGKILL when the test process dies (PR_SET_PDEATHSIG), because a
 * failed assertion in Check's fork mode exits without running the teardown.
 * Temporary directories live under one root made by harness_init() and removed
 * by harness_finish() in main(), which first prints the daemon logs of the
 * tests that failed (their directories are still there).
 */
#ifndef AHOYD_TESTS_HARNESS_H
#define AHOYD_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>

/* ---- processes ---------------------------------------------------------------- */

struct proc {
    pid_t pid;      /* 0 when not running */
    int port;       /* stub: its port; ahoyd: the proxy port */
    int admin_port; /* ahoyd: the admin port, 0 when the admin API is off */
    char dir[256];  /* ahoyd: the temp dir (config, log); "" for a stub */
    char conf_path[300];
    char log_path[300];
    int exit_status; /* after proc_stop/proc_wait: exit code, or 128 + signal */
    bool exited;
};

/* The whole main() of an integration suite: harness_init, run s (CK_NORMAL),
 * harness_finish; returns the exit status (0 when every test passed). */
int harness_main(Suite *s);
/* A test case with the harness fixture (harness_setup/harness_teardown) and a
 * 120 s timeout, added to s. */
TCase *harness_tcase(Suite *s, const char *name);

/* Call once in main() before srunner_run_all, and harness_finish() after it. */
void harness_init(void);
/* Prints the logs left by failed tests, removes the temp root; returns failed. */
int harness_finish(int failed);

/* Checked-fixture functions: setup forgets old registrations; teardown stops
 * every process started in this test and still running (ahoyd with SIGTERM, and
 * it fails the test unless ahoyd exits 0: sanitizer reports surface there; stubs
 * with SIGKILL) and removes the temp dirs (kept when it fails, for the log). */
void harness_setup(void);
void harness_teardown(void);

/* Start $STUB_BIN (or TOP_BUILDDIR/tests/stub_upstream) on 127.0.0.1:0 with --name
 * NAME and extra_args (space-separated, may be NULL); fills p->port. 0 or -1. */
int stub_start(struct proc *p, const char *name, const char *extra_args);

/* Write yaml to a config file in a fresh temp dir and start $AHOYD_BIN (or
 * TOP_BUILDDIR/ahoyd) with -c FILE (plus extra_args, NULL-terminated, may be
 * NULL), stderr and stdout to the dir's ahoyd.log. "@DIR@" in the yaml is
 * replaced by the temp dir. Waits (bounded) for "proxy listening on
 * 127.0.0.1:PORT" and, when the yaml enables the admin API, "admin listening
 * on 127.0.0.1:PORT". Returns 0, or -1 after printing the log. */
int ahoyd_start(struct proc *p, const char *yaml);
int ahoyd_start_args(struct proc *p, const char *yaml, const char *const *extra_args);

/* Start another program (a real DNS server, etcd...: argv[0] is its path) with stdout
 * and stderr to log_path, registered like a stub (SIGKILLed at teardown, and by
 * PDEATHSIG). p keeps its port fields; p->log_path is set (proc_log works).
 * Returns 0, or -1 when it could not be started. */
int proc_spawn(struct proc *p, char *const argv[], const char *log_path);
/* A new directory (mode 0755: a daemon that drops its privileges reads it) under the
 * suite's temp root, removed by harness_finish. Returns 0 or -1. */
int harness_temp_dir(char *out, size_t size);
/* A port on 127.0.0.1 free for TCP and UDP both (a DNS server's), 0 if none found. */
int free_dns_port(void);
/* Poll until 127.0.0.1:port accepts a TCP connection (bounded). */
bool port_wait_open(int port, int timeout_ms);

/* SIGTERM, wait up to 15 s, then SIGKILL; reaps. Returns the exit status
 * (exit code, or 128 + signal), also kept in p->exit_status. */
int proc_stop(struct proc *p);
/* SIGKILL and reap. */
void proc_kill(struct proc *p);
/* Send a signal; 0 or -1. */
int proc_signal(struct proc *p, int sig);
/* Wait up to timeout_ms for the process to exit; returns its status, -1 on timeout. */
int proc_wait(struct proc *p, int timeout_ms);

/* The daemon's log (stderr) so far, malloc'd, NUL-terminated ("" if none). */
char *proc_log(const struct proc *p);
/* Poll the log until it contains needle (bounded by timeout_ms). */
bool proc_log_wait(const struct proc *p, const char *needle, int timeout_ms);
/* Number of log lines containing needle. */
int proc_log_count(const struct proc *p, const char *needle);

/* ---- HTTP with libcurl ------------------------------------------------------------ */

struct http_req {
    const char *method; /* NULL = GET */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" list, or NULL */
    const void *body;           /* NULL = no body; non-NULL with len 0 = empty body */
    size_t body_len;
    long timeout_ms; /* 0 = 15 s */
    bool chunked;    /* send the body with Transfer-Encoding: chunked */
};

struct http_header {
    char *name;
    char *value;
};

struct http_resp {
    long status;   /* 0 when no response */
    int curl_code; /* CURLcode of the transfer */
    char *body;    /* always NUL-terminated (body_len excludes it) */
    size_t body_len;
    char *headers_raw; /* header block of the final response, as received */
    size_t headers_len;
    struct http_header *hdrs;
    size_t n_hdrs;
    long num_connects; /* CURLINFO_NUM_CONNECTS: 0 when a connection was reused */
    double elapsed_ms;
};

/* One request on a new connection. Returns 0 when a response arrived, -1 otherwise
 * (out is filled either way and must be freed). */
int http_do(const struct http_req *req, struct http_resp *out);

/* A client whose connection is kept between requests (keep-alive tests). */
struct http_client {
    CURL *easy;
};
void http_client_init(struct http_client *c);
int http_client_do(struct http_client *c, const struct http_req *req, struct http_resp *out);
void http_client_free(struct http_client *c);

/* Case-insensitive lookup of the first header of that name; NULL if absent. */
const char *http_header(const struct http_resp *r, const char *name);
/* How many headers of that name the response had. */
int http_header_count(const struct http_resp *r, const char *name);
void http_resp_free(struct http_resp *r);

/* Shortcuts: GET/other method to http://127.0.0.1:port + target. */
int http_get(int port, const char *target, const char *const *headers, struct http_resp *out);
int http_send(int port, const char *method, const char *target, const char *const *headers,
              const void *body, size_t body_len, struct http_resp *out);

/* Run n copies of req at once (curl multi). statuses[i] gets each status (0 = no
 * response); *elapsed_ms the wall time for all. Returns how many got a response. */
int http_parallel(const struct http_req *req, int n, long *statuses, double *elapsed_ms);

/* A request in the background (its own thread). */
struct http_async;
struct http_async *http_async_start(const struct http_req *req);
/* Wait for it and take its response (free it after); frees a. */
int http_async_finish(struct http_async *a, struct http_resp *out);

/* ---- raw sockets ----------------------------------------------------------------- */

/* Connect to 127.0.0.1:port, send n bytes, read until the peer closes, one whole
 * response arrived (Content-Length or chunked end), or timeout_ms. out is
 * NUL-terminated. Returns bytes read, -1 when the connection failed. */
int raw_exchange(int port, const void *bytes, size_t n, char *out, size_t cap, int timeout_ms);
/* A connection to 127.0.0.1:port (fd), -1 when refused. */
int raw_connect(int port);
/* Send all of text (asserts). */
void raw_send_text(int fd, const char *text);
/* Read one whole response (Content-Length, chunked, or none for 204/304) from fd (the
 * connection stays open), bounded by timeout_ms; the text goes to out. Returns its
 * status (0: none). */
int raw_read_response(int fd, char *out, size_t cap, int timeout_ms);
/* Status code of a raw response ("HTTP/1.1 400 ..."), 0 if none. */
int raw_status(const char *resp);
/* Pointer to the body of a raw response (after the blank line), "" if none. */
const char *raw_body(const char *resp);
/* Value of a header in a raw response, copied into buf; NULL if absent. */
const char *raw_header(const char *resp, const char *name, char *buf, size_t cap);

/* ---- JSON ------------------------------------------------------------------------- */

/* Parse a response body as JSON (NULL if it is not JSON). */
cJSON *json_body(const struct http_resp *r);
/* Walk "a.b.c" (case-sensitive keys). */
cJSON *json_path(const cJSON *root, const char *path);
const char *json_str(const cJSON *root, const char *path); /* NULL if not a string */
double json_num(const cJSON *root, const char *path, double dflt);
/* The stub echo's header value (case-insensitive name), NULL if absent. */
const char *echo_header(const cJSON *echo, const char *name);

/* ---- stub control ------------------------------------------------------------------ */

int stub_mode(const struct proc *stub, const char *json);
int stub_reset(const struct proc *stub);
long stub_count(const struct proc *stub);
/* The recorded requests, a cJSON array (cJSON_Delete it), NULL on error. */
cJSON *stub_requests(const struct proc *stub);
/* Poll until the stub has recorded at least n requests (bounded). */
bool stub_wait_count(const struct proc *stub, long n, int timeout_ms);

/* ---- common set-ups ------------------------------------------------------------------ */

/*
 * Start a stub named "a" and ahoyd with one service "svc" ->
 * http://127.0.0.1:STUB/base (no admin API, access log to stderr). ahoyd_extra and
 * service_extra are YAML lines ("key: value", '\n'-separated, flow style for maps,
 * NULL for none) put under `ahoyd:` and under the service. Asserts that both started.
 */
void start_one_service(struct proc *stub, struct proc *daemon, const char *ahoyd_extra,
                       const char *service_extra);
/* The same YAML as text (malloc'd), for tests that build their own. */
char *one_service_yaml(int stub_port, const char *ahoyd_extra, const char *service_extra);

/* A port on 127.0.0.1 where nothing listens (bound, then closed). */
int closed_port(void);
/* A listening socket that never accepts, its backlog full: connects to it time out.
 * Returns the port; *fds (3 entries) gets the sockets to close after the test. */
int blackhole_port(int fds[3]);

/* ---- assertions ---------------------------------------------------------------------- */

/* Pass as `service` to assert_ahoyd_error when the error's service is not checked. */
#define SERVICE_ANY "\001any"

/* ahoyd's JSON error (SPEC 5): status, code, Content-Type application/json,
 * error.status == status, error.service (NULL = JSON null), error.attempts
 * (-1 = do not check), error.request_id == X-Request-Id header, message non-empty. */
#define assert_ahoyd_error(r, st, code, service, attempts)                                         \
    assert_ahoyd_error_at(__FILE__, __LINE__, (r), (st), (code), (service), (attempts))
void assert_ahoyd_error_at(const char *file, int line, const struct http_resp *r, int status,
                           const char *code, const char *service, int attempts);

/* The same on a raw response text. */
#define assert_raw_error(text, st, code)                                                           \
    assert_raw_error_at(__FILE__, __LINE__, (text), (st), (code))
void assert_raw_error_at(const char *file, int line, const char *text, int status,
                         const char *code);

double harness_now_ms(void);

/* ---- small common steps ------------------------------------------------------------- */

/* Write text to path (asserts it could). */
void harness_write_file(const char *path, const char *text);
/* One GET /svc/x through daemon d: the status, and in who the name of the stub that
 * answered ("" when ahoyd answered itself). */
long svc_call(const struct proc *d, char *who, size_t cap);

/* promtool from $PROMTOOL, /usr/bin or PATH; NULL when there is none. */
const char *promtool_path(void);
/* The same, for a test that lints with it: without one, asserts this is not CI
 * (CI=true must have it) and prints "<what>: skipped, ..."; NULL then. */
const char *promtool_need(const char *what);
/* `promtool check metrics` (tool) on text: asserts exit 0 and nothing printed (no lint
 * finding). */
void promtool_check(const char *tool, const char *text);

#endif
