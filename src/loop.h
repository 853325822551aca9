/*
 * loop.h - the event loop, one per worker: epoll for I/O, a binary heap of
 * timers, and a cached monotonic clock. Everything in ahoyd (libmicrohttpd,
 * libcurl, backoff, breaker recovery, request timeouts, signals) runs from one.
 */
#ifndef AHOYD_LOOP_H
#define AHOYD_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

typedef void (*loop_io_cb)(void *arg, uint32_t events);
typedef void (*loop_timer_cb)(void *arg);

/* An fd watched by the loop. Embed it in the owner; it must outlive registration. */
struct loop_io {
    int fd;
    uint32_t events;
    bool registered;
    loop_io_cb cb;
    void *arg;
};

/* A one-shot timer. Embed it in the owner; stop it before freeing the owner. */
struct loop_timer {
    int64_t due_us;
    size_t heap_index; /* 0 = not scheduled; heap slots are 1-based */
    loop_timer_cb cb;
    void *arg;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Register fd for events (EPOLLIN, EPOLLOUT, EPOLLRDHUP...). Returns 0 or -1. */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb,
                void *arg);
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
void loop_io_del(struct loop *l, struct loop_io *io);

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg);
/* (Re)arm to fire delay_ms from now (0 = next iteration). */
void loop_timer_start(struct loop *l, struct loop_timer *t, int64_t delay_ms);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
bool loop_timer_active(const struct loop_timer *t);

/* Monotonic time, cached per iteration (refreshed when the loop wakes). */
int64_t loop_now_ms(const struct loop *l);
int64_t loop_now_us(const struct loop *l);
/* Monotonic clock read directly (for code outside the loop). */
int64_t monotonic_us(void);

/* Called once per iteration before waiting; returns the longest wait it allows in ms
 * (-1 = no limit). Used to drive libmicrohttpd's own timeouts. */
typedef int64_t (*loop_prepare_cb)(void *arg);
void loop_set_prepare(struct loop *l, loop_prepare_cb cb, void *arg);

/* Free ptr (with free()) at the end of this iteration: an object that embeds a
 * struct loop_io may still be named by a pending event of the current batch. */
void loop_defer_free(struct loop *l, void *ptr);

/* Run until loop_stop(). Returns 0, or -1 on an epoll failure. */
int loop_run(struct loop *l);
/* Stop l after its current iteration; from another worker's thread too (it wakes l). */
void loop_stop(struct loop *l);

/* Run fn(arg) on l's own thread, in its next iteration (holding the state lock).
 * The caller holds the state lock. For work that must be done by the worker that
 * owns an object (a libmicrohttpd daemon, its connections). Returns 0 or -1. */
int loop_post(struct loop *l, void (*fn)(void *), void *arg);

/* ---- the state lock (workers) -------------------------------------------------------
 * With one worker, ahoyd is one thread and none of this costs anything. With more,
 * every worker runs its own loop, libmicrohttpd daemon and curl multi handle, and
 * the state they share (runtimes, breakers, balancers, budgets, in-flight counts,
 * metrics, logs) is guarded by one lock: ahoyd's own code always runs holding it. A
 * worker lets go of it only while its loop waits (epoll_wait) and while
 * libmicrohttpd or libcurl do their own work (MHD_run, curl_multi_socket_action:
 * parsing, socket I/O); every callback from them into ahoyd takes it back first
 * (state_enter). So every change of shared state happens in one total order, as in
 * a single loop, and each one sees a clock read after the lock was taken. */
void state_lock_enable(void);  /* before the second worker starts */
void state_enter(void);        /* a callback from a library: take the lock (nestable) */
void state_leave(void);
int state_release(void);       /* around a library call that runs callbacks: let go */
void state_reacquire(int depth);

#endif
