/* The on-disk feature cache: round trips (raw and compressed), content addressing, corrupt and
 * truncated entries, entries of an older format, the key index (unchanged inputs found without
 * reading them, every change noticed, unsound records ignored), the checksum's vector code, two
 * processes writing the same entry at once, the ahead-of-time build with shards and failures,
 * and nothing stored for malformed inputs. */
#include "common.h"
#include "files.h"
#include "pipeline/pipeline.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

static const char *real_paths[2];

static mcl_msa_example real_example(void)
{
    real_paths[0] = test_msa_path("bfd_uniclust_hits.a3m");
    real_paths[1] = test_msa_path("mgnify_hits.sto");
    return (mcl_msa_example){"real", real_paths, 2};
}

static void expect_same_features(const mcl_msa_features *x, const mcl_msa_features *y)
{
    mcl_msa_arrays a, b;
    mcl_msa_features_arrays(x, &a);
    mcl_msa_features_arrays(y, &b);
    cr_assert_eq(a.depth, b.depth);
    cr_assert_eq(a.length, b.length);
    size_t cells = a.depth * a.length;
    cr_expect_eq(memcmp(a.tokens, b.tokens, cells), 0, "tokens differ");
    cr_assert_eq(a.deletion_nonzero, b.deletion_nonzero);
    cr_expect_eq(memcmp(a.deletion_row_start, b.deletion_row_start, (a.depth + 1) * 8), 0, "deletion rows differ");
    cr_expect_eq(memcmp(a.deletion_columns, b.deletion_columns, a.deletion_nonzero * 4), 0, "deletion columns differ");
    cr_expect_eq(memcmp(a.deletion_counts, b.deletion_counts, a.deletion_nonzero * 4), 0, "deletion counts differ");
    cr_expect_eq(memcmp(a.profile, b.profile, a.length * MCL_MSA_CLASSES * 4), 0, "profiles differ");
    cr_expect_eq(memcmp(a.deletion_mean, b.deletion_mean, a.length * 4), 0, "deletion means differ");
}

static mcl_feature_cache_stats stats_of(mcl_feature_cache *cache)
{
    mcl_feature_cache_stats s;
    mcl_feature_cache_get_stats(cache, &s);
    return s;
}

/* The path of the example's entry in the cache directory. */
static void entry_file(const char *dir, const mcl_msa_example *example, char *path, size_t cap)
{
    char key[33];
    assert_ok(mcl_feature_cache_key(example, key));
    snprintf(path, cap, "%s/%.2s/%s.msaf", dir, key, key);
}

/* A walk's visit that keeps the last entry's description. */
static int keep_info(const mcl_cache_entry_info *info, void *user)
{
    *(mcl_cache_entry_info *)user = *info;
    return 0;
}

static void round_trip(int level)
{
    char *dir = test_temp_dir();
    mcl_feature_cache *cache;
    assert_ok(mcl_feature_cache_open(dir, level, &cache));
    mcl_msa_example example = real_example();
    mcl_msa_features *parsed, *built, *read;
    assert_ok(mcl_msa_features_from_files(example.paths, example.path_count, &parsed));
    assert_ok(mcl_feature_cache_get(cache, &example, &built));
    assert_ok(mcl_feature_cache_get(cache, &example, &read));
    expect_same_features(parsed, built);
    expect_same_features(parsed, read);
    mcl_feature_cache_stats s = stats_of(cache);
    cr_expect_eq(s.misses, 1);
    cr_expect_eq(s.hits, 1);
    cr_expect_eq(test_count_files(dir, ".msaf"), 1);
    cr_expect_eq(test_count_files(dir, ".tmp"), 0);
    mcl_msa_features_release(parsed);
    mcl_msa_features_release(built);
    mcl_msa_features_release(read);
    mcl_feature_cache_close(cache);
    test_remove_tree(dir);
}

Test(feature_cache, round_trip_raw) { round_trip(0); }
Test(feature_cache, round_trip_zstd) { round_trip(3); }

