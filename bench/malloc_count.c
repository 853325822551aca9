/*
 * malloc_count.c - an LD_PRELOAD counter of heap allocations (bench/run --profile).
 *
 *   cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c
 *   MALLOC_COUNT_FILE=/tmp/counts LD_PRELOAD=./malloc_count.so ahoyd ...
 *
 * Every call of malloc, calloc, realloc, the aligned allocators and free is
 * counted (atomically: the daemon has several threads) in a small file mapped
 * shared, so that the counts can be read at any moment from outside without
 * signalling the process: bench/run reads the file before and after a fixed
 * number of requests (od -An -t u8) and divides the difference. The file holds
 * eight unsigned 64-bit counters: malloc, calloc, realloc, aligned (memalign,
 * posix_memalign, aligned_alloc, valloc), free (non-NULL), bytes asked, and
 * two spare ones. The allocators themselves are glibc's (__libc_*).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { C_MALLOC, C_CALLOC, C_REALLOC, C_ALIGNED, C_FREE, C_BYTES, C_N = 8 };

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t early[C_N]; /* until the file is mapped (calls from the loader) */
static uint64_t *counts = early;

static inline void count(int which, size_t bytes)
{
    __atomic_fetch_add(&counts[which], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&counts[C_BYTES], bytes, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void malloc_count_init(void)
{
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path || !*path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (ftruncate(fd, (off_t)(C_N * sizeof(uint64_t))) == 0) {
        void *p = mmap(NULL, C_N * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED)
            counts = p;
    }
    close(fd);
}

void *malloc(size_t n)
{
    count(C_MALLOC, n);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count(C_CALLOC, n * m);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count(C_REALLOC, n);
    return __libc_realloc(p, n);
}

void *memalign(size_t a, size_t n)
{
    count(C_ALIGNED, n);
    return __libc_memalign(a, n);
}

void *aligned_alloc(size_t a, size_t n)
{
    count(C_ALIGNED, n);
    return __libc_memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
    count(C_ALIGNED, n);
    void *p = __libc_memalign(a, n);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

void *valloc(size_t n)
{
    count(C_ALIGNED, n);
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

void free(void *p)
{
    if (p)
        __atomic_fetch_add(&counts[C_FREE], 1, __ATOMIC_RELAXED);
    __libc_free(p);
}
