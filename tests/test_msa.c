/* The alignment parsers and the MSA features: hand-checked small files, the real alignments of
 * tests/data/msa, and malformed inputs. Expected values for the real files come from
 * tests/data/msa/expected_values.py, an independent Python reading of the same files the way
 * AlphaFold's parsers read them (run once by hand; its output is quoted next to each check). */
#include "common.h"
#include "files.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static mcl_msa_features *features_of(const char *const *paths, size_t count)
{
    mcl_msa_features *f = NULL;
    assert_ok(mcl_msa_features_from_files(paths, count, &f));
    return f;
}

static mcl_msa_arrays arrays_of(const mcl_msa_features *f)
{
    mcl_msa_arrays a;
    mcl_msa_features_arrays(f, &a);
    return a;
}

/* The dense deletion matrix [depth, length] of the arrays (malloc'd), as AlphaFold holds it. */
static int32_t *dense_deletions(const mcl_msa_arrays *a)
{
    int32_t *d = malloc(a->depth * a->length * sizeof *d);
    cr_assert_not_null(d);
    assert_ok(mcl_msa_deletions_dense(a, 0, a->depth, d));
    return d;
}

/* Expects a parse of the files to fail with `expected` and a message holding each needle. */
static void expect_failure(const char *const *paths, size_t count, mcl_status expected, const char *needle1,
                           const char *needle2)
{
    mcl_msa_features *f = NULL;
    mcl_status got = mcl_msa_features_from_files(paths, count, &f);
    cr_expect_eq(got, expected, "%s: got %s (%s), expected %s", paths[count - 1], mcl_status_name(got),
                 mcl_last_error(), mcl_status_name(expected));
    cr_expect_null(f);
    if (needle1) cr_expect(strstr(mcl_last_error(), needle1), "message '%s' lacks '%s'", mcl_last_error(), needle1);
    if (needle2) cr_expect(strstr(mcl_last_error(), needle2), "message '%s' lacks '%s'", mcl_last_error(), needle2);
    mcl_msa_features_release(f);
}

/* ---- hand-checked small files ----------------------------------------------------------------- */

Test(msa, a3m_insertions_gaps_letters_and_line_ends)
{
    char *dir = test_temp_dir();
    /* query ACDE; row 2 inserts "kl" before column 3 and "m" after the last column (dropped, as
     * in AlphaFold); row 3 has B, Z, U, J, O-free letters and a '.'; CRLF, blank lines, a long
     * header and the HH-suite marker line */
    char header[3000];
    memset(header, 'h', sizeof header - 1);
    header[sizeof header - 1] = '\0';
    char text[4096];
    snprintf(text, sizeof text, "#A3M#\r\n>query %s\r\nAC\r\nDE\r\n\r\n>two\r\nA-klDEm\r\n>three\r\nB.ZUJ\r\n", header);
    char *path = test_write_text(dir, "small.a3m", text);
    mcl_msa_features *f = features_of((const char *const *)&path, 1);
    mcl_msa_arrays a = arrays_of(f);
    int32_t *deleted = dense_deletions(&a);
    cr_assert_eq(a.depth, 3);
    cr_assert_eq(a.length, 4);
    const uint8_t tokens[12] = {0, 4, 3, 6, /* A C D E */ 0, 21, 3, 6, /* A - D E */ 3, 6, 4, 20 /* B->D Z->E U->C J->X */};
    const int32_t deletions[12] = {0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0};
    for (int i = 0; i < 12; i++) {
        cr_expect_eq(a.tokens[i], tokens[i], "token %d: %d, expected %d", i, a.tokens[i], tokens[i]);
        cr_expect_eq(deleted[i], deletions[i], "deletion %d: %d, expected %d", i, deleted[i], deletions[i]);
    }
    /* column 0 holds A, A, D: profile 2/3 A, 1/3 D; column 2 has deletions 0, 2, 0: mean 2/3 */
    cr_expect_float_eq(a.profile[0 * MCL_MSA_CLASSES + 0], 2.0f / 3.0f, 1e-7);
    cr_expect_float_eq(a.profile[0 * MCL_MSA_CLASSES + 3], 1.0f / 3.0f, 1e-7);
    cr_expect_float_eq(a.profile[1 * MCL_MSA_CLASSES + MCL_MSA_TOKEN_GAP], 1.0f / 3.0f, 1e-7);
    cr_expect_float_eq(a.deletion_mean[2], 2.0f / 3.0f, 1e-7);
    cr_expect_float_eq(a.deletion_mean[3], 0.0f, 0);
    for (size_t c = 0; c < a.length; c++) {
        double sum = 0;
        for (int k = 0; k < MCL_MSA_CLASSES; k++) sum += a.profile[c * MCL_MSA_CLASSES + k];
        cr_expect_float_eq(sum, 1.0, 1e-6, "column %zu's profile sums to %f", c, sum);
    }
    free(deleted);
    mcl_msa_features_release(f);
    free(path);
    test_remove_tree(dir);
}

