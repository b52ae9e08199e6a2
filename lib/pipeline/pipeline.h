/* The feature pipeline's private interfaces: alignment text, the two parsers, features, cache
 * entries and the loader's stochastic steps. The public side is the "MSA feature pipeline"
 * section of megacl.h. */
#ifndef MCL_PIPELINE_H
#define MCL_PIPELINE_H

#include "megacl.h"

#include <stdint.h>

/* ---- alignment text (text.c) ---------------------------------------------------------- */

/* What stat says of a file: the key index takes an unchanged identity for unchanged contents
 * (key_index.c says when that holds). */
typedef struct file_identity {
    uint64_t device, inode, size;
    int64_t mtime_ns, ctime_ns;
} file_identity;

/* A whole input file, memory-mapped read-only (data is NULL for an empty file), and its identity
 * when it was opened, before anything of it was read. */
typedef struct mapped_file {
    const char *data;
    size_t size;
    file_identity identity;
} mapped_file;

struct stat;
void file_identity_of(const struct stat *st, file_identity *identity);
mcl_status map_file(const char *path, mapped_file *file);
mcl_status map_open_file(int fd, const char *path, mapped_file *file);
void unmap_file(mapped_file *file);

/* Reads a file's lines from memory. A line is returned without its '\n' or "\r\n"; a line
 * longer than MCL_MSA_MAX_LINE_BYTES, a control byte (other than tab) or a DEL fails with
 * MCL_ERR_PARSE, so a binary file or a runaway line is refused as soon as it is met. */
typedef struct text_reader {
    const char *next, *end;
    const char *name;   /* the file, for messages */
    size_t line_number; /* of the line last returned, from 1 */
} text_reader;

void text_reader_init(text_reader *reader, const char *data, size_t size, const char *name);
/* Sets *line and *length and returns MCL_OK with *more = 1, or *more = 0 at the end. */
mcl_status text_next_line(text_reader *reader, const char **line, size_t *length, int *more);
/* Whether there is a next line that is not empty once the spaces and tabs around it are dropped
 * (as AlphaFold strips every line); sets it, stripped. 0 at the end or on a failure, which
 * *status then says. */
