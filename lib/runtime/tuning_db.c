/* Tuning database files: parsing (json-c) and matching (see tuning_db.h). */
#include "tuning_db.h"

#include "error.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const level_fields[MCL_DB_LEVELS] = {"device", "arch", "vendor", NULL};

static int parse_dtype(const char *name)
{
    for (int d = MCL_F32; d <= MCL_F16; d++)
        if (strcmp(name, mcl_dtype_name((mcl_dtype)d)) == 0) return d;
    return -2;
}

static const char *string_field(struct json_object *obj, const char *name)
{
    struct json_object *field;
    if (!json_object_object_get_ex(obj, name, &field) || !json_object_is_type(field, json_type_string))
        return NULL;
    return json_object_get_string(field);
}

/* Fills `entry` from one JSON object; returns the reason it is malformed, or NULL. */
static const char *parse_entry(struct json_object *obj, mcl_db_entry *entry)
{
    memset(entry, 0, sizeof *entry);
    const char *family = string_field(obj, "family");
    if (!family) return "no \"family\"";
    snprintf(entry->family, sizeof entry->family, "%s", family);
    entry->level = MCL_DB_ANY;
    for (int level = 0; level < MCL_DB_ANY; level++) {
        const char *key = string_field(obj, level_fields[level]);
        if (!key) continue;
        if (entry->level != MCL_DB_ANY) return "more than one of \"device\", \"arch\", \"vendor\"";
        entry->level = (mcl_db_level)level;
        snprintf(entry->key, sizeof entry->key, "%s", key);
    }
    const char *dtype = string_field(obj, "dtype");
    entry->dtype = dtype && strcmp(dtype, "*") != 0 ? parse_dtype(dtype) : -1;
    if (entry->dtype == -2) return "unknown \"dtype\"";
    const char *bucket = string_field(obj, "bucket");
    if (bucket && strcmp(bucket, "*") != 0) snprintf(entry->bucket, sizeof entry->bucket, "%s", bucket);

    struct json_object *params;
    if (!json_object_object_get_ex(obj, "params", &params) ||
        !json_object_is_type(params, json_type_object))
        return "no \"params\" object";
    size_t used = 0;
    json_object_object_foreach(params, name, value)
    {
        if (!json_object_is_type(value, json_type_int)) return "a parameter value is not an integer";
        used += snprintf(entry->params + used, sizeof entry->params - used, "%s%s=%d",
                         used ? "," : "", name, json_object_get_int(value));
        if (used >= sizeof entry->params) return "too many parameters";
    }
    return NULL;
}

mcl_status mcl_tuning_db_parse(const char *text, const char *origin, mcl_tuning_db **out)
{
    *out = NULL;
    struct json_object *root = json_tokener_parse(text);
    struct json_object *entries = NULL;
    if (!root || !json_object_object_get_ex(root, "entries", &entries) ||
        !json_object_is_type(entries, json_type_array)) {
        json_object_put(root);
        return mcl_fail(MCL_ERR_PARSE, "%s: not a tuning database (want {\"entries\": [...]})",
                        origin);
    }
    mcl_tuning_db *db = calloc(1, sizeof *db);
    size_t n = json_object_array_length(entries);
    if (db) db->entries = calloc(n ? n : 1, sizeof *db->entries);
    if (!db || !db->entries) {
        free(db);
        json_object_put(root);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "loading %s", origin);
    }
    snprintf(db->origin, sizeof db->origin, "%s", origin);
    for (size_t i = 0; i < n; i++) {
        const char *why = parse_entry(json_object_array_get_idx(entries, i), &db->entries[db->count]);
        if (why)
            mcl_log(MCL_LOG_WARN, "%s: entry %zu skipped: %s", origin, i, why);
        else
            db->count++;
    }
    json_object_put(root);
    *out = db;
    return MCL_OK;
}

mcl_tuning_db *mcl_tuning_db_load(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *text = NULL;
    long size = -1;
    if (fseek(file, 0, SEEK_END) == 0 && (size = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0)
        text = malloc((size_t)size + 1);
    int ok = text && fread(text, 1, (size_t)size, file) == (size_t)size;
    fclose(file);
    mcl_tuning_db *db = NULL;
    if (ok) {
        text[size] = '\0';
        if (mcl_tuning_db_parse(text, path, &db) != MCL_OK)
            mcl_log(MCL_LOG_WARN, "ignoring tuning database: %s", mcl_last_error());
    } else {
        mcl_log(MCL_LOG_WARN, "ignoring tuning database %s: cannot read it", path);
    }
    free(text);
    return db;
}

void mcl_tuning_db_free(mcl_tuning_db *db)
{
    if (!db) return;
    free(db->entries);
    free(db);
}

const char *mcl_db_level_key(const mcl_device_info *device, mcl_db_level level)
{
    switch (level) {
    case MCL_DB_DEVICE: return device->name;
    case MCL_DB_ARCH: return device->arch;
    case MCL_DB_VENDOR: return mcl_vendor_name(device->vendor);
    default: return "";
    }
}

const mcl_db_entry *mcl_tuning_db_find(const mcl_tuning_db *db, const char *family,
                                       const mcl_device_info *device, mcl_dtype dtype,
                                       const char *bucket, mcl_db_level level,
                                       int (*accept)(const mcl_db_entry *, void *), void *arg)
{
    if (!db) return NULL;
    const char *key = mcl_db_level_key(device, level);
    const mcl_db_entry *best = NULL;
    int best_score = -1;
    for (size_t i = 0; i < db->count; i++) {
        const mcl_db_entry *e = &db->entries[i];
        if (e->level != level || strcmp(e->family, family) != 0 || strcmp(e->key, key) != 0)
            continue;
        if (e->dtype != -1 && e->dtype != (int)dtype) continue;
        if (e->bucket[0] && strcmp(e->bucket, bucket) != 0) continue;
        /* exact dtype and exact bucket beat wildcards; the later of equals wins (appended
         * results supersede older ones) */
        int score = (e->dtype != -1) * 2 + (e->bucket[0] != '\0');
        if (score >= best_score && accept(e, arg)) {
            best = e;
            best_score = score;
        }
    }
    return best;
}
