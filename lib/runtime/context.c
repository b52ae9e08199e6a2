/* Contexts: creation from a selector or a caller's queue, stats, workspace, profiling window. */
#include "context.h"

#include "binary_cache.h"
#include "error.h"
#include "params.h"
#include "program.h"

#include <stdlib.h>
#include <string.h>

static mcl_status context_alloc(mcl_context **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? MCL_OK : mcl_fail(MCL_ERR_OUT_OF_MEMORY, "allocating a context");
}

static mcl_status context_finish_setup(mcl_context *ctx)
{
    cl_command_queue_properties props = 0;
    MCL_CL_TRY(clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL),
               "clGetCommandQueueInfo");
    if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT,
                        "the queue is out of order; megacl ops need an in-order queue");
    ctx->profiling = (props & CL_QUEUE_PROFILING_ENABLE) != 0;
    MCL_TRY(mcl_params_configure(ctx));
    mcl_binary_cache_configure(&ctx->binary_cache, &ctx->device.info);
    mcl_log(MCL_LOG_INFO, "context on %u:%u %s (%s, %s), binary cache %s",
            ctx->device.info.platform_index, ctx->device.info.device_index, ctx->device.info.name,
            mcl_vendor_name(ctx->device.info.vendor), ctx->device.info.arch,
            ctx->binary_cache.enabled ? ctx->binary_cache.dir : "off");
    return MCL_OK;
}

mcl_status mcl_context_create(const char *selector, mcl_context **context)
{
    if (!context) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_create: context is NULL");
    *context = NULL;
    mcl_context *ctx;
    MCL_TRY(context_alloc(&ctx));
    mcl_status status = mcl_device_select(selector, &ctx->device);
    cl_int err = CL_SUCCESS;
    if (status == MCL_OK) {
        ctx->cl = clCreateContext(NULL, 1, &ctx->device.id, NULL, NULL, &err);
        if (err != CL_SUCCESS) status = mcl_fail_cl(err, "clCreateContext");
    }
    if (status == MCL_OK) {
        ctx->queue = clCreateCommandQueue(ctx->cl, ctx->device.id, CL_QUEUE_PROFILING_ENABLE, &err);
        if (err != CL_SUCCESS) status = mcl_fail_cl(err, "clCreateCommandQueue");
    }
    if (status == MCL_OK) status = context_finish_setup(ctx);
    if (status != MCL_OK) {
        mcl_context_release(ctx);
        return status;
    }
    *context = ctx;
    return MCL_OK;
}

/* The platform and device indices of an adopted device, as enumeration numbers them. */
static void find_indices(mcl_device *device)
{
    mcl_device *all;
    size_t count;
    device->info.platform_index = device->info.device_index = (unsigned)-1;
    if (mcl_devices_enumerate(&all, &count) != MCL_OK) return;
    for (size_t i = 0; i < count; i++) {
        if (all[i].id == device->id) {
            device->info.platform_index = all[i].info.platform_index;
            device->info.device_index = all[i].info.device_index;
        }
    }
    free(all);
}

mcl_status mcl_context_create_from_queue(cl_command_queue queue, mcl_context **context)
{
    if (!context) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_create_from_queue: context is NULL");
    *context = NULL;
    if (!queue) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_create_from_queue: queue is NULL");
    mcl_context *ctx;
    MCL_TRY(context_alloc(&ctx));
    mcl_status status = MCL_OK;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof ctx->cl, &ctx->cl, NULL);
    if (err == CL_SUCCESS)
        err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof ctx->device.id, &ctx->device.id,
                                    NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(ctx->device.id, CL_DEVICE_PLATFORM, sizeof ctx->device.platform,
                              &ctx->device.platform, NULL);
    if (err != CL_SUCCESS) {
        ctx->cl = NULL; /* not retained yet: release must not drop the caller's reference */
        status = mcl_fail_cl(err, "querying the adopted queue");
    }
    if (status == MCL_OK) {
        clRetainContext(ctx->cl);
        clRetainCommandQueue(queue);
        ctx->queue = queue;
        status = mcl_device_describe(ctx->device.platform, ctx->device.id, &ctx->device.info);
    }
    if (status == MCL_OK) {
        find_indices(&ctx->device);
        status = context_finish_setup(ctx);
    }
    if (status != MCL_OK) {
        mcl_context_release(ctx);
        return status;
    }
    *context = ctx;
    return MCL_OK;
}

