/*
 * listen.c - the listening sockets of the proxy (server.c) and the admin API
 * (admin.c): resolving and binding an inet address, binding a unix socket
 * path, a further worker's sibling socket, and removing a unix socket file
 * only while it is still the one we bound.
 *
 * Everything here runs before libmicrohttpd sees the socket: MHD is handed an
 * already listening fd (MHD_OPTION_LISTEN_SOCKET), so that a reload can bind
 * the new address before anything changes and workers can share one address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"

/* A listening TCP socket on sa (nonblocking, close-on-exec, IPv6 only for IPv6);
 * reuseport: in the address's SO_REUSEPORT group, one socket per worker. -1 and errno. */
static int listen_on(const struct sockaddr *sa, socklen_t len, bool reuseport)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, sa, len) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int bind_inet(const struct listen_addr *la, char *bound, size_t cap, bool reuseport)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", la->port);
    int rc = getaddrinfo(la->host, port, &hints, &res);
    if (rc != 0) {
        log_error("cannot resolve listen address %s: %s", la->text, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = listen_on(ai->ai_addr, ai->ai_addrlen, reuseport);
        if (fd >= 0)
            break;
        log_error("cannot listen on %s: %s", la->text, strerror(errno));
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int p = 0;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        p = ntohs(sin->sin_port);
        snprintf(bound, cap, "%s:%d", host, p);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        p = ntohs(sin6->sin6_port);
        snprintf(bound, cap, "[%s]:%d", host, p);
    }
    return fd;
}

static int bind_unix(const struct listen_addr *la, char *bound, size_t cap)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    if (strlen(la->path) >= sizeof sun.sun_path) {
        log_error("unix socket path too long: %s", la->path);
        return -1;
    }
    strcpy(sun.sun_path, la->path);
    /* a stale socket from a previous run is replaced; any other file is not */
    if (lstat(la->path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(la->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, 1024) != 0) {
        log_error("cannot listen on %s: %s", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    chmod(la->path, 0660);
    snprintf(bound, cap, "unix:%s", la->path);
    return fd;
}

int listen_open(const struct listen_addr *la, bool reuseport, char *bound, size_t cap)
{
    return la->kind == LISTEN_UNIX ? bind_unix(la, bound, cap)
                                   : bind_inet(la, bound, cap, reuseport);
}

int listen_open_sibling(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_UNIX)
        return fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return listen_on((struct sockaddr *)&ss, sl, true);
}

void listen_file_note(struct listen_file *f, const struct listen_addr *la)
{
    struct stat st;
    f->path[0] = '\0';
    if (la->kind != LISTEN_UNIX || strlen(la->path) >= sizeof f->path || lstat(la->path, &st) != 0)
        return;
    strcpy(f->path, la->path);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
}

void listen_file_unlink(struct listen_file *f)
{
    struct stat st;
    if (f->path[0] && lstat(f->path, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino)
        unlink(f->path);
    f->path[0] = '\0';
}
