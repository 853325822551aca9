/*
 * main.c - command line, start-up, signals, reload and drain.
 *
 * The only file that may end the process. Exit codes (SPEC 1): 0 ok,
 * 1 bad configuration, 2 usage, 3 runtime failure (bind, ...).
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "admin.h"
#include "config.h"
#include "log.h"
#include "counters.h"
#include "loop.h"
#include "runtime.h"
#include "checker.h"
#include "pool_feed.h"
#include "server.h"
#include "upstream.h"


extern char **environ;

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/ahoyd/ahoyd.yaml"

enum { EXIT_OK = 0, EXIT_CONFIG = 1, EXIT_USAGE = 2, EXIT_RUNTIME = 3 };

/* A further event loop on a thread of its own (ahoyd.workers, see loop.h). The main
 * thread's loop is the first worker: it alone also handles signals, the admin API,
 * reloads, the drain and the watchdog. */
struct daemon_state;

struct worker {
    struct daemon_state *d;
    struct loop *loop;
    struct upstream *upstream;
    struct server server;
    struct listener *reload_listener; /* prepared by a reload, not yet committed */
    pthread_t thread;
    bool started;
};

struct daemon_state {
    struct config_options opts;
    struct loop *loop;
    struct upstream *upstream;
    struct server server;
    struct worker *workers;           /* the further ones */
    size_t n_workers;
    struct admin *admin;
    struct checker *checker;          /* health checks, on this loop with their own upstream */
    struct pool_feed *feed;           /* discovery sources, on this loop */
    struct admin *admin_retired;      /* replaced by a reload, stopped on the next turn */
    struct loop_timer admin_reaper;
    bool ready;
    struct loop_io signal_io;
    int signal_fd;
    struct loop_timer drain_timer;    /* polls for the end of the drain */
    struct loop_timer delay_timer;    /* drain-delay: serving on, not ready */
    struct loop_timer shutdown_timer; /* shutdown-timeout */
    struct loop_timer watchdog_timer;
    int64_t watchdog_ms;
    int64_t drain_deadline_ms;
    bool delaying;                    /* in the drain delay: serving, /readyz 503 */
    bool draining;
    bool aborted;
    bool worker_failed;               /* a further worker's loop ended in an error */
    bool reload_failed;               /* the last reload failed (ERRNO= was sent) */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ahoyd [-c FILE] [-p PROFILES] [--check-config] [--dump-config] [-l LEVEL] "
            "[-V] [-h]\n"
            "  -c, --config FILE     configuration file (default %s)\n"
            "  -p, --profile LIST    active profiles, comma-separated\n"
            "  -l, --log-level LEVEL error | warn | info | debug\n"
            "      --check-config    validate the configuration and exit\n"
            "      --dump-config     print the effective configuration and exit\n"
            "  -V, --version         print the version and exit\n"
            "  -h, --help            print this help and exit\n",
            DEFAULT_CONFIG);
}

/* Configuration messages: plain lines for --check-config/--dump-config, log lines
 * (with journald priorities) when starting the daemon. */
static void print_messages(const struct config_messages *m, bool plain)
{
    for (size_t i = 0; i < m->n_warnings; i++) {
        if (plain)
            fprintf(stderr, "%s\n", m->warnings[i]);
        else
            log_warn("%s", m->warnings[i]);
    }
    for (size_t i = 0; i < m->n_errors; i++) {
        if (plain)
            fprintf(stderr, "%s\n", m->errors[i]);
        else
            log_error("%s", m->errors[i]);
    }
}

/* ---- reload ------------------------------------------------------------------------ */

static void add_error(char ***errors, size_t *n, const char *msg)
{
    char **e = realloc(*errors, (*n + 1) * sizeof *e);
    if (!e)
        return;
    *errors = e;
    e[(*n)++] = strdup(msg);
}

static struct runtime *hook_current(void *arg);
static bool hook_ready(void *arg);
static int hook_reload(void *arg, char ***errors, size_t *n_errors);

/* Every further worker gets its own daemon for the listener the first one prepared. */
static int prepare_workers(struct daemon_state *d, const struct config *cfg,
                           const struct listener *lst)
{
    for (size_t i = 0; i < d->n_workers; i++) {
        struct worker *w = &d->workers[i];
        if (server_prepare_reload_worker(&w->server, cfg, lst, &w->reload_listener) != 0)
            return -1;
    }
    return 0;
}