static void trace_clear(mcl_context *ctx)
{
    for (size_t i = 0; i < ctx->trace_count; i++) clReleaseEvent(ctx->trace[i]);
    ctx->trace_count = 0;
}

void mcl_context_release(mcl_context *ctx)
{
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    trace_clear(ctx);
    free(ctx->trace);
    free(ctx->trace_names);
    free(ctx->lookups);
    if (ctx->last_event) clReleaseEvent(ctx->last_event);
    mcl_program_cache_clear(ctx);
    mcl_params_release(ctx);
    if (ctx->workspace) clReleaseMemObject(ctx->workspace);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl) clReleaseContext(ctx->cl);
    free(ctx);
}

cl_context mcl_context_cl_context(const mcl_context *ctx) { return ctx ? ctx->cl : NULL; }
cl_command_queue mcl_context_queue(const mcl_context *ctx) { return ctx ? ctx->queue : NULL; }
const mcl_device_info *mcl_context_device(const mcl_context *ctx)
{
    return ctx ? &ctx->device.info : NULL;
}

mcl_status mcl_finish(mcl_context *ctx)
{
    if (!ctx) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_finish: context is NULL");
    MCL_CL_TRY(clFinish(ctx->queue), "clFinish");
    return MCL_OK;
}

void mcl_context_get_stats(const mcl_context *ctx, mcl_context_stats *stats)
{
    if (ctx && stats) *stats = ctx->stats;
}

void mcl_context_reset_peak(mcl_context *ctx)
{
    if (ctx) ctx->stats.workspace_peak_bytes = ctx->stats.workspace_bytes;
}

mcl_status mcl_context_allow_tf32(mcl_context *ctx, int allow)
{
    if (!ctx) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_allow_tf32: context is NULL");
    ctx->allow_tf32 = allow != 0;
    return MCL_OK;
}

int mcl_context_tf32_allowed(const mcl_context *ctx) { return ctx && ctx->allow_tf32; }

mcl_status mcl_context_trim(mcl_context *ctx)
{
    if (!ctx) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_context_trim: context is NULL");
    if (ctx->workspace) clReleaseMemObject(ctx->workspace); /* freed once commands finish */
    ctx->workspace = NULL;
    ctx->stats.workspace_bytes = 0;
    return MCL_OK;
}

mcl_status mcl_workspace(mcl_context *ctx, size_t bytes, cl_mem *buffer)
{
    if (ctx->prepare_only) { /* nothing runs: kernels get a NULL buffer, which OpenCL allows */
        *buffer = NULL;
        return MCL_OK;
    }
    if (bytes == 0) bytes = 1;
    if (ctx->workspace && ctx->stats.workspace_bytes >= bytes) {
        *buffer = ctx->workspace;
        return MCL_OK;
    }
    if (bytes > ctx->device.info.max_alloc_bytes)
        return mcl_fail(MCL_ERR_DEVICE_LIMIT,
                        "workspace of %zu bytes exceeds the device's largest allocation (%llu)",
                        bytes, (unsigned long long)ctx->device.info.max_alloc_bytes);
    mcl_context_trim(ctx);
    cl_int err;
    ctx->workspace = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        ctx->workspace = NULL;
        return mcl_fail_cl(err, "allocating workspace");
    }
    ctx->stats.workspace_bytes = bytes;
    if (bytes > ctx->stats.workspace_peak_bytes) ctx->stats.workspace_peak_bytes = bytes;
    *buffer = ctx->workspace;
    return MCL_OK;
}

#define PART_ALIGN 256 /* keeps every part aligned for any vector type */

size_t mcl_workspace_parts_size(const size_t *bytes, size_t count)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += (bytes[i] + PART_ALIGN - 1) / PART_ALIGN * PART_ALIGN;
    return total;
}

mcl_status mcl_workspace_parts(mcl_context *ctx, const size_t *bytes, size_t count, cl_mem *buffer,
                               size_t *offsets)
{
    size_t origin = 0;
    for (size_t i = 0; i < count; i++) {
        offsets[i] = origin;
        origin += (bytes[i] + PART_ALIGN - 1) / PART_ALIGN * PART_ALIGN;
    }
    return mcl_workspace(ctx, origin, buffer);
}

