/* Examples from a directory: OpenFold's alignment layout (a directory per chain holding its
 * .a3m and .sto files), plus single alignment files as chains of their own. */
#include "pipeline.h"

#include "runtime/error.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A growable list of malloc'd strings. */
typedef struct name_list {
    char **names;
    size_t count, capacity;
} name_list;

static void names_free(name_list *list)
{
    for (size_t i = 0; i < list->count; i++) free(list->names[i]);
    free(list->names);
    *list = (name_list){0};
}

static mcl_status names_add(name_list *list, const char *name)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 64;
        char **grown = realloc(list->names, capacity * sizeof *grown);
        if (!grown) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu names", capacity);
        list->names = grown;
        list->capacity = capacity;
    }
    if (!(list->names[list->count] = strdup(name))) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for a name");
    list->count++;
    return MCL_OK;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The entries of dir (hidden ones left out), sorted. */
static mcl_status list_dir(const char *dir, name_list *list)
{
    DIR *d = opendir(dir);
    if (!d) return mcl_fail(MCL_ERR_IO, "%s: cannot open the directory", dir);
    mcl_status status = MCL_OK;
    for (struct dirent *e; status == MCL_OK && (e = readdir(d));)
        if (e->d_name[0] != '.') status = names_add(list, e->d_name);
    closedir(d);
    if (list->count) qsort(list->names, list->count, sizeof *list->names, compare_names);
    return status;
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (path) snprintf(path, n, "%s/%s", dir, name);
    return path;
}

static int is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Adds an example of the given files (paths, taken over) named name. */
static mcl_status add_example(mcl_msa_example **examples, size_t *count, size_t *capacity, const char *name,
                              name_list *paths)
{
    if (*count == *capacity) {
        size_t grown_capacity = *capacity ? *capacity * 2 : 64;
        mcl_msa_example *grown = realloc(*examples, grown_capacity * sizeof *grown);
        if (!grown) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu examples", grown_capacity);
        *examples = grown;
        *capacity = grown_capacity;
    }
    char *copy = strdup(name);
    if (!copy) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for a name");
    (*examples)[(*count)++] = (mcl_msa_example){copy, (const char *const *)paths->names, paths->count};
    *paths = (name_list){0};
    return MCL_OK;
}

/* The alignment files of a chain directory, as full paths in name order. */
static mcl_status chain_files(const char *chain_dir, name_list *paths)
{
    name_list entries = {0};
    mcl_status status = list_dir(chain_dir, &entries);
    for (size_t i = 0; i < entries.count && status == MCL_OK; i++) {
        if (!msa_format_of(entries.names[i])) continue;
        char *path = join_path(chain_dir, entries.names[i]);
        status = path ? names_add(paths, path) : mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for a path");
        free(path);
    }
    names_free(&entries);
    return status;
}

mcl_status mcl_msa_examples_scan(const char *dir, mcl_msa_example **examples_out, size_t *count_out)
{
    if (!dir || !examples_out || !count_out)
        return mcl_fail(MCL_ERR_NULL_POINTER, "msa_examples_scan: dir, examples and count are required");
    *examples_out = NULL;
    *count_out = 0;
    name_list entries = {0};
    mcl_status status = list_dir(dir, &entries);
    mcl_msa_example *examples = NULL;
    size_t count = 0, capacity = 0;
    for (size_t i = 0; i < entries.count && status == MCL_OK; i++) {
        char *path = join_path(dir, entries.names[i]);
        name_list paths = {0};
        if (!path) status = mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for a path");
        else if (is_directory(path)) status = chain_files(path, &paths);
        else if (msa_format_of(path)) status = names_add(&paths, path);
        if (status == MCL_OK && paths.count) status = add_example(&examples, &count, &capacity, entries.names[i], &paths);
        names_free(&paths);
        free(path);
    }
    names_free(&entries);
    if (status != MCL_OK) {
        mcl_msa_examples_free(examples, count);
        return status;
    }
    *examples_out = examples;
    *count_out = count;
    return MCL_OK;
}

void mcl_msa_examples_free(mcl_msa_example *examples, size_t count)
{
    if (!examples) return;
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < examples[i].path_count; j++) free((void *)examples[i].paths[j]);
        free((void *)examples[i].paths);
        free((void *)examples[i].name);
    }
    free(examples);
}
