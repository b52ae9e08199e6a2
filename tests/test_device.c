/* Device discovery, description and selection; contexts from selectors and adopted queues. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mcl_device_info *list_devices(size_t *count)
{
    assert_ok(mcl_devices_list(NULL, 0, count));
    cr_assert_gt(*count, 0, "no OpenCL device");
    mcl_device_info *infos = calloc(*count, sizeof *infos);
    assert_ok(mcl_devices_list(infos, *count, count));
    return infos;
}

Test(device, list_describes_every_device)
{
    size_t count;
    mcl_device_info *infos = list_devices(&count);
    int saw_pocl = 0;
    for (size_t i = 0; i < count; i++) {
        const mcl_device_info *d = &infos[i];
        cr_assert_gt(strlen(d->name), 0);
        cr_assert_gt(strlen(d->arch), 0);
        cr_assert_gt(strlen(d->driver_version), 0);
        cr_assert_geq(d->compute_units, 1);
        cr_assert_gt(d->local_mem_bytes, 0);
        cr_assert_geq(d->max_work_group_size, 1);
        cr_assert_geq(d->simd_width, 1);
        /* a probe only ever enables vendor code on the vendor's own devices */
        if (d->vendor != MCL_VENDOR_NVIDIA) cr_assert_eq(d->has_mma_sync, 0, "%s", d->name);
        if (d->vendor == MCL_VENDOR_POCL) {
            saw_pocl = 1;
            cr_assert_eq(d->is_gpu, 0);
            cr_assert_null(strchr(d->arch, ' '), "PoCL arch is the CPU model: %s", d->arch);
        }
        if (d->vendor == MCL_VENDOR_NVIDIA) cr_assert_eq(strncmp(d->arch, "sm_", 3), 0, "%s", d->arch);
        if (d->vendor == MCL_VENDOR_AMD) cr_assert_null(strchr(d->arch, ':'), "%s", d->arch);
    }
    cr_assert(saw_pocl, "the suite needs PoCL installed");
    assert_status(mcl_devices_list(NULL, 0, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_devices_list(NULL, 3, &count), MCL_ERR_NULL_POINTER);
    free(infos);
}

Test(device, selectors_pick_the_right_device)
{
    size_t count;
    mcl_device_info *infos = list_devices(&count);
    for (size_t i = 0; i < count; i++) {
        char selector[32];
        snprintf(selector, sizeof selector, "%u:%u", infos[i].platform_index, infos[i].device_index);
        mcl_context *ctx;
        assert_ok(mcl_context_create(selector, &ctx));
        cr_assert_str_eq(mcl_context_device(ctx)->name, infos[i].name);
        cr_assert_eq(mcl_context_device(ctx)->platform_index, infos[i].platform_index);
        mcl_context_release(ctx);
    }
    const char *words[] = {"pocl", "POCL", "cpu"};
    for (size_t i = 0; i < 3; i++) {
        mcl_context *ctx;
        assert_ok(mcl_context_create(words[i], &ctx));
        cr_assert_eq(mcl_context_device(ctx)->is_gpu, 0, "%s", words[i]);
        mcl_context_release(ctx);
    }
    free(infos);
}

Test(device, default_is_a_gpu_else_a_cpu)
{
    size_t count;
    mcl_device_info *infos = list_devices(&count);
    int have_gpu = 0;
    for (size_t i = 0; i < count; i++) have_gpu |= infos[i].is_gpu;
    unsetenv("MEGACL_DEVICE");
    mcl_context *ctx;
    assert_ok(mcl_context_create(NULL, &ctx));
    cr_assert_eq(mcl_context_device(ctx)->is_gpu, have_gpu);
    mcl_context_release(ctx);
    free(infos);
}

Test(device, environment_selects_when_no_selector_is_given)
{
    mcl_context *ctx = NULL;
    setenv("MEGACL_DEVICE", "pocl", 1);
    assert_ok(mcl_context_create("", &ctx));
    cr_assert_eq(mcl_context_device(ctx)->vendor, MCL_VENDOR_POCL);
    mcl_context_release(ctx);
    setenv("MEGACL_DEVICE", "97:3", 1);
    assert_status(mcl_context_create(NULL, &ctx), MCL_ERR_DEVICE_NOT_FOUND);
    cr_assert_null(ctx);
    cr_assert(strstr(mcl_last_error(), "97:3"), "%s", mcl_last_error());
}