static mcl_status trace_push(mcl_context *ctx, cl_event event, const char *name)
{
    if (ctx->trace_count == ctx->trace_capacity) {
        size_t capacity = ctx->trace_capacity ? 2 * ctx->trace_capacity : 16;
        cl_event *grown = realloc(ctx->trace, capacity * sizeof *grown);
        if (grown) ctx->trace = grown;
        const char **names = realloc(ctx->trace_names, capacity * sizeof *names);
        if (names) ctx->trace_names = names;
        if (!grown || !names) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "growing the profiling trace");
        ctx->trace_capacity = capacity;
    }
    clRetainEvent(event);
    ctx->trace_names[ctx->trace_count] = name;
    ctx->trace[ctx->trace_count++] = event;
    return MCL_OK;
}

mcl_status mcl_enqueue(mcl_context *ctx, cl_kernel kernel, cl_uint dims, const size_t *global,
                       const size_t *local, const char *what)
{
    if (ctx->prepare_only) return MCL_OK;
    cl_event event;
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0, NULL,
                                        &event);
    if (err != CL_SUCCESS) return mcl_fail_cl(err, what);
    if (ctx->last_event) clReleaseEvent(ctx->last_event);
    ctx->last_event = event;
    return ctx->tracing ? trace_push(ctx, event, what) : MCL_OK;
}

void mcl_hand_event(mcl_context *ctx, cl_event *event)
{
    if (!event) return;
    *event = ctx->last_event;
    if (*event) clRetainEvent(*event);
}

mcl_status mcl_profile_begin(mcl_context *ctx)
{
    if (!ctx) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_profile_begin: context is NULL");
    if (!ctx->profiling)
        return mcl_fail(MCL_ERR_UNSUPPORTED,
                        "profiling needs a queue created with CL_QUEUE_PROFILING_ENABLE");
    trace_clear(ctx);
    ctx->tracing = 1;
    return MCL_OK;
}

mcl_status mcl_profile_add_named_event(mcl_context *ctx, cl_event event, const char *name)
{
    if (!ctx || !event || !name) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_profile_add_named_event: NULL argument");
    return ctx->tracing ? trace_push(ctx, event, name) : MCL_OK;
}

mcl_status mcl_profile_add_event(mcl_context *ctx, cl_event event)
{
    if (!ctx || !event) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_profile_add_event: NULL argument");
    return mcl_profile_add_named_event(ctx, event, "external");
}

mcl_status mcl_profile_end(mcl_context *ctx, double *milliseconds)
{
    return mcl_profile_end_kernels(ctx, milliseconds, NULL, 0, NULL);
}

mcl_status mcl_profile_end_kernels(mcl_context *ctx, double *milliseconds, mcl_profile_kernel *kernels,
                                   size_t capacity, size_t *count)
{
    if (!ctx || !milliseconds) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_profile_end: NULL argument");
    if (count) *count = 0;
    ctx->tracing = 0;
    *milliseconds = 0.0;
    if (ctx->trace_count == 0) return MCL_OK;
    MCL_CL_TRY(clWaitForEvents((cl_uint)ctx->trace_count, ctx->trace), "clWaitForEvents");
    cl_ulong first = (cl_ulong)-1, last = 0;
    for (size_t i = 0; i < ctx->trace_count; i++) {
        cl_ulong start, end;
        MCL_CL_TRY(clGetEventProfilingInfo(ctx->trace[i], CL_PROFILING_COMMAND_START,
                                           sizeof start, &start, NULL),
                   "clGetEventProfilingInfo(START)");
        MCL_CL_TRY(clGetEventProfilingInfo(ctx->trace[i], CL_PROFILING_COMMAND_END, sizeof end,
                                           &end, NULL),
                   "clGetEventProfilingInfo(END)");
        if (start < first) first = start;
        if (end > last) last = end;
        double ms = (double)(end - start) * 1e-6;
        mcl_log(MCL_LOG_DEBUG, "profile: %s %.4f ms", ctx->trace_names[i], ms);
        if (i < capacity) kernels[i] = (mcl_profile_kernel){ctx->trace_names[i], ms};
    }
    if (count) *count = ctx->trace_count;
    trace_clear(ctx);
    *milliseconds = (double)(last - first) * 1e-6;
    return MCL_OK;
}
