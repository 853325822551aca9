/*
 * loop.c - epoll + timer heap.
 *
 * One loop per worker thread (see the state lock in loop.h). I/O callbacks get
 * the epoll event mask; timers are one-shot and kept in a 1-based binary
 * min-heap indexed by due time, so
 * starting, stopping and re-arming are O(log n) and the next wait is O(1).
 * The clock is read once per iteration (and on demand), which keeps the many
 * "now" lookups of a request cheap and consistent.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
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
    int wake_fd;                /* eventfd: another worker posted work or armed a timer */
    struct loop_io wake_io;
    struct loop_post *posted, **posted_tail;
};

struct loop_post {
    void (*fn)(void *);
    void *arg;
    struct loop_post *next;
};

static __thread struct loop *current; /* the loop this thread is running */

/* ---- the state lock ------------------------------------------------------------------ */

static pthread_mutex_t state_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool state_threaded;     /* set once, before a second thread exists */
static __thread int state_depth; /* how deep this thread holds it */

void state_lock_enable(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    /* critical sections are short: spin a little before sleeping in the kernel */
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&state_mutex, &a);
    pthread_mutexattr_destroy(&a);
    state_threaded = true;
}

static void state_lock(int depth)
{
    pthread_mutex_lock(&state_mutex);
    state_depth = depth;
    if (current) /* events are ordered by the lock: give each a clock read inside it */
        current->now_us = monotonic_us();
}

void state_enter(void)
{
    if (!state_threaded)
        return;
    if (state_depth > 0)
        state_depth++;
    else
        state_lock(1);
}

void state_leave(void)
{
    if (!state_threaded)
        return;
    if (--state_depth == 0)
        pthread_mutex_unlock(&state_mutex);
}

int state_release(void)
{
    int depth = state_depth;
    if (!state_threaded || depth == 0)
        return 0;
    state_depth = 0;
    pthread_mutex_unlock(&state_mutex);
    return depth;
}

void state_reacquire(int depth)
{
    if (state_threaded && depth > 0)
        state_lock(depth);
}

/* ---- waking a loop from another thread ------------------------------------------- */

static void loop_wake(struct loop *l)
{
    uint64_t one = 1;
    if (write(l->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        abort(); /* an eventfd write fails only on overflow (EAGAIN) */
}

static void on_wake(void *arg, uint32_t events)
{
    struct loop *l = arg;
    uint64_t n;
    (void)events;
    if (read(l->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
        return;
    struct loop_post *p = l->posted;
    l->posted = NULL;
    l->posted_tail = &l->posted;
    while (p) {
        struct loop_post *next = p->next;
        p->fn(p->arg);
        free(p);
        p = next;
    }
}

int loop_post(struct loop *l, void (*fn)(void *), void *arg)
{
    struct loop_post *p = malloc(sizeof *p);
    if (!p)
        return -1;
    p->fn = fn;
    p->arg = arg;
    p->next = NULL;
    *l->posted_tail = p;
    l->posted_tail = &p->next;
    loop_wake(l);
    return 0;
}

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
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->posted_tail = &l->posted;
    if (l->epfd < 0 || l->wake_fd < 0 ||
        loop_io_add(l, &l->wake_io, l->wake_fd, EPOLLIN, on_wake, l) != 0) {
        if (l->epfd >= 0)
            close(l->epfd);
        if (l->wake_fd >= 0)
            close(l->wake_fd);
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
    while (l->posted) { /* posted to a loop that no longer runs: nothing to do */
        struct loop_post *p = l->posted;
        l->posted = p->next;
        free(p);
    }
    close(l->wake_fd);
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
     * never late, and arming costs no clock read; another worker's loop may be asleep
     * with an old clock and a longer wait: read the clock and wake it */
    bool foreign = state_threaded && l != current;
    t->due_us = (foreign ? monotonic_us() : l->now_us) + delay_ms * 1000;
    l->count++;
    heap_set(l, l->count, t);
    heap_up(l, l->count);
    if (foreign && t->heap_index == 1)
        loop_wake(l);
}

int64_t loop_now_ms(const struct loop *l)
{
    return l->now_us / 1000;
}

int64_t loop_now_us(const struct loop *l)
{
    return l->now_us;
}

static void loop_update_time(struct loop *l)
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
    struct loop *outer = current;
    int rc = 0;
    current = l;
    state_enter();
    while (!l->stop) { /* a stop from before the start counts (a worker told to stop early) */
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
        int depth = state_release();
        int n = epoll_wait(l->epfd, events, LOOP_MAX_EVENTS, (int)wait_ms);
        int wait_errno = errno;
        state_reacquire(depth);
        if (n < 0 && wait_errno != EINTR) {
            errno = wait_errno;
            rc = -1;
            break;
        }
        loop_update_time(l);
        for (int i = 0; i < n; i++) {
            struct loop_io *io = events[i].data.ptr;
            if (io->registered) /* an earlier callback of this batch may have removed it */
                io->cb(io->arg, events[i].events);
        }
        run_timers(l);
        bury(l);
    }
    l->stop = false; /* it may run again */
    state_leave();
    current = outer;
    return rc;
}

void loop_stop(struct loop *l)
{
    l->stop = true;
    if (state_threaded && l != current)
        loop_wake(l);
}
