/* The layout family: its parameters, legal values, portable defaults, shape buckets and tuning
 * space. */
#include "layout.h"

#include <stdio.h>

#define TRANSPOSE_SOURCE "layout/transpose"

static const mcl_param_decl layout_params_decl[] = {
    MCL_PARAM(layout_params, vec, "VEC", 4, MCL_LEGAL(1, 2, 4, 8), TRANSPOSE_SOURCE),
    MCL_PARAM(layout_params, wg, "WG", 256, MCL_LEGAL(32, 64, 128, 256, 512, 1024), TRANSPOSE_SOURCE),
};
MCL_PARAMS_FIT(layout_params, layout_params_decl);

/* shapes are {rows, cols, width}: a transpose of single values (a pair bias into its heads) reads
 * with a stride where one of whole channel vectors (i and j swapped) reads runs, so the width
 * decides what is fastest */
static void layout_bucket(const size_t *shape, char *out, size_t cap)
{
    snprintf(out, cap, "width%s", shape[2] == 1 ? "=1" : shape[2] < 32 ? "<32" : ">=32");
}

/* The tuner's space: how many values a work-item moves and the group size (a CPU wants large
 * groups). */
static const mcl_tune_axis layout_axes[] = {
    MCL_AXIS("VEC", MCL_LEGAL(1, 2, 4, 8)),
    MCL_AXIS_CPU("WG", MCL_LEGAL(64, 128, 256, 512, 1024), MCL_LEGAL(64, 256, 1024)),
};
static const mcl_tune_subspace layout_space[] = {MCL_SUBSPACE(layout_axes)};
static const mcl_tune_stage layout_stages[] = {MCL_STAGE("transpose", layout_space)};

/* A device whose work-groups hold fewer than 256 work-items (OpenCL's minimum is 1). */
static const char *const layout_fallbacks[] = {"WG=64", "WG=32", NULL};

const mcl_family mcl_family_layout = {
    .name = "layout", .define_prefix = "LAYOUT_",
    .shape_names = "rows,cols,width", .shape_rank = 3, .example_shape = (const size_t[]){384, 384, 128},
    MCL_FAMILY_PARAMS(layout_params, layout_params_decl),
    .work_group = "WG", .bucket = layout_bucket, .fallbacks = layout_fallbacks, MCL_FAMILY_STAGES(layout_stages),
};
