/* A feature cache entry, one file: a 448-byte header, then the six arrays, each at a multiple
 * of 64 bytes from the start of the file so that a mapped entry is read in place.
 *
 *   magic "MCLMSAF", entry format, feature version, the 16-byte key, depth, length and the
 *   number of nonzero deletion counts, a byte-order mark, per array {dtype, codec (raw or
 *   zstd), shape, offset, stored bytes, decoded bytes}, the example's name (informative), the
 *   file's size, the XXH3-64 checksum of everything after the header and the XXH3-64 checksum
 *   of the header itself.
 *
 * The magic and the format stay the first 12 bytes in every format, and the format is checked
 * before anything else, so an entry of another format is refused as such (and rebuilt) whatever
 * its layout. Format 1 held the deletion counts as a dense int32 matrix; format 2 holds them as
 * compressed sparse rows, 4 to 5 times less to map and checksum on the real alignments.
 *
 * Entries are native-endian (the mark refuses an entry from a machine of the other order).
 * Decoding trusts nothing: every size and offset is checked against the file before use, and
 * every value that indexes memory downstream (tokens, the sparse rows) before it is returned. */
#include "pipeline.h"

#include "runtime/error.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#define XXH_INLINE_ALL /* header-only: no link dependency */
#include <xxhash.h>

enum { ENTRY_HEADER_BYTES = 448, ENTRY_BYTE_ORDER = 0x01020304 };
enum { DTYPE_U8 = 1, DTYPE_I32 = 2, DTYPE_F32 = 3, DTYPE_U32 = 4, DTYPE_U64 = 5 };
enum { CODEC_RAW = 0, CODEC_ZSTD = 1 };
static const char entry_magic[8] = "MCLMSAF";

typedef struct entry_array {
    uint32_t dtype, codec;
    uint64_t rows, cols;
    uint64_t offset;       /* from the start of the file */
    uint64_t stored_bytes; /* on disk */
    uint64_t raw_bytes;    /* decoded */
} entry_array;

typedef struct entry_header {
    char magic[8];
    uint32_t format_version, feature_version;
    uint8_t key[16];
    uint64_t depth, length, deletion_nonzero;
    uint32_t array_count, byte_order;
    entry_array arrays[MSA_ARRAY_COUNT];
    char name[64];
    uint64_t file_bytes;
    uint64_t payload_checksum; /* of bytes [ENTRY_HEADER_BYTES, file_bytes) */
    uint64_t header_checksum;  /* of the header up to this field */
} entry_header;

_Static_assert(sizeof(entry_header) <= ENTRY_HEADER_BYTES, "the header fits its room");
_Static_assert(ENTRY_HEADER_BYTES % MSA_ALIGN == 0, "arrays after the header stay aligned");
_Static_assert(offsetof(entry_header, format_version) == 8, "the format is where every format has it");

#define ALIGN_UP(x) (((x) + (MSA_ALIGN - 1)) & ~(uint64_t)(MSA_ALIGN - 1))

static const uint32_t array_dtypes[MSA_ARRAY_COUNT] = {DTYPE_U8, DTYPE_U64, DTYPE_U32, DTYPE_I32, DTYPE_F32, DTYPE_F32};

static void array_shape(int i, const entry_header *h, uint64_t *rows, uint64_t *cols)
{
    const uint64_t shapes[MSA_ARRAY_COUNT][2] = {
        [MSA_ARRAY_TOKENS] = {h->depth, h->length},
        [MSA_ARRAY_DELETION_ROW_START] = {h->depth + 1, 1},
        [MSA_ARRAY_DELETION_COLUMNS] = {h->deletion_nonzero, 1},
        [MSA_ARRAY_DELETION_COUNTS] = {h->deletion_nonzero, 1},
        [MSA_ARRAY_PROFILE] = {h->length, MCL_MSA_CLASSES},
        [MSA_ARRAY_DELETION_MEAN] = {h->length, 1},
    };
    *rows = shapes[i][0];
    *cols = shapes[i][1];
}

static uint64_t header_checksum(const entry_header *h) { return XXH3_64bits(h, offsetof(entry_header, header_checksum)); }

/* ---- encoding ------------------------------------------------------------------------------ */