static void discard_workers(struct daemon_state *d)
{
    for (size_t i = 0; i < d->n_workers; i++) {
        struct worker *w = &d->workers[i];
        server_discard_reload(&w->server, w->reload_listener);
        w->reload_listener = NULL;
    }
}

/* The end of a reload for systemd: READY=1, and with it on a failure STATUS= saying why and
 * ERRNO= (systemd 257 ends the reload job at READY=1 either way; `systemctl status` shows
 * the status and StatusErrno). A success after a failure restores both. */
static void notify_reload_done(struct daemon_state *d, const char *why, int err)
{
    if (why) {
        char status[200];
        size_t i;
        /* one line of printable text: a notification field ends at a newline */
        for (i = 0; why[i] && i + 1 < sizeof status; i++)
            status[i] = (unsigned char)why[i] < 0x20 || why[i] == 0x7f ? ' ' : why[i];
        status[i] = '\0';
        sd_notifyf(0, "STATUS=reload failed: %s\nERRNO=%d\nREADY=1", status, err);
        d->reload_failed = true;
    } else if (d->reload_failed) {
        sd_notifyf(0, "STATUS=listening on %s\nERRNO=0\nREADY=1", server_bound(&d->server));
        d->reload_failed = false;
    } else {
        sd_notify(0, "READY=1");
    }
}

/* Load the configuration again (SPEC 2.6). Returns 0 when it took effect; otherwise -1
 * and every error logged and, when errors is not NULL, handed back.
 * Long on purpose: load, prepare every listener, build the runtime, then commit, with
 * each failure undoing exactly what was prepared before it. In one function the undo
 * order stays visible next to the steps it undoes. */
