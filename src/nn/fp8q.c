/* fp8q.c — FP8 E4M3 fake quantization of activation rows (fp8q.h; ALGORITHMS-2.md §4.4). Scalar:
 * one pass per row, conversions from simd/fp.h. */
#include "fp8q.h"

#include "../../simd/fp.h"

#define FP8Q_PAR_MIN 65536

static inline float rt(float x, qv_dtype T)
{
    return T == QV_BF16 ? qv_round_bf16(x) : T == QV_F16 ? qv_round_f16(x) : x;
}

static inline float eps_of(qv_dtype T)
{
    return T == QV_BF16 ? 0.0078125f : T == QV_F16 ? 0.0009765625f : 1.1920928955078125e-07f;
}

float qv_fp8_scale(float absmax, qv_dtype T)
{
    float s = rt(rt(absmax, T) / 448.0f, T);
    return s == 0.0f ? eps_of(T) : s;
}

/* One value: code of T(x_T / s) after the clamp, and its dequantized T value. */
static inline float qdq1(float xt, float s, qv_dtype T, uint8_t *code)
{
    uint8_t c = qv_f32_to_e4m3_sat(rt(xt / s, T));
    if (code)
        *code = c;
    return rt(qv_e4m3_to_f32(c) * s, T);
}

void qv_fp8_qdq_tokens(float *y, const float *x, int64_t rows, int64_t cols, qv_dtype T, float *scales, uint8_t *codes)
{
#pragma omp parallel for schedule(static) if (rows * cols >= FP8Q_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float lo = 0.0f, hi = 0.0f;
        for (int64_t j = 0; j < cols; j++) {
            float v = rt(xr[j], T);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        float a = -lo > hi ? -lo : hi, s = rt(a / 448.0f, T);
        if (s == 0.0f)
            s = eps_of(T);
        if (scales)
            scales[r] = s;
        uint8_t *cr = codes ? codes + r * cols : NULL;
        for (int64_t j = 0; j < cols; j++)
            yr[j] = qdq1(rt(xr[j], T), s, T, cr ? cr + j : NULL);
    }
}

void qv_fp8_qdq_static(float *y, const float *x, int64_t rows, int64_t cols, const float *scale, int64_t n_scale,
                       qv_dtype T)
{
    const int64_t gw = cols / n_scale;
#pragma omp parallel for schedule(static) if (rows * cols >= FP8Q_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            y[r * cols + j] = qdq1(rt(x[r * cols + j], T), scale[j / gw], T, NULL);
}
