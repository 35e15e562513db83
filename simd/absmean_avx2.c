/* absmean_avx2.c — AVX2 accumulation of the activation statistic sum |x| (8 lanes):
 * absmean_body.h over vec_avx2.h. Scalar twin: absmean_ref.c. Tail strategy: scalar tail (the
 * last cols % 8 columns of each row). */
#include "vec_avx2.h"

#include "absmean_body.h"

void qv_absmean_acc_avx2(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld)
{
    absmeanb_acc(acc, x, dt, rows, cols, ld);
}
