/*
 * sandbox.h - force-included (clang -include) into src/config.c for the
 * config fuzz target only, never into the daemon.
 *
 * A fuzzed configuration may name any file: `include: "/proc/[0-9]*"`,
 * `admin-token-file: /dev/stdin`. Reading the machine's files would make runs
 * slow, non-reproducible or hang, so config.c's fopen() and glob() are
 * renamed to versions (sandbox.c) that only reach the fuzzer's own temporary
 * directory. stat() and realpath() only look, so they stay real.
 */
#ifndef AHOYD_FUZZ_SANDBOX_H
#define AHOYD_FUZZ_SANDBOX_H

#define fopen ahoyd_fuzz_fopen
#define glob ahoyd_fuzz_glob

#endif
