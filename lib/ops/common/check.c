/* Tensor argument validation (see check.h). */
#include "check.h"

#include "runtime/error.h"
#include "runtime/params.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

mcl_status mcl_check_call(const char *op, const void *ctx, const void *desc, const void *tensors)
{
    return ctx && desc && tensors ? MCL_OK
                                  : mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
}

mcl_status mcl_check_dtype(mcl_dtype dtype, const char *op)
{
    return mcl_dtype_size(dtype) ? MCL_OK
                                 : mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "%s: dtype %d is not f32, bf16 or f16", op,
                                            (int)dtype);
}

mcl_status mcl_check_eps(float eps, const char *op)
{
    return eps >= 0.0f && !isinf(eps)
               ? MCL_OK
               : mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op, (double)eps);
}

mcl_status mcl_check_either(int value, int first, int second, const char *op, const char *what, const char *names)
{
    return value == first || value == second
               ? MCL_OK
               : mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: %s %d is not %s", op, what, value, names);
}

mcl_status mcl_mul_size(size_t a, size_t b, size_t *out, const char *op, const char *what)
{
    if (b != 0 && a > SIZE_MAX / b)
        return mcl_fail(MCL_ERR_SIZE_OVERFLOW, "%s: %s overflows (%zu x %zu)", op, what, a, b);
    *out = a * b;
    return MCL_OK;
}

unsigned mcl_offset_vec_limit(size_t elem_size, const mcl_tensor *const *tensors, size_t n)
{
    unsigned vec = 8;
    for (size_t i = 0; i < n; i++)
        while (vec > 1 && tensors[i]->mem && tensors[i]->offset % (vec * elem_size) != 0) vec /= 2;
    return vec;
}

static void shape_string(const mcl_tensor_check *c, char *out, size_t cap)
{
    size_t used = snprintf(out, cap, "[");
    for (int i = 0; i < c->ndims && used < cap; i++)
        used += snprintf(out + used, cap - used, "%s%zu", i ? "," : "", c->dims[i]);
    if (used < cap) snprintf(out + used, cap - used, "] %s", c->dtype_name);
}

static mcl_status tensor_bytes(const mcl_tensor_check *c, const char *op, size_t *bytes)
{
    size_t n = c->elem_size;
    for (int i = 0; i < c->ndims; i++) {
        if (c->dims[i] != 0 && n > SIZE_MAX / c->dims[i]) {
            char shape[128];
            shape_string(c, shape, sizeof shape);
            return mcl_fail(MCL_ERR_SIZE_OVERFLOW, "%s: %s of shape %s overflows size_t", op,
                            c->name, shape);
        }
        n *= c->dims[i];
    }
    *bytes = n;
    return MCL_OK;
}

static mcl_status check_one(mcl_context *ctx, const char *op, const mcl_tensor_check *c,
                             size_t *bytes)
{
    *bytes = 0;
    if (!c->tensor->mem) {
        return c->required ? mcl_fail(MCL_ERR_NULL_POINTER, "%s: %s is required but NULL", op, c->name)
                           : MCL_OK;
    }
    MCL_TRY(tensor_bytes(c, op, bytes));
    if (c->tensor->offset % c->elem_size != 0)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT,
                        "%s: %s offset %zu is not a multiple of its element size %zu", op, c->name,
                        c->tensor->offset, c->elem_size);
    cl_context owner;
    size_t held = 0;
    if (clGetMemObjectInfo(c->tensor->mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(c->tensor->mem, CL_MEM_SIZE, sizeof held, &held, NULL) != CL_SUCCESS)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: %s is not a valid cl_mem", op, c->name);
    if (owner != ctx->cl)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT,
                        "%s: %s belongs to another cl_context than the megacl context's", op,
                        c->name);
    if (c->tensor->offset > held || held - c->tensor->offset < *bytes) {
        char shape[128];
        shape_string(c, shape, sizeof shape);
        return mcl_fail(MCL_ERR_BUFFER_TOO_SMALL,
                        "%s: %s buffer holds %zu bytes from offset %zu, shape %s needs %zu", op,
                        c->name, held, c->tensor->offset, shape, *bytes);
    }
    return MCL_OK;
}

