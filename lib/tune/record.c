/* The tuning record (see record.h). */
#include "record.h"

#include "runtime/error.h"
#include "runtime/files.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct record_line {
    char job[256], params[1024], reference[1024], status[16];
    double ms, reference_ms;
    int winner;
} record_line;

struct tune_record {
    FILE *file;
    char device[128], driver[64];
    record_line *lines;
    size_t count, capacity, skipped;
    size_t earlier; /* lines read from the file: results of an earlier run */
};

static const char *field(struct json_object *o, const char *name)
{
    struct json_object *v;
    return json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static double number(struct json_object *o, const char *name)
{
    struct json_object *v;
    return json_object_object_get_ex(o, name, &v) && (json_object_is_type(v, json_type_double) ||
                                                      json_object_is_type(v, json_type_int))
               ? json_object_get_double(v)
               : NAN;
}

static int push(tune_record *r, const record_line *line)
{
    if (r->count == r->capacity) {
        size_t capacity = r->capacity ? 2 * r->capacity : 64;
        record_line *grown = realloc(r->lines, capacity * sizeof *grown);
        if (!grown) return -1;
        r->lines = grown;
        r->capacity = capacity;
    }
    r->lines[r->count++] = *line;
    return 0;
}

/* One line of the file: kept when it is a result of this device, driver and version. */
static int read_line(tune_record *r, const char *text)
{
    struct json_object *o = json_tokener_parse(text);
    const char *kind = o ? field(o, "record") : NULL, *device = o ? field(o, "device") : NULL;
    const char *driver = o ? field(o, "driver") : NULL, *version = o ? field(o, "megacl") : NULL;
    const char *job = o ? field(o, "job") : NULL, *params = o ? field(o, "params") : NULL;
    int ok = kind && device && driver && version && job && params;
    if (!ok) r->skipped++;
    int status = 0;
    if (ok && strcmp(device, r->device) == 0 && strcmp(driver, r->driver) == 0 &&
        strcmp(version, mcl_version_string()) == 0) {
        record_line line = {.ms = number(o, "ms"), .reference_ms = number(o, "reference_ms"),
                            .winner = strcmp(kind, "winner") == 0};
        const char *result = field(o, "status"), *reference = field(o, "reference");
        snprintf(line.job, sizeof line.job, "%s", job);
        snprintf(line.params, sizeof line.params, "%s", params);
        snprintf(line.status, sizeof line.status, "%s", result ? result : "ok");
        snprintf(line.reference, sizeof line.reference, "%s", reference ? reference : "");
        status = push(r, &line);
    }
    json_object_put(o);
    return status;
}

/* Reads the file's results; *cut says whether its last line ends without a newline (a write cut
 * short), which the next append must not run on from. */
static mcl_status read_existing(tune_record *r, const char *path, int *cut)
{
    size_t length = 0;
    char *text = mcl_read_text(path, &length);
    *cut = 0;
    if (!text) return errno == ENOENT ? MCL_OK : mcl_fail(MCL_ERR_IO, "tuning record %s: %s", path, strerror(errno));
    *cut = length > 0 && text[length - 1] != '\n';
    int failed = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !failed; line = strtok_r(NULL, "\n", &save))
        failed = *line && read_line(r, line) != 0;
    free(text);
    if (failed) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "reading tuning record %s", path);
    r->earlier = r->count;
    if (r->skipped) mcl_log(MCL_LOG_WARN, "tuning record %s: %zu unreadable lines skipped", path, r->skipped);
    return MCL_OK;
}

mcl_status tune_record_open(const char *path, const mcl_device_info *device, tune_record **out)
{
    tune_record *r = calloc(1, sizeof *r);
    if (!r) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "opening a tuning record");
    snprintf(r->device, sizeof r->device, "%s", device->name);
    snprintf(r->driver, sizeof r->driver, "%s", device->driver_version);
    int cut = 0;
    mcl_status status = path ? read_existing(r, path, &cut) : MCL_OK;
    if (status == MCL_OK && path && (!(r->file = fopen(path, "a")) || (cut && fputc('\n', r->file) == EOF)))
        status = mcl_fail(MCL_ERR_IO, "tuning record %s cannot be written: %s", path, strerror(errno));
    if (status != MCL_OK) {
        tune_record_close(r);
        return status;
    }
    *out = r;
    return MCL_OK;
}

void tune_record_close(tune_record *r)
{
    if (!r) return;
    if (r->file) fclose(r->file);
    free(r->lines);
    free(r);
}

size_t tune_record_skipped(const tune_record *r) { return r ? r->skipped : 0; }

int tune_record_find(const tune_record *r, const char *job, const char *params, char status[16], double *ms)
{
    for (size_t i = 0; r && i < r->count; i++) {
        const record_line *l = &r->lines[i];
        if (l->winner || strcmp(l->job, job) != 0 || strcmp(l->params, params) != 0) continue;
        memcpy(status, l->status, 16);
        *ms = l->ms;
        return i < r->earlier ? 2 : 1;
    }
    return 0;
}

int tune_record_winner(const tune_record *r, const char *job, char params[1024], double *ms, double *reference_ms,
                       char reference[1024])
{
    for (size_t i = 0; r && i < r->count; i++) {
        const record_line *l = &r->lines[i];
        if (!l->winner || strcmp(l->job, job) != 0) continue;
        memcpy(params, l->params, 1024);
        memcpy(reference, l->reference, 1024);
        *ms = l->ms;
        *reference_ms = l->reference_ms;
        return 1;
    }
    return 0;
}

/* Keeps the result for later lookups and appends it as one line, pushed to the disk before the
 * next candidate runs. */
static mcl_status append(tune_record *r, struct json_object *o)
{
    json_object_object_add(o, "device", json_object_new_string(r->device));
    json_object_object_add(o, "driver", json_object_new_string(r->driver));
    json_object_object_add(o, "megacl", json_object_new_string(mcl_version_string()));
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    int ok = read_line(r, text) == 0;
    if (ok && r->file) ok = fprintf(r->file, "%s\n", text) > 0 && fflush(r->file) == 0 && fsync(fileno(r->file)) == 0;
    json_object_put(o);
    return ok ? MCL_OK : mcl_fail(MCL_ERR_IO, "appending to the tuning record: %s", strerror(errno));
}

static void add_ms(struct json_object *o, const char *name, double ms)
{
    if (isfinite(ms)) json_object_object_add(o, name, json_object_new_double(ms));
}

mcl_status tune_record_candidate(tune_record *r, const char *job, const char *stage, const char *params,
                                 const char *status, double ms, const char *reason)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "record", json_object_new_string("candidate"));
    json_object_object_add(o, "job", json_object_new_string(job));
    json_object_object_add(o, "stage", json_object_new_string(stage));
    json_object_object_add(o, "params", json_object_new_string(params));
    json_object_object_add(o, "status", json_object_new_string(status));
    add_ms(o, "ms", ms);
    if (reason && *reason) json_object_object_add(o, "reason", json_object_new_string(reason));
    return append(r, o);
}

mcl_status tune_record_winner_add(tune_record *r, const char *job, const char *params, double ms,
                                  const char *reference, double reference_ms)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "record", json_object_new_string("winner"));
    json_object_object_add(o, "job", json_object_new_string(job));
    json_object_object_add(o, "params", json_object_new_string(params));
    add_ms(o, "ms", ms);
    json_object_object_add(o, "reference", json_object_new_string(reference));
    add_ms(o, "reference_ms", reference_ms);
    return append(r, o);
}
