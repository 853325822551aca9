/*
 * listen.h - listening sockets for the proxy and the admin API: inet or unix,
 * a further worker's sibling of a socket, and the unix socket file a listener
 * created, remembered so that only that file is ever removed.
 */
#ifndef AHOYD_LISTEN_H
#define AHOYD_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

#include "config.h"

/* A unix socket file as bound: removed only while it is still that file (another
 * daemon may have bound the path since). path "" = no file of ours. */
struct listen_file {
    char path[sizeof ((struct sockaddr_un *)0)->sun_path];
    dev_t dev;
    ino_t ino;
};

/* Bind and listen on la (nonblocking, close-on-exec); bound gets the address as bound
 * ("127.0.0.1:8080" with port 0 resolved, "[::1]:8080", "unix:/path"). A stale socket
 * file at a unix path is replaced, any other file is not. reuseport: an inet socket
 * joins the address's SO_REUSEPORT group (one socket per worker). Returns the fd, or
 * -1 after logging. */
int listen_open(const struct listen_addr *la, bool reuseport, char *bound, size_t cap);
/* A further worker's socket for the address fd listens on: an inet one of its own in
 * fd's SO_REUSEPORT group, so the kernel spreads new connections over the workers; a
 * unix socket cannot, and is shared (a dup: whichever worker accepts first takes the
 * connection). -1 and errno. */
int listen_open_sibling(int fd);

/* Remember the file at la's unix path as it is now (after listen_open bound it);
 * nothing for an inet address. */
void listen_file_note(struct listen_file *f, const struct listen_addr *la);
/* Remove the remembered file if the path still names it, and forget it. */
void listen_file_unlink(struct listen_file *f);

#endif
