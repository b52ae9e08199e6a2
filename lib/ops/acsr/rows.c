/* A mask's rows: the split of each row into progressions, the CSR fallback, the transpose, and
 * the order of rows by the key lattices they read. */
#include "acsr.h"

#include "runtime/error.h"

#include <stdlib.h>
#include <string.h>

mcl_status acsr_side_init(acsr_side *side, size_t n)
{
    memset(side, 0, sizeof *side);
    side->n = n;
    side->runs_of = calloc(n, 1);
    side->runs = calloc(n * ACSR_MAX_RUNS, sizeof(acsr_run));
    side->csr_ptr = calloc(n + 1, sizeof(uint64_t));
    if (!side->runs_of || !side->runs || !side->csr_ptr) {
        acsr_side_free(side);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory for the rows of a mask of %zu rows", n);
    }
    return MCL_OK;
}

void acsr_side_free(acsr_side *side)
{
    free(side->runs_of);
    free(side->runs);
    free(side->csr_ptr);
    free(side->csr_cols);
    free(side->order);
    memset(side, 0, sizeof *side);
}

/* Whether cols[at], cols[at + 1], cols[at + 2] exist and are evenly spaced. */
static int three_in_step(const uint32_t *cols, size_t count, size_t at)
{
    return at + 2 < count && cols[at + 2] - cols[at + 1] == cols[at + 1] - cols[at];
}

/* The progressions of sorted distinct columns, at most `max` of them; returns how many the
 * columns need (more than max: runs holds the first max). A progression grows only while the
 * next column continues it exactly. A pair whose second column starts a longer progression is
 * left a single column, so that {5, 100, 101, 102} is {5}, {100, 101, 102}. */
static size_t split_runs(const uint32_t *cols, size_t count, acsr_run *runs, size_t max)
{
    size_t n = 0;
    for (size_t at = 0; at < count;) {
        acsr_run run = {cols[at], 1, 1};
        if (at + 1 < count) {
            run.stride = cols[at + 1] - cols[at];
            run.count = 2;
            while (at + run.count < count && cols[at + run.count] - cols[at + run.count - 1] == run.stride)
                run.count++;
            if (run.count == 2 && three_in_step(cols, count, at + 1)) run.count = 1;
            if (run.count == 1) run.stride = 1;
        }
        if (n < max) runs[n] = run;
        n++;
        at += run.count;
    }
    return n;
}

static mcl_status append_csr(acsr_side *side, const uint32_t *cols, size_t count)
{
    uint64_t used = side->csr_ptr[side->n];
    if (used + count > side->csr_capacity) {
        uint64_t capacity = side->csr_capacity ? side->csr_capacity : 1024;
        while (capacity < used + count) capacity *= 2;
        uint32_t *grown = realloc(side->csr_cols, capacity * sizeof(uint32_t));
        if (!grown)
            return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory for %llu CSR columns",
                            (unsigned long long)capacity);
        side->csr_cols = grown;
        side->csr_capacity = capacity;
    }
    memcpy(side->csr_cols + used, cols, count * sizeof(uint32_t));
    side->csr_ptr[side->n] = used + count;
    return MCL_OK;
}

/* csr_ptr[n] is the running end of the CSR columns while rows are added; row i's range is
 * fixed as it is added. */
mcl_status acsr_side_add_row(acsr_side *side, size_t i, const uint32_t *cols, size_t count)
{
    acsr_run *runs = side->runs + i * ACSR_MAX_RUNS;
    size_t needed = split_runs(cols, count, runs, ACSR_MAX_RUNS);
    side->csr_ptr[i] = side->csr_ptr[side->n];
    side->nonzeros += count;
    if (needed <= ACSR_MAX_RUNS) {
        side->runs_of[i] = (uint8_t)needed;
        return MCL_OK;
    }
    memset(runs, 0, ACSR_MAX_RUNS * sizeof *runs);
    side->runs_of[i] = ACSR_CSR_ROW;
    return append_csr(side, cols, count);
}

/* Row i's CSR columns are csr_cols[csr_ptr[i] .. csr_ptr[i + 1]) (empty for other rows). */
uint64_t acsr_row_count(const acsr_side *side, size_t i)
{
    if (side->runs_of[i] == ACSR_CSR_ROW) return side->csr_ptr[i + 1] - side->csr_ptr[i];
    uint64_t count = 0;
    for (size_t r = 0; r < side->runs_of[i]; r++) count += side->runs[i * ACSR_MAX_RUNS + r].count;
    return count;
}

/* The first t with start + stride * t >= lo. */
static uint32_t first_at_or_after(const acsr_run *run, uint32_t lo)
{
    return lo <= run->start ? 0 : (lo - run->start + run->stride - 1) / run->stride;
}

