/* FLuRKA, Linformer and Performer: validate -> choose parameters -> enqueue, as steps of a walk.
 * Kernels: cl/flurka/ (keys.cl: the keys' features, [S | z] and the key gradients; rows.cl: the
 * query rows' maps and normalisation; copy.cl: keys and values to fp32 without a projection).
 * The dense products are GEMMs of the gemm family (its tuned tiles and split-K), with the fp32
 * intermediates as fp32 operands beside tensors of the storage type: the projections along the
 * sequence and their gradients, and the query rows' products with W (or K~), [S | z] and their
 * gradients, a chunk of rows of every head at a time, so that the rows' features take a bounded
 * workspace (CHUNK_KIB), never N x m. */
#include "flurka.h"

#include "ops/gemm/gemm.h"

#include "ops/common/check.h"
#include "ops/common/walk.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <math.h>
#include <string.h>

#define MAX_HEAD_DIM 256
#define MAX_FEATURES 4096
#define FLAG_SAVE_DEN 1u /* cl/flurka/rows.cl */

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

typedef struct fl_plan {
    fl_params params;     /* rows shrunk to the device's local memory */
    size_t bh, keys, len; /* heads in all, keys Nk (k, or N without projection), features L */
    size_t row_chunk;     /* query rows of every head whose features are in the workspace at once */
    size_t key_chunks, key_rows_per_chunk; /* the split of a head's keys into [S | z]'s partials */
    float a_scale;        /* on the features' dot products */
} fl_plan;

static size_t feature_length(const mcl_flurka_desc *d)
{
    return d->map == MCL_FLURKA_ELU ? d->head_dim : d->map == MCL_FLURKA_SOFTMAX ? d->rank : d->features;
}

/* the key sums' local memory for tiles of `rows` keys */
static uint64_t keys_local_bytes(size_t rows, size_t dim, size_t len)
{
    return (uint64_t)rows * (len + dim + 1) * sizeof(float);
}

static mcl_status choose_plan(mcl_context *ctx, const mcl_flurka_desc *d, fl_plan *plan)
{
    const size_t shape[4] = {d->heads, d->seq, d->head_dim, feature_length(d)};
    fl_params *p = &plan->params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_flurka, d->dtype, shape, p, NULL));
    plan->bh = d->batch * d->heads;
    plan->keys = has_projection(d) ? d->rank : d->seq;
    plan->len = feature_length(d);
    uint64_t local = ctx->device.info.local_mem_bytes;
    while (p->rows > 1 && keys_local_bytes((size_t)p->rows, d->head_dim, plan->len) > local) p->rows /= 2;
    uint64_t need = keys_local_bytes(1, d->head_dim, plan->len), grads = 2 * plan->len * sizeof(float);
    if (d->map != MCL_FLURKA_SOFTMAX && (need > local || grads > local))
        return mcl_fail(MCL_ERR_DEVICE_LIMIT, "flurka: a key's %zu features and head_dim %zu need %llu bytes of local "
                        "memory; the device has %llu", plan->len, d->head_dim,
                        (unsigned long long)(need > grads ? need : grads), (unsigned long long)local);
    /* the rows whose features (and their gradients) fit CHUNK_KIB; enough chunks of keys for
     * groups_per_cu work-groups a compute unit over all heads */
    size_t chunk_floats = ((size_t)p->chunk_kib << 10) / sizeof(float);
    plan->row_chunk = chunk_floats / (plan->bh * plan->len);
    if (plan->row_chunk < 1) plan->row_chunk = 1;
    if (plan->row_chunk > d->seq) plan->row_chunk = d->seq;
    size_t target = (size_t)ctx->device.info.compute_units * (size_t)p->groups_per_cu;
    size_t per_head = mcl_ceil_div(target, plan->bh);
    plan->key_rows_per_chunk = mcl_round_up(mcl_ceil_div(plan->keys, per_head), (size_t)p->rows);
    plan->key_chunks = mcl_ceil_div(plan->keys, plan->key_rows_per_chunk);
    double dim = (double)d->head_dim;
    plan->a_scale = d->map == MCL_FLURKA_FAVOR ? (float)pow(dim, -0.25) : d->map == MCL_FLURKA_SOFTMAX ? (float)(1.0 / sqrt(dim)) : 1.0f;
    return MCL_OK;
}

static mcl_status kernel_of(mcl_context *ctx, const mcl_flurka_desc *d, const fl_plan *plan, const char *source,
                            const char *name, cl_kernel *kernel)
{
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", d->dtype);
    mcl_define_params(&defines, &mcl_family_flurka, &plan->params, source);
    mcl_define(&defines, "FL_MAP", d->map);
    mcl_define(&defines, "FL_D", (long long)d->head_dim);
    mcl_define(&defines, "FL_L", (long long)plan->len);
    if (strcmp(source, "flurka/keys") == 0)
        mcl_define(&defines, "FL_ACC", (long long)mcl_ceil_div(plan->len * (d->head_dim + 1), (size_t)plan->params.wg));
    return mcl_kernel_get(ctx, &mcl_family_flurka, source, &defines, name, kernel);
}