Test(msa, stockholm_blocks_annotations_and_insert_columns)
{
    char *dir = test_temp_dir();
    /* two blocks; the query's gap columns (4 and 7 of 8) are dropped, residues there count as
     * deletions of the next kept column; lower case reads as its residue, '.' as a gap */
    const char *text = "# STOCKHOLM 1.0\n"
                       "#=GF ID test\n"
                       "#=GS query DE the query\n"
                       "\n"
                       "query   ACD-\n"
                       "hit1    ACDk\n"
                       "#=GR hit1 PP 9999\n"
                       "hit2    A-.-\n"
                       "\n"
                       "query   EF-G\n"
                       "hit1    EYmG\n"
                       "hit2    e.-.\n"
                       "#=GC RF xxx.\n"
                       "//\n";
    char *path = test_write_text(dir, "small.sto", text);
    mcl_msa_features *f = features_of((const char *const *)&path, 1);
    mcl_msa_arrays a = arrays_of(f);
    int32_t *deleted = dense_deletions(&a);
    cr_assert_eq(a.depth, 3);
    cr_assert_eq(a.length, 6);
    const uint8_t tokens[18] = {0, 4, 3, 6, 13, 7, /* A C D E F G */ 0, 4, 3, 6, 18, 7, 0, 21, 21, 6, 21, 21};
    const int32_t deletions[18] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 18; i++) {
        cr_expect_eq(a.tokens[i], tokens[i], "token %d: %d, expected %d", i, a.tokens[i], tokens[i]);
        cr_expect_eq(deleted[i], deletions[i], "deletion %d: %d, expected %d", i, deleted[i], deletions[i]);
    }
    free(deleted);
    mcl_msa_features_release(f);
    free(path);
    test_remove_tree(dir);
}

Test(msa, duplicates_across_files_keep_the_first_copy_and_the_query_first)
{
    char *dir = test_temp_dir();
    char *paths[2] = {
        test_write_text(dir, "a.a3m", ">q\nMKV\n>x\nMK-\n>x again, inserts differ\nMaK-\n>y\nM-V\n"),
        test_write_text(dir, "b.sto", "# STOCKHOLM 1.0\nq MKV\nz -KV\ny M-V\n//\n"),
    };
    mcl_msa_features *f = features_of((const char *const *)paths, 2);
    mcl_msa_arrays a = arrays_of(f);
    int32_t *deleted = dense_deletions(&a);
    /* kept: q, x (first copy: no deletion), y, z; q of b.sto and y of b.sto are copies */
    cr_assert_eq(a.depth, 4);
    const uint8_t expected[12] = {12, 11, 19, 12, 11, 21, 12, 21, 19, 21, 11, 19};
    for (int i = 0; i < 12; i++) cr_expect_eq(a.tokens[i], expected[i], "token %d", i);
    for (int i = 0; i < 12; i++) cr_expect_eq(deleted[i], 0, "deletion %d", i);
    free(deleted);
    mcl_msa_features_release(f);
    free(paths[0]);
    free(paths[1]);
    test_remove_tree(dir);
}

