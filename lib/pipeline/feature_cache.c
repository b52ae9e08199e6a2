/* The on-disk feature cache: a directory of entries named by the hash of their inputs
 * (<dir>/<first two hex digits>/<32 hex digits>.msaf), written under a temporary name and
 * renamed into place, read by mapping the file. The key index (<dir>/index, key_index.c) finds
 * the key of unchanged inputs without reading them. */
#include "pipeline.h"

#include "runtime/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ENTRY_SUFFIX ".msaf"

struct mcl_feature_cache {
    char *dir;
    int level;
    int key_index; /* take keys of unchanged inputs from the key index (MEGACL_KEY_INDEX=0: never) */
    atomic_uint_fast64_t hits, misses, corrupt, indexed, read_ns, build_ns;
};

static int64_t clock_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static uint64_t now_ns(void) { return (uint64_t)clock_ns(CLOCK_MONOTONIC); }

int make_dir(const char *path) { return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1; }

mcl_status mcl_feature_cache_open(const char *dir, int compression_level, mcl_feature_cache **cache)
{
    if (!dir || !cache) return mcl_fail(MCL_ERR_NULL_POINTER, "feature_cache_open: dir and cache are required");
    *cache = NULL;
    if (!*dir) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "feature_cache_open: the directory name is empty");
    if (compression_level < 0 || compression_level > 19)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "feature_cache_open: compression level %d is not in 0..19",
                        compression_level);
    struct stat st;
    if (make_dir(dir) != 0 || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return mcl_fail(MCL_ERR_IO, "feature_cache_open: %s: cannot create the directory (%s)", dir, strerror(errno));
    mcl_feature_cache *c = calloc(1, sizeof *c);
    char *copy = strdup(dir);
    if (!c || !copy) {
        free(c);
        free(copy);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for a feature cache");
    }
    const char *key_index = getenv("MEGACL_KEY_INDEX");
    c->dir = copy;
    c->level = compression_level;
    c->key_index = !key_index || strcmp(key_index, "0") != 0;
    *cache = c;
    return MCL_OK;
}

void mcl_feature_cache_close(mcl_feature_cache *cache)
{
    if (!cache) return;
    free(cache->dir);
    free(cache);
}

/* ---- keys and paths -------------------------------------------------------------------------- */

void key_hex(const uint8_t key[16], char hex[33])
{
    static const char digits[] = "0123456789abcdef"; /* snprintf per byte cost a read 3 % */
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[key[i] >> 4];
        hex[2 * i + 1] = digits[key[i] & 15];
    }
    hex[32] = '\0';
}

static mcl_status entry_path(const mcl_feature_cache *cache, const char *hex, char *path, size_t cap)
{
    int n = snprintf(path, cap, "%s/%.2s/%s" ENTRY_SUFFIX, cache->dir, hex, hex);
    if (n < 0 || (size_t)n >= cap) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "cache path under %s is too long", cache->dir);
    return MCL_OK;
}

static mcl_status check_example(const mcl_msa_example *example, const char *op)
{
    if (!example || !example->paths) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: the example and its paths are required", op);
    if (example->path_count == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: example '%s' has no alignment files", op,
                        example->name ? example->name : "?");
    for (size_t i = 0; i < example->path_count; i++) {
        if (!example->paths[i]) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: path %zu is NULL", op, i);
        if (!msa_format_of(example->paths[i]))
            return mcl_fail(MCL_ERR_UNSUPPORTED, "%s: %s is not an alignment this library reads (.a3m, .sto, .stockholm)",
                            op, example->paths[i]);
    }
    return MCL_OK;
}

/* Maps every file of the example (files has path_count entries; unmapped on failure). */
static mcl_status map_example(const mcl_msa_example *example, mapped_file *files)
{
    for (size_t i = 0; i < example->path_count; i++) {
        mcl_status status = map_file(example->paths[i], &files[i]);
        if (status != MCL_OK) {
            while (i > 0) unmap_file(&files[--i]);
            return status;
        }
    }
    return MCL_OK;
}