static int reload(struct daemon_state *d, char ***errors, size_t *n_errors)
{
    struct config_messages msgs = {0};
    char buf[64];
    int rc = -1;
    char why[512] = "invalid configuration"; /* for the log, the 422 and STATUS= */
    int err = EINVAL;                          /* for ERRNO= */
    bool failed_bind = false;
    snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%lld", (long long)monotonic_us());
    sd_notify(0, buf);
    log_info("reloading configuration from %s", d->opts.path);
    struct config *cfg = config_load(&d->opts, &msgs);
    for (size_t i = 0; i < msgs.n_warnings; i++)
        log_warn("%s", msgs.warnings[i]);
    if (!cfg) {
        if (msgs.n_errors > 0)
            snprintf(why, sizeof why, "%s", msgs.errors[0]);
        for (size_t i = 0; i < msgs.n_errors; i++) {
            log_error("%s", msgs.errors[i]);
            if (errors)
                add_error(errors, n_errors, msgs.errors[i]);
        }
        goto done;
    }
    /* bind what the new configuration needs before changing anything */
    struct listener *lst = NULL;
    struct admin *new_admin = NULL;
    const struct config *cur = d->server.rt->cfg;
    if (cfg->workers != cur->workers)
        log_warn("workers: the change from %lld to %lld takes effect at the next start",
                 (long long)cur->workers, (long long)cfg->workers);
    errno = 0;
    log_error_mark();
    if (server_prepare_reload(&d->server, cfg, &lst) != 0 ||
        prepare_workers(d, cfg, lst) != 0) {
        err = errno ? errno : EADDRNOTAVAIL;
        if (log_last_error()) {
            snprintf(why, sizeof why, "%s", log_last_error());
        } else {
            snprintf(why, sizeof why, "cannot listen on %s", cfg->listen.text);
            log_error("%s", why);
        }
        failed_bind = true;
        if (errors)
            add_error(errors, n_errors, why);
        discard_workers(d);
        server_discard_reload(&d->server, lst);
        config_free(cfg);
        goto done;
    }
    bool admin_moves = strcmp(cfg->admin_listen.text, cur->admin_listen.text) != 0;
    if (admin_moves && cfg->admin_listen.kind != LISTEN_OFF) {
        struct admin_hooks hooks = {
            .arg = d, .current = hook_current, .ready = hook_ready, .reload = hook_reload};
        log_error_mark();
        new_admin = admin_start(d->loop, &cfg->admin_listen, cfg->admin_token, &hooks);
        if (!new_admin) {
            err = errno ? errno : EADDRNOTAVAIL;
            if (log_last_error()) {
                snprintf(why, sizeof why, "%s", log_last_error());
            } else {
                snprintf(why, sizeof why, "cannot listen on %s", cfg->admin_listen.text);
                log_error("%s", why);
            }
            failed_bind = true;
            if (errors)
                add_error(errors, n_errors, why);
            discard_workers(d);
            server_discard_reload(&d->server, lst);
            config_free(cfg);
            goto done;
        }
    }
    char *rt_err = NULL;
    struct runtime *rt = runtime_new(cfg, d->server.rt, d->loop, &rt_err);
    if (!rt) {
        log_error("%s", rt_err ? rt_err : "cannot build the runtime");
        if (errors)
            add_error(errors, n_errors, rt_err ? rt_err : "cannot build the runtime");
        free(rt_err);
        snprintf(why, sizeof why, "cannot build the runtime");
        if (new_admin)
            admin_stop(new_admin);
        discard_workers(d);
        server_discard_reload(&d->server, lst);
        config_free(cfg);
        goto done;
    }
    /* commit */
    struct runtime *old = runtime_ref(d->server.rt);
    server_commit_reload(&d->server, rt, lst);
    for (size_t i = 0; i < d->n_workers; i++) {
        struct worker *w = &d->workers[i];
        server_commit_reload(&w->server, rt, w->reload_listener);
        w->reload_listener = NULL;
    }
    runtime_retire_missing(old, rt);
    runtime_log_changes(old, rt);
    checker_retire(d->checker, old);
    checker_apply(d->checker, rt);
    pool_feed_apply(d->feed, rt);
    if (strcmp(old->cfg->access_log, rt->cfg->access_log) != 0 ||
        old->cfg->access_log_format != rt->cfg->access_log_format) {
        if (access_log_open(rt->cfg->access_log, rt->cfg->access_log_format) != 0)
            log_error("cannot open the access log %s: %s", rt->cfg->access_log,
                      strerror(errno));
        else
            log_info("access log now %s", rt->cfg->access_log);
    }
    runtime_unref(old);
    runtime_unref(rt); /* the server holds it */
    if (admin_moves) {
        /* after a reload over HTTP the old admin is still answering: stop it later */
        if (d->admin)
            d->admin_retired = d->admin;
        d->admin = new_admin;
        if (d->admin_retired)
            loop_timer_start(d->loop, &d->admin_reaper, 0);
    } else if (d->admin) {
        admin_set_token(d->admin, rt->cfg->admin_token);
    }
    log_set_level(d->opts.log_level ? log_level_current() : rt->cfg->log_level);
    log_info("configuration reloaded: %zu services", rt->n_services);
    rc = 0;
done:
    if (rc != 0 && failed_bind)
        log_error("reload failed: keeping the previous configuration (%s)", why);
    else if (rc != 0)
        log_error("reload failed: keeping the previous configuration");
    counters_note_reload(rc == 0, (int64_t)time(NULL));
    notify_reload_done(d, rc == 0 ? NULL : why, err);
    config_messages_free(&msgs);
    return rc;
}

static void on_admin_reaper(void *arg)
{
    struct daemon_state *d = arg;
    if (d->admin_retired)
        admin_stop(d->admin_retired);
    d->admin_retired = NULL;
}

static struct runtime *hook_current(void *arg)
{
    struct daemon_state *d = arg;
    return d->server.rt;
}

static bool hook_ready(void *arg)
{
    struct daemon_state *d = arg;
    return d->ready && !d->delaying && !d->draining;
}

static int hook_reload(void *arg, char ***errors, size_t *n_errors)
{
    struct daemon_state *d = arg;
    if (d->delaying || d->draining) {
        add_error(errors, n_errors, "ahoyd is shutting down");
        return -1;
    }
    return reload(d, errors, n_errors);
}

/* ---- drain ------------------------------------------------------------------------- */

static size_t requests_alive(const struct daemon_state *d)
{
    size_t n = d->server.requests;
    for (size_t i = 0; i < d->n_workers; i++)
        n += d->workers[i].server.requests;
    return n;
}

static size_t calls_running(const struct daemon_state *d)
{
    size_t n = d->server.calls;
    for (size_t i = 0; i < d->n_workers; i++)
        n += d->workers[i].server.calls;
    return n;
}