/* One launch: the kernel `name` of `source`, its arguments, its grid. */
typedef struct fl_launch {
    const char *source, *name;
    cl_uint dims;
    size_t global[3], local[3];
} fl_launch;

static mcl_status launch(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_launch *l,
                         const mcl_arg *args, size_t nargs)
{
    cl_kernel kernel;
    MCL_TRY(kernel_of(w->ctx, d, plan, l->source, l->name, &kernel));
    MCL_TRY(mcl_set_args(kernel, args, nargs, l->name));
    size_t global[3];
    for (cl_uint i = 0; i < l->dims; i++) global[i] = mcl_round_up(l->global[i], l->local[i]);
    return mcl_enqueue(w->ctx, kernel, l->dims, global, l->local, l->name);
}

/* ---- enqueue ---------------------------------------------------------------------------- */

/* The workspace: fp32 intermediates, each in a part of its own. */
enum {
    PART_KT, PART_VT, PART_MAXIMA, PART_SVZ, PART_DSVZ, PART_DA, PART_DKT, PART_DVT,
    PART_PARTIAL_S,   /* the keys' partials of [S | z]; the rows' sums of [dS | dz] */
    PART_PARTIAL_A,   /* the rows' sums of dK~ (softmax) */
    PART_F, PART_G,   /* a chunk's features and their gradients */
    PART_NUMZ,        /* a chunk's [num | den], then [dnum | dden] */
    PART_GEMM_SPLITS, /* a GEMM's split-K partials */
    PART_GEMM_HEADS,  /* dE's and dF's sums over the heads sharing E, F */
};

/* A part's place as the kernels take it: a buffer and a float offset. */
typedef struct fl_buf {
    cl_mem mem;
    cl_ulong off;
} fl_buf;

static fl_buf part_of(mcl_walk *w, int part, size_t floats)
{
    mcl_tensor t = mcl_walk_part(w, part, floats * sizeof(float));
    return (fl_buf){t.mem, t.offset / sizeof(float)};
}

static fl_buf tensor_buf(const mcl_tensor *t, mcl_dtype dtype) { return (fl_buf){t->mem, mcl_elem_offset(t, mcl_dtype_size(dtype))}; }

/* What the keys' steps leave for the query rows: K~, V~, [S | z], and FAVOR+'s maxima of the
 * key chunks' exponents (the key gradients recompute phi(K~) with them). */
typedef struct fl_keys {
    fl_buf kt, vt, maxima, svz;
} fl_keys;

/* The matrix A [L, D] whose rows give a query's features, as a GEMM operand: W (fp32, shared by
 * the heads), or each head's projected keys for softmax. */
static gemm_matrix amat_of(const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys, const mcl_tensor *w,
                           int trans)
{
    size_t D = d->head_dim;
    if (d->map == MCL_FLURKA_SOFTMAX) return (gemm_matrix){keys->kt.mem, (size_t)keys->kt.off, D, plan->keys * D, trans, 1};
    return (gemm_matrix){w->mem, (size_t)mcl_elem_offset(w, sizeof(float)), D, 0, trans, 1};
}

/* The projection GEMMs run the heads that share nothing but E together: all B * H heads with
 * E shared, the H heads of one batch entry at a time with E per head. */
static size_t gemm_heads(const mcl_flurka_desc *d, const fl_plan *plan)
{
    return d->projection == MCL_FLURKA_PER_HEAD ? d->heads : plan->bh;
}

/* E (or F) as a GEMM operand: [k, N] rows, the next head's k * N on where it is per head */
static gemm_matrix projection_operand(const mcl_flurka_desc *d, const mcl_tensor *p, int trans)
{
    gemm_matrix m = gemm_operand(p, d->dtype, 0, d->seq, trans);
    m.batch_stride = d->projection == MCL_FLURKA_PER_HEAD ? d->rank * d->seq : 0;
    return m;
}

/* An fp32 intermediate [heads, rows, ld] as a GEMM operand, from head `first` on */
static gemm_matrix fp32_operand(fl_buf b, size_t first, size_t rows, size_t ld)
{
    return (gemm_matrix){b.mem, (size_t)b.off + first * rows * ld, ld, rows * ld, 0, 1};
}

