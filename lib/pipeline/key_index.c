/* An example's content key, and the key index: the content key an example's inputs had when they
 * were last read, found again from what stat says of them, so that a read of an unchanged chain
 * need not read and hash its alignments (git's index does the same for the files of a work tree).
 *
 * A record is a file <cache>/index/<1 hex>/<32 hex>: the name is the XXH3-128 hash of the
 * feature version and, per input in order, its path and its identity (device, inode, size,
 * mtime and ctime in nanoseconds); the record holds that hash again, the content key and a
 * checksum. A record is never changed: it is written under a temporary name and renamed, so
 * concurrent writers (threads, processes, machines sharing the directory) replace one another's
 * identical bytes, and a reader sees a whole record or none.
 *
 * What it can tell. Any change to an input through the file system moves its ctime (and
 * mtime, and usually the size), which no user can set back: the identity changes, the record is
 * not found, and the inputs are read and hashed again. A replaced file has another inode or
 * ctime. So a stale record is never used, and an unsound one (bad checksum, cut short, of
 * another version or name) is ignored: each costs a re-hash, never a wrong entry.
 *
 * What it cannot tell. The file system stamps times from a clock that moves in ticks (the
 * kernel's coarse clock, 1 to 10 ms; some file systems keep whole seconds, FAT two): a change
 * within the tick of the recorded ctime would leave the identity as it was. Inputs are therefore
 * recorded only when their ctime is older than the moment their reading began by a margin that
 * covers the tick (INDEX_SETTLE_NS, or INDEX_COARSE_SETTLE_NS for a ctime of whole seconds): a
 * later change then gets a later ctime. This assumes the clock that stamps the files (another
 * machine's, on a network file system) is within that margin of this machine's, that nobody sets
 * the system clock back or writes the disk under the file system, and that the file system moves
 * ctime on every change (Linux defers it for writes through a shared writable mapping until they
 * are written back; some FUSE file systems report what they like). MEGACL_KEY_INDEX=0 turns the
 * index off where that does not hold. A record is as trusted as the entries themselves: a
 * well-formed record written on purpose with a wrong key is not detected, as a well-formed entry
 * with wrong features would not be. Records of inputs that changed since stay behind, never
 * matched again; removing <cache>/index at any time costs one re-hash per chain. */
#include "pipeline.h"

#include "runtime/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL /* header-only: no link dependency */
#include <xxhash.h>

#define INDEX_SETTLE_NS 100000000ll         /* 100 ms: ten of the coarsest kernel ticks */
#define INDEX_COARSE_SETTLE_NS 2000000000ll /* 2 s: FAT's whole-seconds granularity */
#define INDEX_DIR "index"

enum { INDEX_RECORD_FORMAT = 1, INDEX_MAX_FILES = 16 /* chains have a few alignments; more go unindexed */ };
static const char index_magic[8] = "MCLKIDX";

typedef struct index_record {
    char magic[8];
    uint32_t format, feature_version;
    uint8_t identity[16]; /* the hash that names the record */
    uint8_t key[16];      /* the inputs' content key */
    uint64_t checksum;    /* XXH3-64 of the record up to here */
} index_record;

_Static_assert(sizeof(index_record) == KEY_INDEX_RECORD_BYTES, "records are what readers expect");
_Static_assert(sizeof(file_identity) == 40, "identities are hashed as bytes: no padding");

/* Starts the XXH3-128 of an example's files: a tag saying what it names, the feature version and
 * the number of files (each file then adds its size or length first, so that no two lists of
 * files give the same byte stream). */
static void begin_example_hash(XXH3_state_t *state, const char *tag, size_t tag_bytes, size_t file_count)
{
    XXH3_INITSTATE(state);
    XXH3_128bits_reset(state);
    uint64_t header[2] = {MCL_MSA_FEATURE_VERSION, file_count};
    XXH3_128bits_update(state, tag, tag_bytes);
    XXH3_128bits_update(state, header, sizeof header);
}

/* The hash in its canonical bytes (the same on every byte order). */
static void finish_example_hash(const XXH3_state_t *state, uint8_t hash[16])
{
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
    memcpy(hash, canonical.digest, 16);
}

void example_key(const mcl_msa_example *example, const mapped_file *files, uint8_t key[16])
{
    static const char tag[] = "megacl msa features";
    XXH3_state_t state;
    begin_example_hash(&state, tag, sizeof tag, example->path_count);
    for (size_t i = 0; i < example->path_count; i++) {
        uint64_t file_header[2] = {(uint64_t)msa_format_of(example->paths[i]), files[i].size};
        XXH3_128bits_update(&state, file_header, sizeof file_header);
        if (files[i].size) XXH3_128bits_update(&state, files[i].data, files[i].size);
    }
    finish_example_hash(&state, key);
}

