/* Tuning databases: JSON files of parameter choices per family, device key, dtype and shape
 * bucket. The user's lives at MEGACL_TUNING_DB (default <cache root>/tuning.json) and is
 * written by `megacl tune`; the built-in one is lib/tune/builtin.json, embedded at build time.
 *
 *   {"format": 1, "entries": [
 *     {"family": "layernorm", "arch": "sm_90", "dtype": "f32", "bucket": "cols<=128",
 *      "params": {"TPR": 32, "WG": 256}, "ms": 0.061, "command": "megacl tune layernorm"}]}
 *
 * An entry names at most one of "device" (exact name), "arch" or "vendor"; none means any
 * device. "dtype" and "bucket" may be omitted or "*" for any. */
#ifndef MCL_RUNTIME_TUNING_DB_H
#define MCL_RUNTIME_TUNING_DB_H

#include "megacl.h"

#define MCL_TUNING_DB_FORMAT 1

typedef enum mcl_db_level {
    MCL_DB_DEVICE = 0,
    MCL_DB_ARCH,
    MCL_DB_VENDOR,
    MCL_DB_ANY,
    MCL_DB_LEVELS
} mcl_db_level;

typedef struct mcl_db_entry {
    char family[32];
    mcl_db_level level;
    char key[128];    /* device name, arch or vendor name; "" at MCL_DB_ANY */
    int dtype;        /* an mcl_dtype, or -1 for any */
    char bucket[64];  /* "" for any */
    char params[256]; /* "NAME=VALUE,..." */
    double ms, default_ms;   /* as measured by the tuner; NaN where not given */
    char measured_on[128];
    char command[256];
} mcl_db_entry;

typedef struct mcl_tuning_db {
    char origin[1024]; /* file path or "built-in" */
    mcl_db_entry *entries;
    size_t count;
} mcl_tuning_db;

/* Parses JSON text; a text that is not a database of MCL_TUNING_DB_FORMAT fails (truncated,
 * corrupt, foreign format), entries that are malformed are skipped with a warning. */
mcl_status mcl_tuning_db_parse(const char *text, const char *origin, mcl_tuning_db **db);

/* Loads a file; a missing file is an empty database, an unreadable or malformed one a warning
 * and an empty database (tuning results must never stop an op from running). */
mcl_tuning_db *mcl_tuning_db_load(const char *path);

void mcl_tuning_db_free(mcl_tuning_db *db);

/* The most specific entry at `level` for (family, device, dtype, bucket), or NULL. Calls
 * `accept` to let the caller reject entries whose parameters are not legal here. */
const mcl_db_entry *mcl_tuning_db_find(const mcl_tuning_db *db, const char *family,
                                       const mcl_device_info *device, mcl_dtype dtype,
                                       const char *bucket, mcl_db_level level,
                                       int (*accept)(const mcl_db_entry *, void *), void *arg);

/* The key an entry of `level` must carry to match the device. */
const char *mcl_db_level_key(const mcl_device_info *device, mcl_db_level level);

/* The text of the built-in database (generated from lib/tune/builtin.json). */
extern const char mcl_builtin_tuning_json[];

#endif