Test(feature_cache, key_is_the_contents_not_the_path)
{
    char *dir = test_temp_dir();
    char *a = test_write_text(dir, "a.a3m", ">q\nACDE\n>x\nAC-E\n");
    char *b = test_write_text(dir, "b.a3m", ">q\nACDE\n>x\nAC-E\n");
    char *c = test_write_text(dir, "c.a3m", ">q\nACDE\n>x\nA--E\n");
    char *sto = test_write_text(dir, "c.sto", "# STOCKHOLM 1.0\nq ACDE\n//\n");
    char ka[33], kb[33], kc[33], kac[33], kca[33];
    assert_ok(mcl_feature_cache_key(&(mcl_msa_example){"a", (const char *const *)&a, 1}, ka));
    assert_ok(mcl_feature_cache_key(&(mcl_msa_example){"b", (const char *const *)&b, 1}, kb));
    assert_ok(mcl_feature_cache_key(&(mcl_msa_example){"c", (const char *const *)&c, 1}, kc));
    const char *ac[2] = {a, sto}, *ca[2] = {sto, a};
    assert_ok(mcl_feature_cache_key(&(mcl_msa_example){"ac", ac, 2}, kac));
    assert_ok(mcl_feature_cache_key(&(mcl_msa_example){"ca", ca, 2}, kca));
    cr_expect_str_eq(ka, kb);
    cr_expect_str_neq(ka, kc);
    cr_expect_str_neq(kac, kca, "the order of the files is part of the key");
    cr_expect_eq(strlen(ka), 32);
    free(a);
    free(b);
    free(c);
    free(sto);
    test_remove_tree(dir);
}

/* A cache in dir (zstd at `level`, 0 for none) that holds the example's entry. */
static mcl_feature_cache *cache_holding(const char *dir, int level, const mcl_msa_example *example)
{
    mcl_feature_cache *cache;
    assert_ok(mcl_feature_cache_open(dir, level, &cache));
    mcl_msa_features *f;
    assert_ok(mcl_feature_cache_get(cache, example, &f));
    mcl_msa_features_release(f);
    return cache;
}

/* Damages the entry with `damage`, then expects: walk reports it corrupt, get rebuilds it
 * (counted), and afterwards the entry is sound again. */
static void expect_rebuilt(void (*damage)(const char *path))
{
    char *dir = test_temp_dir();
    mcl_msa_example example = real_example();
    mcl_feature_cache *cache = cache_holding(dir, 0, &example);
    char path[4096];
    entry_file(dir, &example, path, sizeof path);
    damage(path);

    mcl_cache_entry_info seen = {0};
    assert_ok(mcl_feature_cache_walk(cache, 1, keep_info, &seen));
    cr_expect_eq(seen.check, MCL_ERR_CORRUPT, "walk: %s (%s)", mcl_status_name(seen.check), seen.problem);

    mcl_msa_features *f, *parsed;
    assert_ok(mcl_feature_cache_get(cache, &example, &f));
    assert_ok(mcl_msa_features_from_files(example.paths, example.path_count, &parsed));
    expect_same_features(parsed, f);
    cr_expect_eq(stats_of(cache).corrupt, 1);
    cr_expect_eq(stats_of(cache).misses, 2);
    assert_ok(mcl_feature_cache_walk(cache, 1, keep_info, &seen));
    cr_expect_eq(seen.check, MCL_OK, "after the rebuild: %s", seen.problem);
    mcl_msa_features_release(parsed);
    mcl_msa_features_release(f);
    mcl_feature_cache_close(cache);
    test_remove_tree(dir);
}

static void flip_a_payload_byte(const char *path)
{
    int fd = open(path, O_RDWR);
    cr_assert(fd >= 0);
    unsigned char byte;
    cr_assert_eq(pread(fd, &byte, 1, 5000), 1);
    byte ^= 0x10;
    cr_assert_eq(pwrite(fd, &byte, 1, 5000), 1);
    close(fd);
}

static void flip_a_header_byte(const char *path)
{
    int fd = open(path, O_RDWR);
    cr_assert(fd >= 0);
    unsigned char byte = 0x7f;
    cr_assert_eq(pwrite(fd, &byte, 1, 32), 1); /* the depth */
    close(fd);
}

static void truncate_to_half(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
}

static void truncate_into_the_header(const char *path) { cr_assert_eq(truncate(path, 100), 0); }

Test(feature_cache, corrupt_payload_is_detected_deleted_and_rebuilt) { expect_rebuilt(flip_a_payload_byte); }
Test(feature_cache, corrupt_header_is_detected_deleted_and_rebuilt) { expect_rebuilt(flip_a_header_byte); }
Test(feature_cache, truncated_entry_is_detected_deleted_and_rebuilt) { expect_rebuilt(truncate_to_half); }
Test(feature_cache, entry_cut_inside_its_header_is_rebuilt) { expect_rebuilt(truncate_into_the_header); }