/* Run on a further worker's own thread (loop_post). */
static void on_worker_drain(void *arg)
{
    server_stop_accepting(arg);
    server_close_idle(arg);
}

static void on_worker_abort(void *arg)
{
    server_abort_calls(arg);
}

static void on_drain_poll(void *arg)
{
    struct daemon_state *d = arg;
    if (requests_alive(d) == 0) {
        loop_stop(d->loop);
        return;
    }
    loop_timer_start(d->loop, &d->drain_timer, 20);
}

static void on_shutdown_timeout(void *arg)
{
    struct daemon_state *d = arg;
    if (!d->aborted) {
        /* calls still running get 503 shutting_down; give the answers a second to leave */
        d->aborted = true;
        log_warn("shutdown timeout: answering %zu calls still running with 503",
                 calls_running(d));
        server_abort_calls(&d->server);
        for (size_t i = 0; i < d->n_workers; i++)
            loop_post(d->workers[i].loop, on_worker_abort, &d->workers[i].server);
        loop_timer_start(d->loop, &d->shutdown_timer, 1000);
        return;
    }
    loop_stop(d->loop);
}

static void start_drain(struct daemon_state *d)
{
    if (d->delaying)
        loop_timer_stop(d->loop, &d->delay_timer);
    else
        sd_notify(0, "STOPPING=1");
    d->delaying = false;
    d->draining = true;
    log_info("draining: %zu requests in progress", requests_alive(d));
    int64_t t = d->server.rt->cfg->shutdown_timeout_ms;
    /* 0 = no limit: calls in flight finish whenever they finish */
    int64_t deadline = t > 0 ? loop_now_ms(d->loop) + t : 0;
    server_set_draining(&d->server, deadline);
    server_stop_accepting(&d->server);
    server_close_idle(&d->server);
    for (size_t i = 0; i < d->n_workers; i++) {
        struct worker *w = &d->workers[i];
        server_set_draining(&w->server, deadline);
        loop_post(w->loop, on_worker_drain, &w->server);
    }
    if (t > 0)
        loop_timer_start(d->loop, &d->shutdown_timer, t);
    loop_timer_start(d->loop, &d->drain_timer, 0);
}

static void on_drain_delay_end(void *arg)
{
    start_drain(arg);
}

/* SIGTERM or SIGINT: the drain delay first (serving on, /readyz 503), then the drain; a
 * second signal during the delay starts the drain at once, one during the drain exits. */
static void on_stop_signal(struct daemon_state *d)
{
    if (d->draining) {
        log_warn("second stop signal: exiting now");
        loop_stop(d->loop);
        return;
    }
    if (d->delaying) {
        log_info("second stop signal: the drain starts now");
        start_drain(d);
        return;
    }
    int64_t delay = d->server.rt->cfg->drain_delay_ms;
    if (delay <= 0) {
        start_drain(d);
        return;
    }
    d->delaying = true;
    sd_notify(0, "STOPPING=1");
    log_info("drain delay: not ready, serving on for %lld ms", (long long)delay);
    loop_timer_start(d->loop, &d->delay_timer, delay);
}

static void on_signal(void *arg, uint32_t events)
{
    struct daemon_state *d = arg;
    struct signalfd_siginfo si;
    while (read(d->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGHUP:
            if (!d->delaying && !d->draining)
                reload(d, NULL, NULL);
            break;
        case SIGTERM:
        case SIGINT:
            on_stop_signal(d);
            break;
        case SIGUSR1:
            if (access_log_reopen() != 0)
                log_error("cannot reopen the access log: %s", strerror(errno));
            else
                log_info("access log reopened");
            break;
        default:
            break;
        }
    }
}

static void on_watchdog(void *arg)
{
    struct daemon_state *d = arg;
    sd_notify(0, "WATCHDOG=1");
    loop_timer_start(d->loop, &d->watchdog_timer, d->watchdog_ms);
}

/* On the main thread: a worker is gone, so part of the listening address is no
 * longer served. Exit (status 3) and let the supervisor start ahoyd again. */
static void on_worker_failed(void *arg)
{
    struct daemon_state *d = arg;
    d->worker_failed = true;
    loop_stop(d->loop);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (loop_run(w->loop) != 0) {
        int e = errno;
        state_enter();
        log_error("a worker's event loop failed: %s; stopping", strerror(e));
        loop_post(w->d->loop, on_worker_failed, w->d);
        state_leave();
    }
    return NULL;
}

