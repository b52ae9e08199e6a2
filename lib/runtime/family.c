/* The family registry as the runtime and the experimental public API read it. */
#include "family.h"

#include "error.h"

#include <stdio.h>
#include <string.h>

const mcl_family *mcl_family_find(const char *name)
{
    for (size_t i = 0; i < mcl_family_registry_count; i++)
        if (strcmp(mcl_family_registry[i]->name, name) == 0) return mcl_family_registry[i];
    return NULL;
}

void mcl_bucket_any(const size_t *shape, char *out, size_t cap)
{
    (void)shape;
    snprintf(out, cap, "any");
}

size_t mcl_family_count(void) { return mcl_family_registry_count; }

mcl_status mcl_family_get(size_t index, mcl_family_info *info)
{
    if (!info) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_family_get: info is NULL");
    if (index >= mcl_family_registry_count)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_family_get: family %zu of %zu", index,
                        mcl_family_registry_count);
    const mcl_family *f = mcl_family_registry[index];
    *info = (mcl_family_info){f->name, f->define_prefix, f->shape_names, f->shape_rank, f->example_shape,
                              f->param_count};
    return MCL_OK;
}

mcl_status mcl_family_param(size_t family_index, size_t param_index, mcl_param_info *info)
{
    if (!info) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_family_param: info is NULL");
    if (family_index >= mcl_family_registry_count)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_family_param: family %zu of %zu", family_index,
                        mcl_family_registry_count);
    const mcl_family *f = mcl_family_registry[family_index];
    if (param_index >= f->param_count)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_family_param: %s has %zu parameters, not %zu", f->name,
                        f->param_count, param_index + 1);
    const mcl_param_decl *p = &f->params[param_index];
    *info = (mcl_param_info){p->name, p->default_value, p->legal, p->legal_count, p->kernel};
    return MCL_OK;
}
