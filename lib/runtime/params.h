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

/* Fills `values` (the family's parameter struct) and, when not NULL, `origin` (MCL_ORIGIN_CAP
 * bytes: where the values came from, for logs and `megacl params`). */
mcl_status mcl_params_lookup(mcl_context *ctx, const mcl_family *family, mcl_dtype dtype, const size_t *shape,
                             void *values, char *origin);

/* "TPR=32,WG=128,..." of every parameter; MCL_ERR_INVALID_ARGUMENT if it does not fit. */
mcl_status mcl_params_format(const mcl_family *family, const void *values, char *out, size_t cap);

/* Applies "NAME=VALUE,NAME=VALUE" on top of `values`; checks names and legal values. */
mcl_status mcl_params_parse(const mcl_family *family, const char *assignments, void *values);

/* Legal on this device? MCL_OK, or MCL_ERR_INVALID_ARGUMENT with the family's reason. */
mcl_status mcl_params_check(const mcl_family *family, const void *values, const mcl_device_info *device);

/* The family's defaults on this device: the declared ones, or where the device refuses them
 * the first fallback it accepts (MCL_ERR_INVALID_ARGUMENT when it accepts none). `applied`
 * (optional) names the fallback, or is "" for the declared defaults. */
mcl_status mcl_params_defaults(const mcl_family *family, const mcl_device_info *device, void *values,
                               const char **applied);

void mcl_params_release(mcl_context *ctx);

#endif