/* Start cfg->workers - 1 further workers on the first server's socket. From here on
 * the main thread holds the state lock whenever it runs ahoyd code (loop.h). */
static int start_workers(struct daemon_state *d, struct runtime *rt)
{
    size_t n = (size_t)rt->cfg->workers - 1;
    if (n == 0)
        return 0;
    d->workers = calloc(n, sizeof *d->workers);
    if (!d->workers)
        return -1;
    state_lock_enable();
    state_enter();
    for (size_t i = 0; i < n; i++) {
        struct worker *w = &d->workers[i];
        w->d = d;
        w->loop = loop_new();
        w->upstream = w->loop ? upstream_new(w->loop) : NULL;
        if (!w->upstream) {
            log_error("cannot create a worker's event loop");
            loop_free(w->loop);
            return -1;
        }
        d->n_workers++;
        if (server_start_worker(&w->server, w->loop, w->upstream, rt, &d->server, i + 1) != 0)
            return -1;
        int err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) {
            log_error("cannot start a worker thread: %s", strerror(err));
            return -1;
        }
        w->started = true;
    }
    counters_set_workers(n + 1);
    log_info("workers: %zu event loops", n + 1);
    return 0;
}

static void stop_workers(struct daemon_state *d)
{
    for (size_t i = 0; i < d->n_workers; i++)
        if (d->workers[i].started)
            loop_stop(d->workers[i].loop);
    state_release(); /* let them finish their iteration */
    for (size_t i = 0; i < d->n_workers; i++)
        if (d->workers[i].started)
            pthread_join(d->workers[i].thread, NULL);
    /* one thread again: their servers are stopped from here */
    for (size_t i = 0; i < d->n_workers; i++) {
        struct worker *w = &d->workers[i];
        server_free(&w->server);
        upstream_free(w->upstream);
        loop_free(w->loop);
    }
    free(d->workers);
    d->workers = NULL;
    d->n_workers = 0;
}

static int setup_signals(struct daemon_state *d)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    d->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d->signal_fd < 0)
        return -1;
    return loop_io_add(d->loop, &d->signal_io, d->signal_fd, EPOLLIN, on_signal, d);
}

/* Start-up in the order it must happen (options, configuration, libraries, loops,
 * listeners, workers, signals, readiness), then the loop and the drain. Long on purpose:
 * each step's failure exits with its own status (1 configuration, 2 usage, 3 runtime),
 * and one function keeps every exit path and what it releases in view. */
