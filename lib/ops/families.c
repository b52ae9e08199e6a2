/* Kernel families: parameters, legal values, portable defaults, legality and shape buckets.
 * The defaults are correct on every device; tuned values come from the tuning databases. */
#include "families.h"

#include <stdio.h>
#include <string.h>

#define LEGAL(...) (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int)

/* ---- layernorm -------------------------------------------------------------------------- */

static const mcl_param_decl layernorm_params[] = {
    [LN_VARIANT] = {"VARIANT", LN_VARIANT_TILED, LEGAL(LN_VARIANT_REFERENCE, LN_VARIANT_TILED)},
    [LN_TPR] = {"TPR", 32, LEGAL(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)},
    [LN_VEC] = {"VEC", 4, LEGAL(1, 2, 4, 8)},
    [LN_WG] = {"WG", 128, LEGAL(32, 64, 128, 256, 512, 1024)},
    [LN_GROUPS_PER_CU] = {"GROUPS_PER_CU", 4, LEGAL(1, 2, 4, 8, 16, 32)},
    [LN_REDUCE_SPLIT] = {"REDUCE_SPLIT", 8, LEGAL(1, 2, 4, 8, 16, 32)},
};

static const char *layernorm_check(const int *v, const mcl_device_info *device)
{
    if (v[LN_TPR] > v[LN_WG]) return "TPR exceeds WG";
    if ((size_t)v[LN_WG] > device->max_work_group_size) return "WG exceeds the device's work-group size";
    if ((size_t)32 * v[LN_REDUCE_SPLIT] > device->max_work_group_size)
        return "32 x REDUCE_SPLIT exceeds the device's work-group size";
    if ((uint64_t)v[LN_WG] * 2 * sizeof(float) > device->local_mem_bytes)
        return "WG needs more local memory than the device has";
    return NULL;
}

static void layernorm_bucket(const size_t *shape, char *out, size_t cap)
{
    static const size_t edges[] = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        if (shape[1] <= edges[i]) {
            snprintf(out, cap, "cols<=%zu", edges[i]);
            return;
        }
    }
    snprintf(out, cap, "cols>4096");
}

const mcl_family mcl_family_layernorm = {
    .name = "layernorm",
    .define_prefix = "LN_",
    .params = layernorm_params,
    .param_count = sizeof layernorm_params / sizeof layernorm_params[0],
    .check = layernorm_check,
    .bucket = layernorm_bucket,
};

/* ---- registry --------------------------------------------------------------------------- */

const mcl_family *const mcl_families[] = {&mcl_family_layernorm};
const size_t mcl_family_count = sizeof mcl_families / sizeof mcl_families[0];

const mcl_family *mcl_family_find(const char *name)
{
    for (size_t i = 0; i < mcl_family_count; i++)
        if (strcmp(mcl_families[i]->name, name) == 0) return mcl_families[i];
    return NULL;
}
