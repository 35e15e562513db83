/* tile_emu.h — the AMX tile primitives of gemm_tile_body.h emulated in plain C (for hosts without
 * AMX: the tests run the AMX kernel source on it). Semantics from the Intel SDM (LDTILECFG,
 * TILELOADD, TILESTORED, TILEZERO, TILERELEASE, TDPBF16PS):
 *   - eight tile registers of 16 rows x 64 bytes per thread; LDTILECFG (palette 1) sets each
 *     tile's rows and bytes per row and zeroes all tiles; palette 0 or TILERELEASE returns to
 *     the init state;
 *   - TILELOADD fills the configured rows x colsb from base + r·stride and zeroes the rest of
 *     the register; TILESTORED writes the configured part only;
 *   - TDPBF16PS C, A, B: per row m of C, temporaries t[0 .. 2n) start at 0; for each pair k of
 *     A's row and each column n, t[2n] += A.even·B[k].even and t[2n+1] += A.odd·B[k].odd, each
 *     an FP32 FMA with DAZ, FTZ and RNE (MXCSR ignored); then C[m][n] += (t[2n] + t[2n+1]),
 *     both adds with DAZ/FTZ/RNE; the rest of the row and the rows past C's are zeroed.
 * Shape rules the hardware enforces with #UD (unconfigured, C.rows ≠ A.rows, A.colsb/4 ≠ B.rows,
 * C.colsb ≠ B.colsb, a dimension past 16 rows / 64 bytes) trap here too: they are programmer
 * errors of the kernel, never input errors. NaN payloads are fmaf's, not the hardware's. */
#ifndef QV_SIMD_TILE_EMU_H
#define QV_SIMD_TILE_EMU_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gemm_impl.h"

typedef struct qv_emu_tiles {
    qv_tilecfg cfg;
    bool configured;
    uint8_t t[8][16][64];
} qv_emu_tiles;

static _Thread_local qv_emu_tiles qv_emu_tmm;

static inline void qv_emu_check(bool ok)
{
    if (!ok)
        __builtin_trap(); /* #UD */
}

static inline void qv_emu_t_config(const qv_tilecfg *c)
{
    memset(&qv_emu_tmm, 0, sizeof qv_emu_tmm);
    if (c->palette == 0)
        return;
    qv_emu_check(c->palette == 1);
    for (int i = 0; i < 8; i++)
        qv_emu_check(c->rows[i] <= 16 && c->colsb[i] <= 64);
    qv_emu_tmm.cfg = *c;
    qv_emu_tmm.configured = true;
}

static inline void qv_emu_t_release(void) { memset(&qv_emu_tmm, 0, sizeof qv_emu_tmm); }

static inline void qv_emu_t_zero(int t)
{
    qv_emu_check(qv_emu_tmm.configured);
    memset(qv_emu_tmm.t[t], 0, sizeof qv_emu_tmm.t[t]);
}

static inline void qv_emu_t_load(int t, const void *base, int64_t stride)
{
    qv_emu_check(qv_emu_tmm.configured);
    const int rows = qv_emu_tmm.cfg.rows[t], colsb = qv_emu_tmm.cfg.colsb[t];
    memset(qv_emu_tmm.t[t], 0, sizeof qv_emu_tmm.t[t]);
    for (int r = 0; r < rows; r++)
        memcpy(qv_emu_tmm.t[t][r], (const char *)base + (int64_t)r * stride, (size_t)colsb);
}

static inline void qv_emu_t_store(int t, void *base, int64_t stride)
{
    qv_emu_check(qv_emu_tmm.configured);
    const int rows = qv_emu_tmm.cfg.rows[t], colsb = qv_emu_tmm.cfg.colsb[t];
    for (int r = 0; r < rows; r++)
        memcpy((char *)base + (int64_t)r * stride, qv_emu_tmm.t[t][r], (size_t)colsb);
}

static inline uint32_t qv_emu_dword(int t, int r, int i)
{
    uint32_t u;
    memcpy(&u, &qv_emu_tmm.t[t][r][4 * i], 4);
    return u;
}

static inline void qv_emu_t_dpbf16(int c, int a, int b)
{
    const qv_tilecfg *k = &qv_emu_tmm.cfg;
    qv_emu_check(qv_emu_tmm.configured && c != a && c != b && a != b);
    qv_emu_check(k->rows[c] == k->rows[a] && k->colsb[a] / 4 == k->rows[b] && k->colsb[c] == k->colsb[b]);
    qv_emu_check(k->colsb[a] % 4 == 0 && k->colsb[c] % 4 == 0);
    const int rows = k->rows[c], kp = k->colsb[a] / 4, n = k->colsb[c] / 4;
    /* B's elements with DAZ applied once (the partial sums never hold a denormal: FTZ) */
    float be[16][16], bo[16][16];
    for (int kk = 0; kk < kp; kk++)
        for (int j = 0; j < n; j++) {
            const uint32_t bd = qv_emu_dword(b, kk, j);
            be[kk][j] = qv_flush_denormal(qv_pair_lo(bd));
            bo[kk][j] = qv_flush_denormal(qv_pair_hi(bd));
        }
    for (int m = 0; m < rows; m++) {
        float te[16] = {0}, to[16] = {0};
        for (int kk = 0; kk < kp; kk++) {
            const uint32_t ad = qv_emu_dword(a, m, kk);
            const float ae = qv_flush_denormal(qv_pair_lo(ad)), ao = qv_flush_denormal(qv_pair_hi(ad));
            for (int j = 0; j < n; j++) {
                te[j] = qv_flush_denormal(fmaf(ae, be[kk][j], te[j]));
                to[j] = qv_flush_denormal(fmaf(ao, bo[kk][j], to[j]));
            }
        }
        float row[16];
        memcpy(row, qv_emu_tmm.t[c][m], (size_t)n * 4);
        for (int j = 0; j < n; j++)
            row[j] = qv_add_daz_ftz(row[j], qv_add_daz_ftz(te[j], to[j]));
        memset(qv_emu_tmm.t[c][m], 0, 64);
        memcpy(qv_emu_tmm.t[c][m], row, (size_t)n * 4);
    }
    for (int m = rows; m < 16; m++)
        memset(qv_emu_tmm.t[c][m], 0, 64);
}

#define QV_TILE_CONFIG(cfg) qv_emu_t_config(cfg)
#define QV_TILE_RELEASE() qv_emu_t_release()
#define QV_TILE_ZERO(t) qv_emu_t_zero(t)
#define QV_TILE_LOAD(t, base, stride) qv_emu_t_load(t, base, stride)
#define QV_TILE_STORE(t, base, stride) qv_emu_t_store(t, base, stride)
#define QV_TILE_DPBF16(c, a, b) qv_emu_t_dpbf16(c, a, b)

#endif /* QV_SIMD_TILE_EMU_H */
