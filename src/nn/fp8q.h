/* fp8q.h — FP8 E4M3 fake quantization (quantize, then dequantize) of activation rows, as
 * compressed-tensors computes it for llm-compressor's FP8 schemes (ALGORITHMS-2.md §4.4, §4.5;
 * FORMATS.md §4.5, §7.1): every step in the model dtype T (F32, BF16 or F16), which for a 16-bit
 * T is a double rounding the port must reproduce:
 *
 *     x_T  = T(x)                                  the reference's activations are T values
 *     s    = T(a / 448)   (0 → eps(T): BF16 2^-7, F16 2^-10, F32 2^-23)
 *     code = e4m3(clamp(T(x_T / s), −448, 448))    (round to nearest even, simd/fp.h)
 *     x̂    = T(f32(code) · s)
 *
 * with a = max(|min(x_T, 0)|, max(x_T, 0)) of each row (dynamic per token, FP8_DYNAMIC inputs)
 * or a given static scale (FP8 inputs: s = input_scale; KV cache: k_scale / v_scale, per tensor
 * or per KV head). The clamp matters: a T-rounded scale can put |x / s| above 448.
 * Rows are independent, so results do not depend on the thread count. */
#ifndef QV_NN_FP8Q_H
#define QV_NN_FP8Q_H

#include "../core/common.h"

/* How a linear's input is fake-quantized to FP8. */
typedef enum qv_fp8_act {
    QV_FP8_ACT_NONE = 0,
    QV_FP8_ACT_TOKEN,  /* dynamic, one scale per row (token) */
    QV_FP8_ACT_TENSOR  /* static, one given scale */
} qv_fp8_act;

/* The static scale of a running-absmax statistic: T(T(absmax) / 448), zero → eps(T) (the rule
 * of the FP8 export's input_scale / k_scale / v_scale). */
float qv_fp8_scale(float absmax, qv_dtype T);

/* Dynamic per-token: y [rows, cols] = x̂ (y may equal x). scales [rows] (optional) receives each
 * row's s, codes [rows, cols] (optional) the E4M3 bytes. */
void qv_fp8_qdq_tokens(float *y, const float *x, int64_t rows, int64_t cols, qv_dtype T, float *scales, uint8_t *codes);

/* Static: y [rows, cols] = x̂ with the columns split into n_scale equal groups, group g using
 * scale[g] (n_scale 1: per tensor; the KV heads of a [T, KV·d] K or V). cols % n_scale == 0.
 * Scales are T values (qv_fp8_scale). y may equal x. */
void qv_fp8_qdq_static(float *y, const float *x, int64_t rows, int64_t cols, const float *scale, int64_t n_scale,
                       qv_dtype T);

#endif