Test(feature_cache, entry_of_an_older_format_is_refused_and_rebuilt)
{
    /* what format 1 wrote for this example (tests/data/cache/NOTICE), where format 2 looks for it:
     * the key is the same, since it hashes the inputs and the feature version only */
    char *dir = test_temp_dir(), entry[4096], fixture[4096];
    const char *path = test_msa_path("2q2k_A_bfd_uniclust_hits.a3m");
    mcl_msa_example example = {"2q2k", &path, 1};
    entry_file(dir, &example, entry, sizeof entry);
    snprintf(fixture, sizeof fixture, "%s/cache/format1_2q2k.msaf", MEGACL_TEST_DATA_DIR);
    struct stat st;
    cr_assert_eq(stat(fixture, &st), 0);
    char *old = test_read_file(fixture), *shard = strdup(entry);
    *strrchr(shard, '/') = '\0';
    cr_assert_eq(mkdir(shard, 0755), 0);
    free(test_write_bytes(shard, strrchr(entry, '/') + 1, old, (size_t)st.st_size));

    mcl_feature_cache *cache;
    assert_ok(mcl_feature_cache_open(dir, 0, &cache));
    mcl_cache_entry_info seen = {0};
    assert_ok(mcl_feature_cache_walk(cache, 0, keep_info, &seen));
    cr_expect_eq(seen.check, MCL_ERR_CORRUPT);
    cr_expect(strstr(seen.problem, "entry format 1, this library reads 2"), "problem: %s", seen.problem);
    mcl_msa_features *f, *parsed;
    assert_ok(mcl_feature_cache_get(cache, &example, &f));
    assert_ok(mcl_msa_features_from_files(example.paths, 1, &parsed));
    expect_same_features(parsed, f);
    cr_expect_eq(stats_of(cache).corrupt, 1);
    cr_expect_eq(stats_of(cache).hits, 0);
    assert_ok(mcl_feature_cache_walk(cache, 1, keep_info, &seen));
    cr_expect_eq(seen.check, MCL_OK, "after the rebuild: %s", seen.problem);
    cr_expect_eq(seen.format_version, 2);
    mcl_msa_features_release(parsed);
    mcl_msa_features_release(f);
    mcl_feature_cache_close(cache);
    free(old);
    free(shard);
    test_remove_tree(dir);
}

/* ---- the key index ------------------------------------------------------------------------------ */

/* The features of the example from the cache, expected equal to a fresh parse of its files. */
static void expect_cache_gives_parse(mcl_feature_cache *cache, const mcl_msa_example *example)
{
    mcl_msa_features *f, *parsed;
    assert_ok(mcl_feature_cache_get(cache, example, &f));
    assert_ok(mcl_msa_features_from_files(example->paths, example->path_count, &parsed));
    expect_same_features(parsed, f);
    mcl_msa_features_release(parsed);
    mcl_msa_features_release(f);
}

/* Waits until a file written now is old enough for the index to record it (key_index.c: 100 ms,
 * 2 s where the file system keeps whole seconds). */
static void let_settle(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    struct timespec wait = st.st_ctim.tv_nsec == 0 ? (struct timespec){2, 100000000} : (struct timespec){0, 150000000};
    nanosleep(&wait, NULL);
}

static size_t index_records(const char *dir)
{
    char index[4096];
    snprintf(index, sizeof index, "%s/index", dir);
    return test_count_files(index, NULL);
}

Test(feature_cache, key_index_finds_unchanged_inputs_without_reading_them)
{
    char *dir = test_temp_dir();
    mcl_msa_example example = real_example();
    mcl_feature_cache *cache = cache_holding(dir, 0, &example); /* built: the key is recorded */
    cr_expect_eq(index_records(dir), 1);
    expect_cache_gives_parse(cache, &example);
    mcl_feature_cache_stats s = stats_of(cache);
    cr_expect_eq(s.hits, 1);
    cr_expect_eq(s.indexed, 1, "the second read hashed the inputs again");
    mcl_feature_cache_close(cache);
    test_remove_tree(dir);
}

