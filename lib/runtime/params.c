/* Parameter lookup: overrides -> user database -> built-in database -> family defaults. */
#define MCL_EXPERIMENTAL
#include "params.h"

#include "binary_cache.h"
#include "error.h"
#include "tuning_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mcl_override {
    mcl_override *next;
    const mcl_family *family;
    mcl_param_block block;
};

static int param_index(const mcl_family *family, const char *name, size_t len)
{
    for (size_t i = 0; i < family->param_count; i++)
        if (strlen(family->params[i].name) == len && strncmp(family->params[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

static int is_legal(const mcl_param_decl *decl, int value)
{
    for (size_t i = 0; i < decl->legal_count; i++)
        if (decl->legal[i] == value) return 1;
    return 0;
}

mcl_status mcl_params_parse(const mcl_family *family, const char *assignments, void *values)
{
    const char *p = assignments ? assignments : "";
    while (*p) {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end)
            return mcl_fail(MCL_ERR_PARSE, "%s parameters: '%.*s' is not NAME=VALUE", family->name,
                            (int)(end - p), p);
        int index = param_index(family, p, (size_t)(eq - p));
        if (index < 0)
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s has no parameter '%.*s'", family->name,
                            (int)(eq - p), p);
        char *stop;
        long value = strtol(eq + 1, &stop, 10);
        if (stop != end || eq + 1 == end)
            return mcl_fail(MCL_ERR_PARSE, "%s parameter %s: '%.*s' is not an integer",
                            family->name, family->params[index].name, (int)(end - eq - 1), eq + 1);
        if (!is_legal(&family->params[index], (int)value))
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s parameter %s=%ld is not a legal value",
                            family->name, family->params[index].name, value);
        mcl_param_set(family, values, (size_t)index, (int)value);
        p = *end ? end + 1 : end;
    }
    return MCL_OK;
}

/* Why the values are not legal on the device, NULL when they are. */
static const char *why_illegal(const mcl_family *family, const void *values, const mcl_device_info *device)
{
    if (family->work_group) {
        int index = param_index(family, family->work_group, strlen(family->work_group));
        if (index < 0) return "the declared work-group parameter is not one of the family's";
        if ((size_t)mcl_param_get(family, values, (size_t)index) > device->max_work_group_size)
            return "the work-group size exceeds the device's";
    }
    return family->check ? family->check(values, device) : NULL;
}

mcl_status mcl_params_check(const mcl_family *family, const void *values, const mcl_device_info *device)
{
    const char *why = why_illegal(family, values, device);
    return why ? mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s parameters not legal on %s: %s",
                          family->name, device->name, why)
               : MCL_OK;
}

static void set_defaults(const mcl_family *family, void *values)
{
    for (size_t i = 0; i < family->param_count; i++)
        mcl_param_set(family, values, i, family->params[i].default_value);
}

mcl_status mcl_params_defaults(const mcl_family *family, const mcl_device_info *device, void *values,
                               const char **applied)
{
    set_defaults(family, values);
    if (applied) *applied = "";
    const char *why = why_illegal(family, values, device);
    for (const char *const *f = family->fallbacks; why && f && *f; f++) {
        mcl_param_block tried;
        set_defaults(family, &tried);
        if (mcl_params_parse(family, *f, &tried) != MCL_OK || why_illegal(family, &tried, device)) continue;
        memcpy(values, &tried, family->values_size);
        if (applied) *applied = *f;
        return MCL_OK;
    }
    return why ? mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s defaults not legal on %s: %s", family->name,
                          device->name, why)
               : MCL_OK;
}

mcl_status mcl_params_format(const mcl_family *family, const void *values, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < family->param_count; i++) {
        int n = snprintf(out + used, cap - used, "%s%s=%d", i ? "," : "", family->params[i].name,
                         mcl_param_get(family, values, i));
        if (n < 0 || (size_t)n >= cap - used)
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s parameters: %zu bytes do not hold them", family->name,
                            cap);
        used += (size_t)n;
    }
    return MCL_OK;
}

/* ---- databases -------------------------------------------------------------------------- */

static void load_databases(mcl_context *ctx)
{
    if (ctx->dbs_loaded) return;
    ctx->dbs_loaded = 1;
    const char *path = getenv("MEGACL_TUNING_DB");
    char fallback[1100];
    if (!path || !*path) {
        char root[1024];
        mcl_cache_root(root, sizeof root);
        snprintf(fallback, sizeof fallback, "%s/tuning.json", root);
        path = fallback;
    }
    ctx->user_db = mcl_tuning_db_load(path);
    if (mcl_tuning_db_parse(mcl_builtin_tuning_json, "built-in tuning database",
                            &ctx->builtin_db) != MCL_OK)
        mcl_log(MCL_LOG_WARN, "%s", mcl_last_error());
}

typedef struct accept_arg {
    const mcl_family *family;
    const mcl_device_info *device;
    void *values;
} accept_arg;

