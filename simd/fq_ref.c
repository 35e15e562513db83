/* fq_ref.c — scalar reference of fake quantization (ALGORITHMS.md §1.1–§1.4) and of the fused
 * T(FQ(T(w ⊙ s)) ⊘ s) of the scale search and its W-A forms FQ(T(w ⊙ s)), FQ(T(x ⊘ s)) (§3.2,
 * §5.6), rule (E) op by op (§0.3). The plainest loops: every SIMD variant must return these bits.
 * Statistics, scale and zero point, and each element come from the helpers of kernel_impl.h. */
#include "kernel_impl.h"

void qv_fq_group_ref(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                     int64_t len, const qv_fq *p)
{
    float lo, hi;
    qv_fq_group_stats(w, s, dt, mode, len, p->zero_point, &lo, &hi);
    qv_fq_gp g;
    qv_fq_gparams(&g, lo, hi, p, dt);
    /* all reads of an element happen before its write, so out may alias w (same dtype) */
    for (int64_t i = 0; i < len; i++) {
        float v = qv_fq_input(w, s, dt, mode, i);
        float o = qv_fq_output(qv_fq_elem(v, &g, dt), s, dt, mode, i);
        qv_t_store(out, out_dt, i, o);
    }
}

void qv_fq_rows_ref(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                    int64_t rows, int64_t cols, const qv_fq *p)
{
    int64_t g = p->group > 0 ? p->group : cols;
    size_t isz = qv_t_size(dt), osz = qv_t_size(out_dt);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j += g) {
            size_t e = (size_t)(r * cols + j);
            qv_fq_group_ref((char *)out + e * osz, out_dt, (const char *)w + e * isz, dt,
                            s ? (const char *)s + (size_t)j * isz : NULL, mode, g, p);
        }
}
