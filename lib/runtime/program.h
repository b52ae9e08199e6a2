/* Programs: the embedded kernel sources compiled per context and options, cached in memory and
 * (where enabled) on disk. */
#ifndef MCL_RUNTIME_PROGRAM_H
#define MCL_RUNTIME_PROGRAM_H

#include "context.h"

/* The embedded cl/ files (generated at build time from every .cl file in cl/). */
typedef struct mcl_kernel_source {
    const char *name; /* file name without ".cl" */
    const char *text;
} mcl_kernel_source;

extern const mcl_kernel_source mcl_kernel_sources[];
extern const size_t mcl_kernel_source_count;

/* The text of cl/<name>.cl, or NULL. */
const char *mcl_kernel_source_text(const char *name);

/* The full options a family's program is built with on this context: the device's base
 * options (and defines of probed capabilities), then `defines` (tuning parameters). */
void mcl_program_options(const mcl_context *ctx, const char *defines, char *out, size_t cap);

/* A kernel of family `family` (cl/<family>.cl after the common prelude) built with `defines`.
 * The program is built on first use and cached; the kernel object is owned by the cache. */
mcl_status mcl_kernel_get(mcl_context *ctx, const char *family, const char *defines,
                          const char *kernel_name, cl_kernel *kernel);

/* Builds a program now (for the tuner, which compiles candidates ahead of timing them). */
mcl_status mcl_program_get(mcl_context *ctx, const char *family, const char *defines,
                           cl_program *program);

void mcl_program_cache_clear(mcl_context *ctx);

/* Kernel arguments in one call: a list of (size, pointer) pairs. */
typedef struct mcl_arg {
    size_t size;
    const void *value;
} mcl_arg;
#define MCL_ARG(v) ((mcl_arg){sizeof(v), &(v)})

mcl_status mcl_set_args(cl_kernel kernel, const mcl_arg *args, size_t count, const char *what);

#endif