Test(feature_cache, key_index_can_be_turned_off)
{
    char *dir = test_temp_dir();
    mcl_msa_example example = real_example();
    cr_assert_eq(setenv("MEGACL_KEY_INDEX", "0", 1), 0);
    mcl_feature_cache *cache = cache_holding(dir, 0, &example);
    expect_cache_gives_parse(cache, &example);
    cr_expect_eq(stats_of(cache).hits, 1);
    cr_expect_eq(stats_of(cache).indexed, 0);
    cr_expect_eq(index_records(dir), 0);
    mcl_feature_cache_close(cache);
    cr_assert_eq(unsetenv("MEGACL_KEY_INDEX"), 0);
    test_remove_tree(dir);
}

/* Rewrites the file in place with other bytes of the same length and puts its mtime back. */
static void rewrite_keeping_size_and_mtime(const char *path, const char *text)
{
    struct stat before, after;
    cr_assert_eq(stat(path, &before), 0);
    int fd = open(path, O_WRONLY);
    cr_assert(fd >= 0);
    cr_assert_eq(pwrite(fd, text, strlen(text), 0), (ssize_t)strlen(text));
    cr_assert_eq(close(fd), 0);
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    cr_assert_eq(utimensat(AT_FDCWD, path, times, 0), 0);
    cr_assert_eq(stat(path, &after), 0);
    cr_assert(after.st_size == before.st_size && after.st_ino == before.st_ino &&
              after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
}

Test(feature_cache, key_index_notices_a_change_that_keeps_size_mtime_and_inode)
{
    char *dir = test_temp_dir(), *inputs = test_temp_dir();
    char *path = test_write_text(inputs, "hits.a3m", ">q\nMKVL\n>x\nMaKVL\n");
    mcl_msa_example example = {"changed", (const char *const *)&path, 1};
    mcl_feature_cache *cache;
    assert_ok(mcl_feature_cache_open(dir, 0, &cache));
    expect_cache_gives_parse(cache, &example); /* built, but written just now: not recorded */
    cr_expect_eq(index_records(dir), 0, "a file changed within the settling time was recorded");
    let_settle(path);
    expect_cache_gives_parse(cache, &example); /* hashed, found, recorded */
    cr_expect_eq(index_records(dir), 1);
    expect_cache_gives_parse(cache, &example); /* from the index */
    cr_expect_eq(stats_of(cache).indexed, 1);

    /* only the ctime tells this change (which no user can set back): the index must see it */
    rewrite_keeping_size_and_mtime(path, ">q\nMKVL\n>x\nMaKWL\n");
    expect_cache_gives_parse(cache, &example);
    mcl_feature_cache_stats s = stats_of(cache);
    cr_expect_eq(s.indexed, 1, "the stale record was used");
    cr_expect_eq(s.misses, 2, "the changed input was not parsed again");
    cr_expect_eq(test_count_files(dir, ".msaf"), 2);
    mcl_feature_cache_close(cache);
    free(path);
    test_remove_tree(dir);
    test_remove_tree(inputs);
}

/* The example's one index record (its path in `record`). */
static void only_record(const char *dir, char record[1600])
{
    char index[1024];
    snprintf(index, sizeof index, "%s/index", dir);
    cr_assert_eq(test_count_files(index, NULL), 1);
    DIR *top = opendir(index);
    cr_assert_not_null(top);
    for (struct dirent *e; (e = readdir(top));) {
        if (e->d_name[0] == '.') continue;
        char shard[1300];
        snprintf(shard, sizeof shard, "%s/%s", index, e->d_name);
        DIR *d = opendir(shard);
        for (struct dirent *f; d && (f = readdir(d));)
            if (f->d_name[0] != '.') snprintf(record, 1600, "%s/%s", shard, f->d_name);
        if (d) closedir(d);
    }
    closedir(top);
}

/* Damages the example's index record with `damage`, then expects the next read to hash the
 * inputs (nothing indexed), give the right features and leave a sound record again. */
static void expect_record_ignored(void (*damage)(const char *record, const char *dir))
{
    char *dir = test_temp_dir();
    mcl_msa_example example = real_example();
    mcl_feature_cache *cache = cache_holding(dir, 0, &example);
    char record[1600];
    only_record(dir, record);
    damage(record, dir);
    expect_cache_gives_parse(cache, &example);
    cr_expect_eq(stats_of(cache).indexed, 0, "an unsound record was used");
    cr_expect_eq(stats_of(cache).hits, 1);
    expect_cache_gives_parse(cache, &example);
    cr_expect_eq(stats_of(cache).indexed, 1, "the record was not written again");
    mcl_feature_cache_close(cache);
    test_remove_tree(dir);
}

static void flip_each_record_byte(const char *record, const char *dir)
{
    (void)dir;
    unsigned char bytes[KEY_INDEX_RECORD_BYTES];
    FILE *f = fopen(record, "rb");
    cr_assert_eq(fread(bytes, 1, sizeof bytes, f), sizeof bytes);
    fclose(f);
    uint8_t identity[16], key[16];
    memcpy(identity, bytes + 16, 16); /* where a record holds its identity */
    cr_assert(key_index_decode(bytes, sizeof bytes, identity, key), "the record as written is unsound");
    for (size_t i = 0; i < sizeof bytes; i++) {
        bytes[i] ^= 0x04;
        cr_expect_not(key_index_decode(bytes, sizeof bytes, identity, key), "a flip at byte %zu went unseen", i);
        bytes[i] ^= 0x04;
    }
    cr_expect_not(key_index_decode(bytes, sizeof bytes - 1, identity, key));
    identity[3] ^= 1;
    cr_expect_not(key_index_decode(bytes, sizeof bytes, identity, key), "a record of another identity was taken");
    bytes[40] ^= 0x01; /* inside the key */
    f = fopen(record, "wb");
    cr_assert_eq(fwrite(bytes, 1, sizeof bytes, f), sizeof bytes);
    fclose(f);
}

static void truncate_record(const char *record, const char *dir)
{
    (void)dir;
    cr_assert_eq(truncate(record, 20), 0);
}

/* A sound record whose key has no entry (the entry was removed, say): the inputs decide. */
static void point_record_at_a_missing_entry(const char *record, const char *dir)
{
    unsigned char bytes[KEY_INDEX_RECORD_BYTES];
    FILE *f = fopen(record, "rb");
    cr_assert_eq(fread(bytes, 1, sizeof bytes, f), sizeof bytes);
    fclose(f);
    uint8_t key[16];
    memset(key, 0xab, sizeof key);
    key_index_encode(bytes + 16, key, bytes);
    f = fopen(record, "wb");
    cr_assert_eq(fwrite(bytes, 1, sizeof bytes, f), sizeof bytes);
    fclose(f);
    cr_assert_eq(test_count_files(dir, "abababab"), 0);
}

Test(feature_cache, corrupt_key_index_record_costs_a_rehash) { expect_record_ignored(flip_each_record_byte); }
Test(feature_cache, truncated_key_index_record_costs_a_rehash) { expect_record_ignored(truncate_record); }
Test(feature_cache, key_index_record_of_a_missing_entry_costs_a_rehash) { expect_record_ignored(point_record_at_a_missing_entry); }

Test(feature_cache, checksum_vector_code_gives_xxh3)
{
    enum { BYTES = 300000 };
    unsigned char *bytes = malloc(BYTES + 64);
    cr_assert_not_null(bytes);
    for (size_t i = 0; i < BYTES + 64; i++) bytes[i] = (unsigned char)(i * 2654435761u >> 13);
    const size_t sizes[] = {0, 1, 16, 17, 128, 129, 240, 241, 1024, 1025, 65536, 115000, BYTES};
    for (size_t i = 0; i < COUNT_OF(sizes); i++)
        for (size_t offset = 0; offset < 64; offset += 13) /* unaligned starts too */
            cr_expect_eq(entry_checksum(bytes + offset, sizes[i]), XXH3_64bits(bytes + offset, sizes[i]),
                         "%zu bytes from offset %zu", sizes[i], offset);
    free(bytes);
}

/* Builds the example's entry in a child process once the parent says go; exits 0 on success. */
static pid_t build_in_child(const char *dir, int go)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid > 0) return pid;
    char byte;
    if (read(go, &byte, 1) != 1) _exit(3);
    mcl_feature_cache *cache;
    mcl_msa_example example = real_example();
    mcl_msa_features *f;
    if (mcl_feature_cache_open(dir, 0, &cache) != MCL_OK) _exit(1);
    int ok = mcl_feature_cache_get(cache, &example, &f) == MCL_OK;
    mcl_msa_features_release(f);
    mcl_feature_cache_close(cache);
    _exit(ok ? 0 : 2);
}