mcl_status mcl_feature_cache_key(const mcl_msa_example *example, char hex[33])
{
    if (!hex) return mcl_fail(MCL_ERR_NULL_POINTER, "feature_cache_key: key is required");
    MCL_TRY(check_example(example, "feature_cache_key"));
    mapped_file *files = calloc(example->path_count, sizeof *files);
    if (!files) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu files", example->path_count);
    mcl_status status = map_example(example, files);
    if (status == MCL_OK) {
        uint8_t key[16];
        example_key(example, files, key);
        key_hex(key, hex);
        for (size_t i = 0; i < example->path_count; i++) unmap_file(&files[i]);
    }
    free(files);
    return status;
}

/* ---- reading and writing entries --------------------------------------------------------------- */

/* The features of the entry at path: MCL_OK, MCL_ERR_IO with *missing = 1 when there is none,
 * MCL_ERR_CORRUPT when it is unsound. */
static mcl_status read_entry(const char *path, const uint8_t key[16], mcl_msa_features **features, int *missing)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *missing = fd < 0 && errno == ENOENT;
    if (fd < 0) return mcl_fail(MCL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mapped_file map;
    mcl_status status = map_open_file(fd, path, &map);
    close(fd);
    MCL_TRY(status);
    mcl_msa_features *f = NULL;
    status = cache_entry_decode(map.data, map.size, key, 0, NULL, &f);
    if (status == MCL_OK && !f->owned) {
        f->map = (void *)map.data; /* the features read the mapping itself */
        f->map_bytes = map.size;
    } else {
        unmap_file(&map);
    }
    if (status == MCL_OK) *features = f;
    else mcl_fail_within(status, "%s", path);
    return status;
}

static mcl_status write_all(int fd, const void *bytes, size_t size, const char *path)
{
    for (const char *p = bytes; size > 0;) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return mcl_fail(MCL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        p += n;
        size -= (size_t)n;
    }
    return MCL_OK;
}

