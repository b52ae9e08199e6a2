/* The context: a device, its cl_context and in-order queue, and what the library keeps per
 * context (program cache, workspace, parameter overrides, tuning database, profiling). */
#ifndef MCL_RUNTIME_CONTEXT_H
#define MCL_RUNTIME_CONTEXT_H

#include "megacl.h"

#include "device.h"

typedef struct mcl_program_entry mcl_program_entry;
typedef struct mcl_tuning_db mcl_tuning_db;
typedef struct mcl_override mcl_override;

/* A parameter lookup an op made while the context recorded them (mcl_context_trace_lookups):
 * which family, dtype and shape bucket its calls run with. */
typedef struct mcl_lookup_record {
    const struct mcl_family *family;
    mcl_dtype dtype;
    char bucket[64];
    size_t shape[8];
} mcl_lookup_record;

/* The outputs of the op call validated last, kept for on-demand tuning (MEGACL_TUNE=ondemand),
 * which reruns the call and compares them. */
typedef struct mcl_call_output {
    const char *name;
    mcl_tensor tensor;
    mcl_dtype dtype;
    size_t count;
} mcl_call_output;

typedef struct mcl_call_outputs {
    mcl_call_output items[32];
    size_t count;
    int in_place; /* an output is an input: the call cannot run twice */
} mcl_call_outputs;

typedef struct mcl_binary_cache_config {
    int enabled;
    char dir[1024]; /* where binaries live; "" when enabled is 0 */
} mcl_binary_cache_config;

struct mcl_context {
    mcl_device device;
    cl_context cl;
    cl_command_queue queue;
    int profiling; /* the queue has CL_QUEUE_PROFILING_ENABLE */

    mcl_program_entry *programs; /* in-memory program cache, a list */
    mcl_binary_cache_config binary_cache;
    mcl_context_stats stats;

    cl_mem workspace; /* grows on demand; stats.workspace_bytes is its size */

    mcl_override *overrides; /* parameter overrides per family or bucket (tuner, bench, tests) */
    mcl_tuning_db *user_db, *builtin_db;
    int dbs_loaded;
    int tune_mode; /* how lookups use the databases (MEGACL_TUNE): an mcl_tune_mode */
    int allow_tf32; /* f32 GEMMs may take the tensor cores in tf32 (mcl_context_allow_tf32) */

    int trace_lookups; /* record the distinct lookups ops make */
    mcl_lookup_record *lookups;
    size_t lookup_count, lookup_capacity;

    /* Ops build their programs and take their plans but enqueue nothing and take no workspace:
     * the tuner's compile threads prepare candidates on contexts of their own this way. */
    int prepare_only;
    int tuning; /* a tuning run is under way on this context: no on-demand tuning inside it */
    mcl_call_outputs call;

    cl_event last_event; /* the last command an op enqueued, handed to the caller on request */
    int tracing;         /* profiling window open: keep every event */
    cl_event *trace;
    const char **trace_names; /* the kernel each traced event ran, for the debug log */
    size_t trace_count, trace_capacity;
};

/* Enqueues a 1-3 dimensional kernel launch; `what` names it in errors. The global size must be
 * a multiple of the local size (callers round up and guard). */
mcl_status mcl_enqueue(mcl_context *ctx, cl_kernel kernel, cl_uint dims, const size_t *global,
                       const size_t *local, const char *what); /* `what`: a string literal */

/* At the end of an op: gives the caller the op's last event if it asked for one. */
void mcl_hand_event(mcl_context *ctx, cl_event *event);

/* A scratch buffer of at least `bytes` owned by the context (valid until the next call that
 * asks for workspace; the queue is in order, so commands already enqueued are safe). */
mcl_status mcl_workspace(mcl_context *ctx, size_t bytes, cl_mem *buffer);

/* Several scratch regions in one workspace buffer: byte offsets of each part (256-byte
 * aligned). Kernels take the buffer and an offset per part; sub-buffers are avoided because
 * creating them stalled NVIDIA's queue in proportion to their size. */
mcl_status mcl_workspace_parts(mcl_context *ctx, const size_t *bytes, size_t count, cl_mem *buffer,
                               size_t *offsets);

/* Grows a part's size to `bytes`: for a part that several steps use one after another on the
 * in-order queue, each needing its own amount. */
static inline void mcl_part_grow(size_t *part, size_t bytes)
{
    if (bytes > *part) *part = bytes;
}

/* The workspace bytes mcl_workspace_parts takes for these sizes. */
size_t mcl_workspace_parts_size(const size_t *bytes, size_t count);

#endif
