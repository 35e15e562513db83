/* linear.c — F32-activation linear with an F32 or BF16 weight (linear.h). */
#include "linear.h"

#include "../../simd/fp.h"
#include "matmul.h"

/* Elements converted to BF16 per oneDNN call (bounds the conversion buffer to 32 MiB). */
#define LINEAR_BF16_CHUNK ((int64_t)1 << 24)

qv_status qv_linear_rows(qv_dtype wdt, int64_t M, int64_t N, int64_t K, const float *x, const void *w,
                         const float *bias, float *y, unsigned flags)
{
    if (wdt == QV_F32)
        return qv_matmul(QV_F32, M, N, K, x, K, w, K, bias, y, N, QV_MM_B_NK | flags);
    if (wdt != QV_BF16)
        return qv_fail(QV_ERR_INTERNAL, "linear: weight dtype %s (F32, BF16)", qv_dtype_name(wdt));
    if (M <= 0 || N <= 0)
        return QV_OK;
    const int64_t rows = QV_MAX((int64_t)1, QV_MIN(M, LINEAR_BF16_CHUNK / QV_MAX(K, (int64_t)1)));
    uint16_t *xb = qv_malloc((size_t)(rows * K) * sizeof *xb + 2, "BF16 activations");
    if (!xb)
        return QV_ERR_NOMEM;
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < M && st == QV_OK; r0 += rows) {
        const int64_t mr = QV_MIN(rows, M - r0), n = mr * K;
        const float *src = x + r0 * K;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (int64_t i = 0; i < n; i++)
            xb[i] = qv_f32_to_bf16(src[i]);
        st = qv_matmul(QV_BF16, mr, N, K, xb, K, w, K, bias, y + r0 * N, N, QV_MM_B_NK | flags);
    }
    qv_free(xb);
    return st;
}