Test(feature_cache, two_processes_build_the_same_entry_at_once)
{
    for (int round = 0; round < 5; round++) {
        char *dir = test_temp_dir();
        int go[2];
        cr_assert_eq(pipe(go), 0);
        pid_t a = build_in_child(dir, go[0]), b = build_in_child(dir, go[0]);
        cr_assert_eq(write(go[1], "ab", 2), 2); /* both start together */
        int status_a, status_b;
        cr_assert_eq(waitpid(a, &status_a, 0), a);
        cr_assert_eq(waitpid(b, &status_b, 0), b);
        close(go[0]);
        close(go[1]);
        cr_expect(WIFEXITED(status_a) && WEXITSTATUS(status_a) == 0, "first writer failed");
        cr_expect(WIFEXITED(status_b) && WEXITSTATUS(status_b) == 0, "second writer failed");
        cr_expect_eq(test_count_files(dir, ".msaf"), 1);
        cr_expect_eq(test_count_files(dir, ".tmp"), 0, "a temporary file was left behind");
        mcl_feature_cache *cache;
        assert_ok(mcl_feature_cache_open(dir, 0, &cache));
        mcl_cache_entry_info seen = {0};
        assert_ok(mcl_feature_cache_walk(cache, 1, keep_info, &seen));
        cr_expect_eq(seen.check, MCL_OK, "%s", seen.problem);
        cr_expect_eq(seen.depth, 1081);
        mcl_feature_cache_close(cache);
        test_remove_tree(dir);
    }
}

