/* Tuning database files: parsing (json-c) and matching (see tuning_db.h). */
#include "tuning_db.h"

#include "binary_cache.h"
#include "error.h"
#include "files.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static double number_field(struct json_object *obj, const char *name)
{
    struct json_object *field;
    if (!json_object_object_get_ex(obj, name, &field) ||
        !(json_object_is_type(field, json_type_double) || json_object_is_type(field, json_type_int)))
        return NAN;
    return json_object_get_double(field);
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

    const char *command = string_field(obj, "command"), *measured_on = string_field(obj, "measured_on");
    snprintf(entry->command, sizeof entry->command, "%s", command ? command : "");
    snprintf(entry->measured_on, sizeof entry->measured_on, "%s", measured_on ? measured_on : "");
    entry->ms = number_field(obj, "ms");
    entry->default_ms = number_field(obj, "default_ms");

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

/* The root object of a database of this library's format, or NULL with the reason. */
static struct json_object *parse_root(const char *text, const char *origin, struct json_object **entries)
{
    struct json_object *root = json_tokener_parse(text), *format = NULL;
    if (!root || !json_object_object_get_ex(root, "entries", entries) ||
        !json_object_is_type(*entries, json_type_array)) {
        json_object_put(root);
        mcl_fail(MCL_ERR_PARSE, "%s: not a tuning database (want {\"format\": %d, \"entries\": [...]}), or truncated",
                 origin, MCL_TUNING_DB_FORMAT);
        return NULL;
    }
    if (!json_object_object_get_ex(root, "format", &format) || !json_object_is_type(format, json_type_int) ||
        json_object_get_int(format) != MCL_TUNING_DB_FORMAT) {
        mcl_fail(MCL_ERR_PARSE, "%s: tuning database format %s; this library reads format %d", origin,
                 format ? json_object_to_json_string(format) : "missing", MCL_TUNING_DB_FORMAT);
        json_object_put(root);
        return NULL;
    }
    return root;
}

mcl_status mcl_tuning_db_parse(const char *text, const char *origin, mcl_tuning_db **out)
{
    *out = NULL;
    struct json_object *entries = NULL, *root = parse_root(text, origin, &entries);
    if (!root) return MCL_ERR_PARSE;
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
    char *text = mcl_read_text(path, NULL);
    if (!text) {
        if (errno != ENOENT) mcl_log(MCL_LOG_WARN, "ignoring tuning database %s: %s", path, strerror(errno));
        return NULL;
    }
    mcl_tuning_db *db = NULL;
    if (mcl_tuning_db_parse(text, path, &db) != MCL_OK)
        mcl_log(MCL_LOG_WARN, "ignoring tuning database: %s", mcl_last_error());
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

mcl_status mcl_tuning_db_path(char *out, size_t capacity)
{
    if (!out || !capacity) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_tuning_db_path: no room given");
    const char *path = getenv("MEGACL_TUNING_DB");
    char root[1024];
    int n;
    if (path && *path) {
        n = snprintf(out, capacity, "%s", path);
    } else {
        mcl_cache_root(root, sizeof root);
        n = snprintf(out, capacity, "%s/tuning.json", root);
    }
    return n >= 0 && (size_t)n < capacity
               ? MCL_OK
               : mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_tuning_db_path: the path needs more than %zu bytes", capacity);
}

/* The database at path as JSON to change: its root, a new one where the file does not exist. */
static mcl_status open_for_update(const char *path, struct json_object **root, struct json_object **entries)
{
    char *text = mcl_read_text(path, NULL);
    if (!text && errno != ENOENT)
        return mcl_fail(MCL_ERR_IO, "tuning database %s cannot be read: %s", path, strerror(errno));
    if (!text) {
        *root = json_object_new_object();
        *entries = json_object_new_array();
        json_object_object_add(*root, "format", json_object_new_int(MCL_TUNING_DB_FORMAT));
        json_object_object_add(*root, "entries", *entries);
        return MCL_OK;
    }
    *root = parse_root(text, path, entries);
    free(text);
    if (*root) return MCL_OK;
    char why[512];
    snprintf(why, sizeof why, "%s", mcl_last_error());
    return mcl_fail(MCL_ERR_PARSE, "%s; not overwriting it (move it aside to start a new one)", why);
}

static int same_entry(struct json_object *e, const mcl_tuning_entry *entry, const char *level_field,
                      const char *key)
{
    const char *family = string_field(e, "family"), *k = string_field(e, level_field);
    const char *dtype = string_field(e, "dtype"), *bucket = string_field(e, "bucket");
    return family && k && dtype && bucket && strcmp(family, entry->family) == 0 && strcmp(k, key) == 0 &&
           strcmp(dtype, mcl_dtype_name(entry->dtype)) == 0 && strcmp(bucket, entry->bucket) == 0;
}

static struct json_object *params_object(const char *params)
{
    struct json_object *o = json_object_new_object();
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", params);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) continue;
        *eq = '\0';
        json_object_object_add(o, item, json_object_new_int(atoi(eq + 1)));
    }
    return o;
}

static struct json_object *entry_object(const mcl_device_info *device, const mcl_tuning_entry *entry,
                                        const char *level_field, const char *key)
{
    struct json_object *e = json_object_new_object();
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    json_object_object_add(e, "family", json_object_new_string(entry->family));
    json_object_object_add(e, level_field, json_object_new_string(key));
    json_object_object_add(e, "dtype", json_object_new_string(mcl_dtype_name(entry->dtype)));
    json_object_object_add(e, "bucket", json_object_new_string(entry->bucket));
    json_object_object_add(e, "params", params_object(entry->params));
    json_object_object_add(e, "ms", json_object_new_double(entry->ms));
    json_object_object_add(e, "default_ms", json_object_new_double(entry->default_ms));
    json_object_object_add(e, "measured_on", json_object_new_string(device->name));
    json_object_object_add(e, "driver", json_object_new_string(device->driver_version));
    json_object_object_add(e, "megacl", json_object_new_string(mcl_version_string()));
    json_object_object_add(e, "date", json_object_new_string(date));
    json_object_object_add(e, "command", json_object_new_string(entry->command ? entry->command : ""));
    return e;
}

mcl_status mcl_tuning_db_store(const char *path, const mcl_device_info *device, const mcl_tuning_entry *entry)
{
    if (!device || !entry || !entry->family || !entry->bucket || !entry->params)
        return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_tuning_db_store: NULL argument");
    if ((int)entry->level < MCL_TUNE_DEVICE || entry->level > MCL_TUNE_VENDOR || !mcl_dtype_size(entry->dtype))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_tuning_db_store: level %d or dtype %d is not one",
                        (int)entry->level, (int)entry->dtype);
    char user_path[1100];
    if (!path) {
        MCL_TRY(mcl_tuning_db_path(user_path, sizeof user_path));
        path = user_path;
    }
    struct json_object *root, *entries;
    MCL_TRY(open_for_update(path, &root, &entries));
    const char *level_field = level_fields[entry->level];
    const char *key = mcl_db_level_key(device, (mcl_db_level)entry->level);
    struct json_object *kept = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *e = json_object_array_get_idx(entries, i);
        if (!same_entry(e, entry, level_field, key)) json_object_array_add(kept, json_object_get(e));
    }
    json_object_array_add(kept, entry_object(device, entry, level_field, key));
    json_object_object_add(root, "entries", kept);
    const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    const void *parts[2] = {text, "\n"};
    const size_t sizes[2] = {strlen(text), 1};
    mcl_status status = mcl_write_atomic(path, parts, sizes, 2) == 0
                            ? MCL_OK
                            : mcl_fail(MCL_ERR_IO, "writing tuning database %s: %s", path, strerror(errno));
    json_object_put(root);
    return status;
}
