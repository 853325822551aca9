/*
 * rng.c - xorshift64* on a state the caller owns (one per worker): the
 * balancer's picks, the retry jitter, the health checks' spread and request
 * ids. No global state, so the pure modules stay pure and tests can seed it.
 */
#include "rng.h"

uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;

    if (x == 0) /* xorshift is stuck at zero: recover with a fixed odd seed */
        x = UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* Rejection sampling: drop the lowest (2^64 mod n) values so that every
 * residue is equally likely. */
uint64_t rng_below(uint64_t *state, uint64_t n)
{
    uint64_t threshold, r;

    if (n <= 1)
        return 0;
    threshold = (0 - n) % n;
    do {
        r = rng_next(state);
    } while (r < threshold);
    return r % n;
}
