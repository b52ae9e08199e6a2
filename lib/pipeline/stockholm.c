/* Stockholm, as jackhmmer writes it and AlphaFold reads it (parsers.parse_stockholm): after the
 * "# STOCKHOLM 1.0" line, blocks of "name sequence" lines, a sequence continued in each block
 * under its name; "#=GF", "#=GS", "#=GR", "#=GC" and other '#' lines are annotation and skipped;
 * "//" ends the alignment. The first sequence is the query. Columns where the query has a gap
 * ('-' or '.') are insert columns and are dropped, as AlphaFold does; a residue that a row has in
 * a dropped column counts as a deletion before the next query column. Residues are upper-cased
 * ('.' in kept columns is a gap), so insert-state lower case reads as its residue. */
#include "pipeline.h"

#include "runtime/error.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL /* header-only: no link dependency */
#include <xxhash.h>

typedef struct sto_row {
    text_buffer sequence;
    size_t name_offset, name_length; /* in the names buffer */
    size_t first_line;
} sto_row;

/* Rows by name: an open-addressing table of row indices + 1 (0 is an empty slot). */
typedef struct sto_rows {
    sto_row *rows;
    size_t count, capacity;
    text_buffer names;
    size_t *slots;
    size_t slot_count; /* a power of two, kept over twice count */
} sto_rows;

static int is_gap(char c) { return c == '-' || c == '.'; }

static void rows_free(sto_rows *t)
{
    for (size_t i = 0; i < t->count; i++) text_buffer_free(&t->rows[i].sequence);
    free(t->rows);
    free(t->slots);
    text_buffer_free(&t->names);
}

