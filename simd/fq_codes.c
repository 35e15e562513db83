/* fq_codes.c — the integer codes, per-group scales and zero points behind a fake quantization
 * (ALGORITHMS.md §1.2, §1.3), for the exporters (FORMATS.md §2–§4): the same statistics,
 * qv_fq_gparams and qv_fq_code as fq_ref.c, so T((code − zero) · scale) is the fake-quant value
 * bit for bit. Scalar: export runs once per weight. */
#include "kernel_impl.h"

qv_status qv_fq_codes(uint8_t *codes, float *scales, uint8_t *zeros, const void *w, qv_dtype dt, int64_t rows,
                      int64_t cols, const qv_fq *p, int64_t *bad_group, const char **why)
{
    const char *e = rows < 0 ? "negative row count" : qv_fq_check(p, dt, dt, QV_FQ_SCALE_NONE, NULL, cols);
    if (e) {
        if (why)
            *why = e;
        return QV_ERR_INVALID;
    }
    const int64_t g = p->group > 0 ? p->group : cols, ng = cols / g;
    const int sym_zero = 1 << (p->n_bits - 1);
    const size_t sz = qv_t_size(dt);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < ng; k++) {
            const int64_t e0 = r * cols + k * g;
            const void *wg = (const char *)w + (size_t)e0 * sz;
            float lo, hi;
            qv_fq_group_stats(wg, NULL, dt, QV_FQ_SCALE_NONE, g, p->zero_point, &lo, &hi);
            if (isnan(hi) || isinf(hi) || (p->zero_point && (isnan(lo) || isinf(lo)))) {
                if (bad_group)
                    *bad_group = r * ng + k;
                if (why)
                    *why = "a quantization group holds NaN or Inf";
                return QV_ERR_INVALID;
            }
            qv_fq_gp gp;
            qv_fq_gparams(&gp, lo, hi, p, dt);
            scales[r * ng + k] = gp.scale;
            zeros[r * ng + k] = (uint8_t)(p->zero_point ? (int)gp.zero : sym_zero);
            for (int64_t i = 0; i < g; i++) {
                int q = (int)qv_fq_code(qv_t_load(wg, dt, i), &gp, dt);
                codes[e0 + i] = (uint8_t)(p->zero_point ? q : q + sym_zero);
            }
        }
    return QV_OK;
}
