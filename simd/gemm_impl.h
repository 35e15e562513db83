/* gemm_impl.h — what the packed-GEMM variants share (gemm.h): the AMX tile-configuration block,
 * the DAZ/FTZ helpers of the instruction emulations, and the declarations of every variant.
 * Static inline only, so that each kernel file includes it under its own ISA flags. */
#ifndef QV_SIMD_GEMM_IMPL_H
#define QV_SIMD_GEMM_IMPL_H

#include <stdint.h>
#include <string.h>

#include "fp.h"
#include "gemm.h"
#include "kernel_impl.h"

/* LDTILECFG's 64-byte operand (Intel SDM, palette 1): colsb[i] bytes per row and rows[i] rows
 * of tile i. */
typedef struct qv_tilecfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} qv_tilecfg;

_Static_assert(sizeof(qv_tilecfg) == 64, "LDTILECFG operand is 64 bytes");

/* Every tile 16 rows x 64 bytes: C 16x16 f32, A 16 rows x 32 BF16, B 16 pair rows x 16 pairs. */
static inline void qv_tilecfg_full(qv_tilecfg *c)
{
    memset(c, 0, sizeof *c);
    c->palette = 1;
    for (int t = 0; t < 8; t++) {
        c->rows[t] = 16;
        c->colsb[t] = 64;
    }
}

/* One TDPBF16PS on tiles 0 (C: rows x n f32), 1 (A: rows x kp pairs) and 2 (B: kp x n pairs): the
 * configuration of the single-instruction checks (qv_hw_tdpbf16ps, qv_emu_tdpbf16ps). */
static inline void qv_tilecfg_single(qv_tilecfg *c, int rows, int kp, int n)
{
    memset(c, 0, sizeof *c);
    c->palette = 1;
    c->rows[0] = c->rows[1] = (uint8_t)rows;
    c->colsb[0] = (uint16_t)(4 * n);
    c->colsb[1] = (uint16_t)(4 * kp);
    c->rows[2] = (uint8_t)kp;
    c->colsb[2] = (uint16_t)(4 * n);
}

/* DAZ on an input / FTZ on a result: a denormal becomes a zero of the same sign. */
static inline float qv_flush_denormal(float x)
{
    uint32_t u = qv_f32_bits(x);
    if ((u & 0x7f800000u) == 0)
        u &= 0x80000000u;
    return qv_bits_f32(u);
}

/* One "FP32 FMA with DAZ, FTZ, RNE" of the SDM: a·b + c rounded once, denormal inputs read as
 * zero, a denormal result flushed (x86 detects tininess after rounding, so flushing the IEEE
 * result is the same thing). fmaf is correctly rounded (glibc, or VFMADD where inlined). */
static inline float qv_fma_daz_ftz(float a, float b, float c)
{
    return qv_flush_denormal(fmaf(qv_flush_denormal(a), qv_flush_denormal(b), qv_flush_denormal(c)));
}

static inline float qv_add_daz_ftz(float a, float b)
{
    return qv_flush_denormal(qv_flush_denormal(a) + qv_flush_denormal(b));
}

static inline float qv_pair_lo(uint32_t d) { return qv_bits_f32(d << 16); }
static inline float qv_pair_hi(uint32_t d) { return qv_bits_f32(d & 0xffff0000u); }

static inline int64_t qv_gemm_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* The end of a block of rows: bias, then the copy of a partial column pair. */
static inline void qv_gemm_finish(float *c, int64_t ldc, float *y, int64_t ldy, int64_t rows, int64_t cols,
                               const float *bias, bool copy)
{
    if (bias)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++)
                c[r * ldc + j] = c[r * ldc + j] + bias[j];
    if (copy)
        for (int64_t r = 0; r < rows; r++)
            memcpy(y + r * ldy, c + r * ldc, (size_t)cols * sizeof *y);
}

/* ---- the variants -------------------------------------------------------------------------- */

#define QV_DECLARE_GEMM(isa)                                                                                     \
    void qv_gemm_fq_panel_##isa(uint16_t *dst, const uint16_t *w, int64_t nb, int64_t K, int64_t n_valid,        \
                                const uint16_t *s, qv_fq_scale mode, const qv_fq *p, uint16_t *scratch);         \
    void qv_gemm_panel_##isa(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,        \
                             const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc);

QV_DECLARE_GEMM(amx)
QV_DECLARE_GEMM(avx512bf16)
QV_DECLARE_GEMM(emu_amx)
QV_DECLARE_GEMM(emu_avx512bf16)

/* The fq_panel of the emulations (vec_emu512.h) is shared by both emulated sets. */
#define qv_gemm_fq_panel_emu_avx512bf16 qv_gemm_fq_panel_emu_amx

#endif /* QV_SIMD_GEMM_IMPL_H */
