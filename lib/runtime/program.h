/* Programs: a kernel source of a family, assembled from the embedded cl/ files (the prelude,
 * the family's helpers, the kernel's own file), compiled per context and build options, cached
 * in memory and (where enabled) on disk. */
#ifndef MCL_RUNTIME_PROGRAM_H
#define MCL_RUNTIME_PROGRAM_H

#include "context.h"
#include "defines.h"
#include "family.h"

/* The embedded cl/ files (generated at build time from every .cl file under cl/). */
typedef struct mcl_kernel_source {
    const char *name; /* path under cl/ without ".cl": "common", "evoattn/forward" */
    const char *text;
} mcl_kernel_source;

extern const mcl_kernel_source mcl_kernel_sources[];
extern const size_t mcl_kernel_source_count;

/* The text of cl/<name>.cl, or NULL. */
const char *mcl_kernel_source_text(const char *name);

/* The full program text of `source`, a kernel source of `family`: cl/common.cl, the family's
 * helpers, then cl/<source>.cl (malloc'd; the binary cache keys on exactly this text). */
mcl_status mcl_program_text(const mcl_family *family, const char *source, char **text);

/* The full options a program is built with on this context: the device's base options (and
 * defines of probed capabilities), then `defines`. */
mcl_status mcl_program_options(const mcl_context *ctx, const mcl_defines *defines, char *out, size_t cap);

/* Kernel `kernel_name` of the program of `source` (a kernel source of `family`) built with
 * `defines`. The program is built on first use and cached; the kernel object is owned by the
 * cache. */
mcl_status mcl_kernel_get(mcl_context *ctx, const mcl_family *family, const char *source,
                          const mcl_defines *defines, const char *kernel_name, cl_kernel *kernel);

/* Builds a program now (for the tuner, which compiles candidates ahead of timing them). */
mcl_status mcl_program_get(mcl_context *ctx, const mcl_family *family, const char *source,
                           const mcl_defines *defines, cl_program *program);

void mcl_program_cache_clear(mcl_context *ctx);

/* Moves the programs `from` built that `to` has not into `to`'s cache (contexts on the same
 * cl_context: the tuner's compile threads build into contexts of their own). */
void mcl_program_cache_adopt(mcl_context *to, mcl_context *from);

/* Kernel arguments in one call: a list of (size, pointer) pairs. */
typedef struct mcl_arg {
    size_t size;
    const void *value;
} mcl_arg;
#define MCL_ARG(v) ((mcl_arg){sizeof(v), &(v)})

mcl_status mcl_set_args(cl_kernel kernel, const mcl_arg *args, size_t count, const char *what);

#endif
