/* The parameter seam: mcl_params_lookup returns the values a family runs with for (device,
 * dtype, shape), from, in order: the context's overrides (tuner, bench, tests), the user tuning
 * database, the built-in database, the family's defaults. In each database: exact device name,
 * then architecture, then vendor, then any device. Values are the family's parameter struct
 * (family.h), read by name. */
#ifndef MCL_RUNTIME_PARAMS_H
#define MCL_RUNTIME_PARAMS_H

#include "context.h"
#include "family.h"

#define MCL_ORIGIN_CAP 128
#define MCL_BUCKET_CAP 64

/* How lookups use the tuning databases (MEGACL_TUNE): on (the default), off (families' defaults
 * only, for comparisons), or ondemand (as on, and a bucket no database covers is tuned the first
 * time an op meets it). */
typedef enum mcl_tune_mode {
    MCL_TUNE_MODE_DATABASES = 0,
    MCL_TUNE_MODE_OFF,
    MCL_TUNE_MODE_ONDEMAND,
} mcl_tune_mode;

/* Reads MEGACL_TUNE into the context; an unknown value is an error naming it. */
mcl_status mcl_params_configure(mcl_context *ctx);

/* The shape bucket of a lookup shape, as database entries and overrides name it. */
void mcl_params_bucket(const mcl_family *family, const size_t *shape, char out[MCL_BUCKET_CAP]);

/* Fixes the family's values for its lookups of `dtype` (-1: every dtype) in `bucket` (NULL:
 * every bucket); NULL values removes that override. */
mcl_status mcl_params_override(mcl_context *ctx, const mcl_family *family, int dtype, const char *bucket,
                               const void *values);

/* Forgets the loaded databases: the next lookup reads them again. */
void mcl_params_reload(mcl_context *ctx);

/* Fills `values` (the family's parameter struct) and, when not NULL, `origin` (MCL_ORIGIN_CAP
 * bytes: where the values came from, for logs and `megacl params`). */
mcl_status mcl_params_lookup(mcl_context *ctx, const mcl_family *family, mcl_dtype dtype, const size_t *shape,
                             void *values, char *origin);

/* "TPR=32,WG=128,..." of every parameter; MCL_ERR_INVALID_ARGUMENT if it does not fit. */
mcl_status mcl_params_format(const mcl_family *family, const void *values, char *out, size_t cap);

/* Applies "NAME=VALUE,NAME=VALUE" on top of `values`; checks names and legal values. */
mcl_status mcl_params_parse(const mcl_family *family, const char *assignments, void *values);

/* Why the values are not legal on the device (the work-group limit, the family's check), NULL
 * when they are; sets no error (the tuner asks this of thousands of candidates). */
const char *mcl_params_why_illegal(const mcl_family *family, const void *values, const mcl_device_info *device);

/* Legal on this device? MCL_OK, or MCL_ERR_INVALID_ARGUMENT with the family's reason. */
mcl_status mcl_params_check(const mcl_family *family, const void *values, const mcl_device_info *device);

/* The family's defaults on this device: the declared ones, or where the device refuses them
 * the first fallback it accepts (MCL_ERR_INVALID_ARGUMENT when it accepts none). `applied`
 * (optional) names the fallback, or is "" for the declared defaults. */
mcl_status mcl_params_defaults(const mcl_family *family, const mcl_device_info *device, void *values,
                               const char **applied);

void mcl_params_release(mcl_context *ctx);

#endif
