/* Files for the feature pipeline's tests: scratch directories, alignments written on the spot,
 * and the real alignments in tests/data/msa. */
#ifndef MCL_TESTS_FILES_H
#define MCL_TESTS_FILES_H

#include <stddef.h>

/* A fresh directory under the temporary directory (malloc'd path); fails the test if it cannot. */
char *test_temp_dir(void);

/* Writes `size` bytes to dir/name (a malloc'd path, returned); fails the test if it cannot. */
char *test_write_bytes(const char *dir, const char *name, const void *bytes, size_t size);
char *test_write_text(const char *dir, const char *name, const char *text);

/* Removes a directory and everything under it, and frees dir (test_temp_dir's path). */
void test_remove_tree(char *dir);

/* The regular files under dir (recursively) whose name contains `part`. */
size_t test_count_files(const char *dir, const char *part);

/* The path of a real alignment in tests/data/msa (in one of 8 rotating buffers: valid until
 * the eighth call after). */
const char *test_msa_path(const char *name);

#endif