Test(msa, sparse_deletions_hold_each_row_and_dense_rows_can_be_asked_for)
{
    char *dir = test_temp_dir();
    /* row x inserts 2 before column 1 and 1 before column 3, row y 5 before column 0 (each row
     * differs from the query in a column, or it would be dropped as its copy) */
    char *path = test_write_text(dir, "d.a3m", ">q\nMKVL\n>x\nMabKAcL\n>y\nfghijM-VL\n");
    mcl_msa_features *f = features_of((const char *const *)&path, 1);
    mcl_msa_arrays a = arrays_of(f);
    cr_assert_eq(a.deletion_nonzero, 3);
    const uint64_t row_start[4] = {0, 0, 2, 3};
    const uint32_t columns[3] = {1, 3, 0};
    const int32_t counts[3] = {2, 1, 5};
    for (int r = 0; r < 4; r++) cr_expect_eq(a.deletion_row_start[r], row_start[r], "row start %d", r);
    for (int k = 0; k < 3; k++) {
        cr_expect_eq(a.deletion_columns[k], columns[k], "column %d", k);
        cr_expect_eq(a.deletion_counts[k], counts[k], "count %d", k);
    }
    int32_t rows[8];
    memset(rows, 0x7f, sizeof rows);
    assert_ok(mcl_msa_deletions_dense(&a, 1, 2, rows)); /* x and y, every cell written */
    const int32_t expected[8] = {0, 2, 0, 1, 5, 0, 0, 0};
    cr_expect_arr_eq(rows, expected, sizeof rows);
    assert_ok(mcl_msa_deletions_dense(&a, 3, 0, rows));
    assert_status(mcl_msa_deletions_dense(&a, 2, 2, rows), MCL_ERR_INVALID_ARGUMENT);
    assert_status(mcl_msa_deletions_dense(&a, 0, 1, NULL), MCL_ERR_NULL_POINTER);
    mcl_msa_features_release(f);
    free(path);
    test_remove_tree(dir);
}

Test(msa, deletion_value_is_alphafolds)
{
    cr_expect_float_eq(mcl_msa_deletion_value(0), 0.0f, 0);
    cr_expect_float_eq(mcl_msa_deletion_value(3), 0.5f, 1e-7); /* 2/pi * arctan(1) */
    cr_expect_float_eq(mcl_msa_deletion_value(24), (float)(2.0 / 3.14159265358979323846 * atan(8.0)), 1e-7);
}

/* ---- the real alignments --------------------------------------------------------------------- */

Test(msa, real_a3m)
{
    const char *path = test_msa_path("bfd_uniclust_hits.a3m");
    mcl_msa_features *f = features_of(&path, 1);
    mcl_msa_arrays a = arrays_of(f);
    int32_t *deleted = dense_deletions(&a);
    /* expected_values.py: depth 1024 length 73, 97 nonzero deletions, the largest (199, 50, 24)
     * (line 400: 24 lower-case letters before the 51st column), the first (111, 9, 1) */
    cr_assert_eq(a.depth, 1024);
    cr_assert_eq(a.length, 73);
    cr_expect_eq(deleted[199 * 73 + 50], 24);
    cr_expect_eq(deleted[111 * 73 + 9], 1);
    size_t nonzero = 0;
    for (size_t i = 0; i < a.depth * a.length; i++) nonzero += deleted[i] != 0;
    cr_expect_eq(nonzero, 97);
    cr_expect_eq(a.deletion_nonzero, 97, "the sparse rows hold exactly the nonzero counts");
    /* column 0: M (12) 90 and gap 704 of 1024; column 36: E (6) 570; column 72: gap 1022 */
    cr_expect_float_eq(a.profile[0 * 22 + 12], 90.0f / 1024, 1e-7);
    cr_expect_float_eq(a.profile[0 * 22 + 21], 704.0f / 1024, 1e-7);
    cr_expect_float_eq(a.profile[36 * 22 + 6], 570.0f / 1024, 1e-7);
    cr_expect_float_eq(a.profile[72 * 22 + 21], 1022.0f / 1024, 1e-7);
    cr_expect_float_eq(a.deletion_mean[50], 24.0f / 1024, 1e-7);
    free(deleted);
    mcl_msa_features_release(f);
}

