/* The flurka family: its parameters, legal values, portable defaults and tuning space. */
#include "flurka.h"

#define ROWS_SOURCE "flurka/rows"
#define KEYS_SOURCE "flurka/keys"

static const mcl_param_decl fl_params_decl[] = {
    MCL_PARAM(fl_params, chunk_kib, "CHUNK_KIB", 32768, MCL_LEGAL(16, 1024, 8192, 32768, 131072), NULL),
    MCL_PARAM(fl_params, row_wg, "ROW_WG", 64, MCL_LEGAL(32, 64, 128, 256), ROWS_SOURCE),
    MCL_PARAM(fl_params, rows, "ROWS", 8, MCL_LEGAL(1, 2, 4, 8, 16, 32), KEYS_SOURCE),
    MCL_PARAM(fl_params, wg, "WG", 128, MCL_LEGAL(32, 64, 128, 256, 512, 1024), KEYS_SOURCE),
    MCL_PARAM(fl_params, groups_per_cu, "GROUPS_PER_CU", 2, MCL_LEGAL(1, 2, 4, 8, 16), NULL),
    MCL_PARAM(fl_params, key_wg, "KEY_WG", 64, MCL_LEGAL(32, 64, 128, 256), KEYS_SOURCE),
};
MCL_PARAMS_FIT(fl_params, fl_params_decl);

/* the map, the head dim and the feature count of a call (every source); the key sums'
 * accumulators per work-item */
static const mcl_derived_define fl_derived[] = {{"FL_MAP", NULL}, {"FL_D", NULL}, {"FL_L", NULL}, {"FL_ACC", KEYS_SOURCE}};

/* What depends on the head dim and the features (local memory of a tile of rows) the op checks
 * per call; here the shapes of the work-groups alone. */
static const char *fl_check(const void *values, const mcl_device_info *device)
{
    const fl_params *v = values;
    if ((size_t)v->key_wg > device->max_work_group_size) return "KEY_WG exceeds the device's work-group size";
    if ((size_t)v->row_wg > device->max_work_group_size) return "ROW_WG exceeds the device's work-group size";
    return NULL;
}

/* The query rows' chunk and row work-group, then the key sums' tile and work-group and their
 * sharing of a head's keys, then the key gradients' work-group (the products are GEMMs, tuned
 * with the gemm family). */
static const mcl_tune_axis fl_rows_axes[] = {
    MCL_AXIS("CHUNK_KIB", MCL_LEGAL(8192, 32768, 131072)),
    MCL_AXIS_CPU("ROW_WG", MCL_LEGAL(64, 128, 256), MCL_LEGAL(32, 64)),
};
static const mcl_tune_axis fl_sums_axes[] = {
    MCL_AXIS("ROWS", MCL_LEGAL(4, 8, 16)),
    MCL_AXIS_CPU("WG", MCL_LEGAL(64, 128, 256), MCL_LEGAL(32, 64, 128)),
    MCL_AXIS_CPU("GROUPS_PER_CU", MCL_LEGAL(1, 2, 4, 8), MCL_LEGAL(1, 2, 4)),
};
static const mcl_tune_axis fl_grads_axes[] = {MCL_AXIS("KEY_WG", MCL_LEGAL(32, 64, 128))};
static const mcl_tune_subspace fl_rows[] = {MCL_SUBSPACE(fl_rows_axes)};
static const mcl_tune_subspace fl_sums[] = {MCL_SUBSPACE(fl_sums_axes)};
static const mcl_tune_subspace fl_grads[] = {MCL_SUBSPACE(fl_grads_axes)};
static const mcl_tune_stage fl_stages[] = {MCL_STAGE("rows", fl_rows), MCL_STAGE("key sums", fl_sums),
                                           MCL_STAGE("key gradients", fl_grads)};

const mcl_family mcl_family_flurka = {
    .name = "flurka", .define_prefix = "FL_",
    .shape_names = "heads,seq,head_dim,features", .shape_rank = 4,
    .example_shape = (const size_t[]){16, 16384, 64, 256},
    MCL_FAMILY_PARAMS(fl_params, fl_params_decl), .helpers = (const char *const[]){"flurka/maps", NULL},
    MCL_FAMILY_DERIVED(fl_derived), .work_group = "WG", .check = fl_check, .bucket = mcl_bucket_any,
    MCL_FAMILY_STAGES(fl_stages),
};
