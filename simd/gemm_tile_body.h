/* gemm_tile_body.h — the AMX GEMM kernel of gemm.h, written once in the tile primitives of
 * tile_amx.h (instance gemm_amx.c) or tile_emu.h (gemm_emu_avx2.c). Scalar twin:
 * qv_gemm_model_amx (gemm_ref.c), bit for bit.
 *
 * Micro-tile: 32 rows x 32 columns in four 16x16 f32 accumulator tiles (tmm0-3), fed per 32-k
 * step by two A tiles read straight from the BF16 rows of X (tmm4-5, stride = the row pitch) and
 * two B tiles of the packed panel (tmm6-7, 1 KiB each, contiguous). Loop order m-block → k-block
 * (kc) → column pair → k-step: one 32-row slice of X per k-block stays in L1 while it meets every
 * column pair of the panel; accumulators go to Y between k-blocks (exact: f32 in, f32 out), so
 * the per-output order is the plain k order whatever kc is.
 * Tail strategy: M is a multiple of 32 (the driver pads); a column pair that runs past n_valid
 * accumulates in a local 32x32 buffer and only its valid columns are copied out. */
#ifndef QV_SIMD_GEMM_TILE_BODY_H
#define QV_SIMD_GEMM_TILE_BODY_H

#include "gemm_impl.h"

static inline void gemmt_run(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                             const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc)
{
    qv_tilecfg cfg;
    qv_tilecfg_full(&cfg);
    QV_TILE_CONFIG(&cfg);
    const int64_t kt = K / QV_GEMM_KT, kcb = kc >= QV_GEMM_KT ? kc / QV_GEMM_KT : kt;
    const int64_t blk = QV_GEMM_NB * K; /* BF16 elements per n-block */
    const int64_t sx = ldx * 2, sy = ldy * 4;
    float part[32 * 32];
    for (int64_t m0 = 0; m0 < M; m0 += 32) {
        const uint16_t *x0 = x + m0 * ldx, *x1 = x0 + 16 * ldx;
        for (int64_t k0 = 0; k0 < kt; k0 += kcb) {
            const int64_t k1 = qv_gemm_min(kt, k0 + kcb);
            for (int64_t nt = 0; nt < nb && nt * 16 < n_valid; nt += 2) {
                const bool full = (nt + 2) * 16 <= n_valid;
                float *c = full ? y + m0 * ldy + nt * 16 : part;
                const int64_t sc = full ? sy : 32 * 4, ldc = sc / 4;
                const uint16_t *b0 = panel + nt * blk, *b1 = b0 + blk;
                if (k0 == 0) {
                    QV_TILE_ZERO(0);
                    QV_TILE_ZERO(1);
                    QV_TILE_ZERO(2);
                    QV_TILE_ZERO(3);
                } else {
                    QV_TILE_LOAD(0, c, sc);
                    QV_TILE_LOAD(1, c + 16, sc);
                    QV_TILE_LOAD(2, c + 16 * ldc, sc);
                    QV_TILE_LOAD(3, c + 16 * ldc + 16, sc);
                }
                for (int64_t kb = k0; kb < k1; kb++) {
                    QV_TILE_LOAD(4, x0 + kb * QV_GEMM_KT, sx);
                    QV_TILE_LOAD(5, x1 + kb * QV_GEMM_KT, sx);
                    QV_TILE_LOAD(6, b0 + kb * 512, 64);
                    QV_TILE_LOAD(7, b1 + kb * 512, 64);
                    QV_TILE_DPBF16(0, 4, 6);
                    QV_TILE_DPBF16(1, 4, 7);
                    QV_TILE_DPBF16(2, 5, 6);
                    QV_TILE_DPBF16(3, 5, 7);
                }
                QV_TILE_STORE(0, c, sc);
                QV_TILE_STORE(1, c + 16, sc);
                QV_TILE_STORE(2, c + 16 * ldc, sc);
                QV_TILE_STORE(3, c + 16 * ldc + 16, sc);
                if (k1 == kt)
                    qv_gemm_finish(c, ldc, y + m0 * ldy + nt * 16, ldy, 32, qv_gemm_min(32, n_valid - nt * 16),
                                bias ? bias + nt * 16 : NULL, !full);
            }
        }
    }
    QV_TILE_RELEASE();
}

#endif /* QV_SIMD_GEMM_TILE_BODY_H */
