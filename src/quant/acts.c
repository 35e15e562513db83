/* acts.c — see acts.h. */
#include "acts.h"

#include <string.h>

#include "../../simd/simd.h"

qv_status qv_acts_alloc(qv_acts *a, qv_dtype dt, int64_t rows, int64_t cols, const char *what)
{
    a->dt = dt;
    a->rows = rows;
    a->cols = cols;
    size_t n;
    if (!qv_mul_size((size_t)rows, (size_t)cols, &n) || !qv_mul_size(n, qv_dtype_size(dt), &n)) {
        a->p = NULL;
        return qv_fail(QV_ERR_NOMEM, "%s: size overflow", what);
    }
    a->p = qv_aligned_alloc(64, n, what);
    return a->p ? QV_OK : QV_ERR_NOMEM;
}

void qv_acts_free(qv_acts *a)
{
    if (!a)
        return;
    qv_free(a->p);
    a->p = NULL;
}

void qv_acts_get(const qv_acts *a, int64_t r0, int64_t n, float *dst)
{
    const qv_kernel_table *k = qv_kernels();
    const size_t cnt = (size_t)(n * a->cols);
    const void *src = qv_acts_row(a, r0);
    if (a->dt == QV_F32) {
        memcpy(dst, src, cnt * sizeof(float));
        return;
    }
    const size_t chunk = (size_t)1 << 16;
#pragma omp parallel for schedule(static) if (cnt >= 2 * chunk)
    for (size_t i = 0; i < cnt; i += chunk) {
        size_t m = cnt - i < chunk ? cnt - i : chunk;
        (a->dt == QV_BF16 ? k->bf16_to_f32 : k->f16_to_f32)(dst + i, (const uint16_t *)src + i, m);
    }
}

void qv_acts_put(qv_acts *a, int64_t r0, int64_t n, const float *src)
{
    const qv_kernel_table *k = qv_kernels();
    const size_t cnt = (size_t)(n * a->cols);
    void *dst = qv_acts_row(a, r0);
    if (a->dt == QV_F32) {
        memcpy(dst, src, cnt * sizeof(float));
        return;
    }
    const size_t chunk = (size_t)1 << 16;
#pragma omp parallel for schedule(static) if (cnt >= 2 * chunk)
    for (size_t i = 0; i < cnt; i += chunk) {
        size_t m = cnt - i < chunk ? cnt - i : chunk;
        (a->dt == QV_BF16 ? k->f32_to_bf16 : k->f32_to_f16)((uint16_t *)dst + i, src + i, m);
    }
}
