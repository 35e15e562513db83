/* absmean_ref.c — scalar reference of the activation statistic's accumulation (ALGORITHMS.md
 * §3.2: m[j] = mean over tokens of |x[..., j]|, fp32 accumulation in token order): acc[j] += |x|
 * row after row. The final division is qv_absmean_finish (dispatch.c). */
#include "kernel_impl.h"

void qv_absmean_acc_ref(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            acc[j] += fabsf(qv_t_load(x, dt, r * ld + j));
}
