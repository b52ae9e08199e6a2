/* Probe kernels: vendor-specific code paths are enabled only on devices where a small kernel
 * using them compiled, ran, and produced the right numbers. Names and version flags are never
 * trusted for this. */
#include "device.h"

#include "error.h"

#include <string.h>

/* One warp multiplies all-ones A by all-twos B with each tensor-core instruction the kernels may
 * use: tf32 m16n8k8 (k = 8: every output 16), bf16 and f16 m16n8k16 (k = 16: every output 32). */
static const char mma_probe_source[] =
    "__kernel void probe_mma(__global float *out)\n"
    "{\n"
    "    uint one_tf32 = as_uint(1.0f), two_tf32 = as_uint(2.0f);\n"
    "    uint one_bf16 = 0x3f803f80u, two_bf16 = 0x40004000u;\n"
    "    uint one_f16 = 0x3c003c00u, two_f16 = 0x40004000u;\n"
    "    float z = 0.0f, d[12];\n"
    "    asm volatile(\"mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 \"\n"
    "                 \"{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\"\n"
    "                 : \"=f\"(d[0]), \"=f\"(d[1]), \"=f\"(d[2]), \"=f\"(d[3])\n"
    "                 : \"r\"(one_tf32), \"r\"(one_tf32), \"r\"(one_tf32), \"r\"(one_tf32),\n"
    "                   \"r\"(two_tf32), \"r\"(two_tf32), \"f\"(z));\n"
    "    asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 \"\n"
    "                 \"{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\"\n"
    "                 : \"=f\"(d[4]), \"=f\"(d[5]), \"=f\"(d[6]), \"=f\"(d[7])\n"
    "                 : \"r\"(one_bf16), \"r\"(one_bf16), \"r\"(one_bf16), \"r\"(one_bf16),\n"
    "                   \"r\"(two_bf16), \"r\"(two_bf16), \"f\"(z));\n"
    "    asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 \"\n"
    "                 \"{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\"\n"
    "                 : \"=f\"(d[8]), \"=f\"(d[9]), \"=f\"(d[10]), \"=f\"(d[11])\n"
    "                 : \"r\"(one_f16), \"r\"(one_f16), \"r\"(one_f16), \"r\"(one_f16),\n"
    "                   \"r\"(two_f16), \"r\"(two_f16), \"f\"(z));\n"
    "    for (int i = 0; i < 12; i++) out[get_global_id(0) * 12 + i] = d[i];\n"
    "}\n";

static int run_mma_probe(cl_context context, cl_device_id device, cl_program program)
{
    enum { LANES = 32, OUTPUTS = 12 };
    cl_int err;
    int ok = 0;
    cl_command_queue queue = clCreateCommandQueue(context, device, 0, &err);
    if (err != CL_SUCCESS) return 0;
    cl_kernel kernel = clCreateKernel(program, "probe_mma", &err);
    cl_mem out = clCreateBuffer(context, CL_MEM_WRITE_ONLY, sizeof(float) * LANES * OUTPUTS, NULL,
                                &err);
    if (kernel && out) {
        float result[LANES * OUTPUTS];
        size_t global = LANES, local = LANES;
        memset(result, 0, sizeof result);
        ok = clSetKernelArg(kernel, 0, sizeof out, &out) == CL_SUCCESS &&
             clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, &local, 0, NULL, NULL) ==
                 CL_SUCCESS &&
             clEnqueueReadBuffer(queue, out, CL_TRUE, 0, sizeof result, result, 0, NULL, NULL) ==
                 CL_SUCCESS;
        for (int i = 0; ok && i < LANES * OUTPUTS; i++)
            ok = result[i] == ((i % OUTPUTS) < 4 ? 16.0f : 32.0f);
    }
    if (out) clReleaseMemObject(out);
    if (kernel) clReleaseKernel(kernel);
    clReleaseCommandQueue(queue);
    return ok;
}

int mcl_probe_mma_sync(cl_context context, cl_device_id device)
{
    const char *source = mma_probe_source;
    cl_int err;
    cl_program program = clCreateProgramWithSource(context, 1, &source, NULL, &err);
    if (err != CL_SUCCESS) return 0;
    int ok = clBuildProgram(program, 1, &device, "", NULL, NULL) == CL_SUCCESS &&
             run_mma_probe(context, device, program);
    clReleaseProgram(program);
    mcl_log(MCL_LOG_INFO, "probe: mma.sync %s", ok ? "works" : "unavailable");
    return ok;
}
