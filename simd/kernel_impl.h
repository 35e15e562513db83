/* kernel_impl.h — what the kernel variants share: the declarations of every variant (`_ref`,
 * `_avx2`, `_avx512`, `_emu512`) and the scalar helpers of rule (E) that the scalar reference
 * and the SIMD tails both use (ALGORITHMS.md §0.3, §1.2, §1.3). Static inline only, so that every
 * kernel file can include it under its own ISA flags (STYLE.md "Writing a SIMD kernel", 3). */
#ifndef QV_SIMD_KERNEL_IMPL_H
#define QV_SIMD_KERNEL_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fp.h"
#include "simd.h"

/* ---- rule (E) scalar helpers ----------------------------------------------------------------- */

/* Rounds an fp32 result to T (identity for F32), round half to even, NaN kept (fp.h). */
static inline float qv_round_t(float v, qv_dtype dt)
{
    if (dt == QV_BF16)
        return qv_round_bf16(v);
    if (dt == QV_F16)
        return qv_round_f16(v);
    return v;
}

static inline size_t qv_t_size(qv_dtype dt) { return dt == QV_F32 ? 4 : 2; }

/* Element i of a T buffer, widened exactly to fp32. */
static inline float qv_t_load(const void *p, qv_dtype dt, int64_t i)
{
    if (dt == QV_F32)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == QV_BF16 ? qv_bf16_to_f32(h) : qv_f16_to_f32(h);
}

/* Stores v into element i of a T (or F32) buffer; v must already be a T value when dt != F32. */
static inline void qv_t_store(void *p, qv_dtype dt, int64_t i, float v)
{
    if (dt == QV_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = dt == QV_BF16 ? qv_f32_to_bf16(v) : qv_f32_to_f16(v);
}

/* torch.clamp: NaN stays NaN; at equality the value itself is kept (so −0 survives a clamp at 0). */
static inline float qv_clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* ---- fake quantization of one group (§1.2, §1.3) -------------------------------------------- */

/* Quantizer parameters of one group, all T values. Symmetric groups have zero = +0. */
typedef struct qv_fq_gp {
    float scale, zero, qmin, qmax;
} qv_fq_gp;

/* From the group's exact statistics: lo = min, hi = max (asymmetric), or hi = max |v| (symmetric,
 * lo unused). NaN statistics give a NaN scale (torch.clamp propagates NaN). */
static inline void qv_fq_gparams(qv_fq_gp *g, float lo, float hi, const qv_fq *p, qv_dtype dt)
{
    if (p->zero_point) {
        float qmax = (float)((1 << p->n_bits) - 1);
        float range = qv_round_t(hi - lo, dt);
        range = qv_round_t(range < 1e-5f ? 1e-5f : range, dt);
        g->scale = qv_round_t(p->division == QV_FQ_DIV_CUDA ? range * (1.0f / qmax) : range / qmax, dt);
        float z = qv_round_t(-nearbyintf(qv_round_t(lo / g->scale, dt)), dt);
        g->zero = qv_clampf(z, 0.0f, qmax);
        g->qmin = 0.0f;
        g->qmax = qmax;
    } else {
        float qmax = (float)((1 << (p->n_bits - 1)) - 1);
        float m = qv_round_t(hi < 1e-5f ? 1e-5f : hi, dt);
        g->scale = qv_round_t(p->division == QV_FQ_DIV_CUDA ? m * (1.0f / qmax) : m / qmax, dt);
        g->zero = 0.0f;
        g->qmin = -qmax - 1.0f;
        g->qmax = qmax;
    }
}

/* The clamped integer code q of v (a T value), as a T value: clamp(round(v / s) + z, qmin, qmax). */
static inline float qv_fq_code(float v, const qv_fq_gp *g, qv_dtype dt)
{
    float q = qv_round_t(nearbyintf(qv_round_t(v / g->scale, dt)) + g->zero, dt);
    return qv_clampf(q, g->qmin, g->qmax);
}

/* The fake-quantized value of v: (q − z) · s, each op rounded to T. */
static inline float qv_fq_elem(float v, const qv_fq_gp *g, qv_dtype dt)
{
    float q = qv_fq_code(v, g, dt);
    return qv_round_t(qv_round_t(q - g->zero, dt) * g->scale, dt);
}

/* The value the quantizer sees: w, T(w · s) or T(w / s) in the fused forms. */
static inline float qv_fq_input(const void *w, const void *s, qv_dtype dt, qv_fq_scale mode, int64_t i)
{
    float v = qv_t_load(w, dt, i);
    if (mode == QV_FQ_SCALE_NONE)
        return v;
    return qv_round_t(mode == QV_FQ_SCALE_DIV ? v / qv_t_load(s, dt, i) : v * qv_t_load(s, dt, i), dt);
}

/* The final value written: o, or T(o / s) for QV_FQ_SCALE_MULDIV. */
static inline float qv_fq_output(float o, const void *s, qv_dtype dt, qv_fq_scale mode, int64_t i)
{
    return mode == QV_FQ_SCALE_MULDIV ? qv_round_t(o / qv_t_load(s, dt, i), dt) : o;
}

/* Exact statistics of a group as torch.amin/amax see them (NaN propagates): lo = min and hi = max
 * (asymmetric), or hi = max |v| (symmetric; lo = +Inf). */
static inline void qv_fq_group_stats(const void *w, const void *s, qv_dtype dt, qv_fq_scale mode, int64_t len,
                                     bool zero_point, float *lo_out, float *hi_out)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < len; i++) {
        float v = qv_fq_input(w, s, dt, mode, i);
        if (zero_point) {
            if (isnan(v) || v < lo)
                lo = isnan(lo) ? lo : v;
            if (isnan(v) || v > hi)
                hi = isnan(hi) ? hi : v;
        } else {
            float a = fabsf(v);
            if (isnan(a) || a > hi)
                hi = isnan(hi) ? hi : a;
        }
    }
    *lo_out = lo;
    *hi_out = hi;
}

