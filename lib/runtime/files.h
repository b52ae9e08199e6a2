/* Files the library keeps (binary cache, tuning databases, tuning records): directories made on
 * demand, and writes that a reader never sees half done. */
#ifndef MCL_RUNTIME_FILES_H
#define MCL_RUNTIME_FILES_H

#include <stddef.h>

/* mkdir -p; 0 on success, -1 with errno set. */
int mcl_make_dirs(const char *path);

/* Writes the parts one after another to a temporary file beside `path`, flushes it to disk and
 * renames it over `path`, making the directory first; 0 on success, -1 with errno set. */
int mcl_write_atomic(const char *path, const void *const *parts, const size_t *sizes, size_t count);

/* The whole file, NUL-terminated (malloc'd); NULL with errno set when it cannot be read. */
char *mcl_read_text(const char *path, size_t *length);

#endif
