/* Directories and atomic writes (see files.h). */
#include "files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mcl_make_dirs(const char *path)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    struct stat st;
    if (stat(buf, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* The directory part of a path ("." for a bare name). */
static void parent_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, cap, ".");
    else if (slash == path) snprintf(out, cap, "/");
    else snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

int mcl_write_atomic(const char *path, const void *const *parts, const size_t *sizes, size_t count)
{
    char dir[1024], tmp[1100];
    parent_of(path, dir, sizeof dir);
    if (mcl_make_dirs(dir) != 0) return -1;
    snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", dir);
    int fd = mkstemp(tmp);
    if (fd < 0) return -1;
    int ok = fchmod(fd, 0644) == 0; /* mkstemp's 0600 would hide a shared cache from its other users */
    for (size_t i = 0; i < count && ok; i++) {
        const char *p = parts[i];
        for (size_t left = sizes[i]; left > 0 && ok;) {
            ssize_t n = write(fd, p, left);
            ok = n > 0 || (n < 0 && errno == EINTR);
            if (n > 0) p += n, left -= (size_t)n;
        }
    }
    int saved = errno;
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0) return 0;
    saved = errno ? errno : saved;
    unlink(tmp);
    errno = saved;
    return -1;
}

char *mcl_read_text(const char *path, size_t *length)
{
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *text = NULL;
    long size = -1;
    if (fseek(file, 0, SEEK_END) == 0 && (size = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0)
        text = malloc((size_t)size + 1);
    if (text && fread(text, 1, (size_t)size, file) != (size_t)size) {
        free(text);
        text = NULL;
        errno = EIO;
    }
    fclose(file);
    if (!text) return NULL;
    text[size] = '\0';
    if (length) *length = (size_t)size;
    return text;
}
