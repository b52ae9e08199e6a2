/* Double-precision gating, SwiGLU and add references (see glu_ref.h). */
#include "glu_ref.h"

#include <math.h>

/* 1 - sigmoid(v) is sigmoid(-v): no cancellation in either tail. */
static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

void ref_gating_forward(const float *x, const float *g, size_t count, double *y)
{
    for (size_t i = 0; i < count; i++) y[i] = (double)x[i] * sigmoid(g[i]);
}

void ref_gating_backward(const float *x, const float *g, const float *dy, size_t count,
                         double *dx, double *dg)
{
    for (size_t i = 0; i < count; i++) {
        double s = sigmoid(g[i]);
        if (dx) dx[i] = (double)dy[i] * s;
        if (dg) dg[i] = (double)dy[i] * x[i] * s * sigmoid(-(double)g[i]);
    }
}

/* Column offsets of a and b within a row of 2 * features. */
static void halves(size_t features, mcl_swiglu_half silu_half, size_t *a, size_t *b)
{
    *a = silu_half == MCL_SWIGLU_SILU_FIRST ? 0 : features;
    *b = features - *a;
}

void ref_swiglu_forward(const float *x, size_t rows, size_t features, mcl_swiglu_half silu_half,
                        double *y)
{
    size_t ao, bo;
    halves(features, silu_half, &ao, &bo);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * 2 * features;
        for (size_t c = 0; c < features; c++) {
            double a = xr[ao + c];
            y[r * features + c] = a * sigmoid(a) * xr[bo + c];
        }
    }
}

void ref_swiglu_backward(const float *x, const float *dy, size_t rows, size_t features,
                         mcl_swiglu_half silu_half, double *dx)
{
    size_t ao, bo;
    halves(features, silu_half, &ao, &bo);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * 2 * features;
        double *dxr = dx + r * 2 * features;
        for (size_t c = 0; c < features; c++) {
            double a = xr[ao + c], b = xr[bo + c], d = dy[r * features + c], s = sigmoid(a);
            dxr[ao + c] = d * b * s * (1.0 + a * sigmoid(-a));
            dxr[bo + c] = d * a * s;
        }
    }
}

void ref_add_forward(const float *a, const float *b, size_t count, double *y)
{
    for (size_t i = 0; i < count; i++) y[i] = (double)a[i] + b[i];
}
