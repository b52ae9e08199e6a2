/* Test helpers: the device under test and small conveniences on top of tests/ref/host.h. */
#ifndef MCL_TESTS_COMMON_H
#define MCL_TESTS_COMMON_H

#define MCL_EXPERIMENTAL
#include "megacl.h"
#include "ref/host.h"
#include "workload/workload.h"

#include <criterion/criterion.h>
#include <stdio.h>

/* The selector the suite runs on: MEGACL_DEVICE, else "pocl". */
const char *test_selector(void);

/* A context on the device under test; fails the test if none can be made. */
mcl_context *test_context(void);

/* A buffer of `bytes` bytes in the context, filled with `byte`. */
cl_mem test_buffer(mcl_context *ctx, size_t bytes, unsigned char byte);

/* Reads a whole buffer (bytes) into a malloc'd copy. */
void *test_read_all(mcl_context *ctx, cl_mem mem, size_t bytes);

/* The whole of a text file, NUL-terminated (malloc'd); fails the test if it cannot be read. */
char *test_read_file(const char *path);

/* A per-process seed: fresh inputs on every run (printed on failure through cr_log). */
uint64_t test_seed(void);

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- workloads: a case run and checked against its reference ----------------------------- */

/* A problem of case c of workload w, its tensors placed at `offsets` (WL_OFF_*); fails the test
 * if it cannot be made. */
wl_problem *test_problem(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng);

/* Poisons the outputs, runs the forward and then the backward, each from an empty workspace held
 * to what the workload's size functions report, fetches every tensor and expects the guard
 * bytes and inputs intact and every output within its tolerance of the reference. */
void test_run(wl_problem *p, const char *variant);

/* An output of a workload written in place of one of its inputs. */
typedef struct test_alias {
    int output, input;
} test_alias;

/* test_check_case with the outputs given in place of inputs; backward_first runs the backward
 * before the forward (for a forward that overwrites what the backward reads). */
void test_check_in_place(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                         const test_alias *aliases, size_t count, int backward_first);

/* test_run on a fresh problem of the case. */
void test_check_case(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                     const char *variant);

/* tf32 changes an f32 case's results only where the context allows it (mcl_context_allow_tf32),
 * under the tensor-core parameters the caller set: allowed, output `tensor` is within tf32's
 * tolerance and measurably off fp32's precision; not allowed, before and after, it is at fp32's. */
void test_tf32_only_where_allowed(mcl_context *ctx, const wl_workload *w, wl_case c, int tensor, host_rng *rng,
                                  const char *variant);

/* The case twice on the same inputs: every output's bytes must be identical. */
void test_repeat_is_bitwise(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                            const char *variant);

/* test_repeat_is_bitwise, then test_check_case on the same inputs: the results that repeat are
 * right too. */
void test_repeat_and_check(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                           const char *variant);

/* test_repeat_and_check of case c in every dtype, on a context and inputs of its own. */
void test_repeat_and_check_each_dtype(const wl_workload *w, wl_case c, int offsets);

/* "<case in words> offsets=<placement> params=<variant>" */
void test_label(const wl_problem *p, const char *variant, char *out, size_t cap);

/* Frees each of the n arrays (NULL ones included). */
void test_free_all(float *const *arrays, size_t n);

/* Every parameter variant of the glu family (gating, swiglu): VEC in {1, 2, 4, 8}, each with small
 * and large work-groups and group counts. Under each, `count` cases of workload w are checked:
 * case_at(vec, group, i), vec and group the variant's indices, placed at offsets 0 or multiples
 * of 8 by turns, so that the vector widths are kept where the sizes allow. */
void test_each_glu_variant(const wl_workload *w, size_t count, wl_case (*case_at)(size_t vec, size_t group, size_t i));

/* Waits for the event an op returned (it must have returned one) and releases it. */
void test_wait_event(cl_event event);

/* The workspace bytes the context holds now. */
uint64_t test_workspace_bytes(mcl_context *ctx);

/* A scalar loss of a reference problem, evaluated on the problem's inputs as they are now. */
typedef double (*test_loss)(const void *problem);

/* ||central differences of loss over v's n elements (each moved by +-step) - an|| / ||an||,
 * an the analytic gradient; v is restored. */
double test_fd_error(test_loss loss, const void *problem, float *v, size_t n, const double *an, float step);

