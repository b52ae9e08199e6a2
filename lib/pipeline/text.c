/* Alignment text: whole files mapped read-only, read line by line with the limits that keep a
 * binary file or a runaway line from being taken for an alignment. */
#include "pipeline.h"

#include "runtime/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void file_identity_of(const struct stat *st, file_identity *identity)
{
    *identity = (file_identity){
        .device = (uint64_t)st->st_dev,
        .inode = (uint64_t)st->st_ino,
        .size = (uint64_t)st->st_size,
        .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
        .ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec,
    };
}

mcl_status map_open_file(int fd, const char *path, mapped_file *file)
{
    file->data = NULL;
    file->size = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) return mcl_fail(MCL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return mcl_fail(MCL_ERR_IO, "%s: not a regular file", path);
    file_identity_of(&st, &file->identity);
    if (st.st_size == 0) return MCL_OK;
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED)
        return mcl_fail(MCL_ERR_IO, "%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(errno));
    file->data = data;
    file->size = (size_t)st.st_size;
    return MCL_OK;
}

mcl_status map_file(const char *path, mapped_file *file)
{
    file->data = NULL;
    file->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mcl_fail(MCL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mcl_status status = map_open_file(fd, path, file);
    close(fd);
    return status;
}

void unmap_file(mapped_file *file)
{
    if (file->data) munmap((void *)file->data, file->size);
    file->data = NULL;
    file->size = 0;
}

void text_reader_init(text_reader *reader, const char *data, size_t size, const char *name)
{
    reader->next = data;
    reader->end = data ? data + size : data;
    reader->name = name;
    reader->line_number = 0;
}

mcl_status text_fail(const text_reader *reader, const char *fmt, ...)
{
    char detail[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(detail, sizeof detail, fmt, args);
    va_end(args);
    return mcl_fail(MCL_ERR_PARSE, "%s:%zu: %s", reader->name, reader->line_number, detail);
}

/* Tab is the only control byte text may hold; a stray '\r' passes here and is refused by the
 * parsers wherever it is not a line end. */
static int is_binary_byte(unsigned char c) { return (c < 0x20 && c != '\t' && c != '\r') || c == 0x7f; }

mcl_status text_next_line(text_reader *reader, const char **line, size_t *length, int *more)
{
    *more = 0;
    if (reader->next >= reader->end) return MCL_OK;
    reader->line_number++;
    const char *start = reader->next;
    size_t left = (size_t)(reader->end - start);
    /* looking no further than the limit is what keeps a 1 GB line from being scanned whole */
    size_t window = left < MCL_MSA_MAX_LINE_BYTES + 2 ? left : MCL_MSA_MAX_LINE_BYTES + 2;
    const char *newline = memchr(start, '\n', window);
    size_t n = newline ? (size_t)(newline - start) : window;
    if (n > 0 && start[n - 1] == '\r') n--; /* Windows line ends */
    if (n > MCL_MSA_MAX_LINE_BYTES || (!newline && window < left))
        return text_fail(reader, "line longer than %zu bytes (not an alignment, or a corrupt file)",
                         (size_t)MCL_MSA_MAX_LINE_BYTES);
    for (size_t i = 0; i < n; i++)
        if (is_binary_byte((unsigned char)start[i]))
            return text_fail(reader, "byte 0x%02x at column %zu is not text (a binary file?)",
                             (unsigned char)start[i], i + 1);
    reader->next = newline ? newline + 1 : reader->end;
    *line = start;
    *length = n;
    *more = 1;
    return MCL_OK;
}

mcl_status text_append(text_buffer *buffer, const char *bytes, size_t count)
{
    if (count == 0) return MCL_OK;
    if (count > SIZE_MAX / 2 - buffer->size)
        return mcl_fail(MCL_ERR_SIZE_OVERFLOW, "text of %zu + %zu bytes", buffer->size, count);
    if (buffer->size + count > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 256;
        while (capacity < buffer->size + count) capacity *= 2;
        char *grown = realloc(buffer->data, capacity);
        if (!grown) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu bytes of text", capacity);
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->size, bytes, count);
    buffer->size += count;
    return MCL_OK;
}

void text_buffer_free(text_buffer *buffer)
{
    free(buffer->data);
    *buffer = (text_buffer){0};
}

static void text_trim(const char **line, size_t *length)
{
    while (*length > 0 && (**line == ' ' || **line == '\t')) (*line)++, (*length)--;
    while (*length > 0 && ((*line)[*length - 1] == ' ' || (*line)[*length - 1] == '\t')) (*length)--;
}

int text_next_content(text_reader *reader, const char **line, size_t *length, mcl_status *status)
{
    int more = 0;
    do {
        if ((*status = text_next_line(reader, line, length, &more)) != MCL_OK) return 0;
        if (more) text_trim(line, length); /* as AlphaFold strips every line */
    } while (more && *length == 0);
    return more;
}
