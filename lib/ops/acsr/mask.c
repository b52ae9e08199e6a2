/* ACSR masks: the builders (patterns, dense, CSR), what they report, and the device copy of a
 * mask's rows and tiles. */
#include "acsr.h"

#include "runtime/error.h"

#include <stdlib.h>
#include <string.h>

/* ---- a row's columns as a bitmap --------------------------------------------------------- */

typedef struct row_bits {
    uint64_t *words;
    size_t n, word_count;
    uint32_t *cols; /* the row's columns, extracted */
} row_bits;

static mcl_status bits_init(row_bits *b, size_t n)
{
    b->n = n;
    b->word_count = (n + 63) / 64;
    b->words = calloc(b->word_count, sizeof *b->words);
    b->cols = malloc(n * sizeof *b->cols);
    if (b->words && b->cols) return MCL_OK;
    free(b->words);
    free(b->cols);
    return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory for a row of %zu columns", n);
}

static void bits_free(row_bits *b)
{
    free(b->words);
    free(b->cols);
}

static void set_bit(row_bits *b, size_t j) { b->words[j / 64] |= (uint64_t)1 << (j % 64); }

/* columns [lo, hi), clipped to the row */
static void set_range(row_bits *b, int64_t lo, int64_t hi)
{
    if (lo < 0) lo = 0;
    if (hi > (int64_t)b->n) hi = (int64_t)b->n;
    for (int64_t j = lo; j < hi;) {
        if (j % 64 == 0 && hi - j >= 64) {
            b->words[j / 64] = ~(uint64_t)0;
            j += 64;
        } else {
            set_bit(b, (size_t)j++);
        }
    }
}

/* columns first, first + step, ... below hi, those from 0 */
static void set_progression(row_bits *b, int64_t first, size_t step, int64_t hi)
{
    if (first < 0) first += ((-first + (int64_t)step - 1) / (int64_t)step) * (int64_t)step;
    if (hi > (int64_t)b->n) hi = (int64_t)b->n;
    for (int64_t j = first; j < hi; j += (int64_t)step) set_bit(b, (size_t)j);
}

/* The set columns into b->cols, ascending, and a cleared bitmap; returns how many. */
static size_t take_columns(row_bits *b)
{
    size_t n = 0;
    for (size_t w = 0; w < b->word_count; w++) {
        for (uint64_t x = b->words[w]; x; x &= x - 1) b->cols[n++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
        b->words[w] = 0;
    }
    return n;
}

/* ---- patterns ----------------------------------------------------------------------------- */

static const char *const pattern_names[] = {"window", "causal window", "dilated window", "strided",
                                            "blocked", "block-diagonal", "global tokens"};

static mcl_status check_pattern(const mcl_acsr_pattern *p, size_t index, size_t n, const char *op)
{
    if ((unsigned)p->kind > MCL_ACSR_GLOBAL)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: pattern %zu has kind %d, not an mcl_acsr_pattern_kind", op,
                        index, (int)p->kind);
    const char *name = pattern_names[p->kind];
    int windowed = p->kind == MCL_ACSR_WINDOW || p->kind == MCL_ACSR_CAUSAL_WINDOW || p->kind == MCL_ACSR_DILATED;
    if (windowed && p->width >= n)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: pattern %zu (%s) has width %zu; it must be below seq %zu", op,
                        index, name, p->width, n);
    if ((p->kind == MCL_ACSR_DILATED || p->kind == MCL_ACSR_STRIDED) && (p->step == 0 || p->step > n))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: pattern %zu (%s) has step %zu; it must be 1 .. seq %zu", op,
                        index, name, p->step, n);
    if ((p->kind == MCL_ACSR_BLOCKED || p->kind == MCL_ACSR_BLOCK_DIAGONAL) && (p->block == 0 || p->block > n))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: pattern %zu (%s) has block %zu; it must be 1 .. seq %zu", op,
                        index, name, p->block, n);
    if (p->kind == MCL_ACSR_GLOBAL && (p->count == 0 || p->count > n))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: pattern %zu (%s) has count %zu; it must be 1 .. seq %zu", op,
                        index, name, p->count, n);
    return MCL_OK;
}

