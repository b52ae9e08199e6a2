/* The glu family: its parameters, legal values and portable defaults. */
#include "glu.h"

#define GLU_SOURCE "glu/glu"

static const mcl_param_decl glu_params_decl[] = {
    MCL_PARAM(glu_params, vec, "VEC", 4, MCL_LEGAL(1, 2, 4, 8), GLU_SOURCE),
    MCL_PARAM(glu_params, wg, "WG", 256, MCL_LEGAL(32, 64, 128, 256, 512, 1024), GLU_SOURCE),
    MCL_PARAM(glu_params, groups_per_cu, "GROUPS_PER_CU", 8, MCL_LEGAL(1, 2, 4, 8, 16, 32), NULL),
};
MCL_PARAMS_FIT(glu_params, glu_params_decl);

/* The tuner's space: vector width, group size and grid (a CPU wants large groups, few of them). */
static const mcl_tune_axis glu_axes[] = {
    MCL_AXIS("VEC", MCL_LEGAL(1, 2, 4, 8)),
    MCL_AXIS_CPU("WG", MCL_LEGAL(64, 128, 256, 512, 1024), MCL_LEGAL(64, 256, 1024)),
    MCL_AXIS_CPU("GROUPS_PER_CU", MCL_LEGAL(2, 4, 8, 16, 32), MCL_LEGAL(1, 2, 4)),
};
static const mcl_tune_subspace glu_space[] = {MCL_SUBSPACE(glu_axes)};
static const mcl_tune_stage glu_stages[] = {MCL_STAGE("elementwise", glu_space)};

const mcl_family mcl_family_glu = {
    .name = "glu", .define_prefix = "GLU_",
    .shape_names = "elements", .shape_rank = 1, .example_shape = (const size_t[]){147456 * 128},
    MCL_FAMILY_PARAMS(glu_params, glu_params_decl),
    .work_group = "WG", .bucket = mcl_bucket_any, /* elementwise: tuned per dtype only */
    MCL_FAMILY_STAGES(glu_stages),
};
