/* Parsed alignments: row storage shared by the A3M and Stockholm parsers, and which parser a
 * file name calls for. */
#include "pipeline.h"

#include "runtime/error.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

msa_format msa_format_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/')) return 0;
    if (strcasecmp(dot, ".a3m") == 0) return MSA_FORMAT_A3M;
    if (strcasecmp(dot, ".sto") == 0 || strcasecmp(dot, ".stockholm") == 0) return MSA_FORMAT_STOCKHOLM;
    return 0;
}

mcl_status msa_parse(msa_format format, const char *data, size_t size, const char *name,
                     msa_alignment *alignment)
{
    if (format == MSA_FORMAT_A3M) return msa_parse_a3m(data, size, name, alignment);
    if (format == MSA_FORMAT_STOCKHOLM) return msa_parse_stockholm(data, size, name, alignment);
    return mcl_fail(MCL_ERR_UNSUPPORTED, "%s: not an alignment this library reads (.a3m, .sto, .stockholm)",
                    name);
}

mcl_status msa_alignment_add_row(msa_alignment *alignment, size_t length, char **residues,
                                 int32_t **deletions)
{
    if (alignment->depth == 0) alignment->length = length;
    if (length != alignment->length || length == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "a row of %zu columns in an alignment of %zu", length,
                        alignment->length);
    if (alignment->depth == alignment->capacity) {
        size_t capacity = alignment->capacity ? alignment->capacity * 2 : 64;
        if (capacity > SIZE_MAX / sizeof(int32_t) / length)
            return mcl_fail(MCL_ERR_SIZE_OVERFLOW, "%zu rows of %zu columns", capacity, length);
        char *grown_residues = realloc(alignment->residues, capacity * length);
        if (!grown_residues) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu rows", capacity);
        alignment->residues = grown_residues;
        int32_t *grown_deletions = realloc(alignment->deletions, capacity * length * sizeof(int32_t));
        if (!grown_deletions) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu rows", capacity);
        alignment->deletions = grown_deletions;
        alignment->capacity = capacity;
    }
    *residues = alignment->residues + alignment->depth * length;
    *deletions = alignment->deletions + alignment->depth * length;
    memset(*deletions, 0, length * sizeof(int32_t));
    alignment->depth++;
    return MCL_OK;
}

void msa_alignment_free(msa_alignment *alignment)
{
    free(alignment->residues);
    free(alignment->deletions);
    *alignment = (msa_alignment){0};
}
