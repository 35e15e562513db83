/* gemm_dp_body.h — the AVX-512-BF16 GEMM kernel of gemm.h, written once in the VDPBF16PS
 * primitives of dp_avx512bf16.h (instance gemm_avx512bf16.c) or dp_emu.h (gemm_emu_avx2.c).
 * Scalar twin: qv_gemm_model_dp (gemm_ref.c), bit for bit.
 *
 * Micro-tile: QV_DP_MR rows x 32 columns in 2·QV_DP_MR 16-lane accumulators; per k pair two
 * pair rows of the packed panel (one per n-block) meet the broadcast pair (x[2j], x[2j+1]) of
 * each row. Loop order as gemm_tile_body.h (m-block → k-block → column pair → k pair), with the
 * accumulators going to Y between k-blocks, so the per-output order is the plain pair order.
 * Tail strategy: M is a multiple of QV_DP_MR (the driver pads); a column pair that runs past
 * n_valid accumulates in a local buffer and only its valid columns are copied out. */
#ifndef QV_SIMD_GEMM_DP_BODY_H
#define QV_SIMD_GEMM_DP_BODY_H

#include "gemm_impl.h"

#define QV_DP_MR 12

static inline void gemmd_run(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                             const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc)
{
    const int64_t kt = K / QV_GEMM_KT, kcb = kc >= QV_GEMM_KT ? kc / QV_GEMM_KT : kt;
    const int64_t blk = QV_GEMM_NB * K;
    float part[QV_DP_MR * 32];
    for (int64_t m0 = 0; m0 < M; m0 += QV_DP_MR) {
        const uint16_t *xm = x + m0 * ldx;
        for (int64_t k0 = 0; k0 < kt; k0 += kcb) {
            const int64_t k1 = qv_gemm_min(kt, k0 + kcb);
            for (int64_t nt = 0; nt < nb && nt * 16 < n_valid; nt += 2) {
                const bool full = (nt + 2) * 16 <= n_valid;
                float *c = full ? y + m0 * ldy + nt * 16 : part;
                const int64_t ldc = full ? ldy : 32;
                const uint16_t *b0 = panel + nt * blk, *b1 = b0 + blk;
                qv_dacc acc[QV_DP_MR][2];
                for (int r = 0; r < QV_DP_MR; r++) {
                    acc[r][0] = k0 == 0 ? qv_d_zero() : qv_d_load(c + r * ldc);
                    acc[r][1] = k0 == 0 ? qv_d_zero() : qv_d_load(c + r * ldc + 16);
                }
                for (int64_t j = k0 * 16; j < k1 * 16; j++) {
                    const qv_dpair p0 = qv_d_pairs(b0 + j * 32), p1 = qv_d_pairs(b1 + j * 32);
                    for (int r = 0; r < QV_DP_MR; r++) {
                        const qv_dpair a = qv_d_bcast(xm + r * ldx + 2 * j);
                        acc[r][0] = qv_d_dp(acc[r][0], a, p0);
                        acc[r][1] = qv_d_dp(acc[r][1], a, p1);
                    }
                }
                for (int r = 0; r < QV_DP_MR; r++) {
                    qv_d_store(c + r * ldc, acc[r][0]);
                    qv_d_store(c + r * ldc + 16, acc[r][1]);
                }
                if (k1 == kt)
                    qv_gemm_finish(c, ldc, y + m0 * ldy + nt * 16, ldy, QV_DP_MR, qv_gemm_min(32, n_valid - nt * 16),
                                bias ? bias + nt * 16 : NULL, !full);
            }
        }
    }
}

#endif /* QV_SIMD_GEMM_DP_BODY_H */