static void set_pattern_row(row_bits *b, const mcl_acsr_pattern *p, size_t row)
{
    int64_t i = (int64_t)row, w = (int64_t)p->width, n = (int64_t)b->n;
    switch (p->kind) {
    case MCL_ACSR_WINDOW: set_range(b, i - w, i + w + 1); break;
    case MCL_ACSR_CAUSAL_WINDOW: set_range(b, i - w, i + 1); break;
    case MCL_ACSR_DILATED: {
        int64_t reach = w / (int64_t)p->step * (int64_t)p->step;
        set_progression(b, i - reach, p->step, i + reach + 1);
        break;
    }
    case MCL_ACSR_STRIDED: set_progression(b, i % (int64_t)p->step, p->step, n); break;
    case MCL_ACSR_BLOCKED: {
        int64_t block = (int64_t)p->block, at = i / block;
        set_range(b, (at - w) * block, (at + w + 1) * block);
        break;
    }
    case MCL_ACSR_BLOCK_DIAGONAL: set_range(b, i / (int64_t)p->block * (int64_t)p->block, (i / (int64_t)p->block + 1) * (int64_t)p->block); break;
    case MCL_ACSR_GLOBAL: set_range(b, 0, i < (int64_t)p->count ? n : (int64_t)p->count); break;
    }
}

/* ---- building ----------------------------------------------------------------------------- */

/* What a builder reads rows from: row i's columns into the bitmap. */
typedef struct row_source {
    void (*row)(const struct row_source *src, row_bits *bits, size_t i);
    const mcl_acsr_pattern *patterns;
    size_t pattern_count;
    const uint8_t *dense;
    const uint64_t *row_ptr;
    const uint32_t *cols;
} row_source;

static void pattern_row(const row_source *src, row_bits *b, size_t i)
{
    for (size_t p = 0; p < src->pattern_count; p++) set_pattern_row(b, &src->patterns[p], i);
}

static void dense_row(const row_source *src, row_bits *b, size_t i)
{
    const uint8_t *row = src->dense + i * b->n;
    for (size_t j = 0; j < b->n; j++)
        if (row[j]) set_bit(b, j);
}

static void csr_row(const row_source *src, row_bits *b, size_t i)
{
    for (uint64_t e = src->row_ptr[i]; e < src->row_ptr[i + 1]; e++) set_bit(b, src->cols[e]);
}

static mcl_status read_rows(const row_source *src, acsr_side *side)
{
    row_bits bits;
    MCL_TRY(bits_init(&bits, side->n));
    mcl_status status = MCL_OK;
    for (size_t i = 0; i < side->n && status == MCL_OK; i++) {
        src->row(src, &bits, i);
        status = acsr_side_add_row(side, i, bits.cols, take_columns(&bits));
    }
    bits_free(&bits);
    return status;
}

static void describe(mcl_acsr_mask *m)
{
    mcl_acsr_mask_info *info = &m->info;
    memset(info, 0, sizeof *info);
    info->seq = m->seq;
    info->nonzeros = m->rows.nonzeros;
    for (size_t i = 0; i < m->seq; i++) {
        uint8_t runs = m->rows.runs_of[i];
        if (runs == ACSR_CSR_ROW) {
            info->fallback_rows++;
            info->fallback_nonzeros += acsr_row_count(&m->rows, i);
            continue;
        }
        if (runs == 0) info->empty_rows++;
        if (runs > info->components) info->components = runs;
        for (uint8_t r = 0; r < runs; r++) info->component_rows[r]++;
    }
    for (size_t j = 0; j < m->seq; j++) info->transposed_fallback_rows += m->cols.runs_of[j] == ACSR_CSR_ROW;
    info->lattices = m->rows.lattices;
}

/* ---- the device copy ---------------------------------------------------------------------- */

static mcl_status upload(mcl_context *ctx, const void *host, size_t bytes, cl_mem *out, const char *what)
{
    cl_int err;
    static const uint32_t nothing = 0; /* OpenCL has no empty buffers */
    *out = clCreateBuffer(ctx->cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes ? bytes : sizeof nothing,
                          bytes ? (void *)host : (void *)&nothing, &err);
    return err == CL_SUCCESS ? MCL_OK : mcl_fail_cl(err, what);
}

/* Rows as the kernels read them (ACSR_ROW_WORDS each). */
static uint32_t *row_words(const acsr_side *side)
{
    uint32_t *words = calloc(side->n * ACSR_ROW_WORDS, sizeof *words);
    if (!words) return NULL;
    for (size_t i = 0; i < side->n; i++) {
        uint32_t *w = words + i * ACSR_ROW_WORDS;
        if (side->runs_of[i] != ACSR_CSR_ROW)
            memcpy(w, side->runs + i * ACSR_MAX_RUNS, side->runs_of[i] * sizeof(acsr_run));
        w[3 * ACSR_MAX_RUNS] = (uint32_t)side->csr_ptr[i];
        w[3 * ACSR_MAX_RUNS + 1] = (uint32_t)(side->csr_ptr[i + 1] - side->csr_ptr[i]);
    }
    return words;
}