/* xt = p x: K~ = E K, V~ = F V (or x itself in fp32) */
static mcl_status project_step(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan,
                               const mcl_tensor *x, const mcl_tensor *p, fl_buf xt)
{
    if (!has_projection(d)) {
        if (!w->enqueue) return MCL_OK;
        fl_buf xb = tensor_buf(x, d->dtype);
        cl_ulong count = plan->bh * d->seq * d->head_dim;
        const mcl_arg args[] = {MCL_ARG(xb.mem), MCL_ARG(xb.off), MCL_ARG(xt.mem), MCL_ARG(xt.off), MCL_ARG(count)};
        const fl_launch l = {"flurka/copy", "flurka_copy_in", 1, {count}, {64}};
        return mcl_walk_step(w, step, launch(w, d, plan, &l, args, MCL_COUNT(args)));
    }
    size_t heads = gemm_heads(d, plan), N = d->seq, D = d->head_dim, k = plan->keys;
    for (size_t first = 0; first < plan->bh; first += heads) {
        gemm_matrix xm = gemm_operand(x, d->dtype, first * N * D, D, 0);
        xm.batch_stride = N * D;
        gemm_call g = {.dtype = d->dtype, .m = k, .n = D, .k = N, .batch = heads,
                       .a = projection_operand(d, p, 0), .b = xm, .c = fp32_operand(xt, first, k, D)};
        MCL_TRY(mcl_gemm_step(w, step, &g, PART_GEMM_SPLITS));
    }
    return MCL_OK;
}

/* out[bh] = the sum of the `chunks` partials [len] of head bh, in order */
static mcl_status sum_chunks(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, fl_buf partial,
                             size_t chunks, size_t len, fl_buf out)
{
    cl_ulong chunks_l = chunks, len_l = len;
    const mcl_arg args[] = {MCL_ARG(partial.mem), MCL_ARG(partial.off), MCL_ARG(chunks_l),
                            MCL_ARG(len_l),       MCL_ARG(out.mem),     MCL_ARG(out.off)};
    const fl_launch l = {"flurka/keys", "flurka_sum_chunks", 2, {len, plan->bh}, {64, 1}};
    return launch(w, d, plan, &l, args, MCL_COUNT(args));
}

/* [S | z] = phi(K~)^T [V~ | 1] through per-chunk partials (FAVOR+'s key maxima first), or [V~ | 1]
 * itself for softmax */
static mcl_status key_values_step(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                                  const mcl_tensor *wt, fl_buf partial)
{
    size_t dv = d->head_dim + 1;
    if (d->map == MCL_FLURKA_SOFTMAX) {
        const mcl_arg args[] = {MCL_ARG(keys->vt.mem), MCL_ARG(keys->vt.off), MCL_ARG(keys->svz.mem),
                                MCL_ARG(keys->svz.off)};
        const fl_launch l = {"flurka/keys", "flurka_softmax_values", 3, {dv, plan->len, plan->bh}, {dv, 1, 1}};
        return launch(w, d, plan, &l, args, MCL_COUNT(args));
    }
    fl_buf wb = reads_w(d) ? tensor_buf(wt, MCL_F32) : (fl_buf){0};
    float a_scale = plan->a_scale;
    cl_ulong nk = plan->keys, rows_per_chunk = plan->key_rows_per_chunk;
    size_t wg = (size_t)plan->params.wg;
    const fl_launch grid = {"flurka/keys", NULL, 3, {wg, plan->key_chunks, plan->bh}, {wg, 1, 1}};
    if (d->map == MCL_FLURKA_FAVOR) {
        const mcl_arg args[] = {MCL_ARG(keys->kt.mem),     MCL_ARG(keys->kt.off),     MCL_ARG(wb.mem),
                                MCL_ARG(wb.off),           MCL_ARG(a_scale),          MCL_ARG(keys->maxima.mem),
                                MCL_ARG(keys->maxima.off), MCL_ARG(nk),               MCL_ARG(rows_per_chunk)};
        fl_launch l = grid;
        l.name = "flurka_key_maxima";
        MCL_TRY(launch(w, d, plan, &l, args, MCL_COUNT(args)));
    }
    const mcl_arg args[] = {MCL_ARG(keys->kt.mem),  MCL_ARG(keys->kt.off),     MCL_ARG(keys->vt.mem),
                            MCL_ARG(keys->vt.off),  MCL_ARG(wb.mem),           MCL_ARG(wb.off),
                            MCL_ARG(a_scale),       MCL_ARG(keys->maxima.mem), MCL_ARG(keys->maxima.off),
                            MCL_ARG(partial.mem),   MCL_ARG(partial.off),      MCL_ARG(nk),
                            MCL_ARG(rows_per_chunk)};
    fl_launch l = grid;
    l.name = "flurka_key_values";
    MCL_TRY(launch(w, d, plan, &l, args, MCL_COUNT(args)));
    return sum_chunks(w, d, plan, partial, plan->key_chunks, plan->len * dv, keys->svz);
}

