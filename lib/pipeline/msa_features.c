/* A chain's deterministic MSA features, as AlphaFold's data pipeline computes them
 * (alphafold/data/pipeline.py make_msa_features, then the profile and deletion statistics of
 * its model inputs). For the alignments of one chain, in the order given:
 *
 *   rows        every aligned row of every alignment, in order, minus the rows whose aligned
 *               residues (upper case and '-', after insertions are removed) equal an earlier
 *               row's: the first copy is kept with its own deletion counts, so the query (the
 *               first row of the first alignment) stays first. depth = rows kept.
 *   tokens      per residue, AlphaFold's order A R N D C Q E G H I L K M F P S T W Y V = 0..19,
 *               X = 20, gap '-' = 21. Other letters map as HHblits' table does (AlphaFold's
 *               HHBLITS_AA_TO_ID): B -> D, Z -> E, U -> C, J and O -> X.
 *   deletions   the count of residues the row inserts before each query column (a3m.c and
 *               stockholm.c say how each format gives it), int32. Most are 0, so only the
 *               nonzero ones are kept, row by row (compressed sparse rows: a row start per row,
 *               then a column and a count per nonzero, columns increasing within a row);
 *               mcl_msa_deletions_dense writes the dense matrix AlphaFold uses.
 *   profile     profile[c][k] = (number of rows whose token at column c is k) / depth, over the
 *               22 classes (AlphaFold's hhblits_profile / msa_profile: the mean of the one-hot
 *               tokens over all rows).
 *   deletion_mean  deletion_mean[c] = (sum of deletions at column c over all rows) / depth
 *               (the mean of the raw counts, as AlphaFold's pipeline).
 *   has_deletion = 1 if deletions > 0 else 0, and deletion_value = 2/pi * arctan(deletions / 3),
 *               are per-element functions of the counts: the loader forms them for the rows it
 *               samples, and mcl_msa_deletion_value gives the second.
 *
 * Sums are exact (integer counts) and divided once in double, so the features are the same on
 * every run and every machine. */
#include "pipeline.h"

#include "runtime/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL /* header-only: no link dependency */
#include <xxhash.h>

#define ALIGN_UP(x) (((x) + (MSA_ALIGN - 1)) & ~(uint64_t)(MSA_ALIGN - 1))

/* The token of an aligned residue ('A'..'Z' or '-', all the parsers produce): AlphaFold's
 * order, with HHblits' B -> D, Z -> E, U -> C and J, O, X -> X. */
static uint8_t token_of(char residue)
{
    static const uint8_t of_letter[26] = {
        ['A' - 'A'] = 0, ['B' - 'A'] = 3, ['C' - 'A'] = 4, ['D' - 'A'] = 3, ['E' - 'A'] = 6, ['F' - 'A'] = 13,
        ['G' - 'A'] = 7, ['H' - 'A'] = 8, ['I' - 'A'] = 9, ['J' - 'A'] = 20, ['K' - 'A'] = 11, ['L' - 'A'] = 10,
        ['M' - 'A'] = 12, ['N' - 'A'] = 2, ['O' - 'A'] = 20, ['P' - 'A'] = 14, ['Q' - 'A'] = 5, ['R' - 'A'] = 1,
        ['S' - 'A'] = 15, ['T' - 'A'] = 16, ['U' - 'A'] = 4, ['V' - 'A'] = 19, ['W' - 'A'] = 17, ['X' - 'A'] = 20,
        ['Y' - 'A'] = 18, ['Z' - 'A'] = 6,
    };
    return residue == '-' ? MCL_MSA_TOKEN_GAP : of_letter[residue - 'A'];
}