static mcl_status upload_side(mcl_context *ctx, const acsr_side *side, acsr_device_side *dev, int with_offsets)
{
    uint32_t *rows = row_words(side);
    uint64_t *offsets = with_offsets ? malloc((side->n + 1) * sizeof *offsets) : NULL;
    if (!rows || (with_offsets && !offsets)) {
        free(rows);
        free(offsets);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory for the device copy of a mask");
    }
    mcl_status status = upload(ctx, rows, side->n * ACSR_ROW_WORDS * sizeof *rows, &dev->rows, "acsr mask rows");
    if (status == MCL_OK)
        status = upload(ctx, side->csr_cols, side->csr_ptr[side->n] * sizeof(uint32_t), &dev->csr, "acsr mask CSR");
    if (status == MCL_OK) status = upload(ctx, side->order, side->n * sizeof(uint32_t), &dev->order, "acsr order");
    if (status == MCL_OK && with_offsets) {
        offsets[0] = 0;
        for (size_t i = 0; i < side->n; i++) offsets[i + 1] = offsets[i] + acsr_row_count(side, i);
        status = upload(ctx, offsets, (side->n + 1) * sizeof *offsets, &dev->offsets, "acsr row offsets");
    }
    free(rows);
    free(offsets);
    return status;
}

static void release_side(acsr_device_side *dev)
{
    cl_mem mems[] = {dev->rows, dev->csr, dev->order, dev->offsets};
    for (size_t i = 0; i < MCL_COUNT(mems); i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    for (size_t t = 0; t < ACSR_TILINGS; t++)
        if (dev->tilings[t].tiles) clReleaseMemObject(dev->tilings[t].tiles);
    memset(dev, 0, sizeof *dev);
}

mcl_status acsr_mask_tiles(mcl_acsr_mask *mask, int which, size_t bq, cl_mem *tiles, size_t *count)
{
    acsr_device_side *dev = &mask->dev[which];
    for (size_t t = 0; t < ACSR_TILINGS && dev->tilings[t].tiles; t++)
        if (dev->tilings[t].bq == bq) {
            *tiles = dev->tilings[t].tiles;
            *count = dev->tilings[t].count;
            return MCL_OK;
        }
    const acsr_side *side = which == ACSR_ROWS ? &mask->rows : &mask->cols;
    size_t n = acsr_tile(side, bq, NULL);
    uint32_t *words = malloc(n * ACSR_TILE_WORDS * sizeof *words);
    if (!words) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory for %zu tiles", n);
    acsr_tile(side, bq, words);
    cl_mem buffer;
    mcl_status status = upload(mask->ctx, words, n * ACSR_TILE_WORDS * sizeof *words, &buffer, "acsr tiles");
    free(words);
    MCL_TRY(status);
    /* the oldest tiling makes room (a release waits for the kernels still reading it) */
    size_t slot = 0;
    while (slot < ACSR_TILINGS && dev->tilings[slot].tiles) slot++;
    if (slot == ACSR_TILINGS) {
        clReleaseMemObject(dev->tilings[0].tiles);
        memmove(dev->tilings, dev->tilings + 1, (ACSR_TILINGS - 1) * sizeof dev->tilings[0]);
        slot = ACSR_TILINGS - 1;
    }
    dev->tilings[slot].bq = bq;
    dev->tilings[slot].count = n;
    dev->tilings[slot].tiles = buffer;
    *tiles = buffer;
    *count = n;
    return MCL_OK;
}

/* ---- builders ----------------------------------------------------------------------------- */

static mcl_status check_seq(mcl_context *ctx, size_t n, mcl_acsr_mask **mask, const char *op)
{
    if (!ctx || !mask) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context or mask", op);
    *mask = NULL;
    if (n == 0 || n > INT32_MAX)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: seq %zu must be 1 .. 2^31 - 1", op, n);
    return MCL_OK;
}

/* Reads the rows, transposes them, orders both sides and uploads them. */
static mcl_status build(mcl_context *ctx, size_t n, const row_source *src, mcl_acsr_mask **out, const char *op)
{
    mcl_acsr_mask *m = calloc(1, sizeof *m);
    if (!m) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "%s: no host memory for a mask", op);
    m->ctx = ctx;
    m->seq = n;
    mcl_status status = acsr_side_init(&m->rows, n);
    if (status == MCL_OK) status = read_rows(src, &m->rows);
    if (status == MCL_OK && m->rows.csr_ptr[n] > UINT32_MAX)
        status = mcl_fail(MCL_ERR_DEVICE_LIMIT, "%s: %llu columns of rows that are not affine; the CSR fallback holds "
                          "at most 2^32 - 1", op, (unsigned long long)m->rows.csr_ptr[n]);
    if (status == MCL_OK) status = acsr_side_transpose(&m->rows, &m->cols);
    if (status == MCL_OK && m->cols.csr_ptr[n] > UINT32_MAX)
        status = mcl_fail(MCL_ERR_DEVICE_LIMIT, "%s: the transposed mask's CSR fallback needs %llu columns, at most "
                          "2^32 - 1", op, (unsigned long long)m->cols.csr_ptr[n]);
    if (status == MCL_OK) status = acsr_side_order(&m->rows);
    if (status == MCL_OK) status = acsr_side_order(&m->cols);
    if (status == MCL_OK) status = upload_side(ctx, &m->rows, &m->dev[ACSR_ROWS], 1);
    if (status == MCL_OK) status = upload_side(ctx, &m->cols, &m->dev[ACSR_COLS], 0);
    if (status != MCL_OK) {
        mcl_acsr_mask_release(m);
        return status;
    }
    describe(m);
    *out = m;
    return MCL_OK;
}

