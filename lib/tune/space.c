/* Stage enumeration (see space.h). */
#include "space.h"

#include "runtime/error.h"
#include "runtime/params.h"

#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

const int *tune_axis_values(const mcl_tune_axis *axis, const mcl_device_info *device, size_t *count)
{
    int cpu = !device->is_gpu && axis->cpu_values;
    *count = cpu ? axis->cpu_count : axis->count;
    return cpu ? axis->cpu_values : axis->values;
}

static int param_of(const mcl_family *family, const char *name)
{
    for (size_t i = 0; i < family->param_count; i++)
        if (strcmp(family->params[i].name, name) == 0) return (int)i;
    return -1;
}

/* On a GPU a work-group that is not a whole number of warps or wavefronts leaves lanes idle. */
static int simd_whole(const mcl_family *family, const void *values, const mcl_device_info *device)
{
    if (!device->is_gpu || device->simd_width <= 1) return 1;
    size_t items = 0;
    if (family->work_items) {
        items = family->work_items(values);
    } else if (family->work_group) {
        int index = param_of(family, family->work_group);
        items = index < 0 ? 0 : (size_t)mcl_param_get(family, values, (size_t)index);
    }
    return items == 0 || items % device->simd_width == 0;
}

/* Open addressing over the candidates' values: a stage proposes the same values through several
 * alternatives (the starting point, say), and each is measured once. */
typedef struct value_set {
    size_t *slots; /* candidate index + 1, 0 empty */
    size_t mask;
} value_set;

static int value_set_init(value_set *set, size_t expected)
{
    size_t size = 64;
    while (size < 2 * expected) size *= 2;
    set->slots = calloc(size, sizeof *set->slots);
    set->mask = size - 1;
    return set->slots != NULL;
}

/* 1 when the values were already in the space (nothing inserted). */
static int value_set_seen(value_set *set, const tune_space *space, const mcl_param_block *values, size_t size)
{
    size_t slot = (size_t)XXH64(values, size, 0) & set->mask;
    for (; set->slots[slot]; slot = (slot + 1) & set->mask)
        if (memcmp(&space->items[set->slots[slot] - 1].values, values, size) == 0) return 1;
    set->slots[slot] = space->count + 1;
    return 0;
}

static mcl_status push(tune_space *space, const tune_candidate *candidate)
{
    if (space->count == space->capacity) {
        size_t capacity = space->capacity ? 2 * space->capacity : 64;
        tune_candidate *grown = realloc(space->items, capacity * sizeof *grown);
        if (!grown) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: %zu candidates", capacity);
        space->items = grown;
        space->capacity = capacity;
    }
    space->items[space->count++] = *candidate;
    return MCL_OK;
}

/* The product size of an alternative, its axes resolved to parameter indices. */
static mcl_status resolve_axes(const mcl_family *family, const mcl_tune_subspace *sub, const mcl_device_info *device,
                               int *index, size_t *product)
{
    if (sub->count > MCL_MAX_PARAMS) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: a sub-space of %zu axes", family->name, sub->count);
    *product = 1;
    for (size_t a = 0; a < sub->count; a++) {
        size_t n;
        tune_axis_values(&sub->axes[a], device, &n);
        index[a] = param_of(family, sub->axes[a].param);
        if (index[a] < 0 || n == 0 || n > 255)
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: tuning axis %s is no parameter, or has %zu values",
                            family->name, sub->axes[a].param, n);
        if (*product > TUNE_MAX_PROPOSED / n)
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: a sub-space proposes more than %zu candidates", family->name,
                            TUNE_MAX_PROPOSED);
        *product *= n;
    }
    return MCL_OK;
}

static mcl_status enumerate_alternative(const mcl_family *family, const mcl_tune_stage *stage, unsigned alternative,
                                        const void *start, const mcl_device_info *device, value_set *seen,
                                        tune_space *space)
{
    const mcl_tune_subspace *sub = &stage->alternatives[alternative];
    int index[MCL_MAX_PARAMS];
    size_t product;
    MCL_TRY(resolve_axes(family, sub, device, index, &product));
    space->proposed += product;
    for (size_t k = 0; k < product; k++) {
        tune_candidate c = {.alternative = alternative};
        memcpy(&c.values, start, family->values_size);
        size_t rest = k;
        for (size_t a = sub->count; a-- > 0;) { /* the last axis varies fastest */
            size_t n;
            const int *values = tune_axis_values(&sub->axes[a], device, &n);
            c.coords[a] = (unsigned char)(rest % n);
            mcl_param_set(family, &c.values, (size_t)index[a], values[rest % n]);
            rest /= n;
        }
        if (mcl_params_why_illegal(family, &c.values, device) || !simd_whole(family, &c.values, device)) continue;
        if (value_set_seen(seen, space, &c.values, family->values_size)) continue;
        MCL_TRY(push(space, &c));
    }
    return MCL_OK;
}

mcl_status tune_space_enumerate(const mcl_family *family, const mcl_tune_stage *stage, const void *start,
                                const mcl_device_info *device, tune_space *space)
{
    memset(space, 0, sizeof *space);
    size_t expected = 0;
    for (size_t a = 0; a < stage->count; a++) {
        int index[MCL_MAX_PARAMS];
        size_t product;
        MCL_TRY(resolve_axes(family, &stage->alternatives[a], device, index, &product));
        expected += product;
    }
    value_set seen;
    if (!value_set_init(&seen, expected)) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: a set of %zu candidates", expected);
    mcl_status status = MCL_OK;
    for (unsigned a = 0; a < stage->count && status == MCL_OK; a++)
        status = enumerate_alternative(family, stage, a, start, device, &seen, space);
    free(seen.slots);
    if (status != MCL_OK) tune_space_free(space);
    return status;
}

void tune_space_free(tune_space *space)
{
    free(space->items);
    memset(space, 0, sizeof *space);
}

int tune_space_neighbours(const mcl_tune_stage *stage, const tune_candidate *a, const tune_candidate *b)
{
    if (a->alternative != b->alternative) return 0;
    size_t moved = 0;
    for (size_t i = 0; i < stage->alternatives[a->alternative].count; i++) {
        int d = (int)a->coords[i] - (int)b->coords[i];
        if (d < -1 || d > 1) return 0;
        moved += d != 0;
    }
    return moved == 1;
}
