/* A3M, as HHblits writes it and AlphaFold reads it (parsers.parse_a3m): FASTA records, the first
 * the query. In each sequence an upper-case letter or '-' is a query column (a residue or a
 * deletion) and a lower-case letter a residue the row inserts between two query columns; '.' (a
 * gap in an insert column, written by some tools) and a final '*' carry nothing. The deletion
 * count of a column is the number of lower-case letters since the previous column, so inserts
 * after the last column count nowhere, as in AlphaFold. Lines before the first '>' that start
 * with '#' (HH-suite's "#A3M#" marker) are skipped; empty lines and Windows line ends are fine. */
#include "pipeline.h"

#include "runtime/error.h"

#include <ctype.h>
#include <stdint.h>

typedef struct a3m_record {
    text_buffer sequence; /* the record's sequence characters, whitespace removed */
    size_t header_line;   /* 0 before the first record */
} a3m_record;

static int is_column(char c) { return (c >= 'A' && c <= 'Z') || c == '-'; }
static int is_insert(char c) { return c >= 'a' && c <= 'z'; }

/* Appends a sequence line's characters, refusing anything that is no alignment character. */
static mcl_status append_sequence(const text_reader *reader, a3m_record *record, const char *line, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? line[i] : ' ';
        if (is_column(c) || is_insert(c) || c == '.') continue;
        if (i > start) MCL_TRY(text_append(&record->sequence, line + start, i - start));
        start = i + 1;
        if (c == ' ' || c == '\t' || (c == '*' && i + 1 == n)) continue;
        return text_fail(reader, "character '%c' (0x%02x) at column %zu is not an alignment character",
                         isprint((unsigned char)c) ? c : '?', (unsigned char)c, i + 1);
    }
    return MCL_OK;
}

/* Turns the finished record into a row of the alignment. */
static mcl_status finish_record(const char *name, a3m_record *record, msa_alignment *alignment)
{
    const char *s = record->sequence.data;
    size_t n = record->sequence.size, columns = 0;
    for (size_t i = 0; i < n; i++) columns += is_column(s[i]);
    if (columns == 0)
        return mcl_fail(MCL_ERR_PARSE, "%s:%zu: %s", name, record->header_line,
                        n == 0 ? "'>' header without a sequence (a truncated file?)"
                               : "sequence without a single query column");
    if (alignment->depth > 0 && columns != alignment->length)
        return mcl_fail(MCL_ERR_PARSE,
                        "%s:%zu: sequence has %zu aligned columns, the query has %zu (a truncated or "
                        "corrupt file?)",
                        name, record->header_line, columns, alignment->length);
    char *residues;
    int32_t *deletions;
    MCL_TRY(msa_alignment_add_row(alignment, columns, &residues, &deletions));
    int64_t inserted = 0;
    size_t column = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_insert(s[i])) {
            if (++inserted > INT32_MAX)
                return mcl_fail(MCL_ERR_PARSE, "%s:%zu: more than %d inserted residues in a row", name,
                                record->header_line, INT32_MAX);
        } else if (is_column(s[i])) {
            residues[column] = s[i];
            deletions[column++] = (int32_t)inserted;
            inserted = 0;
        }
    }
    record->sequence.size = 0;
    return MCL_OK;
}

static mcl_status parse_lines(text_reader *reader, a3m_record *record, msa_alignment *alignment)
{
    const char *line;
    size_t n;
    mcl_status status;
    while (text_next_content(reader, &line, &n, &status)) {
        if (line[0] == '>') {
            if (record->header_line) MCL_TRY(finish_record(reader->name, record, alignment));
            record->header_line = reader->line_number;
        } else if (record->header_line) {
            MCL_TRY(append_sequence(reader, record, line, n));
        } else if (line[0] != '#') {
            return text_fail(reader, "sequence data before the first '>' header (not an A3M file?)");
        }
    }
    MCL_TRY(status);
    if (!record->header_line)
        return mcl_fail(MCL_ERR_PARSE, "%s: no sequences (an empty file, or not A3M)", reader->name);
    return finish_record(reader->name, record, alignment);
}

mcl_status msa_parse_a3m(const char *data, size_t size, const char *name, msa_alignment *alignment)
{
    *alignment = (msa_alignment){0};
    text_reader reader;
    text_reader_init(&reader, data, size, name);
    a3m_record record = {0};
    mcl_status status = parse_lines(&reader, &record, alignment);
    text_buffer_free(&record.sequence);
    if (status != MCL_OK) msa_alignment_free(alignment);
    return status;
}