/* The hash that names the record of these inputs with these identities. */
static void identity_hash(const mcl_msa_example *example, const file_identity *identities, uint8_t hash[16])
{
    static const char tag[] = "megacl key index";
    XXH3_state_t state;
    begin_example_hash(&state, tag, sizeof tag, example->path_count);
    for (size_t i = 0; i < example->path_count; i++) {
        uint64_t path_bytes = strlen(example->paths[i]);
        XXH3_128bits_update(&state, &path_bytes, sizeof path_bytes);
        XXH3_128bits_update(&state, example->paths[i], path_bytes);
        XXH3_128bits_update(&state, &identities[i], sizeof identities[i]);
    }
    finish_example_hash(&state, hash);
}

/* <cache>/index/<1 hex>, and the record's name in it. A record is created per chain, and making
 * a directory costs as much as a file (0.35 to 0.8 ms each on the loaded ext4 measured here):
 * 16 directories are made once even for a small cache, and hold 62 500 records each at a
 * million chains, which hashed directories (ext4, XFS) look up at once. */
static int record_place(const char *cache_dir, const uint8_t identity[16], char *dir, size_t dir_cap, char name[33])
{
    key_hex(identity, name);
    int n = snprintf(dir, dir_cap, "%s/" INDEX_DIR "/%.1s", cache_dir, name);
    return n > 0 && (size_t)n < dir_cap;
}

int key_index_decode(const void *bytes, size_t size, const uint8_t identity[16], uint8_t key[16])
{
    index_record r;
    if (size != sizeof r) return 0;
    memcpy(&r, bytes, sizeof r);
    int sound = memcmp(r.magic, index_magic, sizeof r.magic) == 0 && r.format == INDEX_RECORD_FORMAT &&
                r.feature_version == MCL_MSA_FEATURE_VERSION && memcmp(r.identity, identity, 16) == 0 &&
                r.checksum == XXH3_64bits(&r, offsetof(index_record, checksum));
    if (sound) memcpy(key, r.key, 16);
    return sound;
}

void key_index_encode(const uint8_t identity[16], const uint8_t key[16], void *bytes)
{
    index_record r = {.format = INDEX_RECORD_FORMAT, .feature_version = MCL_MSA_FEATURE_VERSION};
    memcpy(r.magic, index_magic, sizeof r.magic);
    memcpy(r.identity, identity, 16);
    memcpy(r.key, key, 16);
    r.checksum = XXH3_64bits(&r, offsetof(index_record, checksum));
    memcpy(bytes, &r, sizeof r);
}

/* The record's bytes, up to one more than a record holds (so a longer file is seen as such). */
static ssize_t read_record(const char *path, unsigned char *bytes, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n;
    do n = read(fd, bytes, cap);
    while (n < 0 && errno == EINTR);
    close(fd);
    return n;
}

int key_index_lookup(const char *cache_dir, const mcl_msa_example *example, uint8_t key[16])
{
    file_identity identities[INDEX_MAX_FILES];
    if (example->path_count > INDEX_MAX_FILES) return 0;
    for (size_t i = 0; i < example->path_count; i++) {
        struct stat st;
        if (stat(example->paths[i], &st) != 0 || !S_ISREG(st.st_mode)) return 0;
        file_identity_of(&st, &identities[i]);
    }
    uint8_t identity[16];
    identity_hash(example, identities, identity);
    char dir[1100], name[33], path[1200];
    if (!record_place(cache_dir, identity, dir, sizeof dir, name)) return 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char bytes[KEY_INDEX_RECORD_BYTES + 1];
    ssize_t n = read_record(path, bytes, sizeof bytes);
    return n > 0 && key_index_decode(bytes, (size_t)n, identity, key);
}

/* Whether a change after `read_started_ns` could leave the file's ctime as it was. */
static int changed_too_recently(const file_identity *identity, int64_t read_started_ns)
{
    int64_t settle = identity->ctime_ns % 1000000000 == 0 ? INDEX_COARSE_SETTLE_NS : INDEX_SETTLE_NS;
    return identity->ctime_ns > read_started_ns - settle;
}

void key_index_record(const char *cache_dir, const mcl_msa_example *example, const mapped_file *files,
                      int64_t read_started_ns, const uint8_t key[16])
{
    file_identity identities[INDEX_MAX_FILES];
    if (example->path_count > INDEX_MAX_FILES) return;
    for (size_t i = 0; i < example->path_count; i++) {
        if (changed_too_recently(&files[i].identity, read_started_ns)) return; /* read again next time */
        identities[i] = files[i].identity;
    }
    uint8_t identity[16];
    identity_hash(example, identities, identity);
    char root[1100], dir[1100], name[33];
    unsigned char bytes[KEY_INDEX_RECORD_BYTES];
    if (!record_place(cache_dir, identity, dir, sizeof dir, name)) return;
    snprintf(root, sizeof root, "%s/" INDEX_DIR, cache_dir);
    key_index_encode(identity, key, bytes);
    mcl_status status = make_dir(root) == 0 ? cache_write_file(dir, name, bytes, sizeof bytes)
                                            : mcl_fail(MCL_ERR_IO, "%s: cannot create: %s", root, strerror(errno));
    if (status != MCL_OK) /* a read-only cache, say: its inputs are hashed on every read */
        mcl_log(MCL_LOG_DEBUG, "feature cache: no key index record: %s", mcl_last_error());
}
