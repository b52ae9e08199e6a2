/* What the pair stack's step needs of the device, and the largest N_res that fits (see
 * pairstack.h). */
#include "pairstack_path.h"

#include <stdlib.h>

/* Temporaries start on 256-byte boundaries in their region, so that every op's vector paths hold. */
#define REGION_ALIGN 256

void ps_layout_of(const ps_path *path, const ps_config *c, ps_layout *l)
{
    path->buffers(c, l->buffers);
    size_t kind_bytes[PS_KINDS] = {0};
    l->region_bytes = 0;
    l->total = l->largest = 0.0;
    for (size_t i = 0; i < path->buffer_count; i++) {
        const ps_buffer *b = &l->buffers[i];
        l->bytes[i] = b->count * mcl_dtype_size(b->fp32 ? MCL_F32 : c->dtype);
        if (!b->temporary_of) {
            l->total += (double)l->bytes[i];
            if ((double)l->bytes[i] > l->largest) l->largest = (double)l->bytes[i];
            continue;
        }
        size_t *at = &kind_bytes[b->temporary_of - 1];
        l->offsets[i] = *at;
        *at += (l->bytes[i] + REGION_ALIGN - 1) / REGION_ALIGN * REGION_ALIGN;
        if (*at > l->region_bytes) l->region_bytes = *at;
    }
    l->total += (double)l->region_bytes;
    if ((double)l->region_bytes > l->largest) l->largest = (double)l->region_bytes;
}

static double input_bytes(const ps_config *c)
{
    double pairs = (double)c->n * c->n, es = (double)mcl_dtype_size(c->dtype);
    /* z, dz at the output, the mask and its two biases, the parameters */
    return es * (2.0 * pairs * c->channels + 3.0 * pairs + (double)ps_params_elements(c));
}

mcl_status ps_memory_need(mcl_context *ctx, const ps_path *path, const ps_config *config, ps_memory *out)
{
    ps_config c = *config;
    c.dtype = ps_path_dtype(path, c.dtype);
    ps_layout *l = malloc(sizeof *l);
    if (!l) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory");
    ps_layout_of(path, &c, l);
    *out = (ps_memory){.inputs = input_bytes(&c), .buffers = l->total, .largest = l->largest};
    free(l);
    double pair_tensor = (double)c.n * c.n * c.channels * mcl_dtype_size(c.dtype); /* z, the largest input */
    if (pair_tensor > out->largest) out->largest = pair_tensor;
    size_t workspace = 0;
    WL_TRY(path->workspace(ctx, &c, &workspace));
    out->workspace = (double)workspace;
    if (out->workspace > out->largest) out->largest = out->workspace;
    return MCL_OK;
}

size_t ps_max_tokens(int (*fits)(size_t n, void *user), void *user, size_t limit)
{
    if (limit == 0 || !fits(1, user)) return 0;
    size_t fit = 1, over = limit + 1; /* fits(fit), and nothing from `over` on does */
    while (fit < limit && over == limit + 1) {
        size_t next = fit > limit / 2 ? limit : 2 * fit;
        if (fits(next, user)) fit = next;
        else over = next;
    }
    while (over - fit > 1) {
        size_t mid = fit + (over - fit) / 2;
        if (fits(mid, user)) fit = mid;
        else over = mid;
    }
    return fit;
}

ps_budget ps_budget_of(const mcl_device_info *device)
{
    return (ps_budget){(double)device->global_mem_bytes, (double)device->max_alloc_bytes};
}

double ps_memory_total(const ps_memory *need) { return need->inputs + need->buffers + need->workspace; }

int ps_fits(const ps_memory *need, const ps_budget *budget)
{
    return ps_memory_total(need) <= budget->global_bytes && need->largest <= budget->max_alloc_bytes;
}

typedef struct search {
    mcl_context *ctx;
    const ps_path *path;
    ps_config config;
    const ps_budget *budget;
} search;

static int fits_at(size_t n, void *user)
{
    search *s = user;
    ps_config c = s->config;
    c.n = n;
    ps_memory need;
    return ps_memory_need(s->ctx, s->path, &c, &need) == MCL_OK && ps_fits(&need, s->budget);
}

size_t ps_max_tokens_within(mcl_context *ctx, const ps_path *path, const ps_config *c, const ps_budget *budget,
                            size_t limit, ps_memory *need)
{
    search s = {ctx, path, *c, budget};
    size_t n = ps_max_tokens(fits_at, &s, limit);
    s.config.n = n;
    *need = (ps_memory){0};
    if (n) ps_memory_need(ctx, path, &s.config, need);
    return n;
}
