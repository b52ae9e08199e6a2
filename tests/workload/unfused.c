/* The unfused baselines' building blocks (see unfused.h). */
#include "unfused.h"

#include <clblast_c.h>
#include <stdlib.h>

/* Element i of a view at its base offset (in floats). */
static const char eltwise_source[] =
    "inline ulong at(ulong i, ulong base, ulong cols, ulong stride, ulong shift, ulong broadcast)\n"
    "{ return base + (cols ? i / cols * stride + shift + (broadcast ? 0 : i % cols) : i); }\n"
    "#define VIEW(p) p, ulong p##_base, ulong p##_cols, ulong p##_stride, ulong p##_shift, ulong p##_bcast\n"
    "#define AT(p, i) p[at(i, p##_base, p##_cols, p##_stride, p##_shift, p##_bcast)]\n"
    "__kernel void k_sigmoid(__global const float *VIEW(x), __global float *VIEW(y), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) AT(y, i) = 1.0f / (1.0f + exp(-AT(x, i))); }\n"
    "__kernel void k_silu(__global const float *VIEW(x), __global float *VIEW(y), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) { float v = AT(x, i); AT(y, i) = v / (1.0f + exp(-v)); } }\n"
    "__kernel void k_mul(__global const float *VIEW(a), __global const float *VIEW(b), __global float *VIEW(y),\n"
    "                    ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) AT(y, i) = AT(a, i) * AT(b, i); }\n"
    "__kernel void k_add(__global const float *VIEW(a), __global const float *VIEW(b), __global float *VIEW(y),\n"
    "                    ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) AT(y, i) = AT(a, i) + AT(b, i); }\n"
    "/* dx = dy * s * (1 - s), s = sigmoid(x) saved by the forward */\n"
    "__kernel void k_sigmoid_backward(__global const float *VIEW(dy), __global const float *VIEW(s),\n"
    "                                 __global float *VIEW(dx), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) { float v = AT(s, i); AT(dx, i) = AT(dy, i) * v * (1.0f - v); } }\n"
    "/* dx = dy * sigmoid(x) * (1 + x * (1 - sigmoid(x))) */\n"
    "__kernel void k_silu_backward(__global const float *VIEW(dy), __global const float *VIEW(x),\n"
    "                              __global float *VIEW(dx), ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) { float v = AT(x, i), s = 1.0f / (1.0f + exp(-v));\n"
    "  AT(dx, i) = AT(dy, i) * s * (1.0f + v * (1.0f - s)); } }\n"
    "/* y [batch, cols, rows, width] = x [batch, rows, cols, width] with i and j swapped: a copy into\n"
    " * the new layout, as a framework makes a transposed view contiguous */\n"
    "__kernel void k_transpose(__global const float *x, ulong x_base, __global float *y, ulong y_base, ulong rows,\n"
    "                          ulong cols, ulong width, ulong n)\n"
    "{ ulong e = get_global_id(0); if (e >= n) return;\n"
    "  ulong q = e % width, r = e / width, i = r % rows, tj = r / rows, j = tj % cols, t = tj / cols;\n"
    "  y[y_base + e] = x[x_base + ((t * rows + i) * cols + j) * width + q]; }\n"
    "/* y = x * scale, a tensor times a scalar */\n"
    "__kernel void k_scale(__global const float *x, ulong x_base, __global float *y, ulong y_base, float scale,\n"
    "                      ulong n)\n"
    "{ ulong i = get_global_id(0); if (i < n) y[y_base + i] = x[x_base + i] * scale; }\n";

static cl_device_id device_of(mcl_context *ctx)
{
    cl_device_id device = NULL;
    clGetCommandQueueInfo(mcl_context_queue(ctx), CL_QUEUE_DEVICE, sizeof device, &device, NULL);
    return device;
}

mcl_status wl_unfused_setup(wl_problem *p, const size_t *counts, size_t count)
{
    if (p->c.dtype != MCL_F32)
        return wl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "fp32 only: CLBlast has no %s GEMM", mcl_dtype_name(p->c.dtype));
    if (count > WL_MAX_SCRATCH) return wl_fail(MCL_ERR_INVALID_ARGUMENT, "more than %d intermediates", WL_MAX_SCRATCH);
    wl_unfused *u = calloc(1, sizeof *u);
    if (!u) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for the unfused path");
    p->baseline = u;
    cl_int err;
    const char *sources[] = {eltwise_source, wl_unfused_attention_source};
    cl_device_id device = device_of(p->ctx);
    u->eltwise = clCreateProgramWithSource(mcl_context_cl_context(p->ctx), 2, sources, NULL, &err);
    if (err != CL_SUCCESS || clBuildProgram(u->eltwise, 1, &device, "", NULL, NULL) != CL_SUCCESS)
        return wl_fail(MCL_ERR_BUILD, "building the unfused path's elementwise kernels failed");
    for (size_t i = 0; i < count; i++) {
        u->scratch[i] = clCreateBuffer(mcl_context_cl_context(p->ctx), CL_MEM_READ_WRITE,
                                       (counts[i] ? counts[i] : 1) * sizeof(float), NULL, &err);
        if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "the unfused path's intermediate %zu", i);
        u->scratch_count = i + 1;
        p->baseline_bytes += (double)counts[i] * sizeof(float);
    }
    return MCL_OK;
}