Test(device, bad_selectors_list_the_devices_there_are)
{
    const char *bad[] = {"tpu", "97:3", "3", "0:0:0", "pocl2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mcl_context *ctx = (mcl_context *)&ctx; /* must be reset to NULL */
        assert_status(mcl_context_create(bad[i], &ctx), MCL_ERR_DEVICE_NOT_FOUND);
        cr_assert_null(ctx);
        const char *msg = mcl_last_error();
        cr_assert(strstr(msg, bad[i]), "message names the selector: %s", msg);
        cr_assert(strstr(msg, "pocl"), "message lists the devices: %s", msg);
    }
    cr_assert(strstr(mcl_last_error(), "not one of"), "unknown words are explained");
}

static cl_command_queue own_queue(cl_context *cl, cl_command_queue_properties props, cl_int *err)
{
    mcl_context *probe = test_context();
    cl_device_id device;
    clGetCommandQueueInfo(mcl_context_queue(probe), CL_QUEUE_DEVICE, sizeof device, &device, NULL);
    mcl_context_release(probe);
    *cl = clCreateContext(NULL, 1, &device, NULL, NULL, err);
    cr_assert_eq(*err, CL_SUCCESS);
    return clCreateCommandQueue(*cl, device, props, err);
}

Test(device, adopts_a_callers_queue)
{
    cl_context cl;
    cl_int err;
    cl_command_queue queue = own_queue(&cl, CL_QUEUE_PROFILING_ENABLE, &err);
    cr_assert_eq(err, CL_SUCCESS);
    mcl_context *ctx;
    assert_ok(mcl_context_create_from_queue(queue, &ctx));
    cr_assert_eq(mcl_context_queue(ctx), queue);
    cr_assert_eq(mcl_context_cl_context(ctx), cl);
    cr_assert_neq(mcl_context_device(ctx)->platform_index, (unsigned)-1, "indices are found");
    assert_ok(mcl_profile_begin(ctx));
    double ms;
    assert_ok(mcl_profile_end(ctx, &ms));
    mcl_context_release(ctx);
    /* the caller's references survive the context */
    cl_uint refs = 0;
    cr_assert_eq(clGetCommandQueueInfo(queue, CL_QUEUE_REFERENCE_COUNT, sizeof refs, &refs, NULL), CL_SUCCESS);
    cr_assert_eq(refs, 1);
    clReleaseCommandQueue(queue);
    clReleaseContext(cl);
}

Test(device, adopted_queue_without_profiling_cannot_profile)
{
    cl_context cl;
    cl_int err;
    cl_command_queue queue = own_queue(&cl, 0, &err);
    mcl_context *ctx;
    assert_ok(mcl_context_create_from_queue(queue, &ctx));
    assert_status(mcl_profile_begin(ctx), MCL_ERR_UNSUPPORTED);
    mcl_context_release(ctx);
    clReleaseCommandQueue(queue);
    clReleaseContext(cl);
}

Test(device, out_of_order_queue_is_refused)
{
    cl_context cl;
    cl_int err;
    cl_command_queue queue = own_queue(&cl, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    if (err != CL_SUCCESS) {
        cr_log_warn("device has no out-of-order queues; nothing to refuse");
        clReleaseContext(cl);
        return;
    }
    mcl_context *ctx = NULL;
    assert_status(mcl_context_create_from_queue(queue, &ctx), MCL_ERR_INVALID_ARGUMENT);
    cr_assert_null(ctx);
    cr_assert(strstr(mcl_last_error(), "out of order"));
    clReleaseCommandQueue(queue);
    clReleaseContext(cl);
}

Test(device, null_arguments)
{
    mcl_context *ctx;
    assert_status(mcl_context_create_from_queue(NULL, &ctx), MCL_ERR_NULL_POINTER);
    assert_status(mcl_context_create_from_queue(NULL, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_finish(NULL), MCL_ERR_NULL_POINTER);
    mcl_context_release(NULL);
    cr_assert_null(mcl_context_device(NULL));
}
