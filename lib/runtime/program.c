/* Program assembly, building and the in-memory program cache. */
#include "program.h"

#include "binary_cache.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KERNELS_PER_PROGRAM 16
#define OPTIONS_CAP (MCL_DEFINES_CAP + 128)
#define MAX_SOURCE_PARTS 8 /* the prelude, helpers and the kernel's own file */

struct mcl_program_entry {
    mcl_program_entry *next;
    char *source;  /* the kernel source's name */
    char *options; /* the full build options */
    cl_program program;
    size_t kernel_count;
    char *kernel_names[MAX_KERNELS_PER_PROGRAM];
    cl_kernel kernels[MAX_KERNELS_PER_PROGRAM];
};

const char *mcl_kernel_source_text(const char *name)
{
    for (size_t i = 0; i < mcl_kernel_source_count; i++)
        if (strcmp(mcl_kernel_sources[i].name, name) == 0) return mcl_kernel_sources[i].text;
    return NULL;
}

mcl_status mcl_program_options(const mcl_context *ctx, const mcl_defines *defines, char *out, size_t cap)
{
    const mcl_device_info *info = &ctx->device.info;
    MCL_TRY(mcl_defines_check(defines, "program options"));
    /* vendor defines appear only where a probe proved the feature; PoCL gets plain -D options */
    int n = snprintf(out, cap, "-cl-std=CL1.2 -DMCL_SIMD_WIDTH=%u%s%s", info->simd_width,
                     info->has_mma_sync ? " -DMCL_HAS_MMA_SYNC=1" : "", defines->text);
    if (n < 0 || (size_t)n >= cap)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "program options exceed %zu bytes", cap);
    return MCL_OK;
}

mcl_status mcl_program_text(const mcl_family *family, const char *source, char **text)
{
    const char *parts[MAX_SOURCE_PARTS];
    size_t count = 0, bytes = 1;
    parts[count++] = "common";
    for (const char *const *h = family->helpers; h && *h; h++) {
        if (count == MAX_SOURCE_PARTS - 1)
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: more than %d helper sources", family->name,
                            MAX_SOURCE_PARTS - 2);
        parts[count++] = *h;
    }
    parts[count++] = source;
    for (size_t i = 0; i < count; i++) {
        const char *part = mcl_kernel_source_text(parts[i]);
        if (!part)
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no kernel source cl/%s.cl", family->name, parts[i]);
        bytes += strlen(part) + 1;
    }
    char *out = malloc(bytes);
    if (!out) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "assembling the source of %s", source);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        const char *part = mcl_kernel_source_text(parts[i]);
        size_t len = strlen(part);
        memcpy(out + used, part, len);
        used += len;
        out[used++] = '\n';
    }
    out[used] = '\0';
    *text = out;
    return MCL_OK;
}

static mcl_status build_failure(mcl_context *ctx, cl_program program, const char *source,
                                const char *options, cl_int err)
{
    char log[2048] = "";
    clGetProgramBuildInfo(program, ctx->device.id, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
    log[sizeof log - 1] = '\0';
    return mcl_fail(MCL_ERR_BUILD, "building cl/%s.cl with '%s' failed (%s): %s", source, options,
                    mcl_cl_error_name(err), log);
}

static mcl_status build_program(mcl_context *ctx, const mcl_family *family, const char *source,
                                const char *options, cl_program *out)
{
    char *text;
    MCL_TRY(mcl_program_text(family, source, &text));
    char key[33];
    mcl_binary_cache_key(text, options, &ctx->device.info, key);
    cl_program program = mcl_binary_cache_load(ctx, key, options);
    if (program) {
        ctx->stats.binary_cache_hits++;
        free(text);
        *out = program;
        return MCL_OK;
    }
    cl_int err;
    const char *sources[1] = {text};
    program = clCreateProgramWithSource(ctx->cl, 1, sources, NULL, &err);
    free(text);
    if (err != CL_SUCCESS) return mcl_fail_cl(err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &ctx->device.id, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        mcl_status status = build_failure(ctx, program, source, options, err);
        clReleaseProgram(program);
        return status;
    }
    ctx->stats.programs_built++;
    mcl_log(MCL_LOG_DEBUG, "built %s with '%s'", source, options);
    mcl_binary_cache_store(ctx, key, program);
    *out = program;
    return MCL_OK;
}

static mcl_program_entry *find_built(mcl_context *ctx, const char *source, const char *options)
{
    for (mcl_program_entry *e = ctx->programs; e; e = e->next)
        if (strcmp(e->source, source) == 0 && strcmp(e->options, options) == 0) return e;
    return NULL;
}

static void free_entry(mcl_program_entry *entry)
{
    for (size_t i = 0; i < entry->kernel_count; i++) {
        clReleaseKernel(entry->kernels[i]);
        free(entry->kernel_names[i]);
    }
    clReleaseProgram(entry->program);
    free(entry->source);
    free(entry->options);
    free(entry);
}

static mcl_status find_entry(mcl_context *ctx, const mcl_family *family, const char *source,
                             const mcl_defines *defines, mcl_program_entry **out)
{
    char options[OPTIONS_CAP];
    MCL_TRY(mcl_program_options(ctx, defines, options, sizeof options));
    mcl_program_entry *built = find_built(ctx, source, options);
    if (built) {
        ctx->stats.program_cache_hits++;
        *out = built;
        return MCL_OK;
    }
    mcl_program_entry *entry = calloc(1, sizeof *entry);
    if (!entry) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "allocating a program cache entry");
    entry->source = strdup(source);
    entry->options = strdup(options);
    mcl_status status = entry->source && entry->options
                            ? build_program(ctx, family, source, options, &entry->program)
                            : mcl_fail(MCL_ERR_OUT_OF_MEMORY, "copying program options");
    if (status != MCL_OK) {
        free(entry->source);
        free(entry->options);
        free(entry);
        return status;
    }
    entry->next = ctx->programs;
    ctx->programs = entry;
    *out = entry;
    return MCL_OK;
}

