/* linear.h — nn.Linear on F32 activations with the weight in the compute dtype, the one matmul
 * pattern every tower and projector uses (spec ALGORITHMS.md §6.3 numeric model; MODELS.md §0.2
 * `Linear(i→o)` stores weight [o, i]).
 *
 *   y[M, N] (+)= x[M, K] · W[N, K]ᵀ (+ bias[N])
 *
 * W is F32 (parity mode: weights widened from BF16) or BF16 (fast mode: weights straight from
 * the mmap). With a BF16 weight the activations are rounded to BF16 (nearest even) in row chunks
 * of at most 2^24 elements before the oneDNN call, exactly as the decoder's linears do (oneDNN
 * 2.6 has no mixed F32 × BF16 matmul); accumulation, bias and y stay F32. */
#ifndef QV_NN_LINEAR_H
#define QV_NN_LINEAR_H

#include "../core/common.h"

/* flags: QV_MM_ACCUMULATE (matmul.h) adds to y instead of overwriting it. Rows of x and y are
 * contiguous (strides K and N). BF16 needs native BF16 matmuls (qv_matmul_bf16_native). */
qv_status qv_linear_rows(qv_dtype wdt, int64_t M, int64_t N, int64_t K, const float *x, const void *w,
                         const float *bias, float *y, unsigned flags);

#endif
