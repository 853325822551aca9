/*
 * delay_upstream.c - a tiny single-threaded epoll HTTP/1.1 server for bench/run.
 *
 * It answers every request with the same small JSON body after a fixed delay
 * (--delay-ms, default 10). The delay is the same for every request, so the
 * pending answers form one FIFO ordered by due time: one timerfd armed for the
 * head of the queue is all the timing machinery needed, and 256 or 1000
 * connections cost no threads. Keep-alive, pipelining and "Connection: close"
 * are honoured; request bodies (Content-Length only) are skipped.
 *
 * It exists because nginx cannot delay an answer natively and the project's
 * test stub (tests/stub_upstream) runs a thread per connection and sleeps in
 * 10 ms slices, which would make the upstream, not the proxy, the bottleneck.
 *
 *   delay_upstream --port N [--delay-ms MS] [--body JSON] [--max-seconds S]
 *
 * Listens on 127.0.0.1 only. --port 0 picks a free port; the bound port is
 * printed on stdout as "port N". It exits after --max-seconds (default 3600).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
#define QUEUE_CAP (1 << 18)
#define INBUF 16384
#define OUTBUF 65536

struct conn {
    uint32_t gen;     /* bumped on close, so stale queue entries are ignored */
    int open;
    int closing;      /* close once the queued answers are written */
    int pending;      /* answers queued, not yet written */
    size_t in_len;
    uint64_t skip;    /* request body bytes still to skip */
    char in[INBUF];
    size_t out_len, out_off;
    char *out;
};

struct pending {
    int fd;
    uint32_t gen;
    int close_after;
    int64_t due_ns;
};

static struct conn *conns[MAX_FDS];
static struct pending *queue;
static size_t q_head, q_len;
static int epfd, tfd;
static char response[1024], response_close[1024];
static size_t response_len, response_close_len;
static int64_t delay_ns;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void arm_timer(void)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (q_len > 0) {
        int64_t due = queue[q_head].due_ns;
        its.it_value.tv_sec = due / 1000000000;
        its.it_value.tv_nsec = due % 1000000000;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void conn_close(int fd)
{
    struct conn *c = conns[fd];
    if (!c || !c->open)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    c->open = 0;
    c->gen++;
    c->in_len = c->out_len = c->out_off = 0;
    c->pending = 0;
    c->closing = 0;
    c->skip = 0;
}

/* Write what is buffered; 0 = all written, 1 = blocked, -1 = closed. */
static int flush_out(int fd, struct conn *c)
{
    int spins = 64;
    while (c->out_off < c->out_len && spins-- > 0) {
        ssize_t w = send(fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
            epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
            return 1;
        } else {
            conn_close(fd);
            return -1;
        }
    }
    if (c->out_off < c->out_len)
        return 1;
    c->out_off = c->out_len = 0;
    return 0;
}

static void queue_push(int fd, int close_after)
{
    struct conn *c = conns[fd];
    if (q_len == QUEUE_CAP) { /* cannot happen with sane loads: close instead of growing */
        conn_close(fd);
        return;
    }
    size_t i = (q_head + q_len) % QUEUE_CAP;
    queue[i].fd = fd;
    queue[i].gen = c->gen;
    queue[i].close_after = close_after;
    queue[i].due_ns = now_ns() + delay_ns;
    q_len++;
    c->pending++;
    if (q_len == 1)
        arm_timer();
}

/* Find complete requests in the input buffer and queue one answer for each. */
static void parse_requests(int fd, struct conn *c)
{
    for (int guard = 0; guard < 1024; guard++) {
        if (c->skip) {
            size_t k = c->skip < c->in_len ? (size_t)c->skip : c->in_len;
            memmove(c->in, c->in + k, c->in_len - k);
            c->in_len -= k;
            c->skip -= k;
            if (c->skip)
                return;
        }
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end) {
            if (c->in_len == INBUF) /* header block too large */
                conn_close(fd);
            return;
        }
        size_t head_len = (size_t)(end - c->in) + 4;
        int close_after = 0;
        uint64_t body = 0;
        /* scan header lines */
        char *p = memchr(c->in, '\n', head_len);
        if (p && p > c->in && memmem(c->in, (size_t)(p - c->in), "HTTP/1.0", 8))
            close_after = 1;
        while (p && p < end) {
            char *line = p + 1;
            char *nl = memchr(line, '\n', (size_t)(end + 2 - line));
            if (!nl)
                break;
            size_t ll = (size_t)(nl - line);
            if (ll > 15 && strncasecmp(line, "Content-Length:", 15) == 0)
                body = strtoull(line + 15, NULL, 10);
            else if (ll > 11 && strncasecmp(line, "Connection:", 11) == 0) {
                if (memmem(line, ll, "close", 5))
                    close_after = 1;
                else if (memmem(line, ll, "eep-alive", 9))
                    close_after = 0;
            }
            p = nl;
        }
        memmove(c->in, c->in + head_len, c->in_len - head_len);
        c->in_len -= head_len;
        c->skip = body;
        queue_push(fd, close_after);
        if (!conns[fd]->open)
            return;
        if (close_after) {
            c->closing = 1; /* ignore whatever follows */
            c->in_len = 0;
            c->skip = 0;
            return;
        }
    }
}

