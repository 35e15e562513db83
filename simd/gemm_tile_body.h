/* gemm_tile_body.h — the AMX GEMM kernel of gemm.h, written once in the tile primitives of
 * tile_amx.h (instance gemm_amx.c) or tile_emu.h (gemm_emu_avx2.c). Scalar twin:
 * qv_gemm_model_amx (gemm_ref.c), bit for bit.
 *
 * Micro-tile: 32 rows x 32 columns in four 16x16 f32 accumulator tiles (tmm0-3), fed per 32-k
 * step by two A tiles (tmm4-5) and two B tiles of the packed panel (tmm6-7, 1 KiB each,
 * contiguous). Loop order m-block (up to GEMMT_MS x 32 rows) → column group (up to GEMMT_CG
 * column pairs) → k-block (kc, at most GEMMT_KCT tiles) → column pair → 32-row sub-block →
 * k-step: a column pair's B k-slice is read from L2 once per m-block, not once per 32 rows.
 *
 * Two copies keep every tile access at a 64-byte row pitch, away from the cache-set conflicts a
 * row pitch of a multiple of 4 KiB causes (K = 4096 or 14336 BF16, N = 4096 or 14336 f32: all 16
 * rows of a tile in one L1 set): the k-block's 32 rows of X are first copied into `ap`, tile after
 * tile (the A operand then comes from L1 for every column pair), and the accumulators of the
 * column group live in `cp` (32 rows x 32 columns per pair, 128-byte rows) across k-blocks and
 * go to Y, with the bias, once at the end. Spilling accumulators between k-blocks is exact
 * (f32 in, f32 out), so the per-output order is the plain k order whatever kc is.
 * Tail strategy: M is a multiple of 32 (the driver pads); columns past n_valid are computed in
 * `cp` and never written. */
#ifndef QV_SIMD_GEMM_TILE_BODY_H
#define QV_SIMD_GEMM_TILE_BODY_H

#include "gemm_impl.h"

#define GEMMT_KCT 16 /* k tiles per k-block at most: A block 32 x 512 BF16 = 32 KiB per 32 rows */
#define GEMMT_CG 8   /* column pairs per group: accumulators 8 x 4 KiB per 32 rows */
#define GEMMT_MS 4   /* 32-row sub-blocks per m-block: each B tile pair is loaded once for 128 rows */

/* Per thread: the tile-ordered A block and the accumulators of one m-block (128 KiB each). */
static _Thread_local _Alignas(64) uint16_t gemmt_ap[GEMMT_MS * GEMMT_KCT * 2 * 512];
static _Thread_local _Alignas(64) float gemmt_cp[GEMMT_MS * GEMMT_CG * 32 * 32];

static inline void gemmt_run(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                             const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc)
{
    uint16_t *ap = gemmt_ap;
    float *cp = gemmt_cp;
    qv_tilecfg cfg;
    qv_tilecfg_full(&cfg);
    QV_TILE_CONFIG(&cfg);
    const int64_t kt = K / QV_GEMM_KT;
    const int64_t kcb = kc >= QV_GEMM_KT ? qv_gemm_min(kc / QV_GEMM_KT, GEMMT_KCT) : qv_gemm_min(kt, GEMMT_KCT);
    const int64_t blk = QV_GEMM_NB * K; /* BF16 elements per n-block */
    const int64_t pairs = qv_gemm_min(nb / 2, (n_valid + 31) / 32);
    const int64_t asub = GEMMT_KCT * 1024, csub = GEMMT_CG * 1024; /* per 32-row sub-block */
    for (int64_t m0 = 0; m0 < M; m0 += 32 * GEMMT_MS) {
        const int64_t ns = qv_gemm_min(GEMMT_MS, (M - m0) / 32);
        const uint16_t *xm = x + m0 * ldx;
        for (int64_t g0 = 0; g0 < pairs; g0 += GEMMT_CG) {
            const int64_t g1 = qv_gemm_min(pairs, g0 + GEMMT_CG);
            for (int64_t k0 = 0; k0 < kt; k0 += kcb) {
                const int64_t k1 = qv_gemm_min(kt, k0 + kcb);
                /* A tiles: [sub-block][k tile][row half][16 rows][32] */
                for (int64_t r = 0; r < 32 * ns; r++)
                    for (int64_t kb = k0; kb < k1; kb++)
                        memcpy(ap + (r / 32) * asub + ((kb - k0) * 2 + (r % 32) / 16) * 512 + (r % 16) * 32,
                               xm + r * ldx + kb * QV_GEMM_KT, QV_GEMM_KT * sizeof *ap);
                for (int64_t pr = g0; pr < g1; pr++) {
                    const uint16_t *b0 = panel + 2 * pr * blk, *b1 = b0 + blk;
                    for (int64_t sb = 0; sb < ns; sb++) {
                        float *c = cp + sb * csub + (pr - g0) * 1024;
                        if (k0 == 0) {
                            QV_TILE_ZERO(0);
                            QV_TILE_ZERO(1);
                            QV_TILE_ZERO(2);
                            QV_TILE_ZERO(3);
                        } else {
                            QV_TILE_LOAD(0, c, 128);
                            QV_TILE_LOAD(1, c + 16, 128);
                            QV_TILE_LOAD(2, c + 512, 128);
                            QV_TILE_LOAD(3, c + 528, 128);
                        }
                        const uint16_t *a = ap + sb * asub;
                        for (int64_t kb = k0; kb < k1; kb++, a += 1024) {
                            QV_TILE_LOAD(4, a, 64);
                            QV_TILE_LOAD(5, a + 512, 64);
                            QV_TILE_LOAD(6, b0 + kb * 512, 64);
                            QV_TILE_LOAD(7, b1 + kb * 512, 64);
                            QV_TILE_DPBF16(0, 4, 6);
                            QV_TILE_DPBF16(1, 4, 7);
                            QV_TILE_DPBF16(2, 5, 6);
                            QV_TILE_DPBF16(3, 5, 7);
                        }
                        QV_TILE_STORE(0, c, 128);
                        QV_TILE_STORE(1, c + 16, 128);
                        QV_TILE_STORE(2, c + 512, 128);
                        QV_TILE_STORE(3, c + 528, 128);
                    }
                }
            }
            for (int64_t sb = 0; sb < ns; sb++)
                for (int64_t pr = g0; pr < g1; pr++) {
                    const int64_t col = pr * 32;
                    qv_gemm_finish(cp + sb * csub + (pr - g0) * 1024, 32, y + (m0 + 32 * sb) * ldy + col, ldy, 32,
                                   qv_gemm_min(32, n_valid - col), bias ? bias + col : NULL, true);
                }
        }
    }
    QV_TILE_RELEASE();
}

#endif /* QV_SIMD_GEMM_TILE_BODY_H */
