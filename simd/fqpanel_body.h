/* fqpanel_body.h — fake quantization of packed weight n-blocks (the layout of gemm.h), written once
 * in the 16-lane primitives of vec_avx512.h (instances gemm_amx.c, gemm_avx512bf16.c) or
 * vec_emu512.h (gemm_emu_avx2.c). Scalar twin: fq_ref.c on the unpacked rows (qv_fq_rows_ref,
 * BF16 in and out; ALGORITHMS.md §1.2, §1.3, §3.2, §5.6).
 *
 * Lane n of every vector is output channel n of the n-block, so a group's statistics are
 * vertical min/max over its k pairs and need no horizontal step; s[k] is a broadcast. Per lane
 * and group the operations are fq_body.h's pass 1 and pass 2, same primitives, same order, so
 * each lane computes exactly what qv_fq_group_ref computes for that row's group; the scale and
 * zero point come from the same scalar qv_fq_gparams, one lane at a time.
 * Tail strategy: none along k (K % 32 == 0 and groups are even, so a pair never straddles two
 * groups). A lane whose group holds NaN or ±Inf (after the ⊙ s) is recomputed by
 * qv_fq_group_ref on a gathered copy of that row's group; padding lanes (channels ≥ n_valid)
 * are written as +0. */
#ifndef QV_SIMD_FQPANEL_BODY_H
#define QV_SIMD_FQPANEL_BODY_H

#include "fq_body.h"
#include "gemm_impl.h"

_Static_assert(QV_VL == QV_GEMM_NB, "the packed layout has one n-block per 16-lane vector");

/* T(v ⊙ s) of the fused forms (v unchanged for NONE); nan collects NaN before the rounding. */
QV_AI qv_vf fqp_input(qv_vf v, qv_vf sv, qv_fq_scale mode, qv_vnan *nan)
{
    if (mode != QV_FQ_SCALE_NONE)
        v = qv_v_mul(v, sv);
    if (nan)
        *nan = qv_v_nan_acc(*nan, v);
    return mode != QV_FQ_SCALE_NONE ? qv_v_round_bf16(v) : v;
}

/* pass 2 of fq_body.h on one vector: the fake-quantized value, T(o ⊘ s) for MULDIV. */
QV_AI qv_vf fqp_quant(qv_vf v, qv_vf sv, qv_vf vscale, qv_vf vzero, qv_vf vqmin, qv_vf vqmax, qv_fq_scale mode,
                      bool zp)
{
    qv_vf q = qv_v_rint(qv_v_round_bf16(qv_v_div(v, vscale)));
    q = qv_v_add(q, vzero); /* + z, or the reference's + 0 that turns −0 into +0 */
    q = qv_v_min(vqmax, qv_v_max(vqmin, q));
    if (zp)
        q = qv_v_sub(q, vzero);
    qv_vf o = qv_v_round_bf16(qv_v_mul(q, vscale));
    if (mode == QV_FQ_SCALE_MULDIV)
        o = qv_v_round_bf16_nan(qv_v_div(o, sv)); /* s may hold 0: 0/0 is NaN */
    return o;
}