/* K~, V~ and [S | z] in the workspace: the forward's and the backward's first steps */
static mcl_status keys_steps(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const mcl_tensor *k,
                             const mcl_tensor *v, const mcl_tensor *e, const mcl_tensor *f, const mcl_tensor *wt,
                             fl_keys *keys)
{
    size_t key_floats = plan->bh * plan->keys * d->head_dim;
    keys->kt = part_of(w, PART_KT, key_floats);
    keys->vt = part_of(w, PART_VT, key_floats);
    keys->maxima = part_of(w, PART_MAXIMA, d->map == MCL_FLURKA_FAVOR ? plan->bh * plan->key_chunks : 0);
    keys->svz = part_of(w, PART_SVZ, plan->bh * plan->len * (d->head_dim + 1));
    /* the partials of [S | z]; the backward's query rows reuse the part for theirs */
    size_t kernel_map = d->map != MCL_FLURKA_SOFTMAX;
    fl_buf partial = part_of(w, PART_PARTIAL_S, kernel_map * plan->bh * plan->key_chunks * plan->len * (d->head_dim + 1));
    MCL_TRY(project_step(w, "K~ = E K", d, plan, k, e, keys->kt));
    MCL_TRY(project_step(w, "V~ = F V", d, plan, v, f, keys->vt));
    return w->enqueue ? mcl_walk_step(w, "S and z", key_values_step(w, d, plan, keys, wt, partial)) : MCL_OK;
}

/* ---- the query rows, a chunk of rows of every head at a time ------------------------------ */

/* A chunk: rows first .. first + count - 1 of every head, and where its intermediates live. */
typedef struct fl_chunk {
    size_t first, count;
    fl_buf f, g, numz; /* [B * H, row_chunk, L], [.., L], [.., D + 1] */
} fl_chunk;

static fl_chunk chunk_of(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, int backward)
{
    size_t rows = plan->bh * plan->row_chunk;
    return (fl_chunk){0, 0, part_of(w, PART_F, rows * plan->len), part_of(w, PART_G, backward ? rows * plan->len : 0),
                      part_of(w, PART_NUMZ, rows * (d->head_dim + 1))};
}

/* a [B * H, row_chunk, ld] intermediate of the chunk as a GEMM operand */
static gemm_matrix chunk_operand(const fl_plan *plan, fl_buf b, size_t ld, int trans)
{
    return (gemm_matrix){b.mem, (size_t)b.off, ld, plan->row_chunk * ld, trans, 1};
}

/* a [B * H, N, D] tensor from the chunk's first row on, as a GEMM operand */
static gemm_matrix rows_operand(const mcl_flurka_desc *d, const fl_chunk *c, const mcl_tensor *t)
{
    gemm_matrix m = gemm_operand(t, d->dtype, c->first * d->head_dim, d->head_dim, 0);
    m.batch_stride = d->seq * d->head_dim;
    return m;
}

/* A row kernel over the chunk: grid (width, rows, B * H) */
static mcl_status chunk_launch(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_chunk *c,
                               const char *name, size_t width, size_t local, const mcl_arg *args, size_t nargs)
{
    const fl_launch l = {"flurka/rows", name, 3, {width, c->count, plan->bh}, {local, 1, 1}};
    return launch(w, d, plan, &l, args, nargs);
}

/* f = phi(q) of the chunk's rows (Q A^T through the map), then numz = f [S | z] */
static mcl_status chunk_values(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                               const mcl_tensor *q, const mcl_tensor *wt, const fl_chunk *c)
{
    size_t L = plan->len, dv = d->head_dim + 1;
    if (d->map != MCL_FLURKA_ELU) {
        gemm_call dots = {.dtype = d->dtype, .m = c->count, .n = L, .k = d->head_dim, .batch = plan->bh,
                          .a = rows_operand(d, c, q), .b = amat_of(d, plan, keys, wt, 1), .c = chunk_operand(plan, c->f, L, 0)};
        MCL_TRY(mcl_gemm_step(w, "q . A", &dots, PART_GEMM_SPLITS));
    }
    if (w->enqueue) {
        fl_buf qb = tensor_buf(q, d->dtype);
        cl_ulong q_off = qb.off + c->first * d->head_dim, head = plan->row_chunk * L, n = d->seq;
        float a_scale = plan->a_scale;
        const mcl_arg args[] = {MCL_ARG(c->f.mem), MCL_ARG(c->f.off), MCL_ARG(head), MCL_ARG(qb.mem),
                                MCL_ARG(q_off),    MCL_ARG(n),        MCL_ARG(a_scale)};
        size_t wg = (size_t)plan->params.row_wg;
        MCL_TRY(mcl_walk_step(w, "features", chunk_launch(w, d, plan, c, "flurka_row_features", wg, wg, args, MCL_COUNT(args))));
    }
    gemm_matrix svz = {keys->svz.mem, (size_t)keys->svz.off, dv, L * dv, 0, 1};
    gemm_call values = {.dtype = d->dtype, .m = c->count, .n = dv, .k = L, .batch = plan->bh,
                        .a = chunk_operand(plan, c->f, L, 0), .b = svz, .c = chunk_operand(plan, c->numz, dv, 0)};
    return mcl_gemm_step(w, "phi(q) [S | z]", &values, PART_GEMM_SPLITS);
}

