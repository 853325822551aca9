/*
 * nreq.c - exactly N keep-alive GETs over C connections, for counts per request
 * (bench/cost): wrk runs for a time, so what a slow (traced) server does per unit of
 * time would be spread over a varying number of requests.
 *
 *   nreq PORT PATH N [C] [TIMEOUT_SECONDS]
 *
 * Opens C (default 16) connections to 127.0.0.1:PORT, keeps one request in flight on
 * each until N have been sent, reads every answer in full (Content-Length framing)
 * and prints "nreq ok=K failed=F seconds=S". Exits 0 when all N answered 200. Bounded
 * by TIMEOUT_SECONDS (default 300). 127.0.0.1 only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "answer.h"

struct nc {
    int fd;
    int busy; /* a request is in flight */
    char buf[16384];
    size_t len;
    long need;
};

static int open_conn(int ep, struct nc *c, int idx, const struct sockaddr_in *sa)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) != 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: nreq PORT PATH N [C] [TIMEOUT_SECONDS]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *path = argv[2];
    long n = atol(argv[3]);
    int conns = argc > 4 ? atoi(argv[4]) : 16;
    int limit = argc > 5 ? atoi(argv[5]) : 300;
    if (port <= 0 || port > 65535 || n <= 0 || conns <= 0 || conns > 1024 || limit <= 0) {
        fprintf(stderr, "nreq: bad arguments\n");
        return 2;
    }
    char req[1024];
    int req_len = snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: nreq\r\n"
                           "Accept: */*\r\n\r\n",
                           path, port);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct nc *cs = calloc((size_t)conns, sizeof *cs);
    int ep = epoll_create1(0);
    if (!cs || ep < 0)
        return 1;
    for (int i = 0; i < conns; i++)
        if (open_conn(ep, &cs[i], i, &sa) != 0) {
            perror("nreq: connect");
            return 1;
        }
    long sent = 0, ok = 0, failed = 0;
    double t0 = now_s(), give_up = t0 + limit;
    struct epoll_event evs[256];
    while (ok + failed < n && now_s() < give_up) {
        for (int i = 0; i < conns && sent < n; i++) {
            struct nc *c = &cs[i];
            if (c->busy || c->fd < 0)
                continue;
            if (send(c->fd, req, (size_t)req_len, MSG_NOSIGNAL) != req_len) {
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->busy = 1;
            c->len = 0;
            c->need = -1;
            sent++;
        }
        int k = epoll_wait(ep, evs, 256, 200);
        for (int e = 0; e < k; e++) {
            struct nc *c = &cs[evs[e].data.u32];
            if (c->fd < 0)
                continue;
            ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
            if (r <= 0) {
                if (c->busy)
                    failed++;
                close(c->fd);
                c->fd = -1;
                c->busy = 0;
                continue;
            }
            enum answer a = answer_more(c->buf, sizeof c->buf, &c->len, &c->need, (size_t)r);
            if (a == ANSWER_OK || a == ANSWER_BAD) {
                ok += a == ANSWER_OK;
                failed += a == ANSWER_BAD;
                c->busy = 0;
            } else if (a == ANSWER_TOO_LARGE) {
                failed++;
                close(c->fd);
                c->fd = -1;
                c->busy = 0;
            }
        }
        int open = 0;
        for (int i = 0; i < conns; i++)
            open += cs[i].fd >= 0;
        if (!open)
            break;
    }
    printf("nreq ok=%ld failed=%ld seconds=%.3f\n", ok, failed, now_s() - t0);
    return ok == n ? 0 : 1;
}
