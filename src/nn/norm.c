/* norm.c — RMSNorm forward/backward and LayerNorm forward (norm.h). */
#include "norm.h"

#include <math.h>

/* Below this many elements the OpenMP fork costs more than the work. */
#define NORM_PAR_MIN 32768

void qv_rmsnorm(float *y, const float *x, const float *w, int64_t rows, int64_t C, float eps)
{
#pragma omp parallel for schedule(static) if (rows * C >= NORM_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++)
            ss += (double)xr[c] * xr[c];
        float var = (float)(ss / (double)C);
        float rs = 1.0f / sqrtf(var + eps);
        if (w)
            for (int64_t c = 0; c < C; c++)
                yr[c] = w[c] * (xr[c] * rs);
        else
            for (int64_t c = 0; c < C; c++)
                yr[c] = xr[c] * rs;
    }
}

void qv_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int64_t rows, int64_t C,
                         float eps, bool accumulate)
{
#pragma omp parallel for schedule(static) if (rows * C >= NORM_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *gr = dy + r * C;
        float *dr = dx + r * C;
        double ss = 0, gx = 0;
        for (int64_t c = 0; c < C; c++) {
            double g = w ? (double)gr[c] * w[c] : (double)gr[c];
            ss += (double)xr[c] * xr[c];
            gx += g * xr[c];
        }
        float var = (float)(ss / (double)C);
        double rs = 1.0 / sqrt((double)(var + eps));
        double k = rs * rs * rs * gx / (double)C;
        for (int64_t c = 0; c < C; c++) {
            double g = w ? (double)gr[c] * w[c] : (double)gr[c];
            float v = (float)(rs * g - k * xr[c]);
            dr[c] = accumulate ? dr[c] + v : v;
        }
    }
}

void qv_layernorm(float *y, const float *x, const float *w, const float *b, int64_t rows, int64_t C, float eps)
{
#pragma omp parallel for schedule(static) if (rows * C >= NORM_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        double s = 0;
        for (int64_t c = 0; c < C; c++)
            s += xr[c];
        double mean_d = s / (double)C, v = 0;
        for (int64_t c = 0; c < C; c++) {
            double d = xr[c] - mean_d;
            v += d * d;
        }
        float mean = (float)mean_d, var = (float)(v / (double)C);
        float rs = 1.0f / sqrtf(var + eps);
        for (int64_t c = 0; c < C; c++) {
            float t = (xr[c] - mean) * rs;
            if (w)
                t = t * w[c];
            if (b)
                t = t + b[c];
            yr[c] = t;
        }
    }
}