static mcl_status chunk_output(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan,
                               const mcl_flurka_fwd_tensors *t, const fl_chunk *c)
{
    fl_buf out = tensor_buf(&t->out, d->dtype), den = tensor_buf(&t->normalizer, MCL_F32);
    cl_ulong out_off = out.off + c->first * d->head_dim, den_off = den.off + c->first, n = d->seq,
             head = plan->row_chunk * (d->head_dim + 1);
    cl_uint flags = mcl_has(&t->normalizer) ? FLAG_SAVE_DEN : 0;
    const mcl_arg args[] = {MCL_ARG(c->numz.mem), MCL_ARG(c->numz.off), MCL_ARG(head),  MCL_ARG(out.mem),
                            MCL_ARG(out_off),     MCL_ARG(den.mem),     MCL_ARG(den_off), MCL_ARG(n),
                            MCL_ARG(flags)};
    return chunk_launch(w, d, plan, c, "flurka_row_output", d->head_dim, 64, args, MCL_COUNT(args));
}

static mcl_status rows_forward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                               const mcl_flurka_fwd_tensors *t)
{
    fl_chunk c = chunk_of(w, d, plan, 0);
    for (c.first = 0; c.first < d->seq; c.first += plan->row_chunk) {
        c.count = d->seq - c.first < plan->row_chunk ? d->seq - c.first : plan->row_chunk;
        MCL_TRY(chunk_values(w, d, plan, keys, &t->q, &t->w, &c));
        if (w->enqueue) MCL_TRY(mcl_walk_step(w, "output", chunk_output(w, d, plan, t, &c)));
    }
    return MCL_OK;
}

static mcl_status forward_steps(mcl_walk *w, const void *opaque)
{
    const mcl_op_args *a = opaque;
    const mcl_flurka_desc *d = a->desc;
    const mcl_flurka_fwd_tensors *t = a->tensors;
    fl_plan plan;
    MCL_TRY(mcl_walk_step(w, NULL, choose_plan(w->ctx, d, &plan)));
    fl_keys keys;
    MCL_TRY(keys_steps(w, d, &plan, &t->k, &t->v, &t->e, &t->f, &t->w, &keys));
    return rows_forward(w, d, &plan, &keys, t);
}

/* ---- backward ---------------------------------------------------------------------------- */

/* What the backward is asked for: a sizing pass over no tensors (every output) reads the same. */
typedef struct fl_wants {
    int dq, dk, dv, de, df;
} fl_wants;

typedef struct bwd_args {
    const mcl_flurka_desc *desc;
    const mcl_flurka_bwd_tensors *tensors;
    fl_wants wants;
} bwd_args;

/* The gradients of K~ and V~ (fp32, rows ld apart) */
typedef struct fl_key_grads {
    fl_buf dkt, dvt;
    size_t dk_ld, dv_ld;
} fl_key_grads;

/* The sums over the rows of [dS | dz] = phi(q)^T [dnum | dden] and, for softmax, of dK~ = g^T q:
 * each chunk adds its GEMM to fp32 sums (in chunk order), summed into dsvz and da at the end. */
typedef struct fl_row_sums {
    gemm_call dsvz, da;
    gemm_plan dsvz_plan, da_plan;
    mcl_tensor dsvz_slots, da_slots;
} fl_row_sums;

static mcl_status row_sums_of(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_chunk *c,
                              const mcl_tensor *q, fl_buf dsvz, fl_buf da, fl_row_sums *sums)
{
    size_t L = plan->len, D = d->head_dim, dv = D + 1;
    fl_chunk whole = *c;
    whole.count = plan->row_chunk; /* the first chunk's size plans every chunk */
    sums->dsvz = (gemm_call){.dtype = d->dtype, .m = L, .n = dv, .k = whole.count, .batch = plan->bh,
                             .a = chunk_operand(plan, c->f, L, 1), .b = chunk_operand(plan, c->numz, dv, 0),
                             .c = {dsvz.mem, (size_t)dsvz.off, dv, L * dv, 0, 1}};
    MCL_TRY(mcl_walk_step(w, "sum of dS and dz", mcl_gemm_plan(w->ctx, &sums->dsvz, &sums->dsvz_plan)));
    sums->dsvz_slots = mcl_walk_part(w, PART_PARTIAL_S, sums->dsvz_plan.splits * plan->bh * L * dv * sizeof(float));
    if (d->map != MCL_FLURKA_SOFTMAX) return MCL_OK;
    sums->da = (gemm_call){.dtype = d->dtype, .m = L, .n = D, .k = whole.count, .batch = plan->bh,
                           .a = chunk_operand(plan, c->g, L, 1), .b = rows_operand(d, &whole, q),
                           .c = {da.mem, (size_t)da.off, D, L * D, 0, 1}};
    MCL_TRY(mcl_walk_step(w, "sum of dK~", mcl_gemm_plan(w->ctx, &sums->da, &sums->da_plan)));
    sums->da_slots = mcl_walk_part(w, PART_PARTIAL_A, sums->da_plan.splits * plan->bh * L * D * sizeof(float));
    return MCL_OK;
}