void wl_unfused_teardown(wl_problem *p)
{
    wl_unfused *u = p->baseline;
    if (!u) return;
    for (size_t i = 0; i < u->scratch_count; i++) clReleaseMemObject(u->scratch[i]);
    if (u->eltwise) clReleaseProgram(u->eltwise);
    free(u);
    p->baseline = NULL;
    p->baseline_bytes = 0.0;
}

mcl_tensor wl_scratch(const wl_problem *p, int i)
{
    const wl_unfused *u = p->baseline;
    return (mcl_tensor){u->scratch[i], 0};
}

void wl_scratch_parts(const wl_problem *p, mcl_tensor *saved, size_t saved_count, mcl_tensor *temp,
                      size_t temp_count)
{
    for (size_t i = 0; i < saved_count; i++) saved[i] = wl_scratch(p, (int)i);
    for (size_t i = 0; i < temp_count; i++) temp[i] = wl_scratch(p, (int)(saved_count + i));
}

wl_view wl_flat(mcl_tensor t) { return (wl_view){t, 0, 0, 0, 0}; }
wl_view wl_block(mcl_tensor t, size_t stride, size_t shift, size_t cols) { return (wl_view){t, cols, stride, shift, 0}; }
wl_view wl_per_row(mcl_tensor t, size_t cols) { return (wl_view){t, cols, 1, 0, 1}; }

/* Enqueues `kernel` (its arguments set, `err` the status of setting them) over n elements, in
 * the profiling window; releases it. */
static mcl_status launch(const wl_problem *p, cl_kernel kernel, cl_int err, const char *kernel_name, size_t n)
{
    size_t local = 256, global = (n + local - 1) / local * local;
    cl_event event = NULL;
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(mcl_context_queue(p->ctx), kernel, 1, NULL, &global, &local, 0, NULL, &event);
    clReleaseKernel(kernel);
    if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OPENCL, "enqueueing %s failed (%d)", kernel_name, err);
    mcl_status status = wl_op(mcl_profile_add_named_event(p->ctx, event, kernel_name));
    clReleaseEvent(event);
    return status;
}

static cl_kernel kernel_of(const wl_problem *p, const char *kernel_name, cl_int *err)
{
    const wl_unfused *u = p->baseline;
    return clCreateKernel(u->eltwise, kernel_name, err);
}

mcl_status wl_eltwise(const wl_problem *p, const char *kernel_name, size_t n, const wl_view *views, size_t count)
{
    cl_int err;
    cl_kernel kernel = kernel_of(p, kernel_name, &err);
    if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OPENCL, "clCreateKernel(%s) failed (%d)", kernel_name, err);
    cl_uint arg = 0;
    for (size_t v = 0; v < count; v++) {
        cl_ulong fields[5] = {views[v].t.offset / sizeof(float), views[v].cols, views[v].stride, views[v].shift,
                              (cl_ulong)views[v].broadcast};
        err |= clSetKernelArg(kernel, arg++, sizeof(cl_mem), &views[v].t.mem);
        for (int f = 0; f < 5; f++) err |= clSetKernelArg(kernel, arg++, sizeof fields[f], &fields[f]);
    }
    cl_ulong elements = n;
    err |= clSetKernelArg(kernel, arg, sizeof elements, &elements);
    return launch(p, kernel, err, kernel_name, n);
}

wl_kernel_arg wl_arg_tensor(mcl_tensor t) { return (wl_kernel_arg){.kind = WL_ARG_TENSOR, .tensor = t}; }
wl_kernel_arg wl_arg_size(size_t v) { return (wl_kernel_arg){.kind = WL_ARG_SIZE, .size = v}; }
wl_kernel_arg wl_arg_float(float v) { return (wl_kernel_arg){.kind = WL_ARG_FLOAT, .value = v}; }

mcl_status wl_unfused_kernel(const wl_problem *p, const char *kernel_name, const wl_kernel_arg *args, size_t count,
                             size_t n)
{
    cl_int err;
    cl_kernel kernel = kernel_of(p, kernel_name, &err);
    if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OPENCL, "clCreateKernel(%s) failed (%d)", kernel_name, err);
    cl_uint at = 0;
    for (size_t i = 0; i < count; i++) {
        cl_ulong v = args[i].kind == WL_ARG_TENSOR ? args[i].tensor.offset / sizeof(float) : args[i].size;
        if (args[i].kind == WL_ARG_TENSOR) err |= clSetKernelArg(kernel, at++, sizeof(cl_mem), &args[i].tensor.mem);
        if (args[i].kind == WL_ARG_FLOAT)
            err |= clSetKernelArg(kernel, at++, sizeof args[i].value, &args[i].value);
        else
            err |= clSetKernelArg(kernel, at++, sizeof v, &v);
    }
    cl_ulong elements = n;
    err |= clSetKernelArg(kernel, at, sizeof elements, &elements);
    return launch(p, kernel, err, kernel_name, n);
}

