/* Files for the feature pipeline's tests (see files.h). */
#include "files.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *test_temp_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char *path = malloc(4096);
    cr_assert_not_null(path);
    snprintf(path, 4096, "%s/megacl-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(path), "cannot create a directory under %s", tmp ? tmp : "/tmp");
    return path;
}

char *test_write_bytes(const char *dir, const char *name, const void *bytes, size_t size)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    cr_assert_not_null(path);
    snprintf(path, n, "%s/%s", dir, name);
    FILE *file = fopen(path, "wb");
    cr_assert_not_null(file, "cannot write %s", path);
    cr_assert_eq(fwrite(bytes, 1, size, file), size);
    cr_assert_eq(fclose(file), 0);
    return path;
}

char *test_write_text(const char *dir, const char *name, const char *text)
{
    return test_write_bytes(dir, name, text, strlen(text));
}

static size_t walk(const char *dir, const char *part, int remove)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            count += walk(path, part, remove);
            if (remove) rmdir(path);
        } else {
            count += !part || strstr(e->d_name, part) != NULL;
            if (remove) unlink(path);
        }
    }
    closedir(d);
    return count;
}

void test_remove_tree(char *dir)
{
    walk(dir, NULL, 1);
    rmdir(dir);
    free(dir);
}

size_t test_count_files(const char *dir, const char *part) { return walk(dir, part, 0); }

const char *test_msa_path(const char *name)
{
    static _Thread_local char paths[8][1024];
    static _Thread_local int next;
    char *path = paths[next++ % 8];
    snprintf(path, sizeof paths[0], "%s/msa/%s", MEGACL_TEST_DATA_DIR, name);
    return path;
}