Test(feature_cache, malformed_inputs_store_nothing)
{
    char *dir = test_temp_dir(), *inputs = test_temp_dir();
    mcl_feature_cache *cache;
    assert_ok(mcl_feature_cache_open(dir, 0, &cache));
    char *bad[] = {test_write_text(inputs, "truncated.a3m", ">q\nACDE\n>x\nAC"),
                         test_write_text(inputs, "empty.sto", ""),
                         test_write_bytes(inputs, "binary.a3m", "\x00\x01\x02", 3)};
    for (size_t i = 0; i < COUNT_OF(bad); i++) {
        mcl_msa_features *f = NULL;
        mcl_status got = mcl_feature_cache_get(cache, &(mcl_msa_example){"bad", (const char *const *)&bad[i], 1}, &f);
        cr_expect_eq(got, MCL_ERR_PARSE, "%s: %s", bad[i], mcl_status_name(got));
        cr_expect(strstr(mcl_last_error(), bad[i]) != NULL, "'%s' does not name %s", mcl_last_error(), bad[i]);
        cr_expect_null(f);
        free(bad[i]);
    }
    cr_expect_eq(test_count_files(dir, NULL), 0, "a malformed input left a file in the cache");
    mcl_feature_cache_close(cache);
    test_remove_tree(dir);
    test_remove_tree(inputs);
}

/* ---- scanning and the ahead-of-time build ------------------------------------------------------ */

typedef struct build_log {
    size_t reports, failures;
    char first_failure[256];
} build_log;

static void log_report(const mcl_cache_build_progress *p, void *user)
{
    build_log *log = user;
    log->reports++;
    if (p->failed_example && log->failures++ == 0)
        snprintf(log->first_failure, sizeof log->first_failure, "%s", p->failed_message);
}

/* A directory of chains c00..c{n-1} (each an a3m and a sto), chain `bad` with a broken a3m. */
static char *chain_dir(size_t n, size_t bad)
{
    char *root = test_temp_dir();
    for (size_t i = 0; i < n; i++) {
        char chain[4096], a3m[64];
        snprintf(chain, sizeof chain, "%s/c%02zu", root, i);
        cr_assert_eq(mkdir(chain, 0755), 0);
        snprintf(a3m, sizeof a3m, ">q\nMKV\n>x%zu\nM%cV\n", i, "ACDEFGHIKLMNPQRSTVWY"[i % 20]);
        free(test_write_text(chain, "hits.a3m", i == bad ? ">q\nMKV\n>cut\nM" : a3m));
        free(test_write_text(chain, "more.sto", "# STOCKHOLM 1.0\nq MKV\nz -KV\n//\n"));
        free(test_write_text(chain, "notes.txt", "not an alignment"));
    }
    free(test_write_text(root, "single.a3m", ">q\nMKV\n"));
    return root;
}