/* the chunk's share of a row sum: `call` with k its rows and B from its first row on */
static mcl_status add_chunk(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_chunk *c,
                            const gemm_call *call, const gemm_plan *plan, mcl_tensor slots, int b_rows)
{
    gemm_call piece = *call;
    piece.k = c->count;
    if (b_rows) piece.b.off += c->first * d->head_dim;
    return mcl_gemm_piece_step(w, step, &piece, plan, slots, 0, plan->splits, c->first > 0);
}

/* [dnum | dden] from dout, g = dphi through the map's slope, dq = g A */
static mcl_status chunk_gradients(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                                  const mcl_flurka_bwd_tensors *t, int want_dq, const fl_chunk *c)
{
    size_t L = plan->len, dv = d->head_dim + 1, wg = (size_t)plan->params.row_wg;
    fl_buf dout = tensor_buf(&t->dout, d->dtype), q = tensor_buf(&t->q, d->dtype);
    cl_ulong n = d->seq, dout_off = dout.off + c->first * d->head_dim, q_off = q.off + c->first * d->head_dim,
             numz_head = plan->row_chunk * dv, head = plan->row_chunk * L;
    if (w->enqueue) {
        const mcl_arg args[] = {MCL_ARG(c->numz.mem), MCL_ARG(c->numz.off), MCL_ARG(numz_head),
                                MCL_ARG(dout.mem),    MCL_ARG(dout_off),    MCL_ARG(n)};
        MCL_TRY(mcl_walk_step(w, "dnum and dden", chunk_launch(w, d, plan, c, "flurka_row_dz", wg, wg, args, MCL_COUNT(args))));
    }
    gemm_matrix svz_t = {keys->svz.mem, (size_t)keys->svz.off, dv, L * dv, 1, 1};
    gemm_call dphi = {.dtype = d->dtype, .m = c->count, .n = L, .k = dv, .batch = plan->bh,
                      .a = chunk_operand(plan, c->numz, dv, 0), .b = svz_t, .c = chunk_operand(plan, c->g, L, 0)};
    MCL_TRY(mcl_gemm_step(w, "dphi", &dphi, PART_GEMM_SPLITS));
    if (w->enqueue) {
        float a_scale = plan->a_scale;
        const mcl_arg args[] = {MCL_ARG(c->g.mem), MCL_ARG(c->g.off), MCL_ARG(c->f.mem), MCL_ARG(c->f.off),
                                MCL_ARG(head),     MCL_ARG(q.mem),    MCL_ARG(q_off),    MCL_ARG(n),
                                MCL_ARG(a_scale)};
        MCL_TRY(mcl_walk_step(w, "slopes", chunk_launch(w, d, plan, c, "flurka_row_slopes", L, 64, args, MCL_COUNT(args))));
    }
    if (!want_dq) return MCL_OK;
    if (d->map == MCL_FLURKA_ELU) { /* dq is g itself */
        if (!w->enqueue) return MCL_OK;
        fl_buf dq = tensor_buf(&t->dq, d->dtype);
        cl_ulong dq_off = dq.off + c->first * d->head_dim;
        const mcl_arg args[] = {MCL_ARG(c->g.mem), MCL_ARG(c->g.off), MCL_ARG(head), MCL_ARG(dq.mem), MCL_ARG(dq_off),
                                MCL_ARG(n)};
        return mcl_walk_step(w, "dq", chunk_launch(w, d, plan, c, "flurka_row_dq", d->head_dim, 64, args, MCL_COUNT(args)));
    }
    gemm_call dq = {.dtype = d->dtype, .m = c->count, .n = d->head_dim, .k = L, .batch = plan->bh,
                    .a = chunk_operand(plan, c->g, L, 0), .b = amat_of(d, plan, keys, &t->w, 0),
                    .c = rows_operand(d, c, &t->dq)};
    return mcl_gemm_step(w, "dq = g A", &dq, PART_GEMM_SPLITS);
}