int msa_array_bytes(uint64_t depth, uint64_t length, uint64_t nonzero, uint64_t bytes[MSA_ARRAY_COUNT])
{
    const uint64_t limit = (uint64_t)1 << 46; /* far beyond any alignment; keeps sums exact */
    if (depth == 0 || length == 0 || depth > limit / length || length > UINT32_MAX || nonzero > depth * length)
        return 0;
    bytes[MSA_ARRAY_TOKENS] = depth * length;
    bytes[MSA_ARRAY_DELETION_ROW_START] = (depth + 1) * sizeof(uint64_t);
    bytes[MSA_ARRAY_DELETION_COLUMNS] = nonzero * sizeof(uint32_t);
    bytes[MSA_ARRAY_DELETION_COUNTS] = nonzero * sizeof(int32_t);
    bytes[MSA_ARRAY_PROFILE] = length * MCL_MSA_CLASSES * sizeof(float);
    bytes[MSA_ARRAY_DELETION_MEAN] = length * sizeof(float);
    return 1;
}

void msa_arrays_place(mcl_msa_arrays *a, const unsigned char *base, const uint64_t offsets[MSA_ARRAY_COUNT])
{
    a->tokens = (const uint8_t *)(base + offsets[MSA_ARRAY_TOKENS]);
    a->deletion_row_start = (const uint64_t *)(base + offsets[MSA_ARRAY_DELETION_ROW_START]);
    a->deletion_columns = (const uint32_t *)(base + offsets[MSA_ARRAY_DELETION_COLUMNS]);
    a->deletion_counts = (const int32_t *)(base + offsets[MSA_ARRAY_DELETION_COUNTS]);
    a->profile = (const float *)(base + offsets[MSA_ARRAY_PROFILE]);
    a->deletion_mean = (const float *)(base + offsets[MSA_ARRAY_DELETION_MEAN]);
}

const void *msa_array_at(const mcl_msa_arrays *a, int i)
{
    const void *arrays[MSA_ARRAY_COUNT] = {a->tokens, a->deletion_row_start, a->deletion_columns,
                                           a->deletion_counts, a->profile, a->deletion_mean};
    return arrays[i];
}

mcl_status msa_features_allocate(uint64_t depth, uint64_t length, uint64_t nonzero, mcl_msa_features **features)
{
    uint64_t bytes[MSA_ARRAY_COUNT], offsets[MSA_ARRAY_COUNT], total = 0;
    if (!msa_array_bytes(depth, length, nonzero, bytes) || depth > SIZE_MAX || length > SIZE_MAX)
        return mcl_fail(MCL_ERR_SIZE_OVERFLOW, "MSA features of %llu rows x %llu columns",
                        (unsigned long long)depth, (unsigned long long)length);
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) {
        offsets[i] = total;
        total = ALIGN_UP(total + bytes[i]);
    }
    mcl_msa_features *f = calloc(1, sizeof *f);
    unsigned char *block = total <= SIZE_MAX ? aligned_alloc(MSA_ALIGN, (size_t)total) : NULL;
    if (!f || !block) {
        free(f);
        free(block);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for MSA features of %llu bytes",
                        (unsigned long long)total);
    }
    f->owned = block;
    f->arrays = (mcl_msa_arrays){.depth = (size_t)depth, .length = (size_t)length, .deletion_nonzero = (size_t)nonzero};
    msa_arrays_place(&f->arrays, block, offsets);
    *features = f;
    return MCL_OK;
}

/* A kept row: where its residues and deletions are in its alignment. */
typedef struct kept_row {
    const char *residues;
    const int32_t *deletions;
} kept_row;

/* The rows of all alignments with later copies of an aligned row dropped; *kept is malloc'd. */
static mcl_status deduplicate(const msa_alignment *alignments, size_t count, kept_row **kept, size_t *kept_count)
{
    size_t total = 0, length = alignments[0].length;
    for (size_t a = 0; a < count; a++) total += alignments[a].depth;
    size_t slot_count = 64;
    while (slot_count < 2 * total) slot_count *= 2;
    kept_row *rows = malloc(total * sizeof *rows);
    size_t *slots = calloc(slot_count, sizeof *slots); /* kept row index + 1; 0 is empty */
    if (!rows || !slots) {
        free(rows);
        free(slots);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory to de-duplicate %zu rows", total);
    }
    size_t n = 0;
    for (size_t a = 0; a < count; a++) {
        for (size_t r = 0; r < alignments[a].depth; r++) {
            const char *residues = alignments[a].residues + r * length;
            size_t s = XXH3_64bits(residues, length) & (slot_count - 1);
            while (slots[s] && memcmp(rows[slots[s] - 1].residues, residues, length) != 0)
                s = (s + 1) & (slot_count - 1);
            if (slots[s]) continue; /* a copy of an earlier row */
            rows[n] = (kept_row){residues, alignments[a].deletions + r * length};
            slots[s] = ++n;
        }
    }
    free(slots);
    *kept = rows;
    *kept_count = n;
    return MCL_OK;
}

