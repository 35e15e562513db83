/* norm.h — RMSNorm (forward and backward) and LayerNorm (forward), row-wise over contiguous
 * rows of C floats (spec ALGORITHMS.md §6.3; fixtures README §1: the reference dtype T is f32).
 *
 * RMSNorm as Qwen2RMSNorm / InternLM2RMSNorm / LlamaRMSNorm compute it:
 *     y = γ ⊙ ( x · rsqrt(mean(x²) + ε) )      rsqrt = 1 / sqrtf, ε added in f32
 * LayerNorm as torch.nn.LayerNorm (biased variance):
 *     y = (x − mean) · rsqrt(var + ε) ⊙ γ + β
 * Row statistics are accumulated in double in a fixed order, so results never depend on the
 * thread count (rows are split over OpenMP threads, each row is computed by one thread).
 * y may equal x (in place). */
#ifndef QV_NN_NORM_H
#define QV_NN_NORM_H

#include "../core/common.h"

/* y[rows, C] = RMSNorm(x) ⊙ w; w may be NULL (no weight). */
void qv_rmsnorm(float *y, const float *x, const float *w, int64_t rows, int64_t C, float eps);

/* Gradient with respect to x of RMSNorm given dy (no weight gradient):
 *     g = dy ⊙ w,  r = rsqrt(mean(x²)+ε),  dx = r·g − x · r³/C · Σ_c g_c x_c
 * accumulate: dx += result instead of dx = result. dx must not alias dy or x. */
void qv_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int64_t rows, int64_t C,
                         float eps, bool accumulate);

/* y[rows, C] = LayerNorm(x) with weight w and bias b (each may be NULL). */
void qv_layernorm(float *y, const float *x, const float *w, const float *b, int64_t rows, int64_t C, float eps);

#endif
