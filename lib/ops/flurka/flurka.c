/* FLuRKA, Linformer and Performer: validate -> choose parameters -> enqueue, as steps of a walk:
 * the keys projected and summed into [S | z] (keys.c, projection.c), then the query rows
 * (rows.c); backward the same again, the rows' gradients, the keys', and the projections'
 * (steps.h says how they run). */
#include "steps.h"

#include "ops/common/check.h"
#include "runtime/error.h"
#include "runtime/params.h"

#include <math.h>

#define MAX_HEAD_DIM 256
#define MAX_FEATURES 4096

/* ---- validate --------------------------------------------------------------------------- */

static int has_projection(const mcl_flurka_desc *d) { return d->projection != MCL_FLURKA_NO_PROJECTION; }
static int reads_w(const mcl_flurka_desc *d) { return d->map == MCL_FLURKA_FAVOR || d->map == MCL_FLURKA_RELU; }

static mcl_status validate_desc(const mcl_flurka_desc *d, const char *op)
{
    if (d->batch == 0 || d->heads == 0 || d->seq == 0 || d->head_dim == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: batch (%zu), heads (%zu), seq (%zu) and head_dim (%zu) must be positive",
                        op, d->batch, d->heads, d->seq, d->head_dim);
    if (d->head_dim > MAX_HEAD_DIM)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: head_dim %zu exceeds %d", op, d->head_dim, MAX_HEAD_DIM);
    MCL_TRY(mcl_check_dtype(d->dtype, op));
    if ((unsigned)d->map > MCL_FLURKA_SOFTMAX)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: map %d is no mcl_flurka_map", op, (int)d->map);
    if ((unsigned)d->projection > MCL_FLURKA_PER_HEAD)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: projection %d is no mcl_flurka_projection", op,
                        (int)d->projection);
    if (has_projection(d) && (d->rank == 0 || d->rank > d->seq))
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rank k (%zu) must be from 1 to seq N (%zu)", op, d->rank, d->seq);
    if (!has_projection(d) && d->rank != 0)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: rank %zu is given without a projection", op, d->rank);
    if (!has_projection(d) && d->map == MCL_FLURKA_SOFTMAX)
        return mcl_fail(MCL_ERR_UNSUPPORTED, "%s: softmax without a projection is full attention (mcl_evoattn)", op);
    if (reads_w(d) && (d->features == 0 || d->features > MAX_FEATURES))
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: features m (%zu) must be from 1 to %d", op, d->features,
                        MAX_FEATURES);
    if (!reads_w(d) && d->features != 0)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: features %zu are given to a map without W (elu+1, softmax)", op,
                        d->features);
    return MCL_OK;
}

/* A tensor the call's options leave unread must not be given (a caller passing E to a Performer
 * call has the options wrong). */
static mcl_status refuse_unread(const mcl_tensor *t, int read, const char *name, const char *why, const char *op)
{
    return !read && mcl_has(t) ? mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: %s is given, but %s", op, name, why) : MCL_OK;
}

static mcl_status validate_inputs(const mcl_flurka_desc *d, const mcl_tensor *e, const mcl_tensor *f,
                                  const mcl_tensor *w, const char *op)
{
    MCL_TRY(validate_desc(d, op));
    MCL_TRY(refuse_unread(e, has_projection(d), "e", "the call has no projection", op));
    MCL_TRY(refuse_unread(f, has_projection(d), "f", "the call has no projection", op));
    return refuse_unread(w, reads_w(d), "w", "only FAVOR+ and ReLU read W", op);
}

/* MCL_ENTER's validation of the descriptor, with the tensors t that the options leave unread */
#define VALIDATE_WITH_INPUTS(desc, op) validate_inputs(desc, &t->e, &t->f, &t->w, op)

