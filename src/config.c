/*
 * config.c - YAML files -> struct config, and --dump-config: the public entry
 * points of config.h.
 *
 * The pipeline, in order (each step in its own file, config_int.h between
 * them):
 *   1. every file is parsed into a node tree that keeps FILE:LINE:COL for
 *      every node (config_yaml.c, config_tree.c);
 *   2. step 0: `ahoyd.include` and `pyfly.profiles.active` are read from the
 *      main file; include files (name order), then profile files are
 *      deep-merged on top; placeholders are substituted; environment
 *      overrides replace tree values (config_layer.c);
 *   3. the tree is walked against the schema: unknown keys (with a
 *      suggestion), types, ranges and cross-field rules, filling struct
 *      config and, for --dump-config, a tree of rendered values with their
 *      origin (config_schema.c, config_addr.c, config_service.c,
 *      config_dump.c);
 *   4. a valid configuration is checked for values that do not make sense
 *      together, which are warnings (config_check.c).
 * Every error is collected (not only the first), then sorted by file and
 * position. Top-level `x-*` keys are ignored (a home for anchors, as in
 * docker-compose). The struct config owns plain malloc'd copies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    cfg_listen_clear(&cfg->listen);
    cfg_listen_clear(&cfg->admin_listen);
    free(cfg->admin_token);
    for (size_t i = 0; i < cfg->n_include; i++)
        free(cfg->include[i]);
    free(cfg->include);
    free(cfg->access_log);
    for (size_t i = 0; i < cfg->n_profiles; i++)
        free(cfg->profiles[i]);
    free(cfg->profiles);
    for (size_t i = 0; i < cfg->n_services; i++)
        cfg_service_free(&cfg->services[i]);
    free(cfg->services);
    for (size_t i = 0; i < cfg->n_files; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg);
}

void config_messages_free(struct config_messages *msgs)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < msgs->n_errors; i++)
        free(msgs->errors[i]);
    free(msgs->errors);
    for (size_t i = 0; i < msgs->n_warnings; i++)
        free(msgs->warnings[i]);
    free(msgs->warnings);
    memset(msgs, 0, sizeof(*msgs));
}

const struct service_conf *config_find_service(const struct config *cfg, const char *name,
                                               size_t len)
{
    if (!cfg || !name)
        return NULL;
    for (size_t i = 0; i < cfg->n_services; i++) {
        const char *s = cfg->services[i].name;
        if (strlen(s) == len && memcmp(s, name, len) == 0)
            return &cfg->services[i];
    }
    return NULL;
}

static int run(const struct config_options *opts, struct config_messages *msgs, FILE *dump_out,
               struct config **cfg_out)
{
    struct ctx c;
    memset(&c, 0, sizeof c);
    memset(msgs, 0, sizeof(*msgs));
    c.opts = opts;
    if (cfg_out)
        *cfg_out = NULL;
    const char *path = opts->path ? opts->path : SYSCONFDIR "/ahoyd/ahoyd.yaml";
    struct config_options o = *opts;
    o.path = path;
    c.opts = &o;
    const char *slash = strrchr(path, '/');
    c.dir = slash ? arena_strndup(&c.a, path, (size_t)(slash - path + 1)) : "";

    struct node *main_tree = cfg_load_file(&c, path);
    struct src top = {c.files[0], 0, 1, 1, NULL};
    c.root = main_tree ? main_tree : node_new(&c, N_MAP, &top);

    struct items inc, prof;
    const char *inc_prov, *prof_prov;
    cfg_step0(&c, &inc, &inc_prov, &prof, &prof_prov);
    cfg_load_includes(&c, &inc);
    cfg_load_profiles(&c, &prof);
    cfg_resolve_tree(&c, c.root, NULL);
    cfg_apply_env(&c);

    struct config *cfg = xcalloc(1, sizeof(*cfg));
    cfg->path = xstrdup(path);
    cfg->files = xcalloc(c.n_files + 1, sizeof(char *));
    for (size_t i = 0; i < c.n_files; i++)
        cfg->files[cfg->n_files++] = xstrdup(c.files[i]);
    struct dnode dump_root = {0};
    if (dump_out)
        c.dump = &dump_root;
    c.cfg = cfg;
    c.inc = &inc;
    c.prof = &prof;
    c.inc_prov = inc_prov;
    c.prof_prov = prof_prov;
    cfg_convert(&c);
    if (c.errors.n == 0)
        cfg_check_consistency(&c); /* on valid values only */

    int rc = c.errors.n > 0 ? 1 : 0;
    if (rc == 0 && dump_out) {
        fprintf(dump_out, "# ahoyd effective configuration, from %s\n", path);
        fprintf(dump_out, "# each value is followed by where it came from\n");
        dump_print(dump_out, &dump_root, 0, false);
    }
    cfg_take_messages(&c.errors, &msgs->errors, &msgs->n_errors);
    cfg_take_messages(&c.warnings, &msgs->warnings, &msgs->n_warnings);
    for (size_t i = 0; i < c.n_files; i++)
        free(c.real_paths[i]);
    free(c.real_paths);
    free(c.files);
    arena_free(&c.a);
    if (rc == 0 && cfg_out)
        *cfg_out = cfg;
    else
        config_free(cfg);
    return rc;
}

struct config *config_load(const struct config_options *opts, struct config_messages *msgs)
{
    struct config *cfg = NULL;
    run(opts, msgs, NULL, &cfg);
    return cfg;
}

int config_dump(const struct config_options *opts, FILE *out, struct config_messages *msgs)
{
    return run(opts, msgs, out, NULL);
}

bool config_endpoint_parse(const char *url, int weight, struct endpoint_conf *out,
                           const char **why)
{
    if (!cfg_parse_url(url, out, why))
        return false;
    out->weight = weight < 1 ? 1 : weight;
    return true;
}

void config_endpoint_clear(struct endpoint_conf *e)
{
    cfg_endpoint_clear(e);
}