/* A gradient of a reference to hold to central differences: d`name` at the n inputs v, analytic an. */
typedef struct test_fd_gradient {
    const char *name;
    float *v;
    size_t n;
    const double *an;
} test_fd_gradient;

/* Expects test_fd_error of each of the gradients within tol. */
void test_expect_fd_gradients(test_loss loss, const void *problem, const test_fd_gradient *g, size_t count,
                              float step, double tol);

#define assert_status(expr, expected)                                                          \
    do {                                                                                       \
        mcl_status got_ = (expr);                                                              \
        cr_assert_eq(got_, (expected), "%s returned %s, expected %s: %s", #expr,               \
                     mcl_status_name(got_), mcl_status_name(expected), mcl_last_error());      \
    } while (0)

#define assert_ok(expr) assert_status((expr), MCL_OK)

/* An op's call with a NULL context, descriptor or tensor set: MCL_ERR_NULL_POINTER each time. */
#define assert_null_args_rejected(op, ctx, desc, tensors)                                     \
    do {                                                                                       \
        assert_status(op(NULL, (desc), (tensors), NULL), MCL_ERR_NULL_POINTER);                \
        assert_status(op((ctx), NULL, (tensors), NULL), MCL_ERR_NULL_POINTER);                 \
        assert_status(op((ctx), (desc), NULL, NULL), MCL_ERR_NULL_POINTER);                    \
    } while (0)

/* ---- bad inputs: a specific status, a message, and no buffer touched ---------------------- */

/* Expects a rejected call's status to be `expected`; unless it succeeded, its message must name
 * `op` and hold `needle` (each unless NULL). */
void test_expect_status(mcl_status got, mcl_status expected, const char *op, const char *needle,
                        const char *label);

/* A buffer a rejected call must leave as it was: `bytes` bytes of `fill`. */
typedef struct test_filled {
    cl_mem mem;
    size_t bytes;
    unsigned char fill;
} test_filled;

/* Expects every byte of the n buffers still to be its fill, once the queue has finished. */
void test_expect_untouched(mcl_context *ctx, const test_filled *bufs, size_t n, const char *label);

/* The buffers an op's bad-input tests point its tensors into, each filled with one byte that a
 * refused call must leave as it was, and the name its messages must hold (NULL: not checked).
 * test_bad_buffers_make makes one for the inputs (TEST_IN_BYTE), one for the outputs and one too
 * small for any tensor (TEST_OUT_BYTE); test_bad_buffer adds one, test_foreign_buffer one of
 * another context. */
enum { TEST_IN_BYTE = 0x11, TEST_OUT_BYTE = 0x3c, TEST_SMALL_BYTES = 16, TEST_MAX_BAD_BUFFERS = 24 };
typedef struct test_bad_buffers {
    mcl_context *ctx, *other;
    const char *op;
    cl_mem in, out, small; /* test_bad_buffers_make's */
    test_filled made[TEST_MAX_BAD_BUFFERS];
    size_t count;
    cl_mem foreign;
} test_bad_buffers;

test_bad_buffers test_bad_buffers_make(const char *op, size_t in_bytes, size_t out_bytes);
/* No buffers yet: the context and the name. */
test_bad_buffers test_bad_buffers_start(const char *op);
cl_mem test_bad_buffer(test_bad_buffers *b, size_t bytes, unsigned char fill);
/* A buffer of another context (never read back), `bytes` of TEST_OUT_BYTE. */
cl_mem test_foreign_buffer(test_bad_buffers *b, size_t bytes);
void test_bad_buffers_release(test_bad_buffers *b);

/* The members of an op's bad-input fixture that its tests share: the buffers b, a valid
 * descriptor and the valid tensors ft and bt of the forward and the backward (the fixture of
 * TEST_EVENTS_RETURNED). */
#define TEST_BAD_FIXTURE_OF(op)                                                                \
    test_bad_buffers b;                                                                        \
    mcl_##op##_desc desc;                                                                      \
    mcl_##op##_fwd_tensors ft;                                                                 \
    mcl_##op##_bwd_tensors bt

/* A descriptor fault of an op whose descriptor is desc_type: the call with that descriptor and
 * valid tensors must return `status` with a message holding `needle` (NULL: not checked). */
#define TEST_DESC_FAULT(desc_type)                                                             \
    struct {                                                                                   \
        desc_type desc;                                                                        \
        mcl_status status;                                                                     \
        const char *needle, *label;                                                            \
    }

