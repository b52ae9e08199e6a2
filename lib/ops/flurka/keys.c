/* FLuRKA's keys (steps.h): K~ and [V~ | 1] projected, then [S | z] = phi(K~)^T [V~ | 1] a chunk
 * of keys at a time; backward, the kernel maps' dK~ and dV~ from [dS | dz]. Softmax (Linformer)
 * reads [V~ | 1] as its [S | z] and takes its key gradients from the query rows. */
#include "steps.h"

#include "ops/common/check.h"

/* V~'s last column: 1 */
static mcl_status values_ones(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, fl_buf vt)
{
    if (!w->enqueue) return MCL_OK;
    cl_ulong rows = plan->bh * plan->keys;
    const mcl_arg args[] = {MCL_ARG(vt.mem), MCL_ARG(vt.off), MCL_ARG(rows)};
    const size_t global[1] = {rows}, local[1] = {64};
    return mcl_walk_step(w, "V~'s ones", fl_launch(w, d, plan, "keys", "flurka_values_ones", 1, global, local, args,
                                                   MCL_COUNT(args)));
}

/* The chunk's features in c->f: the GEMM K~ W^T (elu + 1 reads K~ itself), then the map. FAVOR+
 * with `maxima_only` records each key's largest exponent instead. */
static mcl_status key_features(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                               const mcl_tensor *wt, const fl_chunk *c, cl_uint maxima_only)
{
    size_t D = d->head_dim, L = plan->len;
    if (d->map != MCL_FLURKA_ELU) {
        gemm_call dots = {.dtype = d->dtype, .m = c->count, .n = L, .k = D, .batch = plan->bh,
                          .a = fl_fp32_rows(keys->kt, plan->keys, D, c->first), .b = fl_amat(d, plan, keys, wt, 1),
                          .c = fl_chunk_operand(c, c->f, L, 0)};
        MCL_TRY(mcl_gemm_step(w, "k~ . w", &dots, FL_PART_GEMM_SPLITS));
    }
    if (!w->enqueue) return MCL_OK;
    cl_ulong head = c->capacity * L, kt_off = keys->kt.off + c->first * D, nk = plan->keys,
             maxima_off = keys->maxima.off + c->first;
    float a_scale = plan->a_scale;
    const mcl_arg args[] = {MCL_ARG(c->f.mem),       MCL_ARG(c->f.off),     MCL_ARG(head),
                            MCL_ARG(keys->kt.mem),   MCL_ARG(kt_off),       MCL_ARG(nk),
                            MCL_ARG(a_scale),        MCL_ARG(keys->maxima.mem), MCL_ARG(maxima_off),
                            MCL_ARG(keys->heads.mem), MCL_ARG(keys->heads.off), MCL_ARG(maxima_only)};
    size_t wg = (size_t)plan->params.row_wg;
    return mcl_walk_step(w, maxima_only ? "key maxima" : "key features",
                         fl_chunk_launch(w, d, plan, c, "keys", "flurka_key_features", wg, wg, args, MCL_COUNT(args)));
}

/* FAVOR+: each head's largest key exponent, over all its keys (it cancels in the ratio and keeps
 * every key feature finite) */
static mcl_status head_maxima(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                              const mcl_tensor *wt)
{
    fl_chunk c = fl_chunk_of(w, d, plan, plan->key_chunk, 0);
    while (fl_chunk_next(&c, plan->keys)) MCL_TRY(key_features(w, d, plan, keys, wt, &c, 1));
    if (!w->enqueue) return MCL_OK;
    cl_ulong nk = plan->keys;
    const mcl_arg args[] = {MCL_ARG(keys->maxima.mem), MCL_ARG(keys->maxima.off), MCL_ARG(nk),
                            MCL_ARG(keys->heads.mem),  MCL_ARG(keys->heads.off)};
    size_t wg = (size_t)plan->params.row_wg;
    const size_t global[2] = {wg, plan->bh}, local[2] = {wg, 1};
    return mcl_walk_step(w, "head maxima", fl_launch(w, d, plan, "keys", "flurka_head_max", 2, global, local, args,
                                                     MCL_COUNT(args)));
}

/* [S | z] = phi(K~)^T [V~ | 1], summed over the chunks of keys */
static mcl_status key_values(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                             const mcl_tensor *wt)
{
    if (d->map == MCL_FLURKA_FAVOR) MCL_TRY(head_maxima(w, d, plan, keys, wt));
    size_t L = plan->len, dv = d->head_dim + 1;
    fl_chunk c = fl_chunk_of(w, d, plan, plan->key_chunk, 0);
    fl_sum sums = {.call = {.dtype = d->dtype, .m = L, .n = dv, .k = c.capacity, .batch = plan->bh,
                            .a = fl_chunk_operand(&c, c.f, L, 1), .b = fl_fp32_rows(keys->vt, plan->keys, dv, 0),
                            .c = fl_fp32_rows(keys->svz, L, dv, 0)},
                   .b_row = dv};
    MCL_TRY(fl_sum_begin(w, "S and z", FL_PART_SUMS, &sums));
    while (fl_chunk_next(&c, plan->keys)) {
        MCL_TRY(key_features(w, d, plan, keys, wt, &c, 0));
        MCL_TRY(fl_sum_add(w, "S and z", &sums, &c));
    }
    return fl_sum_end(w, "S and z", &sums);
}

