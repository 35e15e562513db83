/* fq_body.h — the SIMD body of fake quantization and of the fused scale-search form, written
 * once in the primitives of a vec_<isa>.h (included first) and instantiated by fq_avx2.c,
 * fq_avx512.c and emu512_avx2.c. Scalar twin: fq_ref.c (ALGORITHMS.md §1, §3.2, §5.6).
 *
 * Per group: pass 1 loads the group (T(w ⊙ s) or T(w ⊘ s) in the fused forms), takes its min/max (or absmax)
 * and notes NaN; a group with NaN or ±Inf goes to qv_fq_group_ref, so non-finite input gives the
 * reference's bits on every ISA. The scale and zero point come from the same scalar
 * qv_fq_gparams as the reference. Pass 2 recomputes the inputs and quantizes QV_VL lanes at a
 * time. Tail strategy: the last len % QV_VL elements of each group go through the scalar
 * qv_fq_elem, in both passes.
 *
 * Two roundings of the reference are skipped because they are exact on finite groups:
 *   T(round(v / s) + z) before the clamp to [0, qmax]: round(v/s) and z are integers; a sum in
 *     [0, 255] is exact in T, one above 255 is >= 256 and one below 0 is <= −1 before and after
 *     rounding, so the clamp gives the same value (also for ±Inf);
 *   T(q − z): both are integers in [0, 255], the difference is exact.
 * The clamp is min(qmax, max(qmin, q)): MINPS/MAXPS return their second operand at equality, so
 * q is kept as torch.clamp keeps it (the sign of a zero survives, as in qv_clampf). */
#ifndef QV_SIMD_FQ_BODY_H
#define QV_SIMD_FQ_BODY_H

#include "kernel_impl.h"

#define QV_AI static inline __attribute__((always_inline))

QV_AI qv_vf fqb_load(const void *p, qv_dtype dt, int64_t i)
{
    if (dt == QV_F32)
        return qv_v_load_f32((const float *)p + i);
    if (dt == QV_BF16)
        return qv_v_load_bf16((const uint16_t *)p + i);
    return qv_v_load_f16((const uint16_t *)p + i);
}

/* v must be a T value of dt (or any fp32 value when dt is F32). */
QV_AI void fqb_store(void *p, qv_dtype dt, int64_t i, qv_vf v)
{
    if (dt == QV_F32)
        qv_v_store_f32((float *)p + i, v);
    else if (dt == QV_BF16)
        qv_v_store_bf16((uint16_t *)p + i, v);
    else
        qv_v_store_f16((uint16_t *)p + i, v);
}

/* T rounding of a lane that is not NaN */
QV_AI qv_vf fqb_round(qv_vf v, qv_dtype dt)
{
    if (dt == QV_BF16)
        return qv_v_round_bf16(v);
    if (dt == QV_F16)
        return qv_v_round_f16(v);
    return v;
}

/* T rounding of any lane (NaN as qv_round_t) */
QV_AI qv_vf fqb_round_nan(qv_vf v, qv_dtype dt)
{
    if (dt == QV_BF16)
        return qv_v_round_bf16_nan(v);
    if (dt == QV_F16)
        return qv_v_round_f16(v);
    return v;
}