static int ascending(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

size_t acsr_row_columns_in(const acsr_side *side, size_t i, uint32_t lo, uint32_t hi, uint32_t *out)
{
    size_t n = 0;
    if (side->runs_of[i] == ACSR_CSR_ROW) {
        for (uint64_t e = side->csr_ptr[i]; e < side->csr_ptr[i + 1]; e++)
            if (side->csr_cols[e] >= lo && side->csr_cols[e] < hi) out[n++] = side->csr_cols[e];
        return n;
    }
    for (size_t r = 0; r < side->runs_of[i]; r++) {
        const acsr_run *run = side->runs + i * ACSR_MAX_RUNS + r;
        for (uint64_t t = first_at_or_after(run, lo); t < run->count; t++) {
            uint64_t col = run->start + (uint64_t)run->stride * t;
            if (col >= hi) break;
            out[n++] = (uint32_t)col;
        }
    }
    if (side->runs_of[i] > 1) qsort(out, n, sizeof *out, ascending); /* progressions interleave */
    return n;
}

/* The transpose, a band of TRANSPOSE_BAND columns at a time: every row's columns in the band
 * are bucketed by column (counting sort, rows ascending), then each column becomes a row of
 * the transpose. Host memory stays O(nonzeros of a band). */
#define TRANSPOSE_BAND 4096u

static mcl_status transpose_band(const acsr_side *side, acsr_side *t, uint32_t lo, uint32_t hi, uint64_t *count,
                                 uint32_t **pairs, uint64_t *pairs_cap, uint32_t *scratch)
{
    size_t width = hi - lo;
    memset(count, 0, (width + 1) * sizeof *count);
    for (size_t i = 0; i < side->n; i++) {
        size_t n = acsr_row_columns_in(side, i, lo, hi, scratch);
        for (size_t e = 0; e < n; e++) count[scratch[e] - lo + 1]++;
    }
    for (size_t c = 0; c < width; c++) count[c + 1] += count[c];
    if (count[width] > *pairs_cap) {
        free(*pairs);
        *pairs_cap = count[width];
        *pairs = malloc(*pairs_cap * sizeof(uint32_t));
        if (!*pairs)
            return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory to transpose a band of %llu nonzeros",
                            (unsigned long long)*pairs_cap);
    }
    for (size_t i = 0; i < side->n; i++) {
        size_t n = acsr_row_columns_in(side, i, lo, hi, scratch);
        for (size_t e = 0; e < n; e++) (*pairs)[count[scratch[e] - lo]++] = (uint32_t)i;
    }
    /* count[c] now ends column c's rows; column c starts where column c - 1 ended */
    for (size_t c = 0; c < width; c++) {
        uint64_t start = c ? count[c - 1] : 0;
        MCL_TRY(acsr_side_add_row(t, lo + c, *pairs + start, count[c] - start));
    }
    return MCL_OK;
}

mcl_status acsr_side_transpose(const acsr_side *side, acsr_side *t)
{
    MCL_TRY(acsr_side_init(t, side->n));
    uint64_t *count = malloc((TRANSPOSE_BAND + 1) * sizeof *count);
    uint32_t *scratch = malloc(side->n * sizeof *scratch), *pairs = NULL;
    uint64_t pairs_cap = 0;
    mcl_status status = count && scratch ? MCL_OK
                                         : mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory to transpose a mask");
    for (size_t lo = 0; status == MCL_OK && lo < side->n; lo += TRANSPOSE_BAND) {
        size_t hi = lo + TRANSPOSE_BAND < side->n ? lo + TRANSPOSE_BAND : side->n;
        status = transpose_band(side, t, (uint32_t)lo, (uint32_t)hi, count, &pairs, &pairs_cap, scratch);
    }
    free(count);
    free(scratch);
    free(pairs);
    if (status != MCL_OK) acsr_side_free(t);
    return status;
}

/* ---- lattice order ---------------------------------------------------------------------- */

/* What decides whether two rows can share a tile: their progressions' count, strides and
 * first columns modulo stride (a CSR row never shares); then the first column, so that a tile's
 * rows read overlapping keys. */
typedef struct row_key {
    uint32_t runs; /* ACSR_CSR_ROW for a CSR row */
    uint32_t stride[ACSR_MAX_RUNS], residue[ACSR_MAX_RUNS];
    uint32_t start, row;
} row_key;

static row_key key_of(const acsr_side *side, uint32_t i)
{
    row_key k = {.runs = side->runs_of[i], .row = i};
    if (k.runs == ACSR_CSR_ROW) return k;
    for (uint32_t r = 0; r < k.runs; r++) {
        const acsr_run *run = side->runs + (size_t)i * ACSR_MAX_RUNS + r;
        k.stride[r] = run->stride;
        k.residue[r] = run->start % run->stride;
    }
    k.start = k.runs ? side->runs[(size_t)i * ACSR_MAX_RUNS].start : 0;
    return k;
}

static int signature_cmp(const row_key *a, const row_key *b)
{
    if (a->runs != b->runs) return a->runs < b->runs ? -1 : 1;
    if (a->runs == ACSR_CSR_ROW) return 0;
    for (uint32_t r = 0; r < a->runs; r++) {
        if (a->stride[r] != b->stride[r]) return a->stride[r] < b->stride[r] ? -1 : 1;
        if (a->residue[r] != b->residue[r]) return a->residue[r] < b->residue[r] ? -1 : 1;
    }
    return 0;
}

static int by_signature_then_start(const void *pa, const void *pb)
{
    const row_key *a = pa, *b = pb;
    int c = signature_cmp(a, b);
    if (c) return c;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

int acsr_same_signature(const acsr_side *side, uint32_t a, uint32_t b)
{
    row_key ka = key_of(side, a), kb = key_of(side, b);
    return ka.runs != ACSR_CSR_ROW && signature_cmp(&ka, &kb) == 0;
}

mcl_status acsr_side_order(acsr_side *side)
{
    row_key *keys = malloc(side->n * sizeof *keys);
    side->order = malloc(side->n * sizeof *side->order);
    if (!keys || !side->order) {
        free(keys);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no host memory to order %zu rows", side->n);
    }
    for (size_t i = 0; i < side->n; i++) keys[i] = key_of(side, (uint32_t)i);
    qsort(keys, side->n, sizeof *keys, by_signature_then_start);
    side->lattices = 0;
    for (size_t s = 0; s < side->n; s++) {
        side->order[s] = keys[s].row;
        if (s == 0 || keys[s].runs == ACSR_CSR_ROW || signature_cmp(&keys[s - 1], &keys[s])) side->lattices++;
    }
    free(keys);
    return MCL_OK;
}
