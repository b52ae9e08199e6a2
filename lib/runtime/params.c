/* Parameter lookup: overrides -> user database -> built-in database -> family defaults. */
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
    int dtype;       /* an mcl_dtype, or -1 for every dtype */
    char bucket[64]; /* "" for every bucket */
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

const char *mcl_params_why_illegal(const mcl_family *family, const void *values, const mcl_device_info *device)
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
    const char *why = mcl_params_why_illegal(family, values, device);
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
    const char *why = mcl_params_why_illegal(family, values, device);
    for (const char *const *f = family->fallbacks; why && f && *f; f++) {
        mcl_param_block tried;
        set_defaults(family, &tried);
        if (mcl_params_parse(family, *f, &tried) != MCL_OK || mcl_params_why_illegal(family, &tried, device)) continue;
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
    char path[1100];
    if (mcl_tuning_db_path(path, sizeof path) == MCL_OK) ctx->user_db = mcl_tuning_db_load(path);
    if (mcl_tuning_db_parse(mcl_builtin_tuning_json, "built-in tuning database", &ctx->builtin_db) != MCL_OK)
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

/* The most specific override for (family, dtype, bucket): bucket and dtype both named beat a
 * bucket alone, which beats a family-wide one. */
static const mcl_override *find_override(const mcl_context *ctx, const mcl_family *family, mcl_dtype dtype,
                                         const char *bucket)
{
    const mcl_override *best = NULL;
    int best_score = -1;
    for (const mcl_override *o = ctx->overrides; o; o = o->next) {
        if (o->family != family || (o->dtype >= 0 && o->dtype != (int)dtype) ||
            (o->bucket[0] && strcmp(o->bucket, bucket) != 0))
            continue;
        int score = 2 * (o->bucket[0] != '\0') + (o->dtype >= 0);
        if (score > best_score) best = o, best_score = score;
    }
    return best;
}

static void record_lookup(mcl_context *ctx, const mcl_family *family, mcl_dtype dtype, const char *bucket,
                          const size_t *shape)
{
    for (size_t i = 0; i < ctx->lookup_count; i++) {
        const mcl_lookup_record *r = &ctx->lookups[i];
        if (r->family == family && r->dtype == dtype && strcmp(r->bucket, bucket) == 0) return;
    }
    if (ctx->lookup_count == ctx->lookup_capacity) {
        size_t capacity = ctx->lookup_capacity ? 2 * ctx->lookup_capacity : 8;
        mcl_lookup_record *grown = realloc(ctx->lookups, capacity * sizeof *grown);
        if (!grown) return; /* a trace that misses an entry only tunes less */
        ctx->lookups = grown;
        ctx->lookup_capacity = capacity;
    }
    mcl_lookup_record *r = &ctx->lookups[ctx->lookup_count++];
    memset(r, 0, sizeof *r);
    r->family = family, r->dtype = dtype;
    snprintf(r->bucket, sizeof r->bucket, "%s", bucket);
    for (size_t i = 0; i < family->shape_rank && i < MCL_COUNT(r->shape); i++) r->shape[i] = shape[i];
}

void mcl_params_bucket(const mcl_family *family, const size_t *shape, char out[MCL_BUCKET_CAP])
{
    family->bucket(shape, out, MCL_BUCKET_CAP);
}

mcl_status mcl_params_lookup(mcl_context *ctx, const mcl_family *family, mcl_dtype dtype, const size_t *shape,
                             void *values, char *origin)
{
    char bucket[MCL_BUCKET_CAP];
    mcl_params_bucket(family, shape, bucket);
    if (ctx->trace_lookups) record_lookup(ctx, family, dtype, bucket, shape);
    const mcl_override *o = find_override(ctx, family, dtype, bucket);
    if (o) {
        memcpy(values, &o->block, family->values_size);
        if (origin) snprintf(origin, MCL_ORIGIN_CAP, "override");
        return MCL_OK;
    }
    if (ctx->tune_mode != MCL_TUNE_MODE_OFF) {
        load_databases(ctx);
        if (lookup_db(ctx->user_db, family, &ctx->device.info, dtype, bucket, values, origin) ||
            lookup_db(ctx->builtin_db, family, &ctx->device.info, dtype, bucket, values, origin))
            return MCL_OK;
    }
    /* the defaults, or a fallback a small device accepts; one that accepts none is told plainly */
    const char *applied;
    MCL_TRY(mcl_params_defaults(family, &ctx->device.info, values, &applied));
    if (origin) snprintf(origin, MCL_ORIGIN_CAP, *applied ? "defaults with %.100s" : "defaults", applied);
    return MCL_OK;
}

mcl_status mcl_params_override(mcl_context *ctx, const mcl_family *family, int dtype, const char *bucket,
                               const void *values)
{
    const char *key = bucket ? bucket : "";
    mcl_override **link = &ctx->overrides;
    while (*link && !((*link)->family == family && (*link)->dtype == dtype && strcmp((*link)->bucket, key) == 0))
        link = &(*link)->next;
    if (!values) { /* clear */
        mcl_override *gone = *link;
        if (gone) *link = gone->next;
        free(gone);
        return MCL_OK;
    }
    if (!*link) {
        *link = calloc(1, sizeof **link);
        if (!*link) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "storing parameter overrides");
        (*link)->family = family;
        (*link)->dtype = dtype;
        snprintf((*link)->bucket, sizeof (*link)->bucket, "%s", key);
    }
    memcpy(&(*link)->block, values, family->values_size);
    return MCL_OK;
}