/* Accepts a database entry whose parameters parse and are legal here; fills values. */
static int accept_entry(const mcl_db_entry *entry, void *opaque)
{
    accept_arg *arg = opaque;
    mcl_param_block values;
    mcl_params_defaults(arg->family, arg->device, &values, NULL);
    if (mcl_params_parse(arg->family, entry->params, &values) != MCL_OK ||
        mcl_params_check(arg->family, &values, arg->device) != MCL_OK) {
        mcl_log(MCL_LOG_WARN, "tuning entry for %s skipped: %s", entry->family, mcl_last_error());
        return 0;
    }
    memcpy(arg->values, &values, arg->family->values_size);
    return 1;
}

static int lookup_db(const mcl_tuning_db *db, const mcl_family *family, const mcl_device_info *device,
                     mcl_dtype dtype, const char *bucket, void *values, char *origin)
{
    static const char *const level_names[] = {"device", "arch", "vendor", "any device"};
    accept_arg arg = {family, device, values};
    for (int level = 0; level < MCL_DB_LEVELS; level++) {
        if (mcl_tuning_db_find(db, family->name, device, dtype, bucket, (mcl_db_level)level, accept_entry, &arg)) {
            if (origin) snprintf(origin, MCL_ORIGIN_CAP, "%.100s (%s)", db->origin, level_names[level]);
            return 1;
        }
    }
    return 0;
}

mcl_status mcl_params_lookup(mcl_context *ctx, const mcl_family *family, mcl_dtype dtype, const size_t *shape,
                             void *values, char *origin)
{
    for (mcl_override *o = ctx->overrides; o; o = o->next) {
        if (o->family == family) {
            memcpy(values, &o->block, family->values_size);
            if (origin) snprintf(origin, MCL_ORIGIN_CAP, "override");
            return MCL_OK;
        }
    }
    char bucket[64];
    family->bucket(shape, bucket, sizeof bucket);
    load_databases(ctx);
    if (lookup_db(ctx->user_db, family, &ctx->device.info, dtype, bucket, values, origin) ||
        lookup_db(ctx->builtin_db, family, &ctx->device.info, dtype, bucket, values, origin))
        return MCL_OK;
    /* the defaults, or a fallback a small device accepts; one that accepts none is told plainly */
    const char *applied;
    MCL_TRY(mcl_params_defaults(family, &ctx->device.info, values, &applied));
    if (origin) snprintf(origin, MCL_ORIGIN_CAP, *applied ? "defaults with %.100s" : "defaults", applied);
    return MCL_OK;
}

void mcl_params_release(mcl_context *ctx)
{
    while (ctx->overrides) {
        mcl_override *o = ctx->overrides;
        ctx->overrides = o->next;
        free(o);
    }
    mcl_tuning_db_free(ctx->user_db);
    mcl_tuning_db_free(ctx->builtin_db);
    ctx->user_db = ctx->builtin_db = NULL;
    ctx->dbs_loaded = 0;
}

/* ---- experimental public API ------------------------------------------------------------ */

static mcl_status find_family(const char *name, const char *what, const mcl_family **out)
{
    *out = mcl_family_find(name);
    return *out ? MCL_OK : mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no kernel family '%s'", what, name);
}

mcl_status mcl_context_set_params(mcl_context *ctx, const char *family_name, const char *assignments)
{
    if (!ctx || !family_name) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_set_params: NULL argument");
    const mcl_family *family;
    MCL_TRY(find_family(family_name, "mcl_context_set_params", &family));
    mcl_override **link = &ctx->overrides;
    while (*link && (*link)->family != family) link = &(*link)->next;
    if (!assignments) { /* clear */
        mcl_override *gone = *link;
        if (gone) *link = gone->next;
        free(gone);
        return MCL_OK;
    }
    mcl_param_block values;
    mcl_params_defaults(family, &ctx->device.info, &values, NULL); /* what is not assigned */
    MCL_TRY(mcl_params_parse(family, assignments, &values));
    MCL_TRY(mcl_params_check(family, &values, &ctx->device.info));
    if (!*link) {
        *link = calloc(1, sizeof **link);
        if (!*link) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "storing parameter overrides");
        (*link)->family = family;
    }
    (*link)->block = values;
    return MCL_OK;
}

mcl_status mcl_context_get_params(mcl_context *ctx, const char *family_name, mcl_dtype dtype, const size_t *shape,
                                  size_t shape_rank, mcl_param_choice *choice)
{
    if (!ctx || !family_name || !shape || !choice)
        return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_get_params: NULL argument");
    const mcl_family *family;
    MCL_TRY(find_family(family_name, "mcl_context_get_params", &family));
    if (shape_rank != family->shape_rank)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "mcl_context_get_params: %s takes a shape of %zu sizes (%s), not %zu",
                        family->name, family->shape_rank, family->shape_names, shape_rank);
    if (mcl_dtype_size(dtype) == 0)
        return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "mcl_context_get_params: dtype %d is not f32, bf16 or f16",
                        (int)dtype);
    mcl_param_block values;
    char origin[MCL_ORIGIN_CAP];
    MCL_TRY(mcl_params_lookup(ctx, family, dtype, shape, &values, origin));
    MCL_TRY(mcl_params_format(family, &values, choice->values, sizeof choice->values));
    snprintf(choice->origin, sizeof choice->origin, "%s", origin);
    return MCL_OK;
}
