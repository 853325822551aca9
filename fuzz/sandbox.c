/*
 * sandbox.c - the fopen()/glob() that sandbox.h substitutes in config.c for
 * the config fuzz target: paths outside ahoyd_fuzz_sandbox_dir (or climbing
 * out of it with "..") are refused as a real permission error would be.
 */
#include <errno.h>
#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sandbox_api.h"

char ahoyd_fuzz_sandbox_dir[256];

static bool inside(const char *path)
{
    size_t n = strlen(ahoyd_fuzz_sandbox_dir);
    return n > 0 && strncmp(path, ahoyd_fuzz_sandbox_dir, n) == 0 && path[n] == '/' &&
           strstr(path, "..") == NULL;
}

FILE *ahoyd_fuzz_fopen(const char *path, const char *mode)
{
    if (!inside(path)) {
        errno = EACCES;
        return NULL;
    }
    return fopen(path, mode);
}

int ahoyd_fuzz_glob(const char *pattern, int flags, int (*errfunc)(const char *, int),
                    glob_t *pglob)
{
    if (!inside(pattern))
        return GLOB_NOMATCH;
    return glob(pattern, flags, errfunc, pglob);
}
