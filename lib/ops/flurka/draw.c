/* FAVOR+'s random features drawn on the host (include/megacl.h, mcl_flurka_draw_features). */
#include "megacl.h"

#include "runtime/error.h"
#include "runtime/random.h"

#include <math.h>
#include <stdlib.h>

/* A standard normal from two SplitMix64 values (Box-Muller; u1 in (0, 1], so its log is finite). */
static double gaussian(uint64_t *state)
{
    double u1 = ((double)(mcl_splitmix64(state) >> 11) + 1.0) * 0x1p-53;
    double u2 = (double)(mcl_splitmix64(state) >> 11) * 0x1p-53;
    const double two_pi = 6.283185307179586476925286766559;
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

/* The rows of block [dim, dim] made orthonormal, each in turn (modified Gram-Schmidt). */
static void orthonormalise(double *block, size_t dim)
{
    for (size_t i = 0; i < dim; i++) {
        double *row = block + i * dim;
        for (size_t j = 0; j < i; j++) {
            const double *prev = block + j * dim;
            double dot = 0.0;
            for (size_t c = 0; c < dim; c++) dot += row[c] * prev[c];
            for (size_t c = 0; c < dim; c++) row[c] -= dot * prev[c];
        }
        double norm = 0.0;
        for (size_t c = 0; c < dim; c++) norm += row[c] * row[c];
        norm = sqrt(norm);
        for (size_t c = 0; c < dim; c++) row[c] /= norm;
    }
}

/* A row's norm: that of a Gaussian vector of dim entries (chi(dim)), or sqrt(dim). */
static double row_norm(uint64_t *state, size_t dim, mcl_flurka_norms norms)
{
    if (norms == MCL_FLURKA_SQRT_D_NORMS) return sqrt((double)dim);
    double sum = 0.0;
    for (size_t c = 0; c < dim; c++) {
        double g = gaussian(state);
        sum += g * g;
    }
    return sqrt(sum);
}

mcl_status mcl_flurka_draw_features(uint64_t seed, size_t features, size_t head_dim, mcl_flurka_norms norms, float *w)
{
    const char *op = "flurka_draw_features";
    if (!w) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: w is NULL", op);
    if (features == 0 || head_dim == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: features (%zu) and head_dim (%zu) must be positive", op, features,
                        head_dim);
    if (norms != MCL_FLURKA_CHI_NORMS && norms != MCL_FLURKA_SQRT_D_NORMS)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: norms %d is no mcl_flurka_norms", op, (int)norms);
    if (head_dim > 4096 || features > ((size_t)1 << 24))
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: %zu x %zu features are more than it draws", op, features, head_dim);
    double *block = malloc(head_dim * head_dim * sizeof *block);
    if (!block) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "%s: no memory for a %zu x %zu block", op, head_dim, head_dim);
    uint64_t state = seed;
    for (size_t first = 0; first < features; first += head_dim) {
        for (size_t i = 0; i < head_dim * head_dim; i++) block[i] = gaussian(&state);
        orthonormalise(block, head_dim);
        size_t rows = features - first < head_dim ? features - first : head_dim;
        for (size_t r = 0; r < rows; r++) {
            double norm = row_norm(&state, head_dim, norms);
            for (size_t c = 0; c < head_dim; c++) w[(first + r) * head_dim + c] = (float)(norm * block[r * head_dim + c]);
        }
    }
    free(block);
    return MCL_OK;
}
