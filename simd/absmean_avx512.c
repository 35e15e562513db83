/* absmean_avx512.c — AVX-512 accumulation of the activation statistic sum |x| (16 lanes):
 * absmean_body.h over vec_avx512.h. Scalar twin: absmean_ref.c. Tail strategy: scalar tail (the
 * last cols % 16 columns of each row). */
#include "vec_avx512.h"

#include "absmean_body.h"

void qv_absmean_acc_avx512(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld)
{
    absmeanb_acc(acc, x, dt, rows, cols, ld);
}