/* A tensor of a call moved: `tensor` points into the tensors struct the test calls with, `to`
 * is where it points instead ({NULL, 0}: left out). */
typedef struct test_move {
    mcl_tensor *tensor;
    mcl_tensor to;
} test_move;

/* A call with bad tensors: the valid ones with the moves made (those before the first whose
 * tensor is NULL), the status it must return with a message holding `needle` (NULL: not
 * checked). */
enum { TEST_MAX_MOVES = 7 };
typedef struct test_tensor_fault {
    const char *label;
    mcl_status status;
    const char *needle;
    test_move moves[TEST_MAX_MOVES];
} test_tensor_fault;

/* A move that leaves the field of t out. */
#define TEST_LEFT_OUT(t, field) {&(t).field, {NULL, 0}}

/* A tensor a call cannot go without, and its name: TEST_REQUIRED(t, x) for the field x of t. */
typedef struct test_required {
    mcl_tensor *tensor;
    const char *name;
} test_required;
#define TEST_REQUIRED(t, field) {&(t).field, #field}

/* A refused call of `call` (named with the label in failures): test_expect_status, then none of
 * b's buffers touched. */
void test_expect_refused(const test_bad_buffers *b, const char *call, mcl_status got, mcl_status expected,
                         const char *needle, const char *label);

/* test_expect_refused of a call made without the required tensor `name`. */
void test_expect_required(const test_bad_buffers *b, const char *call, mcl_status got, const char *name);

/* The fault's moves made. */
void test_make_moves(const test_tensor_fault *fault);

/* Every refused call of pass `call` (an op's mcl_<op>_<pass>) on the buffers b: a NULL context,
 * descriptor or tensors; each descriptor fault (its desc with `valid_tensors`); `valid_desc` with
 * t set to `valid_tensors` and then each required tensor left out ("<name> is required"), each
 * tensor fault's moves made (they point into t). Each returns its status and message and
 * leaves b's buffers as they were. */
#define EXPECT_REFUSED_CALLS(b, call, valid_desc, valid_tensors, t, desc_faults, required, tensor_faults) \
    do {                                                                                       \
        assert_null_args_rejected(call, (b)->ctx, &(valid_desc), &(valid_tensors));            \
        for (size_t k_ = 0; k_ < COUNT_OF(desc_faults); k_++)                                  \
            test_expect_refused(b, #call, call((b)->ctx, &(desc_faults)[k_].desc, &(valid_tensors), NULL), \
                                (desc_faults)[k_].status, (desc_faults)[k_].needle, (desc_faults)[k_].label); \
        for (size_t k_ = 0; k_ < COUNT_OF(required); k_++) {                                   \
            (t) = (valid_tensors);                                                             \
            (required)[k_].tensor->mem = NULL;                                                 \
            test_expect_required(b, #call, call((b)->ctx, &(valid_desc), &(t), NULL), (required)[k_].name); \
        }                                                                                      \
        for (size_t k_ = 0; k_ < COUNT_OF(tensor_faults); k_++) {                              \
            (t) = (valid_tensors);                                                             \
            test_make_moves(&(tensor_faults)[k_]);                                             \
            test_expect_refused(b, #call, call((b)->ctx, &(valid_desc), &(t), NULL), (tensor_faults)[k_].status, \
                                (tensor_faults)[k_].needle, (tensor_faults)[k_].label);        \
        }                                                                                      \
    } while (0)

/* The forward and the backward of `op` each return their event (the workloads run the ops
 * without one), on the valid tensors of the test file's bad-input fixture: bad_setup() returns
 * a bad_fixture with the members TEST_BAD_FIXTURE_OF(op). */
#define TEST_EVENTS_RETURNED(op)                                                               \
    Test(op, forward_and_backward_return_events)                                               \
    {                                                                                          \
        bad_fixture f = bad_setup();                                                           \
        cl_event fwd = NULL, bwd = NULL;                                                       \
        assert_ok(mcl_##op##_forward(f.b.ctx, &f.desc, &f.ft, &fwd));                          \
        test_wait_event(fwd);                                                                  \
        assert_ok(mcl_##op##_backward(f.b.ctx, &f.desc, &f.bt, &bwd));                         \
        test_wait_event(bwd);                                                                  \
        test_bad_buffers_release(&f.b);                                                        \
    }

#endif