mcl_status fl_keys_forward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const mcl_tensor *k,
                           const mcl_tensor *v, const mcl_tensor *e, const mcl_tensor *f, const mcl_tensor *wt,
                           fl_keys *keys)
{
    size_t D = d->head_dim, dv = D + 1, favor = d->map == MCL_FLURKA_FAVOR;
    keys->kt = fl_part(w, FL_PART_KT, plan->bh * plan->keys * D);
    keys->vt = fl_part(w, FL_PART_VT, plan->bh * plan->keys * dv);
    keys->maxima = fl_part(w, FL_PART_MAXIMA, favor ? plan->bh * (plan->keys + 1) : 0);
    keys->heads = (fl_buf){keys->maxima.mem, keys->maxima.off + plan->bh * plan->keys};
    int softmax = d->map == MCL_FLURKA_SOFTMAX;
    keys->svz = softmax ? keys->vt : fl_part(w, FL_PART_SVZ, plan->bh * plan->len * dv);
    MCL_TRY(fl_project(w, "K~ = E K", d, plan, k, e, keys->kt, D));
    MCL_TRY(fl_project(w, "V~ = F V", d, plan, v, f, keys->vt, dv));
    MCL_TRY(values_ones(w, d, plan, keys->vt));
    return softmax ? MCL_OK : key_values(w, d, plan, keys, wt);
}

/* g = dphi through the map's slope (FAVOR+: with each key's sum of g into c->numz) */
static mcl_status key_slopes(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                             const fl_chunk *c)
{
    if (!w->enqueue) return MCL_OK;
    cl_ulong head = c->capacity * plan->len, kt_off = keys->kt.off + c->first * d->head_dim, nk = plan->keys,
             s_head = c->capacity;
    float a_scale = plan->a_scale;
    const mcl_arg args[] = {MCL_ARG(c->g.mem), MCL_ARG(c->g.off),    MCL_ARG(c->f.mem),    MCL_ARG(c->f.off),
                            MCL_ARG(head),     MCL_ARG(keys->kt.mem), MCL_ARG(kt_off),      MCL_ARG(nk),
                            MCL_ARG(a_scale),  MCL_ARG(c->numz.mem), MCL_ARG(c->numz.off), MCL_ARG(s_head)};
    size_t wg = (size_t)plan->params.row_wg;
    return mcl_walk_step(w, "key slopes",
                         fl_chunk_launch(w, d, plan, c, "keys", "flurka_key_slopes", wg, wg, args, MCL_COUNT(args)));
}

/* dk~ of the chunk: g W (FAVOR+ and ReLU) then FAVOR+'s norm term, or g itself (elu + 1) */
static mcl_status key_dk(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                         const mcl_tensor *wt, const fl_chunk *c, fl_buf dkt)
{
    size_t D = d->head_dim, L = plan->len;
    if (d->map != MCL_FLURKA_ELU) {
        gemm_call gw = {.dtype = d->dtype, .m = c->count, .n = D, .k = L, .batch = plan->bh,
                        .a = fl_chunk_operand(c, c->g, L, 0), .b = fl_amat(d, plan, keys, wt, 0),
                        .c = fl_fp32_rows(dkt, plan->keys, D, c->first)};
        MCL_TRY(mcl_gemm_step(w, "dk~ = g W", &gw, FL_PART_GEMM_SPLITS));
    }
    if (!w->enqueue || d->map == MCL_FLURKA_RELU) return MCL_OK;
    cl_ulong first = c->first * D, dkt_off = dkt.off + first, kt_off = keys->kt.off + first, nk = plan->keys,
             head = c->capacity * L, s_head = c->capacity;
    float a_scale = plan->a_scale;
    const mcl_arg args[] = {MCL_ARG(dkt.mem),  MCL_ARG(dkt_off),     MCL_ARG(keys->kt.mem), MCL_ARG(kt_off),
                            MCL_ARG(nk),       MCL_ARG(c->g.mem),    MCL_ARG(c->g.off),     MCL_ARG(head),
                            MCL_ARG(c->numz.mem), MCL_ARG(c->numz.off), MCL_ARG(s_head),    MCL_ARG(a_scale)};
    return mcl_walk_step(w, "dk~", fl_chunk_launch(w, d, plan, c, "keys", "flurka_key_dk", D, 64, args, MCL_COUNT(args)));
}

/* per chunk: phi again, dphi = [v~ | 1] [dS | dz]^T, dv~ = phi dS, then dk~ through the map */
mcl_status fl_keys_backward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                            const mcl_tensor *wt, fl_buf dsvz, fl_buf dkt, fl_buf dvt)
{
    size_t D = d->head_dim, dv = D + 1, L = plan->len;
    fl_chunk c = fl_chunk_of(w, d, plan, plan->key_chunk, 1);
    while (fl_chunk_next(&c, plan->keys)) {
        MCL_TRY(key_features(w, d, plan, keys, wt, &c, 0));
        gemm_call dphi = {.dtype = d->dtype, .m = c.count, .n = L, .k = dv, .batch = plan->bh,
                          .a = fl_fp32_rows(keys->vt, plan->keys, dv, c.first),
                          .b = {dsvz.mem, (size_t)dsvz.off, dv, L * dv, 1, 1}, .c = fl_chunk_operand(&c, c.g, L, 0)};
        MCL_TRY(mcl_gemm_step(w, "dphi", &dphi, FL_PART_GEMM_SPLITS));
        gemm_call dvt_call = {.dtype = d->dtype, .m = c.count, .n = D, .k = L, .batch = plan->bh,
                              .a = fl_chunk_operand(&c, c.f, L, 0), .b = fl_fp32_rows(dsvz, L, dv, 0),
                              .c = fl_fp32_rows(dvt, plan->keys, D, c.first)};
        MCL_TRY(mcl_gemm_step(w, "dv~ = phi dS", &dvt_call, FL_PART_GEMM_SPLITS));
        MCL_TRY(key_slopes(w, d, plan, keys, &c));
        MCL_TRY(key_dk(w, d, plan, keys, wt, &c, dkt));
    }
    return MCL_OK;
}