/* profile and deletion_mean from exact integer sums over the rows. */
static mcl_status column_statistics(mcl_msa_features *f)
{
    const mcl_msa_arrays *a = &f->arrays;
    size_t depth = a->depth, length = a->length;
    uint64_t *counts = calloc(length * MCL_MSA_CLASSES, sizeof *counts);
    int64_t *deleted = calloc(length, sizeof *deleted);
    if (!counts || !deleted) {
        free(counts);
        free(deleted);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for the profile of %zu columns", length);
    }
    for (size_t r = 0; r < depth; r++) {
        const uint8_t *tokens = a->tokens + r * length;
        for (size_t c = 0; c < length; c++) counts[c * MCL_MSA_CLASSES + tokens[c]]++;
    }
    for (size_t k = 0; k < a->deletion_nonzero; k++) deleted[a->deletion_columns[k]] += a->deletion_counts[k];
    float *profile = (float *)a->profile, *deletion_mean = (float *)a->deletion_mean;
    for (size_t i = 0; i < length * MCL_MSA_CLASSES; i++) profile[i] = (float)((double)counts[i] / (double)depth);
    for (size_t c = 0; c < length; c++) deletion_mean[c] = (float)((double)deleted[c] / (double)depth);
    free(counts);
    free(deleted);
    return MCL_OK;
}

/* Reductions without branches, which compilers vectorise: the nonzero counts of a row (lengths
 * fit 32 bits, msa_array_bytes says), and whether it has any (counts are never negative). */
static uint32_t row_nonzero(const int32_t *deletions, size_t length)
{
    uint32_t nonzero = 0;
    for (size_t c = 0; c < length; c++) nonzero += deletions[c] != 0;
    return nonzero;
}

static int row_inserts(const int32_t *deletions, size_t length)
{
    int32_t any = 0;
    for (size_t c = 0; c < length; c++) any |= deletions[c];
    return any != 0;
}

static size_t nonzero_deletions(const kept_row *kept, size_t depth, size_t length)
{
    size_t nonzero = 0;
    for (size_t r = 0; r < depth; r++) nonzero += row_nonzero(kept[r].deletions, length);
    return nonzero;
}

/* The kept rows' tokens, and their deletion counts as compressed sparse rows. Most rows insert
 * nothing (932 of the 1024 of bfd_uniclust_hits.a3m): they are passed over at vector speed. */
static void fill_rows(mcl_msa_features *f, const kept_row *kept)
{
    const mcl_msa_arrays *a = &f->arrays;
    uint8_t *tokens = (uint8_t *)a->tokens;
    uint64_t *row_start = (uint64_t *)a->deletion_row_start;
    uint32_t *columns = (uint32_t *)a->deletion_columns;
    int32_t *counts = (int32_t *)a->deletion_counts;
    size_t length = a->length, n = 0;
    for (size_t r = 0; r < a->depth; r++) {
        for (size_t c = 0; c < length; c++) tokens[r * length + c] = token_of(kept[r].residues[c]);
        row_start[r] = n;
        if (!row_inserts(kept[r].deletions, length)) continue;
        for (size_t c = 0; c < length; c++) {
            if (kept[r].deletions[c] == 0) continue;
            columns[n] = (uint32_t)c;
            counts[n++] = kept[r].deletions[c];
        }
    }
    row_start[a->depth] = n;
}