/* One group of len elements starting at w / s / out (already offset to the group), scalar and
 * literal: the reference for every variant, and the SIMD variants' path for non-finite groups. */
void qv_fq_group_ref(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                     int64_t len, const qv_fq *p);

/* ---- loss: the canonical 16-lane order (simd.h, qv_loss_rows_fn) ---------------------------- */

#define QV_LOSS_LANES 16

/* l[i] += l[i + w] for w = 8, 4, 2, 1; returns l[0]. Destroys l. */
static inline double qv_loss_lanes_reduce(double *l)
{
    for (int w = QV_LOSS_LANES / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            l[i] = l[i] + l[i + w];
    return l[0];
}

/* ---- the variants -------------------------------------------------------------------------- */

#define QV_DECLARE_KERNELS(isa)                                                                                   \
    void qv_fq_rows_##isa(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode, \
                          int64_t rows, int64_t cols, const qv_fq *p);                                            \
    void qv_loss_rows_##isa(double *row_abs, double *row_sq, const void *a, const void *b, qv_dtype dt,           \
                            int64_t rows, int64_t cols, const uint8_t *row_mask);                                 \
    void qv_absmean_acc_##isa(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld);   \
    void qv_f32_to_bf16_##isa(uint16_t *dst, const float *src, size_t n);                                         \
    void qv_bf16_to_f32_##isa(float *dst, const uint16_t *src, size_t n);                                         \
    void qv_f32_to_f16_##isa(uint16_t *dst, const float *src, size_t n);                                          \
    void qv_f16_to_f32_##isa(float *dst, const uint16_t *src, size_t n);

QV_DECLARE_KERNELS(ref)
QV_DECLARE_KERNELS(avx2)
QV_DECLARE_KERNELS(avx512)
QV_DECLARE_KERNELS(emu512)

#endif /* QV_SIMD_KERNEL_IMPL_H */
