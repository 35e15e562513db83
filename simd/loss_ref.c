/* loss_ref.c — scalar reference of the loss sums (ALGORITHMS.md §0.3 "Losses", §5.5): per row,
 * D = fp32(T(a − b)), Σ|D| and ΣD² in double, in the canonical 16-lane order of simd.h that every
 * variant reproduces (D² is exact in double, so only the additions round). */
#include "kernel_impl.h"

void qv_loss_rows_ref(double *row_abs, double *row_sq, const void *a, const void *b, qv_dtype dt, int64_t rows,
                      int64_t cols, const uint8_t *row_mask)
{
    for (int64_t r = 0; r < rows; r++) {
        double la[QV_LOSS_LANES] = {0}, lq[QV_LOSS_LANES] = {0};
        if (!row_mask || row_mask[r]) {
            for (int64_t j = 0; j < cols; j++) {
                int64_t i = r * cols + j;
                float d = qv_round_t(qv_t_load(a, dt, i) - qv_t_load(b, dt, i), dt);
                double dd = (double)fabsf(d);
                la[j % QV_LOSS_LANES] += dd;
                lq[j % QV_LOSS_LANES] += dd * dd;
            }
        }
        row_abs[r] = qv_loss_lanes_reduce(la);
        row_sq[r] = qv_loss_lanes_reduce(lq);
    }
}