mcl_status mcl_params_configure(mcl_context *ctx)
{
    const char *mode = getenv("MEGACL_TUNE");
    if (!mode || !*mode || strcmp(mode, "on") == 0) ctx->tune_mode = MCL_TUNE_MODE_DATABASES;
    else if (strcmp(mode, "off") == 0) ctx->tune_mode = MCL_TUNE_MODE_OFF;
    else if (strcmp(mode, "ondemand") == 0) ctx->tune_mode = MCL_TUNE_MODE_ONDEMAND;
    else
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "MEGACL_TUNE='%s' is not on, off or ondemand", mode);
    return MCL_OK;
}

void mcl_params_reload(mcl_context *ctx)
{
    mcl_tuning_db_free(ctx->user_db);
    mcl_tuning_db_free(ctx->builtin_db);
    ctx->user_db = ctx->builtin_db = NULL;
    ctx->dbs_loaded = 0;
}

void mcl_params_release(mcl_context *ctx)
{
    while (ctx->overrides) {
        mcl_override *o = ctx->overrides;
        ctx->overrides = o->next;
        free(o);
    }
    mcl_params_reload(ctx);
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
    if (!assignments) return mcl_params_override(ctx, family, -1, NULL, NULL);
    mcl_param_block values;
    mcl_params_defaults(family, &ctx->device.info, &values, NULL); /* what is not assigned */
    MCL_TRY(mcl_params_parse(family, assignments, &values));
    MCL_TRY(mcl_params_check(family, &values, &ctx->device.info));
    return mcl_params_override(ctx, family, -1, NULL, &values);
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

mcl_status mcl_context_trace_lookups(mcl_context *ctx, int on)
{
    if (!ctx) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_trace_lookups: context is NULL");
    ctx->trace_lookups = on != 0;
    if (on) ctx->lookup_count = 0;
    return MCL_OK;
}

size_t mcl_context_lookup_count(const mcl_context *ctx) { return ctx ? ctx->lookup_count : 0; }

mcl_status mcl_context_lookup(const mcl_context *ctx, size_t index, mcl_lookup_info *info)
{
    if (!ctx || !info) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_lookup: NULL argument");
    if (index >= ctx->lookup_count)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_context_lookup: lookup %zu of %zu", index, ctx->lookup_count);
    const mcl_lookup_record *r = &ctx->lookups[index];
    memset(info, 0, sizeof *info);
    info->family = r->family->name;
    info->dtype = r->dtype;
    snprintf(info->bucket, sizeof info->bucket, "%s", r->bucket);
    info->shape_rank = r->family->shape_rank;
    memcpy(info->shape, r->shape, sizeof info->shape);
    return MCL_OK;
}

mcl_status mcl_context_reload_tuning(mcl_context *ctx)
{
    if (!ctx) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_reload_tuning: context is NULL");
    mcl_params_reload(ctx);
    return MCL_OK;
}

/* The i-th entry of the device's (user database first, each level from the most specific),
 * or NULL; *db and *level say where it is. */
static const mcl_db_entry *device_entry(mcl_context *ctx, size_t index, const mcl_tuning_db **db, int *level)
{
    load_databases(ctx);
    const mcl_tuning_db *dbs[2] = {ctx->user_db, ctx->builtin_db};
    for (int d = 0; d < 2; d++) {
        for (int l = 0; l < MCL_DB_LEVELS; l++) {
            const char *key = mcl_db_level_key(&ctx->device.info, (mcl_db_level)l);
            for (size_t i = 0; dbs[d] && i < dbs[d]->count; i++) {
                const mcl_db_entry *e = &dbs[d]->entries[i];
                if ((int)e->level != l || strcmp(e->key, key) != 0 || !mcl_family_find(e->family)) continue;
                if (index-- == 0) {
                    *db = dbs[d], *level = l;
                    return e;
                }
            }
        }
    }
    return NULL;
}

size_t mcl_context_tuning_entry_count(mcl_context *ctx)
{
    size_t n = 0;
    const mcl_tuning_db *db;
    int level;
    while (ctx && device_entry(ctx, n, &db, &level)) n++;
    return n;
}

/* Whether a lookup of the entry's family, dtype and bucket takes this entry. */
static int entry_in_use(mcl_context *ctx, const mcl_db_entry *entry)
{
    const mcl_tuning_db *dbs[2] = {ctx->user_db, ctx->builtin_db};
    const mcl_family *family = mcl_family_find(entry->family);
    mcl_dtype dtype = entry->dtype < 0 ? MCL_F32 : (mcl_dtype)entry->dtype;
    mcl_param_block scratch;
    accept_arg legal = {family, &ctx->device.info, &scratch};
    for (int d = 0; d < 2; d++) {
        for (int l = 0; l < MCL_DB_LEVELS; l++) {
            const mcl_db_entry *chosen = mcl_tuning_db_find(dbs[d], family->name, &ctx->device.info, dtype,
                                                            entry->bucket, (mcl_db_level)l, accept_entry, &legal);
            if (chosen) return chosen == entry;
        }
    }
    return 0;
}

mcl_status mcl_context_tuning_entry(mcl_context *ctx, size_t index, mcl_tuning_entry_info *info)
{
    if (!ctx || !info) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_tuning_entry: NULL argument");
    const mcl_tuning_db *db;
    int level;
    const mcl_db_entry *e = device_entry(ctx, index, &db, &level);
    if (!e) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_context_tuning_entry: no entry %zu", index);
    static const char *const level_names[] = {"device", "arch", "vendor", "any device"};
    memset(info, 0, sizeof *info);
    snprintf(info->origin, sizeof info->origin, "%.255s", db->origin);
    snprintf(info->level, sizeof info->level, "%s", level_names[level]);
    snprintf(info->family, sizeof info->family, "%s", e->family);
    snprintf(info->dtype, sizeof info->dtype, "%s", e->dtype < 0 ? "*" : mcl_dtype_name((mcl_dtype)e->dtype));
    snprintf(info->bucket, sizeof info->bucket, "%s", e->bucket);
    snprintf(info->params, sizeof info->params, "%s", e->params);
    snprintf(info->measured_on, sizeof info->measured_on, "%s", e->measured_on);
    snprintf(info->command, sizeof info->command, "%s", e->command);
    info->ms = e->ms, info->default_ms = e->default_ms;
    info->in_use = entry_in_use(ctx, e);
    return MCL_OK;
}