Test(msa, real_stockholm)
{
    const char *path = test_msa_path("mgnify_hits.sto");
    mcl_msa_features *f = features_of(&path, 1);
    mcl_msa_arrays a = arrays_of(f);
    int32_t *deleted = dense_deletions(&a);
    /* expected_values.py: depth 59 length 73 (76 columns, 3 query gaps), deletions at (8, 64),
     * (46, 12), (53, 35), each 1; column 0: M 10 and gap 49 of 59; column 36: E 53 */
    cr_assert_eq(a.depth, 59);
    cr_assert_eq(a.length, 73);
    cr_expect_eq(deleted[8 * 73 + 64], 1);
    cr_expect_eq(deleted[46 * 73 + 12], 1);
    cr_expect_eq(deleted[53 * 73 + 35], 1);
    cr_expect_float_eq(a.profile[0 * 22 + 12], 10.0f / 59, 1e-7);
    cr_expect_float_eq(a.profile[36 * 22 + 6], 53.0f / 59, 1e-7);
    free(deleted);
    mcl_msa_features_release(f);
}

Test(msa, real_chain_of_two_files)
{
    const char *paths[2] = {test_msa_path("bfd_uniclust_hits.a3m"), test_msa_path("mgnify_hits.sto")};
    mcl_msa_features *f = features_of(paths, 2);
    mcl_msa_arrays a = arrays_of(f);
    /* expected_values.py: depth 1081 (1024 + 59 less 2 copies); column 36: E 621 of 1081;
     * deletion sums at columns 9, 50, 64: 21, 24, 28 */
    cr_assert_eq(a.depth, 1081);
    cr_expect_float_eq(a.profile[36 * 22 + 6], 621.0f / 1081, 1e-7);
    cr_expect_float_eq(a.deletion_mean[9], 21.0f / 1081, 1e-7);
    cr_expect_float_eq(a.deletion_mean[50], 24.0f / 1081, 1e-7);
    cr_expect_float_eq(a.deletion_mean[64], 28.0f / 1081, 1e-7);
    const char *query = "MAAHKGAEHHHKAAEHHEQAAKHHHAAAEHHEKGEHEQAAHHADTAYAHHKHAEEHAAQAAKHDAEHHAPKPH";
    for (size_t c = 0; c < 73; c++)
        cr_expect_eq(a.tokens[c], (uint8_t)(strchr("ARNDCQEGHILKMFPSTWYV", query[c]) - "ARNDCQEGHILKMFPSTWYV"),
                     "query column %zu", c);
    mcl_msa_features_release(f);
}

Test(msa, real_small_a3m)
{
    const char *path = test_msa_path("2q2k_A_bfd_uniclust_hits.a3m");
    mcl_msa_features *f = features_of(&path, 1);
    mcl_msa_arrays a = arrays_of(f);
    int32_t *deleted = dense_deletions(&a);
    /* expected_values.py: depth 4 length 70, one deletion at (3, 69) (the "pP" ending); column
     * 35 is Y (18) in all four rows */
    cr_assert_eq(a.depth, 4);
    cr_assert_eq(a.length, 70);
    cr_expect_eq(deleted[3 * 70 + 69], 1);
    cr_expect_float_eq(a.profile[35 * 22 + 18], 1.0f, 0);
    cr_expect_float_eq(a.deletion_mean[69], 0.25f, 0);
    free(deleted);
    mcl_msa_features_release(f);
}

/* ---- malformed inputs ----------------------------------------------------------------------- */

/* Writes `size` bytes as dir/name and expects parsing the file to fail (see expect_failure). */
static void expect_file_failure(const char *dir, const char *name, const char *bytes, size_t size,
                                mcl_status expected, const char *needle1, const char *needle2)
{
    char *path = test_write_bytes(dir, name, bytes, size);
    expect_failure((const char *const *)&path, 1, expected, needle1, needle2);
    free(path);
}

#define EXPECT_TEXT_FAILURE(dir, name, text, expected, needle1, needle2)                          \
    expect_file_failure(dir, name, text, strlen(text), expected, needle1, needle2)