/* One n-block: w, dst = [K/2 pairs][16 lanes] dwords. */
QV_AI void fqp_block(uint32_t *dst, const uint32_t *w, int64_t K, const uint16_t *s, qv_fq_scale mode,
                     const qv_fq *p, bool zp, int n_valid, uint16_t *scratch)
{
    const int64_t G = p->group > 0 ? p->group : K, gp = G / 2;
    qv_fq_gp g0;
    qv_fq_gparams(&g0, 0.0f, 0.0f, p, QV_BF16); /* qmin/qmax only */
    const qv_vf vqmin = qv_v_set1(g0.qmin), vqmax = qv_v_set1(g0.qmax);
    const unsigned valid = n_valid >= 16 ? 0xffffu : (1u << n_valid) - 1u;
    qv_vf se = qv_v_set1(1.0f), so = se;

    for (int64_t j0 = 0; j0 < K / 2; j0 += gp) {
        /* pass 1: statistics per lane */
        qv_vf vlo = qv_v_set1(INFINITY), vhi = qv_v_set1(-INFINITY);
        qv_vnan nan = qv_v_nan_none();
        for (int64_t j = j0; j < j0 + gp; j++) {
            qv_vf ve, vo;
            qv_v_load_bf16_pairs(w + j * 16, &ve, &vo);
            if (mode != QV_FQ_SCALE_NONE) {
                se = qv_v_set1(qv_bf16_to_f32(s[2 * j]));
                so = qv_v_set1(qv_bf16_to_f32(s[2 * j + 1]));
            }
            ve = fqp_input(ve, se, mode, &nan);
            vo = fqp_input(vo, so, mode, &nan);
            if (zp) {
                vlo = qv_v_min(qv_v_min(vlo, ve), vo);
                vhi = qv_v_max(qv_v_max(vhi, ve), vo);
            } else {
                vhi = qv_v_max(qv_v_max(vhi, qv_v_abs(ve)), qv_v_abs(vo));
            }
        }
        float lo[16], hi[16], sc[16], ze[16];
        qv_v_store_f32(lo, vlo);
        qv_v_store_f32(hi, vhi);
        unsigned bad = qv_v_nan_mask(nan);
        for (int n = 0; n < 16; n++) {
            if (!(bad >> n & 1u) && !isinf(hi[n]) && !(zp && isinf(lo[n]))) {
                qv_fq_gp g;
                qv_fq_gparams(&g, lo[n], hi[n], p, QV_BF16);
                sc[n] = g.scale;
                ze[n] = g.zero;
            } else {
                bad |= 1u << n;
                sc[n] = 1.0f;
                ze[n] = 0.0f;
            }
        }
        bad &= valid;

        /* pass 2: quantize */
        const qv_vf vscale = qv_v_load_f32(sc), vzero = qv_v_load_f32(ze);
        for (int64_t j = j0; j < j0 + gp; j++) {
            qv_vf ve, vo;
            qv_v_load_bf16_pairs(w + j * 16, &ve, &vo);
            if (mode != QV_FQ_SCALE_NONE) {
                se = qv_v_set1(qv_bf16_to_f32(s[2 * j]));
                so = qv_v_set1(qv_bf16_to_f32(s[2 * j + 1]));
            }
            ve = fqp_quant(fqp_input(ve, se, mode, NULL), se, vscale, vzero, vqmin, vqmax, mode, zp);
            vo = fqp_quant(fqp_input(vo, so, mode, NULL), so, vscale, vzero, vqmin, vqmax, mode, zp);
            qv_v_store_bf16_pairs(dst + j * 16, ve, vo);
        }

        /* lanes whose group is not finite: the scalar reference on a gathered copy */
        for (int n = 0; bad && n < 16; n++) {
            if (!(bad >> n & 1u))
                continue;
            uint16_t *in = scratch, *out = scratch + G;
            for (int64_t j = 0; j < gp; j++) {
                in[2 * j] = (uint16_t)(w[(j0 + j) * 16 + n] & 0xffffu);
                in[2 * j + 1] = (uint16_t)(w[(j0 + j) * 16 + n] >> 16);
            }
            qv_fq_group_ref(out, QV_BF16, in, QV_BF16, s ? s + 2 * j0 : NULL, mode, G, p);
            for (int64_t j = 0; j < gp; j++)
                dst[(j0 + j) * 16 + n] = (uint32_t)out[2 * j] | (uint32_t)out[2 * j + 1] << 16;
        }
    }
    if (n_valid < 16)
        for (int64_t j = 0; j < K / 2; j++)
            for (int n = n_valid; n < 16; n++)
                dst[j * 16 + n] = 0;
}

QV_AI void fqp_panel_t(uint16_t *dst, const uint16_t *w, int64_t nb, int64_t K, int64_t n_valid, const uint16_t *s,
                       qv_fq_scale mode, const qv_fq *p, bool zp, uint16_t *scratch)
{
    const int64_t blk = QV_GEMM_NB * K; /* BF16 elements per n-block */
    for (int64_t b = 0; b < nb; b++) {
        const int64_t v = n_valid - 16 * b;
        if (v <= 0)
            memset(dst + b * blk, 0, (size_t)blk * sizeof *dst);
        else
            fqp_block((uint32_t *)(dst + b * blk), (const uint32_t *)(w + b * blk), K, s, mode, p, zp,
                      (int)(v > 16 ? 16 : v), scratch);
    }
}

/* Expands mode and zero_point into branch-free instances. */
static inline void fqp_panel(uint16_t *dst, const uint16_t *w, int64_t nb, int64_t K, int64_t n_valid,
                             const uint16_t *s, qv_fq_scale mode, const qv_fq *p, uint16_t *scratch)
{
#define QV_FQP_ZP(m)                                                                  \
    (p->zero_point ? fqp_panel_t(dst, w, nb, K, n_valid, s, m, p, true, scratch)      \
                   : fqp_panel_t(dst, w, nb, K, n_valid, s, m, p, false, scratch))
    if (mode == QV_FQ_SCALE_MULDIV)
        QV_FQP_ZP(QV_FQ_SCALE_MULDIV);
    else if (mode == QV_FQ_SCALE_MUL)
        QV_FQP_ZP(QV_FQ_SCALE_MUL);
    else
        QV_FQP_ZP(QV_FQ_SCALE_NONE);
#undef QV_FQP_ZP
}

#endif /* QV_SIMD_FQPANEL_BODY_H */