/* [B, H, N, D] tensors, a projection, W */
#define BHND(name, field, role) MCL_TENSOR(name, &t->field, d->dtype, role, d->batch, d->heads, d->seq, d->head_dim)
#define PROJECTION(name, field, role)                                                            \
    MCL_TENSOR(name, &t->field, d->dtype, role, d->projection == MCL_FLURKA_PER_HEAD ? d->heads : 1, d->rank, d->seq)
#define W_CHECK(role) MCL_TENSOR("w", &t->w, MCL_F32, role, d->features, d->head_dim)
#define IN_IF(read) ((read) ? MCL_REQUIRED_IN : MCL_OPTIONAL_IN)

/* ---- choose parameters ------------------------------------------------------------------ */

static size_t feature_length(const mcl_flurka_desc *d)
{
    return d->map == MCL_FLURKA_ELU ? d->head_dim : d->map == MCL_FLURKA_SOFTMAX ? d->rank : d->features;
}

/* the rows of every head whose `len` features fit `floats`, at least 1 and at most `total` */
static size_t chunk_rows(size_t floats, size_t heads, size_t len, size_t total)
{
    size_t rows = floats / (heads * len);
    return rows < 1 ? 1 : rows > total ? total : rows;
}

static mcl_status choose_plan(mcl_context *ctx, const mcl_flurka_desc *d, fl_plan *plan)
{
    const size_t shape[4] = {d->heads, d->seq, d->head_dim, feature_length(d)};
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_flurka, d->dtype, shape, &plan->params, NULL));
    plan->bh = d->batch * d->heads;
    plan->keys = has_projection(d) ? d->rank : d->seq;
    plan->len = feature_length(d);
    size_t floats = ((size_t)plan->params.chunk_kib << 10) / sizeof(float);
    plan->row_chunk = chunk_rows(floats, plan->bh, plan->len, d->seq);
    plan->key_chunk = chunk_rows(floats, plan->bh, plan->len, plan->keys);
    double dim = (double)d->head_dim;
    plan->a_scale = d->map == MCL_FLURKA_FAVOR ? (float)pow(dim, -0.25) : d->map == MCL_FLURKA_SOFTMAX ? (float)(1.0 / sqrt(dim)) : 1.0f;
    return MCL_OK;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status forward_steps(mcl_walk *w, const void *opaque)
{
    const mcl_op_args *a = opaque;
    const mcl_flurka_desc *d = a->desc;
    const mcl_flurka_fwd_tensors *t = a->tensors;
    fl_plan plan;
    MCL_TRY(mcl_walk_step(w, NULL, choose_plan(w->ctx, d, &plan)));
    fl_keys keys;
    MCL_TRY(fl_keys_forward(w, d, &plan, &t->k, &t->v, &t->e, &t->f, &t->w, &keys));
    return fl_rows_forward(w, d, &plan, &keys, t);
}

/* What the backward is asked for: a sizing pass over no tensors (every output) reads the same. */
typedef struct fl_wants {
    int dq, dk, dv, de, df;
} fl_wants;

typedef struct bwd_args {
    const mcl_flurka_desc *desc;
    const mcl_flurka_bwd_tensors *tensors;
    fl_wants wants;
} bwd_args;

/* The keys and rows again, dq and the rows' sums; the keys' gradients (fp32, rows ld apart:
 * softmax's dK~ is the rows' sum da and its dV~ the dS columns of [dS | dz]); then the
 * projections' */
