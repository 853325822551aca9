/*
 * holdconns.c - open many keep-alive client connections and hold them (bench/run).
 *
 *   holdconns PORT COUNT PATH [BATCH] [HOLD_SECONDS]
 *
 * Opens COUNT TCP connections to 127.0.0.1:PORT, sends one keep-alive
 * "GET PATH" on each (at most BATCH requests in flight, default 64, so the
 * upstream behind a proxy sees a bounded burst) and reads each answer in full
 * (Content-Length framing). Then it prints one line on stdout,
 *
 *   ready ok=N failed=M
 *
 * and holds every connection open for HOLD_SECONDS (default 60) or until
 * SIGTERM/SIGINT, watching for the peer closing them. On exit it prints
 * "held alive=N closed=M". Every phase is bounded in time (30 s to connect
 * and get the answers). 127.0.0.1 only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "answer.h"

enum state { S_CONNECTING, S_WAIT_SEND, S_READING, S_DONE, S_FAILED, S_CLOSED };

struct hc {
    int fd;
    enum state st;
    char buf[8192];
    size_t len;
    long need; /* total bytes of the answer once the head is known, else -1 */
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: holdconns PORT COUNT PATH [BATCH] [HOLD_SECONDS]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int count = atoi(argv[2]);
    const char *path = argv[3];
    int batch = argc > 4 ? atoi(argv[4]) : 64;
    int hold = argc > 5 ? atoi(argv[5]) : 60;
    if (port <= 0 || port > 65535 || count <= 0 || count > 60000 || batch <= 0) {
        fprintf(stderr, "holdconns: bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    char req[1024];
    int req_len = snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: holdconns\r\n"
                           "Accept: application/json\r\n\r\n",
                           path, port);
    struct hc *cs = calloc((size_t)count, sizeof *cs);
    int ep = epoll_create1(0);
    if (!cs || ep < 0)
        return 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int opened = 0;
    for (int i = 0; i < count; i++) {
        cs[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        cs[i].need = -1;
        if (cs[i].fd < 0) {
            cs[i].st = S_FAILED;
            continue;
        }
        if (connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
            close(cs[i].fd);
            cs[i].fd = -1;
            cs[i].st = S_FAILED;
            continue;
        }
        cs[i].st = S_CONNECTING;
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        opened++;
    }

    int inflight = 0, ok = 0, failed = count - opened, next_send = 0;
    double give_up = now_s() + 30;
    struct epoll_event evs[512];
    while (ok + failed < count && now_s() < give_up && !stop) {
        /* start requests on connected sockets, BATCH at a time */
        for (; next_send < count && inflight < batch; next_send++) {
            struct hc *c = &cs[next_send];
            if (c->st == S_CONNECTING)
                break; /* not connected yet: wait for it, keeping the order simple */
            if (c->st != S_WAIT_SEND)
                continue;
            ssize_t w = send(c->fd, req, (size_t)req_len, MSG_NOSIGNAL);
            if (w != req_len) {
                c->st = S_FAILED;
                failed++;
                continue;
            }
            c->st = S_READING;
            inflight++;
        }
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            struct hc *c = &cs[evs[k].data.u32];
            if (c->st == S_CONNECTING && (evs[k].events & EPOLLOUT)) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    c->st = S_FAILED;
                    failed++;
                    continue;
                }
                c->st = S_WAIT_SEND;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data = evs[k].data};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (c->st != S_READING) {
                if (c->st != S_FAILED && (evs[k].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                    c->st = S_FAILED;
                    failed++;
                }
                continue;
            }
            ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                c->st = S_FAILED;
                failed++;
                inflight--;
                continue;
            }
            enum answer a = answer_more(c->buf, sizeof c->buf, &c->len, &c->need, (size_t)r);
            if (a == ANSWER_OK) {
                c->st = S_DONE;
                ok++;
                inflight--;
            } else if (a != ANSWER_MORE) {
                c->st = S_FAILED;
                failed++;
                inflight--;
            }
        }
    }
    printf("ready ok=%d failed=%d\n", ok, failed);
    fflush(stdout);

    /* hold: watch for connections the peer closes */
    double until = now_s() + hold;
    int closed = 0;
    while (!stop && now_s() < until) {
        int n = epoll_wait(ep, evs, 512, 200);
        for (int k = 0; k < n; k++) {
            struct hc *c = &cs[evs[k].data.u32];
            if (c->st == S_DONE && (evs[k].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                c->st = S_CLOSED;
                closed++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            }
        }
    }
    printf("held alive=%d closed=%d\n", ok - closed, closed);
    fflush(stdout);
    return 0;
}