static mcl_status rows_rehash(sto_rows *t)
{
    size_t slot_count = t->slot_count ? t->slot_count * 2 : 256;
    size_t *slots = calloc(slot_count, sizeof *slots);
    if (!slots) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu name slots", slot_count);
    for (size_t i = 0; i < t->count; i++) {
        const sto_row *r = &t->rows[i];
        size_t s = XXH3_64bits(t->names.data + r->name_offset, r->name_length) & (slot_count - 1);
        while (slots[s]) s = (s + 1) & (slot_count - 1);
        slots[s] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->slot_count = slot_count;
    return MCL_OK;
}

/* The row of `name`, added (at the end) when the name is new. */
static mcl_status rows_find(sto_rows *t, const char *name, size_t length, size_t line, sto_row **row)
{
    if (2 * (t->count + 1) > t->slot_count) MCL_TRY(rows_rehash(t));
    size_t s = XXH3_64bits(name, length) & (t->slot_count - 1);
    for (; t->slots[s]; s = (s + 1) & (t->slot_count - 1)) {
        sto_row *r = &t->rows[t->slots[s] - 1];
        if (r->name_length == length && memcmp(t->names.data + r->name_offset, name, length) == 0) {
            *row = r;
            return MCL_OK;
        }
    }
    if (t->count == t->capacity) {
        size_t capacity = t->capacity ? t->capacity * 2 : 64;
        sto_row *grown = realloc(t->rows, capacity * sizeof *grown);
        if (!grown) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu sequences", capacity);
        t->rows = grown;
        t->capacity = capacity;
    }
    sto_row *r = &t->rows[t->count];
    *r = (sto_row){.name_offset = t->names.size, .name_length = length, .first_line = line};
    MCL_TRY(text_append(&t->names, name, length));
    t->slots[s] = ++t->count;
    *row = r;
    return MCL_OK;
}

/* A "name sequence" line: the sequence is appended to the name's row. */
static mcl_status read_sequence_line(const text_reader *reader, sto_rows *t, const char *line, size_t n)
{
    size_t name_end = 0;
    while (name_end < n && line[name_end] != ' ' && line[name_end] != '\t') name_end++;
    size_t start = name_end;
    while (start < n && (line[start] == ' ' || line[start] == '\t')) start++;
    if (start == n) return text_fail(reader, "'%.*s' has no sequence", (int)(name_end < 64 ? name_end : 64), line);
    for (size_t i = start; i < n; i++) {
        char c = line[i];
        if (isalpha((unsigned char)c) || is_gap(c)) continue;
        return text_fail(reader, "character '%c' (0x%02x) at column %zu is not an alignment character",
                         isprint((unsigned char)c) ? c : '?', (unsigned char)c, i + 1);
    }
    sto_row *row = NULL;
    MCL_TRY(rows_find(t, line, name_end, reader->line_number, &row));
    return text_append(&row->sequence, line + start, n - start);
}

static mcl_status read_rows(text_reader *reader, sto_rows *t)
{
    int header_seen = 0, ended = 0;
    const char *line;
    size_t n;
    mcl_status status;
    while (text_next_content(reader, &line, &n, &status)) {
        if (ended) return text_fail(reader, "text after the '//' that ends the alignment");
        if (!header_seen) {
            if (n < 11 || memcmp(line, "# STOCKHOLM", 11) != 0)
                return text_fail(reader, "no '# STOCKHOLM 1.0' header (not a Stockholm file?)");
            header_seen = 1;
        } else if (n == 2 && line[0] == '/' && line[1] == '/') {
            ended = 1;
        } else if (line[0] != '#') {
            MCL_TRY(read_sequence_line(reader, t, line, n));
        }
    }
    MCL_TRY(status);
    if (!header_seen) return mcl_fail(MCL_ERR_PARSE, "%s: empty file (not a Stockholm alignment)", reader->name);
    if (!ended)
        return mcl_fail(MCL_ERR_PARSE, "%s:%zu: no '//' line ends the alignment (a truncated file?)",
                        reader->name, reader->line_number);
    if (t->count == 0) return mcl_fail(MCL_ERR_PARSE, "%s: the alignment has no sequences", reader->name);
    return MCL_OK;
}

/* Drops the query's gap columns, counting the residues rows have there as deletions. */
static mcl_status to_query_columns(const char *name, const sto_rows *t, msa_alignment *alignment)
{
    const text_buffer *query = &t->rows[0].sequence;
    size_t length = 0;
    for (size_t c = 0; c < query->size; c++) length += !is_gap(query->data[c]);
    if (length == 0) return mcl_fail(MCL_ERR_PARSE, "%s: the query (first sequence) has no residues", name);
    if (query->size > INT32_MAX) /* keeps every deletion count within int32 */
        return mcl_fail(MCL_ERR_PARSE, "%s: an alignment of %zu columns is too wide", name, query->size);
    for (size_t i = 0; i < t->count; i++) {
        const sto_row *row = &t->rows[i];
        if (row->sequence.size != query->size)
            return mcl_fail(MCL_ERR_PARSE,
                            "%s:%zu: sequence '%.*s' has %zu columns, the query %zu (a truncated or "
                            "corrupt file?)",
                            name, row->first_line, (int)(row->name_length < 64 ? row->name_length : 64),
                            t->names.data + row->name_offset, row->sequence.size, query->size);
        char *residues;
        int32_t *deletions;
        MCL_TRY(msa_alignment_add_row(alignment, length, &residues, &deletions));
        int32_t deleted = 0;
        for (size_t c = 0, column = 0; c < query->size; c++) {
            char r = row->sequence.data[c];
            if (is_gap(query->data[c])) {
                deleted += !is_gap(r);
                continue;
            }
            residues[column] = is_gap(r) ? '-' : (char)toupper((unsigned char)r);
            deletions[column++] = deleted;
            deleted = 0;
        }
    }
    return MCL_OK;
}

mcl_status msa_parse_stockholm(const char *data, size_t size, const char *name, msa_alignment *alignment)
{
    *alignment = (msa_alignment){0};
    text_reader reader;
    text_reader_init(&reader, data, size, name);
    sto_rows rows = {0};
    mcl_status status = read_rows(&reader, &rows);
    if (status == MCL_OK) status = to_query_columns(name, &rows, alignment);
    rows_free(&rows);
    if (status != MCL_OK) msa_alignment_free(alignment);
    return status;
}