static mcl_status backward_steps(mcl_walk *w, const void *opaque)
{
    const bwd_args *a = opaque;
    const mcl_flurka_desc *d = a->desc;
    const mcl_flurka_bwd_tensors *t = a->tensors;
    fl_plan plan;
    MCL_TRY(mcl_walk_step(w, NULL, choose_plan(w->ctx, d, &plan)));
    fl_keys keys;
    MCL_TRY(fl_keys_forward(w, d, &plan, &t->k, &t->v, &t->e, &t->f, &t->w, &keys));
    size_t D = d->head_dim, dv = D + 1, softmax = d->map == MCL_FLURKA_SOFTMAX, keys_d = plan.bh * plan.keys * D;
    fl_buf dsvz = fl_part(w, FL_PART_DSVZ, plan.bh * plan.len * dv);
    fl_buf da = fl_part(w, FL_PART_DA, softmax ? keys_d : 0);
    MCL_TRY(fl_rows_backward(w, d, &plan, &keys, t, a->wants.dq, dsvz, da));
    fl_buf dkt = da, dvt = dsvz;
    size_t dk_ld = D, dv_ld = softmax ? dv : D;
    if (!softmax) {
        dkt = fl_part(w, FL_PART_DKT, keys_d), dvt = fl_part(w, FL_PART_DVT, keys_d);
        MCL_TRY(fl_keys_backward(w, d, &plan, &keys, &t->w, dsvz, dkt, dvt));
    }
    if (a->wants.dk) MCL_TRY(fl_project_back(w, "dK = E^T dK~", d, &plan, dkt, dk_ld, &t->e, &t->dk));
    if (a->wants.dv) MCL_TRY(fl_project_back(w, "dV = F^T dV~", d, &plan, dvt, dv_ld, &t->f, &t->dv));
    if (!has_projection(d)) return MCL_OK;
    if (a->wants.de) MCL_TRY(fl_project_grad(w, "dE = dK~ K^T", d, &plan, dkt, dk_ld, &t->k, &t->de));
    if (a->wants.df) MCL_TRY(fl_project_grad(w, "dF = dV~ V^T", d, &plan, dvt, dv_ld, &t->v, &t->df));
    return MCL_OK;
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_ENTRY_POINT(flurka, forward, fwd)
{
    MCL_ENTER(flurka, forward, VALIDATE_WITH_INPUTS, BHND("q", q, MCL_REQUIRED_IN), BHND("k", k, MCL_REQUIRED_IN),
              BHND("v", v, MCL_REQUIRED_IN), PROJECTION("e", e, IN_IF(has_projection(d))),
              PROJECTION("f", f, IN_IF(has_projection(d))), W_CHECK(IN_IF(reads_w(d))),
              BHND("out", out, MCL_REQUIRED_OUT),
              MCL_TENSOR("normalizer", &t->normalizer, MCL_F32, MCL_OPTIONAL_OUT, d->batch, d->heads, d->seq));
    return mcl_walk_op(ctx, "flurka_forward", forward_steps, &(mcl_op_args){d, t}, event);
}

MCL_ENTRY_POINT(flurka, backward, bwd)
{
    MCL_ENTER(flurka, backward, VALIDATE_WITH_INPUTS, BHND("q", q, MCL_REQUIRED_IN), BHND("k", k, MCL_REQUIRED_IN),
              BHND("v", v, MCL_REQUIRED_IN), PROJECTION("e", e, IN_IF(has_projection(d))),
              PROJECTION("f", f, IN_IF(has_projection(d))), W_CHECK(IN_IF(reads_w(d))),
              BHND("dout", dout, MCL_REQUIRED_IN), BHND("dq", dq, MCL_OPTIONAL_OUT), BHND("dk", dk, MCL_OPTIONAL_OUT),
              BHND("dv", dv, MCL_OPTIONAL_OUT), mcl_needing(PROJECTION("de", de, MCL_OPTIONAL_OUT), "e"),
              mcl_needing(PROJECTION("df", df, MCL_OPTIONAL_OUT), "f"));
    fl_wants wants = {mcl_has(&t->dq), mcl_has(&t->dk), mcl_has(&t->dv), mcl_has(&t->de), mcl_has(&t->df)};
    return mcl_walk_op(ctx, "flurka_backward", backward_steps, &(bwd_args){d, t, wants}, event);
}

MCL_WALKED_WORKSPACE_SIZES(flurka, ((fl_wants){1, 1, 1, 1, 1}))
