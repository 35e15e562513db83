/* absmean_body.h — the SIMD body of the activation statistic's accumulation, in the primitives
 * of a vec_<isa>.h (included first); instantiated by absmean_avx2.c, absmean_avx512.c and
 * emu512_avx2.c. Scalar twin: absmean_ref.c (ALGORITHMS.md §3.2). Each column's sum is a chain
 * of fp32 adds in row order, the same chain as the reference's, so it is bit-exact. Tail
 * strategy: the last cols % QV_VL columns of each row are added by scalar code. */
#ifndef QV_SIMD_ABSMEAN_BODY_H
#define QV_SIMD_ABSMEAN_BODY_H

#include "fq_body.h"

QV_AI void absmeanb_acc_t(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld)
{
    const int64_t nv = cols - cols % QV_VL;
    const size_t sz = qv_t_size(dt);
    for (int64_t r = 0; r < rows; r++) {
        const char *row = (const char *)x + (size_t)(r * ld) * sz;
        for (int64_t j = 0; j < nv; j += QV_VL)
            qv_v_store_f32(acc + j, qv_v_add(qv_v_load_f32(acc + j), qv_v_abs(fqb_load(row, dt, j))));
        for (int64_t j = nv; j < cols; j++)
            acc[j] += fabsf(qv_t_load(row, dt, j));
    }
}

static inline void absmeanb_acc(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld)
{
    if (dt == QV_F32)
        absmeanb_acc_t(acc, x, QV_F32, rows, cols, ld);
    else if (dt == QV_BF16)
        absmeanb_acc_t(acc, x, QV_BF16, rows, cols, ld);
    else
        absmeanb_acc_t(acc, x, QV_F16, rows, cols, ld);
}

#endif /* QV_SIMD_ABSMEAN_BODY_H */
