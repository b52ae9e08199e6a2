/* megacl peak: the device ceilings that bench figures are compared with, measured and stored
 * beside the tuning database (peak.json), one entry per device and driver:
 *   copy       device-to-device copy of random bytes (no pattern a memory compressor could
 *              shrink), bytes read + written
 *   fp32 FMA   chains of 16-wide vector multiply-adds, enough independent ones to hide latency
 *              on a GPU and to fill a CPU's vector units through PoCL
 *   launch     host time of one empty kernel launch waited for
 *   mma bf16   inline-PTX mma.sync from registers, only where the device's probe passed */
#include "cli.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FMA_ITERATIONS 1024
#define FMA_FLOPS_PER_ITEM (4.0 * 16.0 * 2.0 * FMA_ITERATIONS)
static const char fma_source[] =
    "__kernel void fma_chain(__global float *out, float a, float b)\n"
    "{\n"
    "    float16 x0 = (float16)(get_global_id(0) * 1e-7f), x1 = x0 + 1.0f, x2 = x0 + 2.0f, x3 = x0 + 3.0f;\n"
    "    for (int i = 0; i < 1024; i++) {\n"
    "        x0 = mad(x0, a, b); x1 = mad(x1, a, b); x2 = mad(x2, a, b); x3 = mad(x3, a, b);\n"
    "    }\n"
    "    float16 s = x0 + x1 + x2 + x3;\n"
    "    float8 h = s.lo + s.hi;\n"
    "    float4 q = h.lo + h.hi;\n"
    "    out[get_global_id(0)] = q.x + q.y + q.z + q.w;\n"
    "}\n";

static const char launch_source[] = "__kernel void empty(__global float *out) { if (get_global_id(0) == 1u << 30) out[0] = 0; }\n";

/* A warp keeps 8 accumulators of m16n8k16 bf16 products in registers: 4096 flops an instruction. */
#define MMA_ITERATIONS 2048
#define MMA_FLOPS_PER_WARP (8.0 * 4096.0 * MMA_ITERATIONS)
#define MMA(j)                                                                                              \
    "        asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, " \
    "{%8,%9}, {%0,%1,%2,%3};\" : \"+f\"(d" #j "[0]), \"+f\"(d" #j "[1]), \"+f\"(d" #j "[2]), \"+f\"(d" #j     \
    "[3]) : \"r\"(a0), \"r\"(a1), \"r\"(a2), \"r\"(a3), \"r\"(b0), \"r\"(b1));\n"
static const char mma_source[] =
    "__kernel void mma_loop(__global float *out, uint a0, uint b0)\n"
    "{\n"
    "    uint a1 = a0 ^ 1u, a2 = a0 ^ 2u, a3 = a0 ^ 3u, b1 = b0 ^ 1u;\n"
    "    float d0[4] = {0}, d1[4] = {0}, d2[4] = {0}, d3[4] = {0}, d4[4] = {0}, d5[4] = {0}, d6[4] = {0}, d7[4] = {0};\n"
    "    for (int i = 0; i < 2048; i++) {\n" MMA(0) MMA(1) MMA(2) MMA(3) MMA(4) MMA(5) MMA(6) MMA(7)
    "    }\n"
    "    float s = 0.0f;\n"
    "    for (int k = 0; k < 4; k++) s += d0[k] + d1[k] + d2[k] + d3[k] + d4[k] + d5[k] + d6[k] + d7[k];\n"
    "    out[get_global_id(0)] = s;\n"
    "}\n";

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, size_t n)
{
    qsort(values, n, sizeof *values, compare_doubles);
    return values[n / 2];
}

static double event_ms(cl_event event)
{
    cl_ulong start = 0, end = 0;
    clWaitForEvents(1, &event);
    clGetEventProfilingInfo(event, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL);
    clGetEventProfilingInfo(event, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
    clReleaseEvent(event);
    return (double)(end - start) * 1e-6;
}

static cl_mem random_buffer(mcl_context *ctx, size_t bytes)
{
    unsigned char *host = malloc(bytes);
    if (!host) return NULL;
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < bytes; i++) { /* xorshift: bytes no compressor can shrink */
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        host[i] = (unsigned char)(state >> 32);
    }
    cl_int err;
    cl_mem mem = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, host, &err);
    free(host);
    return err == CL_SUCCESS ? mem : NULL;
}