mcl_status mcl_program_get(mcl_context *ctx, const mcl_family *family, const char *source,
                           const mcl_defines *defines, cl_program *program)
{
    mcl_program_entry *entry;
    MCL_TRY(find_entry(ctx, family, source, defines, &entry));
    *program = entry->program;
    return MCL_OK;
}

/* At debug level, a new kernel's private memory a work-item and local memory as the driver
 * reports them: on a GPU, private memory is what the compiler did not keep in registers (arrays
 * behind loops it left rolled, spills), which no timing shows by itself. */
static void log_kernel_memory(const mcl_context *ctx, cl_kernel kernel, const char *source, const char *name)
{
    cl_ulong private_bytes = 0, local_bytes = 0;
    clGetKernelWorkGroupInfo(kernel, ctx->device.id, CL_KERNEL_PRIVATE_MEM_SIZE, sizeof private_bytes,
                             &private_bytes, NULL);
    clGetKernelWorkGroupInfo(kernel, ctx->device.id, CL_KERNEL_LOCAL_MEM_SIZE, sizeof local_bytes, &local_bytes,
                             NULL);
    mcl_log(MCL_LOG_DEBUG, "kernel %s of %s: %llu bytes of private memory a work-item, %llu of local memory",
            name, source, (unsigned long long)private_bytes, (unsigned long long)local_bytes);
}

mcl_status mcl_kernel_get(mcl_context *ctx, const mcl_family *family, const char *source,
                          const mcl_defines *defines, const char *kernel_name, cl_kernel *kernel)
{
    mcl_program_entry *entry;
    MCL_TRY(find_entry(ctx, family, source, defines, &entry));
    for (size_t i = 0; i < entry->kernel_count; i++) {
        if (strcmp(entry->kernel_names[i], kernel_name) == 0) {
            *kernel = entry->kernels[i];
            return MCL_OK;
        }
    }
    if (entry->kernel_count == MAX_KERNELS_PER_PROGRAM)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "too many kernels requested from %s", source);
    cl_int err;
    cl_kernel created = clCreateKernel(entry->program, kernel_name, &err);
    if (err != CL_SUCCESS) return mcl_fail_cl(err, kernel_name);
    char *name = strdup(kernel_name);
    if (!name) {
        clReleaseKernel(created);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "copying a kernel name");
    }
    entry->kernel_names[entry->kernel_count] = name;
    entry->kernels[entry->kernel_count++] = created;
    log_kernel_memory(ctx, created, source, name);
    *kernel = created;
    return MCL_OK;
}

void mcl_program_cache_adopt(mcl_context *to, mcl_context *from)
{
    while (from->programs) {
        mcl_program_entry *entry = from->programs;
        from->programs = entry->next;
        if (find_built(to, entry->source, entry->options)) {
            free_entry(entry);
            continue;
        }
        entry->next = to->programs;
        to->programs = entry;
    }
}

void mcl_program_cache_clear(mcl_context *ctx)
{
    while (ctx->programs) {
        mcl_program_entry *entry = ctx->programs;
        ctx->programs = entry->next;
        free_entry(entry);
    }
}

mcl_status mcl_set_args(cl_kernel kernel, const mcl_arg *args, size_t count, const char *what)
{
    for (size_t i = 0; i < count; i++) {
        cl_int err = clSetKernelArg(kernel, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) {
            char where[160];
            snprintf(where, sizeof where, "clSetKernelArg(%.120s, %zu)", what, i);
            return mcl_fail_cl(err, where);
        }
    }
    return MCL_OK;
}
