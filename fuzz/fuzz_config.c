/*
 * fuzz_config.c - libFuzzer target for the configuration loader (src/config*.c).
 *
 * The input is a main YAML file. config.c only reads files, so each input is
 * written to <sandbox>/ahoyd.yaml (a private directory made at start-up in
 * $TMPDIR or /tmp, which also holds a profile file, an include file and a
 * token file and a UTF-16 one for the layering code to find) and loaded with config_load(),
 * then again with config_dump(). Comment lines "#!NAME=value" at the top of the input become
 * the environment (overrides, placeholders, PYFLY_PROFILES_ACTIVE,
 * AHOYD_INCLUDE); YAML ignores them.
 *
 * Checked besides memory errors and leaks: a configuration loads exactly when
 * it has no errors, config_dump() agrees with config_load(), every message is
 * a non-empty line, the dump is well-formed YAML, and every service's methods
 * compile with route_table_build() (config.c promised they were valid).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "config.h"
#include "route.h"
#include "sandbox_api.h"

#define MAX_ENV 16

static char main_path[300];

static void put_bytes(const char *name, const void *bytes, size_t n)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/%s", ahoyd_fuzz_sandbox_dir, name);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(bytes, 1, n, f) != n || fclose(f) != 0) {
        perror(p);
        abort();
    }
}

static void put_file(const char *name, const char *text)
{
    put_bytes(name, text, strlen(text));
}

static void remove_sandbox(void)
{
    static const char *const names[] = {"ahoyd.yaml", "ahoyd-dev.yaml", "extra.yaml", "token",
                                        "token-utf16"};
    char p[300];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", ahoyd_fuzz_sandbox_dir, names[i]);
        unlink(p);
    }
    rmdir(ahoyd_fuzz_sandbox_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR"); /* fuzz/run points it into its own work dir */
    char tmpl[200];
    snprintf(tmpl, sizeof(tmpl), "%s/ahoyd-fuzz-config.XXXXXX",
             tmp != NULL && tmp[0] != '\0' && strlen(tmp) < 150 ? tmp : "/tmp");
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        abort();
    }
    snprintf(ahoyd_fuzz_sandbox_dir, sizeof(ahoyd_fuzz_sandbox_dir), "%s", tmpl);
    snprintf(main_path, sizeof(main_path), "%s/ahoyd.yaml", tmpl);
    atexit(remove_sandbox);
    put_file("ahoyd-dev.yaml", "ahoyd:\n  log-level: debug\npyfly:\n  client:\n    services:\n"
                               "      dev:\n        base-url: http://127.0.0.1:9009/dev\n"
                               "        methods: {ping: GET /ping/{id}}\n");
    put_file("extra.yaml", "pyfly:\n  client:\n    retry:\n      max-attempts: 2\n"
                           "    services:\n      extra:\n        endpoints:\n"
                           "          - http://[::1]:9010\n"
                           "          - {url: http://h:1, weight: 3}\n");
    put_file("token", "s3cret-token\n");
    put_bytes("token-utf16", "s\0e\0c\0r\0e\0t\0\n\0", 14); /* a NUL byte: refused */
    return 0;
}

static void check_messages(char **v, size_t n)
{
    if (n > 0 && v == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        if (v[i] == NULL || v[i][0] == '\0' || strchr(v[i], '\n') != NULL)
            abort();
}

/* The dump must be one well-formed YAML document. */
static void check_yaml(const char *s, size_t len)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        abort();
    yaml_parser_set_input_string(&p, (const unsigned char *)s, len);
    bool done = false;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            fprintf(stderr, "dump is not valid YAML: %s at line %zu\n%s\n",
                    p.problem ? p.problem : "?", p.problem_mark.line + 1, s);
            abort();
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* "#!NAME=value" lines at the top: the environment */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *env[MAX_ENV + 1];
    size_t n_env = 0;
    char *p = text;
    while (n_env < MAX_ENV && strncmp(p, "#!", 2) == 0) {
        char *nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (strchr(p + 2, '=') != NULL)
            env[n_env++] = p + 2;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    env[n_env] = NULL;

    FILE *f = fopen(main_path, "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();

    struct config_options opts = {main_path, NULL, NULL, env};
    struct config_messages msgs;
    struct config *cfg = config_load(&opts, &msgs);
    check_messages(msgs.errors, msgs.n_errors);
    check_messages(msgs.warnings, msgs.n_warnings);
    if ((cfg == NULL) != (msgs.n_errors > 0)) {
        fprintf(stderr, "config_load: result %p with %zu errors\n", (void *)cfg, msgs.n_errors);
        abort();
    }
    size_t n_errors = msgs.n_errors;
    bool loaded = cfg != NULL;
    config_messages_free(&msgs);

    if (cfg != NULL) {
        for (size_t i = 0; i < cfg->n_services; i++) {
            struct route_table t;
            char *err = NULL;
            if (route_table_build(&cfg->services[i], &t, &err) != 0) {
                fprintf(stderr, "service %s: accepted by config_load, refused by "
                                "route_table_build: %s\n",
                        cfg->services[i].name, err ? err : "?");
                abort();
            }
            route_table_free(&t);
        }
        config_free(cfg);
    }

    /* config_dump() again for every loadable input, and for a quarter of the
     * others (its error path is the load's; halving the time matters) */
    if (!loaded && size % 4 != 0) {
        free(text);
        return 0;
    }
    char *dump = NULL;
    size_t dump_len = 0;
    FILE *out = open_memstream(&dump, &dump_len);
    if (out == NULL)
        abort();
    int rc = config_dump(&opts, out, &msgs);
    fclose(out);
    check_messages(msgs.errors, msgs.n_errors);
    if ((rc == 0) != loaded || msgs.n_errors != n_errors) {
        fprintf(stderr, "config_dump: rc %d, %zu errors; config_load: %s, %zu errors\n", rc,
                msgs.n_errors, loaded ? "ok" : "failed", n_errors);
        abort();
    }
    if (rc == 0)
        check_yaml(dump, dump_len);
    config_messages_free(&msgs);
    free(dump);
    free(text);
    return 0;
}