mcl_status measure_copy_bandwidth(mcl_context *ctx, double *gbps)
{
    enum { REPS = 10 };
    const mcl_device_info *info = mcl_context_device(ctx);
    size_t bytes = (size_t)256 << 20;
    if (bytes > info->max_alloc_bytes / 2) bytes = (size_t)(info->max_alloc_bytes / 2);
    cl_int err;
    cl_mem a = random_buffer(ctx, bytes);
    cl_mem b = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    mcl_status status = a && b ? MCL_OK : MCL_ERR_OUT_OF_MEMORY;
    double ms[REPS];
    for (int i = 0; status == MCL_OK && i < REPS + 2; i++) {
        cl_event event;
        if (clEnqueueCopyBuffer(mcl_context_queue(ctx), a, b, 0, 0, bytes, 0, NULL, &event) != CL_SUCCESS) {
            status = MCL_ERR_OPENCL;
            break;
        }
        double t = event_ms(event);
        if (i >= 2) ms[i - 2] = t; /* the first two warm up */
    }
    if (a) clReleaseMemObject(a);
    if (b) clReleaseMemObject(b);
    if (status != MCL_OK) return status;
    *gbps = 2.0 * (double)bytes / (median(ms, REPS) * 1e-3) * 1e-9;
    return MCL_OK;
}

/* A one-kernel program; NULL kernel when it does not build. */
static cl_kernel build_kernel(mcl_context *ctx, const char *source, const char *name, cl_program *program)
{
    cl_int err;
    cl_device_id device;
    clGetCommandQueueInfo(mcl_context_queue(ctx), CL_QUEUE_DEVICE, sizeof device, &device, NULL);
    *program = clCreateProgramWithSource(mcl_context_cl_context(ctx), 1, &source, NULL, &err);
    if (err != CL_SUCCESS) return NULL;
    if (clBuildProgram(*program, 1, &device, "", NULL, NULL) != CL_SUCCESS) return NULL;
    cl_kernel kernel = clCreateKernel(*program, name, &err);
    return err == CL_SUCCESS ? kernel : NULL;
}

/* Median device time of REPS launches of kernel over global x local items (one untimed first). */
static mcl_status time_kernel(mcl_context *ctx, cl_kernel kernel, size_t global, size_t local, double *ms)
{
    enum { REPS = 5 };
    double t[REPS];
    for (int i = 0; i < REPS + 1; i++) {
        cl_event event;
        if (clEnqueueNDRangeKernel(mcl_context_queue(ctx), kernel, 1, NULL, &global, &local, 0, NULL, &event) != CL_SUCCESS)
            return MCL_ERR_OPENCL;
        double one = event_ms(event);
        if (i > 0) t[i - 1] = one;
    }
    *ms = median(t, REPS);
    return MCL_OK;
}

/* Builds `source`, runs `name` over `items` work-items in groups of `local` with its leading
 * buffer argument and two 4-byte ones, and returns the median time; MCL_ERR_BUILD where it does
 * not build. */
static mcl_status run_chain(mcl_context *ctx, const char *source, const char *name, size_t items, size_t local,
                            const void *arg1, const void *arg2, double *ms)
{
    cl_program program = NULL;
    cl_kernel kernel = build_kernel(ctx, source, name, &program);
    cl_int err;
    cl_mem out = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &err);
    mcl_status status = !kernel ? MCL_ERR_BUILD : err != CL_SUCCESS ? MCL_ERR_OUT_OF_MEMORY : MCL_OK;
    if (status == MCL_OK) {
        clSetKernelArg(kernel, 0, sizeof out, &out);
        clSetKernelArg(kernel, 1, 4, arg1);
        clSetKernelArg(kernel, 2, 4, arg2);
        status = time_kernel(ctx, kernel, items, local, ms);
    }
    if (out) clReleaseMemObject(out);
    if (kernel) clReleaseKernel(kernel);
    if (program) clReleaseProgram(program);
    return status;
}

static size_t group_size(const mcl_device_info *info)
{
    return info->max_work_group_size < 256 ? info->max_work_group_size : 256;
}

