/* fq_shim.c — TEMPORARY scalar qv_fq_codes (ALGORITHMS.md §1.2, §1.3, rule (E) of §0.3) so the
 * exporters build before branch `simd` is merged; simd/fq_codes.c is the real one. Weak, so the
 * strong definition from simd wins if both are linked; delete this file at that merge. */
#include "fq_shim.h"

#include <math.h>

#include "fp.h"

static float rnd_t(float x, qv_dtype dt)
{
    return dt == QV_BF16 ? qv_round_bf16(x) : dt == QV_F16 ? qv_round_f16(x) : x;
}

static float load_t(const void *w, qv_dtype dt, int64_t i)
{
    if (dt == QV_BF16)
        return qv_bf16_to_f32(((const uint16_t *)w)[i]);
    if (dt == QV_F16)
        return qv_f16_to_f32(((const uint16_t *)w)[i]);
    return ((const float *)w)[i];
}

__attribute__((weak)) qv_status qv_fq_codes(uint8_t *codes, float *scales, uint8_t *zeros, const void *w, qv_dtype dt,
                                            int64_t rows, int64_t cols, const qv_fq *p, int64_t *bad_group,
                                            const char **why)
{
    if ((dt != QV_F32 && dt != QV_BF16 && dt != QV_F16) || p->n_bits < 2 || p->n_bits > 8 || rows < 0 || cols <= 0 ||
        (p->group > 0 && cols % p->group) || (p->group <= 0 && p->group != -1)) {
        if (why)
            *why = "invalid fake-quantization parameters";
        return QV_ERR_INVALID;
    }
    const int64_t g = p->group > 0 ? p->group : cols, ng = cols / g;
    const int qmax = p->zero_point ? (1 << p->n_bits) - 1 : (1 << (p->n_bits - 1)) - 1;
    const int qmin = p->zero_point ? 0 : -(1 << (p->n_bits - 1));
    const int sym_zero = 1 << (p->n_bits - 1);
    const float floor_t = rnd_t(1e-5f, dt);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < ng; k++) {
            const int64_t e0 = r * cols + k * g;
            float lo = INFINITY, hi = -INFINITY;
            bool bad = false;
            for (int64_t i = 0; i < g; i++) {
                float x = load_t(w, dt, e0 + i);
                if (!isfinite(x))
                    bad = true;
                if (!p->zero_point)
                    x = fabsf(x);
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
            if (bad) {
                if (bad_group)
                    *bad_group = r * ng + k;
                if (why)
                    *why = "a quantization group holds NaN or Inf";
                return QV_ERR_INVALID;
            }
            float range = p->zero_point ? rnd_t(hi - lo, dt) : hi;
            range = range < floor_t ? floor_t : range;
            float s = p->division == QV_FQ_DIV_CUDA ? rnd_t(range * (1.0f / (float)qmax), dt) : rnd_t(range / (float)qmax, dt);
            float z = 0.0f;
            if (p->zero_point) {
                z = -nearbyintf(rnd_t(lo / s, dt));
                z = z < 0.0f ? 0.0f : z > (float)qmax ? (float)qmax : z;
            }
            scales[r * ng + k] = s;
            zeros[r * ng + k] = (uint8_t)(p->zero_point ? (int)z : sym_zero);
            for (int64_t i = 0; i < g; i++) {
                float q = nearbyintf(rnd_t(load_t(w, dt, e0 + i) / s, dt)) + z;
                q = q < (float)qmin ? (float)qmin : q > (float)qmax ? (float)qmax : q;
                codes[e0 + i] = (uint8_t)(p->zero_point ? (int)q : (int)q + sym_zero);
            }
        }
    return QV_OK;
}
