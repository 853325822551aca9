/*
 * check_tls.c - https endpoints: the scheme decides TLS, tls.ca-file verifies the
 * upstream's certificate, tls.server-name names the server for SNI and verification
 * while the connection goes to the endpoint's address, and tls.verify: false turns
 * verification off. The upstream is `openssl s_server -www` with a self-signed
 * certificate for "ledger.internal", made in a temp dir at test time.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char dir[256];
static pid_t server_pid;
static int server_port;
static struct proc daemon_proc;

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool port_open(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void tls_setup(void)
{
    char cmd[1024], accept[64], cert[300], key[300];
    harness_setup();
    snprintf(dir, sizeof dir, "/tmp/ahoyd-tls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ledger.internal "
             "-addext subjectAltName=DNS:ledger.internal -keyout %s/key.pem -out %s/cert.pem "
             ">/dev/null 2>&1",
             dir, dir);
    ck_assert_msg(run(cmd) == 0, "openssl req failed (is openssl installed?)");
    server_port = free_port();
    ck_assert_int_gt(server_port, 0);
    snprintf(accept, sizeof accept, "127.0.0.1:%d", server_port);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    pid_t parent = getpid();
    server_pid = fork();
    ck_assert_int_ge(server_pid, 0);
    if (server_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execlp("openssl", "openssl", "s_server", "-accept", accept, "-cert", cert, "-key",
               key, "-www", "-quiet", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !port_open(server_port); i++)
        usleep(10000);
    ck_assert_msg(port_open(server_port), "openssl s_server did not start");
}

static void tls_teardown(void)
{
    char cmd[300];
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
    harness_teardown();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run(cmd);
}

static void start_with_tls(const char *tls)
{
    char *yaml;
    ck_assert_int_ge(asprintf(&yaml,
                              "ahoyd:\n  listen: 127.0.0.1:0\n  admin-listen: off\n"
                              "  access-log: stderr\n"
                              "pyfly:\n  client:\n    services:\n"
                              "      ledger:\n        base-url: https://127.0.0.1:%d\n"
                              "        retry: false\n        tls: %s\n",
                              server_port, tls),
                     0);
    int rc = ahoyd_start(&daemon_proc, yaml);
    free(yaml);
    ck_assert_int_eq(rc, 0);
}

/* The certificate names ledger.internal: with server-name and the CA it verifies. */
START_TEST(server_name_verifies)
{
    struct http_resp r;
    char tls[400];
    snprintf(tls, sizeof tls, "{ca-file: %s/cert.pem, server-name: ledger.internal}", dir);
    start_with_tls(tls);
    http_get(daemon_proc.port, "/ledger/", NULL, &r);
    ck_assert_msg(r.status == 200, "status %ld: %.300s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "s_server")); /* s_server's status page */
    char want[64];
    snprintf(want, sizeof want, "https://127.0.0.1:%d", server_port); /* the endpoint as configured */
    ck_assert_str_eq(http_header(&r, "X-Ahoyd-Upstream") ? http_header(&r, "X-Ahoyd-Upstream") : "",
                     want);
    http_resp_free(&r);
}
END_TEST

/* A WebSocket upgrade to an https endpoint is tunnelled over TLS (curl's CONNECT_ONLY
 * connection, verified like any attempt's): s_server answers 200 rather than 101, which
 * comes back as an ordinary response; with the wrong name it is a connect failure. */
START_TEST(upgrade_over_tls)
{
    static const char *const ws[] = {"Connection: Upgrade", "Upgrade: websocket",
                                     "Sec-WebSocket-Version: 13",
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", NULL};
    struct http_resp r;
    char tls[400];
    snprintf(tls, sizeof tls, "{ca-file: %s/cert.pem, server-name: ledger.internal}", dir);
    start_with_tls(tls);
    http_get(daemon_proc.port, "/ledger/", ws, &r);
    ck_assert_msg(r.status == 200, "status %ld: %.300s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "s_server")); /* s_server's status page */
    http_resp_free(&r);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);
    snprintf(tls, sizeof tls, "{ca-file: %s/cert.pem}", dir);
    start_with_tls(tls);
    http_get(daemon_proc.port, "/ledger/", ws, &r);
    assert_ahoyd_error(&r, 502, "upstream_unreachable", "ledger", 1);
    http_resp_free(&r);
}
END_TEST

/* Without server-name the name checked is 127.0.0.1, which the certificate does not
 * carry: the handshake fails before anything is sent (connect-failure, 502). */
START_TEST(wrong_name_is_refused)
{
    struct http_resp r;
    char tls[400];
    snprintf(tls, sizeof tls, "{ca-file: %s/cert.pem}", dir);
    start_with_tls(tls);
    http_get(daemon_proc.port, "/ledger/", NULL, &r);
    assert_ahoyd_error(&r, 502, "upstream_unreachable", "ledger", 1);
    http_resp_free(&r);
}
END_TEST

/* An unknown CA is refused by default; verify: false accepts it. */
START_TEST(verify_default_and_off)
{
    struct http_resp r;
    start_with_tls("{server-name: ledger.internal}");
    http_get(daemon_proc.port, "/ledger/", NULL, &r);
    assert_ahoyd_error(&r, 502, "upstream_unreachable", "ledger", 1);
    http_resp_free(&r);
    ck_assert_int_eq(proc_stop(&daemon_proc), 0);

    start_with_tls("{verify: false}");
    http_get(daemon_proc.port, "/ledger/", NULL, &r);
    ck_assert_msg(r.status == 200, "status %ld: %.300s", r.status, r.body);
    http_resp_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_add_checked_fixture(tc, tls_setup, tls_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, server_name_verifies);
    tcase_add_test(tc, upgrade_over_tls);
    tcase_add_test(tc, wrong_name_is_refused);
    tcase_add_test(tc, verify_default_and_off);
    suite_add_tcase(s, tc);
    return harness_main(s);
}
