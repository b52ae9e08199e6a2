/* ACSR sparse attention: the family's declaration and the host side of a mask (its rows split
 * into progressions, its CSR fallback, the transposed pattern, and the tilings the kernels walk).
 * Kernels: cl/acsr/. */
#ifndef MCL_OPS_ACSR_H
#define MCL_OPS_ACSR_H

#include "runtime/context.h"
#include "runtime/family.h"

/* A tile kernel's parameters: bq rows a tile, bk keys staged at a time, dw head-dim columns a
 * work-item holds (a row is split into slices of dw; their partial dot products are summed
 * through local memory). */
typedef struct acsr_tiles {
    int bq, bk, dw;
} acsr_tiles;

/* A tensor-core variant of a tile kernel (cl/acsr/forward_mma.cl, dq_mma.cl, dkdv_mma.cl), for
 * 16-bit calls and f32 ones where the context allows tf32: on is 0 (off), 1 (mma.sync, where the
 * device's probe ran it) or 2 (the instruction emulated on any device, for tests); tiles of 16 rows a warp (dK/dV's rows are keys), bk of the other side
 * staged at a time. */
typedef struct acsr_mma_tiles {
    int on, warps, bk;
} acsr_mma_tiles;

/* The family's tuning parameters: the tiles of the forward, dQ and dK/dV kernels, the work-items
 * a row in the unfused pipeline, and the tile kernels' tensor-core variants. */
typedef struct acsr_params {
    acsr_tiles fwd, dq, dkv;
    int wg;
    acsr_mma_tiles fwd_mma, dq_mma, dkv_mma;
} acsr_params;

extern const mcl_family mcl_family_acsr;


/* The local memory a tile kernel takes with these tiles split into `slices` slices (the dK/dV
 * kernel's count, the largest of the three). */
size_t acsr_local_bytes(const acsr_tiles *tiles, size_t slices);

/* ---- a mask's rows ---------------------------------------------------------------------- */

#define ACSR_MAX_RUNS MCL_ACSR_MAX_COMPONENTS
#define ACSR_CSR_ROW 0xff /* runs_of[i] of a row held in the CSR fallback */

/* The columns start + stride * t, t < count. */
typedef struct acsr_run {
    uint32_t start, stride, count;
} acsr_run;

/* The rows of a mask or of its transpose: each row's progressions, or its columns in CSR. */
typedef struct acsr_side {
    size_t n;
    uint8_t *runs_of;        /* [n]: progressions of each row, or ACSR_CSR_ROW */
    acsr_run *runs;          /* [n][ACSR_MAX_RUNS] */
    uint64_t *csr_ptr;       /* [n + 1]: the CSR rows' columns (an empty range for other rows) */
    uint32_t *csr_cols;
    uint64_t csr_capacity;
    uint64_t nonzeros;
    uint32_t *order;         /* rows by lattice signature, then first column (acsr_side_order) */
    size_t lattices;         /* distinct signatures in `order` */
} acsr_side;

/* A side of n rows with nothing added yet. */
mcl_status acsr_side_init(acsr_side *side, size_t n);
void acsr_side_free(acsr_side *side);

/* Adds row i (rows are added in order) from its sorted, distinct columns: split greedily into
 * progressions, each extended only while the next column continues it exactly; a row that needs
 * more than ACSR_MAX_RUNS goes whole to the CSR fallback. */
mcl_status acsr_side_add_row(acsr_side *side, size_t i, const uint32_t *cols, size_t count);

/* Row i's number of columns. */
uint64_t acsr_row_count(const acsr_side *side, size_t i);

/* Row i's columns in [lo, hi), ascending, into out (room for hi - lo); returns how many. */
size_t acsr_row_columns_in(const acsr_side *side, size_t i, uint32_t lo, uint32_t hi, uint32_t *out);

/* The transposed side: row j of `t` holds the rows of `side` that have column j. */
mcl_status acsr_side_transpose(const acsr_side *side, acsr_side *t);

/* Whether rows a and b read the same key lattices and so may share a tile. */
int acsr_same_signature(const acsr_side *side, uint32_t a, uint32_t b);

/* Sorts the rows into `order` by lattice signature (their progressions' strides and first
 * columns modulo stride; CSR rows and empty rows apart), then by first column. */
mcl_status acsr_side_order(acsr_side *side);

/* ---- tilings ---------------------------------------------------------------------------- */

/* A tile's words on the device: its first slot in `order`, its rows, its components, then per
 * component the key lattice it walks: stride (0: the keys are the CSR columns from `first`),
 * first key, key count. */
#define ACSR_TILE_WORDS (3 + 3 * ACSR_MAX_RUNS)
/* A row's words on the device: per progression start, stride, count (count 0 past its runs),
 * then its CSR range (first column index, count). */
#define ACSR_ROW_WORDS (3 * ACSR_MAX_RUNS + 2)

/* The tiles of `side` with at most bq rows each: consecutive rows of `order` with one signature,
 * cut where a row would halve the share of the tile's key span its rows use. Returns the tile
 * count and, with tiles non-NULL, fills ACSR_TILE_WORDS words each. */
size_t acsr_tile(const acsr_side *side, size_t bq, uint32_t *tiles);

/* ---- the mask --------------------------------------------------------------------------- */

/* A side's device copy: rows, CSR columns, order and, per tile size asked for, its tiles. */
#define ACSR_TILINGS 4
typedef struct acsr_device_side {
    cl_mem rows, csr, order, offsets; /* offsets: [n + 1] prefix sums of row counts (forward side) */
    struct {
        size_t bq, count;
        cl_mem tiles;
    } tilings[ACSR_TILINGS];
} acsr_device_side;

struct mcl_acsr_mask {
    mcl_context *ctx;
    size_t seq;
    acsr_side rows, cols; /* the mask and its transpose */
    acsr_device_side dev[2];
    mcl_acsr_mask_info info;
};

enum { ACSR_ROWS = 0, ACSR_COLS = 1 };

/* The tiles of side `which` for tile size bq, uploaded on first use. */
mcl_status acsr_mask_tiles(mcl_acsr_mask *mask, int which, size_t bq, cl_mem *tiles, size_t *count);

#endif
