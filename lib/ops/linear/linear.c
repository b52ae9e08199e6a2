/* Linear: validate -> choose parameters -> enqueue, as steps of a walk. Every product is the gemm
 * family's GEMM; the bias and the residual are added in its epilogue, dx_acc likewise. */
#include "ops/common/check.h"
#include "ops/common/walk.h"
#include "ops/gemm/gemm.h"
#include "runtime/error.h"

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_linear_desc *d, const char *op)
{
    if (d->rows == 0 || d->in_features == 0 || d->out_features == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu), in_features (%zu) and out_features (%zu) must be positive",
                        op, d->rows, d->in_features, d->out_features);
    return mcl_check_dtype(d->dtype, op);
}

/* [rows, in] and [rows, out] tensors, the weight and the bias */
#define ROWS_IN(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->rows, d->in_features)
#define ROWS_OUT(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->rows, d->out_features)
#define WEIGHT(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->in_features, d->out_features)
#define BIAS(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->out_features)

/* ---- choose parameters ------------------------------------------------------------------ */

/* y = x W + b + r */
static gemm_call forward_gemm(const mcl_linear_desc *d, const mcl_linear_fwd_tensors *t)
{
    size_t in = d->in_features, out = d->out_features, es = mcl_dtype_size(d->dtype);
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = out, .k = in, .batch = 1,
                       .a = gemm_operand(&t->x, d->dtype, 0, in, 0), .b = gemm_operand(&t->weight, d->dtype, 0, out, 0),
                       .c = gemm_operand(&t->y, d->dtype, 0, out, 0), .bias = t->bias.mem,
                       .bias_off = mcl_elem_offset(&t->bias, es), .residual = t->residual.mem,
                       .residual_off = mcl_elem_offset(&t->residual, es)};
}

/* dx = dy W^T + dx_acc */
static gemm_call dx_gemm(const mcl_linear_desc *d, const mcl_linear_bwd_tensors *t)
{
    size_t in = d->in_features, out = d->out_features;
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = in, .k = out, .batch = 1,
                       .a = gemm_operand(&t->dy, d->dtype, 0, out, 0), .b = gemm_operand(&t->weight, d->dtype, 0, out, 1),
                       .c = gemm_operand(&t->dx, d->dtype, 0, in, 0), .residual = t->dx_acc.mem,
                       .residual_off = mcl_elem_offset(&t->dx_acc, mcl_dtype_size(d->dtype))};
}

/* dW = x^T dy */
static gemm_call dweight_gemm(const mcl_linear_desc *d, const mcl_linear_bwd_tensors *t)
{
    size_t in = d->in_features, out = d->out_features;
    return (gemm_call){.dtype = d->dtype, .m = in, .n = out, .k = d->rows, .batch = 1,
                       .a = gemm_operand(&t->x, d->dtype, 0, in, 1), .b = gemm_operand(&t->dy, d->dtype, 0, out, 0),
                       .c = gemm_operand(&t->dweight, d->dtype, 0, out, 0)};
}

/* The steps run one after another on the in-order queue: their split partials share one part. */
enum { PART_SCRATCH };

/* What the backward is asked for: a sizing pass over no tensors (the size of every output) reads
 * the same. */
typedef struct linear_wants {
    int dx, dweight, dbias;
} linear_wants;

typedef struct bwd_args {
    const mcl_linear_desc *desc;
    const mcl_linear_bwd_tensors *tensors;
    linear_wants wants;
} bwd_args;

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status forward_steps(mcl_walk *w, const void *args)
{
    const mcl_op_args *a = args;
    gemm_call g = forward_gemm(a->desc, a->tensors);
    return mcl_gemm_step(w, "y = x W GEMM", &g, PART_SCRATCH);
}

static mcl_status backward_steps(mcl_walk *w, const void *args)
{
    const bwd_args *a = args;
    const mcl_linear_desc *d = a->desc;
    const mcl_linear_bwd_tensors *t = a->tensors;
    if (a->wants.dweight) {
        gemm_call g = dweight_gemm(d, t);
        MCL_TRY(mcl_gemm_step(w, "dW GEMM", &g, PART_SCRATCH));
    }
    if (a->wants.dbias)
        MCL_TRY(mcl_column_sums_step(w, "db column sums", d->dtype, &t->dy, d->rows, d->out_features, &t->dbias,
                                     PART_SCRATCH));
    if (!a->wants.dx) return MCL_OK;
    gemm_call g = dx_gemm(d, t);
    return mcl_gemm_step(w, "dx GEMM", &g, PART_SCRATCH);
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_WALKED_ENTRY_POINT(linear, forward, fwd, ROWS_IN("x", &t->x, MCL_REQUIRED_IN),
                       WEIGHT("weight", &t->weight, MCL_REQUIRED_IN), BIAS("bias", &t->bias, MCL_OPTIONAL_IN),
                       ROWS_OUT("residual", &t->residual, MCL_OPTIONAL_IN),
                       mcl_in_place_of(ROWS_OUT("y", &t->y, MCL_REQUIRED_OUT), "residual"))

MCL_ENTRY_POINT(linear, backward, bwd)
{
    MCL_ENTER(linear, backward, validate_desc, ROWS_IN("x", &t->x, MCL_REQUIRED_IN),
              WEIGHT("weight", &t->weight, MCL_REQUIRED_IN), ROWS_OUT("dy", &t->dy, MCL_REQUIRED_IN),
              mcl_needing(ROWS_IN("dx_acc", &t->dx_acc, MCL_OPTIONAL_IN), "dx"),
              mcl_in_place_of(ROWS_IN("dx", &t->dx, MCL_OPTIONAL_OUT), "dx_acc"),
              WEIGHT("dweight", &t->dweight, MCL_OPTIONAL_OUT), BIAS("dbias", &t->dbias, MCL_OPTIONAL_OUT));
    linear_wants wants = {mcl_has(&t->dx), mcl_has(&t->dweight), mcl_has(&t->dbias)};
    return mcl_walk_op(ctx, "linear_backward", backward_steps, &(bwd_args){d, t, wants}, event);
}

MCL_WALKED_WORKSPACE_SIZES(linear, ((linear_wants){1, 1, 1}))
