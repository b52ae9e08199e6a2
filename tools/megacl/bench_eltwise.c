/* The elementwise kernels of the unfused baselines, one operation per launch as a framework's
 * eager mode runs them (fp32): sigmoid, SiLU, their backwards and products, over flat arrays or
 * over one half of each row of a [rows, 2F] matrix. */
#include "bench.h"

#include "runtime/error.h"

/* Element i of a view (bench.h, bench_view). */
static const char eltwise_source[] =
    "inline ulong at(ulong i, ulong cols, ulong stride, ulong shift, ulong broadcast)\n"
    "{ return cols ? i / cols * stride + shift + (broadcast ? 0 : i % cols) : i; }\n"
    "#define VIEW(p) p, ulong p##_cols, ulong p##_stride, ulong p##_shift, ulong p##_bcast\n"
    "#define AT(p, i) p[at(i, p##_cols, p##_stride, p##_shift, p##_bcast)]\n"
    "__kernel void k_sigmoid(__global const float *VIEW(x), __global float *VIEW(y), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) AT(y, i) = 1.0f / (1.0f + exp(-AT(x, i))); }\n"
    "__kernel void k_silu(__global const float *VIEW(x), __global float *VIEW(y), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) { float v = AT(x, i); AT(y, i) = v / (1.0f + exp(-v)); } }\n"
    "__kernel void k_mul(__global const float *VIEW(a), __global const float *VIEW(b), __global float *VIEW(y),\n"
    "                    ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) AT(y, i) = AT(a, i) * AT(b, i); }\n"
    "/* dx = dy * s * (1 - s), s = sigmoid(x) saved by the forward */\n"
    "__kernel void k_sigmoid_backward(__global const float *VIEW(dy), __global const float *VIEW(s),\n"
    "                                 __global float *VIEW(dx), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) { float v = AT(s, i); AT(dx, i) = AT(dy, i) * v * (1.0f - v); } }\n"
    "/* dx = dy * sigmoid(x) * (1 + x * (1 - sigmoid(x))) */\n"
    "__kernel void k_silu_backward(__global const float *VIEW(dy), __global const float *VIEW(x),\n"
    "                              __global float *VIEW(dx), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) { float v = AT(x, i), s = 1.0f / (1.0f + exp(-v));\n"
    "  AT(dx, i) = AT(dy, i) * s * (1.0f + v * (1.0f - s)); } }\n";

bench_view bench_flat(cl_mem mem) { return (bench_view){mem, 0, 0, 0, 0}; }

bench_view bench_block(cl_mem mem, size_t stride, size_t shift, size_t cols)
{
    return (bench_view){mem, cols, stride, shift, 0};
}

bench_view bench_per_row(cl_mem mem, size_t cols) { return (bench_view){mem, cols, 1, 0, 1}; }

mcl_status bench_unfused_dtype(mcl_dtype dtype)
{
    if (dtype == MCL_F32) return MCL_OK;
    return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "fp32 only: CLBlast has no %s GEMM", mcl_dtype_name(dtype));
}

cl_program bench_eltwise_program(mcl_context *ctx)
{
    cl_device_id device;
    cl_int err = clGetCommandQueueInfo(mcl_context_queue(ctx), CL_QUEUE_DEVICE, sizeof device, &device, NULL);
    const char *src = eltwise_source;
    cl_program p = err == CL_SUCCESS ? clCreateProgramWithSource(mcl_context_cl_context(ctx), 1, &src, NULL, &err)
                                     : NULL;
    if (p && clBuildProgram(p, 1, &device, "", NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        p = NULL;
    }
    if (!p) mcl_fail(MCL_ERR_BUILD, "building the unfused baseline's elementwise kernels");
    return p;
}

mcl_status bench_eltwise(mcl_context *ctx, cl_program program, const char *kernel_name, size_t n,
                         const bench_view *views, size_t view_count)
{
    cl_int err;
    cl_kernel kernel = clCreateKernel(program, kernel_name, &err);
    if (err != CL_SUCCESS) return mcl_fail(MCL_ERR_OPENCL, "clCreateKernel(%s) failed (%d)", kernel_name, err);
    cl_uint arg = 0;
    for (size_t v = 0; v < view_count; v++) {
        cl_ulong fields[4] = {views[v].cols, views[v].stride, views[v].shift, (cl_ulong)views[v].broadcast};
        clSetKernelArg(kernel, arg++, sizeof(cl_mem), &views[v].mem);
        for (int f = 0; f < 4; f++) clSetKernelArg(kernel, arg++, sizeof fields[f], &fields[f]);
    }
    cl_ulong count = n;
    clSetKernelArg(kernel, arg, sizeof count, &count);
    size_t local = 256, global = (n + local - 1) / local * local;
    cl_event event = NULL;
    err = clEnqueueNDRangeKernel(mcl_context_queue(ctx), kernel, 1, NULL, &global, &local, 0, NULL, &event);
    clReleaseKernel(kernel);
    if (err != CL_SUCCESS) return mcl_fail(MCL_ERR_OPENCL, "enqueueing %s failed (%d)", kernel_name, err);
    mcl_status status = mcl_profile_add_event(ctx, event);
    clReleaseEvent(event);
    return status;
}
