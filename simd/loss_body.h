/* loss_body.h — the SIMD body of the loss sums, in the primitives of a vec_<isa>.h (included
 * first); instantiated by loss_avx2.c, loss_avx512.c and emu512_avx2.c. Scalar twin: loss_ref.c
 * (ALGORITHMS.md §0.3 "Losses", §5.5).
 *
 * The canonical order of simd.h: blocks of 16 columns feed the 16 double lanes (qv_vacc16, lane
 * k gets column 16·b + k); after the last full block the lanes are spilled, the tail columns are
 * added to lane j mod 16 by scalar code, and qv_loss_lanes_reduce combines them. Every add is the
 * reference's add in the reference's order, so the sums are bit-exact (D² is exact in double). */
#ifndef QV_SIMD_LOSS_BODY_H
#define QV_SIMD_LOSS_BODY_H

#include "fq_body.h"

QV_AI void lossb_rows_t(double *row_abs, double *row_sq, const void *a, const void *b, qv_dtype dt, int64_t rows,
                        int64_t cols, const uint8_t *row_mask)
{
    const int64_t nb = cols - cols % QV_LOSS_LANES;
    const size_t sz = qv_t_size(dt);
    for (int64_t r = 0; r < rows; r++) {
        if (row_mask && !row_mask[r]) {
            row_abs[r] = 0.0;
            row_sq[r] = 0.0;
            continue;
        }
        const char *pa = (const char *)a + (size_t)(r * cols) * sz, *pb = (const char *)b + (size_t)(r * cols) * sz;
        qv_vacc16 A, Q;
        qv_vacc16_zero(&A);
        qv_vacc16_zero(&Q);
        for (int64_t j = 0; j < nb; j += QV_LOSS_LANES) {
            qv_vf d = fqb_round_nan(qv_v_sub(fqb_load(pa, dt, j), fqb_load(pb, dt, j)), dt);
            qv_vacc16_add(&A, &Q, d, 0);
#if QV_VL == 8
            d = fqb_round_nan(qv_v_sub(fqb_load(pa, dt, j + 8), fqb_load(pb, dt, j + 8)), dt);
            qv_vacc16_add(&A, &Q, d, 1);
#endif
        }
        double la[QV_LOSS_LANES], lq[QV_LOSS_LANES];
        qv_vacc16_spill(&A, la);
        qv_vacc16_spill(&Q, lq);
        for (int64_t j = nb; j < cols; j++) {
            double dd = (double)fabsf(qv_round_t(qv_t_load(pa, dt, j) - qv_t_load(pb, dt, j), dt));
            la[j % QV_LOSS_LANES] += dd;
            lq[j % QV_LOSS_LANES] += dd * dd;
        }
        row_abs[r] = qv_loss_lanes_reduce(la);
        row_sq[r] = qv_loss_lanes_reduce(lq);
    }
}

static inline void lossb_rows(double *row_abs, double *row_sq, const void *a, const void *b, qv_dtype dt,
                              int64_t rows, int64_t cols, const uint8_t *row_mask)
{
    if (dt == QV_F32)
        lossb_rows_t(row_abs, row_sq, a, b, QV_F32, rows, cols, row_mask);
    else if (dt == QV_BF16)
        lossb_rows_t(row_abs, row_sq, a, b, QV_BF16, rows, cols, row_mask);
    else
        lossb_rows_t(row_abs, row_sq, a, b, QV_F16, rows, cols, row_mask);
}

#endif /* QV_SIMD_LOSS_BODY_H */
