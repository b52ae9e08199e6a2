/* The trimul family: its parameters, legal values and portable defaults. */
#include "trimul.h"

#include <stdio.h>

static const mcl_param_decl tm_params_decl[] = {
    MCL_PARAM(tm_params, wg, "WG", 256, MCL_LEGAL(32, 64, 128, 256, 512, 1024), NULL),
};
MCL_PARAMS_FIT(tm_params, tm_params_decl);

static const char *tm_check(const void *values, const mcl_device_info *device)
{
    const tm_params *v = values;
    return (size_t)v->wg > device->max_work_group_size ? "WG exceeds the device's work-group size" : NULL;
}

/* shapes are {N, c, h}: elementwise kernels are tuned per dtype only */
static void tm_bucket(const size_t *shape, char *out, size_t cap)
{
    (void)shape;
    snprintf(out, cap, "any");
}

const mcl_family mcl_family_trimul = {
    .name = "trimul",
    .define_prefix = "TM_",
    .shape_names = "n,channels,hidden",
    .shape_rank = 3,
    .example_shape = (const size_t[]){384, 128, 128},
    .params = tm_params_decl,
    .param_count = MCL_COUNT(tm_params_decl),
    .values_size = sizeof(tm_params),
    .check = tm_check,
    .bucket = tm_bucket,
};