mcl_status wl_unfused_transpose(const wl_problem *p, size_t batch, size_t rows, size_t cols, size_t width,
                                mcl_tensor x, mcl_tensor y)
{
    const wl_kernel_arg args[] = {wl_arg_tensor(x), wl_arg_tensor(y), wl_arg_size(rows), wl_arg_size(cols),
                                  wl_arg_size(width)};
    return wl_unfused_kernel(p, "k_transpose", args, WL_COUNT(args), batch * rows * cols * width);
}

mcl_status wl_unfused_scale(const wl_problem *p, size_t n, float scale, mcl_tensor x, mcl_tensor y)
{
    const wl_kernel_arg args[] = {wl_arg_tensor(x), wl_arg_tensor(y), wl_arg_float(scale)};
    return wl_unfused_kernel(p, "k_scale", args, WL_COUNT(args), n);
}

/* The status of a CLBlast call; its event joins the profiling window. */
static mcl_status finish(const wl_problem *p, CLBlastStatusCode code, cl_event event, const char *what)
{
    if (code != CLBlastSuccess)
        return wl_fail(code == CLBlastTempBufferAllocFailure || code == CLBlastOpenCLOutOfResources
                           ? MCL_ERR_OUT_OF_MEMORY
                           : MCL_ERR_OPENCL,
                       "%s failed: CLBlast status %d", what, (int)code);
    mcl_status status = wl_op(mcl_profile_add_named_event(p->ctx, event, what));
    clReleaseEvent(event);
    return status;
}

static CLBlastTranspose op(int trans) { return trans ? CLBlastTransposeYes : CLBlastTransposeNo; }
static size_t at(mcl_tensor t) { return t.offset / sizeof(float); }

mcl_status wl_sgemm(const wl_problem *p, int trans_a, int trans_b, size_t m, size_t n, size_t k, mcl_tensor a,
                    size_t lda, mcl_tensor b, size_t ldb, mcl_tensor c, size_t ldc)
{
    cl_command_queue queue = mcl_context_queue(p->ctx);
    cl_event event = NULL;
    CLBlastStatusCode code = CLBlastSgemm(CLBlastLayoutRowMajor, op(trans_a), op(trans_b), m, n, k, 1.0f, a.mem,
                                          at(a), lda, b.mem, at(b), ldb, 0.0f, c.mem, at(c), ldc, &queue, &event);
    return finish(p, code, event, "CLBlastSgemm");
}

mcl_status wl_sgemm_batched(const wl_problem *p, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                            mcl_tensor a, size_t lda, mcl_tensor b, size_t ldb, mcl_tensor c, size_t ldc,
                            size_t batch)
{
    cl_command_queue queue = mcl_context_queue(p->ctx);
    cl_event event = NULL;
    CLBlastStatusCode code = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, op(trans_a), op(trans_b), m, n, k, 1.0f, a.mem, at(a), lda, m * k, b.mem, at(b), ldb,
        k * n, 0.0f, c.mem, at(c), ldc, m * n, batch, &queue, &event);
    return finish(p, code, event, "CLBlastSgemmStridedBatched");
}

mcl_status wl_somatcopy(const wl_problem *p, size_t rows, size_t cols, mcl_tensor a, mcl_tensor b)
{
    cl_command_queue queue = mcl_context_queue(p->ctx);
    cl_event event = NULL;
    CLBlastStatusCode code = CLBlastSomatcopy(CLBlastLayoutRowMajor, CLBlastTransposeYes, rows, cols, 1.0f, a.mem,
                                              at(a), cols, b.mem, at(b), rows, &queue, &event);
    return finish(p, code, event, "CLBlastSomatcopy");
}

mcl_status wl_unfused_ln_linear_forward(const wl_problem *p, size_t rows, size_t k_in, size_t k_out,
                                        const mcl_layernorm_fwd_tensors *ln, mcl_tensor w, mcl_tensor y)
{
    mcl_layernorm_desc d = {rows, k_in, MCL_F32, 1e-5f};
    WL_TRY(wl_op(mcl_layernorm_forward(p->ctx, &d, ln, NULL)));
    return wl_sgemm(p, 0, 0, rows, k_out, k_in, ln->y, k_in, w, k_out, y, k_out);
}

mcl_status wl_unfused_ln_linear_backward(const wl_problem *p, size_t rows, size_t k_in, size_t k_out,
                                         const mcl_layernorm_bwd_tensors *ln, mcl_tensor xn, mcl_tensor w,
                                         mcl_tensor dy, mcl_tensor dw)
{
    WL_TRY(wl_sgemm(p, 0, 1, rows, k_in, k_out, dy, k_out, w, k_out, ln->dy, k_in));
    WL_TRY(wl_sgemm(p, 1, 0, k_in, k_out, rows, xn, k_in, dy, k_out, dw, k_out));
    mcl_layernorm_desc d = {rows, k_in, MCL_F32, 1e-5f};
    return wl_op(mcl_layernorm_backward(p->ctx, &d, ln, NULL));
}