Test(feature_cache, scan_finds_chain_directories_and_single_files)
{
    char *root = chain_dir(3, 99);
    mcl_msa_example *examples;
    size_t count;
    assert_ok(mcl_msa_examples_scan(root, &examples, &count));
    cr_assert_eq(count, 4);
    cr_expect_str_eq(examples[0].name, "c00");
    cr_expect_eq(examples[0].path_count, 2);
    cr_expect(strstr(examples[0].paths[0], "hits.a3m") && strstr(examples[0].paths[1], "more.sto"));
    cr_expect_str_eq(examples[3].name, "single.a3m");
    cr_expect_eq(examples[3].path_count, 1);
    mcl_msa_examples_free(examples, count);
    assert_status(mcl_msa_examples_scan("/nonexistent/megacl", &examples, &count), MCL_ERR_IO);
    test_remove_tree(root);
}

Test(feature_cache, build_in_shards_reports_failures_and_skips_present_entries)
{
    char *root = chain_dir(7, 4), *dir = test_temp_dir();
    mcl_msa_example *examples;
    size_t count;
    assert_ok(mcl_msa_examples_scan(root, &examples, &count));
    mcl_feature_cache *cache;
    assert_ok(mcl_feature_cache_open(dir, 0, &cache));
    build_log log = {0};
    mcl_cache_build_progress result;
    /* shard 0 of 2: examples 0, 2, 4 (broken), 6 */
    mcl_cache_build_desc desc = {.jobs = 2, .shard_index = 0, .shard_count = 2, .report = log_report, .user = &log};
    mcl_status got = mcl_feature_cache_build(cache, examples, count, &desc, &result);
    cr_expect_eq(got, MCL_ERR_PARSE, "%s", mcl_status_name(got));
    cr_expect(strstr(mcl_last_error(), "c04"), "'%s' names not the broken chain", mcl_last_error());
    cr_expect_eq(result.total, 4);
    cr_expect_eq(result.built, 3);
    cr_expect_eq(result.failed, 1);
    cr_expect_eq(log.failures, 1);
    cr_expect(strstr(log.first_failure, "hits.a3m"));
    cr_expect_geq(log.reports, 2);
    /* shard 1 of 2 and then everything: what is there is not built again */
    desc.shard_index = 1;
    assert_ok(mcl_feature_cache_build(cache, examples, count, &desc, &result));
    cr_expect_eq(result.total, 4);
    cr_expect_eq(result.built, 4);
    desc = (mcl_cache_build_desc){.jobs = 3};
    cr_expect_eq(mcl_feature_cache_build(cache, examples, count, &desc, &result), MCL_ERR_PARSE);
    cr_expect_eq(result.present, 7);
    cr_expect_eq(result.failed, 1);
    cr_expect_eq(test_count_files(dir, ".msaf"), 7);
    desc.shard_index = 2;
    desc.shard_count = 2;
    assert_status(mcl_feature_cache_build(cache, examples, count, &desc, &result), MCL_ERR_INVALID_ARGUMENT);
    mcl_msa_examples_free(examples, count);
    mcl_feature_cache_close(cache);
    test_remove_tree(root);
    test_remove_tree(dir);
}

Test(feature_cache, walk_lists_entries_and_remove_deletes_one)
{
    char *dir = test_temp_dir();
    mcl_msa_example example = real_example();
    mcl_feature_cache *cache = cache_holding(dir, 5, &example);
    mcl_cache_entry_info seen = {0};
    assert_ok(mcl_feature_cache_walk(cache, 0, keep_info, &seen));
    char key[33];
    assert_ok(mcl_feature_cache_key(&example, key));
    cr_expect_str_eq(seen.key, key);
    cr_expect_str_eq(seen.name, "real");
    cr_expect_eq(seen.depth, 1081);
    cr_expect_eq(seen.length, 73);
    cr_expect(seen.compressed);
    cr_expect_lt(seen.file_bytes, seen.array_bytes);
    assert_ok(mcl_feature_cache_remove(cache, key));
    cr_expect_eq(test_count_files(dir, ".msaf"), 0);
    assert_status(mcl_feature_cache_remove(cache, "../../etc/passwd"), MCL_ERR_INVALID_ARGUMENT);
    mcl_feature_cache *refused;
    assert_status(mcl_feature_cache_open(dir, 20, &refused), MCL_ERR_INVALID_ARGUMENT);
    mcl_feature_cache_close(cache);
    test_remove_tree(dir);
}