mcl_status measure_fma_rate(mcl_context *ctx, double *gflops)
{
    const mcl_device_info *info = mcl_context_device(ctx);
    size_t local = group_size(info), global = (size_t)info->compute_units * (info->is_gpu ? 2048 : 256);
    global = (global + local - 1) / local * local;
    float a = 0.999f, b = 1e-3f;
    double ms;
    mcl_status status = run_chain(ctx, fma_source, "fma_chain", global, local, &a, &b, &ms);
    if (status == MCL_OK) *gflops = FMA_FLOPS_PER_ITEM * (double)global / (ms * 1e-3) * 1e-9;
    return status;
}

/* Host microseconds from enqueueing an empty kernel to having waited for it (median of 50). */
static mcl_status measure_launch(mcl_context *ctx, double *us)
{
    enum { REPS = 50 };
    cl_program program = NULL;
    cl_kernel kernel = build_kernel(ctx, launch_source, "empty", &program);
    cl_int err;
    cl_mem out = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_WRITE_ONLY, sizeof(float), NULL, &err);
    mcl_status status = kernel && out ? MCL_OK : MCL_ERR_OPENCL;
    double t[REPS];
    size_t one = 1;
    if (status == MCL_OK) clSetKernelArg(kernel, 0, sizeof out, &out);
    for (int i = 0; status == MCL_OK && i < REPS + 1; i++) {
        double start = cli_seconds();
        if (clEnqueueNDRangeKernel(mcl_context_queue(ctx), kernel, 1, NULL, &one, &one, 0, NULL, NULL) != CL_SUCCESS ||
            clFinish(mcl_context_queue(ctx)) != CL_SUCCESS)
            status = MCL_ERR_OPENCL;
        if (i > 0) t[i - 1] = (cli_seconds() - start) * 1e6;
    }
    if (status == MCL_OK) *us = median(t, REPS);
    if (out) clReleaseMemObject(out);
    if (kernel) clReleaseKernel(kernel);
    if (program) clReleaseProgram(program);
    return status;
}

/* bf16 tensor-core TFLOP/s from inline PTX; NaN where the probe did not pass. */
static mcl_status measure_mma(mcl_context *ctx, double *tflops)
{
    const mcl_device_info *info = mcl_context_device(ctx);
    *tflops = NAN;
    if (!info->has_mma_sync) return MCL_OK;
    size_t local = 128, global = (size_t)info->compute_units * 4 * local;
    cl_uint a = 0x3f803f80u, b = 0x3c003c00u;
    double ms;
    CLI_TRY(run_chain(ctx, mma_source, "mma_loop", global, local, &a, &b, &ms));
    *tflops = MMA_FLOPS_PER_WARP * (double)(global / 32) / (ms * 1e-3) * 1e-12;
    return MCL_OK;
}

mcl_status measure_ceilings(mcl_context *ctx, device_ceilings *c)
{
    *c = (device_ceilings){.launch_us = NAN, .mma_bf16_tflops = NAN};
    CLI_TRY(measure_copy_bandwidth(ctx, &c->copy_gbps));
    CLI_TRY(measure_fma_rate(ctx, &c->fma_gflops));
    CLI_TRY(measure_launch(ctx, &c->launch_us));
    return measure_mma(ctx, &c->mma_bf16_tflops);
}

/* ---- peak.json, beside the tuning database -------------------------------------------------- */

static int peak_path(char *out, size_t cap)
{
    char db[1100];
    if (mcl_tuning_db_path(db, sizeof db) != MCL_OK) return 0;
    char *slash = strrchr(db, '/');
    return snprintf(out, cap, "%.*speak.json", slash ? (int)(slash - db + 1) : 0, db) < (int)cap;
}

static int same_device(json_object *e, const mcl_device_info *d)
{
    json_object *name, *driver;
    return json_object_object_get_ex(e, "device", &name) && json_object_object_get_ex(e, "driver", &driver) &&
           strcmp(json_object_get_string(name), d->name) == 0 &&
           strcmp(json_object_get_string(driver), d->driver_version) == 0;
}

static double number_of(json_object *e, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(e, key, &v) ? json_object_get_double(v) : NAN;
}