int text_next_content(text_reader *reader, const char **line, size_t *length, mcl_status *status);
/* mcl_fail(MCL_ERR_PARSE, "<file>:<line>: <message>") for the reader's current line. */
mcl_status text_fail(const text_reader *reader, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A growable byte string. */
typedef struct text_buffer {
    char *data;
    size_t size, capacity;
} text_buffer;

mcl_status text_append(text_buffer *buffer, const char *bytes, size_t count);
void text_buffer_free(text_buffer *buffer);

/* ---- parsed alignments (alignment.c, a3m.c, stockholm.c) ---------------------------------- */

typedef enum msa_format { MSA_FORMAT_A3M = 1, MSA_FORMAT_STOCKHOLM = 2 } msa_format;

/* The format a file name says (".a3m", ".sto", ".stockholm"); 0 for none. */
msa_format msa_format_of(const char *path);

/* Aligned rows over the query's columns: residues are upper-case letters or '-', deletions
 * count the residues a row inserts before each column (AlphaFold's deletion matrix). */
typedef struct msa_alignment {
    size_t depth, length, capacity;
    char *residues;     /* [capacity, length] */
    int32_t *deletions; /* [capacity, length] */
} msa_alignment;

/* Room for one more row of `length` columns (the first row fixes the length); returns the
 * row's two arrays, zeroed deletions included. */
mcl_status msa_alignment_add_row(msa_alignment *alignment, size_t length, char **residues,
                                 int32_t **deletions);
void msa_alignment_free(msa_alignment *alignment);

mcl_status msa_parse_a3m(const char *data, size_t size, const char *name, msa_alignment *alignment);
mcl_status msa_parse_stockholm(const char *data, size_t size, const char *name,
                               msa_alignment *alignment);
mcl_status msa_parse(msa_format format, const char *data, size_t size, const char *name,
                     msa_alignment *alignment);

/* ---- features (msa_features.c) ------------------------------------------------------------ */

enum {
    MSA_ARRAY_TOKENS,
    MSA_ARRAY_DELETION_ROW_START,
    MSA_ARRAY_DELETION_COLUMNS,
    MSA_ARRAY_DELETION_COUNTS,
    MSA_ARRAY_PROFILE,
    MSA_ARRAY_DELETION_MEAN,
    MSA_ARRAY_COUNT
};
#define MSA_ALIGN 64 /* every array starts at a multiple of this (mmap, vector loads) */

/* Byte sizes of the arrays of a depth x length chain with `nonzero` deletion counts; 0 when the
 * shape is impossible or overflows. */
int msa_array_bytes(uint64_t depth, uint64_t length, uint64_t nonzero, uint64_t bytes[MSA_ARRAY_COUNT]);

/* Points the arrays of a (shape already set) at base + offsets[i]; array i is returned by
 * msa_array_at. */
void msa_arrays_place(mcl_msa_arrays *arrays, const unsigned char *base, const uint64_t offsets[MSA_ARRAY_COUNT]);
const void *msa_array_at(const mcl_msa_arrays *arrays, int i);

struct mcl_msa_features {
    mcl_msa_arrays arrays;
    void *owned;        /* the arrays' block when computed or decompressed, else NULL */
    void *map;          /* the cache entry the arrays point into, else NULL */
    size_t map_bytes;
};

/* Features of a chain from its parsed alignments, in order; names are the files (messages). */
mcl_status msa_features_compute(const msa_alignment *alignments, const char *const *names,
                                size_t count, mcl_msa_features **features);
/* An empty features object whose arrays live in one aligned block of the given shape. */
mcl_status msa_features_allocate(uint64_t depth, uint64_t length, uint64_t nonzero, mcl_msa_features **features);

/* Parses an example's mapped files and computes its features. */
mcl_status msa_features_from_maps(const mcl_msa_example *example, const mapped_file *files,
                                  mcl_msa_features **features);

/* ---- cache entries (cache_entry.c, checksum.c) ---------------------------------------------- */

/* XXH3-64 of an entry's payload (the fastest code the CPU runs; the same value on every one). */
uint64_t entry_checksum(const void *bytes, size_t size);

#define CACHE_ENTRY_FORMAT 2 /* 2: deletion counts sparse (CSR) instead of a dense int32 matrix */

/* The whole file of an entry for these features (header and arrays, zstd-compressed arrays
 * at level > 0); malloc'd. */
mcl_status cache_entry_encode(const mcl_msa_features *features, const uint8_t key[16], const char *name,
                              int level, void **bytes, size_t *size);

/* Checks an entry's bytes (header, sizes, checksums, and with `full` the arrays' values) and
 * fills info; with features != NULL also returns the features, pointing into the bytes when
 * they are stored raw (the caller then hands the mapping to the features). A bad entry
 * returns MCL_ERR_CORRUPT with the reason. key, when not NULL, must match the entry's. */
mcl_status cache_entry_decode(const void *bytes, size_t size, const uint8_t *key, int full,
                              mcl_cache_entry_info *info, mcl_msa_features **features);

/* Rewrites an entry's two checksums for the bytes it now holds: the fuzzer's mutations then
 * reach the checks behind the checksums. */
void cache_entry_reseal(void *bytes, size_t size);

/* ---- the cache (feature_cache.c) ---------------------------------------------------------------- */

/* The example's features from its entry, or parsed and stored (*built = 1). A failure to store
 * fails the call only with must_store (an ahead-of-time build); otherwise it is logged. */
mcl_status cache_get_or_build(mcl_feature_cache *cache, const mcl_msa_example *example, int must_store,
                              mcl_msa_features **features, int *built);

/* The 32 lower-case hex digits of a 16-byte key. */
void key_hex(const uint8_t key[16], char hex[33]);

/* mkdir that takes an existing directory for success; 0 or -1 with errno. */
int make_dir(const char *path);

/* Writes dir/name (creating dir, one level) under a unique temporary name in dir and renames it
 * into place: rename is atomic, so a reader sees the old file, none, or the whole new one, and
 * writers of the same bytes simply replace each other. */
mcl_status cache_write_file(const char *dir, const char *name, const void *bytes, size_t size);

/* ---- keys and the key index (key_index.c) ----------------------------------------------------- */

/* The content key: XXH3-128 of the feature version and, per file in order, its format and
 * contents. */
void example_key(const mcl_msa_example *example, const mapped_file *files, uint8_t key[16]);

/* The content key the index holds for the example's inputs as stat finds them now; 0 when it
 * holds none, or an unsound or stale one (the caller then reads and hashes the inputs). */
int key_index_lookup(const char *cache_dir, const mcl_msa_example *example, uint8_t key[16]);

/* Records the content key of the example's inputs as they were when opened (files' identities),
 * unless one changed too recently before read_started_ns (CLOCK_REALTIME) for its timestamps to
 * show a later change. Best effort: a record not written costs a re-hash on the next read. */
void key_index_record(const char *cache_dir, const mcl_msa_example *example, const mapped_file *files,
                      int64_t read_started_ns, const uint8_t key[16]);

/* A record's bytes, and its reading: the key when the bytes are a sound record of `identity`. */
enum { KEY_INDEX_RECORD_BYTES = 56 };
void key_index_encode(const uint8_t identity[16], const uint8_t key[16], void *bytes);
int key_index_decode(const void *bytes, size_t size, const uint8_t identity[16], uint8_t key[16]);

/* ---- the loader's stochastic steps (sampling.c) ---------------------------------------------- */

/* A small counter-based generator: every (seed, stream) pair gives its own sequence. */
typedef struct sample_rng {
    uint64_t state;
} sample_rng;

sample_rng sample_rng_make(uint64_t seed, uint64_t stream_a, uint64_t stream_b);
uint64_t sample_rng_next(sample_rng *rng);
uint64_t sample_rng_below(sample_rng *rng, uint64_t bound); /* uniform in [0, bound) */

/* The example at position `position` of the stream: epoch position / count visits the examples
 * in a seeded permutation of its own, computed for the one position (a Feistel network). */
size_t sample_example_at(uint64_t seed, size_t count, uint64_t position);

/* Picks the rows and the crop of one example: rows_out[0] = 0 (the query), then up to
 * rows - 1 distinct other rows; returns how many rows were taken and sets *crop_start and
 * *crop_length. scratch holds depth entries. */
size_t sample_rows_and_crop(sample_rng *rng, size_t depth, size_t length, size_t rows, size_t crop,
                            size_t *rows_out, size_t *scratch, size_t *crop_start, size_t *crop_length);

#endif