/* The arrays as they will be stored: the features' own bytes, or zstd frames (malloc'd). */
static mcl_status stored_arrays(const mcl_msa_features *f, int level, uint64_t bytes[MSA_ARRAY_COUNT],
                                void *compressed[MSA_ARRAY_COUNT], size_t stored[MSA_ARRAY_COUNT])
{
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) {
        stored[i] = (size_t)bytes[i];
        if (level <= 0) continue;
        size_t bound = ZSTD_compressBound((size_t)bytes[i]);
        compressed[i] = malloc(bound);
        if (!compressed[i]) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory to compress %zu bytes", bound);
        size_t n = ZSTD_compress(compressed[i], bound, msa_array_at(&f->arrays, i), (size_t)bytes[i], level);
        if (ZSTD_isError(n)) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "zstd: %s", ZSTD_getErrorName(n));
        stored[i] = n;
    }
    return MCL_OK;
}

static void fill_header(entry_header *h, const mcl_msa_features *f, const uint8_t key[16], const char *name,
                        int level, const uint64_t bytes[MSA_ARRAY_COUNT], const size_t stored[MSA_ARRAY_COUNT])
{
    memcpy(h->magic, entry_magic, sizeof h->magic);
    h->format_version = CACHE_ENTRY_FORMAT;
    h->feature_version = MCL_MSA_FEATURE_VERSION;
    memcpy(h->key, key, sizeof h->key);
    h->depth = f->arrays.depth;
    h->length = f->arrays.length;
    h->deletion_nonzero = f->arrays.deletion_nonzero;
    h->array_count = MSA_ARRAY_COUNT;
    h->byte_order = ENTRY_BYTE_ORDER;
    snprintf(h->name, sizeof h->name, "%s", name ? name : "");
    uint64_t offset = ENTRY_HEADER_BYTES;
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) {
        entry_array *a = &h->arrays[i];
        a->dtype = array_dtypes[i];
        a->codec = level > 0 ? CODEC_ZSTD : CODEC_RAW;
        array_shape(i, h, &a->rows, &a->cols);
        a->offset = offset;
        a->stored_bytes = stored[i];
        a->raw_bytes = bytes[i];
        offset = ALIGN_UP(offset + stored[i]);
    }
    h->file_bytes = h->arrays[MSA_ARRAY_COUNT - 1].offset + stored[MSA_ARRAY_COUNT - 1];
}

mcl_status cache_entry_encode(const mcl_msa_features *f, const uint8_t key[16], const char *name, int level,
                              void **bytes_out, size_t *size_out)
{
    uint64_t bytes[MSA_ARRAY_COUNT];
    if (!msa_array_bytes(f->arrays.depth, f->arrays.length, f->arrays.deletion_nonzero, bytes))
        return mcl_fail(MCL_ERR_SIZE_OVERFLOW, "features of %zu x %zu", f->arrays.depth, f->arrays.length);
    void *compressed[MSA_ARRAY_COUNT] = {0};
    size_t stored[MSA_ARRAY_COUNT];
    mcl_status status = stored_arrays(f, level, bytes, compressed, stored);
    entry_header h = {0};
    unsigned char *file = NULL;
    if (status == MCL_OK) {
        fill_header(&h, f, key, name, level, bytes, stored);
        file = h.file_bytes <= SIZE_MAX ? calloc(1, (size_t)h.file_bytes) : NULL;
        if (!file) status = mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for an entry of %llu bytes",
                                     (unsigned long long)h.file_bytes);
    }
    if (status == MCL_OK) {
        for (int i = 0; i < MSA_ARRAY_COUNT; i++)
            memcpy(file + h.arrays[i].offset, compressed[i] ? compressed[i] : msa_array_at(&f->arrays, i), stored[i]);
        h.payload_checksum = entry_checksum(file + ENTRY_HEADER_BYTES, (size_t)h.file_bytes - ENTRY_HEADER_BYTES);
        h.header_checksum = header_checksum(&h);
        memcpy(file, &h, sizeof h);
        *bytes_out = file;
        *size_out = (size_t)h.file_bytes;
    }
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) free(compressed[i]);
    return status;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static mcl_status corrupt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static mcl_status corrupt(const char *fmt, ...)
{
    char detail[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(detail, sizeof detail, fmt, args);
    va_end(args);
    return mcl_fail(MCL_ERR_CORRUPT, "%s", detail);
}

static mcl_status check_header(const entry_header *h, size_t size, const uint8_t *key)
{
    if (memcmp(h->magic, entry_magic, sizeof entry_magic) != 0) return corrupt("not a feature cache entry (no magic)");
    if (h->format_version != CACHE_ENTRY_FORMAT)
        return corrupt("entry format %u, this library reads %u", h->format_version, CACHE_ENTRY_FORMAT);
    if (h->header_checksum != header_checksum(h)) return corrupt("header checksum mismatch");
    if (h->byte_order != ENTRY_BYTE_ORDER) return corrupt("written on a machine of the other byte order");
    if (h->feature_version != MCL_MSA_FEATURE_VERSION)
        return corrupt("feature version %u, this library computes %u", h->feature_version, MCL_MSA_FEATURE_VERSION);
    if (key && memcmp(h->key, key, sizeof h->key) != 0) return corrupt("holds another key than its name");
    if (h->file_bytes != size)
        return corrupt("truncated or extended: %zu bytes, the header says %llu", size, (unsigned long long)h->file_bytes);
    uint64_t bytes[MSA_ARRAY_COUNT];
    if (h->array_count != MSA_ARRAY_COUNT || !msa_array_bytes(h->depth, h->length, h->deletion_nonzero, bytes))
        return corrupt("impossible shape: %u arrays of %llu x %llu with %llu deletions", h->array_count,
                       (unsigned long long)h->depth, (unsigned long long)h->length,
                       (unsigned long long)h->deletion_nonzero);
    uint64_t end = ENTRY_HEADER_BYTES;
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) {
        const entry_array *a = &h->arrays[i];
        uint64_t rows, cols;
        array_shape(i, h, &rows, &cols);
        /* a zstd block holds at most 128 KiB and takes at least 4 bytes: no frame of the stored size
         * can decode to more, so a forged size cannot make the reader allocate beyond it */
        int possible_zstd = a->codec == CODEC_ZSTD && a->raw_bytes / ZSTD_BLOCKSIZE_MAX <= a->stored_bytes / 4 + 1;
        int sound = a->dtype == array_dtypes[i] && a->rows == rows && a->cols == cols && a->raw_bytes == bytes[i] &&
                    (possible_zstd || (a->codec == CODEC_RAW && a->stored_bytes == a->raw_bytes)) &&
                    a->offset % MSA_ALIGN == 0 && a->offset >= end && a->offset <= size &&
                    a->stored_bytes <= size - a->offset;
        if (!sound) return corrupt("array %d: inconsistent dtype, shape, codec or place in the file", i);
        end = a->offset + a->stored_bytes;
    }
    return MCL_OK;
}

