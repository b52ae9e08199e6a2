/* Test helpers: the device under test and small conveniences on top of tests/ref/host.h. */
#ifndef MCL_TESTS_COMMON_H
#define MCL_TESTS_COMMON_H

#define MCL_EXPERIMENTAL
#include "megacl.h"
#include "ref/host.h"

#include <criterion/criterion.h>

/* The selector the suite runs on: MEGACL_DEVICE, else "pocl". */
const char *test_selector(void);

/* A context on the device under test; fails the test if none can be made. */
mcl_context *test_context(void);

/* A buffer of `bytes` bytes in the context, filled with `byte`. */
cl_mem test_buffer(mcl_context *ctx, size_t bytes, unsigned char byte);

/* Reads a whole buffer (bytes) into a malloc'd copy. */
void *test_read_all(mcl_context *ctx, cl_mem mem, size_t bytes);

/* A per-process seed: fresh inputs on every run (printed on failure through cr_log). */
uint64_t test_seed(void);

#define assert_status(expr, expected)                                                          \
    do {                                                                                       \
        mcl_status got_ = (expr);                                                              \
        cr_assert_eq(got_, (expected), "%s returned %s, expected %s: %s", #expr,               \
                     mcl_status_name(got_), mcl_status_name(expected), mcl_last_error());      \
    } while (0)

#define assert_ok(expr) assert_status((expr), MCL_OK)

#endif
