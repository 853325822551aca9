/*
 * loop.c - epoll + timer heap.
 *
 * One loop per process. I/O callbacks get the epoll event mask; timers are
 * one-shot and kept in a 1-based binary min-heap indexed by due time, so
 * starting, stopping and re-arming are O(log n) and the next wait is O(1).
 * The clock is read once per iteration (and on demand), which keeps the many
 * "now" lookups of a request cheap and consistent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#define LOOP_MAX_EVENTS 256

struct loop {
    int epfd;
    bool stop;
    int64_t now_us;
    struct loop_timer **heap; /* heap[1..count] */
    size_t count, cap;
    loop_prepare_cb prepare;
    void *prepare_arg;
    void **graveyard; /* freed at the end of the iteration */
    size_t dead, dead_cap;
};

int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    l->now_us = monotonic_us();
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->dead; i++)
        free(l->graveyard[i]);
    free(l->graveyard);
    close(l->epfd);
    free(l->heap);
    free(l);
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb,
                void *arg)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    io->fd = fd;
    io->cb = cb;
    io->arg = arg;
    io->events = events;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -1;
    io->registered = true;
    return 0;
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (io->events == events)
        return 0;
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) != 0)
        return -1;
    io->events = events;
    return 0;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
    if (!io->registered)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->registered = false;
}

/* ---- timers ---------------------------------------------------------------- */

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 1 && l->heap[i / 2]->due_us > t->due_us) {
        heap_set(l, i, l->heap[i / 2]);
        i /= 2;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        size_t c = i * 2;
        if (c > l->count)
            break;
        if (c + 1 <= l->count && l->heap[c + 1]->due_us < l->heap[c]->due_us)
            c++;
        if (l->heap[c]->due_us >= t->due_us)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg)
{
    t->due_us = 0;
    t->heap_index = 0;
    t->cb = cb;
    t->arg = arg;
}

bool loop_timer_active(const struct loop_timer *t)
{
    return t->heap_index != 0;
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
    size_t i = t->heap_index;
    if (i == 0)
        return;
    struct loop_timer *last = l->heap[l->count--];
    t->heap_index = 0;
    if (last == t)
        return;
    heap_set(l, i, last);
    heap_up(l, i);
    heap_down(l, last->heap_index);
}

void loop_timer_start(struct loop *l, struct loop_timer *t, int64_t delay_ms)
{
    loop_timer_stop(l, t);
    if (delay_ms < 0)
        delay_ms = 0;
    if (l->count + 1 >= l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct loop_timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h)
            abort(); /* out of memory: nothing sensible to do in a timer */
        l->heap = h;
        l->cap = cap;
    }
    /* the iteration's clock: a timer armed late in an iteration fires a little early,
     * never late, and arming costs no clock read */
    t->due_us = l->now_us + delay_ms * 1000;
    l->count++;
    heap_set(l, l->count, t);
    heap_up(l, l->count);
}

int64_t loop_now_ms(const struct loop *l)
{
    return l->now_us / 1000;
}

int64_t loop_now_us(const struct loop *l)
{
    return l->now_us;
}

void loop_update_time(struct loop *l)
{
    l->now_us = monotonic_us();
}

void loop_set_prepare(struct loop *l, loop_prepare_cb cb, void *arg)
{
    l->prepare = cb;
    l->prepare_arg = arg;
}

static void run_timers(struct loop *l)
{
    /* Only timers due now run; a timer armed by a callback with delay 0 runs on the
     * next iteration, after I/O, so a busy timer cannot starve the sockets. */
    int64_t now = l->now_us;
    size_t budget = l->count;
    while (l->count > 0 && budget-- > 0) {
        struct loop_timer *t = l->heap[1];
        if (t->due_us > now)
            break;
        loop_timer_stop(l, t);
        t->cb(t->arg);
    }
}

void loop_defer_free(struct loop *l, void *ptr)
{
    if (!ptr)
        return;
    if (l->dead == l->dead_cap) {
        size_t cap = l->dead_cap ? l->dead_cap * 2 : 64;
        void **g = realloc(l->graveyard, cap * sizeof *g);
        if (!g)
            abort();
        l->graveyard = g;
        l->dead_cap = cap;
    }
    l->graveyard[l->dead++] = ptr;
}

static void bury(struct loop *l)
{
    for (size_t i = 0; i < l->dead; i++)
        free(l->graveyard[i]);
    l->dead = 0;
}

int loop_run(struct loop *l)
{
    struct epoll_event events[LOOP_MAX_EVENTS];
    l->stop = false;
    while (!l->stop) {
        int64_t wait_ms = -1;
        loop_update_time(l);
        if (l->prepare)
            wait_ms = l->prepare(l->prepare_arg);
        if (l->count > 0) {
            int64_t d = l->heap[1]->due_us - l->now_us;
            int64_t ms = d <= 0 ? 0 : (d + 999) / 1000;
            if (wait_ms < 0 || ms < wait_ms)
                wait_ms = ms;
        }
        if (wait_ms > 60000)
            wait_ms = 60000;
        int n = epoll_wait(l->epfd, events, LOOP_MAX_EVENTS, (int)wait_ms);
        if (n < 0 && errno != EINTR)
            return -1;
        loop_update_time(l);
        for (int i = 0; i < n; i++) {
            struct loop_io *io = events[i].data.ptr;
            if (io->registered) /* an earlier callback of this batch may have removed it */
                io->cb(io->arg, events[i].events);
        }
        run_timers(l);
        bury(l);
    }
    return 0;
}

void loop_stop(struct loop *l)
{
    l->stop = true;
}
