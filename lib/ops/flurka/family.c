/* The flurka family: its parameters, legal values, portable defaults and tuning space. */
#include "flurka.h"

static const mcl_param_decl fl_params_decl[] = {
    MCL_PARAM(fl_params, chunk_kib, "CHUNK_KIB", 32768, MCL_LEGAL(16, 1024, 8192, 32768, 131072), NULL),
    MCL_PARAM(fl_params, row_wg, "ROW_WG", 64, MCL_LEGAL(32, 64, 128, 256), NULL),
};
MCL_PARAMS_FIT(fl_params, fl_params_decl);

/* the map, the head dim, the feature count and the row kernels' work-group of a call (every
 * source reads them through flurka/maps) */
static const mcl_derived_define fl_derived[] = {{"FL_MAP", NULL}, {"FL_D", NULL}, {"FL_L", NULL}, {"FL_GROUP", NULL}};

static const char *fl_check(const void *values, const mcl_device_info *device)
{
    const fl_params *v = values;
    return (size_t)v->row_wg > device->max_work_group_size ? "ROW_WG exceeds the device's work-group size" : NULL;
}

/* How many rows and keys run at once, and the row kernels' work-group (the products are GEMMs,
 * tuned with the gemm family). */
static const mcl_tune_axis fl_axes[] = {
    MCL_AXIS("CHUNK_KIB", MCL_LEGAL(8192, 32768, 131072)),
    MCL_AXIS_CPU("ROW_WG", MCL_LEGAL(64, 128, 256), MCL_LEGAL(32, 64)),
};
static const mcl_tune_subspace fl_space[] = {MCL_SUBSPACE(fl_axes)};
static const mcl_tune_stage fl_stages[] = {MCL_STAGE("chunks", fl_space)};

const mcl_family mcl_family_flurka = {
    .name = "flurka", .define_prefix = "FL_",
    .shape_names = "heads,seq,head_dim,features", .shape_rank = 4,
    .example_shape = (const size_t[]){16, 16384, 64, 256},
    MCL_FAMILY_PARAMS(fl_params, fl_params_decl), .helpers = (const char *const[]){"flurka/maps", NULL},
    MCL_FAMILY_DERIVED(fl_derived), .work_group = "ROW_WG", .check = fl_check, .bucket = mcl_bucket_any,
    MCL_FAMILY_STAGES(fl_stages),
};