mcl_status msa_features_compute(const msa_alignment *alignments, const char *const *names, size_t count,
                                mcl_msa_features **features)
{
    for (size_t a = 1; a < count; a++)
        if (alignments[a].length != alignments[0].length)
            return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: the query has %zu residues, in %s it has %zu (not the same chain?)",
                            names[a], alignments[a].length, names[0], alignments[0].length);
    kept_row *kept = NULL;
    size_t depth = 0, length = alignments[0].length;
    MCL_TRY(deduplicate(alignments, count, &kept, &depth));
    mcl_msa_features *f;
    mcl_status status = msa_features_allocate(depth, length, nonzero_deletions(kept, depth, length), &f);
    if (status == MCL_OK) {
        fill_rows(f, kept);
        status = column_statistics(f);
        if (status == MCL_OK) *features = f;
        else mcl_msa_features_release(f);
    }
    free(kept);
    return status;
}

mcl_status msa_features_from_maps(const mcl_msa_example *example, const mapped_file *files,
                                  mcl_msa_features **features)
{
    size_t count = example->path_count;
    msa_alignment *alignments = calloc(count, sizeof *alignments);
    if (!alignments) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu alignments", count);
    mcl_status status = MCL_OK;
    for (size_t i = 0; i < count && status == MCL_OK; i++)
        status = msa_parse(msa_format_of(example->paths[i]), files[i].data, files[i].size, example->paths[i],
                           &alignments[i]);
    if (status == MCL_OK) status = msa_features_compute(alignments, example->paths, count, features);
    for (size_t i = 0; i < count; i++) msa_alignment_free(&alignments[i]);
    free(alignments);
    return status;
}

mcl_status mcl_msa_features_from_files(const char *const *paths, size_t count, mcl_msa_features **features)
{
    if (!paths || !features) return mcl_fail(MCL_ERR_NULL_POINTER, "msa_features_from_files: paths and features are required");
    *features = NULL;
    if (count == 0) return mcl_fail(MCL_ERR_INVALID_SIZE, "msa_features_from_files: no alignment files");
    for (size_t i = 0; i < count; i++)
        if (!paths[i]) return mcl_fail(MCL_ERR_NULL_POINTER, "msa_features_from_files: path %zu is NULL", i);
    mapped_file *files = calloc(count, sizeof *files);
    if (!files) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu files", count);
    mcl_status status = MCL_OK;
    for (size_t i = 0; i < count && status == MCL_OK; i++) status = map_file(paths[i], &files[i]);
    mcl_msa_example example = {.name = paths[0], .paths = paths, .path_count = count};
    if (status == MCL_OK) status = msa_features_from_maps(&example, files, features);
    for (size_t i = 0; i < count; i++) unmap_file(&files[i]);
    free(files);
    return status;
}

void mcl_msa_features_release(mcl_msa_features *features)
{
    if (!features) return;
    free(features->owned);
    if (features->map) {
        mapped_file map = {.data = features->map, .size = features->map_bytes};
        unmap_file(&map);
    }
    free(features);
}

void mcl_msa_features_arrays(const mcl_msa_features *features, mcl_msa_arrays *arrays)
{
    *arrays = features ? features->arrays : (mcl_msa_arrays){0};
}

mcl_status mcl_msa_deletions_dense(const mcl_msa_arrays *arrays, size_t first_row, size_t rows, int32_t *counts)
{
    if (!arrays || !counts) return mcl_fail(MCL_ERR_NULL_POINTER, "msa_deletions_dense: arrays and counts are required");
    if (first_row > arrays->depth || rows > arrays->depth - first_row)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "msa_deletions_dense: rows %zu..%zu of %zu", first_row,
                        first_row + rows, arrays->depth);
    memset(counts, 0, rows * arrays->length * sizeof *counts);
    for (size_t r = 0; r < rows; r++) {
        int32_t *row = counts + r * arrays->length;
        uint64_t end = arrays->deletion_row_start[first_row + r + 1];
        for (uint64_t k = arrays->deletion_row_start[first_row + r]; k < end; k++)
            row[arrays->deletion_columns[k]] = arrays->deletion_counts[k];
    }
    return MCL_OK;
}

float mcl_msa_deletion_value(int32_t count)
{
    const double two_over_pi = 0.636619772367581343076;
    return (float)(two_over_pi * atan((double)count / 3.0));
}
