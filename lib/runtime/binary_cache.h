/* On-disk cache of program binaries. One file per program, named by a 128-bit key over
 * everything that could change the binary; each file has a header and a checksum, is written
 * to a temporary file and renamed, and is deleted when it fails to load. */
#ifndef MCL_RUNTIME_BINARY_CACHE_H
#define MCL_RUNTIME_BINARY_CACHE_H

#include "context.h"

#define MCL_BINARY_CACHE_FORMAT 1

/* Decides from the vendor (on for AMD, whose driver keeps no cache of its own; off for NVIDIA
 * and PoCL, whose drivers do) and from MEGACL_BINARY_CACHE=0|1 and MEGACL_CACHE_DIR. A
 * directory that cannot be created costs a warning and turns the cache off. */
void mcl_binary_cache_configure(mcl_binary_cache_config *config, const mcl_device_info *info);

/* The directory megacl keeps its files in: MEGACL_CACHE_DIR, else $XDG_CACHE_HOME/megacl,
 * else $HOME/.cache/megacl. */
void mcl_cache_root(char *out, size_t cap);

/* Key over the format version, the library version, the full program source, the build
 * options, and the platform, device and driver names and versions: 32 hex digits. */
void mcl_binary_cache_key(const char *source, const char *options, const mcl_device_info *info,
                          char key[33]);

/* A built program from the cache, or NULL (a miss; a corrupt or unloadable entry is deleted). */
cl_program mcl_binary_cache_load(mcl_context *ctx, const char *key, const char *options);

/* Stores a built program; failures only warn. */
void mcl_binary_cache_store(mcl_context *ctx, const char *key, cl_program program);

/* The file an entry lives in (for tests and `megacl cache`). */
void mcl_binary_cache_path(const mcl_binary_cache_config *config, const char *key, char *out,
                           size_t cap);

#endif
