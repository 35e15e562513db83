/* loss_avx512.c — AVX-512 loss sums (16 float lanes into 16 double lanes): loss_body.h over
 * vec_avx512.h. Scalar twin: loss_ref.c. Tail strategy: scalar tail (the last cols % 16 columns of
 * a row go to their lanes one by one). */
#include "vec_avx512.h"

#include "loss_body.h"

void qv_loss_rows_avx512(double *row_abs, double *row_sq, const void *a, const void *b, qv_dtype dt, int64_t rows,
                       int64_t cols, const uint8_t *row_mask)
{
    lossb_rows(row_abs, row_sq, a, b, dt, rows, cols, row_mask);
}