int load_ceilings(const mcl_device_info *d, device_ceilings *c, char *date, size_t date_cap)
{
    char path[1200];
    json_object *root = peak_path(path, sizeof path) ? json_object_from_file(path) : NULL, *devices;
    int found = 0;
    if (root && json_object_object_get_ex(root, "devices", &devices) && json_object_is_type(devices, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(devices) && !found; i++) {
            json_object *e = json_object_array_get_idx(devices, i), *when;
            if (!same_device(e, d)) continue;
            *c = (device_ceilings){number_of(e, "copy_gbps"), number_of(e, "fma_gflops"), number_of(e, "launch_us"),
                                   number_of(e, "mma_bf16_tflops")};
            found = isfinite(c->copy_gbps) && isfinite(c->fma_gflops);
            snprintf(date, date_cap, "%s", json_object_object_get_ex(e, "date", &when) ? json_object_get_string(when) : "");
        }
    }
    json_object_put(root);
    return found;
}

static void add_number(json_object *o, const char *key, double v)
{
    if (isfinite(v)) json_object_object_add(o, key, json_object_new_double(v));
}

/* Replaces the device's entry; written to a temporary file and renamed. */
static int store_ceilings(const mcl_device_info *d, const device_ceilings *c, char *path, size_t cap)
{
    if (!peak_path(path, cap)) return 0;
    json_object *root = json_object_from_file(path), *devices = NULL, *kept = json_object_new_array();
    if (!root || !json_object_object_get_ex(root, "devices", &devices)) {
        json_object_put(root);
        root = json_object_new_object();
    }
    for (size_t i = 0; devices && i < json_object_array_length(devices); i++) {
        json_object *e = json_object_array_get_idx(devices, i);
        if (!same_device(e, d)) json_object_array_add(kept, json_object_get(e));
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    json_object *e = json_object_new_object();
    json_object_object_add(e, "device", json_object_new_string(d->name));
    json_object_object_add(e, "driver", json_object_new_string(d->driver_version));
    json_object_object_add(e, "date", json_object_new_string(date));
    add_number(e, "copy_gbps", c->copy_gbps);
    add_number(e, "fma_gflops", c->fma_gflops);
    add_number(e, "launch_us", c->launch_us);
    add_number(e, "mma_bf16_tflops", c->mma_bf16_tflops);
    json_object_array_add(kept, e);
    json_object_object_add(root, "devices", kept);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    int ok = json_object_to_file_ext(tmp, root, JSON_C_TO_STRING_PRETTY) == 0 && rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    json_object_put(root);
    return ok;
}

int cmd_peak(int argc, char **argv)
{
    cli_option o[2] = {{.name = "--device", .takes_value = 1}, {.name = "--help"}};
    if (!cli_parse(argc, argv, 1, o, 2, "peak")) return 2;
    if (o[1].given) {
        printf("usage: megacl peak [--device SEL]   measure the device's ceilings and store them for megacl bench\n");
        return 0;
    }
    mcl_context *ctx;
    mcl_status status = mcl_context_create(o[0].value, &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    const mcl_device_info *d = mcl_context_device(ctx);
    device_ceilings c;
    if ((status = measure_ceilings(ctx, &c)) != MCL_OK) {
        mcl_context_release(ctx);
        return cli_fail("measuring ceilings", status);
    }
    printf("device: %s (%s, %s)\n", d->name, mcl_vendor_name(d->vendor), d->arch);
    printf("copy bandwidth:  %.1f GB/s (random bytes, read + write, median of 10)\n", c.copy_gbps);
    printf("fp32 FMA rate:   %.1f GFLOP/s (median of 5)\n", c.fma_gflops);
    printf("kernel launch:   %.1f us (empty kernel enqueued and waited for, median of 50)\n", c.launch_us);
    if (isfinite(c.mma_bf16_tflops)) printf("bf16 mma.sync:   %.1f TFLOP/s (inline PTX, registers only)\n", c.mma_bf16_tflops);
    else printf("bf16 mma.sync:   not available (the device's probe did not pass)\n");
    char path[1200];
    int stored = store_ceilings(d, &c, path, sizeof path);
    printf(stored ? "stored in %s; megacl bench reports fractions of these\n" : "could not store them in %s\n", path);
    mcl_context_release(ctx);
    return stored ? 0 : 1;
}
