/* The layernorm family: its parameters, legal values, portable defaults and shape buckets. */
#include "layernorm.h"

#include <stdio.h>

#define LN_SOURCE "layernorm/layernorm"

static const mcl_param_decl ln_params_decl[] = {
    MCL_PARAM(ln_params, variant, "VARIANT", LN_VARIANT_TILED, MCL_LEGAL(LN_VARIANT_REFERENCE, LN_VARIANT_TILED),
              NULL),
    MCL_PARAM(ln_params, tpr, "TPR", 32, MCL_LEGAL(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), LN_SOURCE),
    MCL_PARAM(ln_params, vec, "VEC", 4, MCL_LEGAL(1, 2, 4, 8), LN_SOURCE),
    MCL_PARAM(ln_params, wg, "WG", 128, MCL_LEGAL(32, 64, 128, 256, 512, 1024), LN_SOURCE),
    MCL_PARAM(ln_params, groups_per_cu, "GROUPS_PER_CU", 4, MCL_LEGAL(1, 2, 4, 8, 16, 32), NULL),
    MCL_PARAM(ln_params, reduce_split, "REDUCE_SPLIT", 8, MCL_LEGAL(1, 2, 4, 8, 16, 32), LN_SOURCE),
};
MCL_PARAMS_FIT(ln_params, ln_params_decl);

/* the column groups of LN_VEC a work-item holds, from the row width; the backward's dy in fp32 */
static const mcl_derived_define ln_derived[] = {{"LN_ITEMS", LN_SOURCE}, {"LN_DY_F32", LN_SOURCE}};

static const char *ln_check(const void *values, const mcl_device_info *device)
{
    const ln_params *v = values;
    if (v->tpr > v->wg) return "TPR exceeds WG";
    if ((size_t)32 * v->reduce_split > device->max_work_group_size)
        return "32 x REDUCE_SPLIT exceeds the device's work-group size";
    if ((uint64_t)v->wg * 2 * sizeof(float) > device->local_mem_bytes)
        return "WG needs more local memory than the device has";
    return NULL;
}

static void ln_bucket(const size_t *shape, char *out, size_t cap)
{
    static const size_t edges[] = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    for (size_t i = 0; i < MCL_COUNT(edges); i++) {
        if (shape[1] <= edges[i]) {
            snprintf(out, cap, "cols<=%zu", edges[i]);
            return;
        }
    }
    snprintf(out, cap, "cols>4096");
}

/* The tuner's space: the reference kernels or the tiled ones' row split and vector width (a
 * CPU wants fewer work-items a row and larger groups), then the backward's sharing of rows. */
static const mcl_tune_axis ln_reference[] = {MCL_AXIS("VARIANT", MCL_LEGAL(LN_VARIANT_REFERENCE))};
static const mcl_tune_axis ln_tiled[] = {
    MCL_AXIS("VARIANT", MCL_LEGAL(LN_VARIANT_TILED)),
    MCL_AXIS_CPU("TPR", MCL_LEGAL(4, 8, 16, 32, 64, 128), MCL_LEGAL(1, 2, 4, 8, 16)),
    MCL_AXIS("VEC", MCL_LEGAL(1, 2, 4, 8)),
    MCL_AXIS_CPU("WG", MCL_LEGAL(64, 128, 256, 512), MCL_LEGAL(64, 256, 1024)),
};
static const mcl_tune_axis ln_backward[] = {
    MCL_AXIS_CPU("GROUPS_PER_CU", MCL_LEGAL(2, 4, 8, 16), MCL_LEGAL(1, 2, 4)),
    MCL_AXIS_CPU("REDUCE_SPLIT", MCL_LEGAL(4, 8, 16), MCL_LEGAL(1, 2, 4, 8)),
};
static const mcl_tune_subspace ln_rows[] = {MCL_SUBSPACE(ln_reference), MCL_SUBSPACE(ln_tiled)};
static const mcl_tune_subspace ln_sharing[] = {MCL_SUBSPACE(ln_backward)};
static const mcl_tune_stage ln_stages[] = {MCL_STAGE("rows", ln_rows), MCL_STAGE("backward", ln_sharing)};

const mcl_family mcl_family_layernorm = {
    .name = "layernorm", .define_prefix = "LN_",
    .shape_names = "rows,cols", .shape_rank = 2, .example_shape = (const size_t[]){147456, 128},
    MCL_FAMILY_PARAMS(ln_params, ln_params_decl), MCL_FAMILY_DERIVED(ln_derived),
    .work_group = "WG", .check = ln_check, .bucket = ln_bucket, MCL_FAMILY_STAGES(ln_stages),
};