/* dq, and the rows' sums [dS | dz] into dsvz (and dK~ into da for softmax) */
static mcl_status rows_backward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                                const mcl_flurka_bwd_tensors *t, int want_dq, fl_buf dsvz, fl_buf da)
{
    fl_chunk c = chunk_of(w, d, plan, 1);
    fl_row_sums sums;
    MCL_TRY(row_sums_of(w, d, plan, &c, &t->q, dsvz, da, &sums));
    for (c.first = 0; c.first < d->seq; c.first += plan->row_chunk) {
        c.count = d->seq - c.first < plan->row_chunk ? d->seq - c.first : plan->row_chunk;
        MCL_TRY(chunk_values(w, d, plan, keys, &t->q, &t->w, &c));
        MCL_TRY(chunk_gradients(w, d, plan, keys, t, want_dq, &c));
        MCL_TRY(add_chunk(w, "sum of dS and dz", d, &c, &sums.dsvz, &sums.dsvz_plan, sums.dsvz_slots, 0));
        if (d->map == MCL_FLURKA_SOFTMAX)
            MCL_TRY(add_chunk(w, "sum of dK~", d, &c, &sums.da, &sums.da_plan, sums.da_slots, 1));
    }
    MCL_TRY(mcl_gemm_sum_step(w, "sum of dS and dz", &sums.dsvz, sums.dsvz_slots, sums.dsvz_plan.splits));
    if (d->map == MCL_FLURKA_SOFTMAX)
        MCL_TRY(mcl_gemm_sum_step(w, "sum of dK~", &sums.da, sums.da_slots, sums.da_plan.splits));
    return MCL_OK;
}

static mcl_status key_grads(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                            const mcl_tensor *wt, fl_buf dsvz, const fl_key_grads *g)
{
    fl_buf wb = reads_w(d) ? tensor_buf(wt, MCL_F32) : (fl_buf){0};
    float a_scale = plan->a_scale;
    cl_ulong nk = plan->keys;
    cl_ulong key_chunks = plan->key_chunks;
    const mcl_arg args[] = {MCL_ARG(keys->kt.mem),     MCL_ARG(keys->kt.off),     MCL_ARG(keys->vt.mem),
                            MCL_ARG(keys->vt.off),     MCL_ARG(wb.mem),           MCL_ARG(wb.off),
                            MCL_ARG(a_scale),          MCL_ARG(keys->maxima.mem), MCL_ARG(keys->maxima.off),
                            MCL_ARG(key_chunks),       MCL_ARG(dsvz.mem),         MCL_ARG(dsvz.off),
                            MCL_ARG(g->dkt.mem),       MCL_ARG(g->dkt.off),       MCL_ARG(g->dvt.mem),
                            MCL_ARG(g->dvt.off),       MCL_ARG(nk)};
    size_t key_wg = (size_t)plan->params.key_wg;
    const fl_launch l = {"flurka/keys", "flurka_key_grads", 3, {key_wg, nk, plan->bh}, {key_wg, 1, 1}};
    return launch(w, d, plan, &l, args, MCL_COUNT(args));
}

/* dx = p^T dxt: dK = E^T dK~, dV = F^T dV~ (or dxt itself back in the storage dtype); dxt's
 * rows ldx apart */
static mcl_status project_back(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan,
                               fl_buf dxt, size_t ldx, const mcl_tensor *p, const mcl_tensor *dx)
{
    if (!has_projection(d)) { /* the kernel maps' key gradients are dense rows of D */
        if (!w->enqueue) return MCL_OK;
        fl_buf out = tensor_buf(dx, d->dtype);
        cl_ulong count = plan->bh * d->seq * d->head_dim;
        const mcl_arg args[] = {MCL_ARG(dxt.mem), MCL_ARG(dxt.off), MCL_ARG(out.mem), MCL_ARG(out.off), MCL_ARG(count)};
        const fl_launch l = {"flurka/copy", "flurka_copy_out", 1, {count}, {64}};
        return mcl_walk_step(w, step, launch(w, d, plan, &l, args, MCL_COUNT(args)));
    }
    size_t heads = gemm_heads(d, plan), N = d->seq, D = d->head_dim, k = plan->keys;
    for (size_t first = 0; first < plan->bh; first += heads) {
        gemm_matrix out = gemm_operand(dx, d->dtype, first * N * D, D, 0);
        out.batch_stride = N * D;
        gemm_call g = {.dtype = d->dtype, .m = N, .n = D, .k = k, .batch = heads,
                       .a = projection_operand(d, p, 1), .b = fp32_operand(dxt, first, k, ldx), .c = out};
        MCL_TRY(mcl_gemm_step(w, step, &g, PART_GEMM_SPLITS));
    }
    return MCL_OK;
}