static void on_readable(int fd)
{
    struct conn *c = conns[fd];
    for (int spins = 0; spins < 16; spins++) {
        if (c->closing) {
            char sink[4096];
            ssize_t r = recv(fd, sink, sizeof sink, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                conn_close(fd);
            return;
        }
        ssize_t r = recv(fd, c->in + c->in_len, INBUF - c->in_len, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
            parse_requests(fd, c);
            if (!c->open)
                return;
            if ((size_t)r < INBUF)
                return;
        } else if (r == 0) {
            if (c->pending == 0)
                conn_close(fd);
            else
                c->closing = 1; /* half-closed: answer what is queued, then close */
            return;
        } else {
            if (errno != EAGAIN && errno != EINTR)
                conn_close(fd);
            return;
        }
    }
}

static void on_timer(void)
{
    uint64_t exp;
    ssize_t rr = read(tfd, &exp, sizeof exp);
    (void)rr;
    int64_t now = now_ns();
    size_t budget = q_len;
    while (q_len > 0 && budget-- > 0 && queue[q_head].due_ns <= now) {
        struct pending pe = queue[q_head];
        q_head = (q_head + 1) % QUEUE_CAP;
        q_len--;
        struct conn *c = conns[pe.fd];
        if (!c || !c->open || c->gen != pe.gen)
            continue;
        c->pending--;
        const char *ans = pe.close_after ? response_close : response;
        size_t ans_len = pe.close_after ? response_close_len : response_len;
        if (c->out_len + ans_len > OUTBUF) {
            conn_close(pe.fd); /* the client does not read */
            continue;
        }
        memcpy(c->out + c->out_len, ans, ans_len);
        c->out_len += ans_len;
        if (flush_out(pe.fd, c) < 0)
            continue;
        if ((pe.close_after || (c->closing && c->pending == 0)) && c->out_len == 0)
            conn_close(pe.fd);
    }
    arm_timer();
}

static void on_accept(int lfd)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        if (!conns[fd]) {
            conns[fd] = calloc(1, sizeof *conns[fd]);
            if (!conns[fd] || !(conns[fd]->out = malloc(OUTBUF))) {
                close(fd);
                continue;
            }
        }
        struct conn *c = conns[fd];
        c->open = 1;
        c->closing = 0;
        c->in_len = c->out_len = c->out_off = 0;
        c->pending = 0;
        c->skip = 0;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv)
{
    int port = -1;
    long delay_ms = 10, max_s = 3600;
    const char *body = "{\"id\":\"8f14e45f-ceea-467f-a0e6-3b3f5e2a1c4d\",\"name\":\"widget\","
                       "\"price\":1999,\"currency\":\"EUR\",\"tags\":[\"bench\",\"ahoyd\",\"json\"],"
                       "\"stock\":{\"warehouse\":\"ams-1\",\"count\":42},"
                       "\"updated\":\"2024-05-01T12:00:00Z\",\"ok\":true}";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--delay-ms") == 0)
            delay_ms = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--body") == 0)
            body = argv[i + 1];
        else if (strcmp(argv[i], "--max-seconds") == 0)
            max_s = atol(argv[i + 1]);
    }
    if (port < 0 || port > 65535 || delay_ms < 0 || strlen(body) > 700) {
        fprintf(stderr, "usage: delay_upstream --port N [--delay-ms MS] [--body JSON] "
                        "[--max-seconds S]\n");
        return 2;
    }
    delay_ns = delay_ms * 1000000;
    response_len = (size_t)snprintf(response, sizeof response,
                                    "HTTP/1.1 200 OK\r\nServer: delay_upstream\r\n"
                                    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                                    "\r\n%s",
                                    strlen(body), body);
    response_close_len = (size_t)snprintf(response_close, sizeof response_close,
                                          "HTTP/1.1 200 OK\r\nServer: delay_upstream\r\n"
                                          "Content-Type: application/json\r\n"
                                          "Content-Length: %zu\r\nConnection: close\r\n"
                                          "\r\n%s",
                                          strlen(body), body);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max < MAX_FDS ? rl.rlim_max : MAX_FDS;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    queue = calloc(QUEUE_CAP, sizeof *queue);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (!queue || lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(lfd, 4096) != 0) {
        perror("delay_upstream: listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("port %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = tfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);

    int64_t stop_at = now_ns() + (int64_t)max_s * 1000000000;
    struct epoll_event evs[512];
    while (now_ns() < stop_at) {
        int n = epoll_wait(epfd, evs, 512, 1000);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                on_accept(lfd);
            } else if (fd == tfd) {
                on_timer();
            } else if (conns[fd] && conns[fd]->open) {
                struct conn *c = conns[fd];
                if (evs[i].events & EPOLLOUT) {
                    int rc = flush_out(fd, c);
                    if (rc == 0) {
                        struct epoll_event e2 = {.events = EPOLLIN, .data.fd = fd};
                        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e2);
                        if (c->closing && c->pending == 0) {
                            conn_close(fd);
                            continue;
                        }
                    }
                    if (rc < 0)
                        continue;
                }
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    on_readable(fd);
            }
        }
    }
    return 0;
}
