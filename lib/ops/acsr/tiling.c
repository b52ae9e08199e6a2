/* Tiles: the rows a tile kernel's work-group owns, and the key lattices it walks for them. */
#include "acsr.h"

#include <string.h>

/* The keys a tile walks: per progression, the lowest first column and the highest last one
 * of its rows (one lattice: the rows share stride and residue). */
typedef struct tile_span {
    size_t runs;
    uint32_t stride[ACSR_MAX_RUNS], lo[ACSR_MAX_RUNS], hi[ACSR_MAX_RUNS];
    uint64_t nonzeros, keys;
} tile_span;

static void span_add(const acsr_side *side, uint32_t row, tile_span *span, int first)
{
    span->runs = side->runs_of[row];
    span->keys = 0;
    for (size_t r = 0; r < span->runs; r++) {
        const acsr_run *run = side->runs + (size_t)row * ACSR_MAX_RUNS + r;
        uint32_t last = run->start + run->stride * (run->count - 1);
        if (first || run->start < span->lo[r]) span->lo[r] = run->start;
        if (first || last > span->hi[r]) span->hi[r] = last;
        span->stride[r] = run->stride;
        span->keys += (span->hi[r] - span->lo[r]) / run->stride + 1;
        span->nonzeros += run->count;
    }
}

static void write_tile(uint32_t *tile, size_t slot, size_t rows, const tile_span *span)
{
    memset(tile, 0, ACSR_TILE_WORDS * sizeof *tile);
    tile[0] = (uint32_t)slot;
    tile[1] = (uint32_t)rows;
    tile[2] = (uint32_t)span->runs;
    for (size_t r = 0; r < span->runs; r++) {
        tile[3 + 3 * r] = span->stride[r];
        tile[4 + 3 * r] = span->lo[r];
        tile[5 + 3 * r] = (span->hi[r] - span->lo[r]) / span->stride[r] + 1;
    }
}

/* A CSR row alone: one component whose keys are its columns (stride 0). */
static void write_csr_tile(const acsr_side *side, uint32_t *tile, size_t slot, uint32_t row)
{
    memset(tile, 0, ACSR_TILE_WORDS * sizeof *tile);
    tile[0] = (uint32_t)slot;
    tile[1] = 1;
    tile[2] = 1;
    tile[4] = (uint32_t)side->csr_ptr[row];
    tile[5] = (uint32_t)acsr_row_count(side, row);
}

/* Rows join a tile while it has room, they share its signature, and the tile's rows still use at
 * least half of the key span it walks (a global row, which sees every key, must not make the
 * window rows beside it walk every key too). */
size_t acsr_tile(const acsr_side *side, size_t bq, uint32_t *tiles)
{
    size_t count = 0;
    for (size_t slot = 0; slot < side->n; count++) {
        uint32_t row = side->order[slot];
        uint32_t *tile = tiles ? tiles + count * ACSR_TILE_WORDS : NULL;
        if (side->runs_of[row] == ACSR_CSR_ROW) {
            if (tile) write_csr_tile(side, tile, slot, row);
            slot++;
            continue;
        }
        tile_span span = {0};
        span_add(side, row, &span, 1);
        size_t rows = 1;
        while (slot + rows < side->n && rows < bq && acsr_same_signature(side, row, side->order[slot + rows])) {
            tile_span grown = span;
            span_add(side, side->order[slot + rows], &grown, 0);
            if (2 * grown.nonzeros < (rows + 1) * grown.keys) break;
            span = grown;
            rows++;
        }
        if (tile) write_tile(tile, slot, rows, &span);
        slot += rows;
    }
    return count;
}
