/*
 * rng.h - the pseudo-random numbers of the balancer, the retry jitter and the
 * request ids: xorshift64* on a state the caller owns (one per worker), so
 * the pure modules stay pure and tests can seed them.
 */
#ifndef AHOYD_RNG_H
#define AHOYD_RNG_H

#include <stdint.h>

/* xorshift64*; a zero state is replaced by a fixed odd seed. */
uint64_t rng_next(uint64_t *state);
/* uniform in [0, n) */
uint64_t rng_below(uint64_t *state, uint64_t n);

#endif