mcl_status cache_write_file(const char *dir, const char *name, const void *bytes, size_t size)
{
    char temp[1200], path[1200];
    if (make_dir(dir) != 0) return mcl_fail(MCL_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    snprintf(temp, sizeof temp, "%s/.%s.tmp.XXXXXX", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = mkstemp(temp);
    if (fd < 0) return mcl_fail(MCL_ERR_IO, "%s: cannot create a temporary file: %s", dir, strerror(errno));
    mcl_status status = write_all(fd, bytes, size, temp);
    if (close(fd) != 0 && status == MCL_OK) status = mcl_fail(MCL_ERR_IO, "%s: close failed: %s", temp, strerror(errno));
    if (status == MCL_OK && fchmodat(AT_FDCWD, temp, 0644, 0) != 0)
        status = mcl_fail(MCL_ERR_IO, "%s: chmod failed: %s", temp, strerror(errno));
    if (status == MCL_OK && rename(temp, path) != 0)
        status = mcl_fail(MCL_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    if (status != MCL_OK) unlink(temp);
    return status;
}

/* Writes the entry into its shard directory (two processes writing the same key write the same
 * bytes, so either rename may win). */
static mcl_status write_entry(const mcl_feature_cache *cache, const char *hex, const void *bytes, size_t size)
{
    char dir[1100], name[64];
    snprintf(dir, sizeof dir, "%s/%.2s", cache->dir, hex);
    snprintf(name, sizeof name, "%s" ENTRY_SUFFIX, hex);
    return cache_write_file(dir, name, bytes, size);
}

/* Parses the example, computes its features and stores them. A failure to store is an error
 * only when must_store (an ahead-of-time build); the loader goes on with the features. */
static mcl_status build_entry(mcl_feature_cache *cache, const mcl_msa_example *example, const mapped_file *files,
                              const uint8_t key[16], int must_store, mcl_msa_features **features)
{
    uint64_t start = now_ns();
    mcl_msa_features *f;
    MCL_TRY(msa_features_from_maps(example, files, &f));
    void *bytes = NULL;
    size_t size = 0;
    char hex[33];
    key_hex(key, hex);
    mcl_status status = cache_entry_encode(f, key, example->name, cache->level, &bytes, &size);
    if (status == MCL_OK) status = write_entry(cache, hex, bytes, size);
    free(bytes);
    if (status != MCL_OK && !must_store) {
        mcl_log(MCL_LOG_WARN, "feature cache: entry %s not stored: %s", hex, mcl_last_error());
        status = MCL_OK;
    }
    if (status == MCL_OK) *features = f;
    else mcl_msa_features_release(f);
    atomic_fetch_add(&cache->misses, 1);
    atomic_fetch_add(&cache->build_ns, now_ns() - start);
    return status;
}

/* The entry of `key` into *features; a corrupt one is reported, counted and deleted. *rebuild
 * says whether building it is the way on (missing or corrupt), else the status is final. */
static mcl_status read_or_discard(mcl_feature_cache *cache, const uint8_t key[16], mcl_msa_features **features,
                                  int *rebuild)
{
    char hex[33], path[1200];
    key_hex(key, hex);
    *rebuild = 0;
    MCL_TRY(entry_path(cache, hex, path, sizeof path));
    int missing = 0;
    mcl_status status = read_entry(path, key, features, &missing);
    if (status == MCL_ERR_CORRUPT) {
        mcl_log(MCL_LOG_WARN, "feature cache: %s; deleting and rebuilding it", mcl_last_error());
        atomic_fetch_add(&cache->corrupt, 1);
        unlink(path);
    }
    *rebuild = missing || status == MCL_ERR_CORRUPT;
    return status;
}

static void count_hit(mcl_feature_cache *cache, uint64_t start)
{
    atomic_fetch_add(&cache->hits, 1);
    atomic_fetch_add(&cache->read_ns, now_ns() - start);
}

/* The entry whose key the index holds for the inputs as they are: 0 when there is no such
 * record or entry (the caller then reads and hashes the inputs, which decides). */
static int read_indexed(mcl_feature_cache *cache, const mcl_msa_example *example, uint64_t start,
                        mcl_msa_features **features)
{
    uint8_t key[16];
    int rebuild;
    if (!cache->key_index || !key_index_lookup(cache->dir, example, key) ||
        read_or_discard(cache, key, features, &rebuild) != MCL_OK)
        return 0;
    atomic_fetch_add(&cache->indexed, 1);
    count_hit(cache, start);
    return 1;
}

/* The entry of the mapped inputs' key, built when missing or corrupt; the key goes to the index. */
static mcl_status read_hashed(mcl_feature_cache *cache, const mcl_msa_example *example, const mapped_file *files,
                              int64_t opened_ns, uint64_t start, int must_store, mcl_msa_features **features, int *built)
{
    uint8_t key[16];
    example_key(example, files, key);
    int rebuild;
    mcl_status status = read_or_discard(cache, key, features, &rebuild);
    if (status == MCL_OK) count_hit(cache, start);
    if (rebuild) {
        status = build_entry(cache, example, files, key, must_store, features);
        *built = status == MCL_OK;
    }
    if (status == MCL_OK && cache->key_index) key_index_record(cache->dir, example, files, opened_ns, key);
    return status;
}

mcl_status cache_get_or_build(mcl_feature_cache *cache, const mcl_msa_example *example, int must_store,
                              mcl_msa_features **features, int *built)
{
    uint64_t start = now_ns();
    *built = 0;
    if (read_indexed(cache, example, start, features)) return MCL_OK;
    mapped_file *files = calloc(example->path_count, sizeof *files);
    if (!files) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu files", example->path_count);
    int64_t opened_ns = clock_ns(CLOCK_REALTIME); /* before the inputs' identities are taken */
    mcl_status status = map_example(example, files);
    if (status == MCL_OK) {
        status = read_hashed(cache, example, files, opened_ns, start, must_store, features, built);
        for (size_t i = 0; i < example->path_count; i++) unmap_file(&files[i]);
    }
    free(files);
    return status;
}

mcl_status mcl_feature_cache_get(mcl_feature_cache *cache, const mcl_msa_example *example, mcl_msa_features **features)
{
    if (!cache || !features) return mcl_fail(MCL_ERR_NULL_POINTER, "feature_cache_get: cache and features are required");
    *features = NULL;
    MCL_TRY(check_example(example, "feature_cache_get"));
    int built;
    return cache_get_or_build(cache, example, 0, features, &built);
}

void mcl_feature_cache_get_stats(mcl_feature_cache *cache, mcl_feature_cache_stats *stats)
{
    *stats = (mcl_feature_cache_stats){0};
    if (!cache) return;
    stats->hits = atomic_load(&cache->hits);
    stats->misses = atomic_load(&cache->misses);
    stats->corrupt = atomic_load(&cache->corrupt);
    stats->indexed = atomic_load(&cache->indexed);
    stats->read_seconds = (double)atomic_load(&cache->read_ns) * 1e-9;
    stats->build_seconds = (double)atomic_load(&cache->build_ns) * 1e-9;
}

/* ---- walking and removing entries --------------------------------------------------------------- */

static int is_key(const char *s)
{
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[32] == '\0' || strcmp(s + 32, ENTRY_SUFFIX) == 0;
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The keys of every entry file, sorted (malloc'd array of malloc'd strings). */
static mcl_status list_keys(const mcl_feature_cache *cache, char ***keys_out, size_t *count_out)
{
    char **keys = NULL;
    size_t count = 0, capacity = 0;
    mcl_status status = MCL_OK;
    for (int shard = 0; shard < 256 && status == MCL_OK; shard++) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/%02x", cache->dir, shard);
        DIR *d = opendir(dir);
        if (!d) continue;
        for (struct dirent *e; status == MCL_OK && (e = readdir(d));) {
            if (!is_key(e->d_name) || strncmp(e->d_name, dir + strlen(dir) - 2, 2) != 0) continue;
            if (count == capacity) {
                capacity = capacity ? capacity * 2 : 256;
                char **grown = realloc(keys, capacity * sizeof *keys);
                if (!grown) {
                    status = mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu keys", capacity);
                    break;
                }
                keys = grown;
            }
            keys[count] = strndup(e->d_name, 32);
            if (!keys[count]) status = mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for a key");
            else count++;
        }
        closedir(d);
    }
    if (status == MCL_OK && count) qsort(keys, count, sizeof *keys, compare_strings);
    *keys_out = keys;
    *count_out = count;
    return status;
}

static void inspect_entry(const char *path, int full, mcl_cache_entry_info *info)
{
    uint8_t key[16];
    for (int i = 0; i < 16; i++) sscanf(info->key + 2 * i, "%2hhx", &key[i]);
    mapped_file map;
    info->check = map_file(path, &map);
    if (info->check == MCL_OK) {
        info->check = cache_entry_decode(map.data, map.size, key, full, info, NULL);
        info->file_bytes = map.size;
        unmap_file(&map);
    }
    if (info->check != MCL_OK) snprintf(info->problem, sizeof info->problem, "%s", mcl_last_error());
}

mcl_status mcl_feature_cache_walk(mcl_feature_cache *cache, int full, mcl_cache_visit visit, void *user)
{
    if (!cache || !visit) return mcl_fail(MCL_ERR_NULL_POINTER, "feature_cache_walk: cache and visit are required");
    char **keys;
    size_t count;
    mcl_status status = list_keys(cache, &keys, &count);
    mcl_cache_entry_info *info = malloc(sizeof *info);
    if (!info && status == MCL_OK) status = mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for an entry's description");
    for (size_t i = 0; i < count && status == MCL_OK; i++) {
        *info = (mcl_cache_entry_info){0};
        memcpy(info->key, keys[i], 33);
        status = entry_path(cache, info->key, info->path, sizeof info->path);
        if (status != MCL_OK) break;
        inspect_entry(info->path, full, info);
        if (visit(info, user)) break;
    }
    for (size_t i = 0; i < count; i++) free(keys[i]);
    free(keys);
    free(info);
    return status;
}

mcl_status mcl_feature_cache_remove(mcl_feature_cache *cache, const char *key)
{
    if (!cache || !key) return mcl_fail(MCL_ERR_NULL_POINTER, "feature_cache_remove: cache and key are required");
    if (strlen(key) != 32 || !is_key(key))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "feature_cache_remove: '%.40s' is not a 32-hex-digit key", key);
    char path[1200];
    MCL_TRY(entry_path(cache, key, path, sizeof path));
    if (unlink(path) != 0) return mcl_fail(MCL_ERR_IO, "feature_cache_remove: %s: %s", path, strerror(errno));
    return MCL_OK;
}
