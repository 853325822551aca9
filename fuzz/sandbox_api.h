/*
 * sandbox_api.h - what the config fuzz target shares with sandbox.c: the one
 * directory config.c may read from, and the replacement functions.
 */
#ifndef AHOYD_FUZZ_SANDBOX_API_H
#define AHOYD_FUZZ_SANDBOX_API_H

#include <glob.h>
#include <stdio.h>

extern char ahoyd_fuzz_sandbox_dir[256];

FILE *ahoyd_fuzz_fopen(const char *path, const char *mode);
int ahoyd_fuzz_glob(const char *pattern, int flags, int (*errfunc)(const char *, int),
                    glob_t *pglob);

#endif