mcl_status mcl_acsr_mask_from_patterns(mcl_context *ctx, size_t seq, const mcl_acsr_pattern *patterns, size_t count,
                                       mcl_acsr_mask **mask)
{
    const char *op = "acsr_mask_from_patterns";
    MCL_TRY(check_seq(ctx, seq, mask, op));
    if (!patterns || count == 0) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: no patterns given", op);
    for (size_t p = 0; p < count; p++) MCL_TRY(check_pattern(&patterns[p], p, seq, op));
    row_source src = {.row = pattern_row, .patterns = patterns, .pattern_count = count};
    return build(ctx, seq, &src, mask, op);
}

mcl_status mcl_acsr_mask_from_dense(mcl_context *ctx, size_t seq, const uint8_t *dense, mcl_acsr_mask **mask)
{
    const char *op = "acsr_mask_from_dense";
    MCL_TRY(check_seq(ctx, seq, mask, op));
    if (!dense) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: dense mask is NULL", op);
    row_source src = {.row = dense_row, .dense = dense};
    return build(ctx, seq, &src, mask, op);
}

mcl_status mcl_acsr_mask_from_csr(mcl_context *ctx, size_t seq, const uint64_t *row_ptr, const uint32_t *cols,
                                  mcl_acsr_mask **mask)
{
    const char *op = "acsr_mask_from_csr";
    MCL_TRY(check_seq(ctx, seq, mask, op));
    if (!row_ptr || (!cols && row_ptr[seq] > 0)) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: row_ptr or cols is NULL", op);
    if (row_ptr[0] != 0) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: row_ptr[0] is %llu, not 0", op,
                                         (unsigned long long)row_ptr[0]);
    for (size_t i = 0; i < seq; i++) {
        if (row_ptr[i + 1] < row_ptr[i])
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: row_ptr decreases at row %zu (%llu after %llu)", op, i,
                            (unsigned long long)row_ptr[i + 1], (unsigned long long)row_ptr[i]);
        for (uint64_t e = row_ptr[i]; e < row_ptr[i + 1]; e++)
            if (cols[e] >= seq)
                return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: row %zu has column %u; seq is %zu", op, i, cols[e], seq);
    }
    row_source src = {.row = csr_row, .row_ptr = row_ptr, .cols = cols};
    return build(ctx, seq, &src, mask, op);
}

void mcl_acsr_mask_release(mcl_acsr_mask *mask)
{
    if (!mask) return;
    release_side(&mask->dev[ACSR_ROWS]);
    release_side(&mask->dev[ACSR_COLS]);
    acsr_side_free(&mask->rows);
    acsr_side_free(&mask->cols);
    free(mask);
}

mcl_status mcl_acsr_mask_get_info(const mcl_acsr_mask *mask, mcl_acsr_mask_info *info)
{
    if (!mask || !info) return mcl_fail(MCL_ERR_NULL_POINTER, "acsr_mask_get_info: NULL mask or info");
    *info = mask->info;
    return MCL_OK;
}