/* Decodes the arrays into f: in place when all are raw, else into a block of f's own. */
static mcl_status decode_arrays(const entry_header *h, const unsigned char *bytes, mcl_msa_features **out)
{
    int raw = 1;
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) raw &= h->arrays[i].codec == CODEC_RAW;
    mcl_msa_features *f;
    if (raw) {
        f = calloc(1, sizeof *f);
        if (!f) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for features");
        f->arrays = (mcl_msa_arrays){.depth = (size_t)h->depth, .length = (size_t)h->length,
                                     .deletion_nonzero = (size_t)h->deletion_nonzero};
        uint64_t offsets[MSA_ARRAY_COUNT];
        for (int i = 0; i < MSA_ARRAY_COUNT; i++) offsets[i] = h->arrays[i].offset;
        msa_arrays_place(&f->arrays, bytes, offsets);
        *out = f;
        return MCL_OK;
    }
    MCL_TRY(msa_features_allocate(h->depth, h->length, h->deletion_nonzero, &f));
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) {
        const entry_array *a = &h->arrays[i];
        void *target = (void *)msa_array_at(&f->arrays, i);
        size_t n = a->stored_bytes;
        if (a->codec == CODEC_RAW) memcpy(target, bytes + a->offset, n);
        else n = ZSTD_decompress(target, (size_t)a->raw_bytes, bytes + a->offset, n);
        if (ZSTD_isError(n) || n != a->raw_bytes) {
            mcl_msa_features_release(f);
            return corrupt("array %d does not decompress to its %llu bytes", i, (unsigned long long)a->raw_bytes);
        }
    }
    *out = f;
    return MCL_OK;
}

/* Whether every token is one of the classes: a maximum over four lanes, which compilers turn
 * into vector code that keeps up with the checksum. */
static int tokens_in_range(const uint8_t *tokens, size_t count)
{
    uint8_t largest[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= count; i += 4)
        for (int lane = 0; lane < 4; lane++) largest[lane] = tokens[i + lane] > largest[lane] ? tokens[i + lane] : largest[lane];
    for (; i < count; i++) largest[0] = tokens[i] > largest[0] ? tokens[i] : largest[0];
    return largest[0] < MCL_MSA_CLASSES && largest[1] < MCL_MSA_CLASSES && largest[2] < MCL_MSA_CLASSES &&
           largest[3] < MCL_MSA_CLASSES;
}

/* Whether the sparse rows can be followed without leaving the arrays: starts from 0 to the
 * count, never falling; columns inside the chain; counts of at least 1 (they index a table of
 * deletion values). Reductions without branches, as the tokens'. */
