/* Kernel families as the runtime sees them: the declaration each family gives (its tunable
 * parameters with legal values and portable defaults, which of them are kernel defines, the
 * legality check on a device, shape buckets, fallbacks and kernel sources), and the registry
 * of every family. The runtime reads families only through these declarations; the families
 * live with their ops (lib/ops/<family>/) and are listed in lib/ops/registry.c. */
#ifndef MCL_RUNTIME_FAMILY_H
#define MCL_RUNTIME_FAMILY_H

#include "megacl.h"

#include <stddef.h>

#define MCL_MAX_PARAMS 32

/* A tunable parameter: one int field of the family's parameter struct. A kernel parameter is
 * passed to its kernel source as -D<prefix><name>=<value>; a host choice (kernel NULL) decides
 * how the host runs the kernels and never reaches the compiler. */
typedef struct mcl_param_decl {
    const char *name;   /* "TPR" */
    size_t offset;      /* of its int in the family's parameter struct */
    int default_value;  /* portable: correct on every device */
    const int *legal;
    size_t legal_count;
    const char *kernel; /* the kernel source that reads it ("layernorm/layernorm"), or NULL */
} mcl_param_decl;

/* A define the host computes per call (a dtype, a head dim, an alignment), not tuned: `kernel`
 * names the source that reads it, NULL every source of the family. */
typedef struct mcl_derived_define {
    const char *name;
    const char *kernel;
} mcl_derived_define;

/* The tuner's search space of a family (lib/tune/), declared beside its parameters. Stages are
 * tuned one after another, each starting from the best of the stages before; a stage is the
 * union of alternative sub-spaces (a kernel and its micro-tiled variant, say), and a sub-space
 * is the product of its axes' values with every other parameter where the stage started.
 * Candidates that the family's legality check refuses on the device never run. An axis lists
 * the values worth trying on GPUs and, where CPUs want others (larger work-groups, fewer groups
 * per core), on CPUs. */
typedef struct mcl_tune_axis {
    const char *param;
    const int *values;
    size_t count;
    const int *cpu_values; /* NULL: the same as on GPUs */
    size_t cpu_count;
} mcl_tune_axis;

typedef struct mcl_tune_subspace {
    const mcl_tune_axis *axes;
    size_t count;
} mcl_tune_subspace;

typedef struct mcl_tune_stage {
    const char *name;
    const mcl_tune_subspace *alternatives;
    size_t count;
    /* whether the stage can change a call of this dtype (tf32: the context allows it); NULL:
     * always. A stage whose candidates would all run as its starting point is skipped. */
    int (*applies)(mcl_dtype dtype, int tf32_allowed);
} mcl_tune_stage;

typedef struct mcl_family {
    const char *name;          /* "layernorm" */
    const char *define_prefix; /* "LN_" */
    const char *shape_names;   /* what the shape of a lookup holds, "rows,cols" */
    size_t shape_rank;
    const size_t *example_shape; /* an AF3 shape, for `megacl params` to show what a lookup picks */
    const mcl_param_decl *params;
    size_t param_count;
    size_t values_size; /* sizeof the parameter struct */
    /* sources each kernel of the family is built from after the prelude (cl/common.cl) and
     * before its own, NULL-terminated; NULL for none */
    const char *const *helpers;
    const mcl_derived_define *derived;
    size_t derived_count;
    /* the parameter that is a kernel's work-group size ("WG"), held to the device's limit before
     * `check` runs; NULL for none */
    const char *work_group;
    /* NULL when the values are a legal combination on the device, else the reason; NULL when
     * the work-group limit is all there is to check */
    const char *(*check)(const void *values, const mcl_device_info *device);
    /* the shape bucket a database entry is keyed by, e.g. "cols<=128" */
    void (*bucket)(const size_t *shape, char *out, size_t cap);
    /* assignments tried in order over the defaults on a device that refuses them (a smaller
     * local memory, say); NULL-terminated, the last legal on every OpenCL 1.2 device */
    const char *const *fallbacks;
    /* the tuner's search space (see mcl_tune_stage) */
    const mcl_tune_stage *stages;
    size_t stage_count;
    /* the work-items of a candidate's work-groups, which the tuner holds to multiples of the
     * device's SIMD width (warp, wavefront) on GPUs; NULL: the work_group parameter, if any */
    size_t (*work_items)(const void *values);
} mcl_family;

/* Declaration helpers: MCL_PARAM(ln_params, tpr, "TPR", 32, MCL_LEGAL(1, 2, 4), "layernorm/layernorm") */
#define MCL_LEGAL(...) (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int)
#define MCL_PARAM(type, field, name, default_value, legal, kernel)                              \
    {name, offsetof(type, field), default_value, legal, kernel}
#define MCL_COUNT(array) (sizeof(array) / sizeof((array)[0]))
/* A parameter struct holds ints only and fits the arrays parameters travel in. */
#define MCL_PARAMS_FIT(type, decls)                                                            \
    _Static_assert(sizeof(type) == MCL_COUNT(decls) * sizeof(int) && MCL_COUNT(decls) <= MCL_MAX_PARAMS, \
                   #type " must be one int per declared parameter, at most MCL_MAX_PARAMS")

/* Tuning-space helpers: MCL_AXIS("TPR", MCL_LEGAL(8, 16, 32)) tries those values everywhere;
 * MCL_AXIS_CPU("WG", MCL_LEGAL(64, 128, 256), MCL_LEGAL(256, 1024)) others on CPUs. */
#define MCL_AXIS(param, values) {param, values, NULL, 0}
#define MCL_AXIS_CPU(param, values, cpu_values) {param, values, cpu_values}
#define MCL_SUBSPACE(axes) {axes, MCL_COUNT(axes)}
#define MCL_STAGE(name, alternatives) {name, alternatives, MCL_COUNT(alternatives), NULL}
#define MCL_STAGE_IF(name, alternatives, applies) {name, alternatives, MCL_COUNT(alternatives), applies}
#define MCL_FAMILY_STAGES(stages_) .stages = stages_, .stage_count = MCL_COUNT(stages_)

/* The parameter and derived-define fields of a family's declaration. */
#define MCL_FAMILY_PARAMS(type, decls) .params = decls, .param_count = MCL_COUNT(decls), .values_size = sizeof(type)
#define MCL_FAMILY_DERIVED(defines) .derived = defines, .derived_count = MCL_COUNT(defines)

/* Room for any family's parameter struct. */
typedef struct mcl_param_block {
    int values[MCL_MAX_PARAMS];
} mcl_param_block;

static inline int mcl_param_get(const mcl_family *family, const void *values, size_t i)
{
    return *(const int *)((const char *)values + family->params[i].offset);
}

static inline void mcl_param_set(const mcl_family *family, void *values, size_t i, int value)
{
    *(int *)((char *)values + family->params[i].offset) = value;
}

/* The bucket of families whose kernels are tuned per dtype only: one for every shape. */
void mcl_bucket_any(const size_t *shape, char *out, size_t cap);

/* Every family of the library (lib/ops/registry.c). */
extern const mcl_family *const mcl_family_registry[];
extern const size_t mcl_family_registry_count;

/* The family of that name in the registry, or NULL. */
const mcl_family *mcl_family_find(const char *name);

#endif
