/* The loader's stochastic steps, each a pure function of a seed and the step: which example sits
 * at a place in the stream, which MSA rows are kept and where the crop starts. No state is
 * shared between calls, so worker threads give the same batches in any order. */
#include "pipeline.h"

#include "runtime/random.h"

sample_rng sample_rng_make(uint64_t seed, uint64_t stream_a, uint64_t stream_b)
{
    return (sample_rng){mcl_mix64(mcl_mix64(seed ^ 0x6d656761636c2d31u) ^ stream_a) ^ mcl_mix64(stream_b + 0x9e3779b97f4a7c15u)};
}

uint64_t sample_rng_next(sample_rng *rng)
{
    return mcl_splitmix64(&rng->state);
}

uint64_t sample_rng_below(sample_rng *rng, uint64_t bound)
{
    /* rejection keeps every value equally likely: no modulo bias */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do x = sample_rng_next(rng);
    while (x >= limit);
    return x % bound;
}

/* A permutation of [0, 2^(2 * half_bits)) keyed by (seed, epoch): four Feistel rounds. */
static uint64_t feistel(uint64_t x, unsigned half_bits, uint64_t seed, uint64_t epoch)
{
    uint64_t mask = ((uint64_t)1 << half_bits) - 1, left = x >> half_bits, right = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t next = left ^ (mcl_mix64(right ^ mcl_mix64(seed ^ mcl_mix64(epoch * 4 + round))) & mask);
        left = right;
        right = next;
    }
    return (left << half_bits) | right;
}

size_t sample_example_at(uint64_t seed, size_t count, uint64_t position)
{
    if (count <= 1) return 0;
    uint64_t epoch = position / count, x = position % count;
    unsigned bits = 1;
    while (((uint64_t)1 << bits) < count) bits++;
    unsigned half_bits = (bits + 1) / 2;
    /* cycle-walking: the permutation of the power-of-four domain, applied until it lands inside
     * [0, count), is a permutation of [0, count); the domain is under 4 * count, so few walks */
    do x = feistel(x, half_bits, seed, epoch);
    while (x >= count);
    return (size_t)x;
}

size_t sample_rows_and_crop(sample_rng *rng, size_t depth, size_t length, size_t rows, size_t crop,
                            size_t *rows_out, size_t *scratch, size_t *crop_start, size_t *crop_length)
{
    size_t taken = rows < depth ? rows : depth;
    rows_out[0] = 0; /* the query is always kept, first */
    for (size_t i = 1; i < depth; i++) scratch[i - 1] = i;
    for (size_t k = 0; k + 1 < taken; k++) { /* a partial Fisher-Yates shuffle of rows 1..depth-1 */
        size_t j = k + (size_t)sample_rng_below(rng, depth - 1 - k);
        size_t t = scratch[k];
        scratch[k] = scratch[j];
        scratch[j] = t;
        rows_out[k + 1] = scratch[k];
    }
    *crop_length = crop < length ? crop : length;
    *crop_start = length > crop ? (size_t)sample_rng_below(rng, length - crop + 1) : 0;
    return taken;
}