static int deletion_rows_safe(const mcl_msa_arrays *a)
{
    const uint64_t *start = a->deletion_row_start;
    int falls = 0;
    for (size_t r = 0; r < a->depth; r++) falls |= start[r + 1] < start[r];
    uint32_t largest_column = 0;
    int32_t smallest_count = 1;
    for (size_t k = 0; k < a->deletion_nonzero; k++) {
        largest_column = a->deletion_columns[k] > largest_column ? a->deletion_columns[k] : largest_column;
        smallest_count = a->deletion_counts[k] < smallest_count ? a->deletion_counts[k] : smallest_count;
    }
    return start[0] == 0 && start[a->depth] == a->deletion_nonzero && !falls && largest_column < a->length &&
           smallest_count >= 1;
}

/* Whether each row's columns increase, as msa_features_compute writes them. */
static int deletion_columns_increase(const mcl_msa_arrays *a)
{
    for (size_t r = 0; r < a->depth; r++)
        for (uint64_t k = a->deletion_row_start[r] + 1; k < a->deletion_row_start[r + 1]; k++)
            if (a->deletion_columns[k] <= a->deletion_columns[k - 1]) return 0;
    return 1;
}

/* Values no computation gives: tokens past the classes, sparse rows that lead outside the
 * arrays and, with full, unsorted rows or a profile or mean outside its range. Tokens and the
 * sparse rows index memory downstream, so they are always checked. */
static mcl_status check_values(const mcl_msa_arrays *a, int full)
{
    if (!tokens_in_range(a->tokens, a->depth * a->length)) return corrupt("a token out of range");
    if (!deletion_rows_safe(a)) return corrupt("deletion counts: rows out of order, a column outside the chain or a count below 1");
    if (!full) return MCL_OK;
    if (!deletion_columns_increase(a)) return corrupt("deletion counts: columns not increasing in a row");
    for (size_t i = 0; i < a->length * MCL_MSA_CLASSES; i++)
        if (!(a->profile[i] >= 0.0f && a->profile[i] <= 1.0f)) return corrupt("profile value out of [0, 1]");
    for (size_t c = 0; c < a->length; c++)
        if (!(a->deletion_mean[c] >= 0.0f && isfinite(a->deletion_mean[c]))) return corrupt("deletion mean out of range");
    return MCL_OK;
}

static void fill_info(const entry_header *h, size_t size, mcl_cache_entry_info *info)
{
    memcpy(info->name, h->name, sizeof info->name - 1);
    info->name[sizeof info->name - 1] = '\0';
    info->format_version = h->format_version;
    info->feature_version = h->feature_version;
    info->depth = h->depth;
    info->length = h->length;
    info->file_bytes = size;
    info->array_bytes = 0;
    info->compressed = 0;
    for (int i = 0; i < MSA_ARRAY_COUNT; i++) {
        info->array_bytes += h->arrays[i].raw_bytes;
        info->compressed |= h->arrays[i].codec != CODEC_RAW;
    }
}

mcl_status cache_entry_decode(const void *bytes, size_t size, const uint8_t *key, int full, mcl_cache_entry_info *info,
                              mcl_msa_features **features)
{
    if (size < ENTRY_HEADER_BYTES || !bytes)
        return corrupt("truncated: %zu bytes, the header alone takes %d", size, ENTRY_HEADER_BYTES);
    entry_header h;
    memcpy(&h, bytes, sizeof h);
    MCL_TRY(check_header(&h, size, key));
    if (info) fill_info(&h, size, info);
    if (!full && !features) return MCL_OK;
    if (entry_checksum((const unsigned char *)bytes + ENTRY_HEADER_BYTES, size - ENTRY_HEADER_BYTES) != h.payload_checksum)
        return corrupt("array checksum mismatch");
    mcl_msa_features *f = NULL;
    MCL_TRY(decode_arrays(&h, bytes, &f));
    mcl_status status = check_values(&f->arrays, full);
    if (status == MCL_OK && features) *features = f;
    else mcl_msa_features_release(f);
    return status;
}

void cache_entry_reseal(void *bytes, size_t size)
{
    if (size < ENTRY_HEADER_BYTES) return;
    entry_header h;
    memcpy(&h, bytes, sizeof h);
    h.payload_checksum = entry_checksum((const unsigned char *)bytes + ENTRY_HEADER_BYTES, size - ENTRY_HEADER_BYTES);
    h.header_checksum = header_checksum(&h);
    memcpy(bytes, &h, sizeof h);
}