static int overlaps(const mcl_tensor *a, size_t a_bytes, const mcl_tensor *b, size_t b_bytes)
{
    return a->mem == b->mem && a->offset < b->offset + b_bytes && b->offset < a->offset + a_bytes;
}

/* An op whose outputs are all optional (a backward) must be asked for at least one. */
static mcl_status check_some_output(const char *op, const mcl_tensor_check *checks, size_t count)
{
    char names[MCL_MAX_TENSORS * 24] = "";
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (!checks[i].is_output) continue;
        if (checks[i].required || checks[i].tensor->mem) return MCL_OK;
        int n = snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", checks[i].name);
        if (n > 0 && (size_t)n < sizeof names - used) used += (size_t)n;
    }
    return used ? mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no output requested (%s)", op, names) : MCL_OK;
}

static mcl_status check_needs(const char *op, const mcl_tensor_check *checks, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!checks[i].needs || !checks[i].tensor->mem) continue;
        int given = 0;
        for (size_t j = 0; j < count; j++)
            given |= strcmp(checks[j].name, checks[i].needs) == 0 && checks[j].tensor->mem;
        if (!given)
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: %s is given without %s", op, checks[i].name,
                            checks[i].needs);
    }
    return MCL_OK;
}

/* Keeps the call's outputs for on-demand tuning to compare when it reruns the call. */
static void keep_outputs(mcl_context *ctx, const mcl_tensor_check *checks, size_t count, const size_t *bytes)
{
    mcl_call_outputs *call = &ctx->call;
    call->count = 0;
    call->in_place = 0;
    for (size_t i = 0; i < count && call->count < MCL_COUNT(call->items); i++) {
        if (!checks[i].is_output || !checks[i].tensor->mem) continue;
        mcl_dtype dtype = MCL_F32;
        for (int d = MCL_F32; d <= MCL_F16; d++)
            if (strcmp(checks[i].dtype_name, mcl_dtype_name((mcl_dtype)d)) == 0) dtype = (mcl_dtype)d;
        call->items[call->count++] = (mcl_call_output){checks[i].name, *checks[i].tensor, dtype, bytes[i] / checks[i].elem_size};
        for (size_t j = 0; j < count; j++)
            call->in_place |= !checks[j].is_output && checks[j].tensor->mem == checks[i].tensor->mem &&
                              checks[j].tensor->offset == checks[i].tensor->offset;
    }
}

mcl_status mcl_check_tensors(mcl_context *ctx, const char *op, const mcl_tensor_check *checks,
                             size_t count)
{
    size_t bytes[MCL_MAX_TENSORS];
    if (count > MCL_MAX_TENSORS) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: too many tensors", op);
    MCL_TRY(check_some_output(op, checks, count));
    for (size_t i = 0; i < count; i++) MCL_TRY(check_one(ctx, op, &checks[i], &bytes[i]));
    MCL_TRY(check_needs(op, checks, count));
    for (size_t i = 0; i < count; i++) {
        if (!checks[i].is_output || !checks[i].tensor->mem) continue;
        for (size_t j = 0; j < count; j++) {
            if (j == i || !checks[j].tensor->mem) continue;
            if (!overlaps(checks[i].tensor, bytes[i], checks[j].tensor, bytes[j])) continue;
            int in_place = checks[i].may_alias && !checks[j].is_output &&
                           strcmp(checks[i].may_alias, checks[j].name) == 0 &&
                           checks[i].tensor->offset == checks[j].tensor->offset &&
                           bytes[i] == bytes[j];
            if (!in_place)
                return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: output %s overlaps %s", op,
                                checks[i].name, checks[j].name);
        }
    }
    if (ctx->tune_mode == MCL_TUNE_MODE_ONDEMAND && !ctx->tuning) keep_outputs(ctx, checks, count, bytes);
    return MCL_OK;
}
