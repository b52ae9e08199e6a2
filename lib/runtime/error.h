/* Errors and logging: the per-thread detail message behind mcl_last_error() and the
 * MEGACL_LOG levels. Every failing path sets the message through mcl_fail(). */
#ifndef MCL_RUNTIME_ERROR_H
#define MCL_RUNTIME_ERROR_H

#include "megacl.h"

#if defined(__GNUC__)
#define MCL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define MCL_PRINTF(fmt, args)
#endif

typedef enum mcl_log_level {
    MCL_LOG_NONE = 0,
    MCL_LOG_ERROR,
    MCL_LOG_WARN,
    MCL_LOG_INFO,
    MCL_LOG_DEBUG,
} mcl_log_level;

/* Records the detail message of a failure for this thread, logs it at error level, and returns
 * status so that callers can write `return mcl_fail(MCL_ERR_..., "...", ...)`. */
mcl_status mcl_fail(mcl_status status, const char *fmt, ...) MCL_PRINTF(2, 3);

/* Puts "<context>: " before the detail message of a failure that happened inside a step of an
 * op, so the message names the op and the step ("trimul_backward: dW_in GEMM: ..."); returns
 * status. MCL_OK passes through untouched. */
mcl_status mcl_fail_within(mcl_status status, const char *fmt, ...) MCL_PRINTF(2, 3);

/* Like mcl_fail for an OpenCL error code: names the code and the call that returned it. */
mcl_status mcl_fail_cl(cl_int err, const char *what);

/* Logs to stderr when MEGACL_LOG allows `level`. */
void mcl_log(mcl_log_level level, const char *fmt, ...) MCL_PRINTF(2, 3);

const char *mcl_cl_error_name(cl_int err);

/* Returns on failure: the common case of propagating a status. */
#define MCL_TRY(expr)                                                                         \
    do {                                                                                       \
        mcl_status mcl_try_status_ = (expr);                                                   \
        if (mcl_try_status_ != MCL_OK) return mcl_try_status_;                                 \
    } while (0)

#define MCL_CL_TRY(call, what)                                                                 \
    do {                                                                                       \
        cl_int mcl_cl_err_ = (call);                                                           \
        if (mcl_cl_err_ != CL_SUCCESS) return mcl_fail_cl(mcl_cl_err_, (what));                \
    } while (0)

#endif
