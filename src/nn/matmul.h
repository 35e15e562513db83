/* matmul.h — the generic matrix multiply of qvlm, on oneDNN 2.6's matmul primitive (v2 C API).
 *
 *   C[M,N] (ldc)  =  A[M,K] (lda) · op(B)  (+ bias[N])  (+ C when accumulate)
 *
 * B is either [K,N] row-major (ldb) or, for Linear weights, [N,K] row-major ("nk": the
 * nn.Linear layout [out, in], used without a transpose copy). A and B share one dtype, F32 or
 * BF16 (oneDNN 2.6 has no mixed f32 x bf16 matmul); C and bias are F32 (f32 accumulation).
 *
 * Determinism: C is cut into fixed 128x512 tiles, each computed by ONE single-threaded oneDNN
 * primitive (the OpenMP thread count is 1 while it is created and run), and the tiles are spread
 * over the threads. oneDNN on its own may split the K reduction across threads, which made
 * results depend on --threads; with fixed tiles every output element always comes from the same
 * code with the same K order, so results are bit-identical for any thread count. Inside an
 * OpenMP parallel region a call runs its tiles on the calling thread.
 *
 * Primitives are created once per tile shape and cached (thread-safe); every call runs with a
 * user-managed scratchpad from a per-thread buffer so calls from several threads at once are
 * safe. All strides are in elements and may be unaligned (views into mmapped checkpoints). */
#ifndef QV_NN_MATMUL_H
#define QV_NN_MATMUL_H

#include "../core/common.h"

typedef enum qv_mm_flags {
    QV_MM_B_NK = 1,       /* B is stored [N,K] (Linear weight) instead of [K,N] */
    QV_MM_ACCUMULATE = 2  /* C += result instead of C = result */
} qv_mm_flags;

qv_status qv_matmul(qv_dtype dt, int64_t M, int64_t N, int64_t K, const void *a, int64_t lda, const void *b,
                    int64_t ldb, const float *bias, float *c, int64_t ldc, unsigned flags);

/* y[M,N] = x[M,K] · W[N,K]ᵀ + bias: an nn.Linear on contiguous rows. */
static inline qv_status qv_linear(qv_dtype dt, int64_t M, int64_t N, int64_t K, const void *x, const void *w,
                                  const float *bias, float *y)
{
    return qv_matmul(dt, M, N, K, x, K, w, K, bias, y, N, QV_MM_B_NK);
}

/* Whether oneDNN runs BF16 matmuls natively on this host (AVX512-BF16 or AMX); without it BF16
 * would fall back to slow reference code, so callers compute in F32 instead. */
bool qv_matmul_bf16_native(void);
/* oneDNN's effective ISA, for reports ("avx2", "avx512_core_amx", ...). */
const char *qv_matmul_isa_name(void);

/* Scalar reference (double accumulation), for tests. Same argument meaning as qv_matmul. */
void qv_matmul_ref(qv_dtype dt, int64_t M, int64_t N, int64_t K, const void *a, int64_t lda, const void *b,
                   int64_t ldb, const float *bias, float *c, int64_t ldc, unsigned flags);

#endif