/* dp = the sum over the heads sharing p of dxt x^T: dE = sum dK~ K^T, dF = sum dV~ V^T. One GEMM
 * of D-long products per batch entry (E per head, its H heads batched) or per head (E shared);
 * where several share p, each adds its products to fp32 sums in head order, then summed into dp. */
static mcl_status project_grad(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan,
                               fl_buf dxt, size_t ldx, const mcl_tensor *x, const mcl_tensor *dp)
{
    size_t per_head = d->projection == MCL_FLURKA_PER_HEAD, heads = per_head ? d->heads : 1;
    size_t sharing = plan->bh / heads, N = d->seq, D = d->head_dim, k = plan->keys;
    gemm_matrix xm = gemm_operand(x, d->dtype, 0, D, 1), out = gemm_operand(dp, d->dtype, 0, N, 0);
    xm.batch_stride = N * D, out.batch_stride = k * N;
    gemm_call g = {.dtype = d->dtype, .m = k, .n = N, .k = D, .batch = heads,
                   .a = fp32_operand(dxt, 0, k, ldx), .b = xm, .c = out};
    if (sharing == 1) return mcl_gemm_step(w, step, &g, PART_GEMM_SPLITS);
    gemm_plan gp;
    MCL_TRY(mcl_walk_step(w, step, mcl_gemm_plan(w->ctx, &g, &gp)));
    mcl_tensor sums = mcl_walk_part(w, PART_GEMM_HEADS, gp.splits * heads * k * N * sizeof(float));
    for (size_t s = 0; s < sharing; s++) {
        gemm_call piece = g;
        piece.a.off += s * heads * k * ldx, piece.b.off += s * heads * N * D;
        MCL_TRY(mcl_gemm_piece_step(w, step, &piece, &gp, sums, 0, gp.splits, s > 0));
    }
    return mcl_gemm_sum_step(w, step, &g, sums, gp.splits);
}

/* dq with the rows' sums [dS | dz] (and dK~ for softmax); then the kernel maps' dK~ and dV~ */
static mcl_status key_gradient_steps(mcl_walk *w, const bwd_args *a, const fl_plan *plan, const fl_keys *keys,
                                     fl_key_grads *g)
{
    const mcl_flurka_desc *d = a->desc;
    size_t dv = d->head_dim + 1, softmax = d->map == MCL_FLURKA_SOFTMAX;
    fl_buf dsvz = part_of(w, PART_DSVZ, plan->bh * plan->len * dv);
    fl_buf da = part_of(w, PART_DA, softmax ? plan->bh * plan->len * d->head_dim : 0);
    size_t key_floats = plan->bh * plan->keys * d->head_dim;
    /* softmax's dK~ is the rows' sum da and its dV~ the dS columns of [dS | dz] */
    *g = softmax ? (fl_key_grads){da, dsvz, d->head_dim, dv}
                 : (fl_key_grads){part_of(w, PART_DKT, key_floats), part_of(w, PART_DVT, key_floats), d->head_dim,
                                  d->head_dim};
    MCL_TRY(rows_backward(w, d, plan, keys, a->tensors, a->wants.dq, dsvz, da));
    if (softmax || !w->enqueue) return MCL_OK;
    return mcl_walk_step(w, "dK~ and dV~", key_grads(w, d, plan, keys, &a->tensors->w, dsvz, g));
}

static mcl_status backward_steps(mcl_walk *w, const void *opaque)
{
    const bwd_args *a = opaque;
    const mcl_flurka_desc *d = a->desc;
    const mcl_flurka_bwd_tensors *t = a->tensors;
    fl_plan plan;
    MCL_TRY(mcl_walk_step(w, NULL, choose_plan(w->ctx, d, &plan)));
    fl_keys keys;
    MCL_TRY(keys_steps(w, d, &plan, &t->k, &t->v, &t->e, &t->f, &t->w, &keys));
    fl_key_grads g;
    MCL_TRY(key_gradient_steps(w, a, &plan, &keys, &g));
    if (a->wants.dk) MCL_TRY(project_back(w, "dK = E^T dK~", d, &plan, g.dkt, g.dk_ld, &t->e, &t->dk));
    if (a->wants.dv) MCL_TRY(project_back(w, "dV = F^T dV~", d, &plan, g.dvt, g.dv_ld, &t->f, &t->dv));
    if (!has_projection(d)) return MCL_OK;
    if (a->wants.de) MCL_TRY(project_grad(w, "dE = dK~ K^T", d, &plan, g.dkt, g.dk_ld, &t->k, &t->de));
    if (a->wants.df) MCL_TRY(project_grad(w, "dF = dV~ V^T", d, &plan, g.dvt, g.dv_ld, &t->v, &t->df));
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
