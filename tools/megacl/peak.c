/* megacl peak: the device ceilings that bench figures are compared with. */
#include "cli.h"

#include <stdlib.h>

/* Long chains of independent FMAs, enough to hide latency; 8 chains x 2 flops x ITER. */
static const char fma_source[] =
    "__kernel void fma_chain(__global float *out, float a, float b)\n"
    "{\n"
    "    float x0 = get_global_id(0) * 1e-7f, x1 = x0 + 1, x2 = x0 + 2, x3 = x0 + 3;\n"
    "    float x4 = x0 + 4, x5 = x0 + 5, x6 = x0 + 6, x7 = x0 + 7;\n"
    "    for (int i = 0; i < 1024; i++) {\n"
    "        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);\n"
    "        x4 = fma(x4, a, b); x5 = fma(x5, a, b); x6 = fma(x6, a, b); x7 = fma(x7, a, b);\n"
    "    }\n"
    "    out[get_global_id(0)] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;\n"
    "}\n";
#define FMA_FLOPS_PER_ITEM (8.0 * 2.0 * 1024.0)

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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

mcl_status measure_copy_bandwidth(mcl_context *ctx, double *gbps)
{
    enum { REPS = 10 };
    const mcl_device_info *info = mcl_context_device(ctx);
    size_t bytes = (size_t)256 << 20;
    if (bytes > info->max_alloc_bytes / 2) bytes = (size_t)(info->max_alloc_bytes / 2);
    cl_int err;
    cl_mem a = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    cl_mem b = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    mcl_status status = a && b ? MCL_OK : MCL_ERR_OUT_OF_MEMORY;
    double ms[REPS];
    unsigned char pattern = 0x5a;
    if (status == MCL_OK)
        clEnqueueFillBuffer(mcl_context_queue(ctx), a, &pattern, 1, 0, bytes, 0, NULL, NULL);
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
    qsort(ms, REPS, sizeof ms[0], compare_doubles);
    *gbps = 2.0 * (double)bytes / (ms[REPS / 2] * 1e-3) * 1e-9;
    return MCL_OK;
}

mcl_status measure_fma_rate(mcl_context *ctx, double *gflops)
{
    enum { REPS = 5 };
    const mcl_device_info *info = mcl_context_device(ctx);
    size_t local = 256 <= info->max_work_group_size ? 256 : info->max_work_group_size;
    size_t global = (size_t)info->compute_units * 2048;
    global = (global + local - 1) / local * local;
    const char *src = fma_source;
    cl_int err;
    cl_program program = clCreateProgramWithSource(mcl_context_cl_context(ctx), 1, &src, NULL, &err);
    if (err != CL_SUCCESS) return MCL_ERR_OPENCL;
    cl_device_id device;
    clGetCommandQueueInfo(mcl_context_queue(ctx), CL_QUEUE_DEVICE, sizeof device, &device, NULL);
    mcl_status status = clBuildProgram(program, 1, &device, "", NULL, NULL) == CL_SUCCESS ? MCL_OK : MCL_ERR_BUILD;
    cl_kernel kernel = status == MCL_OK ? clCreateKernel(program, "fma_chain", &err) : NULL;
    cl_mem out = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_WRITE_ONLY, global * sizeof(float), NULL, &err);
    float a = 0.999f, b = 1e-3f;
    double ms[REPS];
    if (kernel && out) {
        clSetKernelArg(kernel, 0, sizeof out, &out);
        clSetKernelArg(kernel, 1, sizeof a, &a);
        clSetKernelArg(kernel, 2, sizeof b, &b);
        for (int i = 0; i < REPS + 1 && status == MCL_OK; i++) {
            cl_event event;
            if (clEnqueueNDRangeKernel(mcl_context_queue(ctx), kernel, 1, NULL, &global, &local, 0, NULL, &event) != CL_SUCCESS)
                status = MCL_ERR_OPENCL;
            else if (i > 0)
                ms[i - 1] = event_ms(event);
            else
                event_ms(event);
        }
    } else if (status == MCL_OK) {
        status = MCL_ERR_OPENCL;
    }
    if (out) clReleaseMemObject(out);
    if (kernel) clReleaseKernel(kernel);
    clReleaseProgram(program);
    if (status != MCL_OK) return status;
    qsort(ms, REPS, sizeof ms[0], compare_doubles);
    *gflops = FMA_FLOPS_PER_ITEM * (double)global / (ms[REPS / 2] * 1e-3) * 1e-9;
    return MCL_OK;
}

int cmd_peak(int argc, char **argv)
{
    cli_option device_option = {.name = "--device", .takes_value = 1};
    if (!cli_parse(argc, argv, 1, &device_option, 1, "peak")) return 2;
    mcl_context *ctx;
    mcl_status status = mcl_context_create(device_option.value, &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    double gbps = 0, gflops = 0;
    if ((status = measure_copy_bandwidth(ctx, &gbps)) != MCL_OK ||
        (status = measure_fma_rate(ctx, &gflops)) != MCL_OK) {
        mcl_context_release(ctx);
        return cli_fail("measuring ceilings", status);
    }
    printf("device: %s (%s)\n", mcl_context_device(ctx)->name, mcl_context_device(ctx)->arch);
    printf("copy bandwidth: %.1f GB/s (read + write, median of 10)\n", gbps);
    printf("fp32 FMA rate:  %.1f GFLOP/s (median of 5)\n", gflops);
    mcl_context_release(ctx);
    return 0;
}