int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"profile", required_argument, NULL, 'p'},
        {"log-level", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 'C'},
        {"dump-config", no_argument, NULL, 'D'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct daemon_state d = {.signal_fd = -1};
    bool check = false, dump = false;
    int c;
    enum log_level level_given;

    d.opts.path = DEFAULT_CONFIG;
    d.opts.env = environ;
    while ((c = getopt_long(argc, argv, "c:p:l:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': d.opts.path = optarg; break;
        case 'p': d.opts.profiles = optarg; break;
        case 'l':
            if (log_level_parse(optarg, &level_given) != 0) {
                fprintf(stderr, "ahoyd: invalid log level '%s' (error, warn, info, debug)\n",
                        optarg);
                return EXIT_USAGE;
            }
            d.opts.log_level = optarg;
            break;
        case 'C': check = true; break;
        case 'D': dump = true; break;
        case 'V': printf("ahoyd %s\n", PACKAGE_VERSION); return EXIT_OK;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ahoyd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }

    struct config_messages msgs = {0};
    if (dump) {
        int rc = config_dump(&d.opts, stdout, &msgs);
        print_messages(&msgs, true);
        config_messages_free(&msgs);
        return rc == 0 ? EXIT_OK : EXIT_CONFIG;
    }
    log_init(LOG_LEVEL_INFO); /* until the configuration names its level */
    struct config *cfg = config_load(&d.opts, &msgs);
    print_messages(&msgs, check);
    size_t n_warnings = msgs.n_warnings, n_errors = msgs.n_errors;
    config_messages_free(&msgs);
    if (!cfg) {
        if (check && n_errors > 0) /* the verdict, last, beside the errors */
            fprintf(stderr, "%zu error%s\n", n_errors, n_errors == 1 ? "" : "s");
        return EXIT_CONFIG;
    }
    if (check) {
        if (n_warnings > 0) /* the warnings themselves went to stderr */
            printf("%zu warning%s\n", n_warnings, n_warnings == 1 ? "" : "s");
        printf("configuration OK\n");
        config_free(cfg);
        return EXIT_OK;
    }

    log_init(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot initialise libcurl");
        config_free(cfg);
        return EXIT_RUNTIME;
    }
    if (access_log_open(cfg->access_log, cfg->access_log_format) != 0) {
        log_error("cannot open the access log %s: %s", cfg->access_log, strerror(errno));
        config_free(cfg);
        return EXIT_RUNTIME;
    }

    int rc = EXIT_RUNTIME;
    char *err = NULL;
    struct runtime *rt = NULL;
    d.loop = loop_new();
    d.upstream = d.loop ? upstream_new(d.loop) : NULL;
    if (!d.upstream) {
        log_error("cannot create the event loop");
        config_free(cfg);
        goto out;
    }
    rt = runtime_new(cfg, NULL, d.loop, &err);
    if (!rt) {
        log_error("%s", err ? err : "cannot build the runtime");
        free(err);
        config_free(cfg);
        goto out;
    }
    if (setup_signals(&d) != 0) {
        log_error("cannot set up signal handling: %s", strerror(errno));
        goto out;
    }
    if (server_start(&d.server, d.loop, d.upstream, rt) != 0)
        goto out;
    d.checker = checker_new(d.loop);
    if (!d.checker) {
        log_error("cannot create the health checker");
        goto out;
    }
    checker_apply(d.checker, rt);
    d.feed = pool_feed_new(d.loop, d.checker);
    if (!d.feed) {
        log_error("cannot create the discovery sources");
        goto out;
    }
    pool_feed_apply(d.feed, rt);
    if (start_workers(&d, rt) != 0)
        goto out;
    loop_timer_init(&d.drain_timer, on_drain_poll, &d);
    loop_timer_init(&d.delay_timer, on_drain_delay_end, &d);
    loop_timer_init(&d.admin_reaper, on_admin_reaper, &d);
    loop_timer_init(&d.shutdown_timer, on_shutdown_timeout, &d);
    loop_timer_init(&d.watchdog_timer, on_watchdog, &d);
    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        d.watchdog_ms = (int64_t)(wd_usec / 2000); /* half the interval, as systemd advises */
        if (d.watchdog_ms < 1)
            d.watchdog_ms = 1;
        loop_timer_start(d.loop, &d.watchdog_timer, d.watchdog_ms);
    }
    if (rt->cfg->admin_listen.kind != LISTEN_OFF) {
        struct admin_hooks hooks = {
            .arg = &d, .current = hook_current, .ready = hook_ready, .reload = hook_reload};
        d.admin = admin_start(d.loop, &rt->cfg->admin_listen, rt->cfg->admin_token, &hooks);
        if (!d.admin)
            goto out;
    }
    counters_note_startup((int64_t)time(NULL));
    d.ready = true;
    sd_notifyf(0, "READY=1\nSTATUS=listening on %s", server_bound(&d.server));
    log_info("ahoyd %s ready: %zu services", PACKAGE_VERSION, rt->n_services);

    if (loop_run(d.loop) != 0) {
        log_error("event loop failed: %s", strerror(errno));
        rc = EXIT_RUNTIME;
    } else {
        rc = d.worker_failed ? EXIT_RUNTIME : EXIT_OK;
    }
    log_info("stopped");

out:
    if (d.workers)
        stop_workers(&d);
    if (d.loop)
        loop_timer_stop(d.loop, &d.watchdog_timer);
    if (d.admin)
        admin_stop(d.admin);
    if (d.admin_retired)
        admin_stop(d.admin_retired);
    pool_feed_free(d.feed);
    checker_stop(d.checker, d.server.rt);
    server_free(&d.server);
    checker_free(d.checker);
    runtime_unref(rt);
    upstream_free(d.upstream);
    if (d.signal_fd >= 0) {
        loop_io_del(d.loop, &d.signal_io);
        close(d.signal_fd);
    }
    loop_free(d.loop);
    access_log_close();
    curl_global_cleanup();
    return rc;
}