/* One group of len elements at w / s / out (offset to the group). */
QV_AI void fqb_group(void *out, qv_dtype odt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                     int64_t len, const qv_fq *p, bool zp)
{
    const int64_t nv = len - len % QV_VL;

    /* pass 1: statistics */
    qv_vf vlo = qv_v_set1(INFINITY), vhi = qv_v_set1(-INFINITY);
    qv_vnan nan = qv_v_nan_none();
    for (int64_t i = 0; i < nv; i += QV_VL) {
        qv_vf v = fqb_load(w, dt, i);
        if (mode == QV_FQ_SCALE_DIV)
            v = qv_v_div(v, fqb_load(s, dt, i));
        else if (mode != QV_FQ_SCALE_NONE)
            v = qv_v_mul(v, fqb_load(s, dt, i));
        nan = qv_v_nan_acc(nan, v); /* before rounding: qv_v_round_bf16 does not keep NaN */
        v = mode != QV_FQ_SCALE_NONE ? fqb_round(v, dt) : v;
        if (zp) {
            vlo = qv_v_min(vlo, v);
            vhi = qv_v_max(vhi, v);
        } else {
            vhi = qv_v_max(vhi, qv_v_abs(v));
        }
    }
    float lo = qv_v_hmin(vlo), hi = qv_v_hmax(vhi);
    bool bad = qv_v_nan_any(nan);
    for (int64_t i = nv; i < len; i++) {
        float v = qv_fq_input(w, s, dt, mode, i);
        bad |= isnan(v);
        if (zp) {
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        } else {
            float a = fabsf(v);
            hi = a > hi ? a : hi;
        }
    }
    if (bad || isinf(hi) || (zp && isinf(lo))) {
        qv_fq_group_ref(out, odt, w, dt, s, mode, len, p);
        return;
    }
    qv_fq_gp g;
    qv_fq_gparams(&g, lo, hi, p, dt);

    /* pass 2: quantize */
    const qv_vf vscale = qv_v_set1(g.scale), vzero = qv_v_set1(g.zero);
    const qv_vf vqmin = qv_v_set1(g.qmin), vqmax = qv_v_set1(g.qmax);
    for (int64_t i = 0; i < nv; i += QV_VL) {
        qv_vf v = fqb_load(w, dt, i), sv = vscale;
        if (mode != QV_FQ_SCALE_NONE) {
            sv = fqb_load(s, dt, i);
            v = fqb_round(mode == QV_FQ_SCALE_DIV ? qv_v_div(v, sv) : qv_v_mul(v, sv), dt);
        }
        qv_vf q = qv_v_rint(fqb_round(qv_v_div(v, vscale), dt));
        q = qv_v_add(q, vzero); /* + z, or the reference's + 0 that turns −0 into +0 */
        q = qv_v_min(vqmax, qv_v_max(vqmin, q));
        if (zp)
            q = qv_v_sub(q, vzero);
        qv_vf o = fqb_round(qv_v_mul(q, vscale), dt);
        if (mode == QV_FQ_SCALE_MULDIV)
            o = fqb_round_nan(qv_v_div(o, sv), dt); /* s may hold 0: 0/0 is NaN */
        fqb_store(out, odt, i, o);
    }
    for (int64_t i = nv; i < len; i++) {
        float v = qv_fq_input(w, s, dt, mode, i);
        qv_t_store(out, odt, i, qv_fq_output(qv_fq_elem(v, &g, dt), s, dt, mode, i));
    }
}

QV_AI void fqb_rows_t(void *out, qv_dtype odt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                      int64_t rows, int64_t cols, const qv_fq *p, bool zp)
{
    const int64_t g = p->group > 0 ? p->group : cols;
    const size_t isz = qv_t_size(dt), osz = qv_t_size(odt);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j += g) {
            size_t e = (size_t)(r * cols + j);
            fqb_group((char *)out + e * osz, odt, (const char *)w + e * isz, dt,
                      s ? (const char *)s + (size_t)j * isz : NULL, mode, g, p, zp);
        }
}

/* Expands the constant arguments so that each combination is compiled without branches. */
#define QV_FQB_MODES(odt, dt)                                                                       \
    do {                                                                                            \
        if (mode == QV_FQ_SCALE_NONE)                                                               \
            p->zero_point ? fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_NONE, rows, cols, p, true)   \
                          : fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_NONE, rows, cols, p, false); \
        else if (mode == QV_FQ_SCALE_MUL)                                                           \
            p->zero_point ? fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_MUL, rows, cols, p, true)    \
                          : fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_MUL, rows, cols, p, false);  \
        else if (mode == QV_FQ_SCALE_MULDIV)                                                        \
            p->zero_point ? fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_MULDIV, rows, cols, p, true) \
                          : fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_MULDIV, rows, cols, p, false); \
        else                                                                                        \
            p->zero_point ? fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_DIV, rows, cols, p, true)    \
                          : fqb_rows_t(out, odt, w, dt, s, QV_FQ_SCALE_DIV, rows, cols, p, false);  \
    } while (0)

static inline void fqb_rows(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                            int64_t rows, int64_t cols, const qv_fq *p)
{
    if (dt == QV_F32)
        QV_FQB_MODES(QV_F32, QV_F32);
    else if (dt == QV_BF16 && out_dt == QV_F32)
        QV_FQB_MODES(QV_F32, QV_BF16);
    else if (dt == QV_BF16)
        QV_FQB_MODES(QV_BF16, QV_BF16);
    else if (out_dt == QV_F32)
        QV_FQB_MODES(QV_F32, QV_F16);
    else
        QV_FQB_MODES(QV_F16, QV_F16);
}

#endif /* QV_SIMD_FQ_BODY_H */
