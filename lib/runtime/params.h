/* The parameter seam. Each kernel family declares its tunable parameters (name, portable
 * default, legal values) and a legality check; mcl_params_lookup returns the values to build
 * with for (device, family, dtype, shape), from, in order: the context's overrides (tuner,
 * bench, tests), the user tuning database, the built-in database, the family's defaults. In
 * each database: exact device name, then architecture, then vendor, then any device. */
#ifndef MCL_RUNTIME_PARAMS_H
#define MCL_RUNTIME_PARAMS_H

#include "context.h"

#define MCL_MAX_PARAMS 32

typedef struct mcl_param_decl {
    const char *name; /* without the family's define prefix: "TPR" */
    int default_value;
    const int *legal;
    size_t legal_count;
} mcl_param_decl;

typedef struct mcl_family {
    const char *name;          /* also its kernel file: cl/<name>.cl */
    const char *define_prefix; /* "LN_": parameter TPR is passed as -DLN_TPR=... */
    const mcl_param_decl *params;
    size_t param_count;
    /* NULL when the values are a legal combination on the device, else the reason */
    const char *(*check)(const int *values, const mcl_device_info *device);
    /* the shape bucket a database entry is keyed by, e.g. "cols<=128" */
    void (*bucket)(const size_t *shape, char *out, size_t cap);
    /* assignments tried in order over the defaults on a device that refuses them (a smaller
     * local memory, say); NULL-terminated, the last legal on every OpenCL 1.2 device */
    const char *const *fallbacks;
} mcl_family;

typedef struct mcl_params {
    const mcl_family *family;
    int values[MCL_MAX_PARAMS];
    char origin[128]; /* where the values came from, for logs and `megacl bench` */
} mcl_params;

mcl_status mcl_params_lookup(mcl_context *ctx, const mcl_family *family, mcl_dtype dtype,
                             const size_t *shape, mcl_params *params);

/* "-DLN_TPR=32 -DLN_WG=128 ..." (every parameter, so a define never falls back silently). */
void mcl_params_defines(const mcl_params *params, char *out, size_t cap);

/* "TPR=32,WG=128,..." */
void mcl_params_format(const mcl_params *params, char *out, size_t cap);

/* Applies "NAME=VALUE,NAME=VALUE" on top of `values`; checks names and legal values. */
mcl_status mcl_params_parse(const mcl_family *family, const char *assignments, int *values);

/* Legal on this device? MCL_OK, or MCL_ERR_INVALID_ARGUMENT with the family's reason. */
mcl_status mcl_params_check(const mcl_family *family, const int *values,
                            const mcl_device_info *device);

/* The family's defaults on this device: the declared ones, or where the device refuses them
 * the first fallback it accepts (MCL_ERR_INVALID_ARGUMENT when it accepts none). `applied`
 * (optional) names the fallback, or is "" for the declared defaults. */
mcl_status mcl_params_defaults(const mcl_family *family, const mcl_device_info *device, int *values,
                               const char **applied);

void mcl_params_release(mcl_context *ctx);

#endif
