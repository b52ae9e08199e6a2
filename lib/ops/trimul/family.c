/* The trimul family: its parameters, legal values and portable defaults. */
#include "trimul.h"

static const mcl_param_decl tm_params_decl[] = {
    MCL_PARAM(tm_params, wg, "WG", 256, MCL_LEGAL(32, 64, 128, 256, 512, 1024), NULL),
    MCL_PARAM(tm_params, chunk, "CHUNK", 32, MCL_LEGAL(8, 16, 32, 64, 128, 256, 512, 1024), NULL),
};
MCL_PARAMS_FIT(tm_params, tm_params_decl);

/* CHUNK trades memory for launches and stays out of the tuner's space: a tuned winner would
 * otherwise change the op's workspace size behind the caller's back. */
static const mcl_tune_axis tm_axes[] = {MCL_AXIS_CPU("WG", MCL_LEGAL(64, 128, 256, 512, 1024), MCL_LEGAL(64, 256, 1024))};
static const mcl_tune_subspace tm_space[] = {MCL_SUBSPACE(tm_axes)};
static const mcl_tune_stage tm_stages[] = {MCL_STAGE("elementwise", tm_space)};

const mcl_family mcl_family_trimul = {
    .name = "trimul", .define_prefix = "TM_",
    .shape_names = "n,channels,hidden", .shape_rank = 3, .example_shape = (const size_t[]){384, 128, 128},
    MCL_FAMILY_PARAMS(tm_params, tm_params_decl),
    .work_group = "WG", .bucket = mcl_bucket_any, /* elementwise: tuned per dtype only */
    MCL_FAMILY_STAGES(tm_stages),
};
