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

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- tensors inside larger buffers (offsets, guard bytes, poison) ------------------------ */

enum { TEST_GUARD = 37, TEST_POISON = 0x7f }; /* elements after each tensor; every byte not an input's */
enum { OFF_ZERO, OFF_VEC, OFF_ODD, OFF_MIXED, OFF_MODES };
extern const char *const test_offset_names[OFF_MODES];

/* Element offset of a call's i-th tensor: 0, multiples of 8, odd, or the two kinds mixed. */
size_t test_offset_of(int mode, int i);

/* A buffer of TEST_POISON bytes with src's n elements (none if src is NULL) at element offset
 * off, followed by TEST_GUARD elements. */
cl_mem test_place(mcl_context *ctx, mcl_dtype dt, const float *src, size_t n, size_t off);

/* The n elements at off as floats; every byte around them must still be TEST_POISON. */
float *test_fetch(mcl_context *ctx, cl_mem mem, mcl_dtype dt, size_t n, size_t off, const char *label,
                  const char *what);

/* Expects every element within tolerance * (|ref| + 1) of the reference. */
void test_expect_close(const char *label, const char *what, const float *out, const double *ref, size_t n,
                       mcl_dtype dt);

/* A value far out in sigmoid's tails (where exp overflows in fp32), rounded to dt. */
float test_extreme(host_rng *rng, mcl_dtype dt);

#define assert_status(expr, expected)                                                          \
    do {                                                                                       \
        mcl_status got_ = (expr);                                                              \
        cr_assert_eq(got_, (expected), "%s returned %s, expected %s: %s", #expr,               \
                     mcl_status_name(got_), mcl_status_name(expected), mcl_last_error());      \
    } while (0)

#define assert_ok(expr) assert_status((expr), MCL_OK)

#endif
