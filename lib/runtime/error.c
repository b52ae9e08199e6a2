/* Status names and messages, the per-thread detail message, and logging to stderr. */
#include "error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

unsigned mcl_version(void) { return MCL_VERSION_NUMBER; }
const char *mcl_version_string(void) { return MCL_VERSION_STRING; }

const char *mcl_status_name(mcl_status status)
{
    switch (status) {
#define NAME_CASE(name, value, message)                                                        \
    case MCL_##name: return "MCL_" #name;
        MCL_STATUS_MAP(NAME_CASE)
#undef NAME_CASE
    }
    return "MCL_UNKNOWN_STATUS";
}

const char *mcl_status_str(mcl_status status)
{
    switch (status) {
#define STR_CASE(name, value, message)                                                         \
    case MCL_##name: return message;
        MCL_STATUS_MAP(STR_CASE)
#undef STR_CASE
    }
    return "unknown status";
}

const char *mcl_last_error(void) { return last_error; }

static mcl_log_level level_named(const char *env, int *known)
{
    static const char *const names[] = {"none", "error", "warn", "info", "debug"};
    *known = 1;
    if (!env) return MCL_LOG_NONE;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(env, names[i]) == 0) return (mcl_log_level)i;
    *known = 0;
    return MCL_LOG_WARN; /* an unknown value still asks for logging; warn is the safe middle */
}

static void report_unknown_level(void)
{
    fprintf(stderr, "megacl warn: MEGACL_LOG='%s' is not none, error, warn, info or debug; logging at warn\n",
            getenv("MEGACL_LOG"));
}

static mcl_log_level log_level(void)
{
    static pthread_once_t reported = PTHREAD_ONCE_INIT;
    int known;
    mcl_log_level level = level_named(getenv("MEGACL_LOG"), &known);
    if (!known) pthread_once(&reported, report_unknown_level);
    return level;
}

static void vlog(mcl_log_level level, const char *fmt, va_list args)
{
    static const char *const tags[] = {"", "error", "warn", "info", "debug"};
    if (level > log_level()) return;
    fprintf(stderr, "megacl %s: ", tags[level]);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
}

void mcl_log(mcl_log_level level, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vlog(level, fmt, args);
    va_end(args);
}

mcl_status mcl_fail(mcl_status status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    mcl_log(MCL_LOG_ERROR, "%s: %s", mcl_status_name(status), last_error);
    return status;
}

mcl_status mcl_fail_within(mcl_status status, const char *fmt, ...)
{
    if (status == MCL_OK) return status;
    char context[256], inner[sizeof last_error];
    va_list args;
    va_start(args, fmt);
    vsnprintf(context, sizeof context, fmt, args);
    va_end(args);
    memcpy(inner, last_error, sizeof inner);
    /* the end of a message too long for the buffer is what is lost, never the context */
    int n = snprintf(last_error, sizeof last_error, "%s: ", context);
    if (n > 0 && (size_t)n < sizeof last_error)
        snprintf(last_error + n, sizeof last_error - (size_t)n, "%s", inner);
    return status;
}

mcl_status mcl_fail_cl(cl_int err, const char *what)
{
    mcl_status status = MCL_ERR_OPENCL;
    if (err == CL_OUT_OF_RESOURCES || err == CL_OUT_OF_HOST_MEMORY ||
        err == CL_MEM_OBJECT_ALLOCATION_FAILURE)
        status = MCL_ERR_OUT_OF_MEMORY;
    else if (err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS)
        status = MCL_ERR_BUILD;
    return mcl_fail(status, "%s failed with %s (%d)", what, mcl_cl_error_name(err), (int)err);
}

const char *mcl_cl_error_name(cl_int err)
{
    switch (err) {
#define CL_CASE(code)                                                                          \
    case code: return #code;
        CL_CASE(CL_SUCCESS)
        CL_CASE(CL_DEVICE_NOT_FOUND)
        CL_CASE(CL_DEVICE_NOT_AVAILABLE)
        CL_CASE(CL_COMPILER_NOT_AVAILABLE)
        CL_CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        CL_CASE(CL_OUT_OF_RESOURCES)
        CL_CASE(CL_OUT_OF_HOST_MEMORY)
        CL_CASE(CL_PROFILING_INFO_NOT_AVAILABLE)
        CL_CASE(CL_MEM_COPY_OVERLAP)
        CL_CASE(CL_BUILD_PROGRAM_FAILURE)
        CL_CASE(CL_MAP_FAILURE)
        CL_CASE(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        CL_CASE(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        CL_CASE(CL_INVALID_VALUE)
        CL_CASE(CL_INVALID_DEVICE_TYPE)
        CL_CASE(CL_INVALID_PLATFORM)
        CL_CASE(CL_INVALID_DEVICE)
        CL_CASE(CL_INVALID_CONTEXT)
        CL_CASE(CL_INVALID_QUEUE_PROPERTIES)
        CL_CASE(CL_INVALID_COMMAND_QUEUE)
        CL_CASE(CL_INVALID_MEM_OBJECT)
        CL_CASE(CL_INVALID_BINARY)
        CL_CASE(CL_INVALID_BUILD_OPTIONS)
        CL_CASE(CL_INVALID_PROGRAM)
        CL_CASE(CL_INVALID_PROGRAM_EXECUTABLE)
        CL_CASE(CL_INVALID_KERNEL_NAME)
        CL_CASE(CL_INVALID_KERNEL)
        CL_CASE(CL_INVALID_ARG_INDEX)
        CL_CASE(CL_INVALID_ARG_VALUE)
        CL_CASE(CL_INVALID_ARG_SIZE)
        CL_CASE(CL_INVALID_KERNEL_ARGS)
        CL_CASE(CL_INVALID_WORK_DIMENSION)
        CL_CASE(CL_INVALID_WORK_GROUP_SIZE)
        CL_CASE(CL_INVALID_WORK_ITEM_SIZE)
        CL_CASE(CL_INVALID_GLOBAL_OFFSET)
        CL_CASE(CL_INVALID_EVENT_WAIT_LIST)
        CL_CASE(CL_INVALID_EVENT)
        CL_CASE(CL_INVALID_OPERATION)
        CL_CASE(CL_INVALID_BUFFER_SIZE)
        CL_CASE(CL_INVALID_GLOBAL_WORK_SIZE)
#undef CL_CASE
    }
    return "CL_UNKNOWN_ERROR";
}
