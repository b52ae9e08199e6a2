/* On-disk program binary cache (see binary_cache.h). */
#include "binary_cache.h"

#include "error.h"
#include "files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL /* header-only: no link dependency */
#include <xxhash.h>

typedef struct binary_header {
    char magic[8]; /* "MCLBIN\0\0" */
    uint32_t format;
    uint32_t reserved;
    char key[32];
    uint64_t payload_bytes;
    uint64_t payload_checksum; /* XXH64 of the payload */
} binary_header;

static const char binary_magic[8] = "MCLBIN";

void mcl_cache_root(char *out, size_t cap)
{
    const char *dir = getenv("MEGACL_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (dir && *dir)
        snprintf(out, cap, "%s", dir);
    else if (xdg && *xdg)
        snprintf(out, cap, "%s/megacl", xdg);
    else
        snprintf(out, cap, "%s/.cache/megacl", home && *home ? home : "/tmp");
}

void mcl_binary_cache_configure(mcl_binary_cache_config *config, const mcl_device_info *info)
{
    const char *env = getenv("MEGACL_BINARY_CACHE");
    config->enabled = info->vendor == MCL_VENDOR_AMD;
    if (env && *env) config->enabled = strcmp(env, "0") != 0;
    config->dir[0] = '\0';
    if (!config->enabled) return;
    char root[900];
    mcl_cache_root(root, sizeof root);
    snprintf(config->dir, sizeof config->dir, "%s/binaries", root);
    if (mcl_make_dirs(config->dir) != 0) {
        mcl_log(MCL_LOG_WARN, "binary cache off: cannot create %s (%s)", config->dir,
                strerror(errno));
        config->enabled = 0;
        config->dir[0] = '\0';
    }
}

void mcl_binary_cache_key(const char *source, const char *options, const mcl_device_info *info,
                          char key[33])
{
    const char *parts[] = {MCL_VERSION_STRING,      source,
                           options,                 info->platform_name,
                           info->platform_version,  info->name,
                           info->device_version,    info->driver_version};
    XXH3_state_t *state = XXH3_createState();
    uint32_t format = MCL_BINARY_CACHE_FORMAT;
    XXH3_128bits_reset(state);
    XXH3_128bits_update(state, &format, sizeof format);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        /* the terminator separates parts, so ("ab","c") and ("a","bc") differ */
        XXH3_128bits_update(state, parts[i], strlen(parts[i]) + 1);
    }
    XXH128_hash_t hash = XXH3_128bits_digest(state);
    XXH3_freeState(state);
    snprintf(key, 33, "%016llx%016llx", (unsigned long long)hash.high64,
             (unsigned long long)hash.low64);
}

void mcl_binary_cache_path(const mcl_binary_cache_config *config, const char *key, char *out,
                           size_t cap)
{
    snprintf(out, cap, "%s/%s.bin", config->dir, key);
}

/* Reads and verifies an entry; returns the payload (malloc'd) or NULL. */
static unsigned char *read_entry(const char *path, const char *key, size_t *bytes)
{
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    binary_header header;
    unsigned char *payload = NULL;
    int ok = fread(&header, sizeof header, 1, file) == 1 &&
             memcmp(header.magic, binary_magic, sizeof binary_magic) == 0 &&
             header.format == MCL_BINARY_CACHE_FORMAT && memcmp(header.key, key, 32) == 0 &&
             header.payload_bytes > 0 && header.payload_bytes < ((uint64_t)1 << 32);
    if (ok) {
        payload = malloc(header.payload_bytes);
        ok = payload && fread(payload, 1, header.payload_bytes, file) == header.payload_bytes &&
             fgetc(file) == EOF &&
             XXH64(payload, header.payload_bytes, 0) == header.payload_checksum;
    }
    fclose(file);
    if (!ok) {
        free(payload);
        return NULL;
    }
    *bytes = header.payload_bytes;
    return payload;
}

cl_program mcl_binary_cache_load(mcl_context *ctx, const char *key, const char *options)
{
    if (!ctx->binary_cache.enabled) return NULL;
    char path[1200];
    mcl_binary_cache_path(&ctx->binary_cache, key, path, sizeof path);
    if (access(path, F_OK) != 0) return NULL;
    size_t bytes = 0;
    unsigned char *payload = read_entry(path, key, &bytes);
    cl_program program = NULL;
    if (payload) {
        const unsigned char *binaries[1] = {payload};
        cl_int binary_status, err;
        program = clCreateProgramWithBinary(ctx->cl, 1, &ctx->device.id, &bytes, binaries,
                                            &binary_status, &err);
        if (err != CL_SUCCESS || binary_status != CL_SUCCESS) {
            program = NULL;
        } else if (clBuildProgram(program, 1, &ctx->device.id, options, NULL, NULL) != CL_SUCCESS) {
            clReleaseProgram(program);
            program = NULL;
        }
        free(payload);
    }
    if (!program) {
        mcl_log(MCL_LOG_WARN, "binary cache: %s is corrupt or unloadable; rebuilding", path);
        unlink(path);
    }
    return program;
}

static int write_entry(const char *path, const char *key, const unsigned char *payload, size_t bytes)
{
    binary_header header;
    memset(&header, 0, sizeof header);
    memcpy(header.magic, binary_magic, sizeof binary_magic);
    header.format = MCL_BINARY_CACHE_FORMAT;
    memcpy(header.key, key, 32);
    header.payload_bytes = bytes;
    header.payload_checksum = XXH64(payload, bytes, 0);
    const void *parts[2] = {&header, payload};
    const size_t sizes[2] = {sizeof header, bytes};
    return mcl_write_atomic(path, parts, sizes, 2);
}

void mcl_binary_cache_store(mcl_context *ctx, const char *key, cl_program program)
{
    if (!ctx->binary_cache.enabled) return;
    size_t bytes = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof bytes, &bytes, NULL) !=
            CL_SUCCESS ||
        bytes == 0)
        return;
    unsigned char *payload = malloc(bytes);
    if (!payload) return;
    unsigned char *binaries[1] = {payload};
    char path[1200];
    mcl_binary_cache_path(&ctx->binary_cache, key, path, sizeof path);
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binaries, binaries, NULL) ==
            CL_SUCCESS &&
        write_entry(path, key, payload, bytes) == 0)
        ctx->stats.binary_cache_writes++;
    else
        mcl_log(MCL_LOG_WARN, "binary cache: cannot write %s (%s)", path, strerror(errno));
    free(payload);
}