Test(msa, malformed_inputs_name_the_file_line_and_problem)
{
    char *dir = test_temp_dir();
    EXPECT_TEXT_FAILURE(dir, "truncated.a3m", ">q\nACDE\n>second\nAC", MCL_ERR_PARSE, "truncated.a3m:3:",
                        "has 2 aligned columns, the query has 4");
    EXPECT_TEXT_FAILURE(dir, "header_only.a3m", ">q\nACDE\n>cut here\n", MCL_ERR_PARSE, "header_only.a3m:3:",
                        "without a sequence");
    EXPECT_TEXT_FAILURE(dir, "wrong.sto", "# STOCKHOLM 1.0\nq ACDE\nx ACD\n//\n", MCL_ERR_PARSE, "wrong.sto:3:",
                        "sequence 'x' has 3 columns, the query 4");
    EXPECT_TEXT_FAILURE(dir, "unended.sto", "# STOCKHOLM 1.0\nq ACDE\nx ACDE\n", MCL_ERR_PARSE, "unended.sto", "no '//'");
    EXPECT_TEXT_FAILURE(dir, "plain.sto", "q ACDE\n//\n", MCL_ERR_PARSE, "plain.sto:1:", "STOCKHOLM");
    const char garbage[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, (char)0xff, (char)0xfe, '\n', 0x00};
    expect_file_failure(dir, "binary.a3m", garbage, sizeof garbage, MCL_ERR_PARSE, "binary.a3m:1:", "not text");
    expect_file_failure(dir, "nul.a3m", ">q\nAC\0DE\n", 9, MCL_ERR_PARSE, "nul.a3m:2:", "column 3");
    EXPECT_TEXT_FAILURE(dir, "digits.a3m", ">q\nAC1DE\n", MCL_ERR_PARSE, "digits.a3m:2:", "'1'");
    EXPECT_TEXT_FAILURE(dir, "empty.a3m", "", MCL_ERR_PARSE, "empty.a3m", "no sequences");
    EXPECT_TEXT_FAILURE(dir, "empty.sto", "\n\n", MCL_ERR_PARSE, "empty.sto", "empty file");
    EXPECT_TEXT_FAILURE(dir, "noheader.a3m", "ACDE\n>q\nACDE\n", MCL_ERR_PARSE, "noheader.a3m:1:",
                        "before the first '>'");
    EXPECT_TEXT_FAILURE(dir, "alignment.fasta", ">q\nACDE\n", MCL_ERR_UNSUPPORTED, "alignment.fasta", NULL);
    char *other_chain[2] = {test_write_text(dir, "one.a3m", ">q\nACDE\n"), test_write_text(dir, "two.a3m", ">q\nACD\n")};
    expect_failure((const char *const *)other_chain, 2, MCL_ERR_INVALID_SIZE, "two.a3m", "not the same chain");
    free(other_chain[0]);
    free(other_chain[1]);
    const char *missing = "/nonexistent/megacl/none.a3m";
    expect_failure(&missing, 1, MCL_ERR_IO, "none.a3m", NULL);
    test_remove_tree(dir);
}

Test(msa, a_line_past_the_limit_is_refused_without_reading_on)
{
    /* a 1 GB line is refused the same way as this one, one byte past the limit: the reader
     * looks no further than MCL_MSA_MAX_LINE_BYTES + 2 bytes for the line's end */
    char *dir = test_temp_dir();
    size_t n = MCL_MSA_MAX_LINE_BYTES + 1;
    char *text = malloc(n + 4);
    cr_assert_not_null(text);
    memcpy(text, ">q\n", 3);
    memset(text + 3, 'A', n);
    expect_file_failure(dir, "long.a3m", text, n + 3, MCL_ERR_PARSE, "long.a3m:2:", "line longer than");
    /* a line of exactly the limit, with a Windows line end, is fine */
    memcpy(text + 3 + n - 1, "\r\n", 2);
    char *at_limit = test_write_bytes(dir, "limit.a3m", text, n + 4);
    mcl_msa_features *f = features_of((const char *const *)&at_limit, 1);
    cr_expect_eq(arrays_of(f).length, MCL_MSA_MAX_LINE_BYTES);
    mcl_msa_features_release(f);
    free(at_limit);
    free(text);
    test_remove_tree(dir);
}

Test(msa, null_and_empty_arguments)
{
    mcl_msa_features *f = NULL;
    const char *path = "x.a3m";
    assert_status(mcl_msa_features_from_files(NULL, 1, &f), MCL_ERR_NULL_POINTER);
    assert_status(mcl_msa_features_from_files(&path, 1, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_msa_features_from_files(&path, 0, &f), MCL_ERR_INVALID_SIZE);
    mcl_msa_features_release(NULL);
}
