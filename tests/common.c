/* Test helpers (see common.h). */
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *test_selector(void)
{
    const char *env = getenv("MEGACL_DEVICE");
    return env && *env ? env : "pocl";
}

mcl_context *test_context(void)
{
    mcl_context *ctx = NULL;
    mcl_status status = mcl_context_create(test_selector(), &ctx);
    cr_assert_eq(status, MCL_OK, "no context on '%s': %s: %s", test_selector(),
                 mcl_status_name(status), mcl_last_error());
    return ctx;
}

cl_mem test_buffer(mcl_context *ctx, size_t bytes, unsigned char byte)
{
    cl_int err;
    cl_mem mem = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer(%zu) failed: %d", bytes, err);
    err = clEnqueueFillBuffer(mcl_context_queue(ctx), mem, &byte, 1, 0, bytes, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS);
    clFinish(mcl_context_queue(ctx));
    return mem;
}

void *test_read_all(mcl_context *ctx, cl_mem mem, size_t bytes)
{
    void *data = malloc(bytes);
    cr_assert_not_null(data);
    cl_int err = clEnqueueReadBuffer(mcl_context_queue(ctx), mem, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS);
    return data;
}

uint64_t test_seed(void)
{
    const char *env = getenv("MEGACL_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0)
                        : (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 16;
    /* on stderr, so that a failing run's log (ctest --output-on-failure) names it */
    fprintf(stderr, "seed %llu (MEGACL_TEST_SEED reproduces it)\n", (unsigned long long)seed);
    return seed;
}

void test_free_all(float *const *arrays, size_t n)
{
    for (size_t i = 0; i < n; i++) free(arrays[i]);
}

void test_each_glu_variant(const wl_workload *w, size_t count, wl_case (*case_at)(size_t vec, size_t group, size_t i))
{
    static const int vecs[] = {1, 2, 4, 8};
    static const char *const groups[] = {"WG=32,GROUPS_PER_CU=1", "WG=64,GROUPS_PER_CU=32", "WG=1024,GROUPS_PER_CU=2"};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < COUNT_OF(vecs); v++)
        for (size_t g = 0; g < COUNT_OF(groups); g++) {
            char params[64];
            snprintf(params, sizeof params, "VEC=%d,%s", vecs[v], groups[g]);
            assert_ok(mcl_context_set_params(ctx, "glu", params));
            for (size_t i = 0; i < count; i++)
                test_check_case(ctx, w, case_at(v, g, i), (int)(v + i) % 2, &rng, params);
        }
    assert_ok(mcl_context_set_params(ctx, "glu", NULL));
    mcl_context_release(ctx);
}

void test_wait_event(cl_event event)
{
    cr_assert_not_null(event, "no event returned");
    cr_assert_eq(clWaitForEvents(1, &event), CL_SUCCESS);
    clReleaseEvent(event);
}

uint64_t test_workspace_bytes(mcl_context *ctx)
{
    mcl_context_stats stats;
    mcl_context_get_stats(ctx, &stats);
    return stats.workspace_bytes;
}

/* Central differences: v[e] + step and v[e] - step are rounded to float first, so the quotient
 * divides by the step actually taken. */
double test_fd_error(test_loss loss, const void *problem, float *v, size_t n, const double *an, float step)
{
    double diff = 0.0, norm = 0.0;
    for (size_t e = 0; e < n; e++) {
        float v0 = v[e], vp = v0 + step, vm = v0 - step;
        v[e] = vp;
        double lp = loss(problem);
        v[e] = vm;
        double lm = loss(problem);
        v[e] = v0;
        double fd = (lp - lm) / ((double)vp - (double)vm);
        diff += (fd - an[e]) * (fd - an[e]);
        norm += an[e] * an[e];
    }
    cr_assert_gt(norm, 0.0);
    return sqrt(diff / norm);
}

void test_expect_fd_gradients(test_loss loss, const void *problem, const test_fd_gradient *g, size_t count,
                              float step, double tol)
{
    for (size_t i = 0; i < count; i++) {
        double err = test_fd_error(loss, problem, g[i].v, g[i].n, g[i].an, step);
        cr_expect_leq(err, tol, "d%s differs from finite differences by %.3g", g[i].name, err);
    }
}

/* ---- bad inputs ------------------------------------------------------------------------- */

/* The message is checked only for a failure: a call that succeeded leaves the last one. */
void test_expect_status(mcl_status got, mcl_status expected, const char *op, const char *needle,
                        const char *label)
{
    const char *msg = mcl_last_error();
    cr_expect_eq(got, expected, "%s: returned %s, expected %s: %s", label, mcl_status_name(got),
                 mcl_status_name(expected), msg);
    if (got == MCL_OK) return;
    if (op) cr_expect(strstr(msg, op), "%s: message '%s' does not name the op", label, msg);
    if (needle) cr_expect(strstr(msg, needle), "%s: message '%s' lacks '%s'", label, msg, needle);
}

void test_expect_untouched(mcl_context *ctx, const test_filled *bufs, size_t n, const char *label)
{
    mcl_finish(ctx);
    for (size_t i = 0; i < n; i++) {
        unsigned char *bytes = test_read_all(ctx, bufs[i].mem, bufs[i].bytes);
        size_t written = 0, first = 0;
        for (size_t j = bufs[i].bytes; j-- > 0;)
            if (bytes[j] != bufs[i].fill) written++, first = j;
        cr_expect_eq(written, 0, "%s: %zu bytes of buffer %zu written, the first at byte %zu", label, written, i,
                     first);
        free(bytes);
    }
}

test_bad_buffers test_bad_buffers_start(const char *op)
{
    return (test_bad_buffers){.ctx = test_context(), .op = op};
}

cl_mem test_bad_buffer(test_bad_buffers *b, size_t bytes, unsigned char fill)
{
    cr_assert_lt(b->count, TEST_MAX_BAD_BUFFERS, "more than TEST_MAX_BAD_BUFFERS buffers");
    cl_mem mem = test_buffer(b->ctx, bytes, fill);
    b->made[b->count++] = (test_filled){mem, bytes, fill};
    return mem;
}

cl_mem test_foreign_buffer(test_bad_buffers *b, size_t bytes)
{
    cr_assert_null(b->foreign, "one foreign buffer at most");
    b->other = test_context();
    return b->foreign = test_buffer(b->other, bytes, TEST_OUT_BYTE);
}

test_bad_buffers test_bad_buffers_make(const char *op, size_t in_bytes, size_t out_bytes)
{
    test_bad_buffers b = test_bad_buffers_start(op);
    b.in = test_bad_buffer(&b, in_bytes, TEST_IN_BYTE);
    b.out = test_bad_buffer(&b, out_bytes, TEST_OUT_BYTE);
    b.small = test_bad_buffer(&b, TEST_SMALL_BYTES, TEST_OUT_BYTE);
    return b;
}

void test_bad_buffers_release(test_bad_buffers *b)
{
    for (size_t i = 0; i < b->count; i++) clReleaseMemObject(b->made[i].mem);
    if (b->foreign) clReleaseMemObject(b->foreign), mcl_context_release(b->other);
    mcl_context_release(b->ctx);
}

void test_expect_refused(const test_bad_buffers *b, const char *call, mcl_status got, mcl_status expected,
                         const char *needle, const char *label)
{
    char what[160];
    snprintf(what, sizeof what, "%s: %s", call, label);
    test_expect_status(got, expected, b->op, needle, what);
    test_expect_untouched(b->ctx, b->made, b->count, what);
}

void test_expect_required(const test_bad_buffers *b, const char *call, mcl_status got, const char *name)
{
    char needle[48];
    snprintf(needle, sizeof needle, "%s is required", name);
    test_expect_refused(b, call, got, MCL_ERR_NULL_POINTER, needle, needle);
}

void test_make_moves(const test_tensor_fault *fault)
{
    for (size_t i = 0; i < TEST_MAX_MOVES && fault->moves[i].tensor; i++) *fault->moves[i].tensor = fault->moves[i].to;
}

/* ---- workloads -------------------------------------------------------------------------- */

wl_problem *test_problem(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng)
{
    wl_problem *p = NULL;
    mcl_status status = wl_create(w, ctx, &c, rng, &p);
    if (status == MCL_OK) status = wl_place(p, offsets);
    cr_assert_eq(status, MCL_OK, "%s: making a problem: %s: %s", w->name, mcl_status_name(status), wl_last_error());
    return p;
}

void test_label(const wl_problem *p, const char *variant, char *out, size_t cap)
{
    char what[192];
    wl_describe(p, what, sizeof what);
    snprintf(out, cap, "%s offsets=%s params=%s", what, wl_offset_names[p->offsets], variant ? variant : "default");
}

/* The op's step ran; with a size function, it took the workspace that reports (exactly, or at
 * most). */
static void expect_step(wl_problem *p, mcl_status status, size_t reported, int exact, int sized, const char *step,
                        const char *label)
{
    cr_assert_eq(status, MCL_OK, "%s: %s: %s", label, step, wl_last_error());
    if (!sized || reported == WL_UNSIZED) return;
    uint64_t took = test_workspace_bytes(p->ctx);
    cr_expect(exact ? took == reported : took <= reported, "%s: %s took %llu workspace bytes, its size function %zu",
              label, step, (unsigned long long)took, reported);
}

/* Runs forward and backward (backward_first: the other way round), fetches every tensor. */
static void run_passes_and_fetch(wl_problem *p, const char *label, int backward_first)
{
    size_t fwd_ws = 0, bwd_ws = 0;
    int backward_exact = 0, sized = p->w->workspace != NULL;
    if (sized) assert_ok(p->w->workspace(p, &fwd_ws, &bwd_ws, &backward_exact));
    cr_assert_eq(wl_poison(p), MCL_OK, "%s: %s", label, wl_last_error());
    for (int pass = 0; pass < 2; pass++) {
        int backward = pass != backward_first;
        assert_ok(mcl_context_trim(p->ctx));
        if (backward)
            expect_step(p, wl_backward(p, NULL), bwd_ws, backward_exact, sized, "backward", label);
        else
            expect_step(p, wl_forward(p, NULL), fwd_ws, 1, sized, "forward", label);
    }
    wl_fetch_report r;
    cr_assert_eq(wl_fetch(p, 1, &r), MCL_OK, "%s: fetching: %s", label, wl_last_error());
    cr_expect_eq(r.stray_bytes, 0, "%s: %zu bytes outside the tensors written (in %s's buffer)", label, r.stray_bytes,
                 r.stray_tensor >= 0 ? p->w->tensors[r.stray_tensor].name : "?");
    cr_expect_lt(r.changed_input, 0, "%s: input %s changed", label,
                 r.changed_input >= 0 ? p->w->tensors[r.changed_input].name : "?");
}

/* Runs forward and backward, fetches every tensor; returns the label in `label`. */
static void run_and_fetch(wl_problem *p, const char *variant, char *label, size_t cap)
{
    test_label(p, variant, label, cap);
    run_passes_and_fetch(p, label, 0);
}

/* Every output within its tolerance of the reference. */
static void expect_reference(wl_problem *p, const char *label)
{
    cr_assert_eq(wl_reference(p), MCL_OK, "%s: %s", label, wl_last_error());
    for (int i = 0; i < (int)p->w->tensor_count; i++) {
        if (!wl_has(p, i) || wl_is_input(p, i)) continue;
        wl_error e = wl_compare(p, i);
        const wl_tensor *t = &p->t[i];
        if (t->check == WL_NORM)
            cr_expect_eq(e.bad, 0, "%s: %s: relative error %.3g > %.2g; the worst element %zu: got %.9g, expected %.9g",
                         label, p->w->tensors[i].name, e.err, t->tol, e.worst, (double)t->values[e.worst],
                         t->ref[e.worst]);
        else
            cr_expect_eq(e.bad, 0, "%s: %s: %zu of %zu elements off; worst at %zu: got %.9g, expected %.9g (tol %.2g x "
                         "(|ref| + %.3g))", label, p->w->tensors[i].name, e.bad, t->count, e.worst,
                         (double)t->values[e.worst], t->ref[e.worst], t->tol, t->floor ? t->floor[e.worst] : 1.0);
    }
}

void test_run(wl_problem *p, const char *variant)
{
    char label[320];
    run_and_fetch(p, variant, label, sizeof label);
    expect_reference(p, label);
}

void test_check_in_place(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                         const test_alias *aliases, size_t count, int backward_first)
{
    wl_problem *p = NULL;
    mcl_status status = wl_create(w, ctx, &c, rng, &p);
    for (size_t k = 0; k < count && status == MCL_OK; k++) p->t[aliases[k].output].alias = aliases[k].input;
    if (status == MCL_OK) status = wl_place(p, offsets);
    cr_assert_eq(status, MCL_OK, "%s: making a problem in place: %s", w->name, wl_last_error());
    char what[320], label[400];
    test_label(p, "default", what, sizeof what);
    int used = snprintf(label, sizeof label, "%s in place (", what);
    for (size_t k = 0; k < count && used > 0 && (size_t)used < sizeof label; k++)
        used += snprintf(label + used, sizeof label - (size_t)used, "%s%s=%s", k ? ", " : "",
                         w->tensors[aliases[k].output].name, w->tensors[aliases[k].input].name);
    if (used > 0 && (size_t)used < sizeof label) snprintf(label + used, sizeof label - (size_t)used, ")");
    run_passes_and_fetch(p, label, backward_first);
    expect_reference(p, label);
    wl_destroy(p);
}

void test_check_case(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                     const char *variant)
{
    wl_problem *p = test_problem(ctx, w, c, offsets, rng);
    test_run(p, variant);
    wl_destroy(p);
}

/* test_check_case's run, returning output `tensor`'s relative error */
static double output_error(mcl_context *ctx, const wl_workload *w, wl_case c, int tensor, host_rng *rng,
                           const char *variant)
{
    wl_problem *p = test_problem(ctx, w, c, WL_OFF_ZERO, rng);
    test_run(p, variant);
    double err = wl_compare(p, tensor).err;
    wl_destroy(p);
    return err;
}

void test_tf32_only_where_allowed(mcl_context *ctx, const wl_workload *w, wl_case c, int tensor, host_rng *rng,
                                  const char *variant)
{
    const char *name = w->tensors[tensor].name;
    cr_assert_eq(c.dtype, MCL_F32, "tf32 applies to f32 cases");
    assert_ok(mcl_context_allow_tf32(ctx, 0));
    double before = output_error(ctx, w, c, tensor, rng, variant);
    assert_ok(mcl_context_allow_tf32(ctx, 1));
    double tf32 = output_error(ctx, w, c, tensor, rng, variant);
    assert_ok(mcl_context_allow_tf32(ctx, 0));
    double after = output_error(ctx, w, c, tensor, rng, variant);
    cr_log_info("%s %s relative errors: fp32 %g, tf32 %g\n", w->name, name, before, tf32);
    cr_expect_lt(before, 1e-5, "%s %s, tf32 not allowed: relative error %g", w->name, name, before);
    cr_expect_gt(tf32, 1e-5, "%s %s: tf32 was not used (relative error %g)", w->name, name, tf32);
    cr_expect_lt(after, 1e-5, "%s %s, tf32 allowed then not: relative error %g", w->name, name, after);
}

void test_repeat_is_bitwise(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                            const char *variant)
{
    wl_problem *p = test_problem(ctx, w, c, offsets, rng);
    char label[320];
    float *first[WL_MAX_TENSORS] = {0};
    for (int run = 0; run < 2; run++) {
        run_and_fetch(p, variant, label, sizeof label);
        for (int i = 0; i < (int)w->tensor_count; i++) {
            if (!wl_has(p, i) || wl_is_input(p, i)) continue;
            size_t bytes = p->t[i].count * sizeof(float);
            if (run == 0) {
                cr_assert_not_null(first[i] = malloc(bytes));
                memcpy(first[i], p->t[i].values, bytes);
            } else {
                cr_expect_eq(memcmp(first[i], p->t[i].values, bytes), 0, "%s: %s differs between runs", label,
                             w->tensors[i].name);
            }
        }
    }
    test_free_all(first, WL_MAX_TENSORS);
    wl_destroy(p);
}

void test_repeat_and_check(mcl_context *ctx, const wl_workload *w, wl_case c, int offsets, host_rng *rng,
                           const char *variant)
{
    host_rng same = *rng;
    test_repeat_is_bitwise(ctx, w, c, offsets, rng, variant);
    test_check_case(ctx, w, c, offsets, &same, variant);
}

void test_repeat_and_check_each_dtype(const wl_workload *w, wl_case c, int offsets)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++) {
        c.dtype = (mcl_dtype)dt;
        test_repeat_and_check(ctx, w, c, offsets, &rng, "default");
    }
    mcl_context_release(ctx);
}

char *test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    cr_assert_not_null(text);
    cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    return text;
}
